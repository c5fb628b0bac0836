/* internal.h: helpers shared by the files of src/data (dataset.c and the fmt_*.c readers).
 * Not installed; nothing outside src/data includes it. */
#ifndef DPT_DATA_INTERNAL_H
#define DPT_DATA_INTERNAL_H

#include <stdint.h>

#include "dptrain/dataset.h"

/* Refuse headers beyond these before allocating: a corrupt or hostile header must fail with
 * DPT_ERR_FORMAT, not with a multi-terabyte allocation. */
#define DPT__DATA_MAX_IMAGES 10000000
#define DPT__DATA_MAX_SIDE 4096
#define DPT__DATA_MAX_BYTES ((uint64_t)1 << 33)   /* 8 GiB of uint8 pixels */

/* Allocate an empty dataset of n images (c, h, w) with k classes; images and labels are
 * uninitialized, mean/std are 0 and name is "". The caller checked the dims against the limits
 * above. DPT_ERR_NOMEM (with a message naming `what`) on failure. */
dpt_status_t dpt__dataset_alloc(int n, int c, int h, int w, int k, const char *what,
                                dpt_dataset_t **out);

/* Set ds->mean/std from the pixels of ds itself (per channel, in [0,1] pixel units). */
void dpt__dataset_pixel_stats(dpt_dataset_t *ds);

/* "synthetic:N:C:H:W:K" (spec is the whole string, for messages): deterministic learnable data
 * from `seed`; train and test use different sample streams over the same class prototypes. */
dpt_status_t dpt__dataset_open_synthetic(const char *spec, int train, uint64_t seed,
                                         dpt_dataset_t **out);

/* "shards:DIR": the shards written by `dptrain prepare` (fmt_shard.c). `train` selects the records
 * of the train shards, otherwise the val shards; mean/std come from the shard header (train
 * statistics). Errors name the shard file and the chunk or record. */
dpt_status_t dpt__dataset_open_shards(const char *dir, int train, dpt_dataset_t **out);

#endif
