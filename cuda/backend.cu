/*
 * backend.cu — the CUDA backend's ops table (engine/backend.h): probe, init
 * (weights uploaded once in their GGUF types, the KV pool, all scratch),
 * free, device name, memory, and the copy-bandwidth measurement.  The
 * forward pass is in forward.cu.
 *
 * Environment: PROMPTFS_NO_CUDA_GRAPHS=1 runs decode without CUDA graphs;
 * PROMPTFS_CUDA_NO_FUSE=1 runs decode with the unfused kernels (one op per
 * launch: a reference for the fused ones); PROMPTFS_CUDA_NO_PDL=1 launches
 * without programmatic dependent launch (common.cuh);
 * PROMPTFS_CUDA_PROFILE=1 times every op with CUDA events (no graphs) and
 * logs a per-op table when the backend is freed.
 */
#include <cublas_v2.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "quant.cuh"
#include "../engine/sampler.h"

#define ALIGN 256
#define CUBLAS_WS_BYTES (32u << 20)

static thread_local bool pdl_capturing;

void cuda_pdl_capture(bool on)
{
	pdl_capturing = on;
}

bool cuda_pdl_enabled(void)
{
	static int env = -1; /* read once; a benign race would store the same value */
	if (env < 0) {
		const char *e = getenv("PROMPTFS_CUDA_NO_PDL");
		env = !(e && !strcmp(e, "1"));
	}
	return pdl_capturing && env != 0;
}

int cuda_carveout(void)
{
	static int v = -2;
	if (v == -2) {
		const char *e = getenv("PROMPTFS_CUDA_CARVEOUT");
		v = e ? atoi(e) : 50;
	}
	return v;
}

static size_t align_up(size_t n)
{
	return (n + ALIGN - 1) / ALIGN * ALIGN;
}

/* Devices this build can run on: the kernels are compiled for compute
 * capability 9.0 (Hopper: programmatic dependent launch, clusters). */
static int cuda_probe(void)
{
	int n = 0, usable = 0;
	cudaError_t e = cudaGetDeviceCount(&n);
	if (e != cudaSuccess) {
		LOG_INFO("no CUDA device: %s (%s)", cudaGetErrorName(e), cudaGetErrorString(e));
		(void)cudaGetLastError();
		return 0;
	}
	for (int d = 0; d < n; d++) {
		int major = 0, minor = 0;
		if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, d) != cudaSuccess ||
		    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, d) != cudaSuccess)
			break;
		if (major < 9) {
			LOG_WARN("CUDA device %d has compute capability %d.%d; this build needs 9.0 (Hopper)",
			         d, major, minor);
			break;
		}
		usable++;
	}
	(void)cudaGetLastError();
	return usable;
}

// ---- weights

/* Calls fn on every tensor the backend uploads (absent optional ones and a
 * tied output are skipped by the caller through data == NULL / aliasing). */
struct up_ctx {
	uint8_t *base; /* device buffer, NULL while sizing */
	size_t off;
	int err;
};

static const void *upload(struct up_ctx *u, const struct eng_tensor *t)
{
	if (!t->data || u->err)
		return NULL;
	size_t at = u->off;
	u->off = align_up(u->off + t->nbytes);
	if (!u->base)
		return NULL;
	cudaError_t e = cudaMemcpy(u->base + at, t->data, t->nbytes, cudaMemcpyHostToDevice);
	if (e != cudaSuccess) {
		LOG_ERR("uploading %s (%zu bytes): %s", t->name, t->nbytes, cudaGetErrorString(e));
		u->err = -EIO;
		return NULL;
	}
	return u->base + at;
}

static int check_vec(const struct eng_tensor *t)
{
	if (t->data && t->type != GGUF_DTYPE_F32) {
		LOG_ERR("tensor %s: type %s, the CUDA backend expects F32 for norms and biases",
		        t->name, gguf_dtype_name(t->type));
		return -EINVAL;
	}
	return 0;
}

/* NEOX rotary pairs (d, d + n_rot/2) of every head of D dims made adjacent
 * (2d, 2d + 1): old dim d of a head goes to perm_dim(d).  Applied to the
 * rows of Wq and Wk and to their biases and QK norms, it leaves every q·k
 * unchanged (the same permutation on both sides) and lets RoPE rotate
 * adjacent rows, which the decode QKV kernel does in its epilogue. */
static int perm_dim(int d, int n_rot)
{
	if (d >= n_rot)
		return d;
	return d < n_rot / 2 ? 2 * d : 2 * (d - n_rot / 2) + 1;
}

