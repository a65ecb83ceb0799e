/*
 * The Maildir replica's operations (sync/replica.h); see maildir.h. The tree
 * reconciliation that runs at connect() and select() is in maildir_prep.c.
 */
#include "sync/maildir_p.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "sync/engine.h"
#include "sync/worker.h"

#define KW_FORWARDED "$Forwarded"

static const replica_ops_t maildir_ops;

char *maildir_folder_path(const char *root, char sep, const char *folder)
{
	char *rel = maildir_folder_to_dir(folder, sep);
	if (!rel)
		return NULL;
	char *p = xasprintf("%s/%s", root, rel);
	free(rel);
	return p;
}

unsigned maildir_to_replica_flags(unsigned m)
{
	unsigned r = 0;
	if (m & MAILDIR_F_SEEN)
		r |= REPLICA_F_SEEN;
	if (m & MAILDIR_F_REPLIED)
		r |= REPLICA_F_ANSWERED;
	if (m & MAILDIR_F_FLAGGED)
		r |= REPLICA_F_FLAGGED;
	if (m & MAILDIR_F_TRASHED)
		r |= REPLICA_F_DELETED;
	if (m & MAILDIR_F_DRAFT)
		r |= REPLICA_F_DRAFT;
	return r;
}

unsigned maildir_from_replica_flags(unsigned r, unsigned old)
{
	unsigned m = old & MAILDIR_F_PASSED;
	if (r & REPLICA_F_SEEN)
		m |= MAILDIR_F_SEEN;
	if (r & REPLICA_F_ANSWERED)
		m |= MAILDIR_F_REPLIED;
	if (r & REPLICA_F_FLAGGED)
		m |= MAILDIR_F_FLAGGED;
	if (r & REPLICA_F_DELETED)
		m |= MAILDIR_F_TRASHED;
	if (r & REPLICA_F_DRAFT)
		m |= MAILDIR_F_DRAFT;
	return m;
}

/* ------------------------------------------------------- deferred callbacks */

static void md_really_free(maildir_replica_t *md);
static void deliver(maildir_replica_t *md);
static void enter(maildir_replica_t *md);
static bool leave(maildir_replica_t *md);

/* Run the flush timer now: it delivers what is durable and starts the next
 * flush. */
static void kick(maildir_replica_t *md)
{
	if (md->loop && !ev_is_active(&md->flush_w)) {
		ev_timer_set(&md->flush_w, 0., 0.);
		ev_timer_start(md->loop, &md->flush_w);
	}
}

static void queue_push(maildir_replica_t *md, const md_deferred_t *d)
{
	if (md->q_len == md->q_cap) {
		md->q_cap = md->q_cap ? md->q_cap * 2 : 64;
		md->q = xrealloc(md->q, md->q_cap * sizeof(*md->q));
	}
	md->q[md->q_len++] = *d;
	md->q[md->q_len - 1].gen = md->gen;
	md->dirty = true;
	kick(md);
}

static maildir_batch_t *batch_new(const maildir_replica_t *md)
{
	maildir_batch_t *b = maildir_batch_new();
	if (md->nosync)
		maildir_batch_nosync(b);
	if (md->worker)
		maildir_batch_lazy(b);
	return b;
}

/* Take the current batch (with the UID file staged in it, to be durable
 * with the messages and in place before any of them, see maildir_write.c)
 * for a flush of generation md->gen; later operations go to a new batch and
 * generation. *rc: an error staging the UID file (the batch is then not to
 * be flushed). */
static maildir_batch_t *flush_take(maildir_replica_t *md, unsigned *gen, int *rc)
{
	*rc = 0;
	if (md->uids_dirty && md->dir) {
		*rc = maildir_uids_stage(md->batch, md->dir, &md->uids);
		if (*rc == 0)
			md->uids_dirty = false;
	}
	maildir_batch_t *b = md->batch;
	md->batch = batch_new(md);
	*gen = md->gen++;
	md->dirty = false;
	return b;
}

/* Flush of generation gen ended with rc: settle its operations' outcome. */
static void flush_end(maildir_replica_t *md, maildir_batch_t *b, unsigned gen, int rc)
{
	maildir_seal_drain(md->seal);
	if (rc != 0) {
		log_err(MD_PFX " box=%s: cannot write to %s: %s; the changes are retried at the "
			       "next sync",
			md->account, md->folder ? md->folder : "-", md->dir ? md->dir : md->root,
			maildir_strerror(rc));
		/* Its callbacks report failure; what did not make it is removed
		 * with the batch, so no file appears later behind the engine's
		 * back. */
		for (size_t i = md->q_head; i < md->q_len; i++)
			if (md->q[i].gen <= gen)
				md->q[i].err = rc;
		md->uids_dirty = md->dir != NULL; /* its staged copy may be gone */
		maildir_seal_spoil(md->seal, md->seal_h);
	}
	maildir_batch_free(b);
	md->flushed_gen = gen;
}

/* The worker's job: only the batch it was handed. */
static int flush_job(void *arg)
{
	maildir_replica_t *md = arg;
	return maildir_batch_flush(md->inflight, NULL);
}

static void flush_batch(maildir_replica_t *md, bool now);

/* From the loop, with a worker: deliver what is durable, then start the
 * flush of what came meanwhile. */
static void pump(maildir_replica_t *md)
{
	enter(md);
	deliver(md);
	if (leave(md))
		flush_batch(md, false);
}

static void flush_job_done(int rc, void *arg)
{
	maildir_replica_t *md = arg;
	maildir_batch_t *b = md->inflight;
	md->inflight = NULL;
	flush_end(md, b, md->inflight_gen, rc);
	if (md->quiescing) {
		kick(md); /* an operation waits for the tree: deliver later */
		return;
	}
	pump(md); /* from the loop */
}

/* Wait for the worker's flush, if one runs: the tree is then as the
 * operations so far left it (their callbacks still wait for delivery). */
