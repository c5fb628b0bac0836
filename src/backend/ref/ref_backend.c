/* ref_backend.c: the `ref` backend: plain NCHW, plain C kernels (ref_kernels.inc), the oracle
 * every other backend is tested against. Per-op state (BN batch statistics, pooling argmax,
 * softmax probabilities) is allocated once in op_create. */
#include <stdio.h>
#include <string.h>

#include "backend/ref/ref_internal.h"
#include "backend/ref/ref_kernels.h"
#include "dptrain/alloc.h"

static dpt_status_t ref_create(const dpt_backend_config_t *cfg, dpt_backend_t **out)
{
    (void)cfg;
    dpt_backend_t *be = dpt_calloc(sizeof *be);
    if (!be)
        return dpt_error_set(DPT_ERR_NOMEM, "ref backend: out of memory");
    *out = be;
    return DPT_OK;
}

static void ref_destroy(dpt_backend_t *be) { dpt_free(be); }

/* Shape checks and output shapes shared by every backend's op_create. */
static dpt_status_t ref_op_shape(const dpt_op_desc_t *d, dpt_op_info_t *info)
{
    const dpt_tensor_t *x = &d->in[0];
    memset(info, 0, sizeof *info);
    if (x->n <= 0 || x->c <= 0 || x->h <= 0 || x->w <= 0)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "%s: empty input shape %dx%dx%dx%d",
                             dpt_op_kind_name(d->kind), x->n, x->c, x->h, x->w);
    int n = x->n, c = x->c, h = x->h, w = x->w;
    double hw = (double)h * w;
    switch (d->kind) {
    case DPT_OP_CONV2D: {
        if (d->out_c <= 0 || d->kh <= 0 || d->kw <= 0 || d->stride <= 0 || d->pad < 0 ||
            d->groups < 0)
            return dpt_error_set(DPT_ERR_INVALID_ARG, "conv2d: bad parameters (filters=%d "
                                 "size=%dx%d stride=%d pad=%d groups=%d)", d->out_c, d->kh, d->kw,
                                 d->stride, d->pad, d->groups);
        const int g = dpt_conv_groups(d);
        if (c % g || d->out_c % g)
            return dpt_error_set(DPT_ERR_INVALID_ARG, "conv2d: groups=%d must divide the %d input "
                                 "channels and the %d filters", g, c, d->out_c);
        int oh = (h + 2 * d->pad - d->kh) / d->stride + 1;
        int ow = (w + 2 * d->pad - d->kw) / d->stride + 1;
        if (h + 2 * d->pad < d->kh || w + 2 * d->pad < d->kw)
            return dpt_error_set(DPT_ERR_INVALID_ARG, "conv2d: kernel %dx%d larger than padded "
                                 "input %dx%d", d->kh, d->kw, h + 2 * d->pad, w + 2 * d->pad);
        info->out = dpt_tensor_shape(n, d->out_c, oh, ow);
        info->n_weights = (size_t)d->out_c * (c / g) * d->kh * d->kw;
        info->n_params = info->n_weights + (d->has_bias ? (size_t)d->out_c : 0);
        info->flops_fwd = 2.0 * n * d->out_c * (double)oh * ow * (c / g) * d->kh * d->kw;
        break;
    }
    case DPT_OP_BATCHNORM:
        info->out = dpt_tensor_shape(n, c, h, w);
        info->n_params = 2 * (size_t)c;
        info->n_weights = 0;   /* gamma and beta: no weight decay */
        info->n_buffers = 2 * (size_t)c;
        info->flops_fwd = 4.0 * n * c * hw;
        break;
    case DPT_OP_RELU:
    case DPT_OP_CELU:
    case DPT_OP_SCALE:
    case DPT_OP_SILU:
    case DPT_OP_GELU:
    case DPT_OP_SIGMOID:
        info->out = dpt_tensor_shape(n, c, h, w);
        info->flops_fwd = (double)n * c * hw;
        break;
    case DPT_OP_MAXPOOL: {
        if (d->pool_k <= 0 || d->pool_stride <= 0 || d->pool_pad < 0 || 2 * d->pool_pad >= d->pool_k)
            return dpt_error_set(DPT_ERR_INVALID_ARG, "maxpool: bad parameters (size=%d stride=%d "
                                 "pad=%d)", d->pool_k, d->pool_stride, d->pool_pad);
        if (h + 2 * d->pool_pad < d->pool_k || w + 2 * d->pool_pad < d->pool_k)
            return dpt_error_set(DPT_ERR_INVALID_ARG, "maxpool: window %d larger than input %dx%d",
                                 d->pool_k, h, w);
        int oh = (h + 2 * d->pool_pad - d->pool_k) / d->pool_stride + 1;
        int ow = (w + 2 * d->pool_pad - d->pool_k) / d->pool_stride + 1;
        info->out = dpt_tensor_shape(n, c, oh, ow);
        info->flops_fwd = (double)n * c * oh * ow * d->pool_k * d->pool_k;
        break;
    }
    case DPT_OP_GAP:
        info->out = dpt_tensor_shape(n, c, 1, 1);
        info->flops_fwd = (double)n * c * hw;
        break;
    case DPT_OP_FC: {
        if (d->out_features <= 0)
            return dpt_error_set(DPT_ERR_INVALID_ARG, "fc: bad output size %d", d->out_features);
        size_t in = (size_t)c * h * w;
        info->out = dpt_tensor_shape(n, d->out_features, 1, 1);
        info->n_weights = (size_t)d->out_features * in;
        info->n_params = info->n_weights + (d->has_bias ? (size_t)d->out_features : 0);
        info->flops_fwd = 2.0 * n * (double)in * d->out_features;
        break;
    }
    case DPT_OP_ADD: {
        const dpt_tensor_t *x1 = &d->in[1];
        if (d->n_in != 2 || x1->n != n || x1->c != c || x1->h != h || x1->w != w)
            return dpt_error_set(DPT_ERR_INVALID_ARG, "add: inputs differ in shape (%dx%dx%dx%d vs "
                                 "%dx%dx%dx%d)", n, c, h, w, x1->n, x1->c, x1->h, x1->w);
        info->out = dpt_tensor_shape(n, c, h, w);
        info->flops_fwd = (double)n * c * hw;
        break;
    }
    case DPT_OP_DROPOUT:
    case DPT_OP_DROP_PATH:
        if (!(d->drop_rate >= 0 && d->drop_rate < 1))
            return dpt_error_set(DPT_ERR_INVALID_ARG, "%s: rate %g not in [0, 1)",
                                 dpt_op_kind_name(d->kind), (double)d->drop_rate);
        info->out = dpt_tensor_shape(n, c, h, w);
        info->flops_fwd = (double)n * c * hw;
        break;
    case DPT_OP_MUL: {
        const dpt_tensor_t *g = &d->in[1];
        if (d->n_in != 2 || g->n != n || g->c != c || g->h != 1 || g->w != 1)
            return dpt_error_set(DPT_ERR_INVALID_ARG, "mul: the gate must be (N, C, 1, 1) of the "
                                 "input %dx%dx%dx%d, got %dx%dx%dx%d", n, c, h, w, g->n, g->c,
                                 g->h, g->w);
        info->out = dpt_tensor_shape(n, c, h, w);
        info->flops_fwd = (double)n * c * hw;
        break;
    }
    case DPT_OP_FLATTEN:
        info->out = dpt_tensor_shape(n, c * h * w, 1, 1);
        break;
    case DPT_OP_XENT:
        if (h != 1 || w != 1 || c < 2)
            return dpt_error_set(DPT_ERR_INVALID_ARG, "softmax_xent: needs (N, K>=2, 1, 1) logits, "
                                 "got %dx%dx%dx%d", n, c, h, w);
        if (d->label_smoothing < 0 || d->label_smoothing >= 1)
            return dpt_error_set(DPT_ERR_INVALID_ARG, "softmax_xent: label smoothing %g not in "
                                 "[0, 1)", d->label_smoothing);
        info->out = dpt_tensor_shape(n, c, 1, 1);
        info->flops_fwd = 3.0 * n * c;
        break;
    default:
        return dpt__op_shape_tokens(d, info);   /* the transformer ops (op_shape_tokens.c) */
    }
    return DPT_OK;
}

