/*
 * IMAP response parser (see imap_parse.h).
 *
 * Two stages keep the incremental part small and therefore robust against
 * input split at any byte:
 *
 *  1. The scanner collects the non-literal text of one response into a line
 *     buffer and diverts literal bytes either to a growing memory buffer or to
 *     the literal sink. Its only states are "in a line" and "n bytes of literal
 *     left", and it decides everything (literal or not, limits, NUL) at a byte
 *     position that does not depend on how the input was split.
 *  2. When the final CRLF arrives, the tokenizer builds the item tree from the
 *     line buffer in one pass; each "{n}" in the line stands for the next
 *     collected literal. Items and strings live in one arena per response.
 *
 * Whether a line that ends in "{n}" announces a literal depends on the kind of
 * response: in status responses (tagged, "* OK/NO/BAD/PREAUTH/BYE") and
 * continuations the rest of the line is human text, so "{5}" there is text.
 *
 * Lenient where real servers are sloppy: a bare LF ends a line; spaces
 * between items are optional (multipart BODYSTRUCTURE has none) and extra or
 * trailing spaces are skipped; keywords, status words and code names are
 * matched case-insensitively and handed out upper-cased; a status response may
 * lack its text; a backslash before anything but '"' or '\' stays as it is;
 * 8-bit bytes may appear in atoms; a response code that does not parse is kept
 * as part of the text. Strict where a mistake would desynchronise the stream
 * or cost memory: "{n+}" (a client-only form), a literal count not followed
 * by CRLF, a NUL outside a literal, unbalanced parentheses or quotes, and
 * every limit.
 */
#include "sync/imap_parse.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/util.h"

#define DEFAULT_MAX_LINE (1024u * 1024u)
#define DEFAULT_MAX_DEPTH 64u
#define DEFAULT_MAX_LITERAL (2ull * 1024 * 1024 * 1024)
#define DEFAULT_MAX_ITEMS 1000000u

/* A literal collected by the scanner, waiting for the tokenizer. */
struct lit_rec {
	size_t pos; /* offset in the line just after the '}' of its count */
	uint64_t size;
	char *data; /* in-memory bytes, NUL-terminated; NULL when sunk */
	size_t fill;
	size_t cap;
	void *sink; /* sink handle, or NULL */
};

enum scan_state {
	SCAN_LINE,
	SCAN_LITERAL,
	SCAN_ERROR,
};

enum resp_class {
	CLASS_UNKNOWN, /* first line not complete yet */
	CLASS_TEXT,    /* status response or continuation: no literals */
	CLASS_DATA,    /* untagged data: literals allowed */
};

struct stack_ent {
	imap_item_t *list;
	imap_item_t **tail;
};

struct imap_parser {
	imap_parse_limits_t lim;
	imap_literal_sink_t sink;
	bool has_sink;

	enum scan_state st;
	enum resp_class cls;
	char *line;
	size_t line_len;
	size_t line_cap;
	struct lit_rec *lits;
	size_t nlits;
	size_t lits_cap;
	uint64_t lit_left;

	struct stack_ent *stk; /* tokenizer scratch, max_depth + 1 entries */
	size_t stk_cap;
	char err[200];
};

/* Arena block: strings and items of one response. */
struct arena_blk {
	struct arena_blk *next;
	size_t used;
	size_t cap;
	char *mem;
};

/* The response as allocated; imap_resp_t comes first so the public pointer
 * converts back. */
struct resp_priv {
	imap_resp_t pub;
	struct arena_blk *blocks;
	imap_literal_sink_t sink;
	char **owned; /* literal buffers adopted from the scanner */
	size_t nowned;
	imap_item_t **sunk; /* items that carried a sink handle */
	size_t nsunk;
};

static void set_err(imap_parser_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(imap_parser_t *p, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->err, sizeof(p->err), fmt, ap);
	va_end(ap);
	p->st = SCAN_ERROR;
}

/* ---- arena ---- */

static struct arena_blk *arena_block(size_t cap, struct arena_blk *next)
{
	struct arena_blk *b = xmalloc(sizeof(*b) + 15 + cap);
	b->mem = (char *)(((uintptr_t)(b + 1) + 15) & ~(uintptr_t)15);
	b->cap = cap;
	b->used = 0;
	b->next = next;
	return b;
}

