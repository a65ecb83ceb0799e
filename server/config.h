/*
 * Loading and validating the config file (INTERFACE.md's schema) into the
 * plain config_t of lib/config.h.
 *
 * Validation never stops at the first problem: every problem found is
 * collected, each as one line "FILE:LINE: option PATH: what is wrong", so a
 * user fixes everything in one round. Warnings (a password file readable by
 * others) are collected the same way but do not make the load fail.
 *
 * Besides the main file, config_load() merges the accounts added at runtime by
 * the admin CLI (<datadir>/accounts/NAME.conf, one account group's members at
 * the top level) and the local listener passwords set with `imapbridge passwd`
 * (<datadir>/local-passwords/NAME, one crypt(3) hash).
 *
 * Ownership: config_load() gives the caller a config_t that config_free()
 * releases; config_msgs_t holds strings the caller frees with
 * config_msgs_free(). Nothing is kept between calls.
 */
#ifndef IB_SERVER_CONFIG_H
#define IB_SERVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/config.h"

/* Exit status for a bad config (sysexits EX_CONFIG), used by both programs. */
#define CONFIG_EXIT_INVALID 78

enum config_err {
	CONFIG_OK = 0,
	CONFIG_E_NOFILE = -1,  /* the main file does not exist */
	CONFIG_E_INVALID = -2, /* problems were found; see msgs->errors */
};

typedef struct config_msgs {
	char **errors;
	size_t n_errors;
	char **warnings;
	size_t n_warnings;
} config_msgs_t;

#define CONFIG_MSGS_INIT                                                                           \
	{                                                                                          \
		NULL, 0, NULL, 0                                                                   \
	}

/* Where the runtime additions live, relative to the data directory. */
#define CONFIG_ACCOUNTS_SUBDIR "accounts"
#define CONFIG_PASSWORDS_SUBDIR "local-passwords"

/*
 * Read and validate path. On CONFIG_OK *out is a new config_t. On any error
 * *out is NULL and msgs holds at least one line explaining why (also for
 * CONFIG_E_NOFILE). Warnings may be present either way.
 */
int config_load(const char *path, config_t **out, config_msgs_t *msgs);

/*
 * Only the data directory of path (expanded), for the admin CLI, which must
 * find the control socket even when other parts of the file are broken.
 * Returns CONFIG_OK and a new string in *datadir, or an error with a sentence
 * in err (size errlen).
 */
int config_read_datadir(const char *path, char **datadir, char *err, size_t errlen);

/* Release a config_t from config_load(); NULL is fine. */
void config_free(config_t *cfg);

void config_msgs_free(config_msgs_t *msgs);

const char *config_strerror(int err);

/* The account called name, or NULL. The pointer lives as long as cfg. */
const config_account_t *config_find_account(const config_t *cfg, const char *name);

/*
 * Whether name is acceptable as an account name: it is a login name on the
 * listener and a file name under the data directory, so only letters, digits
 * and ". _ - @", at most 64 characters, not starting with a dot.
 */
bool config_account_name_ok(const char *name);

/* Edit distance between two short strings, for did-you-mean suggestions. */
size_t config_edit_distance(const char *a, const char *b);

#endif
