/*
 * select_scan() of the IMAP replica against a scripted server (a forked
 * child on 127.0.0.1) that checks every command:
 *  A. SELECT and the delta scan leave together (both are read before any
 *     answer is sent); the scan() that follows is answered from memory:
 *     nothing more goes on the wire, and flags, keywords, modseqs, sizes
 *     and vanished ranges arrive as the server sent them;
 *  B. a scan() issued before the SELECT answered takes the answer in flight;
 *     a FETCH with UID 0 in it fails the folder with the server's words;
 *  C. a UIDVALIDITY other than the expected one drops the early answer: the
 *     scan() asks again and sees only the second answer;
 *  D. a scan() with other options drops it too;
 *  E. without QRESYNC, select_scan() is a plain SELECT;
 *  F. ENABLE QRESYNC does not hold up the first commands, and when the
 *     server refuses it the early answer is not used: the scan() asks again
 *     the CONDSTORE way;
 *  G. after read_intent() the folder is EXAMINEd (its READ-ONLY is not the
 *     folder's); a write then waits for a SELECT and goes out only once
 *     that SELECT shows the same UIDVALIDITY; another UIDVALIDITY fails the
 *     write and nothing is stored; without read_intent() a READ-ONLY
 *     answer still marks the folder read-only.
 *  H. a FETCH that comes before the SELECT's answer is the old folder's
 *     (RFC 7162 3.2.11): the delta scan sent behind that SELECT ignores it.
 *  I. INTERNALDATE parsing: the forms RFC 3501 allows, zones both ways,
 *     every day of 1900 to 2100 against timegm(), and malformed dates
 *     (cut short anywhere: nothing is read past the end).
 */
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>

#include "lib/util.h"
#include "sync/imap_replica.h"
#include "sync/imap_replica_p.h"
#include "sync/replica.h"
#include "loop_client.h"
#include "scripted_server.h"
#include "testutil.h"

/* ---- the scripted server (child process) ------------------------------- */

#define EARLY_FETCH "UID FETCH 1:* (UID FLAGS MODSEQ RFC822.SIZE) (CHANGEDSINCE 10 VANISHED)"

/* The SELECT answer of a folder with UIDVALIDITY uv. */
static void srv_select_ok(const char *tag, unsigned uv)
{
	srv_send("* 3 EXISTS\r\n* OK [UIDVALIDITY %u] x\r\n* OK [UIDNEXT 9] x\r\n"
		 "* OK [HIGHESTMODSEQ 12] x\r\n%s OK [READ-WRITE] done\r\n",
		 uv, tag);
}

static void scenario_qresync(int lfd)
{
	char t1[16], t2[16], t3[16];

	srv_preauth(lfd, "IMAP4rev1 ENABLE CONDSTORE QRESYNC UIDPLUS");
	srv_expect(t1, "ENABLE QRESYNC");
	srv_send("* ENABLED QRESYNC\r\n%s OK enabled\r\n", t1);

	/* A: both commands before any answer. */
	srv_expect(t1, "SELECT \"A\" (CONDSTORE)");
	srv_expect(t2, EARLY_FETCH);
	srv_select_ok(t1, 7);
	srv_send("* VANISHED (EARLIER) 2:3\r\n"
		 "* 1 FETCH (UID 1 FLAGS (\\Seen $Junk) MODSEQ (11))\r\n"
		 "* 3 FETCH (UID 5 FLAGS () MODSEQ (12) RFC822.SIZE 42)\r\n"
		 "%s OK fetched\r\n",
		 t2);

	/* B: a broken answer, taken in flight. The next command is B's
	 * SELECT: A's scan() was answered from memory. */
	srv_expect(t1, "SELECT \"B\" (CONDSTORE)");
	srv_expect(t2, EARLY_FETCH);
	srv_select_ok(t1, 7);
	srv_send("* 1 FETCH (UID 0 FLAGS () MODSEQ (11))\r\n%s OK fetched\r\n", t2);

	/* C: another UIDVALIDITY: the scan() asks again. */
	srv_expect(t1, "SELECT \"C\" (CONDSTORE)");
	srv_expect(t2, EARLY_FETCH);
	srv_select_ok(t1, 8);
	srv_send("* 1 FETCH (UID 9 FLAGS () MODSEQ (11))\r\n%s OK fetched\r\n", t2);
	srv_expect(t3, EARLY_FETCH);
	srv_send("* 1 FETCH (UID 4 FLAGS (\\Flagged) MODSEQ (12))\r\n%s OK fetched\r\n", t3);

	/* D: a scan() with other options: the early answer is thrown away. */
	srv_expect(t1, "SELECT \"D\" (CONDSTORE)");
	srv_expect(t2, EARLY_FETCH);
	srv_select_ok(t1, 7);
	srv_expect(t3, "UID FETCH 1:* (UID FLAGS MODSEQ) (CHANGEDSINCE 10 VANISHED)");
	srv_send("* 1 FETCH (UID 7 FLAGS () MODSEQ (11))\r\n%s OK fetched\r\n", t2);
	srv_send("* 2 FETCH (UID 8 FLAGS () MODSEQ (12))\r\n%s OK fetched\r\n", t3);

	/* The client closes the connection. */
	srv_drain();
}

