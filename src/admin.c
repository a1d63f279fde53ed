/*
 * admin.c - the admin console on the virtual database berth (alias
 * pgbouncer): PgBouncer's SHOW commands with PgBouncer 1.25's column names,
 * order and type OIDs (so pgbouncer_exporter and dashboards read berth
 * unchanged), and its control commands. Answers the simple query protocol
 * only; extended-protocol messages get an error, never a disconnect.
 * Changes pools only through pool.c and settings only through config.c.
 * Reference: PgBouncer doc/usage.md, "Admin console".
 */
#include "admin.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "build_config.h"
#include "client.h"
#include "config.h"
#include "errors.h"
#include "health.h"
#include "listener.h"
#include "log.h"
#include "pool.h"
#include "runtime.h"
#include "server.h"
#include "stats.h"
#include "tls.h"

/* Type OIDs of the columns (pg_type), as PgBouncer describes them. */
#define OID_INT8 20
#define OID_INT4 23
#define OID_TEXT 25
#define OID_NUMERIC 1700

struct col {
	const char *name;
	uint32_t oid;
};

enum console_wait {
	CW_NONE = 0,   /* ready for the next query */
	CW_PAUSE,      /* PAUSE: until the servers of wait_db (NULL: all) are closed */
	CW_SUSPEND,    /* SUSPEND: until every socket buffer is empty */
	CW_WAIT_CLOSE, /* WAIT_CLOSE: until no server RECONNECT marked is left */
};

struct console {
	char user[64];
	char database[64];        /* the name the client asked for: berth or pgbouncer */
	bool admin;               /* admin_users or trusted peer: may change things */
	bool skip_until_sync;     /* an extended-protocol message got its error: skip to Sync */
	enum console_wait wait;
	struct database *wait_db; /* what PAUSE/WAIT_CLOSE waits for; NULL = everything */
	char *rest;               /* statements of the same Query after the waiting one */
};

/* ---- output: a growable buffer of protocol messages (console replies are a slow path) ---- */

struct out {
	uint8_t *p;
	size_t len, cap;
	size_t msg_start;
	bool failed; /* out of memory: the reply is unusable */
};

static void out_bytes(struct out *o, const void *data, size_t n)
{
	if (o->failed)
		return;
	if (o->cap - o->len < n) {
		size_t ncap = o->cap ? o->cap : 1024;
		while (ncap - o->len < n)
			ncap *= 2;
		uint8_t *np = realloc(o->p, ncap);
		if (!np) {
			o->failed = true;
			return;
		}
		o->p = np;
		o->cap = ncap;
	}
	memcpy(o->p + o->len, data, n);
	o->len += n;
}

static void out_u8(struct out *o, uint8_t v)
{
	out_bytes(o, &v, 1);
}

static void out_u16(struct out *o, uint16_t v)
{
	uint8_t b[2];
	be16_write(b, v);
	out_bytes(o, b, 2);
}

static void out_u32(struct out *o, uint32_t v)
{
	uint8_t b[4];
	be32_write(b, v);
	out_bytes(o, b, 4);
}

static void out_cstr(struct out *o, const char *s)
{
	out_bytes(o, s, strlen(s) + 1);
}

static void out_begin(struct out *o, uint8_t type)
{
	o->msg_start = o->len;
	out_u8(o, type);
	out_u32(o, 0); /* length, patched by out_end */
}

static void out_end(struct out *o)
{
	if (!o->failed)
		be32_write(o->p + o->msg_start + 1, (uint32_t)(o->len - o->msg_start - 1));
}

static void out_free(struct out *o)
{
	free(o->p);
	memset(o, 0, sizeof(*o));
}

/* ErrorResponse or NoticeResponse; detail may be NULL. */
static void out_report(struct out *o, uint8_t type, const char *severity, const char *sqlstate,
		       const char *msg, const char *detail)
{
	out_begin(o, type);
	out_u8(o, 'S');
	out_cstr(o, severity);
	out_u8(o, 'V');
	out_cstr(o, severity);
	out_u8(o, 'C');
	out_cstr(o, sqlstate);
	out_u8(o, 'M');
	out_cstr(o, msg);
	if (detail) {
		out_u8(o, 'D');
		out_cstr(o, detail);
	}
	out_u8(o, 0);
	out_end(o);
}

static void out_complete(struct out *o, const char *tag)
{
	out_begin(o, 'C');
	out_cstr(o, tag);
	out_end(o);
}

static void out_ready(struct out *o)
{
	out_begin(o, 'Z');
	out_u8(o, 'I');
	out_end(o);
}

static void out_param(struct out *o, const char *name, const char *value)
{
	out_begin(o, 'S');
	out_cstr(o, name);
	out_cstr(o, value);
	out_end(o);
}

/* RowDescription ("Message Formats"): text format, no table, typmod -1. */
static void out_row_desc(struct out *o, const struct col *cols, size_t n)
{
	out_begin(o, 'T');
	out_u16(o, (uint16_t)n);
	for (size_t i = 0; i < n; i++) {
		int16_t typlen = cols[i].oid == OID_INT4 ? 4 : cols[i].oid == OID_INT8 ? 8 : -1;
		out_cstr(o, cols[i].name);
		out_u32(o, 0);                  /* table OID */
		out_u16(o, 0);                  /* column number */
		out_u32(o, cols[i].oid);
		out_u16(o, (uint16_t)typlen);
		out_u32(o, 0xffffffffu);        /* typmod -1 */
		out_u16(o, 0);                  /* text */
	}
	out_end(o);
}

static void out_row_begin(struct out *o, size_t ncols)
{
	out_begin(o, 'D');
	out_u16(o, (uint16_t)ncols);
}

/* One text value; NULL is SQL NULL. */
static void out_text(struct out *o, const char *s)
{
	if (!s) {
		out_u32(o, 0xffffffffu);
		return;
	}
	size_t n = strlen(s);
	out_u32(o, (uint32_t)n);
	out_bytes(o, s, n);
}

static void out_int(struct out *o, int64_t v)
{
	char b[24];
	snprintf(b, sizeof(b), "%" PRId64, v);
	out_text(o, b);
}

static void out_uint(struct out *o, uint64_t v)
{
	char b[24];
	snprintf(b, sizeof(b), "%" PRIu64, v);
	out_text(o, b);
}

/* Hand the reply to the client's socket; false if that closed it. */
static bool console_send(struct client *c, struct out *o)
{
	bool ok = !o->failed && (o->len == 0 || sbuf_queue(&c->sb, o->p, o->len));
	out_free(o);
	if (!ok) {
		client_close(c, "out of memory");
		return false;
	}
	if (c->sb.out.len > c->sb.out.sent)
		sbuf_flush(&c->sb);
	return c->state != CL_CLOSED;
}

/* ---- parsing ------------------------------------------------------------------- */

size_t admin_statement_len(const char *sql, size_t len)
{
	char quote = 0;
	for (size_t i = 0; i < len; i++) {
		char ch = sql[i];
		if (quote) {
			if (ch == quote)
				quote = 0; /* a doubled quote closes and reopens: same result */
		} else if (ch == '\'' || ch == '"') {
			quote = ch;
		} else if (ch == ';') {
			return i;
		}
	}
	return len;
}

static bool is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

static bool is_word_char(char ch)
{
	return isalnum((unsigned char)ch) || ch == '_';
}

static void skip_space(const char **p, const char *end)
{
	while (*p < end && is_space(**p))
		(*p)++;
}

/* A quoted string starting at *p (the quote char): unquoted into out. */
static bool read_quoted(const char **p, const char *end, char *out, size_t outlen)
{
	char q = **p;
	size_t n = 0;
	for ((*p)++; *p < end; (*p)++) {
		if (**p == q) {
			if (*p + 1 < end && (*p)[1] == q) {
				(*p)++; /* doubled: one literal quote */
			} else {
				(*p)++;
				out[n] = 0;
				return true;
			}
		}
		if (n + 1 >= outlen)
			return false;
		out[n++] = **p;
	}
	return false; /* unterminated */
}

/* A bare word of letters, digits, _ and the extra characters; false if empty or too long. */
static bool read_bare(const char **p, const char *end, const char *extra, char *out, size_t outlen)
{
	size_t n = 0;
	while (*p < end && (is_word_char(**p) || (extra && **p && strchr(extra, **p)))) {
		if (n + 1 >= outlen)
			return false;
		out[n++] = *(*p)++;
	}
	out[n] = 0;
	return n > 0;
}

static bool read_word(const char **p, const char *end, const char *extra, char *out, size_t outlen)
{
	if (*p < end && **p == '"')
		return read_quoted(p, end, out, outlen) && out[0];
	return read_bare(p, end, extra, out, outlen);
}

bool admin_parse(const char *stmt, size_t len, struct admin_cmd *out)
{
	const char *p = stmt, *end = stmt + len;
	memset(out, 0, sizeof(*out));
	skip_space(&p, end);
	if (!read_bare(&p, end, NULL, out->verb, sizeof(out->verb)))
		return false;
	for (char *v = out->verb; *v; v++)
		*v = (char)tolower((unsigned char)*v);
	if (p < end && !is_space(*p))
		return false;
	skip_space(&p, end);
	if (strcmp(out->verb, "set") == 0) {
		out->is_set = true;
		if (!read_word(&p, end, NULL, out->arg, sizeof(out->arg)))
			return false;
		skip_space(&p, end);
		if (p < end && *p == '=') {
			p++;
		} else if (end - p >= 2 && strncasecmp(p, "to", 2) == 0 &&
			   (end - p == 2 || is_space(p[2]) || p[2] == '\'' || p[2] == '"')) {
			p += 2;
		} else {
			return false;
		}
		skip_space(&p, end);
		if (p < end && (*p == '\'' || *p == '"')) {
			if (!read_quoted(&p, end, out->value, sizeof(out->value)))
				return false;
		} else {
			/* Bare: a number with a fraction or unit, a word, a list without spaces. */
			if (!read_bare(&p, end, ".-+:,*/", out->value, sizeof(out->value)))
				return false;
		}
	} else if (p < end) {
		if (!read_word(&p, end, ".-$", out->arg, sizeof(out->arg)))
			return false;
	}
	skip_space(&p, end);
	return p == end;
}

/* ---- helpers ---------------------------------------------------------------------- */

bool admin_is_console_db(const char *name)
{
	return strcmp(name, ADMIN_DB_NAME) == 0 || strcmp(name, ADMIN_DB_ALIAS) == 0;
}

/* Is user one of the names in a comma (or space) separated list? */
static bool in_list(const char *list, const char *user)
{
	size_t n = strlen(user);
	for (const char *p = list ? list : ""; *p;) {
		while (*p == ',' || is_space(*p))
			p++;
		size_t m = strcspn(p, ", \t");
		if (m == n && m > 0 && strncmp(p, user, n) == 0)
			return true;
		p += m;
	}
	return false;
}

