/*
 * pool.c - pools per (database, user). Lends idle servers to clients (most
 * recently used first, so warm connections stay warm), queues clients FIFO
 * when none is free, opens connections within pool_size, max_db_connections
 * and max_user_connections, and backs off after failed logins while failing
 * waiting clients fast. Does no I/O: client.c and server.c do.
 */
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "config.h"
#include "errors.h"
#include "log.h"
#include "runtime.h"
#include "server.h"

/* First retry after a failed login; doubles up to server_login_retry. */
#define BACKOFF_START_US 250000

static struct database *database_get(struct worker *w, const struct db_def *def, const char *name)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->databases)
	{
		struct database *db = list_entry(pos, struct database, node);
		if (db->def == def && strcmp(db->name, name) == 0)
			return db;
	}
	struct database *db = calloc(1, sizeof(*db));
	if (!db)
		return NULL;
	snprintf(db->name, sizeof(db->name), "%s", name);
	db->def = def;
	list_append(&w->databases, &db->node);
	return db;
}

static int pick(int specific, int global)
{
	return specific >= 0 ? specific : global;
}

/* A replication pool's server waits this long for the client it was opened for. */
#define REPL_IDLE_MAX_US 1000000

static int64_t pick_time(int64_t specific, int64_t global)
{
	return specific >= 0 ? specific : global;
}

static void pool_set_password(struct pool *p, const char *pw)
{
	if (p->server_password) {
		explicit_bzero(p->server_password, strlen(p->server_password));
		free(p->server_password);
	}
	p->server_password = pw ? strdup(pw) : NULL;
}

/*
 * Take the pool's limits, upstream user and password from cfg (creation and
 * reload). The pool mode only becomes wanted_pool_mode: a pool switches
 * modes while it has no clients, never under a session in progress.
 */
static void pool_apply_config(struct pool *p, const struct config *cfg)
{
	const struct db_def *def = p->db->def;
	const char *server_user = def->forced_user ? def->forced_user : p->user;
	snprintf(p->server_user, sizeof(p->server_user), "%s", server_user);
	/* The entry's password=, else the user's own from auth_file when it is a plain one. */
	pool_set_password(p, config_server_password(cfg, def, server_user));
	const struct user_def *ud = config_find_user(cfg, p->user);
	p->wanted_pool_mode = pick(ud ? ud->pool_mode : -1, pick(def->pool_mode, cfg->pool_mode));
	p->pool_size = pick(ud ? ud->pool_size : -1, pick(def->pool_size, cfg->default_pool_size));
	p->min_pool_size = pick(def->min_pool_size, cfg->min_pool_size);
	p->reserve_pool_size =
		pick(ud ? ud->reserve_pool_size : -1, pick(def->reserve_pool_size, cfg->reserve_pool_size));
	p->max_db_connections = pick(def->max_db_connections, cfg->max_db_connections);
	p->max_user_connections = pick(ud ? ud->max_user_connections : -1, cfg->max_user_connections);
	p->max_db_client_connections =
		pick(def->max_db_client_connections, cfg->max_db_client_connections);
	p->max_user_client_connections = pick(ud ? ud->max_user_client_connections : -1,
					      cfg->max_user_client_connections);
	p->server_lifetime = pick_time(def->server_lifetime, cfg->server_lifetime);
	p->server_idle_timeout = cfg->server_idle_timeout;
	p->query_wait_timeout = pick_time(ud ? ud->query_wait_timeout : -1,
					  pick_time(def->query_wait_timeout, cfg->query_wait_timeout));
	p->query_timeout = pick_time(ud ? ud->query_timeout : -1, cfg->query_timeout);
	p->idle_transaction_timeout =
		pick_time(ud ? ud->idle_transaction_timeout : -1, cfg->idle_transaction_timeout);
	p->transaction_timeout =
		pick_time(ud ? ud->transaction_timeout : -1, cfg->transaction_timeout);
	p->client_idle_timeout =
		pick_time(ud ? ud->client_idle_timeout : -1, cfg->client_idle_timeout);
	if (p->replication) {
		/*
		 * A walsender serves one client for its whole session. One nobody
		 * took (its client left right after login) holds a max_wal_senders
		 * slot: it waits a second at most.
		 */
		p->wanted_pool_mode = POOL_SESSION;
		p->min_pool_size = 0;
		p->server_idle_timeout = REPL_IDLE_MAX_US;
	}
}

