/* The control socket: see ctl.h. */
#include "server/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/util.h"
#include "server/accounts.h"
#include "server/config.h"
#include "server/json.h"

typedef struct ctl_client ctl_client_t;

struct ctl {
	daemon_t *d;
	int fd;
	char *path;
	ev_io accept_w;
	time_t started;
	ctl_client_t *clients;
};

struct ctl_client {
	ctl_t *ctl; /* NULL once the ctl is gone */
	int fd;
	ev_io read_w, write_w;
	buf_t in, out;
	bool busy;    /* a request is waiting for an asynchronous answer */
	bool closing; /* close once out is flushed */
	bool dead;    /* fd closed; freed when the pending answer arrives */
	ctl_client_t *next, **pprev;
};

static void client_free(ctl_client_t *c);

/* ------------------------------------------------------------ output */

static void client_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	ctl_client_t *c = w->data;
	while (buf_avail(&c->out) > 0) {
		ssize_t n = send(c->fd, buf_head(&c->out), buf_avail(&c->out), MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			client_free(c);
			return;
		}
		buf_consume(&c->out, (size_t)n);
	}
	ev_io_stop(loop, &c->write_w);
	if (c->closing)
		client_free(c);
}

/* Queue a finished response line (body: the members after "ok"). */
static void respond(ctl_client_t *c, bool ok, const char *body)
{
	if (c->dead)
		return;
	buf_printf(&c->out, "{\"ok\":%s%s%s}\n", ok ? "true" : "false", body && *body ? "," : "",
		   body ? body : "");
	ev_io_start(daemon_loop(c->ctl->d), &c->write_w);
}

static void respond_err(ctl_client_t *c, int status, const char *msg)
{
	buf_t b = BUF_INIT;
	buf_puts(&b, "\"error\":");
	json_put_str(&b, msg);
	buf_printf(&b, ",\"status\":%d", status);
	respond(c, false, buf_cstr(&b));
	buf_free(&b);
}

static void respond_problems(ctl_client_t *c, const char *what, const config_msgs_t *msgs)
{
	buf_t b = BUF_INIT;
	buf_t m = BUF_INIT;
	buf_printf(&m, "%s:", what);
	for (size_t i = 0; i < msgs->n_errors; i++)
		buf_printf(&m, "\n  %s", msgs->errors[i]);
	buf_puts(&b, "\"error\":");
	json_put_str(&b, buf_cstr(&m));
	buf_puts(&b, ",\"status\":1,\"problems\":[");
	for (size_t i = 0; i < msgs->n_errors; i++) {
		if (i)
			buf_puts(&b, ",");
		json_put_str(&b, msgs->errors[i]);
	}
	buf_puts(&b, "]");
	respond(c, false, buf_cstr(&b));
	buf_free(&m);
	buf_free(&b);
}

/* ---------------------------------------------------------- requests */

static const char *tls_name(enum config_tls t)
{
	switch (t) {
	case CONFIG_TLS_NONE:
		return "none";
	case CONFIG_TLS_STARTTLS:
		return "starttls";
	default:
		return "implicit";
	}
}

static void put_account(buf_t *b, const config_t *cfg, const config_account_t *a)
{
	const config_remote_t *r = &a->remote;
	json_put_kv(b, true, "name", a->name);
	json_put_kv(b, false, "host", r->tunnel ? NULL : r->host);
	buf_printf(b, ",\"port\":%d", r->tunnel ? 0 : r->port);
	json_put_kv(b, false, "tls", r->tunnel ? NULL : tls_name(r->tls));
	json_put_kv(b, false, "user", r->user);
	json_put_kv(b, false, "tunnel", r->tunnel);
	json_put_kv(b, false, "maildir", a->maildir_path);
	buf_printf(b, ",\"autorefresh\":%g", a->autorefresh);
	json_put_kv(b, false, "source", accounts_is_runtime(cfg, a) ? "cli" : "config");
	json_put_kv(b, false, "file", a->source);
	buf_printf(b, ",\"line\":%d,\"local_password\":%s", a->source_line,
		   a->local_password_hash ? "true" : "false");
}

