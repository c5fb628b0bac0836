/* trainer.c: the step loop, one rank of a data-parallel job (or the only one). Per step: the
 * loader hands this rank's shard of the global batch (assembled by its workers during the
 * previous step) -> forward -> loss -> backward, whose finished layers fill gradient buckets
 * that a communication thread all-reduces meanwhile -> SGD/LARS on the flat arenas. After each
 * epoch: BN statistics averaged, sharded evaluation, a replica checksum compared across ranks,
 * an epoch line and metrics; checkpoints and stop requests between steps; a final line. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dptrain/alloc.h"
#include "dptrain/backend.h"
#include "dptrain/bucket.h"
#include "dptrain/checkpoint.h"
#include "dptrain/dataset.h"
#include "dptrain/loader.h"
#include "dptrain/model.h"
#include "dptrain/rng.h"
#include "dptrain/trainer.h"
#include "dptrain/config.h"
#include "train/internal.h"

#if DPT_HAVE_CUDA
#include <cuda_runtime.h>

#include "data/gpu_input.h"
#include "dptrain/cuda.h"
#endif

void dpt_train_config_default(dpt_train_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->model_path = "models/fmnist-cnn.cfg";
    c->data_spec = "fashion-mnist";
    c->backend = "cpu";
    c->precision = DPT_PREC_FP32;
    c->loss_scale = 0;
    c->threads = 0;
    c->blocked_layout = 1;
    c->conv_winograd = 1;
    c->fuse_bn_relu = 1;
    c->epochs = 8;
    c->batch = 128;
    c->lr = 0.1;
    c->warmup_epochs = 0.5;
    c->schedule = DPT_SCHED_COSINE;
    c->final_lr_frac = 0.0;
    c->step_gamma = 0.1;
    c->step_epochs = 3;
    c->onecycle_peak = 0.25;
    c->sgd = (dpt_sgd_config_t){.momentum = 0.9f, .nesterov = 1, .weight_decay = 5e-4f,
                                .lars = 0, .lars_eta = 0.001f};
    c->label_smoothing = 0.1f;
    c->seed = 1;
    c->crop_pad = 0;
    c->flip = 1;
    c->random_resized_crop = 0;
    c->rrc_min_scale = 0.35f;
    c->prefetch = 1;
    c->progress = -1;
    c->log_every = 50;
    c->eval_every_epoch = 1;
    c->allreduce = "auto";
    c->bucket_mb = 25;
    c->overlap = 1;
    c->accum = 1;
    c->keep_checkpoints = 3;
    c->watchdog_s = 300;
}

/* Everything one run owns, destroyed in reverse order by session_fini. */
typedef struct session {
    const dpt_backend_ops_t *ops;
    dpt_backend_t *be;
    dpt_model_t *model;
    dpt_dataset_t *train, *test;
    dpt_loader_t *train_ld, *test_ld;
    float *mom;
    char model_path[4096];
    /* data parallel */
    dpt_dist_t dist;
    dpt_p2p_t *p2p;
    dpt_coll_t *coll;
    dpt_bucketer_t *bk;
    dpt_coll_algo_t algo;
    float *grads, *acc;      /* acc: gradient accumulation (accum > 1) */
    float *buf_all;          /* checkpoints: every rank's BN buffers (ranks x n_buffers) */
    dpt_watchdog_t *wd;      /* stall inspector (several ranks, --watchdog > 0) */
    int accum, micro;        /* micro: index of the running micro-step */
    float inv_accum;
    /* device (--device cuda): the arenas, mom and activations live on the GPU */
    int dev, device;         /* on a device; its ordinal */
    void *stream;            /* the backend's compute stream (cudaStream_t) */
    float *h_mom;            /* host mirror of mom (checkpoints); == mom on host backends */
    int *d_flag;             /* device int: the non-finite scan's flag */
    float *d_in;             /* device: the augmented batch before the model's input import */
    dpt_coll_algo_t host_algo;   /* for host buffers (BN statistics): algo, or ring under nccl */
    dpt_loss_scaler_t ls;    /* fp16 loss scaling (scale 1, static, otherwise) */
    long skipped_total;
    int lock_fd;             /* rank 0: the --checkpoint-dir lock (flock), -1 = none */
    char run_text[8192];     /* the run's flags with the global batch (checkpoints record it) */
#if DPT_HAVE_CUDA
    dpt_gpu_input_t *gin;    /* device input pipeline (train loader) */
    int gin_fetched;         /* batches taken from the train loader this epoch */
#endif
} session_t;

static void session_fini(session_t *s)
{
    if (s->be)   /* nothing queued may still use what goes away */
        (void)dpt_backend_sync(s->ops, s->be);
    dpt__watchdog_stop(s->wd);
    dpt_bucketer_destroy(s->bk);
    dpt_coll_destroy(s->coll);
    dpt_p2p_destroy(s->p2p);
    dpt_free(s->acc);
    dpt_free(s->buf_all);
#if DPT_HAVE_CUDA
    dpt_gpu_input_destroy(s->gin);
#endif
    if (s->dev) {
        if (s->mom)
            s->ops->free(s->be, s->mom);
        if (s->d_flag)
            s->ops->free(s->be, s->d_flag);
        if (s->d_in)
            s->ops->free(s->be, s->d_in);
        dpt_free(s->h_mom);
    } else {
        dpt_free(s->mom);
    }
    if (s->lock_fd > 0)
        close(s->lock_fd);   /* releases the flock */
    dpt_loader_destroy(s->test_ld);
    dpt_loader_destroy(s->train_ld);
    dpt_dataset_destroy(s->test);
    dpt_dataset_destroy(s->train);
    dpt_model_destroy(s->model);
    if (s->be)
        s->ops->destroy(s->be);
    memset(s, 0, sizeof *s);
}

/* The model's grad_ready callback: a layer's gradients are final. With accumulation the
 * micro-steps before the last only add into acc; the last folds acc in and scales by 1/K. Then
 * the layer counts toward its bucket. */
static void on_grad_ready(void *ctx, size_t off, size_t count)
{
    session_t *s = ctx;
    if (s->accum > 1) {
        float *restrict g = s->grads + off, *restrict a = s->acc + off;
        if (s->micro == 0)
            memcpy(a, g, count * sizeof *a);
        else if (s->micro < s->accum - 1)
            for (size_t i = 0; i < count; i++)
                a[i] += g[i];
        if (s->micro < s->accum - 1)
            return;
        for (size_t i = 0; i < count; i++)
            g[i] = (a[i] + g[i]) * s->inv_accum;
    }
    if (s->bk)
        dpt_bucketer_ready(s->bk, off, count);
}

/* The model's bn_sum callback (--sync-bn): through the buckets' communication thread, so it
 * is ordered with the gradient all-reduces alike on every rank; one rank: nothing to add. */
static dpt_status_t on_bn_sum(void *ctx, float *buf, size_t n)
{
    session_t *s = ctx;
    if (!s->bk)
        return DPT_OK;
    dpt__watchdog_enter(s->wd, "synchronized batch-norm statistics");
    dpt_status_t st = dpt_bucketer_sum(s->bk, buf, n);
    dpt__watchdog_leave(s->wd);
    return st;
}

/* --device cuda: this rank's GPU is its node-local rank modulo the node's device count (several
 * ranks may share one). Sets the calling thread's current device. */
static dpt_status_t pick_device(session_t *s)
{
#if DPT_HAVE_CUDA
    int local = 0;
    if (s->dist.mpi) {   /* collective: before anything that may fail on one rank only */
        MPI_Comm node;
        if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node)
            != MPI_SUCCESS)
            return dpt_error_set(DPT_ERR_MPI, "--device cuda: rank %d: MPI_Comm_split_type "
                                 "failed", s->dist.rank);
        MPI_Comm_rank(node, &local);
        MPI_Comm_free(&node);
    }
    int n = dpt_cuda_device_count();
    if (n <= 0) {
        const char *why = dpt_cuda_no_device_reason();
        return dpt_error_set(DPT_ERR_CUDA, "--device cuda: rank %d has no CUDA device%s%s",
                             s->dist.rank, why && *why ? ": " : "", why ? why : "");
    }
    s->device = local % n;
    cudaError_t e = cudaSetDevice(s->device);
    if (e != cudaSuccess)
        return dpt_error_set(DPT_ERR_CUDA, "--device cuda: rank %d: cuda: cudaSetDevice(%d): %s",
                             s->dist.rank, s->device, cudaGetErrorString(e));
    return DPT_OK;