/* t with its rows (matrix) or elements (vector) permuted head by head. */
static const void *upload_perm(struct up_ctx *u, const struct eng_tensor *t, int D, int n_rot)
{
	if (!t->data || u->err || !u->base)
		return upload(u, t);
	const size_t nrow = t->ne[1] > 1 ? (size_t)t->ne[1] : (size_t)t->ne[0];
	const size_t rb = t->nbytes / nrow; /* bytes per row, or per element */
	uint8_t *h = (uint8_t *)malloc(t->nbytes);
	if (!h) {
		u->err = -ENOMEM;
		return NULL;
	}
	for (size_t r = 0; r < nrow; r++) {
		const size_t head = r / (size_t)D, d = r % (size_t)D;
		memcpy(h + (head * D + perm_dim((int)d, n_rot)) * rb, (const uint8_t *)t->data + r * rb, rb);
	}
	struct eng_tensor tp = *t;
	tp.data = h;
	const void *r = upload(u, &tp);
	free(h);
	return r;
}

/* D > 0: rows permuted head by head (upload_perm) */
static int mat_p(struct up_ctx *u, const struct eng_tensor *t, struct cuda_mat *m, int D, int n_rot)
{
	if (!cuda_matvec_supported(t->type)) {
		LOG_ERR("tensor %s: type %s is not supported by the CUDA backend", t->name,
		        gguf_dtype_name(t->type));
		return -EINVAL;
	}
	m->type = t->type;
	m->K = (int)t->ne[0];
	m->N = (int)t->ne[1];
	m->row_bytes = gguf_row_size(t->type, t->ne[0]);
	m->d = D > 0 ? upload_perm(u, t, D, n_rot) : upload(u, t);
	return 0;
}

static int mat(struct up_ctx *u, const struct eng_tensor *t, struct cuda_mat *m)
{
	return mat_p(u, t, m, 0, 0);
}

static const float *vec(struct up_ctx *u, const struct eng_tensor *t)
{
	return (const float *)upload(u, t);
}


static bool q8(const struct cuda_mat *m)
{
	return cuda_type_is_quant(m->type);
}

/* A stacked expert tensor [K, N, E], uploaded whole. */
static int experts(struct up_ctx *u, const struct eng_tensor *t, struct cuda_experts *x)
{
	TRY(mat(u, t, &x->m));
	x->n = (int)t->ne[2];
	x->stride = t->nbytes / (size_t)t->ne[2];
	if (q8(&x->m) && x->m.K % Q8_BLOCK) {
		LOG_ERR("tensor %s: rows of %d (%s) are not a multiple of 32, which the CUDA expert "
		        "kernels need", t->name, x->m.K, gguf_dtype_name(t->type));
		return -ENOTSUP;
	}
	return 0;
}

/* The MoE tensors of one layer (router and the three stacked experts). */
static int layer_moe(struct up_ctx *u, const struct eng_layer *s, struct cuda_layer_w *d)
{
	d->moe = true;
	TRY(mat(u, &s->ffn_gate_inp, &d->router));
	TRY(experts(u, &s->gate_exps, &d->gate_e));
	TRY(experts(u, &s->up_exps, &d->up_e));
	TRY(experts(u, &s->down_exps, &d->down_e));
	if (d->gate_e.m.type != d->up_e.m.type) {
		LOG_ERR("tensors %s (%s) and %s (%s): the CUDA backend needs gate and up experts of one type",
		        s->gate_exps.name, gguf_dtype_name(s->gate_exps.type), s->up_exps.name,
		        gguf_dtype_name(s->up_exps.type));
		return -ENOTSUP;
	}
	d->q8_router = q8(&d->router);
	d->q8_exp = q8(&d->gate_e.m);
	d->q8_exp_down = q8(&d->down_e.m);
	return 0;
}

/* The RoPE frequency divisors for max_ctx (rope_freqs, or LongRoPE's long
 * or short factors: eng_rope_factors), [n_rot/2] F32, or NULL. */
static const float *rope_factors(struct eng_backend *be, const struct eng_weights *w, struct up_ctx *u)
{
	const float *ff = eng_rope_factors(&be->cfg, w, be->p.max_ctx);
	if (!ff)
		return NULL;
	const int n = be->cfg.n_rot / 2;
	struct eng_tensor t = {"rope frequency factors", GGUF_DTYPE_F32, {n, 1, 0}, ff, (size_t)n * 4};
	return vec(u, &t);
}

