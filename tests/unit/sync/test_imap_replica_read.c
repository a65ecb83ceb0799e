/*
 * select_read() of the IMAP replica against a scripted server (a forked
 * child on 127.0.0.1) that checks every command:
 *  A. the reads of three folders leave before any answer (the session takes
 *     the next folder at once); the delta scan and the bodies reach their
 *     sinks, also when the server answers the body fetch before the scan's
 *     tagged OK (Dovecot does);
 *  B. a read without new messages sends no body fetch;
 *  C. a SELECT showing another UIDVALIDITY: nothing reaches the sinks, and
 *     the read ends REPLICA_FOLDER_BAD with the counters in sel_cb;
 *  D. more bodies than fetch_max: the extra one is not delivered, and the
 *     read ends REPLICA_MSG_BAD;
 *  E. a body twice for one UID, or one below fetch_from: REPLICA_FOLDER_BAD
 *     with the server's fault named, and nothing after it delivered;
 *  G. a body that comes before the SELECT's answer is not this folder's:
 *     it is not delivered, nor anything after it, and the read ends
 *     REPLICA_FOLDER_BAD;
 *  F. without QRESYNC select_read() returns false and sends nothing: the
 *     next command is the first the server sees.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "lib/util.h"
#include "sync/imap_replica.h"
#include "sync/replica.h"
#include "loop_client.h"
#include "scripted_server.h"
#include "testutil.h"

#define SCAN "UID FETCH 1:* (UID FLAGS MODSEQ) (CHANGEDSINCE 10 VANISHED)"
#define BODIES "UID FETCH 9:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])"

/* ---- the scripted server (child process) ------------------------------- */

static void srv_select_ok(const char *tag, unsigned uv)
{
	srv_send("* 3 EXISTS\r\n* OK [UIDVALIDITY %u] x\r\n* OK [UIDNEXT 11] x\r\n"
		 "* OK [HIGHESTMODSEQ 12] x\r\n%s OK [READ-WRITE] done\r\n",
		 uv, tag);
}

static void srv_body(unsigned uid, const char *text)
{
	srv_send("* 1 FETCH (UID %u FLAGS (\\Seen) INTERNALDATE \"01-Jan-2026 00:00:00 +0000\" "
		 "RFC822.SIZE %zu BODY[] {%zu}\r\n%s)\r\n",
		 uid, strlen(text), strlen(text), text);
}

static void scenario_read(int lfd)
{
	char a1[16], a2[16], a3[16], b1[16], b2[16], c1[16], c2[16], c3[16];

	srv_preauth(lfd, "IMAP4rev1 ENABLE CONDSTORE QRESYNC UIDPLUS");
	srv_expect(a1, "ENABLE QRESYNC");
	srv_send("* ENABLED QRESYNC\r\n%s OK enabled\r\n", a1);

	/* A, B, C: every command before any answer. */
	srv_expect(a1, "SELECT \"A\" (CONDSTORE)");
	srv_expect(a2, SCAN);
	srv_expect(a3, BODIES);
	srv_expect(b1, "SELECT \"B\" (CONDSTORE)");
	srv_expect(b2, SCAN);
	srv_expect(c1, "SELECT \"C\" (CONDSTORE)");
	srv_expect(c2, SCAN);
	srv_expect(c3, BODIES);

	srv_select_ok(a1, 7);
	srv_send("* VANISHED (EARLIER) 2\r\n* 1 FETCH (UID 1 FLAGS (\\Flagged) MODSEQ (11))\r\n"
		 "* 3 FETCH (UID 9 FLAGS (\\Seen) MODSEQ (12))\r\n");
	srv_body(9, "Subject: a\r\n\r\nhello\r\n"); /* before the scan's OK */
	srv_send("%s OK scanned\r\n%s OK fetched\r\n", a2, a3);

	srv_send("* OK [CLOSED] x\r\n");
	srv_select_ok(b1, 7);
	srv_send("* 1 FETCH (UID 3 FLAGS () MODSEQ (12))\r\n%s OK scanned\r\n", b2);

	srv_send("* OK [CLOSED] x\r\n");
	srv_select_ok(c1, 8);
	srv_send("* 1 FETCH (UID 4 FLAGS () MODSEQ (12))\r\n%s OK scanned\r\n", c2);
	srv_body(9, "Subject: c\r\n\r\nnot this one\r\n");
	srv_send("%s OK fetched\r\n", c3);

	/* D: fetch_max 1, two bodies. */
	srv_expect(a1, "SELECT \"D\" (CONDSTORE)");
	srv_expect(a2, SCAN);
	srv_expect(a3, BODIES);
	srv_select_ok(a1, 7);
	srv_send("%s OK scanned\r\n", a2);
	srv_body(9, "Subject: d9\r\n\r\nx\r\n");
	srv_body(10, "Subject: d10\r\n\r\ny\r\n");
	srv_send("%s OK fetched\r\n", a3);

	/* E: UID 9 twice, then a body below 9. */
	srv_expect(a1, "SELECT \"E\" (CONDSTORE)");
	srv_expect(a2, SCAN);
	srv_expect(a3, BODIES);
	srv_select_ok(a1, 7);
	srv_send("%s OK scanned\r\n", a2);
	srv_body(9, "Subject: e\r\n\r\nfirst\r\n");
	srv_body(9, "Subject: e\r\n\r\nsecond\r\n");
	srv_body(10, "Subject: e10\r\n\r\nafter\r\n");
	srv_send("%s OK fetched\r\n", a3);

	/* G: a body ahead of the SELECT's answer. */
	srv_expect(a1, "SELECT \"G\" (CONDSTORE)");
	srv_expect(a2, SCAN);
	srv_expect(a3, BODIES);
	srv_body(9, "Subject: forged\r\n\r\nx\r\n");
	srv_select_ok(a1, 7);
	srv_send("%s OK scanned\r\n", a2);
	srv_body(9, "Subject: g\r\n\r\nreal\r\n");
	srv_send("%s OK fetched\r\n", a3);
	srv_drain();
}

