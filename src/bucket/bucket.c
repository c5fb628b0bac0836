/* bucket.c: gradient buckets and the communication thread (see bucket.h).
 *
 * Planning: segments are grouped by layer into layer ranges (contiguous in the arena, in forward
 * order); walking layers from the last to the first, a bucket is closed once it reaches its byte
 * budget, so buckets never split a layer and bucket 0 ends at the arena's end.
 * Per step: the model's callback adds each finished layer's float count to its bucket; a bucket
 * whose count reaches its size goes on a FIFO that the thread drains. The queue is an array of
 * bucket indices sized at create (no allocation per step). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/internal.h"   /* dpt__now */
#include "dptrain/alloc.h"
#include "dptrain/bucket.h"
#include "dptrain/compress.h"
#include "dptrain/config.h"
#include "bucket/internal.h"

#if DPT_HAVE_CUDA
#include "bucket/cast16_nccl.h"
#include "core/cuda_try.h"
#endif


#if DPT_HAVE_CUDA
#define CUDA_TRY(call) DPT_CUDA_TRY("bucketer", call)
#endif

int dpt_bucketer_count(const dpt_bucketer_t *b)
{
    return b->n;
}

void dpt_bucketer_range(const dpt_bucketer_t *b, int i, size_t *offset, size_t *count)
{
    *offset = b->b[i].off;
    *count = b->b[i].count;
}

#if DPT_HAVE_CUDA
/* Own algorithms on device gradients: wait for bucket i's copy to the pinned staging buffer,
 * reduce it there, queue the copy back on the h2d stream. */
static dpt_status_t reduce_staged(dpt_bucketer_t *b, int i, dpt_codec_stats_t *cs)
{
    size_t off = b->b[i].off, n = b->b[i].count;
    CUDA_TRY(cudaEventSynchronize(b->ev_d2h[i]));
    if (b->codec && b->codec[i])   /* the codecs run on the host copy */
        DPT_CHECK(dpt_codec_allreduce(b->codec[i], b->coll, b->staging + off, n, b->cfg.algo,
                                      b->step, cs));
    else
        DPT_CHECK(dpt_coll_allreduce(b->coll, b->staging + off, n, DPT_DTYPE_F32, DPT_REDOP_AVG,
                                     b->cfg.algo));
    CUDA_TRY(cudaMemcpyAsync(b->grads + off, b->staging + off, n * sizeof(float),
                             cudaMemcpyHostToDevice, b->h2d));
    return DPT_OK;
}
#endif

/* All-reduce bucket i (average over ranks); records time and the first error. Called with mu
 * unlocked. */
static void reduce_one(dpt_bucketer_t *b, int i, double *t_acc)
{
    double t0 = dpt__now();
    dpt_status_t st;
    dpt_codec_stats_t cs = {0, 0};
#if DPT_HAVE_CUDA
    if (b->dev)
        st = reduce_staged(b, i, &cs);
    else
#endif
        if (b->codec && b->codec[i])   /* the gradient-codec seam */
            st = dpt_codec_allreduce(b->codec[i], b->coll, b->grads + b->b[i].off,
                                     b->b[i].count, b->cfg.algo, b->step, &cs);
        else
            st = dpt_coll_allreduce(b->coll, b->grads + b->b[i].off, b->b[i].count,
                                    DPT_DTYPE_F32, DPT_REDOP_AVG, b->cfg.algo);
    double dt = dpt__now() - t0;
    pthread_mutex_lock(&b->mu);
    *t_acc += dt;
    b->t_code += cs.t_code;
    if (st != DPT_OK && b->err == DPT_OK) {
        b->err = st;
        snprintf(b->err_msg, sizeof b->err_msg, "all-reduce of gradient bucket %d (%zu floats): "
                 "%s", i, b->b[i].count, dpt_error_get());
    }
    b->n_done++;
    pthread_cond_broadcast(&b->cv_done);
    pthread_mutex_unlock(&b->mu);
}

#define SUM_JOB (-1)

/* Run the pending sum job (SUM over ranks, in place); called with mu unlocked. */
static void sum_one(dpt_bucketer_t *b)
{
    dpt_status_t st = dpt_coll_allreduce(b->coll, b->sum_buf, b->sum_n, DPT_DTYPE_F32,
                                         DPT_REDOP_SUM, b->cfg.algo);
    char msg[512] = "";
    if (st != DPT_OK)
        snprintf(msg, sizeof msg, "all-reduce of batch-norm statistics (%zu floats): %s",
                 b->sum_n, dpt_error_get());
    pthread_mutex_lock(&b->mu);
    b->sum_err = st;
    if (st != DPT_OK && b->err == DPT_OK) {
        b->err = st;
        snprintf(b->err_msg, sizeof b->err_msg, "%s", msg);
    }
    b->sum_done = 1;
    pthread_cond_broadcast(&b->cv_done);
    pthread_mutex_unlock(&b->mu);
}

