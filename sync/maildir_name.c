/*
 * Maildir file names and folder directories; see maildir_name.h.
 */
#include "sync/maildir_name.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/md5.h"
#include "lib/util.h"

static const char flag_letters[] = "DFPRST";

void maildir_flags_str(unsigned flags, char *out)
{
	size_t n = 0;
	for (size_t i = 0; i < 6; i++)
		if (flags & (1u << i))
			out[n++] = flag_letters[i];
	out[n] = '\0';
}

unsigned maildir_flags_parse(const char *s)
{
	unsigned flags = 0;
	for (; *s; s++) {
		const char *p = strchr(flag_letters, *s);
		if (p && *s)
			flags |= 1u << (p - flag_letters);
	}
	return flags;
}

/* Find ",KEY=" in [name, end); returns a pointer just past '=' or NULL. */
static const char *find_field(const char *name, const char *end, const char *key)
{
	size_t klen = strlen(key);
	for (const char *p = name; p + klen <= end; p++)
		if (memcmp(p, key, klen) == 0)
			return p + klen;
	return NULL;
}

bool maildir_name_parse(const char *name, maildir_name_t *out)
{
	memset(out, 0, sizeof(*out));
	if (!name[0] || name[0] == '.')
		return false;
	const char *end = name + strlen(name);
	/* The info starts at the last ":2,"; earlier colons belong to the base. */
	const char *info = NULL;
	for (const char *p = name; (p = strstr(p, ":2,")) != NULL; p++)
		info = p;
	const char *base_end = end;
	if (info) {
		out->has_info = true;
		base_end = info;
		size_t nx = 0;
		for (const char *f = info + 3; *f; f++) {
			const char *l = strchr(flag_letters, *f);
			if (l)
				out->flags |= 1u << (l - flag_letters);
			else if (nx + 1 < sizeof(out->extra))
				out->extra[nx++] = *f;
		}
		out->extra[nx] = '\0';
	}
	out->base_len = (size_t)(base_end - name);

	const char *u = find_field(name, base_end, ",U=");
	if (u) {
		uint64_t v = 0;
		const char *d = u;
		while (d < base_end && *d >= '0' && *d <= '9' && v <= UINT32_MAX)
			v = v * 10 + (uint64_t)(*d++ - '0');
		if (d > u && v > 0 && v <= UINT32_MAX) {
			out->uid = (uint32_t)v;
			if ((size_t)(u - 3 - name) < out->base_len)
				out->base_len = (size_t)(u - 3 - name);
		}
	}
	const char *h = find_field(name, base_end, ",FMD5=");
	if (h) {
		size_t n = 0;
		while (h + n < base_end && n < MAILDIR_FMD5_LEN &&
		       strchr("0123456789abcdefABCDEF", h[n]) && h[n])
			n++;
		if (n == MAILDIR_FMD5_LEN) {
			out->has_fmd5 = true;
			for (size_t i = 0; i < n; i++) {
				char c = h[i];
				out->fmd5[i] = (c >= 'A' && c <= 'F') ? (char)(c - 'A' + 'a') : c;
			}
			out->fmd5[n] = '\0';
			if ((size_t)(h - 6 - name) < out->base_len)
				out->base_len = (size_t)(h - 6 - name);
		}
	}
	return true;
}

