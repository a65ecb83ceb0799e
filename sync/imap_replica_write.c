/*
 * The IMAP replica's writes: flags (one message or a set), deletions, moves,
 * and the writes held while the open folder is only EXAMINEd.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/buf.h"
#include "lib/imap_lex.h"
#include "lib/util.h"
#include "sync/imap_client.h"
#include "sync/imap_replica_p.h"

/* ---------------------------------------------- writes to an EXAMINEd folder */

/* A write asked for while the open folder is EXAMINEd (read_intent()): kept,
 * with copies of its arguments, until the SELECT that makes it writable has
 * answered. Sending it right behind that SELECT would be one round trip
 * faster, but if the folder was replaced in between (another UIDVALIDITY) its
 * UIDs would name other messages. */
enum held_kind { H_FLAGS, H_FLAGS_UIDS, H_DELETE, H_MOVE };

struct ir_held {
	enum held_kind kind;
	uint32_t uid;
	const uint32_t *uids;
	size_t n;
	unsigned add, del;
	const char *add_kw, *del_kw, *to;
	replica_done_cb cb;
	replica_uid_cb uid_cb;  /* H_MOVE */
	void *ctx;
	ir_held_t *next;
};

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static void held_free(ir_held_t *h)
{
	free((uint32_t *)h->uids);
	free((char *)h->add_kw);
	free((char *)h->del_kw);
	free((char *)h->to);
	free(h);
}

static void held_run(imap_replica_t *ir, ir_held_t *h, int st)
{
	replica_t *r = &ir->base;

	if (ir->freed)
		return;
	if (st != REPLICA_OK) {
		if (h->kind == H_MOVE)
			h->uid_cb(st, 0, h->ctx);
		else
			h->cb(st, h->ctx);
		return;
	}
	switch (h->kind) {
	case H_FLAGS:
		ir_set_flags(r, h->uid, h->add, h->add_kw, h->del, h->del_kw, h->cb, h->ctx);
		break;
	case H_FLAGS_UIDS:
		ir_set_flags_uids(r, h->uids, h->n, h->add, h->add_kw, h->del, h->del_kw, h->cb,
				  h->ctx);
		break;
	case H_DELETE:
		ir_delete(r, h->uids, h->n, h->cb, h->ctx);
		break;
	case H_MOVE:
		ir_move(r, h->uid, h->to, h->uid_cb, h->ctx);
		break;
	}
}

/* Send (st OK) or fail every held write, oldest first. */
void ir_held_flush(imap_replica_t *ir, int st)
{
	ir_held_t *h = ir->held;

	ir->held = NULL;
	ir->held_tail = &ir->held;
	while (h) {
		ir_held_t *next = h->next;
		held_run(ir, h, st);
		held_free(h);
		h = next;
	}
}

/* The open folder changes to name (NULL: none), EXAMINEd or not: writes
 * held for the old one fail, and a reopen still under way is stale. */
void ir_switch_folder(imap_replica_t *ir, const char *name, bool examined)
{
	ir_held_flush(ir, REPLICA_FOLDER_BAD);
	ir->examined = examined;
	ir->sel_gen++;
	free(ir->selected);
	ir->selected = name ? xstrdup(name) : NULL;
}

typedef struct reopen_op {
	imap_replica_t *ir;
	unsigned gen;
	uint32_t uidvalidity;
} reopen_op_t;

static bool reopen_untagged(imap_client_t *c, const imap_resp_t *r, void *arg)
{
	reopen_op_t *op = arg;
	uint64_t v;

	if (r->code && strcmp(r->code, "UIDVALIDITY") == 0 && ir_item_num(r->code_args, &v))
		op->uidvalidity = (uint32_t)v;
	return false;
}

static void reopen_done(imap_client_t *c, const imap_done_t *d, void *arg)
{
	reopen_op_t *op = arg;
	imap_replica_t *ir = op->ir;
	int st = ir_status(ir, d, false);

	if (op->gen != ir->sel_gen) {
		/* Another select came first and failed what was held. */
		free(op);
		return;
	}
	ir->reopening = false;
	if (st == REPLICA_OK && d->code && strcasecmp(d->code, "READ-ONLY") == 0) {
		snprintf(ir->ferr, sizeof(ir->ferr), "%s: %s can only be read on the server",
			 ir->label, ir->selected);
		st = REPLICA_FOLDER_BAD;
	} else if (st == REPLICA_OK && op->uidvalidity != ir->box.counts.uidvalidity) {
		snprintf(ir->ferr, sizeof(ir->ferr),
			 "%s: %s was replaced on the server while open (UIDVALIDITY %u, now %u)",
			 ir->label, ir->selected, ir->box.counts.uidvalidity, op->uidvalidity);
		st = REPLICA_FOLDER_BAD;
	}
	if (st == REPLICA_OK)
		ir->examined = false;
	free(op);
	ir_held_flush(ir, st);
}

