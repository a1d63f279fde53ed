/*
 * sbuf.c - the relay engine: recv into a borrowed fixed buffer, walk message
 * headers, forward ranges to the peer in one send(), stop reading the source
 * while the destination is blocked (backpressure). Bodies of forwarded
 * messages are never read; only the owner's callbacks interpret messages.
 * Must not know message types past the header (client.c/server.c do).
 */
#include "sbuf.h"

#include <errno.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"
#include "runtime.h"
#include "stats.h"

/* Reads per readiness callback: one busy socket must not starve the rest. */
#define READ_BUDGET 4
/* Keep a few spare buffers; free the rest so a burst does not pin memory. */
#define IOBUF_FREELIST_MAX 64

static void sbuf_event_cb(evutil_socket_t fd, short what, void *arg);
static void sbuf_process(struct sbuf *sb);

struct iobuf *iobuf_get(struct worker *w)
{
	struct iobuf *io = w->free_iobufs;
	if (io) {
		w->free_iobufs = io->next_free;
		w->n_free_iobufs--;
	} else {
		io = malloc(sizeof(*io) + w->pkt_buf);
		if (!io)
			return NULL;
		w->n_iobufs++;
	}
	io->sent = io->parsed = io->recv = 0;
	io->next_free = NULL;
	return io;
}

void iobuf_put(struct worker *w, struct iobuf *io)
{
	if (w->n_free_iobufs >= IOBUF_FREELIST_MAX) {
		free(io);
		w->n_iobufs--;
		return;
	}
	io->next_free = w->free_iobufs;
	w->free_iobufs = io;
	w->n_free_iobufs++;
}

void sbuf_init(struct sbuf *sb, struct worker *w, int fd, const struct sbuf_ops *ops, void *owner)
{
	memset(sb, 0, sizeof(*sb));
	sb->fd = fd;
	sb->ops = ops;
	sb->owner = owner;
	sb->w = w;
	sb->max_msg = (size_t)INT32_MAX;
	sb->total_in = &w->stats.other_bytes_in;
	sb->total_out = &w->stats.other_bytes_out;
}

void sbuf_count_into(struct sbuf *sb, uint64_t *total_in, uint64_t *total_out)
{
	sb->total_in = total_in ? total_in : &sb->w->stats.other_bytes_in;
	sb->total_out = total_out ? total_out : &sb->w->stats.other_bytes_out;
}

/*
 * One event per connection, re-armed only when the wanted flags change:
 * reading stays on in the common case, so a request/response costs no
 * epoll_ctl at all; writability is asked for only while sends are blocked.
 */
static void sbuf_update_events(struct sbuf *sb)
{
	short want = (short)((sb->want_read ? EV_READ : 0) | (sb->want_write ? EV_WRITE : 0));
	if (sb->fd < 0 || want == sb->ev_what)
		return;
	if (sb->ev_what)
		event_del(&sb->ev);
	sb->ev_what = want;
	if (!want)
		return;
	event_assign(&sb->ev, sb->w->base, sb->fd, (short)(want | EV_PERSIST), sbuf_event_cb, sb);
	event_add(&sb->ev, NULL);
}

/*
 * TLS: records OpenSSL has already taken off the socket wake no epoll. When
 * reading goes on (after a pause, backpressure or a spent read budget) with
 * such bytes waiting, schedule the read callback ourselves.
 */
static void sbuf_tls_kick(struct sbuf *sb)
{
	if (BERTH_UNLIKELY(sb->ssl != NULL) && sb->want_read && (sb->ev_what & EV_READ) &&
	    !sb->paused && !sb->blocked && SSL_pending(sb->ssl) > 0)
		event_active(&sb->ev, EV_READ, 0);
}

static void sbuf_enable_read(struct sbuf *sb)
{
	if (!sb->want_read && !sb->suspended) {
		sb->want_read = true;
		sbuf_update_events(sb);
	}
	sbuf_tls_kick(sb);
}

void sbuf_stop_reading(struct sbuf *sb)
{
	if (sb->want_read) {
		sb->want_read = false;
		sbuf_update_events(sb);
	}
}

void sbuf_set_suspended(struct sbuf *sb, bool on)
{
	sb->suspended = on;
	if (on)
		sbuf_stop_reading(sb);
	else if (sb->fd >= 0 && !sb->blocked)
		sbuf_enable_read(sb);
}

