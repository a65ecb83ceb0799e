/*
 * The sync engine's downloads: new replica messages fetched in pipelined
 * slices, held until the fetch that asked for them ends OK (bodies past the
 * commit size wait in temporary files), then committed to the store with
 * their pairs; a message identical to an unpaired store message is paired
 * with it instead of copied (see engine.h for the commit rules).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/util.h"
#include "sync/engine.h"
#include "sync/engine_p.h"

static size_t commit_max_bytes(const engine_job_t *job)
{
	return job->o.commit_bytes ? job->o.commit_bytes : (16u << 20);
}

/* One fetch() call: the slice newuids[first, first + n) it asked for. */
typedef struct fetch_ctx {
	engine_job_t *job;
	size_t first, n;
} fetch_ctx_t;

static void *in_open(void *ctx, uint64_t size)
{
	engine_job_t *job = ctx;
	incoming_t *in = xcalloc(1, sizeof(*in));

	in->size = size;
	/* Bodies wait in the queue until their fetch completes (see
	 * fetch_cb()): past the commit size the rest go to disk. */
	if (size >= ENGINE_SPOOL_MIN || job->in_bytes >= commit_max_bytes(job)) {
		in->spool = eng_spool_new(job);
		/* Hashed as it arrives: the store then reads the file once. */
		in->md = in->spool ? EVP_MD_CTX_new() : NULL;
		if (!in->md || EVP_DigestInit_ex(in->md, EVP_sha256(), NULL) != 1) {
			eng_incoming_free(in);
			return NULL;
		}
	}
	return in;
}

static int in_write(void *ctx, void *h, const char *data, size_t len)
{
	incoming_t *in = h;

	if (in->spool) {
		if (fwrite(data, 1, len, in->spool) != len ||
		    EVP_DigestUpdate(in->md, data, len) != 1)
			return -1;
	} else {
		buf_append(&in->mem, data, len);
	}
	in->written += len;
	return 0;
}

/* Index of uid in the sorted newuids[], or SIZE_MAX. Replies to pipelined
 * fetches may interleave: this tells which call a message belongs to. */
static size_t newuid_index(const engine_job_t *job, uint32_t uid)
{
	size_t a = ib_u32_lower_bound(job->newuids, job->n_new, uid);

	return a < job->n_new && job->newuids[a] == uid ? a : SIZE_MAX;
}

static void in_done(void *ctx, void *h, const replica_msg_t *m)
{
	engine_job_t *job = ctx;
	incoming_t *in = h;

	if (in->spool) {
		unsigned hl = 0;
		bool ok = fflush(in->spool) == 0 &&
			  EVP_DigestFinal_ex(in->md, in->hash.b, &hl) == 1 && hl == STORE_HASH_LEN;
		EVP_MD_CTX_free(in->md);
		in->md = NULL;
		if (!ok) {
			eng_incoming_free(in);
			job->stats.failed++;
			job->incomplete = true;
			return;
		}
	} else {
		/* Hashed now, while the bytes just read are in the cache: the
		 * commit that stores them may come megabytes later. */
		store_hash_compute(in->mem.data ? in->mem.data : "", in->written, &in->hash);
	}
	in->m = *m;
	/* With a read ahead, newuids[] is still being filled: see
	 * eng_take_read(). */
	in->new_idx = job->read_ahead ? SIZE_MAX : newuid_index(job, m->uid);
	in->kw = replica_kw_canon(m->keywords);
	in->m.keywords = NULL;
	in->m.message_id = NULL;
	in->complete = true;
	if (job->in_tail)
		job->in_tail->next = in;
	else
		job->in_head = in;
	job->in_tail = in;
	job->in_bytes += in->written;
	job->in_count++;
}

static void in_abort(void *ctx, void *h)
{
	engine_job_t *job = ctx;
	eng_incoming_free(h);
	job->stats.failed++;
	job->incomplete = true;
}

typedef struct ingest {
	engine_job_t *job;
	unsigned added;
} ingest_t;

int eng_hash_idx_cmp(const void *a, const void *b, void *arg)
{
	const engine_job_t *job = arg;
	return memcmp(job->ups[*(const uint32_t *)a].hash.b, job->ups[*(const uint32_t *)b].hash.b,
		      STORE_HASH_LEN);
}

