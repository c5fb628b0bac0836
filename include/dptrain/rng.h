/* rng.h: Philox4x32-10, a counter-based RNG (Salmon et al., SC'11). Every random number in dptrain
 * is a pure function of (key, counter), so init, shuffle and augmentation depend only on the seed
 * and config, never on thread scheduling or call order across threads. */
#ifndef DPT_RNG_H
#define DPT_RNG_H

#include <stdint.h>

/* One Philox4x32-10 block: 4 random 32-bit words for (key, counter). */
void dpt_philox4x32(uint64_t key, uint64_t ctr_hi, uint64_t ctr_lo, uint32_t out[4]);

/* A sequential stream over Philox: key fixed, low counter increments per block.
 * `stream` separates independent uses (init, shuffle, augment) under one seed. */
typedef struct dpt_rng {
    uint64_t key;
    uint64_t hi;      /* stream id */
    uint64_t lo;      /* block counter */
    uint32_t buf[4];
    int used;         /* words of buf already consumed (4 = empty) */
} dpt_rng_t;

void dpt_rng_init(dpt_rng_t *r, uint64_t seed, uint64_t stream);
uint32_t dpt_rng_u32(dpt_rng_t *r);
/* Uniform in [0, 1). */
float dpt_rng_uniform(dpt_rng_t *r);
/* Standard normal (Box-Muller). */
float dpt_rng_normal(dpt_rng_t *r);
/* Uniform integer in [0, n) without modulo bias (n > 0). */
uint32_t dpt_rng_below(dpt_rng_t *r, uint32_t n);

/* Well-known stream ids so different uses never overlap. */
enum {
    DPT_RNG_STREAM_INIT = 1,
    DPT_RNG_STREAM_SHUFFLE = 2,
    DPT_RNG_STREAM_AUGMENT = 3,
    DPT_RNG_STREAM_RRC = 4      /* the loader's random resized crop rectangles */
};

#endif
