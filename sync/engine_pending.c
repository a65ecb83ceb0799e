/*
 * The sync engine's writes to the replica that must survive a crash: pending
 * operations left by an earlier run (resolved first: an interrupted upload is
 * found on the replica by Message-ID, size and SHA-256 and paired instead of
 * sent again; an interrupted deletion is finished; a move recorded by the
 * Maildir replica is done with UID MOVE), and uploads of new store messages,
 * each recorded as a pending operation before it is sent.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <openssl/evp.h>

#include "lib/log.h"
#include "lib/util.h"
#include "sync/engine.h"
#include "sync/engine_p.h"
#include "sync/imap_replica.h"

/* --------------------------------------------------- pending operations */

/* A sink that only hashes what arrives (to recognise an uploaded copy). */
static void *hash_open(void *ctx, uint64_t size)
{
	incoming_t *in = xcalloc(1, sizeof(*in));
	in->md = EVP_MD_CTX_new();
	if (!in->md || EVP_DigestInit_ex(in->md, EVP_sha256(), NULL) != 1) {
		eng_incoming_free(in);
		return NULL;
	}
	in->size = size;
	return in;
}

static int hash_write(void *ctx, void *h, const char *data, size_t len)
{
	incoming_t *in = h;
	return EVP_DigestUpdate(in->md, data, len) == 1 ? 0 : -1;
}

static void hash_done(void *ctx, void *h, const replica_msg_t *m)
{
	engine_job_t *job = ctx;
	incoming_t *in = h;
	store_hash_t got;
	unsigned int l = 0;

	if (EVP_DigestFinal_ex(in->md, got.b, &l) == 1 && l == STORE_HASH_LEN &&
	    memcmp(got.b, job->cand_match_hash.b, STORE_HASH_LEN) == 0 &&
	    (job->cand_match == 0 || m->uid < job->cand_match))
		job->cand_match = m->uid;
	eng_incoming_free(in);
}

static void hash_abort(void *ctx, void *h)
{
	eng_incoming_free(h);
}

static const replica_body_sink_t hash_sink_tmpl = {
	.open = hash_open, .write = hash_write, .done = hash_done, .abort = hash_abort,
};

typedef struct pend_commit {
	engine_job_t *job;
	pend_ent_t *pe;
	uint32_t ruid;       /* pair this (upload found) or 0 */
} pend_commit_t;

static int pend_commit_fn(store_txn_t *txn, void *arg)
{
	pend_commit_t *pc = arg;
	engine_job_t *job = pc->job;
	store_pending_t *p = &pc->pe->p;
	int rc;

	if (p->kind == STORE_PENDING_UPLOAD && pc->ruid) {
		store_msg_t m;
		store_pair_t pair = { .replica_uid = pc->ruid, .store_uid = p->store_uid };
		rc = store_msg_get(txn, p->folder_id, p->store_uid, &m);
		if (rc == 0) {
			pair.flags = m.flags;
			pair.kw = m.kw;
		} else if (rc != STORE_ENOTFOUND) {
			return rc;
		}
		/* A message deleted locally meanwhile is still paired: the
		 * decision step then deletes the uploaded copy as it should. */
		rc = store_pair_set(txn, job->o.folder_id, job->o.replica_id, &pair);
		if (rc)
			return rc;
	} else if (p->kind == STORE_PENDING_DELETE) {
		rc = store_pair_del(txn, job->o.folder_id, job->o.replica_id, p->replica_uid);
		if (rc && rc != STORE_ENOTFOUND)
			return rc;
	}
	rc = store_pending_del(txn, p->id);
	return rc == STORE_ENOTFOUND ? 0 : rc;
}

static void pend_resolve(engine_job_t *job, pend_ent_t *pe, uint32_t ruid)
{
	pend_commit_t pc = { job, pe, ruid };
	int rc = eng_write(job, pend_commit_fn, &pc);

	if (rc)
		eng_fail(job, ENGINE_STORE_ERR, "cannot resolve a pending operation: %s", store_strerror(rc));
}

