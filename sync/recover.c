/*
 * Folder recovery: see recover.h. A small state machine over one remote
 * session (connect, select, scan, fetch candidates), then store writes, then
 * one normal sync of the folder with the deletion guard off. The caller's
 * loop is run until it is done.
 */
#include "sync/recover.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "lib/log.h"
#include "lib/util.h"
#include "sync/engine.h"
#include "sync/folders.h"
#include "sync/imap_replica.h"
#include "sync/maildir.h"
#include "sync/replica.h"

typedef struct rmsg {
	uint32_t uid;
	unsigned flags;
	char *kw;
	uint64_t size;
	bool candidate;
	bool have_hash;
	store_hash_t hash;
	uint32_t suid;        /* matched store message */
} rmsg_t;

typedef struct smsg {
	uint32_t suid;
	uint64_t size;
	store_hash_t hash;
	bool taken;
} smsg_t;

typedef struct rec {
	struct ev_loop *loop;
	store_t *st;
	const config_account_t *acct;
	uint32_t account_id;
	uint32_t fid;
	char *local;
	char *remote;
	replica_t *r;
	unsigned caps;
	replica_box_t box;
	bool done;
	int status;              /* replica status of the last step */
	rmsg_t *rm;
	size_t n_rm;
	smsg_t *sm;
	size_t n_sm;
	uint32_t *cand;
	size_t n_cand;
	replica_scan_opts_t so;
	replica_scan_sink_t ss;
	replica_body_sink_t bs;
	int engine_rc;
	engine_stats_t estats;
} rec_t;

static void wait_done(rec_t *r)
{
	while (!r->done)
		ev_run(r->loop, EVRUN_ONCE);
	r->done = false;
}

static void done_cb(int status, void *ctx)
{
	rec_t *r = ctx;
	r->status = status;
	r->done = true;
}

static void select_cb(int status, const replica_box_t *box, void *ctx)
{
	rec_t *r = ctx;
	if (box)
		r->box = *box;
	done_cb(status, ctx);
}

static void scan_msg_cb(void *ctx, const replica_msg_t *m)
{
	rec_t *r = ctx;
	r->rm = xrealloc(r->rm, (r->n_rm + 1) * sizeof(*r->rm));
	rmsg_t *x = &r->rm[r->n_rm++];
	memset(x, 0, sizeof(*x));
	x->uid = m->uid;
	x->flags = m->flags;
	x->kw = replica_kw_canon(m->keywords);
	x->size = m->size;
}

static void scan_vanished_cb(void *ctx, uint32_t lo, uint32_t hi)
{
}

typedef struct hsink {
	EVP_MD_CTX *md;
} hsink_t;

static void *h_open(void *ctx, uint64_t size)
{
	hsink_t *h = xcalloc(1, sizeof(*h));
	h->md = EVP_MD_CTX_new();
	if (!h->md || EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(h->md);
		free(h);
		return NULL;
	}
	return h;
}

static int h_write(void *ctx, void *handle, const char *data, size_t len)
{
	hsink_t *h = handle;
	return EVP_DigestUpdate(h->md, data, len) == 1 ? 0 : -1;
}

static void h_abort(void *ctx, void *handle)
{
	hsink_t *h = handle;
	EVP_MD_CTX_free(h->md);
	free(h);
}

static void h_done(void *ctx, void *handle, const replica_msg_t *m)
{
	rec_t *r = ctx;
	hsink_t *h = handle;
	unsigned int l = 0;
	store_hash_t hash;

	if (EVP_DigestFinal_ex(h->md, hash.b, &l) == 1 && l == STORE_HASH_LEN) {
		for (size_t i = 0; i < r->n_rm; i++)
			if (r->rm[i].uid == m->uid) {
				r->rm[i].hash = hash;
				r->rm[i].have_hash = true;
			}
	}
	h_abort(ctx, handle);
}

static int smsg_cb(const store_msg_t *m, void *arg)
{
	rec_t *r = arg;
	r->sm = xrealloc(r->sm, (r->n_sm + 1) * sizeof(*r->sm));
	smsg_t *s = &r->sm[r->n_sm++];
	s->suid = m->uid;
	s->size = m->size;
	s->hash = m->hash;
	s->taken = false;
	return 0;
}