static void quiesce(maildir_replica_t *md)
{
	if (!md->worker)
		return;
	md->quiescing = true;
	worker_wait(md->worker);
	md->quiescing = false;
}

/* Flush the current batch: on the worker when there is one (done later,
 * from the loop), else now. */
static void flush_batch(maildir_replica_t *md, bool now)
{
	if (!md->dirty)
		return;
	if (md->worker && worker_busy(md->worker)) {
		if (!now)
			return; /* flush_job_done() comes back for it */
		quiesce(md);
	}
	unsigned gen;
	int rc;
	maildir_batch_t *b = flush_take(md, &gen, &rc);
	if (rc == 0 && md->worker && !now) {
		md->inflight = b;
		md->inflight_gen = gen;
		worker_start(md->worker, flush_job, flush_job_done, md);
		return;
	}
	if (rc == 0)
		rc = maildir_batch_flush(b, NULL);
	flush_end(md, b, gen, rc);
	if (!now)
		kick(md); /* from the timer: deliver what just failed */
}

/* Deliver the callbacks whose batch is durable, in issue order. A callback
 * may free the session: the caller checks with leave() afterwards. */
static void deliver(maildir_replica_t *md)
{
	while (md->q_head < md->q_len && md->q[md->q_head].gen <= md->flushed_gen && !md->dead) {
		md_deferred_t d = md->q[md->q_head++];
		if (d.uid_cb) {
			/* A clean flush placed every file it was given; after a
			 * failed one, each file is where it is or is not. */
			int st = REPLICA_OK;
			if (!d.final_path || (d.err && access(d.final_path, F_OK) != 0))
				st = REPLICA_MSG_BAD;
			d.uid_cb(st, st == REPLICA_OK ? d.uid : 0, d.ctx);
		} else if (d.done) {
			d.done(d.err ? REPLICA_MSG_BAD : REPLICA_OK, d.ctx);
		}
		free(d.final_path);
	}
	if (md->q_head == md->q_len)
		md->q_head = md->q_len = 0;
}

/* Callbacks may call replica_free(): md_free() then only marks the session
 * dead while a delivery is on the stack, and the outermost one frees it. */
static void enter(maildir_replica_t *md)
{
	md->delivering++;
}

/* Returns false when the session is gone (or going): do not touch it. */
static bool leave(maildir_replica_t *md)
{
	md->delivering--;
	if (!md->dead)
		return true;
	if (md->delivering == 0)
		md_really_free(md);
	return false;
}

/* Flush and deliver everything queued: before any operation that is not
 * itself deferred, so callbacks keep their issue order. Returns false when
 * the session was freed by a callback. */
static bool settle(maildir_replica_t *md)
{
	quiesce(md);
	if (md->q_len == md->q_head && !md->dirty)
		return !md->dead;
	enter(md);
	flush_batch(md, true);
	deliver(md);
	return leave(md);
}

/* With a worker, the timer delivers what is durable and starts the next
 * flush in the background; the operations that need the tree settled call
 * settle() themselves. */
static void flush_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	maildir_replica_t *md = t->data;
	(void)revents;
	ev_timer_stop(loop, t);
	if (md->worker)
		pump(md);
	else
		settle(md);
}

/* Without a loop every deferred op settles at once. */
static void maybe_settle_now(maildir_replica_t *md)
{
	if (!md->loop)
		settle(md);
}

/* ----------------------------------------------------------- open folder */

static void close_folder(maildir_replica_t *md)
{
	if (md->seal_h >= 0) {
		maildir_seal_rec_t r = {md->stamp, 0, md->sel_uidnext, md->uids.uidnext};
		maildir_seal_end(md->seal, md->seal_h, &r, md->sealed ? &md->seal_old : NULL);
	}
	md->seal_h = -1;
	md->sealed = false;
	md->same = false;
	for (size_t i = 0; i < md->n_msgs; i++)
		free(md->msgs[i].name);
	md->n_msgs = 0;
	free(md->folder);
	free(md->dir);
	md->folder = md->dir = NULL;
	md->folder_id = 0;
	md->selected = false;
	md->uids_dirty = false;
	md->loaded = false;
	md->stamp = 0;
}

static md_msg_t *msg_find(maildir_replica_t *md, uint32_t uid)
{
	size_t lo = 0, hi = md->n_msgs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (md->msgs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < md->n_msgs && md->msgs[lo].uid == uid)
		return &md->msgs[lo];
	return NULL;
}

static void msg_remove(maildir_replica_t *md, md_msg_t *m)
{
	size_t i = (size_t)(m - md->msgs);
	free(m->name);
	memmove(&md->msgs[i], &md->msgs[i + 1], (md->n_msgs - i - 1) * sizeof(*m));
	md->n_msgs--;
}

/* Appended UIDs only grow, so appending keeps msgs sorted. */
static void msg_add(maildir_replica_t *md, uint32_t uid, char *name, bool in_new, unsigned mflags,
		    uint64_t size, time_t mtime)
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

/* Find m's file again after a mail reader renamed it (same U= and folder
 * hash, any flags, cur/ or new/); updates m. */
static bool refind(maildir_replica_t *md, md_msg_t *m)
{
	maildir_scan_t *s = NULL;
	bool found = false;
	if (maildir_scan_folder_quick(md->dir, &s) != 0)
		return false;
	for (size_t i = 0; i < s->n && !found; i++) {
		maildir_entry_t *e = &s->entries[i];
		if (e->parsed.uid != m->uid ||
		    (e->parsed.has_fmd5 && strcmp(e->parsed.fmd5, md->fmd5) != 0))
			continue;
		free(m->name);
		m->name = e->name;
		e->name = NULL;
		m->in_new = e->in_new;
		m->mflags = e->parsed.flags;
		found = true;
	}
	maildir_scan_free(s);
	return found;
}

static char *msg_path(const maildir_replica_t *md, const md_msg_t *m)
{
	return xasprintf("%s/%s/%s", md->dir, m->in_new ? "new" : "cur", m->name);
}

/* ------------------------------------------------------------- operations */

