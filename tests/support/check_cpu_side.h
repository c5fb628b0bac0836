/* check_cpu_side.h: the cpu-against-ref comparison of one op (tests/unit/check_cpu_backend.c and
 * the per-op test files): a "side" is one backend with the op under test, its tensors and
 * gradients; compare_op runs the same parameters, inputs and output gradients through ref and
 * cpu and asserts that outputs, input and parameter gradients, loss and BN running statistics
 * agree to CPU_SIDE_TOL relative to the largest magnitude of the ref result (compare_op_run: also
 * a backward without input gradients). In blocked mode a conv "producer" op is created first
 * only to obtain its blocked output layout, which becomes the input layout of the op under test
 * (in nhwc mode a linear op's). Static functions: include from one test file each. */
#ifndef DPT_TEST_CHECK_CPU_SIDE_H
#define DPT_TEST_CHECK_CPU_SIDE_H

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check_compare.h"
#include "dptrain/alloc.h"
#include "dptrain/backend.h"
#include "dptrain/rng.h"

#ifndef CPU_SIDE_TOL
#define CPU_SIDE_TOL 1e-4
#endif

typedef struct side {
    const dpt_backend_ops_t *ops;
    dpt_backend_t *be;
    dpt_op_t *op, *producer;
    dpt_op_info_t info;
    dpt_op_desc_t d;
    dpt_tensor_t x[2], y, dy, dx[2];
    float *buf;
    float *dw;
    float loss;
    int32_t correct;
} side_t;


static dpt_tensor_t make_tensor(side_t *s, dpt_tensor_t shape)
{
    shape.data = s->ops->alloc(s->be, shape.nbytes);
    ck_assert_ptr_nonnull(shape.data);
    memset(shape.data, 0, shape.nbytes);
    return shape;
}

/* blocked: 0 = plain NCHW, 1 = blocked, 2 = blocked with Winograd convolutions, 3 = nhwc (the
 * output layout of a cpu linear op; the backend not blocked) */
static void side_open(side_t *s, const char *name, int blocked, const dpt_op_desc_t *desc)
{
    memset(s, 0, sizeof *s);
    s->ops = dpt_backend_find(name);
    ck_assert_ptr_nonnull(s->ops);
    dpt_backend_config_t cfg = {.threads = 2, .blocked_layout = blocked == 1 || blocked == 2,
                                .conv_winograd = blocked == 2};
    ck_assert_int_eq(s->ops->create(&cfg, &s->be), DPT_OK);
    s->d = *desc;
    if (blocked && desc->kind != DPT_OP_XENT) {
        const dpt_tensor_t *in = &desc->in[0];
        dpt_op_desc_t p = {.kind = DPT_OP_CONV2D, .n_in = 1, .out_c = in->c, .kh = 3, .kw = 3,
                           .stride = 1, .pad = 1};
        if (blocked == 3)
            p = (dpt_op_desc_t){.kind = DPT_OP_LINEAR, .n_in = 1, .out_features = in->c};
        p.in[0] = dpt_tensor_shape(in->n, 3, in->h, in->w);
        dpt_op_info_t pinfo;
        ck_assert_int_eq(s->ops->op_create(s->be, &p, &s->producer, &pinfo), DPT_OK);
        if (blocked != 3 || in->h * in->w > 1)   /* one position: NHWC and NCHW are the same */
            ck_assert_msg(pinfo.out.layout != DPT_LAYOUT_NCHW, "%s mode gave a plain layout",
                          blocked == 3 ? "nhwc" : "blocked");
        for (int i = 0; i < desc->n_in; i++)
            if (i == 0 || (desc->in[i].c == in->c && desc->in[i].h == in->h
                               && desc->in[i].w == in->w))   /* mul's gate stays plain */
                s->d.in[i] = pinfo.out;
    }
    dpt_status_t st = s->ops->op_create(s->be, &s->d, &s->op, &s->info);
    ck_assert_msg(st == DPT_OK, "%s op_create(%s): %s", name, dpt_op_kind_name(desc->kind),
                  dpt_error_get());
    for (int i = 0; i < desc->n_in; i++) {
        s->x[i] = make_tensor(s, s->d.in[i]);
        s->dx[i] = make_tensor(s, s->d.in[i]);
    }
    s->y = make_tensor(s, s->info.out);
    s->dy = make_tensor(s, s->info.out);
    s->dw = dpt_calloc((s->info.n_params + 1) * sizeof(float));
}