/* Not found on the replica: forget the record and upload again, unless the
 * interruption was moments ago (the APPEND may still be in the server's
 * hands): then keep the record, hold the upload back and say so. */
static void pend_not_found(engine_job_t *job, pend_ent_t *pe)
{
	int settle = job->o.settle_secs ? job->o.settle_secs : ENGINE_SETTLE_SECS;
	if (settle > 0 && (int64_t)time(NULL) - pe->p.created < settle) {
		job->deferred = xrealloc(job->deferred, (job->n_deferred + 1) * sizeof(uint32_t));
		job->deferred[job->n_deferred++] = pe->p.store_uid;
		job->stats.deferred++;
		return;
	}
	pend_resolve(job, pe, 0);
}

static void pend_fetch_cb(int status, void *ctx)
{
	engine_job_t *job = ctx;
	pend_ent_t *pe = &job->pend[job->next_pend];

	job->waiting--;
	eng_op_fail(job, status, "fetch");
	if (job->result == ENGINE_OK) {
		if (job->cand_match) {
			log_info("%s: an interrupted upload had reached the replica (UID %u); paired",
				 job->log_prefix, job->cand_match);
			pend_resolve(job, pe, job->cand_match);
		} else {
			pend_not_found(job, pe);
		}
	}
	job->next_pend++;
	eng_kick(job);
}

static void pend_find_cb(int status, const uint32_t *uids, size_t n, void *ctx)
{
	engine_job_t *job = ctx;
	pend_ent_t *pe = &job->pend[job->next_pend];

	job->waiting--;
	eng_op_fail(job, status, "search");
	if (job->result != ENGINE_OK) {
		eng_kick(job);
		return;
	}
	free(job->cands);
	job->cands = xmalloc((n ? n : 1) * sizeof(*job->cands));
	job->n_cands = 0;
	for (size_t i = 0; i < n; i++)
		if (!eng_pair_find(job, uids[i]))
			job->cands[job->n_cands++] = uids[i];
	job->cand_match = 0;
	job->cand_match_hash = pe->p.hash;
	if (job->n_cands == 0) {
		/* The upload did not reach the replica: the message is still
		 * unpaired in the store and is uploaded again. */
		pend_not_found(job, pe);
		job->next_pend++;
		eng_kick(job);
		return;
	}
	/* Check the candidates' bytes: only an identical copy is paired. */
	job->hash_sink = hash_sink_tmpl;
	job->hash_sink.ctx = job;
	job->waiting++;
	job->r->ops->fetch(job->r, job->cands, job->n_cands, &job->hash_sink, pend_fetch_cb, job);
	eng_kick(job);
}

static void pend_delete_cb(int status, void *ctx)
{
	engine_job_t *job = ctx;
	pend_ent_t *pe = &job->pend[job->next_pend];

	job->waiting--;
	eng_op_fail(job, status, "delete");
	if (job->result == ENGINE_OK && status == REPLICA_OK)
		pend_resolve(job, pe, 0);
	job->next_pend++;
	eng_kick(job);
}

typedef struct move_commit {
	engine_job_t *job;
	pend_ent_t *pe;
	uint32_t new_ruid;
} move_commit_t;

static int move_commit_fn(store_txn_t *txn, void *arg)
{
	move_commit_t *mc = arg;
	engine_job_t *job = mc->job;
	store_pending_t *p = &mc->pe->p;
	store_msg_t m;
	int rc;

	rc = store_pair_del(txn, job->o.folder_id, job->o.replica_id, p->replica_uid);
	if (rc && rc != STORE_ENOTFOUND)
		return rc;
	store_pair_t pair = { .replica_uid = mc->new_ruid, .store_uid = p->store_uid };
	rc = store_msg_get(txn, p->dst_folder_id, p->store_uid, &m);
	if (rc == 0) {
		pair.flags = m.flags;
		pair.kw = m.kw;
		rc = store_pair_set(txn, p->dst_folder_id, job->o.replica_id, &pair);
		if (rc)
			return rc;
	} else if (rc != STORE_ENOTFOUND) {
		return rc;
	}
	rc = store_pending_del(txn, p->id);
	return rc == STORE_ENOTFOUND ? 0 : rc;
}