/* Hold w (copied) if the open folder is EXAMINEd, and start the SELECT that
 * makes it writable. False: send it now. */
static bool ir_hold(imap_replica_t *ir, const ir_held_t *w)
{
	ir_held_t *h;

	if (!ir->examined || !ir->selected)
		return false;
	h = xmalloc(sizeof(*h));
	*h = *w;
	h->next = NULL;
	h->add_kw = dup_or_null(w->add_kw);
	h->del_kw = dup_or_null(w->del_kw);
	h->to = dup_or_null(w->to);
	if (w->n) {
		uint32_t *u = xmalloc(w->n * sizeof(*u));
		memcpy(u, w->uids, w->n * sizeof(*u));
		h->uids = u;
	} else {
		h->uids = NULL;
	}
	*ir->held_tail = h;
	ir->held_tail = &h->next;
	if (!ir->reopening) {
		reopen_op_t *op = xcalloc(1, sizeof(*op));
		op->ir = ir;
		op->gen = ir->sel_gen;
		ir->reopening = true;
		imap_client_select(ir->c, ir->selected, false, NULL,
				   (ir->caps & REPLICA_CAP_MODSEQ) != 0, reopen_done,
				   reopen_untagged, op);
	}
	return true;
}

void ir_read_intent(replica_t *r)
{
	((imap_replica_t *)r)->read_next = true;
}

/* --------------------------------------------------------------- set flags */

/* uids (any order, repeats allowed) as a sequence set in set. */
static void uid_set(buf_t *set, const uint32_t *uids, size_t n)
{
	uint32_t *sorted = xmalloc(n * sizeof(*sorted));
	size_t k = 0;

	memcpy(sorted, uids, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), ir_cmp_u32);
	for (size_t i = 0; i < n; i++)
		if (k == 0 || sorted[k - 1] != sorted[i])
			sorted[k++] = sorted[i];
	imap_seqset_format(set, sorted, k);
	free(sorted);
}


void ir_set_flags(replica_t *r, uint32_t uid, unsigned add, const char *add_kw,
			 unsigned del, const char *del_kw, replica_done_cb cb, void *ctx)
{
	imap_replica_t *ir = (imap_replica_t *)r;
	bool do_add = add || (add_kw && *add_kw), do_del = del || (del_kw && *del_kw);
	simple_op_t *op;
	buf_t b = BUF_INIT;

	ir_early_drop(ir);
	if (ir->caps & REPLICA_CAP_READONLY) {
		cb(REPLICA_FOLDER_BAD, ctx);
		return;
	}
	if (!do_add && !do_del) {
		cb(REPLICA_OK, ctx);
		return;
	}
	if (ir_hold(ir, &(ir_held_t){ .kind = H_FLAGS, .uid = uid, .add = add, .add_kw = add_kw,
				      .del = del, .del_kw = del_kw, .cb = cb, .ctx = ctx }))
		return;
	op = ir_simple_new(ir, cb, ctx, (do_add ? 1 : 0) + (do_del ? 1 : 0));
	op->per_message = true;
	if (do_add) {
		ir_flags_list(&b, add, add_kw);
		imap_client_cmd(ir->c, ir_simple_done, NULL, op, "UID STORE %u +FLAGS.SILENT %s", uid,
				buf_cstr(&b));
	}
	if (do_del) {
		buf_reset(&b);
		ir_flags_list(&b, del, del_kw);
		imap_client_cmd(ir->c, ir_simple_done, NULL, op, "UID STORE %u -FLAGS.SILENT %s", uid,
				buf_cstr(&b));
	}
	buf_free(&b);
}

void ir_set_flags_uids(replica_t *r, const uint32_t *uids, size_t n, unsigned add,
			      const char *add_kw, unsigned del, const char *del_kw,
			      replica_done_cb cb, void *ctx)
{
	imap_replica_t *ir = (imap_replica_t *)r;
	bool do_add = add || (add_kw && *add_kw), do_del = del || (del_kw && *del_kw);
	buf_t set = BUF_INIT, b = BUF_INIT;
	simple_op_t *op;

	ir_early_drop(ir);
	if (ir->caps & REPLICA_CAP_READONLY) {
		cb(REPLICA_FOLDER_BAD, ctx);
		return;
	}
	if (n == 0 || (!do_add && !do_del)) {
		cb(REPLICA_OK, ctx);
		return;
	}
	if (ir_hold(ir, &(ir_held_t){ .kind = H_FLAGS_UIDS, .uids = uids, .n = n, .add = add,
				      .add_kw = add_kw, .del = del, .del_kw = del_kw, .cb = cb,
				      .ctx = ctx }))
		return;
	uid_set(&set, uids, n);
	op = ir_simple_new(ir, cb, ctx, (do_add ? 1 : 0) + (do_del ? 1 : 0));
	if (do_add) {
		ir_flags_list(&b, add, add_kw);
		imap_client_cmd(ir->c, ir_simple_done, NULL, op, "UID STORE %s +FLAGS.SILENT %s",
				buf_cstr(&set), buf_cstr(&b));
	}
	if (do_del) {
		buf_reset(&b);
		ir_flags_list(&b, del, del_kw);
		imap_client_cmd(ir->c, ir_simple_done, NULL, op, "UID STORE %s -FLAGS.SILENT %s",
				buf_cstr(&set), buf_cstr(&b));
	}
	buf_free(&b);
	buf_free(&set);
}

