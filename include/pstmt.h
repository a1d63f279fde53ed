/*
 * pstmt.h - prepared statements in transaction mode. Three maps:
 *   - the worker's registry of distinct statements (query text + parameter
 *     types), each with a server-side name "berth_<id>" unique per worker;
 *   - per client: the client's statement names -> registry entries;
 *   - per server: which registry entries are prepared on that session, in
 *     LRU order, at most max_prepared_statements.
 * Owns no socket buffers and sends nothing: server.c and client.c ask it
 * what to send. Memory is bounded by what clients hold plus the LRU caps.
 */
#ifndef BERTH_PSTMT_H
#define BERTH_PSTMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"
#include "list.h"

#define PSTMT_NAME_PREFIX "berth_"
#define PSTMT_NAME_MAX 24 /* "berth_" + up to 10 digits + NUL, rounded up */

/* One distinct statement: the Parse body after the client's name. */
struct pstmt {
	struct pstmt *hnext; /* registry hash chain */
	struct list unused;  /* on the registry's unused list while refs == 0 */
	uint64_t hash;
	uint32_t id;         /* server-side name is PSTMT_NAME_PREFIX<id> */
	uint32_t refs;       /* client names pointing here */
	uint32_t epoch;      /* registry epoch it was created in */
	char sname[PSTMT_NAME_MAX]; /* server-side name, made once */
	size_t len;          /* bytes at body */
	uint8_t body[];      /* query text NUL, int16 n, n x int32 type oids */
};

struct pstmt_registry {
	struct pstmt **buckets;
	size_t n_buckets;
	size_t n;
	uint32_t next_id;
	uint32_t epoch;      /* bumped by DDL: older entries are no longer shared */
	/*
	 * Statements no client names any more, oldest first. Kept (up to a cap)
	 * because the next client often prepares the same text: a
	 * connection-per-request app then reuses the statement already prepared
	 * on the servers instead of preparing it again under a new name.
	 */
	struct list unused_list;
	size_t n_unused;
};

/* A client's view: its statement name -> registry entry. */
struct client_stmt {
	struct client_stmt *next;
	struct pstmt *ps;
	char name[]; /* the client's name */
};

struct client_stmts {
	struct client_stmt **buckets;
	size_t n_buckets;
	size_t n;
};

/* A server's cache entry. */
struct server_stmt {
	struct server_stmt *hnext;
	struct list lru;     /* most recently used last */
	uint32_t id;
};

struct server_stmts {
	struct server_stmt **buckets;
	size_t n_buckets;
	size_t n;
	struct list lru;
};

/* Server-side name for a registry id. */
void pstmt_server_name(uint32_t id, char out[PSTMT_NAME_MAX]);

/*
 * Find or add the statement whose Parse body (after the name) is body[0..len).
 * Returns it with one more reference, NULL on out of memory.
 */
struct pstmt *pstmt_intern(struct pstmt_registry *reg, const uint8_t *body, size_t len);
void pstmt_unref(struct pstmt_registry *reg, struct pstmt *ps);
/* DDL ran: later Parses get fresh statements, planned anew. */
void pstmt_new_epoch(struct pstmt_registry *reg);
void pstmt_registry_free(struct pstmt_registry *reg);

struct pstmt *client_stmt_get(const struct client_stmts *cs, const char *name);
/* Bind name to ps (taking over the caller's reference). False on out of memory. */
bool client_stmt_put(struct client_stmts *cs, const char *name, struct pstmt *ps) BERTH_MUSTCHECK;
/* Forget name; drops its reference. True if it existed. */
bool client_stmt_del(struct client_stmts *cs, struct pstmt_registry *reg, const char *name);
void client_stmts_clear(struct client_stmts *cs, struct pstmt_registry *reg);

bool server_stmt_has(struct server_stmts *ss, uint32_t id);
/* Mark id prepared (most recently used). False on out of memory. */
bool server_stmt_add(struct server_stmts *ss, uint32_t id) BERTH_MUSTCHECK;
void server_stmt_del(struct server_stmts *ss, uint32_t id);
/* Least recently used id, for eviction; false if empty. */
bool server_stmt_oldest(const struct server_stmts *ss, uint32_t *id);
void server_stmts_clear(struct server_stmts *ss);

#endif
