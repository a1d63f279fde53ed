/*
 * runtime.c - one worker: its event_base, evdns, freelists, deferred
 * release of closed objects, and the janitor timer that enforces timeouts
 * and reconnects pools after backoff. Holds no protocol state.
 */
#include "runtime.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "admin.h"
#include "client.h"
#include "config.h"
#include "health.h"
#include "errors.h"
#include "listener.h"
#include "log.h"
#include "pool.h"
#include "sbuf.h"
#include "server.h"
#include "stats.h"

/* Timeout granularity: query_wait_timeout etc. fire within this of their due time. */
#define JANITOR_PERIOD_US 100000

struct slab_block {
	struct slab_block *next;
	max_align_t align[]; /* objects follow */
};

void slab_init(struct slab *sl, size_t obj_size, size_t per_block)
{
	memset(sl, 0, sizeof(*sl));
	sl->obj_size = (obj_size + sizeof(void *) - 1) & ~(sizeof(void *) - 1);
	sl->per_block = per_block;
}

void *slab_alloc(struct slab *sl)
{
	if (!sl->free) {
		struct slab_block *b = malloc(sizeof(*b) + sl->obj_size * sl->per_block);
		if (!b)
			return NULL;
		b->next = sl->blocks;
		sl->blocks = b;
		char *base = (char *)b->align;
		for (size_t i = sl->per_block; i-- > 0;) {
			void **obj = (void **)(base + i * sl->obj_size);
			*obj = sl->free;
			sl->free = obj;
		}
	}
	void **obj = sl->free;
	sl->free = *obj;
	memset(obj, 0, sl->obj_size);
	sl->n_live++;
	return obj;
}

void slab_free(struct slab *sl, void *obj)
{
	*(void **)obj = sl->free;
	sl->free = obj;
	sl->n_live--;
}

size_t slab_free_count(const struct slab *sl)
{
	size_t n = 0;
	for (void *const *obj = sl->free; obj; obj = *obj)
		n++;
	return n;
}

void slab_destroy(struct slab *sl)
{
	while (sl->blocks) {
		struct slab_block *b = sl->blocks;
		sl->blocks = b->next;
		free(b);
	}
	sl->free = NULL;
}

int64_t worker_now_us(struct worker *w)
{
	/*
	 * One clock read per socket callback (sbuf.c sets io_now_us): a
	 * transaction asks for the time half a dozen times (state ages, wait and
	 * query timings, activity), and bytes that arrived together share one
	 * arrival time anyway. Outside a socket callback the clock is read.
	 */
	if (w->io_now_us)
		return w->io_now_us;
	return stats_now_us();
}

const struct config *worker_config(const struct worker *w)
{
	return w->rt->cfg;
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct list *pos, *tmp;
	(void)fd;
	(void)what;
	list_for_each_safe(pos, tmp, &w->closing_clients)
	{
		client_free(list_entry(pos, struct client, node));
	}
	list_for_each_safe(pos, tmp, &w->closing_servers)
	{
		server_free(list_entry(pos, struct server, node));
	}
}

void worker_schedule_reap(struct worker *w)
{
	event_active(&w->ev_reap, 0, 0);
}

static void janitor_pool(struct pool *p, int64_t now)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &p->cl_waiting)
	{
		client_check_timeouts(list_entry(pos, struct client, node), now);
	}
	list_for_each_safe(pos, tmp, &p->cl_login)
	{
		client_check_timeouts(list_entry(pos, struct client, node), now);
	}
	if (p->client_idle_timeout > 0 || p->idle_transaction_timeout > 0 ||
	    p->transaction_timeout > 0 || p->query_timeout > 0) {
		list_for_each_safe(pos, tmp, &p->cl_active)
		{
			client_check_timeouts(list_entry(pos, struct client, node), now);
		}
	}
	list_for_each_safe(pos, tmp, &p->sv_idle)
	{
		server_check_timeouts(list_entry(pos, struct server, node), now);
	}
	if (p->pool_mode == POOL_SESSION && worker_config(p->w)->server_fast_close) {
		list_for_each_safe(pos, tmp, &p->sv_active)
		{
			server_fast_close_if_idle(list_entry(pos, struct server, node));
		}
	}
	list_for_each_safe(pos, tmp, &p->sv_resetting)
	{
		server_check_timeouts(list_entry(pos, struct server, node), now);
	}
	pool_serve_stalled(p, now);
	pool_close_unwanted(p);
	pool_trim(p);
}

static void janitor_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	int64_t now = worker_now_us(w);
	struct list *pos, *tmp;
	(void)fd;
	(void)what;
	list_for_each_safe(pos, tmp, &w->login_clients)
	{
		client_check_timeouts(list_entry(pos, struct client, node), now);
	}
	list_for_each_safe(pos, tmp, &w->pools)
	{
		janitor_pool(list_entry(pos, struct pool, node), now);
	}
	pool_free_unused_autodbs(w, now);
	stats_maybe_roll(w, now);
	admin_janitor(w);
	if (w->rt->n_retired)
		runtime_collect(w->rt);
	if (w->rt->shutdown)
		runtime_check_shutdown(w->rt);
}

