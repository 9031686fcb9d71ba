/*
 * tool_matmul_bench.c — times cpu_matmul on the shapes of the default real
 * model (Qwen2.5-0.5B Q4_K_M) and prints GB/s of weights and GFLOP/s.
 *
 *   tool_matmul_bench [-t THREADS] [-T 1,64,512] [-r SECONDS] [-c] [-C] [-i ISA]
 *     -t  threads (default 2)       -T  activation rows to time
 *     -r  seconds per case (0.3)    -c  report CPU time, not wall time
 *     -i  kernel level: scalar, avx2 or avx512 (default: the best available)
 *     -C  cold weights: cycle through 256 MiB of copies of each matrix, so
 *         they stream from memory as in a real forward pass
 *
 * Weights are random (timing does not depend on their values): 64 rows
 * quantised by gguf_quantize_row, repeated over the matrix.  The "per
 * token" line adds up one decode step's matrix products for the model
 * (24 layers of q, k, v, o, gate, up, down plus the Q8_0 LM head).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/cpu/cpu.h"
#include "engine/cpu/vecdot_impl.h"
#include "gguf/gguf.h"

struct shape {
	const char *what;
	enum gguf_dtype type;
	int64_t K, N;
	int per_token; /* occurrences in one forward pass of the model */
};

/* Qwen2.5-0.5B Q4_K_M: C=896, F=4864, G*D=128, V=151936; ffn_down is Q4_K
 * in 12 layers and Q6_K in 12; attn_v is Q5_0 in 12 and Q8_0 in 12. */
