/*
 * The LMDB store: accounts, folders, messages, the per-folder change log,
 * content-addressed blobs, replica sync state and pending remote operations.
 *
 * One environment per daemon under <datadir>/store/. Every other copy of the
 * mail (a remote account, the Maildir tree, a listener session) is a replica
 * that syncs against this store.
 *
 * Ownership and lifetimes (as in lmdb.h):
 * - store_t is owned by whoever called store_open(); store_close() frees it.
 *   Every transaction must be finished (commit or abort) before store_close().
 * - store_txn_t is owned by the caller of store_txn_begin_*() until it is
 *   passed to store_txn_commit() or store_txn_abort(), which free it.
 * - Every pointer the store hands out (names, keyword arrays, blob bytes)
 *   points into the map or into scratch memory of the transaction. It is valid
 *   until the transaction ends, and in a write transaction only until the next
 *   write call on it. Structs passed to an iteration callback, and everything
 *   they point to, are valid only during that call. Copy what you keep.
 * - Strings passed in are copied; the caller keeps ownership.
 *
 * Errors: 0 for success, a negative STORE_E* code otherwise; store_strerror()
 * gives a short text. The store never logs; callers do.
 *
 * Write transactions carry a sticky error (knot-dns style): once a call fails
 * in a way that may have left the transaction half-done (I/O, map full, a
 * corrupt record), every later call on it is a no-op returning that error, and
 * store_txn_commit() aborts and returns it. The caller can therefore issue a
 * batch of calls and check once. Errors that leave the transaction untouched
 * (STORE_ENOTFOUND, STORE_EEXIST, STORE_EINVAL, STORE_ECONFLICT, STORE_EHELD,
 * STORE_ERDONLY, STORE_ETOOOLD) are returned but are NOT sticky, so a lookup
 * miss does not poison a batch; should one of them come after the call had
 * already written something, it is made sticky. Read transactions follow the
 * same rule. A callback's own non-zero return value is never sticky.
 *
 * Map growth: the map starts small and grows by itself. When a write fails
 * with MDB_MAP_FULL the transaction's sticky error becomes STORE_EAGAIN; on
 * commit the store aborts it, doubles the map size and returns STORE_EAGAIN,
 * meaning "run the same transaction again". store_write() does that loop for
 * you and is the recommended way to write. Growing needs every other
 * transaction of this store_t to be finished (LMDB rule): keep read
 * transactions short and never hold one across a loop iteration.
 *
 * Threads: the environment is opened with MDB_NOTLS, but a store_t and its
 * transactions are meant for one thread (the daemon's libev loop).
 *
 * The on-disk layout (named databases, key formats) is described in
 * store/store_p.h; records carry a version byte so fields can be added.
 */
#ifndef IB_STORE_H
#define IB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The on-disk schema this build writes. A store with a higher version is
 * refused with STORE_ENEWER. */
#define STORE_SCHEMA_VERSION 1

enum store_err {
	STORE_OK = 0,
	STORE_ENOTFOUND = -1,  /* no such account/folder/message/pair/blob */
	STORE_EEXIST = -2,     /* name or key already exists */
	STORE_EINVAL = -3,     /* bad argument (empty name, zero id, ...) */
	STORE_EAGAIN = -4,     /* map was full and has been grown: retry the txn */
	STORE_ECORRUPT = -5,   /* a record or file is not what the store wrote */
	STORE_ENEWER = -6,     /* written by a newer imapbridge (schema too high) */
	STORE_EIO = -7,	       /* I/O or OS error (reading a file, writing the map) */
	STORE_ENOSPC = -8,     /* disk full, or map cannot grow any further */
	STORE_EBUSY = -9,      /* too many readers, or a txn still open */
	STORE_ERDONLY = -10,   /* write call on a read transaction */
	STORE_ECONFLICT = -11, /* UNCHANGEDSINCE test failed */
	STORE_ELIMIT = -12,    /* UID or modseq space exhausted */
	STORE_ETOOOLD = -13,   /* changes since N asked, but tombstones <= N pruned */
	STORE_EHELD = -14,     /* folder is held for safety */
	STORE_EINTERNAL = -15, /* unexpected LMDB error (a bug) */
	STORE_ETOOBIG = -16,   /* transaction too large for LMDB: split the batch */
};

