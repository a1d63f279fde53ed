/*
 * querylog.c - per-statement query lines (log_level "query"). Owns each
 * client's struct querylog: the unnamed statement's text, what the last
 * Bind set up, and a small ring of statements in flight whose texts live
 * in a fixed arena, sized once from log_query_max_length; in session mode
 * (or pinned) also the texts of the last few named statements, which
 * pstmt.c does not track there. Allocates only
 * when a client first logs (or after a reload changed the sizes); never
 * per message. Must not write to sockets or change what berth relays.
 *
 * Which completion belongs to which statement: client.c notes a Query or
 * Execute, server.c's server_push tags its reply-queue entry with a
 * sequence number (struct req.qlog), and replies to a tagged entry
 * complete the record with that number. Simple protocol: one line per
 * Query message at its ReadyForQuery (a multi-statement Query is one line,
 * with the tag of its last CommandComplete). Extended protocol: one line
 * per Execute at its CommandComplete, EmptyQueryResponse or
 * PortalSuspended, or at the error that ends it; an error in the Parse or
 * Bind before it is that Execute's error, and Executes the server then
 * skips up to Sync never ran and are not logged.
 *
 * Duration: from the stats' query start (client->query_start_us: the
 * request that began the client's unanswered run, once a server was lent,
 * so waiting for a pooled connection is not counted; the Query, or the
 * Parse/Bind before an Execute), or from the completion of the client's
 * previous statement if later (so a pipelined statement is not charged for
 * those ahead of it), to its completion.
 */
#include "querylog.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "config.h"
#include "log.h"
#include "pool.h"
#include "pstmt.h"
#include "replyq.h"
#include "runtime.h"
#include "server.h"
#include "stats.h"

/* Statements in flight per client that can be logged; more are dropped and counted. */
#define QLOG_DEPTH 16
#define QLOG_TAG_MAX 64
/* Named statements whose text berth does not keep elsewhere (session mode, pinned): the last few. */
#define QLOG_NAMED 8
#define QLOG_NAME_MAX 64

enum qlog_flags {
	QF_TRUNCATED = 1, /* text cut at log_query_max_length (or by the arena) */
	QF_PARAMS = 2,    /* parameters were rendered (log_parameters) */
	QF_HIDE = 4,      /* the statement sets a password given as a parameter */
};

/* A statement in flight. */
struct qlog_rec {
	int64_t start_us;
	uint32_t off;        /* text, then parameters, in the arena */
	uint32_t alen;       /* bytes taken there (at least 1, so offsets of live records differ) */
	uint32_t text_len;
	uint32_t params_len;
	uint32_t full_len;   /* statement length before truncation; 0 = not known */
	uint16_t seq;
	uint8_t flags;
	bool extended;
};

/* A text kept until an Execute needs it (unnamed statement, last Bind). */
struct qlog_text {
	uint32_t text_len;
	uint32_t params_len;
	uint32_t full_len;
	uint8_t flags;
	bool valid;
};

/* A named statement's text, for sessions whose statements pstmt.c does not track. */
struct qlog_named {
	char name[QLOG_NAME_MAX]; /* "" = free */
	struct qlog_text t;       /* text in named_text + index * text_cap */
	uint32_t used;            /* LRU clock */
};

struct querylog {
	uint32_t text_cap;       /* log_query_max_length when allocated */
	uint32_t params_cap;     /* the same if log_parameters was on, else 0 */
	uint32_t arena_cap;
	uint32_t head;           /* oldest record in flight */
	uint32_t n;              /* records in flight */
	bool noted;              /* ring[(head + n) % QLOG_DEPTH] is the request noted last */
	bool overflow;           /* the request noted last found no room: drop it at commit */
	int last_parse;          /* the Parse noted last: -1 unnamed, >= 0 named[i], -2 other */
	uint16_t next_seq;
	int64_t parse_us;        /* when the Parse noted last was relayed */
	int64_t last_done_us;    /* completion of the previous statement */
	char tag[QLOG_TAG_MAX];  /* simple Query at the head: its last CommandComplete tag */
	char addr[INET6_ADDRSTRLEN + 16]; /* the client's address as lines show it; "" = not yet */
	char sqlstate[6];        /* ... or the error that ended it */
	struct qlog_text unnamed; /* in unnamed_buf */
	struct qlog_text bound;   /* in bound_buf: text, then parameters */
	struct qlog_rec ring[QLOG_DEPTH];
	struct qlog_named *named; /* QLOG_NAMED entries, then their texts; made on first use */
	char *named_text;
	uint32_t named_clock;
	char *unnamed_buf;       /* text_cap bytes */
	char *bound_buf;         /* text_cap + params_cap bytes */
	char *arena;             /* arena_cap bytes */
	char mem[];
};

