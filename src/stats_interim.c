/*
 * stats_interim.c - TODO(#5): stand-in for the lead's stats.c so the
 * console builds before it lands: sums a database's pool counters; no
 * averages yet (zeros). Delete once main has stats.c.
 */
#include <string.h>

#include "pool.h"
#include "runtime.h"
#include "stats.h"

void stats_database_totals(struct worker *w, const struct database *db, struct pool_stats *out);
void stats_database_averages(struct worker *w, const struct database *db,
			     struct stats_averages *out);

void stats_database_totals(struct worker *w, const struct database *db, struct pool_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (struct list *pos = w->pools.next; pos != &w->pools; pos = pos->next) {
		const struct pool *p = list_entry(pos, struct pool, node);
		if (p->db != db)
			continue;
		const struct pool_stats *s = &p->stats;
		out->server_assignment_count += s->server_assignment_count;
		out->xact_count += s->xact_count;
		out->query_count += s->query_count;
		out->received += s->received;
		out->sent += s->sent;
		out->xact_time_us += s->xact_time_us;
		out->query_time_us += s->query_time_us;
		out->wait_time_us += s->wait_time_us;
		out->client_parse_count += s->client_parse_count;
		out->server_parse_count += s->server_parse_count;
		out->bind_count += s->bind_count;
		out->errors += s->errors;
	}
}

void stats_database_averages(struct worker *w, const struct database *db,
			     struct stats_averages *out)
{
	(void)w;
	(void)db;
	memset(out, 0, sizeof(*out));
}
