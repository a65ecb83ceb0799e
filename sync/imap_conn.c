/* IMAP transport: see imap_conn.h. */
#include "sync/imap_conn.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <zlib.h>

#include "lib/buf.h"
#include "lib/util.h"

enum conn_state {
	CS_CLOSED,
	CS_RESOLVING,
	CS_CONNECTING,
	CS_HANDSHAKE,
	CS_OPEN,
};

struct imap_conn {
	struct ev_loop *loop;
	imap_conn_cbs_t cbs;
	void *arg;
	enum conn_state state;
	int fd;	 /* socket, or the tunnel's stdout (we read) */
	int wfd; /* the tunnel's stdin (we write), else -1 */
	pid_t tunnel_pid;
	bool tunnel;   /* a tunnel command, not a TCP peer */
	bool loopback; /* a TCP peer on a loopback address */
	ev_io rio, wio;
	ev_timer timer;

	/* Name lookup in glibc's resolver thread (getaddrinfo_a), so a slow
	 * DNS server does not stall every other connection on the loop. */
	struct resolve *resolve;
	ev_async async_w;

	/* TCP connect: remaining addresses to try. */
	struct addrinfo *ai_list, *ai_next;
	char *host;
	int port;
	double timeout;
	char last_sys_err[128];

	/* TLS */
	SSL_CTX *ctx;
	SSL *ssl;
	bool tls_implicit; /* connected_cb (not tls_done_cb) after handshake */
	char *ca_file;
	char *pin;
	bool has_pin;
	unsigned char pin_md[32];
	char fp[IMAP_FP_STRLEN];

	/* COMPRESS=DEFLATE */
	bool compress;
	z_stream zin, zout;

	buf_t out; /* bytes ready for the TLS layer / socket */
	char errmsg[1024];
};

const char *imap_conn_strerror(int err)
{
	switch (err) {
	case IMAP_CONN_OK:
		return "no error";
	case IMAP_CONN_ERR_RESOLVE:
		return "host name does not resolve";
	case IMAP_CONN_ERR_CONNECT:
		return "cannot connect";
	case IMAP_CONN_ERR_TIMEOUT:
		return "timed out";
	case IMAP_CONN_ERR_CLOSED:
		return "connection closed by the server";
	case IMAP_CONN_ERR_IO:
		return "network error";
	case IMAP_CONN_ERR_TLS:
		return "TLS error";
	case IMAP_CONN_ERR_UNTRUSTED:
		return "certificate not trusted";
	case IMAP_CONN_ERR_TUNNEL:
		return "tunnel command failed";
	case IMAP_CONN_ERR_COMPRESS:
		return "compression error";
	case IMAP_CONN_ERR_CONFIG:
		return "bad TLS setting";
	}
	return "unknown error";
}

void imap_fingerprint_format(const unsigned char md[32], char *out)
{
	static const char hex[] = "0123456789ABCDEF";
	memcpy(out, "sha256:", 7);
	char *p = out + 7;
	for (int i = 0; i < 32; i++) {
		*p++ = hex[md[i] >> 4];
		*p++ = hex[md[i] & 15];
		*p++ = i < 31 ? ':' : '\0';
	}
}

int imap_fingerprint_parse(const char *s, unsigned char md[32])
{
	int n = 0, half = -1;

	if (strncasecmp(s, "sha256:", 7) == 0)
		s += 7;
	for (; *s; s++) {
		int v;
		if (*s == ':' || *s == ' ') {
			if (half >= 0)
				return -1;
			continue;
		}
		if (!isxdigit((unsigned char)*s))
			return -1;
		v = isdigit((unsigned char)*s) ? *s - '0' : (tolower((unsigned char)*s) - 'a' + 10);
		if (half < 0) {
			half = v;
		} else {
			if (n >= 32)
				return -1;
			md[n++] = (unsigned char)(half << 4 | v);
			half = -1;
		}
	}
	return n == 32 && half < 0 ? 0 : -1;
}

