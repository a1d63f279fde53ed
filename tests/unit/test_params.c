/*
 * test_params.c - unit tests for params.c: the GUC list (set/get/remove/
 * copy/clear, case-insensitive names, growth, the order-independent
 * signature), params_build_sync (exact SQL, quoting, buffer limits, the
 * server list it leaves behind) and params_parse_options. No PostgreSQL:
 * the expected SQL is written out by hand from the function's contract.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "params.h"

/* ---- helpers ------------------------------------------------------------- */

static void set_ok(struct param_list *l, const char *name, const char *value, bool reported)
{
	assert_true(params_set(l, name, value, reported));
}

static const struct param *find_item(const struct param_list *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcasecmp(l->items[i].name, name) == 0)
			return &l->items[i];
	return NULL;
}

/* Pool defaults as a fresh PostgreSQL server reports them. */
static void fill_defaults(struct param_list *d)
{
	set_ok(d, "application_name", "", true);
	set_ok(d, "client_encoding", "UTF8", true);
	set_ok(d, "DateStyle", "ISO, MDY", true);
	set_ok(d, "TimeZone", "UTC", true);
	set_ok(d, "standard_conforming_strings", "on", true);
}

/* ---- list basics --------------------------------------------------------- */

static void test_set_get_replace(void **state)
{
	(void)state;
	struct param_list l = {0};
	assert_null(params_get(&l, "anything"));
	assert_int_equal(l.sig, 0);

	set_ok(&l, "TimeZone", "UTC", true);
	assert_int_equal(l.n, 1);
	assert_string_equal(params_get(&l, "TimeZone"), "UTC");
	/* names are case-insensitive, values are not */
	assert_string_equal(params_get(&l, "timezone"), "UTC");
	assert_string_equal(params_get(&l, "TIMEZONE"), "UTC");
	assert_null(params_get(&l, "TimeZon"));
	assert_null(params_get(&l, "TimeZone2"));

	/* replacing through another spelling keeps one entry and the first spelling */
	set_ok(&l, "TIMEZONE", "Europe/Berlin", false);
	assert_int_equal(l.n, 1);
	assert_string_equal(params_get(&l, "timezone"), "Europe/Berlin");
	assert_string_equal(l.items[0].name, "TimeZone");
	/* reported is sticky: a later set with false does not clear it */
	assert_true(l.items[0].reported);

	/* reported can be raised by a set with an unchanged value */
	set_ok(&l, "search_path", "a", false);
	assert_false(find_item(&l, "search_path")->reported);
	uint64_t sig = l.sig;
	set_ok(&l, "SEARCH_PATH", "a", true);
	assert_true(find_item(&l, "search_path")->reported);
	assert_true(l.sig == sig);

	/* values compare case-sensitively */
	set_ok(&l, "search_path", "A", false);
	assert_string_equal(params_get(&l, "search_path"), "A");
	assert_true(l.sig != sig);

	/* empty values are values */
	set_ok(&l, "application_name", "", false);
	assert_non_null(params_get(&l, "application_name"));
	assert_string_equal(params_get(&l, "application_name"), "");
	assert_int_equal(l.n, 3);
	params_clear(&l);
}

static void test_remove_and_clear(void **state)
{
	(void)state;
	struct param_list l = {0};
	set_ok(&l, "a", "1", false);
	set_ok(&l, "b", "2", false);
	set_ok(&l, "c", "3", false);
	set_ok(&l, "d", "4", false);

	params_remove(&l, "nothere"); /* absent: no-op */
	assert_int_equal(l.n, 4);

	params_remove(&l, "B"); /* middle, other case */
	assert_int_equal(l.n, 3);
	assert_null(params_get(&l, "b"));
	assert_string_equal(params_get(&l, "a"), "1");
	assert_string_equal(params_get(&l, "c"), "3");
	assert_string_equal(params_get(&l, "d"), "4");

	params_remove(&l, "d"); /* whichever is last now */
	params_remove(&l, "a");
	assert_int_equal(l.n, 1);
	assert_string_equal(params_get(&l, "c"), "3");
	params_remove(&l, "c");
	assert_int_equal(l.n, 0);
	assert_int_equal(l.sig, 0);

	/* the list is usable again after emptying and after clear */
	set_ok(&l, "e", "5", false);
	assert_string_equal(params_get(&l, "e"), "5");
	params_clear(&l);
	assert_int_equal(l.n, 0);
	assert_int_equal(l.cap, 0);
	assert_null(l.items);
	assert_int_equal(l.sig, 0);
	set_ok(&l, "f", "6", false);
	assert_string_equal(params_get(&l, "f"), "6");
	params_clear(&l);
	params_clear(&l); /* clearing an empty list is fine */
}

