/*
 * A remote IMAP folder as a replica: see imap_replica.h. Every operation is
 * one or a few pipelined IMAP commands; the results come back through the
 * client's callbacks and are turned into replica statuses.
 */
#include "sync/imap_replica.h"
#include "sync/imap_replica_p.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/imap_lex.h"
#include "lib/util.h"
#include "sync/imap_client.h"

/* Literals at least this big go to the body sink as they arrive. */
#define IR_SINK_THRESHOLD (256u * 1024u)

static int map_result(int result, bool per_message)
{
	switch (result) {
	case IMAP_R_OK: return REPLICA_OK;
	case IMAP_R_NO: return per_message ? REPLICA_MSG_BAD : REPLICA_FOLDER_BAD;
	case IMAP_R_BAD: return per_message ? REPLICA_MSG_BAD : REPLICA_FOLDER_BAD;
	case IMAP_R_CANCELLED: return REPLICA_CANCELLED;
	default: return REPLICA_BAD;
	}
}

/* The server as messages name it (as the IMAP client does). */
const char *ir_host(const imap_replica_t *ir)
{
	const config_remote_t *r = &ir->acct->remote;
	return r->tunnel ? "the tunnel" : r->host ? r->host : "the server";
}

int ir_status(imap_replica_t *ir, const imap_done_t *d, bool per_message)
{
	int st = map_result(d->result, per_message);

	if (st == REPLICA_BAD) {
		ir->dead = true;
		if (d->text && *d->text && !ir->err[0])
			snprintf(ir->err, sizeof(ir->err), "%s", d->text);
	} else if (st == REPLICA_MSG_BAD) {
		snprintf(ir->merr, sizeof(ir->merr), "%s%s%s%s", d->code ? "[" : "",
			 d->code ? d->code : "", d->code ? "] " : "",
			 d->text && *d->text ? d->text : "no reason given");
	}
	return st;
}

const char *ir_item_str(const imap_item_t *it)
{
	if (!it || !it->str)
		return NULL;
	if (it->type == IMAP_ITEM_ATOM || it->type == IMAP_ITEM_STRING ||
	    it->type == IMAP_ITEM_NUMBER)
		return it->str;
	return NULL;
}

bool ir_item_num(const imap_item_t *it, uint64_t *out)
{
	if (!it)
		return false;
	if (it->type == IMAP_ITEM_LIST)
		it = it->child; /* MODSEQ (n) */
	if (!it || it->type != IMAP_ITEM_NUMBER)
		return false;
	*out = it->num;
	return true;
}

/* Flags list -> bits + keywords (buf, space-separated). */
unsigned ir_parse_flags(const imap_item_t *list, buf_t *kw)
{
	unsigned bits = 0;

	buf_reset(kw);
	if (!list || list->type != IMAP_ITEM_LIST)
		return 0;
	for (const imap_item_t *it = list->child; it; it = it->next) {
		const char *s = ir_item_str(it);
		if (!s || !*s)
			continue;
		if (s[0] == '\\') {
			bits |= replica_flag_from_name(s, it->len);
			continue;
		}
		if (buf_avail(kw))
			buf_puts(kw, " ");
		buf_append(kw, s, it->len);
	}
	buf_cstr(kw);
	return bits;
}

const char *ir_kw_str(buf_t *kw)
{
	return buf_avail(kw) ? buf_cstr(kw) : "";
}

/* n digits at *p as a number (advancing *p), or -1. */
static int take_digits(const char **p, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++, (*p)++) {
		if (**p < '0' || **p > '9')
			return -1;
		v = v * 10 + (**p - '0');
	}
	return v;
}

/* Days from 1970-01-01 to the proleptic Gregorian date y-m-d (m 1..12),
 * counting in 400-year eras of 146097 days from 0000-03-01. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/*
 * An INTERNALDATE ("17-Jul-1996 02:44:25 -0700", the day may be one digit
 * or a space and one digit) as seconds since the epoch; 0 if it is not one.
 * By hand rather than sscanf() and timegm(): it runs once per message
 * downloaded.
 */
time_t ir_parse_internaldate(const char *s)
{
	static const char mons[] = "janfebmaraprmayjunjulaugsepoctnovdec";
	const char *p = s;

	if (!p)
		return 0;
	if (*p == ' ')
		p++;
	int day = take_digits(&p, 1);
	if (day >= 0 && *p >= '0' && *p <= '9')
		day = day * 10 + (*p++ - '0');
	if (day < 1 || day > 31 || *p++ != '-')
		return 0;
	int m = 0;
	while (m < 12 && strncasecmp(p, mons + 3 * m, 3) != 0) /* stops at a NUL */
		m++;
	if (m == 12 || p[3] != '-')
		return 0;
	m++;
	p += 4;
	int year = take_digits(&p, 4);
	if (year < 0 || *p++ != ' ')
		return 0;
	int hh = take_digits(&p, 2);
	if (hh < 0 || hh > 23 || *p++ != ':')
		return 0;
	int mm = take_digits(&p, 2);
	if (mm < 0 || mm > 59 || *p++ != ':')
		return 0;
	int ss = take_digits(&p, 2);
	if (ss < 0 || ss > 60 || *p++ != ' ')
		return 0;
	char sign = *p;
	if (sign != '+' && sign != '-')
		return 0;
	p++;
	int zh = take_digits(&p, 2);
	int zm = zh < 0 ? -1 : take_digits(&p, 2);
	if (zm < 0 || zm > 59 || *p != '\0')
		return 0;
	int64_t t = days_from_civil(year, m, day) * 86400 + hh * 3600 + mm * 60 + ss;
	int64_t off = (int64_t)zh * 3600 + zm * 60;
	return (time_t)(sign == '-' ? t + off : t - off);
}