bool worker_init(struct worker *w, struct runtime *rt)
{
	memset(w, 0, sizeof(*w));
	w->rt = rt;
	w->pkt_buf = (size_t)rt->cfg->pkt_buf;
	w->base = event_base_new();
	if (!w->base)
		return false;
	w->dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
						 EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (!w->dns) {
		/* No resolv.conf nameservers: numeric hosts and unix sockets still work. */
		w->dns = evdns_base_new(w->base, 0);
		if (!w->dns)
			return false;
	}
	slab_init(&w->clients, sizeof(struct client), 64);
	list_init(&w->pools);
	list_init(&w->databases);
	list_init(&w->login_clients);
	list_init(&w->closing_clients);
	list_init(&w->closing_servers);
	list_init(&w->all_clients);
	list_init(&w->console_clients);
	w->stats_rolled_us = stats_now_us(); /* the first stats_period is a whole one */
	event_assign(&w->ev_reap, w->base, -1, 0, reap_cb, w);
	event_assign(&w->ev_janitor, w->base, -1, EV_PERSIST, janitor_cb, w);
	struct timeval tv = {.tv_sec = 0, .tv_usec = JANITOR_PERIOD_US};
	event_add(&w->ev_janitor, &tv);
	return true;
}

void worker_shutdown(struct worker *w)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->all_clients)
	{
		client_close(list_entry(pos, struct client, all_node), "shutdown");
	}
	list_for_each_safe(pos, tmp, &w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		struct list *lists[] = {&p->sv_connecting, &p->sv_idle, &p->sv_active, &p->sv_resetting};
		for (size_t i = 0; i < ARRAY_SIZE(lists); i++) {
			struct list *sp, *st;
			list_for_each_safe(sp, st, lists[i])
			{
				server_close(list_entry(sp, struct server, node), "shutdown");
			}
		}
	}
	reap_cb(-1, 0, w);
	pool_free_all(w);
	auth_cache_clear(&w->auth);
	pstmt_registry_free(&w->pstmts);
	while (w->free_iobufs) {
		struct iobuf *io = w->free_iobufs;
		w->free_iobufs = io->next_free;
		free(io);
	}
	slab_destroy(&w->clients);
	event_del(&w->ev_janitor);
	event_del(&w->ev_reap);
	evdns_base_free(w->dns, 0);
	event_base_free(w->base);
}

extern char **environ;

/* Keep the running value of every restart-only key that the new file changes. */
static void keep_restart_keys(const struct config *old, struct config *cfg)
{
	for (size_t i = 0; i < config_key_count(); i++) {
		if (!(config_key_flags(i) & CF_RESTART) || config_key_equal(old, cfg, i))
			continue;
		char val[512], err[256];
		config_key_format(old, i, val, sizeof(val));
		if (config_key_set(cfg, i, val, err, sizeof(err)))
			log_warn("reload: %s changed; it applies only after a restart", config_key_name(i));
		else
			log_warn("reload: %s changed and could not be kept: %s", config_key_name(i), err);
	}
}

/*
 * Sockets berth may hold at once: every client max_client_conn lets in,
 * each [databases] entry's servers (one user each: the usual case), and
 * some for listeners, logs, the health check, metrics and cancels.
 */
static rlim_t fds_needed(const struct config *cfg)
{
	rlim_t n = (rlim_t)cfg->max_client_conn + 64;
	for (size_t i = 0; i < cfg->n_dbs; i++) {
		const struct db_def *d = &cfg->dbs[i];
		int pool = d->pool_size >= 0 ? d->pool_size : cfg->default_pool_size;
		int reserve = d->reserve_pool_size >= 0 ? d->reserve_pool_size : cfg->reserve_pool_size;
		n += (rlim_t)(pool + reserve);
	}
	return n;
}

void runtime_fit_fd_limit(const struct config *cfg)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	rlim_t want = fds_needed(cfg);
	/* The hard limit, as HAProxy and Go programs take: fds cost nothing until opened. */
	rlim_t target = rl.rlim_max != RLIM_INFINITY ? rl.rlim_max : want;
	if (target > rl.rlim_cur) {
		struct rlimit raised = {target, rl.rlim_max};
		if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
			log_debug("open-file limit raised from %llu to %llu",
				  (unsigned long long)rl.rlim_cur, (unsigned long long)target);
			rl.rlim_cur = target;
		}
	}
	if (rl.rlim_cur < want)
		log_warn("max_client_conn %d and the pools need about %llu open files, but the limit is "
			 "%llu: clients past it wait in the listen backlog until others leave (raise "
			 "ulimit -n, or LimitNOFILE under systemd)",
			 cfg->max_client_conn, (unsigned long long)want,
			 (unsigned long long)rl.rlim_cur);
}

