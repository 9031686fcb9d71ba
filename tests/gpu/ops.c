/*
 * ops.c — gpu_ops: every op of the CUDA backend against a float64 reference
 * and against the CPU backend's op, on random seeded inputs (every weight
 * type, odd sizes, contexts past 4k), in the manner of llama.cpp's
 * test-backend-ops (NMSE, a tolerance per op).  Outputs are poisoned (NaN)
 * before each run so an unwritten element fails.
 *
 *   build/gpu/gpu_ops [-v] [seed]      (on a machine with a CUDA device)
 *
 * Exit status: 0 when every check passes, 1 otherwise; a summary table is
 * printed last.  RoPE, attention and sampling are checked by gpu_attn
 * (attn.c).  The ops of the newer architectures: GeGLU (mat-vec, fused and
 * element-wise), post-norm + residual, scaling and soft-capping (gemma),
 * and the mixture-of-experts routing, grouped expert mat-vecs, gather /
 * scatter / sum against the CPU backend's routing and matrix products.
 */
#include "gpu_util.h"

#include "cuda/cuda_ops.h"
#include "engine/cpu/cpu.h"
#include "engine/cpu/ops.h"
#include "gguf/gguf.h"

#include <cublas_v2.h>

static struct cpu_pool *pool;

static const int all_types[] = {
	GGUF_DTYPE_F32, GGUF_DTYPE_F16, GGUF_DTYPE_BF16, GGUF_DTYPE_Q4_0, GGUF_DTYPE_Q4_1,
	GGUF_DTYPE_Q5_0, GGUF_DTYPE_Q5_1, GGUF_DTYPE_Q8_0, GGUF_DTYPE_Q2_K, GGUF_DTYPE_Q3_K,
	GGUF_DTYPE_Q4_K, GGUF_DTYPE_Q5_K, GGUF_DTYPE_Q6_K,
};
#define N_TYPES (int)(sizeof(all_types) / sizeof(all_types[0]))

static bool is_quant(int t)
{
	return t != GGUF_DTYPE_F32 && t != GGUF_DTYPE_F16 && t != GGUF_DTYPE_BF16;
}

static int blck(int t)
{
	return (int)gguf_type_traits(t)->blck_size;
}

/* Random rows of a type: random bytes with every scale field set to a sane
 * half (all bit patterns of quants and sub-scales occur), or random floats. */
static void *rand_rows(int type, int K, int N)
{
	size_t rb = gguf_row_size(type, K), n = rb * N;
	uint8_t *p = xmalloc(n);
	if (type == GGUF_DTYPE_F32 || type == GGUF_DTYPE_F16 || type == GGUF_DTYPE_BF16) {
		for (size_t i = 0; i < (size_t)K * N; i++) {
			float v = 0.05f * rng_gauss();
			if (type == GGUF_DTYPE_F32)
				((float *)p)[i] = v;
			else if (type == GGUF_DTYPE_F16)
				((gguf_half *)p)[i] = gguf_f32_to_half(v);
			else
				((gguf_bf16 *)p)[i] = gguf_f32_to_bf16(v);
		}
		return p;
	}
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rng_u64();
	int h[2] = {-1, -1};
	switch (type) {
	case GGUF_DTYPE_Q4_0: case GGUF_DTYPE_Q5_0: case GGUF_DTYPE_Q8_0: h[0] = 0; break;
	case GGUF_DTYPE_Q4_1: case GGUF_DTYPE_Q5_1: case GGUF_DTYPE_Q4_K: case GGUF_DTYPE_Q5_K:
		h[0] = 0; h[1] = 2; break;
	case GGUF_DTYPE_Q2_K: h[0] = 80; h[1] = 82; break;
	case GGUF_DTYPE_Q3_K: h[0] = 108; break;
	case GGUF_DTYPE_Q6_K: h[0] = 208; break;
	}
	size_t bs = gguf_type_traits(type)->type_size;
	for (size_t b = 0; b < n / bs; b++)
		for (int k = 0; k < 2; k++)
			if (h[k] >= 0) {
				float v = (0.002f + 0.01f * (float)rng_unif()) * (rng_unif() < 0.5 ? -1 : 1);
				gguf_half hv = gguf_f32_to_half(v);
				memcpy(p + b * bs + h[k], &hv, 2);
			}
	return p;
}

static float *deq_rows(int type, const void *w, int K, int N)
{
	float *y = xmalloc(sizeof(float) * (size_t)K * N);
	size_t rb = gguf_row_size(type, K);
	for (int r = 0; r < N; r++)
		if (gguf_dequantize_row(type, (const uint8_t *)w + rb * r, y + (size_t)r * K, K)) {
			fprintf(stderr, "gguf_dequantize_row(%s) failed\n", gguf_dtype_name(type));
			exit(2);
		}
	return y;
}

static float *rand_vec(size_t n, float scale)
{
	float *x = xmalloc(sizeof(float) * n);
	for (size_t i = 0; i < n; i++)
		x[i] = scale * rng_gauss();
	return x;
}

static struct cuda_mat dev_mat(int type, const void *w, int K, int N)
{
	struct cuda_mat m = {type, K, N, NULL, gguf_row_size(type, K)};
	void *d = dalloc(m.row_bytes * N + 256); /* slack as the backend's weights buffer */
	CK(cudaMemcpy(d, w, m.row_bytes * N, cudaMemcpyHostToDevice));
	m.d = d;
	return m;
}

// ---- embedding rows and dequantisation

static void test_rows(int type)
{
	const int K = 512, N = 37, T = 9;
	void *w = rand_rows(type, K, N);
	float *ref = deq_rows(type, w, K, N);
	struct cuda_mat m = dev_mat(type, w, K, N);
	int32_t ids[9];
	for (int t = 0; t < T; t++)
		ids[t] = t == 0 ? N - 1 : rng_int(N);
	int32_t *dids = dup_dev(ids, sizeof(ids));
	float *dy = dalloc(sizeof(float) * T * (K + 3)), *y = xmalloc(sizeof(float) * T * (K + 3));
	float *r = xmalloc(sizeof(float) * T * K), *yc = xmalloc(sizeof(float) * T * K);
	int rc = cuda_get_rows(&m, dids, T, dy, K + 3, 0);
	to_host(y, dy, sizeof(float) * T * (K + 3));
	for (int t = 0; t < T; t++) {
		memcpy(r + (size_t)t * K, ref + (size_t)ids[t] * K, sizeof(float) * K);
		memmove(y + (size_t)t * K, y + (size_t)t * (K + 3), sizeof(float) * K);
		struct eng_tensor et = {"w", type, {K, N}, w, gguf_row_size(type, K) * N};
		cpu_embed(yc + (size_t)t * K, &et, ids[t]);
	}
	gpu_record("get_rows", rc ? INFINITY : nmse_f(y, r, (size_t)T * K), 1e-12, "%s K=%d T=%d",
	           gguf_dtype_name(type), K, T);
	gpu_record("get_rows/cpu", rc ? INFINITY : nmse_f(y, yc, (size_t)T * K), 1e-12, "%s",
	           gguf_dtype_name(type));

	/* dequantise rows [5, 5 + 20) to F16 */
	const int r0 = 5, nr = 20;
	gguf_half *dh = dalloc(2 * (size_t)nr * K), *h = xmalloc(2 * (size_t)nr * K);
	float *hf = xmalloc(sizeof(float) * nr * K);
	rc = cuda_dequant_f16(&m, r0, nr, dh, 0);
	to_host(h, dh, 2 * (size_t)nr * K);
	for (int i = 0; i < nr * K; i++)
		hf[i] = gguf_half_to_f32(h[i]);
	gpu_record("dequant_f16", rc ? INFINITY : nmse_f(hf, ref + (size_t)r0 * K, (size_t)nr * K), 1e-6,
	           "%s rows %d..%d", gguf_dtype_name(type), r0, r0 + nr);
	cudaFree(dh); cudaFree(dy); cudaFree(dids); cudaFree((void *)m.d);
	free(w); free(ref); free(y); free(r); free(yc); free(h); free(hf);
}

