/* ref_embed.c: the `ref` backend's token embedding ops: tokens (flatten the positions of a
 * feature map into tokens, prepend the class token, add the position embedding) and
 * token_select (the class token's features, for the head). Parameters: class token (C) then
 * position embedding (C, T), as backend.h lays them out. */
#include "backend/ref/ref_internal.h"
#include "backend/ref/ref_kernels_embed.h"

static void tokens_params(const dpt_op_t *op, const float *w, const float **cls, const float **pos)
{
    const int C = op->d.in[0].c;
    *cls = op->d.cls_token ? w : NULL;
    *pos = op->d.pos_embed ? w + (op->d.cls_token ? C : 0) : NULL;
}

dpt_status_t dpt__ref_tokens_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *x = a->x[0];
    const float *cls, *pos;
    tokens_params(op, a->w, &cls, &pos);
    dpt__ref_tokens_fwd_f32(x->data, cls, pos, a->y->data, x->n, x->c, x->h * x->w,
                            op->d.cls_token ? 1 : 0);
    return DPT_OK;
}

dpt_status_t dpt__ref_tokens_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *x = a->x[0];
    const int C = x->c;
    float *dcls = op->d.cls_token ? a->dw : NULL;
    float *dpos = op->d.pos_embed ? a->dw + (op->d.cls_token ? C : 0) : NULL;
    dpt__ref_tokens_bwd_f32(a->dy->data, a->dx[0] ? a->dx[0]->data : NULL, dcls, dpos, x->n, C,
                            x->h * x->w, op->d.cls_token ? 1 : 0);
    return DPT_OK;
}

dpt_status_t dpt__ref_token_select_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    (void)op;
    const dpt_tensor_t *x = a->x[0];
    dpt__ref_token_select_fwd_f32(x->data, a->y->data, x->n, x->c, x->w);
    return DPT_OK;
}

dpt_status_t dpt__ref_token_select_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    (void)op;
    const dpt_tensor_t *x = a->x[0];
    if (a->dx[0])
        dpt__ref_token_select_bwd_f32(a->dy->data, a->dx[0]->data, x->n, x->c, x->w);
    return DPT_OK;
}
