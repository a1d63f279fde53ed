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
#define ERR_FEATURE_NOT_SUPPORTED "0A000" /* protocol major version, replication connections */
#define ERR_TOO_MANY_CONNECTIONS "53300" /* max_client_conn reached */

/* Serving */
#define ERR_CONNECTION_FAILURE "08006"   /* upstream unreachable, server connection lost */
#define ERR_QUERY_WAIT_TIMEOUT "57014"   /* no server connection within query_wait_timeout */
#define ERR_IDLE_IN_TXN_TIMEOUT "25P03"  /* idle_transaction_timeout */
#define ERR_IDLE_SESSION_TIMEOUT "57P05" /* client_idle_timeout */
#define ERR_ADMIN_SHUTDOWN "57P01"       /* berth is shutting down */
#define ERR_INTERNAL "XX000"             /* out of memory and other internal failures */

#endif
