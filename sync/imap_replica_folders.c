/*
 * The IMAP replica's folder operations: LIST (with SPECIAL-USE and
 * LIST-STATUS where offered), pipelined STATUS, CREATE.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/util.h"
#include "sync/imap_replica_p.h"

/* ------------------------------------------------------------ list folders */

typedef struct list_op {
	imap_replica_t *ir;
	replica_folders_cb cb;
	void *ctx;
	replica_folder_t *f;
	size_t n, cap;
} list_op_t;

static unsigned special_bit(const char *s)
{
	static const struct { const char *n; unsigned b; } t[] = {
		{ "\\All", REPLICA_SPECIAL_ALL }, { "\\Archive", REPLICA_SPECIAL_ARCHIVE },
		{ "\\Drafts", REPLICA_SPECIAL_DRAFTS }, { "\\Flagged", REPLICA_SPECIAL_FLAGGED },
		{ "\\Junk", REPLICA_SPECIAL_JUNK }, { "\\Sent", REPLICA_SPECIAL_SENT },
		{ "\\Trash", REPLICA_SPECIAL_TRASH },
	};
	for (size_t i = 0; i < IB_ARRAY_LEN(t); i++)
		if (strcasecmp(s, t[i].n) == 0)
			return t[i].b;
	return 0;
}

static replica_folder_t *list_get(list_op_t *op, const char *name)
{
	for (size_t i = 0; i < op->n; i++)
		if (strcmp(op->f[i].name, name) == 0)
			return &op->f[i];
	if (op->n == op->cap) {
		op->cap = op->cap ? op->cap * 2 : 32;
		op->f = xrealloc(op->f, op->cap * sizeof(*op->f));
	}
	replica_folder_t *f = &op->f[op->n++];
	memset(f, 0, sizeof(*f));
	f->name = xstrdup(name);
	return f;
}

static void parse_status_attrs(const imap_item_t *list, replica_counts_t *c)
{
	if (!list || list->type != IMAP_ITEM_LIST)
		return;
	for (const imap_item_t *it = list->child; it && it->next; it = it->next->next) {
		uint64_t v;
		if (!ir_item_num(it->next, &v))
			continue;
		if (imap_item_is(it, "UIDVALIDITY"))
			c->uidvalidity = (uint32_t)v;
		else if (imap_item_is(it, "UIDNEXT"))
			c->uidnext = (uint32_t)v;
		else if (imap_item_is(it, "MESSAGES"))
			c->messages = (uint32_t)v;
		else if (imap_item_is(it, "HIGHESTMODSEQ"))
			c->highestmodseq = v;
	}
}

static bool list_untagged(imap_client_t *c, const imap_resp_t *r, void *arg)
{
	list_op_t *op = arg;

	if (!r->name)
		return false;
	if (strcmp(r->name, "LIST") == 0) {
		const imap_item_t *attrs = r->args;
		const imap_item_t *sep = attrs ? attrs->next : NULL;
		const imap_item_t *name = sep ? sep->next : NULL;
		char *n = ir_decode_name(name);
		if (!n)
			return true;
		replica_folder_t *f = list_get(op, n);
		free(n);
		const char *s = ir_item_str(sep);
		f->sep = s && sep->type == IMAP_ITEM_STRING ? s[0] : '\0';
		if (attrs && attrs->type == IMAP_ITEM_LIST) {
			for (const imap_item_t *a = attrs->child; a; a = a->next) {
				const char *an = ir_item_str(a);
				if (!an)
					continue;
				if (strcasecmp(an, "\\Noselect") == 0 || strcasecmp(an, "\\NonExistent") == 0)
					f->noselect = true;
				f->special |= special_bit(an);
			}
		}
		return true;
	}
	if (strcmp(r->name, "STATUS") == 0) {
		char *n = ir_decode_name(r->args);
		if (!n)
			return true;
		replica_folder_t *f = list_get(op, n);
		free(n);
		parse_status_attrs(r->args->next, &f->counts);
		f->has_counts = true;
		return true;
	}
	return false;
}

static void list_done(imap_client_t *c, const imap_done_t *d, void *arg)
{
	list_op_t *op = arg;
	int st = ir_status(op->ir, d, false);

	if (!op->ir->freed)
		op->cb(st, op->f, st == REPLICA_OK ? op->n : 0, op->ctx);
	for (size_t i = 0; i < op->n; i++)
		free((char *)op->f[i].name);
	free(op->f);
	free(op);
}

