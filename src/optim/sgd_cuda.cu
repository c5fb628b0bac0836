/* sgd_cuda.cu: the SGD step of sgd.c on device arenas, and the device scan for non-finite
 * gradients that drives the NaN policy and the fp16 loss scaler (optim.h). One grid-stride
 * kernel per parameter segment (a few dozen per step), each element updated independently in
 * float32 exactly as the host loop does it. */
#include <cuda_runtime.h>

extern "C" {
#include "dptrain/optim.h"
}

#include "core/cuda_try.h"

#define CUDA_TRY(call) DPT_CUDA_TRY("sgd", call)

static unsigned grid_for(size_t n, unsigned block)
{
    size_t g = (n + block - 1) / block;
    return (unsigned)(g < 4096 ? (g ? g : 1) : 4096);
}

/* g = grad * gscale; g += wd * p; v = mu * v + g; p -= lr * (nesterov ? g + mu * v : v). */
__global__ void sgd_segment_kernel(float *__restrict__ p, const float *__restrict__ grad,
                                   float *__restrict__ v, size_t n, float lr, float mu, float wd,
                                   float gscale, int nesterov)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float pi = p[i];
        float gi = grad[i] * gscale + wd * pi;
        float vi = mu * v[i] + gi;
        v[i] = vi;
        p[i] = pi - lr * (nesterov ? gi + mu * vi : vi);
    }
}

extern "C" dpt_status_t dpt_sgd_step_device(const dpt_sgd_config_t *cfg, float lr,
                                            float grad_scale, float *params, const float *grads,
                                            float *mom, const dpt_param_segment_t *segs,
                                            int n_segs, void *stream)
{
    if (cfg->optimizer != DPT_OPTIM_SGD)
        return dpt_error_set(DPT_ERR_UNSUPPORTED, "--optimizer lars: not available on the cuda "
                             "device yet (use sgd or adamw)");
    cudaStream_t st = (cudaStream_t)stream;
    const unsigned block = 256;
    for (int s = 0; s < n_segs; s++) {
        size_t n = segs[s].count;
        if (!n)
            continue;
        size_t off = segs[s].offset;
        float wd = segs[s].decay ? cfg->weight_decay : 0.0f;
        sgd_segment_kernel<<<grid_for(n, block), block, 0, st>>>(
            params + off, grads + off, mom + off, n, lr, cfg->momentum, wd, grad_scale,
            cfg->nesterov);
        CUDA_TRY(cudaGetLastError());
    }
    return DPT_OK;
}

__global__ void nonfinite_kernel(const float *__restrict__ v, size_t n, int *flag)
{
    int bad = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        bad |= !isfinite(v[i]);
    if (__syncthreads_or(bad) && threadIdx.x == 0)
        *flag = 1;   /* every writer writes 1: no atomics needed */
}

extern "C" dpt_status_t dpt_nonfinite_device(const float *v, size_t n, int *d_flag,
                                             int *nonfinite, void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    int h = 0;
    *nonfinite = 0;
    CUDA_TRY(cudaMemsetAsync(d_flag, 0, sizeof(int), st));
    if (n) {
        const unsigned block = 256;
        nonfinite_kernel<<<grid_for(n, block), block, 0, st>>>(v, n, d_flag);
        CUDA_TRY(cudaGetLastError());
    }
    CUDA_TRY(cudaMemcpyAsync(&h, d_flag, sizeof(int), cudaMemcpyDeviceToHost, st));
    CUDA_TRY(cudaStreamSynchronize(st));
    *nonfinite = h != 0;
    return DPT_OK;
}
