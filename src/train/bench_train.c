/* bench_train.c: `dptrain bench train`, the throughput of the real training step
 * (dpt__train_step of step.c, as `train` runs it) on a fixed synthetic batch, in one process: no
 * collective, the input seam fed with the same batch every step. Medians of the timed steps. */
#include <stdio.h>
#include <string.h>

#include "dptrain/alloc.h"
#include "dptrain/rng.h"
#include "train/session.h"

typedef struct bench_batch {
    const float *x;          /* NULL: already in the model's input tensor (device) */
    const int32_t *y;
    int n;
} bench_batch_t;

/* The input seam of the benchmark: the same batch every step. */
static dpt_status_t forward_fixed(session_t *s, float *loss, int32_t *hits, int *n_valid)
{
    const bench_batch_t *b = s->input_ctx;
    (void)hits;   /* not counted: no accuracy to report */
    *n_valid = b->n;
    return dpt_model_forward(s->model, b->x, b->y, 0, 1, loss, NULL);
}

dpt_status_t dpt_bench_train(const dpt_train_config_t *cfg, int warmup, int steps,
                             dpt_bench_result_t *res)
{
    int profile = res->profile;
    memset(res, 0, sizeof *res);
    if (steps <= 0 || steps > 100000)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--steps must be in [1, 100000]");
    session_t s = {.dist = {.mpi = 0, .rank = 0, .size = 1}};   /* this process alone */
    dpt_status_t st = DPT_OK;
    float *x = NULL;
    int32_t *y = NULL;
    double *times = NULL;
    DPT_CHECK_GOTO(dpt__session_model(&s, cfg), st, done);
    int c, h, w;
    dpt_model_input_shape(s.model, &c, &h, &w);
    size_t n_in = (size_t)cfg->batch * c * h * w;
    x = dpt_malloc(n_in * sizeof(float));
    y = dpt_malloc((size_t)cfg->batch * sizeof(int32_t));
    times = dpt_malloc((size_t)steps * sizeof(double));
    if (!x || !y || !times) {
        st = dpt_error_set(DPT_ERR_NOMEM, "bench: out of memory");
        goto done;
    }
    DPT_CHECK_GOTO(dpt__session_alloc_mom(&s, &cfg->sgd), st, done);
    dpt_rng_t r;
    dpt_rng_init(&r, cfg->seed, 99);
    for (size_t i = 0; i < n_in; i++)
        x[i] = dpt_rng_normal(&r);
    for (int i = 0; i < cfg->batch; i++)
        y[i] = (int32_t)dpt_rng_below(&r, (uint32_t)dpt_model_classes(s.model));
    dpt_model_init_params(s.model, cfg->seed);
    DPT_CHECK_GOTO(dpt__state_to_device(&s), st, done);
    /* device: the batch stays in the input tensor (as a framework's benchmark keeps it on the
     * GPU); each step ends with a sync so that its time is its own */
    bench_batch_t batch = {.x = x, .y = y, .n = cfg->batch};
    if (s.dev) {
        DPT_CHECK_GOTO(s.ops->import_nchw(s.be, x, dpt_model_input_tensor(s.model)), st, done);
        batch.x = NULL;
    }
    s.forward_next = forward_fixed;
    s.input_ctx = &batch;
    for (int i = 0; i < warmup + steps; i++) {
        if (i == warmup)
            dpt_model_set_profile(s.model, profile);
        double t0 = dpt__now();
        dpt__step_out_t o;
        int collective;
        DPT_CHECK_GOTO(dpt__train_step(&s, cfg, 0.01, 0, i, &o, &collective), st, done);
        if (s.dev)
            DPT_CHECK_GOTO(dpt_backend_sync(s.ops, s.be), st, done);
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
    dpt__session_fini(&s);
    return st;
}
