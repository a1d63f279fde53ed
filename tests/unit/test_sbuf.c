/*
 * test_sbuf.c - unit tests for the relay engine (sbuf.c) on real sockets and
 * a real libevent loop: two socketpairs A = (a_out, a_in), B = (b_in, b_out);
 * an sbuf on a_in linked to an sbuf on b_in. The test plays both far ends:
 * it writes protocol messages into a_out and reads what leaves on b_out.
 * Covers byte-exact forwarding (split at every offset), the owner's answers
 * (SKIP, SKIP_PREFIX, NEED_FULL incl. the large-message slow path, PAUSE,
 * FLUSH), bad lengths, the side queue, EOF and close, and backpressure: 64 MB
 * pushed at a reader that does not read must not grow the engine's memory
 * past one pkt_buf. No network, no PostgreSQL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "runtime.h"
#include "sbuf.h"

#define PKT_BUF 16384
#define MAX_CALLS 4096
#define WAIT_MS 3000 /* bound for "bytes should arrive"; only reached on failure */

/* ---- harness ------------------------------------------------------------- */

struct call {
	uint8_t type;
	size_t total_len;
	size_t avail;
};

struct harness;

struct side {
	struct sbuf sb;
	struct harness *h;
	int n_calls;
	struct call calls[MAX_CALLS];
	int n_errors;
	char error[128];   /* first error reason */
	bool saw_send_failed;
	int n_flushed;
	bool close_on_error; /* the owner contract: close on error */
	/* policy: what on_message answers, by message type (0 = none) */
	uint8_t skip_type;
	uint8_t need_full_type;
	uint8_t pause_type;
	bool pausing;          /* pause_type answers SB_PAUSE while set */
	uint8_t flush_type;    /* SB_FLUSH while bytes are pending, then SB_SKIP */
	uint64_t peer_out_at_flush; /* peer's bytes_out when flush_type got through */
	bool need_full_skip;   /* drop need_full_type once whole instead of forwarding it */
	uint8_t prefix_type;   /* rewrite: queue `repl` on the peer, SB_SKIP_PREFIX prefix_len */
	size_t prefix_len;
	const uint8_t *repl;
	size_t repl_len;
	/* last complete message seen by need_full_type */
	uint8_t full[4 * PKT_BUF];
	size_t full_len;
	int n_full;
	int n_tls_hello; /* on_tls_hello calls (direct TLS) */
	bool check_gen; /* backpressure stream: check each header against the generator */
	bool gen_mismatch;
};

struct harness {
	struct worker w;
	int a_out, a_in, b_in, b_out;
	struct side A, B;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- generated stream for the big test ----------------------------------- */

/* Message i: 'd', length, be32 i, then (i * 31 + offset) bytes. Some exceed PKT_BUF. */
static size_t gen_total_len(uint32_t i)
{
	return PKT_HDR_LEN + 4 + (size_t)((i * 2654435761u) >> 8) % 20000;
}

struct gen {
	uint32_t msg;
	size_t off;
	size_t total; /* of msg */
	uint64_t pos;
};

static void gen_init(struct gen *g)
{
	memset(g, 0, sizeof(*g));
	g->total = gen_total_len(0);
}

static void gen_fill(struct gen *g, uint8_t *buf, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		size_t off = g->off;
		uint8_t b;
		if (off == 0)
			b = 'd';
		else if (off < 5)
			b = (uint8_t)((g->total - 1) >> (8 * (4 - off)));
		else if (off < 9)
			b = (uint8_t)(g->msg >> (8 * (8 - off)));
		else
			b = (uint8_t)(g->msg * 31u + off);
		buf[k] = b;
		if (++g->off == g->total) {
			g->msg++;
			g->off = 0;
			g->total = gen_total_len(g->msg);
		}
	}
	g->pos += n;
}

/* ---- callbacks ------------------------------------------------------------- */

static enum sbuf_action on_message(struct sbuf *sb, const struct pkt_hdr *hdr, const uint8_t *data,
				   size_t avail)
{
	struct side *s = sb->owner;
	if (s->check_gen && (hdr->type != 'd' || hdr->total_len != gen_total_len((uint32_t)s->n_calls) ||
			     be32_read(data + 1) + 1 != hdr->total_len))
		s->gen_mismatch = true;
	if (s->n_calls < MAX_CALLS)
		s->calls[s->n_calls] = (struct call){.type = hdr->type, .total_len = hdr->total_len, .avail = avail};
	s->n_calls++;
	/* the header in the buffer is the one described */
	if (hdr->type != 0 && data[0] != hdr->type)
		s->gen_mismatch = true;

	if (s->skip_type && hdr->type == s->skip_type)
		return SB_SKIP;
	if (s->need_full_type && hdr->type == s->need_full_type) {
		if (avail < hdr->total_len)
			return SB_NEED_FULL;
		if (hdr->total_len <= sizeof(s->full))
			memcpy(s->full, data, hdr->total_len);
		s->full_len = hdr->total_len;
		s->n_full++;
		return s->need_full_skip ? SB_SKIP : SB_FORWARD;
	}
	if (s->prefix_type && hdr->type == s->prefix_type) {
		/* as client.c does: what precedes the rewrite leaves first */
		if (sb->io && sb->io->sent < sb->io->parsed)
			return SB_FLUSH;
		if (!sbuf_queue(sb->peer, s->repl, s->repl_len))
			return SB_CLOSED;
		sb->prefix_skip = s->prefix_len;
		return SB_SKIP_PREFIX;
	}
	if (s->pause_type && hdr->type == s->pause_type && s->pausing)
		return SB_PAUSE;
	if (s->flush_type && hdr->type == s->flush_type) {
		if (sb->io && sb->io->sent < sb->io->parsed)
			return SB_FLUSH;
		s->peer_out_at_flush = sb->peer ? sb->peer->bytes_out : 0;
		return SB_SKIP;
	}
	return SB_FORWARD;
}

static void on_error(struct sbuf *sb, const char *reason)
{
	struct side *s = sb->owner;
	if (s->n_errors++ == 0)
		snprintf(s->error, sizeof(s->error), "%s", reason);
	if (strcmp(reason, "send failed") == 0)
		s->saw_send_failed = true;
	if (s->close_on_error)
		sbuf_close(sb, true); /* the harness owns the fds */
}

static void on_flushed(struct sbuf *sb)
{
	struct side *s = sb->owner;
	s->n_flushed++;
}

/* Counts, and leaves the socket plain: the parser must then refuse the handshake bytes. */
static bool on_tls_hello(struct sbuf *sb)
{
	struct side *s = sb->owner;
	s->n_tls_hello++;
	return true;
}

static const struct sbuf_ops ops = {
	.on_message = on_message,
	.on_error = on_error,
	.on_flushed = on_flushed,
	.on_tls_hello = on_tls_hello,
};

static void set_nonblock_pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

static int sock_int(int fd, int opt)
{
	int v = 0;
	socklen_t l = sizeof(v);
	assert_int_equal(getsockopt(fd, SOL_SOCKET, opt, &v, &l), 0);
	return v;
}

