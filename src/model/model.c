/* model.c: builds the layer graph from a parsed model file (model_parse.c) on one backend, owns
 * the flat parameter / gradient / buffer arenas and the activation tensors, and runs forward and
 * backward through the backend's ops (including the synchronized BN path, sync_bn.c). Nothing
 * here allocates after dpt_model_create. The private types live in model_private.h; the initial
 * parameter values are in model_init.c and the summary / profile tables in model_report.c. */
#include <string.h>

#include "dptrain/alloc.h"
#include "core/internal.h"
#include "model/model_private.h"

static dpt_tensor_t *node_input(dpt_model_t *m, node_t *nd, int i)
{
    return nd->in[i] < 0 ? &m->input : &m->nodes[nd->in[i]].out;
}

/* Fill the op descriptor of a layer from its spec and input tensors. */
static void spec_to_desc(const dpt_layer_spec_t *s, dpt_op_desc_t *d)
{
    memset(d, 0, sizeof *d);
    d->kind = s->kind;
    d->out_c = s->filters;
    d->kh = d->kw = s->size;
    d->stride = s->stride;
    d->pad = s->pad;
    d->has_bias = s->bias;
    d->groups = s->groups;
    d->pool_k = s->size;
    d->pool_stride = s->stride;
    d->pool_pad = s->pad;
    d->out_features = s->filters;
    d->bn_eps = s->eps;
    d->bn_momentum = s->momentum;
    d->fuse_relu = s->fuse_relu;
    d->alpha = s->alpha;
    d->gelu_tanh = s->gelu_tanh;
    d->heads = s->heads;
    d->cls_token = s->cls_token;
    d->drop_rate = s->drop_rate;
    d->pos_embed = s->pos_embed;
    d->label_smoothing = s->smoothing;
}

static dpt_status_t alloc_tensor(dpt_model_t *m, const dpt_tensor_t *shape, dpt_tensor_t *t)
{
    *t = *shape;
    t->data = m->ops->alloc(m->be, shape->nbytes);
    if (!t->data)
        return dpt_error_set(DPT_ERR_NOMEM, "model: out of memory for activations (%zu bytes)",
                             shape->nbytes);
    return DPT_OK;
}

