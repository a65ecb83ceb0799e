/*
 * The IMAP client against a scripted server (a forked child on 127.0.0.1)
 * that checks every byte the client sends: string quoting and mailbox name
 * encoding, pipelining, synchronising literals versus LITERAL+, APPEND from
 * memory and from a file, APPENDUID, routing of untagged responses, IDLE
 * renewal and DONE, big literals diverted to the sink, a connection cut in
 * the middle of a literal, an auth failure that is not retried, STARTTLS
 * refused, and a server that stops answering.
 *
 * The real-server side (Dovecot) is tests/integration/test_imap_client.py.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>

#include "lib/util.h"
#include "sync/imap_auth.h"
#include "sync/imap_client.h"
#include "loop_client.h"
#include "scripted_server.h"
#include "testutil.h"

/* ---- the scripted server (child process) ------------------------------- */

static void srv_bytes(size_t n, unsigned seed)
{
	while (srv_len < n)
		SRV_CHECK(srv_fill(5000) > 0, "literal short: %zu of %zu", srv_len, n);
	for (size_t i = 0; i < n; i++)
		SRV_CHECK((unsigned char)srv_in[i] == (unsigned char)((i * 7 + seed) & 0xff),
			  "literal byte %zu differs", i);
	srv_consume(n);
}

static void fill_pattern(char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (char)((i * 7 + seed) & 0xff);
}

/* ---- the client side ----------------------------------------------------- */

struct t {
	struct ev_loop *loop;
	imap_client_t *c;
	config_account_t acct;
	char order[64];
	int connect_result;
	char connect_text[1024];
	uint32_t exists;
	uint32_t appenduid[2];
	int idle_done_calls;
	bool idle_saw_exists;
	int lost_calls;
	char lost_msg[1024];
	bool finished;
	uint64_t sunk_bytes;
	uint64_t sink_off; /* offset in the current literal */
	int sink_opens;
	int fetch_items_sunk;
	int fetch2_result;
	bool fetch2_done_before_lost;
	int append_fd;
};

static void t_init(struct t *t, int port, const char *password)
{
	memset(t, 0, sizeof(*t));
	t->loop = ev_loop_new(EVFLAG_AUTO);
	lc_account(&t->acct, port);
	t->acct.remote.password = (char *)password;
	t->append_fd = -1;
}

static void t_run(struct t *t)
{
	lc_run(t->loop, &t->finished);
}

static void t_done(struct t *t)
{
	imap_client_free(t->c);
	ev_loop_destroy(t->loop);
}

static void note(struct t *t, char what)
{
	size_t n = strlen(t->order);
	if (n + 1 < sizeof(t->order)) {
		t->order[n] = what;
		t->order[n + 1] = '\0';
	}
}

/* == scenario 1: quoting, pipelining, sync literal, APPENDUID, IDLE ======== */

static void server1(int lfd)
{
	char t1[16], t2[16], t3[16], t4[16];
	srv_accept(lfd);
	srv_send("* OK ready\r\n");
	srv_expect(t1, "CAPABILITY");
	srv_send("* CAPABILITY IMAP4rev1 IDLE AUTH=PLAIN\r\n%s OK done\r\n", t1);
	srv_expect(t1, "LOGIN \"alice\" \"p\\\"a\\\\ss\"");
	srv_send("%s OK logged in\r\n", t1);
	srv_expect(t1, "CAPABILITY");
	srv_send("* CAPABILITY IMAP4rev1 IDLE UIDPLUS\r\n%s OK done\r\n", t1);
	/* Three commands arrive before any answer: pipelining. */
	srv_expect(t1, "NOOP");
	srv_expect(t2, "SELECT \"Entw&APw-rfe\"");
	srv_expect(t3, "APPEND \"INBOX\" (\\Seen) {7}");
	/* No LITERAL+: the literal must wait for our "+". */
	srv_quiet(200);
	srv_send("+ go ahead\r\n");
	SRV_CHECK(srv_fill(5000) > 0, "no literal");
	while (srv_len < 9)
		SRV_CHECK(srv_fill(5000) > 0, "short literal");
	SRV_CHECK(memcmp(srv_in, "hello\r\n\r\n", 9) == 0, "literal \"%.*s\"", 9, srv_in);
	srv_consume(9);
	srv_send("%s OK noop\r\n* 3 EXISTS\r\n%s OK [READ-WRITE] selected\r\n"
		 "%s OK [APPENDUID 42 7] appended\r\n",
		 t1, t2, t3);
	/* IDLE, renewed by the client after 0.3 s. */
	srv_expect(t4, "IDLE");
	srv_send("+ idling\r\n");
	srv_expect(NULL, "DONE");
	srv_send("%s OK idle done\r\n", t4);
	srv_expect(t4, "IDLE");
	srv_send("+ idling\r\n* 4 EXISTS\r\n");
	srv_expect(NULL, "DONE");
	srv_send("%s OK idle done\r\n", t4);
	srv_expect(t1, "LOGOUT");
	srv_send("* BYE bye\r\n%s OK logged out\r\n", t1);
	close(srv_fd);
}

