/* cuda_embed.c: the cuda backend's token embedding ops (tokens, token_select) on plain NCHW
 * tokens (N, C, 1, T), any activation precision; kernels in cuda_kernels_embed.cu. */
#include "backend/cuda/cuda_internal.h"

dpt_status_t dpt__cuda_tokens_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *in = &op->d.in[0];
    const int cls = op->d.cls_token ? 1 : 0;
    const float *ct = cls ? a->w : NULL, *pos = op->d.pos_embed ? a->w + (cls ? in->c : 0) : NULL;
    return CU(dpt__cuda_tokens_fwd_launch(dpt__cuda_fwd_x(op, a, 0), ct, pos, a->y->data, op->dt,
                                          in->n, in->c, in->h * in->w, cls, op->be->stream));
}

dpt_status_t dpt__cuda_tokens_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *in = &op->d.in[0];
    const int cls = op->d.cls_token ? 1 : 0;
    float *dcls = cls ? a->dw : NULL, *dpos = op->d.pos_embed ? a->dw + (cls ? in->c : 0) : NULL;
    return CU(dpt__cuda_tokens_bwd_launch(dpt__cuda_bwd_dy(a), dpt__cuda_bwd_dx(op, a, 0), dcls,
                                          dpos, op->dt, in->n, in->c, in->h * in->w, cls,
                                          op->be->stream));
}

dpt_status_t dpt__cuda_token_select_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *in = &op->d.in[0];
    return CU(dpt__cuda_token_select_launch(dpt__cuda_fwd_x(op, a, 0), a->y->data, op->dt, in->n,
                                            in->c, in->w, 0, op->be->stream));
}

dpt_status_t dpt__cuda_token_select_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    void *dx = dpt__cuda_bwd_dx(op, a, 0);
    if (!dx)
        return DPT_OK;
    const dpt_tensor_t *in = &op->d.in[0];
    cudaStream_t s = op->be->stream;
    DPT_CHECK(CU(cudaMemsetAsync(dx, 0, dpt_tensor_count(in) * dpt__cuda_elem_size(op->dt), s)));
    return CU(dpt__cuda_token_select_launch(dpt__cuda_bwd_dy(a), dx, op->dt, in->n, in->c, in->w,
                                            1, s));
}