void querylog_free(struct querylog *ql)
{
	if (ql)
		free(ql->named);
	free(ql);
}

/* Does c's server queue hold a logged statement? (Records can outlive one: see qlog_get.) */
static bool qlog_in_flight(const struct client *c)
{
	if (!c->server)
		return false;
	struct replyq *q = &c->server->q;
	for (uint32_t i = 0; i < q->n; i++) {
		const struct req *e = replyq_at(q, i);
		if (e->qlog && (e->kind == REQ_QUERY || e->kind == REQ_EXECUTE))
			return true;
	}
	return false;
}

/* c's state, made (or remade after a reload changed the sizes, when nothing is in flight). */
static struct querylog *qlog_get(struct client *c, const struct config *cfg)
{
	uint32_t text_cap = (uint32_t)cfg->log_query_max_length;
	uint32_t params_cap = cfg->log_parameters ? text_cap : 0;
	struct querylog *ql = c->ql;
	bool same = ql && ql->text_cap == text_cap && ql->params_cap == params_cap;
	/*
	 * Records whose completions were never seen (query logging was off for a
	 * while) would fill the ring for good: forget them once nothing is in
	 * flight. Checked only when they matter, so never on the usual path.
	 */
	if (ql && ql->n && (!same || ql->n == QLOG_DEPTH) && !qlog_in_flight(c))
		ql->head = ql->n = 0;
	if (ql && (same || ql->n > 0))
		return ql;
	/* Room for two statements of the longest kept size (or many short ones). */
	uint32_t arena_cap = 2 * (text_cap + params_cap) + 256;
	size_t size = sizeof(*ql) + (size_t)text_cap * 2 + params_cap + arena_cap;
	struct querylog *nq = calloc(1, size);
	if (!nq)
		return ql;
	nq->text_cap = text_cap;
	nq->params_cap = params_cap;
	nq->arena_cap = arena_cap;
	nq->unnamed_buf = nq->mem;
	nq->bound_buf = nq->unnamed_buf + text_cap;
	nq->arena = nq->bound_buf + text_cap + params_cap;
	nq->next_seq = 1;
	nq->last_parse = -2;
	querylog_free(ql);
	c->ql = nq;
	return nq;
}

/* ---- text helpers ---------------------------------------------------------- */

/* Append what fits of s; false if not all of it did. */
static bool put(char *out, size_t cap, size_t *o, const char *s, size_t n)
{
	size_t room = cap - *o;
	size_t k = n < room ? n : room;
	memcpy(out + *o, s, k);
	*o += k;
	return k == n;
}

/* Cut n back so out[0..n) does not end inside a UTF-8 character. */
static size_t utf8_boundary(const char *out, size_t n)
{
	if (!n)
		return 0;
	size_t i = n - 1;
	while (i > 0 && n - i < 4 && ((unsigned char)out[i] & 0xc0) == 0x80)
		i--;
	unsigned char lead = (unsigned char)out[i];
	size_t want = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
	return i + want > n ? i : n;
}

static bool ident_char(unsigned char ch)
{
	return isalnum(ch) || ch == '_' || ch == '$' || ch >= 0x80;
}

static bool sql_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f';
}

/* Position of the first c in s[i..end), or end. memchr is vectorised. */
static size_t next_byte(const char *s, char c, size_t i, size_t end)
{
	const char *q = i < end ? memchr(s + i, c, end - i) : NULL;
	return q ? (size_t)(q - s) : end;
}

/*
 * Next whole word "password" (any case) at or after from; len if none.
 * Only a 'p' or 'P' can start it: both are found by memchr, so a statement
 * without one costs two scans.
 */
static size_t find_password(const char *s, size_t len, size_t from)
{
	if (len < 8)
		return len;
	size_t end = len - 8 + 1; /* last possible start + 1 */
	size_t lo = next_byte(s, 'p', from, end), up = next_byte(s, 'P', from, end);
	for (;;) {
		size_t i = lo < up ? lo : up;
		if (i >= end)
			return len;
		if (i == lo)
			lo = next_byte(s, 'p', i + 1, end);
		else
			up = next_byte(s, 'P', i + 1, end);
		if (strncasecmp(s + i, "password", 8) != 0)
			continue;
		if (i > 0 && ident_char((unsigned char)s[i - 1]))
			continue;
		if (i + 8 < len && ident_char((unsigned char)s[i + 8]))
			continue; /* password_encryption, passwords */
		return i;
	}
}

