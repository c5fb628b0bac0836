/* check_layernorm.c: the per-position transformer ops, layer norm and linear (backend.h).
 *  - ref kernels in float64 (ref_kernels_tokens.inc) against central finite differences, as
 *    check_ref_grad.c does for the CNN ops: loss L = sum(y * r), so backward(dy = r) is dL;
 *    several shapes with odd sizes, H*W > 1 (channels HW apart in NCHW) and H = 1 (tokens);
 *  - layer norm forward against the formula written out directly, position by position;
 *  - the cpu backend (oneDNN layer norm, OpenBLAS linear, NHWC inside) against the ref backend
 *    through compare_op_run (check_cpu_side.h), with the input plain NCHW, in oneDNN's blocked
 *    layout (a blocked conv made first only for its output layout, as in check_cpu_backend.c)
 *    and NHWC (the output layout of a cpu linear op), within 1e-4 of the largest ref magnitude,
 *    in training and inference; a backward without dx must still give the parameter gradients.
 *    Skipped where the cpu backend is not built. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "backend/ref/ref_kernels.h"
#include "check_cpu_side.h"
#include "check_fd.h"
#include "check_main.h"
#include "dptrain/alloc.h"
#include "dptrain/backend.h"
#include "dptrain/rng.h"

#define TOL_FD 1e-6
#define EPS 1e-5

/* N, C, H, W: odd sizes; H*W > 1 with H > 1, tokens (H = 1), one position per sample */
static const int shapes[][4] = {{2, 5, 1, 7}, {3, 4, 2, 3}, {1, 7, 3, 1}, {4, 3, 1, 1},
                                {2, 9, 1, 5}, {1, 6, 2, 2}};
#define N_FD_SHAPES ((int)(sizeof shapes / sizeof shapes[0]))

/* ---- layer norm: finite differences ---------------------------------------------------- */
typedef struct ln_ctx {
    int N, C, HW;
    double *x, *g, *b, *y, *r;
} ln_ctx_t;

static double ln_loss(void *p)
{
    ln_ctx_t *c = p;
    dpt__ref_layernorm_fwd_f64(c->x, c->g, c->b, c->y, NULL, NULL, c->N, c->C, c->HW, EPS);
    return fd_dot(c->y, c->r, (long)c->N * c->C * c->HW);
}

START_TEST(test_layernorm_grad)
{
    const int *s = shapes[_i];
    ln_ctx_t c = {.N = s[0], .C = s[1], .HW = s[2] * s[3]};
    dpt_rng_t r;
    dpt_rng_init(&r, 31, (uint64_t)_i);
    long n = (long)c.N * c.C * c.HW, np = (long)c.N * c.HW;
    c.x = fd_rand(&r, n, 1.5, 0.2);
    c.g = fd_rand(&r, c.C, 0.5, 1.0);
    c.b = fd_rand(&r, c.C, 0.5, 0.0);
    c.r = fd_rand(&r, n, 1.0, 0.0);
    c.y = fd_zeros(n);
    double *mean = fd_zeros(np), *rstd = fd_zeros(np);
    double *dx = fd_zeros(n), *dg = fd_zeros(c.C), *db = fd_zeros(c.C);
    dpt__ref_layernorm_fwd_f64(c.x, c.g, c.b, c.y, mean, rstd, c.N, c.C, c.HW, EPS);
    dpt__ref_layernorm_bwd_f64(c.x, c.g, mean, rstd, c.r, dx, dg, db, c.N, c.C, c.HW);
    ck_assert_double_lt(fd_error(ln_loss, &c, c.x, n, dx), TOL_FD);
    ck_assert_double_lt(fd_error(ln_loss, &c, c.g, c.C, dg), TOL_FD);
    ck_assert_double_lt(fd_error(ln_loss, &c, c.b, c.C, db), TOL_FD);
    /* without dx: the same parameter gradients */
    double *dg2 = fd_zeros(c.C), *db2 = fd_zeros(c.C);
    dpt__ref_layernorm_bwd_f64(c.x, c.g, mean, rstd, c.r, NULL, dg2, db2, c.N, c.C, c.HW);
    ck_assert_mem_eq(dg2, dg, (size_t)c.C * sizeof(double));
    ck_assert_mem_eq(db2, db, (size_t)c.C * sizeof(double));
    dpt_free(c.x); dpt_free(c.g); dpt_free(c.b); dpt_free(c.r); dpt_free(c.y);
    dpt_free(mean); dpt_free(rstd); dpt_free(dx); dpt_free(dg); dpt_free(db);
    dpt_free(dg2); dpt_free(db2);
}
END_TEST

