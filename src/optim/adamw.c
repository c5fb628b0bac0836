/* adamw.c: AdamW (Loshchilov & Hutter, decoupled weight decay) on the flat arena, in the order
 * of operations of torch.optim.AdamW's single-tensor path, so that a run can be compared with
 * PyTorch's step by step: p *= 1 - lr*wd; m += (1-b1)*(g - m) (torch's lerp); v = b2*v +
 * (1-b2)*g*g; p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). Weight decay only on
 * the decayed segments (conv/fc weights), as the SGD path does: BN, LN and biases are left alone,
 * the usual AdamW recipe for vision transformers. */
#include <math.h>

#include "dptrain/optim.h"

int dpt_optim_state_per_param(const dpt_sgd_config_t *cfg)
{
    return cfg->optimizer == DPT_OPTIM_ADAMW ? 2 : 1;
}

/* The per-step scalars, in double from t, rounded once: every rank and the device kernel use
 * these same floats. */
void dpt_adamw_scalars(const dpt_sgd_config_t *cfg, float lr, uint64_t t, float *step_size,
                        float *bc2_sqrt)
{
    double bc1 = 1.0 - pow((double)cfg->adam_beta1, (double)t);
    double bc2 = 1.0 - pow((double)cfg->adam_beta2, (double)t);
    *step_size = (float)((double)lr / bc1);
    *bc2_sqrt = (float)sqrt(bc2);
}

void dpt_adamw_step(const dpt_sgd_config_t *cfg, float lr, uint64_t t, float *params,
                    const float *grads, float *m, float *v, const dpt_param_segment_t *segs,
                    int n_segs)
{
    float step_size, bc2s;
    dpt_adamw_scalars(cfg, lr, t ? t : 1, &step_size, &bc2s);
    const float b1c = 1.0f - cfg->adam_beta1, b2 = cfg->adam_beta2, b2c = 1.0f - b2;
    const float eps = cfg->adam_eps;
    for (int s = 0; s < n_segs; s++) {
        const float keep = segs[s].decay ? 1.0f - lr * cfg->weight_decay : 1.0f;
        float *restrict p = params + segs[s].offset;
        const float *restrict g = grads + segs[s].offset;
        float *restrict ms = m + segs[s].offset;
        float *restrict vs = v + segs[s].offset;
        const size_t n = segs[s].count;
        for (size_t i = 0; i < n; i++) {
            float gi = g[i];
            float mi = ms[i] + b1c * (gi - ms[i]);
            float vi = b2 * vs[i] + b2c * gi * gi;
            ms[i] = mi;
            vs[i] = vi;
            float denom = sqrtf(vi) / bc2s + eps;
            p[i] = p[i] * keep - step_size * (mi / denom);
        }
    }
}
