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
	off_t size;
	time_t mtime;	 /* arrival time by Maildir convention */
	const char *bad; /* non-NULL: why this file is skipped (static string) */
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
 * The folders of the tree under root, as store folder names ("INBOX",
 * "Lists/foo"), sorted. sep is '/' (nested) or '.' (flat). Directories whose
 * names cannot be mapped back to a folder are left out. Returns 0 or -errno
 * (-ENOENT: root is missing). The caller frees with maildir_folders_free().
 */
int maildir_list_folders(const char *root, char sep, char ***out, size_t *n);
void maildir_folders_free(char **names, size_t n);

#endif
