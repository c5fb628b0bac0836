/* cpu_ops.c: the `cpu` backend's ops other than convolution: batch norm and pooling (oneDNN,
 * created on the layout of their input), fully connected (OpenBLAS sgemm over the OpenMP team)
 * and flatten (reordering a blocked input to plain), the elementwise ops (OpenMP loops on the
 * whole, possibly padded, buffer) and softmax cross-entropy (the ref kernels). */
#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "backend/ref/ref_kernels.h"
#include "dptrain/alloc.h"

/* The workspace of a forward primitive (max pooling, BN with fused relu), when it has one. */
static dpt_status_t make_ws(dpt_backend_t *be, const_dnnl_primitive_desc_t fpd, dpt_op_t *op)
{
    const dnnl_memory_desc_t *ws = dpt__cpu_query(fpd, dnnl_query_workspace_md);
    if (!ws || !dnnl_memory_desc_get_size(ws))
        return DPT_OK;
    DPT_CHECK(dpt__cpu_mem(be, ws, &op->m_ws));
    op->ws = dpt_calloc(dnnl_memory_desc_get_size(ws));
    return op->ws ? DPT_OK : dpt_error_set(DPT_ERR_NOMEM, "cpu backend: out of memory");
}

/* ---- batch norm ------------------------------------------------------------------------- */

dpt_status_t dpt__cpu_bn_create(dpt_backend_t *be, dpt_op_t *op)
{
    const dpt_op_desc_t *d = &op->d;
    unsigned flags = dnnl_use_scale | dnnl_use_shift | (d->fuse_relu ? dnnl_fuse_norm_relu : 0);
    dnnl_batch_normalization_desc_t fd, id, bd;
    DN(dnnl_batch_normalization_forward_desc_init(&fd, dnnl_forward_training, &op->src_md,
                                                  d->bn_eps, flags), "bnorm_forward_desc_init");
    dnnl_primitive_desc_t fpd;
    DPT_CHECK(dpt__cpu_make_prim(be, &fd, NULL, &op->fwd, &fpd));
    dpt__cpu_set_impl(fpd, &op->info);
    dpt_status_t st = DPT_OK;
    dnnl_primitive_desc_t bpd = NULL;
    DPT_CHECK_GOTO(make_ws(be, fpd, op), st, done);
    if (dnnl_batch_normalization_forward_desc_init(&id, dnnl_forward_inference, &op->src_md,
                                                   d->bn_eps, flags | dnnl_use_global_stats)
        != dnnl_success) {
        st = dpt_error_set(DPT_ERR_DNNL, "oneDNN: bnorm inference desc failed");
        goto done;
    }
    DPT_CHECK_GOTO(dpt__cpu_make_prim(be, &id, NULL, &op->fwd_inf, NULL), st, done);
    if (dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &op->src_md, &op->src_md,
                                                    d->bn_eps, flags) != dnnl_success) {
        st = dpt_error_set(DPT_ERR_DNNL, "oneDNN: bnorm backward desc failed");
        goto done;
    }
    DPT_CHECK_GOTO(dpt__cpu_make_prim(be, &bd, fpd, &op->bwd_data, &bpd), st, done);
    dnnl_memory_desc_t c_md;
    dnnl_dims_t cdims = {d->in[0].c};
    dnnl_memory_desc_init_by_tag(&c_md, 1, cdims, dnnl_f32, dnnl_x);
    dnnl_memory_t *cm[] = {&op->m_mean, &op->m_var, &op->m_scale, &op->m_shift, &op->m_dscale,
                           &op->m_dshift};
    for (size_t i = 0; i < sizeof cm / sizeof cm[0]; i++)
        DPT_CHECK_GOTO(dpt__cpu_mem(be, &c_md, cm[i]), st, done);
    DPT_CHECK_GOTO(dpt__cpu_mem(be, &op->src_md, &op->m_src), st, done);
    DPT_CHECK_GOTO(dpt__cpu_mem(be, &op->src_md, &op->m_dst), st, done);
    DPT_CHECK_GOTO(dpt__cpu_mem(be, &op->src_md, &op->m_dsrc), st, done);
    DPT_CHECK_GOTO(dpt__cpu_mem(be, &op->src_md, &op->m_ddst), st, done);
    op->mean = dpt_calloc((size_t)d->in[0].c * sizeof(float));
    op->var = dpt_calloc((size_t)d->in[0].c * sizeof(float));
    op->dst_md = op->src_md;
    if (!op->mean || !op->var)
        st = dpt_error_set(DPT_ERR_NOMEM, "cpu backend: out of memory");
    else
        st = dpt__cpu_set_layout(be, &op->dst_md, &op->info.out);
