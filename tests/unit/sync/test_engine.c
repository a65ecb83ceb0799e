/*
 * Sync engine tests with no network: a small synchronous replica backed by
 * arrays (one folder) against a real LMDB store in a temporary directory.
 * The "crash" tests let the replica die after its k-th operation (the
 * operation takes effect, its answer is lost, like a connection dropping
 * after the server acted) for every k, then sync again and compare both
 * sides message by message: nothing lost, nothing duplicated.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/util.h"
#include "store/store.h"
#include "sync/engine.h"
#include "sync/replica.h"
#include "testutil.h"

/* ------------------------------------------------------- array replica */

typedef struct amsg {
	uint32_t uid;
	unsigned flags;
	char *kw;
	char *data;
	size_t len;
	uint64_t modseq;
} amsg_t;

typedef struct afolder {
	uint32_t uidvalidity, uidnext;
	uint64_t hms;
	amsg_t *m;
	size_t n;
	bool modseq;
	bool uidplus;
	bool bulk;      /* offer set_flags_uids() */
	bool no_kw;     /* keywords are not kept (PERMANENTFLAGS without \*) */
	uint32_t *gone; /* expunged UIDs and their modseqs (QRESYNC VANISHED) */
	uint64_t *gone_ms;
	size_t n_gone;
} afolder_t;

typedef struct arep {
	replica_t base;
	afolder_t *f;
	int ops_left; /* < 0: unlimited; 0: dead */
	bool want_read; /* read_intent() before the next select */
	bool read_mode; /* the open folder was selected for reading */
} arep_t;

/* All replicas: selects after read_intent(), and writes to a folder selected
 * that way (the engine asked for reading only where it writes nothing, so
 * this stays 0). */
static unsigned n_read_selects, n_read_writes;
/* Operations of all replicas so far. */
static unsigned n_ops;

static void a_read_intent(replica_t *r)
{
	((arep_t *)r)->want_read = true;
}

static amsg_t *af_find(afolder_t *f, uint32_t uid)
{
	for (size_t i = 0; i < f->n; i++)
		if (f->m[i].uid == uid)
			return &f->m[i];
	return NULL;
}

static uint32_t af_add(afolder_t *f, const char *data, unsigned flags, const char *kw)
{
	f->m = xrealloc(f->m, (f->n + 1) * sizeof(*f->m));
	amsg_t *m = &f->m[f->n++];
	m->uid = f->uidnext++;
	m->flags = flags;
	m->kw = replica_kw_canon(kw);
	m->len = strlen(data);
	m->data = xstrdup(data);
	m->modseq = ++f->hms;
	return m->uid;
}

static void af_del(afolder_t *f, uint32_t uid)
{
	for (size_t i = 0; i < f->n; i++) {
		if (f->m[i].uid == uid) {
			free(f->m[i].kw);
			free(f->m[i].data);
			memmove(&f->m[i], &f->m[i + 1], (f->n - i - 1) * sizeof(*f->m));
			f->n--;
			f->hms++;
			f->gone = xrealloc(f->gone, (f->n_gone + 1) * sizeof(*f->gone));
			f->gone_ms = xrealloc(f->gone_ms, (f->n_gone + 1) * sizeof(*f->gone_ms));
			f->gone[f->n_gone] = uid;
			f->gone_ms[f->n_gone++] = f->hms;
			return;
		}
	}
}

static void af_free(afolder_t *f)
{
	for (size_t i = 0; i < f->n; i++) {
		free(f->m[i].kw);
		free(f->m[i].data);
	}
	free(f->m);
	free(f->gone);
	free(f->gone_ms);
	memset(f, 0, sizeof(*f));
}

/* Every operation passes here: false means the session is dead and the
 * caller must answer REPLICA_BAD after doing (or not doing) its work. */
static bool a_tick(arep_t *a)
{
	n_ops++;
	if (a->ops_left < 0)
		return true;
	if (a->ops_left == 0)
		return false;
	a->ops_left--;
	return a->ops_left > 0;
}

static bool a_dead(arep_t *a)
{
	return a->ops_left == 0;
}

static void a_select(replica_t *r, const char *name, replica_select_cb cb, void *ctx)
{
	arep_t *a = (arep_t *)r;
	replica_box_t box = { { 0 }, 0 };

	if (a_dead(a)) {
		cb(REPLICA_BAD, NULL, ctx);
		return;
	}
	bool alive = a_tick(a);
	a->read_mode = a->want_read;
	a->want_read = false;
	n_read_selects += a->read_mode;
	box.counts.uidvalidity = a->f->uidvalidity;
	box.counts.uidnext = a->f->uidnext;
	box.counts.messages = (uint32_t)a->f->n;
	box.counts.highestmodseq = a->f->modseq ? a->f->hms : 0;
	box.caps = (a->f->modseq ? REPLICA_CAP_MODSEQ : 0) | (a->f->uidplus ? REPLICA_CAP_UIDPLUS : 0) |
		   (a->f->no_kw ? 0 : REPLICA_CAP_KEYWORDS);
	if (a->read_mode) /* as IMAP's EXAMINE: PERMANENTFLAGS tell nothing */
		box.caps |= REPLICA_CAP_KEYWORDS | REPLICA_CAP_KW_GUESS;
	cb(alive ? REPLICA_OK : REPLICA_BAD, alive ? &box : NULL, ctx);
}

static int cmp_u32(const void *x, const void *y)
{
	uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
	return a < b ? -1 : a > b;
}

static unsigned n_scans; /* scan() calls, all replicas */

static void a_scan(replica_t *r, const replica_scan_opts_t *o, const replica_scan_sink_t *s,
		   replica_done_cb cb, void *ctx)
{
	arep_t *a = (arep_t *)r;

	n_scans++;

	if (a_dead(a)) {
		cb(REPLICA_BAD, ctx);
		return;
	}
	bool alive = a_tick(a);
	if (!alive) {
		cb(REPLICA_BAD, ctx);
		return;
	}
	for (size_t i = 0; i < a->f->n; i++) {
		amsg_t *m = &a->f->m[i];
		if (o->changedsince && m->modseq <= o->changedsince)
			continue;
		replica_msg_t rm = { .uid = m->uid, .flags = m->flags, .keywords = m->kw,
				     .modseq = m->modseq, .size = m->len };
		s->msg_cb(s->ctx, &rm);
	}
	for (size_t i = 0; i < o->n_known; i++)
		if (!af_find(a->f, o->known[i]))
			s->vanished_cb(s->ctx, o->known[i], o->known[i]);
	cb(REPLICA_OK, ctx);
}

