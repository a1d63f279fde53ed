/*
 * params.h - run-time parameters (GUCs) a client expects and a server has.
 * A client's wishes come from its startup packet (and options -c) and from
 * ParameterStatus messages while it runs; a server's values from its own
 * ParameterStatus messages and from what berth set on it. Before a client
 * runs on a server, params_build_sync() writes the one statement that makes
 * the server match the client. Slow path: runs once per link, strings only.
 */
#ifndef BERTH_PARAMS_H
#define BERTH_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

struct param {
	char *name;
	char *value;
	uint64_t hash; /* of the lower-cased name and the value: feeds the list signature */
	bool reported; /* the server reports it with ParameterStatus */
};

struct param_list {
	struct param *items;
	size_t n;
	size_t cap;
	/*
	 * XOR of the items' hashes: equal lists have equal signatures whatever
	 * the order, so "this server already has exactly what this client wants"
	 * is one comparison on the hot path instead of a walk.
	 */
	uint64_t sig;
};

/* Case-insensitive lookup; NULL if absent. */
const char *params_get(const struct param_list *l, const char *name);
/* Insert or replace; false on out of memory. */
bool params_set(struct param_list *l, const char *name, const char *value, bool reported)
	BERTH_MUSTCHECK;
void params_remove(struct param_list *l, const char *name);
bool params_copy(struct param_list *dst, const struct param_list *src) BERTH_MUSTCHECK;
void params_clear(struct param_list *l);
/* Drop entries berth set that the server never reports (after RESET ALL). */
void params_drop_unreported(struct param_list *l);

/*
 * Write into buf a query that makes a server whose values are `server` (with
 * pool defaults `defaults`, the values a fresh server reports) match the
 * client's `want`. Returns the query length, 0 if nothing needs changing,
 * -1 if buf is too small. On success `server` is updated to the result.
 */
int params_build_sync(const struct param_list *want, struct param_list *server,
		      const struct param_list *defaults, char *buf, size_t buflen);

/*
 * Parse a startup "options" value: "-c name=value", "--name=value" words,
 * backslash escapes a space. Calls add(name, value) for each; false (with
 * err filled) on anything else.
 */
bool params_parse_options(const char *options, bool (*add)(void *arg, const char *name, const char *value),
			  void *arg, char *err, size_t errlen) BERTH_MUSTCHECK;

#endif
