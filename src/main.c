/*
 * main.c - command line, configuration load, signals, start and stop order.
 * No pooling logic lives here. The only place that may exit().
 */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "build_config.h"
#include "config.h"
#include "health.h"
#include "http.h"
#include "listener.h"
#include "log.h"
#include "manpage.h"
#include "pidfile.h"
#include "runtime.h"

extern char **environ;

static void usage(FILE *out)
{
	fprintf(out,
		"berth - a PostgreSQL connection pooler\n"
		"\n"
		"Usage: berth [OPTIONS] [CONFIG_FILE]\n"
		"\n"
		"With no CONFIG_FILE berth runs in zero-file mode: DATABASE_URL names the\n"
		"upstream (postgres://user:password@host:port/dbname?options) and every setting\n"
		"can be given as BERTH_<SETTING> (e.g. BERTH_LISTEN=127.0.0.1:6432,\n"
		"BERTH_POOL_MODE=transaction, BERTH_POOL_SIZE=20). With CONFIG_FILE, an INI\n"
		"file in PgBouncer's format ([berth] or [pgbouncer], [databases], [users]);\n"
		"the environment still overrides it. Runs in the foreground, logs to stderr.\n"
		"\n"
		"Options:\n"
		"  -h, --help           show this help and exit\n"
		"  -V, --version        show the version and exit\n"
		"  -q, --quiet          do not log to stderr (logfile and syslog still get lines)\n"
		"      --config-doc     print the settings reference (doc/config.md) and exit\n"
		"      --config-sample  print a sample config with every setting and exit\n"
		"      --man            print the manual page (doc/berth.1, troff) and exit\n"
		"\n"
		"Settings: see doc/config.md. Exit status: 0 after a clean stop, 1 on a\n"
		"start-up failure, 2 on a configuration error.\n");
}

/*
 * Signals follow PgBouncer 1.23+, so service scripts carry over: SIGTERM
 * waits for clients to leave, SIGINT for server connections to be
 * released, a second SIGTERM/SIGINT or SIGQUIT exits at once.
 */
static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
	struct runtime *rt = arg;
	(void)what;
	enum shutdown_mode mode = sig == SIGTERM ? SHUTDOWN_WAIT_CLIENTS : SHUTDOWN_WAIT_SERVERS;
	if (sig == SIGQUIT || rt->shutdown != SHUTDOWN_NONE)
		mode = SHUTDOWN_IMMEDIATE;
	log_info("got signal %d (%s)", (int)sig, strsignal((int)sig));
	runtime_shutdown(rt, mode);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
	struct runtime *rt = arg;
	char err[512];
	(void)sig;
	(void)what;
	log_reopen(); /* a rotated logfile is reopened whatever the reload decides */
	log_info("got SIGHUP: reloading the configuration");
	if (!runtime_reload(rt, err, sizeof(err)))
		return; /* runtime_reload logged why; nothing changed */
}