static void a_fetch(replica_t *r, const uint32_t *uids, size_t n, const replica_body_sink_t *s,
		    replica_done_cb cb, void *ctx)
{
	arep_t *a = (arep_t *)r;

	if (a_dead(a)) {
		cb(REPLICA_BAD, ctx);
		return;
	}
	bool alive = a_tick(a);
	for (size_t i = 0; i < n && alive; i++) {
		amsg_t *m = af_find(a->f, uids[i]);
		if (!m)
			continue;
		void *h = s->open(s->ctx, m->len);
		if (!h)
			continue;
		/* In two pieces, like a network read would. */
		size_t half = m->len / 2;
		s->write(s->ctx, h, m->data, half);
		s->write(s->ctx, h, m->data + half, m->len - half);
		replica_msg_t rm = { .uid = m->uid, .flags = m->flags, .keywords = m->kw,
				     .modseq = m->modseq, .size = m->len, .internaldate = 1700000000 };
		s->done(s->ctx, h, &rm);
	}
	cb(alive ? REPLICA_OK : REPLICA_BAD, ctx);
}

static void a_append(replica_t *r, const replica_new_msg_t *nm, replica_uid_cb cb, void *ctx)
{
	arep_t *a = (arep_t *)r;

	if (a_dead(a)) {
		cb(REPLICA_BAD, 0, ctx);
		return;
	}
	bool alive = a_tick(a);
	char *d = xstrndup(nm->data, nm->len);
	/* A folder without keywords drops them silently, as servers may. */
	uint32_t uid = af_add(a->f, d, nm->flags, a->f->no_kw ? "" : nm->keywords);
	free(d);
	cb(alive ? REPLICA_OK : REPLICA_BAD, a->f->uidplus ? uid : 0, ctx);
}

static void a_find(replica_t *r, const replica_find_t *q, replica_uids_cb cb, void *ctx)
{
	arep_t *a = (arep_t *)r;
	uint32_t *u = xmalloc((a->f->n + 1) * sizeof(*u));
	size_t n = 0;

	if (a_dead(a)) {
		free(u);
		cb(REPLICA_BAD, NULL, 0, ctx);
		return;
	}
	bool alive = a_tick(a);
	for (size_t i = 0; i < a->f->n; i++) {
		amsg_t *m = &a->f->m[i];
		char mid[256];
		if (m->uid < q->min_uid || (q->size && q->size != m->len))
			continue;
		engine_message_id(m->data, m->len, mid, sizeof(mid));
		if (q->message_id && strcmp(mid, q->message_id) != 0)
			continue;
		u[n++] = m->uid;
	}
	qsort(u, n, sizeof(*u), cmp_u32);
	cb(alive ? REPLICA_OK : REPLICA_BAD, u, n, ctx);
	free(u);
}

static void a_set_flags(replica_t *r, uint32_t uid, unsigned add, const char *add_kw, unsigned del,
			const char *del_kw, replica_done_cb cb, void *ctx)
{
	arep_t *a = (arep_t *)r;

	n_read_writes += a->read_mode;
	if (a_dead(a)) {
		cb(REPLICA_BAD, ctx);
		return;
	}
	bool alive = a_tick(a);
	amsg_t *m = af_find(a->f, uid);
	if (m) {
		char *nk = replica_kw_merge(del_kw, "", m->kw); /* m->kw minus del_kw */
		char *all = xasprintf("%s %s", nk, add_kw);
		free(m->kw);
		m->kw = replica_kw_canon(all);
		free(all);
		free(nk);
		m->flags = (m->flags | add) & ~del;
		m->modseq = ++a->f->hms;
	}
	cb(alive ? REPLICA_OK : REPLICA_BAD, ctx);
}

static void a_delete(replica_t *r, const uint32_t *uids, size_t n, replica_done_cb cb, void *ctx)
{
	arep_t *a = (arep_t *)r;

	n_read_writes += a->read_mode;
	if (a_dead(a)) {
		cb(REPLICA_BAD, ctx);
		return;
	}
	bool alive = a_tick(a);
	for (size_t i = 0; i < n; i++)
		af_del(a->f, uids[i]);
	cb(alive ? REPLICA_OK : REPLICA_BAD, ctx);
}

static void a_set_flags_uids(replica_t *r, const uint32_t *uids, size_t n, unsigned add,
			     const char *add_kw, unsigned del, const char *del_kw,
			     replica_done_cb cb, void *ctx)
{
	arep_t *a = (arep_t *)r;
	int worst = REPLICA_OK;

	n_read_writes += a->read_mode;
	if (a_dead(a)) {
		cb(REPLICA_BAD, ctx);
		return;
	}
	/* One operation (one tick) for the whole set. */
	bool alive = a_tick(a);
	for (size_t i = 0; i < n; i++) {
		amsg_t *m = af_find(a->f, uids[i]);
		if (!m)
			continue;
		char *nk = replica_kw_merge(del_kw, "", m->kw);
		char *all = xasprintf("%s %s", nk, add_kw);
		free(m->kw);
		m->kw = replica_kw_canon(all);
		free(all);
		free(nk);
		m->flags = (m->flags | add) & ~del;
		m->modseq = ++a->f->hms;
	}
	cb(alive ? worst : REPLICA_BAD, ctx);
}

static void a_free(replica_t *r)
{
	free(r);
}

/* select_read(): calls, a hook run first (a change between the counters
 * the caller had and the SELECT), and a body to leave out. */
static unsigned n_select_reads;
static void (*read_hook)(arep_t *a);
static bool read_drop_body;

static bool a_select_read(replica_t *r, const char *name, const replica_read_t *rd)
{
	arep_t *a = (arep_t *)r;
	afolder_t *f = a->f;
	int st = REPLICA_OK;
	unsigned bodies = 0;

	if (!f->modseq)
		return false;
	n_select_reads++;
	if (read_hook)
		read_hook(a);
	a_select(r, name, rd->sel_cb, rd->ctx);
	if (f->uidvalidity != rd->uidvalidity || f->hms < rd->scan.changedsince) {
		rd->cb(REPLICA_FOLDER_BAD, rd->ctx);
		return true;
	}
	for (size_t i = 0; i < f->n_gone; i++)
		if (f->gone_ms[i] > rd->scan.changedsince)
			rd->sink.vanished_cb(rd->sink.ctx, f->gone[i], f->gone[i]);
	for (size_t i = 0; i < f->n; i++) {
		amsg_t *m = &f->m[i];
		replica_msg_t rm = { .uid = m->uid, .flags = m->flags, .keywords = m->kw,
				     .modseq = m->modseq, .size = m->len, .internaldate = 1700000000 };
		if (m->modseq > rd->scan.changedsince)
			rd->sink.msg_cb(rd->sink.ctx, &rm);
	}
	for (size_t i = 0; i < f->n && rd->fetch_from; i++) {
		amsg_t *m = &f->m[i];
		replica_msg_t rm = { .uid = m->uid, .flags = m->flags, .keywords = m->kw,
				     .modseq = m->modseq, .size = m->len, .internaldate = 1700000000 };
		if (m->uid < rd->fetch_from)
			continue;
		if (bodies++ == rd->fetch_max || read_drop_body) {
			read_drop_body = false;
			st = REPLICA_MSG_BAD;
			continue;
		}
		void *h = rd->body.open(rd->body.ctx, m->len);
		rd->body.write(rd->body.ctx, h, m->data, m->len);
		rd->body.done(rd->body.ctx, h, &rm);
	}
	rd->cb(st, rd->ctx);
	return true;
}