done:
    dpt__cpu_pds_destroy(fpd, bpd, NULL);
    return st;
}

dpt_status_t dpt__cpu_bn_forward(dpt_op_t *op, const dpt_op_args_t *a)
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
        return dpt__cpu_run(op->be, &op->fwd_inf, args, 6);
    }
    arg_t args[] = {{DNNL_ARG_SRC, op->m_src, a->x[0]->data},
                    {DNNL_ARG_MEAN, op->m_mean, op->mean},
                    {DNNL_ARG_VARIANCE, op->m_var, op->var},
                    {DNNL_ARG_SCALE, op->m_scale, a->w},
                    {DNNL_ARG_SHIFT, op->m_shift, a->w + C},
                    {DNNL_ARG_DST, op->m_dst, a->y->data},
                    {DNNL_ARG_WORKSPACE, op->m_ws, op->ws}};
    DPT_CHECK(dpt__cpu_run(op->be, &op->fwd, args, 7));
    const dpt_tensor_t *x = &op->d.in[0];
    double m = op->d.bn_momentum, M = (double)x->n * x->h * x->w;
    double unbias = M > 1 ? M / (M - 1) : 1.0;
    for (int c = 0; c < C; c++) {
        rm[c] = (float)((1 - m) * rm[c] + m * op->mean[c]);
        rv[c] = (float)((1 - m) * rv[c] + m * op->var[c] * unbias);
    }
    return DPT_OK;
}

dpt_status_t dpt__cpu_bn_backward(dpt_op_t *op, const dpt_op_args_t *a)
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
    return dpt__cpu_run(op->be, &op->bwd_data, args, 10);
}

/* ---- pooling (maxpool, gap) ------------------------------------------------------------- */

dpt_status_t dpt__cpu_pool_create(dpt_backend_t *be, dpt_op_t *op)
{
    const dpt_op_desc_t *d = &op->d;
    const dpt_tensor_t *o = &op->info.out;
    int avg = d->kind == DPT_OP_GAP;
    dnnl_dims_t kernel = {avg ? d->in[0].h : d->pool_k, avg ? d->in[0].w : d->pool_k};
    dnnl_dims_t strides = {avg ? 1 : d->pool_stride, avg ? 1 : d->pool_stride};
    dnnl_dims_t pad = {avg ? 0 : d->pool_pad, avg ? 0 : d->pool_pad};
    dnnl_alg_kind_t alg = avg ? dnnl_pooling_avg_exclude_padding : dnnl_pooling_max;
    dnnl_memory_desc_t dst = dpt__cpu_plain_md(o->n, o->c, o->h, o->w,
                                               op->d.in[0].layout ? dnnl_format_tag_any
                                                                  : dnnl_nchw);
    dnnl_pooling_desc_t fd, bd;
    DN(dnnl_pooling_forward_desc_init(&fd, dnnl_forward_training, alg, &op->src_md, &dst, strides,
                                      kernel, pad, pad), "pooling_forward_desc_init");
    dnnl_primitive_desc_t fpd, bpd = NULL;
    DPT_CHECK(dpt__cpu_make_prim(be, &fd, NULL, &op->fwd, &fpd));
    dpt__cpu_set_impl(fpd, &op->info);
    op->dst_md = *dpt__cpu_query(fpd, dnnl_query_dst_md);
    dpt_status_t st = DPT_OK;
    DPT_CHECK_GOTO(make_ws(be, fpd, op), st, done);
    if (dnnl_pooling_backward_desc_init(&bd, alg, &op->src_md, &op->dst_md, strides, kernel, pad,
                                        pad) != dnnl_success) {
        st = dpt_error_set(DPT_ERR_DNNL, "oneDNN: pooling_backward_desc_init failed");
        goto done;
    }
    DPT_CHECK_GOTO(dpt__cpu_make_prim(be, &bd, fpd, &op->bwd_data, &bpd), st, done);
    st = dpt__cpu_io_mems(be, op);
done:
    dpt__cpu_pds_destroy(fpd, bpd, NULL);
    return st;
}

