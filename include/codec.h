/*
 * codec.h - PostgreSQL wire format (protocol 3.0): big-endian helpers, a
 * bounds-checked reader for message bodies and a writer that builds the
 * messages berth itself sends. No sockets, no events, no globals: every
 * function works on caller-provided memory, so it is unit-testable alone.
 * Reference: PostgreSQL manual, "Frontend/Backend Protocol" -> "Message Formats".
 */
#ifndef BERTH_CODEC_H
#define BERTH_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

/* Every typed message: 1 type byte + int32 length (length counts itself). */
#define PKT_HDR_LEN 5
/* Startup-phase packets have no type byte: int32 length + int32 code. */
#define PKT_STARTUP_HDR_LEN 8

#define PROTO_V3 0x00030000u
#define PROTO_CANCEL_CODE 80877102u /* CancelRequest */
#define PROTO_SSL_CODE 80877103u    /* SSLRequest */
#define PROTO_GSSENC_CODE 80877104u /* GSSENCRequest */
#define PROTO_MAJOR(v) ((v) >> 16)
#define PROTO_MINOR(v) ((v)&0xffff)

static inline uint32_t be32_read(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint16_t be16_read(const uint8_t *p)
{
	return (uint16_t)(((uint16_t)p[0] << 8) | p[1]);
}

static inline void be32_write(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void be16_write(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* Result of looking at the bytes at a parse cursor. */
enum hdr_result {
	HDR_OK = 0,   /* type and total length are valid */
	HDR_SHORT,    /* fewer than PKT_HDR_LEN bytes: wait for more */
	HDR_BAD_LEN,  /* length < 4 or > max: protocol violation */
};

struct pkt_hdr {
	uint8_t type;     /* message type byte */
	size_t total_len; /* type byte + length word + body */
};

/*
 * Read a typed message header from buf[0..avail). max_len bounds the total
 * message length (type byte included); longer ones are HDR_BAD_LEN.
 */
enum hdr_result codec_read_header(const uint8_t *buf, size_t avail, size_t max_len,
				  struct pkt_hdr *out) BERTH_MUSTCHECK;

/* ---- reader: walks one message body, never past its end ---------------- */
struct pkt_reader {
	const uint8_t *p;   /* next unread byte */
	const uint8_t *end; /* one past the body */
	bool failed;        /* a read ran past the end or found no terminator */
};

void reader_init(struct pkt_reader *r, const uint8_t *body, size_t len);
uint8_t reader_u8(struct pkt_reader *r);
uint16_t reader_u16(struct pkt_reader *r);
uint32_t reader_u32(struct pkt_reader *r);
/* NUL-terminated string inside the body; NULL (and failed) if unterminated. */
const char *reader_cstr(struct pkt_reader *r);
/* n raw bytes; NULL (and failed) if fewer remain. */
const uint8_t *reader_bytes(struct pkt_reader *r, size_t n);
size_t reader_remaining(const struct pkt_reader *r);

/* ---- writer: appends messages to a caller buffer ------------------------ */
struct pkt_writer {
	uint8_t *buf;     /* caller memory */
	size_t cap;       /* its size */
	size_t len;       /* bytes written */
	size_t msg_start; /* offset of the message being built */
	bool msg_typed;   /* it has a type byte before the length word */
	bool overflow;    /* a write did not fit: the result is unusable */
};

void writer_init(struct pkt_writer *w, uint8_t *buf, size_t cap);
/* Start a typed message (type 0 = untyped startup-style packet). */
void writer_begin(struct pkt_writer *w, uint8_t type);
void writer_u8(struct pkt_writer *w, uint8_t v);
void writer_u16(struct pkt_writer *w, uint16_t v);
void writer_u32(struct pkt_writer *w, uint32_t v);
void writer_bytes(struct pkt_writer *w, const void *data, size_t n);
void writer_cstr(struct pkt_writer *w, const char *s);
/* Patch the length word of the message started last. */
void writer_end(struct pkt_writer *w);
bool writer_ok(const struct pkt_writer *w);

/* Complete messages berth sends; each returns writer_ok(w) afterwards. */
bool codec_write_auth_request(struct pkt_writer *w, uint32_t code, const void *data, size_t n);
bool codec_write_parameter_status(struct pkt_writer *w, const char *name, const char *value);
bool codec_write_backend_key(struct pkt_writer *w, uint32_t pid, uint32_t key);
bool codec_write_ready(struct pkt_writer *w, char status);
/* ErrorResponse ('E') or NoticeResponse ('N') with severity, SQLSTATE, text. */
bool codec_write_error(struct pkt_writer *w, char type, const char *severity, const char *sqlstate,
		       const char *message);
bool codec_write_query(struct pkt_writer *w, const char *sql);
bool codec_write_negotiate_version(struct pkt_writer *w, uint32_t newest_minor,
				   const char *const *unknown_opts, size_t n_opts);
bool codec_write_terminate(struct pkt_writer *w);

/* Find the SQLSTATE ('C' field) of an ErrorResponse/NoticeResponse body. */
const char *codec_error_sqlstate(const uint8_t *body, size_t len, char out[6]);

#endif
