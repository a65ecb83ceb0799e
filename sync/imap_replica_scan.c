/*
 * scan() and select_scan() of the IMAP replica (see imap_replica.h and the
 * comments of replica_ops_t in replica.h).
 *
 * select_scan() on a QRESYNC session sends SELECT and the delta scan
 * (UID FETCH 1:* (...) (CHANGEDSINCE m VANISHED)) back to back, so the two
 * answers come in one round trip instead of two. The delta scan's answer
 * (an "early answer") is kept in memory until the next operation:
 *  - a scan() with the hinted changedsince, new_uid and want_* takes it: from
 *    memory when it is complete, else the rest streams to that scan's sink;
 *  - any other scan() or operation drops it (a command still in flight then
 *    runs to its end and its responses are thrown away);
 *  - the SELECT answer drops it when the folder's UIDVALIDITY is not the
 *    expected one, it has no modseqs, or its HIGHESTMODSEQ is below
 *    changedsince; a scan() that took it already is then sent on the wire as
 *    scan() would send it;
 *  - past IR_EARLY_MAX reported messages or vanished ranges it is dropped
 *    (memory stays bounded) and the scan() asks the server again.
 * Errors (a broken FETCH, a lost connection) reach the scan() that takes the
 * answer exactly as they would have reached a scan() of its own.
 */
#include "sync/imap_replica.h"
#include "sync/imap_replica_p.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/imap_lex.h"
#include "lib/util.h"
#include "sync/imap_client.h"

/* -------------------------------------------------------------------- scan */

typedef struct scan_op {
	imap_replica_t *ir;
	replica_scan_opts_t o;
	replica_scan_sink_t sink;
	replica_done_cb cb;
	void *ctx;
	uint32_t *known;
	bool *present;          /* per known[], when absence means vanished */
	bool by_absence;        /* vanished = known and not present */
	int left;
	int worst;
	bool proto_bad;         /* a FETCH with an impossible UID: fail the folder */
	bool always_cb;         /* call cb even after replica_free() (select_scan) */
	bool after_select;      /* sent behind a SELECT still in flight: until it
	                           answers, a FETCH is the old folder's (RFC 7162
	                           3.2.11), never this scan's */
	char *ferr;             /* where proto_bad says why (ir->ferr, or the
	                           early answer's own until a scan() takes it) */
	size_t ferr_len;
	buf_t kw;
} scan_op_t;

static void mark_present(scan_op_t *op, uint32_t lo, uint32_t hi)
{
	/* known[] is sorted. */
	size_t i = ib_u32_lower_bound(op->known, op->o.n_known, lo);
	for (; i < op->o.n_known && op->known[i] <= hi; i++)
		op->present[i] = true;
}

static void report_set(scan_op_t *op, const char *set, size_t len, bool vanished)
{
	imap_seq_range_t *rg = NULL;
	size_t n = 0;

	if (imap_seqset_parse(set, len, 1u << 20, &rg, &n) != 0)
		return;
	for (size_t i = 0; i < n; i++) {
		uint32_t lo = rg[i].lo, hi = rg[i].hi;
		if (lo == IMAP_SEQ_STAR)
			lo = UINT32_MAX;
		if (hi == IMAP_SEQ_STAR)
			hi = UINT32_MAX;
		if (lo > hi) {
			uint32_t t = lo;
			lo = hi;
			hi = t;
		}
		if (vanished)
			op->sink.vanished_cb(op->sink.ctx, lo, hi);
		else
			mark_present(op, lo, hi);
	}
	free(rg);
}

