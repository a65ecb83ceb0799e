/*
 * Content-addressed blobs: the raw bytes of a message under their SHA-256,
 * with a reference count kept in a separate database so that counting never
 * rewrites a large value. Bytes are written with MDB_RESERVE, straight into
 * the map, and handed out as pointers into the map.
 */
#include "store/store_p.h"

#include <errno.h>
#include <openssl/evp.h>
#include <string.h>
#include <unistd.h>

char *store_hash_hex(const store_hash_t *h, char out[2 * STORE_HASH_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < STORE_HASH_LEN; i++) {
		out[2 * i] = hex[h->b[i] >> 4];
		out[2 * i + 1] = hex[h->b[i] & 15];
	}
	out[2 * STORE_HASH_LEN] = '\0';
	return out;
}

void store_hash_compute(const void *data, size_t len, store_hash_t *out)
{
	unsigned int n = 0;
	EVP_Digest(data, len, out->b, &n, EVP_sha256(), NULL);
}

/* Create the blob's refcount record (0) and note it for the commit sweep. */
static int blob_new_ref(store_txn_t *txn, const store_hash_t *h)
{
	uint8_t z[8];
	ib_put_be64(z, 0);
	int rc = db_put(txn, DB_BLOBREFS, h->b, STORE_HASH_LEN, z, 8, 0);
	if (rc == 0)
		txn_note_new_blob(txn, h);
	return rc;
}

static bool blob_exists(store_txn_t *txn, const store_hash_t *h, int *rc)
{
	MDB_val v;
	*rc = db_get(txn, DB_BLOBREFS, h->b, STORE_HASH_LEN, &v);
	if (*rc == STORE_ENOTFOUND) {
		*rc = 0;
		return false;
	}
	return *rc == 0;
}

int store_blob_put_hashed(store_txn_t *txn, const void *data, size_t len,
			  const store_hash_t *hash)
{
	int rc = txn_enter(txn, true);
	if (rc)
		return rc;
	unsigned long w = txn->nwrites;
	if (blob_exists(txn, hash, &rc) || rc)
		goto out;
	void *dst;
	rc = db_reserve(txn, DB_BLOBS, hash->b, STORE_HASH_LEN, len, &dst);
	if (rc)
		goto out;
	rc = txn_blob_copy(txn, dst, data, len);
	if (rc)
		goto out; /* the reserved value is half-filled: sticky via txn_ret */
	txn_blob_written(txn, dst, len);
	rc = blob_new_ref(txn, hash);
out:
	return txn_ret(txn, rc, w);
}

int store_blob_put(store_txn_t *txn, const void *data, size_t len, store_hash_t *hash_out)
{
	store_hash_compute(data, len, hash_out);
	return store_blob_put_hashed(txn, data, len, hash_out);
}

/* pread exactly n bytes (or fail). */
static int pread_full(int fd, void *buf, size_t n, uint64_t off)
{
	uint8_t *p = buf;
	while (n > 0) {
		ssize_t r = pread(fd, p, n, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return STORE_EIO;
		}
		if (r == 0)
			return STORE_EIO; /* shorter than promised */
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

/* Read len bytes of fd from off, hash them into out and, with dst, copy
 * them into the value reserved there. */
static int fd_pass(store_txn_t *txn, int fd, uint64_t off, uint64_t len, void *dst,
		   store_hash_t *out)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx)
		abort();
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	uint8_t chunk[65536];
	int rc = 0;
	for (uint64_t done = 0; done < len && rc == 0;) {
		size_t n = len - done < sizeof(chunk) ? (size_t)(len - done) : sizeof(chunk);
		rc = pread_full(fd, chunk, n, off + done);
		if (rc)
			break;
		EVP_DigestUpdate(ctx, chunk, n);
		if (dst)
			rc = txn_blob_copy(txn, (char *)dst + done, chunk, n);
		done += n;
	}
	unsigned int hl = 0;
	EVP_DigestFinal_ex(ctx, out->b, &hl);
	EVP_MD_CTX_free(ctx);
	return rc;
}

/* store_blob_put_fd() once the file's hash is known: nothing is read when
 * the blob is there; else the file is copied into the reserved value and
 * hashed again on the way, so a file that changed since its hash was taken
 * is refused. */
