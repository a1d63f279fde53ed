/*
 * http.h - the HTTP endpoints on their own listener (http_listen), served by
 * libevent's evhttp on the worker's loop: GET /health (the process serves),
 * GET /ready (every upstream answers, not shutting down) and GET /metrics
 * (Prometheus text format 0.0.4). Reads pools, stats and health; never
 * touches the data path.
 */
#ifndef BERTH_HTTP_H
#define BERTH_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "compiler.h"

struct http_server;
struct runtime;

/*
 * Listen on rt->cfg->http_listen and serve from rt->worker's loop. With
 * http_listen empty nothing is started: true with *out NULL. False with err
 * filled if the address cannot be bound. Keeps answering during a graceful
 * shutdown (/ready then says 503 "shutting down") until http_stop.
 */
bool http_start(struct runtime *rt, struct http_server **out, char *err, size_t errlen)
	BERTH_MUSTCHECK;
/* Close the listener and any HTTP connection, free hs (NULL is fine). Before the loop is freed. */
void http_stop(struct http_server *hs);

#endif
