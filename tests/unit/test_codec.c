/*
 * test_codec.c - unit tests for codec.c: the header reader (split at every
 * byte, bad lengths), the bounds-checked body reader, every codec_write_*
 * message against bytes written out by hand from the PostgreSQL manual
 * ("Message Formats"), writer overflow and codec_error_sqlstate.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec.h"

#define MAX_PKT 8192

/* ---- header reader ------------------------------------------------------ */

static void test_header_short_then_ok(void **state)
{
	(void)state;
	/* Query "SELECT 1": 'Q', Int32 13 (4 + 9), "SELECT 1\0" */
	static const uint8_t q[] = {'Q', 0, 0, 0, 13, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0};
	struct pkt_hdr h;
	for (size_t avail = 0; avail < PKT_HDR_LEN; avail++)
		assert_int_equal(codec_read_header(q, avail, MAX_PKT, &h), HDR_SHORT);
	for (size_t avail = PKT_HDR_LEN; avail <= sizeof(q); avail++) {
		memset(&h, 0, sizeof(h));
		assert_int_equal(codec_read_header(q, avail, MAX_PKT, &h), HDR_OK);
		assert_int_equal(h.type, 'Q');
		assert_int_equal(h.total_len, sizeof(q));
	}
}

static void test_header_bad_len(void **state)
{
	(void)state;
	uint8_t b[PKT_HDR_LEN] = {'X', 0, 0, 0, 0};
	struct pkt_hdr h;
	for (uint32_t len = 0; len < 4; len++) {
		be32_write(b + 1, len);
		assert_int_equal(codec_read_header(b, sizeof(b), MAX_PKT, &h), HDR_BAD_LEN);
	}
	/* 4 is the smallest legal length: a message with an empty body */
	be32_write(b + 1, 4);
	assert_int_equal(codec_read_header(b, sizeof(b), MAX_PKT, &h), HDR_OK);
	assert_int_equal(h.total_len, 5);

	/* max_len bounds the total length, type byte included */
	be32_write(b + 1, MAX_PKT - 1);
	assert_int_equal(codec_read_header(b, sizeof(b), MAX_PKT, &h), HDR_OK);
	assert_int_equal(h.total_len, MAX_PKT);
	be32_write(b + 1, MAX_PKT);
	assert_int_equal(codec_read_header(b, sizeof(b), MAX_PKT, &h), HDR_BAD_LEN);
	be32_write(b + 1, 0x80000000u);
	assert_int_equal(codec_read_header(b, sizeof(b), MAX_PKT, &h), HDR_BAD_LEN);
	be32_write(b + 1, 0xffffffffu);
	assert_int_equal(codec_read_header(b, sizeof(b), MAX_PKT, &h), HDR_BAD_LEN);

	/*
	 * The largest length word with no limit at all: on 64-bit the total is
	 * 2^32; where size_t is 32 bits, len + 1 would wrap to 0, so it must be
	 * refused rather than reported as a 0-byte message.
	 */
	assert_int_equal(codec_read_header(b, sizeof(b), SIZE_MAX, &h),
			 SIZE_MAX > 0xffffffffu ? HDR_OK : HDR_BAD_LEN);
	if (SIZE_MAX > 0xffffffffu)
		assert_true(h.total_len == (size_t)0xffffffffu + 1);
	/* a limit below the header size refuses everything */
	be32_write(b + 1, 4);
	assert_int_equal(codec_read_header(b, sizeof(b), 4, &h), HDR_BAD_LEN);
	assert_int_equal(codec_read_header(b, sizeof(b), 0, &h), HDR_BAD_LEN);
}

/* A stream of messages, parsed the way a relay does: header, then body. */
static const uint8_t stream[] = {
	'Z', 0, 0, 0, 5, 'I',                              /* ReadyForQuery */
	'Q', 0, 0, 0, 13, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0, /* Query */
	'X', 0, 0, 0, 4,                                   /* Terminate, empty body */
	'S', 0, 0, 0, 10, 'a', 0, 'b', 'c', 'd', 0,        /* ParameterStatus */
};
static const struct {
	uint8_t type;
	size_t total;
} stream_msgs[] = {{'Z', 6}, {'Q', 14}, {'X', 5}, {'S', 11}};

