/*
 * imapbridged: command line, config check, then the daemon (daemon.h).
 * Exit statuses are INTERFACE.md's: 0, 1, 2, 64 bad usage, 78 bad config.
 */
#include <ev.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "server/config.h"
#include "server/daemon.h"
#include "sync/probe.h"
#include "sync/sched.h"

#define DEFAULT_CONFIG "/etc/imapbridge/imapbridge.conf"

static const char usage_text[] =
    "usage: imapbridged [-c FILE] [-o] [-a A,B] [-1] [-d TYPES] [-u UI] [-s]\n"
    "       imapbridged --check [-c FILE]\n"
    "       imapbridged --probe [-c FILE] [-a A,B]\n"
    "       imapbridged --recover ACCOUNT FOLDER [-c FILE]\n"
    "\n"
    "Keeps remote IMAP accounts in sync with a local store and serves it to mail\n"
    "readers as a Maildir tree (the local IMAP listener is not built yet).\n"
    "Runs in the foreground.\n"
    "\n"
    "  -c FILE     config file (default $IMAPBRIDGE_CONFIG or " DEFAULT_CONFIG ")\n"
    "  -o          sync the selected accounts once and exit\n"
    "  -a A,B      only these accounts\n"
    "  -1          one connection per account, one account at a time\n"
    "  -d TYPES    debug traces: imap,maildir,store,thread,all (passwords redacted)\n"
    "  -u UI       basic, quiet, tty or blinkenlights\n"
    "  -s          log to syslog instead of stderr\n"
    "  --check     validate the config, print every problem, exit 0 or 78\n"
    "  --probe     log in to each account's server, list its folders, exit\n"
    "  --recover ACCOUNT FOLDER\n"
    "              release a folder held for safety, re-pairing by content\n"
    "              (the daemon must not be running; else use imapbridge(1))\n"
    "  -V          print the version\n"
    "  -h, --help  this help\n"
    "\n"
    "Signals: HUP reloads the config, USR1 syncs now, TERM/INT stop.\n"
    "Manage accounts with imapbridge(1); the config is described in imapbridge.conf(5).\n";

enum { OPT_CHECK = 256, OPT_PROBE, OPT_RECOVER };

static int bad_usage(const char *what)
{
	fprintf(stderr, "imapbridged: %s; see imapbridged --help\n", what);
	return DAEMON_EXIT_USAGE;
}

static void print_msgs(const config_msgs_t *msgs)
{
	for (size_t i = 0; i < msgs->n_errors; i++)
		fprintf(stderr, "%s\n", msgs->errors[i]);
	for (size_t i = 0; i < msgs->n_warnings; i++)
		fprintf(stderr, "%s (warning)\n", msgs->warnings[i]);
}

