/*
 * One background thread, one job at a time; see worker.h.
 */
#include "sync/worker.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#include "lib/util.h"

struct worker {
	struct ev_loop *loop;
	ev_async wake; /* the thread -> the loop: a job returned */
	pthread_t thread;
	bool started; /* the thread runs: made at the first job */
	pthread_mutex_t mu;
	pthread_cond_t cv; /* both ways: a job to run, a job returned, quit */
	/* under mu */
	worker_fn fn;
	void *arg;
	bool queued;   /* fn is waiting for the thread */
	bool finished; /* fn returned rc */
	bool quit;
	int rc;
	/* the loop's thread only */
	worker_done_fn done;
	bool busy;
};

static void *thread_main(void *p)
{
	worker_t *w = p;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->queued && !w->quit)
			pthread_cond_wait(&w->cv, &w->mu);
		if (!w->queued)
			break;
		w->queued = false;
		pthread_mutex_unlock(&w->mu);
		int rc = w->fn(w->arg);
		pthread_mutex_lock(&w->mu);
		w->rc = rc;
		w->finished = true;
		pthread_cond_broadcast(&w->cv);
		/* Under the lock: worker_free() cannot have gone past its join
		 * wait while this still touches the loop. */
		ev_async_send(w->loop, &w->wake);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* The job returned: hand its result to done(), on the loop's thread. */
static void complete(worker_t *w)
{
	pthread_mutex_lock(&w->mu);
	bool fin = w->finished;
	int rc = w->rc;
	w->finished = false;
	pthread_mutex_unlock(&w->mu);
	if (!w->busy || !fin)
		return;
	ev_async_stop(w->loop, &w->wake);
	w->busy = false;
	worker_done_fn done = w->done;
	void *arg = w->arg;
	w->done = NULL;
	done(rc, arg);
}

static void wake_cb(struct ev_loop *loop, ev_async *a, int revents)
{
	(void)loop;
	(void)revents;
	complete(a->data);
}

worker_t *worker_new(struct ev_loop *loop)
{
	worker_t *w = xcalloc(1, sizeof(*w));
	w->loop = loop;
	ev_async_init(&w->wake, wake_cb);
	w->wake.data = w;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	return w;
}

/* The thread, made when the first job comes: a session that writes nothing
 * costs no thread. It takes no signals: the loop's handlers stay on the
 * loop's thread. */
static bool start_thread(worker_t *w)
{
	if (w->started)
		return true;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	w->started = pthread_create(&w->thread, NULL, thread_main, w) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return w->started;
}

bool worker_busy(const worker_t *w)
{
	return w->busy;
}

void worker_start(worker_t *w, worker_fn fn, worker_done_fn done, void *arg)
{
	w->busy = true;
	w->done = done;
	ev_async_start(w->loop, &w->wake);
	if (!start_thread(w)) {
		/* No thread to be had: run it here, done() still comes from
		 * the loop. */
		w->arg = arg;
		w->rc = fn(arg);
		w->finished = true;
		ev_async_send(w->loop, &w->wake);
		return;
	}
	pthread_mutex_lock(&w->mu);
	w->fn = fn;
	w->arg = arg;
	w->finished = false;
	w->queued = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

void worker_wait(worker_t *w)
{
	if (!w->busy)
		return;
	pthread_mutex_lock(&w->mu);
	while (!w->finished)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
	complete(w);
}

void worker_free(worker_t *w)
{
	if (!w)
		return;
	worker_wait(w);
	pthread_mutex_lock(&w->mu);
	w->quit = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	if (w->started)
		pthread_join(w->thread, NULL);
	ev_async_stop(w->loop, &w->wake);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}