static bool scan_untagged(imap_client_t *c, const imap_resp_t *r, void *arg)
{
	scan_op_t *op = arg;

	if (!r->name || op->after_select)
		return false;
	if (strcmp(r->name, "FETCH") == 0) {
		const imap_item_t *l = r->args;
		uint64_t uid = 0, ms = 0, size = 0;
		const imap_item_t *fl = imap_fetch_get(l, "FLAGS");
		if (!ir_item_num(imap_fetch_get(l, "UID"), &uid) || !fl)
			return false; /* unsolicited, without UID: not ours */
		if (imap_fetch_get(l, "BODY[]"))
			return false; /* a fetch behind this one: the server may
			                 answer it before this one ends */
		if (uid == 0 || uid > UINT32_MAX) {
			if (!op->proto_bad && !op->ir->freed)
				snprintf(op->ferr, op->ferr_len,
					 "%s sent a FETCH with UID %llu (UIDs are 1 to 4294967295)",
					 ir_host(op->ir), (unsigned long long)uid);
			op->proto_bad = true;
			return true;
		}
		replica_msg_t m;
		memset(&m, 0, sizeof(m));
		m.uid = (uint32_t)uid;
		m.flags = ir_parse_flags(fl, &op->kw);
		m.keywords = ir_kw_str(&op->kw);
		if (ir_item_num(imap_fetch_get(l, "MODSEQ"), &ms))
			m.modseq = ms;
		if (ir_item_num(imap_fetch_get(l, "RFC822.SIZE"), &size))
			m.size = size;
		m.internaldate = ir_parse_internaldate(ir_item_str(imap_fetch_get(l, "INTERNALDATE")));
		const imap_item_t *env = imap_fetch_get(l, "ENVELOPE");
		char *mid = NULL;
		if (env && env->type == IMAP_ITEM_LIST) {
			const imap_item_t *mi = imap_item_nth(env->child, 9);
			if (mi && ir_item_str(mi))
				mid = xstrndup(mi->str, mi->len);
		}
		m.message_id = mid;
		if (op->present)
			mark_present(op, m.uid, m.uid);
		op->sink.msg_cb(op->sink.ctx, &m);
		free(mid);
		return true;
	}
	if (strcmp(r->name, "VANISHED") == 0) {
		const imap_item_t *it = r->args;
		bool earlier = false;
		if (it && it->type == IMAP_ITEM_LIST) {
			earlier = it->child && imap_item_is(it->child, "EARLIER");
			it = it->next;
		}
		const char *s = ir_item_str(it);
		if (s && earlier && !op->by_absence)
			report_set(op, s, it->len, true);
		return earlier;
	}
	if (strcmp(r->name, "SEARCH") == 0 && op->present) {
		for (const imap_item_t *it = r->args; it; it = it->next) {
			uint64_t v;
			if (ir_item_num(it, &v))
				mark_present(op, (uint32_t)v, (uint32_t)v);
		}
		return true;
	}
	if (strcmp(r->name, "ESEARCH") == 0 && op->present) {
		for (const imap_item_t *it = r->args; it; it = it->next) {
			if (imap_item_is(it, "ALL") && it->next && ir_item_str(it->next))
				report_set(op, it->next->str, it->next->len, false);
		}
		return true;
	}
	return false;
}

static void scan_done(imap_client_t *c, const imap_done_t *d, void *arg)
{
	scan_op_t *op = arg;
	int st = ir_status(op->ir, d, false);

	if (st < op->worst)
		op->worst = st;
	if (--op->left > 0)
		return;
	if (op->proto_bad && op->worst == REPLICA_OK)
		op->worst = REPLICA_FOLDER_BAD;
	if (op->worst == REPLICA_OK && op->by_absence && !op->ir->freed) {
		for (size_t i = 0; i < op->o.n_known; i++)
			if (!op->present[i])
				op->sink.vanished_cb(op->sink.ctx, op->known[i], op->known[i]);
	}
	if (!op->ir->freed || op->always_cb)
		op->cb(op->worst, op->ctx);
	free(op->known);
	free(op->present);
	buf_free(&op->kw);
	free(op);
}

static scan_op_t *scan_op_new(imap_replica_t *ir, const replica_scan_opts_t *o,
			      const replica_scan_sink_t *sink, replica_done_cb cb, void *ctx)
{
	scan_op_t *op = xcalloc(1, sizeof(*op));

	op->ir = ir;
	op->o = *o;
	op->sink = *sink;
	op->cb = cb;
	op->ctx = ctx;
	op->ferr = ir->ferr;
	op->ferr_len = sizeof(ir->ferr);
	op->known = xmalloc((o->n_known ? o->n_known : 1) * sizeof(uint32_t));
	if (o->n_known)
		memcpy(op->known, o->known, o->n_known * sizeof(uint32_t));
	op->o.known = op->known;
	op->present = xcalloc(o->n_known ? o->n_known : 1, sizeof(bool));
	return op;
}