static void scenario_condstore(int lfd)
{
	char t1[16], t2[16];

	srv_preauth(lfd, "IMAP4rev1 CONDSTORE UIDPLUS");
	srv_expect(t1, "SELECT \"A\" (CONDSTORE)");
	srv_quiet(300); /* no early scan without QRESYNC */
	srv_select_ok(t1, 7);
	srv_expect(t1, "UID FETCH 1:* (UID FLAGS MODSEQ RFC822.SIZE) (CHANGEDSINCE 10)");
	srv_expect(t2, "UID SEARCH ALL");
	srv_send("* 1 FETCH (UID 2 FLAGS () MODSEQ (11))\r\n%s OK fetched\r\n", t1);
	srv_send("* SEARCH 1 2\r\n%s OK searched\r\n", t2);
	srv_drain();
}

static void scenario_enable_refused(int lfd)
{
	char t0[16], t1[16], t2[16];

	srv_preauth(lfd, "IMAP4rev1 ENABLE CONDSTORE QRESYNC UIDPLUS");
	/* All three before any answer. */
	srv_expect(t0, "ENABLE QRESYNC");
	srv_expect(t1, "SELECT \"A\" (CONDSTORE)");
	srv_expect(t2, EARLY_FETCH);
	srv_send("%s NO not today\r\n", t0);
	srv_select_ok(t1, 7);
	srv_send("%s BAD VANISHED needs ENABLE QRESYNC\r\n", t2);
	srv_expect(t1, "UID FETCH 1:* (UID FLAGS MODSEQ RFC822.SIZE) (CHANGEDSINCE 10)");
	srv_expect(t2, "UID SEARCH ALL");
	srv_send("* 1 FETCH (UID 2 FLAGS () MODSEQ (11))\r\n%s OK fetched\r\n", t1);
	srv_send("* SEARCH 2\r\n%s OK searched\r\n", t2);
	srv_drain();
}

static void scenario_old_folder_fetch(int lfd)
{
	char t0[16], t1[16], t2[16];

	srv_preauth(lfd, "IMAP4rev1 ENABLE CONDSTORE QRESYNC UIDPLUS");
	srv_expect(t0, "ENABLE QRESYNC");
	srv_expect(t1, "SELECT \"A\" (CONDSTORE)");
	srv_expect(t2, EARLY_FETCH);
	srv_send("* ENABLED QRESYNC\r\n%s OK enabled\r\n", t0);
	srv_send("* 2 FETCH (UID 4 FLAGS (\\Deleted) MODSEQ (13))\r\n* OK [CLOSED] x\r\n");
	srv_select_ok(t1, 7);
	srv_send("* 1 FETCH (UID 2 FLAGS () MODSEQ (11))\r\n%s OK fetched\r\n", t2);
	srv_drain();
}

