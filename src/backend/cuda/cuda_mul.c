/* cuda_mul.c: the cuda backend's channel gate (mul: x0 (N, C, H, W) times x1 (N, C, 1, 1)),
 * any activation precision; kernels in cuda_kernels_mul.cu. */
#include "backend/cuda/cuda_internal.h"

dpt_status_t dpt__cuda_mul_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *in = &op->d.in[0];
    return CU(dpt__cuda_mul_fwd_launch(dpt__cuda_fwd_x(op, a, 0), dpt__cuda_fwd_x(op, a, 1),
                                       a->y->data, op->dt, in->n, in->c, (long)in->h * in->w,
                                       op->be->stream));
}

dpt_status_t dpt__cuda_mul_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *in = &op->d.in[0];
    void *dx = dpt__cuda_bwd_dx(op, a, 0), *dg = dpt__cuda_bwd_dx(op, a, 1);
    if (!dx && !dg)
        return DPT_OK;
    return CU(dpt__cuda_mul_bwd_launch(dpt__cuda_bwd_x(op, a, 0), dpt__cuda_bwd_x(op, a, 1),
                                       dpt__cuda_bwd_dy(a), dx, dg, op->dt, in->n, in->c,
                                       (long)in->h * in->w, op->be->stream));
}
