/*
 * log.c - the level mask, line formats (text, JSON) and the three sinks:
 * stderr, a log file, syslog. Owns the process-wide logging state (the
 * mask, the sinks, the drop counter, the stderr writer thread); knows
 * nothing of connections beyond the fields callers hand it. Must never
 * block the event loop and never print secrets (callers mask them).
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"

/* The mask (see log.h for why it is extern). Written at start and reload. */
unsigned log_mask_bits = LOGB_ERROR | LOGB_WARN;

static const struct {
	const char *name;
	unsigned bit;
} log_names[] = {
	{"error", LOGB_ERROR}, {"warn", LOGB_WARN},   {"warning", LOGB_WARN},
	{"info", LOGB_INFO},   {"query", LOGB_QUERY}, {"debug", LOGB_DEBUG},
};

static const struct {
	const char *name;
	int code;
} log_facilities[] = {
	{"auth", LOG_AUTH},	  {"authpriv", LOG_AUTHPRIV}, {"cron", LOG_CRON},
	{"daemon", LOG_DAEMON},	  {"ftp", LOG_FTP},	      {"lpr", LOG_LPR},
	{"mail", LOG_MAIL},	  {"news", LOG_NEWS},	      {"syslog", LOG_SYSLOG},
	{"user", LOG_USER},	  {"uucp", LOG_UUCP},	      {"local0", LOG_LOCAL0},
	{"local1", LOG_LOCAL1},	  {"local2", LOG_LOCAL2},     {"local3", LOG_LOCAL3},
	{"local4", LOG_LOCAL4},	  {"local5", LOG_LOCAL5},     {"local6", LOG_LOCAL6},
	{"local7", LOG_LOCAL7},
};

/* Longest message of one log_write() call, before escaping (longer ones are cut). */
#define LOG_MSG_MAX 2048
/* The stderr ring: lines waiting for the writer thread. */
#define LOG_RING_BYTES (256 * 1024)
/* How long log_shutdown() waits for the writer to drain the ring. */
#define LOG_DRAIN_WAIT_MS 1000

/*
 * Why stderr gets a writer thread. A container's stderr is usually a pipe
 * read by the runtime; when the runtime stops reading, the pipe fills and a
 * plain write() blocks, and with it every client berth serves. Making fd 2
 * O_NONBLOCK is not an option: the flag belongs to the open file
 * description, which berth shares with whoever started it (a shell, the
 * runtime's other processes), and they would start getting EAGAIN. So the
 * loop only copies each whole line into a bounded ring under a mutex
 * (dropping and counting the line when the ring is full: never a queue
 * without bound) and this thread does the blocking write()s, in batches.
 * When stderr is a regular file or /dev/null, whose writes never wait for a
 * reader, lines are written directly and no thread runs. The log file is
 * written directly too (a regular file); syslog gets non-blocking datagrams.
 */
struct log_writer {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t wake;    /* lines arrived, or stop */
	pthread_cond_t drained; /* the ring emptied, or the thread ended */
	char *ring;             /* LOG_RING_BYTES */
	size_t head;            /* first unwritten byte */
	size_t used;            /* bytes waiting */
	bool waiting;           /* the thread sleeps on wake: signal it */
	bool stop;
	bool done;              /* the thread has ended */
};

/*
 * Process-wide logging state, one instance: sinks are process resources (fd 2,
 * one log file, one syslog socket). Written by log_configure/log_reopen on the
 * loop thread; the writer thread touches only the ring.
 */
static struct {
	int format;              /* enum log_format */
	int logfile_fd;          /* -1: none */
	char *logfile_path;      /* configured name ("" none), kept to reopen */
	bool syslog_on;
	int syslog_fd;           /* -1: not connected */
	int syslog_facility;
	char syslog_ident[64];
	const char *syslog_path;
	enum { STDERR_DIRECT = 0, STDERR_THREAD, STDERR_STUCK } stderr_mode;
	bool atexit_set;         /* log_atexit is registered */
	struct log_writer wr;
} L = {
	.logfile_fd = -1,
	.syslog_fd = -1,
	.syslog_facility = LOG_DAEMON,
	.syslog_ident = "berth",
	.syslog_path = "/dev/log",
	.wr = {.mu = PTHREAD_MUTEX_INITIALIZER,
	       .wake = PTHREAD_COND_INITIALIZER,
	       .drained = PTHREAD_COND_INITIALIZER},
};