static void side_close(side_t *s)
{
    for (int i = 0; i < s->d.n_in; i++) {
        s->ops->free(s->be, s->x[i].data);
        s->ops->free(s->be, s->dx[i].data);
    }
    s->ops->free(s->be, s->y.data);
    s->ops->free(s->be, s->dy.data);
    dpt_free(s->dw);
    dpt_free(s->buf);
    s->ops->op_destroy(s->op);
    if (s->producer)
        s->ops->op_destroy(s->producer);
    s->ops->destroy(s->be);
}

/* Export a tensor of side s to plain NCHW in `out` (count floats). */
static void to_plain(side_t *s, const dpt_tensor_t *t, float *out)
{
    ck_assert_int_eq(s->ops->export_nchw(s->be, t, out), DPT_OK);
}

static dpt_op_args_t args_of(side_t *s, const float *w, const int32_t *labels, int training)
{
    dpt_op_args_t a = {.x = {&s->x[0], &s->x[1]}, .y = &s->y, .dy = &s->dy,
                       .dx = {&s->dx[0], &s->dx[1]}, .w = w, .dw = s->dw, .buf = s->buf,
                       .labels = labels, .loss = &s->loss, .correct = &s->correct,
                       .training = training};
    if (s->d.n_in < 2)
        a.x[1] = NULL, a.dx[1] = NULL;
    return a;
}

/* Run desc on ref and cpu (blocked: as side_open) and compare everything; no_dx_too: after the
 * training backward, one more without input gradients (dW zeroed first) whose parameter
 * gradients must agree too. Returns the cpu implementation name in impl (unless NULL). */
