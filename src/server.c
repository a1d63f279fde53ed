/*
 * server.c - the server connection state machine. Relays server replies to
 * the linked client reading only headers, except ReadyForQuery (transaction
 * status: when the connection may go back to the pool), ParameterStatus
 * (parameter tracking) and replies to berth's own queries (swallowed).
 * Writes to clients only by relaying. Reference: PostgreSQL manual,
 * "Message Flow" -> "Simple Query", "Extended Query", "Asynchronous Operations".
 */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "config.h"
#include "errors.h"
#include "log.h"
#include "pool.h"
#include "pstmt.h"
#include "querylog.h"
#include "replyq.h"
#include "runtime.h"
#include "upstream.h"

/* Room for the parameter-sync statement berth sends before a client's request. */
#define SYNC_QUERY_MAX 8192

static enum sbuf_action server_on_message(struct sbuf *sb, const struct pkt_hdr *hdr,
					  const uint8_t *data, size_t avail);
static void server_on_error(struct sbuf *sb, const char *reason);
static void server_on_flushed(struct sbuf *sb);
static bool server_send_own_query(struct server *s, enum own_query what, const char *sql,
				  size_t n);
static void server_release_when_flushed(struct server *s);
static void server_connect_done(struct server *s);
static bool server_start_connect_query(struct server *s);
static bool server_only_own_queries(struct server *s);
static bool server_has_own_query(struct server *s, enum own_query what);
static bool server_sync_params(struct server *s, struct client *c);
static void error_message(const uint8_t *body, size_t len, char *out, size_t outlen);
static bool server_send_deferred_begin(struct server *s);

static const struct sbuf_ops server_sbuf_ops = {
	.on_message = server_on_message,
	.on_error = server_on_error,
	.on_flushed = server_on_flushed,
};

const char *server_state_name(enum server_state st)
{
	switch (st) {
	case SV_FREE:
		return "free";
	case SV_CONNECTING:
		return "connecting";
	case SV_IDLE:
		return "idle";
	case SV_ACTIVE:
		return "active";
	case SV_RESETTING:
		return "resetting";
	case SV_CLOSED:
		return "closed";
	}
	return "?";
}

void server_set_state(struct server *s, enum server_state st)
{
	struct pool *p = s->pool;
	struct worker *w = p->w;
	log_debug("S-%llu: %s -> %s", (unsigned long long)s->id, server_state_name(s->state),
		  server_state_name(st));
	list_del(&s->node);
	switch (st) {
	case SV_FREE:
		break;
	case SV_CONNECTING:
		list_append(&p->sv_connecting, &s->node);
		break;
	case SV_IDLE:
		list_append(&p->sv_idle, &s->node);
		break;
	case SV_ACTIVE:
		list_append(&p->sv_active, &s->node);
		s->suspect = false; /* lent unchecked (no server_check_query): its client is the test */
		break;
	case SV_RESETTING:
		list_append(&p->sv_resetting, &s->node);
		break;
	case SV_CLOSED:
		list_append(&w->closing_servers, &s->node);
		worker_schedule_reap(w);
		break;
	}
	BERTH_ASSERT((st == SV_ACTIVE) == (s->client != NULL) || st == SV_CLOSED);
	s->state = st;
	s->state_since_us = worker_now_us(w);
}

struct server *server_connect(struct pool *pool)
{
	struct worker *w = pool->w;
	const struct config *cfg = worker_config(w);
	struct server *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->pool = pool;
	s->passthrough = pool->replication != REPL_NONE;
	s->id = ++w->next_id;
	s->txn_status = 'I';
	s->sb.fd = -1;
	list_init(&s->node);
	s->connect_time_us = worker_now_us(w);
	pool->n_servers++;
	pool->db->n_servers++;
	w->stats.server_connects++;
	server_set_state(s, SV_CONNECTING);

	const struct db_def *def = pool->db->def;
	struct upstream_login login = {
		.def = def,
		.user = pool->server_user,
		.password = pool->server_password,
		.dbname = def->dbname ? def->dbname : pool->db->name,
		.timeout_us = cfg->server_connect_timeout,
		.rotate_hosts = def->load_balance_hosts == LB_ROUND_ROBIN ? pool->host_offset++
									     : pool->host_offset,
		.application_name = pool->repl_app[0] ? pool->repl_app : NULL,
		.replication = pool->replication == REPL_PHYSICAL  ? "true"
			       : pool->replication == REPL_LOGICAL ? "database"
								   : NULL,
	};
	s->up = upstream_start(w, s, &login);
	if (!s->up) {
		server_close(s, "out of memory");
		return NULL;
	}
	log_debug("S-%llu: connecting for %s/%s", (unsigned long long)s->id, pool->db->name,
		  pool->user);
	return s;
}

void server_login_done(struct server *s, int fd, void *ssl, const struct param_list *reported)
{
	struct pool *p = s->pool;
	const struct config *cfg = worker_config(p->w);
	sbuf_init(&s->sb, p->w, fd, &server_sbuf_ops, s);
	s->sb.ssl = ssl;
	s->sb.keep_out_buffer = true;
	s->sb.max_msg = (size_t)cfg->max_packet_size;
	if (!params_copy(&s->vars, reported)) {
		server_close(s, "out of memory");
		return;
	}
	p->backoff_us = 0;
	p->next_connect_us = 0;
	p->last_error[0] = 0;
	log_debug("S-%llu: logged in to %s as %s", (unsigned long long)s->id, p->db->name,
		  p->server_user);
	sbuf_start(&s->sb);
	if (server_start_connect_query(s))
		return;
	if (s->state != SV_CLOSED)
		server_connect_done(s);
}

/*
 * Run the entry's connect_query, on a new connection and again after a reset
 * (DISCARD ALL would otherwise take its settings away from the next client).
 * True if it was sent (server_connect_done follows), false if there is none
 * or on out of memory (then the server is closed).
 */
static bool server_start_connect_query(struct server *s)
{
	static const char settings[] =
		"SELECT pg_catalog.string_agg(pg_catalog.format('(%L,%L)', name, setting), ',') "
		"FROM pg_catalog.pg_settings WHERE source = 'session'";
	const char *cq = s->pool->db->def->connect_query;
	if (!cq || !cq[0] || s->pool->replication) /* a physical walsender takes no SQL */
		return false;
	if (!server_send_own_query(s, OWN_CONNECT, cq, strlen(cq)) ||
	    !server_send_own_query(s, OWN_CONNECT_SETTINGS, settings, sizeof(settings) - 1)) {
		server_close(s, "out of memory");
		return false;
	}
	server_set_state(s, SV_RESETTING);
	sbuf_flush(&s->sb);
	return true;
}

