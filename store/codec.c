/*
 * Record encoding for the store: fixed-width big-endian integers and
 * NUL-terminated strings, so that decoded strings can point straight into the
 * map. Every read is bounds-checked: a short or garbled record sets bad and the
 * caller reports STORE_ECORRUPT instead of reading past the value.
 *
 * Also the keyword list helpers (sorted, unique string arrays).
 */
#include "store/store_p.h"

#include <stdlib.h>
#include <string.h>

uint8_t dec_u8(dec_t *d)
{
	if (d->bad || d->end - d->p < 1) {
		d->bad = true;
		return 0;
	}
	return *d->p++;
}

uint32_t dec_u32(dec_t *d)
{
	if (d->bad || d->end - d->p < 4) {
		d->bad = true;
		return 0;
	}
	uint32_t v = ib_get_be32(d->p);
	d->p += 4;
	return v;
}

uint64_t dec_u64(dec_t *d)
{
	if (d->bad || d->end - d->p < 8) {
		d->bad = true;
		return 0;
	}
	uint64_t v = ib_get_be64(d->p);
	d->p += 8;
	return v;
}

const uint8_t *dec_bytes(dec_t *d, size_t n)
{
	if (d->bad || (size_t)(d->end - d->p) < n) {
		d->bad = true;
		return NULL;
	}
	const uint8_t *r = d->p;
	d->p += n;
	return r;
}

const char *dec_str(dec_t *d)
{
	if (d->bad)
		return "";
	const uint8_t *nul = memchr(d->p, 0, (size_t)(d->end - d->p));
	if (!nul) {
		d->bad = true;
		return "";
	}
	const char *s = (const char *)d->p;
	d->p = nul + 1;
	return s;
}

void enc_u8(buf_t *b, uint8_t v)
{
	buf_append(b, &v, 1);
}

void enc_u32(buf_t *b, uint32_t v)
{
	uint8_t x[4];
	ib_put_be32(x, v);
	buf_append(b, x, 4);
}

void enc_u64(buf_t *b, uint64_t v)
{
	uint8_t x[8];
	ib_put_be64(x, v);
	buf_append(b, x, 8);
}

void enc_str(buf_t *b, const char *s)
{
	if (!s)
		s = "";
	buf_append(b, s, strlen(s) + 1);
}

/* ---------------------------------------------------------- keywords */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool kw_valid(const char *k)
{
	size_t n = strlen(k);
	if (n == 0 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)k[i];
		if (c <= ' ' || c == 0x7f)
			return false;
	}
	return true;
}

/* The strings are copied too: callers often pass keywords they just read
 * from the store, which point into the map and would not survive our writes. */
int kw_normalise(store_txn_t *txn, const store_keywords_t *in, store_keywords_t *out)
{
	out->v = NULL;
	out->n = 0;
	if (!in || in->n == 0)
		return 0;
	size_t total = 0;
	for (size_t i = 0; i < in->n; i++) {
		if (!in->v[i] || !kw_valid(in->v[i]))
			return STORE_EINVAL;
		total += strlen(in->v[i]) + 1;
	}
	const char **v = txn_scratch(txn, in->n * sizeof(*v));
	char *s = txn_scratch(txn, total);
	for (size_t i = 0; i < in->n; i++) {
		size_t l = strlen(in->v[i]) + 1;
		memcpy(s, in->v[i], l);
		v[i] = s;
		s += l;
	}
	qsort(v, in->n, sizeof(*v), cmp_str);
	size_t n = 0;
	for (size_t i = 0; i < in->n; i++)
		if (n == 0 || strcmp(v[n - 1], v[i]) != 0)
			v[n++] = v[i];
	out->v = v;
	out->n = n;
	return 0;
}

void kw_encode(buf_t *b, const store_keywords_t *kw)
{
	size_t n = kw ? kw->n : 0;
	enc_u32(b, (uint32_t)n);
	for (size_t i = 0; i < n; i++)
		enc_str(b, kw->v[i]);
}

int kw_decode(store_txn_t *txn, dec_t *d, store_keywords_t *out)
{
	out->v = NULL;
	out->n = 0;
	uint32_t n = dec_u32(d);
	if (d->bad)
		return STORE_ECORRUPT;
	if (n == 0)
		return 0;
	/* Each keyword needs at least two bytes: bound n before allocating. */
	if ((size_t)(d->end - d->p) < (size_t)n * 2)
		return STORE_ECORRUPT;
	const char **v = txn_scratch(txn, n * sizeof(*v));
	for (uint32_t i = 0; i < n; i++)
		v[i] = dec_str(d);
	if (d->bad)
		return STORE_ECORRUPT;
	out->v = v;
	out->n = n;
	return 0;
}

bool kw_equal(const store_keywords_t *a, const store_keywords_t *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->v[i], b->v[i]) != 0)
			return false;
	return true;
}