/* One pass sizes (u->base == NULL), the second uploads. */
static int walk_weights(struct eng_backend *be, const struct eng_weights *w, struct up_ctx *u)
{
	TRY(mat(u, &w->tok_embd, &be->tok_embd));
	TRY(check_vec(&w->output_norm));
	be->output_norm = vec(u, &w->output_norm);
	if (w->output.data == w->tok_embd.data)
		be->output = be->tok_embd;
	else
		TRY(mat(u, &w->output, &be->output));
	be->q8_head = q8(&be->output);
	be->rope_glob.ff = rope_factors(be, w, u);
	for (int l = 0; l < be->cfg.n_layer; l++) {
		const struct eng_layer *s = &w->layers[l];
		struct cuda_layer_w *d = &be->layers[l];
		const struct eng_tensor *vs[] = {&s->attn_norm, &s->ffn_norm, &s->bq, &s->bk, &s->bv,
		                                 &s->q_norm, &s->k_norm, &s->post_attn_norm,
		                                 &s->post_ffn_norm};
		for (size_t i = 0; i < sizeof(vs) / sizeof(vs[0]); i++)
			TRY(check_vec(vs[i]));
		d->attn_norm = vec(u, &s->attn_norm);
		d->ffn_norm = vec(u, &s->ffn_norm);
		d->post_attn_norm = vec(u, &s->post_attn_norm);
		d->post_ffn_norm = vec(u, &s->post_ffn_norm);
		d->swa = s->swa;
		const int D = be->cfg.head_dim, nr = be->cfg.n_rot;
		if (be->rope_perm) {
			d->bq = (const float *)upload_perm(u, &s->bq, D, nr);
			d->bk = (const float *)upload_perm(u, &s->bk, D, nr);
			d->q_norm = (const float *)upload_perm(u, &s->q_norm, D, nr);
			d->k_norm = (const float *)upload_perm(u, &s->k_norm, D, nr);
		} else {
			d->bq = vec(u, &s->bq);
			d->bk = vec(u, &s->bk);
			d->q_norm = vec(u, &s->q_norm);
			d->k_norm = vec(u, &s->k_norm);
		}
		d->bv = vec(u, &s->bv);
		TRY(mat_p(u, &s->wq, &d->wq, be->rope_perm ? D : 0, nr));
		TRY(mat_p(u, &s->wk, &d->wk, be->rope_perm ? D : 0, nr));
		TRY(mat(u, &s->wv, &d->wv));
		TRY(mat(u, &s->wo, &d->wo));
		d->q8_qkv = q8(&d->wq) || q8(&d->wk) || q8(&d->wv);
		d->q8_wo = q8(&d->wo);
		if (s->ffn_gate_inp.data) {
			TRY(layer_moe(u, s, d));
			continue;
		}
		TRY(mat(u, &s->w_gate, &d->gate));
		TRY(mat(u, &s->w_up, &d->up));
		TRY(mat(u, &s->w_down, &d->down));
		d->q8_ffn = q8(&d->gate) || q8(&d->up);
		d->q8_down = q8(&d->down);
		d->glu = d->gate.type == d->up.type && d->gate.K == d->up.K && d->gate.N == d->up.N;
	}
	return u->err;
}

static int upload_weights(struct eng_backend *be, const struct eng_weights *w)
{
	struct up_ctx u = {NULL, 0, 0};
	TRY(walk_weights(be, w, &u));
	be->wbytes = u.off + ALIGN; /* slack: ld_ints_b2 may read 4 bytes past a tensor */
	CUDA_CHECK(cudaMalloc(&be->wbuf, be->wbytes));
	u.base = (uint8_t *)be->wbuf;
	u.off = 0;
	return walk_weights(be, w, &u);
}

// ---- scratch

static void *carve(uint8_t **p, size_t n)
{
	void *r = *p;
	*p += align_up(n);
	return r;
}

/* Carves the mixture-of-experts scratch (sizes[i..], in the order of
 * moe_sizes()). */
static const int N_MOE_SIZES = 9;

static void moe_sizes(const struct eng_backend *be, size_t *z)
{
	const struct eng_config *c = &be->cfg;
	const size_t T = be->p.max_batch_tokens, E = c->n_expert, K = c->n_expert_used;
	const size_t Fe = c->n_ff_exp, C = c->n_embd, Mt = T < CUDA_MMV_MAX_COLS ? T : CUDA_MMV_MAX_COLS;
	const size_t z0[] = {T * E * 4, T * K * 4, T * K * 4, (2 * E + 2) * 4, T * K * 4,
	                     Mt * K * Fe * 4, Mt * K * Fe, Mt * K * (Fe / 32 + 1) * 8,
	                     E ? (T * K * C + T * C) * 4 : 0};
	memcpy(z, z0, sizeof(z0));
}

static void moe_carve(struct eng_backend *be, uint8_t **p, const size_t *z)
{
	const size_t T = be->p.max_batch_tokens, K = be->cfg.n_expert_used;
	int i = 0;
	be->moe_logits = (float *)carve(p, z[i++]);
	be->moe_sel = (int32_t *)carve(p, z[i++]);
	be->moe_wt = (float *)carve(p, z[i++]);
	be->moe_tab = (int32_t *)carve(p, z[i++]);
	be->moe_pairs = (int32_t *)carve(p, z[i++]);
	be->moe_h = (float *)carve(p, z[i++]);
	be->moe_qs = (int8_t *)carve(p, z[i++]);
	be->moe_ds = carve(p, z[i++]);
	be->moe_eo = (float *)carve(p, z[i++]);
	be->moe_xg = be->moe_eo + T * K * be->cfg.n_embd;
}

/* The largest matrix a GEMM dequantises (F16 bytes), at least 16 MiB. */
static size_t w16_bytes(const struct eng_backend *be)
{
	size_t w16 = (size_t)16 << 20;
	for (int l = 0; l < be->cfg.n_layer; l++) {
		const struct cuda_layer_w *L = &be->layers[l];
		const struct cuda_mat *ms[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down,
		                               &L->router, &L->gate_e.m, &L->up_e.m, &L->down_e.m};
		for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++)
			if ((size_t)ms[i]->N * ms[i]->K * 2 > w16)
				w16 = (size_t)ms[i]->N * ms[i]->K * 2;
	}
	return w16;
}

