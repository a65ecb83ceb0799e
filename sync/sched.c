/*
 * Scheduling of syncs: see sched.h. An account run is a small state machine:
 * Maildir in, remote (list, plan, STATUS, folders over N sessions: see
 * sched_remote.c), Maildir out. Every step is driven by replica or engine
 * callbacks.
 */
#include "sync/sched.h"
#include "sync/sched_p.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/util.h"
#include "sync/engine.h"
#include "sync/folders.h"
#include "sync/maildir.h"
#include "sync/maildir_watch.h"
#include "sync/mbnames.h"
#include "sync/replica.h"

/* See group_prep_cb(). */
#define SCHED_GROUP_DELAY 0.020
/* In a small run a group this big commits at once: its one session takes
 * many folders at a time (SCHED_SMALL_DEPTH), so no session starves, and
 * the server goes on with the later folders while the store syncs these. */
#define SCHED_GROUP_MAX 8

static void acct_maybe_start(sched_t *s);

int sched_worse(int a, int b)
{
	/* 2 (held) > 1 (errors) > 0 */
	return a > b ? a : b;
}

/* --------------------------------------------------------------- accounts */

acct_state_t *sched_acct_find(sched_t *s, const char *name)
{
	for (size_t i = 0; i < s->n_accts; i++)
		if (strcmp(s->accts[i]->name, name) == 0)
			return s->accts[i];
	return NULL;
}

static int acct_limit(sched_t *s)
{
	if (s->one)
		return 1;
	return s->cfg->maxsyncaccounts > 0 ? s->cfg->maxsyncaccounts : 3;
}

static void round_account_done(round_t *r, int status)
{
	r->status = sched_worse(r->status, status);
	if (--r->left > 0)
		return;
	char msg[256];
	snprintf(msg, sizeof(msg), "%u account%s synced%s%s", r->accounts,
		 r->accounts == 1 ? "" : "s",
		 r->status == 2 ? "; a folder is held for safety (see the log)" : "",
		 r->status == 1 ? "; some folders failed (see the log)" : "");
	if (r->cb)
		r->cb(r->status, msg, r->arg);
	free(r);
}

/* One Maildir folder job (md_start_next()). */
typedef struct md_run {
	acct_state_t *a;
	size_t idx; /* in md_folders, md_names */
	engine_job_t *job;
	bool released, cancelled;
	struct md_run *next; /* a->md_released */
} md_run_t;

static void md_free(acct_state_t *a)
{
	md_run_t *r = a->md_released;
	a->md_released = NULL;
	while (r) {
		md_run_t *next = r->next;
		r->cancelled = true;
		engine_cancel(r->job); /* md_job_done() frees r */
		r = next;
	}
	if (a->md_job) {
		engine_job_t *j = a->md_job;
		a->md_run->cancelled = true;
		a->md_job = NULL;
		a->md_run = NULL;
		engine_cancel(j);
	}
	replica_free(a->md);
	a->md = NULL;
	for (size_t i = 0; i < a->n_md; i++)
		free(a->md_names[i]);
	free(a->md_names);
	free(a->md_folders);
	a->md_names = NULL;
	a->md_folders = NULL;
	a->md_in_started = a->md_in_listed = a->md_out_listed = a->md_connecting = false;
	a->n_md = a->next_md = 0;
}

/* The folder list file for mail readers, after every sync. */
static void write_mbnames(sched_t *s)
{
	size_t n = 0;
	bool changed = false;

	if (!s->cfg->mbnames.enabled)
		return;
	mbnames_item_t *items = mbnames_items_from_config(s->cfg, &n);
	int rc = mbnames_update(&s->cfg->mbnames, items, n, &changed);
	if (rc < 0)
		log_err("sync: cannot write the mbnames file %s: %s", s->cfg->mbnames.filename,
			strerror(-rc));
	mbnames_items_free(items, n);
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	acct_state_t *a = w->data;

	a->waiters = a->retry_waiters;
	a->retry_waiters = NULL;
	a->running = true;
	a->phase = RUN_IDLE;
	acct_maybe_start(a->s);
}

/* A run starts: its clock and its counts. */
static void run_begin(acct_state_t *a)
{
	a->started = ev_now(a->s->loop);
	a->small_run = false;
	a->status = 0;
	a->deferred = a->folders = a->skipped = a->down = a->up = a->del = a->flags = a->held =
		a->md_in = a->md_out = a->failed = 0;
}

