/*
 * A remote IMAP account as a replica (sync/replica.h), on top of the IMAP
 * client (sync/imap_client.h). One imap_replica is one connection with at
 * most one selected folder; the scheduler opens up to maxconnections of them
 * per account.
 *
 * Change detection: QRESYNC (UID FETCH ... (CHANGEDSINCE m VANISHED)) where
 * offered, CONDSTORE (CHANGEDSINCE + UID SEARCH ALL for deletions), else a
 * full UID FETCH 1:* (FLAGS). With QRESYNC, select_scan() sends SELECT and
 * the delta scan together and keeps the answer for the next matching scan()
 * (imap_replica_scan.c). Deletions are UID EXPUNGE of exactly the
 * given UIDs where UIDPLUS exists. readonly = true in the account's config
 * makes every write fail with REPLICA_FOLDER_BAD and folders are EXAMINEd.
 *
 * Ownership: the replica borrows loop and acct (acct must outlive it; a
 * config reload builds new replicas). replica_free() may be called from any
 * callback: the connection is released from the loop shortly after.
 */
#ifndef IB_SYNC_IMAP_REPLICA_H
#define IB_SYNC_IMAP_REPLICA_H

#include <ev.h>
#include <stddef.h>

#include "lib/config.h"
#include "sync/replica.h"

/* A new, unconnected session; label is copied (log prefix, e.g. "acct=home"). */
replica_t *imap_replica_new(struct ev_loop *loop, const config_account_t *acct,
			    const char *label);

/* After a failed connect() or a REPLICA_BAD: the client's message for
 * people ("acct=home: login rejected; check the password"); after a
 * REPLICA_FOLDER_BAD caused by a broken server answer (a FETCH body for a UID
 * not asked for, twice, or UID 0): what the server sent, until the next
 * select(); else "". */
const char *imap_replica_error(const replica_t *r);

/* The same for a log line that names the account already: without the
 * "acct=NAME: " prefix and the "; reconnecting" note, copied into out; also
 * set after a REPLICA_FOLDER_BAD caused by a broken server answer (until the
 * next select()). NULL when there is nothing to say. */
const char *imap_replica_reason(const replica_t *r, char *out, size_t len);

/* The server's words ("[OVERQUOTA] Quota exceeded") for the last message
 * it refused (an operation that ended REPLICA_MSG_BAD), or NULL. */
const char *imap_replica_msg_reason(const replica_t *r);

/* True once r's connection is lost: every later operation fails; free it and
 * open another. */
bool imap_replica_dead(const replica_t *r);
/* Dead because the link ended (closed, reset, silent), not because the
 * server sent something that cannot be parsed: worth another session. */
bool imap_replica_link_lost(const replica_t *r);

/* True if r is an imap_replica (for code that handles several kinds). */
bool imap_replica_is(const replica_t *r);

#endif
