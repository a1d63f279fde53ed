/*
 * test_log.c - log.c and querylog.c without a network or PostgreSQL: JSON
 * escaping (control characters, quotes, invalid UTF-8), the text and JSON
 * line formats, syslog datagrams on a socket of the test's own, the stderr
 * writer thread dropping (and counting) lines when nobody reads a pipe,
 * password masking in statements and the rendering of Bind parameters.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "codec.h"
#include "config.h"
#include "log.h"
#include "querylog.h"

static char tmpdir[64];

/* A config in zero-file mode with these BERTH_ settings ("KEY=value"), NULL-terminated. */
static struct config *cfg_with(const char *first, ...)
{
	char *env[16] = {"DATABASE_URL=postgres://u:secret@127.0.0.1:5432/db"};
	size_t n = 1;
	va_list ap;
	va_start(ap, first);
	for (const char *s = first; s && n < 15; s = va_arg(ap, const char *))
		env[n++] = (char *)s;
	va_end(ap);
	env[n] = NULL;
	struct config_error err = {{0}};
	struct config *cfg = config_load(NULL, env, &err);
	if (!cfg)
		fail_msg("config_load: %s", err.text);
	return cfg;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- JSON escaping ------------------------------------------------------ */

static void check_json(const char *in, size_t len, const char *want)
{
	char out[512];
	size_t n = log_json_escape(out, sizeof(out), in, len);
	out[n] = 0;
	assert_string_equal(out, want);
}

static void test_json_escape(void **state)
{
	(void)state;
	check_json("plain", 5, "plain");
	check_json("q\"b\\s/", 6, "q\\\"b\\\\s/");
	check_json("\n\r\t\b\f", 5, "\\n\\r\\t\\b\\f");
	check_json("\x01\x1f\x7f", 3, "\\u0001\\u001f\x7f");
	check_json("a\0b", 3, "a\\u0000b");
	/* valid UTF-8 passes: 2, 3 and 4 bytes */
	check_json("\xc3\xa9\xe2\x9c\x93\xf0\x9f\x98\x80", 9, "\xc3\xa9\xe2\x9c\x93\xf0\x9f\x98\x80");
	/* invalid: stray continuation, overlong, surrogate, past U+10FFFF, F5, cut sequence */
	check_json("\x80", 1, "\\ufffd");
	check_json("\xc0\xaf", 2, "\\ufffd\\ufffd");
	check_json("\xe0\x80\xaf", 3, "\\ufffd\\ufffd\\ufffd");
	check_json("\xed\xa0\x80", 3, "\\ufffd\\ufffd\\ufffd");
	check_json("\xf4\x90\x80\x80", 4, "\\ufffd\\ufffd\\ufffd\\ufffd");
	check_json("\xf5", 1, "\\ufffd");
	check_json("ok\xe2\x9c", 4, "ok\\ufffd\\ufffd");
	check_json("\xe9t\xe9", 3, "\\ufffdt\\ufffd");

	/* never more than cap bytes, never half an escape */
	char out[8];
	assert_int_equal(log_json_escape(out, 7, "ab\n\n\n", 5), 6);
	assert_memory_equal(out, "ab\\n\\n", 6);
	assert_int_equal(log_json_escape(out, 7, "abcde\x01", 6), 5);
	assert_int_equal(log_json_escape(out, 3, "\xc3\xa9\xc3\xa9", 4), 2);
}

/* ---- password masking -------------------------------------------------------- */

static void check_mask(const char *in, const char *want, bool want_hide)
{
	char out[512];
	bool hide, cut;
	size_t n = querylog_copy_masked(out, sizeof(out), in, strlen(in), &hide, &cut);
	out[n] = 0;
	assert_string_equal(out, want);
	assert_int_equal(hide, want_hide);
	assert_false(cut);
}

static void test_mask_passwords(void **state)
{
	(void)state;
	check_mask("SELECT 1", "SELECT 1", false);
	check_mask("ALTER ROLE x PASSWORD 'secret'", "ALTER ROLE x PASSWORD '***'", false);
	check_mask("create user x with encrypted password 'se''cret' valid until 'infinity'",
		   "create user x with encrypted password '***' valid until 'infinity'", false);
	check_mask("ALTER ROLE x PASSWORD E'sec\\'ret' LOGIN", "ALTER ROLE x PASSWORD E'***' LOGIN",
		   false);
	check_mask("ALTER ROLE x PASSWORD $$secret$$", "ALTER ROLE x PASSWORD $$***$$", false);
	check_mask("ALTER ROLE x PASSWORD $p$sec$ret$p$;", "ALTER ROLE x PASSWORD $p$***$p$;", false);
	check_mask("ALTER ROLE x\n\tPASSWORD\n'secret'", "ALTER ROLE x\n\tPASSWORD\n'***'", false);
	/* nested in a literal (DO, EXECUTE), quotes doubled */
	check_mask("DO 'BEGIN EXECUTE ''ALTER ROLE x PASSWORD ''''s'''''' ''; END'",
		   "DO 'BEGIN EXECUTE ''ALTER ROLE x PASSWORD ''''***'''''' ''; END'", false);
	check_mask("DO $$BEGIN EXECUTE 'ALTER ROLE x PASSWORD ''sec''''ret'''; END$$",
		   "DO $$BEGIN EXECUTE 'ALTER ROLE x PASSWORD ''***'''; END$$", false);
	/* connection strings */
	check_mask("SELECT dblink_connect('host=h password=secret dbname=d')",
		   "SELECT dblink_connect('host=h password=*** dbname=d')", false);
	check_mask("CREATE USER MAPPING FOR u SERVER s OPTIONS (user 'u', password 'secret')",
		   "CREATE USER MAPPING FOR u SERVER s OPTIONS (user 'u', password '***')", false);
	/* several in one statement */
	check_mask("ALTER ROLE a PASSWORD 'one'; ALTER ROLE b PASSWORD 'two'",
		   "ALTER ROLE a PASSWORD '***'; ALTER ROLE b PASSWORD '***'", false);
	/* nothing to hide */
	check_mask("ALTER ROLE x PASSWORD NULL", "ALTER ROLE x PASSWORD NULL", false);
	check_mask("ALTER ROLE x PASSWORD ''", "ALTER ROLE x PASSWORD ''", false);
	check_mask("SET password_encryption = 'md5'", "SET password_encryption = 'md5'", false);
	check_mask("SELECT passwords FROM t", "SELECT passwords FROM t", false);
	check_mask("SELECT 1 -- password", "SELECT 1 -- password", false);
	/* the password is a parameter: parameters must be hidden */
	check_mask("ALTER ROLE x PASSWORD $1", "ALTER ROLE x PASSWORD $1", true);
	/* mixed case, and many p/P before the keyword (the scan skips between them) */
	check_mask("ALTER ROLE pp PaSsWoRd 'x'", "ALTER ROLE pp PaSsWoRd '***'", false);
	check_mask("SELECT ppassword, Ppp; ALTER ROLE P password 'y'",
		   "SELECT ppassword, Ppp; ALTER ROLE P password '***'", false);
	check_mask("PASSWORD 'z'", "PASSWORD '***'", false);
	check_mask("password", "password", false);
	check_mask("passwor", "passwor", false);
	/* a literal cut off by the end of the text: hidden to the end */
	check_mask("ALTER ROLE x PASSWORD 'secr", "ALTER ROLE x PASSWORD '***", false);
}

static void test_mask_truncates_on_characters(void **state)
{
	(void)state;
	char out[16];
	bool hide, cut;
	const char *s = "SELECT '\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9'";
	size_t n = querylog_copy_masked(out, 11, s, strlen(s), &hide, &cut);
	assert_true(cut);
	assert_int_equal(n, 10); /* "SELECT '" + one e-acute; the next one does not fit */
	assert_memory_equal(out, "SELECT '\xc3\xa9", 10);
	n = querylog_copy_masked(out, 12, s, strlen(s), &hide, &cut);
	assert_int_equal(n, 12);
	/* the mask itself is cut like text, and the secret never shows */
	n = querylog_copy_masked(out, 16, "x PASSWORD 'topsecret'", 22, &hide, &cut);
	assert_false(cut);
	assert_int_equal(n, 16);
	assert_memory_equal(out, "x PASSWORD '***'", 16);
	n = querylog_copy_masked(out, 14, "x PASSWORD 'topsecret'", 22, &hide, &cut);
	assert_true(cut);
	assert_int_equal(n, 14);
	assert_memory_equal(out, "x PASSWORD '**", 14);
	n = querylog_copy_masked(out, 0, "abc", 3, &hide, &cut);
	assert_int_equal(n, 0);
	assert_true(cut);
}

/* ---- Bind parameters --------------------------------------------------------- */

/* A Bind body after the statement name: format codes, then values. */
static size_t bind_tail(uint8_t *buf, size_t cap, uint16_t nfmt, const uint16_t *fmts, uint16_t n,
			const char *const *vals, const uint32_t *lens)
{
	struct pkt_writer w;
	writer_init(&w, buf, cap);
	writer_u16(&w, nfmt);
	for (uint16_t i = 0; i < nfmt; i++)
		writer_u16(&w, fmts[i]);
	writer_u16(&w, n);
	for (uint16_t i = 0; i < n; i++) {
		if (!vals[i]) {
			writer_u32(&w, 0xffffffffu);
			continue;
		}
		writer_u32(&w, lens[i]);
		writer_bytes(&w, vals[i], lens[i]);
	}
	writer_u16(&w, 0);
	assert_true(writer_ok(&w));
	return w.len;
}

static void test_render_params(void **state)
{
	(void)state;
	uint8_t buf[512];
	char out[256];
	bool cut;
	const char *vals[] = {"42", "it's", NULL, "\x00\xff", ""};
	uint32_t lens[] = {2, 4, 0, 2, 0};
	uint16_t fmts[] = {0, 0, 0, 1, 0};
	size_t len = bind_tail(buf, sizeof(buf), 5, fmts, 5, vals, lens);
	size_t n = querylog_render_params(out, sizeof(out), buf, len, &cut);
	out[n] = 0;
	assert_string_equal(out, "$1 = '42', $2 = 'it''s', $3 = NULL, $4 = '\\x00ff', $5 = ''");
	assert_false(cut);

	/* one format code for all; binary longer than 32 bytes shown by length */
	char big[40];
	memset(big, 7, sizeof(big));
	const char *bv[] = {"\x01\x02", big};
	uint32_t bl[] = {2, 40};
	uint16_t one[] = {1};
	len = bind_tail(buf, sizeof(buf), 1, one, 2, bv, bl);
	n = querylog_render_params(out, sizeof(out), buf, len, &cut);
	out[n] = 0;
	assert_string_equal(out, "$1 = '\\x0102', $2 = (binary, 40 bytes)");

	/* no parameters */
	len = bind_tail(buf, sizeof(buf), 0, NULL, 0, NULL, NULL);
	n = querylog_render_params(out, sizeof(out), buf, len, &cut);
	assert_int_equal(n, 0);
	assert_false(cut);

	/* a message cut short: what is there, then "..." */
	const char *tv[] = {"abcdef"};
	uint32_t tl[] = {6};
	len = bind_tail(buf, sizeof(buf), 0, NULL, 1, tv, tl);
	n = querylog_render_params(out, sizeof(out), buf, len - 5, &cut);
	out[n] = 0;
	assert_string_equal(out, "$1 = 'abc...");
	assert_true(cut);

	/* out of room */
	len = bind_tail(buf, sizeof(buf), 0, NULL, 1, tv, tl);
	n = querylog_render_params(out, 9, buf, len, &cut);
	assert_int_equal(n, 9);
	assert_memory_equal(out, "$1 = 'abc", 9);
	assert_true(cut);
}

/* ---- line formats ------------------------------------------------------------- */

/*
 * Configure logging with cfg and run fn with stderr sent to a file (a regular
 * file: lines are written directly, in order); returns what was written.
 */
static const char *capture(const struct config *cfg, void (*fn)(void))
{
	static char text[65536];
	char path[128];
	snprintf(path, sizeof(path), "%s/stderr", tmpdir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	int saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	log_configure(cfg);
	fn();
	dup2(saved, STDERR_FILENO);
	close(saved);
	ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
	close(fd);
	assert_true(n >= 0);
	text[n] = 0;
	return text;
}

static void emit_lines(void)
{
	log_warn("C-%d: hello \"there\"\nsecond\x01line", 7);
	log_info("not shown");
	log_error("é and \xff");
}

static const struct log_query_line sample_query = {
	.conn_id = 12,
	.client = "127.0.0.1:5555",
	.database = "app",
	.user = "u\"ser",
	.application_name = "my \"app\"",
	.extended = true,
	.duration_us = 1234567,
	.tag = "INSERT 0 1",
	.statement = "INSERT INTO t VALUES ($1)\n-- end",
	.statement_len = 32,
	.statement_full_len = 32,
	.parameters = "$1 = 'x'",
	.parameters_len = 8,
};

static void emit_query(void)
{
	log_query(&sample_query);
	struct log_query_line failed = sample_query;
	failed.tag = NULL;
	failed.sqlstate = "42P01";
	failed.parameters = NULL;
	failed.truncated = true;
	failed.statement_len = 6;
	failed.extended = false;
	log_query(&failed);
}

static void test_text_format(void **state)
{
	(void)state;
	struct config *cfg = cfg_with("BERTH_LOG_LEVEL=error,warn,query", NULL);
	const char *t = capture(cfg, emit_lines);
	char want[128];
	snprintf(want, sizeof(want), " UTC [%d] WARNING C-7: hello \"there\"\\nsecond\\x01line\n",
		 (int)getpid());
	assert_non_null(strstr(t, want));
	assert_null(strstr(t, "not shown"));
	assert_non_null(strstr(t, "] ERROR \xc3\xa9 and \xff\n"));
	/* one line per record: the control characters were escaped */
	int lines = 0;
	for (const char *p = t; (p = strchr(p, '\n')); p++)
		lines++;
	assert_int_equal(lines, 2);
	assert_true(t[4] == '-' && t[10] == ' ' && t[19] == '.' && t[23] == ' ');

	t = capture(cfg, emit_query);
	assert_non_null(strstr(t, "] QUERY C-12 client=127.0.0.1:5555 db=app user=u\"ser "
				  "app=\"my \\\"app\\\"\" protocol=extended duration=1234.567 ms "
				  "tag=\"INSERT 0 1\" parameters: $1 = 'x' statement: INSERT INTO t "
				  "VALUES ($1)\\n-- end\n"));
	assert_non_null(strstr(t, "protocol=simple duration=1234.567 ms error=42P01 statement "
				  "(truncated, 32 bytes): INSERT\n"));
	config_free(cfg);
}

static void test_json_format(void **state)
{
	(void)state;
	struct config *cfg = cfg_with("BERTH_LOG_LEVEL=error,warn,query", "BERTH_LOG_FORMAT=json", NULL);
	const char *t = capture(cfg, emit_lines);
	char want[160];
	snprintf(want, sizeof(want),
		 "\",\"level\":\"warn\",\"pid\":%d,\"msg\":\"C-7: hello \\\"there\\\"\\nsecond\\u0001line\"}\n",
		 (int)getpid());
	assert_non_null(strstr(t, want));
	assert_true(strncmp(t, "{\"ts\":\"", 7) == 0);
	/* 2026-11-24T13:16:22.123Z */
	assert_true(t[11] == '-' && t[17] == 'T' && t[26] == '.' && t[30] == 'Z');
	assert_non_null(strstr(t, "\"level\":\"error\",\"pid\":"));
	assert_non_null(strstr(t, "\"msg\":\"\xc3\xa9 and \\ufffd\"}\n"));

	t = capture(cfg, emit_query);
	assert_non_null(strstr(t, "\"level\":\"query\""));
	assert_non_null(strstr(
		t, "\"msg\":\"INSERT 0 1 in 1234.567 ms\",\"conn\":\"C-12\",\"client\":\"127.0.0.1:5555\","
		   "\"database\":\"app\",\"user\":\"u\\\"ser\",\"application_name\":\"my \\\"app\\\"\","
		   "\"protocol\":\"extended\",\"duration_ms\":1234.567,\"tag\":\"INSERT 0 1\","
		   "\"sqlstate\":null,\"statement\":\"INSERT INTO t VALUES ($1)\\n-- end\","
		   "\"statement_length\":32,\"truncated\":false,\"parameters\":\"$1 = 'x'\"}\n"));
	assert_non_null(strstr(
		t, "\"msg\":\"failed with 42P01 after 1234.567 ms\""));
	assert_non_null(strstr(t, "\"tag\":null,\"sqlstate\":\"42P01\",\"statement\":\"INSERT\","
				  "\"statement_length\":32,\"truncated\":true,\"parameters\":null}\n"));
	config_free(cfg);
	cfg = cfg_with(NULL);
	log_configure(cfg);
	config_free(cfg);
}

/* ---- sinks ---------------------------------------------------------------------- */

static void test_logfile_and_reopen(void **state)
{
	(void)state;
	char path[128], moved[140], env[160];
	snprintf(path, sizeof(path), "%s/berth.log", tmpdir);
	snprintf(moved, sizeof(moved), "%s.1", path);
	snprintf(env, sizeof(env), "BERTH_LOGFILE=%s", path);
	struct config *cfg = cfg_with(env, NULL);
	log_configure(cfg);
	log_warn("first line");
	assert_int_equal(rename(path, moved), 0);
	log_warn("second line");
	log_reopen();
	log_warn("third line");
	cfg->logfile[0] = 0; /* logfile off: later lines go nowhere but stderr */
	log_configure(cfg);
	log_warn("fourth line");
	config_free(cfg);

	char buf[1024];
	FILE *f = fopen(moved, "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	assert_non_null(strstr(buf, "WARNING first line\n"));
	assert_non_null(strstr(buf, "WARNING second line\n"));
	assert_null(strstr(buf, "third"));
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	assert_null(strstr(buf, "second"));
	assert_non_null(strstr(buf, "WARNING third line\n"));
	assert_null(strstr(buf, "fourth"));
}

static void test_syslog_datagrams(void **state)
{
	(void)state;
	char path[96];
	snprintf(path, sizeof(path), "%s/log.sock", tmpdir);
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);
	assert_true(s >= 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	log_set_syslog_path(path);
	struct config *cfg = cfg_with("BERTH_SYSLOG=1", "BERTH_SYSLOG_IDENT=tst",
				      "BERTH_SYSLOG_FACILITY=local3", NULL);
	log_configure(cfg);
	log_warn("to syslog %d", 42);
	char buf[512];
	ssize_t n = recv(s, buf, sizeof(buf) - 1, MSG_DONTWAIT);
	assert_true(n > 0);
	buf[n] = 0;
	/* local3 (19 << 3) + warning (4) = 156; "<PRI>Mmm dd hh:mm:ss ident[pid]: msg" */
	assert_true(strncmp(buf, "<156>", 5) == 0);
	char want[64];
	snprintf(want, sizeof(want), " tst[%d]: WARNING to syslog 42", (int)getpid());
	assert_non_null(strstr(buf, want));
	assert_true(buf[n - 1] != '\n');

	/* A syslog daemon that does not read: sends never wait, lines are dropped and counted. */
	uint64_t before = log_dropped_count();
	int saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY);
	dup2(null, STDERR_FILENO); /* the flood is for syslog only */
	double t0 = now_s();
	for (int i = 0; i < 2000; i++)
		log_warn("flood %d %0400d", i, 0);
	double took = now_s() - t0;
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(null);
	assert_true(took < 5.0);
	assert_true(log_dropped_count() > before);

	cfg->syslog = false;
	log_configure(cfg);
	config_free(cfg);
	close(s);
	unlink(path);
	log_set_syslog_path("/dev/log");
}

static size_t count_of(const char *hay, const char *needle)
{
	size_t n = 0;
	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

/*
 * With a loop attached, query lines wait for the end of the loop round and
 * then reach the log file together; syslog still gets one datagram per line,
 * each holding its own line only (JSON: one object).
 */
static void test_batched_query_lines(void **state)
{
	(void)state;
	char sock[96], file[96], env[128];
	snprintf(sock, sizeof(sock), "%s/batch.sock", tmpdir);
	snprintf(file, sizeof(file), "%s/batch.log", tmpdir);
	snprintf(env, sizeof(env), "BERTH_LOGFILE=%s", file);
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);
	assert_true(s >= 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	log_set_syslog_path(sock);
	struct config *cfg = cfg_with("BERTH_LOG_LEVEL=error,warn,query", "BERTH_LOG_FORMAT=json",
				      "BERTH_SYSLOG=1", env, NULL);
	int saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY);
	dup2(null, STDERR_FILENO);
	log_configure(cfg);
	struct event_base *base = event_base_new();
	assert_non_null(base);
	log_attach_loop(base);

	emit_query(); /* two lines in one round */
	char buf[2048];
	for (int i = 0; i < 2; i++) {
		ssize_t n = recv(s, buf, sizeof(buf) - 1, MSG_DONTWAIT);
		assert_true(n > 0);
		buf[n] = 0;
		assert_int_equal(count_of(buf, "{\"ts\":"), 1);
		assert_non_null(strstr(buf, i == 0 ? "\"tag\":\"INSERT 0 1\"" : "\"sqlstate\":\"42P01\""));
	}
	char text[4096];
	FILE *f = fopen(file, "r");
	assert_non_null(f);
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	assert_int_equal(n, 0); /* the round has not ended */
	assert_true(event_base_loop(base, EVLOOP_NONBLOCK) >= 0); /* 1: nothing left to run */
	clearerr(f);
	n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = 0;
	assert_int_equal(count_of(text, "\n"), 2);
	assert_int_equal(count_of(text, "\"level\":\"query\""), 2);

	emit_query(); /* detaching flushes */
	log_detach_loop();
	clearerr(f);
	n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = 0;
	assert_int_equal(count_of(text, "\n"), 2);
	fclose(f);
	event_base_free(base);

	cfg->syslog = false;
	log_configure(cfg);
	config_free(cfg);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(null);
	close(s);
	unlink(sock);
	unlink(file);
	log_set_syslog_path("/dev/log");
}

struct reader {
	int fd;
	bool found;
};

/* Read the pipe until the drop report shows up (or 10 s pass). */
static void *read_pipe(void *arg)
{
	struct reader *r = arg;
	static char tail[8192];
	size_t have = 0;
	double end = now_s() + 10;
	while (now_s() < end && !r->found) {
		struct pollfd p = {.fd = r->fd, .events = POLLIN};
		if (poll(&p, 1, 100) <= 0)
			continue;
		char buf[65536];
		ssize_t n = read(r->fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		/* keep the last bytes only: the report is at the very end */
		size_t k = (size_t)n < sizeof(tail) - 1 ? (size_t)n : sizeof(tail) - 1;
		if (have + k > sizeof(tail) - 1) {
			size_t drop = have + k - (sizeof(tail) - 1);
			memmove(tail, tail + drop, have - drop);
			have -= drop;
		}
		memcpy(tail + have, buf + n - k, k);
		have += k;
		tail[have] = 0;
		r->found = strstr(tail, "log lines were dropped because a log sink could not keep up");
	}
	return NULL;
}

static void test_stderr_pipe_nobody_reads(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	int saved = dup(STDERR_FILENO);
	dup2(p[1], STDERR_FILENO);
	close(p[1]);
	struct config *cfg = cfg_with(NULL);
	log_configure(cfg); /* a pipe: the writer thread starts */
	/* fd 2 itself stays blocking: berth shares it with whoever started it */
	assert_false(fcntl(STDERR_FILENO, F_GETFL) & O_NONBLOCK);
	uint64_t before = log_dropped_count();
	double t0 = now_s();
	for (int i = 0; i < 10000; i++)
		log_warn("line %d %0300d", i, 0); /* 3 MB into a 64 KiB pipe nobody reads */
	assert_true(now_s() - t0 < 5.0);
	uint64_t dropped = log_dropped_count() - before;
	assert_true(dropped > 5000);
	assert_true(dropped < 10000);

	/* Someone reads again: at shutdown the ring drains, then the report. */
	struct reader r = {.fd = p[0]};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, read_pipe, &r), 0);
	log_shutdown();
	pthread_join(th, NULL);
	assert_true(r.found);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(p[0]);
	config_free(cfg);
}

static int group_setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/berth-test-log-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	const char *names[] = {"stderr", "berth.log", "berth.log.1", "log.sock"};
	char path[160];
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
		unlink(path);
	}
	return rmdir(tmpdir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_escape),
		cmocka_unit_test(test_mask_passwords),
		cmocka_unit_test(test_mask_truncates_on_characters),
		cmocka_unit_test(test_render_params),
		cmocka_unit_test(test_text_format),
		cmocka_unit_test(test_json_format),
		cmocka_unit_test(test_logfile_and_reopen),
		cmocka_unit_test(test_syslog_datagrams),
		cmocka_unit_test(test_batched_query_lines),
		cmocka_unit_test(test_stderr_pipe_nobody_reads),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