/* Short static text for a STORE_E* code (also accepts 0). */
const char *store_strerror(int err);

typedef struct store store_t;
typedef struct store_txn store_txn_t;

/* SHA-256 of a message's raw bytes: the blob's key. */
#define STORE_HASH_LEN 32
typedef struct store_hash {
	uint8_t b[STORE_HASH_LEN];
} store_hash_t;

/* Lower-case hex of a hash into out (65 bytes incl. NUL); returns out. */
char *store_hash_hex(const store_hash_t *h, char out[2 * STORE_HASH_LEN + 1]);
/* Hash of raw bytes, as store_blob_put() would compute it. */
void store_hash_compute(const void *data, size_t len, store_hash_t *out);

/* ---------------------------------------------------------------- open */

typedef struct store_open_opts {
	/* Initial map size in bytes; 0 = default (64 MiB). An existing store
	 * keeps its larger size. Tests use tiny sizes to exercise growth. */
	size_t initial_mapsize;
	/* Open read-only (admin tools, checks): no schema upgrade, no writes. */
	bool readonly;
	/* Skip fsync on commit (the config's fsync = false). A killed process
	 * loses nothing (the pages are in the page cache); a power failure can
	 * lose the last commits or damage the file. */
	bool nosync;
	/* Skip the structure probe. By default an existing data.mdb is first
	 * looked at in a child process, so that a damaged file is refused with
	 * a message instead of crashing the caller inside LMDB. The probe opens
	 * every database and follows the page tree to its first and last keys:
	 * its cost does not grow with the number of messages. After a writer
	 * did not close the store (it crashed or was killed: the close stamp
	 * in the store directory still says "open"), or with deep_probe,
	 * the probe reads every key once instead (not the message bytes). */
	bool skip_probe;
	bool deep_probe;
} store_open_opts_t;

/*
 * Open (creating if needed) the store under <datadir>/store/. opts may be NULL.
 * On failure returns a STORE_E* code, *out is NULL and errbuf (if not NULL)
 * holds a message for people naming the file and what to do, e.g.
 *   "store at /d/store was written by a newer imapbridge (schema 3); upgrade,
 *    or use another datadir"
 *   "/d/store/data.mdb is not an imapbridge store (not an LMDB file); move it
 *    away or use another datadir"
 */
int store_open(const char *datadir, const store_open_opts_t *opts, store_t **out, char *errbuf,
	       size_t errlen);
/* Close and free. All transactions must be finished. NULL is fine. */
void store_close(store_t *st);
/* Directory of the environment (<datadir>/store); owned by st. */
const char *store_path(const store_t *st);
/* Current map size in bytes (grows over time). */
size_t store_mapsize(const store_t *st);

/*
 * Called after every successful write commit with the ids of the folders whose
 * messages, flags or state changed in it (sorted, unique; valid during the
 * call). The listener uses this to wake IDLE sessions. NULL cb unregisters.
 * The callback must not start a write transaction itself.
 */
typedef void (*store_commit_cb)(store_t *st, const uint32_t *folder_ids, size_t n, void *arg);
void store_set_commit_cb(store_t *st, store_commit_cb cb, void *arg);

/* ---------------------------------------------------------- transactions */

/* Begin a transaction. One write transaction per store_t at a time:
 * a second store_txn_begin_write() while one is open returns STORE_EBUSY
 * (LMDB's writer lock would otherwise wait for itself). Read transactions may
 * be open next to a write transaction. STORE_EBUSY also when the map must grow
 * but other transactions of this store_t are still open. */
