/*
 * upstream.h - the only module that includes libpq-fe.h. Opens server
 * connections with PQconnectStartParams/PQconnectPoll driven by the event
 * loop, after resolving host names with evdns (passed to libpq as hostaddr,
 * so no lookup blocks the loop). After login berth owns the byte stream;
 * libpq keeps owning the socket and TLS state until upstream_finish().
 */
#ifndef BERTH_UPSTREAM_H
#define BERTH_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>

struct db_def;
struct server;
struct worker;
struct upstream_conn;

struct upstream_login {
	const struct db_def *def;
	const char *user;
	const char *password; /* may be NULL: libpq then tries passfile/PGPASSWORD */
	const char *dbname;
	int64_t timeout_us;   /* server_connect_timeout */
};

/*
 * Start connecting for s. The outcome arrives as server_login_done() or
 * server_login_failed(), never from inside this call. NULL on out of memory.
 */
struct upstream_conn *upstream_start(struct worker *w, struct server *s,
				     const struct upstream_login *login);
/* Abandon a connection attempt or close a logged-in connection (PQfinish). */
void upstream_finish(struct upstream_conn *u);
/*
 * Ask the server to cancel what this connection runs. Runs PQcancel on a
 * helper thread: never blocks the loop. False if too many are in flight.
 */
bool upstream_cancel(struct upstream_conn *u);

#endif