/*
 * A lookup shared with the resolver's notification thread. Whoever comes
 * second frees it: the loop when the lookup finished first, the
 * notification when the connection gave up on it first (orphaned). The
 * mutex orders the two and guards the ev_async_send().
 */
struct resolve {
	pthread_mutex_t mu;
	bool done;
	bool orphaned;
	struct ev_loop *loop;
	ev_async *async;
	struct gaicb gcb;
	struct addrinfo hints;
	char *host;
	char port[16];
};

static void resolve_free(struct resolve *r)
{
	if (r->gcb.ar_result)
		freeaddrinfo(r->gcb.ar_result);
	pthread_mutex_destroy(&r->mu);
	free(r->host);
	free(r);
}

/* Runs in a resolver thread: touch nothing but r. */
static void resolve_notify(union sigval sv)
{
	struct resolve *r = sv.sival_ptr;
	bool free_it;

	pthread_mutex_lock(&r->mu);
	r->done = true;
	free_it = r->orphaned;
	if (!free_it)
		ev_async_send(r->loop, r->async);
	pthread_mutex_unlock(&r->mu);
	if (free_it)
		resolve_free(r);
}

/* Stop waiting for a lookup (the connection closes). */
static void resolve_abandon(imap_conn_t *c)
{
	struct resolve *r = c->resolve;
	bool done;

	if (!r)
		return;
	c->resolve = NULL;
	ev_async_stop(c->loop, &c->async_w);
	pthread_mutex_lock(&r->mu);
	done = r->done;
	r->orphaned = true;
	pthread_mutex_unlock(&r->mu);
	if (done)
		resolve_free(r);
}

static void rio_cb(struct ev_loop *loop, ev_io *w, int revents);
static void async_cb(struct ev_loop *loop, ev_async *w, int revents);
static void wio_cb(struct ev_loop *loop, ev_io *w, int revents);
static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

imap_conn_t *imap_conn_new(struct ev_loop *loop, const imap_conn_cbs_t *cbs, void *arg)
{
	imap_conn_t *c = xcalloc(1, sizeof(*c));
	c->loop = loop;
	c->cbs = *cbs;
	c->arg = arg;
	c->fd = -1;
	c->wfd = -1;
	c->tunnel_pid = -1;
	ev_init(&c->rio, rio_cb);
	ev_init(&c->wio, wio_cb);
	ev_init(&c->timer, timer_cb);
	ev_async_init(&c->async_w, async_cb);
	c->rio.data = c->wio.data = c->timer.data = c->async_w.data = c;
	return c;
}

static void reap_tunnel(imap_conn_t *c)
{
	if (c->tunnel_pid <= 0)
		return;
	/* The child sees EOF once the socket is closed; give it a moment, then
	 * insist, so no zombie stays behind. */
	for (int i = 0; i < 20; i++) {
		if (waitpid(c->tunnel_pid, NULL, WNOHANG) != 0)
			goto out;
		usleep(5000);
	}
	kill(c->tunnel_pid, SIGTERM);
	waitpid(c->tunnel_pid, NULL, 0);
out:
	c->tunnel_pid = -1;
}

void imap_conn_close(imap_conn_t *c)
{
	resolve_abandon(c);
	ev_io_stop(c->loop, &c->rio);
	ev_io_stop(c->loop, &c->wio);
	ev_timer_stop(c->loop, &c->timer);
	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->ctx) {
		SSL_CTX_free(c->ctx);
		c->ctx = NULL;
	}
	if (c->compress) {
		inflateEnd(&c->zin);
		deflateEnd(&c->zout);
		c->compress = false;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	if (c->wfd >= 0) {
		close(c->wfd);
		c->wfd = -1;
	}
	reap_tunnel(c);
	if (c->ai_list) {
		freeaddrinfo(c->ai_list);
		c->ai_list = c->ai_next = NULL;
	}
	buf_reset(&c->out);
	c->state = CS_CLOSED;
	c->fp[0] = '\0';
}

void imap_conn_free(imap_conn_t *c)
{
	if (!c)
		return;
	imap_conn_close(c);
	buf_free(&c->out);
	free(c->host);
	free(c->ca_file);
	free(c->pin);
	free(c);
}

