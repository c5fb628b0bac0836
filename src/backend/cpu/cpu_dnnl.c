/* cpu_dnnl.c: the `cpu` backend: oneDNN (2.x C API) for convolution, batch norm and pooling,
 * OpenBLAS sgemm for fully connected layers, OpenMP loops for the elementwise ops.
 *
 * Layouts: with blocked_layout = 1 a convolution lets oneDNN pick its destination layout
 * (nChw16c on AVX-512) and every following BN / pooling / elementwise / add op is created on the
 * layout of its input, so activations stay blocked until fc or flatten reorders them to plain.
 * A tensor's `layout` is 0 (plain NCHW) or 1 + an index into the backend's table of memory
 * descriptors. Weights stay OIHW in the arenas; when a convolution wants blocked weights the op
 * keeps a private blocked copy (reordered each forward) and reorders diff weights back.
 * Everything (primitives, memory objects, reorders, workspaces) is created in op_create;
 * forward/backward only re-point memory handles and execute. All oneDNN calls live in this file.
 */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <oneapi/dnnl/dnnl.h>
#include <string.h>

#include "backend/internal.h"
#include "backend/ref/ref_kernels.h"
#include "dptrain/alloc.h"

#if DNNL_VERSION_MAJOR != 2
#error "cpu_dnnl.c is written against the oneDNN 2.x C API (Debian 12 ships 2.6)"
#endif

#define MAX_LAYOUTS 64

struct dpt_backend {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int blocked;
    int winograd;
    dnnl_memory_desc_t layouts[MAX_LAYOUTS];
    int n_layouts;
    void *scratch;          /* shared scratchpad (ops run one at a time on one stream) */
    size_t scratch_nbytes;
};

/* One oneDNN primitive with its scratchpad memory object. */
typedef struct prim {
    dnnl_primitive_t p;
    dnnl_memory_t scratch;
} prim_t;

/* A reorder between two descriptors, with its two memory objects. */
typedef struct reorder {
    dnnl_primitive_t p;
    dnnl_memory_t from, to;
} reorder_t;

struct dpt_op {
    dpt_backend_t *be;
    dpt_op_desc_t d;
    dpt_op_info_t info;
    dnnl_memory_desc_t src_md, dst_md;
    dnnl_alg_kind_t conv_alg;   /* direct or winograd */
    /* memory objects re-pointed at every call */
    dnnl_memory_t m_src, m_dst, m_dsrc, m_ddst, m_w, m_dw, m_b, m_db, m_ws, m_mean, m_var;
    dnnl_memory_t m_scale, m_shift, m_dscale, m_dshift;
    dnnl_memory_t m_wb;     /* conv weights in the backward-data format, when it differs */
    dnnl_memory_t m_ddst_w; /* conv: plain diff_dst for backward weights (ddst_plain) */
    prim_t fwd, fwd_inf, bwd_data, bwd_w;
    /* convolution weights in the primitive's format, when that is not OIHW */
    reorder_t w_to_fwd, w_to_bwd, dw_to_user;
    float *w_fwd, *w_bwd, *dw_blk;
    /* batch norm: saved batch statistics; pooling/BN-relu: workspace */
    float *mean, *var;
    void *ws;
    /* fc and flatten: plain copies of blocked inputs/gradients */
    reorder_t x_to_plain, plain_to_dx;
    float *x_plain, *dx_plain;
    /* conv backward weights on a plain input where oneDNN has no JIT kernel for a blocked
     * diff_dst (first layer, 1 channel, without AVX-512): plain diff_dst, gemm kernel */
    reorder_t ddst_to_plain;
    float *ddst_plain;
    float *prob;            /* xent */
};

static dpt_status_t dnnl_err(dnnl_status_t s, const char *what)
{
    return dpt_error_set(DPT_ERR_DNNL, "oneDNN: %s failed (status %d)", what, (int)s);
}

#define DN(call, what)                                   \
    do {                                                 \
        dnnl_status_t dn__s = (call);                    \
        if (dn__s != dnnl_success)                       \
            return dnnl_err(dn__s, what);                \
    } while (0)

static dnnl_memory_desc_t plain_md(int n, int c, int h, int w, dnnl_format_tag_t tag)
{
    dnnl_memory_desc_t md;
    dnnl_dims_t dims = {n, c, h, w};
    dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, tag);
    return md;
}

static dnnl_memory_desc_t tensor_md(const dpt_backend_t *be, const dpt_tensor_t *t)
{
    if (t->layout == DPT_LAYOUT_NCHW)
        return plain_md(t->n, t->c, t->h, t->w, dnnl_nchw);
    return be->layouts[t->layout - 1];
}

/* Register a descriptor as a tensor layout; fills out->layout and out->nbytes. */
static dpt_status_t set_layout(dpt_backend_t *be, const dnnl_memory_desc_t *md, dpt_tensor_t *out)
{
    dnnl_memory_desc_t plain = plain_md(out->n, out->c, out->h, out->w, dnnl_nchw);
    out->nbytes = dnnl_memory_desc_get_size(md);
    if (dnnl_memory_desc_equal(md, &plain)) {
        out->layout = DPT_LAYOUT_NCHW;
        return DPT_OK;
    }
    for (int i = 0; i < be->n_layouts; i++)
        if (dnnl_memory_desc_equal(md, &be->layouts[i])) {
            out->layout = i + 1;
            return DPT_OK;
        }
    if (be->n_layouts == MAX_LAYOUTS)
        return dpt_error_set(DPT_ERR_INTERNAL, "cpu backend: more than %d layouts", MAX_LAYOUTS);
    be->layouts[be->n_layouts++] = *md;
    out->layout = be->n_layouts;
    return DPT_OK;
}

static dpt_status_t mem(dpt_backend_t *be, const dnnl_memory_desc_t *md, dnnl_memory_t *out)
{
    DN(dnnl_memory_create(out, md, be->engine, DNNL_MEMORY_NONE), "memory_create");
    return DPT_OK;
}

