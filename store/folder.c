/*
 * Folders: the per-folder record (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ,
 * SPECIAL-USE, held state, counters), the (account, name) index, the keyword
 * table, and dropping a folder with everything that hangs off it.
 */
#include "store/store_p.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FOLDER_REC_VERSION 1
#define FOLDER_NAME_MAX 500 /* LMDB keys stop at 511 bytes */
#define HELD_REASON_MAX 2000

/* Decode a folder record; name and reason are copied to scratch memory so
 * that the struct stays valid across later writes in the transaction. */
static int folder_decode(store_txn_t *txn, uint32_t id, const MDB_val *v, store_folder_t *out)
{
	dec_t d = dec_init(v);
	memset(out, 0, sizeof(*out));
	out->id = id;
	uint8_t ver = dec_u8(&d);
	out->account_id = dec_u32(&d);
	out->uidvalidity = dec_u32(&d);
	out->uidnext = dec_u32(&d);
	out->highestmodseq = dec_u64(&d);
	out->special_use = dec_u32(&d);
	out->state = dec_u32(&d);
	out->messages = dec_u32(&d);
	out->unseen = dec_u32(&d);
	out->pruned_modseq = dec_u64(&d);
	const char *name = dec_str(&d);
	const char *reason = dec_str(&d);
	if (d.bad || ver != FOLDER_REC_VERSION)
		return STORE_ECORRUPT;
	size_t nl = strlen(name) + 1, rl = strlen(reason) + 1;
	char *s = txn_scratch(txn, nl + rl);
	memcpy(s, name, nl);
	memcpy(s + nl, reason, rl);
	out->name = s;
	out->held_reason = s + nl;
	return 0;
}

int folder_load(store_txn_t *txn, uint32_t folder_id, store_folder_t *out)
{
	uint8_t k[4];
	ib_put_be32(k, folder_id);
	MDB_val v;
	int rc = db_get(txn, DB_FOLDERS, k, 4, &v);
	if (rc)
		return rc;
	return folder_decode(txn, folder_id, &v, out);
}

int folder_save(store_txn_t *txn, const store_folder_t *f)
{
	uint8_t k[4];
	ib_put_be32(k, f->id);
	buf_t b = BUF_INIT;
	enc_u8(&b, FOLDER_REC_VERSION);
	enc_u32(&b, f->account_id);
	enc_u32(&b, f->uidvalidity);
	enc_u32(&b, f->uidnext);
	enc_u64(&b, f->highestmodseq);
	enc_u32(&b, f->special_use);
	enc_u32(&b, f->state);
	enc_u32(&b, f->messages);
	enc_u32(&b, f->unseen);
	enc_u64(&b, f->pruned_modseq);
	enc_str(&b, f->name);
	enc_str(&b, f->held_reason);
	int rc = db_put(txn, DB_FOLDERS, k, 4, b.data, b.len, 0);
	buf_free(&b);
	txn_touch(txn, f->id);
	return rc;
}

static size_t name_key(uint32_t account_id, const char *name, uint8_t *k)
{
	size_t nl = strlen(name);
	ib_put_be32(k, account_id);
	memcpy(k + 4, name, nl);
	return 4 + nl;
}

static bool name_ok(const char *name)
{
	return name && *name && strlen(name) <= FOLDER_NAME_MAX;
}

static int folder_find_id(store_txn_t *txn, uint32_t account_id, const char *name, uint32_t *id)
{
	uint8_t k[4 + FOLDER_NAME_MAX];
	size_t kl = name_key(account_id, name, k);
	MDB_val v;
	int rc = db_get(txn, DB_FOLDER_NAMES, k, kl, &v);
	if (rc)
		return rc;
	if (v.mv_size != 4)
		return STORE_ECORRUPT;
	*id = ib_get_be32(v.mv_data);
	return 0;
}

/* A UIDVALIDITY this store never handed out before: the clock, or one more
 * than the last one if the clock is behind. */
static int next_uidvalidity(store_txn_t *txn, uint32_t *out)
{
	uint64_t last = 0;
	int rc = meta_get_u64(txn, "last_uidvalidity", &last);
	if (rc && rc != STORE_ENOTFOUND)
		return rc;
	uint64_t now = (uint64_t)time(NULL);
	uint64_t v = now > last ? now : last + 1;
	if (v > UINT32_MAX)
		return STORE_ELIMIT;
	*out = (uint32_t)v;
	return meta_put_u64(txn, "last_uidvalidity", v);
}

