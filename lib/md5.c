/*
 * MD5 and HMAC-MD5; see md5.h. Written from RFC 1321 section 3 and RFC 2104.
 */
#include "lib/md5.h"

#include <string.h>

/* K[i] = floor(|sin(i + 1)| * 2^32), RFC 1321 section 3.4. */
/* clang-format off */
static const uint32_t K[64] = {
	0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee,
	0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
	0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be,
	0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
	0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa,
	0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
	0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
	0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
	0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c,
	0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
	0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05,
	0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
	0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039,
	0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
	0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1,
	0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
};
/* clang-format on */

/* Left-rotation amounts, four per round. */
static const unsigned char S[4][4] = {
    {7, 12, 17, 22}, {5, 9, 14, 20}, {4, 11, 16, 23}, {6, 10, 15, 21}};

static uint32_t rotl(uint32_t x, unsigned n)
{
	return (x << n) | (x >> (32 - n));
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void block(uint32_t h[4], const unsigned char *p)
{
	uint32_t m[16];
	for (int i = 0; i < 16; i++)
		m[i] = le32(p + 4 * i);
	uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
	for (unsigned i = 0; i < 64; i++) {
		uint32_t f;
		unsigned g;
		switch (i / 16) {
		case 0:
			f = (b & c) | (~b & d);
			g = i;
			break;
		case 1:
			f = (b & d) | (c & ~d);
			g = (5 * i + 1) % 16;
			break;
		case 2:
			f = b ^ c ^ d;
			g = (3 * i + 5) % 16;
			break;
		default:
			f = c ^ (b | ~d);
			g = (7 * i) % 16;
			break;
		}
		uint32_t t = d;
		d = c;
		c = b;
		b = b + rotl(a + f + K[i] + m[g], S[i / 16][i % 4]);
		a = t;
	}
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
}

void md5_init(md5_t *c)
{
	c->h[0] = 0x67452301;
	c->h[1] = 0xefcdab89;
	c->h[2] = 0x98badcfe;
	c->h[3] = 0x10325476;
	c->len = 0;
}

void md5_update(md5_t *c, const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t have = (size_t)(c->len % 64);
	c->len += len;
	if (have) {
		size_t take = 64 - have < len ? 64 - have : len;
		memcpy(c->blk + have, p, take);
		p += take;
		len -= take;
		if (have + take < 64)
			return;
		block(c->h, c->blk);
	}
	for (; len >= 64; p += 64, len -= 64)
		block(c->h, p);
	memcpy(c->blk, p, len);
}

void md5_final(md5_t *c, unsigned char out[MD5_LEN])
{
	/* 0x80, zeros up to 56 mod 64, then the length in bits, little-endian. */
	unsigned char pad[72] = {0x80};
	uint64_t bits = c->len * 8;
	size_t have = (size_t)(c->len % 64);
	size_t n = (have < 56 ? 56 : 120) - have;
	for (int i = 0; i < 8; i++)
		pad[n + (size_t)i] = (unsigned char)(bits >> (8 * i));
	md5_update(c, pad, n + 8);
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 4; j++)
			out[4 * i + j] = (unsigned char)(c->h[i] >> (8 * j));
}

void md5(const void *data, size_t len, unsigned char out[MD5_LEN])
{
	md5_t c;
	md5_init(&c);
	md5_update(&c, data, len);
	md5_final(&c, out);
	explicit_bzero(&c, sizeof(c)); /* data may be a password (hmac_md5()) */
}

/* MD5((k XOR x-repeated) || data): one of HMAC's two passes. */
static void keyed_pass(const unsigned char k[64], unsigned char x, const void *data, size_t len,
		       unsigned char out[MD5_LEN])
{
	unsigned char pad[64];
	md5_t c;
	for (int i = 0; i < 64; i++)
		pad[i] = k[i] ^ x;
	md5_init(&c);
	md5_update(&c, pad, sizeof(pad));
	md5_update(&c, data, len);
	md5_final(&c, out);
	/* Both hold the key (a password): it must not linger on the stack. */
	explicit_bzero(pad, sizeof(pad));
	explicit_bzero(&c, sizeof(c));
}

void hmac_md5(const void *key, size_t key_len, const void *msg, size_t msg_len,
	      unsigned char out[MD5_LEN])
{
	unsigned char k[64] = {0}, inner[MD5_LEN];
	if (key_len > sizeof(k))
		md5(key, key_len, k);
	else
		memcpy(k, key, key_len);
	keyed_pass(k, 0x36, msg, msg_len, inner);
	keyed_pass(k, 0x5c, inner, sizeof(inner), out);
	explicit_bzero(k, sizeof(k));
}
