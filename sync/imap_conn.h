/*
 * IMAP transport: a byte stream to a server on the libev loop, whatever is
 * underneath. Plain TCP (IPv4/IPv6; the name looked up in glibc's resolver
 * thread with getaddrinfo_a so the loop never waits for DNS; non-blocking
 * connect with a timeout, every address tried in turn), a PREAUTH tunnel (a
 * /bin/sh -c command on two pipes), TLS (implicit or started later for
 * STARTTLS) with certificate checks and fingerprint pinning, and
 * COMPRESS=DEFLATE on top of it all. Knows nothing about IMAP commands.
 *
 * Ownership: the caller owns the imap_conn_t and frees it with
 * imap_conn_free(); the callbacks are never called after imap_conn_free() or
 * imap_conn_close(). Data passed to read_cb is valid during the call only.
 * imap_conn_write() copies. After error_cb the connection is closed and only
 * imap_conn_free() (or a new connect) may follow; error_cb may free it.
 */
#ifndef IB_SYNC_IMAP_CONN_H
#define IB_SYNC_IMAP_CONN_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct imap_conn imap_conn_t;

enum imap_conn_err {
	IMAP_CONN_OK = 0,
	IMAP_CONN_ERR_RESOLVE = -1,   /* host name does not resolve */
	IMAP_CONN_ERR_CONNECT = -2,   /* every address refused or unreachable */
	IMAP_CONN_ERR_TIMEOUT = -3,   /* connect or TLS handshake took too long */
	IMAP_CONN_ERR_CLOSED = -4,    /* the peer closed the connection */
	IMAP_CONN_ERR_IO = -5,	      /* read/write error */
	IMAP_CONN_ERR_TLS = -6,	      /* TLS handshake or record error */
	IMAP_CONN_ERR_UNTRUSTED = -7, /* certificate check or pin failed */
	IMAP_CONN_ERR_TUNNEL = -8,    /* the tunnel command could not be started */
	IMAP_CONN_ERR_COMPRESS = -9,  /* deflate stream broken */
	IMAP_CONN_ERR_CONFIG = -10,   /* bad ca_file / fingerprint setting */
};

const char *imap_conn_strerror(int err);

typedef struct imap_conn_cbs {
	/* The transport is up: TCP connected (and, for implicit TLS, the
	 * handshake done and the certificate accepted), or the tunnel started. */
	void (*connected_cb)(imap_conn_t *c, void *arg);
	/* A STARTTLS handshake finished and the certificate was accepted. */
	void (*tls_done_cb)(imap_conn_t *c, void *arg);
	/* Bytes from the server, decrypted and inflated. */
	void (*read_cb)(imap_conn_t *c, const char *data, size_t len, void *arg);
	/* The output queue fell below the low-water mark (for streaming). */
	void (*drain_cb)(imap_conn_t *c, void *arg);
	/* The connection failed or closed; msg is a complete sentence without
	 * the account prefix. */
	void (*error_cb)(imap_conn_t *c, int err, const char *msg, void *arg);
} imap_conn_cbs_t;

typedef struct imap_tls_opts {
	const char *host;	 /* for SNI and hostname verification; an IP
				    address is checked against the IP SANs */
	int port;		 /* for messages */
	const char *ca_file;	 /* NULL: the system store */
	const char *fingerprint; /* "sha256:AB:CD:..." pin, or NULL */
} imap_tls_opts_t;

/* Output is flow-controlled against this: drain_cb fires below it. */
#define IMAP_CONN_LOW_WATER (256 * 1024)

imap_conn_t *imap_conn_new(struct ev_loop *loop, const imap_conn_cbs_t *cbs, void *arg);
void imap_conn_free(imap_conn_t *c);
/* Close now, without callbacks; the object can connect again. */
void imap_conn_close(imap_conn_t *c);

/* Connect over TCP; with tls != NULL, do the TLS handshake at once (implicit
 * TLS). timeout covers the lookup, connecting and the handshake. Results come through
 * connected_cb or error_cb; a negative return means error_cb will not be
 * called (bad arguments, nothing started) and errmsg is filled. */
int imap_conn_connect_tcp(imap_conn_t *c, const char *host, int port, const imap_tls_opts_t *tls,
			  double timeout);
/* Run /bin/sh -c command with its stdin/stdout on pipes. The
 * process must ignore SIGPIPE (the daemon does), or a dead tunnel kills it. */
int imap_conn_connect_tunnel(imap_conn_t *c, const char *command);
/* Start TLS on the established connection (after "OK" to STARTTLS). */
int imap_conn_start_tls(imap_conn_t *c, const imap_tls_opts_t *tls, double timeout);
/* Wrap the stream in raw deflate both ways (after "OK" to COMPRESS). */
int imap_conn_start_compress(imap_conn_t *c);

/* Queue bytes for the server (compressed/encrypted as configured). */
void imap_conn_write(imap_conn_t *c, const void *data, size_t len);
/* Bytes queued and not yet handed to the kernel. */
size_t imap_conn_outq(const imap_conn_t *c);

bool imap_conn_is_tls(const imap_conn_t *c);
bool imap_conn_is_compressed(const imap_conn_t *c);
/* True for a tunnel or a loopback peer: plaintext credentials are not
 * exposed on a network there. */
bool imap_conn_is_local(const imap_conn_t *c);
/* A TCP peer on a loopback address (not a tunnel, whose command may
 * itself reach the network in the clear). */
bool imap_conn_is_loopback(const imap_conn_t *c);
/* "sha256:AB:..." of the server certificate once seen, else "". */
const char *imap_conn_peer_fingerprint(const imap_conn_t *c);
/* The last error message, or "". */
const char *imap_conn_errmsg(const imap_conn_t *c);

/* Fingerprints: format a SHA-256 digest as "sha256:AB:CD:..." (out must hold
 * IMAP_FP_STRLEN bytes), and parse a configured pin ("sha256:" prefix
 * optional, colons optional, any case). Parse returns 0 or -1. */
#define IMAP_FP_STRLEN (7 + 32 * 3)
void imap_fingerprint_format(const unsigned char md[32], char *out);
int imap_fingerprint_parse(const char *s, unsigned char md[32]);

#endif