static bool pool_has_clients(const struct pool *p)
{
	return !list_empty(&p->cl_login) || !list_empty(&p->cl_active) ||
	       !list_empty(&p->cl_waiting);
}

void pool_reconfigure(struct worker *w, const struct config *old, const struct config *cfg)
{
	struct list *pos, *tmp;
	bool tls_changed = old && !config_same_server_tls(old, cfg);
	list_for_each_safe(pos, tmp, &w->databases)
	{
		struct database *db = list_entry(pos, struct database, node);
		const struct db_def *def = config_find_db(cfg, db->name);
		/* A database now served by another entry ("*" vs its own) counts as removed. */
		bool same_entry = def && strcmp(def->name, db->def->name) == 0;
		db->removed = !same_entry;
		if (same_entry && (tls_changed || !config_db_same_upstream(db->def, def))) {
			/* Servers of the old settings go: idle ones now, the others when released. */
			log_info("database %s: connection settings changed, reconnecting", db->name);
			pool_reconnect(w, db);
		}
		if (same_entry)
			db->def = def;
		else
			log_info("database %s: removed from the configuration, draining", db->name);
	}
	list_for_each_safe(pos, tmp, &w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		if (!p->db->removed)
			pool_apply_config(p, cfg);
		pool_trim(p);
	}
}

void pool_trim(struct pool *p)
{
	int64_t now = worker_now_us(p->w);
	if (p->pool_mode != p->wanted_pool_mode && !pool_has_clients(p)) {
		/* Servers set up for the old mode may hold session state: start afresh. */
		log_info("pool %s/%s: pool_mode %s -> %s", p->db->name, p->user,
			 pool_mode_name(p->pool_mode), pool_mode_name(p->wanted_pool_mode));
		p->pool_mode = p->wanted_pool_mode;
		struct list *pos, *tmp;
		list_for_each_safe(pos, tmp, &p->sv_idle)
		{
			server_close(list_entry(pos, struct server, node), "pool_mode changed");
		}
	}
	/* Above pool_size (a reload shrank it, or a removed database): close idle ones. */
	int keep = p->db->removed ? 0 : p->pool_size;
	while (p->n_servers > keep && !list_empty(&p->sv_idle))
		server_close(list_entry(list_first(&p->sv_idle), struct server, node),
			     p->db->removed ? "database removed from the configuration"
					    : "pool_size reduced");
	if (!p->db->removed)
		pool_maintain(p, now);
}

bool pool_unused(const struct pool *p)
{
	return !pool_has_clients(p) && p->n_servers == 0;
}

void pool_free(struct pool *p)
{
	list_del(&p->node);
	params_clear(&p->defaults);
	stats_free(&p->stats);
	pool_set_password(p, NULL);
	free(p->connect_settings);
	free(p);
}

struct pool *pool_get(struct worker *w, const struct db_def *def, const char *dbname,
		      const char *user, int replication, const char *repl_app)
{
	if (!replication || !repl_app)
		repl_app = "";
	const struct config *cfg = worker_config(w);
	/* For the "*" entry the database name is the client's: one pool per real name. */
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		if (p->db->def == def && strcmp(p->user, user) == 0 &&
		    strcmp(p->db->name, dbname) == 0 && p->replication == replication &&
		    strncmp(p->repl_app, repl_app, sizeof(p->repl_app) - 1) == 0)
			return p;
	}
	struct database *db = database_get(w, def, dbname);
	if (!db)
		return NULL;
	struct pool *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->w = w;
	p->db = db;
	snprintf(p->user, sizeof(p->user), "%s", user);
	p->replication = replication;
	snprintf(p->repl_app, sizeof(p->repl_app), "%s", repl_app);
	pool_apply_config(p, cfg);
	p->pool_mode = p->wanted_pool_mode;
	list_init(&p->cl_login);
	list_init(&p->cl_active);
	list_init(&p->cl_waiting);
	list_init(&p->sv_connecting);
	list_init(&p->sv_idle);
	list_init(&p->sv_active);
	list_init(&p->sv_resetting);
	list_append(&w->pools, &p->node);
	log_debug("pool %s/%s: mode %s, size %d", db->name, p->user, pool_mode_name(p->pool_mode),
		  p->pool_size);
	return p;
}

/*
 * Sum over every pool of one user, across databases: its clients (by the
 * client's user name) or its servers (by the upstream user name).
 */
