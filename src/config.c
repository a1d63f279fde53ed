/*
 * config.c - berth's settings: the table generated from config_keys.h, the
 * INI reader ([berth] or [pgbouncer], [databases], [users], %include), the
 * auth_file reader, BERTH_<KEY> and DATABASE_URL from the environment, and
 * validation. It builds a complete struct config or nothing. It never exits,
 * never logs (callers log config_error.text and cfg->warnings) and never puts
 * a password or DATABASE_URL into an error text.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * STYLE.md keeps libpq-fe.h inside upstream.c. config.c breaks that rule for
 * PQconninfoParse() alone: it is a pure parser (no connection, no I/O, no
 * blocking), and letting libpq's own grammar judge [databases] entries and
 * DATABASE_URL means berth never disagrees with the library that connects.
 */
#include <libpq-fe.h>

#include "hba.h"
#include "log.h"
#include "tls.h"

#define MASK "****"
/* PgBouncer's limit */
#define MAX_INCLUDE_DEPTH 10
/* a config or auth_file larger than this is a mistake */
#define MAX_FILE_BYTES (64u * 1024 * 1024)
#define USEC_PER_SEC INT64_C(1000000)
/* 100 years: callers can add any time setting to "now" without overflow */
#define MAX_TIME_USEC (USEC_PER_SEC * 86400 * 366 * 100)

/* ---------------------------------------------------------------------
 * The settings table
 */

struct key_info {
	const char *name;
	enum config_type type;
	const char *def;
	int64_t min, max; /* CT_INT, CT_SIZE: inclusive bounds; CT_TIME: min in us (max unused) */
	int flags;
	const char *help;
	size_t offset; /* of the field in struct config */
};

static const struct key_info key_table[] = {
#define CONFIG_KEY(name_, type_, def_, min_, max_, flags_, help_)                                  \
	{#name_, type_, def_, min_, max_, flags_, help_, offsetof(struct config, name_)},
#include "config_keys.h"
#undef CONFIG_KEY
};

#define N_KEYS ARRAY_SIZE(key_table)

/* Other names a setting answers to, in the file and as BERTH_<ALIAS>. */
static const struct {
	const char *alias;
	const char *key;
} key_aliases[] = {
	{"pool_size", "default_pool_size"}, /* BERTH_POOL_SIZE */
};

/* CT_ENUM values. refusal != NULL: a value we know (PgBouncer has it) but refuse. */
struct enum_value {
	const char *name;
	int value;
	const char *refusal;
};

static const struct enum_value pool_mode_values[] = {
	{"session", POOL_SESSION, NULL},
	{"transaction", POOL_TRANSACTION, NULL},
	{"statement", POOL_STATEMENT, NULL},
	{NULL, 0, NULL},
};

static const struct enum_value auth_type_values[] = {
	{"scram-sha-256", AUTH_SCRAM, NULL},
	{"md5", AUTH_MD5, NULL},
	{"plain", AUTH_PLAIN, NULL},
	{"trust", AUTH_TRUST, NULL},
	{"any", -1,
	 "berth does not support auth_type any; use trust, with user= in [databases] entries"},
	{"hba", AUTH_HBA, NULL},
	{"cert", AUTH_CERT, NULL},
	{"pam", -1, "berth does not support auth_type pam"},
	{"ldap", -1, "berth does not support auth_type ldap"},
	{NULL, 0, NULL},
};

static const struct enum_value client_tls_sslmode_values[] = {
	{"disable", TLS_DISABLE, NULL},
	{"allow", TLS_ALLOW, NULL},
	{"prefer", TLS_PREFER, NULL},
	{"require", TLS_REQUIRE, NULL},
	{"verify-ca", TLS_VERIFY_CA, NULL},
	{"verify-full", TLS_VERIFY_FULL, NULL},
	{NULL, 0, NULL},
};

static const struct enum_value log_format_values[] = {
	{"text", LOG_FORMAT_TEXT, NULL},
	{"json", LOG_FORMAT_JSON, NULL},
	{NULL, 0, NULL},
};

static const struct {
	const char *key;
	const struct enum_value *values;
} enum_tables[] = {
	{"pool_mode", pool_mode_values},
	{"auth_type", auth_type_values},
	{"log_format", log_format_values},
	{"client_tls_sslmode", client_tls_sslmode_values},
};

/*
 * PgBouncer [pgbouncer] settings berth does not have. A value listed in
 * harmless ("*" = any value; empty values always) is accepted with a
 * warning, so a PgBouncer file loads unchanged; any other value is an error,
 * because ignoring it would silently weaken what the user asked for.
 */
struct compat_key {
	const char *name;
	const char *harmless; /* "a|b" values that may be ignored, "*" any, NULL none */
	const char *why;
};

static const struct compat_key compat_main_keys[] = {
	{"verbose", "*", "use log_level"},
	{"log_disconnections", "*", "log_connections logs logouts too"},
	{"log_pooler_errors", "*", "not configurable in berth"},
	{"dns_max_ttl", "*", "not configurable in berth"},
	{"dns_nxdomain_ttl", "*", "not configurable in berth"},
	{"dns_zone_check_period", "*", "not configurable in berth"},
	{"resolv_conf", "*", "berth uses the system resolver configuration"},
	{"sbuf_loopcnt", "*", "not configurable in berth"},
	{"suspend_timeout", "*", "not configurable in berth"},
	{"cancel_wait_timeout", "*", "not configurable in berth"},
	{"scram_iterations", "*", "berth derives SCRAM secrets for plain auth_file passwords itself"},
	{"server_tls13_ciphers", NULL, "libpq has no cipher setting: OpenSSL's defaults apply"},
	{"auth_ldap_options", NULL, "berth does not support auth_type ldap"},
	{"unix_socket_group", "*", "not supported by berth; set unix_socket_mode"},
	{"service_name", "*", "Windows only"},
	{"job_name", "*", "Windows only"},
	{"conffile", "*", "berth reloads the file it was started with"},
	{"client_tls_dheparams", "*", "berth uses OpenSSL's built-in Diffie-Hellman groups"},
	{"server_tls_ciphers", "default", "libpq has no cipher setting: OpenSSL's defaults apply"},
	{"peer_id", "0", "berth does not support peering"},
	{"disable_pqexec", "0", "berth does not support disabling the simple query protocol"},
	{"user", NULL,
	 "berth does not change its Unix user; start it as the user it should run as"},
	{"auth_ident_file", NULL, "berth does not support user name maps (map= in auth_hba_file)"},
	{"auth_user", NULL, "berth does not support auth_query; list users in auth_file"},
	{"auth_query", NULL, "berth does not support auth_query; list users in auth_file"},
	{"auth_dbname", NULL, "berth does not support auth_query; list users in auth_file"},
};

/* PgBouncer [databases] and [users] options berth refuses (none is libpq's). */
static const char *const compat_db_options[] = {
	"auth_user",
	"auth_query",
	"auth_dbname",
};

/* ---------------------------------------------------------------------
 * Small helpers
 */

static bool fmt_msg(char *msg, size_t len, const char *fmt, ...) BERTH_PRINTF(3, 4);
static bool fmt_msg(char *msg, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, len, fmt, ap);
	va_end(ap);
	return false;
}

static char *dup_n(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

/* Overwrite, then free: secrets do not linger in freed heap. */
static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Trimmed copy of s[0..n). */
static char *dup_trim(const char *s, size_t n)
{
	while (n > 0 && (is_blank(*s) || *s == '\n')) {
		s++;
		n--;
	}
	while (n > 0 && (is_blank(s[n - 1]) || s[n - 1] == '\n'))
		n--;
	return dup_n(s, n);
}

static const char *key_shown(size_t i, const char *value)
{
	return (key_table[i].flags & CF_SECRET) ? MASK : value;
}

static void *field_ptr(struct config *cfg, size_t i)
{
	return (char *)cfg + key_table[i].offset;
}

static const void *field_cptr(const struct config *cfg, size_t i)
{
	return (const char *)cfg + key_table[i].offset;
}

static const char *type_name(enum config_type t);

static const struct enum_value *enum_values_for(const char *key)
{
	for (size_t i = 0; i < ARRAY_SIZE(enum_tables); i++)
		if (strcmp(enum_tables[i].key, key) == 0)
			return enum_tables[i].values;
	return NULL;
}

/* ---------------------------------------------------------------------
 * Value parsers. msg gets the reason; shown is what the message may quote
 * as the value ("****" for secrets and anything that may hold a password).
 */

static bool parse_int(const char *v, const char *shown, int64_t min, int64_t max, int64_t *out,
		      char *msg, size_t len)
{
	char *end;
	errno = 0;
	/* base 0 as PgBouncer: unix_socket_mode = 0777 is octal */
	long long n = strtoll(v, &end, 0);
	if (end == v || *end != '\0' || isspace((unsigned char)*v))
		return fmt_msg(msg, len, "\"%s\" is not an integer", shown);
	if (errno == ERANGE || n < min || n > max)
		return fmt_msg(msg, len, "\"%s\" is out of range (%" PRId64 "..%" PRId64 ")", shown,
			       min, max);
	*out = n;
	return true;
}

static bool parse_bool(const char *v, const char *shown, bool *out, char *msg, size_t len)
{
	static const char *const yes[] = {"1", "yes", "on", "true"};
	static const char *const no[] = {"0", "no", "off", "false"};
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return fmt_msg(msg, len, "\"%s\" is not a boolean (use 0/1, yes/no, on/off, true/false)",
		       shown);
}

/* Seconds, fractions allowed (PgBouncer), or a number with a unit. */
static bool parse_time(const char *v, const char *shown, int64_t *out, char *msg, size_t len)
{
	static const struct {
		const char *unit;
		int64_t usec;
	} units[] = {
		{"", USEC_PER_SEC},
		{"us", 1},
		{"ms", 1000},
		{"s", USEC_PER_SEC},
		{"min", 60 * USEC_PER_SEC},
		{"h", 3600 * USEC_PER_SEC},
		{"d", 86400 * USEC_PER_SEC},
	};
	const char *p = v;
	int64_t whole = 0, frac = 0, frac_scale = 1;
	bool digits = false;

	if (*p == '-')
		return fmt_msg(msg, len, "\"%s\" is negative", shown);
	while (isdigit((unsigned char)*p)) {
		digits = true;
		if (whole > MAX_TIME_USEC)
			return fmt_msg(msg, len, "\"%s\" is too large", shown);
		whole = whole * 10 + (*p++ - '0');
	}
	if (*p == '.') {
		p++;
		while (isdigit((unsigned char)*p)) {
			digits = true;
			/* digits finer than a picosecond are noise */
			if (frac_scale < INT64_C(1000000000000)) {
				frac = frac * 10 + (*p - '0');
				frac_scale *= 10;
			}
			p++;
		}
	}
	if (!digits)
		goto bad;
	while (*p == ' ')
		p++;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcasecmp(p, units[i].unit) != 0)
			continue;
		int64_t mult = units[i].usec;
		if (whole > MAX_TIME_USEC / mult)
			return fmt_msg(msg, len, "\"%s\" is too large", shown);
		long double f = (long double)frac * (long double)mult / (long double)frac_scale;
		int64_t us = whole * mult + (int64_t)(f + 0.5L);
		if (us > MAX_TIME_USEC)
			return fmt_msg(msg, len, "\"%s\" is too large", shown);
		*out = us;
		return true;
	}
bad:
	return fmt_msg(msg, len,
		       "\"%s\" is not a time (seconds, or a number with unit us, ms, s, min, h, d)",
		       shown);
}

static bool parse_size(const char *v, const char *shown, int64_t min, int64_t max, int64_t *out,
		       char *msg, size_t len)
{
	static const struct {
		const char *unit;
		int64_t mult;
	} units[] = {
		{"", 1},
		{"b", 1},
		{"k", 1024},
		{"kb", 1024},
		{"m", 1024 * 1024},
		{"mb", 1024 * 1024},
		{"g", 1024 * 1024 * 1024},
		{"gb", 1024 * 1024 * 1024},
	};
	char *end;
	if (!isdigit((unsigned char)*v))
		goto bad;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	if (errno == ERANGE)
		goto range;
	while (*end == ' ')
		end++;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcasecmp(end, units[i].unit) != 0)
			continue;
		if (n > max / units[i].mult)
			goto range;
		n *= units[i].mult;
		if (n < min || n > max)
			goto range;
		*out = n;
		return true;
	}
