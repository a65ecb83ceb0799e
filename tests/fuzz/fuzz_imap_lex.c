/*
 * libFuzzer target for the IMAP lexical helpers: modified UTF-7 both ways and
 * sequence sets. Byte 0 picks the check, the rest is the input.
 *
 *  0: UTF-8 that encodes must decode back to the same bytes.
 *  1: mUTF-7 that decodes must re-encode to something that decodes alike.
 *  2: a sequence set that parses must not contain '*' ranges out of order;
 *     the UIDs it covers (up to a bound), formatted and parsed again, cover
 *     exactly the same UIDs.
 *  3: a string written in the form imap_lex_write_string() picks must read
 *     back as the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/imap_lex.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_utf8(const char *s, size_t n)
{
	char *e = NULL, *d = NULL;
	if (imap_mutf7_encode(s, n, &e) != 0)
		return;
	for (const char *c = e; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
			abort();
	if (imap_mutf7_decode(e, strlen(e), &d) != 0)
		abort();
	if (strlen(d) != n || memcmp(d, s, n) != 0)
		abort();
	free(e);
	free(d);
}

static void check_mutf7(const char *s, size_t n)
{
	char *d = NULL, *e = NULL, *d2 = NULL;
	if (imap_mutf7_decode(s, n, &d) != 0)
		return;
	if (imap_mutf7_encode(d, strlen(d), &e) != 0)
		abort();
	if (imap_mutf7_decode(e, strlen(e), &d2) != 0 || strcmp(d, d2) != 0)
		abort();
	free(d);
	free(e);
	free(d2);
}

#define BOUND 300u

static void check_seqset(const char *s, size_t n)
{
	imap_seq_range_t *r = NULL;
	size_t nr = 0;
	if (imap_seqset_parse(s, n, 64, &r, &nr) != 0)
		return;
	uint32_t uids[BOUND];
	size_t nu = 0;
	for (uint32_t v = 1; v < BOUND; v++)
		if (imap_seqset_contains(r, nr, v, BOUND - 1))
			uids[nu++] = v;
	buf_t b = BUF_INIT;
	if (imap_seqset_format(&b, uids, nu) != 0)
		abort();
	if (nu) {
		imap_seq_range_t *r2 = NULL;
		size_t nr2 = 0;
		if (imap_seqset_parse(b.data, b.len, BOUND, &r2, &nr2) != 0)
			abort();
		for (uint32_t v = 1; v < BOUND; v++)
			if (imap_seqset_contains(r, nr, v, BOUND - 1) !=
			    imap_seqset_contains(r2, nr2, v, BOUND - 1))
				abort();
		free(r2);
	}
	buf_free(&b);
	free(r);
}

static void check_write(const char *s, size_t n)
{
	buf_t b = BUF_INIT;
	enum imap_lex_form f = imap_lex_write_string(&b, s, n, IMAP_LEX_W_ATOM | IMAP_LEX_W_LITPLUS);
	const char *w = b.data ? b.data : "";
	if (f == IMAP_LEX_ATOM) {
		if (b.len != n || memcmp(w, s, n) != 0)
			abort();
	} else if (f == IMAP_LEX_QUOTED) {
		/* Undo the escapes. */
		size_t o = 0;
		if (b.len < 2 || w[0] != '"' || w[b.len - 1] != '"')
			abort();
		for (size_t i = 1; i + 1 < b.len; i++) {
			if (w[i] == '\\')
				i++;
			if (o >= n || w[i] != s[o++])
				abort();
		}
		if (o != n)
			abort();
	} else if (f == IMAP_LEX_LITERAL_PLUS) {
		const char *nl = memchr(w, '\n', b.len);
		if (!nl || (size_t)(w + b.len - (nl + 1)) != n || memcmp(nl + 1, s, n) != 0)
			abort();
	} else {
		abort();
	}
	buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *s = (const char *)data + 1;
	size_t n = size - 1;
	switch (data[0] & 3) {
	case 0:
		check_utf8(s, n);
		break;
	case 1:
		check_mutf7(s, n);
		break;
	case 2:
		check_seqset(s, n);
		break;
	default:
		check_write(s, n);
		break;
	}
	return 0;
}