// ---- mat-vec (decode path) and GEMM (prefill path)

/* ref[c][r] = y0 + dot(W row r, x[c]) in double */
static double *ref_matmul(const float *wf, const float *x, int K, int N, int T)
{
	double *ref = xmalloc(sizeof(double) * (size_t)N * T);
	for (int c = 0; c < T; c++)
		for (int r = 0; r < N; r++) {
			double s = 0.0;
			const float *wr = wf + (size_t)r * K, *xc = x + (size_t)c * K;
			for (int k = 0; k < K; k++)
				s += (double)wr[k] * xc[k];
			ref[(size_t)c * N + r] = s;
		}
	return ref;
}

static float *cpu_mm(int type, const void *w, const float *x, int K, int N, int T)
{
	struct eng_tensor et = {"w", type, {K, N}, w, gguf_row_size(type, K) * N};
	float *y = xmalloc(sizeof(float) * (size_t)N * T);
	void *scr = xmalloc(cpu_matmul_scratch_size(type, K, T) + 64);
	cpu_matmul(pool, &et, x, T, y, N, scr);
	free(scr);
	return y;
}

static double silu_d(double g)
{
	return g / (1.0 + exp(-g));
}

/* The CPU backend's GELU (through F16, ggml's table) as one value. */
static double gelu_cpu(double g)
{
	float x = (float)g, one = 1.0f, y;
	cpu_geglu(&y, &x, &one, 1);
	return y;
}

/* act(g) * u as the reference: act 0 SiLU, 1 the CPU's GELU */
static double glu_ref(int act, double g, double u)
{
	return (act ? gelu_cpu(g) : silu_d(g)) * u;
}

static void test_matvec(int type, int K, int N, int nc, int mode /* 0 plain, 1 add, 2 glu, 3 geglu */)
{
	const int act = mode == 3;
	mode = mode == 3 ? 2 : mode;
	void *w = rand_rows(type, K, N), *w2 = mode == 2 ? rand_rows(type, K, N) : NULL;
	float *wf = deq_rows(type, w, K, N), *wf2 = w2 ? deq_rows(type, w2, K, N) : NULL;
	float *x = rand_vec((size_t)nc * K, 1.0f), *y0 = rand_vec((size_t)nc * N, 1.0f);
	double *ref = ref_matmul(wf, x, K, N, nc), *ref2 = w2 ? ref_matmul(wf2, x, K, N, nc) : NULL;
	float *cpu = cpu_mm(type, w, x, K, N, nc), *cpu2 = w2 ? cpu_mm(type, w2, x, K, N, nc) : NULL;
	struct cuda_mat m = dev_mat(type, w, K, N), m2 = {0};
	if (w2)
		m2 = dev_mat(type, w2, K, N);
	const int ldy = N + 5;
	float *dx = dup_dev(x, sizeof(float) * nc * K), *dy = dalloc(sizeof(float) * nc * ldy);
	int8_t *qs = dalloc((size_t)nc * K);
	void *ds = dalloc((size_t)nc * (K / 32 + 1) * 8);
	float *y = xmalloc(sizeof(float) * nc * ldy), *yy = xmalloc(sizeof(float) * nc * N);
	for (int c = 0; mode == 1 && c < nc; c++)
		CK(cudaMemcpy(dy + (size_t)c * ldy, y0 + (size_t)c * N, sizeof(float) * N,
		              cudaMemcpyHostToDevice));
	int rc = 0;
	if (is_quant(type))
		rc = cuda_quantize_q8(dx, K, K, nc, qs, ds, 0);
	struct cuda_act a = {dx, K, qs, ds};
	if (!rc)
		rc = mode == 2 ? cuda_matvec_glu(&m, &m2, &a, nc, dy, ldy, act, 0)
		               : cuda_matvec(&m, &a, nc, dy, ldy, mode == 1, 0);
	to_host(y, dy, sizeof(float) * nc * ldy);
	for (int c = 0; c < nc; c++)
		for (int r = 0; r < N; r++) {
			size_t i = (size_t)c * N + r;
			yy[i] = y[(size_t)c * ldy + r];
			if (mode == 1) {
				ref[i] += y0[i];
				cpu[i] += y0[i];
			} else if (mode == 2) {
				ref[i] = glu_ref(act, ref[i], ref2[i]);
				cpu[i] = (float)glu_ref(act, cpu[i], cpu2[i]);
			}
		}
	const char *mn[] = {"", " +res", act ? " geglu" : " glu"};
	/* GeGLU: the GELU's F16 rounding (relative 2^-11) flips where the two
	 * sides' gate sums differ by rounding: NMSE ~1e-7 for float weights */
	double tol = is_quant(type) ? 5e-4 : act ? 1e-6 : 1e-9;
	gpu_record("matvec", rc ? INFINITY : nmse_fd(yy, ref, (size_t)nc * N), tol, "%s K=%d N=%d cols=%d%s",
	           gguf_dtype_name(type), K, N, nc, mn[mode]);
	/* the CPU rounds activations to BF16 for BF16 weights (as ggml): 2^-9 relative */
	gpu_record("matvec/cpu", rc ? INFINITY : nmse_f(yy, cpu, (size_t)nc * N),
	           is_quant(type) ? 1e-3 : type == GGUF_DTYPE_BF16 ? 1e-4 : 1e-5,
	           "%s K=%d N=%d cols=%d%s", gguf_dtype_name(type), K, N, nc, mn[mode]);
	cudaFree(dx); cudaFree(dy); cudaFree(qs); cudaFree(ds); cudaFree((void *)m.d);
	if (w2)
		cudaFree((void *)m2.d);
	free(w); free(w2); free(wf); free(wf2); free(x); free(y0); free(ref); free(ref2);
	free(cpu); free(cpu2); free(y); free(yy);
}

