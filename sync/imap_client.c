/*
 * IMAP client: commands, tags, capabilities, login, IDLE, reconnect backoff.
 * See imap_client.h. Transport in imap_conn.c, SASL in imap_auth.c, the
 * response grammar in imap_parse.c.
 *
 * A command is a list of parts sent in order: text, literal bytes in memory,
 * literal bytes streamed from a file, and two kinds of stop: "wait for a
 * continuation" (a synchronising literal, an AUTHENTICATE step, IDLE's "+")
 * and "wait for DONE" (IDLE). Commands are pipelined: the next one starts as
 * soon as the previous one has sent all its parts.
 */
#include "sync/imap_client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/imap_lex.h"
#include "lib/log.h"
#include "lib/util.h"
#include "sync/imap_auth.h"
#include "sync/imap_client_p.h"
#include "sync/imap_conn.h"
#include "sync/password.h"

static const struct {
	const char *name;
	uint32_t bit;
} cap_names[] = {
    {"IMAP4REV1", IMAP_CAP_IMAP4REV1},
    {"CONDSTORE", IMAP_CAP_CONDSTORE},
    {"QRESYNC", IMAP_CAP_QRESYNC},
    {"UIDPLUS", IMAP_CAP_UIDPLUS},
    {"MOVE", IMAP_CAP_MOVE},
    {"LIST-STATUS", IMAP_CAP_LIST_STATUS},
    {"IDLE", IMAP_CAP_IDLE},
    {"NAMESPACE", IMAP_CAP_NAMESPACE},
    {"SPECIAL-USE", IMAP_CAP_SPECIAL_USE},
    {"ENABLE", IMAP_CAP_ENABLE},
    {"LITERAL+", IMAP_CAP_LITERAL_PLUS},
    {"SASL-IR", IMAP_CAP_SASL_IR},
    {"COMPRESS=DEFLATE", IMAP_CAP_COMPRESS_DEFLATE},
    {"STARTTLS", IMAP_CAP_STARTTLS},
    {"LOGINDISABLED", IMAP_CAP_LOGINDISABLED},
    {"AUTH=PLAIN", IMAP_CAP_AUTH_PLAIN},
    {"AUTH=LOGIN", IMAP_CAP_AUTH_LOGIN},
    {"AUTH=CRAM-MD5", IMAP_CAP_AUTH_CRAM_MD5},
    {"UNSELECT", IMAP_CAP_UNSELECT},
    {"ESEARCH", IMAP_CAP_ESEARCH},
    {"LIST-EXTENDED", IMAP_CAP_LIST_EXTENDED},
    {"ID", IMAP_CAP_ID},
    {"LITERAL-", IMAP_CAP_LITERAL_MINUS},
};

const char *imap_result_str(int result)
{
	switch (result) {
	case IMAP_R_OK:
		return "ok";
	case IMAP_R_NO:
		return "refused by the server";
	case IMAP_R_BAD:
		return "rejected as invalid by the server";
	case IMAP_R_CONN:
		return "connection lost";
	case IMAP_R_AUTH:
		return "authentication failed";
	case IMAP_R_TLS:
		return "TLS setup failed";
	case IMAP_R_CANCELLED:
		return "cancelled";
	}
	return "unknown result";
}

void imap_client_opts_init(imap_client_opts_t *o)
{
	memset(o, 0, sizeof(*o));
	o->connect_timeout = 30;
	o->cmd_timeout = 60;
	o->idle_renew = 29 * 60 - 60;
	o->max_attempts = 1;
	o->backoff_first = 1;
	o->backoff_max = 300;
	o->compress = true;
}

/* ---- small helpers ------------------------------------------------------- */

static void conn_connected_cb(imap_conn_t *conn, void *arg);
static void conn_tls_done_cb(imap_conn_t *conn, void *arg);
static void conn_read_cb(imap_conn_t *conn, const char *data, size_t len, void *arg);
static void conn_drain_cb(imap_conn_t *conn, void *arg);
static void conn_error_cb(imap_conn_t *conn, int err, const char *msg, void *arg);
static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void backoff_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void idle_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

static const imap_conn_cbs_t conn_cbs = {
    .connected_cb = conn_connected_cb,
    .tls_done_cb = conn_tls_done_cb,
    .read_cb = conn_read_cb,
    .drain_cb = conn_drain_cb,
    .error_cb = conn_error_cb,
};

bool imap_client_link_lost(const imap_client_t *c)
{
	return c->link_lost;
}

const char *imap_client_host(const imap_client_t *c)
{
	const config_remote_t *r = &c->acct->remote;
	return r->tunnel ? "the tunnel" : r->host ? r->host : "?";
}

int imap_client_port(const imap_client_t *c)
{
	const config_remote_t *r = &c->acct->remote;
	if (r->port)
		return r->port;
	return r->tls == CONFIG_TLS_IMPLICIT ? 993 : 143;
}

void imap_client_touch(imap_client_t *c)
{
	c->last_activity = ev_now(c->loop);
}

struct part *imap_cmd_add_part(struct cmd *cmd, enum part_kind kind, enum trace_kind tr)
{
	if (cmd->n_parts == cmd->cap_parts) {
		cmd->cap_parts = cmd->cap_parts ? cmd->cap_parts * 2 : 4;
		cmd->parts = xrealloc(cmd->parts, cmd->cap_parts * sizeof(*cmd->parts));
	}
	struct part *p = &cmd->parts[cmd->n_parts++];
	memset(p, 0, sizeof(*p));
	p->kind = kind;
	p->tr = tr;
	p->fd = -1;
	return p;
}

void imap_cmd_add_data(struct cmd *cmd, const char *data, size_t len, enum trace_kind tr)
{
	struct part *p = imap_cmd_add_part(cmd, PART_DATA, tr);
	p->data = xmalloc(len + 1);
	memcpy(p->data, data, len);
	p->data[len] = '\0';
	p->len = len;
}

static void cmd_free(struct cmd *cmd)
{
	for (size_t i = 0; i < cmd->n_parts; i++) {
		if (cmd->parts[i].data) {
			if (cmd->parts[i].tr == TR_SECRET || (cmd->flags & CMD_AUTH))
				memset(cmd->parts[i].data, 0, cmd->parts[i].len);
			free(cmd->parts[i].data);
		}
	}
	free(cmd->parts);
	password_free(cmd->secret);
	free(cmd);
}

