/*
 * forward.c — the CPU backend: the transformer forward pass over a batch of
 * sequences, and the ops table eng_cpu_backend_ops (backend.h).
 *
 * The reference backend: every other backend is checked against it, and it
 * is checked against llama.cpp (tests/test_logits.py).  One pass:
 *
 *   x = embed(tokens)  (gemma: x sqrt(C))              [T][C]
 *   per layer:
 *     xn = rmsnorm(x) * attn_norm
 *     q, k, v = xn Wq^T (+bq), xn Wk^T (+bk), xn Wv^T (+bv)
 *     (qwen3, gemma3) per-head rmsnorm of q and k;  rope(q, k) at each
 *     position (sliding-window layers: their own base);  (gemma) q *= q_scale
 *     K/V of the new positions → F16 pages;  att = causal attention (sliding
 *     layers: the last n_swa positions; gemma2: soft-capped scores)
 *     x += att Wo^T                         (gemma: rmsnorm(.) * post_attn_norm)
 *     xn = rmsnorm(x) * ffn_norm
 *     x += (act(xn Wgate^T) * xn Wup^T) Wdown^T   (act silu, or gelu for gemma;
 *                                            gemma: rmsnorm(.) * post_ffn_norm)
 *   logits = rmsnorm(x_out) * output_norm · Wout^T     [rows][V]
 *   (gemma2) logits = cap * tanh(logits / cap)
 *   mixture of experts: the FFN is sum over the K chosen experts e of
 *     w_e * (silu(xn Wgate_e^T) * xn Wup_e^T) Wdown_e^T,  w = renormalised
 *     top-K of softmax(xn Wrouter^T); each expert's matrices run once per
 *     pass over the rows routed to it
 *
 * Threads: the matrix products split rows of W over the pool (matmul.c);
 * attention splits (token, head) items, the element-wise ops split tokens,
 * both through one dynamic parallel-for; tiny ones run on the caller.
 * All scratch is allocated in init for max_batch_tokens; forward() never
 * allocates.
 *
 * KV pool layout (this backend's choice; backend.h fixes only the
 * indexing): per layer [K|V][N][P][G][D] halves, N = n_wpages for a
 * sliding-window layer (its ids are window pages), n_pages for the others,
 * the layers one after another (kv_off).
 *
 * Shape letters as model.h: T tokens, S sequences, C, H, G, D, F, V, P.
 */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../gguf/log.h"
#include "../backend.h"
#include "cpu.h"
#include "ops.h"
#include "vecdot_impl.h"

struct eng_backend {
	struct eng_config cfg;
	struct eng_weights w; /* a copy of the views; layers array owned */
	struct eng_backend_params p;
	struct cpu_pool *pool;
	struct eng_sampler *sampler;
	int nth;

	gguf_half *kv; /* per layer il at kv_off[il]: [2][N(il)][P][G][D] (N: pool_pages) */
	size_t *kv_off; /* [L] halves */
	size_t kv_bytes;

	/* scratch, sliced from one arena */
	void *arena;
	size_t arena_bytes;
	float *x;      /* [Tm][C] residual stream */
	float *xn;     /* [Tm][C] normed input of a block */
	float *tmp;    /* [Tm][C] block output before the residual add */
	float *q;      /* [Tm][H*D] */
	float *k;      /* [Tm][G*D] */
	float *v;      /* [Tm][G*D] */
	float *att;    /* [Tm][H*D] */
	float *gate;   /* [Tm][F] (becomes silu(gate) * up) */
	float *up;     /* [Tm][F] */
	float *rope;   /* [Tm][n_rot] cos/sin pairs per token */
	float *rope_swa; /* [Tm][n_rot] the same for sliding-window layers (gemma) */
	const float *rope_ff; /* [n_rot/2] RoPE frequency divisors (eng_rope_factors) or NULL */
	float *scores; /* [nth][max_ctx] attention probabilities */
	float *q16;    /* [nth][D] */
	float *logits; /* [max_seqs][V] when the caller wants samples only */
	float *srow;   /* [V] a row for the sampler to modify */
	void *mm_scratch;
	int32_t *tok_pos;   /* [Tm] position of each token */
	int32_t *tok_seq;   /* [Tm] sequence of each token */
	int32_t *out_tok;   /* [Tm] token index of each output row */
	/* mixture of experts (n_expert > 0), K = n_expert_used, E = n_expert */
	float *router;      /* [Tm][E] router logits */
	float *ewt;         /* [Tm][K] weights of the chosen experts */
	int32_t *esel;      /* [Tm][K] the chosen experts, best first */
	int32_t *erow;      /* [Tm] rows gathered for one expert: t * K + rank */
	float *xg;          /* [Tm][C] their normed inputs */
	float *yg;          /* [Tm][C] their expert outputs */
	float *eout;        /* [Tm][K][C] weighted expert outputs, summed by rank */

