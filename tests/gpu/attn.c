/*
 * attn.c — gpu_attn: the CUDA backend's RoPE + KV store, attention
 * (prefill tiles, split decode + combine, grouped heads, contexts past 4k,
 * shuffled page tables) and device sampling, each against a float64
 * reference and against the CPU backend's op (engine/cpu/ops.h,
 * engine/sampler.c).  Outputs are poisoned (NaN) before each run.  The
 * newer architectures' attention: RoPE with linear scaling, frequency
 * divisors and attn_factor (Llama 3.1, phi3 LongRoPE), gemma's sliding
 * windows (keys p - win < j <= p, windows not a multiple of the page or the
 * 32-key chunk) and gemma2's soft-capped scores, in every kernel (prefill
 * tiles, split decode, clusters, fused RoPE).
 *
 *   build/gpu/gpu_attn [-v] [seed]
 *
 * Exit status 0 when every check passes; summary table last.
 */
#include "gpu_util.h"

/* cuda_attn_args grows optional fields at its end; initialisers here list
 * the required ones and leave the rest zero */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include "cuda/cuda_ops.h"
#include "engine/cpu/ops.h"
#include "engine/sampler.h"
#include "gguf/gguf.h"

#define P ENG_KV_PAGE

struct seqspec {
	int pos0, n;
};

/* Per-token metadata of a batch, host and device. */
struct batch {
	int S, T, n_pages, stride;
	int32_t *pos, *tseq, *pages; /* host: [T], [T], [S][stride] */
	int32_t *dpos, *dtseq, *dpages;
};

