/*
 * test_sqlscan.c - the statement classifier behind settings resync, pinning
 * and prepared-statement invalidation: what it must find, and what it must
 * not (keywords inside literals, identifiers and comments).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sqlscan.h"

static unsigned cls(const char *sql)
{
	return sqlscan_classify(sql, strlen(sql), NULL);
}

static void test_plain_statements_are_nothing(void **state)
{
	(void)state;
	assert_int_equal(cls("SELECT abalance FROM pgbench_accounts WHERE aid = 42;"), 0);
	assert_int_equal(cls("UPDATE t SET x = 1 WHERE y = 2"), 0);
	assert_int_equal(cls("INSERT INTO t DEFAULT VALUES"), 0);
	assert_int_equal(cls("BEGIN; SELECT 1; COMMIT"), SQL_MULTI);
	assert_int_equal(cls("SELECT 1;"), 0);
	assert_int_equal(cls("SELECT 1; ; -- nothing else"), 0);
	assert_int_equal(cls("WITH q AS (SELECT 1) SELECT * FROM q"), 0);
	assert_int_equal(cls(""), 0);
}

static void test_session_state(void **state)
{
	(void)state;
	assert_true(cls("SELECT pg_advisory_lock(72707369)") & SQL_SESSION_STATE);
	assert_true(cls("select PG_TRY_ADVISORY_LOCK(1)") & SQL_SESSION_STATE);
	/* Mixed case and the word ending the text take the fast path's check too. */
	assert_true(cls("SELECT pg_AdViSoRy_lock(1)") & SQL_SESSION_STATE);
	assert_true(cls("SELECT Pg_Advisory_Lock(1) ORDER BY 1") & SQL_SESSION_STATE);
	assert_int_equal(cls("SELECT 1 ORDER BY y"), 0);
	assert_true(cls("SELECT pg_advisory_unlock_all()") & SQL_SESSION_STATE);
	assert_int_equal(cls("SELECT pg_advisory_xact_lock(1)"), 0);
	assert_int_equal(cls("SELECT pg_try_advisory_xact_lock(1)"), 0);
	assert_true(cls("LISTEN channel") & SQL_SESSION_STATE);
	assert_true(cls("  unlisten *") & SQL_SESSION_STATE);
	assert_true(cls("SET work_mem = '64MB'") & SQL_SESSION_STATE);
	assert_true(cls("SET SESSION AUTHORIZATION bob") & SQL_SESSION_STATE);
	assert_int_equal(cls("SET LOCAL work_mem = '64MB'"), 0);
	assert_int_equal(cls("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"), 0);
	assert_true(cls("CREATE TEMP TABLE t (x int)") & SQL_SESSION_STATE);
	assert_true(cls("create global temporary table t (x int)") & SQL_SESSION_STATE);
	assert_false(cls("CREATE TABLE t (x int)") & SQL_SESSION_STATE);
	assert_true(cls("PREPARE q AS SELECT 1") & SQL_SESSION_STATE);
	assert_true(cls("DECLARE c CURSOR WITH HOLD FOR SELECT 1") & SQL_SESSION_STATE);
	/* Second statement counts too. */
	assert_true(cls("SELECT 1; SET search_path = x") & SQL_SESSION_STATE);
}

static void test_resets_and_ddl(void **state)
{
	(void)state;
	assert_true(cls("RESET application_name") & SQL_RESETS_SETTINGS);
	assert_true(cls("DISCARD ALL") & SQL_RESETS_SETTINGS);
	assert_true(cls("DISCARD ALL") & SQL_DROPS_STATEMENTS);
	assert_true(cls("SET TimeZone TO DEFAULT") & SQL_RESETS_SETTINGS);
	assert_false(cls("SET TimeZone = 'UTC'") & SQL_RESETS_SETTINGS);
	assert_true(cls("ALTER TABLE t ADD COLUMN y int") & SQL_DDL);
	assert_true(cls("DROP TABLE t") & SQL_DDL);
	assert_true(cls("CREATE TABLE t (x int)") & SQL_DDL);
	assert_true(cls("DEALLOCATE ALL") & SQL_DROPS_STATEMENTS);
	struct sqlscan_name nm;
	unsigned f = sqlscan_classify("DEALLOCATE PREPARE my_stmt", 26, &nm);
	assert_true(f & SQL_DEALLOCATE_NAME);
	assert_false(f & SQL_MULTI);
	assert_string_equal(nm.name, "my_stmt");
	f = sqlscan_classify("  EXECUTE s1(1, 'a')", 20, &nm);
	assert_true(f & SQL_EXECUTE_NAME);
	assert_string_equal(nm.name, "s1");
	assert_int_equal(nm.off, 10);
	assert_int_equal(nm.len, 2);
	f = sqlscan_classify("PREPARE p AS SELECT 1", 21, &nm);
	assert_true(f & SQL_PREPARE_NAME);
	assert_string_equal(nm.name, "p");
	assert_true(cls("DEALLOCATE a; SELECT 1") & SQL_MULTI);
}