static const replica_ops_t a_ops = {
	.select = a_select,
	.scan = a_scan,
	.fetch = a_fetch,
	.append = a_append,
	.find = a_find,
	.set_flags = a_set_flags,
	.delete_msgs = a_delete,
	.free = a_free,
	.read_intent = a_read_intent,
	.select_read = a_select_read,
};

static const replica_ops_t a_ops_bulk = {
	.select = a_select,
	.scan = a_scan,
	.fetch = a_fetch,
	.append = a_append,
	.find = a_find,
	.set_flags = a_set_flags,
	.delete_msgs = a_delete,
	.free = a_free,
	.set_flags_uids = a_set_flags_uids,
	.read_intent = a_read_intent,
	.select_read = a_select_read,
};

static replica_t *arep_new(afolder_t *f, int ops)
{
	arep_t *a = xcalloc(1, sizeof(*a));
	a->base.ops = f->bulk ? &a_ops_bulk : &a_ops;
	a->base.label = "test";
	a->f = f;
	a->ops_left = ops;
	return &a->base;
}

/* --------------------------------------------------------------- harness */

typedef struct env {
	char *dir;
	store_t *st;
	uint32_t acct, fid;
	afolder_t f;
} env_t;

static int mk_fn(store_txn_t *txn, void *arg)
{
	env_t *e = arg;
	int rc = store_account_add(txn, "home", &e->acct);
	if (rc)
		return rc;
	return store_folder_create(txn, e->acct, "INBOX", 0, &e->fid);
}

static void env_init(env_t *e, bool modseq, bool uidplus)
{
	store_open_opts_t so = { .nosync = true };
	char err[256];

	memset(e, 0, sizeof(*e));
	e->dir = test_tmpdir("ib-engine");
	CHECK_EQ_INT(store_open(e->dir, &so, &e->st, err, sizeof(err)), 0);
	CHECK_EQ_INT(store_write(e->st, mk_fn, e), 0);
	e->f.uidvalidity = 77;
	e->f.uidnext = 1;
	e->f.hms = 1;
	e->f.modseq = modseq;
	e->f.uidplus = uidplus;
	e->f.bulk = modseq && uidplus;
}

static void env_free(env_t *e)
{
	store_close(e->st);
	test_rmtree(e->dir);
	free(e->dir);
	af_free(&e->f);
}

typedef struct result {
	bool called;
	int rc;
	engine_stats_t stats;
	int released;          /* opts.release calls */
	bool release_after_done;
	unsigned ops_at_release, ops_at_done; /* n_ops then */
} result_t;

static void release_cb(void *ctx)
{
	result_t *r = ctx;
	r->released++;
	r->release_after_done |= r->called;
	r->ops_at_release = n_ops;
}

static void done_cb(int rc, const engine_stats_t *s, void *ctx)
{
	result_t *r = ctx;
	r->called = true;
	r->ops_at_done = n_ops;
	r->rc = rc;
	r->stats = *s;
}

static int run_sync2(env_t *e, int ops, double ratio, bool readonly, result_t *res,
		     bool release);
/* run_sync2() with release also reads ahead, with the folder's counters. */
static bool g_read_ahead;

static int run_sync(env_t *e, int ops, double ratio, bool readonly, result_t *res)
{
	return run_sync2(e, ops, ratio, readonly, res, false);
}

/* As run_sync(), with opts.release set when release. */
static int run_sync2(env_t *e, int ops, double ratio, bool readonly, result_t *res,
		     bool release)
{
	replica_t *r = arep_new(&e->f, ops);
	engine_opts_t o = {
		.folder_id = e->fid,
		.replica_id = STORE_REPLICA_REMOTE,
		.replica_name = "INBOX",
		.log_prefix = "test",
		.max_deletion_ratio = ratio,
		.readonly = readonly,
		.fetch_batch = 3,
		.commit_msgs = 2,
		.settle_secs = -1, /* no server to be late here */
	};
	result_t local;
	if (!res)
		res = &local;
	memset(res, 0, sizeof(*res));
	if (release)
		o.release = release_cb;
	if (release && g_read_ahead) {
		/* As the scheduler has them from LIST-STATUS. */
		o.read_ahead = true;
		o.has_counts = true;
		o.counts = (replica_counts_t){ e->f.uidvalidity, e->f.uidnext, (uint32_t)e->f.n,
					       e->f.hms };
	}
	engine_job_t *job = engine_sync_folder(e->st, r, &o, done_cb, res);
	CHECK(job == NULL); /* synchronous replica: done before returning */
	CHECK(res->called);
	replica_free(r);
	return res->rc;
}

static char *msg(int i)
{
	return xasprintf("From: a@example.org\r\nSubject: m%d\r\nMessage-ID: <m%d@test>\r\n\r\n"
			 "body %d\r\n", i, i, i);
}

/* Store-side access. */
typedef struct sctx {
	env_t *e;
	const char *data;
	unsigned flags;
	const char *kw;
	uint32_t uid;
} sctx_t;

static int s_add_fn(store_txn_t *txn, void *arg)
{
	sctx_t *c = arg;
	store_msg_new_t nm = { .flags = c->flags, .internaldate = 1700000000 };
	size_t n;
	char **v = replica_kw_split(c->kw, &n);
	nm.kw.v = (const char *const *)v;
	nm.kw.n = n;
	int rc = store_msg_append(txn, c->e->fid, c->data, strlen(c->data), &nm, &c->uid, NULL);
	replica_kw_free_vec(v, n);
	return rc;
}

static uint32_t s_add(env_t *e, const char *data, unsigned flags, const char *kw)
{
	sctx_t c = { e, data, flags, kw, 0 };
	CHECK_EQ_INT(store_write(e->st, s_add_fn, &c), 0);
	return c.uid;
}

static int s_flags_fn(store_txn_t *txn, void *arg)
{
	sctx_t *c = arg;
	size_t n;
	char **v = replica_kw_split(c->kw, &n);
	store_keywords_t kw = { (const char *const *)v, n };
	int rc = store_msg_set_flags(txn, c->e->fid, c->uid, STORE_FLAGS_SET, c->flags, &kw, 0, NULL);
	replica_kw_free_vec(v, n);
	return rc;
}

static void s_set_flags(env_t *e, uint32_t uid, unsigned flags, const char *kw)
{
	sctx_t c = { e, NULL, flags, kw, uid };
	CHECK_EQ_INT(store_write(e->st, s_flags_fn, &c), 0);
}

