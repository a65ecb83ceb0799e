/*
 * MD5 (RFC 1321) and HMAC-MD5 (RFC 2104), for the two places the protocols
 * ask for them: the CRAM-MD5 login answer and the folder-name hash in Maildir
 * file names (OfflineIMAP's FMD5). Neither needs a strong hash.
 *
 * Why not OpenSSL's: its first use loads the OpenSSL config and providers,
 * about a millisecond of CPU. A resync with nothing to do logs in, asks one
 * LIST and is done in about ten; it otherwise never touches OpenSSL (no TLS,
 * no new message to hash), so that millisecond was a tenth of its time.
 */
#ifndef IB_MD5_H
#define IB_MD5_H

#include <stddef.h>
#include <stdint.h>

#define MD5_LEN 16

typedef struct md5 {
	uint32_t h[4];
	uint64_t len;	       /* bytes hashed so far */
	unsigned char blk[64]; /* the partial block, len % 64 bytes */
} md5_t;

void md5_init(md5_t *c);
void md5_update(md5_t *c, const void *data, size_t len);
/* Writes the digest; c must be initialised again before reuse. */
void md5_final(md5_t *c, unsigned char out[MD5_LEN]);

/* One-shot forms. */
void md5(const void *data, size_t len, unsigned char out[MD5_LEN]);
void hmac_md5(const void *key, size_t key_len, const void *msg, size_t msg_len,
	      unsigned char out[MD5_LEN]);

#endif
