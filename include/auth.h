/*
 * auth.h - credentials for client authentication. Looks users up in the
 * loaded config (auth_file, DATABASE_URL) and caches what is expensive to
 * derive: a SCRAM secret from a plain password costs a PBKDF2 run, so it is
 * computed once per user and config generation, not once per login.
 */
#ifndef BERTH_AUTH_H
#define BERTH_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "md5auth.h"
#include "scram.h"

struct config;
struct worker;

struct auth_cred {
	char *user;
	const char *secret;       /* as configured (owned by the config) */
	bool is_plain;            /* secret is a plain password */
	bool have_md5;
	char md5[MD5_PASSWD_LEN + 1];
	bool have_scram;
	struct scram_secret scram;
	struct auth_cred *next;
};

struct auth_cache {
	const struct config *cfg; /* generation the entries belong to */
	struct auth_cred *head;
	uint8_t mock_key[32];     /* keys the made-up salts of unknown users */
	bool mock_key_set;
};

/* Credential for user, or NULL if unknown. Entries live until auth_cache_clear. */
const struct auth_cred *auth_lookup(struct auth_cache *cache, const struct config *cfg,
				    const char *user);
void auth_cache_clear(struct auth_cache *cache);
/*
 * A made-up SCRAM secret for an unknown user, so the exchange looks the same
 * as for a real one. The salt is derived from the user name and a per-process
 * key, so asking twice gives the same salt (as PostgreSQL does): a changing
 * salt would tell an attacker the user does not exist.
 */
void auth_mock_scram(struct auth_cache *cache, const char *user, struct scram_secret *out);
/* Check a cleartext password against any stored form. */
bool auth_check_plain(const struct auth_cred *cred, const char *password);
/* Fill buf with n random bytes (OpenSSL). */
bool auth_random(void *buf, size_t n) BERTH_MUSTCHECK;

#endif
