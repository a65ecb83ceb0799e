/*
 * IMAP lexical helpers (see imap_lex.h).
 */
#include "lib/imap_lex.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/util.h"

const char *imap_lex_strerror(int err)
{
	switch (err) {
	case IMAP_LEX_OK:
		return "success";
	case IMAP_LEX_EINVAL:
		return "malformed input";
	case IMAP_LEX_ELIMIT:
		return "input exceeds the limit";
	case IMAP_LEX_EORDER:
		return "UIDs are not sorted ascending or include 0";
	default:
		return "unknown error";
	}
}

bool imap_lex_is_atom_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	return strchr("(){%*\"\\]", c) == NULL;
}

bool imap_lex_is_astring_char(unsigned char c)
{
	return c == ']' || imap_lex_is_atom_char(c);
}

enum imap_lex_form imap_lex_string_form(const char *s, size_t len, bool allow_atom)
{
	bool atom = allow_atom && len > 0 && !(len == 3 && strncasecmp(s, "NIL", 3) == 0);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == 0 || c == '\r' || c == '\n' || c >= 0x80)
			return IMAP_LEX_LITERAL_SYNC;
		if (atom && !imap_lex_is_astring_char(c))
			atom = false;
	}
	/* Very long quoted strings are legal but some servers cap their line
	 * length; a literal is always safe. */
	if (atom)
		return IMAP_LEX_ATOM;
	if (len > 1024)
		return IMAP_LEX_LITERAL_SYNC;
	return IMAP_LEX_QUOTED;
}

enum imap_lex_form imap_lex_write_string(buf_t *b, const char *s, size_t len, unsigned flags)
{
	enum imap_lex_form f = imap_lex_string_form(s, len, (flags & IMAP_LEX_W_ATOM) != 0);
	switch (f) {
	case IMAP_LEX_ATOM:
		buf_append(b, s, len);
		break;
	case IMAP_LEX_QUOTED: {
		char *w = buf_reserve(b, len * 2 + 2);
		size_t o = 0;
		w[o++] = '"';
		for (size_t i = 0; i < len; i++) {
			if (s[i] == '"' || s[i] == '\\')
				w[o++] = '\\';
			w[o++] = s[i];
		}
		w[o++] = '"';
		buf_commit(b, o);
		break;
	}
	default:
		if (flags & IMAP_LEX_W_LITPLUS) {
			buf_printf(b, "{%zu+}\r\n", len);
			buf_append(b, s, len);
			f = IMAP_LEX_LITERAL_PLUS;
		} else {
			buf_printf(b, "{%zu}\r\n", len);
			f = IMAP_LEX_LITERAL_SYNC;
		}
		break;
	}
	return f;
}

