/* ref_kernels_embed.h: the reference kernels of the token embedding ops (tokens, token_select),
 * for float (the ref backend) and double (finite-difference checks), from ref_kernels_embed.c.
 * Plain NCHW: x (N, C, H, W) with P = H W positions, tokens y (N, C, 1, T), T = P + cls. */
#ifndef DPT_REF_KERNELS_EMBED_H
#define DPT_REF_KERNELS_EMBED_H

#define DPT_REF_EMBED_DECLARE(T, S)                                                              \
    /* y[n][c][cls + p] = x[n][c][p] (+ pos[c][cls + p]); y[n][c][0] = cls_tok[c] (+ pos[c][0]) \
     * when cls; cls_tok / pos NULL: none. */                                                    \
    void dpt__ref_tokens_fwd_##S(const T *x, const T *cls_tok, const T *pos, T *y, int N, int C, \
                                 int P, int cls);                                                \
    /* dx (optional) = dy's image positions; dcls[c] = sum_n dy[n][c][0]; dpos = sum_n dy. */   \
    void dpt__ref_tokens_bwd_##S(const T *dy, T *dx, T *dcls, T *dpos, int N, int C, int P,      \
                                 int cls);                                                       \
    void dpt__ref_token_select_fwd_##S(const T *x, T *y, int N, int C, int TT);                  \
    void dpt__ref_token_select_bwd_##S(const T *dy, T *dx, int N, int C, int TT);

DPT_REF_EMBED_DECLARE(float, f32)
DPT_REF_EMBED_DECLARE(double, f64)

#endif
