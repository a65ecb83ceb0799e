/*
 * A big message costs no heap: the store writes through MDB_WRITEMAP, so a
 * write transaction's pages live in the file map (file-backed memory the
 * kernel can drop), not in malloc'd dirty pages. Also: the data file has
 * disk blocks for a transaction's pages before it writes them (so a full
 * disk is an error, not SIGBUS), the map still grows from a small size with
 * a big blob, and the bytes read back are the bytes written. A blob's bytes
 * go to the data file by pwrite() and land where the map shows them, also
 * after the map grew and moved.
 */
#include "testutil.h"
#include "store/store.h"
#include "store_open.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BIG (24u << 20)

/* RssAnon of this process in KiB, or -1. */
static long rss_anon_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "RssAnon: %ld", &v) == 1)
			break;
	fclose(f);
	return v;
}

/* A temporary file of BIG bytes of message-like text; returns an open fd. */
static int big_file(const char *dir, store_hash_t *hash)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/big.eml", dir);
	FILE *f = fopen(path, "w+");
	if (!f)
		exit(2);
	fputs("Subject: big\r\n\r\n", f);
	size_t n = strlen("Subject: big\r\n\r\n");
	char line[79];
	memset(line, 'x', 76);
	line[76] = '\r';
	line[77] = '\n';
	line[78] = '\0';
	while (n + 78 <= BIG) {
		fputs(line, f);
		n += 78;
	}
	while (n < BIG) {
		fputc('.', f);
		n++;
	}
	fflush(f);
	int fd = dup(fileno(f));
	fclose(f);
	unlink(path);
	/* Hash of the same bytes, computed from the file in pieces. */
	char *all = malloc(BIG);
	if (!all || pread(fd, all, BIG, 0) != (ssize_t)BIG)
		exit(2);
	store_hash_compute(all, BIG, hash);
	free(all);
	return fd;
}

static void test_big_blob_no_heap(const char *dir)
{
	store_hash_t want, got;
	int fd = big_file(dir, &want);
	/* A map too small for the blob: the write must grow it and retry. */
	store_t *st = open_store(dir, 4u << 20);
	store_txn_t *txn = NULL;
	int rc, tries = 0;
	long before = rss_anon_kib(), during = -1;
	do {
		CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
		rc = store_blob_put_fd(txn, fd, 0, BIG, &got);
		if (rc == 0) {
			during = rss_anon_kib();
			/* Keep it: a blob nobody references is swept at commit. */
			uint32_t acct, f;
			store_msg_new_t m = {0};
			m.hash = got;
			store_account_add(txn, "w", &acct);
			store_folder_create(txn, acct, "INBOX", 0, &f);
			store_msg_add(txn, f, &m, NULL, NULL);
		}
		rc = store_txn_commit(txn);
		tries++;
	} while (rc == STORE_EAGAIN && tries < 10);
	CHECK_EQ_INT(rc, 0);
	CHECK(store_mapsize(st) >= BIG);
	CHECK(memcmp(&want, &got, sizeof(want)) == 0);
	/* Without MDB_WRITEMAP this is BIG (24 MB) of dirty pages in the heap. */
	CHECK(before > 0 && during > 0);
	CHECK(during - before < 4 * 1024);
	fprintf(stderr, "RssAnon before %ld KiB, with a %u MB blob written %ld KiB\n", before,
		BIG >> 20, during);

	/* The data file has blocks for what was written, not a sparse hole. */
	char path[4096];
	struct stat sb;
	snprintf(path, sizeof(path), "%s/store/data.mdb", dir);
	CHECK_EQ_INT(stat(path, &sb), 0);
	CHECK((uint64_t)sb.st_blocks * 512 >= BIG);

	/* Read back byte for byte. */
	CHECK_EQ_INT(store_txn_begin_read(st, &txn), 0);
	const void *data = NULL;
	size_t len = 0;
	CHECK_EQ_INT(store_blob_get(txn, &got, &data, &len), 0);
	CHECK_EQ_INT(len, BIG);
	store_hash_t again;
	store_hash_compute(data, len, &again);
	CHECK(memcmp(&want, &again, sizeof(want)) == 0);
	store_txn_abort(txn);
	CHECK_EQ_INT(store_check(st, NULL, NULL, NULL), 0);
	store_close(st);

	/* Reopened read-only (no WRITEMAP there), the same bytes. */
	store_open_opts_t ro = {.readonly = true};
	char err[512];
	CHECK_EQ_INT(store_open(dir, &ro, &st, err, sizeof(err)), 0);
	CHECK_EQ_INT(store_txn_begin_read(st, &txn), 0);
	CHECK_EQ_INT(store_blob_get(txn, &got, &data, &len), 0);
	CHECK_EQ_INT(len, BIG);
	store_hash_compute(data, len, &again);
	CHECK(memcmp(&want, &again, sizeof(want)) == 0);
	store_txn_abort(txn);
	store_close(st);
	close(fd);
}