static const struct shape shapes[] = {
	{"attn_q/o 896x896", GGUF_DTYPE_Q5_0, 896, 896, 48},
	{"attn_k 896x128", GGUF_DTYPE_Q5_0, 896, 128, 24},
	{"attn_v 896x128", GGUF_DTYPE_Q8_0, 896, 128, 12},
	{"attn_v 896x128", GGUF_DTYPE_Q5_0, 896, 128, 12},
	{"ffn_gate/up 896x4864", GGUF_DTYPE_Q5_0, 896, 4864, 48},
	{"ffn_down 4864x896", GGUF_DTYPE_Q4_K, 4864, 896, 12},
	{"ffn_down 4864x896", GGUF_DTYPE_Q6_K, 4864, 896, 12},
	{"output 896x151936", GGUF_DTYPE_Q8_0, 896, 151936, 1},
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU time of the whole process: on a shared machine, with -t 1, this
 * excludes the time other processes held the core (wall time does not). */
static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int use_cpu_time;
static size_t cold_bytes; /* -C: weights cycled through per case */

static uint64_t rng = 88172645463325252ull;

static float frand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void *make_matrix(enum gguf_dtype type, int64_t K, int64_t N)
{
	const size_t rs = gguf_row_size(type, K);
	char *w = malloc(rs * (size_t)N);
	float *row = malloc(sizeof(float) * (size_t)K);
	if (!w || !row)
		abort();
	for (int64_t r = 0; r < N; r++) {
		if (r < 64) {
			for (int64_t k = 0; k < K; k++)
				row[k] = frand();
			gguf_quantize_row(type, row, w + rs * (size_t)r, K);
		} else {
			memcpy(w + rs * (size_t)r, w + rs * (size_t)(r % 64), rs);
		}
	}
	free(row);
	return w;
}

/* Seconds per cpu_matmul call (best of the batches in `budget` seconds).
 * w[0..nw) are copies of one matrix used in turn: with -C their total
 * exceeds the caches, so the weights come from memory as in a real
 * decode step (a model is 10x the L3). */
static double time_case(struct cpu_pool *pool, const struct eng_tensor *w, int nw, const float *x,
                        int T, float *y, void *scratch, double budget)
{
	double best = 1e30, t_end = now() + budget;
	int k = 0;
	cpu_matmul(pool, &w[0], x, T, y, (int)w->ne[1], scratch); /* warm up */
	do {
		int reps = 0;
		double t0 = now(), t1, c0 = cpu_now();
		do {
			cpu_matmul(pool, &w[k], x, T, y, (int)w->ne[1], scratch);
			k = (k + 1) % nw;
			reps++;
			t1 = now();
		} while (t1 - t0 < 0.02);
		if (use_cpu_time)
			t1 = t0 + (cpu_now() - c0);
		if ((t1 - t0) / reps < best)
			best = (t1 - t0) / reps;
	} while (now() < t_end);
	return best;
}

int main(int argc, char **argv)
{
	int n_threads = 2, Ts[8] = {1, 64, 512}, nT = 3;
	double budget = 0.3;
	struct cpu_pool *pool = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-t") && i + 1 < argc) {
			n_threads = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "-r") && i + 1 < argc) {
			budget = atof(argv[++i]);
		} else if (!strcmp(argv[i], "-C")) {
			cold_bytes = (size_t)256 << 20;
		} else if (!strcmp(argv[i], "-c")) {
			use_cpu_time = 1;
		} else if (!strcmp(argv[i], "-i") && i + 1 < argc) {
			const char *l = argv[++i];
			cpu_set_isa(!strcmp(l, "scalar") ? CPU_ISA_SCALAR : !strcmp(l, "avx2") ? CPU_ISA_AVX2
			            : !strcmp(l, "avx512") ? CPU_ISA_AVX512 : CPU_ISA_BEST);
		} else if (!strcmp(argv[i], "-T") && i + 1 < argc) {
			char *p = argv[++i];
			for (nT = 0; nT < 8 && *p; nT++) {
				Ts[nT] = (int)strtol(p, &p, 10);
				if (*p == ',')
					p++;
			}
		} else {
			fprintf(stderr, "usage: %s [-t THREADS] [-T 1,64,512] [-r SECONDS] [-c] [-C] [-i scalar|avx2|avx512|best]\n", argv[0]);
			return 2;
		}
	}
	if (cpu_pool_init(n_threads, &pool) != 0)
		return 1;
	printf("threads %d, kernels %s, %s time\n", n_threads,
	       cpu_get_isa() == CPU_ISA_SCALAR ? "scalar" : cpu_get_isa() == CPU_ISA_AVX2 ? "avx2"
	       : cpu_get_isa() == CPU_ISA_AVX512 ? "avx512" : "best",
	       use_cpu_time ? "cpu" : "wall");
	printf("%-22s %-5s %4s %10s %8s %9s\n", "matrix", "type", "T", "us/call", "GB/s", "GFLOP/s");
	for (int ti = 0; ti < nT; ti++) {
		const int T = Ts[ti];
		double token_s = 0;
		for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
			const struct shape *sh = &shapes[si];
			struct eng_tensor w[64];
			const size_t bytes = gguf_row_size(sh->type, sh->K) * (size_t)sh->N;
			int nw = cold_bytes ? (int)(cold_bytes / bytes) + 1 : 1;
			nw = nw > 64 ? 64 : nw;
			for (int c = 0; c < nw; c++) {
				w[c] = (struct eng_tensor){.name = sh->what, .type = sh->type, .ne = {sh->K, sh->N},
				                           .nbytes = bytes};
				w[c].data = c == 0 ? make_matrix(sh->type, sh->K, sh->N) : malloc(bytes);
				if (c > 0)
					memcpy((void *)w[c].data, w[0].data, bytes);
			}
			float *x = malloc(sizeof(float) * (size_t)(sh->K * T));
			float *y = malloc(sizeof(float) * (size_t)(sh->N * T));
			void *scratch = malloc(cpu_matmul_scratch_size(sh->type, sh->K, T) + 1);
			for (int64_t i = 0; i < sh->K * T; i++)
				x[i] = frand();
			const double s = time_case(pool, w, nw, x, T, y, scratch, budget);
			token_s += s * sh->per_token;
			printf("%-22s %-5s %4d %10.1f %8.2f %9.1f\n", sh->what, gguf_dtype_name(sh->type), T,
			       s * 1e6, (double)bytes / s * 1e-9, 2.0 * (double)(sh->K * sh->N) * T / s * 1e-9);
			fflush(stdout);
			free(scratch);
			free(y);
			free(x);
			for (int c = 0; c < nw; c++)
				free((void *)w[c].data);
		}
		printf("T=%d: all matrix products of one forward pass: %.2f ms (%.2f ms/token, %.1f tokens/s)\n\n",
		       T, token_s * 1e3, token_s * 1e3 / T, T / token_s);
	}
	cpu_pool_free(pool);
	return 0;
}
