/*
 * Rebuilding a held Maildir folder from the store; see maildir.h
 * (maildir_recover_folder). Runs outside any sync job, from the control
 * socket's `folder recover` request.
 */
#include "sync/maildir_p.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/log.h"
#include "lib/util.h"

typedef struct rec_msg {
	uint32_t suid;
	store_hash_t hash;
	unsigned flags; /* STORE_F_* */
	char **kw;
	size_t n_kw;
	int64_t internaldate;
	uint32_t ruid;	      /* paired with this file UID, 0 = not yet */
	unsigned file_mflags; /* the file's flags when re-paired */
} rec_msg_t;

typedef struct rec {
	const maildir_opts_t *o;
	uint32_t folder_id;
	char *name;
	uint64_t highestmodseq;
	rec_msg_t *msgs;
	size_t n, cap;
	store_pair_t *old; /* old pairs (kw not kept) */
	size_t n_old, cap_old;
	bool release;
	maildir_uids_t uids;
} rec_t;

static int rec_msg_cb(const store_msg_t *m, void *arg)
{
	rec_t *r = arg;
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 64;
		r->msgs = xrealloc(r->msgs, r->cap * sizeof(*r->msgs));
	}
	rec_msg_t *x = &r->msgs[r->n++];
	memset(x, 0, sizeof(*x));
	x->suid = m->uid;
	x->hash = m->hash;
	x->flags = m->flags;
	x->internaldate = m->internaldate;
	x->n_kw = m->kw.n;
	x->kw = xcalloc(m->kw.n + 1, sizeof(char *));
	for (size_t i = 0; i < m->kw.n; i++)
		x->kw[i] = xstrdup(m->kw.v[i]);
	return 0;
}

static int rec_pair_cb(const store_pair_t *p, void *arg)
{
	rec_t *r = arg;
	if (r->n_old == r->cap_old) {
		r->cap_old = r->cap_old ? r->cap_old * 2 : 64;
		r->old = xrealloc(r->old, r->cap_old * sizeof(*r->old));
	}
	store_pair_t *x = &r->old[r->n_old++];
	*x = *p;
	x->kw.v = NULL;
	x->kw.n = 0;
	return 0;
}

static rec_msg_t *by_suid(rec_t *r, uint32_t suid)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->msgs[i].suid == suid)
			return &r->msgs[i];
	return NULL;
}

static rec_msg_t *by_hash_free(rec_t *r, const store_hash_t *h)
{
	for (size_t i = 0; i < r->n; i++)
		if (!r->msgs[i].ruid && memcmp(r->msgs[i].hash.b, h->b, STORE_HASH_LEN) == 0)
			return &r->msgs[i];
	return NULL;
}

static uint32_t old_suid(rec_t *r, uint32_t ruid)
{
	for (size_t i = 0; i < r->n_old; i++)
		if (r->old[i].replica_uid == ruid)
			return r->old[i].store_uid;
	return 0;
}

static unsigned store_to_mflags(unsigned f, char **kw, size_t n)
{
	unsigned m = 0;
	if (f & STORE_F_SEEN)
		m |= MAILDIR_F_SEEN;
	if (f & STORE_F_ANSWERED)
		m |= MAILDIR_F_REPLIED;
	if (f & STORE_F_FLAGGED)
		m |= MAILDIR_F_FLAGGED;
	if (f & STORE_F_DELETED)
		m |= MAILDIR_F_TRASHED;
	if (f & STORE_F_DRAFT)
		m |= MAILDIR_F_DRAFT;
	for (size_t i = 0; i < n; i++)
		if (strcmp(kw[i], "$Forwarded") == 0)
			m |= MAILDIR_F_PASSED;
	return m;
}