static void *arena_alloc(struct resp_priv *r, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	struct arena_blk *b = r->blocks;
	if (b->cap - b->used < n) {
		size_t cap = b->cap * 2;
		if (cap < n)
			cap = n;
		b = r->blocks = arena_block(cap, b);
	}
	void *m = b->mem + b->used;
	b->used += n;
	return m;
}

/*
 * The response lives at the start of its own first arena block, sized so
 * that a typical response needs no other: one malloc per response.
 */
static struct resp_priv *resp_new(size_t hint)
{
	size_t head = (sizeof(struct resp_priv) + 15) & ~(size_t)15;
	struct arena_blk *b = arena_block(head + (hint < 1024 ? 1024 : hint), NULL);
	struct resp_priv *r = (struct resp_priv *)b->mem;
	memset(r, 0, sizeof(*r));
	b->used = head;
	r->blocks = b;
	return r;
}

static char *arena_strndup(struct resp_priv *r, const char *s, size_t n)
{
	char *d = arena_alloc(r, n + 1);
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

static char *arena_upper(struct resp_priv *r, const char *s, size_t n)
{
	char *d = arena_alloc(r, n + 1);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		d[i] = (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
	}
	d[n] = '\0';
	return d;
}

/* ---- parser lifetime ---- */

imap_parser_t *imap_parser_new(const imap_parse_limits_t *limits, const imap_literal_sink_t *sink)
{
	imap_parser_t *p = xcalloc(1, sizeof(*p));
	if (limits)
		p->lim = *limits;
	if (!p->lim.max_line)
		p->lim.max_line = DEFAULT_MAX_LINE;
	if (!p->lim.max_depth)
		p->lim.max_depth = DEFAULT_MAX_DEPTH;
	if (!p->lim.max_literal)
		p->lim.max_literal = DEFAULT_MAX_LITERAL;
	if (!p->lim.max_items)
		p->lim.max_items = DEFAULT_MAX_ITEMS;
	if (sink && sink->open && sink->write) {
		p->sink = *sink;
		p->has_sink = true;
	}
	p->line_cap = 256;
	p->line = xmalloc(p->line_cap);
	return p;
}

/* Free literal buffers and release sink handles the scanner still holds. */
static void lits_clear(imap_parser_t *p)
{
	for (size_t i = 0; i < p->nlits; i++) {
		free(p->lits[i].data);
		if (p->lits[i].sink && p->sink.release)
			p->sink.release(p->sink.ctx, p->lits[i].sink);
	}
	p->nlits = 0;
}

void imap_parser_reset(imap_parser_t *p)
{
	lits_clear(p);
	p->st = SCAN_LINE;
	p->cls = CLASS_UNKNOWN;
	p->line_len = 0;
	p->lit_left = 0;
	p->err[0] = '\0';
}

void imap_parser_free(imap_parser_t *p)
{
	if (!p)
		return;
	lits_clear(p);
	free(p->lits);
	free(p->line);
	free(p->stk);
	free(p);
}

const char *imap_parser_error(const imap_parser_t *p)
{
	return p->err[0] ? p->err : "no error";
}

void imap_resp_free(imap_resp_t *resp)
{
	if (!resp)
		return;
	struct resp_priv *r = (struct resp_priv *)resp;
	for (size_t i = 0; i < r->nsunk; i++)
		if (r->sunk[i]->sink && r->sink.release)
			r->sink.release(r->sink.ctx, r->sunk[i]->sink);
	for (size_t i = 0; i < r->nowned; i++)
		free(r->owned[i]);
	/* The last block in the chain holds r itself. */
	struct arena_blk *b = r->blocks;
	while (b) {
		struct arena_blk *n = b->next;
		free(b);
		b = n;
	}
}

/* ---- classification of the first line ---- */

static bool is_status_word(const char *s, size_t n, enum imap_status *st)
{
	static const struct {
		const char *w;
		enum imap_status st;
	} words[] = {
	    {"OK", IMAP_STATUS_OK},	      {"NO", IMAP_STATUS_NO},	{"BAD", IMAP_STATUS_BAD},
	    {"PREAUTH", IMAP_STATUS_PREAUTH}, {"BYE", IMAP_STATUS_BYE},
	};
	for (size_t i = 0; i < IB_ARRAY_LEN(words); i++) {
		if (strlen(words[i].w) == n && strncasecmp(words[i].w, s, n) == 0) {
			if (st)
				*st = words[i].st;
			return true;
		}
	}
	return false;
}

static enum resp_class classify(const char *s, size_t n)
{
	if (n == 0)
		return CLASS_TEXT;
	if (s[0] == '+')
		return CLASS_TEXT;
	if (s[0] != '*' || (n > 1 && s[1] != ' '))
		return CLASS_TEXT; /* tagged: always a status response */
	size_t i = 1;
	while (i < n && s[i] == ' ')
		i++;
	size_t w = i;
	while (i < n && s[i] != ' ' && s[i] != '[')
		i++;
	return is_status_word(s + w, i - w, NULL) ? CLASS_TEXT : CLASS_DATA;
}

/* ---- scanner ---- */

static void line_append(imap_parser_t *p, const char *s, size_t n)
{
	if (p->line_len + n + 1 > p->line_cap) {
		size_t cap = p->line_cap * 2;
		while (cap < p->line_len + n + 1)
			cap *= 2;
		p->line = xrealloc(p->line, cap);
		p->line_cap = cap;
	}
	memcpy(p->line + p->line_len, s, n);
	p->line_len += n;
}

/*
 * A line ended (LF seen, not yet in the buffer). Returns 1 when a literal
 * follows, 0 when the response is complete, -1 on error.
 */
static int end_of_line(imap_parser_t *p)
{
	bool had_cr = p->line_len > 0 && p->line[p->line_len - 1] == '\r';
	if (had_cr)
		p->line_len--;
	if (p->cls == CLASS_UNKNOWN)
		p->cls = classify(p->line, p->line_len);
	if (p->cls != CLASS_DATA)
		return 0;
	const char *s = p->line;
	size_t n = p->line_len;
	if (n < 3 || s[n - 1] != '}')
		return 0;
	size_t i = n - 1;
	while (i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9')
		i--;
	if (i == n - 1 || i == 0 || s[i - 1] != '{')
		return 0; /* not a literal count; the tokenizer judges it */
	if (p->nlits && i - 1 < p->lits[p->nlits - 1].pos)
		return 0; /* the count of the literal just read, not a new one */
	uint64_t size = 0;
	for (size_t k = i; k < n - 1; k++) {
		unsigned d = (unsigned)(s[k] - '0');
		if (size > (UINT64_MAX - d) / 10) {
			set_err(p, "literal size %.*s is out of range", (int)(n - 1 - i), s + i);
			return -1;
		}
		size = size * 10 + d;
	}
	if (!had_cr) {
		set_err(p, "literal count {%llu} is not followed by CRLF",
			(unsigned long long)size);
		return -1;
	}
	if (size > p->lim.max_literal) {
		set_err(p, "literal of %llu bytes exceeds the limit of %llu bytes",
			(unsigned long long)size, (unsigned long long)p->lim.max_literal);
		return -1;
	}
	if (p->nlits == p->lits_cap) {
		p->lits_cap = p->lits_cap ? p->lits_cap * 2 : 8;
		p->lits = xrealloc(p->lits, p->lits_cap * sizeof(*p->lits));
	}
	struct lit_rec *l = &p->lits[p->nlits++];
	memset(l, 0, sizeof(*l));
	l->pos = n;
	l->size = size;
	if (p->has_sink && size >= p->sink.threshold)
		l->sink = p->sink.open(p->sink.ctx, size);
	if (!l->sink) {
		/* Grow as bytes arrive: the announced size alone must not make us
		 * allocate (a hostile server could announce 2 GiB and send nothing). */
		l->cap = size < 65536 ? (size_t)size : 65536;
		l->data = xmalloc(l->cap + 1);
		l->data[0] = '\0';
	}
	p->lit_left = size;
	return 1;
}

static int literal_bytes(imap_parser_t *p, const char *s, size_t n)
{
	struct lit_rec *l = &p->lits[p->nlits - 1];
	if (l->sink) {
		int rc = p->sink.write(p->sink.ctx, l->sink, s, n);
		if (rc < 0) {
			set_err(p, "literal sink failed to take %zu bytes (error %d)", n, rc);
			return -1;
		}
	} else {
		if (l->fill + n > l->cap) {
			size_t cap = l->cap ? l->cap : 64;
			while (cap < l->fill + n)
				cap *= 2;
			if (cap > l->size)
				cap = (size_t)l->size;
			l->data = xrealloc(l->data, cap + 1);
			l->cap = cap;
		}
		memcpy(l->data + l->fill, s, n);
		l->fill += n;
		l->data[l->fill] = '\0';
	}
	p->lit_left -= n;
	return 0;
}

static imap_resp_t *tokenize(imap_parser_t *p);

int imap_parse(imap_parser_t *p, const char *buf, size_t len, imap_resp_t **resp, size_t *used)
{
	size_t i = 0;
	*resp = NULL;
	while (i < len || (p->st == SCAN_LITERAL && p->lit_left == 0)) {
		if (p->st == SCAN_ERROR) {
			*used = i;
			return IMAP_PARSE_BAD;
		}
		if (p->st == SCAN_LITERAL) {
			uint64_t want = p->lit_left;
			size_t take = (uint64_t)(len - i) < want ? len - i : (size_t)want;
			if (take && literal_bytes(p, buf + i, take) < 0) {
				*used = i;
				return IMAP_PARSE_BAD;
			}
			i += take;
			if (p->lit_left == 0)
				p->st = SCAN_LINE;
			continue;
		}
		const char *lf = memchr(buf + i, '\n', len - i);
		size_t seg = lf ? (size_t)(lf - (buf + i)) : len - i;
		/* The first of "NUL" and "line too long" wins, by byte position. */
		const char *nul = memchr(buf + i, '\0', seg);
		size_t room = p->lim.max_line > p->line_len ? p->lim.max_line - p->line_len : 0;
		if (nul && (size_t)(nul - (buf + i)) <= room) {
			*used = (size_t)(nul - buf) + 1;
			set_err(p, "NUL byte in a response line (outside a literal)");
			return IMAP_PARSE_BAD;
		}
		if (seg > room) {
			*used = i + room + 1;
			set_err(p, "response line longer than the limit of %zu bytes",
				p->lim.max_line);
			return IMAP_PARSE_BAD;
		}
		line_append(p, buf + i, seg);
		i += seg;
		if (!lf)
			break;
		i++; /* the LF */
		int rc = end_of_line(p);
		if (rc < 0) {
			*used = i;
			return IMAP_PARSE_BAD;
		}
		if (rc > 0) {
			p->st = SCAN_LITERAL;
			continue;
		}
		imap_resp_t *r = tokenize(p);
		*used = i;
		if (!r)
			return IMAP_PARSE_BAD;
		p->line_len = 0;
		p->nlits = 0;
		p->cls = CLASS_UNKNOWN;
		*resp = r;
		return IMAP_PARSE_OK;
	}
	*used = i;
	if (p->st == SCAN_ERROR)
		return IMAP_PARSE_BAD;
	return IMAP_PARSE_MORE;
}

/* ---- tokenizer ---- */

struct tok {
	imap_parser_t *p;
	struct resp_priv *r;
	const char *s;
	size_t pos;
	size_t end;
	size_t lit_i;
	size_t items;
};

/* Bytes up to the next literal's insertion point: no token may cross it. */
static size_t seg_end(const struct tok *t)
{
	return t->lit_i < t->p->nlits ? t->p->lits[t->lit_i].pos : t->end;
}

static bool atom_char(unsigned char c, bool in_code)
{
	if (c <= ' ' || c == 0x7f)
		return false;
	switch (c) {
	case '(':
	case ')':
	case '{':
	case '"':
		return false;
	case ']':
		return !in_code;
	default:
		return true;
	}
}

static imap_item_t *new_item(struct tok *t, enum imap_item_type type)
{
	if (t->items >= t->p->lim.max_items) {
		set_err(t->p, "response has more than %zu items", t->p->lim.max_items);
		return NULL;
	}
	t->items++;
	imap_item_t *it = arena_alloc(t->r, sizeof(*it));
	memset(it, 0, sizeof(*it));
	it->type = type;
	return it;
}

static imap_item_t *parse_quoted(struct tok *t)
{
	const char *s = t->s;
	size_t se = seg_end(t);
	size_t i = t->pos + 1;
	while (i < se && s[i] != '"') {
		if (s[i] == '\\' && i + 1 < se)
			i++;
		i++;
	}
	if (i >= se) {
		set_err(t->p, "unterminated quoted string");
		return NULL;
	}
	imap_item_t *it = new_item(t, IMAP_ITEM_STRING);
	if (!it)
		return NULL;
	char *d = arena_alloc(t->r, i - t->pos);
	size_t o = 0;
	for (size_t k = t->pos + 1; k < i; k++) {
		/* Only \" and \\ are escapes; anything else keeps its backslash
		 * (sloppy servers send lone backslashes in names). */
		if (s[k] == '\\' && (s[k + 1] == '"' || s[k + 1] == '\\'))
			k++;
		d[o++] = s[k];
	}
	d[o] = '\0';
	it->str = d;
	it->len = o;
	t->pos = i + 1;
	return it;
}

static imap_item_t *parse_literal(struct tok *t)
{
	const char *s = t->s;
	size_t se = seg_end(t);
	size_t i = t->pos;
	if (s[i] == '~')
		i++;
	i++; /* '{' */
	size_t d = i;
	while (i < se && s[i] >= '0' && s[i] <= '9')
		i++;
	if (i == d || i >= se || s[i] != '}') {
		set_err(t->p, "bad literal syntax at offset %zu (expected {digits})", t->pos);
		return NULL;
	}
	i++;
	if (t->lit_i >= t->p->nlits || t->p->lits[t->lit_i].pos != i) {
		set_err(t->p, "literal count at offset %zu is not followed by CRLF", t->pos);
		return NULL;
	}
	struct lit_rec *l = &t->p->lits[t->lit_i++];
	imap_item_t *it = new_item(t, IMAP_ITEM_STRING);
	if (!it)
		return NULL;
	it->literal = true;
	it->len = (size_t)l->size;
	if (l->sink) {
		it->sink = l->sink;
		l->sink = NULL;
		t->r->sunk[t->r->nsunk++] = it;
	} else {
		it->str = l->data;
		l->data = NULL;
		t->r->owned[t->r->nowned++] = it->str;
	}
	t->pos = i;
	return it;
}

static imap_item_t *parse_atom(struct tok *t, bool in_code)
{
	const char *s = t->s;
	size_t se = seg_end(t);
	size_t i = t->pos;
	while (i < se) {
		unsigned char c = (unsigned char)s[i];
		if (c == '[') {
			/* Section spec: BODY[HEADER.FIELDS (A B)] is one atom. */
			i++;
			while (i < se && s[i] != ']') {
				if (s[i] == '"') {
					i++;
					while (i < se && s[i] != '"')
						i += (s[i] == '\\' && i + 1 < se) ? 2 : 1;
					if (i >= se)
						break;
				}
				i++;
			}
			if (i >= se) {
				set_err(t->p, "unterminated '[' in atom at offset %zu", t->pos);
				return NULL;
			}
			i++;
			continue;
		}
		if (!atom_char(c, in_code))
			break;
		i++;
	}
	size_t n = i - t->pos;
	const char *a = s + t->pos;
	imap_item_t *it;
	if (n == 3 && strncasecmp(a, "NIL", 3) == 0) {
		it = new_item(t, IMAP_ITEM_NIL);
		if (!it)
			return NULL;
		t->pos = i;
		return it;
	}
	bool digits = n > 0 && n <= 20;
	uint64_t v = 0;
	for (size_t k = 0; digits && k < n; k++) {
		unsigned dd = (unsigned)(a[k] - '0');
		if (dd > 9 || v > (UINT64_MAX - dd) / 10)
			digits = false;
		else
			v = v * 10 + dd;
	}
	it = new_item(t, digits ? IMAP_ITEM_NUMBER : IMAP_ITEM_ATOM);
	if (!it)
		return NULL;
	it->num = digits ? v : 0;
	it->str = arena_strndup(t->r, a, n);
	it->len = n;
	t->pos = i;
	return it;
}

/*
 * Items until the end of the line, or until the ']' closing a response code
 * (in_code; the ']' is left for the caller). Lists are built with an explicit
 * stack so a deep nesting limit cannot overflow the C stack.
 */
static int parse_items(struct tok *t, bool in_code, imap_item_t **out)
{
	imap_parser_t *p = t->p;
	size_t need = (size_t)p->lim.max_depth + 1;
	if (need > p->stk_cap) {
		p->stk = xrealloc(p->stk, need * sizeof(*p->stk));
		p->stk_cap = need;
	}
	size_t depth = 0;
	imap_item_t *head = NULL;
	p->stk[0].list = NULL;
	p->stk[0].tail = &head;
	*out = NULL;
	for (;;) {
		size_t se = seg_end(t);
		if (t->pos >= se) {
			if (t->pos < t->end || t->lit_i < p->nlits) {
				set_err(p, "literal at offset %zu is not where a value may start",
					t->pos);
				return -1;
			}
			break;
		}
		unsigned char c = (unsigned char)t->s[t->pos];
		if (c == ' ') {
			t->pos++;
			continue;
		}
		if (in_code && c == ']') {
			if (depth) {
				set_err(p, "unbalanced '(' in response code");
				return -1;
			}
			break;
		}
		imap_item_t *it;
		if (c == ')') {
			if (depth == 0) {
				set_err(p, "')' without matching '(' at offset %zu", t->pos);
				return -1;
			}
			depth--;
			t->pos++;
			continue;
		}
		if (c == '(') {
			if (depth >= p->lim.max_depth) {
				set_err(p, "lists nested deeper than the limit of %u",
					p->lim.max_depth);
				return -1;
			}
			it = new_item(t, IMAP_ITEM_LIST);
			if (!it)
				return -1;
			t->pos++;
		} else if (c == '"') {
			it = parse_quoted(t);
		} else if (c == '{' || (c == '~' && t->pos + 1 < se && t->s[t->pos + 1] == '{')) {
			it = parse_literal(t);
		} else if (atom_char(c, in_code) || c == '[') {
			it = parse_atom(t, in_code);
		} else {
			set_err(p, "unexpected byte 0x%02x at offset %zu", c, t->pos);
			return -1;
		}
		if (!it)
			return -1;
		*p->stk[depth].tail = it;
		p->stk[depth].tail = &it->next;
		if (p->stk[depth].list)
			p->stk[depth].list->len++;
		if (it->type == IMAP_ITEM_LIST) {
			depth++;
			p->stk[depth].list = it;
			p->stk[depth].tail = &it->child;
		}
	}
	if (depth) {
		set_err(p, "unbalanced '(': %zu list(s) not closed", depth);
		return -1;
	}
	*out = head;
	return 0;
}

static size_t word_end(const struct tok *t, size_t i)
{
	while (i < t->end && t->s[i] != ' ')
		i++;
	return i;
}

static void skip_sp(struct tok *t)
{
	while (t->pos < t->end && t->s[t->pos] == ' ')
		t->pos++;
}

/* "[CODE args] text" or just "text"; missing text is allowed. */
static int parse_resp_text(struct tok *t)
{
	struct resp_priv *r = t->r;
	skip_sp(t);
	if (t->pos < t->end && t->s[t->pos] == '[') {
		size_t save_pos = t->pos;
		size_t save_items = t->items;
		size_t i = t->pos + 1;
		while (i < t->end && t->s[i] != ' ' && t->s[i] != ']')
			i++;
		if (i > t->pos + 1 && i < t->end) {
			char *code = arena_upper(r, t->s + t->pos + 1, i - t->pos - 1);
			imap_item_t *args = NULL;
			t->pos = i;
			if (parse_items(t, true, &args) == 0 && t->pos < t->end &&
			    t->s[t->pos] == ']') {
				r->pub.code = code;
				r->pub.code_args = args;
				t->pos++;
				skip_sp(t);
			} else {
				/* Sloppy code: keep it all as text rather than drop the
				 * connection over a human-readable part. */
				t->p->st = SCAN_LINE;
				t->p->err[0] = '\0';
				t->pos = save_pos;
				t->items = save_items;
			}
		}
	}
	r->pub.text = arena_strndup(r, t->s + t->pos, t->end - t->pos);
	return 0;
}

static imap_resp_t *tokenize(imap_parser_t *p)
{
	struct resp_priv *r = resp_new(p->line_len * 2 + 256);
	r->sink = p->sink;
	struct tok t = {.p = p, .r = r, .s = p->line, .end = p->line_len};
	if (p->nlits) {
		r->owned = arena_alloc(r, p->nlits * sizeof(*r->owned));
		r->sunk = arena_alloc(r, p->nlits * sizeof(*r->sunk));
	}
	imap_resp_t *pub = &r->pub;
	const char *s = p->line;
	size_t n = p->line_len;
	if (n == 0) {
		set_err(p, "empty response line");
		goto bad;
	}
	if (s[0] == '+') {
		pub->kind = IMAP_RESP_CONTINUE;
		t.pos = 1;
		if (t.pos < n && s[t.pos] == ' ')
			t.pos++;
		if (t.pos < n && s[t.pos] == '[') {
			parse_resp_text(&t);
		} else {
			pub->text = arena_strndup(r, s + t.pos, n - t.pos);
		}
	} else if (s[0] == '*' && (n == 1 || s[1] == ' ')) {
		pub->kind = IMAP_RESP_UNTAGGED;
		t.pos = 1;
		skip_sp(&t);
		size_t w = t.pos;
		size_t we = word_end(&t, w);
		if (w < n && s[w] >= '0' && s[w] <= '9') {
			uint64_t v = 0;
			for (size_t k = w; k < we; k++) {
				if (s[k] < '0' || s[k] > '9' || v > UINT32_MAX) {
					v = UINT64_MAX;
					break;
				}
				v = v * 10 + (uint64_t)(s[k] - '0');
			}
			if (v > UINT32_MAX) {
				set_err(p, "bad message number '%.*s' (not a 32-bit number)",
					(int)(we - w > 40 ? 40 : we - w), s + w);
				goto bad;
			}
			pub->has_number = true;
			pub->number = (uint32_t)v;
			t.pos = we;
			skip_sp(&t);
			w = t.pos;
		}
		size_t ne = w;
		while (ne < n && atom_char((unsigned char)s[ne], false) && s[ne] != '[')
			ne++;
		if (ne == w) {
			set_err(p, "untagged response without a keyword");
			goto bad;
		}
		enum imap_status st;
		if (!pub->has_number && is_status_word(s + w, ne - w, &st) &&
		    (ne == n || s[ne] == ' ' || s[ne] == '[')) {
			pub->status = st;
			t.pos = ne;
			parse_resp_text(&t);
		} else {
			pub->name = arena_upper(r, s + w, ne - w);
			t.pos = ne;
			if (parse_items(&t, false, &pub->args) < 0)
				goto bad;
		}
	} else {
		pub->kind = IMAP_RESP_TAGGED;
		size_t te = word_end(&t, 0);
		for (size_t k = 0; k < te; k++) {
			if (!atom_char((unsigned char)s[k], false)) {
				set_err(p, "bad byte 0x%02x in response tag", (unsigned char)s[k]);
				goto bad;
			}
		}
		pub->tag = arena_strndup(r, s, te);
		t.pos = te;
		skip_sp(&t);
		size_t w = t.pos;
		size_t we = w;
		while (we < n && s[we] != ' ' && s[we] != '[')
			we++;
		enum imap_status st;
		if (!is_status_word(s + w, we - w, &st) || st == IMAP_STATUS_PREAUTH ||
		    st == IMAP_STATUS_BYE) {
			set_err(p, "tagged response '%.*s' without OK, NO or BAD",
				(int)(te > 40 ? 40 : te), s);
			goto bad;
		}
		pub->status = st;
		t.pos = we;
		parse_resp_text(&t);
	}
	if (t.lit_i != p->nlits) {
		set_err(p, "literal in a response that does not take one");
		goto bad;
	}
	if (!pub->text)
		pub->text = arena_strndup(r, "", 0);
	return pub;
bad:
	/* Buffers already adopted are freed with r; the rest by the scanner. */
	imap_resp_free(pub);
	lits_clear(p);
	p->st = SCAN_ERROR;
	return NULL;
}

/* ---- helpers for consumers ---- */

bool imap_item_is(const imap_item_t *it, const char *s)
{
	if (!it || !it->str)
		return false;
	if (it->type != IMAP_ITEM_ATOM && it->type != IMAP_ITEM_STRING &&
	    it->type != IMAP_ITEM_NUMBER)
		return false;
	size_t n = strlen(s);
	return it->len == n && strncasecmp(it->str, s, n) == 0 && memchr(it->str, '\0', n) == NULL;
}

const imap_item_t *imap_item_nth(const imap_item_t *first, size_t n)
{
	while (first && n--)
		first = first->next;
	return first;
}

const imap_item_t *imap_fetch_get(const imap_item_t *list, const char *name)
{
	if (list && list->type == IMAP_ITEM_LIST)
		list = list->child;
	for (const imap_item_t *it = list; it && it->next; it = it->next->next)
		if (it->type == IMAP_ITEM_ATOM && imap_item_is(it, name))
			return it->next;
	return NULL;
}
