/* trainer.c: dpt_train, one rank of a data-parallel job (or the only one), from setup to the
 * final line. The stages, each in a file of its own (train/session.h lists them):
 *   setup (session.c) -> resume (resume.c) -> per epoch: steps (step.c: loader -> forward ->
 *   backward with bucketed all-reduce -> flags -> optimizer), checkpoints and stop requests
 *   between steps -> epoch end (epoch_end.c: BN averaging, evaluation, replica check, best
 *   epoch; an epoch line and metrics) -> the final line, the weights, the metrics' last record.
 * This file holds the loop's bookkeeping: the schedule, logging, progress and the results. */
#include <stdio.h>
#include <string.h>

#include "dptrain/alloc.h"
#include "train/session.h"

void dpt_train_config_default(dpt_train_config_t *c)
{
    memset(c, 0, sizeof *c);
#define DEFAULT(ctype, field, def, ...) c->field = def;
#define SGD_DEFAULT(ctype, field, def, ...) c->sgd.field = def;
    DPT_TRAIN_FLAGS(DEFAULT)
    DPT_SGD_FLAGS(SGD_DEFAULT)
#undef DEFAULT
#undef SGD_DEFAULT
}

/* One run's loop state besides the session. */
typedef struct run {
    session_t s;
    const dpt_train_config_t *cfg;
    dpt_train_result_t *res;
    dpt_metrics_t mx;
    dpt_progress_t pg;
    dpt_schedule_t sched;
    int rank, nranks, quiet;
    int steps_per_epoch;
    long global_batch, total_steps;
    long step, images;          /* optimizer steps done; images trained by this rank */
    double t_start, train_time;
    double best_acc;            /* the best test accuracy so far (-1: none yet) */
    int reached;                /* the last evaluation reached --stop-at-acc (every rank alike) */
    uint32_t hashes[3];         /* dpt__session_hashes */
    dpt_ckpt_state_t cs;        /* the checkpoint resumed from */
    int resumed, late_stop;     /* late_stop: a stop request came with the final step */
    char resumed_path[4096];
    float *params, *buffers;    /* host mirrors, brought up to date (dpt__state_to_host) before */
    size_t np, nb;              /* each checksum and save */
} run_t;

/* The running epoch's sums: over steps (this rank) and since the last log line. */
typedef struct epoch_sums {
    double t_epoch, t_log;
    double ev[3];               /* loss sum over steps, correct, seen */
    double seen_before;         /* of ev[2], the images of steps before a resume */
    long done_steps;
    double log_loss, log_compute;
    dpt_bucket_stats_t log_comm;   /* sums over the steps since the last record */
    long log_n;
} epoch_sums_t;

/* A failure of this rank alone: the others may be inside a collective, so the job is aborted
 * unless this is the only rank. */
#define LOCAL(r, call)                                       \
    do {                                                     \
        dpt_status_t st_ = (call);                           \
        if (st_ != DPT_OK) {                                 \
            (r)->res->collective_error = (r)->nranks == 1;   \
            return st_;                                      \
        }                                                    \
    } while (0)

/* Steps per epoch, the step limit and the learning-rate schedule. */
static void plan(run_t *r)
{
    const dpt_train_config_t *cfg = r->cfg;
    dpt_model_params(r->s.model, &r->np);
    dpt_model_buffers(r->s.model, &r->nb);
    r->params = dpt_model_host_params(r->s.model);
    r->buffers = dpt_model_host_buffers(r->s.model);
    r->steps_per_epoch = dpt_loader_steps(r->s.train_ld) / r->s.accum;
    r->global_batch = (long)cfg->batch * r->nranks * r->s.accum;
    r->total_steps = (long)r->steps_per_epoch * cfg->epochs;
    if (cfg->max_steps > 0 && cfg->max_steps < r->total_steps)
        r->total_steps = cfg->max_steps;
    r->sched = (dpt_schedule_t){
        .kind = cfg->schedule,
        .base_lr = cfg->lr,
        .total_steps = r->total_steps,
        .warmup_steps = (long)(cfg->warmup_epochs * r->steps_per_epoch),
        .step_every = (long)(cfg->step_epochs * r->steps_per_epoch),
        .gamma = cfg->step_gamma,
        .peak = cfg->onecycle_peak,
        .final_frac = cfg->final_lr_frac,
    };
}

