/*
 * Model-based test: thousands of random adds, flag changes, expunges and
 * moves across three folders, in random batches (some aborted, some across a
 * close and reopen), checked against a plain in-memory model after every
 * batch: UIDNEXT, HIGHESTMODSEQ, counters, every message's flags, keywords
 * and blob, "changes since" from random points, and blob reference counts.
 */
#include "testutil.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NFOLDERS 3
#define MAXUID 6000
#define NCONTENT 24
#define NKW 8

struct mmsg {
	bool live, tomb;
	uint8_t flags, kw, content;
	uint64_t modseq, added;
};

struct mfolder {
	uint32_t id, uidnext;
	uint64_t hms;
	struct mmsg m[MAXUID];
};

struct model {
	struct mfolder f[NFOLDERS];
};

static const char *kw_names[NKW] = {"$Forwarded", "$Junk", "$Label1", "$MDNSent",
				    "Work",	  "a",	   "k6",      "zz"};
static store_hash_t content_hash[NCONTENT];

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint32_t rnd(uint64_t *s, uint32_t n)
{
	return (uint32_t)(rng_next(s) % n);
}

static void content_body(int c, char *buf, size_t *len)
{
	int n = sprintf(buf, "Subject: content %d\r\n\r\n", c);
	size_t pad = (size_t)(c * 97 % 3000);
	memset(buf + n, 'a' + c % 26, pad);
	*len = (size_t)n + pad;
}

static size_t kw_array(uint8_t mask, const char **v)
{
	size_t n = 0;
	for (int i = 0; i < NKW; i++)
		if (mask & (1u << i))
			v[n++] = kw_names[i];
	return n;
}

static uint8_t kw_mask(const store_keywords_t *kw)
{
	uint8_t m = 0;
	for (size_t i = 0; i < kw->n; i++)
		for (int j = 0; j < NKW; j++)
			if (strcmp(kw->v[i], kw_names[j]) == 0)
				m |= (uint8_t)(1u << j);
	return m;
}

static int pick_live(struct mfolder *f, uint64_t *s)
{
	if (f->uidnext <= 1)
		return -1;
	for (int tries = 0; tries < 20; tries++) {
		uint32_t u = 1 + rnd(s, f->uidnext - 1);
		if (f->m[u].live)
			return (int)u;
	}
	return -1;
}

struct batch {
	const struct model *base;
	struct model *work;
	uint64_t seed;
	int nops;
	int failures;
};

