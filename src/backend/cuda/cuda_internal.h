/* cuda_internal.h: what the files of the cuda backend share (not public API). First the kernel
 * launchers (cuda_kernels_eltwise.cu, cuda_kernels_reduce.cu), called from the C side; then the
 * C side's own types and helpers: the backend and op structs, status translation, and the op
 * functions of cuda_conv.c and cuda_ops.c that the op table of cuda_backend.c dispatches to.
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

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "dptrain/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Private activation layouts of 16-bit tensors (plain NCHW order, 2 bytes per element). */
#define DPT__CUDA_LAYOUT_BF16 0x4b16
#define DPT__CUDA_LAYOUT_FP16 0x4f16

/* Elementwise op kinds of dpt__cuda_eltwise_fwd_launch / _bwd_launch. */
enum {
    DPT__CU_RELU = 0, DPT__CU_CELU, DPT__CU_SCALE, DPT__CU_ADD,
    DPT__CU_SILU, DPT__CU_GELU_ERF, DPT__CU_GELU_TANH, DPT__CU_SIGMOID
};

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
 * add: y = x0 + x1; silu: y = x0 s(x0) with s the logistic; gelu_erf: y = 0.5 x0 (1 + erf(x0 /
 * sqrt 2)); gelu_tanh: y = 0.5 x0 (1 + tanh(sqrt(2/pi) (x0 + 0.044715 x0^3))); sigmoid:
 * y = s(x0). y may alias x0 or x1. */
cudaError_t dpt__cuda_eltwise_fwd_launch(int kind, const void *x0, const void *x1, void *y,
                                         dpt_precision_t t, size_t n, float alpha,
                                         cudaStream_t s);

/* relu: dx = y > 0 ? dy : 0; celu: dx = x > 0 ? dy : dy exp(x/alpha); scale: dx = alpha dy;
 * silu, gelu_erf, gelu_tanh: dx = dy f'(x) (from x); sigmoid: dx = dy y (1 - y) (from y). */
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

/* Attention softmax (cuda_kernels_attention.cu), on `rows` contiguous float32 rows of length T:
 * forward p = softmax(p) in place (shifted by the row maximum); backward dp = p (dp - sum_j dp p)
 * in place. In the 16-bit modes (t) p16 / ds16 (may be NULL) also get the result in type t. */
cudaError_t dpt__cuda_attn_softmax_fwd_launch(float *p, void *p16, dpt_precision_t t, long rows,
                                              int T, cudaStream_t s);
cudaError_t dpt__cuda_attn_softmax_bwd_launch(const float *p, float *dp, void *ds16,
                                              dpt_precision_t t, long rows, int T,
                                              cudaStream_t s);

/* Layer norm (cuda_kernels_tokens.cu) over the C channels of each of the N*HW positions p of
 * x (N, C, HW): y = gamma (x - mean) rstd + beta, saving mean[p] and rstd[p] = 1/sqrt(biased
 * var + eps); backward: dx = rstd (g - mean_c(g) - xhat mean_c(g xhat)) with g = gamma dy and
 * xhat = (x - mean) rstd, and the parameter gradients dgamma[c] = sum_p dy xhat,
 * dbeta[c] = sum_p dy (float32, overwritten). */
cudaError_t dpt__cuda_layernorm_fwd_launch(const void *x, void *y, dpt_precision_t t,
                                           const float *gamma, const float *beta, float *mean,
                                           float *rstd, int N, int C, long HW, float eps,
                                           cudaStream_t s);
cudaError_t dpt__cuda_layernorm_bwd_dx_launch(const void *x, const void *dy, void *dx,
                                              dpt_precision_t t, const float *gamma,
                                              const float *mean, const float *rstd, int N, int C,
                                              long HW, cudaStream_t s);
cudaError_t dpt__cuda_layernorm_bwd_params_launch(const void *x, const void *dy,
                                                  dpt_precision_t t, const float *mean,
                                                  const float *rstd, float *dgamma, float *dbeta,
                                                  int N, int C, long HW, cudaStream_t s);

/* ---- the C side (cuda_backend.c, cuda_conv.c, cuda_ops.c) ----------------------------------- */

struct dpt_backend {
    int device;
    dpt_precision_t prec;     /* activation storage and compute precision */
    int tf32;                 /* FP32 mode may use TF32 tensor cores (DPT_CUDA_TF32=1) */
    int sms;                  /* streaming multiprocessors of the device (sizes BN grids) */
    int find;                 /* order conv algorithms by measured time (DPT_CUDNN_FIND=1) */
    cudaStream_t stream;      /* the compute stream (blocking) */
    cublasHandle_t cublas;    /* bound to stream */
    cudnnHandle_t cudnn;      /* bound to stream */
    void *ws;                 /* cuDNN workspace shared by all ops (they run in stream order) */
    size_t ws_size;
    float *stage;             /* float32 staging for import/export of 16-bit tensors (grows) */
    size_t stage_size;
};

