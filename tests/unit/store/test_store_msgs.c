/*
 * Store messages, UIDs, modseqs, the change log, flags and keywords, folders,
 * accounts, pairs, replica state and pending operations, against a real LMDB
 * store in a temporary directory.
 */
#include "testutil.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static store_t *open_store(const char *dir)
{
	char err[512];
	store_t *st = NULL;
	int rc = store_open(dir, NULL, &st, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "store_open: %s\n", err);
		exit(2);
	}
	return st;
}

static uint32_t add_msg(store_txn_t *txn, uint32_t folder, const char *body, uint32_t flags,
			uint64_t *modseq)
{
	store_msg_new_t m = {.flags = flags, .internaldate = 1700000000, .tz_offset = 60};
	uint32_t uid = 0;
	int rc = store_msg_append(txn, folder, body, strlen(body), &m, &uid, modseq);
	CHECK_EQ_INT(rc, 0);
	return uid;
}

struct collected {
	uint32_t kind[64];
	uint32_t uid[64];
	uint64_t modseq[64];
	int n;
};

static int collect_cb(const store_change_t *c, void *arg)
{
	struct collected *col = arg;
	if (col->n < 64) {
		col->kind[col->n] = c->kind;
		col->uid[col->n] = c->uid;
		col->modseq[col->n] = c->modseq;
		if (c->kind != STORE_CHANGE_EXPUNGE)
			CHECK(c->msg && c->msg->uid == c->uid && c->msg->modseq == c->modseq);
		else
			CHECK(c->msg == NULL);
	}
	col->n++;
	return 0;
}

static int find_change(const struct collected *col, uint32_t uid)
{
	for (int i = 0; i < col->n; i++)
		if (col->uid[i] == uid)
			return i;
	return -1;
}

static void test_uids_and_modseq(const char *dir)
{
	store_t *st = open_store(dir);
	store_txn_t *txn;
	uint32_t acct, fa;
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	CHECK_EQ_INT(store_account_add(txn, "home", &acct), 0);
	CHECK_EQ_INT(store_folder_create(txn, acct, "INBOX", 0, &fa), 0);
	uint64_t last_ms = 0;
	for (int i = 1; i <= 10; i++) {
		char body[64];
		snprintf(body, sizeof(body), "Subject: %d\r\n\r\nbody %d\r\n", i, i);
		uint64_t ms;
		uint32_t uid = add_msg(txn, fa, body, 0, &ms);
		CHECK_EQ_INT(uid, i);
		CHECK(ms > last_ms);
		last_ms = ms;
	}
	uint64_t ms;
	CHECK_EQ_INT(store_msg_expunge(txn, fa, 10, &ms), 0);
	CHECK(ms > last_ms);
	last_ms = ms;
	CHECK_EQ_INT(store_txn_commit(txn), 0);
	store_close(st);

	/* Reopen: the expunged top UID is not handed out again. */
	st = open_store(dir);
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	uint32_t uid = add_msg(txn, fa, "Subject: 11\r\n\r\n", 0, &ms);
	CHECK_EQ_INT(uid, 11);
	CHECK(ms > last_ms);
	last_ms = ms;
	for (uint32_t u = 1; u <= 11; u++)
		if (u != 10)
			CHECK_EQ_INT(store_msg_expunge(txn, fa, u, NULL), 0);
	/* Expunging a missing message is an error but does not poison. */
	CHECK_EQ_INT(store_msg_expunge(txn, fa, 10, NULL), STORE_ENOTFOUND);
	CHECK_EQ_INT(store_txn_err(txn), 0);
	CHECK_EQ_INT(store_txn_commit(txn), 0);
	store_close(st);

	st = open_store(dir);
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	store_folder_t f;
	CHECK_EQ_INT(store_folder_get(txn, fa, &f), 0);
	CHECK_EQ_INT(f.messages, 0);
	CHECK_EQ_INT(f.uidnext, 12);
	CHECK(f.highestmodseq == last_ms + 10);
	uid = add_msg(txn, fa, "Subject: 12\r\n\r\n", 0, &ms);
	CHECK_EQ_INT(uid, 12);
	CHECK(ms == last_ms + 11);
	CHECK_EQ_INT(store_txn_commit(txn), 0);
	CHECK_EQ_INT(store_check(st, NULL, NULL, NULL), 0);
	store_close(st);
}

