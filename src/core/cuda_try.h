/* cuda_try.h: a CUDA runtime error as a dpt status, "<who>: cuda: <call>: <CUDA's message>"
 * (only for files built with CUDA: .cu files and code under #if DPT_HAVE_CUDA). */
#ifndef DPT_CORE_CUDA_TRY_H
#define DPT_CORE_CUDA_TRY_H

#include <cuda_runtime.h>

#ifdef __cplusplus   /* .cu files are C++ */
extern "C" {
#endif
#include "dptrain/status.h"
#ifdef __cplusplus
}
#endif

static inline dpt_status_t dpt__cuda_fail(const char *who, cudaError_t e, const char *call)
{
    return dpt_error_set(DPT_ERR_CUDA, "%s: cuda: %s: %s", who, call, cudaGetErrorString(e));
}

/* Return the status from the enclosing function when `call` fails. */
#define DPT_CUDA_TRY(who, call)                                                                \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess)                                                                 \
            return dpt__cuda_fail((who), e_, #call);                                           \
    } while (0)

#endif
