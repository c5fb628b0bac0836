/* reduce.c: the arithmetic of the collective layer: elementwise sums with a fixed operand order,
 * the AVG division, and the deterministic rank-ordered fold. Every algorithm reduces through these
 * functions only, so the same operands in the same order give the same bits on every rank. */
#include "comm/internal.h"

/* Elements processed per tile of the fold, so the f32 accumulator stays in L1 across the p
 * contributions (4 KiB of floats). */
#define FOLD_TILE 1024

void dpt__reduce(dpt_dtype_t dtype, void *dst, const void *a, const void *b, size_t n)
{
    switch (dtype) {
    case DPT_DTYPE_F32: {
        float *d = dst;
        const float *x = a, *y = b;
        for (size_t i = 0; i < n; i++)
            d[i] = x[i] + y[i];
        break;
    }
    case DPT_DTYPE_BF16: {
        uint16_t *d = dst;
        const uint16_t *x = a, *y = b;
        for (size_t i = 0; i < n; i++)
            d[i] = dpt__f32_to_bf16(dpt__bf16_to_f32(x[i]) + dpt__bf16_to_f32(y[i]));
        break;
    }
    case DPT_DTYPE_F16: {
        uint16_t *d = dst;
        const uint16_t *x = a, *y = b;
        for (size_t i = 0; i < n; i++)
            d[i] = dpt__f32_to_f16(dpt__f16_to_f32(x[i]) + dpt__f16_to_f32(y[i]));
        break;
    }
    default:
        break;
    }
}

void dpt__scale_avg(dpt_dtype_t dtype, void *buf, size_t n, int p)
{
    float fp = (float)p;
    switch (dtype) {
    case DPT_DTYPE_F32: {
        float *d = buf;
        for (size_t i = 0; i < n; i++)
            d[i] = d[i] / fp;
        break;
    }
    case DPT_DTYPE_BF16: {
        uint16_t *d = buf;
        for (size_t i = 0; i < n; i++)
            d[i] = dpt__f32_to_bf16(dpt__bf16_to_f32(d[i]) / fp);
        break;
    }
    case DPT_DTYPE_F16: {
        uint16_t *d = buf;
        for (size_t i = 0; i < n; i++)
            d[i] = dpt__f32_to_f16(dpt__f16_to_f32(d[i]) / fp);
        break;
    }
    default:
        break;
    }
}

/* acc[i] = x[i] (start = 1) or acc[i] = acc[i] + x[i] (start = 0), x of dtype. */
static void accumulate(dpt_dtype_t dtype, float *acc, const void *x, size_t n, int start)
{
    if (dtype == DPT_DTYPE_F32) {
        const float *v = x;
        if (start)
            memcpy(acc, v, n * sizeof(float));
        else
            for (size_t i = 0; i < n; i++)
                acc[i] = acc[i] + v[i];
        return;
    }
    const uint16_t *h = x;
    if (dtype == DPT_DTYPE_BF16) {
        for (size_t i = 0; i < n; i++)
            acc[i] = start ? dpt__bf16_to_f32(h[i]) : acc[i] + dpt__bf16_to_f32(h[i]);
    } else {
        for (size_t i = 0; i < n; i++)
            acc[i] = start ? dpt__f16_to_f32(h[i]) : acc[i] + dpt__f16_to_f32(h[i]);
    }
}

/* Divide the f32 accumulator for AVG, round it to dtype and store it at o. */
static void fold_store(dpt_dtype_t dtype, dpt_redop_t op, int p, float *acc, size_t tn, void *o)
{
    float fp = (float)p;
    if (op == DPT_REDOP_AVG)
        for (size_t i = 0; i < tn; i++)
            acc[i] = acc[i] / fp;
    uint16_t *h = o;
    if (dtype == DPT_DTYPE_F32)
        memcpy(o, acc, tn * sizeof(float));
    else if (dtype == DPT_DTYPE_BF16)
        for (size_t i = 0; i < tn; i++)
            h[i] = dpt__f32_to_bf16(acc[i]);
    else
        for (size_t i = 0; i < tn; i++)
            h[i] = dpt__f32_to_f16(acc[i]);
}

void dpt__fold_ptrs(dpt_dtype_t dtype, dpt_redop_t op, int p, const void *const *src, size_t n,
                    float *acc, size_t acc_n, void *out)
{
    size_t esize = dpt_dtype_size(dtype);
    for (size_t t0 = 0; t0 < n; t0 += acc_n) {
        size_t tn = n - t0 < acc_n ? n - t0 : acc_n;
        for (int j = 0; j < p; j++)
            accumulate(dtype, acc, (const unsigned char *)src[j] + t0 * esize, tn, j == 0);
        fold_store(dtype, op, p, acc, tn, (unsigned char *)out + t0 * esize);
    }
}

void dpt__fold_rank_order(dpt_dtype_t dtype, dpt_redop_t op, int p, int own_rank,
                          const void *own, const unsigned char *slots, size_t slot_stride,
                          size_t n, float *acc, void *out)
{
    size_t esize = dpt_dtype_size(dtype);
    for (size_t t0 = 0; t0 < n; t0 += FOLD_TILE) {
        size_t tn = n - t0 < FOLD_TILE ? n - t0 : FOLD_TILE;
        for (int j = 0; j < p; j++) {
            const unsigned char *x = j == own_rank
                ? (const unsigned char *)own
                : slots + (size_t)(j - (j > own_rank)) * slot_stride;
            accumulate(dtype, acc, x + t0 * esize, tn, j == 0);
        }
        fold_store(dtype, op, p, acc, tn, (unsigned char *)out + t0 * esize);
    }
}
