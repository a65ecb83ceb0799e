/*
 * Reconciling the Maildir tree before the engine looks at it (see maildir.h):
 * the per-folder UID file, identities for new files, adoption of files by
 * content after a crash, moves between folders, and the recovery of a held
 * folder.
 */
#include "sync/maildir_p.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "lib/log.h"
#include "lib/util.h"

/* ------------------------------------------------------------- UID file */

int maildir_uids_read(const char *dir, maildir_uids_t *out)
{
	char *path = xasprintf("%s/%s", dir, MAILDIR_UIDS_FILE);
	char line[64];
	int got = maildir_read_own(path, line, sizeof(line));
	free(path);
	if (got < 0)
		return got;
	unsigned v = 0, n = 0;
	if (sscanf(line, "%u %u", &v, &n) != 2 || v == 0 || n == 0)
		return -EINVAL;
	out->uidvalidity = v;
	out->uidnext = n;
	return 0;
}

static int uids_format(const maildir_uids_t *u, char line[64])
{
	return snprintf(line, 64, "%u %u\n", u->uidvalidity, u->uidnext);
}

int maildir_uids_stage(maildir_batch_t *b, const char *dir, const maildir_uids_t *u)
{
	char line[64];
	int len = uids_format(u, line);
	return maildir_batch_replace(b, dir, MAILDIR_UIDS_FILE, line, (size_t)len);
}

int maildir_uids_write(const char *dir, const maildir_uids_t *u, bool nosync)
{
	char *path = xasprintf("%s/%s", dir, MAILDIR_UIDS_FILE);
	char *tmp = xasprintf("%s.tmp", path);
	char line[64];
	int len = uids_format(u, line);
	int fd = -1;
	int rc = maildir_create_own(tmp, line, (size_t)len, &fd);
	if (rc != 0)
		goto out;
	if (!nosync && fsync(fd) != 0) {
		rc = errno ? -errno : -EIO;
		close(fd);
		goto out;
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		rc = -errno;
		goto out;
	}
	rc = nosync ? 0 : maildir_fsync_dir(dir);
out:
	if (rc != 0)
		unlink(tmp);
	free(tmp);
	free(path);
	return rc;
}

int maildir_uids_load(const char *dir, uint32_t avoid, maildir_uids_t *out, bool nosync)
{
	int rc = maildir_uids_read(dir, out);
	if (rc != -ENOENT && rc != -EINVAL)
		return rc;
	/* A fresh UIDVALIDITY: never the one the store remembers, so a folder
	 * whose UID file was lost is noticed (and held) by the engine. */
	uint32_t v = (uint32_t)time(NULL);
	if (v == avoid || v == 0)
		v++;
	out->uidvalidity = v;
	/* Files that kept their U= keep it: recovery then re-pairs them by U=. */
	out->uidnext = 1;
	maildir_scan_t *s = NULL;
	if (maildir_scan_folder(dir, &s) == 0) {
		for (size_t i = 0; i < s->n; i++)
			if (s->entries[i].parsed.uid >= out->uidnext)
				out->uidnext = s->entries[i].parsed.uid + 1;
		maildir_scan_free(s);
	}
	return maildir_uids_write(dir, out, nosync);
}

int maildir_hash_file(const char *path, store_hash_t *out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int rc = 0;
	char buf[65536];
	ssize_t got;
	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		rc = -ENOMEM;
		goto out;
	}
	while ((got = read(fd, buf, sizeof(buf))) > 0)
		EVP_DigestUpdate(ctx, buf, (size_t)got);
	if (got < 0) {
		rc = -errno;
		goto out;
	}
	unsigned int len = 0;
	EVP_DigestFinal_ex(ctx, out->b, &len);
out:
	EVP_MD_CTX_free(ctx);
	close(fd);
	return rc;
}

/* ----------------------------------------------------- one folder's files */

typedef struct pair_ref {
	uint32_t ruid, suid;
	bool present;
} pair_ref_t;

typedef struct pairs_ctx {
	pair_ref_t *v;
	size_t n, cap;
} pairs_ctx_t;

static int pairs_cb(const store_pair_t *p, void *arg)
{
	pairs_ctx_t *c = arg;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		c->v = xrealloc(c->v, c->cap * sizeof(*c->v));
	}
	c->v[c->n].ruid = p->replica_uid;
	c->v[c->n].suid = p->store_uid;
	c->v[c->n].present = false;
	c->n++;
	return 0;
}

static void load_pairs(store_t *st, uint32_t folder_id, pairs_ctx_t *pc)
{
	store_txn_t *txn = NULL;
	if (!folder_id || store_txn_begin_read(st, &txn) != 0)
		return;
	store_pair_iter(txn, folder_id, STORE_REPLICA_MAILDIR, 1, pairs_cb, pc);
	store_txn_abort(txn);
}

