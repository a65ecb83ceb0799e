/*
 * Messages a mail reader moved from one folder of the tree to another (mutt's
 * save, a rename across directories): the file keeps its U= and the FMD5 of
 * the folder it came from. maildir_prep_moves() (connect time, before any
 * engine job of the round has loaded its state) turns each into a store move,
 * so the message is not deleted and uploaded again:
 *
 *   1. reserve UIDs in the destination folder (its UID file, durable);
 *   2. one store transaction per destination folder: store_msg_move(), the
 *      Maildir pair moved along, and a pending MOVE for the remote copy (see
 *      maildir.h);
 *   3. rename the files to their new identity, fsync the directories.
 *
 * A crash between 2 and 3 leaves files with their old names and no pair in
 * the source folder: select() of the destination then adopts them by content
 * (maildir_prep_folder()). A file that is still in its source folder too was
 * copied, not moved: it is a new message where it landed.
 */
#include "sync/maildir_p.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"
#include "lib/util.h"

typedef struct folder_ref {
	uint32_t id;
	char *name;
	char fmd5[MAILDIR_FMD5_LEN + 1];
	maildir_scan_t *scan; /* its directory, read when first needed */
	bool scanned;
} folder_ref_t;

typedef struct folders_ctx {
	folder_ref_t *v;
	size_t n, cap;
} folders_ctx_t;

static int folders_cb(const store_folder_t *f, void *arg)
{
	folders_ctx_t *c = arg;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 32;
		c->v = xrealloc(c->v, c->cap * sizeof(*c->v));
	}
	folder_ref_t *r = &c->v[c->n++];
	memset(r, 0, sizeof(*r));
	r->id = f->id;
	r->name = xstrdup(f->name);
	maildir_fmd5(f->name, r->fmd5);
	return 0;
}

static folder_ref_t *by_md5(folders_ctx_t *fc, const char *fmd5)
{
	for (size_t i = 0; i < fc->n; i++)
		if (strcmp(fc->v[i].fmd5, fmd5) == 0)
			return &fc->v[i];
	return NULL;
}

/* Is there still a file with U=uid of folder src in its own directory? */
static bool still_there(maildir_replica_t *md, folder_ref_t *src, uint32_t uid)
{
	if (!src->scanned) {
		src->scanned = true;
		char *dir = maildir_folder_path(md->root, md->sep, src->name);
		if (dir && maildir_scan_folder(dir, &src->scan) != 0)
			src->scan = NULL;
		free(dir);
	}
	if (!src->scan)
		return false;
	const maildir_entry_t *e = maildir_scan_find_uid(src->scan, uid);
	for (; e && e < src->scan->entries + src->scan->n && e->parsed.uid == uid; e++)
		if (!e->parsed.has_fmd5 || strcmp(e->parsed.fmd5, src->fmd5) == 0)
			return true;
	return false;
}

typedef struct cand {
	const maildir_entry_t *e;
	folder_ref_t *src;
	uint32_t dst_ruid;
	bool moved;
} cand_t;

typedef struct moves_txn {
	maildir_replica_t *md;
	const char *dst_name;
	uint32_t dst_id;
	cand_t *c;
	size_t n;
	unsigned moved;
} moves_txn_t;

/* One candidate inside the transaction; STORE_ENOTFOUND means "not ours to
 * move" (no pair, or the message is gone from the store). */