static int put_fd_hashed(store_txn_t *txn, int fd, uint64_t off, uint64_t len,
			 const store_hash_t *hash)
{
	unsigned long w = txn->nwrites;
	int rc;
	if (blob_exists(txn, hash, &rc) || rc)
		goto out;
	void *dst;
	rc = db_reserve(txn, DB_BLOBS, hash->b, STORE_HASH_LEN, (size_t)len, &dst);
	if (rc)
		goto out;
	store_hash_t check;
	rc = fd_pass(txn, fd, off, len, dst, &check);
	if (rc)
		goto out; /* the reserved value is half-filled: sticky via txn_ret */
	if (memcmp(check.b, hash->b, STORE_HASH_LEN) != 0) {
		rc = STORE_EIO;
		goto out;
	}
	txn_blob_written(txn, dst, (size_t)len);
	rc = blob_new_ref(txn, hash);
out:
	return txn_ret(txn, rc, w);
}

int store_blob_put_fd(store_txn_t *txn, int fd, uint64_t off, uint64_t len, store_hash_t *hash_out)
{
	int rc = txn_enter(txn, true);
	if (rc)
		return rc;
	if (len > (uint64_t)UINT32_MAX)
		return STORE_EINVAL; /* LMDB values and RFC822.SIZE stay below 4 GiB */
	rc = fd_pass(txn, fd, off, len, NULL, hash_out);
	if (rc)
		return rc; /* nothing written: not sticky */
	return put_fd_hashed(txn, fd, off, len, hash_out);
}

int store_blob_put_fd_hashed(store_txn_t *txn, int fd, uint64_t off, uint64_t len,
			     const store_hash_t *hash)
{
	int rc = txn_enter(txn, true);
	if (rc)
		return rc;
	if (len > (uint64_t)UINT32_MAX)
		return STORE_EINVAL;
	return put_fd_hashed(txn, fd, off, len, hash);
}

int store_blob_get(store_txn_t *txn, const store_hash_t *hash, const void **data, size_t *len)
{
	int rc = txn_enter(txn, false);
	if (rc)
		return rc;
	MDB_val v;
	rc = db_get(txn, DB_BLOBS, hash->b, STORE_HASH_LEN, &v);
	if (rc == 0) {
		*data = v.mv_data;
		*len = v.mv_size;
	}
	return txn_ret(txn, rc, txn->nwrites);
}

int store_blob_refs(store_txn_t *txn, const store_hash_t *hash, uint64_t *refs)
{
	int rc = txn_enter(txn, false);
	if (rc)
		return rc;
	MDB_val v;
	rc = db_get(txn, DB_BLOBREFS, hash->b, STORE_HASH_LEN, &v);
	if (rc == 0) {
		if (v.mv_size != 8)
			rc = STORE_ECORRUPT;
		else
			*refs = ib_get_be64(v.mv_data);
	}
	return txn_ret(txn, rc, txn->nwrites);
}

static int refs_read(store_txn_t *txn, const store_hash_t *h, uint64_t *refs)
{
	MDB_val v;
	int rc = db_get(txn, DB_BLOBREFS, h->b, STORE_HASH_LEN, &v);
	if (rc)
		return rc;
	if (v.mv_size != 8)
		return STORE_ECORRUPT;
	*refs = ib_get_be64(v.mv_data);
	return 0;
}

int blob_incref(store_txn_t *txn, const store_hash_t *h)
{
	uint64_t refs;
	int rc = refs_read(txn, h, &refs);
	if (rc)
		return rc;
	uint8_t b[8];
	ib_put_be64(b, refs + 1);
	return db_put(txn, DB_BLOBREFS, h->b, STORE_HASH_LEN, b, 8, 0);
}

static int blob_drop(store_txn_t *txn, const store_hash_t *h)
{
	int rc = db_del(txn, DB_BLOBS, h->b, STORE_HASH_LEN);
	if (rc == 0 || rc == STORE_ENOTFOUND)
		rc = db_del(txn, DB_BLOBREFS, h->b, STORE_HASH_LEN);
	return rc;
}

int blob_decref(store_txn_t *txn, const store_hash_t *h)
{
	uint64_t refs;
	int rc = refs_read(txn, h, &refs);
	if (rc)
		return rc == STORE_ENOTFOUND ? STORE_ECORRUPT : rc;
	if (refs <= 1)
		return blob_drop(txn, h);
	uint8_t b[8];
	ib_put_be64(b, refs - 1);
	return db_put(txn, DB_BLOBREFS, h->b, STORE_HASH_LEN, b, 8, 0);
}

int blob_sweep_new(store_txn_t *txn)
{
	for (size_t i = 0; i < txn->nnew_blobs; i++) {
		uint64_t refs;
		int rc = refs_read(txn, &txn->new_blobs[i], &refs);
		if (rc == STORE_ENOTFOUND)
			continue; /* already dropped by an expunge in this txn */
		if (rc)
			return rc;
		if (refs == 0) {
			rc = blob_drop(txn, &txn->new_blobs[i]);
			if (rc)
				return rc;
		}
	}
	txn->nnew_blobs = 0;
	return 0;
}
