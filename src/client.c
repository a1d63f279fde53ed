/*
 * client.c - the client connection state machine: startup packet (SSL and
 * GSSENC refused with 'N', CancelRequest, NegotiateProtocolVersion),
 * authentication per auth_type, login replies, then requests relayed to a
 * server the pool lends. Only the header of relayed messages is read.
 * Chooses no servers: pool.c does. Reference: PostgreSQL manual,
 * "Message Flow" -> "Start-up", "Canceling Requests in Progress".
 */
#include "client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admin.h"
#include "auth.h"
#include "codec.h"
#include "config.h"
#include "errors.h"
#include "hba.h"
#include "listener.h"
#include "log.h"
#include "pool.h"
#include "runtime.h"
#include "pstmt.h"
#include "querylog.h"
#include "replyq.h"
#include "server.h"
#include "sqlscan.h"
#include "tls.h"
#include "upstream.h"

/* Authentication request codes ("Message Formats": the Authentication messages). */
#define AUTHREQ_OK 0
#define AUTHREQ_CLEARTEXT 3
#define AUTHREQ_MD5 5
#define AUTHREQ_SASL 10
#define AUTHREQ_SASL_CONTINUE 11
#define AUTHREQ_SASL_FINAL 12

static enum sbuf_action client_on_message(struct sbuf *sb, const struct pkt_hdr *hdr,
					  const uint8_t *data, size_t avail);
static void client_on_error(struct sbuf *sb, const char *reason);

static bool client_on_tls_hello(struct sbuf *sb);

/* TLS is offered to TCP clients when configured; never over the unix socket (as PostgreSQL). */
static bool client_tls_offered(const struct client *c)
{
	return worker_config(c->w)->client_tls && c->addr.sa.sa_family != AF_UNIX;
}

static const struct sbuf_ops client_sbuf_ops = {
	.on_message = client_on_message,
	.on_error = client_on_error,
	.on_flushed = NULL,
	.on_tls_hello = client_on_tls_hello,
};

const char *client_state_name(enum client_state st)
{
	switch (st) {
	case CL_FREE:
		return "free";
	case CL_STARTUP:
		return "startup";
	case CL_AUTH:
		return "auth";
	case CL_LOGIN_WAIT:
		return "login_wait";
	case CL_IDLE:
		return "idle";
	case CL_WAITING:
		return "waiting";
	case CL_ACTIVE:
		return "active";
	case CL_CONSOLE:
		return "console";
	case CL_CLOSED:
		return "closed";
	}
	return "?";
}

/* The length counter of the pool list a client in state st is on; NULL if none. */
static uint32_t *pool_list_length(struct pool *p, enum client_state st)
{
	if (!p)
		return NULL;
	switch (st) {
	case CL_LOGIN_WAIT:
		return &p->n_cl_login;
	case CL_IDLE:
	case CL_ACTIVE:
		return &p->n_cl_active;
	case CL_WAITING:
		return &p->n_cl_waiting;
	default:
		return NULL;
	}
}

void client_set_state(struct client *c, enum client_state st)
{
	struct worker *w = c->w;
	struct pool *p = c->pool;
	log_debug("C-%llu: %s -> %s", (unsigned long long)c->id, client_state_name(c->state),
		  client_state_name(st));
	uint32_t *len = pool_list_length(p, c->state);
	if (len)
		(*len)--;
	if ((len = pool_list_length(p, st)) != NULL)
		(*len)++;
	list_del(&c->node);
	switch (st) {
	case CL_FREE:
		break;
	case CL_STARTUP:
	case CL_AUTH:
		list_append(&w->login_clients, &c->node);
		break;
	case CL_LOGIN_WAIT:
		BERTH_ASSERT(p);
		list_append(&p->cl_login, &c->node);
		break;
	case CL_IDLE:
	case CL_ACTIVE:
		BERTH_ASSERT(p);
		list_append(&p->cl_active, &c->node);
		break;
	case CL_WAITING:
		BERTH_ASSERT(p);
		list_append(&p->cl_waiting, &c->node);
		c->wait_start_us = worker_now_us(c->w);
		break;
	case CL_CONSOLE:
		list_append(&w->console_clients, &c->node);
		break;
	case CL_CLOSED:
		list_append(&w->closing_clients, &c->node);
		worker_schedule_reap(w);
		break;
	}
	BERTH_ASSERT((st == CL_ACTIVE) == (c->server != NULL) || st == CL_CLOSED);
	c->state = st;
	c->state_since_us = worker_now_us(w);
}

/* ---- output helpers ------------------------------------------------------ */

/* Queue messages for the client; sent by the next client_send (or sbuf_flush). */
static bool client_queue(struct client *c, const struct pkt_writer *wr)
{
	return writer_ok(wr) && sbuf_queue(&c->sb, wr->buf, wr->len);
}

static bool client_send(struct client *c, const struct pkt_writer *wr)
{
	if (!client_queue(c, wr))
		return false;
	sbuf_flush(&c->sb);
	return true;
}

static void client_send_error_va(struct client *c, const char *severity, const char *sqlstate,
				 const char *fmt, va_list ap)
{
	char msg[512];
	uint8_t buf[700];
	struct pkt_writer wr;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	writer_init(&wr, buf, sizeof(buf));
	codec_write_error(&wr, 'E', severity, sqlstate, msg);
	if (c->pool)
		stats_count_error(&c->pool->stats, sqlstate);
	if (!client_send(c, &wr))
		log_warn("C-%llu: could not queue error message", (unsigned long long)c->id);
}

void client_close(struct client *c, const char *reason)
{
	if (c->state == CL_CLOSED)
		return;
	if (c->state > CL_AUTH && log_enabled(LOGB_INFO) && worker_config(c->w)->log_connections)
		log_info("C-%llu: %s/%s closing: %s", (unsigned long long)c->id, c->database, c->user,
			 reason);
	else
		log_debug("C-%llu: closing: %s", (unsigned long long)c->id, reason);
	struct server *s = c->server;
	if (s) {
		c->server = NULL;
		sbuf_link(&c->sb, NULL);
		server_client_gone(s);
	}
	if (c->counted) {
		c->counted = false;
		c->pool->n_clients--;
		c->pool->db->n_clients--;
	}
	/*
	 * Best effort: push out a queued final message (error) before closing.
	 * Quietly: a failed send must not call back into client_close (it
	 * recursed until the stack ran out when the client had gone away).
	 */
	if (c->sb.fd >= 0 && c->sb.out.len > c->sb.out.sent)
		sbuf_try_flush(&c->sb);
	sbuf_close(&c->sb, false);
	client_set_state(c, CL_CLOSED);
}

void client_fail(struct client *c, const char *sqlstate, const char *fmt, ...)
{
	if (c->state == CL_CLOSED)
		return;
	va_list ap;
	va_start(ap, fmt);
	client_send_error_va(c, "FATAL", sqlstate, fmt, ap);
	va_end(ap);
	client_close(c, sqlstate);
}

static void client_login_free(struct client *c)
{
	if (!c->login)
		return;
	explicit_bzero(c->login, sizeof(*c->login));
	free(c->login);
	c->login = NULL;
}

void client_free(struct client *c)
{
	client_login_free(c);
	admin_session_free(c);
	list_del(&c->node);
	list_del(&c->all_node);
	params_clear(&c->vars);
	params_clear(&c->startup);
	client_stmts_clear(&c->stmts, &c->w->pstmts);
	free(c->forgotten_name);
	free(c->dealloc_name);
	querylog_free(c->ql);
	c->w->n_clients--;
	slab_free(&c->w->clients, c);
}

static void client_on_error(struct sbuf *sb, const char *reason)
{
	struct client *c = sb->owner;
	if (strncmp(reason, "invalid", 7) == 0 || strncmp(reason, "message too large", 17) == 0) {
		client_fail(c, ERR_PROTOCOL_VIOLATION, "%s", reason);
		return;
	}
	if (strncmp(reason, "direct TLS", 10) == 0) {
		/* An app set sslnegotiation=direct: only the operator can learn why it fails. */
		log_info("C-%llu: %s", (unsigned long long)c->id, reason);
	}
	client_close(c, reason);
}

/* ---- accept ---------------------------------------------------------------- */

void client_accept(struct worker *w, int fd, const struct sockaddr *addr, socklen_t addrlen,
		   bool bytes_waiting)
{
	const struct config *cfg = worker_config(w);
	/*
	 * The short-lived login state first: the next login then reuses the very
	 * chunk this one frees, instead of the long-lived client struct splitting
	 * it and leaving a hole per connection.
	 */
	struct client_login *login = calloc(1, sizeof(*login));
	struct client *c = login ? slab_alloc(&w->clients) : NULL;
	if (!c) {
		free(login);
		close(fd);
		return;
	}
	c->login = login;
	c->user = c->login->user;
	c->database = c->login->database;
	c->w = w;
	c->id = ++w->next_id;
	list_init(&c->node);
	list_append(&w->all_clients, &c->all_node);
	if (addrlen <= sizeof(c->addr))
		memcpy(&c->addr, addr, addrlen);
	else
		c->addr.sa.sa_family = addr->sa_family;
	w->n_clients++;
	w->stats.clients_accepted++;
	c->over_limit = w->n_clients > (size_t)cfg->max_client_conn;
	c->connect_time_us = worker_now_us(w);
	sbuf_init(&c->sb, w, fd, &client_sbuf_ops, c);
	c->sb.startup = true;
	c->sb.peek_tls_hello = client_tls_offered(c);
	c->sb.max_msg = (size_t)cfg->max_packet_size;
	if (w->suspended)
		sbuf_set_suspended(&c->sb, true); /* SUSPEND: it waits for RESUME */
	client_set_state(c, CL_STARTUP);
	sbuf_start(&c->sb);
	if (bytes_waiting)
		sbuf_read_now(&c->sb);
}

