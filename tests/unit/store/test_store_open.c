/*
 * Opening the store: a newer schema is refused with a clear message, and so
 * are a garbage data.mdb, a foreign LMDB file and a store path that is not a
 * directory. Each message must name the file and say what to do.
 */
#include "testutil.h"
#include "store/store.h"

#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(data, 1, len, f) != len) {
		perror(path);
		exit(2);
	}
	fclose(f);
}

/* Overwrite meta "schema" with a raw LMDB write, as a newer version would. */
static void set_schema_raw(const char *envdir, uint32_t ver)
{
	MDB_env *env;
	MDB_txn *t;
	MDB_dbi dbi;
	CHECK_EQ_INT(mdb_env_create(&env), 0);
	CHECK_EQ_INT(mdb_env_set_maxdbs(env, 32), 0);
	CHECK_EQ_INT(mdb_env_open(env, envdir, 0, 0600), 0);
	CHECK_EQ_INT(mdb_txn_begin(env, NULL, 0, &t), 0);
	CHECK_EQ_INT(mdb_dbi_open(t, "meta", 0, &dbi), 0);
	uint8_t b[4] = {(uint8_t)(ver >> 24), (uint8_t)(ver >> 16), (uint8_t)(ver >> 8),
			(uint8_t)ver};
	MDB_val k = {6, "schema"}, v = {4, b};
	CHECK_EQ_INT(mdb_put(t, dbi, &k, &v, 0), 0);
	CHECK_EQ_INT(mdb_txn_commit(t), 0);
	mdb_env_close(env);
}

static void test_schema(void)
{
	char *dir = test_tmpdir("store-schema");
	char err[512], envdir[4096];
	store_t *st = NULL;
	CHECK_EQ_INT(store_open(dir, NULL, &st, err, sizeof(err)), 0);
	store_close(st);
	snprintf(envdir, sizeof(envdir), "%s/store", dir);
	set_schema_raw(envdir, STORE_SCHEMA_VERSION + 98);
	st = (store_t *)1;
	CHECK_EQ_INT(store_open(dir, NULL, &st, err, sizeof(err)), STORE_ENEWER);
	CHECK(st == NULL);
	char want[64];
	snprintf(want, sizeof(want), "newer imapbridge (schema %d)", STORE_SCHEMA_VERSION + 98);
	CHECK(strstr(err, want) != NULL);
	CHECK(strstr(err, envdir) != NULL);
	CHECK(strstr(err, "upgrade, or use another datadir") != NULL);
	/* Read-only opens refuse it as well. */
	store_open_opts_t ro = {.readonly = true};
	CHECK_EQ_INT(store_open(dir, &ro, &st, err, sizeof(err)), STORE_ENEWER);
	/* The same version opens again. */
	set_schema_raw(envdir, STORE_SCHEMA_VERSION);
	CHECK_EQ_INT(store_open(dir, &ro, &st, err, sizeof(err)), 0);
	store_close(st);
	test_rmtree(dir);
	free(dir);
}

static void test_garbage_file(void)
{
	char *dir = test_tmpdir("store-garbage");
	char err[512], path[4096];
	snprintf(path, sizeof(path), "%s/store", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/store/data.mdb", dir);
	char junk[16384];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)(i * 131 + 7);
	write_file(path, junk, sizeof(junk));
	store_t *st = NULL;
	int rc = store_open(dir, NULL, &st, err, sizeof(err));
	CHECK_EQ_INT(rc, STORE_ECORRUPT);
	CHECK(st == NULL);
	CHECK(strstr(err, path) != NULL);
	CHECK(strstr(err, "not an imapbridge store") != NULL);

	/* A text file in place of data.mdb. */
	const char *text = "this is a mail spool, not a database\n";
	write_file(path, text, strlen(text));
	rc = store_open(dir, NULL, &st, err, sizeof(err));
	CHECK(rc == STORE_ECORRUPT || rc == STORE_EIO);
	CHECK(strstr(err, path) != NULL);
	test_rmtree(dir);
	free(dir);
}

