/* The data directory lock: see lock.h. */
#include "server/lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "lib/util.h"

/* The pid, padded with spaces, and a newline: the file's content. Files
 * of older versions are shorter ("1234\n") and get overwritten whole. */
#define PID_FIELD 21

struct lock {
	int fd;
	char *path;
};

const char *lock_strerror(int err)
{
	switch (err) {
	case LOCK_OK:
		return "no error";
	case LOCK_E_HELD:
		return "lock held by another process";
	case LOCK_E_IO:
		return "cannot use the lock file";
	default:
		return "unknown lock error";
	}
}

static pid_t read_pid_fd(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	long v = strtol(buf, NULL, 10);
	return v > 0 ? (pid_t)v : 0;
}

pid_t lock_read_pid(const char *datadir)
{
	char *path = xasprintf("%s/%s", datadir, LOCK_FILE_NAME);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (fd < 0)
		return 0;
	pid_t pid = read_pid_fd(fd);
	close(fd);
	return pid;
}

int lock_acquire(const char *datadir, lock_t **out, char *err, size_t errlen)
{
	char *path = xasprintf("%s/%s", datadir, LOCK_FILE_NAME);
	int fd = -1, rc = LOCK_E_IO;
	char pidbuf[32];

	*out = NULL;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen,
			 "cannot create lock file %s: %s; make %s writable for the "
			 "daemon's user or set another datadir",
			 path, strerror(errno), datadir);
		goto out;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK) {
			pid_t pid = read_pid_fd(fd);
			char who[48] = "";
			if (pid > 0)
				snprintf(who, sizeof(who), " (pid %ld)", (long)pid);
			snprintf(err, errlen,
				 "another imapbridged%s is already using %s; stop it "
				 "or set another datadir",
				 who, datadir);
			rc = LOCK_E_HELD;
		} else {
			snprintf(err, errlen, "cannot lock %s: %s", path, strerror(errno));
		}
		goto out;
	}
	/* One length for every pid, written in place: no truncation, and no
	 * block freed here only to be allocated again. */
	snprintf(pidbuf, sizeof(pidbuf), "%-*ld\n", PID_FIELD - 1, (long)getpid());
	if (pwrite(fd, pidbuf, PID_FIELD, 0) != PID_FIELD) {
		snprintf(err, errlen,
			 "cannot write lock file %s: %s; check free space and "
			 "permissions of %s",
			 path, strerror(errno), datadir);
		goto out;
	}
	lock_t *lk = xcalloc(1, sizeof(*lk));
	lk->fd = fd;
	lk->path = path;
	*out = lk;
	return LOCK_OK;
out:
	if (fd >= 0)
		close(fd);
	free(path);
	return rc;
}

void lock_release(lock_t *lk)
{
	if (!lk)
		return;
	/* Blank the pid but keep the file: unlinking a flock()ed file races with
	 * a daemon that has just opened it. */
	char blank[PID_FIELD];
	memset(blank, ' ', sizeof(blank));
	blank[PID_FIELD - 1] = '\n';
	if (pwrite(lk->fd, blank, PID_FIELD, 0) != PID_FIELD) {
		/* nothing useful to do: the lock goes away with the descriptor */
	}
	close(lk->fd);
	free(lk->path);
	free(lk);
}
