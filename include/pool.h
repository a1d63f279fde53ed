/*
 * pool.h - pools per (database, user): lists that are the states of their
 * clients and servers, the FIFO of waiting clients, limits, and the
 * backoff after failed logins. Does no I/O itself.
 */
#ifndef BERTH_POOL_H
#define BERTH_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "list.h"
#include "params.h"
#include "stats.h"

struct client;
struct config;
struct db_def;
struct server;
struct worker;

/* One [databases] entry as the worker sees it; counts servers for max_db_connections. */
struct database {
	struct list node;     /* worker->databases */
	char name[64];        /* client-visible name */
	const struct db_def *def;
	int n_servers;        /* every server of every pool of this database */
	int n_clients;        /* every logged-in client of every pool of this database */
	bool removed;         /* gone from the config on reload: drains, then is freed */
	bool paused;          /* PAUSE db, KILL db: no server lent or opened until RESUME db */
	bool disabled;        /* DISABLE db: new clients refused until ENABLE db */
	int64_t unused_since_us; /* "*" databases: when the last client and server left; 0 = in use */
};

/* A client's startup "replication" (PgBouncer 1.23+): its pool and servers are its own. */
enum replication_mode { REPL_NONE = 0, REPL_PHYSICAL, REPL_LOGICAL };

struct pool {
	struct list node;           /* worker->pools */
	struct worker *w;
	struct database *db;
	char user[64];              /* client user name */
	char server_user[64];       /* user logged in upstream (forced user or client user) */
	char *server_password;      /* secret: never logged */
	int pool_mode;              /* enum pool_mode */
	/*
	 * enum replication_mode. Not REPL_NONE: session mode, servers opened with
	 * libpq's replication option, bytes passed through both ways untouched
	 * (CopyBoth streaming), and each server closed when its client leaves.
	 */
	int replication;
	/*
	 * Replication pools are per application_name as well, and log in with it:
	 * synchronous_standby_names matches walsenders by that name.
	 */
	char repl_app[64];
	int wanted_pool_mode;       /* from the config; taken while the pool has no clients */
	int pool_size;
	int min_pool_size;
	int reserve_pool_size;
	int max_db_connections;   /* 0 = no limit */
	int max_user_connections; /* 0 = no limit */
	int max_db_client_connections;   /* clients of the database, all users; 0 = no limit */
	int max_user_client_connections; /* clients of the user, all databases; 0 = no limit */
	/* Timeouts in us, 0 = none: [users] over [databases] over the global keys. */
	int64_t server_lifetime;
	int64_t server_idle_timeout;
	int64_t query_wait_timeout;
	int64_t query_timeout;
	int64_t idle_transaction_timeout;
	int64_t transaction_timeout;
	int64_t client_idle_timeout;
	/*
	 * Which host of a several-host entry a new connection tries first (libpq
	 * then goes on in order): round-robin moves it on per connection, disable
	 * per failed login, so a host that hangs until the login times out is
	 * passed over from then on, as PgBouncer does.
	 */
	uint32_t host_offset;
	/*
	 * The session settings connect_query leaves, as SQL "('name','value'),...":
	 * the pinning probe does not count them as the client's. NULL = none.
	 */
	char *connect_settings;
	uint32_t n_cl_login;        /* lengths of the three client lists, kept by client_set_state: */
	uint32_t n_cl_active;       /* SHOW POOLS and /metrics must not walk thousands of clients */
	uint32_t n_cl_waiting;
	struct list cl_login;       /* CL_LOGIN_WAIT */
	struct list cl_active;      /* CL_IDLE and CL_ACTIVE */
	struct list cl_waiting;     /* CL_WAITING, FIFO */
	struct list sv_connecting;  /* SV_CONNECTING */
	struct list sv_idle;        /* SV_IDLE, most recently used last */
	struct list sv_active;      /* SV_ACTIVE */
	struct list sv_resetting;   /* SV_RESETTING */
	int n_servers;              /* servers in any state */
	int n_clients;              /* clients whose pool this is (logged in) */
	struct param_list defaults; /* what a fresh server reports: clients see these at login */
	bool have_defaults;
	int64_t next_connect_us;    /* backoff: no new connection before this */
	int64_t backoff_us;         /* current backoff, 0 after a success */
	char last_error[256];       /* last login failure, for clients */
	int64_t last_error_us;
	struct pool_stats stats;    /* SHOW STATS, /metrics */
};

