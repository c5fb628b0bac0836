/* cuda_backend.c: the `cuda` compute backend (backend.h interface) on one GPU. Convolutions go to
 * cuDNN (legacy API: descriptors and algorithms fixed at op_create, one shared workspace), fully
 * connected layers to cuBLAS, everything else to our kernels (cuda_kernels_*.cu). All work is
 * queued on one compute stream; forward/backward return before the device finishes, except
 * XENT forward, which waits to hand the loss back to the host.
 *
 * Layouts and precision: activations are plain NCHW, float32 (DPT_LAYOUT_NCHW) in FP32 mode, or
 * bf16/fp16 in the same element order (DPT__CUDA_LAYOUT_BF16/FP16) in the mixed-precision modes.
 * Parameters, gradients and BN buffers stay float32 ("master weights"): conv and fc cast w to a
 * per-op 16-bit copy at every forward and the backward reuses it; conv's weight gradient comes
 * from cuDNN in 16 bits and is widened into dw, fc's comes from cuBLAS straight in float32. An op
 * of a 16-bit backend also accepts float32 NCHW inputs (the model's input tensor): it casts them
 * into a per-op 16-bit copy in forward, and casts its 16-bit input gradient back in backward.
 *
 * FP32 mode computes in true float32 (cuDNN FMA math, cuBLAS default math: no TF32) so it
 * matches the ref backend to 1e-4; DPT_CUDA_TF32=1 allows TF32 tensor cores (as PyTorch does by
 * default for convolutions). DPT_CUDA_WORKSPACE_MB sets the cuDNN workspace (default 256);
 * DPT_CUDNN_FIND=1 ranks convolution algorithms by timing them (cudnnFind*Ex) instead of by
 * cuDNN's heuristics.
 *
 * This file holds the lifetime, memory and stream side and the op table that dispatches op
 * create/forward/backward by kind; the ops themselves are in cuda_conv.c (cuDNN convolution) and
 * cuda_ops.c (cuBLAS fc, batch norm, elementwise, pooling, loss), the shared types in
 * cuda_internal.h.
 */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"
#include "backend/internal.h"
#include "dptrain/env.h"
#include "dptrain/alloc.h"
#include "dptrain/backend.h"
#include "dptrain/cuda.h"

/* ---- status translation ---------------------------------------------------------------------- */
dpt_status_t dpt__cuda_st(cudaError_t e, const char *what)
{
    if (e == cudaSuccess)
        return DPT_OK;
    return dpt_error_set(DPT_ERR_CUDA, "cuda: %s: %s", what, cudaGetErrorString(e));
}

dpt_status_t dpt__cuda_dnn_st(cudnnStatus_t e, const char *what)
{
    if (e == CUDNN_STATUS_SUCCESS)
        return DPT_OK;
    return dpt_error_set(DPT_ERR_CUDA, "cuda: %s: %s", what, cudnnGetErrorString(e));
}

dpt_status_t dpt__cuda_blas_st(cublasStatus_t e, const char *what)
{
    if (e == CUBLAS_STATUS_SUCCESS)
        return DPT_OK;
    return dpt_error_set(DPT_ERR_CUDA, "cuda: %s: %s", what, cublasGetStatusString(e));
}

size_t dpt__cuda_elem_size(dpt_precision_t p) { return p == DPT_PREC_FP32 ? 4 : 2; }

static int layout_of(dpt_precision_t p)
{
    return p == DPT_PREC_BF16   ? DPT__CUDA_LAYOUT_BF16
           : p == DPT_PREC_FP16 ? DPT__CUDA_LAYOUT_FP16
                                : DPT_LAYOUT_NCHW;
}

/* Precision of a layout id, -1 if not one of ours. */
static int prec_of_layout(int layout)
{
    return layout == DPT_LAYOUT_NCHW         ? DPT_PREC_FP32
           : layout == DPT__CUDA_LAYOUT_BF16 ? DPT_PREC_BF16
           : layout == DPT__CUDA_LAYOUT_FP16 ? DPT_PREC_FP16
                                             : -1;
}

