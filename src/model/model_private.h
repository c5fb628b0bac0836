/* model_private.h: the model's private types (one layer graph node, and struct dpt_model behind
 * the opaque dpt_model_t), shared by model.c (build, arenas, forward / backward), model_init.c
 * (parameter initialisation) and model_report.c (summary and profile tables). They live in a
 * header only so that those files can be split by responsibility; nothing outside src/model/
 * includes it. sync_bn.c does not: it works on plain arrays passed in dpt__sbn_args_t. */
#ifndef DPT_MODEL_PRIVATE_H
#define DPT_MODEL_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include "model/internal.h"

typedef struct node {
    dpt_layer_spec_t spec;
    dpt_op_t *op;
    dpt_op_info_t info;
    int in[2];                 /* producer node index, -1 = the model input */
    int n_in;
    dpt_tensor_t out;          /* activation */
    dpt_tensor_t grad;         /* gradient of out (same layout) */
    dpt_tensor_t extra[3];     /* extra gradient buffers, one per extra consumer */
    int n_extra;
    dpt_op_t *sum_op;          /* ADD op summing extra gradients into grad */
    int n_consumers;
    int edge_slot[2];          /* where this node's backward writes dx[i]: -1 = producer's grad,
                                  k >= 0 = producer's extra[k] */
    size_t p_off, b_off;       /* offsets into params/grads and buffers arenas */
    double t_fwd, t_bwd;       /* profiling: accumulated seconds */
    float *sx, *smean, *sinvstd;   /* synchronized BN: plain input copy and batch statistics */
} node_t;

struct dpt_model {
    const dpt_backend_ops_t *ops;
    dpt_backend_t *be;
    dpt_model_options_t opt;
    int in_c, in_h, in_w, classes;
    dpt_tensor_t input;
    node_t *nodes;
    int n_nodes;
    float *params, *grads, *buffers;   /* the arenas: device memory when ops->on_device */
    float *h_params, *h_buffers;       /* host mirrors (the arenas themselves on host backends) */
    int on_device;
    float loss_scale;                  /* XENT backward multiplies the logits' gradient (0 = 1) */
    uint64_t rng_seed, rng_sample0;    /* dropout masks (dpt_model_set_rng) */
    size_t n_params, n_buffers;
    dpt_param_segment_t *segs;
    int n_segs;
    int32_t *labels;           /* copy of the last forward's labels (the XENT backward reads them) */
    int n_valid;
    double flops;
    int profile;               /* accumulate per-layer times (dpt_model_set_profile) */
    long profile_steps;
    float *s_a, *s_b, *s_tmp;  /* synchronized BN: plain scratch shared by the BN layers */
};

#endif
