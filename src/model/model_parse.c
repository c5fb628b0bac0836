/* model_parse.c: reads the text model files of models/ ([type] sections of key = value lines)
 * into a dpt_model_spec_t: layer kinds, hyper-parameters and input wiring, with BN+ReLU fusion.
 * The lines come from model_expand.c (comments stripped, blocks expanded). Every error names the
 * file and line, and for a line from a block the [use] line and repetition. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dptrain/alloc.h"
#include "model/internal.h"

#define MAX_LAYERS DPT__MODEL_MAX_LAYERS
#define LAYER_NAME_MAX DPT__MODEL_NAME_MAX

static const struct {
    const char *name;
    dpt_op_kind_t kind;
} layer_types[] = {
    {"conv", DPT_OP_CONV2D},   {"batchnorm", DPT_OP_BATCHNORM}, {"relu", DPT_OP_RELU},
    {"celu", DPT_OP_CELU},     {"maxpool", DPT_OP_MAXPOOL},     {"gap", DPT_OP_GAP},
    {"fc", DPT_OP_FC},         {"add", DPT_OP_ADD},             {"flatten", DPT_OP_FLATTEN},
    {"scale", DPT_OP_SCALE},   {"softmax_xent", DPT_OP_XENT},   {"silu", DPT_OP_SILU},
    {"gelu", DPT_OP_GELU},     {"sigmoid", DPT_OP_SIGMOID},     {"layernorm", DPT_OP_LAYERNORM},
    {"linear", DPT_OP_LINEAR}, {"attention", DPT_OP_ATTENTION}, {"tokens", DPT_OP_TOKENS},
    {"token_select", DPT_OP_TOKEN_SELECT}, {"mul", DPT_OP_MUL}, {"dropout", DPT_OP_DROPOUT},
    {"drop_path", DPT_OP_DROP_PATH},
};

typedef struct parser {
    const char *path;
    int line;
    int use_line, rep;            /* where line came from: a [use] (0: none) and its repetition */
    const char *file, *use_file;  /* the files of line and use_line when [include]d (NULL: path) */
    dpt_model_spec_t *spec;
    char (*input_names)[2][LAYER_NAME_MAX];   /* unresolved input names per layer */
    int have_net;
    struct { char key[32]; int line; } seen[16];   /* the keys of the current section */
    int n_seen;
} parser_t;

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static dpt_status_t perr(const parser_t *p, const char *fmt, const char *a, const char *b)
{
    char msg[384], where[640];
    const char *file = p->file ? p->file : p->path;
    snprintf(msg, sizeof msg, fmt, a, b);
    dpt__mline_where(where, sizeof where, file, p->use_file ? p->use_file : p->path,
                     p->use_line, p->rep);
    return dpt_error_set(DPT_ERR_FORMAT, "%s:%d: %s%s", file, p->line, msg, where);
}

const char *dpt__layer_file(const dpt_model_spec_t *s, const dpt_layer_spec_t *l)
{
    return l->file ? l->file : s->path;
}

void dpt__layer_where(char *buf, size_t cap, const dpt_model_spec_t *s,
                      const dpt_layer_spec_t *l)
{
    dpt__mline_where(buf, cap, dpt__layer_file(s, l), l->use_file ? l->use_file : s->path,
                     l->use_line, l->rep);
}

static dpt_status_t parse_int(const parser_t *p, const char *key, const char *v, int lo, int hi,
                              int *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        char range[64];
        snprintf(range, sizeof range, "'%s' is not an integer in [%d, %d]", v, lo, hi);
        return perr(p, "%s: %s", key, range);
    }
    *out = (int)x;
    return DPT_OK;
}

static dpt_status_t parse_float(const parser_t *p, const char *key, const char *v, float *out)
{
    char *end;
    errno = 0;
    float x = strtof(v, &end);
    if (errno || end == v || *end || x != x)
        return perr(p, "%s: '%s' is not a number", key, v);
    *out = x;
    return DPT_OK;
}

