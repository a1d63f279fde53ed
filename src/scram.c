/*
 * scram.c - server side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL
 * speaks it: verifier parsing, secret derivation with PostgreSQL's SASLprep
 * rules, and the two server steps of one exchange. Pure computation on
 * caller memory; never touches sockets, events or logs. Its only state is
 * the SHA-256 implementation, fetched once, and a digest context per thread.
 * Reference: PostgreSQL manual, "SASL Authentication" -> "SCRAM-SHA-256".
 */
#include "scram.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stringprep.h>

#define SCRAM_VERIFIER_PREFIX "SCRAM-SHA-256$"
#define SCRAM_MAX_SERVER_NONCE 64
/* Longest client-final-message-without-proof accepted: "c=eSws,r=" + a full
 * nonce is 136 bytes; the rest leaves room for extensions nobody sends. */
#define SCRAM_MAX_FINAL_WITHOUT_PROOF 512
#define SCRAM_FINAL_LEN 46 /* "v=" + base64 of 32 bytes */

/* ---- SHA-256 and HMAC-SHA-256 ------------------------------------------------ */

/*
 * Every login computes two HMACs and a hash of a few hundred bytes. OpenSSL
 * 3's one-shot HMAC() and EVP_Digest() look the algorithm up in the provider
 * on each call (name lookups, locks, allocations): about 24,000
 * instructions for one HMAC, most of a login's CPU. Fetching SHA-256 once
 * and reusing one digest context per thread leaves the hashing itself.
 */
static EVP_MD *sha256_fetched;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static _Thread_local EVP_MD_CTX *sha256_ctx;

