/* The daemon's lifecycle, signals and sync call-sites: see daemon.h. */
#include "server/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "server/config.h"
#include "server/ctl.h"
#include "server/lock.h"

#define NOSYNC_MSG "sync engine not available in this build"

struct daemon {
	struct ev_loop *loop;
	config_t *cfg;
	daemon_opts_t opts; /* strings are copies owned here */
	store_t *store;	    /* owned */
	ctl_t *ctl;
	lock_t *lock;
	char *sock_path;
	ev_signal sig_hup, sig_term, sig_int, sig_usr1;
	const daemon_sync_ops_t *sync_ops;
	void *sync_ctx;
	int exit_status;
	bool signals_on;
	struct {
		const daemon_component_t *comp;
		void *arg;
	} * comps;
	size_t n_comps;
};

const char *daemon_strerror(int err)
{
	switch (err) {
	case DAEMON_OK:
		return "no error";
	case DAEMON_E_DATADIR:
		return "data directory unusable";
	case DAEMON_E_LOCKED:
		return "another imapbridged uses this data directory";
	case DAEMON_E_LOCK:
		return "cannot create the lock file";
	case DAEMON_E_SOCKET:
		return "cannot create the control socket";
	case DAEMON_E_STORE:
		return "cannot open the store";
	case DAEMON_E_CONFIG:
		return "invalid config";
	case DAEMON_E_NOSYNC:
		return NOSYNC_MSG;
	case DAEMON_E_NOACCOUNT:
		return "no such account";
	default:
		return "unknown error";
	}
}

daemon_t *daemon_new(struct ev_loop *loop, config_t *cfg, const daemon_opts_t *opts)
{
	daemon_t *d = xcalloc(1, sizeof(*d));
	d->loop = loop;
	d->cfg = cfg;
	d->opts = *opts;
	d->opts.config_path = xstrdup(opts->config_path ? opts->config_path : cfg->path);
	d->opts.only = opts->only ? xstrdup(opts->only) : NULL;
	d->sock_path = xasprintf("%s/%s", cfg->datadir, CTL_SOCKET_NAME);
	return d;
}

struct ev_loop *daemon_loop(const daemon_t *d)
{
	return d->loop;
}
const config_t *daemon_config(const daemon_t *d)
{
	return d->cfg;
}
const daemon_opts_t *daemon_opts(const daemon_t *d)
{
	return &d->opts;
}
store_t *daemon_store(const daemon_t *d)
{
	return d->store;
}
const char *daemon_socket_path(const daemon_t *d)
{
	return d->sock_path;
}

void daemon_set_sync(daemon_t *d, const daemon_sync_ops_t *ops, void *ctx)
{
	d->sync_ops = ops;
	d->sync_ctx = ctx;
}

void daemon_add_component(daemon_t *d, const daemon_component_t *comp, void *arg)
{
	d->comps = xrealloc(d->comps, (d->n_comps + 1) * sizeof(*d->comps));
	d->comps[d->n_comps].comp = comp;
	d->comps[d->n_comps].arg = arg;
	d->n_comps++;
}

const daemon_sync_ops_t *daemon_sync_ops(const daemon_t *d, void **ctx)
{
	if (ctx)
		*ctx = d->sync_ctx;
	return d->sync_ops;
}

/* Create the data directory (0700) if needed and make sure we can write it. */
static int prepare_datadir(daemon_t *d)
{
	const char *dir = d->cfg->datadir;
	int rc = ib_mkdirs(dir, 0700);
	if (rc == 0 && access(dir, W_OK | X_OK) < 0)
		rc = -errno;
	if (rc == 0)
		return DAEMON_OK;
	struct passwd *pw = getpwuid(geteuid());
	const char *user = pw ? pw->pw_name : "the daemon's user";
	log_err("cannot use data directory %s: %s; create it writable for %s "
		"(e.g. `install -d -m 700 -o %s %s`) or set another datadir in %s",
		dir, strerror(-rc), user, user, dir, d->opts.config_path);
	return DAEMON_E_DATADIR;
}

static void sighup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	daemon_t *d = w->data;
	log_info("SIGHUP: reloading %s", d->opts.config_path);
	daemon_reload(d, NULL);
}

static void sigterm_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	daemon_t *d = w->data;
	log_info("%s: stopping", w->signum == SIGINT ? "SIGINT" : "SIGTERM");
	daemon_stop(d, d->exit_status);
}

static void usr1_done_cb(int status, const char *message, void *arg)
{
	if (status != 0)
		log_err("sync now: %s", message ? message : "failed");
	else
		log_info("sync now: done");
}

