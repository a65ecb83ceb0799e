/*
 * Private to the sync engine (engine.c, engine_pending.c): the job's state
 * and the helpers both files use. Nothing outside sync/engine*.c includes it.
 */
#ifndef IB_SYNC_ENGINE_P_H
#define IB_SYNC_ENGINE_P_H

#include <stdio.h>

#include <openssl/evp.h>

#include "lib/buf.h"
#include "sync/engine.h"

/* Deletions below this count are never held, whatever the ratio: emptying a
 * tiny folder is not a disaster worth stopping for. */
#define ENGINE_MASS_MIN 5
/* Messages at least this big are spooled to an unlinked temporary file while
 * they arrive, so memory stays bounded. */
#define ENGINE_SPOOL_MIN (1u << 20)
/* Upload batch limits: pending records are committed per batch. */
#define ENGINE_UPLOAD_MSGS 500
#define ENGINE_UPLOAD_BYTES (8u << 20)
/* An interrupted upload not found on the replica is retried only once its
 * record is this old: the server may still be storing the APPEND the dead
 * connection sent (it runs after the client is gone). */
#define ENGINE_SETTLE_SECS 3
/* Store writes that wait for the job's next commit (eng_write()). */
enum {
	EW_APPLY = 1,    /* the replica's deletions and flags, agreed values */
	EW_DELETES = 2,  /* deletions the replica confirmed: pairs and intents */
	EW_FLAGS = 4,    /* flags the replica accepted: agreed values */
	EW_INGEST = 8,   /* the last fetched messages (nothing to upload) */
	EW_UPLOADS = 16, /* the last upload batch: pairs, intents dropped */
};
enum phase {
	P_START,
	P_SELECT,
	P_CHECK,
	P_PENDING,
	P_SCAN,
	P_DECIDE,
	P_FETCH,
	P_DELETE,
	P_FLAGS,
	P_UPLOAD,
	P_FINISH,
	P_END,
};

/* One flag update in flight: the pairs it covers. */
typedef struct flag_ctx {
	struct engine_job *job;
	size_t *idx;
	size_t n;
	uint32_t *uids;
	size_t idx1;          /* storage when n == 1 */
	uint32_t uid1;
} flag_ctx_t;

typedef struct pair_ent {
	uint32_t ruid, suid;
	unsigned a_flags;
	char *a_kw;
	bool r_seen;          /* the scan reported it */
	unsigned r_flags;
	char *r_kw;
	bool vanished;        /* gone from the replica */
	bool s_live;          /* live in the store */
	unsigned s_flags;
	char *s_kw;
	/* decided */
	bool del_replica;     /* delete on the replica */
	bool set_replica;     /* push new flags to the replica */
	unsigned n_flags;
	char *n_kw;
	bool ok;              /* replica op succeeded */
	char *add_kw, *del_kw; /* set_flags arguments while in flight */
	flag_ctx_t fc;        /* callback context of a single update */
} pair_ent_t;

typedef struct pend_ent {
	store_pending_t p;
	char *message_id;
} pend_ent_t;

/* A store message with no pair: a candidate for upload (kept small: one
 * per message of the folder). */
typedef struct upload_ent {
	uint32_t suid;
	store_hash_t hash;
	bool move_target;     /* a pending MOVE brings it to the replica */
	bool deferred;        /* an interrupted upload of it may still land */
	bool paired;          /* paired with an identical new replica message */
} upload_ent_t;

/* Context of one upload callback (lives in its batch entry). */
typedef struct up_ctx {
	struct engine_job *job;
	size_t idx;
} up_ctx_t;

/* One message of the upload batch in flight. */
typedef struct batch_ent {
	uint32_t suid;
	store_hash_t hash;
	uint64_t size;
	unsigned flags;
	char *kw;
	int64_t internaldate;
	char *message_id;
	uint64_t pending_id;
	char *data;           /* the bytes, or */
	FILE *spool;          /* a temporary file with them (append_fd), */
	void *map;            /* mapped read-only for a replica without append_fd
	                         (file pages, not heap) */
	size_t len;
	uint32_t ruid;        /* learnt */
	int status;
	bool done;
	replica_new_msg_t nm; /* append() argument while in flight */
	replica_find_t q;     /* find() argument while in flight */
	up_ctx_t uc;          /* callback context */
} batch_ent_t;

/* One message arriving from the replica. */
typedef struct incoming {
	uint64_t size;
	buf_t mem;
	FILE *spool;          /* big messages */
	uint64_t written;
	bool complete;
	size_t new_idx;       /* its UID's index in newuids[] (SIZE_MAX: none) */
	bool confirmed;       /* the fetch that asked for it completed OK */
	replica_msg_t m;      /* uid, flags, internaldate (keywords copied) */
	char *kw;
	EVP_MD_CTX *md;       /* hash-only sinks (pending resolution), and the
	                         spool's hash while it is written */
	store_hash_t hash;    /* of the bytes (spool or mem), once complete */
	struct incoming *next;
} incoming_t;

struct engine_job {
	store_t *st;
	replica_t *r;
	engine_opts_t o;
	char *replica_name;
	char *log_prefix;
	char *recover_cmd;           /* "imapbridge folder recover home INBOX" */
	engine_done_cb done;
	void *ctx;

	int phase;
	int waiting;
	bool in_step;
	bool finished;
	bool cancelled;
	int result;
	engine_stats_t stats;

