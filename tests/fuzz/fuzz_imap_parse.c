/*
 * libFuzzer target for the IMAP response parser.
 *
 * Input layout: byte 0 selects the mode (bit 0: literal sink on, bit 1: tight
 * limits, bits 2-7: sink threshold), bytes 1-2 give the split offset, the rest
 * is the server's byte stream. The stream is parsed whole and split in two at
 * the offset; both must yield the same responses (serialised, literal bytes
 * included, whether held in memory or in the sink) and the same final result
 * and reason. Any difference aborts, so the fuzzer reports it as a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "sync/imap_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz_sink {
	int open;
};

struct fz_file {
	buf_t b;
	uint64_t size;
};

static void *fz_open_cb(void *ctx, uint64_t size)
{
	struct fz_sink *s = ctx;
	/* Now and then refuse, so the parser falls back to memory. */
	if (size % 7 == 3)
		return NULL;
	struct fz_file *f = calloc(1, sizeof(*f));
	if (!f)
		abort();
	f->size = size;
	s->open++;
	return f;
}

static int fz_write_cb(void *ctx, void *h, const char *d, size_t n)
{
	struct fz_file *f = h;
	(void)ctx;
	if (f->b.len + n > f->size)
		abort(); /* the parser wrote past the announced size */
	buf_append(&f->b, d, n);
	return 0;
}

static void fz_release_cb(void *ctx, void *h)
{
	struct fz_sink *s = ctx;
	struct fz_file *f = h;
	s->open--;
	buf_free(&f->b);
	free(f);
}

static void put_bytes(buf_t *o, const char *s, size_t n)
{
	buf_printf(o, "%zu:", n);
	buf_append(o, s, n);
}

static void dump_items(buf_t *o, const imap_item_t *it, unsigned depth)
{
	for (; it; it = it->next) {
		buf_printf(o, "<%d", (int)it->type);
		switch (it->type) {
		case IMAP_ITEM_ATOM:
			put_bytes(o, it->str, it->len);
			break;
		case IMAP_ITEM_NUMBER:
			buf_printf(o, "%llu", (unsigned long long)it->num);
			if (strlen(it->str) != it->len)
				abort();
			break;
		case IMAP_ITEM_NIL:
			break;
		case IMAP_ITEM_STRING:
			buf_printf(o, "%d", it->literal);
			if (it->sink) {
				struct fz_file *f = it->sink;
				if (f->b.len != it->len || f->size != it->len)
					abort();
				put_bytes(o, f->b.data ? f->b.data : "", f->b.len);
			} else {
				if (!it->str || it->str[it->len] != '\0')
					abort();
				put_bytes(o, it->str, it->len);
			}
			break;
		case IMAP_ITEM_LIST: {
			size_t n = 0;
			for (const imap_item_t *c = it->child; c; c = c->next)
				n++;
			if (n != it->len)
				abort();
			dump_items(o, it->child, depth + 1);
			break;
		}
		}
		buf_puts(o, ">");
	}
}

static void dump_resp(buf_t *o, const imap_resp_t *r)
{
	buf_printf(o, "R%d %d %d %u ", (int)r->kind, (int)r->status, r->has_number, r->number);
	if (r->tag)
		put_bytes(o, r->tag, strlen(r->tag));
	if (r->code)
		put_bytes(o, r->code, strlen(r->code));
	dump_items(o, r->code_args, 0);
	if (!r->text)
		abort();
	put_bytes(o, r->text, strlen(r->text));
	if (r->name)
		put_bytes(o, r->name, strlen(r->name));
	dump_items(o, r->args, 0);
	buf_puts(o, "\n");
}

static void run(const char *in, size_t len, size_t cut, const imap_parse_limits_t *lim,
		const imap_literal_sink_t *sink, buf_t *out)
{
	imap_parser_t *p = imap_parser_new(lim, sink);
	size_t bounds[2] = {cut, len};
	size_t start = 0;
	for (int c = 0; c < 2; c++) {
		size_t stop = bounds[c];
		size_t off = start;
		for (;;) {
			imap_resp_t *r = NULL;
			size_t used = 0;
			int rc = imap_parse(p, in + off, stop - off, &r, &used);
			if (used > stop - off)
				abort();
			off += used;
			if (rc == IMAP_PARSE_OK) {
				if (!r)
					abort();
				dump_resp(out, r);
				imap_resp_free(r);
				continue;
			}
			if (rc == IMAP_PARSE_BAD) {
				buf_printf(out, "BAD %s\n", imap_parser_error(p));
				imap_parser_free(p);
				return;
			}
			if (rc != IMAP_PARSE_MORE || off != stop || r)
				abort();
			break;
		}
		start = stop;
	}
	buf_puts(out, "MORE\n");
	imap_parser_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	unsigned mode = data[0];
	size_t cut = ((size_t)data[1] << 8) | data[2];
	const char *in = (const char *)data + 3;
	size_t len = size - 3;
	if (len)
		cut %= len + 1;
	else
		cut = 0;

	imap_parse_limits_t tight = {
	    .max_line = 64, .max_depth = 4, .max_literal = 100, .max_items = 20};
	const imap_parse_limits_t *lim = (mode & 2) ? &tight : NULL;
	struct fz_sink sc = {0};
	imap_literal_sink_t sink = {.threshold = mode >> 2,
				    .ctx = &sc,
				    .open = fz_open_cb,
				    .write = fz_write_cb,
				    .release = fz_release_cb};
	const imap_literal_sink_t *sp = (mode & 1) ? &sink : NULL;

	buf_t a = BUF_INIT, b = BUF_INIT;
	run(in, len, len, lim, sp, &a);
	run(in, len, cut, lim, sp, &b);
	if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0) {
		fprintf(stderr,
			"whole and split at %zu differ:\n--- whole\n%.*s\n--- split\n%.*s\n", cut,
			(int)a.len, a.data, (int)b.len, b.data);
		abort();
	}
	if (sc.open != 0)
		abort(); /* a sink handle leaked */
	buf_free(&a);
	buf_free(&b);
	return 0;
}
