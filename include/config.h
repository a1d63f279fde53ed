/*
 * config.h - berth's configuration: the settings declared in config_keys.h,
 * the [databases] and [users] sections, the auth_file, the environment
 * (BERTH_<KEY>, DATABASE_URL) and validation. A loaded struct config is
 * immutable; reload builds a new one and swaps the pointer, so a failed
 * reload changes nothing. No other module parses settings.
 */
#ifndef BERTH_CONFIG_H
#define BERTH_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>
#include <stdio.h>

#include "compiler.h"

enum config_type { CT_INT = 0, CT_BOOL, CT_TIME, CT_STRING, CT_ENUM, CT_SIZE };

enum config_flags { CF_RELOAD = 1, CF_RESTART = 2, CF_SECRET = 4 };

/*
 * STATEMENT is TRANSACTION that refuses transaction blocks (PgBouncer's
 * statement mode): both lend a server per transaction, so code asks
 * pool_mode != POOL_SESSION.
 */
enum pool_mode { POOL_SESSION = 0, POOL_TRANSACTION, POOL_STATEMENT };
struct hba;

enum auth_type { AUTH_SCRAM = 0, AUTH_MD5, AUTH_PLAIN, AUTH_TRUST, AUTH_CERT, AUTH_HBA };

/* One [databases] entry (or the one DATABASE_URL makes). */
struct db_def {
	char *name;            /* what clients ask for; "*" = fallback for any name */
	char **keywords;       /* libpq connection keywords, NULL-terminated, pooler keys removed */
	char **values;         /* matching values, NULL-terminated */
	char *dbname;          /* server-side database: dbname=, else the client's name */
	char *forced_user;     /* user= in the entry: every client logs in upstream as this */
	char *password;        /* password= in the entry; secret, never shown */
	int pool_size;         /* -1 = default_pool_size */
	int min_pool_size;     /* -1 = global */
	int reserve_pool_size; /* -1 = global */
	int pool_mode;         /* -1 = global, else enum pool_mode */
	int max_db_connections; /* -1 = global */
	int max_db_client_connections; /* -1 = global */
	int64_t server_lifetime;       /* -1 = global */
	int64_t query_wait_timeout;    /* -1 = the user's, else global */
	char *connect_query;           /* run on each new server connection; NULL = none */
	int load_balance_hosts;        /* enum lb_hosts: with several hosts, who goes first */
};

/*
 * load_balance_hosts (PgBouncer's values): which host a new server connection
 * tries first. disable (libpq's order, the default here as in libpq), or
 * round-robin (each new connection starts one host further).
 */
enum lb_hosts { LB_DISABLE = 0, LB_ROUND_ROBIN };

/* One [users] entry. */
struct user_def {
	char *name;
	int pool_mode;            /* -1 = global */
	int pool_size;            /* -1 = database's */
	int max_user_connections; /* -1 = global */
	int max_user_client_connections; /* -1 = global */
	int reserve_pool_size;    /* -1 = database's, else global */
	/* -1 = not set: the database's (query_wait_timeout), else the global value */
	int64_t query_timeout, query_wait_timeout, idle_transaction_timeout;
	int64_t transaction_timeout, client_idle_timeout;
};

/* One credential: auth_file line, or DATABASE_URL's user and password. */
struct auth_entry {
	char *user;
	char *secret; /* plain password, "md5..." hash or "SCRAM-SHA-256$..." verifier */
};

struct config {
#define CONFIG_KEY_FIELD_CT_INT int
#define CONFIG_KEY_FIELD_CT_BOOL bool
#define CONFIG_KEY_FIELD_CT_TIME int64_t /* microseconds */
#define CONFIG_KEY_FIELD_CT_STRING char *
#define CONFIG_KEY_FIELD_CT_ENUM int
#define CONFIG_KEY_FIELD_CT_SIZE int64_t
#define CONFIG_KEY(name, type, def, min, max, flags, help) CONFIG_KEY_FIELD_##type name;
#include "config_keys.h"
#undef CONFIG_KEY
	struct db_def *dbs;
	size_t n_dbs;
	struct user_def *users;
	size_t n_users;
	struct auth_entry *auth;
	size_t n_auth;
	char *path; /* file it came from, NULL in zero-file mode */
	char **warnings;   /* "FILE:LINE: ..." for PgBouncer settings berth ignores; main.c logs them */
	SSL_CTX *client_tls; /* client_tls_sslmode != disable: what clients' TLS sessions use (tls.h) */
	struct hba *hba;     /* auth_type hba: auth_hba_file's rules (hba.h) */
	size_t n_warnings;
};

/* Where and why loading failed: "FILE:LINE: key: message". */
struct config_error {
	char text[512];
};