static void run_finish(acct_state_t *a)
{
	sched_t *s = a->s;
	waiter_t *w = a->waiters;

	sched_conns_free(a);
	md_free(a);
	folders_plan_free(&a->plan);
	a->running = false;
	a->phase = RUN_IDLE;
	if (a->deferred && a->retries < 3 && !a->removed) {
		/* A crash left uploads the server may still be storing: look
		 * again once they have settled, within the same request. */
		log_info("sync: acct=%s: %u interrupted upload%s may still be arriving on the "
			 "server; checking again in a few seconds",
			 a->name, a->deferred, a->deferred == 1 ? "" : "s");
		a->retries++;
		a->deferred = 0;
		s->running--;
		a->retry_waiters = a->waiters;
		a->waiters = NULL;
		a->running = true; /* keeps other requests waiting for this run */
		a->phase = RUN_WAIT;
		ev_timer_set(&a->retry_w, 3.5, 0.);
		ev_timer_start(s->loop, &a->retry_w);
		acct_maybe_start(s);
		return;
	}
	a->retries = 0;
	write_mbnames(s);
	if (a->watch)
		maildir_watch_refresh(a->watch);
	a->last_end = ev_now(s->loop);
	a->last_status = a->status;
	s->running--;
	char md[96] = "";
	if (a->md_in || a->md_out)
		snprintf(md, sizeof(md), "; Maildir: %u changes taken in, %u written", a->md_in,
			 a->md_out);
	char bad[64] = "";
	if (a->held || a->failed)
		snprintf(bad, sizeof(bad), "; %u folder%s held, %u failed", a->held,
			 a->held == 1 ? "" : "s", a->failed);
	log_info("sync: acct=%s: %s in %.1fs: %u folders (%u unchanged), %u new here, %u "
		 "sent, %u deleted, %u flag changes%s%s",
		 a->name, a->status == 0 ? "done" : a->status == 2 ? "held" : "finished with errors",
		 ev_now(s->loop) - a->started, a->folders, a->skipped, a->down, a->up, a->del,
		 a->flags, md, bad);
	a->waiters = NULL;
	int st = a->status;
	while (w) {
		waiter_t *n = w->next;
		round_account_done(w->round, st);
		free(w);
		w = n;
	}
	if (s->daemon && !a->removed)
		sched_idle_arm_all(a);
	if (a->again && !a->removed) {
		a->again = false;
		a->waiters = a->next_waiters;
		a->next_waiters = NULL;
		a->running = true; /* queued */
		a->phase = RUN_IDLE;
		s->running++;
		run_begin(a);
		sched_run_step(a);
		return;
	}
	acct_maybe_start(s);
}

/* Queue a run of a (joining the current one if it has not started yet). */
void sched_acct_request(acct_state_t *a, round_t *r)
{
	waiter_t *w = NULL;

	if (r) {
		w = xcalloc(1, sizeof(*w));
		w->round = r;
	}
	if (a->running && a->phase != RUN_IDLE) {
		/* Already syncing: changes made meanwhile need another pass. */
		a->again = true;
		if (w) {
			w->next = a->next_waiters;
			a->next_waiters = w;
		}
		return;
	}
	if (w) {
		w->next = a->waiters;
		a->waiters = w;
	}
	if (!a->running) {
		a->running = true; /* queued, phase RUN_IDLE until a slot frees */
		a->phase = RUN_IDLE;
	}
	acct_maybe_start(a->s);
}

static int count_active(sched_t *s)
{
	int n = 0;
	for (size_t i = 0; i < s->n_accts; i++)
		if (s->accts[i]->running && s->accts[i]->phase != RUN_IDLE &&
		    s->accts[i]->phase != RUN_WAIT)
			n++;
	return n;
}

static void acct_maybe_start(sched_t *s)
{
	for (size_t i = 0; i < s->n_accts; i++) {
		acct_state_t *a = s->accts[i];
		if (count_active(s) >= acct_limit(s))
			return;
		if (!a->running || a->phase != RUN_IDLE)
			continue;
		s->running++;
		run_begin(a);
		a->last_error[0] = '\0';
		sched_run_step(a);
	}
}

/* ------------------------------------------------------------ engine jobs */