static void test_growth(void **state)
{
	(void)state;
	struct param_list l = {0};
	char name[32], value[32];
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "guc_%d", i);
		snprintf(value, sizeof(value), "v%d", i * 7);
		set_ok(&l, name, value, (i & 1) != 0);
		assert_int_equal(l.n, (size_t)i + 1);
		assert_true(l.cap >= l.n);
	}
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "GUC_%d", i);
		snprintf(value, sizeof(value), "v%d", i * 7);
		assert_non_null(params_get(&l, name));
		assert_string_equal(params_get(&l, name), value);
		assert_int_equal(find_item(&l, name)->reported, (i & 1) != 0);
	}
	/* remove every third, the rest stays findable */
	for (int i = 0; i < 300; i += 3) {
		snprintf(name, sizeof(name), "guc_%d", i);
		params_remove(&l, name);
	}
	assert_int_equal(l.n, 200);
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "guc_%d", i);
		if (i % 3 == 0) {
			assert_null(params_get(&l, name));
		} else {
			snprintf(value, sizeof(value), "v%d", i * 7);
			assert_string_equal(params_get(&l, name), value);
		}
	}
	params_clear(&l);
}

static void test_copy(void **state)
{
	(void)state;
	struct param_list src = {0}, dst = {0};
	fill_defaults(&src);
	set_ok(&src, "search_path", "app, public", false);

	/* dst starts with content that must disappear */
	set_ok(&dst, "stale", "x", false);
	set_ok(&dst, "TimeZone", "Asia/Tokyo", false);
	assert_true(params_copy(&dst, &src));
	assert_int_equal(dst.n, src.n);
	assert_null(params_get(&dst, "stale"));
	assert_true(dst.sig == src.sig);
	for (size_t i = 0; i < src.n; i++) {
		const struct param *p = find_item(&dst, src.items[i].name);
		assert_non_null(p);
		assert_string_equal(p->value, src.items[i].value);
		assert_int_equal(p->reported, src.items[i].reported);
		/* a deep copy: no shared strings */
		assert_true(p->value != src.items[i].value);
		assert_true(p->name != src.items[i].name);
	}

	/* independent afterwards */
	set_ok(&dst, "TimeZone", "CET", false);
	assert_string_equal(params_get(&src, "TimeZone"), "UTC");
	assert_true(dst.sig != src.sig);

	/* copying an empty list empties */
	struct param_list empty = {0};
	assert_true(params_copy(&dst, &empty));
	assert_int_equal(dst.n, 0);
	assert_int_equal(dst.sig, 0);
	params_clear(&src);
	params_clear(&dst);
}

static void test_drop_unreported(void **state)
{
	(void)state;
	struct param_list l = {0};
	set_ok(&l, "u1", "1", false);
	set_ok(&l, "r1", "1", true);
	set_ok(&l, "u2", "2", false);
	set_ok(&l, "u3", "3", false);
	set_ok(&l, "r2", "2", true);
	set_ok(&l, "u4", "4", false);

	struct param_list only_reported = {0};
	set_ok(&only_reported, "r2", "2", true);
	set_ok(&only_reported, "r1", "1", true);

	params_drop_unreported(&l);
	assert_int_equal(l.n, 2);
	assert_string_equal(params_get(&l, "r1"), "1");
	assert_string_equal(params_get(&l, "r2"), "2");
	assert_true(l.sig == only_reported.sig);
	params_clear(&l);
	params_clear(&only_reported);
}

/* ---- signature ----------------------------------------------------------- */