/*
 * Build a config from an INI file (path NULL = zero-file mode), then apply
 * the environment: BERTH_<KEY> for every setting, DATABASE_URL for the
 * upstream. envp is a NULL-terminated "NAME=value" array (environ).
 * Returns NULL and fills err on any error; never exits.
 */
struct config *config_load(const char *path, char *const *envp, struct config_error *err)
	BERTH_MUSTCHECK;
void config_free(struct config *cfg);

/* Database for a client's requested name: exact match, else "*", else NULL. */
const struct db_def *config_find_db(const struct config *cfg, const char *name);
/*
 * Do two [databases] entries open the same kind of server connection (libpq
 * keywords, dbname, user, password, connect_query)? When a reload changes
 * that, the database's servers are replaced, as PgBouncer does.
 */
bool config_db_same_upstream(const struct db_def *a, const struct db_def *b);
/*
 * Do two configs log in to servers with the same server_tls_* (the libpq
 * TLS keywords every entry inherits)? When a reload changes them, every
 * database's servers are replaced, as PgBouncer does.
 */
bool config_same_server_tls(const struct config *a, const struct config *b);
const struct user_def *config_find_user(const struct config *cfg, const char *name);
const struct auth_entry *config_find_auth(const struct config *cfg, const char *user);
/*
 * Password for logging in upstream as server_user through entry def: the
 * entry's password=, else server_user's auth_file secret when it is a plain
 * password (not an md5 hash or SCRAM verifier); NULL if neither (libpq may
 * still find one in its passfile). Points into cfg: secret, never logged.
 */
const char *config_server_password(const struct config *cfg, const struct db_def *def,
				   const char *server_user);

/*
 * Build cfg->client_tls again from its client_tls_* values (console SET):
 * on success the old context is released (open sessions keep theirs); on
 * failure cfg->client_tls is unchanged and err says why.
 */
bool config_client_tls_rebuild(struct config *cfg, char *err, size_t errlen) BERTH_MUSTCHECK;

/* Settings table access, for SHOW CONFIG, SET and generated docs. */
size_t config_key_count(void);
const char *config_key_name(size_t i);
const char *config_key_default(size_t i);
const char *config_key_help(size_t i);
int config_key_flags(size_t i);
enum config_type config_key_type(size_t i);
/* Inclusive bounds from config_keys.h (meaningful for CT_INT and CT_SIZE). */
void config_key_bounds(size_t i, int64_t *min, int64_t *max);
/* Accepted values of CT_ENUM key i, n = 0, 1, ...; NULL past the last (refused values skipped). */
const char *config_key_enum_value(size_t i, size_t n);
/* Other names key i answers to (in files, as BERTH_<ALIAS>), n = 0, 1, ...; NULL past the last. */
const char *config_key_alias(size_t i, size_t n);
/* "integer", "boolean", "time", "string", "enum", "size", as doc/config.md names them. */
const char *config_type_name(enum config_type t);
/* Find a key by name (case-insensitive, aliases such as pool_size resolved); -1 if none. */
int config_key_lookup(const char *name);
/* Current value as text (CF_SECRET keys shown as "****"). */
void config_key_format(const struct config *cfg, size_t i, char *buf, size_t len);
/*
 * Set one key from text, validating type and bounds (log_level with
 * log_parse_levels, listen as host:port, which also sets listen_addr and
 * listen_port). Strings are copied and owned by cfg. On failure cfg is
 * unchanged and err holds 'key "name": why' (the value masked for CF_SECRET).
 */
bool config_key_set(struct config *cfg, size_t i, const char *value, char *err, size_t errlen)
	BERTH_MUSTCHECK;
/*
 * Split "host:port" or "[v6addr]:port" (listen, http_listen) into a malloc'd
 * host (if host is not NULL) and a port in 1..65535; false with err on bad input.
 */
bool config_parse_listen(const char *value, char **host, int *port, char *err, size_t errlen)
	BERTH_MUSTCHECK;
/* Whether key i has the same value in a and b (reload: log changed CF_RESTART keys). */
bool config_key_equal(const struct config *a, const struct config *b, size_t i);

/* Writers for the generated files (doc/config.md, etc/berth.ini.sample). */
void config_write_doc(FILE *out);
void config_write_sample(FILE *out);

const char *pool_mode_name(int mode);
/*
 * server_tls_protocols (PgBouncer's syntax) as libpq's ssl_min_protocol_version
 * and ssl_max_protocol_version; false if a word is unknown or none is given.
 */
bool config_tls_protocol_range(const char *value, const char **min, const char **max);
const char *auth_type_name(int type);

#endif
