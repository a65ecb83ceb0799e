/*
 * A test tool that checks a store for consistency (the daemon must not be
 * running):
 *
 *   ib_store_check DATADIR
 *
 * Runs store_check() in one read transaction and prints each problem found
 * on a line of its own. Exit status: 0 consistent, 1 problems found, 2 the
 * store could not be opened or checked. Integration tests run it after every
 * sync that a hostile server tried to break.
 */
#include <stdio.h>

#include "store/store.h"

static void problem_cb(const char *problem, void *arg)
{
	(void)arg;
	printf("%s\n", problem);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: ib_store_check DATADIR\n");
		return 2;
	}
	char err[512];
	store_t *st = NULL;
	store_open_opts_t oo = {.readonly = true};
	int rc = store_open(argv[1], &oo, &st, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "ib_store_check: %s\n", err[0] ? err : store_strerror(rc));
		return 2;
	}
	size_t n = 0;
	rc = store_check(st, problem_cb, NULL, &n);
	store_close(st);
	if (rc == STORE_ECORRUPT) {
		fprintf(stderr, "ib_store_check: %zu problem(s)\n", n);
		return 1;
	}
	if (rc) {
		fprintf(stderr, "ib_store_check: cannot check: %s\n", store_strerror(rc));
		return 2;
	}
	return 0;
}