static void batch_make(struct batch *b, const struct seqspec *ss, int S, int n_pages)
{
	int maxp = 0, *perm = xmalloc(sizeof(int) * n_pages);
	b->S = S;
	b->T = 0;
	for (int s = 0; s < S; s++) {
		b->T += ss[s].n;
		maxp = ss[s].pos0 + ss[s].n > maxp ? ss[s].pos0 + ss[s].n : maxp;
	}
	b->stride = (maxp + P - 1) / P;
	b->n_pages = n_pages;
	if (b->stride * S > n_pages) {
		fprintf(stderr, "test batch needs more pages\n");
		exit(2);
	}
	for (int i = 0; i < n_pages; i++)
		perm[i] = i;
	for (int i = n_pages - 1; i > 0; i--) {
		int j = rng_int(i + 1), t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	b->pos = xmalloc(4 * (size_t)b->T);
	b->tseq = xmalloc(4 * (size_t)b->T);
	b->pages = xmalloc(4 * (size_t)S * b->stride);
	for (int s = 0, t = 0; s < S; s++) {
		for (int i = 0; i < ss[s].n; i++, t++) {
			b->pos[t] = ss[s].pos0 + i;
			b->tseq[t] = s;
		}
		for (int i = 0; i < b->stride; i++)
			b->pages[s * b->stride + i] = perm[s * b->stride + i];
	}
	b->dpos = dup_dev(b->pos, 4 * (size_t)b->T);
	b->dtseq = dup_dev(b->tseq, 4 * (size_t)b->T);
	b->dpages = dup_dev(b->pages, 4 * (size_t)S * b->stride);
	free(perm);
}

static void batch_free(struct batch *b)
{
	cudaFree(b->dpos); cudaFree(b->dtseq); cudaFree(b->dpages);
	free(b->pos); free(b->tseq); free(b->pages);
}

/* element index (halves) of (page, g, slot, d) in the backend's pool layout */
static size_t kv_at(int page, int g, int slot, int d, int G, int D)
{
	return cuda_kv_offset(page, g, slot, G, D) / 2 + d;
}

// ---- RoPE + KV store

struct rope_cfg {
	int H, G, D, n_rot, neox;
	float base;
	bool bias, qknorm;
	float scale, attn; /* RoPE scaling (0: 1) and attn_factor (0: 1) */
	bool factors;      /* frequency divisors (rope_freqs / LongRoPE) */
};

/* The device form of a host RoPE setting; ff: device divisors or NULL. */
static struct cuda_rope_freq freq_of(float base, float scale, float attn, const float *dff)
{
	struct cuda_rope_freq f = {log2((double)base), scale ? scale : 1.0f, attn ? attn : 1.0f, dff};
	return f;
}

/* theta of pair i at pos, float64, with the scaling of freq_of() */
static double theta_ref(int pos, int i, int n_rot, float base, float scale, const float *ff)
{
	return (scale ? scale : 1.0) * pos * pow(base, -2.0 * i / n_rot) / (ff ? ff[i] : 1.0);
}

static void test_rope(const struct rope_cfg *c)
{
	const struct seqspec ss[] = {{0, 5}, {4990, 9}, {63, 2}};
	struct batch b;
	batch_make(&b, ss, 3, 300);
	const int H = c->H, G = c->G, D = c->D, T = b.T, ld = (H + 2 * G) * D + 3;
	float *qkv = xmalloc(4 * (size_t)T * ld);
	for (size_t i = 0; i < (size_t)T * ld; i++)
		qkv[i] = rng_gauss();
	float *bq = NULL, *bk = NULL, *bv = NULL, *qn = NULL, *kn = NULL;
	float *dbq = NULL, *dbk = NULL, *dbv = NULL, *dqn = NULL, *dkn = NULL;
	if (c->bias) {
		bq = xmalloc(4 * H * D); bk = xmalloc(4 * G * D); bv = xmalloc(4 * G * D);
		for (int i = 0; i < H * D; i++) bq[i] = rng_gauss();
		for (int i = 0; i < G * D; i++) { bk[i] = rng_gauss(); bv[i] = rng_gauss(); }
		dbq = dup_dev(bq, 4 * H * D); dbk = dup_dev(bk, 4 * G * D); dbv = dup_dev(bv, 4 * G * D);
	}
	if (c->qknorm) {
		qn = xmalloc(4 * D); kn = xmalloc(4 * D);
		for (int i = 0; i < D; i++) { qn[i] = 1.0f + 0.3f * rng_gauss(); kn[i] = 1.0f + 0.3f * rng_gauss(); }
		dqn = dup_dev(qn, 4 * D); dkn = dup_dev(kn, 4 * D);
	}
	size_t pool_n = (size_t)b.n_pages * G * P * D;
	float *dqkv = dup_dev(qkv, 4 * (size_t)T * ld);
	gguf_half *dk = dalloc(2 * pool_n), *dv = dalloc(2 * pool_n);
	float *ff = NULL, *dff = NULL;
	if (c->factors) {
		ff = xmalloc(4 * (size_t)c->n_rot / 2);
		for (int i = 0; i < c->n_rot / 2; i++)
			ff[i] = 1.0f + 30.0f * (float)rng_unif();
		dff = dup_dev(ff, 4 * (size_t)c->n_rot / 2);
	}
	const float attn = c->attn ? c->attn : 1.0f;
	struct cuda_rope_args a = {dqkv, ld, T, H, G, D, c->n_rot, c->neox,
	                           freq_of(c->base, c->scale, c->attn, dff), dbq, dbk, dbv,
	                           dqn, dkn, 1e-6f, b.dpos, b.dtseq, b.dpages, b.stride, dk, dv};
	int rc = cuda_rope_store(&a, 0);
	float *oq = xmalloc(4 * (size_t)T * ld);
	gguf_half *hk = xmalloc(2 * pool_n), *hv = xmalloc(2 * pool_n);
	to_host(oq, dqkv, 4 * (size_t)T * ld);
	to_host(hk, dk, 2 * pool_n);
	to_host(hv, dv, 2 * pool_n);

	const int nh = H + 2 * G;
	float *gq = xmalloc(4 * (size_t)T * H * D), *gkv = xmalloc(4 * (size_t)T * 2 * G * D);
	float *cq = xmalloc(4 * (size_t)T * H * D);
	double *rq = xmalloc(8 * (size_t)T * H * D), *rkv = xmalloc(8 * (size_t)T * 2 * G * D);
	float *cs = xmalloc(4 * (size_t)c->n_rot), *tmp = xmalloc(4 * (size_t)D);
	for (int t = 0; t < T; t++) {
		const int pos = b.pos[t], s = b.tseq[t];
		const int page = b.pages[s * b.stride + pos / P];
		cpu_rope_cache_ext(cs, pos, c->n_rot, c->base, c->scale ? c->scale : 1.0f, ff);
		if (attn != 1.0f) /* as the CPU backend's batch_prepare */
			cpu_scale(cs, c->n_rot, attn);
		for (int hh = 0; hh < nh; hh++) {
			const bool isq = hh < H, isk = !isq && hh < H + G;
			const int bh = isq ? hh : isk ? hh - H : hh - H - G;
			const float *bias = isq ? bq : isk ? bk : bv, *nw = isq ? qn : isk ? kn : NULL;
			double v[CUDA_ATTN_MAX_D];
			for (int d = 0; d < D; d++) {
				v[d] = qkv[(size_t)t * ld + hh * D + d] + (bias ? bias[bh * D + d] : 0.0f);
				tmp[d] = (float)v[d];
			}
			if (nw) {
				double sq = 0.0;
				for (int d = 0; d < D; d++)
					sq += v[d] * v[d];
				double sc = 1.0 / sqrt(sq / D + 1e-6);
				for (int d = 0; d < D; d++)
					v[d] *= sc * nw[d];
				cpu_rmsnorm(tmp, tmp, nw, D, 1e-6f);
			}
			if (isq || isk) {
				for (int i = 0; i < c->n_rot / 2; i++) {
					int i0 = c->neox ? i : 2 * i, i1 = c->neox ? i + c->n_rot / 2 : 2 * i + 1;
					double th = theta_ref(pos, i, c->n_rot, c->base, c->scale, ff);
					double x0 = v[i0], x1 = v[i1];
					v[i0] = (x0 * cos(th) - x1 * sin(th)) * attn;
					v[i1] = (x0 * sin(th) + x1 * cos(th)) * attn;
				}
				cpu_rope(tmp, 1, D, c->n_rot, cs, c->neox ? ENG_ROPE_TYPE_NEOX : ENG_ROPE_TYPE_NORM);
			}
			for (int d = 0; d < D; d++) {
				if (isq) {
					rq[((size_t)t * H + bh) * D + d] = v[d];
					gq[((size_t)t * H + bh) * D + d] = oq[(size_t)t * ld + hh * D + d];
					cq[((size_t)t * H + bh) * D + d] = tmp[d];
				} else {
					size_t i = ((size_t)t * 2 * G + (isk ? 0 : G) + bh) * D + d;
					rkv[i] = v[d];
					gkv[i] = gguf_half_to_f32((isk ? hk : hv)[kv_at(page, bh, pos % P, d, G, D)]);
				}
			}
		}
	}
	char name[96];
	snprintf(name, sizeof(name), "H=%d G=%d D=%d rot=%d %s base=%g%s%s%s%s", H, G, D, c->n_rot,
	         c->neox ? "neox" : "norm", c->base, c->bias ? " bias" : "", c->qknorm ? " qknorm" : "",
	         c->scale ? " scaled" : "", c->factors ? " factors" : "");
	gpu_record("rope_q", rc ? INFINITY : nmse_fd(gq, rq, (size_t)T * H * D), 1e-11, "%s", name);
	gpu_record("rope_q/cpu", rc ? INFINITY : nmse_f(gq, cq, (size_t)T * H * D), 1e-7, "%s", name);
	gpu_record("rope_kv_store", rc ? INFINITY : nmse_fd(gkv, rkv, (size_t)T * 2 * G * D), 1e-6, "%s", name);
	cudaFree(dqkv); cudaFree(dk); cudaFree(dv); cudaFree(dff);
	free(ff);
	cudaFree(dbq); cudaFree(dbk); cudaFree(dbv); cudaFree(dqn); cudaFree(dkn);
	free(qkv); free(bq); free(bk); free(bv); free(qn); free(kn); free(oq); free(hk); free(hv);
	free(gq); free(gkv); free(cq); free(rq); free(rkv); free(cs); free(tmp);
	batch_free(&b);
}

// ---- attention

/* Host reference of head_prep (rope.cuh) in double. */
static void prep_ref(double *v, const float *raw, const float *bias, const float *nw, int D,
                     bool rotate, int pos, int n_rot, bool neox, float base)
{
	for (int d = 0; d < D; d++)
		v[d] = raw[d] + (bias ? bias[d] : 0.0f);
	if (nw) {
		double ss = 0.0;
		for (int d = 0; d < D; d++)
			ss += v[d] * v[d];
		double sc = 1.0 / sqrt(ss / D + 1e-6);
		for (int d = 0; d < D; d++)
			v[d] *= sc * nw[d];
	}
	for (int i = 0; rotate && i < n_rot / 2; i++) {
		int i0 = neox ? i : 2 * i, i1 = neox ? i + n_rot / 2 : 2 * i + 1;
		double th = pos * pow(base, -2.0 * i / n_rot), x0 = v[i0], x1 = v[i1];
		v[i0] = x0 * cos(th) - x1 * sin(th);
		v[i1] = x0 * sin(th) + x1 * cos(th);
	}
}

static float *rand_dev_vec(int n, float mean, float sd, float **host)
{
	float *h = xmalloc(4 * (size_t)n);
	for (int i = 0; i < n; i++)
		h[i] = mean + sd * rng_gauss();
	*host = h;
	return dup_dev(h, 4 * (size_t)n);
}

/* Sliding window and soft-cap of the next test_attn() calls (0: off). */
static int t_win;
static float t_cap;

/* mode: 1 = the last split block combines (counters), 2 = RoPE + KV store
 * fused (decode: one token per sequence), 4 = splits as one cluster */
static void test_attn(int H, int G, int D, const struct seqspec *ss, int S, int n_split, bool q8,
                      const char *what, int mode)
{
	struct batch b;
	batch_make(&b, ss, S, 420);
	const int T = b.T, ldq = (H + 2 * G) * D + 5, hpg = H / G, HD = H * D;
	const size_t pool_n = (size_t)b.n_pages * G * P * D;
	gguf_half *k = xmalloc(2 * pool_n), *v = xmalloc(2 * pool_n);
	gguf_half *ck = xmalloc(2 * pool_n), *cv = xmalloc(2 * pool_n); /* CPU layout [page][P][G][D] */
	for (int pg = 0; pg < b.n_pages; pg++)
		for (int g = 0; g < G; g++)
			for (int sl = 0; sl < P; sl++)
				for (int d = 0; d < D; d++) {
					gguf_half hk = gguf_f32_to_half(rng_gauss()), hv = gguf_f32_to_half(rng_gauss());
					k[kv_at(pg, g, sl, d, G, D)] = hk;
					v[kv_at(pg, g, sl, d, G, D)] = hv;
					ck[(((size_t)pg * P + sl) * G + g) * D + d] = hk;
					cv[(((size_t)pg * P + sl) * G + g) * D + d] = hv;
				}
	float *q = xmalloc(4 * (size_t)T * ldq);
	for (size_t i = 0; i < (size_t)T * ldq; i++)
		q[i] = 2.0f * rng_gauss();
	/* tiles */
	const int qt = cuda_attn_tile_tokens(H, G, D);
	int nt = 0, *ts = xmalloc(4 * (size_t)T), *t0 = xmalloc(4 * (size_t)T), *tn = xmalloc(4 * (size_t)T);
	for (int s = 0, t = 0; s < S; t += ss[s].n, s++)
		for (int i = 0; i < ss[s].n; i += qt) {
			ts[nt] = s;
			t0[nt] = t + i;
			tn[nt++] = ss[s].n - i < qt ? ss[s].n - i : qt;
		}
	float *dq = dup_dev(q, 4 * (size_t)T * ldq), *dout = dalloc(4 * (size_t)T * HD);
	void *dk = dup_dev(k, 2 * pool_n), *dv = dup_dev(v, 2 * pool_n);
	int32_t *dts = dup_dev(ts, 4 * nt), *dt0 = dup_dev(t0, 4 * nt), *dtn = dup_dev(tn, 4 * nt);
	float *po = dalloc(4 * (size_t)T * H * n_split * D);
	void *pml = dalloc(8 * (size_t)T * H * n_split);
	int8_t *qs = dalloc((size_t)T * HD);
	float *ds = dalloc(8 * (size_t)T * (HD / 32 + 1));
	struct cuda_attn_args a = {dq, ldq, dk, dv, H, G, D, 1.0f / sqrtf((float)D), nt, dts, dt0, dtn,
	                           b.dpos, b.dpages, b.stride, qt, n_split, dout, HD, po, pml, T};
	a.win = t_win;
	a.softcap = t_cap;
	/* fused RoPE: q, k, v above are raw; the reference applies head_prep */
	const int n_rot = D == 128 ? 64 : D;
	const bool neox = D != 8, qkn = D == 128;
	float *hb[5] = {NULL}, *db[5] = {NULL};
	if (mode & 2) {
		db[0] = rand_dev_vec(HD, 0.0f, 0.5f, &hb[0]);
		db[1] = rand_dev_vec(G * D, 0.0f, 0.5f, &hb[1]);
		db[2] = rand_dev_vec(G * D, 0.0f, 0.5f, &hb[2]);
		if (qkn) {
			db[3] = rand_dev_vec(D, 1.0f, 0.2f, &hb[3]);
			db[4] = rand_dev_vec(D, 1.0f, 0.2f, &hb[4]);
		}
		a.fuse_rope = 1;
		a.k_new = dq + HD;
		a.v_new = dq + HD + G * D;
		a.bq = db[0], a.bk = db[1], a.bv = db[2], a.q_norm = db[3], a.k_norm = db[4];
		a.eps = 1e-6f, a.freq = freq_of(1e6f, 0.0f, 0.0f, NULL), a.n_rot = n_rot, a.neox = neox;
	}
	int32_t *cnt = NULL;
	if (n_split > 1 && !(mode & 4))
		mode |= 1; /* splits always finish in the kernel (last block combines) */
	if (mode & 4) {
		a.cluster = 1;
		a.qs = q8 ? qs : NULL;
		a.ds = ds;
	}
	if (mode & 1) {
		cnt = dalloc(4 * (size_t)nt * G);
		CK(cudaMemset(cnt, 0, 4 * (size_t)nt * G));
		a.counters = cnt;
		a.qs = q8 ? qs : NULL;
		a.ds = ds;
	}
	int rc = cuda_attn(&a, 0);
	if (!rc && (mode & 1)) /* again: the tickets must be back to zero */
		rc = cuda_attn(&a, 0);
	float *out = xmalloc(4 * (size_t)T * HD), *cout = xmalloc(4 * (size_t)T * HD);
	double *ref = xmalloc(8 * (size_t)T * HD);
	to_host(out, dout, 4 * (size_t)T * HD);
	if (cnt) {
		int32_t *hc = xmalloc(4 * (size_t)nt * G), bad = 0;
		to_host(hc, cnt, 4 * (size_t)nt * G);
		for (int i = 0; i < nt * G; i++)
			bad += hc[i] != 0;
		gpu_record("attn_tickets", bad, 0, "%s H=%d G=%d D=%d splits=%d: counters left non-zero", what,
		           H, G, D, n_split);
		free(hc);
	}

	/* the reference's q (roped for mode 2) and the new k, v in the host caches */
	float *qr = xmalloc(4 * (size_t)T * HD);
	double kvnew_err = 0.0, kvnew_den = 0.0;
	gguf_half *gk = NULL, *gv = NULL;
	if (mode & 2) {
		gk = xmalloc(2 * pool_n);
		gv = xmalloc(2 * pool_n);
		to_host(gk, dk, 2 * pool_n);
		to_host(gv, dv, 2 * pool_n);
	}
	for (int t = 0; t < T; t++) {
		const int pos = b.pos[t], s = b.tseq[t];
		const int page = b.pages[(size_t)s * b.stride + pos / P];
		double vv[CUDA_ATTN_MAX_D];
		for (int h = 0; h < H; h++) {
			if (mode & 2) {
				prep_ref(vv, q + (size_t)t * ldq + h * D, hb[0] + h * D, hb[3], D, true, pos, n_rot,
				         neox, 1e6f);
				for (int d = 0; d < D; d++)
					qr[(size_t)t * HD + h * D + d] = (float)vv[d];
			} else {
				memcpy(qr + (size_t)t * HD + h * D, q + (size_t)t * ldq + h * D, 4 * (size_t)D);
			}
		}
		for (int g = 0; (mode & 2) && g < G; g++)
			for (int kvi = 0; kvi < 2; kvi++) {
				prep_ref(vv, q + (size_t)t * ldq + HD + (kvi ? G * D : 0) + g * D, hb[1 + kvi] + g * D,
				         kvi ? NULL : hb[4], D, !kvi, pos, n_rot, neox, 1e6f);
				for (int d = 0; d < D; d++) {
					gguf_half h16 = gguf_f32_to_half((float)vv[d]);
					size_t i = kv_at(page, g, pos % P, d, G, D);
					(kvi ? v : k)[i] = h16;
					(kvi ? cv : ck)[(((size_t)page * P + pos % P) * G + g) * D + d] = h16;
					double e = gguf_half_to_f32((kvi ? gv : gk)[i]) - vv[d];
					kvnew_err += e * e;
					kvnew_den += vv[d] * vv[d];
				}
			}
	}
	if (mode & 2)
		gpu_record("attn_rope_kv", rc ? INFINITY : kvnew_err / kvnew_den, 1e-6,
		           "%s H=%d G=%d D=%d rot=%d%s: stored k, v", what, H, G, D, n_rot, qkn ? " qknorm" : "");

	const int maxkv = b.stride * P;
	double *sc = xmalloc(8 * (size_t)maxkv);
	float *scr = xmalloc(4 * (size_t)maxkv), *q16 = xmalloc(4 * (size_t)D);
	struct cpu_kv_layer kvl = {ck, cv, G, D};
	for (int t = 0; t < T; t++) {
		const int pos = b.pos[t], s = b.tseq[t], nkv = pos + 1;
		const int j0 = t_win && nkv > t_win ? nkv - t_win : 0; /* the CPU's item_attention */
		const int32_t *pt = b.pages + (size_t)s * b.stride;
		for (int h = 0; h < H; h++) {
			const int g = h / hpg;
			const float *qh = qr + (size_t)t * HD + h * D;
			double m = -INFINITY, l = 0.0;
			for (int j = j0; j < nkv; j++) {
				double acc = 0.0;
				for (int d = 0; d < D; d++)
					acc += (double)qh[d] * gguf_half_to_f32(k[kv_at(pt[j / P], g, j % P, d, G, D)]);
				sc[j] = acc / sqrt((double)D);
				if (t_cap > 0.0f)
					sc[j] = t_cap * tanh(sc[j] / t_cap);
				m = sc[j] > m ? sc[j] : m;
			}
			for (int j = j0; j < nkv; j++) {
				sc[j] = exp(sc[j] - m);
				l += sc[j];
			}
			for (int d = 0; d < D; d++) {
				double o = 0.0;
				for (int j = j0; j < nkv; j++)
					o += sc[j] * gguf_half_to_f32(v[kv_at(pt[j / P], g, j % P, d, G, D)]);
				ref[(size_t)t * HD + h * D + d] = o / l;
			}
			cpu_attn_head_ext(cout + (size_t)t * HD + h * D, qh, &kvl, pt, j0, nkv, g,
			                  1.0f / sqrtf((float)D), t_cap, scr, q16);
		}
	}
	char name[144];
	snprintf(name, sizeof(name), "%s H=%d G=%d D=%d T=%d splits=%d kv<=%d%s%s%s%s%s", what, H, G, D, T,
	         n_split, maxkv, mode & 1 ? " fused-combine" : "", mode & 2 ? " fused-rope" : "",
	         mode & 4 ? " cluster" : "", t_win ? " window" : "", t_cap > 0.0f ? " softcap" : "");
	if (t_win)
		snprintf(name + strlen(name), sizeof(name) - strlen(name), "=%d", t_win);
	gpu_record("attention", rc ? INFINITY : nmse_fd(out, ref, (size_t)T * HD), 1e-6, "%s", name);
	gpu_record("attention/cpu", rc ? INFINITY : nmse_f(out, cout, (size_t)T * HD), 2e-5, "%s", name);
	if (q8 && (mode & 5) && hpg * D % 32 == 0) {
		int8_t *hq = xmalloc((size_t)T * HD);
		float *hd = xmalloc(8 * (size_t)T * (HD / 32));
		to_host(hq, qs, (size_t)T * HD);
		to_host(hd, ds, 8 * (size_t)T * (HD / 32));
		double worst = 0.0;
		for (int g = 0; g < T * HD / 32; g++)
			for (int i = 0; i < 32; i++) {
				double e = fabs(out[g * 32 + i] - hd[2 * g] * hq[g * 32 + i]) / (0.5 * hd[2 * g] + 1e-30);
				worst = e > worst ? e : worst;
			}
		gpu_record("attn+q8", rc ? INFINITY : worst, 1.0001, "%s", name);
		free(hq); free(hd);
	}
	for (int i = 0; i < 5; i++) {
		cudaFree(db[i]);
		free(hb[i]);
	}
	cudaFree(dq); cudaFree(dout); cudaFree(dk); cudaFree(dv); cudaFree(dts); cudaFree(dt0);
	cudaFree(dtn); cudaFree(po); cudaFree(pml); cudaFree(qs); cudaFree(ds); cudaFree(cnt);
	free(k); free(v); free(ck); free(cv); free(q); free(ts); free(t0); free(tn); free(qr);
	free(gk); free(gv);
	free(out); free(cout); free(ref); free(sc); free(scr); free(q16);
	batch_free(&b);
}

// ---- sampling

struct samp_case {
	const char *name;
	struct eng_sample_params p;
	int n_recent;
};

/* The device sampler against eng_sample on the same rows.  bias: 8
 * logit_bias entries per row (one -inf, one on the row's best token);
 * cands: the device hands the row's 64 largest logits to the host, which
 * finishes with eng_sample_top (the CUDA path of constrained rows). */
static void test_sample(int V, const struct samp_case *sc, int trials, bool ties, bool bias, bool cands)
{
	const int S = 3, NB = 8;
	float *l = xmalloc(4 * (size_t)S * V), *row = xmalloc(4 * (size_t)V);
	float *dl = dalloc(4 * (size_t)S * V);
	struct cuda_samp sp[3];
	struct cuda_bias bl[3 * 8];
	struct eng_logit_bias hb[3 * 8];
	int32_t recent[3 * 200], tok[3];
	uint64_t keys[3 * CUDA_SAMPLE_KMAX];
	int32_t *drec = dalloc(sizeof(recent)), *dtok = dalloc(sizeof(tok));
	struct cuda_bias *dbias = dalloc(sizeof(bl));
	uint64_t *dkeys = dalloc(sizeof(keys));
	struct cuda_samp *dsp = dalloc(sizeof(sp));
	void *scratch = dalloc(cuda_sample_scratch_bytes(S, V));
	struct eng_sampler *hs = eng_sampler_init(V);
	int mismatch = 0, rc = 0;
	for (int tr = 0; tr < trials; tr++) {
		for (size_t i = 0; i < (size_t)S * V; i++)
			l[i] = ties ? (float)(i % 3 == 0) : 3.0f * rng_gauss();
		for (int s = 0; s < S; s++) {
			int best = 0;
			for (int e = 1; e < V; e++)
				best = l[(size_t)s * V + e] > l[(size_t)s * V + best] ? e : best;
			for (int i = 0; i < sc->n_recent; i++) /* duplicates and the row's top token */
				recent[s * 200 + i] = i % 4 == 3 ? recent[s * 200 + i - 1] : rng_int(V);
			if (sc->n_recent > 2) {
				recent[s * 200 + 1] = best;
				recent[s * 200 + 2] = best;
			}
			for (int i = 0; i < NB; i++) { /* distinct ids, as settings.c keeps them */
				int id = i == 0 ? best : (best + 1 + i * 97 + rng_int(90)) % V;
				float b = i == 0 ? -INFINITY : i == 1 ? 2.5f : 4.0f * (float)rng_gauss();
				for (int j = 0; j < i; j++)
					if (hb[s * NB + j].id == id)
						id = (id + 1) % V, j = -1;
				hb[s * NB + i] = (struct eng_logit_bias){id, b};
				bl[s * NB + i] = (struct cuda_bias){id, b};
			}
			sp[s] = (struct cuda_samp){sc->p.temperature, sc->p.top_p, sc->p.min_p,
			                           sc->p.repeat_penalty, sc->p.top_k, sc->n_recent, s * 200,
			                           bias ? NB : 0, s * NB, cands, 0, 0, rng_u64(), (uint64_t)tr};
		}
		CK(cudaMemcpy(dl, l, 4 * (size_t)S * V, cudaMemcpyHostToDevice));
		CK(cudaMemcpy(drec, recent, sizeof(recent), cudaMemcpyHostToDevice));
		CK(cudaMemcpy(dbias, bl, sizeof(bl), cudaMemcpyHostToDevice));
		CK(cudaMemcpy(dsp, sp, sizeof(sp), cudaMemcpyHostToDevice));
		rc |= cuda_sample(dl, V, S, V, dsp, drec, dbias, scratch, dtok, dkeys, 0);
		to_host(tok, dtok, sizeof(tok));
		to_host(keys, dkeys, sizeof(keys));
		for (int s = 0; s < S; s++) {
			struct eng_sample_req rq = {sc->p, sp[s].seed, sp[s].draw, recent + s * 200, sc->n_recent,
			                            bias ? hb + s * NB : NULL, bias ? NB : 0};
			memcpy(row, l + (size_t)s * V, 4 * (size_t)V);
			int32_t want = eng_sample(hs, row, &rq), got = tok[s];
			if (cands) {
				int32_t ids[CUDA_SAMPLE_KMAX];
				float vals[CUDA_SAMPLE_KMAX];
				for (int i = 0; i < CUDA_SAMPLE_KMAX; i++) {
					ids[i] = cuda_sample_key_id(keys[s * CUDA_SAMPLE_KMAX + i]);
					vals[i] = cuda_sample_key_val(keys[s * CUDA_SAMPLE_KMAX + i]);
				}
				got = eng_sample_top(hs, ids, vals, CUDA_SAMPLE_KMAX, &rq);
			}
			if (want != got) {
				mismatch++;
				if (mismatch <= 3)
					printf("  sample %s V=%d trial %d row %d: device %d, host %d\n", sc->name, V,
					       tr, s, got, want);
			}
		}
	}
	gpu_record("sample", rc ? INFINITY : (double)mismatch, 0.0, "%s V=%d %d draws%s%s%s", sc->name, V,
	           trials * S, ties ? " ties" : "", bias ? " +bias" : "", cands ? " top-64 to host" : "");
	cudaFree(dl); cudaFree(drec); cudaFree(dtok); cudaFree(dsp); cudaFree(scratch);
	cudaFree(dbias); cudaFree(dkeys);
	eng_sampler_free(hs);
	free(l); free(row);
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-v"))
			gpu_verbose = true;
		else
			rng_state = strtoull(argv[i], NULL, 0);
	}
	const struct rope_cfg rc[] = {
		{14, 2, 64, 64, 1, 1e6f, true, false},  /* qwen2.5-0.5b */
		{8, 4, 8, 8, 0, 1e4f, false, false},    /* stories260K */
		{4, 2, 128, 64, 0, 1e4f, false, true},  /* partial rotation, qk-norm */
		{6, 3, 16, 16, 1, 5e5f, true, true},
		/* Llama 3.1 (rope_freqs), linear scaling, phi3 LongRoPE (factors + attn_factor, D 96) */
		{8, 2, 128, 128, 0, 5e5f, false, false, 0.0f, 0.0f, true},
		{8, 8, 64, 64, 1, 1e4f, false, false, 0.25f, 0.0f, false},
		{8, 8, 96, 96, 1, 1e4f, false, false, 0.0f, 1.19f, true},
		{4, 1, 256, 256, 1, 1e4f, false, true},  /* gemma3-270m's local layers: D 256 */
	};
	for (size_t i = 0; i < sizeof(rc) / sizeof(rc[0]); i++)
		test_rope(&rc[i]);

	const struct seqspec prefill[] = {{0, 1}, {0, 7}, {0, 100}, {0, 333}, {900, 40}};
	const struct seqspec decode[] = {{0, 1}, {63, 1}, {64, 1}, {700, 1}, {4500, 1}};
	const struct seqspec mixed[] = {{10, 3}, {129, 1}, {4000, 4}};
	const int hgd[][3] = {{14, 2, 64}, {8, 4, 8}, {32, 8, 128}, {16, 16, 32}, {8, 1, 256}};
	for (int c = 0; c < 5; c++) {
		const int H = hgd[c][0], G = hgd[c][1], D = hgd[c][2];
		test_attn(H, G, D, prefill, 5, 1, false, "prefill", 0);
		test_attn(H, G, D, decode, 5, 1, false, "decode", 0);
		test_attn(H, G, D, decode, 5, 7, true, "decode", 0);
		test_attn(H, G, D, decode, 5, 64, true, "decode", 0);
		test_attn(H, G, D, mixed, 3, 16, true, "mixed", 0);
		/* in-kernel q8 without splits; RoPE + KV store fused */
		test_attn(H, G, D, decode, 5, 1, true, "decode", 1);
		test_attn(H, G, D, decode, 5, 7, true, "decode", 3);
		test_attn(H, G, D, decode, 5, 64, false, "decode", 2);
		test_attn(H, G, D, decode, 5, 1, false, "decode", 2);
		if (D == 64 || D == 128) { /* thread-block clusters */
			test_attn(H, G, D, decode, 5, 8, true, "decode", 4);
			test_attn(H, G, D, decode, 5, 8, true, "decode", 6);
			test_attn(H, G, D, decode, 5, 3, false, "decode", 6);
		}
	}

	/* gemma: sliding windows (100: not a multiple of a page or of a 32-key
	 * chunk; 32: aligned), soft-capped scores, both; prefill tiles, split
	 * decode with the fused RoPE + combine, clusters */
	const struct seqspec wpre[] = {{0, 150}, {0, 7}, {140, 70}, {4000, 33}};
	const struct seqspec wdec[] = {{0, 1}, {99, 1}, {100, 1}, {163, 1}, {700, 1}, {3000, 1}};
	const int ghd[][3] = {{8, 4, 128}, {4, 1, 256}, {16, 8, 64}, {6, 3, 96}};
	const int wins[] = {100, 32, 0, 100};
	const float caps[] = {0.0f, 0.0f, 1.5f, 20.0f};
	for (int c = 0; c < 4; c++) {
		const int H = ghd[c][0], G = ghd[c][1], D = ghd[c][2];
		for (int i = 0; i < 4; i++) {
			t_win = wins[i];
			t_cap = caps[i];
			test_attn(H, G, D, wpre, 4, 1, false, "prefill", 0);
			test_attn(H, G, D, wdec, 6, 7, true, "decode", 3);
			if (D == 64 || D == 128)
				test_attn(H, G, D, wdec, 6, 8, true, "decode", 6);
		}
	}
	t_win = 0;
	t_cap = 0.0f;

	const struct samp_case cases[] = {
		{"greedy", {0.0f, 0, 1.0f, 0.0f, 1.0f}, 0},
		{"greedy+penalty", {0.0f, 0, 1.0f, 0.0f, 1.5f}, 64},
		{"defaults", {0.8f, 40, 0.95f, 0.05f, 1.0f}, 0},
		{"k64", {1.0f, 64, 1.0f, 0.0f, 1.0f}, 0},
		{"k1", {0.3f, 1, 1.0f, 0.0f, 1.0f}, 0},
		{"k10 p.5 min.2 pen", {2.0f, 10, 0.5f, 0.2f, 1.1f}, 100},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		test_sample(151936, &cases[i], 20, false, false, false);
		test_sample(1000, &cases[i], 40, false, false, false);
		test_sample(151936, &cases[i], 20, false, true, false);
		test_sample(151936, &cases[i], 20, false, i % 2 == 1, true);
	}
	test_sample(5000, &cases[0], 2, true, false, false);
	test_sample(5000, &cases[2], 10, true, false, false);
	test_sample(5000, &cases[2], 10, true, true, true);
	return gpu_summary("gpu_attn") ? 1 : 0;
}
