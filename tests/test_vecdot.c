/*
 * test_vecdot.c — the CPU matrix product (engine/cpu/matmul.c, vecdot*.c)
 * against a double-precision reference, for every weight type.
 *
 * For each weight type × row length K (1 block, 3 blocks, 7*256) × T in
 * {1, 3, 17, 64, 150}:
 *   reference  y[t][r] = Σ_k deq(W)[r][k] * deq(q(x))[t][k] in double, where
 *              deq is gguf_dequantize_row (itself checked against gguf-py by
 *              test_quant.py) and q is the activation quantiser of the
 *              weight type's vec_dot type;
 *              (Q4_1/Q5_1: the minimum's term uses the activation block's
 *              f16 s = d*Σq, as ggml does — see reference());
 *   checked    cpu_matmul at every kernel level this CPU has (scalar, AVX2,
 *              AVX-512 VNNI) with 1, 2 and 3 threads, the scalar tile
 *              kernels, and cpu_vec_dot row by row.
 * The integer block products are exact in both, so the only difference is
 * f32 rounding of the per-block scales and of the running sum: the error
 * is measured relative to Σ_k |w_k a_k| (the sum's condition) and must be
 * below TOL (see tol_for).  Results must be bit-identical across thread
 * counts and between T = 1 and the same row inside a larger T (every output
 * is computed by the same sequence of operations wherever it falls).
 *
 * Run: ctest -R vecdot, or build-x/tests/test_vecdot [-v].
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cpu/cpu.h"
#include "engine/cpu/vecdot_impl.h"
#include "gguf/gguf.h"

static int n_fail, n_pass, verbose;
static const char *const isa_name[] = {"scalar", "avx2", "avx512", "amx"};

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static double urand(void) /* [0, 1) */
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (double)(rng_state >> 11) / 9007199254740992.0;
}

