/* cuda_ops.c: the cuda backend's ops other than convolution: fully connected layers on cuBLAS
 * (the float32 weights cast to a per-op 16-bit copy at every forward in the 16-bit modes, the
 * weight gradient straight in float32), and batch norm, ReLU/CELU/SiLU/GELU/sigmoid/scale/add,
 * max and global average pooling, flatten and the softmax cross-entropy loss on our kernels (the
 * launchers of cuda_internal.h). One create/forward/backward per op kind (one pair for the three
 * smooth activations), called from the op table of cuda_backend.c.
 */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

#include "backend/cuda/cuda_internal.h"
#include "dptrain/backend.h"

static const float one = 1.0f, zero = 0.0f;   /* alpha and beta of cuBLAS calls */

static cudaDataType_t blas_type(dpt_precision_t p)
{
    return p == DPT_PREC_BF16 ? CUDA_R_16BF : p == DPT_PREC_FP16 ? CUDA_R_16F : CUDA_R_32F;
}

/* n_valid as the ref backend reads it. */
static int valid_count(const dpt_op_args_t *a, int N)
{
    return a->n_valid <= 0 || a->n_valid > N ? N : a->n_valid;
}

/* ---- fc (cuBLAS) ----------------------------------------------------------------------------- */
dpt_status_t dpt__cuda_fc_create(dpt_backend_t *be, dpt_op_t *op)
{
    (void)be;
    if (op->dt != DPT_PREC_FP32)
        DPT_CHECK(dpt__cuda_dev_alloc(&op->w16, op->info.n_weights * dpt__cuda_elem_size(op->dt)));
    snprintf(op->info.impl, sizeof op->info.impl, "cublas:%s", dpt_precision_name(op->dt));
    return DPT_OK;
}

dpt_status_t dpt__cuda_fc_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const void *x = dpt__cuda_fwd_x(op, a, 0);
    void *y = a->y->data;
    dpt_backend_t *be = op->be;
    const dpt_tensor_t *in = &op->d.in[0];
    int N = in->n, IN = in->c * in->h * in->w, OUT = op->d.out_features;
    /* Row-major Y (N, OUT) = X (N, IN) W^T, i.e. column-major Y^T (OUT x N) = W^T' X^T where W
     * (OUT, IN) row-major is column-major (IN x OUT), transposed by the GEMM. */
    if (op->dt == DPT_PREC_FP32) {
        DPT_CHECK(BLAS(cublasSgemm(be->cublas, CUBLAS_OP_T, CUBLAS_OP_N, OUT, N, IN, &one, a->w,
                                   IN, (const float *)x, IN, &zero, (float *)y, OUT)));
    } else {
        cudaDataType_t t = blas_type(op->dt);
        DPT_CHECK(CU(dpt__cuda_cast_launch(op->w16, op->dt, a->w, DPT_PREC_FP32,
                                           op->info.n_weights, be->stream)));
        DPT_CHECK(BLAS(cublasGemmEx(be->cublas, CUBLAS_OP_T, CUBLAS_OP_N, OUT, N, IN, &one,
                                    op->w16, t, IN, x, t, IN, &zero, y, t, OUT,
                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT)));
    }
    if (op->d.has_bias)
        DPT_CHECK(CU(dpt__cuda_bias_add_launch(y, op->dt, a->w + op->info.n_weights, N, OUT, 1,
                                               be->stream)));
    return DPT_OK;
}

