/* compress.h: gradient compression, per bucket (src/compress/, one codec per file behind a
 * table of dpt_codec_ops_t). A codec replaces the bucket's all-reduce (the average over ranks)
 * with its own exchange: encode, collective(s) on a smaller payload, decode. Every decision that
 * changes what is sent is the same on every rank, and every rank ends with the same bits.
 *
 *   --compress none | fp16 | bf16 | topk:FRACTION | powersgd[:RANK] | sign
 *
 * fp16 / bf16: each rank divides its gradients by the rank count in fp32 and rounds once to 16
 * bits (to nearest even); the 16-bit payload is summed with fp32 accumulation at every hop (the
 * collective layer's bf16/fp16 sums) and widened back. Half the bytes; no error feedback.
 * topk:FRACTION: error feedback, the largest entries all-gathered (src/compress/topk.c). */
#ifndef DPT_COMPRESS_H
#define DPT_COMPRESS_H

#include <stddef.h>

#include "dptrain/coll.h"
#include "dptrain/status.h"

typedef struct dpt_codec dpt_codec_t;   /* one bucket's codec and its state */

/* One tensor of a bucket: floats [off, off + rows * cols) of it, a rows x cols matrix in row-major
 * order (a conv weight: out x in*kh*kw; fc: out x in), rows = 1 for a vector (a bias, BN). */
typedef struct dpt_codec_tensor {
    size_t off, rows, cols;
} dpt_codec_tensor_t;

/* What a codec is made for: a bucket of n floats on a job of `ranks` ranks, the tensors it holds
 * (in offset order, covering [0, n); NULL: one vector of n), the first step it compresses (the
 * steps before start_step use the plain fp32 all-reduce: --compress-start), the length of its
 * warm-up after that (top-k's sparsity ramp; the trainer passes the LR warm-up's steps) and, for
 * a codec that owns the momentum (dpt_codec_owns_momentum), the optimizer's momentum. */
typedef struct dpt_codec_bucket {
    size_t n;
    int ranks;
    const dpt_codec_tensor_t *tensors;
    int n_tensors;
    long start_step;
    long warmup_steps;
    float momentum;
    int nesterov;
} dpt_codec_bucket_t;

/* What one call did: bytes of payload this rank sent, encode + decode seconds. */
typedef struct dpt_codec_stats {
    double bytes_sent, t_code;
} dpt_codec_stats_t;

/* Is `spec` a codec ("none" is one: no compression)? DPT_OK, or DPT_ERR_INVALID_ARG naming the
 * codecs there are. */
dpt_status_t dpt_codec_check(const char *spec);
/* Comma-separated names of the codecs (static), for --help and `dptrain info`. */
const char *dpt_codec_list(void);
/* A codec for a bucket (copied; the tensors too); *out = NULL for "none". */
dpt_status_t dpt_codec_create(const char *spec, const dpt_codec_bucket_t *bucket,
                              dpt_codec_t **out);
void dpt_codec_destroy(dpt_codec_t *c);
/* Average buf[0..n) over the ranks of coll through the codec (collective, like
 * dpt_coll_allreduce with DPT_REDOP_AVG) at optimizer step `step` (0-based; the same on every
 * rank: before the bucket's start_step it is the plain fp32 all-reduce). n must not exceed the n
 * of create; a codec that needs the whole bucket (its tensors) runs a shorter call dense. */
dpt_status_t dpt_codec_allreduce(dpt_codec_t *c, dpt_coll_t *coll, float *buf, size_t n,
                                 dpt_coll_algo_t algo, long step, dpt_codec_stats_t *stats);
/* The fraction of the fp32 bytes the codec sends for n floats (1 = none; 0.5 = fp16). With
 * "+zstd" it is the codec's without zstd, an upper bound (zstd's gain is known once sent: the
 * stats' bytes_sent). */
double dpt_codec_ratio(const dpt_codec_t *c, size_t n);
/* The codec's state between steps (*n floats: error-feedback residuals, PowerSGD's warm-start
 * Q), what a bit-exact resume must restore; NULL for a codec without state. */
float *dpt_codec_state(dpt_codec_t *c, size_t *n);
/* Does the codec of `spec` apply the optimizer's momentum itself (top-k's momentum correction)?
 * Then the trainer hands it the momentum and runs the optimizer without. */
int dpt_codec_owns_momentum(const char *spec);
/* Does the codec of `spec` keep state between steps? */
int dpt_codec_stateful(const char *spec);
/* --compress-start auto: the first step the codec of `spec` compresses, given the learning
 * rate's warm-up in optimizer steps: that warm-up for PowerSGD and sign, whose error on the
 * early, large gradients costs accuracy (docs/PERFORMANCE.md), 0 for the casts and for top-k
 * (which ramps its sparsity over the warm-up instead). */
long dpt_codec_auto_start(const char *spec, long warmup_steps);

#endif
