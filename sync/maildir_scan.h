/*
 * Reading a Maildir tree: which folders exist, and which message files a
 * folder holds. No logging: problems come back as codes or per-file reasons
 * for the caller to report.
 */
#ifndef IB_MAILDIR_SCAN_H
#define IB_MAILDIR_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "sync/maildir_name.h"

/* One message file of a folder. */
typedef struct maildir_entry {
	char *name;	       /* file name in cur/ or new/ (owned by the scan) */
	bool in_new;	       /* found in new/ (not yet seen by a mail reader) */
	maildir_name_t parsed; /* U=, FMD5=, flags */
	off_t size;	       /* -1: not looked at (maildir_scan_folder_quick()) */
	time_t mtime;	       /* arrival time by Maildir convention; 0 with size -1 */
	const char *bad;       /* non-NULL: why this file is skipped (static string) */
} maildir_entry_t;

/* The files of one folder, sorted by (uid, name); files without U= come first. */
typedef struct maildir_scan {
	maildir_entry_t *entries;
	size_t n;
	size_t n_bad;
} maildir_scan_t;

/*
 * Scan <dir>/cur and <dir>/new. Returns 0, or -ENOENT when dir or its cur/ is
 * missing (the folder vanished: the caller must not take that as "every
 * message deleted"), or another -errno. On success *out is a new scan that
 * the caller frees with maildir_scan_free().
 */
int maildir_scan_folder(const char *dir, maildir_scan_t **out);
/*
 * The same without a stat() of the files that already carry a U= and that
 * readdir() says are regular files (size -1, mtime 0, never bad): the bulk
 * of a folder, whose size and time only matter when a message is read, which
 * looks at the file anyway. Other files are checked as above.
 */
int maildir_scan_folder_quick(const char *dir, maildir_scan_t **out);
void maildir_scan_free(maildir_scan_t *s);

/* The entry for store UID uid, or NULL (binary search; several files with the
 * same U= return the first). */
const maildir_entry_t *maildir_scan_find_uid(const maildir_scan_t *s, uint32_t uid);

/*
 * Check that a file looks like a message before it is uploaded: readable, not
 * empty, and starting with a header line ("Name: value" or an mbox "From ").
 * Returns NULL when it does, else a short reason (static string).
 */
const char *maildir_check_message(const char *path);

/* True when dir has cur/ and new/ subdirectories. */
bool maildir_is_folder(const char *dir);

/*
 * A fingerprint of the folder directory dir for skipping unchanged folders:
 * device, inode and modification time (nanoseconds) of cur/ and new/. Every
 * create, rename or unlink of a message file changes it. Take it BEFORE
 * reading the directories, so a change made while they are read shows next
 * time.
 *
 * A directory changed less than MAILDIR_STAMP_SETTLE_NS before now could
 * change again within the same timestamp tick without its time moving: such
 * a folder gets a "racy" value, which is never valid and so never matches:
 * it is read in full again next time (git's racy-timestamp rule). A racy
 * value is unique to the call (it mixes in the time), so a sync state that
 * records it names one sync (see maildir_seal.h). Valid fingerprints have
 * the top bit set; 0 never comes back (the directories could not be looked
 * at: MAILDIR_STAMP_RACY then).
 *
 * Directory times with a fraction of a second come from a file system with
 * fine timestamps, which take the kernel's clock tick (at most 10 ms) or
 * better: 0.1 s covers that with room to spare. Times without a fraction
 * may come from a file system with 1 s or 2 s timestamps (FAT): wait out a
 * full tick there.
 */
#define MAILDIR_STAMP_RACY 1u
#define MAILDIR_STAMP_SETTLE_NS 100000000ll
#define MAILDIR_STAMP_SETTLE_COARSE_NS 2100000000ll
uint64_t maildir_folder_stamp(const char *dir);
/* True for a fingerprint that can say "unchanged" (not RACY, not 0). */
bool maildir_stamp_valid(uint64_t stamp);
/*
 * The fingerprint without the racy rule (its valid form), the newest of the
 * directories' times (ns since the epoch) and the settle time that applies
 * to them. 0 or -errno.
 */
int maildir_folder_stamp_raw(const char *dir, uint64_t *stamp, int64_t *newest_ns,
			     int64_t *settle_ns);

/*
 * The folders of the tree under root, as store folder names ("INBOX",
 * "Lists/foo"), sorted. sep is '/' (nested) or '.' (flat). Directories whose
 * names cannot be mapped back to a folder are left out. Returns 0 or -errno
 * (-ENOENT: root is missing). The caller frees with maildir_folders_free().
 */
int maildir_list_folders(const char *root, char sep, char ***out, size_t *n);
void maildir_folders_free(char **names, size_t n);

#endif