/*
 * Feed the stream in chunks whose boundaries are `cuts` and parse with a
 * small accumulating buffer; every message must come out whole, once.
 */
static void parse_in_chunks(const size_t *cuts, size_t ncuts)
{
	uint8_t buf[sizeof(stream)];
	size_t have = 0, fed = 0, msg = 0;
	for (size_t c = 0; c <= ncuts; c++) {
		size_t upto = c < ncuts ? cuts[c] : sizeof(stream);
		memcpy(buf + have, stream + fed, upto - fed);
		have += upto - fed;
		fed = upto;
		for (;;) {
			struct pkt_hdr h;
			enum hdr_result r = codec_read_header(buf, have, MAX_PKT, &h);
			if (r == HDR_SHORT) {
				assert_true(have < PKT_HDR_LEN);
				break;
			}
			assert_int_equal(r, HDR_OK);
			if (h.total_len > have)
				break; /* WAIT: body incomplete */
			assert_true(msg < sizeof(stream_msgs) / sizeof(stream_msgs[0]));
			assert_int_equal(h.type, stream_msgs[msg].type);
			assert_int_equal(h.total_len, stream_msgs[msg].total);
			msg++;
			memmove(buf, buf + h.total_len, have - h.total_len);
			have -= h.total_len;
		}
	}
	assert_int_equal(msg, sizeof(stream_msgs) / sizeof(stream_msgs[0]));
	assert_int_equal(have, 0);
}

static void test_header_split_every_offset(void **state)
{
	(void)state;
	/* one split at every offset */
	for (size_t k = 0; k <= sizeof(stream); k++)
		parse_in_chunks(&k, 1);
	/* two splits at every pair of offsets */
	for (size_t a = 0; a <= sizeof(stream); a++)
		for (size_t b = a; b <= sizeof(stream); b++) {
			size_t cuts[2] = {a, b};
			parse_in_chunks(cuts, 2);
		}
	/* one byte at a time */
	size_t cuts[sizeof(stream)];
	for (size_t k = 0; k < sizeof(stream); k++)
		cuts[k] = k + 1;
	parse_in_chunks(cuts, sizeof(stream));
}

/* ---- body reader -------------------------------------------------------- */

/* A heap copy of exactly len bytes, so valgrind/ASan see any over-read. */
static uint8_t *exact_copy(const void *src, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);
	assert_non_null(p);
	if (len)
		memcpy(p, src, len);
	return p;
}

static void test_reader_fields(void **state)
{
	(void)state;
	static const uint8_t body[] = {0xab, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef,
				       'h',  'i',  0,    0,    'x',  'y',  'z'};
	uint8_t *b = exact_copy(body, sizeof(body));
	struct pkt_reader r;
	reader_init(&r, b, sizeof(body));
	assert_int_equal(reader_remaining(&r), sizeof(body));
	assert_int_equal(reader_u8(&r), 0xab);
	assert_int_equal(reader_u16(&r), 0x1234);
	assert_int_equal(reader_u32(&r), 0xdeadbeefu);
	assert_string_equal(reader_cstr(&r), "hi");
	assert_string_equal(reader_cstr(&r), ""); /* an empty string is one NUL */
	const uint8_t *p = reader_bytes(&r, 3);
	assert_non_null(p);
	assert_memory_equal(p, "xyz", 3);
	assert_int_equal(reader_remaining(&r), 0);
	assert_false(r.failed);
	/* zero bytes at the end is fine */
	assert_non_null(reader_bytes(&r, 0));
	assert_false(r.failed);
	/* and then nothing more */
	assert_int_equal(reader_u8(&r), 0);
	assert_true(r.failed);
	free(b);
}