static void format_internaldate(time_t t, char *out, size_t len)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, len, "%d-%b-%Y %H:%M:%S +0000", &tm);
}

void ir_flags_list(buf_t *b, unsigned flags, const char *kw)
{
	char sys[128];

	replica_flags_to_str(flags, sys, sizeof(sys));
	buf_puts(b, "(");
	buf_puts(b, sys);
	if (kw && *kw) {
		if (*sys)
			buf_puts(b, " ");
		buf_puts(b, kw);
	}
	buf_puts(b, ")");
}

char *ir_decode_name(const imap_item_t *it)
{
	const char *s = ir_item_str(it);
	char *out = NULL;

	if (!s)
		return NULL;
	if (imap_mutf7_decode(s, it->len, &out) != 0)
		return xstrndup(s, it->len); /* not valid mUTF-7: keep the bytes */
	return out;
}


simple_op_t *ir_simple_new(imap_replica_t *ir, replica_done_cb cb, void *ctx, int left)
{
	simple_op_t *op = xcalloc(1, sizeof(*op));
	op->ir = ir;
	op->cb = cb;
	op->ctx = ctx;
	op->left = left;
	return op;
}

void ir_simple_done(imap_client_t *c, const imap_done_t *d, void *arg)
{
	simple_op_t *op = arg;
	int st = ir_status(op->ir, d, op->per_message);

	if (st != REPLICA_OK && op->exists_ok && d->code && strcasecmp(d->code, "ALREADYEXISTS") == 0)
		st = REPLICA_OK;
	if (st < op->worst)
		op->worst = st;
	if (--op->left > 0)
		return;
	if (!op->ir->freed)
		op->cb(op->worst, op->ctx);
	free(op);
}

/* ----------------------------------------------------------------- connect */

typedef struct conn_op {
	imap_replica_t *ir;
	unsigned *caps;
	replica_done_cb cb;
	void *ctx;
} conn_op_t;

static void conn_finish(conn_op_t *op, int st)
{
	imap_replica_t *ir = op->ir;

	if (!ir->freed) {
		if (op->caps)
			*op->caps = ir->caps;
		op->cb(st, op->ctx);
	}
	free(op);
}

/* ENABLE QRESYNC travels ahead of the caller's first commands (the server
 * answers it before them), so connect() does not wait a round trip for it.
 * A refusal only costs the fast path: it arrives before the answer of any
 * SELECT sent after it, so the next select or scan sees qresync false. */
static void enable_done(imap_client_t *c, const imap_done_t *d, void *arg)
{
	imap_replica_t *ir = arg;

	if (d->result == IMAP_R_OK || ir->freed)
		return;
	if (d->result == IMAP_R_NO || d->result == IMAP_R_BAD) {
		ir->qresync = false;
		ir->caps &= ~(unsigned)REPLICA_CAP_VANISHED;
		ir_early_drop(ir);
		return;
	}
	ir_status(ir, d, false);
}

static void connect_done(imap_client_t *c, const imap_done_t *d, void *arg)
{
	conn_op_t *op = arg;
	imap_replica_t *ir = op->ir;

	if (ir->freed) {
		/* The account's config may be gone already: touch nothing. */
		conn_finish(op, REPLICA_CANCELLED);
		return;
	}
	if (d->result != IMAP_R_OK) {
		snprintf(ir->err, sizeof(ir->err), "%s", d->text ? d->text : "connection failed");
		ir->dead = true;
		conn_finish(op, REPLICA_BAD);
		return;
	}
	ir->dead = false;
	uint32_t caps = imap_client_caps(c);
	ir->caps = REPLICA_CAP_STATUS | REPLICA_CAP_KEYWORDS | REPLICA_CAP_APPEND_FD;
	if (caps & (IMAP_CAP_CONDSTORE | IMAP_CAP_QRESYNC))
		ir->caps |= REPLICA_CAP_MODSEQ;
	if (caps & IMAP_CAP_MOVE)
		ir->caps |= REPLICA_CAP_MOVE;
	if (caps & IMAP_CAP_UIDPLUS)
		ir->caps |= REPLICA_CAP_UIDPLUS;
	if (caps & IMAP_CAP_IDLE)
		ir->caps |= REPLICA_CAP_IDLE;
	if (ir->acct->remote.readonly)
		ir->caps |= REPLICA_CAP_READONLY;
	if ((caps & IMAP_CAP_QRESYNC) && (caps & IMAP_CAP_ENABLE)) {
		ir->qresync = true;
		ir->caps |= REPLICA_CAP_VANISHED;
		imap_client_cmd(c, enable_done, NULL, ir, "ENABLE QRESYNC");
	}
	conn_finish(op, REPLICA_OK);
}