bool runtime_reload(struct runtime *rt, char *err, size_t errlen)
{
	struct config_error cerr;
	struct config *cfg = config_load(rt->config_path, environ, &cerr);
	if (!cfg) {
		snprintf(err, errlen, "%s", cerr.text);
		log_error("reload failed, configuration unchanged: %s", cerr.text);
		return false;
	}
	struct config **more = realloc(rt->retired, (rt->n_retired + 1) * sizeof(*more));
	if (!more) {
		snprintf(err, errlen, "out of memory");
		config_free(cfg);
		return false;
	}
	rt->retired = more;
	keep_restart_keys(rt->cfg, cfg);
	for (size_t i = 0; i < cfg->n_warnings; i++)
		log_warn("%s", cfg->warnings[i]);
	log_configure(cfg); /* log_level, log_format, logfile, syslog: all reloadable */
	/* Databases still point into the old config until they drain: retire it, free later. */
	struct config *old = rt->cfg;
	rt->retired[rt->n_retired++] = old;
	rt->cfg = cfg;
	pool_reconfigure(rt->worker, old, cfg);
	runtime_fit_fd_limit(cfg);
	health_reconfigure(rt->health);
	if (rt->listener)
		listener_reconfigure(rt->listener, cfg);
	runtime_collect(rt);
	log_info("configuration reloaded%s%s", rt->config_path ? " from " : "",
		 rt->config_path ? rt->config_path : "");
	return true;
}

static bool database_has_pools(struct worker *w, const struct database *db)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->pools)
	{
		if (list_entry(pos, struct pool, node)->db == db)
			return true;
	}
	return false;
}

static bool config_owns_def(const struct config *cfg, const struct db_def *def)
{
	return def >= cfg->dbs && def < cfg->dbs + cfg->n_dbs;
}

void runtime_collect(struct runtime *rt)
{
	struct worker *w = rt->worker;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		if (p->db->removed && pool_unused(p))
			pool_free(p);
	}
	list_for_each_safe(pos, tmp, &w->databases)
	{
		struct database *db = list_entry(pos, struct database, node);
		if (db->removed && db->n_servers == 0 && !database_has_pools(w, db)) {
			list_del(&db->node);
			free(db);
		}
	}
	size_t kept = 0;
	for (size_t i = 0; i < rt->n_retired; i++) {
		bool used = false;
		list_for_each_safe(pos, tmp, &w->databases)
		{
			struct database *db = list_entry(pos, struct database, node);
			used = used || config_owns_def(rt->retired[i], db->def);
		}
		if (used)
			rt->retired[kept++] = rt->retired[i];
		else
			config_free(rt->retired[i]);
	}
	rt->n_retired = kept;
}

void runtime_free_retired(struct runtime *rt)
{
	for (size_t i = 0; i < rt->n_retired; i++)
		config_free(rt->retired[i]);
	free(rt->retired);
	rt->retired = NULL;
	rt->n_retired = 0;
}

/* Tell every client why it goes (57P01, as PostgreSQL's own shutdown does). */
static void fail_all_clients(struct worker *w)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->all_clients)
	{
		struct client *c = list_entry(pos, struct client, all_node);
		if (c->state != CL_CLOSED)
			client_fail(c, ERR_ADMIN_SHUTDOWN,
				    "terminating connection due to administrator command");
	}
}

static bool servers_in_use(struct worker *w)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->pools)
	{
		if (!list_empty(&list_entry(pos, struct pool, node)->sv_active))
			return true;
	}
	return false;
}

static void runtime_finish(struct runtime *rt, const char *why)
{
	log_info("shutting down: %s", why);
	fail_all_clients(rt->worker);
	event_base_loopexit(rt->worker->base, NULL);
}

void runtime_check_shutdown(struct runtime *rt)
{
	struct worker *w = rt->worker;
	switch (rt->shutdown) {
	case SHUTDOWN_NONE:
		return;
	case SHUTDOWN_WAIT_CLIENTS:
		if (w->n_clients == 0) {
			runtime_finish(rt, "no clients left");
			return;
		}
		break;
	case SHUTDOWN_WAIT_SERVERS:
		if (!servers_in_use(w)) {
			runtime_finish(rt, "no server connection in use");
			return;
		}
		break;
	case SHUTDOWN_IMMEDIATE:
		runtime_finish(rt, "immediate");
		return;
	}
	if (rt->shutdown_deadline_us && worker_now_us(w) >= rt->shutdown_deadline_us)
		runtime_finish(rt, "shutdown_timeout reached");
}

void runtime_shutdown(struct runtime *rt, enum shutdown_mode mode)
{
	if (mode <= rt->shutdown)
		return;
	bool first = rt->shutdown == SHUTDOWN_NONE;
	rt->shutdown = mode;
	rt->shutting_down = true;
	if (first && mode != SHUTDOWN_IMMEDIATE) {
		int64_t limit = worker_config(rt->worker)->shutdown_timeout;
		rt->shutdown_deadline_us = limit > 0 ? worker_now_us(rt->worker) + limit : 0;
		log_info("shutting down: %s (up to %.1f s)",
			 mode == SHUTDOWN_WAIT_CLIENTS ? "no new connections, waiting for clients to leave"
						       : "waiting for server connections to be released",
			 (double)limit / 1e6);
	}
	/* Stop accepting (a second berth on the port with so_reuseport takes over). */
	if (rt->listener)
		listener_stop(rt->listener);
	runtime_check_shutdown(rt);
}