static void scan_items(char *items, size_t len, const replica_scan_opts_t *o, bool modseq)
{
	snprintf(items, len, "(UID FLAGS%s%s%s%s)", modseq ? " MODSEQ" : "",
		 o->want_size ? " RFC822.SIZE" : "", o->want_internaldate ? " INTERNALDATE" : "",
		 o->want_message_id ? " ENVELOPE" : "");
}

/* The QRESYNC delta scan: one UID FETCH reports changed messages and, as
 * VANISHED (EARLIER), the deleted ones. */
static void scan_send_qresync(scan_op_t *op, const char *items)
{
	op->left = 1;
	free(op->present);
	op->present = NULL;
	imap_client_cmd(op->ir->c, scan_done, scan_untagged, op,
			"UID FETCH 1:* %s (CHANGEDSINCE %U VANISHED)", items, op->o.changedsince);
}

/* The QRESYNC delta scan sent right behind a SELECT still in flight (see
 * after_select); cb runs even after replica_free(). */
static scan_op_t *scan_behind_select(imap_replica_t *ir, const replica_scan_opts_t *o,
				     const replica_scan_sink_t *sink, replica_done_cb cb, void *ctx)
{
	scan_op_t *op = scan_op_new(ir, o, sink, cb, ctx);
	char items[160];

	op->always_cb = true;
	op->after_select = true;
	/* A QRESYNC server has modseqs in every folder that does not say
	 * NOMODSEQ; where one does, the SELECT's answer tells. */
	scan_items(items, sizeof(items), o, true);
	scan_send_qresync(op, items);
	return op;
}

/* scan() on the wire, whatever select_scan() did. */
static void scan_start(imap_replica_t *ir, const replica_scan_opts_t *o,
		       const replica_scan_sink_t *sink, replica_done_cb cb, void *ctx)
{
	scan_op_t *op = scan_op_new(ir, o, sink, cb, ctx);
	bool modseq = (ir->box.caps & REPLICA_CAP_MODSEQ) != 0;
	char items[160];

	scan_items(items, sizeof(items), o, modseq);

	if (ir->box.counts.messages == 0 && !o->changedsince) {
		/* Empty folder: "1:*" is an error on some servers. */
		op->by_absence = true;
		op->left = 1;
		imap_client_cmd(ir->c, scan_done, NULL, op, "NOOP");
		return;
	}
	if (o->changedsince && modseq && ir->qresync) {
		scan_send_qresync(op, items);
		return;
	}
	if (o->changedsince && modseq) {
		/* CONDSTORE without QRESYNC: changed flags from CHANGEDSINCE, and
		 * what still exists from a UID SEARCH. */
		op->by_absence = true;
		op->left = 2;
		imap_client_cmd(ir->c, scan_done, scan_untagged, op,
				"UID FETCH 1:* %s (CHANGEDSINCE %U)", items, o->changedsince);
		if (imap_client_caps(ir->c) & IMAP_CAP_ESEARCH)
			imap_client_cmd(ir->c, scan_done, scan_untagged, op, "UID SEARCH RETURN (ALL) ALL");
		else
			imap_client_cmd(ir->c, scan_done, scan_untagged, op, "UID SEARCH ALL");
		return;
	}
	op->by_absence = true;
	op->left = 1;
	imap_client_cmd(ir->c, scan_done, scan_untagged, op, "UID FETCH 1:* %s", items);
}

/* ------------------------------------------------------------- select_scan */

/* Bound of an early answer (messages, and vanished ranges): past it the
 * answer is dropped and the scan() asks again. */
#define IR_EARLY_MAX 100000u

typedef struct early_msg {
	uint32_t uid;
	unsigned flags;
	uint64_t modseq;
	uint64_t size;
	time_t internaldate;
	size_t kw;              /* offset of the keywords in strs */
	size_t mid;             /* offset of the Message-ID in strs, or SIZE_MAX */
} early_msg_t;

struct ir_early {
	imap_replica_t *ir;
	replica_scan_opts_t hint; /* known = NULL */
	uint32_t uidvalidity;
	replica_select_cb sel_cb;
	void *sel_ctx;
	/* what arrived, in arrival order */
	early_msg_t *msgs;
	size_t n_msgs, cap_msgs;
	uint32_t *van;          /* pairs lo, hi */
	size_t n_van, cap_van;
	buf_t strs;
	char why[512];          /* a broken FETCH: the scan_op writes here */
	int status;             /* of the UID FETCH, once done */
	scan_op_t *op;          /* that UID FETCH while in flight */
	bool on_ir;             /* ir->early == this */
	bool select_pending;
	bool fetch_pending;
	bool stale;             /* never answer a scan() from it */
	int in_cb;              /* inside a caller's callback: it may free the
	                           session, which must not free this under us */
	/* a scan() that took it while the UID FETCH was in flight */
	bool taken;
	replica_scan_opts_t topts; /* known[] borrowed until cb (replica.h) */
	replica_scan_sink_t tsink;
	replica_done_cb tcb;
	void *tctx;
};

