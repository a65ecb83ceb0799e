/*
 * Accounts added at runtime by the admin CLI, and local listener passwords.
 *
 * An added account is a file <datadir>/accounts/NAME.conf (libconfig syntax,
 * mode 0600 since it may hold the remote password) that config_load() merges
 * with the main config. A local password is a crypt(3) hash in
 * <datadir>/local-passwords/NAME (0600). Files are written to a temporary
 * name and renamed, so a crash never leaves half a file.
 *
 * These functions only touch files; the caller reloads the config so the
 * change takes effect. Errors: 0 or a negative ACCOUNTS_E_* code, with a
 * sentence for people in err (size errlen).
 */
#ifndef IB_SERVER_ACCOUNTS_H
#define IB_SERVER_ACCOUNTS_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/config.h"

enum accounts_err {
	ACCOUNTS_OK = 0,
	ACCOUNTS_E_INVALID = -1, /* bad name or settings */
	ACCOUNTS_E_IO = -2,	 /* a file cannot be written or removed */
	ACCOUNTS_E_CRYPT = -3,	 /* crypt(3) failed */
};

const char *accounts_strerror(int err);

/* What `imapbridge account add` gives; strings borrowed from the caller. */
typedef struct accounts_spec {
	const char *name;
	const char *host;
	int port;	 /* 0: by TLS mode */
	const char *tls; /* "none", "starttls", "implicit" or NULL */
	const char *user;
	const char *password; /* exactly one of these three */
	const char *password_file;
	const char *password_command;
	const char *maildir; /* NULL: no Maildir export */
} accounts_spec_t;

/* The file of an account added at runtime; the caller frees it. */
char *accounts_file(const char *datadir, const char *name);

/* Whether account a of cfg came from <datadir>/accounts (so the CLI may
 * remove it). */
bool accounts_is_runtime(const config_t *cfg, const config_account_t *a);

/* Write <datadir>/accounts/NAME.conf for spec. Does not overwrite. */
int accounts_write(const char *datadir, const accounts_spec_t *spec, char *err, size_t errlen);

/* Remove the account file and the local password of name. */
int accounts_remove(const char *datadir, const char *name, char *err, size_t errlen);

/* Hash password with a fresh salt (yescrypt, else SHA-512) into a new string. */
int accounts_hash_password(const char *password, char **out, char *err, size_t errlen);

/* Store the hash of password as name's local listener password. */
int accounts_set_local_password(const char *datadir, const char *name, const char *password,
				char *err, size_t errlen);

/* Append s to b as a libconfig string literal (quoted, escaped). */
struct buf;
void accounts_put_string(struct buf *b, const char *s);

#endif