static void test_quotes_and_comments_hide_keywords(void **state)
{
	(void)state;
	assert_int_equal(cls("SELECT 'SET x = 1; LISTEN y; pg_advisory_lock(1)'"), 0);
	assert_int_equal(cls("SELECT \"pg_advisory_lock\" FROM t"), 0);
	assert_int_equal(cls("SELECT 1 -- LISTEN x\n"), 0);
	assert_int_equal(cls("SELECT /* RESET ALL; pg_advisory_lock(1) */ 1"), 0);
	assert_int_equal(cls("SELECT $$; SET x = 1; $$"), 0);
	assert_int_equal(cls("SELECT $tag$ LISTEN $tag$, $1"), 0);
	assert_int_equal(cls("SELECT E'it\\'s; LISTEN x'"), 0);
	assert_int_equal(cls("SELECT 'it''s; LISTEN x'"), 0);
	/* ...but what follows a closed literal or comment still counts. */
	assert_true(cls("SELECT 'x'; LISTEN y") & SQL_SESSION_STATE);
	assert_true(cls("/* hi */ SET work_mem = '1MB'") & SQL_SESSION_STATE);
}

static void test_unterminated_input_is_safe(void **state)
{
	(void)state;
	assert_int_equal(cls("SELECT 'never closed"), 0);
	assert_int_equal(cls("SELECT /* never closed"), 0);
	assert_int_equal(cls("SELECT $a$ never closed"), 0);
	assert_int_equal(cls("SELECT \"x"), 0);
	/* Every prefix of a tricky statement is scanned without reading past its end. */
	const char *q = "SET x = E'a\\'b'; /* c */ SELECT pg_advisory_lock($1) -- d";
	for (size_t n = 0; n <= strlen(q); n++)
		(void)sqlscan_classify(q, n, NULL);
	/*
	 * Text that ends right after "pg_advisory_" names no xact function, whatever
	 * the bytes past its end say (found by scripts/fuzz: the check read them).
	 */
	const char *x = "SELECT pg_advisory_xact_lock(1)";
	assert_true(sqlscan_classify(x, strlen("SELECT pg_advisory_"), NULL) & SQL_SESSION_STATE);
	const char *tx = "SELECT pg_try_advisory_xact_lock(1)";
	assert_true(sqlscan_classify(tx, strlen("SELECT pg_try_advisory_"), NULL) & SQL_SESSION_STATE);
	assert_int_equal(sqlscan_classify(x, strlen(x), NULL), 0);
}

static const char *begin_tag(const char *sql)
{
	return sqlscan_plain_begin(sql, strlen(sql));
}

static void test_plain_begin(void **state)
{
	(void)state;
	assert_string_equal(begin_tag("BEGIN"), "BEGIN");
	assert_string_equal(begin_tag("begin;"), "BEGIN");
	assert_string_equal(begin_tag("  Begin Work ;\n"), "BEGIN");
	assert_string_equal(begin_tag("BEGIN TRANSACTION"), "BEGIN");
	assert_string_equal(begin_tag("start\ttransaction;"), "START TRANSACTION");
	/* Anything that could fail or change the transaction is not plain. */
	assert_null(begin_tag("BEGIN ISOLATION LEVEL SERIALIZABLE"));
	assert_null(begin_tag("BEGIN READ ONLY"));
	assert_null(begin_tag("START TRANSACTION READ ONLY"));
	assert_null(begin_tag("BEGIN; SELECT 1"));
	assert_null(begin_tag("BEGIN;;"));
	assert_null(begin_tag("BEGIN WORK WORK"));
	assert_null(begin_tag("BEGINX"));
	assert_null(begin_tag("START"));
	assert_null(begin_tag("/* c */ BEGIN"));
	assert_null(begin_tag("BEGIN -- c"));
	assert_null(begin_tag(""));
	assert_null(begin_tag("COMMIT"));
	/* Every prefix is read within its length. */
	const char *q = "START TRANSACTION ;";
	for (size_t n = 0; n < strlen("START TRANSACTION"); n++)
		assert_null(sqlscan_plain_begin(q, n));
	assert_string_equal(sqlscan_plain_begin(q, strlen("START TRANSACTION")), "START TRANSACTION");
}

static const char *end_tag(const char *sql)
{
	return sqlscan_plain_end(sql, strlen(sql));
}

static void test_plain_end(void **state)
{
	(void)state;
	assert_string_equal(end_tag("COMMIT"), "COMMIT");
	assert_string_equal(end_tag(" end work;"), "COMMIT");
	assert_string_equal(end_tag("Commit Transaction"), "COMMIT");
	assert_string_equal(end_tag("ROLLBACK;"), "ROLLBACK");
	assert_string_equal(end_tag("abort\n"), "ROLLBACK");
	/* What does more than end the transaction is PostgreSQL's. */
	assert_null(end_tag("COMMIT AND CHAIN"));
	assert_null(end_tag("ROLLBACK AND NO CHAIN"));
	assert_null(end_tag("ROLLBACK TO SAVEPOINT a"));
	assert_null(end_tag("COMMIT PREPARED 'x'"));
	assert_null(end_tag("COMMIT; SELECT 1"));
	assert_null(end_tag("COMMITTED"));
	assert_null(end_tag("BEGIN"));
	/* A NUL inside the text (a malformed Query) is no blank. */
	assert_null(sqlscan_plain_end("COMMIT\0x", 8));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_statements_are_nothing),
		cmocka_unit_test(test_session_state),
		cmocka_unit_test(test_resets_and_ddl),
		cmocka_unit_test(test_quotes_and_comments_hide_keywords),
		cmocka_unit_test(test_unterminated_input_is_safe),
		cmocka_unit_test(test_plain_begin),
		cmocka_unit_test(test_plain_end),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
