/* cpu_embed.c: the `cpu` backend's token embedding ops. Transformer tensors (N, D, 1, T) live
 * in nhwc here, (N, T, D) row-major: each token's features contiguous, the layout the matrix
 * products of linear and attention want. `tokens` turns a feature map in any layout (a patch
 * embedding convolution's blocked output) into that: reorder to nhwc (skipped when it already
 * is), then a copy that makes room for the class token and adds the position embedding.
 * `token_select` takes the class token's features into a plain (N, D, 1, 1) for the head. */
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "dptrain/alloc.h"

dpt_status_t dpt__cpu_nhwc_in(dpt_backend_t *be, dpt_op_t *op)
{
    const dpt_tensor_t *x = &op->d.in[0];
    dnnl_memory_desc_t nhwc = dpt__cpu_plain_md(x->n, x->c, x->h, x->w, dnnl_nhwc);
    if (dnnl_memory_desc_equal(&op->src_md, &nhwc))
        return DPT_OK;
    DPT_CHECK(dpt__cpu_make_reorder(be, &op->src_md, &nhwc, &op->to_nhwc));
    DPT_CHECK(dpt__cpu_make_reorder(be, &nhwc, &op->src_md, &op->from_nhwc));
    DPT_CHECK(dpt__cpu_alloc_for(&nhwc, &op->x_nhwc));
    return dpt__cpu_alloc_for(&nhwc, &op->dx_nhwc);
}

dpt_status_t dpt__cpu_tokens_create(dpt_backend_t *be, dpt_op_t *op)
{
    DPT_CHECK(dpt__cpu_nhwc_in(be, op));
    const dpt_tensor_t *o = &op->info.out;
    if (op->d.kind == DPT_OP_TOKEN_SELECT)   /* (N, D, 1, 1): plain */
        return DPT_OK;
    if (op->d.pos_embed) {
        op->pos_tc = dpt_malloc((size_t)o->c * o->w * sizeof(float));
        if (!op->pos_tc)
            return dpt_error_set(DPT_ERR_NOMEM, "tokens: out of memory");
    }
    dnnl_memory_desc_t out = dpt__cpu_plain_md(o->n, o->c, 1, o->w, dnnl_nhwc);
    return dpt__cpu_set_layout(be, &out, &op->info.out);
}

dpt_status_t dpt__cpu_nhwc_x(dpt_op_t *op, const dpt_op_args_t *a, const float **x)
{
    *x = a->x[0]->data;
    if (!op->x_nhwc)
        return DPT_OK;
    DPT_CHECK(dpt__cpu_run_reorder(op->be, &op->to_nhwc, a->x[0]->data, op->x_nhwc));
    *x = op->x_nhwc;
    return DPT_OK;
}

float *dpt__cpu_nhwc_dx(dpt_op_t *op, const dpt_op_args_t *a)
{
    if (!a->dx[0])
        return NULL;
    return op->dx_nhwc ? op->dx_nhwc : a->dx[0]->data;
}

dpt_status_t dpt__cpu_nhwc_dx_done(dpt_op_t *op, const dpt_op_args_t *a)
{
    return op->dx_nhwc && a->dx[0]
               ? dpt__cpu_run_reorder(op->be, &op->from_nhwc, op->dx_nhwc, a->dx[0]->data)
               : DPT_OK;
}

dpt_status_t dpt__cpu_tokens_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const float *x;
    DPT_CHECK(dpt__cpu_nhwc_x(op, a, &x));
    const int N = op->d.in[0].n, C = op->d.in[0].c, P = op->d.in[0].h * op->d.in[0].w;
    const int cls = op->d.cls_token ? 1 : 0, T = P + cls;
    const float *ct = cls ? a->w : NULL, *pos = op->d.pos_embed ? a->w + (cls ? C : 0) : NULL;
    if (pos)   /* (C, T) as stored -> (T, C), the order the loop below reads */
        for (int c = 0; c < C; c++)
            for (int t = 0; t < T; t++)
                op->pos_tc[(long)t * C + c] = pos[(long)c * T + t];
    float *y = a->y->data;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int t = 0; t < T; t++) {
            float *yr = y + ((long)n * T + t) * C;
            const float *src = t < cls ? ct : x + ((long)n * P + t - cls) * C;
            if (pos) {
                const float *pr = op->pos_tc + (long)t * C;
                for (int c = 0; c < C; c++)
                    yr[c] = src[c] + pr[c];
            } else {
                memcpy(yr, src, (size_t)C * sizeof(float));
            }
        }
    return DPT_OK;
}

dpt_status_t dpt__cpu_tokens_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const int N = op->d.in[0].n, C = op->d.in[0].c, P = op->d.in[0].h * op->d.in[0].w;
    const int cls = op->d.cls_token ? 1 : 0, T = P + cls;
    const float *dy = a->dy->data;
    if (cls || op->d.pos_embed) {   /* sums over the batch, in sample order */
        float *dcls = cls ? a->dw : NULL, *dpos = op->d.pos_embed ? a->dw + (cls ? C : 0) : NULL;
#pragma omp parallel for schedule(static)
        for (int c = 0; c < C; c++) {
            if (dcls) {
                float s = 0;
                for (int n = 0; n < N; n++)
                    s += dy[(long)n * T * C + c];
                dcls[c] = s;
            }
            if (dpos)
                for (int t = 0; t < T; t++) {
                    float s = 0;
                    for (int n = 0; n < N; n++)
                        s += dy[((long)n * T + t) * C + c];
                    dpos[(long)c * T + t] = s;
                }
        }
    }
    if (!a->dx[0])
        return DPT_OK;
    float *dx = dpt__cpu_nhwc_dx(op, a);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        memcpy(dx + (long)n * P * C, dy + ((long)n * T + cls) * C, (size_t)P * C * sizeof(float));
    return dpt__cpu_nhwc_dx_done(op, a);
}

dpt_status_t dpt__cpu_token_select_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const float *x;
    DPT_CHECK(dpt__cpu_nhwc_x(op, a, &x));
    const int N = op->d.in[0].n, C = op->d.in[0].c, T = op->d.in[0].w;
    for (int n = 0; n < N; n++)
        memcpy(a->y->data + (long)n * C, x + (long)n * T * C, (size_t)C * sizeof(float));
    return DPT_OK;
}

dpt_status_t dpt__cpu_token_select_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    if (!a->dx[0])
        return DPT_OK;
    const int N = op->d.in[0].n, C = op->d.in[0].c, T = op->d.in[0].w;
    float *dx = dpt__cpu_nhwc_dx(op, a);
    memset(dx, 0, (size_t)N * T * C * sizeof(float));
    for (int n = 0; n < N; n++)
        memcpy(dx + (long)n * T * C, a->dy->data + (long)n * C, (size_t)C * sizeof(float));
    return dpt__cpu_nhwc_dx_done(op, a);
}