static void test_sig_order_independent(void **state)
{
	(void)state;
	static const char *const names[] = {"TimeZone", "search_path", "application_name",
					    "DateStyle", "work_mem", "myapp.tenant"};
	static const char *const values[] = {"UTC", "app, public", "psql", "ISO, MDY", "64MB", "42"};
	enum { N = 6 };
	/* forward, backward and a shuffled order, with names in other cases */
	static const int orders[3][N] = {{0, 1, 2, 3, 4, 5}, {5, 4, 3, 2, 1, 0}, {3, 0, 5, 1, 4, 2}};
	struct param_list l[3] = {{0}};
	for (int o = 0; o < 3; o++) {
		for (int k = 0; k < N; k++) {
			int i = orders[o][k];
			char nm[64];
			snprintf(nm, sizeof(nm), "%s", names[i]);
			if (o == 2)
				for (char *c = nm; *c; c++)
					*c = (char)((*c >= 'a' && *c <= 'z') ? *c - 32 : *c);
			set_ok(&l[o], nm, values[i], o == 1);
		}
	}
	assert_true(l[0].sig != 0);
	assert_true(l[0].sig == l[1].sig);
	/* the name is hashed lower-cased; `reported` is not part of the signature */
	assert_true(l[0].sig == l[2].sig);

	/* a value changed by one character: different */
	uint64_t before = l[0].sig;
	set_ok(&l[0], "work_mem", "64MC", false);
	assert_true(l[0].sig != before);
	assert_true(l[0].sig != l[1].sig);
	/* and back: equal again */
	set_ok(&l[0], "work_mem", "64MB", false);
	assert_true(l[0].sig == before);

	/* value case matters */
	set_ok(&l[0], "TimeZone", "utc", false);
	assert_true(l[0].sig != before);
	set_ok(&l[0], "TimeZone", "UTC", false);
	assert_true(l[0].sig == before);

	/* empty vs absent differ */
	set_ok(&l[0], "x", "", false);
	assert_true(l[0].sig != before);
	/* removing restores the previous signature */
	params_remove(&l[0], "X");
	assert_true(l[0].sig == before);

	/* add then remove from the middle of the insertion order */
	params_remove(&l[1], "search_path");
	assert_true(l[1].sig != before);
	set_ok(&l[1], "search_path", "app, public", false);
	assert_true(l[1].sig == before);

	/* moving a value to another name is a change */
	struct param_list a = {0}, b = {0};
	set_ok(&a, "p", "1", false);
	set_ok(&a, "q", "2", false);
	set_ok(&b, "p", "2", false);
	set_ok(&b, "q", "1", false);
	assert_true(a.sig != b.sig);
	/* the name/value boundary is part of the hash */
	struct param_list c = {0}, d = {0};
	set_ok(&c, "ab", "c", false);
	set_ok(&d, "a", "bc", false);
	assert_true(c.sig != d.sig);

	for (int o = 0; o < 3; o++)
		params_clear(&l[o]);
	params_clear(&a);
	params_clear(&b);
	params_clear(&c);
	params_clear(&d);
}

/* ---- params_build_sync --------------------------------------------------- */

/* Runs build_sync and checks the SQL exactly (expect NULL: nothing to do). */
static void sync_expect(const struct param_list *want, struct param_list *server,
			const struct param_list *defaults, const char *expect)
{
	char buf[4096];
	memset(buf, 'x', sizeof(buf));
	int n = params_build_sync(want, server, defaults, buf, sizeof(buf));
	if (!expect) {
		assert_int_equal(n, 0);
		assert_string_equal(buf, "");
		return;
	}
	assert_string_equal(buf, expect);
	assert_int_equal(n, (int)strlen(expect));
}

/*
 * The state a successful sync promises: every name the client has carries
 * its value; every other name with a pool default carries the default; no
 * name berth set for someone else is left. A second sync is then a no-op.
 */
static void assert_synced(const struct param_list *want, struct param_list *server,
			  const struct param_list *defaults)
{
	for (size_t i = 0; i < want->n; i++) {
		const char *v = params_get(server, want->items[i].name);
		assert_non_null(v);
		assert_string_equal(v, want->items[i].value);
	}
	for (size_t i = 0; i < server->n; i++) {
		const struct param *p = &server->items[i];
		if (params_get(want, p->name))
			continue;
		const char *def = params_get(defaults, p->name);
		if (def)
			assert_string_equal(p->value, def);
		else
			assert_true(p->reported); /* only server-reported values without default remain */
	}
	char buf[4096];
	uint64_t sig = server->sig;
	assert_int_equal(params_build_sync(want, server, defaults, buf, sizeof(buf)), 0);
	assert_true(server->sig == sig);
}