static void compare_op_run(const dpt_op_desc_t *desc, int blocked, int no_dx_too, uint64_t seed,
                           char *impl, size_t impl_len)
{
    static const char *const mode_names[] = {"nchw", "blocked", "blocked", "nhwc"};
    const char *mode = mode_names[blocked];
    side_t r, c;
    side_open(&r, "ref", 0, desc);
    side_open(&c, "cpu", blocked, desc);
    if (impl)
        snprintf(impl, impl_len, "%s", c.info.impl);
    dpt_tensor_t *out = &r.info.out;
    ck_assert_int_eq(c.info.out.n, out->n);
    ck_assert_int_eq(c.info.out.c, out->c);
    ck_assert_int_eq(c.info.out.h, out->h);
    ck_assert_int_eq(c.info.out.w, out->w);
    ck_assert_uint_eq(c.info.n_params, r.info.n_params);
    ck_assert_uint_eq(c.info.n_weights, r.info.n_weights);
    ck_assert_uint_eq(c.info.n_buffers, r.info.n_buffers);

    dpt_rng_t rng;
    dpt_rng_init(&rng, seed, (uint64_t)desc->kind);
    size_t np = r.info.n_params, nb = r.info.n_buffers;
    size_t nx = dpt_tensor_count(&desc->in[0]), ny = dpt_tensor_count(out);
    float *w = randv(&rng, np + 1, 0.5f, 0.0f);
    if (desc->kind == DPT_OP_BATCHNORM || desc->kind == DPT_OP_LAYERNORM)   /* gamma around 1 */
        for (size_t i = 0; i < np / 2; i++)
            w[i] += 1.0f;
    float *buf0 = randv(&rng, nb + 1, 0.2f, 0.0f);
    for (size_t i = nb / 2; i < nb; i++)     /* running var > 0 */
        buf0[i] = 1.0f + buf0[i];
    r.buf = dpt_malloc((nb + 1) * sizeof(float));
    c.buf = dpt_malloc((nb + 1) * sizeof(float));
    memcpy(r.buf, buf0, (nb + 1) * sizeof(float));
    memcpy(c.buf, buf0, (nb + 1) * sizeof(float));

    float *xp[2], *dyp = randv(&rng, ny, 1.0f, 0.0f);
    for (int i = 0; i < desc->n_in; i++) {
        xp[i] = randv(&rng, nx, 2.0f, 0.3f);   /* nx >= every input's count */
        memcpy(r.x[i].data, xp[i], dpt_tensor_count(&desc->in[i]) * sizeof(float));
        ck_assert_int_eq(c.ops->import_nchw(c.be, xp[i], &c.x[i]), DPT_OK);
    }
    int32_t *labels = dpt_malloc((size_t)desc->in[0].n * sizeof(int32_t));
    for (int i = 0; i < desc->in[0].n; i++)
        labels[i] = (int32_t)dpt_rng_below(&rng, (uint32_t)desc->in[0].c);
    float *got = dpt_malloc((nx > ny ? nx : ny) * sizeof(float));
    const char *kind = dpt_op_kind_name(desc->kind);

    for (int training = 1; training >= 0; training--) {
        if (desc->kind == DPT_OP_XENT && !training)
            break;
        dpt_op_args_t ra = args_of(&r, w, labels, training), ca = args_of(&c, w, labels, training);
        ck_assert_int_eq(r.ops->forward(r.op, &ra), DPT_OK);
        ck_assert_msg(c.ops->forward(c.op, &ca) == DPT_OK, "%s fwd: %s", kind, dpt_error_get());
        to_plain(&c, &c.y, got);
        double e = rel_err(got, r.y.data, ny);
        ck_assert_msg(e < CPU_SIDE_TOL, "%s %s fwd (training %d): rel err %g", kind, mode,
                      training, e);
        if (nb) {
            e = rel_err(c.buf, r.buf, nb);
            ck_assert_msg(e < CPU_SIDE_TOL, "%s running stats: rel err %g", kind, e);
        }
        if (desc->kind == DPT_OP_XENT) {
            ck_assert_msg(fabsf(c.loss - r.loss) < CPU_SIDE_TOL * fmaxf(1.0f, fabsf(r.loss)),
                          "xent loss %g vs %g", c.loss, r.loss);
            ck_assert_int_eq(c.correct, r.correct);
        }
        if (!training)
            break;
        memcpy(r.dy.data, dyp, ny * sizeof(float));
        ck_assert_int_eq(c.ops->import_nchw(c.be, dyp, &c.dy), DPT_OK);
        ck_assert_int_eq(r.ops->backward(r.op, &ra), DPT_OK);
        ck_assert_msg(c.ops->backward(c.op, &ca) == DPT_OK, "%s bwd: %s", kind, dpt_error_get());
        for (int i = 0; i < desc->n_in; i++) {
            to_plain(&c, &c.dx[i], got);
            e = rel_err(got, r.dx[i].data, dpt_tensor_count(&desc->in[i]));
            ck_assert_msg(e < CPU_SIDE_TOL, "%s %s dx%d: rel err %g", kind, mode, i, e);
        }
        if (np) {
            e = rel_err(c.dw, r.dw, np);
            ck_assert_msg(e < CPU_SIDE_TOL, "%s %s dW: rel err %g", kind, mode, e);
        }
        if (no_dx_too) {   /* no input gradient wanted: the parameter gradients alone */
            ra.dx[0] = ra.dx[1] = ca.dx[0] = ca.dx[1] = NULL;
            memset(c.dw, 0, np * sizeof(float));
            ck_assert_int_eq(r.ops->backward(r.op, &ra), DPT_OK);
            ck_assert_msg(c.ops->backward(c.op, &ca) == DPT_OK, "%s bwd without dx: %s", kind,
                          dpt_error_get());
            if (np) {
                e = rel_err(c.dw, r.dw, np);
                ck_assert_msg(e < CPU_SIDE_TOL, "%s %s dW without dx: rel err %g", kind, mode, e);
            }
        }
    }
    for (int i = 0; i < desc->n_in; i++)
        dpt_free(xp[i]);
    dpt_free(dyp);
    dpt_free(w);
    dpt_free(buf0);
    dpt_free(labels);
    dpt_free(got);
    side_close(&r);
    side_close(&c);
}

/* Each test file uses some of these three. */
static inline void compare_op_impl(const dpt_op_desc_t *desc, int blocked, uint64_t seed,
                                   char *impl, size_t impl_len)
{
    compare_op_run(desc, blocked, 0, seed, impl, impl_len);
}

static inline void compare_op(const dpt_op_desc_t *desc, int blocked, uint64_t seed)
{
    compare_op_run(desc, blocked, 0, seed, NULL, 0);
}

#endif
