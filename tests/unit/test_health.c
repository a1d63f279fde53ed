/*
 * test_health.c - health.c: the backoff's bounds and jitter (pure), and the
 * check loop on a real event_base against sockets the test controls (no
 * PostgreSQL): a refused port goes down and is retried with backoff, a
 * silent server hits health_check_timeout, and a server error that quotes
 * the password is recorded without it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "health.h"
#include "runtime.h"

#define SECRET "SeCrEt-4711"

static void test_backoff_bounds(void **state)
{
	(void)state;
	const int64_t max = 30000000;
	int64_t step = HEALTH_BACKOFF_START_US;
	for (uint32_t f = 1; f <= 40; f++) {
		int64_t lo = step - step / 2, hi = step;
		assert_true(health_backoff_us(f, max, 0) == lo);
		assert_true(health_backoff_us(f, max, (uint64_t)(step / 2)) == hi);
		uint64_t r = 0x9e3779b97f4a7c15u;
		for (int i = 0; i < 200; i++) {
			r = r * 6364136223846793005u + 1442695040888963407u;
			int64_t d = health_backoff_us(f, max, r);
			if (d < lo || d > hi)
				fail_msg("failures %u: %lld outside [%lld, %lld]", f, (long long)d,
					 (long long)lo, (long long)hi);
		}
		assert_true(health_backoff_us(f, max, UINT64_MAX) <= hi);
		step = step * 2 > max ? max : step * 2;
	}
	/* the first steps: 0.25 s, 0.5 s, 1 s; the cap holds however many failures */
	assert_true(health_backoff_us(1, max, 125000) == 250000);
	assert_true(health_backoff_us(2, max, 250000) == 500000);
	assert_true(health_backoff_us(3, max, 500000) == 1000000);
	assert_true(health_backoff_us(UINT32_MAX, max, UINT64_MAX) <= max);
	assert_true(health_backoff_us(UINT32_MAX, max, 0) == max / 2);
	/* a cap below the first step wins */
	assert_true(health_backoff_us(1, 100000, 50000) == 100000);
	assert_true(health_backoff_us(5, 100000, 0) == 50000);
}

/* Jitter spreads: many processes that lost the same upstream do not retry together. */
static void test_backoff_jitter_spreads(void **state)
{
	(void)state;
	int low = 0, high = 0;
	int64_t seen_min = INT64_MAX, seen_max = 0;
	uint64_t r = 12345;
	for (int i = 0; i < 1000; i++) {
		r ^= r << 13;
		r ^= r >> 7;
		r ^= r << 17;
		int64_t d = health_backoff_us(6, 30000000, r); /* step 8 s */
		seen_min = d < seen_min ? d : seen_min;
		seen_max = d > seen_max ? d : seen_max;
		if (d < 6000000)
			low++;
		else
			high++;
	}
	assert_true(low > 300 && high > 300);
	assert_true(seen_min < 4200000 && seen_max > 7800000);
}

/* ---- the loop against sockets the test controls -------------------------- */

struct rig {
	struct config *cfg;
	struct runtime rt;
	struct worker w;
	struct health *h;
	int listen_fd;   /* -1: none */
	int port;
	bool answer;     /* accept and send an ErrorResponse quoting SECRET */
	struct event *ev_accept;
	int accepted;
};

static int listen_any(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 16), 0);
	socklen_t len = sizeof(a);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/* Reply to whatever arrives (libpq's startup packet) with a FATAL that quotes the password. */
static void conn_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	(void)arg;
	char buf[1024];
	if (read(fd, buf, sizeof(buf)) <= 0) {
		close(fd);
		return;
	}
	static const char fields[] = "SFATAL\0VFATAL\0C28P01\0Mpassword " SECRET " is wrong\0";
	unsigned char msg[128];
	size_t flen = sizeof(fields); /* includes the final terminator */
	uint32_t len = htonl((uint32_t)(4 + flen));
	msg[0] = 'E';
	memcpy(msg + 1, &len, 4);
	memcpy(msg + 5, fields, flen);
	assert_true(write(fd, msg, 5 + flen) == (ssize_t)(5 + flen));
	close(fd);
}

static void accept_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rig *r = arg;
	(void)what;
	int c = accept(fd, NULL, NULL);
	if (c < 0)
		return;
	r->accepted++;
	if (!r->answer) { /* a silent server: keep the connection, say nothing */
		return;
	}
	event_base_once(r->w.base, c, EV_READ, conn_cb, r, NULL);
}

