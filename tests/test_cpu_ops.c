/*
 * test_cpu_ops.c — every CPU transformer op (engine/cpu/ops.c) against a
 * naive double-precision reference written here, on random seeded inputs.
 *
 * Cases: RMS norm (with and without weight, odd widths), SwiGLU over a wide
 * range (both tails of exp), embedding lookup of F32, F16 and Q8_0 rows,
 * F16 rounding, RoPE NORM and NEOX with partial rotation (n_rot < D, an odd
 * number of pairs) at far positions, the KV store layout, and attention with
 * grouped KV heads (G < H), shuffled non-contiguous pages, positions
 * crossing page boundaries, garbage in the slots past the causal limit, and
 * head dims that take the vector and the scalar paths.
 *
 * Tolerances (relative to the reference's max |value|) are per op, with the
 * reason beside each.  Run: ./test_cpu_ops (exit 0 = all pass).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cpu/ops.h"
#include "gguf/gguf.h"

static int n_fail;
static uint64_t rng_state = 0x1234567887654321ull;

static double urand(void) /* [0, 1) */
{
	rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
	return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}

static float frand(float lo, float hi)
{
	return (float)(lo + (hi - lo) * urand());
}

static void fill(float *x, int n, float lo, float hi)
{
	for (int i = 0; i < n; i++)
		x[i] = frand(lo, hi);
}

/* max |got - ref| / max |ref| (ref all zero: absolute). */
static double rel_err(const float *got, const double *ref, int n)
{
	double md = 0.0, mr = 0.0;

	for (int i = 0; i < n; i++) {
		double d = fabs((double)got[i] - ref[i]);
		md = d > md || isnan(d) ? d : md;
		mr = fabs(ref[i]) > mr ? fabs(ref[i]) : mr;
	}
	return mr > 0 ? md / mr : md;
}

static void check(const char *what, double err, double tol)
{
	bool ok = err <= tol;

	printf("%s %-48s err %.3g (tol %.3g)\n", ok ? "ok  " : "FAIL", what, err, tol);
	if (!ok)
		n_fail++;
}

// ---- norms and element-wise

static void test_rmsnorm(void)
{
	const int widths[] = { 1, 7, 64, 896, 4099 };
	float x[4099], w[4099], y[4099];
	double ref[4099];
	char name[64];

	for (size_t k = 0; k < sizeof(widths) / sizeof(widths[0]); k++) {
		const int n = widths[k];
		const float eps = 1e-5f;
		double ss = 0.0;
		fill(x, n, -3.0f, 3.0f);
		fill(w, n, -2.0f, 2.0f);
		for (int i = 0; i < n; i++)
			ss += (double)x[i] * x[i];
		for (int pass = 0; pass < 2; pass++) {
			const bool weighted = pass == 0;
			for (int i = 0; i < n; i++)
				ref[i] = x[i] / sqrt(ss / n + eps) * (weighted ? w[i] : 1.0);
			cpu_rmsnorm(y, x, weighted ? w : NULL, n, eps);
			snprintf(name, sizeof(name), "rmsnorm n=%d %s", n, weighted ? "weighted" : "plain");
			/* f32 products and scale: a few ulps */
			check(name, rel_err(y, ref, n), 2e-6);
		}
	}
	/* in place, as the qwen3 per-head norms use it */
	fill(x, 64, -1.0f, 1.0f);
	{
		double ss = 0.0;
		for (int i = 0; i < 64; i++)
			ss += (double)x[i] * x[i];
		for (int i = 0; i < 64; i++)
			ref[i] = x[i] / sqrt(ss / 64 + 1e-6);
		cpu_rmsnorm(x, x, NULL, 64, 1e-6f);
		check("rmsnorm in place", rel_err(x, ref, 64), 2e-6);
	}
}