/* The one text column of OWN_CONNECT_SETTINGS's row: kept for the pinning probe. */
static void server_read_connect_settings(struct server *s, const uint8_t *data, size_t len)
{
	struct pkt_reader r;
	reader_init(&r, data + PKT_HDR_LEN, len - PKT_HDR_LEN);
	if (reader_u16(&r) != 1)
		return;
	uint32_t n = reader_u32(&r);
	const uint8_t *v = n == 0xffffffffu ? NULL : reader_bytes(&r, n);
	struct pool *p = s->pool;
	free(p->connect_settings);
	p->connect_settings = v && n > 0 ? strndup((const char *)v, n) : NULL;
}

/*
 * The connection is ready to lend. What it reports now (after connect_query,
 * whose SETs clients then see as the server's defaults) is what the pool's
 * clients are shown at login.
 */
static void server_connect_done(struct server *s)
{
	struct pool *p = s->pool;
	if (!p->have_defaults) {
		if (!params_copy(&p->defaults, &s->vars)) {
			server_close(s, "out of memory");
			return;
		}
		p->have_defaults = true;
	}
	server_set_state(s, SV_IDLE);
	/* Clients that logged in before the pool knew server parameters can finish now. */
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &p->cl_login)
	{
		struct client *c = list_entry(pos, struct client, node);
		client_finish_login(c);
	}
	pool_server_ready(p, s);
}

void server_login_failed(struct server *s, const char *why)
{
	struct pool *p = s->pool;
	log_warn("S-%llu: login to %s failed: %s", (unsigned long long)s->id, p->db->name, why);
	p->w->stats.server_connect_failures++;
	if (p->db->def->load_balance_hosts == LB_DISABLE)
		p->host_offset++; /* the next login starts at the next host */
	/*
	 * The backoff first: closing starts another login for clients still
	 * waiting, which must wait for the backoff, and the clients fail only
	 * when no server is left or logging in.
	 */
	pool_note_login_failure(p, why);
	server_close(s, "login failed");
	pool_login_failed(p, why);
}

/* ---- requests and their replies ------------------------------------------ */

bool server_push(struct server *s, enum req_kind kind, uint8_t sub, uint32_t id, uint8_t *msg)
{
	if (!replyq_push(&s->q, (uint8_t)kind, sub, id, msg)) {
		free(msg);
		return false;
	}
	if (kind == REQ_PARSE || kind == REQ_OWN_PARSE)
		s->pool->stats.server_parse_count++;
	if (BERTH_UNLIKELY(log_enabled(LOGB_QUERY)) && (kind == REQ_QUERY || kind == REQ_EXECUTE) &&
	    s->client)
		replyq_at(&s->q, s->q.n - 1)->qlog = querylog_commit(s->client);
	return true;
}

/* Queue a query whose replies berth swallows, ahead of anything the client sends next. */
static bool server_send_own_query(struct server *s, enum own_query what, const char *sql, size_t n)
{
	uint8_t hdr[PKT_HDR_LEN];
	hdr[0] = 'Q';
	be32_write(hdr + 1, (uint32_t)(n + 1 + 4));
	if (!sbuf_queue(&s->sb, hdr, sizeof(hdr)) || !sbuf_queue(&s->sb, sql, n + 1))
		return false;
	s->own_failed = false;
	return server_push(s, REQ_OWN_QUERY, (uint8_t)what, 0, NULL);
}

/* Queue an extended-protocol message berth makes (Parse or Close of a shared statement). */
static bool server_send_own_message(struct server *s, uint8_t type, const char *name,
				    const uint8_t *rest, size_t rest_len)
{
	size_t nlen = strlen(name) + 1;
	uint8_t hdr[PKT_HDR_LEN + 1];
	size_t hlen = PKT_HDR_LEN;
	hdr[0] = type;
	if (type == 'C') {
		hdr[PKT_HDR_LEN] = 'S';
		hlen++;
	}
	be32_write(hdr + 1, (uint32_t)(4 + (hlen - PKT_HDR_LEN) + nlen + rest_len));
	return sbuf_queue(&s->sb, hdr, hlen) && sbuf_queue(&s->sb, name, nlen) &&
	       (!rest_len || sbuf_queue(&s->sb, rest, rest_len));
}

bool server_ensure_stmt(struct server *s, const struct pstmt *ps, uint32_t max_cached,
			const char *client_name)
{
	bool client_parse = client_name != NULL;
	if (!client_parse && server_stmt_has(&s->stmts, ps->id))
		return true;
	char name[PSTMT_NAME_MAX];
	/* Make room: close the least recently used statement on this session. */
	uint32_t victim;
	while (max_cached > 0 && s->stmts.n >= max_cached && server_stmt_oldest(&s->stmts, &victim)) {
		pstmt_server_name(victim, name);
		if (!server_send_own_message(s, 'C', name, NULL, 0) ||
		    !server_push(s, REQ_OWN_CLOSE, 0, victim, NULL))
			return false;
		server_stmt_del(&s->stmts, victim);
	}
	uint8_t *name_copy = client_parse ? (uint8_t *)strdup(client_name) : NULL;
	if (client_parse && !name_copy)
		return false;
	return server_send_own_message(s, 'P', ps->sname, ps->body, ps->len) &&
	       server_push(s, client_parse ? REQ_PARSE : REQ_OWN_PARSE, 0, ps->id, name_copy) &&
	       server_stmt_add(&s->stmts, ps->id);
}

bool server_has_output_pending(const struct server *s)
{
	return s->sb.io && s->sb.io->sent < s->sb.io->parsed;
}

/* Emit the replies berth makes that are now at the head of the queue. */
bool server_drain_synth(struct server *s)
{
	struct req *r;
	while ((r = replyq_head(&s->q)) && r->kind == REQ_SYNTH) {
		if (server_has_output_pending(s))
			return true; /* earlier replies first: on_flushed comes back here */
		struct client *c = s->client;
		bool answered_query = r->sub == SYNTH_DEALLOCATE;
		if (c) {
			uint8_t small[PKT_HDR_LEN] = {r->sub, 0, 0, 0, 4};
			uint8_t buf[256];
			const uint8_t *msg = r->msg && !answered_query ? r->msg : small;
			size_t len = r->msg && !answered_query ? 1 + be32_read(r->msg + 1) : sizeof(small);
			if (answered_query) {
				/*
				 * A whole simple query answered by berth: its tag and
				 * ReadyForQuery, or in a failed transaction the error
				 * PostgreSQL gives there (and the statement stays).
				 */
				struct pkt_writer wr;
				writer_init(&wr, buf, sizeof(buf));
				if (s->txn_status == 'E') {
					writer_init(&wr, buf, sizeof(buf));
					codec_write_error(&wr, 'E', "ERROR", "25P02",
							  "current transaction is aborted, commands "
							  "ignored until end of transaction block");
				} else {
					writer_begin(&wr, 'C');
					writer_cstr(&wr, "DEALLOCATE");
					writer_end(&wr);
					client_drop_stmt_name(c, (const char *)r->msg);
				}
				codec_write_ready(&wr, s->txn_status);
				msg = buf;
				len = wr.len;
			}
			if (!sbuf_queue(&c->sb, msg, len))
				return false;
			sbuf_flush(&c->sb);
		}
		replyq_pop(&s->q);
		if (answered_query && c && replyq_empty(&s->q) && s->client == c)
			server_release_when_flushed(s);
	}
	return true;
}