static const dnnl_memory_desc_t *query(const_dnnl_primitive_desc_t pd, dnnl_query_t what)
{
    return dnnl_primitive_desc_query_md(pd, what, 0);
}

/* Create a primitive from an op descriptor with a user-managed scratchpad. `pd_out` (optional)
 * receives the primitive descriptor, which the caller then owns. */
static dpt_status_t make_prim(dpt_backend_t *be, const void *op_desc,
                              const_dnnl_primitive_desc_t hint, prim_t *pr,
                              dnnl_primitive_desc_t *pd_out)
{
    dnnl_primitive_attr_t attr;
    DN(dnnl_primitive_attr_create(&attr), "attr_create");
    dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    dnnl_primitive_desc_t pd;
    dnnl_status_t s = dnnl_primitive_desc_create(&pd, op_desc, attr, be->engine, hint);
    dnnl_primitive_attr_destroy(attr);
    if (s != dnnl_success)
        return dnnl_err(s, "primitive_desc_create");
    const dnnl_memory_desc_t *smd = query(pd, dnnl_query_scratchpad_md);
    size_t need = smd ? dnnl_memory_desc_get_size(smd) : 0;
    if (need > be->scratch_nbytes) {
        dpt_free(be->scratch);
        be->scratch = dpt_malloc(need);
        be->scratch_nbytes = be->scratch ? need : 0;
        if (!be->scratch)
            return dpt_error_set(DPT_ERR_NOMEM, "cpu backend: scratchpad of %zu bytes", need);
    }
    if (smd && need)
        DPT_CHECK(mem(be, smd, &pr->scratch));
    s = dnnl_primitive_create(&pr->p, pd);
    if (pd_out && s == dnnl_success)
        *pd_out = pd;
    else
        dnnl_primitive_desc_destroy(pd);
    if (s != dnnl_success)
        return dnnl_err(s, "primitive_create");
    return DPT_OK;
}

static dpt_status_t make_reorder(dpt_backend_t *be, const dnnl_memory_desc_t *from,
                                 const dnnl_memory_desc_t *to, reorder_t *r)
{
    dnnl_primitive_desc_t pd;
    DN(dnnl_reorder_primitive_desc_create(&pd, from, be->engine, to, be->engine, NULL),
       "reorder_primitive_desc_create");
    dnnl_status_t s = dnnl_primitive_create(&r->p, pd);
    dnnl_primitive_desc_destroy(pd);
    if (s != dnnl_success)
        return dnnl_err(s, "reorder primitive_create");
    DPT_CHECK(mem(be, from, &r->from));
    DPT_CHECK(mem(be, to, &r->to));
    return DPT_OK;
}

typedef struct arg {
    int arg;
    dnnl_memory_t m;
    const void *ptr;
} arg_t;

/* Point each memory at its buffer and run the primitive to completion. */
static dpt_status_t run(dpt_backend_t *be, const prim_t *pr, const arg_t *args, int n)
{
    dnnl_exec_arg_t ea[16];
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!args[i].m)
            continue;
        DN(dnnl_memory_set_data_handle(args[i].m, (void *)args[i].ptr), "set_data_handle");
        ea[k++] = (dnnl_exec_arg_t){args[i].arg, args[i].m};
    }
    if (pr->scratch) {
        DN(dnnl_memory_set_data_handle(pr->scratch, be->scratch), "set_data_handle");
        ea[k++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, pr->scratch};
    }
    DN(dnnl_primitive_execute(pr->p, be->stream, k, ea), "primitive_execute");
    DN(dnnl_stream_wait(be->stream), "stream_wait");
    return DPT_OK;
}

static dpt_status_t run_reorder(dpt_backend_t *be, const reorder_t *r, const void *from, void *to)
{
    prim_t pr = {.p = r->p};
    arg_t a[] = {{DNNL_ARG_FROM, r->from, from}, {DNNL_ARG_TO, r->to, to}};
    return run(be, &pr, a, 2);
}

/* ---- backend lifetime ------------------------------------------------------------------- */

static dpt_status_t cpu_create(const dpt_backend_config_t *cfg, dpt_backend_t **out)
{
    dpt_backend_t *be = dpt_calloc(sizeof *be);
    if (!be)
        return dpt_error_set(DPT_ERR_NOMEM, "cpu backend: out of memory");
    be->blocked = cfg->blocked_layout;
    be->winograd = cfg->conv_winograd;
    if (cfg->threads > 0)
        omp_set_num_threads(cfg->threads);
    openblas_set_num_threads(1);   /* par_sgemm splits the work over OpenMP threads */
    if (dnnl_engine_create(&be->engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&be->stream, be->engine, dnnl_stream_default_flags) != dnnl_success) {
        if (be->engine)
            dnnl_engine_destroy(be->engine);
        dpt_free(be);
        return dpt_error_set(DPT_ERR_DNNL, "oneDNN: cannot create the CPU engine");
    }
    *out = be;
    return DPT_OK;
}

static void cpu_destroy(dpt_backend_t *be)
{
    if (!be)
        return;
    dnnl_stream_destroy(be->stream);
    dnnl_engine_destroy(be->engine);
    dpt_free(be->scratch);
    dpt_free(be);
}

static void prim_fini(prim_t *p)
{
    if (p->p)
        dnnl_primitive_destroy(p->p);
    if (p->scratch)
        dnnl_memory_destroy(p->scratch);
}

static void reorder_fini(reorder_t *r)
{
    if (r->p)
        dnnl_primitive_destroy(r->p);
    if (r->from)
        dnnl_memory_destroy(r->from);
    if (r->to)
        dnnl_memory_destroy(r->to);
}