/* Rank 0: the job, the model's layers, the buckets. */
static void print_header(run_t *r)
{
    const dpt_train_config_t *cfg = r->cfg;
    session_t *s = &r->s;
    enum { SUMMARY_BYTES = 1 << 18 };   /* ~90 characters per layer, up to 1024 layers */
    char *summary = dpt_malloc(SUMMARY_BYTES);
    if (summary)
        dpt_model_summary(s->model, summary, SUMMARY_BYTES);
    char acc[32] = "";
    if (s->accum > 1)
        snprintf(acc, sizeof acc, " x accum %d", s->accum);
    char limit[64] = "";
    if (r->total_steps < (long)r->steps_per_epoch * cfg->epochs)
        snprintf(limit, sizeof limit, ", stopping at step %ld (--max-steps)", r->total_steps);
    char dev[96] = "";
    if (s->dev)
        snprintf(dev, sizeof dev, " (device %d, %s%s)", s->device,
                 dpt_precision_name(cfg->precision),
                 s->ls.dynamic ? ", dynamic loss scaling"
                               : s->ls.scale != 1.0f ? ", static loss scale" : "");
    printf("dptrain: %s on %s (%d train / %d test images), backend %s%s, %d rank%s x batch %d"
           "%s = global batch %ld, %d epochs x %d steps%s\n%s", s->model_path, s->train->name,
           s->train->n, s->test ? s->test->n : 0, cfg->backend, dev, r->nranks,
           r->nranks == 1 ? "" : "s", cfg->batch, acc, r->global_batch, cfg->epochs,
           r->steps_per_epoch, limit, summary ? summary : "(no memory for the layer summary)\n");
    dpt_free(summary);
    if (s->bk)
        dpt__session_print_buckets(s, cfg->compress);
    fflush(stdout);
}

/* --resume, the metrics file (the interrupted run's records up to the checkpoint, then this
 * run's), the state on the device, the clocks. */
static dpt_status_t start(run_t *r)
{
    const dpt_train_config_t *cfg = r->cfg;
    dpt_train_result_t *res = r->res;
    dpt_ckpt_state_t *cs = &r->cs;
    dpt__session_hashes(&r->s, r->hashes);
    res->resumed_from = -1;
    if (cfg->resume) {
        DPT_CHECK(dpt__resume(&r->s, cfg, r->hashes[0], cs, &r->resumed, r->resumed_path,
                              sizeof r->resumed_path, &res->collective_error));
        if (r->resumed)
            res->resumed_from = (long)cs->step;
    }
    dpt_status_t st = dpt_metrics_open(&r->mx, r->rank == 0 ? cfg->metrics_path : NULL,
                                       r->resumed ? (long)cs->step : -1,
                                       r->resumed ? cs->epoch + 1 : 0);
    dpt_metrics_config(&r->mx, cfg->all_flags, r->nranks, cfg->threads, res->resumed_from,
                       r->resumed ? r->resumed_path : NULL);
    if (st == DPT_OK)
        st = dpt_metrics_status(&r->mx);
    DPT_CHECK(dpt__dist_agree(&r->s.dist, st, &res->collective_error));
    LOCAL(r, dpt__state_to_device(&r->s));   /* initial or resumed state */
    r->t_start = dpt__now();
    r->step = r->resumed ? (long)cs->step : 0;
    DPT__EXCHANGE(dpt__best_start(&r->s, cfg, res->resumed_from, &r->best_acc),
                  &res->collective_error);
    return DPT_OK;
}

/* A resume mid-epoch: the epoch's counters so far, and its batches done skipped. */
static dpt_status_t continue_epoch(run_t *r, epoch_sums_t *e, int *first)
{
    *first = r->cs.epoch_step;
    memcpy(e->ev, r->cs.counters, sizeof e->ev);
    e->seen_before = e->ev[2];
    e->done_steps = *first;
    int more = *first < r->steps_per_epoch && r->step < r->total_steps;
    for (int k = 0; more && k < *first * r->s.accum; k++) {
        const dpt_batch_t *b;
        LOCAL(r, dpt_loader_next(r->s.train_ld, &b));
    }
    dpt__train_batches_taken(&r->s, *first * r->s.accum);
    return DPT_OK;
}

