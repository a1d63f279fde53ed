/*
 * pstmt.c - the prepared-statement maps behind transaction-mode pooling:
 * a worker registry of distinct statements, each client's names, and each
 * server's LRU cache. Chained hash tables that double when full; no socket
 * I/O and no protocol decisions here (server.c makes those).
 */
#include "pstmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Unreferenced statements kept for reuse, at most. */
#define PSTMT_UNUSED_MAX 1024

static uint64_t fnv1a(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

static uint64_t mix_id(uint32_t id)
{
	uint64_t h = id * 0x9E3779B97F4A7C15ull;
	return h ^ (h >> 29);
}

void pstmt_server_name(uint32_t id, char out[PSTMT_NAME_MAX])
{
	snprintf(out, PSTMT_NAME_MAX, PSTMT_NAME_PREFIX "%u", id);
}

/* ---- registry -------------------------------------------------------------- */

static bool registry_grow(struct pstmt_registry *reg)
{
	size_t nb = reg->n_buckets ? reg->n_buckets * 2 : 64;
	struct pstmt **b = calloc(nb, sizeof(*b));
	if (!b)
		return false;
	for (size_t i = 0; i < reg->n_buckets; i++) {
		struct pstmt *ps = reg->buckets[i];
		while (ps) {
			struct pstmt *next = ps->hnext;
			size_t j = ps->hash & (nb - 1);
			ps->hnext = b[j];
			b[j] = ps;
			ps = next;
		}
	}
	free(reg->buckets);
	reg->buckets = b;
	reg->n_buckets = nb;
	return true;
}

struct pstmt *pstmt_intern(struct pstmt_registry *reg, const uint8_t *body, size_t len)
{
	uint64_t h = fnv1a(body, len);
	if (reg->n_buckets) {
		for (struct pstmt *ps = reg->buckets[h & (reg->n_buckets - 1)]; ps; ps = ps->hnext) {
			if (ps->hash == h && ps->len == len && ps->epoch == reg->epoch &&
			    memcmp(ps->body, body, len) == 0) {
				if (ps->refs++ == 0) {
					list_del(&ps->unused);
					reg->n_unused--;
				}
				return ps;
			}
		}
	}
	if (!reg->n_buckets)
		list_init(&reg->unused_list);
	if (reg->n >= reg->n_buckets && !registry_grow(reg))
		return NULL;
	struct pstmt *ps = malloc(sizeof(*ps) + len);
	if (!ps)
		return NULL;
	ps->hash = h;
	ps->id = ++reg->next_id;
	ps->refs = 1;
	ps->epoch = reg->epoch;
	ps->len = len;
	pstmt_server_name(ps->id, ps->sname);
	list_init(&ps->unused);
	memcpy(ps->body, body, len);
	size_t j = h & (reg->n_buckets - 1);
	ps->hnext = reg->buckets[j];
	reg->buckets[j] = ps;
	reg->n++;
	return ps;
}

static void pstmt_free(struct pstmt_registry *reg, struct pstmt *ps)
{
	struct pstmt **pp = &reg->buckets[ps->hash & (reg->n_buckets - 1)];
	while (*pp != ps)
		pp = &(*pp)->hnext;
	*pp = ps->hnext;
	reg->n--;
	free(ps);
}

void pstmt_unref(struct pstmt_registry *reg, struct pstmt *ps)
{
	BERTH_ASSERT(ps->refs > 0);
	if (--ps->refs > 0)
		return;
	if (ps->epoch != reg->epoch) {
		pstmt_free(reg, ps); /* planned before DDL: nobody will share it again */
		return;
	}
	list_append(&reg->unused_list, &ps->unused);
	if (++reg->n_unused > PSTMT_UNUSED_MAX) {
		struct pstmt *old = list_entry(reg->unused_list.next, struct pstmt, unused);
		list_del(&old->unused);
		reg->n_unused--;
		pstmt_free(reg, old);
	}
}

void pstmt_new_epoch(struct pstmt_registry *reg)
{
	reg->epoch++;
	if (!reg->n_buckets)
		return;
	while (!list_empty(&reg->unused_list)) {
		struct pstmt *old = list_entry(reg->unused_list.next, struct pstmt, unused);
		list_del(&old->unused);
		reg->n_unused--;
		pstmt_free(reg, old);
	}
}

void pstmt_registry_free(struct pstmt_registry *reg)
{
	for (size_t i = 0; i < reg->n_buckets; i++) {
		struct pstmt *ps = reg->buckets[i];
		while (ps) {
			struct pstmt *next = ps->hnext;
			free(ps);
			ps = next;
		}
	}
	free(reg->buckets);
	memset(reg, 0, sizeof(*reg));
}

/* ---- client names ------------------------------------------------------------ */

static bool client_stmts_grow(struct client_stmts *cs)
{
	size_t nb = cs->n_buckets ? cs->n_buckets * 2 : 8;
	struct client_stmt **b = calloc(nb, sizeof(*b));
	if (!b)
		return false;
	for (size_t i = 0; i < cs->n_buckets; i++) {
		struct client_stmt *e = cs->buckets[i];
		while (e) {
			struct client_stmt *next = e->next;
			size_t j = fnv1a(e->name, strlen(e->name)) & (nb - 1);
			e->next = b[j];
			b[j] = e;
			e = next;
		}
	}
	free(cs->buckets);
	cs->buckets = b;
	cs->n_buckets = nb;
	return true;
}

struct pstmt *client_stmt_get(const struct client_stmts *cs, const char *name)
{
	if (!cs->n_buckets)
		return NULL;
	size_t j = fnv1a(name, strlen(name)) & (cs->n_buckets - 1);
	for (struct client_stmt *e = cs->buckets[j]; e; e = e->next)
		if (strcmp(e->name, name) == 0)
			return e->ps;
	return NULL;
}

bool client_stmt_put(struct client_stmts *cs, const char *name, struct pstmt *ps)
{
	if (cs->n >= cs->n_buckets && !client_stmts_grow(cs))
		return false;
	size_t n = strlen(name);
	struct client_stmt *e = malloc(sizeof(*e) + n + 1);
	if (!e)
		return false;
	memcpy(e->name, name, n + 1);
	e->ps = ps;
	size_t j = fnv1a(name, n) & (cs->n_buckets - 1);
	e->next = cs->buckets[j];
	cs->buckets[j] = e;
	cs->n++;
	return true;
}

bool client_stmt_del(struct client_stmts *cs, struct pstmt_registry *reg, const char *name)
{
	if (!cs->n_buckets)
		return false;
	struct client_stmt **pp = &cs->buckets[fnv1a(name, strlen(name)) & (cs->n_buckets - 1)];
	for (; *pp; pp = &(*pp)->next) {
		struct client_stmt *e = *pp;
		if (strcmp(e->name, name) == 0) {
			*pp = e->next;
			pstmt_unref(reg, e->ps);
			free(e);
			cs->n--;
			return true;
		}
	}
	return false;
}

void client_stmts_clear(struct client_stmts *cs, struct pstmt_registry *reg)
{
	for (size_t i = 0; i < cs->n_buckets; i++) {
		struct client_stmt *e = cs->buckets[i];
		while (e) {
			struct client_stmt *next = e->next;
			pstmt_unref(reg, e->ps);
			free(e);
			e = next;
		}
	}
	free(cs->buckets);
	memset(cs, 0, sizeof(*cs));
}

/* ---- server cache ----------------------------------------------------------- */

static struct server_stmt **server_slot(const struct server_stmts *ss, uint32_t id)
{
	return &ss->buckets[mix_id(id) & (ss->n_buckets - 1)];
}

static struct server_stmt *server_find(const struct server_stmts *ss, uint32_t id)
{
	if (!ss->n_buckets)
		return NULL;
	for (struct server_stmt *e = *server_slot(ss, id); e; e = e->hnext)
		if (e->id == id)
			return e;
	return NULL;
}

bool server_stmt_has(struct server_stmts *ss, uint32_t id)
{
	struct server_stmt *e = server_find(ss, id);
	if (!e)
		return false;
	list_move_tail(&ss->lru, &e->lru);
	return true;
}

static bool server_stmts_grow(struct server_stmts *ss)
{
	size_t nb = ss->n_buckets ? ss->n_buckets * 2 : 16;
	struct server_stmt **b = calloc(nb, sizeof(*b));
	if (!b)
		return false;
	if (!ss->n_buckets)
		list_init(&ss->lru);
	for (size_t i = 0; i < ss->n_buckets; i++) {
		struct server_stmt *e = ss->buckets[i];
		while (e) {
			struct server_stmt *next = e->hnext;
			size_t j = mix_id(e->id) & (nb - 1);
			e->hnext = b[j];
			b[j] = e;
			e = next;
		}
	}
	free(ss->buckets);
	ss->buckets = b;
	ss->n_buckets = nb;
	return true;
}

bool server_stmt_add(struct server_stmts *ss, uint32_t id)
{
	if (server_stmt_has(ss, id))
		return true;
	if (ss->n >= ss->n_buckets && !server_stmts_grow(ss))
		return false;
	struct server_stmt *e = malloc(sizeof(*e));
	if (!e)
		return false;
	e->id = id;
	struct server_stmt **slot = server_slot(ss, id);
	e->hnext = *slot;
	*slot = e;
	list_append(&ss->lru, &e->lru);
	ss->n++;
	return true;
}

void server_stmt_del(struct server_stmts *ss, uint32_t id)
{
	if (!ss->n_buckets)
		return;
	struct server_stmt **pp = server_slot(ss, id);
	for (; *pp; pp = &(*pp)->hnext) {
		struct server_stmt *e = *pp;
		if (e->id == id) {
			*pp = e->hnext;
			list_del(&e->lru);
			free(e);
			ss->n--;
			return;
		}
	}
}

bool server_stmt_oldest(const struct server_stmts *ss, uint32_t *id)
{
	if (!ss->n)
		return false;
	*id = list_entry(ss->lru.next, struct server_stmt, lru)->id;
	return true;
}

void server_stmts_clear(struct server_stmts *ss)
{
	for (size_t i = 0; i < ss->n_buckets; i++) {
		struct server_stmt *e = ss->buckets[i];
		while (e) {
			struct server_stmt *next = e->hnext;
			free(e);
			e = next;
		}
	}
	free(ss->buckets);
	memset(ss, 0, sizeof(*ss));
}
