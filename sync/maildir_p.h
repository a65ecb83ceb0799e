/*
 * Private to sync/maildir*.c: the replica session and the helpers shared by
 * the replica operations (maildir.c) and the tree reconciliation (moves,
 * new files, recovery: maildir_prep.c).
 */
#ifndef IB_SYNC_MAILDIR_P_H
#define IB_SYNC_MAILDIR_P_H

#include "sync/maildir.h"
#include "sync/maildir_name.h"
#include "sync/maildir_scan.h"
#include "sync/maildir_seal.h"
#include "sync/maildir_write.h"

/* UIDVALIDITY and UIDNEXT of one folder directory. */
typedef struct maildir_uids {
	uint32_t uidvalidity;
	uint32_t uidnext;
} maildir_uids_t;

/* Read <dir>/.imapbridge-uids: 0, -ENOENT when absent, -EINVAL when garbled. */
int maildir_uids_read(const char *dir, maildir_uids_t *out);
/* Write it atomically, and durably unless nosync (fsync = false). 0 or
 * -errno. */
int maildir_uids_write(const char *dir, const maildir_uids_t *u, bool nosync);
/* Stage it in batch b instead (maildir_batch_replace()): durable with the
 * batch's files, in place before any of them is renamed. 0 or -errno. */
int maildir_uids_stage(maildir_batch_t *b, const char *dir, const maildir_uids_t *u);
/* Read, or create with a fresh UIDVALIDITY different from avoid (the value
 * the store remembers, 0 if none), written as maildir_uids_write() does. */
int maildir_uids_load(const char *dir, uint32_t avoid, maildir_uids_t *out, bool nosync);

/* A deferred callback (see maildir.h, Durability). */
typedef struct md_deferred {
	replica_done_cb done; /* one of done / uid_cb */
	replica_uid_cb uid_cb;
	void *ctx;
	uint32_t uid;
	char *final_path; /* appends: where the file must be after the flush */
	unsigned gen;	  /* batch generation the op belongs to */
	int err;	  /* its flush failed */
} md_deferred_t;

/* One message file of the open folder, with its identity settled. */
typedef struct md_msg {
	uint32_t uid;
	char *name;
	bool in_new;
	unsigned mflags; /* MAILDIR_F_* */
	uint64_t size;
	time_t mtime;
} md_msg_t;

/* A folder whose directory connect() proved unchanged since the sync that
 * recorded the Maildir state (its highestmodseq and uidnext: what the proof
 * was checked against), with its UID file as read then. */
typedef struct md_proof {
	char *name;
	uint64_t hms;
	uint32_t uidnext;
	bool sealed;
	maildir_uids_t u;
} md_proof_t;

typedef struct maildir_replica {
	replica_t base;
	struct ev_loop *loop;
	ev_timer flush_w; /* flush_w.data = this */
	store_t *st;
	uint32_t account_id;
	char *account;
	char *root;
	char sep;
	bool nosync; /* fsync = false */
	double max_ratio; /* share of vanished files that holds the folder */
	char *label;
	uint64_t name_counter;
	char *host; /* for new file names: looked up once */
	int pid;

	/* the open folder */
	bool selected;
	char *folder; /* store name */
	char *dir;    /* its directory */
	char fmd5[MAILDIR_FMD5_LEN + 1];
	uint32_t folder_id; /* store folder, 0 if none yet */
	maildir_uids_t uids;
	bool uids_dirty;
	size_t n_paired;   /* pairs the store has for it */
	size_t n_vanished; /* ... whose file is gone */
	md_msg_t *msgs;	   /* sorted by uid */
	size_t n_msgs, cap_msgs;
	/* The folder's fingerprint at select() (maildir_folder_stamp()), given
	 * to the engine as its HIGHESTMODSEQ. When it equals the one recorded
	 * at the last completed sync, nothing changed in the directory since:
	 * select() does not read it, a scan since that value reports nothing,
	 * and the files are only read (ensure_loaded()) when an operation
	 * needs them. */
	uint64_t stamp;
	/* stamp says "unchanged since the last completed sync" (it equals the
	 * recorded value, directly or through a seal, see maildir_seal.h) */
	bool same;
	uint32_t sel_uidnext;	     /* UIDNEXT given to the engine at select() */
	bool sealed;		     /* select() accepted the folder's seal ... */
	maildir_seal_rec_t seal_old; /* ... this one */
	int seal_h;		     /* this session's watch (maildir_seal_watch()), or -1 */
	maildir_seal_t *seal;
	bool loaded; /* msgs, n_paired and n_vanished are filled in */

	maildir_batch_t *batch;
	unsigned gen;	      /* current batch generation */
	unsigned flushed_gen; /* last generation flushed (durable, or failed) */
	bool dirty;	      /* something written or queued since the last flush */
	struct worker *worker;	   /* flushes in the background; NULL: in line */
	maildir_batch_t *inflight; /* the batch the worker is flushing ... */
	unsigned inflight_gen;	   /* ... and its generation */
	bool quiescing;		   /* an operation waits for the worker */
	md_deferred_t *q;
	size_t q_head, q_len, q_cap;
	int delivering;
	bool dead; /* freed while delivering */

	/* Folders connect() found as their last sync left them, sorted by
	 * name: see maildir_replica_unchanged(). */
	md_proof_t *proofs;
	size_t n_proofs, cap_proofs;
} maildir_replica_t;

/* Log prefix helpers. */
#define MD_PFX "maildir: acct=%s"

/*
 * Settle the identities of the files of md's open folder (md->dir): assign
 * U= to files that have none (renaming them), adopt by content files that
 * replace a paired message (after a crash), skip and report broken files, and
 * fill md->msgs. Returns 0 or -errno (the folder could not be read).
 */
int maildir_prep_folder(maildir_replica_t *md);

/*
 * Look through the tree's folders (names, as maildir_list_folders() gave
 * them) for files moved between folders by a mail reader and move them in
 * the store (see maildir.h). Errors are logged; the files are then simply
 * treated as new where they are. Folders found unchanged since their last
 * sync go into md->proofs (names sorted, as given).
 */
void maildir_prep_moves(maildir_replica_t *md, char **names, size_t n);
/* Forget what the last maildir_prep_moves() proved. */
void maildir_proofs_clear(maildir_replica_t *md);

/*
 * Give every folder directory of the tree (names) that the store does not
 * know a store folder (a folder made by a mail reader); the remote sync then
 * creates it on the server. Errors are logged.
 */
void maildir_prep_new_folders(maildir_replica_t *md, char **names, size_t n);

/* Whether fingerprint stamp of folder directory dir proves the folder
 * unchanged since the sync that recorded rs (may be NULL): it is the
 * recorded value, or the folder's seal vouches for it (*sealed; *old gets
 * that seal, if old is not NULL). */
bool maildir_stamp_proves(const char *dir, const store_replica_t *rs, uint64_t stamp, bool *sealed,
			  maildir_seal_rec_t *old);

/* REPLICA_F_* <-> MAILDIR_F_* (P is not a system flag: see maildir.h). */
unsigned maildir_to_replica_flags(unsigned mflags);
unsigned maildir_from_replica_flags(unsigned rflags, unsigned old_mflags);

/* The name a file gets when it is given identity uid in the folder fmd5:
 * its unique part and info kept. Returns a new string. */
char *maildir_identity_name(const maildir_entry_t *e, uint32_t uid, const char *fmd5);

/* SHA-256 of a file's bytes, as the store hashes blobs. 0 or -errno. */
int maildir_hash_file(const char *path, store_hash_t *out);

#endif