static void ir_connect(replica_t *r, unsigned *caps, replica_done_cb cb, void *ctx)
{
	imap_replica_t *ir = (imap_replica_t *)r;
	conn_op_t *op = xcalloc(1, sizeof(*op));

	ir_early_drop(ir);
	op->ir = ir;
	op->caps = caps;
	op->cb = cb;
	op->ctx = ctx;
	ir->err[0] = '\0';
	ir->ferr[0] = '\0';
	ir->qresync = false;
	if (imap_client_connect(ir->c, connect_done, op) != 0) {
		snprintf(ir->err, sizeof(ir->err), "%s: already connected", ir->label);
		conn_finish(op, imap_client_ready(ir->c) ? REPLICA_OK : REPLICA_BAD);
	}
}

/* ------------------------------------------------------------------ select */

typedef struct select_op {
	imap_replica_t *ir;
	replica_select_cb cb;
	void *ctx;
	replica_box_t box;
	bool nomodseq;
	bool perm_star;
	bool perm_seen;
	bool examine;           /* EXAMINE by read_intent(): READ-ONLY is ours */
	bool always_cb;         /* call cb even after replica_free() (select_scan) */
} select_op_t;

static bool select_untagged(imap_client_t *c, const imap_resp_t *r, void *arg)
{
	select_op_t *op = arg;
	uint64_t v;

	if (r->code) {
		if (strcmp(r->code, "UIDVALIDITY") == 0 && ir_item_num(r->code_args, &v))
			op->box.counts.uidvalidity = (uint32_t)v;
		else if (strcmp(r->code, "UIDNEXT") == 0 && ir_item_num(r->code_args, &v))
			op->box.counts.uidnext = (uint32_t)v;
		else if (strcmp(r->code, "HIGHESTMODSEQ") == 0 && ir_item_num(r->code_args, &v))
			op->box.counts.highestmodseq = v;
		else if (strcmp(r->code, "NOMODSEQ") == 0)
			op->nomodseq = true;
		else if (strcmp(r->code, "PERMANENTFLAGS") == 0) {
			op->perm_seen = true;
			const imap_item_t *l = r->code_args;
			if (l && l->type == IMAP_ITEM_LIST)
				for (const imap_item_t *it = l->child; it; it = it->next)
					if (imap_item_is(it, "\\*"))
						op->perm_star = true;
		}
		return false;
	}
	if (r->name && r->has_number && strcmp(r->name, "EXISTS") == 0) {
		op->box.counts.messages = r->number;
		return false;
	}
	return false;
}

static void select_done(imap_client_t *c, const imap_done_t *d, void *arg)
{
	select_op_t *op = arg;
	imap_replica_t *ir = op->ir;
	int st = ir_status(ir, d, false);

	if (st == REPLICA_OK) {
		op->box.caps = ir->caps & (REPLICA_CAP_MOVE | REPLICA_CAP_UIDPLUS | REPLICA_CAP_IDLE |
					   REPLICA_CAP_READONLY | REPLICA_CAP_VANISHED |
					   REPLICA_CAP_APPEND_FD);
		if ((ir->caps & REPLICA_CAP_MODSEQ) && !op->nomodseq && op->box.counts.highestmodseq)
			op->box.caps |= REPLICA_CAP_MODSEQ;
		else
			op->box.counts.highestmodseq = 0;
		if (op->examine)
			/* EXAMINE's PERMANENTFLAGS are always empty. */
			op->box.caps |= REPLICA_CAP_KEYWORDS | REPLICA_CAP_KW_GUESS;
		else if (!op->perm_seen || op->perm_star)
			op->box.caps |= REPLICA_CAP_KEYWORDS;
		if (d->code && strcasecmp(d->code, "READ-ONLY") == 0 && !op->examine)
			op->box.caps |= REPLICA_CAP_READONLY;
		ir->box = op->box;
	} else {
		free(ir->selected);
		ir->selected = NULL;
	}
	if (!ir->freed || op->always_cb)
		op->cb(st, st == REPLICA_OK ? &op->box : NULL, op->ctx);
	free(op);
}

void ir_select_start(imap_replica_t *ir, const char *name, replica_select_cb cb, void *ctx,
		     bool always_cb)
{
	select_op_t *op = xcalloc(1, sizeof(*op));
	bool ro = (ir->caps & REPLICA_CAP_READONLY) != 0;

	op->ir = ir;
	op->cb = cb;
	op->ctx = ctx;
	op->always_cb = always_cb;
	op->examine = ir->read_next && !ro;
	ir->read_next = false;
	ir_switch_folder(ir, name, op->examine);
	ir->ferr[0] = '\0';
	memset(&ir->box, 0, sizeof(ir->box));
	imap_client_select(ir->c, name, ro || op->examine, NULL,
			   (ir->caps & REPLICA_CAP_MODSEQ) != 0, select_done, select_untagged, op);
}

