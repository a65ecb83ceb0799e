/*
 * Authentication for the IMAP client: choosing a mechanism and computing the
 * pieces that go on the wire. The functions below are pure (no sockets, no
 * logging), so they are unit-tested against the RFCs' vectors. imap_auth.c
 * also holds the client's login sequence (greeting, STARTTLS, AUTHENTICATE /
 * LOGIN, COMPRESS), which imap_client.c calls through imap_client_p.h.
 *
 * Ownership: every returned string is newly allocated; the caller frees it
 * (and should wipe it with imap_auth_wipe(), it holds a credential).
 */
#ifndef IB_SYNC_IMAP_AUTH_H
#define IB_SYNC_IMAP_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/config.h"

enum imap_auth_err {
	IMAP_AUTH_OK = 0,
	IMAP_AUTH_ERR_NONE_USABLE = -1,	  /* no configured mechanism is offered */
	IMAP_AUTH_ERR_LOGINDISABLED = -2, /* only LOGIN would do, and it is disabled */
	IMAP_AUTH_ERR_CHALLENGE = -3,	  /* the server's challenge is not valid base64 */
};

const char *imap_auth_strerror(int err);

/* What the server offers, as the client learnt it from CAPABILITY. */
typedef struct imap_auth_offer {
	bool plain, login_mech, cram_md5; /* AUTH=PLAIN, AUTH=LOGIN, AUTH=CRAM-MD5 */
	bool logindisabled;		  /* LOGINDISABLED */
	bool sasl_ir;			  /* SASL-IR: PLAIN is one round trip */
	bool private_path;		  /* no network sees the password: TLS, or
					     a loopback peer */
} imap_auth_offer_t;

/*
 * Pick the mechanism: the first of remote->auth[] (when n_auth > 0) that the
 * server supports, else the strongest offered (CRAM-MD5 > PLAIN > LOGIN).
 * Inside TLS, or to a loopback address, with SASL-IR the default puts PLAIN
 * first: no network sees the password there, and the login takes one round
 * trip instead of CRAM-MD5's two.
 * CONFIG_AUTH_LOGIN means the IMAP LOGIN command, which every server has
 * unless it says LOGINDISABLED (AUTH=LOGIN is not used: same secrecy as the
 * LOGIN command, one more round trip). Returns 0 and sets *mech, or an
 * imap_auth_err.
 */
int imap_auth_choose(const config_remote_t *remote, const imap_auth_offer_t *offer,
		     enum config_auth *mech);
/* "CRAM-MD5", "PLAIN", "LOGIN". */
const char *imap_auth_mech_name(enum config_auth mech);
/* True when the mechanism sends the password itself (not a digest). */
bool imap_auth_mech_plaintext(enum config_auth mech);

/* base64 (no line breaks) of len bytes. */
char *imap_auth_b64_encode(const void *data, size_t len);
/* Decode base64; returns NULL on bad input. *outlen gets the byte count; the
 * result is NUL-terminated too. */
char *imap_auth_b64_decode(const char *s, size_t *outlen);

/* RFC 4616 PLAIN: base64("" NUL user NUL password). */
char *imap_auth_plain(const char *user, const char *password);
/* RFC 2195 CRAM-MD5: from the server's base64 challenge, the base64 of
 * "user <hex HMAC-MD5(password, challenge)>". NULL on a bad challenge. */
char *imap_auth_cram_md5(const char *user, const char *password, const char *challenge_b64);

/* Overwrite and free a string that held a credential. NULL is fine. */
void imap_auth_wipe(char *s);

#endif