static void *comm_thread(void *arg)
{
    dpt_bucketer_t *b = arg;
#if DPT_HAVE_CUDA
    if (b->dev)   /* the CUDA device is per thread; a failure shows at the first copy */
        (void)cudaSetDevice(b->cfg.device);
#endif
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (!b->stop && b->q_head == b->q_tail)
            pthread_cond_wait(&b->cv_work, &b->mu);
        if (b->q_head == b->q_tail && b->stop)
            break;
        int i = b->queue[b->q_head++ % b->q_cap];
        int skip = b->err != DPT_OK;   /* after an error the step is lost: do not send more */
        pthread_mutex_unlock(&b->mu);
        if (i == SUM_JOB) {
            if (skip) {
                pthread_mutex_lock(&b->mu);
                b->sum_err = b->err;
                b->sum_done = 1;
                pthread_cond_broadcast(&b->cv_done);
            } else {
                sum_one(b);
                pthread_mutex_lock(&b->mu);
            }
            continue;
        }
        if (skip) {
            pthread_mutex_lock(&b->mu);
            b->n_done++;
            pthread_cond_broadcast(&b->cv_done);
            continue;
        }
        reduce_one(b, i, &b->t_comm);
        pthread_mutex_lock(&b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

#if DPT_HAVE_CUDA
static dpt_status_t device_setup(dpt_bucketer_t *b, size_t total)
{
    b->dev = 1;
    b->nccl = b->cfg.algo == DPT_COLL_ALGO_NCCL;
    b->compute = (cudaStream_t)b->cfg.stream;
    b->ev_ready = dpt_calloc((size_t)(b->n ? b->n : 1) * sizeof *b->ev_ready);
    b->ev_d2h = dpt_calloc((size_t)(b->n ? b->n : 1) * sizeof *b->ev_d2h);
    b->ev_t0 = dpt_calloc((size_t)(b->n ? b->n : 1) * sizeof *b->ev_t0);
    b->ev_t1 = dpt_calloc((size_t)(b->n ? b->n : 1) * sizeof *b->ev_t1);
    if (!b->ev_ready || !b->ev_d2h || !b->ev_t0 || !b->ev_t1)
        return dpt_error_set(DPT_ERR_NOMEM, "bucketer: out of memory");
    CUDA_TRY(cudaStreamCreateWithFlags(&b->comm, cudaStreamNonBlocking));
    CUDA_TRY(cudaStreamCreateWithFlags(&b->h2d, cudaStreamNonBlocking));
    for (int i = 0; i < b->n; i++) {
        CUDA_TRY(cudaEventCreateWithFlags(&b->ev_ready[i], cudaEventDisableTiming));
        CUDA_TRY(cudaEventCreateWithFlags(&b->ev_d2h[i], cudaEventDisableTiming));
        if (b->nccl) {
            CUDA_TRY(cudaEventCreate(&b->ev_t0[i]));
            CUDA_TRY(cudaEventCreate(&b->ev_t1[i]));
        }
    }
    if (!b->nccl)
        CUDA_TRY(cudaHostAlloc((void **)&b->staging, (total ? total : 1) * sizeof(float),
                               cudaHostAllocDefault));
    b->nccl16 = dpt__bucket_nccl16(&b->cfg);
    if (b->nccl16)
        CUDA_TRY(cudaMalloc(&b->grads16, (total ? total : 1) * 2));
    return DPT_OK;
}

static void device_teardown(dpt_bucketer_t *b)
{
    if (b->comm)
        cudaStreamSynchronize(b->comm);
    if (b->h2d)
        cudaStreamSynchronize(b->h2d);
    for (int i = 0; i < b->n; i++) {
        if (b->ev_ready && b->ev_ready[i])
            cudaEventDestroy(b->ev_ready[i]);
        if (b->ev_d2h && b->ev_d2h[i])
            cudaEventDestroy(b->ev_d2h[i]);
        if (b->ev_t0 && b->ev_t0[i])
            cudaEventDestroy(b->ev_t0[i]);
        if (b->ev_t1 && b->ev_t1[i])
            cudaEventDestroy(b->ev_t1[i]);
    }
    if (b->comm)
        cudaStreamDestroy(b->comm);
    if (b->h2d)
        cudaStreamDestroy(b->h2d);
    if (b->staging)
        cudaFreeHost(b->staging);
    if (b->grads16)
        cudaFree(b->grads16);
    dpt_free(b->ev_ready);
    dpt_free(b->ev_d2h);
    dpt_free(b->ev_t0);
    dpt_free(b->ev_t1);
}

/* NCCL's fp16/bf16 casts apply to this step (--compress fp16/bf16, after --compress-start). */
static int nccl16_now(const dpt_bucketer_t *b)
{
    return b->nccl16 && b->step >= b->cfg.compress_start;
}

/* Bucket i's gradients are queued on the compute stream (main thread): order the comm stream
 * after them, then queue NCCL's all-reduce, or the copy to pinned memory for the thread. */
static dpt_status_t device_issue(dpt_bucketer_t *b, int i)
{
    size_t off = b->b[i].off, n = b->b[i].count;
    CUDA_TRY(cudaEventRecord(b->ev_ready[i], b->compute));
    CUDA_TRY(cudaStreamWaitEvent(b->comm, b->ev_ready[i], 0));
    if (b->nccl) {   /* t0 completes when the stream got past the wait: times NCCL alone */
        CUDA_TRY(cudaEventRecord(b->ev_t0[i], b->comm));
        if (nccl16_now(b)) {   /* the casts count as communication time */
            void *h = (char *)b->grads16 + off * 2;
            int bf = b->nccl16 == 2, p = dpt_coll_size(b->coll);
            CUDA_TRY(dpt__bucket_cast16_launch(h, b->grads + off, p, n, bf, b->comm));
            DPT_CHECK(dpt_coll_nccl_allreduce_async(b->coll, h, n, bf ? DPT_DTYPE_BF16
                                                    : DPT_DTYPE_F16, DPT_REDOP_SUM, b->comm));
            CUDA_TRY(dpt__bucket_widen16_launch(b->grads + off, h, n, bf, b->comm));
        } else
            DPT_CHECK(dpt_coll_nccl_allreduce_async(b->coll, b->grads + off, n, DPT_DTYPE_F32,
                                                    DPT_REDOP_AVG, b->comm));
        CUDA_TRY(cudaEventRecord(b->ev_t1[i], b->comm));
        return DPT_OK;
    }
    CUDA_TRY(cudaMemcpyAsync(b->staging + off, b->grads + off, n * sizeof(float),
                             cudaMemcpyDeviceToHost, b->comm));
    CUDA_TRY(cudaEventRecord(b->ev_d2h[i], b->comm));
    return DPT_OK;
}

/* With mu held: note the first error of the step. */
static void note_error(dpt_bucketer_t *b, dpt_status_t st, int i)
{
    if (st != DPT_OK && b->err == DPT_OK) {
        b->err = st;
        snprintf(b->err_msg, sizeof b->err_msg, "all-reduce of gradient bucket %d (%zu floats): "
                 "%s", i, b->b[i].count, dpt_error_get());
    }
}
#endif

dpt_status_t dpt_bucketer_create(dpt_coll_t *coll, float *grads, const dpt_param_segment_t *segs,
                                 int n_segs, const dpt_bucket_config_t *cfg, dpt_bucketer_t **out)
{
    *out = NULL;
    if (!coll || !cfg || n_segs < 0 || (n_segs > 0 && (!segs || !grads)))
        return dpt_error_set(DPT_ERR_INVALID_ARG, "bucketer: bad arguments");
    for (int s = 1; s < n_segs; s++)
        if (segs[s].offset != segs[s - 1].offset + segs[s - 1].count)
            return dpt_error_set(DPT_ERR_INVALID_ARG, "bucketer: parameter segments are not "
                                 "contiguous (segment %d)", s);
    dpt_bucketer_t *b = dpt_calloc(sizeof *b);
    if (!b)
        return dpt_error_set(DPT_ERR_NOMEM, "bucketer: out of memory");
    b->coll = coll;
    b->grads = grads;
    b->cfg = *cfg;
    dpt__bucket_sizes(cfg, &b->cfg.first_bytes, &b->cfg.bucket_bytes);
    b->b = dpt_calloc((size_t)(n_segs ? n_segs : 1) * sizeof *b->b);
    b->q_cap = n_segs + 2;   /* every bucket and at most one sum job */
    b->queue = dpt_calloc((size_t)b->q_cap * sizeof *b->queue);
    if (!b->b || !b->queue) {
        dpt_free(b->b);
        dpt_free(b->queue);
        dpt_free(b);
        return dpt_error_set(DPT_ERR_NOMEM, "bucketer: out of memory");
    }
    b->n = dpt__bucket_plan(segs, n_segs, b->cfg.first_bytes, b->cfg.bucket_bytes, b->b);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv_work, NULL);
    pthread_cond_init(&b->cv_done, NULL);
    if (cfg->stream) {
#if DPT_HAVE_CUDA
        size_t total = n_segs ? segs[n_segs - 1].offset + segs[n_segs - 1].count : 0;
        dpt_status_t st = device_setup(b, total);
        if (st != DPT_OK) {
            dpt_bucketer_destroy(b);
            return st;
        }
#else
        dpt_bucketer_destroy(b);
        return dpt_error_set(DPT_ERR_UNSUPPORTED, "bucketer: device gradients need a CUDA build");
#endif
    } else if (cfg->algo == DPT_COLL_ALGO_NCCL) {
        dpt_bucketer_destroy(b);
        return dpt_error_set(DPT_ERR_UNSUPPORTED, "--allreduce nccl: needs --device cuda "
                             "(it reduces device memory)");
    }
    dpt_status_t cst = dpt__bucket_codecs_create(b, segs, n_segs);
    if (cst != DPT_OK) {
        dpt_bucketer_destroy(b);
        return cst;
    }
    if (b->cfg.overlap) {
        if (pthread_create(&b->thread, NULL, comm_thread, b) != 0) {
            dpt_bucketer_destroy(b);
            return dpt_error_set(DPT_ERR_INTERNAL, "bucketer: cannot start the communication "
                                 "thread");
        }
        b->thread_started = 1;
    }
    *out = b;
    return DPT_OK;
}

void dpt_bucketer_destroy(dpt_bucketer_t *b)
{
    if (!b)
        return;
    if (b->thread_started) {
        pthread_mutex_lock(&b->mu);
        b->stop = 1;
        pthread_cond_broadcast(&b->cv_work);
        pthread_mutex_unlock(&b->mu);
        pthread_join(b->thread, NULL);
    }
#if DPT_HAVE_CUDA
    device_teardown(b);
#endif
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv_work);
    pthread_cond_destroy(&b->cv_done);
    dpt__bucket_codecs_destroy(b);
    dpt_free(b->b);
    dpt_free(b->queue);
    dpt_free(b);
}