static void sha256_fetch(void)
{
	sha256_fetched = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *sha256_md(void)
{
	pthread_once(&sha256_once, sha256_fetch);
	return sha256_fetched ? sha256_fetched : EVP_sha256();
}

/* SHA-256 of a || b (b may be empty). */
static bool sha256_two(const void *a, size_t alen, const void *b, size_t blen,
		       uint8_t out[SCRAM_KEY_LEN])
{
	if (!sha256_ctx && !(sha256_ctx = EVP_MD_CTX_new()))
		return false;
	return EVP_DigestInit_ex2(sha256_ctx, sha256_md(), NULL) &&
	       EVP_DigestUpdate(sha256_ctx, a, alen) &&
	       (blen == 0 || EVP_DigestUpdate(sha256_ctx, b, blen)) &&
	       EVP_DigestFinal_ex(sha256_ctx, out, NULL);
}

/* HMAC-SHA-256 (RFC 2104): H((K ^ opad) || H((K ^ ipad) || msg)). */
static bool hmac_sha256(const uint8_t *key, size_t klen, const void *msg, size_t mlen,
			uint8_t out[SCRAM_KEY_LEN])
{
	enum { BLOCK = 64 };
	uint8_t k[BLOCK] = {0}, pad[BLOCK], inner[SCRAM_KEY_LEN];
	bool ok = true;
	if (klen > BLOCK)
		ok = sha256_two(key, klen, NULL, 0, k);
	else
		memcpy(k, key, klen);
	for (size_t i = 0; i < BLOCK; i++)
		pad[i] = k[i] ^ 0x36;
	ok = ok && sha256_two(pad, BLOCK, msg, mlen, inner);
	for (size_t i = 0; i < BLOCK; i++)
		pad[i] = k[i] ^ 0x5c;
	ok = ok && sha256_two(pad, BLOCK, inner, sizeof(inner), out);
	OPENSSL_cleanse(k, sizeof(k));
	OPENSSL_cleanse(pad, sizeof(pad));
	OPENSSL_cleanse(inner, sizeof(inner));
	return ok;
}

/* ---- base64 ------------------------------------------------------------- */

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int b64_encode(const uint8_t *src, size_t len, char *dst, size_t dstcap)
{
	if (len > (size_t)INT_MAX / 4 * 3)
		return -1;
	size_t need = (len + 2) / 3 * 4;
	if (need >= dstcap)
		return -1;

	char *o = dst;
	size_t i = 0;
	for (; len - i >= 3; i += 3) {
		uint32_t v = ((uint32_t)src[i] << 16) | ((uint32_t)src[i + 1] << 8) | src[i + 2];
		*o++ = b64_alphabet[(v >> 18) & 63];
		*o++ = b64_alphabet[(v >> 12) & 63];
		*o++ = b64_alphabet[(v >> 6) & 63];
		*o++ = b64_alphabet[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)src[i] << 16;
		*o++ = b64_alphabet[(v >> 18) & 63];
		*o++ = b64_alphabet[(v >> 12) & 63];
		*o++ = '=';
		*o++ = '=';
	} else if (len - i == 2) {
		uint32_t v = ((uint32_t)src[i] << 16) | ((uint32_t)src[i + 1] << 8);
		*o++ = b64_alphabet[(v >> 18) & 63];
		*o++ = b64_alphabet[(v >> 12) & 63];
		*o++ = b64_alphabet[(v >> 6) & 63];
		*o++ = '=';
	}
	*o = '\0';
	return (int)need;
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int b64_decode(const char *src, size_t len, uint8_t *dst, size_t dstcap)
{
	if (len % 4 != 0 || len / 4 * 3 > (size_t)INT_MAX)
		return -1;

	size_t out = 0;
	for (size_t i = 0; i < len; i += 4) {
		bool last = i + 4 == len;
		uint32_t v = 0;
		size_t pad = 0;
		for (size_t k = 0; k < 4; k++) {
			char c = src[i + k];
			int d;
			/* '=' only in the last two positions of the last quantum */
			if (c == '=' && last && k >= 2) {
				pad++;
				d = 0;
			} else if (pad || (d = b64_value(c)) < 0) {
				return -1;
			}
			v = (v << 6) | (uint32_t)d;
		}
		/* Canonical form only: the bits padding leaves unused must be zero. */
		if ((pad == 1 && (v & 0xff)) || (pad == 2 && (v & 0xffff)))
			return -1;
		size_t n = 3 - pad;
		if (dstcap - out < n)
			return -1;
		dst[out++] = (uint8_t)(v >> 16);
		if (n > 1)
			dst[out++] = (uint8_t)(v >> 8);
		if (n > 2)
			dst[out++] = (uint8_t)v;
	}
	return (int)out;
}

/* ---- SASLprep, the way PostgreSQL's pg_saslprep() does it --------------- */

enum prep_result {
	PREP_OK = 0, /* *out holds the prepared password (malloc'd) */
	PREP_RAW,    /* use the password bytes unchanged */
	PREP_ERROR,  /* out of memory or a libidn failure */
};

/*
 * Strict UTF-8 (RFC 3629, as pg_utf8_islegal checks it: no overlongs, no
 * surrogates, nothing above U+10FFFF) into code points. Returns the number
 * of code points, or -1 if s is not valid UTF-8. cps may be NULL to count.
 */
static long utf8_decode(const unsigned char *s, size_t len, uint32_t *cps)
{
	long n = 0;
	size_t i = 0;
	while (i < len) {
		unsigned char c = s[i];
		uint32_t cp;
		size_t extra;
		unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the 2nd byte */
		if (c < 0x80) {
			cp = c;
			extra = 0;
		} else if (c >= 0xc2 && c <= 0xdf) {
			cp = c & 0x1f;
			extra = 1;
		} else if (c >= 0xe0 && c <= 0xef) {
			cp = c & 0x0f;
			extra = 2;
			if (c == 0xe0)
				lo = 0xa0; /* overlong */
			else if (c == 0xed)
				hi = 0x9f; /* surrogates */
		} else if (c >= 0xf0 && c <= 0xf4) {
			cp = c & 0x07;
			extra = 3;
			if (c == 0xf0)
				lo = 0x90; /* overlong */
			else if (c == 0xf4)
				hi = 0x8f; /* above U+10FFFF */
		} else {
			return -1;
		}
		if (len - i - 1 < extra)
			return -1;
		for (size_t k = 1; k <= extra; k++) {
			unsigned char b = s[i + k];
			if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf))
				return -1;
			cp = (cp << 6) | (b & 0x3f);
		}
		if (cps)
			cps[n] = cp;
		n++;
		i += extra + 1;
	}
	return n;
}