static void rig_start(struct rig *r, const char *extra_env)
{
	char url[256], ex[128];
	snprintf(url, sizeof(url),
		 "DATABASE_URL=postgres://app:" SECRET "@127.0.0.1:%d/appdb?sslmode=disable", r->port);
	snprintf(ex, sizeof(ex), "%s", extra_env ? extra_env : "BERTH_LOG_LEVEL=error");
	char *env[] = {url, ex, "BERTH_HEALTH_CHECK_TIMEOUT=0.3", NULL};
	struct config_error err;
	r->cfg = config_load(NULL, env, &err);
	if (!r->cfg)
		fail_msg("config: %s", err.text);
	r->rt.cfg = r->cfg;
	r->rt.worker = &r->w;
	assert_true(worker_init(&r->w, &r->rt));
	if (r->listen_fd >= 0) {
		r->ev_accept = event_new(r->w.base, r->listen_fd, EV_READ | EV_PERSIST, accept_cb, r);
		event_add(r->ev_accept, NULL);
	}
	r->h = health_start(&r->w);
	assert_non_null(r->h);
	/* Nothing is known before the loop runs: outcomes never arrive inside health_start. */
	const struct health_status *st = health_find(r->h, "appdb");
	assert_non_null(st);
	assert_int_equal(st->state, HEALTH_UNKNOWN);
	char reason[300];
	assert_false(health_ready(r->h, reason, sizeof(reason)));
	assert_string_equal(reason, "upstream not checked yet: appdb");
}

static void rig_run(struct rig *r, int64_t us)
{
	struct timeval tv = {.tv_sec = us / 1000000, .tv_usec = us % 1000000};
	event_base_loopexit(r->w.base, &tv);
	event_base_dispatch(r->w.base);
}

static void rig_stop(struct rig *r)
{
	health_stop(r->h);
	if (r->ev_accept)
		event_free(r->ev_accept);
	worker_shutdown(&r->w);
	if (r->listen_fd >= 0)
		close(r->listen_fd);
	config_free(r->cfg);
}

static void test_refused_goes_down_with_backoff(void **state)
{
	(void)state;
	struct rig r = {.listen_fd = -1};
	int fd = listen_any(&r.port);
	close(fd); /* nobody listens there now: connections are refused */
	rig_start(&r, NULL);
	rig_run(&r, 1200000);
	const struct health_status *st = health_find(r.h, "appdb");
	assert_int_equal(st->state, HEALTH_DOWN);
	/* checks at 0, then after 0.125-0.25 s, 0.25-0.5 s, 0.5-1 s: 3 or 4 within 1.2 s */
	if (st->failures < 3 || st->failures > 4)
		fail_msg("%llu checks in 1.2 s", (unsigned long long)st->failures);
	assert_true(st->checks == st->failures);
	assert_true(st->consecutive_failures == st->failures);
	assert_true(st->last_success_us == 0);
	assert_true(st->last_check_us > 1600000000LL * 1000000);
	assert_non_null(strstr(st->last_error, "refused"));
	assert_null(strchr(st->last_error, '\n'));
	assert_null(strstr(st->last_error, SECRET));
	char reason[300];
	assert_false(health_ready(r.h, reason, sizeof(reason)));
	assert_true(strncmp(reason, "upstream down: appdb: ", 22) == 0);
	assert_string_equal(health_state_name(st->state), "down");
	assert_ptr_equal(health_next(r.h, NULL), st);
	assert_null(health_next(r.h, st));
	rig_stop(&r);
}

static void test_silent_server_times_out(void **state)
{
	(void)state;
	struct rig r = {0};
	r.listen_fd = listen_any(&r.port);
	rig_start(&r, NULL);
	rig_run(&r, 450000);
	const struct health_status *st = health_find(r.h, "appdb");
	assert_int_equal(st->state, HEALTH_DOWN);
	assert_true(st->failures == 1);
	assert_non_null(strstr(st->last_error, "health_check_timeout"));
	assert_true(st->last_latency_us >= 290000 && st->last_latency_us < 450000);
	assert_true(r.accepted >= 1);
	rig_stop(&r);
}

static void test_error_never_keeps_the_password(void **state)
{
	(void)state;
	struct rig r = {.answer = true};
	r.listen_fd = listen_any(&r.port);
	rig_start(&r, NULL);
	rig_run(&r, 100000);
	const struct health_status *st = health_find(r.h, "appdb");
	assert_int_equal(st->state, HEALTH_DOWN);
	assert_non_null(strstr(st->last_error, "password **** is wrong"));
	assert_null(strstr(st->last_error, SECRET));
	assert_non_null(strstr(st->last_error, "****"));
	char reason[300];
	assert_false(health_ready(r.h, reason, sizeof(reason)));
	assert_null(strstr(reason, SECRET));
	rig_stop(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff_bounds),
		cmocka_unit_test(test_backoff_jitter_spreads),
		cmocka_unit_test(test_refused_goes_down_with_backoff),
		cmocka_unit_test(test_silent_server_times_out),
		cmocka_unit_test(test_error_never_keeps_the_password),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
