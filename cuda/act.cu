/*
 * act.cu — element-wise ops: the gated activations of the prefill path
 * (SwiGLU silu(gate) * up, GeGLU gelu(gate) * up), bias adds, and gemma's
 * scalings: the embedding x sqrt(C) and logit soft-capping.  In decode the
 * activations are fused into the mat-vec epilogues (mmvq.cu) and the biases
 * into the RoPE pass (rope.cu).
 */
#include "cuda_ops.h"
#include "common.cuh"

static __global__ void glu_kernel(int act, const float *g, const float *u, int ld, int T, int F,
                                  float *y, int ldy)
{
	pdl_enter();
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= (size_t)T * F)
		return;
	int t = (int)(i / F), f = (int)(i % F);
	y[(size_t)t * ldy + f] = glu_act(act, g[(size_t)t * ld + f], u[(size_t)t * ld + f]);
}

extern "C" int cuda_glu(int act, const float *g, const float *u, int ld, int T, int F, float *y,
                        int ldy, cudaStream_t st)
{
	size_t n = (size_t)T * F;
	if (n == 0)
		return 0;
	if (act != CUDA_GLU_SILU && act != CUDA_GLU_GELU) {
		LOG_ERR("unknown gate activation %d", act);
		return -EINVAL;
	}
	launch_k(glu_kernel, (unsigned)((n + 255) / 256), 256, 0, st, act, g, u, ld, T, F, y, ldy);
	CUDA_CHECK_LAUNCH();
	return 0;
}

extern "C" int cuda_swiglu(const float *g, const float *u, int ld, int T, int F, float *y, int ldy,
                           cudaStream_t st)
{
	return cuda_glu(CUDA_GLU_SILU, g, u, ld, T, F, y, ldy, st);
}

static __global__ void add_bias_kernel(float *y, int ldy, int T, int N, const float *b)
{
	pdl_enter();
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= (size_t)T * N)
		return;
	int t = (int)(i / N), n = (int)(i % N);
	y[(size_t)t * ldy + n] += b[n];
}

extern "C" int cuda_add_bias(float *y, int ldy, int T, int N, const float *b, cudaStream_t st)
{
	size_t n = (size_t)T * N;
	if (n == 0)
		return 0;
	launch_k(add_bias_kernel, (unsigned)((n + 255) / 256), 256, 0, st, y, ldy, T, N, b);
	CUDA_CHECK_LAUNCH();
	return 0;
}

/* op 0: x *= s; op 1: x = s * tanh(x / s) */
static __global__ void scale_kernel(float *x, int ldx, int T, int N, float s, int op)
{
	pdl_enter();
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= (size_t)T * N)
		return;
	float *p = x + (size_t)(i / N) * ldx + i % N;
	/* as the CPU: the soft-cap scales by 1/cap, tanh, then by cap */
	*p = op ? tanhf(*p * (1.0f / s)) * s : *p * s;
}

static int scale_op(float *x, int ldx, int T, int N, float s, int op, cudaStream_t st)
{
	size_t n = (size_t)T * N;
	if (n == 0)
		return 0;
	launch_k(scale_kernel, (unsigned)((n + 255) / 256), 256, 0, st, x, ldx, T, N, s, op);
	CUDA_CHECK_LAUNCH();
	return 0;
}

extern "C" int cuda_scale(float *x, int ldx, int T, int N, float s, cudaStream_t st)
{
	return scale_op(x, ldx, T, N, s, 0, st);
}

extern "C" int cuda_softcap(float *x, int ldx, int T, int N, float cap, cudaStream_t st)
{
	if (!(cap > 0.0f)) {
		LOG_ERR("soft-cap %g is not positive", cap);
		return -EINVAL;
	}
	return scale_op(x, ldx, T, N, cap, 1, st);
}