bool admin_peer_trusted(const struct client *c)
{
	if (!c->login || c->addr.sa.sa_family != AF_UNIX ||
	    !admin_is_console_db(c->login->database))
		return false;
	const char *user = c->login->user;
	if (strcmp(user, ADMIN_DB_NAME) != 0 && strcmp(user, ADMIN_DB_ALIAS) != 0)
		return false;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(c->sb.fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
		return false;
	return cred.uid == getuid();
}

/* Wall-clock text of a loop-clock instant, as PgBouncer shows times. */
static void fmt_time(struct worker *w, int64_t mono_us, char *buf, size_t len)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t wall_us = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
	if (mono_us > 0)
		wall_us -= worker_now_us(w) - mono_us;
	time_t t = (time_t)(wall_us / 1000000);
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S %Z", &tm);
}

/* A libpq keyword of a database entry, or NULL. */
static const char *def_keyword(const struct db_def *def, const char *key)
{
	for (size_t i = 0; def->keywords && def->keywords[i]; i++)
		if (strcmp(def->keywords[i], key) == 0)
			return def->values[i];
	return NULL;
}

static int def_port(const struct db_def *def)
{
	const char *p = def_keyword(def, "port");
	int port = p ? atoi(p) : 0;
	return port > 0 ? port : 5432;
}

/* The worker's database of this name, if any (never creates; skips those a reload removed). */
static struct database *existing_db(struct worker *w, const char *name)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->databases)
	{
		struct database *db = list_entry(pos, struct database, node);
		if (!db->removed && strcmp(db->name, name) == 0)
			return db;
	}
	return NULL;
}

/* Is db (freed once a reload removed it and it drained) still there? Never dereferences it. */
static bool db_alive(struct worker *w, const struct database *db)
{
	for (struct list *pos = w->databases.next; pos != &w->databases; pos = pos->next)
		if (list_entry(pos, struct database, node) == db)
			return true;
	return false;
}

static bool db_has_pools(struct worker *w, const struct database *db)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->pools)
	{
		if (list_entry(pos, struct pool, node)->db == db)
			return true;
	}
	return false;
}

/* ---- execution ---------------------------------------------------------------------- */

enum exec_result {
	EX_DONE = 0, /* answered: next statement */
	EX_ERROR,    /* answered with an error: the rest of the Query is skipped */
	EX_WAIT,     /* the command waits (PAUSE, SUSPEND, WAIT_CLOSE) */
	EX_SILENT,   /* no answer at all (immediate SHUTDOWN: the process exits) */
	EX_CLOSED,   /* the console client itself was closed */
};

struct exec {
	struct client *c;
	struct console *con;
	struct worker *w;
	struct out *o;
	const char *stmt; /* for error messages */
	size_t stmt_len;
	enum sockets_view { SOCKETS_NO, SOCKETS_ALL, SOCKETS_ACTIVE } sockets; /* SHOW [ACTIVE_]SOCKETS rows */
};

static enum exec_result ex_error(struct exec *x, const char *sqlstate, const char *fmt, ...)
	BERTH_PRINTF(3, 4);
static enum exec_result ex_error(struct exec *x, const char *sqlstate, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_info("C-%llu: console: %s", (unsigned long long)x->c->id, msg);
	out_report(x->o, 'E', "ERROR", sqlstate, msg, NULL);
	return EX_ERROR;
}

static enum exec_result ex_done(struct exec *x, const char *tag)
{
	out_complete(x->o, tag);
	return EX_DONE;
}

static enum exec_result syntax_error(struct exec *x)
{
	int n = x->stmt_len > 200 ? 200 : (int)x->stmt_len;
	return ex_error(x, ERR_CONSOLE, "invalid command '%.*s', use SHOW HELP;", n, x->stmt);
}

static enum exec_result need_admin(struct exec *x)
{
	return ex_error(x, ERR_CONSOLE, "admin access needed");
}

/* ---- SHOW ----------------------------------------------------------------------------- */

static enum exec_result show_help(struct exec *x, const char *arg)
{
	(void)arg;
	static const char detail[] =
		"\n\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\n"
		"\tSHOW PEERS|PEER_POOLS|LISTS|STATE|HEALTH|MEM|DNS_HOSTS|DNS_ZONES\n"
		"\tSHOW SOCKETS|ACTIVE_SOCKETS\n"
		"\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS\n"
		"\tSET key = arg\n"
		"\tRELOAD\n"
		"\tPAUSE [<db>]\n"
		"\tRESUME [<db>]\n"
		"\tDISABLE <db>\n"
		"\tENABLE <db>\n"
		"\tRECONNECT [<db>]\n"
		"\tKILL [<db>]\n"
		"\tKILL_CLIENT <client_id>\n"
		"\tSUSPEND\n"
		"\tSHUTDOWN\n"
		"\tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS\n"
		"\tWAIT_CLOSE [<db>]";
	out_report(x->o, 'N', "NOTICE", "00000", "Console usage", detail);
	return ex_done(x, "SHOW");
}

static enum exec_result show_version(struct exec *x, const char *arg)
{
	(void)arg;
	static const struct col cols[] = {{"version", OID_TEXT}};
	out_row_desc(x->o, cols, 1);
	out_row_begin(x->o, 1);
	out_text(x->o, "berth " PACKAGE_VERSION); /* the first line of berth --version */
	out_end(x->o);
	return ex_done(x, "SHOW");
}

/* Wall-clock microseconds as text in the zone PgBouncer's times use; NULL for never. */
static void out_wall_time(struct out *o, int64_t wall_us)
{
	if (wall_us <= 0) {
		out_text(o, NULL);
		return;
	}
	char buf[64];
	time_t t = (time_t)(wall_us / 1000000);
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S %Z", &tm);
	out_text(o, buf);
}

/* berth's own: what the health loop (health.c) knows of each upstream. */
static enum exec_result show_health(struct exec *x, const char *arg)
{
	(void)arg;
	static const struct col cols[] = {
		{"database", OID_TEXT},		  {"state", OID_TEXT},
		{"last_check", OID_TEXT},	  {"last_success", OID_TEXT},
		{"latency_us", OID_INT8},	  {"consecutive_failures", OID_INT8},
		{"checks", OID_INT8},		  {"failures", OID_INT8},
		{"last_error", OID_TEXT},
	};
	const size_t n = sizeof(cols) / sizeof(cols[0]);
	out_row_desc(x->o, cols, n);
	const struct health *h = x->w->rt->health;
	for (const struct health_status *st = h ? health_next(h, NULL) : NULL; st;
	     st = health_next(h, st)) {
		out_row_begin(x->o, n);
		out_text(x->o, st->database);
		out_text(x->o, health_state_name(st->state));
		out_wall_time(x->o, st->last_check_us);
		out_wall_time(x->o, st->last_success_us);
		if (st->checks)
			out_int(x->o, st->last_latency_us);
		else
			out_text(x->o, NULL);
		out_uint(x->o, st->consecutive_failures);
		out_uint(x->o, st->checks);
		out_uint(x->o, st->failures);
		out_text(x->o, st->last_error[0] ? st->last_error : NULL);
		out_end(x->o);
	}
	return ex_done(x, "SHOW");
}

static enum exec_result show_config(struct exec *x, const char *arg)
{
	(void)arg;
	static const struct col cols[] = {
		{"key", OID_TEXT},
		{"value", OID_TEXT},
		{"default", OID_TEXT},
		{"changeable", OID_TEXT},
	};
	const struct config *cfg = worker_config(x->w);
	out_row_desc(x->o, cols, 4);
	for (size_t i = 0; i < config_key_count(); i++) {
		char value[1024];
		config_key_format(cfg, i, value, sizeof(value)); /* masks CF_SECRET values */
		bool secret = config_key_flags(i) & CF_SECRET;
		out_row_begin(x->o, 4);
		out_text(x->o, config_key_name(i));
		out_text(x->o, value);
		out_text(x->o, secret ? value : config_key_default(i));
		out_text(x->o, (config_key_flags(i) & CF_RELOAD) ? "yes" : "no");
		out_end(x->o);
	}
	return ex_done(x, "SHOW");
}

/* One SHOW DATABASES row for a configured entry (or a "*" instance) under name. */
static void database_row(struct exec *x, const struct db_def *def, const char *name)
{
	const struct config *cfg = worker_config(x->w);
	struct database *db = existing_db(x->w, name);
	int clients = 0;
	if (db) {
		struct list *pos, *tmp;
		list_for_each_safe(pos, tmp, &x->w->pools)
		{
			struct pool *p = list_entry(pos, struct pool, node);
			if (p->db == db)
				clients += (int)(p->n_cl_active +
						 p->n_cl_waiting +
						 p->n_cl_login);
		}
	}
	const char *host = def_keyword(def, "host");
	const char *lbh = NULL;
	if (host && strchr(host, ',')) {
		lbh = def_keyword(def, "load_balance_hosts"); /* libpq 16's own, if it knows it */
		if (!lbh)
			lbh = def->load_balance_hosts == LB_ROUND_ROBIN ? "round-robin" : "disable";
	}
	struct out *o = x->o;
	out_row_begin(o, 17);
	out_text(o, name);
	out_text(o, host);
	out_int(o, def_port(def));
	out_text(o, def->dbname ? def->dbname : name);
	out_text(o, def->forced_user);
	out_int(o, def->pool_size >= 0 ? def->pool_size : cfg->default_pool_size);
	out_int(o, def->min_pool_size >= 0 ? def->min_pool_size : cfg->min_pool_size);
	out_int(o, def->reserve_pool_size >= 0 ? def->reserve_pool_size : cfg->reserve_pool_size);
	out_int(o, (def->server_lifetime >= 0 ? def->server_lifetime : cfg->server_lifetime) /
			   1000000);
	out_text(o, def->pool_mode >= 0 ? pool_mode_name(def->pool_mode) : NULL);
	out_text(o, lbh);
	out_int(o, def->max_db_connections >= 0 ? def->max_db_connections
						: cfg->max_db_connections);
	out_int(o, db ? db->n_servers : 0);
	out_int(o, def->max_db_client_connections >= 0 ? def->max_db_client_connections
						       : cfg->max_db_client_connections);
	out_int(o, clients);
	out_int(o, db && db->paused);
	out_int(o, db && db->disabled);
	out_end(o);
}

/*
 * The admin console as PgBouncer lists it: a database and a pool named
 * pgbouncer (user pgbouncer, statement mode) whose clients are the console's.
 */
#define CONSOLE_NAME "pgbouncer"

