/*
 * IMAP client: one logged-in connection to an account's remote server, on the
 * daemon's libev loop. Commands are pipelined (many in flight), each with a
 * tag ("A1", "A2", ...) matched to its completion callback; untagged
 * responses go to the handler of the command that asked for them and to a
 * per-connection handler. Transport (TCP, TLS, STARTTLS, PREAUTH tunnel,
 * COMPRESS=DEFLATE) lives in imap_conn.h, SASL in imap_auth.h.
 *
 * Everything is asynchronous and non-blocking. No function here logs an
 * error: results and messages go to callbacks (imap_done_t), and the caller
 * decides what to report. Protocol traces go to log_trace(LOG_CAT_IMAP) with
 * credentials replaced by "***".
 *
 * Ownership and lifetimes:
 * - imap_client_new() copies nothing from acct: the config_account_t must
 *   outlive the client (a config reload builds new clients).
 * - Strings and items passed to callbacks (imap_done_t, imap_resp_t) are
 *   valid only during the callback; copy what you keep.
 * - Every command callback is called exactly once: with the server's tagged
 *   status, or IMAP_R_CONN when the connection drops, or IMAP_R_CANCELLED
 *   when the client is closed or freed. Callbacks may issue new commands,
 *   and may call imap_client_close(); they must not call imap_client_free()
 *   (defer it, e.g. with an ev_idle/ev_timer).
 * - Arguments given to command functions (format arguments, mailbox names,
 *   APPEND data in memory) are copied before the function returns. A file
 *   descriptor given to imap_client_append_fd() is read, not closed.
 */
#ifndef IB_SYNC_IMAP_CLIENT_H
#define IB_SYNC_IMAP_CLIENT_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/config.h"
#include "sync/imap_parse.h"

typedef struct imap_client imap_client_t;

/*
 * Graded results, as in mbsync's driver: what failed decides what the caller
 * does next.
 */
enum imap_result {
	IMAP_R_OK = 0,
	IMAP_R_NO = -1,	       /* server said NO: this folder/message has a problem */
	IMAP_R_BAD = -2,       /* server said BAD: the command was wrong; a bug or an
				  unsupported feature, not worth repeating */
	IMAP_R_CONN = -3,      /* connection lost, timed out, or the server spoke
				  nonsense: reconnect (with backoff) and try again */
	IMAP_R_AUTH = -4,      /* login rejected, or no usable password: do not retry
				  until the config changes or the user asks */
	IMAP_R_TLS = -5,       /* certificate not trusted, STARTTLS missing, handshake
				  failed: a setup problem, retrying will not help */
	IMAP_R_CANCELLED = -6, /* the client was closed or freed */
};

/* A short name for a result ("ok", "connection lost", ...). */
const char *imap_result_str(int result);

/* Capabilities tracked by the client (from the greeting, after STARTTLS and
 * login, and from any CAPABILITY response). */
enum imap_cap {
	IMAP_CAP_IMAP4REV1 = 1u << 0,
	IMAP_CAP_CONDSTORE = 1u << 1,
	IMAP_CAP_QRESYNC = 1u << 2,
	IMAP_CAP_UIDPLUS = 1u << 3,
	IMAP_CAP_MOVE = 1u << 4,
	IMAP_CAP_LIST_STATUS = 1u << 5,
	IMAP_CAP_IDLE = 1u << 6,
	IMAP_CAP_NAMESPACE = 1u << 7,
	IMAP_CAP_SPECIAL_USE = 1u << 8,
	IMAP_CAP_ENABLE = 1u << 9,
	IMAP_CAP_LITERAL_PLUS = 1u << 10,
	IMAP_CAP_SASL_IR = 1u << 11,
	IMAP_CAP_COMPRESS_DEFLATE = 1u << 12,
	IMAP_CAP_STARTTLS = 1u << 13,
	IMAP_CAP_LOGINDISABLED = 1u << 14,
	IMAP_CAP_AUTH_PLAIN = 1u << 15,
	IMAP_CAP_AUTH_LOGIN = 1u << 16,
	IMAP_CAP_AUTH_CRAM_MD5 = 1u << 17,
	IMAP_CAP_UNSELECT = 1u << 18,
	IMAP_CAP_ESEARCH = 1u << 19,
	IMAP_CAP_LIST_EXTENDED = 1u << 20,
	IMAP_CAP_ID = 1u << 21,
	IMAP_CAP_LITERAL_MINUS = 1u << 22,
};

/* What a completed command (or connect) reports. */
typedef struct imap_done {
	int result;		 /* enum imap_result */
	enum imap_status status; /* the tagged status; IMAP_STATUS_NONE for local errors */
	const char *code;	 /* response code name ("TRYCREATE", ...) or NULL */
	const imap_item_t *code_args;
	const char *text; /* server text, or for local errors a complete
			     message for people ("acct=home: ...; do X") */
} imap_done_t;

