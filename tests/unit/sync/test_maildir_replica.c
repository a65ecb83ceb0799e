/*
 * The Maildir replica driven by the real sync engine against a real LMDB
 * store, both in a temporary directory: export, changes made in the tree the
 * way mail readers make them (renames, deletions, files dropped into new/,
 * moves between folders), changes made in the store, broken files, mass
 * deletion, a vanished folder and its recovery.
 */
#include <dirent.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "store/store.h"
#include "sync/engine.h"
#include "sync/maildir.h"
#include "sync/maildir_name.h"
#include "sync/maildir_scan.h"
#include "sync/maildir_seal.h"
#include "sync/maildir_sync.h"
#include "testutil.h"

static store_t *st;
static uint32_t g_acct;
static char *root;

/* ------------------------------------------------------------ helpers */

typedef struct add_arg {
	uint32_t folder;
	const char *data;
	unsigned flags;
	const char *kw;
	uint32_t uid;
} add_arg_t;

static int add_fn(store_txn_t *txn, void *arg)
{
	add_arg_t *a = arg;
	store_msg_new_t m;
	memset(&m, 0, sizeof(m));
	m.flags = a->flags;
	const char *kv[1] = {a->kw};
	m.kw.v = kv;
	m.kw.n = a->kw ? 1 : 0;
	m.internaldate = 1700000000;
	return store_msg_append(txn, a->folder, a->data, strlen(a->data), &m, &a->uid, NULL);
}

static uint32_t store_add(uint32_t folder, const char *data, unsigned flags, const char *kw)
{
	add_arg_t a = {folder, data, flags, kw, 0};
	CHECK_EQ_INT(store_write(st, add_fn, &a), 0);
	return a.uid;
}

static int folder_fn(store_txn_t *txn, void *arg)
{
	void **a = arg;
	int rc = store_folder_create(txn, g_acct, a[0], 0, a[1]);
	return rc == STORE_EEXIST ? 0 : rc;
}

static uint32_t store_folder(const char *name)
{
	uint32_t id = 0;
	void *a[2] = {(void *)name, &id};
	CHECK_EQ_INT(store_write(st, folder_fn, a), 0);
	return id;
}

typedef struct count_ctx {
	size_t n;
	unsigned flags_or;
	size_t with_kw;
} count_ctx_t;

static int count_cb(const store_msg_t *m, void *arg)
{
	count_ctx_t *c = arg;
	c->n++;
	c->flags_or |= m->flags;
	c->with_kw += m->kw.n > 0;
	return 0;
}

static count_ctx_t store_count(uint32_t folder)
{
	count_ctx_t c = {0, 0, 0};
	store_txn_t *txn;
	CHECK_EQ_INT(store_txn_begin_read(st, &txn), 0);
	store_msg_iter(txn, folder, 1, count_cb, &c);
	store_txn_abort(txn);
	return c;
}

static bool store_held(uint32_t folder)
{
	store_txn_t *txn;
	store_folder_t f;
	bool held = false;
	if (store_txn_begin_read(st, &txn) == 0) {
		if (store_folder_get(txn, folder, &f) == 0)
			held = f.state == STORE_FOLDER_HELD;
		store_txn_abort(txn);
	}
	return held;
}

/* Files of a folder: count, and the name of the first with text in it. */
static size_t tree_count(const char *folder, char **first_match, const char *needle)
{
	char *dir = maildir_folder_path(root, '/', folder);
	maildir_scan_t *s = NULL;
	size_t n = 0;
	if (first_match)
		*first_match = NULL;
	if (maildir_scan_folder(dir, &s) == 0) {
		n = s->n;
		for (size_t i = 0; i < s->n && first_match && needle; i++) {
			char *p = xasprintf("%s/%s/%s", dir, s->entries[i].in_new ? "new" : "cur",
					    s->entries[i].name);
			FILE *f = fopen(p, "rb");
			char buf[4096] = {0};
			if (f) {
				size_t got = fread(buf, 1, sizeof(buf) - 1, f);
				buf[got] = '\0';
				fclose(f);
			}
			if (strstr(buf, needle) && !*first_match)
				*first_match = p;
			else
				free(p);
		}
		maildir_scan_free(s);
	}
	free(dir);
	return n;
}

static void write_file(const char *path, const char *data)
{
	FILE *f = fopen(path, "wb");
	CHECK(f != NULL);
	if (!f)
		return;
	fputs(data, f);
	fclose(f);
}

static int g_result;
static bool g_done;
static engine_stats_t g_stats;

static void done_cb(int result, const engine_stats_t *s, void *ctx)
{
	g_result = result;
	g_stats = *s;
	g_done = true;
	if (ctx)
		ev_break((struct ev_loop *)ctx, EVBREAK_ALL);
}

static void op_cb(int status, void *ctx)
{
	*(int *)ctx = status;
}

/* The account's max_deletion_ratio for the sessions and jobs below. */
static double g_ratio = 0.5;

static replica_t *open_session(struct ev_loop *loop)
{
	maildir_opts_t o = {loop, st, g_acct, "home", root, '/', g_ratio, false};
	replica_t *r = maildir_replica_open(&o);
	unsigned caps = 0;
	int status = -99;
	r->ops->connect(r, &caps, op_cb, &status);
	CHECK_EQ_INT(status, REPLICA_OK);
	return r;
}

static int sync_one(replica_t *r, struct ev_loop *loop, uint32_t fid, const char *name)
{
	int status = -99;
	r->ops->create_folder(r, name, 0, op_cb, &status);
	engine_opts_t o;
	memset(&o, 0, sizeof(o));
	o.folder_id = fid;
	o.replica_id = STORE_REPLICA_MAILDIR;
	o.replica_name = name;
	o.log_prefix = "test: maildir";
	o.max_deletion_ratio = g_ratio;
	g_done = false;
	g_result = -99;
	engine_sync_folder(st, r, &o, done_cb, loop);
	if (!g_done && loop)
		ev_run(loop, 0);
	CHECK(g_done);
	return g_result;
}