static void console_database_row(struct exec *x)
{
	struct out *o = x->o;
	out_row_begin(o, 17);
	out_text(o, CONSOLE_NAME);
	out_text(o, NULL);
	out_int(o, worker_config(x->w)->listen_port);
	out_text(o, CONSOLE_NAME);
	out_text(o, CONSOLE_NAME);
	out_int(o, 2); /* PgBouncer's figure for its admin pool */
	for (int i = 0; i < 3; i++) /* min_pool_size, reserve_pool_size, server_lifetime */
		out_int(o, 0);
	out_text(o, "statement");
	out_text(o, NULL);
	out_int(o, 0);
	out_int(o, 0);
	out_int(o, 0);
	out_int(o, (int64_t)list_count(&x->w->console_clients));
	out_int(o, 0);
	out_int(o, 0);
	out_end(o);
}

static enum exec_result show_databases(struct exec *x, const char *arg)
{
	(void)arg;
	static const struct col cols[] = {
		{"name", OID_TEXT},           {"host", OID_TEXT},
		{"port", OID_INT4},           {"database", OID_TEXT},
		{"force_user", OID_TEXT},     {"pool_size", OID_INT4},
		{"min_pool_size", OID_INT4},  {"reserve_pool_size", OID_INT4},
		{"server_lifetime", OID_INT4}, {"pool_mode", OID_TEXT},
		{"load_balance_hosts", OID_TEXT}, {"max_connections", OID_INT4},
		{"current_connections", OID_INT4}, {"max_client_connections", OID_INT4},
		{"current_client_connections", OID_INT4}, {"paused", OID_INT4},
		{"disabled", OID_INT4},
	};
	const struct config *cfg = worker_config(x->w);
	out_row_desc(x->o, cols, 17);
	for (size_t i = 0; i < cfg->n_dbs; i++)
		if (strcmp(cfg->dbs[i].name, "*") != 0)
			database_row(x, &cfg->dbs[i], cfg->dbs[i].name);
	/* Databases the "*" entry made for names clients asked for. */
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &x->w->databases)
	{
		struct database *db = list_entry(pos, struct database, node);
		if (!db->removed && strcmp(db->def->name, "*") == 0)
			database_row(x, db->def, db->name);
	}
	console_database_row(x);
	return ex_done(x, "SHOW");
}

/* Longest current wait of a client on list (a FIFO: the first waited longest). */
static int64_t first_wait_us(struct worker *w, const struct list *head)
{
	if (list_empty(head))
		return 0;
	const struct client *c = list_entry(list_first(head), struct client, node);
	int64_t age = worker_now_us(w) - c->state_since_us;
	return age > 0 ? age : 0;
}

/* PgBouncer's "used": idle past server_check_delay, so server_check_query runs before lending. */
static int idle_needing_check(struct worker *w, const struct pool *p)
{
	int64_t now = worker_now_us(w);
	int n = 0;
	for (const struct list *sp = p->sv_idle.next; sp != &p->sv_idle; sp = sp->next)
		n += server_needs_check(list_entry(sp, struct server, node), now);
	return n;
}

static enum exec_result show_pools(struct exec *x, const char *arg)
{
	(void)arg;
	static const struct col cols[] = {
		{"database", OID_TEXT},          {"user", OID_TEXT},
		{"cl_active", OID_INT4},         {"cl_waiting", OID_INT4},
		{"cl_active_cancel_req", OID_INT4}, {"cl_waiting_cancel_req", OID_INT4},
		{"sv_active", OID_INT4},         {"sv_active_cancel", OID_INT4},
		{"sv_being_canceled", OID_INT4}, {"sv_idle", OID_INT4},
		{"sv_used", OID_INT4},           {"sv_tested", OID_INT4},
		{"sv_login", OID_INT4},          {"maxwait", OID_INT4},
		{"maxwait_us", OID_INT4},        {"pool_mode", OID_TEXT},
		{"load_balance_hosts", OID_TEXT},
	};
	struct out *o = x->o;
	out_row_desc(o, cols, 17);
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &x->w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		/* Clients waiting for the pool's first login wait too (CL_WAITING_LOGIN). */
		int64_t wait = first_wait_us(x->w, &p->cl_waiting);
		int64_t wl = first_wait_us(x->w, &p->cl_login);
		if (wl > wait)
			wait = wl;
		const char *host = def_keyword(p->db->def, "host");
		const char *lbh = NULL;
		if (host && strchr(host, ',')) {
			lbh = def_keyword(p->db->def, "load_balance_hosts");
			if (!lbh)
				lbh = "disable";
		}
		out_row_begin(o, 17);
		out_text(o, p->db->name);
		out_text(o, p->user);
		out_int(o, (int64_t)p->n_cl_active);
		out_int(o, (int64_t)(p->n_cl_waiting + p->n_cl_login));
		out_int(o, 0); /* cancel requests are forwarded at once, never queued */
		out_int(o, 0);
		out_int(o, (int64_t)list_count(&p->sv_active));
		out_int(o, 0);
		out_int(o, 0);
		int used = idle_needing_check(x->w, p);
		out_int(o, (int64_t)list_count(&p->sv_idle) - used);
		out_int(o, used);
		out_int(o, (int64_t)list_count(&p->sv_resetting));
		out_int(o, (int64_t)list_count(&p->sv_connecting));
		out_int(o, wait / 1000000);
		out_int(o, wait % 1000000);
		out_text(o, pool_mode_name(p->pool_mode));
		out_text(o, lbh);
		out_end(o);
	}
	out_row_begin(o, 17);
	out_text(o, CONSOLE_NAME);
	out_text(o, CONSOLE_NAME);
	out_int(o, (int64_t)list_count(&x->w->console_clients));
	for (int i = 0; i < 12; i++) /* cl_waiting .. maxwait_us */
		out_int(o, 0);
	out_text(o, "statement");
	out_text(o, NULL);
	out_end(o);
	return ex_done(x, "SHOW");
}

static const struct col socket_cols[] = {
	{"type", OID_TEXT},       {"user", OID_TEXT},         {"database", OID_TEXT},
	{"replication", OID_TEXT}, {"state", OID_TEXT},       {"addr", OID_TEXT},
	{"port", OID_INT4},       {"local_addr", OID_TEXT},   {"local_port", OID_INT4},
	{"connect_time", OID_TEXT}, {"request_time", OID_TEXT}, {"wait", OID_INT4},
	{"wait_us", OID_INT4},    {"close_needed", OID_INT4}, {"ptr", OID_TEXT},
	{"link", OID_TEXT},       {"remote_pid", OID_INT4},   {"tls", OID_TEXT},
	{"application_name", OID_TEXT}, {"prepared_statements", OID_INT4}, {"id", OID_INT4},
};
#define N_SOCKET_COLS (sizeof(socket_cols) / sizeof(socket_cols[0]))

/* What SHOW CLIENTS/SERVERS says about one connection. */
struct sock_row {
	const char *type, *user, *database, *state;
	int replication; /* enum replication_mode */
	int fd;
	const struct sockaddr *peer; /* NULL: ask the socket */
	int unix_port;               /* port shown for unix sockets */
	int64_t connect_us, request_us, wait_us;
	bool close_needed;
	const void *ptr, *link;
	int remote_pid;
	SSL *ssl; /* not const: OpenSSL's getters of the negotiated group take a plain SSL * */
	const char *application_name;
	size_t prepared;
	uint64_t id;
	const struct sbuf *sb; /* buffer positions for SHOW SOCKETS */
};

/* SHOW SOCKETS adds PgBouncer's buffer columns to the SHOW CLIENTS/SERVERS ones. */
static const struct col buffer_cols[] = {
	{"recv_pos", OID_INT4},    {"pkt_pos", OID_INT4},   {"pkt_remain", OID_INT4},
	{"send_pos", OID_INT4},    {"send_remain", OID_INT4}, {"pkt_avail", OID_INT4},
	{"send_avail", OID_INT4},
};
#define N_BUFFER_COLS (sizeof(buffer_cols) / sizeof(buffer_cols[0]))

/* A socket holds bytes: a borrowed buffer, or berth-made bytes not yet sent. */
static bool sbuf_holds_bytes(const struct sbuf *sb)
{
	return sb->io || sb->out.sent < sb->out.len || sb->big;
}

/*
 * berth's buffer is [sent, parsed) to forward and [parsed, recv) unparsed,
 * so PgBouncer's columns map onto it; pkt_remain is the rest of a message
 * forwarded or dropped across reads.
 */
static void out_buffer_columns(struct out *o, const struct sbuf *sb)
{
	const struct iobuf *io = sb->io;
	size_t recv = io ? io->recv : 0, parsed = io ? io->parsed : 0, sent = io ? io->sent : 0;
	size_t queued = sb->out.len - sb->out.sent;
	out_int(o, (int64_t)recv);
	out_int(o, (int64_t)parsed);
	out_int(o, (int64_t)(sb->fwd_left + sb->skip_left));
	out_int(o, (int64_t)sent);
	out_int(o, (int64_t)(parsed - sent + queued));
	out_int(o, (int64_t)(recv - parsed));
	out_int(o, (int64_t)(parsed - sent));
}

static void socket_row(struct exec *x, const struct sock_row *r)
{
	if (x->sockets == SOCKETS_ACTIVE && !(r->sb && sbuf_holds_bytes(r->sb)))
		return;
	char addr[INET6_ADDRSTRLEN + 8] = "", laddr[INET6_ADDRSTRLEN + 8] = "";
	int port = 0, lport = 0;
	union {
		struct sockaddr sa;
		struct sockaddr_storage ss;
	} a;
	socklen_t alen = sizeof(a);
	if (r->peer)
		listener_format_addr(r->peer, r->unix_port, addr, sizeof(addr), &port);
	else if (r->fd >= 0 && getpeername(r->fd, &a.sa, &alen) == 0)
		listener_format_addr(&a.sa, r->unix_port, addr, sizeof(addr), &port);
	alen = sizeof(a);
	if (r->fd >= 0 && getsockname(r->fd, &a.sa, &alen) == 0)
		listener_format_addr(&a.sa, r->unix_port, laddr, sizeof(laddr), &lport);
	char ct[64], rt[64], ptr[32], link[32] = "", tls[96] = "";
	fmt_time(x->w, r->connect_us, ct, sizeof(ct));
	fmt_time(x->w, r->request_us ? r->request_us : r->connect_us, rt, sizeof(rt));
	snprintf(ptr, sizeof(ptr), "%p", r->ptr);
	if (r->link)
		snprintf(link, sizeof(link), "%p", r->link);
	if (r->ssl) {
		/* PgBouncer's form: protocol/cipher, then the key exchange group when there is one. */
		int group = SSL_get_negotiated_group(r->ssl);
		const char *gname =
			group > 0 && !(group & TLSEXT_nid_unknown) ? OBJ_nid2sn(group) : NULL;
		snprintf(tls, sizeof(tls), "%s/%s%s%s", SSL_get_version(r->ssl),
			 SSL_CIPHER_get_name(SSL_get_current_cipher(r->ssl)), gname ? "/ECDH=" : "",
			 gname ? gname : "");
	}
	struct out *o = x->o;
	out_row_begin(o, N_SOCKET_COLS + (x->sockets ? N_BUFFER_COLS : 0));
	out_text(o, r->type);
	out_text(o, r->user);
	out_text(o, r->database);
	static const char *const repl[] = {"none", "physical", "logical"};
	out_text(o, repl[r->replication]);
	out_text(o, r->state);
	out_text(o, addr);
	out_int(o, port);
	out_text(o, laddr);
	out_int(o, lport);
	out_text(o, ct);
	out_text(o, rt);
	out_int(o, r->wait_us / 1000000);
	out_int(o, r->wait_us % 1000000);
	out_int(o, r->close_needed);
	out_text(o, ptr);
	out_text(o, link);
	out_int(o, r->remote_pid);
	out_text(o, tls);
	out_text(o, r->application_name ? r->application_name : "");
	out_int(o, (int64_t)r->prepared);
	out_uint(o, r->id);
	if (x->sockets) {
		static const struct sbuf none;
		out_buffer_columns(o, r->sb ? r->sb : &none);
	}
	out_end(o);
}