int store_folder_create(store_txn_t *txn, uint32_t account_id, const char *name,
			uint32_t special_use, uint32_t *id_out)
{
	int rc = txn_enter(txn, true);
	if (rc)
		return rc;
	unsigned long w = txn->nwrites;
	if (!name_ok(name)) {
		rc = STORE_EINVAL;
		goto out;
	}
	uint32_t id;
	rc = folder_find_id(txn, account_id, name, &id);
	if (rc == 0) {
		if (id_out)
			*id_out = id;
		rc = STORE_EEXIST;
		goto out;
	}
	if (rc != STORE_ENOTFOUND)
		goto out;
	uint8_t ak[4];
	ib_put_be32(ak, account_id);
	MDB_val av;
	rc = db_get(txn, DB_ACCOUNTS, ak, 4, &av);
	if (rc)
		goto out;
	uint64_t next = 1;
	rc = meta_get_u64(txn, "next_folder", &next);
	if (rc && rc != STORE_ENOTFOUND)
		goto out;
	if (next > UINT32_MAX) {
		rc = STORE_ELIMIT;
		goto out;
	}
	store_folder_t f = {
	    .id = (uint32_t)next,
	    .account_id = account_id,
	    .name = name,
	    .uidnext = 1,
	    .highestmodseq = 1,
	    .special_use = special_use,
	    .state = STORE_FOLDER_ACTIVE,
	    .held_reason = "",
	};
	rc = meta_put_u64(txn, "next_folder", next + 1);
	if (!rc)
		rc = next_uidvalidity(txn, &f.uidvalidity);
	if (!rc)
		rc = folder_save(txn, &f);
	uint8_t k[4 + FOLDER_NAME_MAX], idb[4];
	size_t kl = name_key(account_id, name, k);
	ib_put_be32(idb, f.id);
	if (!rc)
		rc = db_put(txn, DB_FOLDER_NAMES, k, kl, idb, 4, MDB_NOOVERWRITE);
	if (!rc && id_out)
		*id_out = f.id;
out:
	return txn_ret(txn, rc, w);
}

int store_folder_get(store_txn_t *txn, uint32_t folder_id, store_folder_t *out)
{
	int rc = txn_enter(txn, false);
	if (rc)
		return rc;
	return txn_ret(txn, folder_load(txn, folder_id, out), txn->nwrites);
}

int store_folder_find(store_txn_t *txn, uint32_t account_id, const char *name, store_folder_t *out)
{
	int rc = txn_enter(txn, false);
	if (rc)
		return rc;
	uint32_t id;
	rc = name_ok(name) ? folder_find_id(txn, account_id, name, &id) : STORE_EINVAL;
	if (!rc)
		rc = folder_load(txn, id, out);
	return txn_ret(txn, rc, txn->nwrites);
}

