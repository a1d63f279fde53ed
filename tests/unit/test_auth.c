/*
 * test_auth.c - unit tests for scram.c and md5auth.c: RFC 7677's exchange
 * byte for byte, verifiers made by a real PostgreSQL 15 (ASCII and SASLprep
 * cases), MD5 known answers, malformed SCRAM messages, verifier parsing and
 * base64. The client side of each exchange is written here on OpenSSL alone,
 * so berth's server code is checked against an independent implementation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "md5auth.h"
#include "scram.h"

/* ---- an independent SCRAM-SHA-256 client ------------------------------- */

/* The client nonce of RFC 5802's example, reused where the value is arbitrary. */
#define CNONCE "fyko+d2lbbFgONRv9qkxdawL"
#define CLIENT_FIRST "n,,n=,r=" CNONCE /* what libpq sends: empty user name */

static const uint8_t server_nonce_raw[SCRAM_NONCE_RAW] = {
	0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
	0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11,
};
/* base64 of server_nonce_raw, computed by hand: 00 01 02 -> AAEC, ... */
#define SNONCE "AAECAwQFBgcICQoLDA0ODxAR"

/* Base64 through OpenSSL, not through the code under test. */
static void ref_b64(const uint8_t *src, size_t len, char *dst)
{
	EVP_EncodeBlock((unsigned char *)dst, src, (int)len);
}

struct client_final {
	char msg[2048];       /* client-final-message */
	char server_v[80];    /* the server-final-message the client expects */
};

/*
 * Answer server_first for a client whose client-first-message-bare was
 * `bare`, with a password already SASLprep'd the way libpq would. `cbind` is
 * the c= value, `ext` is inserted before ",p=" (empty or ",x=...").
 */
static void client_answer(const char *bare, const char *server_first, const char *password,
			  const char *cbind, const char *ext, struct client_final *cf)
{
	char nonce[256], salt_b64[128];
	int iterations = 0;
	const char *s = strstr(server_first, ",s=");
	const char *i = strstr(server_first, ",i=");
	assert_non_null(s);
	assert_non_null(i);
	assert_true(strncmp(server_first, "r=", 2) == 0);
	size_t nlen = (size_t)(s - server_first - 2);
	size_t slen = (size_t)(i - s - 3);
	assert_true(nlen < sizeof(nonce) && slen < sizeof(salt_b64));
	memcpy(nonce, server_first + 2, nlen);
	nonce[nlen] = '\0';
	memcpy(salt_b64, s + 3, slen);
	salt_b64[slen] = '\0';
	iterations = atoi(i + 3);
	assert_true(iterations > 0);

	uint8_t salt[128];
	int salt_len = EVP_DecodeBlock(salt, (const unsigned char *)salt_b64, (int)slen);
	assert_true(salt_len > 0);
	/* EVP_DecodeBlock counts padding bytes as output; drop them. */
	if (slen >= 1 && salt_b64[slen - 1] == '=')
		salt_len--;
	if (slen >= 2 && salt_b64[slen - 2] == '=')
		salt_len--;

	uint8_t salted[32], client_key[32], stored_key[32], server_key[32];
	uint8_t client_sig[32], server_sig[32], proof[32];
	assert_int_equal(PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, salt_len,
					   iterations, EVP_sha256(), 32, salted),
			 1);
	assert_non_null(HMAC(EVP_sha256(), salted, 32, (const uint8_t *)"Client Key", 10,
			     client_key, NULL));
	assert_int_equal(EVP_Digest(client_key, 32, stored_key, NULL, EVP_sha256(), NULL), 1);
	assert_non_null(HMAC(EVP_sha256(), salted, 32, (const uint8_t *)"Server Key", 10,
			     server_key, NULL));

	char without_proof[1024];
	int n = snprintf(without_proof, sizeof(without_proof), "c=%s,r=%s%s", cbind, nonce, ext);
	assert_true(n > 0 && (size_t)n < sizeof(without_proof));
	char auth[2048];
	n = snprintf(auth, sizeof(auth), "%s,%s,%s", bare, server_first, without_proof);
	assert_true(n > 0 && (size_t)n < sizeof(auth));

	assert_non_null(HMAC(EVP_sha256(), stored_key, 32, (const uint8_t *)auth, (size_t)n,
			     client_sig, NULL));
	for (int k = 0; k < 32; k++)
		proof[k] = client_key[k] ^ client_sig[k];
	assert_non_null(HMAC(EVP_sha256(), server_key, 32, (const uint8_t *)auth, (size_t)n,
			     server_sig, NULL));

	char proof_b64[64], sig_b64[64];
	ref_b64(proof, 32, proof_b64);
	ref_b64(server_sig, 32, sig_b64);
	n = snprintf(cf->msg, sizeof(cf->msg), "%s,p=%s", without_proof, proof_b64);
	assert_true(n > 0 && (size_t)n < sizeof(cf->msg));
	snprintf(cf->server_v, sizeof(cf->server_v), "v=%s", sig_b64);
}

/* berth's first step on CLIENT_FIRST; checks the server-first it sends. */
static void server_first_step(struct scram_state *st, const struct scram_secret *sec,
			      char *first, size_t cap)
{
	size_t outlen = 0;
	assert_int_equal(scram_server_first(st, sec, NULL, CLIENT_FIRST, strlen(CLIENT_FIRST),
					    server_nonce_raw, first, cap, &outlen),
			 SCRAM_CONTINUE);
	assert_int_equal(outlen, strlen(first));
	char salt_b64[128], expect[256];
	ref_b64(sec->salt, sec->salt_len, salt_b64);
	snprintf(expect, sizeof(expect), "r=" CNONCE SNONCE ",s=%s,i=%d", salt_b64, sec->iterations);
	assert_string_equal(first, expect);
	assert_string_equal(st->cbind_b64, "biws");
}

/* A whole exchange as libpq runs it; returns what the final step said. */
static enum scram_result run_exchange(const struct scram_secret *sec, const char *client_password)
{
	struct scram_state st;
	struct client_final cf;
	char first[256], out[256];
	size_t outlen = 0;

	server_first_step(&st, sec, first, sizeof(first));
	client_answer(CLIENT_FIRST + 3, first, client_password, "biws", "", &cf);
	memset(out, 0, sizeof(out));
	enum scram_result res = scram_server_final(&st, sec, cf.msg, strlen(cf.msg), out,
						   sizeof(out), &outlen);
	if (res == SCRAM_DONE) {
		assert_string_equal(out, cf.server_v);
		assert_int_equal(outlen, strlen(cf.server_v));
	} else {
		assert_int_equal(out[0], 0); /* nothing written unless DONE */
	}
	return res;
}

/* A cheap secret for tests about message syntax, not about PBKDF2. */
static void quick_secret(struct scram_secret *sec)
{
	static const uint8_t salt[16] = {0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37,
					 0x38, 0x39, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66};
	assert_true(scram_secret_from_password("pw", salt, sizeof(salt), 16, sec));
}

/* ---- RFC 7677 section 3 ------------------------------------------------- */

#define RFC_CLIENT_FIRST "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
#define RFC_SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_NONCE "rOprNGfwEbeRWgbNEkqO" RFC_SNONCE
#define RFC_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_SERVER_FIRST "r=" RFC_NONCE ",s=" RFC_SALT ",i=4096"
#define RFC_CLIENT_FINAL "c=biws,r=" RFC_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