static void s1_logout_cb(imap_client_t *c, const imap_done_t *d, void *arg)
{
	struct t *t = arg;
	CHECK_EQ_INT(d->result, IMAP_R_OK);
	note(t, 'L');
	t->finished = true;
}

static void s1_idle_done_cb(imap_client_t *c, const imap_done_t *d, void *arg)
{
	struct t *t = arg;
	t->idle_done_calls++;
	CHECK_EQ_INT(d->result, IMAP_R_OK);
	CHECK(!imap_client_idling(c));
	note(t, 'I');
	imap_client_logout(c, s1_logout_cb, t);
}

static bool s1_idle_untagged_cb(imap_client_t *c, const imap_resp_t *r, void *arg)
{
	struct t *t = arg;
	if (r->name && strcmp(r->name, "EXISTS") == 0 && r->number == 4) {
		t->idle_saw_exists = true;
		CHECK(imap_client_idling(c));
		imap_client_idle_done(c);
		return true;
	}
	return false;
}

static void s1_noop_cb(imap_client_t *c, const imap_done_t *d, void *arg)
{
	CHECK_EQ_INT(d->result, IMAP_R_OK);
	note(arg, 'N');
}

static bool s1_select_untagged_cb(imap_client_t *c, const imap_resp_t *r, void *arg)
{
	struct t *t = arg;
	if (r->name && strcmp(r->name, "EXISTS") == 0) {
		t->exists = r->number;
		return true;
	}
	return false;
}

static void s1_select_cb(imap_client_t *c, const imap_done_t *d, void *arg)
{
	CHECK_EQ_INT(d->result, IMAP_R_OK);
	CHECK(d->code && strcmp(d->code, "READ-WRITE") == 0);
	note(arg, 'S');
}

static void s1_append_cb(imap_client_t *c, const imap_append_result_t *r, void *arg)
{
	struct t *t = arg;
	CHECK_EQ_INT(r->done.result, IMAP_R_OK);
	t->appenduid[0] = r->uidvalidity;
	t->appenduid[1] = r->uid;
	note(t, 'A');
	CHECK_EQ_INT(imap_client_pending(c), 0);
	CHECK_EQ_INT(imap_client_idle(c, s1_idle_done_cb, s1_idle_untagged_cb, t), 0);
}

static void s1_connect_cb(imap_client_t *c, const imap_done_t *d, void *arg)
{
	struct t *t = arg;
	t->connect_result = d->result;
	if (d->result != IMAP_R_OK) {
		fprintf(stderr, "connect: %s\n", d->text);
		t->finished = true;
		return;
	}
	CHECK(imap_client_caps(c) & IMAP_CAP_UIDPLUS);
	CHECK(imap_client_caps(c) & IMAP_CAP_IDLE);
	CHECK(!(imap_client_caps(c) & IMAP_CAP_LITERAL_PLUS));
	CHECK(imap_client_has_cap(c, "uidplus"));
	CHECK(!imap_client_has_cap(c, "AUTH=PLAIN")); /* the post-login list replaced it */
	imap_client_cmd(c, s1_noop_cb, NULL, t, "NOOP");
	imap_client_select(c, "Entwürfe", false, NULL, false, s1_select_cb, s1_select_untagged_cb,
			   t);
	imap_client_append(c, "INBOX", "(\\Seen)", NULL, "hello\r\n", 7, s1_append_cb, t);
	CHECK_EQ_INT(imap_client_pending(c), 3);
}