struct cmd *imap_cmd_new(imap_client_t *c)
{
	struct cmd *cmd = xcalloc(1, sizeof(*cmd));
	snprintf(cmd->tag, sizeof(cmd->tag), "A%u", ++c->next_tag);
	return cmd;
}

void imap_cmd_enqueue(imap_client_t *c, struct cmd *cmd)
{
	struct cmd **pp = &c->cmds;
	while (*pp)
		pp = &(*pp)->next;
	*pp = cmd;
	if (c->idling && cmd != c->idle_cmd)
		imap_client_idle_done(c);
	if (!ev_is_active(&c->timeout_w)) {
		imap_client_touch(c);
		ev_timer_set(&c->timeout_w, c->opts.cmd_timeout, 0.);
		ev_timer_start(c->loop, &c->timeout_w);
	}
	imap_client_pump(c);
}

static void cmd_unlink(imap_client_t *c, struct cmd *cmd)
{
	for (struct cmd **pp = &c->cmds; *pp; pp = &(*pp)->next) {
		if (*pp == cmd) {
			*pp = cmd->next;
			cmd->next = NULL;
			return;
		}
	}
}

/* ---- command text building ---------------------------------------------- */

/* How to trace a text part: the first is the command line; later ones
 * (after a literal) are secret when the literals are. */
enum trace_kind imap_cmd_text_trace(const struct cmd *cmd, enum trace_kind lit_tr)
{
	if (cmd->n_parts == 0)
		return TR_LINE;
	return lit_tr == TR_SECRET ? TR_SECRET : TR_LINE;
}

/* Append s as a string argument: quoted when it can be, else as a literal
 * (a new part; LITERAL+ where offered, else a wait for "+"). */
void imap_cmd_put_string(imap_client_t *c, struct cmd *cmd, buf_t *text, const char *s, size_t n,
			 enum trace_kind lit_tr)
{
	if (imap_lex_string_form(s, n, false) == IMAP_LEX_QUOTED) {
		imap_lex_write_string(text, s, n, 0);
		return;
	}
	bool plus =
	    (c->caps & IMAP_CAP_LITERAL_PLUS) || ((c->caps & IMAP_CAP_LITERAL_MINUS) && n <= 4096);
	buf_printf(text, "{%zu%s}\r\n", n, plus ? "+" : "");
	imap_cmd_add_data(cmd, buf_head(text), buf_avail(text), imap_cmd_text_trace(cmd, lit_tr));
	buf_reset(text);
	if (!plus)
		imap_cmd_add_part(cmd, PART_WAIT_CONT, TR_LINE);
	imap_cmd_add_data(cmd, s, n, lit_tr == TR_SECRET ? TR_SECRET : TR_LITERAL);
}

/* Build cmd's parts from "tag " + fmt. Returns 0 or -1 on a bad format. */
int imap_cmd_build(imap_client_t *c, struct cmd *cmd, enum trace_kind lit_tr, const char *fmt,
		   va_list ap)
{
	buf_t text = BUF_INIT;
	int rc = -1;
	const char *word = fmt;
	va_list ap2;

	/* The command word, for messages ("SELECT", "UID FETCH"), also where
	 * the format starts with it as an argument ("%s %m"). */
	va_copy(ap2, ap);
	if (fmt[0] == '%' && fmt[1] == 's')
		word = va_arg(ap2, const char *);
	va_end(ap2);
	size_t w = strcspn(word, " ");
	if (w == 3 && strncasecmp(word, "UID", 3) == 0 && word[3] == ' ' && word[4] != '%')
		w = 4 + strcspn(word + 4, " ");
	snprintf(cmd->name, sizeof(cmd->name), "%.*s", (int)(w < 23 ? w : 23), word);
	buf_printf(&text, "%s ", cmd->tag);
	for (const char *f = fmt; *f; f++) {
		if (*f != '%') {
			buf_append(&text, f, 1);
			continue;
		}
		switch (*++f) {
		case 's':
			buf_puts(&text, va_arg(ap, const char *));
			break;
		case 'd':
			buf_printf(&text, "%d", va_arg(ap, int));
			break;
		case 'u':
			buf_printf(&text, "%u", va_arg(ap, unsigned));
			break;
		case 'U':
			buf_printf(&text, "%llu", (unsigned long long)va_arg(ap, uint64_t));
			break;
		case '%':
			buf_append(&text, "%", 1);
			break;
		case 'q': {
			const char *s = va_arg(ap, const char *);
			imap_cmd_put_string(c, cmd, &text, s, strlen(s), lit_tr);
			break;
		}
		case 'm': {
			const char *mb = va_arg(ap, const char *);
			char *enc = NULL;
			if (imap_mutf7_encode(mb, strlen(mb), &enc) < 0)
				goto out; /* not UTF-8 */
			imap_cmd_put_string(c, cmd, &text, enc, strlen(enc), lit_tr);
			free(enc);
			break;
		}
		default:
			goto out;
		}
	}
	buf_puts(&text, "\r\n");
	imap_cmd_add_data(cmd, buf_head(&text), buf_avail(&text), imap_cmd_text_trace(cmd, lit_tr));
	rc = 0;
out:
	buf_free(&text);
	return rc;
}

void imap_client_set_caps(imap_client_t *c, const imap_item_t *items)
{
	buf_t b = BUF_INIT;
	c->caps = 0;
	for (const imap_item_t *it = items; it; it = it->next) {
		if (it->type != IMAP_ITEM_ATOM && it->type != IMAP_ITEM_NUMBER)
			continue;
		if (buf_avail(&b))
			buf_puts(&b, " ");
		for (const char *s = it->str; *s; s++) {
			char ch = (char)(*s >= 'a' && *s <= 'z' ? *s - 32 : *s);
			buf_append(&b, &ch, 1);
		}
		for (size_t i = 0; i < IB_ARRAY_LEN(cap_names); i++)
			if (strcasecmp(it->str, cap_names[i].name) == 0)
				c->caps |= cap_names[i].bit;
	}
	free(c->caps_str);
	c->caps_str = xstrdup(buf_avail(&b) ? buf_cstr(&b) : "");
	buf_free(&b);
}