	char name[96];
};

// ---- parallel-for over items (dynamic: attention rows differ in length)

typedef void (*item_fn)(struct eng_backend *be, const void *arg, int i, int ith);

struct par_for {
	struct eng_backend *be;
	item_fn fn;
	const void *arg;
	int n, chunk;
	atomic_int next;
};

static void par_for_task(void *a, int ith, int nth)
{
	struct par_for *pf = a;

	for (;;) {
		int i0 = atomic_fetch_add_explicit(&pf->next, pf->chunk, memory_order_relaxed);
		if (i0 >= pf->n)
			break;
		int i1 = i0 + pf->chunk < pf->n ? i0 + pf->chunk : pf->n;
		for (int i = i0; i < i1; i++)
			pf->fn(pf->be, pf->arg, i, ith);
	}
}

/* Runs fn on items [0, n): on the caller when `small` (a pool wake-up costs
 * more than the work), else over the pool in chunks of `chunk` items. */
static void parallel_for(struct eng_backend *be, int n, int chunk, bool small, item_fn fn,
                         const void *arg)
{
	struct par_for pf = { .be = be, .fn = fn, .arg = arg, .n = n, .chunk = chunk };

	if (small || be->nth == 1 || n == 1) {
		for (int i = 0; i < n; i++)
			fn(be, arg, i, 0);
		return;
	}
	atomic_init(&pf.next, 0);
	cpu_pool_run(be->pool, par_for_task, &pf);
}

// ---- per-token and per-head items

struct norm_arg {
	const float *add;   /* [T][C] added to x first, or NULL */
	const float *post;  /* [C] add's rows are rms-normed with this weight first (gemma), or NULL */
	const float *w;     /* [C] norm weight */
	const int32_t *map; /* row r reads token map[r] (NULL: identity) */
};

/* x[t] += add[t]; xn[r] = rmsnorm(x[t]) * w, t = map ? map[r] : r. */
static void item_residual_norm(struct eng_backend *be, const void *a, int r, int ith)
{
	const struct norm_arg *na = a;
	const int C = be->cfg.n_embd;
	const int t = na->map ? na->map[r] : r;
	float *x = be->x + (size_t)t * C;

	if (na->add && na->post) {
		float *a = (float *)na->add + (size_t)t * C; /* tmp: its own row, once */
		cpu_rmsnorm(a, a, na->post, C, be->cfg.rms_eps);
	}
	if (na->add)
		cpu_add(x, na->add + (size_t)t * C, C);
	cpu_rmsnorm(be->xn + (size_t)r * C, x, na->w, C, be->cfg.rms_eps);
}

/* The page table a layer reads: window pages for a sliding-window layer
 * when the backend has a window pool. */
static const int32_t *layer_pages(const struct eng_backend *be, const struct eng_batch_seq *sq,
                                  const struct eng_layer *l)
{
	return l->swa && be->p.n_wpages ? sq->wpages : sq->pages;
}

struct qkv_arg {
	const struct eng_layer *l;
	struct cpu_kv_layer kv;
	const struct eng_batch *b;
};

/* Biases, per-head norms, RoPE, and the F16 store of K/V for token t. */
static void item_qkv_post(struct eng_backend *be, const void *a, int t, int ith)
{
	const struct qkv_arg *qa = a;
	const struct eng_config *c = &be->cfg;
	const struct eng_layer *l = qa->l;
	const int D = c->head_dim, HD = c->n_head * D, GD = c->n_head_kv * D;
	float *q = be->q + (size_t)t * HD, *k = be->k + (size_t)t * GD, *v = be->v + (size_t)t * GD;

	if (l->bq.data)
		cpu_add(q, l->bq.data, HD);
	if (l->bk.data)
		cpu_add(k, l->bk.data, GD);
	if (l->bv.data)
		cpu_add(v, l->bv.data, GD);
	if (l->q_norm.data)
		for (int h = 0; h < c->n_head; h++)
			cpu_rmsnorm(q + h * D, q + h * D, l->q_norm.data, D, c->rms_eps);
	if (l->k_norm.data)
		for (int h = 0; h < c->n_head_kv; h++)
			cpu_rmsnorm(k + h * D, k + h * D, l->k_norm.data, D, c->rms_eps);
	if (c->n_rot) {
		const float *cs = (l->swa ? be->rope_swa : be->rope) + (size_t)t * c->n_rot;
		cpu_rope(q, c->n_head, D, c->n_rot, cs, c->rope_type);
		cpu_rope(k, c->n_head_kv, D, c->n_rot, cs, c->rope_type);
	}
	if (c->q_scale)
		cpu_scale(q, HD, c->q_scale);
	cpu_kv_store(&qa->kv, layer_pages(be, &qa->b->seqs[be->tok_seq[t]], qa->l), be->tok_pos[t], k, v);
}

