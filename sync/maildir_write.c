/*
 * Batched, durable writes to a Maildir tree; see maildir_write.h.
 */
#include "sync/maildir_write.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lib/util.h"

/*
 * How a flush makes a batch durable, and why it is safe at every crash point.
 *
 * In a small batch each file's writeback starts as soon as it is written
 * (sync_file_range WRITE), so by flush time the data is mostly on its way
 * and, on delayed-allocation file systems (ext4, XFS), its blocks are
 * allocated. The flush then:
 *
 *   1. makes all data durable: fdatasync() of each file in a small batch,
 *      else one syncfs(). Each fdatasync() ends with a flush of the disk's
 *      cache (ext4 with or without a journal), so a batch of fifty paid
 *      fifty; syncfs() pays one, but also writes whatever else is dirty on
 *      the file system, which a small batch (a message delivered now and
 *      then) should not wait for;
 *   2. renames the staged side files (the folder's UID file) over their
 *      targets, then every message from tmp/ to its final name (never
 *      replacing anything);
 *   3. fsyncs the directories whose entries changed (folder directories
 *      with a side file, cur/, new/). tmp/ is not fsynced: an entry
 *      there that a crash keeps or loses is harmless (select() removes our
 *      leftovers), only the final names matter. On a journaling file system
 *      the first of these fsyncs commits every rename at once; the others
 *      find nothing left to commit.
 *
 * The caller commits its state only after flush returned 0. Crash points
 * (SIGKILL or power loss):
 *   - before 1 completes: nothing has a final name; files in tmp/ are
 *     leftovers, the old UID file is intact; the state was not committed,
 *     so the next sync does the same work again.
 *   - between 1 and 3: a rename may or may not have reached the disk; a
 *     final name that did points at durable data (1 came first), never at an
 *     empty or partial file. The state was not committed: the engine's
 *     pending upload intents find such files again (by content) instead of
 *     writing them twice; flag renames and unlinks are idempotent.
 *   - the UID file: its new content is durable before its rename (1), so a
 *     crash never leaves it empty or torn. Its rename is issued before any
 *     message rename, and journaling file systems (ext4, XFS, btrfs) persist
 *     metadata changes in issue order, so a file never carries a UID above
 *     the UIDNEXT on disk. (Where the order is not kept, such a file is
 *     merely taken as new at the next select() and found again by the
 *     engine's intent: a gap, no loss, no copy.)
 *   - after 3: everything is durable; the caller may commit.
 * SIGKILL alone loses nothing the kernel accepted: only the unflushed
 * renames and the uncommitted state are lost, as above.
 */

/* Batches up to this many files (side files included) keep a descriptor
 * each and fdatasync them; bigger ones use one syncfs() (see above) and need
 * no descriptor per file. */
#define BATCH_FD_MAX 4

typedef struct pending_file {
	char *tmp_path;
	char *final_path;
	char *final_dir;
	int fd;
	bool side;    /* a side file: replaces its target (maildir_batch_replace) */
	bool written; /* tmp_path exists: this batch created it */
	/* lazy batch: what the flush writes to tmp_path (the caller's bytes;
	 * for a side file, the batch's own copy in own) */
	const void *data;
	size_t len;
	time_t mtime;
	char *own;
} pending_file_t;

