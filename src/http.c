/*
 * http.c - /health, /ready and /metrics over libevent's evhttp, on a
 * listener of its own (http_listen) on the worker's loop. Answers from what
 * the loop already keeps (pool lists, pool and worker counters, health
 * states): a scrape costs O(pools) work plus a walk of the pools' client
 * lists, and allocates only the reply. Must not touch the data path or block.
 */
#include "http.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build_config.h"
#include "config.h"
#include "health.h"
#include "list.h"
#include "log.h"
#include "pool.h"
#include "runtime.h"
#include "server.h"
#include "stats.h"

struct http_server {
	struct runtime *rt;
	struct evhttp *http;
};

/* Idle or slow HTTP connections are closed after this. */
#define HTTP_TIMEOUT_S 10

/* ---- Prometheus text format 0.0.4 ---------------------------------------- */

/* # HELP and # TYPE of one metric family; its samples must follow at once. */
static void family(struct evbuffer *b, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: backslash, double quote and newline escaped, as the format requires. */
static void label_value(struct evbuffer *b, const char *v)
{
	const char *run = v;
	for (const char *p = v; *p; p++) {
		const char *esc = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
		if (!esc)
			continue;
		evbuffer_add(b, run, (size_t)(p - run));
		evbuffer_add(b, esc, 2);
		run = p + 1;
	}
	evbuffer_add(b, run, strlen(run));
}

/* name{database="..",user=".."[,extra]} with the pool's labels. */
static void pool_sample_start(struct evbuffer *b, const char *name, const struct pool *p)
{
	evbuffer_add_printf(b, "%s{database=\"", name);
	label_value(b, p->db->name);
	evbuffer_add(b, "\",user=\"", 8);
	label_value(b, p->user);
	evbuffer_add(b, "\"", 1);
}

static void pool_u64(struct evbuffer *b, const char *name, const struct pool *p, const char *label,
		     const char *value, uint64_t v)
{
	pool_sample_start(b, name, p);
	if (label)
		evbuffer_add_printf(b, ",%s=\"%s\"", label, value);
	evbuffer_add_printf(b, "} %" PRIu64 "\n", v);
}

/*
 * After a reload a database that drains (removed) may share its name and
 * user with a new pool; Prometheus refuses two series with one label set,
 * so the draining one is left out (its counters then restart, which rate()
 * takes as a reset). Only draining pools pay for the scan.
 */
static bool pool_shadowed(struct worker *w, const struct pool *p)
{
	if (!p->db->removed)
		return false;
	bool before = true; /* q is ahead of p in the list */
	for (struct list *pos = w->pools.next; pos != &w->pools; pos = pos->next) {
		const struct pool *q = list_entry(pos, struct pool, node);
		if (q == p) {
			before = false;
			continue;
		}
		if (strcmp(q->db->name, p->db->name) != 0 || strcmp(q->user, p->user) != 0)
			continue;
		if (!q->db->removed || before)
			return true;
	}
	return false;
}

/* Every pool whose labels are its own. */
#define POOLS_EACH(w, p)                                                                           \
	for (struct list *pos_ = (w)->pools.next; pos_ != &(w)->pools; pos_ = pos_->next)         \
		if (((p) = list_entry(pos_, struct pool, node)), !pool_shadowed((w), (p)))

enum pool_counter { PC_XACT, PC_QUERY, PC_RECV, PC_SENT, PC_LOGIN };

static uint64_t pool_counter(const struct pool *p, enum pool_counter c)
{
	switch (c) {
	case PC_XACT:
		return p->stats.xact_count;
	case PC_QUERY:
		return p->stats.query_count;
	case PC_RECV:
		return p->stats.received;
	case PC_SENT:
		return p->stats.sent;
	case PC_LOGIN:
		return p->stats.client_login_count;
	}
	return 0;
}

static void pool_counter_family(struct evbuffer *b, struct worker *w, const char *name,
				const char *help, enum pool_counter c)
{
	struct pool *p;
	family(b, name, "counter", help);
	POOLS_EACH(w, p)
	{
		pool_u64(b, name, p, NULL, NULL, pool_counter(p, c));
	}
}

/* A histogram's buckets (cumulative, ending in +Inf), _sum in seconds and _count. */
static void pool_histogram(struct evbuffer *b, const char *name, const struct pool *p,
			   const struct stats_hist *h)
{
	char metric[96];
	uint64_t cum = 0;
	snprintf(metric, sizeof(metric), "%s_bucket", name);
	for (int i = 0; i <= STATS_HIST_BUCKETS; i++) {
		cum += h->bucket[i];
		pool_sample_start(b, metric, p);
		if (i < STATS_HIST_BUCKETS)
			evbuffer_add_printf(b, ",le=\"%g\"} %" PRIu64 "\n", stats_hist_bounds_s[i], cum);
		else
			evbuffer_add_printf(b, ",le=\"+Inf\"} %" PRIu64 "\n", cum);
	}
	snprintf(metric, sizeof(metric), "%s_sum", name);
	pool_sample_start(b, metric, p);
	evbuffer_add_printf(b, "} %" PRIu64 ".%06" PRIu64 "\n", h->sum_us / 1000000,
			    h->sum_us % 1000000);
	snprintf(metric, sizeof(metric), "%s_count", name);
	/* _count equals the +Inf bucket, whatever count says, so the family stays consistent. */
	pool_u64(b, metric, p, NULL, NULL, cum);
}

static void global_u64(struct evbuffer *b, const char *name, const char *type, const char *help,
		       uint64_t v)
{
	family(b, name, type, help);
	evbuffer_add_printf(b, "%s %" PRIu64 "\n", name, v);
}

static void write_metrics(struct evbuffer *b, struct runtime *rt)
{
	struct worker *w = rt->worker;
	struct pool *p;

	family(b, "berth_build_info", "gauge", "berth's version (always 1).");
	evbuffer_add(b, "berth_build_info{version=\"", 26);
	label_value(b, PACKAGE_VERSION);
	evbuffer_add(b, "\"} 1\n", 5);
	global_u64(b, "berth_up", "gauge", "1 while berth serves.", 1);
	global_u64(b, "berth_shutting_down", "gauge", "1 once a shutdown has begun.",
		   rt->shutting_down ? 1 : 0);

	family(b, "berth_upstream_up", "gauge",
	       "1 if the last health check (login and SELECT 1) of the database's upstream succeeded.");
	for (const struct health_status *st = health_next(rt->health, NULL); st;
	     st = health_next(rt->health, st)) {
		evbuffer_add(b, "berth_upstream_up{database=\"", 28);
		label_value(b, st->database);
		evbuffer_add_printf(b, "\"} %d\n", st->state == HEALTH_UP ? 1 : 0);
	}
	family(b, "berth_upstream_check_failures_total", "counter",
	       "Failed upstream health checks.");
	for (const struct health_status *st = health_next(rt->health, NULL); st;
	     st = health_next(rt->health, st)) {
		evbuffer_add(b, "berth_upstream_check_failures_total{database=\"", 46);
		label_value(b, st->database);
		evbuffer_add_printf(b, "\"} %" PRIu64 "\n", st->failures);
	}
	family(b, "berth_upstream_check_duration_seconds", "gauge",
	       "Duration of the last upstream health check, login included.");
	for (const struct health_status *st = health_next(rt->health, NULL); st;
	     st = health_next(rt->health, st)) {
		if (!st->checks)
			continue; /* nothing measured yet */
		evbuffer_add(b, "berth_upstream_check_duration_seconds{database=\"", 48);
		label_value(b, st->database);
		evbuffer_add_printf(b, "\"} %" PRId64 ".%06" PRId64 "\n", st->last_latency_us / 1000000,
				    st->last_latency_us % 1000000);
	}

	/*
	 * A state is a list: counts are list lengths, kept per pool for the
	 * client lists (n_cl_*), so a scrape walks no client. An active client is
	 * linked to exactly one active server: idle = cl_active minus those.
	 */
	family(b, "berth_clients", "gauge", "Client connections by pool and state.");
	POOLS_EACH(w, p)
	{
		uint64_t active = list_count(&p->sv_active);
		uint64_t linked = p->n_cl_active;
		pool_u64(b, "berth_clients", p, "state", "active", active);
		pool_u64(b, "berth_clients", p, "state", "waiting", p->n_cl_waiting);
		pool_u64(b, "berth_clients", p, "state", "idle", linked > active ? linked - active : 0);
		pool_u64(b, "berth_clients", p, "state", "login", p->n_cl_login);
	}
	family(b, "berth_servers", "gauge",
	       "Server connections by pool and state (used: idle past server_check_delay, to be "
	       "checked before their next client).");
	int64_t now = worker_now_us(w);
	POOLS_EACH(w, p)
	{
		uint64_t idle = 0, used = 0;
		for (struct list *pos = p->sv_idle.next; pos != &p->sv_idle; pos = pos->next) {
			if (server_needs_check(list_entry(pos, struct server, node), now))
				used++;
			else
				idle++;
		}
		pool_u64(b, "berth_servers", p, "state", "active", list_count(&p->sv_active));
		pool_u64(b, "berth_servers", p, "state", "idle", idle);
		pool_u64(b, "berth_servers", p, "state", "used", used);
		pool_u64(b, "berth_servers", p, "state", "connecting", list_count(&p->sv_connecting));
		pool_u64(b, "berth_servers", p, "state", "resetting", list_count(&p->sv_resetting));
	}
	family(b, "berth_pool_size", "gauge", "Server connections the pool may open (pool_size).");
	POOLS_EACH(w, p)
	{
		pool_u64(b, "berth_pool_size", p, NULL, NULL, (uint64_t)(p->pool_size > 0 ? p->pool_size : 0));
	}
	pool_counter_family(b, w, "berth_transactions_total", "Transactions pooled.", PC_XACT);
	pool_counter_family(b, w, "berth_queries_total", "Queries pooled.", PC_QUERY);
	pool_counter_family(b, w, "berth_received_bytes_total", "Bytes received from clients.",
			    PC_RECV);
	pool_counter_family(b, w, "berth_sent_bytes_total", "Bytes sent to clients.", PC_SENT);
	pool_counter_family(b, w, "berth_client_logins_total",
			    "Client logins to the pool (a high rate: clients reconnecting per request).",
			    PC_LOGIN);
	family(b, "berth_client_wait_seconds", "histogram",
	       "Time clients waited for a server connection.");
	POOLS_EACH(w, p)
	{
		pool_histogram(b, "berth_client_wait_seconds", p, &p->stats.wait_hist);
	}
	family(b, "berth_query_duration_seconds", "histogram", "Query duration seen by clients.");
	POOLS_EACH(w, p)
	{
		pool_histogram(b, "berth_query_duration_seconds", p, &p->stats.query_hist);
	}
	family(b, "berth_errors_total", "counter",
	       "ErrorResponses sent to clients, by SQLSTATE class (first two characters).");
	POOLS_EACH(w, p)
	{
		if (!p->stats.errors_by_class)
			continue;
		for (int i = 0; i < STATS_ERROR_CLASSES; i++) {
			if (!p->stats.errors_by_class[i])
				continue;
			char cls[3];
			stats_error_class_name(i, cls);
			pool_u64(b, "berth_errors_total", p, "class", cls, p->stats.errors_by_class[i]);
		}
	}

	global_u64(b, "berth_server_connects_total", "counter",
		   "Server connections berth started to open.", w->stats.server_connects);
	global_u64(b, "berth_server_connect_failures_total", "counter",
		   "Server connection attempts that failed.", w->stats.server_connect_failures);
	global_u64(b, "berth_clients_accepted_total", "counter", "Client connections accepted.",
		   w->stats.clients_accepted);
	global_u64(b, "berth_clients_refused_total", "counter",
		   "Client connections refused (max_client_conn, max_db_client_connections, "
		   "max_user_client_connections).",
		   w->stats.clients_refused);
	global_u64(b, "berth_log_dropped_total", "counter",
		   "Log lines dropped because the log sink could not keep up.", log_dropped_count());
}

/* ---- requests ------------------------------------------------------------ */

static void reply(struct evhttp_request *req, int code, const char *reason, const char *type,
		  struct evbuffer *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_send_reply(req, code, reason, body);
}

/* A JSON string's contents: quote, backslash and control characters escaped. */
static void json_string(struct evbuffer *b, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			evbuffer_add_printf(b, "\\%c", *p);
		else if (*p < 0x20)
			evbuffer_add_printf(b, "\\u%04x", *p);
		else
			evbuffer_add(b, p, 1);
	}
}