bad:
	return fmt_msg(msg, len, "\"%s\" is not a size (bytes, or a number with kB, MB, GB)",
		       shown);
range:
	return fmt_msg(msg, len, "\"%s\" is out of range (%" PRId64 "..%" PRId64 " bytes)", shown,
		       min, max);
}

static bool parse_enum(const char *key, const char *v, const char *shown, int *out, char *msg,
		       size_t len)
{
	const struct enum_value *ev = enum_values_for(key);
	BERTH_ASSERT(ev != NULL); /* every CT_ENUM key has a table: test_config checks */
	for (const struct enum_value *e = ev; e->name; e++) {
		if (strcasecmp(e->name, v) != 0)
			continue;
		if (e->refusal)
			return fmt_msg(msg, len, "\"%s\": %s", shown, e->refusal);
		*out = e->value;
		return true;
	}
	char allowed[128] = "";
	for (const struct enum_value *e = ev; e->name; e++) {
		if (e->refusal)
			continue;
		if (allowed[0])
			strncat(allowed, ", ", sizeof(allowed) - strlen(allowed) - 1);
		strncat(allowed, e->name, sizeof(allowed) - strlen(allowed) - 1);
	}
	return fmt_msg(msg, len, "\"%s\" is not one of: %s", shown, allowed);
}

/* "host:port" or "[v6addr]:port". */
static bool parse_listen(const char *v, char **host, int *port, char *msg, size_t len)
{
	const char *h, *colon;
	size_t hlen;
	if (v[0] == '[') {
		const char *close = strchr(v, ']');
		if (!close || close[1] != ':')
			return fmt_msg(msg, len, "\"%s\" is not [address]:port", v);
		h = v + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(v, ':');
		if (!colon)
			return fmt_msg(msg, len, "\"%s\" is not host:port", v);
		h = v;
		hlen = (size_t)(colon - v);
		if (memchr(h, ':', hlen))
			return fmt_msg(msg, len, "\"%s\": write IPv6 addresses as [address]:port",
				       v);
	}
	if (hlen == 0)
		return fmt_msg(msg, len, "\"%s\" has no host (use * for all addresses)", v);
	const char *p = colon + 1;
	long n = 0;
	if (!*p)
		return fmt_msg(msg, len, "\"%s\" has no port", v);
	for (; *p; p++) {
		if (!isdigit((unsigned char)*p) || n > 65535)
			return fmt_msg(msg, len, "\"%s\": port is not a number in 1..65535", v);
		n = n * 10 + (*p - '0');
	}
	if (n < 1 || n > 65535)
		return fmt_msg(msg, len, "\"%s\": port is not a number in 1..65535", v);
	if (host) {
		*host = dup_n(h, hlen);
		if (!*host)
			return fmt_msg(msg, len, "out of memory");
	}
	if (port)
		*port = (int)n;
	return true;
}

static void format_time(int64_t us, char *buf, size_t len);

bool config_parse_listen(const char *value, char **host, int *port, char *err, size_t errlen)
{
	return parse_listen(value, host, port, err, errlen);
}

/* Parse value for key i and store it in cfg; on failure cfg is unchanged. */
bool config_tls_protocol_range(const char *value, const char **min, const char **max)
{
	/* PgBouncer's names; libpq takes a range, so a list becomes its lowest..highest. */
	static const char *const libpq_names[] = {"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"};
	static const struct {
		const char *word;
		int lo, hi;
	} words[] = {
		{"tlsv1", 0, 0},   {"tlsv1.0", 0, 0}, {"tlsv1.1", 1, 1}, {"tlsv1.2", 2, 2},
		{"tlsv1.3", 3, 3}, {"secure", 2, 3},  {"all", 0, 3},     {"legacy", 0, 3},
	};
	int lo = 4, hi = -1;
	const char *p = value;
	while (*p) {
		size_t n = strcspn(p, ", :");
		if (n) {
			bool known = false;
			for (size_t w = 0; w < ARRAY_SIZE(words) && !known; w++) {
				if (strlen(words[w].word) == n && strncasecmp(p, words[w].word, n) == 0) {
					known = true;
					lo = words[w].lo < lo ? words[w].lo : lo;
					hi = words[w].hi > hi ? words[w].hi : hi;
				}
			}
			if (!known)
				return false;
		}
		p += n;
		p += strspn(p, ", :");
	}
	if (hi < 0)
		return false;
	*min = libpq_names[lo];
	*max = libpq_names[hi];
	return true;
}

static bool key_parse_set(struct config *cfg, size_t i, const char *value, char *msg, size_t len)
{
	const struct key_info *k = &key_table[i];
	const char *shown = key_shown(i, value);
	void *dst = field_ptr(cfg, i);

	switch (k->type) {
	case CT_INT: {
		int64_t n = 0;
		if (!parse_int(value, shown, k->min, k->max, &n, msg, len))
			return false;
		*(int *)dst = (int)n;
		return true;
	}
	case CT_BOOL:
		return parse_bool(value, shown, (bool *)dst, msg, len);
	case CT_TIME: {
		int64_t us = 0;
		if (!parse_time(value, shown, &us, msg, len))
			return false;
		if (us < k->min) {
			char least[32];
			format_time(k->min, least, sizeof(least));
			return fmt_msg(msg, len, "\"%s\" is out of range (at least %s s)", shown, least);
		}
		*(int64_t *)dst = us;
		return true;
	}
	case CT_SIZE: {
		int64_t n = 0;
		if (!parse_size(value, shown, k->min, k->max, &n, msg, len))
			return false;
		*(int64_t *)dst = n;
		return true;
	}
	case CT_ENUM: {
		int e = 0;
		if (!parse_enum(k->name, value, shown, &e, msg, len))
			return false;
		*(int *)dst = e;
		return true;
	}
	case CT_STRING:
		break;
	}

	char *host = NULL;
	int port = 0;
	if (strcmp(k->name, "log_level") == 0) {
		unsigned mask;
		char bad[64];
		if (!log_parse_levels(value, &mask, bad, sizeof(bad)))
			return fmt_msg(msg, len,
				       "unknown level \"%s\" (use a comma list of error, warn, "
				       "info, query, debug)",
				       bad);
	} else if (strcmp(k->name, "syslog_facility") == 0) {
		int fac;
		if (!log_parse_facility(value, &fac))
			return fmt_msg(msg, len,
				       "unknown facility \"%s\" (use auth, authpriv, daemon, user, "
				       "local0 .. local7)",
				       shown);
	} else if (strcmp(k->name, "server_tls_sslmode") == 0 && value[0] != '\0') {
		static const char *const modes[] = {"disable", "allow", "prefer",
						    "require", "verify-ca", "verify-full"};
		bool known = false;
		for (size_t m = 0; m < ARRAY_SIZE(modes); m++)
			known |= strcmp(value, modes[m]) == 0;
		if (!known)
			return fmt_msg(msg, len,
				       "\"%s\" is not one of: disable, allow, prefer, require, "
				       "verify-ca, verify-full",
				       shown);
	} else if (strcmp(k->name, "server_tls_protocols") == 0 && value[0] != '\0') {
		const char *lo, *hi;
		if (!config_tls_protocol_range(value, &lo, &hi))
			return fmt_msg(msg, len,
				       "\"%s\": use secure, all, legacy, or a list of tlsv1.0, "
				       "tlsv1.1, tlsv1.2, tlsv1.3",
				       shown);
	} else if (strcmp(k->name, "listen") == 0 && value[0] != '\0') {
		if (!parse_listen(value, &host, &port, msg, len))
			return false;
	} else if (strcmp(k->name, "http_listen") == 0 && value[0] != '\0') {
		if (!parse_listen(value, NULL, NULL, msg, len))
			return false;
	}
	char *copy = strdup(value);
	if (!copy) {
		free(host);
		return fmt_msg(msg, len, "out of memory");
	}
	char **sp = dst;
	if (k->flags & CF_SECRET)
		free_secret(*sp);
	else
		free(*sp);
	*sp = copy;
	if (host) { /* listen = host:port stands for listen_addr and listen_port */
		free(cfg->listen_addr);
		cfg->listen_addr = host;
		cfg->listen_port = port;
	}
	return true;
}

/* ---------------------------------------------------------------------
 * Settings table access
 */

size_t config_key_count(void)
{
	return N_KEYS;
}

const char *config_key_name(size_t i)
{
	return i < N_KEYS ? key_table[i].name : NULL;
}

const char *config_key_default(size_t i)
{
	return i < N_KEYS ? key_table[i].def : NULL;
}

const char *config_key_help(size_t i)
{
	return i < N_KEYS ? key_table[i].help : NULL;
}

int config_key_flags(size_t i)
{
	return i < N_KEYS ? key_table[i].flags : 0;
}

enum config_type config_key_type(size_t i)
{
	return i < N_KEYS ? key_table[i].type : CT_STRING;
}

void config_key_bounds(size_t i, int64_t *min, int64_t *max)
{
	*min = i < N_KEYS ? key_table[i].min : 0;
	*max = i < N_KEYS ? key_table[i].max : 0;
}

const char *config_key_enum_value(size_t i, size_t n)
{
	const struct enum_value *ev = i < N_KEYS ? enum_values_for(key_table[i].name) : NULL;
	for (; ev && ev->name; ev++)
		if (!ev->refusal && n-- == 0)
			return ev->name;
	return NULL;
}

const char *config_key_alias(size_t i, size_t n)
{
	for (size_t a = 0; i < N_KEYS && a < ARRAY_SIZE(key_aliases); a++)
		if (strcmp(key_aliases[a].key, key_table[i].name) == 0 && n-- == 0)
			return key_aliases[a].alias;
	return NULL;
}

const char *config_type_name(enum config_type t)
{
	return type_name(t);
}

int config_key_lookup(const char *name)
{
	if (!name)
		return -1;
	for (size_t a = 0; a < ARRAY_SIZE(key_aliases); a++)
		if (strcasecmp(name, key_aliases[a].alias) == 0)
			name = key_aliases[a].key;
	for (size_t i = 0; i < N_KEYS; i++)
		if (strcasecmp(name, key_table[i].name) == 0)
			return (int)i;
	return -1;
}

/* Microseconds as PgBouncer's SHOW CONFIG shows times: seconds, "15", "0.25". */
static void format_time(int64_t us, char *buf, size_t len)
{
	int64_t s = us / USEC_PER_SEC, frac = us % USEC_PER_SEC;
	if (frac == 0) {
		snprintf(buf, len, "%" PRId64, s);
		return;
	}
	char digits[8];
	snprintf(digits, sizeof(digits), "%06" PRId64, frac);
	size_t n = strlen(digits);
	while (n > 0 && digits[n - 1] == '0')
		digits[--n] = '\0';
	snprintf(buf, len, "%" PRId64 ".%s", s, digits);
}

void config_key_format(const struct config *cfg, size_t i, char *buf, size_t len)
{
	if (len == 0)
		return;
	buf[0] = '\0';
	if (!cfg || i >= N_KEYS)
		return;
	const struct key_info *k = &key_table[i];
	const void *src = field_cptr(cfg, i);
	if (k->flags & CF_SECRET) {
		snprintf(buf, len, MASK);
		return;
	}
	switch (k->type) {
	case CT_INT:
		snprintf(buf, len, "%d", *(const int *)src);
		break;
	case CT_BOOL:
		snprintf(buf, len, "%d", *(const bool *)src ? 1 : 0);
		break;
	case CT_TIME:
		format_time(*(const int64_t *)src, buf, len);
		break;
	case CT_SIZE:
		snprintf(buf, len, "%" PRId64, *(const int64_t *)src);
		break;
	case CT_ENUM: {
		const struct enum_value *ev = enum_values_for(k->name);
		int v = *(const int *)src;
		for (; ev && ev->name; ev++) {
			if (!ev->refusal && ev->value == v) {
				snprintf(buf, len, "%s", ev->name);
				return;
			}
		}
		snprintf(buf, len, "%d", v);
		break;
	}
	case CT_STRING: {
		const char *s = *(char *const *)src;
		snprintf(buf, len, "%s", s ? s : "");
		break;
	}
	}
}