static int user_pools_sum(struct worker *w, const char *name, bool servers)
{
	int n = 0;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		if (strcmp(servers ? p->server_user : p->user, name) == 0)
			n += servers ? p->n_servers : p->n_clients;
	}
	return n;
}

int pool_user_client_count(struct worker *w, const char *user)
{
	return user_pools_sum(w, user, false);
}

/* Servers this user has open across every database. */
static int user_server_count(struct worker *w, const char *server_user)
{
	return user_pools_sum(w, server_user, true);
}

enum open_verdict {
	OPEN_OK = 0,
	OPEN_BACKOFF,   /* a login failed recently */
	OPEN_POOL_FULL, /* pool_size (+ reserve) reached */
	OPEN_DB_FULL,   /* max_db_connections reached by all pools of the database */
	OPEN_USER_FULL, /* max_user_connections reached across databases */
};

/* May this pool open one more server connection now? */
static enum open_verdict pool_can_open(struct pool *p, int64_t now_us)
{
	if (now_us < p->next_connect_us)
		return OPEN_BACKOFF;
	int limit = p->pool_size;
	/* The reserve opens once the first waiting client waited reserve_pool_timeout. */
	if (p->reserve_pool_size > 0 && !list_empty(&p->cl_waiting)) {
		struct client *first = list_entry(list_first(&p->cl_waiting), struct client, node);
		if (now_us - first->state_since_us >= worker_config(p->w)->reserve_pool_timeout)
			limit += p->reserve_pool_size;
	}
	if (p->n_servers >= limit)
		return OPEN_POOL_FULL;
	if (p->max_db_connections > 0 && p->db->n_servers >= p->max_db_connections)
		return OPEN_DB_FULL;
	if (p->max_user_connections > 0 &&
	    user_server_count(p->w, p->server_user) >= p->max_user_connections)
		return OPEN_USER_FULL;
	return OPEN_OK;
}

/*
 * A shared limit (database or user) is reached while this pool has clients
 * waiting: close the longest-idle server of another pool sharing that limit,
 * so connections follow demand (PgBouncer does the same). True if one closed.
 */
static bool pool_evict_idle_for(struct pool *p, enum open_verdict why)
{
	struct server *victim = NULL;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &p->w->pools)
	{
		struct pool *o = list_entry(pos, struct pool, node);
		if (o == p || list_empty(&o->sv_idle))
			continue;
		if (why == OPEN_DB_FULL && o->db != p->db)
			continue;
		if (why == OPEN_USER_FULL && strcmp(o->server_user, p->server_user) != 0)
			continue;
		struct server *s = list_entry(list_first(&o->sv_idle), struct server, node);
		if (!victim || s->state_since_us < victim->state_since_us)
			victim = s;
	}
	if (!victim)
		return false;
	server_close(victim, why == OPEN_DB_FULL ? "max_db_connections: making room for another pool"
						 : "max_user_connections: making room for another pool");
	return true;
}

void pool_maintain(struct pool *p, int64_t now_us)
{
	if (pool_db_paused(p->w, p->db))
		return; /* RESUME calls again */
	size_t connecting = list_count(&p->sv_connecting);
	/* Walk no further than needed: many clients may wait. */
	size_t want = list_count_upto(&p->cl_waiting, connecting + 1 + (size_t)p->pool_size);
	if (!p->have_defaults && !list_empty(&p->cl_login) && want == 0)
		want = 1;
	while (connecting < want) {
		enum open_verdict v = pool_can_open(p, now_us);
		if ((v == OPEN_DB_FULL || v == OPEN_USER_FULL) && pool_evict_idle_for(p, v))
			v = pool_can_open(p, now_us);
		if (v != OPEN_OK)
			break;
		if (!server_connect(p))
			return;
		connecting++;
	}
	/* min_pool_size: keep warm connections once the upstream is known to work. */
	while (p->have_defaults && p->n_servers < p->min_pool_size &&
	       pool_can_open(p, now_us) == OPEN_OK) {
		if (!server_connect(p))
			return;
	}
}

/*
 * The idle server to lend next, or NULL: the most recently used (released
 * servers go to the tail), or with server_round_robin the longest idle.
 * Servers that RECONNECT marked are closed on the way: only from a client's
 * callback, never inside the server's own.
 */
