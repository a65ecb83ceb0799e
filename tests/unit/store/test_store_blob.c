/*
 * Blobs: dedupe across folders, freeing on the last reference, the commit
 * sweep of unreferenced blobs, streaming ingest from a file, and map growth
 * from a tiny initial map to many megabytes.
 */
#include "testutil.h"
#include "store/store.h"
#include "store_open.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_dedupe(const char *dir)
{
	store_t *st = open_store(dir, 0);
	store_txn_t *txn;
	uint32_t acct, a, b;
	const char *raw = "From: x@example.org\r\nSubject: same\r\n\r\nsame body\r\n";
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	CHECK_EQ_INT(store_account_add(txn, "d", &acct), 0);
	CHECK_EQ_INT(store_folder_create(txn, acct, "A", 0, &a), 0);
	CHECK_EQ_INT(store_folder_create(txn, acct, "B", 0, &b), 0);
	store_msg_new_t m = {0};
	uint32_t ua, ub, ub2;
	CHECK_EQ_INT(store_msg_append(txn, a, raw, strlen(raw), &m, &ua, NULL), 0);
	store_hash_t h1 = m.hash;
	CHECK_EQ_INT(store_msg_append(txn, b, raw, strlen(raw), &m, &ub, NULL), 0);
	CHECK(memcmp(h1.b, m.hash.b, STORE_HASH_LEN) == 0);
	/* store_blob_put then store_msg_add, the two-step path. */
	store_hash_t h2;
	CHECK_EQ_INT(store_blob_put(txn, raw, strlen(raw), &h2), 0);
	CHECK(memcmp(h1.b, h2.b, STORE_HASH_LEN) == 0);
	store_msg_new_t m2 = {.hash = h2};
	CHECK_EQ_INT(store_msg_add(txn, b, &m2, &ub2, NULL), 0);
	/* Hashed by the caller: stored under that hash, byte for byte, and
	 * the same bytes put again find it. */
	const char *other = "From: y@example.org\r\nSubject: other\r\n\r\nother body\r\n";
	store_hash_t h3, h4;
	store_hash_compute(other, strlen(other), &h3);
	CHECK_EQ_INT(store_blob_put_hashed(txn, other, strlen(other), &h3), 0);
	CHECK_EQ_INT(store_blob_put(txn, other, strlen(other), &h4), 0);
	CHECK(memcmp(h3.b, h4.b, STORE_HASH_LEN) == 0);
	const void *odata;
	size_t olen;
	CHECK_EQ_INT(store_blob_get(txn, &h3, &odata, &olen), 0);
	CHECK(olen == strlen(other) && memcmp(odata, other, olen) == 0);
	store_msg_new_t mo = {.hash = h3};
	uint32_t ua3;
	CHECK_EQ_INT(store_msg_add(txn, a, &mo, &ua3, NULL), 0);
	CHECK_EQ_INT(store_txn_commit(txn), 0);

	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	uint64_t refs = 0;
	CHECK_EQ_INT(store_blob_refs(txn, &h1, &refs), 0);
	CHECK_EQ_INT(refs, 3);
	const void *data;
	size_t len;
	CHECK_EQ_INT(store_blob_get(txn, &h1, &data, &len), 0);
	CHECK(len == strlen(raw) && memcmp(data, raw, len) == 0);
	char hex[65];
	store_hash_hex(&h1, hex);
	CHECK_EQ_INT(strlen(hex), 64);
	CHECK_EQ_INT(store_msg_expunge(txn, a, ua, NULL), 0);
	CHECK_EQ_INT(store_msg_expunge(txn, b, ub, NULL), 0);
	CHECK_EQ_INT(store_blob_refs(txn, &h1, &refs), 0);
	CHECK_EQ_INT(refs, 1);
	CHECK_EQ_INT(store_blob_get(txn, &h1, &data, &len), 0);
	CHECK_EQ_INT(store_msg_expunge(txn, b, ub2, NULL), 0);
	CHECK_EQ_INT(store_blob_refs(txn, &h1, &refs), STORE_ENOTFOUND);
	CHECK_EQ_INT(store_blob_get(txn, &h1, &data, &len), STORE_ENOTFOUND);
	CHECK_EQ_INT(store_txn_commit(txn), 0);

	/* A blob put but never used is gone after commit. */
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	store_hash_t orphan;
	CHECK_EQ_INT(store_blob_put(txn, "orphan", 6, &orphan), 0);
	CHECK_EQ_INT(store_blob_get(txn, &orphan, &data, &len), 0);
	/* Adding to a missing folder fails cleanly, leaving nothing. */
	store_msg_new_t m3 = {.hash = orphan};
	CHECK_EQ_INT(store_msg_add(txn, 424242, &m3, NULL, NULL), STORE_ENOTFOUND);
	store_hash_t nohash;
	memset(&nohash, 0xab, sizeof(nohash));
	m3.hash = nohash;
	CHECK_EQ_INT(store_msg_add(txn, a, &m3, NULL, NULL), STORE_ENOTFOUND);
	CHECK_EQ_INT(store_txn_err(txn), 0);
	CHECK_EQ_INT(store_txn_commit(txn), 0);
	CHECK_EQ_INT(store_txn_begin_read(st, &txn), 0);
	CHECK_EQ_INT(store_blob_get(txn, &orphan, &data, &len), STORE_ENOTFOUND);
	store_txn_abort(txn);
	CHECK_EQ_INT(store_check(st, NULL, NULL, NULL), 0);
	store_close(st);
}