#else
    (void)s;
    return dpt_error_set(DPT_ERR_UNSUPPORTED, "--device cuda: this build has no CUDA");
#endif
}

static dpt_status_t session_model(session_t *s, const dpt_train_config_t *cfg)
{
    s->ops = dpt_backend_find(cfg->backend);
    if (!s->ops && !strcmp(cfg->backend, "cuda"))
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--device cuda: this build has no CUDA backend "
                             "(built: %s)", dpt_backend_list());
    if (!s->ops)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--backend: unknown backend '%s' (built: %s)",
                             cfg->backend, dpt_backend_list());
    if (cfg->precision != DPT_PREC_FP32 && !s->ops->on_device)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--precision %s: needs --device cuda (the %s "
                             "backend computes in fp32 only)",
                             dpt_precision_name(cfg->precision), s->ops->name);
    if (cfg->loss_scale != 0 && !s->ops->on_device)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--loss-scale: needs --device cuda (with "
                             "--precision fp16)");
    if (cfg->allreduce && !strcmp(cfg->allreduce, "nccl") && !s->ops->on_device)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--allreduce nccl: needs --device cuda (NCCL "
                             "reduces GPU memory)");
    s->dev = s->ops->on_device;
    if (s->dev) {
        if (cfg->accum > 1)
            return dpt_error_set(DPT_ERR_UNSUPPORTED, "--accum %d: not supported with --device "
                                 "%s yet", cfg->accum, s->ops->name);
        if (cfg->sgd.lars)
            return dpt_error_set(DPT_ERR_UNSUPPORTED, "--optimizer lars: not supported with "
                                 "--device %s yet", s->ops->name);
        DPT_CHECK(pick_device(s));
    }
    dpt_backend_config_t bc = {.threads = cfg->threads, .blocked_layout = cfg->blocked_layout,
                                .conv_winograd = cfg->conv_winograd, .device = s->device,
                                .precision = cfg->precision};
    DPT_CHECK(s->ops->create(&bc, &s->be));
#if DPT_HAVE_CUDA
    if (s->dev)
        s->stream = dpt_cuda_stream(s->be);
#endif
    /* fp16: dynamic loss scaling unless a fixed --loss-scale; else a fixed scale (1 = none) */
    if (cfg->loss_scale < 0 || (cfg->loss_scale == 0 && cfg->precision == DPT_PREC_FP16))
        dpt_loss_scaler_init(&s->ls, 1, 0);
    else
        dpt_loss_scaler_init(&s->ls, 0, cfg->loss_scale > 0 ? (float)cfg->loss_scale : 1.0f);
    dpt_model_options_t mo = {.batch = cfg->batch, .label_smoothing = cfg->label_smoothing,
                              .fuse_bn_relu = cfg->fuse_bn_relu, .grad_ready = on_grad_ready,
                              .grad_ready_ctx = s, .bn_sum = cfg->sync_bn ? on_bn_sum : NULL,
                              .bn_sum_ctx = s};
    DPT_CHECK(dpt_model_find(cfg->model_path, s->model_path, sizeof s->model_path));
    DPT_CHECK(dpt_model_create(s->model_path, s->ops, s->be, &mo, &s->model));
    s->grads = dpt_model_grads(s->model, NULL);
    s->accum = 1;
    if (s->dev) {
        s->d_flag = s->ops->alloc(s->be, sizeof(int));
        if (!s->d_flag)
            return dpt_error_set(DPT_ERR_NOMEM, "out of device memory");
    }
    return DPT_OK;
}

/* The momentum arena (zeros) and its host mirror. */
static dpt_status_t alloc_mom(session_t *s)
{
    size_t np;
    dpt_model_params(s->model, &np);
    size_t bytes = (np ? np : 1) * sizeof(float);
    if (!s->dev) {
        s->mom = s->h_mom = dpt_calloc(bytes);
        return s->mom ? DPT_OK : dpt_error_set(DPT_ERR_NOMEM, "out of memory for optimizer state");
    }
    s->h_mom = dpt_calloc(bytes);
    s->mom = s->ops->alloc(s->be, bytes);
    if (!s->h_mom || !s->mom)
        return dpt_error_set(DPT_ERR_NOMEM, "out of memory for optimizer state");
    return dpt_backend_memcpy(s->ops, s->be, s->mom, s->h_mom, bytes, DPT_COPY_H2D);
}

/* Device runs: the host mirrors (parameters, BN statistics, momentum) were written (init,
 * broadcast, resume, weight file): send them to the device. Host runs: nothing to do. */
static dpt_status_t state_to_device(session_t *s)
{
    if (!s->dev)
        return DPT_OK;
    size_t np;
    dpt_model_params(s->model, &np);
    DPT_CHECK(dpt_model_params_to_device(s->model));
    DPT_CHECK(dpt_backend_memcpy(s->ops, s->be, s->mom, s->h_mom, np * sizeof(float),
                                 DPT_COPY_H2D));
    return dpt_backend_sync(s->ops, s->be);
}

/* The reverse, before the host reads them (checksums, checkpoints, weight files). */
static dpt_status_t state_to_host(session_t *s, int with_mom)
{
    if (!s->dev)
        return DPT_OK;
    DPT_CHECK(dpt_model_params_to_host(s->model));
    if (!with_mom)
        return DPT_OK;
    size_t np;
    dpt_model_params(s->model, &np);
    DPT_CHECK(dpt_backend_memcpy(s->ops, s->be, s->h_mom, s->mom, np * sizeof(float),
                                 DPT_COPY_D2H));
    return dpt_backend_sync(s->ops, s->be);
}

static dpt_status_t check_shapes(const dpt_model_t *m, const dpt_dataset_t *ds,
                                 const dpt_train_config_t *cfg)
{
    int c, h, w;
    dpt_model_input_shape(m, &c, &h, &w);
    if (ds->c != c || ds->h != h || ds->w != w)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "%s expects %dx%dx%d inputs but %s has "
                             "%dx%dx%d images", cfg->model_path, c, h, w, ds->name, ds->c, ds->h,
                             ds->w);
    if (ds->n_classes > dpt_model_classes(m))
        return dpt_error_set(DPT_ERR_INVALID_ARG, "%s has %d classes but %s has %d",
                             cfg->model_path, dpt_model_classes(m), ds->name, ds->n_classes);
    return DPT_OK;
}

/* The test split, sharded over ranks (the tail padded, padding not counted). */
static dpt_status_t open_test(session_t *s, const dpt_train_config_t *cfg)
{
    DPT_CHECK(dpt_dataset_open(cfg->data_spec, 0, cfg->seed, &s->test));
    DPT_CHECK(check_shapes(s->model, s->test, cfg));
    dpt_loader_config_t lc = {.batch = cfg->batch, .rank = s->dist.rank,
                              .nranks = s->dist.size, .seed = cfg->seed, .shuffle = 0,
                              .drop_last = 0, .prefetch = cfg->prefetch,
                              .workers = cfg->loader_workers};
    return dpt_loader_create(s->test, &lc, &s->test_ld);
}

/* --save FILE: its directory must exist and take a new file, and FILE must not be a directory;
 * found at start-up, not after the whole training (whose weights would then be lost). */