/* Transaction mode: may the client's link end here? */
static bool server_may_release(const struct server *s, const struct client *c)
{
	/*
	 * Not while the client's next message is half forwarded (the server would
	 * wait for the rest, and read the next client's bytes as it), nor while
	 * extended-protocol messages wait for their Sync.
	 */
	return s->pool->pool_mode != POOL_SESSION && s->txn_status == 'I' &&
	       replyq_empty(&s->q) && !s->unsynced && !sbuf_mid_message(&c->sb) && !c->pinned &&
	       !c->resync_pending && !c->probe_wanted;
}

/* End the client's link and put the server back in the pool. */
static void server_release(struct server *s)
{
	struct client *c = s->client;
	c->server = NULL;
	s->client = NULL;
	sbuf_link(&s->sb, NULL);
	client_set_state(c, CL_IDLE);
	server_set_state(s, SV_IDLE);
	pool_server_ready(s->pool, s);
}

/* Release now, or once the bytes already parsed for the client have left. */
static void server_release_when_flushed(struct server *s)
{
	struct client *c = s->client;
	if (!c || !server_may_release(s, c) || sbuf_has_pending(&c->sb))
		return;
	if (server_has_output_pending(s))
		s->release_after_flush = true;
	else
		server_release(s);
}

/* The transaction ended and its bytes left: back to the pool. */
static void server_on_flushed(struct sbuf *sb)
{
	struct server *s = sb->owner;
	if (!server_drain_synth(s)) {
		server_close(s, "out of memory");
		return;
	}
	if (!s->release_after_flush)
		return;
	s->release_after_flush = false;
	struct client *c = s->client;
	if (!c || !server_may_release(s, c) || sbuf_has_pending(&c->sb))
		return; /* the client sent more meanwhile: keep the link */
	server_release(s);
}

bool server_link_client(struct server *s, struct client *c)
{
	struct pool *p = s->pool;
	s->client = c;
	server_set_state(s, SV_ACTIVE);
	if (p->replication)
		return true; /* a walsender takes no SQL (physical): the client's settings stay its own */
	/* Session settings first: a SET inside the transaction would go with a ROLLBACK. */
	if (!server_sync_params(s, c))
		return false;
	if (c->deferred_begin) {
		c->deferred_begin = false;
		return server_send_deferred_begin(s);
	}
	return true;
}

/* Queue the client's settings this session lacks, if any (before the client's bytes). */
static bool server_sync_params(struct server *s, struct client *c)
{
	char query[SYNC_QUERY_MAX];
	/* Fast path: this session already matches exactly these wishes. */
	if (s->synced_valid && s->synced_sig == c->vars.sig)
		return true;
	int n = params_build_sync(&c->vars, &s->vars, &s->pool->defaults, query, sizeof(query));
	if (n < 0)
		return false;
	s->synced_sig = c->vars.sig;
	s->synced_valid = true;
	if (n > 0) {
		if (!server_send_own_query(s, OWN_PARAM_SYNC, query, (size_t)n))
			return false;
		log_debug("S-%llu: parameter sync for C-%llu: %s", (unsigned long long)s->id,
			  (unsigned long long)c->id, query);
	}
	return true;
}

/*
 * defer_begin: the BEGIN berth answered for the client goes ahead of the
 * transaction's first statement as Parse/Bind/Execute with no Sync. Were it
 * to fail, PostgreSQL skips every message up to a Sync, so the client's
 * statements never run outside the transaction it opened
 * (server_deferred_begin_failed ends that client).
 */
static bool server_send_deferred_begin(struct server *s)
{
	uint8_t buf[64];
	struct pkt_writer wr;
	writer_init(&wr, buf, sizeof(buf));
	writer_begin(&wr, 'P'); /* unnamed statement, no parameter types */
	writer_cstr(&wr, "");
	writer_cstr(&wr, "BEGIN");
	writer_u16(&wr, 0);
	writer_end(&wr);
	writer_begin(&wr, 'B'); /* unnamed portal and statement: no formats, values */
	writer_cstr(&wr, "");
	writer_cstr(&wr, "");
	writer_u16(&wr, 0);
	writer_u16(&wr, 0);
	writer_u16(&wr, 0);
	writer_end(&wr);
	writer_begin(&wr, 'E'); /* all rows (none) */
	writer_cstr(&wr, "");
	writer_u32(&wr, 0);
	writer_end(&wr);
	return writer_ok(&wr) && sbuf_queue(&s->sb, buf, wr.len) &&
	       server_push(s, REQ_OWN_BEGIN, 0, 0, NULL);
}

/*
 * The message and SQLSTATE of an ErrorResponse (whole, or too long to
 * hold: "(message too long)" and XX000).
 */
static void server_read_error(const struct pkt_hdr *hdr, const uint8_t *data, size_t avail,
			      char *msg, size_t msglen, char code[6])
{
	snprintf(msg, msglen, "(message too long)");
	memcpy(code, ERR_INTERNAL, 6);
	if (avail < hdr->total_len)
		return;
	error_message(data + PKT_HDR_LEN, hdr->total_len - PKT_HDR_LEN, msg, msglen);
	if (!codec_error_sqlstate(data + PKT_HDR_LEN, hdr->total_len - PKT_HDR_LEN, code))
		memcpy(code, ERR_INTERNAL, 6);
}

/* berth's own request for the client failed: the client gets the error, FATAL; both close. */
static void server_fail_client_and_close(struct server *s, const char *code, const char *msg,
					 const char *reason)
{
	struct client *c = s->client;
	if (c) {
		s->client = NULL;
		c->server = NULL;
		sbuf_link(&s->sb, NULL);
		server_set_state(s, SV_IDLE); /* transient: closed right below */
		client_fail(c, code, "%s", msg);
	}
	server_close(s, reason);
}

/* Replies to the deferred BEGIN are the client's no more: swallowed; an error ends it. */
static enum sbuf_action server_deferred_begin_failed(struct server *s, const struct pkt_hdr *hdr,
						     const uint8_t *data, size_t avail)
{
	if (avail < hdr->total_len && hdr->total_len <= s->sb.w->pkt_buf)
		return SB_NEED_FULL;
	char msg[256], code[6];
	server_read_error(hdr, data, avail, msg, sizeof(msg), code);
	log_warn("S-%llu: deferred BEGIN failed: %s", (unsigned long long)s->id, msg);
	server_fail_client_and_close(s, code, msg, "deferred BEGIN failed");
	return SB_CLOSED;
}

