/*
 * log.h - logging gated by level. log_level is a set, not a threshold:
 * "error,warn" (default), plus info, query, debug as asked. Lines go to
 * stderr. Never pass a secret (password, DATABASE_URL) to these functions.
 */
#ifndef BERTH_LOG_H
#define BERTH_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

enum log_bit {
	LOGB_ERROR = 1 << 0,
	LOGB_WARN = 1 << 1,
	LOGB_INFO = 1 << 2,
	LOGB_QUERY = 1 << 3,
	LOGB_DEBUG = 1 << 4,
};

/* Parse "error,warn,..." into a mask; false (mask untouched) on an unknown word. */
bool log_parse_levels(const char *spec, unsigned *mask, char *bad, size_t badlen) BERTH_MUSTCHECK;
void log_set_mask(unsigned mask);
/* Lines dropped because the sink could not keep up (berth_log_dropped_total). */
uint64_t log_dropped_count(void);
bool log_enabled(unsigned bit);
void log_write(unsigned bit, const char *fmt, ...) BERTH_PRINTF(2, 3);

#define log_error(...) log_write(LOGB_ERROR, __VA_ARGS__)
#define log_warn(...) log_write(LOGB_WARN, __VA_ARGS__)
#define log_info(...)                                                                              \
	do {                                                                                       \
		if (log_enabled(LOGB_INFO))                                                        \
			log_write(LOGB_INFO, __VA_ARGS__);                                         \
	} while (0)
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (BERTH_UNLIKELY(log_enabled(LOGB_DEBUG)))                                       \
			log_write(LOGB_DEBUG, __VA_ARGS__);                                        \
	} while (0)

#endif
