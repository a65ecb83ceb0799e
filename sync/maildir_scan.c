/*
 * Scanning folders and the folder tree of a Maildir; see maildir_scan.h.
 */
#include "sync/maildir_scan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/util.h"

/* Our own file with the owner's read bit: readable without asking the kernel
 * (the owner's permission bits are the owner's, ACLs or not). This saves one
 * system call per message, the bulk of a scan of an unchanged folder. */
static bool owner_readable(const struct stat *st, uid_t euid)
{
	return st->st_uid == euid && (st->st_mode & S_IRUSR);
}

static int scan_sub(const char *dir, const char *sub, bool in_new, bool quick, maildir_scan_t *s,
		    size_t *cap)
{
	uid_t euid = geteuid();
	char *path = xasprintf("%s/%s", dir, sub);
	int rc = 0;
	DIR *d = opendir(path);
	if (!d) {
		rc = -errno;
		goto out;
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		maildir_name_t parsed;
		maildir_name_parse(de->d_name, &parsed);
		struct stat st;
		bool skip_stat = quick && de->d_type == DT_REG && parsed.uid;
		if (!skip_stat && fstatat(dirfd(d), de->d_name, &st, 0) != 0)
			continue; /* renamed away since readdir: the next scan sees it */
		if (!skip_stat && S_ISDIR(st.st_mode))
			continue;
		if (s->n == *cap) {
			*cap = *cap ? *cap * 2 : 64;
			s->entries = xrealloc(s->entries, *cap * sizeof(*s->entries));
		}
		maildir_entry_t *e = &s->entries[s->n++];
		memset(e, 0, sizeof(*e));
		e->name = xstrdup(de->d_name);
		e->in_new = in_new;
		e->parsed = parsed;
		if (skip_stat) {
			e->size = -1;
			continue;
		}
		e->size = st.st_size;
		e->mtime = st.st_mtime;
		if (!S_ISREG(st.st_mode))
			e->bad = "not a regular file";
		else if (st.st_size == 0)
			e->bad = "empty file";
		else if (!owner_readable(&st, euid) &&
			 faccessat(dirfd(d), de->d_name, R_OK, 0) != 0)
			e->bad = "unreadable";
		if (e->bad)
			s->n_bad++;
	}
	closedir(d);
out:
	free(path);
	return rc;
}

static int entry_cmp(const void *a, const void *b)
{
	const maildir_entry_t *x = a, *y = b;
	if (x->parsed.uid != y->parsed.uid)
		return x->parsed.uid < y->parsed.uid ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int scan_folder(const char *dir, bool quick, maildir_scan_t **out)
{
	maildir_scan_t *s = xcalloc(1, sizeof(*s));
	size_t cap = 0;
	int rc = scan_sub(dir, "cur", false, quick, s, &cap);
	if (rc == 0) {
		rc = scan_sub(dir, "new", true, quick, s, &cap);
		/* A folder without new/ is still a folder; mail readers recreate it. */
		if (rc == -ENOENT)
			rc = 0;
	}
	if (rc != 0) {
		maildir_scan_free(s);
		return rc;
	}
	if (s->n)
		qsort(s->entries, s->n, sizeof(*s->entries), entry_cmp);
	*out = s;
	return 0;
}

int maildir_scan_folder(const char *dir, maildir_scan_t **out)
{
	return scan_folder(dir, false, out);
}

int maildir_scan_folder_quick(const char *dir, maildir_scan_t **out)
{
	return scan_folder(dir, true, out);
}

void maildir_scan_free(maildir_scan_t *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		free(s->entries[i].name);
	free(s->entries);
	free(s);
}

const maildir_entry_t *maildir_scan_find_uid(const maildir_scan_t *s, uint32_t uid)
{
	size_t lo = 0, hi = s->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->entries[mid].parsed.uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < s->n && s->entries[lo].parsed.uid == uid)
		return &s->entries[lo];
	return NULL;
}

const char *maildir_check_message(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? "vanished" : "unreadable";
	char head[1024];
	ssize_t n = read(fd, head, sizeof(head));
	close(fd);
	if (n < 0)
		return "unreadable";
	if (n == 0)
		return "empty file";
	if (n >= 5 && memcmp(head, "From ", 5) == 0)
		return NULL;
	/* The first line must be a header field: printable name, then ':'. */
	for (ssize_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)head[i];
		if (c == ':')
			return i > 0 ? NULL : "not a message (no header)";
		if (c <= 32 || c >= 127)
			return "not a message (no header)";
	}
	return "not a message (no header)";
}

static bool is_dir_at(const char *dir, const char *sub)
{
	char *p = xasprintf("%s/%s", dir, sub);
	struct stat st;
	bool ok = stat(p, &st) == 0 && S_ISDIR(st.st_mode);
	free(p);
	return ok;
}

