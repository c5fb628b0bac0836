/* cuda_kernels_reduce.cu: the cuda backend's reduction kernels: bias gradients (channel_sum),
 * batch norm (statistics, apply, backward) and the softmax cross-entropy loss, each with an
 * extern "C" launcher declared in cuda_internal.h. Sits between the C side of the backend
 * (cuda_backend.c and its op files, which own the buffers and the stream) and the device. The
 * elementwise and pooling kernels are in cuda_kernels_eltwise.cu.
 *
 * Kernels are deliberately simple (split per-channel reductions, one warp per sample for the
 * loss): correctness against the ref backend first. Every reduction accumulates in float64.
 * Nothing here allocates; no atomics, so every result is deterministic.
 *
 * Per-channel reductions (batch norm), NCHW (element (n, c, i) at (n*C + c)*HW + i):
 *
 *   grid (S, C): block (s, c) takes images [N*s/S, N*(s+1)/S) of channel c
 *                threads stride over each plane (or own one position of every k-th image when
 *                the plane is smaller than the block: no division per element)
 *                warp shuffle -> shared[32] -> warp 0 -> part[(c*S + s)*2 + {0,1}] (float64)
 *   final:       one thread per channel adds its S partials in order
 *
 * Bias gradients (channel_sum) still use one block per channel: they are rare next to BN.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "backend/cuda/cuda_internal.h"
#include "backend/cuda/cuda_kernels.cuh"

namespace {

/* Sum of v over the block (blockDim.x a multiple of 32, at most 1024), returned to every thread.
 * sh: 32 elements of shared memory; safe to call several times in a row. */
__device__ double block_sum(double v, double *sh)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_down_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();   /* sh[0] of a previous call has been read by everyone */
    if (lane == 0)
        sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        double r = lane < (int)(blockDim.x >> 5) ? sh[lane] : 0.0;
        for (int o = 16; o > 0; o >>= 1)
            r += __shfl_down_sync(0xffffffffu, r, o);
        if (lane == 0)
            sh[0] = r;
    }
    __syncthreads();
    return sh[0];
}

/* ---- kernels --------------------------------------------------------------------------------- */
/* Element k (0 <= k < N*HW) of channel c. */
__device__ __forceinline__ size_t chan_index(long k, int c, int C, long HW)
{
    long n = k / HW, i = k - n * HW;
    return ((size_t)n * C + c) * (size_t)HW + (size_t)i;
}

template <typename T>
__global__ void channel_sum_kernel(const T *x, float *out, int N, int C, long HW)
{
    __shared__ double sh[32];
    int c = blockIdx.x;
    long M = (long)N * HW;
    double s = 0;
    for (long k = threadIdx.x; k < M; k += blockDim.x)
        s += to_f(x[chan_index(k, c, C, HW)]);
    s = block_sum(s, sh);
    if (threadIdx.x == 0)
        out[c] = (float)s;
}

/* Visits the elements of channel c in images [n0, n1) without a division per element: with
 * HW >= blockDim each thread strides through a plane; with smaller planes thread t owns position
 * t % HW of every (blockDim / HW)-th image. f(plane, i) is called once per element. */
template <typename T, typename F>
__device__ __forceinline__ void for_channel(const T *x, int c, int C, long HW, int n0, int n1,
                                            F f)
{
    if (HW >= (long)blockDim.x) {
        for (int n = n0; n < n1; n++) {
            const T *p = x + ((size_t)n * C + c) * (size_t)HW;
            for (long i = threadIdx.x; i < HW; i += blockDim.x)
                f(p, i);
        }
    } else {
        int per = (int)(blockDim.x / HW), tn = (int)(threadIdx.x / HW);
        long ti = (long)threadIdx.x - (long)tn * HW;
        if (tn < per)
            for (int n = n0 + tn; n < n1; n += per)
                f(x + ((size_t)n * C + c) * (size_t)HW, ti);
    }
}

/* Images [n0, n1) of split s out of S. */
__device__ __forceinline__ void split_range(int N, int S, int s, int *n0, int *n1)
{
    *n0 = (int)((long)N * s / S);
    *n1 = (int)((long)N * (s + 1) / S);
}

