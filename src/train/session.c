/* session.c: a run's setup and teardown. The backend and the model (with the step's callbacks),
 * the train and test data with their loaders, the optimizer state, then, with several ranks, the
 * data-parallel context: every rank checks that it runs the same job, gets rank 0's starting
 * parameters, and the gradient buckets and the stall watchdog start. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dptrain/alloc.h"
#include "dptrain/compress.h"
#include "train/session.h"

void dpt__session_fini(session_t *s)
{
    if (s->be)   /* nothing queued may still use what goes away */
        (void)dpt_backend_sync(s->ops, s->be);
    dpt__watchdog_stop(s->wd);
    dpt_bucketer_destroy(s->bk);
    dpt_coll_destroy(s->coll);
    dpt_free(s->acc);
    dpt_free(s->buf_all);
    dpt_free(s->codec_mine);
    dpt_free(s->codec_all);
    if (s->dev)
        dpt__device_free(s);
    else
        dpt_free(s->mom);
    if (s->lock_fd > 0)
        close(s->lock_fd);   /* releases the flock */
    dpt_loader_destroy(s->test_ld);
    dpt_loader_destroy(s->train_ld);
    dpt_dataset_destroy(s->test);
    dpt_dataset_destroy(s->train);
    dpt_model_destroy(s->model);
    if (s->be)
        s->ops->destroy(s->be);
    dpt__dist_fini(&s->dist);
    memset(s, 0, sizeof *s);
}

dpt_status_t dpt__session_model(session_t *s, const dpt_train_config_t *cfg)
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
        if (cfg->sgd.optimizer == DPT_OPTIM_LARS)
            return dpt_error_set(DPT_ERR_UNSUPPORTED, "--optimizer lars: not supported with "
                                 "--device %s yet", s->ops->name);
        DPT_CHECK(dpt__device_pick(s));
    }
    dpt_backend_config_t bc = {.threads = cfg->threads, .blocked_layout = cfg->blocked_layout,
                                .conv_winograd = cfg->conv_winograd, .device = s->device,
                                .precision = cfg->precision};
    DPT_CHECK(s->ops->create(&bc, &s->be));
    if (s->dev)
        s->stream = dpt__device_stream(s);
    /* fp16: dynamic loss scaling unless a fixed --loss-scale; else a fixed scale (1 = none) */
    if (cfg->loss_scale < 0 || (cfg->loss_scale == 0 && cfg->precision == DPT_PREC_FP16))
        dpt_loss_scaler_init(&s->ls, 1, 0);
    else
        dpt_loss_scaler_init(&s->ls, 0, cfg->loss_scale > 0 ? (float)cfg->loss_scale : 1.0f);
    dpt_model_options_t mo = {.batch = cfg->batch, .label_smoothing = cfg->label_smoothing,
                              .fuse_bn_relu = cfg->fuse_bn_relu, .grad_ready = dpt__on_grad_ready,
                              .grad_ready_ctx = s, .bn_sum = cfg->sync_bn ? dpt__on_bn_sum : NULL,
                              .bn_sum_ctx = s};
    DPT_CHECK(dpt_model_find(cfg->model_path, s->model_path, sizeof s->model_path));
    DPT_CHECK(dpt_model_create(s->model_path, s->ops, s->be, &mo, &s->model));
    s->grads = dpt_model_grads(s->model, NULL);
    s->accum = 1;
    s->inv_accum = 1.0f;
    s->forward_next = dpt__forward_loader;
    if (s->dev) {
        s->d_flag = s->ops->alloc(s->be, sizeof(int));
        if (!s->d_flag)
            return dpt_error_set(DPT_ERR_NOMEM, "out of device memory");
    }
    return DPT_OK;
}

