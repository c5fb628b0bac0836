/* schedule.c: learning rate as a pure function of the step: linear warmup, then constant,
 * cosine, linear, step decay, or a one-cycle piecewise-linear ramp. */
#include <math.h>
#include <string.h>

#include "dptrain/optim.h"

static const char *names[] = {"constant", "cosine", "linear", "step", "onecycle"};

dpt_status_t dpt_schedule_parse(const char *name, dpt_sched_kind_t *out)
{
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (!strcmp(name, names[i])) {
            *out = (dpt_sched_kind_t)i;
            return DPT_OK;
        }
    return dpt_error_set(DPT_ERR_INVALID_ARG, "--schedule: unknown schedule '%s' (constant, cosine, "
                         "linear, step, onecycle)", name);
}

const char *dpt_schedule_name(dpt_sched_kind_t k)
{
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

double dpt_schedule_lr(const dpt_schedule_t *s, long step)
{
    const double base = s->base_lr;
    if (s->kind == DPT_SCHED_ONECYCLE) {
        double t = s->total_steps > 0 ? (double)step / (double)s->total_steps : 1.0;
        double peak = s->peak > 0 && s->peak < 1 ? s->peak : 0.25;
        if (t < peak) {   /* (step + 1) / T: never 0; capped so that it never passes base */
            double up = (t + 1.0 / (double)(s->total_steps > 0 ? s->total_steps : 1)) / peak;
            return base * (up < 1.0 ? up : 1.0);
        }
        return t >= 1.0 ? 0.0 : base * (1.0 - t) / (1.0 - peak);
    }
    if (step < s->warmup_steps)
        return base * (double)(step + 1) / (double)s->warmup_steps;
    long span = s->total_steps - s->warmup_steps;
    double t = span > 0 ? (double)(step - s->warmup_steps) / (double)span : 1.0;
    if (t > 1.0)
        t = 1.0;
    double lo = base * s->final_frac;
    switch (s->kind) {
    case DPT_SCHED_COSINE:
        return lo + (base - lo) * 0.5 * (1.0 + cos(M_PI * t));
    case DPT_SCHED_LINEAR:
        return lo + (base - lo) * (1.0 - t);
    case DPT_SCHED_STEP: {
        long every = s->step_every > 0 ? s->step_every : 1;
        return base * pow(s->gamma > 0 ? s->gamma : 0.1, (double)((step - s->warmup_steps) / every));
    }
    default:
        return base;
    }
}
