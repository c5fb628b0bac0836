/* cuda_conv.c: the cuda backend's convolution (DPT_OP_CONV2D) on cuDNN's legacy API: tensor,
 * filter and convolution descriptors and the three algorithms (forward, backward data, backward
 * filter) fixed at op_create, run in the workspace the backend shares between ops. In 16-bit
 * modes the float32 weights are cast to a per-op copy at every forward, and the weight gradient
 * comes from cuDNN in 16 bits and is widened into dw. The op table of cuda_backend.c calls in.
 */
#include <cuda_runtime.h>
#include <cudnn.h>
#include <stdio.h>

#include "backend/cuda/cuda_internal.h"
#include "dptrain/backend.h"

static const float one = 1.0f, zero = 0.0f;   /* alpha and beta of cuDNN calls */

static cudnnDataType_t dnn_type(dpt_precision_t p)
{
    return p == DPT_PREC_BF16   ? CUDNN_DATA_BFLOAT16
           : p == DPT_PREC_FP16 ? CUDNN_DATA_HALF
                                : CUDNN_DATA_FLOAT;
}

/* The math type a convolution runs with: FP32 stays FMA-only (no TF32) unless tf32 is on;
 * otherwise whatever cuDNN's heuristic paired with the algorithm (tensor cores for 16-bit). */
static cudnnMathType_t conv_math(const dpt_op_t *op, cudnnMathType_t suggested)
{
    if (op->dt == DPT_PREC_FP32 && !op->be->tf32)
        return CUDNN_FMA_MATH;
    return suggested;
}

static dpt_status_t conv_no_algo(const dpt_op_t *op, const char *dir)
{
    const dpt_tensor_t *x = &op->d.in[0];
    return dpt_error_set(DPT_ERR_CUDA, "cuda: conv2d %dx%dx%dx%d -> %d filters %dx%d: no cuDNN %s "
                         "algorithm works within the %zu MiB workspace (DPT_CUDA_WORKSPACE_MB)",
                         x->n, x->c, x->h, x->w, op->d.out_c, op->d.kh, op->d.kw, dir,
                         op->be->ws_size >> 20);
}

/* Scratch tensors of one convolution's shapes, used only while choosing algorithms. */
typedef struct conv_scratch {
    void *x, *y, *w;
} conv_scratch_t;

/* Each direction: candidates in cuDNN's order (heuristic ranking of cudnnGet*_v7, or measured
 * times of cudnnFind*Ex with DPT_CUDNN_FIND=1); the first that reports success, whose workspace
 * with our math type fits, and that really runs once on scratch tensors is kept. So an algorithm
 * cuDNN lists but cannot run with the forced FMA math fails here, not in the training step. */
static dpt_status_t pick_fwd(dpt_op_t *op, const conv_scratch_t *b)
{
    dpt_backend_t *be = op->be;
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int n = 0;
    if (be->find)
        DPT_CHECK(DNN(cudnnFindConvolutionForwardAlgorithmEx(
            be->cudnn, op->xd, b->x, op->wd, b->w, op->cd[0], op->yd, b->y,
            CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf, be->ws, be->ws_size)));
    else
        DPT_CHECK(DNN(cudnnGetConvolutionForwardAlgorithm_v7(
            be->cudnn, op->xd, op->wd, op->cd[0], op->yd, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n,
            perf)));
    for (int i = 0; i < n; i++) {
        size_t sz = 0;
        if (perf[i].status != CUDNN_STATUS_SUCCESS ||
            cudnnSetConvolutionMathType(op->cd[0], conv_math(op, perf[i].mathType)) !=
                CUDNN_STATUS_SUCCESS ||
            cudnnGetConvolutionForwardWorkspaceSize(be->cudnn, op->xd, op->wd, op->cd[0], op->yd,
                                                    perf[i].algo, &sz) != CUDNN_STATUS_SUCCESS ||
            sz > be->ws_size ||
            cudnnConvolutionForward(be->cudnn, &one, op->xd, b->x, op->wd, b->w, op->cd[0],
                                    perf[i].algo, be->ws, sz, &zero, op->yd, b->y) !=
                CUDNN_STATUS_SUCCESS)
            continue;
        op->algo_fwd = perf[i].algo;
        op->ws_need[0] = sz;
        return DPT_OK;
    }
    return conv_no_algo(op, "forward");
}