int store_txn_begin_read(store_t *st, store_txn_t **out);
int store_txn_begin_write(store_t *st, store_txn_t **out);
/* The sticky error of the transaction (0 while clean). */
int store_txn_err(const store_txn_t *txn);
bool store_txn_is_write(const store_txn_t *txn);
store_t *store_txn_store(const store_txn_t *txn);
/*
 * Commit and free txn. If the sticky error is set, aborts instead and returns
 * it. Returns STORE_EAGAIN when the map was full: it has been grown, run the
 * transaction again. For a read transaction, commit == abort (returns 0).
 */
int store_txn_commit(store_txn_t *txn);
/* Abort and free txn. NULL is fine. */
void store_txn_abort(store_txn_t *txn);

/*
 * Run fn inside a write transaction and commit; on STORE_EAGAIN (map grown)
 * run fn again in a fresh transaction. fn must therefore have no side effects
 * outside the store that would be wrong to repeat (collect results into arg
 * and reset them at the start of fn). If fn returns non-zero the transaction
 * is aborted and that value returned. Returns 0 or a STORE_E* code.
 */
typedef int (*store_txn_fn)(store_txn_t *txn, void *arg);
int store_write(store_t *st, store_txn_fn fn, void *arg);
/* store_write() for a commit that may wait for the next one to be durable:
 * its data pages are synced, the meta page pointing at them is not, so a
 * power failure can undo this commit (never half of it). Only for writes
 * whose loss costs redoing work: never for an intent that must be on disk
 * before a replica operation (use store_write() for those; it makes every
 * earlier lazy commit durable as well). */
int store_write_lazy(store_t *st, store_txn_fn fn, void *arg);
/* Make the last lazy commit durable (a no-op if there is none). */
int store_sync(store_t *st);

/*
 * Group commit: lazy writes (store_write_lazy()) of several callers queued,
 * then run in one transaction by store_group_flush(), so they share one
 * sync. Each fn must be one store_write() could run (no side effects to
 * repeat) and must not depend on another's failure. When one fails, the
 * group is run again one write at a time, so each caller gets the result
 * its own store_write_lazy() would have given. done() is called for each,
 * in queue order, after the commit; it may queue or cancel others.
 */
typedef struct store_group store_group_t;
typedef struct store_group_ent store_group_ent_t;
typedef void (*store_group_cb)(int rc, void *arg);
store_group_t *store_group_new(store_t *st);
/* Runs what is still queued (done() is called) and frees the group. */
void store_group_free(store_group_t *g);
store_group_ent_t *store_group_add(store_group_t *g, store_txn_fn fn, void *arg,
				   store_group_cb done, void *done_arg);
/* Drop a queued write (or one whose done() has not come yet): it is not
 * run if not run yet, and done() never comes. */
void store_group_cancel(store_group_t *g, store_group_ent_t *e);
/* Writes waiting for store_group_flush(). */
size_t store_group_pending(const store_group_t *g);
void store_group_flush(store_group_t *g);

/* -------------------------------------------------------------- accounts */

enum store_account_flags {
	/* Removed without --purge: data kept, not synced. store_account_add()
	 * with the same name revives it with the same id. */
	STORE_ACCOUNT_REMOVED = 1 << 0,
};

typedef struct store_account {
	uint32_t id;	  /* > 0, never reused */
	uint32_t flags;	  /* STORE_ACCOUNT_* */
	const char *name; /* valid as described at the top */
} store_account_t;

/* Add an account; ids start at 1. STORE_EEXIST if an active account has that
 * name (then *id_out is still set to its id). */
int store_account_add(store_txn_t *txn, const char *name, uint32_t *id_out);
int store_account_get(store_txn_t *txn, uint32_t id, store_account_t *out);
int store_account_find(store_txn_t *txn, const char *name, store_account_t *out);
/* Callbacks return 0 to go on; any other value stops the iteration and is
 * returned by the iterating function. This holds for every *_cb below. */