/* ---- startup ---------------------------------------------------------------- */

static bool client_add_var(void *arg, const char *name, const char *value)
{
	struct client *c = arg;
	const struct config *cfg = worker_config(c->w);
	/* ignore_startup_parameters: accepted, not applied. */
	const char *list = cfg->ignore_startup_parameters ? cfg->ignore_startup_parameters : "";
	size_t n = strlen(name);
	for (const char *p = list; *p;) {
		while (*p == ',' || *p == ' ')
			p++;
		size_t m = strcspn(p, ", ");
		if (m == n && strncasecmp(p, name, n) == 0)
			return true;
		p += m;
	}
	return params_set(&c->vars, name, value, false) &&
	       params_set(&c->startup, name, value, false);
}

/*
 * application_name_add_host: "<name> - <address>", as PgBouncer writes it
 * ("app" when the client sent no name), so that pg_stat_activity and the
 * server log show which client a pooled query came from. Set once, at
 * login: a later SET application_name is the client's own.
 */
static bool client_add_host_to_appname(struct client *c)
{
	const char *name = params_get(&c->vars, "application_name");
	if (!name || !*name)
		name = "app";
	char host[INET6_ADDRSTRLEN], where[INET6_ADDRSTRLEN + HOST_NAME_MAX + 40];
	int port;
	listener_format_addr(&c->addr.sa, worker_config(c->w)->listen_port, host, sizeof(host), &port);
	if (c->addr.sa.sa_family == AF_UNIX) {
		struct ucred cred = {0};
		socklen_t len = sizeof(cred);
		char hostname[HOST_NAME_MAX + 1] = "";
		(void)getsockopt(c->sb.fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
		(void)gethostname(hostname, sizeof(hostname));
		hostname[HOST_NAME_MAX] = '\0';
		snprintf(where, sizeof(where), "unix(%d@%s):%d", (int)cred.pid, hostname, port);
	} else if (c->addr.sa.sa_family == AF_INET6) {
		snprintf(where, sizeof(where), "[%s]:%d", host, port);
	} else {
		snprintf(where, sizeof(where), "%s:%d", host, port);
	}
	size_t len = strlen(name) + strlen(where) + sizeof(" - ");
	char *value = malloc(len);
	if (!value)
		return false;
	snprintf(value, len, "%s - %s", name, where);
	bool ok = params_set(&c->vars, "application_name", value, false) &&
		  params_set(&c->startup, "application_name", value, false);
	free(value);
	return ok;
}

static void client_start_auth(struct client *c);

static enum sbuf_action client_handle_cancel(struct client *c, const uint8_t *data)
{
	uint32_t pid = be32_read(data + 8), key = be32_read(data + 12);
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &c->w->all_clients)
	{
		struct client *t = list_entry(pos, struct client, all_node);
		if (t == c || t->cancel_pid != pid || t->cancel_key != key || t->state == CL_CLOSED)
			continue;
		if (t->state == CL_CONSOLE) {
			admin_cancel(t); /* ^C on a console command that waits */
			break;
		}
		/* Only a client on a server has something to cancel. */
		if (t->server && t->server->up) {
			if (upstream_cancel(t->server->up))
				c->w->stats.cancels_forwarded++;
			else
				log_warn("C-%llu: cancel request dropped: too many in flight",
					 (unsigned long long)t->id);
		}
		break;
	}
	client_close(c, "cancel request handled");
	return SB_CLOSED;
}

/*
 * The startup packet's "replication": true/on/yes/1 asks for a physical
 * walsender, database for a logical one (SQL too), false/off/no/0 for none,
 * as PostgreSQL reads them. Anything else: FATAL 22023, as PostgreSQL.
 */
static bool client_parse_replication(struct client *c, const char *value)
{
	static const char *const on[] = {"true", "on", "yes", "1"};
	static const char *const off[] = {"false", "off", "no", "0"};
	for (size_t i = 0; i < ARRAY_SIZE(on); i++) {
		if (strcasecmp(value, on[i]) == 0) {
			c->replication = REPL_PHYSICAL;
			return true;
		}
		if (strcasecmp(value, off[i]) == 0) {
			c->replication = REPL_NONE;
			return true;
		}
	}
	if (strcmp(value, "database") == 0) {
		c->replication = REPL_LOGICAL;
		return true;
	}
	client_fail(c, ERR_INVALID_PARAMETER,
		    "invalid value for parameter \"replication\": \"%.64s\"", value);
	return false;
}

/* From here on the socket speaks TLS; the first read runs the handshake. */
static bool client_tls_session(struct client *c)
{
	c->sb.ssl = tls_client_session(worker_config(c->w)->client_tls, c->sb.fd);
	if (!c->sb.ssl) {
		client_close(c, "out of memory for a TLS session");
		return false;
	}
	c->sb.ssl_owned = true;
	return true;
}

/*
 * SSLRequest with TLS on: 'S' goes out in plain text, and from then on every
 * byte either way is a TLS record (sbuf reads and writes through c->sb.ssl;
 * the first SSL_read runs the handshake). Bytes the client sent after the
 * SSLRequest, before the handshake, were not encrypted: refused, as
 * PostgreSQL does (CVE-2021-23214).
 */
static enum sbuf_action client_start_tls(struct client *c, size_t avail)
{
	if (avail > 8) {
		client_fail(c, ERR_PROTOCOL_VIOLATION, "received unencrypted data after SSL request");
		return SB_CLOSED;
	}
	ssize_t n;
	do
		n = send(c->sb.fd, "S", 1, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n != 1) {
		client_close(c, "could not answer SSLRequest");
		return SB_CLOSED;
	}
	return client_tls_session(c) ? SB_SKIP : SB_CLOSED;
}

/*
 * Direct TLS: the client began with a ClientHello, no SSLRequest. The
 * handshake must agree on ALPN "postgresql" (client_handle_startup checks),
 * which keeps another protocol's TLS client from being taken for a
 * PostgreSQL one, as in PostgreSQL 17.
 */
static bool client_on_tls_hello(struct sbuf *sb)
{
	struct client *c = sb->owner;
	if (!client_tls_offered(c))
		return true; /* turned off by a reload since the accept: the parser refuses it */
	c->login->direct_tls = true;
	return client_tls_session(c);
}

/* client_tls_sslmode require and up: a TCP client must have come through TLS, with the right certificate. */
static bool client_tls_satisfied(struct client *c)
{
	const struct config *cfg = worker_config(c->w);
	if (cfg->client_tls_sslmode < TLS_REQUIRE || c->addr.sa.sa_family == AF_UNIX)
		return true;
	if (!c->sb.ssl) {
		client_fail(c, ERR_INVALID_AUTH_SPEC, "SSL required");
		return false;
	}
	if (cfg->client_tls_sslmode == TLS_VERIFY_FULL && !tls_peer_cn_matches(c->sb.ssl, c->user)) {
		client_fail(c, ERR_INVALID_AUTH_SPEC,
			    "certificate validation (client_tls_sslmode=verify-full) failed for user "
			    "\"%s\": CN mismatch",
			    c->user);
		return false;
	}
	return true;
}