/*
 * The secret after the PASSWORD keyword at k: [*a, *b), scanning on at *next.
 * False if nothing follows that could hold one (NULL, end of text, $n: then
 * *hide is set, the value is a parameter).
 */
static bool password_span(const char *s, size_t len, size_t k, size_t *a, size_t *b,
			  size_t *next, bool *hide)
{
	size_t j = k + 8;
	while (j < len && sql_space(s[j]))
		j++;
	bool eq = false;
	if (j < len && s[j] == '=') {
		eq = true;
		j++;
		while (j < len && sql_space(s[j]))
			j++;
	}
	if (j >= len)
		return false;
	char ch = s[j];
	bool esc = (ch == 'E' || ch == 'e') && j + 1 < len && s[j + 1] == '\'';
	if (ch == '\'' || esc) {
		if (esc)
			j++;
		size_t run = 0;
		while (j + run < len && s[j + run] == '\'')
			run++;
		if (run == 2 && (j + 2 >= len || strchr(" \t\r\n;,)", s[j + 2])))
			return false; /* '' : an empty password */
		/*
		 * A literal nested in another one (a statement inside DO '...' or a
		 * function body) has its quotes doubled at each level: 2^k quotes
		 * open it, and escaped quotes inside come in pairs of those. So the
		 * lowest set bit of the run is the quote of this literal's level.
		 */
		size_t nest = run & (~run + 1);
		size_t i = j + nest;
		*a = i;
		while (i < len) {
			if (esc && s[i] == '\\') {
				i += 2;
				continue;
			}
			if (s[i] != '\'') {
				i++;
				continue;
			}
			size_t r = 0;
			while (i + r < len && s[i + r] == '\'')
				r++;
			size_t units = r / nest;
			if (units % 2 == 1) {
				/* Escaped quotes first, then the closing one; the rest belong outside. */
				*b = i + (units - 1) * nest;
				*next = *b + nest;
				return true;
			}
			i += r;
		}
		*b = *next = len; /* unterminated (cut off): hide the rest */
		return true;
	}
	if (ch == '$') {
		if (j + 1 < len && isdigit((unsigned char)s[j + 1])) {
			*hide = true;
			return false;
		}
		size_t t = j + 1;
		while (t < len && (isalnum((unsigned char)s[t]) || s[t] == '_'))
			t++;
		if (t >= len || s[t] != '$')
			return false;
		size_t taglen = t - j + 1;
		*a = t + 1;
		const char *end = memmem(s + *a, len - *a, s + j, taglen);
		*b = end ? (size_t)(end - s) : len;
		*next = end ? *b + taglen : len;
		return true;
	}
	if (eq && ch != '"') {
		/* password=secret in a connection string */
		size_t e = j;
		while (e < len && !sql_space(s[e]) && !strchr("'\";,)", s[e]))
			e++;
		if (e == j)
			return false;
		*a = j;
		*b = *next = e;
		return true;
	}
	return false;
}

size_t querylog_copy_masked(char *out, size_t cap, const char *s, size_t len, bool *hide_params,
			    bool *cut)
{
	size_t o = 0, pos = 0, from = 0;
	*hide_params = false;
	*cut = false;
	for (;;) {
		size_t k = find_password(s, len, from);
		if (k >= len)
			break;
		size_t a, b, next;
		if (!password_span(s, len, k, &a, &b, &next, hide_params)) {
			from = k + 8;
			continue;
		}
		if (!put(out, cap, &o, s + pos, a - pos) || !put(out, cap, &o, "***", 3))
			goto cut;
		pos = b;
		from = next > k + 8 ? next : k + 8;
	}
	if (put(out, cap, &o, s + pos, len - pos))
		return o;
cut:
	*cut = true;
	return utf8_boundary(out, o);
}