void dpt_bucketer_begin(dpt_bucketer_t *b, long step)
{
    pthread_mutex_lock(&b->mu);
    b->step = step;
    b->t_code = 0;
    b->bytes0 = dpt_coll_bytes_sent(b->coll);   /* no collective is in flight between steps */
    for (int i = 0; i < b->n; i++) {
        b->b[i].ready = 0;
        b->b[i].queued = 0;
    }
    b->q_head = b->q_tail = 0;
    b->n_done = 0;
    b->t_comm = 0;
    b->err = DPT_OK;
    b->err_msg[0] = '\0';
    pthread_mutex_unlock(&b->mu);
}

/* With mu held. */
static void enqueue(dpt_bucketer_t *b, int i)
{
    b->b[i].queued = 1;
    b->queue[b->q_tail++ % b->q_cap] = i;
    pthread_cond_signal(&b->cv_work);
}

#if DPT_HAVE_CUDA
/* With mu held, main thread: issue bucket i on the device; NCCL buckets are done for the
 * accounting once queued (finish waits for the stream), staged ones go to the thread (or, without
 * overlap, are reduced here). */
static void device_start(dpt_bucketer_t *b, int i)
{
    b->b[i].queued = 1;
    dpt_status_t st = b->err == DPT_OK ? device_issue(b, i) : b->err;
    if (st != DPT_OK || b->nccl) {
        note_error(b, st, i);
        b->n_done++;
        return;
    }
    if (b->cfg.overlap) {
        b->queue[b->q_tail++ % b->q_cap] = i;
        pthread_cond_signal(&b->cv_work);
        return;
    }
    pthread_mutex_unlock(&b->mu);
    reduce_one(b, i, &b->t_comm);   /* takes mu itself */
    pthread_mutex_lock(&b->mu);
}
#endif

