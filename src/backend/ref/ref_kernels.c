/* ref_kernels.c: instantiates the reference kernels for float and double. */
#include <math.h>

#include "backend/ref/ref_kernels.h"

#define DPT_REF_CAT2(a, b) a##b
#define DPT_REF_CAT(a, b) DPT_REF_CAT2(a, b)

#define T float
#define S f32
#include "backend/ref/ref_kernels.inc"
#include "backend/ref/ref_kernels_attention.inc"
#include "backend/ref/ref_kernels_tokens.inc"
#undef T
#undef S

#define T double
#define S f64
#include "backend/ref/ref_kernels.inc"
#include "backend/ref/ref_kernels_attention.inc"
#include "backend/ref/ref_kernels_tokens.inc"
#undef T
#undef S