size_t querylog_render_params(char *out, size_t cap, const uint8_t *p, size_t len, bool *cut)
{
	static const char hex[] = "0123456789abcdef";
	struct pkt_reader r;
	size_t o = 0;
	char num[48];
	*cut = false;
	reader_init(&r, p, len);
	uint16_t nfmt = reader_u16(&r);
	const uint8_t *fmts = reader_bytes(&r, (size_t)nfmt * 2);
	uint16_t n = reader_u16(&r);
	for (uint16_t i = 0; i < n && !r.failed; i++) {
		uint32_t vlen = reader_u32(&r);
		if (r.failed)
			break;
		bool binary = fmts && nfmt > 0 && be16_read(fmts + 2 * (nfmt == 1 ? 0 : i < nfmt ? i : 0)) == 1;
		int m = snprintf(num, sizeof(num), "%s$%u = ", i ? ", " : "", (unsigned)i + 1);
		if (!put(out, cap, &o, num, (size_t)m))
			goto cut;
		if (vlen == 0xffffffffu) {
			if (!put(out, cap, &o, "NULL", 4))
				goto cut;
			continue;
		}
		size_t have = reader_remaining(&r) < vlen ? reader_remaining(&r) : vlen;
		const uint8_t *v = reader_bytes(&r, have);
		if (binary && vlen > 32) {
			m = snprintf(num, sizeof(num), "(binary, %u bytes)", (unsigned)vlen);
			if (!put(out, cap, &o, num, (size_t)m))
				goto cut;
		} else if (binary) {
			if (!put(out, cap, &o, "'\\x", 3))
				goto cut;
			for (size_t k = 0; k < have; k++) {
				char hx[2] = {hex[v[k] >> 4], hex[v[k] & 15]};
				if (!put(out, cap, &o, hx, 2))
					goto cut;
			}
			if (!put(out, cap, &o, "'", 1))
				goto cut;
		} else {
			/* A text value as a literal: quotes doubled. */
			if (!put(out, cap, &o, "'", 1))
				goto cut;
			for (size_t k = 0; k < have; k++) {
				const char *c = (const char *)v + k;
				if (!put(out, cap, &o, c, 1) || (*c == '\'' && !put(out, cap, &o, c, 1)))
					goto cut;
			}
			if (have == vlen && !put(out, cap, &o, "'", 1))
				goto cut;
		}
		if (have < vlen)
			r.failed = true; /* the rest of the message is not at hand */
	}
	if (!r.failed)
		return o;
	/* The message was cut short (larger than the buffer): say so. */
	put(out, cap, &o, "...", 3);
cut:
	*cut = true;
	return utf8_boundary(out, o);
}

/* ---- records --------------------------------------------------------------- */

static struct qlog_rec *qlog_last(struct querylog *ql)
{
	return &ql->ring[(ql->head + ql->n - 1) % QLOG_DEPTH];
}

/*
 * Free contiguous arena room for the next record: its offset, and in *room
 * how much (maybe less than want when statements pile up in a pipeline).
 */
static uint32_t arena_room(struct querylog *ql, uint32_t want, uint32_t *room)
{
	if (ql->n == 0) {
		*room = ql->arena_cap;
		return 0;
	}
	const struct qlog_rec *first = &ql->ring[ql->head];
	const struct qlog_rec *last = qlog_last(ql);
	uint32_t end = last->off + last->alen;
	if (last->off >= first->off) {
		uint32_t tail = ql->arena_cap - end;
		if (tail >= want || tail >= first->off) {
			*room = tail;
			return end;
		}
		*room = first->off; /* wrap to the start */
		return 0;
	}
	*room = first->off - end;
	return end;
}

/* The slot for a new record, or NULL (and overflow) when the ring is full. */
static struct qlog_rec *rec_begin(struct querylog *ql)
{
	ql->noted = false;
	ql->overflow = ql->n == QLOG_DEPTH;
	if (ql->overflow)
		return NULL;
	struct qlog_rec *r = &ql->ring[(ql->head + ql->n) % QLOG_DEPTH];
	memset(r, 0, sizeof(*r));
	return r;
}

/* Reserve the record's arena space; false (overflow) if there is none. */
static bool rec_place(struct querylog *ql, struct qlog_rec *r, uint32_t want, uint32_t *room)
{
	r->off = arena_room(ql, want, room);
	if (*room == 0) {
		ql->overflow = true;
		return false;
	}
	return true;
}

static void rec_done(struct querylog *ql, struct qlog_rec *r, int64_t start_us)
{
	r->alen = r->text_len + r->params_len ? r->text_len + r->params_len : 1;
	r->start_us = start_us;
	ql->noted = true;
}

static void note_query(struct querylog *ql, const uint8_t *body, size_t blen, size_t full,
		       int64_t start_us)
{
	struct qlog_rec *r = rec_begin(ql);
	if (!r)
		return;
	const char *sql = (const char *)body;
	size_t tl = strnlen(sql, blen);
	uint32_t want = (uint32_t)(tl + 64 < ql->text_cap ? tl + 64 : ql->text_cap);
	uint32_t room;
	if (!rec_place(ql, r, want, &room))
		return;
	bool hide, cut;
	size_t cap = room < ql->text_cap ? room : ql->text_cap;
	r->text_len = (uint32_t)querylog_copy_masked(ql->arena + r->off, cap, sql, tl, &hide, &cut);
	r->full_len = (uint32_t)full;
	r->flags = cut || tl < full ? QF_TRUNCATED : 0;
	rec_done(ql, r, start_us);
}