/* After step `i` of the epoch: its sums, a metrics record every --log-every steps, progress. */
static void account(run_t *r, epoch_sums_t *e, const dpt__step_out_t *o, int epoch, int i,
                    double lr, double t_step)
{
    dpt_train_result_t *res = r->res;
    res->skipped_steps += o->skipped;
    e->ev[0] += o->loss;
    e->ev[1] += (double)o->hits;
    e->ev[2] += (double)o->seen;
    e->done_steps++;
    r->images += o->seen;
    const dpt_bucket_stats_t *c = &o->comm;
    res->t_comm_s += c->t_comm;
    res->t_comm_exposed_s += c->t_exposed;
    e->log_loss += o->loss;
    e->log_compute += t_step - c->t_exposed;
    e->log_comm.t_exposed += c->t_exposed;
    e->log_comm.t_comm += c->t_comm;
    e->log_comm.t_code += c->t_code;
    e->log_comm.bytes_sent += c->bytes_sent;   /* what the transport was handed, not nominal */
    e->log_comm.bytes_fp32 += c->bytes_fp32;
    e->log_n++;
    if ((r->step + 1) % r->cfg->log_every == 0) {
        double now = dpt__now(), n = (double)e->log_n;
        const dpt_bucket_stats_t *l = &e->log_comm;
        dpt_metrics_step_rec_t rec = {
            .epoch = epoch + 1, .step = r->step + 1, .loss = e->log_loss / n, .lr = lr,
            .img_s = n * r->global_batch / (now - e->t_log), .t_compute_s = e->log_compute / n,
            .t_comm_exposed_s = l->t_exposed / n, .bytes_sent = l->bytes_sent / n,
            .compress_ratio = l->bytes_fp32 > 0 ? l->bytes_sent / l->bytes_fp32 : 1.0,
            .t_comm_s = l->t_comm / n, .t_code_s = l->t_code / n,
            .loss_scale = r->s.ls.scale, .skipped = res->skipped_steps};
        dpt_metrics_step(&r->mx, &rec);
        e->t_log = now;
        e->log_loss = e->log_compute = 0;
        memset(&e->log_comm, 0, sizeof e->log_comm);
        e->log_n = 0;
    }
    dpt_progress_update(&r->pg, epoch, r->cfg->epochs, i + 1, r->steps_per_epoch, r->step + 1,
                        e->ev[0] / (double)e->done_steps, e->ev[1] / e->ev[2],
                        e->ev[2] * r->nranks / (dpt__now() - e->t_epoch));
}

/* An evaluation of the test split (sharded; every rank gets the global counts, summed in rank
 * order, so --stop-at-acc decides alike everywhere) after `steps_done` steps, at an epoch end or
 * mid-epoch (--eval-every): the results, an "eval" record in runs with --eval-every or
 * --stop-at-acc, the decision. */
static dpt_status_t evaluate(run_t *r, int epoch, long steps_done)
{
    const dpt_train_config_t *cfg = r->cfg;
    dpt_train_result_t *res = r->res;
    double t0 = dpt__now();
    LOCAL(r, dpt__evaluate(&r->s, &res->test_loss, &res->test_correct, &res->test_total));
    res->test_acc = res->test_total ? (double)res->test_correct / res->test_total : 0;
    double now = dpt__now();
    res->eval_s += now - t0;
    res->evals++;
    r->reached = cfg->stop_at_acc > 0 && res->test_acc >= cfg->stop_at_acc;
    if (cfg->eval_every > 0 || cfg->stop_at_acc > 0)
        dpt_metrics_eval(&r->mx, epoch + 1, steps_done, res->test_loss, res->test_acc,
                         now - r->t_start, res->eval_s);
    return DPT_OK;
}

/* --eval-every's evaluation after step r->step of epoch `epoch`, with a line; the epoch's clocks
 * move past it, so that img/s counts training time only. */
static dpt_status_t evaluate_mid_epoch(run_t *r, epoch_sums_t *e, int epoch)
{
    double t0 = dpt__now();
    DPT_CHECK(evaluate(r, epoch, r->step + 1));
    double dt = dpt__now() - t0;
    e->t_epoch += dt;
    e->t_log += dt;
    if (!r->quiet) {
        dpt_progress_clear(&r->pg);
        printf("step %ld (epoch %d): test loss %.4f acc %.4f  %.1f s\n", r->step + 1, epoch + 1,
               r->res->test_loss, r->res->test_acc, dpt__now() - r->t_start);
        fflush(stdout);
    }
    return DPT_OK;
}