struct dpt_op {
    dpt_backend_t *be;
    dpt_op_desc_t d;
    dpt_op_info_t info;
    dpt_precision_t dt;        /* element type of the output (and of the inputs after casting) */
    int in_cast[2];            /* input i is float32 NCHW in a 16-bit backend: cast it */
    void *xc[2];               /* (count of in[i]) 16-bit copy of input i when in_cast[i] */
    void *dxc[2];              /* (count of in[i]) 16-bit gradient of input i when in_cast[i] */
    /* conv2d */
    cudnnTensorDescriptor_t xd, yd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd[3];   /* forward, backward data, backward filter */
    cudnnConvolutionFwdAlgo_t algo_fwd;
    cudnnConvolutionBwdDataAlgo_t algo_bwd_data;
    cudnnConvolutionBwdFilterAlgo_t algo_bwd_filter;
    size_t ws_need[3];
    /* conv2d, fc in 16-bit modes */
    void *w16;                 /* (n_weights) weights cast to dt */
    void *dw16;                /* (n_weights) conv weight gradient in dt */
    /* batchnorm: mean (C), var (C), then reductions (2C) when the caller passes no dw;
     * xent: probabilities (N*K) */
    float *save;
    double *part;              /* batchnorm: (C, bn_splits, 2) float64 partial sums */
    int bn_splits;
    int32_t *argmax;           /* maxpool (N, C, OH, OW) */
    /* xent */
    int32_t *labels;           /* (N) labels on the device */
    float *sample_loss;        /* (N) */
    int32_t *sample_hit;       /* (N) */
    float *loss_d;             /* (1) */
    int32_t *correct_d;        /* (1) */
};

/* Dropout / drop path (cuda_kernels_drop.cu): y = x (N, E) masked per element (per_sample 0)
 * or per sample (1) by drop_mask.h's hash at rate p and scaled by 1 / (1 - p). */
cudaError_t dpt__cuda_drop_launch(const void *x, void *y, dpt_precision_t t, int N, long E,
                                  float p, int per_sample, uint64_t seed, uint32_t layer,
                                  uint64_t sample0, cudaStream_t s);

/* Channel gate (cuda_kernels_mul.cu): y = x (N, C, P) times g (N, C); backward dx = dy g and
 * dg = sum over P of dy x (either may be NULL). */
cudaError_t dpt__cuda_mul_fwd_launch(const void *x, const void *g, void *y, dpt_precision_t t,
                                     int N, int C, long P, cudaStream_t s);
cudaError_t dpt__cuda_mul_bwd_launch(const void *x, const void *g, const void *dy, void *dx,
                                     void *dg, dpt_precision_t t, int N, int C, long P,
                                     cudaStream_t s);

/* Token embedding (cuda_kernels_embed.cu): tokens y (N, C, 1, P + cls) from x (N, C, P), the
 * class token cls_tok (C) first when cls, plus pos (C, P + cls) when non-NULL; backward: dx
 * (optional) and the batch sums into dcls / dpos (either may be NULL). token_select: y (N, C)
 * = x[:, :, 0] of x (N, C, TT); backward = 1: x is dy (N, C), y the zeroed dx (N, C, TT). */
cudaError_t dpt__cuda_tokens_fwd_launch(const void *x, const float *cls_tok, const float *pos,
                                        void *y, dpt_precision_t t, int N, int C, int P, int cls,
                                        cudaStream_t s);
cudaError_t dpt__cuda_tokens_bwd_launch(const void *dy, void *dx, float *dcls, float *dpos,
                                        dpt_precision_t t, int N, int C, int P, int cls,
                                        cudaStream_t s);
cudaError_t dpt__cuda_token_select_launch(const void *x, void *y, dpt_precision_t t, int N, int C,
                                          int TT, int backward, cudaStream_t s);

/* Status translation (cuda_backend.c): DPT_OK, or DPT_ERR_CUDA naming `what` and the error. */
dpt_status_t dpt__cuda_st(cudaError_t e, const char *what);
dpt_status_t dpt__cuda_dnn_st(cudnnStatus_t e, const char *what);
dpt_status_t dpt__cuda_blas_st(cublasStatus_t e, const char *what);

/* The failing call's whole text (the macro argument, stringized) names it in the message. */
#define CU(call) dpt__cuda_st((call), #call)
#define DNN(call) dpt__cuda_dnn_st((call), #call)
#define BLAS(call) dpt__cuda_blas_st((call), #call)

