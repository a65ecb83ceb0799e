/*
 * libFuzzer target for Maildir names: file names a mail reader or another
 * program left in the tree, and folder names a server sent. Byte 0 picks the
 * check, the rest is the input.
 *
 *  0: a file name that parses keeps its identity through the renames the
 *     replica makes: rebuilt from its parts, or given other flags, it parses
 *     back to the same U=, FMD5= and unique part, and keeps the info letters
 *     of other programs (put in ASCII order by the first rename).
 *  1: a folder name that maps to a directory (nested, '/') stays inside the
 *     tree (no absolute path, no "." or ".." component, no empty one) and
 *     maps back to the same folder name.
 *  2: the same with the flat layout ('.').
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sync/maildir_name.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* U=, FMD5= and the unique part: what tells the file apart from every other
 * and ties it to its message. */
static void same_identity(const maildir_name_t *a, const char *an, const maildir_name_t *b,
			  const char *bn)
{
	if (a->uid != b->uid || a->has_fmd5 != b->has_fmd5 ||
	    (a->has_fmd5 && strcmp(a->fmd5, b->fmd5) != 0))
		abort();
	if (a->base_len != b->base_len || memcmp(an, bn, a->base_len) != 0)
		abort();
}

static int byte_cmp(const void *x, const void *y)
{
	return *(const unsigned char *)x - *(const unsigned char *)y;
}

static void check_file_name(const char *name)
{
	maildir_name_t p, q, q2;
	if (strchr(name, '/') || !maildir_name_parse(name, &p))
		return;
	if (p.base_len > strlen(name))
		abort();
	char *rebuilt = maildir_name_build(name, p.base_len, p.uid, p.has_fmd5 ? p.fmd5 : NULL,
					   p.flags, p.extra);
	if (!maildir_name_parse(rebuilt, &q))
		abort();
	same_identity(&p, name, &q, rebuilt);
	if (q.flags != p.flags || !q.has_info)
		abort();
	/* Other programs' info letters are kept, put in order once (up to
	 * what the parse keeps: more than fit are not letters anyone set). */
	char was[sizeof(p.extra)], now[sizeof(q.extra)];
	memcpy(was, p.extra, sizeof(was));
	memcpy(now, q.extra, sizeof(now));
	qsort(was, strlen(was), 1, byte_cmp);
	qsort(now, strlen(now), 1, byte_cmp);
	if (strlen(p.extra) < sizeof(p.extra) - 1 && strcmp(was, now) != 0)
		abort();
	/* A flag change keeps all of that as it is. */
	unsigned want = (unsigned)name[0] & MAILDIR_F_ALL;
	char *flagged = maildir_name_with_flags(rebuilt, want);
	if (!maildir_name_parse(flagged, &q2))
		abort();
	same_identity(&p, name, &q2, flagged);
	if (q2.flags != want || strcmp(q2.extra, q.extra) != 0)
		abort();
	free(flagged);
	free(rebuilt);
}

static void check_folder(const char *folder, char sep)
{
	char *dir = maildir_folder_to_dir(folder, sep);
	if (!dir)
		return;
	if (!*dir || dir[0] == '/')
		abort();
	/* Every component of the path is a plain name. */
	for (const char *c = dir; c;) {
		const char *slash = strchr(c, '/');
		size_t n = slash ? (size_t)(slash - c) : strlen(c);
		if (n == 0 || c[0] == '.')
			abort();
		c = slash ? slash + 1 : NULL;
	}
	char *back = maildir_dir_to_folder(dir, sep);
	if (!back || strcmp(back, folder) != 0)
		abort();
	free(back);
	free(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 4096)
		return 0;
	char *s = malloc(size);
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	switch (data[0] % 3) {
	case 0: check_file_name(s); break;
	case 1: check_folder(s, '/'); break;
	default: check_folder(s, '.'); break;
	}
	free(s);
	return 0;
}