/* Forward against y = gamma (x - mean) / sqrt(var + eps) + beta computed here, per position,
 * from the channels gathered HW apart; and the saved statistics. */
START_TEST(test_layernorm_formula)
{
    const int *s = shapes[_i];
    const int N = s[0], C = s[1], HW = s[2] * s[3];
    dpt_rng_t r;
    dpt_rng_init(&r, 32, (uint64_t)_i);
    long n = (long)N * C * HW;
    double *x = fd_rand(&r, n, 3.0, -1.0), *g = fd_rand(&r, C, 1.0, 0.5);
    double *b = fd_rand(&r, C, 1.0, 0);
    double *y = fd_zeros(n), *mean = fd_zeros((long)N * HW), *rstd = fd_zeros((long)N * HW);
    dpt__ref_layernorm_fwd_f64(x, g, b, y, mean, rstd, N, C, HW, EPS);
    double v[64];
    for (int i = 0; i < N; i++)
        for (int p = 0; p < HW; p++) {
            double m = 0, var = 0;
            for (int c = 0; c < C; c++)
                m += (v[c] = x[((long)i * C + c) * HW + p]) / C;
            for (int c = 0; c < C; c++)
                var += (v[c] - m) * (v[c] - m) / C;
            ck_assert_double_eq_tol(mean[(long)i * HW + p], m, 1e-12);
            ck_assert_double_eq_tol(rstd[(long)i * HW + p], 1 / sqrt(var + EPS), 1e-9);
            for (int c = 0; c < C; c++)
                ck_assert_double_eq_tol(y[((long)i * C + c) * HW + p],
                                        g[c] * (v[c] - m) / sqrt(var + EPS) + b[c], 1e-12);
        }
    /* a worked case: x = 1 2 3 4, mean 2.5, var 1.25 */
    const double x4[4] = {1, 2, 3, 4}, g4[4] = {1, 2, 0.5, -1}, b4[4] = {0, 1, 0, 0.5};
    double y4[4];
    dpt__ref_layernorm_fwd_f64(x4, g4, b4, y4, NULL, NULL, 1, 4, 1, 0.25);
    const double k = 1 / sqrt(1.5);   /* 1 / sqrt(1.25 + 0.25) */
    const double want[4] = {-1.5 * k, 2 * -0.5 * k + 1, 0.5 * 0.5 * k, -1.5 * k + 0.5};
    for (int c = 0; c < 4; c++)
        ck_assert_double_eq_tol(y4[c], want[c], 1e-12);
    dpt_free(x); dpt_free(g); dpt_free(b); dpt_free(y); dpt_free(mean); dpt_free(rstd);
}
END_TEST

/* ---- linear: finite differences -------------------------------------------------------- */
typedef struct lin_ctx {
    int N, C, HW, OUT, bias;
    double *x, *w, *b, *y, *r;
} lin_ctx_t;

static double lin_loss(void *p)
{
    lin_ctx_t *c = p;
    dpt__ref_linear_fwd_f64(c->x, c->w, c->bias ? c->b : NULL, c->y, c->N, c->C, c->HW, c->OUT);
    return fd_dot(c->y, c->r, (long)c->N * c->OUT * c->HW);
}

