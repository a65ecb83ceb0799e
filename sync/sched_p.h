/*
 * Private to the scheduler (sched.c: account runs; sched_remote.c: their
 * remote pass; sched_watch.c: IDLE, timers, pushes between runs;
 * sched_daemon.c: the daemon hook). Nothing outside sync/sched*.c includes
 * it.
 */
#ifndef IB_SYNC_SCHED_P_H
#define IB_SYNC_SCHED_P_H

#include "sync/engine.h"
#include "sync/folders.h"
#include "sync/maildir_watch.h"
#include "sync/replica.h"
#include "sync/sched.h"

enum conn_state { CONN_NONE, CONN_CONNECTING, CONN_READY, CONN_BUSY };

enum run_phase { RUN_IDLE, RUN_MAILDIR_IN, RUN_REMOTE, RUN_MAILDIR_OUT, RUN_DONE, RUN_WAIT };

typedef struct waiter {
	struct round *round;
	struct waiter *next;
} waiter_t;

/* One sched_sync() request over several accounts. */
typedef struct round {
	sched_t *s;
	int status;
	int left;
	sched_done_cb cb;
	void *arg;
	unsigned held, failed, accounts;
} round_t;

typedef struct acct_state acct_state_t;

typedef struct conn {
	acct_state_t *a;
	size_t idx;
	replica_t *r;
	enum conn_state state;
	unsigned caps;
	engine_job_t *job;
	size_t job_idx;
	unsigned n_released;      /* its jobs that handed it on and still run */
	bool loss_told;           /* its session's loss was logged (once for all its folders) */
	bool reconnecting;        /* it connects again after that loss */
	uint64_t released_msgs;   /* their folders' messages (LIST-STATUS) */
} conn_t;

typedef struct idle_sess {
	acct_state_t *a;
	char *remote;
	replica_t *r;
	unsigned caps;
	bool armed;
} idle_sess_t;

struct acct_state {
	sched_t *s;
	const config_account_t *acct;
	char *name;
	uint32_t account_id;
	bool running;
	bool again;              /* a sync was asked for while running */
	bool removed;
	enum run_phase phase;
	waiter_t *waiters;       /* rounds waiting for the current run */
	waiter_t *next_waiters;  /* rounds waiting for the next run */
	int status;              /* exit status of the current run */
	double started;
	/* remote */
	conn_t *conns;
	size_t n_conns;
	bool conn_failed;
	folder_plan_t plan;
	size_t next_job;
	int busy;
	struct conn_run *released; /* jobs whose session went on without them */
	bool in_dispatch, redispatch, remote_done;
	bool discovered;         /* the folder plan of this run is known */
	bool list_retried;       /* the listing went again after its connection was lost */
	/* The first session connects while the Maildir pass runs (pre_*):
	 * started, answered, and its status then. */
	bool pre_started, pre_done;
	int pre_status;
	/* It also lists the folders as soon as it is in, so the server works on
	 * LIST-STATUS while the Maildir pass goes on; the plan waits for both.
	 * pre_list: the LIST was sent; pre_listed: its answer is kept below;
	 * list_waiting: remote_start() waits for that answer. */
	bool pre_list, pre_listed, list_waiting;
	int pre_list_status;
	replica_folder_t *pre_folders;
	size_t n_pre_folders;
	ev_idle md_next_w;       /* the next Maildir job, once the loop is idle */
	/* Folders the last discovery left to sync (-1: none yet); the next
	 * run opens that many sessions before its own discovery ends. */
	long last_work;
	/* This run's folders bring at most SCHED_SMALL_RUN new messages down
	 * and have nothing to send (skip_unchanged()): one session serves. */
	bool small_run;
	/* maildir */
	replica_t *md;
	uint32_t *md_folders;
	char **md_names;
	size_t n_md, next_md;
	engine_job_t *md_job;
	struct md_run *md_run;      /* md_job's */
	/* Maildir jobs past their last write to the tree, their final commit
	 * waiting in the group (md_job_release()). */
	struct md_run *md_released;
	bool md_in_started, md_in_listed, md_out_listed, md_connecting;
	/* stats of the run */
	unsigned folders, skipped, down, up, del, flags, held, failed, deferred;
	unsigned md_in, md_out; /* Maildir changes taken in, written */
	/* a run again shortly, for uploads held back after a crash */
	ev_timer retry_w;
	waiter_t *retry_waiters;
	unsigned retries;
	/* daemon */
	ev_timer refresh_w;
	maildir_watch_t *watch;      /* inotify on the Maildir tree */
	idle_sess_t *idle;
	size_t n_idle;
	double last_end;
	int last_status;
	char last_error[1024];
};

struct sched {
	struct ev_loop *loop;
	store_t *st;
	const config_t *cfg;
	bool one;
	bool daemon;
	acct_state_t **accts;
	size_t n_accts;
	int running;
	ev_timer push_w;
	/* last store modseq that triggered a push, per folder id */
	uint32_t *push_fid;
	uint64_t *push_ms;
	size_t n_push;
	void *daemon_ref;        /* the daemon_t when attached */
	/* The remote jobs' final commits, grouped (see group_prep_cb()). */
	store_group_t *group;
	unsigned jobs_live;      /* folder jobs (remote and Maildir) started and not done */
	ev_prepare group_prep;
	ev_timer group_w;
};

/* sched.c */
/* Queue a run of a, joining a queued one; r (may be NULL) waits for it. */
void sched_acct_request(acct_state_t *a, round_t *r);
acct_state_t *sched_acct_find(sched_t *s, const char *name);
/* The run's exit status after another result: 2 (held) > 1 (errors) > 0. */
int sched_worse(int a, int b);
/* Step a's run to its next phase (from a callback that ended one). */
void sched_run_step(acct_state_t *a);
/* Count and log one folder job's result. */
void sched_note_result(acct_state_t *a, const char *box, bool maildir, int rc,
		       const engine_stats_t *st);
/* Engine options for folder fid of a on replica rid; prefix (plen bytes)
 * holds the log prefix. */
void sched_engine_opts_fill(acct_state_t *a, engine_opts_t *o, uint32_t fid, uint32_t rid,
			    const char *rname, const char *local, char *prefix, size_t plen);
/* A folder the remote pass finished goes out to the Maildir. */
void sched_md_enqueue(acct_state_t *a, uint32_t fid, const char *name);

/* sched_remote.c */
/* Connect and log in while the Maildir pass reads the tree. */
void sched_pre_connect(acct_state_t *a);
/* A session of a's remote pass is free but may not take the next folder
 * (SCHED_PIPELINE_DEPTH jobs it handed on still run). */
bool sched_remote_starved(const acct_state_t *a);
/* The remote pass: list, plan, then the folders over the sessions. */
void sched_remote_start(acct_state_t *a);
/* Close every session of a, cancelling the jobs still on them. */
void sched_conns_free(acct_state_t *a);

/* sched_watch.c */
/* Watch the account's idle folders (after every run, daemon mode). */
void sched_idle_arm_all(acct_state_t *a);
void sched_idle_stop_all(acct_state_t *a);
/* (Re)start the autorefresh timer and the Maildir watcher of a. */
void sched_acct_timers(acct_state_t *a);
void sched_refresh_cb(struct ev_loop *loop, ev_timer *w, int revents);
void sched_push_cb(struct ev_loop *loop, ev_timer *w, int revents);

#endif
