/* gpu_input.cu: pinned staging, asynchronous host-to-device copies and the crop/flip kernel of
 * the device input pipeline (gpu_input.h).
 *
 * Slot k cycles: stage (wait for copy_done[k] of its previous batch, host memcpy into the pinned
 * buffers, copy stream waits for used[k], cudaMemcpyAsync x and aug, record copy_done[k]) ->
 * take (compute stream waits for copy_done[k], the kernel reads device slot k, record used[k]).
 * So a pinned buffer is rewritten only after its last copy finished, and a device slot only after
 * the kernel that read it finished; nothing waits on the host for compute. */
#include <cuda_runtime.h>
#include <string.h>

extern "C" {
#include "data/gpu_input.h"
#include "dptrain/alloc.h"
}

#define NSLOT 2

struct dpt_gpu_input {
    int batch, c, h, w, pad;
    size_t sample;              /* c * h * w */
    cudaStream_t compute, copy;
    float *h_x[NSLOT];          /* pinned (batch, c, h, w) */
    int32_t *h_aug[NSLOT];      /* pinned (batch, 3) */
    int32_t *labels[NSLOT];     /* host copies (batch) */
    int n_valid[NSLOT];
    float *d_x[NSLOT];          /* device slots */
    int32_t *d_aug[NSLOT];
    cudaEvent_t copy_done[NSLOT], used[NSLOT];
    int staged_any[NSLOT];      /* copy_done[k] was recorded at least once */
    int head, count;            /* oldest staged slot, staged and not taken */
};

#include "core/cuda_try.h"

#define CUDA_TRY(call) DPT_CUDA_TRY("gpu input", call)

extern "C" void dpt_gpu_input_destroy(dpt_gpu_input_t *g)
{
    if (!g)
        return;
    if (g->copy)
        cudaStreamSynchronize(g->copy);
    for (int k = 0; k < NSLOT; k++) {
        if (g->h_x[k])
            cudaFreeHost(g->h_x[k]);
        if (g->h_aug[k])
            cudaFreeHost(g->h_aug[k]);
        if (g->d_x[k])
            cudaFree(g->d_x[k]);
        if (g->d_aug[k])
            cudaFree(g->d_aug[k]);
        if (g->copy_done[k])
            cudaEventDestroy(g->copy_done[k]);
        if (g->used[k])
            cudaEventDestroy(g->used[k]);
        dpt_free(g->labels[k]);
    }
    if (g->copy)
        cudaStreamDestroy(g->copy);
    dpt_free(g);
}

static dpt_status_t create(dpt_gpu_input_t *g)
{
    size_t nx = (size_t)g->batch * g->sample * sizeof(float);
    size_t na = (size_t)g->batch * 3 * sizeof(int32_t);
    CUDA_TRY(cudaStreamCreateWithFlags(&g->copy, cudaStreamNonBlocking));
    for (int k = 0; k < NSLOT; k++) {
        CUDA_TRY(cudaHostAlloc((void **)&g->h_x[k], nx, cudaHostAllocDefault));
        CUDA_TRY(cudaHostAlloc((void **)&g->h_aug[k], na, cudaHostAllocDefault));
        CUDA_TRY(cudaMalloc((void **)&g->d_x[k], nx));
        CUDA_TRY(cudaMalloc((void **)&g->d_aug[k], na));
        CUDA_TRY(cudaEventCreateWithFlags(&g->copy_done[k], cudaEventDisableTiming));
        CUDA_TRY(cudaEventCreateWithFlags(&g->used[k], cudaEventDisableTiming));
        g->labels[k] = (int32_t *)dpt_calloc((size_t)g->batch * sizeof(int32_t));
        if (!g->labels[k])
            return dpt_error_set(DPT_ERR_NOMEM, "gpu input: out of memory");
    }
    return DPT_OK;
}

extern "C" dpt_status_t dpt_gpu_input_create(int batch, int c, int h, int w, int crop_pad,
                                             void *compute_stream, dpt_gpu_input_t **out)
{
    *out = NULL;
    if (batch < 1 || c < 1 || h < 1 || w < 1 || crop_pad < 0)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "gpu input: bad shape %d x %d x %d x %d or "
                             "crop_pad %d", batch, c, h, w, crop_pad);
    dpt_gpu_input_t *g = (dpt_gpu_input_t *)dpt_calloc(sizeof *g);
    if (!g)
        return dpt_error_set(DPT_ERR_NOMEM, "gpu input: out of memory");
    g->batch = batch;
    g->c = c;
    g->h = h;
    g->w = w;
    g->pad = crop_pad;
    g->sample = (size_t)c * h * w;
    g->compute = (cudaStream_t)compute_stream;
    dpt_status_t st = create(g);
    if (st != DPT_OK) {
        dpt_gpu_input_destroy(g);
        return st;
    }
    *out = g;
    return DPT_OK;
}

