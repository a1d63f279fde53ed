/*
 * listener.h - listening sockets (TCP per listen_addr, and the unix socket
 * .s.PGSQL.<port> in unix_socket_dir), accept, socket options. Reads no
 * client bytes: accepted sockets go straight to client_accept(), told
 * whether the kernel held them until their first bytes came.
 */
#ifndef BERTH_LISTENER_H
#define BERTH_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <event2/event_struct.h>

#include "compiler.h"

struct config;
struct sockaddr;
struct worker;
struct listener;

#define LISTENER_MAX 8

struct listen_sock {
	struct event ev;       /* readable: a connection to accept */
	struct event pause;    /* re-arms ev after accept ran out of descriptors */
	struct listener *ls;
	int fd;
	bool tcp;
	bool defer_accept;     /* TCP_DEFER_ACCEPT is on: accepted sockets have bytes waiting */
	bool keepalive;        /* SO_KEEPALIVE as set on the listen socket now */
	int tcp_tuning[4];     /* tcp_keepidle, _keepintvl, _keepcnt, tcp_user_timeout as set; 0 = system's */
};

struct listener {
	struct listen_sock socks[LISTENER_MAX];
	int n;
	bool inherit_checked;  /* first TCP accept looked at the accepted socket's options */
	bool inherits;         /* accepted sockets inherit TCP_NODELAY/SO_KEEPALIVE (Linux) */
	struct worker *w;
	char unix_path[256]; /* to unlink on stop; empty if none */
	dev_t unix_dev;      /* ...if the file there is still ours */
	ino_t unix_ino;
};

/* Bind and listen on everything the config names. False with err filled on failure. */
bool listener_start(struct listener *ls, struct worker *w, const struct config *cfg, char *err,
		    size_t errlen) BERTH_MUSTCHECK;
void listener_stop(struct listener *ls);
/* After a reload: the listen sockets' keepalive options, for the next client already. */
void listener_reconfigure(struct listener *ls, const struct config *cfg);
/* tcp_socket_buffer on one socket (listen, client or server); bytes <= 0 does nothing. */
void listener_set_socket_buffer(int fd, int bytes);

/* Address text and port of a peer or local address; unix sockets give "unix" and unix_port. */
void listener_format_addr(const struct sockaddr *sa, int unix_port, char *host, size_t hl, int *port);

#endif
