/* adamw_cuda.cu: the AdamW step of adamw.c on device arenas: one grid-stride kernel per
 * parameter segment, each element updated independently with the host loop's float32
 * operations in the host loop's order (the scalars come from dpt_adamw_scalars). */
#include <cuda_runtime.h>

extern "C" {
#include "dptrain/optim.h"
}

#include "core/cuda_try.h"

#define CUDA_TRY(call) DPT_CUDA_TRY("adamw", call)

__global__ void adamw_segment_kernel(float *__restrict__ p, const float *__restrict__ grad,
                                     float *__restrict__ m, float *__restrict__ v, size_t n,
                                     float keep, float step_size, float bc2s, float b1c, float b2,
                                     float b2c, float eps, float gscale)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float gi = grad[i] * gscale;
        float mi = __fadd_rn(m[i], __fmul_rn(b1c, __fsub_rn(gi, m[i])));
        float vi = __fadd_rn(__fmul_rn(b2, v[i]), __fmul_rn(__fmul_rn(b2c, gi), gi));
        m[i] = mi;
        v[i] = vi;
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2s), eps);
        p[i] = __fsub_rn(__fmul_rn(p[i], keep), __fmul_rn(step_size, __fdiv_rn(mi, denom)));
    }
}

extern "C" dpt_status_t dpt_adamw_step_device(const dpt_sgd_config_t *cfg, float lr,
                                              float grad_scale, uint64_t t, float *params,
                                              const float *grads, float *m, float *v,
                                              const dpt_param_segment_t *segs, int n_segs,
                                              void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    float step_size, bc2s;
    dpt_adamw_scalars(cfg, lr, t ? t : 1, &step_size, &bc2s);
    const float b1c = 1.0f - cfg->adam_beta1, b2 = cfg->adam_beta2, b2c = 1.0f - b2;
    const unsigned block = 256;
    for (int s = 0; s < n_segs; s++) {
        size_t n = segs[s].count;
        if (!n)
            continue;
        size_t off = segs[s].offset;
        float keep = segs[s].decay ? 1.0f - lr * cfg->weight_decay : 1.0f;
        size_t g = (n + block - 1) / block;
        unsigned grid = (unsigned)(g < 4096 ? g : 4096);
        adamw_segment_kernel<<<grid, block, 0, st>>>(params + off, grads + off, m + off, v + off,
                                                      n, keep, step_size, bc2s, b1c, b2, b2c,
                                                      cfg->adam_eps, grad_scale);
        CUDA_TRY(cudaGetLastError());
    }
    return DPT_OK;
}