typedef struct pend_ids {
	uint64_t *ids;
	size_t n;
	uint32_t fid;
} pend_ids_t;

static int pend_cb(const store_pending_t *p, void *arg)
{
	pend_ids_t *pi = arg;
	if (p->replica_id != STORE_REPLICA_REMOTE)
		return 0;
	if (p->folder_id != pi->fid && p->dst_folder_id != pi->fid)
		return 0;
	pi->ids = xrealloc(pi->ids, (pi->n + 1) * sizeof(uint64_t));
	pi->ids[pi->n++] = p->id;
	return 0;
}

/* Forget the old pairs, record the content matches and the new state. */
static int repair_fn(store_txn_t *txn, void *arg)
{
	rec_t *r = arg;
	pend_ids_t pi = { NULL, 0, r->fid };
	int rc = store_replica_drop(txn, r->fid, STORE_REPLICA_REMOTE);

	if (rc && rc != STORE_ENOTFOUND)
		return rc;
	rc = store_pending_list(txn, 0, pend_cb, &pi);
	for (size_t i = 0; rc == 0 && i < pi.n; i++) {
		rc = store_pending_del(txn, pi.ids[i]);
		if (rc == STORE_ENOTFOUND)
			rc = 0;
	}
	free(pi.ids);
	if (rc)
		return rc;
	for (size_t i = 0; i < r->n_rm; i++) {
		rmsg_t *m = &r->rm[i];
		if (!m->suid)
			continue;
		size_t n;
		char **v = replica_kw_split(m->kw, &n);
		store_pair_t p = { .replica_uid = m->uid, .store_uid = m->suid, .flags = m->flags,
				   .kw = { (const char *const *)v, n } };
		rc = store_pair_set(txn, r->fid, STORE_REPLICA_REMOTE, &p);
		replica_kw_free_vec(v, n);
		if (rc)
			return rc;
	}
	store_replica_t rs = {
		.folder_id = r->fid,
		.replica_id = STORE_REPLICA_REMOTE,
		.name = r->remote,
		.uidvalidity = r->box.counts.uidvalidity,
		.uidnext = 0,         /* next sync: full comparison */
		.highestmodseq = 0,
	};
	rc = store_replica_set(txn, &rs);
	if (rc)
		return rc;
	return store_folder_release(txn, r->fid);
}

static int release_fn(store_txn_t *txn, void *arg)
{
	rec_t *r = arg;
	return store_folder_release(txn, r->fid);
}

static void engine_cb(int rc, const engine_stats_t *st, void *ctx)
{
	rec_t *r = ctx;
	r->engine_rc = rc;
	r->estats = *st;
	r->done = true;
}

/* One sync of the folder against replica rp with the deletion guard off. */
static int sync_confirmed(rec_t *r, replica_t *rp, uint32_t replica_id, const char *rname)
{
	char prefix[256];
	engine_opts_t o = {
		.folder_id = r->fid,
		.replica_id = replica_id,
		.replica_name = rname,
		.log_prefix = prefix,
		.account = r->acct->name,
		.folder = r->local,
		.max_deletion_ratio = 1.0,
		.readonly = replica_id == STORE_REPLICA_REMOTE && r->acct->remote.readonly,
		.force_full = true,
	};
	snprintf(prefix, sizeof(prefix), "recover: acct=%s box=%s", r->acct->name, r->local);
	r->done = false;
	if (engine_sync_folder(r->st, rp, &o, engine_cb, r) != NULL || !r->done)
		wait_done(r);
	r->done = false;
	return r->engine_rc;
}

static int find_folder(rec_t *r, char *msg, size_t msglen, store_folder_t *out, char **reason)
{
	store_txn_t *txn = NULL;
	store_folder_t f;
	int rc = folders_account_id(r->st, r->acct->name, &r->account_id);

	if (rc == 0)
		rc = store_txn_begin_read(r->st, &txn);
	if (rc == 0)
		rc = store_folder_find(txn, r->account_id, r->local, &f);
	if (rc == 0) {
		*out = f;
		*reason = xstrdup(f.held_reason ? f.held_reason : "");
		store_replica_t rs;
		if (store_replica_get(txn, f.id, STORE_REPLICA_REMOTE, &rs) == 0 && rs.name && *rs.name)
			r->remote = xstrdup(rs.name);
	}
	store_txn_abort(txn);
	if (rc == STORE_ENOTFOUND)
		snprintf(msg, msglen, "account %s has no folder %s; see 'imapbridge status %s'",
			 r->acct->name, r->local, r->acct->name);
	else if (rc)
		snprintf(msg, msglen, "cannot read the store: %s", store_strerror(rc));
	return rc;
}