static struct server *pool_lendable_idle(struct pool *p)
{
	bool in_turn = worker_config(p->w)->server_round_robin;
	while (!list_empty(&p->sv_idle)) {
		struct list *next = in_turn ? p->sv_idle.next : p->sv_idle.prev;
		struct server *s = list_entry(next, struct server, node);
		if (!s->close_needed)
			return s;
		server_close(s, "closing as marked (RECONNECT or server_lifetime)");
	}
	return NULL;
}

/*
 * Serve waiting clients from the idle list: lend servers used recently, and
 * run server_check_query on ones idle past server_check_delay (a passing
 * check lends its server to the first waiting client, pool_server_ready).
 * A check starts for every waiting client not already covered by one in
 * flight: checking a single server while the others sit idle would leave
 * every waiting client queued behind that one connection for as long as
 * the queue never empties.
 */
static void pool_serve_waiting(struct pool *p, int64_t now)
{
	struct server *s;
	while (!list_empty(&p->cl_waiting) && (s = pool_lendable_idle(p)) != NULL) {
		if (!server_needs_check(s, now)) {
			pool_server_ready(p, s);
			if (s->state == SV_IDLE && !s->close_needed)
				break; /* not lendable now (paused): nothing else is either */
			continue;
		}
		size_t checking = list_count_upto(&p->sv_resetting, SIZE_MAX);
		if (list_count_upto(&p->cl_waiting, checking + 1) <= checking)
			break; /* a check or reset in flight for each waiting client */
		if (!server_start_check(s))
			server_close(s, "could not queue server_check_query");
	}
}

bool pool_request_server(struct pool *p, struct client *c)
{
	if (p->w->rt->shutdown == SHUTDOWN_WAIT_SERVERS) {
		/* SIGINT: servers are being released for good; none is lent again. */
		client_fail(c, ERR_ADMIN_SHUTDOWN, "terminating connection due to administrator command");
		return false;
	}
	if (pool_db_paused(p->w, p->db)) {
		/* PAUSE: wait, as for a busy pool (query_wait_timeout still applies). */
		client_set_state(c, CL_WAITING);
		return false;
	}
	int64_t now = worker_now_us(p->w);
	struct server *s = pool_lendable_idle(p);
	if (s && list_empty(&p->cl_waiting) && !server_needs_check(s, now)) {
		client_link_server(c, s);
		return c->state == CL_ACTIVE;
	}
	/* No server to lend: fail at once if the upstream is known to be down. */
	if (p->n_servers == 0 && p->last_error[0] && now < p->next_connect_us) {
		client_fail(c, ERR_CONNECTION_FAILURE, "server login failed: %s", p->last_error);
		return false;
	}
	/* Queue (FIFO); idle servers due for a check are checked, one per waiting client. */
	client_set_state(c, CL_WAITING);
	pool_serve_waiting(p, now);
	if (c->state != CL_WAITING)
		return c->state == CL_ACTIVE;
	if (p->n_servers < p->pool_size + p->reserve_pool_size)
		pool_maintain(p, now);
	return false;
}

void pool_server_ready(struct pool *p, struct server *s)
{
	BERTH_ASSERT(s->state == SV_IDLE);
	if (p->server_lifetime > 0 && worker_now_us(p->w) - s->connect_time_us > p->server_lifetime) {
		/*
		 * Too old: not lent again. The janitor closes it; closing here would
		 * free its buffer under the server callback that called us.
		 */
		s->close_needed = true;
		return;
	}
	/* Paused, or marked by RECONNECT: stays idle for the janitor to close. */
	if (list_empty(&p->cl_waiting) || s->close_needed || pool_db_paused(p->w, p->db))
		return;
	struct client *c = list_entry(list_first(&p->cl_waiting), struct client, node);
	client_link_server(c, s);
}

void pool_server_closed(struct pool *p)
{
	if (!list_empty(&p->cl_waiting) || (!p->have_defaults && !list_empty(&p->cl_login)))
		pool_maintain(p, worker_now_us(p->w));
}

/* Fail every client in list with the login error. */
static void pool_fail_list(struct list *head, const char *why)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, head)
	{
		struct client *c = list_entry(pos, struct client, node);
		client_fail(c, ERR_CONNECTION_FAILURE, "server login failed: %s", why);
	}
}

