/*
 * sqlscan.c - keyword spotting in SQL text for the pooler's few decisions
 * about session state. Skips '...', E'...', "...", $tag$...$tag$, -- and
 * block comments; compares words case-insensitively. Linear, no allocation.
 */
#include "sqlscan.h"

#include <string.h>
#include <strings.h>

static bool is_word_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '$' || (unsigned char)c >= 0x80;
}

/* Skip a quoted run starting at s[i] == q; returns the index after it. */
static size_t skip_quoted(const char *s, size_t len, size_t i, char q)
{
	for (i++; i < len; i++) {
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

bool sqlscan_may_reset_settings(const char *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		char c = s[i];
		if (c == '\'' ) {
			i = skip_quoted(s, len, i, '\'');
		} else if (c == '"') {
			i = skip_quoted(s, len, i, '"');
		} else if (c == '-' && i + 1 < len && s[i + 1] == '-') {
			while (i < len && s[i] != '\n')
				i++;
		} else if (c == '/' && i + 1 < len && s[i + 1] == '*') {
			const char *end = NULL;
			for (size_t k = i + 2; k + 1 < len; k++)
				if (s[k] == '*' && s[k + 1] == '/') {
					end = s + k + 2;
					break;
				}
			i = end ? (size_t)(end - s) : len;
		} else if (c == '$' && (i == 0 || !is_word_char(s[i - 1]))) {
			i = skip_dollar(s, len, i);
		} else if (is_word_char(c)) {
			size_t start = i;
			while (i < len && is_word_char(s[i]))
				i++;
			size_t n = i - start;
			if (n >= 5 && n <= 7 &&
			    (word_is(s + start, n, "reset") || word_is(s + start, n, "discard") ||
			     word_is(s + start, n, "default")))
				return true;
		} else {
			i++;
		}
	}
	return false;
}
