/*
 * pidfile.h - PgBouncer's pidfile: berth's process id, written at start and
 * removed at exit, so service managers and scripts can find the process.
 */
#ifndef BERTH_PIDFILE_H
#define BERTH_PIDFILE_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Write this process's id to path. Refused (false, reason in err) while the
 * file names another running process; a stale file is replaced.
 */
bool pidfile_create(const char *path, char *err, size_t errlen);
/* Remove path if it still holds this process's id. */
void pidfile_remove(const char *path);

#endif