/* Lines a sink did not take; counted from the loop and the writer thread. */
static _Atomic uint64_t log_dropped;

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

bool log_parse_facility(const char *name, int *facility)
{
	for (size_t i = 0; i < ARRAY_SIZE(log_facilities); i++) {
		if (strcasecmp(name, log_facilities[i].name) == 0) {
			*facility = log_facilities[i].code;
			return true;
		}
	}
	return false;
}

uint64_t log_dropped_count(void)
{
	return atomic_load_explicit(&log_dropped, memory_order_relaxed);
}

static void log_drop(uint64_t lines)
{
	atomic_fetch_add_explicit(&log_dropped, lines, memory_order_relaxed);
}

/* Count the lines of a chunk a sink did not take. */
static void log_drop_chunk(const char *p, size_t len)
{
	uint64_t lines = 0;
	for (const char *e = p + len; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
		lines++;
	log_drop(lines ? lines : 1);
}

void log_count_dropped(void)
{
	log_drop(1);
}

void log_set_mask(unsigned mask)
{
	log_mask_bits = mask;
}

/* ---- line assembly ------------------------------------------------------ */

/* A line being built; grows rarely (to the longest line seen), never shrinks. */
struct lbuf {
	char *p;
	size_t len;
	size_t cap;
};

/*
 * One per thread that logs: lines are built here, so a log call allocates
 * nothing once the buffer has grown to the longest line.
 */
static _Thread_local struct lbuf log_line;

/*
 * Query lines are not written one by one: a busy loop round completes
 * statements for many clients, and a write() per line cost more than
 * building it. While a loop is attached (log_attach_loop), query lines are
 * built straight into this buffer and an event made active on the first
 * one writes the whole round with one write() per sink once the round's
 * other callbacks have run: a line reaches its sinks microseconds after the
 * reply reaches the client, never a round later. Any other line flushes the
 * batch first, so lines keep their order. Syslog still gets a datagram per
 * line (one message each). One per loop thread, like log_line.
 */
#define LOG_BATCH_BYTES (32 * 1024)
static _Thread_local struct {
	struct lbuf buf;
	struct event *flush_ev; /* NULL: no loop attached, lines go out one by one */
	bool armed;             /* flush_ev is active */
} log_batch;

static bool lb_reserve(struct lbuf *b, size_t need)
{
	if (need <= b->cap)
		return true;
	size_t ncap = b->cap ? b->cap : 4096;
	while (ncap < need)
		ncap *= 2;
	char *n = realloc(b->p, ncap);
	if (!n)
		return false;
	b->p = n;
	b->cap = ncap;
	return true;
}

/* Room is reserved up front for the worst case, so appends only assert it. */
static void lb_raw(struct lbuf *b, const char *s, size_t n)
{
	BERTH_ASSERT(b->len + n <= b->cap);
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void lb_str(struct lbuf *b, const char *s)
{
	lb_raw(b, s, strlen(s));
}

/* A string literal: its length is known at compile time. */
#define lb_lit(b, lit) lb_raw((b), "" lit, sizeof(lit) - 1)

static void lb_fmt(struct lbuf *b, const char *fmt, ...) BERTH_PRINTF(2, 3);
static void lb_fmt(struct lbuf *b, const char *fmt, ...)
{
	size_t room = b->cap - b->len;
	if (!room)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(b->p + b->len, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		b->len += (size_t)n < room ? (size_t)n : room - 1;
}

/* Length of the valid UTF-8 sequence at s (1..4), 0 if s starts an invalid one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	size_t len;
	unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0; /* no overlong forms */
		else if (c == 0xed)
			hi = 0x9f; /* no surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f; /* nothing past U+10FFFF */
	} else {
		return 0;
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

/*
 * Length of the leading run that needs no escaping in either format: printable
 * ASCII other than '"' and '\\'. Query lines are mostly such runs; copying
 * them whole keeps a logged statement at a few instructions per byte.
 */
static const unsigned char plain_byte[256] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static size_t plain_run(const unsigned char *s, size_t len)
{
	size_t i = 0;
	while (i < len && plain_byte[s[i]])
		i++;
	return i;
}

size_t log_json_escape(char *out, size_t cap, const char *in, size_t len)
{
	size_t run = plain_run((const unsigned char *)in, len);
	if (run == len && len <= cap) {
		memcpy(out, in, len);
		return len;
	}
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)in;
	size_t o = 0;
	for (size_t i = 0; i < len;) {
		unsigned char c = s[i];
		char esc[8];
		const char *src = esc;
		size_t n, adv = 1;
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			n = 2;
		} else if (c < 0x20) {
			esc[0] = '\\';
			n = 2;
			switch (c) {
			case '\n':
				esc[1] = 'n';
				break;
			case '\r':
				esc[1] = 'r';
				break;
			case '\t':
				esc[1] = 't';
				break;
			case '\b':
				esc[1] = 'b';
				break;
			case '\f':
				esc[1] = 'f';
				break;
			default:
				memcpy(esc + 1, "u00", 3);
				esc[4] = hex[c >> 4];
				esc[5] = hex[c & 15];
				n = 6;
			}
		} else if (c < 0x80) {
			src = (const char *)s + i;
			n = 1;
		} else if ((adv = utf8_len(s + i, len - i)) != 0) {
			src = (const char *)s + i;
			n = adv;
		} else {
			src = "\\ufffd";
			n = 6;
			adv = 1;
		}
		if (o + n > cap)
			break;
		memcpy(out + o, src, n);
		o += n;
		i += adv;
	}
	return o;
}

/*
 * Text format: one record per line, so control characters are written as
 * \n, \r, \t or \xNN (a statement's newlines, or a client-chosen name,
 * cannot forge lines); quoted values also escape " and \.
 */
static size_t text_escape(char *out, size_t cap, const char *in, size_t len, bool quoted)
{
	size_t run = plain_run((const unsigned char *)in, len);
	if (run == len && len <= cap) {
		memcpy(out, in, len);
		return len;
	}
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		char esc[4];
		size_t n = 2;
		esc[0] = '\\';
		if (c == '\n')
			esc[1] = 'n';
		else if (c == '\r')
			esc[1] = 'r';
		else if (c == '\t')
			esc[1] = 't';
		else if (c < 0x20 || c == 0x7f) {
			esc[1] = 'x';
			esc[2] = hex[c >> 4];
			esc[3] = hex[c & 15];
			n = 4;
		} else if (quoted && (c == '"' || c == '\\')) {
			esc[1] = (char)c;
		} else {
			esc[0] = (char)c;
			n = 1;
		}
		if (o + n > cap)
			break;
		memcpy(out + o, esc, n);
		o += n;
	}
	return o;
}