static dpt_status_t check_save_path(const char *path)
{
    if (!path)
        return DPT_OK;
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--save %s: is a directory (give a file name)",
                             path);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else
        slash[slash == dir] = '\0';   /* "/x" -> "/" */
    if (stat(dir, &sb) != 0)
        return dpt_error_set(DPT_ERR_IO, "--save %s: directory %s: %s", path, dir,
                             strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return dpt_error_set(DPT_ERR_IO, "--save %s: %s is not a directory", path, dir);
    if (access(dir, W_OK | X_OK) != 0)   /* the file is written as FILE.tmp, then renamed */
        return dpt_error_set(DPT_ERR_IO, "--save %s: cannot write in %s: %s", path, dir,
                             strerror(errno));
    return DPT_OK;
}

/* Make BN running statistics identical on every rank (their average) before they are used or
 * saved: each rank's come from its own shards. */
static dpt_status_t sync_buffers(session_t *s)
{
    size_t nb;
    dpt_model_buffers(s->model, &nb);
    float *buffers = dpt_model_host_buffers(s->model);
    if (!s->coll || !nb)
        return DPT_OK;
    DPT_CHECK(state_to_host(s, 0));
    dpt__watchdog_enter(s->wd, "averaging batch-norm running statistics");
    dpt_status_t st = dpt_coll_allreduce(s->coll, buffers, nb, DPT_DTYPE_F32, DPT_REDOP_AVG,
                                         s->host_algo);
    dpt__watchdog_leave(s->wd);
    DPT_CHECK(st);
    return s->dev ? dpt_model_params_to_device(s->model) : DPT_OK;
}

/* Evaluate on the whole test split (BN in inference mode), sharded over ranks; every rank gets
 * the global loss and counts. */
static dpt_status_t evaluate(session_t *s, double *loss, long *correct, long *total)
{
    DPT_CHECK(sync_buffers(s));
    DPT_CHECK(dpt_loader_start_epoch(s->test_ld, 0));
    int steps = dpt_loader_steps(s->test_ld);
    double v[3] = {0, 0, 0};   /* loss sum, correct, count */
    for (int i = 0; i < steps; i++) {
        const dpt_batch_t *b;
        DPT_CHECK(dpt_loader_next(s->test_ld, &b));
        if (b->n_valid <= 0)
            continue;
        float l = 0;
        int32_t hits = 0;
        DPT_CHECK(dpt_model_forward(s->model, b->x, b->y, b->n_valid, 0, &l, &hits));
        v[0] += (double)l * b->n_valid;
        v[1] += hits;
        v[2] += b->n_valid;
    }
    dpt__watchdog_enter(s->wd, "summing evaluation counts");
    dpt__dist_sum(&s->dist, v, 3);
    dpt__watchdog_leave(s->wd);
    *loss = v[2] > 0 ? v[0] / v[2] : 0.0;
    *correct = (long)v[1];
    *total = (long)v[2];
    return DPT_OK;
}

/* Hashes of the job: h[0] the flags that make the run (recorded in checkpoints), h[1] the model
 * file as parsed, h[2] the training data. */
static void job_hashes(const session_t *s, const dpt_train_config_t *cfg, uint32_t h[3])
{
    (void)cfg;
    h[0] = dpt__crc32(0, s->run_text, strlen(s->run_text));
    char summary[8192];
    dpt_model_summary(s->model, summary, sizeof summary);
    size_t np;
    dpt_model_params((dpt_model_t *)s->model, &np);
    h[1] = dpt__crc32(0, summary, strlen(summary));
    h[1] = dpt__crc32(h[1], &np, sizeof np);
    const dpt_dataset_t *d = s->train;
    int dims[5] = {d->n, d->c, d->h, d->w, d->n_classes};
    h[2] = dpt__crc32(0, dims, sizeof dims);
    h[2] = dpt__crc32(h[2], d->labels, (size_t)d->n * sizeof *d->labels);
    h[2] = dpt__crc32(h[2], d->images, (size_t)d->n * d->c * d->h * d->w);
}

/* The data-parallel part of the setup (several ranks): transport, collective context, buckets,
 * identical starting parameters, and the check that every rank runs the same job. */
static dpt_status_t setup_parallel(session_t *s, const dpt_train_config_t *cfg, int *mismatch)
{
    *mismatch = 0;
    /* first: every flag that decides which collectives run (a rank that differs would hang) */
    DPT_CHECK(dpt__dist_compare_lines(&s->dist, cfg->agree_flags, mismatch));
    uint32_t h[3];
    job_hashes(s, cfg, h);
    static const char *const what[2] = {"model", "training data"};
    DPT_CHECK(dpt__dist_compare(&s->dist, h + 1, 2, what, mismatch));
    DPT_CHECK(dpt_coll_algo_from_name(cfg->allreduce, &s->algo));
    s->host_algo = s->algo == DPT_COLL_ALGO_NCCL ? DPT_COLL_ALGO_RING : s->algo;
    DPT_CHECK(dpt__dist_transport(&s->dist, &s->p2p));
    size_t np, nb;
    dpt_model_params(s->model, &np);
    dpt_model_buffers(s->model, &nb);
    float *params = dpt_model_host_params(s->model);     /* host mirrors: pushed to the */
    float *buffers = dpt_model_host_buffers(s->model);   /* device after setup */
    int n_segs;
    const dpt_param_segment_t *segs = dpt_model_segments(s->model, &n_segs);
    size_t bucket = (size_t)(cfg->bucket_mb * 1048576.0);
    if (bucket < 4096)
        bucket = 4096;
    dpt_bucket_config_t bc = {.first_bytes = bucket < ((size_t)1 << 20) ? bucket : (size_t)1 << 20,
                              .bucket_bytes = bucket, .algo = s->algo, .overlap = cfg->overlap,
                              .stream = s->dev ? s->stream : NULL, .device = s->device};
    /* the collective context is sized for the largest bucket (and the BN statistics) */
    dpt_coll_config_t cc = {.max_bytes = dpt_bucket_max_bytes(segs, n_segs, &bc),
                            .deterministic = cfg->deterministic};
    if (nb * sizeof(float) > cc.max_bytes)
        cc.max_bytes = nb * sizeof(float);
    if (cc.max_bytes < 64)
        cc.max_bytes = 64;
    DPT_CHECK(dpt_coll_create(s->p2p, &cc, &s->coll));
    if (cfg->check_collectives)
        DPT_CHECK(dpt_coll_set_check(s->coll, 1));
    if (s->algo == DPT_COLL_ALGO_NCCL && s->dev)   /* collective: every rank runs on cuda */
        DPT_CHECK(dpt_coll_nccl_init(s->coll, s->device));
    const char *why = NULL;
    if (!dpt_coll_algo_available(s->coll, s->algo, &why))
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--allreduce %s: not available here: %s",
                             cfg->allreduce, why ? why : "?");
    DPT_CHECK(dpt_coll_broadcast(s->coll, params, np * sizeof(float), 0));
    DPT_CHECK(dpt_coll_broadcast(s->coll, buffers, nb * sizeof(float), 0));
    if (s->algo == DPT_COLL_ALGO_AUTO)
        DPT_CHECK(dpt_coll_auto_tune(s->coll));
    DPT_CHECK(dpt_bucketer_create(s->coll, s->grads, segs, n_segs, &bc, &s->bk));
    DPT_CHECK(dpt__watchdog_start(&s->dist, cfg->watchdog_s, &s->wd));
    return DPT_OK;
}

/* One line per bucket: its size and, with auto, the algorithm and predicted time (rank 0). */
static void print_buckets(session_t *s)
{
    int n = dpt_bucketer_count(s->bk);
    printf("data parallel: %d ranks, %d gradient bucket%s, all-reduce %s%s%s\n", s->dist.size, n,
           n == 1 ? "" : "s", dpt_coll_algo_name(s->algo),
           s->bk && n ? ", overlapped with backward" : "", "");
    for (int i = 0; i < n; i++) {
        size_t off, cnt;
        dpt_bucketer_range(s->bk, i, &off, &cnt);
        double pred = -1;
        dpt_coll_algo_t a = s->algo == DPT_COLL_ALGO_AUTO
                                ? dpt_coll_auto_choice(s->coll, NULL, cnt * sizeof(float), &pred)
                                : s->algo;
        if (pred >= 0)
            printf("  bucket %d: %zu floats (%.2f MiB) -> %s, predicted %.1f us\n", i, cnt,
                   cnt * 4.0 / 1048576.0, dpt_coll_algo_name(a), pred * 1e6);
        else
            printf("  bucket %d: %zu floats (%.2f MiB) -> %s\n", i, cnt, cnt * 4.0 / 1048576.0,
                   dpt_coll_algo_name(a));
    }
}