static void move_cb(int status, uint32_t uid, void *ctx)
{
	engine_job_t *job = ctx;
	pend_ent_t *pe = &job->pend[job->next_pend];

	job->waiting--;
	eng_op_fail(job, status, "move");
	if (job->result == ENGINE_OK) {
		if (status == REPLICA_OK && uid) {
			move_commit_t mc = { job, pe, uid };
			int rc = eng_write_intent(job, move_commit_fn, &mc);
			if (rc)
				eng_fail(job, ENGINE_STORE_ERR, "cannot record a move: %s", store_strerror(rc));
			else
				job->stats.moved++;
		} else {
			/* Not moved (gone, refused) or no new UID: the usual
			 * deletion here and upload there take over; a copy that
			 * did land is paired by content in the target. */
			pend_resolve(job, pe, 0);
		}
	}
	job->next_pend++;
	eng_kick(job);
}

/* A message moved between two folders of the store (by a mail reader in the
 * Maildir tree): move it on the replica too, when both ends are paired. */
static void move_pending(engine_job_t *job, pend_ent_t *pe, bool ro)
{
	store_pending_t *p = &pe->p;
	store_txn_t *txn = NULL;
	store_replica_t drs;
	store_pair_t dp;
	bool can = !ro && job->r->ops->move && (job->box.caps & REPLICA_CAP_MOVE) &&
		   (job->box.caps & REPLICA_CAP_UIDPLUS) && eng_pair_find(job, p->replica_uid);
	int rc;

	free(job->move_to);
	job->move_to = NULL;
	if (can && store_txn_begin_read(job->st, &txn) == 0) {
		rc = store_replica_get(txn, p->dst_folder_id, job->o.replica_id, &drs);
		if (rc == 0 && drs.uidvalidity && drs.name && *drs.name &&
		    store_pair_get_by_suid(txn, p->dst_folder_id, job->o.replica_id, p->store_uid,
					   &dp) == STORE_ENOTFOUND)
			job->move_to = xstrdup(drs.name);
	}
	store_txn_abort(txn);
	if (!job->move_to) {
		pend_resolve(job, pe, 0);
		job->next_pend++;
		return;
	}
	job->waiting++;
	job->r->ops->move(job->r, p->replica_uid, job->move_to, move_cb, job);
}

typedef struct mv_collect {
	engine_job_t *job;
	uint32_t *suids;
	size_t n;
} mv_collect_t;

static int mv_collect_cb(const store_pending_t *p, void *arg)
{
	mv_collect_t *mc = arg;

	if (p->kind != STORE_PENDING_MOVE || p->replica_id != mc->job->o.replica_id ||
	    p->dst_folder_id != mc->job->o.folder_id)
		return 0;
	mc->suids = xrealloc(mc->suids, (mc->n + 1) * sizeof(uint32_t));
	mc->suids[mc->n++] = p->store_uid;
	return 0;
}

int eng_move_targets(engine_job_t *job, uint32_t **suids, size_t *n)
{
	store_txn_t *txn = NULL;
	mv_collect_t mc = { job, NULL, 0 };
	int rc = store_txn_begin_read(job->st, &txn);

	if (rc == 0)
		rc = store_pending_list(txn, 0, mv_collect_cb, &mc);
	store_txn_abort(txn);
	*suids = mc.suids;
	*n = mc.n;
	return rc;
}

