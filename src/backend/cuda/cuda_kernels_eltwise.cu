/* cuda_kernels_eltwise.cu: the cuda backend's elementwise and pooling kernels (what cuDNN/cuBLAS
 * do not do for it): storage-type casts, bias add, ReLU/CELU/scale/add and SiLU/GELU/sigmoid
 * forward and backward, max pooling and global average pooling, each with an extern "C" launcher
 * declared in cuda_internal.h. Sits between the C side of the backend (cuda_backend.c and its op
 * files, which own the buffers and the stream) and the device. The per-channel reductions (bias
 * gradient, batch norm) and the loss are in cuda_kernels_reduce.cu.
 *
 * Kernels are deliberately simple (grid-stride elementwise loops): correctness against the ref
 * backend first. Nothing here allocates; no atomics, so every result is deterministic.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "backend/cuda/cuda_internal.h"
#include "backend/cuda/cuda_kernels.cuh"

namespace {

/* ---- smooth activations ---------------------------------------------------------------------- *
 * float32 whatever the storage type. The logistic takes expf of -|v| only, so it never
 * overflows; the erf-form GELU uses erfcf, which (unlike 1 + erff) does not cancel for v << 0. */
__device__ __forceinline__ float logistic(float v)
{
    float e = expf(-fabsf(v));
    return v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

constexpr float kSqrt1_2 = 0.70710678118654752f;    /* 1 / sqrt(2) */
constexpr float kRsqrt2Pi = 0.39894228040143268f;   /* 1 / sqrt(2 pi) */
constexpr float kSqrt2_Pi = 0.79788456080286536f;   /* sqrt(2 / pi) */
constexpr float kGeluC = 0.044715f;                 /* the tanh form's cubic coefficient */

__device__ __forceinline__ float gelu_tanh_t(float v)
{
    return tanhf(kSqrt2_Pi * (v + kGeluC * v * v * v));
}

/* ---- kernels --------------------------------------------------------------------------------- */
template <typename TO, typename TI>
__global__ void cast_kernel(TO *dst, const TI *src, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = from_f<TO>(to_f(src[i]));
}

template <typename T, typename I>
__global__ void bias_add_kernel(T *y, const float *b, int C, long HW, I n)
{
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
        int c = (int)((i / (I)HW) % (I)C);
        y[i] = from_f<T>(to_f(y[i]) + b[c]);
    }
}

template <typename T>
__global__ void eltwise_fwd_kernel(int kind, const T *x0, const T *x1, T *y, size_t n,
                                   float alpha)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = to_f(x0[i]), r;
        switch (kind) {
        case DPT__CU_RELU: r = v > 0.0f ? v : 0.0f; break;
        case DPT__CU_CELU: r = v > 0.0f ? v : alpha * expm1f(v / alpha); break;
        case DPT__CU_SCALE: r = alpha * v; break;
        case DPT__CU_SILU: r = v * logistic(v); break;
        case DPT__CU_GELU_ERF: r = 0.5f * v * erfcf(-v * kSqrt1_2); break;
        case DPT__CU_GELU_TANH: r = 0.5f * v * (1.0f + gelu_tanh_t(v)); break;
        case DPT__CU_SIGMOID: r = logistic(v); break;
        default: r = v + to_f(x1[i]); break;
        }
        y[i] = from_f<T>(r);
    }
}

template <typename T>
__global__ void eltwise_bwd_kernel(int kind, const T *x, const T *y, const T *dy, T *dx, size_t n,
                                   float alpha)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float g = to_f(dy[i]), r;
        switch (kind) {
        case DPT__CU_RELU: r = to_f(y[i]) > 0.0f ? g : 0.0f; break;
        case DPT__CU_CELU: {
            float v = to_f(x[i]);
            r = v > 0.0f ? g : g * expf(v / alpha);
            break;
        }
        case DPT__CU_SILU: {   /* s + x s (1 - s) */
            float v = to_f(x[i]), sg = logistic(v);
            r = g * (sg + v * sg * (1.0f - sg));
            break;
        }
        case DPT__CU_GELU_ERF: {   /* Phi(x) + x phi(x) */
            float v = to_f(x[i]);
            r = g * (0.5f * erfcf(-v * kSqrt1_2) + v * kRsqrt2Pi * expf(-0.5f * v * v));
            break;
        }
        case DPT__CU_GELU_TANH: {
            float v = to_f(x[i]), t = gelu_tanh_t(v);
            r = g * (0.5f * (1.0f + t) +
                     0.5f * v * (1.0f - t * t) * kSqrt2_Pi * (1.0f + 3.0f * kGeluC * v * v));
            break;
        }
        case DPT__CU_SIGMOID: {   /* from y: s (1 - s) */
            float sg = to_f(y[i]);
            r = g * sg * (1.0f - sg);
            break;
        }
        default: r = alpha * g; break;
        }
        dx[i] = from_f<T>(r);
    }
}

