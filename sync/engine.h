/*
 * The sync engine: a three-way merge of one store folder with one replica
 * folder (DESIGN.md, "Replicas and the sync algorithm"), written once against
 * sync/replica.h and store/store.h.
 *
 * One engine_job_t syncs one folder over one replica session that the
 * caller has connected. It selects the folder, resolves pending operations
 * left by an earlier run, scans the replica (CHANGEDSINCE or full), and then:
 * copies new replica messages into the store, uploads new store messages,
 * deletes on either side only what the pair table proves was deleted on the
 * other, and merges flags and keywords per flag against the agreed value.
 *
 * Safety: a changed UIDVALIDITY, or a sync that would delete more than
 * max_deletion_ratio of the folder's paired messages on either side, holds
 * the folder in the store (store_folder_hold) and deletes nothing; the job
 * then ends with ENGINE_HELD. Every upload and replica deletion is recorded
 * as a pending operation (committed) before it is sent, and resolved first
 * by the next job on that folder, so a crash at any point neither loses nor
 * duplicates a message.
 *
 * Ownership: the job borrows the store and the replica session until its
 * callback has run; it copies opts (strings included). The job frees itself
 * after calling done; engine_cancel() before that stops it (done is called
 * with ENGINE_CANCELLED, synchronously).
 */
#ifndef IB_SYNC_ENGINE_H
#define IB_SYNC_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"
#include "sync/replica.h"

enum engine_result {
	ENGINE_OK = 0,
	ENGINE_HELD = -1,        /* folder held for safety (or was already held) */
	ENGINE_FOLDER_ERR = -2,  /* this folder failed; others may go on */
	ENGINE_REPLICA_ERR = -3, /* the replica session was lost */
	ENGINE_STORE_ERR = -4,   /* the store failed (disk full, corrupt) */
	ENGINE_CANCELLED = -5,
	ENGINE_AGAIN = -6,       /* only with opts.read_ahead: the folder needs another
	                            job, without read_ahead (what this one did is kept) */
};

const char *engine_strerror(int result);

typedef struct engine_opts {
	uint32_t folder_id;         /* store folder */
	uint32_t replica_id;        /* STORE_REPLICA_REMOTE, STORE_REPLICA_MAILDIR */
	const char *replica_name;   /* the replica's folder name (UTF-8) */
	const char *log_prefix;     /* "sync: acct=home box=INBOX" for messages */
	const char *account;        /* account and store folder names, for the */
	const char *folder;         /* recovery command in messages (may be NULL) */
	double max_deletion_ratio;  /* 0 <= r <= 1 (0: hold every mass deletion);
	                               >= 1 disables the check */
	bool readonly;              /* never write to the replica */
	bool force_full;            /* ignore modseqs, compare everything */
	unsigned fetch_batch;       /* messages per fetch() call; 0 = 200 */
	/* Fetched messages are committed when the fetch that asked for them
	 * has ended OK (so a server cannot slip in a body nobody asked for),
	 * at the latest once this many bytes or messages of confirmed fetches
	 * are queued, and the last ones with the job's final commit; bodies
	 * past the byte limit wait in temporary files. */
	size_t commit_bytes;        /* 0 = 16 MiB */
	unsigned commit_msgs;       /* 0 = 1000 */
	int settle_secs;            /* an interrupted upload not found on the replica is
	                               sent again only when older than this (the server
	                               may still be storing it); 0 = 3 s, < 0 = at once */
	/* Counters of the replica folder already known from STATUS/LIST-STATUS
	 * (has_counts) let the job skip the folder without selecting it when
	 * nothing changed on either side since the last sync. */
	bool has_counts;
	replica_counts_t counts;
	/* Optional: called (with the done() context) once the job will send
	 * the replica no more commands: right before its final commit, or
	 * once its downloads are sent when nothing else is left for the
	 * replica (their answers still come to this job). The caller can
	 * then send the next folder's commands behind them. done() still
	 * follows. Not for a replica that may answer synchronously, nor one
	 * whose answers to the next folder's commands could be taken for
	 * this one's. */
	void (*release)(void *ctx);
	/* With release: only once nothing at all is left for the replica (the
	 * final commit), for a replica with one folder open at a time. */
	bool release_late;
	/* With release: when nothing waits to go to the replica (no pending
	 * operation, every store change pushed) and the counters above show
	 * a delta to read, the job sends the folder's whole read at once
	 * (replica select_read()) and releases the session right away. If the
	 * replica turns out to need a write after all, or the read could not
	 * be used (the folder changed between the counters and the SELECT),
	 * the job keeps what it learnt and ends with ENGINE_AGAIN: the caller
	 * runs the folder again without read_ahead. */
	bool read_ahead;
	/* Optional: the job's final commit (its sync state, with the writes
	 * deferred until then) joins this group instead of committing on its
	 * own; done() comes once the group was flushed. */
	store_group_t *group;
} engine_opts_t;

typedef struct engine_stats {
	unsigned downloaded;   /* replica -> store new messages */
	unsigned uploaded;     /* store -> replica new messages */
	unsigned deleted_store;    /* expunged in the store (gone on the replica) */
	unsigned deleted_replica;  /* deleted on the replica (expunged in the store) */
	unsigned flags_store;      /* flag changes applied to the store */
	unsigned flags_replica;    /* flag changes applied to the replica */
	unsigned failed;           /* messages that failed (retried next time) */
	unsigned moved;            /* moved on the replica (UID MOVE) */
	unsigned deferred;         /* uploads held back: an interrupted one may still
	                              land; sync again in a few seconds */
	bool skipped;              /* unchanged on both sides: not even selected */
	bool full_scan;            /* compared every message (no modseq delta) */
	char message[512];         /* for ENGINE_HELD / errors: a message for people */
} engine_stats_t;

typedef struct engine_job engine_job_t;

/* Called once when the job ends; stats valid during the call. */
typedef void (*engine_done_cb)(int result, const engine_stats_t *stats, void *ctx);

/*
 * Start syncing one folder. The replica session r must be connected (its
 * connect() completed) and idle (no folder operation in flight). May call
 * done before returning (a synchronous replica, or an early failure); the
 * returned pointer is then NULL.
 */
engine_job_t *engine_sync_folder(store_t *st, replica_t *r, const engine_opts_t *opts,
				 engine_done_cb done, void *ctx);

/* True when a job with these opts would skip the folder (counters and
 * modseqs as after the last sync, no local change, nothing pending): lets
 * the scheduler avoid opening connections for nothing. Read in txn, a read
 * (or write) transaction the caller holds. */
bool engine_unchanged_txn(store_txn_t *txn, const engine_opts_t *opts);

/* Stop a running job: done runs with ENGINE_CANCELLED before this returns,
 * and the job is freed. The caller must then free the replica session (its
 * callbacks for operations in flight must never arrive). Operations already
 * sent to the replica are resolved by the next job through the
 * pending-operation records. */
void engine_cancel(engine_job_t *job);

/*
 * Helpers shared with recover.c and tests.
 */
/* Message-ID header value (with <>) of raw message bytes, copied into out;
 * "" when there is none. */
void engine_message_id(const char *data, size_t len, char *out, size_t outlen);

#endif