/* Close and report. The callback may free c, so nothing touches c after. */
static void fail(imap_conn_t *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(imap_conn_t *c, int err, const char *fmt, ...)
{
	char msg[sizeof(c->errmsg)];
	va_list ap;
	/* Through a copy: callers may pass c->errmsg itself as an argument. */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	memcpy(c->errmsg, msg, sizeof(msg));
	imap_conn_close(c);
	if (c->cbs.error_cb)
		c->cbs.error_cb(c, err, c->errmsg, c->arg);
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	return 0;
}

static void start_open(imap_conn_t *c)
{
	c->state = CS_OPEN;
	ev_timer_stop(c->loop, &c->timer);
	ev_io_set(&c->rio, c->fd, EV_READ);
	ev_io_set(&c->wio, c->wfd >= 0 ? c->wfd : c->fd, EV_WRITE);
	ev_io_start(c->loop, &c->rio);
	if (buf_avail(&c->out))
		ev_io_start(c->loop, &c->wio);
}

/* ---- TCP connect ------------------------------------------------------ */

static void try_next_addr(imap_conn_t *c);

static bool addr_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		return IN6_IS_ADDR_LOOPBACK(a) ||
		       (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

static int tls_begin(imap_conn_t *c, const imap_tls_opts_t *o, double timeout);

static void connected(imap_conn_t *c)
{
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->loopback = addr_is_loopback(c->ai_next->ai_addr);
	freeaddrinfo(c->ai_list);
	c->ai_list = c->ai_next = NULL;
	ev_io_stop(c->loop, &c->wio);
	if (c->tls_implicit) {
		imap_tls_opts_t o = {c->host, c->port, c->ca_file, c->pin};
		if (tls_begin(c, &o, c->timeout) < 0)
			fail(c, IMAP_CONN_ERR_CONFIG, "%s", c->errmsg);
		return;
	}
	start_open(c);
	if (c->cbs.connected_cb)
		c->cbs.connected_cb(c, c->arg);
}

static void try_next_addr(imap_conn_t *c)
{
	for (; c->ai_next; c->ai_next = c->ai_next->ai_next) {
		struct addrinfo *ai = c->ai_next;
		int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (fd < 0)
			continue;
		if (set_nonblock(fd) < 0) {
			close(fd);
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			c->fd = fd;
			connected(c);
			return;
		}
		if (errno == EINPROGRESS) {
			c->fd = fd;
			ev_io_set(&c->wio, fd, EV_WRITE);
			ev_io_start(c->loop, &c->wio);
			return;
		}
		snprintf(c->last_sys_err, sizeof(c->last_sys_err), "%s", strerror(errno));
		close(fd);
	}
	fail(c, IMAP_CONN_ERR_CONNECT,
	     "cannot connect to %s:%d (%s); check host and port, and that the server is up",
	     c->host, c->port, c->last_sys_err[0] ? c->last_sys_err : "no usable address");
}

int imap_conn_connect_tcp(imap_conn_t *c, const char *host, int port, const imap_tls_opts_t *tls,
			  double timeout)
{
	struct addrinfo hints = {0};
	char portstr[16];
	int rc;

	imap_conn_close(c);
	c->errmsg[0] = c->last_sys_err[0] = '\0';
	free(c->host);
	c->host = xstrdup(host);
	c->port = port;
	c->timeout = timeout;
	c->tls_implicit = tls != NULL;
	free(c->ca_file);
	free(c->pin);
	c->ca_file = tls && tls->ca_file ? xstrdup(tls->ca_file) : NULL;
	c->pin = tls && tls->fingerprint ? xstrdup(tls->fingerprint) : NULL;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST;
	snprintf(portstr, sizeof(portstr), "%d", port);
	ev_timer_set(&c->timer, timeout, 0.);
	/* An address needs no lookup. */
	if (getaddrinfo(host, portstr, &hints, &c->ai_list) == 0) {
		c->ai_next = c->ai_list;
		c->state = CS_CONNECTING;
		ev_timer_start(c->loop, &c->timer);
		try_next_addr(c);
		return 0;
	}
	c->ai_list = NULL;

	struct resolve *r = xcalloc(1, sizeof(*r));
	struct gaicb *list[1] = {&r->gcb};
	struct sigevent sev = {0};
	pthread_mutex_init(&r->mu, NULL);
	r->loop = c->loop;
	r->async = &c->async_w;
	r->host = xstrdup(host);
	snprintf(r->port, sizeof(r->port), "%s", portstr);
	/* No AI_ADDRCONFIG: it hides "localhost" on a host with loopback only;
	 * an address family we cannot reach fails fast and the next is tried. */
	r->hints.ai_family = AF_UNSPEC;
	r->hints.ai_socktype = SOCK_STREAM;
	r->gcb.ar_name = r->host;
	r->gcb.ar_service = r->port;
	r->gcb.ar_request = &r->hints;
	sev.sigev_notify = SIGEV_THREAD;
	sev.sigev_notify_function = resolve_notify;
	sev.sigev_value.sival_ptr = r;
	ev_async_start(c->loop, &c->async_w);
	rc = getaddrinfo_a(GAI_NOWAIT, list, 1, &sev);
	if (rc != 0) {
		ev_async_stop(c->loop, &c->async_w);
		resolve_free(r);
		snprintf(c->errmsg, sizeof(c->errmsg), "cannot resolve %s (%s); check remote.host",
			 host, gai_strerror(rc));
		return IMAP_CONN_ERR_RESOLVE;
	}
	c->resolve = r;
	c->state = CS_RESOLVING;
	ev_timer_start(c->loop, &c->timer);
	return 0;
}

/* The resolver thread finished: connect, or report. */
static void async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	imap_conn_t *c = w->data;
	struct resolve *r = c->resolve;
	bool done;
	int rc;

	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	done = r->done;
	pthread_mutex_unlock(&r->mu);
	if (!done)
		return;
	c->resolve = NULL;
	ev_async_stop(loop, w);
	rc = gai_error(&r->gcb);
	if (rc != 0) {
		resolve_free(r);
		fail(c, IMAP_CONN_ERR_RESOLVE, "cannot resolve %s (%s); check remote.host", c->host,
		     gai_strerror(rc));
		return;
	}
	c->ai_list = r->gcb.ar_result;
	r->gcb.ar_result = NULL;
	resolve_free(r);
	c->ai_next = c->ai_list;
	c->state = CS_CONNECTING;
	try_next_addr(c);
}

int imap_conn_connect_tunnel(imap_conn_t *c, const char *command)
{
	int to_child[2] = {-1, -1}, from_child[2] = {-1, -1};
	pid_t pid;

	imap_conn_close(c);
	c->errmsg[0] = '\0';
	/* Pipes, not a socketpair: some IMAP servers (Dovecot's imap) take a
	 * socket on stdin for inetd and refuse to run PREAUTH then. */
	if (pipe2(to_child, O_CLOEXEC) < 0 || pipe2(from_child, O_CLOEXEC) < 0) {
		snprintf(c->errmsg, sizeof(c->errmsg), "cannot create pipes for the tunnel: %s",
			 strerror(errno));
		goto fail;
	}
	pid = fork();
	if (pid < 0) {
		snprintf(c->errmsg, sizeof(c->errmsg), "cannot start the tunnel: %s",
			 strerror(errno));
		goto fail;
	}
	if (pid == 0) {
		/* Child: stderr stays ours so the tunnel's complaints reach the log. */
		dup2(to_child[0], 0);
		dup2(from_child[1], 1);
		signal(SIGPIPE, SIG_DFL);
		execl("/bin/sh", "sh", "-c", command, (char *)NULL);
		_exit(127);
	}
	close(to_child[0]);
	close(from_child[1]);
	c->fd = from_child[0];
	c->wfd = to_child[1];
	set_nonblock(c->fd);
	set_nonblock(c->wfd);
	c->tunnel_pid = pid;
	c->tunnel = true;
	free(c->host);
	c->host = xstrdup("the tunnel");
	start_open(c);
	if (c->cbs.connected_cb)
		c->cbs.connected_cb(c, c->arg);
	return 0;
fail:
	for (int i = 0; i < 2; i++) {
		if (to_child[i] >= 0)
			close(to_child[i]);
		if (from_child[i] >= 0)
			close(from_child[i]);
	}
	return IMAP_CONN_ERR_TUNNEL;
}

/* ---- TLS ---------------------------------------------------------------- */

static void ssl_errstr(char *out, size_t n)
{
	unsigned long e = ERR_get_error();
	if (e)
		ERR_error_string_n(e, out, n);
	else
		snprintf(out, n, "%s", errno ? strerror(errno) : "unexpected end of stream");
	ERR_clear_error();
}

static int tls_begin(imap_conn_t *c, const imap_tls_opts_t *o, double timeout)
{
	c->has_pin = false;
	if (o->fingerprint) {
		if (imap_fingerprint_parse(o->fingerprint, c->pin_md) < 0) {
			snprintf(c->errmsg, sizeof(c->errmsg),
				 "fingerprint \"%s\" is not a SHA-256 fingerprint; write it as "
				 "\"sha256:AB:CD:...\" (32 bytes)",
				 o->fingerprint);
			return IMAP_CONN_ERR_CONFIG;
		}
		c->has_pin = true;
	}
	c->ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL); /* checked after the handshake */
	if (o->ca_file) {
		if (SSL_CTX_load_verify_locations(c->ctx, o->ca_file, NULL) != 1) {
			char e[256];
			ssl_errstr(e, sizeof(e));
			snprintf(c->errmsg, sizeof(c->errmsg),
				 "cannot load ca_file \"%s\" (%s); point it at a PEM file of CA "
				 "certificates",
				 o->ca_file, e);
			return IMAP_CONN_ERR_CONFIG;
		}
	} else {
		SSL_CTX_set_default_verify_paths(c->ctx);
	}
	c->ssl = SSL_new(c->ctx);
	SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_set_fd(c->ssl, c->fd);
	if (o->host) {
		struct in6_addr a6;
		struct in_addr a4;
		bool is_ip =
		    inet_pton(AF_INET, o->host, &a4) == 1 || inet_pton(AF_INET6, o->host, &a6) == 1;
		X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
		if (is_ip) {
			X509_VERIFY_PARAM_set1_ip_asc(vp, o->host);
		} else {
			SSL_set_tlsext_host_name(c->ssl, o->host);
			SSL_set1_host(c->ssl, o->host);
		}
	}
	c->state = CS_HANDSHAKE;
	ev_io_stop(c->loop, &c->rio);
	ev_io_stop(c->loop, &c->wio);
	ev_io_set(&c->rio, c->fd, EV_READ);
	ev_io_set(&c->wio, c->fd, EV_WRITE);
	ev_timer_stop(c->loop, &c->timer);
	ev_timer_set(&c->timer, timeout, 0.);
	ev_timer_start(c->loop, &c->timer);
	ev_io_start(c->loop, &c->wio); /* kick the handshake from the loop */
	return 0;
}

