/* Folder discovery and naming: see folders.h. */
#include "sync/folders.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/buf.h"
#include "lib/util.h"

bool folders_included(const config_remote_t *rc, const char *remote)
{
	bool inc = rc->n_include == 0;

	for (size_t i = 0; i < rc->n_include && !inc; i++)
		if (regexec(&rc->include[i].re, remote, 0, NULL, 0) == 0)
			inc = true;
	if (!inc)
		return false;
	for (size_t i = 0; i < rc->n_exclude; i++)
		if (regexec(&rc->exclude[i].re, remote, 0, NULL, 0) == 0)
			return false;
	return true;
}

/* Replace the first match of one rule; returns a new string. */
static char *apply_rule(const config_nametrans_t *nt, const char *in)
{
	regmatch_t m[10];
	buf_t b = BUF_INIT;
	char *out;

	/* The config compiles with REG_NOSUB for filters; compile our own with
	 * sub-matches for the replacement. */
	regex_t re;
	if (regcomp(&re, nt->match, REG_EXTENDED) != 0)
		return xstrdup(in);
	if (regexec(&re, in, 10, m, 0) != 0) {
		regfree(&re);
		return xstrdup(in);
	}
	buf_append(&b, in, (size_t)m[0].rm_so);
	for (const char *r = nt->replace ? nt->replace : ""; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '9') {
			int k = r[1] - '0';
			if (m[k].rm_so >= 0)
				buf_append(&b, in + m[k].rm_so, (size_t)(m[k].rm_eo - m[k].rm_so));
			r++;
			continue;
		}
		buf_append(&b, r, 1);
	}
	buf_puts(&b, in + m[0].rm_eo);
	regfree(&re);
	out = xstrdup(buf_cstr(&b));
	buf_free(&b);
	return out;
}

char *folders_to_local(const config_remote_t *rc, const char *remote, char sep)
{
	if (strcasecmp(remote, "INBOX") == 0)
		return xstrdup("INBOX");
	char *cur = xstrdup(remote);
	for (size_t i = 0; i < rc->n_nametrans; i++) {
		char *n = apply_rule(&rc->nametrans[i], cur);
		free(cur);
		cur = n;
	}
	if (sep && sep != '/')
		for (char *p = cur; *p; p++)
			if (*p == sep)
				*p = '/';
	if (!*cur) {
		free(cur);
		return NULL;
	}
	if (strcasecmp(cur, "INBOX") == 0)
		memcpy(cur, "INBOX", 5);
	return cur;
}

char *folders_to_remote(const config_remote_t *rc, const char *local, char sep)
{
	char *base = xstrdup(local);
	char *cands[2] = { NULL, NULL };
	char *found = NULL;
	const char *ref = rc->reference ? rc->reference : "";

	if (strcmp(local, "INBOX") == 0) {
		free(base);
		return xstrdup("INBOX");
	}
	if (sep && sep != '/')
		for (char *p = base; *p; p++)
			if (*p == '/')
				*p = sep;
	if (*ref) {
		size_t rl = strlen(ref);
		bool has_sep = sep && ref[rl - 1] == sep;
		cands[0] = xasprintf("%s%s%s", ref, has_sep || !sep ? "" : (char[]){ sep, 0 }, base);
	}
	cands[1] = xstrdup(base);
	for (int i = 0; i < 2 && !found; i++) {
		if (!cands[i])
			continue;
		char *back = folders_to_local(rc, cands[i], sep);
		if (back && strcmp(back, local) == 0 && folders_included(rc, cands[i])) {
			found = cands[i];
			cands[i] = NULL;
		}
		free(back);
	}
	free(cands[0]);
	free(cands[1]);
	free(base);
	return found;
}

int folders_account_id(store_t *st, const char *name, uint32_t *id)
{
	store_txn_t *txn = NULL;
	store_account_t a;
	int rc = store_txn_begin_read(st, &txn);

	if (rc == 0)
		rc = store_account_find(txn, name, &a);
	store_txn_abort(txn);
	if (rc == 0 && !(a.flags & STORE_ACCOUNT_REMOVED)) {
		*id = a.id;
		return 0;
	}
	if (rc != 0 && rc != STORE_ENOTFOUND)
		return rc;
	rc = store_txn_begin_write(st, &txn);
	if (rc)
		return rc;
	rc = store_account_add(txn, name, id);
	if (rc == STORE_EEXIST)
		rc = 0;
	if (rc) {
		store_txn_abort(txn);
		return rc;
	}
	return store_txn_commit(txn);
}

/* --------------------------------------------------------------- planning */

typedef struct plan_ctx {
	const config_account_t *acct;
	const replica_folder_t *remote;
	size_t n_remote;
	folder_plan_t *plan;
	char sep;
	/* store folders seen, for the store-only pass */
	char **store_names;
	uint32_t *store_ids;
	uint32_t *store_special;
	size_t n_store;
} plan_ctx_t;

static void warn(folder_plan_t *p, char *msg)
{
	p->warnings = xrealloc(p->warnings, (p->n_warnings + 1) * sizeof(char *));
	p->warnings[p->n_warnings++] = msg;
}

static folder_job_t *add_job(folder_plan_t *p)
{
	p->jobs = xrealloc(p->jobs, (p->n + 1) * sizeof(*p->jobs));
	folder_job_t *j = &p->jobs[p->n++];
	memset(j, 0, sizeof(*j));
	return j;
}

