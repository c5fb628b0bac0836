/* bucket.h: gradient buckets for data-parallel training (PyTorch DDP / Horovod style).
 *
 * The gradient arena is cut, at layer boundaries, into contiguous buckets in backward order:
 * bucket 0 holds the last layers (their gradients are ready first) and is small so communication
 * starts early; the others hold about bucket_bytes each. The model reports each layer's gradient
 * as final (dpt_bucketer_ready, its grad_ready callback); when every layer of a bucket has been
 * reported the bucket is queued to a communication thread that all-reduces (averages) it in
 * place while backward goes on. dpt_bucketer_finish waits for the rest.
 *
 * Every rank cuts the same buckets (computed from the model only) and queues them in the same
 * order (backward order is fixed by the model), so every rank issues the same collectives in the
 * same order. The communication thread is the only thread that calls the collective layer while
 * a step runs (MPI_THREAD_SERIALIZED is enough). Nothing is allocated per step. */
#ifndef DPT_BUCKET_H
#define DPT_BUCKET_H

#include <stddef.h>

#include "dptrain/coll.h"
#include "dptrain/model.h"
#include "dptrain/status.h"

typedef struct dpt_bucketer dpt_bucketer_t;

typedef struct dpt_bucket_config {
    size_t first_bytes;   /* the first bucket (default 1 MiB when 0) */
    size_t bucket_bytes;  /* the others (default 25 MiB when 0) */
    dpt_coll_algo_t algo; /* all-reduce algorithm (DPT_COLL_AUTO: per bucket size) */
    int overlap;          /* 1: communication thread during backward; 0: everything in finish */
    /* Gradients in CUDA device memory (builds with CUDA): stream is the cudaStream_t backward
     * runs on, device its ordinal; NULL = host gradients. A ready bucket is then ordered after
     * the work queued so far on that stream by an event: with algo "nccl" an ncclAllReduce is
     * queued at once on a communication stream; with our own algorithms the bucket is copied to
     * pinned host memory on that stream, reduced by the thread and copied back.
     * dpt_bucketer_finish returns when the arena holds the averages. */
    void *stream;
    int device;
    /* Gradient compression (compress.h): a codec per bucket replaces its all-reduce; NULL or
     * "none": plain fp32 all-reduce. Device gradients: the codecs run on the pinned host copy;
     * with algo "nccl" only fp16 and bf16, cast on the device around a 16-bit ncclAllReduce.
     * The steps before compress_start use the plain all-reduce (--compress-start). */
    const char *compress;
    long compress_start;
    long compress_warmup;      /* the codecs' warm-up in steps (dpt_codec_bucket_t) */
    float compress_momentum;   /* for a codec that owns the momentum; else 0 */
    int compress_nesterov;
} dpt_bucket_config_t;

/* What a step's gradient exchange cost (dpt_bucketer_finish). */
typedef struct dpt_bucket_stats {
    double t_exposed;   /* seconds finish waited (communication not hidden behind backward) */
    double t_comm;      /* seconds of all-reduce (codecs included) in the step */
    double t_code;      /* of which the codecs' encode and decode */
    double bytes_sent;  /* payload this rank handed the transport (dpt_coll_bytes_sent) */
    double bytes_fp32;  /* what the plain fp32 ring all-reduce of the same buckets would send */
} dpt_bucket_stats_t;

/* Plan buckets over the segments of a model's gradient arena `grads` (borrowed, like coll). */
dpt_status_t dpt_bucketer_create(dpt_coll_t *coll, float *grads, const dpt_param_segment_t *segs,
                                 int n_segs, const dpt_bucket_config_t *cfg,
                                 dpt_bucketer_t **out);
/* The largest bucket, in bytes, that create would plan with these segments and cfg (to size a
 * collective context before creating the bucketer). */
size_t dpt_bucket_max_bytes(const dpt_param_segment_t *segs, int n_segs,
                            const dpt_bucket_config_t *cfg);
/* Stops the thread (NULL-safe). No step may be in flight. */
void dpt_bucketer_destroy(dpt_bucketer_t *b);

/* Bucket i's range of the arena, in floats (i in [0, count)). */
int dpt_bucketer_count(const dpt_bucketer_t *b);
void dpt_bucketer_range(const dpt_bucketer_t *b, int i, size_t *offset, size_t *count);

/* What bucket i's codec sends, as a fraction of the plain fp32 all-reduce's bytes (1 without
 * --compress; after any warm-up), for the plan printed at start. */
double dpt_bucketer_codec_ratio(const dpt_bucketer_t *b, int i);

/* The codecs' state (--compress: residuals, PowerSGD's Q), all buckets in index
 * order: how many floats, and a copy out (restore = 0) or in (restore = 1). No step in flight. */
size_t dpt_bucketer_state_n(const dpt_bucketer_t *b);
void dpt_bucketer_state(dpt_bucketer_t *b, float *buf, int restore);
/* Multiply the codecs' state by `factor` (a new loss scale over the old; 1 for none), turning
 * NaN and Inf into 0 (after a skipped step). The same on every rank. No step in flight. */
void dpt_bucketer_state_scale(dpt_bucketer_t *b, float factor);
/* Start optimizer step `step` (0-based, the same on every rank; codecs key --compress-start and
 * their warm-ups on it): nothing is ready. */
void dpt_bucketer_begin(dpt_bucketer_t *b, long step);
/* A layer's gradients grads[offset, offset+count) are final (a dpt_grad_ready_fn; ctx = b). */
void dpt_bucketer_ready(void *ctx, size_t offset, size_t count);
/* Sum buf[0..n) over ranks in place (e.g. synchronized batch-norm statistics), through the
 * communication thread's queue so that it takes its place among the buckets in the same order on
 * every rank; waits for the result. May be called between begin and finish and outside steps. */
dpt_status_t dpt_bucketer_sum(dpt_bucketer_t *b, float *buf, size_t n);
/* Queue every bucket not yet queued (in index order), wait until all are reduced. On DPT_OK the
 * arena holds the average over ranks; *stats (may be NULL) what it cost. The first error of the
 * step is returned (message via dpt_error_get). */
dpt_status_t dpt_bucketer_finish(dpt_bucketer_t *b, dpt_bucket_stats_t *stats);

#endif