static void client_row(struct exec *x, struct client *c, const char *state)
{
	const struct config *cfg = worker_config(x->w);
	int64_t now = worker_now_us(x->w);
	bool waiting = c->state == CL_WAITING || c->state == CL_LOGIN_WAIT;
	int pid = 0;
	if (c->addr.sa.sa_family == AF_UNIX) {
		struct ucred cred;
		socklen_t len = sizeof(cred);
		if (getsockopt(c->sb.fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
			pid = (int)cred.pid;
	}
	struct sock_row r = {
		.type = "C",
		.user = c->user,
		.database = c->database,
		.replication = c->replication,
		.state = state,
		.fd = c->sb.fd,
		.peer = c->addr.sa.sa_family == AF_UNIX ? NULL : &c->addr.sa,
		.unix_port = cfg->listen_port,
		.connect_us = c->connect_time_us,
		.request_us = c->sb.last_activity_us,
		.wait_us = waiting ? now - c->state_since_us : 0,
		.ptr = c,
		.link = c->server,
		.remote_pid = pid,
		.ssl = c->sb.ssl,
		.application_name = params_get(&c->vars, "application_name"),
		.prepared = c->stmts.n,
		.id = c->id,
		.sb = &c->sb,
	};
	socket_row(x, &r);
}

static void client_list_rows(struct exec *x, struct list *head, const char *state)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, head)
	{
		struct client *c = list_entry(pos, struct client, node);
		/* Logged in but not linked is idle, as PgBouncer shows its active list. */
		client_row(x, c, state ? state : c->state == CL_ACTIVE ? "active" : "idle");
	}
}

static enum exec_result show_clients(struct exec *x, const char *arg)
{
	(void)arg;
	out_row_desc(x->o, socket_cols, N_SOCKET_COLS);
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &x->w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		client_list_rows(x, &p->cl_active, NULL);
		client_list_rows(x, &p->cl_waiting, "waiting");
		client_list_rows(x, &p->cl_login, "waiting");
	}
	client_list_rows(x, &x->w->console_clients, "idle");
	return ex_done(x, "SHOW");
}

/* An idle server due for server_check_query is "used", as PgBouncer's sv_used list. */
static const char *idle_state_name(struct exec *x, const struct server *s)
{
	bool used = server_needs_check(s, worker_now_us(x->w));
	if (x->sockets)
		return used ? "sv_used" : "sv_idle";
	return used ? "used" : "idle";
}

static void server_rows(struct exec *x, struct pool *p, struct list *head, const char *state)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, head)
	{
		struct server *s = list_entry(pos, struct server, node);
		struct sock_row r = {
			.type = "S",
			.user = p->server_user,
			.database = p->db->name,
			.replication = p->replication,
			.state = state ? state : idle_state_name(x, s),
			.fd = s->sb.fd,
			.unix_port = def_port(p->db->def),
			.connect_us = s->connect_time_us,
			.request_us = s->sb.last_activity_us,
			.close_needed = s->close_needed,
			.ptr = s,
			.link = s->client,
			.remote_pid = (int)s->backend_pid,
			.ssl = s->sb.ssl,
			.application_name =
				s->client ? params_get(&s->client->vars, "application_name") : NULL,
			.prepared = s->stmts.n,
			.id = s->id,
			.sb = &s->sb,
		};
		socket_row(x, &r);
	}
}

static enum exec_result show_servers(struct exec *x, const char *arg)
{
	(void)arg;
	out_row_desc(x->o, socket_cols, N_SOCKET_COLS);
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &x->w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		server_rows(x, p, &p->sv_active, "active");
		server_rows(x, p, &p->sv_idle, NULL); /* idle or used */
		server_rows(x, p, &p->sv_resetting, "tested"); /* server_reset_query or check */
		server_rows(x, p, &p->sv_connecting, "new");
	}
	return ex_done(x, "SHOW");
}

/*
 * SHOW SOCKETS and SHOW ACTIVE_SOCKETS: every client and server socket (the
 * active view only those holding bytes), named by PgBouncer's internal lists,
 * with the buffer columns added.
 */
static enum exec_result show_sockets_view(struct exec *x, enum sockets_view view)
{
	struct col cols[N_SOCKET_COLS + N_BUFFER_COLS];
	memcpy(cols, socket_cols, sizeof(socket_cols));
	memcpy(cols + N_SOCKET_COLS, buffer_cols, sizeof(buffer_cols));
	out_row_desc(x->o, cols, ARRAY_SIZE(cols));
	x->sockets = view;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &x->w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		client_list_rows(x, &p->cl_active, "cl_active");
		client_list_rows(x, &p->cl_waiting, "cl_waiting");
		client_list_rows(x, &p->cl_login, "cl_waiting");
	}
	client_list_rows(x, &x->w->login_clients, "cl_login");
	client_list_rows(x, &x->w->console_clients, "cl_active");
	list_for_each_safe(pos, tmp, &x->w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		server_rows(x, p, &p->sv_active, "sv_active");
		server_rows(x, p, &p->sv_idle, NULL);
		server_rows(x, p, &p->sv_resetting, "sv_tested");
		server_rows(x, p, &p->sv_connecting, "sv_login");
	}
	x->sockets = SOCKETS_NO;
	return ex_done(x, "SHOW");
}

static enum exec_result show_sockets(struct exec *x, const char *arg)
{
	(void)arg;
	return show_sockets_view(x, SOCKETS_ALL);
}

static enum exec_result show_active_sockets(struct exec *x, const char *arg)
{
	(void)arg;
	return show_sockets_view(x, SOCKETS_ACTIVE);
}

/* One SHOW USERS row. */
static void user_row(struct exec *x, const char *name)
{
	const struct config *cfg = worker_config(x->w);
	const struct user_def *ud = config_find_user(cfg, name);
	int servers = 0, clients = 0;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &x->w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		if (strcmp(p->server_user, name) == 0)
			servers += p->n_servers;
		if (strcmp(p->user, name) == 0)
			clients += (int)(p->n_cl_active + p->n_cl_waiting +
					 p->n_cl_login);
	}
	char pool_size[16] = "", reserve[16] = "";
	if (ud && ud->pool_size >= 0)
		snprintf(pool_size, sizeof(pool_size), "%9d", ud->pool_size); /* PgBouncer pads */
	if (ud && ud->reserve_pool_size >= 0)
		snprintf(reserve, sizeof(reserve), "%9d", ud->reserve_pool_size);
	struct out *o = x->o;
	out_row_begin(o, 8);
	out_text(o, name);
	out_text(o, pool_size);
	out_text(o, reserve);
	out_text(o, ud && ud->pool_mode >= 0 ? pool_mode_name(ud->pool_mode) : NULL);
	out_int(o, ud && ud->max_user_connections >= 0 ? ud->max_user_connections
						       : cfg->max_user_connections);
	out_int(o, servers);
	out_int(o, ud && ud->max_user_client_connections >= 0 ? ud->max_user_client_connections
							      : cfg->max_user_client_connections);
	out_int(o, clients);
	out_end(o);
}

/* Every user berth knows: auth_file (or DATABASE_URL), [users], and users of open pools. */
static size_t for_each_user(struct exec *x, void (*fn)(struct exec *, const char *))
{
	const struct config *cfg = worker_config(x->w);
	size_t n = 0;
	for (size_t i = 0; i < cfg->n_auth; i++, n++)
		if (fn)
			fn(x, cfg->auth[i].user);
	for (size_t i = 0; i < cfg->n_users; i++) {
		if (config_find_auth(cfg, cfg->users[i].name))
			continue;
		n++;
		if (fn)
			fn(x, cfg->users[i].name);
	}
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &x->w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		if (config_find_auth(cfg, p->user) || config_find_user(cfg, p->user))
			continue;
		bool seen = false; /* an earlier pool of the same user */
		for (struct list *q = x->w->pools.next; q != pos && !seen; q = q->next)
			seen = strcmp(list_entry(q, struct pool, node)->user, p->user) == 0;
		if (seen)
			continue;
		n++;
		if (fn)
			fn(x, p->user);
	}
	return n;
}

static enum exec_result show_users(struct exec *x, const char *arg)
{
	(void)arg;
	static const struct col cols[] = {
		{"name", OID_TEXT},
		{"pool_size", OID_TEXT},
		{"reserve_pool_size", OID_TEXT},
		{"pool_mode", OID_TEXT},
		{"max_user_connections", OID_INT4},
		{"current_connections", OID_INT4},
		{"max_user_client_connections", OID_INT4},
		{"current_client_connections", OID_INT4},
	};
	out_row_desc(x->o, cols, 8);
	for_each_user(x, user_row);
	return ex_done(x, "SHOW");
}

static size_t database_count(struct exec *x)
{
	const struct config *cfg = worker_config(x->w);
	size_t n = 0;
	for (size_t i = 0; i < cfg->n_dbs; i++)
		n += strcmp(cfg->dbs[i].name, "*") != 0;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &x->w->databases)
	{
		const struct database *db = list_entry(pos, struct database, node);
		n += !db->removed && strcmp(db->def->name, "*") == 0;
	}
	return n;
}

/* A name and a number: SHOW LISTS and SHOW TOTALS rows. */
static void list_row(struct out *o, const char *name, int64_t items)
{
	out_row_begin(o, 2);
	out_text(o, name);
	out_int(o, items);
	out_end(o);
}