static void test_reader_short_bodies(void **state)
{
	(void)state;
	static const uint8_t body[] = {1, 2, 3, 4, 5, 6, 7, 8};
	struct pkt_reader r;

	for (size_t len = 0; len < 1; len++) {
		uint8_t *b = exact_copy(body, len);
		reader_init(&r, b, len);
		assert_int_equal(reader_u8(&r), 0);
		assert_true(r.failed);
		free(b);
	}
	for (size_t len = 0; len < 2; len++) {
		uint8_t *b = exact_copy(body, len);
		reader_init(&r, b, len);
		assert_int_equal(reader_u16(&r), 0);
		assert_true(r.failed);
		assert_int_equal(reader_remaining(&r), len); /* a failed read consumes nothing */
		free(b);
	}
	for (size_t len = 0; len < 4; len++) {
		uint8_t *b = exact_copy(body, len);
		reader_init(&r, b, len);
		assert_int_equal(reader_u32(&r), 0);
		assert_true(r.failed);
		free(b);
	}
	for (size_t len = 0; len < sizeof(body); len++) {
		uint8_t *b = exact_copy(body, len);
		reader_init(&r, b, len);
		assert_null(reader_bytes(&r, len + 1));
		assert_true(r.failed);
		reader_init(&r, b, len);
		assert_null(reader_bytes(&r, SIZE_MAX));
		assert_true(r.failed);
		free(b);
	}
	/* a string without its NUL: every length, including empty */
	static const char text[] = "unterminated";
	for (size_t len = 0; len < sizeof(text) - 1; len++) {
		uint8_t *b = exact_copy(text, len);
		reader_init(&r, b, len);
		assert_null(reader_cstr(&r));
		assert_true(r.failed);
		free(b);
	}
	/* the NUL as the very last byte is enough */
	uint8_t *b = exact_copy(text, sizeof(text));
	reader_init(&r, b, sizeof(text));
	assert_string_equal(reader_cstr(&r), text);
	assert_false(r.failed);
	free(b);
}

static void test_reader_failure_is_sticky(void **state)
{
	(void)state;
	static const uint8_t body[] = {'a', 0, 1, 2, 3};
	uint8_t *b = exact_copy(body, sizeof(body));
	struct pkt_reader r;
	reader_init(&r, b, sizeof(body));
	assert_int_equal(reader_u32(&r), 0x61000102u);
	assert_int_equal(reader_u16(&r), 0); /* one byte left: fails */
	assert_true(r.failed);
	/* later reads that would fit still fail: the message is broken */
	assert_int_equal(reader_u8(&r), 0);
	assert_null(reader_bytes(&r, 0));
	assert_null(reader_cstr(&r));
	assert_true(r.failed);
	free(b);
}

/* ---- writer ------------------------------------------------------------- */

typedef bool (*write_fn)(struct pkt_writer *w);

static bool w_auth_ok(struct pkt_writer *w)
{
	return codec_write_auth_request(w, 0, NULL, 0);
}

static bool w_auth_md5(struct pkt_writer *w)
{
	static const uint8_t salt[4] = {0x01, 0x02, 0x03, 0x04};
	return codec_write_auth_request(w, 5, salt, sizeof(salt));
}

static bool w_auth_sasl(struct pkt_writer *w)
{
	static const char mech[] = "SCRAM-SHA-256\0"; /* list ends with an empty name */
	return codec_write_auth_request(w, 10, mech, sizeof(mech));
}

static bool w_param(struct pkt_writer *w)
{
	return codec_write_parameter_status(w, "client_encoding", "UTF8");
}

static bool w_key(struct pkt_writer *w)
{
	return codec_write_backend_key(w, 0x00003039u, 0xdeadbeefu);
}

static bool w_ready(struct pkt_writer *w)
{
	return codec_write_ready(w, 'T');
}

static bool w_error(struct pkt_writer *w)
{
	return codec_write_error(w, 'E', "FATAL", "28P01", "bad password");
}

static bool w_notice(struct pkt_writer *w)
{
	return codec_write_error(w, 'N', "WARNING", "01000", "w");
}

static bool w_query(struct pkt_writer *w)
{
	return codec_write_query(w, "SELECT 1");
}

static bool w_negotiate(struct pkt_writer *w)
{
	static const char *const opts[] = {"_pq_.a", "_pq_.bc"};
	return codec_write_negotiate_version(w, 0, opts, 2);
}

static bool w_negotiate_none(struct pkt_writer *w)
{
	return codec_write_negotiate_version(w, 2, NULL, 0);
}