static void test_sync_nothing(void **state)
{
	(void)state;
	struct param_list want = {0}, server = {0}, defaults = {0};

	/* all empty */
	sync_expect(&want, &server, &defaults, NULL);

	/* fresh server, client asks for nothing */
	fill_defaults(&defaults);
	assert_true(params_copy(&server, &defaults));
	uint64_t sig = server.sig;
	sync_expect(&want, &server, &defaults, NULL);
	assert_true(server.sig == sig);

	/* client asks for what the server has */
	set_ok(&want, "TimeZone", "UTC", false);
	set_ok(&want, "datestyle", "ISO, MDY", false);
	sync_expect(&want, &server, &defaults, NULL);

	/* ... or for a default the server list does not carry */
	params_remove(&server, "TimeZone");
	sync_expect(&want, &server, &defaults, NULL);

	/* server already has the client's unreported setting */
	set_ok(&want, "search_path", "app", false);
	set_ok(&server, "search_path", "app", false);
	sync_expect(&want, &server, &defaults, NULL);
	params_clear(&want);
	params_clear(&server);
	params_clear(&defaults);
}

static void test_sync_set_missing(void **state)
{
	(void)state;
	struct param_list want = {0}, server = {0}, defaults = {0};
	fill_defaults(&defaults);
	assert_true(params_copy(&server, &defaults));

	set_ok(&want, "search_path", "app", false);
	sync_expect(&want, &server, &defaults,
		    "SELECT pg_catalog.set_config(E'search_path', E'app', false);");
	assert_string_equal(params_get(&server, "search_path"), "app");
	/* not a reported parameter: no pool default names it */
	assert_false(find_item(&server, "search_path")->reported);
	assert_synced(&want, &server, &defaults);

	/* two at once, in the client's order; a reported one becomes reported */
	set_ok(&want, "TimeZone", "Europe/Berlin", false);
	set_ok(&want, "work_mem", "64MB", false);
	sync_expect(&want, &server, &defaults,
		    "SELECT pg_catalog.set_config(E'TimeZone', E'Europe/Berlin', false), "
		    "pg_catalog.set_config(E'work_mem', E'64MB', false);");
	assert_true(find_item(&server, "TimeZone")->reported);
	assert_false(find_item(&server, "work_mem")->reported);
	assert_synced(&want, &server, &defaults);

	/* an empty value is a value */
	set_ok(&want, "search_path", "", false);
	sync_expect(&want, &server, &defaults,
		    "SELECT pg_catalog.set_config(E'search_path', E'', false);");
	assert_synced(&want, &server, &defaults);

	/* the client's spelling of the name is used; the server's entry is updated */
	params_clear(&want);
	set_ok(&want, "timezone", "Asia/Tokyo", false);
	set_ok(&want, "search_path", "", false);
	set_ok(&want, "work_mem", "64MB", false);
	sync_expect(&want, &server, &defaults,
		    "SELECT pg_catalog.set_config(E'timezone', E'Asia/Tokyo', false);");
	assert_string_equal(params_get(&server, "TimeZone"), "Asia/Tokyo");
	assert_synced(&want, &server, &defaults);
	params_clear(&want);
	params_clear(&server);
	params_clear(&defaults);
}

static void test_sync_reset_leftovers(void **state)
{
	(void)state;
	struct param_list want = {0}, server = {0}, defaults = {0};
	fill_defaults(&defaults);
	assert_true(params_copy(&server, &defaults));

	/* another client left search_path (unreported, no default) */
	set_ok(&server, "search_path", "other", false);
	sync_expect(&want, &server, &defaults, " RESET \"search_path\";");
	assert_null(params_get(&server, "search_path"));
	assert_synced(&want, &server, &defaults);

	/* another client left a reported value that differs from the default */
	set_ok(&server, "TimeZone", "Asia/Tokyo", true);
	sync_expect(&want, &server, &defaults, " RESET \"TimeZone\";");
	assert_string_equal(params_get(&server, "TimeZone"), "UTC");
	assert_true(find_item(&server, "TimeZone")->reported);
	assert_synced(&want, &server, &defaults);

	/* sets first, then resets in server-list order */
	set_ok(&server, "application_name", "other-app", true);
	set_ok(&server, "search_path", "other", false);
	set_ok(&server, "statement_timeout", "5s", false);
	set_ok(&want, "work_mem", "1MB", false);
	sync_expect(&want, &server, &defaults,
		    "SELECT pg_catalog.set_config(E'work_mem', E'1MB', false);"
		    " RESET \"application_name\"; RESET \"search_path\"; RESET \"statement_timeout\";");
	assert_string_equal(params_get(&server, "application_name"), "");
	assert_null(params_get(&server, "search_path"));
	assert_null(params_get(&server, "statement_timeout"));
	assert_synced(&want, &server, &defaults);

	/* the next client wants none of that: work_mem goes */
	params_clear(&want);
	sync_expect(&want, &server, &defaults, " RESET \"work_mem\";");
	assert_null(params_get(&server, "work_mem"));
	assert_synced(&want, &server, &defaults);
	params_clear(&want);
	params_clear(&server);
	params_clear(&defaults);
}

