/*
 * admin.h - the admin console: clients logged in to the virtual database
 * `berth` (or `pgbouncer`, so PgBouncer's tools and pgbouncer_exporter
 * connect unchanged). PgBouncer's SHOW commands with PgBouncer 1.25's
 * columns and types, and its control commands (PAUSE, RESUME, KILL, SET,
 * RELOAD, SHUTDOWN, ...). Simple query protocol only. Changes pools only
 * through pool.c and settings only through config.c.
 */
#ifndef BERTH_ADMIN_H
#define BERTH_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "sbuf.h"

struct client;
struct worker;

/* Names the console answers to. */
#define ADMIN_DB_NAME "berth"
#define ADMIN_DB_ALIAS "pgbouncer"

/* Is name the console's database (berth or pgbouncer)? */
bool admin_is_console_db(const char *name);

/*
 * PgBouncer's rule for the console user: user berth or pgbouncer, asking
 * for the console database over the unix socket, from a process with
 * berth's own uid (SO_PEERCRED), logs in without a password and may run
 * every command. Call during login (c->login present).
 */
bool admin_peer_trusted(const struct client *c);

/*
 * c authenticated for the console database: admit it (admin_users,
 * stats_users, or a trusted peer) and send the welcome (parameters, cancel
 * key, ReadyForQuery), or refuse it with FATAL 08P01 "not allowed" and
 * close it. On true c->user and c->database point into the console session
 * and the caller frees the login state and sets CL_CONSOLE.
 */
bool admin_login(struct client *c) BERTH_MUSTCHECK;

/* A message from a CL_CONSOLE client (sbuf callback contract, see sbuf.h). */
enum sbuf_action admin_on_message(struct client *c, const struct pkt_hdr *hdr,
				  const uint8_t *data, size_t avail);

/* A CancelRequest for a console client: a waiting PAUSE/SUSPEND/WAIT_CLOSE gives up. */
void admin_cancel(struct client *c);

/* The client is being freed: drop its console session (RESUME if it left berth suspended). */
void admin_session_free(struct client *c);

/*
 * PAUSE and RESUME of the whole pooler, for the console and for SIGUSR1 and
 * SIGUSR2 (PgBouncer's signals). admin_pause_all is false if already
 * paused or suspended; admin_resume_all gives why it could not (the
 * console's error text), NULL when resumed.
 */
bool admin_pause_all(struct worker *w);
const char *admin_resume_all(struct worker *w);

/* Janitor tick: answer the PAUSE, SUSPEND and WAIT_CLOSE commands that are now done. */
void admin_janitor(struct worker *w);

/* ---- command parsing (exported for unit tests) ----------------------------- */

struct admin_cmd {
	char verb[32];   /* lower case */
	char arg[64];    /* as written, quotes removed; empty when none */
	char value[256]; /* SET: the value, quotes removed */
	bool is_set;     /* SET key = value (arg is the key) */
};

/*
 * Length of the first statement of sql[0..len): up to the first ';' outside
 * '...' and "..." quotes, or len.
 */
size_t admin_statement_len(const char *sql, size_t len);

/*
 * Parse one statement: `WORD [ARG]` or `SET KEY {=|TO} VALUE`. Words are
 * letters, digits and _ (ARG also . - $) or "double quoted"; VALUE may be
 * 'single quoted' ('' for a quote) or a bare word. False on anything else.
 */
bool admin_parse(const char *stmt, size_t len, struct admin_cmd *out) BERTH_MUSTCHECK;

#endif
