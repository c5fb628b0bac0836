/* sgd.c: SGD with momentum / Nesterov and decoupled-by-segment weight decay on the flat arena,
 * optionally with LARS layer-wise trust ratios. */
#include <math.h>

#include "dptrain/optim.h"

/* LARS (You et al. 2017, as in timm's Lars and NVIDIA's LARC): for a decayed segment (a layer's
 * weights) the decayed gradient g + wd*p is scaled by eta * |p| / (|g| + wd * |p|) before the
 * momentum update; 1 when either norm is 0. Norms accumulate in double, in index order, so the
 * ratio is the same bits on every rank. */
static float lars_trust(const dpt_sgd_config_t *cfg, const float *p, const float *g, size_t n,
                        float wd)
{
    double pp = 0, gg = 0;
    for (size_t i = 0; i < n; i++) {
        pp += (double)p[i] * p[i];
        gg += (double)g[i] * g[i];
    }
    double pn = sqrt(pp), gn = sqrt(gg);
    if (pn <= 0 || gn <= 0)
        return 1.0f;
    return (float)(cfg->lars_eta * pn / (gn + (double)wd * pn));
}

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
        /* BN parameters and biases (decay = 0) are excluded from LARS, as in the paper. */
        const float t = cfg->optimizer == DPT_OPTIM_LARS && segs[s].decay ? lars_trust(cfg, p, g, n, wd) : 1.0f;
        if (cfg->nesterov) {
            for (size_t i = 0; i < n; i++) {
                float gi = t * (g[i] + wd * p[i]);
                v[i] = mu * v[i] + gi;
                p[i] -= lr * (gi + mu * v[i]);
            }
        } else {
            for (size_t i = 0; i < n; i++) {
                float gi = t * (g[i] + wd * p[i]);
                v[i] = mu * v[i] + gi;
                p[i] -= lr * v[i];
            }
        }
    }
}