void pool_serve_stalled(struct pool *p, int64_t now)
{
	if (list_empty(&p->cl_waiting) || pool_db_paused(p->w, p->db))
		return;
	if (!list_empty(&p->sv_idle))
		pool_serve_waiting(p, now);
	else if (p->n_servers == 0 && p->last_error[0] && now < p->next_connect_us)
		/* The last server closed after the last login failed: as for a new request. */
		pool_fail_list(&p->cl_waiting, p->last_error);
}

void pool_note_login_failure(struct pool *p, const char *why)
{
	const struct config *cfg = worker_config(p->w);
	int64_t now = worker_now_us(p->w);
	snprintf(p->last_error, sizeof(p->last_error), "%s", why);
	p->last_error_us = now;
	p->backoff_us = p->backoff_us ? p->backoff_us * 2 : BACKOFF_START_US;
	if (cfg->server_login_retry > 0 && p->backoff_us > cfg->server_login_retry)
		p->backoff_us = cfg->server_login_retry;
	p->next_connect_us = now + p->backoff_us;
}

void pool_login_failed(struct pool *p, const char *why)
{
	/* With no server left to free up, waiting would only hang: fail them now. */
	if (p->n_servers == 0) {
		pool_fail_list(&p->cl_login, why);
		pool_fail_list(&p->cl_waiting, why);
	}
}

void pool_free_all(struct worker *w)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->pools)
	{
		pool_free(list_entry(pos, struct pool, node));
	}
	list_for_each_safe(pos, tmp, &w->databases)
	{
		struct database *db = list_entry(pos, struct database, node);
		list_del(&db->node);
		free(db);
	}
}

/* ---- control ---------------------------------------------------------------- */

struct database *pool_find_database(struct worker *w, const char *name)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->databases)
	{
		struct database *db = list_entry(pos, struct database, node);
		if (!db->removed && strcmp(db->name, name) == 0)
			return db;
	}
	const struct db_def *def = config_find_db(worker_config(w), name);
	return def ? database_get(w, def, name) : NULL;
}

/*
 * A database made for the "*" entry that has had no client and no server
 * for autodb_idle_timeout is freed with its pools and their statistics, as
 * PgBouncer does: a server with a database per tenant would otherwise list
 * every name ever asked for. Paused or disabled ones are the operator's:
 * kept. Seen unused on an earlier tick first, so the closed clients and
 * servers that pointed at its pools have been reaped.
 */
void pool_free_unused_autodbs(struct worker *w, int64_t now)
{
	int64_t timeout = worker_config(w)->autodb_idle_timeout;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->databases)
	{
		struct database *db = list_entry(pos, struct database, node);
		if (db->removed || strcmp(db->def->name, "*") != 0)
			continue;
		if (db->n_clients || db->n_servers || db->paused || db->disabled) {
			db->unused_since_us = 0;
			continue;
		}
		if (!db->unused_since_us) {
			db->unused_since_us = now;
			continue;
		}
		if (timeout <= 0 || now - db->unused_since_us < timeout)
			continue;
		log_info("database %s: unused for autodb_idle_timeout, freed", db->name);
		struct list *pp, *pt;
		list_for_each_safe(pp, pt, &w->pools)
		{
			struct pool *p = list_entry(pp, struct pool, node);
			if (p->db == db)
				pool_free(p);
		}
		list_del(&db->node);
		free(db);
	}
}

bool pool_db_paused(const struct worker *w, const struct database *db)
{
	return db->paused || w->pause_all || w->suspended;
}

/* Close the servers of p that nobody holds: idle ones, and those still logging in. */
static void pool_close_free_servers(struct pool *p, const char *reason)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &p->sv_idle)
	{
		server_close(list_entry(pos, struct server, node), reason);
	}
	list_for_each_safe(pos, tmp, &p->sv_connecting)
	{
		server_close(list_entry(pos, struct server, node), reason);
	}
}

void pool_pause(struct worker *w, struct database *db)
{
	if (db)
		db->paused = true;
	else
		w->pause_all = true;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		if (!db || p->db == db)
			pool_close_free_servers(p, "PAUSE");
	}
}

/* Let the pools of db (NULL: all) work again: lend idle servers, open new ones. */
static void pool_wake(struct worker *w, const struct database *db)
{
	int64_t now = worker_now_us(w);
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		if ((db && p->db != db) || pool_db_paused(w, p->db))
			continue;
		pool_serve_waiting(p, now);
		pool_maintain(p, now);
	}
}

