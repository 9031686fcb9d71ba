/*
 * forward.cu — one forward pass of the CUDA backend: batch metadata, the
 * layer loop, the LM head, sampling, and the CUDA graphs of decode.
 *
 * Two paths through every matrix product, by tokens in the batch (T):
 *   T <= CUDA_MMV_MAX_COLS (decode): quantised mat-vec with q8 activations
 *     (fused into the norm / the attention combine), SwiGLU and residual
 *     adds in the mat-vec epilogues, split-context attention;
 *   T > CUDA_MMV_MAX_COLS (prefill): dequantise + cuBLAS GEMM, residual by
 *     beta = 1, one attention pass over query tiles.
 *
 * The newer architectures (engine/model.h) change the same loop: gemma's
 * embedding x sqrt(C), post-norms after the attention and FFN outputs
 * (written to tmp, then normed into the residual), GELU gates, sliding-
 * window layers with their own RoPE angles, gemma2's soft-capped scores
 * and logits; the RoPE scaling / frequency factors of Llama 3.1 and phi3
 * (struct cuda_rope_freq); and the mixture-of-experts FFN (moe.cu):
 * router + top-k + grouped expert mat-vecs in decode, one GEMM per used
 * expert in prefill (the slot table read back on the host, so MoE steps
 * of more than CUDA_MMV_MAX_COLS tokens are never captured in a graph).
 *
 * Graphs: a step whose sequences each bring one token (decode) is recorded
 * once per (S, sampled) and replayed.  Nothing in it depends on positions:
 * every kernel reads tokens, positions, page tables, tiles and sampling
 * settings from the metadata buffer, which the graph's first node copies
 * from pinned host memory; the host only rewrites that memory before each
 * launch.  Launch shapes depend on S alone (attention splits are fixed per
 * S; empty splits exit at once).
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "quant.cuh"
#include "../engine/sampler.h"

struct layout {
	size_t samp, tok, pos, tok_seq, last_rows, out_rows, tile_seq, tile_tok0, tile_ntok, pages,
		wpages, recent, bias, total;
};

struct shape {
	int T, S, R, n_tiles, n_split, qt;
	bool mmv;         /* mat-vec path */
	bool longctx;     /* some sequence reaches past CUDA_CLUSTER_MAX_CTX (graph key) */
	bool sample;      /* device sampling */
	int recent_stride;/* 0: packed (eager), else per-sequence slots (graph) */
	int n_recent;     /* ints of recent tokens in the metadata */
	bool bias;        /* some row has a logit_bias (graph key) */
	bool cands;       /* some row's top logits go to the host (grammar …; graph key) */
	int bias_stride;  /* as recent_stride */
	int n_bias;       /* bias entries in the metadata */
	struct layout ml;
};

/* Decode attention as thread-block clusters (attn.cu): one token per
 * sequence, head dim 64 or 128, and short contexts (8 splits of a cluster:
 * past ~1k tokens the 64 ticketed splits are faster, measured on the H100).
 * Decode graphs are kept per context class, so each stays position-free. */
#define CUDA_CLUSTER_MAX_CTX 1024

static bool cluster_attn(const struct eng_backend *be, const struct shape *sh)
{
	return be->fuse && be->cluster && sh->mmv && sh->T == sh->S && !sh->longctx &&
	       (be->cfg.head_dim == 64 || be->cfg.head_dim == 128);
}

static void make_layout(struct layout *l, const struct shape *sh, int page_stride, bool window)
{
	size_t o = 0;
	l->samp = o;
	o += (size_t)sh->S * sizeof(struct cuda_samp);
	l->tok = o;
	o += 4 * (size_t)sh->T;
	l->pos = o;
	o += 4 * (size_t)sh->T;
	l->tok_seq = o;
	o += 4 * (size_t)sh->T;
	l->last_rows = o;
	o += 4 * (size_t)sh->S;
	l->out_rows = o;
	o += 4 * (size_t)sh->R;
	l->tile_seq = o;
	o += 4 * (size_t)sh->n_tiles;
	l->tile_tok0 = o;
	o += 4 * (size_t)sh->n_tiles;
	l->tile_ntok = o;
	o += 4 * (size_t)sh->n_tiles;
	l->pages = o;
	o += 4 * (size_t)sh->S * page_stride;
	l->wpages = o; /* window pages (sliding-window layers), when the backend has them */
	if (window)
		o += 4 * (size_t)sh->S * page_stride;
	l->recent = o;
	o += 4 * (size_t)sh->n_recent;
	o = (o + 7) & ~(size_t)7;
	l->bias = o;
	o += sizeof(struct cuda_bias) * (size_t)sh->n_bias;
	l->total = o;
}

#define M32(be, off) ((int32_t *)((uint8_t *)(be)->meta_d + (off)))

static_assert((int)CUDA_GLU_SILU == (int)ENG_FFN_ACT_SILU && (int)CUDA_GLU_GELU == (int)ENG_FFN_ACT_GELU,
              "the kernels take eng_ffn_act as enum cuda_glu_act");

// ---- profiling

/* Runs stmt; with profiling on, times it with events (synchronous). */
#define OP(be, op, stmt)                                                       \
	do {                                                                   \
		if ((be)->prof)                                                \
			cudaEventRecord((be)->ev[0], (be)->st);                \
		TRY(stmt);                                                     \
		if ((be)->prof)                                                \
			prof_stop(be, op);                                     \
	} while (0)

static void prof_stop(struct eng_backend *be, int op)
{
	float ms = 0.0f;
	cudaEventRecord(be->ev[1], be->st);
	if (cudaEventSynchronize(be->ev[1]) == cudaSuccess &&
	    cudaEventElapsedTime(&ms, be->ev[0], be->ev[1]) == cudaSuccess) {
		be->prof_ms[op] += ms;
		be->prof_n[op]++;
	}
}

static const char *const prof_names[CUDA_PROF_COUNT] = {
	"embed", "rmsnorm", "qkv", "rope+kv", "attention", "wo+res",
	"gate/up(+glu)", "quantize", "down+res", "lm-head", "sample", "copies", "router+top-k",
};

extern "C" void cuda_backend_set_profile(struct eng_backend *be, bool on)
{
	be->prof = on;
	memset(be->prof_ms, 0, sizeof(be->prof_ms));
	memset(be->prof_n, 0, sizeof(be->prof_n));
}