static void test_rfc7677_exchange(void **state)
{
	(void)state;
	uint8_t salt[16];
	assert_int_equal(b64_decode(RFC_SALT, strlen(RFC_SALT), salt, sizeof(salt)), 16);
	struct scram_secret sec;
	assert_true(scram_secret_from_password("pencil", salt, sizeof(salt), 4096, &sec));

	struct scram_state st;
	char out[256];
	size_t outlen = 0;
	assert_int_equal(scram_server_first_with_nonce(&st, &sec, RFC_CLIENT_FIRST,
						       strlen(RFC_CLIENT_FIRST), RFC_SNONCE, out,
						       sizeof(out), &outlen),
			 SCRAM_CONTINUE);
	assert_string_equal(out, RFC_SERVER_FIRST);
	assert_int_equal(outlen, strlen(RFC_SERVER_FIRST));

	/* Our test client reproduces the RFC's client-final, so it can be trusted below. */
	struct client_final cf;
	client_answer("n=user,r=rOprNGfwEbeRWgbNEkqO", out, "pencil", "biws", "", &cf);
	assert_string_equal(cf.msg, RFC_CLIENT_FINAL);
	assert_string_equal(cf.server_v, RFC_SERVER_FINAL);

	assert_int_equal(scram_server_final(&st, &sec, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL),
					    out, sizeof(out), &outlen),
			 SCRAM_DONE);
	assert_string_equal(out, RFC_SERVER_FINAL);
	assert_int_equal(outlen, strlen(RFC_SERVER_FINAL));
}

static void test_rfc7677_wrong_password(void **state)
{
	(void)state;
	uint8_t salt[16];
	assert_int_equal(b64_decode(RFC_SALT, strlen(RFC_SALT), salt, sizeof(salt)), 16);
	struct scram_secret sec;
	assert_true(scram_secret_from_password("pencil2", salt, sizeof(salt), 4096, &sec));

	struct scram_state st;
	char out[256];
	size_t outlen = 0;
	assert_int_equal(scram_server_first_with_nonce(&st, &sec, RFC_CLIENT_FIRST,
						       strlen(RFC_CLIENT_FIRST), RFC_SNONCE, out,
						       sizeof(out), &outlen),
			 SCRAM_CONTINUE);
	assert_int_equal(scram_server_final(&st, &sec, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL),
					    out, sizeof(out), &outlen),
			 SCRAM_BAD_PROOF);
}

/* scram_server_first encodes the raw nonce bytes itself; "y,," echoes as "eSws". */
static void test_server_first_raw_nonce_and_y_flag(void **state)
{
	(void)state;
	struct scram_secret sec;
	quick_secret(&sec);
	assert_int_equal(run_exchange(&sec, "pw"), SCRAM_DONE);

	static const char first_y[] = "y,,n=,r=" CNONCE;
	struct scram_state st;
	struct client_final cf;
	char first[256], out[256];
	size_t outlen;
	assert_int_equal(scram_server_first(&st, &sec, NULL, first_y, strlen(first_y), server_nonce_raw,
					    first, sizeof(first), &outlen),
			 SCRAM_CONTINUE);
	assert_string_equal(st.cbind_b64, "eSws");
	client_answer(first_y + 3, first, "pw", "eSws", "", &cf);
	assert_int_equal(scram_server_final(&st, &sec, cf.msg, strlen(cf.msg), out, sizeof(out),
					    &outlen),
			 SCRAM_DONE);
	assert_string_equal(out, cf.server_v);

	/* The same client claiming "n,," in c= is a channel-binding mismatch. */
	assert_int_equal(scram_server_first(&st, &sec, NULL, first_y, strlen(first_y), server_nonce_raw,
					    first, sizeof(first), &outlen),
			 SCRAM_CONTINUE);
	client_answer(first_y + 3, first, "pw", "biws", "", &cf);
	assert_int_equal(scram_server_final(&st, &sec, cf.msg, strlen(cf.msg), out, sizeof(out),
					    &outlen),
			 SCRAM_MALFORMED);
}

/*
 * SCRAM-SHA-256-PLUS: c= must carry the gs2 header and the end-point hash
 * berth computed for this connection; a client bound to another certificate
 * (a TLS session that ends elsewhere) fails, whatever its password.
 */
static void test_channel_binding(void **state)
{
	(void)state;
	struct scram_secret sec;
	quick_secret(&sec);
	uint8_t hash[32], other[32];
	for (int i = 0; i < 32; i++) {
		hash[i] = (uint8_t)(i * 7 + 1);
		other[i] = (uint8_t)(i * 7 + 2);
	}
	static const char first_p[] = "p=tls-server-end-point,,n=,r=" CNONCE;
	static const char gs2[] = "p=tls-server-end-point,,";
	struct scram_binding plus = {true, true, hash, sizeof(hash)};
	struct scram_state st;
	struct client_final cf;
	char first[256], out[256], cbind[256];
	uint8_t raw[64];
	size_t outlen;

	for (int round = 0; round < 2; round++) {
		memcpy(raw, gs2, strlen(gs2));
		memcpy(raw + strlen(gs2), round == 0 ? hash : other, 32);
		ref_b64(raw, strlen(gs2) + 32, cbind);
		assert_int_equal(scram_server_first(&st, &sec, &plus, first_p, strlen(first_p),
						    server_nonce_raw, first, sizeof(first), &outlen),
				 SCRAM_CONTINUE);
		client_answer(first_p + strlen(gs2), first, "pw", cbind, "", &cf);
		memset(out, 0, sizeof(out));
		assert_int_equal(scram_server_final(&st, &sec, cf.msg, strlen(cf.msg), out,
						    sizeof(out), &outlen),
				 round == 0 ? SCRAM_DONE : SCRAM_CB_MISMATCH);
		if (round == 0)
			assert_string_equal(out, cf.server_v);
		else
			assert_int_equal(out[0], 0);
	}
	/* -PLUS chosen: only p=tls-server-end-point will do. */
	static const char *const bad_plus[] = {"n,,n=,r=" CNONCE, "y,,n=,r=" CNONCE,
						"p=tls-unique,,n=,r=" CNONCE,
						"p=tls-server-end-point,a=u,n=,r=" CNONCE};
	for (size_t i = 0; i < sizeof(bad_plus) / sizeof(bad_plus[0]); i++)
		assert_int_equal(scram_server_first(&st, &sec, &plus, bad_plus[i], strlen(bad_plus[i]),
						    server_nonce_raw, first, sizeof(first), &outlen),
				 SCRAM_MALFORMED);

	/* -PLUS offered, plain SCRAM chosen: "n" is fine, "y" is a downgrade, "p" malformed. */
	struct scram_binding offered = {true, false, hash, sizeof(hash)};
	static const char first_n[] = "n,,n=,r=" CNONCE;
	static const char first_y[] = "y,,n=,r=" CNONCE;
	assert_int_equal(scram_server_first(&st, &sec, &offered, first_n, strlen(first_n),
					    server_nonce_raw, first, sizeof(first), &outlen),
			 SCRAM_CONTINUE);
	assert_string_equal(st.cbind_b64, "biws");
	assert_int_equal(scram_server_first(&st, &sec, &offered, first_y, strlen(first_y),
					    server_nonce_raw, first, sizeof(first), &outlen),
			 SCRAM_CB_DOWNGRADE);
	assert_int_equal(scram_server_first(&st, &sec, &offered, first_p, strlen(first_p),
					    server_nonce_raw, first, sizeof(first), &outlen),
			 SCRAM_MALFORMED);
}

/* Extensions after the nonce (client-first) and before the proof
 * (client-final) are ignored but signed, as PostgreSQL does. */