static enum sbuf_action client_handle_startup(struct client *c, const struct pkt_hdr *hdr,
					      const uint8_t *data, size_t avail)
{
	if (avail < hdr->total_len)
		return SB_NEED_FULL;
	uint32_t code = be32_read(data + 4);
	if (BERTH_UNLIKELY(c->login->direct_tls) && !tls_alpn_is_postgresql(c->sb.ssl)) {
		client_fail(c, ERR_PROTOCOL_VIOLATION,
			    "received direct SSL connection request without ALPN protocol negotiation "
			    "extension");
		return SB_CLOSED;
	}

	if (hdr->total_len == 8 && (code == PROTO_SSL_CODE || code == PROTO_GSSENC_CODE)) {
		if (c->sb.ssl) {
			client_fail(c, ERR_PROTOCOL_VIOLATION, "encryption requested inside a TLS session");
			return SB_CLOSED;
		}
		if (code == PROTO_SSL_CODE && client_tls_offered(c))
			return client_start_tls(c, avail);
		/* No TLS here (client_tls_sslmode), no GSS encryption ever: 'N', plain text follows. */
		if (!sbuf_queue(&c->sb, "N", 1)) {
			client_close(c, "out of memory");
			return SB_CLOSED;
		}
		sbuf_flush(&c->sb);
		return SB_SKIP;
	}
	if (hdr->total_len == 16 && code == PROTO_CANCEL_CODE)
		return client_handle_cancel(c, data);
	if (PROTO_MAJOR(code) != 3) {
		client_fail(c, ERR_FEATURE_NOT_SUPPORTED,
			    "unsupported frontend protocol %u.%u: server supports 3.0 to 3.0",
			    PROTO_MAJOR(code), PROTO_MINOR(code));
		return SB_CLOSED;
	}

	struct pkt_reader r;
	reader_init(&r, data + 8, hdr->total_len - 8);
	const char *unknown_opts[32];
	size_t n_unknown = 0;
	const char *options = NULL;
	char err[256];
	for (;;) {
		const char *name = reader_cstr(&r);
		if (!name)
			break;
		if (!*name)
			break;
		const char *value = reader_cstr(&r);
		if (!value)
			break;
		if (strcmp(name, "user") == 0) {
			snprintf(c->login->user, sizeof(c->login->user), "%s", value);
		} else if (strcmp(name, "database") == 0) {
			snprintf(c->login->database, sizeof(c->login->database), "%s", value);
		} else if (strcmp(name, "options") == 0) {
			options = value;
		} else if (strcmp(name, "replication") == 0) {
			if (!client_parse_replication(c, value))
				return SB_CLOSED;
		} else if (strncmp(name, "_pq_.", 5) == 0) {
			if (n_unknown < ARRAY_SIZE(unknown_opts))
				unknown_opts[n_unknown++] = name;
		} else if (!client_add_var(c, name, value)) {
			client_close(c, "out of memory");
			return SB_CLOSED;
		}
	}
	if (r.failed) {
		client_fail(c, ERR_PROTOCOL_VIOLATION, "invalid startup packet layout");
		return SB_CLOSED;
	}
	if (!c->user[0]) {
		client_fail(c, ERR_INVALID_AUTH_SPEC, "no PostgreSQL user name specified in startup packet");
		return SB_CLOSED;
	}
	if (!c->database[0])
		snprintf(c->login->database, sizeof(c->login->database), "%s", c->user);
	if (!client_tls_satisfied(c))
		return SB_CLOSED;
	if (options && !params_parse_options(options, client_add_var, c, err, sizeof(err))) {
		client_fail(c, ERR_FEATURE_NOT_SUPPORTED, "%s", err);
		return SB_CLOSED;
	}
	if (worker_config(c->w)->application_name_add_host && c->replication == REPL_NONE &&
	    !client_add_host_to_appname(c)) {
		client_close(c, "out of memory");
		return SB_CLOSED;
	}
	if (c->over_limit) {
		c->w->stats.clients_refused++;
		client_fail(c, ERR_TOO_MANY_CONNECTIONS, "no more connections allowed (max_client_conn)");
		return SB_CLOSED;
	}
	/* "Protocol versions": tell a newer client what we speak, before authentication. */
	if (PROTO_MINOR(code) > 0 || n_unknown > 0) {
		uint8_t buf[2048];
		struct pkt_writer wr;
		writer_init(&wr, buf, sizeof(buf));
		codec_write_negotiate_version(&wr, PROTO_V3, unknown_opts, n_unknown);
		if (!client_send(c, &wr)) {
			client_close(c, "out of memory");
			return SB_CLOSED;
		}
	}
	c->sb.startup = false;
	client_set_state(c, CL_AUTH);
	client_start_auth(c);
	return c->state == CL_CLOSED ? SB_CLOSED : SB_SKIP;
}

/* ---- authentication ------------------------------------------------------ */

/*
 * A request the client must answer goes out at once. SASLFinal and
 * AuthenticationOk are only queued: the login's last messages
 * (ParameterStatus .. ReadyForQuery, or an error) follow in the same send(),
 * one syscall per login instead of three.
 */
static void client_auth_request(struct client *c, uint32_t code, const void *extra, size_t n)
{
	uint8_t buf[128];
	struct pkt_writer wr;
	writer_init(&wr, buf, sizeof(buf));
	codec_write_auth_request(&wr, code, extra, n);
	bool more_follows = code == AUTHREQ_SASL_FINAL || code == AUTHREQ_OK;
	if (!(more_follows ? client_queue(c, &wr) : client_send(c, &wr)))
		client_close(c, "out of memory");
}

static void client_login_ok(struct client *c);

static void client_auth_failed(struct client *c)
{
	c->w->stats.logins_failed++;
	client_fail(c, ERR_INVALID_PASSWORD, "password authentication failed for user \"%s\"", c->user);
}

/* peer (auth_hba_file, unix socket): the connecting process runs as the Unix user of that name. */
static bool client_peer_is_user(struct client *c)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(c->sb.fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
		return false;
	char buf[1024];
	struct passwd pw, *found = NULL;
	return getpwuid_r(cred.uid, &pw, buf, sizeof(buf), &found) == 0 && found &&
	       strcmp(found->pw_name, c->user) == 0;
}

/*
 * auth_type hba: the method of the first auth_hba_file line for this login,
 * as an auth_type; false when the file refuses it (no line, or reject),
 * with PostgreSQL's words for it. peer is checked here and becomes trust.
 */
static bool client_hba_method(struct client *c, const struct config *cfg, int *auth)
{
	bool tls = c->sb.ssl != NULL;
	const struct hba_rule *r = hba_match(cfg->hba, &c->addr.sa, tls, c->database, c->user);
	if (!r || r->method == HBA_REJECT) {
		char host[INET6_ADDRSTRLEN + 8] = "[local]";
		int port;
		if (c->addr.sa.sa_family != AF_UNIX)
			listener_format_addr(&c->addr.sa, cfg->listen_port, host, sizeof(host), &port);
		c->w->stats.logins_failed++;
		client_fail(c, ERR_INVALID_AUTH_SPEC,
			    "%s for host \"%s\", user \"%s\", database \"%s\", %s",
			    r ? "pg_hba.conf rejects connection" : "no pg_hba.conf entry", host, c->user,
			    c->database, tls ? "SSL encryption" : "no encryption");
		return false;
	}
	switch (r->method) {
	case HBA_PEER:
		if (!client_peer_is_user(c)) {
			c->w->stats.logins_failed++;
			client_fail(c, ERR_INVALID_AUTH_SPEC, "Peer authentication failed for user \"%s\"",
				    c->user);
			return false;
		}
		*auth = AUTH_TRUST;
		return true;
	case HBA_TRUST:
		*auth = AUTH_TRUST;
		return true;
	case HBA_MD5:
		*auth = AUTH_MD5;
		return true;
	case HBA_PASSWORD:
		*auth = AUTH_PLAIN;
		return true;
	case HBA_CERT:
		*auth = AUTH_CERT;
		return true;
	case HBA_SCRAM:
	default:
		*auth = AUTH_SCRAM;
		return true;
	}
}

static void client_start_auth(struct client *c)
{
	const struct config *cfg = worker_config(c->w);
	if (admin_peer_trusted(c)) {
		/* The console user from a process of berth's own uid over the unix socket. */
		client_login_ok(c);
		return;
	}
	int auth = cfg->auth_type;
	if (auth == AUTH_HBA && !client_hba_method(c, cfg, &auth))
		return;
	const struct auth_cred *cred = auth_lookup(&c->w->auth, cfg, c->user);

	switch (auth) {
	case AUTH_TRUST:
	case AUTH_CERT:
		if (!cred) {
			client_fail(c, ERR_INVALID_AUTH_SPEC, "role \"%s\" does not exist", c->user);
			return;
		}
		/* cert: the handshake verified the certificate; its CN names who may log in. */
		if (auth == AUTH_CERT &&
		    (!c->sb.ssl || !tls_peer_cn_matches(c->sb.ssl, c->user))) {
			c->w->stats.logins_failed++;
			client_fail(c, ERR_INVALID_AUTH_SPEC,
				    "certificate authentication failed for user \"%s\"", c->user);
			return;
		}
		client_login_ok(c);
		return;
	case AUTH_PLAIN:
		c->login->auth_mock = !cred;
		c->login->auth_step = AUTH_STEP_PASSWORD;
		client_auth_request(c, AUTHREQ_CLEARTEXT, NULL, 0);
		return;
	case AUTH_MD5:
		/* A SCRAM verifier cannot answer md5: use SCRAM, as PostgreSQL does. */
		if (!cred || cred->have_md5) {
			c->login->auth_mock = !cred;
			if (!auth_random(c->login->md5_salt, sizeof(c->login->md5_salt))) {
				client_close(c, "no random bytes");
				return;
			}
			c->login->auth_step = AUTH_STEP_MD5;
			client_auth_request(c, AUTHREQ_MD5, c->login->md5_salt, 4);
			return;
		}
		break;
	case AUTH_SCRAM:
	default:
		if (cred && !cred->have_scram && cred->have_md5) {
			/* An md5 hash cannot answer SCRAM: fall back to md5. */
			if (!auth_random(c->login->md5_salt, sizeof(c->login->md5_salt))) {
				client_close(c, "no random bytes");
				return;
			}
			c->login->auth_step = AUTH_STEP_MD5;
			client_auth_request(c, AUTHREQ_MD5, c->login->md5_salt, 4);
			return;
		}
		break;
	}
	c->login->auth_mock = !cred;
	c->login->auth_step = AUTH_STEP_SASL;
	/* Over TLS -PLUS comes first, as PostgreSQL lists it: clients bind when they can. */
	static const char both[] = SCRAM_PLUS_MECHANISM "\0" SCRAM_MECHANISM "\0";
	static const char plain[] = SCRAM_MECHANISM "\0";
	struct client_login *l = c->login;
	l->scram_plus_offered =
		c->sb.ssl && tls_server_end_point(c->sb.ssl, l->cb_hash, sizeof(l->cb_hash),
						  &l->cb_hash_len);
	if (c->login->scram_plus_offered)
		client_auth_request(c, AUTHREQ_SASL, both, sizeof(both));
	else
		client_auth_request(c, AUTHREQ_SASL, plain, sizeof(plain));
}