extern "C" void cuda_backend_profile_report(struct eng_backend *be, FILE *f)
{
	double total = 0.0;
	for (int i = 0; i < CUDA_PROF_COUNT; i++)
		total += be->prof_ms[i];
	fprintf(f, "%-14s %10s %8s %10s %6s\n", "op", "total ms", "calls", "us/call", "share");
	for (int i = 0; i < CUDA_PROF_COUNT; i++) {
		if (!be->prof_n[i])
			continue;
		fprintf(f, "%-14s %10.3f %8llu %10.2f %5.1f%%\n", prof_names[i], be->prof_ms[i],
		        (unsigned long long)be->prof_n[i], 1e3 * be->prof_ms[i] / be->prof_n[i],
		        total > 0 ? 100.0 * be->prof_ms[i] / total : 0.0);
	}
}

// ---- the layer loop

/* The RoPE angles of layer il (gemma's sliding-window layers have theirs). */
static const struct cuda_rope_freq *layer_freq(const struct eng_backend *be, int il)
{
	return be->layers[il].swa ? &be->rope_swa : &be->rope_glob;
}

/* The page table layer il reads: the window pages for a sliding-window
 * layer when the backend has them. */
static int32_t *layer_pages(struct eng_backend *be, const struct shape *sh, int il)
{
	return be->layers[il].swa && be->p.n_wpages ? M32(be, sh->ml.wpages) : M32(be, sh->ml.pages);
}

static struct cuda_attn_args attn_args(struct eng_backend *be, const struct shape *sh, int il)
{
	const struct eng_config *c = &be->cfg;
	const int H = c->n_head, G = c->n_head_kv, D = c->head_dim;
	uint8_t *kpool = be->kv_layer[il];
	/* gemma and phi3 scale Q (q_scale) where the others scale the scores */
	const float scale = c->q_scale ? c->q_scale : 1.0f / sqrtf((float)D);
	struct cuda_attn_args aa = {
		be->qkv, be->ld_qkv, kpool, kpool + cuda_kv_pool_bytes(be, il), H, G, D, scale,
		sh->n_tiles, M32(be, sh->ml.tile_seq), M32(be, sh->ml.tile_tok0), M32(be, sh->ml.tile_ntok),
		M32(be, sh->ml.pos), layer_pages(be, sh, il), be->page_stride, sh->qt, sh->n_split,
		be->attn, H * D, be->part_o, be->part_ml, sh->T,
	};
	aa.win = be->layers[il].swa ? c->n_swa : 0;
	aa.softcap = c->attn_softcap;
	return aa;
}

static int rope_pass(struct eng_backend *be, const struct shape *sh, int il)
{
	const struct eng_config *c = &be->cfg;
	const struct cuda_layer_w *L = &be->layers[il];
	const struct cuda_attn_args aa = attn_args(be, sh, il);
	struct cuda_rope_args ra = {
		be->qkv, be->ld_qkv, sh->T, c->n_head, c->n_head_kv, c->head_dim, c->n_rot,
		be->rope_neox, *layer_freq(be, il), L->bq, L->bk, L->bv, L->q_norm,
		L->k_norm, c->rms_eps, M32(be, sh->ml.pos), M32(be, sh->ml.tok_seq),
		layer_pages(be, sh, il), be->page_stride, (void *)aa.k_pool, (void *)aa.v_pool,
	};
	OP(be, CUDA_PROF_ROPE, cuda_rope_store(&ra, be->st));
	return 0;
}

/* A block's output y (wo or down) into the residual: x += y, or with a
 * post-norm (gemma) x += rmsnorm(y) * w.  y is be->tmp then. */
static int residual_post(struct eng_backend *be, int T, const float *post)
{
	const int C = be->cfg.n_embd;
	if (post)
		OP(be, CUDA_PROF_NORM, cuda_rmsnorm_add(be->x, C, be->tmp, C, T, C, post, be->cfg.rms_eps, be->st));
	return 0;
}

static struct cuda_moe_route moe_route_args(struct eng_backend *be, int T)
{
	const struct eng_config *c = &be->cfg;
	const int E = c->n_expert;
	struct cuda_moe_route r = {T, E, c->n_expert_used, be->moe_logits, E, be->moe_sel, be->moe_wt,
	                           be->moe_tab + 1, be->moe_tab + 1 + E, be->moe_pairs, be->moe_tab};
	return r;
}

/* Decode's MoE FFN: norm (+q8), router, top-k + grouping, the chosen
 * experts' gate/up (GLU) and down as grouped mat-vecs, the weighted sum
 * into the residual — seven launches, shapes fixed by T. */
static int moe_mmv(struct eng_backend *be, const struct shape *sh, int il)
{
	const struct eng_config *c = &be->cfg;
	const struct cuda_layer_w *L = &be->layers[il];
	const int T = sh->T, C = c->n_embd, E = c->n_expert, K = c->n_expert_used, Fe = c->n_ff_exp;
	const int n_slots = E < T * K ? E : T * K;
	const struct cuda_moe_route r = moe_route_args(be, T);
	cudaStream_t st = be->st;
	OP(be, CUDA_PROF_NORM, cuda_rmsnorm(be->x, C, NULL, T, C, L->ffn_norm, c->rms_eps, be->xn, C,
	                                    L->q8_router || L->q8_exp ? be->q8s : NULL, be->q8d, st));
	const struct cuda_act a = {be->xn, C, be->q8s, be->q8d};
	OP(be, CUDA_PROF_ROUTE, cuda_matvec(&L->router, &a, T, be->moe_logits, E, false, st));
	OP(be, CUDA_PROF_ROUTE, cuda_moe_route(&r, st));
	const struct cuda_moe_mv gu = {L->gate_e, L->up_e, r.slot_exp, r.slot_off, r.pairs, r.wt, n_slots, T, K,
	                               be->xn, C, be->q8s, be->q8d, be->moe_h, Fe, (int)c->ffn_act};
	OP(be, CUDA_PROF_GATE_UP, cuda_moe_matvec(&gu, st));
	if (L->q8_exp_down)
		OP(be, CUDA_PROF_QUANT, cuda_quantize_q8(be->moe_h, Fe, Fe, T * K, be->moe_qs, be->moe_ds, st));
	const struct cuda_moe_mv dn = {L->down_e, {}, r.slot_exp, r.slot_off, r.pairs, r.wt, n_slots, T, 1,
	                               be->moe_h, Fe, be->moe_qs, be->moe_ds, be->moe_eo, C, 0};
	OP(be, CUDA_PROF_DOWN, cuda_moe_matvec(&dn, st));
	OP(be, CUDA_PROF_DOWN, cuda_moe_sum(be->moe_eo, K, T, C, be->x, C, st));
	return 0;
}