/* Find or create the pool; NULL on out of memory. */
struct pool *pool_get(struct worker *w, const struct db_def *def, const char *dbname,
		      const char *user, int replication, const char *repl_app);
/* The client needs a server: link one now (true) or queue it (false). */
bool pool_request_server(struct pool *pool, struct client *c);
/* Logged-in clients of this user, every database (max_user_client_connections). */
int pool_user_client_count(struct worker *w, const char *user);
/* A server became idle (or was added): serve the first waiting client. */
void pool_server_ready(struct pool *pool, struct server *s);
/* A server is gone: maybe start another for waiting clients. */
void pool_server_closed(struct pool *pool);
/* A login failed: remember the error and back off (before its server is closed). */
void pool_note_login_failure(struct pool *pool, const char *why);
/* After that close: fail the waiting clients if no server is left to serve them. */
void pool_login_failed(struct pool *pool, const char *why);
/* Make sure enough connections are being opened for waiting clients. */
void pool_maintain(struct pool *pool, int64_t now_us);
void pool_free_all(struct worker *w);
/* autodb_idle_timeout: free "*" databases (and their pools) unused that long. Janitor. */
void pool_free_unused_autodbs(struct worker *w, int64_t now);
/*
 * Reload: point databases at cfg's entries (or mark them removed), retake
 * limits. old (NULL when a SET changed cfg in place) is the config being
 * replaced: servers whose login settings changed are replaced.
 */
void pool_reconfigure(struct worker *w, const struct config *old, const struct config *cfg);
/* Janitor: switch pool mode when possible, close idle servers above the limit. */
void pool_trim(struct pool *p);
/* No clients and no servers: a removed database's pool may be freed. */
bool pool_unused(const struct pool *p);
/* Unlink and free an unused pool. */
void pool_free(struct pool *p);

/* ---- control (admin console) -------------------------------------------
 * db NULL means every database. Pausing never closes a server that a client
 * holds: it closes once released (the janitor closes idle ones), so callers
 * poll pool_server_count() to learn when a PAUSE is complete.
 */

/* The worker's database of this name, made from the config on first use; NULL if none matches. */
struct database *pool_find_database(struct worker *w, const char *name);
/* No server is lent or opened: PAUSE (db or all), KILL, SUSPEND. */
bool pool_db_paused(const struct worker *w, const struct database *db);
void pool_pause(struct worker *w, struct database *db);
/* Undo PAUSE/KILL of db (NULL: the PAUSE/KILL of all); waiting clients get servers again. */
void pool_resume(struct worker *w, struct database *db);
/* SUSPEND: pause everything (sockets are the console's business). */
void pool_set_suspended(struct worker *w, bool on);
/* Server connections of db still open, in any state. */
int pool_server_count(struct worker *w, const struct database *db);
void pool_set_disabled(struct database *db, bool disabled);
/* KILL: pause db and drop its clients (FATAL with reason) and servers now. */
void pool_kill(struct worker *w, struct database *db, const char *reason);
/* KILL_CLIENT: drop the client (FATAL with reason) and close the server it held. */
void pool_kill_client(struct client *c, const char *reason);
/* RECONNECT: close db's servers once released (idle ones now); new ones open as needed. */
void pool_reconnect(struct worker *w, struct database *db);
/*
 * A health check of the database entry called database failed: its pools'
 * idle servers may be cut off or frozen too, so each runs server_check_query
 * (bounded by health_check_timeout) before it is lent again. Returns how many
 * were marked.
 */
int pool_suspect_idle(struct worker *w, const char *database);
/* A marked server's check went unanswered: close the pool's other marked idle servers. */
void pool_close_suspect_idle(struct pool *p);
/* Servers RECONNECT marked and still open: WAIT_CLOSE is done at 0. */
int pool_close_needed_count(struct worker *w, const struct database *db);
/*
 * Janitor: clients wait while idle servers sit unused. That happens when a
 * server_check_query failed and closed its server: nothing else starts the
 * next check. Start checks (or lend) as a new request would; with no server
 * left and the last login failed, fail them as a new request would be.
 */
void pool_serve_stalled(struct pool *p, int64_t now);
/* Janitor: close idle servers of a paused database and those RECONNECT marked. */
void pool_close_unwanted(struct pool *p);

#endif
