/*
 * gemm.cu — matrix products of the prefill path through cuBLAS on the
 * tensor cores: the weight matrix is dequantised to F16 (in row chunks
 * that fit the scratch) just before its GEMM, the input rounded to F16, and
 * cublasGemmEx accumulates in F32 (the seed's mixed precision).  F16 and
 * BF16 weights are used in place; F32 weights stay F32 end to end.
 *
 * Row-major y[T][N] = x[T][K] W[N][K]^T is, in cuBLAS's column-major terms,
 * C(N x T) = op(A)(N x K) B(K x T) with A = W as a K x N matrix (lda K)
 * transposed, B = x (ldb = ldx), C = y (ldc = ldy).
 */
#include <cublas_v2.h>

#include "cuda_ops.h"
#include "common.cuh"

#define CUBLAS_CHECK(stmt)                                                                  \
	do {                                                                                \
		cublasStatus_t st_ = (stmt);                                                \
		if (st_ != CUBLAS_STATUS_SUCCESS) {                                         \
			pf_log(PF_LOG_LEVEL_ERROR, __func__, "cuBLAS error %s in %s at %s:%d", \
			       cublasGetStatusString(st_), #stmt, __FILE__, __LINE__);      \
			return -EIO;                                                        \
		}                                                                           \
	} while (0)

static int gemm_ex(cublasHandle_t h, int N, int T, int K, const void *A, cudaDataType at,
                   const void *B, cudaDataType bt, int ldb, float *C, int ldc, bool add)
{
	const float alpha = 1.0f, beta = add ? 1.0f : 0.0f;
	CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, T, K, &alpha, A, at, K, B, bt, ldb,
	                          &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
	return 0;
}

extern "C" int cuda_gemm(const struct cuda_gemm_ws *ws, const struct cuda_mat *w, const float *x,
                         int ldx, int T, float *y, int ldy, bool add, enum cuda_x16_state *x16,
                         cudaStream_t st)
{
	cublasHandle_t h = (cublasHandle_t)ws->cublas;
	const int K = w->K, N = w->N;
	if (T <= 0)
		return 0;
	CUBLAS_CHECK(cublasSetStream(h, st));
	if (w->type == GGUF_DTYPE_F32)
		return gemm_ex(h, N, T, K, w->d, CUDA_R_32F, x, CUDA_R_32F, ldx, y, ldy, add);

	const bool bf16 = w->type == GGUF_DTYPE_BF16;
	const enum cuda_x16_state want = bf16 ? CUDA_X16_BF16 : CUDA_X16_F16;
	if ((size_t)T * K * 2 > ws->x16_bytes) {
		LOG_ERR("GEMM input %d x %d exceeds the scratch (%zu bytes)", T, K, ws->x16_bytes);
		return -EINVAL;
	}
	if (*x16 != want) {
		TRY(cuda_f32_to_f16(x, ldx, T, K, ws->x16, bf16, st));
		*x16 = want;
	}
	if (w->type == GGUF_DTYPE_F16 || bf16)
		return gemm_ex(h, N, T, K, w->d, bf16 ? CUDA_R_16BF : CUDA_R_16F, ws->x16,
		               bf16 ? CUDA_R_16BF : CUDA_R_16F, K, y, ldy, add);

	const int chunk = (int)(ws->w16_bytes / ((size_t)K * 2));
	if (chunk < 1) {
		LOG_ERR("weight scratch (%zu bytes) too small for rows of %d", ws->w16_bytes, K);
		return -EINVAL;
	}
	for (int r0 = 0; r0 < N; r0 += chunk) {
		const int nr = N - r0 < chunk ? N - r0 : chunk;
		TRY(cuda_dequant_f16(w, r0, nr, ws->w16, st));
		TRY(gemm_ex(h, nr, T, K, ws->w16, CUDA_R_16F, ws->x16, CUDA_R_16F, K, y + r0, ldy, add));
	}
	return 0;
}
