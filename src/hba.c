/*
 * hba.c - auth_hba_file: parse a pg_hba.conf-style file into rules and find
 * the rule for a login (see hba.h for what is taken). Reference: the
 * PostgreSQL manual, "The pg_hba.conf File", and PgBouncer's "HBA file format".
 */
#include "hba.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler.h"

#define HBA_MAX_LINE 8192
#define HBA_MAX_FIELDS 16

/* One element of a field: a word, and whether it was quoted (quoted keywords are names). */
struct word {
	char *text;
	bool quoted;
};

/* A field: its comma-separated words. */
struct field {
	struct word *w;
	size_t n;
};

struct parser {
	const char *path;
	int line;
	char *err;
	size_t errlen;
};

static bool fail(struct parser *ps, const char *fmt, ...) BERTH_PRINTF(2, 3);
static bool fail(struct parser *ps, const char *fmt, ...)
{
	int n = snprintf(ps->err, ps->errlen, "%s:%d: ", ps->path, ps->line);
	va_list ap;
	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < ps->errlen)
		vsnprintf(ps->err + n, ps->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return false;
}

static void fields_free(struct field *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < f[i].n; j++)
			free(f[i].w[j].text);
		free(f[i].w);
	}
}

static bool field_add(struct field *f, const char *s, size_t len, bool quoted)
{
	struct word *nw = realloc(f->w, (f->n + 1) * sizeof(*nw));
	if (!nw)
		return false;
	f->w = nw;
	char *t = malloc(len + 1);
	if (!t)
		return false;
	memcpy(t, s, len);
	t[len] = '\0';
	f->w[f->n].text = t;
	f->w[f->n].quoted = quoted;
	f->n++;
	return true;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * Split one line into fields of comma-separated words. '#' outside quotes
 * ends the line; "..." keeps spaces, commas and '#' and makes a keyword a
 * plain name. Returns the number of fields, -1 on error.
 */
static int split_line(struct parser *ps, const char *p, struct field *out, size_t max)
{
	size_t n = 0;
	const char *why = NULL;
	for (;;) {
		while (is_space(*p))
			p++;
		if (!*p || *p == '#')
			return (int)n;
		if (n == max) {
			why = "too many fields";
			break;
		}
		struct field *f = &out[n++];
		memset(f, 0, sizeof(*f));
		for (;;) {
			const char *start = p;
			bool quoted = *p == '"';
			if (quoted) {
				start = ++p;
				while (*p && *p != '"')
					p++;
				if (!*p) {
					why = "unterminated quoted string";
					break;
				}
			} else {
				while (*p && !is_space(*p) && *p != ',' && *p != '#')
					p++;
			}
			if (!field_add(f, start, (size_t)(p - start), quoted)) {
				why = "out of memory";
				break;
			}
			if (quoted)
				p++;
			if (*p != ',')
				break;
			p++;
		}
		if (why)
			break;
	}
	fields_free(out, n);
	fail(ps, "%s", why);
	return -1;
}

static bool names_add(struct hba_names *nm, const char *s)
{
	char **nn = realloc(nm->names, (nm->n + 1) * sizeof(*nn));
	if (!nn)
		return false;
	nm->names = nn;
	if (!(nm->names[nm->n] = strdup(s)))
		return false;
	nm->n++;
	return true;
}

static void names_free(struct hba_names *nm)
{
	for (size_t i = 0; i < nm->n; i++)
		free(nm->names[i]);
	free(nm->names);
	memset(nm, 0, sizeof(*nm));
}

/* "@file": names from a file beside the HBA file (or absolute), split as fields are. */
static bool names_from_file(struct parser *ps, struct hba_names *nm, const char *name)
{
	char path[4096];
	const char *slash = strrchr(ps->path, '/');
	if (name[0] == '/' || !slash)
		snprintf(path, sizeof(path), "%s", name);
	else
		snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - ps->path), ps->path, name);
	FILE *f = fopen(path, "r");
	if (!f)
		return fail(ps, "cannot read \"%s\": %s", path, strerror(errno));
	char buf[HBA_MAX_LINE];
	bool ok = true;
	struct parser sub = {path, 0, ps->err, ps->errlen}; /* its errors name its own lines */
	while (ok && fgets(buf, sizeof(buf), f)) {
		sub.line++;
		struct field fl[HBA_MAX_FIELDS];
		int n = split_line(&sub, buf, fl, HBA_MAX_FIELDS);
		if (n < 0) {
			ok = false;
			break;
		}
		for (int i = 0; ok && i < n; i++)
			for (size_t j = 0; ok && j < fl[i].n; j++)
				if (fl[i].w[j].text[0] && !names_add(nm, fl[i].w[j].text))
					ok = fail(&sub, "out of memory");
		fields_free(fl, (size_t)n);
	}
	fclose(f);
	if (!ok) {
		size_t used = strlen(ps->err);
		snprintf(ps->err + used, ps->errlen - used, " (included at %s:%d)", ps->path,
			 ps->line);
	}
	return ok;
}

