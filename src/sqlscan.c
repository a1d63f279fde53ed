/*
 * sqlscan.c - statement classification for the pooler's few decisions about
 * session state. Skips '...', E'...', "...", $tag$...$tag$, -- and block
 * comments; looks at each statement's first word (and a few following ones
 * for SET, CREATE, DISCARD, DEALLOCATE) and at words that may name an
 * advisory-lock function. Runs on every simple Query in transaction mode,
 * so it is one table-driven pass with no allocation and no library calls
 * for ordinary words.
 */
#include "sqlscan.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

enum char_class { CC_OTHER = 0, CC_WORD, CC_QUOTE, CC_DQUOTE, CC_DASH, CC_SLASH, CC_DOLLAR, CC_SEMI };

/* What a statement's first word makes it, for the words that follow. */
enum stmt_kind { SK_PLAIN = 0, SK_SET, SK_DISCARD, SK_CREATE, SK_DEALLOCATE, SK_PREPARE, SK_EXECUTE };

/* Byte classes for the scanner (GCC range designators keep the table constant). */
static const uint8_t char_class[256] = {
	['a' ... 'z'] = CC_WORD, ['A' ... 'Z'] = CC_WORD, ['0' ... '9'] = CC_WORD,
	['_'] = CC_WORD,	 [0x80 ... 0xff] = CC_WORD, ['\''] = CC_QUOTE,
	['"'] = CC_DQUOTE,	 ['-'] = CC_DASH,	    ['/'] = CC_SLASH,
	['$'] = CC_DOLLAR,	 [';'] = CC_SEMI,
};

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

/* Skip $tag$...$tag$ at s[i] == '$'; i+1 if it is no dollar quote (e.g. $1). */
static size_t skip_dollar(const char *s, size_t len, size_t i, const uint8_t *cls)
{
	size_t j = i + 1;
	while (j < len && cls[(uint8_t)s[j]] == CC_WORD && !(s[j] >= '0' && s[j] <= '9' && j == i + 1))
		j++;
	if (j >= len || s[j] != '$')
		return i + 1;
	size_t taglen = j - i + 1;
	for (size_t k = j + 1; k + taglen <= len; k++)
		if (s[k] == '$' && memcmp(s + k, s + i, taglen) == 0)
			return k + taglen;
	return len;
}

static bool word_is(const char *w, size_t n, const char *kw, size_t kwlen)
{
	return n == kwlen && strncasecmp(w, kw, n) == 0;
}
#define WORD_IS(w, n, lit) word_is((w), (n), (lit), sizeof(lit) - 1)

struct first_word {
	const char *word;
	uint8_t len;
	uint8_t kind;   /* enum stmt_kind */
	uint16_t flags; /* enum sqlscan_flag */
};

static const struct first_word first_words[] = {
	{"set", 3, SK_SET, 0}, /* decided by the next word: SET LOCAL is no session state */
	{"drop", 4, SK_PLAIN, SQL_DDL | SQL_SESSION_STATE}, /* DROP of a temp table may unpin */
	{"reset", 5, SK_PLAIN, SQL_RESETS_SETTINGS | SQL_SESSION_STATE},
	{"alter", 5, SK_PLAIN, SQL_DDL | SQL_SESSION_STATE},
	{"close", 5, SK_PLAIN, SQL_SESSION_STATE},
	{"listen", 6, SK_PLAIN, SQL_SESSION_STATE},
	{"create", 6, SK_CREATE, SQL_DDL},
	{"discard", 7, SK_DISCARD, SQL_RESETS_SETTINGS | SQL_SESSION_STATE},
	{"prepare", 7, SK_PREPARE, SQL_SESSION_STATE},
	{"execute", 7, SK_EXECUTE, 0},
	{"declare", 7, SK_PLAIN, SQL_SESSION_STATE},
	{"comment", 7, SK_PLAIN, SQL_DDL},
	{"unlisten", 8, SK_PLAIN, SQL_SESSION_STATE},
	{"truncate", 8, SK_PLAIN, SQL_DDL | SQL_SESSION_STATE},
	{"deallocate", 10, SK_DEALLOCATE, SQL_SESSION_STATE},
};

/* Per-statement state while walking words. */
struct stmt_scan {
	unsigned words;     /* words seen in this statement */
	enum stmt_kind kind;
};

static unsigned first_word(struct stmt_scan *st, const char *w, size_t n)
{
	if (n < 3 || n > 10)
		return 0;
	for (size_t i = 0; i < sizeof(first_words) / sizeof(first_words[0]); i++) {
		const struct first_word *fw = &first_words[i];
		if (fw->len == n && strncasecmp(w, fw->word, n) == 0) {
			st->kind = (enum stmt_kind)fw->kind;
			return fw->flags;
		}
	}
	return 0;
}