static void early_clear(ir_early_t *e)
{
	free(e->msgs);
	free(e->van);
	e->msgs = NULL;
	e->van = NULL;
	e->n_msgs = e->cap_msgs = e->n_van = e->cap_van = 0;
	buf_free(&e->strs);
}

static void early_maybe_free(ir_early_t *e)
{
	if (e->on_ir || e->select_pending || e->fetch_pending || e->taken || e->in_cb)
		return;
	early_clear(e);
	free(e);
}

void ir_early_drop(imap_replica_t *ir)
{
	ir_early_t *e = ir->early;

	if (!e)
		return;
	ir->early = NULL;
	e->on_ir = false;
	e->stale = true;
	early_clear(e);
	early_maybe_free(e);
}

/* Hand what is buffered to the scan() that took the answer. */
static void early_flush(ir_early_t *e)
{
	const char *strs = e->strs.data ? e->strs.data + e->strs.off : "";

	for (size_t i = 0; i < e->n_van; i++)
		e->tsink.vanished_cb(e->tsink.ctx, e->van[2 * i], e->van[2 * i + 1]);
	for (size_t i = 0; i < e->n_msgs; i++) {
		const early_msg_t *em = &e->msgs[i];
		replica_msg_t m = {
			.uid = em->uid,
			.flags = em->flags,
			.keywords = strs + em->kw,
			.modseq = em->modseq,
			.size = em->size,
			.internaldate = em->internaldate,
			.message_id = em->mid == SIZE_MAX ? NULL : strs + em->mid,
		};
		e->tsink.msg_cb(e->tsink.ctx, &m);
	}
	early_clear(e);
}

static bool early_overflow(ir_early_t *e, size_t n)
{
	if (n < IR_EARLY_MAX)
		return false;
	e->stale = true;
	early_clear(e);
	return true;
}

static size_t early_str(ir_early_t *e, const char *s)
{
	size_t off = buf_avail(&e->strs);

	buf_append(&e->strs, s, strlen(s) + 1);
	return off;
}

static void early_msg_cb(void *ctx, const replica_msg_t *m)
{
	ir_early_t *e = ctx;

	if (e->taken) {
		if (e->ir->freed)
			return;
		early_flush(e);
		e->tsink.msg_cb(e->tsink.ctx, m);
		return;
	}
	if (e->stale || early_overflow(e, e->n_msgs))
		return;
	if (e->n_msgs == e->cap_msgs) {
		e->cap_msgs = e->cap_msgs ? 2 * e->cap_msgs : 64;
		e->msgs = xrealloc(e->msgs, e->cap_msgs * sizeof(*e->msgs));
	}
	early_msg_t *em = &e->msgs[e->n_msgs++];
	em->uid = m->uid;
	em->flags = m->flags;
	em->modseq = m->modseq;
	em->size = m->size;
	em->internaldate = m->internaldate;
	em->kw = early_str(e, m->keywords ? m->keywords : "");
	em->mid = m->message_id ? early_str(e, m->message_id) : SIZE_MAX;
}

static void early_vanished_cb(void *ctx, uint32_t lo, uint32_t hi)
{
	ir_early_t *e = ctx;

	if (e->taken) {
		if (e->ir->freed)
			return;
		early_flush(e);
		e->tsink.vanished_cb(e->tsink.ctx, lo, hi);
		return;
	}
	if (e->stale || early_overflow(e, e->n_van))
		return;
	if (e->n_van == e->cap_van) {
		e->cap_van = e->cap_van ? 2 * e->cap_van : 16;
		e->van = xrealloc(e->van, 2 * e->cap_van * sizeof(*e->van));
	}
	e->van[2 * e->n_van] = lo;
	e->van[2 * e->n_van + 1] = hi;
	e->n_van++;
}

