/* check_cpu_backend.c: the oneDNN/OpenBLAS backend against the ref backend (the oracle), op by
 * op, forward and backward, on odd shapes, with activations in plain NCHW and in oneDNN's blocked
 * layout, through compare_op (check_cpu_side.h): outputs, input and parameter gradients, loss
 * and BN running statistics must agree to 1e-4 relative to the largest magnitude of the ref
 * result. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check_compare.h"
#include "check_cpu_side.h"
#include "check_main.h"
#include "dptrain/alloc.h"
#include "dptrain/backend.h"
#include "dptrain/rng.h"

#define TOL CPU_SIDE_TOL

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
    /* a blocked depthwise conv never runs a reference kernel: where oneDNN has none for the
     * weight gradient (5x5), cpu_dwconv.c's loop takes over ("+dw_bwd_w:c") */
    if (mode && k[9] == k[1] && k[4] == k[1])
        ck_assert_msg(!strstr(impl, "ref"), "depthwise %dx%d: %s", k[5], k[5], impl);
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