/* Item i = (token t, head h): att[t][h] over positions [0, pos_t]. */
static void item_attention(struct eng_backend *be, const void *a, int i, int ith)
{
	const struct qkv_arg *qa = a;
	const struct eng_config *c = &be->cfg;
	const int D = c->head_dim, t = i / c->n_head, h = i % c->n_head;
	const int g = h / (c->n_head / c->n_head_kv);
	const size_t off = (size_t)t * c->n_head * D + (size_t)h * D;
	const int n_kv = be->tok_pos[t] + 1;
	/* a sliding layer sees positions p - n_swa < j <= p (llama.cpp's standard SWA mask) */
	const int j0 = qa->l->swa && n_kv > c->n_swa ? n_kv - c->n_swa : 0;

	cpu_attn_head_ext(be->att + off, be->q + off, &qa->kv, layer_pages(be, &qa->b->seqs[be->tok_seq[t]], qa->l),
	                  j0, n_kv, g, c->q_scale ? 1.0f : 1.0f / sqrtf((float)D), c->attn_softcap,
	                  be->scores + (size_t)ith * be->p.max_ctx, be->q16 + (size_t)ith * D);
}

#define SWIGLU_CHUNK 1024

struct glu_arg {
	int F; /* row width of gate[][F] and up[][F]: n_ff, or n_ff_exp for experts */
};

/* Item i = (row, chunk of SWIGLU_CHUNK features): gate = act(gate) * up,
 * act silu (SwiGLU) or, for gemma, gelu (GeGLU). */
static void item_swiglu(struct eng_backend *be, const void *a, int i, int ith)
{
	const int F = ((const struct glu_arg *)a)->F, per = (F + SWIGLU_CHUNK - 1) / SWIGLU_CHUNK;
	const int t = i / per, f0 = (i % per) * SWIGLU_CHUNK;
	const int n = F - f0 < SWIGLU_CHUNK ? F - f0 : SWIGLU_CHUNK;
	const size_t off = (size_t)t * F + f0;

	if (be->cfg.ffn_act == ENG_FFN_ACT_GELU)
		cpu_geglu(be->gate + off, be->gate + off, be->up + off, n);
	else
		cpu_swiglu(be->gate + off, be->gate + off, be->up + off, n);
}

static void matmul(struct eng_backend *be, const struct eng_tensor *w, const float *x, int T,
                   float *y)
{
	cpu_matmul(be->pool, w, x, T, y, (int)w->ne[1], be->mm_scratch);
}

// ---- mixture of experts

/* Token t: its router logits → the K chosen experts and their weights
 * (cpu_moe_route: softmax, top K, renormalised). */
static void item_route(struct eng_backend *be, const void *a, int t, int ith)
{
	const int E = be->cfg.n_expert, K = be->cfg.n_expert_used;

	cpu_moe_route(be->router + (size_t)t * E, E, K, be->esel + (size_t)t * K, be->ewt + (size_t)t * K);
}

/* Token t: tmp[t] = sum over ranks of eout[t][rank] (llama.cpp adds them in rank order). */
static void item_moe_sum(struct eng_backend *be, const void *a, int t, int ith)
{
	const int C = be->cfg.n_embd, K = be->cfg.n_expert_used;
	const float *eo = be->eout + (size_t)t * K * C;
	float *y = be->tmp + (size_t)t * C;

	memcpy(y, eo, (size_t)C * sizeof(float));
	for (int k = 1; k < K; k++)
		cpu_add(y, eo + (size_t)k * C, C);
}

/* The expert FFN of one layer over T tokens (xn → tmp).  Each expert runs
 * its three matrices once over the rows routed to it, so a batch reads each
 * chosen expert's weights once. */