/* A stop request after step `i`: the run ends here (a checkpoint was written), resumable. */
static dpt_status_t stop_here(run_t *r, int epoch, int i)
{
    dpt_train_result_t *res = r->res;
    res->stopped = 1;
    res->steps = r->step + 1;
    LOCAL(r, dpt__state_to_host(&r->s, 0));
    res->param_crc = dpt_param_crc(r->params, r->np, r->buffers, r->nb);
    res->wall_s = dpt__now() - r->t_start;
    dpt_progress_clear(&r->pg);
    if (r->rank == 0) {
        printf("stopped after step %ld (epoch %d, step %d of %d)%s\n", r->step + 1, epoch + 1,
               i + 1, r->steps_per_epoch,
               r->cfg->checkpoint_dir ? ", checkpoint written" : ", no --checkpoint-dir");
        fflush(stdout);
    }
    return DPT_OK;
}

/* The steps of one epoch, with --eval-every's evaluations, checkpoints and stop requests between
 * them. *stopped = 1 when a stop request ended the run, 2 when an evaluation reached
 * --stop-at-acc (the run is complete). */
static dpt_status_t train_epoch(run_t *r, int epoch, epoch_sums_t *e, int *stopped)
{
    const dpt_train_config_t *cfg = r->cfg;
    *stopped = 0;
    LOCAL(r, dpt__train_epoch_start(&r->s, epoch));
    memset(e, 0, sizeof *e);
    e->t_epoch = dpt__now();
    int first = 0;
    if (r->resumed && epoch == r->cs.epoch)
        DPT_CHECK(continue_epoch(r, e, &first));
    e->t_log = e->t_epoch;
    for (int i = first; i < r->steps_per_epoch && r->step < r->total_steps; i++, r->step++) {
        double lr = dpt_schedule_lr(&r->sched, r->step);
        double t0 = dpt__now();
        dpt__step_out_t o;
        int coll_err = 0;
        dpt_status_t st = dpt__train_step(&r->s, cfg, lr, epoch, r->step, &o, &coll_err);
        if (st != DPT_OK) {
            r->res->collective_error = coll_err;
            return st;
        }
        account(r, e, &o, epoch, i, lr, dpt__now() - t0);
        /* stop requested on any rank? (every rank asks after every step) */
        int last = i + 1 == r->steps_per_epoch || r->step + 1 == r->total_steps;
        /* an epoch's last step: the epoch end evaluates (unless --no-eval) */
        if (cfg->eval_every > 0 && (r->step + 1) % cfg->eval_every == 0 && r->s.test_ld
            && !(i + 1 == r->steps_per_epoch && cfg->eval_every_epoch))
            DPT_CHECK(evaluate_mid_epoch(r, e, epoch));
        if (cfg->checkpoint_dir
            && (o.stop || last || r->reached
                || (cfg->checkpoint_every > 0 && (r->step + 1) % cfg->checkpoint_every == 0)))
            DPT_CHECK(dpt__checkpoint(&r->s, cfg, r->hashes[0], r->step + 1, epoch, i + 1, e->ev,
                                      &r->res->collective_error));
        if (r->reached) {   /* --stop-at-acc: complete (a stop request with it changes nothing) */
            r->late_stop = o.stop;
            r->step++;
            *stopped = 2;
            return DPT_OK;
        }
        if (o.stop && r->step + 1 == r->total_steps) {
            r->late_stop = 1;   /* nothing left to stop before: finish (exit 0, no requeue) */
        } else if (o.stop) {
            *stopped = 1;
            return stop_here(r, epoch, i);
        }
    }
    return DPT_OK;
}

/* The epoch end: counters summed over ranks, evaluation (or the BN averaging alone), the replica
 * check, the best epoch, an epoch line and record. */