static void sigusr1_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	daemon_t *d = w->data;
	log_info("SIGUSR1: sync now");
	daemon_sync_now(d, NULL, usr1_done_cb, d);
}

static void start_signals(daemon_t *d)
{
	signal(SIGPIPE, SIG_IGN);
	ev_signal_init(&d->sig_hup, sighup_cb, SIGHUP);
	ev_signal_init(&d->sig_term, sigterm_cb, SIGTERM);
	ev_signal_init(&d->sig_int, sigterm_cb, SIGINT);
	ev_signal_init(&d->sig_usr1, sigusr1_cb, SIGUSR1);
	ev_signal *all[] = {&d->sig_hup, &d->sig_term, &d->sig_int, &d->sig_usr1};
	for (size_t i = 0; i < IB_ARRAY_LEN(all); i++) {
		all[i]->data = d;
		ev_signal_start(d->loop, all[i]);
	}
	d->signals_on = true;
}

static void stop_signals(daemon_t *d)
{
	if (!d->signals_on)
		return;
	ev_signal_stop(d->loop, &d->sig_hup);
	ev_signal_stop(d->loop, &d->sig_term);
	ev_signal_stop(d->loop, &d->sig_int);
	ev_signal_stop(d->loop, &d->sig_usr1);
	d->signals_on = false;
}

struct account_names {
	const config_t *cfg;
	const char *name; /* for removal */
	bool purge;
};

/* Make sure every configured account has its record in the store. */
static int add_accounts_txn(store_txn_t *txn, void *arg)
{
	const struct account_names *an = arg;
	for (size_t i = 0; i < an->cfg->n_accounts; i++) {
		uint32_t id;
		int rc = store_account_add(txn, an->cfg->accounts[i].name, &id);
		if (rc != STORE_OK && rc != STORE_EEXIST)
			return rc;
	}
	return STORE_OK;
}

static int sync_store_accounts(daemon_t *d)
{
	struct account_names an = {d->cfg, NULL, false};
	int rc = store_write(d->store, add_accounts_txn, &an);
	if (rc != STORE_OK)
		log_err("store: cannot record the accounts in %s: %s", store_path(d->store),
			store_strerror(rc));
	return rc;
}

static int open_store(daemon_t *d)
{
	char err[512] = "";
	store_open_opts_t so = { .nosync = !d->cfg->fsync };
	int rc = store_open(d->cfg->datadir, &so, &d->store, err, sizeof(err));
	if (rc != STORE_OK) {
		log_err("cannot open the store: %s", err[0] ? err : store_strerror(rc));
		return DAEMON_E_STORE;
	}
	if (sync_store_accounts(d) != STORE_OK)
		return DAEMON_E_STORE;
	return DAEMON_OK;
}

static void close_store(daemon_t *d)
{
	store_close(d->store);
	d->store = NULL;
}

static int remove_account_txn(store_txn_t *txn, void *arg)
{
	const struct account_names *an = arg;
	store_account_t a;
	int rc = store_account_find(txn, an->name, &a);
	if (rc == STORE_ENOTFOUND)
		return STORE_OK;
	if (rc != STORE_OK)
		return rc;
	return store_account_remove(txn, a.id, an->purge);
}

int daemon_store_remove_account(daemon_t *d, const char *account, bool purge)
{
	struct account_names an = {d->cfg, account, purge};
	if (!d->store)
		return STORE_OK;
	return store_write(d->store, remove_account_txn, &an);
}

int daemon_start(daemon_t *d)
{
	char err[512];
	int rc;

	if ((rc = prepare_datadir(d)) != DAEMON_OK)
		return rc;
	rc = lock_acquire(d->cfg->datadir, &d->lock, err, sizeof(err));
	if (rc != LOCK_OK) {
		log_err("%s", err);
		return rc == LOCK_E_HELD ? DAEMON_E_LOCKED : DAEMON_E_LOCK;
	}
	if ((rc = open_store(d)) != DAEMON_OK)
		return rc;
	if (!d->opts.once) {
		if (ctl_open(d, d->sock_path, &d->ctl, err, sizeof(err)) != 0) {
			log_err("%s", err);
			return DAEMON_E_SOCKET;
		}
	}
	start_signals(d);
	log_info("started: %zu account%s, data in %s, control socket %s", d->cfg->n_accounts,
		 d->cfg->n_accounts == 1 ? "" : "s", d->cfg->datadir,
		 d->opts.once ? "(none with -o)" : d->sock_path);
	return DAEMON_OK;
}