static void sbuf_want_write(struct sbuf *sb, bool on)
{
	if (sb->want_write != on) {
		sb->want_write = on;
		sbuf_update_events(sb);
	}
}

void sbuf_start(struct sbuf *sb)
{
	sb->paused = false;
	sbuf_enable_read(sb);
}

void sbuf_resume(struct sbuf *sb)
{
	sb->paused = false;
	sbuf_process(sb);
}

bool sbuf_has_pending(const struct sbuf *sb)
{
	return (sb->io && sb->io->sent < sb->io->parsed) || sb->out.sent < sb->out.len;
}

bool sbuf_mid_message(const struct sbuf *sb)
{
	return sb->fwd_left > 0 || sb->fwd_after_skip > 0;
}

static void sbuf_release_io_if_empty(struct sbuf *sb)
{
	struct iobuf *io = sb->io;
	if (io && io->sent == io->recv) {
		iobuf_put(sb->w, io);
		sb->io = NULL;
	}
}

void sbuf_discard_input(struct sbuf *sb)
{
	if (sb->io) {
		iobuf_put(sb->w, sb->io);
		sb->io = NULL;
	}
	sb->fwd_left = sb->skip_left = sb->fwd_after_skip = 0;
	free(sb->big);
	sb->big = NULL;
	sb->big_have = 0;
}

/* Raw socket or TLS send; returns bytes sent, 0 for "would block", -1 on error. */
static ssize_t sbuf_send_raw(struct sbuf *sb, const uint8_t *p, size_t len)
{
	if (sb->ssl) {
		ERR_clear_error();
		int n = SSL_write(sb->ssl, p, (int)(len > INT32_MAX ? INT32_MAX : len));
		if (n > 0)
			return n;
		int err = SSL_get_error(sb->ssl, n);
		if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ)
			return 0;
		if (sb->ssl_owned)
			SSL_set_quiet_shutdown(sb->ssl, 1);
		errno = EIO;
		return -1;
	}
	for (;;) {
		ssize_t n = send(sb->fd, p, len, MSG_NOSIGNAL);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		return -1;
	}
}

/* Raw socket or TLS recv; returns bytes, 0 on EOF, -1 would block, -2 error. */
static ssize_t sbuf_recv_raw(struct sbuf *sb, uint8_t *p, size_t len)
{
	if (sb->ssl) {
		ERR_clear_error();
		int n = SSL_read(sb->ssl, p, (int)(len > INT32_MAX ? INT32_MAX : len));
		if (n > 0)
			return n;
		int err = SSL_get_error(sb->ssl, n);
		if (err == SSL_ERROR_WANT_READ)
			return -1;
		if (err == SSL_ERROR_WANT_WRITE) {
			/* A handshake or key update must write first: wait for writability, then read. */
			sb->want_write_only = true;
			sbuf_want_write(sb, true);
			return -1;
		}
		if (err == SSL_ERROR_ZERO_RETURN)
			return 0;
		if (sb->ssl_owned) {
			const char *why = ERR_reason_error_string(ERR_peek_last_error());
			/* A refused handshake (a certificate that does not verify) is the operator's business. */
			if (!SSL_is_init_finished(sb->ssl))
				log_info("TLS handshake with a client failed on fd %d: %s", sb->fd,
					 why ? why : "connection closed");
			else
				log_debug("TLS receive failed on fd %d: %s", sb->fd,
					  why ? why : "connection reset");
			SSL_set_quiet_shutdown(sb->ssl, 1); /* no close_notify after a fatal error */
		}
		return -2;
	}
	for (;;) {
		ssize_t n = recv(sb->fd, p, len, 0);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -1;
		return -2;
	}
}

/* Send from dst's own queue; true when it is empty. */
static bool sbuf_flush_out(struct sbuf *dst, bool *failed)
{
	struct obuf *o = &dst->out;
	while (o->sent < o->len) {
		ssize_t n = sbuf_send_raw(dst, o->data + o->sent, o->len - o->sent);
		if (n < 0) {
			*failed = true;
			return false;
		}
		if (n == 0)
			return false;
		o->sent += (size_t)n;
		dst->bytes_out += (uint64_t)n;
		*dst->total_out += (uint64_t)n;
	}
	o->len = o->sent = 0;
	if (!dst->keep_out_buffer && o->data) {
		/* An idle client keeps no buffer: its login replies were the bulk of it. */
		free(o->data);
		o->data = NULL;
		o->cap = 0;
	}
	return true;
}

