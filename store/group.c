/*
 * Group commit (see store.h): lazy writes queued by several callers run in
 * one transaction, so a sync that finishes many folders at once pays one
 * data sync instead of one per folder.
 */
#include <stdlib.h>

#include "lib/util.h"
#include "store/store.h"

struct store_group_ent {
	store_txn_fn fn;
	void *arg;
	store_group_cb done;
	void *done_arg;
	int rc;
	bool cancelled;
	store_group_ent_t *next;
};

struct store_group {
	store_t *st;
	store_group_ent_t *head, *tail; /* queued */
	size_t n;
	store_group_ent_t *batch;       /* being flushed: done() still to come */
};

store_group_t *store_group_new(store_t *st)
{
	store_group_t *g = xcalloc(1, sizeof(*g));

	g->st = st;
	return g;
}

void store_group_free(store_group_t *g)
{
	if (!g)
		return;
	while (g->head)
		store_group_flush(g);
	free(g);
}

store_group_ent_t *store_group_add(store_group_t *g, store_txn_fn fn, void *arg,
				   store_group_cb done, void *done_arg)
{
	store_group_ent_t *e = xcalloc(1, sizeof(*e));

	e->fn = fn;
	e->arg = arg;
	e->done = done;
	e->done_arg = done_arg;
	if (g->tail)
		g->tail->next = e;
	else
		g->head = e;
	g->tail = e;
	g->n++;
	return e;
}

void store_group_cancel(store_group_t *g, store_group_ent_t *e)
{
	for (store_group_ent_t *b = g->batch; b; b = b->next)
		if (b == e) {
			e->cancelled = true; /* run already; its done() is skipped */
			return;
		}
	store_group_ent_t **pp = &g->head, *prev = NULL;
	while (*pp && *pp != e) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (!*pp)
		return;
	*pp = e->next;
	if (g->tail == e)
		g->tail = prev;
	g->n--;
	free(e);
}

size_t store_group_pending(const store_group_t *g)
{
	return g->n;
}

static int group_fn(store_txn_t *txn, void *arg)
{
	store_group_t *g = arg;

	for (store_group_ent_t *e = g->batch; e; e = e->next) {
		int rc = e->fn(txn, e->arg);
		if (rc == 0)
			rc = store_txn_err(txn);
		if (rc)
			return rc;
	}
	return 0;
}

void store_group_flush(store_group_t *g)
{
	if (!g->head || g->batch)
		return; /* nothing queued, or inside a done() of this flush */
	g->batch = g->head;
	g->head = g->tail = NULL;
	g->n = 0;

	int rc = store_write_lazy(g->st, group_fn, g);
	if (rc && g->batch->next) {
		/* One of them failed (or the commit did): each on its own, so
		 * one caller's error is not everyone's. */
		for (store_group_ent_t *e = g->batch; e; e = e->next)
			e->rc = store_write_lazy(g->st, e->fn, e->arg);
	} else {
		for (store_group_ent_t *e = g->batch; e; e = e->next)
			e->rc = rc;
	}
	while (g->batch) {
		store_group_ent_t *e = g->batch;
		g->batch = e->next;
		if (!e->cancelled)
			e->done(e->rc, e->done_arg);
		free(e);
	}
}
