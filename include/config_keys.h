/*
 * config_keys.h - every setting berth has, declared once. The same list
 * generates struct config, the parser table, SHOW CONFIG, doc/config.md and
 * etc/berth.ini.sample (berth --config-doc / --config-sample).
 * Names are PgBouncer's wherever the setting means the same.
 *
 * CONFIG_KEY(name, type, default, min, max, flags, help)
 *   type:  CT_INT, CT_BOOL, CT_TIME (seconds, fractions and units accepted;
 *          stored as microseconds; min is a floor in microseconds, max unused),
 *          CT_STRING, CT_ENUM (allowed values in enum_tables in config.c),
 *          CT_SIZE (bytes; kB/MB/GB suffixes accepted)
 *   flags: CF_RELOAD (applies on reload), CF_RESTART (needs a restart),
 *          CF_SECRET (never shown or logged)
 */
CONFIG_KEY(listen_addr, CT_STRING, "127.0.0.1", 0, 0, CF_RESTART,
	   "Address to listen on for TCP clients; * for all, empty for none.")
CONFIG_KEY(listen_port, CT_INT, "6432", 1, 65535, CF_RESTART, "TCP port to listen on.")
CONFIG_KEY(listen, CT_STRING, "", 0, 0, CF_RESTART,
	   "host:port shorthand for listen_addr and listen_port (BERTH_LISTEN).")
CONFIG_KEY(unix_socket_dir, CT_STRING, "", 0, 0, CF_RESTART,
	   "Directory for the unix socket .s.PGSQL.<listen_port>; empty for none.")
CONFIG_KEY(unix_socket_mode, CT_INT, "511", 0, 511, CF_RESTART,
	   "Permissions of the unix socket (decimal; 511 = 0777).")
CONFIG_KEY(http_listen, CT_STRING, "", 0, 0, CF_RESTART,
	   "host:port (or [v6addr]:port) for the HTTP endpoints /health, /ready and /metrics; empty = off (BERTH_HTTP_LISTEN).")
CONFIG_KEY(pool_mode, CT_ENUM, "transaction", 0, 0, CF_RELOAD,
	   "When a server connection goes back to the pool: session, transaction, or statement (transaction mode that refuses transaction blocks).")
CONFIG_KEY(default_pool_size, CT_INT, "20", 1, 100000, CF_RELOAD,
	   "Server connections per database/user pair (BERTH_POOL_SIZE).")
CONFIG_KEY(min_pool_size, CT_INT, "0", 0, 100000, CF_RELOAD,
	   "Keep at least this many server connections open per pool.")
CONFIG_KEY(reserve_pool_size, CT_INT, "0", 0, 100000, CF_RELOAD,
	   "Extra server connections a pool may open when clients wait longer than reserve_pool_timeout.")
CONFIG_KEY(reserve_pool_timeout, CT_TIME, "5", 0, 0, CF_RELOAD,
	   "How long a client waits before the reserve pool is used.")
CONFIG_KEY(max_client_conn, CT_INT, "1000", 1, 1000000, CF_RELOAD,
	   "Most client connections berth accepts at once.")
CONFIG_KEY(max_db_connections, CT_INT, "0", 0, 1000000, CF_RELOAD,
	   "Most server connections per database, all users together; 0 = no limit.")
CONFIG_KEY(max_user_connections, CT_INT, "0", 0, 1000000, CF_RELOAD,
	   "Most server connections per user, all databases together; 0 = no limit.")
CONFIG_KEY(max_db_client_connections, CT_INT, "0", 0, 1000000, CF_RELOAD,
	   "Most client connections per database (all users); 0 = no limit. Per database: max_db_client_connections= in its entry.")
CONFIG_KEY(max_user_client_connections, CT_INT, "0", 0, 1000000, CF_RELOAD,
	   "Most client connections per user (all databases); 0 = no limit. Per user: max_user_client_connections= in [users].")
