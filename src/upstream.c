/*
 * upstream.c - asynchronous upstream login through libpq, for server
 * connections and health checks alike. Host names are resolved with evdns
 * first and handed to libpq as hostaddr (host stays for TLS verification),
 * then PQconnectPoll is driven by socket readiness with server_connect_timeout
 * on top. Every libpq option works because the connection string is libpq's
 * own. Must not run libpq calls on a server's connection between the socket
 * handoff and PQfinish, except PQgetCancel for cancels.
 */
#include "upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"
#include "listener.h"
#include "log.h"
#include "params.h"
#include "runtime.h"
#include "server.h"

#define MAX_HOSTS 16
#define MAX_CANCEL_THREADS 32

/* Parameters PostgreSQL reports with ParameterStatus (GUC_REPORT), 15 and later. */
static const char *const reported_params[] = {
	"server_version",   "server_encoding",	  "client_encoding",
	"application_name", "default_transaction_read_only", "in_hot_standby",
	"is_superuser",	    "session_authorization", "DateStyle",
	"IntervalStyle",    "TimeZone",		  "integer_datetimes",
	"standard_conforming_strings", "scram_iterations", "search_path",
};

enum up_phase {
	UP_RESOLVING = 0, /* evdns lookups outstanding */
	UP_POLLING,       /* PQconnectPoll in progress */
	UP_READY,         /* handed to the server */
	UP_FAILED,        /* transient: failure being reported */
};

struct upstream_conn {
	struct worker *w;
	upstream_ready_fn ready; /* outcome, to the owner: a server or a health check */
	upstream_failed_fn failed;
	void *arg;
	PGconn *conn;
	enum up_phase phase;
	struct event ev_sock;    /* readiness of PQsocket, reassigned when it changes */
	struct event ev_timeout; /* server_connect_timeout, or the entry's connect_timeout if sooner */
	bool timeout_is_entry;   /* ev_timeout is the entry's connect_timeout */
	struct event ev_report;  /* deferred failure report (never from inside upstream_start) */
	bool ev_sock_set;
	int sock;
	char *host_list[MAX_HOSTS];
	char *addr_list[MAX_HOSTS];
	struct evdns_getaddrinfo_request *dns_req[MAX_HOSTS];
	int n_hosts;
	int dns_pending;
	/* Keyword/value arrays for PQconnectStartParams (strings owned here). */
	char **kw;
	char **val;
	int n_kw;
	char error[512];
};

static void up_fail(struct upstream_conn *u, const char *fmt, ...) BERTH_PRINTF(2, 3);

static void up_report_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_conn *u = arg;
	(void)fd;
	(void)what;
	u->failed(u->arg, u->error);
}

static void up_fail(struct upstream_conn *u, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(u->error, sizeof(u->error), fmt, ap);
	va_end(ap);
	/* libpq messages end in newlines and may span lines: keep one line. */
	for (char *p = u->error; *p; p++)
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
	size_t n = strlen(u->error);
	while (n && u->error[n - 1] == ' ')
		u->error[--n] = 0;
	u->phase = UP_FAILED;
	if (u->ev_sock_set)
		event_del(&u->ev_sock);
	event_del(&u->ev_timeout);
	event_active(&u->ev_report, 0, 0);
}

static bool kw_add(struct upstream_conn *u, const char *k, const char *v)
{
	char **nk = realloc(u->kw, sizeof(char *) * (size_t)(u->n_kw + 2));
	if (!nk)
		return false;
	u->kw = nk;
	char **nv = realloc(u->val, sizeof(char *) * (size_t)(u->n_kw + 2));
	if (!nv)
		return false;
	u->val = nv;
	u->kw[u->n_kw] = strdup(k);
	u->val[u->n_kw] = strdup(v);
	if (!u->kw[u->n_kw] || !u->val[u->n_kw])
		return false;
	u->n_kw++;
	u->kw[u->n_kw] = NULL;
	u->val[u->n_kw] = NULL;
	return true;
}

static const char *kw_get(const struct upstream_conn *u, const char *k)
{
	for (int i = 0; i < u->n_kw; i++)
		if (strcmp(u->kw[i], k) == 0)
			return u->val[i];
	return NULL;
}