int store_folder_list(store_txn_t *txn, uint32_t account_id, store_folder_cb cb, void *arg)
{
	int rc = txn_enter(txn, false);
	if (rc)
		return rc;
	uint8_t pfx[4];
	ib_put_be32(pfx, account_id);
	MDB_cursor *c = NULL;
	rc = db_cursor(txn, DB_FOLDER_NAMES, &c);
	if (rc)
		return txn_ret(txn, rc, txn->nwrites);
	MDB_val k = {4, pfx}, v;
	bool stopped = false;
	int mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (mrc == MDB_SUCCESS && k.mv_size >= 4 && memcmp(k.mv_data, pfx, 4) == 0) {
		if (v.mv_size != 4) {
			rc = STORE_ECORRUPT;
			break;
		}
		size_t mark = txn_scratch_mark(txn);
		store_folder_t f;
		rc = folder_load(txn, ib_get_be32(v.mv_data), &f);
		if (rc == STORE_ENOTFOUND)
			rc = STORE_ECORRUPT;
		if (!rc) {
			rc = cb(&f, arg);
			stopped = rc != 0;
		}
		txn_scratch_release(txn, mark);
		if (rc)
			break;
		mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	return txn_iter_end(txn, c, rc, mrc, stopped);
}

int store_folder_rename(store_txn_t *txn, uint32_t folder_id, const char *new_name)
{
	int rc = txn_enter(txn, true);
	if (rc)
		return rc;
	unsigned long w = txn->nwrites;
	store_folder_t f;
	uint32_t other;
	uint8_t k[4 + FOLDER_NAME_MAX], idb[4];
	size_t kl;
	if (!name_ok(new_name)) {
		rc = STORE_EINVAL;
		goto out;
	}
	rc = folder_load(txn, folder_id, &f);
	if (rc)
		goto out;
	if (strcmp(f.name, new_name) == 0)
		goto out;
	rc = folder_find_id(txn, f.account_id, new_name, &other);
	if (rc == 0) {
		rc = STORE_EEXIST;
		goto out;
	}
	if (rc != STORE_ENOTFOUND)
		goto out;
	kl = name_key(f.account_id, f.name, k);
	rc = db_del(txn, DB_FOLDER_NAMES, k, kl);
	if (rc == STORE_ENOTFOUND)
		rc = STORE_ECORRUPT;
	kl = name_key(f.account_id, new_name, k);
	ib_put_be32(idb, folder_id);
	if (!rc)
		rc = db_put(txn, DB_FOLDER_NAMES, k, kl, idb, 4, MDB_NOOVERWRITE);
	f.name = new_name;
	if (!rc)
		rc = folder_save(txn, &f);
out:
	return txn_ret(txn, rc, w);
}

/* Load, change special-use (state < 0) or the held state, save. */
static int folder_update(store_txn_t *txn, uint32_t folder_id, uint32_t su, int state,
			 const char *reason)
{
	int rc = txn_enter(txn, true);
	if (rc)
		return rc;
	unsigned long w = txn->nwrites;
	store_folder_t f;
	rc = folder_load(txn, folder_id, &f);
	if (rc)
		goto out;
	if (state < 0) {
		f.special_use = su;
	} else {
		f.state = (uint32_t)state;
		f.held_reason = reason ? reason : "";
		if (strlen(f.held_reason) > HELD_REASON_MAX) {
			rc = STORE_EINVAL;
			goto out;
		}
	}
	rc = folder_save(txn, &f);
out:
	return txn_ret(txn, rc, w);
}

int store_folder_set_special_use(store_txn_t *txn, uint32_t folder_id, uint32_t special_use)
{
	return folder_update(txn, folder_id, special_use, -1, NULL);
}

int store_folder_hold(store_txn_t *txn, uint32_t folder_id, const char *reason)
{
	return folder_update(txn, folder_id, 0, STORE_FOLDER_HELD, reason ? reason : "held");
}

int store_folder_release(store_txn_t *txn, uint32_t folder_id)
{
	return folder_update(txn, folder_id, 0, STORE_FOLDER_ACTIVE, "");
}

/* Drop the folder's messages one by one, releasing their blob references. */
static int folder_drop_messages(store_txn_t *txn, uint32_t folder_id)
{
	uint8_t pfx[4];
	ib_put_be32(pfx, folder_id);
	MDB_cursor *c = NULL;
	int rc = db_cursor(txn, DB_MESSAGES, &c);
	if (rc)
		return rc;
	for (;;) {
		MDB_val k = {4, pfx}, v;
		int mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
		if (mrc == MDB_NOTFOUND)
			break;
		if (mrc != MDB_SUCCESS) {
			rc = store_map_mdb(mrc);
			break;
		}
		if (k.mv_size != 8 || memcmp(k.mv_data, pfx, 4) != 0)
			break;
		size_t mark = txn_scratch_mark(txn);
		store_msg_t m;
		rc = msg_decode(txn, folder_id, ib_get_be32((uint8_t *)k.mv_data + 4), &v, &m);
		store_hash_t h = m.hash;
		txn_scratch_release(txn, mark);
		if (rc)
			break;
		mrc = mdb_cursor_del(c, 0);
		if (mrc != MDB_SUCCESS) {
			rc = store_map_mdb(mrc);
			break;
		}
		txn->nwrites++;
		rc = blob_decref(txn, &h);
		if (rc)
			break;
	}
	mdb_cursor_close(c);
	return rc;
}

int folder_delete_contents(store_txn_t *txn, uint32_t folder_id)
{
	store_folder_t f;
	int rc = folder_load(txn, folder_id, &f);
	if (rc)
		return rc;
	uint8_t pfx[4];
	ib_put_be32(pfx, folder_id);
	rc = folder_drop_messages(txn, folder_id);
	if (!rc)
		rc = db_del_prefix(txn, DB_CHANGES, pfx, 4);
	if (!rc)
		rc = db_del_prefix(txn, DB_KEYWORDS, pfx, 4);
	if (!rc)
		rc = replica_drop_folder(txn, folder_id);
	if (!rc)
		rc = pending_drop_folder(txn, folder_id);
	uint8_t k[4 + FOLDER_NAME_MAX];
	size_t kl = name_key(f.account_id, f.name, k);
	if (!rc) {
		rc = db_del(txn, DB_FOLDER_NAMES, k, kl);
		if (rc == STORE_ENOTFOUND)
			rc = 0; /* an account purge may have dropped the index first */
	}
	if (!rc)
		rc = db_del(txn, DB_FOLDERS, pfx, 4);
	txn_touch(txn, folder_id);
	return rc;
}

int store_folder_delete(store_txn_t *txn, uint32_t folder_id)
{
	int rc = txn_enter(txn, true);
	if (rc)
		return rc;
	unsigned long w = txn->nwrites;
	return txn_ret(txn, folder_delete_contents(txn, folder_id), w);
}

int store_folder_keywords(store_txn_t *txn, uint32_t folder_id, store_keyword_cb cb, void *arg)
{
	int rc = txn_enter(txn, false);
	if (rc)
		return rc;
	uint8_t pfx[4];
	ib_put_be32(pfx, folder_id);
	MDB_cursor *c = NULL;
	rc = db_cursor(txn, DB_KEYWORDS, &c);
	if (rc)
		return txn_ret(txn, rc, txn->nwrites);
	MDB_val k = {4, pfx}, v;
	bool stopped = false;
	char kw[256];
	int mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (mrc == MDB_SUCCESS && k.mv_size > 4 && memcmp(k.mv_data, pfx, 4) == 0) {
		size_t n = k.mv_size - 4;
		if (n >= sizeof(kw)) {
			rc = STORE_ECORRUPT;
			break;
		}
		memcpy(kw, (uint8_t *)k.mv_data + 4, n);
		kw[n] = '\0';
		rc = cb(kw, arg);
		stopped = rc != 0;
		if (rc)
			break;
		mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	return txn_iter_end(txn, c, rc, mrc, stopped);
}