static bool any_maildir_state(maildir_replica_t *md);
static bool ensure_loaded(maildir_replica_t *md);

static void md_connect(replica_t *r, unsigned *caps, replica_done_cb cb, void *ctx)
{
	maildir_replica_t *md = (maildir_replica_t *)r;
	if (!settle(md))
		return;
	maildir_proofs_clear(md);
	struct stat st;
	if (stat(md->root, &st) != 0) {
		/* First run: make the tree. A tree that existed and is gone is
		 * not recreated: its folders are held one by one (select). */
		if (!any_maildir_state(md) && ib_mkdirs(md->root, 0700) == 0) {
			log_info(MD_PFX ": created the Maildir tree %s", md->account, md->root);
		} else {
			log_err(MD_PFX
				": the Maildir tree %s is missing; nothing will be deleted. "
				"If the disk is not mounted, mount it; to rebuild the tree run "
				"'imapbridge folder recover %s FOLDER' for each folder",
				md->account, md->root, md->account);
		}
	} else if (!S_ISDIR(st.st_mode)) {
		log_err(MD_PFX ": %s is not a directory; point maildir.path to a directory",
			md->account, md->root);
		cb(REPLICA_BAD, ctx);
		return;
	} else {
		char **names = NULL;
		size_t n = 0;
		if (maildir_list_folders(md->root, md->sep, &names, &n) == 0) {
			maildir_prep_new_folders(md, names, n);
			maildir_prep_moves(md, names, n);
		}
		maildir_folders_free(names, n);
	}
	if (caps)
		*caps = REPLICA_CAP_UIDPLUS | REPLICA_CAP_MOVE | REPLICA_CAP_KEYWORDS;
	cb(REPLICA_OK, ctx);
}

static void md_list_folders(replica_t *r, replica_folders_cb cb, void *ctx)
{
	maildir_replica_t *md = (maildir_replica_t *)r;
	if (!settle(md))
		return;
	char **names = NULL;
	size_t n = 0;
	int rc = maildir_list_folders(md->root, md->sep, &names, &n);
	if (rc != 0 && rc != -ENOENT) {
		log_err(MD_PFX ": cannot read the Maildir tree %s: %s", md->account, md->root,
			strerror(-rc));
		cb(REPLICA_BAD, NULL, 0, ctx);
		return;
	}
	replica_folder_t *f = xcalloc(n ? n : 1, sizeof(*f));
	for (size_t i = 0; i < n; i++) {
		f[i].name = names[i];
		f[i].sep = '/';
	}
	cb(REPLICA_OK, f, n, ctx);
	free(f);
	maildir_folders_free(names, n);
}

/* The Maildir state the store remembers for folder (by store name); pushed
 * (may be NULL): whether the store's copy of the folder is unchanged since
 * its last sync with this tree. */
static bool stored_state(maildir_replica_t *md, const char *folder, uint32_t *folder_id,
			 store_replica_t *rs_out, bool *pushed)
{
	store_txn_t *txn = NULL;
	store_folder_t f;
	store_replica_t rs;
	bool have = false;
	*folder_id = 0;
	if (pushed)
		*pushed = false;
	if (store_txn_begin_read(md->st, &txn) != 0)
		return false;
	if (store_folder_find(txn, md->account_id, folder, &f) == 0) {
		*folder_id = f.id;
		if (store_replica_get(txn, f.id, STORE_REPLICA_MAILDIR, &rs) == 0 &&
		    rs.uidvalidity != 0) {
			have = true;
			if (pushed)
				*pushed = f.state != STORE_FOLDER_HELD &&
					  rs.pushed_modseq == f.highestmodseq;
			if (rs_out) {
				*rs_out = rs;
				rs_out->name = NULL;
			}
		}
	}
	store_txn_abort(txn);
	return have;
}

typedef struct any_ctx {
	store_txn_t *txn;
	bool found;
} any_ctx_t;

static int any_cb(const store_folder_t *f, void *arg)
{
	any_ctx_t *a = arg;
	store_replica_t rs;
	if (store_replica_get(a->txn, f->id, STORE_REPLICA_MAILDIR, &rs) == 0 && rs.uidvalidity) {
		a->found = true;
		return 1;
	}
	return 0;
}

static bool any_maildir_state(maildir_replica_t *md)
{
	any_ctx_t a = {NULL, false};
	if (store_txn_begin_read(md->st, &a.txn) != 0)
		return true; /* cannot tell: do not create anything */
	store_folder_list(a.txn, md->account_id, any_cb, &a);
	store_txn_abort(a.txn);
	return a.found;
}

