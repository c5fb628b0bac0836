/* cuda_kernels_mul.cu: the channel gate's kernels (cuda_mul.c): y = x (N, C, P) times g (N, C)
 * broadcast over the positions; backward dx = dy g and dg = the sum over the positions of
 * dy x, one block per (n, c) with a float64 tree reduction in a fixed order (the same bits on
 * every run). x, y, dy, dx and g are activations of the storage type. */
#include "backend/cuda/cuda_kernels.cuh"

namespace {

template <typename T>
__global__ void mul_fwd_kernel(const T *x, const T *g, T *y, long P, size_t total)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = from_f<T>(to_f(x[i]) * to_f(g[i / P]));
}

template <typename T>
__global__ void mul_bwd_kernel(const T *x, const T *g, const T *dy, T *dx, T *dg, long P)
{
    __shared__ double part[kThreads];
    const size_t nc = blockIdx.x;
    const float s = to_f(g[nc]);
    double acc = 0;
    for (long p = threadIdx.x; p < P; p += blockDim.x) {
        const float d = to_f(dy[nc * P + p]);
        acc += (double)d * to_f(x[nc * P + p]);
        if (dx)
            dx[nc * P + p] = from_f<T>(d * s);
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w /= 2) {
        if ((int)threadIdx.x < w)
            part[threadIdx.x] += part[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0 && dg)
        dg[nc] = from_f<T>((float)part[0]);
}

template <typename T>
void mul_fwd(const void *x, const void *g, void *y, int N, int C, long P, cudaStream_t s)
{
    size_t total = (size_t)N * C * P;
    mul_fwd_kernel<T><<<blocks_for(total), kThreads, 0, s>>>((const T *)x, (const T *)g, (T *)y,
                                                             P, total);
}

template <typename T>
void mul_bwd(const void *x, const void *g, const void *dy, void *dx, void *dg, int N, int C,
             long P, cudaStream_t s)
{
    mul_bwd_kernel<T><<<(unsigned)((size_t)N * C), kThreads, 0, s>>>(
        (const T *)x, (const T *)g, (const T *)dy, (T *)dx, (T *)dg, P);
}

}  // namespace

extern "C" cudaError_t dpt__cuda_mul_fwd_launch(const void *x, const void *g, void *y,
                                                dpt_precision_t t, int N, int C, long P,
                                                cudaStream_t s)
{
    if (!N || !C || !P)
        return cudaSuccess;
    DPT_CU_DISPATCH(t, mul_fwd, x, g, y, N, C, P, s);
    return cudaGetLastError();
}

extern "C" cudaError_t dpt__cuda_mul_bwd_launch(const void *x, const void *g, const void *dy,
                                                void *dx, void *dg, dpt_precision_t t, int N,
                                                int C, long P, cudaStream_t s)
{
    if (!N || !C || !P)
        return cudaSuccess;
    DPT_CU_DISPATCH(t, mul_bwd, x, g, dy, dx, dg, N, C, P, s);
    return cudaGetLastError();
}