static void test_swiglu(void)
{
	enum { N = 1000 };
	float g[N], u[N], y[N];
	double ref[N];

	fill(g, N, -30.0f, 30.0f);
	g[0] = -200.0f; /* exp(-g) overflows */
	g[1] = 200.0f;
	g[2] = 0.0f;
	fill(u, N, -2.0f, 2.0f);
	for (int i = 0; i < N; i++)
		ref[i] = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
	cpu_swiglu(y, g, u, N);
	/* the vector exp is good to ~2e-7 relative */
	check("swiglu", rel_err(y, ref, N), 2e-6);
	for (int i = 0; i < N; i++) {
		double d = fabs(y[i] - ref[i]), m = fabs(ref[i]);
		if (d > 1e-5 * m + 1e-30) {
			check("swiglu element-wise", d / (m > 0 ? m : 1), 1e-5);
			return;
		}
	}
	check("swiglu element-wise", 0.0, 1e-5);
}

/* GeGLU against the tanh GELU in double: ggml (and we) round the input and
 * the GELU to F16, relative 2^-11 each (~1e-3 together) */
static void test_geglu(void)
{
	enum { N = 1000 };
	float g[N], u[N], y[N], x[N];
	double ref[N];

	fill(g, N, -12.0f, 12.0f);
	g[0] = -10.0f, g[1] = 10.0f, g[2] = 0.0f, g[3] = -30.0f, g[4] = 30.0f;
	fill(u, N, -2.0f, 2.0f);
	for (int i = 0; i < N; i++) {
		const double a = g[i];
		ref[i] = 0.5 * a * (1.0 + tanh(0.7978845608028654 * (a + 0.044715 * a * a * a))) * u[i];
	}
	cpu_geglu(y, g, u, N);
	check("geglu", rel_err(y, ref, N), 2e-3);
	for (int i = 0; i < N; i++)
		x[i] = g[i] * 3.0f;
	cpu_softcap(x, N, 5.0f);
	for (int i = 0; i < N; i++)
		ref[i] = 5.0 * tanh(g[i] * 3.0 / 5.0);
	check("softcap", rel_err(x, ref, N), 1e-6);
}

static void test_round_f16(void)
{
	enum { N = 1003 };
	float x[N], y[N];
	int bad = 0;

	fill(x, N, -70000.0f, 70000.0f);
	for (int i = 0; i < 100; i++)
		x[i] = frand(-1e-4f, 1e-4f); /* subnormal halves */
	cpu_round_f16(y, x, N);
	for (int i = 0; i < N; i++)
		bad += y[i] != gguf_half_to_f32(gguf_f32_to_half(x[i])) &&
		       !(isinf(y[i]) && fabsf(x[i]) > 65504.0f);
	check("f16 rounding equals gguf_f32_to_half", bad, 0);
}

static void test_embed(void)
{
	enum { C = 64, V = 5 };
	float f32[V * C], y[C];
	gguf_half f16[V * C];
	struct block_q8_0 q8[V * C / QK8_0];
	double ref[C];
	struct eng_tensor t = { .ne = { C, V } };

	fill(f32, V * C, -1.0f, 1.0f);
	for (int i = 0; i < V * C; i++)
		f16[i] = gguf_f32_to_half(f32[i]);
	for (int i = 0; i < V * C / QK8_0; i++) {
		q8[i].d = gguf_f32_to_half(frand(0.001f, 0.05f));
		for (int j = 0; j < QK8_0; j++)
			q8[i].qs[j] = (int8_t)(urand() * 255 - 127);
	}

	t.type = GGUF_DTYPE_F32, t.data = f32;
	for (int i = 0; i < C; i++)
		ref[i] = f32[3 * C + i];
	check("embed F32 row 3", cpu_embed(y, &t, 3) ? 1 : rel_err(y, ref, C), 0);

	t.type = GGUF_DTYPE_F16, t.data = f16;
	for (int i = 0; i < C; i++)
		ref[i] = gguf_half_to_f32(f16[4 * C + i]);
	check("embed F16 row 4", cpu_embed(y, &t, 4) ? 1 : rel_err(y, ref, C), 0);

	t.type = GGUF_DTYPE_Q8_0, t.data = q8;
	for (int i = 0; i < C; i++) {
		const struct block_q8_0 *b = &q8[(2 * C + i) / QK8_0];
		ref[i] = (double)gguf_half_to_f32(b->d) * b->qs[i % QK8_0];
	}
	check("embed Q8_0 row 2", cpu_embed(y, &t, 2) ? 1 : rel_err(y, ref, C), 1e-7);
	check("embed refuses token id V", cpu_embed(y, &t, V) == 0, 0);
	check("embed refuses token id -1", cpu_embed(y, &t, -1) == 0, 0);
}

