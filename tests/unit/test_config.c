/*
 * test_config.c - config.c: every key's default, bounds and help; each
 * type's good and bad values; PgBouncer files; [databases] (conninfo and
 * URL), [users], auth_file, BERTH_<KEY>, DATABASE_URL; error texts that name
 * file:line:key and never a password. No network, no PostgreSQL.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "tls.h"
#include "log.h"

static char tmpdir[64];

/* Write content to tmpdir/name; returns the path (static ring of buffers). */
static const char *write_file(const char *name, const char *content)
{
	static char paths[8][256];
	static unsigned next;
	char *path = paths[next++ % 8];
	snprintf(path, 256, "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(content, 1, strlen(content), f), strlen(content));
	assert_int_equal(fclose(f), 0);
	return path;
}

static struct config *load_ok(const char *path, char **envp)
{
	struct config_error err = {{0}};
	struct config *cfg = config_load(path, envp, &err);
	if (!cfg)
		fail_msg("config_load failed: %s", err.text);
	return cfg;
}

/* Load must fail; err.text must contain every needle (NULL-terminated list). */
static void load_fails(const char *path, char **envp, ...)
{
	struct config_error err = {{0}};
	struct config *cfg = config_load(path, envp, &err);
	if (cfg) {
		config_free(cfg);
		fail_msg("config_load unexpectedly succeeded for %s", path ? path : "(no file)");
	}
	va_list ap;
	va_start(ap, envp);
	for (const char *needle; (needle = va_arg(ap, const char *));)
		if (!strstr(err.text, needle))
			fail_msg("error \"%s\" lacks \"%s\"", err.text, needle);
	va_end(ap);
}

/* Error text of a failing load, for checks that something is absent. */
static void load_error_text(const char *path, char **envp, char *out, size_t len)
{
	struct config_error err = {{0}};
	struct config *cfg = config_load(path, envp, &err);
	if (cfg) {
		config_free(cfg);
		fail_msg("config_load unexpectedly succeeded");
	}
	assert_true(err.text[0] != '\0');
	snprintf(out, len, "%s", err.text);
}

static struct config *load_main(const char *body)
{
	char buf[4096];
	snprintf(buf, sizeof(buf), "[berth]\nauth_type = trust\n%s", body);
	return load_ok(write_file("main.ini", buf), NULL);
}

static void test_operations_settings(void **state)
{
	(void)state;
	struct config *cfg = load_main("");
	assert_string_equal(cfg->server_check_query, "select 1");
	assert_true(cfg->server_check_delay == 30000000);
	assert_true(cfg->shutdown_timeout == 30000000);
	assert_true(cfg->stats_period == 60000000);
	assert_false(cfg->so_reuseport);
	config_free(cfg);
	cfg = load_main("server_check_query =\nserver_check_delay = 0.5\nshutdown_timeout = 0\n"
			"stats_period = 15s\nso_reuseport = 1\n");
	assert_string_equal(cfg->server_check_query, "");
	assert_true(cfg->server_check_delay == 500000);
	assert_true(cfg->shutdown_timeout == 0);
	assert_true(cfg->stats_period == 15000000);
	assert_true(cfg->so_reuseport);
	config_free(cfg);
	load_fails(write_file("bad.ini", "[berth]\nso_reuseport = maybe\n"), NULL, ":2:",
		   "so_reuseport", (char *)NULL);
}

static size_t key(const char *name)
{
	int i = config_key_lookup(name);
	if (i < 0)
		fail_msg("no key %s", name);
	return (size_t)i;
}

static const char *db_kw(const struct db_def *db, const char *kw)
{
	for (size_t i = 0; db->keywords[i]; i++)
		if (strcmp(db->keywords[i], kw) == 0)
			return db->values[i];
	return NULL;
}

static void assert_set_ok(struct config *cfg, const char *name, const char *value)
{
	char err[256] = "";
	if (!config_key_set(cfg, key(name), value, err, sizeof(err)))
		fail_msg("set %s = \"%s\" failed: %s", name, value, err);
}

static void assert_set_fails(struct config *cfg, const char *name, const char *value,
			     const char *needle)
{
	char before[256], after[256], err[256] = "";
	config_key_format(cfg, key(name), before, sizeof(before));
	if (config_key_set(cfg, key(name), value, err, sizeof(err)))
		fail_msg("set %s = \"%s\" unexpectedly succeeded", name, value);
	if (!strstr(err, name))
		fail_msg("error \"%s\" does not name key %s", err, name);
	if (needle && !strstr(err, needle))
		fail_msg("error \"%s\" lacks \"%s\"", err, needle);
	config_key_format(cfg, key(name), after, sizeof(after));
	assert_string_equal(before, after); /* a failed set changes nothing */
}

static void assert_formats(struct config *cfg, const char *name, const char *want)
{
	char buf[256];
	config_key_format(cfg, key(name), buf, sizeof(buf));
	assert_string_equal(buf, want);
}

static int group_setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/berth-test-config-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	DIR *d = opendir(tmpdir);
	if (d) {
		struct dirent *e;
		char path[512];
		while ((e = readdir(d))) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s", tmpdir, e->d_name);
			unlink(path);
		}
		closedir(d);
	}
	return rmdir(tmpdir);
}

/* ------------------------------------------------------------------ */

static void test_every_key_default_help_roundtrip(void **state)
{
	(void)state;
	/* zero-file mode: every setting keeps its default */
	char *env[] = {"DATABASE_URL=postgres://u:p@h/d", NULL};
	struct config *cfg = load_ok(NULL, env);
	assert_true(config_key_count() > 30);
	for (size_t i = 0; i < config_key_count(); i++) {
		const char *name = config_key_name(i);
		assert_non_null(name);
		assert_non_null(config_key_help(i));
		if (strlen(config_key_help(i)) < 10)
			fail_msg("key %s has no real help text", name);
		assert_int_equal(config_key_lookup(name), (int)i);
		int flags = config_key_flags(i);
		/* exactly one of reload/restart */
		assert_true(((flags & CF_RELOAD) != 0) != ((flags & CF_RESTART) != 0));
		/* the loaded value is the default, shown as written in config_keys.h */
		char buf[256], err[256];
		config_key_format(cfg, i, buf, sizeof(buf));
		if (!(flags & CF_SECRET))
			assert_string_equal(buf, config_key_default(i));
		/* default parses; format -> set -> format round-trips */
		if (!config_key_set(cfg, i, config_key_default(i), err, sizeof(err)))
			fail_msg("default of %s does not parse: %s", name, err);
		if (!config_key_set(cfg, i, buf, err, sizeof(err)))
			fail_msg("formatted %s does not parse: %s", name, err);
		char again[256];
		config_key_format(cfg, i, again, sizeof(again));
		assert_string_equal(buf, again);
	}
	assert_int_equal(config_key_lookup("no_such_key"), -1);
	assert_int_equal(config_key_lookup("LISTEN_PORT"), (int)key("listen_port"));
	assert_null(config_key_name(config_key_count()));
	config_free(cfg);
}

static void test_defaults_in_struct(void **state)
{
	(void)state;
	struct config *cfg = load_main("");
	assert_string_equal(cfg->listen_addr, "127.0.0.1");
	assert_int_equal(cfg->listen_port, 6432);
	assert_int_equal(cfg->pool_mode, POOL_TRANSACTION);
	assert_int_equal(cfg->auth_type, AUTH_TRUST);
	assert_int_equal(cfg->default_pool_size, 20);
	assert_true(cfg->server_idle_timeout == 600 * INT64_C(1000000));
	assert_true(cfg->reserve_pool_timeout == 5 * INT64_C(1000000));
	assert_true(cfg->pkt_buf == 16384);
	assert_true(cfg->max_packet_size == 2147483647);
	assert_true(cfg->tcp_keepalive);
	assert_false(cfg->server_reset_query_always);
	assert_string_equal(cfg->server_reset_query, "DISCARD ALL");
	assert_int_equal(cfg->unix_socket_mode, 511);
	assert_int_equal(cfg->n_dbs, 0);
	assert_int_equal(cfg->n_warnings, 0);
	assert_non_null(cfg->path);
	config_free(cfg);
}

static void test_bounds_enforced(void **state)
{
	(void)state;
	struct config *cfg = load_main("");
	for (size_t i = 0; i < config_key_count(); i++) {
		enum config_type t = config_key_type(i);
		if (t != CT_INT && t != CT_SIZE)
			continue;
		int64_t min, max;
		char v[64], err[256];
		config_key_bounds(i, &min, &max);
		assert_true(min <= max);
		snprintf(v, sizeof(v), "%lld", (long long)min);
		assert_true(config_key_set(cfg, i, v, err, sizeof(err)));
		snprintf(v, sizeof(v), "%lld", (long long)max);
		assert_true(config_key_set(cfg, i, v, err, sizeof(err)));
		snprintf(v, sizeof(v), "%lld", (long long)min - 1);
		if (config_key_set(cfg, i, v, err, sizeof(err)))
			fail_msg("%s accepted %s below its minimum", config_key_name(i), v);
		assert_non_null(strstr(err, "out of range"));
		snprintf(v, sizeof(v), "%lld", (long long)max + 1);
		if (config_key_set(cfg, i, v, err, sizeof(err)))
			fail_msg("%s accepted %s above its maximum", config_key_name(i), v);
		assert_non_null(strstr(err, config_key_name(i)));
	}
	config_free(cfg);

	/* and in a file, with file:line:key */
	const char *p =
		write_file("bounds.ini", "[berth]\nauth_type = trust\n\ndefault_pool_size = 0\n");
	char needle[300];
	snprintf(needle, sizeof(needle), "%s:4: key \"default_pool_size\"", p);
	load_fails(p, NULL, needle, "out of range", (char *)NULL);
}