static int mkfolder(const char *dir)
{
	static const char *const subs[] = {"cur", "new", "tmp"};
	for (size_t i = 0; i < IB_ARRAY_LEN(subs); i++) {
		char *p = xasprintf("%s/%s", dir, subs[i]);
		int rc = ib_mkdirs(p, 0700);
		free(p);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static void md_create_folder(replica_t *r, const char *name, unsigned special, replica_done_cb cb,
			     void *ctx)
{
	maildir_replica_t *md = (maildir_replica_t *)r;
	if (!settle(md))
		return;
	char *dir = maildir_folder_path(md->root, md->sep, name);
	if (!dir) {
		log_warn(MD_PFX ": folder \"%s\" cannot be a Maildir directory with separator "
				"'%c'; it is not exported",
			 md->account, name, md->sep);
		cb(REPLICA_FOLDER_BAD, ctx);
		return;
	}
	uint32_t fid;
	struct stat st;
	if (stat(dir, &st) != 0 && stored_state(md, name, &fid, NULL, NULL)) {
		/* It was synced and has vanished: do not paper over that with an
		 * empty folder; select() holds it. */
		free(dir);
		cb(REPLICA_OK, ctx);
		return;
	}
	/* The UID file is select()'s business: it must notice a lost one. */
	int rc = mkfolder(dir);
	if (rc != 0)
		log_err(MD_PFX ": cannot create %s: %s", md->account, dir, strerror(-rc));
	free(dir);
	cb(rc == 0 ? REPLICA_OK : REPLICA_FOLDER_BAD, ctx);
}

static int hold_fn(store_txn_t *txn, void *arg)
{
	void **a = arg;
	return store_folder_hold(txn, *(uint32_t *)a[0], a[1]);
}

/* Hold folder fid for the operator with reason (freed here), and say so. */
static void hold(maildir_replica_t *md, uint32_t fid, const char *name, char *reason)
{
	void *a[2] = {&fid, reason};
	int rc = store_write(md->st, hold_fn, a);
	log_err(MD_PFX " box=%s: %s%s", md->account, name, reason,
		rc ? "; and the hold could not be recorded in the store" : "");
	free(reason);
}

bool maildir_stamp_proves(const char *dir, const store_replica_t *rs, uint64_t stamp, bool *sealed,
			  maildir_seal_rec_t *old)
{
	*sealed = false;
	if (!rs || !maildir_stamp_valid(stamp))
		return false;
	if (stamp == rs->highestmodseq)
		return true;
	*sealed = maildir_seal_matches(dir, rs->highestmodseq, rs->uidnext, stamp, old);
	return *sealed;
}

/* The UIDNEXT select() reports: after a sealed sync it is the value
 * recorded then (the engine records the one select() gave, and the
 * folder's own grew with that sync's appends). Reporting the recorded one
 * again keeps the engine from writing an unchanged folder's state anew; a
 * lower UIDNEXT only widens the search for an interrupted upload (it is
 * where such a search starts), it never narrows it. */
static uint32_t sel_uidnext(bool sealed, const store_replica_t *rs, uint32_t own)
{
	return sealed && rs->uidnext && rs->uidnext < own ? rs->uidnext : own;
}

/* Unchanged since the last completed sync (which settled every file's
 * identity and left the tree and the pairs in agreement): nothing to read
 * unless an operation needs the files. Either the fingerprint *stamp is the
 * recorded one, or a seal proves that only that sync changed the folder
 * since (*stamp becomes the recorded value then). rs: the recorded state, or
 * NULL if none. */
static bool unchanged_since(maildir_replica_t *md, const store_replica_t *rs, uint64_t *stamp)
{
	bool sealed;
	if (!maildir_stamp_proves(md->dir, rs, *stamp, &sealed, &md->seal_old))
		return false;
	md->sealed = sealed;
	*stamp = rs->highestmodseq;
	return true;
}

/* A folder proven unchanged (sealed: by its seal) whose UID file says u:
 * the counters select() would report, if u is of the recorded state rs. */
static bool unchanged_counts(const store_replica_t *rs, const maildir_uids_t *u, bool sealed,
			     replica_counts_t *out)
{
	if (!rs->uidvalidity || u->uidvalidity != rs->uidvalidity)
		return false;
	memset(out, 0, sizeof(*out));
	out->uidvalidity = u->uidvalidity;
	out->uidnext = sel_uidnext(sealed, rs, u->uidnext);
	out->highestmodseq = rs->highestmodseq;
	return true;
}

bool maildir_folder_unchanged(const char *root, char sep, const char *name,
			      const store_replica_t *rs, replica_counts_t *out)
{
	char *dir = maildir_folder_path(root, sep == '.' ? '.' : '/', name);
	if (!dir)
		return false;
	/* As select() would see it: the fingerprint, then what it vouches for. */
	uint64_t stamp = maildir_folder_stamp(dir);
	maildir_uids_t u;
	maildir_seal_rec_t old;
	bool sealed = false;
	bool same = maildir_uids_read(dir, &u) == 0 &&
		    maildir_stamp_proves(dir, rs, stamp, &sealed, &old);
	free(dir);
	return same && unchanged_counts(rs, &u, sealed, out);
}

static int proof_cmp(const void *key, const void *elt)
{
	return strcmp(key, ((const md_proof_t *)elt)->name);
}

bool maildir_replica_unchanged(replica_t *r, const char *name, const store_replica_t *rs,
			       replica_counts_t *out)
{
	maildir_replica_t *md = (maildir_replica_t *)r;
	const md_proof_t *p = md->n_proofs ? bsearch(name, md->proofs, md->n_proofs,
						      sizeof(*p), proof_cmp)
					   : NULL;
	/* The proof holds for the state it was checked against. */
	if (!p || p->hms != rs->highestmodseq || p->uidnext != rs->uidnext)
		return maildir_folder_unchanged(md->root, md->sep, name, rs, out);
	return unchanged_counts(rs, &p->u, p->sealed, out);
}

/* Watch folder directory dir for the seal (after reading what the last
 * watches saw); the handle, or -1. */
static int seal_watch(maildir_replica_t *md, const char *dir)
{
	maildir_seal_poll(md->seal, false);
	return maildir_seal_watch(md->seal, dir);
}

static void md_select(replica_t *r, const char *name, replica_select_cb cb, void *ctx)
{
	maildir_replica_t *md = (maildir_replica_t *)r;
	if (!settle(md))
		return;
	close_folder(md);
	replica_box_t box;
	memset(&box, 0, sizeof(box));
	char *dir = maildir_folder_path(md->root, md->sep, name);
	if (!dir) {
		cb(REPLICA_FOLDER_BAD, NULL, ctx);
		return;
	}
	store_replica_t rs;
	uint32_t fid = 0;
	bool pushed = false;
	bool have_rs = stored_state(md, name, &fid, &rs, &pushed);
	struct stat st;
	if (!have_rs && !maildir_is_folder(dir)) {
		/* Never synced: export it (as create_folder() would). */
		int mrc = mkfolder(dir);
		if (mrc != 0)
			log_err(MD_PFX ": cannot create %s: %s", md->account, dir, strerror(-mrc));
	}
	/* The seal's watch, then the fingerprint, then anything that reads the
	 * directories: see maildir_seal.h and maildir_folder_stamp(). A folder
	 * the store has nothing new for is most likely unchanged here too, and
	 * then nothing is written: it gets the watch only if it did change. */
	int seal_h = pushed ? -1 : seal_watch(md, dir);
	uint64_t stamp = maildir_folder_stamp(dir);
	if (stat(dir, &st) != 0 || !maildir_is_folder(dir)) {
		if (have_rs)
			hold(md, fid, name,
			     xasprintf("the Maildir folder %s vanished; nothing was deleted; mount "
				       "the disk or restore it, or run 'imapbridge folder recover "
				       "%s %s' to rebuild it from the store",
				       dir, md->account, name));
		free(dir);
		cb(REPLICA_FOLDER_BAD, NULL, ctx);
		return;
	}
	maildir_uids_t u;
	int rc = maildir_uids_read(dir, &u);
	if (rc != 0 && have_rs) {
		/* Without it the files' UIDs mean nothing; the recovery re-pairs
		 * them by U= and content and writes a new one. */
		hold(md, fid, name,
		     xasprintf("the Maildir folder %s lost its %s file; nothing was deleted; run "
			       "'imapbridge folder recover %s %s' to re-pair its messages",
			       dir, MAILDIR_UIDS_FILE, md->account, name));
		free(dir);
		cb(REPLICA_FOLDER_BAD, NULL, ctx);
		return;
	}
	if (rc == 0 && have_rs && u.uidvalidity != rs.uidvalidity) {
		hold(md, fid, name,
		     xasprintf("the Maildir folder %s was replaced (its %s file changed); nothing "
			       "was deleted; run 'imapbridge folder recover %s %s' to re-pair its "
			       "messages",
			       dir, MAILDIR_UIDS_FILE, md->account, name));
		free(dir);
		cb(REPLICA_FOLDER_BAD, NULL, ctx);
		return;
	}
	if (rc != 0)
		rc = maildir_uids_load(dir, 0, &u, md->nosync);
	if (rc != 0) {
		log_err(MD_PFX " box=%s: cannot read or write %s/%s: %s", md->account, name, dir,
			MAILDIR_UIDS_FILE, strerror(-rc));
		free(dir);
		cb(REPLICA_FOLDER_BAD, NULL, ctx);
		return;
	}
	md->folder = xstrdup(name);
	md->dir = dir;
	md->folder_id = fid;
	md->uids = u;
	maildir_fmd5(name, md->fmd5);
	md->selected = true;
	bool same = unchanged_since(md, have_rs ? &rs : NULL, &stamp);
	if (!same && pushed) {
		/* Changed after all: the watch, then the fingerprint this sync
		 * records. */
		seal_h = seal_watch(md, dir);
		stamp = maildir_folder_stamp(dir);
		same = unchanged_since(md, &rs, &stamp);
	}
	md->seal_h = seal_h;
	md->stamp = stamp;
	md->same = same;
	md->sel_uidnext = sel_uidnext(md->sealed, &rs, md->uids.uidnext);
	if (!same && !ensure_loaded(md)) {
		cb(REPLICA_FOLDER_BAD, NULL, ctx);
		return;
	}
	box.counts.uidvalidity = md->uids.uidvalidity;
	box.counts.uidnext = md->sel_uidnext;
	box.counts.messages = md->loaded ? (uint32_t)md->n_msgs : 0;
	box.counts.highestmodseq = stamp;
	box.caps =
	    REPLICA_CAP_UIDPLUS | REPLICA_CAP_MOVE | REPLICA_CAP_KEYWORDS | REPLICA_CAP_MODSEQ;
	cb(REPLICA_OK, &box, ctx);
}

/* Read the open folder's files (maildir_prep_folder()) if select() left
 * that for later; hold the folder when it lost too many at once. false when
 * the folder cannot be used (it is closed then; logged). The first operation
 * after select() calls this before it changes anything, so no write of this
 * folder is pending in the batch while the directory is read. */
static bool ensure_loaded(maildir_replica_t *md)
{
	if (!md->selected)
		return false;
	if (md->loaded)
		return true;
	quiesce(md); /* read the tree as the operations so far left it */
	int rc = maildir_prep_folder(md);
	if (rc != 0 || md->n_vanished)
		maildir_seal_spoil(md->seal, md->seal_h);
	if (rc != 0) {
		log_err(MD_PFX " box=%s: cannot read %s: %s", md->account, md->folder, md->dir,
			strerror(-rc));
		close_folder(md);
		return false;
	}
	double ratio = md->max_ratio;
	if (ratio < 1 && md->n_vanished >= 5 && md->n_vanished > ratio * (double)md->n_paired) {
		hold(md, md->folder_id, md->folder,
		     xasprintf("the Maildir folder %s lost %zu of its %zu messages at once; "
			       "nothing was deleted; if the disk is not mounted, mount it; run "
			       "'imapbridge folder recover %s %s' to rebuild it from the store",
			       md->dir, md->n_vanished, md->n_paired, md->account, md->folder));
		close_folder(md);
		return false;
	}
	md->loaded = true;
	return true;
}

/* The keywords to report for a message: those last agreed (the tree cannot
 * hold them), with $Forwarded following the P flag. */
static char *report_keywords(store_txn_t *txn, maildir_replica_t *md, const md_msg_t *m)
{
	store_pair_t p;
	char **v = NULL;
	size_t n = 0;
	if (txn && md->folder_id &&
	    store_pair_get_by_ruid(txn, md->folder_id, STORE_REPLICA_MAILDIR, m->uid, &p) == 0) {
		v = xcalloc(p.kw.n + 1, sizeof(char *));
		for (size_t i = 0; i < p.kw.n; i++)
			if (strcmp(p.kw.v[i], KW_FORWARDED) != 0)
				v[n++] = xstrdup(p.kw.v[i]);
	} else {
		v = xcalloc(1, sizeof(char *));
	}
	if (m->mflags & MAILDIR_F_PASSED)
		v[n++] = xstrdup(KW_FORWARDED);
	char *s = replica_kw_join((const char *const *)v, n);
	replica_kw_free_vec(v, n);
	return s;
}

static void md_scan(replica_t *r, const replica_scan_opts_t *opts, const replica_scan_sink_t *sink,
		    replica_done_cb cb, void *ctx)
{
	maildir_replica_t *md = (maildir_replica_t *)r;
	if (!settle(md))
		return;
	if (!md->selected) {
		cb(REPLICA_FOLDER_BAD, ctx);
		return;
	}
	if (opts->changedsince && md->same && opts->changedsince == md->stamp) {
		/* The directory is as it was at the last completed sync. */
		cb(REPLICA_OK, ctx);
		return;
	}
	/* A full read of a folder that select() found unchanged: the engine
	 * wants to check everything again; a seal must not carry on what this
	 * session's uncommitted decisions might depend on (maildir_seal.h). */
	if (md->same)
		maildir_seal_spoil(md->seal, md->seal_h);
	/* Otherwise every message and every vanished pair: a full scan, which
	 * is also a correct answer to a scan since any other value. */
	if (!ensure_loaded(md)) {
		cb(REPLICA_FOLDER_BAD, ctx);
		return;
	}
	store_txn_t *txn = NULL;
	if (store_txn_begin_read(md->st, &txn) != 0)
		txn = NULL;
	for (size_t i = 0; i < md->n_msgs; i++) {
		md_msg_t *m = &md->msgs[i];
		char *kw = report_keywords(txn, md, m);
		replica_msg_t rm = {
		    .uid = m->uid,
		    .flags = maildir_to_replica_flags(m->mflags),
		    .keywords = kw,
		    .size = m->size == UINT64_MAX ? 0 : m->size, /* 0: unknown */
		    .internaldate = m->mtime,
		};
		sink->msg_cb(sink->ctx, &rm);
		free(kw);
	}
	store_txn_abort(txn);
	for (size_t i = 0; i < opts->n_known; i++)
		if (!msg_find(md, opts->known[i]))
			sink->vanished_cb(sink->ctx, opts->known[i], opts->known[i]);
	cb(REPLICA_OK, ctx);
}

static void md_fetch(replica_t *r, const uint32_t *uids, size_t n, const replica_body_sink_t *sink,
		     replica_done_cb cb, void *ctx)
{
	maildir_replica_t *md = (maildir_replica_t *)r;
	if (!settle(md))
		return;
	if (!ensure_loaded(md)) {
		cb(REPLICA_FOLDER_BAD, ctx);
		return;
	}
	int status = REPLICA_OK;
	store_txn_t *txn = NULL;
	if (store_txn_begin_read(md->st, &txn) != 0)
		txn = NULL;
	char buf[65536];
	for (size_t i = 0; i < n; i++) {
		md_msg_t *m = msg_find(md, uids[i]);
		if (!m)
			continue;
		char *path = msg_path(md, m);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT && refind(md, m)) {
			free(path);
			path = msg_path(md, m);
			fd = open(path, O_RDONLY | O_CLOEXEC);
		}
		struct stat st;
		if (fd < 0 || fstat(fd, &st) != 0) {
			log_warn(MD_PFX " box=%s: cannot read %s: %s; skipped", md->account,
				 md->folder, path, strerror(errno));
			if (fd >= 0)
				close(fd);
			free(path);
			status = REPLICA_MSG_BAD;
			continue;
		}
		void *h = sink->open(sink->ctx, (uint64_t)st.st_size);
		if (!h) {
			close(fd);
			free(path);
			status = REPLICA_MSG_BAD;
			continue;
		}
		bool ok = true;
		ssize_t got;
		while ((got = read(fd, buf, sizeof(buf))) > 0)
			if (sink->write(sink->ctx, h, buf, (size_t)got) < 0) {
				ok = false;
				break;
			}
		if (got < 0)
			ok = false;
		close(fd);
		if (!ok) {
			sink->abort(sink->ctx, h);
			status = REPLICA_MSG_BAD;
			free(path);
			continue;
		}
		char *kw = report_keywords(txn, md, m);
		replica_msg_t rm = {
		    .uid = m->uid,
		    .flags = maildir_to_replica_flags(m->mflags),
		    .keywords = kw,
		    .size = (uint64_t)st.st_size,
		    .internaldate = m->mtime ? m->mtime : st.st_mtime,
		};
		sink->done(sink->ctx, h, &rm);
		free(kw);
		free(path);
	}
	store_txn_abort(txn);
	cb(status, ctx);
}

static bool kw_has(const char *kw, const char *word)
{
	size_t wl = strlen(word);
	for (const char *p = kw; p && *p;) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		if ((size_t)(e - p) == wl && strncasecmp(p, word, wl) == 0)
			return true;
		p = e;
	}
	return false;
}