static struct cuda_mat expert_mat(const struct cuda_experts *x, int e)
{
	struct cuda_mat m = x->m;
	m.d = (const uint8_t *)x->m.d + (size_t)e * x->stride;
	return m;
}

/* Prefill's MoE FFN: router GEMM, top-k + grouping, the slot table to the
 * host (one synchronisation per layer), then per used expert its rows
 * gathered, gate/up/down as GEMMs (each expert's weights read once), the
 * outputs weighted and scattered; the weighted sum into the residual. */
static int moe_gemm(struct eng_backend *be, const struct shape *sh, int il)
{
	const struct eng_config *c = &be->cfg;
	const struct cuda_layer_w *L = &be->layers[il];
	const int T = sh->T, C = c->n_embd, E = c->n_expert, K = c->n_expert_used, Fe = c->n_ff_exp;
	const struct cuda_moe_route r = moe_route_args(be, T);
	cudaStream_t st = be->st;
	enum cuda_x16_state x16 = CUDA_X16_NONE;
	OP(be, CUDA_PROF_NORM, cuda_rmsnorm(be->x, C, NULL, T, C, L->ffn_norm, c->rms_eps, be->xn, C,
	                                    NULL, NULL, st));
	OP(be, CUDA_PROF_ROUTE, cuda_gemm(&be->gemm, &L->router, be->xn, C, T, be->moe_logits, E, false, &x16, st));
	OP(be, CUDA_PROF_ROUTE, cuda_moe_route(&r, st));
	CUDA_CHECK(cudaMemcpyAsync(be->moe_host, be->moe_tab, 4 * (size_t)(2 * E + 2), cudaMemcpyDeviceToHost, st));
	CUDA_CHECK(cudaStreamSynchronize(st));
	const int n_used = be->moe_host[0], *sexp = be->moe_host + 1, *soff = be->moe_host + 1 + E;
	if (n_used < 1 || n_used > E) {
		LOG_ERR("layer %d: the router kernel reports %d experts in use (of %d)", il, n_used, E);
		return -EIO;
	}
	for (int s = 0; s < n_used; s++) {
		const int e = sexp[s], o = soff[s], n = soff[s + 1] - o;
		if (e < 0 || e >= E || o < 0 || n < 1 || n > T || o + n > T * K) {
			LOG_ERR("layer %d: slot %d of the routing table is bad (expert %d, pairs %d + %d)", il, s, e, o, n);
			return -EIO;
		}
		const struct cuda_mat ge = expert_mat(&L->gate_e, e), ue = expert_mat(&L->up_e, e);
		const struct cuda_mat de = expert_mat(&L->down_e, e);
		OP(be, CUDA_PROF_GATE_UP, cuda_moe_gather(be->xn, C, C, r.pairs + o, n, K, be->moe_xg, C, st));
		x16 = CUDA_X16_NONE;
		OP(be, CUDA_PROF_GATE_UP, cuda_gemm(&be->gemm, &ge, be->moe_xg, C, n, be->ffn_g, Fe, false, &x16, st));
		OP(be, CUDA_PROF_GATE_UP, cuda_gemm(&be->gemm, &ue, be->moe_xg, C, n, be->ffn_u, Fe, false, &x16, st));
		OP(be, CUDA_PROF_GATE_UP, cuda_glu((int)c->ffn_act, be->ffn_g, be->ffn_u, Fe, n, Fe, be->ffn_h, Fe, st));
		x16 = CUDA_X16_NONE;
		OP(be, CUDA_PROF_DOWN, cuda_gemm(&be->gemm, &de, be->ffn_h, Fe, n, be->tmp, C, false, &x16, st));
		OP(be, CUDA_PROF_DOWN, cuda_moe_scatter(be->tmp, C, C, r.pairs + o, n, r.wt, be->moe_eo, st));
	}
	OP(be, CUDA_PROF_DOWN, cuda_moe_sum(be->moe_eo, K, T, C, be->x, C, st));
	return 0;
}

/* Decode (T <= CUDA_MMV_MAX_COLS): five launches per layer where the shapes
 * allow — QKV (norm prologue), attention (RoPE, KV store, split combine, q8),
 * wo + residual, gate/up/SwiGLU (norm prologue, q8 epilogue), down +
 * residual — else the unfused kernels; post-norms and MoE as above. */