typedef struct step_out {
    float loss;              /* mean over the micro-steps */
    long hits, seen;
    double t_exposed, t_comm, bytes;
    int stop;                /* a stop was requested on some rank */
    int skipped;             /* non-finite loss or gradients, step skipped (--nan-policy skip) */
} step_out_t;

static int all_finite(const float *v, size_t n)
{
    float acc = 0;
    for (size_t i = 0; i < n; i++)
        acc += v[i] * 0.0f;   /* stays 0 unless some v[i] is NaN or +-Inf */
    return acc == 0.0f;
}

#if DPT_HAVE_CUDA
/* Device input: the next batch of the train loader, staged (its copy queued) unless the epoch
 * has no more. */
static dpt_status_t gin_fetch(session_t *s)
{
    if (s->gin_fetched >= dpt_loader_steps(s->train_ld))
        return DPT_OK;
    const dpt_batch_t *b;
    DPT_CHECK(dpt_loader_next(s->train_ld, &b));
    s->gin_fetched++;
    return dpt_gpu_input_stage(s->gin, b);
}

/* Forward of the next train batch through the device input pipeline: take the staged batch
 * (crop/flip on the compute stream into the model's input), stage the one after so that its copy
 * overlaps this step's compute, then run forward. */
static dpt_status_t gin_forward(session_t *s, float *loss, int32_t *hits, int *n_valid)
{
    if (!dpt_gpu_input_pending(s->gin))
        DPT_CHECK(gin_fetch(s));
    const int32_t *labels;
    DPT_CHECK(dpt_gpu_input_take(s->gin, s->d_in, &labels, n_valid));
    DPT_CHECK(dpt_cuda_import_device(s->be, s->d_in, dpt_model_input_tensor(s->model)));
    DPT_CHECK(gin_fetch(s));
    return dpt_model_forward(s->model, NULL, labels, *n_valid, 1, loss, hits);
}
#endif

/* Start epoch `epoch` of the train loader (and forget batches staged on the device). */
static dpt_status_t train_epoch_start(session_t *s, int epoch)
{
    DPT_CHECK(dpt_loader_start_epoch(s->train_ld, epoch));
#if DPT_HAVE_CUDA
    if (s->gin) {
        DPT_CHECK(dpt_gpu_input_reset(s->gin));
        s->gin_fetched = 0;
    }
#endif
    return DPT_OK;
}

/* Are the gradients all finite? (after the all-reduce: the same answer on every rank) */
static dpt_status_t grads_finite(session_t *s, size_t np, int *finite)
{
#if DPT_HAVE_CUDA
    if (s->dev) {
        int bad = 0;
        DPT_CHECK(dpt_nonfinite_device(s->grads, np, s->d_flag, &bad, s->stream));
        *finite = !bad;
        return DPT_OK;
    }
#endif
    *finite = all_finite(s->grads, np);
    return DPT_OK;
}

/* One optimizer step: accum micro-batches of forward + backward (gradients averaged over ranks
 * by the buckets during the last backward), then one exchange of two flags (a stop request, the
 * first rank with a non-finite loss), then the update, unless the loss or the averaged gradients
 * are not finite: --nan-policy skip skips the update, abort stops every rank with the step and
 * rank (*collective = 1). The averaged gradients are the same bits everywhere, so every rank
 * decides alike. Under dynamic loss scaling (fp16) non-finite gradients with a finite loss are an
 * overflow: the step is skipped and the scale halved, whatever the policy. */
static dpt_status_t train_step(session_t *s, const dpt_train_config_t *cfg, double lr,
                               int epoch, long step, step_out_t *o, int *collective)
{
    memset(o, 0, sizeof *o);
    *collective = 0;
    size_t np;
    float *params = dpt_model_params(s->model, &np);
    int n_segs;
    const dpt_param_segment_t *segs = dpt_model_segments(s->model, &n_segs);
    if (s->bk)
        dpt_bucketer_begin(s->bk);
    const float scale = s->ls.scale;   /* this step's (the scaler may change it below) */
    dpt_model_set_loss_scale(s->model, scale);
    double lsum = 0;
    for (s->micro = 0; s->micro < s->accum; s->micro++) {
        float loss = 0;
        int32_t hits = 0;
        int n_valid;
#if DPT_HAVE_CUDA
        if (s->gin) {
            DPT_CHECK(gin_forward(s, &loss, &hits, &n_valid));
        } else
#endif
        {
            const dpt_batch_t *b;
            DPT_CHECK(dpt_loader_next(s->train_ld, &b));
            n_valid = b->n_valid;
            DPT_CHECK(dpt_model_forward(s->model, b->x, b->y, b->n_valid, 1, &loss, &hits));
        }
        DPT_CHECK(dpt_model_backward(s->model));
        lsum += loss;
        o->hits += hits;
        o->seen += n_valid;
    }
    o->loss = (float)(lsum / s->accum);
    if (s->bk) {
        dpt__watchdog_enter(s->wd, "gradient all-reduce of step %ld", step + 1);
        dpt_status_t st = dpt_bucketer_finish(s->bk, &o->t_exposed, &o->t_comm, &o->bytes);
        dpt__watchdog_leave(s->wd);
        DPT_CHECK(st);
    }
    int finite = 1;
    DPT_CHECK(grads_finite(s, np, &finite));
    int flags[2] = {cfg->stop_flag && atomic_load(cfg->stop_flag) ? 0 : 1,
                    isfinite(lsum) ? INT_MAX : s->dist.rank};
    dpt__watchdog_enter(s->wd, "step flags after step %ld", step + 1);
    dpt__dist_min(&s->dist, flags, 2);
    dpt__watchdog_leave(s->wd);
    o->stop = flags[0] == 0;
    if (flags[1] == INT_MAX && s->ls.dynamic && !dpt_loss_scaler_update(&s->ls, !finite)) {
        o->skipped = 1;   /* fp16 overflow: skipped, the scale halved */
        return DPT_OK;
    }
    if (flags[1] != INT_MAX || !finite) {
        char who[64] = "";
        if (flags[1] != INT_MAX)
            snprintf(who, sizeof who, " (first non-finite loss on rank %d)", flags[1]);
        if (!cfg->nan_skip) {
            *collective = 2;
            return dpt_error_set(DPT_ERR_INTERNAL, "step %ld (epoch %d): the loss or the "
                                 "gradients are NaN or Inf%s; lower --lr, or --nan-policy skip",
                                 step + 1, epoch + 1, who);
        }
        if (s->dist.rank == 0) {
            fprintf(stderr, "dptrain: warning: step %ld (epoch %d): the loss or the gradients "
                    "are NaN or Inf%s; step skipped (--nan-policy skip)\n", step + 1, epoch + 1,
                    who);
            fflush(stderr);
        }
        o->skipped = 1;
        return DPT_OK;
    }
#if DPT_HAVE_CUDA
    if (s->dev)
        return dpt_sgd_step_device(&cfg->sgd, (float)lr, 1.0f / scale, params, s->grads,
                                   s->mom, segs, n_segs, s->stream);
#endif
    dpt_sgd_step(&cfg->sgd, (float)lr, params, s->grads, s->mom, segs, n_segs);
    return DPT_OK;
}