/*
 * Rotate a comma-separated list by `by` places ("a,b,c" by 1 is "b,c,a"), in
 * place of every value of key k that is a list. load_balance_hosts =
 * round-robin rotates host, hostaddr and port alike, so they stay paired.
 */
static bool kw_rotate_list(struct upstream_conn *u, const char *k, unsigned by)
{
	for (int i = 0; i < u->n_kw; i++) {
		const char *v = u->val[i];
		if (strcmp(u->kw[i], k) != 0 || !strchr(v, ','))
			continue;
		unsigned n = 1;
		for (const char *p = v; *p; p++)
			n += *p == ',';
		unsigned skip = by % n;
		if (skip == 0)
			continue;
		const char *cut = v;
		for (unsigned j = 0; j < skip; j++)
			cut = strchr(cut, ',') + 1;
		size_t head = (size_t)(cut - v) - 1, tail = strlen(cut);
		char *r = malloc(head + tail + 2);
		if (!r)
			return false;
		memcpy(r, cut, tail);
		r[tail] = ',';
		memcpy(r + tail + 1, v, head);
		r[head + tail + 1] = '\0';
		free(u->val[i]);
		u->val[i] = r;
	}
	return true;
}

static void up_sock_cb(evutil_socket_t fd, short what, void *arg);

static void up_wait(struct upstream_conn *u, PostgresPollingStatusType st)
{
	int sock = PQsocket(u->conn);
	if (sock < 0) {
		up_fail(u, "lost the socket while connecting: %s", PQerrorMessage(u->conn));
		return;
	}
	if (u->ev_sock_set)
		event_del(&u->ev_sock);
	/*
	 * Every step, not only when the number changes: libpq's next address may
	 * get a new socket under the same number. Idempotent, and logins are rare.
	 */
	listener_set_socket_buffer(sock, worker_config(u->w)->tcp_socket_buffer);
	short what = st == PGRES_POLLING_READING ? EV_READ : EV_WRITE;
	event_assign(&u->ev_sock, u->w->base, sock, what, up_sock_cb, u);
	u->ev_sock_set = true;
	u->sock = sock;
	event_add(&u->ev_sock, NULL);
}

static void up_login_complete(struct upstream_conn *u)
{
	if (u->ev_sock_set)
		event_del(&u->ev_sock);
	u->ev_sock_set = false;
	event_del(&u->ev_timeout);
	u->phase = UP_READY;
	u->ready(u->arg, u); /* may finish u: touch nothing after */
}

static void up_poll(struct upstream_conn *u)
{
	PostgresPollingStatusType st = PQconnectPoll(u->conn);
	switch (st) {
	case PGRES_POLLING_READING:
	case PGRES_POLLING_WRITING:
		up_wait(u, st);
		return;
	case PGRES_POLLING_OK:
		up_login_complete(u);
		return;
	case PGRES_POLLING_FAILED:
	default:
		up_fail(u, "%s", PQerrorMessage(u->conn));
		return;
	}
}

static void up_sock_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	up_poll(arg);
}

static void up_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct upstream_conn *u = arg;
	up_fail(u, "%s: no login within the time limit",
		u->timeout_is_entry ? "connect_timeout" : "server_connect_timeout");
}

static void up_begin_libpq(struct upstream_conn *u)
{
	/* Resolved addresses go in hostaddr, one per host, empty where libpq needs none. */
	if (u->n_hosts > 0 && !kw_get(u, "hostaddr")) {
		bool any = false;
		char list[2048] = "";
		size_t pos = 0;
		for (int i = 0; i < u->n_hosts; i++) {
			const char *a = u->addr_list[i] ? u->addr_list[i] : "";
			any |= u->addr_list[i] != NULL;
			int n = snprintf(list + pos, sizeof(list) - pos, "%s%s", i ? "," : "", a);
			if (n < 0 || (size_t)n >= sizeof(list) - pos) {
				up_fail(u, "host list too long");
				return;
			}
			pos += (size_t)n;
		}
		if (any && !kw_add(u, "hostaddr", list)) {
			up_fail(u, "out of memory");
			return;
		}
	}
	u->phase = UP_POLLING;
	u->conn = PQconnectStartParams((const char *const *)u->kw, (const char *const *)u->val, 0);
	if (!u->conn) {
		up_fail(u, "out of memory");
		return;
	}
	if (PQstatus(u->conn) == CONNECTION_BAD) {
		up_fail(u, "%s", PQerrorMessage(u->conn));
		return;
	}
	up_wait(u, PGRES_POLLING_WRITING);
}