static void test_sync_reported_left_alone(void **state)
{
	(void)state;
	struct param_list want = {0}, server = {0}, defaults = {0};
	fill_defaults(&defaults);
	assert_true(params_copy(&server, &defaults));
	/* reported by the server, no pool default known: not berth's business */
	set_ok(&server, "server_version", "16.4", true);
	set_ok(&server, "in_hot_standby", "off", true);
	sync_expect(&want, &server, &defaults, NULL);

	/* still there after a sync that does run */
	set_ok(&want, "search_path", "s", false);
	sync_expect(&want, &server, &defaults,
		    "SELECT pg_catalog.set_config(E'search_path', E's', false);");
	assert_string_equal(params_get(&server, "server_version"), "16.4");
	assert_string_equal(params_get(&server, "in_hot_standby"), "off");
	assert_synced(&want, &server, &defaults);
	params_clear(&want);
	params_clear(&server);
	params_clear(&defaults);
}

static void test_sync_quoting(void **state)
{
	(void)state;
	struct param_list want = {0}, server = {0}, defaults = {0};
	fill_defaults(&defaults);
	assert_true(params_copy(&server, &defaults));

	/* value: it's a \ test  -> E'it''s a \\ test' */
	set_ok(&want, "application_name", "it's a \\ test", false);
	sync_expect(&want, &server, &defaults,
		    "SELECT pg_catalog.set_config(E'application_name', E'it''s a \\\\ test', false);");
	assert_string_equal(params_get(&server, "application_name"), "it's a \\ test");
	assert_synced(&want, &server, &defaults);

	/* a value that tries to close the literal and append a statement */
	params_clear(&want);
	set_ok(&want, "search_path", "x', true); DROP TABLE t; --\\'", false);
	sync_expect(&want, &server, &defaults,
		    "SELECT pg_catalog.set_config(E'search_path', "
		    "E'x'', true); DROP TABLE t; --\\\\''', false); RESET \"application_name\";");
	assert_synced(&want, &server, &defaults);

	/* only quote characters, only backslashes, a trailing backslash */
	params_clear(&want);
	set_ok(&want, "a.q", "''", false);
	set_ok(&want, "a.b", "\\\\", false);
	set_ok(&want, "a.t", "x\\", false);
	sync_expect(&want, &server, &defaults,
		    "SELECT pg_catalog.set_config(E'a.q', E'''''', false), "
		    "pg_catalog.set_config(E'a.b', E'\\\\\\\\', false), "
		    "pg_catalog.set_config(E'a.t', E'x\\\\', false); RESET \"search_path\";");
	assert_synced(&want, &server, &defaults);

	/* names go through the same literal quoting in set_config */
	params_clear(&want);
	set_ok(&want, "my.o'dd\\name", "1", false);
	sync_expect(&want, &server, &defaults,
		    "SELECT pg_catalog.set_config(E'my.o''dd\\\\name', E'1', false);"
		    " RESET \"a.q\"; RESET \"a.b\"; RESET \"a.t\";");
	assert_synced(&want, &server, &defaults);

	/* RESET names are identifiers: double quotes doubled, backslash and ' literal */
	params_clear(&want);
	params_clear(&server);
	assert_true(params_copy(&server, &defaults));
	set_ok(&server, "my.\"odd\"name", "1", false);
	set_ok(&server, "my.o'dd\\name", "1", false);
	sync_expect(&want, &server, &defaults,
		    " RESET \"my.\"\"odd\"\"name\"; RESET \"my.o'dd\\name\";");
	assert_synced(&want, &server, &defaults);

	/* non-ASCII passes through untouched */
	set_ok(&want, "application_name", "caf\xc3\xa9 \xe2\x82\xac", false);
	sync_expect(&want, &server, &defaults,
		    "SELECT pg_catalog.set_config(E'application_name', E'caf\xc3\xa9 \xe2\x82\xac', false);");
	params_clear(&want);
	params_clear(&server);
	params_clear(&defaults);
}