/* After an epoch: every rank's parameters (and BN statistics) must be the same bits. */
static dpt_status_t check_replicas(session_t *s, uint32_t crc, int epoch, int *mismatch)
{
    char what[64];
    snprintf(what, sizeof what, "parameter checksum after epoch %d", epoch);
    const char *w[1] = {what};
    dpt__watchdog_enter(s->wd, "%s", what);
    dpt_status_t st = dpt__dist_compare(&s->dist, &crc, 1, w, mismatch);
    dpt__watchdog_leave(s->wd);
    return st;
}

/* --resume: rank 0 reads the checkpoint (a file, or the newest valid one in the directory) and
 * sends parameters, BN buffers, momentum and the position to every rank. *found = 0 when
 * "auto" finds nothing (a fresh start). Collective; errors are agreed on by every rank. */
static dpt_status_t resume(session_t *s, const dpt_train_config_t *cfg, uint32_t config_hash,
                           dpt_ckpt_state_t *cs, int *found, char *path, size_t path_cap,
                           int *collective)
{
    size_t np, nb;
    dpt_model_params(s->model, &np);
    dpt_model_buffers(s->model, &nb);
    float *params = dpt_model_host_params(s->model);    /* host mirrors: the caller sends */
    float *buffers = dpt_model_host_buffers(s->model);  /* them to the device afterwards */
    path[0] = '\0';
    dpt_status_t st = DPT_OK;
    *found = 0;
    if (s->dist.rank == 0) {
        if (!strcmp(cfg->resume, "auto")) {
            if (!cfg->checkpoint_dir)
                st = dpt_error_set(DPT_ERR_INVALID_ARG, "--resume auto needs --checkpoint-dir");
            else
                st = dpt_ckpt_load_newest(cfg->checkpoint_dir, s->dist.size, cs, params, np,
                                          s->buf_all, nb, s->h_mom, path, path_cap, found);
        } else {
            st = dpt_ckpt_read(cfg->resume, s->dist.size, cs, params, np, s->buf_all, nb,
                               s->h_mom);
            *found = st == DPT_OK;
            snprintf(path, path_cap, "%s", cfg->resume);
        }
        if (st == DPT_OK && *found && cs->seed != cfg->seed)
            st = dpt_error_set(DPT_ERR_INVALID_ARG, "--resume: %s was trained with --seed %llu, "
                               "not %llu", path, (unsigned long long)cs->seed,
                               (unsigned long long)cfg->seed);
        if (st == DPT_OK && *found && cs->flags[0])   /* version-1 files: the hash, below */
            st = dpt__compare_run_flags(path, cs->flags, s->run_text, cfg->resume_ignore);
    }
    DPT_CHECK(dpt__dist_agree(&s->dist, st, collective));
    if (s->coll) {
        DPT_CHECK(dpt_coll_broadcast(s->coll, found, sizeof *found, 0));
        if (!*found)
            return DPT_OK;
        DPT_CHECK(dpt_coll_broadcast(s->coll, cs, sizeof *cs, 0));
        DPT_CHECK(dpt_coll_broadcast(s->coll, params, np * sizeof(float), 0));
        DPT_CHECK(dpt_coll_broadcast(s->coll, s->buf_all,
                                     (size_t)s->dist.size * nb * sizeof(float), 0));
        DPT_CHECK(dpt_coll_broadcast(s->coll, s->h_mom, np * sizeof(float), 0));
    }
    if (*found)
        memcpy(buffers, s->buf_all + (size_t)s->dist.rank * nb, nb * sizeof(float));
    if (*found && s->dist.rank == 0) {
        printf("resumed from %s: step %llu (epoch %d, step %d of it)\n", path,
               (unsigned long long)cs->step, cs->epoch + 1, cs->epoch_step);
        if (!cs->flags[0] && cs->config_hash != config_hash)
            printf("warning: the flags differ from the run that wrote %s (an older dptrain: it "
                   "did not record which)\n", path);
        if (cs->ranks != s->dist.size)
            printf("resumed on %d rank%s a checkpoint of %d: the same global batch and data "
                   "order; every rank starts from the average of the %d ranks' batch-norm "
                   "statistics, and the sums are taken in another order (not bit-identical to "
                   "a run on %d)\n", s->dist.size, s->dist.size == 1 ? "" : "s", cs->ranks,
                   cs->ranks, cs->ranks);
        fflush(stdout);
    }
    if (*found && s->dist.rank != 0)   /* the epoch counters are summed over ranks at the end */
        memset(cs->counters, 0, sizeof cs->counters);
    return DPT_OK;
}

/* Write a checkpoint of the state after `step` steps (rank 0 writes; every rank learns whether
 * it worked). counters: this rank's running-epoch sums, summed over ranks here. */
static dpt_status_t checkpoint(session_t *s, const dpt_train_config_t *cfg, uint32_t config_hash,
                               long step, int epoch, int epoch_step, const double ev[3],
                               int *collective)
{
    size_t np, nb;
    dpt_model_params(s->model, &np);
    dpt_model_buffers(s->model, &nb);
    float *params = dpt_model_host_params(s->model);
    float *buffers = dpt_model_host_buffers(s->model);
    dpt_status_t st = state_to_host(s, 1);
    if (st != DPT_OK) {   /* the others go on into the collectives below: abort the job */
        *collective = 0;
        return st;
    }
    static dpt_ckpt_state_t cs;   /* 8 KiB of flags: not on the stack */
    cs = (dpt_ckpt_state_t){.step = (uint64_t)step, .epoch = epoch, .epoch_step = epoch_step,
                            .ranks = s->dist.size, .seed = cfg->seed,
                            .config_hash = config_hash};
    snprintf(cs.flags, sizeof cs.flags, "%s", s->run_text);
    double g[3] = {ev[0], ev[1], ev[2]};
    dpt__watchdog_enter(s->wd, "checkpoint after step %ld", step);
    dpt__dist_sum(&s->dist, g, 3);
    memcpy(cs.counters, g, sizeof g);
    if (s->coll)   /* every rank's BN buffers (local statistics differ until averaged) */
        st = dpt_coll_allgather(s->coll, buffers, nb * sizeof(float), s->buf_all);
    else
        memcpy(s->buf_all, buffers, nb * sizeof(float));
    if (st != DPT_OK) {
        *collective = 0;
        return st;
    }
    if (s->dist.rank == 0)
        st = dpt_ckpt_save(cfg->checkpoint_dir, cfg->keep_checkpoints, &cs, params, np,
                           s->buf_all, nb, s->h_mom, NULL, 0);
    st = dpt__dist_agree(&s->dist, st, collective);
    dpt__watchdog_leave(s->wd);
    return st;
}

