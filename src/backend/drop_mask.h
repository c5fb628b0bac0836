/* drop_mask.h: the masks of dropout and drop path (stochastic depth), the same on every
 * backend, layout and rank count: whether an element is kept is a hash of (run seed, layer,
 * the sample's position in the run, the element's NCHW index within the sample), never a
 * stateful generator. So a sample gets the same mask whatever rank holds it, np 2 x batch B
 * trains like np 1 x batch 2B, a resumed run draws what the straight run drew, and backward
 * recomputes forward's mask instead of storing it. The position of a sample is
 * (epoch * steps + step) * global batch + its index in the global batch (dpt_op_args_t's
 * rng_sample0 is the first of this rank's shard). Usable from C and CUDA. */
#ifndef DPT_BACKEND_DROP_MASK_H
#define DPT_BACKEND_DROP_MASK_H

#include <stdint.h>

#ifdef __CUDACC__
#define DPT_HD __host__ __device__
#else
#define DPT_HD
#endif

/* splitmix64's finalizer: a bijection of 64-bit values whose outputs pass BigCrush. */
static inline DPT_HD uint64_t dpt_drop_mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The key of one sample in one layer. */
static inline DPT_HD uint64_t dpt_drop_key(uint64_t seed, uint32_t layer, uint64_t sample)
{
    return dpt_drop_mix(dpt_drop_mix(seed ^ ((uint64_t)layer << 40) ^ 0x64726f70ull) ^ sample);
}

/* 1 when element e (drop path: e = DPT_DROP_SAMPLE, the whole sample) is kept at rate p:
 * a 24-bit uniform in [0, 1) at or above p. */
#define DPT_DROP_SAMPLE 0xffffffffffffffffull
static inline DPT_HD int dpt_drop_keep(uint64_t key, uint64_t e, float p)
{
    return (float)(dpt_drop_mix(key ^ e) >> 40) * (1.0f / 16777216.0f) >= p;
}

#endif