static enum exec_result show_lists(struct exec *x, const char *arg)
{
	(void)arg;
	static const struct col cols[] = {{"list", OID_TEXT}, {"items", OID_INT4}};
	struct worker *w = x->w;
	int servers = pool_server_count(w, NULL);
	struct out *o = x->o;
	out_row_desc(o, cols, 2);
	/* The console's database and pool count, as in SHOW DATABASES and SHOW POOLS. */
	list_row(o, "databases", (int64_t)database_count(x) + 1);
	list_row(o, "users", (int64_t)for_each_user(x, NULL));
	list_row(o, "peers", 0);
	list_row(o, "pools", (int64_t)list_count(&w->pools) + 1);
	list_row(o, "peer_pools", 0);
	list_row(o, "free_clients", (int64_t)slab_free_count(&w->clients));
	list_row(o, "used_clients", (int64_t)w->clients.n_live);
	list_row(o, "login_clients", (int64_t)list_count(&w->login_clients));
	list_row(o, "free_servers", 0); /* servers are not kept on a freelist */
	list_row(o, "used_servers", servers);
	list_row(o, "dns_names", 0); /* evdns keeps no cache berth could list */
	list_row(o, "dns_zones", 0);
	list_row(o, "dns_queries", 0);
	list_row(o, "dns_pending", 0);
	return ex_done(x, "SHOW");
}

static enum exec_result show_state(struct exec *x, const char *arg)
{
	(void)arg;
	static const struct col cols[] = {{"key", OID_TEXT}, {"value", OID_TEXT}};
	struct worker *w = x->w;
	bool paused = w->pause_all && !w->suspended;
	const char *rows[][2] = {
		{"active", !w->pause_all && !w->suspended ? "yes" : "no"},
		{"paused", paused ? "yes" : "no"},
		{"suspended", w->suspended ? "yes" : "no"},
	};
	out_row_desc(x->o, cols, 2);
	for (size_t i = 0; i < 3; i++) {
		out_row_begin(x->o, 2);
		out_text(x->o, rows[i][0]);
		out_text(x->o, rows[i][1]);
		out_end(x->o);
	}
	return ex_done(x, "SHOW");
}

/* Lists berth does not keep (peers, a DNS cache): PgBouncer's columns and no rows. */
static enum exec_result no_rows(struct exec *x, const struct col *cols, size_t n)
{
	out_row_desc(x->o, cols, n);
	return ex_done(x, "SHOW");
}

/* berth has no peers ([peers] of PgBouncer). */
static enum exec_result show_peers(struct exec *x, const char *arg)
{
	(void)arg;
	static const struct col cols[] = {
		{"peer_id", OID_INT4},
		{"host", OID_TEXT},
		{"port", OID_INT4},
		{"pool_size", OID_INT4},
	};
	return no_rows(x, cols, ARRAY_SIZE(cols));
}

static enum exec_result show_peer_pools(struct exec *x, const char *arg)
{
	(void)arg;
	static const struct col cols[] = {{"peer_id", OID_INT4},
					  {"cl_active_cancel_req", OID_INT4},
					  {"cl_waiting_cancel_req", OID_INT4},
					  {"sv_active_cancel", OID_INT4},
					  {"sv_login", OID_INT4}};
	return no_rows(x, cols, ARRAY_SIZE(cols));
}

/* Databases with pools, in the order they were first used: the rows of SHOW STATS*. */
#define FOR_EACH_STATS_DB(x, db)                                                                   \
	for (struct list *pos_ = (x)->w->databases.next; pos_ != &(x)->w->databases;               \
	     pos_ = pos_->next)                                                                    \
		if (((db) = list_entry(pos_, struct database, node)), db_has_pools((x)->w, (db)))

static const struct col stats_cols[] = {
	{"database", OID_TEXT},
	{"total_server_assignment_count", OID_NUMERIC},
	{"total_xact_count", OID_NUMERIC},
	{"total_query_count", OID_NUMERIC},
	{"total_received", OID_NUMERIC},
	{"total_sent", OID_NUMERIC},
	{"total_xact_time", OID_NUMERIC},
	{"total_query_time", OID_NUMERIC},
	{"total_wait_time", OID_NUMERIC},
	{"total_client_parse_count", OID_NUMERIC},
	{"total_server_parse_count", OID_NUMERIC},
	{"total_bind_count", OID_NUMERIC},
	{"total_client_login_count", OID_NUMERIC},
	{"avg_server_assignment_count", OID_NUMERIC},
	{"avg_xact_count", OID_NUMERIC},
	{"avg_query_count", OID_NUMERIC},
	{"avg_recv", OID_NUMERIC},
	{"avg_sent", OID_NUMERIC},
	{"avg_xact_time", OID_NUMERIC},
	{"avg_query_time", OID_NUMERIC},
	{"avg_wait_time", OID_NUMERIC},
	{"avg_client_parse_count", OID_NUMERIC},
	{"avg_server_parse_count", OID_NUMERIC},
	{"avg_bind_count", OID_NUMERIC},
	{"avg_client_login_count", OID_NUMERIC},
};

static void out_totals(struct out *o, const struct pool_stats *t)
{
	out_uint(o, t->server_assignment_count);
	out_uint(o, t->xact_count);
	out_uint(o, t->query_count);
	out_uint(o, t->received);
	out_uint(o, t->sent);
	out_uint(o, t->xact_time_us);
	out_uint(o, t->query_time_us);
	out_uint(o, t->wait_time_us);
	out_uint(o, t->client_parse_count);
	out_uint(o, t->server_parse_count);
	out_uint(o, t->bind_count);
	out_uint(o, t->client_login_count);
}

/* Averages are whole numbers, as PgBouncer's integer arithmetic gives them. */
static void out_averages(struct out *o, const struct stats_averages *a)
{
	out_uint(o, (uint64_t)a->server_assignment_count);
	out_uint(o, (uint64_t)a->xact_count);
	out_uint(o, (uint64_t)a->query_count);
	out_uint(o, (uint64_t)a->recv);
	out_uint(o, (uint64_t)a->sent);
	out_uint(o, (uint64_t)a->xact_time_us);
	out_uint(o, (uint64_t)a->query_time_us);
	out_uint(o, (uint64_t)a->wait_time_us);
	out_uint(o, (uint64_t)a->client_parse_count);
	out_uint(o, (uint64_t)a->server_parse_count);
	out_uint(o, (uint64_t)a->bind_count);
	out_uint(o, (uint64_t)a->client_login_count);
}

/* One row per database: its totals, its averages, or both (SHOW STATS). */
static enum exec_result stats_rows(struct exec *x, const struct col *cols, size_t ncols,
				   bool totals, bool averages)
{
	struct database *db;
	out_row_desc(x->o, cols, ncols);
	FOR_EACH_STATS_DB(x, db)
	{
		out_row_begin(x->o, ncols);
		out_text(x->o, db->name);
		if (totals) {
			struct pool_stats t;
			stats_database_totals(x->w, db, &t);
			out_totals(x->o, &t);
		}
		if (averages) {
			struct stats_averages av;
			stats_database_averages(x->w, db, &av);
			out_averages(x->o, &av);
		}
		out_end(x->o);
	}
	/* The console's own commands and logins, as PgBouncer's admin pool counts them. */
	out_row_begin(x->o, ncols);
	out_text(x->o, CONSOLE_NAME);
	if (totals)
		out_totals(x->o, &x->w->console_stats);
	if (averages) {
		struct stats_averages av;
		stats_averages(x->w, &x->w->console_stats, &av);
		out_averages(x->o, &av);
	}
	out_end(x->o);
	return ex_done(x, "SHOW");
}

static enum exec_result show_stats(struct exec *x, const char *arg)
{
	(void)arg;
	return stats_rows(x, stats_cols, ARRAY_SIZE(stats_cols), true, true);
}

static enum exec_result show_stats_totals(struct exec *x, const char *arg)
{
	(void)arg;
	static const struct col cols[] = {
		{"database", OID_TEXT},
		{"server_assignment_count", OID_NUMERIC},
		{"xact_count", OID_NUMERIC},
		{"query_count", OID_NUMERIC},
		{"bytes_received", OID_NUMERIC},
		{"bytes_sent", OID_NUMERIC},
		{"xact_time", OID_NUMERIC},
		{"query_time", OID_NUMERIC},
		{"wait_time", OID_NUMERIC},
		{"client_parse_count", OID_NUMERIC},
		{"server_parse_count", OID_NUMERIC},
		{"bind_count", OID_NUMERIC},
		{"client_login_count", OID_NUMERIC},
	};
	return stats_rows(x, cols, ARRAY_SIZE(cols), true, false);
}

static enum exec_result show_stats_averages(struct exec *x, const char *arg)
{
	(void)arg;
	/* PgBouncer's names: the prepared-statement columns keep their avg_ prefix here. */
	static const struct col cols[] = {
		{"database", OID_TEXT},
		{"server_assignment_count", OID_NUMERIC},
		{"xact_count", OID_NUMERIC},
		{"query_count", OID_NUMERIC},
		{"bytes_received", OID_NUMERIC},
		{"bytes_sent", OID_NUMERIC},
		{"xact_time", OID_NUMERIC},
		{"query_time", OID_NUMERIC},
		{"wait_time", OID_NUMERIC},
		{"avg_client_parse_count", OID_NUMERIC},
		{"avg_server_parse_count", OID_NUMERIC},
		{"avg_bind_count", OID_NUMERIC},
		{"avg_client_login_count", OID_NUMERIC},
	};
	return stats_rows(x, cols, ARRAY_SIZE(cols), false, true);
}

/* SHOW TOTALS: SHOW STATS summed over all databases, a row per figure, PgBouncer's names. */
static enum exec_result show_totals(struct exec *x, const char *arg)
{
	(void)arg;
	static const struct col cols[] = {{"name", OID_TEXT}, {"value", OID_NUMERIC}};
	struct pool_stats t;
	struct stats_averages a;
	stats_database_totals(x->w, NULL, &t);
	stats_database_averages(x->w, NULL, &a);
	const struct {
		const char *name;
		uint64_t value;
	} rows[] = {
		{"total_server_assignment_count", t.server_assignment_count},
		{"total_xact_count", t.xact_count},
		{"total_query_count", t.query_count},
		{"total_client_bytes", t.received},
		{"total_server_bytes", t.sent},
		{"total_xact_time", t.xact_time_us},
		{"total_query_time", t.query_time_us},
		{"total_wait_time", t.wait_time_us},
		{"total_ps_client_parse_count", t.client_parse_count},
		{"total_ps_server_parse_count", t.server_parse_count},
		{"total_ps_bind_count", t.bind_count},
		{"total_client_login_count", t.client_login_count},
		{"avg_server_assignment_count", (uint64_t)a.server_assignment_count},
		{"avg_xact_count", (uint64_t)a.xact_count},
		{"avg_query_count", (uint64_t)a.query_count},
		{"avg_client_bytes", (uint64_t)a.recv},
		{"avg_server_bytes", (uint64_t)a.sent},
		{"avg_xact_time", (uint64_t)a.xact_time_us},
		{"avg_query_time", (uint64_t)a.query_time_us},
		{"avg_wait_time", (uint64_t)a.wait_time_us},
		{"avg_ps_client_parse_count", (uint64_t)a.client_parse_count},
		{"avg_ps_server_parse_count", (uint64_t)a.server_parse_count},
		{"avg_ps_bind_count", (uint64_t)a.bind_count},
		{"avg_client_login_count", (uint64_t)a.client_login_count},
	};
	out_row_desc(x->o, cols, 2);
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
		list_row(x->o, rows[i].name, (int64_t)rows[i].value);
	return ex_done(x, "SHOW");
}