static void moe_forward(struct eng_backend *be, const struct eng_layer *l, int T)
{
	const struct eng_config *c = &be->cfg;
	const int C = c->n_embd, K = c->n_expert_used, Fe = c->n_ff_exp;
	const struct glu_arg ga = { .F = Fe };
	const int per = (Fe + SWIGLU_CHUNK - 1) / SWIGLU_CHUNK;

	matmul(be, &l->ffn_gate_inp, be->xn, T, be->router);
	parallel_for(be, T, 1, T < 4, item_route, NULL);
	for (int e = 0; e < c->n_expert; e++) {
		const struct eng_tensor wg = eng_expert_view(&l->gate_exps, e);
		const struct eng_tensor wu = eng_expert_view(&l->up_exps, e);
		const struct eng_tensor wd = eng_expert_view(&l->down_exps, e);
		int n = 0;

		for (int i = 0; i < T * K; i++) {
			if (be->esel[i] != e)
				continue;
			be->erow[n] = i;
			memcpy(be->xg + (size_t)n * C, be->xn + (size_t)(i / K) * C, (size_t)C * sizeof(float));
			n++;
		}
		if (!n)
			continue;
		matmul(be, &wg, be->xg, n, be->gate);
		matmul(be, &wu, be->xg, n, be->up);
		parallel_for(be, n * per, 1, (size_t)n * Fe < 8192, item_swiglu, &ga);
		matmul(be, &wd, be->gate, n, be->yg);
		for (int j = 0; j < n; j++) { /* ggml_mul(experts, weights) */
			const float wt = be->ewt[be->erow[j]];
			float *dst = be->eout + (size_t)be->erow[j] * C;
			const float *src = be->yg + (size_t)j * C;
			for (int d = 0; d < C; d++)
				dst[d] = src[d] * wt;
		}
	}
	parallel_for(be, T, 1, T < 4, item_moe_sum, NULL);
}

// ---- the forward pass

/* Pages in layer il's pool: window pages for a sliding-window layer. */
static int pool_pages(const struct eng_backend *be, int il)
{
	return be->w.layers[il].swa && be->p.n_wpages ? be->p.n_wpages : be->p.n_pages;
}

/* The first page index a query at pos or later reads in a sliding-window layer. */
static int wfirst(const struct eng_backend *be, int pos)
{
	return (pos + 1 > be->cfg.n_swa ? pos + 1 - be->cfg.n_swa : 0) / ENG_KV_PAGE;
}

static struct cpu_kv_layer kv_layer(const struct eng_backend *be, int il)
{
	const size_t per = (size_t)pool_pages(be, il) * ENG_KV_PAGE * be->cfg.n_head_kv * be->cfg.head_dim;
	struct cpu_kv_layer kv = {
		.k = be->kv + be->kv_off[il],
		.v = be->kv + be->kv_off[il] + per,
		.G = be->cfg.n_head_kv,
		.D = be->cfg.head_dim,
	};
	return kv;
}


static void layer_forward(struct eng_backend *be, const struct eng_batch *b, int il, int T)
{
	const struct eng_config *c = &be->cfg;
	const struct eng_layer *l = &be->w.layers[il];
	const struct eng_layer *prev = il ? &be->w.layers[il - 1] : NULL;
	const struct norm_arg attn_in = { .add = il ? be->tmp : NULL,
	                                  .post = prev ? prev->post_ffn_norm.data : NULL,
	                                  .w = l->attn_norm.data };
	const struct norm_arg ffn_in = { .add = be->tmp, .post = l->post_attn_norm.data,
	                                 .w = l->ffn_norm.data };
	const struct qkv_arg qa = { .l = l, .kv = kv_layer(be, il), .b = b };
	const bool small = T < 4;
	const int per = (c->n_ff + SWIGLU_CHUNK - 1) / SWIGLU_CHUNK;
	const struct glu_arg dense = { .F = c->n_ff };

	/* attention block (the previous layer's FFN output is added here) */
	parallel_for(be, T, 1, small, item_residual_norm, &attn_in);
	matmul(be, &l->wq, be->xn, T, be->q);
	matmul(be, &l->wk, be->xn, T, be->k);
	matmul(be, &l->wv, be->xn, T, be->v);
	parallel_for(be, T, 1, small, item_qkv_post, &qa);
	parallel_for(be, T * c->n_head, 1, false, item_attention, &qa);
	matmul(be, &l->wo, be->att, T, be->tmp);

	/* feed-forward block */
	parallel_for(be, T, 1, small, item_residual_norm, &ffn_in);
	if (l->ffn_gate_inp.data) {
		moe_forward(be, l, T);
		return;
	}
	matmul(be, &l->w_gate, be->xn, T, be->gate);
	matmul(be, &l->w_up, be->xn, T, be->up);
	parallel_for(be, T * per, 1, (size_t)T * c->n_ff < 8192, item_swiglu, &dense);
	matmul(be, &l->w_down, be->gate, T, be->tmp);
}

/* Checks the batch against the limits given at init; fills tok_seq/tok_pos
 * and the embeddings.  0 / -EINVAL with a log line. */
