/* cuda_kernels_drop.cu: dropout and drop path (cuda_drop.c) on plain NCHW activations of any
 * storage type: y = x kept by drop_mask.h's hash and scaled by 1 / (1 - p), else 0 (backward:
 * the same map applied to dy). The masks equal the host backends' bit for bit. */
#include "backend/cuda/cuda_kernels.cuh"
#include "backend/drop_mask.h"

namespace {

template <typename T>
__global__ void drop_kernel(const T *x, T *y, long E, size_t total, float p, int per_sample,
                            uint64_t seed, uint32_t layer, uint64_t sample0)
{
    const float scale = 1.0f / (1.0f - p);
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        const uint64_t n = i / E, e = i % E;
        const uint64_t key = dpt_drop_key(seed, layer, sample0 + n);
        const int keep = dpt_drop_keep(key, per_sample ? DPT_DROP_SAMPLE : e, p);
        y[i] = from_f<T>(keep ? to_f(x[i]) * scale : 0.0f);
    }
}

template <typename T>
void drop(const void *x, void *y, int N, long E, float p, int per_sample, uint64_t seed,
          uint32_t layer, uint64_t sample0, cudaStream_t s)
{
    size_t total = (size_t)N * E;
    drop_kernel<T><<<blocks_for(total), kThreads, 0, s>>>((const T *)x, (T *)y, E, total, p,
                                                          per_sample, seed, layer, sample0);
}

}  // namespace

extern "C" cudaError_t dpt__cuda_drop_launch(const void *x, void *y, dpt_precision_t t, int N,
                                             long E, float p, int per_sample, uint64_t seed,
                                             uint32_t layer, uint64_t sample0, cudaStream_t s)
{
    if (!N || !E)
        return cudaSuccess;
    DPT_CU_DISPATCH(t, drop, x, y, N, E, p, per_sample, seed, layer, sample0, s);
    return cudaGetLastError();
}
