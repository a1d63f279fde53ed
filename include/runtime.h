/*
 * runtime.h - struct runtime (process-wide, read-mostly) and struct worker
 * (everything one event loop touches). No other mutable state exists: a
 * worker never touches another worker's objects, so more loops can come.
 */
#ifndef BERTH_RUNTIME_H
#define BERTH_RUNTIME_H

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "compiler.h"
#include "list.h"
#include "pstmt.h"
#include "stats.h"

struct config;
struct health;
struct iobuf;
struct listener;

struct worker_stats {
	uint64_t clients_accepted;
	uint64_t clients_refused;  /* max_client_conn */
	uint64_t logins_failed;
	uint64_t server_connects;
	uint64_t server_connect_failures;
	uint64_t cancels_forwarded;
	uint64_t big_messages;     /* slow path: message larger than pkt_buf inspected */
	uint64_t other_bytes_in;   /* traffic not counted in a pool: logins, servers */
	uint64_t other_bytes_out;
};

/*
 * Fixed-size objects carved from blocks and kept on a freelist: one malloc per
 * block, not per connection, so thousands of idle clients sit contiguous
 * instead of between the allocator's holes left by login-time temporaries.
 */
struct slab {
	size_t obj_size;    /* rounded up to pointer alignment */
	size_t per_block;
	void *free;         /* freelist, linked through the objects' first word */
	struct slab_block *blocks;
	size_t n_live;
};

void slab_init(struct slab *sl, size_t obj_size, size_t per_block);
/* Zeroed object, NULL on out of memory. */
void *slab_alloc(struct slab *sl);
void slab_free(struct slab *sl, void *obj);
/* Objects on the freelist, ready for reuse (SHOW LISTS free_clients). */
size_t slab_free_count(const struct slab *sl);
void slab_destroy(struct slab *sl);

struct worker {
	struct runtime *rt;
	struct event_base *base;
	struct evdns_base *dns;
	size_t pkt_buf;             /* iobuf payload size, fixed at start */
	struct slab clients;        /* struct client storage */
	struct iobuf *free_iobufs;  /* freelist */
	size_t n_free_iobufs;
	size_t n_iobufs;            /* all iobufs allocated */
	struct list pools;          /* struct pool, by (database, user) */
	struct list databases;      /* struct database */
	struct list login_clients;  /* clients in startup/auth, for client_login_timeout */
	struct list closing_clients; /* CL_CLOSED: freed after this loop iteration */
	struct list closing_servers; /* SV_CLOSED: ditto */
	struct list all_clients;    /* every client, for cancel lookup */
	struct list console_clients; /* CL_CONSOLE: logged in to the admin console */
	bool pause_all;             /* PAUSE or KILL without a database (pool.c) */
	bool suspended;             /* SUSPEND: nothing lent, sockets read nothing new (pool.c, admin.c) */
	struct auth_cache auth;     /* derived secrets per user */
	struct pstmt_registry pstmts; /* distinct prepared statements, shared by all servers */
	uint64_t next_id;           /* ids for log lines */
	struct event ev_reap;       /* activated to free the closing list */
	struct event ev_janitor;    /* periodic timeouts */
	size_t n_clients;           /* every client connection, any state */
	uint32_t cancel_threads;    /* cancel helper threads running */
	struct worker_stats stats;
	struct pool_stats console_stats; /* the admin console's logins and commands (SHOW STATS "pgbouncer") */
	int64_t stats_rolled_us;    /* when the last stats_period ended */
	int64_t io_now_us;          /* clock read at the start of the running socket callback; 0 outside one */
};

/* How a shutdown waits (PgBouncer 1.23+ signals; admin SHUTDOWN). */
enum shutdown_mode {
	SHUTDOWN_NONE = 0,         /* running */
	SHUTDOWN_WAIT_CLIENTS,     /* SIGTERM, SHUTDOWN WAIT_FOR_CLIENTS: stop accepting, wait for clients to leave */
	SHUTDOWN_WAIT_SERVERS,     /* SIGINT, SHUTDOWN WAIT_FOR_SERVERS: wait until no server is in use */
	SHUTDOWN_IMMEDIATE,        /* SIGQUIT, second signal, SHUTDOWN: exit now */
};

struct runtime {
	struct config *cfg;    /* current config; swapped whole on reload */
	struct health *health; /* upstream checks (health.h); NULL until started */
	struct worker *worker; /* one loop for now */
	char *config_path;     /* NULL in zero-file mode */
	bool shutting_down;
	enum shutdown_mode shutdown; /* strongest mode asked for so far */
	int64_t shutdown_deadline_us; /* shutdown_timeout: exit then whatever is left; 0 = none */
	struct listener *listener;   /* closed when a shutdown begins */
	struct config **retired;     /* replaced by reloads, still referenced by draining databases */
	size_t n_retired;
};

/*
 * Microseconds on the monotonic clock (stats_now_us), read once per socket
 * callback: timeouts, ages and the wait and query timings.
 */
int64_t worker_now_us(struct worker *w);

/* Make sure the closing lists are emptied after the current callback returns. */
void worker_schedule_reap(struct worker *w);
/* Set up a worker's loop, lists and timers; false on failure. */
bool worker_init(struct worker *w, struct runtime *rt);
/* Close every connection and free what the worker owns. */
void worker_shutdown(struct worker *w);
/*
 * Raise the soft open-file limit to the hard one (clients and servers are
 * file descriptors), and warn when even that leaves max_client_conn short.
 * At start, on reload and on a console SET of a limit.
 */
void runtime_fit_fd_limit(const struct config *cfg);
/*
 * Re-read the configuration file and environment (SIGHUP, admin RELOAD). All or
 * nothing: on a bad file nothing changes, false is returned and err says why
 * (file:line: key: problem; never a secret).
 */
bool runtime_reload(struct runtime *rt, char *err, size_t errlen) BERTH_MUSTCHECK;
/*
 * Begin (or escalate; never weaken) a shutdown: stop accepting, then leave
 * the loop once what the mode waits for is over or shutdown_timeout passed.
 * Safe to call from any callback on the loop.
 */
void runtime_shutdown(struct runtime *rt, enum shutdown_mode mode);
/* Janitor: end a shutdown whose wait is over. */
void runtime_check_shutdown(struct runtime *rt);
/* Free draining databases and retired configs nobody uses any more. */
void runtime_collect(struct runtime *rt);
/* At exit: free every retired config. */
void runtime_free_retired(struct runtime *rt);
/* The config in force. */
const struct config *worker_config(const struct worker *w);

#endif
