/* internal.h: helpers shared by the backends (not public API). */
#ifndef DPT_BACKEND_INTERNAL_H
#define DPT_BACKEND_INTERNAL_H

#include "dptrain/backend.h"

/* Validate an op descriptor and fill `info` with the plain-NCHW output shape, parameter counts
 * and forward FLOPs, exactly as the ref backend defines them. Backends with private layouts
 * start from this and then adjust info->out.layout and info->out.nbytes. */
dpt_status_t dpt__op_shape(const dpt_op_desc_t *d, dpt_op_info_t *info);

#endif
