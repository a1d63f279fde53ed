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
#include "runtime.h"
#include "upstream.h"

/* Room for the parameter-sync statement berth sends before a client's request. */
#define SYNC_QUERY_MAX 8192

static enum sbuf_action server_on_message(struct sbuf *sb, const struct pkt_hdr *hdr,
					  const uint8_t *data, size_t avail);
static void server_on_error(struct sbuf *sb, const char *reason);
static void server_on_flushed(struct sbuf *sb);
static bool server_send_own_query(struct server *s, const char *sql, size_t n);

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
	s->sb.max_msg = (size_t)cfg->max_packet_size;
	if (!params_copy(&s->vars, reported)) {
		server_close(s, "out of memory");
		return;
	}
	p->backoff_us = 0;
	p->next_connect_us = 0;
	p->last_error[0] = 0;
	if (!p->have_defaults) {
		if (!params_copy(&p->defaults, reported)) {
			server_close(s, "out of memory");
			return;
		}
		p->have_defaults = true;
	}
	log_debug("S-%llu: logged in to %s as %s", (unsigned long long)s->id, p->db->name,
		  p->server_user);
	sbuf_start(&s->sb);
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
	server_close(s, "login failed");
	pool_login_failed(p, why);
}

bool server_link_client(struct server *s, struct client *c)
{
	struct pool *p = s->pool;
	char query[SYNC_QUERY_MAX];
	s->client = c;
	server_set_state(s, SV_ACTIVE);
	/* Fast path: this session already matches exactly these wishes. */
	if (s->synced_valid && s->synced_sig == c->vars.sig)
		return true;
	int n = params_build_sync(&c->vars, &s->vars, &p->defaults, query, sizeof(query));
	if (n < 0)
		return false;
	s->synced_sig = c->vars.sig;
	s->synced_valid = true;
	if (n > 0) {
		if (!server_send_own_query(s, query, (size_t)n))
			return false;
		log_debug("S-%llu: parameter sync for C-%llu: %s", (unsigned long long)s->id,
			  (unsigned long long)c->id, query);
	}
	return true;
}

/* Idle or reset the connection after its client left; close it if it is not clean. */
void server_client_gone(struct server *s)
{
	struct client *c = s->client;
	struct pool *p = s->pool;
	const struct config *cfg = worker_config(p->w);
	bool clean = s->txn_status == 'I' && c && c->expected_rfq == 0 && !c->unsynced &&
		     s->drop_rfq == 0 && !sbuf_has_pending(&s->sb) && !s->sb.io;
	s->client = NULL;
	s->release_after_flush = false;
	sbuf_link(&s->sb, NULL);
	if (!clean) {
		server_close(s, "client left in the middle of a request or transaction");
		return;
	}
	bool reset = p->pool_mode == POOL_SESSION || cfg->server_reset_query_always;
	if (reset && cfg->server_reset_query && cfg->server_reset_query[0]) {
		if (!server_send_own_query(s, cfg->server_reset_query, strlen(cfg->server_reset_query))) {
			server_close(s, "out of memory");
			return;
		}
		server_set_state(s, SV_RESETTING);
		sbuf_flush(&s->sb);
		return;
	}
	server_set_state(s, SV_IDLE);
	pool_server_ready(p, s);
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
	free(s);
}

static void server_on_error(struct sbuf *sb, const char *reason)
{
	server_close(sb->owner, reason);
}