static void scenario_examine(int lfd)
{
	char t1[16], t2[16], t3[16];

	srv_preauth(lfd, "IMAP4rev1 CONDSTORE UIDPLUS");
	srv_expect(t1, "EXAMINE \"A\" (CONDSTORE)");
	srv_send("* 3 EXISTS\r\n* OK [UIDVALIDITY 7] x\r\n* OK [HIGHESTMODSEQ 12] x\r\n"
		 "%s OK [READ-ONLY] done\r\n",
		 t1);
	/* Two writes: one SELECT, and nothing else until it answered. */
	srv_expect(t1, "SELECT \"A\" (CONDSTORE)");
	srv_quiet(300);
	srv_select_ok(t1, 7);
	srv_expect(t1, "UID STORE 2 +FLAGS.SILENT (\\Seen)");
	srv_expect(t2, "UID STORE 3 +FLAGS.SILENT (\\Deleted)");
	/* The expunge waits until the server has stored the flag: Dovecot
	 * may run pipelined UID commands in parallel. */
	srv_quiet(300);
	srv_send("%s OK stored\r\n", t1);
	srv_quiet(200);
	srv_send("%s OK stored\r\n", t2);
	srv_expect(t3, "UID EXPUNGE 3");
	srv_send("%s OK expunged\r\n", t3);

	/* B was replaced between the EXAMINE and the SELECT. */
	srv_expect(t1, "EXAMINE \"B\" (CONDSTORE)");
	srv_send("* OK [UIDVALIDITY 7] x\r\n%s OK [READ-ONLY] done\r\n", t1);
	srv_expect(t1, "SELECT \"B\" (CONDSTORE)");
	srv_select_ok(t1, 9);

	/* C: no read_intent(), and the server can only read it. */
	srv_expect(t1, "SELECT \"C\" (CONDSTORE)");
	srv_send("* OK [UIDVALIDITY 7] x\r\n%s OK [READ-ONLY] done\r\n", t1);
	srv_drain();
}

/* ---- the client side ----------------------------------------------------- */

struct t {
	struct ev_loop *loop;
	config_account_t acct;
	replica_t *r;
	unsigned caps;
	int step;
	bool finished;
	ev_timer delay;
	/* per step */
	int sel_status[5];
	uint32_t sel_uv[5];
	int scan_status[5];
	char seen[5][256];      /* "v2:3 u1/f1/kw$Junk/m11/s0 ..." */
	char ferr[512];
	bool select_before_scan[5];
	bool plain;             /* test_condstore_only: one select_scan + scan */
};

static void t_note(struct t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void t_note(struct t *t, const char *fmt, ...)
{
	char *s = t->seen[t->step];
	size_t n = strlen(s);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s + n, sizeof(t->seen[0]) - n, fmt, ap);
	va_end(ap);
}

static void msg_cb(void *ctx, const replica_msg_t *m)
{
	struct t *t = ctx;
	t_note(t, "u%u/f%u/kw%s/m%llu/s%llu ", m->uid, m->flags, m->keywords,
	       (unsigned long long)m->modseq, (unsigned long long)m->size);
}

static void vanished_cb(void *ctx, uint32_t lo, uint32_t hi)
{
	struct t *t = ctx;
	t_note(t, "v%u:%u ", lo, hi);
}

static const replica_scan_opts_t hint = {
	.changedsince = 10,
	.new_uid = 5,
	.want_size = true,
};

static void next_step(struct t *t);

static void scan_cb(int status, void *ctx)
{
	struct t *t = ctx;

	t->scan_status[t->step] = status;
	if (status == REPLICA_FOLDER_BAD)
		snprintf(t->ferr, sizeof(t->ferr), "%s", imap_replica_error(t->r));
	if (t->plain) {
		t->finished = true;
		return;
	}
	t->step++;
	next_step(t);
}