/* Re-pair the remote folder by content after a UIDVALIDITY change. */
static int repair_remote(rec_t *r, char *msg, size_t msglen, unsigned *paired)
{
	store_txn_t *txn = NULL;
	int rc;

	r->r->ops->select(r->r, r->remote, select_cb, r);
	wait_done(r);
	if (r->status != REPLICA_OK) {
		snprintf(msg, msglen, "cannot open %s on the server: %s", r->remote,
			 replica_strerror(r->status));
		return 1;
	}
	/* Every remote message with its size: the cheap first pass. */
	r->so.changedsince = 0;
	r->so.new_uid = 1;
	r->so.want_size = true;
	r->ss.ctx = r;
	r->ss.msg_cb = scan_msg_cb;
	r->ss.vanished_cb = scan_vanished_cb;
	r->r->ops->scan(r->r, &r->so, &r->ss, done_cb, r);
	wait_done(r);
	if (r->status != REPLICA_OK) {
		snprintf(msg, msglen, "cannot list %s on the server: %s", r->remote,
			 replica_strerror(r->status));
		return 1;
	}
	rc = store_txn_begin_read(r->st, &txn);
	if (rc == 0)
		rc = store_msg_iter(txn, r->fid, 1, smsg_cb, r);
	store_txn_abort(txn);
	if (rc) {
		snprintf(msg, msglen, "cannot read the store: %s", store_strerror(rc));
		return 1;
	}
	/* Candidates: remote messages with the size of some store message. */
	for (size_t i = 0; i < r->n_rm; i++) {
		for (size_t k = 0; k < r->n_sm; k++)
			if (r->sm[k].size == r->rm[i].size || r->rm[i].size == 0) {
				r->rm[i].candidate = true;
				break;
			}
		if (r->rm[i].candidate) {
			r->cand = xrealloc(r->cand, (r->n_cand + 1) * sizeof(uint32_t));
			r->cand[r->n_cand++] = r->rm[i].uid;
		}
	}
	/* Confirm by the SHA-256 of the bytes, in batches. */
	r->bs.ctx = r;
	r->bs.open = h_open;
	r->bs.write = h_write;
	r->bs.done = h_done;
	r->bs.abort = h_abort;
	for (size_t off = 0; off < r->n_cand; off += 200) {
		size_t n = r->n_cand - off < 200 ? r->n_cand - off : 200;
		r->r->ops->fetch(r->r, r->cand + off, n, &r->bs, done_cb, r);
		wait_done(r);
		if (r->status != REPLICA_OK && r->status != REPLICA_MSG_BAD) {
			snprintf(msg, msglen, "cannot read %s on the server: %s", r->remote,
				 replica_strerror(r->status));
			return 1;
		}
	}
	*paired = 0;
	for (size_t i = 0; i < r->n_rm; i++) {
		rmsg_t *m = &r->rm[i];
		if (!m->have_hash)
			continue;
		for (size_t k = 0; k < r->n_sm; k++) {
			smsg_t *s = &r->sm[k];
			if (!s->taken && memcmp(s->hash.b, m->hash.b, STORE_HASH_LEN) == 0) {
				s->taken = true;
				m->suid = s->suid;
				(*paired)++;
				break;
			}
		}
	}
	rc = store_write(r->st, repair_fn, r);
	if (rc) {
		snprintf(msg, msglen, "cannot record the new pairs: %s", store_strerror(rc));
		return 1;
	}
	return 0;
}

