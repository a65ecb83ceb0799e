/*
 * Small utilities shared by every part: allocation that aborts on failure,
 * string helpers, time.
 *
 * Allocation failure is not a recoverable error in imapbridge (STYLE.md):
 * the x* functions print one line and abort.
 */
#ifndef IB_UTIL_H
#define IB_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define IB_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a new string; the caller frees it. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Monotonic clock in seconds, and in milliseconds. */
double ib_now(void);
uint64_t ib_now_ms(void);

/* Expand a leading "~/" with $HOME. Returns a new string. */
char *ib_expand_home(const char *path);

/* Create a directory and its parents (like mkdir -p). 0 or -errno. */
int ib_mkdirs(const char *path, unsigned mode);

/* Whether the file system of fd (path, for ib_path_local_fs) is a local
 * one of this kernel: every change to it goes through this machine's page
 * cache (so write() and a shared map see the same bytes) and raises
 * inotify events here. Not a network file system, nor FUSE. */
bool ib_fd_local_fs(int fd);
bool ib_path_local_fs(const char *path);

/* Index of the first element >= v in the ascending array a[n] (n if none). */
size_t ib_u32_lower_bound(const uint32_t *a, size_t n, uint32_t v);

/* Big-endian helpers for composite keys: byte order is numeric order. */
static inline void ib_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline void ib_put_be64(uint8_t *p, uint64_t v)
{
	ib_put_be32(p, (uint32_t)(v >> 32));
	ib_put_be32(p + 4, (uint32_t)v);
}
static inline uint32_t ib_get_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	       ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}
static inline uint64_t ib_get_be64(const uint8_t *p)
{
	return ((uint64_t)ib_get_be32(p) << 32) | ib_get_be32(p + 4);
}

#endif
