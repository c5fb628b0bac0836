/* cpu_dnnl.c: the `cpu` backend: oneDNN (2.x C API) for convolution, batch norm and pooling,
 * OpenBLAS sgemm for fully connected layers, OpenMP loops for the elementwise ops. This file
 * holds the backend's lifetime, the oneDNN helpers, the op table and its dispatch, and memory and
 * layout conversion; the ops are in cpu_conv.c, cpu_ops.c and cpu_act.c (shared types:
 * cpu_internal.h).
 *
 * Layouts: with blocked_layout = 1 a convolution lets oneDNN pick its destination layout
 * (nChw16c on AVX-512) and every following BN / pooling / elementwise / add op is created on the
 * layout of its input, so activations stay blocked until fc or flatten reorders them to plain.
 * A tensor's `layout` is 0 (plain NCHW) or 1 + an index into the backend's table of memory
 * descriptors. Weights stay OIHW in the arenas; when a convolution wants blocked weights the op
 * keeps a private blocked copy (reordered each forward) and reorders diff weights back.
 * Everything (primitives, memory objects, reorders, workspaces) is created in op_create;
 * forward/backward only re-point memory handles and execute. All oneDNN calls live in the
 * cpu_*.c files of this backend.
 */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "dptrain/alloc.h"

/* ---- oneDNN helpers --------------------------------------------------------------------- */

dpt_status_t dpt__cpu_dnnl_err(dnnl_status_t s, const char *what)
{
    return dpt_error_set(DPT_ERR_DNNL, "oneDNN: %s failed (status %d)", what, (int)s);
}

dnnl_memory_desc_t dpt__cpu_plain_md(int n, int c, int h, int w, dnnl_format_tag_t tag)
{
    dnnl_memory_desc_t md;
    dnnl_dims_t dims = {n, c, h, w};
    dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, tag);
    return md;
}

dnnl_memory_desc_t dpt__cpu_tensor_md(const dpt_backend_t *be, const dpt_tensor_t *t)
{
    if (t->layout == DPT_LAYOUT_NCHW)
        return dpt__cpu_plain_md(t->n, t->c, t->h, t->w, dnnl_nchw);
    return be->layouts[t->layout - 1];
}

/* Register a descriptor as a tensor layout; fills out->layout and out->nbytes. */
dpt_status_t dpt__cpu_set_layout(dpt_backend_t *be, const dnnl_memory_desc_t *md,
                                 dpt_tensor_t *out)
{
    dnnl_memory_desc_t plain = dpt__cpu_plain_md(out->n, out->c, out->h, out->w, dnnl_nchw);
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
    if (be->n_layouts == DPT__CPU_MAX_LAYOUTS)
        return dpt_error_set(DPT_ERR_INTERNAL, "cpu backend: more than %d layouts",
                             DPT__CPU_MAX_LAYOUTS);
    be->layouts[be->n_layouts++] = *md;
    out->layout = be->n_layouts;
    return DPT_OK;
}

dpt_status_t dpt__cpu_access(const dnnl_memory_desc_t *md, const char *what,
                             dpt__cpu_access_t *a)
{
    const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
    if (md->format_kind != dnnl_blocked || b->inner_nblks > 1
        || (b->inner_nblks == 1 && b->inner_idxs[0] != 1) || md->ndims != 4
        || b->strides[2] != md->dims[3] * b->strides[3])
        return dpt_error_set(DPT_ERR_UNSUPPORTED, "cpu backend: %s in a layout it cannot "
                             "address", what);
    a->sn = (long)b->strides[0];
    a->sc = (long)b->strides[1];
    a->sp = (long)b->strides[3];
    a->blk = b->inner_nblks ? (int)b->inner_blks[0] : 1;
    return DPT_OK;
}

dpt_status_t dpt__cpu_mem(dpt_backend_t *be, const dnnl_memory_desc_t *md, dnnl_memory_t *out)
{
    DN(dnnl_memory_create(out, md, be->engine, DNNL_MEMORY_NONE), "memory_create");
    return DPT_OK;
}