/* ---- ops -------------------------------------------------------------------------------- */

static dpt_status_t nomem(void)
{
    return dpt_error_set(DPT_ERR_NOMEM, "ref backend: out of memory");
}

static dpt_status_t conv_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_op_desc_t *d = &op->d;
    const dpt_tensor_t *x = a->x[0], *o = &op->info.out;
    dpt__ref_conv_fwd_f32(x->data, a->w, d->has_bias ? a->w + op->info.n_weights : NULL,
                          a->y->data, x->n, x->c, x->h, x->w, d->out_c, d->kh, d->kw, d->stride,
                          d->pad, dpt_conv_groups(d), o->h, o->w);
    return DPT_OK;
}

static dpt_status_t conv_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_op_desc_t *d = &op->d;
    const dpt_tensor_t *x = a->x[0], *o = &op->info.out;
    dpt__ref_conv_bwd_f32(x->data, a->w, a->dy ? a->dy->data : NULL,
                          a->dx[0] ? a->dx[0]->data : NULL, a->dw,
                          d->has_bias ? a->dw + op->info.n_weights : NULL, x->n, x->c, x->h, x->w,
                          d->out_c, d->kh, d->kw, d->stride, d->pad, dpt_conv_groups(d), o->h,
                          o->w);
    return DPT_OK;
}