/* Backpressure: src reads no more until dst's socket takes what waits for it. */
static void sbuf_block_on(struct sbuf *src, struct sbuf *dst)
{
	dst->blocked_src = src;
	sbuf_want_write(dst, true);
	sbuf_stop_reading(src);
	src->blocked = true;
}

static size_t obuf_pending(const struct obuf *o)
{
	return o->len - o->sent;
}

/*
 * Send src's pending forwarded range to its peer (after the peer's own
 * queue). Returns true when nothing is left; on a blocked send arms the
 * peer's write event and stops reading src (backpressure).
 */
static bool sbuf_send_pending(struct sbuf *src)
{
	struct sbuf *dst = src->peer;
	struct iobuf *io = src->io;
	bool failed = false;

	if (!io || io->sent == io->parsed)
		return true;
	if (!dst) {
		/* Nobody to send to (peer left): the bytes are moot. */
		io->sent = io->parsed;
		return true;
	}
	if (dst->out.sent < dst->out.len && !dst->ssl) {
		/* berth's own bytes and the forwarded range leave in one writev(). */
		struct obuf *o = &dst->out;
		size_t olen = o->len - o->sent, flen = io->parsed - io->sent;
		struct iovec iov[2] = {{o->data + o->sent, olen}, {io->data + io->sent, flen}};
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
		ssize_t n;
		do
			n = sendmsg(dst->fd, &mh, MSG_NOSIGNAL);
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				failed = true;
			goto blocked;
		}
		dst->bytes_out += (uint64_t)n;
		*dst->total_out += (uint64_t)n;
		size_t took = (size_t)n < olen ? (size_t)n : olen;
		o->sent += took;
		io->sent += (size_t)n - took;
		if (o->sent < o->len)
			goto blocked;
		o->len = o->sent = 0;
		if (!dst->keep_out_buffer) {
			free(o->data);
			o->data = NULL;
			o->cap = 0;
		}
	}
	if (!sbuf_flush_out(dst, &failed))
		goto blocked;
	while (io->sent < io->parsed) {
		ssize_t n = sbuf_send_raw(dst, io->data + io->sent, io->parsed - io->sent);
		if (n < 0) {
			failed = true;
			goto blocked;
		}
		if (n == 0)
			goto blocked;
		io->sent += (size_t)n;
		dst->bytes_out += (uint64_t)n;
		*dst->total_out += (uint64_t)n;
	}
	return true;

blocked:
	if (failed) {
		/* The destination is broken; its own read side will report it. Drop the range. */
		io->sent = io->parsed;
		dst->ops->on_error(dst, "send failed");
		return false;
	}
	sbuf_block_on(src, dst);
	return false;
}

bool sbuf_flush(struct sbuf *sb)
{
	bool failed = false;
	if (!sbuf_flush_out(sb, &failed)) {
		if (failed) {
			sb->ops->on_error(sb, "send failed");
			return false;
		}
		sbuf_want_write(sb, true);
		return false;
	}
	return true;
}

void sbuf_try_flush(struct sbuf *sb)
{
	bool failed = false;
	(void)sbuf_flush_out(sb, &failed);
}

static bool obuf_append(struct obuf *o, const void *data, size_t len);

bool sbuf_queue(struct sbuf *sb, const void *data, size_t len)
{
	struct sbuf *src = sb->peer;
	if (src && src->io && src->io->sent < src->io->parsed) {
		/* Bytes already parsed for sb come first: move them into the queue. */
		if (src->fwd_left)
			return false; /* mid-message: nothing may go in between */
		struct iobuf *io = src->io;
		if (!obuf_append(&sb->out, io->data + io->sent, io->parsed - io->sent))
			return false;
		io->sent = io->parsed;
	}
	return obuf_append(&sb->out, data, len);
}

static bool obuf_append(struct obuf *o, const void *data, size_t len)
{
	if (o->cap - o->len < len) {
		size_t ncap = o->cap ? o->cap : 256;
		while (ncap - o->len < len)
			ncap *= 2;
		uint8_t *n = realloc(o->data, ncap);
		if (!n)
			return false;
		o->data = n;
		o->cap = ncap;
	}
	memcpy(o->data + o->len, data, len);
	o->len += len;
	return true;
}

/*
 * Move unparsed bytes to the front so a partial header or a partial message
 * being inspected can complete. Only done when nothing waits to be sent.
 */
