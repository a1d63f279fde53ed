/*
 * errors.h - every SQLSTATE berth itself sends to clients, in one place.
 * Tests assert these codes, not the wording of the messages.
 */
#ifndef BERTH_ERRORS_H
#define BERTH_ERRORS_H

/* Login */
#define ERR_INVALID_PASSWORD "28P01"     /* wrong password, unknown user under password auth */
#define ERR_INVALID_AUTH_SPEC "28000"    /* unknown user under trust, auth method the client refuses */
#define ERR_UNKNOWN_DATABASE "3D000"     /* no such database in [databases] */
#define ERR_PROTOCOL_VIOLATION "08P01"   /* malformed packet, bad SCRAM message, login timeout */
#define ERR_FEATURE_NOT_SUPPORTED "0A000" /* protocol major version */
#define ERR_INVALID_PARAMETER "22023"   /* a startup parameter's bad value (replication=) */
#define ERR_TOO_MANY_CONNECTIONS "53300" /* max_client_conn reached */

/* Serving */
#define ERR_CONNECTION_FAILURE "08006"   /* upstream unreachable, server connection lost */
#define ERR_QUERY_WAIT_TIMEOUT "57014"   /* no server connection within query_wait_timeout */
#define ERR_QUERY_CANCELED "57014"       /* query_timeout: the query ran too long */
#define ERR_IDLE_IN_TXN_TIMEOUT "25P03"  /* idle_transaction_timeout */
#define ERR_TXN_TIMEOUT "25P04"          /* transaction_timeout (PostgreSQL 17's code for its own) */
#define ERR_IDLE_SESSION_TIMEOUT "57P05" /* client_idle_timeout */
#define ERR_ADMIN_SHUTDOWN "57P01"       /* berth is shutting down */
#define ERR_INTERNAL "XX000"             /* out of memory and other internal failures */

/*
 * Admin console (virtual database berth / pgbouncer). PgBouncer answers every
 * console error with 08P01 but a failed RELOAD; berth does the same so scripts
 * written for PgBouncer see the same codes. Messages:
 *   at login:  "not allowed" (user in neither admin_users nor stats_users),
 *              "database does not allow connections: DB" (DISABLE)
 *   commands:  "invalid command '...', use SHOW HELP;", "admin access needed",
 *              "no such database: DB", "database DB is not paused",
 *              "already suspended/paused", "pooler is not paused/suspended",
 *              "pooler is shutting down", "a database is required",
 *              "cannot pause|kill|reconnect|disable|enable|wait in admin db: DB",
 *              "client not found", "invalid client pointer supplied",
 *              "unknown setting: KEY", "setting KEY needs a restart",
 *              "SET failed: key \"KEY\": why", "extended query protocol not
 *              supported by admin console", "unsupported packet type for admin
 *              console: T"
 *   to others: "admin forced disconnect" (KILL_CLIENT), "database removed" (KILL)
 */
#define ERR_CONSOLE "08P01"
#define ERR_CONSOLE_RELOAD "F0000"       /* RELOAD failed: "RELOAD failed: why" */
#define ERR_CONSOLE_CANCELED "57014"     /* a waiting PAUSE/SUSPEND/WAIT_CLOSE was cancelled */

#endif
