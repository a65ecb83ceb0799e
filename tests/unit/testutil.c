#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <unistd.h>

int test_failures;
int test_checks;

char *test_tmpdir(const char *prefix)
{
	const char *base = getenv("TMPDIR");
	char tmpl[4096];
	snprintf(tmpl, sizeof(tmpl), "%s/%s.XXXXXX", base ? base : "/tmp", prefix);
	char *d = mkdtemp(tmpl);
	if (!d) {
		perror("mkdtemp");
		exit(2);
	}
	return strdup(d);
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

void test_rmtree(const char *path)
{
	nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int test_done(const char *name)
{
	if (test_failures) {
		fprintf(stderr, "%s: %d of %d checks failed\n", name, test_failures, test_checks);
		return 1;
	}
	printf("%s: all %d checks passed\n", name, test_checks);
	return 0;
}