struct maildir_batch {
	bool nosync;   /* fsync = false: no barriers at all */
	bool lazy;     /* maildir_batch_lazy(): files are written at flush */
	pending_file_t *files;
	size_t n_files, cap_files;
	size_t n_nofd; /* files written without a kept descriptor */
	char **dirs;   /* directories to fsync at flush */
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

void maildir_batch_nosync(maildir_batch_t *b)
{
	b->nosync = true;
}

void maildir_batch_lazy(maildir_batch_t *b)
{
	b->lazy = true;
}

static void drop_file(pending_file_t *f, bool remove_tmp)
{
	if (f->fd >= 0)
		close(f->fd);
	if (remove_tmp && f->tmp_path && f->written)
		unlink(f->tmp_path);
	free(f->tmp_path);
	free(f->final_path);
	free(f->final_dir);
	free(f->own);
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

/* Write all of data to fd. 0 or -errno. */
static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Create path (never replacing anything) holding data; *fd gets the open
 * descriptor. 0 or -errno; on failure the caller unlinks what was made. */
static int create_excl(const char *path, const void *data, size_t len, int *fd)
{
	*fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (*fd < 0)
		return -errno;
	return write_all(*fd, data, len);
}

int maildir_create_own(const char *path, const void *data, size_t len, int *fd)
{
	unlink(path);
	int rc = create_excl(path, data, len, fd);
	if (rc != 0 && *fd >= 0) {
		close(*fd);
		*fd = -1;
		unlink(path);
	}
	return rc;
}

int maildir_read_own(const char *path, char *buf, size_t cap)
{
	buf[0] = '\0';
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, cap - 1);
	int rc = n < 0 ? -errno : (int)n;
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return rc;
}

static pending_file_t *push_file(maildir_batch_t *b)
{
	if (b->n_files == b->cap_files) {
		b->cap_files = b->cap_files ? b->cap_files * 2 : 16;
		b->files = xrealloc(b->files, b->cap_files * sizeof(*b->files));
	}
	pending_file_t *f = &b->files[b->n_files++];
	memset(f, 0, sizeof(*f));
	f->fd = -1;
	return f;
}

/* Keep fd for the flush's fdatasync while the batch is small; beyond that
 * the flush uses syncfs() and needs no descriptor. */
static void keep_fd(maildir_batch_t *b, pending_file_t *f, int *fd)
{
	if (b->nosync)
		return; /* nothing to sync: the caller closes it */
	if (b->n_files <= BATCH_FD_MAX && b->n_nofd == 0) {
		/* Start the writeback now: the flush's fdatasync() then mostly
		 * waits for I/O that is done. Only a hint: a failure is caught
		 * by the flush. (A big batch leaves it to syncfs(), which hands
		 * it to the kernel's writeback threads all at once.) */
		sync_file_range(*fd, 0, 0, SYNC_FILE_RANGE_WRITE);
		f->fd = *fd;
		*fd = -1;
	} else {
		/* Past the limit: syncfs() at flush; the kept ones can go. */
		for (size_t i = 0; i < b->n_files; i++)
			if (b->files[i].fd >= 0 && !b->files[i].side) {
				close(b->files[i].fd);
				b->files[i].fd = -1;
			}
		b->n_nofd++;
	}
}

/* Create tmp (never replacing a file) holding len bytes of data, with
 * modification time mtime when > 0. *fd gets the open descriptor. 0 or
 * -errno; on failure what this call made is removed. */
static int write_tmp(const char *tmp, const void *data, size_t len, time_t mtime, int *fd)
{
	int rc = create_excl(tmp, data, len, fd);
	if (rc != 0) {
		if (*fd >= 0) {
			close(*fd);
			*fd = -1;
			unlink(tmp); /* only what this call opened and wrote */
		}
		return rc;
	}
	if (mtime > 0) {
		struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
		futimens(*fd, ts); /* cosmetic: a failure costs nothing */
	}
	return 0;
}

/* Write pending file f (its data, len, mtime) to its tmp_path, keeping the
 * descriptor as keep_fd() decides. 0 or -errno. */
static int write_pending(maildir_batch_t *b, pending_file_t *f)
{
	int fd = -1;
	int rc = write_tmp(f->tmp_path, f->data, f->len, f->mtime, &fd);
	if (rc != 0)
		return rc;
	f->written = true;
	f->data = NULL;
	keep_fd(b, f, &fd);
	if (fd >= 0)
		close(fd);
	return 0;
}

int maildir_batch_write(maildir_batch_t *b, const char *folder_dir, const char *sub,
			const char *name, const void *data, size_t len, time_t mtime)
{
	pending_file_t *f = push_file(b);
	f->tmp_path = xasprintf("%s/tmp/%s", folder_dir, name);
	f->final_dir = xasprintf("%s/%s", folder_dir, sub);
	f->final_path = xasprintf("%s/%s", f->final_dir, name);
	f->data = data;
	f->len = len;
	f->mtime = mtime;
	if (b->lazy)
		return 0; /* written by the flush */
	int rc = write_pending(b, f);
	if (rc != 0) {
		drop_file(f, false); /* write_tmp() removed what it made */
		b->n_files--;
	}
	return rc;
}

/* Write side file f's staged copy to its tmp_path (in place of whatever a
 * crash left there) and keep the descriptor: there is one per folder, and a
 * later version is written into the same file. 0 or -errno. */
static int write_side(maildir_batch_t *b, pending_file_t *f)
{
	int fd = -1;
	int rc = maildir_create_own(f->tmp_path, f->data, f->len, &fd);
	if (rc != 0)
		return rc;
	if (!b->nosync)
		sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	f->fd = fd;
	f->written = true;
	return 0;
}

/* A lazy batch's step 0: write the files it was given, side files first. */
static int write_lazy(maildir_batch_t *b)
{
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < b->n_files; i++) {
			pending_file_t *f = &b->files[i];
			if (f->written || f->side != (pass == 0))
				continue;
			int rc = f->side ? write_side(b, f) : write_pending(b, f);
			if (rc != 0)
				return rc;
		}
	return 0;
}