dpt_status_t dpt__cuda_fc_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const void *x = dpt__cuda_bwd_x(op, a, 0), *dy = dpt__cuda_bwd_dy(a);
    void *dx = dpt__cuda_bwd_dx(op, a, 0);
    dpt_backend_t *be = op->be;
    const dpt_tensor_t *in = &op->d.in[0];
    int N = in->n, IN = in->c * in->h * in->w, OUT = op->d.out_features;
    int f32 = op->dt == DPT_PREC_FP32;
    cudaDataType_t t = blas_type(op->dt);
    const void *w = f32 ? (const void *)a->w : op->w16;   /* forward's cast */
    /* dX (N, IN) = dY (N, OUT) W (OUT, IN): column-major dX^T (IN x N) = W_cm (IN x OUT) dY^T */
    if (dx) {
        if (f32)
            DPT_CHECK(BLAS(cublasSgemm(be->cublas, CUBLAS_OP_N, CUBLAS_OP_N, IN, N, OUT, &one,
                                       (const float *)w, IN, (const float *)dy, OUT, &zero,
                                       (float *)dx, IN)));
        else
            DPT_CHECK(BLAS(cublasGemmEx(be->cublas, CUBLAS_OP_N, CUBLAS_OP_N, IN, N, OUT, &one, w,
                                        t, IN, dy, t, OUT, &zero, dx, t, IN, CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT)));
    }
    if (!a->dw)
        return DPT_OK;
    /* dW (OUT, IN) = dY^T X: column-major dW^T (IN x OUT) = X_cm (IN x N) (dY_cm (OUT x N))^T;
     * float32 output in every mode. */
    if (f32)
        DPT_CHECK(BLAS(cublasSgemm(be->cublas, CUBLAS_OP_N, CUBLAS_OP_T, IN, OUT, N, &one,
                                   (const float *)x, IN, (const float *)dy, OUT, &zero, a->dw,
                                   IN)));
    else
        DPT_CHECK(BLAS(cublasGemmEx(be->cublas, CUBLAS_OP_N, CUBLAS_OP_T, IN, OUT, N, &one, x, t,
                                    IN, dy, t, OUT, &zero, a->dw, CUDA_R_32F, IN,
                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT)));
    if (op->d.has_bias)
        DPT_CHECK(CU(dpt__cuda_channel_sum_launch(dy, op->dt, a->dw + op->info.n_weights, N, OUT,
                                                  1, be->stream)));
    return DPT_OK;
}

/* ---- batch norm ------------------------------------------------------------------------------ */
dpt_status_t dpt__cuda_batchnorm_create(dpt_backend_t *be, dpt_op_t *op)
{
    const dpt_tensor_t *x = &op->d.in[0];
    size_t C = (size_t)x->c;
    op->bn_splits = dpt__cuda_bn_splits(x->n, x->c, (long)x->h * x->w, be->sms);
    DPT_CHECK(dpt__cuda_dev_alloc((void **)&op->save, 4 * C * sizeof(float)));
    DPT_CHECK(dpt__cuda_dev_alloc((void **)&op->part, 2 * C * (size_t)op->bn_splits *
                                  sizeof(double)));
    return DPT_OK;
}

dpt_status_t dpt__cuda_batchnorm_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_op_desc_t *d = &op->d;
    cudaStream_t s = op->be->stream;
    const void *x = dpt__cuda_fwd_x(op, a, 0);
    void *y = a->y->data;
    const dpt_tensor_t *in = &d->in[0];
    int N = in->n, C = in->c;
    long HW = (long)in->h * in->w;
    const float *g = a->w, *b = a->w + C;
    if (a->training) {
        float *mean = op->save, *var = op->save + C;
        DPT_CHECK(CU(dpt__cuda_bn_stats_launch(x, op->dt, mean, var, a->buf, a->buf + C,
                                               d->bn_momentum, N, C, HW, op->part, op->bn_splits,
                                               s)));
        return CU(dpt__cuda_bn_apply_launch(x, y, op->dt, g, b, mean, var, d->bn_eps, d->fuse_relu,
                                            N, C, HW, s));
    }
    return CU(dpt__cuda_bn_apply_launch(x, y, op->dt, g, b, a->buf, a->buf + C, d->bn_eps,
                                        d->fuse_relu, N, C, HW, s));
}

dpt_status_t dpt__cuda_batchnorm_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_op_desc_t *d = &op->d;
    cudaStream_t s = op->be->stream;
    const void *x = dpt__cuda_bwd_x(op, a, 0), *dy = dpt__cuda_bwd_dy(a);
    void *dx = dpt__cuda_bwd_dx(op, a, 0);
    const dpt_tensor_t *in = &d->in[0];
    int N = in->n, C = in->c;
    long HW = (long)in->h * in->w;
    const float *mean = op->save, *var = op->save + C;
    float *dg = a->dw ? a->dw : op->save + 2 * C, *db = dg + C;
    dpt_status_t st = CU(dpt__cuda_bn_bwd_reduce_launch(x, a->y->data, dy, op->dt, mean, var,
                                                        d->bn_eps, d->fuse_relu, dg, db, N, C,
                                                        HW, op->part, op->bn_splits, s));
    if (st == DPT_OK && dx)
        st = CU(dpt__cuda_bn_bwd_dx_launch(x, a->y->data, dy, dx, op->dt, a->w, mean, var, dg, db,
                                           d->bn_eps, d->fuse_relu, N, C, HW, s));
    return st;
}

