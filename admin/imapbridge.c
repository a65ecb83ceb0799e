/*
 * imapbridge: the admin CLI. Turns a command line into one control socket
 * request (server/ctl.h), then prints the answer as a table or, with --json,
 * as the daemon's JSON. Exit status 0 on success, 1 on failure with the
 * reason on stderr (`sync` passes on the sync's own status).
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "admin/ctl_client.h"
#include "lib/buf.h"
#include "lib/util.h"
#include "server/config.h"
#include "server/ctl.h"
#include "server/json.h"

#define DEFAULT_CONFIG "/etc/imapbridge/imapbridge.conf"
#define EXIT_FAIL 1

static const char usage_text[] =
    "usage: imapbridge [-c FILE | -S SOCKET] [--json] COMMAND ...\n"
    "\n"
    "  account add NAME --host H [--port P] [--tls none|starttls|implicit]\n"
    "                   --user U (--password-stdin | --password-file F | --password-command CMD)\n"
    "                   [--maildir PATH]\n"
    "  account remove NAME [--purge]   stop syncing NAME; --purge also drops its local data\n"
    "  account list                    the accounts the daemon knows\n"
    "  passwd NAME                     set NAME's local IMAP password (read from stdin)\n"
    "  status [NAME]                   per account and folder: state, counts, last sync\n"
    "  sync [NAME]                     sync now and wait for the result\n"
    "  folder recover NAME FOLDER      release a folder held for safety\n"
    "\n"
    "  -c FILE     the daemon's config, to find its control socket\n"
    "              (default $IMAPBRIDGE_CONFIG or " DEFAULT_CONFIG ")\n"
    "  -S SOCKET   the control socket itself (<datadir>/control.sock)\n"
    "  --json      print the daemon's answer as JSON\n"
    "\n"
    "Nothing this program does deletes mail on a remote server.\n";

struct cli {
	const char *config;
	const char *socket;
	bool json;
	char *args[32]; /* words left after the global options */
	int n_args;
};

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	fputs("imapbridge: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("; see imapbridge --help\n", stderr);
	return EXIT_FAIL;
}

/* The config path the CLI works from: -c, $IMAPBRIDGE_CONFIG, the default. */
static const char *config_path(const struct cli *cli)
{
	const char *path = cli->config;
	if (!path)
		path = getenv("IMAPBRIDGE_CONFIG");
	if (!path || !*path)
		path = DEFAULT_CONFIG;
	return path;
}

/* Find the control socket: -S, else the datadir of the config. */
static char *find_socket(const struct cli *cli)
{
	if (cli->socket)
		return xstrdup(cli->socket);
	const char *path = config_path(cli);
	char err[1024];
	char *datadir = NULL, *sock = NULL;
	if (config_read_datadir(path, &datadir, err, sizeof(err)) != CONFIG_OK) {
		fprintf(stderr, "imapbridge: %s\n", err);
		fprintf(stderr,
			"imapbridge: cannot find the control socket through %s; fix it, name "
			"the daemon's config with -c FILE, or give the socket with -S PATH\n",
			path);
	} else {
		sock = xasprintf("%s/%s", datadir, CTL_SOCKET_NAME);
	}
	free(datadir);
	return sock;
}

/* Send request; on success *resp is the answer with "ok": true. */
static int call(const struct cli *cli, const char *request, json_t **resp)
{
	char err[1024];
	char *sock = find_socket(cli);
	*resp = NULL;
	if (!sock)
		return EXIT_FAIL;
	int rc = ctl_client_request(sock, request, resp, err, sizeof(err));
	free(sock);
	if (rc != CTL_CLIENT_OK) {
		fprintf(stderr, "imapbridge: %s\n", err);
		return EXIT_FAIL;
	}
	if (!json_get_bool(*resp, "ok", false)) {
		const char *e = json_get_str(*resp, "error");
		int status = (int)json_get_num(*resp, "status", EXIT_FAIL);
		fprintf(stderr, "imapbridge: %s\n", e ? e : "the daemon refused the request");
		json_free(*resp);
		*resp = NULL;
		return status > 0 ? status : EXIT_FAIL;
	}
	return 0;
}