	store_folder_t folder;       /* copied scalars; name not kept */
	bool have_rs;
	store_replica_t rs;          /* name not kept */
	replica_box_t box;
	bool full;
	bool released;               /* o.release() was called */
	store_group_ent_t *group_ent; /* the final commit, queued in o.group */
	bool scan_early;             /* select_scan() sent the delta scan with SELECT */
	bool incomplete;             /* something failed: do not advance modseq */
	bool read_ahead;             /* select_read() sent the whole read; the
	                                session went on at once */
	int read_status;             /* of that read, once it ended */
	bool again;                  /* end with ENGINE_AGAIN (see engine.h) */
	replica_read_t read;         /* select_read() argument while in flight */

	pair_ent_t *pairs;           /* sorted by ruid */
	size_t n_pairs, cap_pairs;
	uint32_t *known;

	uint32_t *newuids;           /* unpaired replica UIDs reported by the scan */
	size_t n_new, cap_new, next_new;

	pend_ent_t *pend;
	size_t n_pend, next_pend;
	/* pending resolution of one upload */
	uint32_t *cands;
	size_t n_cands;
	store_hash_t cand_match_hash;
	uint32_t cand_match;

	upload_ent_t *ups;
	size_t n_ups, next_up;
	batch_ent_t *batch; /* ENGINE_UPLOAD_MSGS entries, from the first upload on:
	                      a job with none (most) touches none of it */
	size_t n_batch;
	uint32_t *by_hash;           /* ups indexes sorted by hash */
	int upload_step;             /* 0 record+send, 1 find, 2 commit */

	incoming_t *in_head, *in_tail;
	size_t in_bytes;
	unsigned in_count;

	uint64_t decided_modseq;     /* store HIGHESTMODSEQ when decisions were made */
	unsigned deferred_w;         /* EW_* writes waiting for the next commit */
	unsigned flags_pending;      /* flag updates the replica has not answered */
	bool batch_recorded;         /* the first upload batch is filled and its
	                                intents committed (with the deletions) */
	bool upload_started;         /* appends were sent */
	unsigned apply_expunged, apply_flagged, ingest_added;

	/* Arguments of operations in flight (replica.h: valid until the
	 * callback), kept here so concurrent jobs share nothing. */
	replica_scan_opts_t scan_opts;
	replica_scan_sink_t scan_sink;
	replica_body_sink_t fetch_sink;
	replica_body_sink_t hash_sink;
	replica_find_t pend_q;
	char *move_to;               /* move() target name while in flight */
	void **ctxs;                 /* callback contexts, freed with the job (a cancelled
	                                job's callbacks never come) */
	size_t n_ctxs;
	uint32_t *deferred;          /* store UIDs whose upload waits (see engine_pending.c) */
	size_t n_deferred;
};

/* Shared helpers (engine.c). */
void eng_fail(engine_job_t *job, int result, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A replica operation that can only fail the folder or the session. */
void eng_op_fail(engine_job_t *job, int status, const char *what);
/* Run the state machine unless already inside it; true if the job was freed. */
bool eng_kick(engine_job_t *job);
pair_ent_t *eng_pair_find(engine_job_t *job, uint32_t ruid);
void eng_incoming_free(incoming_t *in);
/* An unlinked temporary file for a big message, beside the store (its disk
 * must hold the message anyway; /tmp is often a small tmpfs), or NULL with
 * the reason logged. */
FILE *eng_spool_new(engine_job_t *job);
char *eng_kw_to_str(const store_keywords_t *kw);
void eng_str_to_kw(const char *s, store_keywords_t *kw, char ***vec);
int eng_load_state(engine_job_t *job);
/* A store write of the job, with the writes deferred so far (engine.c). */
int eng_write(engine_job_t *job, store_txn_fn fn, void *arg);
/* The same for an intent (a pending record): durable when this returns, with
 * every commit before it. */
int eng_write_intent(engine_job_t *job, store_txn_fn fn, void *arg);
/* The pairs of the upload batch, and its intents (engine_pending.c). */
int eng_up_commit_fn(store_txn_t *txn, void *arg);
int eng_up_record_fn(store_txn_t *txn, void *arg);
/* Fill the first upload batch now (its intents go with the deletions'). */
int eng_upload_prefill(engine_job_t *job);
/* Downloads (engine_fetch.c): P_FETCH; the deferred ingest's store write and
 * what follows its commit; the order of job->by_hash. */
void eng_do_fetch(engine_job_t *job);
/* The body sink of fetches (job->fetch_sink). */
void eng_fetch_sink_init(engine_job_t *job);
/* P_FETCH after select_read(): take the bodies that came with the read. */
void eng_take_read(engine_job_t *job);
int eng_ingest_job(store_txn_t *txn, engine_job_t *job);
void eng_ingest_done(engine_job_t *job);
int eng_hash_idx_cmp(const void *a, const void *b, void *arg);
/* A zeroed callback context owned by the job. */
void *eng_ctx(engine_job_t *job, size_t size);

/* Writes to the replica (engine_write.c): P_DELETE and P_FLAGS, and the
 * store side of what the replica confirmed (deferred writes, see
 * eng_write()). */
void eng_do_delete(engine_job_t *job);
void eng_do_flags(engine_job_t *job);
int eng_del_resolve_job(store_txn_t *txn, engine_job_t *job);
int eng_flags_commit_fn(store_txn_t *txn, void *arg);

/* Pending operations and uploads (engine_pending.c). */
/* Resolve the next pending operation; keeps the job in P_PENDING until all are. */
void eng_do_pending(engine_job_t *job);
/* Upload the next batch of new store messages; keeps the job in P_UPLOAD. */
void eng_do_upload(engine_job_t *job);
/* Store UIDs of this folder that a pending MOVE from another folder will
 * bring to the replica (they must not be uploaded); sorted, new array. */
int eng_move_targets(engine_job_t *job, uint32_t **suids, size_t *n);

#endif