/* ---- tracing ------------------------------------------------------------- */

static void trace_client(imap_client_t *c, const struct part *p, bool in_auth)
{
	if (!log_cat_on(LOG_CAT_IMAP))
		return;
	if (p->tr == TR_SECRET) {
		log_trace(LOG_CAT_IMAP, "acct=%s C: ***", c->name);
	} else if (p->tr == TR_LITERAL) {
		log_trace(LOG_CAT_IMAP, "acct=%s C: {%zu bytes}", c->name,
			  p->kind == PART_FD ? (size_t)p->size : p->len);
	} else {
		char line[2048];
		log_redact_imap(p->data, p->len, in_auth, line, sizeof(line));
		log_trace(LOG_CAT_IMAP, "acct=%s C: %s", c->name, line);
	}
}

static void render_items(buf_t *b, const imap_item_t *it, bool in_list)
{
	for (; it; it = it->next) {
		switch (it->type) {
		case IMAP_ITEM_ATOM:
		case IMAP_ITEM_NUMBER:
			buf_puts(b, it->str);
			break;
		case IMAP_ITEM_NIL:
			buf_puts(b, "NIL");
			break;
		case IMAP_ITEM_STRING:
			if (it->literal || !it->str || it->len > 200 ||
			    imap_lex_string_form(it->str, it->len, false) != IMAP_LEX_QUOTED)
				buf_printf(b, "{%zu bytes}", it->len);
			else
				imap_lex_write_string(b, it->str, it->len, 0);
			break;
		case IMAP_ITEM_LIST:
			buf_puts(b, "(");
			render_items(b, it->child, true);
			buf_puts(b, ")");
			break;
		}
		if (it->next)
			buf_puts(b, " ");
	}
	(void)in_list;
}

/* The server's side of the trace, rebuilt from the parsed response so that
 * literals show as "{N bytes}" and nothing is held twice. */
static void trace_server(imap_client_t *c, const imap_resp_t *r)
{
	static const char *st[] = {"", "OK", "NO", "BAD", "PREAUTH", "BYE"};
	buf_t b = BUF_INIT;

	if (!log_cat_on(LOG_CAT_IMAP))
		return;
	if (r->kind == IMAP_RESP_CONTINUE) {
		/* During AUTHENTICATE the challenge is no secret, but it is base64
		 * noise; show it anyway, it helps debugging a mechanism. */
		buf_printf(&b, "+ %s", r->text ? r->text : "");
	} else {
		buf_puts(&b, r->kind == IMAP_RESP_TAGGED ? r->tag : "*");
		if (r->has_number)
			buf_printf(&b, " %u", r->number);
		if (r->status != IMAP_STATUS_NONE)
			buf_printf(&b, " %s", st[r->status]);
		if (r->code) {
			buf_printf(&b, " [%s", r->code);
			if (r->code_args) {
				buf_puts(&b, " ");
				render_items(&b, r->code_args, false);
			}
			buf_puts(&b, "]");
		}
		if (r->name)
			buf_printf(&b, " %s", r->name);
		if (r->args) {
			buf_puts(&b, " ");
			render_items(&b, r->args, false);
		}
		if (r->text && r->text[0])
			buf_printf(&b, " %s", r->text);
	}
	char line[2048];
	log_redact_imap(buf_head(&b), buf_avail(&b), false, line, sizeof(line));
	log_trace(LOG_CAT_IMAP, "acct=%s S: %s", c->name, line);
	buf_free(&b);
}

/* ---- sending ------------------------------------------------------------- */

/* Send what can be sent, in order, until a command must wait. */
void imap_client_pump(imap_client_t *c)
{
	unsigned gen = c->gen;

	if (!c->conn || c->state < ST_GREETING || c->state == ST_BACKOFF)
		return;
	for (struct cmd *cmd = c->cmds; cmd; cmd = cmd->next) {
		/* Waits for the commands before it; so do the ones after it,
		 * commands go out in order. */
		if ((cmd->flags & CMD_AFTER) && !cmd->started && cmd != c->cmds)
			return;
		while (cmd->cur < cmd->n_parts) {
			struct part *p = &cmd->parts[cmd->cur];
			switch (p->kind) {
			case PART_DATA:
				if (cmd->data_sent == 0)
					trace_client(c, p, (cmd->flags & CMD_AUTH) && cmd->cur > 0);
				cmd->started = true;
				if (p->len <= IMAP_CONN_LOW_WATER) {
					imap_conn_write(c->conn, p->data, p->len);
					if (gen != c->gen)
						return;
				} else {
					/* A big literal goes out as the socket drains, like
					 * PART_FD: queueing it whole would double its memory
					 * in the connection's output buffer. */
					while (cmd->data_sent < p->len &&
					       imap_conn_outq(c->conn) < IMAP_CONN_LOW_WATER) {
						size_t n = p->len - cmd->data_sent;
						if (n > 65536)
							n = 65536;
						imap_conn_write(c->conn, p->data + cmd->data_sent, n);
						if (gen != c->gen)
							return;
						cmd->data_sent += n;
						imap_client_touch(c);
					}
					if (cmd->data_sent < p->len)
						return; /* conn_drain_cb resumes */
					cmd->data_sent = 0;
				}
				cmd->cur++;
				imap_client_touch(c);
				break;
			case PART_FD: {
				char chunk[65536];
				if (cmd->fd_sent == 0)
					trace_client(c, p, false);
				while (cmd->fd_sent < p->size &&
				       imap_conn_outq(c->conn) < IMAP_CONN_LOW_WATER) {
					uint64_t want = p->size - cmd->fd_sent;
					ssize_t n = read(p->fd, chunk,
							 want < sizeof(chunk) ? (size_t)want
									      : sizeof(chunk));
					if (n < 0 && errno == EINTR)
						continue;
					if (n <= 0) {
						/* The message is cut short: the server would wait
						 * for the rest, and the stream cannot be repaired.
						 */
						imap_client_drop(
						    c, IMAP_R_CONN,
						    "acct=%s: cannot read the message to upload "
						    "(%s); reconnecting",
						    c->name,
						    n < 0 ? strerror(errno)
							  : "file shorter than announced");
						return;
					}
					imap_conn_write(c->conn, chunk, (size_t)n);
					if (gen != c->gen)
						return;
					cmd->fd_sent += (uint64_t)n;
					imap_client_touch(c);
				}
				if (cmd->fd_sent < p->size)
					return; /* conn_drain_cb resumes */
				cmd->cur++;
				break;
			}
			case PART_WAIT_CONT:
				if (!cmd->got_cont)
					return;
				cmd->got_cont = false;
				cmd->cur++;
				break;
			case PART_WAIT_DONE:
				if (!cmd->done_req)
					return;
				{
					struct part done = {.kind = PART_DATA,
							    .tr = TR_LINE,
							    .data = "DONE\r\n",
							    .len = 6};
					trace_client(c, &done, false);
				}
				imap_conn_write(c->conn, "DONE\r\n", 6);
				if (gen != c->gen)
					return;
				cmd->cur++;
				imap_client_touch(c);
				break;
			}
		}
	}
}