void dpt_bucketer_ready(void *ctx, size_t offset, size_t count)
{
    dpt_bucketer_t *b = ctx;
    /* buckets are in decreasing offset order; few of them: a linear scan */
    int i = 0;
    while (i < b->n && offset < b->b[i].off)
        i++;
    if (i == b->n)
        return;
    pthread_mutex_lock(&b->mu);
    bucket_t *k = &b->b[i];
    k->ready += count;
#if DPT_HAVE_CUDA
    if (b->dev) {
        if (b->cfg.overlap && !k->queued && k->ready >= k->count)
            device_start(b, i);
        pthread_mutex_unlock(&b->mu);
        return;
    }
#endif
    if (b->cfg.overlap && !k->queued && k->ready >= k->count)
        enqueue(b, i);
    pthread_mutex_unlock(&b->mu);
}

dpt_status_t dpt_bucketer_sum(dpt_bucketer_t *b, float *buf, size_t n)
{
    if (!b->cfg.overlap) {
        b->sum_buf = buf;
        b->sum_n = n;
        sum_one(b);
        return b->sum_err == DPT_OK ? DPT_OK : dpt_error_set(b->sum_err, "%s", b->err_msg);
    }
    pthread_mutex_lock(&b->mu);
    b->sum_buf = buf;
    b->sum_n = n;
    b->sum_done = 0;
    b->queue[b->q_tail++ % b->q_cap] = SUM_JOB;
    pthread_cond_signal(&b->cv_work);
    while (!b->sum_done)
        pthread_cond_wait(&b->cv_done, &b->mu);
    dpt_status_t st = b->sum_err;
    pthread_mutex_unlock(&b->mu);
    return st == DPT_OK ? DPT_OK : dpt_error_set(st, "%s", b->err_msg);
}