static int batch_prepare(struct eng_backend *be, const struct eng_batch *b, int *n_tok)
{
	const struct eng_config *c = &be->cfg;
	int T = 0, rc;

	if (b->n_seqs < 1 || b->n_seqs > be->p.max_seqs) {
		LOG_ERR("batch has %d sequences (limit %d)", b->n_seqs, be->p.max_seqs);
		return -EINVAL;
	}
	for (int s = 0; s < b->n_seqs; s++) {
		const struct eng_batch_seq *sq = &b->seqs[s];
		if (sq->n_tokens < 1 || sq->pos0 < 0 || sq->n_tokens > be->p.max_batch_tokens - T ||
		    sq->pos0 > be->p.max_ctx - sq->n_tokens) {
			LOG_ERR("sequence %d: %d tokens at position %d exceed the limits (%d tokens per batch, context %d)",
			        s, sq->n_tokens, sq->pos0, be->p.max_batch_tokens, be->p.max_ctx);
			return -EINVAL;
		}
		for (int i = 0; i <= (sq->pos0 + sq->n_tokens - 1) / ENG_KV_PAGE; i++) {
			if (sq->pages[i] < 0 || sq->pages[i] >= be->p.n_pages) {
				LOG_ERR("sequence %d: page %d of its table is %d (pool has %d pages)", s, i,
				        sq->pages[i], be->p.n_pages);
				return -EINVAL;
			}
		}
		if (be->p.n_wpages && !sq->wpages) {
			LOG_ERR("sequence %d: no window pages for the sliding-window layers", s);
			return -EINVAL;
		}
		for (int i = wfirst(be, sq->pos0); be->p.n_wpages && i <= (sq->pos0 + sq->n_tokens - 1) / ENG_KV_PAGE; i++) {
			if (sq->wpages[i] < 0 || sq->wpages[i] >= be->p.n_wpages) {
				LOG_ERR("sequence %d: window page %d of its table is %d (pool has %d)", s, i,
				        sq->wpages[i], be->p.n_wpages);
				return -EINVAL;
			}
		}
		for (int i = 0; i < sq->n_tokens; i++, T++) {
			be->tok_seq[T] = s;
			be->tok_pos[T] = sq->pos0 + i;
			rc = cpu_embed(be->x + (size_t)T * c->n_embd, &be->w.tok_embd, sq->tokens[i]);
			if (rc)
				return rc;
			if (c->embd_scale) /* gemma: as ggml_scale, one f32 multiply */
				cpu_scale(be->x + (size_t)T * c->n_embd, c->n_embd, sqrtf((float)c->n_embd));
			if (c->n_rot)
				cpu_rope_cache_ext(be->rope + (size_t)T * c->n_rot, sq->pos0 + i, c->n_rot,
				                   c->rope_base, c->rope_freq_scale, be->rope_ff);
			if (c->n_rot && c->rope_attn_factor != 1.0f) /* ggml: cos, sin x attn_factor */
				cpu_scale(be->rope + (size_t)T * c->n_rot, c->n_rot, c->rope_attn_factor);
			if (c->n_rot && c->n_swa)
				cpu_rope_cache_ext(be->rope_swa + (size_t)T * c->n_rot, sq->pos0 + i, c->n_rot,
				                   c->rope_base_swa, c->rope_freq_scale_swa, NULL);
		}
	}
	*n_tok = T;
	return 0;
}

/* Output rows: every token of logits_all sequences when logits are wanted,
 * else each sequence's last token.  Returns the row count. */
static int select_rows(struct eng_backend *be, const struct eng_batch *b, bool all_allowed)
{
	int t = 0, n = 0;

	for (int s = 0; s < b->n_seqs; s++) {
		const int nt = b->seqs[s].n_tokens;
		if (all_allowed && b->seqs[s].logits_all)
			for (int i = 0; i < nt; i++)
				be->out_tok[n++] = t + i;
		else
			be->out_tok[n++] = t + nt - 1;
		t += nt;
	}
	return n;
}