static bool w_terminate(struct pkt_writer *w)
{
	return codec_write_terminate(w);
}

/* StartupMessage: untyped, Int32 length, Int32 196608, name/value pairs, NUL. */
static bool w_startup(struct pkt_writer *w)
{
	writer_begin(w, 0);
	writer_u32(w, PROTO_V3);
	writer_cstr(w, "user");
	writer_cstr(w, "bob");
	writer_u8(w, 0);
	writer_end(w);
	return writer_ok(w);
}

struct expected_msg {
	const char *name;
	write_fn fn;
	const uint8_t *bytes;
	size_t len;
};

/* Hand-written from "Message Formats"; lengths count themselves, not the type. */
static const uint8_t x_auth_ok[] = {'R', 0, 0, 0, 8, 0, 0, 0, 0};
static const uint8_t x_auth_md5[] = {'R', 0, 0, 0, 12, 0, 0, 0, 5, 0x01, 0x02, 0x03, 0x04};
static const uint8_t x_auth_sasl[] = {'R', 0,   0,   0,   23,  0,   0,   0,   10,  'S', 'C', 'R',
				      'A', 'M', '-', 'S', 'H', 'A', '-', '2', '5', '6', 0,   0};
static const uint8_t x_param[] = {'S', 0,   0,   0,   25,  'c', 'l', 'i', 'e', 'n', 't', '_', 'e',
				  'n', 'c', 'o', 'd', 'i', 'n', 'g', 0,   'U', 'T', 'F', '8', 0};
static const uint8_t x_key[] = {'K', 0, 0, 0, 12, 0x00, 0x00, 0x30, 0x39, 0xde, 0xad, 0xbe, 0xef};
static const uint8_t x_ready[] = {'Z', 0, 0, 0, 5, 'T'};
static const uint8_t x_error[] = {'E', 0,   0,   0,   40,  'S', 'F', 'A', 'T', 'A', 'L', 0,
				  'V', 'F', 'A', 'T', 'A', 'L', 0,   'C', '2', '8', 'P', '0',
				  '1', 0,   'M', 'b', 'a', 'd', ' ', 'p', 'a', 's', 's', 'w',
				  'o', 'r', 'd', 0,   0};
static const uint8_t x_notice[] = {'N', 0,   0,   0,   33,  'S', 'W', 'A', 'R', 'N', 'I', 'N',
				   'G', 0,   'V', 'W', 'A', 'R', 'N', 'I', 'N', 'G', 0,   'C',
				   '0', '1', '0', '0', '0', 0,   'M', 'w', 0,   0};
static const uint8_t x_query[] = {'Q', 0, 0, 0, 13, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0};
static const uint8_t x_negotiate[] = {'v', 0,   0,   0,   27,  0,   0,   0,   0,   0,
				      0,   0,   2,   '_', 'p', 'q', '_', '.', 'a', 0,
				      '_', 'p', 'q', '_', '.', 'b', 'c', 0};
static const uint8_t x_negotiate_none[] = {'v', 0, 0, 0, 12, 0, 0, 0, 2, 0, 0, 0, 0};
static const uint8_t x_terminate[] = {'X', 0, 0, 0, 4};
static const uint8_t x_startup[] = {0,   0,   0, 18,  0,   3,   0, 0, 'u',
				    's', 'e', 'r', 0, 'b', 'o', 'b', 0, 0};

#define EXPECT(fn, x) {#fn, fn, x, sizeof(x)}
static const struct expected_msg expected[] = {
	EXPECT(w_auth_ok, x_auth_ok),       EXPECT(w_auth_md5, x_auth_md5),
	EXPECT(w_auth_sasl, x_auth_sasl),   EXPECT(w_param, x_param),
	EXPECT(w_key, x_key),               EXPECT(w_ready, x_ready),
	EXPECT(w_error, x_error),           EXPECT(w_notice, x_notice),
	EXPECT(w_query, x_query),           EXPECT(w_negotiate, x_negotiate),
	EXPECT(w_negotiate_none, x_negotiate_none), EXPECT(w_terminate, x_terminate),
	EXPECT(w_startup, x_startup),
};
#undef EXPECT