static void scenario_no_qresync(int lfd)
{
	char t1[16];

	srv_preauth(lfd, "IMAP4rev1 CONDSTORE UIDPLUS");
	srv_expect(t1, "SELECT \"A\" (CONDSTORE)");
	srv_select_ok(t1, 7);
	srv_drain();
}

/* ---- the client side ----------------------------------------------------- */

enum { NF = 6 };

struct t;

/* One folder's read. */
struct fr {
	struct t *t;
	int k;
	replica_read_t rd;
	int sel_status;
	uint32_t sel_uv;
	int status;             /* 1 until cb */
	char seen[256];         /* "v2:2 u1/f4 b9:22 ..." */
	char ferr[512];
};

struct t {
	struct ev_loop *loop;
	config_account_t acct;
	replica_t *r;
	unsigned caps;
	bool finished;
	int ended;
	bool sent[NF];
	struct fr f[NF];
};

static void note(struct fr *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct fr *f, const char *fmt, ...)
{
	size_t n = strlen(f->seen);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(f->seen + n, sizeof(f->seen) - n, fmt, ap);
	va_end(ap);
}

static void msg_cb(void *ctx, const replica_msg_t *m)
{
	note(ctx, "u%u/f%u ", m->uid, m->flags);
}

static void vanished_cb(void *ctx, uint32_t lo, uint32_t hi)
{
	note(ctx, "v%u:%u ", lo, hi);
}

/* Bodies: the handle counts the bytes. */
static void *b_open(void *ctx, uint64_t size)
{
	(void)ctx, (void)size;
	return xcalloc(1, sizeof(size_t));
}

static int b_write(void *ctx, void *h, const char *data, size_t len)
{
	(void)ctx, (void)data;
	*(size_t *)h += len;
	return 0;
}

static void b_done(void *ctx, void *h, const replica_msg_t *m)
{
	note(ctx, "b%u:%zu ", m->uid, *(size_t *)h);
	free(h);
}

static void b_abort(void *ctx, void *h)
{
	note(ctx, "abort ");
	free(h);
}

static void start(struct t *t, int k);

static void sel_cb(int status, const replica_box_t *box, void *ctx)
{
	struct fr *f = ctx;
	f->sel_status = status;
	f->sel_uv = box ? box->counts.uidvalidity : 0;
}

static void read_cb(int status, void *ctx)
{
	struct fr *f = ctx;
	struct t *t = f->t;

	f->status = status;
	if (status == REPLICA_FOLDER_BAD)
		snprintf(f->ferr, sizeof(f->ferr), "%s", imap_replica_error(t->r));
	t->ended++;
	/* D and E go out one at a time, after C ended. */
	if (f->k >= 2 && f->k + 1 < NF)
		start(t, f->k + 1);
	if (t->ended == NF)
		t->finished = true;
}