extern "C" dpt_status_t dpt_gpu_input_stage(dpt_gpu_input_t *g, const dpt_batch_t *b)
{
    if (g->count == NSLOT)
        return dpt_error_set(DPT_ERR_INTERNAL, "gpu input: %d batches staged already", NSLOT);
    int k = (g->head + g->count) % NSLOT;
    if (g->staged_any[k])   /* the pinned buffers' previous copy must be done */
        CUDA_TRY(cudaEventSynchronize(g->copy_done[k]));
    size_t nx = (size_t)g->batch * g->sample * sizeof(float);
    size_t na = (size_t)g->batch * 3 * sizeof(int32_t);
    memcpy(g->h_x[k], b->x, nx);
    if (b->aug) {
        memcpy(g->h_aug[k], b->aug, na);
    } else {
        for (int i = 0; i < g->batch; i++) {
            g->h_aug[k][3 * i] = g->h_aug[k][3 * i + 1] = g->pad;
            g->h_aug[k][3 * i + 2] = 0;
        }
    }
    memcpy(g->labels[k], b->y, (size_t)g->batch * sizeof(int32_t));
    g->n_valid[k] = b->n_valid;
    /* the device slot may still be read by the kernel of its previous take */
    CUDA_TRY(cudaStreamWaitEvent(g->copy, g->used[k], 0));
    CUDA_TRY(cudaMemcpyAsync(g->d_x[k], g->h_x[k], nx, cudaMemcpyHostToDevice, g->copy));
    CUDA_TRY(cudaMemcpyAsync(g->d_aug[k], g->h_aug[k], na, cudaMemcpyHostToDevice, g->copy));
    CUDA_TRY(cudaEventRecord(g->copy_done[k], g->copy));
    g->staged_any[k] = 1;
    g->count++;
    return DPT_OK;
}

extern "C" int dpt_gpu_input_pending(const dpt_gpu_input_t *g)
{
    return g->count;
}

/* out(n, c, oy, ox) = in(n, c, oy + dy - pad, x' + dx - pad), x' = W-1-ox when flipped, else ox;
 * 0 outside the image (the loader's rule: padding is the normalized 0, the dataset mean). */
__global__ void crop_flip_kernel(const float *__restrict__ in, const int32_t *__restrict__ aug,
                                 float *__restrict__ out, int n, int c, int h, int w, int pad)
{
    size_t total = (size_t)n * c * h * w;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        int ox = (int)(i % w);
        int oy = (int)((i / w) % h);
        size_t plane = i / ((size_t)w * h);   /* n * c + channel */
        int s = (int)(plane / c);
        int dy = aug[3 * s], dx = aug[3 * s + 1], flip = aug[3 * s + 2];
        int sy = oy + dy - pad;
        int sx = (flip ? w - 1 - ox : ox) + dx - pad;
        out[i] = (sy >= 0 && sy < h && sx >= 0 && sx < w)
                     ? in[(plane * h + sy) * w + sx]
                     : 0.0f;
    }
}

extern "C" dpt_status_t dpt_gpu_input_take(dpt_gpu_input_t *g, float *dst,
                                           const int32_t **labels, int *n_valid)
{
    if (g->count == 0)
        return dpt_error_set(DPT_ERR_INTERNAL, "gpu input: no batch staged");
    int k = g->head;
    CUDA_TRY(cudaStreamWaitEvent(g->compute, g->copy_done[k], 0));
    size_t total = (size_t)g->batch * g->sample;
    const unsigned block = 256;
    size_t blocks = (total + block - 1) / block;
    crop_flip_kernel<<<(unsigned)(blocks < 65535 ? blocks : 65535), block, 0, g->compute>>>(
        g->d_x[k], g->d_aug[k], dst, g->batch, g->c, g->h, g->w, g->pad);
    CUDA_TRY(cudaGetLastError());
    CUDA_TRY(cudaEventRecord(g->used[k], g->compute));
    *labels = g->labels[k];
    *n_valid = g->n_valid[k];
    g->head = (g->head + 1) % NSLOT;
    g->count--;
    return DPT_OK;
}

extern "C" dpt_status_t dpt_gpu_input_reset(dpt_gpu_input_t *g)
{
    CUDA_TRY(cudaStreamSynchronize(g->copy));
    g->count = 0;
    return DPT_OK;
}
