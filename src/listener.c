/*
 * listener.c - listen sockets and accept. TCP addresses come from
 * listen_addr ("*" = every address, comma list allowed) and listen_port
 * (or listen = host:port); the unix socket lives in unix_socket_dir.
 *
 * A new connection costs as few syscalls and wake-ups as we can make it:
 * - TCP_DEFER_ACCEPT (tcp_defer_accept): the kernel wakes us only once the
 *   client's first packet is there, so accept and the first read share one
 *   wake-up and client_accept() reads at once;
 * - TCP_NODELAY and SO_KEEPALIVE are set on the listen socket, which Linux
 *   copies into every accepted one (checked on the first accept; if the
 *   platform does not, they are set per socket as before);
 * - one accept per readiness: the event is level-triggered, so a backlog is
 *   taken a connection per loop round instead of ending every wake-up with
 *   an accept that fails with EAGAIN.
 */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

/* Out of descriptors or memory: stop accepting this long instead of spinning. */
#define ACCEPT_PAUSE_MS 1000

static bool set_int_opt(int fd, int level, int name, int value)
{
	return setsockopt(fd, level, name, &value, sizeof(value)) == 0;
}

/* The listen socket's keepalive follows tcp_keepalive (a reloadable setting). */
static void sync_keepalive(struct listen_sock *s, const struct config *cfg)
{
	if (s->keepalive != cfg->tcp_keepalive &&
	    set_int_opt(s->fd, SOL_SOCKET, SO_KEEPALIVE, cfg->tcp_keepalive))
		s->keepalive = cfg->tcp_keepalive;
}

/*
 * tcp_keepidle, tcp_keepintvl, tcp_keepcnt and tcp_user_timeout, set on the
 * listen socket for accepted sockets to inherit, as TCP_NODELAY is. Back to
 * 0 after a reload means the system's value again: the sysctl's, since
 * TCP_KEEPIDLE and friends take no 0.
 */
static const struct {
	int opt;
	const char *sysctl; /* the system's default, or NULL when 0 is valid */
} tcp_tuning_opts[4] = {
	{TCP_KEEPIDLE, "/proc/sys/net/ipv4/tcp_keepalive_time"},
	{TCP_KEEPINTVL, "/proc/sys/net/ipv4/tcp_keepalive_intvl"},
	{TCP_KEEPCNT, "/proc/sys/net/ipv4/tcp_keepalive_probes"},
	{TCP_USER_TIMEOUT, NULL},
};

static void tcp_tuning_wanted(const struct config *cfg, int want[4])
{
	want[0] = cfg->tcp_keepidle;
	want[1] = cfg->tcp_keepintvl;
	want[2] = cfg->tcp_keepcnt;
	want[3] = cfg->tcp_user_timeout;
}

static bool read_sysctl_int(const char *path, int *out)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return false;
	bool ok = fscanf(f, "%d", out) == 1;
	fclose(f);
	return ok;
}

static void sync_tcp_tuning(struct listen_sock *s, const struct config *cfg)
{
	int want[4];
	tcp_tuning_wanted(cfg, want);
	for (int i = 0; i < 4; i++) {
		if (s->tcp_tuning[i] == want[i])
			continue;
		int v = want[i];
		if (v == 0 && tcp_tuning_opts[i].sysctl && !read_sysctl_int(tcp_tuning_opts[i].sysctl, &v))
			continue;
		if (set_int_opt(s->fd, IPPROTO_TCP, tcp_tuning_opts[i].opt, v))
			s->tcp_tuning[i] = want[i];
	}
}

/* Where sockets do not inherit: the non-default ones, per socket. */
static void set_tcp_tuning(int fd, const struct config *cfg)
{
	int want[4];
	tcp_tuning_wanted(cfg, want);
	for (int i = 0; i < 4; i++)
		if (want[i])
			set_int_opt(fd, IPPROTO_TCP, tcp_tuning_opts[i].opt, want[i]);
}

/*
 * First TCP accept: did the socket inherit the listener's options? If not
 * (not Linux), every accepted socket gets them set from now on.
 */
static void check_inherited(struct listener *ls, int fd)
{
	int v = 0;
	socklen_t len = sizeof(v);
	ls->inherit_checked = true;
	ls->inherits = getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len) == 0 && v;
	if (!ls->inherits)
		log_debug("accepted sockets do not inherit TCP_NODELAY: setting it per connection");
}