/* "a, b" -> up to 2 names. */
static dpt_status_t parse_names(const parser_t *p, const char *v, char names[2][LAYER_NAME_MAX],
                               int *n)
{
    char tmp[1024];
    *n = 0;
    if (strlen(v) >= sizeof tmp)
        return perr(p, "input list longer than %s characters%s", "1023", "");
    snprintf(tmp, sizeof tmp, "%s", v);
    *n = 0;
    for (char *tok = strtok(tmp, ","); tok; tok = strtok(NULL, ",")) {
        tok = trim(tok);
        if (*n == 2 || !*tok)
            return perr(p, "bad input list '%s'%s", v, "");
        if (strlen(tok) >= LAYER_NAME_MAX) {
            char lim[16];
            snprintf(lim, sizeof lim, "%d", LAYER_NAME_MAX - 1);
            return perr(p, "input name '%s' is longer than %s characters", tok, lim);
        }
        snprintf(names[(*n)++], LAYER_NAME_MAX, "%s", tok);
    }
    return DPT_OK;
}

/* A key given twice in one section is a typo or a merge error: the second value would win
 * silently. "input" and "inputs" are one key. */
static dpt_status_t check_duplicate(parser_t *p, const char *key, const char *section)
{
    const char *k = !strcmp(key, "inputs") ? "input" : key;
    for (int i = 0; i < p->n_seen; i++)
        if (!strcmp(p->seen[i].key, k)) {
            char where[96];
            snprintf(where, sizeof where, "%s (first given on line %d)", section, p->seen[i].line);
            return perr(p, "duplicate key '%s' in %s", key, where);
        }
    if (p->n_seen < (int)(sizeof p->seen / sizeof p->seen[0]) && strlen(k) < sizeof p->seen[0].key) {
        snprintf(p->seen[p->n_seen].key, sizeof p->seen[0].key, "%s", k);
        p->seen[p->n_seen++].line = p->line;
    }
    return DPT_OK;
}

static dpt_status_t set_key(parser_t *p, dpt_layer_spec_t *l, int li, const char *key,
                            const char *v)
{
    dpt_op_kind_t k = l->kind;
    if (!strcmp(key, "name")) {
        if (strlen(v) >= sizeof l->name || !*v) {
            char lim[16];
            snprintf(lim, sizeof lim, "%d", (int)sizeof l->name - 1);
            return perr(p, "name '%s' is empty or longer than %s characters", v, lim);
        }
        snprintf(l->name, sizeof l->name, "%s", v);
        return DPT_OK;
    }
    if (!strcmp(key, "input") || !strcmp(key, "inputs")) {
        int n;
        DPT_CHECK(parse_names(p, v, p->input_names[li], &n));
        int want = dpt_op_n_inputs(k);
        if (n != want)
            return perr(p, "%s takes %s input(s)", key, want == 2 ? "two" : "one");
        l->n_inputs = n;
        return DPT_OK;
    }
    if (!strcmp(key, "filters") && k == DPT_OP_CONV2D)
        return parse_int(p, key, v, 1, 1 << 16, &l->filters);
    if (!strcmp(key, "output") && (k == DPT_OP_FC || k == DPT_OP_LINEAR))
        return parse_int(p, key, v, 1, 1 << 20, &l->filters);
    if (!strcmp(key, "size") && (k == DPT_OP_CONV2D || k == DPT_OP_MAXPOOL))
        return parse_int(p, key, v, 1, 64, &l->size);
    if (!strcmp(key, "stride") && (k == DPT_OP_CONV2D || k == DPT_OP_MAXPOOL))
        return parse_int(p, key, v, 1, 64, &l->stride);
    if (!strcmp(key, "pad") && (k == DPT_OP_CONV2D || k == DPT_OP_MAXPOOL))
        return parse_int(p, key, v, 0, 64, &l->pad);
    if (!strcmp(key, "groups") && k == DPT_OP_CONV2D)
        return parse_int(p, key, v, 1, 1 << 16, &l->groups);
    if (!strcmp(key, "bias") && (k == DPT_OP_CONV2D || k == DPT_OP_FC || k == DPT_OP_LINEAR))
        return parse_int(p, key, v, 0, 1, &l->bias);
    if (!strcmp(key, "eps") && (k == DPT_OP_BATCHNORM || k == DPT_OP_LAYERNORM))
        return parse_float(p, key, v, &l->eps);
    if (!strcmp(key, "momentum") && k == DPT_OP_BATCHNORM)
        return parse_float(p, key, v, &l->momentum);
    if (!strcmp(key, "alpha") && k == DPT_OP_CELU)
        return parse_float(p, key, v, &l->alpha);
    if (!strcmp(key, "approximate") && k == DPT_OP_GELU) {   /* PyTorch's nn.GELU(approximate=) */
        if (strcmp(v, "none") && strcmp(v, "tanh"))
            return perr(p, "approximate: '%s' must be none or tanh%s", v, "");
        l->gelu_tanh = !strcmp(v, "tanh");
        return DPT_OK;
    }
    if (!strcmp(key, "rate") && (k == DPT_OP_DROPOUT || k == DPT_OP_DROP_PATH)) {
        DPT_CHECK(parse_float(p, key, v, &l->drop_rate));
        return l->drop_rate >= 0 && l->drop_rate < 1
                   ? DPT_OK : perr(p, "rate: '%s' is not in [0, 1)%s", v, "");
    }
    if (!strcmp(key, "heads") && k == DPT_OP_ATTENTION)
        return parse_int(p, key, v, 1, 1024, &l->heads);
    if (!strcmp(key, "class_token") && k == DPT_OP_TOKENS)
        return parse_int(p, key, v, 0, 1, &l->cls_token);
    if (!strcmp(key, "pos_embed") && k == DPT_OP_TOKENS)
        return parse_int(p, key, v, 0, 1, &l->pos_embed);
    if (!strcmp(key, "factor") && k == DPT_OP_SCALE)
        return parse_float(p, key, v, &l->alpha);
    if (!strcmp(key, "label_smoothing") && k == DPT_OP_XENT)
        return parse_float(p, key, v, &l->smoothing);
    return perr(p, "unknown key '%s' for layer type %s", key, dpt_op_kind_name(k));
}

