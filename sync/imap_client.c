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
#include "lib/log.h"
#include "lib/util.h"
#include "sync/imap_auth.h"
#include "sync/imap_conn.h"
#include "sync/password.h"

enum part_kind {
	PART_DATA,       /* bytes in memory */
	PART_FD,         /* size bytes read from fd */
	PART_WAIT_CONT,  /* stop until the server sends "+" */
	PART_WAIT_DONE,  /* IDLE: stop until imap_client_idle_done() */
};

enum trace_kind {
	TR_LINE,         /* command text: traced through log_redact_imap() */
	TR_LITERAL,      /* literal bytes: traced as "{N bytes}" */
	TR_SECRET,       /* credentials: traced as "***" */
};

struct part {
	enum part_kind kind;
	enum trace_kind tr;
	char *data;
	size_t len;
	int fd;
	uint64_t size;
};

enum cmd_flags {
	CMD_IDLE = 1 << 0,
	CMD_AUTH = 1 << 1,       /* continuations go to cont_cb; replies are secret */
};

struct cmd;
typedef void (*cont_fn)(imap_client_t *c, struct cmd *cmd, const char *text);
typedef void (*internal_fn)(imap_client_t *c, struct cmd *cmd, const imap_resp_t *r);

struct cmd {
	struct cmd *next;
	char tag[16];
	char name[24];           /* command word, for messages */
	struct part *parts;
	size_t n_parts, cap_parts;
	size_t cur;              /* next part to send */
	uint64_t fd_sent;
	bool got_cont;
	bool done_req;           /* IDLE: DONE requested */
	bool started;            /* first byte sent */
	unsigned flags;
	int auth_step;
	char *secret;            /* AUTHENTICATE: the password until the exchange ends */
	imap_done_cb done;
	imap_append_cb append_done;
	imap_untagged_cb untagged;
	void *arg;
	internal_fn internal;    /* login sequence steps */
	cont_fn cont;
};

enum client_state {
	ST_DOWN,
	ST_BACKOFF,
	ST_CONNECTING,
	ST_GREETING,
	ST_LOGIN,                /* CAPABILITY / STARTTLS / auth / COMPRESS */
	ST_READY,
	ST_LOGOUT,
};

struct imap_client {
	struct ev_loop *loop;
	const config_account_t *acct;
	imap_client_opts_t opts;
	char *name;
	imap_conn_t *conn;
	imap_parser_t *parser;
	imap_literal_sink_t sink;
	bool has_sink;
	enum client_state state;
	unsigned gen;            /* bumped on every teardown, to notice it from callbacks */

	struct cmd *cmds;        /* queued and in flight, in tag order */
	unsigned next_tag;

	uint32_t caps;
	char *caps_str;
	bool tls_done;
	bool preauth;
	bool warned_plaintext;
	bool compress_tried;

	/* connect */
	imap_done_cb connect_done;
	void *connect_arg;
	unsigned attempt;
	unsigned failures;       /* consecutive, for the backoff */
	double ready_since;
	bool auth_failed;
	char *auth_msg;

	imap_untagged_cb untagged;
	void *untagged_arg;
	imap_lost_cb lost;
	void *lost_arg;

	/* idle */
	struct cmd *idle_cmd;
	bool idling;
	bool idle_renew;

	ev_timer timeout_w;      /* no progress for too long */
	ev_timer backoff_w;
	ev_timer idle_w;
	double last_activity;
	char *bye_text;
};

static const struct { const char *name; uint32_t bit; } cap_names[] = {
	{ "IMAP4REV1", IMAP_CAP_IMAP4REV1 }, { "CONDSTORE", IMAP_CAP_CONDSTORE },
	{ "QRESYNC", IMAP_CAP_QRESYNC }, { "UIDPLUS", IMAP_CAP_UIDPLUS },
	{ "MOVE", IMAP_CAP_MOVE }, { "LIST-STATUS", IMAP_CAP_LIST_STATUS },
	{ "IDLE", IMAP_CAP_IDLE }, { "NAMESPACE", IMAP_CAP_NAMESPACE },
	{ "SPECIAL-USE", IMAP_CAP_SPECIAL_USE }, { "ENABLE", IMAP_CAP_ENABLE },
	{ "LITERAL+", IMAP_CAP_LITERAL_PLUS }, { "SASL-IR", IMAP_CAP_SASL_IR },
	{ "COMPRESS=DEFLATE", IMAP_CAP_COMPRESS_DEFLATE }, { "STARTTLS", IMAP_CAP_STARTTLS },
	{ "LOGINDISABLED", IMAP_CAP_LOGINDISABLED }, { "AUTH=PLAIN", IMAP_CAP_AUTH_PLAIN },
	{ "AUTH=LOGIN", IMAP_CAP_AUTH_LOGIN }, { "AUTH=CRAM-MD5", IMAP_CAP_AUTH_CRAM_MD5 },
	{ "UNSELECT", IMAP_CAP_UNSELECT }, { "ESEARCH", IMAP_CAP_ESEARCH },
	{ "LIST-EXTENDED", IMAP_CAP_LIST_EXTENDED }, { "ID", IMAP_CAP_ID },
	{ "LITERAL-", IMAP_CAP_LITERAL_MINUS },
};

