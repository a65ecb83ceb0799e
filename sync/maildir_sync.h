/*
 * One Maildir sync round for one account: what the scheduler calls after (or
 * instead of) the remote round, and when the tree's watcher reports changes.
 *
 * The round opens a Maildir replica session (maildir.h), connects it (which
 * turns moves between folders into store moves and gives every new folder
 * directory of the tree a store folder, which the remote round then creates
 * on the server), creates a folder directory for
 * every store folder, and runs the sync engine on each folder in turn with
 * replica_name = the store name. Folders held for safety are counted, not
 * synced. At the end the mbnames file is rewritten if it changed (when cfg is
 * given and mbnames is enabled).
 *
 * Ownership: borrows loop, st, cfg and acct until done has run; done runs
 * exactly once (maybe before maildir_sync_account() returns, which then
 * returns NULL). maildir_sync_cancel() before that stops the round; done is
 * then not called.
 */
#ifndef IB_SYNC_MAILDIR_SYNC_H
#define IB_SYNC_MAILDIR_SYNC_H

#include <ev.h>
#include <stdint.h>

#include "lib/config.h"
#include "store/store.h"

typedef struct maildir_sync_result {
	unsigned folders;    /* folders looked at */
	unsigned failed;     /* folders that failed (retried next round) */
	unsigned held;	     /* folders held for safety (exit status 2 in -o mode) */
	unsigned downloaded; /* tree -> store new messages */
	unsigned uploaded;   /* store -> tree new messages */
	unsigned deleted;    /* deletions on either side */
	unsigned flags;	     /* flag changes on either side */
} maildir_sync_result_t;

typedef struct maildir_sync maildir_sync_t;
typedef void (*maildir_sync_done_cb)(const maildir_sync_result_t *res, void *ctx);

/*
 * Start a round for acct (which must have maildir_path). cfg (may be NULL)
 * supplies the mbnames settings and every account's tree for the mbnames
 * file. account_id is the store account (folders_account_id()).
 */
maildir_sync_t *maildir_sync_account(struct ev_loop *loop, store_t *st, const config_t *cfg,
				     const config_account_t *acct, uint32_t account_id,
				     maildir_sync_done_cb done, void *ctx);
void maildir_sync_cancel(maildir_sync_t *s);

/*
 * Update the mbnames file from the trees of every account of cfg (see
 * mbnames.h); logs a problem instead of returning it. For callers that run
 * several rounds and want one update at the end.
 */
void maildir_sync_mbnames(const config_t *cfg);

#endif