dpt_status_t dpt__session_alloc_mom(session_t *s, const dpt_sgd_config_t *sgd)
{
    size_t np;
    dpt_model_params(s->model, &np);
    s->n_state = np * (size_t)dpt_optim_state_per_param(sgd);
    size_t bytes = (s->n_state ? s->n_state : 1) * sizeof(float);
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

dpt_status_t dpt__session_open_test(session_t *s, const dpt_train_config_t *cfg)
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

void dpt__session_hashes(const session_t *s, uint32_t h[3])
{
    h[0] = dpt__crc32(0, s->run_text, strlen(s->run_text));
    enum { SUMMARY_BYTES = 1 << 18 };   /* ~90 characters per layer, up to 1024 layers */
    char *summary = dpt_malloc(SUMMARY_BYTES);
    if (summary)
        dpt_model_summary(s->model, summary, SUMMARY_BYTES);
    size_t np;
    dpt_model_params((dpt_model_t *)s->model, &np);
    h[1] = summary ? dpt__crc32(0, summary, strlen(summary)) : 0;
    dpt_free(summary);
    h[1] = dpt__crc32(h[1], &np, sizeof np);
    const dpt_dataset_t *d = s->train;
    int dims[5] = {d->n, d->c, d->h, d->w, d->n_classes};
    h[2] = dpt__crc32(0, dims, sizeof dims);
    h[2] = dpt__crc32(h[2], d->labels, (size_t)d->n * sizeof *d->labels);
    h[2] = dpt__crc32(h[2], d->images, (size_t)d->n * d->c * d->h * d->w);
}

/* This rank's part of the setup, before any collective but the agreement on its outcome. */
static dpt_status_t setup_local(session_t *s, dpt_train_config_t *cfg)
{
    const int rank = s->dist.rank, nranks = s->dist.size;
    DPT_CHECK(dpt__global_batch(cfg, nranks));   /* --global-batch: the per-rank batch follows */
    dpt__run_text(cfg, nranks, s->run_text, sizeof s->run_text);
    if (rank == 0 && cfg->checkpoint_dir)   /* one job per directory, never another's */
        DPT_CHECK(dpt__claim_checkpoint_dir(cfg, &s->lock_fd));
    DPT_CHECK(dpt__session_model(s, cfg));
    s->seed = cfg->seed;
    s->accum = cfg->accum > 0 ? cfg->accum : 1;
    s->inv_accum = 1.0f / (float)s->accum;
    DPT_CHECK(dpt_dataset_open(cfg->data_spec, 1, cfg->seed, &s->train));
    DPT_CHECK(check_shapes(s->model, s->train, cfg));
    if (cfg->stop_at_acc > 0 && !cfg->eval_every_epoch && cfg->eval_every <= 0)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--stop-at-acc needs evaluations: --eval (at "
                             "epoch ends) or --eval-every STEPS");
    if (cfg->eval_every_epoch || cfg->eval_every > 0)
        DPT_CHECK(dpt__session_open_test(s, cfg));
    dpt_loader_config_t lc = {.batch = cfg->batch, .rank = rank, .nranks = nranks,
                              .seed = cfg->seed, .shuffle = 1, .drop_last = 1,
                              .crop_pad = cfg->crop_pad, .flip = cfg->flip,
                              .prefetch = cfg->prefetch, .workers = cfg->loader_workers,
                              .rrc = cfg->random_resized_crop,
                              .rrc_scale = {cfg->rrc_min_scale, 1.0f},
                              .rrc_ratio = {3.0f / 4.0f, 4.0f / 3.0f},
                              /* on the device, crop and flip run there (not rrc) */
                              .defer_aug = s->dev && !cfg->random_resized_crop};
    DPT_CHECK(dpt_loader_create(s->train, &lc, &s->train_ld));
    if (s->dev)
        DPT_CHECK(dpt__device_input_create(s, cfg));
    if (dpt_loader_steps(s->train_ld) / s->accum <= 0)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--batch %d x %d ranks x --accum %d is "
                             "larger than the %d training samples of %s", cfg->batch, nranks,
                             s->accum, s->train->n, s->train->name);
    size_t np, nbuf;
    dpt_model_params(s->model, &np);
    DPT_CHECK(dpt__session_alloc_mom(s, &cfg->sgd));
    if (s->accum > 1)
        s->acc = dpt_calloc((np ? np : 1) * sizeof(float));
    dpt_model_buffers(s->model, &nbuf);
    s->buf_all = dpt_calloc(((size_t)nranks * nbuf + 1) * sizeof(float));
    if ((s->accum > 1 && !s->acc) || !s->buf_all)
        return dpt_error_set(DPT_ERR_NOMEM, "out of memory for optimizer state");
    dpt_model_init_params(s->model, cfg->seed);
    if (rank == 0)   /* the output files, before any training is done */
        DPT_CHECK(dpt_metrics_check(cfg->metrics_path));
    if (rank == 0)
        DPT_CHECK(check_save_path(cfg->save_path));
    return DPT_OK;
}

/* The data-parallel part of the setup (several ranks): transport, collective context, buckets,
 * identical starting parameters, and the check that every rank runs the same job. */
