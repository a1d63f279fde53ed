/*
 * md5auth.c - PostgreSQL's md5 password scheme (stored hash and the salted
 * wire response) and a constant-time comparison for secrets. Pure
 * computation with OpenSSL's EVP MD5; no sockets, events, logs or globals.
 * Reference: PostgreSQL manual, "Password Authentication".
 */
#include "md5auth.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define MD5_LEN 16

static void hex_encode(const uint8_t *src, size_t len, char *dst)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		dst[2 * i] = digits[src[i] >> 4];
		dst[2 * i + 1] = digits[src[i] & 15];
	}
}

/*
 * out = "md5" + hex(md5(a || b)), NUL-terminated. False if OpenSSL cannot
 * do MD5 (out of memory, or a FIPS-only provider set-up).
 */
static bool md5_hex_concat(const void *a, size_t alen, const void *b, size_t blen,
			   char out[MD5_PASSWD_LEN + 1])
{
	uint8_t digest[MD5_LEN];
	bool ok = false;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx)
		return false;
	if (!EVP_DigestInit_ex(ctx, EVP_md5(), NULL) || !EVP_DigestUpdate(ctx, a, alen) ||
	    !EVP_DigestUpdate(ctx, b, blen) || !EVP_DigestFinal_ex(ctx, digest, NULL))
		goto fail;
	memcpy(out, "md5", 3);
	hex_encode(digest, MD5_LEN, out + 3);
	out[MD5_PASSWD_LEN] = '\0';
	ok = true;
fail:
	EVP_MD_CTX_free(ctx);
	return ok;
}

/* On an OpenSSL failure out becomes "", which md5_is_stored() rejects and
 * which matches no response, so a caller that misses it fails closed. */
void md5_stored_from_password(const char *password, const char *user, char *out)
{
	if (!md5_hex_concat(password, strlen(password), user, strlen(user), out))
		out[0] = '\0';
}

bool md5_is_stored(const char *s)
{
	if (!s || strncmp(s, "md5", 3) != 0)
		return false;
	for (size_t i = 3; i < MD5_PASSWD_LEN; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return s[MD5_PASSWD_LEN] == '\0';
}

/*
 * The client sends "md5" + hex(md5(hex_part_of_stored || salt)); PostgreSQL
 * compares the strings exactly, so only lowercase hex of the right length
 * passes. Lengths are public, so only the contents are compared in constant
 * time.
 */
bool md5_check_response(const char *stored, const uint8_t salt[4], const char *response)
{
	char expected[MD5_PASSWD_LEN + 1];
	bool ok;

	if (!md5_is_stored(stored) || !response || strlen(response) != MD5_PASSWD_LEN)
		return false;
	if (!md5_hex_concat(stored + 3, MD5_PASSWD_LEN - 3, salt, 4, expected))
		return false;
	ok = secret_equal(expected, response, MD5_PASSWD_LEN);
	OPENSSL_cleanse(expected, sizeof(expected));
	return ok;
}

bool secret_equal(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) == 0;
}