static int s_del_fn(store_txn_t *txn, void *arg)
{
	sctx_t *c = arg;
	return store_msg_expunge(txn, c->e->fid, c->uid, NULL);
}

static void s_del(env_t *e, uint32_t uid)
{
	sctx_t c = { e, NULL, 0, NULL, uid };
	CHECK_EQ_INT(store_write(e->st, s_del_fn, &c), 0);
}

/* A snapshot of the store folder: data, flags, keywords per message. */
typedef struct snap {
	char **data;
	unsigned *flags;
	char **kw;
	uint32_t *uid;
	size_t n;
	env_t *e;
	store_txn_t *txn;
} snap_t;

static int snap_cb(const store_msg_t *m, void *arg)
{
	snap_t *s = arg;
	const void *d;
	size_t l;
	if (store_blob_get(s->txn, &m->hash, &d, &l))
		return -1;
	s->data = xrealloc(s->data, (s->n + 1) * sizeof(char *));
	s->flags = xrealloc(s->flags, (s->n + 1) * sizeof(unsigned));
	s->kw = xrealloc(s->kw, (s->n + 1) * sizeof(char *));
	s->uid = xrealloc(s->uid, (s->n + 1) * sizeof(uint32_t));
	s->data[s->n] = xstrndup(d, l);
	s->flags[s->n] = m->flags;
	s->kw[s->n] = replica_kw_join(m->kw.v, m->kw.n);
	s->uid[s->n] = m->uid;
	s->n++;
	return 0;
}

static void snap_take(env_t *e, snap_t *s)
{
	memset(s, 0, sizeof(*s));
	s->e = e;
	CHECK_EQ_INT(store_txn_begin_read(e->st, &s->txn), 0);
	CHECK_EQ_INT(store_msg_iter(s->txn, e->fid, 1, snap_cb, s), 0);
	store_txn_abort(s->txn);
}

static void snap_free(snap_t *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->data[i]);
		free(s->kw[i]);
	}
	free(s->data);
	free(s->flags);
	free(s->kw);
	free(s->uid);
}

static int count_in_store(snap_t *s, const char *data)
{
	int c = 0;
	for (size_t i = 0; i < s->n; i++)
		c += strcmp(s->data[i], data) == 0;
	return c;
}

static int count_in_replica(afolder_t *f, const char *data)
{
	int c = 0;
	for (size_t i = 0; i < f->n; i++)
		c += strcmp(f->m[i].data, data) == 0;
	return c;
}

/* Both sides hold the same messages, once each, with the same flags. */
static void check_same(env_t *e, const char *where)
{
	snap_t s;
	int bad = 0;

	snap_take(e, &s);
	if (s.n != e->f.n)
		bad++;
	for (size_t i = 0; i < e->f.n; i++) {
		amsg_t *m = &e->f.m[i];
		if (count_in_store(&s, m->data) != 1 || count_in_replica(&e->f, m->data) != 1) {
			bad++;
			continue;
		}
		for (size_t j = 0; j < s.n; j++) {
			if (strcmp(s.data[j], m->data) == 0 &&
			    (s.flags[j] != m->flags || strcmp(s.kw[j], m->kw) != 0))
				bad++;
		}
	}
	if (bad)
		fprintf(stderr, "%s: store has %zu, replica %zu messages, %d differences\n", where,
			s.n, e->f.n, bad);
	CHECK_EQ_INT(bad, 0);
	snap_free(&s);
}

