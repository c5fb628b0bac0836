/* loader.h: turns a dataset into float batches for one rank. Each global batch (batch * nranks
 * samples of a per-epoch permutation drawn from the seed) is split into contiguous rank shards;
 * augmentation randomness is keyed by (seed, epoch, sample position) so it does not depend on the
 * rank count. A prefetch thread assembles the next batch while the current step runs. */
#ifndef DPT_LOADER_H
#define DPT_LOADER_H

#include <stdint.h>

#include "dptrain/dataset.h"
#include "dptrain/status.h"

typedef struct dpt_loader dpt_loader_t;

typedef struct dpt_loader_config {
    int batch;        /* samples per rank per step */
    int rank, nranks; /* this rank's shard of each global batch (0, 1 for one process) */
    uint64_t seed;
    int shuffle;      /* permute per epoch (train) or keep file order (eval) */
    int drop_last;    /* 1: drop the incomplete tail; 0: pad the last global batch (n_valid) */
    int crop_pad;     /* random crop after zero padding by this many pixels (0 = off) */
    int flip;         /* random horizontal flip with p = 0.5 */
    int rrc;          /* random resized crop (Inception-style; not together with crop_pad): a
                         rectangle of area fraction in rrc_scale and aspect w/h in rrc_ratio,
                         resized back to H x W with bilinear interpolation */
    float rrc_scale[2];   /* e.g. {0.35, 1} */
    float rrc_ratio[2];   /* e.g. {3/4, 4/3} */
    int prefetch;     /* 1: assemble batches on a background thread */
} dpt_loader_config_t;

typedef struct dpt_batch {
    float *x;         /* (batch, C, H, W) normalized, borrowed until the next dpt_loader_next */
    int32_t *y;       /* (batch); padded samples have label 0 */
    int n_valid;      /* real samples in this rank's shard (the rest is padding) */
    int epoch, step;
} dpt_batch_t;

dpt_status_t dpt_loader_create(const dpt_dataset_t *ds, const dpt_loader_config_t *cfg,
                               dpt_loader_t **out);
/* Steps per epoch, identical on every rank. */
int dpt_loader_steps(const dpt_loader_t *ld);
/* Begin epoch `epoch` (0-based): reshuffle and, with prefetch, start assembling step 0. */
dpt_status_t dpt_loader_start_epoch(dpt_loader_t *ld, int epoch);
/* Next batch of the current epoch; DPT_ERR_INVALID_ARG past the last step. No allocation. */
dpt_status_t dpt_loader_next(dpt_loader_t *ld, const dpt_batch_t **out);
/* Stops the prefetch thread; NULL-safe. */
void dpt_loader_destroy(dpt_loader_t *ld);

#endif