static float nrand(void)
{
	double u = urand() + 1e-12, v = urand();
	return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* Tolerance on |y - ref| / Σ|w a|, the same for every type: each type's
 * integer part is exact, so the error is f32 rounding: one rounding of
 * d_w*d_a per block, one of its product with the integer sum, one per
 * addition to the running sum (a few partial sums in SIMD), and for the K
 * types the f32 products d*sc and dmin*m.  With at most 56 blocks (1792
 * elements for the float types, whose products are exact for F16/BF16 and
 * rounded once for F32) that stays below ~100 * 2^-24 = 6e-6; measured
 * worst is ~2e-7.  A wrong integer is off by at least one quantum, about
 * 1e-3 of Σ|w a| at these sizes, so 2e-5 separates the two clearly. */
static double tol_for(enum gguf_dtype t)
{
	(void)t;
	return 2e-5;
}

static void check(bool ok, const char *what, const char *type, int K, int T, double err)
{
	if (ok) {
		n_pass++;
		if (verbose)
			printf("ok   %-36s %-5s K=%-5d T=%-3d err %.3g\n", what, type, K, T, err);
	} else {
		n_fail++;
		printf("FAIL %-36s %-5s K=%-5d T=%-3d err %.3g\n", what, type, K, T, err);
	}
}

/* Weights as a real model has them: per-row scale variation, quantised by
 * the reference quantiser (random bytes would also do, but these give
 * realistic magnitudes for the error measure). */
static void *make_weights(enum gguf_dtype type, int K, int N, float *deq)
{
	size_t rs = gguf_row_size(type, K);
	char *w = malloc(rs * (size_t)N);
	float *row = malloc(sizeof(float) * (size_t)K);
	for (int r = 0; r < N; r++) {
		float sc = (float)exp2(4.0 * urand() - 2.0);
		for (int k = 0; k < K; k++)
			row[k] = nrand() * sc;
		if (gguf_quantize_row(type, row, w + rs * (size_t)r, K) != 0)
			abort();
		gguf_dequantize_row(type, w + rs * (size_t)r, deq + (size_t)r * K, K);
	}
	free(row);
	return w;
}

struct ref {
	double *y;   /* [T][N] */
	double *mag; /* [T][N] Σ|w a| */
};

/* Q4_1/Q5_1 × Q8_1 use the activation block's s = d * Σq, rounded to
 * f16 (as ggml does), for the minimum's term: the reference does the
 * same, so it splits each weight into d*q (dequantised with m = 0) and m. */
static bool has_min(enum gguf_dtype t)
{
	return t == GGUF_DTYPE_Q4_1 || t == GGUF_DTYPE_Q5_1;
}

static void reference(const void *wdata, const float *wdeq, enum gguf_dtype wtype, const float *x,
                      int K, int N, int T, struct ref *ref)
{
	enum gguf_dtype vt = cpu_vec_dot_type(wtype);
	const size_t rs = gguf_row_size(wtype, K), bsz = gguf_type_traits(wtype)->type_size;
	void *q = malloc(gguf_row_size(vt, K) + 64);
	float *a = malloc(sizeof(float) * (size_t)K);
	float *dq = malloc(sizeof(float) * (size_t)K * N);
	char *tmp = malloc(rs);

	memcpy(dq, wdeq, sizeof(float) * (size_t)K * N);
	for (int r = 0; has_min(wtype) && r < N; r++) {
		memcpy(tmp, (const char *)wdata + rs * r, rs);
		for (int b = 0; b < K / 32; b++)
			memset(tmp + bsz * b + 2, 0, 2); /* m = +0 */
		gguf_dequantize_row(wtype, tmp, dq + (size_t)r * K, K);
	}
	for (int t = 0; t < T; t++) {
		cpu_quantize_act(vt, x + (size_t)t * K, q, K);
		gguf_dequantize_row(vt, q, a, K);
		for (int r = 0; r < N; r++) {
			double s = 0, m = 0;
			for (int k = 0; k < K; k++) {
				double p = (double)dq[(size_t)r * K + k] * (double)a[k];
				s += p;
				m += fabs(p);
			}
			for (int b = 0; has_min(wtype) && b < K / 32; b++) {
				gguf_half hm, hs;
				memcpy(&hm, (const char *)wdata + rs * r + bsz * b + 2, 2);
				memcpy(&hs, (const char *)q + sizeof(struct block_q8_1) * b + 2, 2);
				double p = (double)gguf_half_to_f32(hm) * (double)gguf_half_to_f32(hs);
				s += p;
				m += fabs(p);
			}
			ref->y[(size_t)t * N + r] = s;
			ref->mag[(size_t)t * N + r] = m;
		}
	}
	free(tmp);
	free(dq);
	free(q);
	free(a);
}

static double max_err(const float *y, int ldy, const struct ref *ref, int N, int T)
{
	double worst = 0;
	for (int t = 0; t < T; t++) {
		for (int r = 0; r < N; r++) {
			double m = ref->mag[(size_t)t * N + r];
			double e = fabs((double)y[(size_t)t * ldy + r] - ref->y[(size_t)t * N + r]);
			e = m > 0 ? e / m : e;
			if (!(e <= worst)) /* NaN propagates */
				worst = isnan(e) ? INFINITY : e;
		}
	}
	return worst;
}

static void test_case(enum gguf_dtype type, int K, int T, struct cpu_pool **pools)
{
	const char *tn = gguf_dtype_name(type);
	const int N = 37, ldy = N + 3;
	float *wdeq = malloc(sizeof(float) * (size_t)K * N);
	float *x = malloc(sizeof(float) * (size_t)K * T);
	float *y[3], *ys = calloc((size_t)T * ldy, sizeof(float));
	struct ref ref = {malloc(sizeof(double) * (size_t)T * N), malloc(sizeof(double) * (size_t)T * N)};
	void *wdata = make_weights(type, K, N, wdeq);
	struct eng_tensor w = {.name = "w", .type = type, .ne = {K, N}, .data = wdata,
	                       .nbytes = gguf_row_size(type, K) * N};
	void *scratch = malloc(cpu_matmul_scratch_size(type, K, T) + 1);
	double tol = tol_for(type);

	for (int i = 0; i < T * K; i++)
		x[i] = nrand() * (i % 97 == 0 ? 8.0f : 1.0f); /* a few outliers */
	reference(wdata, wdeq, type, x, K, N, T, &ref);

	/* cpu_matmul at every kernel level this CPU runs */
	for (int isa = CPU_ISA_SCALAR; isa <= CPU_ISA_AMX; isa++) {
		struct cpu_kernel kern = cpu_kernel_get(type, (enum cpu_isa)isa);
		char what[64];
		if ((int)kern.isa != isa)
			continue; /* not available: covered by the level below */
		cpu_set_isa((enum cpu_isa)isa);
		for (int p = 0; p < 3; p++) {
			y[p] = calloc((size_t)T * ldy, sizeof(float));
			cpu_matmul(pools[p], &w, x, T, y[p], ldy, scratch);
		}
		double e = max_err(y[0], ldy, &ref, N, T);
		snprintf(what, sizeof(what), "matmul[%s] vs reference", isa_name[isa]);
		check(e <= tol, what, tn, K, T, e);
		for (int p = 1; p < 3; p++) {
			bool same = true;
			for (int t = 0; t < T; t++)
				same &= memcmp(y[0] + (size_t)t * ldy, y[p] + (size_t)t * ldy, sizeof(float) * N) == 0;
			snprintf(what, sizeof(what), "matmul[%s] %d threads == 1", isa_name[isa], p + 1);
			check(same, what, tn, K, T, 0);
		}
		/* the same rows one token at a time: identical bits */
		bool same = true;
		float *y1 = calloc((size_t)ldy, sizeof(float));
		for (int t = 0; t < T; t++) {
			cpu_matmul(pools[1], &w, x + (size_t)t * K, 1, y1, ldy, scratch);
			same &= memcmp(y1, y[0] + (size_t)t * ldy, sizeof(float) * N) == 0;
		}
		snprintf(what, sizeof(what), "matmul[%s] T=1 rows == rows of T", isa_name[isa]);
		check(same, what, tn, K, T, 0);
		free(y1);
		for (int p = 0; p < 3; p++)
			free(y[p]);
	}
	cpu_set_isa(CPU_ISA_BEST);

	/* scalar kernels and cpu_vec_dot */
	enum gguf_dtype vt = cpu_vec_dot_type(type);
	size_t bx = vt == GGUF_DTYPE_F32 ? sizeof(float) * K : gguf_row_size(vt, K);
	char *act = malloc(bx * T + 1);
	for (int t = 0; t < T; t++)
		cpu_quantize_act(vt, x + (size_t)t * K, act + bx * t, K);
	cpu_tile_scalar(type)(K, wdata, gguf_row_size(type, K), N, act, bx, T, ys, ldy);
	double e = max_err(ys, ldy, &ref, N, T);
	check(e <= tol, "scalar kernel vs reference", tn, K, T, e);
	for (int t = 0; t < T; t++)
		for (int r = 0; r < N; r++)
			ys[(size_t)t * ldy + r] = cpu_vec_dot(type, K, (char *)wdata + gguf_row_size(type, K) * r,
			                                      act + bx * t);
	e = max_err(ys, ldy, &ref, N, T);
	check(e <= tol, "cpu_vec_dot vs reference", tn, K, T, e);

	free(act);
	free(ys);
	free(scratch);
	free(wdata);
	free(ref.y);
	free(ref.mag);
	free(x);
	free(wdeq);
}

int main(int argc, char **argv)
{
	static const enum gguf_dtype types[] = {
		GGUF_DTYPE_F32, GGUF_DTYPE_F16, GGUF_DTYPE_BF16, GGUF_DTYPE_Q4_0, GGUF_DTYPE_Q4_1,
		GGUF_DTYPE_Q5_0, GGUF_DTYPE_Q5_1, GGUF_DTYPE_Q8_0, GGUF_DTYPE_Q2_K, GGUF_DTYPE_Q3_K,
		GGUF_DTYPE_Q4_K, GGUF_DTYPE_Q5_K, GGUF_DTYPE_Q6_K,
	};
	static const int Ts[] = {1, 3, 17, 64, 150}; /* 150: several T_BLOCKs */
	struct cpu_pool *pools[3] = {0};

	verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
	for (int p = 0; p < 3; p++) {
		if (cpu_pool_init(p + 1, &pools[p]) != 0) {
			printf("FAIL cpu_pool_init(%d)\n", p + 1);
			return 1;
		}
	}
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		const int bs = (int)gguf_type_traits(types[i])->blck_size;
		const int blk = bs == 1 ? 32 : bs; /* float types: odd small sizes too */
		const int Ks[] = {blk, 3 * blk, 9 * 256, bs == 1 ? 7 : blk}; /* 9 * 256: past one AMX panel segment */
		for (int k = 0; k < 4; k++) {
			if (k == 3 && bs != 1)
				continue;
			for (size_t t = 0; t < sizeof(Ts) / sizeof(Ts[0]); t++)
				test_case(types[i], Ks[k], Ts[t], pools);
		}
	}
	for (int p = 0; p < 3; p++)
		cpu_pool_free(pools[p]);
	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}