/* One sync round: a fresh session (connect finds moves), then the folders. */
static void sync_all(uint32_t *fids, const char **names, size_t n, int *results)
{
	replica_t *r = open_session(NULL);
	for (size_t i = 0; i < n; i++)
		results[i] = sync_one(r, NULL, fids[i], names[i]);
	replica_free(r);
}

/* What the Maildir pass's check before opening a folder says
 * (maildir_folder_unchanged(), then engine_unchanged_txn()). */
static bool quick_unchanged(uint32_t fid, const char *name)
{
	store_txn_t *txn = NULL;
	store_replica_t rs;
	bool res = false;
	CHECK_EQ_INT(store_txn_begin_read(st, &txn), 0);
	engine_opts_t o = {.folder_id = fid, .replica_id = STORE_REPLICA_MAILDIR};
	if (txn && store_replica_get(txn, fid, STORE_REPLICA_MAILDIR, &rs) == 0) {
		o.has_counts = maildir_folder_unchanged(root, '/', name, &rs, &o.counts);
		res = engine_unchanged_txn(txn, &o);
	}
	store_txn_abort(txn);
	return res;
}

static char *msgtext(int i)
{
	return xasprintf("From: a@example.org\r\nMessage-ID: <m%d@test>\r\nSubject: message %d\r\n"
			 "\r\nbody %d\r\n",
			 i, i, i);
}

/* --------------------------------------------------------------- tests */

static void test_export_with_loop(uint32_t inbox)
{
	/* 60 messages: more than one engine upload batch, flushed in batches. */
	for (int i = 0; i < 60; i++) {
		char *t = msgtext(i);
		store_add(inbox, t, i % 2 ? STORE_F_SEEN : 0, i == 3 ? "$Forwarded" : NULL);
		free(t);
	}
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	replica_t *r = open_session(loop);
	CHECK_EQ_INT(sync_one(r, loop, inbox, "INBOX"), ENGINE_OK);
	CHECK_EQ_INT(g_stats.uploaded, 60);
	replica_free(r);
	ev_loop_destroy(loop);
	CHECK_EQ_INT(tree_count("INBOX", NULL, NULL), 60);

	/* Byte-for-byte, and flags in the names. */
	char *p;
	tree_count("INBOX", &p, "body 3\r\n");
	CHECK(p != NULL);
	if (p) {
		maildir_name_t n;
		maildir_name_parse(strrchr(p, '/') + 1, &n);
		CHECK(n.flags == (MAILDIR_F_SEEN | MAILDIR_F_PASSED));
		CHECK(n.has_fmd5 && n.uid > 0);
		FILE *f = fopen(p, "rb");
		char buf[512] = {0};
		size_t got = f ? fread(buf, 1, sizeof(buf), f) : 0;
		if (f)
			fclose(f);
		char *t = msgtext(3);
		CHECK(got == strlen(t) && memcmp(buf, t, got) == 0);
		free(t);
		free(p);
	}
	/* Nothing to do the second time. */
	r = open_session(NULL);
	CHECK_EQ_INT(sync_one(r, NULL, inbox, "INBOX"), ENGINE_OK);
	CHECK_EQ_INT(g_stats.uploaded + g_stats.downloaded + g_stats.flags_store +
			 g_stats.flags_replica + g_stats.deleted_store + g_stats.deleted_replica,
		     0);
	replica_free(r);
}

static void test_tree_changes(uint32_t inbox)
{
	char *p;
	/* A mail reader flags a message: rename with new info. */
	tree_count("INBOX", &p, "body 0\r\n");
	CHECK(p != NULL);
	if (!p)
		return;
	char *q = maildir_name_with_flags(strrchr(p, '/') + 1, MAILDIR_F_FLAGGED | MAILDIR_F_SEEN);
	char *dir = xasprintf("%s/INBOX/cur", root);
	char *np = xasprintf("%s/%s", dir, q);
	CHECK_EQ_INT(rename(p, np), 0);
	free(p);
	free(q);
	free(np);
	/* ... deletes another one ... */
	tree_count("INBOX", &p, "body 1\r\n");
	CHECK(p && unlink(p) == 0);
	free(p);
	/* ... and a new message is delivered into new/ by another program,
	 * next to a broken file. */
	char *nf = xasprintf("%s/INBOX/new/1700000000.M1P1.mta", root);
	write_file(nf, "From: c@example.org\r\nSubject: dropped\r\n\r\nnew one\r\n");
	char *bad = xasprintf("%s/INBOX/new/1700000001.M2P2.mta", root);
	write_file(bad, "");
	char *junk = xasprintf("%s/INBOX/cur/junk:2,S", root);
	write_file(junk, "\x01\x02\x03 binary junk");

	replica_t *r = open_session(NULL);
	CHECK_EQ_INT(sync_one(r, NULL, inbox, "INBOX"), ENGINE_OK);
	CHECK_EQ_INT(g_stats.downloaded, 1);
	CHECK_EQ_INT(g_stats.deleted_store, 1);
	CHECK_EQ_INT(g_stats.flags_store, 1);
	replica_free(r);
	CHECK_EQ_INT(store_count(inbox).n, 60);
	CHECK(store_count(inbox).flags_or & STORE_F_FLAGGED);
	/* The delivered file now carries its U=; the broken ones stay as they are. */
	CHECK(access(nf, F_OK) != 0);
	tree_count("INBOX", &p, "new one");
	CHECK(p && strstr(p, ",U="));
	free(p);
	CHECK(access(bad, F_OK) == 0);
	CHECK(access(junk, F_OK) == 0);
	unlink(bad);
	unlink(junk);
	free(nf);
	free(bad);
	free(junk);
	free(dir);
}

typedef struct flag_arg {
	uint32_t folder, uid;
} flag_arg_t;

static int flag_fn(store_txn_t *txn, void *arg)
{
	flag_arg_t *a = arg;
	return store_msg_set_flags(txn, a->folder, a->uid, STORE_FLAGS_ADD, STORE_F_ANSWERED, NULL,
				   0, NULL);
}

