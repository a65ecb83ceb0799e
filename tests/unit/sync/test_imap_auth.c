/* SASL pieces, password sources and fingerprint formatting of the IMAP client. */
#include <ev.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "sync/imap_auth.h"
#include "sync/imap_conn.h"
#include "sync/password.h"
#include "testutil.h"

static void test_cram_md5(void)
{
	/* RFC 2195, section 2. */
	const char *chal = "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+";
	char *r = imap_auth_cram_md5("tim", "tanstaaftanstaaf", chal);
	CHECK(r != NULL);
	CHECK(r && strcmp(r, "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw") == 0);
	size_t n;
	char *dec = r ? imap_auth_b64_decode(r, &n) : NULL;
	CHECK(dec && strcmp(dec, "tim b913a602c7eda7a495b4e6e7334d3890") == 0);
	free(dec);
	imap_auth_wipe(r);
	CHECK(imap_auth_cram_md5("tim", "x", "not base64!") == NULL);
	CHECK(imap_auth_cram_md5("tim", "x", "") == NULL);
}

static void test_plain(void)
{
	char *r = imap_auth_plain("tim", "tanstaaf");
	/* base64("\0tim\0tanstaaf") */
	CHECK(r && strcmp(r, "AHRpbQB0YW5zdGFhZg==") == 0);
	size_t n = 0;
	char *dec = imap_auth_b64_decode(r, &n);
	CHECK_EQ_INT(n, 13);
	CHECK(dec && memcmp(dec, "\0tim\0tanstaaf", 13) == 0);
	free(dec);
	imap_auth_wipe(r);
	char *e = imap_auth_b64_encode("", 0);
	CHECK(strcmp(e, "") == 0);
	free(e);
	e = imap_auth_b64_encode("ab", 2);
	CHECK(strcmp(e, "YWI=") == 0);
	free(e);
}

static void test_choose(void)
{
	config_remote_t r = {0};
	imap_auth_offer_t all = {.plain = true, .login_mech = true, .cram_md5 = true};
	imap_auth_offer_t plain_only = {.plain = true};
	imap_auth_offer_t nothing = {.logindisabled = true};
	imap_auth_offer_t bare = {0};
	enum config_auth m;

	CHECK_EQ_INT(imap_auth_choose(&r, &all, &m), 0);
	CHECK_EQ_INT(m, CONFIG_AUTH_CRAM_MD5);
	CHECK_EQ_INT(imap_auth_choose(&r, &plain_only, &m), 0);
	CHECK_EQ_INT(m, CONFIG_AUTH_PLAIN);
	CHECK_EQ_INT(imap_auth_choose(&r, &bare, &m), 0);
	CHECK_EQ_INT(m, CONFIG_AUTH_LOGIN);
	CHECK_EQ_INT(imap_auth_choose(&r, &nothing, &m), IMAP_AUTH_ERR_LOGINDISABLED);
	/* Inside TLS or to a loopback address, PLAIN with SASL-IR first (one
	 * round trip); in the clear, or without SASL-IR, CRAM-MD5 still. */
	imap_auth_offer_t all_tls = {.plain = true, .cram_md5 = true, .sasl_ir = true,
				     .private_path = true};
	CHECK_EQ_INT(imap_auth_choose(&r, &all_tls, &m), 0);
	CHECK_EQ_INT(m, CONFIG_AUTH_PLAIN);
	all_tls.sasl_ir = false;
	CHECK_EQ_INT(imap_auth_choose(&r, &all_tls, &m), 0);
	CHECK_EQ_INT(m, CONFIG_AUTH_CRAM_MD5);
	imap_auth_offer_t all_clear = {.plain = true, .cram_md5 = true, .sasl_ir = true};
	CHECK_EQ_INT(imap_auth_choose(&r, &all_clear, &m), 0);
	CHECK_EQ_INT(m, CONFIG_AUTH_CRAM_MD5);
	imap_auth_offer_t cram_tls = {.cram_md5 = true, .sasl_ir = true, .private_path = true};
	CHECK_EQ_INT(imap_auth_choose(&r, &cram_tls, &m), 0);
	CHECK_EQ_INT(m, CONFIG_AUTH_CRAM_MD5);

	r.auth[0] = CONFIG_AUTH_LOGIN;
	r.auth[1] = CONFIG_AUTH_PLAIN;
	r.n_auth = 2;
	CHECK_EQ_INT(imap_auth_choose(&r, &all, &m), 0);
	CHECK_EQ_INT(m, CONFIG_AUTH_LOGIN);
	imap_auth_offer_t plain_nologin = {.plain = true, .logindisabled = true};
	CHECK_EQ_INT(imap_auth_choose(&r, &plain_nologin, &m), 0);
	CHECK_EQ_INT(m, CONFIG_AUTH_PLAIN);
	r.auth[0] = CONFIG_AUTH_CRAM_MD5;
	r.n_auth = 1;
	CHECK_EQ_INT(imap_auth_choose(&r, &plain_only, &m), IMAP_AUTH_ERR_NONE_USABLE);
	/* An explicit list wins, in TLS too. */
	all_tls.sasl_ir = true;
	CHECK_EQ_INT(imap_auth_choose(&r, &all_tls, &m), 0);
	CHECK_EQ_INT(m, CONFIG_AUTH_CRAM_MD5);
}