bool server_needs_check(const struct server *s, int64_t now_us)
{
	const struct config *cfg = worker_config(s->pool->w);
	return !s->pool->replication && cfg->server_check_query && cfg->server_check_query[0] &&
	       (s->suspect || now_us - s->state_since_us > cfg->server_check_delay);
}

bool server_start_check(struct server *s)
{
	const char *q = worker_config(s->pool->w)->server_check_query;
	BERTH_ASSERT(s->state == SV_IDLE);
	if (!server_send_own_query(s, OWN_CHECK, q, strlen(q)))
		return false;
	server_set_state(s, SV_RESETTING);
	sbuf_flush(&s->sb);
	return true;
}

/* Run server_reset_query on a connection nobody uses; false if it cannot. */
static bool server_start_reset(struct server *s)
{
	const struct config *cfg = worker_config(s->pool->w);
	if (!cfg->server_reset_query || !cfg->server_reset_query[0])
		return false;
	if (!server_send_own_query(s, OWN_RESET, cfg->server_reset_query,
				   strlen(cfg->server_reset_query)))
		return false;
	server_set_state(s, SV_RESETTING);
	sbuf_flush(&s->sb);
	return true;
}

/* Idle or reset the connection after its client left; close it if it is not clean. */
void server_client_gone(struct server *s)
{
	struct client *c = s->client;
	struct pool *p = s->pool;
	const struct config *cfg = worker_config(p->w);
	/*
	 * Not clean either when part of a client message reached the server and
	 * the rest never will: forwarded in part, or waiting in the client's
	 * buffer (possibly after a partial send).
	 */
	bool clean = c && !sbuf_mid_message(&c->sb) &&
		     !(c->sb.io && c->sb.io->sent < c->sb.io->parsed) && s->txn_status == 'I' &&
		     server_only_own_queries(s) && !s->skip_until_sync && !s->unsynced &&
		     !sbuf_has_pending(&s->sb) && !s->sb.io;
	/* A probe still out may be about to find session state: count it as found. */
	bool pinned = c && (c->pinned || server_has_own_query(s, OWN_PROBE));
	s->client = NULL;
	s->release_after_flush = false;
	sbuf_link(&s->sb, NULL);
	if (p->replication) {
		/* a walsender (a slot in use, a stream mid-way) is no one else's */
		server_close(s, "replication client left");
		return;
	}
	if (!clean) {
		server_close(s, "client left in the middle of a request or transaction");
		return;
	}
	if (s->close_needed) {
		server_close(s, "RECONNECT"); /* no reset for a session that is not lent again */
		return;
	}
	/* Session state (session mode, or a pinned client) is wiped before anyone else gets it. */
	if (p->pool_mode == POOL_SESSION || pinned || cfg->server_reset_query_always) {
		if (!server_start_reset(s))
			server_close(s, pinned ? "pinned session state and no server_reset_query"
					       : "could not reset");
		return;
	}
	if (!replyq_empty(&s->q)) {
		/* berth's own queries (a parameter sync) finish first: idle at their end */
		server_set_state(s, SV_RESETTING);
		return;
	}
	server_set_state(s, SV_IDLE);
	pool_server_ready(p, s);
}

void server_fast_close_if_idle(struct server *s)
{
	struct client *c = s->client;
	if (!s->close_needed || s->state != SV_ACTIVE || !c || s->passthrough ||
	    s->pool->pool_mode != POOL_SESSION)
		return;
	/* Between transactions, nothing asked or answered in flight either way. */
	if (s->txn_status != 'I' || !replyq_empty(&s->q) || s->unsynced || s->sb.io ||
	    sbuf_mid_message(&c->sb) || sbuf_has_pending(&c->sb) || c->sb.io)
		return;
	client_fail(c, ERR_ADMIN_SHUTDOWN,
		    "terminating connection: its server connection was closed (server_fast_close)");
}

/* Nothing in flight but berth's own queries (none of the client's requests). */
static bool server_only_own_queries(struct server *s)
{
	for (uint32_t i = 0; i < s->q.n; i++)
		if (replyq_at(&s->q, i)->kind != REQ_OWN_QUERY)
			return false;
	return true;
}

static bool server_has_own_query(struct server *s, enum own_query what)
{
	for (uint32_t i = 0; i < s->q.n; i++) {
		const struct req *r = replyq_at(&s->q, i);
		if (r->kind == REQ_OWN_QUERY && r->sub == what)
			return true;
	}
	return false;
}

void server_close(struct server *s, const char *reason)
{
	if (s->state == SV_CLOSED)
		return;
	struct pool *p = s->pool;
	log_debug("S-%llu: closing: %s", (unsigned long long)s->id, reason);
	struct client *c = s->client;
	s->client = NULL;
	if (s->sb.fd >= 0 || s->sb.io)
		sbuf_close(&s->sb, true); /* the socket belongs to libpq: PQfinish closes it */
	if (c) {
		BERTH_ASSERT(c->server == s);
		client_server_lost(c, reason);
	}
	server_set_state(s, SV_CLOSED);
	p->n_servers--;
	p->db->n_servers--;
	pool_server_closed(p);
}

void server_free(struct server *s)
{
	list_del(&s->node);
	upstream_finish(s->up);
	params_clear(&s->vars);
	replyq_clear(&s->q);
	server_stmts_clear(&s->stmts);
	free(s);
}

static void server_on_error(struct sbuf *sb, const char *reason)
{
	server_close(sb->owner, reason);
}

/*
 * The client ran SQL that may have RESET its settings: on a direct connection
 * they fall back to its startup values, here they fell back to the server's
 * login values. Put the startup values back where the server now shows its
 * default (a value the client SET since stays), and every startup value the
 * server does not report (berth cannot see those change). The query's
 * ParameterStatus replies reach the client, so its view ends right too.
 */
static bool server_resync_client(struct server *s, struct client *c)
{
	struct pool *p = s->pool;
	c->resync_pending = false;
	for (size_t i = 0; i < c->startup.n; i++) {
		const struct param *st = &c->startup.items[i];
		const char *def = params_get(&p->defaults, st->name);
		if (!def) {
			params_remove(&s->vars, st->name); /* unknown now: set it again */
		} else {
			const char *now = params_get(&s->vars, st->name);
			if (now && strcmp(now, def) != 0)
				continue; /* not reset */
		}
		if (!params_set(&c->vars, st->name, st->value, def != NULL))
			return false;
	}
	char query[SYNC_QUERY_MAX];
	int n = params_build_sync(&c->vars, &s->vars, &p->defaults, query, sizeof(query));
	if (n < 0)
		return false;
	s->synced_sig = c->vars.sig;
	s->synced_valid = true;
	if (n == 0)
		return true;
	if (!server_send_own_query(s, OWN_RESYNC, query, (size_t)n))
		return false;
	sbuf_flush(&s->sb);
	return true;
}