/* Print a JSON value compactly (for --json). */
static void print_json(const json_t *j, buf_t *b)
{
	switch (json_type(j)) {
	case JSON_NULL:
		buf_puts(b, "null");
		break;
	case JSON_BOOL:
		buf_puts(b, json_bool(j, false) ? "true" : "false");
		break;
	case JSON_NUM:
		buf_printf(b, "%.15g", json_num(j, 0));
		break;
	case JSON_STR:
		json_put_str(b, json_str(j));
		break;
	case JSON_ARR:
	case JSON_OBJ: {
		bool obj = json_type(j) == JSON_OBJ;
		buf_puts(b, obj ? "{" : "[");
		for (size_t i = 0; i < json_len(j); i++) {
			const json_t *k = json_at(j, i);
			if (i)
				buf_puts(b, ",");
			if (obj) {
				json_put_str(b, json_key(k));
				buf_puts(b, ":");
			}
			print_json(k, b);
		}
		buf_puts(b, obj ? "}" : "]");
		break;
	}
	}
}

static void output_json(const json_t *j)
{
	buf_t b = BUF_INIT;
	print_json(j, &b);
	printf("%s\n", buf_cstr(&b));
	buf_free(&b);
}

/* A value of obj as text for a table cell ("-" when absent). */
static const char *cell(const json_t *obj, const char *key, char *tmp, size_t tmplen)
{
	const json_t *v = json_get(obj, key);
	switch (json_type(v)) {
	case JSON_STR:
		return *json_str(v) ? json_str(v) : "-";
	case JSON_NUM:
		snprintf(tmp, tmplen, "%g", json_num(v, 0));
		return tmp;
	case JSON_BOOL:
		return json_bool(v, false) ? "yes" : "no";
	default:
		return "-";
	}
}

/* Print rows (an array of objects) as a table with the given columns. */
static void print_table(const json_t *rows, const char *const *keys, const char *const *heads,
			size_t ncol)
{
	size_t width[16] = {0};
	char tmp[64];
	for (size_t c = 0; c < ncol; c++)
		width[c] = strlen(heads[c]);
	for (size_t r = 0; r < json_len(rows); r++)
		for (size_t c = 0; c < ncol; c++) {
			size_t w = strlen(cell(json_at(rows, r), keys[c], tmp, sizeof(tmp)));
			if (w > width[c])
				width[c] = w;
		}
	for (size_t c = 0; c < ncol; c++)
		printf("%-*s%s", (int)width[c], heads[c], c + 1 < ncol ? "  " : "\n");
	for (size_t r = 0; r < json_len(rows); r++)
		for (size_t c = 0; c < ncol; c++)
			printf("%-*s%s", (int)width[c],
			       cell(json_at(rows, r), keys[c], tmp, sizeof(tmp)),
			       c + 1 < ncol ? "  " : "\n");
}

/* Read one line from stdin (without its newline); NULL on EOF. With a
 * terminal, prompt with echo off. */
static char *read_secret(const char *prompt)
{
	struct termios old, noecho;
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
	char *line = NULL;
	size_t cap = 0;

	if (tty) {
		fprintf(stderr, "%s", prompt);
		noecho = old;
		noecho.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &noecho);
	}
	ssize_t n = getline(&line, &cap, stdin);
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	if (n < 0) {
		free(line);
		return NULL;
	}
	line[strcspn(line, "\r\n")] = '\0';
	return line;
}

static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* ----------------------------------------------------------- commands */