/* ---- device discovery (cuda.h) --------------------------------------------------------------- */
static const char *no_device_reason = "";

int dpt_cuda_device_count(void)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();   /* do not leave the error for the next call to find */
        no_device_reason = cudaGetErrorString(e);
        return 0;
    }
    no_device_reason = n > 0 ? "" : "cudaGetDeviceCount found 0 devices";
    return n;
}

const char *dpt_cuda_no_device_reason(void) { return no_device_reason; }

void *dpt_cuda_stream(dpt_backend_t *be) { return (void *)be->stream; }
int dpt_cuda_device(dpt_backend_t *be) { return be->device; }
dpt_precision_t dpt_cuda_precision(dpt_backend_t *be) { return be->prec; }
int dpt_cuda_layout(dpt_precision_t p) { return layout_of(p); }

size_t dpt_cuda_layout_elem_size(int layout)
{
    int p = prec_of_layout(layout);
    return p < 0 ? 0 : dpt__cuda_elem_size((dpt_precision_t)p);
}

dpt_status_t dpt_cuda_import_device(dpt_backend_t *be, const float *src_dev, dpt_tensor_t *dst)
{
    int p = prec_of_layout(dst->layout);
    if (p < 0)
        return dpt_error_set(DPT_ERR_UNSUPPORTED, "cuda: tensor layout %d", dst->layout);
    return CU(dpt__cuda_cast_launch(dst->data, (dpt_precision_t)p, src_dev, DPT_PREC_FP32,
                                    dpt_tensor_count(dst), be->stream));
}

/* ---- backend lifecycle ----------------------------------------------------------------------- */
static void cuda_destroy(dpt_backend_t *be)
{
    if (!be)
        return;
    if (be->stream)
        (void)cudaStreamSynchronize(be->stream);
    (void)cudaFree(be->ws);
    (void)cudaFree(be->stage);
    if (be->cudnn)
        (void)cudnnDestroy(be->cudnn);
    if (be->cublas)
        (void)cublasDestroy(be->cublas);
    if (be->stream)
        (void)cudaStreamDestroy(be->stream);
    dpt_free(be);
}

static dpt_status_t cuda_create(const dpt_backend_config_t *cfg, dpt_backend_t **out)
{
    *out = NULL;
    int n = dpt_cuda_device_count();
    if (n == 0)
        return dpt_error_set(DPT_ERR_CUDA, "cuda: no CUDA device: %s", dpt_cuda_no_device_reason());
    if (cfg->device < 0 || cfg->device >= n)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "cuda: device %d does not exist (%d visible)",
                             cfg->device, n);
    if ((unsigned)cfg->precision >= DPT_PREC_COUNT_)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "cuda: bad precision %d", (int)cfg->precision);
    dpt_backend_t *be = dpt_calloc(sizeof *be);
    if (!be)
        return dpt_error_set(DPT_ERR_NOMEM, "cuda backend: out of memory");
    be->device = cfg->device;
    be->prec = cfg->precision;
    be->tf32 = dpt_env_long(DPT_ENV_CUDA_TF32, 0) != 0;
    be->find = dpt_env_long(DPT_ENV_CUDNN_FIND, 0) != 0;
    long mb = dpt_env_long(DPT_ENV_CUDA_WORKSPACE_MB, 256);
    be->ws_size = (size_t)(mb > 0 ? mb : 256) << 20;
    dpt_status_t st;
    DPT_CHECK_GOTO(CU(cudaSetDevice(be->device)), st, fail);
    DPT_CHECK_GOTO(CU(cudaDeviceGetAttribute(&be->sms, cudaDevAttrMultiProcessorCount, be->device)),
                   st, fail);
    DPT_CHECK_GOTO(CU(cudaStreamCreateWithFlags(&be->stream, cudaStreamDefault)), st, fail);
    DPT_CHECK_GOTO(BLAS(cublasCreate(&be->cublas)), st, fail);
    DPT_CHECK_GOTO(BLAS(cublasSetStream(be->cublas, be->stream)), st, fail);
    /* FP32 GEMMs in true float32 unless TF32 was asked for. */
    DPT_CHECK_GOTO(BLAS(cublasSetMathMode(be->cublas, be->prec == DPT_PREC_FP32 && be->tf32
                                                          ? CUBLAS_TF32_TENSOR_OP_MATH
                                                          : CUBLAS_DEFAULT_MATH)),
                   st, fail);
    DPT_CHECK_GOTO(DNN(cudnnCreate(&be->cudnn)), st, fail);
    DPT_CHECK_GOTO(DNN(cudnnSetStream(be->cudnn, be->stream)), st, fail);
    DPT_CHECK_GOTO(CU(cudaMalloc(&be->ws, be->ws_size)), st, fail);
    *out = be;
    return DPT_OK;
