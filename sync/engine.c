/*
 * The sync engine: see engine.h. One job is a small state machine driven by
 * replica callbacks. Callbacks may come synchronously (Maildir) or from the
 * loop (IMAP); eng_kick() keeps the recursion flat either way.
 */
#include "sync/engine.h"
#include "sync/engine_p.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/util.h"
#include "sync/imap_replica.h"

const char *engine_strerror(int result)
{
	switch (result) {
	case ENGINE_OK: return "ok";
	case ENGINE_HELD: return "folder held for safety";
	case ENGINE_FOLDER_ERR: return "folder failed";
	case ENGINE_REPLICA_ERR: return "connection to the replica lost";
	case ENGINE_STORE_ERR: return "store error";
	case ENGINE_CANCELLED: return "cancelled";
	case ENGINE_AGAIN: return "to be synced again";
	default: return "unknown engine result";
	}
}

static void job_step(engine_job_t *job);
static void scan_msg_cb(void *ctx, const replica_msg_t *m);
static void scan_vanished_cb(void *ctx, uint32_t lo, uint32_t hi);
static void release(engine_job_t *job);

void *eng_ctx(engine_job_t *job, size_t size)
{
	void *p = xcalloc(1, size ? size : 1);
	job->ctxs = xrealloc(job->ctxs, (job->n_ctxs + 1) * sizeof(void *));
	job->ctxs[job->n_ctxs++] = p;
	return p;
}

void eng_fail(engine_job_t *job, int result, const char *fmt, ...)
{
	va_list ap;

	if (job->result != ENGINE_OK)
		return;
	job->result = result;
	va_start(ap, fmt);
	vsnprintf(job->stats.message, sizeof(job->stats.message), fmt, ap);
	va_end(ap);
}

static int replica_to_engine(int status)
{
	switch (status) {
	case REPLICA_OK: return ENGINE_OK;
	case REPLICA_MSG_BAD:
	case REPLICA_FOLDER_BAD: return ENGINE_FOLDER_ERR;
	case REPLICA_CANCELLED: return ENGINE_CANCELLED;
	default: return ENGINE_REPLICA_ERR;
	}
}

/* A replica operation that can only fail the folder or the session. The
 * message says why when the replica knows (the IMAP client's reason: "127.0.0.1
 * sent a malformed response (NUL byte in a line)"), else the status. */
void eng_op_fail(engine_job_t *job, int status, const char *what)
{
	char why[512];
	const char *reason = NULL;

	if (status == REPLICA_OK || status == REPLICA_MSG_BAD)
		return;
	if ((status == REPLICA_BAD || status == REPLICA_FOLDER_BAD) && imap_replica_is(job->r))
		reason = imap_replica_reason(job->r, why, sizeof(why));
	eng_fail(job, replica_to_engine(status), "%s failed: %s", what,
		 reason ? reason : replica_strerror(status));
}

FILE *eng_spool_new(engine_job_t *job)
{
	const char *dir = store_path(job->st);
	int fd = open(dir, O_RDWR | O_TMPFILE | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		/* A file system without O_TMPFILE: a named file, unlinked at once. */
		char *path = xasprintf("%s/spool.XXXXXX", dir);
		fd = mkostemp(path, O_CLOEXEC);
		if (fd >= 0)
			unlink(path);
		free(path);
	}
	FILE *f = fd >= 0 ? fdopen(fd, "w+") : NULL;
	if (!f) {
		log_warn("%s: cannot make a temporary file for a big message in %s: %s",
			 job->log_prefix, dir, strerror(errno));
		if (fd >= 0)
			close(fd);
	}
	return f;
}

void eng_incoming_free(incoming_t *in)
{
	if (!in)
		return;
	buf_free(&in->mem);
	if (in->spool)
		fclose(in->spool);
	if (in->md)
		EVP_MD_CTX_free(in->md);
	free(in->kw);
	free(in);
}

static void job_free(engine_job_t *job)
{
	for (size_t i = 0; i < job->n_pairs; i++) {
		free(job->pairs[i].a_kw);
		free(job->pairs[i].r_kw);
		free(job->pairs[i].s_kw);
		free(job->pairs[i].n_kw);
		free(job->pairs[i].add_kw);
		free(job->pairs[i].del_kw);
	}
	free(job->pairs);
	free(job->known);
	free(job->newuids);
	for (size_t i = 0; i < job->n_pend; i++)
		free(job->pend[i].message_id);
	free(job->pend);
	free(job->cands);
	for (size_t i = 0; i < job->n_batch; i++) {
		free(job->batch[i].kw);
		free(job->batch[i].data);
		free(job->batch[i].message_id);
		if (job->batch[i].map)
			munmap(job->batch[i].map, job->batch[i].len);
		if (job->batch[i].spool)
			fclose(job->batch[i].spool);
	}
	free(job->batch);
	free(job->ups);
	free(job->by_hash);
	free(job->move_to);
	free(job->deferred);
	for (size_t i = 0; i < job->n_ctxs; i++)
		free(job->ctxs[i]);
	free(job->ctxs);
	while (job->in_head) {
		incoming_t *n = job->in_head->next;
		eng_incoming_free(job->in_head);
		job->in_head = n;
	}
	free(job->replica_name);
	free(job->log_prefix);
	free(job->recover_cmd);
	free(job);
}

bool eng_kick(engine_job_t *job)
{
	if (job->in_step)
		return false;
	job->in_step = true;
	job_step(job);
	job->in_step = false;
	if (job->finished && job->waiting == 0) {
		if (!job->cancelled)
			job->done(job->result, &job->stats, job->ctx);
		job_free(job);
		return true;
	}
	return false;
}