static void scenario1(void)
{
	int port;
	pid_t pid = serve(server1, &port);
	struct t t;
	imap_client_opts_t o;

	t_init(&t, port, "p\"a\\ss");
	t.acct.remote.auth[0] = CONFIG_AUTH_LOGIN;
	t.acct.remote.n_auth = 1;
	imap_client_opts_init(&o);
	o.idle_renew = 0.3;
	o.cmd_timeout = 5;
	t.c = imap_client_new(t.loop, &t.acct, &o);
	CHECK_EQ_INT(imap_client_connect(t.c, s1_connect_cb, &t), 0);
	CHECK_EQ_INT(imap_client_connect(t.c, s1_connect_cb, &t), -1); /* already connecting */
	t_run(&t);
	CHECK(t.finished);
	CHECK_EQ_INT(t.connect_result, IMAP_R_OK);
	CHECK(strcmp(t.order, "NSAIL") == 0);
	CHECK_EQ_INT(t.exists, 3);
	CHECK_EQ_INT(t.appenduid[0], 42);
	CHECK_EQ_INT(t.appenduid[1], 7);
	CHECK_EQ_INT(t.idle_done_calls, 1);
	CHECK(t.idle_saw_exists);
	CHECK(!imap_client_ready(t.c));
	t_done(&t);
	CHECK_EQ_INT(wait_server(pid), 0);
}

/* == scenario 2: SASL-IR, LITERAL+ from a file, sink, cut mid-literal ===== */

#define BIG_APPEND 200000
#define BIG_FETCH 50000

static void server2(int lfd)
{
	char t1[16];
	static char lit[BIG_FETCH];
	char *ir = imap_auth_plain("alice", "pw");
	char want[128];

	srv_accept(lfd);
	srv_send("* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR AUTH=PLAIN] hi\r\n");
	snprintf(want, sizeof(want), "AUTHENTICATE PLAIN %s", ir);
	srv_expect(t1, want);
	srv_send("%s OK [CAPABILITY IMAP4rev1 LITERAL+ COMPRESS=DEFLATE] in\r\n", t1);
	/* compress = false in the options: no COMPRESS command. */
	srv_expect(t1, "APPEND \"INBOX\" {200000+}");
	srv_bytes(BIG_APPEND, 3);
	srv_expect(NULL, "");
	srv_send("%s OK appended\r\n", t1);
	srv_expect(t1, "UID FETCH 5 (BODY.PEEK[])");
	fill_pattern(lit, sizeof(lit), 5);
	srv_send("* 1 FETCH (UID 5 BODY[] {%d}\r\n", BIG_FETCH);
	srv_send_raw(lit, sizeof(lit));
	srv_send(")\r\n%s OK fetched\r\n", t1);
	srv_expect(t1, "UID FETCH 6 (BODY.PEEK[])");
	srv_send("* 2 FETCH (UID 6 BODY[] {%d}\r\n", BIG_FETCH);
	srv_send_raw(lit, 100);
	close(srv_fd);
	free(ir);
}

static void *s2_sink_open(void *ctx, uint64_t size)
{
	struct t *t = ctx;
	t->sink_opens++;
	t->sink_off = 0;
	CHECK_EQ_INT(size, BIG_FETCH);
	return t;
}

static int s2_sink_write(void *ctx, void *handle, const char *data, size_t len)
{
	struct t *t = ctx;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)data[i] != (unsigned char)(((t->sink_off + i) * 7 + 5) & 0xff))
			return -1;
	t->sink_off += len;
	t->sunk_bytes += len;
	return 0;
}

static void s2_sink_release(void *ctx, void *handle) {}

static void s2_lost_cb(imap_client_t *c, int result, const char *msg, void *arg)
{
	struct t *t = arg;
	t->lost_calls++;
	CHECK_EQ_INT(result, IMAP_R_CONN);
	snprintf(t->lost_msg, sizeof(t->lost_msg), "%s", msg);
	t->finished = true;
}

static void s2_fetch2_cb(imap_client_t *c, const imap_done_t *d, void *arg)
{
	struct t *t = arg;
	t->fetch2_result = d->result;
	t->fetch2_done_before_lost = t->lost_calls == 0;
}

static bool s2_fetch_untagged_cb(imap_client_t *c, const imap_resp_t *r, void *arg)
{
	struct t *t = arg;
	if (!r->name || strcmp(r->name, "FETCH") != 0)
		return false;
	const imap_item_t *body = imap_fetch_get(r->args, "BODY[]");
	if (body && body->sink && !body->str && body->len == BIG_FETCH)
		t->fetch_items_sunk++;
	return true;
}

