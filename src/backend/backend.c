/* backend.c: the registry of compiled-in compute backends (NCCL's transport table pattern). */
#include <string.h>

#include "dptrain/backend.h"
#include "dptrain/config.h"

static const dpt_backend_ops_t *const backends[] = {
    &dpt_backend_ref,
#if DPT_HAVE_DNNL
    &dpt_backend_cpu,
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
#if DPT_HAVE_DNNL
    return "ref,cpu";
#else
    return "ref";
#endif
}

const char *dpt_op_kind_name(dpt_op_kind_t k)
{
    static const char *names[DPT_OP_COUNT_] = {
        [DPT_OP_CONV2D] = "conv2d", [DPT_OP_BATCHNORM] = "batchnorm", [DPT_OP_RELU] = "relu",
        [DPT_OP_CELU] = "celu",     [DPT_OP_MAXPOOL] = "maxpool",     [DPT_OP_GAP] = "gap",
        [DPT_OP_FC] = "fc",         [DPT_OP_ADD] = "add",             [DPT_OP_FLATTEN] = "flatten",
        [DPT_OP_SCALE] = "scale",   [DPT_OP_XENT] = "softmax_xent",
    };
    return (unsigned)k < DPT_OP_COUNT_ ? names[k] : "?";
}
