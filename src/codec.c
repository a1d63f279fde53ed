/*
 * codec.c - PostgreSQL wire format: header reader, body reader, message
 * writer. Pure functions on caller memory; no sockets, events or globals.
 * Reference: PostgreSQL manual, "Message Formats".
 */
#include "codec.h"

#include <string.h>

enum hdr_result codec_read_header(const uint8_t *buf, size_t avail, size_t max_len,
				  struct pkt_hdr *out)
{
	if (avail < PKT_HDR_LEN)
		return HDR_SHORT;
	uint32_t len = be32_read(buf + 1);
	/* The length word counts itself, so anything below 4 is malformed.
	 * len >= max_len is len + 1 > max_len without the wrap to 0 that
	 * len = 0xffffffff would cause where size_t is 32 bits. */
	if (len < 4 || (size_t)len >= max_len)
		return HDR_BAD_LEN;
	out->type = buf[0];
	out->total_len = (size_t)len + 1;
	return HDR_OK;
}

void reader_init(struct pkt_reader *r, const uint8_t *body, size_t len)
{
	r->p = body;
	r->end = body + len;
	r->failed = false;
}

size_t reader_remaining(const struct pkt_reader *r)
{
	return (size_t)(r->end - r->p);
}

const uint8_t *reader_bytes(struct pkt_reader *r, size_t n)
{
	if (r->failed || reader_remaining(r) < n) {
		r->failed = true;
		return NULL;
	}
	const uint8_t *p = r->p;
	r->p += n;
	return p;
}

uint8_t reader_u8(struct pkt_reader *r)
{
	const uint8_t *p = reader_bytes(r, 1);
	return p ? p[0] : 0;
}

uint16_t reader_u16(struct pkt_reader *r)
{
	const uint8_t *p = reader_bytes(r, 2);
	return p ? be16_read(p) : 0;
}

uint32_t reader_u32(struct pkt_reader *r)
{
	const uint8_t *p = reader_bytes(r, 4);
	return p ? be32_read(p) : 0;
}

const char *reader_cstr(struct pkt_reader *r)
{
	if (r->failed)
		return NULL;
	const uint8_t *nul = memchr(r->p, 0, reader_remaining(r));
	if (!nul) {
		r->failed = true;
		return NULL;
	}
	const char *s = (const char *)r->p;
	r->p = nul + 1;
	return s;
}

void writer_init(struct pkt_writer *w, uint8_t *buf, size_t cap)
{
	w->buf = buf;
	w->cap = cap;
	w->len = 0;
	w->msg_start = 0;
	w->overflow = false;
	w->msg_typed = false;
}

bool writer_ok(const struct pkt_writer *w)
{
	return !w->overflow;
}

void writer_bytes(struct pkt_writer *w, const void *data, size_t n)
{
	if (w->overflow || w->cap - w->len < n) {
		w->overflow = true;
		return;
	}
	if (n)
		memcpy(w->buf + w->len, data, n);
	w->len += n;
}

void writer_u8(struct pkt_writer *w, uint8_t v)
{
	writer_bytes(w, &v, 1);
}

void writer_u16(struct pkt_writer *w, uint16_t v)
{
	uint8_t b[2];
	be16_write(b, v);
	writer_bytes(w, b, 2);
}

void writer_u32(struct pkt_writer *w, uint32_t v)
{
	uint8_t b[4];
	be32_write(b, v);
	writer_bytes(w, b, 4);
}

void writer_cstr(struct pkt_writer *w, const char *s)
{
	writer_bytes(w, s, strlen(s) + 1);
}

void writer_begin(struct pkt_writer *w, uint8_t type)
{
	w->msg_start = w->len;
	w->msg_typed = type != 0;
	if (type)
		writer_u8(w, type);
	writer_u32(w, 0); /* patched by writer_end */
}

void writer_end(struct pkt_writer *w)
{
	if (w->overflow)
		return;
	size_t len_off = w->msg_start + (w->msg_typed ? 1 : 0);
	be32_write(w->buf + len_off, (uint32_t)(w->len - len_off));
}

bool codec_write_auth_request(struct pkt_writer *w, uint32_t code, const void *data, size_t n)
{
	writer_begin(w, 'R');
	writer_u32(w, code);
	writer_bytes(w, data, n);
	writer_end(w);
	return writer_ok(w);
}

bool codec_write_parameter_status(struct pkt_writer *w, const char *name, const char *value)
{
	writer_begin(w, 'S');
	writer_cstr(w, name);
	writer_cstr(w, value);
	writer_end(w);
	return writer_ok(w);
}

bool codec_write_backend_key(struct pkt_writer *w, uint32_t pid, uint32_t key)
{
	writer_begin(w, 'K');
	writer_u32(w, pid);
	writer_u32(w, key);
	writer_end(w);
	return writer_ok(w);
}

bool codec_write_ready(struct pkt_writer *w, char status)
{
	writer_begin(w, 'Z');
	writer_u8(w, (uint8_t)status);
	writer_end(w);
	return writer_ok(w);
}

bool codec_write_error(struct pkt_writer *w, char type, const char *severity, const char *sqlstate,
		       const char *message)
{
	writer_begin(w, (uint8_t)type);
	writer_u8(w, 'S');
	writer_cstr(w, severity);
	writer_u8(w, 'V'); /* non-localized severity, PostgreSQL 9.6+ */
	writer_cstr(w, severity);
	writer_u8(w, 'C');
	writer_cstr(w, sqlstate);
	writer_u8(w, 'M');
	writer_cstr(w, message);
	writer_u8(w, 0);
	writer_end(w);
	return writer_ok(w);
}

bool codec_write_query(struct pkt_writer *w, const char *sql)
{
	writer_begin(w, 'Q');
	writer_cstr(w, sql);
	writer_end(w);
	return writer_ok(w);
}

bool codec_write_negotiate_version(struct pkt_writer *w, uint32_t newest_minor,
				   const char *const *unknown_opts, size_t n_opts)
{
	writer_begin(w, 'v');
	writer_u32(w, newest_minor);
	writer_u32(w, (uint32_t)n_opts);
	for (size_t i = 0; i < n_opts; i++)
		writer_cstr(w, unknown_opts[i]);
	writer_end(w);
	return writer_ok(w);
}

bool codec_write_terminate(struct pkt_writer *w)
{
	writer_begin(w, 'X');
	writer_end(w);
	return writer_ok(w);
}

const char *codec_error_sqlstate(const uint8_t *body, size_t len, char out[6])
{
	struct pkt_reader r;
	reader_init(&r, body, len);
	for (;;) {
		uint8_t field = reader_u8(&r);
		if (r.failed || field == 0)
			return NULL;
		const char *val = reader_cstr(&r);
		if (!val)
			return NULL;
		if (field == 'C') {
			if (strlen(val) != 5)
				return NULL;
			memcpy(out, val, 6);
			return out;
		}
	}
}
