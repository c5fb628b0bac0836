/* cuda_drop.c: the cuda backend's dropout and drop path (kernels in cuda_kernels_drop.cu); in
 * inference and at rate 0 a copy. */
#include "backend/cuda/cuda_internal.h"

static dpt_status_t drop_or_copy(dpt_op_t *op, const dpt_op_args_t *a, const void *x, void *y,
                                 int masked)
{
    const dpt_tensor_t *in = &op->d.in[0];
    cudaStream_t s = op->be->stream;
    if (!masked)
        return CU(cudaMemcpyAsync(y, x, dpt_tensor_count(in) * dpt__cuda_elem_size(op->dt),
                                  cudaMemcpyDeviceToDevice, s));
    return CU(dpt__cuda_drop_launch(x, y, op->dt, in->n, (long)in->c * in->h * in->w,
                                    op->d.drop_rate, op->d.kind == DPT_OP_DROP_PATH,
                                    a->rng_seed, op->d.rng_layer, a->rng_sample0, s));
}

dpt_status_t dpt__cuda_drop_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    return drop_or_copy(op, a, dpt__cuda_fwd_x(op, a, 0), a->y->data,
                        a->training && op->d.drop_rate > 0);
}

dpt_status_t dpt__cuda_drop_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    void *dx = dpt__cuda_bwd_dx(op, a, 0);
    return dx ? drop_or_copy(op, a, dpt__cuda_bwd_dy(a), dx, op->d.drop_rate > 0) : DPT_OK;
}
