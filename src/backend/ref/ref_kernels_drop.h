/* ref_kernels_drop.h: the reference kernel of dropout and drop path (ref_drop.c), for float and
 * double: y = x masked and scaled by 1 / (1 - p) per element of each sample (per_sample = 0) or
 * per sample (1), x (N, E) with E = C H W, the masks of drop_mask.h. */
#ifndef DPT_REF_KERNELS_DROP_H
#define DPT_REF_KERNELS_DROP_H

#include <stdint.h>

#define DPT_REF_DROP_DECLARE(T, S)                                                               \
    void dpt__ref_drop_##S(const T *x, T *y, int N, long E, float p, int per_sample,             \
                           uint64_t seed, uint32_t layer, uint64_t sample0);

DPT_REF_DROP_DECLARE(float, f32)
DPT_REF_DROP_DECLARE(double, f64)

#endif