void sched_note_result(acct_state_t *a, const char *box, bool maildir, int rc,
			const engine_stats_t *st)
{
	if (rc != ENGINE_AGAIN)
		a->folders++;
	a->deferred += st->deferred;
	if (maildir) {
		/* The summary speaks of the server; the tree has its own count. */
		a->md_in += st->downloaded + st->deleted_store + st->flags_store;
		a->md_out += st->uploaded + st->deleted_replica + st->flags_replica;
	} else {
		if (st->skipped)
			a->skipped++;
		a->down += st->downloaded;
		a->up += st->uploaded;
		a->del += st->deleted_store + st->deleted_replica;
		a->flags += st->flags_store + st->flags_replica;
	}
	if (rc == ENGINE_HELD) {
		a->held++;
		a->status = sched_worse(a->status, 2);
		log_err("sync: acct=%s box=%s: %s", a->name, box, st->message);
		snprintf(a->last_error, sizeof(a->last_error), "%s: %s", box, st->message);
	} else if (rc != ENGINE_OK && rc != ENGINE_CANCELLED && rc != ENGINE_AGAIN) {
		a->failed++;
		a->status = sched_worse(a->status, 1);
		log_err("sync: acct=%s box=%s: %s (%s); it is retried at the next sync", a->name, box,
			st->message[0] ? st->message : engine_strerror(rc), engine_strerror(rc));
		snprintf(a->last_error, sizeof(a->last_error), "%s: %s", box,
			 st->message[0] ? st->message : engine_strerror(rc));
	} else if (st->downloaded || st->uploaded || st->deleted_store || st->deleted_replica ||
		   st->flags_store || st->flags_replica || st->moved) {
		log_info("sync: acct=%s box=%s %s: %u in, %u out, %u deleted here, %u deleted there, "
			 "%u+%u flag changes, %u moved there",
			 a->name, box, maildir ? "maildir" : "remote", st->downloaded, st->uploaded,
			 st->deleted_store, st->deleted_replica, st->flags_store, st->flags_replica,
			 st->moved);
	}
	if (rc == ENGINE_OK && st->failed) {
		/* The folder went through, but some messages did not: the
		 * replica refused them or could not be written (the reason was
		 * logged as it happened). Not a success for the run. */
		a->failed++;
		a->status = sched_worse(a->status, 1);
		log_err("sync: acct=%s box=%s: %u message%s could not be copied or updated %s; "
			"%s retried at the next sync",
			a->name, box, st->failed, st->failed == 1 ? "" : "s",
			maildir ? "between the store and the Maildir tree"
				: "between the server and the store",
			st->failed == 1 ? "it is" : "they are");
		snprintf(a->last_error, sizeof(a->last_error), "%s: %u message%s failed", box,
			 st->failed, st->failed == 1 ? "" : "s");
	}
}

void sched_engine_opts_fill(acct_state_t *a, engine_opts_t *o, uint32_t fid, uint32_t rid,
			     const char *rname, const char *local, char *prefix, size_t plen)
{
	memset(o, 0, sizeof(*o));
	snprintf(prefix, plen, "sync: acct=%s box=%s", a->name, local);
	o->folder_id = fid;
	o->replica_id = rid;
	o->replica_name = rname;
	o->log_prefix = prefix;
	o->account = a->name;
	o->folder = local;
	o->max_deletion_ratio = a->acct->max_deletion_ratio;
	o->readonly = rid == STORE_REPLICA_REMOTE && a->acct->remote.readonly;
	/* A file the last run meant to write to the tree is there or not:
	 * nothing is still on its way, as an APPEND to a server can be. */
	if (rid == STORE_REPLICA_MAILDIR)
		o->settle_secs = -1;
}

/* ---------------------------------------------------------------- Maildir */

static char md_sep(const acct_state_t *a)
{
	return a->acct->maildir_sep && a->acct->maildir_sep[0] ? a->acct->maildir_sep[0] : '/';
}

typedef struct md_list {
	acct_state_t *a;
	store_txn_t *txn;
} md_list_t;

/* Coming in, a folder whose directory is as the last sync left it and
 * that has nothing to go out needs no job: the engine would skip it after
 * select(). Checked here, that costs a few system calls instead of a
 * session's select() and the job's reads of the store (most folders, most
 * of the time). */
static bool md_in_unchanged(acct_state_t *a, store_txn_t *txn, const store_folder_t *f)
{
	store_replica_t rs;
	engine_opts_t o;
	char prefix[256];

	if (f->state == STORE_FOLDER_HELD ||
	    store_replica_get(txn, f->id, STORE_REPLICA_MAILDIR, &rs) != 0 ||
	    rs.pushed_modseq != f->highestmodseq)
		return false;
	sched_engine_opts_fill(a, &o, f->id, STORE_REPLICA_MAILDIR, f->name, f->name, prefix,
			       sizeof(prefix));
	o.has_counts = maildir_replica_unchanged(a->md, f->name, &rs, &o.counts);
	return engine_unchanged_txn(txn, &o);
}

