/*
 * Scheduling of syncs: which accounts and folders sync when, over how many
 * connections.
 *
 *  - Accounts sync in parallel, at most config maxsyncaccounts at a time
 *    (one with -1). Within an account, folders are spread over up to
 *    remote.maxconnections sessions (one with -1); the first session lists
 *    the folders and asks STATUS (or LIST-STATUS) for all of them in one
 *    pipelined round, so unchanged folders are skipped without a SELECT.
 *    The other sessions log in meanwhile when the last discovery (or, on a
 *    first run, the store's folder count) says they will be needed; those
 *    the plan does not need are closed before they are used.
 *  - One account sync is: Maildir -> store (local changes first), remote <->
 *    store for every folder, store -> Maildir.
 *  - Daemon mode adds: a timer per account (autorefresh minutes), IDLE on the
 *    account's `idle` folders between syncs (a change starts a sync within
 *    seconds), "sync now" (SIGUSR1, the CLI), and a prompt push when the
 *    store changed locally (listener, Maildir) and the remote has not seen
 *    it yet.
 *
 * Outcome of a sync as an exit status (INTERFACE.md): 0 all good, 1 some
 * account or folder failed, 2 a folder is held for safety.
 *
 * Ownership: the scheduler borrows loop, store and config; sched_set_config()
 * swaps the config (running syncs are cancelled and restarted; nothing is
 * lost: pending operations are resolved by the next run).
 */
#ifndef IB_SYNC_SCHED_H
#define IB_SYNC_SCHED_H

#include <ev.h>
#include <stdbool.h>

#include "lib/buf.h"
#include "lib/config.h"
#include "store/store.h"

typedef struct sched sched_t;

/* Called once when a requested sync ended; status is an exit status and
 * message a one-line summary for people. */
typedef void (*sched_done_cb)(int status, const char *message, void *arg);

sched_t *sched_new(struct ev_loop *loop, store_t *st, const config_t *cfg, bool one_at_a_time);
/* Cancel everything and free. */
void sched_free(sched_t *s);

/* Replace the config (the old one may be freed after this returns). */
void sched_set_config(sched_t *s, const config_t *cfg);

/*
 * Sync the accounts named in only (comma-separated; NULL = all) once. done
 * runs when every one finished (possibly before this returns when there is
 * nothing to do). Returns 0, or -1 if an account name is unknown (done is
 * not called).
 */
int sched_sync(sched_t *s, const char *only, sched_done_cb done, void *arg);

/* sched_sync() and run the loop until it ends; returns the exit status. */
int sched_sync_once(sched_t *s, const char *only);

/* Daemon mode: first sync of every account, then timers, IDLE and pushes. */
void sched_start(sched_t *s);

/* Stop an account's syncing (it was removed). */
void sched_account_removed(sched_t *s, const char *account);

/* Members of a JSON object describing account (see daemon.h status_json). */
void sched_status_json(sched_t *s, const char *account, buf_t *out);

/*
 * Hook for the daemon (server/daemon.h): create a scheduler for the daemon
 * d and register it with daemon_set_sync(). Opens the store itself when the
 * daemon did not. Returns 0 or -1 (logged).
 */
struct daemon;
int sched_attach_daemon(struct daemon *d);

#endif