CONFIG_KEY(auth_type, CT_ENUM, "scram-sha-256", 0, 0, CF_RELOAD,
	   "How clients authenticate: scram-sha-256, md5, plain, trust, cert (a TLS client certificate whose common name is the user; needs client_tls_sslmode verify-ca or verify-full), or hba (auth_hba_file picks the method per connection).")
CONFIG_KEY(auth_file, CT_STRING, "", 0, 0, CF_RELOAD,
	   "userlist.txt-style file: \"user\" \"password, md5 hash or SCRAM verifier\" per line.")
CONFIG_KEY(auth_hba_file, CT_STRING, "", 0, 0, CF_RELOAD,
	   "With auth_type hba: a pg_hba.conf-style file (local, host, hostssl, hostnossl; all, sameuser, @file or names; addresses with /prefix or mask; trust, reject, md5, password, scram-sha-256, cert, peer). The first line matching a login's connection type, database, user and address picks its method; no line refuses it. Read at start and reload.")
CONFIG_KEY(admin_users, CT_STRING, "", 0, 0, CF_RELOAD,
	   "Comma list of users allowed to run admin console commands.")
CONFIG_KEY(stats_users, CT_STRING, "", 0, 0, CF_RELOAD,
	   "Comma list of users allowed read-only SHOW commands on the console.")
CONFIG_KEY(server_reset_query, CT_STRING, "DISCARD ALL", 0, 0, CF_RELOAD,
	   "Run on a server connection when a session-mode client leaves it.")
CONFIG_KEY(server_reset_query_always, CT_BOOL, "0", 0, 1, CF_RELOAD,
	   "Run server_reset_query in transaction mode too.")
CONFIG_KEY(server_check_query, CT_STRING, "select 1", 0, 0, CF_RELOAD,
	   "Run on a server connection idle longer than server_check_delay, or idle when a health check failed, before lending it; empty = never.")
CONFIG_KEY(server_check_delay, CT_TIME, "30", 0, 0, CF_RELOAD,
	   "How long a server connection may sit idle before server_check_query runs on it.")
CONFIG_KEY(server_round_robin, CT_BOOL, "0", 0, 1, CF_RELOAD,
	   "Lend idle server connections in turn, the longest idle first, instead of the most recently used (which keeps few connections busy and lets the rest time out); turn on to spread load evenly behind a TCP load balancer.")
CONFIG_KEY(server_fast_close, CT_BOOL, "0", 0, 1, CF_RELOAD,
	   "Session mode: a server connection RECONNECT marked closes as soon as its client is between transactions, and the client is disconnected (FATAL 57P01), instead of when the client leaves. Transaction mode always does so.")
CONFIG_KEY(server_idle_timeout, CT_TIME, "600", 0, 0, CF_RELOAD,
	   "Close server connections idle longer than this; 0 = never.")
CONFIG_KEY(server_lifetime, CT_TIME, "3600", 0, 0, CF_RELOAD,
	   "Close server connections older than this when they are next idle; 0 = never.")
CONFIG_KEY(server_connect_timeout, CT_TIME, "15", 0, 0, CF_RELOAD,
	   "Give up on a server connection attempt after this long.")
CONFIG_KEY(server_tls_sslmode, CT_STRING, "", 0, 0, CF_RELOAD,
	   "libpq sslmode for server logins whose entry sets none: disable, allow, prefer, require, verify-ca or verify-full; empty = libpq's default (prefer).")
CONFIG_KEY(server_tls_ca_file, CT_STRING, "", 0, 0, CF_RELOAD,
	   "CA certificates to check servers against (libpq sslrootcert) where the entry sets none.")
CONFIG_KEY(server_tls_cert_file, CT_STRING, "", 0, 0, CF_RELOAD,
	   "Client certificate berth presents to servers (libpq sslcert) where the entry sets none.")
CONFIG_KEY(server_tls_key_file, CT_STRING, "", 0, 0, CF_RELOAD,
	   "Private key of server_tls_cert_file (libpq sslkey) where the entry sets none.")