static void test_fingerprint(void)
{
	unsigned char md[32], back[32];
	char s[IMAP_FP_STRLEN];
	for (int i = 0; i < 32; i++)
		md[i] = (unsigned char)(i * 7 + 0xa0);
	imap_fingerprint_format(md, s);
	CHECK_EQ_INT(strlen(s), IMAP_FP_STRLEN - 1);
	CHECK(strncmp(s, "sha256:A0:A7:AE:B5:", 19) == 0);
	CHECK_EQ_INT(imap_fingerprint_parse(s, back), 0);
	CHECK(memcmp(md, back, 32) == 0);
	/* Case and colons do not matter, the prefix is optional. */
	char lower[IMAP_FP_STRLEN], bare[80];
	size_t j = 0;
	for (size_t i = 0; s[i]; i++)
		lower[i] = (char)(s[i] >= 'A' && s[i] <= 'F' ? s[i] + 32 : s[i]);
	lower[IMAP_FP_STRLEN - 1] = '\0';
	memcpy(lower, "SHA256:", 7);
	memset(back, 0, 32);
	CHECK_EQ_INT(imap_fingerprint_parse(lower, back), 0);
	CHECK(memcmp(md, back, 32) == 0);
	for (size_t i = 7; s[i]; i++)
		if (s[i] != ':')
			bare[j++] = s[i];
	bare[j] = '\0';
	CHECK_EQ_INT(imap_fingerprint_parse(bare, back), 0);
	CHECK(memcmp(md, back, 32) == 0);
	CHECK_EQ_INT(imap_fingerprint_parse("sha256:AB:CD", back), -1);
	CHECK_EQ_INT(imap_fingerprint_parse("sha256:A:BC", back), -1);
	bare[5] = 'g';
	CHECK_EQ_INT(imap_fingerprint_parse(bare, back), -1);
}

