/* cuda_internal.h: the kernel launchers of the cuda backend (cuda_kernels.cu), called from the C
 * side (cuda_backend.c). Not public API.
 *
 * Every launcher queues its kernel(s) on stream `s` and returns the launch status
 * (cudaGetLastError()); a count of 0 queues nothing and returns cudaSuccess. Activation arrays
 * are `void *` of element type `t`: float for DPT_PREC_FP32, __nv_bfloat16 for DPT_PREC_BF16,
 * __half for DPT_PREC_FP16, always in plain NCHW order. Parameters, gradients, BN statistics and
 * everything declared `float *` are float32. All pointers are device pointers. Arithmetic is in
 * float32 (reductions in float64), whatever the storage type.
 */
#ifndef DPT_CUDA_INTERNAL_H
#define DPT_CUDA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "dptrain/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Private activation layouts of 16-bit tensors (plain NCHW order, 2 bytes per element). */
#define DPT__CUDA_LAYOUT_BF16 0x4b16
#define DPT__CUDA_LAYOUT_FP16 0x4f16

/* Elementwise op kinds of dpt__cuda_eltwise_fwd_launch / _bwd_launch. */
enum { DPT__CU_RELU = 0, DPT__CU_CELU, DPT__CU_SCALE, DPT__CU_ADD };

/* dst[i] = (type dt) src[i] for i < n (any of the 3x3 type pairs; same type = copy). */
cudaError_t dpt__cuda_cast_launch(void *dst, dpt_precision_t dt, const void *src,
                                  dpt_precision_t st, size_t n, cudaStream_t s);

/* y (N, C, HW) += b[c]. */
cudaError_t dpt__cuda_bias_add_launch(void *y, dpt_precision_t t, const float *b, int N, int C,
                                      long HW, cudaStream_t s);

/* out[c] = sum over n, i of x (N, C, HW) (bias gradients). One block per channel. */
cudaError_t dpt__cuda_channel_sum_launch(const void *x, dpt_precision_t t, float *out, int N,
                                         int C, long HW, cudaStream_t s);

/* Per-channel reductions of batch norm run as S x C blocks (each channel split into S ranges
 * of images) writing float64 partials part[(c*S + s)*2 + {0,1}], then one thread per channel
 * adds them up in order (deterministic). S for a shape on a device with `sms` SMs; the caller
 * allocates 2*S*C doubles of `part` at op_create. */
int dpt__cuda_bn_splits(int N, int C, long HW, int sms);

/* Batch statistics of x (N, C, HW): mean[c], biased var[c] (one pass, float64 sums). When
 * rmean != NULL also the running statistics: rmean = (1-m) rmean + m mean,
 * rvar = (1-m) rvar + m var * M/(M-1), M = N*HW. */
cudaError_t dpt__cuda_bn_stats_launch(const void *x, dpt_precision_t t, float *mean, float *var,
                                      float *rmean, float *rvar, float momentum, int N, int C,
                                      long HW, double *part, int S, cudaStream_t s);

/* y = gamma (x - mean) / sqrt(var + eps) + beta, then max(y, 0) when relu. x and y may alias. */
cudaError_t dpt__cuda_bn_apply_launch(const void *x, void *y, dpt_precision_t t,
                                      const float *gamma, const float *beta, const float *mean,
                                      const float *var, float eps, int relu, int N, int C,
                                      long HW, cudaStream_t s);

/* Per channel, with g = (relu && y <= 0) ? 0 : dy:  dbeta[c] = sum g,
 * dgamma[c] = sum g (x - mean) / sqrt(var + eps). */
cudaError_t dpt__cuda_bn_bwd_reduce_launch(const void *x, const void *y, const void *dy,
                                           dpt_precision_t t, const float *mean, const float *var,
                                           float eps, int relu, float *dgamma, float *dbeta,
                                           int N, int C, long HW, double *part, int S,
                                           cudaStream_t s);