static void test_extensions_ignored(void **state)
{
	(void)state;
	struct scram_secret sec;
	quick_secret(&sec);
	static const char first_ext[] = "n,,n=someone,r=" CNONCE ",x=ext,Y=";
	struct scram_state st;
	struct client_final cf;
	char first[256], out[256];
	size_t outlen;
	assert_int_equal(scram_server_first(&st, &sec, NULL, first_ext, strlen(first_ext),
					    server_nonce_raw, first, sizeof(first), &outlen),
			 SCRAM_CONTINUE);
	assert_string_equal(st.client_first_bare, first_ext + 3);
	client_answer(first_ext + 3, first, "pw", "biws", ",x=1,z=two", &cf);
	assert_int_equal(scram_server_final(&st, &sec, cf.msg, strlen(cf.msg), out, sizeof(out),
					    &outlen),
			 SCRAM_DONE);
	assert_string_equal(out, cf.server_v);
}

/* ---- verifiers made by PostgreSQL 15 ------------------------------------ */

/*
 * Made with PostgreSQL 15 (Debian 12 package): initdb -E UTF8 in a temp dir,
 * postgres as an unprivileged user on a unix socket, then
 *   SET password_encryption = 'scram-sha-256';
 *   CREATE ROLE <role> LOGIN PASSWORD E'<password>';
 *   SELECT rolpassword FROM pg_authid WHERE rolname = '<role>';
 * scram_badutf8 was created from a database with ENCODING 'SQL_ASCII' so
 * that the invalid UTF-8 bytes reached the server unchanged.
 *
 * client_password is what libpq's SASLprep hands to PBKDF2 (the prepared
 * string, or the raw bytes when PostgreSQL's prep refuses the password);
 * wrong is the nearest miss: the raw bytes when prep changes them, or what a
 * stock RFC 4013 SASLprep would produce when PostgreSQL falls back to raw.
 */
struct pg_case {
	const char *role;
	const char *verifier;
	const char *password;
	const char *client_password;
	const char *wrong;
};

static const struct pg_case pg_cases[] = {
	{"scram_ascii",
	 "SCRAM-SHA-256$4096:ZPQTsZRph5fyhhAeMwU+wg==$P1DDD5En8CzHTXqR44uFzmaWmUs5MgOWp0ADpgObctM=:"
	 "rQf+pUQFzDffbF61eC7Arz81o8LIUHnrJNQ+IOKESQQ=",
	 "correct horse battery staple", "correct horse battery staple",
	 "correct horse battery stapl"},
	/* ASCII is never prepped, even with a control character. */
	{"scram_tab",
	 "SCRAM-SHA-256$4096:UmrskubOMxw6hDnC2dRWxA==$yXYNttaJvzUjYDnZaBfPWJ52q8HD6dai3R47OHZtElI=:"
	 "u3HFAf5Jee69/b9HmT5fEvLVtz8/w25kFoWi552M8UI=",
	 "a\tb", "a\tb", "a b"},
	/* U+00A0 NO-BREAK SPACE maps to U+0020. */
	{"scram_nbsp",
	 "SCRAM-SHA-256$4096:+SYLAxrlMe+LS0LQEPquqQ==$TM/BxY5HRZv08OwplchyabYcuMc8t0rtcrevWE1YyHY=:"
	 "2PmW6njwDE/HpMYhRGIyN3bv8tSdPAfj7TcfjN5T6xQ=",
	 "pass\xc2\xa0word", "pass word", "pass\xc2\xa0word"},
	/* U+00AD SOFT HYPHEN maps to nothing (RFC 4013 section 3, example 1). */
	{"scram_shy",
	 "SCRAM-SHA-256$4096:zn9OzEgvhqwOPK6vYSrUEw==$vxE91ZIroQq7eJbM+v/FU0X3mZ7EUZa1naTuLv+Mg9A=:"
	 "tra1PtrkK2VbsAtyijd50L4nfm1he4Iau8tdBnzDJQg=",
	 "I\xc2\xadX", "IX", "I\xc2\xadX"},
	/* U+2168 ROMAN NUMERAL NINE, NFKC "IX" (RFC 4013 section 3, example 5). */
	{"scram_roman",
	 "SCRAM-SHA-256$4096:cesvzLD4WGCGy11TkN6vkw==$c5AgjwpsBkIf8qmmh5c48oqaT76fyg3x3aiANyqWEgE=:"
	 "lm/b/2uGXj/i1l7SVB9CMgb9jO0Enkq+nqARzLnmfnE=",
	 "\xe2\x85\xa8", "IX", "\xe2\x85\xa8"},
	/* U+0340 is prohibited (C.8); PostgreSQL checks before NFKC, so raw bytes.
	 * A stock SASLprep normalises first and gives "\u00e0b". */
	{"scram_u0340",
	 "SCRAM-SHA-256$4096:rZraTNF5a1m6aeuJ26OOWA==$OvDtF7TvJslypqQw7bYJNLUI4imopkC/APpkdKURdxg=:"
	 "HiVPhoW4b0Tn3RqrRcfET670Adj4Q+OvS0rQpb01xD8=",
	 "a\xcd\x80" "b", "a\xcd\x80" "b", "\xc3\xa0" "b"},
	/* U+0221 is unassigned in Unicode 3.2: PostgreSQL refuses it, so the
	 * NO-BREAK SPACE is not mapped either. */
	{"scram_unassigned",
	 "SCRAM-SHA-256$4096:qkVOaEUHUZQG/VG01CBpGA==$iL/JCrIEf85akb84QjEofhPQZmq//59WHC1f7Cj8d5w=:"
	 "h8jbTGARf3fPXxeHxMyh79kVkFrPJWCgb//6VN8DfOE=",
	 "a\xc2\xa0" "b\xc8\xa1", "a\xc2\xa0" "b\xc8\xa1", "a b\xc8\xa1"},
	/* Hebrew ALEF (RandALCat) with a Latin letter fails the bidi rule. */
	{"scram_bidi",
	 "SCRAM-SHA-256$4096:nmFAKYlKcvT3MUaaQ5RVCw==$y5bUS+j1Cz3vEPpTD7s0E6xD2c11jZwnF+67C1Yq6b8=:"
	 "+xL7a7qvZcaJ7vndLq2WHrE62lwSz/BFdNEkJE/L0YU=",
	 "\xd7\x90\xc2\xa0" "a", "\xd7\x90\xc2\xa0" "a", "\xd7\x90 a"},
	/* U+FDFA's NFKC form is 18 code points (UnicodeData.txt: <isolated> 0635
	 * 0644 0649 0020 0627 0644 0644 0647 0020 0639 0644 064A 0647 0020 0648
	 * 0633 0644 0645), the longest expansion there is. */
	{"scram_fdfa",
	 "SCRAM-SHA-256$4096:57lstplt1eoF/yTL3kR0PA==$wJeDIXqBr/NDZriqhUfT5W+aZ1hraEGVXU445CvPJXI=:"
	 "35XQrB1Si+yjJOtaCmbCfB7oo9hKG/7nduh33Ipr/lE=",
	 "\xef\xb7\xba",
	 "\xd8\xb5\xd9\x84\xd9\x89 \xd8\xa7\xd9\x84\xd9\x84\xd9\x87 "
	 "\xd8\xb9\xd9\x84\xd9\x8a\xd9\x87 \xd9\x88\xd8\xb3\xd9\x84\xd9\x85",
	 "\xef\xb7\xba"},
	/* Maps to the empty string, which PostgreSQL refuses: raw bytes. */
	{"scram_shyonly",
	 "SCRAM-SHA-256$4096:I1k74Yq/ZEbXM+TNaRYVgA==$xwjT1+K7YoTCE8RPWTQc9FLEGNunhcBCU9xYrhGjRV8=:"
	 "YW11+6KNhwuRmCEIrYhEa63za9h6ZnC5+315HrOSbEo=",
	 "\xc2\xad", "\xc2\xad", ""},
	/* Not UTF-8 at all: raw bytes. */
	{"scram_badutf8",
	 "SCRAM-SHA-256$4096:Lq7gjxE+lX2CMhA3/FV8jw==$jeFuXkuDea73RxcfHcubizXT4pT9St48GhCwRJWqN4U=:"
	 "DBgzFcT2mAa+5F4qiXIQYtpOhyFXhiTWPzmwiL3YMrg=",
	 "\xff\xfepass\xc3", "\xff\xfepass\xc3", "\xff\xfepass"},
};