fail:
    cuda_destroy(be);
    return st;
}

/* ---- memory ---------------------------------------------------------------------------------- */
static void *cuda_alloc(dpt_backend_t *be, size_t nbytes)
{
    void *p = NULL;
    cudaError_t e = cudaSetDevice(be->device);   /* the calling thread may not have it yet */
    if (e == cudaSuccess)
        e = cudaMalloc(&p, nbytes ? nbytes : 1);
    if (e != cudaSuccess) {
        dpt_error_set(DPT_ERR_NOMEM, "cuda: cudaMalloc(%zu bytes): %s", nbytes,
                      cudaGetErrorString(e));
        return NULL;
    }
    /* Zeroed like the host backends' calloc (gradient arenas rely on it), and finished on
     * return, so work on any other stream may use the memory at once (setup only: no cost). */
    e = cudaMemsetAsync(p, 0, nbytes, be->stream);
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(be->stream);
    if (e != cudaSuccess) {
        dpt_error_set(DPT_ERR_CUDA, "cuda: cudaMemsetAsync: %s", cudaGetErrorString(e));
        (void)cudaFree(p);
        return NULL;
    }
    return p;
}

static void cuda_free(dpt_backend_t *be, void *p)
{
    if (!p)
        return;
    (void)cudaStreamSynchronize(be->stream);   /* queued work may still use p */
    (void)cudaFree(p);
}

dpt_status_t dpt__cuda_memcpy(dpt_backend_t *be, void *dst, const void *src, size_t nbytes,
                              dpt_copy_kind_t kind)
{
    if (!nbytes)
        return DPT_OK;
    DPT_CHECK(CU(cudaSetDevice(be->device)));   /* cheap when already current */
    enum cudaMemcpyKind k = kind == DPT_COPY_H2D   ? cudaMemcpyHostToDevice
                            : kind == DPT_COPY_D2H ? cudaMemcpyDeviceToHost
                                                   : cudaMemcpyDeviceToDevice;
    DPT_CHECK(CU(cudaMemcpyAsync(dst, src, nbytes, k, be->stream)));
    if (kind == DPT_COPY_D2H)   /* the host reads dst right after */
        DPT_CHECK(CU(cudaStreamSynchronize(be->stream)));
    return DPT_OK;
}

static dpt_status_t cuda_sync(dpt_backend_t *be)
{
    return CU(cudaStreamSynchronize(be->stream));
}

/* Float32 device staging of at least n floats (allocated on first use, grown when needed). */
static dpt_status_t stage_get(dpt_backend_t *be, size_t n)
{
    if (be->stage_size >= n)
        return DPT_OK;
    DPT_CHECK(CU(cudaStreamSynchronize(be->stream)));
    (void)cudaFree(be->stage);
    be->stage = NULL;
    be->stage_size = 0;
    DPT_CHECK(CU(cudaMalloc((void **)&be->stage, n * sizeof(float))));
    be->stage_size = n;
    return DPT_OK;
}