static dpt_status_t pick_bwd_data(dpt_op_t *op, const conv_scratch_t *b)
{
    dpt_backend_t *be = op->be;
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int n = 0;
    if (be->find)
        DPT_CHECK(DNN(cudnnFindConvolutionBackwardDataAlgorithmEx(
            be->cudnn, op->wd, b->w, op->yd, b->y, op->cd[1], op->xd, b->x,
            CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf, be->ws, be->ws_size)));
    else
        DPT_CHECK(DNN(cudnnGetConvolutionBackwardDataAlgorithm_v7(
            be->cudnn, op->wd, op->yd, op->cd[1], op->xd, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
            &n, perf)));
    for (int i = 0; i < n; i++) {
        size_t sz = 0;
        if (perf[i].status != CUDNN_STATUS_SUCCESS ||
            cudnnSetConvolutionMathType(op->cd[1], conv_math(op, perf[i].mathType)) !=
                CUDNN_STATUS_SUCCESS ||
            cudnnGetConvolutionBackwardDataWorkspaceSize(be->cudnn, op->wd, op->yd, op->cd[1],
                                                         op->xd, perf[i].algo, &sz) !=
                CUDNN_STATUS_SUCCESS ||
            sz > be->ws_size ||
            cudnnConvolutionBackwardData(be->cudnn, &one, op->wd, b->w, op->yd, b->y, op->cd[1],
                                         perf[i].algo, be->ws, sz, &zero, op->xd, b->x) !=
                CUDNN_STATUS_SUCCESS)
            continue;
        op->algo_bwd_data = perf[i].algo;
        op->ws_need[1] = sz;
        return DPT_OK;
    }
    return conv_no_algo(op, "backward-data");
}

static dpt_status_t pick_bwd_filter(dpt_op_t *op, const conv_scratch_t *b)
{
    dpt_backend_t *be = op->be;
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int n = 0;
    if (be->find)
        DPT_CHECK(DNN(cudnnFindConvolutionBackwardFilterAlgorithmEx(
            be->cudnn, op->xd, b->x, op->yd, b->y, op->cd[2], op->wd, b->w,
            CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, perf, be->ws, be->ws_size)));
    else
        DPT_CHECK(DNN(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
            be->cudnn, op->xd, op->yd, op->cd[2], op->wd, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
            &n, perf)));
    for (int i = 0; i < n; i++) {
        size_t sz = 0;
        if (perf[i].status != CUDNN_STATUS_SUCCESS ||
            cudnnSetConvolutionMathType(op->cd[2], conv_math(op, perf[i].mathType)) !=
                CUDNN_STATUS_SUCCESS ||
            cudnnGetConvolutionBackwardFilterWorkspaceSize(be->cudnn, op->xd, op->yd, op->cd[2],
                                                           op->wd, perf[i].algo, &sz) !=
                CUDNN_STATUS_SUCCESS ||
            sz > be->ws_size ||
            cudnnConvolutionBackwardFilter(be->cudnn, &one, op->xd, b->x, op->yd, b->y,
                                           op->cd[2], perf[i].algo, be->ws, sz, &zero, op->wd,
                                           b->w) != CUDNN_STATUS_SUCCESS)
            continue;
        op->algo_bwd_filter = perf[i].algo;
        op->ws_need[2] = sz;
        return DPT_OK;
    }
    return conv_no_algo(op, "backward-filter");
}

/* Zeroed scratch tensors for the algorithm choice, then the three choices; the scratch is freed
 * before returning (after the trial runs finished). */
static dpt_status_t pick_algos(dpt_op_t *op)
{
    dpt_backend_t *be = op->be;
    size_t es = dpt__cuda_elem_size(op->dt);
    size_t nb[3] = {dpt_tensor_count(&op->d.in[0]) * es, dpt_tensor_count(&op->info.out) * es,
                    op->info.n_weights * es};
    conv_scratch_t b = {NULL, NULL, NULL};
    void **p[3] = {&b.x, &b.y, &b.w};
    dpt_status_t st = DPT_OK;
    for (int i = 0; i < 3 && st == DPT_OK; i++) {
        st = CU(cudaMalloc(p[i], nb[i]));
        if (st == DPT_OK)
            st = CU(cudaMemsetAsync(*p[i], 0, nb[i], be->stream));
    }
    if (st == DPT_OK)
        st = pick_fwd(op, &b);
    if (st == DPT_OK)
        st = pick_bwd_data(op, &b);
    if (st == DPT_OK)
        st = pick_bwd_filter(op, &b);
    dpt_status_t sync = CU(cudaStreamSynchronize(be->stream));
    if (st == DPT_OK)
        st = sync;
    for (int i = 0; i < 3; i++)
        (void)cudaFree(*p[i]);
    return st;
}

