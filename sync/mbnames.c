/*
 * The mbnames folder list file; see mbnames.h.
 */
#include "sync/mbnames.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/util.h"
#include "sync/maildir_name.h"
#include "sync/maildir_scan.h"

static int item_cmp(const void *a, const void *b)
{
	const mbnames_item_t *x = a, *y = b;
	int c = strcmp(x->account, y->account);
	return c ? c : strcmp(x->folder, y->folder);
}

/* Expand OfflineIMAP's Python-style %(name)s placeholders. */
static void expand_item(buf_t *b, const char *tmpl, const mbnames_item_t *it)
{
	for (const char *p = tmpl; *p;) {
		if (p[0] == '%' && p[1] == '%') {
			buf_append(b, "%", 1);
			p += 2;
		} else if (strncmp(p, "%(accountname)s", 15) == 0) {
			buf_puts(b, it->account);
			p += 15;
		} else if (strncmp(p, "%(foldername)s", 14) == 0) {
			buf_puts(b, it->folder);
			p += 14;
		} else {
			buf_append(b, p, 1);
			p++;
		}
	}
}

char *mbnames_render(const config_mbnames_t *mb, const mbnames_item_t *items, size_t n)
{
	mbnames_item_t *sorted = NULL;
	if (n) {
		sorted = xmalloc(n * sizeof(*sorted));
		memcpy(sorted, items, n * sizeof(*sorted));
		qsort(sorted, n, sizeof(*sorted), item_cmp);
	}
	buf_t b = BUF_INIT;
	buf_puts(&b, mb->header ? mb->header : "");
	for (size_t i = 0; i < n; i++) {
		if (i && mb->sep)
			buf_puts(&b, mb->sep);
		expand_item(&b, mb->peritem ? mb->peritem : "+%(accountname)s/%(foldername)s",
			    &sorted[i]);
	}
	buf_puts(&b, mb->footer ? mb->footer : "");
	free(sorted);
	buf_cstr(&b);
	return b.data;
}

/* The whole file, or NULL when it cannot be read. */
static char *read_all(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	buf_t b = BUF_INIT;
	char tmp[4096];
	size_t r;
	while ((r = fread(tmp, 1, sizeof(tmp), f)) > 0)
		buf_append(&b, tmp, r);
	fclose(f);
	buf_cstr(&b);
	return b.data;
}

static int write_atomic(const char *path, const char *data, size_t len)
{
	char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
	int rc = 0;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(fd, data + off, len - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto out;
		}
		off += (size_t)w;
	}
	if (fsync(fd) != 0) {
		rc = -errno;
		goto out;
	}
	if (close(fd) != 0) {
		fd = -1;
		rc = -errno;
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		rc = -errno;
out:
	if (fd >= 0)
		close(fd);
	if (rc != 0)
		unlink(tmp);
	free(tmp);
	return rc;
}

int mbnames_update(const config_mbnames_t *mb, const mbnames_item_t *items, size_t n, bool *changed)
{
	if (changed)
		*changed = false;
	if (!mb->enabled || !mb->filename || !mb->filename[0])
		return 0;
	char *path = ib_expand_home(mb->filename);
	char *content = mbnames_render(mb, items, n);
	char *old = read_all(path);
	int rc = 0;
	if (old && strcmp(old, content) == 0)
		goto out;
	/* The directory may not exist yet on a first run (~/Mail before any sync). */
	char *slash = strrchr(path, '/');
	if (slash && slash != path) {
		*slash = '\0';
		ib_mkdirs(path, 0700);
		*slash = '/';
	}
	rc = write_atomic(path, content, strlen(content));
	if (rc == 0 && changed)
		*changed = true;
out:
	free(old);
	free(content);
	free(path);
	return rc;
}

mbnames_item_t *mbnames_items_from_config(const config_t *cfg, size_t *n)
{
	mbnames_item_t *items = NULL;
	size_t cnt = 0, cap = 0;
	for (size_t a = 0; a < cfg->n_accounts; a++) {
		const config_account_t *acct = &cfg->accounts[a];
		if (!acct->maildir_path)
			continue;
		char sep = (acct->maildir_sep && acct->maildir_sep[0] == '.') ? '.' : '/';
		char **names = NULL;
		size_t nn = 0;
		if (maildir_list_folders(acct->maildir_path, sep, &names, &nn) != 0)
			continue;
		for (size_t i = 0; i < nn; i++) {
			char *dir = maildir_folder_to_dir(names[i], sep);
			if (!dir)
				continue;
			if (cnt == cap) {
				cap = cap ? cap * 2 : 16;
				items = xrealloc(items, cap * sizeof(*items));
			}
			items[cnt].account = xstrdup(acct->name);
			items[cnt].folder = dir;
			cnt++;
		}
		maildir_folders_free(names, nn);
	}
	*n = cnt;
	return items;
}

void mbnames_items_free(mbnames_item_t *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((char *)items[i].account);
		free((char *)items[i].folder);
	}
	free(items);
}
