/*
 * Private to the IMAP client (imap_client.c, and the login sequence in
 * imap_auth.c): the client and command structures and the helpers both
 * halves use. Nothing outside sync/imap_client.c and sync/imap_auth.c
 * includes this.
 */
#ifndef IB_SYNC_IMAP_CLIENT_P_H
#define IB_SYNC_IMAP_CLIENT_P_H

#include <ev.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/buf.h"
#include "sync/imap_client.h"
#include "sync/imap_conn.h"
#include "sync/password.h"

enum part_kind {
	PART_DATA,	/* bytes in memory */
	PART_FD,	/* size bytes read from fd */
	PART_WAIT_CONT, /* stop until the server sends "+" */
	PART_WAIT_DONE, /* IDLE: stop until imap_client_idle_done() */
};

enum trace_kind {
	TR_LINE,    /* command text: traced through log_redact_imap() */
	TR_LITERAL, /* literal bytes: traced as "{N bytes}" */
	TR_SECRET,  /* credentials: traced as "***" */
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
	CMD_AUTH = 1 << 1, /* continuations go to cont_cb; replies are secret */
	CMD_AFTER = 1 << 2, /* not sent before every earlier command has completed */
};

struct cmd;
typedef void (*cont_fn)(imap_client_t *c, struct cmd *cmd, const char *text);
typedef void (*internal_fn)(imap_client_t *c, struct cmd *cmd, const imap_resp_t *r);

struct cmd {
	struct cmd *next;
	char tag[16];
	char name[24]; /* command word, for messages */
	struct part *parts;
	size_t n_parts, cap_parts;
	size_t cur; /* next part to send */
	uint64_t fd_sent;
	size_t data_sent; /* bytes of a big PART_DATA (a literal) already sent */
	bool got_cont;
	bool done_req; /* IDLE: DONE requested */
	bool started;  /* first byte sent */
	unsigned flags;
	int auth_step;
	char *secret; /* AUTHENTICATE: the password until the exchange ends */
	imap_done_cb done;
	imap_append_cb append_done;
	imap_untagged_cb untagged;
	void *arg;
	internal_fn internal; /* login sequence steps */
	cont_fn cont;
};

enum client_state {
	ST_DOWN,
	ST_BACKOFF,
	ST_CONNECTING,
	ST_GREETING,
	ST_LOGIN, /* CAPABILITY / STARTTLS / auth / COMPRESS */
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
	unsigned gen; /* bumped on every teardown, to notice it from callbacks */

	struct cmd *cmds; /* queued and in flight, in tag order */
	unsigned next_tag;

	uint32_t caps;
	char *caps_str;
	bool tls_done;
	bool preauth;
	bool warned_plaintext;
	bool compress_tried;
	password_req_t *pw_req; /* password_command running for this login */
	enum config_auth auth_mech;

	/* connect */
	imap_done_cb connect_done;
	void *connect_arg;
	unsigned attempt;
	unsigned failures; /* consecutive, for the backoff */
	double ready_since;
	bool auth_failed;
	bool link_lost; /* the last drop was the link's end, not bad input */
	char *auth_msg;

	imap_untagged_cb untagged;
	void *untagged_arg;
	imap_lost_cb lost;
	void *lost_arg;

	/* idle */
	struct cmd *idle_cmd;
	bool idling;
	bool idle_renew;

	ev_timer timeout_w; /* no progress for too long */
	ev_timer backoff_w;
	ev_timer idle_w;
	double last_activity;
	char *bye_text;
};

/* Helpers of imap_client.c. */
const char *imap_client_host(const imap_client_t *c);
int imap_client_port(const imap_client_t *c);
void imap_client_touch(imap_client_t *c);
void imap_client_pump(imap_client_t *c);
void imap_client_set_caps(imap_client_t *c, const imap_item_t *items);
void imap_client_connect_finish(imap_client_t *c, int result, const char *msg);
/* Tear the connection down and tell whoever waits (see imap_client.c). */
void imap_client_drop(imap_client_t *c, int result, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Building commands: a new command with the next tag, its parts, strings
 * in the lightest safe form, and queueing (which starts sending). */
struct cmd *imap_cmd_new(imap_client_t *c);
struct part *imap_cmd_add_part(struct cmd *cmd, enum part_kind kind, enum trace_kind tr);
void imap_cmd_add_data(struct cmd *cmd, const char *data, size_t len, enum trace_kind tr);
enum trace_kind imap_cmd_text_trace(const struct cmd *cmd, enum trace_kind lit_tr);
void imap_cmd_put_string(imap_client_t *c, struct cmd *cmd, buf_t *text, const char *s, size_t n,
			 enum trace_kind lit_tr);
void imap_cmd_enqueue(imap_client_t *c, struct cmd *cmd);
/* A command of the login sequence, completed by fn (not a user callback). */
void imap_cmd_send_internal(imap_client_t *c, internal_fn fn, unsigned flags,
			    enum trace_kind lit_tr, const char *fmt, ...);
int imap_cmd_build(imap_client_t *c, struct cmd *cmd, enum trace_kind lit_tr, const char *fmt,
		   va_list ap);

/* The login sequence (imap_auth.c): the greeting, then CAPABILITY,
 * STARTTLS, authentication and COMPRESS as needed, then ready. */
void imap_login_greeting(imap_client_t *c, const imap_resp_t *r);
void imap_login_next(imap_client_t *c);

static inline bool imap_resp_ok(const imap_resp_t *r)
{
	return r && r->status == IMAP_STATUS_OK;
}

#endif