static void test_password(void)
{
	char *dir = test_tmpdir("ib-pw");
	char *file = xasprintf("%s/pw", dir);
	config_remote_t r = {0};
	char *pw = NULL, *err = NULL;

	r.password = "inline";
	CHECK_EQ_INT(password_get(&r, &pw, &err), 0);
	CHECK(pw && strcmp(pw, "inline") == 0);
	password_free(pw);

	r.password = NULL;
	CHECK_EQ_INT(password_get(&r, &pw, &err), PASSWORD_ERR_NONE);
	CHECK(err && strstr(err, "password_command"));
	free(err);

	FILE *f = fopen(file, "w");
	fputs("  s3cret pass \r\nsecond line\n", f);
	fclose(f);
	r.password_file = file;
	CHECK_EQ_INT(password_get(&r, &pw, &err), 0);
	CHECK(pw && strcmp(pw, "s3cret pass") == 0);
	password_free(pw);

	f = fopen(file, "w");
	fclose(f);
	CHECK_EQ_INT(password_get(&r, &pw, &err), PASSWORD_ERR_FILE);
	CHECK(err && strstr(err, "empty"));
	free(err);
	r.password_file = "/nonexistent/pw";
	CHECK_EQ_INT(password_get(&r, &pw, &err), PASSWORD_ERR_FILE);
	CHECK(err && strstr(err, "/nonexistent/pw"));
	free(err);

	r.password_file = NULL;
	r.password_command = "printf 'from-cmd\\n'";
	CHECK_EQ_INT(password_get(&r, &pw, &err), 0);
	CHECK(pw && strcmp(pw, "from-cmd") == 0);
	password_free(pw);

	r.password_command = "echo vault locked >&2; exit 3";
	CHECK_EQ_INT(password_get(&r, &pw, &err), PASSWORD_ERR_COMMAND);
	CHECK(err && strstr(err, "status 3") && strstr(err, "vault locked"));
	free(err);

	r.password_command = "echo nothing here >&2; true";
	CHECK_EQ_INT(password_get(&r, &pw, &err), PASSWORD_ERR_COMMAND);
	CHECK(err && strstr(err, "printed nothing") && strstr(err, "nothing here"));
	free(err);

	test_rmtree(dir);
	free(file);
	free(dir);
}

struct async_res {
	bool called;
	int rc;
	char pw[64];
	char err[256];
};

static void async_cb(int rc, char *pw, const char *errmsg, void *arg)
{
	struct async_res *r = arg;
	r->called = true;
	r->rc = rc;
	snprintf(r->pw, sizeof(r->pw), "%s", pw ? pw : "");
	snprintf(r->err, sizeof(r->err), "%s", errmsg ? errmsg : "");
	password_free(pw);
}

/* Run one password_command through the loop and return what came back. */
static struct async_res run_async(struct ev_loop *loop, const char *cmd)
{
	config_remote_t r = {0};
	struct async_res res = {0};
	r.password_command = (char *)cmd;
	password_req_t *q = password_get_async(loop, &r, async_cb, &res);
	CHECK(q != NULL);
	for (int i = 0; i < 2000 && !res.called; i++)
		ev_run(loop, EVRUN_ONCE);
	return res;
}

static void test_password_async(void)
{
	/* The default loop reaps children itself; a private one does not.
	 * Both must report the command's exit status. */
	struct ev_loop *loops[2] = {ev_loop_new(EVFLAG_AUTO), ev_default_loop(0)};
	for (int i = 0; i < 2; i++) {
		struct async_res r = run_async(loops[i], "sleep 0.05; echo async-pw");
		CHECK(r.called);
		CHECK_EQ_INT(r.rc, 0);
		CHECK(strcmp(r.pw, "async-pw") == 0);
		r = run_async(loops[i], "echo locked >&2; exit 4");
		CHECK(r.called);
		CHECK_EQ_INT(r.rc, PASSWORD_ERR_COMMAND);
		CHECK(strstr(r.err, "status 4: locked") != NULL);
	}
	/* Inline passwords answer at once. */
	config_remote_t r = {0};
	struct async_res res = {0};
	r.password = "inline";
	CHECK(password_get_async(loops[0], &r, async_cb, &res) == NULL);
	CHECK(res.called && strcmp(res.pw, "inline") == 0);
	/* A cancelled request never calls back. */
	r.password = NULL;
	r.password_command = "sleep 5";
	memset(&res, 0, sizeof(res));
	password_req_t *q = password_get_async(loops[0], &r, async_cb, &res);
	CHECK(q != NULL);
	password_cancel(q);
	ev_run(loops[0], EVRUN_NOWAIT);
	CHECK(!res.called);
	ev_loop_destroy(loops[0]);
}

int main(void)
{
	test_cram_md5();
	test_plain();
	test_choose();
	test_fingerprint();
	test_password();
	test_password_async();
	return test_done("test_imap_auth");
}
