/* check_mul.c: the channel gate (mul, squeeze-excitation's y = x * s with s (N, C, 1, 1)):
 * the ref kernels' gradients (input and gate) against float64 central differences on odd
 * shapes; the cpu backend equals ref through compare_op, with the feature map plain and in
 * oneDNN's blocked layout (the gate plain); a squeeze-excitation block as a model (gap, 1x1
 * convs, SiLU, sigmoid, mul) trains the same on cpu as on ref; a gate of the wrong shape is
 * refused naming file:line. */
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/ref/ref_kernels_mul.h"
#include "check_cpu_side.h"
#include "check_fd.h"
#include "check_files.h"
#include "check_main.h"
#include "dptrain/alloc.h"
#include "dptrain/backend.h"
#include "dptrain/model.h"
#include "dptrain/rng.h"

typedef struct mul_ctx {
    int N, C;
    long P;
    double *x, *g, *y, *r;
} mul_ctx_t;

static double mul_loss(void *p)
{
    const mul_ctx_t *c = p;
    dpt__ref_mul_fwd_f64(c->x, c->g, c->y, c->N, c->C, c->P);
    return fd_dot(c->y, c->r, (long)c->N * c->C * c->P);
}

START_TEST(test_mul_grad)
{
    static const int shapes[][3] = {{2, 3, 5 * 7}, {1, 1, 1}, {3, 5, 4}};
    for (int k = 0; k < 3; k++) {
        mul_ctx_t c = {.N = shapes[k][0], .C = shapes[k][1], .P = shapes[k][2]};
        const long nx = (long)c.N * c.C * c.P, ng = (long)c.N * c.C;
        dpt_rng_t r;
        dpt_rng_init(&r, 23, (uint64_t)k);
        c.x = fd_rand(&r, nx, 1, 0);
        c.g = fd_rand(&r, ng, 1, 0);
        c.r = fd_rand(&r, nx, 1, 0);
        c.y = fd_rand(&r, nx, 1, 0);
        double *dx = fd_rand(&r, nx, 1, 0), *dg = fd_rand(&r, ng, 1, 0);
        dpt__ref_mul_bwd_f64(c.x, c.g, c.r, dx, dg, c.N, c.C, c.P);
        double e = fmax(fd_error(mul_loss, &c, c.x, nx, dx), fd_error(mul_loss, &c, c.g, ng, dg));
        ck_assert_msg(e < 1e-6, "mul %dx%dx%ld: rel err %g", c.N, c.C, c.P, e);
        double *all[] = {c.x, c.g, c.r, c.y, dx, dg};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            dpt_free(all[i]);
    }
}
END_TEST

START_TEST(test_cpu_mul)
{
    if (!dpt_backend_find("cpu"))
        return;   /* built without oneDNN */
    static const int shapes[][4] = {{2, 16, 5, 5}, {3, 20, 3, 7}, {1, 7, 1, 9}, {4, 32, 1, 1}};
    for (int k = 0; k < 4; k++) {
        dpt_op_desc_t d = {.kind = DPT_OP_MUL, .n_in = 2};
        d.in[0] = dpt_tensor_shape(shapes[k][0], shapes[k][1], shapes[k][2], shapes[k][3]);
        d.in[1] = dpt_tensor_shape(shapes[k][0], shapes[k][1], 1, 1);
        compare_op(&d, _i, 700 + (uint64_t)k);
    }
}
END_TEST

/* An MBConv-style squeeze-excitation on a 12-channel map: gap -> 1x1 conv 3 -> SiLU -> 1x1
 * conv 12 -> sigmoid -> mul with the map. */
static const char *se_model =
    "[net]\ninput=3,6,6\nclasses=4\n"
    "[conv]\nname=map\nfilters=12\n[batchnorm]\n[silu]\nname=act\n"
    "[gap]\n[conv]\nfilters=3\nsize=1\n[silu]\n[conv]\nfilters=12\nsize=1\n[sigmoid]\nname=gate\n"
    "[mul]\ninputs=act, gate\n"
    "[gap]\n[fc]\noutput=4\n";

