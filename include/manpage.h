/*
 * manpage.h - the berth(1) manual page (doc/berth.1), written by
 * `berth --man`.
 */
#ifndef BERTH_MANPAGE_H
#define BERTH_MANPAGE_H

#include <stdio.h>

/*
 * Write the whole page as man(7) troff to out: fixed text for the command
 * line, environment, signals, files and exit status, plus a SETTINGS
 * section generated from include/config_keys.h. The output depends only on
 * the build (no environment, no config), so tests/check-generated can
 * compare it with doc/berth.1.
 */
void manpage_write(FILE *out);

#endif
