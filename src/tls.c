/*
 * tls.c - the SSL_CTX berth's clients talk TLS with, and their sessions.
 * The record layer itself runs in sbuf.c (SSL_read/SSL_write on the
 * connection's own buffers); this file only sets things up.
 */
#include "tls.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "config.h"

static bool tls_fail(char *msg, size_t len, const char *what, const char *path)
{
	/* The first error says why (a missing file: its errno); later ones say where. */
	unsigned long e = ERR_peek_error();
	const char *reason = NULL;
	if (e && ERR_SYSTEM_ERROR(e))
		reason = strerror(ERR_GET_REASON(e));
	else if (e)
		reason = ERR_reason_error_string(e);
	if (!reason)
		reason = "failed";
	if (path)
		snprintf(msg, len, "%s \"%s\": %s", what, path, reason);
	else
		snprintf(msg, len, "%s: %s", what, reason);
	ERR_clear_error();
	return false;
}

static bool empty(const char *s)
{
	return !s || !s[0];
}

/*
 * No certificate configured: make a throwaway one, so that a zero-file
 * sidecar can still serve clients whose URL says sslmode=require. Such a
 * certificate proves nothing, which is all sslmode=require asks.
 */
static bool use_self_signed(SSL_CTX *ctx, const char **bad_key, char *msg, size_t len)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *crt = X509_new();
	bool ok = false;
	if (!key || !crt)
		goto out;
	ok = X509_set_version(crt, 2) &&
	     ASN1_INTEGER_set_int64(X509_get_serialNumber(crt), (int64_t)time(NULL)) &&
	     X509_gmtime_adj(X509_getm_notBefore(crt), -3600) &&
	     X509_gmtime_adj(X509_getm_notAfter(crt), 3650L * 24 * 3600) &&
	     X509_set_pubkey(crt, key) &&
	     X509_NAME_add_entry_by_txt(X509_get_subject_name(crt), "CN", MBSTRING_ASC,
					(const unsigned char *)"berth", -1, -1, 0) &&
	     X509_set_issuer_name(crt, X509_get_subject_name(crt)) &&
	     X509_sign(crt, key, EVP_sha256()) > 0 && SSL_CTX_use_certificate(ctx, crt) == 1 &&
	     SSL_CTX_use_PrivateKey(ctx, key) == 1;
out:
	if (!ok) {
		*bad_key = "client_tls_cert_file";
		tls_fail(msg, len, "client_tls_cert_file: could not make a self-signed certificate",
			 NULL);
	}
	X509_free(crt);
	EVP_PKEY_free(key);
	return ok;
}

static int proto_version(const char *name)
{
	static const struct {
		const char *name;
		int version;
	} map[] = {
		{"TLSv1", TLS1_VERSION},
		{"TLSv1.1", TLS1_1_VERSION},
		{"TLSv1.2", TLS1_2_VERSION},
		{"TLSv1.3", TLS1_3_VERSION},
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(map[i].name, name) == 0)
			return map[i].version;
	return 0;
}

static bool set_protocols(SSL_CTX *ctx, const char *protocols, const char **bad_key, char *msg,
			  size_t len)
{
	*bad_key = "client_tls_protocols";
	const char *lo = "TLSv1.2", *hi = "TLSv1.3";
	if (!empty(protocols) && !config_tls_protocol_range(protocols, &lo, &hi)) {
		snprintf(msg, len,
			 "client_tls_protocols: \"%s\": use secure, all, legacy, or a list of tlsv1.0, "
			 "tlsv1.1, tlsv1.2, tlsv1.3",
			 protocols);
		return false;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, proto_version(lo)) ||
	    !SSL_CTX_set_max_proto_version(ctx, proto_version(hi)))
		return tls_fail(msg, len, "client_tls_protocols", protocols);
	return true;
}

