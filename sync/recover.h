/*
 * Folder recovery (`imapbridge folder recover ACCOUNT FOLDER`, or
 * `imapbridged -c conf --recover ACCOUNT FOLDER` without the daemon): release
 * a folder held for safety and re-pair its messages by content, so that
 * nothing already on both sides is uploaded or downloaded again and nothing
 * is deleted.
 *
 *  - UIDVALIDITY change: the old pairs are meaningless. Every remote message
 *    of the folder is matched to a store message by Message-ID and size
 *    first, then confirmed by the SHA-256 of its bytes (fetched); matches are
 *    paired, the replica state is reset to the new UIDVALIDITY. Store
 *    messages with no remote copy are uploaded by the next sync, remote ones
 *    with no store copy downloaded: a union, never a deletion.
 *  - Mass deletion: the operator confirms; the next sync runs once with the
 *    deletion guard off, so the deletions go through.
 *  - A Maildir folder held because its directory vanished is rebuilt from
 *    the store (maildir_recover_folder()).
 *
 * Runs the loop until done (it is quick: metadata plus the bodies of
 * candidate matches). Returns an exit status (0, 1, 2) and a message for
 * people in msg.
 */
#ifndef IB_SYNC_RECOVER_H
#define IB_SYNC_RECOVER_H

#include <ev.h>
#include <stddef.h>

#include "lib/config.h"
#include "store/store.h"

int recover_folder(struct ev_loop *loop, store_t *st, const config_account_t *acct,
		   const char *folder, char *msg, size_t msglen);

#endif
