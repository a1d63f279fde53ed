/*
 * listener.c - listen sockets and accept. TCP addresses come from
 * listen_addr ("*" = every address, comma list allowed) and listen_port
 * (or listen = host:port); the unix socket lives in unix_socket_dir.
 * Never reads client bytes.
 */
#include "listener.h"

#include <errno.h>
#include <event2/listener.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "client.h"
#include "config.h"
#include "log.h"
#include "runtime.h"

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr, int len,
		      void *arg)
{
	(void)l;
	client_accept(arg, fd, addr, (socklen_t)len);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	(void)l;
	(void)arg;
	/* EMFILE and friends: log and carry on; libevent retries on the next readiness. */
	log_error("accept failed: %s", strerror(errno));
}

static bool listen_fd(struct listener *ls, struct worker *w, int fd, int backlog, char *err,
		      size_t errlen)
{
	if (ls->n == LISTENER_MAX) {
		snprintf(err, errlen, "too many listen addresses");
		close(fd);
		return false;
	}
	if (listen(fd, backlog) < 0) {
		snprintf(err, errlen, "listen: %s", strerror(errno));
		close(fd);
		return false;
	}
	evutil_make_socket_nonblocking(fd);
	struct evconnlistener *l = evconnlistener_new(
		w->base, accept_cb, w, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (!l) {
		snprintf(err, errlen, "evconnlistener_new failed");
		close(fd);
		return false;
	}
	evconnlistener_set_error_cb(l, accept_error_cb);
	ls->l[ls->n++] = l;
	return true;
}

static bool listen_tcp(struct listener *ls, struct worker *w, const char *host, int port,
		       int backlog, bool reuseport, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	char portstr[16];
	snprintf(portstr, sizeof(portstr), "%d", port);
	bool any = strcmp(host, "*") == 0;
	int rc = getaddrinfo(any ? NULL : host, portstr, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "listen_addr \"%s\": %s", host, gai_strerror(rc));
		return false;
	}
	int bound = 0;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		/* Another berth may listen on the same port: the kernel spreads new connections. */
		if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
			snprintf(err, errlen, "so_reuseport: %s", strerror(errno));
			close(fd);
			freeaddrinfo(res);
			return false;
		}
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			snprintf(err, errlen, "bind %s:%d: %s", host, port, strerror(errno));
			close(fd);
			if (any)
				continue; /* e.g. no IPv6 on this host */
			freeaddrinfo(res);
			return false;
		}
		if (!listen_fd(ls, w, fd, backlog, err, errlen)) {
			freeaddrinfo(res);
			return false;
		}
		bound++;
	}
	freeaddrinfo(res);
	if (!bound) {
		if (!err[0])
			snprintf(err, errlen, "no address to listen on for \"%s\"", host);
		return false;
	}
	return true;
}

static bool listen_unix(struct listener *ls, struct worker *w, const char *dir, int port, int mode,
			int backlog, char *err, size_t errlen)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/.s.PGSQL.%d", dir, port);
	if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "unix_socket_dir \"%s\" is too long", dir);
		return false;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return false;
	}
	unlink(sun.sun_path); /* a stale socket from a previous run */
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		snprintf(err, errlen, "bind %s: %s", sun.sun_path, strerror(errno));
		close(fd);
		return false;
	}
	chmod(sun.sun_path, (mode_t)mode);
	snprintf(ls->unix_path, sizeof(ls->unix_path), "%s", sun.sun_path);
	struct stat st;
	if (stat(sun.sun_path, &st) == 0) {
		ls->unix_ino = st.st_ino;
		ls->unix_dev = st.st_dev;
	}
	return listen_fd(ls, w, fd, backlog, err, errlen);
}

bool listener_start(struct listener *ls, struct worker *w, const struct config *cfg, char *err,
		    size_t errlen)
{
	memset(ls, 0, sizeof(*ls));
	ls->w = w;
	err[0] = 0;
	const char *addrs = cfg->listen_addr ? cfg->listen_addr : "";
	char one[256];
	for (const char *p = addrs; *p;) {
		while (*p == ',' || *p == ' ')
			p++;
		size_t m = strcspn(p, ", ");
		if (!m)
			break;
		snprintf(one, sizeof(one), "%.*s", (int)m, p);
		if (!listen_tcp(ls, w, one, cfg->listen_port, cfg->listen_backlog, cfg->so_reuseport,
				err, errlen)) {
			listener_stop(ls);
			return false;
		}
		p += m;
	}
	if (cfg->unix_socket_dir && cfg->unix_socket_dir[0] &&
	    !listen_unix(ls, w, cfg->unix_socket_dir, cfg->listen_port, cfg->unix_socket_mode,
			 cfg->listen_backlog, err, errlen)) {
		listener_stop(ls);
		return false;
	}
	if (ls->n == 0) {
		snprintf(err, errlen, "nothing to listen on: set listen_addr or unix_socket_dir");
		return false;
	}
	return true;
}

/*
 * Accept what already waits in the backlog: closing a listen socket resets
 * those connections, and with so_reuseport the kernel queued them here even
 * though another berth is ready to take the port over.
 */
static void drain_backlog(struct evconnlistener *l, struct worker *w)
{
	int fd = evconnlistener_get_fd(l);
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int c = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		client_accept(w, c, (struct sockaddr *)&ss, len);
	}
}

void listener_stop(struct listener *ls)
{
	for (int i = 0; i < ls->n; i++) {
		if (ls->w)
			drain_backlog(ls->l[i], ls->w);
		evconnlistener_free(ls->l[i]);
	}
	ls->n = 0;
	if (ls->unix_path[0]) {
		/* Unlink only our own socket file: a successor may have bound the path anew. */
		struct stat st;
		if (stat(ls->unix_path, &st) == 0 && st.st_ino == ls->unix_ino &&
		    st.st_dev == ls->unix_dev)
			unlink(ls->unix_path);
		ls->unix_path[0] = 0;
	}
}