/* A lazy side file's content: the batch's own copy of data. */
static void keep_copy(pending_file_t *f, const void *data, size_t len)
{
	free(f->own);
	f->own = xmalloc(len ? len : 1);
	memcpy(f->own, data, len);
	f->data = f->own;
	f->len = len;
}

int maildir_batch_replace(maildir_batch_t *b, const char *dir, const char *name, const void *data,
			  size_t len)
{
	char *final = xasprintf("%s/%s", dir, name);
	/* One staged copy per target: a later version replaces an earlier one
	 * of the same batch. */
	for (size_t i = 0; i < b->n_files; i++) {
		pending_file_t *f = &b->files[i];
		if (!f->side || strcmp(f->final_path, final) != 0)
			continue;
		free(final);
		keep_copy(f, data, len);
		if (!f->written) /* lazy: not on disk yet */
			return 0;
		if (f->fd < 0)
			return -EBADF;
		if (ftruncate(f->fd, 0) != 0 || lseek(f->fd, 0, SEEK_SET) != 0)
			return -errno;
		return write_all(f->fd, data, len);
	}
	pending_file_t *f = push_file(b);
	f->side = true;
	f->tmp_path = xasprintf("%s.tmp", final);
	f->final_dir = xstrdup(dir);
	f->final_path = final;
	keep_copy(f, data, len);
	if (b->lazy)
		return 0; /* written by the flush, off the caller's thread */
	int rc = write_side(b, f);
	if (rc != 0) {
		drop_file(f, false); /* maildir_create_own() removed what it made */
		b->n_files--;
	}
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

/* Step 1 (see the top of this file): all written data durable. */
static int sync_data(maildir_batch_t *b)
{
	if (b->nosync)
		return 0;
	if (b->n_nofd > 0) {
		int fd = open(b->files[0].final_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		int rc = syncfs(fd) == 0 ? 0 : -errno;
		close(fd);
		return rc; /* it covered the files with descriptors too */
	}
	for (size_t i = 0; i < b->n_files; i++) {
		pending_file_t *f = &b->files[i];
		if (f->fd >= 0 && fdatasync(f->fd) != 0)
			return -errno;
	}
	return 0;
}

/* Rename file i to its final name (step 2). */
static int place(pending_file_t *f)
{
	if (f->side)
		return rename(f->tmp_path, f->final_path) == 0 ? 0 : -errno;
	return maildir_rename_noreplace(f->tmp_path, f->final_path);
}

int maildir_batch_flush(maildir_batch_t *b, size_t *moved)
{
	int rc = 0;
	size_t done = 0;
	if (b->lazy)
		rc = write_lazy(b);
	if (rc == 0 && b->n_files > 0)
		rc = sync_data(b);
	if (rc != 0)
		goto out;
	/* 2. Side files first, then the messages, never replacing a file a mail
	 * reader put there. */
	size_t keep = 0;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < b->n_files; i++) {
			pending_file_t *f = &b->files[i];
			if (!f->tmp_path || f->side != (pass == 0))
				continue;
			int r = place(f);
			if (r == 0) {
				add_dir(b, f->final_dir);
				if (!f->side)
					done++;
				drop_file(f, false);
			} else if (rc == 0) {
				rc = r;
			}
		}
	}
	for (size_t i = 0; i < b->n_files; i++)
		if (b->files[i].tmp_path)
			b->files[keep++] = b->files[i];
	b->n_files = keep;
	b->n_nofd = 0;
	for (size_t i = 0; i < b->n_files; i++)
		b->n_nofd += b->files[i].fd < 0;
	/* 3. The names themselves durable. */
	for (size_t i = 0; i < b->n_dirs && !b->nosync; i++) {
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
