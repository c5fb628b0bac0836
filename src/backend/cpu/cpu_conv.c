/* cpu_conv.c: the convolution of the `cpu` backend (oneDNN): create (direct or winograd,
 * weights reordered to and from the formats the primitives want), forward and backward.
 * Weights stay OIHW in the arenas; when a primitive wants blocked weights the op keeps a private
 * blocked copy (reordered each forward) and reorders diff weights back. */
#include <stdio.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "dptrain/alloc.h"

/* Can oneDNN build forward, backward-data and backward-weights of this convolution with `alg`? */
static int conv_alg_works(dpt_backend_t *be, const dpt_op_desc_t *d, const dnnl_memory_desc_t *src,
                          const dnnl_memory_desc_t *w_any, const dnnl_memory_desc_t *bias,
                          const dnnl_memory_desc_t *dst, dnnl_alg_kind_t alg)
{
    dnnl_dims_t strides = {d->stride, d->stride}, pad = {d->pad, d->pad};
    dnnl_convolution_desc_t cd, bd, wd;
    dnnl_primitive_desc_t fpd = NULL, bpd = NULL, wpd = NULL;
    int ok = dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, alg, src, w_any, bias,
                                                dst, strides, pad, pad) == dnnl_success
             && dnnl_primitive_desc_create(&fpd, &cd, NULL, be->engine, NULL) == dnnl_success;
    if (ok) {
        dnnl_memory_desc_t dmd = *dpt__cpu_query(fpd, dnnl_query_dst_md);
        ok = dnnl_convolution_backward_data_desc_init(&bd, alg, src, w_any, &dmd, strides, pad,
                                                      pad) == dnnl_success
             && dnnl_primitive_desc_create(&bpd, &bd, NULL, be->engine, fpd) == dnnl_success
             && dnnl_convolution_backward_weights_desc_init(&wd, alg, src, w_any, bias, &dmd,
                                                            strides, pad, pad) == dnnl_success
             && dnnl_primitive_desc_create(&wpd, &wd, NULL, be->engine, fpd) == dnnl_success;
    }
    dpt__cpu_pds_destroy(fpd, bpd, wpd);
    return ok;
}

/* oneDNN 2.6 without AVX-512 has no JIT backward-weights kernel for a plain 1-channel input with
 * a blocked diff_dst and falls back to "ref:any" (about 40x slower than the whole rest of
 * fmnist-cnn's step). When it picks a reference kernel on a plain input, try again with a plain
 * diff_dst (a gemm kernel) and keep that, reordering diff_dst at every backward. */
static dpt_status_t conv_bwd_w_plain(dpt_backend_t *be, dpt_op_t *op,
                                     const dnnl_convolution_desc_t *wd_blk,
                                     const_dnnl_primitive_desc_t fpd, dnnl_primitive_desc_t *wpd)
{
    const char *name = NULL;
    const dpt_tensor_t *o = &op->info.out;
    dnnl_memory_desc_t src_plain = dpt__cpu_plain_md(op->d.in[0].n, op->d.in[0].c, op->d.in[0].h,
                                                     op->d.in[0].w, dnnl_nchw);
    dnnl_memory_desc_t dplain = dpt__cpu_plain_md(o->n, o->c, o->h, o->w, dnnl_nchw);
    if (dnnl_primitive_desc_query(*wpd, dnnl_query_impl_info_str, 0, &name) != dnnl_success
        || !name || strncmp(name, "ref", 3) || !dnnl_memory_desc_equal(&op->src_md, &src_plain)
        || dnnl_memory_desc_equal(&op->dst_md, &dplain))
        return DPT_OK;
    dnnl_convolution_desc_t wd = *wd_blk;
    wd.diff_dst_desc = dplain;
    prim_t pr = {0};
    dnnl_primitive_desc_t pd = NULL;
    if (dpt__cpu_make_prim(be, &wd, fpd, &pr, &pd) != DPT_OK) {
        dpt_error_clear();
        return DPT_OK;   /* keep the reference kernel */
    }
    const char *name2 = NULL;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name2);
    if (!name2 || !strncmp(name2, "ref", 3)) {
        dpt__cpu_prim_fini(&pr);
        dnnl_primitive_desc_destroy(pd);
        return DPT_OK;
    }
    dpt__cpu_prim_fini(&op->bwd_w);
    dnnl_primitive_desc_destroy(*wpd);
    op->bwd_w = pr;
    *wpd = pd;
    DPT_CHECK(dpt__cpu_make_reorder(be, &op->dst_md, &dplain, &op->ddst_to_plain));
    DPT_CHECK(dpt__cpu_alloc_for(&dplain, &op->ddst_plain));
    DPT_CHECK(dpt__cpu_mem(be, &dplain, &op->m_ddst_w));
    return DPT_OK;
}