/* Give the complete answer to the scan() that took it. */
static void early_deliver(ir_early_t *e)
{
	imap_replica_t *ir = e->ir;

	e->taken = false;
	if (ir->freed)
		return;
	early_flush(e);
	if (e->status == REPLICA_FOLDER_BAD && e->why[0])
		snprintf(ir->ferr, sizeof(ir->ferr), "%s", e->why);
	e->in_cb++;
	e->tcb(e->status, e->tctx);
	e->in_cb--;
}

static void early_fetch_done(int status, void *ctx)
{
	ir_early_t *e = ctx;

	e->op = NULL;
	e->fetch_pending = false;
	e->status = status;
	if (e->taken)
		early_deliver(e);
	early_maybe_free(e);
}

static void early_select_cb(int status, const replica_box_t *box, void *ctx)
{
	ir_early_t *e = ctx;
	imap_replica_t *ir = e->ir;

	e->select_pending = false;
	if (e->op)
		e->op->after_select = false;
	/* !ir->qresync: the server refused the ENABLE sent ahead of this. */
	if (status != REPLICA_OK || !ir->qresync || box->counts.uidvalidity != e->uidvalidity ||
	    !(box->caps & REPLICA_CAP_MODSEQ) || box->counts.highestmodseq < e->hint.changedsince) {
		e->stale = true;
		early_clear(e);
		/* A scan() that already took the answer goes on the wire as
		 * it would have without select_scan() (it may want a full
		 * scan now). After a failed SELECT the early UID FETCH
		 * fails as that scan would: let it report. */
		if (e->taken && status == REPLICA_OK && !ir->freed) {
			e->taken = false;
			scan_start(ir, &e->topts, &e->tsink, e->tcb, e->tctx);
		}
	}
	if (!ir->freed) {
		e->in_cb++;
		e->sel_cb(status, box, e->sel_ctx);
		e->in_cb--;
	}
	early_maybe_free(e);
}

static bool early_matches(const ir_early_t *e, const replica_scan_opts_t *o)
{
	return !e->stale && o->changedsince == e->hint.changedsince &&
	       o->new_uid == e->hint.new_uid && o->want_size == e->hint.want_size &&
	       o->want_message_id == e->hint.want_message_id &&
	       o->want_internaldate == e->hint.want_internaldate;
}

void ir_scan(replica_t *r, const replica_scan_opts_t *o, const replica_scan_sink_t *sink,
	     replica_done_cb cb, void *ctx)
{
	imap_replica_t *ir = (imap_replica_t *)r;
	ir_early_t *e = ir->early;

	if (e && early_matches(e, o)) {
		ir->early = NULL;
		e->on_ir = false;
		e->taken = true;
		e->topts = *o;
		e->tsink = *sink;
		e->tcb = cb;
		e->tctx = ctx;
		if (!e->fetch_pending) {
			early_deliver(e);
			early_maybe_free(e);
		}
		return;
	}
	ir_early_drop(ir);
	scan_start(ir, o, sink, cb, ctx);
}

void ir_select_scan(replica_t *r, const char *name, uint32_t uidvalidity,
		    const replica_scan_opts_t *hint, replica_select_cb cb, void *ctx)
{
	imap_replica_t *ir = (imap_replica_t *)r;
	static const replica_scan_sink_t early_sink_tmpl = {
		.msg_cb = early_msg_cb,
		.vanished_cb = early_vanished_cb,
	};
	replica_scan_sink_t sink = early_sink_tmpl;

	ir_early_drop(ir);
	if (!ir->qresync || !(ir->caps & REPLICA_CAP_MODSEQ) || !hint || !hint->changedsince ||
	    !uidvalidity) {
		ir_select(r, name, cb, ctx);
		return;
	}
	ir_early_t *e = xcalloc(1, sizeof(*e));
	e->ir = ir;
	e->hint = *hint;
	e->hint.known = NULL;
	e->hint.n_known = 0;
	e->uidvalidity = uidvalidity;
	e->sel_cb = cb;
	e->sel_ctx = ctx;
	e->on_ir = e->select_pending = e->fetch_pending = true;
	ir->early = e;
	ir_select_start(ir, name, early_select_cb, e, true);

	sink.ctx = e;
	e->op = scan_behind_select(ir, &e->hint, &sink, early_fetch_done, e);
	e->op->ferr = e->why;
	e->op->ferr_len = sizeof(e->why);
}