static dpt_status_t set_net_key(parser_t *p, const char *key, const char *v)
{
    dpt_model_spec_t *s = p->spec;
    if (!strcmp(key, "input")) {
        int c, h, w;
        char tail;
        if (sscanf(v, "%d , %d , %d %c", &c, &h, &w, &tail) != 3 || c < 1 || c > 4096 || h < 1 ||
            h > 8192 || w < 1 || w > 8192)
            return perr(p, "input: '%s' is not C,H,W (e.g. 1,28,28)%s", v, "");
        s->in_c = c;
        s->in_h = h;
        s->in_w = w;
        return DPT_OK;
    }
    if (!strcmp(key, "classes"))
        return parse_int(p, key, v, 2, 1 << 20, &s->classes);
    return perr(p, "unknown key '%s' in [net]%s", key, "");
}

static void layer_defaults(dpt_layer_spec_t *l, const char *type, dpt_op_kind_t kind,
                           const parser_t *p, int idx, const dpt_model_options_t *opt)
{
    memset(l, 0, sizeof *l);
    l->kind = kind;
    l->line = p->line;
    l->use_line = p->use_line;
    l->rep = p->rep;
    l->file = p->file;
    l->use_file = p->use_file;
    l->n_inputs = dpt_op_n_inputs(kind);
    l->size = kind == DPT_OP_MAXPOOL ? 2 : 3;
    l->stride = -1;   /* resolved after parsing: conv 1, maxpool = size */
    l->pad = -1;      /* conv: size / 2 ("same"), maxpool: 0 */
    l->bias = 1;
    l->groups = 1;
    l->eps = 1e-5f;
    l->momentum = 0.1f;
    l->alpha = kind == DPT_OP_SCALE ? 0.0f : 1.0f;
    l->heads = 1;
    l->pos_embed = 1;   /* tokens: a learned position embedding, no class token (mean pool) */
    l->smoothing = opt->label_smoothing;
    snprintf(l->name, sizeof l->name, "%s%d", type, idx);
}

static int find_layer(const dpt_model_spec_t *s, int before, const char *name)
{
    for (int i = before - 1; i >= 0; i--)
        if (!strcmp(s->layers[i].name, name))
            return i;
    return -2;
}

