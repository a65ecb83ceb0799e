/*
 * Messages of a folder and the folder's change log.
 *
 * Every change (add, flags, expunge) takes the folder's next modseq. The
 * change log holds exactly one entry per live message, at the message's
 * current modseq (older entries are deleted when it changes again), plus one
 * tombstone per expunged UID. "Changes since N" is thus a range scan over
 * modseq > N, exact including expunges, and the log stays as small as the
 * folder plus its unpruned tombstones.
 */
#include "store/store_p.h"

#include <string.h>

#define MSG_REC_VERSION 1
#define CH_LIVE 1
#define CH_TOMB 3
#define MODSEQ_MAX ((uint64_t)INT64_MAX)

static void msg_key(uint32_t folder_id, uint32_t uid, uint8_t k[8])
{
	ib_put_be32(k, folder_id);
	ib_put_be32(k + 4, uid);
}

static void change_key(uint32_t folder_id, uint64_t modseq, uint8_t k[12])
{
	ib_put_be32(k, folder_id);
	ib_put_be64(k + 4, modseq);
}

int msg_decode(store_txn_t *txn, uint32_t folder_id, uint32_t uid, const MDB_val *v,
	       store_msg_t *out)
{
	dec_t d = dec_init(v);
	memset(out, 0, sizeof(*out));
	out->folder_id = folder_id;
	out->uid = uid;
	uint8_t ver = dec_u8(&d);
	out->flags = dec_u32(&d);
	out->modseq = dec_u64(&d);
	out->added_modseq = dec_u64(&d);
	out->internaldate = (int64_t)dec_u64(&d);
	out->tz_offset = (int32_t)dec_u32(&d);
	out->size = dec_u64(&d);
	const uint8_t *h = dec_bytes(&d, STORE_HASH_LEN);
	if (d.bad || ver != MSG_REC_VERSION)
		return STORE_ECORRUPT;
	memcpy(out->hash.b, h, STORE_HASH_LEN);
	return kw_decode(txn, &d, &out->kw);
}

static int msg_put(store_txn_t *txn, const store_msg_t *m)
{
	uint8_t k[8];
	msg_key(m->folder_id, m->uid, k);
	buf_t b = BUF_INIT;
	enc_u8(&b, MSG_REC_VERSION);
	enc_u32(&b, m->flags);
	enc_u64(&b, m->modseq);
	enc_u64(&b, m->added_modseq);
	enc_u64(&b, (uint64_t)m->internaldate);
	enc_u32(&b, (uint32_t)m->tz_offset);
	enc_u64(&b, m->size);
	buf_append(&b, m->hash.b, STORE_HASH_LEN);
	kw_encode(&b, &m->kw);
	int rc = db_put(txn, DB_MESSAGES, k, 8, b.data, b.len, 0);
	buf_free(&b);
	return rc;
}

static int msg_load(store_txn_t *txn, uint32_t folder_id, uint32_t uid, store_msg_t *out)
{
	uint8_t k[8];
	msg_key(folder_id, uid, k);
	MDB_val v;
	int rc = db_get(txn, DB_MESSAGES, k, 8, &v);
	if (rc)
		return rc;
	return msg_decode(txn, folder_id, uid, &v, out);
}

/* Copy keyword strings out of the map so they survive later writes. */
static void kw_own(store_txn_t *txn, store_keywords_t *kw)
{
	size_t total = 0;
	for (size_t i = 0; i < kw->n; i++)
		total += strlen(kw->v[i]) + 1;
	if (kw->n == 0)
		return;
	const char **v = txn_scratch(txn, kw->n * sizeof(*v));
	char *s = txn_scratch(txn, total);
	for (size_t i = 0; i < kw->n; i++) {
		size_t l = strlen(kw->v[i]) + 1;
		memcpy(s, kw->v[i], l);
		v[i] = s;
		s += l;
	}
	kw->v = v;
}

static int change_put(store_txn_t *txn, uint32_t folder_id, uint64_t modseq, uint8_t kind,
		      uint32_t uid)
{
	uint8_t k[12], v[5];
	change_key(folder_id, modseq, k);
	v[0] = kind;
	ib_put_be32(v + 1, uid);
	return db_put(txn, DB_CHANGES, k, 12, v, 5, 0);
}