static void handle_ready(struct http_server *hs, struct evhttp_request *req, struct evbuffer *b)
{
	char reason[400];
	bool ready;
	if (hs->rt->shutting_down) {
		ready = false;
		snprintf(reason, sizeof(reason), "shutting down");
	} else {
		ready = health_ready(hs->rt->health, reason, sizeof(reason));
	}
	if (ready) {
		evbuffer_add_printf(b, "{\"ready\":true}\n");
		reply(req, HTTP_OK, "OK", "application/json", b);
		return;
	}
	evbuffer_add_printf(b, "{\"ready\":false,\"reason\":\"");
	json_string(b, reason);
	evbuffer_add_printf(b, "\"}\n");
	reply(req, HTTP_SERVUNAVAIL, "Service Unavailable", "application/json", b);
}

static void request_cb(struct evhttp_request *req, void *arg)
{
	struct http_server *hs = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct evbuffer *b = evbuffer_new();
	if (!b) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	enum { P_NONE = 0, P_HEALTH, P_READY, P_METRICS } which = P_NONE;
	if (path && strcmp(path, "/health") == 0)
		which = P_HEALTH;
	else if (path && strcmp(path, "/ready") == 0)
		which = P_READY;
	else if (path && strcmp(path, "/metrics") == 0)
		which = P_METRICS;

	if (which == P_NONE) {
		evbuffer_add_printf(b, "not found\n");
		reply(req, HTTP_NOTFOUND, "Not Found", "text/plain; charset=utf-8", b);
	} else if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		/* HEAD is GET without the body (evhttp leaves it out). */
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
		evbuffer_add_printf(b, "method not allowed\n");
		reply(req, HTTP_BADMETHOD, "Method Not Allowed", "text/plain; charset=utf-8", b);
	} else if (which == P_HEALTH) {
		evbuffer_add_printf(b, "ok\n");
		reply(req, HTTP_OK, "OK", "text/plain; charset=utf-8", b);
	} else if (which == P_READY) {
		handle_ready(hs, req, b);
	} else {
		write_metrics(b, hs->rt);
		reply(req, HTTP_OK, "OK", "text/plain; version=0.0.4; charset=utf-8", b);
	}
	evbuffer_free(b);
}