static int md_list_cb(const store_folder_t *f, void *arg)
{
	md_list_t *ml = arg;
	acct_state_t *a = ml->a;
	store_replica_t rs;

	/* Going out, only folders the remote pass changed: the tree's own
	 * changes were taken in moments ago. */
	if (a->phase == RUN_MAILDIR_OUT && f->state != STORE_FOLDER_HELD &&
	    store_replica_get(ml->txn, f->id, STORE_REPLICA_MAILDIR, &rs) == 0 &&
	    rs.uidvalidity != 0 && rs.pushed_modseq == f->highestmodseq)
		return 0;
	if (a->phase == RUN_MAILDIR_IN && md_in_unchanged(a, ml->txn, f))
		return 0;
	for (size_t i = a->next_md; i < a->n_md; i++)
		if (a->md_folders[i] == f->id)
			return 0; /* already queued */
	a->md_folders = xrealloc(a->md_folders, (a->n_md + 1) * sizeof(uint32_t));
	a->md_names = xrealloc(a->md_names, (a->n_md + 1) * sizeof(char *));
	a->md_folders[a->n_md] = f->id;
	a->md_names[a->n_md] = xstrdup(f->name);
	a->n_md++;
	return 0;
}

static void md_pump(acct_state_t *a);

/* The next step of the Maildir pass, once its current job is out of the
 * way. */
static void md_continue(acct_state_t *a)
{
	if (a->phase == RUN_REMOTE) {
		md_pump(a);
	} else if (a->phase == RUN_MAILDIR_IN && a->pre_started &&
		   (!a->pre_done || (a->pre_list && !a->pre_listed))) {
		/* The first session is logging in or listing: let its answers
		 * in between two folders, so the server's work and the tree's
		 * overlap. */
		ev_idle_start(a->s->loop, &a->md_next_w);
	} else {
		sched_run_step(a);
	}
}

static void md_unlink_released(acct_state_t *a, md_run_t *run)
{
	for (md_run_t **pp = &a->md_released; *pp; pp = &(*pp)->next)
		if (*pp == run) {
			*pp = run->next;
			return;
		}
}

static void md_job_done(int rc, const engine_stats_t *st, void *ctx)
{
	md_run_t *run = ctx;
	acct_state_t *a = run->a;

	a->s->jobs_live--;
	if (run->cancelled) {
		free(run); /* md_free() unlinked it */
		return;
	}
	sched_note_result(a, a->md_names[run->idx], true, rc, st);
	a->folders--; /* count folders once, for the remote pass */
	if (run->released) {
		md_unlink_released(a, run);
		free(run);
		/* The pass waits for nothing else: go on. */
		if (!a->md_job && !a->md_connecting)
			md_continue(a);
		return;
	}
	a->md_job = NULL;
	a->md_run = NULL;
	free(run);
	a->next_md++;
	md_continue(a);
}

/*
 * The job has written all it had to the tree and only its final commit is
 * left, queued in the group: the session takes the next folder meanwhile,
 * so the commits of several folders share one sync. Not in the pass that
 * takes the tree's changes in, which must be in the store before the
 * remote pass reads it.
 */
static void md_job_release(void *ctx)
{
	md_run_t *run = ctx;
	acct_state_t *a = run->a;

	if (run->released || run->cancelled || a->md_run != run)
		return;
	run->released = true;
	run->next = a->md_released;
	a->md_released = run;
	a->md_job = NULL;
	a->md_run = NULL;
	a->next_md++;
	md_continue(a);
}

/* Whether folder fid has a released job whose commit is still queued. */
static bool md_pending(const acct_state_t *a, uint32_t fid)
{
	for (const md_run_t *r = a->md_released; r; r = r->next)
		if (a->md_folders[r->idx] == fid)
			return true;
	return false;
}

/* Whether the next folder has a released job whose commit is still queued:
 * md_start_next() waits for it (the new job would not see what that one
 * wrote), and md_job_done() comes back. */
static bool md_blocked(const acct_state_t *a)
{
	return a->next_md < a->n_md && md_pending(a, a->md_folders[a->next_md]);
}

static void md_next_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	acct_state_t *a = w->data;

	ev_idle_stop(loop, w);
	sched_run_step(a);
}