static dpt_status_t end_epoch(run_t *r, int epoch, const epoch_sums_t *e)
{
    dpt_train_result_t *res = r->res;
    session_t *s = &r->s;
    double epoch_time = dpt__now() - e->t_epoch;
    r->train_time += epoch_time;
    double gv[4] = {e->ev[0], e->ev[1], e->ev[2], e->ev[2] - e->seen_before};
    dpt__watchdog_enter(s->wd, "training counters of epoch %d", epoch + 1);
    dpt_status_t cs = dpt__dist_sum(&s->dist, gv, 4);
    dpt__watchdog_leave(s->wd);
    DPT__EXCHANGE(cs, &res->collective_error);
    res->train_loss = e->done_steps ? gv[0] / ((double)e->done_steps * r->nranks) : 0;
    res->train_acc = gv[2] > 0 ? gv[1] / gv[2] : 0;
    res->img_s = gv[3] / epoch_time;   /* the images trained by this process */
    double test_loss = 0, test_acc = 0;   /* of the epoch's evaluation (--no-eval: none) */
    if (s->test_ld && r->cfg->eval_every_epoch) {
        DPT_CHECK(evaluate(r, epoch, r->step));
        test_loss = res->test_loss;
        test_acc = res->test_acc;
    } else {
        LOCAL(r, dpt__sync_buffers(s));
    }
    LOCAL(r, dpt__state_to_host(s, 0));
    res->param_crc = dpt_param_crc(r->params, r->np, r->buffers, r->nb);
    int mismatch = 0;
    dpt_status_t st = dpt__check_replicas(s, res->param_crc, epoch + 1, &mismatch);
    if (st != DPT_OK) {
        res->collective_error = mismatch ? 2 : 0;   /* a mismatch: every rank saw it */
        return st;
    }
    int best = 0;
    DPT_CHECK(dpt__best_update(s, r->cfg, epoch + 1, r->step, test_acc, &r->best_acc, &best,
                               &res->collective_error));
    double wall = dpt__now() - r->t_start;
    dpt_progress_clear(&r->pg);
    dpt_metrics_epoch(&r->mx, epoch + 1, r->step, res->train_loss, res->train_acc,
                      test_loss, test_acc, res->img_s, wall, res->param_crc);
    if (!r->quiet) {
        printf("epoch %d/%d  train loss %.4f acc %.4f  test loss %.4f acc %.4f  "
               "%.0f img/s  %.1f s%s\n", epoch + 1, r->cfg->epochs, res->train_loss,
               res->train_acc, test_loss, test_acc, res->img_s, wall,
               best ? "  best so far: best.dpt" : "");
        fflush(stdout);
    }
    return DPT_OK;
}

/* After the last epoch: the run's results, the weights, the final record and line. */
static dpt_status_t finish(run_t *r)
{
    const dpt_train_config_t *cfg = r->cfg;
    dpt_train_result_t *res = r->res;
    res->steps = r->step;
    res->wall_s = dpt__now() - r->t_start;
    res->reached_acc = r->reached;
    double gi = (double)r->images;
    DPT__EXCHANGE(dpt__dist_sum(&r->s.dist, &gi, 1), &res->collective_error);
    res->img_s = r->train_time > 0 ? gi / r->train_time : 0;
    res->loss_scale = r->s.ls.scale;
    LOCAL(r, dpt__state_to_host(&r->s, 0));
    res->param_crc = dpt_param_crc(r->params, r->np, r->buffers, r->nb);
    dpt_metrics_final(&r->mx, res->test_acc, res->wall_s, res->img_s, r->nranks, cfg->threads,
                      res->param_crc);
    dpt_status_t st = DPT_OK;
    if (cfg->save_path && r->rank == 0)
        st = dpt_weights_save(cfg->save_path, r->params, r->np, r->buffers, r->nb);
    if (st == DPT_OK)   /* the weights are saved: now a failed metrics write fails the run */
        st = dpt_metrics_status(&r->mx);
    DPT_CHECK(dpt__dist_agree(&r->s.dist, st, &res->collective_error));
    if (r->rank != 0)
        return DPT_OK;
    if (r->reached && !r->quiet)
        printf("stopped after step %ld: test accuracy %.4f >= %g (--stop-at-acc)\n", res->steps,
               res->test_acc, cfg->stop_at_acc);
    if (r->late_stop || (cfg->stop_flag && atomic_load(cfg->stop_flag)))
        printf("the stop request came with the final step or after it: the run is complete\n");
    if (r->s.test_ld)   /* the final line, also with --quiet */
        printf("final test accuracy: %.2f%% (%ld/%ld)  wall %.1f s  %.0f img/s  param_crc %08x\n",
               100.0 * res->test_acc, res->test_correct, res->test_total, res->wall_s,
               res->img_s, res->param_crc);
    else
        printf("final: %ld steps  wall %.1f s  %.0f img/s  param_crc %08x\n", res->steps,
               res->wall_s, res->img_s, res->param_crc);
    if (r->nranks > 1 && res->t_comm_s > 0 && !r->quiet) {
        double hidden = 1.0 - res->t_comm_exposed_s / res->t_comm_s;
        printf("communication: %.2f s all-reduce, %.2f s exposed (%.0f%% hidden behind "
               "backward)\n", res->t_comm_s, res->t_comm_exposed_s,
               100.0 * (hidden > 0 ? hidden : 0));
    }
    fflush(stdout);
    return DPT_OK;
}