/* Bytes of one activation element of precision p. */
size_t dpt__cuda_elem_size(dpt_precision_t p);

/* cudaMalloc of at least one byte (setup only). */
dpt_status_t dpt__cuda_dev_alloc(void **p, size_t nbytes);

/* The backend's memcpy (backend.h): queued on the compute stream; D2H returns when done. */
dpt_status_t dpt__cuda_memcpy(dpt_backend_t *be, void *dst, const void *src, size_t nbytes,
                              dpt_copy_kind_t kind);

/* Input i of a forward as the kernels read it: the 16-bit copy when the input is cast
 * (cuda_forward made it before dispatching), else the caller's tensor. */
static inline const void *dpt__cuda_fwd_x(const dpt_op_t *op, const dpt_op_args_t *a, int i)
{
    return op->in_cast[i] ? op->xc[i] : a->x[i]->data;
}

/* Input i, its gradient and the output gradient of a backward; NULL where the caller passes
 * none. A cast input's gradient goes to the 16-bit dxc[i], which cuda_backward casts back. */
static inline const void *dpt__cuda_bwd_x(const dpt_op_t *op, const dpt_op_args_t *a, int i)
{
    return op->in_cast[i] ? op->xc[i] : (a->x[i] ? a->x[i]->data : NULL);
}

static inline void *dpt__cuda_bwd_dx(const dpt_op_t *op, const dpt_op_args_t *a, int i)
{
    return a->dx[i] ? (op->in_cast[i] ? op->dxc[i] : a->dx[i]->data) : NULL;
}

static inline const void *dpt__cuda_bwd_dy(const dpt_op_args_t *a)
{
    return a->dy ? a->dy->data : NULL;
}

/* The ops (rows of the op table in cuda_backend.c; dpt__op_impl_t in backend/internal.h).
 * create runs after the common part of op_create (op->d, op->info, op->dt and the input casts
 * are set); forward runs after the input casts; backward before the input gradients are cast
 * back. */

/* cuda_drop.c: dropout and drop path. */
dpt_status_t dpt__cuda_drop_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_drop_backward(dpt_op_t *op, const dpt_op_args_t *a);

/* cuda_mul.c: the channel gate. */
dpt_status_t dpt__cuda_mul_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_mul_backward(dpt_op_t *op, const dpt_op_args_t *a);

/* cuda_embed.c: tokens and token_select. */
dpt_status_t dpt__cuda_tokens_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_tokens_backward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_token_select_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_token_select_backward(dpt_op_t *op, const dpt_op_args_t *a);

/* cuda_conv.c: convolution with cuDNN. */
dpt_status_t dpt__cuda_conv_create(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__cuda_conv_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_conv_backward(dpt_op_t *op, const dpt_op_args_t *a);

/* cuda_ops.c: fully connected (cuBLAS), batch norm, elementwise, pooling, flatten and loss. */
dpt_status_t dpt__cuda_fc_create(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__cuda_fc_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_fc_backward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_batchnorm_create(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__cuda_batchnorm_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_batchnorm_backward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_relu_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_relu_backward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_celu_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_celu_backward(dpt_op_t *op, const dpt_op_args_t *a);
/* silu, gelu (erf or tanh form), sigmoid: one pair for the three kinds */
dpt_status_t dpt__cuda_act_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_act_backward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_scale_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_scale_backward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_add_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_flatten_forward(dpt_op_t *op, const dpt_op_args_t *a);
/* ADD and FLATTEN: every input gradient is dy. */
dpt_status_t dpt__cuda_copy_backward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_maxpool_create(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__cuda_maxpool_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_maxpool_backward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_gap_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_gap_backward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_xent_create(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__cuda_xent_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_xent_backward(dpt_op_t *op, const dpt_op_args_t *a);

/* cuda_attention.c: the attention core (cuBLAS strided-batched products over the heads);
 * op->save holds the probabilities and the backward's scratch. */
dpt_status_t dpt__cuda_attention_create(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__cuda_attention_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_attention_backward(dpt_op_t *op, const dpt_op_args_t *a);

/* cuda_tokens.c: layernorm (our kernels; op->save holds mean and 1/std per position) and
 * linear (cuBLAS, strided-batched over the samples). */
dpt_status_t dpt__cuda_layernorm_create(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__cuda_layernorm_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_layernorm_backward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_linear_create(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__cuda_linear_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cuda_linear_backward(dpt_op_t *op, const dpt_op_args_t *a);

#ifdef __cplusplus
}
#endif

#endif
