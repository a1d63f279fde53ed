/*
 * sbuf.h - per-connection I/O: a socket, its read/write events, at most one
 * borrowed iobuf of received bytes, and a small queue of bytes berth made
 * itself. The engine walks message headers in the received bytes and asks
 * the owner (client.c or server.c) what to do with each message; forwarded
 * ranges leave for the peer's socket in one send(). It never interprets a
 * message past its header: that is the owner's job.
 * Models: PgBouncer sbuf.c, STYLE.md section 2 "Data path".
 */
#ifndef BERTH_SBUF_H
#define BERTH_SBUF_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "compiler.h"

struct worker;
struct sbuf;

/* Received bytes of one connection. [0,sent) done, [sent,parsed) to forward, [parsed,recv) unparsed. */
struct iobuf {
	struct iobuf *next_free; /* worker freelist link while unused */
	size_t sent;
	size_t parsed;
	size_t recv;
	uint8_t data[]; /* pkt_buf bytes */
};

/* What the owner wants done with the message at the parse cursor. */
enum sbuf_action {
	SB_FORWARD = 0, /* send the whole message to the peer, reading no more of it */
	SB_SKIP,        /* drop the whole message */
	SB_SKIP_PREFIX, /* drop sb->prefix_skip bytes, forward the rest (a rewritten prefix) */
	SB_NEED_FULL,   /* call again once the whole message is at hand (larger than
			 * pkt_buf: assembled in a counted, allocated slow-path buffer;
			 * then only SB_FORWARD, SB_SKIP and SB_PAUSE are allowed) */
	SB_FLUSH,       /* send what is pending first, then call again for this message */
	SB_PAUSE,       /* stop here; the owner calls sbuf_resume() later */
	SB_CLOSED,      /* the owner closed the connection: touch nothing */
};

struct sbuf_ops {
	/*
	 * hdr describes the message at the cursor; data points at its first byte
	 * and avail bytes of it are in the buffer (all of it when avail >=
	 * hdr->total_len). Startup-phase packets (no type byte) come with
	 * hdr->type == 0 while sb->startup is set.
	 */
	enum sbuf_action (*on_message)(struct sbuf *sb, const struct pkt_hdr *hdr,
				       const uint8_t *data, size_t avail);
	/* EOF, socket error or protocol error. The owner must close sb. */
	void (*on_error)(struct sbuf *sb, const char *reason);
	/* Everything forwarded so far has left (optional). May close/unlink. */
	void (*on_flushed)(struct sbuf *sb);
	/*
	 * With peek_tls_hello: the connection opens with a TLS handshake record
	 * (direct TLS). The owner sets sb->ssl, or closes sb and returns false.
	 */
	bool (*on_tls_hello)(struct sbuf *sb);
};

struct obuf {
	uint8_t *data; /* malloc'd on first use: berth-made messages are a slow path */
	size_t len;
	size_t sent;
	size_t cap;
};

