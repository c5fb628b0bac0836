/* cpu_act.c: the `cpu` backend's smooth activations, SiLU, GELU (erf or tanh form) and sigmoid,
 * as oneDNN eltwise primitives created on the layout of their input (plain or blocked), like
 * batch norm and pooling in cpu_ops.c. One row of the op table in cpu_dnnl.c for all three.
 *
 * Why oneDNN and not the ref kernels (as CELU uses): the ref kernels compute in double, one
 * element at a time, while oneDNN's JIT eltwise kernels are vectorized float32 and use the
 * backend's OpenMP team. A quick measurement (2 threads, AVX-512, 8x64x32x32, forward plus
 * backward) gave 0.1-0.25 ms against 2-11 ms for the ref kernels. oneDNN also keeps a blocked
 * layout's padding zero; a loop over the whole buffer would write sigmoid(0) = 0.5 into the
 * padded channels. One exception: oneDNN 2.6 has no JIT kernel for sigmoid on a padded blocked
 * layout (channels not a multiple of the block), because sigmoid(0) != 0. There it picks its
 * reference kernel ("ref:any"), which is slower but still correct. Accuracy is far inside the
 * 1e-4 that check_cpu_backend holds the cpu backend to against the ref backend.
 *
 *   kind             forward alg                              backward reads
 *   silu             dnnl_eltwise_swish, alpha = 1            x  (no use_dst variant)
 *   gelu             dnnl_eltwise_gelu_erf / _gelu_tanh       x  (no use_dst variant)
 *   sigmoid          dnnl_eltwise_logistic_use_dst_for_bwd    y  (s' = s (1 - s))
 */
#include "backend/cpu/cpu_internal.h"

/* The oneDNN algorithm of an activation, and whether its backward takes dst instead of src. */
static dnnl_alg_kind_t act_alg(const dpt_op_desc_t *d, int *use_dst)
{
    *use_dst = d->kind == DPT_OP_SIGMOID;
    if (d->kind == DPT_OP_SILU)
        return dnnl_eltwise_swish;
    if (d->kind == DPT_OP_GELU)
        return d->gelu_tanh ? dnnl_eltwise_gelu_tanh : dnnl_eltwise_gelu_erf;
    return dnnl_eltwise_logistic_use_dst_for_bwd;
}

dpt_status_t dpt__cpu_act_create(dpt_backend_t *be, dpt_op_t *op)
{
    int use_dst;
    dnnl_alg_kind_t alg = act_alg(&op->d, &use_dst);
    const float alpha = 1.0f;   /* swish: y = x sigmoid(alpha x); ignored by the others */
    dnnl_eltwise_desc_t fd, bd;
    DN(dnnl_eltwise_forward_desc_init(&fd, dnnl_forward_training, alg, &op->src_md, alpha, 0.0f),
       "eltwise_forward_desc_init");
    dnnl_primitive_desc_t fpd, bpd = NULL;
    DPT_CHECK(dpt__cpu_make_prim(be, &fd, NULL, &op->fwd, &fpd));
    dpt__cpu_set_impl(fpd, &op->info);
    op->dst_md = *dpt__cpu_query(fpd, dnnl_query_dst_md);
    dpt_status_t st = DPT_OK;
    if (dnnl_eltwise_backward_desc_init(&bd, alg, &op->src_md, use_dst ? &op->dst_md : &op->src_md,
                                        alpha, 0.0f) != dnnl_success) {
        st = dpt_error_set(DPT_ERR_DNNL, "oneDNN: eltwise_backward_desc_init failed");
        goto done;
    }
    DPT_CHECK_GOTO(dpt__cpu_make_prim(be, &bd, fpd, &op->bwd_data, &bpd), st, done);
    st = dpt__cpu_io_mems(be, op);
done:
    dpt__cpu_pds_destroy(fpd, bpd, NULL);
    return st;
}

dpt_status_t dpt__cpu_act_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    arg_t args[] = {{DNNL_ARG_SRC, op->m_src, a->x[0]->data},
                    {DNNL_ARG_DST, op->m_dst, a->y->data}};
    return dpt__cpu_run(op->be, &op->fwd, args, 2);
}

dpt_status_t dpt__cpu_act_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    if (!a->dx[0])
        return DPT_OK;
    int use_dst;
    (void)act_alg(&op->d, &use_dst);
    arg_t args[] = {use_dst ? (arg_t){DNNL_ARG_DST, op->m_dst, a->y->data}
                            : (arg_t){DNNL_ARG_SRC, op->m_src, a->x[0]->data},
                    {DNNL_ARG_DIFF_DST, op->m_ddst, a->dy->data},
                    {DNNL_ARG_DIFF_SRC, op->m_dsrc, a->dx[0]->data}};
    return dpt__cpu_run(op->be, &op->bwd_data, args, 3);
}