/* After the handshake: accept the certificate or explain what failed. */
static int tls_check(imap_conn_t *c)
{
	X509 *cert = SSL_get1_peer_certificate(c->ssl);
	unsigned char md[32];
	unsigned int mdlen = 0;
	long vr;

	if (!cert) {
		snprintf(c->errmsg, sizeof(c->errmsg), "%s:%d sent no TLS certificate", c->host,
			 c->port);
		return IMAP_CONN_ERR_UNTRUSTED;
	}
	X509_digest(cert, EVP_sha256(), md, &mdlen);
	X509_free(cert);
	imap_fingerprint_format(md, c->fp);
	if (c->has_pin) {
		/* A pin is the user's explicit trust decision: it replaces the CA
		 * and name checks, so a self-signed certificate works. */
		if (memcmp(md, c->pin_md, 32) == 0)
			return 0;
		snprintf(
		    c->errmsg, sizeof(c->errmsg),
		    "TLS certificate of %s:%d does not match the pinned fingerprint; it presented "
		    "%s. "
		    "If the server's certificate changed on purpose, update fingerprint = \"%s\"",
		    c->host, c->port, c->fp, c->fp);
		return IMAP_CONN_ERR_UNTRUSTED;
	}
	vr = SSL_get_verify_result(c->ssl);
	if (vr == X509_V_OK)
		return 0;
	if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH) {
		snprintf(c->errmsg, sizeof(c->errmsg),
			 "TLS certificate of %s:%d is not valid for the name \"%s\". "
			 "Set remote.host to a name the certificate lists, or pin it with "
			 "fingerprint = \"%s\"",
			 c->host, c->port, c->host, c->fp);
		return IMAP_CONN_ERR_UNTRUSTED;
	}
	snprintf(c->errmsg, sizeof(c->errmsg),
		 "TLS certificate of %s:%d is not trusted (%s). "
		 "Add its CA with ca_file = \"...\", or pin it with fingerprint = \"%s\"",
		 c->host, c->port, X509_verify_cert_error_string(vr), c->fp);
	return IMAP_CONN_ERR_UNTRUSTED;
}