static int alloc_scratch(struct eng_backend *be)
{
	const struct eng_config *c = &be->cfg;
	const int T = be->p.max_batch_tokens, C = c->n_embd, HD = c->n_head * c->head_dim;
	const int F = c->n_ff > c->n_ff_exp ? c->n_ff : c->n_ff_exp; /* dense or expert width */
	const int V = c->n_vocab, M = CUDA_MMV_MAX_COLS, D = c->head_dim;
	const size_t w16 = w16_bytes(be);
	be->ld_qkv = (c->n_head + 2 * c->n_head_kv) * D;
	be->max_k = C > HD ? C : HD;
	be->max_k = be->max_k > F ? be->max_k : F;
	be->logit_rows = T < 64 ? T : 64;
	if (be->logit_rows < be->p.max_seqs)
		be->logit_rows = be->p.max_seqs;
	const int Mt = T < M ? T : M;
	size_t sizes[] = {
		(size_t)T * C * 4, (size_t)T * C * 4, (size_t)T * be->ld_qkv * 4, (size_t)T * HD * 4,
		(size_t)T * F * 4, (size_t)T * F * 4, (size_t)T * F * 4, (size_t)be->logit_rows * V * 4,
		(size_t)M * be->max_k, (size_t)M * (be->max_k / 32 + 1) * 8,
		(size_t)Mt * HD * be->max_split * 4, (size_t)Mt * c->n_head * be->max_split * 8,
		cuda_sample_scratch_bytes(be->p.max_seqs, V), w16, (size_t)T * be->max_k * 2,
		CUBLAS_WS_BYTES, (size_t)M * c->n_head_kv * 4, (size_t)M * (c->n_rot / 2 + 1) * 8,
		(size_t)M * (c->n_rot / 2 + 1) * 8, (size_t)T * C * 4,
	};
	size_t zm[N_MOE_SIZES], total = 0;
	moe_sizes(be, zm);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		total += align_up(sizes[i]);
	for (int i = 0; i < N_MOE_SIZES; i++)
		total += align_up(zm[i]);
	cudaError_t e = cudaMalloc(&be->scratch, total);
	if (e != cudaSuccess) {
		(void)cudaGetLastError();
		LOG_ERR("scratch of %zu MiB does not fit on the device: %s", total >> 20,
		        cudaGetErrorString(e));
		be->scratch = NULL;
		return -ENOMEM;
	}
	be->scratch_bytes = total;
	uint8_t *p = (uint8_t *)be->scratch;
	int i = 0;
	be->x = (float *)carve(&p, sizes[i++]);
	be->xn = (float *)carve(&p, sizes[i++]);
	be->qkv = (float *)carve(&p, sizes[i++]);
	be->attn = (float *)carve(&p, sizes[i++]);
	be->ffn_g = (float *)carve(&p, sizes[i++]);
	be->ffn_u = (float *)carve(&p, sizes[i++]);
	be->ffn_h = (float *)carve(&p, sizes[i++]);
	be->logits = (float *)carve(&p, sizes[i++]);
	be->q8s = (int8_t *)carve(&p, sizes[i++]);
	be->q8d = carve(&p, sizes[i++]);
	be->part_o = (float *)carve(&p, sizes[i++]);
	be->part_ml = carve(&p, sizes[i++]);
	be->samp_scratch = carve(&p, sizes[i++]);
	be->gemm.w16 = carve(&p, sizes[i]);
	be->gemm.w16_bytes = sizes[i++];
	be->gemm.x16 = carve(&p, sizes[i]);
	be->gemm.x16_bytes = sizes[i++];
	void *ws = carve(&p, sizes[i++]);
	be->attn_counters = (int32_t *)carve(&p, sizes[i]);
	CUDA_CHECK(cudaMemset(be->attn_counters, 0, sizes[i++]));
	be->rope_cs = carve(&p, sizes[i++]);
	be->rope_cs_swa = carve(&p, sizes[i++]);
	if (getenv("PROMPTFS_CUDA_NO_ROPE_TABLE") && !strcmp(getenv("PROMPTFS_CUDA_NO_ROPE_TABLE"), "1"))
		be->rope_cs = be->rope_cs_swa = NULL;
	be->tmp = (float *)carve(&p, sizes[i++]);
	moe_carve(be, &p, zm);
	if (cublasSetWorkspace((cublasHandle_t)be->cublas, ws, CUBLAS_WS_BYTES) != CUBLAS_STATUS_SUCCESS) {
		LOG_ERR("cublasSetWorkspace failed");
		return -EIO;
	}
	return 0;
}