static dpt_status_t cuda_import(dpt_backend_t *be, const float *src, dpt_tensor_t *dst)
{
    int p = prec_of_layout(dst->layout);
    size_t n = dpt_tensor_count(dst);
    if (p < 0)
        return dpt_error_set(DPT_ERR_UNSUPPORTED, "cuda backend: tensor layout %d", dst->layout);
    if (p == DPT_PREC_FP32)
        return dpt__cuda_memcpy(be, dst->data, src, n * sizeof(float), DPT_COPY_H2D);
    DPT_CHECK(stage_get(be, n));
    DPT_CHECK(dpt__cuda_memcpy(be, be->stage, src, n * sizeof(float), DPT_COPY_H2D));
    return CU(dpt__cuda_cast_launch(dst->data, (dpt_precision_t)p, be->stage, DPT_PREC_FP32, n,
                                    be->stream));
}

static dpt_status_t cuda_export(dpt_backend_t *be, const dpt_tensor_t *src, float *dst)
{
    int p = prec_of_layout(src->layout);
    size_t n = dpt_tensor_count(src);
    if (p < 0)
        return dpt_error_set(DPT_ERR_UNSUPPORTED, "cuda backend: tensor layout %d", src->layout);
    if (p == DPT_PREC_FP32)
        return dpt__cuda_memcpy(be, dst, src->data, n * sizeof(float), DPT_COPY_D2H);
    DPT_CHECK(stage_get(be, n));
    DPT_CHECK(CU(dpt__cuda_cast_launch(be->stage, DPT_PREC_FP32, src->data, (dpt_precision_t)p, n,
                                       be->stream)));
    return dpt__cuda_memcpy(be, dst, be->stage, n * sizeof(float), DPT_COPY_D2H);
}

/* ---- op creation ----------------------------------------------------------------------------- */
static void cuda_op_destroy(dpt_op_t *op)
{
    if (!op)
        return;
    if (op->be && op->be->stream)
        (void)cudaStreamSynchronize(op->be->stream);
    for (int i = 0; i < 2; i++) {
        (void)cudaFree(op->xc[i]);
        (void)cudaFree(op->dxc[i]);
    }
    if (op->xd)
        (void)cudnnDestroyTensorDescriptor(op->xd);
    if (op->yd)
        (void)cudnnDestroyTensorDescriptor(op->yd);
    if (op->wd)
        (void)cudnnDestroyFilterDescriptor(op->wd);
    for (int i = 0; i < 3; i++)
        if (op->cd[i])
            (void)cudnnDestroyConvolutionDescriptor(op->cd[i]);
    (void)cudaFree(op->w16);
    (void)cudaFree(op->dw16);
    (void)cudaFree(op->save);
    (void)cudaFree(op->part);
    (void)cudaFree(op->argmax);
    (void)cudaFree(op->labels);
    (void)cudaFree(op->sample_loss);
    (void)cudaFree(op->sample_hit);
    (void)cudaFree(op->loss_d);
    (void)cudaFree(op->correct_d);
    dpt_free(op);
}

dpt_status_t dpt__cuda_dev_alloc(void **p, size_t nbytes)
{
    return CU(cudaMalloc(p, nbytes ? nbytes : 1));
}


/* ---- the op table ---------------------------------------------------------------------------- */

