/*
 * The admin CLI's side of the control socket (protocol in server/ctl.h):
 * connect, send one request line, read one response line.
 *
 * Ownership: the response tree belongs to the caller (json_free()).
 */
#ifndef IB_ADMIN_CTL_CLIENT_H
#define IB_ADMIN_CTL_CLIENT_H

#include <stddef.h>

#include "server/json.h"

enum ctl_client_err {
	CTL_CLIENT_OK = 0,
	CTL_CLIENT_E_CONNECT = -1, /* nobody listens, or no permission */
	CTL_CLIENT_E_IO = -2,	   /* the connection broke */
	CTL_CLIENT_E_PROTO = -3,   /* the answer is not what the daemon sends */
};

/*
 * Send request (one JSON object, no newline) to the daemon at sock and wait
 * for its answer (as long as it takes: `sync` waits for the sync). On error
 * fills err (size errlen) with one sentence saying what to do.
 */
int ctl_client_request(const char *sock, const char *request, json_t **resp, char *err,
		       size_t errlen);

#endif