/* Blob i of the test below: len(i) bytes of a pattern that depends on i. */
static size_t pat_len(int i)
{
	static const size_t lens[] = {0, 1, 15, 4080, 4096, 4097, 12289, 70001, (1u << 20) + 3};
	return lens[i % 9] + (size_t)(i / 9) * 517;
}

static char *pat(int i, size_t len)
{
	char *p = malloc(len ? len : 1);
	if (!p)
		exit(2);
	for (size_t k = 0; k < len; k++)
		p[k] = (char)('a' + (k * 7 + (size_t)i * 13) % 26);
	return p;
}

static void check_pats(store_t *st, const store_hash_t *h, int n)
{
	store_txn_t *txn = NULL;
	CHECK_EQ_INT(store_txn_begin_read(st, &txn), 0);
	for (int i = 0; i < n; i++) {
		const void *data = NULL;
		size_t len = 0;
		CHECK_EQ_INT(store_blob_get(txn, &h[i], &data, &len), 0);
		CHECK_EQ_INT(len, pat_len(i));
		char *want = pat(i, len);
		CHECK(len == 0 || memcmp(data, want, len) == 0);
		free(want);
	}
	store_txn_abort(txn);
}

static void test_blob_bytes_by_pwrite(const char *dir)
{
	/* A 64 KiB map: it grows (and LMDB maps the file anew, elsewhere)
	 * several times on the way. */
	store_t *st = open_store(dir, 64u << 10);
	enum { N = 36 };
	store_hash_t h[N];
	uint32_t acct = 0, f = 0;
	store_txn_t *txn = NULL;
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	CHECK_EQ_INT(store_account_add(txn, "p", &acct), 0);
	CHECK_EQ_INT(store_folder_create(txn, acct, "INBOX", 0, &f), 0);
	CHECK_EQ_INT(store_txn_commit(txn), 0);
	int i = 0;
	while (i < N) {
		CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
		int end = i + 4 < N ? i + 4 : N;
		for (int k = i; k < end; k++) {
			size_t len = pat_len(k);
			char *p = pat(k, len);
			store_msg_new_t m = {0};
			if (store_blob_put(txn, p, len, &m.hash) == 0) {
				h[k] = m.hash;
				store_msg_add(txn, f, &m, NULL, NULL);
			}
			free(p);
		}
		int rc = store_txn_commit(txn);
		if (rc == STORE_EAGAIN)
			continue; /* grown at the next begin: the same blobs again */
		CHECK_EQ_INT(rc, 0);
		i = end;
		check_pats(st, h, i);
	}
	CHECK(store_mapsize(st) > (64u << 10));
	CHECK_EQ_INT(store_check(st, NULL, NULL, NULL), 0);

	/* 24 MB in one blob, in one pwrite(). */
	char *big = pat(1000, BIG);
	store_hash_t bh;
	int rc, tries = 0;
	do {
		CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
		rc = store_blob_put(txn, big, BIG, &bh);
		if (rc == 0) {
			store_msg_new_t m = {0};
			m.hash = bh;
			store_msg_add(txn, f, &m, NULL, NULL);
		}
		rc = store_txn_commit(txn);
	} while (rc == STORE_EAGAIN && ++tries < 10);
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(store_txn_begin_read(st, &txn), 0);
	const void *data = NULL;
	size_t len = 0;
	CHECK_EQ_INT(store_blob_get(txn, &bh, &data, &len), 0);
	CHECK(len == BIG && memcmp(data, big, BIG) == 0);
	store_txn_abort(txn);
	free(big);
	store_close(st);

	/* Read-only, without the write map: the same bytes. */
	store_open_opts_t ro = {.readonly = true};
	char err[512];
	CHECK_EQ_INT(store_open(dir, &ro, &st, err, sizeof(err)), 0);
	check_pats(st, h, N);
	store_close(st);
}

int main(void)
{
	char *dir = test_tmpdir("store-writemap");
	test_big_blob_no_heap(dir);
	test_rmtree(dir);
	free(dir);
	dir = test_tmpdir("store-pwrite");
	test_blob_bytes_by_pwrite(dir);
	test_rmtree(dir);
	free(dir);
	return test_done("test_store_writemap");
}
