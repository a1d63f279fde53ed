/*
 * sqlscan.h - a small, fast look at SQL text the pooler already holds (a
 * simple Query or a Parse). Not a parser: it splits statements at ';'
 * outside quotes and comments, looks at each statement's first words, and
 * spots advisory-lock functions anywhere. Enough to know when a statement
 * touches session state; false positives only cost a check.
 */
#ifndef BERTH_SQLSCAN_H
#define BERTH_SQLSCAN_H

#include <stdbool.h>
#include <stddef.h>

enum sqlscan_flag {
	SQL_RESETS_SETTINGS = 1 << 0,  /* RESET, DISCARD, SET ... TO DEFAULT */
	SQL_SESSION_STATE = 1 << 1,    /* SET (not LOCAL), LISTEN, UNLISTEN, temp tables,
					* advisory locks, PREPARE, DECLARE, SET ROLE...: check after */
	SQL_DDL = 1 << 2,              /* ALTER, DROP, CREATE, COMMENT...: plans may be stale */
	SQL_DROPS_STATEMENTS = 1 << 3, /* DISCARD ALL/PLANS, DEALLOCATE ALL: server forgets statements */
	SQL_DEALLOCATE_NAME = 1 << 4,  /* DEALLOCATE name: the name is returned */
	SQL_MULTI = 1 << 5,            /* more than one statement */
	SQL_PREPARE_NAME = 1 << 6,     /* PREPARE name ...: the name is returned */
	SQL_EXECUTE_NAME = 1 << 7,     /* EXECUTE name ...: the name and where it is are returned */
};

/* A statement name a PREPARE, EXECUTE or DEALLOCATE refers to. */
struct sqlscan_name {
	char name[64]; /* as written (unquoted identifiers only) */
	size_t off;    /* where it starts in the text */
	size_t len;    /* its length there */
};

/*
 * Classify sql[0..len) into a set of enum sqlscan_flag. name (may be NULL)
 * receives the statement name of the first DEALLOCATE, PREPARE or EXECUTE.
 */
unsigned sqlscan_classify(const char *sql, size_t len, struct sqlscan_name *name);

/*
 * Is sql[0..len) exactly a plain transaction start: BEGIN, BEGIN WORK, BEGIN
 * TRANSACTION or START TRANSACTION, any case, with blanks and one ';' around
 * it and nothing else (no isolation level, no comment)? Returns the command
 * tag PostgreSQL answers it with ("BEGIN" or "START TRANSACTION"), or NULL.
 */
const char *sqlscan_plain_begin(const char *sql, size_t len);
/*
 * The same for a plain transaction end: COMMIT, END, ROLLBACK or ABORT, with
 * an optional WORK or TRANSACTION (no AND CHAIN, no TO SAVEPOINT). Returns
 * PostgreSQL's tag ("COMMIT" or "ROLLBACK"), or NULL.
 */
const char *sqlscan_plain_end(const char *sql, size_t len);

#endif