static size_t utf8_encode(uint32_t cp, char *o)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/*
 * pg_saslprep() semantics: pure ASCII is used as is; invalid UTF-8 or a
 * prohibited result means "use the raw bytes" (PostgreSQL's server and libpq
 * both fall back that way, so a client and berth agree on the key).
 *
 * PostgreSQL runs the prohibited, unassigned (A.1, always refused) and bidi
 * checks on the mapped string *before* NFKC, then returns the NFKC form;
 * libidn's stock "SASLprep" profile checks after NFKC, which differs for e.g.
 * U+0340 (prohibited, but NFKC turns it into the allowed U+0300). So we run
 * libidn's own SASLprep steps and tables with NFKC moved to the end.
 */
static enum prep_result saslprep(const char *password, char **out)
{
	const unsigned char *in = (const unsigned char *)password;
	size_t len = strlen(password);
	enum prep_result res = PREP_ERROR;
	uint32_t *cps = NULL, *work = NULL;
	size_t work_cap = 0;
	char *prepped = NULL;

	*out = NULL;
	bool ascii = true;
	for (size_t i = 0; i < len; i++)
		ascii = ascii && in[i] < 0x80;
	if (ascii)
		return PREP_RAW;

	long ncp = utf8_decode(in, len, NULL);
	if (ncp < 0)
		return PREP_RAW;

	/* stringprep_saslprep with its NFKC step moved behind the checks. */
	Stringprep_profile profile[32];
	size_t np = 0;
	Stringprep_profile nfkc = {0};
	for (const Stringprep_profile *p = stringprep_saslprep; p->operation; p++) {
		BERTH_ASSERT(np + 2 < ARRAY_SIZE(profile));
		if (p->operation == STRINGPREP_NFKC)
			nfkc = *p;
		else
			profile[np++] = *p;
	}
	BERTH_ASSERT(nfkc.operation == STRINGPREP_NFKC);
	profile[np++] = nfkc;
	memset(&profile[np], 0, sizeof(profile[np]));

	cps = malloc(((size_t)ncp + 1) * sizeof(*cps));
	if (!cps)
		goto out;
	utf8_decode(in, len, cps);

	/*
	 * NFKC may lengthen the string (up to 18x for U+FDFA): retry with a
	 * bigger buffer. Not realloc: the old block holds password characters
	 * and must be wiped before it is freed.
	 */
	size_t outlen = 0;
	int rc = STRINGPREP_TOO_SMALL_BUFFER;
	for (size_t cap = (size_t)ncp * 2 + 16; rc == STRINGPREP_TOO_SMALL_BUFFER; cap *= 2) {
		if (work) {
			OPENSSL_cleanse(work, work_cap * sizeof(*work));
			free(work);
		}
		work = NULL;
		if (cap > (size_t)ncp * 40 + 64)
			goto out;
		work = malloc(cap * sizeof(*work));
		if (!work)
			goto out;
		work_cap = cap;
		memcpy(work, cps, (size_t)ncp * sizeof(*work));
		outlen = (size_t)ncp;
		rc = stringprep_4i(work, &outlen, cap, STRINGPREP_NO_UNASSIGNED, profile);
	}
	switch (rc) {
	case STRINGPREP_OK:
		break;
	case STRINGPREP_CONTAINS_UNASSIGNED:
	case STRINGPREP_CONTAINS_PROHIBITED:
	case STRINGPREP_BIDI_BOTH_L_AND_RAL:
	case STRINGPREP_BIDI_LEADTRAIL_NOT_RAL:
	case STRINGPREP_BIDI_CONTAINS_PROHIBITED:
		res = PREP_RAW;
		goto out;
	default:
		goto out;
	}
	/* PostgreSQL refuses a password that maps to nothing ("don't allow
	 * empty password") and falls back to the raw bytes. */
	if (outlen == 0) {
		res = PREP_RAW;
		goto out;
	}

	prepped = malloc(outlen * 4 + 1);
	if (!prepped)
		goto out;
	size_t o = 0;
	for (size_t i = 0; i < outlen; i++)
		o += utf8_encode(work[i], prepped + o);
	prepped[o] = '\0';
	*out = prepped;
	res = PREP_OK;
out:
	if (cps) {
		OPENSSL_cleanse(cps, (size_t)ncp * sizeof(*cps));
		free(cps);
	}
	if (work) {
		OPENSSL_cleanse(work, work_cap * sizeof(*work));
		free(work);
	}
	return res;
}