static void test_store_changes(uint32_t inbox)
{
	/* A flag set in the store (by the remote or a listener client). */
	flag_arg_t a = {inbox, 5};
	CHECK_EQ_INT(store_write(st, flag_fn, &a), 0);
	replica_t *r = open_session(NULL);
	CHECK_EQ_INT(sync_one(r, NULL, inbox, "INBOX"), ENGINE_OK);
	CHECK_EQ_INT(g_stats.flags_replica, 1);
	replica_free(r);
	char *p;
	tree_count("INBOX", &p, "body 4\r\n"); /* store UID 5 is message 4 */
	CHECK(p != NULL);
	if (p) {
		maildir_name_t n;
		maildir_name_parse(strrchr(p, '/') + 1, &n);
		CHECK(n.flags & MAILDIR_F_REPLIED);
		free(p);
	}
}

static void test_move(uint32_t inbox, uint32_t lists)
{
	uint32_t fids[2] = {inbox, lists};
	const char *names[2] = {"INBOX", "Lists/foo"};
	int res[2];
	sync_all(fids, names, 2, res);
	CHECK_EQ_INT(res[0], ENGINE_OK);
	CHECK_EQ_INT(res[1], ENGINE_OK);
	/* mutt's "save to folder": rename into the other folder's cur/. */
	char *p;
	tree_count("INBOX", &p, "body 7\r\n");
	CHECK(p != NULL);
	if (!p)
		return;
	char *to = xasprintf("%s/Lists/foo/cur/%s", root, strrchr(p, '/') + 1);
	CHECK_EQ_INT(rename(p, to), 0);
	free(p);
	free(to);
	size_t before = store_count(inbox).n;
	sync_all(fids, names, 2, res);
	CHECK_EQ_INT(res[0], ENGINE_OK);
	CHECK_EQ_INT(res[1], ENGINE_OK);
	CHECK_EQ_INT(store_count(inbox).n, before - 1);
	CHECK_EQ_INT(store_count(lists).n, 1);
	CHECK_EQ_INT(tree_count("Lists/foo", NULL, NULL), 1);
	/* Moved, not re-uploaded: the file keeps its bytes and gets the new
	 * folder's identity. */
	tree_count("Lists/foo", &p, "body 7\r\n");
	CHECK(p != NULL);
	if (p) {
		char md5[MAILDIR_FMD5_LEN + 1];
		maildir_fmd5("Lists/foo", md5);
		CHECK(strstr(p, md5) != NULL);
		free(p);
	}
	/* A second round changes nothing. */
	sync_all(fids, names, 2, res);
	CHECK_EQ_INT(store_count(inbox).n, before - 1);
	CHECK_EQ_INT(store_count(lists).n, 1);
	CHECK_EQ_INT(tree_count("INBOX", NULL, NULL), before - 1);

	/* Several at once, and a copy (cp keeps the name): the copy is a new
	 * message where it landed, the original stays. */
	const char *bodies[] = {"body 12\r\n", "body 13\r\n", "body 14\r\n"};
	for (int i = 0; i < 3; i++) {
		tree_count("INBOX", &p, bodies[i]);
		CHECK(p != NULL);
		if (!p)
			return;
		char *dst = xasprintf("%s/Lists/foo/cur/%s", root, strrchr(p, '/') + 1);
		CHECK_EQ_INT(rename(p, dst), 0);
		free(dst);
		free(p);
	}
	tree_count("INBOX", &p, "body 15\r\n");
	CHECK(p != NULL);
	if (!p)
		return;
	char *dst = xasprintf("%s/Lists/foo/cur/%s", root, strrchr(p, '/') + 1);
	CHECK_EQ_INT(link(p, dst), 0);
	free(dst);
	free(p);
	sync_all(fids, names, 2, res);
	CHECK_EQ_INT(res[0], ENGINE_OK);
	CHECK_EQ_INT(res[1], ENGINE_OK);
	CHECK_EQ_INT(store_count(inbox).n, before - 4);
	CHECK_EQ_INT(store_count(lists).n, 5);
	CHECK_EQ_INT(tree_count("INBOX", NULL, NULL), before - 4);
	CHECK_EQ_INT(tree_count("Lists/foo", NULL, NULL), 5);
}

static void rmtree(const char *path)
{
	test_rmtree(path);
}

/* One folder synced in a session of its own. */
static int sync_once(uint32_t fid, const char *name)
{
	replica_t *r = open_session(NULL);
	int rc = sync_one(r, NULL, fid, name);
	replica_free(r);
	return rc;
}

/* Messages msgtext(from) .. msgtext(to - 1) added to store folder fid. */
static void store_add_range(uint32_t fid, int from, int to)
{
	for (int i = from; i < to; i++) {
		char *t = msgtext(i);
		store_add(fid, t, 0, NULL);
		free(t);
	}
}

/* The tree's files of msgtext(from) .. msgtext(to - 1) in folder removed. */
static void unlink_range(const char *folder, int from, int to)
{
	for (int i = from; i < to; i++) {
		char needle[32], *p;
		snprintf(needle, sizeof(needle), "body %d\r\n", i);
		tree_count(folder, &p, needle);
		CHECK(p && unlink(p) == 0);
		free(p);
	}
}

static void test_mass_deletion_and_recover(uint32_t lists)
{
	store_add_range(lists, 100, 110);
	CHECK_EQ_INT(sync_once(lists, "Lists/foo"), ENGINE_OK);
	CHECK_EQ_INT(tree_count("Lists/foo", NULL, NULL), 15);
	/* Remove most files: held, nothing deleted in the store. */
	unlink_range("Lists/foo", 100, 108);
	CHECK(sync_once(lists, "Lists/foo") != ENGINE_OK);
	CHECK(store_held(lists));
	CHECK_EQ_INT(store_count(lists).n, 15);

	char err[256] = "";
	maildir_opts_t o = {NULL, st, g_acct, "home", root, '/', 0.5, false};
	CHECK_EQ_INT(maildir_recover_folder(&o, lists, true, err, sizeof(err)), 0);
	if (err[0])
		fprintf(stderr, "recover: %s\n", err);
	CHECK(!store_held(lists));
	CHECK_EQ_INT(tree_count("Lists/foo", NULL, NULL), 15);
	CHECK_EQ_INT(sync_once(lists, "Lists/foo"), ENGINE_OK);
	CHECK_EQ_INT(g_stats.downloaded + g_stats.uploaded + g_stats.deleted_store, 0);
	CHECK_EQ_INT(store_count(lists).n, 15);
	CHECK_EQ_INT(tree_count("Lists/foo", NULL, NULL), 15);
}

