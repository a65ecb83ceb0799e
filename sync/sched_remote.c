/*
 * The remote pass of an account run (see sched.c): the first session logs
 * in and lists the folders (while the Maildir pass still runs), the plan
 * drops the unchanged ones, and the rest are spread over up to
 * maxconnections sessions, each starting its next folder as soon as the
 * last one needs it no more.
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
#include "sync/imap_replica.h"
#include "sync/replica.h"

/* Jobs that handed their session on and still run (waiting for answers,
 * or for their commit), per session: at most this many, and once one
 * runs, only while their folders hold fewer messages than the second
 * bound. What they keep in memory (pairs, bodies) stays bounded so. */
#define SCHED_PIPELINE_DEPTH 8
#define SCHED_PIPELINE_MSGS 50000u
/* In a small run (small_run in sched_p.h) the one session takes up to this
 * many: each job there fetches little, the server always has the next
 * folders queued, and the store commits the finished ones SCHED_GROUP_MAX
 * at a time meanwhile (sched.c). */
#define SCHED_SMALL_DEPTH 64

static size_t conn_limit(acct_state_t *a)
{
	if (a->s->one)
		return 1;
	return a->acct->remote.maxconnections > 0 ? (size_t)a->acct->remote.maxconnections : 1;
}

static void pre_folders_free(acct_state_t *a)
{
	for (size_t i = 0; i < a->n_pre_folders; i++)
		free((char *)a->pre_folders[i].name);
	free(a->pre_folders);
	a->pre_folders = NULL;
	a->n_pre_folders = 0;
	a->pre_listed = false;
}

static void released_cancel(acct_state_t *a);

void sched_conns_free(acct_state_t *a)
{
	released_cancel(a);
	for (size_t i = 0; i < a->n_conns; i++) {
		if (a->conns[i].job) {
			engine_job_t *j = a->conns[i].job;
			a->conns[i].job = NULL;
			engine_cancel(j);
		}
		replica_free(a->conns[i].r);
	}
	free(a->conns);
	a->conns = NULL;
	a->n_conns = 0;
	pre_folders_free(a);
	a->pre_list = a->list_waiting = false;
}

static void conn_job_done(int rc, const engine_stats_t *st, void *ctx);
static void dispatch(acct_state_t *a);

/* One remote job. Its done() may come after its session went on to the
 * next folder (conn_job_release()): then c is NULL and the run is on
 * a->released until then. */
typedef struct conn_run {
	acct_state_t *a;
	conn_t *c;
	conn_t *home;             /* the session it ran on */
	size_t ji;
	engine_job_t *job;
	bool cancelled;
	struct conn_run *prev, *next; /* on a->released */
} conn_run_t;

static void released_unlink(conn_run_t *run)
{
	acct_state_t *a = run->a;

	if (run->prev)
		run->prev->next = run->next;
	else if (a->released == run)
		a->released = run->next;
	if (run->next)
		run->next->prev = run->prev;
	run->prev = run->next = NULL;
}

/* A released job may still wait for answers (its downloads) from a session
 * about to be freed: end it first. */
static void released_cancel(acct_state_t *a)
{
	while (a->released) {
		conn_run_t *run = a->released;
		released_unlink(run);
		run->cancelled = true;
		engine_cancel(run->job); /* its done() frees run */
	}
}

static void conn_job_release(void *ctx);

static uint64_t run_msgs_of(const folder_job_t *fj)
{
	return fj->has_counts ? fj->counts.messages : 0;
}

/* The session may take the next folder (see SCHED_PIPELINE_DEPTH). */
static bool conn_can_take(const conn_t *c)
{
	unsigned depth = c->a->small_run ? SCHED_SMALL_DEPTH : SCHED_PIPELINE_DEPTH;
	return c->state == CONN_READY && !imap_replica_dead(c->r) &&
	       (c->n_released == 0 ||
		(c->n_released < depth && c->released_msgs < SCHED_PIPELINE_MSGS));
}

