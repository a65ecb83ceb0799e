/*
 * One background thread for blocking work (writing and syncing Maildir
 * files) so the event loop goes on with the network meanwhile.
 *
 * It runs one job at a time. The job's function runs on the thread and must
 * touch only what the caller handed over; its done() runs on the loop's
 * thread, from the loop or from worker_wait(). While a job runs, the loop
 * stays alive (the wake-up watcher is active).
 */
#ifndef IB_WORKER_H
#define IB_WORKER_H

#include <ev.h>
#include <stdbool.h>

typedef struct worker worker_t;

/* Runs on the worker's thread; its return value goes to done(). */
typedef int (*worker_fn)(void *arg);
/* Runs on the loop's thread once fn returned. */
typedef void (*worker_done_fn)(int rc, void *arg);

/* A worker whose done() calls come from loop. Its thread is made at the
 * first worker_start(); when it cannot be, that job runs in the caller and
 * its done() still comes from the loop. */
worker_t *worker_new(struct ev_loop *loop);

/* A job was started and its done() has not run yet. */
bool worker_busy(const worker_t *w);

/* Start fn(arg) on the thread; the worker must not be busy. */
void worker_start(worker_t *w, worker_fn fn, worker_done_fn done, void *arg);

/* Block until the running job (if any) returns, then run its done() now. */
void worker_wait(worker_t *w);

/* worker_wait(), then stop the thread and free w. NULL is ignored. */
void worker_free(worker_t *w);

#endif