/* ---- modified UTF-7 ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == ',')
		return 63;
	return -1;
}

/* Decode one UTF-8 code point; returns its length or 0 if invalid. */
static size_t utf8_next(const unsigned char *s, size_t len, uint32_t *cp)
{
	unsigned char c = s[0];
	size_t n;
	uint32_t v, min;
	if (c < 0x80) {
		*cp = c;
		return 1;
	} else if ((c & 0xe0) == 0xc0) {
		n = 2, v = c & 0x1f, min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		n = 3, v = c & 0x0f, min = 0x800;
	} else if ((c & 0xf8) == 0xf0) {
		n = 4, v = c & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (s[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return n;
}

static void utf8_put(buf_t *b, uint32_t cp)
{
	char t[4];
	size_t n;
	if (cp < 0x80) {
		t[0] = (char)cp, n = 1;
	} else if (cp < 0x800) {
		t[0] = (char)(0xc0 | (cp >> 6)), t[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
	} else if (cp < 0x10000) {
		t[0] = (char)(0xe0 | (cp >> 12)), t[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		t[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
	} else {
		t[0] = (char)(0xf0 | (cp >> 18)), t[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		t[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), t[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	buf_append(b, t, n);
}

static char *buf_take(buf_t *b)
{
	buf_cstr(b);
	char *s = b->data;
	if (!s)
		s = xstrdup("");
	return s;
}

int imap_mutf7_encode(const char *utf8, size_t len, char **out)
{
	const unsigned char *s = (const unsigned char *)utf8;
	buf_t b = BUF_INIT;
	int rc = IMAP_LEX_OK;
	size_t i = 0;
	*out = NULL;
	while (i < len) {
		if (s[i] >= 0x20 && s[i] < 0x7f) {
			if (s[i] == '&')
				buf_puts(&b, "&-");
			else
				buf_append(&b, &s[i], 1);
			i++;
			continue;
		}
		/* A run of characters outside printable ASCII: UTF-16BE, base64. */
		uint32_t bits = 0;
		unsigned nbits = 0;
		buf_puts(&b, "&");
		while (i < len && !(s[i] >= 0x20 && s[i] < 0x7f)) {
			uint32_t cp;
			size_t n = utf8_next(s + i, len - i, &cp);
			if (n == 0 || cp == 0) {
				rc = IMAP_LEX_EINVAL;
				goto out;
			}
			i += n;
			uint16_t units[2];
			size_t nu = 1;
			if (cp >= 0x10000) {
				cp -= 0x10000;
				units[0] = (uint16_t)(0xd800 | (cp >> 10));
				units[1] = (uint16_t)(0xdc00 | (cp & 0x3ff));
				nu = 2;
			} else {
				units[0] = (uint16_t)cp;
			}
			for (size_t u = 0; u < nu; u++) {
				bits = (bits << 16) | units[u];
				nbits += 16;
				while (nbits >= 6) {
					nbits -= 6;
					buf_append(&b, &b64[(bits >> nbits) & 0x3f], 1);
				}
				bits &= (1u << nbits) - 1;
			}
		}
		if (nbits)
			buf_append(&b, &b64[(bits << (6 - nbits)) & 0x3f], 1);
		buf_puts(&b, "-");
	}
	*out = buf_take(&b);
	return 0;
out:
	buf_free(&b);
	return rc;
}

int imap_mutf7_decode(const char *mutf7, size_t len, char **out)
{
	const unsigned char *s = (const unsigned char *)mutf7;
	buf_t b = BUF_INIT;
	size_t i = 0;
	*out = NULL;
	while (i < len) {
		unsigned char c = s[i];
		if (c < 0x20 || c >= 0x7f)
			goto bad;
		if (c != '&') {
			buf_append(&b, &c, 1);
			i++;
			continue;
		}
		i++;
		if (i < len && s[i] == '-') {
			buf_puts(&b, "&");
			i++;
			continue;
		}
		uint32_t bits = 0;
		unsigned nbits = 0;
		uint32_t high = 0; /* pending high surrogate */
		size_t start = i;
		while (i < len && s[i] != '-') {
			int v = b64_val(s[i]);
			if (v < 0)
				goto bad;
			bits = (bits << 6) | (uint32_t)v;
			nbits += 6;
			i++;
			if (nbits < 16)
				continue;
			nbits -= 16;
			uint32_t u = (bits >> nbits) & 0xffff;
			bits &= (1u << nbits) - 1;
			if (high) {
				if (u < 0xdc00 || u > 0xdfff)
					goto bad;
				utf8_put(&b, 0x10000 + ((high - 0xd800) << 10) + (u - 0xdc00));
				high = 0;
			} else if (u >= 0xd800 && u <= 0xdbff) {
				high = u;
			} else if (u >= 0xdc00 && u <= 0xdfff) {
				goto bad;
			} else if ((u >= 0x20 && u < 0x7f) || u == 0) {
				goto bad; /* must have been written directly */
			} else {
				utf8_put(&b, u);
			}
		}
		/* Needs the closing '-', at least one character, no dangling
		 * surrogate, fewer than 6 leftover bits and those all zero. */
		if (i >= len || i == start || high || nbits >= 6 || bits != 0)
			goto bad;
		i++;
	}
	*out = buf_take(&b);
	return 0;
bad:
	buf_free(&b);
	return IMAP_LEX_EINVAL;
}

/* ---- sequence sets ---- */

int imap_seqset_format(buf_t *b, const uint32_t *uids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (uids[i] == 0 || (i > 0 && uids[i] < uids[i - 1]))
			return IMAP_LEX_EORDER;
	size_t i = 0;
	bool first = true;
	while (i < n) {
		size_t j = i;
		/* Extend the run over duplicates and consecutive numbers. */
		while (j + 1 < n && (uids[j + 1] == uids[j] || uids[j + 1] == uids[j] + 1))
			j++;
		if (!first)
			buf_puts(b, ",");
		first = false;
		if (uids[j] == uids[i])
			buf_printf(b, "%u", uids[i]);
		else
			buf_printf(b, "%u:%u", uids[i], uids[j]);
		i = j + 1;
	}
	return 0;
}

static int seq_number(const char *s, size_t len, size_t *i, uint32_t *v)
{
	if (*i < len && s[*i] == '*') {
		(*i)++;
		*v = IMAP_SEQ_STAR;
		return 0;
	}
	uint64_t x = 0;
	size_t st = *i;
	while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
		x = x * 10 + (uint64_t)(s[*i] - '0');
		if (x > UINT32_MAX)
			return IMAP_LEX_EINVAL;
		(*i)++;
	}
	if (*i == st || x == 0 || s[st] == '0')
		return IMAP_LEX_EINVAL;
	*v = (uint32_t)x;
	return 0;
}

int imap_seqset_parse(const char *s, size_t len, size_t max_ranges, imap_seq_range_t **out,
		      size_t *n)
{
	imap_seq_range_t *r = NULL;
	size_t nr = 0, cap = 0, i = 0;
	int rc = IMAP_LEX_EINVAL;
	*out = NULL;
	*n = 0;
	if (len == 0)
		goto out;
	for (;;) {
		uint32_t lo, hi;
		if (seq_number(s, len, &i, &lo) < 0)
			goto out;
		hi = lo;
		if (i < len && s[i] == ':') {
			i++;
			if (seq_number(s, len, &i, &hi) < 0)
				goto out;
		}
		if (lo != IMAP_SEQ_STAR && hi != IMAP_SEQ_STAR && lo > hi) {
			uint32_t t = lo;
			lo = hi;
			hi = t;
		}
		if (nr == max_ranges) {
			rc = IMAP_LEX_ELIMIT;
			goto out;
		}
		if (nr == cap) {
			cap = cap ? cap * 2 : 8;
			r = xrealloc(r, cap * sizeof(*r));
		}
		r[nr].lo = lo;
		r[nr].hi = hi;
		nr++;
		if (i == len)
			break;
		if (s[i] != ',')
			goto out;
		i++;
	}
	*out = r;
	*n = nr;
	return 0;
out:
	free(r);
	return rc;
}

bool imap_seqset_contains(const imap_seq_range_t *r, size_t n, uint32_t uid, uint32_t star)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t lo = r[i].lo == IMAP_SEQ_STAR ? star : r[i].lo;
		uint32_t hi = r[i].hi == IMAP_SEQ_STAR ? star : r[i].hi;
		if (lo > hi) {
			uint32_t t = lo;
			lo = hi;
			hi = t;
		}
		if (uid >= lo && uid <= hi)
			return true;
	}
	return false;
}