/* ---- elementwise, flatten -------------------------------------------------------------------- */
dpt_status_t dpt__cuda_relu_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    cudaStream_t s = op->be->stream;
    const void *x = dpt__cuda_fwd_x(op, a, 0);
    void *y = a->y->data;
    size_t cnt = dpt_tensor_count(&op->d.in[0]);
    return CU(dpt__cuda_eltwise_fwd_launch(DPT__CU_RELU, x, NULL, y, op->dt, cnt, 0, s));
}

dpt_status_t dpt__cuda_relu_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    cudaStream_t s = op->be->stream;
    const void *dy = dpt__cuda_bwd_dy(a);
    void *dx = dpt__cuda_bwd_dx(op, a, 0);
    size_t cnt = dpt_tensor_count(&op->d.in[0]);
    if (!dx)
        return DPT_OK;
    return CU(dpt__cuda_eltwise_bwd_launch(DPT__CU_RELU, NULL, a->y->data, dy, dx, op->dt, cnt, 0,
                                           s));
}

dpt_status_t dpt__cuda_celu_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_op_desc_t *d = &op->d;
    cudaStream_t s = op->be->stream;
    const void *x = dpt__cuda_fwd_x(op, a, 0);
    void *y = a->y->data;
    size_t cnt = dpt_tensor_count(&d->in[0]);
    return CU(dpt__cuda_eltwise_fwd_launch(DPT__CU_CELU, x, NULL, y, op->dt, cnt, d->alpha, s));
}

dpt_status_t dpt__cuda_celu_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_op_desc_t *d = &op->d;
    cudaStream_t s = op->be->stream;
    const void *x = dpt__cuda_bwd_x(op, a, 0), *dy = dpt__cuda_bwd_dy(a);
    void *dx = dpt__cuda_bwd_dx(op, a, 0);
    size_t cnt = dpt_tensor_count(&d->in[0]);
    if (!dx)
        return DPT_OK;
    return CU(dpt__cuda_eltwise_bwd_launch(DPT__CU_CELU, x, NULL, dy, dx, op->dt, cnt, d->alpha,
                                           s));
}

/* The eltwise kernel kind of a silu / gelu / sigmoid op (the GELU form is a kernel kind of its
 * own, so the kernels need no extra argument). */
static int act_kind(const dpt_op_desc_t *d)
{
    if (d->kind == DPT_OP_SILU)
        return DPT__CU_SILU;
    if (d->kind == DPT_OP_GELU)
        return d->gelu_tanh ? DPT__CU_GELU_TANH : DPT__CU_GELU_ERF;
    return DPT__CU_SIGMOID;
}

dpt_status_t dpt__cuda_act_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    cudaStream_t s = op->be->stream;
    const void *x = dpt__cuda_fwd_x(op, a, 0);
    size_t cnt = dpt_tensor_count(&op->d.in[0]);
    return CU(dpt__cuda_eltwise_fwd_launch(act_kind(&op->d), x, NULL, a->y->data, op->dt, cnt, 0,
                                           s));
}

/* Sigmoid's gradient comes from y (exact and cheaper); SiLU's and GELU's from x. */
dpt_status_t dpt__cuda_act_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    cudaStream_t s = op->be->stream;
    const void *dy = dpt__cuda_bwd_dy(a);
    void *dx = dpt__cuda_bwd_dx(op, a, 0);
    size_t cnt = dpt_tensor_count(&op->d.in[0]);
    if (!dx)
        return DPT_OK;
    int k = act_kind(&op->d);
    const void *x = k == DPT__CU_SIGMOID ? NULL : dpt__cuda_bwd_x(op, a, 0);
    const void *y = k == DPT__CU_SIGMOID ? a->y->data : NULL;
    return CU(dpt__cuda_eltwise_bwd_launch(k, x, y, dy, dx, op->dt, cnt, 0, s));
}

dpt_status_t dpt__cuda_scale_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_op_desc_t *d = &op->d;
    cudaStream_t s = op->be->stream;
    const void *x = dpt__cuda_fwd_x(op, a, 0);
    void *y = a->y->data;
    size_t cnt = dpt_tensor_count(&d->in[0]);
    return CU(dpt__cuda_eltwise_fwd_launch(DPT__CU_SCALE, x, NULL, y, op->dt, cnt, d->alpha, s));
}