static const char *req_name(ctl_client_t *c, const json_t *req)
{
	const char *name = json_get_str(req, "name");
	if (!name || !*name) {
		respond_err(c, 1, "this request needs an account name");
		return NULL;
	}
	return name;
}

static const config_account_t *req_account(ctl_client_t *c, const json_t *req)
{
	const char *name = req_name(c, req);
	if (!name)
		return NULL;
	const config_account_t *a = config_find_account(daemon_config(c->ctl->d), name);
	if (!a) {
		char msg[256];
		snprintf(msg, sizeof(msg), "no account named '%s'; see `imapbridge account list`",
			 name);
		respond_err(c, 1, msg);
	}
	return a;
}

static void do_account_list(ctl_client_t *c, const json_t *req)
{
	const config_t *cfg = daemon_config(c->ctl->d);
	buf_t b = BUF_INIT;
	buf_puts(&b, "\"accounts\":[");
	for (size_t i = 0; i < cfg->n_accounts; i++) {
		buf_puts(&b, i ? ",{" : "{");
		put_account(&b, cfg, &cfg->accounts[i]);
		buf_puts(&b, "}");
	}
	buf_puts(&b, "]");
	respond(c, true, buf_cstr(&b));
	buf_free(&b);
}

static void do_account_add(ctl_client_t *c, const json_t *req)
{
	daemon_t *d = c->ctl->d;
	const config_t *cfg = daemon_config(d);
	char err[512];
	accounts_spec_t sp = {
	    .name = json_get_str(req, "name"),
	    .host = json_get_str(req, "host"),
	    .port = (int)json_get_num(req, "port", 0),
	    .tls = json_get_str(req, "tls"),
	    .user = json_get_str(req, "user"),
	    .password = json_get_str(req, "password"),
	    .password_file = json_get_str(req, "password_file"),
	    .password_command = json_get_str(req, "password_command"),
	    .maildir = json_get_str(req, "maildir"),
	};
	if (!req_name(c, req))
		return;
	const config_account_t *old = config_find_account(cfg, sp.name);
	if (old) {
		snprintf(err, sizeof(err),
			 "account '%s' already exists (%s:%d); pick another name "
			 "or remove it first",
			 sp.name, old->source, old->source_line);
		respond_err(c, 1, err);
		return;
	}
	if (accounts_write(cfg->datadir, &sp, err, sizeof(err)) != ACCOUNTS_OK) {
		respond_err(c, 1, err);
		return;
	}
	config_msgs_t msgs = CONFIG_MSGS_INIT;
	if (daemon_reload(d, &msgs) != DAEMON_OK) {
		/* Keep the running config and take the new file away again. */
		accounts_remove(cfg->datadir, sp.name, err, sizeof(err));
		char what[256];
		snprintf(what, sizeof(what), "account '%s' not added", sp.name);
		respond_problems(c, what, &msgs);
	} else {
		log_info("control: account %s added (%s@%s)", sp.name, sp.user, sp.host);
		respond(c, true, NULL);
	}
	config_msgs_free(&msgs);
}

static void do_account_remove(ctl_client_t *c, const json_t *req)
{
	daemon_t *d = c->ctl->d;
	const config_t *cfg = daemon_config(d);
	bool purge = json_get_bool(req, "purge", false);
	char err[512];
	const config_account_t *a = req_account(c, req);
	if (!a)
		return;
	if (!accounts_is_runtime(cfg, a)) {
		snprintf(err, sizeof(err),
			 "account '%s' is defined in %s:%d; remove it there and "
			 "reload (kill -HUP %ld)",
			 a->name, a->source, a->source_line, (long)getpid());
		respond_err(c, 1, err);
		return;
	}
	char *name = xstrdup(a->name);
	char *datadir = xstrdup(cfg->datadir);
	if (accounts_remove(datadir, name, err, sizeof(err)) != ACCOUNTS_OK) {
		respond_err(c, 1, err);
		goto out;
	}
	config_msgs_t msgs = CONFIG_MSGS_INIT;
	int rc = daemon_reload(d, &msgs);
	if (rc != DAEMON_OK) {
		respond_problems(c, "account file removed, but the config does not load", &msgs);
		config_msgs_free(&msgs);
		goto out;
	}
	config_msgs_free(&msgs);
	void *ctx;
	const daemon_sync_ops_t *ops = daemon_sync_ops(d, &ctx);
	if (ops && ops->account_removed)
		ops->account_removed(ctx, d, name, purge);
	rc = daemon_store_remove_account(d, name, purge);
	if (rc != STORE_OK) {
		char msg[512];
		snprintf(msg, sizeof(msg),
			 "account %s removed from the config, but its local data "
			 "could not be %s: %s; see the daemon's log",
			 name, purge ? "dropped" : "marked removed", store_strerror(rc));
		log_err("control: %s", msg);
		respond_err(c, 1, msg);
		goto out;
	}
	log_info("control: account %s removed%s", name, purge ? ", local data dropped" : "");
	respond(c, true, NULL);
out:
	free(name);
	free(datadir);
}