/* Append a value escaped for the current format (JSON string inside, or text). */
static void lb_esc(struct lbuf *b, const char *s, size_t n, bool quoted)
{
	size_t room = b->cap - b->len;
	if (L.format == LOG_FORMAT_JSON)
		b->len += log_json_escape(b->p + b->len, room, s, n);
	else
		b->len += text_escape(b->p + b->len, room, s, n, quoted);
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

/* The level as log_level spells it (JSON "level"). */
static const char *log_bit_word(unsigned bit)
{
	switch (bit) {
	case LOGB_ERROR:
		return "error";
	case LOGB_WARN:
		return "warn";
	case LOGB_INFO:
		return "info";
	case LOGB_QUERY:
		return "query";
	default:
		return "debug";
	}
}

static int log_syslog_priority(unsigned bit)
{
	switch (bit) {
	case LOGB_ERROR:
		return LOG_ERR;
	case LOGB_WARN:
		return LOG_WARNING;
	case LOGB_DEBUG:
		return LOG_DEBUG;
	default:
		return LOG_INFO;
	}
}

/*
 * Start a line: timestamp (UTC, milliseconds), pid, level. JSON lines are
 * left open inside the "msg" string. Returns where the part syslog gets
 * begins (syslog adds its own time and pid).
 */
/* Append v in decimal. */
static void lb_u64(struct lbuf *b, uint64_t v)
{
	char tmp[24];
	size_t n = 0;
	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	while (n && b->len < b->cap)
		b->p[b->len++] = tmp[--n];
}

/* Append v with exactly width digits (zero-padded; v < 10^width). */
static void lb_digits(struct lbuf *b, unsigned v, int width)
{
	for (int i = width - 1; i >= 0 && b->len + (size_t)i < b->cap; i--) {
		b->p[b->len + (size_t)i] = (char)('0' + v % 10);
		v /= 10;
	}
	b->len += (size_t)width;
}

/* Microseconds as milliseconds with three decimals ("0.192"). */
static void lb_ms(struct lbuf *b, uint64_t us)
{
	lb_u64(b, us / 1000);
	lb_raw(b, ".", 1);
	lb_digits(b, (unsigned)(us % 1000), 3);
}

/*
 * "YYYY-MM-DD HH:MM:SS" of the current second, per thread: formatting a date
 * costs more than the rest of a query line, and lines come in bursts.
 */
static _Thread_local struct {
	time_t sec;
	char text[64];
} log_second = {.sec = -1};

static int log_pid;

/*
 * Start a line at b->len; returns where its syslog body starts (text: after
 * the date and pid, at the level; JSON: the whole object, from the line start).
 */
static size_t lb_prefix(struct lbuf *b, unsigned bit)
{
	size_t line_start = b->len;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	if (tv.tv_sec != log_second.sec) {
		struct tm tm;
		gmtime_r(&tv.tv_sec, &tm);
		snprintf(log_second.text, sizeof(log_second.text), "%04d-%02d-%02d %02d:%02d:%02d",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec);
		log_second.sec = tv.tv_sec;
	}
	if (!log_pid)
		log_pid = (int)getpid();
	unsigned ms = (unsigned)(tv.tv_usec / 1000);
	if (L.format == LOG_FORMAT_JSON) {
		lb_lit(b, "{\"ts\":\"");
		lb_raw(b, log_second.text, 10);
		lb_raw(b, "T", 1);
		lb_raw(b, log_second.text + 11, 8);
		lb_raw(b, ".", 1);
		lb_digits(b, ms, 3);
		lb_lit(b, "Z\",\"level\":\"");
		lb_str(b, log_bit_word(bit));
		lb_lit(b, "\",\"pid\":");
		lb_u64(b, (uint64_t)log_pid);
		lb_lit(b, ",\"msg\":\"");
		return line_start;
	}
	lb_raw(b, log_second.text, 19);
	lb_raw(b, ".", 1);
	lb_digits(b, ms, 3);
	lb_lit(b, " UTC [");
	lb_u64(b, (uint64_t)log_pid);
	lb_lit(b, "] ");
	size_t body = b->len;
	lb_str(b, log_bit_name(bit));
	lb_raw(b, " ", 1);
	return body;
}

/* ---- sinks -------------------------------------------------------------- */

static void *log_writer_main(void *arg)
{
	struct log_writer *wr = arg;
	pthread_mutex_lock(&wr->mu);
	for (;;) {
		while (wr->used == 0 && !wr->stop) {
			wr->waiting = true;
			pthread_cond_wait(&wr->wake, &wr->mu);
			wr->waiting = false;
		}
		if (wr->used == 0)
			break; /* stop asked and everything written */
		size_t off = wr->head;
		size_t n = wr->used < LOG_RING_BYTES - off ? wr->used : LOG_RING_BYTES - off;
		pthread_mutex_unlock(&wr->mu);
		/* The bytes [off, off+n) are ours until head moves: the loop only appends. */
		ssize_t w = write(STDERR_FILENO, wr->ring + off, n);
		if (w < 0 && errno == EINTR) {
			w = 0;
		} else if (w <= 0) {
			/* stderr is gone (EPIPE, EIO): these lines are lost. */
			uint64_t lines = 0;
			for (size_t i = 0; i < n; i++)
				lines += wr->ring[off + i] == '\n';
			log_drop(lines ? lines : 1);
			w = (ssize_t)n;
		}
		pthread_mutex_lock(&wr->mu);
		wr->head = (wr->head + (size_t)w) % LOG_RING_BYTES;
		wr->used -= (size_t)w;
		if (wr->used == 0)
			pthread_cond_broadcast(&wr->drained);
	}
	wr->done = true;
	pthread_cond_broadcast(&wr->drained);
	pthread_mutex_unlock(&wr->mu);
	return NULL;
}

/* Hand a whole line to the writer thread, or drop it if the ring is full. */
static void log_ring_put(const char *line, size_t len)
{
	struct log_writer *wr = &L.wr;
	pthread_mutex_lock(&wr->mu);
	if (LOG_RING_BYTES - wr->used < len) {
		pthread_mutex_unlock(&wr->mu);
		log_drop_chunk(line, len);
		return;
	}
	size_t tail = (wr->head + wr->used) % LOG_RING_BYTES;
	size_t first = len < LOG_RING_BYTES - tail ? len : LOG_RING_BYTES - tail;
	memcpy(wr->ring + tail, line, first);
	memcpy(wr->ring, line + first, len - first);
	wr->used += len;
	if (wr->waiting)
		pthread_cond_signal(&wr->wake); /* one wake-up per batch, not per line */
	pthread_mutex_unlock(&wr->mu);
}

/* Can a write() to stderr wait for a reader? Regular files and /dev/null cannot. */
static bool log_stderr_may_block(void)
{
	struct stat st;
	if (fstat(STDERR_FILENO, &st) != 0)
		return false;
	if (S_ISREG(st.st_mode))
		return false;
	if (S_ISCHR(st.st_mode) && !isatty(STDERR_FILENO))
		return false;
	return true;
}

static void log_atexit(void);

static void log_writer_start(void)
{
	struct log_writer *wr = &L.wr;
	wr->ring = malloc(LOG_RING_BYTES);
	if (!wr->ring)
		return;
	/* Signals (SIGTERM, SIGHUP, and SIGPIPE from its writes) stay with the loop thread. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&wr->thread, NULL, log_writer_main, wr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		free(wr->ring);
		wr->ring = NULL;
		return;
	}
	L.stderr_mode = STDERR_THREAD;
	if (!L.atexit_set)
		L.atexit_set = atexit(log_atexit) == 0;
}

static void log_syslog_put(unsigned bit, const char *body, size_t len)
{
	/*
	 * Not connected (no /dev/log, said once at connect): not counted, or the
	 * drop counter would only measure how much berth logs. SIGHUP retries.
	 */
	if (L.syslog_fd < 0)
		return;
	/* RFC 3164 header, as syslog(3) writes it: <PRI>Mmm dd hh:mm:ss ident[pid]: */
	static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	char head[128];
	int n = snprintf(head, sizeof(head), "<%d>%s %2d %02d:%02d:%02d %s[%d]: ",
			 L.syslog_facility | log_syslog_priority(bit), months[tm.tm_mon], tm.tm_mday,
			 tm.tm_hour, tm.tm_min, tm.tm_sec, L.syslog_ident, (int)getpid());
	if (n < 0 || (size_t)n >= sizeof(head))
		n = 0;
	struct iovec iov[2] = {{head, (size_t)n}, {(void *)body, len}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
	/* MSG_DONTWAIT: a syslog daemon that does not keep up costs lines, not latency. */
	if (sendmsg(L.syslog_fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_drop(1);
}

/* One finished line (ending in '\n') to every sink. */
/* -q: stderr gets nothing (a logfile or syslog may still be set). */
static bool log_quiet;

void log_set_quiet(bool quiet)
{
	log_quiet = quiet;
}

/* Whole lines (one or a batch) to stderr and the log file. */
static void log_stream_write(const char *p, size_t len)
{
	if (log_quiet)
		; /* no stderr */
	else if (L.stderr_mode == STDERR_THREAD)
		log_ring_put(p, len);
	else if (L.stderr_mode == STDERR_STUCK || write(STDERR_FILENO, p, len) != (ssize_t)len)
		log_drop_chunk(p, len);
	if (L.logfile_fd >= 0 && write(L.logfile_fd, p, len) != (ssize_t)len)
		log_drop_chunk(p, len);
}

static void log_batch_flush(void)
{
	struct lbuf *b = &log_batch.buf;
	if (b->len) {
		log_stream_write(b->p, b->len);
		b->len = 0;
	}
}

static void log_batch_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	log_batch.armed = false;
	log_batch_flush();
}

void log_attach_loop(struct event_base *base)
{
	log_detach_loop();
	log_batch.flush_ev = event_new(base, -1, 0, log_batch_flush_cb, NULL);
	log_batch.armed = false;
}

void log_detach_loop(void)
{
	log_batch_flush();
	if (log_batch.flush_ev)
		event_free(log_batch.flush_ev);
	log_batch.flush_ev = NULL;
	log_batch.armed = false;
}

/* One finished line (ending in '\n') to every sink, after the lines batched before it. */
static void log_emit(unsigned bit, const char *line, size_t len, size_t body_off)
{
	log_batch_flush();
	log_stream_write(line, len);
	if (L.syslog_on)
		log_syslog_put(bit, line + body_off, len - body_off - 1);
}

void log_write(unsigned bit, const char *fmt, ...)
{
	if (!(log_mask_bits & bit))
		return;
	char msg[LOG_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	size_t mlen = m < 0 ? 0 : (size_t)m < sizeof(msg) ? (size_t)m : sizeof(msg) - 1;
	struct lbuf *b = &log_line;
	b->len = 0;
	if (!lb_reserve(b, 256 + 6 * mlen)) {
		log_drop(1);
		return;
	}
	size_t body = lb_prefix(b, bit);
	lb_esc(b, msg, mlen, false);
	lb_str(b, L.format == LOG_FORMAT_JSON ? "\"}\n" : "\n");
	log_emit(bit, b->p, b->len, body);
}

/* A JSON "key":"value" pair (value escaped); NULL value = null. */
static void lb_json_str(struct lbuf *b, const char *key, const char *v, size_t n)
{
	lb_lit(b, ",\"");
	lb_str(b, key);
	lb_lit(b, "\":");
	if (!v) {
		lb_lit(b, "null");
		return;
	}
	lb_raw(b, "\"", 1);
	lb_esc(b, v, n, false);
	lb_raw(b, "\"", 1);
}

void log_query(const struct log_query_line *q)
{
	bool batched = log_batch.flush_ev != NULL;
	struct lbuf *b = batched ? &log_batch.buf : &log_line;
	if (!batched)
		b->len = 0;
	size_t start = b->len;
	size_t var = strlen(q->client) + strlen(q->database) + strlen(q->user) +
		     strlen(q->application_name) + (q->tag ? strlen(q->tag) : 0) + q->statement_len +
		     (q->parameters ? q->parameters_len : 0);
	if (!lb_reserve(b, start + 1024 + 6 * var)) {
		log_drop(1);
		return;
	}
	const char *proto = q->extended ? "extended" : "simple";
	size_t body = lb_prefix(b, LOGB_QUERY);
	if (L.format == LOG_FORMAT_JSON) {
		/* msg: a short human summary; the fields carry the data. */
		if (q->tag) {
			lb_esc(b, q->tag, strlen(q->tag), false);
			lb_lit(b, " in ");
		} else {
			lb_lit(b, "failed with ");
			lb_str(b, q->sqlstate);
			lb_lit(b, " after ");
		}
		lb_ms(b, q->duration_us > 0 ? (uint64_t)q->duration_us : 0);
		lb_lit(b, " ms\",\"conn\":\"C-");
		lb_u64(b, q->conn_id);
		lb_raw(b, "\"", 1);
		lb_json_str(b, "client", q->client, strlen(q->client));
		lb_json_str(b, "database", q->database, strlen(q->database));
		lb_json_str(b, "user", q->user, strlen(q->user));
		lb_json_str(b, "application_name", q->application_name,
			    strlen(q->application_name));
		lb_lit(b, ",\"protocol\":\"");
		lb_str(b, proto);
		lb_lit(b, "\",\"duration_ms\":");
		lb_ms(b, q->duration_us > 0 ? (uint64_t)q->duration_us : 0);
		lb_json_str(b, "tag", q->tag, q->tag ? strlen(q->tag) : 0);
		lb_json_str(b, "sqlstate", q->sqlstate, q->sqlstate ? strlen(q->sqlstate) : 0);
		lb_json_str(b, "statement", q->statement, q->statement_len);
		if (q->statement_full_len)
			lb_fmt(b, ",\"statement_length\":%zu", q->statement_full_len);
		else
			lb_lit(b, ",\"statement_length\":null");
		lb_str(b, q->truncated ? ",\"truncated\":true" : ",\"truncated\":false");
		lb_json_str(b, "parameters", q->parameters, q->parameters_len);
		lb_lit(b, "}\n");
	} else {
		lb_lit(b, "C-");
		lb_u64(b, q->conn_id);
		lb_lit(b, " client=");
		lb_str(b, q->client);
		lb_lit(b, " db=");
		lb_esc(b, q->database, strlen(q->database), false);
		lb_lit(b, " user=");
		lb_esc(b, q->user, strlen(q->user), false);
		lb_lit(b, " app=\"");
		lb_esc(b, q->application_name, strlen(q->application_name), true);
		lb_lit(b, "\" protocol=");
		lb_str(b, proto);
		lb_lit(b, " duration=");
		lb_ms(b, q->duration_us > 0 ? (uint64_t)q->duration_us : 0);
		lb_lit(b, " ms ");
		if (q->tag) {
			lb_lit(b, "tag=\"");
			lb_esc(b, q->tag, strlen(q->tag), true);
			lb_lit(b, "\"");
		} else {
			lb_fmt(b, "error=%s", q->sqlstate);
		}
		if (q->parameters) {
			lb_lit(b, " parameters: ");
			lb_esc(b, q->parameters, q->parameters_len, false);
		}
		if (!q->truncated)
			lb_lit(b, " statement: ");
		else if (q->statement_full_len)
			lb_fmt(b, " statement (truncated, %zu bytes): ", q->statement_full_len);
		else
			lb_lit(b, " statement (truncated): ");
		lb_esc(b, q->statement, q->statement_len, false);
		lb_lit(b, "\n");
	}
	if (!batched) {
		log_emit(LOGB_QUERY, b->p, b->len, body);
		return;
	}
	if (L.syslog_on)
		log_syslog_put(LOGB_QUERY, b->p + body, b->len - body - 1);
	if (b->len >= LOG_BATCH_BYTES) {
		log_batch_flush();
	} else if (!log_batch.armed) {
		event_active(log_batch.flush_ev, 0, 0);
		log_batch.armed = true;
	}
}

/* ---- configuration -------------------------------------------------------- */

/* Open path for appending onto the log file's descriptor (dup3: writers never see it closed). */
static bool log_open_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0) {
		int e = errno;
		log_error("could not open logfile %s: %s", path, strerror(e));
		return false;
	}
	if (L.logfile_fd < 0) {
		L.logfile_fd = fd;
	} else {
		dup3(fd, L.logfile_fd, O_CLOEXEC);
		close(fd);
	}
	return true;
}

static void log_close_file(void)
{
	if (L.logfile_fd >= 0)
		close(L.logfile_fd);
	L.logfile_fd = -1;
}

static void log_syslog_connect(void)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", L.syslog_path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = errno;
		close(fd);
		/* Said once per (re)connect, to the other sinks; syslog stays off until SIGHUP retries. */
		bool was = L.syslog_on;
		L.syslog_on = false;
		log_error("could not connect to syslog at %s: %s", L.syslog_path, strerror(e));
		L.syslog_on = was;
		return;
	}
	if (L.syslog_fd < 0) {
		L.syslog_fd = fd;
	} else {
		dup3(fd, L.syslog_fd, O_CLOEXEC);
		close(fd);
	}
}