static int pending_cb(const store_pending_t *p, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

static int count_pending(env_t *e)
{
	store_txn_t *txn;
	int n = 0;
	CHECK_EQ_INT(store_txn_begin_read(e->st, &txn), 0);
	CHECK_EQ_INT(store_pending_list(txn, 0, pending_cb, &n), 0);
	store_txn_abort(txn);
	return n;
}

/* ------------------------------------------------------------------ tests */

static void test_initial_and_two_way(bool modseq, bool uidplus)
{
	env_t e;
	result_t res;
	char *m[8];

	env_init(&e, modseq, uidplus);
	for (int i = 0; i < 8; i++)
		m[i] = msg(i);
	for (int i = 0; i < 5; i++)
		af_add(&e.f, m[i], i % 2 ? REPLICA_F_SEEN : 0, i == 2 ? "$Forwarded Junk" : "");
	CHECK_EQ_INT(run_sync(&e, -1, 0.5, false, &res), ENGINE_OK);
	CHECK_EQ_INT(res.stats.downloaded, 5);
	check_same(&e, "initial");

	/* Unchanged: nothing moves. */
	CHECK_EQ_INT(run_sync(&e, -1, 0.5, false, &res), ENGINE_OK);
	CHECK_EQ_INT(res.stats.downloaded + res.stats.uploaded + res.stats.flags_store +
		     res.stats.flags_replica, 0);

	/* New on both sides. */
	af_add(&e.f, m[5], 0, "");
	uint32_t s6 = s_add(&e, m[6], REPLICA_F_FLAGGED, "todo");
	CHECK_EQ_INT(run_sync(&e, -1, 0.5, false, &res), ENGINE_OK);
	CHECK_EQ_INT(res.stats.downloaded, 1);
	CHECK_EQ_INT(res.stats.uploaded, uidplus ? 1 : 1);
	if (!uidplus) {
		/* Found by Message-ID: still paired, no round trip. */
		snap_t s;
		snap_take(&e, &s);
		CHECK_EQ_INT(count_in_store(&s, m[6]), 1);
		snap_free(&s);
	}
	check_same(&e, "new both ways");
	(void)s6;

	/* Flags: the replica sets \Seen on m0, the store sets \Flagged on m0
	 * and removes \Seen from m1; keywords change on both sides. */
	snap_t s;
	snap_take(&e, &s);
	uint32_t su0 = 0, su1 = 0, su2 = 0;
	for (size_t i = 0; i < s.n; i++) {
		if (strcmp(s.data[i], m[0]) == 0) su0 = s.uid[i];
		if (strcmp(s.data[i], m[1]) == 0) su1 = s.uid[i];
		if (strcmp(s.data[i], m[2]) == 0) su2 = s.uid[i];
	}
	snap_free(&s);
	amsg_t *r0 = NULL, *r2 = NULL;
	for (size_t i = 0; i < e.f.n; i++) {
		if (strcmp(e.f.m[i].data, m[0]) == 0) r0 = &e.f.m[i];
		if (strcmp(e.f.m[i].data, m[2]) == 0) r2 = &e.f.m[i];
	}
	r0->flags |= REPLICA_F_SEEN;
	r0->modseq = ++e.f.hms;
	free(r2->kw);
	r2->kw = xstrdup("$Forwarded"); /* replica drops Junk */
	r2->modseq = ++e.f.hms;
	s_set_flags(&e, su0, REPLICA_F_FLAGGED, "");
	s_set_flags(&e, su1, 0, "");
	s_set_flags(&e, su2, 0, "$Forwarded Junk work"); /* store adds work */
	/* Two messages with the same change: one bulk update where offered. */
	uint32_t su4 = 0;
	snap_take(&e, &s);
	for (size_t i = 0; i < s.n; i++)
		if (strcmp(s.data[i], m[4]) == 0)
			su4 = s.uid[i];
	snap_free(&s);
	s_set_flags(&e, su4, REPLICA_F_FLAGGED, "");
	CHECK_EQ_INT(run_sync(&e, -1, 0.5, false, &res), ENGINE_OK);
	check_same(&e, "flags");
	CHECK_EQ_INT(r0->flags, REPLICA_F_SEEN | REPLICA_F_FLAGGED);
	CHECK(strcmp(r2->kw, "$Forwarded work") == 0);

	/* Deletions both ways. */
	uint32_t ruid3 = 0;
	for (size_t i = 0; i < e.f.n; i++)
		if (strcmp(e.f.m[i].data, m[3]) == 0)
			ruid3 = e.f.m[i].uid;
	af_del(&e.f, ruid3);
	s_del(&e, su1);
	CHECK_EQ_INT(run_sync(&e, -1, 0.5, false, &res), ENGINE_OK);
	CHECK_EQ_INT(res.stats.deleted_store, 1);
	CHECK_EQ_INT(res.stats.deleted_replica, 1);
	check_same(&e, "deletions");
	CHECK_EQ_INT(count_in_replica(&e.f, m[1]), 0);
	CHECK_EQ_INT(count_pending(&e), 0);

	for (int i = 0; i < 8; i++)
		free(m[i]);
	env_free(&e);
}

static void test_uidvalidity_hold(void)
{
	env_t e;
	result_t res;
	char *a = msg(1), *b = msg(2);

	env_init(&e, true, true);
	af_add(&e.f, a, 0, "");
	af_add(&e.f, b, 0, "");
	CHECK_EQ_INT(run_sync(&e, -1, 0.5, false, NULL), ENGINE_OK);
	/* The folder is recreated on the server: new UIDVALIDITY, one message. */
	af_free(&e.f);
	e.f.uidvalidity = 99;
	e.f.uidnext = 1;
	e.f.hms = 1;
	e.f.modseq = true;
	e.f.uidplus = true;
	af_add(&e.f, a, 0, "");
	CHECK_EQ_INT(run_sync(&e, -1, 0.5, false, &res), ENGINE_HELD);
	CHECK(strstr(res.stats.message, "UIDVALIDITY") != NULL);
	CHECK(strstr(res.stats.message, "folder recover") != NULL);
	snap_t s;
	snap_take(&e, &s);
	CHECK_EQ_INT(s.n, 2); /* nothing deleted in the store */
	snap_free(&s);
	CHECK_EQ_INT(e.f.n, 1); /* nothing uploaded */
	/* Held stays held. */
	CHECK_EQ_INT(run_sync(&e, -1, 0.5, false, &res), ENGINE_HELD);
	free(a);
	free(b);
	env_free(&e);
}

/* A fresh env whose replica holds msg(0) .. msg(n - 1), kept in m[]. */
static void env_with_msgs(env_t *e, char **m, int n)
{
	env_init(e, true, true);
	for (int i = 0; i < n; i++) {
		m[i] = msg(i);
		af_add(&e->f, m[i], 0, "");
	}
}

static void test_mass_deletion(void)
{
	env_t e;
	result_t res;
	char *m[20];

	env_with_msgs(&e, m, 20);
	CHECK_EQ_INT(run_sync(&e, -1, 0.5, false, NULL), ENGINE_OK);
	/* 15 of 20 vanish from the replica. */
	while (e.f.n > 5)
		af_del(&e.f, e.f.m[0].uid);
	CHECK_EQ_INT(run_sync(&e, -1, 0.5, false, &res), ENGINE_HELD);
	CHECK(strstr(res.stats.message, "15 of 20") != NULL);
	snap_t s;
	snap_take(&e, &s);
	CHECK_EQ_INT(s.n, 20);
	snap_free(&s);

	/* The same from the store side, in a fresh folder state. */
	for (int i = 0; i < 20; i++)
		free(m[i]);
	env_free(&e);

	env_with_msgs(&e, m, 10);
	CHECK_EQ_INT(run_sync(&e, -1, 0.5, false, NULL), ENGINE_OK);
	snap_take(&e, &s);
	for (size_t i = 0; i < 8; i++)
		s_del(&e, s.uid[i]);
	snap_free(&s);
	CHECK_EQ_INT(run_sync(&e, -1, 0.5, false, &res), ENGINE_HELD);
	CHECK_EQ_INT(e.f.n, 10);
	/* With the check disabled (the operator confirmed), it goes through. */
	store_txn_t *txn;
	CHECK_EQ_INT(store_txn_begin_write(e.st, &txn), 0);
	CHECK_EQ_INT(store_folder_release(txn, e.fid), 0);
	CHECK_EQ_INT(store_txn_commit(txn), 0);
	CHECK_EQ_INT(run_sync(&e, -1, 1.0, false, &res), ENGINE_OK);
	CHECK_EQ_INT(e.f.n, 2);
	check_same(&e, "confirmed deletion");
	for (int i = 0; i < 10; i++)
		free(m[i]);
	env_free(&e);
}

/* max_deletion_ratio = 0 is the strictest setting, not "off": 5 of 20
 * messages vanishing at once is held; 4 (below the minimum count) is not. */
static void test_ratio_zero(void)
{
	env_t e;
	result_t res;
	char *m[20];

	env_with_msgs(&e, m, 20);
	CHECK_EQ_INT(run_sync(&e, -1, 0.0, false, NULL), ENGINE_OK);
	for (int i = 0; i < 4; i++)
		af_del(&e.f, e.f.m[0].uid);
	CHECK_EQ_INT(run_sync(&e, -1, 0.0, false, &res), ENGINE_OK);
	snap_t s;
	snap_take(&e, &s);
	CHECK_EQ_INT(s.n, 16);
	snap_free(&s);
	for (int i = 0; i < 5; i++)
		af_del(&e.f, e.f.m[0].uid);
	CHECK_EQ_INT(run_sync(&e, -1, 0.0, false, &res), ENGINE_HELD);
	CHECK(strstr(res.stats.message, "5 of 16") != NULL);
	snap_take(&e, &s);
	CHECK_EQ_INT(s.n, 16);
	snap_free(&s);
	for (int i = 0; i < 20; i++)
		free(m[i]);
	env_free(&e);
}

static void test_readonly(void)
{
	env_t e;
	result_t res;
	char *a = msg(1), *b = msg(2);

	env_init(&e, true, true);
	af_add(&e.f, a, 0, "");
	CHECK_EQ_INT(run_sync(&e, -1, 0.5, true, NULL), ENGINE_OK);
	s_add(&e, b, 0, "");
	snap_t s;
	snap_take(&e, &s);
	s_set_flags(&e, s.uid[0], REPLICA_F_SEEN, "");
	snap_free(&s);
	uint64_t hms = e.f.hms;
	CHECK_EQ_INT(run_sync(&e, -1, 0.5, true, &res), ENGINE_OK);
	CHECK_EQ_INT(e.f.n, 1);
	CHECK_EQ_INT(e.f.m[0].flags, 0);
	CHECK_EQ_INT(e.f.hms, hms);
	/* The local change is kept, not reverted. */
	snap_take(&e, &s);
	CHECK_EQ_INT(s.n, 2);
	for (size_t i = 0; i < s.n; i++)
		if (strcmp(s.data[i], a) == 0)
			CHECK_EQ_INT(s.flags[i], REPLICA_F_SEEN);
	snap_free(&s);
	free(a);
	free(b);
	env_free(&e);
}

/*
 * Crash at every replica operation during a sync that downloads, uploads,
 * changes flags and deletes on both sides; then sync to the end.
 */
static void crash_scenario(int k, bool modseq, bool uidplus, int *ops_total)
{
	env_t e;
	result_t res;
	char *m[12];

	env_init(&e, modseq, uidplus);
	for (int i = 0; i < 12; i++)
		m[i] = msg(i);
	for (int i = 0; i < 6; i++)
		af_add(&e.f, m[i], 0, "");
	CHECK_EQ_INT(run_sync(&e, -1, 0.9, false, NULL), ENGINE_OK);
	/* Changes on both sides. */
	for (int i = 6; i < 9; i++)
		af_add(&e.f, m[i], REPLICA_F_SEEN, "");
	for (int i = 9; i < 12; i++)
		s_add(&e, m[i], REPLICA_F_ANSWERED, "x");
	snap_t s;
	snap_take(&e, &s);
	s_del(&e, s.uid[0]);
	s_set_flags(&e, s.uid[1], REPLICA_F_FLAGGED, "y");
	snap_free(&s);
	af_del(&e.f, e.f.m[2].uid);
	e.f.m[3].flags |= REPLICA_F_DRAFT;
	e.f.m[3].modseq = ++e.f.hms;

	if (k < 0) {
		/* Count operations of an uninterrupted run. */
		arep_t *a = (arep_t *)arep_new(&e.f, 1000000);
		engine_opts_t o = { .folder_id = e.fid, .replica_id = STORE_REPLICA_REMOTE,
				    .replica_name = "INBOX", .log_prefix = "test",
				    .max_deletion_ratio = 0.9, .fetch_batch = 2, .commit_msgs = 1,
				    .settle_secs = -1 };
		memset(&res, 0, sizeof(res));
		engine_sync_folder(e.st, &a->base, &o, done_cb, &res);
		*ops_total = 1000000 - a->ops_left;
		replica_free(&a->base);
		CHECK_EQ_INT(res.rc, ENGINE_OK);
	} else {
		int rc = run_sync(&e, k, 0.9, false, &res);
		CHECK(rc == ENGINE_REPLICA_ERR || rc == ENGINE_OK);
		/* A second interruption at the same point, then a full run. */
		run_sync(&e, k, 0.9, false, NULL);
		CHECK_EQ_INT(run_sync(&e, -1, 0.9, false, &res), ENGINE_OK);
	}
	char where[64];
	snprintf(where, sizeof(where), "crash at op %d (modseq %d uidplus %d)", k, modseq, uidplus);
	check_same(&e, where);
	/* The end state is the same whatever the interruption. */
	CHECK_EQ_INT(e.f.n, 10);
	CHECK_EQ_INT(count_in_replica(&e.f, m[0]), 0);
	CHECK_EQ_INT(count_in_replica(&e.f, m[2]), 0);
	CHECK_EQ_INT(count_pending(&e), 0);
	for (int i = 0; i < 12; i++)
		free(m[i]);
	env_free(&e);
}

static void test_crash_everywhere(bool modseq, bool uidplus)
{
	int total = 0;

	crash_scenario(-1, modseq, uidplus, &total);
	CHECK(total > 5);
	for (int k = 1; k <= total + 1; k++)
		crash_scenario(k, modseq, uidplus, &total);
}

static int add_pending_fn(store_txn_t *txn, void *arg)
{
	sctx_t *c = arg;
	store_msg_t m;
	int rc = store_msg_get(txn, c->e->fid, c->uid, &m);
	if (rc)
		return rc;
	store_pending_t p = { .kind = STORE_PENDING_UPLOAD, .folder_id = c->e->fid,
			      .replica_id = STORE_REPLICA_REMOTE, .store_uid = c->uid,
			      .target_uidnext = c->e->f.uidnext, .hash = m.hash,
			      .message_id = "<m1@test>", .created = (int64_t)time(NULL) };
	return store_pending_add(txn, &p, NULL);
}

/* An upload interrupted moments ago and not (yet) on the replica is held
 * back, not sent twice; once the record is old enough it is sent. */
static void test_settle(void)
{
	env_t e;
	result_t res;
	char *a = msg(1);

	env_init(&e, true, true);
	CHECK_EQ_INT(run_sync(&e, -1, 0.5, false, NULL), ENGINE_OK);
	uint32_t su = s_add(&e, a, 0, "");
	sctx_t c = { &e, NULL, 0, NULL, su };
	CHECK_EQ_INT(store_write(e.st, add_pending_fn, &c), 0);

	replica_t *r = arep_new(&e.f, -1);
	engine_opts_t o = { .folder_id = e.fid, .replica_id = STORE_REPLICA_REMOTE,
			    .replica_name = "INBOX", .log_prefix = "test", .max_deletion_ratio = 0.5 };
	memset(&res, 0, sizeof(res));
	CHECK(engine_sync_folder(e.st, r, &o, done_cb, &res) == NULL);
	replica_free(r);
	CHECK_EQ_INT(res.rc, ENGINE_OK);
	CHECK_EQ_INT(res.stats.deferred, 1);
	CHECK_EQ_INT(res.stats.uploaded, 0);
	CHECK_EQ_INT(e.f.n, 0);
	CHECK_EQ_INT(count_pending(&e), 1);
	/* The late copy lands after all: it is paired, not duplicated. */
	af_add(&e.f, a, 0, "");
	CHECK_EQ_INT(run_sync(&e, -1, 0.5, false, &res), ENGINE_OK);
	CHECK_EQ_INT(res.stats.uploaded, 0);
	CHECK_EQ_INT(res.stats.downloaded, 0);
	check_same(&e, "late copy");
	CHECK_EQ_INT(count_pending(&e), 0);
	free(a);
	env_free(&e);
}

/* A folder that keeps no keywords: they stay in the store, flags still sync. */
static void test_no_keywords(void)
{
	env_t e;
	result_t res;
	char *a = msg(1), *b = msg(2);

	env_init(&e, true, true);
	e.f.no_kw = true;
	af_add(&e.f, a, 0, "");
	CHECK_EQ_INT(run_sync(&e, -1, 0.5, false, NULL), ENGINE_OK);
	snap_t s;
	snap_take(&e, &s);
	s_set_flags(&e, s.uid[0], REPLICA_F_SEEN, "work");
	snap_free(&s);
	s_add(&e, b, 0, "todo");
	CHECK_EQ_INT(run_sync(&e, -1, 0.5, false, &res), ENGINE_OK);
	CHECK_EQ_INT(run_sync(&e, -1, 0.5, false, &res), ENGINE_OK);
	CHECK_EQ_INT(e.f.n, 2);
	CHECK_EQ_INT(e.f.m[0].flags, REPLICA_F_SEEN);
	CHECK(strcmp(e.f.m[0].kw, "") == 0 && strcmp(e.f.m[1].kw, "") == 0);
	snap_take(&e, &s);
	for (size_t i = 0; i < s.n; i++)
		CHECK(strcmp(s.kw[i], strcmp(s.data[i], a) == 0 ? "work" : "todo") == 0);
	snap_free(&s);
	/* A flag changed on the replica, nothing in the store: the folder is
	 * opened for reading, which cannot tell whether it keeps keywords. The
	 * last select did: the store's keywords stay. */
	unsigned reads = n_read_selects;
	e.f.m[0].flags |= REPLICA_F_FLAGGED;
	e.f.m[0].modseq = ++e.f.hms;
	CHECK_EQ_INT(run_sync(&e, -1, 0.5, false, &res), ENGINE_OK);
	CHECK_EQ_INT(n_read_selects, reads + 1);
	CHECK_EQ_INT(res.stats.flags_store, 1);
	snap_take(&e, &s);
	for (size_t i = 0; i < s.n; i++)
		CHECK(strcmp(s.kw[i], strcmp(s.data[i], a) == 0 ? "work" : "todo") == 0);
	snap_free(&s);
	free(a);
	free(b);
	env_free(&e);
}

/* A replica that gives no counters before select() (the Maildir) is skipped
 * on its select() answer when nothing changed on either side: no scan. The
 * release callback comes once, before done, and only from a job that goes
 * on to its final commit. */
static void test_skip_after_select(void)
{
	env_t e;
	result_t res;
	char *a = msg(1), *b = msg(2);

	env_init(&e, true, true);
	af_add(&e.f, a, 0, "");
	unsigned reads = n_read_selects;
	CHECK_EQ_INT(run_sync2(&e, -1, 0.5, false, &res, true), ENGINE_OK);
	CHECK_EQ_INT(res.released, 1);
	CHECK(!res.release_after_done);
	CHECK_EQ_INT(n_read_selects, reads + 1); /* an empty store: only reads */
	unsigned scans = n_scans;
	CHECK_EQ_INT(run_sync2(&e, -1, 0.5, false, &res, true), ENGINE_OK);
	CHECK(res.stats.skipped);
	CHECK_EQ_INT(n_scans, scans);
	CHECK_EQ_INT(res.released, 0);
	/* A change on the replica: selected, scanned, fetched. */
	af_add(&e.f, b, REPLICA_F_SEEN, "");
	CHECK_EQ_INT(run_sync2(&e, -1, 0.5, false, &res, true), ENGINE_OK);
	CHECK(!res.stats.skipped);
	CHECK_EQ_INT(n_scans, scans + 1);
	CHECK_EQ_INT(res.stats.downloaded, 1);
	CHECK_EQ_INT(res.released, 1);
	CHECK(!res.release_after_done);
	/* A change in the store only: not skipped either; it reaches the replica. */
	snap_t s;
	snap_take(&e, &s);
	s_set_flags(&e, s.uid[0], REPLICA_F_FLAGGED, "");
	snap_free(&s);
	reads = n_read_selects;
	CHECK_EQ_INT(run_sync2(&e, -1, 0.5, false, &res, true), ENGINE_OK);
	CHECK(!res.stats.skipped);
	CHECK_EQ_INT(res.stats.flags_replica, 1);
	CHECK_EQ_INT(n_read_selects, reads); /* selected for writing */
	/* The next sync sees that change come back (a higher modseq), the one
	 * after it nothing at all. */
	CHECK_EQ_INT(run_sync2(&e, -1, 0.5, false, &res, true), ENGINE_OK);
	CHECK_EQ_INT(res.stats.flags_store + res.stats.flags_replica, 0);
	CHECK_EQ_INT(run_sync2(&e, -1, 0.5, false, &res, true), ENGINE_OK);
	CHECK(res.stats.skipped);
	free(a);
	free(b);
	env_free(&e);
}

/* The release callback promises that the job sends the replica nothing
 * more: whether only downloads were left (it comes right after the fetch
 * is sent) or flags, deletions and uploads still went out after them. */
static void test_release_is_last(void)
{
	env_t e;
	result_t res;
	char *m[6];

	for (int i = 0; i < 6; i++)
		m[i] = msg(40 + i);
	env_init(&e, true, true);
	af_add(&e.f, m[0], 0, "");
	CHECK_EQ_INT(run_sync2(&e, -1, 0.5, false, &res, true), ENGINE_OK);
	/* Only downloads. */
	af_add(&e.f, m[1], 0, "");
	af_add(&e.f, m[2], REPLICA_F_SEEN, "");
	CHECK_EQ_INT(run_sync2(&e, -1, 0.5, false, &res, true), ENGINE_OK);
	CHECK_EQ_INT(res.stats.downloaded, 2);
	CHECK_EQ_INT(res.released, 1);
	CHECK_EQ_INT(res.ops_at_release, res.ops_at_done);
	/* Downloads, then a flag and an upload for the replica. */
	snap_t s;
	snap_take(&e, &s);
	s_set_flags(&e, s.uid[0], REPLICA_F_FLAGGED, "");
	snap_free(&s);
	s_add(&e, m[3], 0, "");
	af_add(&e.f, m[4], 0, "");
	CHECK_EQ_INT(run_sync2(&e, -1, 0.5, false, &res, true), ENGINE_OK);
	CHECK_EQ_INT(res.stats.downloaded, 1);
	CHECK_EQ_INT(res.stats.uploaded, 1);
	CHECK_EQ_INT(res.stats.flags_replica, 1);
	CHECK_EQ_INT(res.released, 1);
	CHECK_EQ_INT(res.ops_at_release, res.ops_at_done);
	/* A deletion in the store and a download. */
	snap_take(&e, &s);
	s_del(&e, s.uid[0]);
	snap_free(&s);
	af_add(&e.f, m[5], 0, "");
	CHECK_EQ_INT(run_sync2(&e, -1, 0.5, false, &res, true), ENGINE_OK);
	CHECK_EQ_INT(res.stats.downloaded, 1);
	CHECK_EQ_INT(res.stats.deleted_replica, 1);
	CHECK_EQ_INT(res.released, 1);
	CHECK_EQ_INT(res.ops_at_release, res.ops_at_done);
	for (int i = 0; i < 6; i++)
		free(m[i]);
	env_free(&e);
}

/* A job reading ahead: the whole read goes out at once and the session is
 * handed on before any answer; a change that needs the replica after all,
 * a folder that changed since its counters, or a body that did not come
 * end it with ENGINE_AGAIN, and the usual job after it finishes the work
 * without losing or doubling a message. */
static bool snap_has(const snap_t *s, const char *data, unsigned flags, const char *kw)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->data[i], data) == 0)
			return s->flags[i] == flags && strcmp(s->kw[i], kw) == 0;
	return false;
}