static void s2_fetch1_cb(imap_client_t *c, const imap_done_t *d, void *arg)
{
	struct t *t = arg;
	CHECK_EQ_INT(d->result, IMAP_R_OK);
	imap_client_uid_fetch(c, "6", "(BODY.PEEK[])", 0, s2_fetch2_cb, s2_fetch_untagged_cb, t);
}

static void s2_append_cb(imap_client_t *c, const imap_append_result_t *r, void *arg)
{
	struct t *t = arg;
	CHECK_EQ_INT(r->done.result, IMAP_R_OK);
	CHECK_EQ_INT(r->uid, 0); /* no APPENDUID */
	imap_client_uid_fetch(c, "5", "(BODY.PEEK[])", 0, s2_fetch1_cb, s2_fetch_untagged_cb, t);
}

static void s2_connect_cb(imap_client_t *c, const imap_done_t *d, void *arg)
{
	struct t *t = arg;
	t->connect_result = d->result;
	if (d->result != IMAP_R_OK) {
		fprintf(stderr, "connect: %s\n", d->text);
		t->finished = true;
		return;
	}
	CHECK(imap_client_caps(c) & IMAP_CAP_LITERAL_PLUS);
	imap_client_append_fd(c, "INBOX", NULL, NULL, t->append_fd, BIG_APPEND, s2_append_cb, t);
}

static void scenario2(void)
{
	int port;
	pid_t pid = serve(server2, &port);
	struct t t;
	imap_client_opts_t o;
	char *dir = test_tmpdir("ib-client");
	char *path = xasprintf("%s/msg", dir);
	static char big[BIG_APPEND];

	fill_pattern(big, sizeof(big), 3);
	FILE *f = fopen(path, "w");
	fwrite(big, 1, sizeof(big), f);
	fclose(f);
	t_init(&t, port, "pw");
	t.append_fd = open(path, O_RDONLY);
	imap_client_opts_init(&o);
	o.compress = false;
	o.cmd_timeout = 5;
	t.c = imap_client_new(t.loop, &t.acct, &o);
	imap_literal_sink_t sink = {1000, &t, s2_sink_open, s2_sink_write, s2_sink_release};
	imap_client_set_literal_sink(t.c, &sink);
	imap_client_set_lost_cb(t.c, s2_lost_cb, &t);
	imap_client_connect(t.c, s2_connect_cb, &t);
	t_run(&t);
	CHECK_EQ_INT(t.connect_result, IMAP_R_OK);
	CHECK_EQ_INT(t.fetch_items_sunk, 1);
	/* The cut literal may or may not have reached the sink in part. */
	CHECK(t.sunk_bytes >= BIG_FETCH && t.sunk_bytes <= BIG_FETCH + 100);
	CHECK_EQ_INT(t.sink_opens, 2);
	CHECK_EQ_INT(t.fetch2_result, IMAP_R_CONN);
	CHECK(t.fetch2_done_before_lost);
	CHECK_EQ_INT(t.lost_calls, 1);
	CHECK(strstr(t.lost_msg, "acct=t: 127.0.0.1 closed the connection while waiting for UID FETCH"));
	CHECK(!imap_client_ready(t.c));
	close(t.append_fd);
	t_done(&t);
	CHECK_EQ_INT(wait_server(pid), 0);
	test_rmtree(dir);
	free(path);
	free(dir);
}

/* == scenario 3: a wrong password is tried once ============================ */

static void server3(int lfd)
{
	char t1[16];
	srv_accept(lfd);
	srv_send("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] hi\r\n");
	char *ir = imap_auth_plain("alice", "wrong");
	char want[128];
	snprintf(want, sizeof(want), "AUTHENTICATE PLAIN %s", ir);
	free(ir);
	srv_expect(t1, want);
	srv_send("%s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", t1);
	SRV_CHECK(srv_fill(2000) == 0, "client did not close after the failure");
	/* No second connection may come. */
	struct pollfd pf = {lfd, POLLIN, 0};
	SRV_CHECK(poll(&pf, 1, 1000) == 0, "the client tried again");
}

static void s3_connect_cb(imap_client_t *c, const imap_done_t *d, void *arg)
{
	struct t *t = arg;
	t->connect_result = d->result;
	snprintf(t->connect_text, sizeof(t->connect_text), "%s", d->text);
	t->finished = true;
}