dpt_status_t dpt__cuda_conv_create(dpt_backend_t *be, dpt_op_t *op)
{
    (void)be;   /* op->be */
    const dpt_op_desc_t *d = &op->d;
    const dpt_tensor_t *x = &d->in[0], *y = &op->info.out;
    cudnnDataType_t t = dnn_type(op->dt);
    DPT_CHECK(DNN(cudnnCreateTensorDescriptor(&op->xd)));
    DPT_CHECK(DNN(cudnnCreateTensorDescriptor(&op->yd)));
    DPT_CHECK(DNN(cudnnCreateFilterDescriptor(&op->wd)));
    DPT_CHECK(DNN(cudnnSetTensor4dDescriptor(op->xd, CUDNN_TENSOR_NCHW, t, x->n, x->c, x->h, x->w)));
    DPT_CHECK(DNN(cudnnSetTensor4dDescriptor(op->yd, CUDNN_TENSOR_NCHW, t, y->n, y->c, y->h, y->w)));
    /* grouped: cuDNN's filter is (O, I/G, KH, KW), the arena's layout, with G set on the
     * convolution descriptors */
    const int g = dpt_conv_groups(d);
    DPT_CHECK(DNN(cudnnSetFilter4dDescriptor(op->wd, t, CUDNN_TENSOR_NCHW, d->out_c, x->c / g,
                                             d->kh, d->kw)));
    cudnnMathType_t initial = op->dt != DPT_PREC_FP32 ? CUDNN_TENSOR_OP_MATH
                              : op->be->tf32          ? CUDNN_DEFAULT_MATH
                                                      : CUDNN_FMA_MATH;
    for (int i = 0; i < 3; i++) {
        DPT_CHECK(DNN(cudnnCreateConvolutionDescriptor(&op->cd[i])));
        /* float32 accumulation in every mode */
        DPT_CHECK(DNN(cudnnSetConvolution2dDescriptor(op->cd[i], d->pad, d->pad, d->stride,
                                                      d->stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                                      CUDNN_DATA_FLOAT)));
        DPT_CHECK(DNN(cudnnSetConvolutionMathType(op->cd[i], initial)));
        DPT_CHECK(DNN(cudnnSetConvolutionGroupCount(op->cd[i], g)));
    }
    int on, oc, oh, ow;
    DPT_CHECK(DNN(cudnnGetConvolution2dForwardOutputDim(op->cd[0], op->xd, op->wd, &on, &oc, &oh,
                                                        &ow)));
    if (on != y->n || oc != y->c || oh != y->h || ow != y->w)
        return dpt_error_set(DPT_ERR_INTERNAL, "cuda: conv2d output %dx%dx%dx%d from cuDNN, "
                             "expected %dx%dx%dx%d", on, oc, oh, ow, y->n, y->c, y->h, y->w);
    DPT_CHECK(pick_algos(op));
    snprintf(op->info.impl, sizeof op->info.impl, "cudnn:%s:f%d/d%d/w%d",
             dpt_precision_name(op->dt), (int)op->algo_fwd, (int)op->algo_bwd_data,
             (int)op->algo_bwd_filter);
    if (op->dt != DPT_PREC_FP32) {
        DPT_CHECK(dpt__cuda_dev_alloc(&op->w16, op->info.n_weights * dpt__cuda_elem_size(op->dt)));
        DPT_CHECK(dpt__cuda_dev_alloc(&op->dw16, op->info.n_weights * dpt__cuda_elem_size(op->dt)));
    }
    return DPT_OK;
}

dpt_status_t dpt__cuda_conv_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const void *x = dpt__cuda_fwd_x(op, a, 0);
    void *y = a->y->data;
    dpt_backend_t *be = op->be;
    const void *w = a->w;
    if (op->dt != DPT_PREC_FP32) {
        DPT_CHECK(CU(dpt__cuda_cast_launch(op->w16, op->dt, a->w, DPT_PREC_FP32,
                                           op->info.n_weights, be->stream)));
        w = op->w16;
    }
    DPT_CHECK(DNN(cudnnConvolutionForward(be->cudnn, &one, op->xd, x, op->wd, w, op->cd[0],
                                          op->algo_fwd, be->ws, op->ws_need[0], &zero, op->yd,
                                          y)));
    const dpt_tensor_t *o = &op->info.out;
    if (op->d.has_bias)
        DPT_CHECK(CU(dpt__cuda_bias_add_launch(y, op->dt, a->w + op->info.n_weights, o->n, o->c,
                                               (long)o->h * o->w, be->stream)));
    return DPT_OK;
}

dpt_status_t dpt__cuda_conv_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const void *x = dpt__cuda_bwd_x(op, a, 0), *dy = dpt__cuda_bwd_dy(a);
    void *dx = dpt__cuda_bwd_dx(op, a, 0);
    dpt_backend_t *be = op->be;
    const void *w = op->dt == DPT_PREC_FP32 ? (const void *)a->w : op->w16;   /* forward's cast */
    if (dx)
        DPT_CHECK(DNN(cudnnConvolutionBackwardData(be->cudnn, &one, op->wd, w, op->yd, dy,
                                                   op->cd[1], op->algo_bwd_data, be->ws,
                                                   op->ws_need[1], &zero, op->xd, dx)));
    if (!a->dw)
        return DPT_OK;
    void *dw = op->dt == DPT_PREC_FP32 ? (void *)a->dw : op->dw16;
    DPT_CHECK(DNN(cudnnConvolutionBackwardFilter(be->cudnn, &one, op->xd, x, op->yd, dy, op->cd[2],
                                                 op->algo_bwd_filter, be->ws, op->ws_need[2],
                                                 &zero, op->wd, dw)));
    if (op->dt != DPT_PREC_FP32)
        DPT_CHECK(CU(dpt__cuda_cast_launch(a->dw, DPT_PREC_FP32, op->dw16, op->dt,
                                           op->info.n_weights, be->stream)));
    const dpt_tensor_t *o = &op->info.out;
    if (op->d.has_bias)
        DPT_CHECK(CU(dpt__cuda_channel_sum_launch(dy, op->dt, a->dw + op->info.n_weights, o->n,
                                                  o->c, (long)o->h * o->w, be->stream)));
    return DPT_OK;
}
