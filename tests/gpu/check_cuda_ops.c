/* check_cuda_ops.c: the cuda backend against the ref backend (the oracle), op by op, forward and
 * backward, in each precision (fp32, bf16, fp16). Both get the same parameters, inputs, output
 * gradients and labels; outputs, input and parameter gradients, BN running statistics, loss and
 * hit count must agree within 1e-4 (fp32) or 1e-2 (bf16/fp16) of the largest magnitude of the
 * ref result. In the 16-bit modes the host inputs (x, dy, conv/fc weights) are first rounded
 * through the device type, so both backends see identical values and only the cuda backend's
 * 16-bit storage of results differs. Gradient buffers are pre-filled with garbage: backward must
 * overwrite, never accumulate.
 *
 * Without a CUDA device (or driver) the program prints "SKIP: no CUDA device (<reason>)" and
 * exits 77, which CTest reports as skipped. Check runs in CK_NOFORK mode (never fork after CUDA
 * is initialized).
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_compare.h"
#include "cuda_harness.h"
#include "dptrain/alloc.h"
#include "dptrain/backend.h"
#include "dptrain/cuda.h"
#include "dptrain/rng.h"

static void compare_p(const dpt_op_desc_t *d, int prec, uint64_t seed)
{
    cuda_op_mode_t m = {.prec = (dpt_precision_t)prec};
    cuda_compare_op(d, &m, seed);
}

/* ---- the cases (_i of every loop test is the precision) ------------------------------------- */
static dpt_op_desc_t conv(int n, int c, int h, int w, int o, int k, int s, int p, int bias)
{
    dpt_op_desc_t d = {.kind = DPT_OP_CONV2D, .n_in = 1, .out_c = o, .kh = k, .kw = k,
                       .stride = s, .pad = p, .has_bias = bias};
    d.in[0] = dpt_tensor_shape(n, c, h, w);
    return d;
}

/* n, c, h, w, filters, size, stride, pad, bias, groups (2; depthwise 3x3, 5x5/2; x2; 3) */
static const int conv_cases[][10] = {
    {2, 3, 9, 7, 5, 3, 1, 1, 1, 1},  {3, 16, 8, 8, 32, 3, 1, 1, 0, 1},
    {1, 7, 11, 10, 13, 3, 2, 0, 1, 1}, {2, 5, 6, 6, 17, 1, 1, 0, 0, 1},
    {4, 24, 7, 7, 20, 5, 2, 2, 1, 1}, {1, 1, 28, 28, 32, 3, 1, 1, 0, 1},
    {8, 64, 16, 16, 64, 3, 1, 1, 0, 1}, {2, 16, 8, 8, 32, 3, 1, 1, 1, 2},
    {3, 32, 9, 9, 32, 3, 1, 1, 0, 32}, {2, 24, 11, 11, 24, 5, 2, 2, 0, 24},
    {2, 8, 7, 7, 16, 3, 1, 1, 1, 8},  {1, 9, 7, 5, 15, 3, 1, 1, 1, 3},
};
#define N_CONV ((int)(sizeof conv_cases / sizeof conv_cases[0]))

START_TEST(test_conv)
{
    for (int c = 0; c < N_CONV; c++) {
        const int *k = conv_cases[c];
        dpt_op_desc_t d = conv(k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8]);
        d.groups = k[9];
        compare_p(&d, _i, 100 + (uint64_t)c);
    }
    if (_i != DPT_PREC_FP32) {   /* the first layer: float32 input in a 16-bit backend */
        dpt_op_desc_t d = conv(2, 3, 9, 7, 5, 3, 1, 1, 1);
        cuda_op_mode_t m = {.prec = (dpt_precision_t)_i, .in_fp32 = 1};
        cuda_compare_op(&d, &m, 150);
    }
}
END_TEST

START_TEST(test_batchnorm)
{
    for (int s = 0; s < N_SHAPES; s++) {
        dpt_op_desc_t d = shaped(DPT_OP_BATCHNORM, s);
        compare_p(&d, _i, 200 + (uint64_t)s);
        d.fuse_relu = 1;
        compare_p(&d, _i, 300 + (uint64_t)s);
    }
    /* a larger plane: many elements per channel */
    dpt_op_desc_t d = shaped(DPT_OP_BATCHNORM, 0);
    d.in[0] = dpt_tensor_shape(16, 8, 32, 32);
    d.fuse_relu = 1;
    compare_p(&d, _i, 350);
}
END_TEST