static void up_dns_cb(int result, struct evutil_addrinfo *res, void *arg);

struct dns_slot {
	struct upstream_conn *u;
	int index;
};

static void up_dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct dns_slot *slot = arg;
	struct upstream_conn *u = slot->u;
	int i = slot->index;
	free(slot);
	u->dns_req[i] = NULL;
	u->dns_pending--;
	if (result == 0 && res) {
		char buf[INET6_ADDRSTRLEN] = "";
		if (res->ai_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, buf, sizeof(buf));
		else if (res->ai_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr, buf,
				  sizeof(buf));
		if (buf[0])
			u->addr_list[i] = strdup(buf);
	}
	if (res)
		evutil_freeaddrinfo(res);
	if (result == EVUTIL_EAI_CANCEL)
		return; /* upstream_finish is tearing down */
	if (result != 0 && u->phase == UP_RESOLVING) {
		/* With several hosts libpq can still try the others: leave this one to libpq. */
		if (u->n_hosts == 1) {
			up_fail(u, "could not resolve host \"%s\": %s", u->host_list[i],
				evutil_gai_strerror(result));
			return;
		}
	}
	if (u->dns_pending == 0 && u->phase == UP_RESOLVING)
		up_begin_libpq(u);
}

/* True if h needs no lookup: empty, a unix socket directory, or an address literal. */
static bool host_is_literal(const char *h)
{
	struct in6_addr a6;
	struct in_addr a4;
	return h[0] == 0 || h[0] == '/' || h[0] == '@' || inet_pton(AF_INET, h, &a4) == 1 ||
	       inet_pton(AF_INET6, h, &a6) == 1;
}

static bool up_split_hosts(struct upstream_conn *u, const char *hosts)
{
	const char *p = hosts;
	for (;;) {
		if (u->n_hosts == MAX_HOSTS)
			return false;
		size_t n = strcspn(p, ",");
		u->host_list[u->n_hosts] = strndup(p, n);
		if (!u->host_list[u->n_hosts])
			return false;
		u->n_hosts++;
		if (!p[n])
			return true;
		p += n + 1;
	}
}

/*
 * libpq applies connect_timeout only in its blocking PQconnectdb loop, never
 * under PQconnectPoll, so berth enforces it, on the whole login (every host)
 * as server_connect_timeout is. libpq's reading: whole seconds, 0 or less is
 * no limit, and 1 counts as 2.
 */
static int64_t libpq_connect_timeout_us(const char *v)
{
	if (!v || !*v)
		return 0;
	char *end;
	errno = 0;
	long secs = strtol(v, &end, 10);
	while (*end == ' ')
		end++;
	if (errno || *end || secs <= 0)
		return 0;
	if (secs == 1)
		secs = 2;
	if (secs > 86400L * 365)
		secs = 86400L * 365;
	return (int64_t)secs * 1000000;
}

/*
 * PgBouncer's server_tls_* and tcp_* settings, as libpq options ahead of the
 * entry's own: libpq takes the last of a repeated keyword, so an entry (or
 * DATABASE_URL) that sets sslmode, sslrootcert, ... keeps its own.
 */
