/* Remote password sources: see password.h. */
#include "sync/password.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "lib/buf.h"
#include "lib/util.h"

const char *password_strerror(int err)
{
	switch (err) {
	case PASSWORD_OK:
		return "no error";
	case PASSWORD_ERR_NONE:
		return "no password configured";
	case PASSWORD_ERR_FILE:
		return "password_file unusable";
	case PASSWORD_ERR_COMMAND:
		return "password_command failed";
	}
	return "unknown error";
}

void password_free(char *pw)
{
	if (!pw)
		return;
	OPENSSL_cleanse(pw, strlen(pw));
	free(pw);
}

/* Trim trailing CR/LF and surrounding blanks in place. */
static void trim(char *s)
{
	size_t n = strlen(s);
	while (n > 0 &&
	       (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	size_t i = 0;
	while (s[i] == ' ' || s[i] == '\t')
		i++;
	if (i)
		memmove(s, s + i, n - i + 1);
}

static int from_file(const char *path, char **out, char **errmsg)
{
	char *p = ib_expand_home(path);
	FILE *f = fopen(p, "r");
	char line[4096];
	int rc = PASSWORD_ERR_FILE;

	if (!f) {
		*errmsg = xasprintf(
		    "cannot read password_file \"%s\" (%s); check the path and its permissions", p,
		    strerror(errno));
		goto out;
	}
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	trim(line);
	if (!line[0]) {
		*errmsg = xasprintf(
		    "password_file \"%s\" is empty; put the password on its first line", p);
		goto out;
	}
	*out = xstrdup(line);
	rc = 0;
out:
	OPENSSL_cleanse(line, sizeof(line));
	free(p);
	return rc;
}

/* Start cmd with stdout and stderr on pipes (non-blocking, close-on-exec). */
static int spawn(const char *cmd, pid_t *pid, int *out_fd, int *err_fd, char **errmsg)
{
	int po[2] = {-1, -1}, pe[2] = {-1, -1};

	if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
		*errmsg = xasprintf("cannot run password_command: %s", strerror(errno));
		goto fail;
	}
	*pid = fork();
	if (*pid < 0) {
		*errmsg = xasprintf("cannot run password_command: %s", strerror(errno));
		goto fail;
	}
	if (*pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0)
			dup2(devnull, 0);
		dup2(po[1], 1);
		dup2(pe[1], 2);
		signal(SIGPIPE, SIG_DFL);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	/* Only our ends are non-blocking: the command writes as usual. */
	fcntl(po[0], F_SETFL, fcntl(po[0], F_GETFL) | O_NONBLOCK);
	fcntl(pe[0], F_SETFL, fcntl(pe[0], F_GETFL) | O_NONBLOCK);
	*out_fd = po[0];
	*err_fd = pe[0];
	return 0;
fail:
	for (int i = 0; i < 2; i++) {
		if (po[i] >= 0)
			close(po[i]);
		if (pe[i] >= 0)
			close(pe[i]);
	}
	return PASSWORD_ERR_COMMAND;
}

/* Read what is there from fd into b (capped); returns false at EOF/error. */
static bool drain(int fd, buf_t *b)
{
	for (;;) {
		char tmp[4096];
		ssize_t r = read(fd, tmp, sizeof(tmp));
		if (r > 0) {
			if (b->len < 65536)
				buf_append(b, tmp, (size_t)r);
			OPENSSL_cleanse(tmp, sizeof(tmp));
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		return r < 0 && errno == EAGAIN;
	}
}

/* Turn the command's outcome into a password or a message. */
static int judge(int status, bool timed_out, buf_t *so, buf_t *se, char **out, char **errmsg)
{
	int rc = PASSWORD_ERR_COMMAND;
	char *err = xstrdup(se->data ? buf_cstr(se) : "");
	trim(err);
	for (char *p = err; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	if (timed_out) {
		*errmsg = xasprintf(
		    "password_command did not finish within %.0f s; check it runs without a prompt",
		    PASSWORD_COMMAND_TIMEOUT);
	} else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		if (WIFEXITED(status))
			*errmsg = xasprintf(
			    "password_command exited with status %d%s%s; run it by hand to see why",
			    WEXITSTATUS(status), err[0] ? ": " : "", err);
		else
			*errmsg = xasprintf("password_command was killed by signal %d%s%s",
					    WTERMSIG(status), err[0] ? ": " : "", err);
	} else {
		char *pw = xstrdup(so->data ? buf_cstr(so) : "");
		/* The first line only: a trailing newline is not part of it. */
		pw[strcspn(pw, "\r\n")] = '\0';
		trim(pw);
		if (!pw[0]) {
			password_free(pw);
			*errmsg = xasprintf("password_command printed nothing%s%s; it must print "
					    "the password on stdout",
					    err[0] ? ": " : "", err);
		} else {
			*out = pw;
			rc = 0;
		}
	}
	free(err);
	if (so->data)
		OPENSSL_cleanse(so->data, so->cap);
	buf_free(so);
	buf_free(se);
	return rc;
}

/* Run cmd and wait for it (with a deadline): the blocking variant. */
static int from_command(const char *cmd, char **out, char **errmsg)
{
	buf_t so = BUF_INIT, se = BUF_INIT;
	int fds[2] = {-1, -1}, status = 0;
	pid_t pid;
	double deadline = ib_now() + PASSWORD_COMMAND_TIMEOUT;
	bool timed_out = false;

	if (spawn(cmd, &pid, &fds[0], &fds[1], errmsg) < 0)
		return PASSWORD_ERR_COMMAND;
	while (fds[0] >= 0 || fds[1] >= 0) {
		struct pollfd pf[2] = {{fds[0], POLLIN, 0}, {fds[1], POLLIN, 0}};
		double left = deadline - ib_now();
		if (left <= 0) {
			timed_out = true;
			kill(pid, SIGKILL);
			break;
		}
		if (poll(pf, 2, (int)(left * 1000) + 1) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 2; i++) {
			if (fds[i] >= 0 && (pf[i].revents & (POLLIN | POLLHUP | POLLERR)) &&
			    !drain(fds[i], i == 0 ? &so : &se)) {
				close(fds[i]);
				fds[i] = -1;
			}
		}
	}
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return judge(status, timed_out, &so, &se, out, errmsg);
}

/* ---- asynchronous variant ------------------------------------------------ */

struct password_req {
	struct ev_loop *loop;
	password_cb cb;
	void *arg;
	pid_t pid;
	ev_io out_w, err_w;
	ev_timer timer;	  /* the deadline, then polling for the exit */
	ev_child child_w; /* the default loop reaps children itself */
	bool use_child_w;
	bool have_status;
	int status;
	double deadline;
	buf_t so, se;
	bool exited_wait; /* both pipes closed, waiting for the exit status */
};

static void req_stop(password_req_t *q)
{
	ev_io_stop(q->loop, &q->out_w);
	ev_io_stop(q->loop, &q->err_w);
	ev_timer_stop(q->loop, &q->timer);
	if (q->use_child_w)
		ev_child_stop(q->loop, &q->child_w);
	if (q->out_w.fd >= 0)
		close(q->out_w.fd);
	if (q->err_w.fd >= 0)
		close(q->err_w.fd);
	q->out_w.fd = q->err_w.fd = -1;
}

static void req_finish(password_req_t *q, int status, bool timed_out)
{
	char *pw = NULL, *err = NULL;
	req_stop(q);
	int rc = judge(status, timed_out, &q->so, &q->se, &pw, &err);
	password_cb cb = q->cb;
	void *arg = q->arg;
	free(q);
	cb(rc, pw, err, arg);
	free(err);
}

/* Both pipes are closed: collect the exit status without blocking. */
static void req_try_reap(password_req_t *q)
{
	int status = 0;
	if (q->use_child_w) {
		/* libev's child watcher delivers the status; finish when it has. */
		if (q->have_status)
			req_finish(q, q->status, false);
		return;
	}
	pid_t r = waitpid(q->pid, &status, WNOHANG);
	if (r == q->pid || (r < 0 && errno != EINTR)) {
		req_finish(q, r == q->pid ? status : 0, false);
		return;
	}
	/* Closed its output but still running: look again shortly. */
	q->exited_wait = true;
	ev_timer_stop(q->loop, &q->timer);
	double left = q->deadline - ev_now(q->loop);
	ev_timer_set(&q->timer, left < 0.01 ? 0.01 : (left < 0.02 ? left : 0.02), 0.);
	ev_timer_start(q->loop, &q->timer);
}

static void req_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	password_req_t *q = w->data;
	buf_t *b = w == &q->out_w ? &q->so : &q->se;
	if (drain(w->fd, b))
		return;
	ev_io_stop(loop, w);
	close(w->fd);
	ev_io_set(w, -1, EV_READ);
	if (q->out_w.fd < 0 && q->err_w.fd < 0)
		req_try_reap(q);
}

static void req_child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	password_req_t *q = w->data;
	ev_child_stop(loop, w);
	q->have_status = true;
	q->status = w->rstatus;
	if (q->out_w.fd < 0 && q->err_w.fd < 0)
		req_finish(q, q->status, false);
}

