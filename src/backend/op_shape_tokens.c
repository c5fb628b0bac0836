/* op_shape_tokens.c: shapes, parameter counts and forward FLOPs of the transformer ops
 * (layernorm, linear, attention, tokens, token_select), the part of dpt__op_shape that every
 * backend shares for them (ref_backend.c has the CNN ops'). Tokens are (N, D, 1, T) tensors:
 * backend.h says why. */
#include "backend/internal.h"

dpt_status_t dpt__op_shape_tokens(const dpt_op_desc_t *d, dpt_op_info_t *info)
{
    const dpt_tensor_t *x = &d->in[0];
    const int n = x->n, c = x->c, h = x->h, w = x->w;
    const double pos = (double)h * w;
    switch (d->kind) {
    case DPT_OP_LAYERNORM:
        if (!(d->bn_eps > 0))
            return dpt_error_set(DPT_ERR_INVALID_ARG, "layernorm: eps %g must be > 0",
                                 (double)d->bn_eps);
        info->out = dpt_tensor_shape(n, c, h, w);
        info->n_params = 2 * (size_t)c;   /* gamma, beta: no weight decay */
        info->flops_fwd = 8.0 * n * c * pos;
        return DPT_OK;
    case DPT_OP_LINEAR:
        if (d->out_features <= 0)
            return dpt_error_set(DPT_ERR_INVALID_ARG, "linear: bad output size %d",
                                 d->out_features);
        info->out = dpt_tensor_shape(n, d->out_features, h, w);
        info->n_weights = (size_t)d->out_features * c;
        info->n_params = info->n_weights + (d->has_bias ? (size_t)d->out_features : 0);
        info->flops_fwd = 2.0 * n * pos * c * d->out_features;
        return DPT_OK;
    case DPT_OP_ATTENTION: {
        if (h != 1 || c % 3)
            return dpt_error_set(DPT_ERR_INVALID_ARG, "attention: needs fused q, k, v tokens "
                                 "(N, 3D, 1, T), got %dx%dx%dx%d", n, c, h, w);
        const int dm = c / 3;
        if (d->heads <= 0 || dm % d->heads)
            return dpt_error_set(DPT_ERR_INVALID_ARG, "attention: heads=%d must divide the "
                                 "embedding %d", d->heads, dm);
        info->out = dpt_tensor_shape(n, dm, 1, w);
        /* q k^T and p v: 2 T^2 D multiply-adds each; softmax ~ 3 per score */
        info->flops_fwd = 4.0 * n * (double)w * w * dm + 3.0 * n * d->heads * (double)w * w;
        return DPT_OK;
    }
    case DPT_OP_TOKENS: {
        const long t = (long)h * w + (d->cls_token ? 1 : 0);
        if (t > 1 << 20)
            return dpt_error_set(DPT_ERR_INVALID_ARG, "tokens: %ld tokens", t);
        info->out = dpt_tensor_shape(n, c, 1, (int)t);
        info->n_params = (d->cls_token ? (size_t)c : 0) + (d->pos_embed ? (size_t)c * t : 0);
        info->flops_fwd = (double)n * c * t;
        return DPT_OK;
    }
    case DPT_OP_TOKEN_SELECT:
        if (h != 1)
            return dpt_error_set(DPT_ERR_INVALID_ARG, "token_select: needs tokens (N, D, 1, T), "
                                 "got %dx%dx%dx%d", n, c, h, w);
        info->out = dpt_tensor_shape(n, c, 1, 1);
        return DPT_OK;
    default:
        return dpt_error_set(DPT_ERR_UNSUPPORTED, "unknown op kind %d", (int)d->kind);
    }
}
