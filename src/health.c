/*
 * health.c - the upstream health loop: per [databases] entry, log in through
 * upstream.c (evdns + PQconnectPoll on the loop), run SELECT 1 with
 * PQsendQuery/PQconsumeInput/PQisBusy/PQgetResult driven by socket events,
 * close, and schedule the next check (health_check_period while up, jittered
 * backoff while down). Must not block the loop, borrow a pool's server
 * connection, or keep a password anywhere but in the login it hands libpq.
 *
 * Each check opens a fresh connection and closes it afterwards, rather than
 * keeping one open between checks: an idle open connection only proves that
 * one old session still exists, while what the pools need from the upstream
 * is that a new login works (DNS, TCP, TLS, pg_hba, password, max_connections,
 * the database itself). The price is one backend start per period (5 s by
 * default), small next to the pools' own logins, and no backend slot held
 * between checks (pg_stat_activity shows application_name berth-health only
 * while a check runs).
 */
#include "health.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "list.h"
#include "log.h"
#include "pool.h"
#include "runtime.h"
#include "upstream.h"

#define HEALTH_APPLICATION_NAME "berth-health"

enum check_phase {
	CHECK_IDLE = 0,   /* waiting for the timer to start the next check */
	CHECK_LOGIN,      /* upstream_connect in progress (DNS, libpq login) */
	CHECK_QUERY,      /* SELECT 1 sent or being sent, reading the result */
};

/* One entry's loop: its public status and the check in flight. */
struct target {
	struct list node;             /* health->targets, config order */
	struct health *h;
	struct health_status st;
	enum check_phase phase;
	struct upstream_conn *up;     /* CHECK_LOGIN, CHECK_QUERY */
	PGconn *conn;                 /* CHECK_QUERY: owned by up */
	struct event ev_timer;        /* CHECK_IDLE: next check; otherwise health_check_timeout */
	struct event ev_sock;         /* CHECK_QUERY: readiness of PQsocket */
	bool ev_sock_set;
	bool flushing;                /* PQflush has not sent the whole query yet */
	bool got_row;                 /* the result held SELECT 1's "1" */
	char query_error[256];        /* an error result, kept until the results end */
	const char *secret;           /* secret_copy, or NULL: scrubbed from error texts */
	char *secret_copy;            /* the login's password while a check runs (wiped after) */
	int64_t started_mono_us;
	uint32_t host_offset;         /* several hosts: start here; a failed check moves it on */
	bool seen;                    /* reconfigure: still in the config */
};

struct health {
	struct worker *w;
	struct list targets;          /* struct target */
	const struct config *cfg_seen; /* the config the targets were last matched against */
	uint64_t rng;                 /* xorshift64* state, for jitter */
};

static void target_start(struct target *t);

static int64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t next_random(struct health *h)
{
	/* xorshift64*: jitter needs spread between processes, not secrecy. */
	h->rng ^= h->rng >> 12;
	h->rng ^= h->rng << 25;
	h->rng ^= h->rng >> 27;
	return h->rng * UINT64_C(2685821657736338717);
}

int64_t health_backoff_us(uint32_t failures, int64_t max_us, uint64_t rnd)
{
	int64_t step = HEALTH_BACKOFF_START_US;
	for (uint32_t i = 1; i < failures && step < max_us; i++)
		step *= 2;
	if (step > max_us)
		step = max_us;
	if (step < 1)
		step = 1;
	/* Equal jitter: many berths that lost the same upstream do not retry in step. */
	int64_t half = step / 2;
	return step - half + (int64_t)(rnd % (uint64_t)(half + 1));
}

const char *health_state_name(enum health_state st)
{
	switch (st) {
	case HEALTH_UNKNOWN:
		return "unknown";
	case HEALTH_UP:
		return "up";
	case HEALTH_DOWN:
		return "down";
	}
	return "?";
}

/* One line, no password: libpq messages span lines; a secret must never be shown. */
static void clean_error(char *s, const char *secret)
{
	char *out = s;
	for (const char *p = s; *p; p++) {
		char c = *p == '\n' || *p == '\r' || *p == '\t' ? ' ' : *p;
		if (c == ' ' && (out == s || out[-1] == ' '))
			continue; /* "refused\n\tIs the server..." reads as one sentence */
		*out++ = c;
	}
	*out = 0;
	size_t n = strlen(s);
	while (n && s[n - 1] == ' ')
		s[--n] = 0;
	if (!secret || !secret[0])
		return;
	size_t sl = strlen(secret);
	for (char *hit; (hit = strstr(s, secret));) {
		/* Replace in place: "****" is never longer than a password worth hiding. */
		size_t mask = sl < 4 ? sl : 4;
		memset(hit, '*', mask);
		memmove(hit + mask, hit + sl, strlen(hit + sl) + 1);
	}
}