static int alloc_meta(struct eng_backend *be)
{
	const size_t T = be->p.max_batch_tokens, S = be->p.max_seqs;
	size_t recent = S * (size_t)(be->p.max_ctx > CUDA_GRAPH_RECENT_CAP ? be->p.max_ctx
	                                                                    : CUDA_GRAPH_RECENT_CAP);
	be->recent_cap = (int)recent;
	/* tok, pos, tok_seq, out_rows, 3 x tiles (<= T each); last_rows; pages, window pages */
	be->meta_cap = S * sizeof(struct cuda_samp) +
	               4 * (8 * T + 2 * S + 2 * S * (size_t)be->page_stride + recent) +
	               S * ENG_SAMPLE_MAX_BIAS * sizeof(struct cuda_bias) + 1024;
	CUDA_CHECK(cudaMallocHost(&be->meta_h, be->meta_cap));
	CUDA_CHECK(cudaMalloc(&be->meta_d, be->meta_cap));
	CUDA_CHECK(cudaMallocHost((void **)&be->tok_h, S * 4));
	CUDA_CHECK(cudaMalloc((void **)&be->tok_d, S * 4));
	CUDA_CHECK(cudaMallocHost((void **)&be->cands_h, S * CUDA_SAMPLE_KMAX * 8));
	CUDA_CHECK(cudaMalloc((void **)&be->cands_d, S * CUDA_SAMPLE_KMAX * 8));
	if (be->cfg.n_expert)
		CUDA_CHECK(cudaMallocHost((void **)&be->moe_host, 4 * (size_t)(2 * be->cfg.n_expert + 2)));
	return 0;
}

int cuda_kv_pool_pages(const struct eng_backend *be, int il)
{
	return be->layers[il].swa && be->p.n_wpages ? be->p.n_wpages : be->p.n_pages;
}

size_t cuda_kv_pool_bytes(const struct eng_backend *be, int il)
{
	const struct eng_config *c = &be->cfg;
	return (size_t)cuda_kv_pool_pages(be, il) * c->n_head_kv * ENG_KV_PAGE * c->head_dim * 2;
}

/* Per layer a K pool then a V pool of its pool's pages, the layers one
 * after another in one allocation. */
static int alloc_kv(struct eng_backend *be)
{
	const struct eng_config *c = &be->cfg;
	be->kv_layer = (uint8_t **)calloc((size_t)c->n_layer, sizeof(*be->kv_layer));
	if (!be->kv_layer)
		return -ENOMEM;
	be->kv_bytes = 0;
	for (int il = 0; il < c->n_layer; il++)
		be->kv_bytes += 2 * cuda_kv_pool_bytes(be, il);
	cudaError_t e = cudaMalloc(&be->kv, be->kv_bytes);
	if (e != cudaSuccess) {
		(void)cudaGetLastError();
		LOG_ERR("KV pool of %d pages + %d window pages (%zu MiB) does not fit on the device: %s",
		        be->p.n_pages, be->p.n_wpages, be->kv_bytes >> 20, cudaGetErrorString(e));
		be->kv = NULL;
		return -ENOMEM;
	}
	size_t off = 0;
	for (int il = 0; il < c->n_layer; il++) {
		be->kv_layer[il] = (uint8_t *)be->kv + off;
		off += 2 * cuda_kv_pool_bytes(be, il);
	}
	return 0;
}

// ---- ops

static void cuda_free_be(struct eng_backend *be)
{
	if (!be)
		return;
	cudaSetDevice(be->dev);
	if (be->prof)
		cuda_backend_profile_report(be, stderr);
	cuda_be_graphs_free(be);
	if (be->st)
		cudaStreamSynchronize(be->st);
	if (be->cublas)
		cublasDestroy((cublasHandle_t)be->cublas);
	for (int i = 0; i < 2; i++)
		if (be->ev[i])
			cudaEventDestroy(be->ev[i]);
	if (be->st)
		cudaStreamDestroy(be->st);
	cudaFree(be->wbuf);
	cudaFree(be->kv);
	free(be->kv_layer);
	cudaFree(be->scratch);
	cudaFree(be->meta_d);
	cudaFree(be->tok_d);
	cudaFreeHost(be->meta_h);
	cudaFreeHost(be->tok_h);
	cudaFreeHost(be->cands_h);
	cudaFree(be->cands_d);
	cudaFreeHost(be->moe_host);
	free(be->host_rows);
	eng_sampler_free(be->host_sampler);
	free(be->layers);
	free(be->graphs);
	free(be);
}

/* The CUDA kernels implement every architecture engine/model.c binds
 * (llama incl. Mixtral-style experts, qwen2, qwen3, qwen3moe, gemma2,
 * gemma3, phi3): sliding windows, soft-caps, post-norms, GELU gates, Q
 * scaling, RoPE scaling and frequency factors, mixtures of up to
 * CUDA_MOE_MAX_E experts.  What they do not is refused here, naming it,
 * rather than run wrongly; with --backend auto the engine then falls back
 * to the CPU.  (Tensor types and expert row lengths are checked at upload.) */