static void cpu_op_destroy(dpt_op_t *op)
{
    if (!op)
        return;
    dnnl_memory_t *mems[] = {&op->m_src, &op->m_dst, &op->m_dsrc, &op->m_ddst, &op->m_w,
                             &op->m_dw, &op->m_b, &op->m_db, &op->m_ws, &op->m_mean, &op->m_var,
                             &op->m_scale, &op->m_shift, &op->m_dscale, &op->m_dshift, &op->m_wb,
                             &op->m_ddst_w};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (*mems[i])
            dnnl_memory_destroy(*mems[i]);
    prim_fini(&op->fwd);
    prim_fini(&op->fwd_inf);
    prim_fini(&op->bwd_data);
    prim_fini(&op->bwd_w);
    reorder_fini(&op->w_to_fwd);
    reorder_fini(&op->w_to_bwd);
    reorder_fini(&op->dw_to_user);
    reorder_fini(&op->x_to_plain);
    reorder_fini(&op->plain_to_dx);
    reorder_fini(&op->ddst_to_plain);
    dpt_free(op->ddst_plain);
    dpt_free(op->w_fwd);
    dpt_free(op->w_bwd);
    dpt_free(op->dw_blk);
    dpt_free(op->mean);
    dpt_free(op->var);
    dpt_free(op->ws);
    dpt_free(op->x_plain);
    dpt_free(op->dx_plain);
    dpt_free(op->prob);
    dpt_free(op);
}

/* ---- op creation ------------------------------------------------------------------------ */

static dpt_status_t alloc_for(const dnnl_memory_desc_t *md, float **out)
{
    size_t n = dnnl_memory_desc_get_size(md);
    *out = dpt_calloc(n ? n : 64);
    return *out ? DPT_OK : dpt_error_set(DPT_ERR_NOMEM, "cpu backend: out of memory");
}

/* Record the implementation oneDNN picked ("jit:avx512_core", "jit_wino_4x3:avx512_core"). */
static void set_impl(const_dnnl_primitive_desc_t pd, dpt_op_info_t *info)
{
    const char *name = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name) == dnnl_success && name)
        snprintf(info->impl, sizeof info->impl, "%s", name);
}

/* Destroy the forward / backward-data / backward-weights descriptors that exist. */
static void pds_destroy(dnnl_primitive_desc_t f, dnnl_primitive_desc_t b, dnnl_primitive_desc_t w)
{
    dnnl_primitive_desc_t pds[3] = {f, b, w};
    for (int i = 0; i < 3; i++)
        if (pds[i])
            dnnl_primitive_desc_destroy(pds[i]);
}

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
        dnnl_memory_desc_t dmd = *query(fpd, dnnl_query_dst_md);
        ok = dnnl_convolution_backward_data_desc_init(&bd, alg, src, w_any, &dmd, strides, pad,
                                                      pad) == dnnl_success
             && dnnl_primitive_desc_create(&bpd, &bd, NULL, be->engine, fpd) == dnnl_success
             && dnnl_convolution_backward_weights_desc_init(&wd, alg, src, w_any, bias, &dmd,
                                                            strides, pad, pad) == dnnl_success
             && dnnl_primitive_desc_create(&wpd, &wd, NULL, be->engine, fpd) == dnnl_success;
    }
    pds_destroy(fpd, bpd, wpd);
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
    dnnl_memory_desc_t src_plain = plain_md(op->d.in[0].n, op->d.in[0].c, op->d.in[0].h,
                                            op->d.in[0].w, dnnl_nchw);
    dnnl_memory_desc_t dplain = plain_md(o->n, o->c, o->h, o->w, dnnl_nchw);
    if (dnnl_primitive_desc_query(*wpd, dnnl_query_impl_info_str, 0, &name) != dnnl_success
        || !name || strncmp(name, "ref", 3) || !dnnl_memory_desc_equal(&op->src_md, &src_plain)
        || dnnl_memory_desc_equal(&op->dst_md, &dplain))
        return DPT_OK;
    dnnl_convolution_desc_t wd = *wd_blk;
    wd.diff_dst_desc = dplain;
    prim_t pr = {0};
    dnnl_primitive_desc_t pd = NULL;
    if (make_prim(be, &wd, fpd, &pr, &pd) != DPT_OK) {
        dpt_error_clear();
        return DPT_OK;   /* keep the reference kernel */
    }
    const char *name2 = NULL;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name2);
    if (!name2 || !strncmp(name2, "ref", 3)) {
        prim_fini(&pr);
        dnnl_primitive_desc_destroy(pd);
        return DPT_OK;
    }
    prim_fini(&op->bwd_w);
    dnnl_primitive_desc_destroy(*wpd);
    op->bwd_w = pr;
    *wpd = pd;
    DPT_CHECK(make_reorder(be, &op->dst_md, &dplain, &op->ddst_to_plain));
    DPT_CHECK(alloc_for(&dplain, &op->ddst_plain));
    DPT_CHECK(mem(be, &dplain, &op->m_ddst_w));
    return DPT_OK;
}