/* Does pstmt.c keep c's named statements (transaction mode, not pinned)? As client.c decides. */
static bool qlog_shared_stmts(const struct client *c)
{
	return c->pool->pool_mode != POOL_SESSION &&
	       worker_config(c->w)->max_prepared_statements > 0 && !c->pinned;
}

/* The slot for a named statement's text: its own, else a free or the least recently used one. */
static int qlog_named_slot(struct querylog *ql, const char *name, bool add)
{
	int victim = -1;
	for (int i = 0; i < QLOG_NAMED; i++) {
		struct qlog_named *e = &ql->named[i];
		if (strcmp(e->name, name) == 0) {
			e->used = ++ql->named_clock;
			return i;
		}
		if (victim < 0 || e->used < ql->named[victim].used)
			victim = i;
	}
	if (!add)
		return -1;
	snprintf(ql->named[victim].name, QLOG_NAME_MAX, "%s", name);
	ql->named[victim].used = ++ql->named_clock;
	return victim;
}

/* Copy a statement's text (masked, truncated) into out and describe it in t. */
static void qlog_keep_text(struct querylog *ql, struct qlog_text *t, char *out, const char *sql,
			   size_t avail, bool whole)
{
	size_t tl = strnlen(sql, avail);
	bool hide, cut;
	t->text_len = (uint32_t)querylog_copy_masked(out, ql->text_cap, sql, tl, &hide, &cut);
	bool known = tl < avail || whole;
	t->full_len = known ? (uint32_t)tl : 0;
	t->flags = (cut || !known ? QF_TRUNCATED : 0) | (hide ? QF_HIDE : 0);
	t->params_len = 0;
	t->valid = true;
}

static void note_parse(struct client *c, struct querylog *ql, const uint8_t *body, size_t blen,
		       bool whole)
{
	if (blen < 1)
		return;
	ql->parse_us = stats_now_us();
	ql->last_parse = -2;
	const char *name = (const char *)body;
	size_t nl = strnlen(name, blen);
	if (nl == blen)
		return; /* the name is not all here: nothing to go by */
	if (nl == 0) {
		ql->last_parse = -1;
		qlog_keep_text(ql, &ql->unnamed, ql->unnamed_buf, name + 1, blen - 1, whole);
		return;
	}
	/* Shared statements keep their text in the registry (pstmt.c). */
	if (qlog_shared_stmts(c) || nl >= QLOG_NAME_MAX)
		return;
	if (!ql->named) {
		size_t size = QLOG_NAMED * (sizeof(struct qlog_named) + ql->text_cap);
		ql->named = calloc(1, size);
		if (!ql->named)
			return;
		ql->named_text = (char *)(ql->named + QLOG_NAMED);
	}
	int i = qlog_named_slot(ql, name, true);
	qlog_keep_text(ql, &ql->named[i].t, ql->named_text + (size_t)i * ql->text_cap, name + nl + 1,
		       blen - nl - 1, whole);
	ql->last_parse = i;
}

