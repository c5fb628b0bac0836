/* ref_tokens.c: the `ref` backend's per-position transformer ops, layer norm (DPT_OP_LAYERNORM)
 * and linear (DPT_OP_LINEAR): rows of ref_ops in ref_backend.c over the kernels of
 * ref_kernels_tokens.inc (contracts in dptrain/backend.h, shape rules in op_shape_tokens.c).
 *
 * Layer norm keeps the mean and 1/std of each of the N*H*W positions of its last forward in
 * op->save (training or not: the statistics do not depend on the mode), so a backward must follow
 * the forward of the same batch, which training always does. Linear keeps nothing. */
#include "backend/ref/ref_internal.h"
#include "backend/ref/ref_kernels.h"
#include "dptrain/alloc.h"

/* Positions (n, h, w) of the input: the rows a layer norm normalizes. */
static size_t positions(const dpt_op_t *op)
{
    const dpt_tensor_t *x = &op->d.in[0];
    return (size_t)x->n * x->h * x->w;
}

dpt_status_t dpt__ref_layernorm_create(dpt_backend_t *be, dpt_op_t *op)
{
    (void)be;
    op->save = dpt_calloc(2 * positions(op) * sizeof(float));
    if (!op->save)
        return dpt_error_set(DPT_ERR_NOMEM, "ref backend: layernorm: out of memory for %zu "
                             "statistics", 2 * positions(op));
    return DPT_OK;
}

dpt_status_t dpt__ref_layernorm_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *x = a->x[0];
    const int C = x->c;
    dpt__ref_layernorm_fwd_f32(x->data, a->w, a->w + C, a->y->data, op->save,
                               op->save + positions(op), x->n, C, x->h * x->w, op->d.bn_eps);
    return DPT_OK;
}

dpt_status_t dpt__ref_layernorm_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *x = a->x[0];
    const int C = x->c;
    dpt__ref_layernorm_bwd_f32(x->data, a->w, op->save, op->save + positions(op), a->dy->data,
                               a->dx[0] ? a->dx[0]->data : NULL, a->dw, a->dw ? a->dw + C : NULL,
                               x->n, C, x->h * x->w);
    return DPT_OK;
}

dpt_status_t dpt__ref_linear_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *x = a->x[0];
    dpt__ref_linear_fwd_f32(x->data, a->w, op->d.has_bias ? a->w + op->info.n_weights : NULL,
                            a->y->data, x->n, x->c, x->h * x->w, op->d.out_features);
    return DPT_OK;
}

dpt_status_t dpt__ref_linear_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *x = a->x[0];
    float *db = a->dw && op->d.has_bias ? a->dw + op->info.n_weights : NULL;
    dpt__ref_linear_bwd_f32(x->data, a->w, a->dy->data, a->dx[0] ? a->dx[0]->data : NULL, a->dw,
                            db, x->n, x->c, x->h * x->w, op->d.out_features);
    return DPT_OK;
}