static void do_scan(struct t *t, const replica_scan_opts_t *o)
{
	replica_scan_sink_t sink = {.ctx = t, .msg_cb = msg_cb, .vanished_cb = vanished_cb};
	t->r->ops->scan(t->r, o, &sink, scan_cb, t);
}

static void delay_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct t *t = w->data;
	do_scan(t, &hint);
}

static void select_cb(int status, const replica_box_t *box, void *ctx)
{
	struct t *t = ctx;

	t->sel_status[t->step] = status;
	t->sel_uv[t->step] = box ? box->counts.uidvalidity : 0;
	t->select_before_scan[t->step] = t->scan_status[t->step] == 1;
	if (t->step == 0) {
		/* Let the early answer arrive whole first. */
		ev_timer_init(&t->delay, delay_cb, 0.2, 0.);
		t->delay.data = t;
		ev_timer_start(t->loop, &t->delay);
	} else if (t->step == 2) {
		do_scan(t, &hint);
	} else if (t->step == 3) {
		replica_scan_opts_t other = hint;
		other.want_size = false;
		do_scan(t, &other);
	}
}

static void next_step(struct t *t)
{
	static const char *names[] = {"A", "B", "C", "D"};

	if (t->step >= 4) {
		t->finished = true;
		return;
	}
	t->scan_status[t->step] = 1; /* not called yet */
	t->r->ops->select_scan(t->r, names[t->step], 7, &hint, select_cb, t);
	if (t->step == 1)
		do_scan(t, &hint); /* before the SELECT answered */
}

static void connect_cb(int status, void *ctx)
{
	struct t *t = ctx;

	CHECK_EQ_INT(status, REPLICA_OK);
	if (status != REPLICA_OK) {
		t->finished = true;
		return;
	}
	next_step(t);
}

static void t_init(struct t *t, int port)
{
	memset(t, 0, sizeof(*t));
	t->r = lc_replica(&t->loop, &t->acct, port);
}

static void test_qresync(void)
{
	struct t t;
	int port;
	pid_t pid = serve(scenario_qresync, &port);

	t_init(&t, port);
	t.r->ops->connect(t.r, &t.caps, connect_cb, &t);
	lc_run(t.loop, &t.finished);
	CHECK(t.finished);
	CHECK(t.caps & REPLICA_CAP_VANISHED);

	/* A */
	CHECK_EQ_INT(t.sel_status[0], REPLICA_OK);
	CHECK_EQ_INT((int)t.sel_uv[0], 7);
	CHECK_EQ_INT(t.scan_status[0], REPLICA_OK);
	CHECK_STR(t.seen[0], "v2:3 u1/f1/kw$Junk/m11/s0 u5/f0/kw/m12/s42 ");
	/* B */
	CHECK_EQ_INT(t.sel_status[1], REPLICA_OK);
	CHECK(t.select_before_scan[1]);
	CHECK_EQ_INT(t.scan_status[1], REPLICA_FOLDER_BAD);
	CHECK(strstr(t.ferr, "FETCH with UID 0") != NULL);
	CHECK_STR(t.seen[1], "");
	/* C */
	CHECK_EQ_INT((int)t.sel_uv[2], 8);
	CHECK_EQ_INT(t.scan_status[2], REPLICA_OK);
	CHECK_STR(t.seen[2], "u4/f4/kw/m12/s0 ");
	/* D */
	CHECK_EQ_INT(t.scan_status[3], REPLICA_OK);
	CHECK_STR(t.seen[3], "u8/f0/kw/m12/s0 ");

	lc_replica_done(t.loop, t.r);
	CHECK_EQ_INT(wait_server(pid), 0);
}

static void plain_select_cb(int status, const replica_box_t *box, void *ctx)
{
	struct t *t = ctx;

	t->sel_status[0] = status;
	t->sel_uv[0] = box ? box->counts.uidvalidity : 0;
	t->step = 0;
	t->scan_status[0] = 1;
	replica_scan_opts_t o = hint;
	uint32_t known[] = {1, 2};
	o.known = known;
	o.n_known = 2;
	replica_scan_sink_t sink = {.ctx = t, .msg_cb = msg_cb, .vanished_cb = vanished_cb};
	t->r->ops->scan(t->r, &o, &sink, scan_cb, t);
}