static int layer_mmv(struct eng_backend *be, const struct shape *sh, int il)
{
	const struct eng_config *c = &be->cfg;
	const struct cuda_layer_w *L = &be->layers[il];
	const int T = sh->T, C = c->n_embd, H = c->n_head, G = c->n_head_kv, D = c->head_dim;
	const int HD = H * D, F = c->n_ff;
	cudaStream_t st = be->st;
	struct cuda_act a;

	struct cuda_mmv_fused fq = {3, {{L->wq, NULL, be->qkv, be->ld_qkv},
	                                {L->wk, NULL, be->qkv + HD, be->ld_qkv},
	                                {L->wv, NULL, be->qkv + HD + G * D, be->ld_qkv}},
	                            C, T, be->x, C, L->attn_norm, c->rms_eps, 1, NULL, NULL};

	/* one new token per sequence, no QK norm: bias, RoPE and the KV store
	 * happen in the QKV kernel's epilogue */
	const bool decode = T == sh->S;
	bool roped = false;
	if (be->fuse && be->rope_epi && decode && !L->q_norm && !L->k_norm) {
		uint8_t *kpool = be->kv_layer[il];
		fq.rope = (struct cuda_qkv_rope){1, D, G, c->n_rot, *layer_freq(be, il), {L->bq, L->bk, L->bv},
		                                 M32(be, sh->ml.pos), M32(be, sh->ml.tok_seq), layer_pages(be, sh, il),
		                                 be->page_stride, kpool, kpool + cuda_kv_pool_bytes(be, il),
		                                 L->swa ? be->rope_cs_swa : be->rope_cs};
		if (!cuda_matvec_fused_ok(&fq) || !be->fuse_qkv)
			fq.rope.on = 0;
	}
	if (be->skip & 1) {
		/* timing experiment: no QKV */
	} else if (be->fuse && be->fuse_qkv && cuda_matvec_fused_ok(&fq)) {
		OP(be, CUDA_PROF_QKV, cuda_matvec_fused(&fq, st));
		roped = fq.rope.on;
	} else {
		OP(be, CUDA_PROF_NORM, cuda_rmsnorm(be->x, C, NULL, T, C, L->attn_norm, c->rms_eps, be->xn, C,
		                                    L->q8_qkv ? be->q8s : NULL, be->q8d, st));
		a = (struct cuda_act){be->xn, C, be->q8s, be->q8d};
		for (int i = 0; i < 3; i++)
			OP(be, CUDA_PROF_QKV, cuda_matvec(&fq.seg[i].w, &a, T, fq.seg[i].y, be->ld_qkv, false, st));
	}

	struct cuda_attn_args aa = attn_args(be, sh, il);
	if (roped) {
		/* q roped in place, k and v stored by the QKV kernel */
	} else if (be->fuse && decode) {
		aa.fuse_rope = 1;
		aa.k_new = be->qkv + HD;
		aa.v_new = be->qkv + HD + G * D;
		aa.bq = L->bq, aa.bk = L->bk, aa.bv = L->bv, aa.q_norm = L->q_norm, aa.k_norm = L->k_norm;
		aa.eps = c->rms_eps, aa.freq = *layer_freq(be, il), aa.n_rot = c->n_rot;
		aa.neox = be->rope_neox;
	} else {
		TRY(rope_pass(be, sh, il));
	}
	const bool q8_in_attn = L->q8_wo && ((H / G) * D) % Q8_BLOCK == 0 && be->fuse;
	aa.counters = be->attn_counters;
	aa.cluster = cluster_attn(be, sh) && sh->n_split > 1;
	aa.min_pages = be->attn_min_pages;
	aa.dbg = be->attn_dbg;
	if (q8_in_attn)
		aa.qs = be->q8s, aa.ds = be->q8d;
	if (!(be->skip & 2))
		OP(be, CUDA_PROF_ATTN, cuda_attn(&aa, st));
	if (L->q8_wo && !q8_in_attn)
		OP(be, CUDA_PROF_QUANT, cuda_quantize_q8(be->attn, HD, HD, T, be->q8s, be->q8d, st));
	a = (struct cuda_act){be->attn, HD, be->q8s, be->q8d};
	if (!(be->skip & 4))
		OP(be, CUDA_PROF_WO, cuda_matvec(&L->wo, &a, T, L->post_attn_norm ? be->tmp : be->x, C,
		                                 !L->post_attn_norm, st));
	TRY(residual_post(be, T, L->post_attn_norm));

	/* feed-forward block */
	if (L->moe)
		return moe_mmv(be, sh, il);
	const bool q8h = L->q8_down && F % Q8_BLOCK == 0;
	struct cuda_mmv_fused fg = {1, {{L->gate, L->up.d, be->ffn_h, F}}, C, T, be->x, C, L->ffn_norm,
	                            c->rms_eps, 2, q8h ? be->q8s : NULL, be->q8d};
	fg.act = (int)c->ffn_act;
	bool h_q8 = false;
	if (be->skip & 8) {
		h_q8 = true; /* timing experiment: no gate/up */
	} else if (be->fuse && be->fuse_glu && L->glu && cuda_matvec_fused_ok(&fg)) {
		OP(be, CUDA_PROF_GATE_UP, cuda_matvec_fused(&fg, st));
		h_q8 = q8h;
	} else {
		OP(be, CUDA_PROF_NORM, cuda_rmsnorm(be->x, C, NULL, T, C, L->ffn_norm, c->rms_eps, be->xn, C,
		                                    L->q8_ffn ? be->q8s : NULL, be->q8d, st));
		a = (struct cuda_act){be->xn, C, be->q8s, be->q8d};
		if (L->glu) {
			OP(be, CUDA_PROF_GATE_UP, cuda_matvec_glu(&L->gate, &L->up, &a, T, be->ffn_h, F,
			                                          (int)c->ffn_act, st));
		} else {
			OP(be, CUDA_PROF_GATE_UP, cuda_matvec(&L->gate, &a, T, be->ffn_g, F, false, st));
			OP(be, CUDA_PROF_GATE_UP, cuda_matvec(&L->up, &a, T, be->ffn_u, F, false, st));
			OP(be, CUDA_PROF_GATE_UP, cuda_glu((int)c->ffn_act, be->ffn_g, be->ffn_u, F, T, F,
			                                   be->ffn_h, F, st));
		}
	}
	if (L->q8_down && !h_q8)
		OP(be, CUDA_PROF_QUANT, cuda_quantize_q8(be->ffn_h, F, F, T, be->q8s, be->q8d, st));
	a = (struct cuda_act){be->ffn_h, F, be->q8s, be->q8d};
	if (!(be->skip & 16))
		OP(be, CUDA_PROF_DOWN, cuda_matvec(&L->down, &a, T, L->post_ffn_norm ? be->tmp : be->x, C,
		                                   !L->post_ffn_norm, st));
	return residual_post(be, T, L->post_ffn_norm);
}

/* Prefill (T > CUDA_MMV_MAX_COLS): dequantise + GEMM on the tensor cores. */
static int layer_gemm(struct eng_backend *be, const struct shape *sh, int il)
{
	const struct eng_config *c = &be->cfg;
	const struct cuda_layer_w *L = &be->layers[il];
	const int T = sh->T, C = c->n_embd, H = c->n_head, G = c->n_head_kv, D = c->head_dim;
	const int HD = H * D, F = c->n_ff;
	cudaStream_t st = be->st;
	enum cuda_x16_state x16 = CUDA_X16_NONE;

	OP(be, CUDA_PROF_NORM, cuda_rmsnorm(be->x, C, NULL, T, C, L->attn_norm, c->rms_eps, be->xn, C,
	                                    NULL, NULL, st));
	float *q = be->qkv, *k = be->qkv + HD, *v = be->qkv + HD + G * D;
	OP(be, CUDA_PROF_QKV, cuda_gemm(&be->gemm, &L->wq, be->xn, C, T, q, be->ld_qkv, false, &x16, st));
	OP(be, CUDA_PROF_QKV, cuda_gemm(&be->gemm, &L->wk, be->xn, C, T, k, be->ld_qkv, false, &x16, st));
	OP(be, CUDA_PROF_QKV, cuda_gemm(&be->gemm, &L->wv, be->xn, C, T, v, be->ld_qkv, false, &x16, st));
	TRY(rope_pass(be, sh, il));
	struct cuda_attn_args aa = attn_args(be, sh, il);
	OP(be, CUDA_PROF_ATTN, cuda_attn(&aa, st));
	x16 = CUDA_X16_NONE;
	OP(be, CUDA_PROF_WO, cuda_gemm(&be->gemm, &L->wo, be->attn, HD, T, L->post_attn_norm ? be->tmp : be->x,
	                               C, !L->post_attn_norm, &x16, st));
	TRY(residual_post(be, T, L->post_attn_norm));

	if (L->moe)
		return moe_gemm(be, sh, il);
	OP(be, CUDA_PROF_NORM, cuda_rmsnorm(be->x, C, NULL, T, C, L->ffn_norm, c->rms_eps, be->xn, C,
	                                    NULL, NULL, st));
	x16 = CUDA_X16_NONE;
	OP(be, CUDA_PROF_GATE_UP, cuda_gemm(&be->gemm, &L->gate, be->xn, C, T, be->ffn_g, F, false, &x16, st));
	OP(be, CUDA_PROF_GATE_UP, cuda_gemm(&be->gemm, &L->up, be->xn, C, T, be->ffn_u, F, false, &x16, st));
	OP(be, CUDA_PROF_GATE_UP, cuda_glu((int)c->ffn_act, be->ffn_g, be->ffn_u, F, T, F, be->ffn_h, F, st));
	x16 = CUDA_X16_NONE;
	OP(be, CUDA_PROF_DOWN, cuda_gemm(&be->gemm, &L->down, be->ffn_h, F, T, L->post_ffn_norm ? be->tmp : be->x,
	                                 C, !L->post_ffn_norm, &x16, st));
	return residual_post(be, T, L->post_ffn_norm);
}