/* Resolve the next pending operation; stays in P_PENDING until all are. */
void eng_do_pending(engine_job_t *job)
{
	if (job->next_pend >= job->n_pend)
		return;
	job->phase = P_PENDING;
	pend_ent_t *pe = &job->pend[job->next_pend];
	store_pending_t *p = &pe->p;
	bool ro = (job->box.caps & REPLICA_CAP_READONLY) != 0;

	switch (p->kind) {
	case STORE_PENDING_UPLOAD: {
		replica_find_t *qp = &job->pend_q;
		if (!job->r->ops->find) {
			pend_resolve(job, pe, 0);
			job->next_pend++;
			return;
		}
		qp->message_id = *pe->message_id ? pe->message_id : NULL;
		qp->size = 0;
		{
			/* The size of the blob is the size of the message. */
			store_txn_t *txn = NULL;
			const void *d;
			size_t l;
			if (store_txn_begin_read(job->st, &txn) == 0 &&
			    store_blob_get(txn, &p->hash, &d, &l) == 0)
				qp->size = l;
			store_txn_abort(txn);
		}
		qp->min_uid = p->target_uidnext ? p->target_uidnext : 1;
		job->waiting++;
		job->r->ops->find(job->r, qp, pend_find_cb, job);
		return;
	}
	case STORE_PENDING_DELETE:
		if (ro) {
			pend_resolve(job, pe, 0);
			job->next_pend++;
			return;
		}
		job->waiting++;
		job->r->ops->delete_msgs(job->r, &p->replica_uid, 1, pend_delete_cb, job);
		return;
	case STORE_PENDING_MOVE:
		move_pending(job, pe, ro);
		return;
	default:
		/* Kinds this engine does not record: nothing to finish. */
		pend_resolve(job, pe, 0);
		job->next_pend++;
		return;
	}
}

/* ----------------------------------------------------------------- upload */

/*
 * New store messages go up in batches of ENGINE_UPLOAD_MSGS: the job keeps
 * only a small candidate entry per message (job->ups), and the details of a
 * batch (flags, keywords, bytes, pending record) live in job->batch while it
 * is in flight.
 */

int eng_up_record_fn(store_txn_t *txn, void *arg)
{
	engine_job_t *job = arg;
	int rc;

	for (size_t i = 0; i < job->n_batch; i++) {
		batch_ent_t *u = &job->batch[i];
		store_pending_t p;
		memset(&p, 0, sizeof(p));
		p.kind = STORE_PENDING_UPLOAD;
		p.folder_id = job->o.folder_id;
		p.replica_id = job->o.replica_id;
		p.store_uid = u->suid;
		p.target_uidnext = job->box.counts.uidnext;
		p.hash = u->hash;
		p.message_id = u->message_id;
		p.created = (int64_t)time(NULL);
		rc = store_pending_add(txn, &p, &u->pending_id);
		if (rc)
			return rc;
	}
	return 0;
}

int eng_up_commit_fn(store_txn_t *txn, void *arg)
{
	engine_job_t *job = arg;
	int rc;

	for (size_t i = 0; i < job->n_batch; i++) {
		batch_ent_t *u = &job->batch[i];
		if (!u->done)
			continue;
		if (u->ruid) {
			store_pair_t p = { .replica_uid = u->ruid, .store_uid = u->suid,
					   .flags = u->flags };
			char **vec;
			eng_str_to_kw(u->kw, &p.kw, &vec);
			rc = store_pair_set(txn, job->o.folder_id, job->o.replica_id, &p);
			replica_kw_free_vec(vec, p.kw.n);
			if (rc)
				return rc;
		} else {
			/* Uploaded, but the replica cannot tell its UID: drop the
			 * local copy; the next sync downloads it back, paired. */
			rc = store_msg_expunge(txn, job->o.folder_id, u->suid, NULL);
			if (rc && rc != STORE_ENOTFOUND)
				return rc;
		}
		rc = store_pending_del(txn, u->pending_id);
		if (rc && rc != STORE_ENOTFOUND)
			return rc;
	}
	return 0;
}

