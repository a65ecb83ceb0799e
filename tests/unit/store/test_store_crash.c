/*
 * Crash safety: a child writes batches in a loop (adds to A and B sharing
 * blobs, a move from B to C, flag changes, expunges, pending operations) and
 * is killed with SIGKILL at random moments, over and over. After each kill the
 * parent reopens the store and checks that every committed batch is complete,
 * nothing is partial, UIDs never went back, and store_check() finds the store
 * consistent (blob reference counts included).
 */
#include "testutil.h"
#include "store/store.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PER_BATCH 5
#define KILLS 25

struct ids {
	uint32_t acct, a, b, c;
};

static store_t *open_store(const char *dir, size_t mapsize)
{
	char err[512];
	store_t *st = NULL;
	store_open_opts_t o = {.initial_mapsize = mapsize};
	int rc = store_open(dir, &o, &st, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "store_open: %s\n", err);
		return NULL;
	}
	return st;
}

static long read_last(store_txn_t *txn, uint32_t acct)
{
	const void *v;
	size_t len;
	if (store_account_attr_get(txn, acct, "last_batch", &v, &len) != 0 || len != 4)
		return -1;
	const uint8_t *p = v;
	return (long)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
		      p[3]);
}

static int del_pending_cb(const store_pending_t *p, void *arg)
{
	uint64_t *ids = arg;
	if (ids[0] < 15)
		ids[++ids[0]] = p->id;
	return 0;
}