static dpt_status_t create_conv(dpt_backend_t *be, dpt_op_t *op)
{
    const dpt_op_desc_t *d = &op->d;
    const dpt_tensor_t *o = &op->info.out;
    dnnl_dims_t wdims = {d->out_c, d->in[0].c, d->kh, d->kw}, bdims = {d->out_c};
    dnnl_dims_t strides = {d->stride, d->stride}, pad = {d->pad, d->pad};
    dnnl_memory_desc_t w_user, w_any, b_md, dst_md;
    dnnl_memory_desc_init_by_tag(&w_user, 4, wdims, dnnl_f32, dnnl_oihw);
    dnnl_memory_desc_init_by_tag(&w_any, 4, wdims, dnnl_f32, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&b_md, 1, bdims, dnnl_f32, dnnl_x);
    dst_md = plain_md(o->n, o->c, o->h, o->w, be->blocked ? dnnl_format_tag_any : dnnl_nchw);
    const dnnl_memory_desc_t *bias = d->has_bias ? &b_md : NULL;
    dnnl_alg_kind_t alg = dnnl_convolution_direct;
    if (be->winograd && d->kh == 3 && d->kw == 3 && d->stride == 1
        && conv_alg_works(be, d, &op->src_md, &w_any, bias, &dst_md, dnnl_convolution_winograd))
        alg = dnnl_convolution_winograd;
    op->conv_alg = alg;

    dnnl_convolution_desc_t cd;
    DN(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, alg,
                                          &op->src_md, &w_any, bias, &dst_md, strides, pad, pad),
       "convolution_forward_desc_init");
    dnnl_primitive_desc_t fpd;
    DPT_CHECK(make_prim(be, &cd, NULL, &op->fwd, &fpd));
    op->dst_md = *query(fpd, dnnl_query_dst_md);
    set_impl(fpd, &op->info);
    const dnnl_memory_desc_t wf = *query(fpd, dnnl_query_weights_md);
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
    DPT_CHECK_GOTO(make_prim(be, &bd, fpd, &op->bwd_data, &bpd), st, done);
    dnnl_memory_desc_t wb = *query(bpd, dnnl_query_weights_md);

    dnnl_convolution_desc_t wd;
    if (dnnl_convolution_backward_weights_desc_init(&wd, alg, &op->src_md,
                                                    &w_any, bias, &op->dst_md, strides, pad, pad)
        != dnnl_success) {
        st = dpt_error_set(DPT_ERR_DNNL, "oneDNN: convolution_backward_weights_desc_init failed");
        goto done;
    }
    DPT_CHECK_GOTO(make_prim(be, &wd, fpd, &op->bwd_w, &wpd), st, done);
    DPT_CHECK_GOTO(conv_bwd_w_plain(be, op, &wd, fpd, &wpd), st, done);
    dnnl_memory_desc_t dwf = *query(wpd, dnnl_query_diff_weights_md);

    DPT_CHECK_GOTO(mem(be, &op->src_md, &op->m_src), st, done);
    DPT_CHECK_GOTO(mem(be, &op->dst_md, &op->m_dst), st, done);
    DPT_CHECK_GOTO(mem(be, &op->src_md, &op->m_dsrc), st, done);
    DPT_CHECK_GOTO(mem(be, &op->dst_md, &op->m_ddst), st, done);
    DPT_CHECK_GOTO(mem(be, &wf, &op->m_w), st, done);
    DPT_CHECK_GOTO(mem(be, &dwf, &op->m_dw), st, done);
    if (d->has_bias) {
        DPT_CHECK_GOTO(mem(be, &b_md, &op->m_b), st, done);
        DPT_CHECK_GOTO(mem(be, &b_md, &op->m_db), st, done);
    }
    if (!dnnl_memory_desc_equal(&wf, &w_user)) {
        DPT_CHECK_GOTO(make_reorder(be, &w_user, &wf, &op->w_to_fwd), st, done);
        DPT_CHECK_GOTO(alloc_for(&wf, &op->w_fwd), st, done);
    }
    if (!dnnl_memory_desc_equal(&wb, &wf)) {
        /* backward data wants another weights format than forward: its own copy */
        DPT_CHECK_GOTO(make_reorder(be, &w_user, &wb, &op->w_to_bwd), st, done);
        DPT_CHECK_GOTO(alloc_for(&wb, &op->w_bwd), st, done);
        DPT_CHECK_GOTO(mem(be, &wb, &op->m_wb), st, done);
    }
    if (!dnnl_memory_desc_equal(&dwf, &w_user)) {
        DPT_CHECK_GOTO(make_reorder(be, &dwf, &w_user, &op->dw_to_user), st, done);
        DPT_CHECK_GOTO(alloc_for(&dwf, &op->dw_blk), st, done);
    }
done:
    pds_destroy(fpd, bpd, wpd);
    return st;
}

static dpt_status_t create_bn(dpt_backend_t *be, dpt_op_t *op)
{
    const dpt_op_desc_t *d = &op->d;
    unsigned flags = dnnl_use_scale | dnnl_use_shift | (d->fuse_relu ? dnnl_fuse_norm_relu : 0);
    dnnl_batch_normalization_desc_t fd, id, bd;
    DN(dnnl_batch_normalization_forward_desc_init(&fd, dnnl_forward_training, &op->src_md,
                                                  d->bn_eps, flags), "bnorm_forward_desc_init");
    dnnl_primitive_desc_t fpd;
    DPT_CHECK(make_prim(be, &fd, NULL, &op->fwd, &fpd));
    set_impl(fpd, &op->info);
    dpt_status_t st = DPT_OK;
    dnnl_primitive_desc_t bpd = NULL;
    const dnnl_memory_desc_t *ws = query(fpd, dnnl_query_workspace_md);
    if (ws && dnnl_memory_desc_get_size(ws)) {
        DPT_CHECK_GOTO(mem(be, ws, &op->m_ws), st, done);
        op->ws = dpt_calloc(dnnl_memory_desc_get_size(ws));
        if (!op->ws) {
            st = dpt_error_set(DPT_ERR_NOMEM, "cpu backend: out of memory");
            goto done;
        }
    }
    if (dnnl_batch_normalization_forward_desc_init(&id, dnnl_forward_inference, &op->src_md,
                                                   d->bn_eps, flags | dnnl_use_global_stats)
        != dnnl_success) {
        st = dpt_error_set(DPT_ERR_DNNL, "oneDNN: bnorm inference desc failed");
        goto done;
    }
    DPT_CHECK_GOTO(make_prim(be, &id, NULL, &op->fwd_inf, NULL), st, done);
    if (dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &op->src_md, &op->src_md,
                                                    d->bn_eps, flags) != dnnl_success) {
        st = dpt_error_set(DPT_ERR_DNNL, "oneDNN: bnorm backward desc failed");
        goto done;
    }
    DPT_CHECK_GOTO(make_prim(be, &bd, fpd, &op->bwd_data, &bpd), st, done);
    dnnl_memory_desc_t c_md;
    dnnl_dims_t cdims = {d->in[0].c};
    dnnl_memory_desc_init_by_tag(&c_md, 1, cdims, dnnl_f32, dnnl_x);
    dnnl_memory_t *cm[] = {&op->m_mean, &op->m_var, &op->m_scale, &op->m_shift, &op->m_dscale,
                           &op->m_dshift};
    for (size_t i = 0; i < sizeof cm / sizeof cm[0]; i++)
        DPT_CHECK_GOTO(mem(be, &c_md, cm[i]), st, done);
    DPT_CHECK_GOTO(mem(be, &op->src_md, &op->m_src), st, done);
    DPT_CHECK_GOTO(mem(be, &op->src_md, &op->m_dst), st, done);
    DPT_CHECK_GOTO(mem(be, &op->src_md, &op->m_dsrc), st, done);
    DPT_CHECK_GOTO(mem(be, &op->src_md, &op->m_ddst), st, done);
    op->mean = dpt_calloc((size_t)d->in[0].c * sizeof(float));
    op->var = dpt_calloc((size_t)d->in[0].c * sizeof(float));
    if (!op->mean || !op->var)
        st = dpt_error_set(DPT_ERR_NOMEM, "cpu backend: out of memory");
    op->dst_md = op->src_md;