static void req_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	password_req_t *q = w->data;
	if (ev_now(loop) >= q->deadline) {
		int status = 0;
		kill(q->pid, SIGKILL);
		if (!q->have_status)
			while (waitpid(q->pid, &status, 0) < 0 && errno == EINTR)
				;
		req_finish(q, status, true);
		return;
	}
	if (q->exited_wait)
		req_try_reap(q);
}

password_req_t *password_get_async(struct ev_loop *loop, const config_remote_t *r, password_cb cb,
				   void *arg)
{
	if (!r->password_command || r->password || r->password_file) {
		char *pw = NULL, *err = NULL;
		int rc = password_get(r, &pw, &err);
		cb(rc, pw, err, arg);
		free(err);
		return NULL;
	}
	password_req_t *q = xcalloc(1, sizeof(*q));
	int out_fd, err_fd;
	char *err = NULL;
	if (spawn(r->password_command, &q->pid, &out_fd, &err_fd, &err) < 0) {
		free(q);
		cb(PASSWORD_ERR_COMMAND, NULL, err, arg);
		free(err);
		return NULL;
	}
	q->loop = loop;
	q->cb = cb;
	q->arg = arg;
	q->deadline = ev_now(loop) + PASSWORD_COMMAND_TIMEOUT;
	ev_io_init(&q->out_w, req_io_cb, out_fd, EV_READ);
	ev_io_init(&q->err_w, req_io_cb, err_fd, EV_READ);
	ev_timer_init(&q->timer, req_timer_cb, PASSWORD_COMMAND_TIMEOUT, 0.);
	q->out_w.data = q->err_w.data = q->timer.data = q;
	/* The default loop reaps every child on SIGCHLD, so there the status
	 * can only come from an ev_child watcher; other loops poll waitpid(). */
	if (ev_is_default_loop(loop)) {
		q->use_child_w = true;
		ev_child_init(&q->child_w, req_child_cb, q->pid, 0);
		q->child_w.data = q;
		ev_child_start(loop, &q->child_w);
	}
	ev_io_start(loop, &q->out_w);
	ev_io_start(loop, &q->err_w);
	ev_timer_start(loop, &q->timer);
	return q;
}

void password_cancel(password_req_t *q)
{
	if (!q)
		return;
	req_stop(q);
	kill(q->pid, SIGKILL);
	if (!q->have_status)
		while (waitpid(q->pid, NULL, 0) < 0 && errno == EINTR)
			;
	if (q->so.data)
		OPENSSL_cleanse(q->so.data, q->so.cap);
	buf_free(&q->so);
	buf_free(&q->se);
	free(q);
}

int password_get(const config_remote_t *r, char **out, char **errmsg)
{
	*out = NULL;
	*errmsg = NULL;
	if (r->password) {
		*out = xstrdup(r->password);
		return 0;
	}
	if (r->password_file)
		return from_file(r->password_file, out, errmsg);
	if (r->password_command)
		return from_command(r->password_command, out, errmsg);
	*errmsg = xstrdup(
	    "no password configured; set remote.password, password_file or password_command");
	return PASSWORD_ERR_NONE;
}