/* One batch, in one transaction (re-run as a whole on map growth). */
static int batch_fn(store_txn_t *txn, void *arg)
{
	const struct ids *ids = arg;
	long i = read_last(txn, ids->acct) + 1;
	char buf[8192];
	for (int j = 0; j < PER_BATCH; j++) {
		int n = snprintf(buf, sizeof(buf), "Subject: batch %ld msg %d\r\n\r\n", i, j);
		size_t pad = (size_t)((i * 977 + j * 131) % 6000);
		memset(buf + n, 'a' + j, pad);
		const char *kw[] = {"$batch"};
		store_msg_new_t m = {.flags = j == 3 ? STORE_F_SEEN : 0,
				     .kw = {kw, j == 2 ? 1 : 0},
				     .internaldate = 1700000000 + i};
		uint32_t ua = 0, ub = 0, uc = 0;
		store_msg_append(txn, ids->a, buf, (size_t)n + pad, &m, &ua, NULL);
		store_msg_add(txn, ids->b, &m, &ub, NULL);
		if (j == 0)
			store_msg_move(txn, ids->b, ub, ids->c, &uc);
	}
	if (i >= 1) {
		uint32_t uid = (uint32_t)(PER_BATCH * (i - 1) + 2);
		store_msg_t m;
		if (store_msg_get(txn, ids->a, uid, &m) == 0)
			store_msg_set_flags(txn, ids->a, uid,
					    (m.flags & STORE_F_SEEN) ? STORE_FLAGS_REMOVE
								     : STORE_FLAGS_ADD,
					    STORE_F_SEEN, NULL, 0, NULL);
	}
	if (i >= 2)
		for (int j = 0; j < PER_BATCH; j++)
			store_msg_expunge(txn, ids->a, (uint32_t)(PER_BATCH * (i - 2) + j + 1),
					  NULL);
	uint64_t pend[16] = {0};
	store_pending_list(txn, 0, del_pending_cb, pend);
	for (uint64_t k = 1; k <= pend[0]; k++)
		store_pending_del(txn, pend[k]);
	store_pending_t p = {.kind = STORE_PENDING_UPLOAD,
			     .folder_id = ids->a,
			     .replica_id = STORE_REPLICA_REMOTE,
			     .store_uid = (uint32_t)i};
	store_pending_add(txn, &p, NULL);
	uint8_t b[4] = {(uint8_t)(i >> 24), (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i};
	store_account_attr_set(txn, ids->acct, "last_batch", b, 4);
	return store_txn_err(txn);
}

static void child(const char *dir, const struct ids *ids)
{
	/* A tiny initial map, so the map grows while the kills happen. */
	store_t *st = open_store(dir, 64 * 1024);
	if (!st)
		_exit(3);
	/* Every other batch commits lazily (no meta page sync): a killed
	 * process must lose neither kind. */
	for (unsigned n = 0;; n++) {
		int rc = n % 2 ? store_write_lazy(st, batch_fn, (void *)ids)
			       : store_write(st, batch_fn, (void *)ids);
		if (rc == 0 && n % 7 == 0)
			rc = store_sync(st);
		if (rc) {
			fprintf(stderr, "child: batch failed: %s\n", store_strerror(rc));
			_exit(4);
		}
	}
}

struct verify {
	long last;
	uint32_t count[3];
	int bad;
	const struct ids *ids;
	store_txn_t *txn;
	uint32_t which;
	long *per_batch;
	long nbatches;
};

static int verify_msg_cb(const store_msg_t *m, void *arg)
{
	struct verify *v = arg;
	const void *data;
	size_t len;
	long k = -1;
	int j = -1;
	if (store_blob_get(v->txn, &m->hash, &data, &len) == 0) {
		char head[64];
		size_t n = len < sizeof(head) - 1 ? len : sizeof(head) - 1;
		memcpy(head, data, n);
		head[n] = '\0';
		if (sscanf(head, "Subject: batch %ld msg %d", &k, &j) != 2)
			k = -1;
	}
	v->count[v->which]++;
	if (k < 0 || k > v->last || j < 0 || j >= PER_BATCH) {
		fprintf(stderr, "folder %u uid %u: unexpected message (batch %ld, last %ld)\n",
			m->folder_id, m->uid, k, v->last);
		v->bad++;
		return 0;
	}
	if (v->which == 0) {
		/* A: UIDs follow the batches exactly; nothing was reused. */
		if (m->uid != (uint32_t)(PER_BATCH * k + j + 1) || k < v->last - 1) {
			fprintf(stderr, "A uid %u holds batch %ld msg %d\n", m->uid, k, j);
			v->bad++;
		}
	} else if ((v->which == 1) != (j != 0)) {
		fprintf(stderr, "folder %u holds msg %d of batch %ld\n", m->folder_id, j, k);
		v->bad++;
	}
	v->per_batch[k * 3 + v->which]++;
	return 0;
}

static int count_pending_cb(const store_pending_t *p, void *arg)
{
	struct verify *v = arg;
	if ((long)p->store_uid != v->last) {
		fprintf(stderr, "pending op for batch %u, last is %ld\n", p->store_uid, v->last);
		v->bad++;
	}
	v->nbatches++;
	return 0;
}

static void problem_cb(const char *problem, void *arg)
{
	(void)arg;
	fprintf(stderr, "store_check: %s\n", problem);
}

/* Returns the last committed batch. */
static long verify(const char *dir, const struct ids *ids)
{
	store_t *st = open_store(dir, 0);
	CHECK(st != NULL);
	if (!st)
		return -1;
	size_t np = 0;
	CHECK_EQ_INT(store_check(st, problem_cb, NULL, &np), 0);
	store_txn_t *txn;
	CHECK_EQ_INT(store_txn_begin_read(st, &txn), 0);
	struct verify v = {.ids = ids, .txn = txn};
	v.last = read_last(txn, ids->acct);
	v.per_batch = calloc((size_t)(v.last + 2) * 3, sizeof(long));
	uint32_t folders[3] = {ids->a, ids->b, ids->c};
	for (uint32_t w = 0; w < 3; w++) {
		v.which = w;
		CHECK_EQ_INT(store_msg_iter(txn, folders[w], 1, verify_msg_cb, &v), 0);
	}
	CHECK_EQ_INT(v.bad, 0);
	for (long k = 0; k <= v.last; k++) {
		long want_a = k >= v.last - 1 ? PER_BATCH : 0;
		if (v.per_batch[k * 3] != want_a || v.per_batch[k * 3 + 1] != PER_BATCH - 1 ||
		    v.per_batch[k * 3 + 2] != 1) {
			fprintf(stderr, "batch %ld (last %ld) is partial: A %ld B %ld C %ld\n", k,
				v.last, v.per_batch[k * 3], v.per_batch[k * 3 + 1],
				v.per_batch[k * 3 + 2]);
			CHECK(0);
		}
	}
	store_folder_t fa, fc;
	CHECK_EQ_INT(store_folder_get(txn, ids->a, &fa), 0);
	CHECK_EQ_INT(fa.uidnext, PER_BATCH * (v.last + 1) + 1);
	CHECK_EQ_INT(store_folder_get(txn, ids->c, &fc), 0);
	CHECK_EQ_INT(fc.uidnext, v.last + 2);
	CHECK_EQ_INT(store_pending_list(txn, 0, count_pending_cb, &v), 0);
	CHECK_EQ_INT(v.nbatches, v.last >= 0 ? 1 : 0);
	store_txn_abort(txn);
	free(v.per_batch);
	store_close(st);
	return v.last;
}

int main(void)
{
	char *dir = test_tmpdir("store-crash");
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	srand(seed);
	printf("test_store_crash: seed %u\n", seed);
	struct ids ids;
	store_t *st = open_store(dir, 0);
	if (!st)
		return 2;
	store_txn_t *txn;
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	CHECK_EQ_INT(store_account_add(txn, "crash", &ids.acct), 0);
	CHECK_EQ_INT(store_folder_create(txn, ids.acct, "A", 0, &ids.a), 0);
	CHECK_EQ_INT(store_folder_create(txn, ids.acct, "B", 0, &ids.b), 0);
	CHECK_EQ_INT(store_folder_create(txn, ids.acct, "C", 0, &ids.c), 0);
	CHECK_EQ_INT(store_txn_commit(txn), 0);
	store_close(st);
	fflush(stdout);
	fflush(stderr);

	long last = -1, prev = -1;
	int progressed = 0;
	for (int round = 0; round < KILLS; round++) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 2;
		}
		if (pid == 0)
			child(dir, &ids);
		/* Random moment: from right at start-up to well into the loop. */
		useconds_t us = (useconds_t)(rand() % 150000);
		usleep(us);
		kill(pid, SIGKILL);
		int status;
		waitpid(pid, &status, 0);
		if (!WIFSIGNALED(status)) {
			fprintf(stderr, "child exited by itself (status %d)\n", status);
			CHECK(0);
		}
		last = verify(dir, &ids);
		CHECK(last >= prev); /* committed batches are never lost */
		if (last > prev)
			progressed++;
		prev = last;
	}
	printf("test_store_crash: %d kills, %ld batches committed, %d rounds made progress\n",
	       KILLS, last + 1, progressed);
	CHECK(last >= 10);
	test_rmtree(dir);
	free(dir);
	return test_done("test_store_crash");
}