static void test_gemm(cublasHandle_t h, int type, int K, int N, int T, bool add)
{
	void *w = rand_rows(type, K, N);
	float *wf = deq_rows(type, w, K, N), *x = rand_vec((size_t)T * K, 1.0f);
	float *y0 = rand_vec((size_t)T * N, 1.0f);
	double *ref = ref_matmul(wf, x, K, N, T);
	float *cpu = cpu_mm(type, w, x, K, N, T);
	struct cuda_mat m = dev_mat(type, w, K, N);
	const int ldx = K + 8, ldy = N + 3;
	float *dx = dalloc(sizeof(float) * T * ldx), *dy = dalloc(sizeof(float) * T * ldy);
	for (int t = 0; t < T; t++) {
		CK(cudaMemcpy(dx + (size_t)t * ldx, x + (size_t)t * K, 4 * K, cudaMemcpyHostToDevice));
		if (add)
			CK(cudaMemcpy(dy + (size_t)t * ldy, y0 + (size_t)t * N, 4 * N, cudaMemcpyHostToDevice));
	}
	/* a small weight scratch so that the row chunking is exercised */
	struct cuda_gemm_ws ws = {h, NULL, (size_t)K * 2 * (N / 3 + 1), NULL, (size_t)T * K * 2};
	ws.w16 = dalloc(ws.w16_bytes);
	ws.x16 = dalloc(ws.x16_bytes);
	enum cuda_x16_state xs = CUDA_X16_NONE;
	int rc = cuda_gemm(&ws, &m, dx, ldx, T, dy, ldy, add, &xs, 0);
	float *y = xmalloc(sizeof(float) * T * ldy), *yy = xmalloc(sizeof(float) * T * N);
	to_host(y, dy, sizeof(float) * T * ldy);
	for (int t = 0; t < T; t++)
		for (int r = 0; r < N; r++) {
			size_t i = (size_t)t * N + r;
			yy[i] = y[(size_t)t * ldy + r];
			if (add) {
				ref[i] += y0[i];
				cpu[i] += y0[i];
			}
		}
	double tol = type == GGUF_DTYPE_F32 ? 1e-9 : type == GGUF_DTYPE_BF16 ? 1e-4 : 1e-5;
	gpu_record("gemm", rc ? INFINITY : nmse_fd(yy, ref, (size_t)T * N), tol, "%s K=%d N=%d T=%d%s",
	           gguf_dtype_name(type), K, N, T, add ? " +res" : "");
	gpu_record("gemm/cpu", rc ? INFINITY : nmse_f(yy, cpu, (size_t)T * N), is_quant(type) ? 1e-3 : 1e-4,
	           "%s K=%d N=%d T=%d", gguf_dtype_name(type), K, N, T);
	cudaFree(dx); cudaFree(dy); cudaFree(ws.w16); cudaFree(ws.x16); cudaFree((void *)m.d);
	free(w); free(wf); free(x); free(y0); free(ref); free(cpu); free(y); free(yy);
}

// ---- q8 quantisation, RMSNorm (+q8), SwiGLU

/* max |x - d q| / (d / 2) over a q8 row: <= 1 (+ rounding) when correct */
static double q8_err(const float *x, const int8_t *qs, const float *ds, int K)
{
	double worst = 0.0;
	for (int g = 0; g < K / 32; g++) {
		float d = ds[2 * g], s = ds[2 * g + 1];
		int sum = 0;
		for (int i = 0; i < 32; i++) {
			double e = fabs(x[g * 32 + i] - d * qs[g * 32 + i]);
			double rel = d > 0 ? e / (0.5 * d) : e;
			worst = rel > worst ? rel : worst;
			sum += qs[g * 32 + i];
		}
		double se = fabs(s - d * sum) / (fabs(d * sum) + 1e-30);
		worst = se > 1e-5 && se > worst ? se : worst;
	}
	return worst;
}

static void test_norm(int C, int n, bool gather, bool q8)
{
	float *x = rand_vec((size_t)n * C * 2, 3.0f), *w = rand_vec(C, 1.0f);
	int32_t rows[16];
	for (int r = 0; r < n; r++)
		rows[r] = gather ? rng_int(2 * n) : r;
	float *dx = dup_dev(x, sizeof(float) * n * C * 2), *dw = dup_dev(w, sizeof(float) * C);
	int32_t *drows = dup_dev(rows, sizeof(rows));
	const int ldy = C + 1;
	float *dy = dalloc(sizeof(float) * n * ldy);
	int8_t *qs = dalloc((size_t)n * C);
	float *ds = dalloc((size_t)n * (C / 32 + 1) * 8);
	int rc = cuda_rmsnorm(dx, C, gather ? drows : NULL, n, C, dw, 1e-6f, dy, ldy, q8 ? qs : NULL,
	                      ds, 0);
	float *y = xmalloc(sizeof(float) * n * ldy), *yy = xmalloc(sizeof(float) * n * C);
	float *yc = xmalloc(sizeof(float) * n * C);
	double *ref = xmalloc(sizeof(double) * n * C);
	to_host(y, dy, sizeof(float) * n * ldy);
	for (int r = 0; r < n; r++) {
		const float *in = x + (size_t)rows[r] * C;
		double ss = 0.0;
		for (int e = 0; e < C; e++)
			ss += (double)in[e] * in[e];
		double sc = 1.0 / sqrt(ss / C + 1e-6);
		for (int e = 0; e < C; e++) {
			ref[(size_t)r * C + e] = in[e] * sc * w[e];
			yy[(size_t)r * C + e] = y[(size_t)r * ldy + e];
		}
		cpu_rmsnorm(yc + (size_t)r * C, in, w, C, 1e-6f);
	}
	gpu_record("rmsnorm", rc ? INFINITY : nmse_fd(yy, ref, (size_t)n * C), 1e-11, "C=%d rows=%d%s%s",
	           C, n, gather ? " gather" : "", q8 ? " +q8" : "");
	gpu_record("rmsnorm/cpu", rc ? INFINITY : nmse_f(yy, yc, (size_t)n * C), 1e-11, "C=%d rows=%d", C, n);
	if (q8) {
		int8_t *hq = xmalloc((size_t)n * C);
		float *hd = xmalloc((size_t)n * (C / 32) * 8);
		to_host(hq, qs, (size_t)n * C);
		to_host(hd, ds, (size_t)n * (C / 32) * 8);
		double worst = 0.0;
		for (int r = 0; r < n; r++) {
			double e = q8_err(yy + (size_t)r * C, hq + (size_t)r * C, hd + (size_t)r * (C / 32) * 2, C);
			worst = e > worst ? e : worst;
		}
		gpu_record("rmsnorm+q8", rc ? INFINITY : worst, 1.0001, "C=%d rows=%d (|x-dq|/(d/2))", C, n);
		free(hq); free(hd);
	}
	cudaFree(dx); cudaFree(dw); cudaFree(drows); cudaFree(dy); cudaFree(qs); cudaFree(ds);
	free(x); free(w); free(y); free(yy); free(yc); free(ref);
}