void ir_select(replica_t *r, const char *name, replica_select_cb cb, void *ctx)
{
	imap_replica_t *ir = (imap_replica_t *)r;

	ir_early_drop(ir);
	ir_select_start(ir, name, cb, ctx, false);
}

/* ------------------------------------------------------------------- fetch */

struct fetch_op {
	imap_replica_t *ir;
	replica_body_sink_t sink;
	replica_done_cb cb;
	void *ctx;
	int worst;
	bool msg_failed;
	/* The server broke the FETCH contract (a body for a UID not asked
	 * for, or twice for one UID): the whole command fails the folder, and
	 * no body after that is delivered. */
	bool proto_bad;
	char why[256];
	uint32_t *uids;         /* asked for, sorted, unique; for a range,
	                           those answered so far */
	size_t n_uids;
	bool *answered;         /* per uids[]: a body was delivered (not for
	                           a range) */
	uint32_t from;          /* nonzero: a range from this UID on */
	uint32_t max;           /* a range's bound on bodies */
	bool always_cb;         /* call cb even after replica_free() (a range) */
	bool after_select;      /* sent behind a SELECT still in flight: asks
	                           for nothing until it answers (a range) */
	size_t cap_uids;
	buf_t kw;
	fetch_op_t *next;
};

/* A literal diverted to the body sink while it arrives. */
typedef struct lit_handle {
	fetch_op_t *op;
	void *h;
	bool failed;
} lit_handle_t;

static void *lit_open(void *ctx, uint64_t size)
{
	imap_replica_t *ir = ctx;
	fetch_op_t *op = ir->fq_head;

	if (!op)
		return NULL; /* not a message body we asked for: keep in memory */
	lit_handle_t *lh = xcalloc(1, sizeof(*lh));
	lh->op = op;
	lh->h = op->sink.open(op->sink.ctx, size);
	lh->failed = lh->h == NULL;
	return lh;
}

static int lit_write(void *ctx, void *handle, const char *data, size_t len)
{
	lit_handle_t *lh = handle;

	if (lh->failed)
		return 0; /* swallow the rest; the message is reported failed */
	if (lh->op->sink.write(lh->op->sink.ctx, lh->h, data, len) != 0) {
		lh->op->sink.abort(lh->op->sink.ctx, lh->h);
		lh->h = NULL;
		lh->failed = true;
	}
	return 0;
}

static void lit_release(void *ctx, void *handle)
{
	lit_handle_t *lh = handle;

	if (!lh->failed && lh->h && !lh->op->ir->freed)
		lh->op->sink.abort(lh->op->sink.ctx, lh->h);
	free(lh);
}

/* Whether op asked for uid: 0 no; 1 yes, and *idx says where it goes
 * (fetch_mark()); 2 yes, but its body came already. */
static int fetch_asked(const fetch_op_t *op, uint64_t uid, size_t *idx)
{
	if (uid > UINT32_MAX || uid < op->from || op->after_select)
		return 0;
	size_t a = ib_u32_lower_bound(op->uids, op->n_uids, (uint32_t)uid);
	bool found = a < op->n_uids && op->uids[a] == uid;

	*idx = a;
	if (op->from)
		return found ? 2 : 1;
	return !found ? 0 : op->answered[a] ? 2 : 1;
}

/* uid's body is being delivered; false when a range is full. */
static bool fetch_mark(fetch_op_t *op, size_t idx, uint32_t uid)
{
	if (!op->from) {
		op->answered[idx] = true;
		return true;
	}
	if (op->n_uids >= op->max)
		return false;
	if (op->n_uids == op->cap_uids) {
		op->cap_uids = op->cap_uids ? 2 * op->cap_uids : 16;
		op->uids = xrealloc(op->uids, op->cap_uids * sizeof(*op->uids));
	}
	memmove(op->uids + idx + 1, op->uids + idx, (op->n_uids - idx) * sizeof(*op->uids));
	op->uids[idx] = uid;
	op->n_uids++;
	return true;
}

/* A body the server had no business sending: never delivered (a literal
 * already diverted is aborted through the sink that opened it). op's
 * command fails the folder; the first reason is the one reported. */
static void fetch_reject(fetch_op_t *op, imap_item_t *body, const char *fmt, ...)
{
	va_list ap;

	if (body->sink) {
		lit_handle_t *lh = body->sink;
		body->sink = NULL;
		if (!lh->failed && lh->h && !op->ir->freed)
			lh->op->sink.abort(lh->op->sink.ctx, lh->h);
		free(lh);
	}
	if (op->proto_bad || !fmt)
		return;
	op->proto_bad = true;
	va_start(ap, fmt);
	vsnprintf(op->why, sizeof(op->why), fmt, ap);
	va_end(ap);
}

/*
 * Untagged FETCH responses are not tied to a command, and a server may
 * interleave the replies to pipelined UID FETCHes: the first fetch in flight
 * sees every FETCH and hands each body to the fetch that asked for its UID.
 * Only a body for a UID some fetch in flight asked for, once, is delivered:
 * anything else would store a message under a UID that holds different
 * bytes (a forged or confused answer) and lose the real one.
 */
