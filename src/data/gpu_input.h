/* gpu_input.h: the device end of the input pipeline (src/data/gpu_input.cu, CUDA builds only).
 * The loader's host batches (normalized NCHW floats, crop/flip deferred: loader cfg.defer_aug)
 * are copied into pinned host slots (cudaHostAlloc), sent to device slots by cudaMemcpyAsync on a
 * copy stream of their own, and taken by the compute stream after an event: a kernel applies each
 * sample's random crop (zero padding) and horizontal flip while writing the model's input tensor,
 * with the offsets and flip bit the loader drew from (seed, epoch, position), so the result
 * equals the CPU augmentation bit for bit. Two slots: the next batch is staged (its copy runs)
 * while the compute stream works on the current one. Nothing is allocated after create. */
#ifndef DPT_DATA_GPU_INPUT_H
#define DPT_DATA_GPU_INPUT_H

#include <stdint.h>

#include "dptrain/loader.h"
#include "dptrain/status.h"

typedef struct dpt_gpu_input dpt_gpu_input_t;

/* Batches of (batch, c, h, w) floats; crop_pad as the loader's; compute_stream: the cudaStream_t
 * the model runs on. The current CUDA device must be the backend's. */
dpt_status_t dpt_gpu_input_create(int batch, int c, int h, int w, int crop_pad,
                                  void *compute_stream, dpt_gpu_input_t **out);
void dpt_gpu_input_destroy(dpt_gpu_input_t *g);

/* Copy host batch b (x, y, aug, n_valid; b may be released afterwards) into the next slot and
 * queue its host-to-device copy. At most two batches staged and not taken (else
 * DPT_ERR_INTERNAL). Waits only for the slot's previous use to end. */
dpt_status_t dpt_gpu_input_stage(dpt_gpu_input_t *g, const dpt_batch_t *b);
/* Batches staged and not yet taken (0, 1 or 2). */
int dpt_gpu_input_pending(const dpt_gpu_input_t *g);
/* Take the oldest staged batch: the compute stream waits for its copy, then the crop/flip kernel
 * writes dst (device, batch x c x h x w floats, plain NCHW) on the compute stream. *labels (host,
 * valid until this slot is staged again) and *n_valid describe the batch. */
dpt_status_t dpt_gpu_input_take(dpt_gpu_input_t *g, float *dst, const int32_t **labels,
                                int *n_valid);
/* Forget staged batches (a new epoch); waits for their copies. */
dpt_status_t dpt_gpu_input_reset(dpt_gpu_input_t *g);

#endif