static dpt_status_t build(dpt_model_t *m, const dpt_model_spec_t *spec)
{
    m->n_nodes = spec->n_layers;
    m->nodes = dpt_calloc((size_t)m->n_nodes * sizeof(node_t));
    m->segs = dpt_calloc((size_t)m->n_nodes * 2 * sizeof(dpt_param_segment_t));
    m->labels = dpt_calloc((size_t)m->opt.batch * sizeof(int32_t));
    if (!m->nodes || !m->segs || !m->labels)
        return dpt_error_set(DPT_ERR_NOMEM, "model: out of memory");
    DPT_CHECK(alloc_tensor(m, &(dpt_tensor_t){.n = m->opt.batch, .c = m->in_c, .h = m->in_h,
                                              .w = m->in_w, .nbytes = (size_t)m->opt.batch *
                                              m->in_c * m->in_h * m->in_w * sizeof(float)},
                           &m->input));
    for (int i = 0; i < m->n_nodes; i++) {
        node_t *nd = &m->nodes[i];
        nd->spec = spec->layers[i];
        nd->n_in = nd->spec.n_inputs;
        for (int k = 0; k < nd->n_in; k++) {
            nd->in[k] = nd->spec.inputs[k];
            if (nd->in[k] >= 0)
                m->nodes[nd->in[k]].n_consumers++;
        }
    }
    size_t p_off = 0, b_off = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        node_t *nd = &m->nodes[i];
        dpt_op_desc_t d;
        spec_to_desc(&nd->spec, &d);
        d.rng_layer = (uint32_t)i;
        d.n_in = nd->n_in;
        for (int k = 0; k < nd->n_in; k++) {
            d.in[k] = *node_input(m, nd, k);
            d.in[k].data = NULL;
        }
        dpt_status_t st = m->ops->op_create(m->be, &d, &nd->op, &nd->info);
        if (st != DPT_OK) {
            char where[640];
            dpt__layer_where(where, sizeof where, spec, &nd->spec);
            return dpt_error_prefix(st, "%s:%d: layer '%s' (%s)%s: ",
                                    dpt__layer_file(spec, &nd->spec), nd->spec.line,
                                    nd->spec.name, dpt_op_kind_name(nd->spec.kind), where);
        }
        nd->p_off = p_off;
        nd->b_off = b_off;
        /* weights as a matrix, one row per output channel (compression views them so) */
        size_t rows = d.kind == DPT_OP_CONV2D ? (size_t)d.out_c
                      : d.kind == DPT_OP_FC || d.kind == DPT_OP_LINEAR ? (size_t)d.out_features
                                                                        : 1;
        if (!rows || nd->info.n_weights % rows)
            rows = 1;
        if (nd->info.n_weights)
            m->segs[m->n_segs++] = (dpt_param_segment_t){p_off, nd->info.n_weights, 1, i, rows};
        if (nd->info.n_params > nd->info.n_weights)
            m->segs[m->n_segs++] = (dpt_param_segment_t){p_off + nd->info.n_weights,
                                                         nd->info.n_params - nd->info.n_weights,
                                                         0, i, 1};
        p_off += nd->info.n_params;
        b_off += nd->info.n_buffers;
        m->flops += nd->info.flops_fwd;
        DPT_CHECK(alloc_tensor(m, &nd->info.out, &nd->out));
        DPT_CHECK(alloc_tensor(m, &nd->info.out, &nd->grad));
    }
    node_t *last = &m->nodes[m->n_nodes - 1];
    if (last->spec.kind != DPT_OP_XENT)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "%s: the last layer must be softmax_xent",
                             spec->path);
    if (last->info.out.c != m->classes)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "%s: the network outputs %d values but [net] "
                             "classes = %d", spec->path, last->info.out.c, m->classes);
    /* Gradient routing: the first consumer of a tensor in backward order (the last layer that
     * reads it) writes its grad; every further consumer writes an extra buffer, summed in before
     * the producer's own backward. */
    int *assigned = dpt_calloc((size_t)m->n_nodes * sizeof(int));
    if (!assigned)
        return dpt_error_set(DPT_ERR_NOMEM, "model: out of memory");
    dpt_status_t st = DPT_OK;
    for (int i = m->n_nodes - 1; i >= 0 && st == DPT_OK; i--) {
        node_t *nd = &m->nodes[i];
        for (int k = 0; k < nd->n_in && st == DPT_OK; k++) {
            nd->edge_slot[k] = -1;
            if (nd->in[k] < 0)
                continue;
            node_t *p = &m->nodes[nd->in[k]];
            if (assigned[nd->in[k]]++ == 0)
                continue;
            if (p->n_extra == 3) {
                st = dpt_error_set(DPT_ERR_UNSUPPORTED, "%s:%d: layer '%s' feeds more than 4 "
                                   "layers", dpt__layer_file(spec, &p->spec), p->spec.line,
                                   p->spec.name);
                break;
            }
            nd->edge_slot[k] = p->n_extra;
            st = alloc_tensor(m, &p->info.out, &p->extra[p->n_extra++]);
        }
    }
    dpt_free(assigned);
    DPT_CHECK(st);
    for (int i = 0; i < m->n_nodes; i++) {
        node_t *nd = &m->nodes[i];
        if (!nd->n_extra)
            continue;
        dpt_op_desc_t d = {.kind = DPT_OP_ADD, .n_in = 2};
        d.in[0] = d.in[1] = nd->info.out;
        d.in[0].data = d.in[1].data = NULL;
        dpt_op_info_t info;
        DPT_CHECK(m->ops->op_create(m->be, &d, &nd->sum_op, &info));
    }
    m->n_params = p_off;
    m->n_buffers = b_off;
    m->h_params = dpt_calloc((p_off ? p_off : 1) * sizeof(float));
    m->h_buffers = dpt_calloc((b_off ? b_off : 1) * sizeof(float));
    if (!m->h_params || !m->h_buffers)
        return dpt_error_set(DPT_ERR_NOMEM, "model: out of memory for %zu parameters", p_off);
    if (!m->on_device) {
        m->params = m->h_params;
        m->buffers = m->h_buffers;
        m->grads = dpt_calloc((p_off ? p_off : 1) * sizeof(float));
        if (!m->grads)
            return dpt_error_set(DPT_ERR_NOMEM, "model: out of memory for %zu parameters", p_off);
        return DPT_OK;
    }
    /* Device arenas: zero-filled from the (zeroed) host mirrors, gradients from the params'. */
    m->params = m->ops->alloc(m->be, (p_off ? p_off : 1) * sizeof(float));
    m->grads = m->ops->alloc(m->be, (p_off ? p_off : 1) * sizeof(float));
    m->buffers = m->ops->alloc(m->be, (b_off ? b_off : 1) * sizeof(float));
    if (!m->params || !m->grads || !m->buffers)
        return dpt_error_set(DPT_ERR_NOMEM, "model: out of device memory for %zu parameters",
                             p_off);
    DPT_CHECK(dpt_backend_memcpy(m->ops, m->be, m->grads, m->h_params,
                                 (p_off ? p_off : 1) * sizeof(float), DPT_COPY_H2D));
    DPT_CHECK(dpt_model_params_to_device(m));
    return dpt_backend_sync(m->ops, m->be);
}