bool config_key_set(struct config *cfg, size_t i, const char *value, char *err, size_t errlen)
{
	char msg[384];
	if (!cfg || i >= N_KEYS || !value) {
		fmt_msg(err, errlen, "no such key");
		return false;
	}
	if (!key_parse_set(cfg, i, value, msg, sizeof(msg))) {
		fmt_msg(err, errlen, "key \"%s\": %s", key_table[i].name, msg);
		return false;
	}
	return true;
}

bool config_key_equal(const struct config *a, const struct config *b, size_t i)
{
	if (i >= N_KEYS)
		return true;
	const void *pa = field_cptr(a, i), *pb = field_cptr(b, i);
	switch (key_table[i].type) {
	case CT_INT:
	case CT_ENUM:
		return *(const int *)pa == *(const int *)pb;
	case CT_BOOL:
		return *(const bool *)pa == *(const bool *)pb;
	case CT_TIME:
	case CT_SIZE:
		return *(const int64_t *)pa == *(const int64_t *)pb;
	case CT_STRING: {
		const char *sa = *(char *const *)pa, *sb = *(char *const *)pb;
		return strcmp(sa ? sa : "", sb ? sb : "") == 0;
	}
	}
	return true;
}

const char *pool_mode_name(int mode)
{
	switch (mode) {
	case POOL_SESSION:
		return "session";
	case POOL_TRANSACTION:
		return "transaction";
	case POOL_STATEMENT:
		return "statement";
	default:
		return "unknown";
	}
}

const char *auth_type_name(int type)
{
	switch (type) {
	case AUTH_SCRAM:
		return "scram-sha-256";
	case AUTH_MD5:
		return "md5";
	case AUTH_PLAIN:
		return "plain";
	case AUTH_TRUST:
		return "trust";
	case AUTH_CERT:
		return "cert";
	case AUTH_HBA:
		return "hba";
	default:
		return "unknown";
	}
}

/* ---------------------------------------------------------------------
 * Freeing
 */

static void db_def_clear(struct db_def *db)
{
	free(db->name);
	for (size_t i = 0; db->keywords && db->keywords[i]; i++) {
		free(db->keywords[i]);
		/* libpq keywords such as sslpassword may be secret: wipe every value */
		free_secret(db->values[i]);
	}
	free(db->keywords);
	free(db->values);
	free(db->dbname);
	free(db->forced_user);
	free(db->connect_query);
	free_secret(db->password);
	memset(db, 0, sizeof(*db));
}

static void auth_entry_clear(struct auth_entry *a)
{
	free(a->user);
	free_secret(a->secret);
	a->user = a->secret = NULL;
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < N_KEYS; i++) {
		if (key_table[i].type != CT_STRING)
			continue;
		char **sp = field_ptr(cfg, i);
		if (key_table[i].flags & CF_SECRET)
			free_secret(*sp);
		else
			free(*sp);
	}
	for (size_t i = 0; i < cfg->n_dbs; i++)
		db_def_clear(&cfg->dbs[i]);
	free(cfg->dbs);
	for (size_t i = 0; i < cfg->n_users; i++)
		free(cfg->users[i].name);
	free(cfg->users);
	for (size_t i = 0; i < cfg->n_auth; i++)
		auth_entry_clear(&cfg->auth[i]);
	free(cfg->auth);
	for (size_t i = 0; i < cfg->n_warnings; i++)
		free(cfg->warnings[i]);
	free(cfg->warnings);
	free(cfg->path);
	SSL_CTX_free(cfg->client_tls);
	hba_free(cfg->hba);
	free(cfg);
}

/* ---------------------------------------------------------------------
 * Lookups
 */

static bool same_str(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static bool same_strv(char *const *a, char *const *b)
{
	size_t i = 0;
	for (; a && b && a[i] && b[i]; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return (!a || !a[i]) && (!b || !b[i]);
}

bool config_same_server_tls(const struct config *a, const struct config *b)
{
	return same_str(a->server_tls_sslmode, b->server_tls_sslmode) &&
	       same_str(a->server_tls_ca_file, b->server_tls_ca_file) &&
	       same_str(a->server_tls_cert_file, b->server_tls_cert_file) &&
	       same_str(a->server_tls_key_file, b->server_tls_key_file) &&
	       same_str(a->server_tls_protocols, b->server_tls_protocols);
}

bool config_db_same_upstream(const struct db_def *a, const struct db_def *b)
{
	return same_strv(a->keywords, b->keywords) && same_strv(a->values, b->values) &&
	       same_str(a->dbname, b->dbname) && same_str(a->forced_user, b->forced_user) &&
	       same_str(a->password, b->password) && same_str(a->connect_query, b->connect_query);
}

const struct db_def *config_find_db(const struct config *cfg, const char *name)
{
	const struct db_def *fallback = NULL;
	if (!cfg || !name)
		return NULL;
	for (size_t i = 0; i < cfg->n_dbs; i++) {
		if (strcmp(cfg->dbs[i].name, name) == 0)
			return &cfg->dbs[i];
		if (strcmp(cfg->dbs[i].name, "*") == 0)
			fallback = &cfg->dbs[i];
	}
	return fallback;
}

const char *config_server_password(const struct config *cfg, const struct db_def *def,
				   const char *server_user)
{
	if (def->password)
		return def->password;
	const struct auth_entry *a = config_find_auth(cfg, server_user);
	bool plain = a && a->secret && strncmp(a->secret, "md5", 3) != 0 &&
		     strncmp(a->secret, "SCRAM-SHA-256$", 14) != 0;
	return plain ? a->secret : NULL;
}

const struct user_def *config_find_user(const struct config *cfg, const char *name)
{
	if (!cfg || !name)
		return NULL;
	for (size_t i = 0; i < cfg->n_users; i++)
		if (strcmp(cfg->users[i].name, name) == 0)
			return &cfg->users[i];
	return NULL;
}

static int auth_cmp(const void *a, const void *b)
{
	return strcmp(((const struct auth_entry *)a)->user, ((const struct auth_entry *)b)->user);
}

const struct auth_entry *config_find_auth(const struct config *cfg, const char *user)
{
	if (!cfg || !user || cfg->n_auth == 0)
		return NULL;
	struct auth_entry key = {.user = (char *)user, .secret = NULL};
	return bsearch(&key, cfg->auth, cfg->n_auth, sizeof(key), auth_cmp);
}

/* ---------------------------------------------------------------------
 * key=value lists ([databases], [users], DATABASE_URL)
 */

struct kvlist {
	char **keys;
	char **vals;
	size_t n, cap;
};

static void kv_free(struct kvlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->keys[i]);
		free_secret(l->vals[i]);
	}
	free(l->keys);
	free(l->vals);
	memset(l, 0, sizeof(*l));
}

/* Set key (replacing an earlier one: last wins, as in libpq); takes k and v. */
static bool kv_put(struct kvlist *l, char *k, char *v)
{
	if (!k || !v)
		goto fail;
	for (size_t i = 0; i < l->n; i++) {
		if (strcmp(l->keys[i], k) == 0) {
			free(k);
			free_secret(l->vals[i]);
			l->vals[i] = v;
			return true;
		}
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		char **nk = realloc(l->keys, cap * sizeof(*nk));
		if (!nk)
			goto fail;
		l->keys = nk;
		char **nv = realloc(l->vals, cap * sizeof(*nv));
		if (!nv)
			goto fail;
		l->vals = nv;
		l->cap = cap;
	}
	l->keys[l->n] = k;
	l->vals[l->n] = v;
	l->n++;
	return true;
fail:
	free(k);
	free_secret(v);
	return false;
}

static bool libpq_knows(const PQconninfoOption *known, const char *key)
{
	for (const PQconninfoOption *o = known; o && o->keyword; o++)
		if (strcmp(o->keyword, key) == 0)
			return true;
	return false;
}

/*
 * Split a libpq conninfo string ("host=a port='5432' options='-c x=1'") the
 * way libpq does: spaces around '=', single quotes, backslash escapes. Keys
 * are folded to lower case. Messages quote a token only if it is a known
 * keyword, since a stray token may be a password.
 */
static bool conninfo_split(const char *s, const PQconninfoOption *known, struct kvlist *out,
			   char *msg, size_t len)
{
	const char *p = s;
	size_t cap = strlen(s) + 1;
	while (*p) {
		while (isspace((unsigned char)*p))
			p++;
		if (!*p)
			break;
		const char *k = p;
		while (*p && *p != '=' && !isspace((unsigned char)*p))
			p++;
		size_t klen = (size_t)(p - k);
		while (isspace((unsigned char)*p))
			p++;
		if (klen == 0)
			return fmt_msg(msg, len, "connection string has \"=\" without a key");
		char *key = dup_n(k, klen);
		if (!key)
			return fmt_msg(msg, len, "out of memory");
		for (char *c = key; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		if (*p != '=') {
			bool show = libpq_knows(known, key) || strcmp(key, "pool_size") == 0;
			if (show)
				fmt_msg(msg, len, "missing \"=\" after \"%s\" in connection string",
					key);
			else
				fmt_msg(msg, len, "connection string is not a list of key=value");
			free(key);
			return false;
		}
		p++;
		while (isspace((unsigned char)*p))
			p++;
		char *val = malloc(cap), *w = val;
		if (!val) {
			free(key);
			return fmt_msg(msg, len, "out of memory");
		}
		if (*p == '\'') {
			p++;
			for (;;) {
				if (!*p) {
					*w = '\0';
					free(key);
					free_secret(val);
					return fmt_msg(
						msg, len,
						"unterminated quoted value in connection string");
				}
				if (*p == '\\' && p[1]) {
					*w++ = p[1];
					p += 2;
				} else if (*p == '\'') {
					p++;
					break;
				} else {
					*w++ = *p++;
				}
			}
		} else {
			while (*p && !isspace((unsigned char)*p)) {
				if (*p == '\\' && p[1])
					p++;
				*w++ = *p++;
			}
		}
		*w = '\0';
		if (!kv_put(out, key, val))
			return fmt_msg(msg, len, "out of memory");
	}
	return true;
}

static bool is_url(const char *s)
{
	return strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode s[0..n) into a new string; NULL on a bad escape or no memory. */
static char *pct_decode(const char *s, size_t n)
{
	char *d = malloc(n + 1), *w = d;
	if (!d)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%') {
			int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
			int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
				*w = '\0';
				free_secret(d);
				return NULL;
			}
			*w++ = (char)(hi * 16 + lo);
			i += 2;
		} else {
			*w++ = s[i];
		}
	}
	*w = '\0';
	return d;
}

/*
 * Turn libpq's error text into one that cannot leak a secret: drop the
 * trailing newline and replace every quoted fragment that is not a libpq
 * keyword or a single character with "****" (libpq quotes the whole URI in
 * some messages).
 */
static void sanitize_libpq_error(const char *in, const PQconninfoOption *known, char *out,
				 size_t len)
{
	size_t o = 0;
	if (len == 0)
		return;
	for (const char *p = in; p && *p && o + 1 < len;) {
		if (*p == '"') {
			const char *end = strchr(p + 1, '"');
			if (!end)
				end = p + strlen(p);
			size_t n = (size_t)(end - (p + 1));
			char frag[64];
			bool keep = n <= 1;
			if (!keep && n < sizeof(frag)) {
				memcpy(frag, p + 1, n);
				frag[n] = '\0';
				keep = libpq_knows(known, frag);
			}
			int w = keep ? snprintf(out + o, len - o, "\"%.*s\"", (int)n, p + 1)
				     : snprintf(out + o, len - o, "\"" MASK "\"");
			o += (size_t)w;
			if (o >= len)
				o = len - 1;
			p = *end ? end + 1 : end;
			continue;
		}
		out[o++] = (*p == '\n') ? ' ' : *p;
		p++;
	}
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
}

