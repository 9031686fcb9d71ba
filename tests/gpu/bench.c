/*
 * bench.c — gpu_bench: the CUDA backend's forward pass timed directly (no
 * engine, no sessions), the way the engine drives it: prefill of 512 and
 * 2048 tokens, decode (one token per step, greedy on the device, CUDA
 * graphs) at contexts 0, 1k and 4k, batched decode, and achieved bandwidth
 * against the measured copy bandwidth.  --profile adds a per-op kernel
 * time table (CUDA events around each launch, no graphs).
 *
 *   build/gpu/gpu_bench MODEL.gguf [--profile] [--reps N] [--decode-only CTX STEPS SEQS]
 *
 * --decode-only runs only STEPS decode steps of SEQS sequences at context CTX
 * between cudaProfilerStart/Stop (for `ncu --profile-from-start off`).
 *
 * Wall-clock medians (each forward() ends with a stream synchronise, as in
 * the engine); the card is printed in the header.
 */
#include "gpu_util.h"

#include <time.h>

#include <cuda_profiler_api.h>

#include "cuda/internal.h"
#include "engine/backend.h"
#include "engine/model.h"
#include "gguf/gguf.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), cmp_d);
	return v[n / 2];
}

static const struct eng_backend_ops *ops;
static struct eng_backend *be;
static int32_t *pages_all;
static int per_seq;
static bool profiling;
static int profiled_steps; /* > 0: cudaProfilerStart/Stop around that many decode steps */
static struct eng_config cfg;

static const struct eng_sample_req greedy = {{0.0f, 0, 1.0f, 0.0f, 1.0f}, 0, 0, NULL, 0};
static const struct eng_sample_req dflt = {{0.8f, 40, 0.95f, 0.05f, 1.0f}, 7, 0, NULL, 0};

/* Prefill n tokens of sequence s at pos0 in chunks of at most 2048. */
static int prefill(int s, const int32_t *tok, int n, int pos0, int32_t *out)
{
	for (int p = 0; p < n; p += 2048) {
		int m = n - p < 2048 ? n - p : 2048;
		struct eng_batch_seq q = {tok + p, m, pos0 + p, pages_all + (size_t)s * per_seq, false};
		struct eng_batch b = {1, &q};
		int rc = ops->forward(be, &b, NULL, &greedy, out);
		if (rc)
			return rc;
	}
	return 0;
}