static void note_bind(struct client *c, struct querylog *ql, const uint8_t *body, size_t blen)
{
	struct qlog_text *t = &ql->bound;
	t->valid = false;
	const uint8_t *nul = memchr(body, 0, blen);
	if (!nul)
		return;
	const char *stmt = (const char *)nul + 1;
	size_t rest = blen - (size_t)(nul + 1 - body);
	size_t sl = strnlen(stmt, rest);
	if (sl == rest)
		return;
	bool hide = false, cut = false;
	int i;
	if (!stmt[0]) {
		if (!ql->unnamed.valid)
			return;
		*t = ql->unnamed;
		memcpy(ql->bound_buf, ql->unnamed_buf, t->text_len);
		hide = t->flags & QF_HIDE;
	} else {
		struct pstmt *ps = client_stmt_get(&c->stmts, stmt);
		if (ps) {
			const char *sql = (const char *)ps->body;
			size_t tl = strnlen(sql, ps->len);
			t->text_len = (uint32_t)querylog_copy_masked(ql->bound_buf, ql->text_cap, sql,
								     tl, &hide, &cut);
			t->full_len = (uint32_t)tl;
			t->flags = cut ? QF_TRUNCATED : 0;
		} else if ((i = ql->named ? qlog_named_slot(ql, stmt, false) : -1) >= 0) {
			/* Session mode or a pinned session: the text kept at its Parse. */
			*t = ql->named[i].t;
			memcpy(ql->bound_buf, ql->named_text + (size_t)i * ql->text_cap, t->text_len);
			hide = t->flags & QF_HIDE;
		} else {
			/* Prepared before query logging began, or pushed out of the last few. */
			int n = snprintf(ql->bound_buf, ql->text_cap, "(prepared statement \"%s\")", stmt);
			t->text_len = n < 0 ? 0 : (uint32_t)n < ql->text_cap ? (uint32_t)n : ql->text_cap;
			t->full_len = 0;
			t->flags = 0;
		}
	}
	t->params_len = 0;
	if (ql->params_cap && worker_config(c->w)->log_parameters) {
		char *out = ql->bound_buf + t->text_len;
		if (hide) {
			static const char hidden[] = "(hidden: the statement sets a password)";
			size_t n = sizeof(hidden) - 1 < ql->params_cap ? sizeof(hidden) - 1 : ql->params_cap;
			memcpy(out, hidden, n);
			t->params_len = (uint32_t)n;
		} else {
			const uint8_t *p = (const uint8_t *)stmt + sl + 1;
			t->params_len = (uint32_t)querylog_render_params(
				out, ql->params_cap, p, (size_t)(body + blen - p), &cut);
		}
		t->flags |= QF_PARAMS;
	}
	t->valid = true;
}

static void note_execute(struct querylog *ql, int64_t start_us)
{
	struct qlog_rec *r = rec_begin(ql);
	if (!r)
		return;
	static const char unknown[] = "(portal of an earlier Bind)";
	const struct qlog_text *t = &ql->bound;
	const char *text = t->valid ? ql->bound_buf : unknown;
	uint32_t tl = t->valid ? t->text_len : (uint32_t)sizeof(unknown) - 1;
	uint32_t pl = t->valid ? t->params_len : 0;
	uint32_t room;
	if (!rec_place(ql, r, tl + pl, &room))
		return;
	r->text_len = tl < room ? tl : room;
	r->params_len = pl < room - r->text_len ? pl : room - r->text_len;
	memcpy(ql->arena + r->off, text, r->text_len);
	memcpy(ql->arena + r->off + r->text_len, text + tl, r->params_len);
	r->full_len = t->valid ? t->full_len : 0;
	r->flags = t->valid ? t->flags : 0;
	if (r->text_len < tl)
		r->flags |= QF_TRUNCATED;
	r->extended = true;
	rec_done(ql, r, start_us);
}

void querylog_request(struct client *c, const struct pkt_hdr *hdr, const uint8_t *data,
		      size_t avail)
{
	uint8_t t = hdr->type;
	if (t != 'Q' && t != 'P' && t != 'B' && t != 'E')
		return;
	struct querylog *ql = qlog_get(c, worker_config(c->w));
	if (!ql)
		return;
	size_t have = avail < hdr->total_len ? avail : hdr->total_len;
	const uint8_t *body = data + PKT_HDR_LEN;
	size_t blen = have > PKT_HDR_LEN ? have - PKT_HDR_LEN : 0;
	/* The stats' clock reading for this request (or the pipeline it joined) when there is one. */
	int64_t start = t == 'Q' || t == 'E' ? c->query_start_us ? c->query_start_us : stats_now_us() : 0;
	switch (t) {
	case 'Q':
		/* The body is the text and its NUL: the full length is known even when cut. */
		note_query(ql, body, blen,
			   hdr->total_len > PKT_HDR_LEN ? hdr->total_len - PKT_HDR_LEN - 1 : 0, start);
		break;
	case 'P':
		note_parse(c, ql, body, blen, avail >= hdr->total_len);
		break;
	case 'B':
		note_bind(c, ql, body, blen);
		break;
	case 'E':
		note_execute(ql, start);
		break;
	}
}

uint16_t querylog_commit(struct client *c)
{
	struct querylog *ql = c->ql;
	if (!ql)
		return 0;
	if (!ql->noted) {
		if (ql->overflow)
			log_count_dropped(); /* its line cannot be written: counted like a sink's drop */
		ql->overflow = false;
		return 0;
	}
	struct qlog_rec *r = &ql->ring[(ql->head + ql->n) % QLOG_DEPTH];
	r->seq = ql->next_seq++;
	if (ql->next_seq == 0)
		ql->next_seq = 1;
	ql->n++;
	ql->noted = false;
	return r->seq;
}