/*
 * SHOW MEM: berth's own object caches. Clients and I/O buffers come from
 * freelists (used and free); servers, pools and databases are allocated
 * one by one, so they have no free count.
 */
static void mem_row(struct out *o, const char *name, size_t size, size_t used, size_t free_)
{
	out_row_begin(o, 5);
	out_text(o, name);
	out_int(o, (int64_t)size);
	out_int(o, (int64_t)used);
	out_int(o, (int64_t)free_);
	out_int(o, (int64_t)(size * (used + free_)));
	out_end(o);
}

static enum exec_result show_mem(struct exec *x, const char *arg)
{
	(void)arg;
	static const struct col cols[] = {{"name", OID_TEXT},
					  {"size", OID_INT4},
					  {"used", OID_INT4},
					  {"free", OID_INT4},
					  {"memtotal", OID_INT4}};
	struct worker *w = x->w;
	out_row_desc(x->o, cols, 5);
	mem_row(x->o, "db_cache", sizeof(struct database), list_count(&w->databases), 0);
	mem_row(x->o, "pool_cache", sizeof(struct pool), list_count(&w->pools), 0);
	mem_row(x->o, "server_cache", sizeof(struct server), (size_t)pool_server_count(w, NULL), 0);
	mem_row(x->o, "client_cache", w->clients.obj_size, w->clients.n_live,
		slab_free_count(&w->clients));
	mem_row(x->o, "iobuf_cache", sizeof(struct iobuf) + w->pkt_buf,
		w->n_iobufs - w->n_free_iobufs, w->n_free_iobufs);
	return ex_done(x, "SHOW");
}

/* berth resolves through libpq and keeps no DNS cache. */
static enum exec_result show_dns_hosts(struct exec *x, const char *arg)
{
	(void)arg;
	static const struct col cols[] = {
		{"hostname", OID_TEXT}, {"ttl", OID_INT8}, {"addrs", OID_TEXT}};
	return no_rows(x, cols, ARRAY_SIZE(cols));
}

static enum exec_result show_dns_zones(struct exec *x, const char *arg)
{
	(void)arg;
	static const struct col cols[] = {
		{"zonename", OID_TEXT}, {"serial", OID_INT8}, {"count", OID_INT4}};
	return no_rows(x, cols, ARRAY_SIZE(cols));
}

/* PgBouncer's SHOW FDS exists for online restart (takeover), which berth does not do. */
static enum exec_result show_fds(struct exec *x, const char *arg)
{
	(void)arg;
	return ex_error(x, ERR_FEATURE_NOT_SUPPORTED,
			"SHOW FDS is not supported: berth has no online restart (takeover)");
}

/*
 * Session parameters some drivers SHOW or SET on any connection: answered
 * with fixed values (SET is ignored), so they work on the console too.
 */
static const struct {
	const char *name, *value;
} fake_params[] = {
	{"client_encoding", "UTF-8"},
	{"default_transaction_isolation", "read committed"},
	{"standard_conforming_strings", "on"},
	{"datestyle", "ISO"},
	{"timezone", "GMT"},
	{"extra_float_digits", "2"},
};

static int fake_param(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(fake_params); i++)
		if (strcasecmp(name, fake_params[i].name) == 0)
			return (int)i;
	return -1;
}

typedef enum exec_result (*cmd_fn)(struct exec *x, const char *arg);

struct command {
	const char *word;
	cmd_fn fn;
};

static const struct command show_commands[] = {
	{"help", show_help},
	{"config", show_config},
	{"databases", show_databases},
	{"pools", show_pools},
	{"clients", show_clients},
	{"servers", show_servers},
	{"users", show_users},
	{"lists", show_lists},
	{"version", show_version},
	{"stats", show_stats},
	{"stats_totals", show_stats_totals},
	{"stats_averages", show_stats_averages},
	{"state", show_state},
	{"peers", show_peers},
	{"peer_pools", show_peer_pools},
	{"health", show_health},
	{"sockets", show_sockets},
	{"active_sockets", show_active_sockets},
	{"totals", show_totals},
	{"mem", show_mem},
	{"dns_hosts", show_dns_hosts},
	{"dns_zones", show_dns_zones},
	{"fds", show_fds},
};

static enum exec_result cmd_show(struct exec *x, const char *arg)
{
	if (!arg[0])
		return show_help(x, arg);
	int f = fake_param(arg);
	if (f >= 0) {
		struct col col = {fake_params[f].name, OID_TEXT};
		out_row_desc(x->o, &col, 1);
		out_row_begin(x->o, 1);
		out_text(x->o, fake_params[f].value);
		out_end(x->o);
		return ex_done(x, "SHOW");
	}
	for (size_t i = 0; i < ARRAY_SIZE(show_commands); i++)
		if (strcasecmp(arg, show_commands[i].word) == 0)
			return show_commands[i].fn(x, arg);
	return syntax_error(x);
}

/* ---- control commands ----------------------------------------------------------------- */

/* The database a command names; NULL after an error was written. */
static struct database *target_db(struct exec *x, const char *arg, const char *verb)
{
	if (admin_is_console_db(arg)) {
		ex_error(x, ERR_CONSOLE, "cannot %s admin db: %s", verb, arg);
		return NULL;
	}
	struct database *db = pool_find_database(x->w, arg);
	if (!db)
		ex_error(x, ERR_CONSOLE, "no such database: %s", arg);
	return db;
}

static enum exec_result start_wait(struct exec *x, enum console_wait what, struct database *db)
{
	x->con->wait = what;
	x->con->wait_db = db;
	return EX_WAIT;
}

static enum exec_result cmd_pause(struct exec *x, const char *arg)
{
	if (!x->con->admin)
		return need_admin(x);
	if (x->w->pause_all || x->w->suspended)
		return ex_error(x, ERR_CONSOLE, "already suspended/paused");
	struct database *db = NULL;
	if (arg[0] && !(db = target_db(x, arg, "pause")))
		return EX_ERROR;
	if (db) {
		log_info("PAUSE %s command issued", db->name);
		pool_pause(x->w, db);
	} else {
		log_info("PAUSE command issued");
		(void)admin_pause_all(x->w);
	}
	if (pool_server_count(x->w, db) == 0)
		return ex_done(x, "PAUSE");
	return start_wait(x, CW_PAUSE, db);
}

/* Sockets of every pooled client and server read again (SUSPEND ends). */
static void unsuspend_sockets(struct worker *w)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->all_clients)
	{
		struct client *c = list_entry(pos, struct client, all_node);
		if (c->state != CL_CLOSED && c->state != CL_CONSOLE)
			sbuf_set_suspended(&c->sb, false);
	}
	list_for_each_safe(pos, tmp, &w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		struct list *lists[] = {&p->sv_active, &p->sv_idle, &p->sv_resetting};
		for (size_t i = 0; i < ARRAY_SIZE(lists); i++)
			for (struct list *sp = lists[i]->next; sp != lists[i]; sp = sp->next) {
				struct server *s = list_entry(sp, struct server, node);
				if (s->sb.fd >= 0)
					sbuf_set_suspended(&s->sb, false);
			}
	}
}

static void resume_suspended(struct worker *w)
{
	unsuspend_sockets(w);
	pool_set_suspended(w, false);
}

bool admin_pause_all(struct worker *w)
{
	if (w->pause_all || w->suspended)
		return false;
	pool_pause(w, NULL);
	return true;
}

const char *admin_resume_all(struct worker *w)
{
	if (w->rt->shutting_down)
		return "pooler is shutting down";
	if (!w->pause_all && !w->suspended)
		return "pooler is not paused/suspended";
	if (w->suspended)
		resume_suspended(w);
	if (w->pause_all)
		pool_resume(w, NULL);
	return NULL;
}

static enum exec_result cmd_resume(struct exec *x, const char *arg)
{
	if (!x->con->admin)
		return need_admin(x);
	struct worker *w = x->w;
	if (!arg[0]) {
		log_info("RESUME command issued");
		const char *why = admin_resume_all(w);
		return why ? ex_error(x, ERR_CONSOLE, "%s", why) : ex_done(x, "RESUME");
	}
	log_info("RESUME '%s' command issued", arg);
	struct database *db = existing_db(w, arg);
	if (!db)
		return ex_error(x, ERR_CONSOLE, "no such database: %s", arg);
	if (!db->paused)
		return ex_error(x, ERR_CONSOLE, "database %s is not paused", arg);
	pool_resume(w, db);
	return ex_done(x, "RESUME");
}

/* Every pooled socket has sent all it holds (SUSPEND is done). */
static bool sockets_drained(struct worker *w)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->all_clients)
	{
		struct client *c = list_entry(pos, struct client, all_node);
		if (c->state != CL_CLOSED && c->state != CL_CONSOLE && sbuf_has_pending(&c->sb))
			return false;
	}
	list_for_each_safe(pos, tmp, &w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		struct list *lists[] = {&p->sv_active, &p->sv_idle, &p->sv_resetting};
		for (size_t i = 0; i < ARRAY_SIZE(lists); i++)
			for (struct list *sp = lists[i]->next; sp != lists[i]; sp = sp->next)
				if (sbuf_has_pending(&list_entry(sp, struct server, node)->sb))
					return false;
	}
	return true;
}

