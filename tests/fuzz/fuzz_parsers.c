/*
 * fuzz_parsers.c - libFuzzer target for the parsers that read bytes a client
 * (or a server) controls, without sockets: the message header and body
 * readers, ErrorResponse fields, the SQL classifier, the startup "options"
 * value, base64, SCRAM verifiers and both SCRAM client messages. The first
 * input byte picks the parser. Besides the sanitizers' checks it asserts
 * properties: readers never move past the end, base64 round-trips, the
 * classifier's name lies inside the text, SCRAM never accepts a proof made
 * without the password, an auth_hba_file either loads or names its line.
 * Built and run by scripts/fuzz (clang, libFuzzer, ASan+UBSan).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/un.h>
#include <unistd.h>

#include "codec.h"
#include "hba.h"
#include "params.h"
#include "scram.h"
#include "sqlscan.h"

#define CHECK(cond)                                                                            \
	do {                                                                                   \
		if (!(cond)) {                                                                 \
			fprintf(stderr, "fuzz_parsers: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                               \
		}                                                                              \
	} while (0)

/* Walk a buffer as a stream of typed messages and read every body to its end. */
static void fuzz_messages(const uint8_t *d, size_t n)
{
	size_t off = 0;
	while (off < n) {
		struct pkt_hdr h;
		if (codec_read_header(d + off, n - off, 1 << 20, &h) != HDR_OK)
			return;
		CHECK(h.total_len >= PKT_HDR_LEN);
		if (h.total_len > n - off)
			return;
		const uint8_t *body = d + off + PKT_HDR_LEN;
		size_t blen = h.total_len - PKT_HDR_LEN;
		struct pkt_reader r;
		reader_init(&r, body, blen);
		while (!r.failed && reader_remaining(&r) > 0) {
			switch (reader_u8(&r) % 4) {
			case 0: {
				const char *s = reader_cstr(&r);
				CHECK(r.failed || (s >= (const char *)body && s < (const char *)body + blen));
				break;
			}
			case 1:
				(void)reader_u16(&r);
				break;
			case 2:
				(void)reader_u32(&r);
				break;
			default:
				(void)reader_bytes(&r, reader_remaining(&r) / 2);
				break;
			}
			CHECK(r.p <= r.end);
		}
		char code[6];
		if (codec_error_sqlstate(body, blen, code))
			CHECK(strlen(code) == 5);
		off += h.total_len;
	}
}

static void fuzz_sql(const uint8_t *d, size_t n)
{
	struct sqlscan_name nm;
	unsigned f = sqlscan_classify((const char *)d, n, &nm);
	CHECK(strlen(nm.name) < sizeof(nm.name));
	if (f & (SQL_DEALLOCATE_NAME | SQL_PREPARE_NAME | SQL_EXECUTE_NAME) && nm.name[0])
		CHECK(nm.off <= n && nm.len <= n - nm.off);
}

static bool count_option(void *arg, const char *name, const char *value)
{
	CHECK(name && value && name[0]);
	(*(int *)arg)++;
	return true;
}

static void fuzz_options(const uint8_t *d, size_t n)
{
	char *s = strndup((const char *)d, n);
	if (!s)
		return;
	char err[256];
	int count = 0;
	if (!params_parse_options(s, count_option, &count, err, sizeof(err)))
		CHECK(err[0]);
	free(s);
}

static void fuzz_base64(const uint8_t *d, size_t n)
{
	uint8_t bin[1024];
	char text[1400];
	int m = b64_decode((const char *)d, n, bin, sizeof(bin));
	if (m >= 0) {
		/* Canonical input only: encoding the bytes again gives the same text. */
		int k = b64_encode(bin, (size_t)m, text, sizeof(text));
		CHECK(k == (int)n && memcmp(text, d, n) == 0);
	}
	if (n <= sizeof(bin) / 2) {
		int k = b64_encode(d, n, text, sizeof(text));
		CHECK(k >= 0);
		CHECK(b64_decode(text, (size_t)k, bin, sizeof(bin)) == (int)n && memcmp(bin, d, n) == 0);
	}
}

