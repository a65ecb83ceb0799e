/*
 * Group commit: queued writes share one transaction; a failing one does not
 * take the others down; cancelled ones never run or never hear back; done()
 * may queue and cancel; a map too small for the group grows and the group
 * runs again.
 */
#include "testutil.h"
#include "store/store.h"
#include "store_open.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct wr {
	uint32_t acct;
	const char *name;
	size_t blob;     /* bytes of a message to add, 0 for none */
	bool fail;       /* write, then fail */
	int runs;        /* times fn ran */
	int done_rc;
	int done_calls;
	int order;       /* when done() came */
	store_group_t *g;
	store_group_ent_t *cancel; /* done() cancels this */
	struct wr *queue;          /* done() queues this */
} wr_t;

static int order_seq;

static int wr_fn(store_txn_t *txn, void *arg)
{
	wr_t *w = arg;
	uint32_t fid;

	w->runs++;
	int rc = store_folder_create(txn, w->acct, w->name, 0, &fid);
	if (rc == 0 && w->blob) {
		char *raw = malloc(w->blob);
		memset(raw, 'x', w->blob);
		memcpy(raw, "Subject: big\r\n\r\n", 17);
		snprintf(raw + 17, 64, "%s", w->name); /* distinct bytes per write */
		store_msg_new_t m = {0};
		rc = store_msg_append(txn, fid, raw, w->blob, &m, NULL, NULL);
		free(raw);
	}
	if (rc)
		return rc;
	return w->fail ? STORE_EINVAL : 0;
}

static void wr_done(int rc, void *arg)
{
	wr_t *w = arg;

	w->done_rc = rc;
	w->done_calls++;
	w->order = ++order_seq;
	if (w->cancel)
		store_group_cancel(w->g, w->cancel);
	if (w->queue)
		store_group_add(w->g, wr_fn, w->queue, wr_done, w->queue);
}

static bool folder_exists(store_t *st, uint32_t acct, const char *name)
{
	store_txn_t *txn;
	store_folder_t f;
	CHECK_EQ_INT(store_txn_begin_read(st, &txn), 0);
	int rc = store_folder_find(txn, acct, name, &f);
	store_txn_abort(txn);
	return rc == 0;
}

static uint32_t new_account(store_t *st, const char *name)
{
	store_txn_t *txn;
	uint32_t acct;
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	CHECK_EQ_INT(store_account_add(txn, name, &acct), 0);
	CHECK_EQ_INT(store_txn_commit(txn), 0);
	return acct;
}

static void test_group(const char *dir)
{
	store_t *st = open_store(dir, 0);
	uint32_t acct = new_account(st, "g");
	store_group_t *g = store_group_new(st);
	wr_t a = {.acct = acct, .name = "A"}, b = {.acct = acct, .name = "B", .fail = true};
	wr_t c = {.acct = acct, .name = "C"}, d = {.acct = acct, .name = "D"};
	wr_t e = {.acct = acct, .name = "E"};

	order_seq = 0;
	store_group_add(g, wr_fn, &a, wr_done, &a);
	store_group_add(g, wr_fn, &b, wr_done, &b);
	store_group_ent_t *ce = store_group_add(g, wr_fn, &c, wr_done, &c);
	store_group_add(g, wr_fn, &d, wr_done, &d);
	CHECK_EQ_INT((int)store_group_pending(g), 4);
	store_group_cancel(g, ce);
	CHECK_EQ_INT((int)store_group_pending(g), 3);
	store_group_flush(g);
	CHECK_EQ_INT((int)store_group_pending(g), 0);
	/* B failed: the group ran again one by one; A and D are in, B is not. */
	CHECK_EQ_INT(a.done_rc, 0);
	CHECK_EQ_INT(b.done_rc, STORE_EINVAL);
	CHECK_EQ_INT(d.done_rc, 0);
	CHECK_EQ_INT(a.runs, 2);
	CHECK_EQ_INT(c.runs, 0);
	CHECK_EQ_INT(c.done_calls, 0);
	CHECK(a.order < b.order && b.order < d.order);
	CHECK(folder_exists(st, acct, "A"));
	CHECK(!folder_exists(st, acct, "B"));
	CHECK(!folder_exists(st, acct, "C"));
	CHECK(folder_exists(st, acct, "D"));

	/* done() cancels a later one of the same batch (committed, but it
	 * hears nothing) and queues a new one (not run by this flush). */
	wr_t f = {.acct = acct, .name = "F"}, h = {.acct = acct, .name = "H"};
	f.g = g;
	f.queue = &e;
	store_group_add(g, wr_fn, &f, wr_done, &f);
	f.cancel = store_group_add(g, wr_fn, &h, wr_done, &h);
	store_group_flush(g);
	CHECK_EQ_INT(f.done_calls, 1);
	CHECK_EQ_INT(f.runs, 1);
	CHECK_EQ_INT(h.runs, 1);
	CHECK_EQ_INT(h.done_calls, 0);
	CHECK(folder_exists(st, acct, "H"));
	CHECK_EQ_INT((int)store_group_pending(g), 1);
	CHECK_EQ_INT(e.runs, 0);
	/* Freeing the group runs what is left. */
	store_group_free(g);
	CHECK_EQ_INT(e.done_calls, 1);
	CHECK_EQ_INT(e.done_rc, 0);
	CHECK(folder_exists(st, acct, "E"));
	store_close(st);
}

/* Three 400 KB messages in one group, in a 256 KB map. */
static void test_group_grows(const char *dir)
{
	store_t *st = open_store(dir, 256 * 1024);
	uint32_t acct = new_account(st, "grow");
	store_group_t *g = store_group_new(st);
	wr_t w[3] = {{.acct = acct, .name = "X", .blob = 400000},
		      {.acct = acct, .name = "Y", .blob = 400000},
		      {.acct = acct, .name = "Z", .blob = 400000}};

	for (int i = 0; i < 3; i++)
		store_group_add(g, wr_fn, &w[i], wr_done, &w[i]);
	store_group_flush(g);
	for (int i = 0; i < 3; i++) {
		CHECK_EQ_INT(w[i].done_rc, 0);
		CHECK(w[i].runs >= 1);
		CHECK(folder_exists(st, acct, w[i].name));
	}
	CHECK(w[0].runs > 1); /* it ran again after the map grew */
	store_group_free(g);
	store_close(st);
}

int main(void)
{
	char *dir = test_tmpdir("store-group");
	test_group(dir);
	test_rmtree(dir);
	free(dir);
	dir = test_tmpdir("store-group-grow");
	test_group_grows(dir);
	test_rmtree(dir);
	free(dir);
	return test_done("test_store_group");
}