/* Block (s, c): sum and sum of squares of channel c over its images, into part[(c*S + s)*2]. */
template <typename T>
__global__ void bn_stats_part_kernel(const T *x, double *part, int N, int C, long HW)
{
    __shared__ double sh[32];
    int s = blockIdx.x, S = gridDim.x, c = blockIdx.y, n0, n1;
    split_range(N, S, s, &n0, &n1);
    double sum = 0, sq = 0;
    for_channel(x, c, C, HW, n0, n1, [&](const T *p, long i) {
        double v = to_f(p[i]);
        sum += v;
        sq += v * v;
    });
    sum = block_sum(sum, sh);
    sq = block_sum(sq, sh);
    if (threadIdx.x == 0) {
        part[((size_t)c * S + s) * 2] = sum;
        part[((size_t)c * S + s) * 2 + 1] = sq;
    }
}

/* One thread per channel: mean, biased var (float64 sums, in split order: deterministic), and
 * the running statistics when rmean != NULL. */
__global__ void bn_stats_final_kernel(const double *part, int S, float *mean, float *var,
                                      float *rmean, float *rvar, float momentum, int C, double M)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C)
        return;
    double sum = 0, sq = 0;
    for (int s = 0; s < S; s++) {
        sum += part[((size_t)c * S + s) * 2];
        sq += part[((size_t)c * S + s) * 2 + 1];
    }
    double m = sum / M, v = sq / M - m * m;
    if (v < 0)
        v = 0;
    float mf = (float)m, vf = (float)v;
    mean[c] = mf;
    var[c] = vf;
    if (rmean) {
        double mo = momentum, unb = M > 1 ? M / (M - 1) : 1.0;
        rmean[c] = (float)((1 - mo) * rmean[c] + mo * mf);
        rvar[c] = (float)((1 - mo) * rvar[c] + mo * vf * unb);
    }
}

template <typename T, typename I>
__global__ void bn_apply_kernel(const T *x, T *y, const float *gamma, const float *beta,
                                const float *mean, const float *var, float eps, int relu, int C,
                                long HW, I n)
{
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
        int c = (int)((i / (I)HW) % (I)C);
        float inv = (float)(1.0 / sqrt((double)var[c] + (double)eps));
        float v = gamma[c] * (to_f(x[i]) - mean[c]) * inv + beta[c];
        y[i] = from_f<T>((relu && v < 0.0f) ? 0.0f : v);
    }
}

/* Block (s, c): sum of g and of g (x - mean) inv over its images, g = dy masked by relu. */
template <typename T>
__global__ void bn_bwd_part_kernel(const T *x, const T *y, const T *dy, const float *mean,
                                   const float *var, float eps, int relu, double *part, int N,
                                   int C, long HW)
{
    __shared__ double sh[32];
    int s = blockIdx.x, S = gridDim.x, c = blockIdx.y, n0, n1;
    split_range(N, S, s, &n0, &n1);
    double inv = 1.0 / sqrt((double)var[c] + (double)eps), mc = mean[c];
    double sdy = 0, sdyx = 0;
    for_channel(x, c, C, HW, n0, n1, [&](const T *p, long i) {
        size_t j = (size_t)(p - x) + (size_t)i;
        double g = (relu && to_f(y[j]) <= 0.0f) ? 0.0 : (double)to_f(dy[j]);
        sdy += g;
        sdyx += g * ((double)to_f(p[i]) - mc) * inv;
    });
    sdy = block_sum(sdy, sh);
    sdyx = block_sum(sdyx, sh);
    if (threadIdx.x == 0) {
        part[((size_t)c * S + s) * 2] = sdy;
        part[((size_t)c * S + s) * 2 + 1] = sdyx;
    }
}

/* One thread per channel: dgamma = sum g xhat, dbeta = sum g. */
__global__ void bn_bwd_final_kernel(const double *part, int S, float *dgamma, float *dbeta, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C)
        return;
    double sdy = 0, sdyx = 0;
    for (int s = 0; s < S; s++) {
        sdy += part[((size_t)c * S + s) * 2];
        sdyx += part[((size_t)c * S + s) * 2 + 1];
    }
    dgamma[c] = (float)sdyx;
    dbeta[c] = (float)sdy;
}