static int check_arch(const struct eng_config *cfg, const struct eng_weights *w)
{
	const char *missing = NULL;
	(void)w;

	if (cfg->arch < 0 || cfg->arch >= ENG_ARCH_COUNT)
		missing = "the architecture";
	else if (cfg->ffn_act != ENG_FFN_ACT_SILU && cfg->ffn_act != ENG_FFN_ACT_GELU)
		missing = "the feed-forward activation";
	else if (cfg->n_expert > CUDA_MOE_MAX_E || cfg->n_expert_used > CUDA_MOE_MAX_K)
		missing = "mixtures of more than 256 experts or more than 32 experts per token";
	else if (cfg->n_swa < 0 || cfg->attn_softcap < 0.0f || cfg->final_softcap < 0.0f)
		missing = "negative windows or soft-caps";
	if (missing) {
		LOG_ERR("the CUDA backend does not implement %s of '%s' models (--backend cpu runs them)",
		        missing, eng_arch_name(cfg->arch));
		return -ENOTSUP;
	}
	return 0;
}

static int check_params(const struct eng_config *cfg, const struct eng_backend_params *p)
{
	if (p->n_pages < 1 || p->max_batch_tokens < 1 || p->max_seqs < 1 || p->max_ctx < 1 ||
	    p->max_seqs > p->max_batch_tokens) {
		LOG_ERR("bad parameters: n_pages=%d max_batch_tokens=%d max_seqs=%d max_ctx=%d",
		        p->n_pages, p->max_batch_tokens, p->max_seqs, p->max_ctx);
		return -EINVAL;
	}
	if (p->n_wpages < 0 || (p->n_wpages > 0 && !(cfg->n_swa > 0 && cfg->n_layer_swa > 0))) {
		LOG_ERR("bad parameters: %d window pages for a model with %d sliding-window layers",
		        p->n_wpages, cfg->n_layer_swa);
		return -EINVAL;
	}
	if (cfg->head_dim > CUDA_ATTN_MAX_D || cfg->head_dim % 2 || cfg->n_head % cfg->n_head_kv) {
		LOG_ERR("unsupported attention shape: head_dim %d, %d heads, %d KV heads",
		        cfg->head_dim, cfg->n_head, cfg->n_head_kv);
		return -EINVAL;
	}
	return 0;
}