dpt_status_t dpt_train(const dpt_train_config_t *cfg, dpt_train_result_t *res)
{
    memset(res, 0, sizeof *res);
    session_t s = {.lock_fd = -1};
    dpt_metrics_t mx = {0};
    dpt_progress_t pg = {0};
    dpt_status_t st = DPT_OK;
    dpt__dist_init(&s.dist);
    const int rank = s.dist.rank, nranks = s.dist.size;
    const int quiet = cfg->quiet || rank != 0;
    res->ranks = nranks;
    res->collective_error = 1;
    dpt_train_config_t derived = *cfg;   /* --global-batch: the per-rank batch follows */
    cfg = &derived;
    /* Local setup; then every rank learns whether all succeeded. */
    do {
        DPT_CHECK_GOTO(dpt__global_batch(&derived, nranks), st, agree);
        dpt__run_text(cfg, nranks, s.run_text, sizeof s.run_text);
        if (rank == 0 && cfg->checkpoint_dir)   /* one job per directory, never another's */
            DPT_CHECK_GOTO(dpt__claim_checkpoint_dir(cfg, &s.lock_fd), st, agree);
        DPT_CHECK_GOTO(session_model(&s, cfg), st, agree);
        s.accum = cfg->accum > 0 ? cfg->accum : 1;
        s.inv_accum = 1.0f / (float)s.accum;
        DPT_CHECK_GOTO(dpt_dataset_open(cfg->data_spec, 1, cfg->seed, &s.train), st, agree);
        DPT_CHECK_GOTO(check_shapes(s.model, s.train, cfg), st, agree);
        if (cfg->eval_every_epoch)
            DPT_CHECK_GOTO(open_test(&s, cfg), st, agree);
        dpt_loader_config_t lc = {.batch = cfg->batch, .rank = rank, .nranks = nranks,
                                  .seed = cfg->seed, .shuffle = 1, .drop_last = 1,
                                  .crop_pad = cfg->crop_pad, .flip = cfg->flip,
                                  .prefetch = cfg->prefetch, .workers = cfg->loader_workers,
                                  .rrc = cfg->random_resized_crop,
                                  .rrc_scale = {cfg->rrc_min_scale, 1.0f},
                                  .rrc_ratio = {3.0f / 4.0f, 4.0f / 3.0f},
                                  /* on the device, crop and flip run there (not rrc) */
                                  .defer_aug = s.dev && !cfg->random_resized_crop};
        DPT_CHECK_GOTO(dpt_loader_create(s.train, &lc, &s.train_ld), st, agree);
#if DPT_HAVE_CUDA
        if (s.dev) {
            int c, h, w;
            dpt_model_input_shape(s.model, &c, &h, &w);
            DPT_CHECK_GOTO(dpt_gpu_input_create(cfg->batch, c, h, w,
                                                cfg->random_resized_crop ? 0 : cfg->crop_pad,
                                                s.stream, &s.gin), st, agree);
            s.d_in = s.ops->alloc(s.be, (size_t)cfg->batch * c * h * w * sizeof(float));
            if (!s.d_in) {
                st = dpt_error_set(DPT_ERR_NOMEM, "out of device memory for the input batch");
                goto agree;
            }
        }
#endif
        if (dpt_loader_steps(s.train_ld) / s.accum <= 0) {
            st = dpt_error_set(DPT_ERR_INVALID_ARG, "--batch %d x %d ranks x --accum %d is "
                               "larger than the %d training samples of %s", cfg->batch, nranks,
                               s.accum, s.train->n, s.train->name);
            goto agree;
        }
        size_t np;
        dpt_model_params(s.model, &np);
        DPT_CHECK_GOTO(alloc_mom(&s), st, agree);
        if (s.accum > 1)
            s.acc = dpt_calloc((np ? np : 1) * sizeof(float));
        size_t nbuf;
        dpt_model_buffers(s.model, &nbuf);
        s.buf_all = dpt_calloc(((size_t)nranks * nbuf + 1) * sizeof(float));
        if ((s.accum > 1 && !s.acc) || !s.buf_all)
            st = dpt_error_set(DPT_ERR_NOMEM, "out of memory for optimizer state");
        else
            dpt_model_init_params(s.model, cfg->seed);
        if (st == DPT_OK && rank == 0)   /* the output files, before any training is done */
            st = dpt_metrics_check(cfg->metrics_path);
        if (st == DPT_OK && rank == 0)
            st = check_save_path(cfg->save_path);
    } while (0);
agree:
    st = dpt__dist_agree(&s.dist, st, &res->collective_error);
    if (st != DPT_OK)
        goto done;
    if (nranks > 1) {
        int mismatch = 0;
        st = setup_parallel(&s, cfg, &mismatch);
        /* a mismatch is seen by every rank alike; other failures may be local */
        if (!mismatch)
            st = dpt__dist_agree(&s.dist, st, &res->collective_error);
        else
            res->collective_error = 2;
        if (st != DPT_OK)
            goto done;
    }

    size_t np, nb;
    dpt_model_params(s.model, &np);
    dpt_model_buffers(s.model, &nb);
    /* host mirrors, brought up to date (state_to_host) before each checksum and save */
    float *params = dpt_model_host_params(s.model);
    float *buffers = dpt_model_host_buffers(s.model);
    const int steps_per_epoch = dpt_loader_steps(s.train_ld) / s.accum;
    const long global_batch = (long)cfg->batch * nranks * s.accum;
    long total_steps = (long)steps_per_epoch * cfg->epochs;
    if (cfg->max_steps > 0 && cfg->max_steps < total_steps)
        total_steps = cfg->max_steps;
    dpt_schedule_t sched = {
        .kind = cfg->schedule,
        .base_lr = cfg->lr,
        .total_steps = total_steps,
        .warmup_steps = (long)(cfg->warmup_epochs * steps_per_epoch),
        .step_every = (long)(cfg->step_epochs * steps_per_epoch),
        .gamma = cfg->step_gamma,
        .peak = cfg->onecycle_peak,
        .final_frac = cfg->final_lr_frac,
    };
    if (!quiet) {
        char summary[8192];
        dpt_model_summary(s.model, summary, sizeof summary);
        char acc[32] = "";
        if (s.accum > 1)
            snprintf(acc, sizeof acc, " x accum %d", s.accum);
        char limit[64] = "";
        if (total_steps < (long)steps_per_epoch * cfg->epochs)
            snprintf(limit, sizeof limit, ", stopping at step %ld (--max-steps)", total_steps);
        char dev[96] = "";
        if (s.dev)
            snprintf(dev, sizeof dev, " (device %d, %s%s)", s.device,
                     dpt_precision_name(cfg->precision),
                     s.ls.dynamic ? ", dynamic loss scaling"
                                  : s.ls.scale != 1.0f ? ", static loss scale" : "");
        printf("dptrain: %s on %s (%d train / %d test images), backend %s%s, %d rank%s x batch %d"
               "%s = global batch %ld, %d epochs x %d steps%s\n%s", s.model_path, s.train->name,
               s.train->n, s.test ? s.test->n : 0, cfg->backend, dev, nranks,
               nranks == 1 ? "" : "s", cfg->batch, acc, global_batch, cfg->epochs,
               steps_per_epoch, limit, summary);
        if (s.bk)
            print_buckets(&s);
        fflush(stdout);
    }
    dpt_progress_init(&pg, quiet ? 0 : cfg->progress, cfg->log_every, total_steps);
    if (quiet)
        pg.bar = -1;
    uint32_t hashes[3];
    job_hashes(&s, cfg, hashes);
    static dpt_ckpt_state_t cs;   /* 8 KiB of flags: not on the stack */
    memset(&cs, 0, sizeof cs);
    int resumed = 0;
    char resumed_path[4096] = "";
    res->resumed_from = -1;
    if (cfg->resume) {
        st = resume(&s, cfg, hashes[0], &cs, &resumed, resumed_path, sizeof resumed_path,
                    &res->collective_error);
        if (st != DPT_OK)
            goto done;
        if (resumed)
            res->resumed_from = (long)cs.step;
    }
    /* the metrics file: the interrupted run's records up to the checkpoint, then this run's */
    st = dpt_metrics_open(&mx, rank == 0 ? cfg->metrics_path : NULL,
                          resumed ? (long)cs.step : -1, resumed ? cs.epoch + 1 : 0);
    dpt_metrics_config(&mx, cfg->all_flags, nranks, cfg->threads, res->resumed_from,
                       resumed ? resumed_path : NULL);
    if (st == DPT_OK)
        st = dpt_metrics_status(&mx);
    st = dpt__dist_agree(&s.dist, st, &res->collective_error);
    if (st != DPT_OK)
        goto done;
    DPT_CHECK_GOTO(state_to_device(&s), st, fail);   /* initial or resumed state */
    double t_start = dpt__now(), train_time = 0;
    long step = resumed ? (long)cs.step : 0, images = 0;
    double best_acc = 0;   /* the best test accuracy of this run so far; rank 0's, on every rank */
    {
        int best_epoch;
        if (rank == 0 && !(cfg->checkpoint_dir && resumed
                           && dpt_ckpt_best_read(cfg->checkpoint_dir, cs.step, &best_acc,
                                                 &best_epoch)))
            best_acc = -1;
        dpt__dist_sum(&s.dist, &best_acc, 1);
    }
    int late_stop = 0;   /* a stop request came with the final step: the run completes */
    /* A checkpoint holds the state after its step and before that epoch's end (BN statistics
     * averaged, evaluation, replica check): a resume runs the epoch end it left pending, also
     * when no step remains (a checkpoint of the last step: the run had completed). */
    for (int epoch = resumed ? cs.epoch : 0;
         epoch < cfg->epochs && (step < total_steps || (resumed && epoch == cs.epoch)); epoch++) {
        DPT_CHECK_GOTO(train_epoch_start(&s, epoch), st, fail);
        double t_epoch = dpt__now(), log_loss = 0, log_compute = 0, log_exposed = 0,
               log_bytes = 0, log_comm = 0;
        double ev[3] = {0, 0, 0};   /* loss sum over steps, correct, seen (this rank) */
        double seen_before = 0;     /* of ev[2], the images of steps before a resume */
        long log_n = 0, done_steps = 0;
        int first = 0;
        if (resumed && epoch == cs.epoch) {   /* continue mid-epoch: skip the batches done */
            first = cs.epoch_step;
            memcpy(ev, cs.counters, sizeof ev);
            seen_before = ev[2];
            done_steps = first;
            int more = first < steps_per_epoch && step < total_steps;
            for (int k = 0; more && k < first * s.accum; k++) {
                const dpt_batch_t *b;
                DPT_CHECK_GOTO(dpt_loader_next(s.train_ld, &b), st, fail);
            }
#if DPT_HAVE_CUDA
            s.gin_fetched = first * s.accum;
#endif
        }
        double t_log = t_epoch;
        for (int i = first; i < steps_per_epoch && step < total_steps; i++, step++) {
            double lr = dpt_schedule_lr(&sched, step);
            double t0 = dpt__now();
            step_out_t o;
            int coll_err = 0;
            st = train_step(&s, cfg, lr, epoch, step, &o, &coll_err);
            if (st != DPT_OK) {
                res->collective_error = coll_err;
                goto done;
            }
            res->skipped_steps += o.skipped;
            double t1 = dpt__now();
            ev[0] += o.loss;
            ev[1] += (double)o.hits;
            ev[2] += (double)o.seen;
            done_steps++;
            images += o.seen;
            res->t_comm_s += o.t_comm;
            res->t_comm_exposed_s += o.t_exposed;
            log_loss += o.loss;
            log_compute += (t1 - t0) - o.t_exposed;
            log_exposed += o.t_exposed;
            /* nominal: the bandwidth-optimal volume 2(p-1)/p of the gradient bytes (ring, rhd,
               shm send exactly this; rd and tree send more) */
            log_bytes += o.bytes * 2.0 * (nranks - 1) / nranks;
            log_comm += o.t_comm;
            log_n++;
            if ((step + 1) % cfg->log_every == 0) {
                double now = dpt__now();
                double img_s = (double)log_n * global_batch / (now - t_log);
                dpt_metrics_step(&mx, epoch + 1, step + 1, log_loss / (double)log_n, lr, img_s,
                                 log_compute / (double)log_n, log_exposed / (double)log_n,
                                 log_bytes / (double)log_n, log_comm / (double)log_n,
                                 s.ls.scale, res->skipped_steps);
                t_log = now;
                log_loss = log_compute = log_exposed = log_bytes = log_comm = 0;
                log_n = 0;
            }
            dpt_progress_update(&pg, epoch, cfg->epochs, i + 1, steps_per_epoch, step + 1,
                                ev[0] / (double)done_steps, ev[1] / ev[2],
                                ev[2] * nranks / (dpt__now() - t_epoch));
            /* stop requested on any rank? (every rank asks after every step) */
            const int stop = o.stop;
            int last = i + 1 == steps_per_epoch || step + 1 == total_steps;
            if (cfg->checkpoint_dir
                && (stop || last || (cfg->checkpoint_every > 0
                                     && (step + 1) % cfg->checkpoint_every == 0))) {
                st = checkpoint(&s, cfg, hashes[0], step + 1, epoch, i + 1, ev,
                                &res->collective_error);
                if (st != DPT_OK)
                    goto done;
            }
            if (stop && step + 1 == total_steps) {
                late_stop = 1;   /* nothing left to stop before: finish (exit 0, no requeue) */
            } else if (stop) {
                res->stopped = 1;
                res->steps = step + 1;
                DPT_CHECK_GOTO(state_to_host(&s, 0), st, fail);
                res->param_crc = dpt_param_crc(params, np, buffers, nb);
                res->wall_s = dpt__now() - t_start;
                dpt_progress_clear(&pg);
                if (rank == 0) {
                    printf("stopped after step %ld (epoch %d, step %d of %d)%s\n", step + 1,
                           epoch + 1, i + 1, steps_per_epoch,
                           cfg->checkpoint_dir ? ", checkpoint written" : ", no --checkpoint-dir");
                    fflush(stdout);
                }
                goto done;
            }
        }
        double epoch_time = dpt__now() - t_epoch;
        train_time += epoch_time;
        double gv[4] = {ev[0], ev[1], ev[2], ev[2] - seen_before};
        dpt__watchdog_enter(s.wd, "training counters of epoch %d", epoch + 1);
        dpt__dist_sum(&s.dist, gv, 4);
        dpt__watchdog_leave(s.wd);
        res->train_loss = done_steps ? gv[0] / ((double)done_steps * nranks) : 0;
        res->train_acc = gv[2] > 0 ? gv[1] / gv[2] : 0;
        res->img_s = gv[3] / epoch_time;   /* the images trained by this process */
        if (s.test_ld) {
            DPT_CHECK_GOTO(evaluate(&s, &res->test_loss, &res->test_correct, &res->test_total),
                           st, fail);
            res->test_acc = res->test_total ? (double)res->test_correct / res->test_total : 0;
        } else {
            DPT_CHECK_GOTO(sync_buffers(&s), st, fail);
        }
        DPT_CHECK_GOTO(state_to_host(&s, 0), st, fail);
        res->param_crc = dpt_param_crc(params, np, buffers, nb);
        int mismatch = 0;
        st = check_replicas(&s, res->param_crc, epoch + 1, &mismatch);
        if (st != DPT_OK) {
            res->collective_error = mismatch ? 2 : 0;   /* a mismatch: every rank saw it */
            goto done;
        }
        const char *best_note = "";
        if (cfg->checkpoint_dir && s.test_ld && res->test_acc > best_acc) {
            st = rank == 0 ? dpt_ckpt_best_save(cfg->checkpoint_dir, epoch + 1, (uint64_t)step,
                                                res->test_acc, params, np, buffers, nb)
                           : DPT_OK;
            st = dpt__dist_agree(&s.dist, st, &res->collective_error);
            if (st != DPT_OK)
                goto done;
            best_acc = res->test_acc;
            best_note = "  best so far: best.dpt";
        }
        double wall = dpt__now() - t_start;
        dpt_progress_clear(&pg);
        dpt_metrics_epoch(&mx, epoch + 1, step, res->train_loss, res->train_acc, res->test_loss,
                          res->test_acc, res->img_s, wall, res->param_crc);
        if (!quiet) {
            printf("epoch %d/%d  train loss %.4f acc %.4f  test loss %.4f acc %.4f  "
                   "%.0f img/s  %.1f s%s\n", epoch + 1, cfg->epochs, res->train_loss,
                   res->train_acc, res->test_loss, res->test_acc, res->img_s, wall, best_note);
            fflush(stdout);
        }
    }
    res->steps = step;
    res->wall_s = dpt__now() - t_start;
    {
        double gi = (double)images;
        dpt__dist_sum(&s.dist, &gi, 1);
        res->img_s = train_time > 0 ? gi / train_time : 0;
    }
    res->loss_scale = s.ls.scale;
    DPT_CHECK_GOTO(state_to_host(&s, 0), st, fail);
    res->param_crc = dpt_param_crc(params, np, buffers, nb);
    dpt_metrics_final(&mx, res->test_acc, res->wall_s, res->img_s, nranks, cfg->threads,
                      res->param_crc);
    if (cfg->save_path && rank == 0)
        st = dpt_weights_save(cfg->save_path, params, np, buffers, nb);
    if (st == DPT_OK)   /* the weights are saved: now a failed metrics write fails the run */
        st = dpt_metrics_status(&mx);
    st = dpt__dist_agree(&s.dist, st, &res->collective_error);
    if (st != DPT_OK)
        goto done;
    if (rank == 0 && (late_stop || (cfg->stop_flag && atomic_load(cfg->stop_flag)))) {
        printf("the stop request came with the final step or after it: the run is complete\n");
        fflush(stdout);
    }
    if (rank == 0) {   /* the final line, also with --quiet */
        if (s.test_ld)
            printf("final test accuracy: %.2f%% (%ld/%ld)  wall %.1f s  %.0f img/s  "
                   "param_crc %08x\n", 100.0 * res->test_acc, res->test_correct, res->test_total,
                   res->wall_s, res->img_s, res->param_crc);
        else
            printf("final: %ld steps  wall %.1f s  %.0f img/s  param_crc %08x\n", res->steps,
                   res->wall_s, res->img_s, res->param_crc);
        if (nranks > 1 && res->t_comm_s > 0 && !quiet) {
            double hidden = 1.0 - res->t_comm_exposed_s / res->t_comm_s;
            printf("communication: %.2f s all-reduce, %.2f s exposed (%.0f%% hidden behind "
                   "backward)\n", res->t_comm_s, res->t_comm_exposed_s,
                   100.0 * (hidden > 0 ? hidden : 0));
        }
    }
    goto done;
fail:
    res->collective_error = nranks == 1;   /* other ranks may be inside a collective */
done:
    dpt_progress_fini(&pg);
    dpt_metrics_close(&mx);
    if (st != DPT_OK && !res->collective_error)
        return st;   /* peers may be blocked in a collective with our communication thread:
                        tear nothing down, the caller aborts the job (MPI_Abort) */
    session_fini(&s);
    return st;
}

