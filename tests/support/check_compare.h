/* check_compare.h: random inputs, the op shapes and the relative error the backend comparisons
 * use (tests/unit/check_cpu_backend.c, tests/gpu/check_cuda_ops.c). */
#ifndef DPT_TEST_CHECK_COMPARE_H
#define DPT_TEST_CHECK_COMPARE_H

#include <math.h>
#include <stddef.h>

#include "dptrain/alloc.h"
#include "dptrain/backend.h"
#include "dptrain/rng.h"

/* n floats uniform in offset +- scale (64 spare bytes: kernels may read a vector past the end). */
static inline float *randv(dpt_rng_t *r, size_t n, float scale, float offset)
{
    float *v = dpt_malloc(n * sizeof(float) + 64);
    for (size_t i = 0; i < n; i++)
        v[i] = offset + scale * (2.0f * dpt_rng_uniform(r) - 1.0f);
    return v;
}

/* The tensor shapes every op is compared at, and an op of `kind` on shape i of them. */
static const int shape_cases[][4] = {{4, 3, 5, 5}, {2, 16, 7, 9}, {5, 20, 3, 3}, {3, 32, 6, 6}};
#define N_SHAPES ((int)(sizeof shape_cases / sizeof shape_cases[0]))

static inline dpt_op_desc_t shaped(dpt_op_kind_t kind, int i)
{
    const int *s = shape_cases[i];
    dpt_op_desc_t d = {.kind = kind, .n_in = dpt_op_n_inputs(kind), .bn_eps = 1e-5f,
                       .bn_momentum = 0.1f, .alpha = 0.7f, .pool_k = 2, .pool_stride = 2,
                       .out_features = 11, .has_bias = 1};
    d.in[0] = d.in[1] = dpt_tensor_shape(s[0], s[1], s[2], s[3]);
    return d;
}

/* max |a - b| / max(1e-6, max |b|) */
static inline double rel_err(const float *a, const float *b, size_t n)
{
    double diff = 0, mag = 1e-6;
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        mag = fmax(mag, fabs((double)b[i]));
    }
    return diff / mag;
}

#endif