static bool fetch_untagged(imap_client_t *c, const imap_resp_t *r, void *arg)
{
	fetch_op_t *first = arg;
	imap_replica_t *ir = first->ir;

	if (!r->name || strcmp(r->name, "FETCH") != 0)
		return false;
	const imap_item_t *l = r->args;
	imap_item_t *body = (imap_item_t *)imap_fetch_get(l, "BODY[]");
	uint64_t uid = 0, size = 0;
	if (!body || !ir_item_num(imap_fetch_get(l, "UID"), &uid))
		return false;
	if (ir->freed)
		return true;
	const char *host = ir_host(ir);
	fetch_op_t *head = ir->fq_head ? ir->fq_head : first;
	fetch_op_t *op = NULL, *dup = NULL;
	size_t idx = 0;
	for (fetch_op_t *p = head; p && uid != 0; p = p->next) {
		size_t i;
		int asked = fetch_asked(p, uid, &i);
		if (asked == 1) {
			op = p;
			idx = i;
			break;
		}
		if (asked == 2 && !dup)
			dup = p;
	}
	if (uid == 0) {
		fetch_reject(head, body, "%s sent a message body with UID 0 (UIDs start at 1)", host);
		return true;
	}
	if (!op && dup) {
		fetch_reject(dup, body, "%s sent UID %llu twice in one FETCH (duplicate message body)",
			     host, (unsigned long long)uid);
		return true;
	}
	if (!op) {
		fetch_reject(head, body,
			     "%s sent a message body for UID %llu, which was not asked for", host,
			     (unsigned long long)uid);
		return true;
	}
	if (op->proto_bad) {
		/* That batch fails anyway: deliver nothing more from it. */
		fetch_reject(op, body, NULL);
		return true;
	}
	if (!fetch_mark(op, idx, (uint32_t)uid)) {
		/* More bodies than the range allows: not delivered. */
		fetch_reject(op, body, NULL);
		op->msg_failed = true;
		return true;
	}
	if (body->sink) {
		lit_handle_t *lh = body->sink;
		if (lh->op != op && memcmp(&lh->op->sink, &op->sink, sizeof(op->sink)) != 0) {
			/* Opened through another fetch's sink: it cannot be
			 * completed through this one. */
			fetch_reject(op, body, NULL);
			op->msg_failed = true;
			return true;
		}
	}
	replica_msg_t m;
	memset(&m, 0, sizeof(m));
	m.uid = (uint32_t)uid;
	m.flags = ir_parse_flags(imap_fetch_get(l, "FLAGS"), &op->kw);
	m.keywords = ir_kw_str(&op->kw);
	m.internaldate = ir_parse_internaldate(ir_item_str(imap_fetch_get(l, "INTERNALDATE")));
	if (ir_item_num(imap_fetch_get(l, "RFC822.SIZE"), &size))
		m.size = size;
	if (body->sink) {
		lit_handle_t *lh = body->sink;
		body->sink = NULL;
		if (lh->failed || !lh->h)
			op->msg_failed = true;
		else
			op->sink.done(op->sink.ctx, lh->h, &m);
		free(lh);
		return true;
	}
	if (body->type == IMAP_ITEM_NIL) {
		op->msg_failed = true;
		return true;
	}
	void *h = op->sink.open(op->sink.ctx, body->len);
	if (!h) {
		op->msg_failed = true;
		return true;
	}
	if (op->sink.write(op->sink.ctx, h, body->str ? body->str : "", body->len) != 0) {
		op->sink.abort(op->sink.ctx, h);
		op->msg_failed = true;
		return true;
	}
	if (!m.size)
		m.size = body->len;
	op->sink.done(op->sink.ctx, h, &m);
	return true;
}

static void fetch_done(imap_client_t *c, const imap_done_t *d, void *arg)
{
	fetch_op_t *op = arg;
	imap_replica_t *ir = op->ir;
	int st = ir_status(ir, d, true);

	/* Pop from the queue (it is the head: commands complete in order). */
	if (ir->fq_head == op) {
		ir->fq_head = op->next;
		if (!ir->fq_head)
			ir->fq_tail = NULL;
	} else {
		for (fetch_op_t *p = ir->fq_head; p; p = p->next)
			if (p->next == op) {
				p->next = op->next;
				if (ir->fq_tail == op)
					ir->fq_tail = p;
				break;
			}
	}
	if (st == REPLICA_OK && op->msg_failed)
		st = REPLICA_MSG_BAD;
	if (op->proto_bad && (st == REPLICA_OK || st == REPLICA_MSG_BAD)) {
		st = REPLICA_FOLDER_BAD;
		snprintf(ir->ferr, sizeof(ir->ferr), "%s", op->why);
	}
	if (!ir->freed || op->always_cb)
		op->cb(st, op->ctx);
	buf_free(&op->kw);
	free(op->uids);
	free(op->answered);
	free(op);
}