dpt_status_t dpt_evaluate(const dpt_train_config_t *cfg, const char *weights_path,
                          dpt_train_result_t *res)
{
    memset(res, 0, sizeof *res);
    session_t s = {0};
    dpt_status_t st = DPT_OK;
    dpt__dist_init(&s.dist);
    DPT_CHECK_GOTO(session_model(&s, cfg), st, done);
    size_t np, nb;
    dpt_model_params(s.model, &np);
    dpt_model_buffers(s.model, &nb);
    float *params = dpt_model_host_params(s.model);
    float *buffers = dpt_model_host_buffers(s.model);
    /* a weights file (train --save) or a checkpoint (ckpt-<step>.dpt) */
    char magic[8] = "";
    FILE *f = fopen(weights_path, "rb");
    if (f) {
        if (fread(magic, 1, sizeof magic, f) != sizeof magic)
            magic[0] = '\0';
        fclose(f);
    }
    if (!memcmp(magic, "DPTCKPT1", 8))
        st = dpt_ckpt_load_weights(weights_path, params, np, buffers, nb);
    else
        st = dpt_weights_load(weights_path, params, np, buffers, nb);
    if (st == DPT_OK)
        st = dpt_model_params_to_device(s.model);
    if (st == DPT_OK)
        st = open_test(&s, cfg);
    /* under mpirun every rank evaluates its shard: all must have got this far */
    int collective = 1;
    DPT_CHECK_GOTO(dpt__dist_agree(&s.dist, st, &collective), st, done);
    double t0 = dpt__now();
    DPT_CHECK_GOTO(evaluate(&s, &res->test_loss, &res->test_correct, &res->test_total), st, done);
    res->wall_s = dpt__now() - t0;
    res->test_acc = res->test_total ? (double)res->test_correct / res->test_total : 0;
    res->param_crc = dpt_param_crc(params, np, buffers, nb);
done:
    session_fini(&s);
    return st;
}

