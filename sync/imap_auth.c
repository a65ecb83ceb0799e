/* SASL helpers: see imap_auth.h. */
#include "sync/imap_auth.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "lib/util.h"

const char *imap_auth_strerror(int err)
{
	switch (err) {
	case IMAP_AUTH_OK: return "no error";
	case IMAP_AUTH_ERR_NONE_USABLE: return "the server offers none of the configured auth mechanisms";
	case IMAP_AUTH_ERR_LOGINDISABLED: return "the server disabled LOGIN (LOGINDISABLED) and offers no other mechanism";
	case IMAP_AUTH_ERR_CHALLENGE: return "the server sent a malformed challenge";
	}
	return "unknown error";
}

const char *imap_auth_mech_name(enum config_auth mech)
{
	switch (mech) {
	case CONFIG_AUTH_CRAM_MD5: return "CRAM-MD5";
	case CONFIG_AUTH_PLAIN: return "PLAIN";
	case CONFIG_AUTH_LOGIN: return "LOGIN";
	}
	return "?";
}

bool imap_auth_mech_plaintext(enum config_auth mech)
{
	return mech != CONFIG_AUTH_CRAM_MD5;
}

static bool offered(const imap_auth_offer_t *o, enum config_auth m)
{
	switch (m) {
	case CONFIG_AUTH_CRAM_MD5: return o->cram_md5;
	case CONFIG_AUTH_PLAIN: return o->plain;
	case CONFIG_AUTH_LOGIN: return !o->logindisabled;
	}
	return false;
}

int imap_auth_choose(const config_remote_t *remote, const imap_auth_offer_t *offer,
		     enum config_auth *mech)
{
	static const enum config_auth strongest[] = {
		CONFIG_AUTH_CRAM_MD5, CONFIG_AUTH_PLAIN, CONFIG_AUTH_LOGIN,
	};
	const enum config_auth *list = strongest;
	size_t n = IB_ARRAY_LEN(strongest);
	bool wanted_login = false;

	if (remote && remote->n_auth > 0) {
		list = remote->auth;
		n = remote->n_auth;
	}
	for (size_t i = 0; i < n; i++) {
		if (list[i] == CONFIG_AUTH_LOGIN)
			wanted_login = true;
		if (offered(offer, list[i])) {
			*mech = list[i];
			return 0;
		}
	}
	return wanted_login && offer->logindisabled ? IMAP_AUTH_ERR_LOGINDISABLED
						    : IMAP_AUTH_ERR_NONE_USABLE;
}

char *imap_auth_b64_encode(const void *data, size_t len)
{
	char *out = xmalloc(4 * ((len + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

char *imap_auth_b64_decode(const char *s, size_t *outlen)
{
	size_t n = strlen(s);
	size_t pad = 0;
	char *out;
	int rc;

	if (n % 4 != 0)
		return NULL;
	out = xmalloc(n / 4 * 3 + 1);
	rc = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
	if (rc < 0) {
		free(out);
		return NULL;
	}
	/* EVP_DecodeBlock counts the padding as zero bytes. */
	if (n >= 1 && s[n - 1] == '=')
		pad++;
	if (n >= 2 && s[n - 2] == '=')
		pad++;
	*outlen = (size_t)rc - pad;
	out[*outlen] = '\0';
	return out;
}

char *imap_auth_plain(const char *user, const char *password)
{
	size_t ul = strlen(user), pl = strlen(password);
	size_t n = 1 + ul + 1 + pl;
	char *raw = xmalloc(n);
	char *out;

	raw[0] = '\0';
	memcpy(raw + 1, user, ul);
	raw[1 + ul] = '\0';
	memcpy(raw + 2 + ul, password, pl);
	out = imap_auth_b64_encode(raw, n);
	OPENSSL_cleanse(raw, n);
	free(raw);
	return out;
}

char *imap_auth_cram_md5(const char *user, const char *password, const char *challenge_b64)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	size_t clen;
	char *chal = imap_auth_b64_decode(challenge_b64, &clen);
	char *resp, *out;
	size_t ul = strlen(user);

	if (!chal || clen == 0) {
		free(chal);
		return NULL;
	}
	HMAC(EVP_md5(), password, (int)strlen(password), (unsigned char *)chal, clen, md, &mdlen);
	free(chal);
	resp = xmalloc(ul + 1 + 2 * mdlen + 1);
	memcpy(resp, user, ul);
	resp[ul] = ' ';
	for (unsigned i = 0; i < mdlen; i++) {
		static const char hex[] = "0123456789abcdef";
		resp[ul + 1 + 2 * i] = hex[md[i] >> 4];
		resp[ul + 2 + 2 * i] = hex[md[i] & 15];
	}
	resp[ul + 1 + 2 * mdlen] = '\0';
	out = imap_auth_b64_encode(resp, strlen(resp));
	OPENSSL_cleanse(resp, strlen(resp));
	free(resp);
	return out;
}

void imap_auth_wipe(char *s)
{
	if (!s)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}
