/*
 * stats.c - per-pool counters, histograms and the stats_period roll-up behind
 * SHOW STATS_AVERAGES. Counting itself is inline field arithmetic in client.c
 * and server.c on the owning worker: no locks, no atomics, no allocation
 * except the errors-by-class table, made on a pool's first error.
 */
#include "stats.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "pool.h"
#include "runtime.h"

/* 100 µs .. 60 s: pooled queries are sub-millisecond, waits can be long. */
const double stats_hist_bounds_s[STATS_HIST_BUCKETS] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
	0.025,	0.05,	 0.1,	 0.25,	0.5,	2.5,   60,
};

/* The same bounds in microseconds, for integer comparison on the hot path. */
static const uint64_t hist_bounds_us[STATS_HIST_BUCKETS] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 2500000,
	60000000,
};

int64_t stats_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void stats_hist_add(struct stats_hist *h, uint64_t us)
{
	size_t i = 0;
	while (i < STATS_HIST_BUCKETS && us > hist_bounds_us[i])
		i++;
	h->bucket[i]++;
	h->sum_us += us;
	h->count++;
}

static int class_char_index(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'A' && ch <= 'Z')
		return 10 + (ch - 'A');
	return -1;
}

int stats_error_class_index(const char c0, const char c1)
{
	int a = class_char_index(c0), b = class_char_index(c1);
	return a < 0 || b < 0 ? -1 : a * 36 + b;
}

void stats_error_class_name(int index, char out[3])
{
	static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
	out[0] = digits[(index / 36) % 36];
	out[1] = digits[index % 36];
	out[2] = 0;
}

void stats_count_error(struct pool_stats *st, const char *sqlstate)
{
	st->errors++;
	int k = stats_error_class_index(sqlstate[0], sqlstate[1]);
	if (k < 0)
		k = stats_error_class_index('X', 'X'); /* not a SQLSTATE: call it internal */
	if (!st->errors_by_class) {
		st->errors_by_class = calloc(STATS_ERROR_CLASSES, sizeof(*st->errors_by_class));
		if (!st->errors_by_class)
			return; /* the total still counts */
	}
	st->errors_by_class[k]++;
}

static void hist_add_all(struct stats_hist *dst, const struct stats_hist *src)
{
	for (size_t i = 0; i <= STATS_HIST_BUCKETS; i++)
		dst->bucket[i] += src->bucket[i];
	dst->sum_us += src->sum_us;
	dst->count += src->count;
}

#define STATS_ADD_FIELD(name) dst->name += src->name;

void stats_add(struct pool_stats *dst, const struct pool_stats *src)
{
	STATS_COUNTERS(STATS_ADD_FIELD)
	hist_add_all(&dst->wait_hist, &src->wait_hist);
	hist_add_all(&dst->query_hist, &src->query_hist);
}

void stats_free(struct pool_stats *st)
{
	free(st->errors_by_class);
	st->errors_by_class = NULL;
}

void stats_database_totals(struct worker *w, const struct database *db, struct pool_stats *out)
{
	memset(out, 0, sizeof(*out));
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		if (!db || p->db == db)
			stats_add(out, &p->stats);
	}
	if (!db)
		stats_add(out, &w->console_stats);
}

#define STATS_COPY_FIELD(name) to->name = from->name;

static void snapshot(struct stats_counters *to, const struct pool_stats *from)
{
	STATS_COUNTERS(STATS_COPY_FIELD)
}

/* log_stats: the period just closed, over all pools, in PgBouncer's words and order. */
static void log_period_averages(struct worker *w)
{
	struct stats_averages a;
	stats_database_averages(w, NULL, &a);
	log_info("stats: %.0f xacts/s, %.0f queries/s, %.0f client parses/s, %.0f server parses/s, "
		 "%.0f binds/s, in %.0f B/s, out %.0f B/s, xact %.0f us, query %.0f us, wait %.0f us",
		 a.xact_count, a.query_count, a.client_parse_count, a.server_parse_count,
		 a.bind_count, a.recv, a.sent, a.xact_time_us, a.query_time_us, a.wait_time_us);
}

void stats_maybe_roll(struct worker *w, int64_t now_us)
{
	int64_t period = worker_config(w)->stats_period;
	if (period <= 0 || now_us - w->stats_rolled_us < period)
		return;
	w->stats_rolled_us = now_us;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		p->stats.period_start = p->stats.period_end;
		snapshot(&p->stats.period_end, &p->stats);
	}
	w->console_stats.period_start = w->console_stats.period_end;
	snapshot(&w->console_stats.period_end, &w->console_stats);
	if (worker_config(w)->log_stats && log_enabled(LOGB_INFO))
		log_period_averages(w);
}

static double per(uint64_t num, uint64_t den)
{
	return den ? (double)num / (double)den : 0.0;
}

/* Add what st counted over the last complete stats_period into d. */
static void add_period(struct stats_counters *d, const struct pool_stats *st)
{
#define STATS_DELTA_INTO(name) d->name += st->period_end.name - st->period_start.name;
	STATS_COUNTERS(STATS_DELTA_INTO)
#undef STATS_DELTA_INTO
}

/* Counts and bytes per second; times per transaction, query or assignment, as PgBouncer. */
static void averages_of(const struct stats_counters *d, int64_t period_us,
			struct stats_averages *out)
{
	memset(out, 0, sizeof(*out));
	double secs = (double)period_us / 1e6;
	if (secs <= 0)
		return;
	out->server_assignment_count = (double)d->server_assignment_count / secs;
	out->xact_count = (double)d->xact_count / secs;
	out->query_count = (double)d->query_count / secs;
	out->recv = (double)d->received / secs;
	out->sent = (double)d->sent / secs;
	out->xact_time_us = per(d->xact_time_us, d->xact_count);
	out->query_time_us = per(d->query_time_us, d->query_count);
	out->wait_time_us = per(d->wait_time_us, d->server_assignment_count);
	out->client_parse_count = (double)d->client_parse_count / secs;
	out->server_parse_count = (double)d->server_parse_count / secs;
	out->bind_count = (double)d->bind_count / secs;
	out->client_login_count = (double)d->client_login_count / secs;
}

void stats_database_averages(struct worker *w, const struct database *db,
			     struct stats_averages *out)
{
	struct stats_counters d;
	memset(&d, 0, sizeof(d));
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		if (!db || p->db == db)
			add_period(&d, &p->stats);
	}
	if (!db)
		add_period(&d, &w->console_stats);
	averages_of(&d, worker_config(w)->stats_period, out);
}

void stats_averages(struct worker *w, const struct pool_stats *st, struct stats_averages *out)
{
	struct stats_counters d;
	memset(&d, 0, sizeof(d));
	add_period(&d, st);
	averages_of(&d, worker_config(w)->stats_period, out);
}
