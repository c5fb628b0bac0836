/* ref_kernels_mul.h: the reference kernels of the channel gate (mul: y = x (N, C, P) times
 * g (N, C) broadcast over the P positions), for float and double, defined in ref_mul.c. */
#ifndef DPT_REF_KERNELS_MUL_H
#define DPT_REF_KERNELS_MUL_H

#define DPT_REF_MUL_DECLARE(T, S)                                                                \
    void dpt__ref_mul_fwd_##S(const T *x, const T *g, T *y, int N, int C, long P);               \
    /* dx = dy g, dg[n][c] = sum_p dy x; either may be NULL */                                   \
    void dpt__ref_mul_bwd_##S(const T *x, const T *g, const T *dy, T *dx, T *dg, int N, int C,   \
                              long P);

DPT_REF_MUL_DECLARE(float, f32)
DPT_REF_MUL_DECLARE(double, f64)

#endif
