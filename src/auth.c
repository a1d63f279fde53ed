/*
 * auth.c - credential lookup and the per-user cache of derived secrets.
 * Never blocks the loop for long: the one PBKDF2 run per user happens on
 * that user's first login (a few ms), never per login.
 */
#include "auth.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

/*
 * Random bytes come from OpenSSL's CSPRNG a block at a time: each RAND_bytes
 * call costs about 6,000 instructions of provider dispatch and locking
 * whatever its size, and a login needs three small pieces (the SCRAM nonce,
 * the cancel key). Bytes handed out are wiped from the block at once. One
 * block per thread; berth never forks, so no two processes share one.
 */
#define RANDOM_BLOCK 512
static _Thread_local struct {
	uint8_t bytes[RANDOM_BLOCK];
	size_t left; /* unread bytes, at the end of the block */
} rnd;

bool auth_random(void *buf, size_t n)
{
	if (n > RANDOM_BLOCK / 4)
		return RAND_bytes(buf, (int)n) == 1;
	if (rnd.left < n) {
		if (RAND_bytes(rnd.bytes, RANDOM_BLOCK) != 1)
			return false;
		rnd.left = RANDOM_BLOCK;
	}
	uint8_t *p = rnd.bytes + RANDOM_BLOCK - rnd.left;
	memcpy(buf, p, n);
	explicit_bzero(p, n);
	rnd.left -= n;
	return true;
}

void auth_cache_clear(struct auth_cache *cache)
{
	struct auth_cred *c = cache->head;
	while (c) {
		struct auth_cred *next = c->next;
		explicit_bzero(&c->scram, sizeof(c->scram));
		explicit_bzero(c->md5, sizeof(c->md5));
		free(c->user);
		free(c);
		c = next;
	}
	cache->head = NULL;
	cache->cfg = NULL;
}

static bool auth_fill(struct auth_cred *c, const char *user, const char *secret)
{
	c->secret = secret;
	if (scram_is_verifier(secret)) {
		c->have_scram = scram_secret_parse(secret, &c->scram);
		return c->have_scram;
	}
	if (md5_is_stored(secret)) {
		c->have_md5 = true;
		memcpy(c->md5, secret, MD5_PASSWD_LEN + 1);
		return true;
	}
	c->is_plain = true;
	c->have_md5 = true;
	md5_stored_from_password(secret, user, c->md5);
	uint8_t salt[16];
	if (!auth_random(salt, sizeof(salt)))
		return false;
	c->have_scram = scram_secret_from_password(secret, salt, sizeof(salt),
						   SCRAM_DEFAULT_ITERATIONS, &c->scram);
	return c->have_scram;
}

const struct auth_cred *auth_lookup(struct auth_cache *cache, const struct config *cfg,
				    const char *user)
{
	if (cache->cfg != cfg) {
		auth_cache_clear(cache);
		cache->cfg = cfg;
	}
	for (struct auth_cred *c = cache->head; c; c = c->next)
		if (strcmp(c->user, user) == 0)
			return c;
	const struct auth_entry *e = config_find_auth(cfg, user);
	if (!e)
		return NULL;
	struct auth_cred *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->user = strdup(user);
	if (!c->user || !auth_fill(c, user, e->secret)) {
		free(c->user);
		free(c);
		return NULL;
	}
	c->next = cache->head;
	cache->head = c;
	return c;
}

void auth_mock_scram(struct auth_cache *cache, const char *user, struct scram_secret *out)
{
	memset(out, 0, sizeof(*out));
	out->iterations = SCRAM_DEFAULT_ITERATIONS;
	out->salt_len = 16;
	if (!cache->mock_key_set)
		cache->mock_key_set = auth_random(cache->mock_key, sizeof(cache->mock_key));
	uint8_t mac[EVP_MAX_MD_SIZE];
	unsigned maclen = 0;
	if (!HMAC(EVP_sha256(), cache->mock_key, sizeof(cache->mock_key), (const uint8_t *)user,
		  strlen(user), mac, &maclen) ||
	    maclen < out->salt_len)
		memset(mac, 0x5A, sizeof(mac));
	memcpy(out->salt, mac, out->salt_len);
	/* Random keys: no proof can match them. */
	if (!auth_random(out->stored_key, SCRAM_KEY_LEN) || !auth_random(out->server_key, SCRAM_KEY_LEN))
		memset(out->stored_key, 0xA5, SCRAM_KEY_LEN);
}

bool auth_check_plain(const struct auth_cred *cred, const char *password)
{
	if (cred->is_plain) {
		size_t a = strlen(cred->secret), b = strlen(password);
		return a == b && secret_equal(cred->secret, password, a);
	}
	if (cred->have_md5) {
		char md5[MD5_PASSWD_LEN + 1];
		md5_stored_from_password(password, cred->user, md5);
		return secret_equal(md5, cred->md5, MD5_PASSWD_LEN);
	}
	if (cred->have_scram) {
		struct scram_secret s;
		if (!scram_secret_from_password(password, cred->scram.salt, cred->scram.salt_len,
						cred->scram.iterations, &s))
			return false;
		bool ok = secret_equal(s.stored_key, cred->scram.stored_key, SCRAM_KEY_LEN);
		explicit_bzero(&s, sizeof(s));
		return ok;
	}
	return false;
}