dpt_status_t dpt__cpu_io_mems(dpt_backend_t *be, dpt_op_t *op)
{
    DPT_CHECK(dpt__cpu_mem(be, &op->src_md, &op->m_src));
    DPT_CHECK(dpt__cpu_mem(be, &op->dst_md, &op->m_dst));
    DPT_CHECK(dpt__cpu_mem(be, &op->src_md, &op->m_dsrc));
    DPT_CHECK(dpt__cpu_mem(be, &op->dst_md, &op->m_ddst));
    return dpt__cpu_set_layout(be, &op->dst_md, &op->info.out);
}

const dnnl_memory_desc_t *dpt__cpu_query(const_dnnl_primitive_desc_t pd, dnnl_query_t what)
{
    return dnnl_primitive_desc_query_md(pd, what, 0);
}

/* Create a primitive from an op descriptor with a user-managed scratchpad. `pd_out` (optional)
 * receives the primitive descriptor, which the caller then owns. */
dpt_status_t dpt__cpu_make_prim(dpt_backend_t *be, const void *op_desc,
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
        return dpt__cpu_dnnl_err(s, "primitive_desc_create");
    const dnnl_memory_desc_t *smd = dpt__cpu_query(pd, dnnl_query_scratchpad_md);
    size_t need = smd ? dnnl_memory_desc_get_size(smd) : 0;
    if (need > be->scratch_nbytes) {
        dpt_free(be->scratch);
        be->scratch = dpt_malloc(need);
        be->scratch_nbytes = be->scratch ? need : 0;
        if (!be->scratch)
            return dpt_error_set(DPT_ERR_NOMEM, "cpu backend: scratchpad of %zu bytes", need);
    }
    if (smd && need)
        DPT_CHECK(dpt__cpu_mem(be, smd, &pr->scratch));
    s = dnnl_primitive_create(&pr->p, pd);
    if (pd_out && s == dnnl_success)
        *pd_out = pd;
    else
        dnnl_primitive_desc_destroy(pd);
    if (s != dnnl_success)
        return dpt__cpu_dnnl_err(s, "primitive_create");
    return DPT_OK;
}

dpt_status_t dpt__cpu_make_reorder(dpt_backend_t *be, const dnnl_memory_desc_t *from,
                                   const dnnl_memory_desc_t *to, reorder_t *r)
{
    dnnl_primitive_desc_t pd;
    DN(dnnl_reorder_primitive_desc_create(&pd, from, be->engine, to, be->engine, NULL),
       "reorder_primitive_desc_create");
    dnnl_status_t s = dnnl_primitive_create(&r->p, pd);
    dnnl_primitive_desc_destroy(pd);
    if (s != dnnl_success)
        return dpt__cpu_dnnl_err(s, "reorder primitive_create");
    DPT_CHECK(dpt__cpu_mem(be, from, &r->from));
    DPT_CHECK(dpt__cpu_mem(be, to, &r->to));
    return DPT_OK;
}

/* Point each memory at its buffer and run the primitive to completion. */
dpt_status_t dpt__cpu_run(dpt_backend_t *be, const prim_t *pr, const arg_t *args, int n)
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

dpt_status_t dpt__cpu_run_reorder(dpt_backend_t *be, const reorder_t *r, const void *from,
                                  void *to)
{
    prim_t pr = {.p = r->p};
    arg_t a[] = {{DNNL_ARG_FROM, r->from, from}, {DNNL_ARG_TO, r->to, to}};
    return dpt__cpu_run(be, &pr, a, 2);
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
    openblas_set_num_threads(1);   /* dpt__cpu_par_sgemm splits the work over OpenMP threads */
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

void dpt__cpu_prim_fini(prim_t *p)
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
    dpt__cpu_prim_fini(&op->fwd);
    dpt__cpu_prim_fini(&op->fwd_inf);
    dpt__cpu_prim_fini(&op->bwd_data);
    dpt__cpu_prim_fini(&op->bwd_w);
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
    reorder_fini(&op->to_nhwc);
    reorder_fini(&op->from_nhwc);
    dpt_free(op->x_nhwc);
    dpt_free(op->dx_nhwc);
    dpt_free(op->pos_tc);
    dpt_free(op);
}

