/* model_init.c: the initial parameter values (dpt_model_init_params), kept apart from model.c
 * because they are the one place that fixes the numerics of a fresh model (per-kind bounds and
 * RNG streams, PyTorch / timm conventions) and change for reasons unrelated to graph building. */
#include <math.h>

#include "dptrain/rng.h"
#include "model/model_private.h"

void dpt_model_init_params(dpt_model_t *m, uint64_t seed)
{
    /* One RNG stream per parameterized layer, numbered in order, so the values do not depend
     * on parameter-free layers (e.g. a ReLU fused away). */
    uint64_t ordinal = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        node_t *nd = &m->nodes[i];
        float *p = m->h_params + nd->p_off;
        dpt_rng_t r;
        dpt_rng_init(&r, seed, ((uint64_t)DPT_RNG_STREAM_INIT << 32) | ordinal);
        ordinal += nd->info.n_params > 0;
        if (nd->spec.kind == DPT_OP_CONV2D || nd->spec.kind == DPT_OP_FC) {
            size_t fan_out = nd->spec.kind == DPT_OP_CONV2D ? (size_t)nd->spec.filters
                                                             : (size_t)nd->info.out.c;
            double fan_in = (double)nd->info.n_weights / (double)fan_out;
            float bound = (float)(1.0 / sqrt(fan_in));
            for (size_t k = 0; k < nd->info.n_params; k++)
                p[k] = bound * (2.0f * dpt_rng_uniform(&r) - 1.0f);
        } else if (nd->spec.kind == DPT_OP_LINEAR) {   /* nn.Linear's bound 1/sqrt(in) */
            float bound = (float)(1.0 / sqrt((double)nd->info.n_weights / nd->spec.filters));
            for (size_t k = 0; k < nd->info.n_params; k++)
                p[k] = bound * (2.0f * dpt_rng_uniform(&r) - 1.0f);
        } else if (nd->spec.kind == DPT_OP_TOKENS) {   /* timm: class token, pos ~ N(0, 0.02) */
            for (size_t k = 0; k < nd->info.n_params; k++)
                p[k] = 0.02f * dpt_rng_normal(&r);
        } else if (nd->spec.kind == DPT_OP_LAYERNORM) {
            int c = nd->info.out.c;
            for (int k = 0; k < c; k++) {
                p[k] = 1.0f;
                p[c + k] = 0.0f;
            }
        } else if (nd->spec.kind == DPT_OP_BATCHNORM) {
            int c = nd->info.out.c;
            float *b = m->h_buffers + nd->b_off;
            for (int k = 0; k < c; k++) {
                p[k] = 1.0f;
                p[c + k] = 0.0f;
                b[k] = 0.0f;
                b[c + k] = 1.0f;
            }
        }
    }
}