/* The epochs. A checkpoint holds the state after its step and before that epoch's end: a resume
 * runs the epoch end it left pending, also when no step remains (a checkpoint of the last step:
 * the run had completed). */
static dpt_status_t run_epochs(run_t *r)
{
    const dpt_ckpt_state_t *cs = &r->cs;
    for (int epoch = r->resumed ? cs->epoch : 0;
         epoch < r->cfg->epochs
         && (r->step < r->total_steps || (r->resumed && epoch == cs->epoch));
         epoch++) {
        epoch_sums_t e;
        int stopped;
        DPT_CHECK(train_epoch(r, epoch, &e, &stopped));
        if (stopped == 1)
            return DPT_OK;
        if (stopped == 2) {   /* --stop-at-acc mid-epoch: no epoch end */
            r->train_time += dpt__now() - e.t_epoch;
            break;
        }
        DPT_CHECK(end_epoch(r, epoch, &e));
        if (r->reached)
            break;
    }
    return finish(r);
}

/* dpt_train and dpt__train_p2p: the ranks of MPI (or one), or of two given transports. */
static dpt_status_t train_on(const dpt_train_config_t *cfg, dpt_train_result_t *res,
                             dpt_p2p_t *ctl, dpt_p2p_t *data)
{
    memset(res, 0, sizeof *res);
    run_t run = {0};   /* about 25 KiB: the session's paths and flag texts, the checkpoint's */
    run_t *r = &run;
    dpt_train_config_t derived = *cfg;   /* --global-batch: the per-rank batch follows */
    r->cfg = &derived;
    r->res = res;
    r->s.lock_fd = -1;
    DPT_CHECK(ctl ? dpt__dist_init_p2p(&r->s.dist, ctl, data) : dpt__dist_init(&r->s.dist));
    r->rank = r->s.dist.rank;
    r->nranks = r->s.dist.size;
    r->quiet = cfg->quiet || r->rank != 0;
    res->ranks = r->nranks;
    res->collective_error = 1;
    dpt_status_t st = dpt__session_setup(&r->s, &derived, &res->collective_error);
    if (st == DPT_OK) {
        plan(r);
        if (!r->quiet)
            print_header(r);
        dpt_progress_init(&r->pg, r->quiet ? 0 : cfg->progress, cfg->log_every, r->total_steps);
        if (r->quiet)
            r->pg.bar = -1;
        st = start(r);
    }
    if (st == DPT_OK)
        st = run_epochs(r);
    dpt_progress_fini(&r->pg);
    dpt_metrics_close(&r->mx);
    if (st != DPT_OK && !res->collective_error)
        return st;   /* peers may be blocked in a collective with our communication thread:
                        tear nothing down, the caller aborts the job (MPI_Abort) */
    dpt__session_fini(&r->s);
    return st;
}

dpt_status_t dpt_train(const dpt_train_config_t *cfg, dpt_train_result_t *res)
{
    return train_on(cfg, res, NULL, NULL);
}

dpt_status_t dpt__train_p2p(const dpt_train_config_t *cfg, dpt_train_result_t *res,
                            dpt_p2p_t *ctl, dpt_p2p_t *data)
{
    return train_on(cfg, res, ctl, data);
}