/* BN keeps the batch mean (C) then var (C) of the last training forward in op->save. */
static dpt_status_t bn_create(dpt_backend_t *be, dpt_op_t *op)
{
    (void)be;
    op->save = dpt_calloc(2 * (size_t)op->d.in[0].c * sizeof(float));
    return op->save ? DPT_OK : nomem();
}

static dpt_status_t bn_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_op_desc_t *d = &op->d;
    const dpt_tensor_t *x = a->x[0];
    int N = x->n, C = x->c, H = x->h, W = x->w;
    const float *g = a->w, *b = a->w + C;
    float *rm = a->buf, *rv = a->buf + C;
    if (!a->training) {
        dpt__ref_bn_fwd_eval_f32(x->data, g, b, rm, rv, a->y->data, N, C, H * W, d->bn_eps,
                                 d->fuse_relu);
        return DPT_OK;
    }
    float *mean = op->save, *var = op->save + C;
    dpt__ref_bn_fwd_train_f32(x->data, g, b, a->y->data, mean, var, N, C, H * W, d->bn_eps,
                              d->fuse_relu);
    double m = d->bn_momentum, M = (double)N * H * W;
    for (int c = 0; c < C; c++) {
        rm[c] = (float)((1 - m) * rm[c] + m * mean[c]);
        rv[c] = (float)((1 - m) * rv[c] + m * var[c] * (M > 1 ? M / (M - 1) : 1.0));
    }
    return DPT_OK;
}

static dpt_status_t bn_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_op_desc_t *d = &op->d;
    const dpt_tensor_t *x = a->x[0];
    int C = x->c;
    dpt__ref_bn_bwd_f32(x->data, a->w, op->save, op->save + C, a->y->data,
                        a->dy ? a->dy->data : NULL, a->dx[0] ? a->dx[0]->data : NULL, a->dw,
                        a->dw + C, x->n, C, x->h * x->w, d->bn_eps, d->fuse_relu);
    return DPT_OK;
}

static dpt_status_t relu_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    (void)op;
    dpt__ref_relu_fwd_f32(a->x[0]->data, a->y->data, (long)dpt_tensor_count(a->x[0]));
    return DPT_OK;
}

static dpt_status_t relu_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    (void)op;
    if (a->dx[0])
        dpt__ref_relu_bwd_f32(a->y->data, a->dy ? a->dy->data : NULL, a->dx[0]->data,
                              (long)dpt_tensor_count(a->x[0]));
    return DPT_OK;
}

static dpt_status_t celu_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    dpt__ref_celu_fwd_f32(a->x[0]->data, a->y->data, (long)dpt_tensor_count(a->x[0]),
                          op->d.alpha);
    return DPT_OK;
}

static dpt_status_t celu_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    if (a->dx[0])
        dpt__ref_celu_bwd_f32(a->x[0]->data, a->dy ? a->dy->data : NULL, a->dx[0]->data,
                              (long)dpt_tensor_count(a->x[0]), op->d.alpha);
    return DPT_OK;
}

