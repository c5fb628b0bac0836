/* internal.h: what the bucketer's files share (bucket.c: the step and the communication thread;
 * plan.c: the cut of the arena into buckets; codecs.c: the buckets' gradient codecs and their
 * state). */
#ifndef DPT_BUCKET_INTERNAL_H
#define DPT_BUCKET_INTERNAL_H

#include <pthread.h>
#include <stddef.h>

#include "dptrain/bucket.h"
#include "dptrain/compress.h"
#include "dptrain/config.h"

#if DPT_HAVE_CUDA
#include <cuda_runtime.h>
#endif

typedef struct bucket {
    size_t off, count;   /* floats */
    size_t ready;        /* floats reported ready this step */
    int queued;
} bucket_t;

/* The bucketer (bucket.h); its fields are bucket.c's but for `codec`, codecs.c's. */
struct dpt_bucketer {
    dpt_coll_t *coll;
    float *grads;
    dpt_bucket_config_t cfg;
    bucket_t *b;
    int n;
    dpt_codec_t **codec;   /* per bucket (--compress), NULL: plain fp32 all-reduce */
    /* step state, guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    int *queue;          /* bucket indices in queue order; SUM_JOB = the pending sum job */
    int q_cap;           /* a ring: entries queue[q_head % q_cap .. q_tail % q_cap) */
    int q_head, q_tail;  /* thread takes queue[q_head], caller appends at q_tail */
    float *sum_buf;      /* the sum job (one at a time: its caller waits) */
    size_t sum_n;
    int sum_done;
    dpt_status_t sum_err;
    int n_done;
    long step;
    double t_comm, t_code, bytes0;   /* bytes0: dpt_coll_bytes_sent at begin */
    dpt_status_t err;
    char err_msg[512];
    int stop;
    int thread_started;
    pthread_t thread;
#if DPT_HAVE_CUDA
    /* device gradients (cfg.stream != NULL) */
    int dev, nccl;       /* grads on the device; all-reduce with NCCL there */
    cudaStream_t compute, comm, h2d;   /* backward's; D2H copies / NCCL; H2D copies (thread) */
    cudaEvent_t *ev_ready, *ev_d2h;    /* per bucket: gradients written; staged to host */
    cudaEvent_t *ev_t0, *ev_t1;        /* NCCL: timing events around each bucket's all-reduce */
    float *staging;      /* pinned host copy of the arena (own algorithms) */
    int nccl16;          /* NCCL with --compress fp16 (1) or bf16 (2), else 0 */
    void *grads16;       /* then: the arena's 16-bit copy on the device (2 bytes a float) */
#endif
};

/* codecs.c: the codecs of every bucket (--compress; none: b->codec stays NULL), and their end. */
dpt_status_t dpt__bucket_codecs_create(dpt_bucketer_t *b, const dpt_param_segment_t *segs,
                                       int n_segs);
void dpt__bucket_codecs_destroy(dpt_bucketer_t *b);
/* With --allreduce nccl the 16-bit casts run on the device (cast16_nccl.cu) in place of a host
 * codec: 1 for --compress fp16, 2 for bf16, 0 for none or any other codec (which NCCL refuses). */
int dpt__bucket_nccl16(const dpt_bucket_config_t *cfg);

/* Layer ranges -> buckets, last layer first. Returns the bucket count written to out (which has
 * room for n_segs entries). */
int dpt__bucket_plan(const dpt_param_segment_t *segs, int n_segs, size_t first_bytes,
                     size_t bucket_bytes, bucket_t *out);
/* The first bucket's and the others' byte budgets, with the defaults for 0 (1 MiB, 25 MiB). */
void dpt__bucket_sizes(const dpt_bucket_config_t *cfg, size_t *first, size_t *rest);

#endif
