/* epoch_end.c: what runs between epochs, and `dptrain eval`. BN running statistics are averaged
 * over ranks (each rank's come from its own shards), the test split is evaluated sharded over the
 * ranks (every rank gets the global counts), every rank's parameters are compared by checksum,
 * and the best epoch's weights are kept in DIR/best.dpt. */
#include <stdio.h>
#include <string.h>

#include "train/session.h"

dpt_status_t dpt__sync_buffers(session_t *s)
{
    size_t nb;
    dpt_model_buffers(s->model, &nb);
    float *buffers = dpt_model_host_buffers(s->model);
    if (!s->coll || !nb)
        return DPT_OK;
    DPT_CHECK(dpt__state_to_host(s, 0));
    dpt__watchdog_enter(s->wd, "averaging batch-norm running statistics");
    dpt_status_t st = dpt_coll_allreduce(s->coll, buffers, nb, DPT_DTYPE_F32, DPT_REDOP_AVG,
                                         s->host_algo);
    dpt__watchdog_leave(s->wd);
    DPT_CHECK(st);
    return s->dev ? dpt_model_params_to_device(s->model) : DPT_OK;
}

dpt_status_t dpt__evaluate(session_t *s, double *loss, long *correct, long *total)
{
    DPT_CHECK(dpt__sync_buffers(s));
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
    dpt_status_t st = dpt__dist_sum(&s->dist, v, 3);
    dpt__watchdog_leave(s->wd);
    DPT_CHECK(st);
    *loss = v[2] > 0 ? v[0] / v[2] : 0.0;
    *correct = (long)v[1];
    *total = (long)v[2];
    return DPT_OK;
}

dpt_status_t dpt__check_replicas(session_t *s, uint32_t crc, int epoch, int *mismatch)
{
    char what[64];
    snprintf(what, sizeof what, "parameter checksum after epoch %d", epoch);
    const char *w[1] = {what};
    dpt__watchdog_enter(s->wd, "%s", what);
    dpt_status_t st = dpt__dist_compare(&s->dist, &crc, 1, w, mismatch);
    dpt__watchdog_leave(s->wd);
    return st;
}

dpt_status_t dpt__best_start(session_t *s, const dpt_train_config_t *cfg, long resumed_step,
                             double *best)
{
    *best = 0;
    int best_epoch;
    if (s->dist.rank == 0
        && !(cfg->checkpoint_dir && resumed_step >= 0
             && dpt_ckpt_best_read(cfg->checkpoint_dir, (uint64_t)resumed_step, best,
                                   &best_epoch)))
        *best = -1;
    return dpt__dist_sum(&s->dist, best, 1);   /* rank 0's, on every rank */
}

dpt_status_t dpt__best_update(session_t *s, const dpt_train_config_t *cfg, int epoch, long step,
                              double acc, double *best, int *improved, int *collective)
{
    *improved = 0;
    if (!cfg->checkpoint_dir || !cfg->save_best || !s->test_ld || !(acc > *best))
        return DPT_OK;
    size_t np, nb;
    dpt_model_params(s->model, &np);
    dpt_model_buffers(s->model, &nb);
    dpt_status_t st = DPT_OK;
    if (s->dist.rank == 0)   /* the host mirrors are current: the replica check read them */
        st = dpt_ckpt_best_save(cfg->checkpoint_dir, epoch, (uint64_t)step, acc,
                                dpt_model_host_params(s->model), np,
                                dpt_model_host_buffers(s->model), nb);
    DPT_CHECK(dpt__dist_agree(&s->dist, st, collective));
    *best = acc;
    *improved = 1;
    return DPT_OK;
}

dpt_status_t dpt_evaluate(const dpt_train_config_t *cfg, const char *weights_path,
                          dpt_train_result_t *res)
{
    memset(res, 0, sizeof *res);
    session_t s = {0};
    dpt_status_t st = DPT_OK;
    DPT_CHECK(dpt__dist_init(&s.dist));
    DPT_CHECK_GOTO(dpt__session_model(&s, cfg), st, done);
    size_t np, nb;
    dpt_model_params(s.model, &np);
    dpt_model_buffers(s.model, &nb);
    float *params = dpt_model_host_params(s.model);
    float *buffers = dpt_model_host_buffers(s.model);
    /* a weights file (train --save, DIR/best.dpt) or a checkpoint (ckpt-<step>.dpt) */
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
        st = dpt__session_open_test(&s, cfg);
    /* under mpirun every rank evaluates its shard: all must have got this far */
    int collective = 1;
    DPT_CHECK_GOTO(dpt__dist_agree(&s.dist, st, &collective), st, done);
    double t0 = dpt__now();
    DPT_CHECK_GOTO(dpt__evaluate(&s, &res->test_loss, &res->test_correct, &res->test_total), st,
                   done);
    res->wall_s = dpt__now() - t0;
    res->test_acc = res->test_total ? (double)res->test_correct / res->test_total : 0;
    res->param_crc = dpt_param_crc(params, np, buffers, nb);
done:
    dpt__session_fini(&s);
    return st;
}
