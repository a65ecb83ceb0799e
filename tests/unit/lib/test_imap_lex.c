/*
 * IMAP lexical helpers: string forms, modified UTF-7 (RFC 3501 examples plus
 * invalid input), sequence set formatting and parsing.
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/imap_lex.h"
#include "lib/util.h"

static char *written(const char *s, size_t len, unsigned flags, enum imap_lex_form *form)
{
	buf_t b = BUF_INIT;
	*form = imap_lex_write_string(&b, s, len, flags);
	char *r = xstrndup(b.data ? b.data : "", b.len);
	buf_free(&b);
	return r;
}

static void check_write(const char *s, size_t len, unsigned flags, enum imap_lex_form want_form,
			const char *want, size_t want_len)
{
	enum imap_lex_form f;
	buf_t b = BUF_INIT;
	f = imap_lex_write_string(&b, s, len, flags);
	CHECK_EQ_INT(f, want_form);
	CHECK_EQ_INT(b.len, want_len);
	if (b.len == want_len)
		CHECK(memcmp(b.data, want, want_len) == 0);
	buf_free(&b);
}

#define CW(s, flags, form, want) check_write(s, sizeof(s) - 1, flags, form, want, sizeof(want) - 1)

static void test_forms(void)
{
	CHECK(imap_lex_is_atom_char('a'));
	CHECK(imap_lex_is_atom_char('.'));
	CHECK(!imap_lex_is_atom_char(' '));
	CHECK(!imap_lex_is_atom_char('*'));
	CHECK(!imap_lex_is_atom_char(']'));
	CHECK(imap_lex_is_astring_char(']'));
	CHECK(!imap_lex_is_atom_char(0x80));
	CHECK(!imap_lex_is_atom_char(0x7f));

	CW("INBOX", IMAP_LEX_W_ATOM, IMAP_LEX_ATOM, "INBOX");
	CW("INBOX", 0, IMAP_LEX_QUOTED, "\"INBOX\"");
	CW("NIL", IMAP_LEX_W_ATOM, IMAP_LEX_QUOTED, "\"NIL\"");
	CW("", IMAP_LEX_W_ATOM, IMAP_LEX_QUOTED, "\"\"");
	CW("Sent Messages", IMAP_LEX_W_ATOM, IMAP_LEX_QUOTED, "\"Sent Messages\"");
	CW("a\"b\\c", IMAP_LEX_W_ATOM, IMAP_LEX_QUOTED, "\"a\\\"b\\\\c\"");
	CW("50%", IMAP_LEX_W_ATOM, IMAP_LEX_QUOTED, "\"50%\"");
	CW("p\xc3\xa4ss", IMAP_LEX_W_ATOM, IMAP_LEX_LITERAL_SYNC, "{5}\r\n");
	CW("p\xc3\xa4ss", IMAP_LEX_W_LITPLUS, IMAP_LEX_LITERAL_PLUS, "{5+}\r\np\xc3\xa4ss");
	CW("a\r\nb", IMAP_LEX_W_LITPLUS, IMAP_LEX_LITERAL_PLUS, "{4+}\r\na\r\nb");
	check_write("a\0b", 3, 0, IMAP_LEX_LITERAL_SYNC, "{3}\r\n", 5);

	enum imap_lex_form f;
	char *big = xmalloc(2001);
	memset(big, 'x', 2000);
	big[2000] = 0;
	char *w = written(big, 2000, IMAP_LEX_W_ATOM, &f);
	CHECK_EQ_INT(f, IMAP_LEX_ATOM);
	free(w);
	w = written(big, 2000, IMAP_LEX_W_LITPLUS, &f);
	CHECK_EQ_INT(f, IMAP_LEX_LITERAL_PLUS);
	CHECK(strncmp(w, "{2000+}\r\nxxx", 12) == 0);
	free(w);
	w = written(big, 2000, 0, &f);
	CHECK_EQ_INT(f, IMAP_LEX_LITERAL_SYNC);
	CHECK(strcmp(w, "{2000}\r\n") == 0);
	free(w);
	free(big);
	CHECK_EQ_INT(imap_lex_string_form("x", 1, false), IMAP_LEX_QUOTED);
}

static void check_mutf7(const char *utf8, const char *mutf7)
{
	char *e = NULL, *d = NULL;
	CHECK_EQ_INT(imap_mutf7_encode(utf8, strlen(utf8), &e), 0);
	CHECK(e && strcmp(e, mutf7) == 0);
	if (e && strcmp(e, mutf7) != 0)
		fprintf(stderr, "encode %s: got %s want %s\n", utf8, e, mutf7);
	CHECK_EQ_INT(imap_mutf7_decode(mutf7, strlen(mutf7), &d), 0);
	CHECK(d && strcmp(d, utf8) == 0);
	free(e);
	free(d);
}

static void check_mutf7_bad(const char *mutf7)
{
	char *d = (char *)"x";
	int rc = imap_mutf7_decode(mutf7, strlen(mutf7), &d);
	CHECK_EQ_INT(rc, IMAP_LEX_EINVAL);
	CHECK(d == NULL);
	if (rc != IMAP_LEX_EINVAL)
		fprintf(stderr, "decode of '%s' should fail\n", mutf7);
	if (rc == 0)
		free(d);
}

static void test_mutf7(void)
{
	check_mutf7("", "");
	check_mutf7("INBOX", "INBOX");
	check_mutf7("A&B", "A&-B");
	check_mutf7("&", "&-");
	/* RFC 3501 5.1.3 example: ~peter/mail/台北/日本語 */
	check_mutf7("~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
		    "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
	check_mutf7("\xc3\x84rger", "&AMQ-rger");
	check_mutf7("Entw\xc3\xbc"
		    "rfe",
		    "Entw&APw-rfe");
	/* Outside the BMP: a surrogate pair (U+1F600). */
	check_mutf7("\xf0\x9f\x98\x80", "&2D3eAA-");
	check_mutf7("a\tb", "a&AAk-b");

	check_mutf7_bad("&U,BTFw");	 /* unterminated */
	check_mutf7_bad("&-&");		 /* unterminated at the end */
	check_mutf7_bad("a&AGE");	 /* no '-' */
	check_mutf7_bad("&AGE-");	 /* encodes printable 'a' */
	check_mutf7_bad("&AMQ!-");	 /* bad base64 */
	check_mutf7_bad("&AMR-");	 /* non-zero padding bits */
	check_mutf7_bad("&2D0-");	 /* lone high surrogate */
	check_mutf7_bad("&3gA-");	 /* lone low surrogate */
	check_mutf7_bad("\xc3\x84rger"); /* raw 8-bit */
	check_mutf7_bad("&AAA-");	 /* NUL */
	check_mutf7_bad("&AMQA-");	 /* a partial extra unit */
	check_mutf7_bad("a\tb");	 /* raw control character */

	char *e = (char *)"x";
	CHECK_EQ_INT(imap_mutf7_encode("\xc3", 1, &e), IMAP_LEX_EINVAL);
	CHECK(e == NULL);
	CHECK_EQ_INT(imap_mutf7_encode("\xc0\xaf", 2, &e), IMAP_LEX_EINVAL);	 /* overlong */
	CHECK_EQ_INT(imap_mutf7_encode("\xed\xa0\x80", 3, &e), IMAP_LEX_EINVAL); /* surrogate */
	CHECK_EQ_INT(imap_mutf7_encode("\xf4\x90\x80\x80", 4, &e), IMAP_LEX_EINVAL);
	CHECK_EQ_INT(imap_mutf7_encode("a\0b", 3, &e), IMAP_LEX_EINVAL);
}

