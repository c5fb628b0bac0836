/* check_cpu_backend.c: the oneDNN/OpenBLAS backend against the ref backend (the oracle), op by
 * op, forward and backward, on odd shapes, with activations in plain NCHW and in oneDNN's blocked
 * layout. The same parameters, inputs and output gradients go to both; outputs, input and
 * parameter gradients, loss and BN running statistics must agree to 1e-4 relative to the
 * largest magnitude of the ref result. In blocked mode a conv "producer" op is created first only
 * to obtain its blocked output layout, which becomes the input layout of the op under test. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check_compare.h"
#include "check_main.h"
#include "dptrain/alloc.h"
#include "dptrain/backend.h"
#include "dptrain/rng.h"

#define TOL 1e-4

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

/* blocked: 0 = plain NCHW, 1 = blocked, 2 = blocked with Winograd convolutions */
static void side_open(side_t *s, const char *name, int blocked, const dpt_op_desc_t *desc)
{
    memset(s, 0, sizeof *s);
    s->ops = dpt_backend_find(name);
    ck_assert_ptr_nonnull(s->ops);
    dpt_backend_config_t cfg = {.threads = 2, .blocked_layout = blocked > 0,
                                .conv_winograd = blocked == 2};
    ck_assert_int_eq(s->ops->create(&cfg, &s->be), DPT_OK);
    s->d = *desc;
    if (blocked && desc->kind != DPT_OP_XENT) {
        const dpt_tensor_t *in = &desc->in[0];
        dpt_op_desc_t p = {.kind = DPT_OP_CONV2D, .n_in = 1, .out_c = in->c, .kh = 3, .kw = 3,
                           .stride = 1, .pad = 1};
        p.in[0] = dpt_tensor_shape(in->n, 3, in->h, in->w);
        dpt_op_info_t pinfo;
        ck_assert_int_eq(s->ops->op_create(s->be, &p, &s->producer, &pinfo), DPT_OK);
        ck_assert_msg(pinfo.out.layout != DPT_LAYOUT_NCHW, "blocked mode gave a plain layout");
        for (int i = 0; i < desc->n_in; i++)
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

/* Run desc on ref and cpu (blocked: as side_open) and compare everything; returns the cpu
 * implementation name in impl. */
static void compare_op_impl(const dpt_op_desc_t *desc, int blocked, uint64_t seed, char *impl,
                            size_t impl_len)
{
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
    if (desc->kind == DPT_OP_BATCHNORM)      /* gamma around 1 */
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
        xp[i] = randv(&rng, nx, 2.0f, 0.3f);
        memcpy(r.x[i].data, xp[i], nx * sizeof(float));
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
        ck_assert_msg(e < TOL, "%s %s fwd (training %d): rel err %g", kind,
                      blocked ? "blocked" : "nchw", training, e);
        if (nb) {
            e = rel_err(c.buf, r.buf, nb);
            ck_assert_msg(e < TOL, "%s running stats: rel err %g", kind, e);
        }
        if (desc->kind == DPT_OP_XENT) {
            ck_assert_msg(fabsf(c.loss - r.loss) < TOL * fmaxf(1.0f, fabsf(r.loss)),
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
            e = rel_err(got, r.dx[i].data, nx);
            ck_assert_msg(e < TOL, "%s %s dx%d: rel err %g", kind, blocked ? "blocked" : "nchw",
                          i, e);
        }
        if (np) {
            e = rel_err(c.dw, r.dw, np);
            ck_assert_msg(e < TOL, "%s %s dW: rel err %g", kind, blocked ? "blocked" : "nchw", e);
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

static void compare_op(const dpt_op_desc_t *desc, int blocked, uint64_t seed)
{
    compare_op_impl(desc, blocked, seed, NULL, 0);
}

/* ---- the cases ---------------------------------------------------------------------------- */
static dpt_op_desc_t conv(int n, int c, int h, int w, int o, int k, int s, int p, int bias)
{
    dpt_op_desc_t d = {.kind = DPT_OP_CONV2D, .n_in = 1, .out_c = o, .kh = k, .kw = k,
                       .stride = s, .pad = p, .has_bias = bias};
    d.in[0] = dpt_tensor_shape(n, c, h, w);
    return d;
}

/* n, c, h, w, filters, size, stride, pad, bias, groups: the last five grouped (2 groups;
 * depthwise 3x3 and 5x5 stride 2, EfficientNet's; depthwise with two filters per channel; 3 odd
 * groups) */
static const int conv_cases[][10] = {
    {2, 3, 9, 7, 5, 3, 1, 1, 1, 1},    {3, 16, 8, 8, 32, 3, 1, 1, 0, 1},
    {1, 7, 11, 10, 13, 3, 2, 0, 1, 1}, {2, 5, 6, 6, 17, 1, 1, 0, 0, 1},
    {4, 24, 7, 7, 20, 5, 2, 2, 1, 1},  {1, 1, 28, 28, 32, 3, 1, 1, 0, 1},
    {2, 16, 8, 8, 32, 3, 1, 1, 1, 2},  {3, 32, 9, 9, 32, 3, 1, 1, 0, 32},
    {2, 24, 11, 11, 24, 5, 2, 2, 0, 24}, {2, 8, 7, 7, 16, 3, 1, 1, 1, 8},
    {1, 9, 7, 5, 15, 3, 1, 1, 1, 3},
};
#define N_CONV ((int)(sizeof conv_cases / sizeof conv_cases[0]))

/* _i: case x {nchw, blocked direct, blocked Winograd}. Where the CPU has AVX-512 (what oneDNN's
 * Winograd kernels need), a 3x3 stride-1 convolution with more than one input channel must
 * really have taken the Winograd path, so this test covers it. */
START_TEST(test_conv)
{
    const int *k = conv_cases[_i / 3];
    int mode = _i % 3;
    dpt_op_desc_t d = conv(k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8]);
    d.groups = k[9];
    char impl[48];
    compare_op_impl(&d, mode, 100 + (uint64_t)_i, impl, sizeof impl);
    int wino = strstr(impl, "wino") != NULL;
    if (mode != 2)
        ck_assert_msg(!wino, "winograd used without being asked: %s", impl);
    else if (k[5] == 3 && k[6] == 1 && k[1] > 1 && k[9] == 1 && __builtin_cpu_supports("avx512f"))
        ck_assert_msg(wino, "3x3 stride-1 conv did not use winograd: %s", impl);
}
END_TEST

/* _i: shape (N_SHAPES) x layout (2) */
START_TEST(test_batchnorm)
{
    dpt_op_desc_t d = shaped(DPT_OP_BATCHNORM, _i / 2);
    compare_op(&d, _i % 2, 200 + (uint64_t)_i);
    d.fuse_relu = 1;
    compare_op(&d, _i % 2, 300 + (uint64_t)_i);
}
END_TEST

START_TEST(test_eltwise)
{
    static const dpt_op_kind_t kinds[] = {DPT_OP_RELU, DPT_OP_CELU, DPT_OP_SCALE, DPT_OP_ADD};
    for (int k = 0; k < 4; k++) {
        dpt_op_desc_t d = shaped(kinds[k], _i / 2);
        compare_op(&d, _i % 2, 400 + (uint64_t)(_i * 4 + k));
    }
}
END_TEST

/* SiLU, GELU (erf, tanh) and sigmoid (oneDNN eltwise) on the shapes of test_eltwise. */
static dpt_op_desc_t act_desc(int a, int shape)
{
    static const dpt_op_kind_t kinds[] = {DPT_OP_SILU, DPT_OP_GELU, DPT_OP_GELU, DPT_OP_SIGMOID};
    dpt_op_desc_t d = shaped(kinds[a], shape);
    d.gelu_tanh = a == 2;
    return d;
}

/* _i: shape (N_SHAPES) x layout (2) */
START_TEST(test_act)
{
    for (int a = 0; a < 4; a++) {
        dpt_op_desc_t d = act_desc(a, _i / 2);
        compare_op(&d, _i % 2, 450 + (uint64_t)(_i * 4 + a));
    }
}
END_TEST

/* The same on a ramp over [-9, 9] (saturated logistic, erf tails), N*C*H*W = 3*20*5*7 = 2100
 * values: cpu equals ref within TOL. In the blocked layout (20 channels padded to the block)
 * the padding of y must stay zero, as oneDNN keeps it for every other op: the raw buffer sums
 * to the sum of the exported values (a sigmoid writing 0.5 into padding would add 0.5 each). */
START_TEST(test_act_wide)
{
    for (int a = 0; a < 4; a++) {
        dpt_op_desc_t d = act_desc(a, 0);
        d.in[0] = dpt_tensor_shape(3, 20, 5, 7);
        side_t r, c;
        side_open(&r, "ref", 0, &d);
        side_open(&c, "cpu", _i, &d);
        size_t n = dpt_tensor_count(&d.in[0]);
        float *x = dpt_malloc(n * sizeof(float)), *got = dpt_malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++)
            x[i] = -9.0f + 18.0f * (float)i / (float)(n - 1);
        memcpy(r.x[0].data, x, n * sizeof(float));
        ck_assert_int_eq(c.ops->import_nchw(c.be, x, &c.x[0]), DPT_OK);
        dpt_op_args_t ra = args_of(&r, NULL, NULL, 1), ca = args_of(&c, NULL, NULL, 1);
        ck_assert_int_eq(r.ops->forward(r.op, &ra), DPT_OK);
        ck_assert_int_eq(c.ops->forward(c.op, &ca), DPT_OK);
        to_plain(&c, &c.y, got);
        double e = rel_err(got, r.y.data, n);
        ck_assert_msg(e < TOL, "%s wide fwd: rel err %g", c.info.impl, e);
        double raw = 0, logical = 0;
        for (size_t i = 0; i < c.y.nbytes / sizeof(float); i++)
            raw += ((const float *)c.y.data)[i];
        for (size_t i = 0; i < n; i++)
            logical += got[i];
        ck_assert_msg(fabs(raw - logical) < 1e-3 * (1 + fabs(logical)),
                      "%s: padding of y not zero (raw sum %g, values %g)", c.info.impl, raw,
                      logical);
        for (size_t i = 0; i < n; i++)   /* dy: 1 - 2 (i mod 2) */
            x[i] = i % 2 ? -1.0f : 1.0f;
        memcpy(r.dy.data, x, n * sizeof(float));
        ck_assert_int_eq(c.ops->import_nchw(c.be, x, &c.dy), DPT_OK);
        ck_assert_int_eq(r.ops->backward(r.op, &ra), DPT_OK);
        ck_assert_int_eq(c.ops->backward(c.op, &ca), DPT_OK);
        to_plain(&c, &c.dx[0], got);
        e = rel_err(got, r.dx[0].data, n);
        ck_assert_msg(e < TOL, "%s wide bwd: rel err %g", c.info.impl, e);
        dpt_free(x);
        dpt_free(got);
        side_close(&r);
        side_close(&c);
    }
}
END_TEST

START_TEST(test_pool)
{
    dpt_op_desc_t d = shaped(DPT_OP_MAXPOOL, _i / 2);
    compare_op(&d, _i % 2, 500 + (uint64_t)_i);
    d.pool_k = 3, d.pool_stride = 2, d.pool_pad = 1;
    compare_op(&d, _i % 2, 600 + (uint64_t)_i);
    d.pool_k = 3, d.pool_stride = 1, d.pool_pad = 0;
    compare_op(&d, _i % 2, 650 + (uint64_t)_i);
    d = shaped(DPT_OP_GAP, _i / 2);
    compare_op(&d, _i % 2, 700 + (uint64_t)_i);
}
END_TEST

START_TEST(test_fc_flatten)
{
    dpt_op_desc_t d = shaped(DPT_OP_FC, _i / 2);
    compare_op(&d, _i % 2, 800 + (uint64_t)_i);
    d.has_bias = 0;
    d.out_features = 3;
    compare_op(&d, _i % 2, 850 + (uint64_t)_i);
    d = shaped(DPT_OP_FLATTEN, _i / 2);
    compare_op(&d, _i % 2, 900 + (uint64_t)_i);
}
END_TEST

START_TEST(test_xent)
{
    static const float smoothing[] = {0.0f, 0.1f, 0.3f};
    dpt_op_desc_t d = {.kind = DPT_OP_XENT, .n_in = 1, .label_smoothing = smoothing[_i]};
    d.in[0] = dpt_tensor_shape(7 + _i, 10 + 3 * _i, 1, 1);
    compare_op(&d, 0, 1000 + (uint64_t)_i);
}
END_TEST

/* A conv -> BN+ReLU -> maxpool -> conv chain kept in the blocked layout: the gradient reaching
 * the chain input equals the ref backend's, so layouts compose across ops. */
START_TEST(test_blocked_chain)
{
    enum { N = 3, C = 4, H = 10, W = 10 };
    dpt_op_desc_t ds[4];
    ds[0] = conv(N, C, H, W, 16, 3, 1, 1, 0);
    ds[1] = (dpt_op_desc_t){.kind = DPT_OP_BATCHNORM, .n_in = 1, .bn_eps = 1e-5f,
                            .bn_momentum = 0.1f, .fuse_relu = 1};
    ds[2] = (dpt_op_desc_t){.kind = DPT_OP_MAXPOOL, .n_in = 1, .pool_k = 2, .pool_stride = 2};
    ds[3] = conv(N, 16, 5, 5, 8, 3, 1, 1, 1);
    const char *names[2] = {"ref", "cpu"};
    float *result[2][2];   /* [backend][y of last op, dx of first op] */
    size_t ny = 0, nx = (size_t)N * C * H * W;
    for (int b = 0; b < 2; b++) {
        const dpt_backend_ops_t *ops = dpt_backend_find(names[b]);
        dpt_backend_t *be;
        ck_assert_int_eq(ops->create(&(dpt_backend_config_t){.threads = 2, .blocked_layout = 1},
                                     &be), DPT_OK);
        dpt_op_t *op[4];
        dpt_op_info_t info[4];
        dpt_tensor_t act[5], grad[5];
        float *w[4], *dw[4], *bufs[4];
        act[0] = dpt_tensor_shape(N, C, H, W);
        dpt_rng_t rng;
        dpt_rng_init(&rng, 77, 0);
        for (int i = 0; i < 4; i++) {
            ds[i].in[0] = act[i];
            ck_assert_int_eq(ops->op_create(be, &ds[i], &op[i], &info[i]), DPT_OK);
            act[i + 1] = info[i].out;
            w[i] = randv(&rng, info[i].n_params + 1, 0.3f, i == 1 ? 1.0f : 0.0f);
            dw[i] = dpt_calloc((info[i].n_params + 1) * sizeof(float));
            bufs[i] = randv(&rng, info[i].n_buffers + 1, 0.0f, 1.0f);
        }
        if (b == 1)
            ck_assert_msg(act[1].layout != DPT_LAYOUT_NCHW && act[3].layout != DPT_LAYOUT_NCHW,
                          "chain did not stay blocked");
        for (int i = 0; i < 5; i++) {
            act[i].data = ops->alloc(be, act[i].nbytes);
            grad[i] = act[i];
            grad[i].data = ops->alloc(be, act[i].nbytes);
        }
        float *x = randv(&rng, nx, 1.0f, 0.0f);
        ck_assert_int_eq(ops->import_nchw(be, x, &act[0]), DPT_OK);
        for (int i = 0; i < 4; i++) {
            dpt_op_args_t a = {.x = {&act[i]}, .y = &act[i + 1], .w = w[i], .buf = bufs[i],
                               .training = 1};
            ck_assert_int_eq(ops->forward(op[i], &a), DPT_OK);
        }
        ny = dpt_tensor_count(&act[4]);
        float *dy = randv(&rng, ny, 1.0f, 0.0f);
        ck_assert_int_eq(ops->import_nchw(be, dy, &grad[4]), DPT_OK);
        for (int i = 3; i >= 0; i--) {
            dpt_op_args_t a = {.x = {&act[i]}, .y = &act[i + 1], .dy = &grad[i + 1],
                               .dx = {&grad[i]}, .w = w[i], .dw = dw[i], .buf = bufs[i],
                               .training = 1};
            ck_assert_int_eq(ops->backward(op[i], &a), DPT_OK);
        }
        result[b][0] = dpt_malloc(ny * sizeof(float));
        result[b][1] = dpt_malloc(nx * sizeof(float));
        ck_assert_int_eq(ops->export_nchw(be, &act[4], result[b][0]), DPT_OK);
        ck_assert_int_eq(ops->export_nchw(be, &grad[0], result[b][1]), DPT_OK);
        dpt_free(x);
        dpt_free(dy);
        for (int i = 0; i < 5; i++) {
            ops->free(be, act[i].data);
            ops->free(be, grad[i].data);
        }
        for (int i = 0; i < 4; i++) {
            ops->op_destroy(op[i]);
            dpt_free(w[i]);
            dpt_free(dw[i]);
            dpt_free(bufs[i]);
        }
        ops->destroy(be);
    }
    double e = rel_err(result[1][0], result[0][0], ny);
    ck_assert_msg(e < TOL, "chain output rel err %g", e);
    e = rel_err(result[1][1], result[0][1], nx);
    ck_assert_msg(e < TOL, "chain input gradient rel err %g", e);
    for (int b = 0; b < 2; b++)
        dpt_free(result[b][0]), dpt_free(result[b][1]);
}
END_TEST

/* Forward and backward of a conv allocate nothing through dpt_malloc after op_create. */
START_TEST(test_conv_no_alloc)
{
    side_t s;
    dpt_op_desc_t d = conv(8, 16, 14, 14, 32, 3, 1, 1, 1);
    side_open(&s, "cpu", _i, &d);
    float *w = dpt_calloc(s.info.n_params * sizeof(float));
    dpt_op_args_t a = args_of(&s, w, NULL, 1);
    ck_assert_int_eq(s.ops->forward(s.op, &a), DPT_OK);
    ck_assert_int_eq(s.ops->backward(s.op, &a), DPT_OK);
    uint64_t before = dpt_alloc_count();
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(s.ops->forward(s.op, &a), DPT_OK);
        ck_assert_int_eq(s.ops->backward(s.op, &a), DPT_OK);
    }
    ck_assert_uint_eq(dpt_alloc_count(), before);
    dpt_free(w);
    side_close(&s);
}
END_TEST

/* Bad descriptors are refused with a message, not a crash. */
START_TEST(test_bad_layouts)
{
    const dpt_backend_ops_t *ops = dpt_backend_find("cpu");
    dpt_backend_t *be;
    ck_assert_int_eq(ops->create(&(dpt_backend_config_t){.blocked_layout = 1}, &be), DPT_OK);
    dpt_op_desc_t d = shaped(DPT_OP_RELU, 0);
    d.in[0].layout = 42;
    dpt_op_t *op = NULL;
    dpt_op_info_t info;
    ck_assert_int_ne(ops->op_create(be, &d, &op, &info), DPT_OK);
    ck_assert_ptr_nonnull(strstr(dpt_error_get(), "layout"));
    ops->destroy(be);
}
END_TEST

static Suite *cpu_backend_suite(void)
{
    Suite *s = suite_create("cpu_backend");
    TCase *tc = tcase_create("vs_ref");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_conv, 0, 3 * N_CONV);
    tcase_add_loop_test(tc, test_batchnorm, 0, 2 * N_SHAPES);
    tcase_add_loop_test(tc, test_eltwise, 0, 2 * N_SHAPES);
    tcase_add_loop_test(tc, test_act, 0, 2 * N_SHAPES);
    tcase_add_loop_test(tc, test_act_wide, 0, 2);
    tcase_add_loop_test(tc, test_pool, 0, 2 * N_SHAPES);
    tcase_add_loop_test(tc, test_fc_flatten, 0, 2 * N_SHAPES);
    tcase_add_loop_test(tc, test_xent, 0, 3);
    tcase_add_test(tc, test_blocked_chain);
    tcase_add_loop_test(tc, test_conv_no_alloc, 0, 3);
    tcase_add_test(tc, test_bad_layouts);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(cpu_backend_suite)