static void conn_drain_cb(imap_conn_t *conn, void *arg)
{
	imap_client_pump(arg);
}

/* ---- completion ---------------------------------------------------------- */

static void complete(imap_client_t *c, struct cmd *cmd, const imap_done_t *d, const imap_resp_t *r)
{
	if (cmd->internal) {
		cmd->internal(c, cmd, r);
	} else if (cmd->append_done) {
		imap_append_result_t ar = {.done = *d};
		if (r && r->code && strcmp(r->code, "APPENDUID") == 0) {
			const imap_item_t *v = imap_item_nth(r->code_args, 0);
			const imap_item_t *u = imap_item_nth(r->code_args, 1);
			if (v && u && v->type == IMAP_ITEM_NUMBER && u->type == IMAP_ITEM_NUMBER) {
				ar.uidvalidity = (uint32_t)v->num;
				ar.uid = (uint32_t)u->num;
			}
		}
		cmd->append_done(c, &ar, cmd->arg);
	} else if (cmd->done) {
		cmd->done(c, d, cmd->arg);
	}
}

/* Fail every command with result; callbacks may queue new ones (which then
 * fail at once, the client is not ready). */
static void fail_all(imap_client_t *c, int result, const char *msg)
{
	struct cmd *list = c->cmds;
	c->cmds = NULL;
	c->idle_cmd = NULL;
	c->idling = false;
	while (list) {
		struct cmd *cmd = list;
		list = cmd->next;
		imap_done_t d = {.result = result, .status = IMAP_STATUS_NONE, .text = msg};
		if (!cmd->internal)
			complete(c, cmd, &d, NULL);
		cmd_free(cmd);
	}
}

static double backoff_delay(imap_client_t *c)
{
	if (c->failures == 0)
		return 0;
	double d = c->opts.backoff_first;
	for (unsigned i = 1; i < c->failures && d < c->opts.backoff_max; i++)
		d *= 2;
	if (d > c->opts.backoff_max)
		d = c->opts.backoff_max;
	/* +-20% jitter, so many accounts on one server do not return in step. */
	d *= 0.8 + 0.4 * ((double)(ib_now_ms() % 1000) / 1000.0);
	return d;
}

static void teardown(imap_client_t *c)
{
	c->gen++;
	password_cancel(c->pw_req);
	c->pw_req = NULL;
	if (c->conn)
		imap_conn_close(c->conn);
	if (c->parser)
		imap_parser_reset(c->parser);
	ev_timer_stop(c->loop, &c->timeout_w);
	ev_timer_stop(c->loop, &c->idle_w);
	c->caps = 0;
	free(c->caps_str);
	c->caps_str = NULL;
	c->tls_done = false;
	c->preauth = false;
	c->compress_tried = false;
	c->idling = false;
	c->idle_cmd = NULL;
	free(c->bye_text);
	c->bye_text = NULL;
}

static void attempt(imap_client_t *c);

/* Finish a connect() call. */
void imap_client_connect_finish(imap_client_t *c, int result, const char *msg)
{
	imap_done_cb done = c->connect_done;
	void *arg = c->connect_arg;
	c->connect_done = NULL;
	imap_done_t d = {.result = result, .status = IMAP_STATUS_NONE, .text = msg ? msg : ""};
	if (done)
		done(c, &d, arg);
}

/* The connection is gone (or never came up): clean up and tell whoever
 * waits. For IMAP_R_CONN during connect(), retry with backoff while
 * attempts remain. */
void imap_client_drop(imap_client_t *c, int result, const char *fmt, ...)
{
	char msg[1536];
	va_list ap;
	bool was_ready = c->state == ST_READY;
	bool connecting = c->state >= ST_CONNECTING && c->state <= ST_LOGIN;
	bool logout = c->state == ST_LOGOUT;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (was_ready && c->ready_since > 0 && ev_now(c->loop) - c->ready_since > 60)
		c->failures = 0;
	if (result == IMAP_R_CONN && !logout)
		c->failures++;
	teardown(c);
	c->state = ST_DOWN;
	fail_all(c, result == IMAP_R_CANCELLED ? IMAP_R_CANCELLED : IMAP_R_CONN, msg);
	if (logout)
		return;
	if (connecting && c->connect_done) {
		if (result == IMAP_R_AUTH) {
			c->auth_failed = true;
			free(c->auth_msg);
			c->auth_msg = xstrdup(msg);
		}
		if (result == IMAP_R_CONN &&
		    (c->opts.max_attempts == 0 || c->attempt < c->opts.max_attempts)) {
			double delay = backoff_delay(c);
			/* Say why nothing happens for a while (a one-shot run
			 * against a server that is down waits this out). */
			if (c->opts.max_attempts)
				log_info("sync: %s; trying again in %.0f s (attempt %u of %u)", msg,
					 delay, c->attempt + 1, c->opts.max_attempts);
			else
				log_info("sync: %s; trying again in %.0f s", msg, delay);
			if (c->lost) {
				char m2[1700];
				snprintf(m2, sizeof(m2), "%s; retrying in %.0f s", msg, delay);
				c->lost(c, result, m2, c->lost_arg);
			}
			if (c->state == ST_DOWN && c->connect_done) {
				c->state = ST_BACKOFF;
				ev_timer_set(&c->backoff_w, delay, 0.);
				ev_timer_start(c->loop, &c->backoff_w);
			}
			return;
		}
		imap_client_connect_finish(c, result, msg);
		return;
	}
	if (was_ready && c->lost)
		c->lost(c, result, msg, c->lost_arg);
}

