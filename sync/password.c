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

/* Run cmd, collect stdout and stderr (with a deadline), return the status. */
static int from_command(const char *cmd, char **out, char **errmsg)
{
	int po[2] = {-1, -1}, pe[2] = {-1, -1};
	buf_t so = BUF_INIT, se = BUF_INIT;
	int rc = PASSWORD_ERR_COMMAND, status = 0;
	pid_t pid;
	double deadline = ib_now() + PASSWORD_COMMAND_TIMEOUT;
	bool timed_out = false;

	if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
		*errmsg = xasprintf("cannot run password_command: %s", strerror(errno));
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		*errmsg = xasprintf("cannot run password_command: %s", strerror(errno));
		goto out;
	}
	if (pid == 0) {
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
	po[1] = pe[1] = -1;
	while (po[0] >= 0 || pe[0] >= 0) {
		struct pollfd pf[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
		double left = deadline - ib_now();
		if (left <= 0) {
			timed_out = true;
			kill(pid, SIGKILL);
			break;
		}
		int n = poll(pf, 2, (int)(left * 1000) + 1);
		if (n < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 2; i++) {
			int *fd = i == 0 ? &po[0] : &pe[0];
			buf_t *b = i == 0 ? &so : &se;
			if (*fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			char *w = buf_reserve(b, 4096);
			ssize_t r = read(*fd, w, 4096);
			if (r > 0 && b->len < 65536) {
				buf_commit(b, (size_t)r);
			} else if (r <= 0 && !(r < 0 && errno == EINTR)) {
				close(*fd);
				*fd = -1;
			}
		}
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	char *err = xstrdup(buf_cstr(&se));
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
		char *pw = xstrdup(buf_cstr(&so));
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
out:
	for (int i = 0; i < 2; i++) {
		if (po[i] >= 0)
			close(po[i]);
		if (pe[i] >= 0)
			close(pe[i]);
	}
	if (so.data)
		OPENSSL_cleanse(so.data, so.cap);
	buf_free(&so);
	buf_free(&se);
	return rc;
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
