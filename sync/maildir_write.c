/*
 * Batched, durable writes to a Maildir tree; see maildir_write.h.
 */
#include "sync/maildir_write.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lib/util.h"

/* Above this many files one syncfs() is cheaper than an fdatasync() each. */
#define BATCH_SYNCFS_MIN 16

typedef struct pending_file {
	char *tmp_path;
	char *final_path;
	char *final_dir;
	int fd;
} pending_file_t;

struct maildir_batch {
	pending_file_t *files;
	size_t n_files, cap_files;
	char **dirs; /* directories to fsync at flush */
	size_t n_dirs, cap_dirs;
};

const char *maildir_strerror(int rc)
{
	if (rc == 0)
		return "success";
	if (rc == MAILDIR_E_EXISTS)
		return "target file exists already";
	return strerror(-rc);
}

static void add_dir(maildir_batch_t *b, const char *dir)
{
	for (size_t i = 0; i < b->n_dirs; i++)
		if (strcmp(b->dirs[i], dir) == 0)
			return;
	if (b->n_dirs == b->cap_dirs) {
		b->cap_dirs = b->cap_dirs ? b->cap_dirs * 2 : 8;
		b->dirs = xrealloc(b->dirs, b->cap_dirs * sizeof(char *));
	}
	b->dirs[b->n_dirs++] = xstrdup(dir);
}

maildir_batch_t *maildir_batch_new(void)
{
	return xcalloc(1, sizeof(maildir_batch_t));
}

static void drop_file(pending_file_t *f, bool remove_tmp)
{
	if (f->fd >= 0)
		close(f->fd);
	if (remove_tmp && f->tmp_path)
		unlink(f->tmp_path);
	free(f->tmp_path);
	free(f->final_path);
	free(f->final_dir);
	memset(f, 0, sizeof(*f));
	f->fd = -1;
}

static void clear_dirs(maildir_batch_t *b)
{
	for (size_t i = 0; i < b->n_dirs; i++)
		free(b->dirs[i]);
	b->n_dirs = 0;
}

void maildir_batch_free(maildir_batch_t *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n_files; i++)
		drop_file(&b->files[i], true);
	free(b->files);
	clear_dirs(b);
	free(b->dirs);
	free(b);
}

size_t maildir_batch_pending(const maildir_batch_t *b)
{
	return b->n_files;
}

int maildir_batch_write(maildir_batch_t *b, const char *folder_dir, const char *sub,
			const char *name, const void *data, size_t len, time_t mtime)
{
	char *tmp = xasprintf("%s/tmp/%s", folder_dir, name);
	int rc = 0;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	const char *p = data;
	size_t left = len;
	while (left > 0) {
		ssize_t w = write(fd, p, left);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto out;
		}
		p += w;
		left -= (size_t)w;
	}
	if (mtime > 0) {
		struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
		futimens(fd, ts); /* cosmetic: a failure costs nothing */
	}
	if (b->n_files == b->cap_files) {
		b->cap_files = b->cap_files ? b->cap_files * 2 : 16;
		b->files = xrealloc(b->files, b->cap_files * sizeof(*b->files));
	}
	pending_file_t *f = &b->files[b->n_files++];
	f->tmp_path = tmp;
	tmp = NULL;
	f->final_dir = xasprintf("%s/%s", folder_dir, sub);
	f->final_path = xasprintf("%s/%s", f->final_dir, name);
	/* Keep the descriptor for fdatasync in small batches; large batches use
	 * syncfs and need no descriptor per file (and must not run out of them). */
	if (b->n_files <= BATCH_SYNCFS_MIN) {
		f->fd = fd;
		fd = -1;
	} else {
		f->fd = -1;
	}
	char *tdir = xasprintf("%s/tmp", folder_dir);
	add_dir(b, tdir);
	free(tdir);
out:
	if (fd >= 0)
		close(fd);
	if (rc != 0 && tmp)
		unlink(tmp);
	free(tmp);
	return rc;
}

int maildir_rename_noreplace(const char *from, const char *to)
{
#ifdef SYS_renameat2
	if (syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, 1 /* RENAME_NOREPLACE */) == 0)
		return 0;
	if (errno == EEXIST)
		return MAILDIR_E_EXISTS;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
#endif
	/* File systems without RENAME_NOREPLACE: link() never replaces. */
	if (link(from, to) != 0)
		return errno == EEXIST ? MAILDIR_E_EXISTS : -errno;
	if (unlink(from) != 0)
		return -errno;
	return 0;
}

int maildir_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) == 0 ? 0 : -errno;
	close(fd);
	return rc;
}

int maildir_batch_rename(maildir_batch_t *b, const char *from_dir, const char *from_name,
			 const char *to_dir, const char *to_name)
{
	char *from = xasprintf("%s/%s", from_dir, from_name);
	char *to = xasprintf("%s/%s", to_dir, to_name);
	int rc;
	if (strcmp(from, to) == 0)
		rc = 0;
	else
		rc = maildir_rename_noreplace(from, to);
	if (rc == 0) {
		add_dir(b, from_dir);
		add_dir(b, to_dir);
	}
	free(from);
	free(to);
	return rc;
}

int maildir_batch_unlink(maildir_batch_t *b, const char *dir, const char *name)
{
	char *path = xasprintf("%s/%s", dir, name);
	int rc = unlink(path) == 0 ? 0 : -errno;
	if (rc == 0)
		add_dir(b, dir);
	free(path);
	return rc;
}

int maildir_batch_flush(maildir_batch_t *b, size_t *moved)
{
	int rc = 0;
	size_t done = 0;
	/* 1. Data on disk before any name points at it. */
	if (b->n_files > BATCH_SYNCFS_MIN) {
		char *d = xasprintf("%s", b->files[0].final_dir);
		int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		free(d);
		if (fd < 0 || syncfs(fd) != 0) {
			rc = -errno;
			if (fd >= 0)
				close(fd);
			goto out;
		}
		close(fd);
	}
	for (size_t i = 0; i < b->n_files; i++) {
		pending_file_t *f = &b->files[i];
		if (f->fd >= 0 && b->n_files <= BATCH_SYNCFS_MIN && fdatasync(f->fd) != 0) {
			rc = -errno;
			goto out;
		}
	}
	/* 2. Final names, never replacing a file a mail reader put there. */
	size_t keep = 0;
	for (size_t i = 0; i < b->n_files; i++) {
		pending_file_t *f = &b->files[i];
		int r = maildir_rename_noreplace(f->tmp_path, f->final_path);
		if (r == 0) {
			add_dir(b, f->final_dir);
			drop_file(f, false);
			done++;
		} else {
			if (rc == 0)
				rc = r;
			b->files[keep++] = *f;
		}
	}
	b->n_files = keep;
	/* 3. The names themselves durable. */
	for (size_t i = 0; i < b->n_dirs; i++) {
		int r = maildir_fsync_dir(b->dirs[i]);
		if (r != 0 && r != -ENOENT && rc == 0)
			rc = r;
	}
	clear_dirs(b);
out:
	if (moved)
		*moved = done;
	return rc;
}