/* ---- secrets ------------------------------------------------------------ */

bool scram_secret_from_password(const char *password, const uint8_t *salt, size_t salt_len,
				int iterations, struct scram_secret *out)
{
	struct scram_secret sec;
	uint8_t salted[SCRAM_KEY_LEN];
	uint8_t client_key[SCRAM_KEY_LEN];
	char *prepped = NULL;
	bool ok = false;

	if (!password || !salt || salt_len == 0 || salt_len > SCRAM_MAX_SALT || iterations < 1)
		return false;

	switch (saslprep(password, &prepped)) {
	case PREP_OK:
		password = prepped;
		break;
	case PREP_RAW:
		break;
	case PREP_ERROR:
		return false;
	}
	size_t pwlen = strlen(password);
	if (pwlen > INT_MAX)
		goto fail;

	/* SaltedPassword = Hi(password, salt, i); RFC 5802 section 3. */
	if (!PKCS5_PBKDF2_HMAC(password, (int)pwlen, salt, (int)salt_len, iterations, sha256_md(),
			       SCRAM_KEY_LEN, salted))
		goto fail;
	if (!hmac_sha256(salted, SCRAM_KEY_LEN, "Client Key", 10, client_key))
		goto fail;
	if (!sha256_two(client_key, SCRAM_KEY_LEN, NULL, 0, sec.stored_key))
		goto fail;
	if (!hmac_sha256(salted, SCRAM_KEY_LEN, "Server Key", 10, sec.server_key))
		goto fail;
	sec.iterations = iterations;
	memset(sec.salt, 0, sizeof(sec.salt));
	memcpy(sec.salt, salt, salt_len);
	sec.salt_len = salt_len;
	*out = sec;
	ok = true;
fail:
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(client_key, sizeof(client_key));
	OPENSSL_cleanse(&sec, sizeof(sec));
	if (prepped) {
		OPENSSL_cleanse(prepped, strlen(prepped));
		free(prepped);
	}
	return ok;
}

bool scram_is_verifier(const char *s)
{
	return s && strncmp(s, SCRAM_VERIFIER_PREFIX, strlen(SCRAM_VERIFIER_PREFIX)) == 0;
}

/* Decode [s, end) as exactly want bytes of base64 into dst. */
static bool b64_decode_exact(const char *s, const char *end, uint8_t *dst, size_t want)
{
	uint8_t tmp[SCRAM_MAX_SALT];
	BERTH_ASSERT(want <= sizeof(tmp));
	int n = b64_decode(s, (size_t)(end - s), tmp, want);
	if (n < 0 || (size_t)n != want)
		return false;
	memcpy(dst, tmp, want);
	return true;
}

bool scram_secret_parse(const char *verifier, struct scram_secret *out)
{
	struct scram_secret sec;

	if (!scram_is_verifier(verifier))
		return false;
	memset(&sec, 0, sizeof(sec));

	/* <iterations>: plain decimal digits, 1..INT_MAX */
	const char *p = verifier + strlen(SCRAM_VERIFIER_PREFIX);
	long long iter = 0;
	const char *digits = p;
	while (*p >= '0' && *p <= '9') {
		iter = iter * 10 + (*p - '0');
		if (iter > INT_MAX)
			return false;
		p++;
	}
	if (p == digits || iter < 1 || *p != ':')
		return false;
	sec.iterations = (int)iter;

	/* :<salt>$ */
	const char *salt = p + 1;
	const char *dollar = strchr(salt, '$');
	if (!dollar)
		return false;
	int n = b64_decode(salt, (size_t)(dollar - salt), sec.salt, sizeof(sec.salt));
	if (n < 1)
		return false;
	sec.salt_len = (size_t)n;

	/* $<StoredKey>:<ServerKey> */
	const char *stored = dollar + 1;
	const char *colon = strchr(stored, ':');
	if (!colon)
		return false;
	const char *server = colon + 1;
	if (!b64_decode_exact(stored, colon, sec.stored_key, SCRAM_KEY_LEN) ||
	    !b64_decode_exact(server, server + strlen(server), sec.server_key, SCRAM_KEY_LEN))
		return false;

	*out = sec;
	OPENSSL_cleanse(&sec, sizeof(sec));
	return true;
}

