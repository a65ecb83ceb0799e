/*
 * Durable changes to a Maildir tree, in batches.
 *
 * The sync state says "the store and the tree agree on X"; it must never say
 * so before X is on disk, or a crash would leave the state ahead of the tree
 * and the next sync would read the difference as a change made by the user.
 * So every change to the tree goes through a batch:
 *
 *   1. maildir_batch_write() writes message bytes into <folder>/tmp/ (no fsync);
 *      maildir_batch_rename() / _unlink() change existing files at once;
 *   2. maildir_batch_flush() makes the written files durable (fdatasync each
 *      in a small batch, whose writeback started when they were written; one
 *      syncfs for a big one), renames the staged side files over their targets and the
 *      messages from tmp/ into cur/ or new/ without replacing anything, and
 *      fsyncs every directory whose entries changed (not tmp/);
 *   3. only then does the caller commit its state.
 *
 * Message bytes are written exactly as given; nothing is added or converted.
 * A batch is not thread-safe: one thread at a time. Errors are returned,
 * never logged.
 */
#ifndef IB_MAILDIR_WRITE_H
#define IB_MAILDIR_WRITE_H

#include <stddef.h>
#include <time.h>

typedef struct maildir_batch maildir_batch_t;

/* Error codes beyond -errno. */
#define MAILDIR_E_EXISTS (-10001) /* the target name exists already */

maildir_batch_t *maildir_batch_new(void);
/* From now on the batch syncs nothing (the config's fsync = false): files and
 * names reach the disk when the kernel writes them back. A killed process
 * loses nothing; a power failure can. */
void maildir_batch_nosync(maildir_batch_t *b);
/* From now on maildir_batch_write() only records the file: the flush writes
 * it, so a batch can be handed whole to another thread. The bytes must stay
 * valid until the batch is flushed or freed. */
void maildir_batch_lazy(maildir_batch_t *b);
/* Frees the batch; files still in tmp/ (not flushed) are removed. */
void maildir_batch_free(maildir_batch_t *b);

/*
 * Write len bytes to <folder_dir>/tmp/<name>, to become <folder_dir>/<sub>/<name>
 * at flush (sub is "cur" or "new"). mtime (0: now) becomes the file's
 * modification time, which Maildir readers take as the arrival date.
 * Returns 0 or -errno (a lazy batch returns the write's error at flush).
 */
int maildir_batch_write(maildir_batch_t *b, const char *folder_dir, const char *sub,
			const char *name, const void *data, size_t len, time_t mtime);

/*
 * Stage a new version of the small file dir/name (the folder's UID file):
 * written to dir/name.tmp (now, or by the flush in a lazy batch, which keeps
 * a copy of data), made durable with the batch's data and renamed over
 * dir/name at flush before any message is renamed, so it needs no sync of
 * its own. A second call for the same file in one batch replaces the staged
 * content. Returns 0 or -errno.
 */
int maildir_batch_replace(maildir_batch_t *b, const char *dir, const char *name, const void *data,
			  size_t len);

/*
 * Rename from_dir/from_name to to_dir/to_name now (same file system), never
 * replacing an existing target (MAILDIR_E_EXISTS). Both directories are
 * fsynced at flush. -ENOENT when the source vanished.
 */
int maildir_batch_rename(maildir_batch_t *b, const char *from_dir, const char *from_name,
			 const char *to_dir, const char *to_name);

/* Unlink dir/name now; its directory is fsynced at flush. -ENOENT if gone. */
int maildir_batch_unlink(maildir_batch_t *b, const char *dir, const char *name);

/* Number of files written and not yet flushed. */
size_t maildir_batch_pending(const maildir_batch_t *b);

/*
 * Make everything durable (see above). On error the files that could not be
 * moved stay in tmp/ and are removed at maildir_batch_free(); the caller must
 * not commit state for them. *moved (may be NULL) receives how many written
 * files reached their final name. The batch can be reused afterwards.
 */
int maildir_batch_flush(maildir_batch_t *b, size_t *moved);

/* A short message for a code from this module (or -errno). */
const char *maildir_strerror(int rc);

/* rename() that never replaces: renameat2(RENAME_NOREPLACE), or link+unlink
 * where the file system lacks it. 0, MAILDIR_E_EXISTS or -errno. */
int maildir_rename_noreplace(const char *from, const char *to);

/* A small file of our own in the tree (UID file, seal), where a program
 * may have put a link or a pipe instead: */
/* create path holding data, in place of whatever is there, never through a
 * link; *fd gets the open descriptor (-1 on failure, when nothing made is
 * left). 0 or -errno. */
int maildir_create_own(const char *path, const void *data, size_t len, int *fd);
/* read up to cap - 1 bytes of path into buf (NUL-terminated), not through
 * a link and never waiting on a pipe. The length read, or -errno. */
int maildir_read_own(const char *path, char *buf, size_t cap);

/* fsync a directory by path. 0 or -errno. */
int maildir_fsync_dir(const char *dir);

#endif