static bool up_add_setting_defaults(struct upstream_conn *u, const struct config *cfg)
{
	bool ok = true;
	/* tcp_keepidle, _keepintvl, _keepcnt and tcp_user_timeout: libpq sets them on its socket. */
	static const char *const tcp_kw[4] = {"keepalives_idle", "keepalives_interval",
					      "keepalives_count", "tcp_user_timeout"};
	const int tcp_val[4] = {cfg->tcp_keepidle, cfg->tcp_keepintvl, cfg->tcp_keepcnt,
				cfg->tcp_user_timeout};
	for (int i = 0; i < 4; i++) {
		if (tcp_val[i] > 0) {
			char num[16];
			snprintf(num, sizeof(num), "%d", tcp_val[i]);
			ok &= kw_add(u, tcp_kw[i], num);
		}
	}
	if (cfg->server_tls_sslmode[0])
		ok &= kw_add(u, "sslmode", cfg->server_tls_sslmode);
	if (cfg->server_tls_ca_file[0])
		ok &= kw_add(u, "sslrootcert", cfg->server_tls_ca_file);
	if (cfg->server_tls_cert_file[0])
		ok &= kw_add(u, "sslcert", cfg->server_tls_cert_file);
	if (cfg->server_tls_key_file[0])
		ok &= kw_add(u, "sslkey", cfg->server_tls_key_file);
	const char *lo, *hi;
	if (cfg->server_tls_protocols[0] && config_tls_protocol_range(cfg->server_tls_protocols, &lo, &hi)) {
		ok &= kw_add(u, "ssl_min_protocol_version", lo);
		ok &= kw_add(u, "ssl_max_protocol_version", hi);
	}
	return ok;
}

struct upstream_conn *upstream_connect(struct worker *w, const struct upstream_login *login,
				       upstream_ready_fn ready, upstream_failed_fn failed, void *arg)
{
	struct upstream_conn *u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	u->w = w;
	u->ready = ready;
	u->failed = failed;
	u->arg = arg;
	u->phase = UP_RESOLVING;
	event_assign(&u->ev_timeout, w->base, -1, 0, up_timeout_cb, u);
	event_assign(&u->ev_report, w->base, -1, 0, up_report_cb, u);

	bool ok = up_add_setting_defaults(u, worker_config(w));
	for (size_t i = 0; login->def->keywords && login->def->keywords[i]; i++)
		ok &= kw_add(u, login->def->keywords[i], login->def->values[i]);
	if (login->user) /* NULL: libpq's default (PGUSER, else the OS user) */
		ok &= kw_add(u, "user", login->user);
	ok &= kw_add(u, "dbname", login->dbname);
	if (login->password)
		ok &= kw_add(u, "password", login->password);
	if (login->application_name) /* after the entry's: libpq takes the last */
		ok &= kw_add(u, "application_name", login->application_name);
	if (login->replication)
		ok &= kw_add(u, "replication", login->replication);
	if (login->rotate_hosts) {
		ok &= kw_rotate_list(u, "host", login->rotate_hosts);
		ok &= kw_rotate_list(u, "hostaddr", login->rotate_hosts);
		ok &= kw_rotate_list(u, "port", login->rotate_hosts);
	}
	if (!ok) {
		upstream_finish(u);
		return NULL;
	}

	int64_t timeout_us = login->timeout_us;
	int64_t entry_us = libpq_connect_timeout_us(kw_get(u, "connect_timeout"));
	if (entry_us > 0 && (timeout_us <= 0 || entry_us < timeout_us)) {
		timeout_us = entry_us;
		u->timeout_is_entry = true;
	}
	if (timeout_us > 0) {
		struct timeval tv = {.tv_sec = timeout_us / 1000000, .tv_usec = timeout_us % 1000000};
		event_add(&u->ev_timeout, &tv);
	}

	const char *hosts = kw_get(u, "host");
	/* One guard count so a lookup answered at once cannot start libpq early. */
	u->dns_pending = 1;
	if (hosts && !kw_get(u, "hostaddr")) {
		if (!up_split_hosts(u, hosts)) {
			up_fail(u, "too many hosts in host list");
			return u;
		}
		for (int i = 0; i < u->n_hosts; i++) {
			const char *h = u->host_list[i];
			if (h[0] && h[0] != '/' && h[0] != '@' && host_is_literal(h))
				u->addr_list[i] = strdup(h);
		}
		for (int i = 0; i < u->n_hosts && u->phase == UP_RESOLVING; i++) {
			if (host_is_literal(u->host_list[i]))
				continue;
			struct dns_slot *slot = malloc(sizeof(*slot));
			if (!slot) {
				up_fail(u, "out of memory");
				return u;
			}
			slot->u = u;
			slot->index = i;
			struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC,
							.ai_socktype = SOCK_STREAM,
							.ai_flags = EVUTIL_AI_ADDRCONFIG};
			u->dns_pending++;
			int before = u->dns_pending;
			struct evdns_getaddrinfo_request *req =
				evdns_getaddrinfo(w->dns, u->host_list[i], NULL, &hints, up_dns_cb, slot);
			/* The callback may already have run (cached, literal or failed at once). */
			if (req && u->dns_pending == before)
				u->dns_req[i] = req;
		}
	}
	u->dns_pending--;
	if (u->dns_pending == 0 && u->phase == UP_RESOLVING)
		up_begin_libpq(u);
	return u;
}