static void start_job(conn_t *c, size_t ji)
{
	acct_state_t *a = c->a;
	folder_job_t *fj = &a->plan.jobs[ji];
	engine_opts_t o;
	char prefix[256];
	conn_run_t *run = xcalloc(1, sizeof(*run));

	sched_engine_opts_fill(a, &o, fj->folder_id, STORE_REPLICA_REMOTE, fj->remote, fj->local, prefix,
			 sizeof(prefix));
	o.has_counts = fj->has_counts;
	o.counts = fj->counts;
	o.release = conn_job_release;
	o.read_ahead = !fj->again;
	o.group = a->s->group;
	run->a = a;
	run->c = c;
	run->home = c;
	run->ji = ji;
	c->state = CONN_BUSY;
	c->job_idx = ji;
	a->busy++;
	c->job = (engine_job_t *)1;
	a->s->jobs_live++;
	engine_job_t *j = engine_sync_folder(a->s->st, c->r, &o, conn_job_done, run);
	if (j)
		run->job = j;
	if (c->job == (engine_job_t *)1)
		c->job = j;
}

/* The job is done with its session and commits next: the session starts
 * on the next folder meanwhile, so the server works while we commit. */
static void conn_job_release(void *ctx)
{
	conn_run_t *run = ctx;
	conn_t *c = run->c;

	if (!c)
		return;
	run->c = NULL;
	c->n_released++;
	c->released_msgs += run_msgs_of(&run->a->plan.jobs[run->ji]);
	run->next = run->a->released;
	if (run->next)
		run->next->prev = run;
	run->a->released = run;
	c->job = NULL;
	c->state = CONN_READY;
	dispatch(run->a);
}

static void create_cb(int status, void *ctx)
{
	conn_t *c = ctx;
	acct_state_t *a = c->a;
	folder_job_t *fj = &a->plan.jobs[c->job_idx];

	a->busy--;
	if (status != REPLICA_OK) {
		log_err("sync: acct=%s box=%s: cannot create folder %s on the server: %s", a->name,
			fj->local, fj->remote, replica_strerror(status));
		a->status = sched_worse(a->status, 1);
		a->failed++;
		c->state = status == REPLICA_BAD ? CONN_NONE : CONN_READY;
		if (status == REPLICA_BAD) {
			replica_free(c->r);
			c->r = NULL;
		}
		dispatch(a);
		return;
	}
	log_info("sync: acct=%s box=%s: created folder %s on the server", a->name, fj->local,
		 fj->remote);
	fj->create_remote = false;
	start_job(c, c->job_idx);
}

/* The job asked to run again (ENGINE_AGAIN): the folder goes to the end
 * of the queue once more, without a read ahead. */
static void run_again(acct_state_t *a, size_t ji)
{
	folder_job_t *fj;

	a->plan.jobs = xrealloc(a->plan.jobs, (a->plan.n + 1) * sizeof(*a->plan.jobs));
	fj = &a->plan.jobs[a->plan.n++];
	*fj = a->plan.jobs[ji];
	fj->local = xstrdup(fj->local);
	fj->remote = xstrdup(fj->remote);
	fj->create_remote = false;
	fj->again = true;
}

