/* cuda_kernels_attention.cu: the softmax kernels of the attention core (cuda_attention.c; the
 * launchers are declared in cuda_internal.h). cuBLAS does the four matrix products; what is left
 * is per row of the (T x T) score matrix of each (sample, head), rows contiguous in float32:
 *   forward   p = softmax(p) in place, shifted by the row maximum (expf never overflows)
 *   backward  dp = p (dp - sum_j dp p) in place (the softmax Jacobian applied to dp)
 * In the 16-bit modes each also writes its result in the storage type (p16 / ds16), because a
 * cuBLAS product takes A and B in one type; the float32 copies stay for backward.
 *
 * One warp per row: T is the token count (tens to a few hundred), so a row is a few strided
 * loads per lane and two shuffle reductions; the row sums accumulate in float64 like the
 * backend's other reductions. No atomics: deterministic. */
#include <math.h>

#include "backend/cuda/cuda_kernels.cuh"

namespace {

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ double warp_sum(double v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Rows are warp-uniform (every lane of a warp takes the same r), so full-mask shuffles are
 * safe. TS is the storage type of p16 (unused when p16 is NULL: fp32). */
template <typename TS>
__global__ void attn_softmax_fwd_kernel(float *p, TS *p16, long rows, int T)
{
    const int lane = threadIdx.x & 31;
    const long nw = ((long)gridDim.x * blockDim.x) >> 5;
    for (long r = ((long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < rows; r += nw) {
        float *row = p + r * T;
        float mx = -INFINITY;
        for (int j = lane; j < T; j += 32)
            mx = fmaxf(mx, row[j]);
        mx = warp_max(mx);
        double z = 0;
        for (int j = lane; j < T; j += 32) {
            float e = expf(row[j] - mx);
            row[j] = e;
            z += e;
        }
        const float inv = (float)(1.0 / warp_sum(z));
        for (int j = lane; j < T; j += 32) {
            float v = row[j] * inv;
            row[j] = v;
            if (p16)
                p16[r * T + j] = from_f<TS>(v);
        }
    }
}

template <typename TS>
__global__ void attn_softmax_bwd_kernel(const float *p, float *dp, TS *ds16, long rows, int T)
{
    const int lane = threadIdx.x & 31;
    const long nw = ((long)gridDim.x * blockDim.x) >> 5;
    for (long r = ((long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < rows; r += nw) {
        const float *pr = p + r * T;
        float *dr = dp + r * T;
        double s = 0;
        for (int j = lane; j < T; j += 32)
            s += (double)dr[j] * pr[j];
        const float sum = (float)warp_sum(s);
        for (int j = lane; j < T; j += 32) {
            float v = pr[j] * (dr[j] - sum);
            dr[j] = v;
            if (ds16)
                ds16[r * T + j] = from_f<TS>(v);
        }
    }
}

/* Blocks of kThreads (a multiple of 32) for one warp per row, capped: the kernels stride. */
unsigned row_blocks(long rows)
{
    const long per = kThreads / 32;
    long b = (rows + per - 1) / per;
    return (unsigned)(b > (1L << 20) ? (1L << 20) : b);
}

template <typename TS>
void softmax_fwd(float *p, void *p16, long rows, int T, cudaStream_t s)
{
    attn_softmax_fwd_kernel<TS><<<row_blocks(rows), kThreads, 0, s>>>(p, (TS *)p16, rows, T);
}

template <typename TS>
void softmax_bwd(const float *p, float *dp, void *ds16, long rows, int T, cudaStream_t s)
{
    attn_softmax_bwd_kernel<TS><<<row_blocks(rows), kThreads, 0, s>>>(p, dp, (TS *)ds16, rows,
                                                                      T);
}

}  // namespace

extern "C" {

cudaError_t dpt__cuda_attn_softmax_fwd_launch(float *p, void *p16, dpt_precision_t t, long rows,
                                              int T, cudaStream_t s)
{
    if (rows <= 0 || T <= 0)
        return cudaSuccess;
    if (t == DPT_PREC_FP32 || !p16)
        softmax_fwd<float>(p, NULL, rows, T, s);
    else
        DPT_CU_DISPATCH(t, softmax_fwd, p, p16, rows, T, s);
    return cudaGetLastError();
}

cudaError_t dpt__cuda_attn_softmax_bwd_launch(const float *p, float *dp, void *ds16,
                                              dpt_precision_t t, long rows, int T,
                                              cudaStream_t s)
{
    if (rows <= 0 || T <= 0)
        return cudaSuccess;
    if (t == DPT_PREC_FP32 || !ds16)
        softmax_bwd<float>(p, dp, NULL, rows, T, s);
    else
        DPT_CU_DISPATCH(t, softmax_bwd, p, dp, ds16, rows, T, s);
    return cudaGetLastError();
}

}  // extern "C"