dpt_status_t dpt__cpu_pool_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    arg_t args[] = {{DNNL_ARG_SRC, op->m_src, a->x[0]->data},
                    {DNNL_ARG_DST, op->m_dst, a->y->data},
                    {DNNL_ARG_WORKSPACE, op->m_ws, op->ws}};
    return dpt__cpu_run(op->be, &op->fwd, args, 3);
}

dpt_status_t dpt__cpu_pool_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    if (!a->dx[0])
        return DPT_OK;
    arg_t args[] = {{DNNL_ARG_DIFF_DST, op->m_ddst, a->dy->data},
                    {DNNL_ARG_WORKSPACE, op->m_ws, op->ws},
                    {DNNL_ARG_DIFF_SRC, op->m_dsrc, a->dx[0]->data}};
    return dpt__cpu_run(op->be, &op->bwd_data, args, 3);
}

/* ---- fully connected and flatten -------------------------------------------------------- */

/* fc, flatten: a reorder of a blocked input to plain NCHW and of a plain gradient back. */
dpt_status_t dpt__cpu_plain_io_create(dpt_backend_t *be, dpt_op_t *op)
{
    if (op->d.in[0].layout == DPT_LAYOUT_NCHW)
        return DPT_OK;
    const dpt_tensor_t *x = &op->d.in[0];
    dnnl_memory_desc_t plain = dpt__cpu_plain_md(x->n, x->c, x->h, x->w, dnnl_nchw);
    DPT_CHECK(dpt__cpu_make_reorder(be, &op->src_md, &plain, &op->x_to_plain));
    DPT_CHECK(dpt__cpu_make_reorder(be, &plain, &op->src_md, &op->plain_to_dx));
    if (op->d.kind == DPT_OP_FC) {
        DPT_CHECK(dpt__cpu_alloc_for(&plain, &op->x_plain));
        DPT_CHECK(dpt__cpu_alloc_for(&plain, &op->dx_plain));
    }
    return DPT_OK;
}

/* C[M,N] = op(A)[M,K] op(B)[K,N], row-major, with the rows of C split across the OpenMP team and
 * each slice one single-threaded OpenBLAS call: one thread pool for the whole backend (OpenBLAS's
 * own pthreads spinning next to oneDNN's OpenMP threads cost 2x on the fc layers at 2 threads). */
void dpt__cpu_par_sgemm(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
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

dpt_status_t dpt__cpu_fc_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *x = &op->d.in[0];
    int N = x->n, IN = x->c * x->h * x->w, OUT = op->d.out_features;
    const float *xp = a->x[0]->data;
    if (op->x_plain) {
        DPT_CHECK(dpt__cpu_run_reorder(op->be, &op->x_to_plain, xp, op->x_plain));
        xp = op->x_plain;
    }
    dpt__cpu_par_sgemm(0, 1, N, OUT, IN, xp, IN, a->w, IN, a->y->data, OUT);
    if (op->d.has_bias)
        fc_bias_rows(a->y->data, a->w + op->info.n_weights, N, OUT);
    return DPT_OK;
}

dpt_status_t dpt__cpu_fc_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *x = &op->d.in[0];
    int N = x->n, IN = x->c * x->h * x->w, OUT = op->d.out_features;
    const float *xp = op->x_plain ? op->x_plain : a->x[0]->data;   /* x_plain: from forward */
    const float *dy = a->dy->data;
    dpt__cpu_par_sgemm(1, 0, OUT, IN, N, dy, OUT, xp, IN, a->dw, IN);
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
        dpt__cpu_par_sgemm(0, 0, N, IN, OUT, dy, OUT, a->w, IN, dx, IN);
        if (op->dx_plain)
            DPT_CHECK(dpt__cpu_run_reorder(op->be, &op->plain_to_dx, op->dx_plain,
                                           a->dx[0]->data));
    }
    return DPT_OK;
}

dpt_status_t dpt__cpu_flatten_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    if (op->x_to_plain.p)
        return dpt__cpu_run_reorder(op->be, &op->x_to_plain, a->x[0]->data, a->y->data);
    memcpy(a->y->data, a->x[0]->data, dpt_tensor_count(a->x[0]) * sizeof(float));
    return DPT_OK;
}

dpt_status_t dpt__cpu_flatten_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    if (!a->dx[0])
        return DPT_OK;
    const float *dy = a->dy ? a->dy->data : NULL;
    if (op->plain_to_dx.p)
        return dpt__cpu_run_reorder(op->be, &op->plain_to_dx, dy, a->dx[0]->data);
    memcpy(a->dx[0]->data, dy, dpt_tensor_count(a->x[0]) * sizeof(float));
    return DPT_OK;
}

