/* cuda_kernels.cuh: device-side helpers shared by the cuda backend's kernel files
 * (cuda_kernels_eltwise.cu, cuda_kernels_reduce.cu); included from .cu files only, never from C.
 * Storage-type conversions, grid sizing, the index-type choice and DPT_CU_DISPATCH, which runs a
 * launcher template for the storage type of a precision.
 *
 * Storage type T is float, __nv_bfloat16 or __half; arithmetic is always float32 and every
 * reduction accumulates in float64, so 16-bit modes lose precision only where values are stored.
 */
#ifndef DPT_CUDA_KERNELS_CUH
#define DPT_CUDA_KERNELS_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stddef.h>

#include "backend/cuda/cuda_internal.h"

namespace {

const int kThreads = 256;

/* ---- storage-type conversions ------------------------------------------------------------ */
__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v)
{
    return __float2bfloat16_rn(v);
}

/* Blocks for a grid-stride loop over n elements (n > 0). */
inline unsigned blocks_for(size_t n)
{
    size_t b = (n + kThreads - 1) / kThreads;
    return (unsigned)(b > (1u << 20) ? (1u << 20) : b);
}

/* Index type for a tensor of n elements: 32-bit while i + grid stride cannot wrap. Kernels that
 * need the channel of each element are also templated on the index type I: unsigned (cheap
 * division) when the tensor has at most 2^31 elements, else size_t. */
inline bool small_index(size_t n) { return n <= ((size_t)1 << 31); }

}  // namespace

/* Calls F<T>(...) with T the storage type of precision t. */
#define DPT_CU_DISPATCH(t, F, ...)                                                     \
    do {                                                                               \
        switch (t) {                                                                   \
        case DPT_PREC_BF16: F<__nv_bfloat16>(__VA_ARGS__); break;                      \
        case DPT_PREC_FP16: F<__half>(__VA_ARGS__); break;                             \
        default: F<float>(__VA_ARGS__); break;                                         \
        }                                                                              \
    } while (0)

#endif