typedef int (*store_account_cb)(const store_account_t *a, void *arg);
/* All accounts in id order, including removed ones (check flags). */
int store_account_list(store_txn_t *txn, store_account_cb cb, void *arg);
/*
 * purge = false: mark STORE_ACCOUNT_REMOVED, keep everything.
 * purge = true: drop the account, its folders, messages (blob references),
 * change logs, replica state, pairs, pending operations and attributes. Ids
 * are not reused. Touches every folder of the account: for a large account
 * do it in its own transaction.
 */
int store_account_remove(store_txn_t *txn, uint32_t id, bool purge);

/* Small per-account attributes owned by other modules (e.g. "passwd" for the
 * listener's salted hash, "config" for an account added by the CLI). key is a
 * NUL-terminated string of at most 200 bytes; the value is opaque bytes. */
int store_account_attr_set(store_txn_t *txn, uint32_t id, const char *key, const void *val,
			   size_t len);
/* *val points into the map (see lifetimes). STORE_ENOTFOUND if unset. */
int store_account_attr_get(store_txn_t *txn, uint32_t id, const char *key, const void **val,
			   size_t *len);
int store_account_attr_del(store_txn_t *txn, uint32_t id, const char *key);

/* --------------------------------------------------------------- folders */

enum store_special_use {
	STORE_SU_ALL = 1 << 0,
	STORE_SU_ARCHIVE = 1 << 1,
	STORE_SU_DRAFTS = 1 << 2,
	STORE_SU_FLAGGED = 1 << 3,
	STORE_SU_JUNK = 1 << 4,
	STORE_SU_SENT = 1 << 5,
	STORE_SU_TRASH = 1 << 6,
	STORE_SU_IMPORTANT = 1 << 7,
};

enum store_folder_state {
	STORE_FOLDER_ACTIVE = 0,
	/* Held for safety (UIDVALIDITY change, mass deletion): the sync engine
	 * must not sync it until released. The store itself still accepts
	 * writes; holding is a promise between sync engine and operator. */
	STORE_FOLDER_HELD = 1,
};

typedef struct store_folder {
	uint32_t id; /* > 0, unique across accounts, never reused */
	uint32_t account_id;
	const char *name;	 /* store name, '/' separated, e.g. "INBOX/Lists" */
	uint32_t uidvalidity;	 /* the store's own, fixed at creation */
	uint32_t uidnext;	 /* next UID the store will assign */
	uint64_t highestmodseq;	 /* modseq of the latest change (>= 1) */
	uint32_t special_use;	 /* STORE_SU_* bits */
	uint32_t state;		 /* enum store_folder_state */
	const char *held_reason; /* "" unless held */
	uint32_t messages;	 /* live messages */
	uint32_t unseen;	 /* live messages without \Seen */
	/* Tombstones with modseq <= this were pruned: changes since a modseq
	 * below it are not exact any more (STORE_ETOOOLD). 0 = none pruned. */
	uint64_t pruned_modseq;
} store_folder_t;

/* Create a folder (name: 1 to 500 bytes, else STORE_EINVAL); picks a fresh UIDVALIDITY (never one
 * used before by this store), uidnext 1, highestmodseq 1. STORE_EEXIST if the account already has
 * that name (*id_out set to the existing id). */
int store_folder_create(store_txn_t *txn, uint32_t account_id, const char *name,
			uint32_t special_use, uint32_t *id_out);
int store_folder_get(store_txn_t *txn, uint32_t folder_id, store_folder_t *out);
int store_folder_find(store_txn_t *txn, uint32_t account_id, const char *name, store_folder_t *out);
typedef int (*store_folder_cb)(const store_folder_t *f, void *arg);
/* Folders of one account in name order (byte order of the names). */
int store_folder_list(store_txn_t *txn, uint32_t account_id, store_folder_cb cb, void *arg);
/* Rename; keeps id, UIDs and UIDVALIDITY. STORE_EEXIST if taken. */
int store_folder_rename(store_txn_t *txn, uint32_t folder_id, const char *new_name);
int store_folder_set_special_use(store_txn_t *txn, uint32_t folder_id, uint32_t special_use);
/* Drop the folder with its messages (blob references), change log, replica
 * state, pairs and pending operations. */
