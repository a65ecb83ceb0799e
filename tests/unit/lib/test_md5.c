/*
 * MD5 and HMAC-MD5: the RFC 1321 test suite, the RFC 2202 HMAC-MD5 cases, the
 * RFC 2195 CRAM-MD5 example, and agreement with OpenSSL for every length up
 * to a few blocks, fed whole and in uneven pieces.
 */
#include "testutil.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "lib/md5.h"

static void hex(const unsigned char *d, char out[2 * MD5_LEN + 1])
{
	for (int i = 0; i < MD5_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void check_md5(const char *s, const char *want)
{
	unsigned char d[MD5_LEN];
	char h[2 * MD5_LEN + 1];
	md5(s, strlen(s), d);
	hex(d, h);
	CHECK(strcmp(h, want) == 0);
	if (strcmp(h, want) != 0)
		fprintf(stderr, "  md5(\"%s\") = %s, want %s\n", s, h, want);
}

static void check_hmac(const void *k, size_t kl, const void *m, size_t ml, const char *want)
{
	unsigned char d[MD5_LEN];
	char h[2 * MD5_LEN + 1];
	hmac_md5(k, kl, m, ml, d);
	hex(d, h);
	CHECK(strcmp(h, want) == 0);
	if (strcmp(h, want) != 0)
		fprintf(stderr, "  hmac_md5 = %s, want %s\n", h, want);
}

static void test_rfc1321(void)
{
	check_md5("", "d41d8cd98f00b204e9800998ecf8427e");
	check_md5("a", "0cc175b9c0f1b6a831c399e269772661");
	check_md5("abc", "900150983cd24fb0d6963f7d28e17f72");
	check_md5("message digest", "f96b697d7cb7938d525a2f31aaf161d0");
	check_md5("abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b");
	check_md5("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
		  "d174ab98d277d9f5a5611c2c9f419d9f");
	check_md5("1234567890123456789012345678901234567890"
		  "1234567890123456789012345678901234567890",
		  "57edf4a22be3c955ac49da2e2107b67a");
}

static void test_hmac(void)
{
	unsigned char k[80], m[50];
	memset(k, 0x0b, 16);
	check_hmac(k, 16, "Hi There", 8, "9294727a3638bb1c13f48ef8158bfc9d");
	check_hmac("Jefe", 4, "what do ya want for nothing?", 28,
		   "750c783e6ab0b503eaa86e310a5db738");
	memset(k, 0xaa, 16);
	memset(m, 0xdd, 50);
	check_hmac(k, 16, m, 50, "56be34521d144c88dbb8c733f0e8b3f6");
	/* A key longer than a block is hashed first. */
	memset(k, 0xaa, 80);
	check_hmac(k, 80, "Test Using Larger Than Block-Size Key - Hash Key First", 54,
		   "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd");
	/* RFC 2195: the CRAM-MD5 digest for user tim. */
	const char *chal = "<1896.697170952@postoffice.reston.mci.net>";
	check_hmac("tanstaaftanstaaf", 16, chal, strlen(chal), "b913a602c7eda7a495b4e6e7334d3890");
}

/* Every length from 0 to 300 (all the padding cases), whole and in pieces of
 * 1, 7, 63 and 64 bytes, against OpenSSL; HMAC with keys around the block size. */
static void test_against_openssl(void)
{
	unsigned char data[300], want[EVP_MAX_MD_SIZE], got[MD5_LEN];
	unsigned int wl = 0;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 131 + 7);
	static const size_t pieces[] = {1, 7, 63, 64, 300};
	int bad = 0;
	for (size_t len = 0; len <= sizeof(data); len++) {
		EVP_Digest(data, len, want, &wl, EVP_md5(), NULL);
		for (size_t p = 0; p < sizeof(pieces) / sizeof(pieces[0]); p++) {
			md5_t c;
			md5_init(&c);
			for (size_t off = 0; off < len; off += pieces[p])
				md5_update(&c, data + off,
					   len - off < pieces[p] ? len - off : pieces[p]);
			md5_final(&c, got);
			bad += memcmp(got, want, MD5_LEN) != 0;
		}
		size_t kl = len % 130;
		HMAC(EVP_md5(), data + 1, (int)kl, data, len, want, &wl);
		hmac_md5(data + 1, kl, data, len, got);
		bad += memcmp(got, want, MD5_LEN) != 0;
	}
	CHECK_EQ_INT(bad, 0);
}

int main(void)
{
	test_rfc1321();
	test_hmac();
	test_against_openssl();
	return test_done("test_md5");
}