static void conn_job_done(int rc, const engine_stats_t *st, void *ctx)
{
	conn_run_t *run = ctx;
	acct_state_t *a = run->a;
	conn_t *c = run->c;
	folder_job_t *fj = &a->plan.jobs[run->ji];

	bool cancelled = run->cancelled;
	conn_t *home = run->home;
	size_t run_ji = run->ji;
	if (!c)
		released_unlink(run);
	free(run);
	a->s->jobs_live--;
	if (cancelled || (c && !c->job))
		return; /* cancelled by sched_conns_free() */
	if (!c) {
		home->n_released--;
		home->released_msgs -= run_msgs_of(fj);
	}
	a->busy--;
	replica_t *jr = c ? c->r : home->r;
	if (rc == ENGINE_REPLICA_ERR && !fj->retried && jr && imap_replica_link_lost(jr)) {
		/* The link ended under the job: the folder goes to a new
		 * session once (a second loss fails it). What the job had
		 * committed stays; its intents make the next job safe. */
		conn_t *lc = c ? c : home;
		if (!lc->loss_told)
			log_warn("sync: acct=%s box=%s: %s; syncing the folders on that connection "
				 "again on a new one",
				 a->name, fj->local, st->message[0] ? st->message : "connection lost");
		else
			log_info("sync: acct=%s box=%s: syncing the folder again on a new connection",
				 a->name, fj->local);
		lc->loss_told = true;
		sched_note_result(a, fj->local, false, ENGINE_AGAIN, st);
		run_again(a, run_ji);
		a->plan.jobs[a->plan.n - 1].retried = true;
	} else {
		sched_note_result(a, fj->local, false, rc, st);
		if (rc == ENGINE_OK && !st->skipped)
			sched_md_enqueue(a, fj->folder_id, fj->local);
		if (rc == ENGINE_AGAIN)
			run_again(a, run_ji);
	}
	if (!c) {
		/* Released before its commit: the session went on already. */
	} else if (rc == ENGINE_REPLICA_ERR && c->n_released) {
		/* Jobs it handed on still wait for its (failed) answers:
		 * freed once they had them, in dispatch_once(). */
		c->job = NULL;
		c->state = CONN_READY;
	} else if (rc == ENGINE_REPLICA_ERR) {
		c->job = NULL;
		replica_free(c->r);
		c->r = NULL;
		c->state = CONN_NONE;
	} else {
		c->job = NULL;
		c->state = CONN_READY;
	}
	dispatch(a);
}

static void run_on(conn_t *c)
{
	acct_state_t *a = c->a;
	size_t ji = a->next_job++;
	folder_job_t *fj = &a->plan.jobs[ji];

	if (fj->create_remote) {
		c->state = CONN_BUSY;
		c->job_idx = ji;
		a->busy++;
		c->r->ops->create_folder(c->r, fj->remote, fj->special, create_cb, c);
		return;
	}
	start_job(c, ji);
}

static void extra_connect_cb(int status, void *ctx)
{
	conn_t *c = ctx;
	acct_state_t *a = c->a;

	a->busy--;
	if (status == REPLICA_OK && !a->discovered) {
		/* Opened early: waits for the folder plan. */
		c->state = CONN_READY;
		return;
	}
	if (status != REPLICA_OK) {
		char why[512];
		const char *reason = imap_replica_reason(c->r, why, sizeof(why));
		log_warn("sync: acct=%s: %s: %s%s", a->name,
			 c->reconnecting ? "cannot connect again after the lost connection"
					 : "extra connection failed",
			 reason ? reason : replica_strerror(status),
			 c->reconnecting ? "" : "; going on with fewer");
		replica_free(c->r);
		c->r = NULL;
		c->state = CONN_NONE;
		a->conn_failed = true;
	} else {
		c->state = CONN_READY;
	}
	if (a->discovered)
		dispatch(a);
}

static void open_extra(acct_state_t *a, conn_t *c)
{
	char label[256];

	snprintf(label, sizeof(label), "%s#%zu", a->name, c->idx);
	c->r = imap_replica_new(a->s->loop, a->acct, label);
	c->reconnecting = c->loss_told;
	c->loss_told = false;
	c->state = CONN_CONNECTING;
	a->busy++;
	c->r->ops->connect(c->r, &c->caps, extra_connect_cb, c);
}

/* A session still logging in that no folder will wait for: drop it now
 * rather than make the run wait for its login. */
static void cancel_connecting(acct_state_t *a, size_t waiting)
{
	size_t connecting = 0;

	for (size_t i = 0; i < a->n_conns; i++)
		if (a->conns[i].state == CONN_CONNECTING)
			connecting++;
	for (size_t i = a->n_conns; i-- > 0 && connecting > waiting;) {
		conn_t *c = &a->conns[i];
		if (c->state != CONN_CONNECTING)
			continue;
		replica_free(c->r); /* its connect callback is not called */
		c->r = NULL;
		c->state = CONN_NONE;
		a->busy--;
		connecting--;
	}
}