static void client_sasl_step(struct client *c, const uint8_t *msg, size_t len, bool initial)
{
	const struct config *cfg = worker_config(c->w);
	const struct auth_cred *cred = c->login->auth_mock ? NULL : auth_lookup(&c->w->auth, cfg, c->user);
	struct scram_secret mock;
	const struct scram_secret *sec;
	if (cred && cred->have_scram) {
		sec = &cred->scram;
	} else {
		auth_mock_scram(&c->w->auth, c->user, &mock);
		sec = &mock;
	}
	char out[512];
	size_t outlen = 0;
	enum scram_result res;
	if (initial) {
		uint8_t nonce[SCRAM_NONCE_RAW];
		const struct client_login *l = c->login;
		struct scram_binding cb = {l->scram_plus_offered, l->scram_plus, l->cb_hash,
					   l->cb_hash_len};
		if (!auth_random(nonce, sizeof(nonce))) {
			client_close(c, "out of memory");
			return;
		}
		res = scram_server_first(&c->login->scram, sec, &cb, (const char *)msg, len, nonce, out,
					 sizeof(out), &outlen);
	} else {
		res = scram_server_final(&c->login->scram, sec, (const char *)msg, len, out, sizeof(out), &outlen);
	}
	switch (res) {
	case SCRAM_CONTINUE:
		c->login->auth_step = AUTH_STEP_SASL_CONT;
		client_auth_request(c, AUTHREQ_SASL_CONTINUE, out, outlen);
		return;
	case SCRAM_DONE:
		if (c->login->auth_mock) {
			client_auth_failed(c);
			return;
		}
		client_auth_request(c, AUTHREQ_SASL_FINAL, out, outlen);
		if (c->state != CL_CLOSED)
			client_login_ok(c);
		return;
	case SCRAM_BAD_PROOF:
		client_auth_failed(c);
		return;
	case SCRAM_CB_DOWNGRADE:
		client_fail(c, ERR_PROTOCOL_VIOLATION, "SCRAM channel binding negotiation error");
		return;
	case SCRAM_CB_MISMATCH:
		c->w->stats.logins_failed++;
		client_fail(c, ERR_INVALID_AUTH_SPEC, "SCRAM channel binding check failed");
		return;
	case SCRAM_MALFORMED:
	default:
		client_fail(c, ERR_PROTOCOL_VIOLATION, "malformed SCRAM message");
		return;
	}
}

static enum sbuf_action client_handle_auth(struct client *c, const struct pkt_hdr *hdr,
					   const uint8_t *data, size_t avail)
{
	if (hdr->type != 'p') {
		client_fail(c, ERR_PROTOCOL_VIOLATION, "expected password response, got message type %d",
			    hdr->type);
		return SB_CLOSED;
	}
	if (hdr->total_len > 8192) {
		client_fail(c, ERR_PROTOCOL_VIOLATION, "password packet too large");
		return SB_CLOSED;
	}
	if (avail < hdr->total_len)
		return SB_NEED_FULL;
	const uint8_t *body = data + PKT_HDR_LEN;
	size_t blen = hdr->total_len - PKT_HDR_LEN;
	struct pkt_reader r;
	reader_init(&r, body, blen);
	const struct config *cfg = worker_config(c->w);

	switch (c->login->auth_step) {
	case AUTH_STEP_PASSWORD:
	case AUTH_STEP_MD5: {
		const char *pw = reader_cstr(&r);
		if (!pw) {
			client_fail(c, ERR_PROTOCOL_VIOLATION, "invalid password packet");
			return SB_CLOSED;
		}
		const struct auth_cred *cred = c->login->auth_mock ? NULL : auth_lookup(&c->w->auth, cfg, c->user);
		bool ok = false;
		if (cred && c->login->auth_step == AUTH_STEP_PASSWORD)
			ok = auth_check_plain(cred, pw);
		else if (cred && cred->have_md5)
			ok = md5_check_response(cred->md5, c->login->md5_salt, pw);
		if (!ok) {
			client_auth_failed(c);
			return SB_CLOSED;
		}
		client_login_ok(c);
		break;
	}
	case AUTH_STEP_SASL: {
		const char *mech = reader_cstr(&r);
		uint32_t len = reader_u32(&r);
		c->login->scram_plus = mech && c->login->scram_plus_offered &&
				       strcmp(mech, SCRAM_PLUS_MECHANISM) == 0;
		if (!mech || r.failed || (!c->login->scram_plus && strcmp(mech, SCRAM_MECHANISM) != 0) ||
		    (len != 0xffffffffu && len != reader_remaining(&r))) {
			client_fail(c, ERR_PROTOCOL_VIOLATION,
				    "client selected an invalid SASL authentication mechanism");
			return SB_CLOSED;
		}
		client_sasl_step(c, r.p, len == 0xffffffffu ? 0 : len, true);
		break;
	}
	case AUTH_STEP_SASL_CONT:
		client_sasl_step(c, body, blen, false);
		break;
	default:
		client_fail(c, ERR_PROTOCOL_VIOLATION, "unexpected password packet");
		return SB_CLOSED;
	}
	return c->state == CL_CLOSED ? SB_CLOSED : SB_SKIP;
}

/*
 * max_db_client_connections and max_user_client_connections (PgBouncer 1.24):
 * count the client in, or refuse it as PostgreSQL refuses past
 * max_connections.
 */
static bool client_take_slot(struct client *c)
{
	struct pool *p = c->pool;
	const char *limit = NULL;
	if (p->max_db_client_connections > 0 && p->db->n_clients >= p->max_db_client_connections)
		limit = "max_db_client_connections";
	else if (p->max_user_client_connections > 0 &&
		 pool_user_client_count(c->w, p->user) >= p->max_user_client_connections)
		limit = "max_user_client_connections";
	if (limit) {
		c->w->stats.clients_refused++;
		client_fail(c, ERR_TOO_MANY_CONNECTIONS, "no more connections allowed (%s)", limit);
		return false;
	}
	p->n_clients++;
	p->db->n_clients++;
	c->counted = true;
	return true;
}

/* Authenticated: AuthenticationOk now, the rest once the pool knows server parameters. */
static void client_login_ok(struct client *c)
{
	const struct config *cfg = worker_config(c->w);
	client_auth_request(c, AUTHREQ_OK, NULL, 0);
	if (c->state == CL_CLOSED)
		return;
	uint32_t key[2]; /* one call to the CSPRNG for both */
	if (!auth_random(key, sizeof(key))) {
		client_fail(c, ERR_INTERNAL, "no random bytes");
		return;
	}
	c->cancel_pid = key[0];
	c->cancel_key = key[1];
	c->cancel_pid &= 0x7fffffff; /* looks like a pid: positive */
	if (admin_is_console_db(c->database)) {
		/* The admin console: no pool; admin.c answers everything from here on. */
		if (admin_login(c)) {
			client_login_free(c);
			client_set_state(c, CL_CONSOLE);
		}
		return;
	}
	const struct db_def *def = config_find_db(cfg, c->database);
	const char *dbname = c->database;
	if (!def && c->replication == REPL_PHYSICAL && cfg->n_dbs == 1) {
		/*
		 * A physical walsender has no database (pg_basebackup and
		 * pg_receivewal say "replication"): with one entry, that one.
		 */
		def = &cfg->dbs[0];
		dbname = def->name;
	}
	if (!def) {
		client_fail(c, ERR_UNKNOWN_DATABASE, "database \"%s\" does not exist", c->database);
		return;
	}
	c->pool = pool_get(c->w, def, dbname, c->user, c->replication,
			   params_get(&c->startup, "application_name"));
	if (!c->pool) {
		client_fail(c, ERR_INTERNAL, "out of memory");
		return;
	}
	if (c->pool->db->disabled) {
		client_fail(c, ERR_CONSOLE, "database \"%s\" is disabled", c->database);
		return;
	}
	if (!client_take_slot(c))
		return;
	if (c->pool->have_defaults) {
		client_finish_login(c);
		return;
	}
	client_set_state(c, CL_LOGIN_WAIT);
	sbuf_flush(&c->sb); /* AuthenticationOk now; the rest when the pool has logged in */
	/* Stop reading until login completes: the client may not speak yet. */
	sbuf_stop_reading(&c->sb);
	pool_maintain(c->pool, worker_now_us(c->w));
}

/* login_notify_message, queued ahead of the login's last messages; false if memory ran out. */
static bool client_queue_login_notice(struct client *c)
{
	const char *text = worker_config(c->w)->login_notify_message;
	if (!text || !text[0])
		return true;
	size_t cap = strlen(text) + 64; /* a login, not a packet: one allocation is fine */
	uint8_t *buf = malloc(cap);
	if (!buf)
		return false;
	struct pkt_writer wr;
	writer_init(&wr, buf, cap);
	codec_write_error(&wr, 'N', "NOTICE", "00000", text);
	bool ok = client_queue(c, &wr);
	free(buf);
	return ok;
}

