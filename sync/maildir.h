/*
 * The Maildir replica: an account's Maildir tree as one more copy of the
 * store's folders, synced by the same engine (sync/engine.h) through the
 * replica interface (sync/replica.h) exactly like a remote IMAP folder.
 *
 * Layout: one Maildir (cur/new/tmp) per folder under root; "INBOX" is the
 * directory INBOX; "Lists/foo" is Lists/foo/ (sep '/') or Lists.foo/ (sep
 * '.'). Folder names cross the replica interface as store names ('/'
 * separated), so the engine's replica_name for a Maildir job is the store
 * folder name itself.
 *
 * UIDs: each folder directory keeps its own UIDVALIDITY and UIDNEXT in a
 * small hidden file (.imapbridge-uids) and every message file carries its
 * UID in the name (",U=<uid>,FMD5=<md5 of folder name>:2,<flags>", see
 * maildir_name.h); the store's pair table maps these UIDs to store UIDs. A
 * file a mail reader renames keeps its U=; a file moved to another folder
 * keeps its FMD5 and is recognised as a move (connect() turns it into a
 * store move, and records a pending MOVE for the remote); a file dropped in
 * by another program has no U= and is given one at select() (it is then a
 * new message for the engine to copy into the store).
 *
 * Flags: D F R S T map to \Draft \Flagged \Answered \Seen \Deleted; P is the
 * keyword $Forwarded. Other keywords live in the store only: scan() reports
 * the keywords last agreed in the pair table, so they never look removed.
 *
 * Durability: flag renames and deletions are made at once, appends are
 * written by the flush; every callback is deferred until one batch flush
 * (files written and synced, renames done, directories fsynced): the engine
 * records a pair only after the file is on disk, and never fsyncs per
 * message. With a loop the flush starts on the next loop iteration (a whole
 * pipelined batch at once) on a thread of its own (sync/worker.h), so the
 * loop goes on with the network meanwhile; an operation that reads the tree
 * first waits for it. Without a loop (tests, tools) the flush runs in line
 * before each callback.
 *
 * Unchanged folders: select() fingerprints cur/ and new/ and the engine
 * records that value; a folder whose fingerprint is unchanged at the next
 * sync is not read. A folder this session wrote into is sealed when the
 * session could prove, with inotify, that its writes were the only changes
 * (maildir_seal.h): the next sync then trusts it too, instead of reading
 * every file only to find its own writes.
 *
 * Safety: a folder whose directory vanished (rm -rf, an unmounted disk) after
 * it was synced, lost most of its files at once (max_deletion_ratio), or lost
 * its UID file, is held in the store (store_folder_hold) with a reason that
 * starts "the Maildir folder ..." and names the recovery command, and
 * select() fails with REPLICA_FOLDER_BAD: nothing is deleted anywhere, and
 * the recovery (maildir_recover_folder()) rebuilds it from the store. Broken
 * files (empty, unreadable, not a message) are reported with a warning naming
 * the file and skipped; they are never deleted. Message bytes are never
 * changed.
 *
 * Ownership: the replica borrows the loop and the store (both must outlive
 * it) and copies the strings of maildir_opts_t. replica_free() releases it;
 * deferred callbacks are then not called and unflushed files are removed.
 */
#ifndef IB_SYNC_MAILDIR_H
#define IB_SYNC_MAILDIR_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"
#include "sync/replica.h"

/* Name of the per-folder UID file inside each folder directory. */
#define MAILDIR_UIDS_FILE ".imapbridge-uids"

typedef struct maildir_opts {
	struct ev_loop *loop; /* NULL: flush before every callback (tests, tools) */
	store_t *st;
	uint32_t account_id; /* store account whose folders the tree mirrors */
	const char *account; /* account name, for messages */
	const char *root;    /* the tree's root, "~" already expanded */
	char sep;	     /* '/' (nested directories) or '.' (flat) */
	/* A folder that lost more than this share of its paired files at once
	 * (and at least 5) is held for the operator, who rebuilds it from the
	 * store with `imapbridge folder recover`; >= 1 never. The same
	 * setting, and meaning, as the engine's (engine_opts_t). */
	double max_deletion_ratio;
	/* The config's fsync = false: write files without any sync. */
	bool nosync;
} maildir_opts_t;

/*
 * A new replica session on the tree. Never fails for a missing root: that is
 * reported per folder (see Safety). The caller connects it with
 * r->ops->connect() (caps may be NULL) before use, once per sync round.
 * connect() also gives every folder directory the store does not know a
 * store folder (list the store's folders after it), and turns messages moved
 * between folders into store moves; so call it before any engine job of the
 * round has loaded its folder's state. select() of a folder that was never
 * synced creates its directory (create_folder() is optional).
 */
replica_t *maildir_replica_open(const maildir_opts_t *o);

/*
 * Without a session: whether the directory of folder name (store name) in
 * the tree at root is exactly as the sync that recorded rs (its Maildir
 * state) left it, as its fingerprint or its seal prove (see
 * maildir_seal.h). Then *out holds the counters select() would report, and
 * engine_unchanged_txn() can tell whether the folder needs a job at all; a
 * sync that reads the whole tree first (a pass over every folder) skips
 * such folders without opening them. false: select it (also when anything
 * is missing or unreadable; select() says what).
 */
bool maildir_folder_unchanged(const char *root, char sep, const char *name,
			      const store_replica_t *rs, replica_counts_t *out);

/*
 * The same for a session's tree: its connect() already read every folder's
 * fingerprint and seal (looking for moved files); a folder it found
 * unchanged against the same recorded state (rs) is answered from that,
 * without reading the folder again. Other folders are checked as
 * maildir_folder_unchanged() does.
 */
bool maildir_replica_unchanged(replica_t *r, const char *name, const store_replica_t *rs,
			       replica_counts_t *out);

/*
 * Rebuild a held folder's Maildir from the store (`imapbridge folder recover
 * ACCOUNT FOLDER`, Maildir part): forget the Maildir pairs of the folder,
 * re-pair the files that are still there by U= and content, write every
 * other store message as a new file, record the new pairs and replica state,
 * and release the hold when release_hold is set (the caller clears it itself
 * when the remote side needs recovering too). Files whose content matches no
 * store message stay and are uploaded by the next sync. Nothing is deleted.
 * Returns 0, or -1 with a message for people in err.
 */
int maildir_recover_folder(const maildir_opts_t *o, uint32_t folder_id, bool release_hold,
			   char *err, size_t errlen);

/* The directory of a folder under root, or NULL if the name cannot map. */
char *maildir_folder_path(const char *root, char sep, const char *folder);

#endif
