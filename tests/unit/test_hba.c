/*
 * test_hba.c - auth_hba_file matching: connection types against unix, TCP
 * and TLS, IPv4 and IPv6 ranges (IPv4-mapped clients count as IPv4),
 * sameuser, name lists and first-match order. Parsing errors are covered by
 * the integration suite (tests/integration/test_auth.py), which starts berth
 * on bad files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cmocka.h>

#include "hba.h"

static struct hba *load_text(const char *text)
{
	char path[] = "/tmp/berth-hba-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	char err[512] = "";
	struct hba *h = hba_load(path, err, sizeof(err));
	unlink(path);
	if (!h)
		fail_msg("%s", err);
	return h;
}

union addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
	struct sockaddr_un un;
};

static union addr ip(const char *text)
{
	union addr a;
	memset(&a, 0, sizeof(a));
	if (inet_pton(AF_INET, text, &a.in.sin_addr) == 1) {
		a.in.sin_family = AF_INET;
	} else {
		assert_int_equal(inet_pton(AF_INET6, text, &a.in6.sin6_addr), 1);
		a.in6.sin6_family = AF_INET6;
	}
	return a;
}

/* The line number of the rule that matches, 0 for none. */
static int line_of(const struct hba *h, const union addr *a, bool tls, const char *db,
		   const char *user)
{
	const struct hba_rule *r = hba_match(h, &a->sa, tls, db, user);
	return r ? r->line : 0;
}

static void test_connection_types_and_ranges(void **state)
{
	(void)state;
	struct hba *h = load_text("local  sameuser all trust\n"              /* 1 */
				  "hostssl all all 10.0.0.0/8 cert\n"         /* 2 */
				  "hostnossl all all 10.0.0.0/8 reject\n"     /* 3 */
				  "host db1,db2 u1,u2 192.168.0.0/16 md5\n"  /* 4 */
				  "host all all fd00::/8 scram-sha-256\n"     /* 5 */
				  "host all all 0.0.0.0/0 password\n");      /* 6 */
	assert_int_equal(h->n, 6);
	assert_int_equal(h->rules[1].method, HBA_CERT);
	union addr unix_addr;
	memset(&unix_addr, 0, sizeof(unix_addr));
	unix_addr.un.sun_family = AF_UNIX;
	assert_int_equal(line_of(h, &unix_addr, false, "alice", "alice"), 1);
	assert_int_equal(line_of(h, &unix_addr, false, "app", "alice"), 0); /* no other local line */

	union addr ten = ip("10.1.2.3");
	assert_int_equal(line_of(h, &ten, true, "app", "u"), 2);
	assert_int_equal(line_of(h, &ten, false, "app", "u"), 3);

	union addr lan = ip("192.168.7.9");
	assert_int_equal(line_of(h, &lan, false, "db2", "u1"), 4);
	assert_int_equal(line_of(h, &lan, false, "db3", "u1"), 6); /* not in the list: falls through */
	assert_int_equal(line_of(h, &lan, false, "db1", "u3"), 6);

	/* an IPv4-mapped client (a dual-stack listener) is matched as IPv4 */
	union addr mapped = ip("::ffff:192.168.1.1");
	assert_int_equal(line_of(h, &mapped, false, "db1", "u2"), 4);

	union addr v6 = ip("fd12::1");
	assert_int_equal(line_of(h, &v6, false, "app", "u"), 5);
	union addr other6 = ip("2001:db8::1");
	assert_int_equal(line_of(h, &other6, false, "app", "u"), 0); /* 0.0.0.0/0 is IPv4 only */
	hba_free(h);
}

static void test_quoted_keywords_are_names(void **state)
{
	(void)state;
	struct hba *h = load_text("host \"all\" all all trust\n"
				  "host all \"sameuser\" 127.0.0.1 255.0.0.0 md5\n");
	union addr lo = ip("127.0.0.1");
	assert_int_equal(line_of(h, &lo, false, "all", "x"), 1);
	assert_int_equal(line_of(h, &lo, false, "app", "sameuser"), 2);
	assert_int_equal(line_of(h, &lo, false, "app", "x"), 0);
	hba_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connection_types_and_ranges),
		cmocka_unit_test(test_quoted_keywords_are_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