template <typename T, typename I>
__global__ void bn_bwd_dx_kernel(const T *x, const T *y, const T *dy, T *dx, const float *gamma,
                                 const float *mean, const float *var, const float *dgamma,
                                 const float *dbeta, float eps, int relu, int N, int C, long HW,
                                 I n)
{
    double M = (double)N * (double)HW;
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
        int c = (int)((i / (I)HW) % (I)C);
        float inv = (float)(1.0 / sqrt((double)var[c] + (double)eps));
        float g = (relu && to_f(y[i]) <= 0.0f) ? 0.0f : to_f(dy[i]);
        float xh = (to_f(x[i]) - mean[c]) * inv;
        float sdy = (float)(dbeta[c] / M), sdyx = (float)(dgamma[c] / M);
        dx[i] = from_f<T>(gamma[c] * inv * (g - sdy - xh * sdyx));
    }
}

__device__ __forceinline__ double warp_sum(double v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* One warp (blockDim.x == 32) per sample n = blockIdx.x. */
template <typename T>
__global__ void xent_sample_kernel(const T *logits, const int32_t *labels, float *prob, T *y,
                                   float *sample_loss, int32_t *sample_hit, int K, int n_valid,
                                   float smoothing)
{
    int n = blockIdx.x, lane = threadIdx.x;
    const T *z = logits + (size_t)n * K;
    /* argmax: the largest value, the smallest index among equals (the ref's first maximum) */
    float best = -INFINITY;
    int am = K;
    for (int k = lane; k < K; k += 32) {
        float v = to_f(z[k]);
        if (am == K || v > best) {
            best = v;
            am = k;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ob = __shfl_xor_sync(0xffffffffu, best, o);
        int oa = __shfl_xor_sync(0xffffffffu, am, o);
        if (oa != K && (am == K || ob > best || (ob == best && oa < am))) {
            best = ob;
            am = oa;
        }
    }
    double s = 0;
    for (int k = lane; k < K; k += 32)
        s += exp((double)to_f(z[k]) - (double)best);
    s = warp_sum(s);
    double lse = (double)best + log(s);
    int label = n < n_valid ? labels[n] : -1;
    double l = 0;
    for (int k = lane; k < K; k += 32) {
        double zk = (double)to_f(z[k]);
        float p = (float)exp(zk - lse);
        prob[(size_t)n * K + k] = p;
        y[(size_t)n * K + k] = from_f<T>(p);
        double q = (double)smoothing / K + (k == label ? 1.0 - (double)smoothing : 0.0);
        l -= q * (zk - lse);
    }
    l = warp_sum(l);
    if (lane == 0) {
        sample_loss[n] = n < n_valid ? (float)l : 0.0f;
        sample_hit[n] = n < n_valid && am == label;
    }
}

/* One block: the mean loss and the hit count over the first n_valid samples. */
__global__ void xent_total_kernel(const float *sample_loss, const int32_t *sample_hit, int n_valid,
                                  float *loss_out, int32_t *correct_out)
{
    __shared__ double sh[32];
    double l = 0, h = 0;
    for (int n = threadIdx.x; n < n_valid; n += blockDim.x) {
        l += sample_loss[n];
        h += sample_hit[n];
    }
    l = block_sum(l, sh);
    h = block_sum(h, sh);
    if (threadIdx.x == 0) {
        *loss_out = (float)(l / n_valid);
        *correct_out = (int32_t)h;
    }
}

template <typename T>
__global__ void xent_bwd_kernel(const float *prob, const int32_t *labels, T *dx, int K,
                                int n_valid, float smoothing, float scale, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        int s = (int)(i / (size_t)K), k = (int)(i % (size_t)K);
        float g = 0.0f;
        if (s < n_valid) {
            float q = smoothing / (float)K + (k == labels[s] ? 1.0f - smoothing : 0.0f);
            g = (prob[i] - q) / (float)n_valid * scale;
        }
        dx[i] = from_f<T>(g);
    }
}

/* ---- launchers ------------------------------------------------------------------------------- */

template <typename T>
void channel_sum(const void *x, float *out, int N, int C, long HW, cudaStream_t s)
{
    channel_sum_kernel<<<C, kThreads, 0, s>>>((const T *)x, out, N, C, HW);
}

template <typename T>
void bn_stats(const void *x, float *mean, float *var, float *rm, float *rv, float mom, int N,
              int C, long HW, double *part, int S, cudaStream_t s)
{
    bn_stats_part_kernel<<<dim3(S, C), kThreads, 0, s>>>((const T *)x, part, N, C, HW);
    bn_stats_final_kernel<<<(C + 127) / 128, 128, 0, s>>>(part, S, mean, var, rm, rv, mom, C,
                                                          (double)N * (double)HW);
}

template <typename T>
void bn_apply(const void *x, void *y, const float *g, const float *b, const float *mean,
              const float *var, float eps, int relu, int N, int C, long HW, cudaStream_t s)
{
    size_t n = (size_t)N * C * HW;
    if (small_index(n))
        bn_apply_kernel<<<blocks_for(n), kThreads, 0, s>>>((const T *)x, (T *)y, g, b, mean, var,
                                                           eps, relu, C, HW, (unsigned)n);
    else
        bn_apply_kernel<<<blocks_for(n), kThreads, 0, s>>>((const T *)x, (T *)y, g, b, mean, var,
                                                           eps, relu, C, HW, n);
}

template <typename T>
void bn_bwd_reduce(const void *x, const void *y, const void *dy, const float *mean,
                   const float *var, float eps, int relu, float *dg, float *db, int N, int C,
                   long HW, double *part, int S, cudaStream_t s)
{
    bn_bwd_part_kernel<<<dim3(S, C), kThreads, 0, s>>>((const T *)x, (const T *)y, (const T *)dy,
                                                       mean, var, eps, relu, part, N, C, HW);
    bn_bwd_final_kernel<<<(C + 127) / 128, 128, 0, s>>>(part, S, dg, db, C);
}

template <typename T>
void bn_bwd_dx(const void *x, const void *y, const void *dy, void *dx, const float *g,
               const float *mean, const float *var, const float *dg, const float *db, float eps,
               int relu, int N, int C, long HW, cudaStream_t s)
{
    size_t n = (size_t)N * C * HW;
    if (small_index(n))
        bn_bwd_dx_kernel<<<blocks_for(n), kThreads, 0, s>>>((const T *)x, (const T *)y,
                                                            (const T *)dy, (T *)dx, g, mean, var,
                                                            dg, db, eps, relu, N, C, HW,
                                                            (unsigned)n);
    else
        bn_bwd_dx_kernel<<<blocks_for(n), kThreads, 0, s>>>((const T *)x, (const T *)y,
                                                            (const T *)dy, (T *)dx, g, mean, var,
                                                            dg, db, eps, relu, N, C, HW, n);
}

template <typename T>
void xent_fwd(const void *logits, const int32_t *labels, float *prob, void *y, float *sl,
              int32_t *sh, int N, int K, int n_valid, float smoothing, cudaStream_t s)
{
    xent_sample_kernel<<<N, 32, 0, s>>>((const T *)logits, labels, prob, (T *)y, sl, sh, K,
                                        n_valid, smoothing);
}

template <typename T>
void xent_bwd(const float *prob, const int32_t *labels, void *dx, int N, int K, int n_valid,
              float smoothing, float scale, cudaStream_t s)
{
    size_t n = (size_t)N * K;
    xent_bwd_kernel<<<blocks_for(n), kThreads, 0, s>>>(prob, labels, (T *)dx, K, n_valid,
                                                       smoothing, scale, n);
}

}  // namespace

