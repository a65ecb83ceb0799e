/*
 * Private to the IMAP replica (imap_replica.c: session, messages;
 * imap_replica_scan.c: scan and select_scan; imap_replica_folders.c: LIST,
 * STATUS, CREATE). Nothing else includes it.
 */
#ifndef IB_SYNC_IMAP_REPLICA_P_H
#define IB_SYNC_IMAP_REPLICA_P_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/config.h"
#include "sync/imap_client.h"
#include "sync/replica.h"

typedef struct fetch_op fetch_op_t;
typedef struct ir_early ir_early_t;
typedef struct ir_held ir_held_t;

typedef struct imap_replica {
	replica_t base;
	struct ev_loop *loop;
	const config_account_t *acct;
	imap_client_t *c;
	char *label;
	char err[512];
	char ferr[512];         /* why the last operation failed the folder (a
	                           broken FETCH answer); cleared at select() */
	char merr[256];         /* the server's words for the last message it
	                           refused (NO or BAD to one message's command) */
	unsigned caps;
	bool qresync;           /* ENABLE QRESYNC succeeded */
	bool dead;
	bool freed;
	char *selected;
	replica_box_t box;
	/* read_intent(): the next select EXAMINEs. A write to a folder opened
	 * that way waits (held) until a SELECT of the same UIDVALIDITY makes it
	 * writable. */
	bool read_next;
	bool examined;
	bool reopening;
	unsigned sel_gen;       /* counts selects: a late reopen answer is stale */
	ir_held_t *held;
	ir_held_t **held_tail;
	fetch_op_t *fq_head;    /* fetches in flight, oldest first */
	fetch_op_t *fq_tail;
	ir_early_t *early;      /* select_scan()'s delta scan, until a scan()
	                           takes it or another operation drops it */
	ev_timer free_w;
	/* watch() */
	replica_done_cb watch_cb;
	void *watch_ctx;
	bool watch_fired;
	bool watching;
} imap_replica_t;

typedef struct simple_op {
	imap_replica_t *ir;
	replica_done_cb cb;
	void *ctx;
	int left;
	int worst;
	bool per_message;
	bool exists_ok;
} simple_op_t;

/* Replica status of a completed command; marks the session dead on a
 * connection loss and keeps the client's message. */
int ir_status(imap_replica_t *ir, const imap_done_t *d, bool per_message);
/* The text of an atom/number/string item, or NULL. */
const char *ir_item_str(const imap_item_t *it);
/* A number item, or the number in a one-item list (MODSEQ (n)). */
bool ir_item_num(const imap_item_t *it, uint64_t *out);
/* A mailbox name item decoded from modified UTF-7 (a new string), or NULL. */
char *ir_decode_name(const imap_item_t *it);
/* A completion shared by left commands; the worst status wins. */
simple_op_t *ir_simple_new(imap_replica_t *ir, replica_done_cb cb, void *ctx, int left);
void ir_simple_done(imap_client_t *c, const imap_done_t *d, void *arg);

/* The server as messages name it ("the tunnel", the host). */
const char *ir_host(const imap_replica_t *ir);
/* A FLAGS list -> system flag bits; keywords go to kw (space-separated). */
unsigned ir_parse_flags(const imap_item_t *list, buf_t *kw);
/* kw as a C string ("" when empty). */
const char *ir_kw_str(buf_t *kw);
/* An INTERNALDATE string -> time_t, 0 if it does not parse. */
time_t ir_parse_internaldate(const char *s);

/* imap_replica.c: the select operation, and its SELECT alone (no early
 * answer dropped); with always_cb, cb also runs after replica_free() (ir->freed
 * set; box NULL unless the SELECT succeeded), so select_scan can release
 * its state. */
void ir_select(replica_t *r, const char *name, replica_select_cb cb, void *ctx);
void ir_select_start(imap_replica_t *ir, const char *name, replica_select_cb cb, void *ctx,
		     bool always_cb);

/* A UID FETCH of every message from UID from on (at most max bodies), sent
 * behind a SELECT: no body counts as asked for until ir_fetch_selected()
 * says that SELECT answered. ir_fetch_discard() makes it swallow its
 * bodies instead. */
fetch_op_t *ir_fetch_from(imap_replica_t *ir, uint32_t from, uint32_t max,
			  const replica_body_sink_t *sink, replica_done_cb cb, void *ctx);
void ir_fetch_selected(fetch_op_t *op);
void ir_fetch_discard(fetch_op_t *op);

/* "(\Seen \Flagged kw)" for APPEND / STORE. */
void ir_flags_list(buf_t *b, unsigned flags, const char *kw);
/* qsort() order of uint32_t. */
int ir_cmp_u32(const void *a, const void *b);

/* imap_replica_write.c: the write operations; while the open folder is
 * EXAMINEd they are held for the SELECT that makes it writable. */
void ir_set_flags(replica_t *r, uint32_t uid, unsigned add, const char *add_kw, unsigned del,
		  const char *del_kw, replica_done_cb cb, void *ctx);
void ir_set_flags_uids(replica_t *r, const uint32_t *uids, size_t n, unsigned add,
		       const char *add_kw, unsigned del, const char *del_kw, replica_done_cb cb,
		       void *ctx);
void ir_delete(replica_t *r, const uint32_t *uids, size_t n, replica_done_cb cb, void *ctx);
void ir_move(replica_t *r, uint32_t uid, const char *to, replica_uid_cb cb, void *ctx);
void ir_read_intent(replica_t *r);
/* Send (st REPLICA_OK) or fail with st the writes held for a reopen. */
void ir_held_flush(imap_replica_t *ir, int st);
/* The open folder becomes name (NULL: none), EXAMINEd or not. */
void ir_switch_folder(imap_replica_t *ir, const char *name, bool examined);

/* imap_replica_scan.c */
void ir_scan(replica_t *r, const replica_scan_opts_t *o, const replica_scan_sink_t *sink,
	     replica_done_cb cb, void *ctx);
void ir_select_scan(replica_t *r, const char *name, uint32_t uidvalidity,
		    const replica_scan_opts_t *hint, replica_select_cb cb, void *ctx);
bool ir_select_read(replica_t *r, const char *name, const replica_read_t *rd);
/* Every operation but scan() calls this first: an early scan answer no
 * longer matches what the caller will ask. */
void ir_early_drop(imap_replica_t *ir);

/* imap_replica_folders.c */
void ir_list_folders(replica_t *r, replica_folders_cb cb, void *ctx);
void ir_status_op(replica_t *r, const char *const *names, size_t n, replica_status_cb cb,
		  void *ctx);
void ir_create(replica_t *r, const char *name, unsigned special, replica_done_cb cb, void *ctx);

#endif