/* ---- completions ------------------------------------------------------------ */

static void qlog_pop(struct querylog *ql)
{
	ql->head = (ql->head + 1) % QLOG_DEPTH;
	ql->n--;
	ql->tag[0] = 0;
	ql->sqlstate[0] = 0;
}

/* The record numbered seq, at the head once records left behind are dropped. */
static struct qlog_rec *qlog_find(struct querylog *ql, uint16_t seq)
{
	while (ql->n && ql->ring[ql->head].seq != seq) {
		log_count_dropped(); /* not reached: completions come in request order */
		qlog_pop(ql);
	}
	return ql->n ? &ql->ring[ql->head] : NULL;
}

static void client_addr_text(const struct client *c, char *out, size_t len)
{
	char ip[INET6_ADDRSTRLEN];
	switch (c->addr.sa.sa_family) {
	case AF_INET:
		inet_ntop(AF_INET, &c->addr.in4.sin_addr, ip, sizeof(ip));
		snprintf(out, len, "%s:%u", ip, (unsigned)ntohs(c->addr.in4.sin_port));
		return;
	case AF_INET6:
		inet_ntop(AF_INET6, &c->addr.in6.sin6_addr, ip, sizeof(ip));
		snprintf(out, len, "[%s]:%u", ip, (unsigned)ntohs(c->addr.in6.sin6_port));
		return;
	default:
		snprintf(out, len, "unix");
	}
}

/* Write the line of a statement that ended at now (if it took log_min_duration). */
static void qlog_line(struct client *c, struct querylog *ql, struct log_query_line *line,
		      int64_t start_us, int64_t now)
{
	int64_t start = start_us > ql->last_done_us ? start_us : ql->last_done_us;
	ql->last_done_us = now;
	if (now - start < worker_config(c->w)->log_min_duration)
		return;
	if (!ql->addr[0]) /* formatted once per client: inet_ntop and printf are costly */
		client_addr_text(c, ql->addr, sizeof(ql->addr));
	const char *app = params_get(&c->vars, "application_name");
	line->conn_id = c->id;
	line->client = ql->addr;
	line->database = c->database ? c->database : "";
	line->user = c->user ? c->user : "";
	line->application_name = app ? app : "";
	line->duration_us = now - start;
	log_query(line);
}

/* The statement of entry e ended: log it (unless skipped) and forget it. */
static void qlog_finish(struct client *c, struct querylog *ql, struct req *e, const char *tag,
			const char *sqlstate, bool log)
{
	uint16_t seq = e->qlog;
	e->qlog = 0; /* a reply seen twice (SB_FLUSH) ends nothing twice */
	struct qlog_rec *r = qlog_find(ql, seq);
	if (!r)
		return;
	int64_t now = stats_now_us();
	if (!log) {
		ql->last_done_us = now;
	} else {
		struct log_query_line line = {
			.extended = r->extended,
			.tag = sqlstate ? NULL : tag,
			.sqlstate = sqlstate,
			.statement = ql->arena + r->off,
			.statement_len = r->text_len,
			.statement_full_len = r->full_len,
			.truncated = r->flags & QF_TRUNCATED,
			.parameters = r->flags & QF_PARAMS ? ql->arena + r->off + r->text_len : NULL,
			.parameters_len = r->params_len,
		};
		qlog_line(c, ql, &line, r->start_us, now);
	}
	qlog_pop(ql);
}

/*
 * A Parse failed and no Execute follows it before Sync (a driver preparing a
 * statement first): the statement never runs, but its error is worth a line.
 * The text: the client's shared statement (transaction mode) by the name its
 * queue entry carries, else that of the Parse noted last (unnamed, or a
 * named one of a session whose statements pstmt.c does not track).
 */
static void qlog_parse_failed(struct client *c, struct querylog *ql, struct req *p,
			      const char *code)
{
	p->qlog = 1; /* logged: not again if this reply is handled twice */
	struct pstmt *ps = p->msg ? client_stmt_get(&c->stmts, (const char *)p->msg) : NULL;
	struct log_query_line line = {.extended = true, .sqlstate = code};
	if (ps) {
		bool hide, cut;
		size_t tl = strnlen((const char *)ps->body, ps->len);
		/* The Bind staging buffer as scratch: this segment's Binds were skipped. */
		line.statement_len = querylog_copy_masked(ql->bound_buf, ql->text_cap,
							  (const char *)ps->body, tl, &hide, &cut);
		line.statement = ql->bound_buf;
		line.statement_full_len = tl;
		line.truncated = cut;
	} else if (!p->msg && ql->last_parse >= -1) {
		const struct qlog_text *t = ql->last_parse == -1 ? &ql->unnamed
								: &ql->named[ql->last_parse].t;
		line.statement = ql->last_parse == -1
					 ? ql->unnamed_buf
					 : ql->named_text + (size_t)ql->last_parse * ql->text_cap;
		line.statement_len = t->text_len;
		line.statement_full_len = t->full_len;
		line.truncated = t->flags & QF_TRUNCATED;
	} else {
		line.statement = "(prepared statement)";
		line.statement_len = strlen(line.statement);
	}
	qlog_line(c, ql, &line, ql->parse_us, stats_now_us());
}

