/*
 * The scheduler behind the daemon's sync hooks (server/daemon.h): -o, sync
 * now, config reload, account removal, folder recovery, status, stop.
 */
#include <stdio.h>

#include "lib/log.h"
#include "server/daemon.h"
#include "sync/recover.h"
#include "sync/sched_p.h"

/* ------------------------------------------------------------ daemon glue */


static int glue_sync_once(void *ctx, daemon_t *d, const char *only)
{
	return sched_sync_once(ctx, only);
}

static int glue_sync_now(void *ctx, daemon_t *d, const char *account, daemon_done_cb done,
			 void *arg)
{
	return sched_sync(ctx, account, done, arg) == 0 ? 0 : -1;
}

static void glue_config_reloaded(void *ctx, daemon_t *d, const config_t *old_cfg,
				 const config_t *new_cfg)
{
	sched_set_config(ctx, new_cfg);
}

static void glue_account_removed(void *ctx, daemon_t *d, const char *account, bool purge)
{
	sched_account_removed(ctx, account);
}

static int glue_folder_recover(void *ctx, daemon_t *d, const char *account, const char *folder,
			       char *msg, size_t msglen)
{
	sched_t *s = ctx;
	acct_state_t *a = sched_acct_find(s, account);

	if (!a || a->removed || !a->acct) {
		snprintf(msg, msglen, "no account named %s; see 'imapbridge account list'", account);
		return 1;
	}
	if (a->running && a->phase != RUN_IDLE) {
		snprintf(msg, msglen, "account %s is syncing right now; try again in a moment",
			 account);
		return 1;
	}
	return recover_folder(s->loop, s->st, a->acct, folder, msg, msglen);
}

static void glue_status_json(void *ctx, daemon_t *d, const char *account, buf_t *out)
{
	sched_status_json(ctx, account, out);
}

static void glue_stop(void *ctx, daemon_t *d)
{
	sched_free(ctx);
	daemon_set_sync(d, NULL, NULL);
}

static const daemon_sync_ops_t sched_daemon_ops = {
	.sync_once = glue_sync_once,
	.sync_now = glue_sync_now,
	.config_reloaded = glue_config_reloaded,
	.account_removed = glue_account_removed,
	.folder_recover = glue_folder_recover,
	.status_json = glue_status_json,
	.stop = glue_stop,
};

int sched_attach_daemon(struct daemon *d)
{
	store_t *st = daemon_store(d);
	const daemon_opts_t *o = daemon_opts(d);

	if (!st) {
		log_err("sync: the store is not open; cannot sync");
		return -1;
	}
	sched_t *s = sched_new(daemon_loop(d), st, daemon_config(d), o->one_at_a_time);
	s->daemon_ref = d;
	daemon_set_sync(d, &sched_daemon_ops, s);
	if (!o->once)
		sched_start(s);
	return 0;
}