static int move_one_fn(store_txn_t *txn, moves_txn_t *mt, cand_t *c)
{
	store_pair_t p, np, rp;
	store_msg_t m;
	uint32_t new_suid = 0;
	int rc =
	    store_pair_get_by_ruid(txn, c->src->id, STORE_REPLICA_MAILDIR, c->e->parsed.uid, &p);
	if (rc)
		return rc;
	uint32_t suid = p.store_uid;
	rc = store_msg_get(txn, c->src->id, suid, &m);
	if (rc)
		return rc;
	bool remote = store_pair_get_by_suid(txn, c->src->id, STORE_REPLICA_REMOTE, suid, &rp) == 0;
	uint32_t remote_ruid = remote ? rp.replica_uid : 0;
	rc = store_msg_move(txn, c->src->id, suid, mt->dst_id, &new_suid);
	if (rc == 0)
		rc = store_msg_get(txn, mt->dst_id, new_suid, &m);
	if (rc)
		return rc;
	memset(&np, 0, sizeof(np));
	np.replica_uid = c->dst_ruid;
	np.store_uid = new_suid;
	np.flags = m.flags;
	np.kw = m.kw;
	rc = store_pair_set(txn, mt->dst_id, STORE_REPLICA_MAILDIR, &np);
	if (rc == 0)
		rc = store_pair_del(txn, c->src->id, STORE_REPLICA_MAILDIR, c->e->parsed.uid);
	if (rc == 0 && remote) {
		/* For the remote side: UID MOVE of remote_ruid from the source
		 * folder to the destination, landing as store UID new_suid. An
		 * engine that does not handle it drops it and deletes plus
		 * uploads instead; nothing is lost either way. */
		store_pending_t pd;
		memset(&pd, 0, sizeof(pd));
		pd.kind = STORE_PENDING_MOVE;
		pd.folder_id = c->src->id;
		pd.replica_id = STORE_REPLICA_REMOTE;
		pd.store_uid = new_suid;
		pd.replica_uid = remote_ruid;
		pd.dst_folder_id = mt->dst_id;
		pd.hash = m.hash;
		pd.created = (int64_t)time(NULL);
		rc = store_pending_add(txn, &pd, NULL);
	}
	if (rc == 0)
		c->moved = true;
	return rc;
}

static int moves_fn(store_txn_t *txn, void *arg)
{
	moves_txn_t *mt = arg;
	int rc;
	/* store_write() may run this again: start from scratch. */
	mt->moved = 0;
	for (size_t i = 0; i < mt->n; i++)
		mt->c[i].moved = false;
	if (!mt->dst_id) {
		rc = store_folder_create(txn, mt->md->account_id, mt->dst_name, 0, &mt->dst_id);
		if (rc && rc != STORE_EEXIST)
			return rc;
	}
	for (size_t i = 0; i < mt->n; i++) {
		rc = move_one_fn(txn, mt, &mt->c[i]);
		if (rc == STORE_ENOTFOUND)
			continue;
		if (rc)
			return rc;
		mt->moved++;
	}
	return 0;
}

/* What the store holds of a folder of the tree: its id (0: none yet) and
 * its Maildir state, if any. */
typedef struct dst_info {
	uint32_t id;
	bool have_rs;
	store_replica_t rs;
} dst_info_t;

void maildir_proofs_clear(maildir_replica_t *md)
{
	for (size_t i = 0; i < md->n_proofs; i++)
		free(md->proofs[i].name);
	md->n_proofs = 0;
}

/* Folder name (directory dir) is as the sync that recorded rs left it:
 * remember that, with its UID file, for maildir_replica_unchanged(). */
static void proof_add(maildir_replica_t *md, const char *name, const char *dir,
		      const store_replica_t *rs, bool sealed)
{
	maildir_uids_t u;
	if (maildir_uids_read(dir, &u) != 0)
		return;
	if (md->n_proofs == md->cap_proofs) {
		md->cap_proofs = md->cap_proofs ? md->cap_proofs * 2 : 32;
		md->proofs = xrealloc(md->proofs, md->cap_proofs * sizeof(*md->proofs));
	}
	md->proofs[md->n_proofs++] = (md_proof_t){
		.name = xstrdup(name),
		.hms = rs->highestmodseq,
		.uidnext = rs->uidnext,
		.sealed = sealed,
		.u = u,
	};
}

