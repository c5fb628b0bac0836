/* cuda_kernels_tokens.cu: the layer norm kernels of cuda_tokens.c (launchers declared in
 * cuda_internal.h). Activations are NCHW (N, C, HW) in storage type T: the C channels of a
 * position p = n HW + i are HW apart, and neighbouring positions are neighbours in memory.
 *
 * Forward and the input gradient: a block of 32 x 8 threads takes 32 neighbouring positions;
 * threadIdx.x picks the position (so a warp reads 32 consecutive elements of one channel plane:
 * coalesced whenever HW >= 32, which transformer tokens (N, D, 1, T) are), threadIdx.y strides
 * over the channels, and the 8 partial sums of a position are added in order through shared
 * memory. Statistics: one pass of float64 sums (E[x^2] - mean^2 in float64 keeps ~26 bits even
 * at |mean| = 1e4 std), mean and rstd = 1/sqrt(var + eps) saved per position for backward.
 *
 * Parameter gradients reduce over positions: one block per channel striding over the N*HW
 * positions (consecutive within a plane), float64 sums, as channel_sum does for bias gradients.
 * No atomics anywhere: every result is deterministic. */
#include <math.h>

#include "backend/cuda/cuda_kernels.cuh"

namespace {

const int kPos = 32;    /* positions per block (threadIdx.x) */
const int kSlices = 8;  /* channel slices per position (threadIdx.y) */

/* First element of position p of an (N, C, HW) tensor. */
__device__ __forceinline__ size_t pos_base(long p, int C, long HW)
{
    long n = p / HW, i = p - n * HW;
    return (size_t)n * C * (size_t)HW + (size_t)i;
}

/* Adds the kSlices partials of column threadIdx.x (each slice wrote sh[y][x]); the total lands
 * in sh[0][x]. Every thread of the block must call it. */
__device__ __forceinline__ void slice_sum(double (*sh)[kPos + 1])
{
    __syncthreads();
    if (threadIdx.y == 0)
        for (int k = 1; k < kSlices; k++)
            sh[0][threadIdx.x] += sh[k][threadIdx.x];
    __syncthreads();
}

template <typename T>
__global__ void ln_fwd_kernel(const T *x, T *y, const float *gamma, const float *beta,
                              float *mean, float *rstd, long M, int C, long HW, float eps)
{
    __shared__ double s1[kSlices][kPos + 1], s2[kSlices][kPos + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const long p = (long)blockIdx.x * kPos + tx;
    const bool ok = p < M;
    const size_t base = ok ? pos_base(p, C, HW) : 0;
    double a = 0, b = 0;
    if (ok)
        for (int c = ty; c < C; c += kSlices) {
            double v = to_f(x[base + (size_t)c * HW]);
            a += v;
            b += v * v;
        }
    s1[ty][tx] = a;
    s2[ty][tx] = b;
    slice_sum(s1);
    slice_sum(s2);
    const double m = s1[0][tx] / C;
    const double var = fmax(s2[0][tx] / C - m * m, 0.0);
    const float mf = (float)m, r = (float)(1.0 / sqrt(var + (double)eps));
    if (!ok)
        return;
    if (ty == 0) {
        mean[p] = mf;
        rstd[p] = r;
    }
    for (int c = ty; c < C; c += kSlices) {
        const size_t k = base + (size_t)c * HW;
        y[k] = from_f<T>(gamma[c] * (to_f(x[k]) - mf) * r + beta[c]);
    }
}

/* dx = rstd (g - mean_c(g) - xhat mean_c(g xhat)), g = gamma dy, xhat = (x - mean) rstd. */
template <typename T>
__global__ void ln_bwd_dx_kernel(const T *x, const T *dy, T *dx, const float *gamma,
                                 const float *mean, const float *rstd, long M, int C, long HW)
{
    __shared__ double s1[kSlices][kPos + 1], s2[kSlices][kPos + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const long p = (long)blockIdx.x * kPos + tx;
    const bool ok = p < M;
    const size_t base = ok ? pos_base(p, C, HW) : 0;
    const float m = ok ? mean[p] : 0.0f, r = ok ? rstd[p] : 0.0f;
    double a = 0, b = 0;
    if (ok)
        for (int c = ty; c < C; c += kSlices) {
            const size_t k = base + (size_t)c * HW;
            const float g = gamma[c] * to_f(dy[k]), xh = (to_f(x[k]) - m) * r;
            a += g;
            b += (double)g * xh;
        }
    s1[ty][tx] = a;
    s2[ty][tx] = b;
    slice_sum(s1);
    slice_sum(s2);
    if (!ok)
        return;
    const float sg = (float)(s1[0][tx] / C), sgx = (float)(s2[0][tx] / C);
    for (int c = ty; c < C; c += kSlices) {
        const size_t k = base + (size_t)c * HW;
        const float g = gamma[c] * to_f(dy[k]), xh = (to_f(x[k]) - m) * r;
        dx[k] = from_f<T>(r * (g - sg - xh * sgx));
    }
}

/* Sum of v over the block (blockDim.x a multiple of 32), returned to every thread. */
__device__ double block_total(double v, double *sh)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_down_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0)
        sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        double t = lane < (int)(blockDim.x >> 5) ? sh[lane] : 0.0;
        for (int o = 16; o > 0; o >>= 1)
            t += __shfl_down_sync(0xffffffffu, t, o);
        if (lane == 0)
            sh[0] = t;
    }
    __syncthreads();
    return sh[0];
}

