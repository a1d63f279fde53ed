/*
 * test_admin.c - the console's command parser: statement splitting on ';'
 * outside quotes, `WORD [ARG]`, `SET KEY {=|TO} VALUE` with quoted and bare
 * values, and refusal of everything else, on every prefix without reading
 * past the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "admin.h"

static bool parse(const char *s, struct admin_cmd *cmd)
{
	return admin_parse(s, strlen(s), cmd);
}

static void test_statement_split(void **state)
{
	(void)state;
	const char *q = "SHOW POOLS; SHOW STATS";
	assert_int_equal(admin_statement_len(q, strlen(q)), 10);
	q = "SET server_reset_query = 'DISCARD ALL; SELECT 1'; SHOW CONFIG";
	assert_int_equal(admin_statement_len(q, strlen(q)), strstr(q, "'; SHOW") - q + 1);
	q = "PAUSE \"a;b\";RESUME";
	assert_int_equal(admin_statement_len(q, strlen(q)), 11);
	q = "SET x = 'it''s; fine'";
	assert_int_equal(admin_statement_len(q, strlen(q)), strlen(q));
	assert_int_equal(admin_statement_len("", 0), 0);
	assert_int_equal(admin_statement_len(";", 1), 0);
}

static void test_commands(void **state)
{
	(void)state;
	struct admin_cmd c;
	assert_true(parse("SHOW POOLS", &c));
	assert_string_equal(c.verb, "show");
	assert_string_equal(c.arg, "POOLS");
	assert_false(c.is_set);
	assert_true(parse("  \tsHoW\n stats_totals  ", &c));
	assert_string_equal(c.verb, "show");
	assert_string_equal(c.arg, "stats_totals");
	assert_true(parse("RESUME", &c));
	assert_string_equal(c.verb, "resume");
	assert_string_equal(c.arg, "");
	assert_true(parse("PAUSE \"My DB\"", &c));
	assert_string_equal(c.arg, "My DB");
	assert_true(parse("DISABLE app-db.v2", &c));
	assert_string_equal(c.arg, "app-db.v2");
	assert_true(parse("KILL_CLIENT 1234", &c));
	assert_string_equal(c.verb, "kill_client");
	assert_string_equal(c.arg, "1234");
	assert_true(parse("PAUSE \"a\"\"b\"", &c));
	assert_string_equal(c.arg, "a\"b");
}

static void test_set(void **state)
{
	(void)state;
	struct admin_cmd c;
	assert_true(parse("SET default_pool_size = 5", &c));
	assert_true(c.is_set);
	assert_string_equal(c.arg, "default_pool_size");
	assert_string_equal(c.value, "5");
	assert_true(parse("set query_wait_timeout to 1.5", &c));
	assert_string_equal(c.arg, "query_wait_timeout");
	assert_string_equal(c.value, "1.5");
	assert_true(parse("SET log_level='error,warn,info'", &c));
	assert_string_equal(c.value, "error,warn,info");
	assert_true(parse("SET server_reset_query = 'SELECT ''x'''", &c));
	assert_string_equal(c.value, "SELECT 'x'");
	assert_true(parse("SET server_reset_query TO ''", &c));
	assert_string_equal(c.value, "");
	assert_true(parse("SET admin_users = admin,ops", &c));
	assert_string_equal(c.value, "admin,ops");
	assert_true(parse("SET \"pool_mode\" = session", &c));
	assert_string_equal(c.arg, "pool_mode");
}

static void test_refusals(void **state)
{
	(void)state;
	struct admin_cmd c;
	const char *bad[] = {
		"", "   ", "SHOW POOLS STATS", "SHOW 'pools'", "PAUSE a b", "SET", "SET x",
		"SET x 5", "SET x = ", "SET x = 'open", "SET = 5", "SHOW \"\"", "SHOW \"open",
		"SET x = 5 6", "SHOW;", "PAUSE (a)", "KILL_CLIENT 12 34", "SETx = 1 2",
		"SHOWPOOLS extra words", "SET x tomorrow",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (admin_parse(bad[i], strlen(bad[i]), &c))
			fail_msg("accepted \"%s\"", bad[i]);
	}
	/* Every prefix of a statement parses or fails without reading past its end. */
	const char *q = "SET server_reset_query = 'DISCARD ALL; \"x\"' ";
	size_t accepted = 0;
	for (size_t n = 0; n <= strlen(q); n++)
		accepted += admin_parse(q, n, &c);
	/* "S" and "SE" (verbs the dispatcher refuses), the statement with and without its space. */
	assert_int_equal(accepted, 4);
	/* Too long for its field: refused, never truncated. */
	char longarg[200];
	memset(longarg, 'a', sizeof(longarg) - 1);
	longarg[sizeof(longarg) - 1] = 0;
	char stmt[256];
	snprintf(stmt, sizeof(stmt), "PAUSE %s", longarg);
	assert_false(parse(stmt, &c));
}

static void test_console_names(void **state)
{
	(void)state;
	assert_true(admin_is_console_db("berth"));
	assert_true(admin_is_console_db("pgbouncer"));
	assert_false(admin_is_console_db("Berth"));
	assert_false(admin_is_console_db("app"));
	assert_false(admin_is_console_db(""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_statement_split),
		cmocka_unit_test(test_commands),
		cmocka_unit_test(test_set),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_console_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