static int layer(struct eng_backend *be, const struct shape *sh, int il)
{
	return sh->mmv ? layer_mmv(be, sh, il) : layer_gemm(be, sh, il);
}

/* Final norm + LM head for n rows listed (token indices) at rows → logits. */
static int head(struct eng_backend *be, const int32_t *rows, int n)
{
	const struct eng_config *c = &be->cfg;
	const int C = c->n_embd;
	const bool mmv = n <= CUDA_MMV_MAX_COLS;
	enum cuda_x16_state x16 = CUDA_X16_NONE;
	OP(be, CUDA_PROF_NORM, cuda_rmsnorm(be->x, C, rows, n, C, be->output_norm, c->rms_eps, be->xn, C,
	                                    mmv && be->q8_head ? be->q8s : NULL, be->q8d, be->st));
	if (mmv) {
		struct cuda_act a = {be->xn, C, be->q8s, be->q8d};
		OP(be, CUDA_PROF_HEAD, cuda_matvec(&be->output, &a, n, be->logits, c->n_vocab, false, be->st));
	} else {
		OP(be, CUDA_PROF_HEAD, cuda_gemm(&be->gemm, &be->output, be->xn, C, n, be->logits, c->n_vocab,
		                                 false, &x16, be->st));
	}
	if (c->final_softcap) /* gemma2 */
		OP(be, CUDA_PROF_HEAD, cuda_softcap(be->logits, c->n_vocab, n, c->n_vocab, c->final_softcap, be->st));
	return 0;
}

static int copy_async(void *dst, const void *src, size_t n, cudaMemcpyKind kind, cudaStream_t st)
{
	CUDA_CHECK(cudaMemcpyAsync(dst, src, n, kind, st));
	return 0;
}

static int sample_dev(struct eng_backend *be, const struct shape *sh)
{
	const int V = be->cfg.n_vocab;
	const struct cuda_samp *sp = (const struct cuda_samp *)((uint8_t *)be->meta_d + sh->ml.samp);
	const struct cuda_bias *bias = (const struct cuda_bias *)((uint8_t *)be->meta_d + sh->ml.bias);
	OP(be, CUDA_PROF_SAMPLE, cuda_sample(be->logits, V, sh->S, V, sp, M32(be, sh->ml.recent), bias,
	                                     be->samp_scratch, be->tok_d, be->cands_d, be->st));
	OP(be, CUDA_PROF_COPY, copy_async(be->tok_h, be->tok_d, 4 * (size_t)sh->S,
	                                  cudaMemcpyDeviceToHost, be->st));
	if (sh->cands)
		OP(be, CUDA_PROF_COPY, copy_async(be->cands_h, be->cands_d, 8 * (size_t)sh->S * CUDA_SAMPLE_KMAX,
		                                  cudaMemcpyDeviceToHost, be->st));
	return 0;
}

/* The metadata copy, the embedding and every layer. */
static int body(struct eng_backend *be, const struct shape *sh)
{
	OP(be, CUDA_PROF_COPY, copy_async(be->meta_d, be->meta_h, sh->ml.total,
	                                  cudaMemcpyHostToDevice, be->st));
	const int C = be->cfg.n_embd;
	OP(be, CUDA_PROF_EMBED, cuda_get_rows(&be->tok_embd, M32(be, sh->ml.tok), sh->T, be->x, C, be->st));
	if (be->cfg.embd_scale) /* gemma: as the CPU, one f32 multiply by sqrtf(C) */
		OP(be, CUDA_PROF_EMBED, cuda_scale(be->x, C, sh->T, C, sqrtf((float)C), be->st));
	if (be->rope_cs && be->fuse && be->rope_epi && sh->mmv && sh->T == sh->S) { /* read by the QKV epilogues */
		OP(be, CUDA_PROF_ROPE, cuda_rope_table(M32(be, sh->ml.pos), sh->T, be->cfg.n_rot, &be->rope_glob,
		                                       be->rope_cs, be->st));
		if (be->cfg.n_swa)
			OP(be, CUDA_PROF_ROPE, cuda_rope_table(M32(be, sh->ml.pos), sh->T, be->cfg.n_rot,
			                                       &be->rope_swa, be->rope_cs_swa, be->st));
	}
	for (int il = 0; il < be->cfg.n_layer; il++)
		TRY(layer(be, sh, il));
	return 0;
}

/* A decode step as recorded in a graph: R == S rows, logits stay on the
 * device, optional sampling. */
static int decode_step(struct eng_backend *be, const struct shape *sh)
{
	TRY(body(be, sh));
	if (!(be->skip & 32))
		TRY(head(be, M32(be, sh->ml.out_rows), sh->S));
	if (sh->sample)
		TRY(sample_dev(be, sh));
	return 0;
}

// ---- batch → metadata

/* How a row is sampled: on the device (logit_bias included); by the host
 * from the device's CUDA_SAMPLE_KMAX largest logits (a grammar, typical_p,
 * XTC: eng_sample_req_top); or, for the rest (log-probabilities,
 * presence/frequency, DRY, top_k 0 or past the device's), the batch's last
 * rows come to the host whole (sample_host) — only when a session asks. */