static int cmd_account_add(struct cli *cli, int argc, char **argv)
{
	const char *name = NULL, *host = NULL, *tls = NULL, *user = NULL, *pwfile = NULL,
		   *pwcmd = NULL, *maildir = NULL;
	bool pwstdin = false;
	long port = 0;
	int rc = EXIT_FAIL;
	char *password = NULL, *pwfile_abs = NULL, *maildir_abs = NULL;
	json_t *resp = NULL;
	buf_t b = BUF_INIT;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		const char **slot = NULL;
		if (strcmp(a, "--host") == 0)
			slot = &host;
		else if (strcmp(a, "--tls") == 0)
			slot = &tls;
		else if (strcmp(a, "--user") == 0)
			slot = &user;
		else if (strcmp(a, "--password-file") == 0)
			slot = &pwfile;
		else if (strcmp(a, "--password-command") == 0)
			slot = &pwcmd;
		else if (strcmp(a, "--maildir") == 0)
			slot = &maildir;
		else if (strcmp(a, "--password-stdin") == 0) {
			pwstdin = true;
			continue;
		} else if (strcmp(a, "--port") == 0) {
			char *end;
			if (i + 1 >= argc)
				return usage_error("--port needs a number");
			port = strtol(argv[++i], &end, 10);
			if (*end || port < 1 || port > 65535)
				return usage_error("--port %s: give a port number from 1 to 65535",
						   argv[i]);
			continue;
		} else if (a[0] == '-') {
			return usage_error("account add: unknown option %s", a);
		} else if (!name) {
			name = a;
			continue;
		} else {
			return usage_error("account add: unexpected argument '%s'", a);
		}
		if (i + 1 >= argc)
			return usage_error("%s needs a value", a);
		*slot = argv[++i];
	}
	if (!name)
		return usage_error("account add needs a NAME");
	if (!host || !user)
		return usage_error("account add needs --host and --user");
	if ((pwstdin ? 1 : 0) + (pwfile ? 1 : 0) + (pwcmd ? 1 : 0) != 1)
		return usage_error("account add needs exactly one of --password-stdin, "
				   "--password-file F and --password-command CMD");
	if (tls && strcmp(tls, "none") != 0 && strcmp(tls, "starttls") != 0 &&
	    strcmp(tls, "implicit") != 0)
		return usage_error("--tls takes none, starttls or implicit");
	if (pwstdin) {
		password = read_secret("Remote password: ");
		if (!password || !*password) {
			fprintf(stderr,
				"imapbridge: no password on stdin; pipe it in, e.g. "
				"`pass show mail | imapbridge account add ... --password-stdin`\n");
			goto out;
		}
	}
	if (pwfile) {
		/* The daemon resolves paths itself, maybe from another directory. */
		pwfile_abs = realpath(pwfile, NULL);
		if (!pwfile_abs) {
			fprintf(stderr, "imapbridge: --password-file %s: %s\n", pwfile,
				strerror(errno));
			goto out;
		}
	}
	if (maildir) {
		char *exp = ib_expand_home(maildir);
		if (exp[0] == '/') {
			maildir_abs = exp;
		} else {
			char cwd[PATH_MAX];
			maildir_abs = xasprintf("%s/%s", getcwd(cwd, sizeof(cwd)) ? cwd : ".", exp);
			free(exp);
		}
	}

	buf_puts(&b, "{\"cmd\":\"account.add\"");
	json_put_kv(&b, false, "name", name);
	json_put_kv(&b, false, "host", host);
	json_put_kv(&b, false, "user", user);
	if (port)
		buf_printf(&b, ",\"port\":%ld", port);
	if (tls)
		json_put_kv(&b, false, "tls", tls);
	if (password)
		json_put_kv(&b, false, "password", password);
	if (pwfile_abs)
		json_put_kv(&b, false, "password_file", pwfile_abs);
	if (pwcmd)
		json_put_kv(&b, false, "password_command", pwcmd);
	if (maildir_abs)
		json_put_kv(&b, false, "maildir", maildir_abs);
	buf_puts(&b, "}");
	rc = call(cli, buf_cstr(&b), &resp);
	if (rc == 0) {
		if (cli->json)
			output_json(resp);
		else
			printf("account %s added; it syncs from now on\n", name);
	}