static void check_pg_case(const struct pg_case *pc)
{
	struct scram_secret parsed, derived, from_client;
	print_message("  role %s\n", pc->role);

	assert_true(scram_is_verifier(pc->verifier));
	assert_true(scram_secret_parse(pc->verifier, &parsed));
	assert_int_equal(parsed.iterations, 4096);
	assert_int_equal(parsed.salt_len, 16);

	/* Same salt and iterations, berth's derivation: same keys as PostgreSQL. */
	assert_true(scram_secret_from_password(pc->password, parsed.salt, parsed.salt_len,
					       parsed.iterations, &derived));
	assert_int_equal(derived.iterations, parsed.iterations);
	assert_int_equal(derived.salt_len, parsed.salt_len);
	assert_memory_equal(derived.salt, parsed.salt, parsed.salt_len);
	assert_memory_equal(derived.stored_key, parsed.stored_key, SCRAM_KEY_LEN);
	assert_memory_equal(derived.server_key, parsed.server_key, SCRAM_KEY_LEN);

	/* Re-encoded, the derived secret is PostgreSQL's text exactly. */
	char salt_b64[32], stored_b64[48], server_b64[48], text[256];
	assert_int_equal(b64_encode(derived.salt, derived.salt_len, salt_b64, sizeof(salt_b64)), 24);
	assert_int_equal(b64_encode(derived.stored_key, SCRAM_KEY_LEN, stored_b64,
				    sizeof(stored_b64)),
			 44);
	assert_int_equal(b64_encode(derived.server_key, SCRAM_KEY_LEN, server_b64,
				    sizeof(server_b64)),
			 44);
	snprintf(text, sizeof(text), "SCRAM-SHA-256$%d:%s$%s:%s", derived.iterations, salt_b64,
		 stored_b64, server_b64);
	assert_string_equal(text, pc->verifier);

	/* Whatever libpq feeds PBKDF2 is a fixed point of berth's SASLprep. */
	assert_true(scram_secret_from_password(pc->client_password, parsed.salt, parsed.salt_len,
					       parsed.iterations, &from_client));
	assert_memory_equal(from_client.stored_key, parsed.stored_key, SCRAM_KEY_LEN);

	assert_int_equal(run_exchange(&parsed, pc->client_password), SCRAM_DONE);
	assert_int_equal(run_exchange(&parsed, pc->wrong), SCRAM_BAD_PROOF);
}

static void test_pg_verifier_ascii(void **state)
{
	(void)state;
	check_pg_case(&pg_cases[0]);
	check_pg_case(&pg_cases[1]);
}

static void test_pg_verifier_saslprep(void **state)
{
	(void)state;
	for (size_t i = 2; i < sizeof(pg_cases) / sizeof(pg_cases[0]); i++)
		check_pg_case(&pg_cases[i]);
}

/*
 * A long non-ASCII password (PostgreSQL has no length limit on the prep):
 *   DO $$ BEGIN EXECUTE format('CREATE ROLE scram_long LOGIN PASSWORD %L',
 *                              repeat(E'\u00e9\u00a0', 500)); END $$;
 */
static void test_pg_verifier_long(void **state)
{
	(void)state;
	static char password[500 * 4 + 1], prepped[500 * 3 + 1], raw_nbsp_last[500 * 3 + 2];
	for (size_t i = 0; i < 500; i++) {
		memcpy(password + 4 * i, "\xc3\xa9\xc2\xa0", 4);
		memcpy(prepped + 3 * i, "\xc3\xa9 ", 3);
	}
	password[500 * 4] = '\0';
	prepped[500 * 3] = '\0';
	/* the near miss: the last NO-BREAK SPACE left unmapped */
	memcpy(raw_nbsp_last, prepped, 500 * 3 - 1);
	memcpy(raw_nbsp_last + 500 * 3 - 1, "\xc2\xa0", 3);
	const struct pg_case pc = {
		"scram_long",
		"SCRAM-SHA-256$4096:ijSxfq2gjeNuFVQiz7FA5g==$4cGcnWY7ZMDAeo38Bfn82jmtal1gT3rXTn8S339Nqeg=:"
		"ol488vHyt2Hk7SjWUO9pvCQllNsSFL8BPEagnrE2ipo=",
		password,
		prepped,
		raw_nbsp_last,
	};
	check_pg_case(&pc);
}

/* RFC 4013 section 3, example 4: U+00AA FEMININE ORDINAL INDICATOR -> "a". */
static void test_saslprep_rfc4013_nfkc(void **state)
{
	(void)state;
	static const uint8_t salt[4] = {1, 2, 3, 4};
	struct scram_secret a, b, c;
	assert_true(scram_secret_from_password("\xc2\xaa", salt, sizeof(salt), 2, &a));
	assert_true(scram_secret_from_password("a", salt, sizeof(salt), 2, &b));
	assert_true(scram_secret_from_password("A", salt, sizeof(salt), 2, &c));
	assert_memory_equal(a.stored_key, b.stored_key, SCRAM_KEY_LEN);
	assert_memory_equal(a.server_key, b.server_key, SCRAM_KEY_LEN);
	/* case is preserved (example 3) */
	assert_memory_not_equal(b.stored_key, c.stored_key, SCRAM_KEY_LEN);
}

static void test_secret_from_password_bad_args(void **state)
{
	(void)state;
	uint8_t salt[SCRAM_MAX_SALT + 1] = {0};
	struct scram_secret sec;
	assert_false(scram_secret_from_password("pw", salt, 0, 4096, &sec));
	assert_false(scram_secret_from_password("pw", salt, SCRAM_MAX_SALT + 1, 4096, &sec));
	assert_false(scram_secret_from_password("pw", salt, 16, 0, &sec));
	assert_false(scram_secret_from_password("pw", salt, 16, -1, &sec));
	assert_true(scram_secret_from_password("pw", salt, SCRAM_MAX_SALT, 1, &sec));
	assert_int_equal(sec.salt_len, SCRAM_MAX_SALT);
}

/* ---- verifier parsing --------------------------------------------------- */

#define GOOD_SALT "ZPQTsZRph5fyhhAeMwU+wg=="
#define GOOD_KEY1 "P1DDD5En8CzHTXqR44uFzmaWmUs5MgOWp0ADpgObctM="
#define GOOD_KEY2 "rQf+pUQFzDffbF61eC7Arz81o8LIUHnrJNQ+IOKESQQ="
#define GOOD_VERIFIER "SCRAM-SHA-256$4096:" GOOD_SALT "$" GOOD_KEY1 ":" GOOD_KEY2

