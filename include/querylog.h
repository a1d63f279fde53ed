/*
 * querylog.h - one log line per completed statement (log_level "query"):
 * the text of each simple Query, or of the statement an Execute runs (the
 * unnamed Parse, or a client's shared prepared statement) with its Bind
 * parameters when log_parameters is on, kept per client from the request
 * to its completion (CommandComplete, error, ReadyForQuery). Password
 * literals are masked before anything is kept. Sends nothing and owns no
 * buffers but its own; with "query" off nobody calls it and a client has
 * no state (one NULL pointer).
 */
#ifndef BERTH_QUERYLOG_H
#define BERTH_QUERYLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "sbuf.h"

struct client;
struct querylog;
struct replyq;

/*
 * client.c: a request from c about to be relayed to its server (Query,
 * Parse, Bind, Execute matter; others are ignored). data/avail as in
 * sbuf_ops.on_message: the message may be partial. Remembers texts and
 * notes a Query or Execute as the next statement, which becomes in flight
 * at querylog_commit. Safe to call again for the same message (after
 * SB_FLUSH or SB_NEED_FULL). Allocates c's state on first use only.
 */
void querylog_request(struct client *c, const struct pkt_hdr *hdr, const uint8_t *data,
		      size_t avail);
/*
 * server.c: the reply-queue entry of the Query or Execute noted last was
 * pushed. Returns the number that entry carries (struct req.qlog) until
 * its completion, 0 when it is not logged.
 */
uint16_t querylog_commit(struct client *c);
/*
 * server.c: a reply from c's server, before server.c acts on it (q's head
 * is the request it answers). Logs the statements it completes. Returns
 * SB_NEED_FULL when the whole (small) message is needed first, else
 * SB_FORWARD: carry on as usual.
 */
enum sbuf_action querylog_reply(struct client *c, struct replyq *q, const struct pkt_hdr *hdr,
				const uint8_t *data, size_t avail);
void querylog_free(struct querylog *ql);

/*
 * Copy SQL text to out (at most cap bytes, never ending inside a UTF-8
 * character) with the literal after each PASSWORD keyword replaced by ***
 * (ALTER/CREATE ROLE ... PASSWORD '...', E'...', $$...$$, password=... in
 * connection strings, quoted literals nested in literals). *hide_params:
 * the password is a parameter ($n), so parameters must not be shown.
 * *cut: not everything fitted. Returns the bytes written. For unit tests too.
 */
size_t querylog_copy_masked(char *out, size_t cap, const char *sql, size_t len, bool *hide_params,
			    bool *cut);
/*
 * Render Bind parameters, given the Bind body after the statement name
 * (format codes, values), as "$1 = 'text', $2 = NULL, $3 = '\x00ff'"
 * (binary values in hex up to 32 bytes, else their length). A body cut
 * short (partial message) ends in "...". At most cap bytes; *cut as above.
 */
size_t querylog_render_params(char *out, size_t cap, const uint8_t *p, size_t len, bool *cut);

#endif
