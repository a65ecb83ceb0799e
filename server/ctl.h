/*
 * The control socket: <datadir>/control.sock, mode 0600, for the admin CLI.
 *
 * Protocol: the client sends one JSON object per line and gets one JSON
 * object per line back. Every request has "cmd"; every response has "ok"
 * (true/false) and, when false, "error" (a sentence for people) and
 * "status" (the exit status the CLI should use). Requests:
 *
 *   {"cmd":"account.add","name":N,"host":H,"port":P,"tls":T,"user":U,
 *    "password":S | "password_file":F | "password_command":C,"maildir":M}
 *   {"cmd":"account.remove","name":N,"purge":bool}
 *   {"cmd":"account.list"}        -> "accounts":[{name,host,port,tls,user,...}]
 *   {"cmd":"status","name":N?}    -> "daemon":{...},"accounts":[...]
 *   {"cmd":"sync","name":N?}      -> answered when the sync has finished
 *   {"cmd":"passwd","name":N,"password":S}
 *   {"cmd":"folder.recover","name":N,"folder":F}
 *
 * A connecting peer whose uid (SO_PEERCRED) is neither the daemon's nor root
 * is refused. Passwords in requests are never logged.
 *
 * Ownership: ctl_open() gives the caller a ctl_t that ctl_close() closes
 * (every client connection too) and frees, removing the socket file.
 */
#ifndef IB_SERVER_CTL_H
#define IB_SERVER_CTL_H

#include <stddef.h>

#include "server/daemon.h"

#define CTL_SOCKET_NAME "control.sock"
/* Longest request line accepted. */
#define CTL_MAX_LINE (64 * 1024)

typedef struct ctl ctl_t;

/* Listen on path (replacing a stale socket file). 0, or -1 with err filled. */
int ctl_open(daemon_t *d, const char *path, ctl_t **out, char *err, size_t errlen);

/* NULL is fine. */
void ctl_close(ctl_t *c);

/*
 * The hook `folder recover` calls until the sync engine provides
 * daemon_sync_ops_t.folder_recover: answers "not available".
 */
int ctl_folder_recover(daemon_t *d, const char *account, const char *folder, char *msg,
		       size_t msglen);

#endif
