/*
 * The control socket's asynchronous paths with a stand-in sync engine: a
 * "sync" answered later from a timer, a client that hangs up while its sync
 * runs, engine status and folder recovery hooks, and the daemon stopping with
 * a sync still pending. A forked child plays the admin CLI with blocking
 * sockets while the parent runs the daemon's loop.
 */
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "server/config.h"
#include "server/ctl.h"
#include "server/daemon.h"
#include "testutil.h"

struct fake {
	ev_timer timer;
	daemon_done_cb done;
	void *arg;
	int sync_calls;
	int stop_calls;
	int removed_calls;
	bool pending;
};

static void fake_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct fake *f = w->data;
	f->pending = false;
	f->done(0, "synced", f->arg);
}

static int fake_sync_now(void *ctx, daemon_t *d, const char *account, daemon_done_cb done,
			 void *arg)
{
	struct fake *f = ctx;
	f->sync_calls++;
	if (f->pending)
		return -1;
	f->done = done;
	f->arg = arg;
	f->pending = true;
	/* "slow" never finishes by itself: the daemon stops with it pending. */
	ev_timer_init(&f->timer, fake_timer_cb,
		      account && strcmp(account, "slow") == 0 ? 3600 : 0.2, 0);
	f->timer.data = f;
	ev_timer_start(daemon_loop(d), &f->timer);
	return 0;
}

static void fake_status(void *ctx, daemon_t *d, const char *account, buf_t *out)
{
	buf_printf(out, "\"state\":\"idle\",\"last_status\":0");
}

static int fake_recover(void *ctx, daemon_t *d, const char *account, const char *folder, char *msg,
			size_t msglen)
{
	snprintf(msg, msglen, "%s/%s released", account, folder);
	return 0;
}

static void fake_stop(void *ctx, daemon_t *d)
{
	struct fake *f = ctx;
	f->stop_calls++;
	if (f->pending) {
		ev_timer_stop(daemon_loop(d), &f->timer);
		f->pending = false;
		f->done(1, "stopped", f->arg);
	}
}

static const daemon_sync_ops_t fake_ops = {
    .sync_now = fake_sync_now,
    .status_json = fake_status,
    .folder_recover = fake_recover,
    .stop = fake_stop,
};

/* ---------------------------------------------------------- the child */

static int child_fail;
#define EXPECT(cond)                                                                               \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "child: %s:%d: %s\n", __FILE__, __LINE__, #cond);          \
			child_fail = 1;                                                            \
		}                                                                                  \
	} while (0)

static int client_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("connect");
		exit(3);
	}
	return fd;
}

static void read_line(int fd, char *out, size_t outlen)
{
	size_t n = 0;
	while (n + 1 < outlen) {
		ssize_t r = read(fd, out + n, 1);
		if (r <= 0 || out[n] == '\n')
			break;
		n++;
	}
	out[n] = '\0';
}

/* Send one line, read one line into out. */
static void ask(int fd, const char *req, char *out, size_t outlen)
{
	if (write(fd, req, strlen(req)) < 0 || write(fd, "\n", 1) < 0)
		exit(3);
	read_line(fd, out, outlen);
}