static void dispatch_once(acct_state_t *a);

/* Jobs may finish synchronously inside dispatch (skipped folders): keep
 * the recursion flat so the run ends exactly once. */
static void dispatch(acct_state_t *a)
{
	if (a->phase != RUN_REMOTE)
		return;
	if (a->in_dispatch) {
		a->redispatch = true;
		return;
	}
	a->in_dispatch = true;
	do {
		a->redispatch = false;
		dispatch_once(a);
	} while (a->redispatch && a->phase == RUN_REMOTE);
	a->in_dispatch = false;
	if (a->remote_done) {
		a->remote_done = false;
		a->phase = RUN_MAILDIR_OUT;
		sched_conns_free(a);
		sched_run_step(a);
	}
}

static int job_size_cmp(const void *x, const void *y)
{
	const folder_job_t *a = x, *b = y;
	uint32_t m = a->has_counts ? a->counts.messages : 0;
	uint32_t n = b->has_counts ? b->counts.messages : 0;
	if (m != n)
		return m > n ? -1 : 1;
	return a->folder_id < b->folder_id ? -1 : a->folder_id > b->folder_id;
}

/* Up to this many new messages on the server, with nothing of the store's
 * to send, the folders that changed all go through the first session. An
 * extra login costs the server a process and more than there is to fetch:
 * on the bench's incremental resync (50 folders, 100 new messages) one
 * session took 74 to 76 ms against 79 to 81 ms for three, and Dovecot 20 to
 * 50 ms of CPU against 50 to 70. */
#define SCHED_SMALL_RUN 256

/* Whether folder fj keeps a run small (see small_run in sched_p.h): synced
 * before under the same UIDVALIDITY, with modseqs (no full scan), not held,
 * its store changes all pushed; its new UIDs are added to *incoming. */
static bool small_folder(store_txn_t *txn, const folder_job_t *fj, uint64_t *incoming)
{
	store_replica_t rs;
	store_folder_t f;

	if (fj->create_remote || !fj->has_counts || !fj->counts.highestmodseq ||
	    store_replica_get(txn, fj->folder_id, STORE_REPLICA_REMOTE, &rs) != 0 ||
	    rs.uidvalidity != fj->counts.uidvalidity ||
	    store_folder_get(txn, fj->folder_id, &f) != 0 || f.state == STORE_FOLDER_HELD ||
	    rs.pushed_modseq != f.highestmodseq)
		return false;
	if (fj->counts.uidnext > rs.uidnext)
		*incoming += fj->counts.uidnext - rs.uidnext;
	return *incoming <= SCHED_SMALL_RUN;
}

/* Count the folders the counters prove unchanged and drop them from the
 * queue, so no session is opened for them, and tell whether the rest make
 * a small run: one read of the store for both. */
static void skip_unchanged(acct_state_t *a)
{
	size_t k = a->next_job;
	store_txn_t *txn = NULL;
	bool have_txn = store_txn_begin_read(a->s->st, &txn) == 0;
	uint64_t incoming = 0;

	a->small_run = have_txn && a->n_conns > 1 && (a->conns[0].caps & REPLICA_CAP_MODSEQ);
	for (size_t i = a->next_job; i < a->plan.n; i++) {
		folder_job_t *fj = &a->plan.jobs[i];
		engine_opts_t o;
		char prefix[256];
		sched_engine_opts_fill(a, &o, fj->folder_id, STORE_REPLICA_REMOTE, fj->remote, fj->local,
				 prefix, sizeof(prefix));
		o.has_counts = fj->has_counts;
		o.counts = fj->counts;
		if (!fj->create_remote && have_txn && engine_unchanged_txn(txn, &o)) {
			a->folders++;
			a->skipped++;
			free(fj->local);
			free(fj->remote);
			continue;
		}
		if (a->small_run)
			a->small_run = small_folder(txn, fj, &incoming);
		a->plan.jobs[k++] = *fj;
	}
	store_txn_abort(txn);
	a->plan.n = k;
	/* Biggest first: opening a folder costs the server about in proportion
	 * to its size, and a big one last would leave the other sessions idle. */
	if (k - a->next_job > 1)
		qsort(a->plan.jobs + a->next_job, k - a->next_job, sizeof(*a->plan.jobs),
		      job_size_cmp);
}

