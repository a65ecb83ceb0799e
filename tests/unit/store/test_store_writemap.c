/*
 * A big message costs no heap: the store writes through MDB_WRITEMAP, so a
 * write transaction's pages live in the file map (file-backed memory the
 * kernel can drop), not in malloc'd dirty pages. Also: the data file has
 * disk blocks for a transaction's pages before it writes them (so a full
 * disk is an error, not SIGBUS), the map still grows from a small size with
 * a big blob, and the bytes read back are the bytes written.
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

int main(void)
{
	char *dir = test_tmpdir("store-writemap");
	test_big_blob_no_heap(dir);
	test_rmtree(dir);
	free(dir);
	return test_done("test_store_writemap");
}