/*
 * Harnesses still open: a failed assertion longjmps out of the test, and the
 * teardown closes what it left so valgrind reports only real leaks.
 */
static struct harness *live[4];

static void harness_destroy(struct harness *h);

static int teardown_live(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(live); i++)
		if (live[i])
			harness_destroy(live[i]);
	return 0;
}

/* small_b: make the B path slow (small buffers), so sends to b_in block early. */
static struct harness *harness_new(bool small_b)
{
	struct harness *h = calloc(1, sizeof(*h));
	assert_non_null(h);
	int a[2], b[2];
	set_nonblock_pair(a);
	set_nonblock_pair(b);
	h->a_out = a[0];
	h->a_in = a[1];
	h->b_in = b[0];
	h->b_out = b[1];
	if (small_b) {
		int v = 4096;
		assert_int_equal(setsockopt(h->b_in, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)), 0);
		assert_int_equal(setsockopt(h->b_out, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v)), 0);
	}
	h->w.base = event_base_new();
	assert_non_null(h->w.base);
	h->w.pkt_buf = PKT_BUF;
	h->A.h = h->B.h = h;
	h->A.close_on_error = h->B.close_on_error = true;
	sbuf_init(&h->A.sb, &h->w, h->a_in, &ops, &h->A);
	sbuf_init(&h->B.sb, &h->w, h->b_in, &ops, &h->B);
	sbuf_link(&h->A.sb, &h->B.sb);
	sbuf_start(&h->A.sb);
	sbuf_start(&h->B.sb);
	for (size_t i = 0;; i++) {
		assert_true(i < ARRAY_SIZE(live));
		if (!live[i]) {
			live[i] = h;
			break;
		}
	}
	return h;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void harness_destroy(struct harness *h)
{
	for (size_t i = 0; i < ARRAY_SIZE(live); i++)
		if (live[i] == h)
			live[i] = NULL;
	sbuf_close(&h->A.sb, true);
	sbuf_close(&h->B.sb, true);
	while (h->w.free_iobufs) {
		struct iobuf *io = h->w.free_iobufs;
		h->w.free_iobufs = io->next_free;
		free(io);
	}
	close_fd(&h->a_out);
	close_fd(&h->a_in);
	close_fd(&h->b_in);
	close_fd(&h->b_out);
	event_base_free(h->w.base);
	free(h);
}

static void harness_free(struct harness *h)
{
	sbuf_close(&h->A.sb, true);
	sbuf_close(&h->B.sb, true);
	/* every buffer is back on the freelist once both connections are closed */
	assert_int_equal(h->w.n_free_iobufs, h->w.n_iobufs);
	harness_destroy(h);
}

/*
 * n loop iterations. EVLOOP_ONCE: NONBLOCK alone keeps looping while any
 * event stays active (a socket at EOF whose owner has not closed yet would
 * spin forever); the test wants to look between iterations.
 */
static void pump(struct harness *h, int n)
{
	for (int i = 0; i < n; i++)
		event_base_loop(h->w.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

/* Write everything, running the loop while the socket is full. */
static void write_all(struct harness *h, int fd, const void *p, size_t len)
{
	const uint8_t *b = p;
	int64_t deadline = now_ms() + WAIT_MS;
	while (len) {
		ssize_t n = write(fd, b, len);
		if (n > 0) {
			b += n;
			len -= (size_t)n;
			continue;
		}
		assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
		assert_true(now_ms() < deadline);
		pump(h, 1);
	}
}

/* Read until exactly len bytes came (or time runs out); returns bytes read. */
static size_t read_n(struct harness *h, int fd, uint8_t *buf, size_t len)
{
	size_t got = 0;
	int64_t deadline = now_ms() + WAIT_MS;
	while (got < len && now_ms() < deadline) {
		pump(h, 1);
		ssize_t n = read(fd, buf + got, len - got);
		if (n > 0)
			got += (size_t)n;
		else if (n == 0)
			break;
		else
			assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
	}
	return got;
}

/* Nothing (more) arrives on fd while the loop runs a while. Failures name the caller's line. */
#define expect_nothing(h, fd) expect_nothing_at(h, fd, __FILE__, __LINE__)
static void expect_nothing_at(struct harness *h, int fd, const char *file, int line)
{
	uint8_t b[64];
	for (int i = 0; i < 30; i++) {
		pump(h, 1);
		ssize_t n = read(fd, b, sizeof(b));
		if (n > 0)
			print_error("unexpected %zd bytes, first 0x%02x\n", n, b[0]);
		_assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "nothing more arrives",
			     file, line);
	}
}

/* Exactly these bytes arrive on fd, and then nothing. */
#define expect_out(h, fd, exp, len) expect_out_at(h, fd, exp, len, __FILE__, __LINE__)
static void expect_out_at(struct harness *h, int fd, const void *exp, size_t len, const char *file,
			  int line)
{
	static uint8_t got[512 * 1024];
	_assert_true(len <= sizeof(got), "len <= sizeof(got)", file, line);
	size_t n = read_n(h, fd, got, len);
	_assert_int_equal(n, len, file, line);
	_assert_memory_equal(got, exp, len, file, line);
	expect_nothing_at(h, fd, file, line);
}

/* Append a message: type, length, body. */
static size_t put_msg(uint8_t *out, uint8_t type, const void *body, size_t body_len)
{
	out[0] = type;
	be32_write(out + 1, (uint32_t)(body_len + 4));
	if (body_len)
		memcpy(out + PKT_HDR_LEN, body, body_len);
	return PKT_HDR_LEN + body_len;
}

/* A message with a patterned body of body_len bytes. */
static size_t put_pattern(uint8_t *out, uint8_t type, size_t body_len, unsigned seed)
{
	out[0] = type;
	be32_write(out + 1, (uint32_t)(body_len + 4));
	for (size_t i = 0; i < body_len; i++)
		out[PKT_HDR_LEN + i] = (uint8_t)(seed * 131u + i * 7u);
	return PKT_HDR_LEN + body_len;
}

static void assert_idle(struct harness *h)
{
	assert_null(h->A.sb.io);
	assert_null(h->B.sb.io);
	assert_false(sbuf_has_pending(&h->A.sb));
	assert_false(sbuf_has_pending(&h->B.sb));
	assert_int_equal(h->w.n_free_iobufs, h->w.n_iobufs);
}

/* ---- forwarding ---------------------------------------------------------- */

static void test_forward_byte_exact(void **state)
{
	(void)state;
	struct harness *h = harness_new(false);
	static uint8_t stream[200000];
	size_t len = 0;
	/* empty body, small, exactly PKT_BUF, larger than PKT_BUF (spans reads) */
	size_t sizes[] = {0, 1, 9, 300, PKT_BUF - PKT_HDR_LEN, PKT_BUF, 3 * PKT_BUF + 17, 2};
	uint8_t types[] = {'S', 'Z', 'Q', 'D', 'd', 'd', 'D', 'C'};
	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		size_t m = put_pattern(stream + len, types[i], sizes[i], (unsigned)i);
		write_all(h, h->a_out, stream + len, m);
		expect_out(h, h->b_out, stream + len, m);
		len += m;
	}
	assert_int_equal(h->A.n_calls, (int)ARRAY_SIZE(sizes));
	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		assert_int_equal(h->A.calls[i].type, types[i]);
		assert_int_equal(h->A.calls[i].total_len, sizes[i] + PKT_HDR_LEN);
		assert_true(h->A.calls[i].avail >= PKT_HDR_LEN);
	}
	assert_false(h->A.gen_mismatch);
	assert_int_equal(h->A.n_errors, 0);
	assert_int_equal(h->B.n_errors, 0);
	assert_int_equal(h->A.sb.bytes_in, len);
	assert_int_equal(h->B.sb.bytes_out, len);
	/* idle: no connection holds a buffer */
	assert_idle(h);
	assert_true(h->w.n_iobufs <= 2);

	/* the same stream in one write */
	write_all(h, h->a_out, stream, len);
	expect_out(h, h->b_out, stream, len);
	assert_idle(h);

	/* and the other direction: b_out -> a_out through the same pair */
	write_all(h, h->b_out, stream, len);
	expect_out(h, h->a_out, stream, len);
	assert_int_equal(h->B.n_calls, (int)ARRAY_SIZE(sizes));
	assert_idle(h);
	harness_free(h);
}