static void test_writer_messages(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
		const struct expected_msg *e = &expected[i];
		uint8_t buf[256];
		struct pkt_writer w;
		print_message("  %s\n", e->name);
		writer_init(&w, buf, sizeof(buf));
		assert_true(e->fn(&w));
		assert_true(writer_ok(&w));
		assert_int_equal(w.len, e->len);
		assert_memory_equal(buf, e->bytes, e->len);

		/* typed messages read back through the header reader */
		if (e->bytes[0] != 0) {
			struct pkt_hdr h;
			assert_int_equal(codec_read_header(buf, w.len, MAX_PKT, &h), HDR_OK);
			assert_int_equal(h.type, e->bytes[0]);
			assert_int_equal(h.total_len, e->len);
		} else {
			assert_int_equal(be32_read(buf), e->len);
		}
	}
}

/* Several messages in one buffer, each with its own length word. */
static void test_writer_appends(void **state)
{
	(void)state;
	uint8_t buf[256];
	struct pkt_writer w;
	writer_init(&w, buf, sizeof(buf));
	assert_true(w_auth_ok(&w));
	assert_true(w_param(&w));
	assert_true(w_key(&w));
	assert_true(w_ready(&w));
	size_t off = 0;
	assert_memory_equal(buf + off, x_auth_ok, sizeof(x_auth_ok));
	off += sizeof(x_auth_ok);
	assert_memory_equal(buf + off, x_param, sizeof(x_param));
	off += sizeof(x_param);
	assert_memory_equal(buf + off, x_key, sizeof(x_key));
	off += sizeof(x_key);
	assert_memory_equal(buf + off, x_ready, sizeof(x_ready));
	off += sizeof(x_ready);
	assert_int_equal(w.len, off);
}

/* Every capacity short of the message: false, nothing written past cap. */
static void test_writer_overflow(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
		const struct expected_msg *e = &expected[i];
		for (size_t cap = 0; cap <= e->len; cap++) {
			uint8_t buf[256];
			memset(buf, 0xee, sizeof(buf));
			struct pkt_writer w;
			writer_init(&w, buf, cap);
			bool ok = e->fn(&w);
			if (cap < e->len) {
				if (ok)
					fail_msg("%s fit in %zu bytes, needs %zu", e->name, cap, e->len);
				assert_false(writer_ok(&w));
				assert_true(w.overflow);
				assert_true(w.len <= cap);
			} else {
				assert_true(ok);
				assert_memory_equal(buf, e->bytes, e->len);
			}
			for (size_t k = cap; k < sizeof(buf); k++)
				assert_int_equal(buf[k], 0xee);
		}
	}

	/* overflow is sticky: a later message that would fit still fails */
	uint8_t buf[16];
	struct pkt_writer w;
	writer_init(&w, buf, sizeof(buf));
	assert_false(w_query(&w) && w_query(&w));
	assert_false(w_terminate(&w));
	assert_false(writer_ok(&w));
}

/* ---- codec_error_sqlstate ----------------------------------------------- */