static int commit_fn(store_txn_t *txn, void *arg)
{
	rec_t *r = arg;
	int rc = store_replica_drop(txn, r->folder_id, STORE_REPLICA_MAILDIR);
	if (rc && rc != STORE_ENOTFOUND)
		return rc;
	for (size_t i = 0; i < r->n; i++) {
		rec_msg_t *m = &r->msgs[i];
		if (!m->ruid)
			continue;
		store_pair_t p;
		memset(&p, 0, sizeof(p));
		p.replica_uid = m->ruid;
		p.store_uid = m->suid;
		/* Agreed = what the file shows, so the store's current flags are
		 * what the next sync writes into the tree. */
		p.flags = maildir_to_replica_flags(m->file_mflags);
		const char **kv = xcalloc(m->n_kw + 1, sizeof(char *));
		size_t nk = 0;
		for (size_t k = 0; k < m->n_kw; k++)
			if (strcmp(m->kw[k], "$Forwarded") != 0)
				kv[nk++] = m->kw[k];
		if (m->file_mflags & MAILDIR_F_PASSED)
			kv[nk++] = "$Forwarded";
		p.kw.v = kv;
		p.kw.n = nk;
		rc = store_pair_set(txn, r->folder_id, STORE_REPLICA_MAILDIR, &p);
		free(kv);
		if (rc)
			return rc;
	}
	store_replica_t rs;
	memset(&rs, 0, sizeof(rs));
	rs.folder_id = r->folder_id;
	rs.replica_id = STORE_REPLICA_MAILDIR;
	rs.name = r->name;
	rs.uidvalidity = r->uids.uidvalidity;
	rs.uidnext = r->uids.uidnext;
	rs.pushed_modseq = 0; /* compare everything once more at the next sync */
	rc = store_replica_set(txn, &rs);
	if (rc)
		return rc;
	if (r->release)
		rc = store_folder_release(txn, r->folder_id);
	return rc;
}