static void do_passwd(ctl_client_t *c, const json_t *req)
{
	daemon_t *d = c->ctl->d;
	char err[512];
	const config_account_t *a = req_account(c, req);
	if (!a)
		return;
	char *name = xstrdup(a->name);
	if (accounts_set_local_password(daemon_config(d)->datadir, name,
					json_get_str(req, "password"), err,
					sizeof(err)) != ACCOUNTS_OK) {
		respond_err(c, 1, err);
	} else {
		config_msgs_t msgs = CONFIG_MSGS_INIT;
		if (daemon_reload(d, &msgs) != DAEMON_OK)
			respond_problems(c,
					 "password stored, but the config does not load; it "
					 "takes effect once it does",
					 &msgs);
		else
			respond(c, true, NULL);
		config_msgs_free(&msgs);
		log_info("control: local password of %s changed", name);
	}
	free(name);
}

static int folder_json_cb(const store_folder_t *f, void *arg)
{
	buf_t *b = arg;
	if (b->data[b->len - 1] != '[')
		buf_puts(b, ",");
	buf_puts(b, "{");
	json_put_kv(b, true, "name", f->name);
	json_put_kv(b, false, "state", f->state == STORE_FOLDER_HELD ? "held" : "active");
	if (f->state == STORE_FOLDER_HELD)
		json_put_kv(b, false, "held_reason", f->held_reason);
	buf_printf(b, ",\"messages\":%u,\"unseen\":%u}", f->messages, f->unseen);
	return 0;
}

/* "folders":[...] of account from the store: names, held state, counts. */
static void put_folders(buf_t *b, store_txn_t *txn, const char *account)
{
	store_account_t sa;
	buf_puts(b, ",\"folders\":[");
	if (txn && store_account_find(txn, account, &sa) == STORE_OK)
		store_folder_list(txn, sa.id, folder_json_cb, b);
	buf_puts(b, "]");
}

static void do_status(ctl_client_t *c, const json_t *req)
{
	daemon_t *d = c->ctl->d;
	const config_t *cfg = daemon_config(d);
	const char *only = json_get_str(req, "name");
	void *ctx;
	const daemon_sync_ops_t *ops = daemon_sync_ops(d, &ctx);
	buf_t b = BUF_INIT;

	if (only && !req_account(c, req))
		return;
	buf_printf(&b, "\"daemon\":{\"pid\":%ld,\"version\":", (long)getpid());
	json_put_str(&b, IMAPBRIDGE_VERSION);
	buf_printf(&b, ",\"uptime\":%ld", (long)(time(NULL) - c->ctl->started));
	json_put_kv(&b, false, "config", cfg->path);
	json_put_kv(&b, false, "datadir", cfg->datadir);
	buf_printf(&b, ",\"sync_engine\":%s,\"store\":%s},\"accounts\":[", ops ? "true" : "false",
		   daemon_store(d) ? "true" : "false");
	/* One short read transaction for every account's folders. */
	store_txn_t *txn = NULL;
	if (daemon_store(d) && store_txn_begin_read(daemon_store(d), &txn) != STORE_OK)
		txn = NULL;
	bool first = true;
	for (size_t i = 0; i < cfg->n_accounts; i++) {
		const config_account_t *a = &cfg->accounts[i];
		if (only && strcmp(only, a->name) != 0)
			continue;
		buf_puts(&b, first ? "{" : ",{");
		first = false;
		put_account(&b, cfg, a);
		if (ops && ops->status_json) {
			buf_t s = BUF_INIT;
			ops->status_json(ctx, d, a->name, &s);
			if (buf_avail(&s) > 0) {
				buf_puts(&b, ",");
				buf_append(&b, buf_head(&s), buf_avail(&s));
			}
			buf_free(&s);
		} else {
			buf_puts(&b, ",\"state\":\"not syncing\"");
		}
		put_folders(&b, txn, a->name);
		buf_puts(&b, "}");
	}
	if (txn)
		store_txn_abort(txn);
	buf_puts(&b, "]");
	respond(c, true, buf_cstr(&b));
	buf_free(&b);
}