static void test_quantize(int K, int nc)
{
	float *x = rand_vec((size_t)nc * K, 2.0f);
	x[5] = 0.0f;
	for (int i = 0; i < 32 && K >= 64; i++)
		x[32 + i] = 0.0f; /* an all-zero group */
	float *dx = dup_dev(x, sizeof(float) * nc * K);
	int8_t *qs = dalloc((size_t)nc * K), *hq = xmalloc((size_t)nc * K);
	float *ds = dalloc((size_t)nc * K / 32 * 8), *hd = xmalloc((size_t)nc * K / 32 * 8);
	int rc = cuda_quantize_q8(dx, K, K, nc, qs, ds, 0);
	to_host(hq, qs, (size_t)nc * K);
	to_host(hd, ds, (size_t)nc * K / 32 * 8);
	double worst = 0.0;
	for (int c = 0; c < nc; c++) {
		double e = q8_err(x + (size_t)c * K, hq + (size_t)c * K, hd + (size_t)c * (K / 32) * 2, K);
		worst = e > worst ? e : worst;
	}
	gpu_record("quantize_q8", rc ? INFINITY : worst, 1.0001, "K=%d cols=%d (|x-dq|/(d/2))", K, nc);
	cudaFree(dx); cudaFree(qs); cudaFree(ds);
	free(x); free(hq); free(hd);
}

static void test_swiglu(int T, int F, int act)
{
	float *g = rand_vec((size_t)T * F, 3.0f), *u = rand_vec((size_t)T * F, 1.0f);
	float *dg = dup_dev(g, 4 * (size_t)T * F), *du = dup_dev(u, 4 * (size_t)T * F);
	float *dy = dalloc(4 * (size_t)T * F), *y = xmalloc(4 * (size_t)T * F);
	float *yc = xmalloc(4 * (size_t)T * F);
	double *ref = xmalloc(8 * (size_t)T * F);
	int rc = act ? cuda_glu(act, dg, du, F, T, F, dy, F, 0) : cuda_swiglu(dg, du, F, T, F, dy, F, 0);
	to_host(y, dy, 4 * (size_t)T * F);
	for (size_t i = 0; i < (size_t)T * F; i++)
		ref[i] = glu_ref(act, g[i], u[i]);
	if (act)
		cpu_geglu(yc, g, u, T * F);
	else
		cpu_swiglu(yc, g, u, T * F);
	/* GeGLU: the same F16 roundings on both sides; an input within rounding
	 * of an F16 midpoint may land on the neighbouring half (2^-11) */
	const char *nm = act ? "geglu" : "swiglu";
	gpu_record(nm, rc ? INFINITY : nmse_fd(y, ref, (size_t)T * F), act ? 1e-7 : 1e-10, "T=%d F=%d", T, F);
	gpu_record(act ? "geglu/cpu" : "swiglu/cpu", rc ? INFINITY : nmse_f(y, yc, (size_t)T * F),
	           act ? 1e-7 : 1e-10, "T=%d F=%d", T, F);
	cudaFree(dg); cudaFree(du); cudaFree(dy);
	free(g); free(u); free(y); free(yc); free(ref);
}

// ---- fused decode mat-vec: norm prologue, several matrices, GLU, q8 epilogue

static void test_fused(const int *types, int n_seg, int K, const int *Ns, int nc, bool norm,
                       bool glu, bool q8out, int act)
{
	float *x = rand_vec((size_t)nc * K, 2.0f), *nw = rand_vec(K, 1.0f);
	double *xn = xmalloc(sizeof(double) * nc * K);
	float *xnf = xmalloc(sizeof(float) * nc * K);
	for (int c = 0; c < nc; c++) {
		double ss = 0.0;
		for (int e = 0; e < K; e++)
			ss += (double)x[c * K + e] * x[c * K + e];
		double sc = norm ? 1.0 / sqrt(ss / K + 1e-6) : 1.0;
		for (int e = 0; e < K; e++) {
			xn[c * K + e] = x[c * K + e] * sc * (norm ? nw[e] : 1.0f);
			xnf[c * K + e] = (float)xn[c * K + e];
		}
	}
	struct cuda_mmv_fused f;
	memset(&f, 0, sizeof(f));
	f.n_seg = n_seg;
	f.K = K;
	f.ncols = nc;
	f.x = dup_dev(x, sizeof(float) * nc * K);
	f.ldx = K;
	f.norm_w = norm ? dup_dev(nw, sizeof(float) * K) : NULL;
	f.eps = 1e-6f;
	f.rows_per_warp = glu || q8out ? 2 : 1;
	f.act = act;
	void *w[3], *w2 = NULL;
	float *wf[3], *wf2 = NULL;
	int total = 0;
	for (int i = 0; i < n_seg; i++) {
		w[i] = rand_rows(types[i], K, Ns[i]);
		wf[i] = deq_rows(types[i], w[i], K, Ns[i]);
		f.seg[i].w = dev_mat(types[i], w[i], K, Ns[i]);
		f.seg[i].ldy = Ns[i] + 3;
		f.seg[i].y = dalloc(sizeof(float) * nc * f.seg[i].ldy);
		total += Ns[i];
	}
	if (glu) {
		w2 = rand_rows(types[0], K, Ns[0]);
		wf2 = deq_rows(types[0], w2, K, Ns[0]);
		void *d2 = dalloc(gguf_row_size(types[0], K) * Ns[0] + 256);
		CK(cudaMemcpy(d2, w2, gguf_row_size(types[0], K) * Ns[0], cudaMemcpyHostToDevice));
		f.seg[0].w2 = d2;
	}
	if (q8out) {
		f.oqs = dalloc((size_t)nc * Ns[0]);
		f.ods = dalloc((size_t)nc * Ns[0] / 32 * 8);
	}
	int rc = cuda_matvec_fused_ok(&f) ? cuda_matvec_fused(&f, 0) : -EINVAL;
	float *got = xmalloc(sizeof(float) * nc * total);
	double *ref = xmalloc(sizeof(double) * nc * total);
	bool quant = false;
	for (int i = 0, off = 0; i < n_seg; off += Ns[i], i++) {
		float *y = xmalloc(sizeof(float) * nc * f.seg[i].ldy);
		to_host(y, f.seg[i].y, sizeof(float) * nc * f.seg[i].ldy);
		quant |= is_quant(types[i]);
		for (int c = 0; c < nc; c++)
			for (int r = 0; r < Ns[i]; r++) {
				double a = 0.0, b = 0.0;
				for (int e = 0; e < K; e++) {
					a += wf[i][(size_t)r * K + e] * xn[c * K + e];
					if (glu)
						b += wf2[(size_t)r * K + e] * xn[c * K + e];
				}
				ref[(size_t)c * total + off + r] = glu ? glu_ref(act, a, b) : a;
				got[(size_t)c * total + off + r] = y[(size_t)c * f.seg[i].ldy + r];
			}
		free(y);
	}
	char name[112];
	snprintf(name, sizeof(name), "%s%s%s K=%d N0=%d segs=%d cols=%d%s%s%s", gguf_dtype_name(types[0]),
	         n_seg > 1 ? "," : "", n_seg > 1 ? gguf_dtype_name(types[1]) : "", K, Ns[0], n_seg, nc,
	         norm ? " norm" : "", glu ? (act ? " geglu" : " glu") : "", q8out ? " q8out" : "");
	gpu_record("matvec_fused", rc ? INFINITY : nmse_fd(got, ref, (size_t)nc * total),
	           quant ? 5e-4 : glu && act ? 1e-6 : 1e-9, "%s", name);
	if (q8out) {
		int8_t *hq = xmalloc((size_t)nc * Ns[0]);
		float *hd = xmalloc((size_t)nc * Ns[0] / 32 * 8), *y0 = xmalloc(sizeof(float) * nc * Ns[0]);
		to_host(hq, f.oqs, (size_t)nc * Ns[0]);
		to_host(hd, f.ods, (size_t)nc * Ns[0] / 32 * 8);
		for (int c = 0; c < nc; c++)
			memcpy(y0 + (size_t)c * Ns[0], got + (size_t)c * total, sizeof(float) * Ns[0]);
		double worst = 0.0;
		for (int c = 0; c < nc; c++) {
			double e = q8_err(y0 + (size_t)c * Ns[0], hq + (size_t)c * Ns[0], hd + (size_t)c * (Ns[0] / 32) * 2, Ns[0]);
			worst = e > worst ? e : worst;
		}
		gpu_record("matvec_fused+q8", rc ? INFINITY : worst, 1.0001, "%s", name);
		cudaFree(f.oqs); cudaFree(f.ods); free(hq); free(hd); free(y0);
	}
	for (int i = 0; i < n_seg; i++) {
		cudaFree((void *)f.seg[i].w.d); cudaFree(f.seg[i].y);
		free(w[i]); free(wf[i]);
	}
	cudaFree((void *)f.seg[0].w2); cudaFree((void *)f.x); cudaFree((void *)f.norm_w);
	free(w2); free(wf2); free(x); free(nw); free(xn); free(xnf); free(got); free(ref);
}

