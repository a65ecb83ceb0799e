/*
 * Replica sync state: per (store folder, replica) the replica's UIDVALIDITY,
 * UIDNEXT, HIGHESTMODSEQ and the store modseq pushed to it; the pairs
 * (replica UID <-> store UID, flags as last agreed) with a reverse index; and
 * the pending remote operations written before an upload or a deletion.
 */
#include "store/store_p.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REPLICA_REC_VERSION 1
#define PENDING_REC_VERSION 1
#define REPLICA_NAME_MAX 2000

/* ------------------------------------------------------- replica state */

static void rep_key(uint32_t folder_id, uint32_t replica_id, uint8_t k[8])
{
	ib_put_be32(k, folder_id);
	ib_put_be32(k + 4, replica_id);
}

static int replica_decode(const MDB_val *k, const MDB_val *v, store_replica_t *out)
{
	if (k->mv_size != 8)
		return STORE_ECORRUPT;
	dec_t d = dec_init(v);
	out->folder_id = ib_get_be32(k->mv_data);
	out->replica_id = ib_get_be32((uint8_t *)k->mv_data + 4);
	uint8_t ver = dec_u8(&d);
	out->uidvalidity = dec_u32(&d);
	out->uidnext = dec_u32(&d);
	out->highestmodseq = dec_u64(&d);
	out->pushed_modseq = dec_u64(&d);
	out->name = dec_str(&d);
	out->synced_at = 0;
	out->flags = 0;
	if (!d.bad && d.end - d.p >= 8)
		out->synced_at = (int64_t)dec_u64(&d);
	if (!d.bad && d.end - d.p >= 4)
		out->flags = dec_u32(&d);
	return d.bad || ver != REPLICA_REC_VERSION ? STORE_ECORRUPT : 0;
}

int store_replica_set(store_txn_t *txn, const store_replica_t *r)
{
	int rc = txn_enter(txn, true);
	if (rc)
		return rc;
	unsigned long w = txn->nwrites;
	uint8_t k[8];
	buf_t b = BUF_INIT;
	store_folder_t f;
	if (r->name && strlen(r->name) > REPLICA_NAME_MAX) {
		rc = STORE_EINVAL;
		goto out;
	}
	rc = folder_load(txn, r->folder_id, &f);
	if (rc)
		goto out;
	rep_key(r->folder_id, r->replica_id, k);
	enc_u8(&b, REPLICA_REC_VERSION);
	enc_u32(&b, r->uidvalidity);
	enc_u32(&b, r->uidnext);
	enc_u64(&b, r->highestmodseq);
	enc_u64(&b, r->pushed_modseq);
	enc_str(&b, r->name);
	enc_u64(&b, (uint64_t)r->synced_at);
	enc_u32(&b, r->flags);
	/* A sync that changed nothing records the same state again: leave the
	 * page alone, so that its commit writes and syncs nothing. */
	MDB_val old;
	if (db_get(txn, DB_REPLICAS, k, 8, &old) == 0 && old.mv_size == b.len &&
	    memcmp(old.mv_data, b.data, b.len) == 0)
		goto out;
	rc = db_put(txn, DB_REPLICAS, k, 8, b.data, b.len, 0);
out:
	buf_free(&b);
	return txn_ret(txn, rc, w);
}

int store_replica_get(store_txn_t *txn, uint32_t folder_id, uint32_t replica_id,
		      store_replica_t *out)
{
	int rc = txn_enter(txn, false);
	if (rc)
		return rc;
	uint8_t k[8];
	rep_key(folder_id, replica_id, k);
	MDB_val key = {8, k}, v;
	rc = db_get(txn, DB_REPLICAS, k, 8, &v);
	if (!rc)
		rc = replica_decode(&key, &v, out);
	return txn_ret(txn, rc, txn->nwrites);
}

