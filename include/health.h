/*
 * health.h - upstream health per [databases] entry (zero-file mode: the
 * DATABASE_URL database): a loop per entry that logs in and runs SELECT 1
 * through libpq's async API on the worker's loop, every health_check_period
 * while it answers and with jittered exponential backoff while it fails.
 * Read by /ready and /metrics (http.c) and SHOW HEALTH (admin). Never blocks
 * the loop, never borrows a pool's server connection, never records a password.
 */
#ifndef BERTH_HEALTH_H
#define BERTH_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

struct health;
struct worker;

/* First retry after a failed check; doubles up to health_check_backoff_max. */
#define HEALTH_BACKOFF_START_US 250000

enum health_state {
	HEALTH_UNKNOWN = 0, /* no check has finished yet */
	HEALTH_UP,          /* the last check got SELECT 1's row */
	HEALTH_DOWN,        /* the last check failed (login, query or health_check_timeout) */
};

/* What is known about one entry's upstream. */
struct health_status {
	char database[64];             /* the [databases] entry's name */
	enum health_state state;
	int64_t last_check_us;         /* wall clock (Unix epoch, us) when the last check ended; 0 = never */
	int64_t last_success_us;       /* wall clock of the last successful check; 0 = never */
	int64_t last_latency_us;       /* how long the last check took, login included */
	uint32_t consecutive_failures; /* failed checks since the last success */
	uint64_t checks;               /* checks finished since start */
	uint64_t failures;             /* of which failed */
	char last_error[256];          /* one line, the last failure's; kept after recovery; no password */
};

/*
 * Start a check loop for every entry of the worker's config ("*" has no
 * database of its own and is not checked); the first checks begin at once.
 * NULL on out of memory. Outcomes arrive later, never inside this call.
 */
struct health *health_start(struct worker *w) BERTH_MUSTCHECK;
/* Abandon checks in flight (closing their connections) and free h. NULL is fine. */
void health_stop(struct health *h);
/*
 * The config was swapped (reload): add loops for new entries (checked at
 * once), drop those of removed ones, keep the state of the rest. Also noticed
 * by the loops themselves at their next tick; calling this applies it now.
 */
void health_reconfigure(struct health *h);

/* Iterate: prev NULL gives the first entry; NULL after the last. In config order. */
const struct health_status *health_next(const struct health *h, const struct health_status *prev);
/* The entry called database, or NULL. */
const struct health_status *health_find(const struct health *h, const char *database);
/*
 * True when every checked entry is HEALTH_UP (also when none is checked).
 * Otherwise false, with reason "upstream down: <db>: <error>" (or "upstream
 * not checked yet: <db>") for the first entry that is not up.
 */
bool health_ready(const struct health *h, char *reason, size_t len);
/* "up", "down", "unknown": SHOW HEALTH and logs. */
const char *health_state_name(enum health_state st);

/*
 * Delay before the next check after `failures` consecutive failures (>= 1):
 * a step of HEALTH_BACKOFF_START_US doubled per further failure, at most
 * max_us, of which a random half is dropped ("equal jitter", rnd any 64-bit
 * random value), so the delay lies in [ceil(step / 2), step]. Pure.
 */
int64_t health_backoff_us(uint32_t failures, int64_t max_us, uint64_t rnd);

#endif