static pair_ref_t *pair_ref_find(pairs_ctx_t *pc, uint32_t ruid)
{
	size_t lo = 0, hi = pc->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (pc->v[mid].ruid < ruid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < pc->n && pc->v[lo].ruid == ruid ? &pc->v[lo] : NULL;
}

char *maildir_identity_name(const maildir_entry_t *e, uint32_t uid, const char *fmd5)
{
	const maildir_name_t *p = &e->parsed;
	if (p->has_info)
		return maildir_name_build(e->name, p->base_len, uid, fmd5, p->flags, p->extra);
	return xasprintf("%.*s,U=%u,FMD5=%s", (int)p->base_len, e->name, uid, fmd5);
}

static void md_msg_push(maildir_replica_t *md, uint32_t uid, char *name, bool in_new,
			unsigned mflags, uint64_t size, time_t mtime)
{
	if (md->n_msgs == md->cap_msgs) {
		md->cap_msgs = md->cap_msgs ? md->cap_msgs * 2 : 64;
		md->msgs = xrealloc(md->msgs, md->cap_msgs * sizeof(*md->msgs));
	}
	md_msg_t *m = &md->msgs[md->n_msgs++];
	m->uid = uid;
	m->name = name;
	m->in_new = in_new;
	m->mflags = mflags;
	m->size = size;
	m->mtime = mtime;
}

static int msg_cmp(const void *a, const void *b)
{
	const md_msg_t *x = a, *y = b;
	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

/* Does the store message of pair p have exactly the bytes of the file? */
static bool same_content(maildir_replica_t *md, const pair_ref_t *p, const store_hash_t *h)
{
	store_txn_t *txn = NULL;
	store_msg_t m;
	bool same = false;
	if (store_txn_begin_read(md->st, &txn) != 0)
		return false;
	if (store_msg_get(txn, md->folder_id, p->suid, &m) == 0)
		same = memcmp(m.hash.b, h->b, STORE_HASH_LEN) == 0;
	store_txn_abort(txn);
	return same;
}

/* Remove what an interrupted run of ours left in tmp/: only files named by
 * us for this folder (they are copies of store messages); anything else in
 * tmp/ belongs to another program. */
static void clean_tmp(maildir_replica_t *md)
{
	char *tdir = xasprintf("%s/tmp", md->dir);
	DIR *d = opendir(tdir);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			maildir_name_t n;
			if (!maildir_name_parse(de->d_name, &n) || !n.uid || !n.has_fmd5 ||
			    strcmp(n.fmd5, md->fmd5) != 0)
				continue;
			unlinkat(dirfd(d), de->d_name, 0);
		}
		closedir(d);
	}
	free(tdir);
}