static void tls_handshake(imap_conn_t *c)
{
	int rc;

	ERR_clear_error();
	errno = 0;
	rc = SSL_connect(c->ssl);
	if (rc == 1) {
		int err = tls_check(c);
		if (err < 0) {
			fail(c, err, "%s", c->errmsg);
			return;
		}
		start_open(c);
		ev_io_stop(c->loop, &c->wio);
		if (buf_avail(&c->out))
			ev_io_start(c->loop, &c->wio);
		if (c->tls_implicit) {
			c->tls_implicit = false;
			if (c->cbs.connected_cb)
				c->cbs.connected_cb(c, c->arg);
		} else if (c->cbs.tls_done_cb) {
			c->cbs.tls_done_cb(c, c->arg);
		}
		return;
	}
	switch (SSL_get_error(c->ssl, rc)) {
	case SSL_ERROR_WANT_READ:
		ev_io_stop(c->loop, &c->wio);
		ev_io_start(c->loop, &c->rio);
		return;
	case SSL_ERROR_WANT_WRITE:
		ev_io_stop(c->loop, &c->rio);
		ev_io_start(c->loop, &c->wio);
		return;
	default: {
		char e[256];
		ssl_errstr(e, sizeof(e));
		fail(c, IMAP_CONN_ERR_TLS,
		     "TLS handshake with %s:%d failed (%s); check that port and tls setting match "
		     "(993 = implicit, 143 = starttls)",
		     c->host, c->port, e);
	}
	}
}

