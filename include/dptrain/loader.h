/* loader.h: turns a dataset into float batches for one rank. Each global batch (batch * nranks
 * samples of a per-epoch permutation drawn from the seed) is split into contiguous rank shards;
 * augmentation randomness is keyed by (seed, epoch, sample position) so it does not depend on the
 * rank count. With prefetch, a pool of worker threads assembles the next batch (its samples split
 * among the workers) while the current step runs; the bytes are the same for any worker count. */
#ifndef DPT_LOADER_H
#define DPT_LOADER_H

#include <stdint.h>

#include "dptrain/dataset.h"
#include "dptrain/status.h"

typedef struct dpt_loader dpt_loader_t;

/* Largest dpt_loader_config_t.workers. */
#define DPT_LOADER_MAX_WORKERS 64

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
    int prefetch;     /* 1: assemble batches on background worker threads, one batch ahead;
                         0: in the caller, inside dpt_loader_next (workers is then unused) */
    int workers;      /* prefetch worker threads, 0..DPT_LOADER_MAX_WORKERS; 0 = automatic: a
                         quarter of the online cores, at least 1 and at most 4; never more than
                         batch. Batches are bitwise identical for every value. */
    int defer_aug;    /* 1: do not apply crop_pad/flip; record them per sample in batch.aug for
                         the device to apply (src/data/gpu_input.cu; not with rrc) */
} dpt_loader_config_t;

typedef struct dpt_batch {
    float *x;         /* (batch, C, H, W) normalized, borrowed until the next dpt_loader_next */
    int32_t *y;       /* (batch); padded samples have label 0 */
    int32_t *aug;     /* defer_aug: (batch, 3) = crop offsets dy, dx in [0, 2*crop_pad] and the
                         flip bit of each sample (dy = dx = crop_pad, 0: unchanged); else NULL */
    int n_valid;      /* real samples in this rank's shard (the rest is padding) */
    int epoch, step;
} dpt_batch_t;

dpt_status_t dpt_loader_create(const dpt_dataset_t *ds, const dpt_loader_config_t *cfg,
                               dpt_loader_t **out);
/* Steps per epoch, identical on every rank. */
int dpt_loader_steps(const dpt_loader_t *ld);
/* Begin epoch `epoch` (0-based): reshuffle and, with prefetch, start assembling step 0. May be
 * called mid-epoch (the batches in progress are abandoned; waits for chunks being assembled). */
dpt_status_t dpt_loader_start_epoch(dpt_loader_t *ld, int epoch);
/* Next batch of the current epoch; DPT_ERR_INVALID_ARG past the last step. No allocation. The
 * previous batch handed out is released (its buffers are refilled by the workers). One caller
 * thread at a time. */
dpt_status_t dpt_loader_next(dpt_loader_t *ld, const dpt_batch_t **out);
/* Stops and joins the worker threads; NULL-safe. */
void dpt_loader_destroy(dpt_loader_t *ld);

#endif
