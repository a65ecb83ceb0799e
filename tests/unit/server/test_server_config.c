/* Config loading: defaults, expansion, merging of runtime accounts and local
 * passwords, and the problems found, on real files in a temp directory. */
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/util.h"
#include "server/accounts.h"
#include "server/config.h"
#include "testutil.h"

static char *dir;

static char *write_file(const char *name, const char *text, unsigned mode)
{
	char *path = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
	return path;
}

static bool has_msg(char **v, size_t n, const char *needle)
{
	for (size_t i = 0; i < n; i++)
		if (strstr(v[i], needle))
			return true;
	fprintf(stderr, "no message contains: %s\n", needle);
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, "  have: %s\n", v[i]);
	return false;
}

static void test_edit_distance(void)
{
	CHECK_EQ_INT(config_edit_distance("port", "port"), 0);
	CHECK_EQ_INT(config_edit_distance("prot", "port"), 2);
	CHECK_EQ_INT(config_edit_distance("hots", "host"), 2);
	CHECK_EQ_INT(config_edit_distance("usr", "user"), 1);
	CHECK_EQ_INT(config_edit_distance("", "abc"), 3);
	CHECK_EQ_INT(config_edit_distance("Port", "port"), 0);
}

static void test_account_names(void)
{
	CHECK(config_account_name_ok("home"));
	CHECK(config_account_name_ok("me@example.org"));
	CHECK(config_account_name_ok("a-b_c.d"));
	CHECK(!config_account_name_ok(""));
	CHECK(!config_account_name_ok(".hidden"));
	CHECK(!config_account_name_ok("../x"));
	CHECK(!config_account_name_ok("a b"));
	CHECK(!config_account_name_ok("a/b"));
}

static void test_defaults(void)
{
	char *text =
	    xasprintf("datadir = \"~/data\";\n"
		      "accounts = ( { name = \"a\"; remote = { host = \"h\"; user = \"u\"; "
		      "tls = \"starttls\"; folders = { include = [\"^INBOX$\"]; }; }; "
		      "maildir = { path = \"~/Mail/a\"; }; } );\n");
	char *path = write_file("defaults.conf", text, 0600);
	config_msgs_t msgs = CONFIG_MSGS_INIT;
	config_t *cfg = NULL;
	setenv("HOME", dir, 1);
	CHECK_EQ_INT(config_load(path, &cfg, &msgs), CONFIG_OK);
	CHECK_EQ_INT(msgs.n_errors, 0);
	if (!cfg)
		goto out;
	char *want = xasprintf("%s/data", dir);
	CHECK(strcmp(cfg->datadir, want) == 0);
	free(want);
	CHECK_EQ_INT(cfg->n_listen, 1);
	CHECK(strcmp(cfg->listen[0].address, "127.0.0.1") == 0);
	CHECK_EQ_INT(cfg->listen[0].port, 1143);
	CHECK_EQ_INT(cfg->listen[0].tls, CONFIG_TLS_NONE);
	CHECK_EQ_INT(cfg->maxsyncaccounts, 3);
	CHECK(!cfg->mbnames.enabled);
	CHECK_EQ_INT(cfg->n_accounts, 1);
	const config_account_t *a = config_find_account(cfg, "a");
	CHECK(a != NULL);
	if (a) {
		CHECK(a->autorefresh == 5.0);
		CHECK(a->max_deletion_ratio == 0.5);
		CHECK_EQ_INT(a->remote.port, 143);
		CHECK_EQ_INT(a->remote.tls, CONFIG_TLS_STARTTLS);
		CHECK_EQ_INT(a->remote.maxconnections, 3);
		CHECK(strcmp(a->maildir_sep, "/") == 0);
		CHECK(strncmp(a->maildir_path, dir, strlen(dir)) == 0);
		CHECK_EQ_INT(a->remote.n_include, 1);
		CHECK(regexec(&a->remote.include[0].re, "INBOX", 0, NULL, 0) == 0);
		CHECK(regexec(&a->remote.include[0].re, "INBOX/x", 0, NULL, 0) != 0);
		CHECK(strcmp(a->source, path) == 0);
		CHECK_EQ_INT(a->source_line, 2);
	}
	CHECK(config_find_account(cfg, "b") == NULL);
out:
	config_free(cfg);
	config_msgs_free(&msgs);
	free(path);
	free(text);
}

/* An account file written by accounts_write() merges; a clash is an error;
 * a local password overrides the config's hash. */