typedef void (*imap_done_cb)(imap_client_t *c, const imap_done_t *d, void *arg);
/* An untagged response. Return true if it was consumed (it then does not go
 * on to the per-connection handler). */
typedef bool (*imap_untagged_cb)(imap_client_t *c, const imap_resp_t *r, void *arg);
/* The connection of a ready client dropped (result IMAP_R_CONN) or the server
 * said BYE; msg is a complete message. Called once per drop, after every
 * pending command got IMAP_R_CONN. Call imap_client_connect() again to
 * reconnect: the backoff delay is applied there. With opts.max_attempts > 1
 * it is also called for each failed connect attempt that the client will
 * retry by itself (msg ends in "; retrying in N s"); do not reconnect then. */
typedef void (*imap_lost_cb)(imap_client_t *c, int result, const char *msg, void *arg);

typedef struct imap_client_opts {
	double connect_timeout; /* name lookup, TCP connect, TLS handshake, and each
				   step of the login; default 30 s */
	double cmd_timeout;	/* per command, restarted while bytes keep arriving
				   or leaving; default 60 s */
	double idle_renew;	/* re-issue IDLE after this long; default 29*60-60 s */
	unsigned max_attempts;	/* connect attempts per imap_client_connect() for
				   IMAP_R_CONN failures; 0 = until it works; default 1 */
	double backoff_first;	/* first backoff delay; default 1 s, doubling... */
	double backoff_max;	/* ...up to this; default 300 s; +-20% jitter */
	bool compress;		/* use COMPRESS=DEFLATE when offered; default true */
	const char *log_name;	/* trace prefix; default the account name */
} imap_client_opts_t;

/* Fill o with the defaults. */
void imap_client_opts_init(imap_client_opts_t *o);

/* A client for acct; opts may be NULL for the defaults (copied). Does not
 * connect yet. */
imap_client_t *imap_client_new(struct ev_loop *loop, const config_account_t *acct,
			       const imap_client_opts_t *opts);
/* Close the connection (pending callbacks get IMAP_R_CANCELLED) and free. */
void imap_client_free(imap_client_t *c);

const config_account_t *imap_client_account(const imap_client_t *c);

/* Per-connection handler for untagged responses no command consumed
 * (EXISTS/EXPUNGE/FETCH pushed by the server, alerts, ...). */
void imap_client_set_untagged_cb(imap_client_t *c, imap_untagged_cb cb, void *arg);
void imap_client_set_lost_cb(imap_client_t *c, imap_lost_cb cb, void *arg);
/*
 * Large literals (at least sink->threshold bytes) received on this connection
 * go to sink instead of memory (see imap_parse.h); the FETCH item then has
 * str == NULL and sink == the handle. Copied; takes effect from the next
 * imap_client_connect() (set it before connecting). NULL: all in memory.
 */
void imap_client_set_literal_sink(imap_client_t *c, const imap_literal_sink_t *sink);

/*
 * Connect, (STARTTLS,) log in, (COMPRESS,) learn capabilities. done is called
 * once: IMAP_R_OK when ready for commands; otherwise a complete message in
 * d->text. Transient failures (IMAP_R_CONN) are retried with backoff up to
 * opts.max_attempts; the first attempt after an earlier failure also waits
 * its backoff delay. IMAP_R_AUTH marks the client failed: later connects fail
 * at once with the same message until imap_client_clear_failed().
 * Returns 0, or -1 if already connecting/connected (done is not called).
 */
int imap_client_connect(imap_client_t *c, imap_done_cb done, void *arg);
/* Forget an auth failure and the backoff (config changed, or a manual sync). */
void imap_client_clear_failed(imap_client_t *c);
/* True once logged in and until the connection drops or is closed. */
bool imap_client_ready(const imap_client_t *c);
/* Drop the connection now; pending callbacks get IMAP_R_CANCELLED. */
void imap_client_close(imap_client_t *c);
/* LOGOUT, then close; done gets the tagged status (or IMAP_R_CONN). */
int imap_client_logout(imap_client_t *c, imap_done_cb done, void *arg);

/* Capability bitmask (enum imap_cap), and a query by name for anything
 * ("QRESYNC", "AUTH=PLAIN", "X-GM-EXT-1"); case-insensitive. */
uint32_t imap_client_caps(const imap_client_t *c);
bool imap_client_has_cap(const imap_client_t *c, const char *name);
/* The capability list as the server last sent it, space-separated. */
const char *imap_client_caps_str(const imap_client_t *c);
/* The last drop was the link's end (closed, an I/O error, no answer in
 * time), not bad input from the server. */