/* PgBouncer's cipher words: its named lists are OpenSSL's defaults here, except "legacy" (all). */
static const char *openssl_cipher_list(const char *ciphers)
{
	static const char *const defaults[] = {"default", "secure", "normal", "fast"};
	if (empty(ciphers))
		return NULL;
	for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
		if (strcasecmp(ciphers, defaults[i]) == 0)
			return NULL;
	if (strcasecmp(ciphers, "legacy") == 0 || strcasecmp(ciphers, "all") == 0)
		return "ALL";
	return ciphers;
}

static bool set_ciphers(SSL_CTX *ctx, const struct client_tls_settings *s, const char **bad_key,
			char *msg, size_t len)
{
	*bad_key = "client_tls_ciphers";
	const char *list = openssl_cipher_list(s->ciphers);
	if (list && SSL_CTX_set_cipher_list(ctx, list) != 1)
		return tls_fail(msg, len, "client_tls_ciphers", s->ciphers);
	*bad_key = "client_tls13_ciphers";
	if (!empty(s->tls13_ciphers) && SSL_CTX_set_ciphersuites(ctx, s->tls13_ciphers) != 1)
		return tls_fail(msg, len, "client_tls13_ciphers", s->tls13_ciphers);
	*bad_key = "client_tls_ecdhcurve";
	if (!empty(s->ecdhcurve) && strcasecmp(s->ecdhcurve, "auto") != 0 &&
	    SSL_CTX_set1_groups_list(ctx, s->ecdhcurve) != 1)
		return tls_fail(msg, len, "client_tls_ecdhcurve", s->ecdhcurve);
	return true;
}

static bool set_identity(SSL_CTX *ctx, const struct client_tls_settings *s, const char **bad_key,
			 char *msg, size_t len)
{
	if (empty(s->cert_file) && empty(s->key_file))
		return use_self_signed(ctx, bad_key, msg, len);
	*bad_key = empty(s->cert_file) ? "client_tls_key_file" : "client_tls_cert_file";
	if (empty(s->cert_file) || empty(s->key_file)) {
		snprintf(msg, len, "%s is set but %s is not: give both, or neither for a "
				   "self-signed certificate",
			 empty(s->cert_file) ? "client_tls_key_file" : "client_tls_cert_file",
			 empty(s->cert_file) ? "client_tls_cert_file" : "client_tls_key_file");
		return false;
	}
	*bad_key = "client_tls_cert_file";
	if (SSL_CTX_use_certificate_chain_file(ctx, s->cert_file) != 1)
		return tls_fail(msg, len, "client_tls_cert_file: could not load", s->cert_file);
	*bad_key = "client_tls_key_file";
	if (SSL_CTX_use_PrivateKey_file(ctx, s->key_file, SSL_FILETYPE_PEM) != 1)
		return tls_fail(msg, len, "client_tls_key_file: could not load", s->key_file);
	if (SSL_CTX_check_private_key(ctx) != 1)
		return tls_fail(msg, len, "client_tls_key_file: does not match client_tls_cert_file",
				s->key_file);
	return true;
}

static bool set_client_verification(SSL_CTX *ctx, const struct client_tls_settings *s,
				    const char **bad_key, char *msg, size_t len)
{
	if (s->mode < TLS_VERIFY_CA)
		return true; /* a certificate a client offers anyway is not checked (PgBouncer) */
	*bad_key = "client_tls_ca_file";
	if (empty(s->ca_file)) {
		*bad_key = "client_tls_sslmode";
		snprintf(msg, len, "client_tls_sslmode %s needs client_tls_ca_file",
			 s->mode == TLS_VERIFY_CA ? "verify-ca" : "verify-full");
		return false;
	}
	if (SSL_CTX_load_verify_locations(ctx, s->ca_file, NULL) != 1)
		return tls_fail(msg, len, "client_tls_ca_file: could not load", s->ca_file);
	STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(s->ca_file);
	if (names)
		SSL_CTX_set_client_CA_list(ctx, names);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	return true;
}

