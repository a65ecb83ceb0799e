/*
 * Private to the IMAP replica (imap_replica.c: session, messages;
 * imap_replica_folders.c: LIST, STATUS, CREATE). Nothing else includes it.
 */
#ifndef IB_SYNC_IMAP_REPLICA_P_H
#define IB_SYNC_IMAP_REPLICA_P_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/config.h"
#include "sync/imap_client.h"
#include "sync/replica.h"

typedef struct fetch_op fetch_op_t;

typedef struct imap_replica {
	replica_t base;
	struct ev_loop *loop;
	const config_account_t *acct;
	imap_client_t *c;
	char *label;
	char err[512];
	char ferr[512];         /* why the last operation failed the folder (a
	                           broken FETCH answer); cleared at select() */
	unsigned caps;
	bool qresync;           /* ENABLE QRESYNC succeeded */
	bool dead;
	bool freed;
	char *selected;
	replica_box_t box;
	fetch_op_t *fq_head;    /* fetches in flight, oldest first */
	fetch_op_t *fq_tail;
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

/* imap_replica_folders.c */
void ir_list_folders(replica_t *r, replica_folders_cb cb, void *ctx);
void ir_status_op(replica_t *r, const char *const *names, size_t n, replica_status_cb cb,
		  void *ctx);
void ir_create(replica_t *r, const char *name, unsigned special, replica_done_cb cb, void *ctx);

#endif