/* One step of a 64-bit mix (splitmix64's finaliser over a running value). */
static uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebull;
	h ^= h >> 31;
	return h;
}

static int64_t ts_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000ll + t->tv_nsec;
}

int maildir_folder_stamp_raw(const char *dir, uint64_t *stamp, int64_t *newest_ns,
			     int64_t *settle_ns)
{
	static const char *const subs[] = {"cur", "new"};
	uint64_t h = 0;
	int64_t newest = INT64_MIN;
	bool fraction = false;
	for (size_t i = 0; i < IB_ARRAY_LEN(subs); i++) {
		char *p = xasprintf("%s/%s", dir, subs[i]);
		struct stat st;
		int rc = stat(p, &st);
		free(p);
		if (rc != 0)
			return -errno;
		if (!S_ISDIR(st.st_mode))
			return -ENOTDIR;
		int64_t m = ts_ns(&st.st_mtim);
		if (m > newest)
			newest = m;
		fraction |= st.st_mtim.tv_nsec != 0;
		h = mix(h, (uint64_t)st.st_dev);
		h = mix(h, (uint64_t)st.st_ino);
		h = mix(h, (uint64_t)m);
	}
	*stamp = h | (1ull << 63);
	*newest_ns = newest;
	*settle_ns = fraction ? MAILDIR_STAMP_SETTLE_NS : MAILDIR_STAMP_SETTLE_COARSE_NS;
	return 0;
}

uint64_t maildir_folder_stamp(const char *dir)
{
	struct timespec now;
	if (clock_gettime(CLOCK_REALTIME, &now) != 0)
		return MAILDIR_STAMP_RACY;
	uint64_t h;
	int64_t newest, settle;
	if (maildir_folder_stamp_raw(dir, &h, &newest, &settle) != 0)
		return MAILDIR_STAMP_RACY;
	/* A directory time in the future is as untrustworthy as a recent one:
	 * the clock was set back, or the tree was restored. */
	if (newest > ts_ns(&now) - settle) {
		/* Unique (with the time), so a value recorded for this session
		 * names this session only (see maildir_seal.h). */
		uint64_t t = mix(h, (uint64_t)ts_ns(&now)) & ~(1ull << 63);
		return t > MAILDIR_STAMP_RACY ? t : t + 2;
	}
	return h;
}

bool maildir_stamp_valid(uint64_t stamp)
{
	return (stamp >> 63) != 0;
}

bool maildir_is_folder(const char *dir)
{
	return is_dir_at(dir, "cur") && is_dir_at(dir, "new");
}

typedef struct name_list {
	char **v;
	size_t n, cap;
} name_list_t;

static void list_push(name_list_t *l, char *s)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = xrealloc(l->v, l->cap * sizeof(char *));
	}
	l->v[l->n++] = s;
}

/* Walk rel (relative to root; "" for root itself) collecting folders. */
static int walk(const char *root, const char *rel, char sep, int depth, name_list_t *l)
{
	char *path = rel[0] ? xasprintf("%s/%s", root, rel) : xstrdup(root);
	DIR *d = opendir(path);
	int rc = 0;
	if (!d) {
		rc = -errno;
		goto out;
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		const char *nm = de->d_name;
		if (nm[0] == '.')
			continue;
		if (!strcmp(nm, "cur") || !strcmp(nm, "new") || !strcmp(nm, "tmp"))
			continue;
		char *sub = rel[0] ? xasprintf("%s/%s", rel, nm) : xstrdup(nm);
		char *full = xasprintf("%s/%s", root, sub);
		/* readdir() says what most entries are; ask only when it does
		 * not know, or for a symbolic link (a folder may be one). */
		struct stat st;
		bool isdir = de->d_type == DT_DIR;
		if (de->d_type == DT_UNKNOWN || de->d_type == DT_LNK)
			isdir = stat(full, &st) == 0 && S_ISDIR(st.st_mode);
		if (isdir) {
			if (maildir_is_folder(full)) {
				char *f = maildir_dir_to_folder(sub, sep);
				if (f)
					list_push(l, f);
			}
			/* Nested layout: folders inside folders. A depth limit guards
			 * against symlink loops. */
			if (sep == '/' && depth < 32)
				walk(root, sub, sep, depth + 1, l);
		}
		free(full);
		free(sub);
	}
	closedir(d);
out:
	free(path);
	return rc;
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int maildir_list_folders(const char *root, char sep, char ***out, size_t *n)
{
	name_list_t l = {0};
	int rc = walk(root, "", sep, 0, &l);
	if (rc != 0) {
		maildir_folders_free(l.v, l.n);
		*out = NULL;
		*n = 0;
		return rc;
	}
	if (l.n)
		qsort(l.v, l.n, sizeof(char *), str_cmp);
	*out = l.v;
	*n = l.n;
	return 0;
}

void maildir_folders_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}