static bool parse_names(struct parser *ps, const struct field *f, struct hba_names *nm, bool db)
{
	const char *what = db ? "database" : "user";
	for (size_t i = 0; i < f->n; i++) {
		const struct word *w = &f->w[i];
		const char *t = w->text;
		if (!w->quoted && strcmp(t, "all") == 0) {
			nm->all = true;
		} else if (!w->quoted && db && strcmp(t, "sameuser") == 0) {
			nm->sameuser = true;
		} else if (!w->quoted && db &&
			   (strcmp(t, "replication") == 0 || strcmp(t, "samerole") == 0 ||
			    strcmp(t, "samegroup") == 0)) {
			return fail(ps, "%s \"%s\" is not supported (PgBouncer does not take it either)",
				    what, t);
		} else if (!w->quoted && !db && t[0] == '+') {
			return fail(ps, "group user names (\"%s\") are not supported", t);
		} else if (!w->quoted && t[0] == '/') {
			return fail(ps, "regular expressions (\"%s\") are not supported", t);
		} else if (!w->quoted && t[0] == '@') {
			if (!t[1])
				return fail(ps, "\"@\" needs a file name");
			if (!names_from_file(ps, nm, t + 1))
				return false;
		} else if (!t[0]) {
			return fail(ps, "empty %s name", what);
		} else if (!names_add(nm, t)) {
			return fail(ps, "out of memory");
		}
	}
	return true;
}

static bool single_word(struct parser *ps, const struct field *f, const char *what)
{
	if (f->n != 1)
		return fail(ps, "%s must be a single value", what);
	return true;
}

static bool parse_conn(struct parser *ps, const struct field *f, uint8_t *conn)
{
	static const char *const names[] = {"local", "host", "hostssl", "hostnossl"};
	if (!single_word(ps, f, "the connection type"))
		return false;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(f->w[0].text, names[i]) == 0) {
			*conn = (uint8_t)i;
			return true;
		}
	}
	if (strncmp(f->w[0].text, "hostgss", 7) == 0 || strncmp(f->w[0].text, "hostnogss", 9) == 0)
		return fail(ps, "connection type \"%s\" is not supported (berth has no GSSAPI)",
			    f->w[0].text);
	return fail(ps, "invalid connection type \"%s\"", f->w[0].text);
}

static bool parse_method(struct parser *ps, const struct field *f, uint8_t conn, uint8_t *method)
{
	static const char *const names[] = {"trust",	     "reject", "md5",	"password",
					    "scram-sha-256", "cert",   "peer"};
	if (!single_word(ps, f, "the authentication method"))
		return false;
	const char *m = f->w[0].text;
	size_t i = 0;
	while (i < sizeof(names) / sizeof(names[0]) && strcmp(m, names[i]) != 0)
		i++;
	if (i == sizeof(names) / sizeof(names[0]))
		return fail(ps, "authentication method \"%s\" is not supported (use trust, reject, md5, "
				"password, scram-sha-256, cert or peer)",
			    m);
	if (i == HBA_CERT && conn != HBA_HOSTSSL)
		return fail(ps, "cert authentication is only supported on hostssl connections");
	if (i == HBA_PEER && conn != HBA_LOCAL)
		return fail(ps, "peer authentication is only supported on local sockets");
	*method = (uint8_t)i;
	return true;
}