static void test_sync_buffer_too_small(void **state)
{
	(void)state;
	struct param_list want = {0}, server = {0}, defaults = {0};
	fill_defaults(&defaults);
	set_ok(&want, "application_name", "it's \\", false);
	set_ok(&want, "search_path", "a, b", false);

	/* three shapes: sets only (0), resets only (1), both (2) */
	for (int shape = 0; shape < 3; shape++) {
		struct param_list w = {0};
		params_clear(&server);
		assert_true(params_copy(&server, &defaults));
		if (shape != 0) {
			set_ok(&server, "statement_timeout", "1s", false);
			set_ok(&server, "my.\"q\"", "1", false);
		}
		if (shape != 1)
			assert_true(params_copy(&w, &want));

		/* the full text, with plenty of room */
		struct param_list probe = {0};
		assert_true(params_copy(&probe, &server));
		char full[1024];
		int len = params_build_sync(&w, &probe, &defaults, full, sizeof(full));
		assert_true(len > 0);
		assert_int_equal((size_t)len, strlen(full));
		if (shape == 1)
			assert_string_equal(full, " RESET \"statement_timeout\"; RESET \"my.\"\"q\"\"\";");
		params_clear(&probe);

		/* every size short of len + 1 fails and leaves the server list alone */
		uint64_t sig = server.sig;
		size_t n_before = server.n;
		for (size_t buflen = 1; buflen <= (size_t)len; buflen++) {
			char *buf = malloc(buflen); /* exact size: valgrind/ASan catch overruns */
			assert_non_null(buf);
			assert_int_equal(params_build_sync(&w, &server, &defaults, buf, buflen), -1);
			assert_true(server.sig == sig);
			assert_int_equal(server.n, n_before);
			free(buf);
		}
		/* exactly len + 1 (the NUL) fits */
		char *buf = malloc((size_t)len + 1);
		assert_non_null(buf);
		assert_int_equal(params_build_sync(&w, &server, &defaults, buf, (size_t)len + 1), len);
		assert_string_equal(buf, full);
		free(buf);
		assert_synced(&w, &server, &defaults);
		params_clear(&w);
	}
	params_clear(&want);
	params_clear(&server);
	params_clear(&defaults);
}

/*
 * A zero-length buffer is "too small" for everything, the terminating NUL
 * included: nothing may be written to it.
 */
static void test_sync_zero_length_buffer(void **state)
{
	(void)state;
	struct param_list want = {0}, server = {0}, defaults = {0};
	char buf[1] = {'#'};
	set_ok(&want, "search_path", "x", false);
	int n = params_build_sync(&want, &server, &defaults, buf, 0);
	size_t server_n = server.n;
	params_clear(&want); /* before asserting: a failure must not leak */
	params_clear(&server);
	params_clear(&defaults);
	assert_int_equal(n, -1);
	assert_int_equal(server_n, 0);
	assert_int_equal(buf[0], '#');
}

