/*
 * compiler.h - attributes and the assertion macro every module uses.
 */
#ifndef BERTH_COMPILER_H
#define BERTH_COMPILER_H

#include <stdio.h>
#include <stdlib.h>

#define BERTH_MUSTCHECK __attribute__((warn_unused_result))
#define BERTH_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define BERTH_UNUSED __attribute__((unused))
#define BERTH_LIKELY(x) __builtin_expect(!!(x), 1)
#define BERTH_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Broken invariants: fatal in debug and CI builds (the default). */
#define BERTH_ASSERT(cond)                                                                         \
	do {                                                                                       \
		if (BERTH_UNLIKELY(!(cond))) {                                                     \
			fprintf(stderr, "berth: assertion failed: %s (%s:%d)\n", #cond, __FILE__,  \
				__LINE__);                                                         \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#endif
