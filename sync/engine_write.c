/*
 * The sync engine's writes to the replica, after the decisions: deletions
 * (each recorded as a pending operation before it is sent, resolved once
 * the replica confirmed it) and flag updates (the agreed value moves once
 * the replica accepted them; one UID STORE per distinct change where the
 * replica offers set_flags_uids()). Uploads are in engine_pending.c.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/util.h"
#include "sync/engine.h"
#include "sync/engine_p.h"

/* ------------------------------------------------- deletions on the replica */

typedef struct del_rec {
	engine_job_t *job;
	uint32_t *uids;
	size_t n;
	uint64_t first_id;
	bool resolve;
} del_rec_t;

static int del_record_fn(store_txn_t *txn, void *arg)
{
	del_rec_t *d = arg;
	engine_job_t *job = d->job;
	int rc;

	if (!d->resolve && job->n_batch && !job->batch_recorded) {
		rc = eng_up_record_fn(txn, job);
		if (rc)
			return rc;
	}

	for (size_t i = 0; i < job->n_pairs; i++) {
		pair_ent_t *e = &job->pairs[i];
		if (!e->del_replica)
			continue;
		if (d->resolve) {
			if (!e->ok)
				continue;
			rc = store_pair_del(txn, job->o.folder_id, job->o.replica_id, e->ruid);
			if (rc && rc != STORE_ENOTFOUND)
				return rc;
			continue;
		}
		store_pending_t p;
		memset(&p, 0, sizeof(p));
		p.kind = STORE_PENDING_DELETE;
		p.folder_id = job->o.folder_id;
		p.replica_id = job->o.replica_id;
		p.store_uid = e->suid;
		p.replica_uid = e->ruid;
		p.target_uidnext = job->box.counts.uidnext;
		p.created = (int64_t)time(NULL);
		rc = store_pending_add(txn, &p, NULL);
		if (rc)
			return rc;
	}
	return 0;
}

typedef struct pend_drop {
	engine_job_t *job;
	uint32_t kind;
	uint64_t *ids;
	size_t n, cap;
} pend_drop_t;

static int pend_collect_cb(const store_pending_t *p, void *arg)
{
	pend_drop_t *pd = arg;
	engine_job_t *job = pd->job;

	if (p->kind != pd->kind || p->replica_id != job->o.replica_id)
		return 0;
	if (p->kind == STORE_PENDING_DELETE) {
		pair_ent_t *e = eng_pair_find(job, p->replica_uid);
		if (!e || !e->del_replica || !e->ok)
			return 0;
	}
	if (pd->n == pd->cap) {
		pd->cap = pd->cap ? pd->cap * 2 : 64;
		pd->ids = xrealloc(pd->ids, pd->cap * sizeof(*pd->ids));
	}
	pd->ids[pd->n++] = p->id;
	return 0;
}

static int del_resolve_fn(store_txn_t *txn, void *arg)
{
	del_rec_t *d = arg;
	pend_drop_t pd = { d->job, STORE_PENDING_DELETE, NULL, 0, 0 };
	int rc = del_record_fn(txn, d);

	if (rc == 0)
		rc = store_pending_list(txn, d->job->o.folder_id, pend_collect_cb, &pd);
	for (size_t i = 0; rc == 0 && i < pd.n; i++) {
		rc = store_pending_del(txn, pd.ids[i]);
		if (rc == STORE_ENOTFOUND)
			rc = 0;
	}
	free(pd.ids);
	return rc;
}

int eng_del_resolve_job(store_txn_t *txn, engine_job_t *job)
{
	del_rec_t d = { job, NULL, 0, 0, true };
	return del_resolve_fn(txn, &d);
}

static void delete_cb(int status, void *ctx)
{
	engine_job_t *job = ctx;

	job->waiting--;
	eng_op_fail(job, status, "delete");
	if (status == REPLICA_OK) {
		unsigned n = 0;
		for (size_t i = 0; i < job->n_pairs; i++)
			if (job->pairs[i].del_replica) {
				job->pairs[i].ok = true;
				n++;
			}
		/* Dropping the pairs and the intents can wait: an intent left
		 * after a crash is finished by the next run. */
		job->deferred_w |= EW_DELETES;
		job->stats.deleted_replica += n;
	}
	free(job->known);
	job->known = NULL;
	eng_kick(job);
}

void eng_do_delete(engine_job_t *job)
{
	del_rec_t d = { job, NULL, 0, 0, false };
	size_t n = 0;
	int rc;

	for (size_t i = 0; i < job->n_pairs; i++)
		if (job->pairs[i].del_replica)
			n++;
	if (n == 0)
		return;
	/* Intent first: a crash after the replica deleted and before the pair
	 * was dropped is finished by the next run, not mistaken for a new
	 * deletion the other way. The first upload batch's intents go in the
	 * same commit: one sync instead of two. */
	if (job->n_ups && !(job->box.caps & REPLICA_CAP_READONLY) && !job->batch_recorded) {
		rc = eng_upload_prefill(job);
		if (rc) {
			eng_fail(job, ENGINE_STORE_ERR, "cannot prepare uploads: %s", store_strerror(rc));
			return;
		}
	}
	rc = eng_write_intent(job, del_record_fn, &d);
	if (rc == 0 && job->n_batch)
		job->batch_recorded = true;
	if (rc) {
		eng_fail(job, ENGINE_STORE_ERR, "cannot record pending deletions: %s", store_strerror(rc));
		return;
	}
	free(job->known);
	job->known = xmalloc(n * sizeof(*job->known));
	n = 0;
	for (size_t i = 0; i < job->n_pairs; i++)
		if (job->pairs[i].del_replica)
			job->known[n++] = job->pairs[i].ruid;
	job->waiting++;
	job->r->ops->delete_msgs(job->r, job->known, n, delete_cb, job);
}