/* ------------------------------------------------------------------ delete */

void ir_delete(replica_t *r, const uint32_t *uids, size_t n, replica_done_cb cb, void *ctx)
{
	imap_replica_t *ir = (imap_replica_t *)r;
	buf_t set = BUF_INIT;
	simple_op_t *op;

	ir_early_drop(ir);
	if (ir->caps & REPLICA_CAP_READONLY) {
		cb(REPLICA_FOLDER_BAD, ctx);
		return;
	}
	if (n == 0) {
		cb(REPLICA_OK, ctx);
		return;
	}
	if (ir_hold(ir, &(ir_held_t){ .kind = H_DELETE, .uids = uids, .n = n, .cb = cb, .ctx = ctx }))
		return;
	uid_set(&set, uids, n);
	op = ir_simple_new(ir, cb, ctx, 2);
	imap_client_cmd(ir->c, ir_simple_done, NULL, op, "UID STORE %s +FLAGS.SILENT (\\Deleted)",
			buf_cstr(&set));
	/* The expunge waits for the STORE's answer: pipelined behind it, the
	 * server may run it first (see imap_client_cmd_after()), the message
	 * stays, and the next sync fetches it back as new. */
	if (imap_client_caps(ir->c) & IMAP_CAP_UIDPLUS)
		imap_client_cmd_after(ir->c, ir_simple_done, NULL, op, "UID EXPUNGE %s",
				      buf_cstr(&set));
	else
		/* Without UIDPLUS there is no way to expunge only these; this
		 * also removes messages another client marked \Deleted, which
		 * is what that client asked for. */
		imap_client_cmd_after(ir->c, ir_simple_done, NULL, op, "EXPUNGE");
	buf_free(&set);
}

/* -------------------------------------------------------------------- move */

typedef struct move_op {
	imap_replica_t *ir;
	replica_uid_cb cb;
	void *ctx;
	uint32_t uid;
} move_op_t;

static uint32_t copyuid_dst(const imap_item_t *args)
{
	/* [COPYUID uidvalidity src-set dst-set]: a single message -> a single UID */
	const imap_item_t *dst = imap_item_nth(args, 2);
	uint64_t v;
	if (dst && ir_item_num(dst, &v) && v <= UINT32_MAX)
		return (uint32_t)v;
	return 0;
}

static bool move_untagged(imap_client_t *c, const imap_resp_t *r, void *arg)
{
	move_op_t *op = arg;

	if (r->code && strcmp(r->code, "COPYUID") == 0) {
		op->uid = copyuid_dst(r->code_args);
		return true;
	}
	return false;
}

static void move_done(imap_client_t *c, const imap_done_t *d, void *arg)
{
	move_op_t *op = arg;
	int st = ir_status(op->ir, d, true);

	if (d->code && strcasecmp(d->code, "COPYUID") == 0 && !op->uid)
		op->uid = copyuid_dst(d->code_args);
	if (!op->ir->freed)
		op->cb(st, st == REPLICA_OK ? op->uid : 0, op->ctx);
	free(op);
}

void ir_move(replica_t *r, uint32_t uid, const char *to, replica_uid_cb cb, void *ctx)
{
	imap_replica_t *ir = (imap_replica_t *)r;
	move_op_t *op;

	ir_early_drop(ir);
	if (ir->caps & REPLICA_CAP_READONLY) {
		cb(REPLICA_FOLDER_BAD, 0, ctx);
		return;
	}
	if (ir_hold(ir, &(ir_held_t){ .kind = H_MOVE, .uid = uid, .to = to, .uid_cb = cb,
				      .ctx = ctx }))
		return;
	op = xcalloc(1, sizeof(*op));
	op->ir = ir;
	op->cb = cb;
	op->ctx = ctx;
	imap_client_cmd(ir->c, move_done, move_untagged, op, "UID MOVE %u %m", uid, to);
}