/* ALPN's name for PostgreSQL's protocol, in the wire format: a length byte, then the name. */
static const unsigned char alpn_postgresql[] = "\x0apostgresql";

/*
 * A client that names protocols must name PostgreSQL's; one that names
 * only others (an HTTPS client sent here, say) is refused with
 * no_application_protocol (RFC 7301), as PostgreSQL refuses it.
 */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	unsigned char *chosen = NULL;
	if (SSL_select_next_proto(&chosen, outlen, alpn_postgresql, sizeof(alpn_postgresql) - 1, in,
				  inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = chosen;
	return SSL_TLSEXT_ERR_OK;
}

bool tls_alpn_is_postgresql(SSL *ssl)
{
	const unsigned char *p = NULL;
	unsigned int n = 0;
	SSL_get0_alpn_selected(ssl, &p, &n);
	return p && n == sizeof(alpn_postgresql) - 2 && memcmp(p, alpn_postgresql + 1, n) == 0;
}

SSL_CTX *tls_client_ctx_new(const struct client_tls_settings *s, const char **bad_key, char *msg,
			    size_t len)
{
	*bad_key = "client_tls_sslmode";
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		tls_fail(msg, len, "client TLS", NULL);
		return NULL;
	}
	/*
	 * Partial writes and a moving buffer: sbuf sends from wherever its
	 * iobuf has the bytes now. Released buffers: an idle TLS client keeps
	 * no record buffers, as an idle plain one keeps no iobuf.
	 */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_RELEASE_BUFFERS);
	/*
	 * A client that just closes its socket (no close_notify) is leaving, not
	 * attacking: the protocol's own framing shows any cut-off message.
	 */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
					 SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* No resumption: libpq never resumes, so tickets would be bytes and CPU for nothing. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	if (!set_protocols(ctx, s->protocols, bad_key, msg, len) ||
	    !set_ciphers(ctx, s, bad_key, msg, len) || !set_identity(ctx, s, bad_key, msg, len) ||
	    !set_client_verification(ctx, s, bad_key, msg, len)) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

SSL *tls_client_session(SSL_CTX *ctx, int fd)
{
	SSL *ssl = SSL_new(ctx);
	if (!ssl)
		return NULL;
	if (SSL_set_fd(ssl, fd) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	SSL_set_accept_state(ssl);
	return ssl;
}

bool tls_peer_cn_matches(SSL *ssl, const char *user)
{
	X509 *crt = SSL_get1_peer_certificate(ssl);
	if (!crt)
		return false;
	char cn[256];
	int n = X509_NAME_get_text_by_NID(X509_get_subject_name(crt), NID_commonName, cn,
					  (int)sizeof(cn));
	X509_free(crt);
	return n > 0 && (size_t)n < sizeof(cn) - 1 && strcmp(cn, user) == 0;
}

/*
 * RFC 5929's tls-server-end-point: the hash of the certificate berth showed
 * this client, with its signature's digest (SHA-256 instead of MD5 or SHA-1).
 * False when there is none to use (a signature without a digest, such as
 * Ed25519's, has no end-point hash; PostgreSQL cannot bind there either).
 */
bool tls_server_end_point(SSL *ssl, uint8_t *out, size_t cap, size_t *len)
{
	X509 *crt = SSL_get_certificate(ssl); /* berth's own: not a new reference */
	int md_nid = NID_undef;
	if (!crt || !X509_get_signature_info(crt, &md_nid, NULL, NULL, NULL) ||
	    md_nid == NID_undef)
		return false;
	if (md_nid == NID_md5 || md_nid == NID_sha1)
		md_nid = NID_sha256;
	const EVP_MD *md = EVP_get_digestbynid(md_nid);
	unsigned int n = 0;
	if (!md || (size_t)EVP_MD_get_size(md) > cap || !X509_digest(crt, md, out, &n)) {
		ERR_clear_error();
		return false;
	}
	*len = n;
	return true;
}