static void sync_done_cb(int status, const char *message, void *arg)
{
	ctl_client_t *c = arg;
	c->busy = false;
	if (c->dead) {
		client_free(c);
		return;
	}
	if (status == 0) {
		buf_t b = BUF_INIT;
		buf_puts(&b, "\"status\":0,\"message\":");
		json_put_str(&b, message ? message : "");
		respond(c, true, buf_cstr(&b));
		buf_free(&b);
	} else {
		respond_err(c, status, message ? message : "sync failed");
	}
	/* More requests may have queued up while this one waited. */
	ev_feed_event(daemon_loop(c->ctl->d), &c->read_w, EV_CUSTOM);
}

static void do_sync(ctl_client_t *c, const json_t *req)
{
	const char *name = json_get_str(req, "name");
	c->busy = true;
	daemon_sync_now(c->ctl->d, name && *name ? name : NULL, sync_done_cb, c);
}

int ctl_folder_recover(daemon_t *d, const char *account, const char *folder, char *msg,
		       size_t msglen)
{
	void *ctx;
	const daemon_sync_ops_t *ops = daemon_sync_ops(d, &ctx);
	if (ops && ops->folder_recover)
		return ops->folder_recover(ctx, d, account, folder, msg, msglen);
	snprintf(msg, msglen, "folder recovery is not available: this build has no sync engine");
	return DAEMON_EXIT_ERRORS;
}

static void do_folder_recover(ctl_client_t *c, const json_t *req)
{
	const config_account_t *a = req_account(c, req);
	const char *folder = json_get_str(req, "folder");
	char msg[512] = "";
	if (!a)
		return;
	if (!folder || !*folder) {
		respond_err(c, 1, "folder recover needs a folder name");
		return;
	}
	int status = ctl_folder_recover(c->ctl->d, a->name, folder, msg, sizeof(msg));
	if (status == 0) {
		buf_t b = BUF_INIT;
		buf_puts(&b, "\"message\":");
		json_put_str(&b, msg);
		respond(c, true, buf_cstr(&b));
		buf_free(&b);
	} else {
		respond_err(c, status, msg);
	}
}

static const struct {
	const char *cmd;
	void (*run)(ctl_client_t *c, const json_t *req);
} commands[] = {
    {"account.add", do_account_add},
    {"account.remove", do_account_remove},
    {"account.list", do_account_list},
    {"status", do_status},
    {"sync", do_sync},
    {"passwd", do_passwd},
    {"folder.recover", do_folder_recover},
};

static void handle_line(ctl_client_t *c, const char *line, size_t len)
{
	json_t *req = NULL;
	int rc = json_parse(line, len, &req);
	if (rc != JSON_OK || json_type(req) != JSON_OBJ) {
		respond_err(c, 1, "request is not a JSON object");
		goto out;
	}
	const char *cmd = json_get_str(req, "cmd");
	for (size_t i = 0; cmd && i < IB_ARRAY_LEN(commands); i++) {
		if (strcmp(cmd, commands[i].cmd) == 0) {
			/* The request may hold a password: log the command only. */
			log_debug("control: %s", cmd);
			commands[i].run(c, req);
			goto out;
		}
	}
	respond_err(c, 1,
		    "unknown request; this imapbridge and imapbridged may be of different "
		    "versions");
out:
	json_free(req);
}

/* ------------------------------------------------------------- input */