/* max_deletion_ratio = 0 holds 5 files deleted from 20 (it used to mean
 * 0.5 for the tree, and "off" for the engine). */
static void test_ratio_zero(uint32_t fid)
{
	store_add_range(fid, 200, 220);
	g_ratio = 0;
	CHECK_EQ_INT(sync_once(fid, "Zero"), ENGINE_OK);
	CHECK_EQ_INT(tree_count("Zero", NULL, NULL), 20);
	unlink_range("Zero", 200, 205);
	CHECK(sync_once(fid, "Zero") != ENGINE_OK);
	g_ratio = 0.5;
	CHECK(store_held(fid));
	CHECK_EQ_INT(store_count(fid).n, 20);
}

static void test_vanished(uint32_t inbox, uint32_t lists)
{
	size_t n_inbox = store_count(inbox).n;
	char *dir = xasprintf("%s/INBOX", root);
	rmtree(dir);
	replica_t *r = open_session(NULL);
	CHECK(sync_one(r, NULL, inbox, "INBOX") != ENGINE_OK);
	replica_free(r);
	CHECK(store_held(inbox));
	CHECK_EQ_INT(store_count(inbox).n, n_inbox);
	CHECK(access(dir, F_OK) != 0); /* not recreated behind the operator's back */

	/* The whole tree: every folder held, nothing deleted. */
	rmtree(root);
	r = open_session(NULL);
	CHECK(sync_one(r, NULL, lists, "Lists/foo") != ENGINE_OK);
	replica_free(r);
	CHECK(store_held(lists));
	CHECK_EQ_INT(store_count(lists).n, 15);
	CHECK(access(root, F_OK) != 0);

	char err[256] = "";
	maildir_opts_t o = {NULL, st, g_acct, "home", root, '/', 0.5, false};
	CHECK_EQ_INT(maildir_recover_folder(&o, inbox, true, err, sizeof(err)), 0);
	CHECK_EQ_INT(maildir_recover_folder(&o, lists, true, err, sizeof(err)), 0);
	CHECK_EQ_INT(tree_count("INBOX", NULL, NULL), n_inbox);
	CHECK_EQ_INT(tree_count("Lists/foo", NULL, NULL), 15);
	uint32_t fids[2] = {inbox, lists};
	const char *names[2] = {"INBOX", "Lists/foo"};
	int res[2];
	sync_all(fids, names, 2, res);
	CHECK_EQ_INT(res[0], ENGINE_OK);
	CHECK_EQ_INT(res[1], ENGINE_OK);
	CHECK_EQ_INT(store_count(inbox).n, n_inbox);
	CHECK_EQ_INT(tree_count("INBOX", NULL, NULL), n_inbox);
	free(dir);
}

static void sel_cb(int status, const replica_box_t *box, void *ctx)
{
	*(int *)ctx = status;
}

typedef struct body_ctx {
	size_t n;
	char buf[4096];
	size_t len;
} body_ctx_t;

static void *b_open(void *ctx, uint64_t size)
{
	body_ctx_t *b = ctx;
	b->len = 0;
	return b;
}

static int b_write(void *ctx, void *h, const char *data, size_t len)
{
	body_ctx_t *b = ctx;
	if (b->len + len < sizeof(b->buf)) {
		memcpy(b->buf + b->len, data, len);
		b->len += len;
	}
	return 0;
}

static void b_done(void *ctx, void *h, const replica_msg_t *m)
{
	((body_ctx_t *)ctx)->n++;
}

static void b_abort(void *ctx, void *h) {}

/* A mail reader renames a file between the engine's scan and its request. */
static void test_concurrent_rename(void)
{
	replica_t *r = open_session(NULL);
	int status = -99;
	r->ops->select(r, "INBOX", sel_cb, &status);
	CHECK_EQ_INT(status, REPLICA_OK);
	char *p, *q;
	tree_count("INBOX", &p, "body 10\r\n");
	tree_count("INBOX", &q, "body 11\r\n");
	CHECK(p && q);
	if (!p || !q) {
		replica_free(r);
		return;
	}
	maildir_name_t n;
	maildir_name_parse(strrchr(p, '/') + 1, &n);
	uint32_t uid_p = n.uid;
	maildir_name_parse(strrchr(q, '/') + 1, &n);
	uint32_t uid_q = n.uid;
	char *np = maildir_name_with_flags(strrchr(p, '/') + 1, MAILDIR_F_FLAGGED);
	char *npath = xasprintf("%s/INBOX/cur/%s", root, np);
	CHECK_EQ_INT(rename(p, npath), 0);
	char *nq = maildir_name_with_flags(strrchr(q, '/') + 1, MAILDIR_F_SEEN);
	char *nqpath = xasprintf("%s/INBOX/cur/%s", root, nq);
	CHECK_EQ_INT(rename(q, nqpath), 0);

	body_ctx_t bc = {0};
	replica_body_sink_t sink = {&bc, b_open, b_write, b_done, b_abort};
	status = -99;
	r->ops->fetch(r, &uid_q, 1, &sink, op_cb, &status);
	CHECK_EQ_INT(status, REPLICA_OK);
	CHECK_EQ_INT(bc.n, 1);
	CHECK(bc.len > 0 && strstr(bc.buf, "body 11") != NULL);

	status = -99;
	r->ops->delete_msgs(r, &uid_p, 1, op_cb, &status);
	CHECK_EQ_INT(status, REPLICA_OK);
	CHECK(access(npath, F_OK) != 0);
	replica_free(r);
	free(p);
	free(q);
	free(np);
	free(npath);
	free(nq);
	free(nqpath);
}