enum samp_mode { SAMP_DEVICE, SAMP_CANDS, SAMP_HOST };
static enum samp_mode samp_mode(const struct eng_backend *be, const struct eng_sample_req *r);

/* A row whose 64 largest logits the device hands over. */
static bool cands_row(const struct eng_backend *be, const struct eng_sample_req *r)
{
	return samp_mode(be, r) == SAMP_CANDS;
}

static enum samp_mode samp_mode(const struct eng_backend *be, const struct eng_sample_req *r)
{
	struct eng_sample_req t = *r;
	t.n_bias = 0;
	if (!eng_sample_req_host(&t) &&
	    (!(r->p.temperature > 0.0f) || (r->p.top_k > 0 && r->p.top_k <= CUDA_SAMPLE_KMAX)))
		return SAMP_DEVICE;
	return be->cfg.n_vocab >= CUDA_SAMPLE_KMAX && eng_sample_req_top(r, CUDA_SAMPLE_KMAX) ? SAMP_CANDS
	                                                                                      : SAMP_HOST;
}

static int validate(const struct eng_backend *be, const struct eng_batch *b,
                    const struct eng_sample_req *samp, int *T_out, int *R_out, int *recent_out)
{
	const int V = be->cfg.n_vocab;
	int T = 0, R = 0, nr = 0;
	if (b->n_seqs < 1 || b->n_seqs > be->p.max_seqs) {
		LOG_ERR("batch of %d sequences (1..%d)", b->n_seqs, be->p.max_seqs);
		return -EINVAL;
	}
	for (int s = 0; s < b->n_seqs; s++) {
		const struct eng_batch_seq *q = &b->seqs[s];
		if (q->n_tokens < 1 || q->pos0 < 0 || q->pos0 + q->n_tokens > be->p.max_ctx || !q->pages) {
			LOG_ERR("sequence %d: %d tokens at position %d (context %d)", s, q->n_tokens, q->pos0,
			        be->p.max_ctx);
			return -EINVAL;
		}
		for (int i = 0; i < q->n_tokens; i++)
			if (q->tokens[i] < 0 || q->tokens[i] >= V) {
				LOG_ERR("sequence %d: token %d out of range (vocabulary %d)", s, q->tokens[i], V);
				return -EINVAL;
			}
		for (int i = 0; i < cdiv(q->pos0 + q->n_tokens, ENG_KV_PAGE); i++)
			if (q->pages[i] < 0 || q->pages[i] >= be->p.n_pages) {
				LOG_ERR("sequence %d: page %d out of range (%d pages)", s, q->pages[i], be->p.n_pages);
				return -EINVAL;
			}
		if (be->p.n_wpages && !q->wpages) {
			LOG_ERR("sequence %d: no window pages for the sliding-window layers", s);
			return -EINVAL;
		}
		/* the window pages a query of this pass reads (older ones are -1) */
		const int w0 = be->p.n_wpages && q->pos0 + 1 > be->cfg.n_swa ? (q->pos0 + 1 - be->cfg.n_swa) / ENG_KV_PAGE : 0;
		for (int i = w0; be->p.n_wpages && i < cdiv(q->pos0 + q->n_tokens, ENG_KV_PAGE); i++)
			if (q->wpages[i] < 0 || q->wpages[i] >= be->p.n_wpages) {
				LOG_ERR("sequence %d: window page %d out of range (%d window pages)", s, q->wpages[i],
				        be->p.n_wpages);
				return -EINVAL;
			}
		if (samp && samp[s].p.repeat_penalty != 1.0f && samp[s].recent && samp[s].n_recent > 0) {
			for (int i = 0; i < samp[s].n_recent; i++)
				if (samp[s].recent[i] < 0 || samp[s].recent[i] >= V) {
					LOG_ERR("sequence %d: recent token %d out of range", s, samp[s].recent[i]);
					return -EINVAL;
				}
			nr += samp[s].n_recent;
		}
		T += q->n_tokens;
		R += q->logits_all ? q->n_tokens : 1;
	}
	if (T > be->p.max_batch_tokens) {
		LOG_ERR("batch of %d tokens (at most %d)", T, be->p.max_batch_tokens);
		return -EINVAL;
	}
	*T_out = T;
	*R_out = R;
	*recent_out = nr;
	return 0;
}

static void fill_meta(struct eng_backend *be, const struct eng_batch *b,
                      const struct eng_sample_req *samp, const struct shape *sh)
{
	uint8_t *m = (uint8_t *)be->meta_h;
	const struct layout *l = &sh->ml;
	int32_t *tok = (int32_t *)(m + l->tok), *pos = (int32_t *)(m + l->pos);
	int32_t *tseq = (int32_t *)(m + l->tok_seq), *last = (int32_t *)(m + l->last_rows);
	int32_t *orow = (int32_t *)(m + l->out_rows), *pages = (int32_t *)(m + l->pages);
	int32_t *ts = (int32_t *)(m + l->tile_seq), *t0 = (int32_t *)(m + l->tile_tok0);
	int32_t *tn = (int32_t *)(m + l->tile_ntok), *rec = (int32_t *)(m + l->recent);
	struct cuda_samp *sp = (struct cuda_samp *)(m + l->samp);
	int t = 0, r = 0, nt = 0, roff = 0, boff = 0;
	struct cuda_bias *bias = (struct cuda_bias *)(m + l->bias);
	for (int s = 0; s < b->n_seqs; s++) {
		const struct eng_batch_seq *q = &b->seqs[s];
		const int n = q->n_tokens;
		for (int i = 0; i < n; i++) {
			tok[t + i] = q->tokens[i];
			pos[t + i] = q->pos0 + i;
			tseq[t + i] = s;
		}
		if (q->logits_all)
			for (int i = 0; i < n; i++)
				orow[r++] = t + i;
		else
			orow[r++] = t + n - 1;
		last[s] = t + n - 1;
		for (int i = 0; i < n; i += sh->qt) {
			ts[nt] = s;
			t0[nt] = t + i;
			tn[nt++] = n - i < sh->qt ? n - i : sh->qt;
		}
		memcpy(pages + (size_t)s * be->page_stride, q->pages,
		       4 * (size_t)cdiv(q->pos0 + n, ENG_KV_PAGE));
		if (be->p.n_wpages) {
			/* released window pages (-1, before the window) are never read:
			 * 0 there keeps every address in the pool */
			int32_t *wp = (int32_t *)(m + l->wpages) + (size_t)s * be->page_stride;
			for (int i = 0; i < cdiv(q->pos0 + n, ENG_KV_PAGE); i++)
				wp[i] = q->wpages[i] < 0 ? 0 : q->wpages[i];
		}
		if (sh->sample) {
			const struct eng_sample_req *rq = &samp[s];
			const bool pen = rq->p.repeat_penalty != 1.0f && rq->recent && rq->n_recent > 0;
			if (sh->recent_stride)
				roff = s * sh->recent_stride;
			if (sh->bias_stride)
				boff = s * sh->bias_stride;
			sp[s] = (struct cuda_samp){rq->p.temperature, rq->p.top_p, rq->p.min_p,
			                           pen ? rq->p.repeat_penalty : 1.0f, rq->p.top_k,
			                           pen ? rq->n_recent : 0, roff, rq->n_bias, boff,
			                           cands_row(be, rq), 0, 0, rq->seed, rq->draw};
			if (pen) {
				memcpy(rec + roff, rq->recent, 4 * (size_t)rq->n_recent);
				roff += rq->n_recent;
			}
			for (int i = 0; i < rq->n_bias; i++)
				bias[boff + i] = (struct cuda_bias){rq->bias[i].id, rq->bias[i].bias};
			boff += rq->n_bias;
		}
		t += n;
	}
}

