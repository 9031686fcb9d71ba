/*
 * matmul.c — y = x W^T on the CPU: the hot spot of the CPU backend.
 *
 * Shapes: W has N rows of K elements (GGUF ne[0] = K, ne[1] = N) in any
 * weight type; x is [T][K] f32; y is [T][ldy] f32 with y[t][r] =
 * dot(row r of W, x[t]).
 *
 * Steps:
 *  1. The T activation rows are converted once to the weight type's
 *     vec_dot type (Q8_0, Q8_1, Q8_K, F16, BF16; F32 is used in place) into
 *     the caller's scratch, split over the threads when T is large.
 *  2. Threads take work items from a shared counter (dynamic: a preempted
 *     thread on a busy machine does not stall the others): a chunk of
 *     weight rows times a block of up to T_BLOCK activation rows.  Inside
 *     an item, the tile kernels decode each weight block once for up to
 *     16 activation rows while the item's weight rows sit in L1/L2.
 *     Decode (T=1) is bound by memory bandwidth, prefill by integer
 *     multiply-adds.
 */
#include <stdatomic.h>
#include <string.h>

#include "../../gguf/gguf.h"
#include "../../gguf/log.h"
#include "vecdot_impl.h"

#define SCRATCH_ALIGN 64
#define T_BLOCK 64 /* activation rows per pass over a chunk of weight rows (a
                    * multiple of every kernel's group) */

struct mm_ctx {
	/* weights: N rows of bw bytes */
	const char *w;
	size_t bw;
	int64_t K, N;
	struct cpu_kernel kern;
	/* activations in the kernel's layout: T rows of bx bytes */
	const float *x;
	enum gguf_dtype wtype, vtype;
	char *act;
	size_t bx;
	int T;
	/* output */
	float *y;
	int ldy;
	/* work distribution */
	int64_t chunk;
	_Atomic int64_t next;
};

static inline char *align_up(void *p)
{
	uintptr_t u = (uintptr_t)p;
	return (char *)((u + SCRATCH_ALIGN - 1) & ~(uintptr_t)(SCRATCH_ALIGN - 1));
}

/* Bytes of one activation row in the layout kernel k reads. */
static size_t act_row_bytes(const struct cpu_kernel *k, enum gguf_dtype wtype, int64_t K)
{
	if (k->prep_size)
		return k->prep_size(wtype, K);
	return gguf_row_size(cpu_vec_dot_type(wtype), K);
}

/* Sized for the largest layout of any level, so that switching levels
 * (tests, benchmarks) never overflows a buffer sized earlier. */
size_t cpu_matmul_scratch_size(enum gguf_dtype wtype, int64_t K, int T)
{
	size_t most = gguf_row_size(cpu_vec_dot_type(wtype), K) * (size_t)(T > 0 ? T : 0);
	for (int isa = CPU_ISA_AVX2; isa <= CPU_ISA_AMX; isa++) {
		struct cpu_kernel k = cpu_kernel_get(wtype, (enum cpu_isa)isa);
		size_t rows = (size_t)(T > 0 ? T : 0);
		if (k.group > 1) /* a partial group takes a whole group's bytes */
			rows = (rows + (size_t)k.group - 1) / (size_t)k.group * (size_t)k.group;
		if (act_row_bytes(&k, wtype, K) * rows > most)
			most = act_row_bytes(&k, wtype, K) * rows;
	}
	return most + SCRATCH_ALIGN;
}

static void quant_task(void *arg, int ith, int nth)
{
	struct mm_ctx *c = arg;
	const int t0 = (int)((int64_t)c->T * ith / nth);
	const int t1 = (int)((int64_t)c->T * (ith + 1) / nth);
	for (int t = t0; t < t1; t++) {
		const float *x = c->x + (int64_t)t * c->K;
		char *dst = c->act + (size_t)t * c->bx;
		if (c->kern.prep_group) {
			const int g = c->kern.group, t0 = t / g * g;
			c->kern.prep_group(c->wtype, x, c->act + (size_t)t0 * c->bx, t - t0,
			                   c->T - t0 < g ? c->T - t0 : g, c->K);
		} else if (c->kern.prep)
			c->kern.prep(c->wtype, x, dst, c->K);
		else
			cpu_quantize_act(c->vtype, x, dst, c->K);
	}
}

/* Work items are (block of T_BLOCK activation rows, chunk of weight rows)
 * pairs in activation-block-major order: all threads work on the same
 * activation rows at a time (they stay in L2) while the weights stream
 * through once per activation block. */
static void mm_task(void *arg, int ith, int nth)
{
	struct mm_ctx *c = arg;
	const int64_t n_chunks = (c->N + c->chunk - 1) / c->chunk;
	const int64_t n_items = n_chunks * ((c->T + T_BLOCK - 1) / T_BLOCK);
	(void)ith;
	(void)nth;
	for (;;) {
		const int64_t item = atomic_fetch_add(&c->next, 1);
		if (item >= n_items)
			break;
		const int64_t r0 = (item % n_chunks) * c->chunk;
		const int t0 = (int)(item / n_chunks) * T_BLOCK;
		const int nr = (int)(r0 + c->chunk <= c->N ? c->chunk : c->N - r0);
		const int nt = c->T - t0 < T_BLOCK ? c->T - t0 : T_BLOCK;
		c->kern.tile(c->K, c->w + (size_t)r0 * c->bw, c->bw, nr, c->act + (size_t)t0 * c->bx, c->bx,
		             nt, c->y + (int64_t)t0 * c->ldy + r0, c->ldy);
	}
}

/* Rows per work item: enough items for balance (>= 4 per thread), few
 * enough that the shared counter is not a hot spot, a multiple of 4. */
static int64_t pick_chunk(int64_t N, int T, int nth)
{
	int64_t chunk = T > 1 ? 16 : 32;
	while (chunk > 4 && N / chunk < 4 * nth)
		chunk /= 2;
	return chunk;
}

void cpu_matmul(struct cpu_pool *pool, const struct eng_tensor *w, const float *x, int T,
                float *y, int ldy, void *scratch)
{
	struct mm_ctx c = {0};
	const int nth = cpu_pool_n_threads(pool);

	PF_ASSERT(T >= 0 && ldy >= w->ne[1]);
	if (T == 0 || w->ne[1] == 0)
		return;
	c.w = w->data;
	c.K = w->ne[0];
	c.N = w->ne[1];
	c.bw = gguf_row_size(w->type, c.K);
	c.kern = cpu_kernel_get(w->type, cpu_get_isa());
	c.wtype = w->type;
	PF_ASSERT(c.kern.tile && c.bw > 0);
	c.x = x;
	c.T = T;
	c.y = y;
	c.ldy = ldy;
	c.vtype = cpu_vec_dot_type(w->type);
	if (c.vtype == GGUF_DTYPE_F32 && !c.kern.prep && !c.kern.prep_group) {
		c.act = (char *)x;
		c.bx = (size_t)c.K * sizeof(float);
	} else {
		PF_ASSERT(scratch != NULL);
		c.act = align_up(scratch);
		c.bx = act_row_bytes(&c.kern, c.wtype, c.K);
		if (T >= 4 * nth && nth > 1)
			cpu_pool_run(pool, quant_task, &c);
		else
			quant_task(&c, 0, 1);
	}
	c.chunk = pick_chunk(c.N, T, nth);
	atomic_store(&c.next, 0);
	if (nth > 1 && (c.N > c.chunk || T > T_BLOCK))
		cpu_pool_run(pool, mm_task, &c);
	else
		mm_task(&c, 0, 1);
}