typedef struct free_ctx {
	replica_t *r;
	int calls;
	struct ev_loop *loop;
} free_ctx_t;

static void free_uid_cb(int status, uint32_t uid, void *ctx)
{
	free_ctx_t *f = ctx;
	f->calls++;
	CHECK_EQ_INT(status, REPLICA_OK);
	if (f->r) {
		replica_free(f->r); /* the other callbacks are then never called */
		f->r = NULL;
	}
	ev_break(f->loop, EVBREAK_ALL);
}

/* Appends are answered from the loop once durable; a callback may free the
 * session. */
static void test_free_in_callback(void)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	free_ctx_t f = {NULL, 0, loop};
	f.r = open_session(loop);
	int status = -99;
	f.r->ops->select(f.r, "INBOX", sel_cb, &status);
	CHECK_EQ_INT(status, REPLICA_OK);
	size_t before = tree_count("INBOX", NULL, NULL);
	const char *m = "From: z@example.org\r\nSubject: z\r\n\r\nz\r\n";
	replica_new_msg_t nm = {m, strlen(m), REPLICA_F_SEEN, "", 0};
	f.r->ops->append(f.r, &nm, free_uid_cb, &f);
	f.r->ops->append(f.r, &nm, free_uid_cb, &f);
	CHECK_EQ_INT(f.calls, 0); /* not before the batch is on disk */
	ev_run(loop, 0);
	CHECK_EQ_INT(f.calls, 1);
	CHECK(f.r == NULL);
	/* Both files were made durable together; the engine would pair them
	 * through its pending records, or find them by content. */
	CHECK_EQ_INT(tree_count("INBOX", NULL, NULL), before + 2);
	ev_loop_destroy(loop);
}

/* The UID file of a folder is lost: held; recovery re-pairs by U= and content
 * without writing or uploading anything again. */
static void test_lost_uids_file(uint32_t inbox)
{
	size_t n = store_count(inbox).n;
	char *uf = xasprintf("%s/INBOX/%s", root, MAILDIR_UIDS_FILE);
	CHECK_EQ_INT(unlink(uf), 0);
	/* Whatever its directory times say, it is opened (and held). */
	CHECK(!quick_unchanged(inbox, "INBOX"));
	replica_t *r = open_session(NULL);
	CHECK(sync_one(r, NULL, inbox, "INBOX") != ENGINE_OK);
	replica_free(r);
	CHECK(store_held(inbox));
	CHECK(access(uf, F_OK) != 0);
	char err[256] = "";
	maildir_opts_t o = {NULL, st, g_acct, "home", root, '/', 0.5, false};
	CHECK_EQ_INT(maildir_recover_folder(&o, inbox, true, err, sizeof(err)), 0);
	CHECK(!store_held(inbox));
	CHECK_EQ_INT(tree_count("INBOX", NULL, NULL), n);
	r = open_session(NULL);
	CHECK_EQ_INT(sync_one(r, NULL, inbox, "INBOX"), ENGINE_OK);
	CHECK_EQ_INT(g_stats.downloaded + g_stats.uploaded + g_stats.deleted_store +
			 g_stats.deleted_replica,
		     0);
	replica_free(r);
	CHECK_EQ_INT(store_count(inbox).n, n);
	CHECK_EQ_INT(tree_count("INBOX", NULL, NULL), n);
	free(uf);
}

static maildir_sync_result_t g_round;
static bool g_round_done;

static void round_cb(const maildir_sync_result_t *res, void *ctx)
{
	g_round = *res;
	g_round_done = true;
}

static void test_account_round(const char *tmp)
{
	/* A mail reader creates a folder with one message in it. */
	char *d = xasprintf("%s/Projects/x", root);
	const char *subs[] = {"cur", "new", "tmp"};
	for (int i = 0; i < 3; i++) {
		char *p = xasprintf("%s/%s", d, subs[i]);
		CHECK_EQ_INT(ib_mkdirs(p, 0700), 0);
		free(p);
	}
	char *f = xasprintf("%s/new/1700000002.M3P3.mta", d);
	write_file(f, "From: x@example.org\r\nSubject: project\r\n\r\nplan\r\n");
	free(f);

	config_account_t acct;
	memset(&acct, 0, sizeof(acct));
	acct.name = "home";
	acct.maildir_path = root;
	acct.maildir_sep = "/";
	acct.max_deletion_ratio = 0.5;
	config_t cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.accounts = &acct;
	cfg.n_accounts = 1;
	cfg.mbnames.enabled = true;
	cfg.mbnames.filename = xasprintf("%s/mailboxes", tmp);
	cfg.mbnames.header = "mailboxes ";
	cfg.mbnames.peritem = "+%(accountname)s/%(foldername)s";
	cfg.mbnames.sep = " ";
	cfg.mbnames.footer = "\n";

	g_round_done = false;
	maildir_sync_account(NULL, st, &cfg, &acct, g_acct, round_cb, NULL);
	CHECK(g_round_done);
	CHECK_EQ_INT(g_round.folders, 3);
	CHECK_EQ_INT(g_round.failed, 0);
	CHECK_EQ_INT(g_round.held, 0);
	CHECK_EQ_INT(g_round.downloaded, 1);

	store_txn_t *txn;
	store_folder_t sf;
	CHECK_EQ_INT(store_txn_begin_read(st, &txn), 0);
	CHECK_EQ_INT(store_folder_find(txn, g_acct, "Projects/x", &sf), 0);
	store_txn_abort(txn);
	CHECK_EQ_INT(store_count(sf.id).n, 1);

	FILE *fp = fopen(cfg.mbnames.filename, "r");
	char line[512] = "";
	CHECK(fp != NULL);
	if (fp) {
		CHECK(fgets(line, sizeof(line), fp) != NULL);
		fclose(fp);
	}
	CHECK(strcmp(line, "mailboxes +home/INBOX +home/Lists/foo +home/Projects/x\n") == 0);

	/* A second round changes nothing. */
	g_round_done = false;
	maildir_sync_account(NULL, st, &cfg, &acct, g_acct, round_cb, NULL);
	CHECK(g_round_done);
	CHECK_EQ_INT(g_round.downloaded + g_round.uploaded + g_round.deleted + g_round.flags, 0);
	free(cfg.mbnames.filename);
	free(d);
}