enum sbuf_action querylog_reply(struct client *c, struct replyq *q, const struct pkt_hdr *hdr,
				const uint8_t *data, size_t avail)
{
	struct querylog *ql = c->ql;
	struct req *r = replyq_head(q);
	if (!ql || !r)
		return SB_FORWARD;
	bool whole = avail >= hdr->total_len;
	bool small = hdr->total_len <= c->w->pkt_buf;
	const uint8_t *body = data + PKT_HDR_LEN;
	size_t blen = (whole ? hdr->total_len : avail) - PKT_HDR_LEN;
	if (avail < PKT_HDR_LEN)
		blen = 0;
	switch (hdr->type) {
	case 'C': {
		if (!r->qlog || (r->kind != REQ_QUERY && r->kind != REQ_EXECUTE))
			return SB_FORWARD;
		if (!whole && small)
			return SB_NEED_FULL;
		char tag[QLOG_TAG_MAX];
		size_t tl = strnlen((const char *)body, blen);
		if (tl > sizeof(tag) - 1)
			tl = sizeof(tag) - 1;
		memcpy(tag, body, tl);
		tag[tl] = 0;
		if (r->kind == REQ_QUERY) {
			memcpy(ql->tag, tag, sizeof(tag));
			return SB_FORWARD;
		}
		/* berth's stand-in for the client's DEALLOCATE: the client sees DEALLOCATE. */
		qlog_finish(c, ql, r, r->sub == EXEC_TAG_DEALLOCATE ? "DEALLOCATE" : tag, NULL, true);
		return SB_FORWARD;
	}
	case 'I': /* EmptyQueryResponse */
		if (r->qlog && r->kind == REQ_EXECUTE)
			qlog_finish(c, ql, r, "EMPTY", NULL, true);
		else if (r->qlog && r->kind == REQ_QUERY && !ql->tag[0])
			snprintf(ql->tag, sizeof(ql->tag), "EMPTY");
		return SB_FORWARD;
	case 's': /* PortalSuspended: the row limit was reached */
		if (r->qlog && r->kind == REQ_EXECUTE)
			qlog_finish(c, ql, r, "SUSPENDED", NULL, true);
		return SB_FORWARD;
	case 'Z':
		if (r->qlog && r->kind == REQ_QUERY)
			qlog_finish(c, ql, r, ql->tag, ql->sqlstate[0] ? ql->sqlstate : NULL, true);
		return SB_FORWARD;
	case 'E':
		break;
	default:
		return SB_FORWARD;
	}
	/* ErrorResponse. */
	if (r->kind == REQ_FUNCTION || r->kind == REQ_OWN_QUERY || r->kind == REQ_SYNTH ||
	    (r->kind == REQ_QUERY && !r->qlog) || (r->kind == REQ_PARSE && r->qlog))
		return SB_FORWARD; /* not a client's statement, or logged already */
	if (!whole && small)
		return SB_NEED_FULL;
	char code[6];
	if (!codec_error_sqlstate(body, blen, code))
		snprintf(code, sizeof(code), "?????");
	if (r->kind == REQ_QUERY) {
		memcpy(ql->sqlstate, code, sizeof(code)); /* logged at its ReadyForQuery */
		return SB_FORWARD;
	}
	/*
	 * "Extended Query": the server now skips everything up to Sync. The first
	 * Execute from here on is the statement that failed; later ones never run.
	 */
	bool failed_one = false;
	for (uint32_t i = 0; i < q->n; i++) {
		struct req *e = replyq_at(q, i);
		if (e->kind == REQ_SYNC)
			break;
		if (e->kind != REQ_EXECUTE)
			continue;
		if (e->qlog)
			qlog_finish(c, ql, e, NULL, code, !failed_one);
		failed_one = true;
	}
	if (!failed_one && r->kind == REQ_PARSE)
		qlog_parse_failed(c, ql, r, code);
	return SB_FORWARD;
}