/* Moves into one folder of the tree (name, its directory dir). */
static void moves_into(maildir_replica_t *md, folders_ctx_t *fc, const char *name, const char *dir,
		       const dst_info_t *d)
{
	char dmd5[MAILDIR_FMD5_LEN + 1];
	maildir_scan_t *s = NULL;
	cand_t *c = NULL;
	size_t n = 0;
	uint32_t dst_id = d->id;
	bool have_rs = d->have_rs;
	/* Before the directory is read: see maildir_folder_stamp(). */
	uint64_t stamp = maildir_folder_stamp(dir);
	/* Nothing came into a folder whose directories did not change since
	 * its last completed sync. */
	bool sealed;
	if (maildir_stamp_proves(dir, have_rs ? &d->rs : NULL, stamp, &sealed, NULL)) {
		proof_add(md, name, dir, &d->rs, sealed);
		return;
	}
	if (fc->n == 0)
		return;
	if (maildir_scan_folder_quick(dir, &s) != 0)
		return;
	maildir_fmd5(name, dmd5);
	for (size_t k = 0; k < s->n; k++) {
		const maildir_entry_t *e = &s->entries[k];
		if (e->bad || !e->parsed.uid || !e->parsed.has_fmd5 ||
		    strcmp(e->parsed.fmd5, dmd5) == 0)
			continue;
		folder_ref_t *src = by_md5(fc, e->parsed.fmd5);
		if (!src || strcmp(src->name, name) == 0 || still_there(md, src, e->parsed.uid))
			continue;
		c = xrealloc(c, (n + 1) * sizeof(*c));
		c[n].e = e;
		c[n].src = src;
		c[n].moved = false;
		n++;
	}
	if (n == 0)
		goto out;

	maildir_uids_t u;
	/* A synced folder without its UID file is held by select(); leave it. */
	if (maildir_uids_read(dir, &u) != 0 &&
	    (have_rs || maildir_uids_load(dir, 0, &u, md->nosync) != 0))
		goto out;
	for (size_t i = 0; i < n; i++)
		c[i].dst_ruid = u.uidnext++;
	if (maildir_uids_write(dir, &u, md->nosync) != 0)
		goto out;
	moves_txn_t mt = {md, name, dst_id, c, n, 0};
	int rc = store_write(md->st, moves_fn, &mt);
	if (rc) {
		log_warn(MD_PFX ": cannot record %zu moves into %s in the store: %s; the files are "
				"taken as new messages there",
			 md->account, n, name, store_strerror(rc));
		goto out;
	}
	bool renamed = false;
	for (size_t i = 0; i < n; i++) {
		if (!c[i].moved)
			continue;
		const char *sub = c[i].e->in_new ? "new" : "cur";
		char *nname = maildir_identity_name(c[i].e, c[i].dst_ruid, dmd5);
		char *from = xasprintf("%s/%s/%s", dir, sub, c[i].e->name);
		char *to = xasprintf("%s/%s/%s", dir, sub, nname);
		renamed |= maildir_rename_noreplace(from, to) == 0;
		free(from);
		free(to);
		free(nname);
	}
	if (renamed) {
		char *cur = xasprintf("%s/cur", dir), *nw = xasprintf("%s/new", dir);
		maildir_fsync_dir(cur);
		maildir_fsync_dir(nw);
		free(cur);
		free(nw);
	}
	if (mt.moved)
		log_info(MD_PFX ": %u message%s moved into %s by a mail reader; moved in the store",
			 md->account, mt.moved, mt.moved == 1 ? "" : "s", name);
out:
	free(c);
	maildir_scan_free(s);
}

void maildir_prep_moves(maildir_replica_t *md, char **names, size_t n)
{
	folders_ctx_t fc = {0};
	dst_info_t *di = xcalloc(n ? n : 1, sizeof(*di));
	store_txn_t *txn = NULL;
	maildir_proofs_clear(md);
	if (store_txn_begin_read(md->st, &txn) == 0) {
		store_folder_list(txn, md->account_id, folders_cb, &fc);
		for (size_t i = 0; i < n; i++) {
			store_folder_t f;
			if (store_folder_find(txn, md->account_id, names[i], &f) != 0)
				continue;
			di[i].id = f.id;
			di[i].have_rs =
				store_replica_get(txn, f.id, STORE_REPLICA_MAILDIR, &di[i].rs) == 0;
		}
		store_txn_abort(txn);
	}
	for (size_t i = 0; i < n; i++) {
		char *dir = maildir_folder_path(md->root, md->sep, names[i]);
		if (dir)
			moves_into(md, &fc, names[i], dir, &di[i]);
		free(dir);
	}
	free(di);
	for (size_t i = 0; i < fc.n; i++) {
		free(fc.v[i].name);
		maildir_scan_free(fc.v[i].scan);
	}
	free(fc.v);
}