/* ---- op creation ------------------------------------------------------------------------ */

dpt_status_t dpt__cpu_alloc_for(const dnnl_memory_desc_t *md, float **out)
{
    size_t n = dnnl_memory_desc_get_size(md);
    *out = dpt_calloc(n ? n : 64);
    return *out ? DPT_OK : dpt_error_set(DPT_ERR_NOMEM, "cpu backend: out of memory");
}

/* Record the implementation oneDNN picked ("jit:avx512_core", "jit_wino_4x3:avx512_core"). */
void dpt__cpu_set_impl(const_dnnl_primitive_desc_t pd, dpt_op_info_t *info)
{
    const char *name = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name) == dnnl_success && name)
        snprintf(info->impl, sizeof info->impl, "%s", name);
}

/* Destroy the forward / backward-data / backward-weights descriptors that exist. */
void dpt__cpu_pds_destroy(dnnl_primitive_desc_t f, dnnl_primitive_desc_t b,
                          dnnl_primitive_desc_t w)
{
    dnnl_primitive_desc_t pds[3] = {f, b, w};
    for (int i = 0; i < 3; i++)
        if (pds[i])
            dnnl_primitive_desc_destroy(pds[i]);
}

/* ---- the op table and dispatch ---------------------------------------------------------- */

static const dpt__op_impl_t cpu_ops[DPT_OP_COUNT_] = {
    [DPT_OP_CONV2D] = {dpt__cpu_conv_create, dpt__cpu_conv_forward, dpt__cpu_conv_backward},
    [DPT_OP_BATCHNORM] = {dpt__cpu_bn_create, dpt__cpu_bn_forward, dpt__cpu_bn_backward},
    [DPT_OP_RELU] = {dpt__cpu_eltwise_create, dpt__cpu_relu_forward, dpt__cpu_relu_backward},
    [DPT_OP_CELU] = {dpt__cpu_eltwise_create, dpt__cpu_celu_forward, dpt__cpu_celu_backward},
    [DPT_OP_MAXPOOL] = {dpt__cpu_pool_create, dpt__cpu_pool_forward, dpt__cpu_pool_backward},
    [DPT_OP_GAP] = {dpt__cpu_pool_create, dpt__cpu_pool_forward, dpt__cpu_pool_backward},
    [DPT_OP_FC] = {dpt__cpu_plain_io_create, dpt__cpu_fc_forward, dpt__cpu_fc_backward},
    [DPT_OP_ADD] = {dpt__cpu_eltwise_create, dpt__cpu_add_forward, dpt__cpu_add_backward},
    [DPT_OP_FLATTEN] = {dpt__cpu_plain_io_create, dpt__cpu_flatten_forward,
                        dpt__cpu_flatten_backward},
    [DPT_OP_SCALE] = {dpt__cpu_eltwise_create, dpt__cpu_scale_forward, dpt__cpu_scale_backward},
    [DPT_OP_XENT] = {dpt__cpu_xent_create, dpt__cpu_xent_forward, dpt__cpu_xent_backward},
    [DPT_OP_SILU] = {dpt__cpu_act_create, dpt__cpu_act_forward, dpt__cpu_act_backward},
    [DPT_OP_GELU] = {dpt__cpu_act_create, dpt__cpu_act_forward, dpt__cpu_act_backward},
    [DPT_OP_SIGMOID] = {dpt__cpu_act_create, dpt__cpu_act_forward, dpt__cpu_act_backward},
    [DPT_OP_LAYERNORM] = {dpt__cpu_layernorm_create, dpt__cpu_layernorm_forward,
                          dpt__cpu_layernorm_backward},
    [DPT_OP_LINEAR] = {dpt__cpu_linear_create, dpt__cpu_linear_forward, dpt__cpu_linear_backward},
    [DPT_OP_ATTENTION] = {dpt__cpu_attention_create, dpt__cpu_attention_forward,
                          dpt__cpu_attention_backward},
    [DPT_OP_TOKENS] = {dpt__cpu_tokens_create, dpt__cpu_tokens_forward, dpt__cpu_tokens_backward},
    [DPT_OP_TOKEN_SELECT] = {dpt__cpu_tokens_create, dpt__cpu_token_select_forward,
                             dpt__cpu_token_select_backward},
    [DPT_OP_MUL] = {dpt__cpu_mul_create, dpt__cpu_mul_forward, dpt__cpu_mul_backward},
    [DPT_OP_DROPOUT] = {dpt__cpu_drop_create, dpt__cpu_drop_forward, dpt__cpu_drop_backward},
    [DPT_OP_DROP_PATH] = {dpt__cpu_drop_create, dpt__cpu_drop_forward, dpt__cpu_drop_backward},
};