int maildir_recover_folder(const maildir_opts_t *o, uint32_t folder_id, bool release_hold,
			   char *err, size_t errlen)
{
	rec_t r;
	memset(&r, 0, sizeof(r));
	r.o = o;
	r.folder_id = folder_id;
	r.release = release_hold;
	char *dir = NULL;
	maildir_scan_t *s = NULL;
	maildir_batch_t *b = maildir_batch_new();
	int ret = -1, rc;
	uint64_t counter = 0;
	char fmd5[MAILDIR_FMD5_LEN + 1];

	store_txn_t *txn = NULL;
	store_folder_t f;
	rc = store_txn_begin_read(o->st, &txn);
	if (rc == 0)
		rc = store_folder_get(txn, folder_id, &f);
	if (rc == 0) {
		r.name = xstrdup(f.name);
		r.highestmodseq = f.highestmodseq;
		rc = store_msg_iter(txn, folder_id, 1, rec_msg_cb, &r);
	}
	if (rc == 0)
		rc = store_pair_iter(txn, folder_id, STORE_REPLICA_MAILDIR, 1, rec_pair_cb, &r);
	store_txn_abort(txn);
	if (rc) {
		snprintf(err, errlen, "cannot read folder %u from the store: %s", folder_id,
			 store_strerror(rc));
		goto out;
	}
	dir = maildir_folder_path(o->root, o->sep, r.name);
	if (!dir) {
		snprintf(err, errlen, "folder \"%s\" has no Maildir directory name", r.name);
		goto out;
	}
	maildir_fmd5(r.name, fmd5);
	static const char *const subs[] = {"cur", "new", "tmp"};
	for (size_t i = 0; i < 3; i++) {
		char *p = xasprintf("%s/%s", dir, subs[i]);
		rc = ib_mkdirs(p, 0700);
		free(p);
		if (rc) {
			snprintf(err, errlen, "cannot create %s/%s: %s", dir, subs[i],
				 strerror(-rc));
			goto out;
		}
	}
	/* The folder is rebuilt: no earlier seal may vouch for it. */
	maildir_seal_remove(dir);
	rc = maildir_uids_load(dir, 0, &r.uids, o->nosync);
	if (rc == 0)
		rc = maildir_scan_folder(dir, &s);
	if (rc) {
		snprintf(err, errlen, "cannot read %s: %s", dir, strerror(-rc));
		goto out;
	}

	/* Re-pair the files that are still there: by U= and content first,
	 * then by content alone. */
	for (size_t i = 0; i < s->n; i++) {
		maildir_entry_t *e = &s->entries[i];
		if (e->bad)
			continue;
		const char *sub = e->in_new ? "new" : "cur";
		char *path = xasprintf("%s/%s/%s", dir, sub, e->name);
		store_hash_t h;
		if (maildir_hash_file(path, &h) != 0) {
			free(path);
			continue;
		}
		const maildir_name_t *p = &e->parsed;
		bool own = p->uid && (!p->has_fmd5 || strcmp(p->fmd5, fmd5) == 0);
		rec_msg_t *m = NULL;
		if (own) {
			rec_msg_t *c = by_suid(&r, old_suid(&r, p->uid));
			if (c && !c->ruid && memcmp(c->hash.b, h.b, STORE_HASH_LEN) == 0)
				m = c;
		}
		if (!m)
			m = by_hash_free(&r, &h);
		if (!m) {
			free(path);
			continue; /* not in the store: the next sync uploads it */
		}
		bool uid_taken = false;
		for (size_t k = 0; k < r.n && own; k++)
			uid_taken |= r.msgs[k].ruid == p->uid;
		if (own && !uid_taken && p->uid < r.uids.uidnext) {
			m->ruid = p->uid;
		} else {
			m->ruid = r.uids.uidnext++;
			char *nn = p->has_info ? maildir_name_build(e->name, p->base_len, m->ruid,
								    fmd5, p->flags, p->extra)
					       : xasprintf("%.*s,U=%u,FMD5=%s", (int)p->base_len,
							   e->name, m->ruid, fmd5);
			char *sd = xasprintf("%s/%s", dir, sub);
			if (maildir_uids_write(dir, &r.uids, o->nosync) != 0 ||
			    maildir_batch_rename(b, sd, e->name, sd, nn) != 0)
				m->ruid = 0;
			free(sd);
			free(nn);
		}
		m->file_mflags = p->flags;
		free(path);
	}

	/* Write what is missing. */
	txn = NULL;
	rc = store_txn_begin_read(o->st, &txn);
	for (size_t i = 0; rc == 0 && i < r.n; i++) {
		rec_msg_t *m = &r.msgs[i];
		if (m->ruid)
			continue;
		const void *data;
		size_t len;
		rc = store_blob_get(txn, &m->hash, &data, &len);
		if (rc)
			break;
		unsigned mf = store_to_mflags(m->flags, m->kw, m->n_kw);
		uint32_t ruid = r.uids.uidnext++;
		char *base = maildir_name_unique(&counter);
		char *name = mf ? maildir_name_build(base, strlen(base), ruid, fmd5, mf, NULL)
				: xasprintf("%s,U=%u,FMD5=%s", base, ruid, fmd5);
		int w = maildir_batch_write(b, dir, mf ? "cur" : "new", name, data, len,
					    (time_t)m->internaldate);
		free(base);
		free(name);
		if (w != 0) {
			snprintf(err, errlen, "cannot write into %s/tmp: %s", dir,
				 maildir_strerror(w));
			store_txn_abort(txn);
			goto out;
		}
		m->ruid = ruid;
		m->file_mflags = mf;
	}
	store_txn_abort(txn);
	if (rc) {
		snprintf(err, errlen, "cannot read messages of %s from the store: %s", r.name,
			 store_strerror(rc));
		goto out;
	}
	rc = maildir_uids_write(dir, &r.uids, o->nosync);
	if (rc == 0)
		rc = maildir_batch_flush(b, NULL);
	if (rc) {
		snprintf(err, errlen, "cannot write to %s: %s", dir, maildir_strerror(rc));
		goto out;
	}
	rc = store_write(o->st, commit_fn, &r);
	if (rc) {
		snprintf(err, errlen, "cannot record the recovered folder %s in the store: %s",
			 r.name, store_strerror(rc));
		goto out;
	}
	ret = 0;
out:
	maildir_batch_free(b);
	maildir_scan_free(s);
	for (size_t i = 0; i < r.n; i++) {
		for (size_t k = 0; k < r.msgs[i].n_kw; k++)
			free(r.msgs[i].kw[k]);
		free(r.msgs[i].kw);
	}
	free(r.msgs);
	free(r.old);
	free(r.name);
	free(dir);
	return ret;
}