static void test_verifier_parse_rejects(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",
		"SCRAM-SHA-256",
		"SCRAM-SHA-256$",
		"scram-sha-256$4096:" GOOD_SALT "$" GOOD_KEY1 ":" GOOD_KEY2,
		"SCRAM-SHA-1$4096:" GOOD_SALT "$" GOOD_KEY1 ":" GOOD_KEY2,
		"md594f6dfa9ce48919dd181f96e6e406c5f",
		/* iterations */
		"SCRAM-SHA-256$:" GOOD_SALT "$" GOOD_KEY1 ":" GOOD_KEY2,
		"SCRAM-SHA-256$0:" GOOD_SALT "$" GOOD_KEY1 ":" GOOD_KEY2,
		"SCRAM-SHA-256$-1:" GOOD_SALT "$" GOOD_KEY1 ":" GOOD_KEY2,
		"SCRAM-SHA-256$+4096:" GOOD_SALT "$" GOOD_KEY1 ":" GOOD_KEY2,
		"SCRAM-SHA-256$ 4096:" GOOD_SALT "$" GOOD_KEY1 ":" GOOD_KEY2,
		"SCRAM-SHA-256$4096x:" GOOD_SALT "$" GOOD_KEY1 ":" GOOD_KEY2,
		"SCRAM-SHA-256$2147483648:" GOOD_SALT "$" GOOD_KEY1 ":" GOOD_KEY2,
		"SCRAM-SHA-256$99999999999999999999999:" GOOD_SALT "$" GOOD_KEY1 ":" GOOD_KEY2,
		"SCRAM-SHA-256$4096$" GOOD_SALT "$" GOOD_KEY1 ":" GOOD_KEY2,
		/* salt */
		"SCRAM-SHA-256$4096:$" GOOD_KEY1 ":" GOOD_KEY2,
		"SCRAM-SHA-256$4096:ZPQTsZRph5fyhhAeMwU+wg$" GOOD_KEY1 ":" GOOD_KEY2,
		"SCRAM-SHA-256$4096:ZPQT!ZRph5fyhhAeMwU+wg==$" GOOD_KEY1 ":" GOOD_KEY2,
		"SCRAM-SHA-256$4096:" GOOD_SALT ":" GOOD_KEY1 ":" GOOD_KEY2,
		/* keys */
		"SCRAM-SHA-256$4096:" GOOD_SALT "$" GOOD_KEY1,
		"SCRAM-SHA-256$4096:" GOOD_SALT "$" GOOD_KEY1 ":",
		"SCRAM-SHA-256$4096:" GOOD_SALT "$:" GOOD_KEY2,
		"SCRAM-SHA-256$4096:" GOOD_SALT "$" GOOD_KEY1 GOOD_KEY2,
		"SCRAM-SHA-256$4096:" GOOD_SALT "$" GOOD_KEY1 "$" GOOD_KEY2,
		"SCRAM-SHA-256$4096:" GOOD_SALT "$" GOOD_KEY1 ":" GOOD_KEY2 ":",
		"SCRAM-SHA-256$4096:" GOOD_SALT "$" GOOD_KEY1 ":" GOOD_KEY2 "$",
		"SCRAM-SHA-256$4096:" GOOD_SALT "$" GOOD_KEY1 ":" GOOD_KEY2 " ",
		"SCRAM-SHA-256$4096:" GOOD_SALT "$" GOOD_KEY1 ":" GOOD_KEY2 "AAAA",
		/* 31 and 33 byte keys */
		"SCRAM-SHA-256$4096:" GOOD_SALT "$P1DDD5En8CzHTXqR44uFzmaWmUs5MgOWp0ADpgObcw==:" GOOD_KEY2,
		"SCRAM-SHA-256$4096:" GOOD_SALT "$" GOOD_KEY1 ":rQf+pUQFzDffbF61eC7Arz81o8LIUHnrJNQ+IOKESQQA",
		"SCRAM-SHA-256$4096:" GOOD_SALT "$" GOOD_KEY1 ":rQf+pUQFzDffbF61eC7Arz81o8LIUHnrJNQ+IOKESQQAAA==",
	};
	struct scram_secret sec;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&sec, 0x5a, sizeof(sec));
		if (scram_secret_parse(bad[i], &sec))
			fail_msg("accepted bad verifier #%zu: %s", i, bad[i]);
		/* out is untouched on failure */
		assert_int_equal(((const uint8_t *)&sec)[0], 0x5a);
	}
	assert_false(scram_secret_parse(NULL, &sec));
	assert_false(scram_is_verifier(NULL));
	assert_false(scram_is_verifier("md594f6dfa9ce48919dd181f96e6e406c5f"));
	assert_false(scram_is_verifier("SCRAM-SHA-256"));

	assert_true(scram_secret_parse(GOOD_VERIFIER, &sec));
	assert_int_equal(sec.iterations, 4096);
	/* largest accepted iteration count */
	assert_true(scram_secret_parse("SCRAM-SHA-256$2147483647:" GOOD_SALT "$" GOOD_KEY1 ":" GOOD_KEY2,
				       &sec));
	assert_int_equal(sec.iterations, 2147483647);
	/* a 64-byte salt is the most we store; 65 is refused */
	uint8_t salt[SCRAM_MAX_SALT + 1];
	char salt_b64[128], text[256];
	memset(salt, 0xab, sizeof(salt));
	ref_b64(salt, SCRAM_MAX_SALT, salt_b64);
	snprintf(text, sizeof(text), "SCRAM-SHA-256$1:%s$" GOOD_KEY1 ":" GOOD_KEY2, salt_b64);
	assert_true(scram_secret_parse(text, &sec));
	assert_int_equal(sec.salt_len, SCRAM_MAX_SALT);
	assert_memory_equal(sec.salt, salt, SCRAM_MAX_SALT);
	ref_b64(salt, SCRAM_MAX_SALT + 1, salt_b64);
	snprintf(text, sizeof(text), "SCRAM-SHA-256$1:%s$" GOOD_KEY1 ":" GOOD_KEY2, salt_b64);
	assert_false(scram_secret_parse(text, &sec));
}

/* Every truncation and single-byte mutation: false or a sane secret, never
 * a crash or an out-of-bounds read (run under valgrind/ASan). */
static void test_verifier_parse_mutations(void **state)
{
	(void)state;
	static const char good[] = GOOD_VERIFIER;
	static const char subst[] = {'$', ':', '=', 'A', '/', ' ', '\x80', '\xff', '0'};
	char buf[sizeof(good)];
	struct scram_secret sec;

	for (size_t cut = 0; cut < sizeof(good) - 1; cut++) {
		memcpy(buf, good, cut);
		buf[cut] = '\0';
		assert_false(scram_secret_parse(buf, &sec));
	}
	for (size_t pos = 0; pos < sizeof(good) - 1; pos++) {
		for (size_t k = 0; k < sizeof(subst); k++) {
			memcpy(buf, good, sizeof(good));
			buf[pos] = subst[k];
			if (scram_secret_parse(buf, &sec)) {
				assert_true(sec.iterations > 0);
				assert_true(sec.salt_len > 0 && sec.salt_len <= SCRAM_MAX_SALT);
			}
		}
	}
}

/* ---- malformed client messages ------------------------------------------ */

static enum scram_result first_of(const struct scram_secret *sec, const char *msg, size_t len)
{
	struct scram_state st;
	char out[256];
	size_t outlen = 0;
	memset(out, 0, sizeof(out));
	enum scram_result res = scram_server_first(&st, sec, NULL, msg, len, server_nonce_raw, out,
						   sizeof(out), &outlen);
	if (res != SCRAM_CONTINUE) {
		assert_int_equal(out[0], 0);
		assert_int_equal(st.step, 0);
	}
	return res;
}

