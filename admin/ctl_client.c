/* Control socket client: see ctl_client.h. */
#include "admin/ctl_client.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/buf.h"
#include "server/ctl.h"

static int send_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int ctl_client_request(const char *sock, const char *request, json_t **resp, char *err,
		       size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	buf_t in = BUF_INIT;
	int fd = -1, rc = CTL_CLIENT_E_CONNECT;

	*resp = NULL;
	if (strlen(sock) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path %s is too long", sock);
		goto out;
	}
	strcpy(sa.sun_path, sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno == EACCES || errno == EPERM)
			snprintf(err, errlen,
				 "cannot reach imapbridged at %s: permission denied; run "
				 "this as the daemon's user or as root",
				 sock);
		else
			snprintf(err, errlen,
				 "cannot reach imapbridged at %s: is it running? start it "
				 "with `imapbridged -c FILE`",
				 sock);
		goto out;
	}
	rc = CTL_CLIENT_E_IO;
	/* A daemon that refuses us answers and hangs up at once, so the send
	 * may fail: read its answer before reporting the broken pipe. */
	int send_errno = 0;
	if (send_all(fd, request, strlen(request)) < 0 || send_all(fd, "\n", 1) < 0)
		send_errno = errno;
	for (;;) {
		char *p = buf_reserve(&in, 4096);
		ssize_t n = recv(fd, p, 4096, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (send_errno)
				snprintf(err, errlen,
					 "lost the connection to imapbridged at %s: %s", sock,
					 strerror(send_errno));
			else
				snprintf(err, errlen,
					 "imapbridged at %s closed the connection without "
					 "an answer; see its log",
					 sock);
			goto out;
		}
		buf_commit(&in, (size_t)n);
		const char *nl = memchr(buf_head(&in), '\n', buf_avail(&in));
		if (nl) {
			rc = CTL_CLIENT_E_PROTO;
			if (json_parse(buf_head(&in), (size_t)(nl - buf_head(&in)), resp) !=
				JSON_OK ||
			    json_type(*resp) != JSON_OBJ) {
				json_free(*resp);
				*resp = NULL;
				snprintf(err, errlen,
					 "imapbridged at %s sent an answer this imapbridge "
					 "does not understand; are both the same version?",
					 sock);
				goto out;
			}
			rc = CTL_CLIENT_OK;
			goto out;
		}
		if (buf_avail(&in) > 64 * 1024 * 1024) {
			rc = CTL_CLIENT_E_PROTO;
			snprintf(err, errlen, "imapbridged at %s sent an answer that is too long",
				 sock);
			goto out;
		}
	}
out:
	if (fd >= 0)
		close(fd);
	buf_free(&in);
	return rc;
}