static void test_forward_many_small(void **state)
{
	(void)state;
	struct harness *h = harness_new(false);
	enum { N = 3000 };
	static uint8_t stream[N * 40];
	size_t len = 0;
	for (unsigned i = 0; i < N; i++)
		len += put_pattern(stream + len, (uint8_t)('A' + i % 26), i % 23, i);
	/* one write of ~50 KB holding 3000 messages */
	write_all(h, h->a_out, stream, len);
	expect_out(h, h->b_out, stream, len);
	assert_int_equal(h->A.n_calls, N);
	for (unsigned i = 0; i < N; i++) {
		assert_int_equal(h->A.calls[i].type, 'A' + i % 26);
		assert_int_equal(h->A.calls[i].total_len, PKT_HDR_LEN + i % 23);
	}
	assert_true(h->w.n_iobufs <= 2);
	assert_idle(h);
	harness_free(h);
}

/*
 * How many bytes of stream[0..k) the engine can have forwarded: everything,
 * except a trailing header that is not complete yet.
 */
static size_t forwardable(const uint8_t *stream, size_t len, size_t k)
{
	size_t pos = 0;
	while (pos < len) {
		if (k < pos + PKT_HDR_LEN)
			return k < pos ? k : pos;
		size_t m = be32_read(stream + pos + 1) + 1;
		if (k < pos + m)
			return k;
		pos += m;
	}
	return k;
}

static void test_forward_split_every_offset(void **state)
{
	(void)state;
	struct harness *h = harness_new(false);
	uint8_t stream[128];
	size_t len = 0;
	static const char q[] = "SELECT 1";
	len += put_msg(stream + len, 'Q', q, sizeof(q));
	len += put_pattern(stream + len, 'P', 40, 3);
	len += put_msg(stream + len, 'S', NULL, 0);
	len += put_pattern(stream + len, 'd', 1, 4);
	const int n_msgs = 4;
	uint8_t got[128];

	for (size_t k = 1; k < len; k++) {
		int calls_before = h->A.n_calls;
		write_all(h, h->a_out, stream, k);
		size_t fw = forwardable(stream, len, k);
		/* the forwardable prefix leaves at once, the partial header waits */
		assert_int_equal(read_n(h, h->b_out, got, fw), fw);
		assert_memory_equal(got, stream, fw);
		expect_nothing(h, h->b_out);

		write_all(h, h->a_out, stream + k, len - k);
		assert_int_equal(read_n(h, h->b_out, got + fw, len - fw), len - fw);
		assert_memory_equal(got, stream, len);
		expect_nothing(h, h->b_out);

		/* one call per message, each with its header complete */
		assert_int_equal(h->A.n_calls - calls_before, n_msgs);
		for (int m = calls_before; m < h->A.n_calls; m++)
			assert_true(h->A.calls[m].avail >= PKT_HDR_LEN);
		assert_int_equal(h->A.calls[calls_before].type, 'Q');
		assert_int_equal(h->A.calls[calls_before + 1].total_len, 45);
		assert_int_equal(h->A.calls[calls_before + 2].type, 'S');
		assert_int_equal(h->A.calls[calls_before + 3].total_len, 6);
		assert_idle(h);
		h->A.n_calls = 0;
	}

	/* one byte per write */
	for (size_t i = 0; i < len; i++) {
		write_all(h, h->a_out, stream + i, 1);
		pump(h, 2);
	}
	expect_out(h, h->b_out, stream, len);
	assert_int_equal(h->A.n_calls, n_msgs);
	assert_int_equal(h->A.n_errors, 0);
	assert_idle(h);
	harness_free(h);
}

/* Startup-phase packets: no type byte, int32 length first. */
static void test_startup_packets(void **state)
{
	(void)state;
	struct harness *h = harness_new(false);
	h->A.sb.startup = true;
	uint8_t pkt[20];
	be32_write(pkt, 8);
	be32_write(pkt + 4, PROTO_SSL_CODE);
	be32_write(pkt + 8, 12);
	be32_write(pkt + 12, PROTO_CANCEL_CODE);
	be32_write(pkt + 16, 0x01020304u);
	write_all(h, h->a_out, pkt, 10); /* 8 + half a length word */
	pump(h, 5);
	assert_int_equal(h->A.n_calls, 1);
	assert_int_equal(h->A.calls[0].type, 0);
	assert_int_equal(h->A.calls[0].total_len, 8);
	write_all(h, h->a_out, pkt + 10, 10);
	expect_out(h, h->b_out, pkt, 20);
	assert_int_equal(h->A.n_calls, 2);
	assert_int_equal(h->A.calls[1].total_len, 12);
	harness_free(h);

	/* lengths below 8 or above 10000 are refused */
	uint32_t bad[] = {0, 4, 7, 10001, 0xffffffffu};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		h = harness_new(false);
		h->A.sb.startup = true;
		be32_write(pkt, bad[i]);
		be32_write(pkt + 4, PROTO_V3);
		write_all(h, h->a_out, pkt, 8);
		pump(h, 5);
		assert_int_equal(h->A.n_errors, 1);
		assert_string_equal(h->A.error, "invalid startup packet length");
		assert_int_equal(h->A.n_calls, 0);
		expect_nothing(h, h->b_out);
		harness_free(h);
	}
}

/*
 * Direct TLS: with peek_tls_hello the first byte is looked at before any is
 * read. A handshake record (22) goes to the owner; a startup packet is read
 * as ever; nothing yet keeps the peek for later.
 */