static int cuda_init(const struct eng_config *cfg, const struct eng_weights *w,
                     const struct eng_backend_params *p, struct eng_backend **out)
{
	struct eng_backend *be = NULL;
	cudaDeviceProp prop;
	int rc;

	*out = NULL;
	TRY(check_arch(cfg, w));
	TRY(check_params(cfg, p));
	if (cuda_probe() <= p->device || p->device < 0) {
		LOG_ERR("CUDA device %d not present", p->device);
		return -ENODEV;
	}
	be = (struct eng_backend *)calloc(1, sizeof(*be));
	if (!be)
		return -ENOMEM;
	be->cfg = *cfg;
	be->p = *p;
	be->dev = p->device;
	be->layers = (struct cuda_layer_w *)calloc(cfg->n_layer, sizeof(*be->layers));
	be->graphs = (struct cuda_graph_slot *)calloc((size_t)(p->max_seqs + 1) * CUDA_GRAPH_VARIANTS, sizeof(*be->graphs));
	be->host_sampler = eng_sampler_init(cfg->n_vocab);
	rc = -ENOMEM;
	if (!be->layers || !be->graphs || !be->host_sampler)
		goto fail;
	rc = -EIO;
	if (cudaSetDevice(be->dev) != cudaSuccess || cudaGetDeviceProperties(&prop, be->dev) != cudaSuccess) {
		LOG_ERR("cannot open CUDA device %d", be->dev);
		goto fail;
	}
	be->n_sm = prop.multiProcessorCount;
	snprintf(be->name, sizeof(be->name), "%s (cc %d.%d, %d GiB)", prop.name, prop.major, prop.minor,
	         (int)(prop.totalGlobalMem >> 30));
	if (cudaStreamCreateWithFlags(&be->st, cudaStreamNonBlocking) != cudaSuccess ||
	    cudaEventCreate(&be->ev[0]) != cudaSuccess || cudaEventCreate(&be->ev[1]) != cudaSuccess ||
	    cublasCreate((cublasHandle_t *)&be->cublas) != CUBLAS_STATUS_SUCCESS ||
	    cublasSetStream((cublasHandle_t)be->cublas, be->st) != CUBLAS_STATUS_SUCCESS) {
		LOG_ERR("cannot create the stream, events or cuBLAS handle");
		goto fail;
	}
	be->gemm.cublas = be->cublas;
	be->page_stride = cdiv(p->max_ctx, ENG_KV_PAGE);
	be->max_split = cdiv(2 * be->n_sm, cfg->n_head_kv);
	if (be->max_split > 64)
		be->max_split = 64;
	if (be->max_split > be->page_stride)
		be->max_split = be->page_stride;
	be->rope_epi = !(getenv("PROMPTFS_CUDA_NO_ROPE_EPI") && !strcmp(getenv("PROMPTFS_CUDA_NO_ROPE_EPI"), "1"));
	be->rope_perm = be->rope_epi && cfg->rope_type == ENG_ROPE_TYPE_NEOX && cfg->n_rot % 2 == 0;
	be->rope_neox = cfg->rope_type == ENG_ROPE_TYPE_NEOX && !be->rope_perm;
	be->rope_glob = (struct cuda_rope_freq){log2((double)cfg->rope_base), cfg->rope_freq_scale,
	                                        cfg->rope_attn_factor, NULL};
	be->rope_swa = cfg->n_swa ? (struct cuda_rope_freq){log2((double)cfg->rope_base_swa),
	                                                    cfg->rope_freq_scale_swa, 1.0f, NULL}
	                          : be->rope_glob;
	if ((rc = upload_weights(be, w)) || (rc = alloc_kv(be)) || (rc = alloc_scratch(be)) ||
	    (rc = alloc_meta(be)) || (rc = cuda_attn_setup()) || (rc = cuda_sample_setup()) ||
	    (rc = cuda_fused_setup()))
		goto fail;
	be->use_graphs = !(getenv("PROMPTFS_NO_CUDA_GRAPHS") && !strcmp(getenv("PROMPTFS_NO_CUDA_GRAPHS"), "1"));
	if (getenv("PROMPTFS_CUDA_TIMING_SKIP")) {
		/* "qkv,attn,wo,glu,down,head": what costs what inside the graph */
		const char *e = getenv("PROMPTFS_CUDA_TIMING_SKIP");
		static const char *const names[] = {"qkv", "attn", "wo", "glu", "down", "head"};
		for (int i = 0; i < 6; i++)
			if (strstr(e, names[i]))
				be->skip |= 1u << i;
		LOG_WARN("PROMPTFS_CUDA_TIMING_SKIP=%s: decode results are wrong (timing only)", e);
	}
	be->fuse_qkv = !(getenv("PROMPTFS_CUDA_NO_FUSE_QKV") && !strcmp(getenv("PROMPTFS_CUDA_NO_FUSE_QKV"), "1"));
	be->fuse_glu = !(getenv("PROMPTFS_CUDA_NO_FUSE_GLU") && !strcmp(getenv("PROMPTFS_CUDA_NO_FUSE_GLU"), "1"));
	be->cluster = !(getenv("PROMPTFS_CUDA_NO_CLUSTER") && !strcmp(getenv("PROMPTFS_CUDA_NO_CLUSTER"), "1"));
	be->attn_dbg = getenv("PROMPTFS_CUDA_ATTN_DBG") ? atoi(getenv("PROMPTFS_CUDA_ATTN_DBG")) : 0;
	be->attn_min_pages = getenv("PROMPTFS_CUDA_ATTN_MIN_PAGES") ? atoi(getenv("PROMPTFS_CUDA_ATTN_MIN_PAGES")) : 1;
	be->fuse = !(getenv("PROMPTFS_CUDA_NO_FUSE") && !strcmp(getenv("PROMPTFS_CUDA_NO_FUSE"), "1"));
	if (getenv("PROMPTFS_CUDA_PROFILE") && !strcmp(getenv("PROMPTFS_CUDA_PROFILE"), "1"))
		cuda_backend_set_profile(be, true);
	LOG_INFO("%s: weights %zu MiB, KV %zu MiB (%d pages), scratch %zu MiB, graphs %s", be->name,
	         be->wbytes >> 20, be->kv_bytes >> 20, p->n_pages, be->scratch_bytes >> 20,
	         be->use_graphs ? "on" : "off");
	*out = be;
	return 0;
fail:
	cuda_free_be(be);
	return rc;
}

static const char *cuda_device_name(const struct eng_backend *be)
{
	return be->name;
}

static void cuda_memory(const struct eng_backend *be, size_t *weights, size_t *kv, size_t *scratch)
{
	if (weights)
		*weights = be->wbytes;
	if (kv)
		*kv = be->kv_bytes;
	if (scratch)
		*scratch = be->scratch_bytes + 2 * be->meta_cap;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Device-to-device copy of up to 1 GiB, median of 9 after 2 warm-ups;
 * bytes read + written per second.  Buffers are allocated here, not in a
 * hot path. */
static double cuda_mem_bandwidth(struct eng_backend *be)
{
	size_t free_b = 0, total_b = 0, n = (size_t)1 << 30;
	void *a = NULL, *b = NULL;
	double t[9], bw = 0.0;
	cudaSetDevice(be->dev);
	if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess)
		return 0.0;
	while (n > ((size_t)16 << 20) && 2 * n > free_b / 2)
		n /= 2;
	if (cudaMalloc(&a, n) != cudaSuccess || cudaMalloc(&b, n) != cudaSuccess)
		goto out;
	cudaMemsetAsync(a, 1, n, be->st);
	for (int i = 0; i < 11; i++) {
		float ms = 0.0f;
		cudaEventRecord(be->ev[0], be->st);
		cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, be->st);
		cudaEventRecord(be->ev[1], be->st);
		if (cudaEventSynchronize(be->ev[1]) != cudaSuccess ||
		    cudaEventElapsedTime(&ms, be->ev[0], be->ev[1]) != cudaSuccess)
			goto out;
		if (i >= 2)
			t[i - 2] = ms * 1e-3;
	}
	qsort(t, 9, sizeof(double), cmp_double);
	bw = 2.0 * (double)n / t[4];
