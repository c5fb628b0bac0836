/* codecs.c: the gradient codecs of the buckets (--compress, compress.h): one per bucket, told
 * the bucket's tensors as matrices (the model's segments' rows), and their state between steps
 * for checkpoints and for the loss scale (bucket.h). bucket.c calls a bucket's codec in place of
 * its all-reduce. */
#include <math.h>
#include <string.h>

#include "bucket/internal.h"
#include "dptrain/alloc.h"

/* Bucket i's codec, told the tensors of its layers (a weight as a matrix, the rest as vectors). */
static dpt_status_t make_codec(dpt_bucketer_t *b, const dpt_param_segment_t *segs, int n_segs,
                               int i)
{
    size_t lo = b->b[i].off, hi = lo + b->b[i].count;
    dpt_codec_tensor_t *t = dpt_calloc((size_t)(n_segs ? n_segs : 1) * sizeof *t);
    if (!t)
        return dpt_error_set(DPT_ERR_NOMEM, "bucketer: out of memory");
    int nt = 0;
    for (int s = 0; s < n_segs; s++)
        if (segs[s].offset >= lo && segs[s].offset + segs[s].count <= hi && segs[s].count) {
            size_t rows = segs[s].rows && segs[s].count % segs[s].rows == 0 ? segs[s].rows : 1;
            t[nt++] = (dpt_codec_tensor_t){segs[s].offset - lo, rows, segs[s].count / rows};
        }
    const dpt_codec_bucket_t bk = {.n = b->b[i].count, .ranks = dpt_coll_size(b->coll),
                                   .tensors = t, .n_tensors = nt,
                                   .start_step = b->cfg.compress_start,
                                   .warmup_steps = b->cfg.compress_warmup,
                                   .momentum = b->cfg.compress_momentum,
                                   .nesterov = b->cfg.compress_nesterov};
    dpt_status_t st = dpt_codec_create(b->cfg.compress, &bk, &b->codec[i]);
    dpt_free(t);
    return st;
}

dpt_status_t dpt__bucket_codecs_create(dpt_bucketer_t *b, const dpt_param_segment_t *segs,
                                       int n_segs)
{
    const dpt_bucket_config_t *cfg = &b->cfg;
    if (!cfg->compress || !strcmp(cfg->compress, "none"))
        return DPT_OK;
    /* device gradients: the codecs run on the pinned host copy of the staging path; NCCL
     * reduces device memory in its own way, and only the casts have device kernels */
    if (cfg->algo == DPT_COLL_ALGO_NCCL) {
        if (dpt__bucket_nccl16(cfg))
            return DPT_OK;   /* bucket.c casts around ncclAllReduce */
        return dpt_error_set(DPT_ERR_UNSUPPORTED, "--compress %s: --allreduce nccl takes fp16 "
                             "or bf16 only; an own algorithm (ring, auto, ...) runs the other "
                             "codecs on the pinned host copy", cfg->compress);
    }
    b->codec = dpt_calloc((size_t)(b->n ? b->n : 1) * sizeof *b->codec);
    if (!b->codec)
        return dpt_error_set(DPT_ERR_NOMEM, "bucketer: out of memory");
    dpt_status_t st = DPT_OK;
    for (int i = 0; i < b->n && st == DPT_OK; i++)
        st = make_codec(b, segs, n_segs, i);
    return st;   /* on failure the caller destroys the bucketer, and with it these */
}

void dpt__bucket_codecs_destroy(dpt_bucketer_t *b)
{
    for (int i = 0; b->codec && i < b->n; i++)
        dpt_codec_destroy(b->codec[i]);
    dpt_free(b->codec);
    b->codec = NULL;
}

int dpt__bucket_nccl16(const dpt_bucket_config_t *cfg)
{
    if (cfg->algo != DPT_COLL_ALGO_NCCL || !cfg->compress)
        return 0;
    return !strcmp(cfg->compress, "fp16") ? 1 : !strcmp(cfg->compress, "bf16") ? 2 : 0;
}

double dpt_bucketer_codec_ratio(const dpt_bucketer_t *b, int i)
{
    if (dpt__bucket_nccl16(&b->cfg))
        return 0.5;
    return b->codec ? dpt_codec_ratio(b->codec[i], b->b[i].count) : 1.0;
}

size_t dpt_bucketer_state_n(const dpt_bucketer_t *b)
{
    size_t total = 0, n;
    for (int i = 0; b && b->codec && i < b->n; i++)
        if (dpt_codec_state(b->codec[i], &n))
            total += n;
    return total;
}

void dpt_bucketer_state(dpt_bucketer_t *b, float *buf, int restore)
{
    size_t at = 0, n;
    for (int i = 0; b && b->codec && i < b->n; i++) {
        float *e = dpt_codec_state(b->codec[i], &n);
        if (!e)
            continue;
        if (restore)
            memcpy(e, buf + at, n * sizeof *e);
        else
            memcpy(buf + at, e, n * sizeof *e);
        at += n;
    }
}

void dpt_bucketer_state_scale(dpt_bucketer_t *b, float factor)
{
    size_t n;
    for (int i = 0; b && b->codec && i < b->n; i++) {
        float *e = dpt_codec_state(b->codec[i], &n);
        for (size_t k = 0; e && k < n; k++)
            e[k] = isfinite(e[k]) ? e[k] * factor : 0.0f;
    }
}
