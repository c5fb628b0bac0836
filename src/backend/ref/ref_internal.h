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

#endif