/* Append s to buf as a lower-cased SQL literal; false if it does not fit. */
static bool append_lower_literal(char *buf, size_t cap, size_t *pos, const char *s)
{
	if (*pos + 3 >= cap)
		return false;
	buf[(*pos)++] = '\'';
	for (; *s; s++) {
		if (*pos + 3 >= cap)
			return false;
		char ch = (*s >= 'A' && *s <= 'Z') ? (char)(*s + 32) : *s;
		if (ch == '\'')
			buf[(*pos)++] = '\'';
		buf[(*pos)++] = ch;
	}
	buf[(*pos)++] = '\'';
	buf[*pos] = 0;
	return true;
}

/*
 * Ask the session whether it holds state that cannot move to another client:
 * advisory locks, LISTEN, temporary tables, SQL-level prepared statements,
 * WITH HOLD cursors, session SETs berth does not track, a changed role.
 */
static bool server_start_probe(struct server *s, struct client *c)
{
	static const char head[] =
		"SELECT (SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND "
		"pid = pg_catalog.pg_backend_pid()), "
		"(SELECT count(*) FROM pg_catalog.pg_listening_channels()), "
		"(SELECT count(*) FROM pg_catalog.pg_class WHERE relnamespace = "
		"pg_catalog.pg_my_temp_schema()), "
		"(SELECT count(*) FROM pg_catalog.pg_prepared_statements WHERE name NOT LIKE "
		"'berth\\_%'), "
		"(SELECT count(*) FROM pg_catalog.pg_cursors WHERE is_holdable), "
		"(SELECT pg_catalog.string_agg(name, ', ') FROM pg_catalog.pg_settings WHERE "
		"source = 'session' AND pg_catalog.lower(name) <> ALL (ARRAY['application_name'";
	static const char tail[] = "]::text[])), session_user <> current_user";
	char q[SYNC_QUERY_MAX];
	size_t pos = sizeof(head) - 1;
	memcpy(q, head, pos);
	const struct param_list *lists[] = {&s->vars, &c->vars};
	for (size_t l = 0; l < 2; l++) {
		for (size_t i = 0; i < lists[l]->n; i++) {
			q[pos++] = ',';
			if (!append_lower_literal(q, sizeof(q) - sizeof(tail), &pos,
						  lists[l]->items[i].name))
				return false;
		}
	}
	const char *cs = s->pool->connect_settings;
	if (cs) {
		/* connect_query's settings are the server's own, not the client's */
		int n = snprintf(q + pos, sizeof(q) - pos,
				 "]::text[]) AND (name, setting) NOT IN (VALUES %s)), "
				 "session_user <> current_user",
				 cs);
		if (n < 0 || (size_t)n >= sizeof(q) - pos)
			return false;
		pos += (size_t)n;
	} else {
		memcpy(q + pos, tail, sizeof(tail));
		pos += sizeof(tail) - 1;
	}
	c->probe_wanted = false;
	c->probing = true;
	if (!server_send_own_query(s, OWN_PROBE, q, pos))
		return false;
	sbuf_flush(&s->sb);
	return true;
}

/* Read the probe's one row and pin or unpin the client. */
static void server_read_probe(struct server *s, const uint8_t *data, size_t len)
{
	struct client *c = s->client;
	struct pkt_reader r;
	reader_init(&r, data + PKT_HDR_LEN, len - PKT_HDR_LEN);
	uint16_t ncol = reader_u16(&r);
	static const char *const what[] = {"advisory lock", "LISTEN", "temporary table",
					    "prepared statement of its own", "WITH HOLD cursor",
					    "session SET of", "role change"};
	char reasons[256] = "";
	size_t rl = 0;
	for (uint16_t i = 0; i < ncol && i < ARRAY_SIZE(what) && !r.failed; i++) {
		uint32_t n = reader_u32(&r);
		if (n == 0xffffffffu)
			continue; /* NULL */
		const uint8_t *v = reader_bytes(&r, n);
		if (!v)
			break;
		bool held = i == 5 ? n > 0 : !(n == 1 && (v[0] == '0' || v[0] == 'f'));
		if (!held)
			continue;
		int m = snprintf(reasons + rl, sizeof(reasons) - rl, "%s%s%s%.*s", rl ? ", " : "",
				 what[i], i == 5 ? " " : "", i == 5 ? (int)(n > 80 ? 80 : n) : 0,
				 i == 5 ? (const char *)v : "");
		if (m > 0 && (size_t)m < sizeof(reasons) - rl)
			rl += (size_t)m;
	}
	if (!c)
		return;
	bool was = c->pinned;
	c->pinned = rl > 0;
	c->probing = false;
	if (c->pinned && !c->pin_logged) {
		c->pin_logged = true;
		log_warn("C-%llu: %s/%s pinned to its server connection: the session holds %s",
			 (unsigned long long)c->id, c->database, c->user, reasons);
	} else if (was && !c->pinned) {
		log_debug("C-%llu: session state released, unpinned", (unsigned long long)c->id);
	}
}

/* A ReadyForQuery ended the client's request: what must happen before the link may end. */
static bool server_after_ready(struct server *s, struct client *c)
{
	if (!replyq_empty(&s->q))
		return true;
	const struct config *cfg = worker_config(s->pool->w);
	bool txmode = s->pool->pool_mode != POOL_SESSION;
	if (c->resync_pending && !server_resync_client(s, c))
		return false;
	if (txmode && s->stmt_cache_stale && s->txn_status == 'I' && !c->pinned) {
		/* A cached plan went stale under DDL from elsewhere: start this session afresh. */
		server_stmts_clear(&s->stmts);
		s->stmt_cache_stale = false;
		static const char dealloc[] = "DEALLOCATE ALL";
		if (!server_send_own_query(s, OWN_DEALLOCATE, dealloc, sizeof(dealloc) - 1))
			return false;
		sbuf_flush(&s->sb);
	}
	if (txmode && c->probe_wanted && s->txn_status == 'I') {
		if (!cfg->pin_session_state)
			c->probe_wanted = false;
		else if (!server_start_probe(s, c))
			return false;
	}
	if (server_may_release(s, c))
		s->release_after_flush = true;
	return true;
}

/*
 * Statement mode allows no transaction block: a request left one open. As
 * PgBouncer does, the client gets FATAL 08P01 instead of the ReadyForQuery,
 * and the server is closed, which rolls the block back.
 */