/* Every kind of dpt_op_kind_t, by kind (dpt__op_impl_t in backend/internal.h). */
static const dpt__op_impl_t cuda_ops[DPT_OP_COUNT_] = {
    [DPT_OP_CONV2D] = {.create = dpt__cuda_conv_create,
                       .forward = dpt__cuda_conv_forward,
                       .backward = dpt__cuda_conv_backward},
    [DPT_OP_BATCHNORM] = {.create = dpt__cuda_batchnorm_create,
                          .forward = dpt__cuda_batchnorm_forward,
                          .backward = dpt__cuda_batchnorm_backward},
    [DPT_OP_RELU] = {.forward = dpt__cuda_relu_forward, .backward = dpt__cuda_relu_backward},
    [DPT_OP_CELU] = {.forward = dpt__cuda_celu_forward, .backward = dpt__cuda_celu_backward},
    [DPT_OP_MAXPOOL] = {.create = dpt__cuda_maxpool_create,
                        .forward = dpt__cuda_maxpool_forward,
                        .backward = dpt__cuda_maxpool_backward},
    [DPT_OP_GAP] = {.forward = dpt__cuda_gap_forward, .backward = dpt__cuda_gap_backward},
    [DPT_OP_FC] = {.create = dpt__cuda_fc_create,
                   .forward = dpt__cuda_fc_forward,
                   .backward = dpt__cuda_fc_backward},
    [DPT_OP_ADD] = {.forward = dpt__cuda_add_forward, .backward = dpt__cuda_copy_backward},
    [DPT_OP_FLATTEN] = {.forward = dpt__cuda_flatten_forward,
                        .backward = dpt__cuda_copy_backward},
    [DPT_OP_SCALE] = {.forward = dpt__cuda_scale_forward, .backward = dpt__cuda_scale_backward},
    [DPT_OP_XENT] = {.create = dpt__cuda_xent_create,
                     .forward = dpt__cuda_xent_forward,
                     .backward = dpt__cuda_xent_backward},
    [DPT_OP_SILU] = {.forward = dpt__cuda_act_forward, .backward = dpt__cuda_act_backward},
    [DPT_OP_GELU] = {.forward = dpt__cuda_act_forward, .backward = dpt__cuda_act_backward},
    [DPT_OP_SIGMOID] = {.forward = dpt__cuda_act_forward, .backward = dpt__cuda_act_backward},
    [DPT_OP_LAYERNORM] = {.create = dpt__cuda_layernorm_create,
                          .forward = dpt__cuda_layernorm_forward,
                          .backward = dpt__cuda_layernorm_backward},
    [DPT_OP_LINEAR] = {.create = dpt__cuda_linear_create,
                       .forward = dpt__cuda_linear_forward,
                       .backward = dpt__cuda_linear_backward},
    [DPT_OP_ATTENTION] = {.create = dpt__cuda_attention_create,
                          .forward = dpt__cuda_attention_forward,
                          .backward = dpt__cuda_attention_backward},
    [DPT_OP_TOKENS] = {.forward = dpt__cuda_tokens_forward, .backward = dpt__cuda_tokens_backward},
    [DPT_OP_TOKEN_SELECT] = {.forward = dpt__cuda_token_select_forward,
                             .backward = dpt__cuda_token_select_backward},
    [DPT_OP_MUL] = {.forward = dpt__cuda_mul_forward, .backward = dpt__cuda_mul_backward},
    [DPT_OP_DROPOUT] = {.forward = dpt__cuda_drop_forward, .backward = dpt__cuda_drop_backward},
    [DPT_OP_DROP_PATH] = {.forward = dpt__cuda_drop_forward, .backward = dpt__cuda_drop_backward},
};

