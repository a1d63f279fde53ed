/*
 * sqlscan.c - statement classification for the pooler's few decisions about
 * session state. Skips '...', E'...', "...", $tag$...$tag$, -- and block
 * comments; compares words case-insensitively. Linear, no allocation.
 */
#include "sqlscan.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool is_word_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '$' || (unsigned char)c >= 0x80;
}

/* Skip a quoted run starting at s[i] == q; returns the index after it. */
static size_t skip_quoted(const char *s, size_t len, size_t i, char q, bool backslash)
{
	for (i++; i < len; i++) {
		if (backslash && s[i] == '\\') {
			i++;
			continue;
		}
		if (s[i] == q) {
			if (i + 1 < len && s[i + 1] == q) {
				i++; /* doubled quote */
				continue;
			}
			return i + 1;
		}
	}
	return len;
}

/* Skip $tag$...$tag$ starting at s[i] == '$'; returns i+1 if it is no dollar quote. */
static size_t skip_dollar(const char *s, size_t len, size_t i)
{
	size_t j = i + 1;
	while (j < len && s[j] != '$' && is_word_char(s[j]))
		j++;
	if (j >= len || s[j] != '$')
		return i + 1;
	size_t taglen = j - i + 1;
	for (size_t k = j + 1; k + taglen <= len; k++)
		if (s[k] == '$' && memcmp(s + k, s + i, taglen) == 0)
			return k + taglen;
	return len;
}

static bool word_is(const char *w, size_t n, const char *kw)
{
	return strlen(kw) == n && strncasecmp(w, kw, n) == 0;
}

static bool word_starts(const char *w, size_t n, const char *prefix)
{
	size_t m = strlen(prefix);
	return n >= m && strncasecmp(w, prefix, m) == 0;
}

/* Per-statement state while walking words. */
struct stmt_scan {
	unsigned words;     /* words seen in this statement */
	char first[16];     /* its first word, lower-cased (truncated) */
	bool dealloc_next;  /* DEALLOCATE [PREPARE] seen: the next word is the name */
};

static void lower_copy(char *dst, size_t cap, const char *w, size_t n)
{
	size_t m = n < cap - 1 ? n : cap - 1;
	for (size_t i = 0; i < m; i++)
		dst[i] = (char)((w[i] >= 'A' && w[i] <= 'Z') ? w[i] + 32 : w[i]);
	dst[m] = 0;
}

static unsigned classify_first_word(const char *first)
{
	if (!strcmp(first, "reset"))
		return SQL_RESETS_SETTINGS | SQL_SESSION_STATE;
	if (!strcmp(first, "discard"))
		return SQL_RESETS_SETTINGS | SQL_SESSION_STATE;
	if (!strcmp(first, "set") || !strcmp(first, "listen") || !strcmp(first, "unlisten") ||
	    !strcmp(first, "prepare") || !strcmp(first, "declare") || !strcmp(first, "close"))
		return SQL_SESSION_STATE;
	if (!strcmp(first, "alter") || !strcmp(first, "drop") || !strcmp(first, "comment") ||
	    !strcmp(first, "truncate"))
		return SQL_DDL | SQL_SESSION_STATE; /* DROP of a temp table may unpin */
	if (!strcmp(first, "create"))
		return SQL_DDL; /* TEMP is looked for in the following words */
	return 0;
}

static unsigned classify_word(struct stmt_scan *st, const char *w, size_t n, char *dealloc_name,
			      size_t namelen)
{
	unsigned f = 0;
	/* Session advisory locks (the _xact_ ones end with the transaction). */
	if ((word_starts(w, n, "pg_advisory_") || word_starts(w, n, "pg_try_advisory_")) &&
	    !memmem(w, n, "xact", 4))
		f |= SQL_SESSION_STATE;
	if (st->words == 0) {
		lower_copy(st->first, sizeof(st->first), w, n);
		f |= classify_first_word(st->first);
		if (!strcmp(st->first, "deallocate"))
			st->dealloc_next = true;
	} else if (st->dealloc_next) {
		if (word_is(w, n, "prepare")) {
			/* DEALLOCATE PREPARE name */
		} else if (word_is(w, n, "all")) {
			f |= SQL_DROPS_STATEMENTS | SQL_SESSION_STATE;
			st->dealloc_next = false;
		} else {
			f |= SQL_DEALLOCATE_NAME | SQL_SESSION_STATE;
			if (dealloc_name && namelen)
				snprintf(dealloc_name, namelen, "%.*s", (int)n, w);
			st->dealloc_next = false;
		}
	} else if (!strcmp(st->first, "set") && st->words == 1 &&
		   (word_is(w, n, "local") || word_is(w, n, "transaction"))) {
		f = 0; /* SET LOCAL / SET TRANSACTION end with the transaction */
		st->first[0] = 0;
	} else if (!strcmp(st->first, "set") && word_is(w, n, "default")) {
		f |= SQL_RESETS_SETTINGS;
	} else if (!strcmp(st->first, "discard") && (word_is(w, n, "all") || word_is(w, n, "plans"))) {
		f |= SQL_DROPS_STATEMENTS;
	} else if (!strcmp(st->first, "create") && st->words <= 3 &&
		   (word_is(w, n, "temp") || word_is(w, n, "temporary"))) {
		f |= SQL_SESSION_STATE;
	}
	st->words++;
	return f;
}

unsigned sqlscan_classify(const char *s, size_t len, char *dealloc_name, size_t namelen)
{
	unsigned flags = 0;
	struct stmt_scan st = {0};
	size_t i = 0;
	while (i < len) {
		char c = s[i];
		if (c == '\'') {
			bool esc = i > 0 && (s[i - 1] == 'E' || s[i - 1] == 'e');
			i = skip_quoted(s, len, i, '\'', esc);
		} else if (c == '"') {
			i = skip_quoted(s, len, i, '"', false);
		} else if (c == '-' && i + 1 < len && s[i + 1] == '-') {
			while (i < len && s[i] != '\n')
				i++;
		} else if (c == '/' && i + 1 < len && s[i + 1] == '*') {
			size_t k = i + 2;
			while (k + 1 < len && !(s[k] == '*' && s[k + 1] == '/'))
				k++;
			i = k + 2 <= len ? k + 2 : len;
		} else if (c == '$' && (i == 0 || !is_word_char(s[i - 1]))) {
			i = skip_dollar(s, len, i);
		} else if (c == ';') {
			memset(&st, 0, sizeof(st));
			i++;
		} else if (is_word_char(c)) {
			size_t start = i;
			while (i < len && is_word_char(s[i]))
				i++;
			flags |= classify_word(&st, s + start, i - start, dealloc_name, namelen);
		} else {
			i++;
		}
	}
	return flags;
}