/* Resolve defaults that depend on other keys, input names, and check required keys. */
static dpt_status_t finish(parser_t *p, const dpt_model_options_t *opt)
{
    dpt_model_spec_t *s = p->spec;
    for (int i = 0; i < s->n_layers; i++) {
        dpt_layer_spec_t *l = &s->layers[i];
        p->line = l->line;
        p->use_line = l->use_line;
        p->rep = l->rep;
        p->file = l->file;
        p->use_file = l->use_file;
        if (l->stride < 0)
            l->stride = l->kind == DPT_OP_MAXPOOL ? l->size : 1;
        if (l->pad < 0)
            l->pad = l->kind == DPT_OP_CONV2D ? l->size / 2 : 0;
        if (l->kind == DPT_OP_CONV2D && l->filters == 0)
            return perr(p, "conv needs 'filters'%s%s", "", "");
        if ((l->kind == DPT_OP_FC || l->kind == DPT_OP_LINEAR) && l->filters == 0)
            return perr(p, "%s needs 'output'%s", dpt_op_kind_name(l->kind), "");
        if (l->kind == DPT_OP_SCALE && l->alpha == 0.0f)
            return perr(p, "scale needs a non-zero 'factor'%s%s", "", "");
        if (l->kind == DPT_OP_XENT && i != s->n_layers - 1)
            return perr(p, "softmax_xent must be the last layer%s%s", "", "");
        if (find_layer(s, i, l->name) != -2)
            return perr(p, "duplicate layer name '%s'%s", l->name, "");
        for (int k = 0; k < l->n_inputs; k++) {
            const char *nm = p->input_names[i][k];
            if (!nm[0]) {
                l->inputs[k] = i - 1;   /* previous layer, or -1 = model input */
                if (l->n_inputs == 2)
                    return perr(p, "%s needs 'inputs = a, b'%s", dpt_op_kind_name(l->kind), "");
                continue;
            }
            l->inputs[k] = !strcmp(nm, "data") ? -1 : find_layer(s, i, nm);
            if (l->inputs[k] == -2)
                return perr(p, "input '%s' is not the name of an earlier layer (or 'data')%s",
                            nm, "");
        }
    }
    if (!opt->fuse_bn_relu)
        return DPT_OK;
    /* Fuse relu into a batchnorm that feeds only that relu. */
    int consumers[MAX_LAYERS] = {0};
    for (int i = 0; i < s->n_layers; i++)
        for (int k = 0; k < s->layers[i].n_inputs; k++)
            if (s->layers[i].inputs[k] >= 0)
                consumers[s->layers[i].inputs[k]]++;
    /* Compact in place while reading the original specs from a copy. */
    dpt_layer_spec_t *orig = dpt_malloc((size_t)s->n_layers * sizeof *orig);
    if (!orig)
        return dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory", p->path);
    memcpy(orig, s->layers, (size_t)s->n_layers * sizeof *orig);
    int remap[MAX_LAYERS];
    int n = 0;
    for (int i = 0; i < s->n_layers; i++) {
        const dpt_layer_spec_t *l = &orig[i];
        int src = l->inputs[0];
        if (l->kind == DPT_OP_RELU && src >= 0 && orig[src].kind == DPT_OP_BATCHNORM &&
            consumers[src] == 1) {
            s->layers[remap[src]].fuse_relu = 1;
            remap[i] = remap[src];
            continue;
        }
        dpt_layer_spec_t tmp = *l;
        for (int k = 0; k < tmp.n_inputs; k++)
            if (tmp.inputs[k] >= 0)
                tmp.inputs[k] = remap[tmp.inputs[k]];
        remap[i] = n;
        s->layers[n++] = tmp;
    }
    dpt_free(orig);
    s->n_layers = n;
    return DPT_OK;
}

