/*
 * A tiny test harness for the C unit tests: CHECK() records a failure with its
 * file and line and goes on; test_done() prints a summary and returns the exit
 * status for main().
 */
#ifndef IB_TESTUTIL_H
#define IB_TESTUTIL_H

#include <stdio.h>
#include <string.h>

extern int test_failures;
extern int test_checks;

#define CHECK(cond) do { \
	test_checks++; \
	if (!(cond)) { \
		test_failures++; \
		fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
	} \
} while (0)

#define CHECK_EQ_INT(a, b) do { \
	long long _a = (long long)(a), _b = (long long)(b); \
	test_checks++; \
	if (_a != _b) { \
		test_failures++; \
		fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", \
			__FILE__, __LINE__, #a, _a, #b, _b); \
	} \
} while (0)

#define CHECK_STR(got, want) do { \
	if (strcmp((got), (want)) != 0) \
		fprintf(stderr, "%s:%d: got \"%s\", wanted \"%s\"\n", __FILE__, __LINE__, \
			(got), (want)); \
	CHECK(strcmp((got), (want)) == 0); \
} while (0)

/* Make a fresh temporary directory; the caller frees the string. */
char *test_tmpdir(const char *prefix);
/* rm -rf */
void test_rmtree(const char *path);
int test_done(const char *name);

#endif