static void test_fused_all(void)
{
	const int q5[] = {GGUF_DTYPE_Q5_0, GGUF_DTYPE_Q5_0, GGUF_DTYPE_Q8_0};
	const int kt[] = {GGUF_DTYPE_Q4_K, GGUF_DTYPE_Q6_K, GGUF_DTYPE_F16};
	const int fl[] = {GGUF_DTYPE_F16, GGUF_DTYPE_F32, GGUF_DTYPE_BF16};
	const int qkv[] = {896, 128, 128}, qkv2[] = {67, 33, 200};
	for (int nc = 1; nc <= 8; nc += nc < 2 ? 1 : 3) { /* 1, 2, 5, 8 */
		test_fused(q5, 3, 896, qkv, nc, true, false, false, 0);
		test_fused(kt, 3, 1024, qkv2, nc, true, false, false, 0);
		test_fused(fl, 3, 896, qkv, nc, true, false, false, 0);
		test_fused(q5, 1, 896, (int[]){4864}, nc, true, true, true, 0);
		test_fused(kt, 1, 512, (int[]){96}, nc, nc == 2, true, true, 0);
		test_fused(fl, 1, 896, (int[]){544}, nc, true, true, false, 0);
		/* gemma3-270m's GeGLU (C 640, F 2048: its 640-wide rows fall back to Q5_0) */
		test_fused(q5, 1, 640, (int[]){2048}, nc, true, true, true, 1);
		test_fused(fl, 1, 640, (int[]){96}, nc, true, true, false, 1);
	}
	test_fused(q5, 2, 64, (int[]){40, 9}, 3, false, false, false, 0);
	for (int i = 0; i < N_TYPES; i++)
		test_fused(&all_types[i], 1, blck(all_types[i]) < 32 ? 256 : 2 * blck(all_types[i]),
		           (int[]){64}, 4, true, true, true, 0);
}

// ---- gemma: post-norm + residual, scaling, soft-capping

static void test_norm_add(int C, int T)
{
	float *x = rand_vec((size_t)T * C, 1.0f), *y = rand_vec((size_t)T * (C + 2), 3.0f);
	float *w = rand_vec(C, 1.0f), *xc = xmalloc(4 * (size_t)T * C), *tmp = xmalloc(4 * (size_t)C);
	double *ref = xmalloc(8 * (size_t)T * C);
	float *dx = dup_dev(x, 4 * (size_t)T * C), *dy = dup_dev(y, 4 * (size_t)T * (C + 2));
	float *dw = dup_dev(w, 4 * (size_t)C), *got = xmalloc(4 * (size_t)T * C);
	int rc = cuda_rmsnorm_add(dx, C, dy, C + 2, T, C, dw, 1e-6f, 0);
	to_host(got, dx, 4 * (size_t)T * C);
	for (int t = 0; t < T; t++) {
		const float *yr = y + (size_t)t * (C + 2);
		double ss = 0.0;
		for (int e = 0; e < C; e++)
			ss += (double)yr[e] * yr[e];
		const double sc = 1.0 / sqrt(ss / C + 1e-6);
		for (int e = 0; e < C; e++)
			ref[(size_t)t * C + e] = x[(size_t)t * C + e] + yr[e] * sc * w[e];
		/* the CPU backend's item_residual_norm with a post weight */
		memcpy(xc + (size_t)t * C, x + (size_t)t * C, 4 * (size_t)C);
		cpu_rmsnorm(tmp, yr, w, C, 1e-6f);
		cpu_add(xc + (size_t)t * C, tmp, C);
	}
	gpu_record("rmsnorm_add", rc ? INFINITY : nmse_fd(got, ref, (size_t)T * C), 1e-11, "C=%d T=%d", C, T);
	gpu_record("rmsnorm_add/cpu", rc ? INFINITY : nmse_f(got, xc, (size_t)T * C), 1e-11, "C=%d T=%d", C, T);
	cudaFree(dx); cudaFree(dy); cudaFree(dw);
	free(x); free(y); free(w); free(xc); free(tmp); free(ref); free(got);
}