static enum exec_result cmd_suspend(struct exec *x, const char *arg)
{
	if (arg[0])
		return syntax_error(x);
	if (!x->con->admin)
		return need_admin(x);
	struct worker *w = x->w;
	if (w->pause_all || w->suspended)
		return ex_error(x, ERR_CONSOLE, "already suspended/paused");
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->databases)
	{
		if (list_entry(pos, struct database, node)->paused)
			return ex_error(x, ERR_CONSOLE, "cannot suspend with paused databases");
	}
	log_info("SUSPEND command issued");
	pool_set_suspended(w, true);
	list_for_each_safe(pos, tmp, &w->all_clients)
	{
		struct client *c = list_entry(pos, struct client, all_node);
		if (c->state != CL_CLOSED && c->state != CL_CONSOLE)
			sbuf_set_suspended(&c->sb, true);
	}
	list_for_each_safe(pos, tmp, &w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		struct list *lists[] = {&p->sv_active, &p->sv_idle, &p->sv_resetting};
		for (size_t i = 0; i < ARRAY_SIZE(lists); i++)
			for (struct list *sp = lists[i]->next; sp != lists[i]; sp = sp->next) {
				struct server *s = list_entry(sp, struct server, node);
				if (s->sb.fd >= 0)
					sbuf_set_suspended(&s->sb, true);
			}
	}
	if (sockets_drained(w))
		return ex_done(x, "SUSPEND");
	return start_wait(x, CW_SUSPEND, NULL);
}

static enum exec_result cmd_enable_disable(struct exec *x, const char *arg, bool disable)
{
	const char *verb = disable ? "disable" : "enable";
	if (!x->con->admin)
		return need_admin(x);
	if (!arg[0])
		return ex_error(x, ERR_CONSOLE, "a database is required");
	log_info("%s '%s' command issued", disable ? "DISABLE" : "ENABLE", arg);
	struct database *db = target_db(x, arg, verb);
	if (!db)
		return EX_ERROR;
	pool_set_disabled(db, disable);
	return ex_done(x, disable ? "DISABLE" : "ENABLE");
}

static enum exec_result cmd_disable(struct exec *x, const char *arg)
{
	return cmd_enable_disable(x, arg, true);
}

static enum exec_result cmd_enable(struct exec *x, const char *arg)
{
	return cmd_enable_disable(x, arg, false);
}

static enum exec_result cmd_reload(struct exec *x, const char *arg)
{
	if (arg[0])
		return syntax_error(x);
	if (!x->con->admin)
		return need_admin(x);
	log_info("RELOAD command issued");
	char err[512] = "";
	if (!runtime_reload(x->w->rt, err, sizeof(err)))
		return ex_error(x, ERR_CONSOLE_RELOAD, "RELOAD failed: %s", err);
	return ex_done(x, "RELOAD");
}

static enum exec_result cmd_reconnect(struct exec *x, const char *arg)
{
	if (!x->con->admin)
		return need_admin(x);
	struct database *db = NULL;
	if (arg[0] && !(db = target_db(x, arg, "reconnect")))
		return EX_ERROR;
	log_info("RECONNECT%s%s command issued", db ? " " : "", db ? db->name : "");
	pool_reconnect(x->w, db);
	return ex_done(x, "RECONNECT");
}

static enum exec_result cmd_kill(struct exec *x, const char *arg)
{
	if (!x->con->admin)
		return need_admin(x);
	if (x->w->pause_all || x->w->suspended)
		return ex_error(x, ERR_CONSOLE, "already suspended/paused");
	struct database *db = NULL;
	if (arg[0] && !(db = target_db(x, arg, "kill")))
		return EX_ERROR;
	log_info("KILL%s%s command issued", db ? " " : "", db ? db->name : "");
	pool_kill(x->w, db, "database removed");
	return ex_done(x, "KILL");
}

static enum exec_result cmd_kill_client(struct exec *x, const char *arg)
{
	if (!x->con->admin)
		return need_admin(x);
	char *end = NULL;
	unsigned long long id = strtoull(arg, &end, 10);
	if (!arg[0] || !end || *end || !isdigit((unsigned char)arg[0]))
		return ex_error(x, ERR_CONSOLE, "invalid client pointer supplied");
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &x->w->all_clients)
	{
		struct client *t = list_entry(pos, struct client, all_node);
		if (t->id != id || t->state <= CL_AUTH || t->state == CL_CLOSED)
			continue;
		log_info("KILL_CLIENT %llu command issued", id);
		pool_kill_client(t, "admin forced disconnect");
		if (t == x->c)
			return EX_CLOSED;
		return ex_done(x, "KILL_CLIENT");
	}
	return ex_error(x, ERR_CONSOLE, "client not found");
}

static enum exec_result cmd_wait_close(struct exec *x, const char *arg)
{
	if (!x->con->admin)
		return need_admin(x);
	struct database *db = NULL;
	if (arg[0] && !(db = target_db(x, arg, "wait in")))
		return EX_ERROR;
	log_info("WAIT_CLOSE%s%s command issued", db ? " " : "", db ? db->name : "");
	if (pool_close_needed_count(x->w, db) == 0)
		return ex_done(x, "WAIT_CLOSE");
	return start_wait(x, CW_WAIT_CLOSE, db);
}

static enum exec_result cmd_shutdown(struct exec *x, const char *arg)
{
	enum shutdown_mode mode = SHUTDOWN_IMMEDIATE;
	if (strcasecmp(arg, "wait_for_clients") == 0)
		mode = SHUTDOWN_WAIT_CLIENTS;
	else if (strcasecmp(arg, "wait_for_servers") == 0)
		mode = SHUTDOWN_WAIT_SERVERS;
	else if (arg[0])
		return syntax_error(x);
	if (!x->con->admin)
		return need_admin(x);
	log_info("SHUTDOWN%s%s command issued", arg[0] ? " " : "", arg);
	runtime_shutdown(x->w->rt, mode);
	/* As PgBouncer: an immediate shutdown answers nothing; the connection ends with berth. */
	if (mode == SHUTDOWN_IMMEDIATE)
		return EX_SILENT;
	return ex_done(x, "SHUTDOWN");
}

/*
 * SET client_tls_*: the TLS context is built again from the new values at
 * once, as PgBouncer does. Setting the files one at a time passes through
 * states that do not fit together (a new key beside the old certificate):
 * then the previous context stays in use and a warning says so, until the
 * last piece arrives. client_tls_sslmode itself is refused unless the
 * settings make a working context, so it never promises TLS that is not there.
 */
static enum exec_result cmd_set_client_tls(struct exec *x, size_t i, const char *name,
					   const char *value)
{
	struct config *cfg = x->w->rt->cfg;
	char old[300], err[512];
	config_key_format(cfg, i, old, sizeof(old));
	if (!config_key_set(cfg, i, value, err, sizeof(err)))
		return ex_error(x, ERR_CONSOLE, "SET failed: %s", err);
	if (!config_client_tls_rebuild(cfg, err, sizeof(err))) {
		if (strcmp(name, "client_tls_sslmode") == 0) {
			char again[512];
			if (!config_key_set(cfg, i, old, again, sizeof(again))) /* it held this value */
				log_warn("SET %s: could not restore \"%s\": %s", name, old, again);
			return ex_error(x, ERR_CONSOLE, "SET failed: %s", err);
		}
		log_warn("SET %s: %s; client TLS goes on as before until the settings fit together",
			 name, err);
	}
	char shown[300], tag[400];
	config_key_format(cfg, i, shown, sizeof(shown));
	log_info("SET %s=%s", name, shown);
	snprintf(tag, sizeof(tag), "SET %s=%s", name, shown);
	return ex_done(x, tag);
}

static enum exec_result cmd_set(struct exec *x, const char *key, const char *value)
{
	int f = fake_param(key);
	if (f >= 0) {
		out_report(x->o, 'N', "NOTICE", "00000", "SET ignored", NULL);
		return ex_done(x, "SET");
	}
	if (!x->con->admin)
		return need_admin(x);
	int i = config_key_lookup(key);
	if (i < 0)
		return ex_error(x, ERR_CONSOLE, "unknown setting: %s", key);
	const char *name = config_key_name((size_t)i);
	if (!(config_key_flags((size_t)i) & CF_RELOAD))
		return ex_error(x, ERR_CONSOLE, "setting %s needs a restart", name);
	if (strcmp(name, "auth_file") == 0 || strcmp(name, "auth_hba_file") == 0)
		return ex_error(x, ERR_CONSOLE, "setting %s is read by RELOAD: "
						"change the configuration file", name);
	if (strcmp(name, "auth_type") == 0 && strcasecmp(value, "hba") == 0 && !worker_config(x->w)->hba)
		return ex_error(x, ERR_CONSOLE, "SET failed: auth_type hba needs auth_hba_file, which "
						"is read at start and by RELOAD: set both in the configuration file");
	if (strncmp(name, "client_tls", 10) == 0)
		return cmd_set_client_tls(x, (size_t)i, name, value);
	if (strcmp(name, "auth_type") == 0 && strcasecmp(value, "cert") == 0 &&
	    worker_config(x->w)->client_tls_sslmode < TLS_VERIFY_CA)
		return ex_error(x, ERR_CONSOLE, "SET failed: auth_type cert needs client_tls_sslmode "
						"verify-ca or verify-full");
	char err[512], before[300], shown[300], tag[400];
	config_key_format(x->w->rt->cfg, (size_t)i, before, sizeof(before));
	if (!config_key_set(x->w->rt->cfg, (size_t)i, value, err, sizeof(err)))
		return ex_error(x, ERR_CONSOLE, "SET failed: %s", err);
	const struct config *cfg = worker_config(x->w);
	log_configure(cfg); /* log_level, log_format, logfile, syslog*: apply at once */
	pool_reconfigure(x->w, NULL, cfg); /* sizes and limits of the open pools, as a reload does */
	runtime_fit_fd_limit(cfg);         /* a larger max_client_conn may need more open files */
	config_key_format(cfg, (size_t)i, shown, sizeof(shown)); /* masks secrets */
	if (strncmp(name, "server_tls", 10) == 0 && strcmp(before, shown) != 0) {
		/* Servers logged in with the old TLS settings go, as after a reload. */
		log_info("SET %s: server TLS settings changed, reconnecting", name);
		pool_reconnect(x->w, NULL);
	}
	log_info("SET %s=%s", name, shown);
	snprintf(tag, sizeof(tag), "SET %s=%s", name, shown);
	return ex_done(x, tag);
}

static const struct command commands[] = {
	{"show", cmd_show},
	{"select", cmd_show}, /* PgBouncer's alias */
	{"pause", cmd_pause},
	{"resume", cmd_resume},
	{"suspend", cmd_suspend},
	{"disable", cmd_disable},
	{"enable", cmd_enable},
	{"reload", cmd_reload},
	{"reconnect", cmd_reconnect},
	{"kill", cmd_kill},
	{"kill_client", cmd_kill_client},
	{"wait_close", cmd_wait_close},
	{"shutdown", cmd_shutdown},
};