static void log_syslog_close(void)
{
	if (L.syslog_fd >= 0)
		close(L.syslog_fd);
	L.syslog_fd = -1;
}

void log_configure(const struct config *cfg)
{
	unsigned mask;
	char bad[64];
	if (log_parse_levels(cfg->log_level ? cfg->log_level : "", &mask, bad, sizeof(bad)))
		log_mask_bits = mask;
	L.format = cfg->log_format;

	/* A closed fd 2 would be reused by a socket, and log lines would go to a client. */
	if (fcntl(STDERR_FILENO, F_GETFD) < 0) {
		int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
		if (fd >= 0 && fd != STDERR_FILENO) {
			dup2(fd, STDERR_FILENO);
			close(fd);
		}
	}
	if (L.stderr_mode == STDERR_DIRECT && log_stderr_may_block())
		log_writer_start();

	const char *path = cfg->logfile ? cfg->logfile : "";
	if (!L.logfile_path || strcmp(path, L.logfile_path) != 0) {
		char *copy = strdup(path);
		if (copy) {
			free(L.logfile_path);
			L.logfile_path = copy;
			if (path[0]) {
				if (!log_open_file(path))
					log_close_file();
			} else {
				log_close_file();
			}
		}
	}

	int fac = LOG_DAEMON;
	if (cfg->syslog_facility && !log_parse_facility(cfg->syslog_facility, &fac))
		fac = LOG_DAEMON; /* config.c refuses unknown names; not reached */
	L.syslog_facility = fac;
	snprintf(L.syslog_ident, sizeof(L.syslog_ident), "%s",
		 cfg->syslog_ident && cfg->syslog_ident[0] ? cfg->syslog_ident : "berth");
	if (cfg->syslog && L.syslog_fd < 0)
		log_syslog_connect();
	else if (!cfg->syslog)
		log_syslog_close();
	L.syslog_on = cfg->syslog;
}