out:
	if (b.data)
		explicit_bzero(b.data, b.cap);
	buf_free(&b);
	free_secret(password);
	free(pwfile_abs);
	free(maildir_abs);
	json_free(resp);
	return rc;
}

static int cmd_account_remove(struct cli *cli, int argc, char **argv)
{
	const char *name = NULL;
	bool purge = false;
	json_t *resp = NULL;
	buf_t b = BUF_INIT;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--purge") == 0)
			purge = true;
		else if (argv[i][0] == '-')
			return usage_error("account remove: unknown option %s", argv[i]);
		else if (!name)
			name = argv[i];
		else
			return usage_error("account remove: unexpected argument '%s'", argv[i]);
	}
	if (!name)
		return usage_error("account remove needs a NAME");
	buf_puts(&b, "{\"cmd\":\"account.remove\"");
	json_put_kv(&b, false, "name", name);
	buf_printf(&b, ",\"purge\":%s}", purge ? "true" : "false");
	int rc = call(cli, buf_cstr(&b), &resp);
	if (rc == 0) {
		const char *note = json_get_str(resp, "note");
		if (cli->json)
			output_json(resp);
		else
			printf("account %s removed%s; mail on its server is untouched\n", name,
			       purge ? " and its local data dropped"
				     : ", its local data kept (--purge drops it)");
		if (note)
			fprintf(stderr, "imapbridge: %s\n", note);
	}
	buf_free(&b);
	json_free(resp);
	return rc;
}

static int cmd_account_list(struct cli *cli, int argc, char **argv)
{
	static const char *const keys[] = {"name", "host",    "port",  "tls",
					   "user", "maildir", "source"};
	static const char *const heads[] = {"NAME", "HOST",    "PORT",	"TLS",
					    "USER", "MAILDIR", "SOURCE"};
	json_t *resp = NULL;
	if (argc > 0)
		return usage_error("account list: unexpected argument '%s'", argv[0]);
	int rc = call(cli, "{\"cmd\":\"account.list\"}", &resp);
	if (rc == 0) {
		const json_t *accts = json_get(resp, "accounts");
		if (cli->json)
			output_json(accts);
		else if (json_len(accts) == 0)
			printf("no accounts; add one with `imapbridge account add NAME --host H "
			       "--user U --password-stdin`\n");
		else
			print_table(accts, keys, heads, IB_ARRAY_LEN(keys));
	}
	json_free(resp);
	return rc;
}

static int cmd_passwd(struct cli *cli, int argc, char **argv)
{
	json_t *resp = NULL;
	buf_t b = BUF_INIT;
	if (argc != 1 || argv[0][0] == '-')
		return usage_error("passwd needs exactly one account NAME");
	char *pw = read_secret("New local password: ");
	if (!pw || !*pw) {
		free_secret(pw);
		fprintf(stderr, "imapbridge: no password on stdin; type or pipe one line\n");
		return EXIT_FAIL;
	}
	if (isatty(STDIN_FILENO)) {
		char *again = read_secret("Again: ");
		bool same = again && strcmp(again, pw) == 0;
		free_secret(again);
		if (!same) {
			free_secret(pw);
			fprintf(stderr, "imapbridge: the passwords differ; nothing changed\n");
			return EXIT_FAIL;
		}
	}
	buf_puts(&b, "{\"cmd\":\"passwd\"");
	json_put_kv(&b, false, "name", argv[0]);
	json_put_kv(&b, false, "password", pw);
	buf_puts(&b, "}");
	int rc = call(cli, buf_cstr(&b), &resp);
	if (rc == 0) {
		if (cli->json)
			output_json(resp);
		else
			printf("local password of %s set\n", argv[0]);
	}
	explicit_bzero(b.data, b.cap);
	buf_free(&b);
	free_secret(pw);
	json_free(resp);
	return rc;
}