/* One server passed from client to client: the list always tracks the truth. */
static void test_sync_client_sequence(void **state)
{
	(void)state;
	struct param_list defaults = {0}, server = {0};
	struct param_list c1 = {0}, c2 = {0}, c3 = {0};
	fill_defaults(&defaults);
	assert_true(params_copy(&server, &defaults));

	set_ok(&c1, "TimeZone", "Europe/Berlin", false);
	set_ok(&c1, "search_path", "tenant1", false);
	set_ok(&c1, "application_name", "app1", false);

	set_ok(&c2, "application_name", "app2", false);
	set_ok(&c2, "DateStyle", "ISO, MDY", false); /* equals the default */

	set_ok(&c3, "search_path", "tenant1", false);
	set_ok(&c3, "TIMEZONE", "Europe/Berlin", false);
	set_ok(&c3, "application_name", "app1", false);

	sync_expect(&c1, &server, &defaults,
		    "SELECT pg_catalog.set_config(E'TimeZone', E'Europe/Berlin', false), "
		    "pg_catalog.set_config(E'search_path', E'tenant1', false), "
		    "pg_catalog.set_config(E'application_name', E'app1', false);");
	assert_synced(&c1, &server, &defaults);

	sync_expect(&c2, &server, &defaults,
		    "SELECT pg_catalog.set_config(E'application_name', E'app2', false);"
		    " RESET \"TimeZone\"; RESET \"search_path\";");
	assert_synced(&c2, &server, &defaults);

	/* c3 wants what c1 had (other order, other case): c1's signature */
	assert_true(c3.sig == c1.sig);
	sync_expect(&c3, &server, &defaults,
		    "SELECT pg_catalog.set_config(E'search_path', E'tenant1', false), "
		    "pg_catalog.set_config(E'TIMEZONE', E'Europe/Berlin', false), "
		    "pg_catalog.set_config(E'application_name', E'app1', false);");
	assert_synced(&c3, &server, &defaults);
	sync_expect(&c1, &server, &defaults, NULL);

	/* back to a client with no wishes: the server is default again */
	struct param_list none = {0};
	sync_expect(&none, &server, &defaults,
		    " RESET \"application_name\"; RESET \"TimeZone\"; RESET \"search_path\";");
	assert_synced(&none, &server, &defaults);
	assert_true(server.sig == defaults.sig);

	params_clear(&c1);
	params_clear(&c2);
	params_clear(&c3);
	params_clear(&server);
	params_clear(&defaults);
}

/* ---- params_parse_options ----------------------------------------------- */

struct collected {
	int n;
	char name[8][64];
	char value[8][128];
	bool fail_add; /* simulate out of memory */
};

static bool collect(void *arg, const char *name, const char *value)
{
	struct collected *c = arg;
	if (c->fail_add)
		return false;
	assert_true(c->n < 8);
	snprintf(c->name[c->n], sizeof(c->name[0]), "%s", name);
	snprintf(c->value[c->n], sizeof(c->value[0]), "%s", value);
	c->n++;
	return true;
}

static struct collected parse_ok(const char *options)
{
	struct collected c;
	char err[256] = "";
	memset(&c, 0, sizeof(c));
	bool ok = params_parse_options(options, collect, &c, err, sizeof(err));
	if (!ok)
		print_error("options \"%s\": %s\n", options, err);
	assert_true(ok);
	return c;
}

static void parse_fail(const char *options, const char *err_part)
{
	struct collected c;
	char err[256] = "";
	memset(&c, 0, sizeof(c));
	assert_false(params_parse_options(options, collect, &c, err, sizeof(err)));
	if (!strstr(err, err_part))
		print_error("options \"%s\": error \"%s\" lacks \"%s\"\n", options, err, err_part);
	assert_non_null(strstr(err, err_part));
}

static void test_options_forms(void **state)
{
	(void)state;
	struct collected c;

	c = parse_ok("-c a=b");
	assert_int_equal(c.n, 1);
	assert_string_equal(c.name[0], "a");
	assert_string_equal(c.value[0], "b");

	c = parse_ok("-ca=b");
	assert_int_equal(c.n, 1);
	assert_string_equal(c.name[0], "a");
	assert_string_equal(c.value[0], "b");

	c = parse_ok("--a=b");
	assert_int_equal(c.n, 1);
	assert_string_equal(c.name[0], "a");
	assert_string_equal(c.value[0], "b");

	/* several words, mixed forms, any whitespace between them */
	c = parse_ok("  -c search_path=app\t--statement_timeout=5s \n -cwork_mem=64MB  ");
	assert_int_equal(c.n, 3);
	assert_string_equal(c.name[0], "search_path");
	assert_string_equal(c.value[0], "app");
	assert_string_equal(c.name[1], "statement_timeout");
	assert_string_equal(c.value[1], "5s");
	assert_string_equal(c.name[2], "work_mem");
	assert_string_equal(c.value[2], "64MB");

	/* only the first '=' splits; an empty value is allowed */
	c = parse_ok("-c a=b=c --e=");
	assert_int_equal(c.n, 2);
	assert_string_equal(c.name[0], "a");
	assert_string_equal(c.value[0], "b=c");
	assert_string_equal(c.name[1], "e");
	assert_string_equal(c.value[1], "");

	/* empty and blank: nothing, success */
	c = parse_ok("");
	assert_int_equal(c.n, 0);
	c = parse_ok("   \t ");
	assert_int_equal(c.n, 0);
}