static bool parse_ip(const char *s, int *family, uint8_t addr[16])
{
	memset(addr, 0, 16);
	if (inet_pton(AF_INET, s, addr) == 1) {
		*family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, s, addr) == 1) {
		*family = AF_INET6;
		return true;
	}
	return false;
}

static void mask_from_prefix(uint8_t mask[16], int bits)
{
	memset(mask, 0, 16);
	for (int i = 0; i < bits; i++)
		mask[i / 8] |= (uint8_t)(0x80 >> (i % 8));
}

/* The address field, and a separate mask field after it if there is one; *used: fields taken. */
static bool parse_address(struct parser *ps, struct hba_rule *r, const struct field *f,
			  const struct field *next, int *used)
{
	*used = 1;
	if (!single_word(ps, f, "the address"))
		return false;
	char text[128];
	snprintf(text, sizeof(text), "%s", f->w[0].text);
	if (!f->w[0].quoted && strcmp(text, "all") == 0) {
		r->addr_all = true;
		return true;
	}
	if (!f->w[0].quoted && (strcmp(text, "samehost") == 0 || strcmp(text, "samenet") == 0))
		return fail(ps, "address \"%s\" is not supported", text);
	char *slash = strchr(text, '/');
	if (slash)
		*slash = '\0';
	if (!parse_ip(text, &r->family, r->addr))
		return fail(ps, "invalid IP address \"%s\" (host names are not supported)", text);
	int max = r->family == AF_INET ? 32 : 128;
	if (slash) {
		char *end;
		long bits = strtol(slash + 1, &end, 10);
		if (!slash[1] || *end || bits < 0 || bits > max)
			return fail(ps, "invalid CIDR mask in address \"%s\"", f->w[0].text);
		mask_from_prefix(r->mask, (int)bits);
	} else {
		/* "address mask", as PostgreSQL also takes it */
		int mfam;
		if (!next || next->n != 1 || !parse_ip(next->w[0].text, &mfam, r->mask) ||
		    mfam != r->family)
			return fail(ps, "address \"%s\" needs a /prefix or a mask of its family",
				    f->w[0].text);
		*used = 2;
	}
	for (int i = 0; i < 16; i++)
		r->addr[i] &= r->mask[i];
	return true;
}

static void rule_free(struct hba_rule *r)
{
	names_free(&r->db);
	names_free(&r->user);
}

static bool parse_rule(struct parser *ps, struct field *fl, int n, struct hba_rule *r)
{
	memset(r, 0, sizeof(*r));
	r->line = ps->line;
	int need = 4;
	if (!parse_conn(ps, &fl[0], &r->conn))
		return false;
	if (r->conn != HBA_LOCAL)
		need = 5;
	if (n < need)
		return fail(ps, "too few fields (%s DATABASE USER%s METHOD)",
			    r->conn == HBA_LOCAL ? "local" : "host", r->conn == HBA_LOCAL ? "" : " ADDRESS");
	if (!parse_names(ps, &fl[1], &r->db, true) || !parse_names(ps, &fl[2], &r->user, false))
		return false;
	int at = 3;
	if (r->conn != HBA_LOCAL) {
		int used;
		if (!parse_address(ps, r, &fl[3], at + 1 < n ? &fl[4] : NULL, &used))
			return false;
		at += used;
	}
	if (at >= n)
		return fail(ps, "missing authentication method");
	if (!parse_method(ps, &fl[at], r->conn, &r->method))
		return false;
	if (at + 1 < n)
		return fail(ps, "authentication options such as \"%s\" are not supported",
			    fl[at + 1].w[0].text);
	return true;
}

