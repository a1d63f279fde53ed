/*
 * client.h - a client connection's state machine: startup packet, TLS
 * refusal, authentication, then idle/waiting/active around server links.
 * Chooses no servers (pool.c does) and writes to servers only by relaying.
 */
#ifndef BERTH_CLIENT_H
#define BERTH_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "list.h"
#include "params.h"
#include "pstmt.h"
#include "sbuf.h"
#include "scram.h"

struct console;
struct pool;
struct querylog;
struct server;
struct worker;

enum client_state {
	CL_FREE = 0,   /* transient: allocated, not started */
	CL_STARTUP,    /* reading SSLRequest / StartupMessage (worker login list) */
	CL_AUTH,       /* password or SASL exchange (worker login list) */
	CL_LOGIN_WAIT, /* authenticated, waiting for the pool's first server to learn parameters */
	CL_IDLE,       /* logged in, no server (pool active list) */
	CL_WAITING,    /* has a request, queued for a server (pool waiting list, FIFO) */
	CL_ACTIVE,     /* linked to a server (pool active list) */
	CL_CONSOLE,    /* logged in to the admin console, no pool (worker console list) */
	CL_CLOSED,     /* transient: on the worker closing list, freed after this loop pass */
};

enum auth_step {
	AUTH_STEP_NONE = 0,
	AUTH_STEP_PASSWORD, /* sent AuthenticationCleartextPassword */
	AUTH_STEP_MD5,      /* sent AuthenticationMD5Password */
	AUTH_STEP_SASL,     /* sent AuthenticationSASL, expecting SASLInitialResponse */
	AUTH_STEP_SASL_CONT /* sent SASLContinue, expecting SASLResponse */
};

/*
 * What only login needs, allocated at accept and freed when login ends, so
 * a logged-in idle client costs as little memory as possible.
 */
struct client_login {
	char user[64];
	char database[64];
	enum auth_step auth_step;
	uint8_t md5_salt[4];
	bool auth_mock;          /* unknown user: finish the exchange, then refuse */
	bool scram_plus_offered; /* TLS: SCRAM-SHA-256-PLUS was listed, with cb_hash below */
	bool scram_plus;         /* ... and the client chose it */
	bool direct_tls;         /* TLS began without an SSLRequest (sslnegotiation=direct) */
	struct scram_state scram; /* during SCRAM */
	uint8_t cb_hash[SCRAM_MAX_CB_DATA]; /* berth's certificate hash, for channel binding */
	size_t cb_hash_len;
};

struct client {
	struct list node;          /* on the list its state implies */
	struct list all_node;      /* worker's every-client list, for cancel lookup */
	enum client_state state;
	struct sbuf sb;
	struct worker *w;
	struct pool *pool;         /* set once the startup packet named database and user */
	struct server *server;     /* linked server, CL_ACTIVE only */
	union {
		struct sockaddr sa;
		struct sockaddr_in in4;
		struct sockaddr_in6 in6;
	} addr;                    /* peer address; unix-socket peers keep only the family */
	uint64_t id;               /* for logs */
	uint32_t cancel_pid;       /* BackendKeyData berth gave this client */
	uint32_t cancel_key;
	int64_t connect_time_us;
	int64_t state_since_us;    /* when the current state began: timeouts */
	int64_t wait_notified_us;  /* state_since_us of the wait query_wait_notify told about */
	int64_t wait_start_us;     /* precise clock: when it began waiting for a server */
	int64_t query_start_us;    /* precise clock: first request not yet answered; 0 = none */
	int64_t xact_start_us;     /* precise clock: the transaction's first request; 0 = none */
	const char *user;          /* login->user while logging in, then the pool's */
	const char *database;      /* login->database while logging in, then the pool's */
	struct client_login *login; /* startup and auth state; freed once logged in */
	struct console *console;   /* admin console session (admin.c); NULL for pooled clients */
	struct param_list vars;    /* GUC values this client expects on its server */
	struct param_list startup; /* values from the startup packet: what RESET returns to */
	bool over_limit;           /* accepted past max_client_conn: refuse after startup */
	uint8_t replication;       /* enum replication_mode, from the startup packet */
	bool counted;              /* in pool->n_clients and its database's (client connection limits) */
	struct client_stmts stmts; /* its prepared statements (transaction mode) */
	bool resync_pending;       /* sent SQL that may RESET settings: restore startup values after it */
	bool probe_wanted;         /* sent SQL that may hold session state: check before release */
	bool pinned;               /* the session holds state: keep this server across transactions */
	bool deferred_begin;       /* defer_begin: berth answered its BEGIN; the server gets it
				    * ahead of the transaction's first statement */
	bool probing;              /* the check for session state is running: treat as pinned */
	bool pin_logged;           /* the warning about pinning was logged */
	bool skip_until_sync;      /* berth answered with an error: skip requests up to Sync */
	bool deallocate_execute;   /* the next Execute runs berth's stand-in for DEALLOCATE */
	char *dealloc_name;        /* the statement that DEALLOCATE is for (malloc'd) */
	uint32_t forgotten_id;     /* last statement whose failed Parse removed its name... */
	char *forgotten_name;      /* ...and that name (malloc'd), for the server's errors about it */
	struct querylog *ql;       /* query logging state; NULL until this client logs a statement */
};

/*
 * Take an accepted, non-blocking socket. Refuses (after startup) past
 * max_client_conn. bytes_waiting: the kernel held the connection until its
 * first bytes came (TCP_DEFER_ACCEPT), so read them now, not a wake-up later.
 */
void client_accept(struct worker *w, int fd, const struct sockaddr *addr, socklen_t addrlen,
		   bool bytes_waiting);
/* Give the client the server it waited for; resumes its pending request. */
void client_link_server(struct client *c, struct server *s);
/* The pool learned server parameters: finish this client's login. */
void client_finish_login(struct client *c);
/* Fail with an ErrorResponse and close (never frees now: deferred). */
void client_fail(struct client *c, const char *sqlstate, const char *fmt, ...) BERTH_PRINTF(3, 4);
/* A renamed Parse failed: forget the client's name (statement id) it made. */
void client_forget_stmt(struct client *c, uint32_t id, const char *name);
/* A DEALLOCATE of the client's statement id succeeded: forget its name. */
void client_drop_stmt_name(struct client *c, const char *name);
/* The client's name for shared statement id (or one just forgotten); NULL if none. */
const char *client_stmt_name_of(const struct client *c, uint32_t id);
/* Close without a message. */
void client_close(struct client *c, const char *reason);
/* The linked server went away (server.c has already unlinked). */
void client_server_lost(struct client *c, const char *why);
/* A ReadyForQuery arrived from the server for this client (tx accounting). */
const char *client_state_name(enum client_state st);
void client_set_state(struct client *c, enum client_state st);
void client_free(struct client *c);
/* Janitor: enforce login, wait and idle timeouts. */
void client_check_timeouts(struct client *c, int64_t now_us);

#endif