/* Whether every name in the comma-separated list only is an account of cfg. */
static bool check_only(const config_t *cfg, const char *only)
{
	bool ok = true;
	char *copy = xstrdup(only), *save = NULL;
	for (char *n = strtok_r(copy, ",", &save); n; n = strtok_r(NULL, ",", &save)) {
		if (!config_find_account(cfg, n)) {
			fprintf(stderr,
				"imapbridged: -a %s: no account named '%s' in %s; "
				"see `imapbridge account list`\n",
				only, n, cfg->path);
			ok = false;
		}
	}
	free(copy);
	return ok;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"check", no_argument, NULL, OPT_CHECK},
	    {"probe", no_argument, NULL, OPT_PROBE},
	    {"recover", required_argument, NULL, OPT_RECOVER},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	const char *config_path = getenv("IMAPBRIDGE_CONFIG");
	daemon_opts_t opts = {0};
	bool check = false, probe = false, use_syslog = false;
	const char *recover_account = NULL, *recover_folder = NULL;
	enum log_ui ui = isatty(STDERR_FILENO) ? LOG_UI_TTY : LOG_UI_BASIC;
	unsigned cats = 0;
	int c, status;

	if (!config_path || !*config_path)
		config_path = DEFAULT_CONFIG;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:oa:1d:u:sVh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config_path = optarg;
			break;
		case 'o':
			opts.once = true;
			break;
		case 'a':
			opts.only = optarg;
			break;
		case '1':
			opts.one_at_a_time = true;
			break;
		case 'd': {
			const char *bad = NULL;
			if (log_parse_cats(optarg, &cats, &bad) < 0) {
				char what[128];
				snprintf(what, sizeof(what),
					 "-d: unknown trace type '%s' "
					 "(use imap, maildir, store, thread or all)",
					 bad);
				return bad_usage(what);
			}
			break;
		}
		case 'u':
			if (strcmp(optarg, "basic") == 0)
				ui = LOG_UI_BASIC;
			else if (strcmp(optarg, "quiet") == 0)
				ui = LOG_UI_QUIET;
			else if (strcmp(optarg, "tty") == 0)
				ui = LOG_UI_TTY;
			else if (strcmp(optarg, "blinkenlights") == 0) {
				/* No curses view yet: the tty output is the closest thing. */
				fprintf(stderr,
					"imapbridged: -u blinkenlights is not available in this "
					"build; using -u tty\n");
				ui = LOG_UI_TTY;
			} else
				return bad_usage("-u takes basic, quiet, tty or blinkenlights");
			break;
		case 's':
			use_syslog = true;
			break;
		case OPT_CHECK:
			check = true;
			break;
		case OPT_PROBE:
			probe = true;
			break;
		case OPT_RECOVER:
			recover_account = optarg;
			break;
		case 'V':
			printf("imapbridged %s\n", IMAPBRIDGE_VERSION);
			return 0;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case ':': {
			char what[64];
			snprintf(what, sizeof(what), "option -%c needs a value", optopt);
			return bad_usage(what);
		}
		default: {
			char what[128];
			if (optopt)
				snprintf(what, sizeof(what), "unknown option -%c", optopt);
			else
				snprintf(what, sizeof(what), "unknown option %s", argv[optind - 1]);
			return bad_usage(what);
		}
		}
	}
	if (recover_account) {
		if (optind >= argc)
			return bad_usage("--recover needs an ACCOUNT and a FOLDER");
		recover_folder = argv[optind++];
		opts.once = true;
	}
	if (optind < argc) {
		char what[128];
		snprintf(what, sizeof(what), "unexpected argument '%s'", argv[optind]);
		return bad_usage(what);
	}
	if ((check ? 1 : 0) + (probe ? 1 : 0) + (opts.once ? 1 : 0) > 1)
		return bad_usage("use only one of --check, --probe and -o");

	log_setup("imapbridged", ui, use_syslog);
	log_set_cats(cats);

	config_msgs_t msgs = CONFIG_MSGS_INIT;
	config_t *cfg = NULL;
	int rc = config_load(config_path, &cfg, &msgs);
	if (check) {
		print_msgs(&msgs);
		if (rc == CONFIG_OK)
			printf("%s: OK (%zu account%s)\n", config_path, cfg->n_accounts,
			       cfg->n_accounts == 1 ? "" : "s");
		else if (rc == CONFIG_E_INVALID)
			fprintf(stderr,
				"%s: %zu problem%s; fix %s and run imapbridged --check again\n",
				config_path, msgs.n_errors, msgs.n_errors == 1 ? "" : "s",
				msgs.n_errors == 1 ? "it" : "them");
		config_msgs_free(&msgs);
		config_free(cfg);
		return rc == CONFIG_OK ? 0 : CONFIG_EXIT_INVALID;
	}
	if (rc != CONFIG_OK) {
		for (size_t i = 0; i < msgs.n_errors; i++)
			log_err("%s", msgs.errors[i]);
		if (rc == CONFIG_E_INVALID)
			log_err("%s: %zu problem%s, not starting; run imapbridged --check -c %s",
				config_path, msgs.n_errors, msgs.n_errors == 1 ? "" : "s",
				config_path);
		config_msgs_free(&msgs);
		return CONFIG_EXIT_INVALID;
	}
	for (size_t i = 0; i < msgs.n_warnings; i++)
		log_warn("%s", msgs.warnings[i]);
	config_msgs_free(&msgs);
	if (opts.only && !check_only(cfg, opts.only)) {
		config_free(cfg);
		return DAEMON_EXIT_USAGE;
	}

	struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
	if (!loop) {
		fprintf(stderr, "imapbridged: cannot initialise the event loop (libev)\n");
		config_free(cfg);
		return DAEMON_EXIT_ERRORS;
	}
	if (probe) {
		status = sync_probe(loop, cfg, opts.only);
		config_free(cfg);
		return status;
	}

	opts.config_path = config_path;
	daemon_t *d = daemon_new(loop, cfg, &opts);
	rc = daemon_start(d);
	if (rc != DAEMON_OK) {
		daemon_free(d);
		return rc == DAEMON_E_CONFIG ? CONFIG_EXIT_INVALID : DAEMON_EXIT_ERRORS;
	}
	/*
	 * The IMAP listener attaches here once it exists:
	 *   imapd_start(d);
	 */
	if (sched_attach_daemon(d) != 0) {
		daemon_free(d);
		return DAEMON_EXIT_ERRORS;
	}
	if (recover_account) {
		void *sctx = NULL;
		const daemon_sync_ops_t *sops = daemon_sync_ops(d, &sctx);
		char msg[1024];
		status = sops->folder_recover(sctx, d, recover_account, recover_folder, msg, sizeof(msg));
		fprintf(status ? stderr : stdout, "imapbridged: %s\n", msg);
	} else if (opts.once)
		status = daemon_sync_once(d);
	else
		status = daemon_run(d);
	daemon_free(d);
	return status;
}
