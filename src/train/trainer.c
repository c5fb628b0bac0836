/* trainer.c: the step loop. Per step: the loader hands a batch (assembled by its prefetch thread
 * during the previous step) -> forward -> loss -> backward -> SGD on the flat arenas. After each
 * epoch: evaluation on the test split, an epoch line and metrics; at the end a final line. */
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dptrain/alloc.h"
#include "dptrain/backend.h"
#include "dptrain/checkpoint.h"
#include "dptrain/dataset.h"
#include "dptrain/loader.h"
#include "dptrain/model.h"
#include "dptrain/rng.h"
#include "dptrain/trainer.h"
#include "train/internal.h"

void dpt_train_config_default(dpt_train_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->model_path = "models/fmnist-cnn.cfg";
    c->data_spec = "fashion-mnist";
    c->backend = "cpu";
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
    c->sgd = (dpt_sgd_config_t){.momentum = 0.9f, .nesterov = 1, .weight_decay = 5e-4f};
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
} session_t;

static void session_fini(session_t *s)
{
    dpt_free(s->mom);
    dpt_loader_destroy(s->test_ld);
    dpt_loader_destroy(s->train_ld);
    dpt_dataset_destroy(s->test);
    dpt_dataset_destroy(s->train);
    dpt_model_destroy(s->model);
    if (s->be)
        s->ops->destroy(s->be);
    memset(s, 0, sizeof *s);
}

static dpt_status_t session_model(session_t *s, const dpt_train_config_t *cfg)
{
    s->ops = dpt_backend_find(cfg->backend);
    if (!s->ops)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--backend: unknown backend '%s' (built: %s)",
                             cfg->backend, dpt_backend_list());
    dpt_backend_config_t bc = {.threads = cfg->threads, .blocked_layout = cfg->blocked_layout,
                                .conv_winograd = cfg->conv_winograd};
    DPT_CHECK(s->ops->create(&bc, &s->be));
    dpt_model_options_t mo = {.batch = cfg->batch, .label_smoothing = cfg->label_smoothing,
                              .fuse_bn_relu = cfg->fuse_bn_relu};
    DPT_CHECK(dpt_model_find(cfg->model_path, s->model_path, sizeof s->model_path));
    DPT_CHECK(dpt_model_create(s->model_path, s->ops, s->be, &mo, &s->model));
    return DPT_OK;
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

static dpt_status_t open_test(session_t *s, const dpt_train_config_t *cfg)
{
    DPT_CHECK(dpt_dataset_open(cfg->data_spec, 0, cfg->seed, &s->test));
    DPT_CHECK(check_shapes(s->model, s->test, cfg));
    dpt_loader_config_t lc = {.batch = cfg->batch, .rank = 0, .nranks = 1, .seed = cfg->seed,
                              .shuffle = 0, .drop_last = 0, .prefetch = cfg->prefetch};
    return dpt_loader_create(s->test, &lc, &s->test_ld);
}

/* Evaluate on the whole test split (BN in inference mode). */
static dpt_status_t evaluate(session_t *s, double *loss, long *correct, long *total)
{
    DPT_CHECK(dpt_loader_start_epoch(s->test_ld, 0));
    int steps = dpt_loader_steps(s->test_ld);
    double lsum = 0;
    long c = 0, n = 0;
    for (int i = 0; i < steps; i++) {
        const dpt_batch_t *b;
        DPT_CHECK(dpt_loader_next(s->test_ld, &b));
        if (b->n_valid <= 0)
            continue;
        float l = 0;
        int32_t hits = 0;
        DPT_CHECK(dpt_model_forward(s->model, b->x, b->y, b->n_valid, 0, &l, &hits));
        lsum += (double)l * b->n_valid;
        c += hits;
        n += b->n_valid;
    }
    *loss = n ? lsum / (double)n : 0.0;
    *correct = c;
    *total = n;
    return DPT_OK;
}

