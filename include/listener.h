/*
 * listener.h - listening sockets (TCP per listen_addr, and the unix socket
 * .s.PGSQL.<port> in unix_socket_dir), accept, socket options. Reads no
 * client bytes: accepted sockets go straight to client_accept().
 */
#ifndef BERTH_LISTENER_H
#define BERTH_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "compiler.h"

struct config;
struct worker;
struct evconnlistener;

#define LISTENER_MAX 8

struct listener {
	struct evconnlistener *l[LISTENER_MAX];
	int n;
	struct worker *w;
	char unix_path[256]; /* to unlink on stop; empty if none */
	dev_t unix_dev;      /* ...if the file there is still ours */
	ino_t unix_ino;
};

/* Bind and listen on everything the config names. False with err filled on failure. */
bool listener_start(struct listener *ls, struct worker *w, const struct config *cfg, char *err,
		    size_t errlen) BERTH_MUSTCHECK;
void listener_stop(struct listener *ls);

#endif
