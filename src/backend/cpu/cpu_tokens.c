/* cpu_tokens.c: the `cpu` backend's per-position transformer ops, layer norm (oneDNN
 * layer_normalization) and linear (OpenBLAS sgemm), rows of cpu_ops in cpu_dnnl.c (contracts in
 * dptrain/backend.h, shape rules in op_shape_tokens.c).
 *
 * Layout: both ops work on NHWC, which for transformer tokens (N, D, 1, T) is (N, T, D)
 * row-major: the channels of one position are contiguous, so the whole tensor is a plain
 * (M = N*H*W, C) matrix. Layer norm is then oneDNN's 2-D layer norm over its rows and linear is
 * one GEMM with the weight. An input in any other layout (plain NCHW from a CNN stem, oneDNN's
 * blocked layouts) is reordered to NHWC at forward into a per-op copy that backward reuses, and
 * the input gradient is computed in NHWC and reordered back to the input's layout (a gradient
 * always has its tensor's layout). The output is NHWC, registered as a layout of the backend, so
 * a chain of these ops (and the eltwise/add ops, which follow their input's layout) never
 * reorders.
 *
 * The reorders and copies are the ones every token op shares (dpt__cpu_nhwc_in, cpu_embed.c).
 * Why sgemm for linear and not oneDNN matmul / inner product: it is what fc uses (one OpenMP
 * team for the whole backend, dpt__cpu_par_sgemm), and the three products of linear are exactly
 * three row-major GEMMs on the (M, C) view with no layout negotiation.
 */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>

#include "backend/cpu/cpu_internal.h"
#include "dptrain/alloc.h"

/* Positions (n, h, w) of the input: the rows of the NHWC matrix view. */
static long rows_of(const dpt_op_t *op)
{
    const dpt_tensor_t *x = &op->d.in[0];
    return (long)x->n * x->h * x->w;
}

/* The reorders of a non-NHWC input (and of its gradient back), and the NHWC output layout of
 * out_c channels registered as info.out's layout. */
static dpt_status_t nhwc_io(dpt_backend_t *be, dpt_op_t *op, int out_c)
{
    const dpt_tensor_t *x = &op->d.in[0];
    DPT_CHECK(dpt__cpu_nhwc_in(be, op));
    op->dst_md = dpt__cpu_plain_md(x->n, out_c, x->h, x->w, dnnl_nhwc);
    return dpt__cpu_set_layout(be, &op->dst_md, &op->info.out);
}

/* Backward's input (forward's NHWC copy when there is one) and where dx goes in NHWC (the op's
 * copy when the input is not NHWC, else the caller's dx, NULL when not wanted). */
static void bwd_io(dpt_op_t *op, const dpt_op_args_t *a, const float **x, float **dx)
{
    *x = op->x_nhwc ? op->x_nhwc : a->x[0]->data;
    *dx = dpt__cpu_nhwc_dx(op, a);
}

/* ---- layer norm ------------------------------------------------------------------------- */

dpt_status_t dpt__cpu_layernorm_create(dpt_backend_t *be, dpt_op_t *op)
{
    const dpt_op_desc_t *d = &op->d;
    const int C = d->in[0].c;
    const long M = rows_of(op);
    DPT_CHECK(nhwc_io(be, op, C));
    dnnl_memory_desc_t data_md, stat_md, c_md;
    dnnl_dims_t ddims = {M, C}, sdims = {M}, cdims = {C};
    dnnl_memory_desc_init_by_tag(&data_md, 2, ddims, dnnl_f32, dnnl_ab);
    dnnl_memory_desc_init_by_tag(&stat_md, 1, sdims, dnnl_f32, dnnl_x);
    dnnl_memory_desc_init_by_tag(&c_md, 1, cdims, dnnl_f32, dnnl_x);
    /* separate scale and shift (not the older packed scaleshift): gamma and beta are the two
     * halves of the op's parameters, as in batch norm */
    const unsigned flags = dnnl_use_scale | dnnl_use_shift;
    dnnl_layer_normalization_desc_t fd, bd;
    DN(dnnl_layer_normalization_forward_desc_init(&fd, dnnl_forward_training, &data_md, &stat_md,
                                                  d->bn_eps, flags), "lnorm_forward_desc_init");
    dnnl_primitive_desc_t fpd, bpd = NULL;
    DPT_CHECK(dpt__cpu_make_prim(be, &fd, NULL, &op->fwd, &fpd));
    dpt__cpu_set_impl(fpd, &op->info);
    dpt_status_t st = DPT_OK;
    if (dnnl_layer_normalization_backward_desc_init(&bd, dnnl_backward, &data_md, &data_md,
                                                    &stat_md, d->bn_eps, flags) != dnnl_success) {
        st = dpt_error_set(DPT_ERR_DNNL, "oneDNN: lnorm_backward_desc_init failed");
        goto done;
    }
    DPT_CHECK_GOTO(dpt__cpu_make_prim(be, &bd, fpd, &op->bwd_data, &bpd), st, done);
    dnnl_memory_t *dm[] = {&op->m_src, &op->m_dst, &op->m_dsrc, &op->m_ddst};
    for (size_t i = 0; i < sizeof dm / sizeof dm[0]; i++)
        DPT_CHECK_GOTO(dpt__cpu_mem(be, &data_md, dm[i]), st, done);
    DPT_CHECK_GOTO(dpt__cpu_mem(be, &stat_md, &op->m_mean), st, done);
    DPT_CHECK_GOTO(dpt__cpu_mem(be, &stat_md, &op->m_var), st, done);
    dnnl_memory_t *cm[] = {&op->m_scale, &op->m_shift, &op->m_dscale, &op->m_dshift};
    for (size_t i = 0; i < sizeof cm / sizeof cm[0]; i++)
        DPT_CHECK_GOTO(dpt__cpu_mem(be, &c_md, cm[i]), st, done);
    /* the statistics of the last forward, for backward (M floats each) */
    DPT_CHECK_GOTO(dpt__cpu_alloc_for(&stat_md, &op->mean), st, done);
    DPT_CHECK_GOTO(dpt__cpu_alloc_for(&stat_md, &op->var), st, done);
done:
    dpt__cpu_pds_destroy(fpd, bpd, NULL);
    return st;
}