bool sched_remote_starved(const acct_state_t *a)
{
	if (a->phase != RUN_REMOTE || !a->discovered || a->next_job >= a->plan.n)
		return false;
	for (size_t i = 0; i < a->n_conns; i++)
		if (a->conns[i].state == CONN_READY && !conn_can_take(&a->conns[i]))
			return true;
	return false;
}

static void dispatch_once(acct_state_t *a)
{
	for (size_t i = 0; i < a->n_conns && a->next_job < a->plan.n; i++) {
		conn_t *c = &a->conns[i];
		if (c->state == CONN_READY && imap_replica_dead(c->r)) {
			/* Lost while only jobs it handed on used it: no folder
			 * goes to it. Once those jobs had their answers (the
			 * failures), a new session below takes its place. */
			if (c->n_released == 0) {
				replica_free(c->r);
				c->r = NULL;
				c->state = CONN_NONE;
			}
			continue;
		}
		if (conn_can_take(c))
			run_on(c);
	}
	/* Open more sessions for the folders still waiting; in a small run
	 * only one, to replace a lost one. */
	size_t waiting = a->plan.n - a->next_job;
	cancel_connecting(a, waiting);
	size_t live = 0;
	for (size_t i = 0; i < a->n_conns; i++)
		if (a->conns[i].state != CONN_NONE)
			live++;
	for (size_t i = 0; i < a->n_conns && waiting > 0 && !a->conn_failed; i++) {
		conn_t *c = &a->conns[i];
		if (c->state == CONN_CONNECTING) {
			waiting--;
			continue;
		}
		if (c->state != CONN_NONE || (a->small_run && live > 0))
			continue;
		live++;
		open_extra(a, c);
		waiting--;
	}
	/* A job that ended inside this pass (a session lost under it) asked
	 * for another one: the session states above may be stale. */
	if (a->busy > 0 || a->redispatch)
		return;
	if (a->next_job < a->plan.n) {
		/* No session left to work with. */
		unsigned n = (unsigned)(a->plan.n - a->next_job);
		log_err("sync: acct=%s: lost every connection; %u folder%s not synced this time",
			a->name, n, n == 1 ? "" : "s");
		a->failed += n;
		a->status = sched_worse(a->status, 1);
		a->next_job = a->plan.n;
	}
	a->remote_done = true;
}

/* Discovery is over: drop the unchanged folders, remember how many sessions
 * the next run should open early, and start. */
static void plan_ready(acct_state_t *a)
{
	skip_unchanged(a);
	a->discovered = true;
	a->last_work = (long)(a->plan.n - a->next_job);
	if (a->small_run && a->last_work > 1)
		a->last_work = 1;
	dispatch(a);
}

static void status_cb(int status, const replica_counts_t *counts, const bool *ok, size_t n,
		      void *ctx)
{
	acct_state_t *a = ctx;
	size_t k = 0;

	a->busy--;
	if (status == REPLICA_OK) {
		for (size_t i = 0; i < a->plan.n; i++) {
			folder_job_t *fj = &a->plan.jobs[i];
			if (fj->has_counts || fj->create_remote)
				continue;
			if (k < n && ok[k]) {
				fj->counts = counts[k];
				fj->has_counts = true;
			}
			k++;
		}
	}
	a->conns[0].state = CONN_READY;
	plan_ready(a);
}

static void first_connect_cb(int status, void *ctx);

/* The remote pass cannot go on (logged already): the run goes on with the
 * Maildir's share and ends with errors. */
static void remote_fail(acct_state_t *a)
{
	a->status = sched_worse(a->status, 1);
	a->phase = RUN_MAILDIR_OUT;
	sched_conns_free(a);
	sched_run_step(a);
}