static void test_tls_hello_peek(void **state)
{
	(void)state;
	static const uint8_t hello[] = {22, 3, 1, 0, 5, 1, 0, 0, 1, 3};
	struct harness *h = harness_new(false);
	h->A.sb.startup = true;
	h->A.sb.peek_tls_hello = true;
	sbuf_read_now(&h->A.sb); /* nothing sent yet: no decision */
	assert_true(h->A.sb.peek_tls_hello);
	assert_int_equal(h->A.n_tls_hello, 0);
	write_all(h, h->a_out, hello, sizeof(hello));
	pump(h, 5);
	assert_int_equal(h->A.n_tls_hello, 1);
	assert_false(h->A.sb.peek_tls_hello);
	/* the owner left it plain: the parser refuses a handshake where a startup packet belongs */
	assert_int_equal(h->A.n_errors, 1);
	assert_string_equal(h->A.error,
			    "direct TLS connection requested, but TLS is not offered to this client");
	assert_int_equal(h->A.n_calls, 0);
	expect_nothing(h, h->b_out);
	harness_free(h);

	uint8_t pkt[8];
	be32_write(pkt, 8);
	be32_write(pkt + 4, PROTO_SSL_CODE);
	h = harness_new(false);
	h->A.sb.startup = true;
	h->A.sb.peek_tls_hello = true;
	write_all(h, h->a_out, pkt, sizeof(pkt));
	expect_out(h, h->b_out, pkt, sizeof(pkt));
	assert_int_equal(h->A.n_tls_hello, 0);
	assert_int_equal(h->A.n_calls, 1);
	assert_false(h->A.sb.peek_tls_hello);
	harness_free(h);
}

/* ---- the owner's answers --------------------------------------------------- */

static void test_skip(void **state)
{
	(void)state;
	struct harness *h = harness_new(false);
	h->A.skip_type = 'K';
	static uint8_t in[100000], exp[100000];
	size_t n_in = 0, n_exp = 0, m;

	/* forward, skip, forward in one write */
	m = put_pattern(in + n_in, 'Q', 20, 1);
	memcpy(exp + n_exp, in + n_in, m);
	n_in += m;
	n_exp += m;
	n_in += put_pattern(in + n_in, 'K', 30, 2);
	m = put_pattern(in + n_in, 'Q', 7, 3);
	memcpy(exp + n_exp, in + n_in, m);
	n_in += m;
	n_exp += m;
	/* skipped messages back to back, an empty one, then one bigger than PKT_BUF */
	n_in += put_pattern(in + n_in, 'K', 0, 4);
	n_in += put_pattern(in + n_in, 'K', 2 * PKT_BUF + 3, 5);
	m = put_pattern(in + n_in, 'Z', 1, 6);
	memcpy(exp + n_exp, in + n_in, m);
	n_in += m;
	n_exp += m;

	write_all(h, h->a_out, in, n_in);
	expect_out(h, h->b_out, exp, n_exp);
	assert_int_equal(h->A.n_calls, 6);
	assert_idle(h);

	/* the same, split into 1000-byte writes */
	for (size_t off = 0; off < n_in; off += 1000) {
		write_all(h, h->a_out, in + off, n_in - off < 1000 ? n_in - off : 1000);
		pump(h, 2);
	}
	expect_out(h, h->b_out, exp, n_exp);
	assert_int_equal(h->A.n_calls, 12);
	assert_int_equal(h->A.n_errors, 0);
	assert_idle(h);
	harness_free(h);
}

static void test_need_full(void **state)
{
	(void)state;
	struct harness *h = harness_new(false);
	h->A.need_full_type = 'P';
	uint8_t in[4 * PKT_BUF];
	size_t n = 0;
	n += put_pattern(in, 'Q', 100, 1); /* forwarded first: the P starts mid-buffer */
	size_t p_off = n;
	n += put_pattern(in + n, 'P', 3000, 2);
	size_t p_len = n - p_off;
	n += put_pattern(in + n, 'S', 0, 3);

	/* header + a little of P */
	write_all(h, h->a_out, in, p_off + 7);
	pump(h, 5);
	assert_int_equal(h->A.n_full, 0);
	assert_true(h->A.n_calls >= 2);
	assert_int_equal(h->A.calls[1].type, 'P');
	assert_int_equal(h->A.calls[1].total_len, p_len);
	assert_int_equal(h->A.calls[1].avail, 7);
	/* the Q before it has left; nothing of P has */
	uint8_t got[4 * PKT_BUF];
	assert_int_equal(read_n(h, h->b_out, got, p_off), p_off);
	assert_memory_equal(got, in, p_off);
	expect_nothing(h, h->b_out);

	/* more pieces; P is presented whole exactly once */
	for (size_t off = p_off + 7; off < p_off + p_len - 1; off += 500) {
		size_t end = off + 500 < p_off + p_len - 1 ? off + 500 : p_off + p_len - 1;
		write_all(h, h->a_out, in + off, end - off);
		pump(h, 3);
		assert_int_equal(h->A.n_full, 0);
	}
	expect_nothing(h, h->b_out);
	write_all(h, h->a_out, in + p_off + p_len - 1, n - (p_off + p_len - 1));
	assert_int_equal(read_n(h, h->b_out, got, n - p_off), n - p_off);
	assert_memory_equal(got, in + p_off, n - p_off);
	assert_int_equal(h->A.n_full, 1);
	assert_int_equal(h->A.full_len, p_len);
	assert_memory_equal(h->A.full, in + p_off, p_len);
	/* every partial presentation had the header and less than the whole message */
	for (int i = 1; i < h->A.n_calls; i++) {
		if (h->A.calls[i].type != 'P')
			continue;
		assert_true(h->A.calls[i].avail >= PKT_HDR_LEN);
	}
	assert_int_equal(h->A.n_errors, 0);
	assert_idle(h);

	/* a message of exactly PKT_BUF can be inspected */
	h->A.n_full = 0;
	size_t m = put_pattern(in, 'P', PKT_BUF - PKT_HDR_LEN, 9);
	write_all(h, h->a_out, in, m);
	expect_out(h, h->b_out, in, m);
	assert_int_equal(h->A.n_full, 1);
	assert_memory_equal(h->A.full, in, m);
	assert_idle(h);
	harness_free(h);

}

/*
 * SB_NEED_FULL on a message larger than pkt_buf: assembled on the counted
 * slow path, presented whole exactly once, then forwarded (or skipped).
 */
