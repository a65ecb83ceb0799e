/*
 * Accounts: id <-> name, a removed flag, small opaque attributes, and the
 * purge that drops everything an account owns.
 */
#include "store/store_p.h"

#include <stdlib.h>
#include <string.h>

#define ATTR_KEY_MAX 200

static int account_decode(const MDB_val *k, const MDB_val *v, store_account_t *out)
{
	if (k->mv_size != 4)
		return STORE_ECORRUPT;
	dec_t d = dec_init(v);
	out->id = ib_get_be32(k->mv_data);
	out->flags = dec_u32(&d);
	out->name = dec_str(&d);
	return d.bad ? STORE_ECORRUPT : 0;
}

static int account_load(store_txn_t *txn, uint32_t id, store_account_t *out)
{
	uint8_t k[4];
	ib_put_be32(k, id);
	MDB_val key = {4, k}, v;
	int rc = db_get(txn, DB_ACCOUNTS, k, 4, &v);
	if (rc)
		return rc;
	return account_decode(&key, &v, out);
}

static int account_save(store_txn_t *txn, uint32_t id, uint32_t flags, const char *name)
{
	uint8_t k[4];
	ib_put_be32(k, id);
	buf_t b = BUF_INIT;
	enc_u32(&b, flags);
	enc_str(&b, name);
	int rc = db_put(txn, DB_ACCOUNTS, k, 4, b.data, b.len, 0);
	buf_free(&b);
	return rc;
}

static int account_find_id(store_txn_t *txn, const char *name, uint32_t *id)
{
	MDB_val v;
	int rc = db_get(txn, DB_ACCT_NAMES, name, strlen(name), &v);
	if (rc)
		return rc;
	if (v.mv_size != 4)
		return STORE_ECORRUPT;
	*id = ib_get_be32(v.mv_data);
	return 0;
}

int store_account_add(store_txn_t *txn, const char *name, uint32_t *id_out)
{
	int rc = txn_enter(txn, true);
	if (rc)
		return rc;
	unsigned long w = txn->nwrites;
	if (!name || !*name || strlen(name) > 255) {
		rc = STORE_EINVAL;
		goto out;
	}
	uint32_t id;
	rc = account_find_id(txn, name, &id);
	if (rc == 0) {
		store_account_t a;
		rc = account_load(txn, id, &a);
		if (rc)
			goto out;
		if (id_out)
			*id_out = id;
		if (!(a.flags & STORE_ACCOUNT_REMOVED)) {
			rc = STORE_EEXIST;
			goto out;
		}
		rc = account_save(txn, id, a.flags & ~(uint32_t)STORE_ACCOUNT_REMOVED, name);
		goto out;
	}
	if (rc != STORE_ENOTFOUND)
		goto out;
	uint64_t next = 1;
	rc = meta_get_u64(txn, "next_account", &next);
	if (rc && rc != STORE_ENOTFOUND)
		goto out;
	if (next > UINT32_MAX) {
		rc = STORE_ELIMIT;
		goto out;
	}
	id = (uint32_t)next;
	uint8_t idb[4];
	ib_put_be32(idb, id);
	rc = meta_put_u64(txn, "next_account", next + 1);
	if (!rc)
		rc = db_put(txn, DB_ACCT_NAMES, name, strlen(name), idb, 4, MDB_NOOVERWRITE);
	if (!rc)
		rc = account_save(txn, id, 0, name);
	if (!rc && id_out)
		*id_out = id;
out:
	return txn_ret(txn, rc, w);
}

int store_account_get(store_txn_t *txn, uint32_t id, store_account_t *out)
{
	int rc = txn_enter(txn, false);
	if (rc)
		return rc;
	return txn_ret(txn, account_load(txn, id, out), txn->nwrites);
}

int store_account_find(store_txn_t *txn, const char *name, store_account_t *out)
{
	int rc = txn_enter(txn, false);
	if (rc)
		return rc;
	uint32_t id;
	rc = account_find_id(txn, name, &id);
	if (!rc)
		rc = account_load(txn, id, out);
	return txn_ret(txn, rc, txn->nwrites);
}

