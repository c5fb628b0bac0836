/* internal.h: the parsed form of a model file, shared by model_parse.c and model.c. */
#ifndef DPT_MODEL_INTERNAL_H
#define DPT_MODEL_INTERNAL_H

#include "dptrain/backend.h"
#include "dptrain/model.h"

typedef struct dpt_layer_spec {
    dpt_op_kind_t kind;
    char name[32];
    int line;                 /* line of the section header, for messages */
    int inputs[2];            /* earlier layer indices; -1 = model input */
    int n_inputs;
    int filters, size, stride, pad, bias;   /* conv (filters), fc (filters = outputs), maxpool */
    int groups;               /* conv: 1 (default), or a divisor of its in and out channels */
    float eps, momentum;      /* batchnorm */
    float alpha;              /* celu, scale */
    int gelu_tanh;            /* gelu: approximate = tanh (1) or none (0, the default) */
    float smoothing;          /* softmax_xent */
    int fuse_relu;            /* batchnorm followed by a fused relu */
} dpt_layer_spec_t;

typedef struct dpt_model_spec {
    char path[512];
    int in_c, in_h, in_w, classes;
    dpt_layer_spec_t *layers;
    int n_layers;
} dpt_model_spec_t;

/* Parse a model file; errors name path:line. Free with dpt__model_spec_free. */
dpt_status_t dpt__model_parse(const char *path, const dpt_model_options_t *opt,
                              dpt_model_spec_t *out);
void dpt__model_spec_free(dpt_model_spec_t *s);

/* sync_bn.c: synchronized batch norm on plain NCHW arrays (see the file). `sum` replaces n
 * floats by their sum over ranks; tmp holds 2 * c + 1 floats. */
typedef struct dpt__sbn_args {
    int n, c, hw;
    float eps, momentum;
    const float *gamma, *beta;
    float *tmp;
    dpt_status_t (*sum)(void *ctx, float *buf, size_t n);
    void *ctx;
} dpt__sbn_args_t;
dpt_status_t dpt__sbn_forward(const dpt__sbn_args_t *a, const float *x, float *y, float *run_mean,
                              float *run_var, float *mean, float *invstd);
dpt_status_t dpt__sbn_backward(const dpt__sbn_args_t *a, const float *x, const float *dy, float *dx,
                               const float *mean, const float *invstd, float *dgamma,
                               float *dbeta);

#endif