done:
    pds_destroy(fpd, bpd, NULL);
    return st;
}

static dpt_status_t create_pool(dpt_backend_t *be, dpt_op_t *op)
{
    const dpt_op_desc_t *d = &op->d;
    const dpt_tensor_t *o = &op->info.out;
    int avg = d->kind == DPT_OP_GAP;
    dnnl_dims_t kernel = {avg ? d->in[0].h : d->pool_k, avg ? d->in[0].w : d->pool_k};
    dnnl_dims_t strides = {avg ? 1 : d->pool_stride, avg ? 1 : d->pool_stride};
    dnnl_dims_t pad = {avg ? 0 : d->pool_pad, avg ? 0 : d->pool_pad};
    dnnl_alg_kind_t alg = avg ? dnnl_pooling_avg_exclude_padding : dnnl_pooling_max;
    dnnl_memory_desc_t dst = plain_md(o->n, o->c, o->h, o->w,
                                      op->d.in[0].layout ? dnnl_format_tag_any : dnnl_nchw);
    dnnl_pooling_desc_t fd, bd;
    DN(dnnl_pooling_forward_desc_init(&fd, dnnl_forward_training, alg, &op->src_md, &dst, strides,
                                      kernel, pad, pad), "pooling_forward_desc_init");
    dnnl_primitive_desc_t fpd, bpd = NULL;
    DPT_CHECK(make_prim(be, &fd, NULL, &op->fwd, &fpd));
    set_impl(fpd, &op->info);
    op->dst_md = *query(fpd, dnnl_query_dst_md);
    dpt_status_t st = DPT_OK;
    const dnnl_memory_desc_t *ws = query(fpd, dnnl_query_workspace_md);
    if (ws && dnnl_memory_desc_get_size(ws)) {
        DPT_CHECK_GOTO(mem(be, ws, &op->m_ws), st, done);
        op->ws = dpt_calloc(dnnl_memory_desc_get_size(ws));
        if (!op->ws) {
            st = dpt_error_set(DPT_ERR_NOMEM, "cpu backend: out of memory");
            goto done;
        }
    }
    if (dnnl_pooling_backward_desc_init(&bd, alg, &op->src_md, &op->dst_md, strides, kernel, pad,
                                        pad) != dnnl_success) {
        st = dpt_error_set(DPT_ERR_DNNL, "oneDNN: pooling_backward_desc_init failed");
        goto done;
    }
    DPT_CHECK_GOTO(make_prim(be, &bd, fpd, &op->bwd_data, &bpd), st, done);
    DPT_CHECK_GOTO(mem(be, &op->src_md, &op->m_src), st, done);
    DPT_CHECK_GOTO(mem(be, &op->dst_md, &op->m_dst), st, done);
    DPT_CHECK_GOTO(mem(be, &op->src_md, &op->m_dsrc), st, done);
    DPT_CHECK_GOTO(mem(be, &op->dst_md, &op->m_ddst), st, done);
done:
    pds_destroy(fpd, bpd, NULL);
    return st;
}

/* fc, flatten: a reorder of a blocked input to plain NCHW and of a plain gradient back. */
static dpt_status_t create_plain_io(dpt_backend_t *be, dpt_op_t *op)
{
    if (op->d.in[0].layout == DPT_LAYOUT_NCHW)
        return DPT_OK;
    const dpt_tensor_t *x = &op->d.in[0];
    dnnl_memory_desc_t plain = plain_md(x->n, x->c, x->h, x->w, dnnl_nchw);
    DPT_CHECK(make_reorder(be, &op->src_md, &plain, &op->x_to_plain));
    DPT_CHECK(make_reorder(be, &plain, &op->src_md, &op->plain_to_dx));
    if (op->d.kind == DPT_OP_FC) {
        DPT_CHECK(alloc_for(&plain, &op->x_plain));
        DPT_CHECK(alloc_for(&plain, &op->dx_plain));
    }
    return DPT_OK;
}