/* Transaction mode: may the client's link end here? */
static bool server_may_release(const struct server *s, const struct client *c)
{
	return s->pool->pool_mode == POOL_TRANSACTION && s->txn_status == 'I' && s->drop_rfq == 0 &&
	       c->expected_rfq == 0 && !c->unsynced && !c->resync_pending;
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

/* The transaction ended and its bytes left: back to the pool. */
static void server_on_flushed(struct sbuf *sb)
{
	struct server *s = sb->owner;
	if (!s->release_after_flush)
		return;
	s->release_after_flush = false;
	struct client *c = s->client;
	if (!c || !server_may_release(s, c) || sbuf_has_pending(&c->sb))
		return; /* the client sent more meanwhile: keep the link */
	server_release(s);
}

/* Queue a query whose replies berth swallows, ahead of anything the client sends next. */
static bool server_send_own_query(struct server *s, const char *sql, size_t n)
{
	uint8_t hdr[PKT_HDR_LEN];
	hdr[0] = 'Q';
	be32_write(hdr + 1, (uint32_t)(n + 1 + 4));
	if (!sbuf_queue(&s->sb, hdr, sizeof(hdr)) || !sbuf_queue(&s->sb, sql, n + 1))
		return false;
	s->drop_rfq++;
	return true;
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
	if (!server_send_own_query(s, query, (size_t)n))
		return false;
	s->resyncing = true;
	sbuf_flush(&s->sb);
	return true;
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
static bool server_note_parameter(struct server *s, const uint8_t *data, size_t len)
{
	struct pkt_reader r;
	reader_init(&r, data + PKT_HDR_LEN, len - PKT_HDR_LEN);
	const char *name = reader_cstr(&r);
	const char *value = reader_cstr(&r);
	if (!name || !value)
		return false;
	if (!params_set(&s->vars, name, value, true))
		return false;
	if (s->client && (s->drop_rfq == 0 || s->resyncing)) {
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

/* Replies to berth's own query (parameter sync or reset): swallowed. */
static enum sbuf_action server_handle_own_reply(struct server *s, const struct pkt_hdr *hdr,
						const uint8_t *data, size_t avail)
{
	switch (hdr->type) {
	case 'Z':
		if (avail < hdr->total_len)
			return SB_NEED_FULL;
		s->txn_status = (char)data[PKT_HDR_LEN];
		s->drop_rfq--;
		if (s->drop_rfq == 0 && (s->drop_failed || s->txn_status != 'I')) {
			struct client *c = s->client;
			if (c && s->drop_failed) {
				/*
				 * The client's own settings were refused (e.g. a bad TimeZone in
				 * its startup packet): it gets the server's error, as it would
				 * at login on a direct connection.
				 */
				s->client = NULL;
				c->server = NULL;
				sbuf_link(&s->sb, NULL);
				server_set_state(s, SV_IDLE); /* transient: closed right below */
				client_fail(c, s->drop_error_code, "%s", s->drop_error_msg);
			}
			server_close(s, "berth's own query failed");
			return SB_CLOSED;
		}
		if (s->drop_rfq == 0 && s->resyncing) {
			s->resyncing = false;
			struct client *c = s->client;
			if (c && server_may_release(s, c) && !sbuf_has_pending(&c->sb)) {
				/* Release once the forwarded ParameterStatus messages left. */
				if (s->sb.io && s->sb.io->sent < s->sb.io->parsed)
					s->release_after_flush = true;
				else
					server_release(s);
			}
		}
		if (s->drop_rfq == 0 && s->state == SV_RESETTING) {
			const char *q = worker_config(s->pool->w)->server_reset_query;
			if (q && (strcasestr(q, "DISCARD ALL") || strcasestr(q, "RESET ALL")))
				params_drop_unreported(&s->vars);
			s->synced_valid = false;
			server_set_state(s, SV_IDLE);
			pool_server_ready(s->pool, s);
		}
		return SB_SKIP;
	case 'S':
		if (avail < hdr->total_len)
			return SB_NEED_FULL;
		if (!server_note_parameter(s, data, hdr->total_len)) {
			server_close(s, "bad ParameterStatus");
			return SB_CLOSED;
		}
		/* A restored startup value: the client sees it change back, as after RESET. */
		return s->resyncing && s->client ? SB_FORWARD : SB_SKIP;
	case 'E': {
		if (hdr->total_len > s->sb.w->pkt_buf)
			return SB_SKIP;
		if (avail < hdr->total_len)
			return SB_NEED_FULL;
		error_message(data + PKT_HDR_LEN, hdr->total_len - PKT_HDR_LEN, s->drop_error_msg,
			      sizeof(s->drop_error_msg));
		if (!codec_error_sqlstate(data + PKT_HDR_LEN, hdr->total_len - PKT_HDR_LEN,
					  s->drop_error_code))
			memcpy(s->drop_error_code, ERR_INTERNAL, 6);
		log_warn("S-%llu: berth's own query failed: %s", (unsigned long long)s->id,
			 s->drop_error_msg);
		s->drop_failed = true;
		return SB_SKIP;
	}
	default:
		return SB_SKIP;
	}
}

/* Messages from a server nobody is using: notices, parameter changes, or its death. */
static enum sbuf_action server_handle_unlinked(struct server *s, const struct pkt_hdr *hdr,
					       const uint8_t *data, size_t avail)
{
	switch (hdr->type) {
	case 'E': {
		if (avail < hdr->total_len && hdr->total_len <= s->sb.w->pkt_buf)
			return SB_NEED_FULL;
		char msg[256] = "(too long)";
		if (avail >= hdr->total_len)
			error_message(data + PKT_HDR_LEN, hdr->total_len - PKT_HDR_LEN, msg, sizeof(msg));
		server_close(s, msg);
		return SB_CLOSED;
	}
	case 'S':
		if (avail < hdr->total_len)
			return SB_NEED_FULL;
		if (!server_note_parameter(s, data, hdr->total_len)) {
			server_close(s, "bad ParameterStatus");
			return SB_CLOSED;
		}
		return SB_SKIP;
	case 'N':
	case 'A':
		return SB_SKIP;
	default:
		server_close(s, "unexpected message from idle server");
		return SB_CLOSED;
	}
}

static enum sbuf_action server_on_message(struct sbuf *sb, const struct pkt_hdr *hdr,
					  const uint8_t *data, size_t avail)
{
	struct server *s = sb->owner;
	if (s->drop_rfq > 0)
		return server_handle_own_reply(s, hdr, data, avail);
	struct client *c = s->client;
	if (!c)
		return server_handle_unlinked(s, hdr, data, avail);

	switch (hdr->type) {
	case 'Z':
		if (avail < hdr->total_len)
			return SB_NEED_FULL;
		s->txn_status = (char)data[PKT_HDR_LEN];
		if (c->expected_rfq > 0)
			c->expected_rfq--;
		if (s->txn_status == 'I')
			s->pool->xact_count++;
		if (c->resync_pending && c->expected_rfq == 0 && !c->unsynced &&
		    !server_resync_client(s, c)) {
			server_close(s, "out of memory");
			return SB_CLOSED;
		}
		if (server_may_release(s, c))
			s->release_after_flush = true;
		return SB_FORWARD;
	case 'S':
		if (avail < hdr->total_len)
			return SB_NEED_FULL;
		if (!server_note_parameter(s, data, hdr->total_len)) {
			server_close(s, "bad ParameterStatus");
			return SB_CLOSED;
		}
		return SB_FORWARD;
	default:
		return SB_FORWARD;
	}
}

void server_check_timeouts(struct server *s, int64_t now_us)
{
	const struct config *cfg = worker_config(s->pool->w);
	if (s->state != SV_IDLE)
		return;
	if (cfg->server_lifetime > 0 && now_us - s->connect_time_us > cfg->server_lifetime) {
		server_close(s, "server_lifetime");
		return;
	}
	if (cfg->server_idle_timeout > 0 && now_us - s->state_since_us > cfg->server_idle_timeout &&
	    s->pool->n_servers > s->pool->min_pool_size)
		server_close(s, "server_idle_timeout");
}