static void md_connect_cb(int status, void *ctx)
{
	acct_state_t *a = ctx;

	a->md_connecting = false;
	if (status != REPLICA_OK) {
		/* The tree said why (not a directory). */
		log_err("sync: acct=%s: the Maildir tree %s is left out of this run; the server "
			"and the store are synced without it",
			a->name, a->acct->maildir_path);
		a->status = sched_worse(a->status, 1);
		replica_free(a->md);
		a->md = NULL;
	}
	if (a->phase == RUN_REMOTE)
		md_pump(a);
	else
		sched_run_step(a);
}

/* Start the next queued Maildir job when the session is free, unless it
 * is blocked (md_blocked()). */
static void md_start_next(acct_state_t *a)
{
	engine_opts_t o;
	char prefix[256];
	uint32_t fid = a->md_folders[a->next_md];

	if (md_blocked(a))
		return;
	sched_engine_opts_fill(a, &o, fid, STORE_REPLICA_MAILDIR, a->md_names[a->next_md],
			 a->md_names[a->next_md], prefix, sizeof(prefix));
	md_run_t *run = xcalloc(1, sizeof(*run));
	run->a = a;
	run->idx = a->next_md;
	if (a->phase != RUN_MAILDIR_IN) {
		o.release = md_job_release;
		o.release_late = true;
		o.group = a->s->group;
	}
	a->s->jobs_live++;
	/* Set md_job before starting: a synchronous replica may finish at once. */
	a->md_job = (engine_job_t *)1;
	a->md_run = run;
	engine_job_t *j = engine_sync_folder(a->s->st, a->md, &o, md_job_done, run);
	if (j)
		run->job = j; /* alive: run is freed only by md_job_done() */
	if (a->md_job == (engine_job_t *)1)
		a->md_job = j;
}

static void md_pump(acct_state_t *a)
{
	if (a->md && !a->md_job && !a->md_connecting && a->next_md < a->n_md)
		md_start_next(a);
}

/* While the remote pass runs, a folder it finished goes out to the Maildir
 * at once, so writing files overlaps with waiting for the network. */
void sched_md_enqueue(acct_state_t *a, uint32_t fid, const char *name)
{
	if (!a->md)
		return;
	for (size_t i = a->next_md; i < a->n_md; i++)
		if (a->md_folders[i] == fid)
			return;
	a->md_folders = xrealloc(a->md_folders, (a->n_md + 1) * sizeof(uint32_t));
	a->md_names = xrealloc(a->md_names, (a->n_md + 1) * sizeof(char *));
	a->md_folders[a->n_md] = fid;
	a->md_names[a->n_md] = xstrdup(name);
	a->n_md++;
	md_pump(a);
}

/* Step the Maildir pass of the current phase; true while it is running.
 * In: every folder (the tree's changes first). Out: what changed in the
 * store and did not go out during the remote pass. The session stays open
 * from in to out. */
static bool md_step(acct_state_t *a)
{
	sched_t *s = a->s;
	bool list = false;

	if (!a->acct->maildir_path)
		return false;
	if (a->phase == RUN_MAILDIR_IN && !a->md_in_started) {
		/* Connect before listing: connect() gives the folders a mail
		 * reader made a store folder (they then go in, and out to the
		 * server, in this run) and turns moved files into moves. */
		a->md_in_started = true;
		maildir_opts_t mo = {
			.loop = s->loop,
			.st = s->st,
			.account_id = a->account_id,
			.account = a->name,
			.root = a->acct->maildir_path,
			.nosync = !s->cfg->fsync,
			.sep = md_sep(a),
			.max_deletion_ratio = a->acct->max_deletion_ratio,
		};
		a->md = maildir_replica_open(&mo);
		a->md_connecting = true;
		/* md_connect_cb() drives the next step, now or later. */
		a->md->ops->connect(a->md, NULL, md_connect_cb, a);
		return true;
	}
	if (a->phase == RUN_MAILDIR_IN && a->md && !a->md_in_listed) {
		a->md_in_listed = list = true;
	} else if (a->phase == RUN_MAILDIR_OUT && !a->md_out_listed) {
		a->md_out_listed = list = true;
	}
	if (list) {
		store_txn_t *txn = NULL;
		if (store_txn_begin_read(s->st, &txn) == 0) {
			md_list_t ml = { a, txn };
			store_folder_list(txn, a->account_id, md_list_cb, &ml);
		}
		store_txn_abort(txn);
	}
	if (!a->md)
		return false; /* failed to connect */
	if (a->md_job || a->md_connecting)
		return true;
	if (a->md_released && (a->next_md >= a->n_md || md_blocked(a)))
		return true; /* md_job_done() of the last one comes back */
	if (a->next_md >= a->n_md) {
		if (a->phase == RUN_MAILDIR_OUT)
			md_free(a);
		return false;
	}
	md_start_next(a);
	return true;
}