int store_folder_delete(store_txn_t *txn, uint32_t folder_id);
/* Hold with a reason for people ("UIDVALIDITY of remote INBOX changed from 5
 * to 9; run 'imapbridge folder recover home INBOX'"), or release. */
int store_folder_hold(store_txn_t *txn, uint32_t folder_id, const char *reason);
int store_folder_release(store_txn_t *txn, uint32_t folder_id);
typedef int (*store_keyword_cb)(const char *keyword, void *arg);
/* Every keyword ever set on a message of the folder, in byte order (for the
 * FLAGS / PERMANENTFLAGS responses). */
int store_folder_keywords(store_txn_t *txn, uint32_t folder_id, store_keyword_cb cb, void *arg);

/* ----------------------------------------------------------------- flags */

/* System flags as a bitmask. \Recent is never stored. */
enum store_flag {
	STORE_F_SEEN = 1 << 0,
	STORE_F_ANSWERED = 1 << 1,
	STORE_F_FLAGGED = 1 << 2,
	STORE_F_DELETED = 1 << 3,
	STORE_F_DRAFT = 1 << 4,
	STORE_F_ALL = 0x1f,
};

/*
 * Keywords: any number per message, each a non-empty IMAP atom of at most
 * 255 bytes (no NUL, no space; the store does not check atom syntax beyond
 * that). Passed in as an array of C strings in any order, duplicates allowed;
 * stored sorted and unique, and handed out sorted (byte order). Keywords are
 * case-sensitive as stored; callers that want IMAP's case-insensitive
 * matching normalise before calling.
 */
typedef struct store_keywords {
	const char *const *v;
	size_t n;
} store_keywords_t;

/* ------------------------------------------------------------- messages */

typedef struct store_msg {
	uint32_t folder_id;
	uint32_t uid;
	uint32_t flags;	       /* STORE_F_* */
	store_keywords_t kw;   /* sorted; scratch memory (see lifetimes) */
	uint64_t modseq;       /* modseq of its latest change */
	uint64_t added_modseq; /* modseq at which it was added */
	int64_t internaldate;  /* seconds since the epoch, UTC */
	int32_t tz_offset;     /* INTERNALDATE zone, minutes east of UTC */
	uint64_t size;	       /* RFC822.SIZE: bytes of the blob */
	store_hash_t hash;     /* blob key */
} store_msg_t;

/* What a new message is made of. */
typedef struct store_msg_new {
	store_hash_t hash; /* blob must exist (store_blob_put*) */
	uint32_t flags;
	store_keywords_t kw;
	int64_t internaldate;
	int32_t tz_offset;
} store_msg_new_t;

/*
 * Add a message to a folder: takes a reference on the blob, assigns the next
 * UID and the next modseq, records a NEW change. STORE_ENOTFOUND if the folder
 * or the blob does not exist. uid_out / modseq_out may be NULL.
 */
int store_msg_add(store_txn_t *txn, uint32_t folder_id, const store_msg_new_t *m, uint32_t *uid_out,
		  uint64_t *modseq_out);
/* store_blob_put() + store_msg_add() (m->hash is ignored and filled in). */
int store_msg_append(store_txn_t *txn, uint32_t folder_id, const void *data, size_t len,
		     store_msg_new_t *m, uint32_t *uid_out, uint64_t *modseq_out);
int store_msg_get(store_txn_t *txn, uint32_t folder_id, uint32_t uid, store_msg_t *out);
/* The lowest live UID in the folder whose blob is hash (to recognise a copy
 * after a crash, or to re-pair by content). A scan of the folder: for
 * occasional use. STORE_ENOTFOUND if none. */
