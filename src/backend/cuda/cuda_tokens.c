/* cuda_tokens.c: the cuda backend's per-position transformer ops, rows of cuda_ops in
 * cuda_backend.c (contracts in dptrain/backend.h, shape rules in op_shape_tokens.c):
 *
 *   layernorm  our kernels (cuda_kernels_tokens.cu); mean and 1/std per position kept in
 *              op->save (2 N H W floats) from forward for backward
 *   linear     cuBLAS on the NCHW tensors: per sample Y_n (OUT, HW) = W (OUT, C) X_n (C, HW), one
 *              strided-batched GEMM over the samples (one plain GEMM when HW == 1, as fc); bias
 *              and its gradient with the per-channel kernels fc uses
 *
 * Every precision works: activations in the backend's storage type, parameters and their
 * gradients float32. As fc does, linear casts W to a per-op 16-bit copy (op->w16) at every
 * forward in the 16-bit modes and backward reuses it; dW comes out of cuBLAS straight in float32.
 *
 * cuBLAS is column-major: a row-major (R, K) matrix is a column-major (K x R) one with leading
 * dimension K, so each product below is written for the transposes. dW needs a sum over the
 * samples of per-sample products, which a strided-batched GEMM cannot do (it writes one output
 * per batch entry), so it is N GEMMs accumulating into dW (beta = 1 after the first).
 */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>

#include "backend/cuda/cuda_internal.h"
#include "dptrain/backend.h"

static const float one = 1.0f, zero = 0.0f;   /* alpha and beta of cuBLAS calls */

static cudaDataType_t blas_type(dpt_precision_t p)
{
    return p == DPT_PREC_BF16 ? CUDA_R_16BF : p == DPT_PREC_FP16 ? CUDA_R_16F : CUDA_R_32F;
}

/* ---- layer norm ------------------------------------------------------------------------------ */
static size_t positions(const dpt_op_t *op)
{
    const dpt_tensor_t *x = &op->d.in[0];
    return (size_t)x->n * x->h * x->w;
}

dpt_status_t dpt__cuda_layernorm_create(dpt_backend_t *be, dpt_op_t *op)
{
    (void)be;
    snprintf(op->info.impl, sizeof op->info.impl, "kernels:%s", dpt_precision_name(op->dt));
    return dpt__cuda_dev_alloc((void **)&op->save, 2 * positions(op) * sizeof(float));
}

/* Statistics are computed and saved in eval mode too (they do not depend on the mode). */
dpt_status_t dpt__cuda_layernorm_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *in = &op->d.in[0];
    const int C = in->c;
    return CU(dpt__cuda_layernorm_fwd_launch(dpt__cuda_fwd_x(op, a, 0), a->y->data, op->dt, a->w,
                                             a->w + C, op->save, op->save + positions(op), in->n,
                                             C, (long)in->h * in->w, op->d.bn_eps,
                                             op->be->stream));
}

dpt_status_t dpt__cuda_layernorm_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *in = &op->d.in[0];
    const int C = in->c;
    const long HW = (long)in->h * in->w;
    const void *x = dpt__cuda_bwd_x(op, a, 0), *dy = dpt__cuda_bwd_dy(a);
    void *dx = dpt__cuda_bwd_dx(op, a, 0);
    const float *mean = op->save, *rstd = op->save + positions(op);
    cudaStream_t s = op->be->stream;
    if (dx)
        DPT_CHECK(CU(dpt__cuda_layernorm_bwd_dx_launch(x, dy, dx, op->dt, a->w, mean, rstd, in->n,
                                                       C, HW, s)));
    if (a->dw)
        DPT_CHECK(CU(dpt__cuda_layernorm_bwd_params_launch(x, dy, op->dt, mean, rstd, a->dw,
                                                           a->dw + C, in->n, C, HW, s)));
    return DPT_OK;
}

/* ---- linear (cuBLAS) ------------------------------------------------------------------------- */
dpt_status_t dpt__cuda_linear_create(dpt_backend_t *be, dpt_op_t *op)
{
    (void)be;
    if (op->dt != DPT_PREC_FP32)
        DPT_CHECK(dpt__cuda_dev_alloc(&op->w16, op->info.n_weights * dpt__cuda_elem_size(op->dt)));
    snprintf(op->info.impl, sizeof op->info.impl, "cublas:%s", dpt_precision_name(op->dt));
    return DPT_OK;
}

/* C = op(A) op(B), column-major m x n x k, on float32 or (16-bit A, B, C of type t) with float32
 * compute; batch > 1: strided batches (stride 0 = the same matrix for every entry). */
static dpt_status_t gemm(dpt_op_t *op, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                         int k, const void *A, int lda, long long sa, const void *B, int ldb,
                         long long sb, void *C, int ldc, long long sc, int batch)
{
    cublasHandle_t h = op->be->cublas;
    if (op->dt == DPT_PREC_FP32)
        return BLAS(cublasSgemmStridedBatched(h, ta, tb, m, n, k, &one, (const float *)A, lda, sa,
                                              (const float *)B, ldb, sb, &zero, (float *)C, ldc,
                                              sc, batch));
    cudaDataType_t t = blas_type(op->dt);
    return BLAS(cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, &one, A, t, lda, sa, B, t, ldb, sb,
                                           &zero, C, t, ldc, sc, batch, CUBLAS_COMPUTE_32F,
                                           CUBLAS_GEMM_DEFAULT));
}