/* Synchronized BN: per BN layer a plain copy of its input and the batch statistics, and plain
 * scratch for outputs and gradients shared by all of them. */
static dpt_status_t alloc_sync_bn(dpt_model_t *m)
{
    size_t most = 0;
    int cmax = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        node_t *nd = &m->nodes[i];
        if (nd->spec.kind != DPT_OP_BATCHNORM)
            continue;
        const dpt_tensor_t *o = &nd->info.out;
        size_t n = (size_t)o->n * o->c * o->h * o->w;
        nd->sx = dpt_malloc(n * sizeof(float));
        nd->smean = dpt_malloc((size_t)o->c * sizeof(float));
        nd->sinvstd = dpt_malloc((size_t)o->c * sizeof(float));
        if (!nd->sx || !nd->smean || !nd->sinvstd)
            return dpt_error_set(DPT_ERR_NOMEM, "model: out of memory for synchronized BN");
        most = n > most ? n : most;
        cmax = o->c > cmax ? o->c : cmax;
    }
    m->s_a = dpt_malloc((most ? most : 1) * sizeof(float));
    m->s_b = dpt_malloc((most ? most : 1) * sizeof(float));
    m->s_tmp = dpt_malloc((2 * (size_t)cmax + 1) * sizeof(float));
    if (!m->s_a || !m->s_b || !m->s_tmp)
        return dpt_error_set(DPT_ERR_NOMEM, "model: out of memory for synchronized BN");
    return DPT_OK;
}

static dpt__sbn_args_t sbn_args(dpt_model_t *m, node_t *nd)
{
    const dpt_tensor_t *o = &nd->info.out;
    const float *w = m->params + nd->p_off;
    return (dpt__sbn_args_t){.n = o->n, .c = o->c, .hw = o->h * o->w, .eps = nd->spec.eps,
                             .momentum = nd->spec.momentum, .gamma = w, .beta = w + o->c,
                             .tmp = m->s_tmp, .sum = m->opt.bn_sum, .ctx = m->opt.bn_sum_ctx};
}

static dpt_status_t sync_bn_forward(dpt_model_t *m, node_t *nd)
{
    dpt__sbn_args_t a = sbn_args(m, nd);
    float *buf = m->buffers + nd->b_off;
    DPT_CHECK(m->ops->export_nchw(m->be, node_input(m, nd, 0), nd->sx));
    DPT_CHECK(dpt__sbn_forward(&a, nd->sx, m->s_a, buf, buf + a.c, nd->smean, nd->sinvstd));
    return m->ops->import_nchw(m->be, m->s_a, &nd->out);
}

static dpt_status_t sync_bn_backward(dpt_model_t *m, node_t *nd, dpt_tensor_t *dx)
{
    dpt__sbn_args_t a = sbn_args(m, nd);
    float *dw = m->grads + nd->p_off;
    DPT_CHECK(m->ops->export_nchw(m->be, &nd->grad, m->s_a));
    DPT_CHECK(dpt__sbn_backward(&a, nd->sx, m->s_a, dx ? m->s_b : NULL, nd->smean, nd->sinvstd,
                                dw, dw + a.c));
    return dx ? m->ops->import_nchw(m->be, m->s_b, dx) : DPT_OK;
}

dpt_status_t dpt_model_create(const char *path, const dpt_backend_ops_t *ops, dpt_backend_t *be,
                              const dpt_model_options_t *opt, dpt_model_t **out)
{
    *out = NULL;
    if (opt->batch <= 0)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "model: batch size must be > 0 (got %d)",
                             opt->batch);
    dpt_model_options_t o = *opt;
    if (o.bn_sum)
        o.fuse_bn_relu = 0;   /* synchronized BN runs outside the backend's fused kernel */
    opt = &o;
    dpt_model_spec_t spec;
    DPT_CHECK(dpt__model_parse(path, opt, &spec));
    dpt_model_t *m = dpt_calloc(sizeof *m);
    if (!m) {
        dpt__model_spec_free(&spec);
        return dpt_error_set(DPT_ERR_NOMEM, "model: out of memory");
    }
    m->ops = ops;
    m->be = be;
    m->opt = *opt;
    m->in_c = spec.in_c;
    m->in_h = spec.in_h;
    m->in_w = spec.in_w;
    m->classes = spec.classes;
    m->on_device = ops->on_device;
    dpt_status_t st = DPT_OK;
    if (m->on_device && opt->bn_sum)
        st = dpt_error_set(DPT_ERR_UNSUPPORTED, "--sync-bn: not supported with the %s backend "
                           "(synchronized batch norm runs on host arrays)", ops->name);
    if (st == DPT_OK)
        st = build(m, &spec);
    dpt__model_spec_free(&spec);
    for (int i = 0; m->nodes && i < m->n_nodes; i++)   /* they pointed into spec.files */
        m->nodes[i].spec.file = m->nodes[i].spec.use_file = NULL;
    if (st == DPT_OK && opt->bn_sum)
        st = alloc_sync_bn(m);
    if (st != DPT_OK) {
        dpt_model_destroy(m);
        return st;
    }
    *out = m;
    return DPT_OK;
}