static int cmd_status(struct cli *cli, int argc, char **argv)
{
	/* Members the sync engine reports (sync/sched.c sched_status_json). */
	static const char *const keys[] = {"name", "state", "last_status", "last_error"};
	static const char *const heads[] = {"ACCOUNT", "STATE", "LAST EXIT", "LAST ERROR"};
	static const char *const fkeys[] = {"name", "state", "messages", "unseen", "held_reason"};
	static const char *const fheads[] = {"FOLDER", "STATE", "MESSAGES", "UNSEEN",
					     "HELD BECAUSE"};
	json_t *resp = NULL;
	buf_t b = BUF_INIT;
	if (argc > 1 || (argc == 1 && argv[0][0] == '-'))
		return usage_error("status takes at most one account NAME");
	buf_puts(&b, "{\"cmd\":\"status\"");
	if (argc == 1)
		json_put_kv(&b, false, "name", argv[0]);
	buf_puts(&b, "}");
	int rc = call(cli, buf_cstr(&b), &resp);
	buf_free(&b);
	if (rc != 0)
		return rc;
	if (cli->json) {
		output_json(resp);
		json_free(resp);
		return 0;
	}
	const json_t *dm = json_get(resp, "daemon");
	const json_t *accts = json_get(resp, "accounts");
	printf("imapbridged %s, pid %.0f, up %.0fs, data in %s%s\n",
	       json_get_str(dm, "version") ? json_get_str(dm, "version") : "?",
	       json_get_num(dm, "pid", 0), json_get_num(dm, "uptime", 0),
	       json_get_str(dm, "datadir") ? json_get_str(dm, "datadir") : "?",
	       json_get_bool(dm, "sync_engine", false) ? "" : " (no sync engine in this build)");
	if (json_len(accts) == 0) {
		printf("no accounts\n");
	} else {
		print_table(accts, keys, heads, IB_ARRAY_LEN(keys));
		for (size_t i = 0; i < json_len(accts); i++) {
			const json_t *folders = json_get(json_at(accts, i), "folders");
			if (json_len(folders) == 0)
				continue;
			printf("\n%s:\n", json_get_str(json_at(accts, i), "name"));
			print_table(folders, fkeys, fheads, IB_ARRAY_LEN(fkeys));
		}
	}
	json_free(resp);
	return 0;
}

static int cmd_sync(struct cli *cli, int argc, char **argv)
{
	json_t *resp = NULL;
	buf_t b = BUF_INIT;
	if (argc > 1 || (argc == 1 && argv[0][0] == '-'))
		return usage_error("sync takes at most one account NAME");
	buf_puts(&b, "{\"cmd\":\"sync\"");
	if (argc == 1)
		json_put_kv(&b, false, "name", argv[0]);
	buf_puts(&b, "}");
	int rc = call(cli, buf_cstr(&b), &resp);
	buf_free(&b);
	if (rc == 0) {
		if (cli->json)
			output_json(resp);
		else {
			const char *msg = json_get_str(resp, "message");
			printf("%s\n", msg && *msg ? msg : "sync done");
		}
	}
	json_free(resp);
	return rc;
}

/* True when nothing listens on the daemon's control socket (no daemon). */
static bool daemon_absent(const struct cli *cli)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char *sock = find_socket(cli);
	bool absent = false;

	if (!sock || strlen(sock) >= sizeof(sa.sun_path)) {
		free(sock);
		return false;
	}
	strcpy(sa.sun_path, sock);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		absent = errno == ENOENT || errno == ECONNREFUSED;
	if (fd >= 0)
		close(fd);
	free(sock);
	return absent;
}

/*
 * Recovery works whether or not the daemon runs: without one, run
 * `imapbridged --recover` on the same config (the daemon's own lock keeps
 * a daemon that starts meanwhile from racing it). imapbridged is looked for
 * next to this program first, then on $PATH.
 */