static void test_runtime_accounts(void)
{
	char *datadir = xasprintf("%s/rt", dir);
	char *text = xasprintf("datadir = \"%s\";\naccounts = ( { name = \"main\"; remote = { "
			       "host = \"h\"; user = \"u\"; }; } );\n",
			       datadir);
	char *path = write_file("rt.conf", text, 0600);
	char err[512];
	accounts_spec_t sp = {.name = "extra",
			      .host = "imap.example.org",
			      .port = 143,
			      .tls = "none",
			      .user = "me",
			      .password = "p\"w\\x"};
	CHECK_EQ_INT(accounts_write(datadir, &sp, err, sizeof(err)), ACCOUNTS_OK);
	/* written once only */
	CHECK_EQ_INT(accounts_write(datadir, &sp, err, sizeof(err)), ACCOUNTS_E_INVALID);
	CHECK_EQ_INT(accounts_set_local_password(datadir, "main", "loc", err, sizeof(err)),
		     ACCOUNTS_OK);

	config_msgs_t msgs = CONFIG_MSGS_INIT;
	config_t *cfg = NULL;
	CHECK_EQ_INT(config_load(path, &cfg, &msgs), CONFIG_OK);
	CHECK_EQ_INT(msgs.n_warnings, 0);
	if (cfg) {
		CHECK_EQ_INT(cfg->n_accounts, 2);
		const config_account_t *x = config_find_account(cfg, "extra");
		CHECK(x && strcmp(x->remote.password, "p\"w\\x") == 0);
		CHECK(x && x->remote.tls == CONFIG_TLS_NONE && x->remote.port == 143);
		CHECK(x && accounts_is_runtime(cfg, x));
		const config_account_t *m = config_find_account(cfg, "main");
		CHECK(m && !accounts_is_runtime(cfg, m));
		CHECK(m && m->local_password_hash != NULL);
		if (m && m->local_password_hash) {
			struct crypt_data cd;
			memset(&cd, 0, sizeof(cd));
			const char *h = crypt_r("loc", m->local_password_hash, &cd);
			CHECK(h && strcmp(h, m->local_password_hash) == 0);
			memset(&cd, 0, sizeof(cd));
			h = crypt_r("wrong", m->local_password_hash, &cd);
			CHECK(!h || strcmp(h, m->local_password_hash) != 0);
		}
	}
	config_free(cfg);
	cfg = NULL;
	config_msgs_free(&msgs);

	/* a CLI account with the name of a config account */
	accounts_spec_t clash = {.name = "main", .host = "h", .user = "u", .password = "x"};
	CHECK_EQ_INT(accounts_write(datadir, &clash, err, sizeof(err)), ACCOUNTS_OK);
	CHECK_EQ_INT(config_load(path, &cfg, &msgs), CONFIG_E_INVALID);
	CHECK(cfg == NULL);
	CHECK(has_msg(msgs.errors, msgs.n_errors, "account 'main' is already defined at"));
	config_msgs_free(&msgs);

	CHECK_EQ_INT(accounts_remove(datadir, "main", err, sizeof(err)), ACCOUNTS_OK);
	CHECK_EQ_INT(config_load(path, &cfg, &msgs), CONFIG_OK);
	if (cfg) {
		/* removing the CLI file also dropped the local password */
		const config_account_t *m = config_find_account(cfg, "main");
		CHECK(m && m->local_password_hash == NULL);
	}
	config_free(cfg);
	config_msgs_free(&msgs);

	char *d2 = NULL;
	CHECK_EQ_INT(config_read_datadir(path, &d2, err, sizeof(err)), CONFIG_OK);
	CHECK(d2 && strcmp(d2, datadir) == 0);
	free(d2);

	free(path);
	free(text);
	free(datadir);
}

static void test_bad_account_spec(void)
{
	char err[512];
	accounts_spec_t sp = {.name = "a/b", .host = "h", .user = "u", .password = "x"};
	CHECK_EQ_INT(accounts_write(dir, &sp, err, sizeof(err)), ACCOUNTS_E_INVALID);
	sp.name = "ok";
	sp.password_command = "y";
	CHECK_EQ_INT(accounts_write(dir, &sp, err, sizeof(err)), ACCOUNTS_E_INVALID);
	sp.password_command = NULL;
	sp.host = NULL;
	CHECK_EQ_INT(accounts_write(dir, &sp, err, sizeof(err)), ACCOUNTS_E_INVALID);
}

static void test_problems_collected(void)
{
	char *path = write_file(
	    "bad.conf",
	    "datadir = 5;\n"
	    "listen = ( { address = \"0.0.0.0\"; port = 70000; tls = \"implicit\"; } );\n"
	    "mbnames = { enabled = \"yes\"; };\n"
	    "accounts = ( { name = \"a\"; maildir = { sep = \":\"; }; remote = { host = \"h\"; "
	    "tunnel = \"t\"; user = \"u\"; maxconnections = 0; }; } );\n",
	    0600);
	config_msgs_t msgs = CONFIG_MSGS_INIT;
	config_t *cfg = NULL;
	CHECK_EQ_INT(config_load(path, &cfg, &msgs), CONFIG_E_INVALID);
	CHECK(has_msg(msgs.errors, msgs.n_errors, "bad.conf:1: option datadir: expected a string"));
	CHECK(has_msg(msgs.errors, msgs.n_errors, "option listen.[0].port: 70000 is out of range"));
	CHECK(has_msg(msgs.errors, msgs.n_errors, "needs tls_cert and tls_key"));
	CHECK(
	    has_msg(msgs.errors, msgs.n_errors, "option mbnames.enabled: expected true or false"));
	CHECK(has_msg(msgs.errors, msgs.n_errors, "option accounts.[0].maildir.sep: ':'"));
	CHECK(has_msg(msgs.errors, msgs.n_errors, "option accounts.[0].maildir: missing 'path'"));
	CHECK(has_msg(msgs.errors, msgs.n_errors, "set either host or tunnel, not both"));
	CHECK(has_msg(msgs.errors, msgs.n_errors, "option accounts.[0].remote.maxconnections: 0"));
	CHECK_EQ_INT(msgs.n_errors, 8);
	config_msgs_free(&msgs);
	free(path);
}

int main(void)
{
	dir = test_tmpdir("ib-test-config");
	test_edit_distance();
	test_account_names();
	test_defaults();
	test_runtime_accounts();
	test_bad_account_spec();
	test_problems_collected();
	test_rmtree(dir);
	free(dir);
	return test_done("test_server_config");
}