/* ---------------------------------------------------------------- the run */

void sched_run_step(acct_state_t *a)
{
	for (;;) {
		switch (a->phase) {
		case RUN_IDLE:
			if (folders_account_id(a->s->st, a->name, &a->account_id) != 0) {
				log_err("sync: acct=%s: cannot record the account in the store",
					a->name);
				a->status = 1;
				a->phase = RUN_DONE;
				continue;
			}
			a->phase = RUN_MAILDIR_IN;
			md_free(a);
			sched_pre_connect(a);
			continue;
		case RUN_MAILDIR_IN:
			if (md_step(a))
				return;
			a->phase = RUN_REMOTE;
			sched_remote_start(a);
			return;
		case RUN_REMOTE:
			return; /* driven by dispatch() */
		case RUN_MAILDIR_OUT:
			if (md_step(a))
				return;
			a->phase = RUN_DONE;
			continue;
		case RUN_DONE:
			run_finish(a);
			return;
		case RUN_WAIT:
			return; /* retry_cb() goes on */
		}
	}
}

/* ------------------------------------------------------------------ public */

static acct_state_t *acct_new(sched_t *s, const config_account_t *acct)
{
	acct_state_t *a = xcalloc(1, sizeof(*a));

	a->s = s;
	a->acct = acct;
	a->name = xstrdup(acct->name);
	a->last_work = -1;
	ev_idle_init(&a->md_next_w, md_next_cb);
	a->md_next_w.data = a;
	ev_timer_init(&a->refresh_w, sched_refresh_cb, 1., 0.);
	a->refresh_w.data = a;
	ev_timer_init(&a->retry_w, retry_cb, 3.5, 0.);
	a->retry_w.data = a;
	s->accts = xrealloc(s->accts, (s->n_accts + 1) * sizeof(*s->accts));
	s->accts[s->n_accts++] = a;
	return a;
}

static void acct_abort(acct_state_t *a)
{
	ev_timer_stop(a->s->loop, &a->retry_w);
	ev_idle_stop(a->s->loop, &a->md_next_w);
	if (a->retry_waiters) {
		waiter_t *w = a->retry_waiters;
		while (w->next)
			w = w->next;
		w->next = a->waiters;
		a->waiters = a->retry_waiters;
		a->retry_waiters = NULL;
	}
	sched_conns_free(a);
	md_free(a);
	folders_plan_free(&a->plan);
}

/*
 * Folder jobs (remote, and Maildir outside the pass that takes the tree's
 * changes in) that finish while others still run commit together: their
 * final commits wait in s->group until every running job waits there too,
 * a Maildir pass runs out of folders to write (or its next folder waits for
 * one of these commits), a session cannot take the
 * next folder for the jobs it handed on, SCHED_GROUP_MAX of them wait in
 * a small run, or SCHED_GROUP_DELAY after the first of them, whichever
 * comes first.
 * Those commits are lazy anyway (losing them costs redoing the work), and a
 * job's session went on to the next folder before it, so the wait slows
 * nothing but the last folder; 50 changed folders cost a few syncs, not 50.
 */
static void group_flush(sched_t *s)
{
	ev_timer_stop(s->loop, &s->group_w);
	store_group_flush(s->group);
}

static void group_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	group_flush(w->data);
}

/* A Maildir pass with nothing to do while the remote pass runs: the
 * folders waiting in the group are its next work, or its next folder waits
 * for the commit of its own earlier job there. */
static bool md_starved(const sched_t *s)
{
	for (size_t i = 0; i < s->n_accts; i++) {
		const acct_state_t *a = s->accts[i];
		if (a->phase == RUN_REMOTE && a->md && !a->md_job && !a->md_connecting &&
		    (a->next_md >= a->n_md || md_blocked(a)))
			return true;
	}
	return false;
}

/* A session with folders waiting that takes none because the jobs it
 * handed on still run: some of them may be waiting in the group. */
static bool remote_starved(const sched_t *s)
{
	for (size_t i = 0; i < s->n_accts; i++)
		if (sched_remote_starved(s->accts[i]))
			return true;
	return false;
}