static void check_fmt(const uint32_t *u, size_t n, const char *want)
{
	buf_t b = BUF_INIT;
	CHECK_EQ_INT(imap_seqset_format(&b, u, n), 0);
	const char *got = buf_cstr(&b);
	CHECK(strcmp(got, want) == 0);
	if (strcmp(got, want) != 0)
		fprintf(stderr, "seqset: got %s want %s\n", got, want);
	buf_free(&b);
}

static void test_seqset(void)
{
	uint32_t a[] = {1, 2, 3, 4, 5, 7, 9, 10, 11, 12};
	check_fmt(a, IB_ARRAY_LEN(a), "1:5,7,9:12");
	uint32_t b[] = {3};
	check_fmt(b, 1, "3");
	check_fmt(b, 0, "");
	uint32_t c[] = {1, 1, 2, 2, 4, 4294967294u, 4294967295u};
	check_fmt(c, IB_ARRAY_LEN(c), "1:2,4,4294967294:4294967295");
	uint32_t d[] = {1, 3, 5};
	check_fmt(d, 3, "1,3,5");
	uint32_t bad1[] = {2, 1};
	uint32_t bad2[] = {0, 1};
	buf_t bb = BUF_INIT;
	CHECK_EQ_INT(imap_seqset_format(&bb, bad1, 2), IMAP_LEX_EORDER);
	CHECK_EQ_INT(imap_seqset_format(&bb, bad2, 2), IMAP_LEX_EORDER);
	CHECK_EQ_INT(bb.len, 0);
	buf_free(&bb);

	imap_seq_range_t *r = NULL;
	size_t n = 0;
	const char *s = "1:5,7,9:*,12:10,*";
	CHECK_EQ_INT(imap_seqset_parse(s, strlen(s), 100, &r, &n), 0);
	CHECK_EQ_INT(n, 5);
	if (n == 5) {
		CHECK(r[0].lo == 1 && r[0].hi == 5);
		CHECK(r[1].lo == 7 && r[1].hi == 7);
		CHECK(r[2].lo == 9 && r[2].hi == IMAP_SEQ_STAR);
		CHECK(r[3].lo == 10 && r[3].hi == 12);
		CHECK(r[4].lo == IMAP_SEQ_STAR && r[4].hi == IMAP_SEQ_STAR);
		CHECK(imap_seqset_contains(r, n, 3, 100));
		CHECK(!imap_seqset_contains(r, n, 6, 100));
		CHECK(imap_seqset_contains(r, n, 50, 100));
		CHECK(!imap_seqset_contains(r, n, 8, 100));
		/* 9:* with '*' = 7 is 7:9. */
		CHECK(imap_seqset_contains(r, n, 8, 7));
	}
	free(r);
	/* "4:*" with '*' = 2 means 2:4. */
	s = "4:*";
	CHECK_EQ_INT(imap_seqset_parse(s, strlen(s), 10, &r, &n), 0);
	CHECK(imap_seqset_contains(r, n, 3, 2));
	CHECK(!imap_seqset_contains(r, n, 5, 2));
	free(r);
	s = "4294967295";
	CHECK_EQ_INT(imap_seqset_parse(s, strlen(s), 10, &r, &n), 0);
	CHECK(n == 1 && r[0].lo == 4294967295u);
	free(r);

	const char *bad[] = {"",  "0",	  "1:0", "4294967296", "1,", ",1", "1::2",
			     "a", "1:2 ", "01",	 "1,,2",       "$",  "-1"};
	for (size_t i = 0; i < IB_ARRAY_LEN(bad); i++) {
		r = (imap_seq_range_t *)&n;
		int rc = imap_seqset_parse(bad[i], strlen(bad[i]), 10, &r, &n);
		CHECK_EQ_INT(rc, IMAP_LEX_EINVAL);
		CHECK(r == NULL);
		if (rc == 0) {
			fprintf(stderr, "seqset '%s' should fail\n", bad[i]);
			free(r);
		}
	}
	s = "1,2,3,4";
	CHECK_EQ_INT(imap_seqset_parse(s, strlen(s), 3, &r, &n), IMAP_LEX_ELIMIT);
	CHECK(r == NULL);
	CHECK_EQ_INT(imap_seqset_parse(s, strlen(s), 4, &r, &n), 0);
	free(r);

	/* Round trip: format then parse covers exactly the input. */
	uint32_t e[200];
	size_t ne = 0;
	for (uint32_t v = 1; v < 600 && ne < 200; v += 1 + (v * 7) % 4)
		e[ne++] = v;
	buf_t fb = BUF_INIT;
	CHECK_EQ_INT(imap_seqset_format(&fb, e, ne), 0);
	CHECK_EQ_INT(imap_seqset_parse(fb.data, fb.len, 1000, &r, &n), 0);
	size_t k = 0;
	for (uint32_t v = 1; v < 700; v++) {
		bool in = k < ne && e[k] == v;
		if (in)
			k++;
		CHECK(imap_seqset_contains(r, n, v, 700) == in);
	}
	free(r);
	buf_free(&fb);
	CHECK(strcmp(imap_lex_strerror(IMAP_LEX_EORDER),
		     "UIDs are not sorted ascending or include 0") == 0);
}

int main(void)
{
	test_forms();
	test_mutf7();
	test_seqset();
	return test_done("imap_lex");
}