static void test_changes_since(const char *dir)
{
	store_t *st = open_store(dir);
	store_txn_t *txn;
	uint32_t acct, f;
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	CHECK_EQ_INT(store_account_add(txn, "changes", &acct), 0);
	CHECK_EQ_INT(store_folder_create(txn, acct, "Box", 0, &f), 0);
	uint32_t y = add_msg(txn, f, "y", 0, NULL);
	uint32_t z = add_msg(txn, f, "z", 0, NULL);
	uint32_t v = add_msg(txn, f, "v", 0, NULL);
	uint32_t keep = add_msg(txn, f, "keep", 0, NULL);
	CHECK_EQ_INT(store_txn_commit(txn), 0);

	store_folder_t fi;
	CHECK_EQ_INT(store_txn_begin_read(st, &txn), 0);
	CHECK_EQ_INT(store_folder_get(txn, f, &fi), 0);
	store_txn_abort(txn);
	uint64_t since = fi.highestmodseq;

	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	uint32_t x = add_msg(txn, f, "x", 0, NULL);
	CHECK_EQ_INT(store_msg_set_flags(txn, f, y, STORE_FLAGS_ADD, STORE_F_SEEN, NULL, 0, NULL),
		     0);
	CHECK_EQ_INT(store_msg_expunge(txn, f, z, NULL), 0);
	uint32_t w = add_msg(txn, f, "w", 0, NULL);
	CHECK_EQ_INT(store_msg_expunge(txn, f, w, NULL), 0);
	CHECK_EQ_INT(
	    store_msg_set_flags(txn, f, v, STORE_FLAGS_ADD, STORE_F_FLAGGED, NULL, 0, NULL), 0);
	uint64_t vms;
	CHECK_EQ_INT(
	    store_msg_set_flags(txn, f, v, STORE_FLAGS_ADD, STORE_F_ANSWERED, NULL, 0, &vms), 0);
	/* No-op change: no new modseq. */
	uint64_t same;
	CHECK_EQ_INT(
	    store_msg_set_flags(txn, f, v, STORE_FLAGS_ADD, STORE_F_ANSWERED, NULL, 0, &same), 0);
	CHECK(same == vms);
	/* x changed after being added: still NEW for this reader. */
	CHECK_EQ_INT(store_msg_set_flags(txn, f, x, STORE_FLAGS_SET, STORE_F_DRAFT, NULL, 0, NULL),
		     0);
	CHECK_EQ_INT(store_txn_commit(txn), 0);

	struct collected col = {0};
	CHECK_EQ_INT(store_txn_begin_read(st, &txn), 0);
	CHECK_EQ_INT(store_changes_since(txn, f, since, collect_cb, &col), 0);
	CHECK_EQ_INT(col.n, 5);
	int i;
	CHECK((i = find_change(&col, x)) >= 0 && col.kind[i] == STORE_CHANGE_NEW);
	CHECK((i = find_change(&col, y)) >= 0 && col.kind[i] == STORE_CHANGE_FLAGS);
	CHECK((i = find_change(&col, z)) >= 0 && col.kind[i] == STORE_CHANGE_EXPUNGE);
	CHECK((i = find_change(&col, w)) >= 0 && col.kind[i] == STORE_CHANGE_EXPUNGE);
	CHECK((i = find_change(&col, v)) >= 0 && col.kind[i] == STORE_CHANGE_FLAGS &&
	      col.modseq[i] == vms);
	CHECK(find_change(&col, keep) < 0);
	for (int j = 1; j < col.n && j < 64; j++)
		CHECK(col.modseq[j] > col.modseq[j - 1]);
	/* From the top: nothing. From 0: every live message and tombstones. */
	struct collected none = {0}, all = {0};
	CHECK_EQ_INT(store_folder_get(txn, f, &fi), 0);
	CHECK_EQ_INT(store_changes_since(txn, f, fi.highestmodseq, collect_cb, &none), 0);
	CHECK_EQ_INT(none.n, 0);
	CHECK_EQ_INT(store_changes_since(txn, f, 0, collect_cb, &all), 0);
	CHECK_EQ_INT(all.n, 6); /* y v keep x live + z w tombstones */
	for (int j = 0; j < all.n; j++)
		if (all.uid[j] == y || all.uid[j] == v || all.uid[j] == keep || all.uid[j] == x)
			CHECK_EQ_INT(all.kind[j], STORE_CHANGE_NEW);
	store_txn_abort(txn);

	/* Pruning tombstones makes older "since" values inexact: refused. */
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	CHECK_EQ_INT(store_changes_prune(txn, f, since + 3), 0);
	struct collected after = {0};
	CHECK_EQ_INT(store_changes_since(txn, f, since, collect_cb, &after), STORE_ETOOOLD);
	CHECK_EQ_INT(store_txn_err(txn), 0);
	CHECK_EQ_INT(store_changes_since(txn, f, since + 3, collect_cb, &after), 0);
	CHECK(find_change(&after, z) < 0); /* z's tombstone was at since+3 */
	CHECK(find_change(&after, w) >= 0);
	CHECK_EQ_INT(store_txn_commit(txn), 0);
	CHECK_EQ_INT(store_check(st, NULL, NULL, NULL), 0);
	store_close(st);
}

