/*
 * tls.h - TLS berth offers its clients (client_tls_*). The SSL_CTX is built
 * with the config that names it (config_load), so a reload that changes a
 * certificate takes effect for new connections only, and a bad file is a
 * configuration error before anything is served. Server-side TLS is
 * libpq's (server_tls_* become libpq keywords): not here.
 * Models: PgBouncer's client_tls_* settings and its SSLRequest handling.
 */
#ifndef BERTH_TLS_H
#define BERTH_TLS_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

#include "compiler.h"

/* client_tls_sslmode, weakest first: a mode at least TLS_REQUIRE refuses plain TCP clients. */
enum client_tls_mode {
	TLS_DISABLE = 0,
	TLS_ALLOW,
	TLS_PREFER,
	TLS_REQUIRE,
	TLS_VERIFY_CA,
	TLS_VERIFY_FULL,
};

struct client_tls_settings {
	int mode;                  /* enum client_tls_mode */
	const char *cert_file;     /* empty with key_file empty: a self-signed certificate */
	const char *key_file;
	const char *ca_file;       /* client certificates are checked against it (verify-*) */
	const char *protocols;     /* PgBouncer's words: secure, all, legacy, tlsv1.2,tlsv1.3 ... */
	const char *ciphers;       /* TLS <= 1.2 cipher list; default/secure/normal/fast = OpenSSL's */
	const char *tls13_ciphers; /* TLS 1.3 suites; empty = OpenSSL's */
	const char *ecdhcurve;     /* groups list; auto = OpenSSL's */
};

/*
 * A server-side SSL_CTX for s (s->mode must not be TLS_DISABLE). On failure
 * returns NULL, points *bad_key at the setting to blame and writes
 * "key: what went wrong" into msg.
 */
SSL_CTX *tls_client_ctx_new(const struct client_tls_settings *s, const char **bad_key, char *msg,
			    size_t len) BERTH_MUSTCHECK;
/* A TLS session on an accepted client socket, waiting for the ClientHello; NULL on failure. */
SSL *tls_client_session(SSL_CTX *ctx, int fd) BERTH_MUSTCHECK;
/*
 * verify-full: the client certificate's common name must be the user it
 * logs in as (PostgreSQL's clientcert=verify-full). False on a mismatch or
 * a certificate without a CN.
 */
bool tls_peer_cn_matches(SSL *ssl, const char *user);
/*
 * SCRAM channel binding: the tls-server-end-point hash of the certificate
 * this session showed (at most cap bytes, SCRAM_MAX_CB_DATA do). False when
 * the certificate's signature names no digest: then -PLUS is not offered.
 */
bool tls_server_end_point(SSL *ssl, uint8_t *out, size_t cap, size_t *len);
/* The handshake agreed on ALPN "postgresql" (direct TLS requires it, as PostgreSQL 17). */
bool tls_alpn_is_postgresql(SSL *ssl);

#endif