/* Intact header, garbage pages: refused with a message, the caller lives. */
static void test_damaged_pages(void)
{
	char *dir = test_tmpdir("store-damaged");
	char err[512], path[4096];
	store_t *st = NULL;
	CHECK_EQ_INT(store_open(dir, NULL, &st, err, sizeof(err)), 0);
	store_txn_t *txn;
	uint32_t acct, f;
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	CHECK_EQ_INT(store_account_add(txn, "d", &acct), 0);
	CHECK_EQ_INT(store_folder_create(txn, acct, "INBOX", 0, &f), 0);
	for (int i = 0; i < 50; i++) {
		char body[200];
		int n = snprintf(body, sizeof(body), "Subject: %d\r\n\r\nbody\r\n", i);
		store_msg_new_t m = {0};
		CHECK_EQ_INT(store_msg_append(txn, f, body, (size_t)n, &m, NULL, NULL), 0);
	}
	CHECK_EQ_INT(store_txn_commit(txn), 0);
	store_close(st);
	snprintf(path, sizeof(path), "%s/store/data.mdb", dir);
	FILE *fp = fopen(path, "r+b");
	CHECK(fp != NULL);
	if (!fp)
		return;
	fseek(fp, 0, SEEK_END);
	long size = ftell(fp);
	/* Keep the two meta pages (the header check passes), ruin the rest. */
	fseek(fp, 8192, SEEK_SET);
	for (long i = 8192; i < size; i++)
		fputc((int)((i * 2654435761u) >> 13) & 0xff, fp);
	fclose(fp);
	st = NULL;
	CHECK_EQ_INT(store_open(dir, NULL, &st, err, sizeof(err)), STORE_ECORRUPT);
	CHECK(st == NULL);
	CHECK(strstr(err, path) != NULL);
	CHECK(strstr(err, "damaged") != NULL);
	test_rmtree(dir);
	free(dir);
}

static void test_foreign_lmdb(void)
{
	char *dir = test_tmpdir("store-foreign");
	char err[512], path[4096];
	snprintf(path, sizeof(path), "%s/store", dir);
	mkdir(path, 0700);
	MDB_env *env;
	MDB_txn *t;
	MDB_dbi dbi;
	CHECK_EQ_INT(mdb_env_create(&env), 0);
	CHECK_EQ_INT(mdb_env_open(env, path, 0, 0600), 0);
	CHECK_EQ_INT(mdb_txn_begin(env, NULL, 0, &t), 0);
	CHECK_EQ_INT(mdb_dbi_open(t, NULL, 0, &dbi), 0);
	MDB_val k = {5, "hello"}, v = {5, "world"};
	CHECK_EQ_INT(mdb_put(t, dbi, &k, &v, 0), 0);
	CHECK_EQ_INT(mdb_txn_commit(t), 0);
	mdb_env_close(env);
	store_t *st = NULL;
	CHECK_EQ_INT(store_open(dir, NULL, &st, err, sizeof(err)), STORE_ECORRUPT);
	CHECK(strstr(err, "data.mdb") != NULL);
	CHECK(strstr(err, "not an imapbridge store") != NULL);
	test_rmtree(dir);
	free(dir);
}

static void test_not_a_dir(void)
{
	char *dir = test_tmpdir("store-notdir");
	char err[512], path[4096];
	snprintf(path, sizeof(path), "%s/store", dir);
	write_file(path, "x", 1);
	store_t *st = NULL;
	CHECK_EQ_INT(store_open(dir, NULL, &st, err, sizeof(err)), STORE_ECORRUPT);
	CHECK(strstr(err, path) != NULL);
	CHECK(strstr(err, "not a directory") != NULL);
	/* Read-only open of a missing store. */
	char *empty = test_tmpdir("store-empty");
	store_open_opts_t ro = {.readonly = true};
	CHECK_EQ_INT(store_open(empty, &ro, &st, err, sizeof(err)), STORE_ENOTFOUND);
	CHECK(strstr(err, empty) != NULL);
	test_rmtree(empty);
	free(empty);
	test_rmtree(dir);
	free(dir);
}

struct problems {
	int n;
	bool refcount, changelog;
};

static void problem_cb(const char *problem, void *arg)
{
	struct problems *p = arg;
	p->n++;
	if (strstr(problem, "reference count 5, but 1 messages use it"))
		p->refcount = true;
	if (strstr(problem, "no change log entry"))
		p->changelog = true;
}