/* The first session (it lists the folders), not yet connected. */
static void conn0_new(acct_state_t *a)
{
	conn_t *c0 = &a->conns[0];

	c0->r = imap_replica_new(a->s->loop, a->acct, a->name);
	c0->loss_told = false;
	c0->state = CONN_CONNECTING;
}

static void list_cb(int status, const replica_folder_t *folders, size_t n, void *ctx)
{
	acct_state_t *a = ctx;
	conn_t *c0 = &a->conns[0];

	a->busy--;
	if (status != REPLICA_OK) {
		char why[512];
		const char *reason = imap_replica_reason(c0->r, why, sizeof(why));
		if (!a->list_retried && imap_replica_link_lost(c0->r)) {
			/* The link ended under the listing: once more on a new
			 * session, as for a folder (see conn_job_done()). */
			a->list_retried = true;
			log_warn("sync: acct=%s: %s; listing the folders again on a new connection",
				 a->name, reason ? reason : replica_strerror(status));
			replica_free(c0->r);
			conn0_new(a);
			a->busy++;
			c0->r->ops->connect(c0->r, &c0->caps, first_connect_cb, a);
			return;
		}
		log_err("sync: acct=%s: cannot list folders on the server: %s", a->name,
			reason ? reason : replica_strerror(status));
		remote_fail(a);
		return;
	}
	int rc = folders_plan(a->s->st, a->acct, folders, n, &a->plan);
	for (size_t i = 0; i < a->plan.n_warnings; i++)
		log_warn("sync: acct=%s: %s", a->name, a->plan.warnings[i]);
	if (rc) {
		log_err("sync: acct=%s: cannot record folders in the store: %s", a->name,
			store_strerror(rc));
		remote_fail(a);
		return;
	}
	a->account_id = a->plan.account_id;
	/* Counters of every folder the LIST did not give, in one pipelined round. */
	size_t need = 0;
	for (size_t i = 0; i < a->plan.n; i++)
		if (!a->plan.jobs[i].has_counts && !a->plan.jobs[i].create_remote)
			need++;
	if (need && (c0->caps & REPLICA_CAP_STATUS) && c0->r->ops->status) {
		const char **names = xmalloc(need * sizeof(char *));
		size_t k = 0;
		for (size_t i = 0; i < a->plan.n; i++)
			if (!a->plan.jobs[i].has_counts && !a->plan.jobs[i].create_remote)
				names[k++] = a->plan.jobs[i].remote;
		a->busy++;
		c0->r->ops->status(c0->r, names, need, status_cb, a);
		free(names);
		return;
	}
	c0->state = CONN_READY;
	plan_ready(a);
}

/* Open up to want extra sessions that are not open yet. */
static void open_extras(acct_state_t *a, size_t want)
{
	for (size_t i = 1; i < a->n_conns && want > 0; i++) {
		if (a->conns[i].state != CONN_NONE)
			continue;
		open_extra(a, &a->conns[i]);
		want--;
	}
}

/*
 * When the last discovery of this process left more than one folder to
 * sync, that many sessions (minus the first one) log in while the first
 * one lists the folders, so they are ready when the plan is (LIST-STATUS
 * takes tens of milliseconds when folders changed: the server recomputes
 * their counters). A run that finds fewer folders to sync cuts the logins
 * it does not need. Only after the first login succeeded, so a wrong
 * password costs one attempt, not one per session.
 *
 * With no discovery yet (the daemon's first run, every -o run) sessions
 * open once the plan asks for them. A slow listing only says that folders
 * changed, not how much: opening every session then cost the bench's small
 * incremental resync (one session serves it) about 5 ms of its 60, as the
 * extra logins took the server's time while it listed (medians of 6, 57
 * against 62 ms), and would gain a large run no more than one login.
 */
static void open_early(acct_state_t *a)
{
	if (a->phase != RUN_REMOTE || a->discovered || a->n_conns < 2 || a->last_work <= 1)
		return;
	size_t want = a->n_conns - 1;
	if ((size_t)a->last_work - 1 < want)
		want = (size_t)a->last_work - 1;
	open_extras(a, want);
}