static void test_int_values(void **state)
{
	(void)state;
	struct config *cfg = load_main("unix_socket_mode = 0777\n");
	assert_int_equal(cfg->unix_socket_mode, 0777); /* octal, as in PgBouncer */
	assert_set_ok(cfg, "default_pool_size", "0x10");
	assert_int_equal(cfg->default_pool_size, 16);
	assert_set_ok(cfg, "default_pool_size", "42");
	assert_int_equal(cfg->default_pool_size, 42);
	const char *bad[] = {"abc", "12abc", "", "1.5", " 5", "99999999999999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_set_fails(cfg, "default_pool_size", bad[i], NULL);
	assert_set_fails(cfg, "default_pool_size", "abc", "\"abc\" is not an integer");
	config_free(cfg);
}

static void test_bool_values(void **state)
{
	(void)state;
	struct config *cfg = load_main("");
	const char *yes[] = {"1", "yes", "on", "true", "TRUE", "Yes"};
	const char *no[] = {"0", "no", "off", "false", "OFF"};
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		assert_set_ok(cfg, "log_connections", yes[i]);
		assert_true(cfg->log_connections);
		assert_formats(cfg, "log_connections", "1");
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		assert_set_ok(cfg, "log_connections", no[i]);
		assert_false(cfg->log_connections);
		assert_formats(cfg, "log_connections", "0");
	}
	assert_set_fails(cfg, "log_connections", "2", "not a boolean");
	assert_set_fails(cfg, "log_connections", "maybe", "not a boolean");
	assert_set_fails(cfg, "log_connections", "", "not a boolean");
	config_free(cfg);
}

