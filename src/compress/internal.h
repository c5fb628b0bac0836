/* internal.h: the codec table behind compress.h. A codec is one file with one dpt__codec_ops_t;
 * codec.c lists them. */
#ifndef DPT_COMPRESS_INTERNAL_H
#define DPT_COMPRESS_INTERNAL_H

#include "dptrain/compress.h"

typedef struct dpt__codec_ops {
    const char *name;
    /* state for a bucket of n floats on `ranks` ranks; `arg` is the text after "name:" or NULL */
    dpt_status_t (*create)(const char *arg, size_t n, int ranks, void **state);
    void (*destroy)(void *state);
    dpt_status_t (*allreduce)(void *state, dpt_coll_t *coll, float *buf, size_t n,
                              dpt_coll_algo_t algo, dpt_codec_stats_t *stats);
    double (*ratio)(const void *state, size_t n);
    /* the state a resume needs (an error-feedback residual), NULL for none */
    float *(*residual)(void *state, size_t *n);
    int needs_arg;   /* "name:ARG" required */
} dpt__codec_ops_t;

extern const dpt__codec_ops_t dpt__codec_fp16, dpt__codec_bf16, dpt__codec_topk;

#endif