const char *imap_result_str(int result)
{
	switch (result) {
	case IMAP_R_OK: return "ok";
	case IMAP_R_NO: return "refused by the server";
	case IMAP_R_BAD: return "rejected as invalid by the server";
	case IMAP_R_CONN: return "connection lost";
	case IMAP_R_AUTH: return "authentication failed";
	case IMAP_R_TLS: return "TLS setup failed";
	case IMAP_R_CANCELLED: return "cancelled";
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
static void pump(imap_client_t *c);
static void drop(imap_client_t *c, int result, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void login_next(imap_client_t *c);

static const imap_conn_cbs_t conn_cbs = {
	.connected_cb = conn_connected_cb,
	.tls_done_cb = conn_tls_done_cb,
	.read_cb = conn_read_cb,
	.drain_cb = conn_drain_cb,
	.error_cb = conn_error_cb,
};

static const char *host_of(const imap_client_t *c)
{
	const config_remote_t *r = &c->acct->remote;
	return r->tunnel ? "the tunnel" : r->host ? r->host : "?";
}

static int port_of(const imap_client_t *c)
{
	const config_remote_t *r = &c->acct->remote;
	if (r->port)
		return r->port;
	return r->tls == CONFIG_TLS_IMPLICIT ? 993 : 143;
}

static void touch(imap_client_t *c)
{
	c->last_activity = ev_now(c->loop);
}

static struct part *add_part(struct cmd *cmd, enum part_kind kind, enum trace_kind tr)
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

static void add_data(struct cmd *cmd, const char *data, size_t len, enum trace_kind tr)
{
	struct part *p = add_part(cmd, PART_DATA, tr);
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

static struct cmd *cmd_new(imap_client_t *c)
{
	struct cmd *cmd = xcalloc(1, sizeof(*cmd));
	snprintf(cmd->tag, sizeof(cmd->tag), "A%u", ++c->next_tag);
	return cmd;
}

static void cmd_enqueue(imap_client_t *c, struct cmd *cmd)
{
	struct cmd **pp = &c->cmds;
	while (*pp)
		pp = &(*pp)->next;
	*pp = cmd;
	if (c->idling && cmd != c->idle_cmd)
		imap_client_idle_done(c);
	if (!ev_is_active(&c->timeout_w)) {
		touch(c);
		ev_timer_set(&c->timeout_w, c->opts.cmd_timeout, 0.);
		ev_timer_start(c->loop, &c->timeout_w);
	}
	pump(c);
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

/* ---- quoting -------------------------------------------------------------
 * Until lib/imap_lex.h offers these, the client carries the three small
 * pieces of IMAP lexical syntax it needs to build commands. */

/* True when s can go out as a quoted string: 7-bit, no CR/LF/NUL. */
static bool imap_lex_quotable(const char *s, size_t n)
{
	if (n > 1024)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == 0 || ch == '\r' || ch == '\n' || ch >= 0x80)
			return false;
	}
	return true;
}

static void imap_lex_quote(buf_t *b, const char *s, size_t n)
{
	buf_append(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '"' || s[i] == '\\')
			buf_append(b, "\\", 1);
		buf_append(b, s + i, 1);
	}
	buf_append(b, "\"", 1);
}

/* Modified UTF-7 (RFC 3501 5.1.3) of a UTF-8 mailbox name; new string.
 * Invalid UTF-8 bytes are passed through as U+FFFD. */
static char *imap_lex_mailbox_encode(const char *in)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
	buf_t b = BUF_INIT;
	const unsigned char *s = (const unsigned char *)in;
	uint32_t bits = 0;
	int nbits = 0;
	bool in_b64 = false;

	while (*s) {
		uint32_t cp;
		int len = 1;
		if (*s < 0x80) {
			cp = *s;
		} else if ((*s & 0xe0) == 0xc0 && (s[1] & 0xc0) == 0x80) {
			cp = (uint32_t)(*s & 0x1f) << 6 | (s[1] & 0x3f);
			len = 2;
		} else if ((*s & 0xf0) == 0xe0 && (s[1] & 0xc0) == 0x80 && (s[2] & 0xc0) == 0x80) {
			cp = (uint32_t)(*s & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
			len = 3;
		} else if ((*s & 0xf8) == 0xf0 && (s[1] & 0xc0) == 0x80 && (s[2] & 0xc0) == 0x80 &&
			   (s[3] & 0xc0) == 0x80) {
			cp = (uint32_t)(*s & 0x07) << 18 | (uint32_t)(s[1] & 0x3f) << 12 |
			     (uint32_t)(s[2] & 0x3f) << 6 | (s[3] & 0x3f);
			len = 4;
		} else {
			cp = 0xfffd;
		}
		s += len;
		if (cp >= 0x20 && cp < 0x7f) {
			if (in_b64) {
				if (nbits > 0)
					buf_append(&b, &b64[(bits << (6 - nbits)) & 0x3f], 1);
				buf_append(&b, "-", 1);
				in_b64 = false;
				nbits = 0;
				bits = 0;
			}
			char ch = (char)cp;
			if (cp == '&')
				buf_append(&b, "&-", 2);
			else
				buf_append(&b, &ch, 1);
			continue;
		}
		if (!in_b64) {
			buf_append(&b, "&", 1);
			in_b64 = true;
		}
		uint16_t units[2];
		int nu = 1;
		if (cp >= 0x10000) {
			cp -= 0x10000;
			units[0] = (uint16_t)(0xd800 | (cp >> 10));
			units[1] = (uint16_t)(0xdc00 | (cp & 0x3ff));
			nu = 2;
		} else {
			units[0] = (uint16_t)cp;
		}
		for (int u = 0; u < nu; u++) {
			bits = bits << 16 | units[u];
			nbits += 16;
			while (nbits >= 6) {
				nbits -= 6;
				buf_append(&b, &b64[(bits >> nbits) & 0x3f], 1);
			}
			bits &= (1u << nbits) - 1;
		}
	}
	if (in_b64) {
		if (nbits > 0)
			buf_append(&b, &b64[(bits << (6 - nbits)) & 0x3f], 1);
		buf_append(&b, "-", 1);
	}
	char *out = xstrdup(b.data ? buf_cstr(&b) : "");
	buf_free(&b);
	return out;
}

/* ---- command text building ---------------------------------------------- */

/* How to trace a text part: the first is the command line; later ones
 * (after a literal) are secret when the literals are. */
static enum trace_kind text_trace(const struct cmd *cmd, enum trace_kind lit_tr)
{
	if (cmd->n_parts == 0)
		return TR_LINE;
	return lit_tr == TR_SECRET ? TR_SECRET : TR_LINE;
}

/* Append s as a string argument: quoted when it can be, else as a literal
 * (a new part; LITERAL+ where offered, else a wait for "+"). */
static void put_string(imap_client_t *c, struct cmd *cmd, buf_t *text, const char *s, size_t n,
		       enum trace_kind lit_tr)
{
	if (imap_lex_quotable(s, n)) {
		imap_lex_quote(text, s, n);
		return;
	}
	bool plus = (c->caps & IMAP_CAP_LITERAL_PLUS) ||
		    ((c->caps & IMAP_CAP_LITERAL_MINUS) && n <= 4096);
	buf_printf(text, "{%zu%s}\r\n", n, plus ? "+" : "");
	add_data(cmd, buf_head(text), buf_avail(text), text_trace(cmd, lit_tr));
	buf_reset(text);
	if (!plus)
		add_part(cmd, PART_WAIT_CONT, TR_LINE);
	add_data(cmd, s, n, lit_tr == TR_SECRET ? TR_SECRET : TR_LITERAL);
}

/* Build cmd's parts from "tag " + fmt. Returns 0 or -1 on a bad format. */
static int build_cmd(imap_client_t *c, struct cmd *cmd, enum trace_kind lit_tr, const char *fmt,
		     va_list ap)
{
	buf_t text = BUF_INIT;
	int rc = -1;

	buf_printf(&text, "%s ", cmd->tag);
	for (const char *f = fmt; *f; f++) {
		if (*f != '%') {
			buf_append(&text, f, 1);
			continue;
		}
		switch (*++f) {
		case 's': buf_puts(&text, va_arg(ap, const char *)); break;
		case 'd': buf_printf(&text, "%d", va_arg(ap, int)); break;
		case 'u': buf_printf(&text, "%u", va_arg(ap, unsigned)); break;
		case 'U': buf_printf(&text, "%llu", (unsigned long long)va_arg(ap, uint64_t)); break;
		case '%': buf_append(&text, "%", 1); break;
		case 'q': {
			const char *s = va_arg(ap, const char *);
			put_string(c, cmd, &text, s, strlen(s), lit_tr);
			break;
		}
		case 'm': {
			char *enc = imap_lex_mailbox_encode(va_arg(ap, const char *));
			put_string(c, cmd, &text, enc, strlen(enc), lit_tr);
			free(enc);
			break;
		}
		default:
			goto out;
		}
	}
	buf_puts(&text, "\r\n");
	add_data(cmd, buf_head(&text), buf_avail(&text), text_trace(cmd, lit_tr));
	/* The command word, for messages ("SELECT", "UID FETCH" is "UID"). */
	size_t w = strcspn(fmt, " ");
	snprintf(cmd->name, sizeof(cmd->name), "%.*s", (int)(w < 23 ? w : 23), fmt);
	rc = 0;
out:
	buf_free(&text);
	return rc;
}

/* ---- tracing ------------------------------------------------------------- */

static void trace_client(imap_client_t *c, const struct part *p, bool in_auth)
{
	if (!log_cat_on(LOG_CAT_IMAP))
		return;
	if (p->tr == TR_SECRET) {
		log_trace(LOG_CAT_IMAP, "acct=%s C: ***", c->name);
	} else if (p->tr == TR_LITERAL) {
		log_trace(LOG_CAT_IMAP, "acct=%s C: {%zu bytes}", c->name, p->kind == PART_FD ? (size_t)p->size : p->len);
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
			if (it->literal || it->len > 200)
				buf_printf(b, "{%zu bytes}", it->len);
			else
				imap_lex_quote(b, it->str, it->len);
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
	static const char *st[] = { "", "OK", "NO", "BAD", "PREAUTH", "BYE" };
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
static void pump(imap_client_t *c)
{
	unsigned gen = c->gen;

	if (!c->conn || c->state < ST_GREETING || c->state == ST_BACKOFF)
		return;
	for (struct cmd *cmd = c->cmds; cmd; cmd = cmd->next) {
		while (cmd->cur < cmd->n_parts) {
			struct part *p = &cmd->parts[cmd->cur];
			switch (p->kind) {
			case PART_DATA:
				trace_client(c, p, (cmd->flags & CMD_AUTH) && cmd->cur > 0);
				cmd->started = true;
				imap_conn_write(c->conn, p->data, p->len);
				if (gen != c->gen)
					return;
				cmd->cur++;
				touch(c);
				break;
			case PART_FD: {
				char chunk[65536];
				if (cmd->fd_sent == 0)
					trace_client(c, p, false);
				while (cmd->fd_sent < p->size && imap_conn_outq(c->conn) < IMAP_CONN_LOW_WATER) {
					uint64_t want = p->size - cmd->fd_sent;
					ssize_t n = read(p->fd, chunk, want < sizeof(chunk) ? (size_t)want : sizeof(chunk));
					if (n <= 0) {
						/* The message is cut short: the server would wait for
						 * the rest, and the stream cannot be repaired. */
						drop(c, IMAP_R_CONN, "acct=%s: cannot read the message to upload (%s); reconnecting",
						     c->name, n < 0 ? strerror(errno) : "file shorter than announced");
						return;
					}
					imap_conn_write(c->conn, chunk, (size_t)n);
					if (gen != c->gen)
						return;
					cmd->fd_sent += (uint64_t)n;
					touch(c);
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
					struct part done = { .kind = PART_DATA, .tr = TR_LINE, .data = "DONE\r\n", .len = 6 };
					trace_client(c, &done, false);
				}
				imap_conn_write(c->conn, "DONE\r\n", 6);
				if (gen != c->gen)
					return;
				cmd->cur++;
				touch(c);
				break;
			}
		}
	}
}

static void conn_drain_cb(imap_conn_t *conn, void *arg)
{
	pump(arg);
}

/* ---- completion ---------------------------------------------------------- */

static void complete(imap_client_t *c, struct cmd *cmd, const imap_done_t *d, const imap_resp_t *r)
{
	if (cmd->internal) {
		cmd->internal(c, cmd, r);
	} else if (cmd->append_done) {
		imap_append_result_t ar = { .done = *d };
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
		imap_done_t d = { .result = result, .status = IMAP_STATUS_NONE, .text = msg };
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
static void connect_finish(imap_client_t *c, int result, const char *msg)
{
	imap_done_cb done = c->connect_done;
	void *arg = c->connect_arg;
	c->connect_done = NULL;
	imap_done_t d = { .result = result, .status = IMAP_STATUS_NONE, .text = msg ? msg : "" };
	if (done)
		done(c, &d, arg);
}

/* The connection is gone (or never came up): clean up and tell whoever
 * waits. For IMAP_R_CONN during connect(), retry with backoff while
 * attempts remain. */
static void drop(imap_client_t *c, int result, const char *fmt, ...)
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
		if (result == IMAP_R_CONN && (c->opts.max_attempts == 0 || c->attempt < c->opts.max_attempts)) {
			double delay = backoff_delay(c);
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
		connect_finish(c, result, msg);
		return;
	}
	if (was_ready && c->lost)
		c->lost(c, result, msg, c->lost_arg);
}

/* ---- login sequence ------------------------------------------------------ */

static void send_internal(imap_client_t *c, internal_fn fn, unsigned flags, enum trace_kind lit_tr,
			  const char *fmt, ...)
{
	struct cmd *cmd = cmd_new(c);
	va_list ap;
	cmd->internal = fn;
	cmd->flags = flags;
	va_start(ap, fmt);
	build_cmd(c, cmd, lit_tr, fmt, ap);
	va_end(ap);
	cmd_enqueue(c, cmd);
}

static void set_caps(imap_client_t *c, const imap_item_t *items)
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

static bool status_ok(const imap_resp_t *r)
{
	return r && r->status == IMAP_STATUS_OK;
}

static void capability_done(imap_client_t *c, struct cmd *cmd, const imap_resp_t *r)
{
	if (!status_ok(r)) {
		drop(c, IMAP_R_CONN, "acct=%s: %s refused CAPABILITY (%s); is this an IMAP server?",
		     c->name, host_of(c), r && r->text ? r->text : "");
		return;
	}
	login_next(c);
}

static void starttls_done(imap_client_t *c, struct cmd *cmd, const imap_resp_t *r)
{
	if (!status_ok(r)) {
		drop(c, IMAP_R_TLS, "acct=%s: %s refused STARTTLS (%s); use tls = \"implicit\" on port 993 if it offers that",
		     c->name, host_of(c), r && r->text ? r->text : "");
		return;
	}
	const config_remote_t *rm = &c->acct->remote;
	imap_tls_opts_t o = { rm->host, port_of(c), rm->ca_file, rm->fingerprint };
	/* Whatever the server sent before TLS is forgotten, capabilities too. */
	c->caps = 0;
	imap_conn_start_tls(c->conn, &o, c->opts.connect_timeout);
}

static void conn_tls_done_cb(imap_conn_t *conn, void *arg)
{
	imap_client_t *c = arg;
	c->tls_done = true;
	touch(c);
	login_next(c);
}

static void compress_done(imap_client_t *c, struct cmd *cmd, const imap_resp_t *r)
{
	/* A refusal is harmless: go on uncompressed. */
	if (status_ok(r) && imap_conn_start_compress(c->conn) < 0) {
		drop(c, IMAP_R_CONN, "acct=%s: cannot start compression; reconnecting", c->name);
		return;
	}
	login_next(c);
}

static void auth_done(imap_client_t *c, struct cmd *cmd, const imap_resp_t *r)
{
	const config_remote_t *rm = &c->acct->remote;
	if (!status_ok(r)) {
		char code[128] = "";
		if (r && r->code)
			snprintf(code, sizeof(code), "[%s] ", r->code);
		drop(c, IMAP_R_AUTH, "acct=%s: login as %s rejected by %s: %s%s; check remote.password%s",
		     c->name, rm->user ? rm->user : "?", host_of(c), code, r && r->text ? r->text : "",
		     rm->password_file ? "_file" : rm->password_command ? "_command" : "");
		return;
	}
	c->preauth = true; /* authenticated from here on */
	if (r->code && strcmp(r->code, "CAPABILITY") == 0)
		set_caps(c, r->code_args);
	else
		c->caps = 0;
	login_next(c);
}

/* AUTHENTICATE continuations: answer the challenge, or cancel with "*". */
static void auth_cont(imap_client_t *c, struct cmd *cmd, const char *text)
{
	const config_remote_t *rm = &c->acct->remote;
	char *resp = NULL;
	int step = cmd->auth_step++;

	/* One answer per exchange; a second challenge is not part of PLAIN or
	 * CRAM-MD5, so it is cancelled with "*" and the server says NO. */
	if (step == 0 && cmd->secret) {
		if (strcmp(cmd->name, "PLAIN") == 0)
			resp = imap_auth_plain(rm->user ? rm->user : "", cmd->secret);
		else
			resp = imap_auth_cram_md5(rm->user ? rm->user : "", cmd->secret, text);
	}
	password_free(cmd->secret);
	cmd->secret = NULL;
	struct part *p = add_part(cmd, PART_DATA, TR_SECRET);
	p->data = xasprintf("%s\r\n", resp ? resp : "*");
	p->len = strlen(p->data);
	imap_auth_wipe(resp);
	pump(c);
}

static void do_auth(imap_client_t *c)
{
	const config_remote_t *rm = &c->acct->remote;
	imap_auth_offer_t offer = {
		.plain = c->caps & IMAP_CAP_AUTH_PLAIN,
		.login_mech = c->caps & IMAP_CAP_AUTH_LOGIN,
		.cram_md5 = c->caps & IMAP_CAP_AUTH_CRAM_MD5,
		.logindisabled = c->caps & IMAP_CAP_LOGINDISABLED,
	};
	enum config_auth mech;
	char *pw = NULL, *err = NULL;
	int rc = imap_auth_choose(rm, &offer, &mech);

	if (rc < 0) {
		drop(c, IMAP_R_AUTH, "acct=%s: cannot log in to %s: %s (it offers: %s); %s", c->name,
		     host_of(c), imap_auth_strerror(rc), c->caps_str ? c->caps_str : "",
		     rc == IMAP_AUTH_ERR_LOGINDISABLED && !c->tls_done ? "use tls = \"starttls\" or \"implicit\""
								       : "adjust remote.auth");
		return;
	}
	if (password_get(rm, &pw, &err) < 0) {
		drop(c, IMAP_R_AUTH, "acct=%s: no password for %s: %s", c->name, rm->user ? rm->user : "?", err);
		free(err);
		return;
	}
	if (imap_auth_mech_plaintext(mech) && !imap_conn_is_tls(c->conn) &&
	    !imap_conn_is_local(c->conn) && !c->warned_plaintext) {
		/* A warning, not an error: the user chose tls = "none". */
		c->warned_plaintext = true;
		log_warn("acct=%s: sending the password to %s unencrypted (%s); set tls = \"starttls\" or \"implicit\"",
			 c->name, host_of(c), imap_auth_mech_name(mech));
	}
	struct cmd *cmd = cmd_new(c);
	cmd->internal = auth_done;
	cmd->flags = CMD_AUTH;
	if (mech == CONFIG_AUTH_LOGIN) {
		buf_t t = BUF_INIT;
		buf_printf(&t, "%s LOGIN ", cmd->tag);
		put_string(c, cmd, &t, rm->user ? rm->user : "", strlen(rm->user ? rm->user : ""), TR_SECRET);
		buf_puts(&t, " ");
		put_string(c, cmd, &t, pw, strlen(pw), TR_SECRET);
		buf_puts(&t, "\r\n");
		add_data(cmd, buf_head(&t), buf_avail(&t), text_trace(cmd, TR_SECRET));
		memset(t.data, 0, t.cap);
		buf_free(&t);
		snprintf(cmd->name, sizeof(cmd->name), "LOGIN");
	} else if (mech == CONFIG_AUTH_PLAIN && (c->caps & IMAP_CAP_SASL_IR)) {
		char *ir = imap_auth_plain(rm->user ? rm->user : "", pw);
		char *line = xasprintf("%s AUTHENTICATE PLAIN %s\r\n", cmd->tag, ir);
		add_data(cmd, line, strlen(line), TR_LINE);
		imap_auth_wipe(ir);
		imap_auth_wipe(line);
		cmd->auth_step = 1; /* a further "+" gets "*" */
		cmd->cont = auth_cont;
		snprintf(cmd->name, sizeof(cmd->name), "PLAIN");
	} else {
		char *line = xasprintf("%s AUTHENTICATE %s\r\n", cmd->tag, imap_auth_mech_name(mech));
		add_data(cmd, line, strlen(line), TR_LINE);
		free(line);
		add_part(cmd, PART_WAIT_CONT, TR_LINE);
		cmd->cont = auth_cont;
		snprintf(cmd->name, sizeof(cmd->name), "%s", imap_auth_mech_name(mech));
		cmd->secret = pw;
		pw = NULL;
	}
	password_free(pw);
	cmd_enqueue(c, cmd);
}

static void become_ready(imap_client_t *c)
{
	c->state = ST_READY;
	c->ready_since = ev_now(c->loop);
	c->attempt = 0;
	connect_finish(c, IMAP_R_OK, "");
}

/* Decide the next step of the login sequence from what we know. */
static void login_next(imap_client_t *c)
{
	const config_remote_t *rm = &c->acct->remote;

	c->state = ST_LOGIN;
	if (!c->caps_str || !c->caps) {
		send_internal(c, capability_done, 0, TR_LINE, "CAPABILITY");
		return;
	}
	if (!c->preauth) {
		if (rm->tls == CONFIG_TLS_STARTTLS && !c->tls_done) {
			if (!(c->caps & IMAP_CAP_STARTTLS)) {
				drop(c, IMAP_R_TLS,
				     "acct=%s: %s does not offer STARTTLS, and tls = \"starttls\" forbids going on in plaintext; "
				     "use tls = \"implicit\" (port 993) if the server has it",
				     c->name, host_of(c));
				return;
			}
			send_internal(c, starttls_done, 0, TR_LINE, "STARTTLS");
			return;
		}
		do_auth(c);
		return;
	}
	if (c->opts.compress && (c->caps & IMAP_CAP_COMPRESS_DEFLATE) && !c->compress_tried) {
		/* Ask once per connection, so a refusal does not loop. */
		c->compress_tried = true;
		send_internal(c, compress_done, 0, TR_LINE, "COMPRESS DEFLATE");
		return;
	}
	become_ready(c);
}

/* ---- input --------------------------------------------------------------- */

static void handle_greeting(imap_client_t *c, const imap_resp_t *r)
{
	const config_remote_t *rm = &c->acct->remote;

	if (r->kind != IMAP_RESP_UNTAGGED || (r->status != IMAP_STATUS_OK && r->status != IMAP_STATUS_PREAUTH)) {
		drop(c, IMAP_R_CONN, "acct=%s: %s did not greet as an IMAP server (%s%s); check host, port and tunnel",
		     c->name, host_of(c), r->status == IMAP_STATUS_BYE ? "BYE " : "", r->text ? r->text : "");
		return;
	}
	if (r->status == IMAP_STATUS_PREAUTH) {
		if (!rm->tunnel && rm->tls == CONFIG_TLS_STARTTLS) {
			drop(c, IMAP_R_TLS, "acct=%s: %s logged us in before STARTTLS (PREAUTH), so the session cannot be "
			     "encrypted; use tls = \"implicit\" or a tunnel", c->name, host_of(c));
			return;
		}
		c->preauth = true;
	} else if (rm->tunnel) {
		/* A tunnel that asks for a login would need the password sent
		 * through it; the tunnel is there to avoid exactly that. */
		drop(c, IMAP_R_AUTH, "acct=%s: the tunnel command did not log in (no PREAUTH greeting: %s); "
		     "check that remote.tunnel runs an IMAP server for the user", c->name, r->text ? r->text : "");
		return;
	}
	if (r->code && strcmp(r->code, "CAPABILITY") == 0)
		set_caps(c, r->code_args);
	login_next(c);
}

static void handle_untagged(imap_client_t *c, const imap_resp_t *r)
{
	if (r->name && strcmp(r->name, "CAPABILITY") == 0)
		set_caps(c, r->args);
	else if (r->code && strcmp(r->code, "CAPABILITY") == 0)
		set_caps(c, r->code_args);
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
			pump(c);
			return;
		}
		if (cmd->cur < cmd->n_parts)
			break;
		if (cmd->cont && cmd->started && cmd->next == NULL) {
			cmd->cont(c, cmd, r->text ? r->text : "");
			return;
		}
	}
	drop(c, IMAP_R_CONN, "acct=%s: %s sent a continuation nobody asked for; reconnecting", c->name, host_of(c));
}

static void handle_tagged(imap_client_t *c, const imap_resp_t *r)
{
	struct cmd *cmd = c->cmds;
	while (cmd && strcmp(cmd->tag, r->tag) != 0)
		cmd = cmd->next;
	if (!cmd) {
		drop(c, IMAP_R_CONN, "acct=%s: %s answered a command never sent (tag %s); reconnecting",
		     c->name, host_of(c), r->tag);
		return;
	}
	if (r->code && strcmp(r->code, "CAPABILITY") == 0)
		set_caps(c, r->code_args);
	cmd_unlink(c, cmd);
	if ((cmd->flags & CMD_IDLE) && c->idle_cmd == cmd) {
		c->idle_cmd = NULL;
		c->idling = false;
		ev_timer_stop(c->loop, &c->idle_w);
		if (c->idle_renew && status_ok(r) && c->cmds == NULL) {
			/* Renewal: the same IDLE again, invisible to the caller. */
			c->idle_renew = false;
			imap_client_idle(c, cmd->done, cmd->untagged, cmd->arg);
			cmd_free(cmd);
			return;
		}
		c->idle_renew = false;
	}
	imap_done_t d = {
		.result = r->status == IMAP_STATUS_OK ? IMAP_R_OK :
			  r->status == IMAP_STATUS_NO ? IMAP_R_NO : IMAP_R_BAD,
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

	touch(c);
	while (len > 0) {
		imap_resp_t *r = NULL;
		size_t used = 0;
		enum client_state before = c->state;
		int rc = imap_parse(c->parser, data, len, &r, &used);
		data += used;
		len -= used;
		if (rc == IMAP_PARSE_BAD) {
			drop(c, IMAP_R_CONN, "acct=%s: %s sent a malformed response (%s); reconnecting",
			     c->name, host_of(c), imap_parser_error(c->parser));
			return;
		}
		if (rc == IMAP_PARSE_MORE)
			return;
		trace_server(c, r);
		bool tls_or_compress_pending = false;
		if (before == ST_GREETING) {
			handle_greeting(c, r);
		} else if (r->kind == IMAP_RESP_UNTAGGED) {
			handle_untagged(c, r);
		} else if (r->kind == IMAP_RESP_CONTINUE) {
			handle_continue(c, r);
		} else {
			const char *name = c->cmds && strcmp(c->cmds->tag, r->tag) == 0 ? c->cmds->name : "";
			tls_or_compress_pending = strcmp(name, "STARTTLS") == 0 || strcmp(name, "COMPRESS") == 0;
			handle_tagged(c, r);
		}
		imap_resp_free(r);
		if (gen != c->gen)
			return;
		if (tls_or_compress_pending && len > 0) {
			/* Bytes after the OK were sent before the switch: in the
			 * clear where encryption was promised (an injection), or
			 * outside the compressed stream. Refuse them. */
			drop(c, IMAP_R_CONN, "acct=%s: %s sent data right after switching the stream; reconnecting",
			     c->name, host_of(c));
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
	touch(c);
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
	if (c->bye_text && err == IMAP_CONN_ERR_CLOSED)
		drop(c, result, "acct=%s: %s closed the connection (BYE %s)", c->name, host_of(c), c->bye_text);
	else
		drop(c, result, "acct=%s: %s", c->name, msg);
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
	if (left > 0.01) {
		ev_timer_set(w, left, 0.);
		ev_timer_start(loop, w);
		return;
	}
	if (c->state == ST_CONNECTING)
		return; /* imap_conn has its own timer for this phase */
	drop(c, IMAP_R_CONN, "acct=%s: %s did not answer for %.0f s%s; reconnecting", c->name, host_of(c),
	     limit, connecting ? " while logging in" : "");
}

static void attempt(imap_client_t *c)
{
	const config_remote_t *rm = &c->acct->remote;
	int rc;

	c->attempt++;
	c->state = ST_CONNECTING;
	c->preauth = false;
	c->tls_done = false;
	if (c->parser)
		imap_parser_free(c->parser);
	c->parser = imap_parser_new(NULL, c->has_sink ? &c->sink : NULL);
	touch(c);
	ev_timer_stop(c->loop, &c->timeout_w);
	ev_timer_set(&c->timeout_w, c->opts.connect_timeout + 1, 0.);
	ev_timer_start(c->loop, &c->timeout_w);
	if (rm->tunnel) {
		rc = imap_conn_connect_tunnel(c->conn, rm->tunnel);
	} else {
		imap_tls_opts_t o = { rm->host, port_of(c), rm->ca_file, rm->fingerprint };
		rc = imap_conn_connect_tcp(c->conn, rm->host ? rm->host : "", port_of(c),
					   rm->tls == CONFIG_TLS_IMPLICIT ? &o : NULL, c->opts.connect_timeout);
	}
	if (rc < 0) {
		c->state = ST_CONNECTING;
		drop(c, IMAP_R_CONN, "acct=%s: %s", c->name, imap_conn_errmsg(c->conn));
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
		connect_finish(c, IMAP_R_CANCELLED, "cancelled");
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
		imap_done_t d = { .result = IMAP_R_AUTH, .status = IMAP_STATUS_NONE, .text = c->auth_msg };
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
	imap_done_t d = { .result = IMAP_R_CONN, .status = IMAP_STATUS_NONE, .text = msg };
	if (adone) {
		imap_append_result_t ar = { .done = d };
		adone(c, &ar, arg);
	} else if (done) {
		done(c, &d, arg);
	}
	return IMAP_R_CONN;
}

static int vcmd(imap_client_t *c, imap_done_cb done, imap_untagged_cb untagged, void *arg,
		const char *fmt, va_list ap)
{
	if (c->state != ST_READY)
		return not_ready(c, done, NULL, arg);
	struct cmd *cmd = cmd_new(c);
	cmd->done = done;
	cmd->untagged = untagged;
	cmd->arg = arg;
	if (build_cmd(c, cmd, TR_LITERAL, fmt, ap) < 0) {
		cmd_free(cmd);
		imap_done_t d = { .result = IMAP_R_BAD, .status = IMAP_STATUS_NONE, .text = "bad command format" };
		if (done)
			done(c, &d, arg);
		return IMAP_R_BAD;
	}
	cmd_enqueue(c, cmd);
	return 0;
}

int imap_client_cmd(imap_client_t *c, imap_done_cb done, imap_untagged_cb untagged, void *arg,
		    const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = vcmd(c, done, untagged, arg, fmt, ap);
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
		return imap_client_cmd(c, done, untagged, arg, "%s %m (QRESYNC (%u %U))", verb, mailbox,
				       qr->uidvalidity, qr->modseq);
	if (condstore)
		return imap_client_cmd(c, done, untagged, arg, "%s %m (CONDSTORE)", verb, mailbox);
	return imap_client_cmd(c, done, untagged, arg, "%s %m", verb, mailbox);
}

static int append_common(imap_client_t *c, const char *mailbox, const char *flags,
			 const char *date, const char *data, size_t len, int fd, uint64_t size,
			 imap_append_cb done, void *arg)
{
	if (c->state != ST_READY)
		return not_ready(c, NULL, done, arg);
	struct cmd *cmd = cmd_new(c);
	buf_t t = BUF_INIT;
	uint64_t n = fd >= 0 ? size : len;
	char *enc = imap_lex_mailbox_encode(mailbox);

	cmd->append_done = done;
	cmd->arg = arg;
	snprintf(cmd->name, sizeof(cmd->name), "APPEND");
	buf_printf(&t, "%s APPEND ", cmd->tag);
	put_string(c, cmd, &t, enc, strlen(enc), TR_LITERAL);
	free(enc);
	if (flags)
		buf_printf(&t, " %s", flags);
	if (date) {
		buf_puts(&t, " ");
		imap_lex_quote(&t, date, strlen(date));
	}
	bool plus = (c->caps & IMAP_CAP_LITERAL_PLUS) || ((c->caps & IMAP_CAP_LITERAL_MINUS) && n <= 4096);
	buf_printf(&t, " {%llu%s}\r\n", (unsigned long long)n, plus ? "+" : "");
	add_data(cmd, buf_head(&t), buf_avail(&t), text_trace(cmd, TR_LITERAL));
	buf_free(&t);
	if (!plus)
		add_part(cmd, PART_WAIT_CONT, TR_LINE);
	if (fd >= 0) {
		struct part *p = add_part(cmd, PART_FD, TR_LITERAL);
		p->fd = fd;
		p->size = size;
	} else {
		add_data(cmd, data, len, TR_LITERAL);
	}
	add_data(cmd, "\r\n", 2, TR_LINE);
	cmd_enqueue(c, cmd);
	return 0;
}

int imap_client_append(imap_client_t *c, const char *mailbox, const char *flags,
		       const char *date, const char *data, size_t len, imap_append_cb done,
		       void *arg)
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
		return imap_client_cmd(c, done, untagged, arg, "UID FETCH %s %s (CHANGEDSINCE %U)", set,
				       items, changedsince);
	return imap_client_cmd(c, done, untagged, arg, "UID FETCH %s %s", set, items);
}

int imap_client_idle(imap_client_t *c, imap_done_cb done, imap_untagged_cb untagged, void *arg)
{
	if (c->state != ST_READY)
		return not_ready(c, done, NULL, arg);
	if (!(c->caps & IMAP_CAP_IDLE) || c->idle_cmd) {
		imap_done_t d = { .result = IMAP_R_BAD, .status = IMAP_STATUS_NONE,
				  .text = c->idle_cmd ? "already idling" : "the server does not support IDLE" };
		if (done)
			done(c, &d, arg);
		return IMAP_R_BAD;
	}
	struct cmd *cmd = cmd_new(c);
	char line[32];
	cmd->done = done;
	cmd->untagged = untagged;
	cmd->arg = arg;
	cmd->flags = CMD_IDLE;
	snprintf(cmd->name, sizeof(cmd->name), "IDLE");
	snprintf(line, sizeof(line), "%s IDLE\r\n", cmd->tag);
	add_data(cmd, line, strlen(line), TR_LINE);
	add_part(cmd, PART_WAIT_CONT, TR_LINE);
	add_part(cmd, PART_WAIT_DONE, TR_LINE);
	c->idle_cmd = cmd;
	cmd_enqueue(c, cmd);
	return 0;
}

void imap_client_idle_done(imap_client_t *c)
{
	if (!c->idle_cmd || c->idle_cmd->done_req)
		return;
	c->idle_cmd->done_req = true;
	ev_timer_stop(c->loop, &c->idle_w);
	touch(c);
	if (!ev_is_active(&c->timeout_w)) {
		ev_timer_set(&c->timeout_w, c->opts.cmd_timeout, 0.);
		ev_timer_start(c->loop, &c->timeout_w);
	}
	pump(c);
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
