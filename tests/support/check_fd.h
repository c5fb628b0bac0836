/* check_fd.h: float64 central finite differences for the gradient tests (check_ref_grad.c and
 * the per-op files check_layernorm.c, check_attention.c, check_embed.c, check_mul.c): random and
 * zeroed double vectors, a dot product (the loss L = sum(y * r) for a fixed random r, whose
 * analytic gradient is backward(dy = r)), and the worst relative error of an analytic gradient
 * against central differences (step FD_STEP) of a loss callback:
 * |num - ana| / max(1e-3, |num| + |ana|). Static inline: include from any test file. */
#ifndef DPT_TEST_CHECK_FD_H
#define DPT_TEST_CHECK_FD_H

#include <math.h>
#include <stddef.h>

#include "dptrain/alloc.h"
#include "dptrain/rng.h"

#define FD_STEP 1e-5

/* n doubles uniform in offset +- scale (at least one allocated, so n = 0 is fine). */
static inline double *fd_rand(dpt_rng_t *r, long n, double scale, double offset)
{
    double *v = dpt_malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    for (long i = 0; i < n; i++)
        v[i] = offset + scale * (2.0 * dpt_rng_uniform(r) - 1.0);
    return v;
}

/* n zeroed doubles. */
static inline double *fd_zeros(long n)
{
    return dpt_calloc((size_t)(n > 0 ? n : 1) * sizeof(double));
}

/* sum a[i] b[i] */
static inline double fd_dot(const double *a, const double *b, long n)
{
    double s = 0;
    for (long i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* Largest relative error between central differences of loss(ctx) w.r.t. the n values of var
 * (perturbed in place and restored) and the analytic gradient grad. */
static inline double fd_error(double (*loss)(void *ctx), void *ctx, double *var, long n,
                              const double *grad)
{
    double worst = 0;
    for (long i = 0; i < n; i++) {
        double save = var[i];
        var[i] = save + FD_STEP;
        double lp = loss(ctx);
        var[i] = save - FD_STEP;
        double lm = loss(ctx);
        var[i] = save;
        double num = (lp - lm) / (2 * FD_STEP);
        double err = fabs(num - grad[i]) / fmax(1e-3, fabs(num) + fabs(grad[i]));
        if (err > worst)
            worst = err;
    }
    return worst;
}

#endif
