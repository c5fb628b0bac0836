/* cuda_backend.c: the `cuda` compute backend (backend.h interface) on one GPU. Convolutions go to
 * cuDNN (legacy API: descriptors and algorithms fixed at op_create, one shared workspace), fully
 * connected layers to cuBLAS, everything else to our kernels (cuda_kernels.cu). All work is
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
 */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"
#include "backend/internal.h"
#include "dptrain/alloc.h"
#include "dptrain/backend.h"
#include "dptrain/cuda.h"

struct dpt_backend {
    int device;
    dpt_precision_t prec;     /* activation storage and compute precision */
    int tf32;                 /* FP32 mode may use TF32 tensor cores (DPT_CUDA_TF32=1) */
    int sms;                  /* streaming multiprocessors of the device (sizes BN grids) */
    int find;                 /* order conv algorithms by measured time (DPT_CUDNN_FIND=1) */
    cudaStream_t stream;      /* the compute stream (blocking) */
    cublasHandle_t cublas;    /* bound to stream */
    cudnnHandle_t cudnn;      /* bound to stream */
    void *ws;                 /* cuDNN workspace shared by all ops (they run in stream order) */
    size_t ws_size;
    float *stage;             /* float32 staging for import/export of 16-bit tensors (grows) */
    size_t stage_size;
};

struct dpt_op {
    dpt_backend_t *be;
    dpt_op_desc_t d;
    dpt_op_info_t info;
    dpt_precision_t dt;        /* element type of the output (and of the inputs after casting) */
    int in_cast[2];            /* input i is float32 NCHW in a 16-bit backend: cast it */
    void *xc[2];               /* (count of in[i]) 16-bit copy of input i when in_cast[i] */
    void *dxc[2];              /* (count of in[i]) 16-bit gradient of input i when in_cast[i] */
    /* conv2d */
    cudnnTensorDescriptor_t xd, yd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd[3];   /* forward, backward data, backward filter */
    cudnnConvolutionFwdAlgo_t algo_fwd;
    cudnnConvolutionBwdDataAlgo_t algo_bwd_data;
    cudnnConvolutionBwdFilterAlgo_t algo_bwd_filter;
    size_t ws_need[3];
    /* conv2d, fc in 16-bit modes */
    void *w16;                 /* (n_weights) weights cast to dt */
    void *dw16;                /* (n_weights) conv weight gradient in dt */
    /* batchnorm: mean (C), var (C), then reductions (2C) when the caller passes no dw;
     * xent: probabilities (N*K) */
    float *save;
    double *part;              /* batchnorm: (C, bn_splits, 2) float64 partial sums */
    int bn_splits;
    int32_t *argmax;           /* maxpool (N, C, OH, OW) */
    /* xent */
    int32_t *labels;           /* (N) labels on the device */
    float *sample_loss;        /* (N) */
    int32_t *sample_hit;       /* (N) */
    float *loss_d;             /* (1) */
    int32_t *correct_d;        /* (1) */
};

/* ---- status translation ---------------------------------------------------------------------- */
static dpt_status_t cu_st(cudaError_t e, const char *what)
{
    if (e == cudaSuccess)
        return DPT_OK;
    return dpt_error_set(DPT_ERR_CUDA, "cuda: %s: %s", what, cudaGetErrorString(e));
}

static dpt_status_t dnn_st(cudnnStatus_t e, const char *what)
{
    if (e == CUDNN_STATUS_SUCCESS)
        return DPT_OK;
    return dpt_error_set(DPT_ERR_CUDA, "cuda: %s: %s", what, cudnnGetErrorString(e));
}

static dpt_status_t blas_st(cublasStatus_t e, const char *what)
{
    if (e == CUBLAS_STATUS_SUCCESS)
        return DPT_OK;
    return dpt_error_set(DPT_ERR_CUDA, "cuda: %s: %s", what, cublasGetStatusString(e));
}

/* The failing call's text (up to its first parenthesis) names it in the message. */
#define CU(call) cu_st((call), #call)
#define DNN(call) dnn_st((call), #call)
#define BLAS(call) blas_st((call), #call)

static size_t elem_size(dpt_precision_t p) { return p == DPT_PREC_FP32 ? 4 : 2; }

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