/* The flat layout: "Lists/foo" is the directory Lists.foo. */
static void test_flat_layout(const char *tmp)
{
	uint32_t id = 0;
	store_txn_t *txn;
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	CHECK_EQ_INT(store_account_add(txn, "flat", &id), 0);
	CHECK_EQ_INT(store_txn_commit(txn), 0);
	uint32_t saved = g_acct;
	g_acct = id;
	uint32_t f = store_folder("Lists/foo");
	char *t = msgtext(500);
	store_add(f, t, STORE_F_SEEN, NULL);
	free(t);
	char *froot = xasprintf("%s/Flat", tmp);
	const char *subs[] = {"cur", "new", "tmp"};
	for (int i = 0; i < 3; i++) {
		char *p = xasprintf("%s/Made.here/%s", froot, subs[i]);
		CHECK_EQ_INT(ib_mkdirs(p, 0700), 0);
		free(p);
	}
	config_account_t acct;
	memset(&acct, 0, sizeof(acct));
	acct.name = "flat";
	acct.maildir_path = froot;
	acct.maildir_sep = ".";
	acct.max_deletion_ratio = 0.5;
	g_round_done = false;
	maildir_sync_account(NULL, st, NULL, &acct, id, round_cb, NULL);
	CHECK(g_round_done);
	CHECK_EQ_INT(g_round.failed, 0);
	CHECK_EQ_INT(g_round.uploaded, 1);
	char *d = xasprintf("%s/Lists.foo", froot);
	maildir_scan_t *sc = NULL;
	CHECK_EQ_INT(maildir_scan_folder(d, &sc), 0);
	CHECK(sc && sc->n == 1 && sc->entries[0].parsed.flags == MAILDIR_F_SEEN);
	maildir_scan_free(sc);
	store_folder_t sf;
	CHECK_EQ_INT(store_txn_begin_read(st, &txn), 0);
	CHECK_EQ_INT(store_folder_find(txn, id, "Made/here", &sf), 0);
	store_txn_abort(txn);
	free(d);
	free(froot);
	g_acct = saved;
}

/* Set the modification time of <root>/<folder>/{cur,new} to now - ago_s. */
static void age_dirs(const char *folder, int ago_s)
{
	static const char *const subs[] = {"cur", "new"};
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct timespec t[2] = {now, now};
	t[1].tv_sec -= ago_s;
	for (size_t i = 0; i < 2; i++) {
		char *d = xasprintf("%s/%s/%s", root, folder, subs[i]);
		CHECK_EQ_INT(utimensat(AT_FDCWD, d, t, 0), 0);
		free(d);
	}
}

/*
 * A folder whose cur/ and new/ did not change since its last completed sync
 * is not read again (only its fingerprint is looked at), a changed one is,
 * and a fingerprint taken within the racy second is never trusted.
 */
static void test_unchanged_skip(uint32_t inbox)
{
	replica_t *r = open_session(NULL);
	/* Settled directories: this sync reads them and records the print. */
	age_dirs("INBOX", 10);
	CHECK_EQ_INT(sync_one(r, NULL, inbox, "INBOX"), ENGINE_OK);
	CHECK_EQ_INT(sync_one(r, NULL, inbox, "INBOX"), ENGINE_OK);
	CHECK(!g_stats.full_scan);
	CHECK_EQ_INT(g_stats.downloaded + g_stats.uploaded + g_stats.flags_store, 0);
	/* The pass over the tree would not even open it. */
	CHECK(g_stats.skipped);
	CHECK(quick_unchanged(inbox, "INBOX"));

	/* Proof that the files were not read: a file slipped in with the
	 * directory times put back exactly is not seen... */
	char *dir = xasprintf("%s/INBOX/new", root);
	struct stat before_new, before_cur;
	char *cur = xasprintf("%s/INBOX/cur", root);
	CHECK_EQ_INT(stat(dir, &before_new), 0);
	CHECK_EQ_INT(stat(cur, &before_cur), 0);
	char *nf = xasprintf("%s/1700000100.M1P1.sneaky", dir);
	write_file(nf, "From: s@example.org\r\nSubject: sneaky\r\n\r\nunseen\r\n");
	struct timespec tn[2] = {before_new.st_atim, before_new.st_mtim};
	CHECK_EQ_INT(utimensat(AT_FDCWD, dir, tn, 0), 0);
	size_t n0 = store_count(inbox).n;
	CHECK_EQ_INT(sync_one(r, NULL, inbox, "INBOX"), ENGINE_OK);
	CHECK_EQ_INT(store_count(inbox).n, n0);
	/* ... a store change makes the folder read (to write the flag) but
	 * the delta still reports no tree change ... */
	flag_arg_t a = {inbox, 7};
	CHECK_EQ_INT(store_write(st, flag_fn, &a), 0);
	CHECK(!quick_unchanged(inbox, "INBOX")); /* something to go out */
	CHECK_EQ_INT(sync_one(r, NULL, inbox, "INBOX"), ENGINE_OK);
	CHECK_EQ_INT(g_stats.flags_replica, 1);
	CHECK_EQ_INT(g_stats.downloaded, 0);
	replica_free(r);

	/* ... and a settled but different directory time brings it in. */
	age_dirs("INBOX", 5);
	CHECK(!quick_unchanged(inbox, "INBOX"));
	r = open_session(NULL);
	CHECK_EQ_INT(sync_one(r, NULL, inbox, "INBOX"), ENGINE_OK);
	CHECK_EQ_INT(g_stats.downloaded, 1);
	CHECK_EQ_INT(store_count(inbox).n, n0 + 1);
	/* A mail reader flags a message now: the folder is read (its print is
	 * racy), and recorded as racy. Then it flags another one within the
	 * same tick (the directory time put back to what it was): still read. */
	for (int round = 0; round < 2; round++) {
		char *p;
		tree_count("INBOX", &p, round ? "body 9\r\n" : "unseen");
		CHECK(p != NULL);
		if (!p)
			break;
		struct stat was;
		CHECK_EQ_INT(stat(cur, &was), 0);
		char *q = maildir_name_with_flags(strrchr(p, '/') + 1, MAILDIR_F_FLAGGED);
		char *np = xasprintf("%s/%s", cur, q);
		CHECK_EQ_INT(rename(p, np), 0);
		if (round) {
			struct timespec tc[2] = {was.st_atim, was.st_mtim};
			CHECK_EQ_INT(utimensat(AT_FDCWD, cur, tc, 0), 0);
		}
		free(q);
		free(np);
		free(p);
		CHECK_EQ_INT(sync_one(r, NULL, inbox, "INBOX"), ENGINE_OK);
		CHECK_EQ_INT(g_stats.flags_store, 1);
	}
	replica_free(r);
	free(nf);
	free(dir);
	free(cur);
}