// ---- graphs

static struct cuda_graph_slot *slot(struct eng_backend *be, const struct shape *sh)
{
	return &be->graphs[CUDA_GRAPH_VARIANTS * sh->S + (sh->sample ? 1 : 0) + (sh->longctx ? 2 : 0) +
	                   (sh->bias ? 4 : 0) + (sh->cands ? 8 : 0)];
}

extern "C" void cuda_be_graphs_free(struct eng_backend *be)
{
	if (!be->graphs)
		return;
	for (int i = 0; i < CUDA_GRAPH_VARIANTS * (be->p.max_seqs + 1); i++)
		if (be->graphs[i].ready) {
			cudaGraphExecDestroy(be->graphs[i].exec);
			be->graphs[i].ready = false;
		}
}

/* Records the step into a graph (first use of this shape), then launches it. */
static int run_graph(struct eng_backend *be, const struct shape *sh)
{
	struct cuda_graph_slot *g = slot(be, sh);
	if (!g->ready) {
		cudaGraph_t graph = NULL;
		CUDA_CHECK(cudaStreamBeginCapture(be->st, cudaStreamCaptureModeThreadLocal));
		cuda_pdl_capture(true);
		int rc = decode_step(be, sh);
		cuda_pdl_capture(false);
		cudaError_t e = cudaStreamEndCapture(be->st, &graph);
		if (rc || e != cudaSuccess) {
			LOG_WARN("graph capture failed (%s); running without graphs", cudaGetErrorString(e));
			(void)cudaGetLastError();
			if (graph)
				cudaGraphDestroy(graph);
			be->use_graphs = false;
			return decode_step(be, sh);
		}
		e = cudaGraphInstantiate(&g->exec, graph, 0);
		cudaGraphDestroy(graph);
		CUDA_CHECK(e);
		g->ready = true;
	}
	CUDA_CHECK(cudaGraphLaunch(g->exec, be->st));
	return 0;
}

// ---- forward

/* Rows the device sampler cannot take (top_k 0 or > CUDA_SAMPLE_KMAX, or a
 * host step: grammar, logprobs, the sampler.h steps the device lacks):
 * the last rows come to the host and go through eng_sample(). */
static int sample_host(struct eng_backend *be, const struct eng_batch *b,
                       const struct eng_sample_req *samp, const struct shape *sh, int32_t *out)
{
	const int V = be->cfg.n_vocab;
	if (!be->host_rows) {
		be->host_rows = (float *)malloc((size_t)be->logit_rows * V * sizeof(float));
		if (!be->host_rows)
			return -ENOMEM;
	}
	CUDA_CHECK(cudaMemcpyAsync(be->host_rows, be->logits, (size_t)sh->S * V * 4,
	                           cudaMemcpyDeviceToHost, be->st));
	CUDA_CHECK(cudaStreamSynchronize(be->st));
	for (int s = 0; s < b->n_seqs; s++)
		out[s] = eng_sample(be->host_sampler, be->host_rows + (size_t)s * V, &samp[s]);
	return 0;
}

/* The rows the host finishes (SAMP_CANDS) from their CUDA_SAMPLE_KMAX
 * largest logits (eng_sample_top); when the grammar allows none of them
 * (greedy: of the 64; else: of the chain's survivors), the row's logits
 * (bias and penalty applied on the device: not again) come over whole and
 * go through eng_sample. */
static int finish_cands(struct eng_backend *be, const struct eng_batch *b, const struct eng_sample_req *samp,
                        int32_t *out)
{
	const int V = be->cfg.n_vocab;
	int32_t ids[CUDA_SAMPLE_KMAX];
	float vals[CUDA_SAMPLE_KMAX];
	for (int s = 0; s < b->n_seqs; s++) {
		const struct eng_sample_req *rq = &samp[s];
		if (samp_mode(be, rq) != SAMP_CANDS)
			continue;
		const uint64_t *k = be->cands_h + (size_t)s * CUDA_SAMPLE_KMAX;
		for (int i = 0; i < CUDA_SAMPLE_KMAX; i++) {
			ids[i] = cuda_sample_key_id(k[i]);
			vals[i] = cuda_sample_key_val(k[i]);
		}
		int32_t t = eng_sample_top(be->host_sampler, ids, vals, CUDA_SAMPLE_KMAX, rq);
		if (t == -EAGAIN) {
			struct eng_sample_req r = samp[s];
			if (!be->host_rows && !(be->host_rows = (float *)malloc((size_t)be->logit_rows * V * sizeof(float))))
				return -ENOMEM;
			CUDA_CHECK(cudaMemcpy(be->host_rows, be->logits + (size_t)s * V, (size_t)V * 4,
			                      cudaMemcpyDeviceToHost));
			r.n_bias = 0;
			r.p.repeat_penalty = 1.0f;
			t = eng_sample(be->host_sampler, be->host_rows, &r);
		}
		out[s] = t;
	}
	return 0;
}