static void client_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	ctl_client_t *c = w->data;

	if (revents & EV_READ) {
		char *p = buf_reserve(&c->in, 4096);
		ssize_t n = recv(c->fd, p, 4096, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			client_free(c);
			return;
		}
		buf_commit(&c->in, (size_t)n);
	}
	while (!c->busy && !c->closing) {
		const char *head = buf_head(&c->in);
		const char *nl = memchr(head, '\n', buf_avail(&c->in));
		if (!nl) {
			if (buf_avail(&c->in) > CTL_MAX_LINE) {
				respond_err(c, 1, "request too long");
				c->closing = true;
			}
			return;
		}
		size_t len = (size_t)(nl - head);
		char *line = xstrndup(head, len);
		buf_consume(&c->in, len + 1);
		handle_line(c, line, len);
		explicit_bzero(line, len);
		free(line);
	}
}

static void client_free(ctl_client_t *c)
{
	if (c->ctl) {
		ev_io_stop(daemon_loop(c->ctl->d), &c->read_w);
		ev_io_stop(daemon_loop(c->ctl->d), &c->write_w);
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (c->busy) {
		/* An answer is pending and will come to this struct: free it
		 * then (sync_done_cb). */
		c->dead = true;
		return;
	}
	if (c->pprev) {
		*c->pprev = c->next;
		if (c->next)
			c->next->pprev = c->pprev;
	}
	/* The input may have held a password. */
	if (c->in.data)
		explicit_bzero(c->in.data, c->in.cap);
	buf_free(&c->in);
	buf_free(&c->out);
	free(c);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	ctl_t *ctl = w->data;
	int fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR)
			log_warn("control: accept: %s", strerror(errno));
		return;
	}
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
	    (cred.uid != 0 && cred.uid != geteuid())) {
		static const char msg[] =
		    "{\"ok\":false,\"error\":\"permission denied: only the "
		    "daemon's user and root may use this socket\",\"status\":1}\n";
		log_warn("control: refused a client with uid %ld", (long)cred.uid);
		if (send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
			/* the peer is refused either way */
		}
		close(fd);
		return;
	}
	ctl_client_t *c = xcalloc(1, sizeof(*c));
	c->ctl = ctl;
	c->fd = fd;
	ev_io_init(&c->read_w, client_read_cb, fd, EV_READ);
	ev_io_init(&c->write_w, client_write_cb, fd, EV_WRITE);
	c->read_w.data = c->write_w.data = c;
	c->next = ctl->clients;
	if (c->next)
		c->next->pprev = &c->next;
	c->pprev = &ctl->clients;
	ctl->clients = c;
	ev_io_start(loop, &c->read_w);
}

int ctl_open(daemon_t *d, const char *path, ctl_t **out, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = -1;

	*out = NULL;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen,
			 "control socket path %s is too long (at most %zu bytes); "
			 "use a shorter datadir",
			 path, sizeof(sa.sun_path) - 1);
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create the control socket: %s", strerror(errno));
		return -1;
	}
	/* We hold the data directory lock, so a socket file left here is stale. */
	unlink(path);
	mode_t old = umask(0177);
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0 || chmod(path, 0600) < 0 || listen(fd, 16) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	ctl_t *ctl = xcalloc(1, sizeof(*ctl));
	ctl->d = d;
	ctl->fd = fd;
	ctl->path = xstrdup(path);
	ctl->started = time(NULL);
	ev_io_init(&ctl->accept_w, accept_cb, fd, EV_READ);
	ctl->accept_w.data = ctl;
	ev_io_start(daemon_loop(d), &ctl->accept_w);
	*out = ctl;
	return 0;
}

void ctl_close(ctl_t *ctl)
{
	if (!ctl)
		return;
	ev_io_stop(daemon_loop(ctl->d), &ctl->accept_w);
	while (ctl->clients) {
		ctl_client_t *c = ctl->clients;
		/* Unlink first: a busy client outlives the ctl until its answer. */
		ctl->clients = c->next;
		if (c->next)
			c->next->pprev = &ctl->clients;
		c->pprev = NULL;
		c->next = NULL;
		bool busy = c->busy;
		client_free(c);
		if (busy)
			c->ctl = NULL; /* still allocated, waiting for its answer */
	}
	close(ctl->fd);
	unlink(ctl->path);
	free(ctl->path);
	free(ctl);
}
