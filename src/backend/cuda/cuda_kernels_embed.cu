/* cuda_kernels_embed.cu: the token embedding kernels of cuda_embed.c (launchers declared in
 * cuda_internal.h). Tokens are plain NCHW (N, C, 1, T) on this backend; the class token and the
 * position embedding are float32 parameters; sums over the batch accumulate in float64 in
 * sample order (the same bits on every run). */
#include "backend/cuda/cuda_kernels.cuh"

namespace {

template <typename T>
__global__ void tokens_fwd_kernel(const T *x, const float *cls_tok, const float *pos, T *y,
                                  int C, int P, int cls, size_t total)
{
    const long TT = (long)P + cls;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        long t = (long)(i % TT);
        size_t nc = i / TT;
        int c = (int)(nc % C);
        float v = t < cls ? cls_tok[c] : to_f(x[nc * P + (t - cls)]);
        if (pos)
            v += pos[(long)c * TT + t];
        y[i] = from_f<T>(v);
    }
}

template <typename T>
__global__ void tokens_dx_kernel(const T *dy, T *dx, int P, int cls, size_t total)
{
    const long TT = (long)P + cls;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x)
        dx[i] = dy[(i / P) * TT + cls + (long)(i % P)];
}

/* One thread per (c, t): s = sum over n of dy[n][c][t]; dpos[c][t] = s, dcls[c] = s at t = 0. */
template <typename T>
__global__ void tokens_dparam_kernel(const T *dy, float *dcls, float *dpos, int N, int C, long TT)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)C * TT;
         i += (size_t)gridDim.x * blockDim.x) {
        double s = 0;
        for (int n = 0; n < N; n++)
            s += to_f(dy[(size_t)n * C * TT + i]);
        if (dpos)
            dpos[i] = (float)s;
        if (dcls && i % TT == 0)
            dcls[i / TT] = (float)s;
    }
}

template <typename T>
__global__ void token_select_kernel(const T *x, T *y, long TT, size_t total, int backward)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        if (backward)
            y[i * TT] = x[i];   /* dx (zeroed) at token 0 = dy */
        else
            y[i] = x[i * TT];
    }
}

template <typename T>
void tokens_fwd(const void *x, const float *cls_tok, const float *pos, void *y, int N, int C,
                int P, int cls, cudaStream_t s)
{
    size_t total = (size_t)N * C * ((size_t)P + cls);
    tokens_fwd_kernel<T><<<blocks_for(total), kThreads, 0, s>>>(
        (const T *)x, cls_tok, pos, (T *)y, C, P, cls, total);
}

template <typename T>
void tokens_bwd(const void *dy, void *dx, float *dcls, float *dpos, int N, int C, int P,
                int cls, cudaStream_t s)
{
    const long TT = (long)P + cls;
    if (dx)
        tokens_dx_kernel<T><<<blocks_for((size_t)N * C * P), kThreads, 0, s>>>(
            (const T *)dy, (T *)dx, P, cls, (size_t)N * C * P);
    if (dcls || dpos)
        tokens_dparam_kernel<T><<<blocks_for((size_t)C * TT), kThreads, 0, s>>>(
            (const T *)dy, dcls, dpos, N, C, TT);
}

template <typename T>
void token_select(const void *x, void *y, int N, int C, int TT, int backward, cudaStream_t s)
{
    size_t total = (size_t)N * C;
    token_select_kernel<T><<<blocks_for(total), kThreads, 0, s>>>((const T *)x, (T *)y, TT,
                                                                   total, backward);
}

}  // namespace

extern "C" cudaError_t dpt__cuda_tokens_fwd_launch(const void *x, const float *cls_tok,
                                                   const float *pos, void *y, dpt_precision_t t,
                                                   int N, int C, int P, int cls, cudaStream_t s)
{
    if (!N || !C)
        return cudaSuccess;
    DPT_CU_DISPATCH(t, tokens_fwd, x, cls_tok, pos, y, N, C, P, cls, s);
    return cudaGetLastError();
}

extern "C" cudaError_t dpt__cuda_tokens_bwd_launch(const void *dy, void *dx, float *dcls,
                                                   float *dpos, dpt_precision_t t, int N, int C,
                                                   int P, int cls, cudaStream_t s)
{
    if (!N || !C)
        return cudaSuccess;
    DPT_CU_DISPATCH(t, tokens_bwd, dy, dx, dcls, dpos, N, C, P, cls, s);
    return cudaGetLastError();
}

extern "C" cudaError_t dpt__cuda_token_select_launch(const void *x, void *y, dpt_precision_t t,
                                                     int N, int C, int TT, int backward,
                                                     cudaStream_t s)
{
    if (!N || !C)
        return cudaSuccess;
    DPT_CU_DISPATCH(t, token_select, x, y, N, C, TT, backward, s);
    return cudaGetLastError();
}
