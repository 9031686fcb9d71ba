/*
 * gpu_util.h — helpers shared by the GPU test programs in tests/gpu/:
 * a seeded RNG, checked CUDA calls, NMSE, and a result table that prints a
 * summary last and sets the exit status.  Header-only (static functions).
 *
 * NMSE as llama.cpp's test-backend-ops: sum((a - b)^2) / sum(b^2), b the
 * reference; NaN never passes (every check is `err <= tol`).
 */
#ifndef PROMPTFS_TESTS_GPU_UTIL_H
#define PROMPTFS_TESTS_GPU_UTIL_H

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#define CK(x)                                                                                   \
	do {                                                                                    \
		cudaError_t e_ = (x);                                                           \
		if (e_ != cudaSuccess) {                                                        \
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x,              \
			        cudaGetErrorString(e_));                                        \
			exit(2);                                                                \
		}                                                                               \
	} while (0)

// ---- RNG (splitmix64)

static uint64_t rng_state = 12345;

static inline uint64_t rng_u64(void)
{
	uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static inline double rng_unif(void) /* [0, 1) */
{
	return (double)(rng_u64() >> 11) * (1.0 / 9007199254740992.0);
}

static inline int rng_int(int n) /* [0, n) */
{
	return (int)(rng_u64() % (uint64_t)n);
}

static inline float rng_gauss(void)
{
	double u = rng_unif() + 1e-12, v = rng_unif();
	return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

// ---- device memory

static inline void *dalloc(size_t n)
{
	void *p = NULL;
	CK(cudaMalloc(&p, n ? n : 1));
	CK(cudaMemset(p, 0xFF, n ? n : 1)); /* poison: NaN floats */
	return p;
}

static inline void *dup_dev(const void *h, size_t n)
{
	void *p = dalloc(n);
	CK(cudaMemcpy(p, h, n, cudaMemcpyHostToDevice));
	return p;
}

static inline void to_host(void *h, const void *d, size_t n)
{
	CK(cudaDeviceSynchronize());
	CK(cudaMemcpy(h, d, n, cudaMemcpyDeviceToHost));
}

static inline void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "out of memory (%zu bytes)\n", n);
		exit(2);
	}
	return p;
}

// ---- errors

static inline double nmse_f(const float *a, const float *b, size_t n)
{
	double num = 0.0, den = 0.0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)a[i] - (double)b[i];
		num += d * d;
		den += (double)b[i] * (double)b[i];
	}
	return den > 0.0 ? num / den : num;
}

static inline double nmse_fd(const float *a, const double *b, size_t n)
{
	double num = 0.0, den = 0.0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)a[i] - b[i];
		num += d * d;
		den += b[i] * b[i];
	}
	return den > 0.0 ? num / den : num;
}

// ---- results

struct gpu_result {
	char op[32];
	char params[112];
	double err, tol;
	bool pass;
};

static struct gpu_result *gpu_results;
static int gpu_n_results, gpu_cap_results;
static bool gpu_verbose;

static inline void gpu_record(const char *op, double err, double tol, const char *fmt, ...)
{
	if (gpu_n_results == gpu_cap_results) {
		gpu_cap_results = gpu_cap_results ? 2 * gpu_cap_results : 256;
		gpu_results = (struct gpu_result *)realloc(gpu_results,
		                                           sizeof(*gpu_results) * gpu_cap_results);
		if (!gpu_results)
			exit(2);
	}
	struct gpu_result *r = &gpu_results[gpu_n_results++];
	va_list ap;
	snprintf(r->op, sizeof(r->op), "%s", op);
	va_start(ap, fmt);
	vsnprintf(r->params, sizeof(r->params), fmt, ap);
	va_end(ap);
	r->err = err;
	r->tol = tol;
	r->pass = err <= tol; /* NaN fails */
	if (!r->pass || gpu_verbose)
		printf("%-4s %-14s %-60s err %.3e tol %.1e\n", r->pass ? "ok" : "FAIL", r->op,
		       r->params, r->err, r->tol);
}

/* Prints one line per op family (cases, failures, worst err/tol) and
 * returns the number of failures. */
static inline int gpu_summary(const char *title)
{
	int fails = 0;
	printf("\n== %s: summary ==\n%-16s %6s %6s %12s %12s\n", title, "op", "cases", "fail",
	       "worst err", "its tol");
	for (int i = 0; i < gpu_n_results; i++) {
		bool seen = false;
		for (int j = 0; j < i && !seen; j++)
			seen = !strcmp(gpu_results[j].op, gpu_results[i].op);
		if (seen)
			continue;
		int n = 0, nf = 0;
		double worst = -1.0, wtol = 0.0, werr = 0.0;
		for (int j = i; j < gpu_n_results; j++) {
			const struct gpu_result *r = &gpu_results[j];
			if (strcmp(r->op, gpu_results[i].op))
				continue;
			n++;
			nf += !r->pass;
			double ratio = r->tol > 0 ? r->err / r->tol : r->err;
			if (!(ratio <= worst)) {
				worst = ratio;
				werr = r->err;
				wtol = r->tol;
			}
		}
		fails += nf;
		printf("%-16s %6d %6d %12.3e %12.1e\n", gpu_results[i].op, n, nf, werr, wtol);
	}
	printf("%s: %d checks, %d failed\n", title, gpu_n_results, fails);
	return fails;
}

#endif /* PROMPTFS_TESTS_GPU_UTIL_H */