static void set_timer(struct target *t, int64_t us)
{
	struct timeval tv = {.tv_sec = us / 1000000, .tv_usec = us % 1000000};
	event_add(&t->ev_timer, &tv);
}

/* End the check in flight: close its connection, record the outcome, schedule the next. */
static void check_done(struct target *t, bool ok, const char *error)
{
	struct health *h = t->h;
	const struct config *cfg = worker_config(h->w);
	struct health_status *st = &t->st;
	/*
	 * Copied first, as error may point into the connection about to be freed;
	 * whole, so the password is masked before the text is cut to size.
	 */
	char *why = ok ? NULL : strdup(error);
	if (why)
		clean_error(why, t->secret);

	if (t->ev_sock_set)
		event_del(&t->ev_sock); /* before PQfinish closes the socket under it */
	t->ev_sock_set = false;
	event_del(&t->ev_timer);
	upstream_finish(t->up);
	t->up = NULL;
	t->conn = NULL;
	t->phase = CHECK_IDLE;

	enum health_state before = st->state;
	int64_t now = wall_us();
	st->last_check_us = now;
	st->last_latency_us = mono_us() - t->started_mono_us;
	st->checks++;
	if (ok) {
		if (before == HEALTH_DOWN)
			log_info("upstream %s is up again after %u failed check(s)", st->database,
				 st->consecutive_failures);
		else if (before == HEALTH_UNKNOWN)
			log_info("upstream %s is up", st->database);
		st->state = HEALTH_UP;
		st->last_success_us = now;
		st->consecutive_failures = 0;
	} else {
		snprintf(st->last_error, sizeof(st->last_error), "%s", why ? why : "out of memory");
		free(why);
		if (before != HEALTH_DOWN)
			log_warn("upstream %s is down: %s", st->database, st->last_error);
		int n = pool_suspect_idle(h->w, st->database);
		if (n > 0)
			log_info("upstream %s failing health checks: %d idle server connection(s) "
				 "will run server_check_query before use", st->database, n);
		st->state = HEALTH_DOWN;
		st->failures++;
		t->host_offset++; /* as the pools do: a host that hangs is not tried first again */
		if (st->consecutive_failures < UINT32_MAX)
			st->consecutive_failures++;
	}
	if (t->secret_copy) {
		explicit_bzero(t->secret_copy, strlen(t->secret_copy));
		free(t->secret_copy);
	}
	t->secret_copy = NULL;
	t->secret = NULL;

	int64_t delay = ok ? cfg->health_check_period
			   : health_backoff_us(st->consecutive_failures, cfg->health_check_backoff_max,
					       next_random(h));
	set_timer(t, delay > 0 ? delay : 1);
}

static void sock_cb(evutil_socket_t fd, short what, void *arg);

/* Wait for the socket: readable always, writable too while the query is not all sent. */
static void wait_sock(struct target *t)
{
	int sock = PQsocket(t->conn);
	if (sock < 0) {
		check_done(t, false, "lost the connection's socket");
		return;
	}
	if (t->ev_sock_set)
		event_del(&t->ev_sock);
	event_assign(&t->ev_sock, t->h->w->base, sock, EV_READ | (t->flushing ? EV_WRITE : 0),
		     sock_cb, t);
	t->ev_sock_set = true;
	event_add(&t->ev_sock, NULL);
}

static void query_error(struct target *t, const char *prefix)
{
	char msg[300];
	snprintf(msg, sizeof(msg), "%s: %s", prefix, PQerrorMessage(t->conn));
	check_done(t, false, msg);
}

/* Send what is left of the query; false if the check is over (failed). */
static bool flush_query(struct target *t)
{
	int r = PQflush(t->conn);
	if (r < 0) {
		query_error(t, "SELECT 1 not sent");
		return false;
	}
	t->flushing = r == 1;
	return true;
}