/* ---- op creation ----------------------------------------------------------------------------- */
static dpt_status_t cuda_op_create(dpt_backend_t *be, const dpt_op_desc_t *d, dpt_op_t **out,
                                   dpt_op_info_t *info)
{
    *out = NULL;
    int n_in = dpt_op_n_inputs(d->kind);
    for (int i = 0; i < n_in; i++) {
        int p = prec_of_layout(d->in[i].layout);
        if (p != DPT_PREC_FP32 && p != (int)be->prec)
            return dpt_error_set(DPT_ERR_UNSUPPORTED, "cuda backend (%s): %s input %d has layout "
                                 "%d", dpt_precision_name(be->prec), dpt_op_kind_name(d->kind), i,
                                 d->in[i].layout);
    }
    DPT_CHECK(dpt__op_shape(d, info));
    dpt_op_t *op = dpt_calloc(sizeof *op);
    if (!op)
        return dpt_error_set(DPT_ERR_NOMEM, "cuda backend: out of memory");
    op->be = be;
    op->d = *d;
    op->dt = be->prec;
    info->out.layout = layout_of(op->dt);
    info->out.nbytes = dpt_tensor_count(&info->out) * dpt__cuda_elem_size(op->dt);
    snprintf(info->impl, sizeof info->impl, "cuda:%s", dpt_precision_name(op->dt));
    op->info = *info;

    dpt_status_t st = DPT_OK;
    size_t es = dpt__cuda_elem_size(op->dt);
    for (int i = 0; i < n_in; i++) {
        op->in_cast[i] = op->dt != DPT_PREC_FP32 && d->in[i].layout == DPT_LAYOUT_NCHW;
        if (op->in_cast[i]) {
            size_t nb = dpt_tensor_count(&d->in[i]) * es;
            DPT_CHECK_GOTO(dpt__cuda_dev_alloc(&op->xc[i], nb), st, fail);
            DPT_CHECK_GOTO(dpt__cuda_dev_alloc(&op->dxc[i], nb), st, fail);
        }
    }
    const dpt__op_impl_t *impl = dpt__op_row(cuda_ops, d->kind);
    if (!impl) {
        st = dpt__op_unsupported("cuda", d->kind);
        goto fail;
    }
    if (impl->create)
        DPT_CHECK_GOTO(impl->create(be, op), st, fail);
    *info = op->info;
    *out = op;
    return DPT_OK;
fail:
    cuda_op_destroy(op);
    return st;
}

/* ---- forward and backward -------------------------------------------------------------------- */

/* Inputs that are float32 in a 16-bit backend are cast into the op's copies first (the op
 * functions read them through dpt__cuda_fwd_x). */
static dpt_status_t cuda_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    dpt_backend_t *be = op->be;
    const dpt_op_desc_t *d = &op->d;
    cudaStream_t s = be->stream;
    const void *x[2] = {NULL, NULL};
    for (int i = 0; i < (dpt_op_n_inputs(d->kind)); i++) {
        x[i] = a->x[i]->data;
        if (op->in_cast[i])
            DPT_CHECK(CU(dpt__cuda_cast_launch(op->xc[i], op->dt, x[i], DPT_PREC_FP32,
                                               dpt_tensor_count(&d->in[i]), s)));
    }
    const dpt__op_impl_t *impl = dpt__op_row(cuda_ops, d->kind);
    return impl ? impl->forward(op, a) : dpt__op_unsupported("cuda", d->kind);
}

/* The gradients of cast inputs come out of the op functions in 16 bits (dpt__cuda_bwd_dx) and
 * are cast back to the caller's float32 here. */
static dpt_status_t cuda_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_op_desc_t *d = &op->d;
    cudaStream_t s = op->be->stream;
    int n_in = dpt_op_n_inputs(d->kind);
    const dpt__op_impl_t *impl = dpt__op_row(cuda_ops, d->kind);
    if (!impl || !impl->backward)
        return dpt__op_unsupported("cuda", d->kind);
    dpt_status_t st = impl->backward(op, a);
    if (st != DPT_OK)
        return st;
    for (int i = 0; i < n_in; i++)
        if (op->in_cast[i] && a->dx[i])
            DPT_CHECK(CU(dpt__cuda_cast_launch(a->dx[i]->data, DPT_PREC_FP32, op->dxc[i], op->dt,
                                               dpt_tensor_count(&d->in[i]), s)));
    return DPT_OK;
}

const dpt_backend_ops_t dpt_backend_cuda = {
    .name = "cuda",
    .create = cuda_create,
    .destroy = cuda_destroy,
    .op_create = cuda_op_create,
    .op_destroy = cuda_op_destroy,
    .forward = cuda_forward,
    .backward = cuda_backward,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .import_nchw = cuda_import,
    .export_nchw = cuda_export,
    .on_device = 1,
    .memcpy = dpt__cuda_memcpy,
    .sync = cuda_sync,
};