dpt_status_t dpt__model_parse(const char *path, const dpt_model_options_t *opt,
                              dpt_model_spec_t *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s", path);
    dpt__mlines_t lines;
    dpt_status_t st = dpt__model_expand(path, &lines);   /* I/O, memory: nothing to free */
    if (st != DPT_OK)
        return st;
    s->files = lines.files;   /* the layers' file names point into them */
    s->n_files = lines.n_files;
    lines.files = NULL;
    lines.n_files = lines.cap_files = 0;
    parser_t p = {.path = s->path, .spec = s};
    s->layers = dpt_calloc(MAX_LAYERS * sizeof *s->layers);
    p.input_names = dpt_calloc(MAX_LAYERS * sizeof *p.input_names);
    if (!s->layers || !p.input_names) {
        st = dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    int cur = -2;   /* -2 = before any section, -1 = [net], >= 0 = layer index */
    for (int li = 0; li < lines.n; li++) {
        const dpt__mline_t *ml = &lines.v[li];
        p.line = ml->line;
        p.use_line = ml->use_line;
        p.rep = ml->rep;
        p.file = ml->file;
        p.use_file = ml->use_file;
        char *line = ml->text;   /* comment-free, trimmed, not empty */
        if (*line == '[') {
            char *end = strchr(line, ']');
            if (!end || end[1]) {
                st = perr(&p, "bad section header '%s'%s", line, "");
                goto done;
            }
            *end = '\0';
            char *type = trim(line + 1);
            p.n_seen = 0;
            if (!strcmp(type, "net")) {
                if (p.have_net || cur != -2) {
                    st = perr(&p, "[net] must come once, first%s%s", "", "");
                    goto done;
                }
                p.have_net = 1;
                cur = -1;
                continue;
            }
            if (!p.have_net) {
                st = perr(&p, "the file must start with a [net] section%s%s", "", "");
                goto done;
            }
            size_t t = 0;
            while (t < sizeof layer_types / sizeof layer_types[0] && strcmp(layer_types[t].name, type))
                t++;
            if (t == sizeof layer_types / sizeof layer_types[0]) {
                st = perr(&p, "unknown layer type '%s' (known: conv, batchnorm, relu, celu, "
                          "silu, gelu, sigmoid, maxpool, gap, fc, add, flatten, scale, "
                          "softmax_xent)%s", type, "");
                goto done;
            }
            if (s->n_layers == MAX_LAYERS - 1) {
                char lim[16];
                snprintf(lim, sizeof lim, "%d", MAX_LAYERS - 1);
                st = perr(&p, "more than %s layers%s", lim, "");
                goto done;
            }
            cur = s->n_layers++;
            layer_defaults(&s->layers[cur], layer_types[t].name, layer_types[t].kind, &p, cur, opt);
            continue;
        }
        char *eq = strchr(line, '=');
        if (!eq || cur == -2) {
            st = perr(&p, cur == -2 ? "'%s' outside a section%s" : "expected key = value, got '%s'%s",
                      line, "");
            goto done;
        }
        *eq = '\0';
        char *key = trim(line), *val = trim(eq + 1);
        char section[48];
        if (cur == -1)
            snprintf(section, sizeof section, "[net]");
        else
            for (size_t t = 0; t < sizeof layer_types / sizeof layer_types[0]; t++)
                if (layer_types[t].kind == s->layers[cur].kind)   /* the file's word, e.g. conv */
                    snprintf(section, sizeof section, "[%s] (layer %d)", layer_types[t].name,
                             cur + 1);
        st = check_duplicate(&p, key, section);
        if (st != DPT_OK)
            goto done;
        st = cur == -1 ? set_net_key(&p, key, val) : set_key(&p, &s->layers[cur], cur, key, val);
        if (st != DPT_OK)
            goto done;
    }
    if (lines.st != DPT_OK) {   /* a bad line after the ones above */
        st = dpt_error_set(lines.st, "%s", lines.msg);
        goto done;
    }
    if (lines.truncated) {   /* the expansion stops at a layer the loop above refuses */
        st = dpt_error_set(DPT_ERR_INTERNAL, "%s: model expansion stopped early", path);
        goto done;
    }
    p.line = lines.n_file_lines;   /* an appended softmax_xent: the end of the file */
    p.use_line = p.rep = 0;
    p.file = p.use_file = NULL;
    if (!p.have_net || s->in_c == 0 || s->classes == 0) {
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: missing [net] section with input = C,H,W and "
                           "classes = K", path);
        goto done;
    }
    if (s->n_layers == 0) {
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: no layers", path);
        goto done;
    }
    if (s->layers[s->n_layers - 1].kind != DPT_OP_XENT) {
        int i = s->n_layers++;
        layer_defaults(&s->layers[i], "softmax_xent", DPT_OP_XENT, &p, i, opt);
    }
    st = finish(&p, opt);
done:
    dpt__mlines_free(&lines);
    dpt_free(p.input_names);
    if (st != DPT_OK)
        dpt__model_spec_free(s);
    return st;
}

void dpt__model_spec_free(dpt_model_spec_t *s)
{
    dpt_free(s->layers);
    for (int i = 0; i < s->n_files; i++)
        dpt_free(s->files[i]);
    dpt_free(s->files);
    s->layers = NULL;
    s->files = NULL;
    s->n_layers = s->n_files = 0;
}
