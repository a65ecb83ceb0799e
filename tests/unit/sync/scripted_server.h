/*
 * A scripted IMAP server for unit tests: a forked child that reads the
 * client's commands, checks them against the script and sends canned
 * answers. A failed check ends the child with status 1 and a line on stderr
 * naming the script line; the test reads it with wait_server().
 * Header only (static functions): each test includes it once.
 */
#ifndef IB_TESTS_SCRIPTED_SERVER_H
#define IB_TESTS_SCRIPTED_SERVER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define SRV_UNUSED __attribute__((unused))

static int srv_fd = -1;
static char srv_in[1 << 20];
static size_t srv_len;

#define SRV_CHECK(cond, ...)                                                                       \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "server:%d: ", __LINE__);                                  \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			_exit(1);                                                                  \
		}                                                                                  \
	} while (0)

/* Read more input; returns bytes read, 0 on EOF, -1 when nothing came. */
static SRV_UNUSED int srv_fill(int timeout_ms)
{
	struct pollfd pf = {srv_fd, POLLIN, 0};
	if (poll(&pf, 1, timeout_ms) <= 0)
		return -1;
	ssize_t n = read(srv_fd, srv_in + srv_len, sizeof(srv_in) - srv_len);
	if (n < 0)
		return -1;
	srv_len += (size_t)n;
	return (int)n;
}

static SRV_UNUSED void srv_consume(size_t n)
{
	memmove(srv_in, srv_in + n, srv_len - n);
	srv_len -= n;
}

/* Read one line; with tag != NULL split off the tag. The rest must equal
 * expect exactly. */
static SRV_UNUSED void srv_expect(char *tag, const char *expect)
{
	char *lf;
	while (!(lf = memchr(srv_in, '\n', srv_len)))
		SRV_CHECK(srv_fill(5000) > 0, "no line (wanted \"%s\")", expect);
	size_t n = (size_t)(lf - srv_in);
	SRV_CHECK(n > 0 && srv_in[n - 1] == '\r', "line without CRLF");
	char line[4096];
	snprintf(line, sizeof(line), "%.*s", (int)(n - 1), srv_in);
	srv_consume(n + 1);
	const char *rest = line;
	if (tag) {
		size_t t = strcspn(line, " ");
		SRV_CHECK(t > 0 && t < 16 && line[t] == ' ', "no tag in \"%s\"", line);
		memcpy(tag, line, t);
		tag[t] = '\0';
		rest = line + t + 1;
	}
	SRV_CHECK(strcmp(rest, expect) == 0, "got \"%s\", wanted \"%s\"", rest, expect);
}

/* Nothing may arrive for ms milliseconds. */
static SRV_UNUSED void srv_quiet(int ms)
{
	SRV_CHECK(srv_len == 0, "unexpected \"%.*s\"", (int)srv_len, srv_in);
	SRV_CHECK(srv_fill(ms) < 0, "unexpected \"%.*s\"", (int)srv_len, srv_in);
}

static SRV_UNUSED void srv_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static SRV_UNUSED void srv_send(const char *fmt, ...)
{
	char out[8192];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out, sizeof(out), fmt, ap);
	va_end(ap);
	SRV_CHECK(write(srv_fd, out, (size_t)n) == n, "write failed");
}

static SRV_UNUSED void srv_send_raw(const char *p, size_t n)
{
	SRV_CHECK(write(srv_fd, p, n) == (ssize_t)n, "write failed");
}

typedef void (*scenario_fn)(int lfd);

/* Fork a server running fn on a fresh listening socket; returns its pid. */
static SRV_UNUSED pid_t serve(scenario_fn fn, int *port)
{
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	bind(lfd, (struct sockaddr *)&sa, sizeof(sa));
	listen(lfd, 4);
	getsockname(lfd, (struct sockaddr *)&sa, &sl);
	*port = ntohs(sa.sin_port);
	pid_t pid = fork();
	if (pid == 0) {
		alarm(30);
		fn(lfd);
		_exit(0);
	}
	close(lfd);
	return pid;
}

/* The next connection (within 5 s) becomes the scripted session. */
static SRV_UNUSED void srv_accept(int lfd)
{
	struct pollfd pf = {lfd, POLLIN, 0};
	SRV_CHECK(poll(&pf, 1, 5000) == 1, "no connection");
	srv_fd = accept(lfd, NULL, NULL);
	srv_len = 0;
}

/* The server's exit status (0: every check passed). */
static SRV_UNUSED int wait_server(pid_t pid)
{
	int st = 0;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 99;
}

/* Take the client's connection and greet it, logged in already. */
static SRV_UNUSED void srv_preauth(int lfd, const char *caps)
{
	struct pollfd pf = {lfd, POLLIN, 0};

	SRV_CHECK(poll(&pf, 1, 5000) == 1, "no connection");
	srv_accept(lfd);
	srv_send("* PREAUTH [CAPABILITY %s] hi\r\n", caps);
}

/* Read until the client closes the connection. */
static SRV_UNUSED void srv_drain(void)
{
	while (srv_fill(5000) > 0)
		srv_len = 0;
}

#endif