static void append_cb(int status, uint32_t uid, void *ctx)
{
	up_ctx_t *uc = ctx;
	engine_job_t *job = uc->job;
	batch_ent_t *u = &job->batch[uc->idx];

	job->waiting--;
	free(u->data);
	u->data = NULL;
	if (u->map) {
		munmap(u->map, u->len);
		u->map = NULL;
	}
	if (u->spool) {
		fclose(u->spool);
		u->spool = NULL;
	}
	u->status = status;
	if (status == REPLICA_OK) {
		u->ruid = uid;
		u->done = uid != 0;
	} else if (status == REPLICA_MSG_BAD) {
		job->stats.failed++;
		const char *why = imap_replica_is(job->r) ? imap_replica_msg_reason(job->r) : NULL;
		if (why)
			log_warn("%s: the server refused message %s (%zu bytes): %s", job->log_prefix,
				 u->message_id && u->message_id[0] ? u->message_id : "without Message-ID",
				 u->len, why);
	} else {
		eng_op_fail(job, status, "upload");
	}
	eng_kick(job);
}

static void find_cb(int status, const uint32_t *uids, size_t n, void *ctx)
{
	up_ctx_t *uc = ctx;
	engine_job_t *job = uc->job;
	batch_ent_t *u = &job->batch[uc->idx];

	job->waiting--;
	eng_op_fail(job, status, "search");
	if (status == REPLICA_OK) {
		/* The newest match that is not paired yet. */
		for (size_t i = n; i-- > 0;) {
			if (!eng_pair_find(job, uids[i])) {
				bool taken = false;
				for (size_t j = 0; j < job->n_batch; j++)
					taken |= job->batch[j].ruid == uids[i];
				if (!taken) {
					u->ruid = uids[i];
					break;
				}
			}
		}
		u->done = true;
	}
	eng_kick(job);
}

static void batch_clear(engine_job_t *job)
{
	for (size_t i = 0; i < job->n_batch; i++) {
		batch_ent_t *u = &job->batch[i];
		free(u->kw);
		free(u->data);
		free(u->message_id);
		if (u->map)
			munmap(u->map, u->len);
		if (u->spool)
			fclose(u->spool);
	}
	if (job->n_batch)
		memset(job->batch, 0, job->n_batch * sizeof(*job->batch));
	job->n_batch = 0;
}

/* Fill the next batch from the store (only this batch's bytes in memory;
 * big messages go to a temporary file, read by append_fd(), or mapped for a
 * replica that only has append(): the Maildir writes from the mapping, so a
 * 50 MB message costs page cache, not heap). The store's own pointer is not
 * handed out: it is valid only while a read transaction stays open, and one
 * must not stay open across a replica's callback. */
static int batch_fill(engine_job_t *job)
{
	store_txn_t *txn = NULL;
	size_t bytes = 0;
	bool use_fd = (job->box.caps & REPLICA_CAP_APPEND_FD) && job->r->ops->append_fd;
	int rc = store_txn_begin_read(job->st, &txn);

	if (!job->batch)
		job->batch = xcalloc(ENGINE_UPLOAD_MSGS, sizeof(*job->batch));
	while (rc == 0 && job->next_up < job->n_ups && job->n_batch < ENGINE_UPLOAD_MSGS &&
	       (bytes < ENGINE_UPLOAD_BYTES || job->n_batch == 0)) {
		upload_ent_t *c = &job->ups[job->next_up++];
		store_msg_t m;
		const void *d;
		size_t l;
		if (c->paired || c->move_target || c->deferred)
			continue;
		rc = store_msg_get(txn, job->o.folder_id, c->suid, &m);
		if (rc == STORE_ENOTFOUND) {
			rc = 0; /* expunged meanwhile: nothing to send */
			continue;
		}
		if (rc == 0)
			rc = store_blob_get(txn, &m.hash, &d, &l);
		if (rc)
			break;
		batch_ent_t *u = &job->batch[job->n_batch++];
		char mid[256];
		u->suid = c->suid;
		u->hash = m.hash;
		u->flags = m.flags & STORE_F_ALL;
		u->kw = eng_kw_to_str(&m.kw);
		u->internaldate = m.internaldate;
		u->size = l;
		u->len = l;
		engine_message_id(d, l, mid, sizeof(mid));
		u->message_id = xstrdup(mid);
		if (l >= ENGINE_SPOOL_MIN) {
			u->spool = eng_spool_new(job);
			if (u->spool && (fwrite(d, 1, l, u->spool) != l || fflush(u->spool) != 0)) {
				fclose(u->spool);
				u->spool = NULL;
			}
			if (u->spool && !use_fd) {
				void *p =
				    mmap(NULL, l, PROT_READ, MAP_PRIVATE, fileno(u->spool), 0);
				if (p == MAP_FAILED) {
					fclose(u->spool);
					u->spool = NULL;
				} else {
					u->map = p;
				}
			}
		}
		if (!u->spool) {
			u->data = xmalloc(l ? l : 1);
			if (l)
				memcpy(u->data, d, l);
			bytes += l;
		}
	}
	store_txn_abort(txn);
	return rc;
}