int recover_folder(struct ev_loop *loop, store_t *st, const config_account_t *acct,
		   const char *folder, char *msg, size_t msglen)
{
	rec_t r;
	store_folder_t f;
	char *reason = NULL;
	int status = 0;
	unsigned paired = 0;

	memset(&r, 0, sizeof(r));
	r.loop = loop;
	r.st = st;
	r.acct = acct;
	r.local = xstrdup(folder);
	if (find_folder(&r, msg, msglen, &f, &reason) != 0) {
		status = 1;
		goto out;
	}
	r.fid = f.id;
	if (f.state != STORE_FOLDER_HELD) {
		snprintf(msg, msglen, "folder %s of %s is not held; nothing to do", folder, acct->name);
		goto out;
	}
	if (!r.remote)
		r.remote = folders_to_remote(&acct->remote, folder, '/');
	bool uidvalidity = strstr(reason, "UIDVALIDITY") != NULL;
	bool maildir_gone = strstr(reason, "Maildir folder") != NULL;

	if (maildir_gone && acct->maildir_path) {
		maildir_opts_t mo = {
			.loop = NULL, .st = st, .account_id = r.account_id, .account = acct->name,
			.root = acct->maildir_path,
			.sep = acct->maildir_sep && acct->maildir_sep[0] ? acct->maildir_sep[0] : '/',
			.max_deletion_ratio = acct->max_deletion_ratio,
		};
		char err[512];
		if (maildir_recover_folder(&mo, r.fid, true, err, sizeof(err)) != 0) {
			snprintf(msg, msglen, "%s", err);
			status = 1;
			goto out;
		}
		snprintf(msg, msglen, "folder %s released: its Maildir folder was rebuilt from the store",
			 folder);
		goto out;
	}

	r.r = imap_replica_new(loop, acct, acct->name);
	r.r->ops->connect(r.r, &r.caps, done_cb, &r);
	wait_done(&r);
	if (r.status != REPLICA_OK) {
		snprintf(msg, msglen, "%s", imap_replica_error(r.r)[0] ? imap_replica_error(r.r)
								 : "cannot connect to the server");
		status = 1;
		goto out;
	}
	if (uidvalidity) {
		if (!r.remote) {
			snprintf(msg, msglen, "no remote name for %s; check nametrans", folder);
			status = 1;
			goto out;
		}
		if (repair_remote(&r, msg, msglen, &paired) != 0) {
			status = 1;
			goto out;
		}
	} else {
		/* Mass deletion: the operator confirms it. */
		int rc = store_write(st, release_fn, &r);
		if (rc) {
			snprintf(msg, msglen, "cannot release the folder: %s", store_strerror(rc));
			status = 1;
			goto out;
		}
	}
	/* One sync now, deletion guard off, so the result is visible at once. */
	int erc = r.remote ? sync_confirmed(&r, r.r, STORE_REPLICA_REMOTE, r.remote) : ENGINE_OK;
	engine_stats_t rst = r.estats;
	if (erc == ENGINE_OK && acct->maildir_path) {
		maildir_opts_t mo = {
			.loop = loop, .st = st, .account_id = r.account_id, .account = acct->name,
			.root = acct->maildir_path,
			.sep = acct->maildir_sep && acct->maildir_sep[0] ? acct->maildir_sep[0] : '/',
			.max_deletion_ratio = acct->max_deletion_ratio,
		};
		replica_t *md = maildir_replica_open(&mo);
		md->ops->connect(md, NULL, done_cb, &r);
		wait_done(&r);
		if (r.status == REPLICA_OK)
			erc = sync_confirmed(&r, md, STORE_REPLICA_MAILDIR, folder);
		replica_free(md);
	}
	if (erc != ENGINE_OK) {
		snprintf(msg, msglen, "folder %s released, but the sync that followed failed: %s",
			 folder, r.estats.message[0] ? r.estats.message : engine_strerror(erc));
		status = erc == ENGINE_HELD ? 2 : 1;
		goto out;
	}
	if (uidvalidity)
		snprintf(msg, msglen,
			 "folder %s released: %u messages re-paired by content, %u copied to the "
			 "store, %u copied to the server; nothing deleted",
			 folder, paired, rst.downloaded, rst.uploaded);
	else
		snprintf(msg, msglen,
			 "folder %s released: deletions accepted (%u here, %u on the server)", folder,
			 rst.deleted_store, rst.deleted_replica);
out:
	if (r.r) {
		replica_free(r.r);
		ev_run(loop, EVRUN_NOWAIT); /* let the session close */
	}
	for (size_t i = 0; i < r.n_rm; i++)
		free(r.rm[i].kw);
	free(r.rm);
	free(r.sm);
	free(r.cand);
	free(r.local);
	free(r.remote);
	free(reason);
	return status;
}