int imap_conn_start_tls(imap_conn_t *c, const imap_tls_opts_t *tls, double timeout)
{
	int err;
	if (c->state != CS_OPEN || c->ssl)
		return IMAP_CONN_ERR_TLS;
	free(c->host);
	c->host = xstrdup(tls->host ? tls->host : "");
	c->port = tls->port;
	c->tls_implicit = false;
	err = tls_begin(c, tls, timeout);
	if (err < 0) {
		fail(c, err, "%s", c->errmsg);
		return 0;
	}
	return 0;
}

/* ---- COMPRESS=DEFLATE --------------------------------------------------- */

int imap_conn_start_compress(imap_conn_t *c)
{
	if (c->compress)
		return 0;
	memset(&c->zin, 0, sizeof(c->zin));
	memset(&c->zout, 0, sizeof(c->zout));
	/* RFC 4978: raw deflate, no zlib header. */
	if (inflateInit2(&c->zin, -15) != Z_OK)
		return IMAP_CONN_ERR_COMPRESS;
	if (deflateInit2(&c->zout, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) !=
	    Z_OK) {
		inflateEnd(&c->zin);
		return IMAP_CONN_ERR_COMPRESS;
	}
	c->compress = true;
	return 0;
}

/* ---- I/O ---------------------------------------------------------------- */

static void flush_out(imap_conn_t *c);

