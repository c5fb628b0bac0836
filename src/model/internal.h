/* internal.h: the parsed form of a model file, shared by model_parse.c, model_expand*.c and the
 * model (model.c, model_init.c, model_report.c through model_private.h). */
#ifndef DPT_MODEL_INTERNAL_H
#define DPT_MODEL_INTERNAL_H

#include "dptrain/backend.h"
#include "dptrain/model.h"

/* Layers in one model (the parser keeps one slot for an appended softmax_xent), and the size
 * of a layer name with its NUL (names from blocks read PREFIX.R.NAME, e.g. stage3.5.conv2). */
#define DPT__MODEL_MAX_LAYERS 1024
#define DPT__MODEL_NAME_MAX 64

typedef struct dpt_layer_spec {
    dpt_op_kind_t kind;
    char name[DPT__MODEL_NAME_MAX];
    int line;                 /* line of the section header, for messages */
    int use_line, rep;        /* from a block: the [use] line and repetition (use_line 0: none) */
    const char *file;         /* the file of `line` when [include]d (NULL: the model file) */
    const char *use_file;     /* the file of `use_line` (NULL: the model file); both point into
                                 the spec's files, valid until dpt__model_spec_free */
    int inputs[2];            /* earlier layer indices; -1 = model input */
    int n_inputs;
    int filters, size, stride, pad, bias;   /* conv (filters), fc (filters = outputs), maxpool */
    int groups;               /* conv: 1 (default), or a divisor of its in and out channels */
    float eps, momentum;      /* batchnorm */
    float alpha;              /* celu, scale */
    int gelu_tanh;            /* gelu: approximate = tanh (1) or none (0, the default) */
    int heads;                /* attention */
    int cls_token, pos_embed; /* tokens */
    float drop_rate;          /* dropout, drop_path */
    float smoothing;          /* softmax_xent */
    int fuse_relu;            /* batchnorm followed by a fused relu */
} dpt_layer_spec_t;

typedef struct dpt_model_spec {
    char path[512];
    int in_c, in_h, in_w, classes;
    dpt_layer_spec_t *layers;
    int n_layers;
    char **files;             /* the [include]d files' paths (the layers' file, use_file) */
    int n_files;
} dpt_model_spec_t;

/* The file a layer's line is in, and the tail of its messages (dpt__mline_where). */
const char *dpt__layer_file(const dpt_model_spec_t *s, const dpt_layer_spec_t *l);
void dpt__layer_where(char *buf, size_t cap, const dpt_model_spec_t *s,
                      const dpt_layer_spec_t *l);

/* Parse a model file; errors name path:line. Free with dpt__model_spec_free. */
dpt_status_t dpt__model_parse(const char *path, const dpt_model_options_t *opt,
                              dpt_model_spec_t *out);
void dpt__model_spec_free(dpt_model_spec_t *s);

/* model_expand.c: a model file's lines as the parser reads them: comments stripped, trimmed,
 * empty lines dropped, `[block NAME]` ... `[end]` definitions removed and every `[use NAME]`
 * replaced by its expansion (docs/MODELS.md, "Blocks and repetition"). text: the line; line: its
 * line in the file (for expanded text, the body line's); use_line: the [use] line it came from
 * (0: none); rep: its repetition (0-based, as in the layer names PREFIX.R.NAME).
 * Returns an error only when the file cannot be read or memory runs out. A bad line (its
 * message names path:line) ends the lines there and is kept in st and msg: the parser reports
 * it only if the lines before it have no error, so the first error in the file wins, as when
 * the parser read the file itself. truncated: the expansion stopped at the
 * DPT__MODEL_MAX_LAYERS-th layer section, which the parser refuses. n_file_lines: lines read
 * (of the model file itself). `[include FILE]` reads FILE's lines in place: file (and use_file,
 * for use_line) name the file of a line read from an included file (NULL: the model file);
 * they point into `files`, the included paths, owned by the lines until the parser takes them
 * (dpt__model_spec_t.files). Free with dpt__mlines_free. */
typedef struct dpt__mline {
    char *text;
    int line;
    int use_line;
    int rep;
    const char *file, *use_file;
} dpt__mline_t;
typedef struct dpt__mlines {
    dpt__mline_t *v;
    int n, cap;
    int truncated;
    int n_file_lines;
    char **files;
    int n_files, cap_files;
    dpt_status_t st;
    char msg[1024];
} dpt__mlines_t;
dpt_status_t dpt__model_expand(const char *path, dpt__mlines_t *out);
void dpt__mlines_free(dpt__mlines_t *m);
/* " (in the block used at line U, repeat R)" when use_line > 0, else "": the tail of messages.
 * file and use_file: the files of the line and of the [use] (never NULL); when they differ
 * (a block of an [include]d file), " (in the block used at USE_FILE:U, repeat R)". */
void dpt__mline_where(char *buf, size_t cap, const char *file, const char *use_file,
                      int use_line, int rep);

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