void pool_resume(struct worker *w, struct database *db)
{
	if (db)
		db->paused = false;
	else
		w->pause_all = false;
	pool_wake(w, db);
}

void pool_set_suspended(struct worker *w, bool on)
{
	w->suspended = on;
	if (!on) {
		pool_wake(w, NULL);
		return;
	}
	/* A login finishing now would start reading: those connections go, nobody holds them. */
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		struct list *sp, *st;
		list_for_each_safe(sp, st, &p->sv_connecting)
		{
			server_close(list_entry(sp, struct server, node), "SUSPEND");
		}
	}
}

int pool_server_count(struct worker *w, const struct database *db)
{
	int n = 0;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		if (!db || p->db == db)
			n += p->n_servers;
	}
	return n;
}

void pool_set_disabled(struct database *db, bool disabled)
{
	db->disabled = disabled;
}

/* FATAL every client on head. */
static void pool_fail_clients(struct list *head, const char *reason)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, head)
	{
		client_fail(list_entry(pos, struct client, node), ERR_CONSOLE, "%s", reason);
	}
}

void pool_kill(struct worker *w, struct database *db, const char *reason)
{
	pool_pause(w, db);
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		if (db && p->db != db)
			continue;
		pool_fail_clients(&p->cl_active, reason);
		pool_fail_clients(&p->cl_waiting, reason);
		pool_fail_clients(&p->cl_login, reason);
		struct list *lists[] = {&p->sv_active, &p->sv_resetting, &p->sv_idle,
					&p->sv_connecting};
		for (size_t i = 0; i < ARRAY_SIZE(lists); i++) {
			struct list *sp, *st;
			list_for_each_safe(sp, st, lists[i])
			{
				server_close(list_entry(sp, struct server, node), reason);
			}
		}
	}
}

void pool_kill_client(struct client *c, const char *reason)
{
	struct server *s = c->server;
	client_fail(c, ERR_CONSOLE, "%s", reason);
	/* Its server may be back in the pool, or lent to a waiting client already: it stays. */
	if (s && s->state != SV_CLOSED && !s->client)
		server_close(s, reason);
}

void pool_reconnect(struct worker *w, struct database *db)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		if (db && p->db != db)
			continue;
		struct list *lists[] = {&p->sv_active, &p->sv_resetting, &p->sv_connecting};
		for (size_t i = 0; i < ARRAY_SIZE(lists); i++)
			for (struct list *sp = lists[i]->next; sp != lists[i]; sp = sp->next)
				list_entry(sp, struct server, node)->close_needed = true;
		struct list *sp, *st;
		list_for_each_safe(sp, st, &p->sv_idle)
		{
			server_close(list_entry(sp, struct server, node), "RECONNECT");
		}
	}
}

int pool_suspect_idle(struct worker *w, const char *database)
{
	int n = 0;
	for (struct list *pos = w->pools.next; pos != &w->pools; pos = pos->next) {
		struct pool *p = list_entry(pos, struct pool, node);
		if (p->replication || strcmp(p->db->name, database) != 0)
			continue;
		for (struct list *sp = p->sv_idle.next; sp != &p->sv_idle; sp = sp->next) {
			list_entry(sp, struct server, node)->suspect = true;
			n++;
		}
	}
	return n;
}

void pool_close_suspect_idle(struct pool *p)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &p->sv_idle)
	{
		struct server *s = list_entry(pos, struct server, node);
		if (s->suspect)
			server_close(s, "another connection marked by a failed health check did not "
					"answer server_check_query");
	}
}

int pool_close_needed_count(struct worker *w, const struct database *db)
{
	int n = 0;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		if (db && p->db != db)
			continue;
		struct list *lists[] = {&p->sv_active, &p->sv_resetting, &p->sv_connecting,
					&p->sv_idle};
		for (size_t i = 0; i < ARRAY_SIZE(lists); i++)
			for (struct list *sp = lists[i]->next; sp != lists[i]; sp = sp->next)
				n += list_entry(sp, struct server, node)->close_needed;
	}
	return n;
}

void pool_close_unwanted(struct pool *p)
{
	bool paused = pool_db_paused(p->w, p->db);
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &p->sv_idle)
	{
		struct server *s = list_entry(pos, struct server, node);
		if (paused || s->close_needed)
			server_close(s, paused ? "PAUSE" : "RECONNECT");
	}
}