static int cpu_forward(struct eng_backend *be, const struct eng_batch *b, float *logits,
                       const struct eng_sample_req *samp, int32_t *tokens_out)
{
	const struct eng_config *c = &be->cfg;
	const int V = c->n_vocab;
	int T, rows, rc;
	float *dst;

	rc = batch_prepare(be, b, &T);
	if (rc)
		return rc;
	for (int il = 0; il < c->n_layer; il++)
		layer_forward(be, b, il, T);
	if (!logits && !samp)
		return 0; /* KV only (cache rebuild) */

	/* final norm of the output rows (the last FFN output is added here) */
	rows = select_rows(be, b, logits != NULL);
	{
		const struct norm_arg out_in = { .add = be->tmp,
		                                 .post = be->w.layers[c->n_layer - 1].post_ffn_norm.data,
		                                 .w = be->w.output_norm.data, .map = be->out_tok };
		parallel_for(be, rows, 1, rows < 4, item_residual_norm, &out_in);
	}
	dst = logits ? logits : be->logits;
	cpu_matmul(be->pool, &be->w.output, be->xn, rows, dst, V, be->mm_scratch);
	if (c->final_softcap)
		cpu_softcap(dst, rows * V, c->final_softcap);
	if (!samp)
		return 0;
	for (int s = 0, r = 0; s < b->n_seqs; s++) {
		r += logits && b->seqs[s].logits_all ? b->seqs[s].n_tokens : 1;
		/* the sampler modifies its row: keep the caller's logits intact */
		memcpy(be->srow, dst + (size_t)(r - 1) * V, (size_t)V * sizeof(float));
		tokens_out[s] = eng_sample(be->sampler, be->srow, &samp[s]);
	}
	return 0;
}

// ---- init / free

struct arena_slot {
	void **ptr;
	size_t bytes;
};

/* Scratch for cpu_matmul: the most any weight of the model needs at Tm rows. */
static size_t matmul_scratch_bytes(const struct eng_config *c, const struct eng_weights *w, int Tm)
{
	size_t m = cpu_matmul_scratch_size(w->output.type, w->output.ne[0], Tm);

	for (int il = 0; il < c->n_layer; il++) {
		const struct eng_layer *l = &w->layers[il];
		const struct eng_tensor *ts[] = { &l->wq, &l->wk, &l->wv, &l->wo, &l->w_gate,
		                                  &l->w_up, &l->w_down, &l->ffn_gate_inp,
		                                  &l->gate_exps, &l->up_exps, &l->down_exps };
		for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++) {
			if (!ts[i]->data)
				continue;
			size_t s = cpu_matmul_scratch_size(ts[i]->type, ts[i]->ne[0], Tm);
			m = s > m ? s : m;
		}
	}
	return m;
}

static int alloc_scratch(struct eng_backend *be)
{
	const struct eng_config *c = &be->cfg;
	const size_t Tm = (size_t)be->p.max_batch_tokens, C = c->n_embd, D = c->head_dim;
	const size_t HD = (size_t)c->n_head * D, GD = (size_t)c->n_head_kv * D;
	const size_t F = (size_t)(c->n_ff_exp > c->n_ff ? c->n_ff_exp : c->n_ff);
	const size_t E = (size_t)c->n_expert, K = (size_t)c->n_expert_used;
	const size_t f = sizeof(float), i32 = sizeof(int32_t);
	struct arena_slot slots[] = {
		{ (void **)&be->x, Tm * C * f },          { (void **)&be->xn, Tm * C * f },
		{ (void **)&be->tmp, Tm * C * f },        { (void **)&be->q, Tm * HD * f },
		{ (void **)&be->k, Tm * GD * f },         { (void **)&be->v, Tm * GD * f },
		{ (void **)&be->att, Tm * HD * f },       { (void **)&be->gate, Tm * F * f },
		{ (void **)&be->up, Tm * F * f },         { (void **)&be->rope, Tm * (c->n_rot + 1) * f },
		{ (void **)&be->rope_swa, Tm * (c->n_rot + 1) * f },
		{ (void **)&be->scores, (size_t)be->nth * be->p.max_ctx * f },
		{ (void **)&be->q16, (size_t)be->nth * D * f },
		{ (void **)&be->logits, (size_t)be->p.max_seqs * c->n_vocab * f },
		{ (void **)&be->srow, (size_t)c->n_vocab * f },
		{ &be->mm_scratch, matmul_scratch_bytes(c, &be->w, be->p.max_batch_tokens) },
		{ (void **)&be->tok_pos, Tm * i32 },      { (void **)&be->tok_seq, Tm * i32 },
		{ (void **)&be->out_tok, Tm * i32 },
		{ (void **)&be->router, Tm * E * f },    { (void **)&be->ewt, Tm * K * f },
		{ (void **)&be->esel, Tm * K * i32 },    { (void **)&be->erow, Tm * K * i32 },
		{ (void **)&be->xg, (E ? Tm * K : 0) * C * f },
		{ (void **)&be->yg, (E ? Tm * K : 0) * C * f },
		{ (void **)&be->eout, Tm * K * C * f },
	};
	const size_t n = sizeof(slots) / sizeof(slots[0]);
	size_t total = 0;
	char *p;

	for (size_t i = 0; i < n; i++)
		total += (slots[i].bytes + 63) & ~(size_t)63;
	be->arena = aligned_alloc(64, total);
	if (!be->arena) {
		LOG_ERR("cannot allocate %zu bytes of scratch", total);
		return -ENOMEM;
	}
	be->arena_bytes = total;
	p = be->arena;
	for (size_t i = 0; i < n; i++) {
		*slots[i].ptr = p;
		p += (slots[i].bytes + 63) & ~(size_t)63;
	}
	return 0;
}

