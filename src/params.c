/*
 * params.c - GUC lists for clients and servers, and the statement that
 * brings a server in line with a client (pg_catalog.set_config keeps the
 * value exactly as a startup packet would give it, lists included).
 */
#include "params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static struct param *params_find(const struct param_list *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcasecmp(l->items[i].name, name) == 0)
			return &l->items[i];
	return NULL;
}

/* FNV-1a over the lower-cased name, a separator, and the value. */
static uint64_t param_hash(const char *name, const char *value)
{
	uint64_t h = 1469598103934665603ull;
	for (const char *p = name; *p; p++) {
		char ch = (*p >= 'A' && *p <= 'Z') ? (char)(*p + 32) : *p;
		h = (h ^ (uint8_t)ch) * 1099511628211ull;
	}
	h = (h ^ 0xff) * 1099511628211ull;
	for (const char *p = value; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ull;
	return h;
}

const char *params_get(const struct param_list *l, const char *name)
{
	struct param *p = params_find(l, name);
	return p ? p->value : NULL;
}

bool params_set(struct param_list *l, const char *name, const char *value, bool reported)
{
	struct param *p = params_find(l, name);
	if (p) {
		if (strcmp(p->value, value) != 0) {
			char *v = strdup(value);
			if (!v)
				return false;
			free(p->value);
			p->value = v;
			l->sig ^= p->hash;
			p->hash = param_hash(p->name, v);
			l->sig ^= p->hash;
		}
		p->reported |= reported;
		return true;
	}
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 2;
		struct param *n = realloc(l->items, ncap * sizeof(*n));
		if (!n)
			return false;
		l->items = n;
		l->cap = ncap;
	}
	char *nm = strdup(name), *v = strdup(value);
	if (!nm || !v) {
		free(nm);
		free(v);
		return false;
	}
	uint64_t h = param_hash(nm, v);
	l->items[l->n++] = (struct param){.name = nm, .value = v, .hash = h, .reported = reported};
	l->sig ^= h;
	return true;
}

void params_remove(struct param_list *l, const char *name)
{
	struct param *p = params_find(l, name);
	if (!p)
		return;
	l->sig ^= p->hash;
	free(p->name);
	free(p->value);
	*p = l->items[--l->n];
}

void params_clear(struct param_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->items[i].name);
		free(l->items[i].value);
	}
	free(l->items);
	memset(l, 0, sizeof(*l));
}

bool params_copy(struct param_list *dst, const struct param_list *src)
{
	params_clear(dst);
	for (size_t i = 0; i < src->n; i++)
		if (!params_set(dst, src->items[i].name, src->items[i].value, src->items[i].reported))
			return false;
	return true;
}

void params_drop_unreported(struct param_list *l)
{
	for (size_t i = 0; i < l->n;) {
		if (!l->items[i].reported) {
			params_remove(l, l->items[i].name);
			continue;
		}
		i++;
	}
}

/* Append s as an SQL literal E'...'; false if it does not fit. */
static bool append_literal(char *buf, size_t buflen, size_t *pos, const char *s)
{
	size_t p = *pos;
	if (p + 2 >= buflen)
		return false;
	buf[p++] = 'E';
	buf[p++] = '\'';
	for (; *s; s++) {
		if (p + 3 >= buflen)
			return false;
		if (*s == '\'' || *s == '\\')
			buf[p++] = *s;
		buf[p++] = *s;
	}
	if (p + 1 >= buflen)
		return false;
	buf[p++] = '\'';
	buf[p] = 0;
	*pos = p;
	return true;
}

static bool append_str(char *buf, size_t buflen, size_t *pos, const char *s)
{
	size_t n = strlen(s);
	if (*pos + n + 1 > buflen)
		return false;
	memcpy(buf + *pos, s, n + 1);
	*pos += n;
	return true;
}

/* Append s as a double-quoted identifier. */
static bool append_ident(char *buf, size_t buflen, size_t *pos, const char *s)
{
	if (!append_str(buf, buflen, pos, "\""))
		return false;
	for (; *s; s++) {
		char c[3] = {*s, 0, 0};
		if (*s == '"')
			c[1] = '"';
		if (!append_str(buf, buflen, pos, c))
			return false;
	}
	return append_str(buf, buflen, pos, "\"");
}

