/*
 * store_check(): a full consistency walk in one read transaction, for the
 * crash tests and the admin CLI. Each database is scanned once in key order
 * and cross-checked against the others; problems are reported one line each.
 */
#include "store/store_p.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fstate {
	store_folder_t f;
	uint32_t messages, unseen, live_changes;
};

struct check {
	store_txn_t *txn;
	store_problem_cb cb;
	void *arg;
	size_t problems;
	struct fstate *folders;
	size_t nfolders;
	store_hash_t *refs;
	size_t nrefs, caprefs;
	uint32_t max_account;
};

static void problem(struct check *ck, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct check *ck, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	ck->problems++;
	if (ck->cb)
		ck->cb(line, ck->arg);
}

static struct fstate *find_folder(struct check *ck, uint32_t id)
{
	size_t lo = 0, hi = ck->nfolders;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (ck->folders[mid].f.id == id)
			return &ck->folders[mid];
		if (ck->folders[mid].f.id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static bool exists(store_txn_t *txn, int db, const void *k, size_t kl, MDB_val *v)
{
	MDB_val tmp;
	return db_get(txn, db, k, kl, v ? v : &tmp) == 0;
}

/* Scan a whole database; fn returns a STORE_E* code to abort the check. */
typedef int (*scan_fn)(struct check *ck, const MDB_val *k, const MDB_val *v);
static int scan(struct check *ck, int db, scan_fn fn)
{
	MDB_cursor *c = NULL;
	int rc = db_cursor(ck->txn, db, &c);
	if (rc)
		return rc;
	MDB_val k, v;
	int mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	while (mrc == MDB_SUCCESS) {
		size_t mark = txn_scratch_mark(ck->txn);
		rc = fn(ck, &k, &v);
		txn_scratch_release(ck->txn, mark);
		if (rc)
			break;
		mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	if (!rc && mrc != MDB_NOTFOUND)
		rc = store_map_mdb(mrc);
	return rc;
}

static int scan_accounts(struct check *ck, const MDB_val *k, const MDB_val *v)
{
	if (k->mv_size != 4) {
		problem(ck, "accounts: key of %zu bytes", k->mv_size);
		return 0;
	}
	uint32_t id = ib_get_be32(k->mv_data);
	dec_t d = dec_init(v);
	dec_u32(&d);
	const char *name = dec_str(&d);
	if (d.bad) {
		problem(ck, "account %u: bad record", id);
		return 0;
	}
	if (id > ck->max_account)
		ck->max_account = id;
	MDB_val iv;
	if (!exists(ck->txn, DB_ACCT_NAMES, name, strlen(name), &iv) || iv.mv_size != 4 ||
	    ib_get_be32(iv.mv_data) != id)
		problem(ck, "account %u (%s): name index does not point back", id, name);
	return 0;
}

static int scan_acct_names(struct check *ck, const MDB_val *k, const MDB_val *v)
{
	uint8_t kb[4];
	if (v->mv_size != 4) {
		problem(ck, "account name index: bad value");
		return 0;
	}
	memcpy(kb, v->mv_data, 4);
	if (!exists(ck->txn, DB_ACCOUNTS, kb, 4, NULL))
		problem(ck, "account name '%.*s' points to missing account %u", (int)k->mv_size,
			(const char *)k->mv_data, ib_get_be32(kb));
	return 0;
}

static int scan_folders(struct check *ck, const MDB_val *k, const MDB_val *v)
{
	(void)v;
	if (k->mv_size != 4) {
		problem(ck, "folders: key of %zu bytes", k->mv_size);
		return 0;
	}
	uint32_t id = ib_get_be32(k->mv_data);
	store_folder_t f;
	int rc = folder_load(ck->txn, id, &f);
	if (rc == STORE_ECORRUPT) {
		problem(ck, "folder %u: bad record", id);
		return 0;
	}
	if (rc)
		return rc;
	/* Keep name/reason beyond the scratch release of scan(). */
	f.name = xstrdup(f.name);
	f.held_reason = xstrdup(f.held_reason);
	ck->folders = xrealloc(ck->folders, (ck->nfolders + 1) * sizeof(*ck->folders));
	struct fstate *fs = &ck->folders[ck->nfolders++];
	memset(fs, 0, sizeof(*fs));
	fs->f = f;
	uint8_t ak[4];
	ib_put_be32(ak, f.account_id);
	if (!exists(ck->txn, DB_ACCOUNTS, ak, 4, NULL))
		problem(ck, "folder %u (%s): account %u missing", id, f.name, f.account_id);
	size_t nl = strlen(f.name);
	uint8_t *nk = xmalloc(4 + nl);
	memcpy(nk, ak, 4);
	memcpy(nk + 4, f.name, nl);
	MDB_val iv;
	if (!exists(ck->txn, DB_FOLDER_NAMES, nk, 4 + nl, &iv) || iv.mv_size != 4 ||
	    ib_get_be32(iv.mv_data) != id)
		problem(ck, "folder %u (%s): name index does not point back", id, f.name);
	free(nk);
	if (f.uidnext == 0 || f.highestmodseq == 0)
		problem(ck, "folder %u: uidnext %u / highestmodseq %llu zero", id, f.uidnext,
			(unsigned long long)f.highestmodseq);
	return 0;
}

static int scan_folder_names(struct check *ck, const MDB_val *k, const MDB_val *v)
{
	if (k->mv_size <= 4 || v->mv_size != 4) {
		problem(ck, "folder name index: bad entry");
		return 0;
	}
	uint32_t acct = ib_get_be32(k->mv_data), id = ib_get_be32(v->mv_data);
	struct fstate *fs = find_folder(ck, id);
	int nl = (int)(k->mv_size - 4);
	const char *name = (const char *)k->mv_data + 4;
	if (!fs || fs->f.account_id != acct || strlen(fs->f.name) != (size_t)nl ||
	    memcmp(fs->f.name, name, (size_t)nl) != 0)
		problem(ck,
			"folder name '%.*s' of account %u points to folder %u, which does not "
			"match",
			nl, name, acct, id);
	return 0;
}

static int scan_messages(struct check *ck, const MDB_val *k, const MDB_val *v)
{
	if (k->mv_size != 8) {
		problem(ck, "messages: key of %zu bytes", k->mv_size);
		return 0;
	}
	uint32_t fid = ib_get_be32(k->mv_data), uid = ib_get_be32((uint8_t *)k->mv_data + 4);
	store_msg_t m;
	if (msg_decode(ck->txn, fid, uid, v, &m)) {
		problem(ck, "folder %u uid %u: bad message record", fid, uid);
		return 0;
	}
	struct fstate *fs = find_folder(ck, fid);
	if (!fs) {
		problem(ck, "folder %u uid %u: message of a missing folder", fid, uid);
		return 0;
	}
	fs->messages++;
	if (!(m.flags & STORE_F_SEEN))
		fs->unseen++;
	if (uid == 0 || uid >= fs->f.uidnext)
		problem(ck, "folder %u uid %u: not below uidnext %u", fid, uid, fs->f.uidnext);
	if (m.modseq > fs->f.highestmodseq || m.added_modseq > m.modseq || m.added_modseq == 0)
		problem(ck, "folder %u uid %u: modseq %llu (added %llu) vs highestmodseq %llu", fid,
			uid, (unsigned long long)m.modseq, (unsigned long long)m.added_modseq,
			(unsigned long long)fs->f.highestmodseq);
	if (m.flags & ~(uint32_t)STORE_F_ALL)
		problem(ck, "folder %u uid %u: unknown flag bits %#x", fid, uid, m.flags);
	uint8_t ck_key[12];
	ib_put_be32(ck_key, fid);
	ib_put_be64(ck_key + 4, m.modseq);
	MDB_val cv;
	if (!exists(ck->txn, DB_CHANGES, ck_key, 12, &cv) || cv.mv_size != 5 ||
	    ((uint8_t *)cv.mv_data)[0] != 1 || ib_get_be32((uint8_t *)cv.mv_data + 1) != uid)
		problem(ck, "folder %u uid %u: no change log entry at its modseq %llu", fid, uid,
			(unsigned long long)m.modseq);
	MDB_val bv;
	char hex[2 * STORE_HASH_LEN + 1];
	if (!exists(ck->txn, DB_BLOBS, m.hash.b, STORE_HASH_LEN, &bv))
		problem(ck, "folder %u uid %u: blob %s missing", fid, uid,
			store_hash_hex(&m.hash, hex));
	else if (bv.mv_size != m.size)
		problem(ck, "folder %u uid %u: size %llu but blob has %zu bytes", fid, uid,
			(unsigned long long)m.size, bv.mv_size);
	if (ck->nrefs == ck->caprefs) {
		ck->caprefs = ck->caprefs ? 2 * ck->caprefs : 256;
		ck->refs = xrealloc(ck->refs, ck->caprefs * sizeof(*ck->refs));
	}
	ck->refs[ck->nrefs++] = m.hash;
	return 0;
}

static int scan_changes(struct check *ck, const MDB_val *k, const MDB_val *v)
{
	if (k->mv_size != 12 || v->mv_size != 5) {
		problem(ck, "changes: bad entry");
		return 0;
	}
	uint32_t fid = ib_get_be32(k->mv_data);
	uint64_t ms = ib_get_be64((uint8_t *)k->mv_data + 4);
	uint8_t kind = ((uint8_t *)v->mv_data)[0];
	uint32_t uid = ib_get_be32((uint8_t *)v->mv_data + 1);
	struct fstate *fs = find_folder(ck, fid);
	if (!fs) {
		problem(ck, "change %llu of missing folder %u", (unsigned long long)ms, fid);
		return 0;
	}
	if (ms > fs->f.highestmodseq || ms == 0)
		problem(ck, "folder %u: change at modseq %llu beyond highestmodseq %llu", fid,
			(unsigned long long)ms, (unsigned long long)fs->f.highestmodseq);
	if (uid == 0 || uid >= fs->f.uidnext)
		problem(ck, "folder %u: change at modseq %llu for uid %u not below uidnext %u", fid,
			(unsigned long long)ms, uid, fs->f.uidnext);
	uint8_t mk[8];
	ib_put_be32(mk, fid);
	ib_put_be32(mk + 4, uid);
	MDB_val mv;
	bool live = exists(ck->txn, DB_MESSAGES, mk, 8, &mv);
	if (kind == 1) {
		fs->live_changes++;
		if (!live)
			problem(ck, "folder %u: change at modseq %llu for missing uid %u", fid,
				(unsigned long long)ms, uid);
	} else if (kind == 3) {
		if (live)
			problem(ck, "folder %u: tombstone at modseq %llu for live uid %u", fid,
				(unsigned long long)ms, uid);
		if (ms <= fs->f.pruned_modseq)
			problem(ck, "folder %u: tombstone at modseq %llu was pruned", fid,
				(unsigned long long)ms);
	} else {
		problem(ck, "folder %u: change at modseq %llu of unknown kind %u", fid,
			(unsigned long long)ms, kind);
	}
	return 0;
}

static int cmp_hash(const void *a, const void *b)
{
	return memcmp(a, b, STORE_HASH_LEN);
}

static int scan_blobrefs(struct check *ck, const MDB_val *k, const MDB_val *v)
{
	char hex[2 * STORE_HASH_LEN + 1];
	if (k->mv_size != STORE_HASH_LEN || v->mv_size != 8) {
		problem(ck, "blobrefs: bad entry");
		return 0;
	}
	store_hash_t h;
	memcpy(h.b, k->mv_data, STORE_HASH_LEN);
	uint64_t refs = ib_get_be64(v->mv_data);
	/* Count references found in messages (refs[] is sorted). */
	store_hash_t *p = ck->nrefs ? bsearch(&h, ck->refs, ck->nrefs, sizeof(h), cmp_hash) : NULL;
	uint64_t found = 0;
	if (p) {
		while (p > ck->refs && cmp_hash(p - 1, &h) == 0)
			p--;
		while (p < ck->refs + ck->nrefs && cmp_hash(p, &h) == 0) {
			found++;
			p++;
		}
	}
	if (refs != found)
		problem(ck, "blob %s: reference count %llu, but %llu messages use it",
			store_hash_hex(&h, hex), (unsigned long long)refs,
			(unsigned long long)found);
	MDB_val bv;
	if (!exists(ck->txn, DB_BLOBS, h.b, STORE_HASH_LEN, &bv)) {
		problem(ck, "blob %s: counted but its bytes are missing", store_hash_hex(&h, hex));
	} else {
		store_hash_t real;
		store_hash_compute(bv.mv_data, bv.mv_size, &real);
		if (memcmp(real.b, h.b, STORE_HASH_LEN) != 0)
			problem(ck, "blob %s: bytes do not match their hash",
				store_hash_hex(&h, hex));
	}
	return 0;
}

static int scan_blobs(struct check *ck, const MDB_val *k, const MDB_val *v)
{
	(void)v;
	char hex[2 * STORE_HASH_LEN + 1];
	store_hash_t h;
	if (k->mv_size != STORE_HASH_LEN) {
		problem(ck, "blobs: key of %zu bytes", k->mv_size);
		return 0;
	}
	memcpy(h.b, k->mv_data, STORE_HASH_LEN);
	if (!exists(ck->txn, DB_BLOBREFS, h.b, STORE_HASH_LEN, NULL))
		problem(ck, "blob %s: no reference count", store_hash_hex(&h, hex));
	return 0;
}

static int scan_pairs(struct check *ck, const MDB_val *k, const MDB_val *v)
{
	if (k->mv_size != 12 || v->mv_size < 12) {
		problem(ck, "pairs: bad entry");
		return 0;
	}
	uint32_t fid = ib_get_be32(k->mv_data), rid = ib_get_be32((uint8_t *)k->mv_data + 4);
	uint32_t ruid = ib_get_be32((uint8_t *)k->mv_data + 8);
	uint32_t suid = ib_get_be32(v->mv_data);
	if (!find_folder(ck, fid))
		problem(ck, "pair %u/%u/%u: folder missing", fid, rid, ruid);
	uint8_t rk[12];
	memcpy(rk, k->mv_data, 8);
	ib_put_be32(rk + 8, suid);
	MDB_val rv;
	if (!exists(ck->txn, DB_PAIRS_REV, rk, 12, &rv) || rv.mv_size != 4 ||
	    ib_get_be32(rv.mv_data) != ruid)
		problem(ck, "pair folder %u replica %u ruid %u -> suid %u: reverse index differs",
			fid, rid, ruid, suid);
	return 0;
}

static int scan_pairs_rev(struct check *ck, const MDB_val *k, const MDB_val *v)
{
	if (k->mv_size != 12 || v->mv_size != 4) {
		problem(ck, "pairs_rev: bad entry");
		return 0;
	}
	uint8_t pk[12];
	memcpy(pk, k->mv_data, 8);
	memcpy(pk + 8, v->mv_data, 4);
	MDB_val pv;
	if (!exists(ck->txn, DB_PAIRS, pk, 12, &pv) || pv.mv_size < 4 ||
	    memcmp(pv.mv_data, (uint8_t *)k->mv_data + 8, 4) != 0)
		problem(ck, "reverse pair folder %u replica %u suid %u: no matching pair",
			ib_get_be32(k->mv_data), ib_get_be32((uint8_t *)k->mv_data + 4),
			ib_get_be32((uint8_t *)k->mv_data + 8));
	return 0;
}

static int scan_by_folder(struct check *ck, const MDB_val *k, const MDB_val *v, const char *what)
{
	(void)v;
	if (k->mv_size < 4) {
		problem(ck, "%s: bad key", what);
		return 0;
	}
	if (!find_folder(ck, ib_get_be32(k->mv_data)))
		problem(ck, "%s entry of missing folder %u", what, ib_get_be32(k->mv_data));
	return 0;
}

static int scan_replicas(struct check *ck, const MDB_val *k, const MDB_val *v)
{
	return scan_by_folder(ck, k, v, "replica state");
}

static int scan_keywords(struct check *ck, const MDB_val *k, const MDB_val *v)
{
	return scan_by_folder(ck, k, v, "keyword");
}

static int scan_pending(struct check *ck, const MDB_val *k, const MDB_val *v)
{
	if (k->mv_size != 8 || v->mv_size < 9) {
		problem(ck, "pending: bad entry");
		return 0;
	}
	uint32_t fid = ib_get_be32((uint8_t *)v->mv_data + 5);
	if (!find_folder(ck, fid))
		problem(ck, "pending operation %llu of missing folder %u",
			(unsigned long long)ib_get_be64(k->mv_data), fid);
	return 0;
}

int store_check(store_t *st, store_problem_cb cb, void *arg, size_t *nproblems)
{
	struct check ck = {.cb = cb, .arg = arg};
	int rc = store_txn_begin_read(st, &ck.txn);
	if (rc)
		return rc;
	rc = scan(&ck, DB_ACCOUNTS, scan_accounts);
	if (!rc)
		rc = scan(&ck, DB_ACCT_NAMES, scan_acct_names);
	if (!rc)
		rc = scan(&ck, DB_FOLDERS, scan_folders);
	if (!rc)
		rc = scan(&ck, DB_FOLDER_NAMES, scan_folder_names);
	if (!rc)
		rc = scan(&ck, DB_MESSAGES, scan_messages);
	if (!rc)
		rc = scan(&ck, DB_CHANGES, scan_changes);
	if (!rc) {
		if (ck.nrefs > 1)
			qsort(ck.refs, ck.nrefs, sizeof(*ck.refs), cmp_hash);
		rc = scan(&ck, DB_BLOBREFS, scan_blobrefs);
	}
	if (!rc)
		rc = scan(&ck, DB_BLOBS, scan_blobs);
	if (!rc)
		rc = scan(&ck, DB_PAIRS, scan_pairs);
	if (!rc)
		rc = scan(&ck, DB_PAIRS_REV, scan_pairs_rev);
	if (!rc)
		rc = scan(&ck, DB_REPLICAS, scan_replicas);
	if (!rc)
		rc = scan(&ck, DB_KEYWORDS, scan_keywords);
	if (!rc)
		rc = scan(&ck, DB_PENDING, scan_pending);
	for (size_t i = 0; !rc && i < ck.nfolders; i++) {
		struct fstate *fs = &ck.folders[i];
		if (fs->messages != fs->f.messages || fs->unseen != fs->f.unseen)
			problem(&ck,
				"folder %u (%s): counters say %u messages / %u unseen, found "
				"%u / %u",
				fs->f.id, fs->f.name, fs->f.messages, fs->f.unseen, fs->messages,
				fs->unseen);
		if (fs->live_changes != fs->messages)
			problem(&ck, "folder %u (%s): %u messages but %u live change entries",
				fs->f.id, fs->f.name, fs->messages, fs->live_changes);
	}
	if (!rc) {
		uint64_t next = 1;
		int r = meta_get_u64(ck.txn, "next_folder", &next);
		if ((r == 0 || r == STORE_ENOTFOUND) && ck.nfolders > 0 &&
		    ck.folders[ck.nfolders - 1].f.id >= next)
			problem(&ck, "folder id %u not below the next id %llu",
				ck.folders[ck.nfolders - 1].f.id, (unsigned long long)next);
		next = 1;
		r = meta_get_u64(ck.txn, "next_account", &next);
		if ((r == 0 || r == STORE_ENOTFOUND) && ck.max_account >= next)
			problem(&ck, "account id %u not below the next id %llu", ck.max_account,
				(unsigned long long)next);
	}
	store_txn_abort(ck.txn);
	for (size_t i = 0; i < ck.nfolders; i++) {
		free((char *)ck.folders[i].f.name);
		free((char *)ck.folders[i].f.held_reason);
	}
	free(ck.folders);
	free(ck.refs);
	if (nproblems)
		*nproblems = ck.problems;
	if (rc)
		return rc;
	return ck.problems ? STORE_ECORRUPT : 0;
}
