/* internal.h: the codec table behind compress.h. A codec is one file with one dpt__codec_ops_t;
 * codec.c lists them. */
#ifndef DPT_COMPRESS_INTERNAL_H
#define DPT_COMPRESS_INTERNAL_H

#include "compress/wire.h"
#include "dptrain/compress.h"

enum { DPT__ARG_NONE = 0, DPT__ARG_REQUIRED = 1, DPT__ARG_OPTIONAL = 2 };
/* "none+zstd": the fp32 average through a zstd wire (cast16.c; not in the table, "none" is) */
extern const struct dpt__codec_ops dpt__codec_fp32;

typedef struct dpt__codec_ops {
    const char *name;
    /* state for a bucket; `arg` is the text after "name:" or NULL. With bucket->n == 0 it only
     * checks arg (dpt_codec_check). */
    dpt_status_t (*create)(const char *arg, const dpt_codec_bucket_t *bucket, void **state);
    void (*destroy)(void *state);
    dpt_status_t (*allreduce)(void *state, dpt_coll_t *coll, float *buf, size_t n,
                              dpt_coll_algo_t algo, long step, dpt_codec_stats_t *stats);
    double (*ratio)(const void *state, size_t n);
    /* the floats a resume needs (residuals, warm-start Q), NULL for none */
    float *(*state)(void *state, size_t *n);
    int needs_arg;   /* DPT__ARG_NONE, DPT__ARG_REQUIRED ("name:ARG") or DPT__ARG_OPTIONAL */
    int owns_momentum;   /* 1: applies the optimizer's momentum itself (bucket->momentum) */
    /* optional: the codec sends through a wire (wire.h: dpt__wire_allgather, _allreduce), so it
     * takes "NAME+zstd"; called once after create with the wire (owned by codec.c, destroyed
     * after the state). Without +zstd it is not called and the codec's wire is NULL. */
    dpt_status_t (*set_wire)(void *state, dpt__wire_t *wire);
    /* 1: --compress-start auto waits for the end of the learning rate's warm-up (a code whose
     * error on the early, large gradients hurts accuracy: PowerSGD, sign); 0: from step 0 */
    int start_after_warmup;
} dpt__codec_ops_t;

extern const dpt__codec_ops_t dpt__codec_fp16, dpt__codec_bf16, dpt__codec_topk;
extern const dpt__codec_ops_t dpt__codec_powersgd;
extern const dpt__codec_ops_t dpt__codec_sign;

#endif