template <typename T>
__global__ void maxpool_fwd_kernel(const T *x, T *y, int32_t *argmax, int H, int W, int K,
                                   int stride, int pad, int OH, int OW, size_t n)
{
    for (size_t o = blockIdx.x * (size_t)blockDim.x + threadIdx.x; o < n;
         o += (size_t)gridDim.x * blockDim.x) {
        int ow = (int)(o % (size_t)OW), oh = (int)((o / (size_t)OW) % (size_t)OH);
        size_t nc = o / ((size_t)OW * OH);
        const T *plane = x + nc * (size_t)H * W;
        float best = 0.0f;
        int32_t at = -1;
        for (int i = 0; i < K; i++) {
            int ih = oh * stride - pad + i;
            if (ih < 0 || ih >= H)
                continue;
            for (int j = 0; j < K; j++) {
                int iw = ow * stride - pad + j;
                if (iw < 0 || iw >= W)
                    continue;
                float v = to_f(plane[(size_t)ih * W + iw]);
                if (at < 0 || v > best) {
                    best = v;
                    at = ih * W + iw;
                }
            }
        }
        y[o] = from_f<T>(best);
        argmax[o] = at;
    }
}

/* Windows containing input row ih: oh*stride - pad <= ih <= oh*stride - pad + K - 1. */
template <typename T>
__global__ void maxpool_bwd_kernel(const int32_t *argmax, const T *dy, T *dx, int H, int W, int K,
                                   int stride, int pad, int OH, int OW, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        int iw = (int)(i % (size_t)W), ih = (int)((i / (size_t)W) % (size_t)H);
        size_t nc = i / ((size_t)W * H);
        int me = ih * W + iw;
        /* smallest oh with oh*stride >= ih + pad - K + 1, largest with oh*stride <= ih + pad */
        int lo_h = ih + pad - K + 1, lo_w = iw + pad - K + 1;
        int oh0 = lo_h <= 0 ? 0 : (lo_h + stride - 1) / stride;
        int ow0 = lo_w <= 0 ? 0 : (lo_w + stride - 1) / stride;
        int oh1 = min((ih + pad) / stride, OH - 1), ow1 = min((iw + pad) / stride, OW - 1);
        float acc = 0.0f;
        for (int oh = oh0; oh <= oh1; oh++)
            for (int ow = ow0; ow <= ow1; ow++) {
                size_t o = (nc * OH + oh) * (size_t)OW + ow;
                if (argmax[o] == me)
                    acc += to_f(dy[o]);
            }
        dx[i] = from_f<T>(acc);
    }
}

/* One thread per (n, c) plane. */
template <typename T>
__global__ void gap_fwd_kernel(const T *x, T *y, long HW, size_t nc)
{
    for (size_t p = blockIdx.x * (size_t)blockDim.x + threadIdx.x; p < nc;
         p += (size_t)gridDim.x * blockDim.x) {
        double s = 0;
        for (long i = 0; i < HW; i++)
            s += to_f(x[p * (size_t)HW + i]);
        y[p] = from_f<T>((float)(s / (double)HW));
    }
}

template <typename T, typename I>
__global__ void gap_bwd_kernel(const T *dy, T *dx, long HW, I n)
{
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x)
        dx[i] = from_f<T>(to_f(dy[i / (I)HW]) / (float)HW);
}

/* ---- launchers ------------------------------------------------------------------------------- */

template <typename TO>
void cast_from(void *dst, const void *src, dpt_precision_t st, size_t n, cudaStream_t s)
{
    unsigned g = blocks_for(n);
    switch (st) {
    case DPT_PREC_BF16:
        cast_kernel<<<g, kThreads, 0, s>>>((TO *)dst, (const __nv_bfloat16 *)src, n);
        break;
    case DPT_PREC_FP16:
        cast_kernel<<<g, kThreads, 0, s>>>((TO *)dst, (const __half *)src, n);
        break;
    default:
        cast_kernel<<<g, kThreads, 0, s>>>((TO *)dst, (const float *)src, n);
        break;
    }
}

template <typename T>
void bias_add(void *y, const float *b, int N, int C, long HW, cudaStream_t s)
{
    size_t n = (size_t)N * C * HW;
    if (small_index(n))
        bias_add_kernel<<<blocks_for(n), kThreads, 0, s>>>((T *)y, b, C, HW, (unsigned)n);
    else
        bias_add_kernel<<<blocks_for(n), kThreads, 0, s>>>((T *)y, b, C, HW, n);
}

template <typename T>
void eltwise_fwd(int kind, const void *x0, const void *x1, void *y, size_t n, float alpha,
                 cudaStream_t s)
{
    eltwise_fwd_kernel<<<blocks_for(n), kThreads, 0, s>>>(kind, (const T *)x0, (const T *)x1,
                                                          (T *)y, n, alpha);
}

template <typename T>
void eltwise_bwd(int kind, const void *x, const void *y, const void *dy, void *dx, size_t n,
                 float alpha, cudaStream_t s)
{
    eltwise_bwd_kernel<<<blocks_for(n), kThreads, 0, s>>>(kind, (const T *)x, (const T *)y,
                                                          (const T *)dy, (T *)dx, n, alpha);
}