/* op 0 scale (embedding x sqrt(C)), 1 soft-cap */
static void test_scale(int T, int N, float s, int op)
{
	const int ld = N + 3;
	float *x = rand_vec((size_t)T * ld, 4.0f), *xc = xmalloc(4 * (size_t)T * N), *got = xmalloc(4 * (size_t)T * ld);
	double *ref = xmalloc(8 * (size_t)T * N);
	float *dx = dup_dev(x, 4 * (size_t)T * ld);
	int rc = op ? cuda_softcap(dx, ld, T, N, s, 0) : cuda_scale(dx, ld, T, N, s, 0);
	to_host(got, dx, 4 * (size_t)T * ld);
	int untouched = 0;
	for (int t = 0; t < T; t++) {
		for (int i = 0; i < N; i++) {
			const double v = x[(size_t)t * ld + i];
			ref[(size_t)t * N + i] = op ? s * tanh(v / s) : v * s;
			xc[(size_t)t * N + i] = x[(size_t)t * ld + i];
		}
		if (op)
			cpu_softcap(xc + (size_t)t * N, N, s);
		else
			cpu_scale(xc + (size_t)t * N, N, s);
		for (int i = N; i < ld; i++) /* past N: left alone */
			untouched += got[(size_t)t * ld + i] == x[(size_t)t * ld + i];
		memmove(got + (size_t)t * N, got + (size_t)t * ld, 4 * (size_t)N);
	}
	/* the fast-math tanhf: ~3e-6 relative (measured NMSE 8e-12 on the H200) */
	const char *nm = op ? "softcap" : "scale";
	const double tol = op ? 1e-10 : 1e-12;
	gpu_record(nm, rc ? INFINITY : nmse_fd(got, ref, (size_t)T * N), tol, "T=%d N=%d s=%g", T, N, s);
	gpu_record(op ? "softcap/cpu" : "scale/cpu", rc ? INFINITY : nmse_f(got, xc, (size_t)T * N), tol,
	           "T=%d N=%d", T, N);
	gpu_record(op ? "softcap/ld" : "scale/ld", T * (ld - N) - untouched, 0, "elements past N changed");
	cudaFree(dx);
	free(x); free(xc); free(got); free(ref);
}

// ---- mixture of experts

struct moe_dev {
	int32_t *sel, *tab, *pairs;
	float *wt;
};

/* Routes T tokens on the device (cuda_moe_route) and on the CPU
 * (cpu_moe_route); records both checks, leaves the device tables in md
 * and the host's in hsel/hwt.  Logits ~ N(0, 1), a few tied. */
static int route_check(int T, int E, int K, struct moe_dev *md, int32_t *hsel, float *hwt)
{
	float *lg = rand_vec((size_t)T * E, 1.0f), *p = xmalloc(4 * (size_t)E);
	for (int t = 0; t < T; t += 3) /* ties: the lower id must win */
		lg[(size_t)t * E + E - 1] = lg[(size_t)t * E + 0];
	float *dl = dup_dev(lg, 4 * (size_t)T * E);
	md->sel = dalloc(4 * (size_t)T * K);
	md->wt = dalloc(4 * (size_t)T * K);
	md->tab = dalloc(4 * (size_t)(2 * E + 2));
	md->pairs = dalloc(4 * (size_t)T * K);
	struct cuda_moe_route r = {T, E, K, dl, E, md->sel, md->wt, md->tab + 1, md->tab + 1 + E,
	                           md->pairs, md->tab};
	int rc = cuda_moe_route(&r, 0);
	int32_t *gsel = xmalloc(4 * (size_t)T * K), *tab = xmalloc(4 * (size_t)(2 * E + 2));
	int32_t *gp = xmalloc(4 * (size_t)T * K);
	float *gwt = xmalloc(4 * (size_t)T * K);
	to_host(gsel, md->sel, 4 * (size_t)T * K);
	to_host(gwt, md->wt, 4 * (size_t)T * K);
	to_host(tab, md->tab, 4 * (size_t)(2 * E + 2));
	to_host(gp, md->pairs, 4 * (size_t)T * K);
	int bad_sel = 0;
	for (int t = 0; t < T; t++) {
		memcpy(p, lg + (size_t)t * E, 4 * (size_t)E);
		cpu_moe_route(p, E, K, hsel + (size_t)t * K, hwt + (size_t)t * K);
		for (int k = 0; k < K; k++)
			bad_sel += hsel[(size_t)t * K + k] != gsel[(size_t)t * K + k];
	}
	/* the grouping: slots in increasing expert id, each pair exactly once,
	 * in increasing order within its slot, routed to that slot's expert */
	const int n_used = tab[0], *sexp = tab + 1, *soff = tab + 1 + E;
	int bad_grp = n_used < 1 || n_used > E || soff[0] != 0 || soff[E] != T * K;
	for (int s = 0; s < E && !bad_grp; s++) {
		bad_grp |= s < n_used ? sexp[s] < 0 || (s && sexp[s] <= sexp[s - 1]) || soff[s + 1] <= soff[s]
		                      : sexp[s] != -1 || soff[s + 1] != soff[s];
		for (int j = soff[s]; s < n_used && j < soff[s + 1] && !bad_grp; j++)
			bad_grp |= gp[j] < 0 || gp[j] >= T * K || gsel[gp[j]] != sexp[s] || (j > soff[s] && gp[j] <= gp[j - 1]);
	}
	gpu_record("moe_route/cpu", rc ? INFINITY : bad_sel, 0, "T=%d E=%d K=%d: chosen experts differing", T, E, K);
	gpu_record("moe_route/cpu", rc ? INFINITY : nmse_f(gwt, hwt, (size_t)T * K), 1e-10, "T=%d E=%d K=%d: weights",
	           T, E, K);
	gpu_record("moe_group", rc ? INFINITY : bad_grp, 0, "T=%d E=%d K=%d: %d slots, table consistent", T, E, K,
	           n_used);
	cudaFree(dl);
	free(lg); free(p); free(gsel); free(tab); free(gp); free(gwt);
	return rc;
}

/* The grouped expert mat-vec (decode): gate/up GLU over token rows, then
 * down weighted over pair rows, against the CPU's matrix product of each
 * chosen expert (cpu_matmul on the expert's view) and a float64 one. */