/* Take every result that is complete; finish the check once they are all in. */
static void read_results(struct target *t)
{
	if (!PQconsumeInput(t->conn)) {
		query_error(t, "SELECT 1 failed");
		return;
	}
	while (!PQisBusy(t->conn)) {
		PGresult *res = PQgetResult(t->conn);
		if (!res) {
			if (t->query_error[0])
				check_done(t, false, t->query_error);
			else if (!t->got_row)
				check_done(t, false, "SELECT 1 returned no row");
			else
				check_done(t, true, NULL);
			return;
		}
		ExecStatusType rs = PQresultStatus(res);
		if (rs == PGRES_TUPLES_OK) {
			t->got_row |= PQntuples(res) == 1 && PQnfields(res) == 1 &&
				      strcmp(PQgetvalue(res, 0, 0), "1") == 0;
		} else if (!t->query_error[0]) {
			snprintf(t->query_error, sizeof(t->query_error), "SELECT 1 failed: %s",
				 PQresultErrorMessage(res));
		}
		PQclear(res);
	}
	wait_sock(t);
}

static void sock_cb(evutil_socket_t fd, short what, void *arg)
{
	struct target *t = arg;
	(void)fd;
	t->ev_sock_set = false; /* not persistent: it fired and is no longer pending */
	if (t->flushing && !flush_query(t))
		return;
	if (what & EV_READ) {
		read_results(t);
		return;
	}
	wait_sock(t);
}

static void login_ready(void *arg, struct upstream_conn *u)
{
	struct target *t = arg;
	t->conn = (PGconn *)upstream_pgconn(u);
	t->phase = CHECK_QUERY;
	t->got_row = false;
	t->query_error[0] = 0;
	if (PQsetnonblocking(t->conn, 1) != 0) {
		query_error(t, "SELECT 1 not sent");
		return;
	}
	if (!PQsendQuery(t->conn, "SELECT 1")) {
		query_error(t, "SELECT 1 not sent");
		return;
	}
	if (!flush_query(t))
		return;
	wait_sock(t);
}

static void login_failed(void *arg, const char *why)
{
	check_done(arg, false, why);
}

/* The [databases] entry called name in cfg (exact: "*" does not stand in), or NULL. */
static const struct db_def *find_def(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_dbs; i++)
		if (strcmp(cfg->dbs[i].name, name) == 0)
			return &cfg->dbs[i];
	return NULL;
}

/*
 * Log in as the pools of this entry would: the entry's user= (DATABASE_URL's
 * user in zero-file mode) with its password= or a plain auth_file password.
 * Without user= each client logs in upstream as itself; then the check takes
 * the user of a pool of this database once one exists, else leaves the user to
 * libpq (PGUSER or the OS user; password from PGPASSWORD or the passfile).
 */
static bool pick_login(struct target *t, const struct config *cfg, const struct db_def *def,
		       struct upstream_login *login)
{
	const char *password = NULL;
	if (def->forced_user) {
		login->user = def->forced_user;
		password = config_server_password(cfg, def, def->forced_user);
	} else {
		struct list *pos, *tmp;
		list_for_each_safe(pos, tmp, &t->h->w->pools)
		{
			struct pool *p = list_entry(pos, struct pool, node);
			if (strcmp(p->db->name, def->name) == 0) {
				login->user = p->server_user;
				password = p->server_password;
				break;
			}
		}
	}
	if (!password)
		return true;
	/* A copy: a reload may free the config or the pool before the check ends. */
	t->secret_copy = strdup(password);
	login->password = t->secret_copy;
	t->secret = t->secret_copy;
	return t->secret_copy != NULL;
}