dpt_status_t dpt__cuda_scale_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_op_desc_t *d = &op->d;
    cudaStream_t s = op->be->stream;
    const void *dy = dpt__cuda_bwd_dy(a);
    void *dx = dpt__cuda_bwd_dx(op, a, 0);
    size_t cnt = dpt_tensor_count(&d->in[0]);
    if (!dx)
        return DPT_OK;
    return CU(dpt__cuda_eltwise_bwd_launch(DPT__CU_SCALE, NULL, NULL, dy, dx, op->dt, cnt,
                                           d->alpha, s));
}

dpt_status_t dpt__cuda_add_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    cudaStream_t s = op->be->stream;
    const void *x0 = dpt__cuda_fwd_x(op, a, 0), *x1 = dpt__cuda_fwd_x(op, a, 1);
    void *y = a->y->data;
    size_t cnt = dpt_tensor_count(&op->d.in[0]);
    return CU(dpt__cuda_eltwise_fwd_launch(DPT__CU_ADD, x0, x1, y, op->dt, cnt, 0, s));
}

dpt_status_t dpt__cuda_flatten_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    cudaStream_t s = op->be->stream;
    const void *x = dpt__cuda_fwd_x(op, a, 0);
    void *y = a->y->data;
    size_t cnt = dpt_tensor_count(&op->d.in[0]);
    if (y == x)
        return DPT_OK;
    return CU(cudaMemcpyAsync(y, x, cnt * dpt__cuda_elem_size(op->dt), cudaMemcpyDeviceToDevice,
                              s));
}

dpt_status_t dpt__cuda_copy_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    cudaStream_t s = op->be->stream;
    int n_in = dpt_op_n_inputs(op->d.kind);
    const void *dy = dpt__cuda_bwd_dy(a);
    void *dx[2] = {NULL, NULL};
    for (int i = 0; i < n_in; i++)
        dx[i] = dpt__cuda_bwd_dx(op, a, i);
    size_t cnt = dpt_tensor_count(&op->d.in[0]);
    dpt_status_t st = DPT_OK;
    for (int i = 0; i < n_in && st == DPT_OK; i++)
        if (dx[i] && dx[i] != dy)
            st = CU(cudaMemcpyAsync(dx[i], dy, cnt * dpt__cuda_elem_size(op->dt),
                                    cudaMemcpyDeviceToDevice, s));
    return st;
}

/* ---- pooling --------------------------------------------------------------------------------- */
dpt_status_t dpt__cuda_maxpool_create(dpt_backend_t *be, dpt_op_t *op)
{
    (void)be;
    return dpt__cuda_dev_alloc((void **)&op->argmax,
                               dpt_tensor_count(&op->info.out) * sizeof(int32_t));
}

dpt_status_t dpt__cuda_maxpool_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_op_desc_t *d = &op->d;
    cudaStream_t s = op->be->stream;
    const void *x = dpt__cuda_fwd_x(op, a, 0);
    void *y = a->y->data;
    const dpt_tensor_t *in = &d->in[0], *o = &op->info.out;
    int N = in->n, C = in->c;
    return CU(dpt__cuda_maxpool_fwd_launch(x, y, op->dt, op->argmax, N, C, in->h, in->w, d->pool_k,
                                           d->pool_stride, d->pool_pad, o->h, o->w, s));
}

dpt_status_t dpt__cuda_maxpool_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_op_desc_t *d = &op->d;
    cudaStream_t s = op->be->stream;
    const void *dy = dpt__cuda_bwd_dy(a);
    void *dx = dpt__cuda_bwd_dx(op, a, 0);
    const dpt_tensor_t *in = &d->in[0], *o = &op->info.out;
    int N = in->n, C = in->c;
    if (!dx)
        return DPT_OK;
    return CU(dpt__cuda_maxpool_bwd_launch(op->argmax, dy, dx, op->dt, N, C, in->h, in->w,
                                           d->pool_k, d->pool_stride, d->pool_pad, o->h, o->w, s));
}

dpt_status_t dpt__cuda_gap_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    cudaStream_t s = op->be->stream;
    const void *x = dpt__cuda_fwd_x(op, a, 0);
    void *y = a->y->data;
    const dpt_tensor_t *in = &op->d.in[0];
    int N = in->n, C = in->c;
    long HW = (long)in->h * in->w;
    return CU(dpt__cuda_gap_fwd_launch(x, y, op->dt, N, C, HW, s));
}

