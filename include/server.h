/*
 * server.h - a server connection's state machine: connecting (libpq, in
 * upstream.c), idle in its pool, active for a client, resetting, closing.
 * Writes to clients only by relaying server bytes.
 */
#ifndef BERTH_SERVER_H
#define BERTH_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "list.h"
#include "params.h"
#include "pstmt.h"
#include "replyq.h"
#include "sbuf.h"

struct client;
struct pool;
struct upstream_conn;

enum server_state {
	SV_FREE = 0,   /* transient: allocated */
	SV_CONNECTING, /* DNS + libpq login in progress (pool connecting list) */
	SV_IDLE,       /* logged in, clean, unlinked (pool idle list) */
	SV_ACTIVE,     /* linked to a client (pool active list) */
	SV_RESETTING,  /* running server_reset_query with no client (pool resetting list) */
	SV_CLOSED,     /* transient: on the worker closing list */
};

struct server {
	struct list node;             /* on the list its state implies */
	enum server_state state;
	struct sbuf sb;
	struct pool *pool;
	struct client *client;        /* SV_ACTIVE only */
	struct upstream_conn *up;     /* libpq connection: owns the socket and any TLS */
	bool passthrough;             /* a walsender (pool->replication): bytes pass as they are */
	uint64_t id;
	uint32_t backend_pid;
	int64_t connect_time_us;
	int64_t state_since_us;
	struct param_list vars;       /* values on this server session */
	uint64_t synced_sig;          /* signature of the client wishes it matches exactly */
	bool synced_valid;            /* synced_sig holds: nothing changed the session since */
	struct replyq q;              /* replies expected, in request order */
	struct server_stmts stmts;    /* shared prepared statements on this session */
	char txn_status;              /* last ReadyForQuery status: 'I', 'T', 'E' */
	bool release_after_flush;     /* transaction ended: back to the pool once sent */
	bool skip_until_sync;         /* an error made the server skip requests until Sync */
	bool unsynced;                /* Parse/Bind/Describe/Execute/Close sent and no Sync since:
				       * the server may hold an open implicit transaction */
	bool stmt_cache_stale;        /* a cached plan went stale (0A000): deallocate when free */
	bool close_needed;            /* RECONNECT: close when next released, never lend again */
	bool suspect;                 /* idle when a health check failed: checked before lending,
				       * within health_check_timeout (cleared when that passes) */
	bool own_failed;              /* berth's own query failed */
	char own_error_code[6];       /* its SQLSTATE, passed on to the client it was for */
	char own_error_msg[160];      /* its message */
};

/* Start a new server connection for pool (state SV_CONNECTING). */
struct server *server_connect(struct pool *pool);
/* upstream.c calls these when libpq's login finishes. */
void server_login_done(struct server *s, int fd, void *ssl, const struct param_list *reported);
void server_login_failed(struct server *s, const char *why);
/* Link to a client, queuing a parameter sync if needed. */
bool server_link_client(struct server *s, struct client *c) BERTH_MUSTCHECK;
/* The client left: reset, return to pool, or close as its state demands. */
void server_client_gone(struct server *s);
void server_close(struct server *s, const char *reason);
void server_set_state(struct server *s, enum server_state st);
const char *server_state_name(enum server_state st);
void server_free(struct server *s);
/* Queue the expected reply of a request about to be sent (client.c). Takes msg. */
bool server_push(struct server *s, enum req_kind kind, uint8_t sub, uint32_t id, uint8_t *msg)
	BERTH_MUSTCHECK;
/*
 * Make sure the shared statement is prepared on this session, queuing a Parse
 * under its server-side name (and a Close of the least recently used one past
 * max_cached) ahead of the client's next bytes. client_name: the Parse stands
 * for the client's own Parse of that name, whose ParseComplete it gets (and
 * which is forgotten if it fails); NULL: berth's own Parse, whose reply is
 * swallowed and nothing is sent if the statement is there already. Call only
 * with no client bytes pending.
 */
bool server_ensure_stmt(struct server *s, const struct pstmt *ps, uint32_t max_cached,
			const char *client_name) BERTH_MUSTCHECK;
/* Send replies berth makes that are due now; false on out of memory. */
bool server_drain_synth(struct server *s) BERTH_MUSTCHECK;
/* Replies parsed but not yet sent to the client? */
bool server_has_output_pending(const struct server *s);
/* Idle past server_check_delay with a server_check_query set: check before lending. */
bool server_needs_check(const struct server *s, int64_t now_us);
/*
 * Run server_check_query on an idle server (state SV_RESETTING meanwhile). It
 * returns to the idle list and serves waiting clients when the check passes,
 * and is closed if it fails. False if the query could not be queued.
 */
bool server_start_check(struct server *s) BERTH_MUSTCHECK;
/*
 * server_fast_close (PgBouncer): a session-mode server marked by RECONNECT
 * closes with its client as soon as the client is between transactions,
 * instead of when the client leaves; the client gets FATAL 57P01, so it
 * knows its session ended. No transaction or request is cut short.
 */
void server_fast_close_if_idle(struct server *s);
/* Janitor: idle timeout, lifetime, resets and checks that never answer. */
void server_check_timeouts(struct server *s, int64_t now_us);

#endif