dpt_status_t dpt_bucketer_finish(dpt_bucketer_t *b, dpt_bucket_stats_t *stats)
{
    double t0 = dpt__now();
#if DPT_HAVE_CUDA
    if (b->dev) {
        pthread_mutex_lock(&b->mu);
        for (int i = 0; i < b->n; i++)   /* in index order: the same on every rank */
            if (!b->b[i].queued)
                device_start(b, i);
        while (b->n_done < b->n)
            pthread_cond_wait(&b->cv_done, &b->mu);
        pthread_mutex_unlock(&b->mu);
        cudaError_t e = cudaStreamSynchronize(b->nccl ? b->comm : b->h2d);
        if (e != cudaSuccess && b->err == DPT_OK) {
            b->err = DPT_ERR_CUDA;
            snprintf(b->err_msg, sizeof b->err_msg, "gradient all-reduce: cuda: "
                     "cudaStreamSynchronize: %s", cudaGetErrorString(e));
        }
        if (b->nccl && b->err == DPT_OK) {   /* the stream is done: every event completed */
            double tc = 0;
            for (int i = 0; i < b->n; i++) {
                float ms = 0;
                if (cudaEventElapsedTime(&ms, b->ev_t0[i], b->ev_t1[i]) == cudaSuccess)
                    tc += ms * 1e-3;
            }
            b->t_comm = tc;
        }
        goto out;
    }
#endif
    if (!b->cfg.overlap) {
        double tc = 0;
        for (int i = 0; i < b->n && b->err == DPT_OK; i++)
            reduce_one(b, i, &tc);
        b->t_comm = tc;
    } else {
        pthread_mutex_lock(&b->mu);
        for (int i = 0; i < b->n; i++)   /* a layer that never reported (e.g. unused) */
            if (!b->b[i].queued)
                enqueue(b, i);
        while (b->n_done < b->n)
            pthread_cond_wait(&b->cv_done, &b->mu);
        pthread_mutex_unlock(&b->mu);
    }
#if DPT_HAVE_CUDA
out:
#endif
    if (stats) {
        const int p = dpt_coll_size(b->coll);
        double fp32 = 0;
        for (int i = 0; i < b->n; i++)
            fp32 += (double)b->b[i].count * sizeof(float);
        stats->t_exposed = dpt__now() - t0;
        stats->t_comm = b->t_comm;
        stats->t_code = b->t_code;
        stats->bytes_fp32 = fp32 * 2.0 * (p - 1) / p;
        stats->bytes_sent = dpt_coll_bytes_sent(b->coll) - b->bytes0;
#if DPT_HAVE_CUDA
        if (b->dev && b->nccl)   /* NCCL does not say: the bandwidth-optimal volume */
            stats->bytes_sent = stats->bytes_fp32 * (nccl16_now(b) ? 0.5 : 1.0);
#endif
    }
    if (b->err != DPT_OK)
        return dpt_error_set(b->err, "%s", b->err_msg);
    return DPT_OK;
}