static int kw_cb(const char *kw, void *arg)
{
	int *n = arg;
	(*n)++;
	(void)kw;
	return 0;
}

static void test_flags_keywords(const char *dir)
{
	store_t *st = open_store(dir);
	store_txn_t *txn;
	uint32_t acct, f;
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	CHECK_EQ_INT(store_account_add(txn, "flags", &acct), 0);
	CHECK_EQ_INT(store_folder_create(txn, acct, "Box", STORE_SU_ARCHIVE, &f), 0);
	const char *kw1[] = {"$Label2", "$Label1", "$Label2", "Work"};
	store_msg_new_t nm = {.flags = STORE_F_SEEN, .kw = {kw1, 4}};
	uint32_t uid;
	uint64_t ms;
	CHECK_EQ_INT(store_msg_append(txn, f, "abc", 3, &nm, &uid, &ms), 0);
	store_msg_t m;
	CHECK_EQ_INT(store_msg_get(txn, f, uid, &m), 0);
	CHECK_EQ_INT(m.kw.n, 3);
	CHECK(m.kw.n == 3 && strcmp(m.kw.v[0], "$Label1") == 0 &&
	      strcmp(m.kw.v[1], "$Label2") == 0 && strcmp(m.kw.v[2], "Work") == 0);
	CHECK_EQ_INT(m.flags, STORE_F_SEEN);
	CHECK_EQ_INT(m.size, 3);
	CHECK_EQ_INT(m.tz_offset, 0);
	/* Remove one keyword, add a flag. */
	const char *rm[] = {"$Label2"};
	store_keywords_t rmk = {rm, 1};
	CHECK_EQ_INT(store_msg_set_flags(txn, f, uid, STORE_FLAGS_REMOVE, 0, &rmk, 0, NULL), 0);
	CHECK_EQ_INT(
	    store_msg_set_flags(txn, f, uid, STORE_FLAGS_ADD, STORE_F_FLAGGED, NULL, 0, NULL), 0);
	CHECK_EQ_INT(store_msg_get(txn, f, uid, &m), 0);
	CHECK(m.kw.n == 2 && strcmp(m.kw.v[0], "$Label1") == 0 && strcmp(m.kw.v[1], "Work") == 0);
	CHECK_EQ_INT(m.flags, STORE_F_SEEN | STORE_F_FLAGGED);
	/* UNCHANGEDSINCE older than the message: conflict, nothing written. */
	CHECK_EQ_INT(store_msg_set_flags(txn, f, uid, STORE_FLAGS_SET, 0, NULL, ms, NULL),
		     STORE_ECONFLICT);
	CHECK_EQ_INT(store_txn_err(txn), 0);
	CHECK_EQ_INT(store_msg_get(txn, f, uid, &m), 0);
	CHECK_EQ_INT(m.flags, STORE_F_SEEN | STORE_F_FLAGGED);
	/* Bad keyword: refused. */
	const char *bad[] = {"has space"};
	store_keywords_t badk = {bad, 1};
	CHECK_EQ_INT(store_msg_set_flags(txn, f, uid, STORE_FLAGS_ADD, 0, &badk, 0, NULL),
		     STORE_EINVAL);
	/* Many keywords: no fixed limit. */
	enum { NKW = 2000 };
	char **many = malloc(NKW * sizeof(*many));
	for (int i = 0; i < NKW; i++) {
		many[i] = malloc(32);
		snprintf(many[i], 32, "kw%05d", i);
	}
	store_keywords_t mk = {(const char *const *)many, NKW};
	CHECK_EQ_INT(store_msg_set_flags(txn, f, uid, STORE_FLAGS_SET, 0, &mk, 0, NULL), 0);
	CHECK_EQ_INT(store_msg_get(txn, f, uid, &m), 0);
	CHECK_EQ_INT(m.kw.n, NKW);
	CHECK(m.kw.n == NKW && strcmp(m.kw.v[NKW - 1], "kw01999") == 0);
	for (int i = 0; i < NKW; i++)
		free(many[i]);
	free(many);
	int nkw = 0;
	CHECK_EQ_INT(store_folder_keywords(txn, f, kw_cb, &nkw), 0);
	CHECK_EQ_INT(nkw, NKW + 3);
	store_folder_t fi;
	CHECK_EQ_INT(store_folder_get(txn, f, &fi), 0);
	CHECK_EQ_INT(fi.unseen, 1);
	CHECK_EQ_INT(fi.special_use, STORE_SU_ARCHIVE);
	CHECK_EQ_INT(store_txn_commit(txn), 0);
	CHECK_EQ_INT(store_check(st, NULL, NULL, NULL), 0);
	store_close(st);
}