// ---- RoPE

static void rope_ref(double *y, const float *x, int n_head, int D, int n_rot, int pos, double base,
                     enum eng_rope_type type, double scale, const float *ff)
{
	for (int h = 0; h < n_head; h++) {
		const float *xh = x + h * D;
		double *yh = y + h * D;
		for (int i = 0; i < D; i++)
			yh[i] = xh[i];
		for (int i = 0; i < n_rot / 2; i++) {
			const double th = scale * pos * pow(base, -2.0 * i / n_rot) / (ff ? ff[i] : 1.0);
			const int i0 = type == ENG_ROPE_TYPE_NEOX ? i : 2 * i;
			const int i1 = type == ENG_ROPE_TYPE_NEOX ? i + n_rot / 2 : 2 * i + 1;
			yh[i0] = xh[i0] * cos(th) - xh[i1] * sin(th);
			yh[i1] = xh[i0] * sin(th) + xh[i1] * cos(th);
		}
	}
}

static void test_rope(void)
{
	struct { int H, D, n_rot, pos; float base; } cases[] = {
		{ 3, 16, 10, 1, 10000.0f },    /* partial: 5 pairs, dims 10..15 untouched */
		{ 3, 16, 10, 37, 10000.0f },
		{ 2, 64, 64, 200, 1e6f },      /* qwen2 base */
		{ 2, 8, 8, 2047, 10000.0f },   /* stories260K shape, far position */
		{ 4, 128, 6, 4000, 500000.0f },/* 3 pairs of 128 */
	};
	float x[4 * 128], y[4 * 128], cs[128];
	double ref[4 * 128];
	char name[96];

	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		const int H = cases[k].H, D = cases[k].D, nr = cases[k].n_rot, pos = cases[k].pos;
		for (int type = 0; type < 2; type++) {
			fill(x, H * D, -1.0f, 1.0f);
			memcpy(y, x, sizeof(float) * H * D);
			rope_ref(ref, x, H, D, nr, pos, cases[k].base, type, 1.0, NULL);
			cpu_rope_cache(cs, pos, nr, cases[k].base);
			cpu_rope(y, H, D, nr, cs, type);
			snprintf(name, sizeof(name), "rope %s H=%d D=%d n_rot=%d pos=%d",
			         type == ENG_ROPE_TYPE_NEOX ? "NEOX" : "NORM", H, D, nr, pos);
			/* theta is an iterated f32 product as in ggml: its relative
			 * error grows ~1e-7 per step, times pos radians */
			check(name, rel_err(y, ref, H * D), 1e-6 + 5e-9 * pos * nr / 2);
			/* the pass-through dims must be bit-exact */
			for (int h = 0; h < H; h++)
				for (int i = nr; i < D; i++)
					if (y[h * D + i] != x[h * D + i]) {
						check("rope leaves dims >= n_rot alone", 1, 0);
						h = H;
						break;
					}
		}
	}
	/* Llama 3.1 frequency factors and linear scaling (positions / 4) */
	{
		float ff[32];
		for (int i = 0; i < 32; i++)
			ff[i] = i < 10 ? 1.0f : i < 20 ? frand(1.0f, 8.0f) : 8.0f;
		for (int type = 0; type < 2; type++) {
			fill(x, 2 * 64, -1.0f, 1.0f);
			memcpy(y, x, sizeof(float) * 2 * 64);
			rope_ref(ref, x, 2, 64, 64, 300, 500000.0, type, 0.25, ff);
			cpu_rope_cache_ext(cs, 300, 64, 500000.0f, 0.25f, ff);
			cpu_rope(y, 2, 64, 64, cs, type);
			snprintf(name, sizeof(name), "rope %s with freq factors, scale 1/4",
			         type == ENG_ROPE_TYPE_NEOX ? "NEOX" : "NORM");
			check(name, rel_err(y, ref, 2 * 64), 1e-6 + 5e-9 * 300 * 32);
		}
	}
	/* NORM and NEOX must differ when n_rot > 2 (pairing really changes) */
	fill(x, 16, -1.0f, 1.0f);
	memcpy(y, x, sizeof(float) * 16);
	cpu_rope_cache(cs, 5, 16, 10000.0f);
	cpu_rope(x, 1, 16, 16, cs, ENG_ROPE_TYPE_NORM);
	cpu_rope(y, 1, 16, 16, cs, ENG_ROPE_TYPE_NEOX);
	check("rope NORM != NEOX", memcmp(x, y, sizeof(float) * 16) == 0, 0);
}