/* SiLU, GELU (erf or tanh form), sigmoid; sigmoid's backward reads y, the others x. */
static dpt_status_t act_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const float *x = a->x[0]->data;
    float *y = a->y->data;
    long cnt = (long)dpt_tensor_count(a->x[0]);
    if (op->d.kind == DPT_OP_SILU)
        dpt__ref_silu_fwd_f32(x, y, cnt);
    else if (op->d.kind == DPT_OP_GELU)
        dpt__ref_gelu_fwd_f32(x, y, cnt, op->d.gelu_tanh);
    else
        dpt__ref_sigmoid_fwd_f32(x, y, cnt);
    return DPT_OK;
}

static dpt_status_t act_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    if (!a->dx[0])
        return DPT_OK;
    const float *x = a->x[0]->data, *dy = a->dy ? a->dy->data : NULL;
    float *dx = a->dx[0]->data;
    long cnt = (long)dpt_tensor_count(a->x[0]);
    if (op->d.kind == DPT_OP_SILU)
        dpt__ref_silu_bwd_f32(x, dy, dx, cnt);
    else if (op->d.kind == DPT_OP_GELU)
        dpt__ref_gelu_bwd_f32(x, dy, dx, cnt, op->d.gelu_tanh);
    else
        dpt__ref_sigmoid_bwd_f32(a->y->data, dy, dx, cnt);
    return DPT_OK;
}

static dpt_status_t scale_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const float *x = a->x[0]->data;
    float *y = a->y->data;
    long cnt = (long)dpt_tensor_count(a->x[0]);
    for (long i = 0; i < cnt; i++)
        y[i] = op->d.alpha * x[i];
    return DPT_OK;
}

static dpt_status_t scale_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    float *dx = a->dx[0] ? a->dx[0]->data : NULL;
    const float *dy = a->dy ? a->dy->data : NULL;
    long cnt = (long)dpt_tensor_count(a->x[0]);
    if (dx)
        for (long i = 0; i < cnt; i++)
            dx[i] = op->d.alpha * dy[i];
    return DPT_OK;
}

/* MAXPOOL keeps the argmax of each output (from forward, for backward) in op->argmax. */
static dpt_status_t maxpool_create(dpt_backend_t *be, dpt_op_t *op)
{
    (void)be;
    op->argmax = dpt_calloc(dpt_tensor_count(&op->info.out) * sizeof(int32_t));
    return op->argmax ? DPT_OK : nomem();
}

static dpt_status_t maxpool_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_op_desc_t *d = &op->d;
    const dpt_tensor_t *x = a->x[0], *o = &op->info.out;
    dpt__ref_maxpool_fwd_f32(x->data, a->y->data, op->argmax, x->n, x->c, x->h, x->w, d->pool_k,
                             d->pool_stride, d->pool_pad, o->h, o->w);
    return DPT_OK;
}

static dpt_status_t maxpool_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *x = a->x[0], *o = &op->info.out;
    if (a->dx[0])
        dpt__ref_maxpool_bwd_f32(op->argmax, a->dy ? a->dy->data : NULL, a->dx[0]->data, x->n,
                                 x->c, x->h, x->w, o->h, o->w);
    return DPT_OK;
}

static dpt_status_t gap_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    (void)op;
    const dpt_tensor_t *x = a->x[0];
    dpt__ref_gap_fwd_f32(x->data, a->y->data, x->n, x->c, x->h * x->w);
    return DPT_OK;
}

static dpt_status_t gap_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    (void)op;
    const dpt_tensor_t *x = a->x[0];
    if (a->dx[0])
        dpt__ref_gap_bwd_f32(a->dy ? a->dy->data : NULL, a->dx[0]->data, x->n, x->c, x->h * x->w);
    return DPT_OK;
}

static dpt_status_t fc_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_op_desc_t *d = &op->d;
    const dpt_tensor_t *x = a->x[0];
    dpt__ref_fc_fwd_f32(x->data, a->w, d->has_bias ? a->w + op->info.n_weights : NULL, a->y->data,
                        x->n, x->c * x->h * x->w, d->out_features);
    return DPT_OK;
}