int store_msg_find_by_hash(store_txn_t *txn, uint32_t folder_id, const store_hash_t *hash,
			   uint32_t *uid_out);
typedef int (*store_msg_cb)(const store_msg_t *m, void *arg);
/* Live messages of a folder with uid >= uid_from (1 = all), in UID order.
 * Do not write to the same folder from inside cb. */
int store_msg_iter(store_txn_t *txn, uint32_t folder_id, uint32_t uid_from, store_msg_cb cb,
		   void *arg);

enum store_flag_op {
	STORE_FLAGS_SET = 0,	/* replace flags and keywords */
	STORE_FLAGS_ADD = 1,	/* add the given flags and keywords */
	STORE_FLAGS_REMOVE = 2, /* remove the given flags and keywords */
};

/*
 * Change flags and keywords. If the result differs from the current value,
 * the message takes the next modseq and a FLAGS change is recorded; if not,
 * nothing is written and *modseq_out is the unchanged modseq.
 * unchangedsince: 0 = no test; otherwise STORE_ECONFLICT (nothing written)
 * if the message's modseq is greater (CONDSTORE UNCHANGEDSINCE).
 * modseq_out may be NULL.
 */
int store_msg_set_flags(store_txn_t *txn, uint32_t folder_id, uint32_t uid, enum store_flag_op op,
			uint32_t flags, const store_keywords_t *kw, uint64_t unchangedsince,
			uint64_t *modseq_out);
/* Expunge: remove the message, take the next modseq, leave a tombstone in the
 * change log, drop the blob reference (freeing the blob on the last one).
 * STORE_ENOTFOUND if there is no such live message. */
int store_msg_expunge(store_txn_t *txn, uint32_t folder_id, uint32_t uid, uint64_t *modseq_out);
/* Move: expunge in src (tombstone) and add to dst with the same blob, flags,
 * keywords and internaldate; the blob is never copied. new_uid_out may be
 * NULL. src == dst is STORE_EINVAL. */
int store_msg_move(store_txn_t *txn, uint32_t src_folder_id, uint32_t uid, uint32_t dst_folder_id,
		   uint32_t *new_uid_out);

/* ----------------------------------------------------------- change log */

enum store_change_kind {
	STORE_CHANGE_NEW = 1,	  /* added after the asked modseq */
	STORE_CHANGE_FLAGS = 2,	  /* existed before, flags changed since */
	STORE_CHANGE_EXPUNGE = 3, /* tombstone */
};

typedef struct store_change {
	uint64_t modseq;
	uint32_t kind; /* enum store_change_kind */
	uint32_t uid;
	/* For NEW and FLAGS: the message as it is now; NULL for EXPUNGE. */
	const store_msg_t *msg;
} store_change_t;

typedef int (*store_change_cb)(const store_change_t *c, void *arg);
/*
 * Every change with modseq > since, in modseq order: one entry per live
 * message changed since then (its latest change; kind NEW if it was added
 * after since) and one per expunge (tombstone). A message added and expunged
 * after since shows only its tombstone. STORE_ETOOOLD if tombstones above
 * since were pruned (the caller must do a full comparison instead).
 */
int store_changes_since(store_txn_t *txn, uint32_t folder_id, uint64_t since, store_change_cb cb,
			void *arg);
/* Drop tombstones with modseq <= upto (clamped to highestmodseq), once
 * every replica has seen them: the daemon passes the lowest pushed_modseq of
 * the folder's replicas (and of QRESYNC sessions it wants to keep exact). */
int store_changes_prune(store_txn_t *txn, uint32_t folder_id, uint64_t upto);

/* ----------------------------------------------------------------- blobs */

/*
 * Store raw message bytes under their SHA-256 (a no-op if already there) and
 * return the hash. The blob has no reference until a message uses it; a blob
 * still unreferenced when its transaction commits is dropped then, so put it
 * and add the message in the same transaction.
 */