static void free_tensor(dpt_model_t *m, dpt_tensor_t *t)
{
    if (t->data)
        m->ops->free(m->be, t->data);
    t->data = NULL;
}

void dpt_model_destroy(dpt_model_t *m)
{
    if (!m)
        return;
    for (int i = 0; m->nodes && i < m->n_nodes; i++) {
        node_t *nd = &m->nodes[i];
        if (nd->op)
            m->ops->op_destroy(nd->op);
        if (nd->sum_op)
            m->ops->op_destroy(nd->sum_op);
        free_tensor(m, &nd->out);
        free_tensor(m, &nd->grad);
        for (int k = 0; k < nd->n_extra; k++)
            free_tensor(m, &nd->extra[k]);
        dpt_free(nd->sx);
        dpt_free(nd->smean);
        dpt_free(nd->sinvstd);
    }
    dpt_free(m->s_a);
    dpt_free(m->s_b);
    dpt_free(m->s_tmp);
    free_tensor(m, &m->input);
    dpt_free(m->nodes);
    dpt_free(m->segs);
    dpt_free(m->labels);
    if (m->on_device) {
        if (m->params)
            m->ops->free(m->be, m->params);
        if (m->grads)
            m->ops->free(m->be, m->grads);
        if (m->buffers)
            m->ops->free(m->be, m->buffers);
    } else {
        dpt_free(m->grads);
    }
    dpt_free(m->h_params);
    dpt_free(m->h_buffers);
    dpt_free(m);
}

float *dpt_model_params(dpt_model_t *m, size_t *count)
{
    if (count)
        *count = m->n_params;
    return m->params;
}

float *dpt_model_grads(dpt_model_t *m, size_t *count)
{
    if (count)
        *count = m->n_params;
    return m->grads;
}

float *dpt_model_buffers(dpt_model_t *m, size_t *count)
{
    if (count)
        *count = m->n_buffers;
    return m->buffers;
}

float *dpt_model_host_params(dpt_model_t *m) { return m->h_params; }
float *dpt_model_host_buffers(dpt_model_t *m) { return m->h_buffers; }
int dpt_model_on_device(const dpt_model_t *m) { return m->on_device; }
dpt_tensor_t *dpt_model_input_tensor(dpt_model_t *m) { return &m->input; }
void dpt_model_set_loss_scale(dpt_model_t *m, float scale) { m->loss_scale = scale; }
void dpt_model_set_rng(dpt_model_t *m, uint64_t seed, uint64_t sample0)
{
    m->rng_seed = seed;
    m->rng_sample0 = sample0;
}

dpt_status_t dpt_model_params_to_host(dpt_model_t *m)
{
    if (!m->on_device)
        return DPT_OK;
    DPT_CHECK(dpt_backend_sync(m->ops, m->be));   /* the arenas are final */
    DPT_CHECK(dpt_backend_memcpy(m->ops, m->be, m->h_params, m->params,
                                 m->n_params * sizeof(float), DPT_COPY_D2H));
    DPT_CHECK(dpt_backend_memcpy(m->ops, m->be, m->h_buffers, m->buffers,
                                 m->n_buffers * sizeof(float), DPT_COPY_D2H));
    return dpt_backend_sync(m->ops, m->be);
}

dpt_status_t dpt_model_params_to_device(dpt_model_t *m)
{
    if (!m->on_device)
        return DPT_OK;
    DPT_CHECK(dpt_backend_sync(m->ops, m->be));   /* nothing queued still reads the arenas */
    DPT_CHECK(dpt_backend_memcpy(m->ops, m->be, m->params, m->h_params,
                                 m->n_params * sizeof(float), DPT_COPY_H2D));
    DPT_CHECK(dpt_backend_memcpy(m->ops, m->be, m->buffers, m->h_buffers,
                                 m->n_buffers * sizeof(float), DPT_COPY_H2D));
    return dpt_backend_sync(m->ops, m->be);
}

