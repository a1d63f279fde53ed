/*
 * log.c - level-gated log lines to stderr, one write() per line so lines
 * from concurrent processes never interleave. Owns nothing but the mask.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* The one piece of process-wide mutable state: written at start and reload. */
static unsigned log_mask_bits = LOGB_ERROR | LOGB_WARN;

static const struct {
	const char *name;
	unsigned bit;
} log_names[] = {
	{"error", LOGB_ERROR}, {"warn", LOGB_WARN},   {"warning", LOGB_WARN},
	{"info", LOGB_INFO},   {"query", LOGB_QUERY}, {"debug", LOGB_DEBUG},
};

bool log_parse_levels(const char *spec, unsigned *mask, char *bad, size_t badlen)
{
	unsigned out = 0;
	const char *p = spec;
	while (*p) {
		while (*p == ',' || *p == ' ')
			p++;
		if (!*p)
			break;
		size_t n = strcspn(p, ", ");
		bool found = false;
		for (size_t i = 0; i < ARRAY_SIZE(log_names); i++) {
			if (strlen(log_names[i].name) == n && strncasecmp(p, log_names[i].name, n) == 0) {
				out |= log_names[i].bit;
				found = true;
			}
		}
		if (!found) {
			snprintf(bad, badlen, "%.*s", (int)n, p);
			return false;
		}
		p += n;
	}
	*mask = out;
	return true;
}

/* Lines that could not be written whole: counted, never retried (that could block). */
static uint64_t log_dropped;

uint64_t log_dropped_count(void)
{
	return log_dropped;
}

void log_set_mask(unsigned mask)
{
	log_mask_bits = mask;
}

bool log_enabled(unsigned bit)
{
	return (log_mask_bits & bit) != 0;
}

static const char *log_bit_name(unsigned bit)
{
	switch (bit) {
	case LOGB_ERROR:
		return "ERROR";
	case LOGB_WARN:
		return "WARNING";
	case LOGB_INFO:
		return "LOG";
	case LOGB_QUERY:
		return "QUERY";
	default:
		return "DEBUG";
	}
}

void log_write(unsigned bit, const char *fmt, ...)
{
	if (!(log_mask_bits & bit))
		return;
	char line[2048];
	struct timeval tv;
	gettimeofday(&tv, NULL);
	struct tm tm;
	gmtime_r(&tv.tv_sec, &tm);
	int n = snprintf(line, sizeof(line), "%04d-%02d-%02d %02d:%02d:%02d.%03d UTC [%d] %s ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, (int)(tv.tv_usec / 1000), (int)getpid(), log_bit_name(bit));
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	if (write(STDERR_FILENO, line, len) != (ssize_t)len)
		log_dropped++;
}