static void test_client_first_malformed(void **state)
{
	(void)state;
	struct scram_secret sec;
	quick_secret(&sec);
	static const char *const bad[] = {
		"",
		"n",
		"n,",
		"n,,",
		"n,,n",
		"n,,n=",
		"n,,n=,",
		"n,,n=,r",
		"n,,n=,r=",                      /* empty nonce */
		"p=tls-server-end-point,,n=,r=" CNONCE, /* channel binding */
		"p,,n=,r=" CNONCE,
		"x,,n=,r=" CNONCE,                /* unknown cbind flag */
		"N,,n=,r=" CNONCE,
		"n,a=bob,n=,r=" CNONCE,           /* authzid */
		"n,,,n=,r=" CNONCE,
		" n,,n=,r=" CNONCE,
		"n,,m=ext,n=,r=" CNONCE,          /* mandatory extension */
		"n,,r=" CNONCE,                   /* missing n= */
		"n,,r=" CNONCE ",n=",             /* wrong order */
		"n,,n=user",                      /* missing r= */
		"n,,n=user,",
		"n,,n=user,x=" CNONCE,
		"n,,n=,r=ab cd",                  /* space in nonce */
		"n,,n=,r=abc\x01",                /* control char in nonce */
		"n,,n=,r=abc\x7f",
		"n,,n=,r=abc\xc3\xa9",            /* non-ASCII in nonce */
		"n,,n=,r=" CNONCE ",",            /* trailing comma */
		"n,,n=,r=" CNONCE ",1=x",         /* extension name must be ALPHA */
		"n,,n=,r=" CNONCE ",x",
		"n,,n=,r=" CNONCE ",xy=1",
		"n,,n=,r=" CNONCE ",,x=1",
		"n=,r=" CNONCE,                   /* no gs2 header */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (first_of(&sec, bad[i], strlen(bad[i])) != SCRAM_MALFORMED)
			fail_msg("accepted bad client-first #%zu: %s", i, bad[i]);

	/* Embedded NUL, wherever it is. */
	static const char nul_first[] = "n,,n=\0,r=" CNONCE;
	assert_int_equal(first_of(&sec, nul_first, sizeof(nul_first) - 1), SCRAM_MALFORMED);
	static const char nul_last[] = CLIENT_FIRST "\0";
	assert_int_equal(first_of(&sec, nul_last, sizeof(nul_last) - 1), SCRAM_MALFORMED);

	/* Oversize: a nonce that does not fit, a bare message that does not fit. */
	char big[1024];
	memset(big, 0, sizeof(big));
	strcpy(big, "n,,n=,r=");
	memset(big + 8, 'a', 128 - 24); /* 104 + 24 server chars = 128: no room for the NUL */
	assert_int_equal(first_of(&sec, big, strlen(big)), SCRAM_MALFORMED);
	big[8 + 103] = '\0'; /* 103 + 24 = 127: fits */
	assert_int_equal(first_of(&sec, big, strlen(big)), SCRAM_CONTINUE);
	strcpy(big, "n,,n=");
	memset(big + 5, 'u', 300);
	strcpy(big + 305, ",r=abc");
	assert_int_equal(first_of(&sec, big, strlen(big)), SCRAM_MALFORMED);
	memset(big, 'n', sizeof(big));
	assert_int_equal(first_of(&sec, big, sizeof(big)), SCRAM_MALFORMED);

	/* The server-first must fit the caller's buffer. */
	struct scram_state st;
	char small[40];
	size_t outlen = 0;
	assert_int_equal(scram_server_first(&st, &sec, NULL, CLIENT_FIRST, strlen(CLIENT_FIRST),
					    server_nonce_raw, small, sizeof(small), &outlen),
			 SCRAM_MALFORMED);

	/* Accepted: user name ignored, any value; "y" flag. */
	static const char *const good[] = {
		CLIENT_FIRST,
		"n,,n=user,r=" CNONCE,
		"n,,n=us=2Cer,r=x",
		"y,,n=,r=" CNONCE,
		"n,,n=,r=!\"#$%&'()*+-./09:;<=>?@AZ[\\]^_`az{|}~",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (first_of(&sec, good[i], strlen(good[i])) != SCRAM_CONTINUE)
			fail_msg("refused good client-first #%zu: %s", i, good[i]);
}

/* Build the valid client-final for CLIENT_FIRST against sec. */
static void valid_final(const struct scram_secret *sec, struct client_final *cf)
{
	struct scram_state st;
	char first[256];
	server_first_step(&st, sec, first, sizeof(first));
	client_answer(CLIENT_FIRST + 3, first, "pw", "biws", "", cf);
}

static enum scram_result final_of(const struct scram_secret *sec, const char *msg, size_t len)
{
	struct scram_state st;
	char first[256], out[256];
	size_t outlen = 0;
	server_first_step(&st, sec, first, sizeof(first));
	memset(out, 0, sizeof(out));
	enum scram_result res = scram_server_final(&st, sec, msg, len, out, sizeof(out), &outlen);
	if (res != SCRAM_DONE)
		assert_int_equal(out[0], 0);
	assert_int_equal(st.step, 2);
	return res;
}

#define NONCE CNONCE SNONCE

static void test_client_final_malformed(void **state)
{
	(void)state;
	struct scram_secret sec;
	quick_secret(&sec);
	struct client_final cf;
	valid_final(&sec, &cf);
	assert_int_equal(final_of(&sec, cf.msg, strlen(cf.msg)), SCRAM_DONE);

	const char *proof = strstr(cf.msg, ",p=") + 3;
	char p31[64], p33[64];
	uint8_t raw[33];
	memset(raw, 7, sizeof(raw));
	ref_b64(raw, 31, p31);
	ref_b64(raw, 33, p33);

	char bad[40][2048];
	size_t nbad = 0;
#define BAD(...) snprintf(bad[nbad++], sizeof(bad[0]), __VA_ARGS__)
	BAD("%s", "");
	BAD("r=%s,p=%s", NONCE, proof);                   /* missing c= */
	BAD("r=%s,c=biws,p=%s", NONCE, proof);            /* wrong order */
	BAD("c=biws,p=%s,r=%s", proof, NONCE);
	BAD("c=biws,p=%s", proof);                        /* missing r= */
	BAD("c=eSws,r=%s,p=%s", NONCE, proof);            /* cbind mismatch */
	BAD("c=,r=%s,p=%s", NONCE, proof);
	BAD("c=biws=,r=%s,p=%s", NONCE, proof);
	BAD("c=b!ws,r=%s,p=%s", NONCE, proof);            /* bad base64 */
	BAD("c=cD10bHMtc2VydmVyLWVuZC1wb2ludCwsAAAA,r=%s,p=%s", NONCE, proof); /* cbind data */
	BAD("c=biws,r=%sX,p=%s", NONCE, proof);           /* wrong nonce */
	BAD("c=biws,r=%s,p=%s", CNONCE, proof);           /* client half only */
	BAD("c=biws,r=%s,p=%s", CNONCE "AAECAwQFBgcICQoLDA0ODxAS", proof);
	BAD("c=biws,r=,p=%s", proof);
	BAD("c=biws,r=%s", NONCE);                        /* missing proof */
	BAD("c=biws,r=%s,", NONCE);
	BAD("c=biws,r=%s,p=", NONCE);
	BAD("c=biws,r=%s,p=%s", NONCE, "@@@@");
	BAD("c=biws,r=%s,p=%s", NONCE, p31);              /* 31-byte proof */
	BAD("c=biws,r=%s,p=%s", NONCE, p33);              /* 33-byte proof */
	BAD("c=biws,r=%s,p=%.43s", NONCE, proof);         /* unpadded */
	BAD("c=biws,r=%s,p=%s,x=1", NONCE, proof);        /* garbage after proof */
	BAD("c=biws,r=%s,p=%s,", NONCE, proof);
	BAD("c=biws,r=%s,p=%s ", NONCE, proof);
	BAD("c=biws,r=%s,1=x,p=%s", NONCE, proof);        /* bad extension */
	BAD("c=biws,r=%s,,p=%s", NONCE, proof);
	BAD("c=biws,r=%s,P=%s", NONCE, proof);
	BAD("n,,c=biws,r=%s,p=%s", NONCE, proof);
#undef BAD
	for (size_t i = 0; i < nbad; i++)
		if (final_of(&sec, bad[i], strlen(bad[i])) != SCRAM_MALFORMED)
			fail_msg("accepted bad client-final #%zu: %s", i, bad[i]);

	/* Every strict prefix of the valid message. */
	for (size_t cut = 0; cut < strlen(cf.msg); cut++)
		assert_int_equal(final_of(&sec, cf.msg, cut), SCRAM_MALFORMED);

	/* Embedded NUL at the end (len counts it) and in the middle. */
	char nul[2048];
	size_t n = strlen(cf.msg);
	memcpy(nul, cf.msg, n + 1);
	assert_int_equal(final_of(&sec, nul, n + 1), SCRAM_MALFORMED);
	nul[3] = '\0';
	assert_int_equal(final_of(&sec, nul, n), SCRAM_MALFORMED);

	/* Oversize: an extension far longer than anything real. */
	char ext[700] = ",x=";
	memset(ext + 3, 'e', 600);
	ext[603] = '\0';
	struct scram_state st;
	char first[256], out[256];
	size_t outlen;
	server_first_step(&st, &sec, first, sizeof(first));
	client_answer(CLIENT_FIRST + 3, first, "pw", "biws", ext, &cf);
	assert_int_equal(scram_server_final(&st, &sec, cf.msg, strlen(cf.msg), out, sizeof(out),
					    &outlen),
			 SCRAM_MALFORMED);
	char huge[70000];
	memset(huge, 'c', sizeof(huge));
	assert_int_equal(final_of(&sec, huge, sizeof(huge)), SCRAM_MALFORMED);
}

static void test_exchange_order(void **state)
{
	(void)state;
	struct scram_secret sec;
	quick_secret(&sec);
	struct client_final cf;
	valid_final(&sec, &cf);
	struct scram_state st;
	char first[256], out[256];
	size_t outlen;

	/* client-final before client-first */
	memset(&st, 0, sizeof(st));
	assert_int_equal(scram_server_final(&st, &sec, cf.msg, strlen(cf.msg), out, sizeof(out),
					    &outlen),
			 SCRAM_MALFORMED);

	/* after a failed client-first */
	assert_int_equal(scram_server_first(&st, &sec, NULL, "p=x,,n=,r=a", 11, server_nonce_raw, first,
					    sizeof(first), &outlen),
			 SCRAM_MALFORMED);
	assert_int_equal(scram_server_final(&st, &sec, cf.msg, strlen(cf.msg), out, sizeof(out),
					    &outlen),
			 SCRAM_MALFORMED);

	/* one proof per exchange: a good one after a bad one is refused */
	server_first_step(&st, &sec, first, sizeof(first));
	assert_int_equal(scram_server_final(&st, &sec, "c=biws", 6, out, sizeof(out), &outlen),
			 SCRAM_MALFORMED);
	assert_int_equal(scram_server_final(&st, &sec, cf.msg, strlen(cf.msg), out, sizeof(out),
					    &outlen),
			 SCRAM_MALFORMED);

	/* and a replay after success */
	server_first_step(&st, &sec, first, sizeof(first));
	assert_int_equal(scram_server_final(&st, &sec, cf.msg, strlen(cf.msg), out, sizeof(out),
					    &outlen),
			 SCRAM_DONE);
	assert_int_equal(scram_server_final(&st, &sec, cf.msg, strlen(cf.msg), out, sizeof(out),
					    &outlen),
			 SCRAM_MALFORMED);

	/* out too small for "v=" + 44 + NUL: refused before anything is written */
	char small[46];
	memset(small, 0, sizeof(small));
	server_first_step(&st, &sec, first, sizeof(first));
	assert_int_equal(scram_server_final(&st, &sec, cf.msg, strlen(cf.msg), small, sizeof(small),
					    &outlen),
			 SCRAM_MALFORMED);
	assert_int_equal(small[0], 0);
	char exact[47];
	server_first_step(&st, &sec, first, sizeof(first));
	assert_int_equal(scram_server_final(&st, &sec, cf.msg, strlen(cf.msg), exact, sizeof(exact),
					    &outlen),
			 SCRAM_DONE);
	assert_string_equal(exact, cf.server_v);

	/* a proof made for another server-first (another nonce) does not verify */
	static const char other_first[] = "n,,n=,r=otherclientnonce";
	assert_int_equal(scram_server_first(&st, &sec, NULL, other_first, strlen(other_first),
					    server_nonce_raw, first, sizeof(first), &outlen),
			 SCRAM_CONTINUE);
	struct client_final cf2;
	client_answer(other_first + 3, first, "pw", "biws", "", &cf2);
	/* flip one proof bit */
	char *p = strstr(cf2.msg, ",p=") + 3;
	p[0] = p[0] == 'A' ? 'B' : 'A';
	assert_int_equal(scram_server_final(&st, &sec, cf2.msg, strlen(cf2.msg), out, sizeof(out),
					    &outlen),
			 SCRAM_BAD_PROOF);
}

/* ---- base64 ------------------------------------------------------------- */

static void test_b64_vectors(void **state)
{
	(void)state;
	/* RFC 4648 section 10 */
	static const char *const vec[][2] = {
		{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},     {"foo", "Zm9v"},
		{"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
	};
	char enc[32];
	uint8_t dec[32];
	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		size_t len = strlen(vec[i][0]);
		assert_int_equal(b64_encode((const uint8_t *)vec[i][0], len, enc, sizeof(enc)),
				 (int)strlen(vec[i][1]));
		assert_string_equal(enc, vec[i][1]);
		assert_int_equal(b64_decode(vec[i][1], strlen(vec[i][1]), dec, sizeof(dec)), (int)len);
		assert_memory_equal(dec, vec[i][0], len);
	}
	/* all 64 symbols, against OpenSSL's decoder; and the gs2 headers */
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	uint8_t all[48], ref[48];
	char all_enc[80];
	assert_int_equal(b64_decode(alphabet, 64, all, sizeof(all)), 48);
	assert_int_equal(EVP_DecodeBlock(ref, (const unsigned char *)alphabet, 64), 48);
	assert_memory_equal(all, ref, 48);
	assert_int_equal(b64_encode(all, sizeof(all), all_enc, sizeof(all_enc)), 64);
	assert_string_equal(all_enc, alphabet);
	assert_int_equal(b64_encode((const uint8_t *)"n,,", 3, enc, sizeof(enc)), 4);
	assert_string_equal(enc, "biws");
	assert_int_equal(b64_encode((const uint8_t *)"y,,", 3, enc, sizeof(enc)), 4);
	assert_string_equal(enc, "eSws");
}

static void test_b64_round_trip(void **state)
{
	(void)state;
	uint8_t src[100], dec[100];
	char enc[140], ref[140];
	uint32_t x = 2463534242u; /* xorshift32: arbitrary but fixed bytes */
	for (size_t len = 0; len <= sizeof(src); len++) {
		for (size_t i = 0; i < len; i++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			src[i] = (uint8_t)x;
		}
		int n = b64_encode(src, len, enc, sizeof(enc));
		assert_int_equal(n, (int)((len + 2) / 3 * 4));
		ref_b64(src, len, ref);
		assert_string_equal(enc, ref);
		assert_int_equal(b64_decode(enc, (size_t)n, dec, sizeof(dec)), (int)len);
		assert_memory_equal(dec, src, len);
		/* exact-fit output buffers work, one byte less does not */
		if (len > 0) {
			assert_int_equal(b64_decode(enc, (size_t)n, dec, len), (int)len);
			assert_int_equal(b64_decode(enc, (size_t)n, dec, len - 1), -1);
		}
		assert_int_equal(b64_encode(src, len, enc, (size_t)n + 1), n);
		assert_int_equal(b64_encode(src, len, enc, (size_t)n), -1);
	}
}

static void test_b64_rejects(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"Zg=",      /* not a multiple of 4 */
		"Zg",       "Z",     "Zm9vY",
		"Z===",     "====",  "=Zm9",    "Zm=v",     /* misplaced padding */
		"Zg=a",     "Zm9v=AAA", "Zm9vYg==Zm9v", "Zg==Zg==",
		"Zh==",     "Zm9=",              /* nonzero unused bits */
		"Zm9v!A==", "Zm9\n", "Zm 9",    "Zm9-",     "Zm9_", /* bad characters */
		"Zm9\x80",
	};
	uint8_t dec[64];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (b64_decode(bad[i], strlen(bad[i]), dec, sizeof(dec)) != -1)
			fail_msg("accepted bad base64 #%zu: %s", i, bad[i]);
	}
	/* an embedded NUL is a bad character */
	assert_int_equal(b64_decode("Zm\0v", 4, dec, sizeof(dec)), -1);
	/* empty input decodes to nothing, even into no space */
	assert_int_equal(b64_decode("", 0, dec, 0), 0);
	/* encoding needs room for the NUL */
	char enc[4];
	assert_int_equal(b64_encode((const uint8_t *)"foo", 3, enc, sizeof(enc)), -1);
	assert_int_equal(b64_encode((const uint8_t *)"", 0, enc, 0), -1);
	assert_int_equal(b64_encode((const uint8_t *)"", 0, enc, 1), 0);
	assert_int_equal(enc[0], '\0');
}