static void sbuf_compact(struct sbuf *sb)
{
	struct iobuf *io = sb->io;
	if (!io || io->sent != io->parsed || io->sent == 0)
		return;
	size_t rest = io->recv - io->parsed;
	if (rest)
		memmove(io->data, io->data + io->parsed, rest);
	io->sent = io->parsed = 0;
	io->recv = rest;
}

enum big_result { BIG_DONE = 0, BIG_WAIT, BIG_CLOSED };

/* Hand a completely assembled large message to the owner. */
static enum big_result sbuf_deliver_big(struct sbuf *sb)
{
	enum sbuf_action act =
		sb->ops->on_message(sb, &sb->big_hdr, sb->big, sb->big_hdr.total_len);
	switch (act) {
	case SB_FORWARD:
		if (sb->peer && !sbuf_queue(sb->peer, sb->big, sb->big_hdr.total_len)) {
			sb->ops->on_error(sb, "out of memory");
			return BIG_CLOSED;
		}
		if (sb->peer)
			sbuf_flush(sb->peer);
		break;
	case SB_SKIP:
		break;
	case SB_PAUSE:
		sb->paused = true;
		return BIG_WAIT;
	case SB_CLOSED:
		return BIG_CLOSED;
	default:
		sb->ops->on_error(sb, "internal: unsupported action for a large message");
		return BIG_CLOSED;
	}
	free(sb->big);
	sb->big = NULL;
	sb->big_have = 0;
	if (sb->peer && obuf_pending(&sb->peer->out) > 0 && !sbuf_flush(sb->peer)) {
		sbuf_block_on(sb, sb->peer);
		return BIG_WAIT;
	}
	return BIG_DONE;
}

/* Walk messages in [parsed, recv). Returns false if the owner closed sb. */
static bool sbuf_parse(struct sbuf *sb)
{
	struct iobuf *io = sb->io;
	while (io->parsed < io->recv && !sb->paused && !sb->blocked) {
		size_t avail = io->recv - io->parsed;
		if (sb->big) {
			/* Slow path: copy into the assembly buffer (pending range is empty). */
			size_t want = sb->big_hdr.total_len - sb->big_have;
			size_t n = avail < want ? avail : want;
			memcpy(sb->big + sb->big_have, io->data + io->parsed, n);
			sb->big_have += n;
			io->parsed += n;
			io->sent = io->parsed;
			if (sb->big_have < sb->big_hdr.total_len)
				continue;
			enum big_result r = sbuf_deliver_big(sb);
			if (r == BIG_CLOSED)
				return false;
			if (r == BIG_WAIT)
				return true;
			continue;
		}
		if (sb->fwd_left) {
			size_t n = avail < sb->fwd_left ? avail : sb->fwd_left;
			io->parsed += n;
			sb->fwd_left -= n;
			continue;
		}
		if (sb->skip_left) {
			if (io->sent != io->parsed)
				return true; /* flush first: skipping needs an empty pending range */
			size_t n = avail < sb->skip_left ? avail : sb->skip_left;
			io->parsed += n;
			io->sent = io->parsed;
			sb->skip_left -= n;
			if (!sb->skip_left && sb->fwd_after_skip) {
				sb->fwd_left = sb->fwd_after_skip;
				sb->fwd_after_skip = 0;
			}
			continue;
		}

		struct pkt_hdr hdr;
		const uint8_t *p = io->data + io->parsed;
		if (sb->startup) {
			if (avail < 4)
				break;
			uint32_t len = be32_read(p);
			if (p[0] == 22 && !sb->ssl) {
				sb->ops->on_error(sb, "direct TLS connection requested, but TLS is not "
						      "offered to this client");
				return false;
			}
			if (len < 8 || len > 10000) {
				sb->ops->on_error(sb, "invalid startup packet length");
				return false;
			}
			hdr.type = 0;
			hdr.total_len = len;
		} else {
			switch (codec_read_header(p, avail, sb->max_msg, &hdr)) {
			case HDR_SHORT:
				goto need_more;
			case HDR_BAD_LEN:
				sb->ops->on_error(sb, "invalid message length");
				return false;
			case HDR_OK:
				break;
			}
		}

		enum sbuf_action act = sb->ops->on_message(sb, &hdr, p, avail);
		/* The owner queued a lot for the peer (a large message): wait for it to leave. */
		if (act != SB_CLOSED && sb->peer && obuf_pending(&sb->peer->out) > sb->w->pkt_buf &&
		    !sbuf_flush(sb->peer))
			sbuf_block_on(sb, sb->peer);
		switch (act) {
		case SB_FORWARD:
			sb->fwd_left = hdr.total_len;
			break;
		case SB_SKIP:
			sb->skip_left = hdr.total_len;
			break;
		case SB_SKIP_PREFIX:
			BERTH_ASSERT(sb->prefix_skip > 0 && sb->prefix_skip <= hdr.total_len);
			sb->skip_left = sb->prefix_skip;
			sb->fwd_after_skip = hdr.total_len - sb->prefix_skip;
			break;
		case SB_NEED_FULL:
			if (avail >= hdr.total_len) {
				/* Owner asked for what it already has: protocol bug on our side. */
				sb->ops->on_error(sb, "internal: message not consumed");
				return false;
			}
			if (hdr.total_len > sb->w->pkt_buf) {
				/* Larger than a buffer: assemble it on the (counted) slow path. */
				if (io->sent != io->parsed)
					return true; /* send what precedes it first */
				sb->big = malloc(hdr.total_len);
				if (!sb->big) {
					sb->ops->on_error(sb, "out of memory");
					return false;
				}
				sb->big_hdr = hdr;
				sb->big_have = 0;
				sb->w->stats.big_messages++;
				continue;
			}
			goto need_more;
		case SB_FLUSH:
			if (io->sent == io->parsed) {
				sb->ops->on_error(sb, "internal: flush with nothing pending");
				return false;
			}
			return true;
		case SB_PAUSE:
			/*
			 * Keep the read event: a waiting client rarely sends more, and
			 * deleting and re-adding it would cost two epoll_ctl calls per
			 * wait. read_cb stops reading once the buffer is full.
			 */
			sb->paused = true;
			return true;
		case SB_CLOSED:
			return false;
		}
	}
	return true;

need_more:
	return true;
}