static void md_append(replica_t *r, const replica_new_msg_t *nm, replica_uid_cb cb, void *ctx)
{
	maildir_replica_t *md = (maildir_replica_t *)r;
	if (!ensure_loaded(md)) {
		if (!settle(md))
			return;
		cb(REPLICA_FOLDER_BAD, 0, ctx);
		return;
	}
	unsigned mf = maildir_from_replica_flags(nm->flags, 0);
	if (nm->keywords && kw_has(nm->keywords, KW_FORWARDED))
		mf |= MAILDIR_F_PASSED;
	uint32_t uid = md->uids.uidnext++;
	md->uids_dirty = true;
	char *base = maildir_name_unique_for(&md->name_counter, md->host, md->pid);
	/* Unflagged messages go to new/ like a fresh delivery (mail readers show
	 * them as new); the rest to cur/ with their info. */
	bool to_new = mf == 0;
	char *name;
	if (to_new) {
		name = xasprintf("%s,U=%u,FMD5=%s", base, uid, md->fmd5);
	} else {
		name = maildir_name_build(base, strlen(base), uid, md->fmd5, mf, NULL);
	}
	free(base);
	int rc = maildir_batch_write(md->batch, md->dir, to_new ? "new" : "cur", name, nm->data,
				     nm->len, nm->internaldate);
	md_deferred_t d = {.uid_cb = cb, .ctx = ctx, .uid = uid};
	if (rc != 0) {
		log_err(MD_PFX " box=%s: cannot write a message into %s/tmp: %s", md->account,
			md->folder, md->dir, maildir_strerror(rc));
		free(name);
	} else {
		d.final_path = xasprintf("%s/%s/%s", md->dir, to_new ? "new" : "cur", name);
		maildir_seal_expect(md->seal, md->seal_h, MAILDIR_SEAL_APPEAR, to_new, name);
		msg_add(md, uid, name, to_new, mf, nm->len, nm->internaldate);
	}
	queue_push(md, &d);
	maybe_settle_now(md);
}