extern "C" {
cudaError_t dpt__cuda_channel_sum_launch(const void *x, dpt_precision_t t, float *out, int N,
                                         int C, long HW, cudaStream_t s)
{
    if (C <= 0)
        return cudaSuccess;
    DPT_CU_DISPATCH(t, channel_sum, x, out, N, C, HW, s);
    return cudaGetLastError();
}

int dpt__cuda_bn_splits(int N, int C, long HW, int sms)
{
    /* about 4 blocks per SM in all, at least 2048 elements per block, at most one per image */
    long want = (4L * (sms > 0 ? sms : 1) + C - 1) / C;
    long by_size = (long)N * HW / 2048;
    long S = want < by_size ? want : by_size;
    if (S > N)
        S = N;
    if (S > 65535)
        S = 65535;
    return S < 1 ? 1 : (int)S;
}

cudaError_t dpt__cuda_bn_stats_launch(const void *x, dpt_precision_t t, float *mean, float *var,
                                      float *rmean, float *rvar, float momentum, int N, int C,
                                      long HW, double *part, int S, cudaStream_t s)
{
    if (C <= 0 || N <= 0 || HW <= 0)
        return cudaSuccess;
    DPT_CU_DISPATCH(t, bn_stats, x, mean, var, rmean, rvar, momentum, N, C, HW, part, S, s);
    return cudaGetLastError();
}

cudaError_t dpt__cuda_bn_apply_launch(const void *x, void *y, dpt_precision_t t,
                                      const float *gamma, const float *beta, const float *mean,
                                      const float *var, float eps, int relu, int N, int C,
                                      long HW, cudaStream_t s)
{
    if ((size_t)N * C * HW == 0)
        return cudaSuccess;
    DPT_CU_DISPATCH(t, bn_apply, x, y, gamma, beta, mean, var, eps, relu, N, C, HW, s);
    return cudaGetLastError();
}

cudaError_t dpt__cuda_bn_bwd_reduce_launch(const void *x, const void *y, const void *dy,
                                           dpt_precision_t t, const float *mean, const float *var,
                                           float eps, int relu, float *dgamma, float *dbeta,
                                           int N, int C, long HW, double *part, int S,
                                           cudaStream_t s)
{
    if (C <= 0 || N <= 0 || HW <= 0)
        return cudaSuccess;
    DPT_CU_DISPATCH(t, bn_bwd_reduce, x, y, dy, mean, var, eps, relu, dgamma, dbeta, N, C, HW,
                    part, S, s);
    return cudaGetLastError();
}

cudaError_t dpt__cuda_bn_bwd_dx_launch(const void *x, const void *y, const void *dy, void *dx,
                                       dpt_precision_t t, const float *gamma, const float *mean,
                                       const float *var, const float *dgamma, const float *dbeta,
                                       float eps, int relu, int N, int C, long HW,
                                       cudaStream_t s)
{
    if ((size_t)N * C * HW == 0)
        return cudaSuccess;
    DPT_CU_DISPATCH(t, bn_bwd_dx, x, y, dy, dx, gamma, mean, var, dgamma, dbeta, eps, relu, N, C,
                    HW, s);
    return cudaGetLastError();
}

cudaError_t dpt__cuda_xent_fwd_launch(const void *logits, dpt_precision_t t,
                                      const int32_t *labels, float *prob, void *y,
                                      float *sample_loss, int32_t *sample_hit, int N, int K,
                                      int n_valid, float smoothing, float *loss_out,
                                      int32_t *correct_out, cudaStream_t s)
{
    if (N <= 0 || K <= 0)
        return cudaSuccess;
    DPT_CU_DISPATCH(t, xent_fwd, logits, labels, prob, y, sample_loss, sample_hit, N, K, n_valid,
                    smoothing, s);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return e;
    xent_total_kernel<<<1, kThreads, 0, s>>>(sample_loss, sample_hit, n_valid, loss_out,
                                             correct_out);
    return cudaGetLastError();
}

cudaError_t dpt__cuda_xent_bwd_launch(const float *prob, const int32_t *labels, void *dx,
                                      dpt_precision_t t, int N, int K, int n_valid,
                                      float smoothing, float scale, cudaStream_t s)
{
    if ((size_t)N * K == 0)
        return cudaSuccess;
    DPT_CU_DISPATCH(t, xent_bwd, prob, labels, dx, N, K, n_valid, smoothing, scale, s);
    return cudaGetLastError();
}

}  // extern "C"