static dpt_status_t cpu_op_create(dpt_backend_t *be, const dpt_op_desc_t *d, dpt_op_t **out,
                                  dpt_op_info_t *info)
{
    DPT_CHECK(dpt__op_shape(d, info));
    const dpt__op_impl_t *row = dpt__op_row(cpu_ops, d->kind);
    if (!row)
        return dpt__op_unsupported("cpu backend", d->kind);
    if (d->kind == DPT_OP_ADD && d->in[0].layout != d->in[1].layout)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "add: inputs in different layouts");
    if (d->kind == DPT_OP_XENT && d->in[0].layout != DPT_LAYOUT_NCHW)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "softmax_xent: input must be plain");
    for (int i = 0; i < dpt_op_n_inputs(d->kind); i++)
        if (d->in[i].layout < 0 || d->in[i].layout > be->n_layouts)
            return dpt_error_set(DPT_ERR_INVALID_ARG, "cpu backend: unknown layout %d",
                                 d->in[i].layout);
    dpt_op_t *op = dpt_calloc(sizeof *op);
    if (!op)
        return dpt_error_set(DPT_ERR_NOMEM, "cpu backend: out of memory");
    op->be = be;
    op->d = *d;
    op->info = *info;
    op->src_md = dpt__cpu_tensor_md(be, &d->in[0]);
    snprintf(op->info.impl, sizeof op->info.impl, "%s",
             d->kind == DPT_OP_FC ? "openblas" : "c");   /* oneDNN ops overwrite this */
    dpt_status_t st = DPT_OK;
    if (row->create)
        DPT_CHECK_GOTO(row->create(be, op), st, fail);
    *info = op->info;
    *out = op;
    return DPT_OK;
fail:
    cpu_op_destroy(op);
    return st;
}

static dpt_status_t cpu_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt__op_impl_t *row = dpt__op_row(cpu_ops, op->d.kind);
    return row ? row->forward(op, a) : dpt__op_unsupported("cpu backend", op->d.kind);
}

static dpt_status_t cpu_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt__op_impl_t *row = dpt__op_row(cpu_ops, op->d.kind);
    return row && row->backward ? row->backward(op, a)
                                : dpt__op_unsupported("cpu backend", op->d.kind);
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
    dnnl_memory_desc_t plain = dpt__cpu_plain_md(t->n, t->c, t->h, t->w, dnnl_nchw);
    dnnl_memory_desc_t blk = be->layouts[t->layout - 1];
    reorder_t r = {0};
    dpt_status_t st = to_layout ? dpt__cpu_make_reorder(be, &plain, &blk, &r)
                                : dpt__cpu_make_reorder(be, &blk, &plain, &r);
    if (st == DPT_OK)
        st = dpt__cpu_run_reorder(be, &r, src, dst);
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