static env_t *hook_env;
static uint32_t hook_uid;

static void hook_store_flag(arep_t *a)
{
	(void)a;
	s_set_flags(hook_env, hook_uid, REPLICA_F_FLAGGED | REPLICA_F_ANSWERED, "");
}

static void hook_modseq_back(arep_t *a)
{
	a->f->hms = 2;
}

static void test_read_ahead(void)
{
	env_t e;
	result_t res;
	snap_t s;
	char *m[6];

	for (int i = 0; i < 6; i++)
		m[i] = msg(60 + i);
	env_init(&e, true, true);
	uint32_t u0 = af_add(&e.f, m[0], 0, "");
	uint32_t u1 = af_add(&e.f, m[1], 0, "");
	CHECK_EQ_INT(run_sync2(&e, -1, 0.9, false, &res, true), ENGINE_OK);
	/* The first sync left keywords unknown (it EXAMINEd). A write
	 * settles them, as a real folder's first change would. */
	snap_take(&e, &s);
	s_set_flags(&e, s.uid[1], REPLICA_F_ANSWERED, "");
	snap_free(&s);
	CHECK_EQ_INT(run_sync2(&e, -1, 0.9, false, &res, true), ENGINE_OK);
	CHECK_EQ_INT(res.stats.flags_replica, 1);
	g_read_ahead = true;

	/* New, flagged and deleted on the replica: one read, no scan(). */
	unsigned reads = n_select_reads, scans = n_scans;
	af_add(&e.f, m[2], REPLICA_F_SEEN, "$Work");
	af_find(&e.f, u0)->flags = REPLICA_F_FLAGGED;
	af_find(&e.f, u0)->modseq = ++e.f.hms;
	af_del(&e.f, u1);
	CHECK_EQ_INT(run_sync2(&e, -1, 0.9, false, &res, true), ENGINE_OK);
	CHECK_EQ_INT(n_select_reads, reads + 1);
	CHECK_EQ_INT(n_scans, scans);
	CHECK_EQ_INT(res.released, 1);
	CHECK_EQ_INT(res.ops_at_release, res.ops_at_done);
	CHECK_EQ_INT(res.stats.downloaded, 1);
	CHECK_EQ_INT(res.stats.deleted_store, 1);
	CHECK_EQ_INT(res.stats.flags_store, 1);
	snap_take(&e, &s);
	CHECK_EQ_INT(s.n, 2);
	CHECK(snap_has(&s, m[0], REPLICA_F_FLAGGED, ""));
	CHECK(snap_has(&s, m[2], REPLICA_F_SEEN, "$Work"));
	snap_free(&s);
	CHECK_EQ_INT(run_sync2(&e, -1, 0.9, false, &res, true), ENGINE_OK);
	CHECK(res.stats.skipped);

	/* The store changes while the read is out: nothing is written to the
	 * replica by this job; the next one pushes the flag. */
	af_add(&e.f, m[3], 0, "");
	snap_take(&e, &s);
	hook_env = &e;
	for (size_t i = 0; i < s.n; i++)
		if (strcmp(s.data[i], m[0]) == 0)
			hook_uid = s.uid[i];
	snap_free(&s);
	read_hook = hook_store_flag;
	CHECK_EQ_INT(run_sync2(&e, -1, 0.9, false, &res, true), ENGINE_AGAIN);
	read_hook = NULL;
	CHECK_EQ_INT(res.ops_at_release, res.ops_at_done);
	CHECK_EQ_INT(res.stats.downloaded, 1);
	g_read_ahead = false;
	CHECK_EQ_INT(run_sync2(&e, -1, 0.9, false, &res, true), ENGINE_OK);
	CHECK_EQ_INT(res.stats.flags_replica, 1);
	CHECK_EQ_INT(res.stats.downloaded, 0);
	CHECK_EQ_INT(af_find(&e.f, u0)->flags, REPLICA_F_FLAGGED | REPLICA_F_ANSWERED);
	g_read_ahead = true;

	/* A body that does not come: kept what came, the rest next time. */
	af_add(&e.f, m[4], 0, "");
	read_drop_body = true;
	CHECK_EQ_INT(run_sync2(&e, -1, 0.9, false, &res, true), ENGINE_AGAIN);
	CHECK_EQ_INT(res.stats.downloaded, 0);
	g_read_ahead = false;
	CHECK_EQ_INT(run_sync2(&e, -1, 0.9, false, &res, true), ENGINE_OK);
	CHECK_EQ_INT(res.stats.downloaded, 1);
	g_read_ahead = true;

	/* HIGHESTMODSEQ went back between the counters and the SELECT:
	 * nothing is taken from the read; the usual job scans in full. */
	af_add(&e.f, m[5], 0, "");
	snap_take(&e, &s);
	size_t before = s.n;
	snap_free(&s);
	read_hook = hook_modseq_back;
	CHECK_EQ_INT(run_sync2(&e, -1, 0.9, false, &res, true), ENGINE_AGAIN);
	read_hook = NULL;
	CHECK_EQ_INT(res.stats.downloaded + res.stats.flags_store + res.stats.deleted_store, 0);
	g_read_ahead = false;
	CHECK_EQ_INT(run_sync2(&e, -1, 0.9, false, &res, true), ENGINE_OK);
	CHECK(res.stats.full_scan);
	CHECK_EQ_INT(res.stats.downloaded, 1);
	snap_take(&e, &s);
	CHECK_EQ_INT(s.n, before + 1);
	CHECK_EQ_INT(s.n, e.f.n);
	snap_free(&s);
	for (int i = 0; i < 6; i++)
		free(m[i]);
	env_free(&e);
}

int main(void)
{
	test_read_ahead();
	test_release_is_last();
	test_skip_after_select();
	test_no_keywords();
	test_settle();
	test_initial_and_two_way(true, true);
	test_initial_and_two_way(false, true);
	test_initial_and_two_way(true, false);
	test_initial_and_two_way(false, false);
	test_uidvalidity_hold();
	test_mass_deletion();
	test_ratio_zero();
	test_readonly();
	test_crash_everywhere(true, true);
	test_crash_everywhere(false, false);
	CHECK(n_read_selects > 0);
	CHECK_EQ_INT(n_read_writes, 0);
	return test_done("test_engine");
}