static int check_params(const struct eng_backend_params *p)
{
	if (p->n_pages < 1 || p->max_batch_tokens < 1 || p->max_seqs < 1 || p->max_ctx < 1 ||
	    p->max_seqs > p->max_batch_tokens) {
		LOG_ERR("bad backend parameters: n_pages %d, max_batch_tokens %d, max_seqs %d, max_ctx %d",
		        p->n_pages, p->max_batch_tokens, p->max_seqs, p->max_ctx);
		return -EINVAL;
	}
	return 0;
}

/* The instruction set the matrix products run with (the FFN's type). */
static const char *isa_name(const struct eng_weights *w)
{
	const struct eng_layer *l = &w->layers[0];

	switch (cpu_kernel_get(l->w_gate.data ? l->w_gate.type : l->gate_exps.type, cpu_get_isa()).isa) {
	case CPU_ISA_AMX:
		return "AMX-INT8";
	case CPU_ISA_AVX512:
		return "AVX-512 VNNI";
	case CPU_ISA_AVX2:
		return "AVX2";
	default:
		return "scalar";
	}
}

static void cpu_free(struct eng_backend *be)
{
	if (!be)
		return;
	eng_sampler_free(be->sampler);
	cpu_pool_free(be->pool);
	free(be->arena);
	free(be->kv);
	free(be->kv_off);
	free(be->w.layers);
	free(be);
}

static int cpu_init(const struct eng_config *cfg, const struct eng_weights *w,
                    const struct eng_backend_params *p, struct eng_backend **out)
{
	struct eng_backend *be;
	size_t page_bytes = eng_kv_page_bytes(cfg);
	int rc = check_params(p);

	if (rc)
		return rc;
	if (p->n_wpages < 0 || (p->n_wpages > 0 && !(cfg->n_swa > 0 && cfg->n_layer_swa > 0))) {
		LOG_ERR("bad backend parameters: %d window pages for a model with %d sliding-window layers",
		        p->n_wpages, cfg->n_layer_swa);
		return -EINVAL;
	}
	be = calloc(1, sizeof(*be));
	if (!be)
		return -ENOMEM;
	be->cfg = *cfg;
	be->p = *p;
	be->w = *w;
	be->w.layers = malloc((size_t)cfg->n_layer * sizeof(*w->layers));
	if (!be->w.layers) {
		rc = -ENOMEM;
		goto fail;
	}
	memcpy(be->w.layers, w->layers, (size_t)cfg->n_layer * sizeof(*w->layers));
	rc = cpu_pool_init(p->n_threads, &be->pool);
	if (rc)
		goto fail;
	be->nth = cpu_pool_n_threads(be->pool);
	be->rope_ff = eng_rope_factors(cfg, w, p->max_ctx);
	/* calloc: the kernel maps pages lazily, so an unused pool costs nothing */
	be->kv_off = malloc(sizeof(*be->kv_off) * (size_t)cfg->n_layer);
	if (!be->kv_off) {
		rc = -ENOMEM;
		goto fail;
	}
	be->kv_bytes = 0;
	for (int il = 0; il < cfg->n_layer; il++) {
		be->kv_off[il] = be->kv_bytes / sizeof(gguf_half);
		if ((size_t)pool_pages(be, il) > (SIZE_MAX / 4 - be->kv_bytes) / (page_bytes / cfg->n_layer)) {
			LOG_ERR("a KV pool of %d pages + %d window pages of %zu bytes does not fit in memory",
			        p->n_pages, p->n_wpages, page_bytes);
			rc = -ENOMEM;
			goto fail;
		}
		be->kv_bytes += (size_t)pool_pages(be, il) * (page_bytes / cfg->n_layer);
	}
	if (!(be->kv = calloc(1, be->kv_bytes))) {
		LOG_ERR("cannot allocate a KV pool of %d pages + %d window pages (%zu bytes)", p->n_pages,
		        p->n_wpages, be->kv_bytes);
		rc = -ENOMEM;
		goto fail;
	}
	rc = alloc_scratch(be);
	if (rc)
		goto fail;
	be->sampler = eng_sampler_init(cfg->n_vocab);
	if (!be->sampler) {
		rc = -ENOMEM;
		goto fail;
	}
	snprintf(be->name, sizeof(be->name), "CPU (%d thread%s, %s)", be->nth,
	         be->nth == 1 ? "" : "s", isa_name(&be->w));
	*out = be;
	return 0;
fail:
	cpu_free(be);
	return rc;
}