static dpt_status_t cpu_op_create(dpt_backend_t *be, const dpt_op_desc_t *d, dpt_op_t **out,
                                  dpt_op_info_t *info)
{
    DPT_CHECK(dpt__op_shape(d, info));
    if (d->kind == DPT_OP_ADD && d->in[0].layout != d->in[1].layout)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "add: inputs in different layouts");
    if (d->kind == DPT_OP_XENT && d->in[0].layout != DPT_LAYOUT_NCHW)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "softmax_xent: input must be plain");
    for (int i = 0; i < (d->kind == DPT_OP_ADD ? 2 : 1); i++)
        if (d->in[i].layout < 0 || d->in[i].layout > be->n_layouts)
            return dpt_error_set(DPT_ERR_INVALID_ARG, "cpu backend: unknown layout %d",
                                 d->in[i].layout);
    dpt_op_t *op = dpt_calloc(sizeof *op);
    if (!op)
        return dpt_error_set(DPT_ERR_NOMEM, "cpu backend: out of memory");
    op->be = be;
    op->d = *d;
    op->info = *info;
    op->src_md = tensor_md(be, &d->in[0]);
    snprintf(op->info.impl, sizeof op->info.impl, "%s",
             d->kind == DPT_OP_FC ? "openblas" : "c");   /* oneDNN ops overwrite this */
    dpt_status_t st = DPT_OK;
    switch (d->kind) {
    case DPT_OP_CONV2D:
        DPT_CHECK_GOTO(create_conv(be, op), st, fail);
        DPT_CHECK_GOTO(set_layout(be, &op->dst_md, &op->info.out), st, fail);
        break;
    case DPT_OP_BATCHNORM:
        DPT_CHECK_GOTO(create_bn(be, op), st, fail);
        DPT_CHECK_GOTO(set_layout(be, &op->dst_md, &op->info.out), st, fail);
        break;
    case DPT_OP_MAXPOOL:
    case DPT_OP_GAP:
        DPT_CHECK_GOTO(create_pool(be, op), st, fail);
        DPT_CHECK_GOTO(set_layout(be, &op->dst_md, &op->info.out), st, fail);
        break;
    case DPT_OP_RELU:
    case DPT_OP_CELU:
    case DPT_OP_SCALE:
    case DPT_OP_ADD:
        /* elementwise on the whole (padded) buffer: same layout as the input */
        op->info.out.layout = d->in[0].layout;
        op->info.out.nbytes = d->in[0].nbytes;
        break;
    case DPT_OP_FC:
    case DPT_OP_FLATTEN:
        DPT_CHECK_GOTO(create_plain_io(be, op), st, fail);
        break;
    case DPT_OP_XENT:
        op->prob = dpt_calloc(dpt_tensor_count(&d->in[0]) * sizeof(float));
        if (!op->prob)
            st = dpt_error_set(DPT_ERR_NOMEM, "cpu backend: out of memory");
        break;
    default:
        st = dpt_error_set(DPT_ERR_UNSUPPORTED, "cpu backend: op %d", (int)d->kind);
    }
    if (st != DPT_OK)
        goto fail;
    *info = op->info;
    *out = op;
    return DPT_OK;
fail:
    cpu_op_destroy(op);
    return st;
}

/* ---- execution -------------------------------------------------------------------------- */

static long elems(const dpt_tensor_t *t) { return (long)(t->nbytes / sizeof(float)); }

static dpt_status_t conv_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    dpt_backend_t *be = op->be;
    const float *w = a->w;
    if (op->w_fwd) {
        DPT_CHECK(run_reorder(be, &op->w_to_fwd, a->w, op->w_fwd));
        w = op->w_fwd;
    }
    arg_t args[] = {{DNNL_ARG_SRC, op->m_src, a->x[0]->data},
                    {DNNL_ARG_WEIGHTS, op->m_w, w},
                    {DNNL_ARG_BIAS, op->m_b, a->w + op->info.n_weights},
                    {DNNL_ARG_DST, op->m_dst, a->y->data}};
    return run(be, &op->fwd, args, 4);
}

static dpt_status_t conv_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    dpt_backend_t *be = op->be;
    if (a->dx[0]) {
        const float *w = a->w;
        dnnl_memory_t wm = op->m_w;
        if (op->w_bwd) {
            DPT_CHECK(run_reorder(be, &op->w_to_bwd, a->w, op->w_bwd));
            w = op->w_bwd;
            wm = op->m_wb;
        } else if (op->w_fwd) {
            DPT_CHECK(run_reorder(be, &op->w_to_fwd, a->w, op->w_fwd));
            w = op->w_fwd;
        }
        arg_t args[] = {{DNNL_ARG_DIFF_DST, op->m_ddst, a->dy->data},
                        {DNNL_ARG_WEIGHTS, wm, w},
                        {DNNL_ARG_DIFF_SRC, op->m_dsrc, a->dx[0]->data}};
        DPT_CHECK(run(be, &op->bwd_data, args, 3));
    }
    float *dw = op->dw_blk ? op->dw_blk : a->dw;
    dnnl_memory_t ddm = op->m_ddst;
    void *ddst = a->dy->data;
    if (op->ddst_plain) {
        DPT_CHECK(run_reorder(be, &op->ddst_to_plain, a->dy->data, op->ddst_plain));
        ddm = op->m_ddst_w;
        ddst = op->ddst_plain;
    }
    arg_t args[] = {{DNNL_ARG_SRC, op->m_src, a->x[0]->data},
                    {DNNL_ARG_DIFF_DST, ddm, ddst},
                    {DNNL_ARG_DIFF_WEIGHTS, op->m_dw, dw},
                    {DNNL_ARG_DIFF_BIAS, op->m_db, a->dw + op->info.n_weights}};
    DPT_CHECK(run(be, &op->bwd_w, args, 4));
    if (op->dw_blk)
        DPT_CHECK(run_reorder(be, &op->dw_to_user, op->dw_blk, a->dw));
    return DPT_OK;
}

static dpt_status_t bn_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    int C = op->d.in[0].c;
    float *rm = a->buf, *rv = a->buf + C;
    if (!a->training) {
        arg_t args[] = {{DNNL_ARG_SRC, op->m_src, a->x[0]->data},
                        {DNNL_ARG_MEAN, op->m_mean, rm},
                        {DNNL_ARG_VARIANCE, op->m_var, rv},
                        {DNNL_ARG_SCALE, op->m_scale, a->w},
                        {DNNL_ARG_SHIFT, op->m_shift, a->w + C},
                        {DNNL_ARG_DST, op->m_dst, a->y->data}};
        return run(op->be, &op->fwd_inf, args, 6);
    }
    arg_t args[] = {{DNNL_ARG_SRC, op->m_src, a->x[0]->data},
                    {DNNL_ARG_MEAN, op->m_mean, op->mean},
                    {DNNL_ARG_VARIANCE, op->m_var, op->var},
                    {DNNL_ARG_SCALE, op->m_scale, a->w},
                    {DNNL_ARG_SHIFT, op->m_shift, a->w + C},
                    {DNNL_ARG_DST, op->m_dst, a->y->data},
                    {DNNL_ARG_WORKSPACE, op->m_ws, op->ws}};
    DPT_CHECK(run(op->be, &op->fwd, args, 7));
    const dpt_tensor_t *x = &op->d.in[0];
    double m = op->d.bn_momentum, M = (double)x->n * x->h * x->w;
    double unbias = M > 1 ? M / (M - 1) : 1.0;
    for (int c = 0; c < C; c++) {
        rm[c] = (float)((1 - m) * rm[c] + m * op->mean[c]);
        rv[c] = (float)((1 - m) * rv[c] + m * op->var[c] * unbias);
    }
    return DPT_OK;
}

