/*
 * log.h - logging gated by level, formatted as text or JSON, written to
 * stderr, a log file and syslog. log_level is a set, not a threshold:
 * "error,warn" (default), plus info, query, debug as asked; the mask is the
 * one gate every line passes. No sink ever blocks the event loop: a line a
 * sink cannot take now is dropped and counted. Never pass a secret
 * (password, DATABASE_URL) to these functions.
 */
#ifndef BERTH_LOG_H
#define BERTH_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

struct config;

enum log_bit {
	LOGB_ERROR = 1 << 0,
	LOGB_WARN = 1 << 1,
	LOGB_INFO = 1 << 2,
	LOGB_QUERY = 1 << 3,
	LOGB_DEBUG = 1 << 4,
};

/* log_format values (config_keys.h, CT_ENUM). */
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON };

/*
 * The level mask. A deliberate exception to "no mutable extern globals"
 * (STYLE.md 1): the relay tests it for every message (log_debug, query
 * logging), and an inline load and a predictable branch cost less than a
 * call. Written only by log_set_mask / log_configure; read it only through
 * log_enabled().
 */
extern unsigned log_mask_bits;

static inline bool log_enabled(unsigned bit)
{
	return (log_mask_bits & bit) != 0;
}

/* Parse "error,warn,..." into a mask; false (mask untouched) on an unknown word. */
bool log_parse_levels(const char *spec, unsigned *mask, char *bad, size_t badlen) BERTH_MUSTCHECK;
/* syslog_facility name (auth, authpriv, daemon, user, local0..local7, ...) -> LOG_* code. */
bool log_parse_facility(const char *name, int *facility) BERTH_MUSTCHECK;
void log_set_mask(unsigned mask);

/*
 * Apply log_level, log_format, logfile and the syslog settings of cfg (start
 * and reload). Opens the log file when its name changed, connects to syslog,
 * and the first time starts the stderr writer thread when stderr can block
 * (a pipe, a socket, a terminal). Problems (a log file that cannot be
 * opened) are logged and leave that sink off; berth keeps running.
 */
void log_configure(const struct config *cfg);
/* SIGHUP: reopen the log file by name (after rotation) and reconnect to syslog. */
void log_reopen(void);
/* Command line -q: write nothing to stderr. */
void log_set_quiet(bool quiet);
/*
 * At exit: log how many lines were dropped (if any), give the stderr writer
 * up to a second to drain, close the sinks. Later lines go straight to stderr.
 */
void log_shutdown(void);

/*
 * While the loop of this thread runs: batch query lines and write each
 * round's with one write() per sink when the round's callbacks are done.
 * Detach (flushes) before freeing the base.
 */
struct event_base;
void log_attach_loop(struct event_base *base);
void log_detach_loop(void);

/* Where syslog lines go (default /dev/log; tests point it at their own socket). */
void log_set_syslog_path(const char *path);

/* Lines a sink did not take (berth_log_dropped_total); a line two sinks dropped counts twice. */
uint64_t log_dropped_count(void);
/* Count a line dropped before it was formatted (query logging's per-client limit). */
void log_count_dropped(void);

void log_write(unsigned bit, const char *fmt, ...) BERTH_PRINTF(2, 3);

/* One completed statement (query logging). Strings need not be NUL-terminated where a length is given. */
struct log_query_line {
	uint64_t conn_id;             /* the client's C-<id> */
	const char *client;           /* "ip:port" or "unix" */
	const char *database;
	const char *user;
	const char *application_name; /* "" if none */
	bool extended;                /* extended protocol (Execute), else a simple Query */
	int64_t duration_us;
	const char *tag;              /* CommandComplete tag; NULL if it failed */
	const char *sqlstate;         /* SQLSTATE if it failed, else NULL */
	const char *statement;        /* truncated, passwords masked */
	size_t statement_len;
	size_t statement_full_len;    /* length before truncation; 0 = not known */
	bool truncated;
	const char *parameters;       /* NULL: not logged (log_parameters off or none) */
	size_t parameters_len;
};
/* Write a query line (level query; the caller checked log_enabled(LOGB_QUERY)). */
void log_query(const struct log_query_line *q);

/*
 * Append in[0..len) to out as the inside of a JSON string: quotes,
 * backslashes and control characters escaped, invalid UTF-8 replaced by
 * \ufffd per bad byte. Writes at most cap bytes, never splitting an escape;
 * returns the bytes written. Exposed for unit tests.
 */
size_t log_json_escape(char *out, size_t cap, const char *in, size_t len);

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
