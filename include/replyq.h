/*
 * replyq.h - per-server FIFO of expected replies (STYLE.md 2.8). Every
 * request on the server socket (the client's, or berth's own) pushes an
 * entry, in the order its bytes reach the server; replies pop them. The
 * entry says what the client sees: forwarded replies, swallowed replies to
 * berth's own requests, or replies berth makes itself. A ring that grows
 * for long pipelines; servers are few, so its memory does not matter.
 */
#ifndef BERTH_REPLYQ_H
#define BERTH_REPLYQ_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "compiler.h"

enum req_kind {
	REQ_QUERY = 0,    /* 'Q': replies until ReadyForQuery */
	REQ_FUNCTION,     /* 'F': ditto */
	REQ_SYNC,         /* 'S': ReadyForQuery */
	REQ_PARSE,        /* 'P': ParseComplete ('1') */
	REQ_BIND,         /* 'B': BindComplete ('2') */
	REQ_DESCRIBE_STMT, /* 'D' 'S': ParameterDescription, then RowDescription or NoData */
	REQ_DESCRIBE_PORTAL, /* 'D' 'P': RowDescription or NoData */
	REQ_EXECUTE,      /* 'E': rows, then CommandComplete/EmptyQuery/PortalSuspended */
	REQ_CLOSE,        /* 'C': CloseComplete ('3') */
	REQ_OWN_PARSE,    /* berth's Parse of a shared statement: ParseComplete swallowed */
	REQ_OWN_CLOSE,    /* berth's Close (cache eviction): CloseComplete swallowed */
	REQ_OWN_QUERY,    /* berth's simple query: everything swallowed up to ReadyForQuery */
	REQ_OWN_BEGIN,    /* defer_begin's Parse/Bind/Execute of BEGIN, no Sync: swallowed up to
			   * its CommandComplete; an error ends the client */
	REQ_SYNTH,        /* no server reply: berth answers the client itself, in order */
};

/* What berth's own query is for (REQ_OWN_QUERY). */
enum own_query {
	OWN_PARAM_SYNC = 0, /* client's settings before its request */
	OWN_RESET,          /* server_reset_query after a session-mode client */
	OWN_RESYNC,         /* restore startup settings after RESET: ParameterStatus forwarded */
	OWN_PROBE,          /* does the session hold state that cannot be pooled? */
	OWN_DEALLOCATE,     /* drop the statement cache after a cached-plan error */
	OWN_CHECK,          /* server_check_query on a connection idle past server_check_delay */
	OWN_CONNECT,        /* the entry's connect_query: on a new connection, after a reset */
	OWN_CONNECT_SETTINGS, /* which session settings connect_query left */
};

/* REQ_QUERY sub bits: it drops every prepared statement; an error happened in it. */
#define QUERY_DROPS_STATEMENTS 1
#define QUERY_FAILED 2

/* REQ_EXECUTE sub: its CommandComplete is given the tag DEALLOCATE (a stand-in ran). */
#define EXEC_TAG_DEALLOCATE 1

/* REQ_SYNTH sub for a simple query berth answers: CommandComplete DEALLOCATE + ReadyForQuery. */
#define SYNTH_DEALLOCATE 'z'

struct req {
	uint8_t kind;  /* enum req_kind */
	uint8_t sub;   /* REQ_OWN_QUERY: enum own_query; REQ_SYNTH: message type;
			* REQ_DESCRIBE_STMT: 1 once ParameterDescription came */
	uint16_t qlog; /* REQ_QUERY/REQ_EXECUTE: its querylog record number; 0 = not logged */
	uint32_t id;   /* shared statement id (REQ_PARSE/REQ_OWN_PARSE; 0 = unnamed) */
	uint8_t *msg;  /* REQ_SYNTH ErrorResponse bytes (malloc'd), else NULL */
};

struct replyq {
	struct req *ring;
	uint32_t cap; /* power of two */
	uint32_t head;
	uint32_t n;
};

static inline bool replyq_empty(const struct replyq *q)
{
	return q->n == 0;
}

static inline struct req *replyq_head(struct replyq *q)
{
	return q->n ? &q->ring[q->head] : NULL;
}

/* Entry i places behind the head. */
static inline struct req *replyq_at(struct replyq *q, uint32_t i)
{
	return &q->ring[(q->head + i) & (q->cap - 1)];
}

BERTH_MUSTCHECK static inline bool replyq_push(struct replyq *q, uint8_t kind, uint8_t sub,
					       uint32_t id, uint8_t *msg)
{
	if (q->n == q->cap) {
		uint32_t ncap = q->cap ? q->cap * 2 : 16;
		struct req *n = malloc(sizeof(*n) * ncap);
		if (!n)
			return false;
		for (uint32_t i = 0; i < q->n; i++)
			n[i] = *replyq_at(q, i);
		free(q->ring);
		q->ring = n;
		q->cap = ncap;
		q->head = 0;
	}
	struct req *r = &q->ring[(q->head + q->n) & (q->cap - 1)];
	r->kind = kind;
	r->sub = sub;
	r->qlog = 0;
	r->id = id;
	r->msg = msg;
	q->n++;
	return true;
}

static inline void replyq_pop(struct replyq *q)
{
	struct req *r = &q->ring[q->head];
	free(r->msg);
	r->msg = NULL;
	q->head = (q->head + 1) & (q->cap - 1);
	q->n--;
}

static inline void replyq_clear(struct replyq *q)
{
	while (q->n)
		replyq_pop(q);
	free(q->ring);
	q->ring = NULL;
	q->cap = q->head = 0;
}

/* True if a REQ_SYNC, REQ_QUERY or REQ_FUNCTION is queued (a ReadyForQuery will come). */
static inline bool replyq_has_sync(struct replyq *q)
{
	for (uint32_t i = 0; i < q->n; i++) {
		uint8_t k = replyq_at(q, i)->kind;
		if (k == REQ_SYNC || k == REQ_QUERY || k == REQ_FUNCTION || k == REQ_OWN_QUERY)
			return true;
	}
	return false;
}

#endif
