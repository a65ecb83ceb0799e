/*
 * Between account runs (daemon mode): IDLE sessions on the account's idle
 * folders, the autorefresh timer, the prompt push of local store changes,
 * and the inotify watcher on the Maildir tree. Each of them only asks for a
 * run (sched_acct_request()); sched.c does the rest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/util.h"
#include "sync/imap_replica.h"
#include "sync/sched_p.h"

/* ------------------------------------------------------------------- IDLE */

static void idle_fire_cb(int status, void *ctx);

static void idle_free(idle_sess_t *is)
{
	replica_free(is->r);
	is->r = NULL;
	is->armed = false;
}

static void idle_select_cb(int status, const replica_box_t *box, void *ctx)
{
	idle_sess_t *is = ctx;

	if (status != REPLICA_OK) {
		idle_free(is);
		return;
	}
	is->armed = true;
	is->r->ops->watch(is->r, idle_fire_cb, is);
}

static void idle_connect_cb(int status, void *ctx)
{
	idle_sess_t *is = ctx;

	if (status != REPLICA_OK || !(is->caps & REPLICA_CAP_IDLE)) {
		idle_free(is);
		return;
	}
	/* IDLE only reads: EXAMINE leaves the server's cached STATUS alone. */
	if (is->r->ops->read_intent)
		is->r->ops->read_intent(is->r);
	is->r->ops->select(is->r, is->remote, idle_select_cb, is);
}

static void idle_fire_cb(int status, void *ctx)
{
	idle_sess_t *is = ctx;
	acct_state_t *a = is->a;

	is->armed = false;
	if (status == REPLICA_OK) {
		log_debug("sync: acct=%s box=%s: change seen by IDLE", a->name, is->remote);
		sched_acct_request(a, NULL);
		return;
	}
	if (status == REPLICA_BAD)
		idle_free(is);
}

void sched_idle_arm_all(acct_state_t *a)
{
	const config_account_t *acct = a->acct;

	if (a->n_idle == 0 && acct->n_idle) {
		a->idle = xcalloc(acct->n_idle, sizeof(*a->idle));
		a->n_idle = acct->n_idle;
		for (size_t i = 0; i < acct->n_idle; i++) {
			a->idle[i].a = a;
			a->idle[i].remote = xstrdup(acct->idle[i]);
		}
	}
	for (size_t i = 0; i < a->n_idle; i++) {
		idle_sess_t *is = &a->idle[i];
		if (is->armed)
			continue;
		if (is->r) {
			is->armed = true;
			is->r->ops->watch(is->r, idle_fire_cb, is);
			continue;
		}
		char label[256];
		snprintf(label, sizeof(label), "%s/idle", a->name);
		is->r = imap_replica_new(a->s->loop, acct, label);
		is->r->ops->connect(is->r, &is->caps, idle_connect_cb, is);
	}
}

void sched_idle_stop_all(acct_state_t *a)
{
	for (size_t i = 0; i < a->n_idle; i++) {
		idle_free(&a->idle[i]);
		free(a->idle[i].remote);
	}
	free(a->idle);
	a->idle = NULL;
	a->n_idle = 0;
}

/* ----------------------------------------------------------------- timers */

void sched_refresh_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	acct_state_t *a = w->data;
	sched_acct_request(a, NULL);
}

typedef struct push_scan {
	sched_t *s;
	acct_state_t *a;
	store_txn_t *txn;
	bool dirty;
} push_scan_t;

static int push_folder_cb(const store_folder_t *f, void *arg)
{
	push_scan_t *ps = arg;
	sched_t *s = ps->s;
	store_replica_t rs;

	if (f->state == STORE_FOLDER_HELD)
		return 0;
	if (store_replica_get(ps->txn, f->id, STORE_REPLICA_REMOTE, &rs) != 0)
		return 0;
	if (rs.pushed_modseq == f->highestmodseq)
		return 0;
	/* Trigger once per new store state, so a folder that fails to sync
	 * is not retried every few seconds. */
	for (size_t i = 0; i < s->n_push; i++) {
		if (s->push_fid[i] == f->id) {
			if (s->push_ms[i] == f->highestmodseq)
				return 0;
			s->push_ms[i] = f->highestmodseq;
			ps->dirty = true;
			return 0;
		}
	}
	s->push_fid = xrealloc(s->push_fid, (s->n_push + 1) * sizeof(uint32_t));
	s->push_ms = xrealloc(s->push_ms, (s->n_push + 1) * sizeof(uint64_t));
	s->push_fid[s->n_push] = f->id;
	s->push_ms[s->n_push] = f->highestmodseq;
	s->n_push++;
	ps->dirty = true;
	return 0;
}

/* Local changes (listener, Maildir watcher) reach the remote promptly. */
void sched_push_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	sched_t *s = w->data;

	for (size_t i = 0; i < s->n_accts; i++) {
		acct_state_t *a = s->accts[i];
		if (a->running || a->account_id == 0 || a->removed)
			continue;
		push_scan_t ps = { s, a, NULL, false };
		if (store_txn_begin_read(s->st, &ps.txn) != 0)
			continue;
		store_folder_list(ps.txn, a->account_id, push_folder_cb, &ps);
		store_txn_abort(ps.txn);
		if (ps.dirty) {
			log_debug("sync: acct=%s: local changes to send", a->name);
			sched_acct_request(a, NULL);
		}
	}
}

static void tree_changed_cb(void *arg)
{
	acct_state_t *a = arg;
	log_debug("sync: acct=%s: the Maildir tree changed", a->name);
	sched_acct_request(a, NULL);
}

void sched_acct_timers(acct_state_t *a)
{
	sched_t *s = a->s;

	if (a->watch) {
		maildir_watch_free(a->watch);
		a->watch = NULL;
	}
	if (s->daemon && a->acct->maildir_path &&
	    maildir_watch_new(s->loop, a->acct->maildir_path, 0, tree_changed_cb, a, &a->watch) != 0)
		log_warn("sync: acct=%s: cannot watch %s (inotify); local changes are picked up "
			 "at the next sync only",
			 a->name, a->acct->maildir_path);

	ev_timer_stop(s->loop, &a->refresh_w);
	if (s->daemon && a->acct->autorefresh > 0) {
		double iv = a->acct->autorefresh * 60.0;
		ev_timer_init(&a->refresh_w, sched_refresh_cb, iv, iv);
		a->refresh_w.data = a;
		ev_timer_start(s->loop, &a->refresh_w);
	}
}