int store_replica_list(store_txn_t *txn, uint32_t folder_id, store_replica_cb cb, void *arg)
{
	int rc = txn_enter(txn, false);
	if (rc)
		return rc;
	MDB_cursor *c = NULL;
	rc = db_cursor(txn, DB_REPLICAS, &c);
	if (rc)
		return txn_ret(txn, rc, txn->nwrites);
	uint8_t pfx[4];
	ib_put_be32(pfx, folder_id);
	MDB_val k = {4, pfx}, v;
	bool stopped = false;
	int mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (mrc == MDB_SUCCESS && k.mv_size == 8 && memcmp(k.mv_data, pfx, 4) == 0) {
		store_replica_t r;
		rc = replica_decode(&k, &v, &r);
		if (!rc) {
			rc = cb(&r, arg);
			stopped = rc != 0;
		}
		if (rc)
			break;
		mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	return txn_iter_end(txn, c, rc, mrc, stopped);
}

int store_replica_drop(store_txn_t *txn, uint32_t folder_id, uint32_t replica_id)
{
	int rc = txn_enter(txn, true);
	if (rc)
		return rc;
	unsigned long w = txn->nwrites;
	uint8_t k[8];
	rep_key(folder_id, replica_id, k);
	rc = db_del(txn, DB_REPLICAS, k, 8);
	if (rc == STORE_ENOTFOUND)
		rc = 0;
	if (!rc)
		rc = db_del_prefix(txn, DB_PAIRS, k, 8);
	if (!rc)
		rc = db_del_prefix(txn, DB_PAIRS_REV, k, 8);
	return txn_ret(txn, rc, w);
}

int replica_drop_folder(store_txn_t *txn, uint32_t folder_id)
{
	uint8_t pfx[4];
	ib_put_be32(pfx, folder_id);
	int rc = db_del_prefix(txn, DB_REPLICAS, pfx, 4);
	if (!rc)
		rc = db_del_prefix(txn, DB_PAIRS, pfx, 4);
	if (!rc)
		rc = db_del_prefix(txn, DB_PAIRS_REV, pfx, 4);
	return rc;
}

/* -------------------------------------------------------------- pairs */

static void pair_key(uint32_t folder_id, uint32_t replica_id, uint32_t uid, uint8_t k[12])
{
	ib_put_be32(k, folder_id);
	ib_put_be32(k + 4, replica_id);
	ib_put_be32(k + 8, uid);
}

static int pair_decode(store_txn_t *txn, const MDB_val *k, const MDB_val *v, store_pair_t *out)
{
	if (k->mv_size != 12)
		return STORE_ECORRUPT;
	dec_t d = dec_init(v);
	out->replica_uid = ib_get_be32((uint8_t *)k->mv_data + 8);
	out->store_uid = dec_u32(&d);
	out->flags = dec_u32(&d);
	if (d.bad)
		return STORE_ECORRUPT;
	return kw_decode(txn, &d, &out->kw);
}

static int pair_load(store_txn_t *txn, uint32_t folder_id, uint32_t replica_id, uint32_t ruid,
		     store_pair_t *out)
{
	uint8_t k[12];
	pair_key(folder_id, replica_id, ruid, k);
	MDB_val key = {12, k}, v;
	int rc = db_get(txn, DB_PAIRS, k, 12, &v);
	if (rc)
		return rc;
	return pair_decode(txn, &key, &v, out);
}

static int rev_load(store_txn_t *txn, uint32_t folder_id, uint32_t replica_id, uint32_t suid,
		    uint32_t *ruid)
{
	uint8_t k[12];
	pair_key(folder_id, replica_id, suid, k);
	MDB_val v;
	int rc = db_get(txn, DB_PAIRS_REV, k, 12, &v);
	if (rc)
		return rc;
	if (v.mv_size != 4)
		return STORE_ECORRUPT;
	*ruid = ib_get_be32(v.mv_data);
	return 0;
}

/* Remove the pair at ruid and its reverse entry, if there is one. */
static int pair_remove(store_txn_t *txn, uint32_t folder_id, uint32_t replica_id, uint32_t ruid)
{
	store_pair_t old;
	int rc = pair_load(txn, folder_id, replica_id, ruid, &old);
	if (rc)
		return rc;
	uint8_t k[12];
	pair_key(folder_id, replica_id, old.store_uid, k);
	rc = db_del(txn, DB_PAIRS_REV, k, 12);
	if (rc && rc != STORE_ENOTFOUND)
		return rc;
	pair_key(folder_id, replica_id, ruid, k);
	return db_del(txn, DB_PAIRS, k, 12);
}

int store_pair_set(store_txn_t *txn, uint32_t folder_id, uint32_t replica_id, const store_pair_t *p)
{
	int rc = txn_enter(txn, true);
	if (rc)
		return rc;
	unsigned long w = txn->nwrites;
	store_keywords_t kw;
	uint32_t other;
	buf_t b = BUF_INIT;
	if ((p->flags & ~(uint32_t)STORE_F_ALL) || p->replica_uid == 0 || p->store_uid == 0) {
		rc = STORE_EINVAL;
		goto out;
	}
	rc = kw_normalise(txn, &p->kw, &kw);
	if (rc)
		goto out;
	rc = pair_remove(txn, folder_id, replica_id, p->replica_uid);
	if (rc && rc != STORE_ENOTFOUND)
		goto out;
	rc = rev_load(txn, folder_id, replica_id, p->store_uid, &other);
	if (rc == 0)
		rc = pair_remove(txn, folder_id, replica_id, other);
	if (rc && rc != STORE_ENOTFOUND)
		goto out;
	uint8_t k[12], rv[4];
	pair_key(folder_id, replica_id, p->replica_uid, k);
	enc_u32(&b, p->store_uid);
	enc_u32(&b, p->flags);
	kw_encode(&b, &kw);
	rc = db_put(txn, DB_PAIRS, k, 12, b.data, b.len, 0);
	pair_key(folder_id, replica_id, p->store_uid, k);
	ib_put_be32(rv, p->replica_uid);
	if (!rc)
		rc = db_put(txn, DB_PAIRS_REV, k, 12, rv, 4, 0);
out:
	buf_free(&b);
	return txn_ret(txn, rc, w);
}

int store_pair_get_by_ruid(store_txn_t *txn, uint32_t folder_id, uint32_t replica_id,
			   uint32_t replica_uid, store_pair_t *out)
{
	int rc = txn_enter(txn, false);
	if (rc)
		return rc;
	rc = pair_load(txn, folder_id, replica_id, replica_uid, out);
	return txn_ret(txn, rc, txn->nwrites);
}

int store_pair_get_by_suid(store_txn_t *txn, uint32_t folder_id, uint32_t replica_id,
			   uint32_t store_uid, store_pair_t *out)
{
	int rc = txn_enter(txn, false);
	if (rc)
		return rc;
	uint32_t ruid;
	rc = rev_load(txn, folder_id, replica_id, store_uid, &ruid);
	if (!rc) {
		rc = pair_load(txn, folder_id, replica_id, ruid, out);
		if (rc == STORE_ENOTFOUND || (!rc && out->store_uid != store_uid))
			rc = STORE_ECORRUPT;
	}
	return txn_ret(txn, rc, txn->nwrites);
}

int store_pair_del(store_txn_t *txn, uint32_t folder_id, uint32_t replica_id, uint32_t replica_uid)
{
	int rc = txn_enter(txn, true);
	if (rc)
		return rc;
	unsigned long w = txn->nwrites;
	return txn_ret(txn, pair_remove(txn, folder_id, replica_id, replica_uid), w);
}

int store_pair_iter(store_txn_t *txn, uint32_t folder_id, uint32_t replica_id, uint32_t ruid_from,
		    store_pair_cb cb, void *arg)
{
	int rc = txn_enter(txn, false);
	if (rc)
		return rc;
	MDB_cursor *c = NULL;
	rc = db_cursor(txn, DB_PAIRS, &c);
	if (rc)
		return txn_ret(txn, rc, txn->nwrites);
	uint8_t start[12];
	pair_key(folder_id, replica_id, ruid_from, start);
	MDB_val k = {12, start}, v;
	bool stopped = false;
	int mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (mrc == MDB_SUCCESS && k.mv_size == 12 && memcmp(k.mv_data, start, 8) == 0) {
		size_t mark = txn_scratch_mark(txn);
		store_pair_t p;
		rc = pair_decode(txn, &k, &v, &p);
		if (!rc) {
			rc = cb(&p, arg);
			stopped = rc != 0;
		}
		txn_scratch_release(txn, mark);
		if (rc)
			break;
		mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	return txn_iter_end(txn, c, rc, mrc, stopped);
}

/* ------------------------------------------------ pending operations */

static int pending_decode(const MDB_val *k, const MDB_val *v, store_pending_t *out)
{
	if (k->mv_size != 8)
		return STORE_ECORRUPT;
	dec_t d = dec_init(v);
	memset(out, 0, sizeof(*out));
	out->id = ib_get_be64(k->mv_data);
	uint8_t ver = dec_u8(&d);
	out->kind = dec_u32(&d);
	out->folder_id = dec_u32(&d);
	out->replica_id = dec_u32(&d);
	out->store_uid = dec_u32(&d);
	out->replica_uid = dec_u32(&d);
	out->target_uidnext = dec_u32(&d);
	out->dst_folder_id = dec_u32(&d);
	const uint8_t *h = dec_bytes(&d, STORE_HASH_LEN);
	out->created = (int64_t)dec_u64(&d);
	out->message_id = dec_str(&d);
	if (d.bad || ver != PENDING_REC_VERSION)
		return STORE_ECORRUPT;
	memcpy(out->hash.b, h, STORE_HASH_LEN);
	return 0;
}

int store_pending_add(store_txn_t *txn, const store_pending_t *p, uint64_t *id_out)
{
	int rc = txn_enter(txn, true);
	if (rc)
		return rc;
	unsigned long w = txn->nwrites;
	buf_t b = BUF_INIT;
	uint64_t id = 1;
	if (p->kind < STORE_PENDING_UPLOAD || p->kind > STORE_PENDING_FLAGS ||
	    (p->message_id && strlen(p->message_id) > 2000)) {
		rc = STORE_EINVAL;
		goto out;
	}
	store_folder_t f;
	rc = folder_load(txn, p->folder_id, &f);
	if (rc)
		goto out;
	/* Encode before writing anything: message_id may point into the map. */
	enc_u8(&b, PENDING_REC_VERSION);
	enc_u32(&b, p->kind);
	enc_u32(&b, p->folder_id);
	enc_u32(&b, p->replica_id);
	enc_u32(&b, p->store_uid);
	enc_u32(&b, p->replica_uid);
	enc_u32(&b, p->target_uidnext);
	enc_u32(&b, p->dst_folder_id);
	buf_append(&b, p->hash.b, STORE_HASH_LEN);
	enc_u64(&b, (uint64_t)(p->created ? p->created : (int64_t)time(NULL)));
	enc_str(&b, p->message_id);
	rc = meta_get_u64(txn, "next_pending", &id);
	if (rc && rc != STORE_ENOTFOUND)
		goto out;
	rc = meta_put_u64(txn, "next_pending", id + 1);
	if (rc)
		goto out;
	uint8_t k[8];
	ib_put_be64(k, id);
	rc = db_put(txn, DB_PENDING, k, 8, b.data, b.len, 0);
	if (!rc && id_out)
		*id_out = id;
out:
	buf_free(&b);
	return txn_ret(txn, rc, w);
}

int store_pending_get(store_txn_t *txn, uint64_t id, store_pending_t *out)
{
	int rc = txn_enter(txn, false);
	if (rc)
		return rc;
	uint8_t k[8];
	ib_put_be64(k, id);
	MDB_val key = {8, k}, v;
	rc = db_get(txn, DB_PENDING, k, 8, &v);
	if (!rc)
		rc = pending_decode(&key, &v, out);
	return txn_ret(txn, rc, txn->nwrites);
}

int store_pending_list(store_txn_t *txn, uint32_t folder_id, store_pending_cb cb, void *arg)
{
	int rc = txn_enter(txn, false);
	if (rc)
		return rc;
	MDB_cursor *c = NULL;
	rc = db_cursor(txn, DB_PENDING, &c);
	if (rc)
		return txn_ret(txn, rc, txn->nwrites);
	MDB_val k, v;
	bool stopped = false;
	int mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	while (mrc == MDB_SUCCESS) {
		store_pending_t p;
		rc = pending_decode(&k, &v, &p);
		if (!rc && (folder_id == 0 || p.folder_id == folder_id)) {
			rc = cb(&p, arg);
			stopped = rc != 0;
		}
		if (rc)
			break;
		mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	return txn_iter_end(txn, c, rc, mrc, stopped);
}

int store_pending_del(store_txn_t *txn, uint64_t id)
{
	int rc = txn_enter(txn, true);
	if (rc)
		return rc;
	unsigned long w = txn->nwrites;
	uint8_t k[8];
	ib_put_be64(k, id);
	return txn_ret(txn, db_del(txn, DB_PENDING, k, 8), w);
}

/* Pending operations are few: a scan is fine. Collect ids, then delete. */
int pending_drop_folder(store_txn_t *txn, uint32_t folder_id)
{
	MDB_cursor *c = NULL;
	int rc = db_cursor(txn, DB_PENDING, &c);
	if (rc)
		return rc;
	uint64_t *ids = NULL;
	size_t n = 0, cap = 0;
	MDB_val k, v;
	int mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	while (mrc == MDB_SUCCESS) {
		store_pending_t p;
		rc = pending_decode(&k, &v, &p);
		if (rc)
			break;
		if (p.folder_id == folder_id || p.dst_folder_id == folder_id) {
			if (n == cap) {
				cap = cap ? 2 * cap : 16;
				ids = xrealloc(ids, cap * sizeof(*ids));
			}
			ids[n++] = p.id;
		}
		mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	if (!rc && mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND)
		rc = store_map_mdb(mrc);
	for (size_t i = 0; !rc && i < n; i++) {
		uint8_t kb[8];
		ib_put_be64(kb, ids[i]);
		rc = db_del(txn, DB_PENDING, kb, 8);
	}
	free(ids);
	return rc;
}