struct hba *hba_load(const char *path, char *err, size_t errlen)
{
	struct parser ps = {path, 0, err, errlen};
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	struct hba *h = calloc(1, sizeof(*h));
	char line[HBA_MAX_LINE];
	char buf[HBA_MAX_LINE];
	bool ok = h != NULL;
	if (!ok)
		snprintf(err, errlen, "%s: out of memory", path);
	while (ok && fgets(buf, sizeof(buf), f)) {
		ps.line++;
		int first = ps.line;
		size_t len = 0;
		line[0] = '\0';
		/* A backslash at the end of a line continues the record on the next one. */
		for (;;) {
			size_t bl = strlen(buf);
			while (bl && (buf[bl - 1] == '\n' || buf[bl - 1] == '\r'))
				buf[--bl] = '\0';
			bool more = bl && buf[bl - 1] == '\\';
			if (more)
				buf[--bl] = '\0';
			if (len + bl + 2 > sizeof(line)) {
				ok = fail(&ps, "line too long");
				break;
			}
			memcpy(line + len, buf, bl);
			len += bl;
			line[len++] = ' ';
			line[len] = '\0';
			if (!more || !fgets(buf, sizeof(buf), f))
				break;
			ps.line++;
		}
		if (!ok)
			break;
		int last = ps.line;
		ps.line = first;
		struct field fl[HBA_MAX_FIELDS];
		int n = split_line(&ps, line, fl, HBA_MAX_FIELDS);
		if (n < 0) {
			ok = false;
			break;
		}
		if (n > 0) {
			struct hba_rule r;
			struct hba_rule *nr = realloc(h->rules, (h->n + 1) * sizeof(*nr));
			if (!nr) {
				ok = fail(&ps, "out of memory");
			} else {
				h->rules = nr;
				if (parse_rule(&ps, fl, n, &r))
					h->rules[h->n++] = r;
				else
					rule_free(&r), ok = false;
			}
		}
		fields_free(fl, (size_t)(n > 0 ? n : 0));
		ps.line = last;
	}
	if (ok && ferror(f))
		ok = fail(&ps, "cannot read: %s", strerror(errno));
	else if (ok && h->n == 0)
		ok = fail(&ps, "contains no entries (every login would be refused)");
	fclose(f);
	if (!ok) {
		hba_free(h);
		return NULL;
	}
	return h;
}

void hba_free(struct hba *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->n; i++)
		rule_free(&h->rules[i]);
	free(h->rules);
	free(h);
}

static bool names_match(const struct hba_names *nm, const char *name, const char *user)
{
	if (nm->all || (nm->sameuser && strcmp(name, user) == 0))
		return true;
	for (size_t i = 0; i < nm->n; i++)
		if (strcmp(nm->names[i], name) == 0)
			return true;
	return false;
}

/* The client's address as (family, 16 bytes); IPv4-mapped IPv6 counts as IPv4. */
static int client_ip(const struct sockaddr *sa, uint8_t out[16])
{
	memset(out, 0, 16);
	if (sa->sa_family == AF_INET) {
		memcpy(out, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
		return AF_INET;
	}
	const struct in6_addr *a6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
	if (IN6_IS_ADDR_V4MAPPED(a6)) {
		memcpy(out, a6->s6_addr + 12, 4);
		return AF_INET;
	}
	memcpy(out, a6->s6_addr, 16);
	return AF_INET6;
}

static bool address_matches(const struct hba_rule *r, const struct sockaddr *sa)
{
	if (r->addr_all)
		return true;
	uint8_t ip[16];
	if (client_ip(sa, ip) != r->family)
		return false;
	for (int i = 0; i < 16; i++)
		if ((ip[i] & r->mask[i]) != r->addr[i])
			return false;
	return true;
}

const struct hba_rule *hba_match(const struct hba *h, const struct sockaddr *addr, bool tls,
				 const char *db, const char *user)
{
	bool local = addr->sa_family == AF_UNIX;
	for (size_t i = 0; h && i < h->n; i++) {
		const struct hba_rule *r = &h->rules[i];
		if (local != (r->conn == HBA_LOCAL))
			continue;
		if ((r->conn == HBA_HOSTSSL && !tls) || (r->conn == HBA_HOSTNOSSL && tls))
			continue;
		if (!names_match(&r->db, db, user) || !names_match(&r->user, user, user))
			continue;
		if (!local && !address_matches(r, addr))
			continue;
		return r;
	}
	return NULL;
}