START_TEST(test_eltwise)
{
    static const dpt_op_kind_t kinds[] = {DPT_OP_RELU, DPT_OP_CELU, DPT_OP_SCALE, DPT_OP_ADD};
    for (int s = 0; s < N_SHAPES; s++)
        for (int k = 0; k < 4; k++) {
            dpt_op_desc_t d = shaped(kinds[k], s);
            compare_p(&d, _i, 400 + (uint64_t)(s * 4 + k));
        }
}
END_TEST

START_TEST(test_pool)
{
    for (int s = 0; s < N_SHAPES; s++) {
        dpt_op_desc_t d = shaped(DPT_OP_MAXPOOL, s);
        compare_p(&d, _i, 500 + (uint64_t)s);
        d.pool_k = 3, d.pool_stride = 2, d.pool_pad = 1;
        compare_p(&d, _i, 600 + (uint64_t)s);
        d.pool_k = 3, d.pool_stride = 1, d.pool_pad = 0;
        compare_p(&d, _i, 650 + (uint64_t)s);
        d = shaped(DPT_OP_GAP, s);
        compare_p(&d, _i, 700 + (uint64_t)s);
    }
}
END_TEST

START_TEST(test_fc_flatten)
{
    for (int s = 0; s < N_SHAPES; s++) {
        dpt_op_desc_t d = shaped(DPT_OP_FC, s);
        compare_p(&d, _i, 800 + (uint64_t)s);
        d.has_bias = 0;
        d.out_features = 3;
        compare_p(&d, _i, 850 + (uint64_t)s);
        d = shaped(DPT_OP_FLATTEN, s);
        compare_p(&d, _i, 900 + (uint64_t)s);
    }
    dpt_op_desc_t d = shaped(DPT_OP_FC, 0);   /* a bigger GEMM */
    d.in[0] = dpt_tensor_shape(64, 128, 2, 2);
    d.out_features = 100;
    compare_p(&d, _i, 950);
}
END_TEST

/* smoothing x n_valid x loss scale */
START_TEST(test_xent)
{
    static const float smoothing[] = {0.0f, 0.1f, 0.3f};
    static const float scales[] = {0.0f, 1.0f, 1024.0f};
    for (int sm = 0; sm < 3; sm++)
        for (int v = 0; v < 2; v++)
            for (int sc = 0; sc < 3; sc++) {
                dpt_op_desc_t d = {.kind = DPT_OP_XENT, .n_in = 1,
                                   .label_smoothing = smoothing[sm]};
                int n = 7 + 5 * sm, k = 10 + 37 * sm;   /* K = 84 spans several warp passes */
                d.in[0] = dpt_tensor_shape(n, k, 1, 1);
                cuda_op_mode_t m = {.prec = (dpt_precision_t)_i, .n_valid = v ? n - 2 : 0,
                            .loss_scale = scales[sc]};
                cuda_compare_op(&d, &m, 1000 + (uint64_t)(sm * 6 + v * 3 + sc));
            }
}
END_TEST

/* A small network, conv -> BN+ReLU -> maxpool -> conv -> BN -> CELU -> GAP -> FC -> XENT, run
 * forward and backward on both backends with each op's input being the previous op's output
 * tensor (so layouts and casts compose; the network input is float32 NCHW as in the model).
 * Compared: loss, hits, the first conv's and the FC's weight gradients, BN running statistics.
 * In 16-bit modes every intermediate activation is rounded, so the tolerance is looser (5e-2:
 * a composition check; per-op precision is what the tests above hold to 1e-2). */
