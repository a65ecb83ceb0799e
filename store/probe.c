/*
 * The structure probe run before the store is opened.
 *
 * LMDB trusts its file: a data.mdb whose header is intact but whose pages are
 * garbage (a disk error, a partial copy, someone's editor) makes it follow
 * page numbers out of the map and die with SIGBUS or SIGSEGV. We would rather
 * refuse such a file with a message than have the daemon crash at an arbitrary
 * later moment, so a child process looks at the file first and the parent
 * only looks at how it ended.
 *
 * At every start the child follows each database's tree to its first and
 * last keys: that finds a file whose pages are garbage, a truncated copy or a
 * foreign file at the cost of a few pages per database, not O(messages).
 * After a writer did not close the store (its open marker is still there) it
 * walks every key instead: LMDB itself survives a crash, but a writer killed
 * by a fault may have scribbled on the map, and a damaged page in the middle
 * of a tree would otherwise only show when something reads it. The walk reads
 * keys and value headers, not the message bytes (store_check() verifies
 * those by hash).
 */
#include "store/store_p.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum {
	PROBE_OK = 0,
	PROBE_LMDB_ERR = 10, /* an LMDB error: the normal open reports it */
	PROBE_BAD_TREE = 11, /* LMDB said the tree is corrupt */
};

/* Touch the key and the first byte of the value. */
static void touch(const MDB_val *k, const MDB_val *v, volatile size_t *sum)
{
	if (k->mv_size)
		*sum += ((const uint8_t *)k->mv_data)[0];
	if (v->mv_size)
		*sum += ((const uint8_t *)v->mv_data)[0];
}

/* deep: every entry; else the first and the last (the two outer paths of the
 * tree: its root, a branch page per level and two leaves). */
static int walk_dbi(MDB_txn *t, MDB_dbi dbi, bool deep)
{
	MDB_cursor *c;
	if (mdb_cursor_open(t, dbi, &c) != MDB_SUCCESS)
		return PROBE_LMDB_ERR;
	MDB_val k, v;
	volatile size_t sum = 0;
	int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	if (deep) {
		while (rc == MDB_SUCCESS) {
			touch(&k, &v, &sum);
			rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
		}
	} else if (rc == MDB_SUCCESS) {
		touch(&k, &v, &sum);
		rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
		if (rc == MDB_SUCCESS) {
			touch(&k, &v, &sum);
			rc = MDB_NOTFOUND;
		}
	}
	mdb_cursor_close(c);
	(void)sum;
	if (rc == MDB_NOTFOUND)
		return PROBE_OK;
	return store_map_mdb(rc) == STORE_ECORRUPT ? PROBE_BAD_TREE : PROBE_LMDB_ERR;
}

static int probe_child(const char *path, bool deep)
{
	MDB_env *env;
	MDB_txn *t;
	MDB_dbi main_dbi;
	if (mdb_env_create(&env) != MDB_SUCCESS || mdb_env_set_maxdbs(env, 64) != MDB_SUCCESS)
		return PROBE_LMDB_ERR;
	/* With the lock file, as a registered reader: another process (the
	 * daemon, when this is the admin CLI) may be writing meanwhile, and an
	 * unregistered reader could see pages being reused and cry wolf. A
	 * reader slot left by a crashed probe is cleared by the real open. */
	if (mdb_env_open(env, path, MDB_RDONLY | MDB_NOTLS, 0600) != MDB_SUCCESS)
		return PROBE_LMDB_ERR;
	if (mdb_txn_begin(env, NULL, MDB_RDONLY, &t) != MDB_SUCCESS)
		return PROBE_LMDB_ERR;
	if (mdb_dbi_open(t, NULL, 0, &main_dbi) != MDB_SUCCESS)
		return PROBE_LMDB_ERR;
	int rc = walk_dbi(t, main_dbi, deep);
	for (int i = 0; rc == PROBE_OK && i < DB_COUNT; i++) {
		MDB_dbi dbi;
		int mrc = mdb_dbi_open(t, store_db_names[i], 0, &dbi);
		if (mrc == MDB_NOTFOUND)
			continue; /* the open reports missing databases */
		if (mrc != MDB_SUCCESS)
			return store_map_mdb(mrc) == STORE_ECORRUPT ? PROBE_BAD_TREE
								    : PROBE_LMDB_ERR;
		rc = walk_dbi(t, dbi, deep);
	}
	/* Leave without cleanup: the process ends here. */
	return rc;
}

int store_probe(const char *path, bool deep, char *errbuf, size_t errlen)
{
	pid_t pid = fork();
	if (pid < 0)
		return 0; /* cannot probe: the open goes ahead unprotected */
	if (pid == 0) {
		/* Default dispositions so that a fault ends the child plainly. */
		signal(SIGBUS, SIG_DFL);
		signal(SIGSEGV, SIG_DFL);
		_exit(probe_child(path, deep));
	}
	int status = 0;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return 0;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) != PROBE_BAD_TREE)
		return 0;
	if (errbuf && errlen) {
		if (WIFSIGNALED(status))
			snprintf(errbuf, errlen,
				 "%s/data.mdb is damaged (reading it crashed with signal %d); "
				 "restore it from backup or use another datadir",
				 path, WTERMSIG(status));
		else
			snprintf(errbuf, errlen,
				 "%s/data.mdb is damaged (its page tree is corrupt); restore it "
				 "from backup or use another datadir",
				 path);
	}
	return STORE_ECORRUPT;
}
