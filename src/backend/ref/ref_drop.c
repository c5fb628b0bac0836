/* ref_drop.c: the `ref` backend's dropout and drop path (stochastic depth): in training, each
 * element (dropout) or each sample (drop path) is kept with probability 1 - rate and scaled by
 * 1 / (1 - rate), as PyTorch's nn.Dropout and timm's DropPath; in inference the identity. The
 * masks come from drop_mask.h (a hash, not a generator): backward recomputes forward's. Kernels
 * for float (the backend) and double (finite differences); declared in ref_kernels_drop.h. */
#include <string.h>

#include "backend/drop_mask.h"
#include "backend/ref/ref_internal.h"
#include "backend/ref/ref_kernels_drop.h"

#define DPT_REF_DROP_DEFINE(T, S)                                                                \
    void dpt__ref_drop_##S(const T *x, T *y, int N, long E, float p, int per_sample,             \
                           uint64_t seed, uint32_t layer, uint64_t sample0)                      \
    {                                                                                            \
        const T scale = (T)1 / ((T)1 - (T)p);                                                    \
        for (int n = 0; n < N; n++) {                                                            \
            const uint64_t key = dpt_drop_key(seed, layer, sample0 + (uint64_t)n);               \
            const int whole = per_sample ? dpt_drop_keep(key, DPT_DROP_SAMPLE, p) : 1;           \
            for (long e = 0; e < E; e++) {                                                       \
                int keep = per_sample ? whole : dpt_drop_keep(key, (uint64_t)e, p);              \
                y[(long)n * E + e] = keep ? x[(long)n * E + e] * scale : (T)0;                   \
            }                                                                                    \
        }                                                                                        \
    }

DPT_REF_DROP_DEFINE(float, f32)
DPT_REF_DROP_DEFINE(double, f64)

static long elems(const dpt_op_t *op)
{
    return (long)op->d.in[0].c * op->d.in[0].h * op->d.in[0].w;
}

/* y = mask(x) in training (also backward's dx = mask(dy): the same linear map), x otherwise */
dpt_status_t dpt__ref_drop_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    if (!a->training || op->d.drop_rate <= 0) {
        memcpy(a->y->data, a->x[0]->data, dpt_tensor_count(&op->d.in[0]) * sizeof(float));
        return DPT_OK;
    }
    dpt__ref_drop_f32(a->x[0]->data, a->y->data, op->d.in[0].n, elems(op), op->d.drop_rate,
                      op->d.kind == DPT_OP_DROP_PATH, a->rng_seed, op->d.rng_layer,
                      a->rng_sample0);
    return DPT_OK;
}

dpt_status_t dpt__ref_drop_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    if (!a->dx[0])
        return DPT_OK;
    if (op->d.drop_rate <= 0) {
        memcpy(a->dx[0]->data, a->dy->data, dpt_tensor_count(&op->d.in[0]) * sizeof(float));
        return DPT_OK;
    }
    dpt__ref_drop_f32(a->dy->data, a->dx[0]->data, op->d.in[0].n, elems(op), op->d.drop_rate,
                      op->d.kind == DPT_OP_DROP_PATH, a->rng_seed, op->d.rng_layer,
                      a->rng_sample0);
    return DPT_OK;
}