bool imap_client_link_lost(const imap_client_t *c);

/*
 * Send a command: fmt is the text after the tag. Conversions:
 *   %s  a raw string, pasted as is (atoms, sequence sets you built)
 *   %q  a string argument: sent as an atom-safe quoted string, or as a
 *       literal ({n} / LITERAL+ {n+}) when it holds CR, LF, NUL or 8-bit bytes
 *   %m  a mailbox name in UTF-8: converted to modified UTF-7, then as %q
 *   %u  unsigned int, %U uint64_t, %d int
 *   %%  a percent sign
 * untagged (may be NULL) sees every untagged response while this command is
 * in flight, before the per-connection handler; with several commands in
 * flight each of their handlers is offered the response in tag order.
 * Commands issued during IDLE end the IDLE first. Commands issued before the
 * client is ready fail at once with IMAP_R_CONN.
 * Returns 0, or a negative imap_result for a bad format / not ready (then
 * done is called too, synchronously).
 */
int imap_client_cmd(imap_client_t *c, imap_done_cb done, imap_untagged_cb untagged, void *arg,
		    const char *fmt, ...);

/* As imap_client_cmd(), but sent only once every command queued before it
 * has completed (and the ones queued after it wait too). For a command whose
 * effect depends on an earlier one's: a server may run pipelined commands
 * in parallel where it sees no conflict (Dovecot does so with UID commands),
 * so a UID EXPUNGE sent right behind its UID STORE +FLAGS (\Deleted) can
 * run before that flag is stored, and expunge nothing. */
int imap_client_cmd_after(imap_client_t *c, imap_done_cb done, imap_untagged_cb untagged,
			  void *arg, const char *fmt, ...);

/* QRESYNC parameters for SELECT/EXAMINE (RFC 7162). */
typedef struct imap_qresync {
	uint32_t uidvalidity;
	uint64_t modseq;
	const char *known_uids; /* sequence set or NULL */
} imap_qresync_t;

/* SELECT (or EXAMINE when readonly) mailbox (UTF-8), with QRESYNC parameters
 * when qr is not NULL (the caller must have sent ENABLE QRESYNC), or with
 * (CONDSTORE) when condstore is true. */
int imap_client_select(imap_client_t *c, const char *mailbox, bool readonly,
		       const imap_qresync_t *qr, bool condstore, imap_done_cb done,
		       imap_untagged_cb untagged, void *arg);

/* What an APPEND returns. */
typedef struct imap_append_result {
	imap_done_t done;
	uint32_t uidvalidity; /* from [APPENDUID v uid]; 0 if the server sent none */
	uint32_t uid;
} imap_append_result_t;
typedef void (*imap_append_cb)(imap_client_t *c, const imap_append_result_t *r, void *arg);

/*
 * APPEND a message to mailbox (UTF-8). flags: a parenthesised flag list
 * ("(\\Seen $Forwarded)") or NULL; date: an INTERNALDATE string
 * ("23-Nov-2026 10:00:00 +0000") or NULL. The message is sent as a literal,
 * with LITERAL+ where offered, else after the server's "+".
 */
int imap_client_append(imap_client_t *c, const char *mailbox, const char *flags, const char *date,
		       const char *data, size_t len, imap_append_cb done, void *arg);
/* Same, streaming size bytes from fd (read from its current offset, in
 * pieces, as the socket drains); fd must stay open until done is called. */
int imap_client_append_fd(imap_client_t *c, const char *mailbox, const char *flags,
			  const char *date, int fd, uint64_t size, imap_append_cb done, void *arg);

/*
 * UID FETCH set items (e.g. "1:* (FLAGS)" or "42 (BODY.PEEK[])"), with
 * " (CHANGEDSINCE n)" appended when changedsince != 0. Each "* n FETCH"
 * goes to untagged; big literals go to the literal sink.
 */
int imap_client_uid_fetch(imap_client_t *c, const char *set, const char *items,
			  uint64_t changedsince, imap_done_cb done, imap_untagged_cb untagged,
			  void *arg);

/*
 * IDLE: untagged responses go to untagged (then the per-connection handler)
 * until imap_client_idle_done() or any new command ends it. The client
 * renews IDLE (DONE, IDLE) every opts.idle_renew seconds by itself; done is
 * called once, when the IDLE really ends. Fails with IMAP_R_BAD at once when
 * the server lacks IDLE.
 */
int imap_client_idle(imap_client_t *c, imap_done_cb done, imap_untagged_cb untagged, void *arg);
/* Leave IDLE (send DONE). No-op when not idling. */
void imap_client_idle_done(imap_client_t *c);
bool imap_client_idling(const imap_client_t *c);

/* Number of commands sent or queued and not completed yet. */
size_t imap_client_pending(const imap_client_t *c);

#endif
