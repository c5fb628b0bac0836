/* cast16_nccl.h: the device side of --compress fp16/bf16 with --allreduce nccl
 * (src/bucket/cast16_nccl.cu, CUDA builds only); bucket.c queues these around ncclAllReduce. */
#ifndef DPT_BUCKET_CAST16_NCCL_H
#define DPT_BUCKET_CAST16_NCCL_H

#include <cuda_runtime.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* dst[i] = 16-bit (bf16 if bf16, else IEEE fp16) of src[i] / ranks, rounded to nearest even. */
cudaError_t dpt__bucket_cast16_launch(void *dst, const float *src, int ranks, size_t n, int bf16,
                                      cudaStream_t s);
/* dst[i] = the fp32 value of the 16-bit src[i]. */
cudaError_t dpt__bucket_widen16_launch(float *dst, const void *src, size_t n, int bf16,
                                       cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