int daemon_run(daemon_t *d)
{
	ev_run(d->loop, 0);
	return d->exit_status;
}

void daemon_stop(daemon_t *d, int status)
{
	d->exit_status = status;
	ev_break(d->loop, EVBREAK_ALL);
}

int daemon_sync_once(daemon_t *d)
{
	if (!d->sync_ops || !d->sync_ops->sync_once) {
		log_err(NOSYNC_MSG);
		return DAEMON_EXIT_ERRORS;
	}
	return d->sync_ops->sync_once(d->sync_ctx, d, d->opts.only);
}

void daemon_sync_now(daemon_t *d, const char *account, daemon_done_cb done, void *arg)
{
	if (account && !config_find_account(d->cfg, account)) {
		char msg[256];
		snprintf(msg, sizeof(msg), "no account named '%s'; see `imapbridge account list`",
			 account);
		done(DAEMON_EXIT_ERRORS, msg, arg);
		return;
	}
	if (!d->sync_ops || !d->sync_ops->sync_now) {
		done(DAEMON_EXIT_ERRORS, NOSYNC_MSG, arg);
		return;
	}
	if (d->sync_ops->sync_now(d->sync_ctx, d, account, done, arg) < 0)
		done(DAEMON_EXIT_ERRORS, "sync could not be started", arg);
}

int daemon_reload(daemon_t *d, struct config_msgs *out_msgs)
{
	config_msgs_t msgs = CONFIG_MSGS_INIT;
	config_t *cfg = NULL;
	int rc = config_load(d->opts.config_path, &cfg, &msgs);

	for (size_t i = 0; i < msgs.n_warnings; i++)
		log_warn("%s", msgs.warnings[i]);
	if (rc == CONFIG_OK && strcmp(cfg->datadir, d->cfg->datadir) != 0) {
		msgs.errors = xrealloc(msgs.errors, (msgs.n_errors + 1) * sizeof(*msgs.errors));
		msgs.errors[msgs.n_errors++] =
		    xasprintf("%s: datadir changed from %s to %s; a reload cannot move the data "
			      "directory, restart imapbridged instead",
			      d->opts.config_path, d->cfg->datadir, cfg->datadir);
		config_free(cfg);
		cfg = NULL;
		rc = CONFIG_E_INVALID;
	}
	if (rc != CONFIG_OK) {
		for (size_t i = 0; i < msgs.n_errors; i++)
			log_err("%s", msgs.errors[i]);
		log_err("reload: %zu problem%s in the config; still running with the previous one",
			msgs.n_errors, msgs.n_errors == 1 ? "" : "s");
		if (out_msgs)
			*out_msgs = msgs;
		else
			config_msgs_free(&msgs);
		return DAEMON_E_CONFIG;
	}
	if (out_msgs)
		*out_msgs = msgs;
	else
		config_msgs_free(&msgs);

	if (cfg->fsync != d->cfg->fsync) {
		/* The store was opened with the old value: keep store and Maildir
		 * alike until the restart. */
		log_warn("reload: fsync changed to %s; it takes effect when imapbridged restarts",
			 cfg->fsync ? "true" : "false");
		cfg->fsync = d->cfg->fsync;
	}
	config_t *old = d->cfg;
	d->cfg = cfg;
	if (d->sync_ops && d->sync_ops->config_reloaded)
		d->sync_ops->config_reloaded(d->sync_ctx, d, old, cfg);
	for (size_t i = 0; i < d->n_comps; i++)
		if (d->comps[i].comp->reloaded)
			d->comps[i].comp->reloaded(d->comps[i].arg, d, old, cfg);
	config_free(old);
	if (d->store)
		sync_store_accounts(d);
	log_info("config reloaded: %zu account%s", cfg->n_accounts,
		 cfg->n_accounts == 1 ? "" : "s");
	return DAEMON_OK;
}

void daemon_free(daemon_t *d)
{
	if (!d)
		return;
	for (size_t i = d->n_comps; i-- > 0;)
		if (d->comps[i].comp->stopping)
			d->comps[i].comp->stopping(d->comps[i].arg, d);
	if (d->sync_ops && d->sync_ops->stop)
		d->sync_ops->stop(d->sync_ctx, d);
	stop_signals(d);
	ctl_close(d->ctl);
	if (d->store)
		log_info("stopped");
	close_store(d);
	lock_release(d->lock);
	config_free(d->cfg);
	free((char *)d->opts.config_path);
	free((char *)d->opts.only);
	free(d->sock_path);
	free(d->comps);
	free(d);
}
