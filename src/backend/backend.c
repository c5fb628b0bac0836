/* backend.c: the registry of compiled-in compute backends (NCCL's transport table pattern). */
#include <string.h>

#include "backend/internal.h"
#include "dptrain/backend.h"
#include "dptrain/config.h"

static const dpt_backend_ops_t *const backends[] = {
    &dpt_backend_ref,
#if DPT_HAVE_DNNL
    &dpt_backend_cpu,
#endif
#if DPT_HAVE_CUDA
    &dpt_backend_cuda,
#endif
};

const dpt_backend_ops_t *dpt_backend_find(const char *name)
{
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++)
        if (!strcmp(backends[i]->name, name))
            return backends[i];
    return NULL;
}

const char *dpt_backend_list(void)
{
    return "ref"
#if DPT_HAVE_DNNL
           ",cpu"
#endif
#if DPT_HAVE_CUDA
           ",cuda"
#endif
        ;
}

dpt_status_t dpt_backend_memcpy(const dpt_backend_ops_t *ops, dpt_backend_t *be, void *dst,
                                const void *src, size_t nbytes, dpt_copy_kind_t kind)
{
    if (ops->memcpy)
        return ops->memcpy(be, dst, src, nbytes, kind);
    if (nbytes)
        memcpy(dst, src, nbytes);
    return DPT_OK;
}

dpt_status_t dpt_backend_sync(const dpt_backend_ops_t *ops, dpt_backend_t *be)
{
    return ops->sync ? ops->sync(be) : DPT_OK;
}

const char *dpt_precision_name(dpt_precision_t p)
{
    static const char *names[DPT_PREC_COUNT_] = {"fp32", "bf16", "fp16"};
    return (unsigned)p < DPT_PREC_COUNT_ ? names[p] : "?";
}

dpt_status_t dpt_precision_parse(const char *s, dpt_precision_t *out)
{
    for (int p = 0; p < DPT_PREC_COUNT_; p++)
        if (s && !strcmp(s, dpt_precision_name((dpt_precision_t)p))) {
            *out = (dpt_precision_t)p;
            return DPT_OK;
        }
    return dpt_error_set(DPT_ERR_INVALID_ARG, "unknown precision '%s' (fp32, bf16, fp16)",
                         s ? s : "(null)");
}

const char *dpt_op_kind_name(dpt_op_kind_t k)
{
    static const char *names[DPT_OP_COUNT_] = {
        [DPT_OP_CONV2D] = "conv2d", [DPT_OP_BATCHNORM] = "batchnorm", [DPT_OP_RELU] = "relu",
        [DPT_OP_CELU] = "celu",     [DPT_OP_MAXPOOL] = "maxpool",     [DPT_OP_GAP] = "gap",
        [DPT_OP_FC] = "fc",         [DPT_OP_ADD] = "add",             [DPT_OP_FLATTEN] = "flatten",
        [DPT_OP_SCALE] = "scale",   [DPT_OP_XENT] = "softmax_xent",   [DPT_OP_SILU] = "silu",
        [DPT_OP_GELU] = "gelu",     [DPT_OP_SIGMOID] = "sigmoid",     [DPT_OP_LAYERNORM] = "layernorm",
        [DPT_OP_LINEAR] = "linear", [DPT_OP_ATTENTION] = "attention", [DPT_OP_TOKENS] = "tokens",
        [DPT_OP_TOKEN_SELECT] = "token_select", [DPT_OP_MUL] = "mul",
        [DPT_OP_DROPOUT] = "dropout", [DPT_OP_DROP_PATH] = "drop_path",
    };
    return (unsigned)k < DPT_OP_COUNT_ ? names[k] : "?";
}

const dpt__op_impl_t *dpt__op_row(const dpt__op_impl_t *table, dpt_op_kind_t kind)
{
    if ((unsigned)kind >= DPT_OP_COUNT_ || !table[kind].forward)
        return NULL;
    return &table[kind];
}

dpt_status_t dpt__op_unsupported(const char *backend, dpt_op_kind_t kind)
{
    return dpt_error_set(DPT_ERR_UNSUPPORTED, "%s: op %s (%d) is not implemented", backend,
                         dpt_op_kind_name(kind), (int)kind);
}
