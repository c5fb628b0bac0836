/* internal.h: helpers shared by the backends (not public API). */
#ifndef DPT_BACKEND_INTERNAL_H
#define DPT_BACKEND_INTERNAL_H

#include "dptrain/backend.h"

/* Validate an op descriptor and fill `info` with the plain-NCHW output shape, parameter counts
 * and forward FLOPs, exactly as the ref backend defines them. Backends with private layouts
 * start from this and then adjust info->out.layout and info->out.nbytes. */
dpt_status_t dpt__op_shape(const dpt_op_desc_t *d, dpt_op_info_t *info);
/* The part of it for layernorm, linear, attention, tokens and token_select (op_shape_tokens.c);
 * DPT_ERR_UNSUPPORTED for a kind it does not know. */
dpt_status_t dpt__op_shape_tokens(const dpt_op_desc_t *d, dpt_op_info_t *info);

/* One op kind in a backend: how it is built and run. Every backend dispatches from a table of
 * these indexed by dpt_op_kind_t (designated initializers), so that a new op is one row per
 * backend (plus its shape rule in dpt__op_shape), not a case in three switches. create may be
 * NULL (nothing to build beyond the common part); a row with no forward is an op the backend
 * does not have (op_create says so, naming the backend and the op). */
typedef struct dpt__op_impl {
    dpt_status_t (*create)(dpt_backend_t *be, dpt_op_t *op);
    dpt_status_t (*forward)(dpt_op_t *op, const dpt_op_args_t *a);
    dpt_status_t (*backward)(dpt_op_t *op, const dpt_op_args_t *a);
} dpt__op_impl_t;

/* The row of `kind` in a backend's table of DPT_OP_COUNT_ rows, or NULL when the kind is outside
 * the enum or the backend does not have it (no forward). */
const dpt__op_impl_t *dpt__op_row(const dpt__op_impl_t *table, dpt_op_kind_t kind);
/* DPT_ERR_UNSUPPORTED naming the backend and the op ("cpu backend: op maxpool (2) is not
 * implemented"). */
dpt_status_t dpt__op_unsupported(const char *backend, dpt_op_kind_t kind);

#endif