static int list_store_cb(const store_folder_t *f, void *arg)
{
	plan_ctx_t *pc = arg;
	size_t i = pc->n_store++;

	pc->store_names = xrealloc(pc->store_names, pc->n_store * sizeof(char *));
	pc->store_ids = xrealloc(pc->store_ids, pc->n_store * sizeof(uint32_t));
	pc->store_special = xrealloc(pc->store_special, pc->n_store * sizeof(uint32_t));
	pc->store_names[i] = xstrdup(f->name);
	pc->store_ids[i] = f->id;
	pc->store_special[i] = f->special_use;
	return 0;
}

/* Creates store folders for the remote ones and fills the plan. */
static int plan_fn(store_txn_t *txn, void *arg)
{
	plan_ctx_t *pc = arg;
	folder_plan_t *plan = pc->plan;
	const config_remote_t *rc = &pc->acct->remote;
	int rc2;

	/* store_write() may run us twice: start from scratch. */
	for (size_t i = 0; i < plan->n; i++) {
		free(plan->jobs[i].local);
		free(plan->jobs[i].remote);
	}
	plan->n = 0;
	for (size_t i = 0; i < pc->n_store; i++)
		free(pc->store_names[i]);
	pc->n_store = 0;

	for (size_t i = 0; i < pc->n_remote; i++) {
		const replica_folder_t *rf = &pc->remote[i];
		if (rf->noselect || !folders_included(rc, rf->name))
			continue;
		char *local = folders_to_local(rc, rf->name, rf->sep);
		if (!local)
			continue;
		bool dup = false;
		for (size_t k = 0; k < plan->n; k++)
			dup |= strcmp(plan->jobs[k].local, local) == 0;
		if (dup) {
			/* Two remote folders map to one store name: syncing both
			 * would mix them. Keep the first. */
			free(local);
			continue;
		}
		uint32_t id = 0;
		store_folder_t f;
		rc2 = store_folder_find(txn, plan->account_id, local, &f);
		if (rc2 == STORE_ENOTFOUND) {
			rc2 = store_folder_create(txn, plan->account_id, local, rf->special, &id);
		} else if (rc2 == 0) {
			id = f.id;
			if (rf->special && f.special_use != rf->special)
				rc2 = store_folder_set_special_use(txn, id, rf->special);
		}
		if (rc2) {
			free(local);
			return rc2;
		}
		folder_job_t *j = add_job(plan);
		j->folder_id = id;
		j->local = local;
		j->remote = xstrdup(rf->name);
		j->special = rf->special;
		j->has_counts = rf->has_counts;
		j->counts = rf->counts;
	}

	/* Store-only folders (never created on a read-only remote). */
	rc2 = store_folder_list(txn, plan->account_id, list_store_cb, pc);
	if (rc2)
		return rc2;
	for (size_t i = 0; i < pc->n_store && !rc->readonly; i++) {
		bool have = false;
		for (size_t k = 0; k < plan->n && !have; k++)
			have = plan->jobs[k].folder_id == pc->store_ids[i];
		if (have)
			continue;
		store_replica_t rs;
		rc2 = store_replica_get(txn, pc->store_ids[i], STORE_REPLICA_REMOTE, &rs);
		if (rc2 == 0 && rs.uidvalidity != 0)
			continue; /* synced before, gone remotely: reported by the caller */
		if (rc2 && rc2 != STORE_ENOTFOUND)
			return rc2;
		char *remote = folders_to_remote(rc, pc->store_names[i], pc->sep);
		if (!remote)
			continue;
		folder_job_t *j = add_job(plan);
		j->folder_id = pc->store_ids[i];
		j->local = xstrdup(pc->store_names[i]);
		j->remote = remote;
		j->special = pc->store_special[i];
		j->create_remote = true;
	}
	return 0;
}

int folders_plan(store_t *st, const config_account_t *acct, const replica_folder_t *remote,
		 size_t n_remote, folder_plan_t *plan)
{
	plan_ctx_t pc;
	int rc;

	memset(plan, 0, sizeof(*plan));
	memset(&pc, 0, sizeof(pc));
	pc.acct = acct;
	pc.remote = remote;
	pc.n_remote = n_remote;
	pc.plan = plan;
	pc.sep = '/';
	for (size_t i = 0; i < n_remote; i++)
		if (remote[i].sep) {
			pc.sep = remote[i].sep;
			break;
		}
	rc = folders_account_id(st, acct->name, &plan->account_id);
	if (rc == 0)
		rc = store_write(st, plan_fn, &pc);
	if (rc == 0) {
		/* Tell about store folders whose remote side went away, and those
		 * that cannot be named on the remote. */
		for (size_t i = 0; i < pc.n_store; i++) {
			bool have = false;
			for (size_t k = 0; k < plan->n && !have; k++)
				have = plan->jobs[k].folder_id == pc.store_ids[i];
			if (!have)
				warn(plan, xasprintf("folder %s is not on the server (deleted there, "
						     "excluded, or no remote name maps back to it); "
						     "kept locally, not synced",
						     pc.store_names[i]));
		}
	}
	for (size_t i = 0; i < pc.n_store; i++)
		free(pc.store_names[i]);
	free(pc.store_names);
	free(pc.store_ids);
	free(pc.store_special);
	return rc;
}

void folders_plan_free(folder_plan_t *plan)
{
	for (size_t i = 0; i < plan->n; i++) {
		free(plan->jobs[i].local);
		free(plan->jobs[i].remote);
	}
	free(plan->jobs);
	for (size_t i = 0; i < plan->n_warnings; i++)
		free(plan->warnings[i]);
	free(plan->warnings);
	memset(plan, 0, sizeof(*plan));
}