static void scenario3(void)
{
	int port;
	pid_t pid = serve(server3, &port);
	struct t t;

	t_init(&t, port, "wrong");
	t.c = imap_client_new(t.loop, &t.acct, NULL);
	imap_client_connect(t.c, s3_connect_cb, &t);
	t_run(&t);
	CHECK_EQ_INT(t.connect_result, IMAP_R_AUTH);
	CHECK(strcmp(t.connect_text,
		     "acct=t: login as alice rejected by 127.0.0.1: "
		     "[AUTHENTICATIONFAILED] Authentication failed; check remote.password") == 0);
	if (strstr(t.connect_text, "wrong"))
		CHECK(!"the password reached the message");
	/* Marked failed: the next connect answers at once, without the network. */
	t.finished = false;
	t.connect_result = 0;
	CHECK_EQ_INT(imap_client_connect(t.c, s3_connect_cb, &t), 0);
	CHECK(t.finished);
	CHECK_EQ_INT(t.connect_result, IMAP_R_AUTH);
	CHECK_EQ_INT(wait_server(pid), 0);
	t_done(&t);
}

/* == scenario 4: STARTTLS asked for, not offered ========================== */

static void server4(int lfd)
{
	srv_accept(lfd);
	srv_send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] no tls here\r\n");
	/* The client must hang up without sending anything: no LOGIN, no
	 * AUTHENTICATE in plaintext. */
	int n = srv_fill(3000);
	SRV_CHECK(n == 0, "client sent \"%.*s\"", (int)srv_len, srv_in);
}

static void scenario4(void)
{
	int port;
	pid_t pid = serve(server4, &port);
	struct t t;

	t_init(&t, port, "pw");
	t.acct.remote.host = "localhost"; /* a name: looked up off the loop */
	t.acct.remote.tls = CONFIG_TLS_STARTTLS;
	t.c = imap_client_new(t.loop, &t.acct, NULL);
	imap_client_connect(t.c, s3_connect_cb, &t);
	t_run(&t);
	CHECK_EQ_INT(t.connect_result, IMAP_R_TLS);
	CHECK(strstr(t.connect_text, "does not offer STARTTLS"));
	CHECK_EQ_INT(wait_server(pid), 0);
	t_done(&t);
}

/* == scenario 5: a server that stops answering ============================ */

static void server5(int lfd)
{
	char t1[16];
	srv_accept(lfd);
	srv_send("* OK hi\r\n");
	srv_expect(t1, "CAPABILITY");
	/* ...and silence, until the client gives up. */
	SRV_CHECK(srv_fill(5000) == 0, "client did not hang up");
}

static void scenario5(void)
{
	int port;
	pid_t pid = serve(server5, &port);
	struct t t;
	imap_client_opts_t o;

	t_init(&t, port, "pw");
	imap_client_opts_init(&o);
	o.connect_timeout = 0.5;
	t.c = imap_client_new(t.loop, &t.acct, &o);
	imap_client_connect(t.c, s3_connect_cb, &t);
	t_run(&t);
	CHECK_EQ_INT(t.connect_result, IMAP_R_CONN);
	CHECK(strstr(t.connect_text, "did not answer"));
	CHECK_EQ_INT(wait_server(pid), 0);
	t_done(&t);
}

/* == scenario 6: PREAUTH, QRESYNC/CONDSTORE parameters, CHANGEDSINCE ===== */

static void server6(int lfd)
{
	char t1[16], t2[16], t3[16], t4[16];
	srv_accept(lfd);
	srv_send("* PREAUTH [CAPABILITY IMAP4rev1 ENABLE CONDSTORE QRESYNC LITERAL+] welcome\r\n");
	/* PREAUTH: no login; straight to the caller's commands, pipelined. */
	srv_expect(t1, "ENABLE QRESYNC");
	srv_expect(t2, "SELECT \"INBOX\" (QRESYNC (7 12345678901 1:5))");
	srv_expect(t3, "EXAMINE \"Sent\" (CONDSTORE)");
	srv_expect(t4, "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 99)");
	srv_send("* ENABLED QRESYNC\r\n%s OK enabled\r\n", t1);
	srv_send("* VANISHED (EARLIER) 3\r\n%s OK selected\r\n", t2);
	srv_send("%s OK examined\r\n", t3);
	srv_send("* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (100))\r\n%s OK fetched\r\n", t4);
	/* A string with a line break goes as a literal; LITERAL+ is offered. */
	srv_expect(t1, "SEARCH HEADER Subject {4+}");
	while (srv_len < 6)
		SRV_CHECK(srv_fill(5000) > 0, "short literal");
	SRV_CHECK(memcmp(srv_in, "a\r\nb\r\n", 6) == 0, "literal \"%.*s\"", 6, srv_in);
	srv_consume(6);
	srv_send("* SEARCH\r\n%s OK searched\r\n", t1);
	SRV_CHECK(srv_fill(5000) == 0, "client did not hang up");
}