static void fetch_enqueue(imap_replica_t *ir, fetch_op_t *op, const replica_body_sink_t *sink,
			  replica_done_cb cb, void *ctx)
{
	op->ir = ir;
	op->sink = *sink;
	op->cb = cb;
	op->ctx = ctx;
	if (ir->fq_tail)
		ir->fq_tail->next = op;
	else
		ir->fq_head = op;
	ir->fq_tail = op;
}

static void ir_fetch(replica_t *r, const uint32_t *uids, size_t n, const replica_body_sink_t *sink,
		     replica_done_cb cb, void *ctx)
{
	imap_replica_t *ir = (imap_replica_t *)r;
	fetch_op_t *op;
	buf_t set = BUF_INIT;
	uint32_t *sorted;

	ir_early_drop(ir);
	if (n == 0) {
		cb(REPLICA_OK, ctx);
		return;
	}
	sorted = xmalloc(n * sizeof(*sorted));
	memcpy(sorted, uids, n * sizeof(*sorted));
	for (size_t i = 1; i < n; i++) /* usually sorted already */
		for (size_t j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
			uint32_t t = sorted[j];
			sorted[j] = sorted[j - 1];
			sorted[j - 1] = t;
		}
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (k == 0 || sorted[k - 1] != sorted[i])
			sorted[k++] = sorted[i];
	if (imap_seqset_format(&set, sorted, k) != 0) {
		free(sorted);
		buf_free(&set);
		cb(REPLICA_MSG_BAD, ctx);
		return;
	}
	op = xcalloc(1, sizeof(*op));
	op->uids = sorted;
	op->n_uids = k;
	op->answered = xcalloc(k, sizeof(bool));
	fetch_enqueue(ir, op, sink, cb, ctx);
	imap_client_cmd(ir->c, fetch_done, fetch_untagged, op,
			"UID FETCH %s (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])", buf_cstr(&set));
	buf_free(&set);
}

fetch_op_t *ir_fetch_from(imap_replica_t *ir, uint32_t from, uint32_t max,
			  const replica_body_sink_t *sink, replica_done_cb cb, void *ctx)
{
	fetch_op_t *op = xcalloc(1, sizeof(*op));

	op->from = from ? from : 1;
	op->max = max;
	op->always_cb = true;
	op->after_select = true;
	fetch_enqueue(ir, op, sink, cb, ctx);
	imap_client_cmd(ir->c, fetch_done, fetch_untagged, op,
			"UID FETCH %u:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])", op->from);
	return op;
}

static void *discard_open(void *ctx, uint64_t size)
{
	static char handle;

	(void)ctx, (void)size;
	return &handle;
}

static int discard_write(void *ctx, void *h, const char *data, size_t len)
{
	(void)ctx, (void)h, (void)data, (void)len;
	return 0;
}

static void discard_end(void *ctx, void *h, const replica_msg_t *m)
{
	(void)ctx, (void)h, (void)m;
}

static void discard_abort(void *ctx, void *h)
{
	(void)ctx, (void)h;
}

void ir_fetch_selected(fetch_op_t *op)
{
	op->after_select = false;
}

void ir_fetch_discard(fetch_op_t *op)
{
	static const replica_body_sink_t discard = {
		.open = discard_open, .write = discard_write,
		.done = discard_end, .abort = discard_abort,
	};

	op->sink = discard;
}

/* ------------------------------------------------------------------ append */

typedef struct append_op {
	imap_replica_t *ir;
	replica_uid_cb cb;
	void *ctx;
} append_op_t;

static void append_done(imap_client_t *c, const imap_append_result_t *res, void *arg)
{
	append_op_t *op = arg;
	imap_replica_t *ir = op->ir;
	int st = ir_status(ir, &res->done, true);
	uint32_t uid = 0;

	if (st == REPLICA_OK && res->uid &&
	    (res->uidvalidity == 0 || res->uidvalidity == ir->box.counts.uidvalidity))
		uid = res->uid;
	if (!ir->freed)
		op->cb(st, uid, op->ctx);
	free(op);
}

static void append_any(replica_t *r, const replica_new_msg_t *m, int fd, replica_uid_cb cb,
		       void *ctx);

static void ir_append(replica_t *r, const replica_new_msg_t *m, replica_uid_cb cb, void *ctx)
{
	append_any(r, m, -1, cb, ctx);
}

static void ir_append_fd(replica_t *r, const replica_new_msg_t *m, int fd, replica_uid_cb cb,
			 void *ctx)
{
	append_any(r, m, fd, cb, ctx);
}

