/* step.c: one optimizer step, the same for `train` and `bench train`, on every backend.
 *   1. accum micro-steps: the input seam (s->forward_next: the loader, the device pipeline or a
 *      fixed batch) -> forward -> loss -> backward; as each layer's gradients are final, the
 *      model calls on_grad_ready, which accumulates them and hands them to their bucket; the
 *      buckets' communication thread all-reduces (averages) each bucket meanwhile;
 *   2. the buckets finish: the gradients are the same bits on every rank;
 *   3. one exchange of two flags: a stop request, the first rank with a non-finite loss;
 *   4. the update (SGD/LARS), unless the loss or the gradients are not finite. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dptrain/compress.h"
#include "dptrain/log.h"
#include "train/session.h"

/* With accumulation the micro-steps before the last only add into acc; the last folds acc in
 * and scales by 1/K. Then the layer counts toward its bucket. */
void dpt__on_grad_ready(void *ctx, size_t off, size_t count)
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

/* --sync-bn: through the buckets' communication thread, so that it is ordered with the gradient
 * all-reduces alike on every rank; one rank: nothing to add. */
dpt_status_t dpt__on_bn_sum(void *ctx, float *buf, size_t n)
{
    session_t *s = ctx;
    if (!s->bk)
        return DPT_OK;
    dpt__watchdog_enter(s->wd, "synchronized batch-norm statistics");
    dpt_status_t st = dpt_bucketer_sum(s->bk, buf, n);
    dpt__watchdog_leave(s->wd);
    return st;
}

uint64_t dpt__batch_pos(const session_t *s, int epoch, int step)
{
    const uint64_t steps = (uint64_t)dpt_loader_steps(s->train_ld);
    return (((uint64_t)epoch * steps + (uint64_t)step) * (uint64_t)s->dist.size
            + (uint64_t)s->dist.rank) * (uint64_t)dpt_model_batch(s->model);
}

void dpt__set_masks(session_t *s, uint64_t pos)
{
    dpt_model_set_rng(s->model, s->seed, pos);
}

dpt_status_t dpt__forward_loader(session_t *s, float *loss, int32_t *hits, int *n_valid)
{
    const dpt_batch_t *b;
    DPT_CHECK(dpt_loader_next(s->train_ld, &b));
    *n_valid = b->n_valid;
    dpt__set_masks(s, dpt__batch_pos(s, b->epoch, b->step));
    return dpt_model_forward(s->model, b->x, b->y, b->n_valid, 1, loss, hits);
}

/* The non-finite cases. --nan-policy skip skips the update, abort stops every rank with the step
 * and rank (*collective = 2). The averaged gradients are the same bits everywhere, so every rank
 * decides alike. Under dynamic loss scaling (fp16) non-finite gradients with a finite loss are
 * an overflow: the step is skipped and the scale halved, whatever the policy. Returns 1 when the
 * update must be skipped. */
static int skip_update(session_t *s, const dpt_train_config_t *cfg, int bad_rank, int finite,
                       int epoch, long step, dpt_status_t *st, int *collective)
{
    if (bad_rank == INT_MAX && s->ls.dynamic && !dpt_loss_scaler_update(&s->ls, !finite))
        return 1;   /* fp16 overflow: skipped, the scale halved */
    if (bad_rank == INT_MAX && finite)
        return 0;
    char who[64] = "";
    if (bad_rank != INT_MAX)
        snprintf(who, sizeof who, " (first non-finite loss on rank %d)", bad_rank);
    if (!cfg->nan_skip) {
        *collective = 2;
        *st = dpt_error_set(DPT_ERR_INTERNAL, "step %ld (epoch %d): the loss or the gradients "
                            "are NaN or Inf%s; lower --lr, or --nan-policy skip", step + 1,
                            epoch + 1, who);
        return 1;
    }
    if (s->dist.rank == 0)
        DPT_WARN("step %ld (epoch %d): the loss or the gradients are NaN or Inf%s; step "
                 "skipped (--nan-policy skip)", step + 1, epoch + 1, who);
    return 1;
}

dpt_status_t dpt__train_step(session_t *s, const dpt_train_config_t *cfg, double lr, int epoch,
                             long step, dpt__step_out_t *o, int *collective)
{
    memset(o, 0, sizeof *o);
    *collective = 0;
    size_t np;
    dpt_model_params(s->model, &np);
    if (s->bk)
        dpt_bucketer_begin(s->bk, step);
    const float scale = s->ls.scale;   /* this step's (the scaler may change it below) */
    dpt_model_set_loss_scale(s->model, scale);
    double lsum = 0;
    for (s->micro = 0; s->micro < s->accum; s->micro++) {
        float loss = 0;
        int32_t hits = 0;
        int n_valid;
        DPT_CHECK(s->forward_next(s, &loss, &hits, &n_valid));
        DPT_CHECK(dpt_model_backward(s->model));
        lsum += loss;
        o->hits += hits;
        o->seen += n_valid;
    }
    o->loss = (float)(lsum / s->accum);
    if (s->bk) {
        dpt__watchdog_enter(s->wd, "gradient all-reduce of step %ld", step + 1);
        dpt_status_t st = dpt_bucketer_finish(s->bk, &o->comm);
        dpt__watchdog_leave(s->wd);
        DPT_CHECK(st);
    }
    int finite = 1;
    DPT_CHECK(dpt__grads_finite(s, np, &finite));
    int flags[2] = {cfg->stop_flag && atomic_load(cfg->stop_flag) ? 0 : 1,
                    isfinite(lsum) ? INT_MAX : s->dist.rank};
    dpt__watchdog_enter(s->wd, "step flags after step %ld", step + 1);
    dpt_status_t fs = dpt__dist_min(&s->dist, flags, 2);
    dpt__watchdog_leave(s->wd);
    DPT_CHECK(fs);
    o->stop = flags[0] == 0;
    dpt_status_t st = DPT_OK;
    int skip = skip_update(s, cfg, flags[1], finite, epoch, step, &st, collective);
    /* The codecs' state is in the units of the scaled gradients: follow a new loss scale, and
     * drop the NaN/Inf a skipped step left there (else they would come back every step). */
    if (s->bk && (skip || s->ls.scale != scale))
        dpt_bucketer_state_scale(s->bk, s->ls.scale / scale);
    if (skip) {
        o->skipped = st == DPT_OK;
        return st;
    }
    dpt_sgd_config_t sgd = cfg->sgd;
    /* The codec applied the momentum, from its first compressed step on; before that the plain
     * all-reduce ran and the optimizer's momentum applies (the codec's starts from 0 at the
     * switch, the optimizer's is no longer used). */
    if (s->bk && dpt_codec_owns_momentum(cfg->compress) && step >= s->compress_start
        && sgd.optimizer != DPT_OPTIM_ADAMW) {
        sgd.momentum = 0;
        sgd.nesterov = 0;
    }
    return dpt__optimizer_step(s, &sgd, (float)lr, 1.0f / scale);
}
