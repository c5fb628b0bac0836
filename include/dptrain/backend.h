/* backend.h: the ops interface every compute backend implements (ref, cpu, cuda).
 *
 * An op is one layer's computation with its shapes fixed at setup (oneDNN primitive / cuDNN
 * descriptor style): op_create() builds everything it needs once (primitives, scratch, saved
 * statistics, pooling indices), forward()/backward() then run with no allocation.
 *
 * Conventions shared by all backends (so the model, the optimizer and checkpoints never depend on
 * the backend):
 *  - Parameters and gradients are plain float32 in the flat arenas, in this order per op:
 *      conv2d:    weight (O, I/G, KH, KW) for G groups (PyTorch's layout: output channel o sees
 *                 input channels [g I/G, (g+1) I/G) of its group g = o / (O/G)), then bias (O)
 *                 if has_bias
 *      fc:        weight (OUT, IN) row-major, then bias (OUT) if has_bias; IN = C*H*W of the input
 *                 taken in NCHW order (flatten order)
 *      batchnorm: gamma (C), then beta (C); running mean (C) and running var (C) live in the
 *                 separate "buffers" arena (not trained, part of checkpoints and param_crc)
 *      layernorm: gamma (C), then beta (C) (no weight decay)
 *      linear:    weight (OUT, C) row-major, then bias (OUT) if has_bias (weights decayed)
 *      tokens:    the class token (C) if cls_token, then the position embedding (C, T) in NCHW
 *                 order (pos[c * T + t]) if pos_embed (no weight decay)
 *  - Transformer tensors ("tokens") are (N, D, 1, T): channels are the embedding, positions the
 *    tokens, so that the NCHW machinery (layouts, add, gelu, gap) carries them; a backend may
 *    keep them in a layout of its own (cpu: nhwc, i.e. (N, T, D) row-major).
 *  - backward() overwrites dW (it never accumulates) and writes dX when dx is non-NULL.
 *  - Activations may be in a backend-private layout; op_create() reports the output layout and
 *    byte size it wants, and the gradient of a tensor always has the tensor's own layout.
 */
#ifndef DPT_BACKEND_H
#define DPT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "dptrain/status.h"
#include "dptrain/tensor.h"

typedef enum {
    DPT_OP_CONV2D = 0,
    DPT_OP_BATCHNORM,
    DPT_OP_RELU,
    DPT_OP_CELU,
    DPT_OP_MAXPOOL,
    DPT_OP_GAP,          /* global average pool: (N,C,H,W) -> (N,C,1,1) */
    DPT_OP_FC,           /* fully connected: (N,C,H,W) -> (N,OUT,1,1), output plain NCHW */
    DPT_OP_ADD,          /* y = x0 + x1 (same shape and layout); backward: dx0 = dx1 = dy */
    DPT_OP_FLATTEN,      /* (N,C,H,W) -> (N,C*H*W,1,1) plain; backward restores the layout */
    DPT_OP_SCALE,        /* y = alpha * x */
    DPT_OP_XENT,         /* softmax cross-entropy with label smoothing on (N,K,1,1) logits */
    DPT_OP_SILU,         /* y = x sigmoid(x) (swish) */
    DPT_OP_GELU,         /* y = x Phi(x), erf form; tanh approximation when gelu_tanh */
    DPT_OP_SIGMOID,      /* y = 1 / (1 + exp(-x)) */
    DPT_OP_LAYERNORM,    /* over the C channels of each (n, h, w): y = gamma (x - mean) /
                            sqrt(var + eps) + beta, biased variance, eps = bn_eps (PyTorch's
                            nn.LayerNorm(C) on (N, T, C) tokens) */
    DPT_OP_LINEAR,       /* per position over channels: (N,C,H,W) -> (N,OUT,H,W), y[n,:,h,w] =
                            W x[n,:,h,w] + b (a 1x1 convolution; nn.Linear on tokens) */
    DPT_OP_ATTENTION,    /* multi-head self-attention core on a fused QKV tensor (N, 3D, 1, T):
                            channels [0, D) q, [D, 2D) k, [2D, 3D) v; head h of `heads` uses
                            channels [h D/heads, (h+1) D/heads) of each; output (N, D, 1, T):
                            y_h = v_h softmax_over_keys(k_h^T q_h / sqrt(D/heads)); no params */
    DPT_OP_TOKENS,       /* (N,C,H,W) -> (N, C, 1, T) tokens, T = H W (+1 with the class token
                            first): flatten the positions, prepend a learned class token when
                            cls_token, add a learned position embedding when pos_embed */
    DPT_OP_TOKEN_SELECT, /* (N, C, 1, T) -> (N, C, 1, 1): the first token (the class token) */
    DPT_OP_MUL,          /* channel gate: y = x0 * x1, x1 (N, C, 1, 1) broadcast over x0's
                            positions (squeeze-excitation); backward: dx0 = dy x1,
                            dx1 = sum over positions of dy x0 */
    DPT_OP_DROPOUT,      /* training: each element kept with probability 1 - drop_rate and
                            scaled by 1 / (1 - drop_rate), else 0; inference: y = x */
    DPT_OP_DROP_PATH,    /* stochastic depth: the same per sample (the whole sample kept or 0) */
    DPT_OP_COUNT_
} dpt_op_kind_t;