/* Apply nops random operations to the store and to the model copy. */
static int batch_fn(store_txn_t *txn, void *arg)
{
	struct batch *b = arg;
	uint64_t s = b->seed;
	struct model *w = b->work;
	/* store_write() may run us again after growing the map: start over. */
	memcpy(w, b->base, sizeof(*w));
	b->failures = 0;
	for (int i = 0; i < b->nops; i++) {
		struct mfolder *f = &w->f[rnd(&s, NFOLDERS)];
		uint32_t op = rnd(&s, 10);
		if (op < 4 && f->uidnext < MAXUID - 1) {
			int c = (int)rnd(&s, NCONTENT);
			uint8_t flags = (uint8_t)rnd(&s, 32), kw = (uint8_t)rnd(&s, 256);
			char body[4096];
			size_t len;
			content_body(c, body, &len);
			const char *kv[NKW];
			store_msg_new_t m = {.flags = flags, .kw = {kv, kw_array(kw, kv)}};
			uint32_t uid;
			uint64_t ms;
			if (store_msg_append(txn, f->id, body, len, &m, &uid, &ms) != 0) {
				b->failures++;
				continue;
			}
			if (store_txn_err(txn))
				continue;
			CHECK_EQ_INT(uid, f->uidnext);
			CHECK(ms == f->hms + 1);
			f->m[uid] = (struct mmsg){.live = true,
						  .flags = flags,
						  .kw = kw,
						  .content = (uint8_t)c,
						  .modseq = ms,
						  .added = ms};
			f->uidnext++;
			f->hms = ms;
		} else if (op < 7) {
			int u = pick_live(f, &s);
			if (u < 0)
				continue;
			enum store_flag_op fop = (enum store_flag_op)rnd(&s, 3);
			uint8_t flags = (uint8_t)rnd(&s, 32), kw = (uint8_t)rnd(&s, 256);
			const char *kv[NKW];
			store_keywords_t k = {kv, kw_array(kw, kv)};
			struct mmsg *mm = &f->m[u];
			uint8_t nf = fop == STORE_FLAGS_SET   ? flags
				     : fop == STORE_FLAGS_ADD ? (uint8_t)(mm->flags | flags)
							      : (uint8_t)(mm->flags & ~flags);
			uint8_t nk = fop == STORE_FLAGS_SET   ? kw
				     : fop == STORE_FLAGS_ADD ? (uint8_t)(mm->kw | kw)
							      : (uint8_t)(mm->kw & ~kw);
			uint64_t ms;
			if (store_msg_set_flags(txn, f->id, (uint32_t)u, fop, flags, &k, 0, &ms) !=
			    0) {
				b->failures++;
				continue;
			}
			if (nf != mm->flags || nk != mm->kw) {
				CHECK(ms == f->hms + 1);
				f->hms = ms;
				mm->modseq = ms;
			} else {
				CHECK(ms == mm->modseq);
			}
			mm->flags = nf;
			mm->kw = nk;
		} else if (op < 9) {
			int u = pick_live(f, &s);
			if (u < 0)
				continue;
			uint64_t ms;
			if (store_msg_expunge(txn, f->id, (uint32_t)u, &ms) != 0) {
				b->failures++;
				continue;
			}
			CHECK(ms == f->hms + 1);
			f->hms = ms;
			f->m[u].live = false;
			f->m[u].tomb = true;
			f->m[u].modseq = ms;
		} else {
			struct mfolder *d = &w->f[rnd(&s, NFOLDERS)];
			int u = pick_live(f, &s);
			if (u < 0 || d == f || d->uidnext >= MAXUID - 1)
				continue;
			uint32_t nuid;
			if (store_msg_move(txn, f->id, (uint32_t)u, d->id, &nuid) != 0) {
				b->failures++;
				continue;
			}
			CHECK_EQ_INT(nuid, d->uidnext);
			struct mmsg src = f->m[u];
			d->hms++;
			d->m[nuid] = (struct mmsg){.live = true,
						   .flags = src.flags,
						   .kw = src.kw,
						   .content = src.content,
						   .modseq = d->hms,
						   .added = d->hms};
			d->uidnext++;
			f->hms++;
			f->m[u].live = false;
			f->m[u].tomb = true;
			f->m[u].modseq = f->hms;
		}
	}
	return store_txn_err(txn);
}

struct iter {
	struct mfolder *f;
	uint32_t seen;
};

static int msg_cb(const store_msg_t *m, void *arg)
{
	struct iter *it = arg;
	it->seen++;
	if (m->uid >= MAXUID || !it->f->m[m->uid].live) {
		fprintf(stderr, "folder %u: unexpected live uid %u\n", it->f->id, m->uid);
		CHECK(0);
		return 0;
	}
	struct mmsg *mm = &it->f->m[m->uid];
	CHECK_EQ_INT(m->flags, mm->flags);
	CHECK_EQ_INT(kw_mask(&m->kw), mm->kw);
	CHECK_EQ_INT(m->kw.n, __builtin_popcount(mm->kw));
	CHECK(m->modseq == mm->modseq);
	CHECK(m->added_modseq == mm->added);
	CHECK(memcmp(m->hash.b, content_hash[mm->content].b, STORE_HASH_LEN) == 0);
	return 0;
}

struct chk {
	struct mfolder *f;
	uint64_t since, last;
	uint32_t n;
};

static int change_cb(const store_change_t *c, void *arg)
{
	struct chk *k = arg;
	CHECK(c->modseq > k->since && c->modseq > k->last);
	k->last = c->modseq;
	k->n++;
	struct mmsg *mm = c->uid < MAXUID ? &k->f->m[c->uid] : NULL;
	if (!mm || mm->modseq != c->modseq) {
		fprintf(stderr, "folder %u: change uid %u at %llu not in the model\n", k->f->id,
			c->uid, (unsigned long long)c->modseq);
		CHECK(0);
		return 0;
	}
	if (c->kind == STORE_CHANGE_EXPUNGE)
		CHECK(mm->tomb && !mm->live);
	else if (c->kind == STORE_CHANGE_NEW)
		CHECK(mm->live && mm->added > k->since);
	else
		CHECK(mm->live && mm->added <= k->since);
	return 0;
}