void maildir_fmd5(const char *folder, char out[MAILDIR_FMD5_LEN + 1])
{
	unsigned char md[MD5_LEN];
	md5(folder, strlen(folder), md);
	for (unsigned i = 0; i < MD5_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[MAILDIR_FMD5_LEN] = '\0';
}

char *maildir_name_host(void)
{
	char host[256];
	if (gethostname(host, sizeof(host)) != 0)
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	buf_t b = BUF_INIT;
	for (const char *p = host; *p; p++) {
		if (*p == '/')
			buf_puts(&b, "\\057");
		else if (*p == ':')
			buf_puts(&b, "\\072");
		else if (*p == ',')
			buf_puts(&b, "\\054");
		else
			buf_append(&b, p, 1);
	}
	buf_cstr(&b);
	return b.data;
}

char *maildir_name_unique_for(uint64_t *counter, const char *host, int pid)
{
	buf_t b = BUF_INIT;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	/* Microseconds make a name unique across restarts that reuse a pid (pid 1 in a
	 * container); the counter makes it unique within one process. */
	buf_printf(&b, "%lld_M%06ldP%d_%llu.%s", (long long)tv.tv_sec, (long)tv.tv_usec, pid,
		   (unsigned long long)(*counter)++, host);
	buf_cstr(&b);
	return b.data;
}

char *maildir_name_unique(uint64_t *counter)
{
	char *host = maildir_name_host();
	char *name = maildir_name_unique_for(counter, host, (int)getpid());
	free(host);
	return name;
}

char *maildir_name_build(const char *base, size_t base_len, uint32_t uid, const char *fmd5,
			 unsigned flags, const char *extra)
{
	buf_t b = BUF_INIT;
	buf_append(&b, base, base_len);
	if (uid)
		buf_printf(&b, ",U=%u", uid);
	if (fmd5)
		buf_printf(&b, ",FMD5=%s", fmd5);
	char fl[8];
	maildir_flags_str(flags, fl);
	buf_printf(&b, ":2,%s", fl);
	/* Keep letters of other programs, after ours, in ASCII order as the spec asks. */
	if (extra && *extra) {
		char sorted[32];
		size_t n = 0;
		for (const char *p = extra; *p && n + 1 < sizeof(sorted); p++)
			sorted[n++] = *p;
		sorted[n] = '\0';
		for (size_t i = 1; i < n; i++)
			for (size_t j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
				char t = sorted[j];
				sorted[j] = sorted[j - 1];
				sorted[j - 1] = t;
			}
		/* Merge: ours and the extra letters together in ASCII order. */
		size_t flen = strlen(fl);
		b.len -= flen;
		size_t i = 0, j = 0;
		while (i < flen || j < n) {
			if (j >= n || (i < flen && fl[i] < sorted[j]))
				buf_append(&b, &fl[i++], 1);
			else
				buf_append(&b, &sorted[j++], 1);
		}
	}
	buf_cstr(&b);
	return b.data;
}

char *maildir_name_with_flags(const char *name, unsigned flags)
{
	maildir_name_t n;
	maildir_name_parse(name, &n);
	const char *info = NULL;
	for (const char *p = name; (p = strstr(p, ":2,")) != NULL; p++)
		info = p;
	size_t keep = info ? (size_t)(info - name) : strlen(name);
	return maildir_name_build(name, keep, 0, NULL, flags, n.extra);
}

/* A path component we are willing to create or read as part of a folder. */
static bool component_ok(const char *s, size_t n)
{
	if (n == 0 || s[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] == '/' || s[i] == '\0')
			return false;
	/* cur/new/tmp inside a folder directory are the Maildir itself. */
	if ((n == 3 &&
	     (memcmp(s, "cur", 3) == 0 || memcmp(s, "new", 3) == 0 || memcmp(s, "tmp", 3) == 0)))
		return false;
	return true;
}

char *maildir_folder_to_dir(const char *folder, char sep)
{
	size_t len = strlen(folder);
	if (len == 0)
		return NULL;
	char *out = xstrdup(folder);
	const char *p = folder;
	while (1) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		if (!component_ok(p, n))
			goto bad;
		if (sep == '.' && memchr(p, '.', n))
			goto bad;
		if (!slash)
			break;
		p = slash + 1;
	}
	if (sep == '.')
		for (char *q = out; *q; q++)
			if (*q == '/')
				*q = '.';
	return out;
bad:
	free(out);
	return NULL;
}

char *maildir_dir_to_folder(const char *dir, char sep)
{
	char *out = xstrdup(dir);
	if (sep == '.')
		for (char *q = out; *q; q++)
			if (*q == '.')
				*q = '/';
	/* Validate the result with the forward mapping's rules. */
	char *back = maildir_folder_to_dir(out, sep);
	if (!back || strcmp(back, dir) != 0) {
		free(back);
		free(out);
		return NULL;
	}
	free(back);
	return out;
}
