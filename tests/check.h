/*
 * check.h — the pass/fail counters shared by the C unit tests.
 *   CHECK(cond, fmt, ...)  counts a pass, or prints the condition, place and
 *                          message and counts a failure (the test goes on)
 *   check_summary()        prints "N passed, M failed" (the line ctest and CI
 *                          read) and returns the exit status: 0 only if none failed
 */
#ifndef PROMPTFS_TESTS_CHECK_H
#define PROMPTFS_TESTS_CHECK_H

#include <stdio.h>

static int n_fail, n_pass;

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (cond) {                                                    \
			n_pass++;                                              \
		} else {                                                       \
			n_fail++;                                              \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                          \
			fputc('\n', stderr);                                   \
		}                                                              \
	} while (0)

static inline int check_summary(void)
{
	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}

#endif /* PROMPTFS_TESTS_CHECK_H */