static void md_find(replica_t *r, const replica_find_t *q, replica_uids_cb cb, void *ctx)
{
	maildir_replica_t *md = (maildir_replica_t *)r;
	if (!settle(md))
		return;
	if (!ensure_loaded(md)) {
		cb(REPLICA_FOLDER_BAD, NULL, 0, ctx);
		return;
	}
	uint32_t *found = xmalloc((md->n_msgs ? md->n_msgs : 1) * sizeof(uint32_t));
	size_t n = 0;
	char head[65536];
	for (size_t i = 0; i < md->n_msgs; i++) {
		md_msg_t *m = &md->msgs[i];
		if (m->uid < q->min_uid)
			continue;
		if (q->size && m->size == UINT64_MAX) {
			/* Not looked at by the scan: now. */
			char *path = msg_path(md, m);
			struct stat st;
			if (stat(path, &st) == 0)
				m->size = (uint64_t)st.st_size;
			free(path);
		}
		if (q->size && m->size != q->size)
			continue;
		if (q->message_id) {
			char *path = msg_path(md, m);
			int fd = open(path, O_RDONLY | O_CLOEXEC);
			free(path);
			if (fd < 0)
				continue;
			ssize_t got = read(fd, head, sizeof(head));
			close(fd);
			if (got <= 0)
				continue;
			char mid[1024];
			engine_message_id(head, (size_t)got, mid, sizeof(mid));
			if (strcmp(mid, q->message_id) != 0)
				continue;
		}
		found[n++] = m->uid;
	}
	cb(REPLICA_OK, found, n, ctx);
	free(found);
}