static void test_need_full_big(void **state)
{
	(void)state;
	static uint8_t in[5 * PKT_BUF];
	size_t sizes[] = {PKT_BUF - PKT_HDR_LEN + 1, 3 * PKT_BUF + 77};
	for (int skip = 0; skip < 2; skip++) {
		for (size_t si = 0; si < ARRAY_SIZE(sizes); si++) {
			struct harness *h = harness_new(false);
			h->A.need_full_type = 'P';
			h->A.need_full_skip = skip;
			size_t n = put_pattern(in, 'Q', 100, 1);
			size_t p_off = n;
			n += put_pattern(in + n, 'P', sizes[si], 2);
			size_t p_len = n - p_off;
			n += put_pattern(in + n, 'S', 0, 3);
			/* in 1000-byte writes */
			for (size_t off = 0; off < n; off += 1000) {
				write_all(h, h->a_out, in + off, n - off < 1000 ? n - off : 1000);
				pump(h, 2);
			}
			if (skip) {
				static uint8_t exp[200];
				memcpy(exp, in, p_off);
				memcpy(exp + p_off, in + p_off + p_len, n - p_off - p_len);
				expect_out(h, h->b_out, exp, n - p_len);
			} else {
				expect_out(h, h->b_out, in, n);
			}
			assert_int_equal(h->A.n_full, 1);
			assert_int_equal(h->A.full_len, p_len);
			assert_memory_equal(h->A.full, in + p_off, p_len);
			assert_int_equal(h->w.stats.big_messages, 1);
			assert_null(h->A.sb.big);
			/* Q, P partial (at least once), P whole, S */
			assert_int_equal(h->A.calls[0].type, 'Q');
			assert_int_equal(h->A.calls[h->A.n_calls - 1].type, 'S');
			assert_int_equal(h->A.calls[h->A.n_calls - 2].avail, p_len);
			assert_int_equal(h->A.n_errors, 0);
			assert_idle(h);
			assert_true(h->w.n_iobufs <= 2);
			harness_free(h);
		}
	}
}

/* SB_SKIP_PREFIX: berth's new prefix (queued on the peer), then the old message's rest. */
static void test_skip_prefix(void **state)
{
	(void)state;
	static const uint8_t repl[] = {'B', 0, 0, 0, 0, 'n', 'e', 'w', '_', '1', 0};
	uint8_t b[64], q[32], exp[128], in[128];
	size_t b_len = put_pattern(b, 'B', 40, 1); /* prefix: header + 4 body bytes */
	const size_t prefix = PKT_HDR_LEN + 4;
	size_t q_len = put_pattern(q, 'Q', 10, 2);

	/* every split of [Q][B] in two writes, and the whole in one */
	size_t n = 0;
	memcpy(in, q, q_len);
	memcpy(in + q_len, b, b_len);
	n = q_len + b_len;
	size_t e = 0;
	memcpy(exp, q, q_len);
	e += q_len;
	memcpy(exp + e, repl, sizeof(repl));
	e += sizeof(repl);
	memcpy(exp + e, b + prefix, b_len - prefix);
	e += b_len - prefix;

	for (size_t k = 1; k <= n; k++) {
		struct harness *h = harness_new(false);
		h->A.prefix_type = 'B';
		h->A.prefix_len = prefix;
		h->A.repl = repl;
		h->A.repl_len = sizeof(repl);
		write_all(h, h->a_out, in, k);
		pump(h, 3);
		if (k < n)
			write_all(h, h->a_out, in + k, n - k);
		pump(h, 3);
		expect_out(h, h->b_out, exp, e);
		assert_int_equal(h->A.n_errors, 0);
		assert_idle(h);
		harness_free(h);
	}
}

static void test_pause_resume(void **state)
{
	(void)state;
	struct harness *h = harness_new(false);
	h->A.pause_type = 'W';
	h->A.pausing = true;
	uint8_t in[8 * PKT_BUF];
	size_t n = 0;
	n += put_pattern(in, 'Q', 10, 1);
	size_t w_off = n;
	n += put_pattern(in + n, 'W', 10, 2);
	n += put_pattern(in + n, 'Q', 10, 3);

	write_all(h, h->a_out, in, n);
	/* what came before W leaves; W and after wait */
	uint8_t got[8 * PKT_BUF];
	assert_int_equal(read_n(h, h->b_out, got, w_off), w_off);
	assert_memory_equal(got, in, w_off);
	expect_nothing(h, h->b_out);
	assert_int_equal(h->A.n_calls, 2);
	assert_true(h->A.sb.paused);

	/* more input: still paused, the owner is not asked again */
	size_t more = put_pattern(in + n, 'Q', 50, 4);
	write_all(h, h->a_out, in + n, more);
	n += more;
	expect_nothing(h, h->b_out);
	assert_int_equal(h->A.n_calls, 2);

	/* fill well past PKT_BUF: the engine stops reading, memory stays bounded */
	size_t bulk = put_pattern(in + n, 'Q', 3 * PKT_BUF, 5);
	size_t w_total = 0;
	while (w_total < bulk) {
		ssize_t k = write(h->a_out, in + n + w_total, bulk - w_total);
		if (k < 0)
			break;
		w_total += (size_t)k;
		pump(h, 2);
	}
	pump(h, 10);
	expect_nothing(h, h->b_out);
	assert_int_equal(h->A.n_calls, 2);
	assert_non_null(h->A.sb.io);
	assert_int_equal(h->A.sb.io->recv, PKT_BUF);
	assert_false(h->A.sb.want_read);
	assert_true(h->w.n_iobufs <= 2);

	/* resume: W is presented again, then everything flows in order */
	h->A.pausing = false;
	sbuf_resume(&h->A.sb);
	write_all(h, h->a_out, in + n + w_total, bulk - w_total);
	n += bulk;
	expect_out(h, h->b_out, in + w_off, n - w_off);
	assert_int_equal(h->A.n_calls, 6);
	assert_int_equal(h->A.calls[2].type, 'W');
	assert_int_equal(h->A.n_errors, 0);
	assert_idle(h);

	/* a paused message that is the last one buffered */
	h->A.pausing = true;
	n = put_pattern(in, 'W', 0, 6);
	write_all(h, h->a_out, in, n);
	pump(h, 5);
	assert_true(h->A.sb.paused);
	h->A.pausing = false;
	sbuf_resume(&h->A.sb);
	expect_out(h, h->b_out, in, n);
	n = put_pattern(in, 'Q', 3, 7);
	write_all(h, h->a_out, in, n);
	expect_out(h, h->b_out, in, n);
	assert_idle(h);
	/* resume with nothing buffered: a no-op, reading goes on */
	sbuf_resume(&h->A.sb);
	assert_idle(h);
	write_all(h, h->a_out, in, n);
	expect_out(h, h->b_out, in, n);
	harness_free(h);
}

static void test_flush(void **state)
{
	(void)state;
	struct harness *h = harness_new(false);
	h->A.flush_type = 'X';
	uint8_t in[256];
	size_t n = 0;
	n += put_pattern(in, 'Q', 30, 1);
	n += put_pattern(in + n, 'Q', 40, 2);
	size_t before_x = n;
	n += put_msg(in + n, 'X', NULL, 0); /* Terminate: everything before it must leave first */
	write_all(h, h->a_out, in, n);
	expect_out(h, h->b_out, in, before_x);
	/* asked twice: once with bytes pending (FLUSH), once after they left */
	assert_int_equal(h->A.n_calls, 4);
	assert_int_equal(h->A.calls[2].type, 'X');
	assert_int_equal(h->A.calls[3].type, 'X');
	assert_int_equal(h->A.peer_out_at_flush, before_x);
	assert_true(h->A.n_flushed >= 1);
	assert_int_equal(h->A.n_errors, 0);
	assert_idle(h);
	harness_free(h);

	h = harness_new(false);
	h->A.flush_type = 'X';
	/* X alone: on_message sees nothing pending, skips it */
	n = put_msg(in, 'X', NULL, 0);
	write_all(h, h->a_out, in, n);
	pump(h, 5);
	assert_int_equal(h->A.n_calls, 1);
	assert_int_equal(h->A.n_errors, 0);
	expect_nothing(h, h->b_out);
	assert_idle(h);
	harness_free(h);
}