static void verify(store_t *st, struct model *md, uint64_t *s)
{
	store_txn_t *txn;
	CHECK_EQ_INT(store_txn_begin_read(st, &txn), 0);
	uint32_t refs[NCONTENT] = {0};
	for (int i = 0; i < NFOLDERS; i++) {
		struct mfolder *f = &md->f[i];
		store_folder_t fi;
		CHECK_EQ_INT(store_folder_get(txn, f->id, &fi), 0);
		CHECK_EQ_INT(fi.uidnext, f->uidnext);
		CHECK(fi.highestmodseq == f->hms);
		uint32_t live = 0, unseen = 0;
		for (uint32_t u = 1; u < f->uidnext; u++)
			if (f->m[u].live) {
				live++;
				unseen += !(f->m[u].flags & STORE_F_SEEN);
				refs[f->m[u].content]++;
			}
		CHECK_EQ_INT(fi.messages, live);
		CHECK_EQ_INT(fi.unseen, unseen);
		struct iter it = {f, 0};
		CHECK_EQ_INT(store_msg_iter(txn, f->id, 1, msg_cb, &it), 0);
		CHECK_EQ_INT(it.seen, live);
		/* Changes since a few random points, and since 0 and the top. */
		for (int r = 0; r < 4; r++) {
			uint64_t since = r == 0 ? 0 : r == 1 ? f->hms : rng_next(s) % (f->hms + 1);
			uint32_t want = 0;
			for (uint32_t u = 1; u < f->uidnext; u++)
				if ((f->m[u].live || f->m[u].tomb) && f->m[u].modseq > since)
					want++;
			struct chk k = {f, since, 0, 0};
			CHECK_EQ_INT(store_changes_since(txn, f->id, since, change_cb, &k), 0);
			CHECK_EQ_INT(k.n, want);
		}
	}
	for (int c = 0; c < NCONTENT; c++) {
		uint64_t r = 0;
		int rc = store_blob_refs(txn, &content_hash[c], &r);
		if (refs[c] == 0)
			CHECK_EQ_INT(rc, STORE_ENOTFOUND);
		else
			CHECK(rc == 0 && r == refs[c]);
	}
	store_txn_abort(txn);
}

static store_t *open_store(const char *dir)
{
	char err[512];
	store_t *st = NULL;
	store_open_opts_t o = {.initial_mapsize = 256 * 1024, .nosync = true};
	if (store_open(dir, &o, &st, err, sizeof(err)) != 0) {
		fprintf(stderr, "store_open: %s\n", err);
		exit(2);
	}
	return st;
}

int main(void)
{
	char *dir = test_tmpdir("store-model");
	uint64_t seed = (uint64_t)time(NULL) * 2654435761u + 1;
	printf("test_store_model: seed %llu\n", (unsigned long long)seed);
	for (int c = 0; c < NCONTENT; c++) {
		char body[4096];
		size_t len;
		content_body(c, body, &len);
		store_hash_compute(body, len, &content_hash[c]);
	}
	struct model *md = calloc(1, sizeof(*md)), *work = calloc(1, sizeof(*work));
	store_t *st = open_store(dir);
	store_txn_t *txn;
	uint32_t acct;
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	CHECK_EQ_INT(store_account_add(txn, "model", &acct), 0);
	for (int i = 0; i < NFOLDERS; i++) {
		char name[16];
		snprintf(name, sizeof(name), "F%d", i);
		CHECK_EQ_INT(store_folder_create(txn, acct, name, 0, &md->f[i].id), 0);
		md->f[i].uidnext = 1;
		md->f[i].hms = 1;
	}
	CHECK_EQ_INT(store_txn_commit(txn), 0);
	uint64_t s = seed;
	int aborted = 0, reopened = 0, failures = 0;
	for (int round = 0; round < 300; round++) {
		struct batch b = {
		    .base = md, .work = work, .seed = rng_next(&s), .nops = 1 + (int)rnd(&s, 40)};
		if (rnd(&s, 8) == 0) {
			/* Do the work, then abort: the store and model stay as before. */
			CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
			batch_fn(txn, &b); /* may fill the map: fine, it is aborted */
			store_txn_abort(txn);
			aborted++;
		} else {
			CHECK_EQ_INT(store_write(st, batch_fn, &b), 0);
			memcpy(md, work, sizeof(*md));
			failures += b.failures;
		}
		if (rnd(&s, 25) == 0) {
			store_close(st);
			st = open_store(dir);
			reopened++;
		}
		verify(st, md, &s);
		if (round % 50 == 49)
			CHECK_EQ_INT(store_check(st, NULL, NULL, NULL), 0);
	}
	CHECK_EQ_INT(failures, 0);
	CHECK_EQ_INT(store_check(st, NULL, NULL, NULL), 0);
	printf("test_store_model: %d aborted batches, %d reopens\n", aborted, reopened);
	store_close(st);
	free(md);
	free(work);
	test_rmtree(dir);
	free(dir);
	return test_done("test_store_model");
}