/* ---- md5 ---------------------------------------------------------------- */

/*
 * From the same PostgreSQL 15:
 *   SET password_encryption = 'md5';
 *   CREATE ROLE md5_user LOGIN PASSWORD 'md5-secret';
 *   SELECT rolpassword FROM pg_authid WHERE rolname = 'md5_user';
 * and the wire responses for two salts with PostgreSQL's own md5():
 *   SELECT 'md5' || md5(convert_to(substr(rolpassword, 4), 'UTF8')
 *                       || '\x01020304'::bytea) FROM pg_authid WHERE ...;
 */
#define PG_MD5_STORED "md594f6dfa9ce48919dd181f96e6e406c5f"
#define PG_MD5_RESP_01020304 "md5de5f430725caf68ade3b51e052e13b54"
#define PG_MD5_RESP_9AFF0080 "md5648d536c5730c389f91e7f64d1d201a6"

static void test_md5_known_answers(void **state)
{
	(void)state;
	char out[MD5_PASSWD_LEN + 1];
	md5_stored_from_password("md5-secret", "md5_user", out);
	assert_string_equal(out, PG_MD5_STORED);
	assert_true(md5_is_stored(out));

	/* password || user, not user || password */
	md5_stored_from_password("md5_user", "md5-secret", out);
	assert_string_not_equal(out, PG_MD5_STORED);
	/* md5("") || "" is MD5's empty-input vector, d41d8cd9... */
	md5_stored_from_password("", "", out);
	assert_string_equal(out, "md5d41d8cd98f00b204e9800998ecf8427e");

	static const uint8_t salt1[4] = {0x01, 0x02, 0x03, 0x04};
	static const uint8_t salt2[4] = {0x9a, 0xff, 0x00, 0x80};
	assert_true(md5_check_response(PG_MD5_STORED, salt1, PG_MD5_RESP_01020304));
	assert_true(md5_check_response(PG_MD5_STORED, salt2, PG_MD5_RESP_9AFF0080));
	assert_false(md5_check_response(PG_MD5_STORED, salt2, PG_MD5_RESP_01020304));
	assert_false(md5_check_response(PG_MD5_STORED, salt1, PG_MD5_RESP_9AFF0080));
}

