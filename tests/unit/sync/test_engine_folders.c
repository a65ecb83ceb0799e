/*
 * Folder naming and planning (sync/folders.c): include/exclude, nametrans
 * with \1 references, separators, the round trip for store-only folders,
 * and the plan against a real store (new remote folders created in the
 * store with SPECIAL-USE, store-only folders marked for creation remotely,
 * folders synced before and gone remotely left alone).
 */
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "lib/config.h"
#include "lib/util.h"
#include "store/store.h"
#include "sync/folders.h"
#include "testutil.h"

static void set_regex(config_regex_t *r, const char *pat)
{
	r->pattern = (char *)pat;
	CHECK_EQ_INT(regcomp(&r->re, pat, REG_EXTENDED | REG_NOSUB), 0);
}

static void set_nt(config_nametrans_t *n, const char *match, const char *replace)
{
	n->match = (char *)match;
	n->replace = (char *)replace;
	CHECK_EQ_INT(regcomp(&n->re, match, REG_EXTENDED), 0);
}

static int streq(char *got, const char *want)
{
	int ok = (got == NULL && want == NULL) || (got && want && strcmp(got, want) == 0);
	if (!ok)
		fprintf(stderr, "got '%s', want '%s'\n", got ? got : "(null)", want ? want : "(null)");
	free(got);
	return ok;
}

static void test_names(void)
{
	config_remote_t rc;
	config_regex_t inc[1], exc[1];
	config_nametrans_t nt[2];

	memset(&rc, 0, sizeof(rc));
	rc.reference = "Mail";
	CHECK(folders_included(&rc, "anything"));
	set_regex(&inc[0], "^(INBOX|Mail/)");
	set_regex(&exc[0], "^Mail/Trash$");
	rc.include = inc;
	rc.n_include = 1;
	rc.exclude = exc;
	rc.n_exclude = 1;
	CHECK(folders_included(&rc, "INBOX"));
	CHECK(folders_included(&rc, "Mail/Lists/dev"));
	CHECK(!folders_included(&rc, "Mail/Trash"));
	CHECK(!folders_included(&rc, "Other"));

	set_nt(&nt[0], "^Mail/", "");
	set_nt(&nt[1], "^Archive-([0-9]+)$", "Archive/\\1");
	rc.nametrans = nt;
	rc.n_nametrans = 2;
	CHECK(streq(folders_to_local(&rc, "inbox", '/'), "INBOX"));
	CHECK(streq(folders_to_local(&rc, "Mail/Lists/dev", '/'), "Lists/dev"));
	CHECK(streq(folders_to_local(&rc, "Mail/Archive-2026", '/'), "Archive/2026"));
	CHECK(streq(folders_to_local(&rc, "Mail", '/'), "Mail"));
	/* A '.' separator becomes '/'. */
	CHECK(streq(folders_to_local(&rc, "Mail/a.b", '.'), "a/b"));
	/* Store-only folders: the reference-prefixed name round-trips. */
	CHECK(streq(folders_to_remote(&rc, "Projects", '/'), "Mail/Projects"));
	/* With a '.' server the rules above (written for '/') do not map
	 * "Mail.Lists.x" back to "Lists/x": refused rather than guessed. */
	CHECK(streq(folders_to_remote(&rc, "Lists/x", '.'), NULL));
	CHECK(streq(folders_to_remote(&rc, "INBOX", '/'), "INBOX"));
	/* Excluded on the way back: no remote name. */
	CHECK(streq(folders_to_remote(&rc, "Trash", '/'), NULL));

	for (int i = 0; i < 2; i++)
		regfree(&nt[i].re);
	regfree(&inc[0].re);
	regfree(&exc[0].re);
}

typedef struct ids {
	uint32_t acct, fid;
} ids_t;

static int local_fn(store_txn_t *txn, void *arg)
{
	ids_t *ids = arg;
	int rc = store_account_add(txn, "home", &ids->acct);
	if (rc)
		return rc;
	rc = store_folder_create(txn, ids->acct, "Local", 0, &ids->fid);
	if (rc)
		return rc;
	uint32_t gone;
	rc = store_folder_create(txn, ids->acct, "Gone", 0, &gone);
	if (rc)
		return rc;
	store_replica_t rs = { .folder_id = gone, .replica_id = STORE_REPLICA_REMOTE,
			       .name = "Gone", .uidvalidity = 5, .uidnext = 3 };
	return store_replica_set(txn, &rs);
}

static const folder_job_t *job_for(const folder_plan_t *p, const char *local)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->jobs[i].local, local) == 0)
			return &p->jobs[i];
	return NULL;
}

static void test_plan(bool readonly)
{
	char *dir = test_tmpdir("ib-folders");
	store_t *st = NULL;
	char err[256];
	store_open_opts_t so = { .nosync = true };
	config_account_t acct;
	ids_t ids = { 0, 0 };

	CHECK_EQ_INT(store_open(dir, &so, &st, err, sizeof(err)), 0);
	CHECK_EQ_INT(store_write(st, local_fn, &ids), 0);
	memset(&acct, 0, sizeof(acct));
	acct.name = "home";
	acct.remote.reference = "";
	acct.remote.readonly = readonly;

	replica_folder_t remote[] = {
		{ .name = "INBOX", .sep = '/' },
		{ .name = "Sent", .sep = '/', .special = REPLICA_SPECIAL_SENT, .has_counts = true,
		  .counts = { 7, 10, 9, 33 } },
		{ .name = "Lists", .sep = '/', .noselect = true },
		{ .name = "Lists/dev", .sep = '/' },
	};
	folder_plan_t plan;
	CHECK_EQ_INT(folders_plan(st, &acct, remote, IB_ARRAY_LEN(remote), &plan), 0);
	CHECK_EQ_INT(plan.account_id, ids.acct);
	CHECK(job_for(&plan, "INBOX") != NULL);
	CHECK(job_for(&plan, "Lists") == NULL); /* \Noselect */
	const folder_job_t *sent = job_for(&plan, "Sent");
	CHECK(sent && sent->has_counts && sent->counts.highestmodseq == 33 &&
	      sent->special == REPLICA_SPECIAL_SENT);
	const folder_job_t *loc = job_for(&plan, "Local");
	if (readonly) {
		CHECK(loc == NULL);
	} else {
		CHECK(loc && loc->create_remote && strcmp(loc->remote, "Local") == 0 &&
		      loc->folder_id == ids.fid);
	}
	/* Synced before, gone on the server: not recreated, kept, reported. */
	CHECK(job_for(&plan, "Gone") == NULL);
	CHECK(plan.n_warnings >= 1);
	folders_plan_free(&plan);

	/* The store now has the remote folders, with SPECIAL-USE. */
	store_txn_t *txn;
	store_folder_t f;
	CHECK_EQ_INT(store_txn_begin_read(st, &txn), 0);
	CHECK_EQ_INT(store_folder_find(txn, ids.acct, "Sent", &f), 0);
	CHECK_EQ_INT(f.special_use, STORE_SU_SENT);
	CHECK_EQ_INT(store_folder_find(txn, ids.acct, "Lists/dev", &f), 0);
	CHECK_EQ_INT(store_folder_find(txn, ids.acct, "Gone", &f), 0);
	store_txn_abort(txn);

	store_close(st);
	test_rmtree(dir);
	free(dir);
}

int main(void)
{
	test_names();
	test_plan(false);
	test_plan(true);
	return test_done("test_engine_folders");
}