static void conn_tls_done_cb(imap_conn_t *conn, void *arg)
{
	imap_client_t *c = arg;
	c->tls_done = true;
	imap_client_touch(c);
	imap_login_next(c);
}

/* ---- input --------------------------------------------------------------- */

static void handle_untagged(imap_client_t *c, const imap_resp_t *r)
{
	if (r->name && strcmp(r->name, "CAPABILITY") == 0)
		imap_client_set_caps(c, r->args);
	else if (r->code && strcmp(r->code, "CAPABILITY") == 0)
		imap_client_set_caps(c, r->code_args);
	if (r->status == IMAP_STATUS_BYE) {
		free(c->bye_text);
		c->bye_text = xstrdup(r->text ? r->text : "");
	}
	if (c->state == ST_LOGIN)
		return;
	for (struct cmd *cmd = c->cmds; cmd; cmd = cmd->next) {
		if (!cmd->started)
			break;
		if (cmd->untagged && cmd->untagged(c, r, cmd->arg))
			return;
	}
	if (c->untagged)
		c->untagged(c, r, c->untagged_arg);
}

static void handle_continue(imap_client_t *c, const imap_resp_t *r)
{
	/* The continuation belongs to the command that is waiting for one: the
	 * first that has not sent all its parts, or an AUTHENTICATE that has. */
	for (struct cmd *cmd = c->cmds; cmd; cmd = cmd->next) {
		if (cmd->cur < cmd->n_parts && cmd->parts[cmd->cur].kind == PART_WAIT_CONT) {
			if (cmd->flags & CMD_IDLE) {
				c->idling = true;
				ev_timer_set(&c->idle_w, c->opts.idle_renew, 0.);
				ev_timer_start(c->loop, &c->idle_w);
			}
			cmd->got_cont = true;
			if (cmd->cont) {
				cmd->cur++;
				cmd->got_cont = false;
				cmd->cont(c, cmd, r->text ? r->text : "");
			}
			imap_client_pump(c);
			return;
		}
		if (cmd->cur < cmd->n_parts)
			break;
		if (cmd->cont && cmd->started && cmd->next == NULL) {
			cmd->cont(c, cmd, r->text ? r->text : "");
			return;
		}
	}
	imap_client_drop(c, IMAP_R_CONN,
			 "acct=%s: %s sent a continuation nobody asked for; reconnecting", c->name,
			 imap_client_host(c));
}

static void handle_tagged(imap_client_t *c, const imap_resp_t *r)
{
	struct cmd *cmd = c->cmds;
	while (cmd && strcmp(cmd->tag, r->tag) != 0)
		cmd = cmd->next;
	if (!cmd || !cmd->started) {
		imap_client_drop(c, IMAP_R_CONN,
				 "acct=%s: %s answered a command never sent (tag %s); reconnecting",
				 c->name, imap_client_host(c), r->tag);
		return;
	}
	if (r->code && strcmp(r->code, "CAPABILITY") == 0)
		imap_client_set_caps(c, r->code_args);
	cmd_unlink(c, cmd);
	if ((cmd->flags & CMD_IDLE) && c->idle_cmd == cmd) {
		c->idle_cmd = NULL;
		c->idling = false;
		ev_timer_stop(c->loop, &c->idle_w);
		if (c->idle_renew && imap_resp_ok(r) && c->cmds == NULL) {
			/* Renewal: the same IDLE again, invisible to the caller. */
			c->idle_renew = false;
			imap_client_idle(c, cmd->done, cmd->untagged, cmd->arg);
			cmd_free(cmd);
			return;
		}
		c->idle_renew = false;
	}
	imap_done_t d = {
	    .result = r->status == IMAP_STATUS_OK   ? IMAP_R_OK
		      : r->status == IMAP_STATUS_NO ? IMAP_R_NO
						    : IMAP_R_BAD,
	    .status = r->status,
	    .code = r->code,
	    .code_args = r->code_args,
	    .text = r->text ? r->text : "",
	};
	complete(c, cmd, &d, r);
	cmd_free(cmd);
}

static void conn_read_cb(imap_conn_t *conn, const char *data, size_t len, void *arg)
{
	imap_client_t *c = arg;
	unsigned gen = c->gen;

	imap_client_touch(c);
	while (len > 0) {
		imap_resp_t *r = NULL;
		size_t used = 0;
		enum client_state before = c->state;
		int rc = imap_parse(c->parser, data, len, &r, &used);
		data += used;
		len -= used;
		if (rc == IMAP_PARSE_BAD) {
			imap_client_drop(c, IMAP_R_CONN,
					 "acct=%s: %s sent a malformed response (%s); reconnecting",
					 c->name, imap_client_host(c),
					 imap_parser_error(c->parser));
			return;
		}
		if (rc == IMAP_PARSE_MORE)
			return;
		trace_server(c, r);
		bool tls_or_compress_pending = false;
		if (before == ST_GREETING) {
			imap_login_greeting(c, r);
		} else if (r->kind == IMAP_RESP_UNTAGGED) {
			handle_untagged(c, r);
		} else if (r->kind == IMAP_RESP_CONTINUE) {
			handle_continue(c, r);
		} else {
			const char *name =
			    c->cmds && strcmp(c->cmds->tag, r->tag) == 0 ? c->cmds->name : "";
			tls_or_compress_pending =
			    strcmp(name, "STARTTLS") == 0 || strcmp(name, "COMPRESS") == 0;
			handle_tagged(c, r);
		}
		bool tagged = r->kind == IMAP_RESP_TAGGED;
		imap_resp_free(r);
		if (gen != c->gen)
			return;
		/* A command waiting for the ones before it may go now. */
		if (tagged && c->cmds && (c->cmds->flags & CMD_AFTER) && !c->cmds->started)
			imap_client_pump(c);
		if (tls_or_compress_pending && len > 0) {
			/* Bytes after the OK were sent before the switch: in the
			 * clear where encryption was promised (an injection), or
			 * outside the compressed stream. Refuse them. */
			imap_client_drop(
			    c, IMAP_R_CONN,
			    "acct=%s: %s sent data right after switching the stream; reconnecting",
			    c->name, imap_client_host(c));
			return;
		}
	}
}

