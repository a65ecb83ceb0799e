/*
 * The background worker (sync/worker.h): done() runs on the loop's thread,
 * from the loop or from worker_wait(), once per job and after the job.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "sync/worker.h"
#include "testutil.h"

typedef struct job {
	atomic_int ran;      /* set by the job, on the worker's thread */
	pthread_t ran_on;
	int delay_ms;
	int done_calls;      /* the loop's thread only */
	int done_rc;
	bool done_saw_ran;
	pthread_t done_on;
	struct ev_loop *loop; /* break it from done(), or NULL */
} job_t;

static int job_fn(void *arg)
{
	job_t *j = arg;
	if (j->delay_ms) {
		struct timespec ts = {0, (long)j->delay_ms * 1000000L};
		nanosleep(&ts, NULL);
	}
	j->ran_on = pthread_self();
	atomic_store(&j->ran, 1);
	return 42;
}

static void job_done(int rc, void *arg)
{
	job_t *j = arg;
	j->done_calls++;
	j->done_rc = rc;
	j->done_saw_ran = atomic_load(&j->ran) == 1;
	j->done_on = pthread_self();
	if (j->loop)
		ev_break(j->loop, EVBREAK_ALL);
}

/* A loop and a worker on it; NULL (checked, loop freed) if no thread. */
static worker_t *new_worker(struct ev_loop **loop)
{
	*loop = ev_loop_new(EVFLAG_AUTO);
	worker_t *w = worker_new(*loop);
	CHECK(w != NULL);
	if (!w)
		ev_loop_destroy(*loop);
	return w;
}

static void test_from_loop(void)
{
	struct ev_loop *loop;
	worker_t *w = new_worker(&loop);
	if (!w)
		return;
	job_t j = {.delay_ms = 20, .loop = loop};
	CHECK(!worker_busy(w));
	worker_start(w, job_fn, job_done, &j);
	CHECK(worker_busy(w));
	/* The running job keeps the loop alive: ev_run returns only once
	 * done() broke it. */
	ev_run(loop, 0);
	CHECK_EQ_INT(j.done_calls, 1);
	CHECK_EQ_INT(j.done_rc, 42);
	CHECK(j.done_saw_ran);
	CHECK(pthread_equal(j.done_on, pthread_self()));
	CHECK(!pthread_equal(j.ran_on, pthread_self()));
	CHECK(!worker_busy(w));

	/* Nothing runs: the loop has nothing left to wait for. */
	ev_run(loop, 0);
	CHECK_EQ_INT(j.done_calls, 1);
	worker_free(w);
	ev_loop_destroy(loop);
}

static void test_wait_and_free(void)
{
	struct ev_loop *loop;
	worker_t *w = new_worker(&loop);
	if (!w)
		return;
	/* worker_wait() runs done() at once, and the loop does not again. */
	for (int i = 0; i < 50; i++) {
		job_t j = {.delay_ms = i % 3};
		worker_start(w, job_fn, job_done, &j);
		worker_wait(w);
		CHECK_EQ_INT(j.done_calls, 1);
		CHECK(j.done_saw_ran);
		CHECK(!worker_busy(w));
		ev_run(loop, EVRUN_NOWAIT);
		CHECK_EQ_INT(j.done_calls, 1);
	}
	worker_wait(w); /* idle: returns at once */

	/* Freed while a job runs: the job ends and done() runs first. */
	job_t j = {.delay_ms = 30};
	worker_start(w, job_fn, job_done, &j);
	worker_free(w);
	CHECK_EQ_INT(j.done_calls, 1);
	CHECK(j.done_saw_ran);
	ev_loop_destroy(loop);
}

/* Threads of this process, from /proc. */
static int thread_count(void)
{
	DIR *d = opendir("/proc/self/task");
	int n = 0;
	if (!d)
		return -1;
	for (struct dirent *de; (de = readdir(d)) != NULL;)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

/* A worker that is given no job makes no thread; the first job makes it. */
static void test_thread_on_first_job(void)
{
	int before = thread_count();
	struct ev_loop *loop;
	worker_t *w = new_worker(&loop);
	if (!w)
		return;
	CHECK_EQ_INT(thread_count(), before);
	worker_free(w);
	CHECK_EQ_INT(thread_count(), before);

	w = worker_new(loop);
	job_t j = {.delay_ms = 0};
	worker_start(w, job_fn, job_done, &j);
	CHECK_EQ_INT(thread_count(), before + 1);
	worker_wait(w);
	CHECK(!pthread_equal(j.ran_on, pthread_self()));
	worker_free(w);
	CHECK_EQ_INT(thread_count(), before);
	ev_loop_destroy(loop);
}

int main(void)
{
	test_thread_on_first_job();
	test_from_loop();
	test_wait_and_free();
	return test_done("test_worker");
}