static void plan(struct eng_backend *be, const struct eng_batch *b, const struct eng_sample_req *samp,
                 bool want_logits, int T, int R, int nrec, struct shape *sh, bool *graph)
{
	const struct eng_config *c = &be->cfg;
	memset(sh, 0, sizeof(*sh));
	sh->T = T;
	sh->S = b->n_seqs;
	sh->R = R;
	sh->mmv = T <= CUDA_MMV_MAX_COLS;
	for (int s = 0; s < b->n_seqs; s++)
		sh->longctx |= b->seqs[s].pos0 + b->seqs[s].n_tokens > CUDA_CLUSTER_MAX_CTX;
	sh->qt = cuda_attn_tile_tokens(c->n_head, c->n_head_kv, c->head_dim);
	if (T <= CUDA_MMV_MAX_COLS) {
		/* small batches: tiles no longer than the longest sequence (less shared
		 * memory per block; fixed per S for graphs: T == S means 1) */
		int mx = 1;
		for (int s = 0; s < b->n_seqs; s++)
			mx = b->seqs[s].n_tokens > mx ? b->seqs[s].n_tokens : mx;
		sh->qt = mx < sh->qt ? mx : sh->qt;
	}
	for (int s = 0; s < b->n_seqs; s++)
		sh->n_tiles += cdiv(b->seqs[s].n_tokens, sh->qt);
	sh->n_split = 1;
	if (sh->mmv) {
		/* enough blocks for about two per SM; fixed per S (graphs) */
		int want = cdiv(2 * be->n_sm, sh->S * c->n_head_kv);
		sh->n_split = want < 1 ? 1 : want > be->max_split ? be->max_split : want;
		if (cluster_attn(be, sh))
			sh->n_split = sh->n_split > 8 ? 8 : sh->n_split;
	}
	sh->sample = samp != NULL && nrec <= be->recent_cap;
	for (int s = 0; samp && s < b->n_seqs; s++) {
		const enum samp_mode md = samp_mode(be, &samp[s]);
		sh->sample = sh->sample && md != SAMP_HOST;
		sh->cands = sh->cands || cands_row(be, &samp[s]);
		sh->bias = sh->bias || samp[s].n_bias > 0;
		sh->n_bias += samp[s].n_bias;
	}
	if (!sh->sample)
		sh->cands = sh->bias = false, sh->n_bias = 0;
	/* (MoE prefill reads the slot table back on the host: no graph) */
	*graph = be->use_graphs && !be->prof && T == sh->S && !(want_logits && samp) &&
	         (sh->mmv || !c->n_expert);
	for (int s = 0; *graph && sh->sample && s < b->n_seqs; s++)
		if (samp[s].p.repeat_penalty != 1.0f && samp[s].n_recent > CUDA_GRAPH_RECENT_CAP)
			*graph = false;
	sh->recent_stride = *graph && sh->sample ? CUDA_GRAPH_RECENT_CAP : 0;
	sh->n_recent = sh->sample ? (sh->recent_stride ? sh->S * CUDA_GRAPH_RECENT_CAP : nrec) : 0;
	/* logit_bias lists: per-sequence slots of ENG_SAMPLE_MAX_BIAS in a graph */
	sh->bias_stride = *graph && sh->bias ? ENG_SAMPLE_MAX_BIAS : 0;
	if (sh->bias_stride)
		sh->n_bias = sh->S * ENG_SAMPLE_MAX_BIAS;
	make_layout(&sh->ml, sh, be->page_stride, be->p.n_wpages > 0);
}

static int forward(struct eng_backend *be, const struct eng_batch *b, float *logits,
                   const struct eng_sample_req *samp, int32_t *tokens_out)
{
	const int V = be->cfg.n_vocab;
	struct shape sh;
	int T, R, nrec;
	bool graph;
	TRY(validate(be, b, samp, &T, &R, &nrec));
	plan(be, b, samp, logits != NULL, T, R, nrec, &sh, &graph);
	if (sh.ml.total > be->meta_cap) {
		LOG_ERR("batch metadata of %zu bytes exceeds %zu (too many recent tokens?)", sh.ml.total,
		        be->meta_cap);
		return -EINVAL;
	}
	fill_meta(be, b, samp, &sh);

	if (graph) {
		TRY(run_graph(be, &sh));
		if (logits)
			CUDA_CHECK(cudaMemcpyAsync(logits, be->logits, (size_t)R * V * 4,
			                           cudaMemcpyDeviceToHost, be->st));
		/* a graph without device sampling leaves the S rows' logits in
		 * be->logits: rows with a host step (grammar, logprobs, …) are
		 * sampled there, as on the path without graphs */
		if (samp && !sh.sample)
			TRY(sample_host(be, b, samp, &sh, tokens_out));
	} else {
		bool last_in_buf = false; /* be->logits holds the S last rows */
		TRY(body(be, &sh));
		for (int r0 = 0; logits && r0 < R; r0 += be->logit_rows) {
			int n = R - r0 < be->logit_rows ? R - r0 : be->logit_rows;
			TRY(head(be, M32(be, sh.ml.out_rows) + r0, n));
			CUDA_CHECK(cudaMemcpyAsync(logits + (size_t)r0 * V, be->logits, (size_t)n * V * 4,
			                           cudaMemcpyDeviceToHost, be->st));
			last_in_buf = R == sh.S && n == R;
		}
		if (samp && !last_in_buf)
			TRY(head(be, M32(be, sh.ml.last_rows), sh.S));
		if (samp && sh.sample)
			TRY(sample_dev(be, &sh));
		else if (samp)
			TRY(sample_host(be, b, samp, &sh, tokens_out));
	}
	CUDA_CHECK(cudaStreamSynchronize(be->st));
	if (sh.sample)
		memcpy(tokens_out, be->tok_h, 4 * (size_t)sh.S);
	if (sh.cands)
		TRY(finish_cands(be, b, samp, tokens_out));
	return 0;
}

extern "C" int cuda_be_forward(struct eng_backend *be, const struct eng_batch *b, float *logits,
                               const struct eng_sample_req *samp, int32_t *tokens_out)
{
	if (cudaSetDevice(be->dev) != cudaSuccess) {
		LOG_ERR("cudaSetDevice(%d) failed", be->dev);
		return -EIO;
	}
	int rc = forward(be, b, logits, samp, tokens_out);
	if (rc) {
		/* leave the stream usable for the next call */
		cudaError_t e = cudaStreamSynchronize(be->st);
		if (e != cudaSuccess)
			LOG_ERR("device failure: %s", cudaGetErrorString(e));
		(void)cudaGetLastError();
	}
	return rc;
}