/* ------------------------------------------------- flags to the replica */

static void flags_cb(int status, void *ctx)
{
	flag_ctx_t *fc = ctx;
	engine_job_t *job = fc->job;

	job->waiting--;
	job->flags_pending--;
	for (size_t i = 0; i < fc->n; i++) {
		if (status == REPLICA_OK)
			job->pairs[fc->idx[i]].ok = true;
		else if (status == REPLICA_MSG_BAD)
			job->stats.failed++;
	}
	eng_op_fail(job, status, "flag update");
	/* All answered: the flags the replica took become agreed values at
	 * the job's next commit. */
	if (job->flags_pending == 0 && job->result == ENGINE_OK)
		job->deferred_w |= EW_FLAGS;
	eng_kick(job);
}

static unsigned fl_add(const pair_ent_t *e)
{
	return e->n_flags & ~e->r_flags;
}

static unsigned fl_del(const pair_ent_t *e)
{
	return e->r_flags & ~e->n_flags;
}

/* Order pairs by the change they need, so equal changes are neighbours. */
static int change_cmp(const void *a, const void *b, void *arg)
{
	const engine_job_t *job = arg;
	const pair_ent_t *x = &job->pairs[*(const size_t *)a], *y = &job->pairs[*(const size_t *)b];
	int c;

	if (fl_add(x) != fl_add(y))
		return fl_add(x) < fl_add(y) ? -1 : 1;
	if (fl_del(x) != fl_del(y))
		return fl_del(x) < fl_del(y) ? -1 : 1;
	if ((c = strcmp(x->add_kw, y->add_kw)) != 0)
		return c;
	return strcmp(x->del_kw, y->del_kw);
}

int eng_flags_commit_fn(store_txn_t *txn, void *arg)
{
	engine_job_t *job = arg;
	int rc;

	for (size_t i = 0; i < job->n_pairs; i++) {
		pair_ent_t *e = &job->pairs[i];
		if (!e->set_replica || !e->ok)
			continue;
		store_pair_t p = { .replica_uid = e->ruid, .store_uid = e->suid,
				   .flags = e->n_flags };
		char **vec;
		eng_str_to_kw(e->n_kw, &p.kw, &vec);
		rc = store_pair_set(txn, job->o.folder_id, job->o.replica_id, &p);
		replica_kw_free_vec(vec, p.kw.n);
		if (rc)
			return rc;
	}
	return 0;
}

/* Push merged flags to the replica: one command per distinct change (a
 * thousand messages marked read are one UID STORE), or per message when the
 * replica has no bulk operation. */
void eng_do_flags(engine_job_t *job)
{
	size_t *order = NULL, n = 0;

	for (size_t i = 0; i < job->n_pairs; i++) {
		pair_ent_t *e = &job->pairs[i];
		if (!e->set_replica)
			continue;
		if (job->box.caps & REPLICA_CAP_KEYWORDS) {
			replica_kw_diff(e->r_kw, e->n_kw, &e->add_kw, &e->del_kw);
		} else {
			e->add_kw = xstrdup("");
			e->del_kw = xstrdup("");
		}
		order = xrealloc(order, (n + 1) * sizeof(*order));
		order[n++] = i;
	}
	if (n == 0)
		return;
	job->stats.flags_replica += (unsigned)n;
	bool bulk = job->r->ops->set_flags_uids != NULL;
	if (bulk)
		qsort_r(order, n, sizeof(*order), change_cmp, job);
	for (size_t i = 0; i < n && job->result == ENGINE_OK;) {
		size_t j = i + 1;
		while (bulk && j < n && change_cmp(&order[i], &order[j], job) == 0)
			j++;
		pair_ent_t *e = &job->pairs[order[i]];
		flag_ctx_t *fc;
		if (j - i == 1) {
			/* The common case needs no allocation. */
			fc = &e->fc;
			fc->idx = &fc->idx1;
			fc->uids = &fc->uid1;
		} else {
			fc = eng_ctx(job, sizeof(*fc));
			fc->idx = eng_ctx(job, (j - i) * sizeof(size_t));
			fc->uids = eng_ctx(job, (j - i) * sizeof(uint32_t));
		}
		fc->job = job;
		fc->n = j - i;
		for (size_t k = 0; k < fc->n; k++) {
			fc->idx[k] = order[i + k];
			fc->uids[k] = job->pairs[order[i + k]].ruid;
		}
		job->waiting++;
		job->flags_pending++;
		if (fc->n > 1)
			job->r->ops->set_flags_uids(job->r, fc->uids, fc->n, fl_add(e), e->add_kw,
						    fl_del(e), e->del_kw, flags_cb, fc);
		else
			job->r->ops->set_flags(job->r, e->ruid, fl_add(e), e->add_kw, fl_del(e),
					       e->del_kw, flags_cb, fc);
		i = j;
	}
	free(order);
}