int store_blob_put(store_txn_t *txn, const void *data, size_t len, store_hash_t *hash_out);
/* The same when the caller computed hash (store_hash_compute()) from exactly
 * these bytes, while they were still in the CPU's cache: a message is then
 * read once more, for the copy, not twice. */
int store_blob_put_hashed(store_txn_t *txn, const void *data, size_t len,
			  const store_hash_t *hash);
/*
 * The same from a regular file, without holding the message in memory: the
 * file is read twice with pread() (once to hash, once straight into the map
 * with MDB_RESERVE), from offset off for len bytes. The file must not change
 * meanwhile. STORE_EIO if it is shorter than len.
 */
int store_blob_put_fd(store_txn_t *txn, int fd, uint64_t off, uint64_t len, store_hash_t *hash_out);
/*
 * The same when the caller hashed the file as it wrote it: no read at all
 * when the blob is there, else one (the copy into the map, hashed again
 * there: STORE_EIO if the file no longer matches hash).
 */
int store_blob_put_fd_hashed(store_txn_t *txn, int fd, uint64_t off, uint64_t len,
			     const store_hash_t *hash);
/* The bytes of a blob: *data points into the map (see lifetimes). */
int store_blob_get(store_txn_t *txn, const store_hash_t *hash, const void **data, size_t *len);
/* Number of messages (in all folders) using the blob. */
int store_blob_refs(store_txn_t *txn, const store_hash_t *hash, uint64_t *refs);

/* ------------------------------------------------------- replica state */

/* Replica ids are chosen by the caller and only need to be stable per
 * store folder; these are the ones the daemon uses. */
enum store_replica_id {
	STORE_REPLICA_REMOTE = 1,  /* the account's remote IMAP folder */
	STORE_REPLICA_MAILDIR = 2, /* the Maildir export */
};

typedef struct store_replica {
	uint32_t folder_id;
	uint32_t replica_id;
	const char *name;	/* the replica's folder name (e.g. remote name) */
	uint32_t uidvalidity;	/* replica's UIDVALIDITY when last synced; 0 = never */
	uint32_t uidnext;	/* replica's UIDNEXT when last synced */
	uint64_t highestmodseq; /* replica's HIGHESTMODSEQ; 0 = no CONDSTORE */
	uint64_t pushed_modseq; /* store modseq up to which changes were pushed */
	int64_t synced_at;	/* wall clock of the last full sync; 0 = never */
	uint32_t flags;		/* STORE_REPLICA_* */
} store_replica_t;

/* store_replica_t.flags: what the replica's folder allowed when last opened
 * for writing (an IMAP SELECT's PERMANENTFLAGS). */
enum {
	STORE_REPLICA_KW_KNOWN = 1 << 0, /* the bit below is known */
	STORE_REPLICA_KW = 1 << 1,	 /* the folder keeps keywords */
};

/* Create or replace (name may be NULL for ""). */
int store_replica_set(store_txn_t *txn, const store_replica_t *r);
int store_replica_get(store_txn_t *txn, uint32_t folder_id, uint32_t replica_id,
		      store_replica_t *out);
typedef int (*store_replica_cb)(const store_replica_t *r, void *arg);
/* Replica states of one folder, in replica id order. */
int store_replica_list(store_txn_t *txn, uint32_t folder_id, store_replica_cb cb, void *arg);
/* Drop the state and all pairs of (folder, replica): for re-pairing after a
 * UIDVALIDITY change. Touches no message. */
int store_replica_drop(store_txn_t *txn, uint32_t folder_id, uint32_t replica_id);

/* -------------------------------------------------------------- pairs */

typedef struct store_pair {
	uint32_t replica_uid;
	uint32_t store_uid;
	uint32_t flags;	     /* as last agreed, STORE_F_* */
	store_keywords_t kw; /* as last agreed, sorted */
} store_pair_t;

/* Create or replace the pair (folder, replica, replica_uid). Also replaces
 * any other pair that had the same store_uid (one-to-one). */