static void plain_connect_cb(int status, void *ctx)
{
	struct t *t = ctx;

	CHECK_EQ_INT(status, REPLICA_OK);
	t->r->ops->select_scan(t->r, "A", 7, &hint, plain_select_cb, t);
}

/* One select_scan() and scan() against scenario; checks they succeeded and
 * that the scan saw want. Returns the session's capabilities. */
static unsigned run_plain(void (*scenario)(int), const char *want)
{
	struct t t;
	int port;
	pid_t pid = serve(scenario, &port);

	t_init(&t, port);
	t.plain = true;
	t.r->ops->connect(t.r, &t.caps, plain_connect_cb, &t);
	lc_run(t.loop, &t.finished);
	CHECK(t.finished);
	CHECK_EQ_INT(t.sel_status[0], REPLICA_OK);
	CHECK_EQ_INT(t.scan_status[0], REPLICA_OK);
	CHECK_STR(t.seen[0], want);
	lc_replica_done(t.loop, t.r);
	CHECK_EQ_INT(wait_server(pid), 0);
	return t.caps;
}

static void test_condstore_only(void)
{
	unsigned caps = run_plain(scenario_condstore, "u2/f0/kw/m11/s0 ");

	CHECK(!(caps & REPLICA_CAP_VANISHED));
}

static void test_enable_refused(void)
{
	/* UID 1 is known and gone (the UID SEARCH did not list it). */
	run_plain(scenario_enable_refused, "u2/f0/kw/m11/s0 v1:1 ");
}

static void test_old_folder_fetch(void)
{
	run_plain(scenario_old_folder_fetch, "u2/f0/kw/m11/s0 ");
}

/* G: a small state machine over the callbacks. */
struct ex {
	struct t t;
	int done_writes;
	int st_flag, st_del, st_b;
	unsigned caps_a, caps_c;
	char ferr[512];
};

static void ex_select_c_cb(int status, const replica_box_t *box, void *ctx)
{
	struct ex *e = ctx;
	e->caps_c = box ? box->caps : 0;
	e->t.finished = true;
}

static void ex_b_write_cb(int status, void *ctx)
{
	struct ex *e = ctx;
	e->st_b = status;
	snprintf(e->ferr, sizeof(e->ferr), "%s", imap_replica_error(e->t.r));
	e->t.r->ops->select(e->t.r, "C", ex_select_c_cb, e);
}

static void ex_select_b_cb(int status, const replica_box_t *box, void *ctx)
{
	struct ex *e = ctx;
	CHECK_EQ_INT(status, REPLICA_OK);
	e->t.r->ops->set_flags(e->t.r, 1, REPLICA_F_FLAGGED, "", 0, "", ex_b_write_cb, e);
}

static void ex_write_cb(int status, void *ctx)
{
	struct ex *e = ctx;
	if (e->done_writes++ == 0) {
		e->st_flag = status;
		return;
	}
	e->st_del = status;
	e->t.r->ops->read_intent(e->t.r);
	e->t.r->ops->select(e->t.r, "B", ex_select_b_cb, e);
}

static void ex_select_a_cb(int status, const replica_box_t *box, void *ctx)
{
	struct ex *e = ctx;
	static const uint32_t gone[] = {3};

	CHECK_EQ_INT(status, REPLICA_OK);
	e->caps_a = box ? box->caps : 0;
	e->t.r->ops->set_flags(e->t.r, 2, REPLICA_F_SEEN, "", 0, "", ex_write_cb, e);
	e->t.r->ops->delete_msgs(e->t.r, gone, 1, ex_write_cb, e);
}