/* A server's login finished: hand it the socket, TLS state and what PostgreSQL reported. */
static void up_server_ready(void *arg, struct upstream_conn *u)
{
	struct server *s = arg;
	struct param_list reported = {0};
	for (size_t i = 0; i < ARRAY_SIZE(reported_params); i++) {
		const char *v = PQparameterStatus(u->conn, reported_params[i]);
		if (v && !params_set(&reported, reported_params[i], v, true)) {
			params_clear(&reported);
			server_login_failed(s, "out of memory");
			return;
		}
	}
	void *ssl = PQsslInUse(u->conn) ? PQsslStruct(u->conn, "OpenSSL") : NULL;
	s->backend_pid = (uint32_t)PQbackendPID(u->conn); /* SHOW SERVERS remote_pid */
	server_login_done(s, PQsocket(u->conn), ssl, &reported);
	params_clear(&reported);
}

static void up_server_failed(void *arg, const char *why)
{
	server_login_failed(arg, why);
}

struct upstream_conn *upstream_start(struct worker *w, struct server *s,
				     const struct upstream_login *login)
{
	return upstream_connect(w, login, up_server_ready, up_server_failed, s);
}

struct pg_conn *upstream_pgconn(struct upstream_conn *u)
{
	return u->phase == UP_READY ? u->conn : NULL;
}

void upstream_finish(struct upstream_conn *u)
{
	if (!u)
		return;
	for (int i = 0; i < u->n_hosts; i++) {
		if (u->dns_req[i]) {
			struct evdns_getaddrinfo_request *r = u->dns_req[i];
			u->dns_req[i] = NULL;
			u->phase = UP_FAILED;
			evdns_getaddrinfo_cancel(r);
		}
	}
	if (u->ev_sock_set)
		event_del(&u->ev_sock);
	event_del(&u->ev_timeout);
	event_del(&u->ev_report);
	if (u->conn)
		PQfinish(u->conn);
	for (int i = 0; i < u->n_hosts; i++) {
		free(u->host_list[i]);
		free(u->addr_list[i]);
	}
	for (int i = 0; i < u->n_kw; i++) {
		/* The password must not linger in freed memory. */
		if (strcmp(u->kw[i], "password") == 0)
			explicit_bzero(u->val[i], strlen(u->val[i]));
		free(u->kw[i]);
		free(u->val[i]);
	}
	free(u->kw);
	free(u->val);
	free(u);
}

/*
 * Process-wide bound on cancel helper threads: the threads themselves
 * decrement it, so it cannot live in one worker's struct.
 */
static atomic_int cancel_threads_running;

static void *cancel_thread(void *arg)
{
	PGcancel *c = arg;
	char err[256];
	if (!PQcancel(c, err, sizeof(err)))
		log_warn("cancel request to server failed: %s", err);
	PQfreeCancel(c);
	atomic_fetch_sub(&cancel_threads_running, 1);
	return NULL;
}

bool upstream_cancel(struct upstream_conn *u)
{
	if (!u || !u->conn || u->phase != UP_READY)
		return false;
	if (atomic_fetch_add(&cancel_threads_running, 1) >= MAX_CANCEL_THREADS) {
		atomic_fetch_sub(&cancel_threads_running, 1);
		return false;
	}
	PGcancel *c = PQgetCancel(u->conn);
	if (!c) {
		atomic_fetch_sub(&cancel_threads_running, 1);
		return false;
	}
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int rc = pthread_create(&t, &attr, cancel_thread, c);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		PQfreeCancel(c);
		atomic_fetch_sub(&cancel_threads_running, 1);
		return false;
	}
	return true;
}