int maildir_prep_folder(maildir_replica_t *md)
{
	maildir_scan_t *s = NULL;
	clean_tmp(md);
	int rc = maildir_scan_folder_quick(md->dir, &s);
	if (rc != 0)
		return rc;
	pairs_ctx_t pc = {0};
	load_pairs(md->st, md->folder_id, &pc);
	size_t *unknown = xmalloc((s->n ? s->n : 1) * sizeof(size_t));
	size_t n_unknown = 0;
	uint32_t last_uid = 0;

	for (size_t i = 0; i < s->n; i++) {
		maildir_entry_t *e = &s->entries[i];
		const maildir_name_t *p = &e->parsed;
		const char *sub = e->in_new ? "new" : "cur";
		if (e->bad) {
			log_warn(MD_PFX " box=%s: skipping %s/%s/%s: %s; it is left in place",
				 md->account, md->folder, md->dir, sub, e->name, e->bad);
			continue;
		}
		bool own = p->uid && p->uid < md->uids.uidnext &&
			   (!p->has_fmd5 || strcmp(p->fmd5, md->fmd5) == 0) && p->uid != last_uid;
		if (own) {
			last_uid = p->uid;
			pair_ref_t *pr = pair_ref_find(&pc, p->uid);
			if (pr)
				pr->present = true;
			md_msg_push(md, p->uid, e->name, e->in_new, p->flags, (uint64_t)e->size,
				    e->mtime);
			e->name = NULL; /* moved into msgs */
			continue;
		}
		unknown[n_unknown++] = i;
	}

	/* Files without an identity of this folder: check, adopt or number. */
	size_t n_missing = 0;
	for (size_t i = 0; i < pc.n; i++)
		n_missing += !pc.v[i].present;
	bool renamed = false;
	char **newnames = xcalloc(n_unknown ? n_unknown : 1, sizeof(char *));
	uint32_t *newuids = xcalloc(n_unknown ? n_unknown : 1, sizeof(uint32_t));
	for (size_t k = 0; k < n_unknown; k++) {
		maildir_entry_t *e = &s->entries[unknown[k]];
		const char *sub = e->in_new ? "new" : "cur";
		char *path = xasprintf("%s/%s/%s", md->dir, sub, e->name);
		const char *why = maildir_check_message(path);
		if (why) {
			log_warn(MD_PFX " box=%s: skipping %s: %s; it is left in place",
				 md->account, md->folder, path, why);
			free(path);
			continue;
		}
		uint32_t uid = 0;
		if (n_missing) {
			/* After a crash between a store commit and a rename, the file
			 * of a paired message can carry a stale name: same bytes. */
			store_hash_t h;
			if (maildir_hash_file(path, &h) == 0)
				for (size_t i = 0; i < pc.n && !uid; i++)
					if (!pc.v[i].present && same_content(md, &pc.v[i], &h)) {
						uid = pc.v[i].ruid;
						pc.v[i].present = true;
						n_missing--;
					}
		}
		if (!uid) {
			uid = md->uids.uidnext++;
			md->uids_dirty = true;
		}
		newuids[k] = uid;
		newnames[k] = maildir_identity_name(e, uid, md->fmd5);
		free(path);
	}
	md->n_paired = pc.n;
	md->n_vanished = n_missing;
	/* The UID file first: a name must never carry a UID that could be
	 * handed out again after a crash. */
	if (md->uids_dirty) {
		rc = maildir_uids_write(md->dir, &md->uids, md->nosync);
		if (rc != 0)
			goto out;
		md->uids_dirty = false;
	}
	for (size_t k = 0; k < n_unknown; k++) {
		if (!newnames[k])
			continue;
		maildir_entry_t *e = &s->entries[unknown[k]];
		const char *sub = e->in_new ? "new" : "cur";
		char *from = xasprintf("%s/%s/%s", md->dir, sub, e->name);
		char *to = xasprintf("%s/%s/%s", md->dir, sub, newnames[k]);
		int r = maildir_rename_noreplace(from, to);
		if (r == 0) {
			renamed = true;
			md_msg_push(md, newuids[k], newnames[k], e->in_new, e->parsed.flags,
				    (uint64_t)e->size, e->mtime);
			newnames[k] = NULL;
			log_trace(LOG_CAT_MAILDIR, MD_PFX " box=%s: %s is new: UID %u", md->account,
				  md->folder, from, newuids[k]);
		} else if (r != -ENOENT) {
			log_warn(MD_PFX " box=%s: cannot rename %s: %s; skipped", md->account,
				 md->folder, from, maildir_strerror(r));
		}
		free(from);
		free(to);
	}
	if (renamed) {
		char *c = xasprintf("%s/cur", md->dir), *n = xasprintf("%s/new", md->dir);
		int r1 = maildir_fsync_dir(c), r2 = maildir_fsync_dir(n);
		free(c);
		free(n);
		if (r1 != 0 || (r2 != 0 && r2 != -ENOENT)) {
			rc = r1 ? r1 : r2;
			goto out;
		}
	}
	if (md->n_msgs > 1)
		qsort(md->msgs, md->n_msgs, sizeof(*md->msgs), msg_cmp);
out:
	for (size_t k = 0; k < n_unknown; k++)
		free(newnames[k]);
	free(newnames);
	free(newuids);
	free(unknown);
	free(pc.v);
	maildir_scan_free(s);
	return rc;
}

typedef struct newf_ctx {
	maildir_replica_t *md;
	char **names;
	size_t n;
	unsigned created;
} newf_ctx_t;

static int newf_fn(store_txn_t *txn, void *arg)
{
	newf_ctx_t *c = arg;
	c->created = 0;
	for (size_t i = 0; i < c->n; i++) {
		store_folder_t f;
		uint32_t id;
		if (store_folder_find(txn, c->md->account_id, c->names[i], &f) == 0)
			continue;
		int rc = store_folder_create(txn, c->md->account_id, c->names[i], 0, &id);
		if (rc && rc != STORE_EEXIST)
			return rc;
		c->created++;
	}
	return 0;
}

/* True if every folder in names is known to the store. */
static bool all_known(maildir_replica_t *md, char **names, size_t n)
{
	store_txn_t *txn = NULL;
	bool all = true;
	if (store_txn_begin_read(md->st, &txn) != 0)
		return false;
	for (size_t i = 0; i < n && all; i++) {
		store_folder_t f;
		all = store_folder_find(txn, md->account_id, names[i], &f) == 0;
	}
	store_txn_abort(txn);
	return all;
}

void maildir_prep_new_folders(maildir_replica_t *md, char **names, size_t n)
{
	newf_ctx_t c = {md, names, n, 0};
	if (n == 0 || all_known(md, names, n))
		return;
	int rc = store_write(md->st, newf_fn, &c);
	if (rc)
		log_err(MD_PFX ": cannot record new folders of the Maildir tree in the store: %s",
			md->account, store_strerror(rc));
	else if (c.created)
		log_info(MD_PFX ": %u new folder%s in the Maildir tree", md->account, c.created,
			 c.created == 1 ? "" : "s");
}