template <typename T>
void maxpool_fwd(const void *x, void *y, int32_t *am, int N, int C, int H, int W, int K,
                 int stride, int pad, int OH, int OW, cudaStream_t s)
{
    size_t n = (size_t)N * C * OH * OW;
    maxpool_fwd_kernel<<<blocks_for(n), kThreads, 0, s>>>((const T *)x, (T *)y, am, H, W, K,
                                                          stride, pad, OH, OW, n);
}

template <typename T>
void maxpool_bwd(const int32_t *am, const void *dy, void *dx, int N, int C, int H, int W, int K,
                 int stride, int pad, int OH, int OW, cudaStream_t s)
{
    size_t n = (size_t)N * C * H * W;
    maxpool_bwd_kernel<<<blocks_for(n), kThreads, 0, s>>>(am, (const T *)dy, (T *)dx, H, W, K,
                                                          stride, pad, OH, OW, n);
}

template <typename T>
void gap_fwd(const void *x, void *y, int N, int C, long HW, cudaStream_t s)
{
    size_t nc = (size_t)N * C;
    gap_fwd_kernel<<<blocks_for(nc), kThreads, 0, s>>>((const T *)x, (T *)y, HW, nc);
}

template <typename T>
void gap_bwd(const void *dy, void *dx, int N, int C, long HW, cudaStream_t s)
{
    size_t n = (size_t)N * C * HW;
    if (small_index(n))
        gap_bwd_kernel<<<blocks_for(n), kThreads, 0, s>>>((const T *)dy, (T *)dx, HW, (unsigned)n);
    else
        gap_bwd_kernel<<<blocks_for(n), kThreads, 0, s>>>((const T *)dy, (T *)dx, HW, n);
}

}  // namespace

extern "C" {

cudaError_t dpt__cuda_cast_launch(void *dst, dpt_precision_t dt, const void *src,
                                  dpt_precision_t st, size_t n, cudaStream_t s)
{
    if (!n)
        return cudaSuccess;
    DPT_CU_DISPATCH(dt, cast_from, dst, src, st, n, s);
    return cudaGetLastError();
}

cudaError_t dpt__cuda_bias_add_launch(void *y, dpt_precision_t t, const float *b, int N, int C,
                                      long HW, cudaStream_t s)
{
    if ((size_t)N * C * HW == 0)
        return cudaSuccess;
    DPT_CU_DISPATCH(t, bias_add, y, b, N, C, HW, s);
    return cudaGetLastError();
}

cudaError_t dpt__cuda_eltwise_fwd_launch(int kind, const void *x0, const void *x1, void *y,
                                         dpt_precision_t t, size_t n, float alpha,
                                         cudaStream_t s)
{
    if (!n)
        return cudaSuccess;
    DPT_CU_DISPATCH(t, eltwise_fwd, kind, x0, x1, y, n, alpha, s);
    return cudaGetLastError();
}

cudaError_t dpt__cuda_eltwise_bwd_launch(int kind, const void *x, const void *y, const void *dy,
                                         void *dx, dpt_precision_t t, size_t n, float alpha,
                                         cudaStream_t s)
{
    if (!n)
        return cudaSuccess;
    DPT_CU_DISPATCH(t, eltwise_bwd, kind, x, y, dy, dx, n, alpha, s);
    return cudaGetLastError();
}

cudaError_t dpt__cuda_maxpool_fwd_launch(const void *x, void *y, dpt_precision_t t,
                                         int32_t *argmax, int N, int C, int H, int W, int K,
                                         int stride, int pad, int OH, int OW, cudaStream_t s)
{
    if ((size_t)N * C * OH * OW == 0)
        return cudaSuccess;
    DPT_CU_DISPATCH(t, maxpool_fwd, x, y, argmax, N, C, H, W, K, stride, pad, OH, OW, s);
    return cudaGetLastError();
}

cudaError_t dpt__cuda_maxpool_bwd_launch(const int32_t *argmax, const void *dy, void *dx,
                                         dpt_precision_t t, int N, int C, int H, int W, int K,
                                         int stride, int pad, int OH, int OW, cudaStream_t s)
{
    if ((size_t)N * C * H * W == 0)
        return cudaSuccess;
    DPT_CU_DISPATCH(t, maxpool_bwd, argmax, dy, dx, N, C, H, W, K, stride, pad, OH, OW, s);
    return cudaGetLastError();
}

cudaError_t dpt__cuda_gap_fwd_launch(const void *x, void *y, dpt_precision_t t, int N, int C,
                                     long HW, cudaStream_t s)
{
    if ((size_t)N * C == 0 || HW <= 0)
        return cudaSuccess;
    DPT_CU_DISPATCH(t, gap_fwd, x, y, N, C, HW, s);
    return cudaGetLastError();
}

cudaError_t dpt__cuda_gap_bwd_launch(const void *dy, void *dx, dpt_precision_t t, int N, int C,
                                     long HW, cudaStream_t s)
{
    if ((size_t)N * C * HW == 0)
        return cudaSuccess;
    DPT_CU_DISPATCH(t, gap_bwd, dy, dx, N, C, HW, s);
    return cudaGetLastError();
}

}  // extern "C"
