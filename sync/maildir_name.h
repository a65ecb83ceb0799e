/*
 * Maildir naming: message file names, their ":2," flags, and the mapping
 * between store folder names and directories of the tree.
 *
 * A file written by imapbridge is named like OfflineIMAP's:
 *
 *     <sec>_<n>.<pid>.<host>,U=<store uid>,FMD5=<md5 hex of folder name>:2,<flags>
 *
 * U= is the store UID of the message; FMD5= is the MD5 of the store folder
 * name (always with "/" as the hierarchy separator, so it does not depend on
 * the tree's layout). A file found in folder B whose FMD5 names folder A was
 * moved there by a mail reader: the store can then move the message instead
 * of deleting and re-uploading it. Files dropped in by other programs carry
 * no U=; they are new messages.
 *
 * Everything here is pure string work: no I/O, no logging.
 */
#ifndef IB_MAILDIR_NAME_H
#define IB_MAILDIR_NAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The Maildir flags, in the ASCII order of their letters (DFPRST). */
enum maildir_flag {
	MAILDIR_F_DRAFT = 1 << 0,   /* D  \Draft */
	MAILDIR_F_FLAGGED = 1 << 1, /* F  \Flagged */
	MAILDIR_F_PASSED = 1 << 2,  /* P  keyword $Forwarded */
	MAILDIR_F_REPLIED = 1 << 3, /* R  \Answered */
	MAILDIR_F_SEEN = 1 << 4,    /* S  \Seen */
	MAILDIR_F_TRASHED = 1 << 5, /* T  \Deleted */
};
#define MAILDIR_F_ALL 0x3fu

/* Length of the folder hash in hex digits (a full MD5, as OfflineIMAP writes). */
#define MAILDIR_FMD5_LEN 32

/* A parsed message file name. Points into nothing: all fields are copies. */
typedef struct maildir_name {
	uint32_t uid; /* U=, 0 when absent */
	bool has_fmd5;
	char fmd5[MAILDIR_FMD5_LEN + 1]; /* FMD5= in lower case, when has_fmd5 */
	unsigned flags;			 /* MAILDIR_F_* from the ":2," info */
	bool has_info;			 /* the name carries a ":2," suffix */
	char extra[32];			 /* info letters we do not manage (a-z keywords
					    of other programs, unknown upper case), kept
					    in order so a rename preserves them */
	size_t base_len;		 /* length of the unique part before U=/FMD5=/info */
} maildir_name_t;

/*
 * Parse a file name (no directory). Never fails: a name without U= simply has
 * uid 0. Returns false for names that are not messages at all (empty or
 * starting with '.').
 */
bool maildir_name_parse(const char *name, maildir_name_t *out);

/* The ":2," flag letters of flags, in ASCII order, into out (at least 7 bytes). */
void maildir_flags_str(unsigned flags, char *out);

/* Parse flag letters ("FS"); unknown letters are ignored. */
unsigned maildir_flags_parse(const char *s);

/* MD5 hex of a store folder name (lower case, NUL-terminated, MAILDIR_FMD5_LEN+1 bytes). */
void maildir_fmd5(const char *folder, char out[MAILDIR_FMD5_LEN + 1]);

/*
 * A new unique base name "<sec>_<n>.<pid>.<host>" into a new string. counter
 * is the caller's sequence number (kept per replica, not global); host has '/'
 * and ':' escaped as the Maildir convention asks.
 */
char *maildir_name_unique(uint64_t *counter);
/* The same from a host name and pid the caller looked up once (a replica
 * names thousands of files): host as maildir_name_host() returns it. */
char *maildir_name_unique_for(uint64_t *counter, const char *host, int pid);
/* This machine's host name, escaped for a file name. A new string. */
char *maildir_name_host(void);

/*
 * The full file name for a message: base (the unique part; may already carry
 * ",U=..."/",FMD5=..." which are then replaced), uid, folder hash, flags and
 * preserved extra info letters. Returns a new string.
 */
char *maildir_name_build(const char *base, size_t base_len, uint32_t uid, const char *fmd5,
			 unsigned flags, const char *extra);

/*
 * Same name with other flags: keeps everything before ":2," and the extra
 * letters. Returns a new string.
 */
char *maildir_name_with_flags(const char *name, unsigned flags);

/*
 * Folder name <-> relative directory. sep is "/" (nested directories) or "."
 * (one directory per folder, "Lists.foo"). INBOX is the directory "INBOX".
 * Returns a new string, or NULL when the name cannot be mapped safely (empty
 * components, "." or "..", a component starting with '.', or a name that
 * contains the "." separator itself when sep is ".").
 */
char *maildir_folder_to_dir(const char *folder, char sep);
char *maildir_dir_to_folder(const char *dir, char sep);

#endif