dpt_status_t dpt__cpu_conv_create(dpt_backend_t *be, dpt_op_t *op)
{
    const dpt_op_desc_t *d = &op->d;
    const dpt_tensor_t *o = &op->info.out;
    /* Grouped: oneDNN's 5-D (G, O/G, I/G, KH, KW) goihw weights are the same bytes as the
     * arena's (O, I/G, KH, KW). */
    const int g = dpt_conv_groups(d);
    dnnl_dims_t wdims = {d->out_c, d->in[0].c, d->kh, d->kw}, bdims = {d->out_c};
    dnnl_dims_t gdims = {g, d->out_c / g, d->in[0].c / g, d->kh, d->kw};
    dnnl_dims_t strides = {d->stride, d->stride}, pad = {d->pad, d->pad};
    dnnl_memory_desc_t w_user, w_any, b_md, dst_md;
    if (g > 1) {
        dnnl_memory_desc_init_by_tag(&w_user, 5, gdims, dnnl_f32, dnnl_goihw);
        dnnl_memory_desc_init_by_tag(&w_any, 5, gdims, dnnl_f32, dnnl_format_tag_any);
    } else {
        dnnl_memory_desc_init_by_tag(&w_user, 4, wdims, dnnl_f32, dnnl_oihw);
        dnnl_memory_desc_init_by_tag(&w_any, 4, wdims, dnnl_f32, dnnl_format_tag_any);
    }
    dnnl_memory_desc_init_by_tag(&b_md, 1, bdims, dnnl_f32, dnnl_x);
    dst_md = dpt__cpu_plain_md(o->n, o->c, o->h, o->w,
                               be->blocked ? dnnl_format_tag_any : dnnl_nchw);
    const dnnl_memory_desc_t *bias = d->has_bias ? &b_md : NULL;
    dnnl_alg_kind_t alg = dnnl_convolution_direct;
    if (be->winograd && d->kh == 3 && d->kw == 3 && d->stride == 1 && g == 1
        && conv_alg_works(be, d, &op->src_md, &w_any, bias, &dst_md, dnnl_convolution_winograd))
        alg = dnnl_convolution_winograd;
    op->conv_alg = alg;

    dnnl_convolution_desc_t cd;
    DN(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, alg,
                                          &op->src_md, &w_any, bias, &dst_md, strides, pad, pad),
       "convolution_forward_desc_init");
    dnnl_primitive_desc_t fpd;
    DPT_CHECK(dpt__cpu_make_prim(be, &cd, NULL, &op->fwd, &fpd));
    op->dst_md = *dpt__cpu_query(fpd, dnnl_query_dst_md);
    dpt__cpu_set_impl(fpd, &op->info);
    const dnnl_memory_desc_t wf = *dpt__cpu_query(fpd, dnnl_query_weights_md);
    dpt_status_t st = DPT_OK;

    /* backward data: same src/dst layouts, weights in whatever format it wants */
    dnnl_convolution_desc_t bd;
    dnnl_primitive_desc_t bpd = NULL, wpd = NULL;
    if (dnnl_convolution_backward_data_desc_init(&bd, alg, &op->src_md,
                                                 &w_any, &op->dst_md, strides, pad, pad)
        != dnnl_success) {
        st = dpt_error_set(DPT_ERR_DNNL, "oneDNN: convolution_backward_data_desc_init failed");
        goto done;
    }
    DPT_CHECK_GOTO(dpt__cpu_make_prim(be, &bd, fpd, &op->bwd_data, &bpd), st, done);
    dnnl_memory_desc_t wb = *dpt__cpu_query(bpd, dnnl_query_weights_md);

    dnnl_convolution_desc_t wd;
    if (dnnl_convolution_backward_weights_desc_init(&wd, alg, &op->src_md,
                                                    &w_any, bias, &op->dst_md, strides, pad, pad)
        != dnnl_success) {
        st = dpt_error_set(DPT_ERR_DNNL, "oneDNN: convolution_backward_weights_desc_init failed");
        goto done;
    }
    DPT_CHECK_GOTO(dpt__cpu_make_prim(be, &wd, fpd, &op->bwd_w, &wpd), st, done);
    DPT_CHECK_GOTO(conv_bwd_w_plain(be, op, &wd, fpd, &wpd), st, done);
    const char *wimpl = NULL;
    if (dnnl_primitive_desc_query(wpd, dnnl_query_impl_info_str, 0, &wimpl) == dnnl_success
        && dpt__cpu_dw_bwd_w_wanted(op, wimpl)) {
        op->dw_own = 1;
        size_t len = strlen(op->info.impl);
        snprintf(op->info.impl + len, sizeof op->info.impl - len, "+dw_bwd_w:c");
    }
    dnnl_memory_desc_t dwf = *dpt__cpu_query(wpd, dnnl_query_diff_weights_md);

    DPT_CHECK_GOTO(dpt__cpu_mem(be, &op->src_md, &op->m_src), st, done);
    DPT_CHECK_GOTO(dpt__cpu_mem(be, &op->dst_md, &op->m_dst), st, done);
    DPT_CHECK_GOTO(dpt__cpu_mem(be, &op->src_md, &op->m_dsrc), st, done);
    DPT_CHECK_GOTO(dpt__cpu_mem(be, &op->dst_md, &op->m_ddst), st, done);
    DPT_CHECK_GOTO(dpt__cpu_mem(be, &wf, &op->m_w), st, done);
    DPT_CHECK_GOTO(dpt__cpu_mem(be, &dwf, &op->m_dw), st, done);
    if (d->has_bias) {
        DPT_CHECK_GOTO(dpt__cpu_mem(be, &b_md, &op->m_b), st, done);
        DPT_CHECK_GOTO(dpt__cpu_mem(be, &b_md, &op->m_db), st, done);
    }
    if (!dnnl_memory_desc_equal(&wf, &w_user)) {
        DPT_CHECK_GOTO(dpt__cpu_make_reorder(be, &w_user, &wf, &op->w_to_fwd), st, done);
        DPT_CHECK_GOTO(dpt__cpu_alloc_for(&wf, &op->w_fwd), st, done);
    }
    if (!dnnl_memory_desc_equal(&wb, &wf)) {
        /* backward data wants another weights format than forward: its own copy */
        DPT_CHECK_GOTO(dpt__cpu_make_reorder(be, &w_user, &wb, &op->w_to_bwd), st, done);
        DPT_CHECK_GOTO(dpt__cpu_alloc_for(&wb, &op->w_bwd), st, done);
        DPT_CHECK_GOTO(dpt__cpu_mem(be, &wb, &op->m_wb), st, done);
    }
    if (!dnnl_memory_desc_equal(&dwf, &w_user)) {
        DPT_CHECK_GOTO(dpt__cpu_make_reorder(be, &dwf, &w_user, &op->dw_to_user), st, done);
        DPT_CHECK_GOTO(dpt__cpu_alloc_for(&dwf, &op->dw_blk), st, done);
    }
    st = dpt__cpu_set_layout(be, &op->dst_md, &op->info.out);
