/*
 * IMAP response parser: a pure function over bytes (no sockets, no loop, no
 * logging). Feed it whatever arrived; it returns one complete response at a
 * time. Input may be split anywhere, including inside a literal, and the
 * parser keeps its own partial state, so the caller can drop consumed bytes
 * at once: a 50 MB literal never has to sit in the connection's buffer.
 *
 * Grammar: RFC 3501/9051 responses: "* ..." untagged, "tag ..." tagged,
 * "+ ..." continuation; atoms, numbers, quoted strings, literals {n} and
 * literal8 ~{n}, NIL, nested parenthesised lists, response codes [...].
 * Anything else is rejected with a reason, and limits (line length, nesting
 * depth, literal size, item count) keep a hostile server from exhausting
 * memory.
 *
 * Ownership: imap_parse() hands out a response the caller owns and frees with
 * imap_resp_free(). Strings inside it live as long as the response.
 */
#ifndef IB_IMAP_PARSE_H
#define IB_IMAP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum imap_item_type {
	IMAP_ITEM_ATOM,    /* includes flags like \Seen and section specs like BODY[] */
	IMAP_ITEM_NUMBER,  /* an atom of digits that fits in uint64 (num set; str too) */
	IMAP_ITEM_STRING,  /* quoted string or literal (literal = true) */
	IMAP_ITEM_NIL,
	IMAP_ITEM_LIST,    /* (...) ; children via child/next */
};

typedef struct imap_item {
	enum imap_item_type type;
	char *str;               /* ATOM, NUMBER, STRING: bytes, NUL-terminated; a
	                            literal may contain NUL bytes, so use len */
	size_t len;              /* bytes in str; for LIST, the number of children */
	uint64_t num;            /* NUMBER */
	bool literal;            /* STRING came as a literal */
	void *sink;              /* STRING literal diverted to the literal sink (str
	                            is NULL then); see imap_literal_sink_t */
	struct imap_item *child; /* LIST: first child */
	struct imap_item *next;  /* next sibling */
} imap_item_t;

enum imap_resp_kind {
	IMAP_RESP_UNTAGGED,      /* "* ..." */
	IMAP_RESP_TAGGED,        /* "A12 OK ..." */
	IMAP_RESP_CONTINUE,      /* "+ ..." */
};

enum imap_status {
	IMAP_STATUS_NONE,        /* not a status response (e.g. "* 3 EXISTS") */
	IMAP_STATUS_OK,
	IMAP_STATUS_NO,
	IMAP_STATUS_BAD,
	IMAP_STATUS_PREAUTH,
	IMAP_STATUS_BYE,
};

typedef struct imap_resp {
	enum imap_resp_kind kind;
	char *tag;               /* TAGGED only */
	enum imap_status status; /* tagged, or untagged OK/NO/BAD/PREAUTH/BYE */
	char *code;              /* response code name, upper-cased ("APPENDUID",
	                            "UIDVALIDITY", "CAPABILITY", ...), or NULL */
	imap_item_t *code_args;  /* the items after the code name inside [...] */
	char *text;              /* human-readable text after the code ("" if none);
	                            for CONTINUE, the text after "+ " */
	bool has_number;         /* "* 23 EXISTS" / "* 5 FETCH (...)" */
	uint32_t number;
	char *name;              /* untagged data keyword, upper-cased: "EXISTS",
	                            "FETCH", "CAPABILITY", "LIST", "STATUS",
	                            "SEARCH", "ESEARCH", "VANISHED", "FLAGS",
	                            "ENABLED", ...; NULL for status responses */
	imap_item_t *args;       /* items after name, first of a sibling chain */
} imap_resp_t;

enum imap_parse_result {
	IMAP_PARSE_OK = 0,       /* *resp holds a complete response */
	IMAP_PARSE_MORE = 1,     /* consumed everything; feed more bytes */
	IMAP_PARSE_BAD = -1,     /* malformed; imap_parser_error() says why. The
	                            parser must be reset before further use */
};

typedef struct imap_parse_limits {
	size_t max_line;         /* bytes of non-literal text per response (default 1 MiB) */
	unsigned max_depth;      /* list nesting (default 64) */
	uint64_t max_literal;    /* one literal (default 2 GiB) */
	size_t max_items;        /* items per response (default 1,000,000) */
} imap_parse_limits_t;

/*
 * Literal sink: literals of at least threshold bytes are handed to the sink
 * in pieces instead of being held in memory (a big message body goes straight
 * to a temporary file or store reservation). open() returns an opaque handle
 * (NULL: keep this one in memory after all); write() returns 0 or a negative
 * error, which makes imap_parse() fail. The item then has str == NULL,
 * len == size and sink == handle. A consumer that takes the handle sets
 * item->sink = NULL; imap_resp_free() calls release() for any left over.
 */
typedef struct imap_literal_sink {
	uint64_t threshold;
	void *ctx;
	void *(*open)(void *ctx, uint64_t size);
	int (*write)(void *ctx, void *handle, const char *data, size_t len);
	void (*release)(void *ctx, void *handle);
} imap_literal_sink_t;

typedef struct imap_parser imap_parser_t;

/* limits may be NULL for the defaults (a zero field also means its default);
 * sink may be NULL. */
imap_parser_t *imap_parser_new(const imap_parse_limits_t *limits, const imap_literal_sink_t *sink);
void imap_parser_free(imap_parser_t *p);
/* Drop partial state, e.g. after a reconnect. */
void imap_parser_reset(imap_parser_t *p);

/*
 * Consume up to len bytes of buf. *used is set to the bytes consumed in every
 * case. Returns IMAP_PARSE_OK with *resp set when a response completed (bytes
 * after it are left unconsumed), IMAP_PARSE_MORE when all bytes were consumed
 * without completing one, IMAP_PARSE_BAD on malformed input.
 */
int imap_parse(imap_parser_t *p, const char *buf, size_t len, imap_resp_t **resp, size_t *used);
const char *imap_parser_error(const imap_parser_t *p);

void imap_resp_free(imap_resp_t *r);

/* Helpers for consumers walking items. */
/* Case-insensitive compare of an ATOM/STRING item with s. */
bool imap_item_is(const imap_item_t *it, const char *s);
/* The n-th item (0-based) of a sibling chain, or NULL. */
const imap_item_t *imap_item_nth(const imap_item_t *first, size_t n);
/* In a FETCH attribute list (name value name value ...), the value after name. */
const imap_item_t *imap_fetch_get(const imap_item_t *list, const char *name);

#endif
