/*
 * pidfile.c - write and remove the pid file. The new contents go to a
 * temporary file renamed over the old one, so a reader never sees a half
 * written id, and a file naming a live process is never overwritten.
 */
#include "pidfile.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* The id in path, or 0 if there is no readable one. */
static pid_t pidfile_read(const char *path)
{
	char buf[32] = "";
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	char *end = NULL;
	long v = strtol(buf, &end, 10);
	return v > 0 && end != buf && (*end == '\n' || *end == '\0') ? (pid_t)v : 0;
}

bool pidfile_create(const char *path, char *err, size_t errlen)
{
	pid_t old = pidfile_read(path);
	if (old > 0 && old != getpid() && (kill(old, 0) == 0 || errno == EPERM)) {
		snprintf(err, errlen, "pidfile %s: process %ld is running (another berth?)", path,
			 (long)old);
		return false;
	}
	char tmp[4096];
	int n = snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		snprintf(err, errlen, "pidfile %s: path too long", path);
		return false;
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(err, errlen, "pidfile %s: %s", tmp, strerror(errno));
		return false;
	}
	char line[32];
	int len = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
	bool ok = write(fd, line, (size_t)len) == len;
	int saved = errno;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, path) != 0) {
		if (ok)
			saved = errno;
		unlink(tmp);
		snprintf(err, errlen, "pidfile %s: %s", path, strerror(saved));
		return false;
	}
	return true;
}

void pidfile_remove(const char *path)
{
	if (path && path[0] && pidfile_read(path) == getpid())
		unlink(path);
}