dpt_status_t dpt_bench_train(const dpt_train_config_t *cfg, int warmup, int steps,
                             dpt_bench_result_t *res)
{
    int profile = res->profile;
    memset(res, 0, sizeof *res);
    if (steps <= 0 || steps > 100000)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--steps must be in [1, 100000]");
    session_t s = {0};
    dpt_status_t st = DPT_OK;
    float *x = NULL;
    int32_t *y = NULL;
    double *times = NULL;
    DPT_CHECK_GOTO(session_model(&s, cfg), st, done);
    int c, h, w;
    dpt_model_input_shape(s.model, &c, &h, &w);
    size_t n_in = (size_t)cfg->batch * c * h * w;
    x = dpt_malloc(n_in * sizeof(float));
    y = dpt_malloc((size_t)cfg->batch * sizeof(int32_t));
    times = dpt_malloc((size_t)steps * sizeof(double));
    size_t np;
    float *params = dpt_model_params(s.model, &np);
    if (!x || !y || !times) {
        st = dpt_error_set(DPT_ERR_NOMEM, "bench: out of memory");
        goto done;
    }
    DPT_CHECK_GOTO(alloc_mom(&s), st, done);
    dpt_rng_t r;
    dpt_rng_init(&r, cfg->seed, 99);
    for (size_t i = 0; i < n_in; i++)
        x[i] = dpt_rng_normal(&r);
    for (int i = 0; i < cfg->batch; i++)
        y[i] = (int32_t)dpt_rng_below(&r, (uint32_t)dpt_model_classes(s.model));
    dpt_model_init_params(s.model, cfg->seed);
    DPT_CHECK_GOTO(state_to_device(&s), st, done);
    int n_segs;
    const dpt_param_segment_t *segs = dpt_model_segments(s.model, &n_segs);
    float *grads = dpt_model_grads(s.model, NULL);
    /* device: the batch stays in the input tensor (as a framework's benchmark keeps it on the
     * GPU); each step ends with a sync so that its time is its own */
    const float *xin = x;
    if (s.dev) {
        DPT_CHECK_GOTO(s.ops->import_nchw(s.be, x, dpt_model_input_tensor(s.model)), st, done);
        xin = NULL;
    }
    for (int i = 0; i < warmup + steps; i++) {
        if (i == warmup)
            dpt_model_set_profile(s.model, profile);
        double t0 = dpt__now();
        float loss;
        const float scale = s.ls.scale;
        dpt_model_set_loss_scale(s.model, scale);
        DPT_CHECK_GOTO(dpt_model_forward(s.model, xin, y, 0, 1, &loss, NULL), st, done);
        DPT_CHECK_GOTO(dpt_model_backward(s.model), st, done);
#if DPT_HAVE_CUDA
        if (s.dev) {
            int finite = 1;
            if (s.ls.dynamic)   /* fp16: the overflow check of every real step */
                DPT_CHECK_GOTO(grads_finite(&s, np, &finite), st, done);
            if (dpt_loss_scaler_update(&s.ls, !finite))
                DPT_CHECK_GOTO(dpt_sgd_step_device(&cfg->sgd, 0.01f, 1.0f / scale, params,
                                                   grads, s.mom, segs, n_segs, s.stream),
                               st, done);
            DPT_CHECK_GOTO(dpt_backend_sync(s.ops, s.be), st, done);
        } else
#endif
            dpt_sgd_step(&cfg->sgd, 0.01f, params, grads, s.mom, segs, n_segs);
        if (i >= warmup)
            times[i - warmup] = dpt__now() - t0;
    }
    double med = dpt__median(times, steps);   /* sorts times */
    res->steps = steps;
    res->img_s_median = cfg->batch / med;
    res->img_s_min = cfg->batch / times[steps - 1];
    res->img_s_max = cfg->batch / times[0];
    /* forward + backward (data and weight gradients) = 3x forward FLOPs */
    res->gflops = 3.0 * dpt_model_flops_fwd(s.model) / med / 1e9;
    res->profile = profile;
    if (profile)
        dpt_model_profile_report(s.model, res->report, sizeof res->report);
done:
    dpt_free(x);
    dpt_free(y);
    dpt_free(times);
    session_fini(&s);
    return st;
}