/* store_check() must notice a wrong reference count and a missing change
 * log entry written behind the store's back. */
static void test_check_detects(void)
{
	char *dir = test_tmpdir("store-check");
	char err[512], envdir[4096];
	store_t *st = NULL;
	CHECK_EQ_INT(store_open(dir, NULL, &st, err, sizeof(err)), 0);
	store_txn_t *txn;
	uint32_t acct, f, uid;
	uint64_t ms;
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	CHECK_EQ_INT(store_account_add(txn, "c", &acct), 0);
	CHECK_EQ_INT(store_folder_create(txn, acct, "INBOX", 0, &f), 0);
	store_msg_new_t m = {0};
	CHECK_EQ_INT(store_msg_append(txn, f, "hello", 5, &m, &uid, &ms), 0);
	CHECK_EQ_INT(store_txn_commit(txn), 0);
	CHECK_EQ_INT(store_check(st, NULL, NULL, NULL), 0);
	store_close(st);

	snprintf(envdir, sizeof(envdir), "%s/store", dir);
	MDB_env *env;
	MDB_txn *t;
	MDB_dbi refs, changes;
	CHECK_EQ_INT(mdb_env_create(&env), 0);
	CHECK_EQ_INT(mdb_env_set_maxdbs(env, 32), 0);
	CHECK_EQ_INT(mdb_env_open(env, envdir, 0, 0600), 0);
	CHECK_EQ_INT(mdb_txn_begin(env, NULL, 0, &t), 0);
	CHECK_EQ_INT(mdb_dbi_open(t, "blobrefs", 0, &refs), 0);
	CHECK_EQ_INT(mdb_dbi_open(t, "changes", 0, &changes), 0);
	uint8_t five[8] = {0, 0, 0, 0, 0, 0, 0, 5};
	MDB_val k = {STORE_HASH_LEN, m.hash.b}, v = {8, five};
	CHECK_EQ_INT(mdb_put(t, refs, &k, &v, 0), 0);
	uint8_t ck[12] = {(uint8_t)(f >> 24), (uint8_t)(f >> 16), (uint8_t)(f >> 8), (uint8_t)f};
	for (int i = 0; i < 8; i++)
		ck[4 + i] = (uint8_t)(ms >> (56 - 8 * i));
	MDB_val ckey = {12, ck};
	CHECK_EQ_INT(mdb_del(t, changes, &ckey, NULL), 0);
	CHECK_EQ_INT(mdb_txn_commit(t), 0);
	mdb_env_close(env);

	CHECK_EQ_INT(store_open(dir, NULL, &st, err, sizeof(err)), 0);
	struct problems p = {0};
	size_t np = 0;
	CHECK_EQ_INT(store_check(st, problem_cb, &p, &np), STORE_ECORRUPT);
	CHECK_EQ_INT(np, p.n);
	CHECK(p.refcount);
	CHECK(p.changelog);
	store_close(st);
	test_rmtree(dir);
	free(dir);
}

/* The close stamp (data file identity, the test's `stamp`) says "open" while
 * a writer has the store open and holds the data file's stamp after a clean
 * close; a read-only open changes nothing. An older version's marker file
 * is taken over and removed. */
static void read_stamp(const char *path, char *buf, size_t n)
{
	buf[0] = '\0';
	FILE *fp = fopen(path, "r");
	if (!fp)
		return;
	if (!fgets(buf, (int)n, fp))
		buf[0] = '\0';
	fclose(fp);
	size_t len = strlen(buf);
	while (len > 0 && (buf[len - 1] == ' ' || buf[len - 1] == '\n'))
		buf[--len] = '\0';
}