/* Block c: dgamma[c] = sum_p dy xhat, dbeta[c] = sum_p dy over the M = N*HW positions. */
template <typename T>
__global__ void ln_bwd_params_kernel(const T *x, const T *dy, const float *mean,
                                     const float *rstd, float *dgamma, float *dbeta, long M,
                                     int C, long HW)
{
    __shared__ double sh[32];
    const int c = blockIdx.x;
    double g = 0, b = 0;
    for (long p = threadIdx.x; p < M; p += blockDim.x) {
        const size_t k = pos_base(p, C, HW) + (size_t)c * HW;
        const float d = to_f(dy[k]);
        g += (double)d * ((to_f(x[k]) - mean[p]) * rstd[p]);
        b += d;
    }
    g = block_total(g, sh);
    b = block_total(b, sh);
    if (threadIdx.x == 0) {
        dgamma[c] = (float)g;
        dbeta[c] = (float)b;
    }
}

template <typename T>
void ln_fwd(const void *x, void *y, const float *gamma, const float *beta, float *mean,
            float *rstd, long M, int C, long HW, float eps, cudaStream_t s)
{
    dim3 block(kPos, kSlices), grid((unsigned)((M + kPos - 1) / kPos));
    ln_fwd_kernel<T><<<grid, block, 0, s>>>((const T *)x, (T *)y, gamma, beta, mean, rstd, M, C,
                                            HW, eps);
}

template <typename T>
void ln_bwd_dx(const void *x, const void *dy, void *dx, const float *gamma, const float *mean,
               const float *rstd, long M, int C, long HW, cudaStream_t s)
{
    dim3 block(kPos, kSlices), grid((unsigned)((M + kPos - 1) / kPos));
    ln_bwd_dx_kernel<T><<<grid, block, 0, s>>>((const T *)x, (const T *)dy, (T *)dx, gamma, mean,
                                               rstd, M, C, HW);
}

template <typename T>
void ln_bwd_params(const void *x, const void *dy, const float *mean, const float *rstd,
                   float *dgamma, float *dbeta, long M, int C, long HW, cudaStream_t s)
{
    ln_bwd_params_kernel<T><<<C, kThreads, 0, s>>>((const T *)x, (const T *)dy, mean, rstd,
                                                   dgamma, dbeta, M, C, HW);
}

}  // namespace

extern "C" cudaError_t dpt__cuda_layernorm_fwd_launch(const void *x, void *y, dpt_precision_t t,
                                                      const float *gamma, const float *beta,
                                                      float *mean, float *rstd, int N, int C,
                                                      long HW, float eps, cudaStream_t s)
{
    const long M = (long)N * HW;
    if (M <= 0 || C <= 0)
        return cudaSuccess;
    DPT_CU_DISPATCH(t, ln_fwd, x, y, gamma, beta, mean, rstd, M, C, HW, eps, s);
    return cudaGetLastError();
}

extern "C" cudaError_t dpt__cuda_layernorm_bwd_dx_launch(const void *x, const void *dy, void *dx,
                                                         dpt_precision_t t, const float *gamma,
                                                         const float *mean, const float *rstd,
                                                         int N, int C, long HW, cudaStream_t s)
{
    const long M = (long)N * HW;
    if (M <= 0 || C <= 0)
        return cudaSuccess;
    DPT_CU_DISPATCH(t, ln_bwd_dx, x, dy, dx, gamma, mean, rstd, M, C, HW, s);
    return cudaGetLastError();
}

extern "C" cudaError_t dpt__cuda_layernorm_bwd_params_launch(const void *x, const void *dy,
                                                             dpt_precision_t t, const float *mean,
                                                             const float *rstd, float *dgamma,
                                                             float *dbeta, int N, int C, long HW,
                                                             cudaStream_t s)
{
    const long M = (long)N * HW;
    if (M <= 0 || C <= 0)
        return cudaSuccess;
    DPT_CU_DISPATCH(t, ln_bwd_params, x, dy, mean, rstd, dgamma, dbeta, M, C, HW, s);
    return cudaGetLastError();
}