static int recover_offline(const struct cli *cli, char *name, char *folder)
{
	char self[PATH_MAX], prog[PATH_MAX + 32];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	const char *cfg = config_path(cli);

	prog[0] = '\0';
	if (n > 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			snprintf(prog, sizeof(prog), "%s/imapbridged", self);
			if (access(prog, X_OK) != 0)
				snprintf(prog, sizeof(prog), "%s/../sbin/imapbridged", self);
			if (access(prog, X_OK) != 0)
				prog[0] = '\0';
		}
	}
	char *args[] = {prog[0] ? prog : "imapbridged", "--recover", name, folder, "-c",
			(char *)cfg, NULL};
	fprintf(stderr, "imapbridge: the daemon is not running; recovering with %s\n", args[0]);
	fflush(stderr);
	execvp(args[0], args);
	fprintf(stderr,
		"imapbridge: cannot run imapbridged (%s); run `imapbridged --recover %s %s -c %s` "
		"yourself\n",
		strerror(errno), name, folder, cfg);
	return EXIT_FAIL;
}

static int cmd_folder_recover(struct cli *cli, int argc, char **argv)
{
	json_t *resp = NULL;
	buf_t b = BUF_INIT;
	if (argc != 2)
		return usage_error("folder recover needs an account NAME and a FOLDER");
	if (!cli->socket && daemon_absent(cli))
		return recover_offline(cli, argv[0], argv[1]);
	buf_puts(&b, "{\"cmd\":\"folder.recover\"");
	json_put_kv(&b, false, "name", argv[0]);
	json_put_kv(&b, false, "folder", argv[1]);
	buf_puts(&b, "}");
	int rc = call(cli, buf_cstr(&b), &resp);
	buf_free(&b);
	if (rc == 0) {
		const char *msg = json_get_str(resp, "message");
		if (cli->json)
			output_json(resp);
		else
			printf("%s\n", msg && *msg ? msg : "folder released");
	}
	json_free(resp);
	return rc;
}

int main(int argc, char **argv)
{
	struct cli cli = {0};

	/* Global options may come anywhere; the rest are the command's words. */
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			fputs(usage_text, stdout);
			return 0;
		} else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
			printf("imapbridge %s\n", IMAPBRIDGE_VERSION);
			return 0;
		} else if (strcmp(a, "--json") == 0) {
			cli.json = true;
		} else if (strcmp(a, "-c") == 0 || strcmp(a, "-S") == 0) {
			if (i + 1 >= argc)
				return usage_error("%s needs a value", a);
			if (a[1] == 'c')
				cli.config = argv[++i];
			else
				cli.socket = argv[++i];
		} else {
			if (cli.n_args >= (int)IB_ARRAY_LEN(cli.args))
				return usage_error("too many arguments");
			cli.args[cli.n_args++] = argv[i];
		}
	}
	if (cli.n_args == 0)
		return usage_error("no command given");

	char **w = cli.args;
	int n = cli.n_args;
	if (strcmp(w[0], "account") == 0 && n >= 2) {
		if (strcmp(w[1], "add") == 0)
			return cmd_account_add(&cli, n - 2, w + 2);
		if (strcmp(w[1], "remove") == 0)
			return cmd_account_remove(&cli, n - 2, w + 2);
		if (strcmp(w[1], "list") == 0)
			return cmd_account_list(&cli, n - 2, w + 2);
		return usage_error("account %s: use add, remove or list", w[1]);
	}
	if (strcmp(w[0], "account") == 0)
		return usage_error("account needs add, remove or list");
	if (strcmp(w[0], "passwd") == 0)
		return cmd_passwd(&cli, n - 1, w + 1);
	if (strcmp(w[0], "status") == 0)
		return cmd_status(&cli, n - 1, w + 1);
	if (strcmp(w[0], "sync") == 0)
		return cmd_sync(&cli, n - 1, w + 1);
	if (strcmp(w[0], "folder") == 0 && n >= 2 && strcmp(w[1], "recover") == 0)
		return cmd_folder_recover(&cli, n - 2, w + 2);
	return usage_error("unknown command '%s'", w[0]);
}