static void md_set_flags(replica_t *r, uint32_t uid, unsigned add, const char *add_kw, unsigned del,
			 const char *del_kw, replica_done_cb cb, void *ctx)
{
	maildir_replica_t *md = (maildir_replica_t *)r;
	md_msg_t *m = ensure_loaded(md) ? msg_find(md, uid) : NULL;
	md_deferred_t d = {.done = cb, .ctx = ctx};
	if (!m) {
		if (!settle(md))
			return;
		cb(REPLICA_MSG_BAD, ctx);
		return;
	}
	unsigned cur = maildir_to_replica_flags(m->mflags);
	unsigned nf = maildir_from_replica_flags((cur | add) & ~del, m->mflags);
	if (add_kw && kw_has(add_kw, KW_FORWARDED))
		nf |= MAILDIR_F_PASSED;
	if (del_kw && kw_has(del_kw, KW_FORWARDED))
		nf &= ~(unsigned)MAILDIR_F_PASSED;
	if (nf != m->mflags) {
		/* A message with flags belongs in cur/ with its info (as a mail
		 * reader would move it); a flagless one may stay in new/. */
		bool to_new = m->in_new && nf == 0;
		char *newname = maildir_name_with_flags(m->name, nf);
		char *from = xasprintf("%s/%s", md->dir, m->in_new ? "new" : "cur");
		char *to = xasprintf("%s/%s", md->dir, to_new ? "new" : "cur");
		int rc = maildir_batch_rename(md->batch, from, m->name, to, newname);
		if (rc == 0 && (to_new != m->in_new || strcmp(m->name, newname) != 0)) {
			maildir_seal_expect(md->seal, md->seal_h, MAILDIR_SEAL_DISAPPEAR, m->in_new,
					    m->name);
			maildir_seal_expect(md->seal, md->seal_h, MAILDIR_SEAL_APPEAR, to_new,
					    newname);
		}
		if (rc == 0) {
			free(m->name);
			m->name = newname;
			m->in_new = to_new;
			m->mflags = nf;
			md->dirty = true;
		} else {
			log_warn(MD_PFX " box=%s: cannot rename %s/%s: %s", md->account, md->folder,
				 from, m->name, maildir_strerror(rc));
			free(newname);
			free(from);
			free(to);
			if (settle(md))
				cb(rc == -ENOENT ? REPLICA_MSG_BAD : REPLICA_BAD, ctx);
			return;
		}
		free(from);
		free(to);
	}
	queue_push(md, &d);
	maybe_settle_now(md);
}

static void md_delete_msgs(replica_t *r, const uint32_t *uids, size_t n, replica_done_cb cb,
			   void *ctx)
{
	maildir_replica_t *md = (maildir_replica_t *)r;
	if (!ensure_loaded(md)) {
		if (!settle(md))
			return;
		cb(REPLICA_FOLDER_BAD, ctx);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		md_msg_t *m = msg_find(md, uids[i]);
		if (!m)
			continue;
		char *dir = xasprintf("%s/%s", md->dir, m->in_new ? "new" : "cur");
		int rc = maildir_batch_unlink(md->batch, dir, m->name);
		if (rc == -ENOENT && refind(md, m)) {
			/* A mail reader renamed it meanwhile (read, flagged): the
			 * deletion still applies to the message, whatever its name. */
			free(dir);
			dir = xasprintf("%s/%s", md->dir, m->in_new ? "new" : "cur");
			rc = maildir_batch_unlink(md->batch, dir, m->name);
		}
		if (rc == 0)
			maildir_seal_expect(md->seal, md->seal_h, MAILDIR_SEAL_DISAPPEAR, m->in_new,
					    m->name);
		if (rc != 0 && rc != -ENOENT)
			log_warn(MD_PFX " box=%s: cannot delete %s/%s: %s", md->account, md->folder,
				 dir, m->name, maildir_strerror(rc));
		free(dir);
		if (rc == 0 || rc == -ENOENT)
			msg_remove(md, m);
	}
	md_deferred_t d = {.done = cb, .ctx = ctx};
	queue_push(md, &d);
	maybe_settle_now(md);
}