CONFIG_KEY(server_tls_protocols, CT_STRING, "", 0, 0, CF_RELOAD,
	   "TLS versions for server logins, as PgBouncer writes them (secure, all, legacy, or a list of tlsv1.0 .. tlsv1.3), given to libpq as ssl_min/max_protocol_version; empty = libpq's default (TLSv1.2 and up).")
CONFIG_KEY(client_tls_sslmode, CT_ENUM, "disable", 0, 0, CF_RELOAD,
	   "TLS for TCP clients: disable (SSLRequest answered N), allow or prefer (TLS when the client asks for it, by SSLRequest or directly as with PostgreSQL 17's sslnegotiation=direct), require (plain clients refused), verify-ca (and a client certificate signed by client_tls_ca_file), verify-full (and its common name equal to the user name). Unix-socket clients never use TLS. New connections only.")
CONFIG_KEY(client_tls_cert_file, CT_STRING, "", 0, 0, CF_RELOAD,
	   "Certificate (PEM, chain allowed) berth shows clients; with client_tls_key_file also empty, a self-signed certificate made at start (enough for sslmode=require, not for verify-ca/verify-full clients).")
CONFIG_KEY(client_tls_key_file, CT_STRING, "", 0, 0, CF_RELOAD,
	   "Private key (PEM) of client_tls_cert_file.")
CONFIG_KEY(client_tls_ca_file, CT_STRING, "", 0, 0, CF_RELOAD,
	   "CA certificates client certificates must be signed by (client_tls_sslmode verify-ca and verify-full).")
CONFIG_KEY(client_tls_protocols, CT_STRING, "secure", 0, 0, CF_RELOAD,
	   "TLS versions offered to clients: secure (TLSv1.2 and 1.3), all, legacy, or a list of tlsv1.0 .. tlsv1.3.")
CONFIG_KEY(client_tls_ciphers, CT_STRING, "default", 0, 0, CF_RELOAD,
	   "OpenSSL cipher list for TLS 1.2 and older; default, secure, normal or fast = OpenSSL's defaults, legacy or all = ALL.")
CONFIG_KEY(client_tls13_ciphers, CT_STRING, "", 0, 0, CF_RELOAD,
	   "OpenSSL TLS 1.3 cipher suites (TLS_AES_256_GCM_SHA384:...); empty = OpenSSL's defaults.")
CONFIG_KEY(client_tls_ecdhcurve, CT_STRING, "auto", 0, 0, CF_RELOAD,
	   "Key exchange groups offered to clients (OpenSSL list, e.g. X25519:prime256v1); auto = OpenSSL's defaults.")
CONFIG_KEY(server_login_retry, CT_TIME, "15", 0, 0, CF_RELOAD,
	   "Longest wait between connection attempts after a failed server login (backoff starts at 0.25 s).")
CONFIG_KEY(health_check_period, CT_TIME, "5", 100000, 0, CF_RELOAD,
	   "Interval between upstream health checks (connect, SELECT 1) of each database while it answers.")
CONFIG_KEY(health_check_timeout, CT_TIME, "2", 10000, 0, CF_RELOAD,
	   "Limit for one health check, connection and SELECT 1 together; also for server_check_query on connections a failed health check marked (one unanswered closes them all).")
CONFIG_KEY(health_check_backoff_max, CT_TIME, "30", 250000, 0, CF_RELOAD,
	   "Longest interval between health checks while the upstream fails (doubling from 0.25 s, with jitter).")
CONFIG_KEY(query_wait_timeout, CT_TIME, "120", 0, 0, CF_RELOAD,
	   "Longest a client waits for a server connection; 0 = forever.")
CONFIG_KEY(query_wait_notify, CT_TIME, "5", 0, 0, CF_RELOAD,
	   "Send a client that has waited this long for a server connection one NOTICE per wait, PgBouncer's \"No server connection available in postgres backend, client being queued\"; 0 = never.")
CONFIG_KEY(login_notify_message, CT_STRING, "", 0, 0, CF_RELOAD,
	   "A NOTICE every client gets as it logs in (PgBouncer 1.25's setting; e.g. a maintenance announcement); empty = none.")