static void test_open_marker(void)
{
	char *dir = test_tmpdir("store-marker");
	char err[512], stamp[4096], marker[4096], line[200], closed[200];
	store_t *st = NULL, *ro_st = NULL;
	snprintf(stamp, sizeof(stamp), "%s/store/clean-close", dir);
	snprintf(marker, sizeof(marker), "%s/store/open-marker", dir);
	CHECK_EQ_INT(store_open(dir, NULL, &st, err, sizeof(err)), 0);
	read_stamp(stamp, line, sizeof(line));
	CHECK_STR(line, "open");
	store_open_opts_t ro = {.readonly = true};
	CHECK_EQ_INT(store_open(dir, &ro, &ro_st, err, sizeof(err)), 0);
	store_close(ro_st);
	read_stamp(stamp, line, sizeof(line));
	CHECK_STR(line, "open");
	store_close(st);
	read_stamp(stamp, closed, sizeof(closed));
	struct stat sb;
	char data[4096], want[200];
	snprintf(data, sizeof(data), "%s/store/data.mdb", dir);
	CHECK_EQ_INT(stat(data, &sb), 0);
	snprintf(want, sizeof(want), "%ju %ju %jd %jd %ld", (uintmax_t)sb.st_dev,
		 (uintmax_t)sb.st_ino, (intmax_t)sb.st_size, (intmax_t)sb.st_mtim.tv_sec,
		 (long)sb.st_mtim.tv_nsec);
	CHECK_STR(closed, want);
	CHECK_EQ_INT(store_open(dir, &ro, &ro_st, err, sizeof(err)), 0);
	store_close(ro_st);
	read_stamp(stamp, line, sizeof(line));
	CHECK_STR(line, closed);
	CHECK(access(marker, F_OK) != 0);

	/* Upgrade: the old marker counts as "open", and goes once the stamp says so. */
	write_file(marker, "", 0);
	CHECK_EQ_INT(store_open(dir, NULL, &st, err, sizeof(err)), 0);
	CHECK(access(marker, F_OK) != 0);
	read_stamp(stamp, line, sizeof(line));
	CHECK_STR(line, "open");
	store_close(st);
	test_rmtree(dir);
	free(dir);
}

/* Pages ruined in the middle of a big tree (the outer paths intact): the
 * every-key walk refuses the file, both when asked for and when the marker
 * says the last writer did not close the store. */
static void test_damaged_middle(void)
{
	char *dir = test_tmpdir("store-middle");
	char err[512], path[4096], marker[4096];
	store_t *st = NULL;
	CHECK_EQ_INT(store_open(dir, NULL, &st, err, sizeof(err)), 0);
	store_txn_t *txn;
	uint32_t acct, f;
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	CHECK_EQ_INT(store_account_add(txn, "d", &acct), 0);
	CHECK_EQ_INT(store_folder_create(txn, acct, "INBOX", 0, &f), 0);
	for (int i = 0; i < 3000; i++) {
		char body[200];
		int n = snprintf(body, sizeof(body), "Subject: %d\r\n\r\nbody %d\r\n", i, i * 7);
		store_msg_new_t m = {0};
		CHECK_EQ_INT(store_msg_append(txn, f, body, (size_t)n, &m, NULL, NULL), 0);
	}
	CHECK_EQ_INT(store_txn_commit(txn), 0);
	store_close(st);

	snprintf(path, sizeof(path), "%s/store", dir);
	MDB_env *env;
	MDB_envinfo info;
	MDB_stat ms;
	CHECK_EQ_INT(mdb_env_create(&env), 0);
	CHECK_EQ_INT(mdb_env_set_maxdbs(env, 32), 0);
	CHECK_EQ_INT(mdb_env_open(env, path, MDB_RDONLY, 0600), 0);
	mdb_env_info(env, &info);
	mdb_env_stat(env, &ms);
	mdb_env_close(env);
	long psize = (long)ms.ms_psize, mid = (long)info.me_last_pgno / 2;
	CHECK(mid > 20);

	snprintf(path, sizeof(path), "%s/store/data.mdb", dir);
	FILE *fp = fopen(path, "r+b");
	CHECK(fp != NULL);
	if (!fp)
		return;
	fseek(fp, (mid - 4) * psize, SEEK_SET);
	for (long i = (mid - 4) * psize; i < (mid + 4) * psize; i++)
		fputc((int)((i * 2654435761u) >> 13) & 0xff, fp);
	fclose(fp);

	store_open_opts_t deep = {.deep_probe = true};
	st = NULL;
	CHECK_EQ_INT(store_open(dir, &deep, &st, err, sizeof(err)), STORE_ECORRUPT);
	CHECK(st == NULL);
	CHECK(strstr(err, "damaged") != NULL);

	/* What a killed writer leaves: the stamp still says "open". */
	snprintf(marker, sizeof(marker), "%s/store/clean-close", dir);
	write_file(marker, "open", 4);
	CHECK_EQ_INT(store_open(dir, NULL, &st, err, sizeof(err)), STORE_ECORRUPT);
	CHECK(st == NULL);
	CHECK(strstr(err, path) != NULL);
	/* And what an older version left: its marker file. */
	write_file(marker, "", 0);
	snprintf(marker, sizeof(marker), "%s/store/open-marker", dir);
	write_file(marker, "", 0);
	CHECK_EQ_INT(store_open(dir, NULL, &st, err, sizeof(err)), STORE_ECORRUPT);
	CHECK(st == NULL);
	test_rmtree(dir);
	free(dir);
}