static void take_name(struct sqlscan_name *out, const char *base, const char *w, size_t n)
{
	if (!out || out->name[0])
		return; /* the first one counts */
	snprintf(out->name, sizeof(out->name), "%.*s", (int)n, w);
	out->off = (size_t)(w - base);
	out->len = n;
}

/* Words after the first, for the few statements that need them. */
static unsigned later_word(struct stmt_scan *st, const char *base, const char *w, size_t n,
			   struct sqlscan_name *out)
{
	switch (st->kind) {
	case SK_SET:
		if (st->words == 1) {
			if (WORD_IS(w, n, "local") || WORD_IS(w, n, "transaction")) {
				st->kind = SK_PLAIN; /* ends with the transaction */
				return 0;
			}
			return SQL_SESSION_STATE;
		}
		return WORD_IS(w, n, "default") ? SQL_RESETS_SETTINGS : 0;
	case SK_DISCARD:
		return WORD_IS(w, n, "all") || WORD_IS(w, n, "plans") ? SQL_DROPS_STATEMENTS : 0;
	case SK_CREATE:
		if (st->words > 3)
			st->kind = SK_PLAIN;
		return WORD_IS(w, n, "temp") || WORD_IS(w, n, "temporary") ? SQL_SESSION_STATE : 0;
	case SK_DEALLOCATE:
		if (WORD_IS(w, n, "prepare"))
			return 0; /* DEALLOCATE PREPARE name */
		st->kind = SK_PLAIN;
		if (WORD_IS(w, n, "all"))
			return SQL_DROPS_STATEMENTS;
		take_name(out, base, w, n);
		return SQL_DEALLOCATE_NAME;
	case SK_PREPARE:
		st->kind = SK_PLAIN;
		take_name(out, base, w, n);
		return SQL_PREPARE_NAME;
	case SK_EXECUTE:
		st->kind = SK_PLAIN;
		take_name(out, base, w, n);
		return SQL_EXECUTE_NAME;
	case SK_PLAIN:
	default:
		return 0;
	}
}

/* pg_advisory_* or pg_try_advisory_*, but not the _xact_ ones (they end with the transaction). */
static bool is_session_advisory(const char *w, size_t n)
{
	size_t prefix;
	if (n >= 12 && strncasecmp(w, "pg_advisory_", 12) == 0)
		prefix = 12;
	else if (n >= 16 && strncasecmp(w, "pg_try_advisory_", 16) == 0)
		prefix = 16;
	else
		return false;
	/* Within the word: the text may end right after it, with no NUL. */
	return !(n - prefix >= 4 && strncasecmp(w + prefix, "xact", 4) == 0);
}

/*
 * Whether "advisory" (any case) ends at one of the @last bytes in the text.
 * memchr is vectorised and 'y' is rare in SQL, so this costs a fraction of
 * two generic memmem calls on the hot path (every Query and Parse).
 */
static bool mentions_advisory(const char *s, size_t len, char last)
{
	const char *end = s + len;
	for (const char *p = s + 7; p < end; p++) {
		p = memchr(p, last, (size_t)(end - p));
		if (!p)
			return false;
		if (strncasecmp(p - 7, "advisor", 7) == 0)
			return true;
	}
	return false;
}