/* ---- elementwise ------------------------------------------------------------------------ */

/* Elements of a tensor's buffer, padding included. */
static long elems(const dpt_tensor_t *t) { return (long)(t->nbytes / sizeof(float)); }

dpt_status_t dpt__cpu_eltwise_create(dpt_backend_t *be, dpt_op_t *op)
{
    (void)be;
    /* elementwise on the whole (padded) buffer: same layout as the input */
    op->info.out.layout = op->d.in[0].layout;
    op->info.out.nbytes = op->d.in[0].nbytes;
    return DPT_OK;
}

dpt_status_t dpt__cpu_relu_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    (void)op;
    const float *x = a->x[0]->data;
    float *y = a->y->data;
    long n = elems(a->x[0]);
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++)
        y[i] = x[i] > 0 ? x[i] : 0.0f;
    return DPT_OK;
}

dpt_status_t dpt__cpu_relu_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    (void)op;
    float *dx = a->dx[0] ? a->dx[0]->data : NULL;
    const float *dy = a->dy ? a->dy->data : NULL, *y = a->y->data;
    long n = elems(a->x[0]);
    if (dx)
#pragma omp parallel for simd schedule(static)
        for (long i = 0; i < n; i++)
            dx[i] = y[i] > 0 ? dy[i] : 0.0f;
    return DPT_OK;
}

dpt_status_t dpt__cpu_celu_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    dpt__ref_celu_fwd_f32(a->x[0]->data, a->y->data, elems(a->x[0]), op->d.alpha);
    return DPT_OK;
}

dpt_status_t dpt__cpu_celu_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    if (a->dx[0])
        dpt__ref_celu_bwd_f32(a->x[0]->data, a->dy ? a->dy->data : NULL, a->dx[0]->data,
                              elems(a->x[0]), op->d.alpha);
    return DPT_OK;
}

dpt_status_t dpt__cpu_scale_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const float *x = a->x[0]->data;
    float *y = a->y->data;
    long n = elems(a->x[0]);
    const float s = op->d.alpha;
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++)
        y[i] = s * x[i];
    return DPT_OK;
}

dpt_status_t dpt__cpu_scale_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    float *dx = a->dx[0] ? a->dx[0]->data : NULL;
    const float *dy = a->dy ? a->dy->data : NULL;
    long n = elems(a->x[0]);
    const float s = op->d.alpha;
    if (dx)
#pragma omp parallel for simd schedule(static)
        for (long i = 0; i < n; i++)
            dx[i] = s * dy[i];
    return DPT_OK;
}

dpt_status_t dpt__cpu_add_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    (void)op;
    const float *x = a->x[0]->data, *x1 = a->x[1]->data;
    float *y = a->y->data;
    long n = elems(a->x[0]);
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++)
        y[i] = x[i] + x1[i];
    return DPT_OK;
}

dpt_status_t dpt__cpu_add_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    (void)op;
    const float *dy = a->dy ? a->dy->data : NULL;
    for (int k = 0; k < 2; k++)
        if (a->dx[k])
            memcpy(a->dx[k]->data, dy, a->x[0]->nbytes);
    return DPT_OK;
}

/* ---- softmax cross-entropy -------------------------------------------------------------- */

dpt_status_t dpt__cpu_xent_create(dpt_backend_t *be, dpt_op_t *op)
{
    (void)be;
    op->prob = dpt_calloc(dpt_tensor_count(&op->d.in[0]) * sizeof(float));
    return op->prob ? DPT_OK : dpt_error_set(DPT_ERR_NOMEM, "cpu backend: out of memory");
}

dpt_status_t dpt__cpu_xent_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    double l = dpt__ref_xent_fwd_f32(a->x[0]->data, a->labels, op->prob, a->x[0]->n, a->x[0]->c,
                                     a->n_valid, op->d.label_smoothing, a->correct);
    if (a->loss)
        *a->loss = (float)l;
    memcpy(a->y->data, op->prob, dpt_tensor_count(a->x[0]) * sizeof(float));
    return DPT_OK;
}

dpt_status_t dpt__cpu_xent_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    if (a->dx[0])
        dpt__ref_xent_bwd_f32(op->prob, a->labels, a->dx[0]->data, a->x[0]->n, a->x[0]->c,
                              a->n_valid, op->d.label_smoothing);
    return DPT_OK;
}