static void test_error_sqlstate(void **state)
{
	(void)state;
	char out[6];

	/* the body of x_error: after type and length */
	const uint8_t *body = x_error + PKT_HDR_LEN;
	size_t len = sizeof(x_error) - PKT_HDR_LEN;
	uint8_t *b = exact_copy(body, len);
	assert_ptr_equal(codec_error_sqlstate(b, len, out), out);
	assert_string_equal(out, "28P01");

	/* truncated anywhere before the C value's NUL: not found, no over-read */
	size_t c_end = 0;
	for (size_t k = 1; k < len; k++)
		if (body[k] == 'C' && body[k - 1] == 0) {
			c_end = k + 1 + 6;
			break;
		}
	assert_int_equal(c_end, 21); /* S and V fields, then C, 5 chars and NUL */
	for (size_t cut = 0; cut < len; cut++) {
		uint8_t *t = exact_copy(body, cut);
		const char *res = codec_error_sqlstate(t, cut, out);
		if (cut < c_end)
			assert_null(res);
		else
			assert_string_equal(res, "28P01");
		free(t);
	}
	free(b);

	/* a PostgreSQL-shaped ErrorResponse with C not first */
	static const uint8_t pg[] = "SFATAL\0VFATAL\0C3D000\0Mdatabase \"x\" does not exist\0"
				    "Fpostinit.c\0L1015\0RInitPostgres\0";
	assert_string_equal(codec_error_sqlstate(pg, sizeof(pg), out), "3D000");

	static const struct {
		const char *name;
		const uint8_t *body;
		size_t len;
	} bad[] = {
		{"empty", (const uint8_t *)"", 0},
		{"terminator only", (const uint8_t *)"", 1},
		{"no C field", (const uint8_t *)"SERROR\0Mboom\0", 14},
		{"C too short", (const uint8_t *)"C2800\0", 7},
		{"C too long", (const uint8_t *)"C28P011\0", 9},
		{"C empty", (const uint8_t *)"C\0", 3},
		{"C unterminated", (const uint8_t *)"C28P01", 6},
		{"field unterminated before C", (const uint8_t *)"SERROR", 6},
		{"C after terminator", (const uint8_t *)"SERROR\0\0C28P01\0", 16},
		{"type byte only", (const uint8_t *)"C", 1},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t *t = exact_copy(bad[i].body, bad[i].len);
		memset(out, 'z', sizeof(out));
		if (codec_error_sqlstate(t, bad[i].len, out) != NULL)
			fail_msg("found a SQLSTATE in %s", bad[i].name);
		free(t);
	}
}

/* Round trip: what codec_write_error writes, codec_error_sqlstate finds. */
static void test_error_round_trip(void **state)
{
	(void)state;
	static const char *const codes[] = {"08P01", "28P01", "53300", "57P01", "XX000"};
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		uint8_t buf[128];
		struct pkt_writer w;
		char out[6];
		writer_init(&w, buf, sizeof(buf));
		assert_true(codec_write_error(&w, 'E', "ERROR", codes[i], "m"));
		struct pkt_hdr h;
		assert_int_equal(codec_read_header(buf, w.len, MAX_PKT, &h), HDR_OK);
		assert_int_equal(h.total_len, w.len);
		assert_string_equal(codec_error_sqlstate(buf + PKT_HDR_LEN, h.total_len - PKT_HDR_LEN,
							 out),
				    codes[i]);
	}
}

static void test_be_helpers(void **state)
{
	(void)state;
	uint8_t b[4];
	be32_write(b, 0x01020304u);
	assert_memory_equal(b, "\x01\x02\x03\x04", 4);
	assert_int_equal(be32_read(b), 0x01020304u);
	be32_write(b, 0xfffefdfcu);
	assert_int_equal(be32_read(b), 0xfffefdfcu);
	be16_write(b, 0xabcd);
	assert_memory_equal(b, "\xab\xcd", 2);
	assert_int_equal(be16_read(b), 0xabcd);
	assert_int_equal(PROTO_MAJOR(PROTO_V3), 3);
	assert_int_equal(PROTO_MINOR(PROTO_V3), 0);
	/* the special request codes are 1234.5678 .. 1234.5680 */
	assert_int_equal(PROTO_MAJOR(PROTO_CANCEL_CODE), 1234);
	assert_int_equal(PROTO_MINOR(PROTO_CANCEL_CODE), 5678);
	assert_int_equal(PROTO_MINOR(PROTO_SSL_CODE), 5679);
	assert_int_equal(PROTO_MINOR(PROTO_GSSENC_CODE), 5680);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_short_then_ok),
		cmocka_unit_test(test_header_bad_len),
		cmocka_unit_test(test_header_split_every_offset),
		cmocka_unit_test(test_reader_fields),
		cmocka_unit_test(test_reader_short_bodies),
		cmocka_unit_test(test_reader_failure_is_sticky),
		cmocka_unit_test(test_writer_messages),
		cmocka_unit_test(test_writer_appends),
		cmocka_unit_test(test_writer_overflow),
		cmocka_unit_test(test_error_sqlstate),
		cmocka_unit_test(test_error_round_trip),
		cmocka_unit_test(test_be_helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
