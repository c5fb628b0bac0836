/* cuda_attention.c: the cuda backend's multi-head self-attention core (DPT_OP_ATTENTION; the
 * contract is in dptrain/backend.h), a row of cuda_ops in cuda_backend.c. No parameters.
 *
 * Tokens are plain NCHW here, so for sample n the q, k and v of head h are column-major (T x dh)
 * matrices with leading dimension T (element (t, c) at c T + t) at channel offsets h dh,
 * D + h dh and 2D + h dh, the heads dh T elements apart: one cublasGemmStridedBatchedEx per
 * sample and product covers all heads. The probabilities of (n, h) are kept as the column-major
 * (T x T) matrix P^T (element (j, i) at i T + j: query i's row of P contiguous, as the ref
 * backend stores it), which the softmax kernels (cuda_kernels_attention.cu) walk row by row.
 * With scale = 1 / sqrt(dh), per sample over the heads:
 *   forward   P^T = scale K Q^T (float32), softmax of each row, Y = (P^T)^T V
 *   backward  dP^T = V dY^T (float32), dV = P^T dY, dS = P (dP - rowsum(dP P)),
 *             dQ = scale (dS^T)^T K, dK = scale dS^T Q
 * Scores, probabilities and their gradients are float32 in every mode (they are what the
 * softmax reduces over); in the 16-bit modes the products take A and B in the storage type, so
 * the kernels also write P and dS in it. op->save, allocated once at create, holds
 * P (float32) | dP (float32) | P in type dt | dS in type dt (the last two only in 16-bit
 * modes), N * heads * T * T elements each. Every forward writes P, the backward that follows it
 * in training reads it. dx is written whole (beta = 0: the heads' q, k, v blocks cover all 3D
 * channels), as backend.h asks. */
#include <cublas_v2.h>
#include <math.h>
#include <stdio.h>

#include "backend/cuda/cuda_internal.h"

static cudaDataType_t type_of(dpt_precision_t p)
{
    return p == DPT_PREC_BF16 ? CUDA_R_16BF : p == DPT_PREC_FP16 ? CUDA_R_16F : CUDA_R_32F;
}

/* The shape of an op: N samples, D channels per q/k/v, T tokens, H heads of dh channels. */
typedef struct shape {
    int N, D, T, H, dh;
    size_t nhtt;   /* N * H * T * T */
    float scale;
} shape_t;

static shape_t shape_of(const dpt_op_t *op)
{
    const dpt_tensor_t *x = &op->d.in[0];
    shape_t s = {.N = x->n, .D = x->c / 3, .T = x->w, .H = op->d.heads};
    s.dh = s.D / s.H;
    s.nhtt = (size_t)s.N * s.H * s.T * s.T;
    s.scale = (float)(1.0 / sqrt((double)s.dh));
    return s;
}

/* The four regions of op->save. */
typedef struct bufs {
    float *p, *dp;
    void *p16, *ds16;   /* NULL in fp32 mode */
} bufs_t;

static bufs_t bufs_of(const dpt_op_t *op, const shape_t *s)
{
    bufs_t b = {.p = op->save, .dp = op->save + s->nhtt};
    if (op->dt != DPT_PREC_FP32) {
        b.p16 = op->save + 2 * s->nhtt;
        b.ds16 = (char *)b.p16 + s->nhtt * dpt__cuda_elem_size(op->dt);
    }
    return b;
}

dpt_status_t dpt__cuda_attention_create(dpt_backend_t *be, dpt_op_t *op)
{
    (void)be;
    shape_t s = shape_of(op);
    size_t nbytes = 2 * s.nhtt * sizeof(float);
    if (op->dt != DPT_PREC_FP32)
        nbytes += 2 * s.nhtt * dpt__cuda_elem_size(op->dt);
    DPT_CHECK(dpt__cuda_dev_alloc((void **)&op->save, nbytes));
    snprintf(op->info.impl, sizeof op->info.impl, "cublas:%s", dpt_precision_name(op->dt));
    return DPT_OK;
}

/* Element `off` of an array of elements of es bytes. */
static const void *at(const void *p, size_t off, size_t es) { return (const char *)p + off * es; }
static void *atw(void *p, size_t off, size_t es) { return (char *)p + off * es; }

/* C = alpha op(A) op(B) for the H heads of one sample; every matrix has leading dimension T
 * (column-major, T rows); strides in elements. */
