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

/*
 * Totals since start; the names are PgBouncer's SHOW STATS columns without
 * "total_". One list, so sums, snapshots and averages cannot miss a field.
 */
#define STATS_COUNTERS(X)                                                                          \
	X(server_assignment_count) /* a server was linked to a client */                          \
	X(xact_count)              /* transactions: a client-visible ReadyForQuery 'I' */          \
	X(query_count)             /* queries: client-visible ReadyForQuery messages */            \
	X(received)                /* bytes from clients */                                        \
	X(sent)                    /* bytes to clients */                                          \
	X(xact_time_us)            /* time from a transaction's first request to its end */        \
	X(query_time_us)           /* time from a request to its ReadyForQuery */                  \
	X(wait_time_us)            /* time clients waited for a server */                          \
	X(client_parse_count)      /* Parse messages from clients */                               \
	X(server_parse_count)      /* Parse messages sent to servers (berth's own too) */          \
	X(bind_count)              /* Bind messages from clients */                                \
	X(client_login_count)      /* clients that logged in to the pool */                        \
	X(errors)                  /* ErrorResponses clients got, all classes */

#define STATS_DECLARE_FIELD(name) uint64_t name;

/* The counters alone: a snapshot taken each stats_period. */
struct stats_counters {
	STATS_COUNTERS(STATS_DECLARE_FIELD)
};

struct pool_stats {
	STATS_COUNTERS(STATS_DECLARE_FIELD)
	struct stats_hist wait_hist;      /* client wait for a server, one per assignment */
	struct stats_hist query_hist;     /* query duration */
	uint32_t *errors_by_class;        /* NULL until the first error; STATS_ERROR_CLASSES slots */
	struct stats_counters period_end; /* totals at the end of the last stats_period */
	struct stats_counters period_start; /* ...and at its start: averages are the difference */
};

/* Averages over the last stats_period, per second (counts, bytes) or per item (times). */
struct stats_averages {
	double server_assignment_count, xact_count, query_count, recv, sent;
	double xact_time_us, query_time_us, wait_time_us;
	double client_parse_count, server_parse_count, bind_count, client_login_count;
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
/* Monotonic microseconds, precise (durations); the loop's timers use the coarse clock. */
int64_t stats_now_us(void);
/*
 * Sum of a database's pools, or with db NULL of every pool and the admin
 * console's counters (errors_by_class left NULL).
 */
void stats_database_totals(struct worker *w, const struct database *db, struct pool_stats *out);
/* Averages over the last complete stats_period, of the same. */
void stats_database_averages(struct worker *w, const struct database *db,
			     struct stats_averages *out);
/* ...and of one set of counters (the admin console's). */
void stats_averages(struct worker *w, const struct pool_stats *st, struct stats_averages *out);
/* Timer tick: close a stats_period when due (janitor). */
void stats_maybe_roll(struct worker *w, int64_t now_us);

#endif