/* ------------------------------------------------------------ store helpers */

char *eng_kw_to_str(const store_keywords_t *kw)
{
	return replica_kw_join(kw->v, kw->n);
}

/* Fill a store_keywords_t from a canonical string; free *vec with
 * replica_kw_free_vec(*vec, kw->n). */
void eng_str_to_kw(const char *s, store_keywords_t *kw, char ***vec)
{
	size_t n;
	*vec = replica_kw_split(s, &n);
	kw->v = (const char *const *)*vec;
	kw->n = n;
}

pair_ent_t *eng_pair_find(engine_job_t *job, uint32_t ruid)
{
	size_t lo = 0, hi = job->n_pairs;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (job->pairs[mid].ruid == ruid)
			return &job->pairs[mid];
		if (job->pairs[mid].ruid < ruid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int load_pair_cb(const store_pair_t *p, void *arg)
{
	engine_job_t *job = arg;
	pair_ent_t *e;

	if (job->n_pairs == job->cap_pairs) {
		job->cap_pairs = job->cap_pairs ? job->cap_pairs * 2 : 256;
		job->pairs = xrealloc(job->pairs, job->cap_pairs * sizeof(*job->pairs));
	}
	e = &job->pairs[job->n_pairs++];
	memset(e, 0, sizeof(*e));
	e->ruid = p->replica_uid;
	e->suid = p->store_uid;
	e->a_flags = p->flags;
	e->a_kw = eng_kw_to_str(&p->kw);
	return 0;
}

static int load_pend_cb(const store_pending_t *p, void *arg)
{
	engine_job_t *job = arg;

	if (p->replica_id != job->o.replica_id)
		return 0;
	job->pend = xrealloc(job->pend, (job->n_pend + 1) * sizeof(*job->pend));
	pend_ent_t *e = &job->pend[job->n_pend++];
	e->p = *p;
	e->message_id = xstrdup(p->message_id ? p->message_id : "");
	e->p.message_id = NULL;
	return 0;
}

static int load_state(engine_job_t *job, bool with_pairs);

/* Read folder, replica state, pairs and pending operations. */
int eng_load_state(engine_job_t *job)
{
	return load_state(job, true);
}

/* As eng_load_state(), without the pairs when !with_pairs: enough to decide
 * that a folder is unchanged, which for most folders ends the job. */
static int load_state(engine_job_t *job, bool with_pairs)
{
	store_txn_t *txn = NULL;
	store_folder_t f;
	store_replica_t rs;
	int rc;

	for (size_t i = 0; i < job->n_pairs; i++) {
		free(job->pairs[i].a_kw);
		job->pairs[i].a_kw = NULL;
	}
	job->n_pairs = 0;
	rc = store_txn_begin_read(job->st, &txn);
	if (rc)
		goto out;
	rc = store_folder_get(txn, job->o.folder_id, &f);
	if (rc)
		goto out;
	job->folder = f;
	job->folder.name = NULL;
	job->folder.held_reason = NULL;
	if (f.state == STORE_FOLDER_HELD) {
		snprintf(job->stats.message, sizeof(job->stats.message),
			 "held for safety: %s",
			 f.held_reason && *f.held_reason ? f.held_reason : job->recover_cmd);
	}
	rc = store_replica_get(txn, job->o.folder_id, job->o.replica_id, &rs);
	if (rc == 0) {
		job->have_rs = true;
		job->rs = rs;
		job->rs.name = NULL;
	} else if (rc != STORE_ENOTFOUND) {
		goto out;
	}
	if (with_pairs) {
		rc = store_pair_iter(txn, job->o.folder_id, job->o.replica_id, 1, load_pair_cb,
				     job);
		if (rc)
			goto out;
	}
	if (job->n_pend == 0)
		rc = store_pending_list(txn, job->o.folder_id, load_pend_cb, job);
out:
	store_txn_abort(txn);
	return rc;
}

/* ------------------------------------------------------------------ start */

/* Skip without selecting: the replica reports the same counters and modseq
 * as after the last sync, and the store did not change since. Without
 * modseqs a flag change leaves the counters alone, so never skip then. */
static bool unchanged(const engine_opts_t *o, const store_replica_t *rs, const store_folder_t *f,
		      size_t n_pend)
{
	return o->has_counts && !o->force_full && rs && n_pend == 0 &&
	       o->counts.highestmodseq != 0 && rs->highestmodseq == o->counts.highestmodseq &&
	       rs->uidvalidity == o->counts.uidvalidity && rs->uidnext == o->counts.uidnext &&
	       rs->pushed_modseq == f->highestmodseq;
}

static void do_start(engine_job_t *job)
{
	int rc = load_state(job, false);

	if (rc) {
		eng_fail(job, ENGINE_STORE_ERR, "cannot read the store: %s",
			 store_strerror(rc));
		return;
	}
	if (job->folder.state == STORE_FOLDER_HELD) {
		job->result = ENGINE_HELD;
		return;
	}
	if (unchanged(&job->o, job->have_rs ? &job->rs : NULL, &job->folder, job->n_pend)) {
		job->stats.skipped = true;
		job->phase = P_END;
	}
}

/* After select(): skip as unchanged() would have with these counters (the
 * Maildir replica has no STATUS; an IMAP server may lack LIST-STATUS), else
 * read the pairs. Not after select_scan(): its scan is on the way. */
static void after_check(engine_job_t *job)
{
	engine_opts_t o = job->o;
	int rc;

	o.has_counts = true;
	o.counts = job->box.counts;
	if (!job->scan_early && (job->box.caps & REPLICA_CAP_MODSEQ) &&
	    unchanged(&o, job->have_rs ? &job->rs : NULL, &job->folder, job->n_pend)) {
		job->stats.skipped = true;
		job->phase = P_END;
		return;
	}
	rc = load_state(job, true);
	if (rc)
		eng_fail(job, ENGINE_STORE_ERR, "cannot read the store: %s", store_strerror(rc));
}

static int count_pend_cb(const store_pending_t *p, void *arg)
{
	void **a = arg;
	const engine_opts_t *o = a[0];
	if (p->replica_id == o->replica_id)
		(*(size_t *)a[1])++;
	return 0;
}

bool engine_unchanged_txn(store_txn_t *txn, const engine_opts_t *o)
{
	store_folder_t f;
	store_replica_t rs;
	size_t n_pend = 0;
	void *a[2] = { (void *)o, &n_pend };

	return o->has_counts && store_folder_get(txn, o->folder_id, &f) == 0 &&
	       f.state != STORE_FOLDER_HELD &&
	       store_replica_get(txn, o->folder_id, o->replica_id, &rs) == 0 &&
	       store_pending_list(txn, o->folder_id, count_pend_cb, a) == 0 &&
	       unchanged(o, &rs, &f, n_pend);
}

/* ----------------------------------------------------------------- select */

static void select_cb(int status, const replica_box_t *box, void *ctx)
{
	engine_job_t *job = ctx;

	job->waiting--;
	if (status == REPLICA_OK && box) {
		job->box = *box;
		/* Before the first sync there is nothing a wrong guess could
		 * remove; later the last select-for-writing knows. */
		if ((box->caps & REPLICA_CAP_KW_GUESS) && job->have_rs &&
		    (job->rs.flags & STORE_REPLICA_KW_KNOWN) && !(job->rs.flags & STORE_REPLICA_KW))
			job->box.caps &= ~(unsigned)REPLICA_CAP_KEYWORDS;
	} else if (status == REPLICA_FOLDER_BAD || status == REPLICA_MSG_BAD)
		eng_fail(job, ENGINE_FOLDER_ERR, "cannot open the folder on the replica");
	else
		eng_op_fail(job, status, "select");
	eng_kick(job);
}

/* Nothing in the store for the replica: no pending operation, and every store
 * change up to now pushed (or, before the first sync, no message yet). The
 * sync will most likely only read the replica's folder. */
static bool store_clean(const engine_job_t *job)
{
	if (job->n_pend || job->o.force_full)
		return false;
	/* Whether the folder keeps keywords must be known from an earlier
	 * select (store_replica_t.flags): a read-only open cannot tell, and a
	 * keyword the folder cannot keep is not a removal. */
	return job->have_rs ? job->rs.pushed_modseq == job->folder.highestmodseq &&
				      (job->rs.flags & STORE_REPLICA_KW_KNOWN)
			    : job->folder.messages == 0;
}

static void read_done_cb(int status, void *ctx)
{
	engine_job_t *job = ctx;

	job->waiting--;
	job->read_status = status;
	if (status == REPLICA_BAD || status == REPLICA_CANCELLED) {
		eng_op_fail(job, status, "read");
	} else if (status == REPLICA_FOLDER_BAD && imap_replica_is(job->r)) {
		/* do_check() runs the folder again; say why. */
		char why[512];
		const char *reason = imap_replica_reason(job->r, why, sizeof(why));
		if (reason)
			log_warn("%s: %s; reading the folder again", job->log_prefix, reason);
	}
	eng_kick(job);
}

/* The whole read can go out with the SELECT (engine.h, read_ahead): the
 * store has nothing for the replica, and the counters the caller has show
 * the folder as last synced, changed since. */
static bool read_ahead_ok(const engine_job_t *job)
{
	const replica_counts_t *c = &job->o.counts;

	/* store_clean() without its keyword condition: the read's SELECT
	 * tells whether the folder keeps keywords, unless it is an EXAMINE. */
	return job->o.read_ahead && job->o.release && job->r->ops->select_read &&
	       job->o.has_counts && job->have_rs && job->n_pend == 0 && !job->o.force_full &&
	       job->rs.pushed_modseq == job->folder.highestmodseq && job->rs.highestmodseq &&
	       c->uidvalidity == job->rs.uidvalidity && c->highestmodseq >= job->rs.highestmodseq &&
	       c->uidnext >= job->rs.uidnext;
}

/* Pairs first: the scan's answers come straight to scan_msg_cb(). */
static bool start_read(engine_job_t *job)
{
	replica_read_t *rd = &job->read;
	unsigned batch = job->o.fetch_batch ? job->o.fetch_batch : 200;
	uint32_t gap = job->o.counts.uidnext - job->rs.uidnext;

	/* New messages by the counters, but no more than half a fetch
	 * batch's worth held before the decisions; a bigger delivery takes
	 * the usual path. */
	if (gap > batch / 2)
		return false;
	int rc = eng_load_state(job);
	if (rc) {
		eng_fail(job, ENGINE_STORE_ERR, "cannot read the store: %s", store_strerror(rc));
		return true;
	}
	memset(rd, 0, sizeof(*rd));
	rd->uidvalidity = job->rs.uidvalidity;
	rd->scan = job->scan_opts;
	rd->scan.changedsince = job->rs.highestmodseq;
	rd->scan.new_uid = job->rs.uidnext;
	rd->sink.ctx = job;
	rd->sink.msg_cb = scan_msg_cb;
	rd->sink.vanished_cb = scan_vanished_cb;
	if (gap) {
		rd->fetch_from = job->rs.uidnext;
		rd->fetch_max = batch;
		eng_fetch_sink_init(job);
		rd->body = job->fetch_sink;
	}
	rd->sel_cb = select_cb;
	rd->cb = read_done_cb;
	rd->ctx = job;
	if (job->r->ops->read_intent && store_clean(job))
		job->r->ops->read_intent(job->r);
	job->read_ahead = true;
	job->waiting += 2;
	if (!job->r->ops->select_read(job->r, job->replica_name, rd)) {
		job->read_ahead = false;
		job->waiting -= 2;
		return false;
	}
	job->stats.full_scan = false;
	release(job);
	return true;
}

static void do_select(engine_job_t *job)
{
	if (read_ahead_ok(job) && start_read(job))
		return;
	job->waiting++;
	if (job->r->ops->read_intent && store_clean(job))
		job->r->ops->read_intent(job->r);
	/* The delta scan do_scan() will most likely ask for can travel with the
	 * SELECT. Not when pending operations run in between: they change the
	 * folder after the early answer was taken. */
	if (job->r->ops->select_scan && job->have_rs && job->rs.highestmodseq &&
	    !job->o.force_full && job->n_pend == 0) {
		replica_scan_opts_t hint = job->scan_opts;
		hint.changedsince = job->rs.highestmodseq;
		hint.new_uid = job->rs.uidnext;
		hint.known = NULL;
		hint.n_known = 0;
		job->scan_early = true;
		job->r->ops->select_scan(job->r, job->replica_name, job->rs.uidvalidity, &hint,
					 select_cb, job);
		return;
	}
	job->r->ops->select(job->r, job->replica_name, select_cb, job);
}

static int hold_fn(store_txn_t *txn, void *arg)
{
	engine_job_t *job = arg;
	return store_folder_hold(txn, job->o.folder_id, job->stats.message);
}

static void hold_folder(engine_job_t *job)
{
	int rc = store_write(job->st, hold_fn, job);

	job->result = ENGINE_HELD;
	if (rc)
		log_err("%s: cannot record the hold in the store: %s", job->log_prefix,
			store_strerror(rc));
}

static void do_check(engine_job_t *job)
{
	uint32_t uv = job->box.counts.uidvalidity;

	if (uv == 0) {
		eng_fail(job, ENGINE_FOLDER_ERR, "the replica gave no UIDVALIDITY");
		return;
	}
	if (job->have_rs && job->rs.uidvalidity != 0 && job->rs.uidvalidity != uv) {
		snprintf(job->stats.message, sizeof(job->stats.message),
			 "UIDVALIDITY of %s changed from %u to %u; nothing was deleted; "
			 "run '%s' to re-pair its messages",
			 job->replica_name, job->rs.uidvalidity, uv, job->recover_cmd);
		hold_folder(job);
		return;
	}
	if (job->o.readonly)
		job->box.caps |= REPLICA_CAP_READONLY;
	if (job->read_ahead) {
		const replica_counts_t *c = &job->box.counts;
		/* The folder changed since the counters were taken (the
		 * read's delta is not the one needed), or the answer was
		 * broken: the usual path does it again and says why. */
		if (!(job->box.caps & REPLICA_CAP_MODSEQ) || c->highestmodseq < job->rs.highestmodseq ||
		    c->uidnext < job->rs.uidnext || job->read_status == REPLICA_FOLDER_BAD) {
			job->again = true;
			job->phase = P_END;
		}
		return; /* the pairs were read before the SELECT */
	}
	after_check(job);
}

/* ------------------------------------------------------------------- scan */

static void scan_msg_cb(void *ctx, const replica_msg_t *m)
{
	engine_job_t *job = ctx;
	pair_ent_t *e = eng_pair_find(job, m->uid);

	if (e) {
		e->r_seen = true;
		e->r_flags = m->flags & REPLICA_F_ALL;
		free(e->r_kw);
		e->r_kw = replica_kw_canon(m->keywords);
		return;
	}
	if (job->n_new == job->cap_new) {
		job->cap_new = job->cap_new ? job->cap_new * 2 : 256;
		job->newuids = xrealloc(job->newuids, job->cap_new * sizeof(*job->newuids));
	}
	job->newuids[job->n_new++] = m->uid;
}

static void scan_vanished_cb(void *ctx, uint32_t lo, uint32_t hi)
{
	engine_job_t *job = ctx;

	/* Walk the pairs in the range rather than the range itself: a VANISHED
	 * range can be 1:4294967295. */
	for (size_t i = 0; i < job->n_pairs; i++) {
		pair_ent_t *e = &job->pairs[i];
		if (e->ruid >= lo && e->ruid <= hi)
			e->vanished = true;
	}
}

static void scan_done_cb(int status, void *ctx)
{
	engine_job_t *job = ctx;

	job->waiting--;
	if (status == REPLICA_FOLDER_BAD)
		eng_fail(job, ENGINE_FOLDER_ERR, "cannot list the folder's messages");
	else
		eng_op_fail(job, status, "scan");
	eng_kick(job);
}

static int u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static void do_scan(engine_job_t *job)
{
	replica_scan_opts_t *so = &job->scan_opts;
	bool modseq = (job->box.caps & REPLICA_CAP_MODSEQ) && job->box.counts.highestmodseq;

	if (job->read_ahead) {
		job->full = false; /* its answers came with the read */
		return;
	}
	/* The pending step may have changed pairs: reload them. */
	if (job->n_pend) {
		int rc = eng_load_state(job);
		if (rc) {
			eng_fail(job, ENGINE_STORE_ERR, "cannot read the store: %s", store_strerror(rc));
			return;
		}
	}
	free(job->known);
	job->known = xmalloc((job->n_pairs ? job->n_pairs : 1) * sizeof(*job->known));
	for (size_t i = 0; i < job->n_pairs; i++)
		job->known[i] = job->pairs[i].ruid;

	job->full = true;
	if (modseq && !job->o.force_full && job->have_rs && job->rs.highestmodseq &&
	    job->rs.uidvalidity == job->box.counts.uidvalidity &&
	    job->box.counts.highestmodseq >= job->rs.highestmodseq &&
	    job->box.counts.uidnext >= job->rs.uidnext) {
		so->changedsince = job->rs.highestmodseq;
		job->full = false;
	}
	job->stats.full_scan = job->full;
	so->new_uid = job->have_rs ? job->rs.uidnext : 1;
	so->known = job->known;
	so->n_known = job->n_pairs;
	job->scan_sink.ctx = job;
	job->scan_sink.msg_cb = scan_msg_cb;
	job->scan_sink.vanished_cb = scan_vanished_cb;
	job->waiting++;
	job->r->ops->scan(job->r, so, &job->scan_sink, scan_done_cb, job);
}

/* ----------------------------------------------------------------- decide */

typedef struct suid_idx {
	uint32_t suid;
	uint32_t pi;
} suid_idx_t;

static int suid_cmp(const void *a, const void *b)
{
	uint32_t x = ((const suid_idx_t *)a)->suid, y = ((const suid_idx_t *)b)->suid;
	return x < y ? -1 : x > y;
}

typedef struct store_scan {
	engine_job_t *job;
	suid_idx_t *idx;
	size_t n;
} store_scan_t;

static int store_msg_scan_cb(const store_msg_t *m, void *arg)
{
	store_scan_t *ss = arg;
	engine_job_t *job = ss->job;
	suid_idx_t key = { m->uid, 0 };
	suid_idx_t *hit = ss->n ? bsearch(&key, ss->idx, ss->n, sizeof(*ss->idx), suid_cmp) : NULL;

	if (hit) {
		pair_ent_t *e = &job->pairs[hit->pi];
		e->s_live = true;
		e->s_flags = m->flags & STORE_F_ALL;
		e->s_kw = eng_kw_to_str(&m->kw);
		return 0;
	}
	/* In the store, not on the replica: an upload. */
	job->ups = xrealloc(job->ups, (job->n_ups + 1) * sizeof(*job->ups));
	upload_ent_t *u = &job->ups[job->n_ups++];
	memset(u, 0, sizeof(*u));
	u->suid = m->uid;
	u->hash = m->hash;
	return 0;
}

/* The merged flags are not what the replica has: they go to the replica. */
static bool replica_differs(const engine_job_t *job, const pair_ent_t *e)
{
	bool kw_ok = (job->box.caps & REPLICA_CAP_KEYWORDS) != 0;
	return e->n_flags != e->r_flags || (kw_ok && strcmp(e->n_kw, e->r_kw) != 0);
}

/* Store side of the decisions: expunge what the replica deleted, apply the
 * replica's flag changes, record agreed values. Deferred to the job's next
 * commit (see eng_write()). */
static int apply_store_fn(store_txn_t *txn, engine_job_t *job)
{
	uint32_t fid = job->o.folder_id, rid = job->o.replica_id;
	int rc;

	job->apply_expunged = job->apply_flagged = 0;
	for (size_t i = 0; i < job->n_pairs; i++) {
		pair_ent_t *e = &job->pairs[i];
		if (e->vanished) {
			if (e->s_live) {
				rc = store_msg_expunge(txn, fid, e->suid, NULL);
				if (rc && rc != STORE_ENOTFOUND)
					return rc;
				job->apply_expunged++;
			}
			rc = store_pair_del(txn, fid, rid, e->ruid);
			if (rc && rc != STORE_ENOTFOUND)
				return rc;
			continue;
		}
		if (!e->s_live || !e->n_kw)
			continue;
		bool store_differs = e->n_flags != e->s_flags || strcmp(e->n_kw, e->s_kw) != 0;
		if (store_differs) {
			store_keywords_t kw;
			char **vec;
			eng_str_to_kw(e->n_kw, &kw, &vec);
			rc = store_msg_set_flags(txn, fid, e->suid, STORE_FLAGS_SET, e->n_flags, &kw,
						 0, NULL);
			replica_kw_free_vec(vec, kw.n);
			if (rc)
				return rc;
			job->apply_flagged++;
		}
		/* Agreed moves to the merged value now when the replica already
		 * has it; otherwise after the replica accepted it (eng_do_flags()). In
		 * read-only mode the replica never changes, so agreed stays at
		 * the replica's value and local changes are simply kept. */
		if (!replica_differs(job, e) &&
		    (e->n_flags != e->a_flags || strcmp(e->n_kw, e->a_kw) != 0)) {
			store_pair_t p = { .replica_uid = e->ruid, .store_uid = e->suid,
					   .flags = e->n_flags };
			char **vec;
			eng_str_to_kw(e->n_kw, &p.kw, &vec);
			rc = store_pair_set(txn, fid, rid, &p);
			replica_kw_free_vec(vec, p.kw.n);
			if (rc)
				return rc;
		}
	}
	return 0;
}


typedef struct eng_write_ctx {
	engine_job_t *job;
	store_txn_fn fn;
	void *arg;
} eng_write_ctx_t;

static int eng_write_fn(store_txn_t *txn, void *arg)
{
	eng_write_ctx_t *w = arg;
	engine_job_t *job = w->job;
	int rc = 0;

	if (job->deferred_w & EW_APPLY)
		rc = apply_store_fn(txn, job);
	if (rc == 0 && (job->deferred_w & EW_DELETES))
		rc = eng_del_resolve_job(txn, job);
	if (rc == 0 && (job->deferred_w & EW_FLAGS))
		rc = eng_flags_commit_fn(txn, job);
	if (rc == 0 && (job->deferred_w & EW_INGEST))
		rc = eng_ingest_job(txn, job);
	if (rc == 0 && (job->deferred_w & EW_UPLOADS))
		rc = eng_up_commit_fn(txn, job);
	if (rc == 0 && w->fn)
		rc = w->fn(txn, w->arg);
	return rc;
}

/* The deferred writes had were committed. */
static void deferred_done(engine_job_t *job, unsigned had)
{
	job->deferred_w = 0;
	if (had & EW_APPLY) {
		job->stats.deleted_store += job->apply_expunged;
		job->stats.flags_store += job->apply_flagged;
	}
	if (had & EW_INGEST)
		eng_ingest_done(job);
}

/*
 * Every store write of a job goes through here. Writes that only record what
 * both sides already agree on (the replica's deletions and flags applied to
 * the store, finished deletions, flags the replica accepted) wait in
 * job->deferred_w and ride along with the job's next commit, instead of one
 * commit (and fsync) each. Losing them in a crash costs nothing: the next run
 * sees the same differences and reaches the same result, because the sync
 * state (finish_fn) is never committed before them. Intents (pending
 * records) are never deferred: they commit before their replica operation.
 */
static int write_with_deferred(engine_job_t *job, store_txn_fn fn, void *arg, bool intent)
{
	eng_write_ctx_t w = { job, fn, arg };
	unsigned had = job->deferred_w;
	int rc;

	if (!fn && !had)
		return 0;
	rc = intent ? store_write(job->st, eng_write_fn, &w)
		    : store_write_lazy(job->st, eng_write_fn, &w);
	if (rc == 0)
		deferred_done(job, had);
	return rc;
}

/* Lazy (store_write_lazy()): losing the last such commit to a power failure
 * costs the same as a crash before it, see above. */
int eng_write(engine_job_t *job, store_txn_fn fn, void *arg)
{
	return write_with_deferred(job, fn, arg, false);
}

int eng_write_intent(engine_job_t *job, store_txn_fn fn, void *arg)
{
	return write_with_deferred(job, fn, arg, true);
}

static void do_decide(engine_job_t *job)
{
	store_txn_t *txn = NULL;
	store_scan_t ss = { job, NULL, 0 };
	unsigned vanished = 0, gone = 0;
	bool ro = (job->box.caps & REPLICA_CAP_READONLY) != 0;
	int rc;

	ss.idx = xmalloc((job->n_pairs ? job->n_pairs : 1) * sizeof(*ss.idx));
	for (size_t i = 0; i < job->n_pairs; i++) {
		ss.idx[i].suid = job->pairs[i].suid;
		ss.idx[i].pi = (uint32_t)i;
	}
	ss.n = job->n_pairs;
	if (ss.n)
		qsort(ss.idx, ss.n, sizeof(*ss.idx), suid_cmp);
	rc = store_txn_begin_read(job->st, &txn);
	if (rc == 0) {
		store_folder_t f;
		rc = store_folder_get(txn, job->o.folder_id, &f);
		if (rc == 0)
			job->decided_modseq = f.highestmodseq;
	}
	if (rc == 0)
		rc = store_msg_iter(txn, job->o.folder_id, 1, store_msg_scan_cb, &ss);
	store_txn_abort(txn);
	free(ss.idx);
	if (rc) {
		eng_fail(job, ENGINE_STORE_ERR, "cannot read the store: %s",
			 store_strerror(rc));
		return;
	}

	/* Merge flags; count deletions for the safety check. */
	for (size_t i = 0; i < job->n_pairs; i++) {
		pair_ent_t *e = &job->pairs[i];
		if (e->vanished) {
			vanished++;
			continue;
		}
		if (!e->s_live) {
			if (!ro) {
				e->del_replica = true;
				gone++;
			}
			continue;
		}
		if (!e->r_seen) {
			/* Not reported by a delta scan: unchanged on the replica. */
			if (job->full) {
				/* A full scan that neither listed nor declared it
				 * vanished: the replica is inconsistent; leave it. */
				continue;
			}
			e->r_flags = e->a_flags;
			free(e->r_kw);
			e->r_kw = xstrdup(e->a_kw);
		}
		if (!(job->box.caps & REPLICA_CAP_KEYWORDS)) {
			/* The folder keeps no keywords (PERMANENTFLAGS without \*):
			 * they live in the store only, and the replica's lack of
			 * them is not a removal. */
			free(e->r_kw);
			e->r_kw = xstrdup(e->a_kw);
		}
		unsigned changed_r = (e->r_flags ^ e->a_flags) & REPLICA_F_ALL;
		e->n_flags = (e->r_flags & changed_r) | (e->s_flags & ~changed_r);
		e->n_kw = replica_kw_merge(e->a_kw, e->r_kw, e->s_kw);
	}
	double ratio = job->o.max_deletion_ratio;
	if (ratio < 1 && job->n_pairs) {
		const char *side = NULL;
		unsigned cnt = 0;
		if (vanished >= ENGINE_MASS_MIN && vanished > ratio * (double)job->n_pairs) {
			side = "the replica";
			cnt = vanished;
		} else if (gone >= ENGINE_MASS_MIN && gone > ratio * (double)job->n_pairs) {
			side = "the store";
			cnt = gone;
		}
		if (side) {
			snprintf(job->stats.message, sizeof(job->stats.message),
				 "%u of %zu messages of %s vanished from %s at once (more than %.0f%%); "
				 "nothing was deleted; check the folder, then run "
				 "'%s' to accept the deletions",
				 cnt, job->n_pairs, job->replica_name, side, ratio * 100.0,
				 job->recover_cmd);
			hold_folder(job);
			return;
		}
	}

	for (size_t i = 0; i < job->n_pairs; i++) {
		pair_ent_t *e = &job->pairs[i];
		if (!e->vanished && e->s_live && e->n_kw)
			e->set_replica = !ro && replica_differs(job, e);
	}
	job->deferred_w |= EW_APPLY;
	if (job->n_new)
		qsort(job->newuids, job->n_new, sizeof(*job->newuids), u32_cmp);
	{
		uint32_t *mv = NULL;
		size_t n_mv = 0;
		if (eng_move_targets(job, &mv, &n_mv) == 0)
			for (size_t i = 0; i < job->n_ups; i++)
				for (size_t k = 0; k < n_mv; k++)
					if (job->ups[i].suid == mv[k])
						job->ups[i].move_target = true;
		free(mv);
		for (size_t i = 0; i < job->n_ups; i++)
			for (size_t k = 0; k < job->n_deferred; k++)
				if (job->ups[i].suid == job->deferred[k])
					job->ups[i].deferred = true;
		job->by_hash = xmalloc((job->n_ups ? job->n_ups : 1) * sizeof(uint32_t));
		for (size_t i = 0; i < job->n_ups; i++)
			job->by_hash[i] = (uint32_t)i;
		if (job->n_ups)
			qsort_r(job->by_hash, job->n_ups, sizeof(uint32_t), eng_hash_idx_cmp, job);
	}
	if (ro) {
		/* Never upload in read-only mode. */
		free(job->ups);
		job->ups = NULL;
		job->n_ups = 0;
		free(job->by_hash);
		job->by_hash = NULL;
	}
}

/* ----------------------------------------------------------------- finish */

static int finish_fn(store_txn_t *txn, void *arg)
{
	engine_job_t *job = arg;
	store_replica_t rs;
	store_folder_t f;
	int rc;

	memset(&rs, 0, sizeof(rs));
	rs.folder_id = job->o.folder_id;
	rs.replica_id = job->o.replica_id;
	rs.name = job->replica_name;
	rs.uidvalidity = job->box.counts.uidvalidity;
	rs.uidnext = job->box.counts.uidnext;
	rs.highestmodseq = job->box.counts.highestmodseq;
	if (job->incomplete && job->have_rs) {
		/* Something was not fetched: look at the same changes again. */
		rs.highestmodseq = job->rs.highestmodseq;
		rs.uidnext = job->rs.uidnext;
	} else if (job->incomplete) {
		rs.highestmodseq = 0;
		rs.uidnext = 0;
	}
	if (!(job->box.caps & REPLICA_CAP_MODSEQ))
		rs.highestmodseq = 0;
	rc = store_folder_get(txn, job->o.folder_id, &f);
	if (rc)
		return rc;
	/* A job that could not write to the replica (again) leaves the
	 * store's changes to the next one. */
	rs.pushed_modseq = job->again && job->have_rs ? job->rs.pushed_modseq : f.highestmodseq;
	if (job->box.caps & REPLICA_CAP_KW_GUESS)
		rs.flags = job->have_rs ? job->rs.flags : 0;
	else
		rs.flags = STORE_REPLICA_KW_KNOWN |
			   (job->box.caps & REPLICA_CAP_KEYWORDS ? STORE_REPLICA_KW : 0);
	return store_replica_set(txn, &rs);
}

static void finish_failed(engine_job_t *job, int rc)
{
	eng_fail(job, ENGINE_STORE_ERR, "cannot save the sync state: %s", store_strerror(rc));
}

static void finish_done(int rc, void *arg)
{
	engine_job_t *job = arg;

	job->group_ent = NULL;
	job->waiting--;
	if (rc == 0)
		deferred_done(job, job->deferred_w);
	else
		finish_failed(job, rc);
	eng_kick(job);
}

static void do_finish(engine_job_t *job)
{
	if (job->o.group) {
		/* Nothing changes job->deferred_w until finish_done(). */
		eng_write_ctx_t *w = eng_ctx(job, sizeof(*w));
		w->job = job;
		w->fn = finish_fn;
		w->arg = job;
		job->waiting++;
		job->group_ent = store_group_add(job->o.group, eng_write_fn, w, finish_done, job);
		return;
	}
	int rc = eng_write(job, finish_fn, job);
	if (rc)
		finish_failed(job, rc);
}

/* ---------------------------------------------------------- state machine */

/* Deletions, flag updates and uploads touch different messages: the next
 * of these phases starts while the replica still works on the previous one
 * (pipelined on IMAP; one flush of the Maildir batch for all three). Each
 * phase is entered once this way; an upload batch in flight, or a failure,
 * waits for everything. */
static bool may_overlap(const engine_job_t *job)
{
	if (job->result != ENGINE_OK)
		return false;
	if (job->phase == P_FLAGS)
		return true;
	return job->phase == P_UPLOAD && job->upload_step == 0 && !job->upload_started;
}

/* The replica work left after the downloads: deletions, flags, uploads. */
static bool fetch_is_last(const engine_job_t *job)
{
	if (job->result != ENGINE_OK || job->n_ups)
		return false;
	for (size_t i = 0; i < job->n_pairs; i++)
		if (job->pairs[i].del_replica || job->pairs[i].set_replica)
			return false;
	return true;
}

static void release(engine_job_t *job)
{
	if (job->o.release && !job->released) {
		job->released = true;
		job->o.release(job->ctx);
	}
}

static void job_step(engine_job_t *job)
{
	while (!job->finished) {
		if (job->waiting > 0 && !may_overlap(job))
			return;
		if (job->result != ENGINE_OK || job->phase == P_END) {
			/* A failed job still keeps what was agreed before it failed. */
			if (job->deferred_w && !job->cancelled && job->result != ENGINE_STORE_ERR &&
			    eng_write(job, NULL, NULL) != 0)
				log_warn("%s: cannot save the changes made so far", job->log_prefix);
			if (job->again && job->result == ENGINE_OK)
				job->result = ENGINE_AGAIN;
			job->finished = true;
			return;
		}
		int ph = job->phase++;
		switch (ph) {
		case P_START: do_start(job); break;
		case P_SELECT: do_select(job); break;
		case P_CHECK: do_check(job); break;
		case P_PENDING: eng_do_pending(job); break;
		case P_SCAN: do_scan(job); break;
		case P_DECIDE: do_decide(job); break;
		case P_FETCH:
			eng_do_fetch(job);
			/* Nothing but the downloads left for the replica: the
			 * session goes on to the next folder now, its SELECT
			 * queued behind them (one round trip less per folder). */
			if (fetch_is_last(job) && !job->o.release_late) {
				release(job);
			} else if (job->read_ahead && job->result == ENGINE_OK) {
				/* The session went on already: the replica's
				 * share waits for the job run again. */
				job->again = true;
				job->phase = P_FINISH;
			}
			break;
		case P_DELETE: eng_do_delete(job); break;
		case P_FLAGS:
			eng_do_flags(job);
			break;
		case P_UPLOAD:
			eng_do_upload(job);
			break;
		case P_FINISH:
			release(job);
			do_finish(job);
			break;
		default: job->phase = P_END; break;
		}
	}
}

engine_job_t *engine_sync_folder(store_t *st, replica_t *r, const engine_opts_t *opts,
				 engine_done_cb done, void *ctx)
{
	engine_job_t *job = xcalloc(1, sizeof(*job));

	job->st = st;
	job->r = r;
	job->o = *opts;
	job->replica_name = xstrdup(opts->replica_name ? opts->replica_name : "");
	job->log_prefix = xstrdup(opts->log_prefix ? opts->log_prefix : "sync");
	job->o.replica_name = job->replica_name;
	job->o.log_prefix = job->log_prefix;
	job->recover_cmd = xasprintf("imapbridge folder recover %s %s",
				     opts->account ? opts->account : "ACCOUNT",
				     opts->folder ? opts->folder : "FOLDER");
	job->o.account = job->o.folder = NULL;
	job->done = done;
	job->ctx = ctx;
	job->phase = P_START;
	if (eng_kick(job))
		return NULL;
	return job;
}

void engine_cancel(engine_job_t *job)
{
	if (!job || job->cancelled)
		return;
	job->cancelled = true;
	if (job->group_ent) {
		store_group_cancel(job->o.group, job->group_ent);
		job->group_ent = NULL;
	}
	job->result = ENGINE_CANCELLED;
	snprintf(job->stats.message, sizeof(job->stats.message), "cancelled");
	job->done(ENGINE_CANCELLED, &job->stats, job->ctx);
	job->finished = true;
	/* The caller frees the replica session next, so the callbacks of
	 * operations in flight never come: forget them. */
	job->waiting = 0;
	if (!job->in_step)
		job_free(job);
	/* Otherwise eng_kick() frees it when the current step returns. */
}

/* ---------------------------------------------------------------- helpers */

void engine_message_id(const char *data, size_t len, char *out, size_t outlen)
{
	size_t i = 0;

	if (outlen)
		out[0] = '\0';
	while (i < len) {
		size_t eol = i;
		while (eol < len && data[eol] != '\n')
			eol++;
		size_t linelen = eol - i;
		if (linelen == 0 || (linelen == 1 && data[i] == '\r'))
			return; /* end of the header */
		if (linelen > 11 && strncasecmp(data + i, "Message-ID:", 11) == 0) {
			size_t a = i + 11, b = eol;
			/* Unfold one continuation line. */
			if (b + 1 < len && (data[b + 1] == ' ' || data[b + 1] == '\t')) {
				a = b + 1;
				while (b + 1 < len && data[b + 1] != '\n')
					b++;
				b++;
			}
			while (a < b && (data[a] == ' ' || data[a] == '\t'))
				a++;
			while (b > a && (data[b - 1] == '\r' || data[b - 1] == ' ' ||
					 data[b - 1] == '\t'))
				b--;
			size_t n = b - a;
			if (n >= outlen)
				n = outlen - 1;
			memcpy(out, data + a, n);
			out[n] = '\0';
			return;
		}
		i = eol + 1;
	}
}