START_TEST(test_chain)
{
    enum { N = 8, C = 3, H = 12, W = 12, K = 10, OPS = 8 };
    dpt_precision_t prec = (dpt_precision_t)_i;
    double tol = prec == DPT_PREC_FP32 ? 1e-4 : 5e-2;
    dpt_op_desc_t ds[OPS] = {
        {.kind = DPT_OP_CONV2D, .out_c = 16, .kh = 3, .kw = 3, .stride = 1, .pad = 1,
         .has_bias = 1},
        {.kind = DPT_OP_BATCHNORM, .bn_eps = 1e-5f, .bn_momentum = 0.1f, .fuse_relu = 1},
        {.kind = DPT_OP_MAXPOOL, .pool_k = 2, .pool_stride = 2},
        {.kind = DPT_OP_CONV2D, .out_c = 12, .kh = 3, .kw = 3, .stride = 2, .pad = 1},
        {.kind = DPT_OP_BATCHNORM, .bn_eps = 1e-5f, .bn_momentum = 0.1f},
        {.kind = DPT_OP_CELU, .alpha = 1.0f},
        {.kind = DPT_OP_GAP},
        {.kind = DPT_OP_FC, .out_features = K, .has_bias = 1},
    };
    dpt_op_desc_t loss_d = {.kind = DPT_OP_XENT, .label_smoothing = 0.1f};
    const dpt_backend_ops_t *ops[2] = {R, G};
    float loss[2];
    int32_t hits[2];
    float *dw_first[2], *dw_fc[2], *bufs[2];
    size_t n_first = 0, n_fc = 0, n_buf = 0;
    dpt_rng_t rng;
    dpt_rng_init(&rng, 4242, 0);
    size_t nx = (size_t)N * C * H * W;
    float *x = randv(&rng, nx, 1.0f, 0.0f);
    int32_t labels[N];
    for (int i = 0; i < N; i++)
        labels[i] = (int32_t)dpt_rng_below(&rng, K);
    if (prec != DPT_PREC_FP32)
        quantize(cuda_be(prec), prec, x, nx);
    for (int b = 0; b < 2; b++) {
        const dpt_backend_ops_t *o = ops[b];
        dpt_backend_t *be;
        if (b == 0)
            ck_assert_int_eq(o->create(&(dpt_backend_config_t){0}, &be), DPT_OK);
        else
            be = cuda_be(prec);
        dpt_op_t *op[OPS + 1];
        dpt_op_info_t info[OPS + 1];
        dpt_tensor_t act[OPS + 2], grad[OPS + 2];
        float *w[OPS + 1], *dw[OPS + 1], *buf[OPS + 1];
        size_t np[OPS + 1], nb[OPS + 1];
        act[0] = dpt_tensor_shape(N, C, H, W);
        dpt_rng_t wr;
        dpt_rng_init(&wr, 99, 0);   /* same weights on both sides */
        for (int i = 0; i <= OPS; i++) {
            dpt_op_desc_t d = i < OPS ? ds[i] : loss_d;
            d.n_in = 1;
            d.in[0] = act[i];
            d.in[0].data = NULL;
            dpt_status_t st = o->op_create(be, &d, &op[i], &info[i]);
            ck_assert_msg(st == DPT_OK, "chain op %d (%s): %s", i, o->name, dpt_error_get());
            act[i + 1] = info[i].out;
            np[i] = info[i].n_params;
            nb[i] = info[i].n_buffers;
            float *hw = randv(&wr, np[i], 0.4f, 0.0f);
            if (d.kind == DPT_OP_BATCHNORM)
                for (size_t k = 0; k < np[i] / 2; k++)
                    hw[k] += 1.0f;
            if (d.kind == DPT_OP_CONV2D || d.kind == DPT_OP_FC)
                quantize(cuda_be(prec), prec, hw, info[i].n_weights);
            float *hb = randv(&wr, nb[i], 0.0f, 0.0f);
            for (size_t k = nb[i] / 2; k < nb[i]; k++)
                hb[k] = 1.0f;
            if (b == 0) {
                w[i] = hw, buf[i] = hb;
                dw[i] = dpt_calloc((np[i] + 1) * sizeof(float));
            } else {
                w[i] = dev_floats(be, hw, np[i]);
                buf[i] = dev_floats(be, hb, nb[i]);
                dw[i] = dev_floats(be, NULL, np[i]);
                dpt_free(hw);
                dpt_free(hb);
            }
        }
        for (int i = 0; i <= OPS + 1; i++) {
            act[i].data = o->alloc(be, act[i].nbytes);
            grad[i] = act[i];
            grad[i].data = o->alloc(be, act[i].nbytes);
            ck_assert(act[i].data && grad[i].data);
        }
        ck_assert_int_eq(o->import_nchw(be, x, &act[0]), DPT_OK);
        for (int i = 0; i <= OPS; i++) {
            dpt_op_args_t a = {.x = {&act[i]}, .y = &act[i + 1], .w = w[i], .buf = buf[i],
                               .labels = labels, .loss = &loss[b], .correct = &hits[b],
                               .training = 1};
            dpt_status_t st = o->forward(op[i], &a);
            ck_assert_msg(st == DPT_OK, "chain fwd %d (%s): %s", i, o->name, dpt_error_get());
        }
        for (int i = OPS; i >= 0; i--) {
            dpt_op_args_t a = {.x = {&act[i]}, .y = &act[i + 1], .dy = &grad[i + 1],
                               .dx = {i > 0 ? &grad[i] : NULL}, .w = w[i], .dw = dw[i],
                               .buf = buf[i], .labels = labels, .training = 1};
            dpt_status_t st = o->backward(op[i], &a);
            ck_assert_msg(st == DPT_OK, "chain bwd %d (%s): %s", i, o->name, dpt_error_get());
        }
        n_first = np[0], n_fc = np[OPS - 1], n_buf = nb[1];
        dw_first[b] = dpt_malloc((n_first + 1) * sizeof(float));
        dw_fc[b] = dpt_malloc((n_fc + 1) * sizeof(float));
        bufs[b] = dpt_malloc((n_buf + 1) * sizeof(float));
        if (b == 0) {
            memcpy(dw_first[b], dw[0], n_first * sizeof(float));
            memcpy(dw_fc[b], dw[OPS - 1], n_fc * sizeof(float));
            memcpy(bufs[b], buf[1], n_buf * sizeof(float));
        } else {
            to_host(be, dw_first[b], dw[0], n_first);
            to_host(be, dw_fc[b], dw[OPS - 1], n_fc);
            to_host(be, bufs[b], buf[1], n_buf);
        }
        for (int i = 0; i <= OPS + 1; i++) {
            o->free(be, act[i].data);
            o->free(be, grad[i].data);
        }
        for (int i = 0; i <= OPS; i++) {
            o->op_destroy(op[i]);
            if (b == 0) {
                dpt_free(w[i]);
                dpt_free(dw[i]);
                dpt_free(buf[i]);
            } else {
                o->free(be, w[i]);
                o->free(be, dw[i]);
                o->free(be, buf[i]);
            }
        }
        if (b == 0)
            o->destroy(be);
    }
    const char *pn = dpt_precision_name(prec);
    ck_assert_msg(fabsf(loss[1] - loss[0]) < tol * fmaxf(1.0f, fabsf(loss[0])),
                  "chain %s loss %g vs ref %g", pn, loss[1], loss[0]);
    if (prec == DPT_PREC_FP32)
        ck_assert_int_eq(hits[1], hits[0]);
    double e = rel_err(dw_first[1], dw_first[0], n_first);
    ck_assert_msg(e < tol, "chain %s first conv dW: rel err %g", pn, e);
    e = rel_err(dw_fc[1], dw_fc[0], n_fc);
    ck_assert_msg(e < tol, "chain %s fc dW: rel err %g", pn, e);
    e = rel_err(bufs[1], bufs[0], n_buf);
    ck_assert_msg(e < tol, "chain %s BN running stats: rel err %g", pn, e);
    for (int b = 0; b < 2; b++) {
        dpt_free(dw_first[b]);
        dpt_free(dw_fc[b]);
        dpt_free(bufs[b]);
    }
    dpt_free(x);
}
END_TEST

