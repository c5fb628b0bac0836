/* ref_mul.c: the `ref` backend's channel gate (mul), squeeze-excitation's scaling of a feature
 * map x0 (N, C, H, W) by a per-sample, per-channel gate x1 (N, C, 1, 1): its kernels, written
 * once over the element type (float for the backend, double for finite differences), and the op.
 * The gate's gradient sums over the positions in double, in position order. */
#include "backend/ref/ref_internal.h"
#include "backend/ref/ref_kernels_mul.h"

#define DPT_REF_MUL_DEFINE(T, S)                                                                 \
    void dpt__ref_mul_fwd_##S(const T *x, const T *g, T *y, int N, int C, long P)                \
    {                                                                                            \
        for (long i = 0; i < (long)N * C; i++)                                                   \
            for (long p = 0; p < P; p++)                                                         \
                y[i * P + p] = x[i * P + p] * g[i];                                              \
    }                                                                                            \
                                                                                                 \
    void dpt__ref_mul_bwd_##S(const T *x, const T *g, const T *dy, T *dx, T *dg, int N, int C,   \
                              long P)                                                            \
    {                                                                                            \
        for (long i = 0; i < (long)N * C; i++) {                                                 \
            double s = 0;                                                                        \
            for (long p = 0; p < P; p++) {                                                       \
                s += (double)dy[i * P + p] * x[i * P + p];                                       \
                if (dx)                                                                          \
                    dx[i * P + p] = dy[i * P + p] * g[i];                                        \
            }                                                                                    \
            if (dg)                                                                              \
                dg[i] = (T)s;                                                                    \
        }                                                                                        \
    }

DPT_REF_MUL_DEFINE(float, f32)
DPT_REF_MUL_DEFINE(double, f64)

dpt_status_t dpt__ref_mul_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *x = &op->d.in[0];
    dpt__ref_mul_fwd_f32(a->x[0]->data, a->x[1]->data, a->y->data, x->n, x->c,
                         (long)x->h * x->w);
    return DPT_OK;
}

dpt_status_t dpt__ref_mul_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *x = &op->d.in[0];
    dpt__ref_mul_bwd_f32(a->x[0]->data, a->x[1]->data, a->dy->data,
                         a->dx[0] ? a->dx[0]->data : NULL, a->dx[1] ? a->dx[1]->data : NULL,
                         x->n, x->c, (long)x->h * x->w);
    return DPT_OK;
}