static void append_any(replica_t *r, const replica_new_msg_t *m, int fd, replica_uid_cb cb,
		       void *ctx)
{
	imap_replica_t *ir = (imap_replica_t *)r;
	append_op_t *op;
	buf_t fl = BUF_INIT;
	char date[64];

	ir_early_drop(ir);
	/* A refusal of this message sets it again; a failure of ours must
	 * not be reported with an earlier message's words. */
	ir->merr[0] = '\0';
	if ((ir->caps & REPLICA_CAP_READONLY) || !ir->selected) {
		cb(REPLICA_FOLDER_BAD, 0, ctx);
		return;
	}
	op = xcalloc(1, sizeof(*op));
	op->ir = ir;
	op->cb = cb;
	op->ctx = ctx;
	/* A folder without \* in PERMANENTFLAGS may refuse keywords. */
	ir_flags_list(&fl, m->flags, (ir->box.caps & REPLICA_CAP_KEYWORDS) ? m->keywords : "");
	if (m->internaldate)
		format_internaldate(m->internaldate, date, sizeof(date));
	if (fd >= 0) {
		if (lseek(fd, 0, SEEK_SET) != 0) {
			free(op);
			buf_free(&fl);
			cb(REPLICA_MSG_BAD, 0, ctx);
			return;
		}
		imap_client_append_fd(ir->c, ir->selected, buf_cstr(&fl),
				      m->internaldate ? date : NULL, fd, m->len, append_done, op);
	} else {
		imap_client_append(ir->c, ir->selected, buf_cstr(&fl), m->internaldate ? date : NULL,
				   m->data, m->len, append_done, op);
	}
	buf_free(&fl);
}

/* -------------------------------------------------------------------- find */

typedef struct find_op {
	imap_replica_t *ir;
	replica_uids_cb cb;
	void *ctx;
	uint32_t min_uid;
	uint32_t *uids;
	size_t n, cap;
} find_op_t;

static bool find_untagged(imap_client_t *c, const imap_resp_t *r, void *arg)
{
	find_op_t *op = arg;

	if (!r->name || strcmp(r->name, "SEARCH") != 0)
		return false;
	for (const imap_item_t *it = r->args; it; it = it->next) {
		uint64_t v;
		if (!ir_item_num(it, &v) || v < op->min_uid || v > UINT32_MAX)
			continue;
		if (op->n == op->cap) {
			op->cap = op->cap ? op->cap * 2 : 16;
			op->uids = xrealloc(op->uids, op->cap * sizeof(*op->uids));
		}
		op->uids[op->n++] = (uint32_t)v;
	}
	return true;
}

int ir_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static void find_done(imap_client_t *c, const imap_done_t *d, void *arg)
{
	find_op_t *op = arg;
	int st = ir_status(op->ir, d, false);

	if (op->n)
		qsort(op->uids, op->n, sizeof(*op->uids), ir_cmp_u32);
	if (!op->ir->freed)
		op->cb(st, op->uids, st == REPLICA_OK ? op->n : 0, op->ctx);
	free(op->uids);
	free(op);
}

static void ir_find(replica_t *r, const replica_find_t *q, replica_uids_cb cb, void *ctx)
{
	imap_replica_t *ir = (imap_replica_t *)r;
	find_op_t *op = xcalloc(1, sizeof(*op));
	char sz[64] = "";

	ir_early_drop(ir);
	op->ir = ir;
	op->cb = cb;
	op->ctx = ctx;
	op->min_uid = q->min_uid ? q->min_uid : 1;
	if (q->size)
		snprintf(sz, sizeof(sz), " LARGER %llu SMALLER %llu",
			 (unsigned long long)(q->size - 1), (unsigned long long)(q->size + 1));
	if (q->message_id && *q->message_id)
		imap_client_cmd(ir->c, find_done, find_untagged, op,
				"UID SEARCH UID %u:* HEADER Message-ID %q%s", op->min_uid,
				q->message_id, sz);
	else
		imap_client_cmd(ir->c, find_done, find_untagged, op, "UID SEARCH UID %u:*%s",
				op->min_uid, sz);
}

/* ------------------------------------------------------------------- watch */

static void watch_fire(imap_replica_t *ir, int st)
{
	if (ir->watch_fired || !ir->watch_cb)
		return;
	ir->watch_fired = true;
	replica_done_cb cb = ir->watch_cb;
	ir->watch_cb = NULL;
	if (!ir->freed)
		cb(st, ir->watch_ctx);
}

static bool idle_untagged(imap_client_t *c, const imap_resp_t *r, void *arg)
{
	imap_replica_t *ir = arg;

	if (r->name && (strcmp(r->name, "EXISTS") == 0 || strcmp(r->name, "EXPUNGE") == 0 ||
			strcmp(r->name, "FETCH") == 0 || strcmp(r->name, "VANISHED") == 0)) {
		imap_client_idle_done(c);
		watch_fire(ir, REPLICA_OK);
		return true;
	}
	return false;
}

static void idle_done(imap_client_t *c, const imap_done_t *d, void *arg)
{
	imap_replica_t *ir = arg;
	int st = ir_status(ir, d, false);

	ir->watching = false;
	watch_fire(ir, st == REPLICA_OK ? REPLICA_CANCELLED : st);
}

static void ir_watch(replica_t *r, replica_done_cb cb, void *ctx)
{
	imap_replica_t *ir = (imap_replica_t *)r;

	ir_early_drop(ir);
	ir->watch_cb = cb;
	ir->watch_ctx = ctx;
	ir->watch_fired = false;
	ir->watching = true;
	imap_client_idle(ir->c, idle_done, idle_untagged, ir);
}

static void ir_unwatch(replica_t *r)
{
	imap_replica_t *ir = (imap_replica_t *)r;

	if (ir->watching)
		imap_client_idle_done(ir->c);
}

/* ------------------------------------------------------------- close, free */

