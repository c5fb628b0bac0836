/* optim.h: optimizers over the flat parameter arena and the learning-rate schedule.
 * SGD follows PyTorch's torch.optim.SGD (dampening 0): g = grad + wd*p (decayed segments only),
 * v = momentum*v + g, update = nesterov ? g + momentum*v : v, p -= lr*update. */
#ifndef DPT_OPTIM_H
#define DPT_OPTIM_H

#include <stddef.h>

#include "dptrain/model.h"
#include "dptrain/status.h"

typedef struct dpt_sgd_config {
    float momentum;
    int nesterov;
    float weight_decay;   /* applied to segments with decay = 1 (conv/fc weights only) */
    int lars;             /* 1: LARS trust ratio per decayed segment (BN and biases excluded):
                             g' = eta*|p|/(|g| + wd*|p|) * (g + wd*p), then the momentum update */
    float lars_eta;       /* LARS trust coefficient (default 0.001) */
} dpt_sgd_config_t;

/* One SGD step over every segment. params, grads and mom have the arena's length. */
void dpt_sgd_step(const dpt_sgd_config_t *cfg, float lr, float *params, const float *grads,
                  float *mom, const dpt_param_segment_t *segs, int n_segs);

typedef enum {
    DPT_SCHED_CONSTANT = 0,
    DPT_SCHED_COSINE,
    DPT_SCHED_LINEAR,
    DPT_SCHED_STEP,
    DPT_SCHED_ONECYCLE,   /* piecewise linear: 0 -> peak at `peak` fraction -> 0 at the end */
} dpt_sched_kind_t;

typedef struct dpt_schedule {
    dpt_sched_kind_t kind;
    double base_lr;
    long total_steps;
    long warmup_steps;    /* linear warmup from base_lr/warmup_steps to base_lr (not onecycle) */
    long step_every;      /* STEP: multiply by gamma every step_every steps after warmup */
    double gamma;
    double peak;          /* ONECYCLE: fraction of total_steps where the LR peaks */
    double final_frac;    /* COSINE/LINEAR: final LR as a fraction of base_lr */
} dpt_schedule_t;

/* Parse "cosine", "linear", "step", "onecycle", "constant"; DPT_ERR_INVALID_ARG otherwise. */
dpt_status_t dpt_schedule_parse(const char *name, dpt_sched_kind_t *out);
const char *dpt_schedule_name(dpt_sched_kind_t k);
/* Learning rate for 0-based step `step`. */
double dpt_schedule_lr(const dpt_schedule_t *s, long step);

#endif