void client_finish_login(struct client *c)
{
	struct pool *p = c->pool;
	uint8_t buf[4096];
	struct pkt_writer wr;
	if (!client_queue_login_notice(c)) {
		client_close(c, "out of memory");
		return;
	}
	writer_init(&wr, buf, sizeof(buf));
	for (size_t i = 0; i < p->defaults.n; i++) {
		const struct param *d = &p->defaults.items[i];
		const char *mine = params_get(&c->vars, d->name);
		codec_write_parameter_status(&wr, d->name, mine ? mine : d->value);
	}
	codec_write_backend_key(&wr, c->cancel_pid, c->cancel_key);
	codec_write_ready(&wr, 'I');
	if (!client_send(c, &wr)) {
		client_close(c, "out of memory");
		return;
	}
	/* Mark reported parameters as such so later ParameterStatus updates match. */
	for (size_t i = 0; i < c->vars.n; i++)
		c->vars.items[i].reported = params_get(&p->defaults, c->vars.items[i].name) != NULL;
	if (worker_config(c->w)->log_connections)
		log_info("C-%llu: login %s/%s", (unsigned long long)c->id, c->database, c->user);
	c->user = p->user;
	c->database = p->db->name;
	client_login_free(c);
	p->stats.client_login_count++;
	sbuf_count_into(&c->sb, &p->stats.received, &p->stats.sent);
	client_set_state(c, CL_IDLE);
	sbuf_start(&c->sb);
	/* Bytes that arrived during login wait in the buffer: go on with them. */
	if (c->sb.io)
		sbuf_resume(&c->sb);
}

/* ---- serving ------------------------------------------------------------- */

void client_link_server(struct client *c, struct server *s)
{
	BERTH_ASSERT(!c->server);
	c->server = s;
	sbuf_link(&c->sb, &s->sb);
	if (!server_link_client(s, c)) {
		c->server = NULL;
		sbuf_link(&c->sb, NULL);
		client_fail(c, ERR_INTERNAL, "could not prepare server connection");
		return;
	}
	bool was_waiting = c->state == CL_WAITING;
	struct pool_stats *st = &c->pool->stats;
	uint64_t waited = was_waiting ? (uint64_t)(worker_now_us(c->w) - c->wait_start_us) : 0;
	st->server_assignment_count++;
	st->wait_time_us += waited;
	stats_hist_add(&st->wait_hist, waited);
	client_set_state(c, CL_ACTIVE);
	if (was_waiting)
		sbuf_resume(&c->sb);
}

void client_server_lost(struct client *c, const char *why)
{
	c->server = NULL;
	sbuf_link(&c->sb, NULL);
	client_fail(c, ERR_CONNECTION_FAILURE, "server connection lost: %s", why);
}

/* Rare path (errors): this client's entry for a shared statement id. */
static struct client_stmt *client_stmt_by_id(const struct client *c, uint32_t id)
{
	const struct client_stmts *cs = &c->stmts;
	for (size_t i = 0; i < cs->n_buckets; i++)
		for (struct client_stmt *e = cs->buckets[i]; e; e = e->next)
			if (e->ps->id == id)
				return e;
	return NULL;
}

void client_forget_stmt(struct client *c, uint32_t id, const char *name)
{
	/* By name: two of the client's names may share one statement. */
	if (!name || !client_stmt_get(&c->stmts, name))
		return;
	/* Keep the name: the server may still report errors about it in this pipeline. */
	c->forgotten_id = id;
	free(c->forgotten_name);
	c->forgotten_name = strdup(name); /* NULL on out of memory: errors keep berth's name */
	client_stmt_del(&c->stmts, &c->w->pstmts, name);
}

void client_drop_stmt_name(struct client *c, const char *name)
{
	if (name)
		client_stmt_del(&c->stmts, &c->w->pstmts, name);
}

const char *client_stmt_name_of(const struct client *c, uint32_t id)
{
	const struct client_stmt *e = client_stmt_by_id(c, id);
	if (e)
		return e->name;
	return c->forgotten_id == id ? c->forgotten_name : NULL;
}

/* The shared statement on the client's server, within max_prepared_statements. */
static bool client_ensure_stmt(struct client *c, const struct pstmt *ps, const char *client_name)
{
	uint32_t max = (uint32_t)worker_config(c->w)->max_prepared_statements;
	return server_ensure_stmt(c->server, ps, max, client_name);
}

/* Bytes parsed from this client and not yet sent to its server? */
static bool client_output_pending(const struct client *c)
{
	return c->sb.io && c->sb.io->sent < c->sb.io->parsed;
}

/* Transaction mode with shared prepared statements? */
static bool client_shares_stmts(const struct client *c)
{
	return c->pool->pool_mode != POOL_SESSION &&
	       worker_config(c->w)->max_prepared_statements > 0;
}

/*
 * Answer a request with an error of berth's own, in its place among the
 * replies, and skip the client's messages up to its Sync as the server would
 * ("Extended Query": error recovery).
 */
static enum sbuf_action client_extended_error(struct client *c, const char *sqlstate,
					      const char *fmt, const char *name)
{
	char msg[256];
	uint8_t buf[400];
	struct pkt_writer wr;
	snprintf(msg, sizeof(msg), fmt, name);
	writer_init(&wr, buf, sizeof(buf));
	codec_write_error(&wr, 'E', "ERROR", sqlstate, msg);
	stats_count_error(&c->pool->stats, sqlstate);
	uint8_t *copy = writer_ok(&wr) ? malloc(wr.len) : NULL;
	if (!copy) {
		client_close(c, "out of memory");
		return SB_CLOSED;
	}
	memcpy(copy, buf, wr.len);
	if (!server_push(c->server, REQ_SYNTH, 'E', 0, copy) || !server_drain_synth(c->server)) {
		client_close(c, "out of memory");
		return SB_CLOSED;
	}
	c->skip_until_sync = true;
	return SB_SKIP;
}

/* A reply berth makes itself (ParseComplete, CloseComplete), in order. */
static enum sbuf_action client_synth_reply(struct client *c, uint8_t type)
{
	if (!server_push(c->server, REQ_SYNTH, type, 0, NULL) || !server_drain_synth(c->server)) {
		client_close(c, "out of memory");
		return SB_CLOSED;
	}
	return SB_SKIP;
}

/* Private flags next to enum sqlscan_flag: berth answers this query itself; rewrites it. */
#define SQL_ANSWERED (1u << 16)
#define SQL_REWRITE (1u << 17)

/*
 * Look at SQL text for what the pooler must know: settings RESET (restore
 * the client's startup values), session state (check whether to pin), DDL
 * (later Parses are planned afresh), statements dropped on the server.
 */
static unsigned client_classify_sql(struct client *c, const char *sql, size_t len,
				    struct sqlscan_name *nm)
{
	bool txmode = c->pool->pool_mode != POOL_SESSION;
	if (!txmode && c->startup.n == 0)
		return 0;
	const char *name = nm->name;
	unsigned f = sqlscan_classify(sql, len, nm);
	if (!f)
		return 0;
	if ((f & SQL_RESETS_SETTINGS) && c->startup.n > 0)
		c->resync_pending = true;
	if (!txmode)
		return f;
	if (f & SQL_SESSION_STATE)
		c->probe_wanted = true;
	if (client_shares_stmts(c)) {
		if (f & SQL_DDL)
			pstmt_new_epoch(&c->w->pstmts);
		/* SQL_DROPS_STATEMENTS takes effect at the query's ReadyForQuery, if it succeeded. */
		/*
		 * DEALLOCATE of one of this client's protocol-level statements: the
		 * server knows it under a shared name, so berth answers it itself
		 * (SQL_ANSWERED) when it is the whole query.
		 */
		/* The name goes only once the DEALLOCATE succeeded (not in a failed transaction). */
		struct pstmt *dps = (f & SQL_DEALLOCATE_NAME) && name[0] ?
					    client_stmt_get(&c->stmts, name) : NULL;
		if (dps && !(f & SQL_MULTI)) {
			f |= SQL_ANSWERED;
			free(c->dealloc_name);
			c->dealloc_name = strdup(name); /* NULL on OOM: the statement then stays */
		}
		/* PREPARE and EXECUTE share names with protocol-level statements. */
		if ((f & (SQL_PREPARE_NAME | SQL_EXECUTE_NAME)) && !(f & SQL_MULTI) &&
		    client_stmt_get(&c->stmts, name))
			f |= SQL_REWRITE;
	}
	return f;
}

/*
 * A simple query names one of the client's protocol-level statements:
 * EXECUTE runs it under its server-side name; PREPARE of a taken name fails
 * as PostgreSQL's would, raised by the server so the transaction state is
 * right. The query is sent rewritten.
 */