/* on_message answering FLUSH with nothing pending: the engine refuses. */
static enum sbuf_action flush_always(struct sbuf *sb, const struct pkt_hdr *hdr, const uint8_t *data,
				     size_t avail)
{
	struct side *s = sb->owner;
	(void)hdr;
	(void)data;
	(void)avail;
	s->n_calls++;
	return SB_FLUSH;
}

static void test_flush_nothing_pending(void **state)
{
	(void)state;
	static const struct sbuf_ops flush_ops = {
		.on_message = flush_always, .on_error = on_error, .on_flushed = on_flushed};
	struct harness *h = harness_new(false);
	h->A.sb.ops = &flush_ops;
	uint8_t in[16];
	size_t n = put_msg(in, 'X', NULL, 0);
	write_all(h, h->a_out, in, n);
	pump(h, 5);
	assert_int_equal(h->A.n_calls, 1);
	assert_int_equal(h->A.n_errors, 1);
	assert_string_equal(h->A.error, "internal: flush with nothing pending");
	expect_nothing(h, h->b_out);
	harness_free(h);
}

/* ---- bad input --------------------------------------------------------- */

static void test_bad_length(void **state)
{
	(void)state;
	const size_t max_msg = 1000;
	/* length words: below 4, and totals (length + 1) above max_msg */
	uint32_t bad[] = {0, 1, 2, 3, (uint32_t)max_msg, (uint32_t)max_msg + 1, 0x7fffffffu, 0xffffffffu};
	uint8_t good[64], after[64], hdr[PKT_HDR_LEN + 8];
	size_t good_len = put_pattern(good, 'Q', 20, 1);
	size_t after_len = put_pattern(after, 'Q', 10, 2);

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		for (int same_write = 0; same_write < 2; same_write++) {
			struct harness *h = harness_new(false);
			h->A.sb.max_msg = max_msg;
			/* a good message first, in its own write: it goes through */
			write_all(h, h->a_out, good, good_len);
			expect_out(h, h->b_out, good, good_len);

			hdr[0] = 'Q';
			be32_write(hdr + 1, bad[i]);
			memset(hdr + PKT_HDR_LEN, 'z', 8);
			if (same_write) {
				uint8_t both[PKT_HDR_LEN + 8 + 64];
				memcpy(both, hdr, sizeof(hdr));
				memcpy(both + sizeof(hdr), after, after_len);
				write_all(h, h->a_out, both, sizeof(hdr) + after_len);
			} else {
				write_all(h, h->a_out, hdr, sizeof(hdr));
				pump(h, 5);
				/* the connection is closed; whatever follows is not forwarded */
				write_all(h, h->a_out, after, after_len);
			}
			pump(h, 5);
			assert_int_equal(h->A.n_errors, 1);
			assert_string_equal(h->A.error, "invalid message length");
			assert_int_equal(h->A.n_calls, 1); /* the bad header never reaches the owner */
			expect_nothing(h, h->b_out);
			assert_int_equal(h->A.sb.fd, -1);
			harness_free(h);
		}
	}

	/* the longest message allowed (total == max_msg) passes */
	struct harness *h = harness_new(false);
	h->A.sb.max_msg = max_msg;
	uint8_t big[1000];
	size_t m = put_pattern(big, 'D', max_msg - PKT_HDR_LEN, 3);
	assert_int_equal(m, max_msg);
	write_all(h, h->a_out, big, m);
	expect_out(h, h->b_out, big, m);
	assert_int_equal(h->A.n_errors, 0);
	harness_free(h);
}

/* ---- the side queue ---------------------------------------------------- */

static void test_queue_before_forwarded(void **state)
{
	(void)state;
	struct harness *h = harness_new(false);
	uint8_t q1[32], q2[32], fw[64], exp[256];
	size_t q1_len = put_pattern(q1, 'E', 12, 1);
	size_t q2_len = put_pattern(q2, 'N', 3, 2);
	size_t fw_len = put_pattern(fw, 'D', 40, 3);

	/* queued (not flushed), then a message is forwarded: queue first */
	assert_true(sbuf_queue(&h->B.sb, q1, q1_len));
	assert_true(sbuf_queue(&h->B.sb, q2, q2_len));
	assert_true(sbuf_has_pending(&h->B.sb));
	write_all(h, h->a_out, fw, fw_len);
	memcpy(exp, q1, q1_len);
	memcpy(exp + q1_len, q2, q2_len);
	memcpy(exp + q1_len + q2_len, fw, fw_len);
	expect_out(h, h->b_out, exp, q1_len + q2_len + fw_len);
	assert_false(sbuf_has_pending(&h->B.sb));

	/* queued and flushed: leaves at once */
	assert_true(sbuf_queue(&h->B.sb, q1, q1_len));
	assert_true(sbuf_flush(&h->B.sb));
	expect_out(h, h->b_out, q1, q1_len);

	/* a large queue that blocks on a slow socket still precedes later forwarded bytes */
	harness_free(h);
	h = harness_new(true);
	size_t big_len = 200000;
	static uint8_t big[200000 + 64];
	assert_int_equal(put_pattern(big, 'd', big_len - PKT_HDR_LEN, 4), big_len);
	assert_true(sbuf_queue(&h->B.sb, big, big_len));
	assert_false(sbuf_flush(&h->B.sb)); /* blocked: the rest waits for EV_WRITE */
	write_all(h, h->a_out, fw, fw_len);
	memcpy(big + big_len, fw, fw_len);
	expect_out(h, h->b_out, big, big_len + fw_len);
	assert_idle(h);
	harness_free(h);
}

/* sbuf.h: sbuf_queue() only appends; sbuf_flush() sends. */
static void test_queue_then_flush_sends(void **state)
{
	(void)state;
	struct harness *h = harness_new(false);
	uint8_t q[32];
	size_t q_len = put_pattern(q, 'E', 12, 1);
	/* sbuf_queue only appends (its contract); sbuf_flush sends. */
	assert_true(sbuf_queue(&h->B.sb, q, q_len));
	assert_int_equal(h->B.sb.bytes_out, 0);
	assert_true(sbuf_flush(&h->B.sb));
	expect_out(h, h->b_out, q, q_len);
	harness_free(h);
}

/*
 * Bytes queued while a forwarded message is half sent must not land inside
 * that message: the peer would read them as part of its body. Expected on
 * b_out: the whole forwarded message, then the queued one.
 */