static void test_time_values(void **state)
{
	(void)state;
	struct config *cfg = load_main("query_wait_timeout = 0.25\nserver_lifetime = 2min\n");
	assert_true(cfg->query_wait_timeout == 250000);
	assert_true(cfg->server_lifetime == 120 * INT64_C(1000000));
	assert_formats(cfg, "query_wait_timeout", "0.25");
	assert_formats(cfg, "server_lifetime", "120");
	static const struct {
		const char *in;
		int64_t us;
		const char *shown;
	} cases[] = {
		{"15", 15000000, "15"},       {"1.5", 1500000, "1.5"},
		{"250ms", 250000, "0.25"},    {"10us", 10, "0.00001"},
		{"5 s", 5000000, "5"},        {"1h", 3600000000, "3600"},
		{"1d", 86400000000, "86400"}, {"0", 0, "0"},
		{".5", 500000, "0.5"},        {"3MIN", 180000000, "180"},
		{"0.000001", 1, "0.000001"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_set_ok(cfg, "client_idle_timeout", cases[i].in);
		if (cfg->client_idle_timeout != cases[i].us)
			fail_msg("\"%s\" gave %lld us", cases[i].in,
				 (long long)cfg->client_idle_timeout);
		assert_formats(cfg, "client_idle_timeout", cases[i].shown);
	}
	const char *bad[] = {"-1", "abc", "5x", "", "1e3", "5 sec", "1.2.3", "99999999999999999d"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_set_fails(cfg, "client_idle_timeout", bad[i], NULL);
	config_free(cfg);
}

/* http_listen is host:port or empty; health_check_* times have floors (a 0 would spin). */
static void test_http_and_health_keys(void **state)
{
	(void)state;
	struct config *cfg = load_main("");
	assert_string_equal(cfg->http_listen, "");
	assert_true(cfg->health_check_period == 5000000);
	assert_true(cfg->health_check_timeout == 2000000);
	assert_true(cfg->health_check_backoff_max == 30000000);
	config_free(cfg);

	cfg = load_main("http_listen = 127.0.0.1:9127\nhealth_check_period = 1.5\n"
			"health_check_timeout = 250ms\nhealth_check_backoff_max = 10\n");
	assert_string_equal(cfg->http_listen, "127.0.0.1:9127");
	assert_true(cfg->health_check_period == 1500000);
	assert_true(cfg->health_check_timeout == 250000);
	assert_true(cfg->health_check_backoff_max == 10000000);
	assert_set_ok(cfg, "http_listen", "[::1]:8080");
	assert_set_ok(cfg, "http_listen", "*:8080");
	assert_set_ok(cfg, "http_listen", "");
	const char *bad_listen[] = {"nohost", "[::1]9127", "host:0", ":80", "::1:80", "h:x"};
	for (size_t i = 0; i < sizeof(bad_listen) / sizeof(bad_listen[0]); i++)
		assert_set_fails(cfg, "http_listen", bad_listen[i], NULL);
	assert_set_fails(cfg, "health_check_period", "0", "at least 0.1");
	assert_set_fails(cfg, "health_check_period", "50ms", "at least 0.1");
	assert_set_ok(cfg, "health_check_period", "100ms");
	assert_set_fails(cfg, "health_check_timeout", "0", "at least 0.01");
	assert_set_ok(cfg, "health_check_timeout", "10ms");
	assert_set_fails(cfg, "health_check_backoff_max", "0.2", "at least 0.25");
	assert_set_ok(cfg, "health_check_backoff_max", "0.25");
	config_free(cfg);

	char *env[] = {"BERTH_AUTH_TYPE=trust", "BERTH_HTTP_LISTEN=127.0.0.1:9999",
		       "BERTH_HEALTH_CHECK_PERIOD=2", "DATABASE_URL=postgres://u:pw@h/d", NULL};
	cfg = load_ok(NULL, env);
	assert_string_equal(cfg->http_listen, "127.0.0.1:9999");
	assert_true(cfg->health_check_period == 2000000);
	config_free(cfg);

	const char *p = write_file("badhttp.ini", "[berth]\nauth_type = trust\nhttp_listen = x\n");
	load_fails(p, NULL, ":3:", "http_listen", (char *)NULL);

	char *host = NULL;
	int port = 0;
	char err[128];
	assert_true(config_parse_listen("[::1]:9127", &host, &port, err, sizeof(err)));
	assert_string_equal(host, "::1");
	assert_int_equal(port, 9127);
	free(host);
	assert_false(config_parse_listen("9127", NULL, NULL, err, sizeof(err)));
}

static void test_size_values(void **state)
{
	(void)state;
	struct config *cfg = load_main("pkt_buf = 64kB\n");
	assert_true(cfg->pkt_buf == 65536);
	assert_formats(cfg, "pkt_buf", "65536");
	assert_set_ok(cfg, "pkt_buf", "1MB");
	assert_true(cfg->pkt_buf == 1048576);
	assert_set_ok(cfg, "pkt_buf", "8 kb");
	assert_true(cfg->pkt_buf == 8192);
	assert_set_ok(cfg, "max_packet_size", "1GB");
	assert_true(cfg->max_packet_size == 1073741824);
	assert_set_fails(cfg, "pkt_buf", "4095", "out of range");
	assert_set_fails(cfg, "pkt_buf", "2MB", "out of range");
	assert_set_fails(cfg, "max_packet_size", "2GB", "out of range");
	assert_set_fails(cfg, "pkt_buf", "1TB", "not a size");
	assert_set_fails(cfg, "pkt_buf", "abc", "not a size");
	assert_set_fails(cfg, "pkt_buf", "-5", "not a size");
	assert_set_fails(cfg, "pkt_buf", "1.5kB", "not a size");
	config_free(cfg);
}

static void test_enum_values(void **state)
{
	(void)state;
	struct config *cfg = load_main("pool_mode = session\n");
	assert_int_equal(cfg->pool_mode, POOL_SESSION);
	assert_set_ok(cfg, "pool_mode", "TRANSACTION");
	assert_int_equal(cfg->pool_mode, POOL_TRANSACTION);
	assert_formats(cfg, "pool_mode", "transaction");
	assert_set_ok(cfg, "pool_mode", "Statement");
	assert_int_equal(cfg->pool_mode, POOL_STATEMENT);
	assert_formats(cfg, "pool_mode", "statement");
	assert_set_fails(cfg, "pool_mode", "bogus", "not one of: session, transaction, statement");
	const char *modes[] = {"scram-sha-256", "md5", "plain", "trust", "cert", "hba"};
	for (size_t i = 0; i < ARRAY_SIZE(modes); i++) {
		assert_set_ok(cfg, "auth_type", modes[i]);
		assert_int_equal(cfg->auth_type, (int)i);
		assert_string_equal(auth_type_name(cfg->auth_type), modes[i]);
	}
	const char *refused[] = {"any", "ldap", "pam"};
	for (size_t i = 0; i < ARRAY_SIZE(refused); i++)
		assert_set_fails(cfg, "auth_type", refused[i], "not support");
	assert_set_fails(cfg, "auth_type", "password", "not one of");
	assert_string_equal(pool_mode_name(POOL_SESSION), "session");
	assert_string_equal(pool_mode_name(POOL_TRANSACTION), "transaction");
	assert_string_equal(pool_mode_name(POOL_STATEMENT), "statement");
	config_free(cfg);
}

static void test_string_values(void **state)
{
	(void)state;
	struct config *cfg =
		load_main("log_level = info, debug\nserver_reset_query = DISCARD ALL; # kept\n");
	assert_string_equal(cfg->log_level, "info, debug");
	/* ; and # later in a line are part of the value, as in PgBouncer */
	assert_string_equal(cfg->server_reset_query, "DISCARD ALL; # kept");
	assert_set_fails(cfg, "log_level", "error,verbose", "verbose");
	assert_set_ok(cfg, "log_level", "");
	assert_set_ok(cfg, "admin_users", "alice, bob");
	assert_string_equal(cfg->admin_users, "alice, bob");

	assert_set_ok(cfg, "listen", "0.0.0.0:7000");
	assert_string_equal(cfg->listen_addr, "0.0.0.0");
	assert_int_equal(cfg->listen_port, 7000);
	assert_set_ok(cfg, "listen", "[::1]:6000");
	assert_string_equal(cfg->listen_addr, "::1");
	assert_int_equal(cfg->listen_port, 6000);
	assert_set_ok(cfg, "listen", "*:5");
	assert_string_equal(cfg->listen_addr, "*");
	const char *bad[] = {"::1:6000", "host:0", "host:99999", "host", ":5", "[::1]6000", "h:5x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_set_fails(cfg, "listen", bad[i], NULL);
	config_free(cfg);

	/* listen wins over listen_addr/listen_port, whatever the order in the file */
	cfg = load_main("listen = 10.1.2.3:7432\nlisten_addr = 1.1.1.1\nlisten_port = 9999\n");
	assert_string_equal(cfg->listen_addr, "10.1.2.3");
	assert_int_equal(cfg->listen_port, 7432);
	config_free(cfg);

	const char *p =
		write_file("badlisten.ini", "[berth]\nauth_type = trust\nlisten = nohost\n");
	load_fails(p, NULL, ":3:", "listen", (char *)NULL);
}

static void test_log_settings(void **state)
{
	(void)state;
	struct config *cfg = load_main("");
	assert_int_equal(cfg->log_format, LOG_FORMAT_TEXT);
	assert_string_equal(cfg->logfile, "");
	assert_false(cfg->syslog);
	assert_string_equal(cfg->syslog_ident, "berth");
	assert_string_equal(cfg->syslog_facility, "daemon");
	assert_int_equal(cfg->log_query_max_length, 1024);
	assert_true(cfg->log_min_duration == 0);
	assert_false(cfg->log_parameters);
	config_free(cfg);

	/* PgBouncer's names in a PgBouncer file */
	cfg = load_main("log_format = json\nlogfile = /var/log/berth.log\nsyslog = 1\n"
			"syslog_ident = pgb\nsyslog_facility = local3\nlog_query_max_length = 80\n"
			"log_min_duration = 250ms\nlog_parameters = on\n");
	assert_int_equal(cfg->log_format, LOG_FORMAT_JSON);
	assert_string_equal(cfg->logfile, "/var/log/berth.log");
	assert_true(cfg->syslog);
	assert_string_equal(cfg->syslog_ident, "pgb");
	assert_string_equal(cfg->syslog_facility, "local3");
	assert_int_equal(cfg->log_query_max_length, 80);
	assert_true(cfg->log_min_duration == 250000);
	assert_true(cfg->log_parameters);
	assert_int_equal(cfg->n_warnings, 0);
	assert_formats(cfg, "log_format", "json");

	assert_set_fails(cfg, "log_format", "xml", "not one of: text, json");
	assert_set_fails(cfg, "syslog_facility", "local9", "local9");
	assert_set_ok(cfg, "syslog_facility", "AUTHPRIV");
	assert_set_fails(cfg, "log_query_max_length", "-1", "out of range");
	assert_set_fails(cfg, "log_query_max_length", "65537", "out of range");
	assert_set_ok(cfg, "log_query_max_length", "0");
	assert_set_fails(cfg, "log_min_duration", "soon", NULL);
	assert_set_ok(cfg, "log_min_duration", "1.5");
	assert_true(cfg->log_min_duration == 1500000);
	config_free(cfg);

	/* and from the environment */
	char *env[] = {"BERTH_LOG_FORMAT=json", "BERTH_LOGFILE=/tmp/x.log", "BERTH_LOG_PARAMETERS=1",
		       "BERTH_LOG_MIN_DURATION=10ms", "BERTH_LOG_QUERY_MAX_LENGTH=32",
		       "BERTH_SYSLOG=yes", NULL};
	cfg = load_ok(write_file("logenv.ini", "[berth]\nauth_type = trust\n"), env);
	assert_int_equal(cfg->log_format, LOG_FORMAT_JSON);
	assert_string_equal(cfg->logfile, "/tmp/x.log");
	assert_true(cfg->log_parameters);
	assert_true(cfg->log_min_duration == 10000);
	assert_int_equal(cfg->log_query_max_length, 32);
	assert_true(cfg->syslog);
	config_free(cfg);
}

static void test_alias_pool_size(void **state)
{
	(void)state;
	assert_int_equal(config_key_lookup("pool_size"), (int)key("default_pool_size"));
	assert_int_equal(config_key_lookup("POOL_SIZE"), (int)key("default_pool_size"));
	struct config *cfg = load_main("pool_size = 7\n");
	assert_int_equal(cfg->default_pool_size, 7);
	config_free(cfg);

	char *env[] = {"BERTH_POOL_SIZE=9", NULL};
	cfg = load_ok(write_file("alias.ini", "[berth]\nauth_type = trust\n"), env);
	assert_int_equal(cfg->default_pool_size, 9);
	config_free(cfg);
}

/* The accessors the man page's SETTINGS section is written from. */
static void test_enum_alias_type_accessors(void **state)
{
	(void)state;
	size_t pm = key("pool_mode"), dps = key("default_pool_size");
	/* accepted values in table order */
	assert_string_equal(config_key_enum_value(pm, 0), "session");
	assert_string_equal(config_key_enum_value(pm, 1), "transaction");
	assert_string_equal(config_key_enum_value(pm, 2), "statement");
	assert_null(config_key_enum_value(pm, 3));
	assert_string_equal(config_key_enum_value(key("auth_type"), 0), "scram-sha-256");
	assert_null(config_key_enum_value(dps, 0));
	assert_null(config_key_enum_value(config_key_count(), 0));

	assert_string_equal(config_key_alias(dps, 0), "pool_size");
	assert_null(config_key_alias(dps, 1));
	assert_null(config_key_alias(pm, 0));
	assert_null(config_key_alias(config_key_count(), 0));

	assert_string_equal(config_type_name(config_key_type(dps)), "integer");
	assert_string_equal(config_type_name(config_key_type(pm)), "enum");
	assert_string_equal(config_type_name(config_key_type(key("pkt_buf"))), "size");
}

static void test_pgbouncer_section_and_case(void **state)
{
	(void)state;
	const char *p =
		write_file("pgb.ini", "[pgbouncer]\nAuth_Type = trust\nDEFAULT_POOL_SIZE = 3\n"
				      "[Databases]\napp = host=x\n");
	struct config *cfg = load_ok(p, NULL);
	assert_int_equal(cfg->default_pool_size, 3);
	assert_int_equal(cfg->n_dbs, 1);
	config_free(cfg);
}

static void test_realistic_pgbouncer_file(void **state)
{
	(void)state;
	const char *auth =
		write_file("userlist.txt", "\"app\" \"md5a3556571e93b0d20722ba62be61e8c2d\"\n"
					   "\"admin\" \"admin-password\"\n");
	char ini[4096];
	snprintf(ini, sizeof(ini),
		 ";; pgbouncer.ini as shipped and edited\n"
		 "[databases]\n"
		 "appdb = host=10.0.0.5 port=5432 dbname=app_production\n"
		 "reports = host=10.0.0.6 dbname=reports user=reporter password=rep0rts "
		 "pool_size=5\n"
		 "legacy = host=/var/run/postgresql pool_mode=session client_encoding=UTF8 "
		 "datestyle='ISO, MDY' timezone=UTC\n"
		 "* = host=10.0.0.5\n"
		 "\n"
		 "[users]\n"
		 "batch = pool_mode=session max_user_connections=4\n"
		 "\n"
		 "[pgbouncer]\n"
		 "logfile = /var/log/pgbouncer/pgbouncer.log\n"
		 "pidfile = /var/run/pgbouncer/pgbouncer.pid\n"
		 "listen_addr = *\n"
		 "listen_port = 6432\n"
		 "unix_socket_dir = /var/run/postgresql\n"
		 "unix_socket_mode = 0777\n"
		 "auth_type = md5\n"
		 "auth_file = %s\n"
		 "admin_users = admin\n"
		 "stats_users = stats, monitor\n"
		 "pool_mode = transaction\n"
		 "server_reset_query = DISCARD ALL\n"
		 "ignore_startup_parameters = extra_float_digits\n"
		 "max_client_conn = 500\n"
		 "default_pool_size = 25\n"
		 "min_pool_size = 2\n"
		 "reserve_pool_size = 5\n"
		 "reserve_pool_timeout = 3\n"
		 "max_db_connections = 100\n"
		 "server_lifetime = 3600\n"
		 "server_idle_timeout = 600\n"
		 "server_connect_timeout = 15\n"
		 "server_login_retry = 15\n"
		 "query_wait_timeout = 120\n"
		 "client_login_timeout = 60\n"
		 "log_connections = 1\n"
		 "log_disconnections = 1\n"
		 "log_pooler_errors = 1\n"
		 "stats_period = 60\n"
		 "tcp_keepalive = 1\n"
		 "dns_max_ttl = 15\n"
		 "pkt_buf = 4096\n"
		 "client_tls_sslmode = disable\n"
		 "server_tls_sslmode = prefer\n",
		 auth);
	const char *p = write_file("pgbouncer.ini", ini);
	struct config *cfg = load_ok(p, NULL);
	assert_int_equal(cfg->auth_type, AUTH_MD5);
	assert_int_equal(cfg->max_client_conn, 500);
	assert_int_equal(cfg->default_pool_size, 25);
	assert_int_equal(cfg->unix_socket_mode, 0777);
	assert_string_equal(cfg->listen_addr, "*");
	assert_true(cfg->reserve_pool_timeout == 3000000);
	assert_int_equal(cfg->n_dbs, 4);
	assert_int_equal(cfg->n_users, 1);
	assert_int_equal(cfg->n_auth, 2);
	assert_non_null(config_find_auth(cfg, "app"));
	assert_null(config_find_auth(cfg, "nobody"));

	const struct db_def *legacy = config_find_db(cfg, "legacy");
	assert_non_null(legacy);
	assert_int_equal(legacy->pool_mode, POOL_SESSION);
	assert_string_equal(db_kw(legacy, "client_encoding"), "UTF8");
	assert_string_equal(db_kw(legacy, "options"), "-c datestyle=ISO,\\ MDY -c timezone=UTC");
	const struct db_def *other = config_find_db(cfg, "somethingelse");
	assert_non_null(other);
	assert_string_equal(other->name, "*");

	assert_string_equal(cfg->logfile, "/var/log/pgbouncer/pgbouncer.log");
	assert_string_equal(cfg->pidfile, "/var/run/pgbouncer/pgbouncer.pid");
	/* the settings berth does not have are warnings naming file and line */
	assert_int_equal(cfg->n_warnings, 3);
	assert_int_equal(cfg->client_tls_sslmode, TLS_DISABLE);
	assert_null(cfg->client_tls);
	assert_string_equal(cfg->server_tls_sslmode, "prefer");
	assert_true(cfg->stats_period == 60000000);
	char want[300];
	snprintf(want, sizeof(want), "%s:", p);
	for (size_t i = 0; i < cfg->n_warnings; i++) {
		assert_non_null(strstr(cfg->warnings[i], want));
		assert_non_null(strstr(cfg->warnings[i], "PgBouncer setting \""));
		assert_null(strstr(cfg->warnings[i], "pidfile"));
	}
	config_free(cfg);
}

static void test_pgbouncer_settings_refused(void **state)
{
	(void)state;
	static const struct {
		const char *line;
		const char *needle;
	} cases[] = {
		{"user = postgres", "\"user\" is not supported"},
		{"client_tls_sslmode = verify-ca", "verify-ca needs client_tls_ca_file"},
		{"client_tls_sslmode = requires", "not one of: disable, allow, prefer, require"},
		{"server_tls_sslmode = verify-fool", "not one of: disable, allow"},
		{"server_tls_protocols = tlsv9", "use secure, all, legacy"},
		{"server_tls_ciphers = HIGH", "libpq has no cipher setting"},
		{"auth_query = SELECT 1", "auth_query"},
		{"auth_hba_file = /etc/hba", "auth_hba_file"},
		{"peer_id = 3", "peering"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char body[256];
		snprintf(body, sizeof(body), "[berth]\nauth_type = trust\n%s\n", cases[i].line);
		load_fails(write_file("refused.ini", body), NULL, ":3:", cases[i].needle,
			   (char *)NULL);
	}
	/* the same keys with harmless values load, with a warning */
	struct config *cfg = load_main("peer_id = 0\nclient_tls_sslmode = DISABLE\nuser =\n");
	assert_int_equal(cfg->n_warnings, 1);
	config_free(cfg);
}

/*
 * client_tls_*: the TLS context is built at load, so a file that cannot be
 * used fails the load, naming the line of the key at fault.
 */
static void test_client_tls_settings(void **state)
{
	(void)state;
	/* no certificate given: a self-signed one, made at load */
	struct config *cfg = load_main("client_tls_sslmode = require\n");
	assert_int_equal(cfg->client_tls_sslmode, TLS_REQUIRE);
	assert_non_null(cfg->client_tls);
	assert_non_null(SSL_CTX_get0_certificate(cfg->client_tls));
	config_free(cfg);

	static const struct {
		const char *lines;
		const char *where;
		const char *needle;
	} bad[] = {
		{"client_tls_cert_file = /nonexistent/c.pem\nclient_tls_key_file = /nonexistent/k.pem\n"
		 "client_tls_sslmode = prefer",
		 ":3:", "client_tls_cert_file: could not load \"/nonexistent/c.pem\": No such file"},
		{"client_tls_sslmode = require\nclient_tls_cert_file = /nonexistent/c.pem", ":4:",
		 "client_tls_cert_file is set but client_tls_key_file is not"},
		{"client_tls_sslmode = allow\nclient_tls_protocols = tlsv9", ":4:",
		 "use secure, all, legacy"},
		{"client_tls_sslmode = allow\n\nclient_tls_ciphers = NOSUCHCIPHER", ":5:",
		 "client_tls_ciphers \"NOSUCHCIPHER\""},
		{"client_tls_sslmode = verify-full\nclient_tls_ca_file = /nonexistent/ca.pem", ":4:",
		 "client_tls_ca_file: could not load"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char body[512];
		snprintf(body, sizeof(body), "[berth]\nauth_type = trust\n%s\n", bad[i].lines);
		load_fails(write_file("tls.ini", body), NULL, bad[i].where, bad[i].needle,
			   (char *)NULL);
	}
	/* auth_type cert logs in by certificate: only with certificates checked */
	load_fails(write_file("cert.ini", "[berth]\nauth_type = cert\nclient_tls_sslmode = require\n"),
		   NULL, "auth_type cert needs client_tls_sslmode verify-ca or verify-full",
		   (char *)NULL);
	/* from the environment, the message names the variable */
	char *envp[] = {"DATABASE_URL=postgres://u:p@db/app", "BERTH_CLIENT_TLS_SSLMODE=require",
			"BERTH_CLIENT_TLS_KEY_FILE=/nonexistent/k.pem",
			"BERTH_CLIENT_TLS_CERT_FILE=/nonexistent/c.pem", NULL};
	load_fails(NULL, envp, "environment variable BERTH_CLIENT_TLS_CERT_FILE",
		   "No such file or directory", (char *)NULL);
}

static void test_prisma_url_parameters(void **state)
{
	(void)state;
	const char *p = write_file("prisma.ini",
				   "[databases]\n"
				   "app = postgres://app@db.internal/app?schema=public&connection_limit=3"
				   "&sslmode=require\n"
				   "[berth]\nauth_type = trust\n");
	struct config *cfg = load_ok(p, NULL);
	assert_int_equal(cfg->n_warnings, 1);
	assert_non_null(strstr(cfg->warnings[0], ":2: database \"app\": Prisma's URL parameters "
						 "are ignored"));
	assert_non_null(strstr(cfg->warnings[0], ": schema, connection_limit"));
	const struct db_def *db = config_find_db(cfg, "app");
	assert_string_equal(db_kw(db, "sslmode"), "require"); /* libpq's stay */
	assert_null(db_kw(db, "schema"));
	config_free(cfg);
	/* Only in a URL: a conninfo string has no Prisma parameters. */
	p = write_file("prisma2.ini", "[databases]\napp = host=db schema=public\n"
				      "[berth]\nauth_type = trust\n");
	load_fails(p, NULL, ":2:", "unknown connection option \"schema\"", (char *)NULL);
}

static void test_server_tls_protocols(void **state)
{
	(void)state;
	static const struct {
		const char *value, *lo, *hi;
	} ok[] = {
		{"secure", "TLSv1.2", "TLSv1.3"},	 {"all", "TLSv1", "TLSv1.3"},
		{"legacy", "TLSv1", "TLSv1.3"},	 {"tlsv1.2", "TLSv1.2", "TLSv1.2"},
		{"tlsv1.0,tlsv1.3", "TLSv1", "TLSv1.3"}, {"TLSv1.1:tlsv1.2", "TLSv1.1", "TLSv1.2"},
		{" tlsv1.3 , tlsv1.2", "TLSv1.2", "TLSv1.3"},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		const char *lo = NULL, *hi = NULL;
		assert_true(config_tls_protocol_range(ok[i].value, &lo, &hi));
		assert_string_equal(lo, ok[i].lo);
		assert_string_equal(hi, ok[i].hi);
	}
	const char *bad[] = {"", ", ,", "tlsv1.4", "secure,sslv3", "tlsv1.2x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *lo = NULL, *hi = NULL;
		assert_false(config_tls_protocol_range(bad[i], &lo, &hi));
	}
	struct config *cfg = load_main("server_tls_sslmode = verify-full\n"
				       "server_tls_ca_file = /etc/ssl/ca.pem\n"
				       "server_tls_protocols = secure\n"
				       "server_tls_ciphers = default\n");
	assert_string_equal(cfg->server_tls_sslmode, "verify-full");
	assert_string_equal(cfg->server_tls_ca_file, "/etc/ssl/ca.pem");
	assert_int_equal(cfg->n_warnings, 1); /* server_tls_ciphers: ignored */
	config_free(cfg);
}

static void test_databases_conninfo(void **state)
{
	(void)state;
	struct config *cfg =
		load_main("[databases]\n"
			  "app = host=db1 port = 5433 dbname=app_prod user=svc password='p w\\'d' "
			  "pool_size=5 "
			  "min_pool_size=1 reserve_pool=2 pool_mode=session max_db_connections=50 "
			  "sslmode=require application_name='my app' connect_timeout=3 "
			  "options='-c search_path=a\\\\b'\n"
			  "plain =\n"
			  "quoted = host=x timezone=Europe/Paris options=-csearch_path=x\n"
			  "\"my db\" = host=y\n"
			  "'single' = host=z reserve_pool_size=4\n");
	const struct db_def *db = config_find_db(cfg, "app");
	assert_non_null(db);
	assert_string_equal(db->name, "app");
	assert_string_equal(db->dbname, "app_prod");
	assert_string_equal(db->forced_user, "svc");
	assert_string_equal(db->password, "p w'd");
	assert_int_equal(db->pool_size, 5);
	assert_int_equal(db->min_pool_size, 1);
	assert_int_equal(db->reserve_pool_size, 2);
	assert_int_equal(db->pool_mode, POOL_SESSION);
	assert_int_equal(db->max_db_connections, 50);
	assert_string_equal(db_kw(db, "host"), "db1");
	assert_string_equal(db_kw(db, "port"), "5433");
	assert_string_equal(db_kw(db, "sslmode"), "require");
	assert_string_equal(db_kw(db, "application_name"), "my app");
	assert_string_equal(db_kw(db, "connect_timeout"), "3");
	assert_string_equal(db_kw(db, "options"), "-c search_path=a\\b");
	const char *gone[] = {"user",          "password",     "dbname",    "pool_size",
			      "min_pool_size", "reserve_pool", "pool_mode", "max_db_connections"};
	for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
		if (db_kw(db, gone[i]))
			fail_msg("keyword %s was not taken out", gone[i]);
	size_t n = 0;
	while (db->keywords[n]) {
		assert_non_null(db->values[n]);
		n++;
	}
	assert_null(db->values[n]);
	assert_int_equal(n, 6);

	db = config_find_db(cfg, "plain");
	assert_string_equal(db->dbname, "plain");
	assert_null(db->keywords[0]);
	assert_int_equal(db->pool_size, -1);
	assert_int_equal(db->min_pool_size, -1);
	assert_int_equal(db->reserve_pool_size, -1);
	assert_int_equal(db->pool_mode, -1);
	assert_int_equal(db->max_db_connections, -1);
	assert_null(db->forced_user);
	assert_null(db->password);

	db = config_find_db(cfg, "quoted");
	assert_string_equal(db_kw(db, "options"), "-csearch_path=x -c timezone=Europe/Paris");
	assert_non_null(config_find_db(cfg, "my db"));
	db = config_find_db(cfg, "single");
	assert_non_null(db);
	assert_int_equal(db->reserve_pool_size, 4);
	assert_null(config_find_db(cfg, "missing")); /* no "*" entry */
	assert_null(config_find_db(cfg, "APP"));     /* names are case-sensitive */
	config_free(cfg);
}

static void test_databases_url(void **state)
{
	(void)state;
	struct config *cfg = load_main(
		"[databases]\n"
		"rep = "
		"postgresql://bob:pw%40x@h1:5432,h2:5433/reports?sslmode=verify-full&pool_size=5"
		"&pool_mode=session&target_session_attrs=read-write&datestyle=ISO\n"
		"short = postgres://h3\n");
	const struct db_def *db = config_find_db(cfg, "rep");
	assert_non_null(db);
	assert_string_equal(db->forced_user, "bob");
	assert_string_equal(db->password, "pw@x");
	assert_string_equal(db->dbname, "reports");
	assert_string_equal(db_kw(db, "host"), "h1,h2");
	assert_string_equal(db_kw(db, "port"), "5432,5433");
	assert_string_equal(db_kw(db, "sslmode"), "verify-full");
	assert_string_equal(db_kw(db, "target_session_attrs"), "read-write");
	assert_string_equal(db_kw(db, "options"), "-c datestyle=ISO");
	assert_int_equal(db->pool_size, 5);
	assert_int_equal(db->pool_mode, POOL_SESSION);
	assert_null(db_kw(db, "pool_size"));
	assert_null(db_kw(db, "user"));
	assert_null(db_kw(db, "password"));
	db = config_find_db(cfg, "short");
	assert_string_equal(db->dbname, "short");
	assert_string_equal(db_kw(db, "host"), "h3");
	config_free(cfg);
}

static void test_databases_errors(void **state)
{
	(void)state;
	static const struct {
		const char *line;
		const char *needle;
	} cases[] = {
		{"app = host=x hots=y", "unknown connection option \"hots\""},
		{"app = postgres://h/db?bogus=1", "unknown connection option \"bogus\""},
		{"app = host=x auth_query='SELECT 1'", "\"auth_query\" is not supported"},
		{"app = host=x pool_size=abc", "pool_size: \"abc\" is not an integer"},
		{"app = host=x pool_size=0", "out of range"},
		{"app = host=x pool_mode=stmt", "pool_mode: \"stmt\" is not one of"},
		{"app = host x", "missing \"=\" after \"host\""},
		{"app = host='x", "unterminated"},
		{"app = postgres://[::1/db", "URI"},
		{"berth = host=x", "reserved"},
		{"app = host=x port=5432,5433", "invalid number of ports: 2 port numbers for 1 host"},
		{"app = postgres://a,b,c/db?port=1,2", "2 port numbers for 3 hosts"},
		{"app = host=a,b hostaddr=127.0.0.1", "2 host names for 1 hostaddr"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char body[256];
		snprintf(body, sizeof(body), "[berth]\nauth_type = trust\n[databases]\n%s\n",
			 cases[i].line);
		const char *p = write_file("dberr.ini", body);
		char where[300];
		snprintf(where, sizeof(where), "%s:4: database \"", p);
		load_fails(p, NULL, where, cases[i].needle, (char *)NULL);
	}
}

static void test_host_lists_that_pair_up(void **state)
{
	(void)state;
	struct config *cfg = load_ok(write_file("hosts.ini",
						"[berth]\nauth_type = trust\n[databases]\n"
						"one = host=a,b,c port=5432\n"
						"each = host=a,b port=5432,5433\n"
						"url = postgres://a:1,b:2/db\n"
						"none = dbname=x port=6000\n"),
				     NULL);
	assert_int_equal(cfg->n_dbs, 4);
	config_free(cfg);
}

static void test_fallback_and_duplicates(void **state)
{
	(void)state;
	struct config *cfg = load_main("default_pool_size = 10\ndefault_pool_size = 12\n"
				       "[databases]\n"
				       "* = host=fallback\n"
				       "app = host=first\n"
				       "app = host=second\n"
				       "pinned = host=p dbname=real\n");
	assert_int_equal(cfg->default_pool_size, 12);
	assert_int_equal(cfg->n_dbs, 3);
	const struct db_def *db = config_find_db(cfg, "app");
	assert_string_equal(db_kw(db, "host"), "second");
	db = config_find_db(cfg, "whatever");
	assert_string_equal(db->name, "*");
	assert_null(db->dbname); /* the client's requested name */
	assert_string_equal(db_kw(db, "host"), "fallback");
	assert_string_equal(config_find_db(cfg, "pinned")->dbname, "real");
	config_free(cfg);
}

static void test_databases_pgbouncer_options(void **state)
{
	(void)state;
	struct config *cfg =
		load_main("[databases]\n"
			  "app = host=a,b port=5432,5433 server_lifetime=30 query_wait_timeout=2.5 "
			  "connect_query='SET search_path = app, public' "
			  "load_balance_hosts=round-robin\n"
			  "other = host=c query_wait_timeout=-1 load_balance_hosts=disable\n");
	const struct db_def *db = config_find_db(cfg, "app");
	assert_true(db->server_lifetime == 30000000);
	assert_true(db->query_wait_timeout == 2500000);
	assert_string_equal(db->connect_query, "SET search_path = app, public");
	assert_int_equal(db->load_balance_hosts, LB_ROUND_ROBIN);
	const char *gone[] = {"server_lifetime", "query_wait_timeout", "connect_query",
			      "load_balance_hosts"};
	for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
		if (db_kw(db, gone[i]))
			fail_msg("keyword %s was not taken out", gone[i]);
	db = config_find_db(cfg, "other");
	assert_true(db->server_lifetime == -1);
	assert_true(db->query_wait_timeout == -1);
	assert_null(db->connect_query);
	assert_int_equal(db->load_balance_hosts, LB_DISABLE);
	config_free(cfg);

	const char *p = write_file("lbh.ini", "[berth]\nauth_type = trust\n[databases]\n"
					      "app = host=a,b load_balance_hosts=random\n");
	load_fails(p, NULL, ":4: database \"app\"",
		   "load_balance_hosts: \"random\" is not one of disable, round-robin",
		   (char *)NULL);
	p = write_file("lbh.ini", "[berth]\nauth_type = trust\n[databases]\n"
				  "app = host=a server_lifetime=soon\n");
	load_fails(p, NULL, ":4: database \"app\"", "server_lifetime:", (char *)NULL);
	p = write_file("lbh.ini", "[berth]\nauth_type = trust\n[databases]\n"
				  "app = host=a auth_user=pswcheck\n");
	load_fails(p, NULL, ":4: database \"app\"",
		   "PgBouncer option \"auth_user\" is not supported", (char *)NULL);
}

static void test_users_section(void **state)
{
	(void)state;
	struct config *cfg =
		load_main("[users]\n"
			  "alice = pool_mode=session max_user_connections=5 pool_size=3\n"
			  "bob = pool_size=2\n"
			  "bob = pool_mode=transaction\n");
	const struct user_def *u = config_find_user(cfg, "alice");
	assert_non_null(u);
	assert_int_equal(u->pool_mode, POOL_SESSION);
	assert_int_equal(u->max_user_connections, 5);
	assert_int_equal(u->pool_size, 3);
	u = config_find_user(cfg, "bob"); /* last wins, whole entry */
	assert_int_equal(u->pool_mode, POOL_TRANSACTION);
	assert_int_equal(u->pool_size, -1);
	assert_int_equal(u->max_user_connections, -1);
	assert_null(config_find_user(cfg, "carol"));
	assert_int_equal(cfg->n_users, 2);
	config_free(cfg);

	/* PgBouncer's per-user timeouts and reserve pool; -1 = not set */
	cfg = load_main("[users]\n"
			"dave = reserve_pool_size=2 query_timeout=5 query_wait_timeout=1.5 "
			"idle_transaction_timeout=500ms transaction_timeout=1min "
			"client_idle_timeout=-1\n");
	u = config_find_user(cfg, "dave");
	assert_int_equal(u->reserve_pool_size, 2);
	assert_true(u->query_timeout == 5000000);
	assert_true(u->query_wait_timeout == 1500000);
	assert_true(u->idle_transaction_timeout == 500000);
	assert_true(u->transaction_timeout == 60000000);
	assert_true(u->client_idle_timeout == -1);
	config_free(cfg);

	const char *p = write_file(
		"users.ini", "[berth]\nauth_type = trust\n[users]\n\nbob = query_timeout=-5\n");
	load_fails(p, NULL, ":5: user \"bob\"", "query_timeout: \"-5\" is negative", (char *)NULL);
	p = write_file("users.ini", "[berth]\nauth_type = trust\n[users]\ncarol = pool_size=abc\n");
	load_fails(p, NULL, ":4: user \"carol\"", "\"abc\" is not an integer", (char *)NULL);
	p = write_file("users.ini", "[berth]\nauth_type = trust\n[users]\ncarol = host=x\n");
	load_fails(p, NULL, ":4:", "unknown option \"host\"", (char *)NULL);
}

static void test_auth_file(void **state)
{
	(void)state;
	const char *auth = write_file(
		"auth.txt",
		"; comment\n"
		"# another\n"
		"\n"
		"   \"alice\" \"first\"\n"
		"\"say \"\"hi\"\"\" \"pa\"\"ss\" extra fields ignored\n"
		"\"bob\" \"md545f2603610af569b6155c45067268c6b\"\n"
		"\"carol\" "
		"\"SCRAM-SHA-256$4096:c2FsdHNhbHQ=$c3RvcmVka2V5c3RvcmVka2V5:c2VydmVya2V5\"\n"
		"\"alice\"\t\"second\"\r\n"
		"\"dave\" \"\"");
	char body[512];
	snprintf(body, sizeof(body), "auth_type = scram-sha-256\nauth_file = %s\n", auth);
	char ini[600];
	snprintf(ini, sizeof(ini), "[berth]\n%s", body);
	struct config *cfg = load_ok(write_file("auth.ini", ini), NULL);
	assert_int_equal(cfg->n_auth, 5);
	assert_string_equal(config_find_auth(cfg, "alice")->secret, "second"); /* later line wins */
	assert_string_equal(config_find_auth(cfg, "say \"hi\"")->secret, "pa\"ss");
	assert_string_equal(config_find_auth(cfg, "bob")->secret,
			    "md545f2603610af569b6155c45067268c6b");
	assert_non_null(strstr(config_find_auth(cfg, "carol")->secret, "SCRAM-SHA-256$4096:"));
	assert_string_equal(config_find_auth(cfg, "dave")->secret, "");
	assert_null(config_find_auth(cfg, "eve"));
	assert_null(config_find_auth(cfg, "ali"));
	config_free(cfg);
}

static void test_auth_file_errors(void **state)
{
	(void)state;
	static const struct {
		const char *content;
		int line;
		const char *needle;
	} cases[] = {
		{"\"alice\" \"ok\"\n\nalice s3cretpw\n", 3, "expected \"user\" \"password\""},
		{"\"alice\" \"s3cretpw\n", 1, "expected \"user\" \"password\""},
		{"\"alice\"\n", 1, "expected"},
		{"# c\n\"alice\" s3cretpw\n", 2, "expected"},
		{"\"\" \"s3cretpw\"\n", 1, "empty user name"},
		{"\"x\" \"y\"\n\"carol\" \"SCRAM-SHA-256$4096:salt$s3cretpw\"\n", 2,
		 "malformed SCRAM"},
		{"\"carol\" \"SCRAM-SHA-256$0:c2FsdA==$a2V5:a2V5\"\n", 1, "malformed SCRAM"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *auth = write_file("bad_auth.txt", cases[i].content);
		char ini[512], where[300], text[512];
		snprintf(ini, sizeof(ini), "[berth]\nauth_type = md5\nauth_file = %s\n", auth);
		const char *p = write_file("bad_auth.ini", ini);
		snprintf(where, sizeof(where), "%s:%d: ", auth, cases[i].line);
		load_fails(p, NULL, where, cases[i].needle, (char *)NULL);
		load_error_text(p, NULL, text, sizeof(text));
		if (strstr(text, "s3cretpw"))
			fail_msg("error text leaks the password: %s", text);
	}
	char ini[512];
	snprintf(ini, sizeof(ini), "[berth]\nauth_type = md5\nauth_file = %s/nope.txt\n", tmpdir);
	load_fails(write_file("noauth.ini", ini), NULL, "auth_file", "nope.txt", "No such file",
		   (char *)NULL);
}

static void test_auth_needs_credentials(void **state)
{
	(void)state;
	const char *p =
		write_file("cred.ini", "[berth]\nauth_type = md5\n[databases]\napp = host=x\n");
	load_fails(p, NULL, "auth_type md5 needs credentials", (char *)NULL);
	p = write_file("cred.ini", "[berth]\n[databases]\napp = host=x\n");
	load_fails(p, NULL, "auth_type scram-sha-256 needs credentials", (char *)NULL);
	/* DATABASE_URL credentials are enough */
	char *env[] = {"DATABASE_URL=postgres://u:p@h/app2", NULL};
	struct config *cfg = load_ok(p, env);
	assert_int_equal(cfg->n_dbs, 2);
	config_free(cfg);
	/* nothing to listen on */
	p = write_file("cred.ini", "[berth]\nauth_type = trust\nlisten_addr =\n");
	load_fails(p, NULL, "accept no connections", (char *)NULL);
}

static void test_env_overrides_file(void **state)
{
	(void)state;
	const char *p = write_file("env.ini", "[berth]\nauth_type = trust\ndefault_pool_size = 10\n"
					      "listen_port = 1111\nlog_connections = 0\n");
	char *env[] = {"HOME=/root",
		       "BERTH_DEFAULT_POOL_SIZE=30",
		       "BERTH_LOG_CONNECTIONS=yes",
		       "BERTH_LISTEN=0.0.0.0:7777",
		       "BERTH_BIN=/usr/bin/berth", /* not a key: someone else's */
		       "BERTH_SRCDIR=/src",
		       "BERTH_SERVER_IDLE_TIMEOUT=30s",
		       "XBERTH_MAX_CLIENT_CONN=5",
		       NULL};
	struct config *cfg = load_ok(p, env);
	assert_int_equal(cfg->default_pool_size, 30);
	assert_true(cfg->log_connections);
	assert_string_equal(cfg->listen_addr, "0.0.0.0");
	assert_int_equal(cfg->listen_port, 7777);
	assert_true(cfg->server_idle_timeout == 30000000);
	assert_int_equal(cfg->max_client_conn, 1000);
	config_free(cfg);

	char *bad[] = {"BERTH_DEFAULT_POOL_SIZE=abc", NULL};
	load_fails(p, bad,
		   "environment variable BERTH_DEFAULT_POOL_SIZE: \"abc\" is not an integer",
		   (char *)NULL);
	char *badlisten[] = {"BERTH_LISTEN=localhost", NULL};
	load_fails(p, badlisten, "environment variable BERTH_LISTEN", (char *)NULL);
	char *badmode[] = {"BERTH_POOL_MODE=autocommit", NULL};
	load_fails(p, badmode, "BERTH_POOL_MODE", "not one of", (char *)NULL);
}

static void test_database_url_zero_file(void **state)
{
	(void)state;
	char *env[] = {"PATH=/bin",
		       "DATABASE_URL=postgres://app_user:s3cretpw@db1:5432,db2:5433/appdb"
		       "?sslmode=require&target_session_attrs=read-write&connect_timeout=5",
		       NULL};
	struct config *cfg = load_ok(NULL, env);
	assert_null(cfg->path);
	assert_int_equal(cfg->auth_type, AUTH_SCRAM);
	assert_int_equal(cfg->n_dbs, 1);
	const struct db_def *db = config_find_db(cfg, "appdb");
	assert_non_null(db);
	assert_string_equal(db->name, "appdb");
	assert_string_equal(db->dbname, "appdb");
	assert_string_equal(db->forced_user, "app_user");
	assert_string_equal(db->password, "s3cretpw");
	assert_string_equal(db_kw(db, "host"), "db1,db2");
	assert_string_equal(db_kw(db, "port"), "5432,5433");
	assert_string_equal(db_kw(db, "sslmode"), "require");
	assert_string_equal(db_kw(db, "target_session_attrs"), "read-write");
	assert_string_equal(db_kw(db, "connect_timeout"), "5");
	assert_null(db_kw(db, "password"));
	assert_int_equal(cfg->n_auth, 1);
	const struct auth_entry *a = config_find_auth(cfg, "app_user");
	assert_non_null(a);
	assert_string_equal(a->secret, "s3cretpw");
	config_free(cfg);

	/* name defaults to the user, as libpq's dbname does */
	char *env2[] = {"DATABASE_URL=postgresql://alice:pw@localhost?pool_size=4", NULL};
	cfg = load_ok(NULL, env2);
	db = config_find_db(cfg, "alice");
	assert_non_null(db);
	assert_string_equal(db->dbname, "alice");
	assert_int_equal(db->pool_size, 4);
	config_free(cfg);

	/* a conninfo string works too */
	char *env3[] = {"DATABASE_URL=host=h user=u password=p dbname=d sslmode=disable", NULL};
	cfg = load_ok(NULL, env3);
	db = config_find_db(cfg, "d");
	assert_string_equal(db->forced_user, "u");
	assert_string_equal(db_kw(db, "sslmode"), "disable");
	config_free(cfg);

	char *none[] = {"PATH=/bin", NULL};
	load_fails(NULL, none, "DATABASE_URL is not set and no config file was given",
		   (char *)NULL);
	load_fails(NULL, NULL, "DATABASE_URL is not set and no config file was given",
		   (char *)NULL);
	char *empty[] = {"DATABASE_URL=", NULL};
	load_fails(NULL, empty, "DATABASE_URL is not set", (char *)NULL);
	char *nouser[] = {"DATABASE_URL=postgres://h", NULL};
	load_fails(NULL, nouser, "DATABASE_URL", "neither a database nor a user", (char *)NULL);
	/* without a password there are no credentials for scram-sha-256 */
	char *nopw[] = {"DATABASE_URL=postgres://u@h/d", NULL};
	load_fails(NULL, nopw, "needs credentials", (char *)NULL);
	/* BERTH_* still applies in zero-file mode */
	char *trust[] = {"DATABASE_URL=postgres://u@h/d", "BERTH_AUTH_TYPE=trust", NULL};
	cfg = load_ok(NULL, trust);
	assert_int_equal(cfg->n_auth, 0);
	config_free(cfg);
}

static void test_database_url_file_entry_wins(void **state)
{
	(void)state;
	const char *p = write_file("urlwins.ini", "[berth]\nauth_type = trust\n"
						  "[databases]\nappdb = host=filehost\n");
	char *env[] = {"DATABASE_URL=postgres://u:pw@urlhost/appdb", NULL};
	struct config *cfg = load_ok(p, env);
	assert_int_equal(cfg->n_dbs, 1);
	assert_string_equal(db_kw(config_find_db(cfg, "appdb"), "host"), "filehost");
	assert_int_equal(cfg->n_auth, 0); /* the ignored URL adds no credentials */
	config_free(cfg);

	char *env2[] = {"DATABASE_URL=postgres://u:pw@urlhost/other", NULL};
	cfg = load_ok(p, env2);
	assert_int_equal(cfg->n_dbs, 2);
	assert_string_equal(db_kw(config_find_db(cfg, "other"), "host"), "urlhost");
	assert_non_null(config_find_auth(cfg, "u"));
	config_free(cfg);
}

static void test_errors_never_show_password(void **state)
{
	(void)state;
	const char *pw = "s3cretpw";
	const char *urls[] = {
		"DATABASE_URL=postgres://bob:s3cretpw@[::1:5432/db",
		"DATABASE_URL=postgres://bob:s3cretpw%zz@h/db",
		"DATABASE_URL=postgres://bob:s3cretpw@h/db?pool_size=abc",
		"DATABASE_URL=postgres://bob:s3cretpw@h/db?pool_size=s3cretpw",
		"DATABASE_URL=postgres://bob:s3cretpw@h/db?bogus=1",
		"DATABASE_URL=postgres://bob:s3cretpw@h/db?sslmode",
		"DATABASE_URL=postgres://bob:s3cretpw@h/db?a=b=c",
		"DATABASE_URL=postgres://bob:s3cretpw@h:port/db?pool_mode=s3cretpw",
		"DATABASE_URL=host=h password=s3cretpw bogus",
		"DATABASE_URL=host=h password='s3cretpw",
		"DATABASE_URL=host=h s3cretpw",
		"DATABASE_URL=host=h password=s3cretpw hots=x",
		"DATABASE_URL=postgres://s3cretpw",
	};
	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		char *env[] = {(char *)urls[i], NULL};
		char text[512];
		struct config_error err = {{0}};
		struct config *cfg = config_load(NULL, env, &err);
		if (cfg) {
			/* postgres://s3cretpw is a host name: loads, but needs credentials */
			config_free(cfg);
			fail_msg("loaded: case %zu", i);
		}
		snprintf(text, sizeof(text), "%s", err.text);
		if (strstr(text, pw) || strstr(text, "postgres://"))
			fail_msg("error text leaks the URL or password: %s", text);
		if (!strstr(text, "DATABASE_URL"))
			fail_msg("error text does not name DATABASE_URL: %s", text);
	}
	const char *lines[] = {
		"app = host=h password=s3cretpw hots=x",
		"app = host=h password='s3cretpw",
		"app = host=h s3cretpw",
		"app = host=h password s3cretpw",
		"app = postgres://bob:s3cretpw@[::1/db",
		"app = postgres://bob:s3cretpw%zz@h/db",
		"s3cretpw",
		"password s3cretpw",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		char body[256], text[512];
		snprintf(body, sizeof(body), "[berth]\nauth_type = trust\n[databases]\n%s\n",
			 lines[i]);
		load_error_text(write_file("leak.ini", body), NULL, text, sizeof(text));
		if (strstr(text, pw))
			fail_msg("error text leaks the password: %s", text);
		assert_non_null(strstr(text, ":4:"));
	}
}

static void test_missing_file(void **state)
{
	(void)state;
	char path[300];
	snprintf(path, sizeof(path), "%s/does-not-exist.ini", tmpdir);
	load_fails(path, NULL, "cannot read", "does-not-exist.ini", "No such file", (char *)NULL);
}

static void test_unknown_key_and_section(void **state)
{
	(void)state;
	char where[300];
	const char *p = write_file("unk.ini", "[berth]\nauth_type = trust\n; c\nbogus_key = 1\n");
	snprintf(where, sizeof(where), "%s:4: unknown key \"bogus_key\"", p);
	load_fails(p, NULL, where, (char *)NULL);

	p = write_file("unk.ini", "[berth]\nauth_type = trust\n[foo]\nx = 1\n");
	snprintf(where, sizeof(where), "%s:3: unknown section [foo]", p);
	load_fails(p, NULL, where, (char *)NULL);

	p = write_file("unk.ini", "[berth]\n[peers]\n");
	load_fails(p, NULL, ":2:", "[peers]", "not supported", (char *)NULL);
	p = write_file("unk.ini", "listen_port = 1\n[berth]\n");
	load_fails(p, NULL, ":1:", "outside any section", (char *)NULL);
	p = write_file("unk.ini", "[berth]\nauth_type = trust\nthis line is wrong\n");
	load_fails(p, NULL, ":3:", "syntax error", (char *)NULL);
	p = write_file("unk.ini", "[berth\n");
	load_fails(p, NULL, ":1:", "syntax error", (char *)NULL);
	p = write_file("unk.ini", "[berth]\n= 5\n");
	load_fails(p, NULL, ":2:", "syntax error", (char *)NULL);
	p = write_file("unk.ini", "[databases]\n\"unterminated = host=x\n");
	load_fails(p, NULL, ":2:", "unterminated", (char *)NULL);
	p = write_file("unk.ini", "[berth]\nauth_type = trust\nlisten_port\n");
	load_fails(p, NULL, ":3:", "expected key = value", (char *)NULL);
}

static void test_include(void **state)
{
	(void)state;
	const char *inc =
		write_file("inc.ini", "default_pool_size = 33\n[databases]\nincdb = host=i\n");
	char main_ini[512];
	snprintf(main_ini, sizeof(main_ini),
		 "[berth]\nauth_type = trust\n%%include %s\nafter = host=a\n", inc);
	struct config *cfg = load_ok(write_file("withinc.ini", main_ini), NULL);
	assert_int_equal(cfg->default_pool_size, 33);
	assert_non_null(config_find_db(cfg, "incdb"));
	/* the section set in the included file carries on, as in PgBouncer */
	assert_non_null(config_find_db(cfg, "after"));
	config_free(cfg);

	/* errors inside an include name the included file */
	const char *bad = write_file("badinc.ini", "\n\nnope = 1\n");
	snprintf(main_ini, sizeof(main_ini), "[berth]\nauth_type = trust\n%%include %s\n", bad);
	char where[300];
	snprintf(where, sizeof(where), "%s:3: unknown key \"nope\"", bad);
	load_fails(write_file("withbad.ini", main_ini), NULL, where, (char *)NULL);

	/* a missing include names the including file and line */
	snprintf(main_ini, sizeof(main_ini), "[berth]\n%%include %s/missing.ini\n", tmpdir);
	const char *p = write_file("withmissing.ini", main_ini);
	snprintf(where, sizeof(where), "%s:2: %%include: cannot read", p);
	load_fails(p, NULL, where, "missing.ini", (char *)NULL);

	/* including itself stops at the depth limit */
	char self[300];
	snprintf(self, sizeof(self), "%s/self.ini", tmpdir);
	snprintf(main_ini, sizeof(main_ini), "[berth]\n%%include %s\n", self);
	write_file("self.ini", main_ini);
	load_fails(self, NULL, "nested more than 10 deep", (char *)NULL);
}

static void test_crlf_blank_and_comments(void **state)
{
	(void)state;
	const char *p =
		write_file("crlf.ini", "; comment\r\n# comment\r\n\r\n  [berth]  \r\n"
				       "\tauth_type\t=\ttrust\t\r\n  default_pool_size=4\r\n"
				       "admin_users = a;b#c\r\n[databases]\r\napp = host=x\r\n");
	struct config *cfg = load_ok(p, NULL);
	assert_int_equal(cfg->default_pool_size, 4);
	assert_string_equal(cfg->admin_users, "a;b#c");
	assert_string_equal(db_kw(config_find_db(cfg, "app"), "host"), "x");
	config_free(cfg);

	/* NUL bytes and an empty file */
	char nul[] = "[berth]\nauth_type = trust\nx\0y = 1\n";
	char path[300];
	snprintf(path, sizeof(path), "%s/nul.ini", tmpdir);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	fwrite(nul, 1, sizeof(nul) - 1, f);
	fclose(f);
	load_fails(path, NULL, ":3:", "NUL byte", (char *)NULL);
	/* an empty file means all defaults, which need credentials */
	load_fails(write_file("empty.ini", ""), NULL, "needs credentials", (char *)NULL);
}

static void test_set_format_roundtrip(void **state)
{
	(void)state;
	struct config *cfg = load_main("");
	static const struct {
		const char *key, *in, *shown;
	} cases[] = {
		{"listen_port", "7000", "7000"},
		{"unix_socket_mode", "0700", "448"},
		{"pool_mode", "Session", "session"},
		{"auth_type", "MD5", "md5"},
		{"query_timeout", "2.5", "2.5"},
		{"query_timeout", "1500ms", "1.5"},
		{"idle_transaction_timeout", "1h", "3600"},
		{"server_reset_query_always", "on", "1"},
		{"pkt_buf", "32kB", "32768"},
		{"server_reset_query", "  RESET ALL ", "  RESET ALL "},
		{"unix_socket_dir", "/tmp", "/tmp"},
		{"track_extra_parameters", "", ""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_set_ok(cfg, cases[i].key, cases[i].in);
		assert_formats(cfg, cases[i].key, cases[i].shown);
		assert_set_ok(cfg, cases[i].key, cases[i].shown); /* what SHOW shows, SET takes */
		assert_formats(cfg, cases[i].key, cases[i].shown);
	}
	char err[256];
	assert_false(config_key_set(cfg, config_key_count(), "1", err, sizeof(err)));
	assert_false(config_key_set(NULL, 0, "1", err, sizeof(err)));
	char buf[8] = "x";
	config_key_format(cfg, config_key_count(), buf, sizeof(buf));
	assert_string_equal(buf, "");
	config_key_format(cfg, key("server_reset_query"), buf, sizeof(buf)); /* truncates safely */
	assert_int_equal(strlen(buf), sizeof(buf) - 1);
	config_free(cfg);
}

static void test_reload_all_or_nothing(void **state)
{
	(void)state;
	const char *p = write_file("reload.ini", "[berth]\nauth_type = trust\nlisten_port = 6000\n"
						 "default_pool_size = 5\n");
	struct config *a = load_ok(p, NULL);
	/* the file changes: a good reload differs only where the file does */
	write_file("reload.ini",
		   "[berth]\nauth_type = trust\nlisten_port = 6001\ndefault_pool_size = 5\n");
	struct config *b = load_ok(p, NULL);
	for (size_t i = 0; i < config_key_count(); i++) {
		bool same = config_key_equal(a, b, i);
		if (strcmp(config_key_name(i), "listen_port") == 0)
			assert_false(same);
		else if (!same)
			fail_msg("%s differs", config_key_name(i));
	}
	assert_true(config_key_flags(key("listen_port")) & CF_RESTART);
	/* a broken file gives nothing, and the running config is untouched */
	write_file("reload.ini",
		   "[berth]\nauth_type = trust\nlisten_port = 6002\ndefault_pool_size = x\n");
	struct config_error err;
	assert_null(config_load(p, NULL, &err));
	assert_int_equal(b->listen_port, 6001);
	assert_int_equal(b->default_pool_size, 5);
	config_free(a);
	config_free(b);
	config_free(NULL);
}

/* Random lines from config-ish fragments: loading never crashes or leaks. */
static void test_garbage_never_crashes(void **state)
{
	(void)state;
	static const char *const frags[] = {
		"[berth]",
		"[databases]",
		"[users]",
		"[",
		"]",
		"=",
		"\"",
		"'",
		"\\",
		"%include ",
		"auth_type",
		"trust",
		"pool_size",
		"postgres://",
		"a:b@",
		"?",
		"&",
		"%zz",
		"%41",
		"host=",
		" ",
		"\t",
		"*",
		"listen",
		"[::1]:",
		"0x",
		"99999999999",
		"pool_mode=",
		"statement",
		"md5",
		"SCRAM-SHA-256$",
		"#",
		";",
		"\r",
		"datestyle=",
		"options=",
		"user=",
		"password=",
		"dbname=",
		"1.5ms",
		"kB",
	};
	unsigned seed = 12345;
	char body[2048];
	for (int iter = 0; iter < 300; iter++) {
		size_t n = 0;
		int lines = 1 + (int)(seed % 8);
		n += (size_t)snprintf(body + n, sizeof(body) - n, "[berth]\nauth_type = trust\n");
		for (int l = 0; l < lines; l++) {
			int parts = 1 + (int)((seed >> 3) % 7);
			for (int k = 0; k < parts && n < sizeof(body) - 64; k++) {
				seed = seed * 1103515245u + 12345u;
				const char *f =
					frags[(seed >> 8) % (sizeof(frags) / sizeof(frags[0]))];
				n += (size_t)snprintf(body + n, sizeof(body) - n, "%s", f);
			}
			n += (size_t)snprintf(body + n, sizeof(body) - n, "\n");
		}
		struct config_error err;
		struct config *cfg = config_load(write_file("garbage.ini", body), NULL, &err);
		if (cfg) {
			for (size_t i = 0; i < config_key_count(); i++) {
				char buf[64];
				config_key_format(cfg, i, buf, sizeof(buf));
			}
			config_free(cfg);
		} else {
			assert_true(strlen(err.text) > 0);
		}
		/* the same text as DATABASE_URL */
		char env_url[600];
		snprintf(env_url, sizeof(env_url), "DATABASE_URL=postgres://%.500s", body + 26);
		char *env[] = {env_url, NULL};
		cfg = config_load(NULL, env, &err);
		config_free(cfg);
	}
}

static void test_generated_doc_and_sample(void **state)
{
	(void)state;
	char *doc = NULL, *sample = NULL;
	size_t doclen = 0, samplelen = 0;
	FILE *f = open_memstream(&doc, &doclen);
	assert_non_null(f);
	config_write_doc(f);
	fclose(f);
	f = open_memstream(&sample, &samplelen);
	assert_non_null(f);
	config_write_sample(f);
	fclose(f);
	assert_non_null(strstr(doc, "berth --config-doc"));
	assert_non_null(strstr(doc, "include/config_keys.h"));
	assert_non_null(strstr(doc, "DATABASE_URL"));
	assert_non_null(strstr(doc, "BERTH_<KEY>"));
	assert_non_null(strstr(doc, "[databases]"));
	assert_non_null(strstr(doc, "[users]"));
	assert_non_null(strstr(doc, "auth_file"));
	for (size_t i = 0; i < config_key_count(); i++) {
		char want[256];
		snprintf(want, sizeof(want), "| `%s` |", config_key_name(i));
		if (!strstr(doc, want))
			fail_msg("doc lacks %s", config_key_name(i));
		snprintf(want, sizeof(want), "\n;%s =%s%s\n", config_key_name(i),
			 config_key_default(i)[0] ? " " : "", config_key_default(i));
		if (!strstr(sample, want))
			fail_msg("sample lacks %s", want);
	}
	free(doc);

	/* the sample, uncommented, is a valid config with every default */
	char *s = sample;
	for (char *line = strstr(s, "\n;"); line; line = strstr(line + 1, "\n;")) {
		if (line[2] != ';' && strchr(line + 2, '=') &&
		    strchr(line + 2, '=') < strchr(line + 2, '\n') &&
		    strncmp(line + 2, "app", 3) != 0 && line[2] != '*' &&
		    strncmp(line + 2, "alice", 5) != 0)
			line[1] = ' ';
	}
	char *env[] = {"BERTH_AUTH_TYPE=trust", NULL};
	struct config *cfg = load_ok(write_file("sample.ini", sample), env);
	assert_int_equal(cfg->n_warnings, 0);
	config_free(cfg);
	free(sample);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_key_default_help_roundtrip),
		cmocka_unit_test(test_defaults_in_struct),
		cmocka_unit_test(test_bounds_enforced),
		cmocka_unit_test(test_int_values),
		cmocka_unit_test(test_bool_values),
		cmocka_unit_test(test_time_values),
		cmocka_unit_test(test_http_and_health_keys),
		cmocka_unit_test(test_size_values),
		cmocka_unit_test(test_enum_values),
		cmocka_unit_test(test_string_values),
		cmocka_unit_test(test_log_settings),
		cmocka_unit_test(test_alias_pool_size),
		cmocka_unit_test(test_enum_alias_type_accessors),
		cmocka_unit_test(test_pgbouncer_section_and_case),
		cmocka_unit_test(test_realistic_pgbouncer_file),
		cmocka_unit_test(test_pgbouncer_settings_refused),
		cmocka_unit_test(test_client_tls_settings),
		cmocka_unit_test(test_databases_pgbouncer_options),
		cmocka_unit_test(test_prisma_url_parameters),
		cmocka_unit_test(test_server_tls_protocols),
		cmocka_unit_test(test_databases_conninfo),
		cmocka_unit_test(test_databases_url),
		cmocka_unit_test(test_databases_errors),
		cmocka_unit_test(test_host_lists_that_pair_up),
		cmocka_unit_test(test_fallback_and_duplicates),
		cmocka_unit_test(test_users_section),
		cmocka_unit_test(test_auth_file),
		cmocka_unit_test(test_auth_file_errors),
		cmocka_unit_test(test_auth_needs_credentials),
		cmocka_unit_test(test_env_overrides_file),
		cmocka_unit_test(test_database_url_zero_file),
		cmocka_unit_test(test_database_url_file_entry_wins),
		cmocka_unit_test(test_errors_never_show_password),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_unknown_key_and_section),
		cmocka_unit_test(test_include),
		cmocka_unit_test(test_crlf_blank_and_comments),
		cmocka_unit_test(test_set_format_roundtrip),
		cmocka_unit_test(test_reload_all_or_nothing),
		cmocka_unit_test(test_garbage_never_crashes),
		cmocka_unit_test(test_generated_doc_and_sample),
		cmocka_unit_test(test_operations_settings),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
