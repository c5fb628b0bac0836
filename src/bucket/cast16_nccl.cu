/* cast16_nccl.cu: the fp16 and bf16 codecs of --allreduce nccl (device gradients). NCCL reduces
 * device memory itself, so the host codecs (src/compress/cast16.c) cannot sit between it and the
 * gradients; these two kernels do their arithmetic on the device instead: divide by the rank
 * count in fp32 and round once to 16 bits (to nearest even) before ncclAllReduce sums the 16-bit
 * buffer, then widen the sum back into the fp32 arena. bucket.c queues all three on the
 * bucketer's communication stream. Grid-stride loops, no atomics: deterministic. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "bucket/cast16_nccl.h"

namespace {

__global__ void to_f16(__half *dst, const float *src, float p, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2half_rn(src[i] / p);
}

__global__ void to_bf16(__nv_bfloat16 *dst, const float *src, float p, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i] / p);
}

__global__ void from_f16(float *dst, const __half *src, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __half2float(src[i]);
}

__global__ void from_bf16(float *dst, const __nv_bfloat16 *src, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __bfloat162float(src[i]);
}

unsigned blocks(size_t n)
{
    size_t b = (n + 255) / 256;
    return (unsigned)(b < 4096 ? (b ? b : 1) : 4096);
}

}  // namespace

cudaError_t dpt__bucket_cast16_launch(void *dst, const float *src, int ranks, size_t n, int bf16,
                                      cudaStream_t s)
{
    if (n == 0)
        return cudaSuccess;
    if (bf16)
        to_bf16<<<blocks(n), 256, 0, s>>>((__nv_bfloat16 *)dst, src, (float)ranks, n);
    else
        to_f16<<<blocks(n), 256, 0, s>>>((__half *)dst, src, (float)ranks, n);
    return cudaGetLastError();
}

cudaError_t dpt__bucket_widen16_launch(float *dst, const void *src, size_t n, int bf16,
                                       cudaStream_t s)
{
    if (n == 0)
        return cudaSuccess;
    if (bf16)
        from_bf16<<<blocks(n), 256, 0, s>>>(dst, (const __nv_bfloat16 *)src, n);
    else
        from_f16<<<blocks(n), 256, 0, s>>>(dst, (const __half *)src, n);
    return cudaGetLastError();
}