/*
 * Parse what is buffered, send what is to be forwarded, and repeat while
 * progress is made. Re-entrant calls (an owner callback resuming its peer)
 * are folded into the running pass.
 */
static void sbuf_process(struct sbuf *sb)
{
	if (sb->in_process)
		return;
	sb->in_process = true;
	if (sb->big && sb->big_have == sb->big_hdr.total_len && !sb->paused && !sb->blocked) {
		enum big_result r = sbuf_deliver_big(sb);
		if (r == BIG_CLOSED)
			return;
		if (r == BIG_WAIT)
			goto out;
	}
	for (;;) {
		struct iobuf *io = sb->io;
		if (!io)
			break;
		size_t before_parsed = io->parsed;
		if (!sbuf_parse(sb))
			return; /* closed: sb may be gone from the owner's point of view */
		io = sb->io;
		if (!io)
			break;
		bool had_pending = io->sent < io->parsed;
		if (!sbuf_send_pending(sb))
			goto out; /* blocked or destination failed */
		sbuf_compact(sb);
		if (had_pending && sb->ops->on_flushed) {
			sb->in_process = false;
			sb->ops->on_flushed(sb);
			if (sb->fd < 0)
				return; /* owner closed it */
			sb->in_process = true;
		}
		if (sb->paused || sb->blocked)
			goto out;
		io = sb->io;
		if (!io)
			break;
		/* Stop when nothing moved: waiting for more bytes. */
		if (io->parsed == before_parsed && !had_pending)
			break;
		if (io->parsed == io->recv)
			break;
	}
	sb->in_process = false;
	sbuf_release_io_if_empty(sb);
	if (!sb->blocked)
		sbuf_enable_read(sb);
	return;
out:
	sb->in_process = false;
}

/*
 * Direct TLS (PostgreSQL 17's sslnegotiation=direct): the client starts with
 * a ClientHello instead of an SSLRequest. Its first byte, a handshake
 * record's type (22), cannot start a startup packet (a length of 22 << 24
 * bytes), so one peek tells which it is before any byte is taken off the
 * socket for OpenSSL to miss. False, with the peek still to come, when
 * nothing has arrived yet.
 */
static bool sbuf_peek_first_byte(struct sbuf *sb, bool *tls_hello)
{
	uint8_t b;
	ssize_t n;
	do
		n = recv(sb->fd, &b, 1, MSG_PEEK);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return false;
	sb->peek_tls_hello = false;
	*tls_hello = n == 1 && b == 22;
	return true;
}