/*
 * A session's connect() already looked at every folder's fingerprint: the
 * pass over the tree asks the session (maildir_replica_unchanged()) and
 * gets the same answer as a fresh look, from what connect() saw. That is
 * the run's view: a change made after it waits for the next run, as one
 * made a moment later would.
 */
static void test_unchanged_from_connect(uint32_t inbox)
{
	replica_t *r = open_session(NULL);
	age_dirs("INBOX", 20);
	CHECK_EQ_INT(sync_one(r, NULL, inbox, "INBOX"), ENGINE_OK);
	CHECK_EQ_INT(sync_one(r, NULL, inbox, "INBOX"), ENGINE_OK);
	replica_free(r);

	store_txn_t *txn = NULL;
	store_replica_t rs;
	CHECK_EQ_INT(store_txn_begin_read(st, &txn), 0);
	CHECK_EQ_INT(store_replica_get(txn, inbox, STORE_REPLICA_MAILDIR, &rs), 0);
	store_txn_abort(txn);
	replica_counts_t fresh, kept;
	r = open_session(NULL);
	CHECK(maildir_folder_unchanged(root, '/', "INBOX", &rs, &fresh));
	CHECK(maildir_replica_unchanged(r, "INBOX", &rs, &kept));
	CHECK_EQ_INT(kept.uidvalidity, fresh.uidvalidity);
	CHECK_EQ_INT(kept.uidnext, fresh.uidnext);
	CHECK_EQ_INT(kept.highestmodseq, fresh.highestmodseq);
	CHECK_EQ_INT(kept.messages, fresh.messages);

	age_dirs("INBOX", 5);
	CHECK(!maildir_folder_unchanged(root, '/', "INBOX", &rs, &fresh));
	CHECK(maildir_replica_unchanged(r, "INBOX", &rs, &kept));
	/* Against another recorded state, connect()'s look proves nothing. */
	store_replica_t other = rs;
	other.highestmodseq ^= 1;
	CHECK(!maildir_replica_unchanged(r, "INBOX", &other, &kept));
	CHECK(!maildir_replica_unchanged(r, "Nonesuch", &rs, &kept));
	replica_free(r);

	r = open_session(NULL);
	CHECK(!maildir_replica_unchanged(r, "INBOX", &rs, &kept));
	CHECK_EQ_INT(sync_one(r, NULL, inbox, "INBOX"), ENGINE_OK);
	replica_free(r);
}

static void select_cb_t(int status, const replica_box_t *box, void *ctx)
{
	*(int *)ctx = status;
}

static bool file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/*
 * Seals (maildir_seal.h): after an export the next sync trusts the folder
 * without reading it (the seal proves the export was the only change), a
 * change a mail reader makes while the folder is open is never sealed over,
 * and a change made after the seal moves the fingerprint.
 */