/* ------------------------------------------------------------- select_read */

/*
 * select_read(): SELECT (EXAMINE after read_intent()), the QRESYNC delta
 * scan and UID FETCH <from>:* go out together, and the session is free for
 * the next folder at once. Nothing is kept for a later scan(): the answers
 * stream to the caller's sinks, unless the SELECT shows another folder than
 * expected; then they are swallowed and cb reports REPLICA_FOLDER_BAD.
 */
typedef struct read_op {
	imap_replica_t *ir;
	replica_read_t rd;
	scan_op_t *scan;        /* until the SELECT answers */
	fetch_op_t *fetch;      /* until the SELECT answers */
	int left;               /* select, scan, fetch */
	int worst;
	bool stale;
} read_op_t;

static void read_msg_cb(void *ctx, const replica_msg_t *m)
{
	read_op_t *ro = ctx;

	if (!ro->stale && !ro->ir->freed)
		ro->rd.sink.msg_cb(ro->rd.sink.ctx, m);
}

static void read_vanished_cb(void *ctx, uint32_t lo, uint32_t hi)
{
	read_op_t *ro = ctx;

	if (!ro->stale && !ro->ir->freed)
		ro->rd.sink.vanished_cb(ro->rd.sink.ctx, lo, hi);
}

static void read_end(read_op_t *ro, int status)
{
	if (status < ro->worst)
		ro->worst = status;
	if (--ro->left > 0)
		return;
	if (ro->stale && ro->worst > REPLICA_FOLDER_BAD)
		ro->worst = REPLICA_FOLDER_BAD;
	if (!ro->ir->freed)
		ro->rd.cb(ro->worst, ro->rd.ctx);
	free(ro);
}

static void read_select_cb(int status, const replica_box_t *box, void *ctx)
{
	read_op_t *ro = ctx;
	imap_replica_t *ir = ro->ir;

	if (ro->scan)
		ro->scan->after_select = false;
	ro->scan = NULL;
	/* !ir->qresync: the server refused the ENABLE sent ahead of this. */
	if (status != REPLICA_OK || !ir->qresync || box->counts.uidvalidity != ro->rd.uidvalidity ||
	    !(box->caps & REPLICA_CAP_MODSEQ) ||
	    box->counts.highestmodseq < ro->rd.scan.changedsince) {
		ro->stale = true;
		if (ro->fetch)
			ir_fetch_discard(ro->fetch);
	}
	if (ro->fetch)
		ir_fetch_selected(ro->fetch);
	if (!ir->freed)
		ro->rd.sel_cb(status, box, ro->rd.ctx);
	read_end(ro, REPLICA_OK);
}

static void read_scan_done(int status, void *ctx)
{
	read_op_t *ro = ctx;

	ro->scan = NULL;
	read_end(ro, status == REPLICA_CANCELLED ? REPLICA_BAD : status);
}

static void read_fetch_done(int status, void *ctx)
{
	read_op_t *ro = ctx;

	ro->fetch = NULL;
	read_end(ro, status == REPLICA_CANCELLED ? REPLICA_BAD : status);
}

bool ir_select_read(replica_t *r, const char *name, const replica_read_t *rd)
{
	imap_replica_t *ir = (imap_replica_t *)r;
	static const replica_scan_sink_t sink_tmpl = {
		.msg_cb = read_msg_cb,
		.vanished_cb = read_vanished_cb,
	};
	replica_scan_sink_t sink = sink_tmpl;

	if (!ir->qresync || !(ir->caps & REPLICA_CAP_MODSEQ) || ir->dead || !rd->uidvalidity ||
	    !rd->scan.changedsince)
		return false;
	ir_early_drop(ir);
	read_op_t *ro = xcalloc(1, sizeof(*ro));
	ro->ir = ir;
	ro->rd = *rd;
	ro->rd.scan.known = NULL;
	ro->rd.scan.n_known = 0;
	ro->left = rd->fetch_from ? 3 : 2;
	ir_select_start(ir, name, read_select_cb, ro, true);

	sink.ctx = ro;
	ro->scan = scan_behind_select(ir, &ro->rd.scan, &sink, read_scan_done, ro);
	if (rd->fetch_from)
		ro->fetch = ir_fetch_from(ir, rd->fetch_from, rd->fetch_max, &rd->body,
					  read_fetch_done, ro);
	return true;
}