static void server_refuse_transaction(struct server *s, struct client *c)
{
	static const char msg[] = "transaction blocks not allowed in statement pooling mode";
	s->client = NULL;
	c->server = NULL;
	sbuf_link(&c->sb, NULL);
	server_close(s, msg);
	client_fail(c, ERR_PROTOCOL_VIOLATION, "%s", msg);
}

/* Copy an ErrorResponse's message field for a log line. */
static void error_message(const uint8_t *body, size_t len, char *out, size_t outlen)
{
	struct pkt_reader r;
	reader_init(&r, body, len);
	snprintf(out, outlen, "(no message)");
	for (;;) {
		uint8_t f = reader_u8(&r);
		if (r.failed || f == 0)
			return;
		const char *v = reader_cstr(&r);
		if (!v)
			return;
		if (f == 'M') {
			snprintf(out, outlen, "%s", v);
			return;
		}
	}
}

/* ParameterStatus: remember the server's value, and the client's when it caused it. */
static bool server_note_parameter(struct server *s, const uint8_t *data, size_t len, bool own)
{
	struct pkt_reader r;
	reader_init(&r, data + PKT_HDR_LEN, len - PKT_HDR_LEN);
	const char *name = reader_cstr(&r);
	const char *value = reader_cstr(&r);
	if (!name || !value)
		return false;
	if (!params_set(&s->vars, name, value, true))
		return false;
	if (s->client && !own) {
		/* The client caused it: both sides change alike and still match. */
		if (!params_set(&s->client->vars, name, value, true))
			return false;
		s->synced_sig = s->client->vars.sig;
		s->synced_valid = true;
	} else {
		s->synced_valid = false;
	}
	return true;
}

/* Forget what a Parse that did not happen would have prepared. */
static void server_undo_parse(struct server *s, const struct req *r)
{
	if ((r->kind != REQ_PARSE && r->kind != REQ_OWN_PARSE) || !r->id)
		return;
	server_stmt_del(&s->stmts, r->id);
	if (r->kind == REQ_PARSE && s->client)
		client_forget_stmt(s->client, r->id, (const char *)r->msg);
}

/*
 * Errors name statements by their server-side name ("berth_12"); the client
 * knows them by its own. Give the client the error with its name in it.
 * Returns SB_SKIP if a rewritten copy was queued, SB_FORWARD to forward the
 * original, SB_FLUSH if earlier replies must leave first.
 */
/* Count an ErrorResponse the client gets from the server. */
static void server_count_error(struct server *s, const struct pkt_hdr *hdr, const uint8_t *data,
			       size_t avail)
{
	char code[6] = "XX000"; /* larger than the buffer: not read */
	if (avail >= hdr->total_len)
		(void)codec_error_sqlstate(data + PKT_HDR_LEN, hdr->total_len - PKT_HDR_LEN, code);
	stats_count_error(&s->pool->stats, code);
}

static enum sbuf_action server_forward_error(struct server *s, const struct pkt_hdr *hdr,
					     const uint8_t *data, size_t avail)
{
	struct client *c = s->client;
	if (!c || avail < hdr->total_len)
		return SB_FORWARD;
	const uint8_t *hit = memmem(data, hdr->total_len, PSTMT_NAME_PREFIX, sizeof(PSTMT_NAME_PREFIX) - 1);
	if (!hit)
		return SB_FORWARD;
	uint32_t id = (uint32_t)strtoul((const char *)hit + sizeof(PSTMT_NAME_PREFIX) - 1, NULL, 10);
	const char *name = client_stmt_name_of(c, id);
	if (!name)
		return SB_FORWARD;
	if (server_has_output_pending(s))
		return SB_FLUSH;
	char sname[PSTMT_NAME_MAX];
	pstmt_server_name(id, sname);
	size_t snl = strlen(sname), nl = strlen(name);
	/* Copy field by field, replacing the name inside each text. */
	uint8_t out[2048];
	struct pkt_writer wr;
	writer_init(&wr, out, sizeof(out));
	writer_begin(&wr, 'E');
	struct pkt_reader r;
	reader_init(&r, data + PKT_HDR_LEN, hdr->total_len - PKT_HDR_LEN);
	for (;;) {
		uint8_t f = reader_u8(&r);
		if (r.failed || f == 0)
			break;
		const char *v = reader_cstr(&r);
		if (!v)
			break;
		writer_u8(&wr, f);
		for (const char *p = v; *p;) {
			if (strncmp(p, sname, snl) == 0 && !(p[snl] >= '0' && p[snl] <= '9')) {
				writer_bytes(&wr, name, nl);
				p += snl;
			} else {
				writer_u8(&wr, (uint8_t)*p++);
			}
		}
		writer_u8(&wr, 0);
	}
	writer_u8(&wr, 0);
	writer_end(&wr);
	if (r.failed || !writer_ok(&wr) || !sbuf_queue(&c->sb, out, wr.len))
		return SB_FORWARD;
	sbuf_flush(&c->sb);
	return SB_SKIP;
}

/*
 * An ErrorResponse ended an extended-protocol request: the server now skips
 * everything up to the next Sync, so the requests queued before it get no
 * replies ("Extended Query": error recovery).
 */
static enum sbuf_action server_extended_error(struct server *s, const struct pkt_hdr *hdr,
					      const uint8_t *data, size_t avail)
{
	if (avail < hdr->total_len && hdr->total_len <= s->sb.w->pkt_buf)
		return SB_NEED_FULL;
	if (log_enabled(LOGB_DEBUG) && avail >= hdr->total_len) {
		char m[200];
		error_message(data + PKT_HDR_LEN, hdr->total_len - PKT_HDR_LEN, m, sizeof(m));
		log_debug("S-%llu: error for request kind %d: %s", (unsigned long long)s->id,
			  replyq_head(&s->q)->kind, m);
	}
	/* Decide how the client gets it before the queue changes (SB_FLUSH comes back here). */
	enum sbuf_action how = s->client ? server_forward_error(s, hdr, data, avail) : SB_SKIP;
	if (how == SB_FLUSH)
		return SB_FLUSH;
	if (s->client)
		server_count_error(s, hdr, data, avail);
	char code[6];
	if (avail >= hdr->total_len &&
	    codec_error_sqlstate(data + PKT_HDR_LEN, hdr->total_len - PKT_HDR_LEN, code) &&
	    strcmp(code, "0A000") == 0)
		s->stmt_cache_stale = true; /* "cached plan must not change result type" */
	server_undo_parse(s, replyq_head(&s->q));
	replyq_pop(&s->q);
	struct req *r;
	while ((r = replyq_head(&s->q)) && r->kind != REQ_SYNC) {
		server_undo_parse(s, r);
		replyq_pop(&s->q);
	}
	if (!r)
		s->skip_until_sync = true;
	return how;
}