/* ---- the exchange ------------------------------------------------------- */

/* A read position in one SCRAM message (a slice of a packet, no NUL). */
struct scram_cursor {
	const char *p;
	const char *end;
};

static bool cur_take(struct scram_cursor *c, char ch)
{
	if (c->p == c->end || *c->p != ch)
		return false;
	c->p++;
	return true;
}

/*
 * "<name>=<value>", value running to the next ',' (left unread) or the end.
 * name 0 accepts any ALPHA, as RFC 5802's attr-val does for extensions.
 */
static bool cur_attr(struct scram_cursor *c, char name, const char **val, size_t *vlen)
{
	if (c->end - c->p < 2 || c->p[1] != '=')
		return false;
	char a = c->p[0];
	if (name ? a != name : !((a >= 'A' && a <= 'Z') || (a >= 'a' && a <= 'z')))
		return false;
	const char *v = c->p + 2;
	const char *comma = memchr(v, ',', (size_t)(c->end - v));
	c->p = comma ? comma : c->end;
	*val = v;
	*vlen = (size_t)(c->p - v);
	return true;
}

/* RFC 5802 "printable": %x21-2B / %x2D-7E, i.e. visible ASCII except ','. */
static bool scram_printable(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
			return false;
	return true;
}

enum scram_result scram_server_first(struct scram_state *st, const struct scram_secret *sec,
				     const struct scram_binding *cb, const char *msg, size_t len,
				     const uint8_t server_nonce_raw[SCRAM_NONCE_RAW], char *out,
				     size_t outcap, size_t *outlen)
{
	char nonce[SCRAM_NONCE_RAW / 3 * 4 + 4];
	int n = b64_encode(server_nonce_raw, SCRAM_NONCE_RAW, nonce, sizeof(nonce));
	BERTH_ASSERT(n > 0);
	return scram_server_first_bound(st, sec, cb, msg, len, nonce, out, outcap, outlen);
}

enum scram_result scram_server_first_with_nonce(struct scram_state *st,
					       const struct scram_secret *sec, const char *msg,
					       size_t len, const char *server_nonce, char *out,
					       size_t outcap, size_t *outlen)
{
	return scram_server_first_bound(st, sec, NULL, msg, len, server_nonce, out, outcap, outlen);
}

/*
 * The gs2 header: "n" (the client does not bind), "y" (it could, but thinks
 * berth cannot) or "p=<type>" (it binds; only with -PLUS). An authzid is not
 * supported, as in PostgreSQL. Sets st->cbind_b64 to what c= must carry.
 */
static enum scram_result scram_read_gs2(struct scram_state *st, const struct scram_binding *cb,
					struct scram_cursor *c, const char *msg)
{
	static const struct scram_binding none;
	if (!cb)
		cb = &none;
	const char *v;
	size_t vlen;
	if (cb->plus) {
		if (!cur_attr(c, 'p', &v, &vlen) || vlen != strlen(SCRAM_CB_TYPE) ||
		    memcmp(v, SCRAM_CB_TYPE, vlen) != 0)
			return SCRAM_MALFORMED;
	} else if (cur_take(c, 'y')) {
		/* Someone between the two may have struck -PLUS from berth's offer. */
		if (cb->offered)
			return SCRAM_CB_DOWNGRADE;
	} else if (!cur_take(c, 'n')) {
		return SCRAM_MALFORMED; /* "p" with plain SCRAM-SHA-256, or garbage */
	}
	if (!cur_take(c, ',') || !cur_take(c, ','))
		return SCRAM_MALFORMED;
	uint8_t raw[64 + SCRAM_MAX_CB_DATA];
	size_t gs2_len = (size_t)(c->p - msg);
	size_t cb_len = cb->plus ? cb->len : 0;
	if (gs2_len + cb_len > sizeof(raw))
		return SCRAM_MALFORMED;
	memcpy(raw, msg, gs2_len);
	if (cb_len)
		memcpy(raw + gs2_len, cb->data, cb_len);
	if (b64_encode(raw, gs2_len + cb_len, st->cbind_b64, sizeof(st->cbind_b64)) < 0)
		return SCRAM_MALFORMED;
	st->bound = cb->plus;
	return SCRAM_CONTINUE;
}