static enum sbuf_action client_rewrite_query(struct client *c, const char *sql, size_t len,
					     unsigned f, const struct sqlscan_name *nm)
{
	struct server *s = c->server;
	char q[1024];
	int n;
	if (f & SQL_PREPARE_NAME) {
		/* The name goes in as a dollar-quoted literal (identifiers cannot hold a '$'). */
		n = snprintf(q, sizeof(q),
			     "DO $berth$BEGIN RAISE EXCEPTION USING ERRCODE = '42P05', MESSAGE = "
			     "'prepared statement \"' || $n$%s$n$ || '\" already exists'; END$berth$",
			     nm->name);
	} else {
		struct pstmt *ps = client_stmt_get(&c->stmts, nm->name);
		if (!ps || nm->off + nm->len > len)
			return SB_FORWARD;
		if (!client_ensure_stmt(c, ps, NULL))
			return SB_CLOSED;
		n = snprintf(q, sizeof(q), "%.*s%s%.*s", (int)nm->off, sql, ps->sname,
			     (int)(len - nm->off - nm->len), sql + nm->off + nm->len);
	}
	if (n < 0 || (size_t)n >= sizeof(q))
		return SB_FORWARD; /* too long to rewrite here: the server answers as it can */
	uint8_t hdr[PKT_HDR_LEN] = {'Q'};
	be32_write(hdr + 1, (uint32_t)(4 + n + 1));
	if (!sbuf_queue(&s->sb, hdr, sizeof(hdr)) || !sbuf_queue(&s->sb, q, (size_t)n + 1))
		return SB_CLOSED;
	sbuf_flush(&s->sb);
	return SB_SKIP;
}

/*
 * Will this DISCARD ALL / DEALLOCATE ALL succeed? Not in a failed transaction,
 * and DISCARD not inside a transaction block; when requests are still
 * outstanding the status to come is unknown: assume it runs.
 */
static bool client_drop_will_succeed(const struct client *c, const char *sql)
{
	const struct server *s = c->server;
	if (!replyq_empty(&s->q))
		return true;
	if (s->txn_status == 'E')
		return false;
	while (*sql == ' ' || *sql == '\t' || *sql == '\n' || *sql == '\r')
		sql++;
	return s->txn_status == 'I' || strncasecmp(sql, "discard", 7) != 0;
}

/* Query text of a Parse body (after the statement name); NULL if malformed. */
static const char *parse_query_text(const uint8_t *body, size_t len, size_t *textlen)
{
	const uint8_t *nul = memchr(body, 0, len);
	if (!nul)
		return NULL;
	const char *q = (const char *)nul + 1;
	size_t rest = len - (size_t)(nul + 1 - body);
	const char *qend = memchr(q, 0, rest);
	if (!qend)
		return NULL;
	*textlen = (size_t)(qend - q);
	return q;
}

/*
 * "DEALLOCATE name" of one of the client's own statements, sent as an unnamed
 * Parse (psycopg evicts its cache this way). The server knows the statement
 * under a shared name that others still use, so the server runs a statement
 * with the same replies and no effect instead, and berth gives its
 * CommandComplete the tag DEALLOCATE (the Execute that follows is marked).
 */
static enum sbuf_action client_parse_noop_deallocate(struct client *c)
{
	static const char noop[] = "DO $berth$BEGIN END$berth$";
	uint8_t msg[PKT_HDR_LEN + 1 + sizeof(noop) + 2];
	struct pkt_writer wr;
	writer_init(&wr, msg, sizeof(msg));
	writer_begin(&wr, 'P');
	writer_cstr(&wr, "");
	writer_cstr(&wr, noop);
	writer_u16(&wr, 0);
	writer_end(&wr);
	if (!writer_ok(&wr) || !sbuf_queue(&c->server->sb, msg, wr.len) ||
	    !server_push(c->server, REQ_PARSE, 0, 0, NULL)) {
		client_close(c, "out of memory");
		return SB_CLOSED;
	}
	c->deallocate_execute = true;
	sbuf_flush(&c->server->sb);
	return SB_SKIP;
}

static enum sbuf_action client_handle_parse(struct client *c, const struct pkt_hdr *hdr,
					    const uint8_t *data, size_t avail)
{
	struct server *s = c->server;
	bool whole = avail >= hdr->total_len;
	const uint8_t *body = data + PKT_HDR_LEN;
	size_t blen = hdr->total_len - PKT_HDR_LEN;
	if (avail <= PKT_HDR_LEN)
		return SB_NEED_FULL; /* the name's first byte decides */
	bool named = body[0] != 0;

	if (!named || !client_shares_stmts(c)) {
		/* Unnamed, or session mode: passes through; read its text when at hand. */
		if (whole) {
			if (client_output_pending(c))
				return SB_FLUSH; /* a rewritten Parse may follow */
			size_t tl;
			const char *q = parse_query_text(body, blen, &tl);
			struct sqlscan_name nm;
			unsigned f = q ? client_classify_sql(c, q, tl, &nm) : 0;
			if (f & SQL_ANSWERED)
				return client_parse_noop_deallocate(c);
			if ((f & SQL_DROPS_STATEMENTS) && client_shares_stmts(c) &&
			    client_drop_will_succeed(c, q)) {
				/*
				 * Pipelined Parses may follow this DEALLOCATE ALL / DISCARD ALL
				 * and the server runs it before them: forget everything now, in
				 * request order.
				 */
				server_stmts_clear(&s->stmts);
				client_stmts_clear(&c->stmts, &c->w->pstmts);
			}
		}
		if (!server_push(s, REQ_PARSE, 0, 0, NULL))
			goto oom;
		return SB_FORWARD;
	}
	if (!whole)
		return SB_NEED_FULL;
	const char *name = (const char *)body;
	size_t nlen = strnlen(name, blen);
	size_t tl;
	const char *q = parse_query_text(body, blen, &tl);
	if (nlen == blen || !q) {
		client_fail(c, ERR_PROTOCOL_VIOLATION, "invalid Parse message");
		return SB_CLOSED;
	}
	if (client_stmt_get(&c->stmts, name))
		return client_extended_error(c, "42P05", "prepared statement \"%s\" already exists",
					     name);
	if (c->pinned) {
		/*
		 * A pinned session keeps its server: the statement goes there under
		 * the client's own name, where SQL-level PREPAREs share its namespace
		 * (and keep the client pinned while they exist).
		 */
		struct sqlscan_name nm;
		client_classify_sql(c, q, tl, &nm);
		if (!server_push(s, REQ_PARSE, 0, 0, NULL))
			goto oom;
		return SB_FORWARD;
	}
	if (client_output_pending(c))
		return SB_FLUSH; /* berth's messages must follow what came before */
	struct sqlscan_name nm;
	client_classify_sql(c, q, tl, &nm);
	struct pstmt *ps = pstmt_intern(&c->w->pstmts, body + nlen + 1, blen - nlen - 1);
	if (!ps)
		goto oom;
	if (!client_stmt_put(&c->stmts, name, ps)) {
		pstmt_unref(&c->w->pstmts, ps);
		goto oom;
	}
	if (server_stmt_has(&s->stmts, ps->id))
		return client_synth_reply(c, '1'); /* already prepared on this session */
	/* The client sees the ParseComplete of this Parse as its own. */
	if (!client_ensure_stmt(c, ps, name))
		goto oom;
	sbuf_flush(&s->sb);
	return SB_SKIP;
oom:
	client_close(c, "out of memory");
	return SB_CLOSED;
}

/*
 * Bind or Describe of a named statement: make sure the shared statement is on
 * this session, then send the message with the server-side name. Bind keeps
 * its parameters: only the prefix is rewritten, the rest is forwarded as is.
 */
static enum sbuf_action client_handle_named(struct client *c, const struct pkt_hdr *hdr,
					    const uint8_t *data, size_t avail)
{
	struct server *s = c->server;
	const uint8_t *body = data + PKT_HDR_LEN;
	size_t have = avail < hdr->total_len ? avail : hdr->total_len;
	size_t bavail = have - PKT_HDR_LEN;
	bool bind = hdr->type == 'B';
	enum req_kind kind = bind ? REQ_BIND : REQ_DESCRIBE_STMT;

	/* The prefix: Bind = portal, statement; Describe = 'S'/'P', name. */
	size_t lead; /* bytes before the statement name */
	if (bind) {
		const uint8_t *nul = bavail ? memchr(body, 0, bavail) : NULL;
		if (!nul)
			goto need_more;
		lead = (size_t)(nul + 1 - body);
	} else {
		if (bavail < 1)
			goto need_more;
		if (body[0] == 'P') {
			if (!server_push(s, REQ_DESCRIBE_PORTAL, 0, 0, NULL))
				goto oom;
			return SB_FORWARD;
		}
		lead = 1;
	}
	const uint8_t *nul = lead < bavail ? memchr(body + lead, 0, bavail - lead) : NULL;
	if (!nul)
		goto need_more;
	const char *name = (const char *)body + lead;
	size_t prefix = PKT_HDR_LEN + (size_t)(nul + 1 - body); /* header through the name */
	if (!name[0] || !client_shares_stmts(c)) {
		if (!server_push(s, kind, 0, 0, NULL))
			goto oom;
		return SB_FORWARD;
	}
	struct pstmt *ps = client_stmt_get(&c->stmts, name);
	if (!ps && (c->pinned || c->probing)) {
		/* Maybe prepared on the pinned session itself (SQL PREPARE): let it answer. */
		if (!server_push(s, kind, 0, 0, NULL))
			goto oom;
		return SB_FORWARD;
	}
	if (!ps)
		return client_extended_error(c, "26000", "prepared statement \"%s\" does not exist",
					     name);
	if (client_output_pending(c))
		return SB_FLUSH;
	if (!client_ensure_stmt(c, ps, NULL))
		goto oom;
	const char *sname = ps->sname;
	size_t snlen = strlen(sname) + 1;
	size_t new_total = hdr->total_len - prefix + PKT_HDR_LEN + lead + snlen;
	uint8_t head[PKT_HDR_LEN];
	head[0] = hdr->type;
	be32_write(head + 1, (uint32_t)(new_total - 1));
	if (!sbuf_queue(&s->sb, head, sizeof(head)) || !sbuf_queue(&s->sb, body, lead) ||
	    !sbuf_queue(&s->sb, sname, snlen) || !server_push(s, kind, 0, 0, NULL))
		goto oom;
	if (c->sb.big) {
		/* Slow path: the whole message is in hand; send the rest as a copy. */
		if (!sbuf_queue(&s->sb, data + prefix, hdr->total_len - prefix))
			goto oom;
		sbuf_flush(&s->sb);
		return SB_SKIP;
	}
	if (prefix == hdr->total_len) {
		sbuf_flush(&s->sb);
		return SB_SKIP;
	}
	c->sb.prefix_skip = prefix;
	return SB_SKIP_PREFIX;
need_more:
	if (avail >= hdr->total_len) {
		client_fail(c, ERR_PROTOCOL_VIOLATION, "invalid %s message", bind ? "Bind" : "Describe");
		return SB_CLOSED;
	}
	return SB_NEED_FULL;
oom:
	client_close(c, "out of memory");
	return SB_CLOSED;
}