CONFIG_KEY(autodb_idle_timeout, CT_TIME, "3600", 0, 0, CF_RELOAD,
	   "A database made for the \"*\" entry that has had no client and no server connection this long is freed, with its pools and their statistics; 0 = never.")
CONFIG_KEY(client_login_timeout, CT_TIME, "60", 0, 0, CF_RELOAD,
	   "Close clients that have not finished logging in after this long; 0 = never.")
CONFIG_KEY(client_idle_timeout, CT_TIME, "0", 0, 0, CF_RELOAD,
	   "Close clients idle longer than this; 0 = never.")
CONFIG_KEY(idle_transaction_timeout, CT_TIME, "0", 0, 0, CF_RELOAD,
	   "Close clients idle inside a transaction longer than this; 0 = never.")
CONFIG_KEY(transaction_timeout, CT_TIME, "0", 0, 0, CF_RELOAD,
	   "Close clients whose transaction has lasted longer than this, busy or idle (its server rolls back); 0 = never.")
CONFIG_KEY(query_timeout, CT_TIME, "0", 0, 0, CF_RELOAD,
	   "Cancel-and-close queries running longer than this; 0 = never.")
CONFIG_KEY(ignore_startup_parameters, CT_STRING, "", 0, 0, CF_RELOAD,
	   "Comma list of startup parameters accepted from clients and not applied.")
CONFIG_KEY(application_name_add_host, CT_BOOL, "0", 0, 1, CF_RELOAD,
	   "Append the client's address to the application_name it logs in with (\"psql - 10.0.0.5:53124\"; \"app\" if it sent none), as PgBouncer; a later SET is left alone. Not for replication connections, whose name standbys are matched by.")
CONFIG_KEY(track_extra_parameters, CT_STRING, "IntervalStyle", 0, 0, CF_RELOAD,
	   "PgBouncer's list of extra parameters to track per client; berth tracks every parameter the server reports (ParameterStatus), so the value is accepted and changes nothing.")
CONFIG_KEY(defer_begin, CT_BOOL, "1", 0, 1, CF_RELOAD,
	   "Transaction mode: answer a plain BEGIN at once and send it to the server with the transaction's first statement, so each transaction holds a server one round trip less; a COMMIT or ROLLBACK with nothing before it is answered too (off while query logging is on).")
CONFIG_KEY(max_prepared_statements, CT_INT, "200", 0, 100000, CF_RELOAD,
	   "Transaction mode: prepared statements kept per server connection (least recently used closed); 0 = pass named statements through untouched.")
CONFIG_KEY(pin_session_state, CT_BOOL, "1", 0, 1, CF_RELOAD,
	   "Transaction mode: keep a client on its server connection while the session holds state (advisory locks, LISTEN, session SET, temp tables, ...).")
CONFIG_KEY(pkt_buf, CT_SIZE, "16384", 4096, 1048576, CF_RESTART,
	   "Size of the I/O buffer a busy connection borrows.")
CONFIG_KEY(max_packet_size, CT_SIZE, "2147483647", 9, 2147483647, CF_RELOAD,
	   "Largest protocol message accepted from clients or servers.")
CONFIG_KEY(log_level, CT_STRING, "error,warn", 0, 0, CF_RELOAD,
	   "Comma list of what to log: error, warn, info, query, debug.")
CONFIG_KEY(log_connections, CT_BOOL, "0", 0, 1, CF_RELOAD,
	   "Log each client login and logout (at info level).")
CONFIG_KEY(log_format, CT_ENUM, "text", 0, 0, CF_RELOAD,
	   "Log line format: text, or json (one object per line: ts, level, pid, msg, and the fields of query lines).")
CONFIG_KEY(pidfile, CT_STRING, "", 0, 0, CF_RESTART,
	   "File to write berth's process id to at start (removed at exit); empty = none. A file naming a running process stops the start.")
CONFIG_KEY(logfile, CT_STRING, "", 0, 0, CF_RELOAD,
	   "Also append log lines to this file (reopened on SIGHUP, for rotation); empty = stderr only.")
