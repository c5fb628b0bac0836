/* cpu_drop.c: the `cpu` backend's dropout and drop path on the input's own layout (plain, nhwc
 * or blocked; the output keeps it). The masks are drop_mask.h's hash of (seed, layer, sample,
 * NCHW element index), so each element's logical index is computed from the layout's strides:
 * the same mask as the ref and cuda backends, bit for bit, whatever the layout. Padded channels
 * of a blocked output are never written and stay zero. */
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "backend/drop_mask.h"

dpt_status_t dpt__cpu_drop_create(dpt_backend_t *be, dpt_op_t *op)
{
    dpt__cpu_access_t ax;
    DPT_CHECK(dpt__cpu_access(&op->src_md, dpt_op_kind_name(op->d.kind), &ax));
    op->dst_md = op->src_md;
    return dpt__cpu_set_layout(be, &op->dst_md, &op->info.out);
}

/* y = mask(x) / (1 - p) (backward: dx = mask(dy) / (1 - p), the same linear map). */
static void drop(const dpt_op_t *op, const dpt_op_args_t *a, const float *x, float *y)
{
    dpt__cpu_access_t ac;
    (void)dpt__cpu_access(&op->src_md, "", &ac);
    const int N = op->d.in[0].n, C = op->d.in[0].c, P = op->d.in[0].h * op->d.in[0].w;
    const float p = op->d.drop_rate, scale = 1.0f / (1.0f - p);
    const int per_sample = op->d.kind == DPT_OP_DROP_PATH;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            const uint64_t key = dpt_drop_key(a->rng_seed, op->d.rng_layer,
                                              a->rng_sample0 + (uint64_t)n);
            const int whole = per_sample ? dpt_drop_keep(key, DPT_DROP_SAMPLE, p) : 1;
            const long o = dpt__cpu_at(&ac, n, c);
            for (int q = 0; q < P; q++) {
                const int keep = per_sample ? whole
                                            : dpt_drop_keep(key, (uint64_t)c * P + q, p);
                y[o + q * ac.sp] = keep ? x[o + q * ac.sp] * scale : 0.0f;
            }
        }
}

dpt_status_t dpt__cpu_drop_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    if (a->training && op->d.drop_rate > 0)
        drop(op, a, a->x[0]->data, a->y->data);
    else
        memcpy(a->y->data, a->x[0]->data, a->x[0]->nbytes);
    return DPT_OK;
}

dpt_status_t dpt__cpu_drop_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    if (!a->dx[0])
        return DPT_OK;
    if (op->d.drop_rate > 0)
        drop(op, a, a->dy->data, a->dx[0]->data);
    else
        memcpy(a->dx[0]->data, a->dy->data, a->dy->nbytes);
    return DPT_OK;
}