int store_account_list(store_txn_t *txn, store_account_cb cb, void *arg)
{
	int rc = txn_enter(txn, false);
	if (rc)
		return rc;
	MDB_cursor *c = NULL;
	rc = db_cursor(txn, DB_ACCOUNTS, &c);
	if (rc)
		return txn_ret(txn, rc, txn->nwrites);
	MDB_val k, v;
	bool stopped = false;
	int mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	while (mrc == MDB_SUCCESS) {
		store_account_t a;
		rc = account_decode(&k, &v, &a);
		if (rc)
			break;
		rc = cb(&a, arg);
		stopped = rc != 0;
		if (rc)
			break;
		mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	if (stopped)
		return rc;
	if (!rc && mrc != MDB_NOTFOUND)
		rc = store_map_mdb(mrc);
	return txn_ret(txn, rc, txn->nwrites);
}

/* Collect folder ids of an account first: deleting while walking the name
 * index would move the cursor under us. */
static int account_folder_ids(store_txn_t *txn, uint32_t id, uint32_t **ids, size_t *n)
{
	uint8_t pfx[4];
	ib_put_be32(pfx, id);
	MDB_cursor *c = NULL;
	int rc = db_cursor(txn, DB_FOLDER_NAMES, &c);
	if (rc)
		return rc;
	size_t cap = 0;
	*ids = NULL;
	*n = 0;
	MDB_val k = {4, pfx}, v;
	int mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (mrc == MDB_SUCCESS && k.mv_size >= 4 && memcmp(k.mv_data, pfx, 4) == 0) {
		if (v.mv_size != 4) {
			mdb_cursor_close(c);
			return STORE_ECORRUPT;
		}
		if (*n == cap) {
			cap = cap ? 2 * cap : 16;
			*ids = xrealloc(*ids, cap * sizeof(**ids));
		}
		(*ids)[(*n)++] = ib_get_be32(v.mv_data);
		mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	if (mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND)
		return store_map_mdb(mrc);
	return 0;
}

int store_account_remove(store_txn_t *txn, uint32_t id, bool purge)
{
	int rc = txn_enter(txn, true);
	if (rc)
		return rc;
	unsigned long w = txn->nwrites;
	store_account_t a;
	uint32_t *ids = NULL;
	char *name = NULL;
	size_t n = 0;
	rc = account_load(txn, id, &a);
	if (rc)
		goto out;
	if (!purge) {
		rc = account_save(txn, id, a.flags | STORE_ACCOUNT_REMOVED, a.name);
		goto out;
	}
	name = xstrdup(a.name); /* a.name points into the map; writes follow */
	rc = account_folder_ids(txn, id, &ids, &n);
	for (size_t i = 0; !rc && i < n; i++)
		rc = folder_delete_contents(txn, ids[i]);
	uint8_t pfx[4];
	ib_put_be32(pfx, id);
	if (!rc)
		rc = db_del_prefix(txn, DB_FOLDER_NAMES, pfx, 4);
	if (!rc)
		rc = db_del_prefix(txn, DB_ACCT_ATTRS, pfx, 4);
	if (!rc) {
		rc = db_del(txn, DB_ACCT_NAMES, name, strlen(name));
		if (rc == STORE_ENOTFOUND)
			rc = STORE_ECORRUPT;
	}
	if (!rc)
		rc = db_del(txn, DB_ACCOUNTS, pfx, 4);
out:
	free(ids);
	free(name);
	return txn_ret(txn, rc, w);
}

static int attr_key(uint32_t id, const char *key, uint8_t *out, size_t *len)
{
	size_t kl = key ? strlen(key) : 0;
	if (kl == 0 || kl > ATTR_KEY_MAX)
		return STORE_EINVAL;
	ib_put_be32(out, id);
	memcpy(out + 4, key, kl + 1);
	*len = 4 + kl + 1;
	return 0;
}

int store_account_attr_set(store_txn_t *txn, uint32_t id, const char *key, const void *val,
			   size_t len)
{
	int rc = txn_enter(txn, true);
	if (rc)
		return rc;
	unsigned long w = txn->nwrites;
	uint8_t k[4 + ATTR_KEY_MAX + 1];
	size_t kl;
	store_account_t a;
	rc = attr_key(id, key, k, &kl);
	if (!rc)
		rc = account_load(txn, id, &a);
	if (!rc)
		rc = db_put(txn, DB_ACCT_ATTRS, k, kl, val ? val : "", val ? len : 0, 0);
	return txn_ret(txn, rc, w);
}

int store_account_attr_get(store_txn_t *txn, uint32_t id, const char *key, const void **val,
			   size_t *len)
{
	int rc = txn_enter(txn, false);
	if (rc)
		return rc;
	uint8_t k[4 + ATTR_KEY_MAX + 1];
	size_t kl;
	MDB_val v;
	rc = attr_key(id, key, k, &kl);
	if (!rc)
		rc = db_get(txn, DB_ACCT_ATTRS, k, kl, &v);
	if (!rc) {
		*val = v.mv_data;
		*len = v.mv_size;
	}
	return txn_ret(txn, rc, txn->nwrites);
}

int store_account_attr_del(store_txn_t *txn, uint32_t id, const char *key)
{
	int rc = txn_enter(txn, true);
	if (rc)
		return rc;
	unsigned long w = txn->nwrites;
	uint8_t k[4 + ATTR_KEY_MAX + 1];
	size_t kl;
	rc = attr_key(id, key, k, &kl);
	if (!rc)
		rc = db_del(txn, DB_ACCT_ATTRS, k, kl);
	return txn_ret(txn, rc, w);
}