/* Replies to berth's own query: swallowed; what it was for happens at its ReadyForQuery. */
static enum sbuf_action server_handle_own_query(struct server *s, struct req *r,
						const struct pkt_hdr *hdr, const uint8_t *data,
						size_t avail)
{
	switch (hdr->type) {
	case 'Z': {
		if (avail < hdr->total_len)
			return SB_NEED_FULL;
		s->txn_status = (char)data[PKT_HDR_LEN];
		enum own_query what = (enum own_query)r->sub;
		replyq_pop(&s->q);
		struct client *c = s->client;
		if (what == OWN_CONNECT) {
			if (s->txn_status != 'I') {
				/* Every new connection would do the same: fail as a login does. */
				server_login_failed(s, "connect_query left a transaction open");
				return SB_CLOSED;
			}
			/* As PgBouncer: connect_query's errors are logged (above), not fatal. */
			s->own_failed = false;
			return SB_SKIP;
		}
		if (what == OWN_CONNECT_SETTINGS && !s->own_failed && s->txn_status == 'I') {
			server_connect_done(s);
			return s->state == SV_CLOSED ? SB_CLOSED : SB_SKIP;
		}
		if (s->own_failed || s->txn_status != 'I') {
			if (c && what == OWN_PARAM_SYNC && s->own_failed) {
				/*
				 * The client's own settings were refused (e.g. a bad TimeZone in
				 * its startup packet): it gets the server's error, as it would
				 * at login on a direct connection.
				 */
				server_fail_client_and_close(s, s->own_error_code, s->own_error_msg,
							     "berth's own query failed");
				return SB_CLOSED;
			}
			server_close(s, "berth's own query failed");
			return SB_CLOSED;
		}
		if (what == OWN_CHECK) {
			s->suspect = false;
			server_set_state(s, SV_IDLE);
			pool_server_ready(s->pool, s);
			return SB_SKIP;
		}
		if (what == OWN_RESET) {
			const char *q = worker_config(s->pool->w)->server_reset_query;
			if (q && (strcasestr(q, "DISCARD ALL") || strcasestr(q, "RESET ALL")))
				params_drop_unreported(&s->vars);
			if (q && (strcasestr(q, "DISCARD ALL") || strcasestr(q, "DEALLOCATE ALL")))
				server_stmts_clear(&s->stmts);
			s->synced_valid = false;
			if (server_start_connect_query(s))
				return SB_SKIP;
			if (s->state == SV_CLOSED)
				return SB_CLOSED;
			server_set_state(s, SV_IDLE);
			pool_server_ready(s->pool, s);
			return SB_SKIP;
		}
		if (c && replyq_empty(&s->q))
			server_release_when_flushed(s);
		else if (!c && replyq_empty(&s->q) && s->state == SV_RESETTING) {
			/* its client left while berth's own queries ran: now idle */
			server_set_state(s, SV_IDLE);
			pool_server_ready(s->pool, s);
		}
		return SB_SKIP;
	}
	case 'S':
		if (avail < hdr->total_len)
			return SB_NEED_FULL;
		if (!server_note_parameter(s, data, hdr->total_len, r->sub != OWN_RESYNC)) {
			server_close(s, "bad ParameterStatus");
			return SB_CLOSED;
		}
		/* A restored startup value: the client sees it change back, as after RESET. */
		return r->sub == OWN_RESYNC && s->client ? SB_FORWARD : SB_SKIP;
	case 'D':
		if (r->sub != OWN_PROBE && r->sub != OWN_CONNECT_SETTINGS)
			return SB_SKIP;
		if (avail < hdr->total_len && hdr->total_len <= s->sb.w->pkt_buf)
			return SB_NEED_FULL;
		if (avail >= hdr->total_len && r->sub == OWN_PROBE)
			server_read_probe(s, data, hdr->total_len);
		else if (avail >= hdr->total_len)
			server_read_connect_settings(s, data, hdr->total_len);
		return SB_SKIP;
	case 'E':
		if (avail < hdr->total_len && hdr->total_len <= s->sb.w->pkt_buf)
			return SB_NEED_FULL;
		server_read_error(hdr, data, avail, s->own_error_msg, sizeof(s->own_error_msg),
				  s->own_error_code);
		log_warn("S-%llu: berth's own query failed: %s", (unsigned long long)s->id,
			 s->own_error_msg);
		s->own_failed = true;
		return SB_SKIP;
	default:
		return SB_SKIP;
	}
}

/* A message nobody asked for: notices, parameter changes, or the server's death. */
static enum sbuf_action server_handle_unsolicited(struct server *s, const struct pkt_hdr *hdr,
						  const uint8_t *data, size_t avail)
{
	if (hdr->type == 'E') {
		if (avail < hdr->total_len && hdr->total_len <= s->sb.w->pkt_buf)
			return SB_NEED_FULL;
		char msg[256] = "(too long)";
		if (avail >= hdr->total_len)
			error_message(data + PKT_HDR_LEN, hdr->total_len - PKT_HDR_LEN, msg, sizeof(msg));
		server_close(s, msg);
		return SB_CLOSED;
	}
	server_close(s, "unexpected message from server");
	return SB_CLOSED;
}

/* Is this reply the last one its request gets? */
/*
 * A client-visible ReadyForQuery: one query done, and a transaction when the
 * session is idle again. Pipelined requests behind it start now.
 */
static void server_count_ready(struct server *s, struct client *c)
{
	struct pool_stats *st = &s->pool->stats;
	int64_t now = worker_now_us(c->w);
	if (c->query_start_us) {
		uint64_t took = (uint64_t)(now - c->query_start_us);
		st->query_count++;
		st->query_time_us += took;
		stats_hist_add(&st->query_hist, took);
		c->query_start_us = replyq_empty(&s->q) ? 0 : now;
	}
	if (s->txn_status == 'I' && c->xact_start_us) {
		st->xact_count++;
		st->xact_time_us += (uint64_t)(now - c->xact_start_us);
		c->xact_start_us = replyq_empty(&s->q) ? 0 : now;
	}
}

static bool reply_ends(const struct req *r, uint8_t type)
{
	switch (r->kind) {
	case REQ_PARSE:
	case REQ_OWN_PARSE:
		return type == '1';
	case REQ_BIND:
		return type == '2';
	case REQ_CLOSE:
	case REQ_OWN_CLOSE:
		return type == '3';
	case REQ_DESCRIBE_STMT:
	case REQ_DESCRIBE_PORTAL:
		return type == 'T' || type == 'n';
	case REQ_EXECUTE:
		return type == 'C' || type == 'I' || type == 's';
	case REQ_OWN_BEGIN:
		return type == 'C';
	default:
		return false;
	}
}

