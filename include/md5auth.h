/*
 * md5auth.h - PostgreSQL's md5 password scheme: stored form
 * "md5" + hex(md5(password || user)), wire form
 * "md5" + hex(md5(hex(md5(password || user)) || salt)).
 * Reference: PostgreSQL manual, "Password Authentication".
 */
#ifndef BERTH_MD5AUTH_H
#define BERTH_MD5AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MD5_PASSWD_LEN 35 /* "md5" + 32 hex digits */

/* out: MD5_PASSWD_LEN + 1 bytes, "md5..." NUL-terminated. */
void md5_stored_from_password(const char *password, const char *user, char *out);
/* True if s is "md5" followed by 32 lowercase hex digits. */
bool md5_is_stored(const char *s);
/* Check the client's PasswordMessage against a stored "md5..." hash and salt. */
bool md5_check_response(const char *stored, const uint8_t salt[4], const char *response);
/* Constant-time comparison of equal-length secrets. */
bool secret_equal(const void *a, const void *b, size_t len);

#endif