static dpt_status_t bn_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    int C = op->d.in[0].c;
    arg_t args[] = {{DNNL_ARG_SRC, op->m_src, a->x[0]->data},
                    {DNNL_ARG_MEAN, op->m_mean, op->mean},
                    {DNNL_ARG_VARIANCE, op->m_var, op->var},
                    {DNNL_ARG_SCALE, op->m_scale, a->w},
                    {DNNL_ARG_SHIFT, op->m_shift, a->w + C},
                    {DNNL_ARG_WORKSPACE, op->m_ws, op->ws},
                    {DNNL_ARG_DIFF_DST, op->m_ddst, a->dy->data},
                    {DNNL_ARG_DIFF_SRC, op->m_dsrc, a->dx[0] ? a->dx[0]->data : op->be->scratch},
                    {DNNL_ARG_DIFF_SCALE, op->m_dscale, a->dw},
                    {DNNL_ARG_DIFF_SHIFT, op->m_dshift, a->dw + C}};
    if (!a->dx[0])
        return dpt_error_set(DPT_ERR_UNSUPPORTED, "cpu backend: batchnorm needs dx");
    return run(op->be, &op->bwd_data, args, 10);
}

static dpt_status_t pool_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    arg_t args[] = {{DNNL_ARG_SRC, op->m_src, a->x[0]->data},
                    {DNNL_ARG_DST, op->m_dst, a->y->data},
                    {DNNL_ARG_WORKSPACE, op->m_ws, op->ws}};
    return run(op->be, &op->fwd, args, 3);
}

static dpt_status_t pool_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    if (!a->dx[0])
        return DPT_OK;
    arg_t args[] = {{DNNL_ARG_DIFF_DST, op->m_ddst, a->dy->data},
                    {DNNL_ARG_WORKSPACE, op->m_ws, op->ws},
                    {DNNL_ARG_DIFF_SRC, op->m_dsrc, a->dx[0]->data}};
    return run(op->be, &op->bwd_data, args, 3);
}

/* C[M,N] = op(A)[M,K] op(B)[K,N], row-major, with the rows of C split across the OpenMP team and
 * each slice one single-threaded OpenBLAS call: one thread pool for the whole backend (OpenBLAS's
 * own pthreads spinning next to oneDNN's OpenMP threads cost 2x on the fc layers at 2 threads). */
static void par_sgemm(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
                      const float *B, int ldb, float *C, int ldc)
{
    int team = omp_get_max_threads();
    if (team > M)
        team = M;
#pragma omp parallel num_threads(team)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int m0 = (int)((long)M * t / nt), m1 = (int)((long)M * (t + 1) / nt);
        if (m1 > m0) {
            const float *a = trans_a ? A + m0 : A + (long)m0 * lda;
            cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                        trans_b ? CblasTrans : CblasNoTrans, m1 - m0, N, K, 1.0f, a, lda, B, ldb,
                        0.0f, C + (long)m0 * ldc, ldc);
        }
    }
}

static void fc_bias_rows(float *y, const float *b, int n, int out)
{
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++)
            y[(long)i * out + o] += b[o];
}

static dpt_status_t fc_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *x = &op->d.in[0];
    int N = x->n, IN = x->c * x->h * x->w, OUT = op->d.out_features;
    const float *xp = a->x[0]->data;
    if (op->x_plain) {
        DPT_CHECK(run_reorder(op->be, &op->x_to_plain, xp, op->x_plain));
        xp = op->x_plain;
    }
    par_sgemm(0, 1, N, OUT, IN, xp, IN, a->w, IN, a->y->data, OUT);
    if (op->d.has_bias)
        fc_bias_rows(a->y->data, a->w + op->info.n_weights, N, OUT);
    return DPT_OK;
}

static dpt_status_t fc_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *x = &op->d.in[0];
    int N = x->n, IN = x->c * x->h * x->w, OUT = op->d.out_features;
    const float *xp = op->x_plain ? op->x_plain : a->x[0]->data;   /* x_plain: from forward */
    const float *dy = a->dy->data;
    par_sgemm(1, 0, OUT, IN, N, dy, OUT, xp, IN, a->dw, IN);
    if (op->d.has_bias) {
        float *db = a->dw + op->info.n_weights;
        for (int o = 0; o < OUT; o++)
            db[o] = 0;
        for (int i = 0; i < N; i++)
            for (int o = 0; o < OUT; o++)
                db[o] += dy[(long)i * OUT + o];
    }
    if (a->dx[0]) {
        float *dx = op->dx_plain ? op->dx_plain : a->dx[0]->data;
        par_sgemm(0, 0, N, IN, OUT, dy, OUT, a->w, IN, dx, IN);
        if (op->dx_plain)
            DPT_CHECK(run_reorder(op->be, &op->plain_to_dx, op->dx_plain, a->dx[0]->data));
    }
    return DPT_OK;
}