static enum sbuf_action client_handle_close(struct client *c, const struct pkt_hdr *hdr,
					    const uint8_t *data, size_t avail)
{
	if (!client_shares_stmts(c) || (avail > PKT_HDR_LEN && data[PKT_HDR_LEN] != 'S')) {
		if (!server_push(c->server, REQ_CLOSE, 0, 0, NULL))
			goto oom;
		return SB_FORWARD;
	}
	if (avail < hdr->total_len)
		return SB_NEED_FULL;
	const char *name = (const char *)data + PKT_HDR_LEN + 1;
	size_t maxlen = hdr->total_len - PKT_HDR_LEN - 1;
	if (!maxlen || strnlen(name, maxlen) == maxlen) {
		client_fail(c, ERR_PROTOCOL_VIOLATION, "invalid Close message");
		return SB_CLOSED;
	}
	if (!name[0]) {
		if (!server_push(c->server, REQ_CLOSE, 0, 0, NULL))
			goto oom;
		return SB_FORWARD;
	}
	/* Only this client's name goes; the shared statement stays for others. */
	if (!client_stmt_del(&c->stmts, &c->w->pstmts, name) && (c->pinned || c->probing)) {
		/* Not one of berth's: a statement of the pinned session itself. */
		if (!server_push(c->server, REQ_CLOSE, 0, 0, NULL))
			goto oom;
		return SB_FORWARD;
	}
	return client_synth_reply(c, '3');
oom:
	client_close(c, "out of memory");
	return SB_CLOSED;
}

/*
 * Count a message once its handling is final: NEED_FULL and FLUSH call the
 * handler again for the same message.
 */
static enum sbuf_action client_count_final(uint64_t *counter, enum sbuf_action act)
{
	if (act == SB_FORWARD || act == SB_SKIP || act == SB_SKIP_PREFIX)
		(*counter)++;
	return act;
}

/*
 * The message types a logged-in client may send (protocol 3.0, PostgresMain's
 * list), and what each does to the implicit transaction of the extended
 * protocol: Parse/Bind/Describe/Execute/Close open or extend it; Sync, a
 * simple Query or a FunctionCall end it (the latter two with their own).
 */
enum { FM_VALID = 1, FM_EXTENDED = 2, FM_ENDS_EXTENDED = 4 };
static const uint8_t frontend_msg[256] = {
	['P'] = FM_VALID | FM_EXTENDED,	     ['B'] = FM_VALID | FM_EXTENDED,
	['D'] = FM_VALID | FM_EXTENDED,	     ['E'] = FM_VALID | FM_EXTENDED,
	['C'] = FM_VALID | FM_EXTENDED,	     ['S'] = FM_VALID | FM_ENDS_EXTENDED,
	['Q'] = FM_VALID | FM_ENDS_EXTENDED, ['F'] = FM_VALID | FM_ENDS_EXTENDED,
	['H'] = FM_VALID,		     ['X'] = FM_VALID,
	['d'] = FM_VALID,		     ['c'] = FM_VALID,
	['f'] = FM_VALID,
};

/*
 * defer_begin, transaction mode: a plain BEGIN from a client holding no
 * server is answered at once, and reaches a server only with the
 * transaction's first statement (server_link_client), so each transaction
 * holds its server one client round trip less. Not with query logging on:
 * every statement is logged as it runs on the server.
 */
static bool client_may_defer_begin(const struct client *c)
{
	return c->pool->pool_mode == POOL_TRANSACTION && !c->deferred_begin && !c->replication &&
	       !c->skip_until_sync && worker_config(c->w)->defer_begin && !log_enabled(LOGB_QUERY);
}

/* CommandComplete tag and ReadyForQuery status, as PostgreSQL would answer; counted as a query. */
static enum sbuf_action client_answer_here(struct client *c, const char *tag, char status)
{
	uint8_t buf[64];
	struct pkt_writer wr;
	writer_init(&wr, buf, sizeof(buf));
	writer_begin(&wr, 'C');
	writer_cstr(&wr, tag);
	writer_end(&wr);
	codec_write_ready(&wr, status);
	if (!client_send(c, &wr)) {
		client_close(c, "out of memory");
		return SB_CLOSED;
	}
	struct pool_stats *st = &c->pool->stats;
	st->query_count++;
	stats_hist_add(&st->query_hist, 0);
	return SB_SKIP;
}

/*
 * defer_begin's simple queries, for a client holding no server: a plain
 * BEGIN, and a plain COMMIT or ROLLBACK of a transaction that never reached
 * a server (nothing ran in it: there is nothing to commit). False: the
 * query is for a server.
 */
static bool client_answer_deferred(struct client *c, const struct pkt_hdr *hdr, const uint8_t *data,
				   enum sbuf_action *act)
{
	/* The text and its NUL; one inside it (a malformed Query) makes it no match. */
	const char *sql = (const char *)data + PKT_HDR_LEN;
	size_t len = hdr->total_len - PKT_HDR_LEN;
	if (len && sql[len - 1] == '\0')
		len--;
	const char *tag;
	if (c->deferred_begin && !c->skip_until_sync && (tag = sqlscan_plain_end(sql, len))) {
		c->deferred_begin = false;
		struct pool_stats *st = &c->pool->stats;
		st->xact_count++;
		st->xact_time_us += (uint64_t)(worker_now_us(c->w) - c->xact_start_us);
		c->xact_start_us = 0;
		*act = client_answer_here(c, tag, 'I');
		return true;
	}
	if (client_may_defer_begin(c) && (tag = sqlscan_plain_begin(sql, len))) {
		c->deferred_begin = true;
		if (!c->xact_start_us)
			c->xact_start_us = worker_now_us(c->w);
		*act = client_answer_here(c, tag, 'T');
		return true;
	}
	return false;
}