/* LMDB's last committed transaction id of the store under dir. */
static size_t last_txnid(const char *dir)
{
	char path[4096];
	MDB_env *env;
	MDB_envinfo info = {0};
	snprintf(path, sizeof(path), "%s/store", dir);
	CHECK_EQ_INT(mdb_env_create(&env), 0);
	CHECK_EQ_INT(mdb_env_set_maxdbs(env, 32), 0);
	CHECK_EQ_INT(mdb_env_open(env, path, MDB_RDONLY, 0600), 0);
	mdb_env_info(env, &info);
	mdb_env_close(env);
	return info.me_last_txnid;
}

static int set_rs_fn(store_txn_t *txn, void *arg)
{
	return store_replica_set(txn, arg);
}

/* Recording the same replica state again commits nothing (a sync that
 * changed nothing costs no write to disk); a different one is recorded. */
static void test_replica_same_state(void)
{
	char *dir = test_tmpdir("store-rs");
	char err[512];
	store_t *st = NULL;
	store_txn_t *txn;
	uint32_t acct = 0, f = 0;
	CHECK_EQ_INT(store_open(dir, NULL, &st, err, sizeof(err)), 0);
	CHECK_EQ_INT(store_txn_begin_write(st, &txn), 0);
	CHECK_EQ_INT(store_account_add(txn, "r", &acct), 0);
	CHECK_EQ_INT(store_folder_create(txn, acct, "INBOX", 0, &f), 0);
	CHECK_EQ_INT(store_txn_commit(txn), 0);
	store_replica_t rs = {.folder_id = f, .replica_id = 2, .name = "INBOX", .uidvalidity = 7,
			      .uidnext = 10, .highestmodseq = 1ull << 63 | 5, .pushed_modseq = 1};
	CHECK_EQ_INT(store_write(st, set_rs_fn, &rs), 0);
	store_close(st);
	size_t t0 = last_txnid(dir);

	CHECK_EQ_INT(store_open(dir, NULL, &st, err, sizeof(err)), 0);
	CHECK_EQ_INT(store_write(st, set_rs_fn, &rs), 0);
	store_close(st);
	CHECK_EQ_INT((int)last_txnid(dir), (int)t0);

	rs.highestmodseq++;
	CHECK_EQ_INT(store_open(dir, NULL, &st, err, sizeof(err)), 0);
	CHECK_EQ_INT(store_write(st, set_rs_fn, &rs), 0);
	store_replica_t got;
	CHECK_EQ_INT(store_txn_begin_read(st, &txn), 0);
	CHECK_EQ_INT(store_replica_get(txn, f, 2, &got), 0);
	CHECK(got.highestmodseq == rs.highestmodseq);
	store_txn_abort(txn);
	store_close(st);
	CHECK_EQ_INT((int)last_txnid(dir), (int)t0 + 1);
	test_rmtree(dir);
	free(dir);
}

static void test_strerror(void)
{
	for (int e = 0; e >= STORE_ETOOBIG; e--)
		CHECK(strcmp(store_strerror(e), "unknown store error") != 0);
	CHECK(strcmp(store_strerror(-999), "unknown store error") == 0);
}

int main(void)
{
	test_schema();
	test_garbage_file();
	test_foreign_lmdb();
	test_damaged_pages();
	test_open_marker();
	test_damaged_middle();
	test_replica_same_state();
	test_not_a_dir();
	test_check_detects();
	test_strerror();
	return test_done("test_store_open");
}