/*
 * postgres:// URL: take the query parameters libpq does not know (pool_size,
 * pool_mode, datestyle, ...) into out, hand the rest to PQconninfoParse and
 * add every option it returns.
 */
/* Free what PQconninfoParse returned, wiping values first: they may hold passwords. */
static void conninfo_free_wiped(PQconninfoOption *opts, char *pqerr)
{
	if (opts) {
		for (PQconninfoOption *o = opts; o->keyword; o++)
			if (o->val)
				explicit_bzero(o->val, strlen(o->val));
		PQconninfoFree(opts);
	}
	if (pqerr)
		PQfreemem(pqerr);
}

static bool url_split(const char *url, const PQconninfoOption *known, struct kvlist *out, char *msg,
		      size_t len)
{
	bool ok = false;
	char *rebuilt = malloc(strlen(url) + 2);
	PQconninfoOption *opts = NULL;
	char *pqerr = NULL;
	if (!rebuilt)
		return fmt_msg(msg, len, "out of memory");

	/* Find the query as libpq does: userinfo ends at the first '@' before any '/'. */
	const char *p = strstr(url, "://") + 3;
	const char *q = p;
	while (*q && *q != '@' && *q != '/')
		q++;
	const char *host = (*q == '@') ? q + 1 : p;
	const char *query = strchr(host, '?');
	size_t base_len = query ? (size_t)(query - url) : strlen(url);
	memcpy(rebuilt, url, base_len);
	size_t w = base_len;
	bool first = true;

	for (const char *param = query ? query + 1 : NULL; param && *param;) {
		const char *amp = strchr(param, '&');
		size_t plen = amp ? (size_t)(amp - param) : strlen(param);
		const char *eq = memchr(param, '=', plen);
		char *key = pct_decode(param, eq ? (size_t)(eq - param) : plen);
		if (!key) {
			fmt_msg(msg, len, "invalid percent-encoding in URL query parameter");
			goto out;
		}
		if (eq && !libpq_knows(known, key) &&
		    !memchr(eq + 1, '=', plen - (size_t)(eq + 1 - param))) {
			char *val = pct_decode(eq + 1, plen - (size_t)(eq + 1 - param));
			if (!val) {
				free(key);
				fmt_msg(msg, len,
					"invalid percent-encoding in URL query parameter");
				goto out;
			}
			if (!kv_put(out, key, val)) {
				fmt_msg(msg, len, "out of memory");
				goto out;
			}
		} else { /* libpq's to judge */
			free(key);
			rebuilt[w++] = first ? '?' : '&';
			memcpy(rebuilt + w, param, plen);
			w += plen;
			first = false;
		}
		param = amp ? amp + 1 : NULL;
	}
	rebuilt[w] = '\0';

	opts = PQconninfoParse(rebuilt, &pqerr);
	if (!opts) {
		char clean[256];
		sanitize_libpq_error(pqerr ? pqerr : "out of memory", known, clean, sizeof(clean));
		fmt_msg(msg, len, "%s", clean);
		goto out;
	}
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (!o->val)
			continue;
		if (!kv_put(out, strdup(o->keyword), strdup(o->val))) {
			fmt_msg(msg, len, "out of memory");
			goto out;
		}
	}
	ok = true;
out:
	conninfo_free_wiped(opts, pqerr);
	explicit_bzero(rebuilt, strlen(url) + 2);
	free(rebuilt);
	return ok;
}

/* Append "-c name=value" to a libpq options string, escaping as the server splits it. */
static bool options_append(char **opts, const char *name, const char *value)
{
	size_t old = *opts ? strlen(*opts) : 0;
	size_t need = old + 1 + 3 + strlen(name) + 1 + 2 * strlen(value) + 1;
	char *s = realloc(*opts, need);
	if (!s)
		return false;
	if (!*opts)
		s[0] = '\0';
	*opts = s;
	char *w = s + old;
	if (old)
		*w++ = ' ';
	w += sprintf(w, "-c %s=", name);
	for (const char *v = value; *v; v++) {
		if (*v == '\\' || isspace((unsigned char)*v))
			*w++ = '\\';
		*w++ = *v;
	}
	*w = '\0';
	return true;
}