/* An account in its remote pass with a small run (small_run in sched_p.h). */
static bool small_running(const sched_t *s)
{
	for (size_t i = 0; i < s->n_accts; i++)
		if (s->accts[i]->phase == RUN_REMOTE && s->accts[i]->small_run)
			return true;
	return false;
}

static void group_prep_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	sched_t *s = w->data;
	size_t n = store_group_pending(s->group);

	(void)revents;
	if (n == 0)
		ev_timer_stop(loop, &s->group_w);
	else if (n >= s->jobs_live || md_starved(s) || remote_starved(s) ||
		 (n >= SCHED_GROUP_MAX && small_running(s)))
		group_flush(s);
	else if (!ev_is_active(&s->group_w)) {
		ev_timer_set(&s->group_w, SCHED_GROUP_DELAY, 0.);
		ev_timer_start(loop, &s->group_w);
	}
}

sched_t *sched_new(struct ev_loop *loop, store_t *st, const config_t *cfg, bool one_at_a_time)
{
	sched_t *s = xcalloc(1, sizeof(*s));

	s->loop = loop;
	s->st = st;
	s->cfg = cfg;
	s->one = one_at_a_time;
	for (size_t i = 0; i < cfg->n_accounts; i++)
		acct_new(s, &cfg->accounts[i]);
	ev_timer_init(&s->push_w, sched_push_cb, 2., 2.);
	s->push_w.data = s;
	s->group = store_group_new(st);
	ev_prepare_init(&s->group_prep, group_prep_cb);
	s->group_prep.data = s;
	ev_prepare_start(loop, &s->group_prep);
	ev_unref(loop); /* the watcher alone does not keep the loop running */
	ev_timer_init(&s->group_w, group_timer_cb, SCHED_GROUP_DELAY, 0.);
	s->group_w.data = s;
	return s;
}

static void acct_free(sched_t *s, acct_state_t *a)
{
	ev_timer_stop(s->loop, &a->refresh_w);
	ev_idle_stop(s->loop, &a->md_next_w);
	maildir_watch_free(a->watch);
	a->watch = NULL;
	acct_abort(a);
	sched_idle_stop_all(a);
	for (waiter_t *w = a->waiters, *n; w; w = n) {
		n = w->next;
		round_account_done(w->round, 1);
		free(w);
	}
	for (waiter_t *w = a->next_waiters, *n; w; w = n) {
		n = w->next;
		round_account_done(w->round, 1);
		free(w);
	}
	free(a->name);
	free(a);
}

void sched_free(sched_t *s)
{
	if (!s)
		return;
	ev_timer_stop(s->loop, &s->push_w);
	/* Jobs still running are cancelled with their accounts, and with them
	 * any commit of theirs still queued: lazy, so only work to redo. */
	for (size_t i = 0; i < s->n_accts; i++)
		acct_free(s, s->accts[i]);
	ev_ref(s->loop);
	ev_prepare_stop(s->loop, &s->group_prep);
	ev_timer_stop(s->loop, &s->group_w);
	store_group_free(s->group);
	free(s->accts);
	free(s->push_fid);
	free(s->push_ms);
	free(s);
}

void sched_set_config(sched_t *s, const config_t *cfg)
{
	s->cfg = cfg;
	for (size_t i = 0; i < s->n_accts; i++) {
		acct_state_t *a = s->accts[i];
		const config_account_t *na = NULL;
		for (size_t k = 0; k < cfg->n_accounts; k++)
			if (strcmp(cfg->accounts[k].name, a->name) == 0)
				na = &cfg->accounts[k];
		bool was_running = a->running && a->phase != RUN_IDLE;
		/* Sessions hold pointers into the old config: stop them all. */
		acct_abort(a);
		sched_idle_stop_all(a);
		if (was_running) {
			a->running = false;
			a->phase = RUN_IDLE;
			s->running--;
		}
		if (!na) {
			a->removed = true;
			ev_timer_stop(s->loop, &a->refresh_w);
			maildir_watch_free(a->watch);
			a->watch = NULL;
			a->acct = NULL;
			a->running = false;
			continue;
		}
		a->acct = na;
		a->removed = false;
		sched_acct_timers(a);
		if (was_running || (a->running && a->phase == RUN_IDLE)) {
			a->running = false;
			sched_acct_request(a, NULL);
		}
	}
	for (size_t k = 0; k < cfg->n_accounts; k++) {
		if (sched_acct_find(s, cfg->accounts[k].name))
			continue;
		acct_state_t *a = acct_new(s, &cfg->accounts[k]);
		if (s->daemon) {
			sched_acct_timers(a);
			sched_acct_request(a, NULL);
		}
	}
}