void log_set_syslog_path(const char *path)
{
	L.syslog_path = path;
}

void log_reopen(void)
{
	log_batch_flush(); /* lines from before the rotation go to the old file */
	if (L.logfile_path && L.logfile_path[0])
		log_open_file(L.logfile_path);
	if (L.syslog_on)
		log_syslog_connect();
}

/* Let the writer drain the ring (up to LOG_DRAIN_WAIT_MS), then stop it. */
static void log_writer_stop(void)
{
	struct log_writer *wr = &L.wr;
	if (L.stderr_mode != STDERR_THREAD)
		return;
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += LOG_DRAIN_WAIT_MS / 1000;
	deadline.tv_nsec += (long)(LOG_DRAIN_WAIT_MS % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&wr->mu);
	wr->stop = true;
	pthread_cond_signal(&wr->wake);
	while (!wr->done) {
		if (pthread_cond_timedwait(&wr->drained, &wr->mu, &deadline) == ETIMEDOUT)
			break;
	}
	bool done = wr->done;
	pthread_mutex_unlock(&wr->mu);
	if (done) {
		pthread_join(wr->thread, NULL);
		free(wr->ring);
		*wr = (struct log_writer){.mu = wr->mu, .wake = wr->wake, .drained = wr->drained};
		L.stderr_mode = STDERR_DIRECT;
	} else {
		/* Stuck in write() on a stderr nobody reads: exit ends it; later lines are dropped. */
		L.stderr_mode = STDERR_STUCK;
	}
}

/* An exit without log_shutdown (a failed start): the last lines still reach stderr. */
static void log_atexit(void)
{
	log_batch_flush();
	log_writer_stop();
}

void log_shutdown(void)
{
	log_detach_loop();
	/*
	 * Drain first, then report: logged before, the report went into the very
	 * ring a slow stderr had filled, and was itself dropped.
	 */
	log_writer_stop();
	uint64_t dropped = log_dropped_count();
	if (dropped)
		log_warn("%llu log lines were dropped because a log sink could not keep up",
			 (unsigned long long)dropped);
	log_close_file();
	free(L.logfile_path);
	L.logfile_path = NULL;
	log_syslog_close();
	L.syslog_on = false;
	free(log_line.p);
	log_line = (struct lbuf){0};
	free(log_batch.buf.p);
	log_batch.buf = (struct lbuf){0};
}