static void test_md5_rejects(void **state)
{
	(void)state;
	static const uint8_t salt1[4] = {0x01, 0x02, 0x03, 0x04};
	static const char *const not_stored[] = {
		"",
		"md5",
		"md594f6dfa9ce48919dd181f96e6e406c5",   /* 31 hex digits */
		"md594f6dfa9ce48919dd181f96e6e406c5f0", /* 33 */
		"MD594f6dfa9ce48919dd181f96e6e406c5f",
		"md594F6DFA9CE48919DD181F96E6E406C5F",  /* uppercase hex */
		"md594f6dfa9ce48919dd181f96e6e406c5g",
		"xx594f6dfa9ce48919dd181f96e6e406c5f",
		"SCRAM-SHA-256$4096:",
	};
	for (size_t i = 0; i < sizeof(not_stored) / sizeof(not_stored[0]); i++) {
		assert_false(md5_is_stored(not_stored[i]));
		assert_false(md5_check_response(not_stored[i], salt1, PG_MD5_RESP_01020304));
	}
	assert_false(md5_is_stored(NULL));

	static const char *const bad_resp[] = {
		"",
		"md5",
		"md5de5f430725caf68ade3b51e052e13b5",   /* truncated */
		"md5de5f430725caf68ade3b51e052e13b540", /* one more */
		"MD5de5f430725caf68ade3b51e052e13b54",
		"md5DE5F430725CAF68ADE3B51E052E13B54",
		"de5f430725caf68ade3b51e052e13b54",
		"md5de5f430725caf68ade3b51e052e13b55",
		PG_MD5_STORED, /* the stored hash itself is not a valid answer */
	};
	for (size_t i = 0; i < sizeof(bad_resp) / sizeof(bad_resp[0]); i++)
		if (md5_check_response(PG_MD5_STORED, salt1, bad_resp[i]))
			fail_msg("accepted bad md5 response #%zu: %s", i, bad_resp[i]);
	assert_false(md5_check_response(PG_MD5_STORED, salt1, NULL));
}

static void test_secret_equal(void **state)
{
	(void)state;
	assert_true(secret_equal("abc", "abc", 3));
	assert_false(secret_equal("abc", "abd", 3));
	assert_false(secret_equal("\x00" "bc", "\x80" "bc", 3));
	assert_true(secret_equal("abc", "abd", 2));
	assert_true(secret_equal("", "x", 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc7677_exchange),
		cmocka_unit_test(test_rfc7677_wrong_password),
		cmocka_unit_test(test_server_first_raw_nonce_and_y_flag),
		cmocka_unit_test(test_extensions_ignored),
		cmocka_unit_test(test_channel_binding),
		cmocka_unit_test(test_pg_verifier_ascii),
		cmocka_unit_test(test_pg_verifier_saslprep),
		cmocka_unit_test(test_pg_verifier_long),
		cmocka_unit_test(test_saslprep_rfc4013_nfkc),
		cmocka_unit_test(test_secret_from_password_bad_args),
		cmocka_unit_test(test_verifier_parse_rejects),
		cmocka_unit_test(test_verifier_parse_mutations),
		cmocka_unit_test(test_client_first_malformed),
		cmocka_unit_test(test_client_final_malformed),
		cmocka_unit_test(test_exchange_order),
		cmocka_unit_test(test_b64_vectors),
		cmocka_unit_test(test_b64_round_trip),
		cmocka_unit_test(test_b64_rejects),
		cmocka_unit_test(test_md5_known_answers),
		cmocka_unit_test(test_md5_rejects),
		cmocka_unit_test(test_secret_equal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