static bool in_list(const char *only, const char *name)
{
	if (!only)
		return true;
	size_t n = strlen(name);
	for (const char *p = only; *p;) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == n && strncmp(p, name, n) == 0)
			return true;
		if (!e)
			break;
		p = e + 1;
	}
	return false;
}

int sched_sync(sched_t *s, const char *only, sched_done_cb done, void *arg)
{
	round_t *r;
	size_t n = 0;

	/* Check every name first. */
	if (only) {
		for (const char *p = only; *p;) {
			const char *e = strchr(p, ',');
			size_t l = e ? (size_t)(e - p) : strlen(p);
			bool found = false;
			for (size_t i = 0; i < s->n_accts; i++)
				if (!s->accts[i]->removed && strlen(s->accts[i]->name) == l &&
				    strncmp(s->accts[i]->name, p, l) == 0)
					found = true;
			if (l && !found)
				return -1;
			if (!e)
				break;
			p = e + 1;
		}
	}
	r = xcalloc(1, sizeof(*r));
	r->s = s;
	r->cb = done;
	r->arg = arg;
	r->left = 1; /* held until every account is queued */
	for (size_t i = 0; i < s->n_accts; i++) {
		acct_state_t *a = s->accts[i];
		if (a->removed || !in_list(only, a->name))
			continue;
		r->left++;
		r->accounts++;
		n++;
		sched_acct_request(a, r);
	}
	round_account_done(r, 0);
	return 0;
}

typedef struct once_ctx {
	struct ev_loop *loop;
	bool done;
	int status;
} once_ctx_t;

static void once_done(int status, const char *message, void *arg)
{
	once_ctx_t *oc = arg;
	oc->done = true;
	oc->status = status;
	ev_break(oc->loop, EVBREAK_ONE);
}

int sched_sync_once(sched_t *s, const char *only)
{
	once_ctx_t oc = { s->loop, false, 0 };

	if (sched_sync(s, only, once_done, &oc) != 0) {
		log_err("sync: no account named in '%s'; see the accounts in the config", only);
		return 64;
	}
	while (!oc.done)
		ev_run(s->loop, EVRUN_ONCE);
	/* Let deferred frees (sessions) run. */
	ev_run(s->loop, EVRUN_NOWAIT);
	return oc.status;
}

void sched_start(sched_t *s)
{
	s->daemon = true;
	for (size_t i = 0; i < s->n_accts; i++)
		sched_acct_timers(s->accts[i]);
	ev_timer_start(s->loop, &s->push_w);
	sched_sync(s, NULL, NULL, NULL);
}

void sched_account_removed(sched_t *s, const char *account)
{
	acct_state_t *a = sched_acct_find(s, account);

	if (!a)
		return;
	bool was_running = a->running && a->phase != RUN_IDLE;
	acct_abort(a);
	sched_idle_stop_all(a);
	ev_timer_stop(s->loop, &a->refresh_w);
	maildir_watch_free(a->watch);
	a->watch = NULL;
	if (was_running)
		s->running--;
	a->running = false;
	a->phase = RUN_IDLE;
	a->removed = true;
	for (waiter_t *w = a->waiters, *n; w; w = n) {
		n = w->next;
		round_account_done(w->round, 1);
		free(w);
	}
	a->waiters = NULL;
	acct_maybe_start(s);
}

void sched_status_json(sched_t *s, const char *account, buf_t *out)
{
	acct_state_t *a = sched_acct_find(s, account);
	const char *state = "unknown";

	if (a)
		state = a->removed ? "removed"
			: a->running && a->phase != RUN_IDLE ? "syncing"
			: a->running ? "queued"
			: a->last_end == 0 ? "new"
			: a->last_status == 2 ? "held"
			: a->last_status ? "error"
			: "idle";
	buf_printf(out, "\"state\":\"%s\"", state);
	if (!a)
		return;
	buf_printf(out, ",\"last_status\":%d", a->last_status);
	buf_puts(out, ",\"last_error\":\"");
	for (const char *p = a->last_error; *p; p++) {
		if (*p == '"' || *p == '\\')
			buf_printf(out, "\\%c", *p);
		else if ((unsigned char)*p < 0x20)
			buf_printf(out, "\\u%04x", (unsigned char)*p);
		else
			buf_append(out, p, 1);
	}
	buf_puts(out, "\"");
}