/* Inputs of an op kind: 2 for add and mul, else 1. */
static inline int dpt_op_n_inputs(dpt_op_kind_t k) { return k == DPT_OP_ADD || k == DPT_OP_MUL ? 2 : 1; }

/* Name of an op kind ("conv2d"). */
const char *dpt_op_kind_name(dpt_op_kind_t k);

/* What to build. `in` holds shapes and layouts only (data unused). Batch size is in[0].n. */
typedef struct dpt_op_desc {
    dpt_op_kind_t kind;
    dpt_tensor_t in[2];
    int n_in;             /* dpt_op_n_inputs(kind) */
    /* conv2d */
    int out_c, kh, kw, stride, pad;
    int groups;           /* conv2d: G, dividing in and out channels; 0 or 1 = one group;
                             G = in channels = out channels: depthwise */
    int has_bias;         /* conv2d, fc */
    /* maxpool */
    int pool_k, pool_stride, pool_pad;
    /* fc */
    int out_features;
    /* batchnorm: y = gamma * (x - mean) / sqrt(var + eps) + beta; running = (1-m)*running + m*batch
     * (PyTorch convention: m = 0.1; running var uses the unbiased batch variance) */
    float bn_eps, bn_momentum;
    int fuse_relu;        /* batchnorm: apply ReLU after (the model fuses BN+ReLU when asked) */
    /* celu: alpha; scale: alpha */
    float alpha;
    int gelu_tanh;        /* gelu: 0 = exact 0.5 x (1 + erf(x / sqrt 2)); 1 = PyTorch's
                             approximate='tanh': 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    /* xent */
    float label_smoothing;
    /* attention: heads, dividing D = in channels / 3 */
    int heads;
    /* tokens: prepend a class token; add a position embedding */
    int cls_token, pos_embed;
    /* dropout, drop_path: the rate in [0, 1), and the layer's number in the masks' hash
     * (src/backend/drop_mask.h: a mask depends only on the seed, layer, sample and element) */
    float drop_rate;
    uint32_t rng_layer;
} dpt_op_desc_t;

/* Groups of a conv2d descriptor: its `groups`, or 1 when that is 0 (unset). */
static inline int dpt_conv_groups(const dpt_op_desc_t *d) { return d->groups > 1 ? d->groups : 1; }

/* Precision of activations and compute on a device backend (mixed precision). Parameters,
 * gradients, BN buffers and optimizer state stay float32 in every mode ("master weights"):
 * w, dw and buf of dpt_op_args_t are always float32 arrays; an op casts w to its compute type
 * itself. Host backends (ref, cpu) support only FP32. */
typedef enum {
    DPT_PREC_FP32 = 0,
    DPT_PREC_BF16,
    DPT_PREC_FP16,       /* needs loss scaling (dpt_op_args_t.loss_scale) to keep small gradients */
    DPT_PREC_COUNT_
} dpt_precision_t;

/* "fp32", "bf16", "fp16". */
const char *dpt_precision_name(dpt_precision_t p);
/* Parse one of those names; DPT_ERR_INVALID_ARG naming the string otherwise. */
dpt_status_t dpt_precision_parse(const char *s, dpt_precision_t *out);

/* Direction of a backend memcpy (dpt_backend_ops_t.memcpy). */
typedef enum { DPT_COPY_H2D = 0, DPT_COPY_D2H, DPT_COPY_D2D } dpt_copy_kind_t;

/* What op_create tells the caller. */
typedef struct dpt_op_info {
    dpt_tensor_t out;     /* output shape, layout and nbytes (data NULL) */
    size_t n_params;      /* floats of trainable parameters (weights then bias) */
    size_t n_weights;     /* of which weights (the rest is bias/BN beta: no weight decay) */
    size_t n_buffers;     /* floats of non-trained state (BN running mean+var) */
    double flops_fwd;     /* multiply-adds*2 of forward (for GFLOP/s reports); for Winograd
                             convolutions still the direct algorithm's count */
    char impl[48];        /* implementation chosen, e.g. "jit:avx512_core" (profiling) */
} dpt_op_info_t;