/* _i: shape x {bias, no bias} */
START_TEST(test_linear_grad)
{
    const int *s = shapes[_i / 2];
    lin_ctx_t c = {.N = s[0], .C = s[1], .HW = s[2] * s[3], .OUT = 3 + _i % 5,
                   .bias = !(_i & 1)};
    dpt_rng_t r;
    dpt_rng_init(&r, 33, (uint64_t)_i);
    long nx = (long)c.N * c.C * c.HW, ny = (long)c.N * c.OUT * c.HW, nw = (long)c.OUT * c.C;
    c.x = fd_rand(&r, nx, 1, 0);
    c.w = fd_rand(&r, nw, 1, 0);
    c.b = fd_rand(&r, c.OUT, 1, 0);
    c.r = fd_rand(&r, ny, 1, 0);
    c.y = fd_zeros(ny);
    double *dx = fd_zeros(nx), *dw = fd_zeros(nw), *db = fd_zeros(c.OUT);
    dpt__ref_linear_bwd_f64(c.x, c.w, c.r, dx, dw, c.bias ? db : NULL, c.N, c.C, c.HW, c.OUT);
    ck_assert_double_lt(fd_error(lin_loss, &c, c.x, nx, dx), TOL_FD);
    ck_assert_double_lt(fd_error(lin_loss, &c, c.w, nw, dw), TOL_FD);
    if (c.bias)
        ck_assert_double_lt(fd_error(lin_loss, &c, c.b, c.OUT, db), TOL_FD);
    /* a 1x1 convolution: the conv kernel gives the same output */
    double *yc = fd_zeros(ny);
    (void)lin_loss(&c);
    dpt__ref_conv_fwd_f64(c.x, c.w, c.bias ? c.b : NULL, yc, c.N, c.C, s[2], s[3], c.OUT, 1, 1, 1,
                          0, 1, s[2], s[3]);
    for (long i = 0; i < ny; i++)
        ck_assert_double_eq_tol(yc[i], c.y[i], 1e-12);
    dpt_free(c.x); dpt_free(c.w); dpt_free(c.b); dpt_free(c.r); dpt_free(c.y); dpt_free(yc);
    dpt_free(dx); dpt_free(dw); dpt_free(db);
}
END_TEST

/* ---- cpu backend against ref ----------------------------------------------------------- */
/* in_mode: 0 plain NCHW input, 1 blocked (a blocked conv's output layout), 2 NHWC (a cpu linear
 * op's output layout): compare_op_run's modes 0, 1 and 3, with a backward without dx too. */
static void compare_cpu(const dpt_op_desc_t *desc, int in_mode, uint64_t seed)
{
    if (!dpt_backend_find("cpu"))
        return;   /* built without oneDNN */
    static const int side_mode[] = {0, 1, 3};
    char impl[64];
    compare_op_run(desc, side_mode[in_mode], 1, seed, impl, sizeof impl);
    if (desc->kind == DPT_OP_LAYERNORM && seed == 700)
        printf("layernorm on cpu: impl %s\n", impl);
}

/* the shared comparison shapes, then tokens (N, D, 1, T) and one position per sample */
static dpt_tensor_t cpu_shape(int i)
{
    static const int extra[][4] = {{2, 24, 1, 13}, {3, 17, 1, 1}, {2, 64, 1, 50}};
    const int *s = i < N_SHAPES ? shape_cases[i] : extra[i - N_SHAPES];
    return dpt_tensor_shape(s[0], s[1], s[2], s[3]);
}
#define N_CPU_SHAPES (N_SHAPES + 3)

/* _i: shape x input mode */
START_TEST(test_cpu_layernorm)
{
    dpt_op_desc_t d = {.kind = DPT_OP_LAYERNORM, .n_in = 1, .bn_eps = 1e-5f};
    d.in[0] = cpu_shape(_i / 3);
    compare_cpu(&d, _i % 3, 700 + (uint64_t)_i);
}
END_TEST

/* _i: shape x input mode x {bias, no bias} */
START_TEST(test_cpu_linear)
{
    dpt_op_desc_t d = {.kind = DPT_OP_LINEAR, .n_in = 1, .out_features = 5 + (_i / 6) * 3,
                       .has_bias = !((_i / 3) & 1)};
    d.in[0] = cpu_shape(_i / 6);
    compare_cpu(&d, _i % 3, 800 + (uint64_t)_i);
}
END_TEST

static Suite *layernorm_suite(void)
{
    Suite *s = suite_create("layernorm");
    TCase *tc = tcase_create("ref");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_layernorm_grad, 0, N_FD_SHAPES);
    tcase_add_loop_test(tc, test_layernorm_formula, 0, N_FD_SHAPES);
    tcase_add_loop_test(tc, test_linear_grad, 0, 2 * N_FD_SHAPES);
    suite_add_tcase(s, tc);
    TCase *tcc = tcase_create("cpu");
    tcase_set_timeout(tcc, 120);
    tcase_add_loop_test(tcc, test_cpu_layernorm, 0, 3 * N_CPU_SHAPES);
    tcase_add_loop_test(tcc, test_cpu_linear, 0, 6 * N_CPU_SHAPES);
    suite_add_tcase(s, tcc);
    return s;
}

DPT_CHECK_MAIN(layernorm_suite)