static int change_del(store_txn_t *txn, uint32_t folder_id, uint64_t modseq)
{
	uint8_t k[12];
	change_key(folder_id, modseq, k);
	int rc = db_del(txn, DB_CHANGES, k, 12);
	return rc == STORE_ENOTFOUND ? STORE_ECORRUPT : rc;
}

/* Remember every keyword used in the folder, for FLAGS/PERMANENTFLAGS. */
static int kw_register(store_txn_t *txn, uint32_t folder_id, const store_keywords_t *kw)
{
	uint8_t k[4 + 256];
	ib_put_be32(k, folder_id);
	for (size_t i = 0; i < kw->n; i++) {
		size_t l = strlen(kw->v[i]);
		memcpy(k + 4, kw->v[i], l);
		int rc = db_put(txn, DB_KEYWORDS, k, 4 + l, "", 0, MDB_NOOVERWRITE);
		if (rc && rc != STORE_EEXIST)
			return rc;
	}
	return 0;
}

static int next_modseq(const store_folder_t *f, uint64_t *out)
{
	if (f->highestmodseq >= MODSEQ_MAX)
		return STORE_ELIMIT;
	*out = f->highestmodseq + 1;
	return 0;
}

/* Add to a loaded folder; kw must be normalised and safe across writes. */
static int msg_add_to(store_txn_t *txn, store_folder_t *f, const store_hash_t *hash, uint32_t flags,
		      const store_keywords_t *kw, int64_t idate, int32_t tz, uint32_t *uid_out,
		      uint64_t *modseq_out)
{
	if (flags & ~(uint32_t)STORE_F_ALL)
		return STORE_EINVAL;
	if (f->uidnext == UINT32_MAX)
		return STORE_ELIMIT;
	store_msg_t m = {
	    .folder_id = f->id,
	    .uid = f->uidnext,
	    .flags = flags,
	    .kw = *kw,
	    .internaldate = idate,
	    .tz_offset = tz,
	    .hash = *hash,
	};
	int rc = next_modseq(f, &m.modseq);
	if (rc)
		return rc;
	m.added_modseq = m.modseq;
	MDB_val bv;
	rc = db_get(txn, DB_BLOBS, hash->b, STORE_HASH_LEN, &bv);
	if (rc)
		return rc;
	m.size = bv.mv_size;
	rc = blob_incref(txn, hash);
	if (!rc)
		rc = msg_put(txn, &m);
	if (!rc)
		rc = change_put(txn, f->id, m.modseq, CH_LIVE, m.uid);
	if (!rc)
		rc = kw_register(txn, f->id, kw);
	if (rc)
		return rc;
	f->uidnext++;
	f->highestmodseq = m.modseq;
	f->messages++;
	if (!(flags & STORE_F_SEEN))
		f->unseen++;
	rc = folder_save(txn, f);
	if (!rc && uid_out)
		*uid_out = m.uid;
	if (!rc && modseq_out)
		*modseq_out = m.modseq;
	return rc;
}

int store_msg_add(store_txn_t *txn, uint32_t folder_id, const store_msg_new_t *m, uint32_t *uid_out,
		  uint64_t *modseq_out)
{
	int rc = txn_enter(txn, true);
	if (rc)
		return rc;
	unsigned long w = txn->nwrites;
	store_keywords_t kw;
	store_folder_t f;
	rc = kw_normalise(txn, &m->kw, &kw);
	if (!rc)
		rc = folder_load(txn, folder_id, &f);
	if (!rc)
		rc = msg_add_to(txn, &f, &m->hash, m->flags, &kw, m->internaldate, m->tz_offset,
				uid_out, modseq_out);
	return txn_ret(txn, rc, w);
}

int store_msg_append(store_txn_t *txn, uint32_t folder_id, const void *data, size_t len,
		     store_msg_new_t *m, uint32_t *uid_out, uint64_t *modseq_out)
{
	int rc = txn_enter(txn, true);
	if (rc)
		return rc;
	/* Check the folder first so a bad id does not leave an orphan blob
	 * write behind (it would be swept at commit, but fail early). */
	store_folder_t f;
	rc = folder_load(txn, folder_id, &f);
	if (rc)
		return txn_ret(txn, rc, txn->nwrites);
	rc = store_blob_put(txn, data, len, &m->hash);
	if (rc)
		return rc;
	return store_msg_add(txn, folder_id, m, uid_out, modseq_out);
}

