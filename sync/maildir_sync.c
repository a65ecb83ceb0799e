/*
 * One Maildir sync round for one account; see maildir_sync.h.
 */
#include "sync/maildir_sync.h"

#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/util.h"
#include "sync/engine.h"
#include "sync/maildir.h"
#include "sync/mbnames.h"

typedef struct md_folder {
	uint32_t id;
	char *name;
	bool held;
} md_folder_t;

struct maildir_sync {
	struct ev_loop *loop;
	store_t *st;
	const config_t *cfg;
	const config_account_t *acct;
	uint32_t account_id;
	maildir_sync_done_cb done;
	void *ctx;
	replica_t *r;
	md_folder_t *folders;
	size_t n, next;
	engine_job_t *job;
	char *prefix;
	maildir_sync_result_t res;
	bool in_start; /* still inside maildir_sync_account() */
	bool finished;
	bool cancelled;
	int status; /* scratch for synchronous replica calls */
};

static void step(maildir_sync_t *s);

static void finish(maildir_sync_t *s)
{
	if (s->finished)
		return;
	s->finished = true;
	if (s->cfg)
		maildir_sync_mbnames(s->cfg);
	const maildir_sync_result_t *r = &s->res;
	if (r->downloaded || r->uploaded || r->deleted || r->flags || r->failed || r->held)
		log_info("maildir: acct=%s: %u folders, %u new in the store, %u written to the "
			 "tree, %u deletions, %u flag changes%s%s",
			 s->acct->name, r->folders, r->downloaded, r->uploaded, r->deleted,
			 r->flags, r->failed ? ", some folders failed" : "",
			 r->held ? ", some folders held for safety" : "");
	maildir_sync_done_cb done = s->done;
	void *ctx = s->ctx;
	maildir_sync_result_t copy = s->res;
	replica_free(s->r);
	s->r = NULL;
	for (size_t i = 0; i < s->n; i++)
		free(s->folders[i].name);
	free(s->folders);
	free(s->prefix);
	free(s);
	done(&copy, ctx);
}

static void status_cb(int status, void *ctx)
{
	*(int *)ctx = status;
}

static void connect_cb(int status, void *ctx)
{
	*(int *)ctx = status;
}

static int folder_cb(const store_folder_t *f, void *arg)
{
	maildir_sync_t *s = arg;
	s->folders = xrealloc(s->folders, (s->n + 1) * sizeof(*s->folders));
	s->folders[s->n].id = f->id;
	s->folders[s->n].name = xstrdup(f->name);
	s->folders[s->n].held = f->state == STORE_FOLDER_HELD;
	s->n++;
	return 0;
}

static bool folder_held(maildir_sync_t *s, uint32_t id)
{
	store_txn_t *txn = NULL;
	store_folder_t f;
	bool held = false;
	if (store_txn_begin_read(s->st, &txn) == 0) {
		held = store_folder_get(txn, id, &f) == 0 && f.state == STORE_FOLDER_HELD;
		store_txn_abort(txn);
	}
	return held;
}

static void job_done_cb(int result, const engine_stats_t *st, void *ctx)
{
	maildir_sync_t *s = ctx;
	md_folder_t *f = &s->folders[s->next];
	s->job = NULL;
	s->res.downloaded += st->downloaded;
	s->res.uploaded += st->uploaded;
	s->res.deleted += st->deleted_store + st->deleted_replica;
	s->res.flags += st->flags_store + st->flags_replica;
	if (result == ENGINE_HELD || folder_held(s, f->id)) {
		s->res.held++;
		if (st->message[0])
			log_err("maildir: acct=%s box=%s: held for safety: %s", s->acct->name,
				f->name, st->message);
	} else if (result != ENGINE_OK) {
		s->res.failed++;
		if (st->message[0])
			log_err("maildir: acct=%s box=%s: %s", s->acct->name, f->name, st->message);
	}
	s->next++;
	if (result == ENGINE_REPLICA_ERR) {
		/* The session is gone (disk trouble): stop here, retry next round. */
		s->res.failed += (unsigned)(s->n - s->next);
		s->next = s->n;
	}
	if (!s->in_start)
		step(s);
}

