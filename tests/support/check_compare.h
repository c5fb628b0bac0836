/* check_compare.h: random inputs and the relative error the backend comparisons use
 * (tests/unit/check_cpu_backend.c, tests/gpu/check_cuda_ops.c). */
#ifndef DPT_TEST_CHECK_COMPARE_H
#define DPT_TEST_CHECK_COMPARE_H

#include <math.h>
#include <stddef.h>

#include "dptrain/alloc.h"
#include "dptrain/rng.h"

/* n floats uniform in offset +- scale (64 spare bytes: kernels may read a vector past the end). */
static inline float *randv(dpt_rng_t *r, size_t n, float scale, float offset)
{
    float *v = dpt_malloc(n * sizeof(float) + 64);
    for (size_t i = 0; i < n; i++)
        v[i] = offset + scale * (2.0f * dpt_rng_uniform(r) - 1.0f);
    return v;
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