static void child(const char *sock)
{
	char resp[4096];
	int fd = client_connect(sock);

	ask(fd, "{\"cmd\":\"sync\"}", resp, sizeof(resp));
	EXPECT(strcmp(resp, "{\"ok\":true,\"status\":0,\"message\":\"synced\"}") == 0);

	/* Two requests in one write: the second waits for the first's answer. */
	ask(fd, "{\"cmd\":\"sync\",\"name\":\"a\"}\n{\"cmd\":\"account.list\"}", resp,
	    sizeof(resp));
	EXPECT(strcmp(resp, "{\"ok\":true,\"status\":0,\"message\":\"synced\"}") == 0);
	read_line(fd, resp, sizeof(resp));
	EXPECT(strstr(resp, "\"name\":\"a\"") != NULL);
	ask(fd, "{\"cmd\":\"sync\",\"name\":\"nobody\"}", resp, sizeof(resp));
	EXPECT(strstr(resp, "no account named 'nobody'") != NULL);

	ask(fd, "{\"cmd\":\"status\",\"name\":\"a\"}", resp, sizeof(resp));
	EXPECT(strstr(resp, "\"state\":\"idle\",\"last_status\":0,\"folders\":[]"));
	EXPECT(strstr(resp, "\"sync_engine\":true"));

	ask(fd, "{\"cmd\":\"folder.recover\",\"name\":\"a\",\"folder\":\"INBOX\"}", resp,
	    sizeof(resp));
	EXPECT(strstr(resp, "\"ok\":true,\"message\":\"a/INBOX released\""));

	ask(fd, "not json", resp, sizeof(resp));
	EXPECT(strstr(resp, "\"ok\":false") && strstr(resp, "not a JSON object"));
	ask(fd, "{\"cmd\":\"frobnicate\"}", resp, sizeof(resp));
	EXPECT(strstr(resp, "unknown request"));
	close(fd);

	/* Hang up while a sync runs; the daemon must not mind. */
	fd = client_connect(sock);
	if (write(fd, "{\"cmd\":\"sync\"}\n", 15) < 0)
		exit(3);
	close(fd);
	usleep(400 * 1000);
	fd = client_connect(sock);
	ask(fd, "{\"cmd\":\"account.list\"}", resp, sizeof(resp));
	EXPECT(strstr(resp, "\"ok\":true"));
	close(fd);

	/* Leave a sync pending that only the daemon's stop will end. */
	fd = client_connect(sock);
	if (write(fd, "{\"cmd\":\"sync\",\"name\":\"slow\"}\n", 29) < 0)
		exit(3);
	usleep(200 * 1000);
	exit(child_fail);
}

/* --------------------------------------------------------- the parent */

static int child_status = -1;

static void child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	daemon_t *d = w->data;
	ev_child_stop(loop, w);
	child_status = w->rstatus;
	daemon_stop(d, 0);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	fprintf(stderr, "test_server_ctl: timed out\n");
	daemon_stop(w->data, 1);
}

int main(void)
{
	char *dir = test_tmpdir("ib-test-ctl");
	char *conf = xasprintf("%s/c.conf", dir);
	FILE *f = fopen(conf, "w");
	fprintf(f,
		"datadir = \"%s/data\";\naccounts = ( { name = \"a\"; remote = { host = \"h\"; "
		"user = \"u\"; }; }, { name = \"slow\"; remote = { host = \"h\"; user = \"u\"; }; "
		"} );\n",
		dir);
	fclose(f);
	log_setup("test_server_ctl", LOG_UI_QUIET, false);

	config_msgs_t msgs = CONFIG_MSGS_INIT;
	config_t *cfg = NULL;
	CHECK_EQ_INT(config_load(conf, &cfg, &msgs), CONFIG_OK);
	config_msgs_free(&msgs);
	if (!cfg)
		return test_done("test_server_ctl");

	struct ev_loop *loop = ev_default_loop(0);
	daemon_opts_t opts = {.config_path = conf};
	daemon_t *d = daemon_new(loop, cfg, &opts);
	CHECK_EQ_INT(daemon_start(d), DAEMON_OK);
	CHECK(daemon_store(d) != NULL);
	struct fake fk = {0};
	daemon_set_sync(d, &fake_ops, &fk);
	char *sock = xstrdup(daemon_socket_path(d));

	pid_t pid = fork();
	if (pid == 0)
		child(sock);
	ev_child cw;
	ev_child_init(&cw, child_cb, pid, 0);
	cw.data = d;
	ev_child_start(loop, &cw);
	ev_timer to;
	ev_timer_init(&to, timeout_cb, 30, 0);
	to.data = d;
	ev_timer_start(loop, &to);

	CHECK_EQ_INT(daemon_run(d), 0);
	ev_timer_stop(loop, &to);
	CHECK(WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0);
	CHECK_EQ_INT(fk.sync_calls, 4);
	daemon_free(d);
	CHECK_EQ_INT(fk.stop_calls, 1);
	CHECK(access(sock, F_OK) != 0);

	free(sock);
	free(conf);
	test_rmtree(dir);
	free(dir);
	return test_done("test_server_ctl");
}
