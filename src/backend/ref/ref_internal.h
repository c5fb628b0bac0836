/* ref_internal.h: what the files of the `ref` backend share: its op struct, and the rows of its
 * op table that live outside ref_backend.c (the transformer ops, one file each: ref_<op>.c). */
#ifndef DPT_REF_INTERNAL_H
#define DPT_REF_INTERNAL_H

#include <stdint.h>

#include "backend/internal.h"
#include "dptrain/backend.h"

struct dpt_backend {
    int unused;
};

struct dpt_op {
    dpt_op_desc_t d;
    dpt_op_info_t info;
    float *save;        /* BN: batch mean (C) then var (C); XENT: probabilities (N*K);
                           layernorm: mean then 1/std per position; attention: probabilities */
    int32_t *argmax;    /* MAXPOOL */
};

/* dropout and drop_path (ref_drop.c) */
dpt_status_t dpt__ref_drop_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__ref_drop_backward(dpt_op_t *op, const dpt_op_args_t *a);

/* mul (ref_mul.c) */
dpt_status_t dpt__ref_mul_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__ref_mul_backward(dpt_op_t *op, const dpt_op_args_t *a);

/* tokens and token_select (ref_embed.c) */
dpt_status_t dpt__ref_tokens_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__ref_tokens_backward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__ref_token_select_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__ref_token_select_backward(dpt_op_t *op, const dpt_op_args_t *a);

/* attention (ref_attention.c): create allocates op->save for the probabilities */
dpt_status_t dpt__ref_attention_create(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__ref_attention_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__ref_attention_backward(dpt_op_t *op, const dpt_op_args_t *a);

/* layernorm and linear (ref_tokens.c): layernorm's create allocates op->save for the mean and
 * 1/std of every position */
dpt_status_t dpt__ref_layernorm_create(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__ref_layernorm_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__ref_layernorm_backward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__ref_linear_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__ref_linear_backward(dpt_op_t *op, const dpt_op_args_t *a);

#endif