static int folder_count_cb(const store_folder_t *f, void *arg)
{
	(void)f;
	(*(int *)arg)++;
	return 0;
}

static int acct_cb(const store_account_t *a, void *arg)
{
	(void)a;
	(*(int *)arg)++;
	return 0;
}

struct commit_seen {
	uint32_t ids[8];
	size_t n;
	int calls;
};

static void commit_cb(store_t *st, const uint32_t *ids, size_t n, void *arg)
{
	(void)st;
	struct commit_seen *cs = arg;
	cs->calls++;
	cs->n = n;
	for (size_t i = 0; i < n && i < 8; i++)
		cs->ids[i] = ids[i];
}

static void test_folders_accounts(const char *dir)
{
	store_t *st = open_store(dir);
	struct commit_seen cs = {0};
	store_set_commit_cb(st, commit_cb, &cs);
	store_txn_t *txn;
	uint32_t acct, a2, f1, f2, f3, again;
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	CHECK_EQ_INT(store_account_add(txn, "work", &acct), 0);
	CHECK_EQ_INT(store_account_add(txn, "work", &again), STORE_EEXIST);
	CHECK_EQ_INT(again, acct);
	CHECK_EQ_INT(store_account_add(txn, "", &again), STORE_EINVAL);
	CHECK_EQ_INT(store_folder_create(txn, acct, "INBOX", 0, &f1), 0);
	CHECK_EQ_INT(store_folder_create(txn, acct, "Sent", STORE_SU_SENT, &f2), 0);
	CHECK_EQ_INT(store_folder_create(txn, acct, "Lists/a", 0, &f3), 0);
	CHECK_EQ_INT(store_folder_create(txn, acct, "INBOX", 0, &again), STORE_EEXIST);
	CHECK_EQ_INT(again, f1);
	CHECK_EQ_INT(store_folder_create(txn, 9999, "X", 0, &again), STORE_ENOTFOUND);
	CHECK_EQ_INT(store_txn_err(txn), 0);
	add_msg(txn, f1, "one", 0, NULL);
	add_msg(txn, f1, "shared", 0, NULL);
	add_msg(txn, f3, "shared", 0, NULL);
	CHECK_EQ_INT(store_txn_commit(txn), 0);
	CHECK_EQ_INT(cs.calls, 1);
	CHECK(cs.n == 3 && cs.ids[0] == f1 && cs.ids[1] == f2 && cs.ids[2] == f3);

	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	store_folder_t fi, fj;
	CHECK_EQ_INT(store_folder_get(txn, f1, &fi), 0);
	CHECK_EQ_INT(store_folder_get(txn, f2, &fj), 0);
	CHECK(fi.uidvalidity != fj.uidvalidity);
	CHECK_EQ_INT(store_folder_rename(txn, f3, "Lists/b"), 0);
	CHECK_EQ_INT(store_folder_rename(txn, f3, "INBOX"), STORE_EEXIST);
	CHECK_EQ_INT(store_folder_find(txn, acct, "Lists/a", &fi), STORE_ENOTFOUND);
	CHECK_EQ_INT(store_folder_find(txn, acct, "Lists/b", &fi), 0);
	CHECK_EQ_INT(fi.id, f3);
	CHECK_EQ_INT(fi.messages, 1);
	CHECK_EQ_INT(store_folder_hold(txn, f1, "UIDVALIDITY changed"), 0);
	CHECK_EQ_INT(store_folder_get(txn, f1, &fi), 0);
	CHECK_EQ_INT(fi.state, STORE_FOLDER_HELD);
	CHECK(strcmp(fi.held_reason, "UIDVALIDITY changed") == 0);
	CHECK_EQ_INT(store_folder_release(txn, f1), 0);
	CHECK_EQ_INT(store_folder_get(txn, f1, &fi), 0);
	CHECK_EQ_INT(fi.state, STORE_FOLDER_ACTIVE);
	int nf = 0;
	CHECK_EQ_INT(store_folder_list(txn, acct, folder_count_cb, &nf), 0);
	CHECK_EQ_INT(nf, 3);
	/* Delete a folder: its blob reference goes, the shared blob stays. */
	store_msg_t m;
	CHECK_EQ_INT(store_msg_get(txn, f3, 1, &m), 0);
	store_hash_t shared = m.hash;
	uint64_t refs = 0;
	CHECK_EQ_INT(store_blob_refs(txn, &shared, &refs), 0);
	CHECK_EQ_INT(refs, 2);
	CHECK_EQ_INT(store_folder_delete(txn, f3), 0);
	CHECK_EQ_INT(store_blob_refs(txn, &shared, &refs), 0);
	CHECK_EQ_INT(refs, 1);
	CHECK_EQ_INT(store_folder_get(txn, f3, &fi), STORE_ENOTFOUND);
	/* A new folder never reuses the id or UIDVALIDITY. */
	uint32_t f4;
	CHECK_EQ_INT(store_folder_create(txn, acct, "Lists/b", 0, &f4), 0);
	CHECK(f4 > f3);
	CHECK_EQ_INT(store_txn_commit(txn), 0);

	/* Remove without purge keeps data; add revives; purge drops all. */
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	CHECK_EQ_INT(store_account_add(txn, "other", &a2), 0);
	CHECK_EQ_INT(store_account_remove(txn, acct, false), 0);
	store_account_t ai;
	CHECK_EQ_INT(store_account_find(txn, "work", &ai), 0);
	CHECK(ai.flags & STORE_ACCOUNT_REMOVED);
	CHECK_EQ_INT(store_account_add(txn, "work", &again), 0);
	CHECK_EQ_INT(again, acct);
	CHECK_EQ_INT(store_account_get(txn, acct, &ai), 0);
	CHECK_EQ_INT(ai.flags, 0);
	CHECK_EQ_INT(store_account_attr_set(txn, acct, "passwd", "$y$abc", 6), 0);
	const void *val;
	size_t vlen;
	CHECK_EQ_INT(store_account_attr_get(txn, acct, "passwd", &val, &vlen), 0);
	CHECK(vlen == 6 && memcmp(val, "$y$abc", 6) == 0);
	store_pair_t p = {.replica_uid = 5, .store_uid = 1};
	CHECK_EQ_INT(store_pair_set(txn, f1, STORE_REPLICA_REMOTE, &p), 0);
	store_pending_t pend = {.kind = STORE_PENDING_UPLOAD, .folder_id = f1, .store_uid = 1};
	CHECK_EQ_INT(store_pending_add(txn, &pend, NULL), 0);
	CHECK_EQ_INT(store_account_remove(txn, acct, true), 0);
	CHECK_EQ_INT(store_account_find(txn, "work", &ai), STORE_ENOTFOUND);
	CHECK_EQ_INT(store_folder_get(txn, f1, &fi), STORE_ENOTFOUND);
	CHECK_EQ_INT(store_blob_refs(txn, &shared, &refs), STORE_ENOTFOUND);
	CHECK_EQ_INT(store_account_attr_get(txn, acct, "passwd", &val, &vlen), STORE_ENOTFOUND);
	CHECK_EQ_INT(store_pair_get_by_ruid(txn, f1, STORE_REPLICA_REMOTE, 5, &p), STORE_ENOTFOUND);
	int na = 0;
	CHECK_EQ_INT(store_account_list(txn, acct_cb, &na), 0);
	CHECK(na >= 1);
	CHECK_EQ_INT(store_account_find(txn, "other", &ai), 0);
	CHECK_EQ_INT(ai.id, a2);
	CHECK_EQ_INT(store_txn_commit(txn), 0);
	CHECK_EQ_INT(store_check(st, NULL, NULL, NULL), 0);
	store_close(st);
}