static void sbuf_on_readable(struct sbuf *sb)
{
	bool tls_hello = false;
	if (BERTH_UNLIKELY(sb->peek_tls_hello)) {
		if (!sbuf_peek_first_byte(sb, &tls_hello))
			return;
		if (tls_hello && !sb->ops->on_tls_hello(sb))
			return; /* closed by the owner */
	}

	for (int round = 0; round < READ_BUDGET; round++) {
		if (!sb->io) {
			sb->io = iobuf_get(sb->w);
			if (!sb->io) {
				sb->ops->on_error(sb, "out of memory for I/O buffer");
				return;
			}
		}
		struct iobuf *io = sb->io;
		size_t space = sb->w->pkt_buf - io->recv;
		if (space == 0) {
			/* Full of unsent or partial data: process() will make room or pause. */
			sbuf_stop_reading(sb);
			return;
		}
		ssize_t n = sbuf_recv_raw(sb, io->data + io->recv, space);
		if (n == -1) {
			sbuf_release_io_if_empty(sb);
			return;
		}
		if (n == 0 || n == -2) {
			sbuf_release_io_if_empty(sb);
			sb->ops->on_error(sb, n == 0 ? "connection closed by peer" : "receive failed");
			return;
		}
		io->recv += (size_t)n;
		sb->bytes_in += (uint64_t)n;
		*sb->total_in += (uint64_t)n;
		sb->last_activity_us = worker_now_us(sb->w);
		sbuf_process(sb);
		if (sb->fd < 0 || sb->paused || sb->blocked || !sb->want_read)
			return;
		/* A short read means the socket is drained; TLS may still hold records. */
		if ((size_t)n < space && !(sb->ssl && SSL_pending(sb->ssl) > 0))
			return;
	}
	sbuf_tls_kick(sb); /* budget spent */
}

void sbuf_read_now(struct sbuf *sb)
{
	if (sb->fd >= 0 && sb->want_read)
		sbuf_on_readable(sb);
}

static void sbuf_on_writable(struct sbuf *dst)
{
	bool failed = false;
	sbuf_want_write(dst, false);
	if (dst->want_write_only) {
		dst->want_write_only = false;
		sbuf_read_now(dst);
		if (dst->fd < 0)
			return; /* closed by the owner */
	}
	if (!sbuf_flush_out(dst, &failed)) {
		if (failed)
			dst->ops->on_error(dst, "send failed");
		else
			sbuf_want_write(dst, true);
		return;
	}
	struct sbuf *src = dst->blocked_src;
	dst->blocked_src = NULL;
	if (src && src->peer == dst) {
		/* Resume the source: it sends its pending range and reads on. */
		src->blocked = false;
		sbuf_process(src);
		if (src->fd >= 0 && !src->blocked && !src->io)
			sbuf_enable_read(src);
	}
}

static void sbuf_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sbuf *sb = arg;
	struct worker *w = sb->w; /* outlives sb, which the owner may close */
	(void)fd;
	w->io_now_us = stats_now_us();
	if (what & EV_WRITE) {
		sbuf_on_writable(sb);
		if (sb->fd < 0)
			goto out; /* closed by the owner */
	}
	if ((what & EV_READ) && sb->want_read)
		sbuf_on_readable(sb);
out:
	w->io_now_us = 0;
}

void sbuf_link(struct sbuf *a, struct sbuf *b)
{
	if (!b) {
		if (a->peer) {
			if (a->peer->blocked_src == a)
				a->peer->blocked_src = NULL;
			if (a->blocked_src == a->peer)
				a->blocked_src = NULL;
			a->peer->peer = NULL;
		}
		a->peer = NULL;
		return;
	}
	a->peer = b;
	b->peer = a;
}

void sbuf_close(struct sbuf *sb, bool keep_fd)
{
	if (sb->peer)
		sbuf_link(sb, NULL);
	if (sb->ssl_owned) {
		/* close_notify if the socket takes it now; a TLS goodbye is not worth waiting for. */
		if (sb->fd >= 0 && SSL_is_init_finished(sb->ssl))
			(void)SSL_shutdown(sb->ssl);
		ERR_clear_error();
		SSL_free(sb->ssl);
		sb->ssl = NULL;
		sb->ssl_owned = false;
	}
	if (sb->fd >= 0) {
		if (sb->ev_what)
			event_del(&sb->ev);
		if (!keep_fd)
			close(sb->fd);
	}
	sb->ev_what = 0;
	sb->want_read = sb->want_write = false;
	sb->fd = -1;
	sbuf_discard_input(sb);
	free(sb->out.data);
	memset(&sb->out, 0, sizeof(sb->out));
}