done:
    dpt__cpu_pds_destroy(fpd, bpd, wpd);
    return st;
}

dpt_status_t dpt__cpu_conv_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    dpt_backend_t *be = op->be;
    const float *w = a->w;
    if (op->w_fwd) {
        DPT_CHECK(dpt__cpu_run_reorder(be, &op->w_to_fwd, a->w, op->w_fwd));
        w = op->w_fwd;
    }
    arg_t args[] = {{DNNL_ARG_SRC, op->m_src, a->x[0]->data},
                    {DNNL_ARG_WEIGHTS, op->m_w, w},
                    {DNNL_ARG_BIAS, op->m_b, a->w + op->info.n_weights},
                    {DNNL_ARG_DST, op->m_dst, a->y->data}};
    return dpt__cpu_run(be, &op->fwd, args, 4);
}

dpt_status_t dpt__cpu_conv_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    dpt_backend_t *be = op->be;
    if (a->dx[0]) {
        const float *w = a->w;
        dnnl_memory_t wm = op->m_w;
        if (op->w_bwd) {
            DPT_CHECK(dpt__cpu_run_reorder(be, &op->w_to_bwd, a->w, op->w_bwd));
            w = op->w_bwd;
            wm = op->m_wb;
        } else if (op->w_fwd) {
            DPT_CHECK(dpt__cpu_run_reorder(be, &op->w_to_fwd, a->w, op->w_fwd));
            w = op->w_fwd;
        }
        arg_t args[] = {{DNNL_ARG_DIFF_DST, op->m_ddst, a->dy->data},
                        {DNNL_ARG_WEIGHTS, wm, w},
                        {DNNL_ARG_DIFF_SRC, op->m_dsrc, a->dx[0]->data}};
        DPT_CHECK(dpt__cpu_run(be, &op->bwd_data, args, 3));
    }
    if (op->dw_own)
        return dpt__cpu_dw_bwd_w(op, a);
    float *dw = op->dw_blk ? op->dw_blk : a->dw;
    dnnl_memory_t ddm = op->m_ddst;
    void *ddst = a->dy->data;
    if (op->ddst_plain) {
        DPT_CHECK(dpt__cpu_run_reorder(be, &op->ddst_to_plain, a->dy->data, op->ddst_plain));
        ddm = op->m_ddst_w;
        ddst = op->ddst_plain;
    }
    arg_t args[] = {{DNNL_ARG_SRC, op->m_src, a->x[0]->data},
                    {DNNL_ARG_DIFF_DST, ddm, ddst},
                    {DNNL_ARG_DIFF_WEIGHTS, op->m_dw, dw},
                    {DNNL_ARG_DIFF_BIAS, op->m_db, a->dw + op->info.n_weights}};
    DPT_CHECK(dpt__cpu_run(be, &op->bwd_w, args, 4));
    if (op->dw_blk)
        DPT_CHECK(dpt__cpu_run_reorder(be, &op->dw_to_user, op->dw_blk, a->dw));
    return DPT_OK;
}
