/*
 * hba.h - auth_type hba: PgBouncer's auth_hba_file, a pg_hba.conf that picks
 * each login's method by connection type, database, user and address.
 * Loaded with the configuration (its errors name file and line), matched
 * once per login. Pure data: no sockets, no events.
 *
 * What PgBouncer takes, berth takes: local, host, hostssl, hostnossl; all,
 * sameuser, @file and name lists for databases; all, @file and name lists
 * for users; IPv4/IPv6 addresses with a /prefix or a separate mask, or all;
 * the methods trust, reject, md5, password, scram-sha-256, cert and peer.
 * Anything else (replication, +group, host names, map=...) is an error, not
 * a line silently skipped.
 */
#ifndef BERTH_HBA_H
#define BERTH_HBA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum hba_conn { HBA_LOCAL = 0, HBA_HOST, HBA_HOSTSSL, HBA_HOSTNOSSL };

enum hba_method { HBA_TRUST = 0, HBA_REJECT, HBA_MD5, HBA_PASSWORD, HBA_SCRAM, HBA_CERT, HBA_PEER };

/* A database or user field: all, or names (sameuser: the database named as the user). */
struct hba_names {
	bool all;
	bool sameuser;
	char **names;
	size_t n;
};

struct hba_rule {
	int line;
	uint8_t conn;   /* enum hba_conn */
	uint8_t method; /* enum hba_method */
	struct hba_names db;
	struct hba_names user;
	bool addr_all;  /* host rules: any address */
	int family;     /* AF_INET or AF_INET6 when !addr_all */
	uint8_t addr[16];
	uint8_t mask[16];
};

struct hba {
	struct hba_rule *rules;
	size_t n;
};

/* Parse path; NULL with "path:line: what is wrong" in err on any error. */
struct hba *hba_load(const char *path, char *err, size_t errlen);
void hba_free(struct hba *h);

/*
 * The first rule that applies to a login, or NULL (no entry: refused).
 * addr is the client's address (AF_UNIX for the unix socket); tls whether it
 * came through TLS.
 */
const struct hba_rule *hba_match(const struct hba *h, const struct sockaddr *addr, bool tls,
				 const char *db, const char *user);

#endif