static void fuzz_verifier(const uint8_t *d, size_t n)
{
	char *s = strndup((const char *)d, n);
	if (!s)
		return;
	struct scram_secret sec;
	if (scram_secret_parse(s, &sec))
		CHECK(sec.iterations > 0 && sec.salt_len <= sizeof(sec.salt));
	(void)scram_is_verifier(s);
	free(s);
}

/* One SCRAM exchange against a fixed secret; the input holds both client messages. */
static void fuzz_scram(const uint8_t *d, size_t n)
{
	static struct scram_secret sec;
	static bool have_secret;
	if (!have_secret) {
		static const uint8_t salt[16] = "fuzz-salt-16-byt";
		CHECK(scram_secret_from_password("fuzz password", salt, sizeof(salt), 4096, &sec));
		have_secret = true;
	}
	const uint8_t *cut = memchr(d, 0xff, n);
	size_t first_len = cut ? (size_t)(cut - d) : n;
	struct scram_state st;
	char out[512];
	size_t outlen = 0;
	static const uint8_t nonce[SCRAM_NONCE_RAW] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
	/* As over TLS with -PLUS offered; a leading 'p' plays the client that chose it. */
	static const uint8_t cert_hash[32] = {42};
	struct scram_binding cb = {true, first_len > 0 && d[0] == 'p', cert_hash, sizeof(cert_hash)};
	if (scram_server_first(&st, &sec, &cb, (const char *)d, first_len, nonce, out, sizeof(out),
			       &outlen) != SCRAM_CONTINUE)
		return;
	CHECK(outlen < sizeof(out) && out[outlen] == 0);
	if (!cut)
		return;
	const char *final = (const char *)cut + 1;
	size_t final_len = n - first_len - 1;
	/* Without the password no proof can be right (2^-256 aside). */
	CHECK(scram_server_final(&st, &sec, final, final_len, out, sizeof(out), &outlen) !=
	      SCRAM_DONE);
	/* And the exchange is over: a second proof is refused whatever it says. */
	CHECK(scram_server_final(&st, &sec, final, final_len, out, sizeof(out), &outlen) ==
	      SCRAM_MALFORMED);
}

/*
 * An auth_hba_file: it loads, or fails naming its line; loaded rules match
 * logins without reading past themselves. No "@" (an @file could name
 * /dev/zero: an operator's own foot, not the parser's).
 */
static void fuzz_hba(const uint8_t *d, size_t n)
{
	if (memchr(d, '@', n))
		return;
	int fd = memfd_create("hba", 0);
	CHECK(fd >= 0);
	CHECK(write(fd, d, n) == (ssize_t)n);
	char path[64], err[512] = "";
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	struct hba *h = hba_load(path, err, sizeof(err));
	close(fd);
	if (!h) {
		CHECK(strncmp(err, path, strlen(path)) == 0);
		return;
	}
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	struct sockaddr_in in = {.sin_family = AF_INET};
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
	in.sin_addr.s_addr = htonl(0x7f000001);
	CHECK(inet_pton(AF_INET6, "::ffff:10.0.0.1", &in6.sin6_addr) == 1);
	const struct sockaddr *addrs[] = {(const struct sockaddr *)&un, (const struct sockaddr *)&in,
					  (const struct sockaddr *)&in6};
	for (size_t a = 0; a < 3; a++) {
		for (int tls = 0; tls < 2; tls++) {
			const struct hba_rule *r = hba_match(h, addrs[a], tls, "app", "app");
			CHECK(!r || (r >= h->rules && r < h->rules + h->n && r->method <= HBA_PEER));
		}
	}
	hba_free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const uint8_t *d = data + 1;
	size_t n = size - 1;
	switch (data[0] % 7) {
	case 0:
		fuzz_messages(d, n);
		break;
	case 1:
		fuzz_sql(d, n);
		break;
	case 2:
		fuzz_options(d, n);
		break;
	case 3:
		fuzz_base64(d, n);
		break;
	case 4:
		fuzz_verifier(d, n);
		break;
	case 6:
		fuzz_hba(d, n);
		break;
	default:
		fuzz_scram(d, n);
		break;
	}
	return 0;
}