static float run_model(const char *backend, int blocked, const char *path, float *g, size_t *np)
{
    const dpt_backend_ops_t *ops = dpt_backend_find(backend);
    dpt_backend_t *be;
    dpt_backend_config_t cfg = {.threads = 2, .blocked_layout = blocked};
    ck_assert_int_eq(ops->create(&cfg, &be), DPT_OK);
    dpt_model_t *m;
    dpt_model_options_t o = {.batch = 3};
    ck_assert_msg(dpt_model_create(path, ops, be, &o, &m) == DPT_OK, "%s", dpt_error_get());
    dpt_model_init_params(m, 9);
    float x[3 * 3 * 6 * 6], loss;
    int32_t y[3] = {1, 0, 3};
    dpt_rng_t r;
    dpt_rng_init(&r, 5, 0);
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = dpt_rng_normal(&r);
    ck_assert_int_eq(dpt_model_forward(m, x, y, 0, 1, &loss, NULL), DPT_OK);
    ck_assert_int_eq(dpt_model_backward(m), DPT_OK);
    const float *grads = dpt_model_grads(m, np);   /* sets *np before the copy reads it */
    ck_assert_uint_le(*np, 4096);
    memcpy(g, grads, *np * sizeof(float));
    dpt_model_destroy(m);
    ops->destroy(be);
    return loss;
}

START_TEST(test_se_model)
{
    if (!dpt_backend_find("cpu"))
        return;
    const char *path = write_tmp_file("se.cfg", se_model);
    static float gr[4096], gc[4096];
    size_t np = sizeof gr / sizeof gr[0], np2 = np;
    float lr = run_model("ref", 0, path, gr, &np), lc = run_model("cpu", _i, path, gc, &np2);
    ck_assert_uint_eq(np, np2);
    ck_assert_msg(fabsf(lr - lc) < 1e-4f * fmaxf(1, fabsf(lr)), "loss cpu %g ref %g", lc, lr);
    double big = 0, worst = 0;
    for (size_t i = 0; i < np; i++)
        big = fmax(big, fabs(gr[i]));
    for (size_t i = 0; i < np; i++)
        worst = fmax(worst, fabs(gr[i] - gc[i]) / big);
    ck_assert_msg(big > 0 && worst < 1e-3, "gradients: worst %g of %g", worst, big);
}
END_TEST

START_TEST(test_bad_gate)
{
    const char *path = write_tmp_file("bad.cfg", "[net]\ninput=3,6,6\nclasses=4\n[conv]\n"
                                                 "name=a\nfilters=4\n[conv]\nname=b\nfilters=4\n"
                                                 "[mul]\ninputs=a, b\n[gap]\n[fc]\noutput=4\n");
    const dpt_backend_ops_t *ops = dpt_backend_find("ref");
    dpt_backend_t *be;
    ck_assert_int_eq(ops->create(&(dpt_backend_config_t){0}, &be), DPT_OK);
    dpt_model_t *m;
    dpt_model_options_t o = {.batch = 2};
    ck_assert_int_ne(dpt_model_create(path, ops, be, &o, &m), DPT_OK);
    ck_assert_msg(strstr(dpt_error_get(), "bad.cfg:10:") && strstr(dpt_error_get(), "gate"), "%s",
                  dpt_error_get());
    ops->destroy(be);
}
END_TEST

static Suite *mul_suite(void)
{
    Suite *s = suite_create("mul");
    TCase *tc = tcase_create("mul");
    tcase_add_checked_fixture(tc, make_tmpdir, remove_tmpdir);
    tcase_add_test(tc, test_mul_grad);
    tcase_add_loop_test(tc, test_cpu_mul, 0, 2);
    tcase_add_loop_test(tc, test_se_model, 0, 2);
    tcase_add_test(tc, test_bad_gate);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(mul_suite)