static void test_queue_does_not_split_forwarded(void **state)
{
	(void)state;
	struct harness *h = harness_new(true);
	uint8_t fw[PKT_BUF], q[32], exp[PKT_BUF + 32];
	size_t fw_len = put_pattern(fw, 'D', 12000, 1);
	size_t q_len = put_pattern(q, 'E', 12, 2);
	write_all(h, h->a_out, fw, fw_len);
	pump(h, 5);
	/* the small socket took part of the DataRow; the rest is pending */
	assert_true(h->B.sb.bytes_out > 0);
	assert_true(h->B.sb.bytes_out < fw_len);
	assert_true(sbuf_has_pending(&h->A.sb));
	/* berth now writes a message of its own to the same socket */
	assert_true(sbuf_queue(&h->B.sb, q, q_len));
	(void)sbuf_flush(&h->B.sb);
	memcpy(exp, fw, fw_len);
	memcpy(exp + fw_len, q, q_len);
	expect_out(h, h->b_out, exp, fw_len + q_len);
	harness_free(h);
}

/* ---- EOF and close ----------------------------------------------------- */

static void test_eof_and_close(void **state)
{
	(void)state;
	uint8_t in[64];
	size_t n = put_pattern(in, 'Q', 30, 1);

	/* the far end of B goes away: B's owner hears of it */
	struct harness *h = harness_new(false);
	close_fd(&h->b_out);
	pump(h, 5);
	assert_int_equal(h->B.n_errors, 1);
	assert_string_equal(h->B.error, "connection closed by peer");
	assert_int_equal(h->B.sb.fd, -1);
	/* the closed B is unlinked from A */
	assert_null(h->A.sb.peer);
	assert_int_equal(h->A.n_errors, 0);
	harness_free(h);

	/* the far end of A closes mid-message: A's owner hears of it, keeps its buffer until close */
	h = harness_new(false);
	h->A.close_on_error = false;
	h->A.need_full_type = 'Q';
	write_all(h, h->a_out, in, 10);
	pump(h, 5);
	assert_non_null(h->A.sb.io);
	size_t free_before = h->w.n_free_iobufs;
	close_fd(&h->a_out);
	pump(h, 1);
	assert_true(h->A.n_errors >= 1);
	assert_string_equal(h->A.error, "connection closed by peer");
	assert_non_null(h->A.sb.io);
	sbuf_close(&h->A.sb, true);
	assert_null(h->A.sb.io);
	assert_int_equal(h->A.sb.fd, -1);
	assert_int_equal(h->w.n_free_iobufs, free_before + 1);
	assert_int_equal(h->w.n_free_iobufs, h->w.n_iobufs);
	assert_null(h->B.sb.peer);
	harness_free(h);

	/* B's far end stops reading for good: forwarding fails, B's owner hears "send failed" */
	h = harness_new(false);
	assert_int_equal(shutdown(h->b_out, SHUT_RD), 0);
	write_all(h, h->a_out, in, n);
	pump(h, 5);
	assert_true(h->B.saw_send_failed);
	assert_int_equal(h->B.sb.fd, -1);
	assert_int_equal(h->A.n_errors, 0);
	/* A is not stuck: it reads on (its bytes have nowhere to go) */
	write_all(h, h->a_out, in, n);
	pump(h, 5);
	assert_int_equal(h->A.n_calls, 2);
	harness_free(h);

	/* closing with queued bytes and a held buffer frees both (valgrind) */
	h = harness_new(true);
	static uint8_t big[100000];
	memset(big, 'x', 100000);
	assert_true(sbuf_queue(&h->B.sb, big, 100000));
	(void)sbuf_flush(&h->B.sb);
	h->A.pausing = true;
	h->A.pause_type = 'Q';
	write_all(h, h->a_out, in, n);
	pump(h, 5);
	assert_non_null(h->A.sb.io);
	sbuf_close(&h->B.sb, true);
	assert_int_equal(h->B.sb.out.len, 0);
	assert_null(h->B.sb.out.data);
	harness_free(h);
}

/* ---- backpressure ------------------------------------------------------- */

/* The owner paused a message while forwarded bytes were blocked: it stays paused. */
static void test_pause_survives_backpressure(void **state)
{
	(void)state;
	struct harness *h = harness_new(true);
	h->A.pause_type = 'W';
	h->A.pausing = true;
	uint8_t in[PKT_BUF], got[PKT_BUF];
	size_t d_len = put_pattern(in, 'D', 12000, 1);
	size_t n = d_len + put_pattern(in + d_len, 'W', 4, 2);
	/* one write: the engine sees D (forward) and W (pause) in one pass, then blocks on B */
	write_all(h, h->a_out, in, n);
	pump(h, 5);
	assert_int_equal(h->A.n_calls, 2);
	assert_true(sbuf_has_pending(&h->A.sb));
	/* the reader drains; the engine finishes D */
	assert_int_equal(read_n(h, h->b_out, got, d_len), d_len);
	assert_memory_equal(got, in, d_len);
	pump(h, 10);
	expect_nothing(h, h->b_out);
	/*
	 * SB_PAUSE: "stop here; the owner calls sbuf_resume() later". The write
	 * side finishing must not resume parsing behind the owner's back.
	 */
	assert_true(h->A.sb.paused);
	assert_int_equal(h->A.n_calls, 2);
	h->A.pausing = false;
	sbuf_resume(&h->A.sb);
	expect_out(h, h->b_out, in + d_len, n - d_len);
	harness_free(h);
}

/*
 * Messages larger than pkt_buf that the owner inspects (SB_NEED_FULL) go
 * out through the peer's side queue. Pushed at a reader that does not read,
 * they must still stop the engine reading, or the queue grows without bound
 * (STYLE.md 2.5: memory per connection bounded whatever the peers' speeds).
 */
static void test_backpressure_big_messages(void **state)
{
	(void)state;
	struct harness *h = harness_new(true);
	h->A.need_full_type = 'P';
	enum { BODY = 3 * PKT_BUF, N = 160 }; /* 160 x 48 KiB = 7.5 MiB */
	static uint8_t msg[PKT_HDR_LEN + BODY], got[PKT_HDR_LEN + BODY];
	const size_t m = put_pattern(msg, 'P', BODY, 7);
	size_t w_msgs = 0, w_off = 0, max_queued = 0;
	int stalled = 0;
	int64_t deadline = now_ms() + 10000;
	while (stalled < 50 && w_msgs < N) {
		assert_true(now_ms() < deadline);
		bool progress = false;
		while (w_msgs < N) {
			ssize_t k = write(h->a_out, msg + w_off, m - w_off);
			if (k < 0) {
				assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
				break;
			}
			progress = true;
			w_off += (size_t)k;
			if (w_off == m) {
				w_off = 0;
				w_msgs++;
			}
		}
		pump(h, 1);
		stalled = progress ? 0 : stalled + 1;
		size_t queued = h->B.sb.out.len - h->B.sb.out.sent;
		if (queued > max_queued)
			max_queued = queued;
	}
	/* at most a couple of messages may sit in the peer's queue */
	if (max_queued > 2 * m)
		print_message("peer queue grew to %zu bytes (%zu messages of %zu written)\n", max_queued,
			      w_msgs, m);
	assert_true(max_queued <= 2 * m);
	assert_true(w_msgs < N);

	/* drain: every message arrives whole and in order */
	for (size_t i = 0; i < w_msgs; i++) {
		assert_int_equal(read_n(h, h->b_out, got, m), m);
		assert_memory_equal(got, msg, m);
	}
	harness_free(h);
}