static void set_client_opts(struct listener *ls, int fd, const struct config *cfg)
{
	if (!ls->inherit_checked)
		check_inherited(ls, fd);
	if (ls->inherits)
		return;
	set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
	if (cfg->tcp_keepalive)
		set_int_opt(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
	set_tcp_tuning(fd, cfg);
	listener_set_socket_buffer(fd, cfg->tcp_socket_buffer);
}

/* tcp_socket_buffer: 0 leaves the kernel's autotuning alone. */
void listener_set_socket_buffer(int fd, int bytes)
{
	if (bytes <= 0)
		return;
	set_int_opt(fd, SOL_SOCKET, SO_SNDBUF, bytes);
	set_int_opt(fd, SOL_SOCKET, SO_RCVBUF, bytes);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listen_sock *s = arg;
	(void)fd;
	(void)what;
	event_add(&s->ev, NULL);
}

/* EMFILE and friends: the backlog stays readable, so pause instead of spinning. */
static void pause_accepting(struct listen_sock *s, int err)
{
	log_error("accept failed: %s; not accepting for %d ms", strerror(err), ACCEPT_PAUSE_MS);
	event_del(&s->ev);
	struct timeval tv = {ACCEPT_PAUSE_MS / 1000, (ACCEPT_PAUSE_MS % 1000) * 1000};
	evtimer_add(&s->pause, &tv);
}

/*
 * Accept one connection and hand it to client_accept(); false (errno set)
 * when none could be taken. With TCP_DEFER_ACCEPT its first bytes are
 * already there, so client_accept() reads them at once.
 */
static bool accept_one(struct listen_sock *s)
{
	struct listener *ls = s->ls;
	const struct config *cfg = worker_config(ls->w);
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int fd = accept4(s->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return false;
	if (s->tcp) {
		set_client_opts(ls, fd, cfg);
	}
	client_accept(ls->w, fd, (struct sockaddr *)&ss, len, s->tcp && s->defer_accept);
	return true;
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct listen_sock *s = arg;
	(void)lfd;
	(void)what;
	/* EAGAIN, EINTR, ECONNABORTED...: the next readiness tries again. */
	if (!accept_one(s) &&
	    (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM))
		pause_accepting(s, errno);
}

static bool listen_fd(struct listener *ls, struct worker *w, int fd, bool tcp, int backlog,
		      const struct config *cfg, char *err, size_t errlen)
{
	if (ls->n == LISTENER_MAX) {
		snprintf(err, errlen, "too many listen addresses");
		close(fd);
		return false;
	}
	/* Before listen(): accepted sockets inherit the sizes, and the window scale follows them. */
	listener_set_socket_buffer(fd, cfg->tcp_socket_buffer);
	if (listen(fd, backlog) < 0) {
		snprintf(err, errlen, "listen: %s", strerror(errno));
		close(fd);
		return false;
	}
	evutil_make_socket_nonblocking(fd);
	struct listen_sock *s = &ls->socks[ls->n];
	memset(s, 0, sizeof(*s));
	s->ls = ls;
	s->fd = fd;
	s->tcp = tcp;
	if (tcp) {
		set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
		if (cfg->tcp_keepalive && set_int_opt(fd, SOL_SOCKET, SO_KEEPALIVE, 1))
			s->keepalive = true;
		sync_tcp_tuning(s, cfg);
#ifdef TCP_DEFER_ACCEPT
		/*
		 * Not with so_reuseport: a connection still waiting for its first
		 * bytes is no accept-queue entry yet, so drain_backlog() cannot take
		 * it when this berth hands the port over, and the kernel resets it.
		 */
		s->defer_accept = cfg->tcp_defer_accept > 0 && !cfg->so_reuseport &&
				  set_int_opt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT,
					      (int)cfg->tcp_defer_accept);
#endif
	}
	if (event_assign(&s->ev, w->base, fd, EV_READ | EV_PERSIST, accept_cb, s) < 0 ||
	    evtimer_assign(&s->pause, w->base, resume_cb, s) < 0 || event_add(&s->ev, NULL) < 0) {
		snprintf(err, errlen, "could not watch the listen socket");
		close(fd);
		return false;
	}
	ls->n++;
	return true;
}

static bool listen_tcp(struct listener *ls, struct worker *w, const struct config *cfg,
		       const char *host, char *err, size_t errlen)
{
	int port = cfg->listen_port, backlog = cfg->listen_backlog;
	bool reuseport = cfg->so_reuseport;
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
		if (!listen_fd(ls, w, fd, true, backlog, cfg, err, errlen)) {
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

static bool listen_unix(struct listener *ls, struct worker *w, const struct config *cfg,
			char *err, size_t errlen)
{
	const char *dir = cfg->unix_socket_dir;
	int port = cfg->listen_port;
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
	chmod(sun.sun_path, (mode_t)cfg->unix_socket_mode);
	snprintf(ls->unix_path, sizeof(ls->unix_path), "%s", sun.sun_path);
	struct stat st;
	if (stat(sun.sun_path, &st) == 0) {
		ls->unix_ino = st.st_ino;
		ls->unix_dev = st.st_dev;
	}
	return listen_fd(ls, w, fd, false, cfg->listen_backlog, cfg, err, errlen);
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
		if (!listen_tcp(ls, w, cfg, one, err, errlen)) {
			listener_stop(ls);
			return false;
		}
		p += m;
	}
	if (cfg->unix_socket_dir && cfg->unix_socket_dir[0] &&
	    !listen_unix(ls, w, cfg, err, errlen)) {
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
static void drain_backlog(struct listen_sock *s)
{
	while (accept_one(s) || errno == EINTR)
		;
}

void listener_stop(struct listener *ls)
{
	for (int i = 0; i < ls->n; i++) {
		struct listen_sock *s = &ls->socks[i];
		if (ls->w)
			drain_backlog(s);
		event_del(&s->ev);
		event_del(&s->pause);
		close(s->fd);
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

void listener_reconfigure(struct listener *ls, const struct config *cfg)
{
	for (int i = 0; i < ls->n; i++) {
		if (ls->socks[i].tcp && ls->socks[i].fd >= 0) {
			sync_keepalive(&ls->socks[i], cfg);
			sync_tcp_tuning(&ls->socks[i], cfg);
		}
	}
}

void listener_format_addr(const struct sockaddr *sa, int unix_port, char *host, size_t hl, int *port)
{
	*port = 0;
	snprintf(host, hl, "%s", "");
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, (socklen_t)hl);
		*port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, (socklen_t)hl);
		*port = ntohs(in6->sin6_port);
	} else if (sa->sa_family == AF_UNIX) {
		snprintf(host, hl, "unix");
		*port = unix_port;
	}
}