/* Run-time arguments. All pointers borrowed for the call. */
typedef struct dpt_op_args {
    const dpt_tensor_t *x[2];   /* inputs (forward and backward) */
    dpt_tensor_t *y;            /* output (forward; backward reads it when useful, e.g. ReLU) */
    const dpt_tensor_t *dy;     /* gradient of the output (backward) */
    dpt_tensor_t *dx[2];        /* gradient of the inputs (backward); NULL = not needed */
    const float *w;             /* parameters (n_params floats) */
    float *dw;                  /* parameter gradients (n_params floats), overwritten */
    float *buf;                 /* buffers (n_buffers floats): BN running mean then var */
    const int32_t *labels;      /* XENT: N labels in [0, K) */
    float *loss;                /* XENT forward: mean loss over the batch (one float) */
    int32_t *correct;           /* XENT forward, optional: count of argmax == label */
    int n_valid;                /* XENT: only the first n_valid samples count (0 = all N) */
    int training;               /* BN: batch statistics + update running stats when 1 */
    float loss_scale;           /* XENT backward: the logits' gradient is multiplied by it
                                   (dynamic loss scaling of fp16 training); 0 means 1 */
    uint64_t rng_seed;          /* dropout, drop_path: the run's seed, and the position in the */
    uint64_t rng_sample0;       /* run of this batch's first sample (drop_mask.h) */
} dpt_op_args_t;

typedef struct dpt_backend dpt_backend_t;   /* opaque, per backend */
typedef struct dpt_op dpt_op_t;             /* opaque, per backend */

typedef struct dpt_backend_config {
    int threads;          /* compute threads (0 = leave as is) */
    int blocked_layout;   /* cpu: keep activations in oneDNN blocked layouts (1) or plain NCHW (0) */
    int conv_winograd;    /* cpu: Winograd for 3x3 stride-1 convolutions where oneDNN has it
                             (blocked layouts, AVX-512), else direct; 0 = always direct */
    int device;           /* cuda: device ordinal (the trainer passes the node-local rank) */
    dpt_precision_t precision; /* cuda: activation/compute precision (host backends: FP32 only) */
} dpt_backend_config_t;

typedef struct dpt_backend_ops {
    const char *name;
    dpt_status_t (*create)(const dpt_backend_config_t *cfg, dpt_backend_t **out);
    void (*destroy)(dpt_backend_t *be);
    dpt_status_t (*op_create)(dpt_backend_t *be, const dpt_op_desc_t *desc, dpt_op_t **out,
                              dpt_op_info_t *info);
    void (*op_destroy)(dpt_op_t *op);
    dpt_status_t (*forward)(dpt_op_t *op, const dpt_op_args_t *a);
    dpt_status_t (*backward)(dpt_op_t *op, const dpt_op_args_t *a);
    /* Memory for activations (host memory for ref/cpu). */
    void *(*alloc)(dpt_backend_t *be, size_t nbytes);
    void (*free)(dpt_backend_t *be, void *p);
    /* Copy a plain NCHW host array into tensor `dst` (any layout this backend made) and back. */
    dpt_status_t (*import_nchw)(dpt_backend_t *be, const float *src, dpt_tensor_t *dst);
    dpt_status_t (*export_nchw)(dpt_backend_t *be, const dpt_tensor_t *src, float *dst);
    /* Device backends (cuda) set on_device = 1: alloc() returns device memory, and the model's
     * parameter, gradient and buffer arenas live there too; host code reaches them only through
     * memcpy(), and sync() waits for all work the backend queued (forward/backward/memcpy may
     * return before the device finished). XENT's loss/correct/labels stay host pointers (the
     * backend copies and waits). Host backends leave all three 0/NULL: plain memory. */
    int on_device;
    dpt_status_t (*memcpy)(dpt_backend_t *be, void *dst, const void *src, size_t nbytes,
                           dpt_copy_kind_t kind);
    dpt_status_t (*sync)(dpt_backend_t *be);
} dpt_backend_ops_t;

/* Copy through the backend: be's memcpy when it has one, else plain memcpy (host backends). */
dpt_status_t dpt_backend_memcpy(const dpt_backend_ops_t *ops, dpt_backend_t *be, void *dst,
                                const void *src, size_t nbytes, dpt_copy_kind_t kind);
/* Wait for the backend's queued work (no-op for host backends). */
dpt_status_t dpt_backend_sync(const dpt_backend_ops_t *ops, dpt_backend_t *be);

/* Registry: "ref", "cpu" (when built with oneDNN), "cuda" (when built with CUDA). NULL if
 * unknown. */
const dpt_backend_ops_t *dpt_backend_find(const char *name);
/* Comma-separated names of the compiled-in backends (static string). */
const char *dpt_backend_list(void);

extern const dpt_backend_ops_t dpt_backend_ref;
extern const dpt_backend_ops_t dpt_backend_cpu;
extern const dpt_backend_ops_t dpt_backend_cuda;

#endif