void imap_conn_write(imap_conn_t *c, const void *data, size_t len)
{
	if (c->state == CS_CLOSED)
		return;
	if (c->compress) {
		c->zout.next_in = (Bytef *)data;
		c->zout.avail_in = (uInt)len;
		do {
			char *p = buf_reserve(&c->out, 16384);
			c->zout.next_out = (Bytef *)p;
			c->zout.avail_out = 16384;
			/* Sync flush: every command leaves at once, as IMAP needs. */
			deflate(&c->zout, Z_SYNC_FLUSH);
			buf_commit(&c->out, 16384 - c->zout.avail_out);
		} while (c->zout.avail_out == 0);
	} else {
		buf_append(&c->out, data, len);
	}
	if (c->state == CS_OPEN)
		flush_out(c);
}

size_t imap_conn_outq(const imap_conn_t *c)
{
	return buf_avail(&c->out);
}

static void flush_out(imap_conn_t *c)
{
	while (buf_avail(&c->out)) {
		ssize_t n;
		if (c->ssl) {
			ERR_clear_error();
			int rc = SSL_write(
			    c->ssl, buf_head(&c->out),
			    (int)(buf_avail(&c->out) > 1 << 20 ? 1 << 20 : buf_avail(&c->out)));
			if (rc <= 0) {
				int e = SSL_get_error(c->ssl, rc);
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
					break;
				char es[256];
				ssl_errstr(es, sizeof(es));
				fail(c, IMAP_CONN_ERR_TLS, "TLS write to %s failed (%s)", c->host,
				     es);
				return;
			}
			n = rc;
		} else {
			if (c->wfd >= 0)
				n = write(c->wfd, buf_head(&c->out), buf_avail(&c->out));
			else
				n = send(c->fd, buf_head(&c->out), buf_avail(&c->out),
					 MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EAGAIN || errno == EINTR)
					break;
				if (errno == EPIPE) {
					fail(c, IMAP_CONN_ERR_CLOSED, "%s closed the connection",
					     c->host);
					return;
				}
				fail(c, IMAP_CONN_ERR_IO, "write to %s failed (%s)", c->host,
				     strerror(errno));
				return;
			}
		}
		buf_consume(&c->out, (size_t)n);
	}
	if (buf_avail(&c->out))
		ev_io_start(c->loop, &c->wio);
	else
		ev_io_stop(c->loop, &c->wio);
}

/* Hand decrypted bytes up, inflating first when compression is on.
 * Returns false when the connection was closed (c may be gone). */
static bool deliver(imap_conn_t *c, const char *data, size_t len)
{
	if (!c->compress) {
		c->cbs.read_cb(c, data, len, c->arg);
		return c->state == CS_OPEN;
	}
	char out[32768];
	c->zin.next_in = (Bytef *)data;
	c->zin.avail_in = (uInt)len;
	do {
		c->zin.next_out = (Bytef *)out;
		c->zin.avail_out = sizeof(out);
		int rc = inflate(&c->zin, Z_SYNC_FLUSH);
		if (rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END) {
			fail(c, IMAP_CONN_ERR_COMPRESS, "compressed stream from %s is corrupt (%s)",
			     c->host, c->zin.msg ? c->zin.msg : "inflate error");
			return false;
		}
		size_t got = sizeof(out) - c->zin.avail_out;
		if (got) {
			/* read_cb may close; zin's input pointer refers to data, which
			 * the caller keeps alive, so only c's state matters. */
			c->cbs.read_cb(c, out, got, c->arg);
			if (c->state != CS_OPEN || !c->compress)
				return c->state == CS_OPEN;
		}
		if (rc == Z_BUF_ERROR)
			break;
	} while (c->zin.avail_in > 0 || c->zin.avail_out == 0);
	return true;
}