dpt_status_t dpt__cuda_gap_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    cudaStream_t s = op->be->stream;
    const void *dy = dpt__cuda_bwd_dy(a);
    void *dx = dpt__cuda_bwd_dx(op, a, 0);
    const dpt_tensor_t *in = &op->d.in[0];
    int N = in->n, C = in->c;
    long HW = (long)in->h * in->w;
    if (!dx)
        return DPT_OK;
    return CU(dpt__cuda_gap_bwd_launch(dy, dx, op->dt, N, C, HW, s));
}

/* ---- softmax cross-entropy ------------------------------------------------------------------- */
dpt_status_t dpt__cuda_xent_create(dpt_backend_t *be, dpt_op_t *op)
{
    (void)be;
    const dpt_tensor_t *x = &op->d.in[0];
    size_t C = (size_t)x->c, N = (size_t)x->n;
    DPT_CHECK(dpt__cuda_dev_alloc((void **)&op->save, N * C * sizeof(float)));
    DPT_CHECK(dpt__cuda_dev_alloc((void **)&op->labels, N * sizeof(int32_t)));
    DPT_CHECK(dpt__cuda_dev_alloc((void **)&op->sample_loss, N * sizeof(float)));
    DPT_CHECK(dpt__cuda_dev_alloc((void **)&op->sample_hit, N * sizeof(int32_t)));
    DPT_CHECK(dpt__cuda_dev_alloc((void **)&op->loss_d, sizeof(float)));
    DPT_CHECK(dpt__cuda_dev_alloc((void **)&op->correct_d, sizeof(int32_t)));
    return DPT_OK;
}

dpt_status_t dpt__cuda_xent_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const void *x = dpt__cuda_fwd_x(op, a, 0);
    void *y = a->y->data;
    dpt_backend_t *be = op->be;
    int N = op->d.in[0].n, K = op->d.in[0].c, nv = valid_count(a, N);
    if (!a->labels)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "cuda: softmax_xent forward without labels");
    for (int i = 0; i < nv; i++)
        if (a->labels[i] < 0 || a->labels[i] >= K)
            return dpt_error_set(DPT_ERR_INVALID_ARG, "cuda: softmax_xent: label %d of sample %d "
                                 "not in [0, %d)", (int)a->labels[i], i, K);
    DPT_CHECK(dpt__cuda_memcpy(be, op->labels, a->labels, (size_t)nv * sizeof(int32_t),
                               DPT_COPY_H2D));
    DPT_CHECK(CU(dpt__cuda_xent_fwd_launch(x, op->dt, op->labels, op->save, y, op->sample_loss,
                                           op->sample_hit, N, K, nv, op->d.label_smoothing,
                                           op->loss_d, op->correct_d, be->stream)));
    if (a->loss)
        DPT_CHECK(CU(cudaMemcpyAsync(a->loss, op->loss_d, sizeof(float), cudaMemcpyDeviceToHost,
                                     be->stream)));
    if (a->correct)
        DPT_CHECK(CU(cudaMemcpyAsync(a->correct, op->correct_d, sizeof(int32_t),
                                     cudaMemcpyDeviceToHost, be->stream)));
    if (a->loss || a->correct)
        DPT_CHECK(CU(cudaStreamSynchronize(be->stream)));
    return DPT_OK;
}

dpt_status_t dpt__cuda_xent_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    dpt_backend_t *be = op->be;
    const dpt_op_desc_t *d = &op->d;
    cudaStream_t s = be->stream;
    void *dx = dpt__cuda_bwd_dx(op, a, 0);
    int N = d->in[0].n, C = d->in[0].c;
    dpt_status_t st = DPT_OK;
    if (!dx)
        return DPT_OK;
    /* The labels on the device are those of the last forward; refresh them if given. */
    int nv = valid_count(a, N);
    if (a->labels)
        st = dpt__cuda_memcpy(be, op->labels, a->labels, (size_t)nv * sizeof(int32_t),
                              DPT_COPY_H2D);
    float scale = a->loss_scale != 0.0f ? a->loss_scale : 1.0f;
    if (st == DPT_OK)
        st = CU(dpt__cuda_xent_bwd_launch(op->save, op->labels, dx, op->dt, N, C, nv,
                                          d->label_smoothing, scale, s));
    return st;
}