out:
	(void)cudaGetLastError();
	cudaFree(a);
	cudaFree(b);
	return bw;
}

static int cuda_forward_op(struct eng_backend *be, const struct eng_batch *b, float *logits,
                           const struct eng_sample_req *samp, int32_t *tokens_out)
{
	return cuda_be_forward(be, b, logits, samp, tokens_out);
}

// ---- KV pages: per layer, K then V, P*G*D halves each (the kernels' own
// element order inside a page, e.g. the interleaved RoPE pairs of rope_perm)

static size_t page_chunk_bytes(const struct eng_backend *be)
{
	return (size_t)ENG_KV_PAGE * be->cfg.n_head_kv * be->cfg.head_dim * 2;
}

/* The K (kv 0) or V (kv 1) rows of layer il in page `page` of its pool. */
static uint8_t *page_at(struct eng_backend *be, int il, int kv, int page)
{
	return be->kv_layer[il] + (size_t)kv * cuda_kv_pool_bytes(be, il) + (size_t)page * page_chunk_bytes(be);
}

static bool win_layer(const struct eng_backend *be, int il)
{
	return be->layers[il].swa && be->p.n_wpages;
}

/* The page of layer il: the window page for a sliding-window layer (-1: none). */
static int layer_page(const struct eng_backend *be, int il, int page, int wpage)
{
	return win_layer(be, il) ? wpage : page;
}

static bool pages_ok(const struct eng_backend *be, int page, int wpage)
{
	return eng_kv_pages_ok(&be->p, page, wpage);
}

/* Engine thread, between forward passes: on the backend's stream, so the
 * copy is ordered after the pass that wrote src. */
static int cuda_kv_page_copy(struct eng_backend *be, int dst, int wdst, int src, int wsrc)
{
	cudaError_t e = cudaSuccess;

	if (!pages_ok(be, dst, wdst) || !pages_ok(be, src, wsrc) || (wdst < 0) != (wsrc < 0))
		return -EINVAL;
	cudaSetDevice(be->dev);
	for (int il = 0; il < be->cfg.n_layer && e == cudaSuccess; il++)
		for (int kv = 0; kv < 2 && e == cudaSuccess && layer_page(be, il, dst, wdst) >= 0; kv++)
			e = cudaMemcpyAsync(page_at(be, il, kv, layer_page(be, il, dst, wdst)),
			                    page_at(be, il, kv, layer_page(be, il, src, wsrc)),
			                    page_chunk_bytes(be), cudaMemcpyDeviceToDevice, be->st);
	if (e == cudaSuccess)
		e = cudaStreamSynchronize(be->st);
	if (e != cudaSuccess) {
		LOG_ERR("KV page copy %d -> %d: %s", src, dst, cudaGetErrorString(e));
		return -EIO;
	}
	return 0;
}

/* Any thread: synchronous copies through the legacy stream (the pages
 * touched are never written by a pass in flight). */
static int page_xfer(struct eng_backend *be, int page, int wpage, void *host, bool to_host)
{
	size_t n = page_chunk_bytes(be);
	uint8_t *h = (uint8_t *)host;
	cudaError_t e = cudaSuccess;

	if (!pages_ok(be, page, wpage))
		return -EINVAL;
	cudaSetDevice(be->dev);
	for (int il = 0; il < be->cfg.n_layer && e == cudaSuccess; il++)
		for (int kv = 0; kv < 2 && e == cudaSuccess; kv++, h += n) {
			const int pg = layer_page(be, il, page, wpage);
			if (pg < 0) {
				if (to_host)
					memset(h, 0, n); /* no window page: zeros, nothing written */
				continue;
			}
			e = to_host ? cudaMemcpy(h, page_at(be, il, kv, pg), n, cudaMemcpyDeviceToHost)
			            : cudaMemcpy(page_at(be, il, kv, pg), h, n, cudaMemcpyHostToDevice);
		}
	if (e != cudaSuccess) {
		LOG_ERR("KV page %d %s the host: %s", page, to_host ? "to" : "from", cudaGetErrorString(e));
		return -EIO;
	}
	return 0;
}

static int cuda_kv_page_read(struct eng_backend *be, int page, int wpage, void *dst)
{
	return page_xfer(be, page, wpage, dst, true);
}

static int cuda_kv_page_write(struct eng_backend *be, int page, int wpage, const void *src)
{
	return page_xfer(be, page, wpage, (void *)src, false);
}

static const struct eng_backend_ops cuda_ops = {
	"cuda", cuda_probe, cuda_init, cuda_free_be, cuda_device_name, cuda_memory, cuda_forward_op,
	cuda_mem_bandwidth, cuda_kv_page_copy, cuda_kv_page_read, cuda_kv_page_write,
};

extern "C" const struct eng_backend_ops *cuda_backend_get(void)
{
	return &cuda_ops;
}