static void test_put_fd(const char *dir)
{
	store_t *st = open_store(dir, 0);
	char path[4096];
	snprintf(path, sizeof(path), "%s/big.eml", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	enum { BIG = 3 * 1024 * 1024 + 17 };
	char *big = malloc(BIG);
	for (size_t i = 0; i < BIG; i++)
		big[i] = (char)('a' + (i * 7 + i / 4096) % 26);
	memcpy(big, "Subject: big\r\n\r\n", 16);
	CHECK(write(fd, "JUNK", 4) == 4);
	CHECK(write(fd, big, BIG) == BIG);
	store_txn_t *txn;
	uint32_t acct, f;
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	CHECK_EQ_INT(store_account_add(txn, "fd", &acct), 0);
	CHECK_EQ_INT(store_folder_create(txn, acct, "INBOX", 0, &f), 0);
	store_hash_t h, expect;
	CHECK_EQ_INT(store_blob_put_fd(txn, fd, 4, BIG, &h), 0);
	store_hash_compute(big, BIG, &expect);
	CHECK(memcmp(h.b, expect.b, STORE_HASH_LEN) == 0);
	/* Hashed by the caller and already there: nothing is read (no file). */
	CHECK_EQ_INT(store_blob_put_fd_hashed(txn, -1, 0, BIG, &h), 0);
	/* Shorter than promised: an error, and nothing stored. */
	store_hash_t h2;
	CHECK_EQ_INT(store_blob_put_fd(txn, fd, 4, (uint64_t)BIG + 100, &h2), STORE_EIO);
	CHECK_EQ_INT(store_txn_err(txn), 0);
	store_msg_new_t m = {.hash = h};
	uint32_t uid;
	CHECK_EQ_INT(store_msg_add(txn, f, &m, &uid, NULL), 0);
	CHECK_EQ_INT(store_txn_commit(txn), 0);
	/* A file that no longer matches the hash its writer took: refused, and
	 * the transaction cannot commit the half-made blob. */
	store_hash_t stale;
	store_hash_compute("other bytes", 11, &stale);
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	CHECK_EQ_INT(store_blob_put_fd_hashed(txn, fd, 4, BIG, &stale), STORE_EIO);
	CHECK(store_txn_err(txn) != 0);
	store_txn_abort(txn);
	close(fd);
	CHECK_EQ_INT(store_txn_begin_read(st, &txn), 0);
	const void *none;
	size_t nlen;
	CHECK_EQ_INT(store_blob_get(txn, &stale, &none, &nlen), STORE_ENOTFOUND);
	store_msg_t msg;
	CHECK_EQ_INT(store_msg_get(txn, f, uid, &msg), 0);
	CHECK_EQ_INT(msg.size, BIG);
	const void *data;
	size_t len;
	CHECK_EQ_INT(store_blob_get(txn, &h, &data, &len), 0);
	CHECK(len == BIG && memcmp(data, big, BIG) == 0);
	store_txn_abort(txn);
	free(big);
	CHECK_EQ_INT(store_check(st, NULL, NULL, NULL), 0);
	store_close(st);
}

struct batch {
	uint32_t folder;
	int first, count;
	size_t size;
	uint32_t last_uid;
};

static int add_batch_fn(store_txn_t *txn, void *arg)
{
	struct batch *b = arg;
	char *buf = malloc(b->size);
	for (int i = b->first; i < b->first + b->count; i++) {
		memset(buf, 'x', b->size);
		int n = snprintf(buf, b->size, "Subject: growth %d\r\n\r\n", i);
		buf[n] = 'y';
		store_msg_new_t m = {0};
		store_msg_append(txn, b->folder, buf, b->size, &m, &b->last_uid, NULL);
	}
	free(buf);
	return store_txn_err(txn);
}

static void test_map_growth(const char *dir)
{
	size_t tiny = 64 * 1024;
	store_t *st = open_store(dir, tiny);
	CHECK(store_mapsize(st) <= 128 * 1024);
	store_txn_t *txn;
	uint32_t acct, f;
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	CHECK_EQ_INT(store_account_add(txn, "grow", &acct), 0);
	CHECK_EQ_INT(store_folder_create(txn, acct, "INBOX", 0, &f), 0);
	CHECK_EQ_INT(store_txn_commit(txn), 0);
	/* 12 MB in batches of 25 x 40 KiB, and one 2 MB message. */
	struct batch b = {.folder = f, .count = 25, .size = 40 * 1024};
	for (int i = 0; i < 12; i++) {
		b.first = i * 25;
		CHECK_EQ_INT(store_write(st, add_batch_fn, &b), 0);
	}
	CHECK_EQ_INT(b.last_uid, 300);
	struct batch big = {.folder = f, .first = 1000, .count = 1, .size = 2 * 1024 * 1024};
	CHECK_EQ_INT(store_write(st, add_batch_fn, &big), 0);
	CHECK_EQ_INT(big.last_uid, 301);
	CHECK(store_mapsize(st) >= 14 * 1024 * 1024);
	store_close(st);

	/* Reopen with the tiny size again: the larger map is kept. */
	st = open_store(dir, tiny);
	CHECK(store_mapsize(st) >= 14 * 1024 * 1024);
	CHECK_EQ_INT(store_txn_begin_read(st, &txn), 0);
	store_folder_t fi;
	CHECK_EQ_INT(store_folder_get(txn, f, &fi), 0);
	CHECK_EQ_INT(fi.messages, 301);
	store_txn_abort(txn);
	/* The manual way: begin/commit reports STORE_EAGAIN, then it fits. */
	b.first = 5000;
	b.count = 200;
	b.size = 100 * 1024; /* 20 MB: more than the map holds now */
	int rc, tries = 0;
	do {
		CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
		add_batch_fn(txn, &b);
		if (store_txn_err(txn)) {
			/* Sticky: every later call is a no-op returning the error. */
			CHECK_EQ_INT(store_txn_err(txn), STORE_EAGAIN);
			uint32_t id;
			CHECK_EQ_INT(store_account_add(txn, "late", &id), STORE_EAGAIN);
			store_folder_t fx;
			CHECK_EQ_INT(store_folder_get(txn, f, &fx), STORE_EAGAIN);
		}
		rc = store_txn_commit(txn);
		tries++;
	} while (rc == STORE_EAGAIN && tries < 20);
	CHECK_EQ_INT(rc, 0);
	CHECK(tries > 1);
	CHECK_EQ_INT(b.last_uid, 501);
	CHECK_EQ_INT(store_check(st, NULL, NULL, NULL), 0);
	store_close(st);
}

int main(void)
{
	char *dir = test_tmpdir("store-blob");
	test_dedupe(dir);
	test_put_fd(dir);
	test_rmtree(dir);
	free(dir);
	dir = test_tmpdir("store-grow");
	test_map_growth(dir);
	test_rmtree(dir);
	free(dir);
	return test_done("test_store_blob");
}
