/* sgd.c: SGD with momentum / Nesterov and decoupled-by-segment weight decay on the flat arena. */
#include "dptrain/optim.h"

void dpt_sgd_step(const dpt_sgd_config_t *cfg, float lr, float *params, const float *grads,
                  float *mom, const dpt_param_segment_t *segs, int n_segs)
{
    const float mu = cfg->momentum;
    for (int s = 0; s < n_segs; s++) {
        const float wd = segs[s].decay ? cfg->weight_decay : 0.0f;
        float *restrict p = params + segs[s].offset;
        const float *restrict g = grads + segs[s].offset;
        float *restrict v = mom + segs[s].offset;
        const size_t n = segs[s].count;
        if (cfg->nesterov) {
            for (size_t i = 0; i < n; i++) {
                float gi = g[i] + wd * p[i];
                v[i] = mu * v[i] + gi;
                p[i] -= lr * (gi + mu * v[i]);
            }
        } else {
            for (size_t i = 0; i < n; i++) {
                float gi = g[i] + wd * p[i];
                v[i] = mu * v[i] + gi;
                p[i] -= lr * v[i];
            }
        }
    }
}
