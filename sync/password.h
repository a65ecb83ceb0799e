/*
 * Remote passwords: inline (password), the first line of a file
 * (password_file), or the output of a command (password_command, run through
 * /bin/sh -c each time a login needs it, so a keyring or pass(1) prompt
 * stays in charge of the secret).
 *
 * password_get() blocks until the command ends (at most
 * PASSWORD_COMMAND_TIMEOUT); the IMAP client uses password_get_async().
 *
 * Ownership: password_get() returns a new string in *out that the caller
 * wipes and frees with password_free(); on error *errmsg gets a new message
 * for people (never containing the password) that the caller frees.
 */
#ifndef IB_SYNC_PASSWORD_H
#define IB_SYNC_PASSWORD_H

#include <ev.h>

#include "lib/config.h"

enum password_err {
	PASSWORD_OK = 0,
	PASSWORD_ERR_NONE = -1,	   /* no password source configured */
	PASSWORD_ERR_FILE = -2,	   /* password_file unreadable or empty */
	PASSWORD_ERR_COMMAND = -3, /* password_command failed, timed out or printed nothing */
};

const char *password_strerror(int err);

/* The command gets this long before it is killed. */
#define PASSWORD_COMMAND_TIMEOUT 60.0

/* Get the password for r. Returns 0 or a password_err. A command's non-zero
 * exit status or empty output is an error, reported with its stderr. */
int password_get(const config_remote_t *r, char **out, char **errmsg);
void password_free(char *pw);

/*
 * The same without blocking the loop: a password_command runs while the
 * loop goes on, and cb gets the result (rc as password_get(); pw is the
 * callback's to keep and password_free(), errmsg valid during the call).
 * Inline passwords and password_file answer at once: cb is called before
 * this returns, which then returns NULL. Otherwise the returned request can
 * be cancelled (the command is killed, cb is not called) until cb runs.
 */
typedef struct password_req password_req_t;
typedef void (*password_cb)(int rc, char *pw, const char *errmsg, void *arg);
password_req_t *password_get_async(struct ev_loop *loop, const config_remote_t *r, password_cb cb,
				   void *arg);
void password_cancel(password_req_t *req);

#endif