static dpt_status_t cpu_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_op_desc_t *d = &op->d;
    const float *x = a->x[0]->data;
    float *y = a->y->data;
    long n = elems(a->x[0]);
    switch (d->kind) {
    case DPT_OP_CONV2D:
        return conv_forward(op, a);
    case DPT_OP_BATCHNORM:
        return bn_forward(op, a);
    case DPT_OP_MAXPOOL:
    case DPT_OP_GAP:
        return pool_forward(op, a);
    case DPT_OP_FC:
        return fc_forward(op, a);
    case DPT_OP_RELU:
#pragma omp parallel for simd schedule(static)
        for (long i = 0; i < n; i++)
            y[i] = x[i] > 0 ? x[i] : 0.0f;
        return DPT_OK;
    case DPT_OP_CELU:
        dpt__ref_celu_fwd_f32(x, y, n, d->alpha);
        return DPT_OK;
    case DPT_OP_SCALE: {
        const float s = d->alpha;
#pragma omp parallel for simd schedule(static)
        for (long i = 0; i < n; i++)
            y[i] = s * x[i];
        return DPT_OK;
    }
    case DPT_OP_ADD: {
        const float *x1 = a->x[1]->data;
#pragma omp parallel for simd schedule(static)
        for (long i = 0; i < n; i++)
            y[i] = x[i] + x1[i];
        return DPT_OK;
    }
    case DPT_OP_FLATTEN:
        if (op->x_to_plain.p)
            return run_reorder(op->be, &op->x_to_plain, x, y);
        memcpy(y, x, dpt_tensor_count(a->x[0]) * sizeof(float));
        return DPT_OK;
    case DPT_OP_XENT: {
        double l = dpt__ref_xent_fwd_f32(x, a->labels, op->prob, a->x[0]->n, a->x[0]->c,
                                         a->n_valid, d->label_smoothing, a->correct);
        if (a->loss)
            *a->loss = (float)l;
        memcpy(y, op->prob, dpt_tensor_count(a->x[0]) * sizeof(float));
        return DPT_OK;
    }
    default:
        return dpt_error_set(DPT_ERR_UNSUPPORTED, "cpu backend: op %d", (int)d->kind);
    }
}

static dpt_status_t cpu_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_op_desc_t *d = &op->d;
    switch (d->kind) {
    case DPT_OP_CONV2D:
        return conv_backward(op, a);
    case DPT_OP_BATCHNORM:
        return bn_backward(op, a);
    case DPT_OP_MAXPOOL:
    case DPT_OP_GAP:
        return pool_backward(op, a);
    case DPT_OP_FC:
        return fc_backward(op, a);
    default:
        break;
    }
    float *dx = a->dx[0] ? a->dx[0]->data : NULL;
    const float *dy = a->dy ? a->dy->data : NULL;
    long n = elems(a->x[0]);
    switch (d->kind) {
    case DPT_OP_RELU: {
        const float *y = a->y->data;
        if (dx)
#pragma omp parallel for simd schedule(static)
            for (long i = 0; i < n; i++)
                dx[i] = y[i] > 0 ? dy[i] : 0.0f;
        return DPT_OK;
    }
    case DPT_OP_CELU:
        if (dx)
            dpt__ref_celu_bwd_f32(a->x[0]->data, dy, dx, n, d->alpha);
        return DPT_OK;
    case DPT_OP_SCALE: {
        const float s = d->alpha;
        if (dx)
#pragma omp parallel for simd schedule(static)
            for (long i = 0; i < n; i++)
                dx[i] = s * dy[i];
        return DPT_OK;
    }
    case DPT_OP_ADD:
        for (int k = 0; k < 2; k++)
            if (a->dx[k])
                memcpy(a->dx[k]->data, dy, a->x[0]->nbytes);
        return DPT_OK;
    case DPT_OP_FLATTEN:
        if (!dx)
            return DPT_OK;
        if (op->plain_to_dx.p)
            return run_reorder(op->be, &op->plain_to_dx, dy, dx);
        memcpy(dx, dy, dpt_tensor_count(a->x[0]) * sizeof(float));
        return DPT_OK;
    case DPT_OP_XENT:
        if (dx)
            dpt__ref_xent_bwd_f32(op->prob, a->labels, dx, a->x[0]->n, a->x[0]->c, a->n_valid,
                                  d->label_smoothing);
        return DPT_OK;
    default:
        return dpt_error_set(DPT_ERR_UNSUPPORTED, "cpu backend: op %d", (int)d->kind);
    }
}

/* ---- memory and layout conversion ------------------------------------------------------- */

static void *cpu_alloc(dpt_backend_t *be, size_t nbytes)
{
    (void)be;
    return dpt_calloc(nbytes);
}

static void cpu_free(dpt_backend_t *be, void *p)
{
    (void)be;
    dpt_free(p);
}

/* Reorder between plain NCHW and a tensor's layout. Setup-time / test helper: it creates a
 * reorder primitive per call (the training step only imports into the plain input tensor). */
static dpt_status_t convert(dpt_backend_t *be, const dpt_tensor_t *t, const float *src, float *dst,
                            int to_layout)
{
    if (t->layout == DPT_LAYOUT_NCHW) {
        memcpy(dst, src, dpt_tensor_count(t) * sizeof(float));
        return DPT_OK;
    }
    if (t->layout < 0 || t->layout > be->n_layouts)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "cpu backend: unknown layout %d", t->layout);
    dnnl_memory_desc_t plain = plain_md(t->n, t->c, t->h, t->w, dnnl_nchw);
    dnnl_memory_desc_t blk = be->layouts[t->layout - 1];
    reorder_t r = {0};
    dpt_status_t st = to_layout ? make_reorder(be, &plain, &blk, &r)
                                : make_reorder(be, &blk, &plain, &r);
    if (st == DPT_OK)
        st = run_reorder(be, &r, src, dst);
    reorder_fini(&r);
    return st;
}

static dpt_status_t cpu_import(dpt_backend_t *be, const float *src, dpt_tensor_t *dst)
{
    return convert(be, dst, src, dst->data, 1);
}

static dpt_status_t cpu_export(dpt_backend_t *be, const dpt_tensor_t *src, float *dst)
{
    return convert(be, src, src->data, dst, 0);
}

const dpt_backend_ops_t dpt_backend_cpu = {
    .name = "cpu",
    .create = cpu_create,
    .destroy = cpu_destroy,
    .op_create = cpu_op_create,
    .op_destroy = cpu_op_destroy,
    .forward = cpu_forward,
    .backward = cpu_backward,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .import_nchw = cpu_import,
    .export_nchw = cpu_export,
};