static void do_read(imap_conn_t *c)
{
	char tmp[65536];

	while (c->state == CS_OPEN) {
		ssize_t n;
		if (c->ssl) {
			ERR_clear_error();
			errno = 0;
			int rc = SSL_read(c->ssl, tmp, sizeof(tmp));
			if (rc <= 0) {
				int e = SSL_get_error(c->ssl, rc);
				if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
					return;
				if (e == SSL_ERROR_ZERO_RETURN) {
					fail(c, IMAP_CONN_ERR_CLOSED, "%s closed the connection",
					     c->host);
					return;
				}
				char es[256];
				ssl_errstr(es, sizeof(es));
				if (e == SSL_ERROR_SYSCALL && !ERR_peek_error())
					fail(c, IMAP_CONN_ERR_CLOSED, "%s closed the connection",
					     c->host);
				else
					fail(c, IMAP_CONN_ERR_TLS, "TLS read from %s failed (%s)",
					     c->host, es);
				return;
			}
			n = rc;
		} else {
			n = read(c->fd, tmp, sizeof(tmp));
			if (n < 0) {
				if (errno == EAGAIN || errno == EINTR)
					return;
				fail(c, IMAP_CONN_ERR_IO, "read from %s failed (%s)", c->host,
				     strerror(errno));
				return;
			}
			if (n == 0) {
				fail(c, IMAP_CONN_ERR_CLOSED, "%s closed the connection", c->host);
				return;
			}
		}
		if (!deliver(c, tmp, (size_t)n))
			return;
		if (!c->ssl && (size_t)n < sizeof(tmp))
			return;
	}
}

static void rio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	imap_conn_t *c = w->data;
	if (c->state == CS_HANDSHAKE) {
		tls_handshake(c);
		return;
	}
	do_read(c);
}

static void wio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	imap_conn_t *c = w->data;

	if (c->state == CS_CONNECTING) {
		int err = 0;
		socklen_t sl = sizeof(err);
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
		if (err == 0) {
			connected(c);
			return;
		}
		snprintf(c->last_sys_err, sizeof(c->last_sys_err), "%s", strerror(err));
		ev_io_stop(loop, &c->wio);
		close(c->fd);
		c->fd = -1;
		c->ai_next = c->ai_next->ai_next;
		try_next_addr(c);
		return;
	}
	if (c->state == CS_HANDSHAKE) {
		tls_handshake(c);
		return;
	}
	size_t before = buf_avail(&c->out);
	flush_out(c);
	if (c->state == CS_OPEN && before >= IMAP_CONN_LOW_WATER / 2 &&
	    buf_avail(&c->out) < IMAP_CONN_LOW_WATER / 2 && c->cbs.drain_cb)
		c->cbs.drain_cb(c, c->arg);
	else if (c->state == CS_OPEN && buf_avail(&c->out) == 0 && c->cbs.drain_cb)
		c->cbs.drain_cb(c, c->arg);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	imap_conn_t *c = w->data;
	if (c->state == CS_RESOLVING)
		fail(c, IMAP_CONN_ERR_TIMEOUT,
		     "looking up %s took longer than %.0f s; check remote.host and the DNS setup",
		     c->host, c->timeout);
	else if (c->state == CS_CONNECTING)
		fail(c, IMAP_CONN_ERR_TIMEOUT,
		     "connecting to %s:%d timed out after %.0f s; check host, port and firewall",
		     c->host, c->port, c->timeout);
	else if (c->state == CS_HANDSHAKE)
		fail(c, IMAP_CONN_ERR_TIMEOUT,
		     "TLS handshake with %s:%d timed out; check that port and tls setting match",
		     c->host, c->port);
}

bool imap_conn_is_tls(const imap_conn_t *c)
{
	return c->ssl != NULL && c->state == CS_OPEN;
}

bool imap_conn_is_compressed(const imap_conn_t *c)
{
	return c->compress;
}

bool imap_conn_is_local(const imap_conn_t *c)
{
	return c->tunnel || c->loopback;
}

bool imap_conn_is_loopback(const imap_conn_t *c)
{
	return c->loopback;
}

const char *imap_conn_peer_fingerprint(const imap_conn_t *c)
{
	return c->fp;
}

const char *imap_conn_errmsg(const imap_conn_t *c)
{
	return c->errmsg;
}