/* An unpaired store message with exactly these bytes, or NULL. */
static upload_ent_t *twin_find(engine_job_t *job, const store_hash_t *h)
{
	size_t lo = 0, hi = job->by_hash ? job->n_ups : 0;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		upload_ent_t *u = &job->ups[job->by_hash[mid]];
		int c = memcmp(u->hash.b, h->b, STORE_HASH_LEN);
		if (c == 0) {
			/* First unpaired one with this hash. */
			while (mid > 0 && memcmp(job->ups[job->by_hash[mid - 1]].hash.b, h->b,
						 STORE_HASH_LEN) == 0)
				mid--;
			for (; mid < job->n_ups; mid++) {
				u = &job->ups[job->by_hash[mid]];
				if (memcmp(u->hash.b, h->b, STORE_HASH_LEN) != 0)
					break;
				if (!u->paired)
					return u;
			}
			return NULL;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Pair replica UID ruid with store UID suid, with nm's flags. */
static int pair_new(store_txn_t *txn, engine_job_t *job, uint32_t ruid, uint32_t suid,
		    const store_msg_new_t *nm)
{
	store_pair_t pair;

	memset(&pair, 0, sizeof(pair));
	pair.replica_uid = ruid;
	pair.store_uid = suid;
	pair.flags = nm->flags;
	pair.kw = nm->kw;
	return store_pair_set(txn, job->o.folder_id, job->o.replica_id, &pair);
}

static int ingest_fn(store_txn_t *txn, void *arg)
{
	ingest_t *ig = arg;
	engine_job_t *job = ig->job;
	int rc;

	ig->added = 0;
	for (size_t i = 0; i < job->n_ups; i++)
		job->ups[i].paired = false;
	for (incoming_t *in = job->in_head; in; in = in->next) {
		store_msg_new_t nm;
		uint32_t suid;
		store_pair_t pair;
		char **vec;

		if (!in->confirmed)
			continue;
		/* A UID already paired (a repeated fetch): never twice. */
		rc = store_pair_get_by_ruid(txn, job->o.folder_id, job->o.replica_id, in->m.uid,
					    &pair);
		if (rc == 0)
			continue;
		if (rc != STORE_ENOTFOUND)
			return rc;
		memset(&nm, 0, sizeof(nm));
		nm.hash = in->hash;
		if (in->spool)
			rc = store_blob_put_fd_hashed(txn, fileno(in->spool), 0, in->written,
						      &nm.hash);
		else
			rc = store_blob_put_hashed(txn, in->mem.data ? in->mem.data : "",
						   in->written, &nm.hash);
		if (rc)
			return rc;
		nm.flags = in->m.flags & STORE_F_ALL;
		eng_str_to_kw(in->kw, &nm.kw, &vec);
		/* New on both sides with the same bytes (a move whose answer was
		 * lost, or the same mail delivered twice): pair them instead of
		 * copying each way. */
		upload_ent_t *twin = twin_find(job, &nm.hash);
		if (twin) {
			rc = pair_new(txn, job, in->m.uid, twin->suid, &nm);
			replica_kw_free_vec(vec, nm.kw.n);
			if (rc)
				return rc;
			twin->paired = true;
			continue;
		}
		nm.internaldate = in->m.internaldate ? (int64_t)in->m.internaldate : (int64_t)time(NULL);
		rc = store_msg_add(txn, job->o.folder_id, &nm, &suid, NULL);
		if (rc == 0)
			rc = pair_new(txn, job, in->m.uid, suid, &nm);
		replica_kw_free_vec(vec, nm.kw.n);
		if (rc)
			return rc;
		ig->added++;
	}
	return 0;
}

int eng_ingest_job(store_txn_t *txn, engine_job_t *job)
{
	ingest_t ig = { job, 0 };
	int rc = ingest_fn(txn, &ig);

	job->ingest_added = ig.added;
	return rc;
}

/* Free the queued messages that match (all confirmed ones, or those of one
 * fetch call), and recount what stays queued. */
static void in_drop(engine_job_t *job, bool confirmed, const fetch_ctx_t *fc)
{
	incoming_t **pp = &job->in_head;

	job->in_tail = NULL;
	job->in_bytes = 0;
	job->in_count = 0;
	while (*pp) {
		incoming_t *in = *pp;
		if (confirmed ? in->confirmed
			      : in->new_idx >= fc->first && in->new_idx - fc->first < fc->n) {
			*pp = in->next;
			eng_incoming_free(in);
			continue;
		}
		job->in_bytes += in->written;
		job->in_count++;
		job->in_tail = in;
		pp = &in->next;
	}
}

/* The deferred ingest (EW_INGEST) was committed. */
void eng_ingest_done(engine_job_t *job)
{
	job->stats.downloaded += job->ingest_added;
	in_drop(job, true, NULL);
}

/* Commit the messages whose fetch completed; the others stay queued. A
 * message is never committed while its fetch may still turn out to be a
 * broken answer (a second body for the same UID: which one is real cannot
 * be told, so neither is kept). */
static bool any_confirmed(const engine_job_t *job)
{
	for (const incoming_t *in = job->in_head; in; in = in->next)
		if (in->confirmed)
			return true;
	return false;
}

static void ingest_flush(engine_job_t *job)
{
	ingest_t ig = { job, 0 };
	int rc;

	if (!any_confirmed(job))
		return;
	rc = eng_write(job, ingest_fn, &ig);
	if (rc)
		eng_fail(job, ENGINE_STORE_ERR, "cannot add messages to the store: %s", store_strerror(rc));
	else
		job->stats.downloaded += ig.added;
	in_drop(job, true, NULL);
}

static bool in_over_limit(const engine_job_t *job)
{
	unsigned maxn = job->o.commit_msgs ? job->o.commit_msgs : 1000;
	return job->in_bytes >= commit_max_bytes(job) || job->in_count >= maxn;
}

static void fetch_cb(int status, void *ctx)
{
	fetch_ctx_t *fc = ctx;
	engine_job_t *job = fc->job;

	job->waiting--;
	if (status == REPLICA_MSG_BAD) {
		job->incomplete = true;
		status = REPLICA_OK;
	}
	if (status == REPLICA_OK) {
		for (incoming_t *in = job->in_head; in; in = in->next)
			if (in->new_idx >= fc->first && in->new_idx - fc->first < fc->n)
				in->confirmed = true;
	} else {
		in_drop(job, false, fc);
	}
	eng_op_fail(job, status, "fetch");
	if (in_over_limit(job)) {
		ingest_flush(job);
	} else if (job->waiting == 0) {
		/* The last ones wait for the job's next commit, unless an
		 * upload follows: it must know first which store messages
		 * found their twin here (ingest_fn), or it sends them too. */
		if (any_confirmed(job) && job->n_ups == 0 && job->result == ENGINE_OK)
			job->deferred_w |= EW_INGEST;
		else
			ingest_flush(job);
	}
	eng_kick(job);
}

void eng_fetch_sink_init(engine_job_t *job)
{
	static const replica_body_sink_t sink_tmpl = {
		.open = in_open, .write = in_write, .done = in_done, .abort = in_abort,
	};

	job->fetch_sink = sink_tmpl;
	job->fetch_sink.ctx = job;
}

void eng_take_read(engine_job_t *job)
{
	incoming_t **pp = &job->in_head;
	bool ok = job->read_status == REPLICA_OK || job->read_status == REPLICA_MSG_BAD;
	size_t got = 0;

	job->in_tail = NULL;
	job->in_bytes = 0;
	job->in_count = 0;
	while (*pp) {
		incoming_t *in = *pp;
		in->new_idx = newuid_index(job, in->m.uid);
		if (!ok || in->new_idx == SIZE_MAX) {
			/* Arrived after the scan, or known already ("n:*"
			 * names the last message when none is that new). */
			*pp = in->next;
			eng_incoming_free(in);
			continue;
		}
		in->confirmed = true;
		got++;
		job->in_bytes += in->written;
		job->in_count++;
		job->in_tail = in;
		pp = &in->next;
	}
	job->next_new = job->n_new;
	if (got < job->n_new) {
		/* Not all came (failed, or past the read's bound): what did
		 * is kept, the rest waits for the usual fetch. */
		job->incomplete = true;
		job->again = true;
	}
	if (got && job->result == ENGINE_OK)
		job->deferred_w |= EW_INGEST;
}

void eng_do_fetch(engine_job_t *job)
{
	unsigned batch = job->o.fetch_batch ? job->o.fetch_batch : 200;

	if (job->read_ahead) {
		eng_take_read(job);
		return;
	}
	if (job->next_new >= job->n_new)
		return;
	eng_fetch_sink_init(job);
	/* Issue every batch at once: the replica pipelines them. */
	while (job->next_new < job->n_new) {
		size_t n = job->n_new - job->next_new;
		if (n > batch)
			n = batch;
		fetch_ctx_t *fc = eng_ctx(job, sizeof(*fc));
		fc->job = job;
		fc->first = job->next_new;
		fc->n = n;
		job->waiting++;
		job->r->ops->fetch(job->r, job->newuids + job->next_new, n, &job->fetch_sink,
				   fetch_cb, fc);
		job->next_new += n;
		if (job->result != ENGINE_OK)
			break;
	}
}