static enum sbuf_action client_handle_request(struct client *c, const struct pkt_hdr *hdr,
					      const uint8_t *data, size_t avail)
{
	uint8_t t = hdr->type;
	log_debug("C-%llu: request '%c' (%zu bytes)", (unsigned long long)c->id, t, hdr->total_len);
	if (t == 'X') {
		/* Terminate: send what came before it, then leave. */
		if (client_output_pending(c))
			return SB_FLUSH;
		client_close(c, "client terminated");
		return SB_CLOSED;
	}
	uint8_t kind = frontend_msg[t];
	if (!(kind & FM_VALID)) {
		/*
		 * PostgreSQL answers an unknown type with FATAL and closes: do the
		 * same here, before the garbage can cost a server connection.
		 */
		client_fail(c, ERR_PROTOCOL_VIOLATION, "invalid frontend message type %d", t);
		return SB_CLOSED;
	}
	/* SQL text is read when the whole Query is at hand and fits a buffer. */
	bool txmode = c->pool->pool_mode != POOL_SESSION;
	if (t == 'Q' && (txmode || c->startup.n > 0) && avail < hdr->total_len &&
	    hdr->total_len <= c->w->pkt_buf)
		return SB_NEED_FULL;
	enum sbuf_action answered;
	if (t == 'Q' && !c->server && avail >= hdr->total_len &&
	    client_answer_deferred(c, hdr, data, &answered))
		return answered;
	if (!c->server) {
		if (!pool_request_server(c->pool, c))
			return c->state == CL_CLOSED ? SB_CLOSED : SB_PAUSE;
		if (c->state == CL_CLOSED)
			return SB_CLOSED;
	}
	struct server *s = c->server;
	if (BERTH_UNLIKELY(c->replication))
		return SB_FORWARD; /* its own walsender: replication commands and CopyBoth as they come */
	if (!c->query_start_us) {
		c->query_start_us = worker_now_us(c->w);
		if (!c->xact_start_us)
			c->xact_start_us = c->query_start_us;
	}
	/*
	 * A client that leaves inside the extended protocol's implicit
	 * transaction leaves it open (a SET or UPDATE the next client's query
	 * would commit), so its server is then closed, not lent again.
	 */
	if (kind & (FM_EXTENDED | FM_ENDS_EXTENDED))
		s->unsynced = (kind & FM_EXTENDED) != 0;
	if (t == 'S') {
		/* Sync ends error recovery on both sides. */
		c->skip_until_sync = false;
		s->skip_until_sync = false;
		if (!server_push(s, REQ_SYNC, 0, 0, NULL))
			goto oom;
		return SB_FORWARD;
	}
	if (c->skip_until_sync)
		return SB_SKIP; /* berth answered with an error: the rest waits for Sync */
	if (s->skip_until_sync && t != 'd' && t != 'c' && t != 'f') {
		log_debug("C-%llu: server skips '%c' until Sync", (unsigned long long)c->id, t);
		return SB_FORWARD; /* the server skips these itself: no replies to expect */
	}
	if (BERTH_UNLIKELY(log_enabled(LOGB_QUERY)))
		querylog_request(c, hdr, data, avail);
	switch (t) {
	case 'Q': /* simple query: replies until ReadyForQuery */
		uint8_t qsub = 0;
		if (avail >= hdr->total_len) {
			if (client_output_pending(c))
				return SB_FLUSH; /* an answer of berth's own may follow */
			const char *sql = (const char *)data + PKT_HDR_LEN;
			struct sqlscan_name nm;
			unsigned f = client_classify_sql(
				c, sql, strnlen(sql, hdr->total_len - PKT_HDR_LEN), &nm);
			if (f & SQL_ANSWERED) {
				uint8_t *nm_copy = (uint8_t *)c->dealloc_name;
				c->dealloc_name = NULL;
				if (!server_push(s, REQ_SYNTH, SYNTH_DEALLOCATE, 0, nm_copy) ||
				    !server_drain_synth(s))
					goto oom;
				return SB_SKIP;
			}
			if ((f & SQL_DROPS_STATEMENTS) && client_shares_stmts(c)) {
				if (f & SQL_MULTI) {
					/* "BEGIN; DISCARD ALL" may fail: decide at its ReadyForQuery. */
					qsub = QUERY_DROPS_STATEMENTS;
				} else if (client_drop_will_succeed(c, sql)) {
					/* In request order: Parses pipelined after it must survive it. */
					server_stmts_clear(&s->stmts);
					client_stmts_clear(&c->stmts, &c->w->pstmts);
				}
			}
			if (f & SQL_REWRITE) {
				enum sbuf_action act = client_rewrite_query(
					c, sql, strnlen(sql, hdr->total_len - PKT_HDR_LEN), f, &nm);
				if (act == SB_CLOSED)
					goto oom;
				if (act == SB_SKIP) {
					if (!server_push(s, REQ_QUERY, qsub, 0, NULL))
						goto oom;
					return SB_SKIP;
				}
			}
		}
		if (!server_push(s, REQ_QUERY, qsub, 0, NULL))
			goto oom;
		return SB_FORWARD;
	case 'F':
		if (!server_push(s, REQ_FUNCTION, 0, 0, NULL))
			goto oom;
		return SB_FORWARD;
	case 'E':
		uint8_t *dname = c->deallocate_execute ? (uint8_t *)c->dealloc_name : NULL;
		if (c->deallocate_execute)
			c->dealloc_name = NULL;
		uint8_t esub = c->deallocate_execute ? EXEC_TAG_DEALLOCATE : 0;
		if (!server_push(s, REQ_EXECUTE, esub, 0, dname))
			goto oom;
		c->deallocate_execute = false;
		return SB_FORWARD;
	case 'P':
		return client_count_final(&c->pool->stats.client_parse_count,
					  client_handle_parse(c, hdr, data, avail));
	case 'B':
		return client_count_final(&c->pool->stats.bind_count,
					  client_handle_named(c, hdr, data, avail));
	case 'D':
		return client_handle_named(c, hdr, data, avail);
	case 'C':
		return client_handle_close(c, hdr, data, avail);
	default:
		/* Flush, COPY data: no replies of their own. */
		return SB_FORWARD;
	}
oom:
	client_close(c, "out of memory");
	return SB_CLOSED;
}

static enum sbuf_action client_on_message(struct sbuf *sb, const struct pkt_hdr *hdr,
					  const uint8_t *data, size_t avail)
{
	struct client *c = sb->owner;
	switch (c->state) {
	case CL_STARTUP:
		return client_handle_startup(c, hdr, data, avail);
	case CL_AUTH:
		return client_handle_auth(c, hdr, data, avail);
	case CL_IDLE:
	case CL_ACTIVE:
		return client_handle_request(c, hdr, data, avail);
	case CL_LOGIN_WAIT:
	case CL_WAITING:
		return SB_PAUSE;
	case CL_CONSOLE:
		return admin_on_message(c, hdr, data, avail);
	case CL_FREE:
	case CL_CLOSED:
	default:
		return SB_CLOSED;
	}
}

/*
 * query_wait_notify: once per wait, tell a client that it is queued (the
 * NOTICE of PgBouncer 1.22+, word for word, for code that looks for it).
 * Nothing is being forwarded to a waiting client, so a whole message fits
 * in between.
 */
static void client_notify_queued(struct client *c, int64_t waited)
{
	int64_t after = worker_config(c->w)->query_wait_notify;
	if (after <= 0 || waited <= after || c->wait_notified_us == c->state_since_us)
		return;
	c->wait_notified_us = c->state_since_us;
	uint8_t buf[160];
	struct pkt_writer wr;
	writer_init(&wr, buf, sizeof(buf));
	codec_write_error(&wr, 'N', "NOTICE", "00000",
			  "No server connection available in postgres backend, client being queued");
	if (!client_send(c, &wr))
		log_warn("C-%llu: could not queue the query_wait_notify notice",
			 (unsigned long long)c->id);
}

void client_check_timeouts(struct client *c, int64_t now_us)
{
	const struct config *cfg = worker_config(c->w);
	/* Before login the client has no pool yet: only the global timeouts apply. */
	const struct pool *p = c->pool;
	int64_t age = now_us - c->state_since_us;
	switch (c->state) {
	case CL_STARTUP:
	case CL_AUTH:
		if (cfg->client_login_timeout > 0 && now_us - c->connect_time_us > cfg->client_login_timeout)
			client_fail(c, ERR_PROTOCOL_VIOLATION, "client_login_timeout");
		break;
	case CL_WAITING:
		if (p->query_wait_timeout > 0 && age > p->query_wait_timeout)
			client_fail(c, ERR_QUERY_WAIT_TIMEOUT,
				    "query_wait_timeout: no server connection became free in time");
		else
			client_notify_queued(c, age);
		break;
	case CL_LOGIN_WAIT:
		if (p->query_wait_timeout > 0 && age > p->query_wait_timeout)
			client_fail(c, ERR_CONNECTION_FAILURE, "timed out waiting for a server login");
		break;
	case CL_IDLE:
		if (c->deferred_begin) {
			/* In a transaction only it knows of yet: the transaction timeouts apply. */
			if (p->transaction_timeout > 0 && c->xact_start_us &&
			    now_us - c->xact_start_us > p->transaction_timeout)
				client_fail(c, ERR_TXN_TIMEOUT, "transaction_timeout");
			else if (p->idle_transaction_timeout > 0 &&
				 now_us - c->sb.last_activity_us > p->idle_transaction_timeout)
				client_fail(c, ERR_IDLE_IN_TXN_TIMEOUT, "idle_transaction_timeout");
			break;
		}
		if (p->client_idle_timeout > 0 && age > p->client_idle_timeout)
			client_fail(c, ERR_IDLE_SESSION_TIMEOUT, "client_idle_timeout");
		break;
	case CL_ACTIVE:
		if (p->query_timeout > 0 && c->server && !replyq_empty(&c->server->q) &&
		    c->query_start_us && now_us - c->query_start_us > p->query_timeout) {
			/*
			 * As PgBouncer: the client and its server connection are closed.
			 * The cancel first, so the backend stops the query now rather than
			 * when it next writes to its closed socket.
			 */
			upstream_cancel(c->server->up);
			client_fail(c, ERR_QUERY_CANCELED, "query_timeout");
			break;
		}
		if (p->transaction_timeout > 0 && c->server && c->server->txn_status != 'I' &&
		    c->xact_start_us && now_us - c->xact_start_us > p->transaction_timeout) {
			client_fail(c, ERR_TXN_TIMEOUT, "transaction_timeout");
			break;
		}
		if (p->idle_transaction_timeout > 0 && c->server && replyq_empty(&c->server->q) &&
		    c->server->txn_status != 'I' && now_us - c->server->state_since_us > 0 &&
		    now_us - c->sb.last_activity_us > p->idle_transaction_timeout)
			client_fail(c, ERR_IDLE_IN_TXN_TIMEOUT, "idle_transaction_timeout");
		break;
	default:
		break;
	}
}