static int pair_cb(const store_pair_t *p, void *arg)
{
	uint32_t *last = arg;
	CHECK(p->replica_uid > *last);
	*last = p->replica_uid;
	return 0;
}

static int stop_cb(const store_pending_t *p, void *arg)
{
	(void)p;
	(*(int *)arg)++;
	return 42;
}

static void test_pairs_pending(const char *dir)
{
	store_t *st = open_store(dir);
	store_txn_t *txn;
	uint32_t acct, f, dst;
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	CHECK_EQ_INT(store_account_add(txn, "pairs", &acct), 0);
	CHECK_EQ_INT(store_folder_create(txn, acct, "INBOX", 0, &f), 0);
	CHECK_EQ_INT(store_folder_create(txn, acct, "Archive", 0, &dst), 0);
	uint32_t s1 = add_msg(txn, f, "p1", 0, NULL);
	uint32_t s2 = add_msg(txn, f, "p2", 0, NULL);
	const char *kw[] = {"$Junk"};
	store_pair_t p = {
	    .replica_uid = 100, .store_uid = s1, .flags = STORE_F_SEEN, .kw = {kw, 1}};
	CHECK_EQ_INT(store_pair_set(txn, f, STORE_REPLICA_REMOTE, &p), 0);
	p = (store_pair_t){.replica_uid = 7, .store_uid = s2};
	CHECK_EQ_INT(store_pair_set(txn, f, STORE_REPLICA_REMOTE, &p), 0);
	p = (store_pair_t){.replica_uid = s1, .store_uid = s1};
	CHECK_EQ_INT(store_pair_set(txn, f, STORE_REPLICA_MAILDIR, &p), 0);
	store_pair_t q;
	CHECK_EQ_INT(store_pair_get_by_ruid(txn, f, STORE_REPLICA_REMOTE, 100, &q), 0);
	CHECK(q.store_uid == s1 && q.flags == STORE_F_SEEN && q.kw.n == 1 &&
	      strcmp(q.kw.v[0], "$Junk") == 0);
	CHECK_EQ_INT(store_pair_get_by_suid(txn, f, STORE_REPLICA_REMOTE, s2, &q), 0);
	CHECK_EQ_INT(q.replica_uid, 7);
	/* One-to-one: pairing s1 with another replica UID replaces the old pair. */
	p = (store_pair_t){.replica_uid = 101, .store_uid = s1};
	CHECK_EQ_INT(store_pair_set(txn, f, STORE_REPLICA_REMOTE, &p), 0);
	CHECK_EQ_INT(store_pair_get_by_ruid(txn, f, STORE_REPLICA_REMOTE, 100, &q),
		     STORE_ENOTFOUND);
	CHECK_EQ_INT(store_pair_get_by_suid(txn, f, STORE_REPLICA_REMOTE, s1, &q), 0);
	CHECK_EQ_INT(q.replica_uid, 101);
	uint32_t last = 0;
	CHECK_EQ_INT(store_pair_iter(txn, f, STORE_REPLICA_REMOTE, 1, pair_cb, &last), 0);
	CHECK_EQ_INT(last, 101);
	CHECK_EQ_INT(store_pair_del(txn, f, STORE_REPLICA_REMOTE, 7), 0);
	CHECK_EQ_INT(store_pair_del(txn, f, STORE_REPLICA_REMOTE, 7), STORE_ENOTFOUND);
	CHECK_EQ_INT(store_pair_get_by_suid(txn, f, STORE_REPLICA_REMOTE, s2, &q), STORE_ENOTFOUND);

	store_replica_t r = {.folder_id = f,
			     .replica_id = STORE_REPLICA_REMOTE,
			     .name = "INBOX",
			     .uidvalidity = 1234,
			     .uidnext = 102,
			     .highestmodseq = 99,
			     .pushed_modseq = 5,
			     .synced_at = 1700000123, .flags = STORE_REPLICA_KW_KNOWN};
	CHECK_EQ_INT(store_replica_set(txn, &r), 0);
	store_replica_t rr;
	CHECK_EQ_INT(store_replica_get(txn, f, STORE_REPLICA_REMOTE, &rr), 0);
	CHECK(rr.uidvalidity == 1234 && rr.uidnext == 102 && rr.highestmodseq == 99 &&
	      rr.pushed_modseq == 5 && strcmp(rr.name, "INBOX") == 0 && rr.synced_at == 1700000123 &&
	      rr.flags == STORE_REPLICA_KW_KNOWN);
	CHECK_EQ_INT(store_replica_get(txn, f, STORE_REPLICA_MAILDIR, &rr), STORE_ENOTFOUND);

	store_pending_t pend = {.kind = STORE_PENDING_UPLOAD,
				.folder_id = f,
				.replica_id = STORE_REPLICA_REMOTE,
				.store_uid = s2,
				.target_uidnext = 102,
				.message_id = "<a@b>",
				.created = 17};
	uint64_t id1, id2;
	CHECK_EQ_INT(store_pending_add(txn, &pend, &id1), 0);
	pend.kind = STORE_PENDING_DELETE;
	pend.replica_uid = 101;
	CHECK_EQ_INT(store_pending_add(txn, &pend, &id2), 0);
	CHECK(id2 > id1);
	store_pending_t pg;
	CHECK_EQ_INT(store_pending_get(txn, id1, &pg), 0);
	CHECK(pg.kind == STORE_PENDING_UPLOAD && pg.store_uid == s2 && pg.target_uidnext == 102 &&
	      strcmp(pg.message_id, "<a@b>") == 0 && pg.created == 17);
	int seen = 0;
	/* A callback's own non-zero value stops and is returned, not sticky. */
	CHECK_EQ_INT(store_pending_list(txn, f, stop_cb, &seen), 42);
	CHECK_EQ_INT(seen, 1);
	CHECK_EQ_INT(store_txn_err(txn), 0);
	CHECK_EQ_INT(store_pending_del(txn, id1), 0);
	CHECK_EQ_INT(store_pending_get(txn, id1, &pg), STORE_ENOTFOUND);
	/* Move keeps the blob, gets a new UID in the destination. */
	uint32_t nuid;
	store_msg_t m;
	CHECK_EQ_INT(store_msg_get(txn, f, s1, &m), 0);
	store_hash_t h = m.hash;
	CHECK_EQ_INT(store_msg_move(txn, f, s1, dst, &nuid), 0);
	CHECK_EQ_INT(nuid, 1);
	CHECK_EQ_INT(store_msg_get(txn, f, s1, &m), STORE_ENOTFOUND);
	CHECK_EQ_INT(store_msg_get(txn, dst, nuid, &m), 0);
	CHECK(memcmp(m.hash.b, h.b, STORE_HASH_LEN) == 0);
	uint64_t refs;
	CHECK_EQ_INT(store_blob_refs(txn, &h, &refs), 0);
	CHECK_EQ_INT(refs, 1);
	CHECK_EQ_INT(store_replica_drop(txn, f, STORE_REPLICA_REMOTE), 0);
	CHECK_EQ_INT(store_pair_get_by_ruid(txn, f, STORE_REPLICA_REMOTE, 101, &q),
		     STORE_ENOTFOUND);
	CHECK_EQ_INT(store_pair_get_by_ruid(txn, f, STORE_REPLICA_MAILDIR, s1, &q), 0);
	CHECK_EQ_INT(store_txn_commit(txn), 0);
	CHECK_EQ_INT(store_check(st, NULL, NULL, NULL), 0);

	/* Find by content; a too long folder name is refused cleanly. */
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	store_txn_t *second;
	CHECK_EQ_INT(store_txn_begin_write(st, &second), STORE_EBUSY);
	store_txn_t *reader;
	CHECK_EQ_INT(store_txn_begin_read(st, &reader), 0);
	store_txn_abort(reader);
	uint32_t found;
	CHECK_EQ_INT(store_msg_find_by_hash(txn, dst, &h, &found), 0);
	CHECK_EQ_INT(found, nuid);
	CHECK_EQ_INT(store_msg_find_by_hash(txn, f, &h, &found), STORE_ENOTFOUND);
	char longname[600];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	uint32_t lf;
	CHECK_EQ_INT(store_folder_create(txn, acct, longname, 0, &lf), STORE_EINVAL);
	longname[500] = '\0';
	CHECK_EQ_INT(store_folder_create(txn, acct, longname, 0, &lf), 0);
	CHECK_EQ_INT(store_txn_err(txn), 0);
	CHECK_EQ_INT(store_txn_commit(txn), 0);

	/* A read transaction refuses writes without failing. */
	CHECK_EQ_INT(store_txn_begin_read(st, &txn), 0);
	CHECK_EQ_INT(store_pending_del(txn, id2), STORE_ERDONLY);
	CHECK_EQ_INT(store_pending_get(txn, id2, &pg), 0);
	store_txn_abort(txn);
	store_close(st);
}

int main(void)
{
	char *dir = test_tmpdir("store-msgs");
	test_uids_and_modseq(dir);
	test_changes_since(dir);
	test_flags_keywords(dir);
	test_folders_accounts(dir);
	test_pairs_pending(dir);
	test_rmtree(dir);
	free(dir);
	return test_done("test_store_msgs");
}