/* SIGUSR1 and SIGUSR2 are PgBouncer's PAUSE and RESUME, with no console to answer. */
static void on_pause_signal(evutil_socket_t sig, short what, void *arg)
{
	struct runtime *rt = arg;
	(void)what;
	if (sig == SIGUSR1) {
		if (rt->shutdown != SHUTDOWN_NONE)
			log_warn("got SIGUSR1: not pausing, berth is shutting down");
		else if (admin_pause_all(rt->worker))
			log_info("got SIGUSR1: pausing (PAUSE)");
		else
			log_warn("got SIGUSR1: already paused or suspended");
		return;
	}
	const char *why = admin_resume_all(rt->worker);
	if (why)
		log_warn("got SIGUSR2: not resuming: %s", why);
	else
		log_info("got SIGUSR2: resuming (RESUME)");
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			return 0;
		}
		if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
			printf("berth %s\n", PACKAGE_VERSION);
			return 0;
		}
		if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
			log_set_quiet(true); /* PgBouncer's -q: only the other sinks log */
			continue;
		}
		if (strcmp(a, "--config-doc") == 0) {
			config_write_doc(stdout);
			return 0;
		}
		if (strcmp(a, "--config-sample") == 0) {
			config_write_sample(stdout);
			return 0;
		}
		if (strcmp(a, "--man") == 0) {
			manpage_write(stdout);
			return 0;
		}
		if (a[0] == '-') {
			fprintf(stderr, "berth: unknown option %s (see berth --help)\n", a);
			return 2;
		}
		if (path) {
			fprintf(stderr, "berth: only one config file may be given\n");
			return 2;
		}
		path = a;
	}

	struct config_error cerr;
	struct config *cfg = config_load(path, environ, &cerr);
	if (!cfg) {
		fprintf(stderr, "berth: configuration error: %s\n", cerr.text);
		return 2;
	}
	log_configure(cfg);
	for (size_t i = 0; i < cfg->n_warnings; i++)
		log_warn("%s", cfg->warnings[i]);
	runtime_fit_fd_limit(cfg);

	signal(SIGPIPE, SIG_IGN);
	/*
	 * No evthread_use_pthreads(): each event_base is touched by its own thread
	 * only (cancel helper threads never call libevent), so libevent's locks
	 * would cost a mutex round trip per event operation for nothing.
	 */

	struct runtime rt = {.cfg = cfg, .config_path = (char *)path};
	struct worker w;
	rt.worker = &w;
	if (!worker_init(&w, &rt)) {
		log_error("could not create the event loop");
		config_free(cfg);
		return 1;
	}
	struct listener ls;
	char err[512];
	/* The path as started: pidfile needs a restart, a reload keeps this one. */
	char *pidfile = cfg->pidfile && cfg->pidfile[0] ? strdup(cfg->pidfile) : NULL;
	if (pidfile && !pidfile_create(pidfile, err, sizeof(err))) {
		log_error("%s", err);
		free(pidfile);
		worker_shutdown(&w);
		config_free(cfg);
		return 1;
	}
	if (!listener_start(&ls, &w, cfg, err, sizeof(err))) {
		log_error("could not listen: %s", err);
		pidfile_remove(pidfile);
		free(pidfile);
		worker_shutdown(&w);
		config_free(cfg);
		return 1;
	}
	rt.listener = &ls;
	struct event *ev_term = evsignal_new(w.base, SIGTERM, on_stop_signal, &rt);
	struct event *ev_int = evsignal_new(w.base, SIGINT, on_stop_signal, &rt);
	struct event *ev_quit = evsignal_new(w.base, SIGQUIT, on_stop_signal, &rt);
	struct event *ev_hup = evsignal_new(w.base, SIGHUP, on_hup, &rt);
	struct event *ev_usr1 = evsignal_new(w.base, SIGUSR1, on_pause_signal, &rt);
	struct event *ev_usr2 = evsignal_new(w.base, SIGUSR2, on_pause_signal, &rt);
	event_add(ev_usr1, NULL);
	event_add(ev_usr2, NULL);
	event_add(ev_term, NULL);
	event_add(ev_int, NULL);
	event_add(ev_quit, NULL);
	event_add(ev_hup, NULL);

	log_info("berth %s listening on %s:%d%s%s, pool_mode %s, %zu database(s)", PACKAGE_VERSION,
		 cfg->listen_addr, cfg->listen_port, ls.unix_path[0] ? " and " : "", ls.unix_path,
		 pool_mode_name(cfg->pool_mode), cfg->n_dbs);
	int status = 0;
	struct http_server *http = NULL;
	if (!(rt.health = health_start(&w)) || !http_start(&rt, &http, err, sizeof(err))) {
		log_error("could not start: %s", rt.health ? err : "out of memory");
		status = 1; /* no loop; everything below is freed as after a stop */
	} else {
		log_attach_loop(w.base);
		event_base_dispatch(w.base);
		log_detach_loop();
	}
	http_stop(http); /* answered until the loop ended: the last thing before exit */
	health_stop(rt.health);

	listener_stop(&ls);
	event_free(ev_term);
	event_free(ev_int);
	event_free(ev_quit);
	event_free(ev_hup);
	event_free(ev_usr1);
	event_free(ev_usr2);
	worker_shutdown(&w);
	runtime_free_retired(&rt);
	pidfile_remove(pidfile);
	free(pidfile);
	log_shutdown();
	config_free(rt.cfg);
	libevent_global_shutdown();
	return status;
}