static bool s6_untagged_cb(imap_client_t *c, const imap_resp_t *r, void *arg)
{
	struct t *t = arg;
	if (r->name && strcmp(r->name, "VANISHED") == 0)
		note(t, 'V');
	if (r->name && strcmp(r->name, "FETCH") == 0)
		note(t, 'F');
	return false; /* let the connection handler see them too */
}

static bool s6_conn_untagged_cb(imap_client_t *c, const imap_resp_t *r, void *arg)
{
	note(arg, 'c');
	return true;
}

static void s6_step_cb(imap_client_t *c, const imap_done_t *d, void *arg)
{
	CHECK_EQ_INT(d->result, IMAP_R_OK);
	note(arg, '.');
}

static void s6_search_cb(imap_client_t *c, const imap_done_t *d, void *arg)
{
	struct t *t = arg;
	CHECK_EQ_INT(d->result, IMAP_R_OK);
	note(t, 'S');
	imap_client_close(c);
	t->finished = true;
}

static void s6_fetch_cb(imap_client_t *c, const imap_done_t *d, void *arg)
{
	s6_step_cb(c, d, arg);
	imap_client_cmd(c, s6_search_cb, NULL, arg, "SEARCH HEADER Subject %q", "a\r\nb");
}

static void s6_connect_cb(imap_client_t *c, const imap_done_t *d, void *arg)
{
	struct t *t = arg;
	t->connect_result = d->result;
	if (d->result != IMAP_R_OK) {
		t->finished = true;
		return;
	}
	imap_qresync_t qr = {7, 12345678901ull, "1:5"};
	imap_client_cmd(c, s6_step_cb, NULL, t, "ENABLE %s", "QRESYNC");
	imap_client_select(c, "INBOX", false, &qr, false, s6_step_cb, s6_untagged_cb, t);
	imap_client_select(c, "Sent", true, NULL, true, s6_step_cb, NULL, t);
	imap_client_uid_fetch(c, "1:*", "(FLAGS)", 99, s6_fetch_cb, s6_untagged_cb, t);
}

static void scenario6(void)
{
	int port;
	pid_t pid = serve(server6, &port);
	struct t t;

	t_init(&t, port, NULL); /* PREAUTH needs no password */
	t.c = imap_client_new(t.loop, &t.acct, NULL);
	imap_client_set_untagged_cb(t.c, s6_conn_untagged_cb, &t);
	imap_client_connect(t.c, s6_connect_cb, &t);
	t_run(&t);
	CHECK_EQ_INT(t.connect_result, IMAP_R_OK);
	/* ENABLED reaches the connection handler (c). VANISHED is offered to
	 * every command in flight in tag order (SELECT, then UID FETCH: V V),
	 * which pass it on (c); the FETCH comes after SELECT completed; the
	 * SEARCH command has no handler, so "* SEARCH" goes to c. */
	CHECK(strcmp(t.order, "c.VVc..Fc.cS") == 0);
	CHECK_EQ_INT(wait_server(pid), 0);
	t_done(&t);
}

/* == scenario 7: name lookups that fail or are abandoned ================== */

static void s7_quit_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