// ---- KV store and attention

struct attn_case {
	int H, G, D, n_pages, n_kv;
};

static double half_val(gguf_half h)
{
	return gguf_half_to_f32(h);
}

/* Positions j0 <= j < n_kv; scores soft-capped (cap * tanh(s / cap)) when cap > 0. */
static void attn_ref_ext(double *out, const float *q, const struct cpu_kv_layer *kv,
                         const int32_t *pages, int j0, int n_kv, int g, double cap)
{
	const int D = kv->D, GD = kv->G * kv->D;
	double *s = malloc(sizeof(double) * n_kv), mx = -INFINITY, sum = 0.0;

	for (int j = j0; j < n_kv; j++) {
		size_t off = ((size_t)pages[j / ENG_KV_PAGE] * ENG_KV_PAGE + j % ENG_KV_PAGE) * GD + g * D;
		double d = 0.0;
		for (int i = 0; i < D; i++)
			d += (double)q[i] * half_val(kv->k[off + i]);
		s[j] = d / sqrt((double)D);
		if (cap > 0)
			s[j] = cap * tanh(s[j] / cap);
		mx = s[j] > mx ? s[j] : mx;
	}
	for (int j = j0; j < n_kv; j++)
		sum += (s[j] = exp(s[j] - mx));
	for (int i = 0; i < D; i++)
		out[i] = 0.0;
	for (int j = j0; j < n_kv; j++) {
		size_t off = ((size_t)pages[j / ENG_KV_PAGE] * ENG_KV_PAGE + j % ENG_KV_PAGE) * GD + g * D;
		for (int i = 0; i < D; i++)
			out[i] += s[j] / sum * half_val(kv->v[off + i]);
	}
	free(s);
}

static void attn_ref(double *out, const float *q, const struct cpu_kv_layer *kv, const int32_t *pages,
                     int n_kv, int g)
{
	attn_ref_ext(out, q, kv, pages, 0, n_kv, g, 0.0);
}