static dpt_status_t fc_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_op_desc_t *d = &op->d;
    const dpt_tensor_t *x = a->x[0];
    dpt__ref_fc_bwd_f32(x->data, a->w, a->dy ? a->dy->data : NULL,
                        a->dx[0] ? a->dx[0]->data : NULL, a->dw,
                        d->has_bias ? a->dw + op->info.n_weights : NULL, x->n,
                        x->c * x->h * x->w, d->out_features);
    return DPT_OK;
}

static dpt_status_t add_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    (void)op;
    const float *x0 = a->x[0]->data, *x1 = a->x[1]->data;
    float *y = a->y->data;
    long cnt = (long)dpt_tensor_count(a->x[0]);
    for (long i = 0; i < cnt; i++)
        y[i] = x0[i] + x1[i];
    return DPT_OK;
}

static dpt_status_t add_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    (void)op;
    const float *dy = a->dy ? a->dy->data : NULL;
    size_t nbytes = dpt_tensor_count(a->x[0]) * sizeof(float);
    for (int i = 0; i < 2; i++)
        if (a->dx[i])
            memcpy(a->dx[i]->data, dy, nbytes);
    return DPT_OK;
}

static dpt_status_t flatten_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    (void)op;
    memcpy(a->y->data, a->x[0]->data, dpt_tensor_count(a->x[0]) * sizeof(float));
    return DPT_OK;
}

static dpt_status_t flatten_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    (void)op;
    const float *dy = a->dy ? a->dy->data : NULL;
    if (a->dx[0])
        memcpy(a->dx[0]->data, dy, dpt_tensor_count(a->x[0]) * sizeof(float));
    return DPT_OK;
}

/* XENT keeps the softmax probabilities (N*K) in op->save. */
static dpt_status_t xent_create(dpt_backend_t *be, dpt_op_t *op)
{
    (void)be;
    op->save = dpt_calloc(dpt_tensor_count(&op->d.in[0]) * sizeof(float));
    return op->save ? DPT_OK : nomem();
}

static dpt_status_t xent_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *x = a->x[0];
    double l = dpt__ref_xent_fwd_f32(x->data, a->labels, op->save, x->n, x->c, a->n_valid,
                                     op->d.label_smoothing, a->correct);
    if (a->loss)
        *a->loss = (float)l;
    memcpy(a->y->data, op->save, dpt_tensor_count(x) * sizeof(float));   /* y = probabilities */
    return DPT_OK;
}

static dpt_status_t xent_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *x = a->x[0];
    if (a->dx[0])
        dpt__ref_xent_bwd_f32(op->save, a->labels, a->dx[0]->data, x->n, x->c, a->n_valid,
                              op->d.label_smoothing);
    return DPT_OK;
}

/* ---- the op table and dispatch ---------------------------------------------------------- */

static const dpt__op_impl_t ref_ops[DPT_OP_COUNT_] = {
    [DPT_OP_CONV2D] = {NULL, conv_forward, conv_backward},
    [DPT_OP_BATCHNORM] = {bn_create, bn_forward, bn_backward},
    [DPT_OP_RELU] = {NULL, relu_forward, relu_backward},
    [DPT_OP_CELU] = {NULL, celu_forward, celu_backward},
    [DPT_OP_MAXPOOL] = {maxpool_create, maxpool_forward, maxpool_backward},
    [DPT_OP_GAP] = {NULL, gap_forward, gap_backward},
    [DPT_OP_FC] = {NULL, fc_forward, fc_backward},
    [DPT_OP_ADD] = {NULL, add_forward, add_backward},
    [DPT_OP_FLATTEN] = {NULL, flatten_forward, flatten_backward},
    [DPT_OP_SCALE] = {NULL, scale_forward, scale_backward},
    [DPT_OP_XENT] = {xent_create, xent_forward, xent_backward},
    [DPT_OP_SILU] = {NULL, act_forward, act_backward},
    [DPT_OP_GELU] = {NULL, act_forward, act_backward},
    [DPT_OP_SIGMOID] = {NULL, act_forward, act_backward},
    [DPT_OP_LAYERNORM] = {dpt__ref_layernorm_create, dpt__ref_layernorm_forward,
                          dpt__ref_layernorm_backward},
    [DPT_OP_LINEAR] = {NULL, dpt__ref_linear_forward, dpt__ref_linear_backward},
    [DPT_OP_ATTENTION] = {dpt__ref_attention_create, dpt__ref_attention_forward,
                          dpt__ref_attention_backward},
    [DPT_OP_TOKENS] = {NULL, dpt__ref_tokens_forward, dpt__ref_tokens_backward},
    [DPT_OP_TOKEN_SELECT] = {NULL, dpt__ref_token_select_forward, dpt__ref_token_select_backward},
    [DPT_OP_MUL] = {NULL, dpt__ref_mul_forward, dpt__ref_mul_backward},
    [DPT_OP_DROPOUT] = {NULL, dpt__ref_drop_forward, dpt__ref_drop_backward},
    [DPT_OP_DROP_PATH] = {NULL, dpt__ref_drop_forward, dpt__ref_drop_backward},
};