enum scram_result scram_server_first_bound(struct scram_state *st, const struct scram_secret *sec,
					   const struct scram_binding *cb, const char *msg,
					   size_t len, const char *server_nonce, char *out,
					   size_t outcap, size_t *outlen)
{
	const char *v;
	size_t vlen;
	size_t snonce_len = strlen(server_nonce);

	BERTH_ASSERT(sec->iterations > 0 && sec->salt_len > 0 && sec->salt_len <= SCRAM_MAX_SALT);
	BERTH_ASSERT(snonce_len > 0 && snonce_len <= SCRAM_MAX_SERVER_NONCE &&
		     scram_printable(server_nonce, snonce_len));
	memset(st, 0, sizeof(*st));

	/* PostgreSQL refuses empty messages and embedded NULs as malformed. */
	if (len == 0 || memchr(msg, '\0', len))
		return SCRAM_MALFORMED;
	struct scram_cursor c = {msg, msg + len};

	enum scram_result gs2 = scram_read_gs2(st, cb, &c, msg);
	if (gs2 != SCRAM_CONTINUE)
		return gs2;
	const char *bare = c.p;

	/*
	 * client-first-message-bare. A leading "m=" (mandatory extension) fails
	 * the n= match. The user name is ignored, as PostgreSQL does: the startup
	 * packet's user counts, and libpq sends "n=" empty.
	 */
	if (!cur_attr(&c, 'n', &v, &vlen) || !cur_take(&c, ','))
		return SCRAM_MALFORMED;
	const char *cnonce;
	size_t cnonce_len;
	if (!cur_attr(&c, 'r', &cnonce, &cnonce_len) || cnonce_len == 0 ||
	    !scram_printable(cnonce, cnonce_len))
		return SCRAM_MALFORMED;
	/* Optional extensions after the nonce are ignored, as in PostgreSQL. */
	while (c.p != c.end)
		if (!cur_take(&c, ',') || !cur_attr(&c, 0, &v, &vlen))
			return SCRAM_MALFORMED;

	size_t bare_len = (size_t)(c.end - bare);
	if (bare_len >= sizeof(st->client_first_bare) ||
	    cnonce_len + snonce_len >= sizeof(st->nonce))
		return SCRAM_MALFORMED;

	char salt_b64[SCRAM_MAX_SALT / 3 * 4 + 8];
	if (b64_encode(sec->salt, sec->salt_len, salt_b64, sizeof(salt_b64)) < 0)
		return SCRAM_MALFORMED;
	memcpy(st->client_first_bare, bare, bare_len);
	st->client_first_bare[bare_len] = '\0';
	memcpy(st->nonce, cnonce, cnonce_len);
	memcpy(st->nonce + cnonce_len, server_nonce, snonce_len + 1);

	int n = snprintf(st->server_first, sizeof(st->server_first), "r=%s,s=%s,i=%d", st->nonce,
			 salt_b64, sec->iterations);
	if (n < 0 || (size_t)n >= sizeof(st->server_first) || (size_t)n >= outcap)
		return SCRAM_MALFORMED;
	memcpy(out, st->server_first, (size_t)n + 1);
	*outlen = (size_t)n;
	st->step = 1;
	return SCRAM_CONTINUE;
}