bool http_start(struct runtime *rt, struct http_server **out, char *err, size_t errlen)
{
	*out = NULL;
	const char *spec = rt->cfg->http_listen;
	if (!spec || !spec[0])
		return true;
	char *host = NULL;
	int port = 0;
	if (!config_parse_listen(spec, &host, &port, err, errlen))
		return false;
	struct http_server *hs = calloc(1, sizeof(*hs));
	if (!hs) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	hs->rt = rt;
	hs->http = evhttp_new(rt->worker->base);
	if (!hs->http) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	/* Every method reaches request_cb, which answers 405 itself (evhttp would say 501). */
	evhttp_set_allowed_methods(hs->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
						     EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
						     EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
						     EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_timeout(hs->http, HTTP_TIMEOUT_S);
	evhttp_set_max_headers_size(hs->http, 16384);
	evhttp_set_max_body_size(hs->http, 4096);
	evhttp_set_gencb(hs->http, request_cb, hs);
	/* "*" means every address, as for listen_addr (IPv4; name [::] for IPv6). */
	const char *addr = strcmp(host, "*") == 0 ? "0.0.0.0" : host;
	/* Name lookup here may block: it runs once, at start, before the loop serves anyone. */
	if (!evhttp_bind_socket_with_handle(hs->http, addr, (ev_uint16_t)port)) {
		snprintf(err, errlen, "http_listen %s: cannot bind (address in use or unknown host)",
			 spec);
		goto fail;
	}
	log_info("HTTP endpoints on %s (/health, /ready, /metrics)", spec);
	free(host);
	*out = hs;
	return true;
fail:
	if (hs && hs->http)
		evhttp_free(hs->http);
	free(hs);
	free(host);
	return false;
}

void http_stop(struct http_server *hs)
{
	if (!hs)
		return;
	evhttp_free(hs->http);
	free(hs);
}