dpt_status_t dpt__cuda_linear_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    dpt_backend_t *be = op->be;
    const dpt_tensor_t *in = &op->d.in[0];
    const int N = in->n, C = in->c, HW = in->h * in->w, OUT = op->d.out_features;
    const void *x = dpt__cuda_fwd_x(op, a, 0), *w = a->w;
    void *y = a->y->data;
    if (op->dt != DPT_PREC_FP32) {
        DPT_CHECK(CU(dpt__cuda_cast_launch(op->w16, op->dt, a->w, DPT_PREC_FP32,
                                           op->info.n_weights, be->stream)));
        w = op->w16;
    }
    if (HW == 1)   /* Y (N, OUT) = X (N, C) W^T: column-major Y^T (OUT x N) = W_cm^T X^T */
        DPT_CHECK(gemm(op, CUBLAS_OP_T, CUBLAS_OP_N, OUT, N, C, w, C, 0, x, C, 0, y, OUT, 0, 1));
    else           /* Y_n (OUT, HW) = W X_n: column-major Y_n^T (HW x OUT) = X_n^T W^T */
        DPT_CHECK(gemm(op, CUBLAS_OP_N, CUBLAS_OP_N, HW, OUT, C, x, HW, (long long)C * HW, w, C,
                       0, y, HW, (long long)OUT * HW, N));
    if (op->d.has_bias)
        DPT_CHECK(CU(dpt__cuda_bias_add_launch(y, op->dt, a->w + op->info.n_weights, N, OUT, HW,
                                               be->stream)));
    return DPT_OK;
}

/* dW (OUT, C) += dY_n (OUT, HW) X_n^T: column-major dW^T (C x OUT) = X_n_cm^T (C x HW) dY_n_cm
 * (HW x OUT), float32 output in every mode; beta 0 for the first sample, 1 after. */
static dpt_status_t linear_dw(dpt_op_t *op, const void *x, const void *dy, float *dw)
{
    const dpt_tensor_t *in = &op->d.in[0];
    const int N = in->n, C = in->c, HW = in->h * in->w, OUT = op->d.out_features;
    cublasHandle_t h = op->be->cublas;
    const size_t es = dpt__cuda_elem_size(op->dt);
    cudaDataType_t t = blas_type(op->dt);
    for (int n = 0; n < N; n++) {
        const char *xn = (const char *)x + (size_t)n * C * HW * es;
        const char *dyn = (const char *)dy + (size_t)n * OUT * HW * es;
        const float *beta = n ? &one : &zero;
        if (op->dt == DPT_PREC_FP32)
            DPT_CHECK(BLAS(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, C, OUT, HW, &one,
                                       (const float *)xn, HW, (const float *)dyn, HW, beta, dw,
                                       C)));
        else
            DPT_CHECK(BLAS(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, C, OUT, HW, &one, xn, t, HW,
                                        dyn, t, HW, beta, dw, CUDA_R_32F, C, CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT)));
    }
    return DPT_OK;
}

dpt_status_t dpt__cuda_linear_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    dpt_backend_t *be = op->be;
    const dpt_tensor_t *in = &op->d.in[0];
    const int N = in->n, C = in->c, HW = in->h * in->w, OUT = op->d.out_features;
    const void *x = dpt__cuda_bwd_x(op, a, 0), *dy = dpt__cuda_bwd_dy(a);
    const void *w = op->dt == DPT_PREC_FP32 ? (const void *)a->w : op->w16;   /* forward's cast */
    void *dx = dpt__cuda_bwd_dx(op, a, 0);
    if (dx) {
        if (HW == 1)   /* dX (N, C) = dY (N, OUT) W: column-major dX^T (C x N) = W_cm dY^T */
            DPT_CHECK(gemm(op, CUBLAS_OP_N, CUBLAS_OP_N, C, N, OUT, w, C, 0, dy, OUT, 0, dx, C, 0,
                           1));
        else           /* dX_n (C, HW) = W^T dY_n: column-major dX_n^T (HW x C) = dY_n^T W */
            DPT_CHECK(gemm(op, CUBLAS_OP_N, CUBLAS_OP_T, HW, C, OUT, dy, HW, (long long)OUT * HW,
                           w, C, 0, dx, HW, (long long)C * HW, N));
    }
    if (!a->dw)
        return DPT_OK;
    if (HW == 1) {   /* dW (OUT, C) = dY^T X: column-major dW^T (C x OUT) = X^T_cm dY_cm^T */
        if (op->dt == DPT_PREC_FP32)
            DPT_CHECK(BLAS(cublasSgemm(be->cublas, CUBLAS_OP_N, CUBLAS_OP_T, C, OUT, N, &one,
                                       (const float *)x, C, (const float *)dy, OUT, &zero, a->dw,
                                       C)));
        else
            DPT_CHECK(BLAS(cublasGemmEx(be->cublas, CUBLAS_OP_N, CUBLAS_OP_T, C, OUT, N, &one, x,
                                        blas_type(op->dt), C, dy, blas_type(op->dt), OUT, &zero,
                                        a->dw, CUDA_R_32F, C, CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT)));
    } else {
        DPT_CHECK(linear_dw(op, x, dy, a->dw));
    }
    if (op->d.has_bias)
        DPT_CHECK(CU(dpt__cuda_channel_sum_launch(dy, op->dt, a->dw + op->info.n_weights, N, OUT,
                                                  HW, be->stream)));
    return DPT_OK;
}