static dpt_status_t setup_parallel(session_t *s, const dpt_train_config_t *cfg, int *mismatch)
{
    *mismatch = 0;
    /* first: every flag that decides which collectives run (a rank that differs would hang) */
    DPT_CHECK(dpt__dist_compare_lines(&s->dist, cfg->agree_flags, mismatch));
    uint32_t h[3];
    dpt__session_hashes(s, h);
    static const char *const what[2] = {"model", "training data"};
    DPT_CHECK(dpt__dist_compare(&s->dist, h + 1, 2, what, mismatch));
    DPT_CHECK(dpt_coll_algo_from_name(cfg->allreduce, &s->algo));
    s->host_algo = s->algo == DPT_COLL_ALGO_NCCL ? DPT_COLL_ALGO_RING : s->algo;
    s->p2p = s->dist.data_p2p;   /* borrowed: the dist layer owns it */
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
                              .stream = s->dev ? s->stream : NULL, .device = s->device,
                              .compress = cfg->compress,
                              .compress_start = cfg->compress_start};
    /* top-k: DGC's momentum correction (an SGD technique: with AdamW plain error feedback) */
    if (dpt_codec_owns_momentum(cfg->compress) && cfg->sgd.optimizer != DPT_OPTIM_ADAMW) {
        bc.compress_momentum = cfg->sgd.momentum;
        bc.compress_nesterov = cfg->sgd.nesterov;
    }
    /* the codecs' warm-up (top-k's sparsity ramp) lasts as long as the learning rate's */
    bc.compress_warmup = (long)(cfg->warmup_epochs * (dpt_loader_steps(s->train_ld) / s->accum));
    if (bc.compress_start < 0)   /* --compress-start auto */
        bc.compress_start = dpt_codec_auto_start(cfg->compress, bc.compress_warmup);
    s->compress_start = bc.compress_start;
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
    s->codec_n = dpt_bucketer_state_n(s->bk);   /* checkpoints carry it (resume.c) */
    if (s->codec_n) {
        s->codec_mine = dpt_calloc(s->codec_n * sizeof(float));
        s->codec_all = dpt_calloc((size_t)s->dist.size * s->codec_n * sizeof(float));
        if (!s->codec_mine || !s->codec_all)
            return dpt_error_set(DPT_ERR_NOMEM, "out of memory for the codec state");
    }
    DPT_CHECK(dpt__watchdog_start(&s->dist, cfg->watchdog_s, &s->wd));
    return DPT_OK;
}

dpt_status_t dpt__session_setup(session_t *s, dpt_train_config_t *cfg, int *collective)
{
    dpt_status_t st = dpt__dist_agree(&s->dist, setup_local(s, cfg), collective);
    if (st != DPT_OK || s->dist.size == 1)
        return st;
    int mismatch = 0;
    st = setup_parallel(s, cfg, &mismatch);
    if (mismatch) {   /* seen by every rank alike; other failures may be local */
        *collective = 2;
        return st;
    }
    return dpt__dist_agree(&s->dist, st, collective);
}

void dpt__session_print_buckets(session_t *s, const char *compress)
{
    int n = dpt_bucketer_count(s->bk);
    char codec[64] = "";
    if (compress && strcmp(compress, "none"))
        snprintf(codec, sizeof codec, ", compressed %s", compress);
    if (codec[0] && s->compress_start)   /* --compress-start, or auto's choice */
        snprintf(codec + strlen(codec), sizeof codec - strlen(codec), " from step %ld",
                 s->compress_start);
    printf("data parallel: %d ranks, %d gradient bucket%s, all-reduce %s%s%s\n", s->dist.size, n,
           n == 1 ? "" : "s", dpt_coll_algo_name(s->algo), codec,
           s->bk && n ? ", overlapped with backward" : "");
    for (int i = 0; i < n; i++) {
        size_t off, cnt;
        dpt_bucketer_range(s->bk, i, &off, &cnt);
        double pred = -1;
        dpt_coll_algo_t a = s->algo == DPT_COLL_ALGO_AUTO
                                ? dpt_coll_auto_choice(s->coll, NULL, cnt * sizeof(float), &pred)
                                : s->algo;
        char sends[64] = "";
        if (codec[0])
            snprintf(sends, sizeof sends, ", the codec sends %.3g%% of its bytes",
                     100.0 * dpt_bucketer_codec_ratio(s->bk, i));
        if (pred >= 0)
            printf("  bucket %d: %zu floats (%.2f MiB) -> %s, predicted %.1f us%s\n", i, cnt,
                   cnt * 4.0 / 1048576.0, dpt_coll_algo_name(a), pred * 1e6, sends);
        else
            printf("  bucket %d: %zu floats (%.2f MiB) -> %s%s\n", i, cnt, cnt * 4.0 / 1048576.0,
                   dpt_coll_algo_name(a), sends);
    }
}