/* Run the folders one after another; recursion stays flat when the engine
 * calls back synchronously. */
static void step(maildir_sync_t *s)
{
	while (!s->cancelled && s->next < s->n && !s->job) {
		md_folder_t *f = &s->folders[s->next];
		s->res.folders++;
		if (f->held) {
			s->res.held++;
			s->next++;
			continue;
		}
		s->status = -99;
		s->r->ops->create_folder(s->r, f->name, 0, status_cb, &s->status);
		if (s->status != REPLICA_OK) {
			/* A name the tree cannot hold: already explained by the replica. */
			s->next++;
			continue;
		}
		engine_opts_t o;
		memset(&o, 0, sizeof(o));
		o.folder_id = f->id;
		o.replica_id = STORE_REPLICA_MAILDIR;
		o.replica_name = f->name;
		free(s->prefix);
		s->prefix = xasprintf("maildir: acct=%s box=%s", s->acct->name, f->name);
		o.log_prefix = s->prefix;
		o.max_deletion_ratio = s->acct->max_deletion_ratio;
		size_t before = s->next;
		bool was = s->in_start;
		s->in_start = true;
		s->job = engine_sync_folder(s->st, s->r, &o, job_done_cb, s);
		s->in_start = was;
		if (s->next != before) {
			s->job = NULL; /* finished synchronously */
			continue;
		}
		return; /* job_done_cb continues */
	}
	if (!s->cancelled && s->next >= s->n && !s->job && !s->in_start)
		finish(s);
}

maildir_sync_t *maildir_sync_account(struct ev_loop *loop, store_t *st, const config_t *cfg,
				     const config_account_t *acct, uint32_t account_id,
				     maildir_sync_done_cb done, void *ctx)
{
	maildir_sync_t *s = xcalloc(1, sizeof(*s));
	s->loop = loop;
	s->st = st;
	s->cfg = cfg;
	s->acct = acct;
	s->account_id = account_id;
	s->done = done;
	s->ctx = ctx;
	s->in_start = true;
	maildir_opts_t o = {
	    .loop = loop,
	    .st = st,
	    .account_id = account_id,
	    .account = acct->name,
	    .root = acct->maildir_path,
	    .sep = acct->maildir_sep && acct->maildir_sep[0] == '.' ? '.' : '/',
	    .max_deletion_ratio = acct->max_deletion_ratio,
	};
	s->r = maildir_replica_open(&o);
	unsigned caps = 0;
	s->status = -99;
	s->r->ops->connect(s->r, &caps, connect_cb, &s->status);
	if (s->status != REPLICA_OK) {
		s->res.failed++;
		goto done;
	}
	/* connect() gave new folders of the tree a store folder: list after it. */
	store_txn_t *txn = NULL;
	if (store_txn_begin_read(st, &txn) == 0) {
		store_folder_list(txn, account_id, folder_cb, s);
		store_txn_abort(txn);
	}
	step(s);
	s->in_start = false;
	if (s->next >= s->n && !s->job) {
		finish(s);
		return NULL;
	}
	return s;
done:
	s->in_start = false;
	finish(s);
	return NULL;
}

void maildir_sync_cancel(maildir_sync_t *s)
{
	if (!s)
		return;
	s->cancelled = true;
	if (s->job)
		engine_cancel(s->job);
}

void maildir_sync_mbnames(const config_t *cfg)
{
	if (!cfg || !cfg->mbnames.enabled)
		return;
	size_t n = 0;
	mbnames_item_t *items = mbnames_items_from_config(cfg, &n);
	bool changed = false;
	int rc = mbnames_update(&cfg->mbnames, items, n, &changed);
	if (rc != 0)
		log_err("mbnames: cannot write %s: %s; check that its directory is writable",
			cfg->mbnames.filename, strerror(-rc));
	else if (changed)
		log_info("mbnames: wrote %s (%zu folders)", cfg->mbnames.filename, n);
	mbnames_items_free(items, n);
}
