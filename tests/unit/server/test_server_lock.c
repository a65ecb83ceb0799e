/* The data directory lock: held once, refused a second time with our pid
 * named, free again after release; the pid file is emptied on release. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/util.h"
#include "server/lock.h"
#include "testutil.h"

int main(void)
{
	char *dir = test_tmpdir("ib-test-lock");
	char err[512] = "";
	lock_t *a = NULL, *b = NULL;

	CHECK_EQ_INT(lock_acquire(dir, &a, err, sizeof(err)), LOCK_OK);
	CHECK(a != NULL);
	CHECK_EQ_INT(lock_read_pid(dir), getpid());
	char *file = xasprintf("%s/%s", dir, LOCK_FILE_NAME);
	struct stat st;
	CHECK(stat(file, &st) == 0 && (st.st_mode & 0777) == 0600);

	/* A second open file description conflicts even in the same process. */
	CHECK_EQ_INT(lock_acquire(dir, &b, err, sizeof(err)), LOCK_E_HELD);
	CHECK(b == NULL);
	char *want = xasprintf("another imapbridged (pid %ld) is already using %s; stop it or set "
			       "another datadir",
			       (long)getpid(), dir);
	CHECK(strcmp(err, want) == 0);
	if (strcmp(err, want) != 0)
		fprintf(stderr, "got: %s\n", err);
	free(want);

	lock_release(a);
	CHECK_EQ_INT(lock_read_pid(dir), 0);
	CHECK_EQ_INT(lock_acquire(dir, &b, err, sizeof(err)), LOCK_OK);
	lock_release(b);

	/* A directory that cannot hold the file: one sentence saying what to do. */
	char *missing = xasprintf("%s/no/such/dir", dir);
	CHECK_EQ_INT(lock_acquire(missing, &a, err, sizeof(err)), LOCK_E_IO);
	CHECK(strstr(err, "set another datadir") != NULL);
	free(missing);

	free(file);
	test_rmtree(dir);
	free(dir);
	return test_done("test_server_lock");
}