void ir_list_folders(replica_t *r, replica_folders_cb cb, void *ctx)
{
	imap_replica_t *ir = (imap_replica_t *)r;
	list_op_t *op = xcalloc(1, sizeof(*op));
	uint32_t caps = imap_client_caps(ir->c);
	const char *ref = ir->acct->remote.reference ? ir->acct->remote.reference : "";
	bool ext = (caps & IMAP_CAP_LIST_EXTENDED) != 0;
	bool lstatus = (caps & IMAP_CAP_LIST_STATUS) != 0;
	bool su = (caps & IMAP_CAP_SPECIAL_USE) != 0;
	bool ms = (caps & (IMAP_CAP_CONDSTORE | IMAP_CAP_QRESYNC)) != 0;

	ir_early_drop(ir);
	op->ir = ir;
	op->cb = cb;
	op->ctx = ctx;
	if (ext && (lstatus || su)) {
		char ret[160];
		snprintf(ret, sizeof(ret), " RETURN (%s%s%s)", su ? "SPECIAL-USE" : "",
			 su && lstatus ? " " : "",
			 lstatus ? (ms ? "STATUS (UIDVALIDITY UIDNEXT MESSAGES HIGHESTMODSEQ)"
				       : "STATUS (UIDVALIDITY UIDNEXT MESSAGES)")
				 : "");
		imap_client_cmd(ir->c, list_done, list_untagged, op, "LIST %q \"*\"%s", ref, ret);
	} else {
		imap_client_cmd(ir->c, list_done, list_untagged, op, "LIST %q \"*\"", ref);
	}
}

/* ------------------------------------------------------------------ status */

typedef struct status_op {
	imap_replica_t *ir;
	replica_status_cb cb;
	void *ctx;
	char **names;
	replica_counts_t *counts;
	bool *ok;
	size_t n;
	size_t left;
	int worst;
} status_op_t;

typedef struct status_one {
	status_op_t *op;
	size_t idx;
} status_one_t;

static bool status_untagged(imap_client_t *c, const imap_resp_t *r, void *arg)
{
	status_one_t *one = arg;
	status_op_t *op = one->op;

	if (!r->name || strcmp(r->name, "STATUS") != 0)
		return false;
	char *n = ir_decode_name(r->args);
	bool mine = n && strcmp(n, op->names[one->idx]) == 0;
	free(n);
	if (!mine)
		return false; /* a later STATUS of the same pipeline */
	parse_status_attrs(r->args->next, &op->counts[one->idx]);
	return true;
}

static void status_done(imap_client_t *c, const imap_done_t *d, void *arg)
{
	status_one_t *one = arg;
	status_op_t *op = one->op;
	int st = ir_status(op->ir, d, false);

	op->ok[one->idx] = st == REPLICA_OK;
	if (st == REPLICA_BAD || st == REPLICA_CANCELLED)
		op->worst = st;
	free(one);
	if (--op->left)
		return;
	if (!op->ir->freed)
		op->cb(op->worst, op->counts, op->ok, op->n, op->ctx);
	for (size_t i = 0; i < op->n; i++)
		free(op->names[i]);
	free(op->names);
	free(op->counts);
	free(op->ok);
	free(op);
}

void ir_status_op(replica_t *r, const char *const *names, size_t n, replica_status_cb cb,
			 void *ctx)
{
	imap_replica_t *ir = (imap_replica_t *)r;
	status_op_t *op = xcalloc(1, sizeof(*op));
	bool ms = (imap_client_caps(ir->c) & (IMAP_CAP_CONDSTORE | IMAP_CAP_QRESYNC)) != 0;

	ir_early_drop(ir);
	op->ir = ir;
	op->cb = cb;
	op->ctx = ctx;
	op->n = n;
	op->left = n;
	op->names = xcalloc(n ? n : 1, sizeof(char *));
	op->counts = xcalloc(n ? n : 1, sizeof(*op->counts));
	op->ok = xcalloc(n ? n : 1, sizeof(bool));
	if (n == 0) {
		cb(REPLICA_OK, op->counts, op->ok, 0, ctx);
		free(op->names);
		free(op->counts);
		free(op->ok);
		free(op);
		return;
	}
	for (size_t i = 0; i < n; i++)
		op->names[i] = xstrdup(names[i]);
	for (size_t i = 0; i < n; i++) {
		status_one_t *one = xmalloc(sizeof(*one));
		one->op = op;
		one->idx = i;
		imap_client_cmd(ir->c, status_done, status_untagged, one, "STATUS %m (%s)", names[i],
				ms ? "UIDVALIDITY UIDNEXT MESSAGES HIGHESTMODSEQ"
				   : "UIDVALIDITY UIDNEXT MESSAGES");
	}
}

/* ---------------------------------------------------------- create folder */

void ir_create(replica_t *r, const char *name, unsigned special, replica_done_cb cb,
		      void *ctx)
{
	imap_replica_t *ir = (imap_replica_t *)r;
	simple_op_t *op = ir_simple_new(ir, cb, ctx, 1);

	ir_early_drop(ir);
	op->exists_ok = true;
	if (ir->caps & REPLICA_CAP_READONLY) {
		op->left = 0;
		cb(REPLICA_FOLDER_BAD, ctx);
		free(op);
		return;
	}
	imap_client_cmd(ir->c, ir_simple_done, NULL, op, "CREATE %m", name);
}