static enum sbuf_action server_on_message(struct sbuf *sb, const struct pkt_hdr *hdr,
					  const uint8_t *data, size_t avail)
{
	struct server *s = sb->owner;
	struct client *c = s->client;
	if (BERTH_UNLIKELY(s->passthrough))
		return c ? SB_FORWARD : SB_SKIP; /* its client's walsender: passed through as is */
	struct req *r = replyq_head(&s->q);
	log_debug("S-%llu: reply '%c' (%zu bytes), queue %u, head %d", (unsigned long long)s->id,
		  hdr->type, hdr->total_len, s->q.n, r ? r->kind : -1);

	/* Replies berth makes come out first, in their place in the stream. */
	if (r && r->kind == REQ_SYNTH) {
		if (server_has_output_pending(s))
			return SB_FLUSH;
		if (!server_drain_synth(s)) {
			server_close(s, "out of memory");
			return SB_CLOSED;
		}
		r = replyq_head(&s->q);
	}
	if (BERTH_UNLIKELY(log_enabled(LOGB_QUERY)) && c && r) {
		enum sbuf_action qa = querylog_reply(c, &s->q, hdr, data, avail);
		if (qa != SB_FORWARD)
			return qa;
	}
	bool own = r && (r->kind == REQ_OWN_QUERY || r->kind == REQ_OWN_PARSE ||
			 r->kind == REQ_OWN_CLOSE || r->kind == REQ_OWN_BEGIN);

	/* "Asynchronous Operations": these may come at any time. */
	switch (hdr->type) {
	case 'N':
	case 'A':
		return c && !own ? SB_FORWARD : SB_SKIP;
	case 'S':
		if (r && r->kind == REQ_OWN_QUERY)
			return server_handle_own_query(s, r, hdr, data, avail);
		if (avail < hdr->total_len)
			return SB_NEED_FULL;
		if (!server_note_parameter(s, data, hdr->total_len, own || !c)) {
			server_close(s, "bad ParameterStatus");
			return SB_CLOSED;
		}
		return c ? SB_FORWARD : SB_SKIP;
	default:
		break;
	}
	if (!r)
		return server_handle_unsolicited(s, hdr, data, avail);
	if (r->kind == REQ_OWN_QUERY)
		return server_handle_own_query(s, r, hdr, data, avail);

	if (hdr->type == 'Z') {
		if (avail < hdr->total_len)
			return SB_NEED_FULL;
		if (r->kind != REQ_SYNC && r->kind != REQ_QUERY && r->kind != REQ_FUNCTION) {
			server_close(s, "ReadyForQuery out of order");
			return SB_CLOSED;
		}
		s->txn_status = (char)data[PKT_HDR_LEN];
		if (r->kind == REQ_QUERY && (r->sub & QUERY_DROPS_STATEMENTS) &&
		    !(r->sub & QUERY_FAILED)) {
			/* DISCARD ALL / DEALLOCATE ALL ran: the session has no statements left. */
			server_stmts_clear(&s->stmts);
			if (c)
				client_stmts_clear(&c->stmts, &s->pool->w->pstmts);
		}
		replyq_pop(&s->q);
		if (c && s->txn_status != 'I' && s->pool->pool_mode == POOL_STATEMENT) {
			server_refuse_transaction(s, c);
			return SB_CLOSED;
		}
		if (c)
			server_count_ready(s, c);
		if (c && !server_after_ready(s, c)) {
			server_close(s, "out of memory");
			return SB_CLOSED;
		}
		return c ? SB_FORWARD : SB_SKIP;
	}
	if (hdr->type == 'E' && r->kind == REQ_OWN_BEGIN)
		return server_deferred_begin_failed(s, hdr, data, avail);
	if (hdr->type == 'E' && r->kind != REQ_QUERY && r->kind != REQ_FUNCTION)
		return server_extended_error(s, hdr, data, avail);
	if (hdr->type == 'E') {
		/* An error inside a simple query: what it would have dropped stays. */
		if (avail < hdr->total_len && hdr->total_len <= s->sb.w->pkt_buf)
			return SB_NEED_FULL;
		enum sbuf_action how = server_forward_error(s, hdr, data, avail);
		if (how != SB_FLUSH) {
			r->sub |= QUERY_FAILED;
			if (c)
				server_count_error(s, hdr, data, avail);
		}
		return c ? how : SB_SKIP;
	}
	if (r->kind == REQ_DESCRIBE_STMT && hdr->type == 't')
		r->sub = 1;
	if (r->kind == REQ_EXECUTE && r->sub == EXEC_TAG_DEALLOCATE && hdr->type == 'C' && c) {
		/* berth's stand-in for the client's DEALLOCATE: give it the right tag. */
		if (server_has_output_pending(s))
			return SB_FLUSH;
		static const uint8_t tag[] = {'C', 0, 0, 0, 15, 'D', 'E', 'A', 'L', 'L',
					      'O', 'C', 'A', 'T', 'E', 0};
		if (!sbuf_queue(&c->sb, tag, sizeof(tag))) {
			server_close(s, "out of memory");
			return SB_CLOSED;
		}
		client_drop_stmt_name(c, (const char *)r->msg); /* it succeeded: now the name goes */
		replyq_pop(&s->q);
		return SB_SKIP;
	}
	if (reply_ends(r, hdr->type))
		replyq_pop(&s->q);
	return c && !own ? SB_FORWARD : SB_SKIP;
}

void server_check_timeouts(struct server *s, int64_t now_us)
{
	const struct config *cfg = worker_config(s->pool->w);
	if (s->state == SV_RESETTING) {
		/*
		 * A reset or check that never answers: the connection is dead or
		 * stuck. The check of a connection left idle while the upstream
		 * stopped answering health checks gets no longer than a health
		 * check, so that a frozen or cut-off server costs its client seconds,
		 * not the TCP timeout; the other connections marked with it are
		 * taken to share its fate rather than each costing a waiting client
		 * its own timeout.
		 */
		int64_t limit = cfg->server_connect_timeout;
		if (s->suspect && (limit <= 0 || cfg->health_check_timeout < limit))
			limit = cfg->health_check_timeout;
		if (limit > 0 && now_us - s->state_since_us > limit) {
			bool suspect = s->suspect;
			server_close(s, suspect ? "no answer to server_check_query within "
						  "health_check_timeout (upstream failing health checks)"
						: "no answer to berth's own query within server_connect_timeout");
			if (suspect)
				pool_close_suspect_idle(s->pool);
		}
		return;
	}
	if (s->state != SV_IDLE)
		return;
	if (s->pool->server_lifetime > 0 && now_us - s->connect_time_us > s->pool->server_lifetime) {
		server_close(s, "server_lifetime");
		return;
	}
	int64_t idle_max = s->pool->server_idle_timeout;
	if (idle_max > 0 && now_us - s->state_since_us > idle_max &&
	    s->pool->n_servers > s->pool->min_pool_size)
		server_close(s, "server_idle_timeout");
}