static bool str_in(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

/* Integer option in a [databases]/[users] entry, with the bounds of global key gkey. */
static bool entry_int(const char *opt, const char *gkey, const char *v, bool quiet, int *out,
		      char *msg, size_t len)
{
	int k = config_key_lookup(gkey);
	BERTH_ASSERT(k >= 0);
	int64_t n = 0;
	char why[256];
	if (!parse_int(v, quiet ? MASK : v, key_table[k].min, key_table[k].max, &n, why,
		       sizeof(why)))
		return fmt_msg(msg, len, "%s: %s", opt, why);
	*out = (int)n;
	return true;
}

/* A per-entry time: as the global key, or -1 for "not set" (PgBouncer's spelling). */
static bool entry_time(const char *opt, const char *v, bool quiet, int64_t *out, char *msg,
		       size_t len)
{
	if (strcmp(v, "-1") == 0) {
		*out = -1;
		return true;
	}
	char why[256];
	if (!parse_time(v, quiet ? MASK : v, out, why, sizeof(why)))
		return fmt_msg(msg, len, "%s: %s", opt, why);
	return true;
}

static bool entry_load_balance(const char *v, bool quiet, int *out, char *msg, size_t len)
{
	if (strcmp(v, "disable") == 0)
		*out = LB_DISABLE;
	else if (strcmp(v, "round-robin") == 0)
		*out = LB_ROUND_ROBIN;
	else
		return fmt_msg(msg, len,
			       "load_balance_hosts: \"%s\" is not one of disable, round-robin",
			       quiet ? MASK : v);
	return true;
}

static bool entry_pool_mode(const char *v, bool quiet, int *out, char *msg, size_t len)
{
	char why[256];
	if (!parse_enum("pool_mode", v, quiet ? MASK : v, out, why, sizeof(why)))
		return fmt_msg(msg, len, "pool_mode: %s", why);
	return true;
}

/* Quote a value for a libpq conninfo string. */
static bool conninfo_append(char **buf, size_t *blen, const char *k, const char *v)
{
	size_t need = *blen + strlen(k) + 2 * strlen(v) + 5;
	char *s = realloc(*buf, need);
	if (!s)
		return false;
	*buf = s;
	char *w = s + *blen;
	w += sprintf(w, "%s%s='", *blen ? " " : "", k);
	for (; *v; v++) {
		if (*v == '\'' || *v == '\\')
			*w++ = '\\';
		*w++ = *v;
	}
	*w++ = '\'';
	*w = '\0';
	*blen = (size_t)(w - s);
	return true;
}

/*
 * Query parameters of a Prisma connection URL that configure Prisma itself
 * (its own pool, statement cache, schema) rather than the connection: the
 * DATABASE_URL a Prisma app used is the one its berth sidecar gets, so they
 * are dropped with a warning instead of failing the start. (Prisma's
 * connect_timeout, sslmode, sslcert, sslrootcert, sslpassword and
 * application_name are libpq's too and keep their meaning.)
 */
static const char *const prisma_url_params[] = {
	"schema",	 "connection_limit",	 "pool_timeout",
	"socket_timeout", "pgbouncer",		 "statement_cache_size",
	"sslaccept",	 "sslidentity",		 "max_connection_lifetime",
	"max_idle_connection_lifetime",
};

/* Comma-separated entries in a libpq list value; 0 when unset or empty. */
static size_t list_len(const char *v)
{
	if (!v || !*v)
		return 0;
	size_t n = 1;
	for (; *v; v++)
		n += *v == ',';
	return n;
}

/*
 * libpq pairs the n-th host with the n-th port only at connect time; a
 * mismatch there would leave the database down for good. Refuse it here,
 * where the file and line can be named (PgBouncer: "invalid number of ports").
 */
static bool hosts_match_ports(const PQconninfoOption *opts, char *msg, size_t len)
{
	size_t hosts = 0, addrs = 0, ports = 0;
	for (const PQconninfoOption *o = opts; o && o->keyword; o++) {
		if (strcmp(o->keyword, "host") == 0)
			hosts = list_len(o->val);
		else if (strcmp(o->keyword, "hostaddr") == 0)
			addrs = list_len(o->val);
		else if (strcmp(o->keyword, "port") == 0)
			ports = list_len(o->val);
	}
	if (hosts && addrs && hosts != addrs)
		return fmt_msg(msg, len, "invalid number of hosts: %zu host names for %zu hostaddr "
					 "values",
			       hosts, addrs);
	size_t n = hosts > addrs ? hosts : addrs;
	if (n == 0)
		n = 1; /* libpq's default host */
	if (ports > 1 && ports != n)
		return fmt_msg(msg, len, "invalid number of ports: %zu port numbers for %zu host%s "
					 "(give one port for all, or one per host)",
			       ports, n, n == 1 ? "" : "s");
	return true;
}

/*
 * Build a db_def (everything but name) from a [databases] value or
 * DATABASE_URL. quiet: messages never quote values (the environment's URL).
 * ignored: the names of Prisma's URL parameters dropped, comma-separated.
 */
static bool db_parse_value(const char *value, const PQconninfoOption *known, bool quiet,
			   struct db_def *db, char *ignored, size_t ignored_len, char *msg,
			   size_t len)
{
	ignored[0] = '\0';
	struct kvlist kv = {0}, pq = {0};
	char *datestyle = NULL, *timezone = NULL, *options = NULL, *check = NULL, *pqerr = NULL;
	size_t check_len = 0;
	PQconninfoOption *parsed = NULL;
	bool ok = false;

	db->pool_size = db->min_pool_size = db->reserve_pool_size = -1;
	db->pool_mode = db->max_db_connections = db->max_db_client_connections = -1;
	db->server_lifetime = db->query_wait_timeout = -1;

	if (is_url(value) ? !url_split(value, known, &kv, msg, len)
			  : !conninfo_split(value, known, &kv, msg, len))
		goto out;

	for (size_t i = 0; i < kv.n; i++) {
		const char *k = kv.keys[i], *v = kv.vals[i];
		char **own = NULL;
		if (strcmp(k, "pool_size") == 0) {
			if (!entry_int(k, "default_pool_size", v, quiet, &db->pool_size, msg, len))
				goto out;
		} else if (strcmp(k, "min_pool_size") == 0) {
			if (!entry_int(k, "min_pool_size", v, quiet, &db->min_pool_size, msg, len))
				goto out;
		} else if (strcmp(k, "reserve_pool") == 0 || strcmp(k, "reserve_pool_size") == 0) {
			if (!entry_int(k, "reserve_pool_size", v, quiet, &db->reserve_pool_size,
				       msg, len))
				goto out;
		} else if (strcmp(k, "max_db_connections") == 0) {
			if (!entry_int(k, k, v, quiet, &db->max_db_connections, msg, len))
				goto out;
		} else if (strcmp(k, "max_db_client_connections") == 0) {
			if (!entry_int(k, k, v, quiet, &db->max_db_client_connections, msg, len))
				goto out;
		} else if (strcmp(k, "pool_mode") == 0) {
			if (!entry_pool_mode(v, quiet, &db->pool_mode, msg, len))
				goto out;
		} else if (strcmp(k, "server_lifetime") == 0) {
			if (!entry_time(k, v, quiet, &db->server_lifetime, msg, len))
				goto out;
		} else if (strcmp(k, "query_wait_timeout") == 0) {
			if (!entry_time(k, v, quiet, &db->query_wait_timeout, msg, len))
				goto out;
		} else if (strcmp(k, "load_balance_hosts") == 0 && !libpq_knows(known, k)) {
			/* libpq 16 knows it too (disable|random): then it is libpq's */
			if (!entry_load_balance(v, quiet, &db->load_balance_hosts, msg, len))
				goto out;
		} else if (strcmp(k, "connect_query") == 0) {
			own = &db->connect_query;
		} else if (strcmp(k, "user") == 0) {
			own = &db->forced_user;
		} else if (strcmp(k, "password") == 0) {
			own = &db->password;
		} else if (strcmp(k, "dbname") == 0) {
			own = &db->dbname;
		} else if (strcmp(k, "datestyle") == 0) {
			own = &datestyle;
		} else if (strcmp(k, "timezone") == 0) {
			own = &timezone;
		} else if (libpq_knows(known, k)) {
			if (!kv_put(&pq, strdup(k), strdup(v))) {
				fmt_msg(msg, len, "out of memory");
				goto out;
			}
		} else if (str_in(k, compat_db_options, ARRAY_SIZE(compat_db_options))) {
			fmt_msg(msg, len, "PgBouncer option \"%s\" is not supported by berth", k);
			goto out;
		} else if (is_url(value) &&
			   str_in(k, prisma_url_params, ARRAY_SIZE(prisma_url_params))) {
			size_t used = strlen(ignored);
			snprintf(ignored + used, ignored_len - used, "%s%s", used ? ", " : "", k);
			continue;
		} else {
			fmt_msg(msg, len, "unknown connection option \"%s\"", k);
			goto out;
		}
		if (own) {
			free_secret(*own);
			*own = strdup(v);
			if (!*own) {
				fmt_msg(msg, len, "out of memory");
				goto out;
			}
		}
	}

	/* datestyle and timezone are not libpq keywords: they travel in options */
	if (datestyle || timezone) {
		for (size_t i = 0; i < pq.n; i++)
			if (strcmp(pq.keys[i], "options") == 0) {
				options = pq.vals[i];
				pq.vals[i] = NULL;
			}
		if ((datestyle && !options_append(&options, "datestyle", datestyle)) ||
		    (timezone && !options_append(&options, "timezone", timezone))) {
			fmt_msg(msg, len, "out of memory");
			goto out;
		}
		char *moved = options;
		options = NULL; /* kv_put owns it now, even on failure */
		if (!kv_put(&pq, strdup("options"), moved)) {
			fmt_msg(msg, len, "out of memory");
			goto out;
		}
	}

	/* Let libpq itself judge the libpq part. */
	for (size_t i = 0; i < pq.n; i++) {
		if (!conninfo_append(&check, &check_len, pq.keys[i], pq.vals[i])) {
			fmt_msg(msg, len, "out of memory");
			goto out;
		}
	}
	parsed = PQconninfoParse(check ? check : "", &pqerr);
	if (!parsed) {
		char clean[256];
		sanitize_libpq_error(pqerr ? pqerr : "out of memory", known, clean, sizeof(clean));
		fmt_msg(msg, len, "%s", clean);
		goto out;
	}

	if (!hosts_match_ports(parsed, msg, len))
		goto out;

	db->keywords = calloc(pq.n + 1, sizeof(char *));
	db->values = calloc(pq.n + 1, sizeof(char *));
	if (!db->keywords || !db->values) {
		fmt_msg(msg, len, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < pq.n; i++) { /* move, keep order */
		db->keywords[i] = pq.keys[i];
		db->values[i] = pq.vals[i];
	}
	pq.n = 0;
	ok = true;
out:
	conninfo_free_wiped(parsed, pqerr);
	if (check)
		free_secret(check);
	free(datestyle);
	free(timezone);
	free_secret(options);
	kv_free(&kv);
	kv_free(&pq);
	return ok;
}

/* The [users] timeout named k, or NULL. */
static int64_t *user_time_option(struct user_def *u, const char *k)
{
	if (strcmp(k, "query_timeout") == 0)
		return &u->query_timeout;
	if (strcmp(k, "query_wait_timeout") == 0)
		return &u->query_wait_timeout;
	if (strcmp(k, "idle_transaction_timeout") == 0)
		return &u->idle_transaction_timeout;
	if (strcmp(k, "transaction_timeout") == 0)
		return &u->transaction_timeout;
	if (strcmp(k, "client_idle_timeout") == 0)
		return &u->client_idle_timeout;
	return NULL;
}

static bool user_parse_value(const char *value, const PQconninfoOption *known, struct user_def *u,
			     char *msg, size_t len)
{
	struct kvlist kv = {0};
	bool ok = false;
	u->pool_mode = u->pool_size = u->max_user_connections = u->max_user_client_connections = -1;
	u->reserve_pool_size = -1;
	u->query_timeout = u->query_wait_timeout = u->idle_transaction_timeout = -1;
	u->transaction_timeout = u->client_idle_timeout = -1;
	if (!conninfo_split(value, known, &kv, msg, len))
		goto out;
	for (size_t i = 0; i < kv.n; i++) {
		const char *k = kv.keys[i], *v = kv.vals[i];
		if (strcmp(k, "pool_mode") == 0) {
			if (!entry_pool_mode(v, false, &u->pool_mode, msg, len))
				goto out;
		} else if (strcmp(k, "pool_size") == 0) {
			if (!entry_int(k, "default_pool_size", v, false, &u->pool_size, msg, len))
				goto out;
		} else if (strcmp(k, "max_user_connections") == 0) {
			if (!entry_int(k, k, v, false, &u->max_user_connections, msg, len))
				goto out;
		} else if (strcmp(k, "max_user_client_connections") == 0) {
			if (!entry_int(k, k, v, false, &u->max_user_client_connections, msg, len))
				goto out;
		} else if (strcmp(k, "reserve_pool_size") == 0) {
			if (!entry_int(k, k, v, false, &u->reserve_pool_size, msg, len))
				goto out;
		} else if (user_time_option(u, k)) {
			if (!entry_time(k, v, false, user_time_option(u, k), msg, len))
				goto out;
		} else {
			fmt_msg(msg, len,
				"unknown option \"%s\" (use pool_mode, pool_size, reserve_pool_size, "
				"max_user_connections, max_user_client_connections, query_timeout, "
				"query_wait_timeout, idle_transaction_timeout, transaction_timeout, "
				"client_idle_timeout)",
				k);
			goto out;
		}
	}
	ok = true;
out:
	kv_free(&kv);
	return ok;
}

/* ---------------------------------------------------------------------
 * Loading
 */

enum section { SEC_NONE = 0, SEC_MAIN, SEC_DATABASES, SEC_USERS };

struct loader {
	struct config *cfg;
	struct config_error *err;
	PQconninfoOption *known; /* every libpq keyword, from PQconninfoParse("") */
	enum section section;
	bool url_credentials; /* DATABASE_URL added an auth entry */
	const char *file;     /* position for messages */
	int line;
	int key_line[N_KEYS]; /* where each main-section key was set: > 0 its line, -1 the environment */
};

static bool load_fail(struct loader *ld, const char *fmt, ...) BERTH_PRINTF(2, 3);
static bool load_fail(struct loader *ld, const char *fmt, ...)
{
	char msg[448];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (ld->file)
		snprintf(ld->err->text, sizeof(ld->err->text), "%s:%d: %s", ld->file, ld->line,
			 msg);
	else
		snprintf(ld->err->text, sizeof(ld->err->text), "%s", msg);
	return false;
}

static bool add_warning(struct loader *ld, const char *fmt, ...) BERTH_PRINTF(2, 3);
static bool add_warning(struct loader *ld, const char *fmt, ...)
{
	char msg[448], text[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (ld->file)
		snprintf(text, sizeof(text), "%s:%d: %s", ld->file, ld->line, msg);
	else /* the environment: the message names the variable */
		snprintf(text, sizeof(text), "%s", msg);
	char **w = realloc(ld->cfg->warnings, (ld->cfg->n_warnings + 1) * sizeof(*w));
	if (!w)
		return load_fail(ld, "out of memory");
	ld->cfg->warnings = w;
	if (!(w[ld->cfg->n_warnings] = strdup(text)))
		return load_fail(ld, "out of memory");
	ld->cfg->n_warnings++;
	return true;
}

/* Whole file into memory, NUL-terminated; NULs inside are refused by callers. */
static bool read_whole(const char *path, char **out, size_t *outlen, char *msg, size_t len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0;
	if (!f)
		return fmt_msg(msg, len, "cannot read \"%s\": %s", path, strerror(errno));
	for (;;) {
		if (cap - n < 4096) {
			cap = cap ? cap * 2 : 8192;
			if (cap > MAX_FILE_BYTES + 8192) {
				fclose(f);
				free_secret(buf);
				return fmt_msg(msg, len, "\"%s\" is larger than %u bytes", path,
					       MAX_FILE_BYTES);
			}
			char *nb = realloc(buf, cap);
			if (!nb) {
				fclose(f);
				free_secret(buf);
				return fmt_msg(msg, len, "out of memory reading \"%s\"", path);
			}
			buf = nb;
		}
		size_t r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0)
			break;
	}
	bool bad = ferror(f);
	int e = errno;
	fclose(f);
	if (bad) {
		free_secret(buf);
		return fmt_msg(msg, len, "cannot read \"%s\": %s", path, strerror(e));
	}
	buf[n] = '\0';
	*out = buf;
	*outlen = n;
	return true;
}

static bool main_key(struct loader *ld, const char *key, const char *value)
{
	int i = config_key_lookup(key);
	char msg[384];
	if (i < 0) {
		for (size_t c = 0; c < ARRAY_SIZE(compat_main_keys); c++) {
			const struct compat_key *ck = &compat_main_keys[c];
			if (strcasecmp(ck->name, key) != 0)
				continue;
			if (value[0] == '\0')
				return true; /* "not set" in PgBouncer too */
			bool harmless = false;
			if (ck->harmless && strcmp(ck->harmless, "*") == 0) {
				harmless = true;
			} else if (ck->harmless) {
				size_t vl = strlen(value);
				for (const char *h = ck->harmless; *h;) {
					size_t hl = strcspn(h, "|");
					if (hl == vl && strncasecmp(h, value, hl) == 0)
						harmless = true;
					h += hl + (h[hl] == '|');
				}
			}
			if (harmless)
				return add_warning(ld, "PgBouncer setting \"%s\" is ignored: %s",
						   ck->name, ck->why);
			return load_fail(ld, "PgBouncer setting \"%s\" is not supported: %s",
					 ck->name, ck->why);
		}
		return load_fail(ld, "unknown key \"%s\" in the main section", key);
	}
	if (!key_parse_set(ld->cfg, (size_t)i, value, msg, sizeof(msg)))
		return load_fail(ld, "key \"%s\": %s", key, msg);
	ld->key_line[i] = ld->line;
	return true;
}

static bool add_db(struct loader *ld, struct db_def *db)
{
	struct config *cfg = ld->cfg;
	for (size_t i = 0; i < cfg->n_dbs; i++) {
		if (strcmp(cfg->dbs[i].name, db->name) == 0) { /* last wins */
			db_def_clear(&cfg->dbs[i]);
			cfg->dbs[i] = *db;
			return true;
		}
	}
	struct db_def *n = realloc(cfg->dbs, (cfg->n_dbs + 1) * sizeof(*n));
	if (!n) {
		db_def_clear(db);
		return load_fail(ld, "out of memory");
	}
	cfg->dbs = n;
	cfg->dbs[cfg->n_dbs++] = *db;
	return true;
}

static bool database_entry(struct loader *ld, const char *name, const char *value)
{
	struct db_def db = {0};
	char msg[384];
	if (strcmp(name, "berth") == 0)
		return load_fail(ld,
				 "database \"berth\": the name is reserved for the admin console");
	char ignored[256];
	if (!db_parse_value(value, ld->known, false, &db, ignored, sizeof(ignored), msg,
			    sizeof(msg))) {
		db_def_clear(&db);
		return load_fail(ld, "database \"%s\": %s", name, msg);
	}
	if (ignored[0] && !add_warning(ld, "database \"%s\": Prisma's URL parameters are ignored "
					   "(they configure Prisma, not the connection): %s",
				       name, ignored)) {
		db_def_clear(&db);
		return false;
	}
	db.name = strdup(name);
	if (!db.dbname && strcmp(name, "*") != 0)
		db.dbname = strdup(name);
	if (!db.name || (!db.dbname && strcmp(name, "*") != 0)) {
		db_def_clear(&db);
		return load_fail(ld, "out of memory");
	}
	return add_db(ld, &db);
}

static bool user_entry(struct loader *ld, const char *name, const char *value)
{
	struct user_def u = {0};
	char msg[384];
	struct config *cfg = ld->cfg;
	if (!user_parse_value(value, ld->known, &u, msg, sizeof(msg)))
		return load_fail(ld, "user \"%s\": %s", name, msg);
	for (size_t i = 0; i < cfg->n_users; i++) {
		if (strcmp(cfg->users[i].name, name) == 0) { /* last wins */
			u.name = cfg->users[i].name;
			cfg->users[i] = u;
			return true;
		}
	}
	if (!(u.name = strdup(name)))
		return load_fail(ld, "out of memory");
	struct user_def *n = realloc(cfg->users, (cfg->n_users + 1) * sizeof(*n));
	if (!n) {
		free(u.name);
		return load_fail(ld, "out of memory");
	}
	cfg->users = n;
	cfg->users[cfg->n_users++] = u;
	return true;
}

static bool set_section(struct loader *ld, const char *name)
{
	if (strcasecmp(name, "berth") == 0 || strcasecmp(name, "pgbouncer") == 0)
		ld->section = SEC_MAIN;
	else if (strcasecmp(name, "databases") == 0)
		ld->section = SEC_DATABASES;
	else if (strcasecmp(name, "users") == 0)
		ld->section = SEC_USERS;
	else if (strcasecmp(name, "peers") == 0)
		return load_fail(
			ld, "section [peers] is not supported: berth does not support peering");
	else
		return load_fail(ld, "unknown section [%s]", name);
	return true;
}

static bool ini_file(struct loader *ld, const char *path, int depth);

/* One logical line (NUL-terminated, no newline). */
static bool ini_line(struct loader *ld, char *line, int depth)
{
	char *p = line;
	while (is_blank(*p))
		p++;
	if (*p == '\0' || *p == ';' || *p == '#')
		return true;

	if (strncmp(p, "%include", 8) == 0 && is_blank(p[8])) {
		char *inc = dup_trim(p + 8, strlen(p + 8));
		if (!inc)
			return load_fail(ld, "out of memory");
		bool ok;
		if (inc[0] == '\0')
			ok = load_fail(ld, "%%include needs a file name");
		else if (depth + 1 > MAX_INCLUDE_DEPTH)
			ok = load_fail(ld, "%%include nested more than %d deep", MAX_INCLUDE_DEPTH);
		else
			ok = ini_file(ld, inc, depth + 1);
		free(inc);
		return ok;
	}

	if (*p == '[') {
		char *close = strchr(p, ']');
		if (!close)
			return load_fail(ld, "syntax error: section header without \"]\"");
		char *name = dup_trim(p + 1, (size_t)(close - p - 1));
		if (!name)
			return load_fail(ld, "out of memory");
		bool ok = set_section(ld, name);
		free(name);
		return ok;
	}

	/* key: bare word of [A-Za-z0-9_.*-], or quoted ('x' or "x" with "" for ") */
	char *key;
	if (*p == '"' || *p == '\'') {
		char q = *p++;
		key = malloc(strlen(p) + 1);
		if (!key)
			return load_fail(ld, "out of memory");
		char *w = key;
		for (;;) {
			if (*p == '\0') {
				free(key);
				return load_fail(ld, "syntax error: unterminated quoted name");
			}
			if (*p == q && q == '"' && p[1] == '"') {
				*w++ = '"';
				p += 2;
			} else if (*p == q) {
				p++;
				break;
			} else {
				*w++ = *p++;
			}
		}
		*w = '\0';
		if (key[0] == '\0') {
			free(key);
			return load_fail(ld, "syntax error: empty name");
		}
	} else {
		char *k = p;
		while (isalnum((unsigned char)*p) || (*p && strchr("_.-*", *p)))
			p++;
		if (p == k)
			return load_fail(ld, "syntax error: expected key = value, a [section] or "
					     "%%include");
		key = dup_n(k, (size_t)(p - k));
		if (!key)
			return load_fail(ld, "out of memory");
	}
	while (is_blank(*p))
		p++;
	if (*p != '=') {
		free(key);
		return load_fail(ld, "syntax error: expected key = value");
	}
	char *value = dup_trim(p + 1, strlen(p + 1));
	if (!value) {
		free(key);
		return load_fail(ld, "out of memory");
	}

	bool ok;
	switch (ld->section) {
	case SEC_MAIN:
		ok = main_key(ld, key, value);
		break;
	case SEC_DATABASES:
		ok = database_entry(ld, key, value);
		break;
	case SEC_USERS:
		ok = user_entry(ld, key, value);
		break;
	default:
		ok = load_fail(ld, "key \"%s\" outside any section (start with [berth])", key);
		break;
	}
	free(key);
	free_secret(value);
	return ok;
}

/* Parse one INI file; the section carries into and out of %include, as in PgBouncer. */
static bool ini_file(struct loader *ld, const char *path, int depth)
{
	char *buf;
	size_t len;
	char msg[384];
	if (!read_whole(path, &buf, &len, msg, sizeof(msg))) {
		if (ld->file)
			return load_fail(ld, "%%include: %s", msg);
		return load_fail(ld, "config file: %s", msg);
	}
	const char *saved_file = ld->file;
	int saved_line = ld->line;
	bool ok = true;
	ld->file = path;
	ld->line = 0;
	for (char *p = buf; ok && p <= buf + len;) {
		char *nl = memchr(p, '\n', (size_t)(buf + len - p));
		char *end = nl ? nl : buf + len;
		ld->line++;
		if (memchr(p, '\0', (size_t)(end - p))) {
			ok = load_fail(ld, "NUL byte in file");
			break;
		}
		*end = '\0';
		ok = ini_line(ld, p, depth);
		if (!nl)
			break;
		p = nl + 1;
	}
	if (ok) {
		ld->file = saved_file;
		ld->line = saved_line;
	}
	free_secret(buf);
	return ok;
}

/* Read one double-quoted userlist field ("" stands for "); NULL on a syntax error. */
static char *auth_field(const char **pp)
{
	const char *p = *pp;
	if (*p != '"')
		return NULL;
	p++;
	char *out = malloc(strlen(p) + 1), *w = out;
	if (!out)
		return NULL;
	for (;;) {
		if (*p == '\0') {
			*w = '\0';
			free_secret(out);
			return NULL;
		}
		if (*p == '"' && p[1] == '"') {
			*w++ = '"';
			p += 2;
		} else if (*p == '"') {
			p++;
			break;
		} else {
			*w++ = *p++;
		}
	}
	*w = '\0';
	*pp = p;
	return out;
}

/* Skip a run of base64 characters; false if there is none. */
static bool skip_b64(const char **pp)
{
	const char *p = *pp;
	while (isalnum((unsigned char)*p) || *p == '+' || *p == '/' || *p == '=')
		p++;
	if (p == *pp)
		return false;
	*pp = p;
	return true;
}

/* SCRAM-SHA-256$<iterations>:<salt>$<storedkey>:<serverkey>, as PostgreSQL stores it. */
static bool scram_verifier_ok(const char *s)
{
	const char *p = s + strlen("SCRAM-SHA-256$");
	if (!isdigit((unsigned char)*p) || *p == '0')
		return false;
	while (isdigit((unsigned char)*p))
		p++;
	return *p++ == ':' && skip_b64(&p) && *p++ == '$' && skip_b64(&p) && *p++ == ':' &&
	       skip_b64(&p) && *p == '\0';
}

/* userlist.txt: "user" "secret" per line, the rest ignored; messages never quote a line. */
static bool load_auth_file(struct loader *ld, const char *path)
{
	char *buf;
	size_t len;
	char msg[384];
	bool ok = true;
	struct config *cfg = ld->cfg;
	if (!read_whole(path, &buf, &len, msg, sizeof(msg)))
		return load_fail(ld, "auth_file: %s", msg);
	ld->file = path;
	ld->line = 0;
	for (char *p = buf; ok && p <= buf + len;) {
		char *nl = memchr(p, '\n', (size_t)(buf + len - p));
		char *end = nl ? nl : buf + len;
		ld->line++;
		if (memchr(p, '\0', (size_t)(end - p))) {
			ok = load_fail(ld, "NUL byte in file");
			break;
		}
		*end = '\0';
		const char *q = p;
		p = nl ? nl + 1 : buf + len + 1;
		while (is_blank(*q))
			q++;
		if (*q == '\0' || *q == ';' || *q == '#')
			continue;
		char *user = auth_field(&q), *secret = NULL;
		if (user) {
			while (is_blank(*q))
				q++;
			secret = auth_field(&q);
		}
		if (!user || !secret) {
			free(user);
			ok = load_fail(ld,
				       "expected \"user\" \"password\" (double quotes, \"\" for a "
				       "quote inside)");
			break;
		}
		if (user[0] == '\0') {
			free(user);
			free_secret(secret);
			ok = load_fail(ld, "empty user name");
			break;
		}
		if (strncmp(secret, "SCRAM-SHA-256$", 14) == 0 && !scram_verifier_ok(secret)) {
			ok = load_fail(ld,
				       "malformed SCRAM-SHA-256 verifier for user \"%s\" (expected "
				       "SCRAM-SHA-256$<iterations>:<salt>$<storedkey>:<serverkey>)",
				       user);
			free(user);
			free_secret(secret);
			break;
		}
		struct auth_entry *n = realloc(cfg->auth, (cfg->n_auth + 1) * sizeof(*n));
		if (!n) {
			free(user);
			free_secret(secret);
			ok = load_fail(ld, "out of memory");
			break;
		}
		cfg->auth = n;
		cfg->auth[cfg->n_auth].user = user;
		cfg->auth[cfg->n_auth].secret = secret;
		cfg->n_auth++;
	}
	ld->file = NULL;
	free_secret(buf);
	return ok;
}

struct auth_seq {
	struct auth_entry e;
	size_t seq;
};

static int auth_seq_cmp(const void *a, const void *b)
{
	const struct auth_seq *x = a, *y = b;
	int c = strcmp(x->e.user, y->e.user);
	if (c)
		return c;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sort for bsearch; of duplicate users the later line wins. */
static bool auth_sort(struct loader *ld)
{
	struct config *cfg = ld->cfg;
	if (cfg->n_auth < 2)
		return true;
	struct auth_seq *tmp = calloc(cfg->n_auth, sizeof(*tmp));
	if (!tmp)
		return load_fail(ld, "out of memory");
	for (size_t i = 0; i < cfg->n_auth; i++) {
		tmp[i].e = cfg->auth[i];
		tmp[i].seq = i;
	}
	qsort(tmp, cfg->n_auth, sizeof(*tmp), auth_seq_cmp);
	size_t n = 0;
	for (size_t i = 0; i < cfg->n_auth; i++) {
		if (i + 1 < cfg->n_auth && strcmp(tmp[i].e.user, tmp[i + 1].e.user) == 0) {
			auth_entry_clear(&tmp[i].e);
			continue;
		}
		cfg->auth[n++] = tmp[i].e;
	}
	cfg->n_auth = n;
	free(tmp);
	return true;
}

static bool apply_env_keys(struct loader *ld, char *const *envp)
{
	for (size_t e = 0; envp && envp[e]; e++) {
		const char *s = envp[e];
		if (strncmp(s, "BERTH_", 6) != 0)
			continue;
		const char *eq = strchr(s, '=');
		if (!eq)
			continue;
		char name[128];
		size_t nlen = (size_t)(eq - (s + 6));
		if (nlen == 0 || nlen >= sizeof(name))
			continue;
		memcpy(name, s + 6, nlen);
		name[nlen] = '\0';
		int i = config_key_lookup(name);
		if (i < 0)
			continue; /* BERTH_BIN and friends belong to others */
		char *value = dup_trim(eq + 1, strlen(eq + 1));
		char msg[384];
		if (!value)
			return load_fail(ld, "out of memory");
		bool ok = key_parse_set(ld->cfg, (size_t)i, value, msg, sizeof(msg));
		free_secret(value);
		if (!ok)
			return load_fail(ld, "environment variable BERTH_%s: %s", name, msg);
		ld->key_line[i] = -1;
	}
	return true;
}

static bool apply_database_url(struct loader *ld, const char *url)
{
	struct config *cfg = ld->cfg;
	struct db_def db = {0};
	char msg[384];
	char ignored[256];
	if (!db_parse_value(url, ld->known, true, &db, ignored, sizeof(ignored), msg, sizeof(msg))) {
		db_def_clear(&db);
		return load_fail(ld, "environment variable DATABASE_URL: %s", msg);
	}
	if (ignored[0] && !add_warning(ld, "DATABASE_URL: Prisma's URL parameters are ignored "
					   "(they configure Prisma, not the connection): %s",
				       ignored)) {
		db_def_clear(&db);
		return false;
	}
	const char *name = db.dbname ? db.dbname : db.forced_user;
	if (!name || !name[0]) {
		db_def_clear(&db);
		return load_fail(ld, "environment variable DATABASE_URL: names neither a database "
				     "nor a user");
	}
	for (size_t i = 0; i < cfg->n_dbs; i++) {
		if (strcmp(cfg->dbs[i].name, name) == 0) { /* the file's entry stays */
			db_def_clear(&db);
			return true;
		}
	}
	db.name = strdup(name);
	if (!db.dbname)
		db.dbname = strdup(name);
	char *user = db.forced_user ? strdup(db.forced_user) : NULL;
	char *secret = db.password ? strdup(db.password) : NULL;
	if (!db.name || !db.dbname || (db.forced_user && !user) || (db.password && !secret)) {
		free(user);
		free_secret(secret);
		db_def_clear(&db);
		return load_fail(ld, "out of memory");
	}
	if (!add_db(ld, &db)) {
		free(user);
		free_secret(secret);
		return false;
	}
	if (!user || !secret) {
		free(user);
		free_secret(secret);
		return true;
	}
	for (size_t i = 0; i < cfg->n_auth; i++) {
		if (strcmp(cfg->auth[i].user, user) == 0) { /* auth_file has this user already */
			free(user);
			free_secret(secret);
			ld->url_credentials = true;
			return true;
		}
	}
	struct auth_entry *n = realloc(cfg->auth, (cfg->n_auth + 1) * sizeof(*n));
	if (!n) {
		free(user);
		free_secret(secret);
		return load_fail(ld, "out of memory");
	}
	cfg->auth = n;
	cfg->auth[cfg->n_auth].user = user;
	cfg->auth[cfg->n_auth].secret = secret;
	cfg->n_auth++;
	ld->url_credentials = true;
	return true;
}

static bool validate(struct loader *ld)
{
	struct config *cfg = ld->cfg;
	bool have_auth_file = cfg->auth_file && cfg->auth_file[0];
	if (cfg->auth_type == AUTH_CERT && cfg->client_tls_sslmode < TLS_VERIFY_CA)
		return load_fail(ld, "auth_type cert needs client_tls_sslmode verify-ca or verify-full "
				     "(and client_tls_ca_file): it logs clients in by their certificate");
	if (cfg->auth_type != AUTH_TRUST && cfg->auth_type != AUTH_CERT && !have_auth_file &&
	    !ld->url_credentials)
		return load_fail(ld,
				 "auth_type %s needs credentials: set auth_file, or give "
				 "DATABASE_URL a user and password (or use auth_type trust)",
				 auth_type_name(cfg->auth_type));
	if ((!cfg->listen_addr || !cfg->listen_addr[0]) &&
	    (!cfg->unix_socket_dir || !cfg->unix_socket_dir[0]))
		return load_fail(ld, "listen_addr and unix_socket_dir are both empty: berth would "
				     "accept no connections");
	return true;
}

/* The TLS context cfg's client_tls_* describe; NULL on failure (msg, *bad_key) or for disable. */
static SSL_CTX *client_tls_from(const struct config *cfg, const char **bad_key, char *msg,
				size_t len)
{
	*bad_key = NULL;
	if (cfg->client_tls_sslmode == TLS_DISABLE)
		return NULL;
	const struct client_tls_settings s = {
		.mode = cfg->client_tls_sslmode,
		.cert_file = cfg->client_tls_cert_file,
		.key_file = cfg->client_tls_key_file,
		.ca_file = cfg->client_tls_ca_file,
		.protocols = cfg->client_tls_protocols,
		.ciphers = cfg->client_tls_ciphers,
		.tls13_ciphers = cfg->client_tls13_ciphers,
		.ecdhcurve = cfg->client_tls_ecdhcurve,
	};
	return tls_client_ctx_new(&s, bad_key, msg, len);
}

bool config_client_tls_rebuild(struct config *cfg, char *err, size_t errlen)
{
	const char *bad_key;
	SSL_CTX *ctx = client_tls_from(cfg, &bad_key, err, errlen);
	if (!ctx && bad_key)
		return false;
	SSL_CTX_free(cfg->client_tls); /* sessions already open hold their own reference */
	cfg->client_tls = ctx;
	return true;
}

/*
 * A failure found after parsing, in what a key names (a file it points
 * at): point at where the key was set, its line or its variable.
 */
static bool load_fail_at_key(struct loader *ld, const char *key, const char *msg)
{
	const struct config *cfg = ld->cfg;
	int i = config_key_lookup(key);
	int line = i >= 0 ? ld->key_line[i] : 0;
	if (line > 0 && cfg->path)
		return load_fail(ld, "%s:%d: %s", cfg->path, line, msg);
	if (line < 0) {
		char up[64];
		size_t n = 0;
		for (; key[n] && n + 1 < sizeof(up); n++)
			up[n] = (char)toupper((unsigned char)key[n]);
		up[n] = '\0';
		return load_fail(ld, "environment variable BERTH_%s: %s", up, msg);
	}
	return load_fail(ld, "%s", msg);
}

/* client_tls_*: the SSL_CTX is built now, so a bad file fails the load (or the reload). */
static bool load_client_tls(struct loader *ld)
{
	struct config *cfg = ld->cfg;
	char msg[400];
	const char *bad_key;
	cfg->client_tls = client_tls_from(cfg, &bad_key, msg, sizeof(msg));
	if (cfg->client_tls || !bad_key)
		return true;
	return load_fail_at_key(ld, bad_key, msg);
}

/* auth_hba_file: the rules are read now, so a bad file fails the load (or the reload). */
static bool load_hba(struct loader *ld)
{
	struct config *cfg = ld->cfg;
	bool have_file = cfg->auth_hba_file && cfg->auth_hba_file[0];
	if (cfg->auth_type == AUTH_HBA && !have_file)
		return load_fail(ld, "auth_type hba needs auth_hba_file: the rules that pick each "
				     "login's method");
	if (!have_file)
		return true; /* read when set, so that a console SET auth_type hba can use it */
	char msg[400], text[440];
	cfg->hba = hba_load(cfg->auth_hba_file, msg, sizeof(msg));
	if (!cfg->hba) {
		snprintf(text, sizeof(text), "auth_hba_file %s", msg);
		return load_fail_at_key(ld, "auth_hba_file", text);
	}
	for (size_t i = 0; i < cfg->hba->n; i++) {
		if (cfg->hba->rules[i].method == HBA_CERT && cfg->client_tls_sslmode < TLS_VERIFY_CA) {
			snprintf(text, sizeof(text),
				 "auth_hba_file %s:%d: cert needs client_tls_sslmode verify-ca or "
				 "verify-full (and client_tls_ca_file)",
				 cfg->auth_hba_file, cfg->hba->rules[i].line);
			return load_fail_at_key(ld, "auth_hba_file", text);
		}
	}
	return true;
}

struct config *config_load(const char *path, char *const *envp, struct config_error *err)
{
	struct loader ld = {0};
	struct config_error dummy;
	char *pqerr = NULL;
	const char *url = NULL;
	char msg[384];

	ld.err = err ? err : &dummy;
	ld.err->text[0] = '\0';
	ld.cfg = calloc(1, sizeof(*ld.cfg));
	if (!ld.cfg) {
		load_fail(&ld, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < N_KEYS; i++) {
		if (!key_parse_set(ld.cfg, i, key_table[i].def, msg, sizeof(msg))) {
			load_fail(&ld, "default of key \"%s\": %s", key_table[i].name, msg);
			goto fail;
		}
	}
	ld.known = PQconninfoParse("", &pqerr);
	if (!ld.known) {
		load_fail(&ld, "libpq: out of memory");
		goto fail;
	}

	if (path) {
		if (!(ld.cfg->path = strdup(path))) {
			load_fail(&ld, "out of memory");
			goto fail;
		}
		if (!ini_file(&ld, path, 0))
			goto fail;
	}
	ld.file = NULL;

	if (!apply_env_keys(&ld, envp))
		goto fail;
	/* listen = host:port wins over listen_addr/listen_port wherever they were set */
	if (ld.cfg->listen && ld.cfg->listen[0]) {
		free(ld.cfg->listen_addr);
		ld.cfg->listen_addr = NULL;
		if (!parse_listen(ld.cfg->listen, &ld.cfg->listen_addr, &ld.cfg->listen_port, msg,
				  sizeof(msg))) {
			load_fail(&ld, "key \"listen\": %s", msg);
			goto fail;
		}
	}

	if (ld.cfg->auth_file && ld.cfg->auth_file[0] && !load_auth_file(&ld, ld.cfg->auth_file))
		goto fail;

	for (size_t e = 0; envp && envp[e]; e++)
		if (strncmp(envp[e], "DATABASE_URL=", 13) == 0)
			url = envp[e] + 13;
	if (url && url[0]) {
		if (!apply_database_url(&ld, url))
			goto fail;
	} else if (!path) {
		load_fail(&ld, "DATABASE_URL is not set and no config file was given");
		goto fail;
	}

	if (!auth_sort(&ld) || !validate(&ld) || !load_client_tls(&ld) || !load_hba(&ld))
		goto fail;

	PQconninfoFree(ld.known);
	return ld.cfg;
fail:
	if (ld.known)
		PQconninfoFree(ld.known);
	if (pqerr)
		PQfreemem(pqerr);
	config_free(ld.cfg);
	return NULL;
}

/* ---------------------------------------------------------------------
 * Generated documentation
 */

static const char *type_name(enum config_type t)
{
	switch (t) {
	case CT_INT:
		return "integer";
	case CT_BOOL:
		return "boolean";
	case CT_TIME:
		return "time";
	case CT_STRING:
		return "string";
	case CT_ENUM:
		return "enum";
	case CT_SIZE:
		return "size";
	}
	return "?";
}

/* Markdown table cell: | would end the cell. */
static void md_cell(FILE *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '|')
			fputs("\\|", out);
		else
			fputc(*s, out);
	}
}

void config_write_doc(FILE *out)
{
	fputs("# berth configuration\n\n"
	      "This file is generated from `include/config_keys.h` by `berth --config-doc`.\n"
	      "Edit that table, not this file.\n\n"
	      "berth reads a PgBouncer-style INI file: a PgBouncer user can rename\n"
	      "`pgbouncer.ini` to `berth.ini` and start berth with it.\n\n"
	      "## File format\n\n"
	      "- Sections: `[berth]` (`[pgbouncer]` is read as the same section), `[databases]`,\n"
	      "  `[users]`. Any other section is an error.\n"
	      "- Lines starting with `;` or `#` are comments; `;` and `#` later in a line are\n"
	      "  part of the value.\n"
	      "- `key = value`; keys in the main section are case-insensitive; values are\n"
	      "  taken verbatim, without surrounding blanks (no quoting in the main section).\n"
	      "- A key given twice: the last one wins. An unknown key in the main section is\n"
	      "  an error that names the file, line and key.\n"
	      "- `%include FILE` reads another file in place (relative names are taken from\n"
	      "  the current working directory, as in PgBouncer; at most 10 levels deep).\n\n"
	      "## Value types\n\n"
	      "| Type | Written as |\n"
	      "|------|------------|\n"
	      "| integer | decimal; `0777` is octal and `0x1F` hexadecimal, as in PgBouncer |\n"
	      "| boolean | `0`/`1`, `no`/`yes`, `off`/`on`, `false`/`true` |\n"
	      "| time | seconds, fractions allowed (`0.5`), or a number with a unit: `us`, `ms`, "
	      "`s`, `min`, `h`, `d` (`250ms`, `2min`); SHOW CONFIG shows seconds |\n"
	      "| size | bytes, or a number with `kB`, `MB`, `GB` (multiples of 1024) |\n"
	      "| enum | one of the values listed with the setting |\n"
	      "| string | the rest of the line |\n\n"
	      "## Settings\n\n"
	      "Applies: `reload` = takes effect on RELOAD/SIGHUP; `restart` = needs a restart.\n\n"
	      "| Setting | Type | Default | Applies | Description |\n"
	      "|---------|------|---------|---------|-------------|\n",
	      out);
	for (size_t i = 0; i < N_KEYS; i++) {
		const struct key_info *k = &key_table[i];
		fprintf(out, "| `%s` | %s", k->name, type_name(k->type));
		if (k->type == CT_INT || k->type == CT_SIZE)
			fprintf(out, " (%" PRId64 "..%" PRId64 ")", k->min, k->max);
		if (k->type == CT_TIME && k->min > 0) {
			char least[32];
			format_time(k->min, least, sizeof(least));
			fprintf(out, " (at least %s)", least);
		}
		fputs(" | ", out);
		if (k->flags & CF_SECRET)
			fputs("(secret)", out);
		else if (k->def[0])
			fprintf(out, "`%s`", k->def);
		else
			fputs("(empty)", out);
		fprintf(out, " | %s | ", (k->flags & CF_RESTART) ? "restart" : "reload");
		md_cell(out, k->help);
		if (k->type == CT_ENUM) {
			fputs(" Values:", out);
			const struct enum_value *ev = enum_values_for(k->name);
			bool first = true;
			for (; ev && ev->name; ev++) {
				if (ev->refusal)
					continue;
				fprintf(out, "%s `%s`", first ? "" : ",", ev->name);
				first = false;
			}
			fputs(".", out);
		}
		for (size_t a = 0; a < ARRAY_SIZE(key_aliases); a++)
			if (strcmp(key_aliases[a].key, k->name) == 0)
				fprintf(out, " Alias: `%s`.", key_aliases[a].alias);
		fputs(" |\n", out);
	}
	fputs("\n"
	      "Refused enum values: `auth_type` `any`, `hba`, `cert`, `pam`, `ldap`.\n\n"
	      "## [databases]\n\n"
	      "Each line maps the database name clients ask for to where berth connects:\n\n"
	      "    app     = host=10.0.0.5 port=5432 dbname=app_prod pool_size=30\n"
	      "    reports = "
	      "postgres://report@db2.internal/reports?sslmode=verify-full&pool_mode=session\n"
	      "    *       = host=/var/run/postgresql\n\n"
	      "- The value is a libpq connection string (`key=value`, values may be single-quoted\n"
	      "  with backslash escapes) or a `postgres://` / `postgresql://` URL. libpq checks "
	      "it:\n"
	      "  an unknown option is an error naming the file, line and database.\n"
	      "- Names are bare words of letters, digits, `_ . - *`, or quoted (`\"my db\"`, with\n"
	      "  `\"\"` for a double quote). `berth` is reserved for the admin console.\n"
	      "- Pooler options, taken out before libpq sees the rest: `pool_size`, "
	      "`min_pool_size`,\n"
	      "  `reserve_pool` (or `reserve_pool_size`), `pool_mode`, `max_db_connections`,\n"
	      "  `max_db_client_connections`, `server_lifetime` and `query_wait_timeout`\n"
	      "  (seconds or a time with a unit; -1 = the global setting), and:\n"
	      "  - `connect_query`: SQL run once on each new server connection before any\n"
	      "    client gets it (single-quote it when it holds spaces). Its errors are\n"
	      "    logged and otherwise ignored, as in PgBouncer; settings it changes are what\n"
	      "    the pool's clients see as the server's at login. One that leaves a\n"
	      "    transaction open fails the login.\n"
	      "  - `load_balance_hosts` with several hosts: `disable` (the default: libpq's\n"
	      "    order, the first host that accepts, starting from the host the last failed\n"
	      "    login moved on to, so a host that hangs until the login times out is\n"
	      "    passed over, as PgBouncer does) or `round-robin` (each new server\n"
	      "    connection starts one host further). host, hostaddr and port lists turn\n"
	      "    together. PgBouncer's default is `round-robin`: set it to keep that.\n"
	      "- `dbname` is the server-side database (default: the entry's name; for `*`, the\n"
	      "  name the client asked for). `user` makes every client log in upstream as that\n"
	      "  user (one pool per database); `password` is its password (else auth_file's).\n"
	      "- `client_encoding` and `application_name` are passed to libpq; `datestyle` and\n"
	      "  `timezone` are sent as `options=-c datestyle=... -c timezone=...`.\n"
	      "- Every other libpq option (`host` with several hosts, `port`, `sslmode`,\n"
	      "  `sslrootcert`, `target_session_attrs`, `connect_timeout`, ...) is kept for\n"
	      "  the upstream connection. `connect_timeout` bounds the whole login (every\n"
	      "  host), as `server_connect_timeout` does; the sooner of the two applies.\n"
	      "- In a `postgres://` URL (an entry or DATABASE_URL), Prisma's own parameters\n"
	      "  (`schema`, `connection_limit`, `pool_timeout`, `socket_timeout`, `pgbouncer`,\n"
	      "  `statement_cache_size`, `sslaccept`, `sslidentity`, `max_connection_lifetime`,\n"
	      "  `max_idle_connection_lifetime`) are ignored with a warning, so the URL a Prisma\n"
	      "  app used works unchanged as berth's upstream.\n"
	      "- `*` is the fallback for any name without its own entry.\n"
	      "- Not supported (error): PgBouncer's `auth_user`, `auth_query`, `auth_dbname`.\n\n"
	      "## [users]\n\n"
	      "    alice = pool_mode=session max_user_connections=5 pool_size=3 query_timeout=30\n\n"
	      "Options, as in PgBouncer: `pool_mode`, `pool_size`, `reserve_pool_size`,\n"
	      "`max_user_connections`, `max_user_client_connections`, and the timeouts\n"
	      "`query_timeout`, `query_wait_timeout`, `idle_transaction_timeout`,\n"
	      "`transaction_timeout`, `client_idle_timeout` (-1 = not set). A user's value\n"
	      "wins over the database entry's, which wins over the global setting.\n\n"
	      "## auth_file\n\n"
	      "PgBouncer's `userlist.txt` format, one user per line:\n\n"
	      "    \"alice\" \"plain password\"\n"
	      "    \"bob\" \"md5<32 hex digits: md5(password || user)>\"\n"
	      "    \"carol\" \"SCRAM-SHA-256$<iterations>:<salt>$<storedkey>:<serverkey>\"\n"
	      "    \"say \"\"hi\"\"\" \"a user name with double quotes\"\n\n"
	      "Fields are double-quoted, `\"\"` stands for a double quote inside, the rest of the\n"
	      "line is ignored. Blank lines and lines starting with `;` or `#` are skipped.\n"
	      "Errors name the file and line, never the line's text. When a user appears twice\n"
	      "the later line wins. auth_type other than `trust` needs auth_file or a\n"
	      "DATABASE_URL with a user and password.\n\n"
	      "## auth_hba_file\n\n"
	      "With `auth_type = hba`, PgBouncer's HBA file: PostgreSQL's `pg_hba.conf` format,\n"
	      "the first line that matches a login picks its method, and no matching line\n"
	      "refuses it (28000, in PostgreSQL's words).\n\n"
	      "    # TYPE     DATABASE   USER       ADDRESS          METHOD\n"
	      "    local      all        all                         peer\n"
	      "    hostssl    all        @admins    10.0.0.0/8       cert\n"
	      "    host       app,app_ro all        10.0.0.0/8       scram-sha-256\n"
	      "    host       all        all        0.0.0.0/0        reject\n\n"
	      "Types `local` (the unix socket), `host`, `hostssl`, `hostnossl`. Databases `all`,\n"
	      "`sameuser`, `@file` (names read from a file beside it) or a comma list; users\n"
	      "`all`, `@file` or a list; quoting a keyword makes it a name. Addresses `all`, an\n"
	      "IPv4 or IPv6 range with `/prefix`, or an address and a mask. Methods `trust`,\n"
	      "`reject`, `md5`, `password`, `scram-sha-256`, `cert` (hostssl; needs\n"
	      "client_tls_sslmode verify-ca or verify-full) and `peer` (local). A backslash at\n"
	      "the end of a line continues it. What PgBouncer does not take either\n"
	      "(`replication`, `+group`, host names, `samehost`, options such as `map=`) is an\n"
	      "error naming the file and line, not a rule skipped. The file is read at start\n"
	      "and on reload; a bad one fails the reload and keeps the rules in force.\n\n"
	      "## Environment\n\n"
	      "- `BERTH_<KEY>`: any setting or alias in upper case (`BERTH_POOL_SIZE`,\n"
	      "  `BERTH_LISTEN=0.0.0.0:6432`) overrides the file. Other `BERTH_*` variables are\n"
	      "  ignored.\n"
	      "- `listen` (`host:port` or `[v6addr]:port`), when not empty, replaces listen_addr\n"
	      "  and listen_port.\n"
	      "- `DATABASE_URL`: a `postgres://` URL (or libpq connection string) that defines a\n"
	      "  database named after its dbname (default: its user). Its user becomes the\n"
	      "  forced user, its password that user's credential in auth (so clients log in\n"
	      "  with the same user and password), its other options (several hosts, sslmode,\n"
	      "  ...) are kept. A [databases] entry of the same name in the file wins and the\n"
	      "  URL is then ignored. Without a config file, DATABASE_URL is required.\n"
	      "  Error messages never contain the URL or a password.\n\n"
	      "## PgBouncer settings berth does not have\n\n"
	      "Ignored with a warning (berth logs it at start):\n\n",
	      out);
	for (size_t c = 0; c < ARRAY_SIZE(compat_main_keys); c++) {
		const struct compat_key *ck = &compat_main_keys[c];
		if (!ck->harmless)
			continue;
		fprintf(out, "- `%s`", ck->name);
		if (strcmp(ck->harmless, "*") != 0) {
			fputs(" (only `", out);
			for (const char *h = ck->harmless; *h; h++) {
				if (*h == '|')
					fputs("`, `", out);
				else
					fputc(*h, out);
			}
			fputs("`; other values are an error)", out);
		}
		fprintf(out, ": %s\n", ck->why);
	}
	fputs("\nRefused (an error, since ignoring them would change behaviour):\n\n", out);
	for (size_t c = 0; c < ARRAY_SIZE(compat_main_keys); c++) {
		const struct compat_key *ck = &compat_main_keys[c];
		if (ck->harmless)
			continue;
		fprintf(out, "- `%s`: %s\n", ck->name, ck->why);
	}
}

void config_write_sample(FILE *out)
{
	fputs(";; berth.ini.sample - every setting with its default, generated from\n"
	      ";; include/config_keys.h by `berth --config-sample`; do not edit.\n"
	      ";; Uncomment and change what you need. See doc/config.md.\n\n"
	      "[databases]\n"
	      ";; name = libpq connection string, or postgres:// URL\n"
	      ";app = host=127.0.0.1 port=5432 dbname=app pool_size=20\n"
	      ";* = host=/var/run/postgresql\n\n"
	      "[users]\n"
	      ";alice = pool_mode=session max_user_connections=5\n\n"
	      "[berth]\n",
	      out);
	for (size_t i = 0; i < N_KEYS; i++) {
		const struct key_info *k = &key_table[i];
		fprintf(out, "\n;; %s\n;; %s", k->help, type_name(k->type));
		if (k->type == CT_INT || k->type == CT_SIZE)
			fprintf(out, " %" PRId64 "..%" PRId64, k->min, k->max);
		if (k->type == CT_ENUM) {
			const struct enum_value *ev = enum_values_for(k->name);
			const char *sep = ": ";
			for (; ev && ev->name; ev++) {
				if (ev->refusal)
					continue;
				fprintf(out, "%s%s", sep, ev->name);
				sep = ", ";
			}
		}
		fprintf(out, "; %s\n", (k->flags & CF_RESTART) ? "needs a restart" : "reloadable");
		const char *def = (k->flags & CF_SECRET) ? "" : k->def;
		fprintf(out, ";%s =%s%s\n", k->name, def[0] ? " " : "", def);
	}
}