static void test_attention_case(const struct attn_case *ac)
{
	const int H = ac->H, G = ac->G, D = ac->D, GD = G * D, NP = ac->n_pages;
	const size_t pool = (size_t)NP * ENG_KV_PAGE * GD;
	struct cpu_kv_layer kv = { .k = malloc(pool * 2), .v = malloc(pool * 2), .G = G, .D = D };
	int32_t *pages = malloc(sizeof(int32_t) * NP);
	float *k = malloc(sizeof(float) * GD), *v = malloc(sizeof(float) * GD);
	float *q = malloc(sizeof(float) * D), *out = malloc(sizeof(float) * D);
	float *scores = malloc(sizeof(float) * ac->n_kv), *q16 = malloc(sizeof(float) * D);
	double *ref = malloc(sizeof(double) * D), worst = 0.0;
	int bad_store = 0;
	char name[128];

	/* garbage everywhere (large, so attending to it would show) */
	for (size_t i = 0; i < pool; i++) {
		kv.k[i] = gguf_f32_to_half(frand(-8.0f, 8.0f));
		kv.v[i] = gguf_f32_to_half(frand(100.0f, 200.0f));
	}
	/* a shuffled page table: logical page i → physical pages[i] */
	for (int i = 0; i < NP; i++)
		pages[i] = i;
	for (int i = NP - 1; i > 0; i--) {
		int j = (int)(urand() * (i + 1)), t = pages[i];
		pages[i] = pages[j], pages[j] = t;
	}
	for (int p = 0; p < ac->n_kv; p++) {
		fill(k, GD, -1.0f, 1.0f);
		fill(v, GD, -1.0f, 1.0f);
		cpu_kv_store(&kv, pages, p, k, v);
		/* the contract's indexing: page pages[p/P], slot p%P, [G][D] */
		size_t off = ((size_t)pages[p / ENG_KV_PAGE] * ENG_KV_PAGE + p % ENG_KV_PAGE) * GD;
		for (int i = 0; i < GD; i++)
			bad_store += kv.k[off + i] != gguf_f32_to_half(k[i]) ||
			             kv.v[off + i] != gguf_f32_to_half(v[i]);
	}
	snprintf(name, sizeof(name), "kv store layout G=%d D=%d", G, D);
	check(name, bad_store, 0);

	/* queries at positions on both sides of page boundaries */
	const int probes[] = { 0, 1, ENG_KV_PAGE - 1, ENG_KV_PAGE, ENG_KV_PAGE + 1, ac->n_kv - 1 };
	for (size_t pi = 0; pi < sizeof(probes) / sizeof(probes[0]); pi++) {
		const int n_kv = probes[pi] + 1;
		if (n_kv > ac->n_kv)
			continue;
		for (int h = 0; h < H; h++) {
			const int g = h / (H / G);
			fill(q, D, -2.0f, 2.0f);
			cpu_attn_head(out, q, &kv, pages, n_kv, g, 1.0f / sqrtf((float)D), scores, q16);
			attn_ref(ref, q, &kv, pages, n_kv, g);
			double e = rel_err(out, ref, D);
			worst = e > worst ? e : worst;
		}
	}
	snprintf(name, sizeof(name), "attention H=%d G=%d D=%d n_kv<=%d", H, G, D, ac->n_kv);
	/* Q and the probabilities are rounded to F16 as llama.cpp does:
	 * relative 2^-11 each, averaged over the dot products */
	check(name, worst, 2e-3);

	/* sliding windows (gemma): only the last w positions, starting inside a
	 * page and on a page boundary; soft-capped scores (gemma2, cap 0.5 so
	 * that the cap changes the result) */
	worst = 0.0;
	for (size_t pi = 0; pi < sizeof(probes) / sizeof(probes[0]); pi++) {
		const int n_kv = probes[pi] + 1, windows[] = { 1, 5, ENG_KV_PAGE, ENG_KV_PAGE + 3 };
		if (n_kv > ac->n_kv)
			continue;
		for (size_t wi = 0; wi < sizeof(windows) / sizeof(windows[0]); wi++) {
			const int j0 = n_kv > windows[wi] ? n_kv - windows[wi] : 0;
			for (int h = 0; h < H; h++) {
				const int g = h / (H / G);
				const double cap = (h % 2) ? 0.5 : 0.0;
				fill(q, D, -2.0f, 2.0f);
				cpu_attn_head_ext(out, q, &kv, pages, j0, n_kv, g, 1.0f / sqrtf((float)D),
				                  (float)cap, scores, q16);
				attn_ref_ext(ref, q, &kv, pages, j0, n_kv, g, cap);
				double e = rel_err(out, ref, D);
				worst = e > worst ? e : worst;
			}
		}
	}
	snprintf(name, sizeof(name), "attention, windows and soft-cap, H=%d G=%d D=%d", H, G, D);
	check(name, worst, 2e-3);

	free(kv.k), free(kv.v), free(pages), free(k), free(v), free(q), free(out);
	free(scores), free(q16), free(ref);
}

static void test_attention(void)
{
	const struct attn_case cases[] = {
		{ 8, 4, 8, 4, 150 },    /* stories260K shape */
		{ 14, 2, 64, 5, 300 },  /* qwen2.5-0.5b shape */
		{ 6, 3, 40, 3, 130 },   /* D = 32 + 8: vector and scalar value paths */
		{ 4, 2, 80, 3, 140 },   /* D = 32 + 32 + 16: vector and scalar value paths */
		{ 4, 2, 96, 2, 100 },   /* D = 3 x 32 */
		{ 4, 1, 128, 2, 65 },   /* one KV head for all */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		test_attention_case(&cases[i]);
}

int main(void)
{
	test_rmsnorm();
	test_swiglu();
	test_geglu();
	test_round_f16();
	test_embed();
	test_rope();
	test_attention();
	printf("%s: %d failure%s\n", n_fail ? "FAIL" : "PASS", n_fail, n_fail == 1 ? "" : "s");
	return n_fail ? 1 : 0;
}
