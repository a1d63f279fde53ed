/*
 * test_stats.c - histogram buckets, SQLSTATE classes and sums: the numbers
 * SHOW STATS and /metrics print come from these.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "stats.h"

static void test_hist_buckets_are_upper_bounds(void **state)
{
	(void)state;
	struct stats_hist h;
	memset(&h, 0, sizeof(h));
	stats_hist_add(&h, 0);        /* <= 100 µs */
	stats_hist_add(&h, 100);      /* a bound belongs to its own bucket (le) */
	stats_hist_add(&h, 101);      /* <= 250 µs */
	stats_hist_add(&h, 60000000); /* the last finite bound */
	stats_hist_add(&h, 60000001); /* +Inf */
	assert_int_equal(h.bucket[0], 2);
	assert_int_equal(h.bucket[1], 1);
	assert_int_equal(h.bucket[STATS_HIST_BUCKETS - 1], 1);
	assert_int_equal(h.bucket[STATS_HIST_BUCKETS], 1);
	assert_int_equal(h.count, 5);
	assert_int_equal(h.sum_us, 0 + 100 + 101 + 60000000 + 60000001ULL);
	for (size_t i = 1; i < STATS_HIST_BUCKETS; i++)
		assert_true(stats_hist_bounds_s[i] > stats_hist_bounds_s[i - 1]);
}

static void test_error_classes(void **state)
{
	(void)state;
	struct pool_stats st;
	memset(&st, 0, sizeof(st));
	stats_count_error(&st, "42P01");
	stats_count_error(&st, "42703");
	stats_count_error(&st, "57014");
	stats_count_error(&st, "\x01\x02xxx"); /* garbage counts as XX */
	assert_int_equal(st.errors, 4);
	assert_non_null(st.errors_by_class);
	assert_int_equal(st.errors_by_class[stats_error_class_index('4', '2')], 2);
	assert_int_equal(st.errors_by_class[stats_error_class_index('5', '7')], 1);
	assert_int_equal(st.errors_by_class[stats_error_class_index('X', 'X')], 1);
	assert_int_equal(stats_error_class_index('4', 'z'), -1);
	char name[3];
	for (int k = 0; k < STATS_ERROR_CLASSES; k++) {
		stats_error_class_name(k, name);
		assert_int_equal(stats_error_class_index(name[0], name[1]), k);
	}
	stats_error_class_name(stats_error_class_index('P', '0'), name);
	assert_string_equal(name, "P0");
	stats_free(&st);
	assert_null(st.errors_by_class);
}

static void test_add_sums_every_counter(void **state)
{
	(void)state;
	struct pool_stats a, b;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	b.xact_count = 3;
	b.query_count = 5;
	b.received = 700;
	b.sent = 900;
	b.wait_time_us = 11;
	b.bind_count = 2;
	stats_hist_add(&b.query_hist, 300);
	stats_add(&a, &b);
	stats_add(&a, &b);
	assert_int_equal(a.xact_count, 6);
	assert_int_equal(a.query_count, 10);
	assert_int_equal(a.received, 1400);
	assert_int_equal(a.sent, 1800);
	assert_int_equal(a.wait_time_us, 22);
	assert_int_equal(a.bind_count, 4);
	assert_int_equal(a.query_hist.count, 2);
	assert_int_equal(a.query_hist.bucket[2], 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hist_buckets_are_upper_bounds),
		cmocka_unit_test(test_error_classes),
		cmocka_unit_test(test_add_sums_every_counter),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