/* The statistics do not depend on training: one forward_training primitive for both modes, so
 * that backward always finds the statistics of the last forward. */
dpt_status_t dpt__cpu_layernorm_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const int C = op->d.in[0].c;
    const float *x;
    DPT_CHECK(dpt__cpu_nhwc_x(op, a, &x));
    arg_t args[] = {{DNNL_ARG_SRC, op->m_src, x},
                    {DNNL_ARG_MEAN, op->m_mean, op->mean},
                    {DNNL_ARG_VARIANCE, op->m_var, op->var},
                    {DNNL_ARG_SCALE, op->m_scale, a->w},
                    {DNNL_ARG_SHIFT, op->m_shift, a->w + C},
                    {DNNL_ARG_DST, op->m_dst, a->y->data}};
    return dpt__cpu_run(op->be, &op->fwd, args, 6);
}

/* dgamma, dbeta alone (oneDNN's backward always writes diff_src, and a caller that wants no dx
 * of an NHWC input gives it nowhere to write): a loop over the (M, C) rows. */
static void ln_param_grads(const dpt_op_t *op, const float *x, const float *dy, float *dg,
                           float *db)
{
    const int C = op->d.in[0].c;
    const long M = rows_of(op);
    for (int c = 0; c < C; c++)
        dg[c] = db[c] = 0;
    for (long p = 0; p < M; p++) {
        const float m = op->mean[p], r = 1.0f / sqrtf(op->var[p] + op->d.bn_eps);
        const float *xr = x + p * C, *gr = dy + p * C;
        for (int c = 0; c < C; c++) {
            dg[c] += gr[c] * (xr[c] - m) * r;
            db[c] += gr[c];
        }
    }
}

dpt_status_t dpt__cpu_layernorm_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const int C = op->d.in[0].c;
    if (!a->dw)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "cpu backend: layernorm backward needs dw");
    const float *x;
    float *dx;
    bwd_io(op, a, &x, &dx);
    if (!dx) {
        ln_param_grads(op, x, a->dy->data, a->dw, a->dw + C);
        return DPT_OK;
    }
    arg_t args[] = {{DNNL_ARG_SRC, op->m_src, x},
                    {DNNL_ARG_MEAN, op->m_mean, op->mean},
                    {DNNL_ARG_VARIANCE, op->m_var, op->var},
                    {DNNL_ARG_SCALE, op->m_scale, a->w},
                    {DNNL_ARG_SHIFT, op->m_shift, a->w + C},
                    {DNNL_ARG_DIFF_DST, op->m_ddst, a->dy->data},
                    {DNNL_ARG_DIFF_SRC, op->m_dsrc, dx},
                    {DNNL_ARG_DIFF_SCALE, op->m_dscale, a->dw},
                    {DNNL_ARG_DIFF_SHIFT, op->m_dshift, a->dw + C}};
    DPT_CHECK(dpt__cpu_run(op->be, &op->bwd_data, args, 9));
    return dpt__cpu_nhwc_dx_done(op, a);
}

/* ---- linear ----------------------------------------------------------------------------- */

dpt_status_t dpt__cpu_linear_create(dpt_backend_t *be, dpt_op_t *op)
{
    snprintf(op->info.impl, sizeof op->info.impl, "openblas:nhwc");
    return nhwc_io(be, op, op->d.out_features);
}

/* Y (M, OUT) = X (M, C) W^T + b on the NHWC views. */
dpt_status_t dpt__cpu_linear_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const int C = op->d.in[0].c, OUT = op->d.out_features;
    const long M = rows_of(op);
    const float *x;
    DPT_CHECK(dpt__cpu_nhwc_x(op, a, &x));
    float *y = a->y->data;
    dpt__cpu_par_sgemm(0, 1, (int)M, OUT, C, x, C, a->w, C, y, OUT);
    if (op->d.has_bias) {
        const float *b = a->w + op->info.n_weights;
#pragma omp parallel for schedule(static)
        for (long p = 0; p < M; p++)
            for (int o = 0; o < OUT; o++)
                y[p * OUT + o] += b[o];
    }
    return DPT_OK;
}

/* dW (OUT, C) = dY^T X; db = column sums of dY (M, OUT); dX (M, C) = dY W. */
dpt_status_t dpt__cpu_linear_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const int C = op->d.in[0].c, OUT = op->d.out_features;
    const long M = rows_of(op);
    const float *x, *dy = a->dy->data;
    float *dx;
    bwd_io(op, a, &x, &dx);
    if (a->dw) {
        dpt__cpu_par_sgemm(1, 0, OUT, C, (int)M, dy, OUT, x, C, a->dw, C);
        if (op->d.has_bias) {
            float *db = a->dw + op->info.n_weights;
            for (int o = 0; o < OUT; o++)
                db[o] = 0;
            for (long p = 0; p < M; p++)
                for (int o = 0; o < OUT; o++)
                    db[o] += dy[p * OUT + o];
        }
    }
    if (!a->dx[0])
        return DPT_OK;
    dpt__cpu_par_sgemm(0, 0, (int)M, C, OUT, dy, OUT, a->w, C, dx, C);
    return dpt__cpu_nhwc_dx_done(op, a);
}