static void first_connect_cb(int status, void *ctx)
{
	acct_state_t *a = ctx;
	conn_t *c0 = &a->conns[0];

	a->busy--;
	if (status != REPLICA_OK) {
		char why[512];
		const char *reason = imap_replica_reason(c0->r, why, sizeof(why));
		log_err("sync: acct=%s: %s", a->name, reason ? reason : "cannot connect to the server");
		snprintf(a->last_error, sizeof(a->last_error), "%s", imap_replica_error(c0->r));
		remote_fail(a);
		return;
	}
	c0->state = CONN_BUSY;
	a->busy++;
	if (!a->pre_list) {
		c0->r->ops->list_folders(c0->r, list_cb, a);
	} else if (a->pre_listed) {
		/* The early listing answered while the Maildir pass ran. */
		log_trace(LOG_CAT_THREAD, "sync: acct=%s: folder list answered during the Maildir pass",
			  a->name);
		a->pre_list = false;
		list_cb(a->pre_list_status, a->pre_folders, a->n_pre_folders, a);
		pre_folders_free(a);
		return;
	} else {
		log_trace(LOG_CAT_THREAD, "sync: acct=%s: Maildir pass done, folder list still coming",
			  a->name);
		a->list_waiting = true; /* pre_list_cb() goes on */
	}
	open_early(a);
}

/* The early listing (see pre_*): hand it on if the remote pass waits for
 * it, else keep a copy for first_connect_cb(). */
static void pre_list_cb(int status, const replica_folder_t *folders, size_t n, void *ctx)
{
	acct_state_t *a = ctx;

	if (a->list_waiting) {
		a->list_waiting = false;
		a->pre_list = false;
		list_cb(status, folders, n, a);
		return;
	}
	pre_folders_free(a);
	a->pre_list_status = status;
	if (status == REPLICA_OK && n > 0) {
		a->pre_folders = xmalloc(n * sizeof(*folders));
		for (size_t i = 0; i < n; i++) {
			a->pre_folders[i] = folders[i];
			a->pre_folders[i].name = xstrdup(folders[i].name);
		}
		a->n_pre_folders = n;
	}
	a->pre_listed = true;
}

/* The first session's connect answered while the Maildir pass still runs:
 * keep the answer for sched_remote_start(). */
static void pre_connect_cb(int status, void *ctx)
{
	acct_state_t *a = ctx;

	if (a->phase == RUN_REMOTE) {
		first_connect_cb(status, a);
		return;
	}
	a->pre_done = true;
	a->pre_status = status;
	if (status == REPLICA_OK) {
		a->pre_list = true;
		a->conns[0].r->ops->list_folders(a->conns[0].r, pre_list_cb, a);
	}
}

static void conns_alloc(acct_state_t *a)
{
	size_t n = conn_limit(a);

	a->conns = xcalloc(n, sizeof(*a->conns));
	a->n_conns = n;
	for (size_t i = 0; i < n; i++) {
		a->conns[i].a = a;
		a->conns[i].idx = i;
	}
	a->conn_failed = false;
	a->discovered = false;
	a->list_retried = false;
	a->next_job = 0;
	conn0_new(a);
}

/* Connect and log in while the Maildir pass reads the tree: the two overlap
 * instead of adding up. */
void sched_pre_connect(acct_state_t *a)
{
	a->pre_done = false;
	a->pre_started = false;
	if (!a->acct->maildir_path || a->conns)
		return;
	conns_alloc(a);
	a->pre_started = true;
	a->conns[0].r->ops->connect(a->conns[0].r, &a->conns[0].caps, pre_connect_cb, a);
}

void sched_remote_start(acct_state_t *a)
{
	a->busy = 1;
	if (a->pre_started && a->conns) {
		a->pre_started = false;
		if (a->pre_done)
			first_connect_cb(a->pre_status, a);
		/* else pre_connect_cb() goes on */
		return;
	}
	conns_alloc(a);
	a->conns[0].r->ops->connect(a->conns[0].r, &a->conns[0].caps, first_connect_cb, a);
}
