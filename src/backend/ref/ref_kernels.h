/* ref_kernels.h: the plain-C reference kernels behind the `ref` backend, generated for float
 * (the backend) and double (finite-difference gradient checks) from ref_kernels.inc.
 * All tensors are plain NCHW; shapes are passed explicitly; no allocation except where stated. */
#ifndef DPT_REF_KERNELS_H
#define DPT_REF_KERNELS_H

#include <stdint.h>

#define DPT_REF_DECLARE(T, S)                                                                     \
    void dpt__ref_conv_fwd_##S(const T *x, const T *w, const T *b, T *y, int N, int C, int H,     \
                               int W, int O, int KH, int KW, int stride, int pad, int G, int OH,  \
                               int OW);                                                           \
    void dpt__ref_conv_bwd_##S(const T *x, const T *w, const T *dy, T *dx, T *dw, T *db, int N,   \
                               int C, int H, int W, int O, int KH, int KW, int stride, int pad,   \
                               int G, int OH, int OW);                                            \
    void dpt__ref_bn_fwd_train_##S(const T *x, const T *gamma, const T *beta, T *y, T *mean,      \
                                   T *var, int N, int C, int HW, T eps, int relu);                \
    void dpt__ref_bn_fwd_eval_##S(const T *x, const T *gamma, const T *beta, const T *rmean,      \
                                  const T *rvar, T *y, int N, int C, int HW, T eps, int relu);    \
    void dpt__ref_bn_bwd_##S(const T *x, const T *gamma, const T *mean, const T *var,             \
                             const T *y, const T *dy, T *dx, T *dgamma, T *dbeta, int N, int C,   \
                             int HW, T eps, int relu);                                            \
    void dpt__ref_relu_fwd_##S(const T *x, T *y, long n);                                         \
    void dpt__ref_relu_bwd_##S(const T *y, const T *dy, T *dx, long n);                           \
    void dpt__ref_celu_fwd_##S(const T *x, T *y, long n, T alpha);                                \
    void dpt__ref_celu_bwd_##S(const T *x, const T *dy, T *dx, long n, T alpha);                  \
    void dpt__ref_silu_fwd_##S(const T *x, T *y, long n);                                         \
    void dpt__ref_silu_bwd_##S(const T *x, const T *dy, T *dx, long n);                           \
    void dpt__ref_gelu_fwd_##S(const T *x, T *y, long n, int tanh_form);                          \
    void dpt__ref_gelu_bwd_##S(const T *x, const T *dy, T *dx, long n, int tanh_form);            \
    void dpt__ref_sigmoid_fwd_##S(const T *x, T *y, long n);                                      \
    /* from the output y of forward */                                                            \
    void dpt__ref_sigmoid_bwd_##S(const T *y, const T *dy, T *dx, long n);                        \
    void dpt__ref_maxpool_fwd_##S(const T *x, T *y, int32_t *argmax, int N, int C, int H, int W,  \
                                  int K, int stride, int pad, int OH, int OW);                    \
    void dpt__ref_maxpool_bwd_##S(const int32_t *argmax, const T *dy, T *dx, int N, int C, int H, \
                                  int W, int OH, int OW);                                         \
    void dpt__ref_gap_fwd_##S(const T *x, T *y, int N, int C, int HW);                            \
    void dpt__ref_gap_bwd_##S(const T *dy, T *dx, int N, int C, int HW);                          \
    void dpt__ref_fc_fwd_##S(const T *x, const T *w, const T *b, T *y, int N, int IN, int OUT);   \
    void dpt__ref_fc_bwd_##S(const T *x, const T *w, const T *dy, T *dx, T *dw, T *db, int N,     \
                             int IN, int OUT);                                                    \
    double dpt__ref_xent_fwd_##S(const T *logits, const int32_t *labels, T *prob, int N, int K,   \
                                 int n_valid, T smoothing, int32_t *correct);                     \
    void dpt__ref_xent_bwd_##S(const T *prob, const int32_t *labels, T *dlogits, int N, int K,    \
                               int n_valid, T smoothing);

DPT_REF_DECLARE(float, f32)
DPT_REF_DECLARE(double, f64)

/* Multi-head self-attention core (ref_kernels_attention.inc): x (N, 3D, 1, L) fused q, k, v ->
 * y (N, D, 1, L); p receives the probabilities (N, heads, L, L), query-major; backward
 * overwrites dx (all of dq, dk, dv) from the p of forward. */
#define DPT_REF_DECLARE_ATTENTION(T, S)                                                           \
    void dpt__ref_attention_fwd_##S(const T *x, T *y, T *p, int N, int D, int heads, int L);     \
    void dpt__ref_attention_bwd_##S(const T *x, const T *p, const T *dy, T *dx, int N, int D,    \
                                    int heads, int L);

DPT_REF_DECLARE_ATTENTION(float, f32)
DPT_REF_DECLARE_ATTENTION(double, f64)

/* layernorm and linear (ref_kernels_tokens.inc) on NCHW (N, C, HW): per position, over channels.
 * layernorm saves mean and rstd = 1/sqrt(var + eps) per position (N*HW each, may be NULL);
 * NULL outputs of the backwards are skipped; b may be NULL (no bias). */
#define DPT_REF_DECLARE_TOKENS(T, S)                                                              \
    void dpt__ref_layernorm_fwd_##S(const T *x, const T *gamma, const T *beta, T *y, T *mean,    \
                                    T *rstd, int N, int C, int HW, T eps);                        \
    void dpt__ref_layernorm_bwd_##S(const T *x, const T *gamma, const T *mean, const T *rstd,    \
                                    const T *dy, T *dx, T *dgamma, T *dbeta, int N, int C,        \
                                    int HW);                                                      \
    void dpt__ref_linear_fwd_##S(const T *x, const T *w, const T *b, T *y, int N, int C, int HW, \
                                 int OUT);                                                        \
    void dpt__ref_linear_bwd_##S(const T *x, const T *w, const T *dy, T *dx, T *dw, T *db, int N, \
                                 int C, int HW, int OUT);

DPT_REF_DECLARE_TOKENS(float, f32)
DPT_REF_DECLARE_TOKENS(double, f64)

#endif