/* Run one statement (without its ';'); empty ones do nothing. */
static enum exec_result run_one(struct exec *x, const char *stmt, size_t len, bool *ran)
{
	while (len > 0 && is_space(*stmt)) {
		stmt++;
		len--;
	}
	while (len > 0 && is_space(stmt[len - 1]))
		len--;
	if (len == 0)
		return EX_DONE;
	*ran = true;
	x->stmt = stmt;
	x->stmt_len = len;
	struct admin_cmd cmd;
	if (!admin_parse(stmt, len, &cmd))
		return syntax_error(x);
	if (cmd.is_set)
		return cmd_set(x, cmd.arg, cmd.value);
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (strcmp(cmd.verb, commands[i].word) == 0)
			return commands[i].fn(x, cmd.arg);
	return syntax_error(x);
}

/*
 * Run the statements of sql in order until one fails, waits or closes.
 * A waiting command keeps the statements after it in con->rest.
 */
static enum exec_result run_statements(struct exec *x, const char *sql, size_t len, bool *ran)
{
	size_t pos = 0;
	while (pos < len) {
		size_t n = admin_statement_len(sql + pos, len - pos);
		enum exec_result r = run_one(x, sql + pos, n, ran);
		pos += n < len - pos ? n + 1 : n;
		if (r == EX_WAIT && pos < len) {
			x->con->rest = strndup(sql + pos, len - pos);
			if (!x->con->rest) {
				x->o->failed = true;
				return EX_ERROR;
			}
		}
		if (r != EX_DONE)
			return r;
	}
	return EX_DONE;
}

/* End a Query's reply: ReadyForQuery unless the Query waits or ended the session; send it. */
static void finish(struct exec *x, enum exec_result r, bool ran)
{
	if (r == EX_CLOSED) {
		out_free(x->o);
		return;
	}
	if (r == EX_DONE && !ran) {
		out_begin(x->o, 'I'); /* EmptyQueryResponse */
		out_end(x->o);
	}
	if (r == EX_DONE || r == EX_ERROR)
		out_ready(x->o);
	console_send(x->c, x->o);
}

static enum sbuf_action handle_query(struct client *c, const struct pkt_hdr *hdr,
				     const uint8_t *data)
{
	const char *sql = (const char *)data + PKT_HDR_LEN;
	size_t len = strnlen(sql, hdr->total_len - PKT_HDR_LEN);
	struct out o = {0};
	struct exec x = {.c = c, .con = c->console, .w = c->w, .o = &o};
	bool ran = false;
	log_debug("C-%llu: console query: %.*s", (unsigned long long)c->id,
		  (int)(len > 200 ? 200 : len), sql);
	enum exec_result r = run_statements(&x, sql, len, &ran);
	finish(&x, r, ran);
	return c->state == CL_CLOSED ? SB_CLOSED : SB_SKIP;
}

/* The waiting command is done (or gave up with an error): answer it, run the rest of its Query. */
static void wait_done(struct client *c, const char *tag, const char *err)
{
	struct console *con = c->console;
	struct out o = {0};
	struct exec x = {.c = c, .con = con, .w = c->w, .o = &o};
	con->wait = CW_NONE;
	con->wait_db = NULL;
	char *rest = con->rest;
	con->rest = NULL;
	enum exec_result r = EX_DONE;
	bool ran = true;
	if (err) {
		r = ex_error(&x, ERR_CONSOLE_CANCELED, "%s", err);
	} else {
		out_complete(&o, tag);
		if (rest)
			r = run_statements(&x, rest, strlen(rest), &ran);
	}
	free(rest);
	finish(&x, r, true);
	/* Messages that came while it waited. */
	if (c->state == CL_CONSOLE && con->wait == CW_NONE)
		sbuf_resume(&c->sb);
}

/* ---- entry points ----------------------------------------------------------------------- */

bool admin_login(struct client *c)
{
	const struct config *cfg = worker_config(c->w);
	bool trusted = admin_peer_trusted(c);
	bool admin = trusted || in_list(cfg->admin_users, c->user);
	if (!admin && !in_list(cfg->stats_users, c->user)) {
		/* PgBouncer's words and code, with the reason as detail. */
		char detail[200];
		struct out o = {0};
		snprintf(detail, sizeof(detail),
			 "user \"%.64s\" is in neither admin_users nor stats_users", c->user);
		out_report(&o, 'E', "FATAL", ERR_CONSOLE, "not allowed", detail);
		if (console_send(c, &o))
			client_close(c, "console: not allowed");
		return false;
	}
	struct console *con = calloc(1, sizeof(*con));
	if (!con) {
		client_fail(c, ERR_INTERNAL, "out of memory");
		return false;
	}
	snprintf(con->user, sizeof(con->user), "%s", c->user);
	snprintf(con->database, sizeof(con->database), "%s", c->database);
	con->admin = admin;
	c->console = con;
	c->user = con->user;
	c->database = con->database;

	struct out o = {0};
	out_param(&o, "server_version", PACKAGE_VERSION "/berth");
	out_param(&o, "client_encoding", "UTF8");
	out_param(&o, "server_encoding", "UTF8");
	out_param(&o, "DateStyle", "ISO");
	out_param(&o, "TimeZone", "GMT");
	out_param(&o, "standard_conforming_strings", "on");
	out_param(&o, "is_superuser", "on");
	out_param(&o, "integer_datetimes", "on");
	out_begin(&o, 'K');
	out_u32(&o, c->cancel_pid);
	out_u32(&o, c->cancel_key);
	out_end(&o);
	out_ready(&o);
	if (!console_send(c, &o))
		return false;
	c->w->console_stats.client_login_count++;
	if (cfg->log_connections)
		log_info("C-%llu: console login %s/%s (%s)%s", (unsigned long long)c->id,
			 con->database, con->user, admin ? "admin" : "stats",
			 trusted ? " from the unix socket" : "");
	return true;
}

/* An extended-protocol message: one error, then skip until Sync as PostgreSQL would. */
static enum sbuf_action refuse_extended(struct client *c)
{
	struct console *con = c->console;
	if (con->skip_until_sync)
		return SB_SKIP;
	struct out o = {0};
	out_report(&o, 'E', "ERROR", ERR_CONSOLE,
		   "extended query protocol not supported by admin console", NULL);
	con->skip_until_sync = true;
	return console_send(c, &o) ? SB_SKIP : SB_CLOSED;
}

enum sbuf_action admin_on_message(struct client *c, const struct pkt_hdr *hdr,
				  const uint8_t *data, size_t avail)
{
	struct console *con = c->console;
	if (con->wait != CW_NONE)
		return SB_PAUSE; /* one command at a time: the rest waits for its answer */
	switch (hdr->type) {
	case 'Q':
		if (con->skip_until_sync)
			return SB_SKIP; /* "Extended Query": everything up to Sync is discarded */
		if (avail < hdr->total_len)
			return SB_NEED_FULL;
		/* Counted before it runs, as PgBouncer does: SHOW STATS sees itself. */
		c->w->console_stats.xact_count++;
		c->w->console_stats.query_count++;
		return handle_query(c, hdr, data);
	case 'X':
		client_close(c, "client terminated");
		return SB_CLOSED;
	case 'P':
	case 'B':
	case 'D':
	case 'E':
	case 'C':
		return refuse_extended(c);
	case 'H':
		return SB_SKIP; /* Flush: nothing is pending */
	case 'S': {
		struct out o = {0};
		con->skip_until_sync = false;
		out_ready(&o);
		return console_send(c, &o) ? SB_SKIP : SB_CLOSED;
	}
	case 'd':
	case 'c':
	case 'f':
		return SB_SKIP; /* COPY data with no COPY running: nothing to do */
	default: {
		struct out o = {0};
		char msg[80];
		snprintf(msg, sizeof(msg), "unsupported packet type for admin console: %c",
			 hdr->type >= 32 && hdr->type < 127 ? hdr->type : '?');
		out_report(&o, 'E', "ERROR", ERR_CONSOLE, msg, NULL);
		out_ready(&o);
		return console_send(c, &o) ? SB_SKIP : SB_CLOSED;
	}
	}
}

void admin_cancel(struct client *c)
{
	struct console *con = c->console;
	if (!con || con->wait == CW_NONE)
		return; /* nothing runs: as PostgreSQL, a late cancel does nothing */
	struct worker *w = c->w;
	switch (con->wait) {
	case CW_PAUSE:
		/* ^C on PAUSE: the pause it started ends, as in PgBouncer. */
		if (con->wait_db ? db_alive(w, con->wait_db) && con->wait_db->paused
				 : w->pause_all)
			pool_resume(w, con->wait_db);
		break;
	case CW_SUSPEND:
		if (w->suspended)
			resume_suspended(w);
		break;
	case CW_WAIT_CLOSE:
	case CW_NONE:
		break;
	}
	log_info("C-%llu: console command cancelled", (unsigned long long)c->id);
	wait_done(c, NULL, "canceling statement due to user request");
}

void admin_session_free(struct client *c)
{
	struct console *con = c->console;
	if (!con)
		return;
	struct worker *w = c->w;
	free(con->rest);
	free(con);
	c->console = NULL;
	/* Nobody left to RESUME a suspended berth: do it (PgBouncer does the same). */
	if (w->suspended && list_empty(&w->console_clients) && !w->rt->shutting_down) {
		log_info("admin disappeared when suspended, doing RESUME");
		resume_suspended(w);
	}
}

/* Is the command c waits for done? *err is set when it can no longer be. */
static bool wait_finished(struct client *c, const char **err)
{
	struct console *con = c->console;
	struct worker *w = c->w;
	*err = NULL;
	if (con->wait_db && !db_alive(w, con->wait_db))
		return true; /* a reload removed it and it drained: no server of it is left */
	switch (con->wait) {
	case CW_NONE:
		return false;
	case CW_PAUSE:
		if (!(con->wait_db ? con->wait_db->paused : w->pause_all))
			*err = "PAUSE ended by RESUME before it completed";
		return *err || pool_server_count(w, con->wait_db) == 0;
	case CW_SUSPEND:
		if (!w->suspended)
			*err = "SUSPEND ended by RESUME before it completed";
		return *err || sockets_drained(w);
	case CW_WAIT_CLOSE:
		return pool_close_needed_count(w, con->wait_db) == 0;
	}
	return false;
}

static const char *wait_tag(enum console_wait wait)
{
	return wait == CW_PAUSE ? "PAUSE" : wait == CW_SUSPEND ? "SUSPEND" : "WAIT_CLOSE";
}

void admin_janitor(struct worker *w)
{
	/*
	 * Answering runs the statements that followed and the messages that came
	 * meanwhile, which may close other consoles: walk again after each answer.
	 */
	bool again = true;
	while (again) {
		again = false;
		for (struct list *pos = w->console_clients.next; pos != &w->console_clients;
		     pos = pos->next) {
			struct client *c = list_entry(pos, struct client, node);
			const char *err;
			if (!wait_finished(c, &err))
				continue;
			wait_done(c, wait_tag(c->console->wait), err);
			again = true;
			break;
		}
	}
}