#define BIG_TOTAL (64u << 20)

static void test_backpressure_64mb(void **state)
{
	(void)state;
	struct harness *h = harness_new(true);
	int v = 65536;
	assert_int_equal(setsockopt(h->a_out, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)), 0);
	h->A.check_gen = true;

	/* The stream: whole messages, at least 64 MiB. */
	uint64_t total = 0;
	uint32_t n_msgs = 0;
	while (total < BIG_TOTAL)
		total += gen_total_len(n_msgs++);

	/*
	 * What may be in flight between a_out and b_out: a_out's and b_in's
	 * socket buffers (the kernel may overshoot a send buffer by up to half
	 * of it on unix sockets) and one iobuf. Any growth beyond is the engine
	 * buffering.
	 */
	uint64_t bound = (uint64_t)PKT_BUF + 2u * (uint64_t)(sock_int(h->a_out, SO_SNDBUF) +
							   sock_int(h->b_in, SO_SNDBUF) +
							   sock_int(h->b_out, SO_RCVBUF));

	struct gen wgen, rgen;
	gen_init(&wgen);
	gen_init(&rgen);
	enum { CHUNK = 65536 };
	static uint8_t wbuf[CHUNK], rbuf[CHUNK], ebuf[CHUNK];
	size_t w_have = 0, w_off = 0; /* wbuf[w_off, w_have) generated, not yet written */
	uint64_t written = 0, received = 0;
	size_t max_iobufs = 0;
	uint64_t max_in_flight = 0;

	/* Phase 1: nobody reads b_out. Write until the engine stops taking bytes. */
	int stalled = 0;
	int64_t deadline = now_ms() + 10000;
	while (stalled < 50) {
		assert_true(now_ms() < deadline);
		bool progress = false;
		for (;;) {
			if (w_off == w_have) {
				size_t k = total - written < CHUNK ? (size_t)(total - written) : CHUNK;
				if (k == 0)
					break;
				gen_fill(&wgen, wbuf, k);
				w_have = k;
				w_off = 0;
			}
			ssize_t k = write(h->a_out, wbuf + w_off, w_have - w_off);
			if (k < 0) {
				assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
				break;
			}
			w_off += (size_t)k;
			written += (uint64_t)k;
			progress = true;
		}
		pump(h, 1);
		stalled = progress ? 0 : stalled + 1;
		if (h->w.n_iobufs > max_iobufs)
			max_iobufs = h->w.n_iobufs;
		if (written > max_in_flight)
			max_in_flight = written;
	}
	print_message("backpressure: %llu bytes taken before the writer blocked (bound %llu), %zu iobufs\n",
		      (unsigned long long)written, (unsigned long long)bound, max_iobufs);
	/* the writer is blocked by the engine, not by the end of the stream */
	assert_true(written < total);
	assert_true(written <= bound);
	assert_true(max_iobufs <= 2);
	/* the engine is waiting for b_in to drain and does not read a_in meanwhile */
	assert_false(h->A.sb.want_read);
	assert_true(sbuf_has_pending(&h->A.sb));
	assert_int_equal(h->A.n_errors + h->B.n_errors, 0);

	/* Phase 2: read b_out, keep writing; check every byte in order. */
	deadline = now_ms() + 60000;
	while (received < total) {
		assert_true(now_ms() < deadline);
		for (;;) {
			ssize_t k = read(h->b_out, rbuf, CHUNK);
			if (k < 0) {
				assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
				break;
			}
			assert_true(k > 0);
			gen_fill(&rgen, ebuf, (size_t)k);
			if (memcmp(rbuf, ebuf, (size_t)k) != 0) {
				print_error("stream differs within bytes %llu..%llu\n",
					    (unsigned long long)received, (unsigned long long)received + (unsigned long long)k);
				fail();
			}
			received += (uint64_t)k;
		}
		for (;;) {
			if (w_off == w_have) {
				size_t k = total - written < CHUNK ? (size_t)(total - written) : CHUNK;
				if (k == 0)
					break;
				gen_fill(&wgen, wbuf, k);
				w_have = k;
				w_off = 0;
			}
			ssize_t k = write(h->a_out, wbuf + w_off, w_have - w_off);
			if (k < 0) {
				assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
				break;
			}
			w_off += (size_t)k;
			written += (uint64_t)k;
		}
		pump(h, 1);
		if (h->w.n_iobufs > max_iobufs)
			max_iobufs = h->w.n_iobufs;
		if (written - received > max_in_flight)
			max_in_flight = written - received;
	}
	assert_true(received == total);
	assert_true(written == total);
	assert_true(max_iobufs <= 2);
	assert_true(max_in_flight <= bound);
	assert_false(h->A.gen_mismatch);
	assert_int_equal(h->A.n_calls, (int)n_msgs);
	assert_int_equal(h->A.n_errors + h->B.n_errors, 0);
	assert_true(h->A.sb.bytes_in == total);
	assert_true(h->B.sb.bytes_out == total);
	expect_nothing(h, h->b_out);
	/* idle again: both connections hold no buffer, all are on the freelist */
	assert_idle(h);
	assert_true(h->A.sb.want_read);
	harness_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_forward_byte_exact, teardown_live),
		cmocka_unit_test_teardown(test_forward_many_small, teardown_live),
		cmocka_unit_test_teardown(test_forward_split_every_offset, teardown_live),
		cmocka_unit_test_teardown(test_tls_hello_peek, teardown_live),
		cmocka_unit_test_teardown(test_startup_packets, teardown_live),
		cmocka_unit_test_teardown(test_skip, teardown_live),
		cmocka_unit_test_teardown(test_need_full, teardown_live),
		cmocka_unit_test_teardown(test_need_full_big, teardown_live),
		cmocka_unit_test_teardown(test_skip_prefix, teardown_live),
		cmocka_unit_test_teardown(test_pause_resume, teardown_live),
		cmocka_unit_test_teardown(test_flush, teardown_live),
		cmocka_unit_test_teardown(test_flush_nothing_pending, teardown_live),
		cmocka_unit_test_teardown(test_bad_length, teardown_live),
		cmocka_unit_test_teardown(test_queue_before_forwarded, teardown_live),
		cmocka_unit_test_teardown(test_queue_then_flush_sends, teardown_live),
		cmocka_unit_test_teardown(test_queue_does_not_split_forwarded, teardown_live),
		cmocka_unit_test_teardown(test_eof_and_close, teardown_live),
		cmocka_unit_test_teardown(test_pause_survives_backpressure, teardown_live),
		cmocka_unit_test_teardown(test_backpressure_64mb, teardown_live),
		cmocka_unit_test_teardown(test_backpressure_big_messages, teardown_live),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