// ---- the ops table

static int cpu_probe(void)
{
	return 1;
}

static const char *cpu_device_name(const struct eng_backend *be)
{
	return be->name;
}

static void cpu_memory(const struct eng_backend *be, size_t *weights, size_t *kv, size_t *scratch)
{
	if (weights)
		*weights = (size_t)eng_weights_nbytes(&be->cfg, &be->w);
	if (kv)
		*kv = be->kv_bytes;
	if (scratch)
		*scratch = be->arena_bytes;
}

// ---- KV pages (one page = per layer, K then V, P*G*D halves each)

static size_t page_chunk(const struct eng_backend *be)
{
	return (size_t)ENG_KV_PAGE * be->cfg.n_head_kv * be->cfg.head_dim; /* halves */
}

/* The K (kv 0) or V (kv 1) rows of layer il in page `page` of its pool
 * (a window page for a sliding-window layer). */
static gguf_half *page_at(struct eng_backend *be, int il, int kv, int page)
{
	size_t per = (size_t)pool_pages(be, il) * page_chunk(be);

	return be->kv + be->kv_off[il] + (size_t)kv * per + (size_t)page * page_chunk(be);
}

/* Whether layer il has a page to use: the window page for a sliding-window
 * layer (wpage < 0: none). */
static bool layer_on(const struct eng_backend *be, int il, int wpage)
{
	return !(be->w.layers[il].swa && be->p.n_wpages) || wpage >= 0;
}

static int layer_page(const struct eng_backend *be, int il, int page, int wpage)
{
	return be->w.layers[il].swa && be->p.n_wpages ? wpage : page;
}

static bool pages_ok(const struct eng_backend *be, int page, int wpage)
{
	return eng_kv_pages_ok(&be->p, page, wpage);
}

static double cpu_mem_bandwidth(struct eng_backend *be) { return cpu_mem_read_bandwidth(be->pool); }

static int cpu_kv_page_copy(struct eng_backend *be, int dst, int wdst, int src, int wsrc)
{
	if (!pages_ok(be, dst, wdst) || !pages_ok(be, src, wsrc) || (wdst < 0) != (wsrc < 0))
		return -EINVAL;
	for (int il = 0; il < be->cfg.n_layer; il++)
		for (int kv = 0; kv < 2 && layer_on(be, il, wdst); kv++)
			memcpy(page_at(be, il, kv, layer_page(be, il, dst, wdst)),
			       page_at(be, il, kv, layer_page(be, il, src, wsrc)), page_chunk(be) * sizeof(gguf_half));
	return 0;
}

static int cpu_kv_page_read(struct eng_backend *be, int page, int wpage, void *dst)
{
	gguf_half *o = dst;

	if (!pages_ok(be, page, wpage))
		return -EINVAL;
	for (int il = 0; il < be->cfg.n_layer; il++)
		for (int kv = 0; kv < 2; kv++, o += page_chunk(be)) {
			if (layer_on(be, il, wpage))
				memcpy(o, page_at(be, il, kv, layer_page(be, il, page, wpage)),
				       page_chunk(be) * sizeof(gguf_half));
			else
				memset(o, 0, page_chunk(be) * sizeof(gguf_half));
		}
	return 0;
}

static int cpu_kv_page_write(struct eng_backend *be, int page, int wpage, const void *src)
{
	const gguf_half *in = src;

	if (!pages_ok(be, page, wpage))
		return -EINVAL;
	for (int il = 0; il < be->cfg.n_layer; il++)
		for (int kv = 0; kv < 2; kv++, in += page_chunk(be))
			if (layer_on(be, il, wpage))
				memcpy(page_at(be, il, kv, layer_page(be, il, page, wpage)), in,
				       page_chunk(be) * sizeof(gguf_half));
	return 0;
}

const struct eng_backend_ops eng_cpu_backend_ops = {
	.name = "cpu",
	.probe = cpu_probe,
	.init = cpu_init,
	.free = cpu_free,
	.device_name = cpu_device_name,
	.memory = cpu_memory,
	.forward = cpu_forward,
	.mem_bandwidth = cpu_mem_bandwidth,
	.kv_page_copy = cpu_kv_page_copy,
	.kv_page_read = cpu_kv_page_read,
	.kv_page_write = cpu_kv_page_write,
};