static cudnnDataType_t dnn_type(dpt_precision_t p)
{
    return p == DPT_PREC_BF16   ? CUDNN_DATA_BFLOAT16
           : p == DPT_PREC_FP16 ? CUDNN_DATA_HALF
                                : CUDNN_DATA_FLOAT;
}

static cudaDataType_t blas_type(dpt_precision_t p)
{
    return p == DPT_PREC_BF16 ? CUDA_R_16BF : p == DPT_PREC_FP16 ? CUDA_R_16F : CUDA_R_32F;
}

static long env_long(const char *name, long dflt)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return dflt;
    char *end;
    long v = strtol(s, &end, 10);
    return *end ? dflt : v;
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
    return p < 0 ? 0 : elem_size((dpt_precision_t)p);
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
    be->tf32 = env_long("DPT_CUDA_TF32", 0) != 0;
    be->find = env_long("DPT_CUDNN_FIND", 0) != 0;
    long mb = env_long("DPT_CUDA_WORKSPACE_MB", 256);
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

static dpt_status_t cuda_memcpy(dpt_backend_t *be, void *dst, const void *src, size_t nbytes,
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
        return cuda_memcpy(be, dst->data, src, n * sizeof(float), DPT_COPY_H2D);
    DPT_CHECK(stage_get(be, n));
    DPT_CHECK(cuda_memcpy(be, be->stage, src, n * sizeof(float), DPT_COPY_H2D));
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
        return cuda_memcpy(be, dst, src->data, n * sizeof(float), DPT_COPY_D2H);
    DPT_CHECK(stage_get(be, n));
    DPT_CHECK(CU(dpt__cuda_cast_launch(be->stage, DPT_PREC_FP32, src->data, (dpt_precision_t)p, n,
                                       be->stream)));
    return cuda_memcpy(be, dst, be->stage, n * sizeof(float), DPT_COPY_D2H);
}

/* ---- op creation ----------------------------------------------------------------------------- */
static const float one = 1.0f, zero = 0.0f;   /* alpha and beta of cuDNN and cuBLAS calls */

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

static dpt_status_t dev_alloc(void **p, size_t nbytes)
{
    return CU(cudaMalloc(p, nbytes ? nbytes : 1));
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
    size_t es = elem_size(op->dt);
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

static dpt_status_t conv_setup(dpt_op_t *op)
{
    const dpt_op_desc_t *d = &op->d;
    const dpt_tensor_t *x = &d->in[0], *y = &op->info.out;
    cudnnDataType_t t = dnn_type(op->dt);
    DPT_CHECK(DNN(cudnnCreateTensorDescriptor(&op->xd)));
    DPT_CHECK(DNN(cudnnCreateTensorDescriptor(&op->yd)));
    DPT_CHECK(DNN(cudnnCreateFilterDescriptor(&op->wd)));
    DPT_CHECK(DNN(cudnnSetTensor4dDescriptor(op->xd, CUDNN_TENSOR_NCHW, t, x->n, x->c, x->h, x->w)));
    DPT_CHECK(DNN(cudnnSetTensor4dDescriptor(op->yd, CUDNN_TENSOR_NCHW, t, y->n, y->c, y->h, y->w)));
    DPT_CHECK(DNN(cudnnSetFilter4dDescriptor(op->wd, t, CUDNN_TENSOR_NCHW, d->out_c, x->c, d->kh,
                                             d->kw)));
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
        DPT_CHECK(dev_alloc(&op->w16, op->info.n_weights * elem_size(op->dt)));
        DPT_CHECK(dev_alloc(&op->dw16, op->info.n_weights * elem_size(op->dt)));
    }
    return DPT_OK;
}