/* ---- connection events --------------------------------------------------- */

static void conn_connected_cb(imap_conn_t *conn, void *arg)
{
	imap_client_t *c = arg;
	c->state = ST_GREETING;
	if (c->acct->remote.tls == CONFIG_TLS_IMPLICIT && !c->acct->remote.tunnel)
		c->tls_done = true;
	imap_client_touch(c);
	ev_timer_stop(c->loop, &c->timeout_w);
	ev_timer_set(&c->timeout_w, c->opts.connect_timeout, 0.);
	ev_timer_start(c->loop, &c->timeout_w);
}

static void conn_error_cb(imap_conn_t *conn, int err, const char *msg, void *arg)
{
	imap_client_t *c = arg;
	int result = IMAP_R_CONN;
	if (err == IMAP_CONN_ERR_UNTRUSTED || err == IMAP_CONN_ERR_CONFIG)
		result = IMAP_R_TLS;
	/* Say what was going on: "while waiting for FETCH" tells a user (and a
	 * bug report) more than the bare fact. */
	char during[64] = "";
	for (struct cmd *cmd = c->cmds; cmd; cmd = cmd->next) {
		if (cmd->started && !(cmd->flags & CMD_IDLE)) {
			snprintf(during, sizeof(during), " while waiting for %s", cmd->name);
			break;
		}
	}
	c->link_lost = err == IMAP_CONN_ERR_CLOSED || err == IMAP_CONN_ERR_IO;
	if (c->bye_text && err == IMAP_CONN_ERR_CLOSED)
		imap_client_drop(c, result, "acct=%s: %s closed the connection%s (BYE %s)", c->name,
				 imap_client_host(c), during, c->bye_text);
	else
		imap_client_drop(c, result, "acct=%s: %s%s", c->name, msg,
				 err == IMAP_CONN_ERR_CLOSED ? during : "");
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	imap_client_t *c = w->data;
	bool connecting = c->state >= ST_CONNECTING && c->state <= ST_LOGIN;
	double limit = connecting ? c->opts.connect_timeout : c->opts.cmd_timeout;
	bool waiting = connecting;

	for (struct cmd *cmd = c->cmds; cmd && !waiting; cmd = cmd->next)
		if (!(cmd->flags & CMD_IDLE) || cmd->done_req)
			waiting = true;
	if (c->state == ST_LOGOUT)
		waiting = true;
	if (!waiting)
		return; /* nothing expected: re-armed by the next command */
	double left = c->last_activity + limit - ev_now(loop);
	if (c->pw_req) {
		/* Waiting for password_command, not for the server: it has its
		 * own deadline. */
		imap_client_touch(c);
		left = limit;
	}
	if (left > 0.01) {
		ev_timer_set(w, left, 0.);
		ev_timer_start(loop, w);
		return;
	}
	if (c->state == ST_CONNECTING)
		return; /* imap_conn has its own timer for this phase */
	c->link_lost = true;
	imap_client_drop(c, IMAP_R_CONN, "acct=%s: %s did not answer for %.0f s%s; reconnecting",
			 c->name, imap_client_host(c), limit,
			 connecting ? " while logging in" : "");
}

static void attempt(imap_client_t *c)
{
	const config_remote_t *rm = &c->acct->remote;
	int rc;

	c->attempt++;
	c->link_lost = false;
	c->state = ST_CONNECTING;
	c->preauth = false;
	c->tls_done = false;
	if (c->parser)
		imap_parser_free(c->parser);
	c->parser = imap_parser_new(NULL, c->has_sink ? &c->sink : NULL);
	imap_client_touch(c);
	ev_timer_stop(c->loop, &c->timeout_w);
	ev_timer_set(&c->timeout_w, c->opts.connect_timeout + 1, 0.);
	ev_timer_start(c->loop, &c->timeout_w);
	if (rm->tunnel) {
		rc = imap_conn_connect_tunnel(c->conn, rm->tunnel);
	} else {
		imap_tls_opts_t o = {rm->host, imap_client_port(c), rm->ca_file, rm->fingerprint};
		rc = imap_conn_connect_tcp(c->conn, rm->host ? rm->host : "", imap_client_port(c),
					   rm->tls == CONFIG_TLS_IMPLICIT ? &o : NULL,
					   c->opts.connect_timeout);
	}
	if (rc < 0) {
		c->state = ST_CONNECTING;
		imap_client_drop(c, IMAP_R_CONN, "acct=%s: %s", c->name, imap_conn_errmsg(c->conn));
	}
}

static void backoff_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	imap_client_t *c = w->data;
	if (c->state == ST_BACKOFF)
		attempt(c);
}

/* ---- public -------------------------------------------------------------- */

imap_client_t *imap_client_new(struct ev_loop *loop, const config_account_t *acct,
			       const imap_client_opts_t *opts)
{
	imap_client_t *c = xcalloc(1, sizeof(*c));
	c->loop = loop;
	c->acct = acct;
	if (opts)
		c->opts = *opts;
	else
		imap_client_opts_init(&c->opts);
	c->name = xstrdup(c->opts.log_name ? c->opts.log_name : acct->name ? acct->name : "?");
	c->opts.log_name = NULL;
	c->conn = imap_conn_new(loop, &conn_cbs, c);
	ev_init(&c->timeout_w, timeout_cb);
	ev_init(&c->backoff_w, backoff_cb);
	ev_init(&c->idle_w, idle_timer_cb);
	c->timeout_w.data = c->backoff_w.data = c->idle_w.data = c;
	return c;
}

void imap_client_close(imap_client_t *c)
{
	bool connecting = c->connect_done != NULL;
	ev_timer_stop(c->loop, &c->backoff_w);
	teardown(c);
	c->state = ST_DOWN;
	fail_all(c, IMAP_R_CANCELLED, "cancelled");
	if (connecting)
		imap_client_connect_finish(c, IMAP_R_CANCELLED, "cancelled");
}