int eng_upload_prefill(engine_job_t *job)
{
	batch_clear(job);
	if (job->next_up >= job->n_ups)
		return 0;
	return batch_fill(job);
}

void eng_do_upload(engine_job_t *job)
{
	if (job->upload_step == 0) {
		int rc = 0;

		if (job->deferred_w & EW_UPLOADS)
			return; /* the last batch commits with the sync state */
		if (job->batch_recorded) {
			/* Filled and recorded with the deletions (do_delete). */
			job->batch_recorded = false;
			job->phase = P_UPLOAD;
			goto send;
		}
		batch_clear(job);
		if (job->next_up >= job->n_ups) {
			free(job->by_hash);
			job->by_hash = NULL;
			return;
		}
		job->phase = P_UPLOAD;
		rc = batch_fill(job);
		if (rc == 0 && job->n_batch)
			rc = eng_write_intent(job, eng_up_record_fn, job);
		if (rc) {
			eng_fail(job, ENGINE_STORE_ERR, "cannot prepare uploads: %s", store_strerror(rc));
			return;
		}
		if (job->n_batch == 0)
			return; /* all skipped; P_UPLOAD runs again for the rest */
	send:
		job->upload_started = true;
		job->upload_step = 1;
		for (size_t i = 0; i < job->n_batch; i++) {
			batch_ent_t *u = &job->batch[i];
			replica_new_msg_t *m = &u->nm;
			up_ctx_t *uc = &u->uc;
			uc->job = job;
			uc->idx = i;
			m->data = u->map ? u->map : u->data;
			m->len = u->len;
			m->flags = u->flags;
			m->keywords = u->kw;
			m->internaldate = (time_t)u->internaldate;
			job->waiting++;
			if (u->spool && !u->map)
				job->r->ops->append_fd(job->r, m, fileno(u->spool), append_cb, uc);
			else
				job->r->ops->append(job->r, m, append_cb, uc);
			if (job->result != ENGINE_OK)
				break;
		}
		return;
	}
	job->phase = P_UPLOAD;
	if (job->upload_step == 1) {
		/* Learn UIDs the replica did not report. */
		job->upload_step = 2;
		for (size_t i = 0; i < job->n_batch; i++) {
			batch_ent_t *u = &job->batch[i];
			if (u->status != REPLICA_OK || u->done)
				continue;
			if (!job->r->ops->find) {
				u->done = true;
				continue;
			}
			up_ctx_t *uc = &u->uc;
			u->q.message_id = *u->message_id ? u->message_id : NULL;
			u->q.size = u->size;
			u->q.min_uid = job->box.counts.uidnext;
			uc->job = job;
			uc->idx = i;
			job->waiting++;
			job->r->ops->find(job->r, &u->q, find_cb, uc);
		}
		return;
	}
	/* upload_step 2: record the pairs; those of the last batch with the
	 * sync state (a crash before that leaves the intents, which the next
	 * run resolves by finding the copies). */
	for (size_t i = 0; i < job->n_batch; i++)
		if (job->batch[i].done)
			job->stats.uploaded++;
	job->upload_step = 0;
	if (job->next_up >= job->n_ups) {
		job->deferred_w |= EW_UPLOADS;
		return;
	}
	int rc = eng_write(job, eng_up_commit_fn, job);
	if (rc) {
		eng_fail(job, ENGINE_STORE_ERR, "cannot record uploads: %s", store_strerror(rc));
		return;
	}
	batch_clear(job);
}
