/* rng.c: Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3",
 * SC'11) and a small sequential stream on top of it. */
#include <math.h>

#include "dptrain/rng.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void dpt_philox4x32(uint64_t key, uint64_t ctr_hi, uint64_t ctr_lo, uint32_t out[4])
{
    uint32_t c0 = (uint32_t)ctr_lo, c1 = (uint32_t)(ctr_lo >> 32);
    uint32_t c2 = (uint32_t)ctr_hi, c3 = (uint32_t)(ctr_hi >> 32);
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

void dpt_rng_init(dpt_rng_t *r, uint64_t seed, uint64_t stream)
{
    r->key = seed;
    r->hi = stream;
    r->lo = 0;
    r->used = 4;
}

uint32_t dpt_rng_u32(dpt_rng_t *r)
{
    if (r->used == 4) {
        dpt_philox4x32(r->key, r->hi, r->lo++, r->buf);
        r->used = 0;
    }
    return r->buf[r->used++];
}

float dpt_rng_uniform(dpt_rng_t *r)
{
    return (float)(dpt_rng_u32(r) >> 8) * (1.0f / 16777216.0f);
}

float dpt_rng_normal(dpt_rng_t *r)
{
    /* Box-Muller; u1 in (0, 1] so the log is finite. */
    float u1 = ((float)(dpt_rng_u32(r) >> 8) + 1.0f) * (1.0f / 16777216.0f);
    float u2 = dpt_rng_uniform(r);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530718f * u2);
}

uint32_t dpt_rng_below(dpt_rng_t *r, uint32_t n)
{
    /* Lemire's multiply-shift with rejection. */
    uint64_t m = (uint64_t)dpt_rng_u32(r) * n;
    uint32_t lo = (uint32_t)m;
    if (lo < n) {
        uint32_t t = (uint32_t)(-n) % n;
        while (lo < t) {
            m = (uint64_t)dpt_rng_u32(r) * n;
            lo = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}
