/* Small utilities: see util.h. */
#include "lib/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>

static void oom(size_t n)
{
	fprintf(stderr, "imapbridge: out of memory allocating %zu bytes\n", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *xcalloc(size_t nmemb, size_t n)
{
	void *p = calloc(nmemb ? nmemb : 1, n ? n : 1);
	if (!p)
		oom(nmemb * n);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		oom(0);
	return s;
}

double ib_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t ib_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

char *ib_expand_home(const char *path)
{
	if (path[0] == '~' && (path[1] == '/' || path[1] == '\0')) {
		const char *home = getenv("HOME");
		if (!home)
			home = "/";
		return xasprintf("%s%s", home, path + 1);
	}
	return xstrdup(path);
}

int ib_mkdirs(const char *path, unsigned mode)
{
	char *p = xstrdup(path);
	int rc = 0;

	for (char *s = p + 1; ; s++) {
		if (*s == '/' || *s == '\0') {
			char c = *s;
			*s = '\0';
			if (mkdir(p, mode) < 0 && errno != EEXIST) {
				rc = -errno;
				break;
			}
			*s = c;
			if (c == '\0')
				break;
		}
	}
	free(p);
	return rc;
}

size_t ib_u32_lower_bound(const uint32_t *a, size_t n, uint32_t v)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t m = lo + (hi - lo) / 2;
		if (a[m] < v)
			lo = m + 1;
		else
			hi = m;
	}
	return lo;
}

/* Magic numbers from linux/magic.h. */
static bool local_fs_type(unsigned long type)
{
	static const unsigned long local[] = {
	    0xEF53,	/* ext2/3/4 */
	    0x58465342, /* xfs */
	    0x9123683E, /* btrfs */
	    0x01021994, /* tmpfs */
	    0xF2F52010, /* f2fs */
	    0x2FC12FC1, /* zfs */
	    0xCA451A4E, /* bcachefs */
	    0x794C7630, /* overlayfs (containers) */
	};
	for (size_t i = 0; i < IB_ARRAY_LEN(local); i++)
		if (type == local[i])
			return true;
	return false;
}

bool ib_fd_local_fs(int fd)
{
	struct statfs sf;
	return fstatfs(fd, &sf) == 0 && local_fs_type((unsigned long)sf.f_type);
}

bool ib_path_local_fs(const char *path)
{
	struct statfs sf;
	return statfs(path, &sf) == 0 && local_fs_type((unsigned long)sf.f_type);
}