int store_pair_set(store_txn_t *txn, uint32_t folder_id, uint32_t replica_id,
		   const store_pair_t *p);
int store_pair_get_by_ruid(store_txn_t *txn, uint32_t folder_id, uint32_t replica_id,
			   uint32_t replica_uid, store_pair_t *out);
int store_pair_get_by_suid(store_txn_t *txn, uint32_t folder_id, uint32_t replica_id,
			   uint32_t store_uid, store_pair_t *out);
/* STORE_ENOTFOUND if there was none. */
int store_pair_del(store_txn_t *txn, uint32_t folder_id, uint32_t replica_id, uint32_t replica_uid);
typedef int (*store_pair_cb)(const store_pair_t *p, void *arg);
/* Pairs of (folder, replica) in replica UID order, from replica_uid ruid_from.
 * Do not write pairs of the same (folder, replica) from inside cb. */
int store_pair_iter(store_txn_t *txn, uint32_t folder_id, uint32_t replica_id, uint32_t ruid_from,
		    store_pair_cb cb, void *arg);

/* ---------------------------------------------------- pending operations */

enum store_pending_kind {
	STORE_PENDING_UPLOAD = 1, /* APPEND of store_uid to the replica */
	STORE_PENDING_DELETE = 2, /* UID EXPUNGE of replica_uid on the replica */
	STORE_PENDING_MOVE = 3,	  /* UID MOVE of replica_uid to dst_folder_id */
	STORE_PENDING_FLAGS = 4,  /* UID STORE of flags on replica_uid */
};

typedef struct store_pending {
	uint64_t id;   /* assigned by store_pending_add(), > 0 */
	uint32_t kind; /* enum store_pending_kind */
	uint32_t folder_id;
	uint32_t replica_id;
	uint32_t store_uid;
	uint32_t replica_uid;	 /* 0 if not known (uploads) */
	uint32_t target_uidnext; /* replica UIDNEXT before the operation */
	uint32_t dst_folder_id;	 /* MOVE only; else 0 */
	store_hash_t hash;	 /* blob of the message, to recognise the copy */
	const char *message_id;	 /* Message-ID header value, or "" */
	int64_t created;	 /* wall clock, seconds since the epoch */
} store_pending_t;

/* Record an intent before doing it; the id is written to *id_out (may be NULL;
 * p->id is ignored). message_id may be NULL; created 0 means now.
 * STORE_ENOTFOUND if the folder does not exist. Commit before the network
 * call. */
int store_pending_add(store_txn_t *txn, const store_pending_t *p, uint64_t *id_out);
int store_pending_get(store_txn_t *txn, uint64_t id, store_pending_t *out);
typedef int (*store_pending_cb)(const store_pending_t *p, void *arg);
/* Pending operations in id (creation) order; folder_id 0 = all folders. */
int store_pending_list(store_txn_t *txn, uint32_t folder_id, store_pending_cb cb, void *arg);
/* Resolve (drop) one. STORE_ENOTFOUND if there was none. */
int store_pending_del(store_txn_t *txn, uint64_t id);

/* ------------------------------------------------------------- checking */

typedef void (*store_problem_cb)(const char *problem, void *arg);
/*
 * Check the whole store for consistency in one read transaction: every
 * message's blob exists and refcounts equal the number of references; UIDs
 * below uidnext and modseqs at most highestmodseq; change log and messages
 * agree (one entry per live message at its modseq, tombstones only for
 * absent UIDs); folder counters right; name indexes and pair reverse indexes
 * match; no unreferenced blobs. Each problem found is passed to cb (may be
 * NULL) as one line for people. Returns 0 when consistent, STORE_ECORRUPT if
 * problems were found (*nproblems, may be NULL, says how many), or another
 * error if the check could not run.
 */
int store_check(store_t *st, store_problem_cb cb, void *arg, size_t *nproblems);

#endif