static void test_seal(void)
{
	uint32_t fid = store_folder("Sealed");
	for (int i = 0; i < 3; i++) {
		char *m = msgtext(500 + i);
		store_add(fid, m, 0, NULL);
		free(m);
	}
	char *dir = xasprintf("%s/Sealed", root);
	char *seal = xasprintf("%s/%s", dir, MAILDIR_SEAL_FILE);
	char *newd = xasprintf("%s/new", dir);
	replica_t *r = open_session(NULL);
	CHECK_EQ_INT(sync_one(r, NULL, fid, "Sealed"), ENGINE_OK);
	CHECK_EQ_INT(tree_count("Sealed", NULL, NULL), 3);
	replica_free(r);
	CHECK(file_exists(seal));

	/* The export is trusted once its directory times are settled: not read
	 * (a file slipped in behind the directory's back, its time put back,
	 * stays unseen). */
	usleep(150000);
	struct stat was;
	CHECK_EQ_INT(stat(newd, &was), 0);
	char *nf = xasprintf("%s/1700000200.M1P1.sneaky", newd);
	write_file(nf, "From: s@example.org\r\nSubject: sneaky\r\n\r\nsealed\r\n");
	struct timespec tn[2] = {was.st_atim, was.st_mtim};
	CHECK_EQ_INT(utimensat(AT_FDCWD, newd, tn, 0), 0);
	r = open_session(NULL);
	CHECK_EQ_INT(sync_one(r, NULL, fid, "Sealed"), ENGINE_OK);
	CHECK(!g_stats.full_scan);
	CHECK_EQ_INT(store_count(fid).n, 3);
	replica_free(r);
	/* The seal vouches for it before any session opens it too. */
	CHECK(quick_unchanged(fid, "Sealed"));
	/* A seal whose line fails its check (a write cut short) is not
	 * trusted; the same line intact is. */
	char line[128] = "";
	FILE *sf = fopen(seal, "r");
	CHECK(sf && fgets(line, sizeof(line), sf));
	if (sf)
		fclose(sf);
	char good[128];
	memcpy(good, line, sizeof(good));
	size_t ll = strlen(line);
	CHECK(ll > 2);
	line[ll - 2] = line[ll - 2] == '0' ? '1' : '0'; /* the check's last digit */
	write_file(seal, line);
	CHECK(!quick_unchanged(fid, "Sealed"));
	/* Something else in its place: the same line behind a link is not
	 * read, and a pipe is not waited on. */
	char *copy = xasprintf("%s/seal-copy", root);
	write_file(copy, good);
	CHECK_EQ_INT(unlink(seal), 0);
	CHECK_EQ_INT(symlink(copy, seal), 0);
	CHECK(!quick_unchanged(fid, "Sealed"));
	CHECK_EQ_INT(unlink(seal), 0);
	CHECK_EQ_INT(mkfifo(seal, 0600), 0);
	CHECK(!quick_unchanged(fid, "Sealed"));
	CHECK_EQ_INT(unlink(seal), 0);
	CHECK_EQ_INT(unlink(copy), 0);
	free(copy);
	write_file(seal, good);
	CHECK(quick_unchanged(fid, "Sealed"));
	CHECK_EQ_INT(unlink(nf), 0);
	CHECK_EQ_INT(utimensat(AT_FDCWD, newd, tn, 0), 0);

	/* A mail reader delivers while the folder is open: the session proves
	 * nothing, the seal is not renewed, and the next sync reads the folder
	 * and takes the message in. */
	r = open_session(NULL);
	int status = -99;
	r->ops->select(r, "Sealed", select_cb_t, &status);
	CHECK_EQ_INT(status, REPLICA_OK);
	char *nf2 = xasprintf("%s/1700000300.M1P1.reader", newd);
	write_file(nf2, "From: r@example.org\r\nSubject: reader\r\n\r\nwhile open\r\n");
	status = -99;
	r->ops->close(r, op_cb, &status);
	CHECK_EQ_INT(status, REPLICA_OK);
	replica_free(r);
	usleep(150000); /* settled: only the missing seal makes it read */
	r = open_session(NULL);
	CHECK_EQ_INT(sync_one(r, NULL, fid, "Sealed"), ENGINE_OK);
	CHECK_EQ_INT(store_count(fid).n, 4);
	replica_free(r);

	/* Sealed again (that sync renamed the new file); a file dropped in
	 * after the seal moves the fingerprint and is taken in. */
	CHECK(file_exists(seal));
	usleep(150000);
	char *nf3 = xasprintf("%s/1700000400.M1P1.later", newd);
	write_file(nf3, "From: l@example.org\r\nSubject: later\r\n\r\nafter the seal\r\n");
	CHECK(!quick_unchanged(fid, "Sealed"));
	r = open_session(NULL);
	CHECK_EQ_INT(sync_one(r, NULL, fid, "Sealed"), ENGINE_OK);
	CHECK_EQ_INT(store_count(fid).n, 5);
	replica_free(r);

	/* A link where the UID file is staged is not written through. */
	char *victim = xasprintf("%s/victim", root);
	write_file(victim, "not ours\n");
	char *uids_tmp = xasprintf("%s/%s.tmp", dir, MAILDIR_UIDS_FILE);
	CHECK_EQ_INT(symlink(victim, uids_tmp), 0);
	usleep(150000);
	char *nf4 = xasprintf("%s/1700000500.M1P1.linked", newd);
	write_file(nf4, "From: k@example.org\r\nSubject: linked\r\n\r\nwith a link\r\n");
	r = open_session(NULL);
	CHECK_EQ_INT(sync_one(r, NULL, fid, "Sealed"), ENGINE_OK);
	CHECK_EQ_INT(store_count(fid).n, 6);
	replica_free(r);
	char vbuf[64] = "";
	FILE *vf = fopen(victim, "r");
	CHECK(vf && fgets(vbuf, sizeof(vbuf), vf));
	if (vf)
		fclose(vf);
	CHECK(strcmp(vbuf, "not ours\n") == 0);
	/* The UID file was written (the new message took a UID) in place of
	 * the link, not through it. */
	struct stat ls;
	CHECK(lstat(uids_tmp, &ls) != 0);
	char *uf = xasprintf("%s/%s", dir, MAILDIR_UIDS_FILE);
	unsigned uv = 0, un = 0;
	FILE *ufp = fopen(uf, "r");
	CHECK(ufp && fscanf(ufp, "%u %u", &uv, &un) == 2);
	if (ufp)
		fclose(ufp);
	CHECK(un > 6);
	free(uf);
	free(uids_tmp);
	free(nf4);
	free(victim);
	free(nf3);
	free(nf2);
	free(nf);
	free(newd);
	free(seal);
	free(dir);
}

int main(void)
{
	log_setup("test_maildir_replica", LOG_UI_BASIC, false);
	char *tmp = test_tmpdir("ib-mdrep");
	char *data = xasprintf("%s/data", tmp);
	root = xasprintf("%s/Mail", tmp);
	char err[256];
	store_open_opts_t so = {0};
	so.nosync = true;
	CHECK_EQ_INT(store_open(data, &so, &st, err, sizeof(err)), 0);
	if (!st)
		return test_done("test_maildir_replica");
	store_txn_t *txn;
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	CHECK_EQ_INT(store_account_add(txn, "home", &g_acct), 0);
	CHECK_EQ_INT(store_txn_commit(txn), 0);
	uint32_t inbox = store_folder("INBOX");
	uint32_t lists = store_folder("Lists/foo");

	test_export_with_loop(inbox);
	test_tree_changes(inbox);
	test_store_changes(inbox);
	test_unchanged_skip(inbox);
	test_unchanged_from_connect(inbox);
	test_concurrent_rename();
	test_free_in_callback();
	test_move(inbox, lists);
	test_mass_deletion_and_recover(lists);
	test_vanished(inbox, lists);
	test_lost_uids_file(inbox);
	test_account_round(tmp);
	test_flat_layout(tmp);
	test_seal();
	test_ratio_zero(store_folder("Zero"));

	size_t nprob = 0;
	CHECK_EQ_INT(store_check(st, NULL, NULL, &nprob), 0);
	store_close(st);
	test_rmtree(tmp);
	free(tmp);
	free(data);
	free(root);
	return test_done("test_maildir_replica");
}