static dpt_status_t cuda_op_create(dpt_backend_t *be, const dpt_op_desc_t *d, dpt_op_t **out,
                                   dpt_op_info_t *info)
{
    *out = NULL;
    int n_in = d->kind == DPT_OP_ADD ? 2 : 1;
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
    info->out.nbytes = dpt_tensor_count(&info->out) * elem_size(op->dt);
    snprintf(info->impl, sizeof info->impl, "cuda:%s", dpt_precision_name(op->dt));
    op->info = *info;

    dpt_status_t st = DPT_OK;
    const dpt_tensor_t *x = &d->in[0];
    size_t es = elem_size(op->dt), C = (size_t)x->c, N = (size_t)x->n;
    for (int i = 0; i < n_in; i++) {
        op->in_cast[i] = op->dt != DPT_PREC_FP32 && d->in[i].layout == DPT_LAYOUT_NCHW;
        if (op->in_cast[i]) {
            size_t nb = dpt_tensor_count(&d->in[i]) * es;
            DPT_CHECK_GOTO(dev_alloc(&op->xc[i], nb), st, fail);
            DPT_CHECK_GOTO(dev_alloc(&op->dxc[i], nb), st, fail);
        }
    }
    switch (d->kind) {
    case DPT_OP_CONV2D:
        DPT_CHECK_GOTO(conv_setup(op), st, fail);
        break;
    case DPT_OP_FC:
        if (op->dt != DPT_PREC_FP32)
            DPT_CHECK_GOTO(dev_alloc(&op->w16, op->info.n_weights * es), st, fail);
        snprintf(op->info.impl, sizeof op->info.impl, "cublas:%s", dpt_precision_name(op->dt));
        break;
    case DPT_OP_BATCHNORM:
        op->bn_splits = dpt__cuda_bn_splits(x->n, x->c, (long)x->h * x->w, be->sms);
        DPT_CHECK_GOTO(dev_alloc((void **)&op->save, 4 * C * sizeof(float)), st, fail);
        DPT_CHECK_GOTO(dev_alloc((void **)&op->part, 2 * C * (size_t)op->bn_splits *
                                 sizeof(double)), st, fail);
        break;
    case DPT_OP_MAXPOOL:
        DPT_CHECK_GOTO(dev_alloc((void **)&op->argmax,
                                 dpt_tensor_count(&info->out) * sizeof(int32_t)),
                       st, fail);
        break;
    case DPT_OP_XENT:
        DPT_CHECK_GOTO(dev_alloc((void **)&op->save, N * C * sizeof(float)), st, fail);
        DPT_CHECK_GOTO(dev_alloc((void **)&op->labels, N * sizeof(int32_t)), st, fail);
        DPT_CHECK_GOTO(dev_alloc((void **)&op->sample_loss, N * sizeof(float)), st, fail);
        DPT_CHECK_GOTO(dev_alloc((void **)&op->sample_hit, N * sizeof(int32_t)), st, fail);
        DPT_CHECK_GOTO(dev_alloc((void **)&op->loss_d, sizeof(float)), st, fail);
        DPT_CHECK_GOTO(dev_alloc((void **)&op->correct_d, sizeof(int32_t)), st, fail);
        break;
    default:
        break;
    }
    *info = op->info;
    *out = op;
    return DPT_OK;
fail:
    cuda_op_destroy(op);
    return st;
}

/* ---- forward --------------------------------------------------------------------------------- */

/* n_valid as the ref backend reads it. */
static int valid_count(const dpt_op_args_t *a, int N)
{
    return a->n_valid <= 0 || a->n_valid > N ? N : a->n_valid;
}