void imap_client_free(imap_client_t *c)
{
	if (!c)
		return;
	imap_client_close(c);
	imap_conn_free(c->conn);
	if (c->parser)
		imap_parser_free(c->parser);
	free(c->caps_str);
	free(c->auth_msg);
	free(c->bye_text);
	free(c->name);
	free(c);
}

const config_account_t *imap_client_account(const imap_client_t *c)
{
	return c->acct;
}

void imap_client_set_untagged_cb(imap_client_t *c, imap_untagged_cb cb, void *arg)
{
	c->untagged = cb;
	c->untagged_arg = arg;
}

void imap_client_set_lost_cb(imap_client_t *c, imap_lost_cb cb, void *arg)
{
	c->lost = cb;
	c->lost_arg = arg;
}

void imap_client_set_literal_sink(imap_client_t *c, const imap_literal_sink_t *sink)
{
	c->has_sink = sink != NULL;
	if (sink)
		c->sink = *sink;
}

int imap_client_connect(imap_client_t *c, imap_done_cb done, void *arg)
{
	if (c->state != ST_DOWN)
		return -1;
	if (c->auth_failed) {
		imap_done_t d = {
		    .result = IMAP_R_AUTH, .status = IMAP_STATUS_NONE, .text = c->auth_msg};
		done(c, &d, arg);
		return 0;
	}
	c->connect_done = done;
	c->connect_arg = arg;
	c->attempt = 0;
	double delay = backoff_delay(c);
	if (delay > 0) {
		c->state = ST_BACKOFF;
		ev_timer_set(&c->backoff_w, delay, 0.);
		ev_timer_start(c->loop, &c->backoff_w);
		return 0;
	}
	attempt(c);
	return 0;
}

void imap_client_clear_failed(imap_client_t *c)
{
	c->auth_failed = false;
	free(c->auth_msg);
	c->auth_msg = NULL;
	c->failures = 0;
}

bool imap_client_ready(const imap_client_t *c)
{
	return c->state == ST_READY;
}

static void logout_done(imap_client_t *c, const imap_done_t *d, void *arg)
{
	/* The server closes after the tagged OK; close our side too. */
	teardown(c);
	c->state = ST_DOWN;
	c->failures = 0;
	fail_all(c, IMAP_R_CANCELLED, "logged out");
}

struct logout_wrap {
	imap_done_cb done;
	void *arg;
};

static void logout_wrap_cb(imap_client_t *c, const imap_done_t *d, void *arg)
{
	struct logout_wrap w = *(struct logout_wrap *)arg;
	free(arg);
	if (d->result == IMAP_R_OK || d->result == IMAP_R_NO || d->result == IMAP_R_BAD)
		logout_done(c, d, NULL);
	if (w.done)
		w.done(c, d, w.arg);
}

int imap_client_logout(imap_client_t *c, imap_done_cb done, void *arg)
{
	struct logout_wrap *w = xmalloc(sizeof(*w));
	w->done = done;
	w->arg = arg;
	int rc = imap_client_cmd(c, logout_wrap_cb, NULL, w, "LOGOUT");
	if (rc == 0)
		c->state = ST_LOGOUT;
	return rc;
}

uint32_t imap_client_caps(const imap_client_t *c)
{
	return c->caps;
}

bool imap_client_has_cap(const imap_client_t *c, const char *name)
{
	size_t n = strlen(name);
	const char *s = c->caps_str;
	while (s && *s) {
		size_t w = strcspn(s, " ");
		if (w == n && strncasecmp(s, name, n) == 0)
			return true;
		s += w;
		while (*s == ' ')
			s++;
	}
	return false;
}

const char *imap_client_caps_str(const imap_client_t *c)
{
	return c->caps_str ? c->caps_str : "";
}

static int not_ready(imap_client_t *c, imap_done_cb done, imap_append_cb adone, void *arg)
{
	char msg[256];
	snprintf(msg, sizeof(msg), "acct=%s: not connected", c->name);
	imap_done_t d = {.result = IMAP_R_CONN, .status = IMAP_STATUS_NONE, .text = msg};
	if (adone) {
		imap_append_result_t ar = {.done = d};
		adone(c, &ar, arg);
	} else if (done) {
		done(c, &d, arg);
	}
	return IMAP_R_CONN;
}

static int vcmd(imap_client_t *c, unsigned flags, imap_done_cb done, imap_untagged_cb untagged,
		void *arg, const char *fmt, va_list ap)
{
	if (c->state != ST_READY)
		return not_ready(c, done, NULL, arg);
	struct cmd *cmd = imap_cmd_new(c);
	cmd->flags = flags;
	cmd->done = done;
	cmd->untagged = untagged;
	cmd->arg = arg;
	if (imap_cmd_build(c, cmd, TR_LITERAL, fmt, ap) < 0) {
		cmd_free(cmd);
		imap_done_t d = {
		    .result = IMAP_R_BAD,
		    .status = IMAP_STATUS_NONE,
		    .text =
			"bad command: unknown % conversion, or a mailbox name that is not UTF-8"};
		if (done)
			done(c, &d, arg);
		return IMAP_R_BAD;
	}
	imap_cmd_enqueue(c, cmd);
	return 0;
}

int imap_client_cmd(imap_client_t *c, imap_done_cb done, imap_untagged_cb untagged, void *arg,
		    const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = vcmd(c, 0, done, untagged, arg, fmt, ap);
	va_end(ap);
	return rc;
}

int imap_client_cmd_after(imap_client_t *c, imap_done_cb done, imap_untagged_cb untagged,
			  void *arg, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = vcmd(c, CMD_AFTER, done, untagged, arg, fmt, ap);
	va_end(ap);
	return rc;
}