/* Errors are reported, not crashed on. */
START_TEST(test_errors)
{
    dpt_backend_t *be;
    dpt_backend_config_t cfg = {.device = 4096};
    ck_assert_int_eq(G->create(&cfg, &be), DPT_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(dpt_error_get(), "device 4096"));

    dpt_backend_t *gb = cuda_be(DPT_PREC_FP32);
    dpt_op_desc_t d = shaped(DPT_OP_RELU, 0);
    d.in[0] = with_layout(d.in[0], dpt_cuda_layout(DPT_PREC_BF16));
    dpt_op_t *op;
    dpt_op_info_t info;
    ck_assert_int_eq(G->op_create(gb, &d, &op, &info), DPT_ERR_UNSUPPORTED);

    d = (dpt_op_desc_t){.kind = DPT_OP_XENT, .n_in = 1};
    d.in[0] = dpt_tensor_shape(2, 3, 1, 1);
    ck_assert_int_eq(G->op_create(gb, &d, &op, &info), DPT_OK);
    dpt_tensor_t x = dev_tensor(gb, info.out), y = dev_tensor(gb, info.out);
    int32_t labels[2] = {1, 3};
    float loss;
    dpt_op_args_t a = {.x = {&x}, .y = &y, .labels = labels, .loss = &loss};
    ck_assert_int_eq(G->forward(op, &a), DPT_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(dpt_error_get(), "label 3"));
    G->free(gb, x.data);
    G->free(gb, y.data);
    G->op_destroy(op);
}
END_TEST

static Suite *cuda_ops_suite(void)
{
    Suite *s = suite_create("cuda_ops");
    struct {
        const char *name;
        const TTest *fn;
    } tests[] = {
        {"conv", test_conv},       {"batchnorm", test_batchnorm}, {"eltwise", test_eltwise},
        {"pool", test_pool},       {"fc_flatten", test_fc_flatten}, {"xent", test_xent},
        {"chain", test_chain},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        TCase *tc = tcase_create(tests[i].name);
        tcase_add_loop_test(tc, tests[i].fn, 0, DPT_PREC_COUNT_);
        suite_add_tcase(s, tc);
    }
    TCase *tc = tcase_create("errors");
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return cuda_test_main(cuda_ops_suite); }
