/* ref_attention.c: the `ref` backend's multi-head self-attention core (DPT_OP_ATTENTION; the
 * contract is in dptrain/backend.h, the shape rule in op_shape_tokens.c), a row of ref_ops in
 * ref_backend.c over the kernels of ref_kernels_attention.inc. No parameters. The softmax
 * probabilities (N * heads * T * T floats) are kept in op->save: forward writes them (eval too:
 * the kernel needs somewhere to put them) and backward reads them, so a backward must follow
 * the forward of the same batch, which training always does. */
#include "backend/ref/ref_internal.h"
#include "backend/ref/ref_kernels.h"
#include "dptrain/alloc.h"

dpt_status_t dpt__ref_attention_create(dpt_backend_t *be, dpt_op_t *op)
{
    (void)be;
    const dpt_tensor_t *x = &op->d.in[0];
    size_t n = (size_t)x->n * op->d.heads * x->w * x->w;
    op->save = dpt_calloc(n * sizeof(float));
    if (!op->save)
        return dpt_error_set(DPT_ERR_NOMEM, "ref backend: attention: out of memory for %zu "
                             "probabilities", n);
    return DPT_OK;
}

dpt_status_t dpt__ref_attention_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *x = a->x[0];
    dpt__ref_attention_fwd_f32(x->data, a->y->data, op->save, x->n, x->c / 3, op->d.heads, x->w);
    return DPT_OK;
}

dpt_status_t dpt__ref_attention_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *x = a->x[0];
    if (a->dx[0])
        dpt__ref_attention_bwd_f32(x->data, op->save, a->dy->data, a->dx[0]->data, x->n,
                                   x->c / 3, op->d.heads, x->w);
    return DPT_OK;
}