int imap_client_select(imap_client_t *c, const char *mailbox, bool readonly,
		       const imap_qresync_t *qr, bool condstore, imap_done_cb done,
		       imap_untagged_cb untagged, void *arg)
{
	const char *verb = readonly ? "EXAMINE" : "SELECT";
	if (qr && qr->known_uids)
		return imap_client_cmd(c, done, untagged, arg, "%s %m (QRESYNC (%u %U %s))", verb,
				       mailbox, qr->uidvalidity, qr->modseq, qr->known_uids);
	if (qr)
		return imap_client_cmd(c, done, untagged, arg, "%s %m (QRESYNC (%u %U))", verb,
				       mailbox, qr->uidvalidity, qr->modseq);
	if (condstore)
		return imap_client_cmd(c, done, untagged, arg, "%s %m (CONDSTORE)", verb, mailbox);
	return imap_client_cmd(c, done, untagged, arg, "%s %m", verb, mailbox);
}

static int append_common(imap_client_t *c, const char *mailbox, const char *flags, const char *date,
			 const char *data, size_t len, int fd, uint64_t size, imap_append_cb done,
			 void *arg)
{
	if (c->state != ST_READY)
		return not_ready(c, NULL, done, arg);
	char *enc = NULL;
	if (imap_mutf7_encode(mailbox, strlen(mailbox), &enc) < 0) {
		imap_append_result_t ar = {.done = {.result = IMAP_R_BAD,
						    .status = IMAP_STATUS_NONE,
						    .text = "mailbox name is not valid UTF-8"}};
		if (done)
			done(c, &ar, arg);
		return IMAP_R_BAD;
	}
	struct cmd *cmd = imap_cmd_new(c);
	buf_t t = BUF_INIT;
	uint64_t n = fd >= 0 ? size : len;

	cmd->append_done = done;
	cmd->arg = arg;
	snprintf(cmd->name, sizeof(cmd->name), "APPEND");
	buf_printf(&t, "%s APPEND ", cmd->tag);
	imap_cmd_put_string(c, cmd, &t, enc, strlen(enc), TR_LITERAL);
	free(enc);
	if (flags)
		buf_printf(&t, " %s", flags);
	if (date) {
		buf_puts(&t, " ");
		imap_lex_write_string(&t, date, strlen(date), 0);
	}
	bool plus =
	    (c->caps & IMAP_CAP_LITERAL_PLUS) || ((c->caps & IMAP_CAP_LITERAL_MINUS) && n <= 4096);
	buf_printf(&t, " {%llu%s}\r\n", (unsigned long long)n, plus ? "+" : "");
	imap_cmd_add_data(cmd, buf_head(&t), buf_avail(&t), imap_cmd_text_trace(cmd, TR_LITERAL));
	buf_free(&t);
	if (!plus)
		imap_cmd_add_part(cmd, PART_WAIT_CONT, TR_LINE);
	if (fd >= 0) {
		struct part *p = imap_cmd_add_part(cmd, PART_FD, TR_LITERAL);
		p->fd = fd;
		p->size = size;
	} else {
		imap_cmd_add_data(cmd, data, len, TR_LITERAL);
	}
	imap_cmd_add_data(cmd, "\r\n", 2, TR_LINE);
	imap_cmd_enqueue(c, cmd);
	return 0;
}

int imap_client_append(imap_client_t *c, const char *mailbox, const char *flags, const char *date,
		       const char *data, size_t len, imap_append_cb done, void *arg)
{
	return append_common(c, mailbox, flags, date, data, len, -1, 0, done, arg);
}

int imap_client_append_fd(imap_client_t *c, const char *mailbox, const char *flags,
			  const char *date, int fd, uint64_t size, imap_append_cb done, void *arg)
{
	return append_common(c, mailbox, flags, date, NULL, 0, fd, size, done, arg);
}

int imap_client_uid_fetch(imap_client_t *c, const char *set, const char *items,
			  uint64_t changedsince, imap_done_cb done, imap_untagged_cb untagged,
			  void *arg)
{
	if (changedsince)
		return imap_client_cmd(c, done, untagged, arg, "UID FETCH %s %s (CHANGEDSINCE %U)",
				       set, items, changedsince);
	return imap_client_cmd(c, done, untagged, arg, "UID FETCH %s %s", set, items);
}

int imap_client_idle(imap_client_t *c, imap_done_cb done, imap_untagged_cb untagged, void *arg)
{
	if (c->state != ST_READY)
		return not_ready(c, done, NULL, arg);
	if (!(c->caps & IMAP_CAP_IDLE) || c->idle_cmd) {
		imap_done_t d = {.result = IMAP_R_BAD,
				 .status = IMAP_STATUS_NONE,
				 .text = c->idle_cmd ? "already idling"
						     : "the server does not support IDLE"};
		if (done)
			done(c, &d, arg);
		return IMAP_R_BAD;
	}
	struct cmd *cmd = imap_cmd_new(c);
	char line[32];
	cmd->done = done;
	cmd->untagged = untagged;
	cmd->arg = arg;
	cmd->flags = CMD_IDLE;
	snprintf(cmd->name, sizeof(cmd->name), "IDLE");
	snprintf(line, sizeof(line), "%s IDLE\r\n", cmd->tag);
	imap_cmd_add_data(cmd, line, strlen(line), TR_LINE);
	imap_cmd_add_part(cmd, PART_WAIT_CONT, TR_LINE);
	imap_cmd_add_part(cmd, PART_WAIT_DONE, TR_LINE);
	c->idle_cmd = cmd;
	imap_cmd_enqueue(c, cmd);
	return 0;
}

void imap_client_idle_done(imap_client_t *c)
{
	if (!c->idle_cmd || c->idle_cmd->done_req)
		return;
	c->idle_cmd->done_req = true;
	ev_timer_stop(c->loop, &c->idle_w);
	imap_client_touch(c);
	if (!ev_is_active(&c->timeout_w)) {
		ev_timer_set(&c->timeout_w, c->opts.cmd_timeout, 0.);
		ev_timer_start(c->loop, &c->timeout_w);
	}
	imap_client_pump(c);
}

static void idle_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	imap_client_t *c = w->data;
	if (!c->idle_cmd)
		return;
	c->idle_renew = true;
	imap_client_idle_done(c);
}

bool imap_client_idling(const imap_client_t *c)
{
	return c->idling;
}

size_t imap_client_pending(const imap_client_t *c)
{
	size_t n = 0;
	for (const struct cmd *cmd = c->cmds; cmd; cmd = cmd->next)
		n++;
	return n;
}