static void scenario7(void)
{
	struct t t;
	imap_client_opts_t o;

	t_init(&t, 143, "pw");
	t.acct.remote.host = "nonexistent.invalid";
	imap_client_opts_init(&o);
	o.connect_timeout = 5;
	t.c = imap_client_new(t.loop, &t.acct, &o);
	imap_client_connect(t.c, s3_connect_cb, &t);
	t_run(&t);
	CHECK_EQ_INT(t.connect_result, IMAP_R_CONN);
	CHECK(strstr(t.connect_text, "nonexistent.invalid") != NULL);
	CHECK(strstr(t.connect_text, "check remote.host") != NULL);

	/* Closed while the lookup runs: the resolver thread must find nothing
	 * of ours when it finishes (ASan watches this). */
	t.finished = false;
	t.acct.remote.host = "localhost";
	imap_client_clear_failed(t.c);
	CHECK_EQ_INT(imap_client_connect(t.c, s3_connect_cb, &t), 0);
	imap_client_close(t.c);
	CHECK(t.finished);
	CHECK_EQ_INT(t.connect_result, IMAP_R_CANCELLED);
	ev_timer quit;
	ev_timer_init(&quit, s7_quit_cb, 0.3, 0.);
	ev_timer_start(t.loop, &quit);
	ev_run(t.loop, 0);
	t_done(&t);
}

/* == scenario 8: a command that waits for the ones before it ============== */

static void server8(int lfd)
{
	char t1[16], t2[16], t3[16], t4[16];
	srv_accept(lfd);
	srv_send("* PREAUTH [CAPABILITY IMAP4rev1 UIDPLUS] welcome\r\n");
	/* The EXPUNGE (and the NOOP behind it) wait for the STORE's answer. */
	srv_expect(t1, "UID STORE 4 +FLAGS.SILENT (\\Deleted)");
	srv_quiet(300);
	srv_send("%s OK stored\r\n", t1);
	srv_expect(t2, "UID EXPUNGE 4");
	srv_expect(t3, "NOOP");
	srv_send("* VANISHED 4\r\n%s OK expunged\r\n%s OK noop\r\n", t2, t3);
	/* Again, but the server answers the waiting command, which it cannot
	 * have seen: a forged answer; the client hangs up. */
	srv_expect(t1, "UID STORE 5 +FLAGS.SILENT (\\Deleted)");
	srv_quiet(200);
	snprintf(t4, sizeof(t4), "A%d", atoi(t1 + 1) + 1);
	srv_send("%s OK forged\r\n", t4);
	SRV_CHECK(srv_fill(5000) == 0, "client did not hang up");
}

static void s8_cb(imap_client_t *c, const imap_done_t *d, void *arg)
{
	struct t *t = arg;
	note(t, d->result == IMAP_R_OK ? 'o' : 'x');
	if (strlen(t->order) == 3) {
		imap_client_cmd(c, s8_cb, NULL, t, "UID STORE 5 +FLAGS.SILENT (\\Deleted)");
		imap_client_cmd_after(c, s8_cb, NULL, t, "UID EXPUNGE 5");
	}
	if (strlen(t->order) == 5)
		t->finished = true;
}

static void s8_lost_cb(imap_client_t *c, int result, const char *msg, void *arg)
{
	struct t *t = arg;
	t->lost_calls++;
	snprintf(t->lost_msg, sizeof(t->lost_msg), "%s", msg);
}

static void s8_connect_cb(imap_client_t *c, const imap_done_t *d, void *arg)
{
	struct t *t = arg;
	t->connect_result = d->result;
	if (d->result != IMAP_R_OK) {
		t->finished = true;
		return;
	}
	imap_client_cmd(c, s8_cb, NULL, t, "UID STORE 4 +FLAGS.SILENT (\\Deleted)");
	imap_client_cmd_after(c, s8_cb, NULL, t, "UID EXPUNGE 4");
	imap_client_cmd(c, s8_cb, NULL, t, "NOOP");
}

static void scenario8(void)
{
	int port;
	pid_t pid = serve(server8, &port);
	struct t t;

	t_init(&t, port, NULL);
	t.c = imap_client_new(t.loop, &t.acct, NULL);
	imap_client_set_lost_cb(t.c, s8_lost_cb, &t);
	imap_client_connect(t.c, s8_connect_cb, &t);
	t_run(&t);
	CHECK_EQ_INT(t.connect_result, IMAP_R_OK);
	/* Three answers in order, then the second pair fails with the lost
	 * connection. */
	CHECK(strcmp(t.order, "oooxx") == 0);
	CHECK(strstr(t.lost_msg, "never sent") != NULL);
	imap_client_close(t.c);
	CHECK_EQ_INT(wait_server(pid), 0);
	t_done(&t);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	scenario1();
	scenario2();
	scenario3();
	scenario4();
	scenario5();
	scenario6();
	scenario7();
	scenario8();
	return test_done("test_imap_client");
}