static void ex_connect_cb(int status, void *ctx)
{
	struct ex *e = ctx;

	CHECK_EQ_INT(status, REPLICA_OK);
	e->t.r->ops->read_intent(e->t.r);
	e->t.r->ops->select(e->t.r, "A", ex_select_a_cb, e);
}

static void test_examine(void)
{
	struct ex e;
	int port;
	pid_t pid = serve(scenario_examine, &port);

	memset(&e, 0, sizeof(e));
	t_init(&e.t, port);
	e.st_flag = e.st_del = e.st_b = 1;
	e.t.r->ops->connect(e.t.r, &e.t.caps, ex_connect_cb, &e);
	lc_run(e.t.loop, &e.t.finished);
	CHECK(e.t.finished);
	CHECK(!(e.caps_a & REPLICA_CAP_READONLY));
	CHECK_EQ_INT(e.st_flag, REPLICA_OK);
	CHECK_EQ_INT(e.st_del, REPLICA_OK);
	CHECK_EQ_INT(e.st_b, REPLICA_FOLDER_BAD);
	CHECK(strstr(e.ferr, "B was replaced on the server") != NULL);
	CHECK(e.caps_c & REPLICA_CAP_READONLY);
	lc_replica_done(e.t.loop, e.t.r);
	CHECK_EQ_INT(wait_server(pid), 0);
}

static void test_internaldate(void)
{
	static const char *mons[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
				     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

	CHECK(ir_parse_internaldate("17-Jul-1996 02:44:25 -0700") == 837596665);
	CHECK(ir_parse_internaldate(" 1-Jan-2026 00:00:00 +0000") == 1767225600);
	CHECK(ir_parse_internaldate("1-jan-2026 00:00:00 +0000") == 1767225600);
	CHECK(ir_parse_internaldate("01-JAN-2026 05:30:00 +0530") == 1767225600);
	CHECK(ir_parse_internaldate("31-Dec-1969 23:59:59 +0000") == -1);
	/* Every day of two centuries, at a time with every field set. */
	for (int y = 1900; y <= 2100; y++) {
		for (int m = 0; m < 12; m++) {
			for (int d = 1; d <= 31; d++) {
				struct tm tm = {.tm_year = y - 1900, .tm_mon = m, .tm_mday = d,
						.tm_hour = 13, .tm_min = 7, .tm_sec = 59};
				time_t want = timegm(&tm);
				if (tm.tm_mon != m)
					continue; /* no such day */
				char s[64];
				snprintf(s, sizeof(s), "%02d-%s-%04d 13:07:59 -0245", d, mons[m], y);
				time_t got = ir_parse_internaldate(s);
				if (got != want + 2 * 3600 + 45 * 60) {
					fprintf(stderr, "%s: %lld\n", s, (long long)got);
					CHECK(got == want + 2 * 3600 + 45 * 60);
					return;
				}
			}
		}
	}
	static const char *bad[] = {
	    NULL, "", "17-Jul-1996", "17-Jul-1996 02:44:25", "17-Jly-1996 02:44:25 -0700",
	    "00-Jul-1996 02:44:25 -0700", "32-Jul-1996 02:44:25 -0700", "17-Jul-96 02:44:25 -0700",
	    "17-Jul-1996 24:00:00 -0700", "17-Jul-1996 02:60:25 -0700", "17-Jul-1996 02:44:61 -0700",
	    "17-Jul-1996 02:44:25 0700", "17-Jul-1996 02:44:25 -07000", "17-Jul-1996 02:44:25 -0760",
	    "17-Jul-1996 2:44:25 -0700", "\"17-Jul-1996 02:44:25 -0700\"", "123-Jul-1996 02:44:25 -0700",
	    "17-Jul-1996 02:44:25 ", "17-Jul-1996 02:44:25 -", "17-Jul-1996 02:44:25 -07", "1-J",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(ir_parse_internaldate(bad[i]) == 0);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	test_internaldate();
	test_qresync();
	test_condstore_only();
	test_enable_refused();
	test_old_folder_fetch();
	test_examine();
	return test_done("test_imap_replica");
}