static void ir_close(replica_t *r, replica_done_cb cb, void *ctx)
{
	imap_replica_t *ir = (imap_replica_t *)r;

	ir_early_drop(ir);
	ir_switch_folder(ir, NULL, false);
	if (imap_client_caps(ir->c) & IMAP_CAP_UNSELECT) {
		simple_op_t *op = ir_simple_new(ir, cb, ctx, 1);
		imap_client_cmd(ir->c, ir_simple_done, NULL, op, "UNSELECT");
		return;
	}
	/* Never CLOSE: it would expunge. The next SELECT closes the folder. */
	cb(REPLICA_OK, ctx);
}

static void free_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	imap_replica_t *ir = w->data;

	imap_client_free(ir->c);
	ir_held_flush(ir, REPLICA_CANCELLED);
	free(ir->selected);
	free(ir->label);
	free(ir);
}

static void lost_cb(imap_client_t *c, int result, const char *msg, void *arg)
{
	imap_replica_t *ir = arg;

	ir->dead = true;
	if (msg && !ir->err[0])
		snprintf(ir->err, sizeof(ir->err), "%s", msg);
	watch_fire(ir, REPLICA_BAD);
}

static void ir_free(replica_t *r)
{
	imap_replica_t *ir = (imap_replica_t *)r;

	ir_early_drop(ir);
	if (ir->freed)
		return;
	ir->freed = true;
	/* Stop the connection now (the config it reads may be freed right
	 * after this, e.g. on a reload); pending callbacks see ir->freed. The
	 * client may be inside one of our callbacks right now: let the loop
	 * free it. */
	imap_client_close(ir->c);
	ev_timer_init(&ir->free_w, free_cb, 0., 0.);
	ir->free_w.data = ir;
	ev_timer_start(ir->loop, &ir->free_w);
}

static const replica_ops_t imap_replica_ops = {
	.connect = ir_connect,
	.list_folders = ir_list_folders,
	.status = ir_status_op,
	.create_folder = ir_create,
	.select = ir_select,
	.scan = ir_scan,
	.fetch = ir_fetch,
	.append = ir_append,
	.find = ir_find,
	.set_flags = ir_set_flags,
	.delete_msgs = ir_delete,
	.move = ir_move,
	.watch = ir_watch,
	.unwatch = ir_unwatch,
	.close = ir_close,
	.free = ir_free,
	.set_flags_uids = ir_set_flags_uids,
	.append_fd = ir_append_fd,
	.select_scan = ir_select_scan,
	.select_read = ir_select_read,
	.read_intent = ir_read_intent,
};

replica_t *imap_replica_new(struct ev_loop *loop, const config_account_t *acct, const char *label)
{
	imap_replica_t *ir = xcalloc(1, sizeof(*ir));
	imap_client_opts_t o;
	imap_literal_sink_t ls = {
		.threshold = IR_SINK_THRESHOLD,
		.ctx = ir,
		.open = lit_open,
		.write = lit_write,
		.release = lit_release,
	};

	ir->base.ops = &imap_replica_ops;
	ir->label = xstrdup(label ? label : acct->name);
	ir->base.label = ir->label;
	ir->loop = loop;
	ir->acct = acct;
	ir->held_tail = &ir->held;
	imap_client_opts_init(&o);
	o.log_name = ir->label;
	o.max_attempts = 3;
	ir->c = imap_client_new(loop, acct, &o);
	imap_client_set_literal_sink(ir->c, &ls);
	imap_client_set_lost_cb(ir->c, lost_cb, ir);
	return &ir->base;
}

const char *imap_replica_error(const replica_t *r)
{
	const imap_replica_t *ir = (const imap_replica_t *)r;
	return ir->err[0] ? ir->err : ir->ferr;
}

const char *imap_replica_msg_reason(const replica_t *r)
{
	const imap_replica_t *ir = (const imap_replica_t *)r;
	return ir->merr[0] ? ir->merr : NULL;
}

const char *imap_replica_reason(const replica_t *r, char *out, size_t len)
{
	const char *e = imap_replica_error(r);
	const char *tail;
	size_t n;

	if (!e[0])
		return NULL;
	/* The client's messages read "acct=NAME: ...; reconnecting": the
	 * caller's line names the account already, and for it the session is
	 * over. */
	if (strncmp(e, "acct=", 5) == 0) {
		const char *p = strstr(e, ": ");
		if (p)
			e = p + 2;
	}
	n = strlen(e);
	tail = "; reconnecting";
	if (n >= strlen(tail) && strcmp(e + n - strlen(tail), tail) == 0)
		n -= strlen(tail);
	snprintf(out, len, "%.*s", (int)n, e);
	return out;
}

bool imap_replica_dead(const replica_t *r)
{
	return ((const imap_replica_t *)r)->dead;
}

bool imap_replica_link_lost(const replica_t *r)
{
	const imap_replica_t *ir = (const imap_replica_t *)r;
	return ir->dead && ir->c && imap_client_link_lost(ir->c);
}

bool imap_replica_is(const replica_t *r)
{
	return r && r->ops == &imap_replica_ops;
}

