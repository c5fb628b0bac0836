/* cuda.h: what the rest of dptrain (trainer, optimizer, collectives, input pipeline) may ask the
 * `cuda` compute backend (dpt_backend_cuda, src/backend/cuda/). The ops themselves go through
 * the generic interface of backend.h.
 *
 * Available only in builds with CUDA (DPT_HAVE_CUDA from "dptrain/config.h" is 1); guard every
 * call with #if DPT_HAVE_CUDA. Functions taking a dpt_backend_t require one made by
 * dpt_backend_cuda.create (passing another backend's handle is undefined).
 *
 * Threads: CUDA's current device is per host thread. The backend selects its device in create();
 * any other thread that touches its memory or stream must first call
 * cudaSetDevice(dpt_cuda_device(be)).
 */
#ifndef DPT_CUDA_H
#define DPT_CUDA_H

#include <stddef.h>

#include "dptrain/backend.h"
#include "dptrain/status.h"
#include "dptrain/tensor.h"

/* Number of CUDA devices visible to this process; 0 when there is none, no driver, or the
 * driver is older than the toolkit (never fails, never aborts). */
int dpt_cuda_device_count(void);

/* Why dpt_cuda_device_count() returned 0, e.g. "CUDA driver version is insufficient for CUDA
 * runtime version" or "no CUDA-capable device is detected"; "" when there are devices.
 * Static string. */
const char *dpt_cuda_no_device_reason(void);

/* The backend's compute stream (a cudaStream_t, returned as void * so this header needs no CUDA
 * header). Every op, memcpy, import and export of `be` is queued on it in call order (alloc's
 * zero fill too, but alloc waits for it). Work queued by others on other streams must be ordered against it with events
 * (e.g. the gradient all-reduce waits on an event recorded here after backward). The stream is
 * blocking: work on the legacy default stream (plain cudaMemcpy, cudaMemset) waits for it and
 * it waits for that work. Borrowed: valid until be is destroyed. */
void *dpt_cuda_stream(dpt_backend_t *be);

/* Device ordinal `be` runs on (dpt_backend_config_t.device). */
int dpt_cuda_device(dpt_backend_t *be);

/* Activation precision of `be` (dpt_backend_config_t.precision). */
dpt_precision_t dpt_cuda_precision(dpt_backend_t *be);

/* Layout id of activations stored at precision p by the cuda backend: DPT_LAYOUT_NCHW for
 * FP32, a private 16-bit plain-NCHW-order layout for BF16 and FP16 (2 bytes per element). */
int dpt_cuda_layout(dpt_precision_t p);

/* Bytes per element of a tensor in cuda layout `layout` (4 for DPT_LAYOUT_NCHW, 2 for the 16-bit
 * layouts, 0 for a layout the cuda backend does not know). */
size_t dpt_cuda_layout_elem_size(int layout);

/* Convert float32 plain-NCHW data already on the device (src_dev, dpt_tensor_count(dst) floats)
 * into tensor dst of any layout this backend makes, on the compute stream (asynchronous; src_dev
 * must stay valid until the stream reaches the copy). For the GPU-side input pipeline.
 * DPT_ERR_UNSUPPORTED for an unknown layout, DPT_ERR_CUDA when the launch fails. */
dpt_status_t dpt_cuda_import_device(dpt_backend_t *be, const float *src_dev, dpt_tensor_t *dst);

#endif
