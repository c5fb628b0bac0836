/* coll_fixture.h: inputs and references shared by the collective tests (tests/unit/check_coll.c
 * on threads, tests/mpi/check_coll_mpi.c over MPI): every rank's input is a pure function of
 * (seed, rank, element), so any rank can rebuild all inputs and compute the rank-ordered left fold
 * or a float64 reference itself; tolerances follow the dtype's unit roundoff. Header-only (static
 * inline) so that both test executables include it without another library. */
#ifndef DPT_TEST_COLL_FIXTURE_H
#define DPT_TEST_COLL_FIXTURE_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "comm/internal.h"
#include "dptrain/coll.h"
#include "dptrain/rng.h"

/* One all-reduce input: `count` elements of `dtype` per rank, reduced with `op`. */
typedef struct fx_input {
    size_t count;
    dpt_dtype_t dtype;
    dpt_redop_t op;
    int specials; /* 0: none; 1: NaN and +-Inf planted, NaN payloads differ by rank; 2: same */
    uint64_t seed;
} fx_input_t;

static inline const char *fx_dtype_name(dpt_dtype_t d)
{
    return d == DPT_DTYPE_F32 ? "f32" : d == DPT_DTYPE_BF16 ? "bf16" : "f16";
}

static inline uint32_t fx_from_f32(dpt_dtype_t d, float f)
{
    return d == DPT_DTYPE_F32    ? dpt__f32_bits(f)
           : d == DPT_DTYPE_BF16 ? dpt__f32_to_bf16(f)
                                 : dpt__f32_to_f16(f);
}

static inline float fx_to_f32(dpt_dtype_t d, uint32_t bits)
{
    return d == DPT_DTYPE_F32    ? dpt__bits_f32(bits)
           : d == DPT_DTYPE_BF16 ? dpt__bf16_to_f32((uint16_t)bits)
                                 : dpt__f16_to_f32((uint16_t)bits);
}

static inline uint32_t fx_load(dpt_dtype_t d, const void *buf, size_t i)
{
    if (d == DPT_DTYPE_F32)
        return ((const uint32_t *)buf)[i];
    return ((const uint16_t *)buf)[i];
}

static inline void fx_store(dpt_dtype_t d, void *buf, size_t i, uint32_t bits)
{
    if (d == DPT_DTYPE_F32)
        ((uint32_t *)buf)[i] = bits;
    else
        ((uint16_t *)buf)[i] = (uint16_t)bits;
}

/* A quiet NaN of dtype d carrying `payload` in its low mantissa bits. */
static inline uint32_t fx_nan_bits(dpt_dtype_t d, int payload)
{
    return d == DPT_DTYPE_F32    ? 0x7fc00000u | (uint32_t)payload
           : d == DPT_DTYPE_BF16 ? 0x7fc0u | (uint32_t)(payload & 0x3f)
                                 : 0x7e00u | (uint32_t)(payload & 0x1ff);
}

static inline uint32_t fx_inf_bits(dpt_dtype_t d, int neg)
{
    uint32_t b = d == DPT_DTYPE_F32 ? 0x7f800000u : d == DPT_DTYPE_BF16 ? 0x7f80u : 0x7c00u;
    uint32_t s = d == DPT_DTYPE_F32 ? 0x80000000u : 0x8000u;
    return neg ? b | s : b;
}

/* Rank r's element i (of p ranks) as bits of its dtype: uniform in [-1, 1) times 2^[-3, 3], so
 * that rounding depends on the order of additions, plus NaN/Inf at positions 1..5 and count-1
 * when specials are asked for and count >= 8 (Inf + -Inf at position 4 when p > 1). */
static inline uint32_t fx_input_bits(const fx_input_t *in, int p, int r, size_t i)
{
    dpt_dtype_t d = in->dtype;
    if (in->specials && in->count >= 8) {
        int payload = in->specials == 1 ? r + 1 : 1;
        if (i == 1 && r == 1 % p)
            return fx_nan_bits(d, payload);
        if (i == 2)
            return fx_nan_bits(d, payload);
        if (i == 3 && r == 0)
            return fx_inf_bits(d, 0);
        if (i == 4 && (r == 0 || r == p - 1))
            return fx_inf_bits(d, r == p - 1 && p > 1);
        if (i == 5)
            return fx_inf_bits(d, 1);
        if (i == in->count - 1 && r == p - 1)
            return fx_nan_bits(d, in->specials == 1 ? 0x15 : 1);
    }
    uint32_t w[4];
    dpt_philox4x32(in->seed, (uint64_t)r, (uint64_t)i, w);
    float u = (float)(w[0] >> 8) * (1.0f / 16777216.0f) * 2.0f - 1.0f;
    return fx_from_f32(d, ldexpf(u, (int)(w[1] % 7) - 3));
}

static inline void fx_fill(const fx_input_t *in, int p, int r, void *buf)
{
    for (size_t i = 0; i < in->count; i++)
        fx_store(in->dtype, buf, i, fx_input_bits(in, p, r, i));
}

/* The canonical deterministic result, written independently of the library: the left fold over
 * ranks in f32, AVG divided once, rounded once to the dtype. */
static inline uint32_t fx_canonical_bits(const fx_input_t *in, int p, size_t i)
{
    float acc = fx_to_f32(in->dtype, fx_input_bits(in, p, 0, i));
    for (int r = 1; r < p; r++)
        acc = acc + fx_to_f32(in->dtype, fx_input_bits(in, p, r, i));
    if (in->op == DPT_REDOP_AVG)
        acc = acc / (float)p;
    return fx_from_f32(in->dtype, acc);
}

/* Check one result element against the exact sum `sum` (float64) of the inputs and the sum of
 * their finite magnitudes `sumabs`: NaN where the sum is NaN, the same Inf, otherwise within
 * (p + 2) unit roundoffs of sumabs (each of the p - 1 additions, the AVG division and the final
 * rounding round once), divided by p for AVG, plus a floor for fp16 subnormals. Returns 1 if the
 * element is acceptable, else 0 with an explanation in why. */
static inline int fx_check_element(const fx_input_t *in, int p, double sum, double sumabs,
                                   uint32_t got, char *why, size_t why_len)
{
    double u = in->dtype == DPT_DTYPE_F32    ? ldexp(1, -24)
               : in->dtype == DPT_DTYPE_BF16 ? ldexp(1, -8)
                                             : ldexp(1, -11);
    double g = fx_to_f32(in->dtype, got), scale = in->op == DPT_REDOP_AVG ? p : 1;
    if (isnan(sum)) {
        if (isnan(g))
            return 1;
        snprintf(why, why_len, "%g, expected NaN", g);
        return 0;
    }
    if (isinf(sum)) {
        if (g == sum)
            return 1;
        snprintf(why, why_len, "%g, expected %g", g, sum);
        return 0;
    }
    double tol = ((p + 2) * u * sumabs + (p + 2) * ldexp(1, -24)) / scale;
    if (fabs(g - sum / scale) <= tol)
        return 1;
    snprintf(why, why_len, "%.9g, reference %.9g (tolerance %.3g)", g, sum / scale, tol);
    return 0;
}

/* Exact float64 sum over ranks of element i, and of the finite magnitudes. */
static inline void fx_reference(const fx_input_t *in, int p, size_t i, double *sum,
                                double *sumabs)
{
    *sum = *sumabs = 0;
    for (int r = 0; r < p; r++) {
        double x = fx_to_f32(in->dtype, fx_input_bits(in, p, r, i));
        *sum += x;
        *sumabs += isfinite(x) ? fabs(x) : 0;
    }
}

#endif