/* dx = gamma inv (g - dbeta/M - xhat dgamma/M), inv = 1/sqrt(var + eps), xhat = (x-mean) inv. */
cudaError_t dpt__cuda_bn_bwd_dx_launch(const void *x, const void *y, const void *dy, void *dx,
                                       dpt_precision_t t, const float *gamma, const float *mean,
                                       const float *var, const float *dgamma, const float *dbeta,
                                       float eps, int relu, int N, int C, long HW,
                                       cudaStream_t s);

/* relu: y = max(x0, 0); celu: y = x0 > 0 ? x0 : alpha (exp(x0/alpha) - 1); scale: y = alpha x0;
 * add: y = x0 + x1. y may alias x0 or x1. */
cudaError_t dpt__cuda_eltwise_fwd_launch(int kind, const void *x0, const void *x1, void *y,
                                         dpt_precision_t t, size_t n, float alpha,
                                         cudaStream_t s);

/* relu: dx = y > 0 ? dy : 0; celu: dx = x > 0 ? dy : dy exp(x/alpha); scale: dx = alpha dy. */
cudaError_t dpt__cuda_eltwise_bwd_launch(int kind, const void *x, const void *y, const void *dy,
                                         void *dx, dpt_precision_t t, size_t n, float alpha,
                                         cudaStream_t s);

/* Max pooling of x (N*C planes of H x W) into y (OH x OW), window K, stride, pad; padded
 * positions are skipped (never the maximum). argmax = ih*W + iw of the first maximum in
 * row-major window order (the ref backend's rule), -1 if the window holds no input. */
cudaError_t dpt__cuda_maxpool_fwd_launch(const void *x, void *y, dpt_precision_t t,
                                         int32_t *argmax, int N, int C, int H, int W, int K,
                                         int stride, int pad, int OH, int OW, cudaStream_t s);

/* dx[ih, iw] = sum of dy over the windows whose argmax is (ih, iw) (a gather: deterministic). */
cudaError_t dpt__cuda_maxpool_bwd_launch(const int32_t *argmax, const void *dy, void *dx,
                                         dpt_precision_t t, int N, int C, int H, int W, int K,
                                         int stride, int pad, int OH, int OW, cudaStream_t s);

/* Global average pooling: y[n, c] = mean over HW of x; backward dx = dy[n, c] / HW. */
cudaError_t dpt__cuda_gap_fwd_launch(const void *x, void *y, dpt_precision_t t, int N, int C,
                                     long HW, cudaStream_t s);
cudaError_t dpt__cuda_gap_bwd_launch(const void *dy, void *dx, dpt_precision_t t, int N, int C,
                                     long HW, cudaStream_t s);

/* Softmax cross-entropy with label smoothing on logits (N, K): prob (float32, N*K) and y (type
 * t) get the softmax; for the first n_valid samples the loss -sum_k q_k log p_k,
 * q_k = smoothing/K + (k == label) (1 - smoothing), and argmax == label. Then *loss_out = mean
 * loss over n_valid and *correct_out = hits (device scalars). sample_loss and sample_hit are
 * N-element scratch arrays. labels holds n_valid entries in [0, K). 1 <= n_valid <= N. */
cudaError_t dpt__cuda_xent_fwd_launch(const void *logits, dpt_precision_t t,
                                      const int32_t *labels, float *prob, void *y,
                                      float *sample_loss, int32_t *sample_hit, int N, int K,
                                      int n_valid, float smoothing, float *loss_out,
                                      int32_t *correct_out, cudaStream_t s);

/* dlogits = scale (prob - q) / n_valid for the first n_valid samples, 0 for the rest. */
cudaError_t dpt__cuda_xent_bwd_launch(const float *prob, const int32_t *labels, void *dx,
                                      dpt_precision_t t, int N, int K, int n_valid,
                                      float smoothing, float scale, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
