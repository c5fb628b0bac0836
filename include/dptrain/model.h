/* model.h: a layer graph read from a text model file (models/NAME.cfg), built on one backend with
 * the batch size fixed at setup. Parameters, gradients and buffers (BN running statistics) each
 * live in one flat float32 arena, so the optimizer, the all-reduce and checkpoints see one
 * contiguous buffer. Forward and backward allocate nothing.
 *
 * Model file: sections `[type]` with `key = value` lines, `#` comments. The first section is
 * `[net]` (input = C,H,W; classes = K). Layer types: conv, batchnorm, relu, celu, silu, gelu
 * (`approximate = none|tanh`), sigmoid, maxpool, gap, fc, add, flatten, scale, softmax_xent.
 * Every layer may set `name =` and `input =` (the name of
 * an earlier layer; default: the previous layer); `add` takes `inputs = a, b`. A softmax_xent
 * layer is appended when the file has none. `[block NAME]` ... `[end]` defines a run of sections
 * and `[use NAME]` (repeat = N, name = PREFIX, other keys: $variables) pastes it N times, its
 * layers named PREFIX.R.NAME. See docs/MODELS.md for every key. */
#ifndef DPT_MODEL_H
#define DPT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "dptrain/backend.h"
#include "dptrain/status.h"

typedef struct dpt_model dpt_model_t;

/* A run of parameters with one weight-decay rule (weights decay; biases and BN do not). */
typedef struct dpt_param_segment {
    size_t offset, count;   /* in floats, into the params/grads arenas */
    int decay;              /* 1 = apply weight decay */
    int layer;              /* index of the owning layer */
    size_t rows;            /* viewed as a matrix rows x count/rows, row-major (conv weights:
                             * out x in*kh*kw; fc: out x in); 1 for a vector (bias, BN) */
} dpt_param_segment_t;

/* Called during backward as soon as a layer's parameter gradients are final (backward order):
 * grads[offset .. offset+count) will not change again in this step. */
typedef void (*dpt_grad_ready_fn)(void *ctx, size_t offset, size_t count);

typedef struct dpt_model_options {
    int batch;                    /* per-rank batch size */
    float label_smoothing;        /* for an appended softmax_xent (a layer's own key wins) */
    int fuse_bn_relu;             /* fuse batchnorm + relu when the backend can */
    dpt_grad_ready_fn grad_ready; /* optional */
    void *grad_ready_ctx;
    /* Synchronized batch norm (optional): when set, training-mode batch norm takes its batch
     * statistics over all ranks; bn_sum must replace buf[0..n) by its sum over ranks (every rank
     * calls it in the same order; the model calls it 3 times per BN layer and step). BN then runs
     * in plain C on NCHW copies and is not fused with ReLU. */
    dpt_status_t (*bn_sum)(void *ctx, float *buf, size_t n);
    void *bn_sum_ctx;
} dpt_model_options_t;

/* Resolve a --model argument: an existing file as given; else NAME or NAME.cfg under
 * $DPTRAIN_MODELS, the source tree's models/ and the installed share/dptrain/models.
 * On failure the error lists every place tried. */
dpt_status_t dpt_model_find(const char *name, char *out, size_t cap);

/* Parse `path` and build every op on backend `be` (borrowed; must outlive the model).
 * Errors name the file and line: unknown layer or key, bad value, impossible shape. */
dpt_status_t dpt_model_create(const char *path, const dpt_backend_ops_t *ops, dpt_backend_t *be,
                              const dpt_model_options_t *opt, dpt_model_t **out);
void dpt_model_destroy(dpt_model_t *m);

/* Initialize parameters from the seed (PyTorch's default uniform(+-1/sqrt(fan_in)) for conv and
 * fc, gamma = 1, beta = 0, running mean 0, var 1). Depends only on (seed, model). */
void dpt_model_init_params(dpt_model_t *m, uint64_t seed);   /* writes the host mirrors */

/* Arenas (borrowed, valid for the model's life). On a device backend (ops->on_device) these are
 * device memory: host code uses the host mirrors below instead. */
float *dpt_model_params(dpt_model_t *m, size_t *count);
float *dpt_model_grads(dpt_model_t *m, size_t *count);
float *dpt_model_buffers(dpt_model_t *m, size_t *count);

/* Host mirrors of the parameter and buffer arenas (the arenas themselves on host backends, where
 * the two calls below do nothing). dpt_model_init_params writes the mirrors; on a device backend
 * the caller then pushes them with dpt_model_params_to_device. Whoever reads parameters or BN
 * statistics on the host (checksums, checkpoints, weight files, broadcasts) first calls
 * dpt_model_params_to_host; whoever changed the mirrors calls dpt_model_params_to_device.
 * Both wait for the backend's queued work. Gradients have no mirror (they stay on the device). */
float *dpt_model_host_params(dpt_model_t *m);
float *dpt_model_host_buffers(dpt_model_t *m);
dpt_status_t dpt_model_params_to_host(dpt_model_t *m);
dpt_status_t dpt_model_params_to_device(dpt_model_t *m);
/* 1 when the arenas and activations live on the backend's device. */
int dpt_model_on_device(const dpt_model_t *m);
/* The model's input tensor (plain NCHW float32, batch x C x H x W; device memory on a device
 * backend): a caller that fills it itself passes x = NULL to dpt_model_forward. */
dpt_tensor_t *dpt_model_input_tensor(dpt_model_t *m);
/* Loss scale for the following backwards (fp16 training): the gradient of the loss is multiplied
 * by it, so every parameter gradient comes out scaled too; 0 or 1 = none (the default). */
void dpt_model_set_loss_scale(dpt_model_t *m, float scale);
/* Dropout and drop path masks of the next forward and backward (src/backend/drop_mask.h): the
 * run's seed and the position in the run of the batch's first sample, (epoch * steps per epoch
 * + step) * global batch + rank * batch, so that a sample's mask does not depend on the rank
 * count. */
void dpt_model_set_rng(dpt_model_t *m, uint64_t seed, uint64_t sample0);
const dpt_param_segment_t *dpt_model_segments(const dpt_model_t *m, int *n);

/* Input shape (C, H, W), class count, and forward FLOPs for one batch. */
void dpt_model_input_shape(const dpt_model_t *m, int *c, int *h, int *w);
int dpt_model_classes(const dpt_model_t *m);
double dpt_model_flops_fwd(const dpt_model_t *m);
int dpt_model_batch(const dpt_model_t *m);

/* Forward one batch: x is plain NCHW host floats (batch, C, H, W), or NULL when the input tensor
 * was already filled (dpt_model_input_tensor); labels (batch, host). Only the first
 * n_valid samples count in loss and correct (0 = all). training selects BN batch statistics. */
dpt_status_t dpt_model_forward(dpt_model_t *m, const float *x, const int32_t *labels, int n_valid,
                               int training, float *loss, int32_t *correct);
/* Backward of the last forward (must have been training): writes the grads arena. */
dpt_status_t dpt_model_backward(dpt_model_t *m);

/* Human-readable summary (one line per layer) into buf. */
/* Profiling: when on, forward/backward accumulate wall time per layer (two clock reads per op,
 * no allocation); set_profile resets the counters. The report is a table in ms per training step. */
void dpt_model_set_profile(dpt_model_t *m, int on);
void dpt_model_profile_report(const dpt_model_t *m, char *buf, size_t len);

void dpt_model_summary(const dpt_model_t *m, char *buf, size_t len);

#endif
