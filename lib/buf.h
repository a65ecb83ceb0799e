/*
 * A growable byte buffer with a read offset, for network input and output.
 *
 * The buffer owns its memory; buf_free() releases it. Pointers into data are
 * valid until the next call that may grow or compact the buffer.
 */
#ifndef IB_BUF_H
#define IB_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct buf {
	char *data;
	size_t off;  /* start of unread bytes */
	size_t len;  /* end of valid bytes */
	size_t cap;
} buf_t;

#define BUF_INIT { NULL, 0, 0, 0 }

void buf_free(buf_t *b);
/* Drop everything. Keeps the memory. */
void buf_reset(buf_t *b);
/* Unread bytes and their count. */
static inline const char *buf_head(const buf_t *b) { return b->data + b->off; }
static inline size_t buf_avail(const buf_t *b) { return b->len - b->off; }
/* Make room for at least n more bytes at the end; returns the write pointer. */
char *buf_reserve(buf_t *b, size_t n);
/* Mark n bytes written after buf_reserve(). */
void buf_commit(buf_t *b, size_t n);
void buf_append(buf_t *b, const void *p, size_t n);
void buf_puts(buf_t *b, const char *s);
void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(buf_t *b, const char *fmt, va_list ap);
/* Mark n unread bytes consumed; compacts when worthwhile. */
void buf_consume(buf_t *b, size_t n);
/* NUL-terminate the unread bytes (not counted in len) and return them. */
const char *buf_cstr(buf_t *b);

#endif
