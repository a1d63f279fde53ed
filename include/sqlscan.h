/*
 * sqlscan.h - a small, fast look at SQL text the pooler already holds (a
 * simple Query or a Parse). Not a parser: it finds keywords outside quotes
 * and comments, enough to know when a statement touches session state.
 */
#ifndef BERTH_SQLSCAN_H
#define BERTH_SQLSCAN_H

#include <stdbool.h>
#include <stddef.h>

/*
 * True if the text may reset run-time parameters to their session defaults:
 * it has RESET, DISCARD or DEFAULT as a word outside string literals, quoted
 * identifiers and comments. False positives only cost a re-sync.
 */
bool sqlscan_may_reset_settings(const char *sql, size_t len);

#endif