static void test_moe_mv(int type, int T, int E, int K, int C, int Fe)
{
	struct moe_dev md;
	int32_t *hsel = xmalloc(4 * (size_t)T * K);
	float *hwt = xmalloc(4 * (size_t)T * K);
	int rc = route_check(T, E, K, &md, hsel, hwt);
	void *wg = rand_rows(type, C, Fe * E), *wu = rand_rows(type, C, Fe * E), *wd = rand_rows(type, Fe, C * E);
	float *fg = deq_rows(type, wg, C, Fe * E), *fu = deq_rows(type, wu, C, Fe * E), *fd = deq_rows(type, wd, Fe, C * E);
	const size_t sg = gguf_row_size(type, C) * Fe, sd = gguf_row_size(type, Fe) * C;
	struct cuda_experts xg = {dev_mat(type, wg, C, Fe * E), sg, E}, xu = {dev_mat(type, wu, C, Fe * E), sg, E};
	struct cuda_experts xd = {dev_mat(type, wd, Fe, C * E), sd, E};
	xg.m.N = xu.m.N = Fe;
	xd.m.N = C;
	float *x = rand_vec((size_t)T * C, 1.0f), *dx = dup_dev(x, 4 * (size_t)T * C);
	const int P = T * K, n_slots = E < P ? E : P;
	float *dh = dalloc(4 * (size_t)P * Fe), *deo = dalloc(4 * (size_t)P * C);
	int8_t *qx = dalloc((size_t)T * C), *qh = dalloc((size_t)P * Fe);
	void *dsx = dalloc((size_t)T * (C / 32 + 1) * 8), *dsh = dalloc((size_t)P * (Fe / 32 + 1) * 8);
	if (!rc && is_quant(type))
		rc = cuda_quantize_q8(dx, C, C, T, qx, dsx, 0);
	struct cuda_moe_mv gu = {xg, xu, md.tab + 1, md.tab + 1 + E, md.pairs, md.wt, n_slots, T, K,
	                         dx, C, qx, dsx, dh, Fe, CUDA_GLU_SILU};
	if (!rc)
		rc = cuda_moe_matvec(&gu, 0);
	float *h = xmalloc(4 * (size_t)P * Fe);
	to_host(h, dh, 4 * (size_t)P * Fe);
	/* down from the device's h, so that the second check sees one product */
	if (!rc && is_quant(type))
		rc = cuda_quantize_q8(dh, Fe, Fe, P, qh, dsh, 0);
	struct cuda_moe_mv dn = {xd, {{0}, 0, 0}, md.tab + 1, md.tab + 1 + E, md.pairs, md.wt, n_slots, T, 1,
	                         dh, Fe, qh, dsh, deo, C, 0};
	if (!rc)
		rc = cuda_moe_matvec(&dn, 0);
	float *eo = xmalloc(4 * (size_t)P * C);
	to_host(eo, deo, 4 * (size_t)P * C);
	/* references per pair */
	float *ch = xmalloc(4 * (size_t)P * Fe), *ceo = xmalloc(4 * (size_t)P * C);
	double *rh = xmalloc(8 * (size_t)P * Fe), *reo = xmalloc(8 * (size_t)P * C);
	for (int p = 0; p < P; p++) {
		const int t = p / K, e = hsel[p];
		const float *xt = x + (size_t)t * C, *hp = h + (size_t)p * Fe;
		float *cg = cpu_mm(type, (const uint8_t *)wg + e * sg, xt, C, Fe, 1);
		float *cu = cpu_mm(type, (const uint8_t *)wu + e * sg, xt, C, Fe, 1);
		float *cd = cpu_mm(type, (const uint8_t *)wd + e * sd, hp, Fe, C, 1);
		for (int r = 0; r < Fe; r++) {
			double a = 0.0, b = 0.0;
			for (int k = 0; k < C; k++) {
				a += (double)fg[((size_t)e * Fe + r) * C + k] * xt[k];
				b += (double)fu[((size_t)e * Fe + r) * C + k] * xt[k];
			}
			rh[(size_t)p * Fe + r] = silu_d(a) * b;
			ch[(size_t)p * Fe + r] = (float)(silu_d(cg[r]) * cu[r]);
		}
		for (int r = 0; r < C; r++) {
			double a = 0.0;
			for (int k = 0; k < Fe; k++)
				a += (double)fd[((size_t)e * C + r) * Fe + k] * hp[k];
			reo[(size_t)p * C + r] = a * hwt[p];
			ceo[(size_t)p * C + r] = cd[r] * hwt[p];
		}
		free(cg); free(cu); free(cd);
	}
	/* vs the CPU: 1e-4 for BF16 (the CPU rounds activations to BF16), as test_matvec */
	const double tol = is_quant(type) ? 5e-4 : 1e-9;
	const double tolc = is_quant(type) ? 1e-3 : type == GGUF_DTYPE_BF16 ? 1e-4 : 1e-5;
	gpu_record("moe_matvec", rc ? INFINITY : nmse_fd(h, rh, (size_t)P * Fe), tol, "%s T=%d E=%d K=%d gate/up glu",
	           gguf_dtype_name(type), T, E, K);
	gpu_record("moe_matvec/cpu", rc ? INFINITY : nmse_f(h, ch, (size_t)P * Fe), tolc, "%s T=%d E=%d K=%d gate/up glu",
	           gguf_dtype_name(type), T, E, K);
	gpu_record("moe_matvec", rc ? INFINITY : nmse_fd(eo, reo, (size_t)P * C), tol, "%s T=%d E=%d K=%d down x wt",
	           gguf_dtype_name(type), T, E, K);
	gpu_record("moe_matvec/cpu", rc ? INFINITY : nmse_f(eo, ceo, (size_t)P * C), tolc, "%s T=%d E=%d K=%d down x wt",
	           gguf_dtype_name(type), T, E, K);
	cudaFree(md.sel); cudaFree(md.wt); cudaFree(md.tab); cudaFree(md.pairs);
	cudaFree((void *)xg.m.d); cudaFree((void *)xu.m.d); cudaFree((void *)xd.m.d);
	cudaFree(dx); cudaFree(dh); cudaFree(deo); cudaFree(qx); cudaFree(qh); cudaFree(dsx); cudaFree(dsh);
	free(hsel); free(hwt); free(wg); free(wu); free(wd); free(fg); free(fu); free(fd); free(x); free(h);
	free(eo); free(ch); free(ceo); free(rh); free(reo);
}