static dpt_status_t gemm_heads(dpt_backend_t *be, const shape_t *s, cublasOperation_t ta,
                               cublasOperation_t tb, int m, int n, int k, float alpha,
                               const void *A, cudaDataType_t at_, long long sa, const void *B,
                               cudaDataType_t bt, long long sb, void *C, cudaDataType_t ct,
                               long long sc)
{
    const float beta = 0.0f;
    return BLAS(cublasGemmStridedBatchedEx(be->cublas, ta, tb, m, n, k, &alpha, A, at_, s->T, sa,
                                           B, bt, s->T, sb, &beta, C, ct, s->T, sc, s->H,
                                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

dpt_status_t dpt__cuda_attention_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    dpt_backend_t *be = op->be;
    const shape_t s = shape_of(op);
    const bufs_t b = bufs_of(op, &s);
    const void *x = dpt__cuda_fwd_x(op, a, 0);
    void *y = a->y->data;
    const size_t es = dpt__cuda_elem_size(op->dt), T = (size_t)s.T, D = (size_t)s.D;
    const cudaDataType_t t = type_of(op->dt);
    const long long sh = (long long)s.dh * s.T, stt = (long long)s.T * s.T;
    for (int n = 0; n < s.N; n++) {   /* P^T = scale K Q^T */
        const size_t xn = (size_t)n * 3 * D * T;
        DPT_CHECK(gemm_heads(be, &s, CUBLAS_OP_N, CUBLAS_OP_T, s.T, s.T, s.dh, s.scale,
                             at(x, xn + D * T, es), t, sh, at(x, xn, es), t, sh,
                             b.p + (size_t)n * s.H * stt, CUDA_R_32F, stt));
    }
    DPT_CHECK(CU(dpt__cuda_attn_softmax_fwd_launch(b.p, b.p16, op->dt, (long)s.N * s.H * s.T,
                                                    s.T, be->stream)));
    const void *p = op->dt == DPT_PREC_FP32 ? (const void *)b.p : b.p16;
    for (int n = 0; n < s.N; n++) {   /* Y = (P^T)^T V */
        const size_t xn = (size_t)n * 3 * D * T;
        DPT_CHECK(gemm_heads(be, &s, CUBLAS_OP_T, CUBLAS_OP_N, s.T, s.dh, s.T, 1.0f,
                             at(p, (size_t)n * s.H * stt, es), t, stt, at(x, xn + 2 * D * T, es),
                             t, sh, atw(y, (size_t)n * D * T, es), t, sh));
    }
    return DPT_OK;
}

dpt_status_t dpt__cuda_attention_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    void *dx = dpt__cuda_bwd_dx(op, a, 0);
    if (!dx)
        return DPT_OK;   /* no parameters: nothing else to compute */
    dpt_backend_t *be = op->be;
    const shape_t s = shape_of(op);
    const bufs_t b = bufs_of(op, &s);
    const void *x = dpt__cuda_bwd_x(op, a, 0), *dy = dpt__cuda_bwd_dy(a);
    const size_t es = dpt__cuda_elem_size(op->dt), T = (size_t)s.T, D = (size_t)s.D;
    const cudaDataType_t t = type_of(op->dt);
    const long long sh = (long long)s.dh * s.T, stt = (long long)s.T * s.T;
    const int f32 = op->dt == DPT_PREC_FP32;
    const void *p = f32 ? (const void *)b.p : b.p16, *ds = f32 ? (const void *)b.dp : b.ds16;
    for (int n = 0; n < s.N; n++) {
        const size_t xn = (size_t)n * 3 * D * T, yn = (size_t)n * D * T;
        const size_t pn = (size_t)n * s.H * stt;
        /* dP^T = V dY^T (float32) */
        DPT_CHECK(gemm_heads(be, &s, CUBLAS_OP_N, CUBLAS_OP_T, s.T, s.T, s.dh, 1.0f,
                             at(x, xn + 2 * D * T, es), t, sh, at(dy, yn, es), t, sh, b.dp + pn,
                             CUDA_R_32F, stt));
        /* dV = P^T dY */
        DPT_CHECK(gemm_heads(be, &s, CUBLAS_OP_N, CUBLAS_OP_N, s.T, s.dh, s.T, 1.0f,
                             at(p, pn, es), t, stt, at(dy, yn, es), t, sh,
                             atw(dx, xn + 2 * D * T, es), t, sh));
    }
    DPT_CHECK(CU(dpt__cuda_attn_softmax_bwd_launch(b.p, b.dp, b.ds16, op->dt,
                                                    (long)s.N * s.H * s.T, s.T, be->stream)));
    for (int n = 0; n < s.N; n++) {
        const size_t xn = (size_t)n * 3 * D * T, pn = (size_t)n * s.H * stt;
        /* dQ = scale (dS^T)^T K */
        DPT_CHECK(gemm_heads(be, &s, CUBLAS_OP_T, CUBLAS_OP_N, s.T, s.dh, s.T, s.scale,
                             at(ds, pn, es), t, stt, at(x, xn + D * T, es), t, sh,
                             atw(dx, xn, es), t, sh));
        /* dK = scale dS^T Q */
        DPT_CHECK(gemm_heads(be, &s, CUBLAS_OP_N, CUBLAS_OP_N, s.T, s.dh, s.T, s.scale,
                             at(ds, pn, es), t, stt, at(x, xn, es), t, sh,
                             atw(dx, xn + D * T, es), t, sh));
    }
    return DPT_OK;
}