static void target_start(struct target *t)
{
	struct health *h = t->h;
	const struct config *cfg = worker_config(h->w);
	const struct db_def *def = find_def(cfg, t->st.database);
	t->started_mono_us = mono_us();
	t->phase = CHECK_LOGIN;
	if (!def) { /* reconfigure drops the target; meanwhile report why */
		check_done(t, false, "not in the configuration any more");
		return;
	}
	struct upstream_login login = {
		.def = def,
		.dbname = def->dbname ? def->dbname : def->name,
		.timeout_us = 0, /* ev_timer below covers login and query together */
		.application_name = HEALTH_APPLICATION_NAME,
		.rotate_hosts = t->host_offset,
	};
	if (!pick_login(t, cfg, def, &login)) {
		check_done(t, false, "out of memory");
		return;
	}
	set_timer(t, cfg->health_check_timeout);
	t->up = upstream_connect(h->w, &login, login_ready, login_failed, t);
	if (!t->up)
		check_done(t, false, "out of memory");
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct target *t = arg;
	struct health *h = t->h;
	(void)fd;
	(void)what;
	if (t->phase != CHECK_IDLE) {
		char msg[96];
		const struct config *cfg = worker_config(h->w);
		snprintf(msg, sizeof(msg), "no answer within health_check_timeout (%.3g s)",
			 (double)cfg->health_check_timeout / 1e6);
		check_done(t, false, msg);
		return;
	}
	if (worker_config(h->w) != h->cfg_seen) {
		bool stays = find_def(worker_config(h->w), t->st.database) != NULL;
		health_reconfigure(h); /* frees t if its entry is gone */
		if (!stays)
			return;
	}
	target_start(t);
}

static struct target *target_new(struct health *h, const char *name)
{
	struct target *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->h = h;
	snprintf(t->st.database, sizeof(t->st.database), "%s", name);
	event_assign(&t->ev_timer, h->w->base, -1, 0, timer_cb, t);
	return t;
}

static void target_free(struct target *t)
{
	if (t->ev_sock_set)
		event_del(&t->ev_sock);
	event_del(&t->ev_timer);
	upstream_finish(t->up);
	if (t->secret_copy) {
		explicit_bzero(t->secret_copy, strlen(t->secret_copy));
		free(t->secret_copy);
	}
	list_del(&t->node);
	free(t);
}

static struct target *find_target(const struct health *h, const char *name)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, (struct list *)&h->targets)
	{
		struct target *t = list_entry(pos, struct target, node);
		if (strcmp(t->st.database, name) == 0)
			return t;
	}
	return NULL;
}

void health_reconfigure(struct health *h)
{
	if (!h)
		return;
	const struct config *cfg = worker_config(h->w);
	h->cfg_seen = cfg;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &h->targets)
	{
		list_entry(pos, struct target, node)->seen = false;
	}
	/* Rebuilt in config order: found targets move to the tail one by one. */
	for (size_t i = 0; i < cfg->n_dbs; i++) {
		const char *name = cfg->dbs[i].name;
		if (strcmp(name, "*") == 0)
			continue; /* stands for whatever database a client names */
		struct target *t = find_target(h, name);
		if (t && t->seen)
			continue;
		if (!t) {
			t = target_new(h, name);
			if (!t) {
				log_error("health check of %s not started: out of memory", name);
				continue;
			}
			list_append(&h->targets, &t->node);
			event_active(&t->ev_timer, 0, 0); /* first check now, from the loop */
		} else {
			list_move_tail(&h->targets, &t->node);
		}
		t->seen = true;
	}
	list_for_each_safe(pos, tmp, &h->targets)
	{
		struct target *t = list_entry(pos, struct target, node);
		if (!t->seen)
			target_free(t);
	}
}

struct health *health_start(struct worker *w)
{
	struct health *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->w = w;
	list_init(&h->targets);
	h->rng = (uint64_t)wall_us() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)h;
	if (!h->rng)
		h->rng = 1;
	health_reconfigure(h);
	return h;
}

void health_stop(struct health *h)
{
	if (!h)
		return;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &h->targets)
	{
		target_free(list_entry(pos, struct target, node));
	}
	free(h);
}

const struct health_status *health_next(const struct health *h, const struct health_status *prev)
{
	if (!h)
		return NULL;
	const struct list *at = &h->targets;
	if (prev)
		at = &container_of(prev, struct target, st)->node;
	if (at->next == &h->targets)
		return NULL;
	return &list_entry(at->next, struct target, node)->st;
}

const struct health_status *health_find(const struct health *h, const char *database)
{
	if (!h)
		return NULL;
	const struct target *t = find_target(h, database);
	return t ? &t->st : NULL;
}

bool health_ready(const struct health *h, char *reason, size_t len)
{
	for (const struct health_status *st = health_next(h, NULL); st; st = health_next(h, st)) {
		if (st->state == HEALTH_UP)
			continue;
		if (st->state == HEALTH_UNKNOWN)
			snprintf(reason, len, "upstream not checked yet: %s", st->database);
		else
			snprintf(reason, len, "upstream down: %s: %s", st->database, st->last_error);
		return false;
	}
	if (len)
		reason[0] = 0;
	return true;
}
