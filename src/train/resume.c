/* resume.c: checkpoints and --resume, the glue between a run and src/ckpt. A checkpoint is the
 * state after a step and before its epoch's end: parameters, every rank's BN buffers, momentum,
 * the position (step, epoch, step in the epoch), the running epoch's counters, the run's
 * flags and every rank's gradient-codec residual (--compress with error feedback). Rank 0 reads and writes the files; the other ranks get what it read by broadcast, and
 * every rank learns whether the file operation worked. */
#include <stdio.h>
#include <string.h>

#include "dptrain/alloc.h"
#include "dptrain/log.h"
#include "train/session.h"

/* --resume: rank 0 reads the checkpoint (a file, or the newest valid one in the directory) and
 * sends parameters, BN buffers, momentum and the position to every rank. *found = 0 when
 * "auto" finds nothing (a fresh start). Collective; errors are agreed on by every rank. */
dpt_status_t dpt__resume(session_t *s, const dpt_train_config_t *cfg, uint32_t config_hash,
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
    cs->codec = s->codec_n ? s->codec_all : NULL;   /* the codecs' residuals, every rank's */
    cs->codec_n = s->codec_n;
    const int k = dpt_optim_state_per_param(&cfg->sgd);
    cs->optim_k = k;
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
        if (st == DPT_OK && *found && cs->optim_k != k)   /* even with --resume-ignore */
            st = dpt_error_set(DPT_ERR_INVALID_ARG, "--resume: %s holds the state of another "
                               "--optimizer (%s), this run uses %s: the optimizer cannot change "
                               "on a resume", path, cs->optim_k == 2 ? "adamw" : "sgd or lars",
                               k == 2 ? "adamw" : "sgd or lars");
    }
    DPT_CHECK(dpt__dist_agree(&s->dist, st, collective));
    if (s->coll) {
        DPT_CHECK(dpt_coll_broadcast(s->coll, found, sizeof *found, 0));
        if (!*found)
            return DPT_OK;
        DPT_CHECK(dpt_coll_broadcast(s->coll, cs, sizeof *cs, 0));
        cs->codec = s->codec_n ? s->codec_all : NULL;   /* our pointer, not rank 0's */
        if (s->codec_n)
            DPT_CHECK(dpt_coll_broadcast(s->coll, s->codec_all,
                                         (size_t)s->dist.size * s->codec_n * sizeof(float), 0));
        DPT_CHECK(dpt_coll_broadcast(s->coll, params, np * sizeof(float), 0));
        DPT_CHECK(dpt_coll_broadcast(s->coll, s->buf_all,
                                     (size_t)s->dist.size * nb * sizeof(float), 0));
        DPT_CHECK(dpt_coll_broadcast(s->coll, s->h_mom, s->n_state * sizeof(float), 0));
    }
    if (*found) {
        memcpy(buffers, s->buf_all + (size_t)s->dist.rank * nb, nb * sizeof(float));
        s->adam_t = cs->optim_t;
    }
    if (*found && s->codec_n)
        dpt_bucketer_state(s->bk, s->codec_all + (size_t)s->dist.rank * s->codec_n, 1);
    if (*found && s->dist.rank == 0) {
        printf("resumed from %s: step %llu (epoch %d, step %d of it)\n", path,
               (unsigned long long)cs->step, cs->epoch + 1, cs->epoch_step);
        if (!cs->flags[0] && cs->config_hash != config_hash)
            DPT_WARN("the flags differ from the run that wrote %s (an older dptrain: it did "
                     "not record which)", path);
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
dpt_status_t dpt__checkpoint(session_t *s, const dpt_train_config_t *cfg, uint32_t config_hash,
                             long step, int epoch, int epoch_step, const double ev[3],
                             int *collective)
{
    size_t np, nb;
    dpt_model_params(s->model, &np);
    dpt_model_buffers(s->model, &nb);
    float *params = dpt_model_host_params(s->model);
    float *buffers = dpt_model_host_buffers(s->model);
    dpt_status_t st = dpt__state_to_host(s, 1);
    if (st != DPT_OK) {   /* the others go on into the collectives below: abort the job */
        *collective = 0;
        return st;
    }
    double g[3] = {ev[0], ev[1], ev[2]};
    dpt__watchdog_enter(s->wd, "checkpoint after step %ld", step);
    DPT__EXCHANGE(dpt__dist_sum(&s->dist, g, 3), collective);
    if (s->coll)   /* every rank's BN buffers (local statistics differ until averaged) */
        DPT__EXCHANGE(dpt_coll_allgather(s->coll, buffers, nb * sizeof(float), s->buf_all),
                      collective);
    else
        memcpy(s->buf_all, buffers, nb * sizeof(float));
    if (s->codec_n) {   /* every rank's codec residual */
        dpt_bucketer_state(s->bk, s->codec_mine, 0);
        DPT__EXCHANGE(dpt_coll_allgather(s->coll, s->codec_mine, s->codec_n * sizeof(float),
                                         s->codec_all), collective);
    }
    if (s->dist.rank == 0) {   /* 8 KiB of flags: not on the stack */
        dpt_ckpt_state_t *cs = dpt_malloc(sizeof *cs);
        if (!cs) {
            st = dpt_error_set(DPT_ERR_NOMEM, "out of memory for a checkpoint");
        } else {
            *cs = (dpt_ckpt_state_t){.step = (uint64_t)step, .epoch = epoch,
                                     .epoch_step = epoch_step, .ranks = s->dist.size,
                                     .seed = cfg->seed, .config_hash = config_hash,
                                     .codec = s->codec_all, .codec_n = s->codec_n,
                                     .optim_k = dpt_optim_state_per_param(&cfg->sgd),
                                     .optim_t = s->adam_t};
            snprintf(cs->flags, sizeof cs->flags, "%s", s->run_text);
            memcpy(cs->counters, g, sizeof g);
            st = dpt_ckpt_save(cfg->checkpoint_dir, cfg->keep_checkpoints, cs, params, np,
                               s->buf_all, nb, s->h_mom, NULL, 0);
            dpt_free(cs);
        }
    }
    st = dpt__dist_agree(&s->dist, st, collective);
    dpt__watchdog_leave(s->wd);
    return st;
}
