/*
 * scram.h - SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, on the
 * server side: berth authenticates clients itself. Pure computation on caller
 * memory (OpenSSL for HMAC/SHA-256/PBKDF2); no sockets, no events, no globals.
 * Reference: PostgreSQL manual, "SASL Authentication" -> "SCRAM-SHA-256".
 */
#ifndef BERTH_SCRAM_H
#define BERTH_SCRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

#define SCRAM_KEY_LEN 32
#define SCRAM_MAX_SALT 64
#define SCRAM_NONCE_RAW 18    /* random bytes in berth's half of the nonce */
#define SCRAM_DEFAULT_ITERATIONS 4096
#define SCRAM_MECHANISM "SCRAM-SHA-256"
#define SCRAM_PLUS_MECHANISM "SCRAM-SHA-256-PLUS"
#define SCRAM_CB_TYPE "tls-server-end-point" /* RFC 5929, the only type PostgreSQL has */
#define SCRAM_MAX_CB_DATA 64                     /* a certificate hash: up to SHA-512 */

/* What the server must know about a user: a PostgreSQL SCRAM verifier. */
struct scram_secret {
	int iterations;
	uint8_t salt[SCRAM_MAX_SALT];
	size_t salt_len;
	uint8_t stored_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
};

/*
 * Derive a secret from a plain password (SASLprep'd as PostgreSQL does: if
 * the password is not valid UTF-8 or prep fails, the raw bytes are used).
 * Expensive (PBKDF2): callers cache the result per user.
 */
bool scram_secret_from_password(const char *password, const uint8_t *salt, size_t salt_len,
				int iterations, struct scram_secret *out) BERTH_MUSTCHECK;

/* Parse "SCRAM-SHA-256$<iter>:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>". */
bool scram_secret_parse(const char *verifier, struct scram_secret *out) BERTH_MUSTCHECK;

/* True if s looks like a SCRAM verifier (starts with "SCRAM-SHA-256$"). */
bool scram_is_verifier(const char *s);

enum scram_result {
	SCRAM_CONTINUE = 0, /* send the out message, expect the next client message */
	SCRAM_DONE,         /* proof verified: send out as AuthenticationSASLFinal */
	SCRAM_BAD_PROOF,    /* wrong password: 28P01 */
	SCRAM_MALFORMED,    /* protocol violation: 08P01 */
	SCRAM_CB_DOWNGRADE, /* "y" although -PLUS was offered: 08P01 negotiation error */
	SCRAM_CB_MISMATCH,  /* c= does not carry this connection's binding: 28000 */
};

/*
 * Channel binding (SCRAM-SHA-256-PLUS over TLS). offered: the connection is
 * TLS and berth listed -PLUS; plus: the client chose -PLUS, whose
 * tls-server-end-point data (the hash of berth's certificate) is data/len.
 * A zeroed struct is a connection without TLS.
 */
struct scram_binding {
	bool offered;
	bool plus;
	const uint8_t *data;
	size_t len;
};

/* One authentication exchange; lives in the client while it logs in. */
struct scram_state {
	char client_first_bare[256]; /* kept for the AuthMessage */
	char server_first[256];      /* ditto */
	char nonce[128];             /* client nonce + server nonce */
	char cbind_b64[128];         /* what c= must be: base64 of the gs2 header (+ binding data) */
	bool bound;                  /* the client chose -PLUS */
	int step;                    /* 0 = expecting client-first, 1 = client-final, 2 = over */
};

/*
 * client-first-message (the SASLInitialResponse data) -> server-first-message.
 * out receives a NUL-terminated message of outlen bytes. server_nonce_raw is
 * SCRAM_NONCE_RAW random bytes chosen by the caller (tests pass fixed ones).
 * st needs no initialisation: this call resets it. msg is len bytes, not
 * NUL-terminated. cb: the connection's channel binding, NULL without TLS.
 * Anything but SCRAM_CONTINUE is an error (SCRAM_MALFORMED also when the
 * input does not fit st's arrays or the answer does not fit outcap).
 */
enum scram_result scram_server_first(struct scram_state *st, const struct scram_secret *sec,
				     const struct scram_binding *cb, const char *msg, size_t len,
				     const uint8_t server_nonce_raw[SCRAM_NONCE_RAW], char *out,
				     size_t outcap, size_t *outlen) BERTH_MUSTCHECK;

/*
 * scram_server_first with berth's half of the nonce given as text (printable
 * ASCII without ',', at most 64 chars) instead of raw bytes to base64-encode.
 * scram_server_first calls it; tests use it to replay RFC 7677's exchange,
 * whose server nonce is not base64.
 */
enum scram_result scram_server_first_with_nonce(struct scram_state *st,
					       const struct scram_secret *sec, const char *msg,
					       size_t len, const char *server_nonce, char *out,
					       size_t outcap, size_t *outlen) BERTH_MUSTCHECK;

/*
 * scram_server_first for a connection that may bind (cb NULL: no TLS). With
 * cb->plus the gs2 header must be "p=tls-server-end-point"; without it "p"
 * is malformed and "y" is SCRAM_CB_DOWNGRADE when -PLUS was offered. The
 * binding is checked by scram_server_final (SCRAM_CB_MISMATCH).
 */
enum scram_result scram_server_first_bound(struct scram_state *st, const struct scram_secret *sec,
					   const struct scram_binding *cb, const char *msg,
					   size_t len, const char *server_nonce, char *out,
					   size_t outcap, size_t *outlen) BERTH_MUSTCHECK;

/*
 * client-final-message -> server-final-message ("v=..."), verifying the proof.
 * sec must be the secret given to scram_server_first. One call per exchange:
 * whatever it returns, a second call is SCRAM_MALFORMED. outcap must hold 47
 * bytes; out is written only on SCRAM_DONE.
 */
enum scram_result scram_server_final(struct scram_state *st, const struct scram_secret *sec,
				     const char *msg, size_t len, char *out, size_t outcap,
				     size_t *outlen) BERTH_MUSTCHECK;

/*
 * Base64 (standard alphabet, with padding). Return bytes written, -1 on
 * overflow/bad input. b64_encode also writes a NUL after the text (not counted,
 * but it must fit in dstcap). b64_decode accepts only canonical text: length a
 * multiple of 4, '=' only as final padding, unused bits zero, no whitespace.
 */
int b64_encode(const uint8_t *src, size_t len, char *dst, size_t dstcap);
int b64_decode(const char *src, size_t len, uint8_t *dst, size_t dstcap);

#endif