struct sbuf {
	int fd;
	SSL *ssl;                  /* non-NULL when the socket speaks TLS (owned by libpq for servers) */
	struct event ev;           /* one persistent event; its flags follow want_read/want_write */
	struct iobuf *io;          /* borrowed while bytes are held */
	struct sbuf *peer;         /* where forwarded bytes go; NULL when unlinked */
	struct sbuf *blocked_src;  /* peer whose forwarded bytes wait for our socket */
	size_t fwd_left;           /* rest of a message being forwarded across reads */
	size_t skip_left;          /* rest of a message being dropped across reads */
	size_t fwd_after_skip;     /* forward this much once skip_left is done (prefix rewrite) */
	size_t prefix_skip;        /* set by the owner with SB_SKIP_PREFIX */
	uint8_t *big;              /* slow path: a message larger than pkt_buf being assembled */
	size_t big_have;           /* bytes of it so far */
	struct pkt_hdr big_hdr;
	size_t max_msg;            /* longest message accepted (max_packet_size) */
	struct obuf out;           /* berth-made bytes for this socket, sent before forwarded ones */
	const struct sbuf_ops *ops;
	void *owner;
	struct worker *w;
	uint64_t bytes_in;         /* received on this socket */
	uint64_t bytes_out;        /* sent on this socket */
	uint64_t *total_in;        /* a running total this socket's received bytes add to (never NULL) */
	uint64_t *total_out;       /* ...and its sent bytes */
	int64_t last_activity_us;  /* last receive (loop-cached clock) */
	short ev_what;             /* EV_READ/EV_WRITE the event is added with now (0: not added) */
	bool want_read;            /* reading is on (off only with a full buffer or by the owner) */
	bool want_write;           /* sends are blocked: wake when writable */
	bool paused;               /* the owner said SB_PAUSE: only sbuf_resume() undoes it */
	bool blocked;              /* forwarded bytes wait for the peer's socket (backpressure) */
	bool startup;              /* packets have no type byte (client startup phase) */
	bool in_process;           /* re-entrancy guard */
	bool want_write_only;      /* TLS: SSL_read wants the socket writable */
	bool ssl_owned;            /* berth made ssl (a client's TLS): sbuf_close shuts it down and frees it */
	bool keep_out_buffer;      /* keep the queue's memory once empty (servers: few, busy) */
	bool suspended;            /* SUSPEND: read nothing new until resumed (admin console) */
	bool peek_tls_hello;       /* look at the first byte before reading: TLS without SSLRequest? */
};

/* Set up sb on a connected non-blocking fd. Does not start reading. */
void sbuf_init(struct sbuf *sb, struct worker *w, int fd, const struct sbuf_ops *ops, void *owner);
/* Start (or restart) reading and process anything already buffered. */
void sbuf_start(struct sbuf *sb);
/* Read and process now, as if the socket had just been reported readable. May close the owner. */
void sbuf_read_now(struct sbuf *sb);
/* Continue after SB_PAUSE: process buffered messages, then read again. May close the owner. */
void sbuf_resume(struct sbuf *sb);
/* Stop reading (keeps buffered bytes). */
void sbuf_stop_reading(struct sbuf *sb);
/*
 * SUSPEND (on): read nothing more from the socket until called with off,
 * whatever else asks to read; sending goes on, so buffers drain.
 */
void sbuf_set_suspended(struct sbuf *sb, bool on);
/*
 * Queue bytes berth made for sb's socket (call sbuf_flush to send them now).
 * They go out after the bytes already parsed for sb from its peer and before
 * any parsed later. Returns false if memory ran out, or if the peer is in the
 * middle of forwarding a message to sb: the bytes cannot go in between.
 */
bool sbuf_queue(struct sbuf *sb, const void *data, size_t len) BERTH_MUSTCHECK;
/* Send queued and pending forwarded bytes; true when everything left. */
bool sbuf_flush(struct sbuf *sb);
/*
 * Send sb's own queue as far as the socket takes it now, and nothing else:
 * no callbacks on failure, no write event (for a connection about to close).
 */
void sbuf_try_flush(struct sbuf *sb);
/* True while the connection holds bytes not yet sent (either direction). */
bool sbuf_has_pending(const struct sbuf *sb);
/* True while a message from sb is being forwarded and its end has not come yet. */
bool sbuf_mid_message(const struct sbuf *sb);
/* Drop bytes received but not yet forwarded (peer went away). */
void sbuf_discard_input(struct sbuf *sb);
/* Release events, buffers and (unless keep_fd) the socket. */
void sbuf_close(struct sbuf *sb, bool keep_fd);
/* Point a and b at each other, or unlink a (and its peer) when b is NULL. */
void sbuf_link(struct sbuf *a, struct sbuf *b);
/* From now on add received/sent byte counts to these totals (NULL: the worker's "other"). */
void sbuf_count_into(struct sbuf *sb, uint64_t *total_in, uint64_t *total_out);

/* Worker-side freelist of iobufs. */
struct iobuf *iobuf_get(struct worker *w);
void iobuf_put(struct worker *w, struct iobuf *io);

#endif