static void ref_op_destroy(dpt_op_t *op)
{
    if (!op)
        return;
    dpt_free(op->save);
    dpt_free(op->argmax);
    dpt_free(op);
}

static dpt_status_t ref_op_create(dpt_backend_t *be, const dpt_op_desc_t *d, dpt_op_t **out,
                                  dpt_op_info_t *info)
{
    for (int i = 0; i < dpt_op_n_inputs(d->kind); i++)
        if (d->in[i].layout != DPT_LAYOUT_NCHW)
            return dpt_error_set(DPT_ERR_UNSUPPORTED, "ref backend: %s input must be plain NCHW",
                                 dpt_op_kind_name(d->kind));
    DPT_CHECK(ref_op_shape(d, info));
    const dpt__op_impl_t *row = dpt__op_row(ref_ops, d->kind);
    if (!row)
        return dpt__op_unsupported("ref", d->kind);
    snprintf(info->impl, sizeof info->impl, "ref");
    dpt_op_t *op = dpt_calloc(sizeof *op);
    if (!op)
        return nomem();
    op->d = *d;
    op->info = *info;
    dpt_status_t st = DPT_OK;
    if (row->create)
        DPT_CHECK_GOTO(row->create(be, op), st, fail);
    *out = op;
    return DPT_OK;
fail:
    ref_op_destroy(op);
    return st;
}

static dpt_status_t ref_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt__op_impl_t *row = dpt__op_row(ref_ops, op->d.kind);
    return row ? row->forward(op, a) : dpt__op_unsupported("ref", op->d.kind);
}

static dpt_status_t ref_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt__op_impl_t *row = dpt__op_row(ref_ops, op->d.kind);
    return row && row->backward ? row->backward(op, a)
                                : dpt__op_unsupported("ref", op->d.kind);
}

static void *ref_alloc(dpt_backend_t *be, size_t nbytes)
{
    (void)be;
    return dpt_calloc(nbytes);
}

static void ref_free(dpt_backend_t *be, void *p)
{
    (void)be;
    dpt_free(p);
}

static dpt_status_t ref_import(dpt_backend_t *be, const float *src, dpt_tensor_t *dst)
{
    (void)be;
    if (dst->layout != DPT_LAYOUT_NCHW)
        return dpt_error_set(DPT_ERR_UNSUPPORTED, "ref backend: tensor layout %d", dst->layout);
    memcpy(dst->data, src, dpt_tensor_count(dst) * sizeof(float));
    return DPT_OK;
}

static dpt_status_t ref_export(dpt_backend_t *be, const dpt_tensor_t *src, float *dst)
{
    (void)be;
    if (src->layout != DPT_LAYOUT_NCHW)
        return dpt_error_set(DPT_ERR_UNSUPPORTED, "ref backend: tensor layout %d", src->layout);
    memcpy(dst, src->data, dpt_tensor_count(src) * sizeof(float));
    return DPT_OK;
}

const dpt_backend_ops_t dpt_backend_ref = {
    .name = "ref",
    .create = ref_create,
    .destroy = ref_destroy,
    .op_create = ref_op_create,
    .op_destroy = ref_op_destroy,
    .forward = ref_forward,
    .backward = ref_backward,
    .alloc = ref_alloc,
    .free = ref_free,
    .import_nchw = ref_import,
    .export_nchw = ref_export,
};

/* Exposed so other backends share one definition of op shapes and validation. */
dpt_status_t dpt__op_shape(const dpt_op_desc_t *d, dpt_op_info_t *info)
{
    return ref_op_shape(d, info);
}