int store_msg_get(store_txn_t *txn, uint32_t folder_id, uint32_t uid, store_msg_t *out)
{
	int rc = txn_enter(txn, false);
	if (rc)
		return rc;
	return txn_ret(txn, msg_load(txn, folder_id, uid, out), txn->nwrites);
}

int store_msg_iter(store_txn_t *txn, uint32_t folder_id, uint32_t uid_from, store_msg_cb cb,
		   void *arg)
{
	int rc = txn_enter(txn, false);
	if (rc)
		return rc;
	MDB_cursor *c = NULL;
	rc = db_cursor(txn, DB_MESSAGES, &c);
	if (rc)
		return txn_ret(txn, rc, txn->nwrites);
	uint8_t start[8];
	msg_key(folder_id, uid_from, start);
	MDB_val k = {8, start}, v;
	bool stopped = false;
	int mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (mrc == MDB_SUCCESS && k.mv_size == 8 && ib_get_be32(k.mv_data) == folder_id) {
		size_t mark = txn_scratch_mark(txn);
		store_msg_t m;
		rc = msg_decode(txn, folder_id, ib_get_be32((uint8_t *)k.mv_data + 4), &v, &m);
		if (!rc) {
			rc = cb(&m, arg);
			stopped = rc != 0;
		}
		txn_scratch_release(txn, mark);
		if (rc)
			break;
		mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	return txn_iter_end(txn, c, rc, mrc, stopped);
}

struct find_hash {
	const store_hash_t *hash;
	uint32_t uid;
};

static int find_hash_cb(const store_msg_t *m, void *arg)
{
	struct find_hash *fh = arg;
	if (memcmp(m->hash.b, fh->hash->b, STORE_HASH_LEN) != 0)
		return 0;
	fh->uid = m->uid;
	return 1;
}

int store_msg_find_by_hash(store_txn_t *txn, uint32_t folder_id, const store_hash_t *hash,
			   uint32_t *uid_out)
{
	struct find_hash fh = {hash, 0};
	int rc = store_msg_iter(txn, folder_id, 1, find_hash_cb, &fh);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return STORE_ENOTFOUND;
	*uid_out = fh.uid;
	return 0;
}

/* Sorted-list union (add) or difference (remove) into scratch. */
static void kw_merge(store_txn_t *txn, const store_keywords_t *cur, const store_keywords_t *in,
		     bool add, store_keywords_t *out)
{
	const char **v = txn_scratch(txn, (cur->n + in->n) * sizeof(*v));
	size_t i = 0, j = 0, n = 0;
	while (i < cur->n || j < in->n) {
		int c = i == cur->n ? 1 : j == in->n ? -1 : strcmp(cur->v[i], in->v[j]);
		if (c < 0) {
			v[n++] = cur->v[i++];
		} else if (c > 0) {
			if (add)
				v[n++] = in->v[j];
			j++;
		} else {
			if (add)
				v[n++] = cur->v[i];
			i++;
			j++;
		}
	}
	out->v = v;
	out->n = n;
}

int store_msg_set_flags(store_txn_t *txn, uint32_t folder_id, uint32_t uid, enum store_flag_op op,
			uint32_t flags, const store_keywords_t *kw, uint64_t unchangedsince,
			uint64_t *modseq_out)
{
	int rc = txn_enter(txn, true);
	if (rc)
		return rc;
	unsigned long w = txn->nwrites;
	store_keywords_t in, nkw;
	store_msg_t m;
	store_folder_t f;
	if ((flags & ~(uint32_t)STORE_F_ALL) || op > STORE_FLAGS_REMOVE) {
		rc = STORE_EINVAL;
		goto out;
	}
	rc = kw_normalise(txn, kw, &in);
	if (!rc)
		rc = msg_load(txn, folder_id, uid, &m);
	if (rc)
		goto out;
	if (unchangedsince && m.modseq > unchangedsince) {
		rc = STORE_ECONFLICT;
		goto out;
	}
	kw_own(txn, &m.kw);
	uint32_t nflags;
	if (op == STORE_FLAGS_SET) {
		nflags = flags;
		nkw = in;
	} else if (op == STORE_FLAGS_ADD) {
		nflags = m.flags | flags;
		kw_merge(txn, &m.kw, &in, true, &nkw);
	} else {
		nflags = m.flags & ~flags;
		kw_merge(txn, &m.kw, &in, false, &nkw);
	}
	if (nflags == m.flags && kw_equal(&nkw, &m.kw)) {
		if (modseq_out)
			*modseq_out = m.modseq;
		goto out;
	}
	rc = folder_load(txn, folder_id, &f);
	uint64_t ms = 0;
	if (!rc)
		rc = next_modseq(&f, &ms);
	if (rc)
		goto out;
	uint64_t old = m.modseq;
	bool was_seen = m.flags & STORE_F_SEEN, seen = nflags & STORE_F_SEEN;
	m.flags = nflags;
	m.kw = nkw;
	m.modseq = ms;
	rc = change_del(txn, folder_id, old);
	if (!rc)
		rc = change_put(txn, folder_id, ms, CH_LIVE, uid);
	if (!rc)
		rc = msg_put(txn, &m);
	if (!rc)
		rc = kw_register(txn, folder_id, &nkw);
	if (rc)
		goto out;
	f.highestmodseq = ms;
	if (was_seen && !seen)
		f.unseen++;
	else if (!was_seen && seen && f.unseen > 0)
		f.unseen--;
	rc = folder_save(txn, &f);
	if (!rc && modseq_out)
		*modseq_out = ms;
out:
	return txn_ret(txn, rc, w);
}

/* Expunge from a loaded folder; m is the loaded message. */
static int msg_expunge_in(store_txn_t *txn, store_folder_t *f, const store_msg_t *m,
			  uint64_t *modseq_out)
{
	uint64_t ms;
	int rc = next_modseq(f, &ms);
	if (rc)
		return rc;
	uint8_t k[8];
	msg_key(f->id, m->uid, k);
	store_hash_t h = m->hash;
	bool seen = m->flags & STORE_F_SEEN;
	uint64_t old = m->modseq;
	uint32_t uid = m->uid;
	rc = db_del(txn, DB_MESSAGES, k, 8);
	if (!rc)
		rc = change_del(txn, f->id, old);
	if (!rc)
		rc = change_put(txn, f->id, ms, CH_TOMB, uid);
	if (!rc)
		rc = blob_decref(txn, &h);
	if (rc)
		return rc;
	f->highestmodseq = ms;
	if (f->messages > 0)
		f->messages--;
	if (!seen && f->unseen > 0)
		f->unseen--;
	rc = folder_save(txn, f);
	if (!rc && modseq_out)
		*modseq_out = ms;
	return rc;
}

int store_msg_expunge(store_txn_t *txn, uint32_t folder_id, uint32_t uid, uint64_t *modseq_out)
{
	int rc = txn_enter(txn, true);
	if (rc)
		return rc;
	unsigned long w = txn->nwrites;
	store_msg_t m;
	store_folder_t f;
	rc = msg_load(txn, folder_id, uid, &m);
	if (!rc)
		rc = folder_load(txn, folder_id, &f);
	if (!rc)
		rc = msg_expunge_in(txn, &f, &m, modseq_out);
	return txn_ret(txn, rc, w);
}

int store_msg_move(store_txn_t *txn, uint32_t src_folder_id, uint32_t uid, uint32_t dst_folder_id,
		   uint32_t *new_uid_out)
{
	int rc = txn_enter(txn, true);
	if (rc)
		return rc;
	unsigned long w = txn->nwrites;
	store_msg_t m;
	store_folder_t src, dst;
	if (src_folder_id == dst_folder_id) {
		rc = STORE_EINVAL;
		goto out;
	}
	rc = msg_load(txn, src_folder_id, uid, &m);
	if (!rc)
		rc = folder_load(txn, src_folder_id, &src);
	if (!rc)
		rc = folder_load(txn, dst_folder_id, &dst);
	if (rc)
		goto out;
	kw_own(txn, &m.kw);
	/* Add first, so the blob's count never touches zero in between. */
	rc = msg_add_to(txn, &dst, &m.hash, m.flags, &m.kw, m.internaldate, m.tz_offset,
			new_uid_out, NULL);
	if (!rc)
		rc = msg_expunge_in(txn, &src, &m, NULL);
out:
	return txn_ret(txn, rc, w);
}

int store_changes_since(store_txn_t *txn, uint32_t folder_id, uint64_t since, store_change_cb cb,
			void *arg)
{
	int rc = txn_enter(txn, false);
	if (rc)
		return rc;
	store_folder_t f;
	rc = folder_load(txn, folder_id, &f);
	if (rc)
		return txn_ret(txn, rc, txn->nwrites);
	if (since < f.pruned_modseq)
		return STORE_ETOOOLD;
	if (since >= MODSEQ_MAX)
		return 0;
	MDB_cursor *c = NULL;
	rc = db_cursor(txn, DB_CHANGES, &c);
	if (rc)
		return txn_ret(txn, rc, txn->nwrites);
	uint8_t start[12];
	change_key(folder_id, since + 1, start);
	MDB_val k = {12, start}, v;
	bool stopped = false;
	int mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (mrc == MDB_SUCCESS && k.mv_size == 12 && ib_get_be32(k.mv_data) == folder_id) {
		if (v.mv_size != 5) {
			rc = STORE_ECORRUPT;
			break;
		}
		const uint8_t *p = v.mv_data;
		store_change_t ch = {
		    .modseq = ib_get_be64((uint8_t *)k.mv_data + 4),
		    .uid = ib_get_be32(p + 1),
		};
		size_t mark = txn_scratch_mark(txn);
		store_msg_t m;
		if (p[0] == CH_TOMB) {
			ch.kind = STORE_CHANGE_EXPUNGE;
		} else if (p[0] == CH_LIVE) {
			rc = msg_load(txn, folder_id, ch.uid, &m);
			if (rc == STORE_ENOTFOUND || (!rc && m.modseq != ch.modseq))
				rc = STORE_ECORRUPT;
			ch.kind = m.added_modseq > since ? STORE_CHANGE_NEW : STORE_CHANGE_FLAGS;
			ch.msg = &m;
		} else {
			rc = STORE_ECORRUPT;
		}
		if (!rc) {
			rc = cb(&ch, arg);
			stopped = rc != 0;
		}
		txn_scratch_release(txn, mark);
		if (rc)
			break;
		mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	return txn_iter_end(txn, c, rc, mrc, stopped);
}

int store_changes_prune(store_txn_t *txn, uint32_t folder_id, uint64_t upto)
{
	int rc = txn_enter(txn, true);
	if (rc)
		return rc;
	unsigned long w = txn->nwrites;
	store_folder_t f;
	MDB_cursor *c = NULL;
	rc = folder_load(txn, folder_id, &f);
	if (rc)
		goto out;
	if (upto > f.highestmodseq)
		upto = f.highestmodseq;
	if (upto <= f.pruned_modseq)
		goto out;
	rc = db_cursor(txn, DB_CHANGES, &c);
	if (rc)
		goto out;
	uint8_t start[12];
	change_key(folder_id, 0, start);
	MDB_val k = {12, start}, v;
	int mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (mrc == MDB_SUCCESS && k.mv_size == 12 && ib_get_be32(k.mv_data) == folder_id &&
	       ib_get_be64((uint8_t *)k.mv_data + 4) <= upto) {
		if (v.mv_size == 5 && ((uint8_t *)v.mv_data)[0] == CH_TOMB) {
			/* Re-seek from the deleted key: the simplest position rule
			 * after a cursor delete. */
			memcpy(start, k.mv_data, 12);
			mrc = mdb_cursor_del(c, 0);
			if (mrc != MDB_SUCCESS)
				break;
			txn->nwrites++;
			k.mv_size = 12;
			k.mv_data = start;
			mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
			continue;
		}
		mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	if (mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND) {
		rc = store_map_mdb(mrc);
		goto out;
	}
	f.pruned_modseq = upto;
	rc = folder_save(txn, &f);
out:
	return txn_ret(txn, rc, w);
}