dpt_status_t dpt_train(const dpt_train_config_t *cfg, dpt_train_result_t *res)
{
    memset(res, 0, sizeof *res);
    session_t s = {0};
    dpt_metrics_t mx = {0};
    dpt_progress_t pg;
    dpt_status_t st = DPT_OK;
    DPT_CHECK_GOTO(session_model(&s, cfg), st, done);
    DPT_CHECK_GOTO(dpt_dataset_open(cfg->data_spec, 1, cfg->seed, &s.train), st, done);
    DPT_CHECK_GOTO(check_shapes(s.model, s.train, cfg), st, done);
    if (cfg->eval_every_epoch)
        DPT_CHECK_GOTO(open_test(&s, cfg), st, done);
    dpt_loader_config_t lc = {.batch = cfg->batch, .rank = 0, .nranks = 1, .seed = cfg->seed,
                              .shuffle = 1, .drop_last = 1, .crop_pad = cfg->crop_pad,
                              .flip = cfg->flip, .prefetch = cfg->prefetch,
                              .rrc = cfg->random_resized_crop,
                              .rrc_scale = {cfg->rrc_min_scale, 1.0f},
                              .rrc_ratio = {3.0f / 4.0f, 4.0f / 3.0f}};
    DPT_CHECK_GOTO(dpt_loader_create(s.train, &lc, &s.train_ld), st, done);
    int steps_per_epoch = dpt_loader_steps(s.train_ld);
    if (steps_per_epoch <= 0) {
        st = dpt_error_set(DPT_ERR_INVALID_ARG, "--batch %d is larger than the %d training "
                           "samples of %s", cfg->batch, s.train->n, s.train->name);
        goto done;
    }
    size_t np, nb;
    float *params = dpt_model_params(s.model, &np);
    float *grads = dpt_model_grads(s.model, NULL);
    float *buffers = dpt_model_buffers(s.model, &nb);
    int n_segs;
    const dpt_param_segment_t *segs = dpt_model_segments(s.model, &n_segs);
    s.mom = dpt_calloc((np ? np : 1) * sizeof(float));
    if (!s.mom) {
        st = dpt_error_set(DPT_ERR_NOMEM, "out of memory for optimizer state");
        goto done;
    }
    dpt_model_init_params(s.model, cfg->seed);

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
    DPT_CHECK_GOTO(dpt_metrics_open(&mx, cfg->metrics_path), st, done);
    if (!cfg->quiet) {
        char summary[8192];
        dpt_model_summary(s.model, summary, sizeof summary);
        printf("dptrain: %s on %s (%d train / %d test images), backend %s, batch %d, %d epochs "
               "x %d steps\n%s", s.model_path, s.train->name, s.train->n,
               s.test ? s.test->n : 0, cfg->backend, cfg->batch, cfg->epochs, steps_per_epoch,
               summary);
        fflush(stdout);
    }
    dpt_progress_init(&pg, cfg->quiet ? 0 : cfg->progress, cfg->log_every, total_steps);
    double t_start = dpt__now(), train_time = 0;
    long step = 0, images = 0;
    for (int epoch = 0; epoch < cfg->epochs && step < total_steps; epoch++) {
        DPT_CHECK_GOTO(dpt_loader_start_epoch(s.train_ld, epoch), st, done);
        double t_epoch = dpt__now(), lsum = 0, log_loss = 0;
        long ecorrect = 0, eseen = 0, log_n = 0;
        double t_log = t_epoch;
        for (int i = 0; i < steps_per_epoch && step < total_steps; i++, step++) {
            const dpt_batch_t *b;
            DPT_CHECK_GOTO(dpt_loader_next(s.train_ld, &b), st, done);
            double t0 = dpt__now();
            float loss = 0;
            int32_t hits = 0;
            DPT_CHECK_GOTO(dpt_model_forward(s.model, b->x, b->y, b->n_valid, 1, &loss, &hits),
                           st, done);
            if (!isfinite(loss)) {
                st = dpt_error_set(DPT_ERR_INTERNAL, "loss is %g at epoch %d step %ld (lower "
                                   "--lr?)", (double)loss, epoch, step);
                goto done;
            }
            DPT_CHECK_GOTO(dpt_model_backward(s.model), st, done);
            double lr = dpt_schedule_lr(&sched, step);
            dpt_sgd_step(&cfg->sgd, (float)lr, params, grads, s.mom, segs, n_segs);
            double t1 = dpt__now();
            lsum += loss;
            log_loss += loss;
            log_n++;
            ecorrect += hits;
            eseen += b->n_valid;
            images += b->n_valid;
            if ((step + 1) % cfg->log_every == 0) {
                double now = dpt__now();
                double img_s = (double)log_n * cfg->batch / (now - t_log);
                dpt_metrics_step(&mx, epoch, step + 1, log_loss / (double)log_n, lr, img_s,
                                 t1 - t0, 0.0, 0.0);
                t_log = now;
                log_loss = 0;
                log_n = 0;
            }
            dpt_progress_update(&pg, epoch, cfg->epochs, i + 1, steps_per_epoch, step + 1,
                                lsum / (i + 1), (double)ecorrect / (double)eseen,
                                (double)eseen / (dpt__now() - t_epoch));
        }
        double epoch_time = dpt__now() - t_epoch;
        train_time += epoch_time;
        res->train_loss = eseen ? lsum / ((double)eseen / cfg->batch) : 0;
        res->train_acc = eseen ? (double)ecorrect / (double)eseen : 0;
        res->img_s = (double)eseen / epoch_time;
        if (s.test_ld) {
            DPT_CHECK_GOTO(evaluate(&s, &res->test_loss, &res->test_correct, &res->test_total), st,
                           done);
            res->test_acc = res->test_total ? (double)res->test_correct / res->test_total : 0;
        }
        res->param_crc = dpt_param_crc(params, np, buffers, nb);
        double wall = dpt__now() - t_start;
        dpt_progress_clear(&pg);
        dpt_metrics_epoch(&mx, epoch + 1, res->train_loss, res->train_acc, res->test_loss,
                          res->test_acc, res->img_s, wall, res->param_crc);
        if (!cfg->quiet) {
            printf("epoch %d/%d  train loss %.4f acc %.4f  test loss %.4f acc %.4f  "
                   "%.0f img/s  %.1f s\n", epoch + 1, cfg->epochs, res->train_loss, res->train_acc,
                   res->test_loss, res->test_acc, res->img_s, wall);
            fflush(stdout);
        }
    }
    res->steps = step;
    res->wall_s = dpt__now() - t_start;
    res->img_s = train_time > 0 ? (double)images / train_time : 0;
    res->param_crc = dpt_param_crc(params, np, buffers, nb);
    dpt_metrics_final(&mx, res->test_acc, res->wall_s, res->img_s, 1, cfg->threads,
                      res->param_crc);
    if (cfg->save_path)
        DPT_CHECK_GOTO(dpt_weights_save(cfg->save_path, params, np, buffers, nb), st, done);
    if (!cfg->quiet) {
        if (s.test_ld)
            printf("final test accuracy: %.2f%% (%ld/%ld)  wall %.1f s  %.0f img/s  "
                   "param_crc %08x\n", 100.0 * res->test_acc, res->test_correct, res->test_total,
                   res->wall_s, res->img_s, res->param_crc);
        else
            printf("final: %ld steps  wall %.1f s  %.0f img/s  param_crc %08x\n", res->steps,
                   res->wall_s, res->img_s, res->param_crc);
    }
done:
    dpt_metrics_close(&mx);
    session_fini(&s);
    return st;
}