/* Prefill's gather / scatter and the weighted sum, against the host. */
static void test_moe_gather_sum(int T, int E, int K, int C)
{
	struct moe_dev md;
	int32_t *hsel = xmalloc(4 * (size_t)T * K);
	float *hwt = xmalloc(4 * (size_t)T * K);
	int rc = route_check(T, E, K, &md, hsel, hwt);
	const int P = T * K;
	int32_t *tab = xmalloc(4 * (size_t)(2 * E + 2)), *pairs = xmalloc(4 * (size_t)P);
	to_host(tab, md.tab, 4 * (size_t)(2 * E + 2));
	to_host(pairs, md.pairs, 4 * (size_t)P);
	float *x = rand_vec((size_t)T * C, 1.0f), *dx = dup_dev(x, 4 * (size_t)T * C);
	float *dg = dalloc(4 * (size_t)T * C), *deo = dalloc(4 * (size_t)P * C);
	float *g = xmalloc(4 * (size_t)T * C);
	double gerr = 0.0;
	/* every used slot: gather its token rows, "multiply" by 1 + slot, scatter */
	for (int s = 0; s < tab[0] && !rc; s++) {
		const int o = tab[1 + E + s], n = tab[1 + E + s + 1] - o;
		rc = cuda_moe_gather(dx, C, C, md.pairs + o, n, K, dg, C, 0);
		to_host(g, dg, 4 * (size_t)n * C);
		for (int j = 0; j < n; j++)
			for (int c = 0; c < C; c++)
				gerr += fabs(g[(size_t)j * C + c] - x[(size_t)(pairs[o + j] / K) * C + c]);
		if (!rc)
			rc = cuda_scale(dg, C, n, C, 1.0f + s, 0);
		if (!rc)
			rc = cuda_moe_scatter(dg, C, C, md.pairs + o, n, md.wt, deo, 0);
	}
	float *y = rand_vec((size_t)T * C, 1.0f), *dy = dup_dev(y, 4 * (size_t)T * C);
	if (!rc)
		rc = cuda_moe_sum(deo, K, T, C, dy, C, 0);
	float *got = xmalloc(4 * (size_t)T * C), *cref = xmalloc(4 * (size_t)T * C);
	to_host(got, dy, 4 * (size_t)T * C);
	int *slot_of = xmalloc(sizeof(int) * (size_t)E);
	for (int s = 0; s < tab[0]; s++)
		slot_of[tab[1 + s]] = s;
	for (int t = 0; t < T; t++)
		for (int c = 0; c < C; c++) {
			float acc = 0.0f; /* rank order, as the CPU's item_moe_sum */
			for (int k = 0; k < K; k++) {
				const int p = t * K + k;
				const float v = x[(size_t)t * C + c] * (1.0f + slot_of[hsel[p]]) * hwt[p];
				acc = k ? acc + v : v;
			}
			cref[(size_t)t * C + c] = y[(size_t)t * C + c] + acc;
		}
	gpu_record("moe_gather", rc ? INFINITY : gerr, 0, "T=%d E=%d K=%d C=%d: gathered rows exact", T, E, K, C);
	gpu_record("moe_scatter+sum", rc ? INFINITY : nmse_f(got, cref, (size_t)T * C), 1e-12,
	           "T=%d E=%d K=%d C=%d", T, E, K, C);
	cudaFree(md.sel); cudaFree(md.wt); cudaFree(md.tab); cudaFree(md.pairs);
	cudaFree(dx); cudaFree(dg); cudaFree(deo); cudaFree(dy);
	free(hsel); free(hwt); free(tab); free(pairs); free(x); free(g); free(y); free(got); free(cref);
	free(slot_of);
}

static void test_moe_all(void)
{
	const int big[] = {1, 2, 3, 8}; /* decode batches; Qwen3-30B-A3B routing */
	for (int i = 0; i < 4; i++) {
		test_moe_mv(GGUF_DTYPE_Q4_K, big[i], 128, 8, 256, 256);
		test_moe_mv(GGUF_DTYPE_Q6_K, big[i], 128, 8, 256, 256);
	}
	for (int i = 0; i < N_TYPES; i++) { /* every type, Mixtral routing, odd sizes for float */
		const int t = all_types[i], b = blck(t) < 32 ? 32 : blck(t);
		test_moe_mv(t, 5, 8, 2, 2 * b, is_quant(t) ? b : 72);
	}
	test_moe_mv(GGUF_DTYPE_F16, 8, 64, 6, 96, 40);
	test_moe_gather_sum(1, 128, 8, 64);
	test_moe_gather_sum(300, 128, 8, 96);
	test_moe_gather_sum(77, 8, 2, 130);
	test_moe_gather_sum(2048, 256, 8, 32); /* the largest routing table */
}

int main(int argc, char **argv)
{
	cublasHandle_t h;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-v"))
			gpu_verbose = true;
		else
			rng_state = strtoull(argv[i], NULL, 0);
	}
	if (cpu_pool_init(0, &pool) || cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
		fprintf(stderr, "cannot create the CPU pool or the cuBLAS handle\n");
		return 2;
	}
	for (int i = 0; i < N_TYPES; i++) {
		const int t = all_types[i], b = blck(t) < 32 ? 32 : blck(t);
		test_rows(t);
		/* K: one block row, a long row (4864 = Qwen's F), an odd-block row */
		const int Ks[] = {b, 4864 / b * b, b * 7};
		for (int k = 0; k < 3; k++)
			for (int c = 0; c < 4; c++)
				test_matvec(t, Ks[k], k == 1 ? 131 : 37 + 64 * k, (int[]){1, 2, 3, 8}[c], 0);
		test_matvec(t, b * 3, 45, 1, 1);
		test_matvec(t, b * 3, 45, 4, 2);
		test_matvec(t, b * 2, 29, 1, 2);
		test_matvec(t, b * 3, 45, 3, 3);
		test_gemm(h, t, b * 3, 301, 9, false);
		test_gemm(h, t, b * 2, 77, 133, true);
	}
	/* float types: row lengths that are not multiples of 4 or 32 (stories260K: F = 172) */
	const int odd[] = {GGUF_DTYPE_F32, GGUF_DTYPE_F16, GGUF_DTYPE_BF16};
	for (int i = 0; i < 3; i++) {
		test_matvec(odd[i], 172, 64, 1, 0);
		test_matvec(odd[i], 173, 33, 3, 1);
		test_matvec(odd[i], 66, 172, 2, 2);
		test_matvec(odd[i], 66, 172, 2, 3);
		test_gemm(h, odd[i], 172, 64, 17, true);
	}
	test_quantize(896, 1);
	test_quantize(4864, 8);
	test_norm(896, 1, false, true);
	test_norm(896, 8, true, true);
	test_norm(64, 5, false, true);
	test_norm(173, 16, true, false);
	test_norm(4096, 3, false, true);
	test_swiglu(1, 4864, 0);
	test_swiglu(37, 173, 0);
	test_swiglu(1, 2048, 1);
	test_swiglu(37, 173, 1);
	test_norm_add(640, 1);
	test_norm_add(173, 9);
	test_scale(3, 640, sqrtf(640.0f), 0);
	test_scale(2, 151936, 30.0f, 1);
	test_scale(7, 333, 1.5f, 1);
	test_fused_all();
	test_moe_all();
	cublasDestroy(h);
	cpu_pool_free(pool);
	return gpu_summary("gpu_ops") ? 1 : 0;
}