static dpt_status_t fc_forward(dpt_op_t *op, const dpt_op_args_t *a, const void *x, void *y)
{
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

static dpt_status_t conv_forward(dpt_op_t *op, const dpt_op_args_t *a, const void *x, void *y)
{
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

static dpt_status_t xent_forward(dpt_op_t *op, const dpt_op_args_t *a, const void *x, void *y)
{
    dpt_backend_t *be = op->be;
    int N = op->d.in[0].n, K = op->d.in[0].c, nv = valid_count(a, N);
    if (!a->labels)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "cuda: softmax_xent forward without labels");
    for (int i = 0; i < nv; i++)
        if (a->labels[i] < 0 || a->labels[i] >= K)
            return dpt_error_set(DPT_ERR_INVALID_ARG, "cuda: softmax_xent: label %d of sample %d "
                                 "not in [0, %d)", (int)a->labels[i], i, K);
    DPT_CHECK(cuda_memcpy(be, op->labels, a->labels, (size_t)nv * sizeof(int32_t), DPT_COPY_H2D));
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

static dpt_status_t cuda_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    dpt_backend_t *be = op->be;
    const dpt_op_desc_t *d = &op->d;
    cudaStream_t s = be->stream;
    const void *x[2] = {NULL, NULL};
    for (int i = 0; i < (d->kind == DPT_OP_ADD ? 2 : 1); i++) {
        x[i] = a->x[i]->data;
        if (op->in_cast[i]) {
            DPT_CHECK(CU(dpt__cuda_cast_launch(op->xc[i], op->dt, x[i], DPT_PREC_FP32,
                                               dpt_tensor_count(&d->in[i]), s)));
            x[i] = op->xc[i];
        }
    }
    void *y = a->y->data;
    const dpt_tensor_t *in = &d->in[0], *o = &op->info.out;
    int N = in->n, C = in->c;
    long HW = (long)in->h * in->w;
    size_t cnt = dpt_tensor_count(in);
    switch (d->kind) {
    case DPT_OP_CONV2D:
        return conv_forward(op, a, x[0], y);
    case DPT_OP_FC:
        return fc_forward(op, a, x[0], y);
    case DPT_OP_BATCHNORM: {
        const float *g = a->w, *b = a->w + C;
        if (a->training) {
            float *mean = op->save, *var = op->save + C;
            DPT_CHECK(CU(dpt__cuda_bn_stats_launch(x[0], op->dt, mean, var, a->buf, a->buf + C,
                                                   d->bn_momentum, N, C, HW, op->part,
                                                   op->bn_splits, s)));
            return CU(dpt__cuda_bn_apply_launch(x[0], y, op->dt, g, b, mean, var, d->bn_eps,
                                                d->fuse_relu, N, C, HW, s));
        }
        return CU(dpt__cuda_bn_apply_launch(x[0], y, op->dt, g, b, a->buf, a->buf + C, d->bn_eps,
                                            d->fuse_relu, N, C, HW, s));
    }
    case DPT_OP_RELU:
        return CU(dpt__cuda_eltwise_fwd_launch(DPT__CU_RELU, x[0], NULL, y, op->dt, cnt, 0, s));
    case DPT_OP_CELU:
        return CU(dpt__cuda_eltwise_fwd_launch(DPT__CU_CELU, x[0], NULL, y, op->dt, cnt, d->alpha,
                                               s));
    case DPT_OP_SCALE:
        return CU(dpt__cuda_eltwise_fwd_launch(DPT__CU_SCALE, x[0], NULL, y, op->dt, cnt,
                                               d->alpha, s));
    case DPT_OP_ADD:
        return CU(dpt__cuda_eltwise_fwd_launch(DPT__CU_ADD, x[0], x[1], y, op->dt, cnt, 0, s));
    case DPT_OP_MAXPOOL:
        return CU(dpt__cuda_maxpool_fwd_launch(x[0], y, op->dt, op->argmax, N, C, in->h, in->w,
                                               d->pool_k, d->pool_stride, d->pool_pad, o->h, o->w,
                                               s));
    case DPT_OP_GAP:
        return CU(dpt__cuda_gap_fwd_launch(x[0], y, op->dt, N, C, HW, s));
    case DPT_OP_FLATTEN:
        if (y == x[0])
            return DPT_OK;
        return CU(cudaMemcpyAsync(y, x[0], cnt * elem_size(op->dt), cudaMemcpyDeviceToDevice, s));
    case DPT_OP_XENT:
        return xent_forward(op, a, x[0], y);
    default:
        return dpt_error_set(DPT_ERR_UNSUPPORTED, "cuda: op %d", (int)d->kind);
    }
}

/* ---- backward -------------------------------------------------------------------------------- */
static dpt_status_t conv_backward(dpt_op_t *op, const dpt_op_args_t *a, const void *x,
                                  const void *dy, void *dx)
{
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

static dpt_status_t fc_backward(dpt_op_t *op, const dpt_op_args_t *a, const void *x,
                                const void *dy, void *dx)
{
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

static dpt_status_t cuda_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    dpt_backend_t *be = op->be;
    const dpt_op_desc_t *d = &op->d;
    cudaStream_t s = be->stream;
    int n_in = d->kind == DPT_OP_ADD ? 2 : 1;
    const void *x[2] = {NULL, NULL};
    void *dx[2] = {NULL, NULL};
    for (int i = 0; i < n_in; i++) {
        x[i] = op->in_cast[i] ? op->xc[i] : (a->x[i] ? a->x[i]->data : NULL);
        if (a->dx[i])
            dx[i] = op->in_cast[i] ? op->dxc[i] : a->dx[i]->data;
    }
    const void *dy = a->dy ? a->dy->data : NULL;
    const dpt_tensor_t *in = &d->in[0], *o = &op->info.out;
    int N = in->n, C = in->c;
    long HW = (long)in->h * in->w;
    size_t cnt = dpt_tensor_count(in);
    dpt_status_t st = DPT_OK;
    switch (d->kind) {
    case DPT_OP_CONV2D:
        st = conv_backward(op, a, x[0], dy, dx[0]);
        break;
    case DPT_OP_FC:
        st = fc_backward(op, a, x[0], dy, dx[0]);
        break;
    case DPT_OP_BATCHNORM: {
        const float *mean = op->save, *var = op->save + C;
        float *dg = a->dw ? a->dw : op->save + 2 * C, *db = dg + C;
        st = CU(dpt__cuda_bn_bwd_reduce_launch(x[0], a->y->data, dy, op->dt, mean, var,
                                               d->bn_eps, d->fuse_relu, dg, db, N, C, HW,
                                               op->part, op->bn_splits, s));
        if (st == DPT_OK && dx[0])
            st = CU(dpt__cuda_bn_bwd_dx_launch(x[0], a->y->data, dy, dx[0], op->dt, a->w, mean,
                                               var, dg, db, d->bn_eps, d->fuse_relu, N, C, HW,
                                               s));
        break;
    }
    case DPT_OP_RELU:
        if (dx[0])
            st = CU(dpt__cuda_eltwise_bwd_launch(DPT__CU_RELU, NULL, a->y->data, dy, dx[0], op->dt,
                                                 cnt, 0, s));
        break;
    case DPT_OP_CELU:
        if (dx[0])
            st = CU(dpt__cuda_eltwise_bwd_launch(DPT__CU_CELU, x[0], NULL, dy, dx[0], op->dt, cnt,
                                                 d->alpha, s));
        break;
    case DPT_OP_SCALE:
        if (dx[0])
            st = CU(dpt__cuda_eltwise_bwd_launch(DPT__CU_SCALE, NULL, NULL, dy, dx[0], op->dt,
                                                 cnt, d->alpha, s));
        break;
    case DPT_OP_MAXPOOL:
        if (dx[0])
            st = CU(dpt__cuda_maxpool_bwd_launch(op->argmax, dy, dx[0], op->dt, N, C, in->h,
                                                 in->w, d->pool_k, d->pool_stride, d->pool_pad,
                                                 o->h, o->w, s));
        break;
    case DPT_OP_GAP:
        if (dx[0])
            st = CU(dpt__cuda_gap_bwd_launch(dy, dx[0], op->dt, N, C, HW, s));
        break;
    case DPT_OP_ADD:
    case DPT_OP_FLATTEN:
        for (int i = 0; i < n_in && st == DPT_OK; i++)
            if (dx[i] && dx[i] != dy)
                st = CU(cudaMemcpyAsync(dx[i], dy, cnt * elem_size(op->dt),
                                        cudaMemcpyDeviceToDevice, s));
        break;
    case DPT_OP_XENT:
        if (dx[0]) {
            /* The labels on the device are those of the last forward; refresh them if given. */
            int nv = valid_count(a, N);
            if (a->labels)
                st = cuda_memcpy(be, op->labels, a->labels, (size_t)nv * sizeof(int32_t),
                                 DPT_COPY_H2D);
            float scale = a->loss_scale != 0.0f ? a->loss_scale : 1.0f;
            if (st == DPT_OK)
                st = CU(dpt__cuda_xent_bwd_launch(op->save, op->labels, dx[0], op->dt, N, C, nv,
                                                  d->label_smoothing, scale, s));
        }
        break;
    default:
        return dpt_error_set(DPT_ERR_UNSUPPORTED, "cuda: op %d", (int)d->kind);
    }
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
    .memcpy = cuda_memcpy,
    .sync = cuda_sync,
};