const dpt_param_segment_t *dpt_model_segments(const dpt_model_t *m, int *n)
{
    *n = m->n_segs;
    return m->segs;
}

void dpt_model_input_shape(const dpt_model_t *m, int *c, int *h, int *w)
{
    *c = m->in_c;
    *h = m->in_h;
    *w = m->in_w;
}

int dpt_model_classes(const dpt_model_t *m) { return m->classes; }
double dpt_model_flops_fwd(const dpt_model_t *m) { return m->flops; }
int dpt_model_batch(const dpt_model_t *m) { return m->opt.batch; }

dpt_status_t dpt_model_forward(dpt_model_t *m, const float *x, const int32_t *labels, int n_valid,
                               int training, float *loss, int32_t *correct)
{
    if (x)   /* else the caller wrote the input tensor (dpt_model_input_tensor) */
        DPT_CHECK(m->ops->import_nchw(m->be, x, &m->input));
    memcpy(m->labels, labels, (size_t)m->opt.batch * sizeof(int32_t));
    m->n_valid = n_valid;
    for (int i = 0; i < m->n_nodes; i++) {
        node_t *nd = &m->nodes[i];
        dpt_op_args_t a = {
            .x = {node_input(m, nd, 0), nd->n_in > 1 ? node_input(m, nd, 1) : NULL},
            .y = &nd->out,
            .w = m->params + nd->p_off,
            .buf = m->buffers + nd->b_off,
            .labels = m->labels,
            .loss = loss,
            .correct = correct,
            .n_valid = n_valid,
            .training = training,
            .rng_seed = m->rng_seed,
            .rng_sample0 = m->rng_sample0,
        };
        double t0 = m->profile ? dpt__now() : 0;
        if (training && m->opt.bn_sum && nd->spec.kind == DPT_OP_BATCHNORM)
            DPT_CHECK(sync_bn_forward(m, nd));
        else
            DPT_CHECK(m->ops->forward(nd->op, &a));
        if (m->profile)
            nd->t_fwd += dpt__now() - t0;
    }
    m->profile_steps += m->profile && training;
    return DPT_OK;
}

dpt_status_t dpt_model_backward(dpt_model_t *m)
{
    for (int i = m->n_nodes - 1; i >= 0; i--) {
        node_t *nd = &m->nodes[i];
        double t0 = m->profile ? dpt__now() : 0;
        if (nd->n_extra) {
            /* Sum the gradients of the extra consumers into grad. */
            for (int k = 0; k < nd->n_extra; k++) {
                dpt_op_args_t s = {.x = {&nd->grad, &nd->extra[k]}, .y = &nd->grad};
                DPT_CHECK(m->ops->forward(nd->sum_op, &s));
            }
        }
        dpt_op_args_t a = {
            .x = {node_input(m, nd, 0), nd->n_in > 1 ? node_input(m, nd, 1) : NULL},
            .y = &nd->out,
            .dy = &nd->grad,
            .w = m->params + nd->p_off,
            .dw = m->grads + nd->p_off,
            .buf = m->buffers + nd->b_off,
            .labels = m->labels,
            .n_valid = m->n_valid,
            .training = 1,
            .loss_scale = m->loss_scale,
            .rng_seed = m->rng_seed,
            .rng_sample0 = m->rng_sample0,
        };
        for (int k = 0; k < nd->n_in; k++) {
            if (nd->in[k] < 0)
                continue;   /* no gradient for the model input */
            node_t *p = &m->nodes[nd->in[k]];
            a.dx[k] = nd->edge_slot[k] < 0 ? &p->grad : &p->extra[nd->edge_slot[k]];
        }
        if (m->opt.bn_sum && nd->spec.kind == DPT_OP_BATCHNORM)
            DPT_CHECK(sync_bn_backward(m, nd, a.dx[0]));
        else
            DPT_CHECK(m->ops->backward(nd->op, &a));
        if (m->profile)
            nd->t_bwd += dpt__now() - t0;
        if (nd->info.n_params && m->opt.grad_ready)
            m->opt.grad_ready(m->opt.grad_ready_ctx, nd->p_off, nd->info.n_params);
    }
    return DPT_OK;
}

void dpt_model_set_profile(dpt_model_t *m, int on)
{
    m->profile = on;
    m->profile_steps = 0;
    for (int i = 0; i < m->n_nodes; i++)
        m->nodes[i].t_fwd = m->nodes[i].t_bwd = 0;
}
