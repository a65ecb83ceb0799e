/*
 * IMAP lexical helpers shared by the client (sync/) and the listener
 * (server/): character classes, writing strings in the right form, modified
 * UTF-7 mailbox names (RFC 3501 5.1.3) and sequence sets.
 *
 * Pure functions: no logging, no global state. Output goes to a caller-owned
 * buf_t or to a new string the caller frees.
 */
#ifndef IB_IMAP_LEX_H
#define IB_IMAP_LEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

enum imap_lex_err {
	IMAP_LEX_OK = 0,
	IMAP_LEX_EINVAL = -1, /* malformed input */
	IMAP_LEX_ELIMIT = -2, /* input exceeds the caller's limit */
	IMAP_LEX_EORDER = -3, /* UIDs not sorted ascending, or a zero UID */
};

const char *imap_lex_strerror(int err);

/* ATOM-CHAR of RFC 3501: any CHAR except ( ) { SP CTL % * " \ ]. */
bool imap_lex_is_atom_char(unsigned char c);
/* ASTRING-CHAR: ATOM-CHAR or ']'. */
bool imap_lex_is_astring_char(unsigned char c);

enum imap_lex_form {
	IMAP_LEX_ATOM,	       /* written as is */
	IMAP_LEX_QUOTED,       /* written as "..." with \ escapes */
	IMAP_LEX_LITERAL_PLUS, /* written whole as {n+}CRLF bytes */
	IMAP_LEX_LITERAL_SYNC, /* only "{n}\r\n" written: the caller must end the
				  line here, wait for the server's "+" and then send
				  the n bytes itself */
};

/* The form a string needs: ATOM (astring chars only, not "NIL", not empty),
 * QUOTED (7-bit, no CR, LF or NUL, at most 1024 bytes) or a literal (returned as
 * IMAP_LEX_LITERAL_SYNC). */
enum imap_lex_form imap_lex_string_form(const char *s, size_t len, bool allow_atom);

#define IMAP_LEX_W_ATOM 1u    /* an atom is acceptable (astring positions) */
#define IMAP_LEX_W_LITPLUS 2u /* peer has LITERAL+ (or LITERAL- and len <= 4096) */

/*
 * Append s to b in the lightest form allowed by flags and return the form
 * used. 8-bit bytes, CR, LF or NUL force a literal; without
 * IMAP_LEX_W_LITPLUS only the literal's "{n}\r\n" header is written (see
 * IMAP_LEX_LITERAL_SYNC).
 */
enum imap_lex_form imap_lex_write_string(buf_t *b, const char *s, size_t len, unsigned flags);

/*
 * Modified UTF-7 (RFC 3501 5.1.3) <-> UTF-8 for mailbox names. On success
 * return 0 and set *out to a new NUL-terminated string the caller frees. On
 * invalid input (bad UTF-8; in mUTF-7: raw 8-bit bytes, an unterminated or
 * empty "&...-" run, bad base64, non-zero padding bits, a broken surrogate,
 * an encoded printable ASCII character or NUL) return IMAP_LEX_EINVAL and
 * leave *out NULL.
 */
int imap_mutf7_encode(const char *utf8, size_t len, char **out);
int imap_mutf7_decode(const char *mutf7, size_t len, char **out);

/*
 * Append the UIDs (sorted ascending, duplicates allowed) as a compact
 * sequence set, "1:5,7,9:12". n == 0 writes nothing. Returns 0, or
 * IMAP_LEX_EORDER (b unchanged) when not sorted or a UID is 0.
 */
int imap_seqset_format(buf_t *b, const uint32_t *uids, size_t n);

/* '*' in a sequence set: the largest number in use. */
#define IMAP_SEQ_STAR 0u

typedef struct imap_seq_range {
	uint32_t lo; /* lo <= hi unless one of them is IMAP_SEQ_STAR */
	uint32_t hi; /* a single number has lo == hi */
} imap_seq_range_t;

/*
 * Parse a sequence set ("1:5,7,9:*") into at most max_ranges ranges, in
 * input order; "5:1" becomes 1:5. On success return 0, *out is a new array
 * the caller frees and *n its length. Returns IMAP_LEX_EINVAL (syntax, zero,
 * number above 4294967295, empty set) or IMAP_LEX_ELIMIT (too many ranges);
 * *out is NULL then.
 */
int imap_seqset_parse(const char *s, size_t len, size_t max_ranges, imap_seq_range_t **out,
		      size_t *n);

/* Is uid in the parsed set? star is the value '*' stands for. */
bool imap_seqset_contains(const imap_seq_range_t *r, size_t n, uint32_t uid, uint32_t star);

#endif
