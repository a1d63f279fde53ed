/*
 * upstream.h - opens every upstream connection: PQconnectStartParams/
 * PQconnectPoll driven by the event loop, after resolving host names with
 * evdns (passed to libpq as hostaddr, so no lookup blocks the loop). For a
 * server, berth owns the byte stream after login; libpq keeps owning the
 * socket and TLS state until upstream_finish(). Besides this module only
 * health.c includes libpq-fe.h, to run its SELECT 1 through libpq on a
 * connection opened here.
 */
#ifndef BERTH_UPSTREAM_H
#define BERTH_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>

struct db_def;
struct pg_conn; /* libpq's PGconn */
struct server;
struct worker;
struct upstream_conn;

/* Login succeeded: u is the caller's until it calls upstream_finish (may do so here). */
typedef void (*upstream_ready_fn)(void *arg, struct upstream_conn *u);
/* Login failed (why: one line, no password): the caller must still upstream_finish(u). */
typedef void (*upstream_failed_fn)(void *arg, const char *why);

struct upstream_login {
	const struct db_def *def;
	const char *user;     /* NULL: libpq's default */
	const char *password; /* may be NULL: libpq then tries passfile/PGPASSWORD */
	const char *dbname;
	int64_t timeout_us;   /* server_connect_timeout; 0 = none (the caller times out) */
	const char *application_name; /* NULL: the entry's own, if any */
	unsigned rotate_hosts; /* load_balance_hosts = round-robin: start this many hosts on */
	const char *replication; /* libpq's replication option ("true", "database"), or NULL */
};

/*
 * Start connecting for s. The outcome arrives as server_login_done() or
 * server_login_failed(), never from inside this call. NULL on out of memory.
 */
struct upstream_conn *upstream_start(struct worker *w, struct server *s,
				     const struct upstream_login *login);
/*
 * The same for any owner: exactly one of ready or failed runs later with arg,
 * never from inside this call. NULL on out of memory.
 */
struct upstream_conn *upstream_connect(struct worker *w, const struct upstream_login *login,
				       upstream_ready_fn ready, upstream_failed_fn failed, void *arg);
/* libpq's connection once ready has run (NULL before): for health.c's query. */
struct pg_conn *upstream_pgconn(struct upstream_conn *u);
/* Abandon a connection attempt or close a logged-in connection (PQfinish). */
void upstream_finish(struct upstream_conn *u);
/*
 * Ask the server to cancel what this connection runs. Runs PQcancel on a
 * helper thread: never blocks the loop. False if too many are in flight.
 */
bool upstream_cancel(struct upstream_conn *u);

#endif
