/*
 * membw.c — the CPU backend's memory read bandwidth, for `promptfs bench`:
 * how fast the backend's own threads stream reads from DRAM, which is the
 * roofline of batch-1 decode (every weight byte is read once per token).
 *
 * One buffer far larger than any last-level cache (1 GiB, or 1/8 of the
 * RAM when that is less, at least 64 MiB), filled once by the pool, then
 * read by every thread of the pool, each its own contiguous slice, through
 * eight independent 256-bit accumulators (so that the loads are not
 * serialised on one add chain); one warm-up pass, then the median of
 * five.  Cost: seven passes over the buffer (0.7 s at 10 GB/s).
 * Engine thread only, between forward passes (it runs on the pool).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cpu.h"

#define PROBE_MAX ((size_t)1 << 30)
#define PROBE_MIN ((size_t)64 << 20)
#define PASSES 6
#define WARMUP 1
#define SINKS 512 /* the pool's thread limit */

typedef uint64_t v4u64 __attribute__((vector_size(32)));

struct probe {
	uint8_t *buf;
	size_t bytes; /* a multiple of 256 * n_threads */
	bool fill;
	uint64_t sink[SINKS]; /* per thread, so the reads are not dead code */
};

static void probe_task(void *arg, int ith, int nth)
{
	struct probe *pr = arg;
	size_t per = pr->bytes / (size_t)nth;
	uint8_t *p = pr->buf + per * (size_t)ith;

	if (pr->fill) {
		memset(p, ith + 1, per);
		return;
	}
	const v4u64 *v = (const v4u64 *)(void *)p;
	v4u64 a[8] = { 0 };
	for (size_t i = 0; i + 8 <= per / sizeof(v4u64); i += 8) /* hot loop: 256 bytes per iteration */
		for (int k = 0; k < 8; k++)
			a[k] += v[i + k];
	v4u64 s = a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
	if (ith < SINKS)
		pr->sink[ith] = s[0] ^ s[1] ^ s[2] ^ s[3];
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double cpu_mem_read_bandwidth(struct cpu_pool *pool)
{
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	size_t ram = pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0;
	size_t unit = (size_t)256 * (size_t)cpu_pool_n_threads(pool);
	struct probe pr = { .bytes = PROBE_MAX };
	double t[PASSES - WARMUP];

	if (ram && pr.bytes > ram / 8)
		pr.bytes = ram / 8 > PROBE_MIN ? ram / 8 : PROBE_MIN;
	pr.bytes -= pr.bytes % unit;
	if (pr.bytes == 0 || !(pr.buf = aligned_alloc(64, pr.bytes)))
		return 0.0;
	pr.fill = true;
	cpu_pool_run(pool, probe_task, &pr); /* first touch by the threads that read it */
	pr.fill = false;
	for (int i = 0; i < PASSES; i++) {
		double t0 = now_s();
		cpu_pool_run(pool, probe_task, &pr);
		if (i >= WARMUP)
			t[i - WARMUP] = now_s() - t0;
	}
	free(pr.buf);
	qsort(t, PASSES - WARMUP, sizeof(double), cmp_double);
	return (double)pr.bytes / t[(PASSES - WARMUP) / 2];
}