enum scram_result scram_server_final(struct scram_state *st, const struct scram_secret *sec,
				     const char *msg, size_t len, char *out, size_t outcap,
				     size_t *outlen)
{
	const char *v;
	size_t vlen;
	uint8_t proof[SCRAM_KEY_LEN];
	uint8_t client_sig[SCRAM_KEY_LEN];
	uint8_t client_key[SCRAM_KEY_LEN];
	uint8_t stored_check[SCRAM_KEY_LEN];
	uint8_t server_sig[SCRAM_KEY_LEN];
	char auth[sizeof(st->client_first_bare) + sizeof(st->server_first) +
		  SCRAM_MAX_FINAL_WITHOUT_PROOF + 2];
	enum scram_result res;

	if (st->step != 1)
		return SCRAM_MALFORMED;
	st->step = 2; /* one proof per exchange, whatever the outcome */
	if (outcap < SCRAM_FINAL_LEN + 1 || len == 0 || memchr(msg, '\0', len))
		return SCRAM_MALFORMED;
	struct scram_cursor c = {msg, msg + len};

	/*
	 * c=: the gs2 header of the client-first-message and, with -PLUS, the
	 * hash of berth's certificate, base64. A different hash means the
	 * client's TLS session ends somewhere else: a man in the middle.
	 */
	if (!cur_attr(&c, 'c', &v, &vlen))
		return SCRAM_MALFORMED;
	if (vlen != strlen(st->cbind_b64) || memcmp(v, st->cbind_b64, vlen) != 0)
		return st->bound ? SCRAM_CB_MISMATCH : SCRAM_MALFORMED;
	if (!cur_take(&c, ','))
		return SCRAM_MALFORMED;
	/* r=: exactly the nonce of server-first */
	if (!cur_attr(&c, 'r', &v, &vlen) || vlen != strlen(st->nonce) ||
	    memcmp(v, st->nonce, vlen) != 0)
		return SCRAM_MALFORMED;
	/* Extensions before the proof are skipped (they stay in the AuthMessage),
	 * as PostgreSQL's read_client_final_message does. */
	size_t without_proof_len;
	const char *proof_b64;
	size_t proof_b64_len;
	for (;;) {
		without_proof_len = (size_t)(c.p - msg);
		if (!cur_take(&c, ','))
			return SCRAM_MALFORMED;
		if (cur_attr(&c, 'p', &proof_b64, &proof_b64_len))
			break;
		if (!cur_attr(&c, 0, &v, &vlen))
			return SCRAM_MALFORMED;
	}
	if (c.p != c.end || without_proof_len > SCRAM_MAX_FINAL_WITHOUT_PROOF)
		return SCRAM_MALFORMED;
	int n = b64_decode(proof_b64, proof_b64_len, proof, sizeof(proof));
	if (n != SCRAM_KEY_LEN)
		return SCRAM_MALFORMED;

	/* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
	size_t bare_len = strlen(st->client_first_bare);
	size_t first_len = strlen(st->server_first);
	size_t alen = 0;
	memcpy(auth, st->client_first_bare, bare_len);
	alen += bare_len;
	auth[alen++] = ',';
	memcpy(auth + alen, st->server_first, first_len);
	alen += first_len;
	auth[alen++] = ',';
	memcpy(auth + alen, msg, without_proof_len);
	alen += without_proof_len;

	/*
	 * ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); the client
	 * knows the password iff H(ClientKey) == StoredKey. OpenSSL failures
	 * (out of memory) fail closed as a bad proof.
	 */
	res = SCRAM_BAD_PROOF;
	if (!hmac_sha256(sec->stored_key, SCRAM_KEY_LEN, auth, alen, client_sig))
		goto out;
	for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
		client_key[i] = proof[i] ^ client_sig[i];
	if (!sha256_two(client_key, SCRAM_KEY_LEN, NULL, 0, stored_check))
		goto out;
	if (CRYPTO_memcmp(stored_check, sec->stored_key, SCRAM_KEY_LEN) != 0)
		goto out;

	/* server-final-message: v=ServerSignature, proving berth knows ServerKey */
	if (!hmac_sha256(sec->server_key, SCRAM_KEY_LEN, auth, alen, server_sig))
		goto out;
	out[0] = 'v';
	out[1] = '=';
	n = b64_encode(server_sig, SCRAM_KEY_LEN, out + 2, outcap - 2);
	BERTH_ASSERT(n == SCRAM_FINAL_LEN - 2);
	*outlen = SCRAM_FINAL_LEN;
	res = SCRAM_DONE;
out:
	OPENSSL_cleanse(client_sig, sizeof(client_sig));
	OPENSSL_cleanse(client_key, sizeof(client_key));
	return res;
}
