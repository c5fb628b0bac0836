/* optim.h: optimizers over the flat parameter arena and the learning-rate schedule.
 * SGD follows PyTorch's torch.optim.SGD (dampening 0): g = grad + wd*p (decayed segments only),
 * v = momentum*v + g, update = nesterov ? g + momentum*v : v, p -= lr*update.
 * AdamW follows torch.optim.AdamW (amsgrad off): p *= 1 - lr*wd (decayed segments only),
 * m = b1*m + (1-b1)*g, v = b2*v + (1-b2)*g^2, p -= lr * mhat / (sqrt(vhat) + eps) with
 * mhat = m / (1 - b1^t), vhat = v / (1 - b2^t), t the 1-based count of applied steps. */
#ifndef DPT_OPTIM_H
#define DPT_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "dptrain/model.h"
#include "dptrain/status.h"
#include "dptrain/train_flags.h"

/* The values of --optimizer (dpt_sgd_config_t.optimizer), in the order of its flag row. */
typedef enum {
    DPT_OPTIM_SGD = 0,     /* SGD with momentum */
    DPT_OPTIM_LARS = 1,    /* SGD with LARS trust ratios */
    DPT_OPTIM_ADAMW = 2,   /* AdamW */
} dpt_optim_kind_t;

/* The optimizer's configuration, the rows of DPT_SGD_FLAGS (train_flags.h): the choice
 * (optimizer, a dpt_optim_kind_t), SGD's (momentum, nesterov, lars_eta), the weight decay both
 * use on the segments with decay = 1 (conv/fc weights only), AdamW's (adam_beta1, adam_beta2,
 * adam_eps). Each optimizer reads its own fields and ignores the others'. */
typedef struct dpt_sgd_config {
    DPT_SGD_FLAGS(DPT_FLAG_FIELD)
} dpt_sgd_config_t;

/* Optimizer-state floats per parameter: 1 for SGD and LARS (the momentum), 2 for AdamW (m, then
 * v: the state arena is m[np] followed by v[np]). */
int dpt_optim_state_per_param(const dpt_sgd_config_t *cfg);

/* One SGD step over every segment (optimizer sgd or lars; SGD with momentum, Nesterov
 * optional, and with lars the LARS trust ratio per decayed segment first). params, grads and
 * mom have the arena's length. */
void dpt_sgd_step(const dpt_sgd_config_t *cfg, float lr, float *params, const float *grads,
                  float *mom, const dpt_param_segment_t *segs, int n_segs);

/* The same step on device arenas (builds with CUDA; src/optim/sgd_cuda.cu), queued on `stream`
 * (a cudaStream_t; NULL = the legacy default stream). Each gradient is first multiplied by
 * grad_scale (1/loss scale under fp16 loss scaling, else 1), then the update is exactly the one
 * above, element by element in float32. LARS is not available on the device
 * (DPT_ERR_UNSUPPORTED). segs is a host array. Errors name the CUDA call. */
dpt_status_t dpt_sgd_step_device(const dpt_sgd_config_t *cfg, float lr, float grad_scale,
                                 float *params, const float *grads, float *mom,
                                 const dpt_param_segment_t *segs, int n_segs, void *stream);
/* One AdamW step over every segment (src/optim/adamw.c), the formulas at the top, element by
 * element in float32 with the bias corrections computed once in double from t: the same bits on
 * every rank for the same inputs. t: the 1-based index of this step among the applied ones (the
 * caller counts them: a skipped step, fp16 overflow or --nan-policy skip, does not advance t;
 * t = 1 is the first update). params, grads, m and v have the arena's length (m and v zero
 * before the first step). Reads cfg's adam_beta1, adam_beta2, adam_eps and weight_decay. */
void dpt_adamw_step(const dpt_sgd_config_t *cfg, float lr, uint64_t t, float *params,
                    const float *grads, float *m, float *v, const dpt_param_segment_t *segs,
                    int n_segs);
/* AdamW's per-step scalars for step t: step_size = lr / (1 - b1^t), bc2_sqrt = sqrt(1 - b2^t),
 * computed in double and rounded once (the host loop and the device kernel share them). */
void dpt_adamw_scalars(const dpt_sgd_config_t *cfg, float lr, uint64_t t, float *step_size,
                       float *bc2_sqrt);
/* The same step on device arenas (builds with CUDA; src/optim/adamw_cuda.cu), queued on
 * `stream` (a cudaStream_t; NULL = the legacy default stream): each gradient first multiplied by
 * grad_scale (1/loss scale, else 1), then exactly the update above, in the same element order
 * and with the same float32 operations (the scalars come from the host code). segs is a host
 * array. Errors name the CUDA call. */
dpt_status_t dpt_adamw_step_device(const dpt_sgd_config_t *cfg, float lr, float grad_scale,
                                   uint64_t t, float *params, const float *grads, float *m,
                                   float *v, const dpt_param_segment_t *segs, int n_segs,
                                   void *stream);

/* Device scan for a NaN or +-Inf among v[0..n) (builds with CUDA): queued on `stream`, then waits
 * for it; *nonfinite (host) = 1 if there is one. d_flag: one device int of scratch. */
dpt_status_t dpt_nonfinite_device(const float *v, size_t n, int *d_flag, int *nonfinite,
                                  void *stream);

/* Loss scaling for fp16 training (src/optim/loss_scale.c). Dynamic: the scale starts at 2^16;
 * a step whose (scaled) gradients overflow (any NaN/Inf) is skipped and the scale halved (never
 * below 1); after `growth_interval` (2000) good steps in a row it doubles (at most 2^24). Static:
 * a fixed scale, overflowing steps follow the NaN policy like any other. Every rank sees the same
 * averaged gradients, so every rank's scaler takes the same decisions. */
typedef struct dpt_loss_scaler {
    int dynamic;          /* 1: dynamic, 0: static */
    float scale;          /* the current scale (1 = none) */
    int growth_interval;  /* good steps before doubling (dynamic) */
    int good_steps;       /* good steps since the last change */
    long skipped;         /* steps skipped for overflow (dynamic) */
} dpt_loss_scaler_t;

/* dynamic = 1: start at 2^16 (init_scale ignored); dynamic = 0: fixed init_scale (> 0; 1 =
 * no scaling). */
void dpt_loss_scaler_init(dpt_loss_scaler_t *s, int dynamic, float init_scale);
/* After a step's gradients were checked: overflow = 1 when some gradient is not finite. Returns
 * 1 when the step's update should be applied, 0 when it is skipped (dynamic and overflow); the
 * scale for the next step is then s->scale. Static scalers always return 1 (the caller applies
 * its NaN policy). */
int dpt_loss_scaler_update(dpt_loss_scaler_t *s, int overflow);

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