/* A first word that never touches session state (length first: one compare or few). */
static bool plain_first_word(const char *w, size_t n)
{
	/* Word bytes are letters, digits, '_' and >= 0x80: | 0x20 lowers only letters. */
	char lw[8];
	if (n < 3 || n > sizeof(lw))
		return false;
	for (size_t i = 0; i < n; i++)
		lw[i] = (char)(w[i] | 0x20);
	switch (n) {
	case 3:
		return memcmp(lw, "end", 3) == 0;
	case 4:
		return memcmp(lw, "with", 4) == 0;
	case 5:
		return memcmp(lw, "begin", 5) == 0;
	case 6:
		return memcmp(lw, "select", 6) == 0 || memcmp(lw, "insert", 6) == 0 ||
		       memcmp(lw, "update", 6) == 0 || memcmp(lw, "delete", 6) == 0 ||
		       memcmp(lw, "commit", 6) == 0 || memcmp(lw, "values", 6) == 0;
	case 8:
		return memcmp(lw, "rollback", 8) == 0;
	default:
		return false;
	}
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The next word of s at *i (after blanks): its start and length; 0 if none. */
static size_t next_word(const char *s, size_t len, size_t *i, const char **w)
{
	while (*i < len && is_blank(s[*i]))
		(*i)++;
	*w = s + *i;
	size_t start = *i;
	while (*i < len && char_class[(uint8_t)s[*i]] == CC_WORD)
		(*i)++;
	return *i - start;
}

/*
 * The common case in one look: a single statement starting with a word that
 * never touches session state, with no advisory-lock function in it. memchr
 * and memmem are vectorised in libc, far cheaper than the byte loop below.
 */
static bool plain_statement(const char *s, size_t len)
{
	size_t i = 0;
	const char *w;
	size_t n = next_word(s, len, &i, &w);
	if (!plain_first_word(w, n))
		return false;
	/* A ';' may end the text; anything after it needs the full scan. */
	const char *semi = memchr(s, ';', len);
	if (semi) {
		for (const char *p = semi + 1; p < s + len; p++)
			if (!is_blank(*p))
				return false;
	}
	return !mentions_advisory(s, len, 'y') && !mentions_advisory(s, len, 'Y');
}

unsigned sqlscan_classify(const char *s, size_t len, struct sqlscan_name *name)
{
	if (name)
		name->name[0] = 0;
	if (plain_statement(s, len))
		return 0;
	const uint8_t *cls = char_class;
	unsigned flags = 0;
	struct stmt_scan st = {0};
	unsigned statements = 0;
	size_t i = 0;
	while (i < len) {
		switch (cls[(uint8_t)s[i]]) {
		case CC_WORD: {
			size_t start = i;
			while (++i < len && cls[(uint8_t)s[i]] == CC_WORD)
				;
			const char *w = s + start;
			size_t n = i - start;
			if (n >= 12 && (w[0] | 0x20) == 'p' && (w[1] | 0x20) == 'g' && w[2] == '_' &&
			    is_session_advisory(w, n))
				flags |= SQL_SESSION_STATE;
			if (st.words == 0) {
				if (statements++)
					flags |= SQL_MULTI;
				flags |= first_word(&st, w, n);
			}
			else if (st.kind != SK_PLAIN)
				flags |= later_word(&st, s, w, n, name);
			st.words++;
			break;
		}
		case CC_QUOTE: {
			bool esc = i > 0 && (s[i - 1] == 'E' || s[i - 1] == 'e');
			i = skip_quoted(s, len, i, '\'', esc);
			break;
		}
		case CC_DQUOTE:
			i = skip_quoted(s, len, i, '"', false);
			break;
		case CC_DASH:
			if (i + 1 < len && s[i + 1] == '-') {
				const char *nl = memchr(s + i, '\n', len - i);
				i = nl ? (size_t)(nl - s) : len;
			} else {
				i++;
			}
			break;
		case CC_SLASH:
			if (i + 1 < len && s[i + 1] == '*') {
				size_t k = i + 2;
				while (k + 1 < len && !(s[k] == '*' && s[k + 1] == '/'))
					k++;
				i = k + 2 <= len ? k + 2 : len;
			} else {
				i++;
			}
			break;
		case CC_DOLLAR:
			i = skip_dollar(s, len, i, cls);
			break;
		case CC_SEMI:
			st.words = 0;
			st.kind = SK_PLAIN;
			i++;
			break;
		default:
			i++;
			break;
		}
	}
	return flags;
}

/* Past an optional WORK or TRANSACTION at s[*i]. */
static void skip_work_or_transaction(const char *s, size_t len, size_t *i)
{
	size_t save = *i;
	const char *w;
	size_t n = next_word(s, len, i, &w);
	if (!WORD_IS(w, n, "work") && !WORD_IS(w, n, "transaction"))
		*i = save;
}

/* tag if s[i..len) is only blanks and one optional ';', else NULL. */
static const char *tag_if_ends(const char *s, size_t len, size_t i, const char *tag)
{
	while (i < len && is_blank(s[i]))
		i++;
	if (i < len && s[i] == ';')
		i++;
	while (i < len && is_blank(s[i]))
		i++;
	return i == len ? tag : NULL;
}

const char *sqlscan_plain_begin(const char *s, size_t len)
{
	size_t i = 0;
	const char *w;
	size_t n = next_word(s, len, &i, &w);
	if (WORD_IS(w, n, "begin")) {
		skip_work_or_transaction(s, len, &i);
		return tag_if_ends(s, len, i, "BEGIN");
	}
	if (!WORD_IS(w, n, "start"))
		return NULL;
	n = next_word(s, len, &i, &w);
	return WORD_IS(w, n, "transaction") ? tag_if_ends(s, len, i, "START TRANSACTION") : NULL;
}

const char *sqlscan_plain_end(const char *s, size_t len)
{
	size_t i = 0;
	const char *w;
	size_t n = next_word(s, len, &i, &w);
	const char *tag = WORD_IS(w, n, "commit") || WORD_IS(w, n, "end")	   ? "COMMIT"
			  : WORD_IS(w, n, "rollback") || WORD_IS(w, n, "abort") ? "ROLLBACK"
										 : NULL;
	if (!tag)
		return NULL;
	skip_work_or_transaction(s, len, &i);
	return tag_if_ends(s, len, i, tag);
}