int params_build_sync(const struct param_list *want, struct param_list *server,
		      const struct param_list *defaults, char *buf, size_t buflen)
{
	size_t pos = 0;
	int n_set = 0;
	if (buflen == 0)
		return -1;
	buf[0] = 0;

	/* Values the client wants that the server does not have. */
	for (size_t i = 0; i < want->n; i++) {
		const struct param *p = &want->items[i];
		const char *have = params_get(server, p->name);
		if (!have)
			have = params_get(defaults, p->name);
		if (have && strcmp(have, p->value) == 0)
			continue;
		if (!append_str(buf, buflen, &pos, n_set ? ", " : "SELECT ") ||
		    !append_str(buf, buflen, &pos, "pg_catalog.set_config(") ||
		    !append_literal(buf, buflen, &pos, p->name) || !append_str(buf, buflen, &pos, ", ") ||
		    !append_literal(buf, buflen, &pos, p->value) ||
		    !append_str(buf, buflen, &pos, ", false)"))
			return -1;
		n_set++;
	}
	if (n_set && !append_str(buf, buflen, &pos, ";"))
		return -1;

	/* Values left on the server by someone else that this client did not ask for. */
	int n_reset = 0;
	for (size_t i = 0; i < server->n; i++) {
		const struct param *p = &server->items[i];
		if (params_get(want, p->name))
			continue;
		const char *def = params_get(defaults, p->name);
		if (def && strcmp(def, p->value) == 0)
			continue;
		if (!def && p->reported)
			continue; /* reported by the server but no default known: leave it */
		if (!append_str(buf, buflen, &pos, " RESET ") || !append_ident(buf, buflen, &pos, p->name) ||
		    !append_str(buf, buflen, &pos, ";"))
			return -1;
		n_reset++;
	}
	if (!n_set && !n_reset)
		return 0;

	/* The query will run: record the outcome on the server's list. */
	for (size_t i = 0; i < server->n;) {
		struct param *p = &server->items[i];
		if (!params_get(want, p->name)) {
			const char *def = params_get(defaults, p->name);
			if (def) {
				if (!params_set(server, p->name, def, p->reported))
					return -1;
			} else if (!p->reported) {
				params_remove(server, p->name);
				continue;
			}
		}
		i++;
	}
	for (size_t i = 0; i < want->n; i++) {
		const struct param *p = &want->items[i];
		bool reported = params_get(defaults, p->name) != NULL;
		if (!params_set(server, p->name, p->value, reported))
			return -1;
	}
	return (int)pos;
}

bool params_parse_options(const char *options, bool (*add)(void *arg, const char *name, const char *value),
			  void *arg, char *err, size_t errlen)
{
	const char *s = options;
	char word[1024];
	bool expect_c_arg = false;

	while (*s) {
		while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
			s++;
		if (!*s)
			break;
		size_t n = 0;
		while (*s && *s != ' ' && *s != '\t' && *s != '\n' && *s != '\r') {
			if (*s == '\\' && s[1])
				s++;
			if (n + 1 >= sizeof(word)) {
				snprintf(err, errlen, "option word too long");
				return false;
			}
			word[n++] = *s++;
		}
		word[n] = 0;

		const char *assign = NULL;
		if (expect_c_arg) {
			assign = word;
			expect_c_arg = false;
		} else if (strcmp(word, "-c") == 0) {
			expect_c_arg = true;
			continue;
		} else if (strncmp(word, "-c", 2) == 0) {
			assign = word + 2;
		} else if (strncmp(word, "--", 2) == 0) {
			assign = word + 2;
		} else {
			snprintf(err, errlen, "unsupported option \"%.100s\" in options (only -c name=value)",
				 word);
			return false;
		}
		char *eq = strchr(assign, '=');
		if (!eq || eq == assign) {
			snprintf(err, errlen, "invalid option \"%.100s\": expected name=value", assign);
			return false;
		}
		*eq = 0;
		/* PostgreSQL accepts dashes for underscores in -c names. */
		for (char *c = (char *)assign; *c; c++)
			if (*c == '-')
				*c = '_';
		if (!add(arg, assign, eq + 1)) {
			snprintf(err, errlen, "out of memory");
			return false;
		}
	}
	if (expect_c_arg) {
		snprintf(err, errlen, "option -c needs an argument");
		return false;
	}
	return true;
}