static void test_options_escapes_and_dashes(void **state)
{
	(void)state;
	struct collected c;

	/* backslash keeps a space inside the word (PostgreSQL pg_split_opts) */
	c = parse_ok("-c search_path=my\\ schema");
	assert_int_equal(c.n, 1);
	assert_string_equal(c.name[0], "search_path");
	assert_string_equal(c.value[0], "my schema");

	c = parse_ok("-c search_path=a\\ \\ b -c x=1");
	assert_int_equal(c.n, 2);
	assert_string_equal(c.value[0], "a  b");
	assert_string_equal(c.name[1], "x");

	/* a doubled backslash is one backslash; other escaped characters are themselves */
	c = parse_ok("-c a=x\\\\y --b=\\q");
	assert_int_equal(c.n, 2);
	assert_string_equal(c.value[0], "x\\y");
	assert_string_equal(c.value[1], "q");

	/* an escaped space can start the value */
	c = parse_ok("--application_name=\\ lead");
	assert_string_equal(c.value[0], " lead");

	/* dashes in names become underscores, not in values */
	c = parse_ok("-c statement-timeout=5-s --idle-in-transaction-session-timeout=1-0");
	assert_int_equal(c.n, 2);
	assert_string_equal(c.name[0], "statement_timeout");
	assert_string_equal(c.value[0], "5-s");
	assert_string_equal(c.name[1], "idle_in_transaction_session_timeout");
	assert_string_equal(c.value[1], "1-0");

	/* "-c" as its own word takes the next word whatever it looks like */
	c = parse_ok("-c --x=y");
	assert_int_equal(c.n, 1);
	assert_string_equal(c.name[0], "__x");
	assert_string_equal(c.value[0], "y");
}

static void test_options_errors(void **state)
{
	(void)state;
	parse_fail("-c", "-c needs an argument");
	parse_fail("-c a=b -c", "-c needs an argument");
	parse_fail("-c   ", "-c needs an argument");
	parse_fail("-B 100", "unsupported option \"-B\"");
	parse_fail("search_path=x", "unsupported option");
	parse_fail("-c a=b -x", "unsupported option \"-x\"");
	parse_fail("-", "unsupported option");
	parse_fail("-c =value", "expected name=value");
	parse_fail("--=value", "expected name=value");
	parse_fail("-c=value", "expected name=value");
	parse_fail("-c a", "expected name=value");
	parse_fail("--a", "expected name=value");
	parse_fail("--", "expected name=value");

	/* a word that does not fit the word buffer */
	char big[2100];
	memcpy(big, "-c a=", 5);
	memset(big + 5, 'v', sizeof(big) - 6);
	big[sizeof(big) - 1] = 0;
	parse_fail(big, "too long");

	/* add() failing is reported */
	struct collected c;
	char err[64] = "";
	memset(&c, 0, sizeof(c));
	c.fail_add = true;
	assert_false(params_parse_options("-c a=b", collect, &c, err, sizeof(err)));
	assert_string_equal(err, "out of memory");

	/* an error after a good word: the good one was already delivered */
	memset(&c, 0, sizeof(c));
	assert_false(params_parse_options("-c a=b bogus", collect, &c, err, sizeof(err)));
	assert_int_equal(c.n, 1);

	/* a tiny error buffer is truncated, not overrun */
	char tiny[8];
	memset(&c, 0, sizeof(c));
	assert_false(params_parse_options("bogus-option-word", collect, &c, tiny, sizeof(tiny)));
	assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_get_replace),
		cmocka_unit_test(test_remove_and_clear),
		cmocka_unit_test(test_growth),
		cmocka_unit_test(test_copy),
		cmocka_unit_test(test_drop_unreported),
		cmocka_unit_test(test_sig_order_independent),
		cmocka_unit_test(test_sync_nothing),
		cmocka_unit_test(test_sync_set_missing),
		cmocka_unit_test(test_sync_reset_leftovers),
		cmocka_unit_test(test_sync_reported_left_alone),
		cmocka_unit_test(test_sync_quoting),
		cmocka_unit_test(test_sync_buffer_too_small),
		cmocka_unit_test(test_sync_zero_length_buffer),
		cmocka_unit_test(test_sync_client_sequence),
		cmocka_unit_test(test_options_forms),
		cmocka_unit_test(test_options_escapes_and_dashes),
		cmocka_unit_test(test_options_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
