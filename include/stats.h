/*
 * stats.h - per-pool counters (the columns of SHOW STATS and the /metrics
 * counters), latency histograms, and the periodic roll-up that gives
 * SHOW STATS_AVERAGES. Counters are plain integers owned by one worker:
 * no locks or atomics on the data path. Readers (admin, http) run on the
 * same loop, or later take a snapshot.
 */
#ifndef BERTH_STATS_H
#define BERTH_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct database;
struct pool;
struct worker;

/* Histogram upper bounds, seconds (Prometheus "le"); one more bucket is +Inf. */
#define STATS_HIST_BUCKETS 14
extern const double stats_hist_bounds_s[STATS_HIST_BUCKETS];

struct stats_hist {
	uint64_t bucket[STATS_HIST_BUCKETS + 1]; /* not cumulative; last is +Inf */
	uint64_t sum_us;
	uint64_t count;
};

/* SQLSTATE classes: two characters of [0-9A-Z], 36 x 36 slots. */
#define STATS_ERROR_CLASSES (36 * 36)

/* Totals since start; the names are PgBouncer's SHOW STATS columns without total_. */
struct pool_stats {
	uint64_t server_assignment_count; /* a server was linked to a client */
	uint64_t xact_count;              /* transactions (ReadyForQuery 'I' after a request) */
	uint64_t query_count;             /* queries: simple Query messages and Syncs */
	uint64_t received;                /* bytes from clients */
	uint64_t sent;                    /* bytes to clients */
	uint64_t xact_time_us;            /* time in transactions, client-visible */
	uint64_t query_time_us;           /* time in queries */
	uint64_t wait_time_us;            /* time clients waited for a server */
	uint64_t client_parse_count;      /* Parse messages from clients */
	uint64_t server_parse_count;      /* Parse messages sent to servers (berth's own too) */
	uint64_t bind_count;              /* Bind messages from clients */
	uint64_t errors;                  /* ErrorResponses clients got, all classes */
	struct stats_hist wait_hist;      /* client wait for a server */
	struct stats_hist query_hist;     /* query duration */
	uint32_t *errors_by_class;        /* NULL until the first error; STATS_ERROR_CLASSES slots */
};

/* Averages over the last stats_period, per second (counts, bytes) or per item (times). */
struct stats_averages {
	double server_assignment_count, xact_count, query_count, recv, sent;
	double xact_time_us, query_time_us, wait_time_us;
	double client_parse_count, server_parse_count, bind_count;
};

void stats_hist_add(struct stats_hist *h, uint64_t us);
/* Count one ErrorResponse with this SQLSTATE (5 characters, need not be terminated). */
void stats_count_error(struct pool_stats *st, const char *sqlstate);
/* Index of a class in errors_by_class and back; -1 for a class outside [0-9A-Z]{2}. */
int stats_error_class_index(const char c0, const char c1);
void stats_error_class_name(int index, char out[3]);
/* Add src into dst (SHOW STATS sums a database's pools). */
void stats_add(struct pool_stats *dst, const struct pool_stats *src);
void stats_free(struct pool_stats *st);

#endif