/* S sequences decode n steps from context ctx; seconds per step. */
static double decode(int S, int ctx, int n, const struct eng_sample_req *req, const int32_t *text)
{
	struct eng_batch_seq q[8];
	struct eng_sample_req rq[8];
	int32_t cur[8], nxt[8];
	double *t = xmalloc(sizeof(double) * n);
	for (int s = 0; s < S; s++) {
		if (ctx > 0 && prefill(s, text, ctx, 0, &cur[s]))
			return -1;
		if (ctx == 0)
			cur[s] = text[s];
		rq[s] = *req;
	}
	if (profiling)
		cuda_backend_set_profile(be, true); /* count the decode steps only */
	for (int i = -8; i < n; i++) { /* 8 warm-up steps (graph capture) */
		if (profiled_steps && i == 0)
			cudaProfilerStart();
		for (int s = 0; s < S; s++) {
			q[s] = (struct eng_batch_seq){&cur[s], 1, ctx + 8 + i, pages_all + (size_t)s * per_seq, false};
			rq[s].draw = (uint64_t)(i + 8);
		}
		struct eng_batch b = {S, q};
		double t0 = now_s();
		if (ops->forward(be, &b, NULL, rq, nxt))
			return -1;
		if (i >= 0)
			t[i] = now_s() - t0;
		memcpy(cur, nxt, sizeof(int32_t) * S);
	}
	if (profiled_steps)
		cudaProfilerStop();
	double m = median(t, n);
	free(t);
	return m;
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	bool profile = false;
	int reps = 5, only_ctx = -1, only_steps = 0, only_S = 1;
	struct gguf_ctx *g = NULL;
	struct eng_weights w;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--profile"))
			profile = true;
		else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--decode-only") && i + 3 < argc) {
			only_ctx = atoi(argv[++i]);
			only_steps = atoi(argv[++i]);
			only_S = atoi(argv[++i]);
		}
		else
			path = argv[i];
	}
	memset(&w, 0, sizeof(w));
	if (!path || gguf_open(path, &g) || eng_model_bind(g, &cfg, &w)) {
		fprintf(stderr, "usage: gpu_bench MODEL.gguf [--profile] [--reps N]\n");
		return 2;
	}
	ops = eng_backend_find("cuda");
	const int max_ctx = 4096 + 512;
	per_seq = (max_ctx + ENG_KV_PAGE - 1) / ENG_KV_PAGE;
	struct eng_backend_params bp = {0, 8 * per_seq, 2048, 8, max_ctx, 0};
	if (!ops || ops->init(&cfg, &w, &bp, &be)) {
		fprintf(stderr, "gpu_bench: CUDA backend init failed\n");
		return 2;
	}
	pages_all = xmalloc(sizeof(int32_t) * 8 * per_seq);
	for (int i = 0; i < 8 * per_seq; i++)
		pages_all[i] = i;
	int32_t *text = xmalloc(sizeof(int32_t) * max_ctx), tok;
	for (int i = 0; i < max_ctx; i++)
		text[i] = (int32_t)(rng_u64() % (uint64_t)cfg.n_vocab);

	if (only_ctx >= 0) {
		/* for a profiler: only `only_steps` decode steps inside cudaProfilerStart/Stop */
		profiled_steps = only_steps;
		double m = decode(only_S, only_ctx, only_steps, &greedy, text);
		printf("decode @%d x%d seqs: %.1f tok/s (%.3f ms/step)\n", only_ctx, only_S, only_S / m, 1e3 * m);
		ops->free(be);
		return m > 0 ? 0 : 1;
	}
	const double bw = ops->mem_bandwidth(be);
	const double wbytes = (double)eng_weights_bytes_per_token(&cfg, &w);
	const double kv_tok = (double)eng_kv_page_bytes(&cfg) / ENG_KV_PAGE; /* K+V bytes per position */
	printf("model  %s: %d layers C=%d F=%d V=%d, %.1f MB of weights read per token\n", path,
	       cfg.n_layer, cfg.n_embd, cfg.n_ff, cfg.n_vocab, wbytes / 1e6);
	printf("device %s; copy bandwidth %.0f GB/s (read+write, median of 9)\n", ops->device_name(be), bw / 1e9);
	printf("%-26s %12s %10s %10s %8s\n", "test", "tok/s", "ms", "GB/s", "of copy");

	const int pp[] = {512, 2048};
	for (int i = 0; i < 2; i++) {
		double t[16];
		prefill(0, text, pp[i], 0, &tok); /* warm-up */
		for (int r = 0; r < reps; r++) {
			double t0 = now_s();
			if (prefill(0, text, pp[i], 0, &tok))
				return 1;
			t[r] = now_s() - t0;
		}
		double m = median(t, reps);
		printf("prefill %-18d %12.0f %10.3f\n", pp[i], pp[i] / m, 1e3 * m);
	}
	const int ctxs[] = {0, 512, 1024, 4096};
	for (int i = 0; i < 4; i++) {
		double m = decode(1, ctxs[i], 128, &greedy, text);
		double gbs = (wbytes + kv_tok * (ctxs[i] + 72)) / m / 1e9;
		printf("decode @%-5d greedy       %12.1f %10.3f %10.1f %7.1f%%\n", ctxs[i], 1 / m, 1e3 * m, gbs,
		       100 * gbs * 1e9 / bw);
	}
	double m = decode(1, 0, 128, &dflt, text);
	printf("decode @0 top-k 40 sample   %12.1f %10.3f\n", 1 / m, 1e3 * m);
	const int bs[] = {4, 8};
	for (int i = 0; i < 2; i++) {
		m = decode(bs[i], 512, 64, &greedy, text);
		printf("decode @512 batch %-8d %12.1f %10.3f  (aggregate tok/s)\n", bs[i], bs[i] / m, 1e3 * m);
	}
	fflush(stdout);
	if (profile) {
		cuda_backend_set_profile(be, true);
		prefill(0, text, 512, 0, &tok);
		printf("\nper-op kernel time, prefill of 512 tokens (events, eager):\n");
		cuda_backend_profile_report(be, stdout);
		profiling = true;
		decode(1, 512, 32, &greedy, text);
		printf("\nper-op kernel time, 40 decode steps at context 512 (events, eager):\n");
		cuda_backend_profile_report(be, stdout);
		cuda_backend_set_profile(be, false);
	}
	ops->free(be);
	eng_weights_free(&w);
	gguf_free(g);
	return 0;
}