dpt_status_t dpt_evaluate(const dpt_train_config_t *cfg, const char *weights_path,
                          dpt_train_result_t *res)
{
    memset(res, 0, sizeof *res);
    session_t s = {0};
    dpt_status_t st = DPT_OK;
    DPT_CHECK_GOTO(session_model(&s, cfg), st, done);
    size_t np, nb;
    float *params = dpt_model_params(s.model, &np);
    float *buffers = dpt_model_buffers(s.model, &nb);
    DPT_CHECK_GOTO(dpt_weights_load(weights_path, params, np, buffers, nb), st, done);
    DPT_CHECK_GOTO(open_test(&s, cfg), st, done);
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
    s.mom = dpt_calloc((np ? np : 1) * sizeof(float));
    if (!x || !y || !times || !s.mom) {
        st = dpt_error_set(DPT_ERR_NOMEM, "bench: out of memory");
        goto done;
    }
    dpt_rng_t r;
    dpt_rng_init(&r, cfg->seed, 99);
    for (size_t i = 0; i < n_in; i++)
        x[i] = dpt_rng_normal(&r);
    for (int i = 0; i < cfg->batch; i++)
        y[i] = (int32_t)dpt_rng_below(&r, (uint32_t)dpt_model_classes(s.model));
    dpt_model_init_params(s.model, cfg->seed);
    int n_segs;
    const dpt_param_segment_t *segs = dpt_model_segments(s.model, &n_segs);
    float *grads = dpt_model_grads(s.model, NULL);
    for (int i = 0; i < warmup + steps; i++) {
        if (i == warmup)
            dpt_model_set_profile(s.model, profile);
        double t0 = dpt__now();
        float loss;
        DPT_CHECK_GOTO(dpt_model_forward(s.model, x, y, 0, 1, &loss, NULL), st, done);
        DPT_CHECK_GOTO(dpt_model_backward(s.model), st, done);
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