CONFIG_KEY(syslog, CT_BOOL, "0", 0, 1, CF_RELOAD, "Also send log lines to syslog (/dev/log).")
CONFIG_KEY(syslog_ident, CT_STRING, "berth", 0, 0, CF_RELOAD, "Program name on syslog lines.")
CONFIG_KEY(syslog_facility, CT_STRING, "daemon", 0, 0, CF_RELOAD,
	   "Syslog facility: auth, authpriv, daemon, user, local0 .. local7 (and the other standard names).")
CONFIG_KEY(log_query_max_length, CT_INT, "1024", 0, 65536, CF_RELOAD,
	   "With query in log_level: statement text (and parameters) longer than this many bytes is truncated in query lines.")
CONFIG_KEY(log_min_duration, CT_TIME, "0", 0, 0, CF_RELOAD,
	   "With query in log_level: log only statements at least this slow; 0 = all.")
CONFIG_KEY(log_parameters, CT_BOOL, "0", 0, 1, CF_RELOAD,
	   "With query in log_level: include Bind parameter values in query lines.")
CONFIG_KEY(shutdown_timeout, CT_TIME, "30", 0, 0, CF_RELOAD,
	   "Longest a graceful shutdown (SIGTERM, SIGINT, SHUTDOWN WAIT_FOR_...) waits before closing what is left; 0 = no limit.")
CONFIG_KEY(stats_period, CT_TIME, "60", 0, 0, CF_RELOAD,
	   "Period over which SHOW STATS_AVERAGES averages (and the interval it is refreshed).")
CONFIG_KEY(log_stats, CT_BOOL, "1", 0, 1, CF_RELOAD,
	   "Every stats_period, log one line (at info level) with that period's averages over all pools: transactions, queries, Parse and Bind messages and bytes per second, and the average transaction, query and wait times.")
CONFIG_KEY(tcp_keepalive, CT_BOOL, "1", 0, 1, CF_RELOAD, "Turn on TCP keepalive on client sockets.")
CONFIG_KEY(tcp_keepidle, CT_INT, "0", 0, 32767, CF_RELOAD,
	   "Seconds of silence before keepalive probes (TCP_KEEPIDLE), on new client and server connections; 0 = the system's.")
CONFIG_KEY(tcp_keepintvl, CT_INT, "0", 0, 32767, CF_RELOAD,
	   "Seconds between keepalive probes (TCP_KEEPINTVL), on new client and server connections; 0 = the system's.")
CONFIG_KEY(tcp_keepcnt, CT_INT, "0", 0, 127, CF_RELOAD,
	   "Unanswered keepalive probes before the connection is dropped (TCP_KEEPCNT), on new client and server connections; 0 = the system's.")
CONFIG_KEY(tcp_user_timeout, CT_INT, "0", 0, 2147483647, CF_RELOAD,
	   "Milliseconds sent data may stay unacknowledged before the connection is dropped (TCP_USER_TIMEOUT), on new client and server connections; 0 = the system's.")
CONFIG_KEY(tcp_socket_buffer, CT_INT, "0", 0, 268435456, CF_RESTART,
	   "Send and receive buffer size (SO_SNDBUF and SO_RCVBUF) of client and server sockets; 0 = the system's, with its autotuning. On server sockets it is set once libpq has opened them.")
CONFIG_KEY(tcp_defer_accept, CT_INT, "1", 0, 3600, CF_RESTART,
	   "Seconds the kernel may hold a new TCP client until its first bytes arrive (TCP_DEFER_ACCEPT, Linux), so accepting and reading the startup packet take one wake-up; 0 = off. PgBouncer's 1 (on) means the same here. Not used with so_reuseport, whose takeover must find every connection in the accept queue.")
CONFIG_KEY(so_reuseport, CT_BOOL, "0", 0, 1, CF_RESTART,
	   "Set SO_REUSEPORT on TCP listen sockets, so a second berth can take over the port (upgrades) without refused connections.")
CONFIG_KEY(listen_backlog, CT_INT, "1024", 1, 65535, CF_RESTART,
	   "Backlog passed to listen().")