static void start(struct t *t, int k)
{
	static const char *names[NF] = {"A", "B", "C", "D", "E", "G"};
	struct fr *f = &t->f[k];

	f->t = t;
	f->k = k;
	f->status = 1;
	f->rd.uidvalidity = 7;
	f->rd.scan.changedsince = 10;
	f->rd.scan.new_uid = 9;
	f->rd.sink = (replica_scan_sink_t){.ctx = f, .msg_cb = msg_cb, .vanished_cb = vanished_cb};
	f->rd.fetch_from = k == 1 ? 0 : 9;
	f->rd.fetch_max = k == 3 ? 1 : 5;
	f->rd.body = (replica_body_sink_t){
		.ctx = f, .open = b_open, .write = b_write, .done = b_done, .abort = b_abort};
	f->rd.sel_cb = sel_cb;
	f->rd.cb = read_cb;
	f->rd.ctx = f;
	t->sent[k] = t->r->ops->select_read(t->r, names[k], &f->rd);
}

static void connect_cb(int status, void *ctx)
{
	struct t *t = ctx;

	CHECK_EQ_INT(status, REPLICA_OK);
	if (status != REPLICA_OK) {
		t->finished = true;
		return;
	}
	/* No waiting between folders: nothing more is sent for one once its
	 * read is out. */
	for (int k = 0; k < 3; k++)
		start(t, k);
}

static void t_init(struct t *t, int port)
{
	memset(t, 0, sizeof(*t));
	t->r = lc_replica(&t->loop, &t->acct, port);
}

static void test_read(void)
{
	struct t t;
	int port;
	pid_t pid = serve(scenario_read, &port);

	t_init(&t, port);
	t.r->ops->connect(t.r, &t.caps, connect_cb, &t);
	lc_run(t.loop, &t.finished);
	CHECK(t.finished);
	for (int k = 0; k < NF; k++)
		CHECK(t.sent[k]);
	/* A */
	CHECK_EQ_INT(t.f[0].sel_status, REPLICA_OK);
	CHECK_EQ_INT(t.f[0].status, REPLICA_OK);
	CHECK_STR(t.f[0].seen, "v2:2 u1/f4 u9/f1 b9:21 ");
	/* B */
	CHECK_EQ_INT(t.f[1].status, REPLICA_OK);
	CHECK_STR(t.f[1].seen, "u3/f0 ");
	/* C */
	CHECK_EQ_INT(t.f[2].sel_status, REPLICA_OK);
	CHECK_EQ_INT(t.f[2].sel_uv, 8);
	CHECK_EQ_INT(t.f[2].status, REPLICA_FOLDER_BAD);
	CHECK_STR(t.f[2].seen, "");
	/* D */
	CHECK_EQ_INT(t.f[3].status, REPLICA_MSG_BAD);
	CHECK_STR(t.f[3].seen, "b9:18 ");
	/* E */
	CHECK_EQ_INT(t.f[4].status, REPLICA_FOLDER_BAD);
	CHECK_STR(t.f[4].seen, "b9:21 ");
	CHECK(strstr(t.f[4].ferr, "sent UID 9 twice") != NULL);
	/* G */
	CHECK_EQ_INT(t.f[5].sel_status, REPLICA_OK);
	CHECK_EQ_INT(t.f[5].status, REPLICA_FOLDER_BAD);
	CHECK_STR(t.f[5].seen, "");
	CHECK(strstr(t.f[5].ferr, "not asked for") != NULL);
	lc_replica_done(t.loop, t.r);
	CHECK_EQ_INT(wait_server(pid), 0);
}

static void nq_connect_cb(int status, void *ctx)
{
	struct t *t = ctx;

	CHECK_EQ_INT(status, REPLICA_OK);
	start(t, 0);
	t->finished = true;
}

static void nq_select_cb(int status, const replica_box_t *box, void *ctx)
{
	struct t *t = ctx;
	CHECK_EQ_INT(status, REPLICA_OK);
	CHECK(box && box->counts.uidvalidity == 7);
	t->ended = 1;
}

static void test_no_qresync(void)
{
	struct t t;
	int port;
	pid_t pid = serve(scenario_no_qresync, &port);

	t_init(&t, port);
	t.r->ops->connect(t.r, &t.caps, nq_connect_cb, &t);
	lc_run(t.loop, &t.finished);
	CHECK(!t.sent[0]);
	CHECK_EQ_INT(t.f[0].status, 1);
	/* The session is as it was: the next command is the first the
	 * server sees. */
	t.r->ops->select(t.r, "A", nq_select_cb, &t);
	while (!t.ended)
		ev_run(t.loop, EVRUN_ONCE);
	lc_replica_done(t.loop, t.r);
	CHECK_EQ_INT(wait_server(pid), 0);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	test_read();
	test_no_qresync();
	return test_done("test_imap_replica_read");
}