static void md_move(replica_t *r, uint32_t uid, const char *to, replica_uid_cb cb, void *ctx)
{
	maildir_replica_t *md = (maildir_replica_t *)r;
	if (!settle(md))
		return;
	md_msg_t *m = ensure_loaded(md) ? msg_find(md, uid) : NULL;
	char *tdir = maildir_folder_path(md->root, md->sep, to);
	/* A move into the open folder would hand out UIDs behind md->uids. */
	if (!m || !tdir || !maildir_is_folder(tdir) || strcmp(to, md->folder) == 0) {
		free(tdir);
		cb(REPLICA_MSG_BAD, 0, ctx);
		return;
	}
	uint32_t tfid;
	store_replica_t rs;
	bool have = stored_state(md, to, &tfid, &rs, NULL);
	maildir_uids_t tu;
	int rc = maildir_uids_read(tdir, &tu);
	if (rc != 0 && !have) /* never synced: start its UIDs */
		rc = maildir_uids_load(tdir, 0, &tu, md->nosync);
	uint32_t nuid = tu.uidnext++;
	if (rc == 0)
		rc = maildir_uids_write(tdir, &tu, md->nosync);
	char tmd5[MAILDIR_FMD5_LEN + 1];
	maildir_fmd5(to, tmd5);
	maildir_name_t pn;
	maildir_name_parse(m->name, &pn);
	char *nname =
	    pn.has_info || !m->in_new
		? maildir_name_build(m->name, pn.base_len, nuid, tmd5, m->mflags, pn.extra)
		: xasprintf("%.*s,U=%u,FMD5=%s", (int)pn.base_len, m->name, nuid, tmd5);
	char *from = xasprintf("%s/%s", md->dir, m->in_new ? "new" : "cur");
	char *dest = xasprintf("%s/%s", tdir, m->in_new ? "new" : "cur");
	if (rc == 0)
		rc = maildir_batch_rename(md->batch, from, m->name, dest, nname);
	if (rc == 0) {
		maildir_seal_expect(md->seal, md->seal_h, MAILDIR_SEAL_DISAPPEAR, m->in_new,
				    m->name);
		msg_remove(md, m);
		md_deferred_t d = {.uid_cb = cb, .ctx = ctx, .uid = nuid};
		d.final_path = xasprintf("%s/%s", dest, nname);
		queue_push(md, &d);
		maybe_settle_now(md);
	} else {
		log_warn(MD_PFX " box=%s: cannot move %s to %s: %s", md->account, md->folder,
			 m->name, to, maildir_strerror(rc));
		cb(REPLICA_MSG_BAD, 0, ctx);
	}
	free(from);
	free(dest);
	free(nname);
	free(tdir);
}

static void md_close(replica_t *r, replica_done_cb cb, void *ctx)
{
	maildir_replica_t *md = (maildir_replica_t *)r;
	if (!settle(md))
		return;
	close_folder(md);
	cb(REPLICA_OK, ctx);
}

static void md_really_free(maildir_replica_t *md)
{
	quiesce(md); /* a flush under way ends first */
	worker_free(md->worker);
	if (md->loop)
		ev_timer_stop(md->loop, &md->flush_w);
	close_folder(md);
	/* Seal what can be proven by now; the rest stays unsealed. */
	maildir_seal_poll(md->seal, true);
	maildir_seal_free(md->seal);
	free(md->msgs);
	maildir_batch_free(md->batch);
	for (size_t i = md->q_head; i < md->q_len; i++)
		free(md->q[i].final_path);
	free(md->q);
	maildir_proofs_clear(md);
	free(md->proofs);
	free(md->account);
	free(md->root);
	free(md->label);
	free(md->host);
	free(md);
}

static void md_free(replica_t *r)
{
	maildir_replica_t *md = (maildir_replica_t *)r;
	if (md->delivering) {
		md->dead = true;
		return;
	}
	md_really_free(md);
}

static const replica_ops_t maildir_ops = {
    .connect = md_connect,
    .list_folders = md_list_folders,
    .status = NULL,
    .create_folder = md_create_folder,
    .select = md_select,
    .scan = md_scan,
    .fetch = md_fetch,
    .append = md_append,
    .find = md_find,
    .set_flags = md_set_flags,
    .delete_msgs = md_delete_msgs,
    .move = md_move,
    .watch = NULL,
    .unwatch = NULL,
    .close = md_close,
    .free = md_free,
};

replica_t *maildir_replica_open(const maildir_opts_t *o)
{
	maildir_replica_t *md = xcalloc(1, sizeof(*md));
	md->base.ops = &maildir_ops;
	md->loop = o->loop;
	md->st = o->st;
	md->account_id = o->account_id;
	md->account = xstrdup(o->account ? o->account : "?");
	md->root = xstrdup(o->root);
	md->sep = o->sep == '.' ? '.' : '/';
	md->max_ratio = o->max_deletion_ratio;
	md->nosync = o->nosync;
	md->label = xasprintf("acct=%s maildir", md->account);
	md->base.label = md->label;
	/* Files are written and synced on a thread of their own, so a sync
	 * writing the tree overlaps with the network. */
	if (md->loop)
		md->worker = worker_new(md->loop);
	md->batch = batch_new(md);
	md->host = maildir_name_host();
	md->seal = maildir_seal_new();
	md->seal_h = -1;
	md->pid = (int)getpid();
	md->gen = 1;
	md->flushed_gen = 0;
	ev_init(&md->flush_w, flush_timer_cb);
	md->flush_w.data = md;
	return &md->base;
}
