/* check_attention.c: the multi-head self-attention core (DPT_OP_ATTENTION).
 *  - the float64 ref kernels against central finite differences (loss sum(y r), as in
 *    check_ref_grad.c) over shapes with T = 1, 5, 17 tokens, 1, 2 and 4 heads, N = 1 and 3,
 *    odd head widths;
 *  - the kernels against the formula written out directly (and their saved probabilities);
 *  - T = 1: each query sees only itself, so y = v and dq = dk = 0, dv = dy;
 *  - huge scores (|s| ~ 1e4): the shifted softmax stays finite and rows sum to 1;
 *  - the ref backend's op (shape, no parameters, dx without error when not wanted);
 *  - the cpu backend (oneDNN build only) against ref, forward and backward, with the input in
 *    plain NCHW, in nhwc (the layout transformer tensors have on cpu; taken from a `tokens`
 *    op's output) and in a blocked layout (a convolution's output), within the 1e-4 relative
 *    error check_cpu_backend.c holds the cpu backend to. */
#include <check.h>
#include <math.h>
#include <string.h>

#include "backend/ref/ref_kernels.h"
#include "check_compare.h"
#include "check_fd.h"
#include "check_main.h"
#include "dptrain/alloc.h"
#include "dptrain/backend.h"
#include "dptrain/config.h"
#include "dptrain/rng.h"

#define FD_TOL 1e-6

/* N, D (channels of each of q, k, v), heads, T */
static const int cases[][4] = {
    {1, 3, 1, 1},  {3, 4, 2, 1},  {1, 4, 1, 5},  {3, 6, 2, 5},  {1, 12, 4, 5},
    {3, 5, 1, 17}, {1, 6, 2, 17}, {3, 12, 4, 17}, {2, 20, 4, 5}, {1, 9, 3, 17},
    {2, 6, 3, 7},  {1, 6, 3, 50}, /* the token counts 1, 7, 50 and 3 heads */
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

typedef struct ctx {
    int N, D, H, T;
    double *x, *y, *p, *r;
} ctx_t;

static long nx_of(const ctx_t *c) { return (long)c->N * 3 * c->D * c->T; }
static long ny_of(const ctx_t *c) { return (long)c->N * c->D * c->T; }
static long np_of(const ctx_t *c) { return (long)c->N * c->H * c->T * c->T; }

static void ctx_open(ctx_t *c, int i, uint64_t seed, double scale)
{
    *c = (ctx_t){.N = cases[i][0], .D = cases[i][1], .H = cases[i][2], .T = cases[i][3]};
    dpt_rng_t r;
    dpt_rng_init(&r, seed, (uint64_t)i);
    c->x = fd_rand(&r, nx_of(c), scale, 0);
    c->r = fd_rand(&r, ny_of(c), 1, 0);
    c->y = dpt_calloc((size_t)ny_of(c) * sizeof(double));
    c->p = dpt_calloc((size_t)np_of(c) * sizeof(double));
}

static void ctx_close(ctx_t *c)
{
    dpt_free(c->x);
    dpt_free(c->y);
    dpt_free(c->p);
    dpt_free(c->r);
}

static double loss(void *p)
{
    ctx_t *c = p;
    dpt__ref_attention_fwd_f64(c->x, c->y, c->p, c->N, c->D, c->H, c->T);
    return fd_dot(c->y, c->r, ny_of(c));
}

/* ---- finite differences --------------------------------------------------------------------- */
START_TEST(test_fd)
{
    ctx_t c;
    ctx_open(&c, _i, 31, 1.5);
    long nx = nx_of(&c);
    double *dx = dpt_malloc((size_t)nx * sizeof(double));
    for (long i = 0; i < nx; i++)
        dx[i] = 1e300;   /* backward overwrites dx */
    loss(&c);
    dpt__ref_attention_bwd_f64(c.x, c.p, c.r, dx, c.N, c.D, c.H, c.T);
    double worst = fd_error(loss, &c, c.x, nx, dx);
    ck_assert_msg(worst < FD_TOL, "N=%d D=%d heads=%d T=%d: fd error %g", c.N, c.D, c.H, c.T,
                  worst);
    dpt_free(dx);
    ctx_close(&c);
}
END_TEST

/* ---- the formula written out ---------------------------------------------------------------- */
static double xat(const ctx_t *c, int n, int ch, int t)
{
    return c->x[((long)n * 3 * c->D + ch) * c->T + t];
}

START_TEST(test_naive)
{
    ctx_t c;
    ctx_open(&c, _i, 32, 1.0);
    loss(&c);
    const int dh = c.D / c.H;
    double *s = dpt_malloc((size_t)c.T * sizeof(double));
    double worst = 0, worst_p = 0;
    for (int n = 0; n < c.N; n++)
        for (int h = 0; h < c.H; h++)
            for (int i = 0; i < c.T; i++) {
                double z = 0;
                for (int j = 0; j < c.T; j++) {
                    double acc = 0;
                    for (int ch = 0; ch < dh; ch++)
                        acc += xat(&c, n, h * dh + ch, i) * xat(&c, n, c.D + h * dh + ch, j);
                    s[j] = exp(acc / sqrt((double)dh));   /* small scores: no shift needed */
                    z += s[j];
                }
                for (int j = 0; j < c.T; j++) {
                    double pij = s[j] / z;
                    double got = c.p[(((long)n * c.H + h) * c.T + i) * c.T + j];
                    worst_p = fmax(worst_p, fabs(got - pij));
                }
                for (int ch = 0; ch < dh; ch++) {
                    double y = 0;
                    for (int j = 0; j < c.T; j++)
                        y += s[j] / z * xat(&c, n, 2 * c.D + h * dh + ch, j);
                    double got = c.y[((long)n * c.D + h * dh + ch) * c.T + i];
                    worst = fmax(worst, fabs(got - y));
                }
            }
    ck_assert_msg(worst < 1e-12 && worst_p < 1e-12, "case %d: y err %g, p err %g", _i, worst,
                  worst_p);
    dpt_free(s);
    ctx_close(&c);
}
END_TEST

/* ---- one token: y = v; dq = dk = 0, dv = dy ------------------------------------------------ */
START_TEST(test_one_token)
{
    static const int heads[] = {1, 2, 4};
    ctx_t c = {.N = 3, .D = 8, .H = heads[_i], .T = 1};
    dpt_rng_t r;
    dpt_rng_init(&r, 33, (uint64_t)_i);
    c.x = fd_rand(&r, nx_of(&c), 3, 0);
    c.r = fd_rand(&r, ny_of(&c), 1, 0);
    c.y = dpt_calloc((size_t)ny_of(&c) * sizeof(double));
    c.p = dpt_calloc((size_t)np_of(&c) * sizeof(double));
    double *dx = dpt_calloc((size_t)nx_of(&c) * sizeof(double));
    loss(&c);
    dpt__ref_attention_bwd_f64(c.x, c.p, c.r, dx, c.N, c.D, c.H, c.T);
    for (int n = 0; n < c.N; n++)
        for (int ch = 0; ch < c.D; ch++) {
            ck_assert_double_eq(c.y[(long)n * c.D + ch], xat(&c, n, 2 * c.D + ch, 0));
            long q = (long)n * 3 * c.D + ch;
            ck_assert_double_eq_tol(dx[q], 0.0, 1e-15);
            ck_assert_double_eq_tol(dx[q + c.D], 0.0, 1e-15);
            ck_assert_double_eq(dx[q + 2 * c.D], c.r[(long)n * c.D + ch]);
        }
    dpt_free(dx);
    ctx_close(&c);
}
END_TEST

/* ---- huge scores: finite, rows of P sum to 1 (the float kernel: exp overflows first) ------- */
START_TEST(test_large_scores)
{
    enum { N = 2, D = 4, H = 2, T = 9 };
    float x[N * 3 * D * T], y[N * D * T], p[N * H * T * T];
    dpt_rng_t r;
    dpt_rng_init(&r, 34, 0);
    for (int i = 0; i < N * 3 * D * T; i++)
        x[i] = 100.0f * (2.0f * dpt_rng_uniform(&r) - 1.0f);
    dpt__ref_attention_fwd_f32(x, y, p, N, D, H, T);
    for (int i = 0; i < N * D * T; i++)
        ck_assert(isfinite(y[i]));
    for (int row = 0; row < N * H * T; row++) {
        double s = 0;
        for (int j = 0; j < T; j++) {
            ck_assert(isfinite(p[row * T + j]) && p[row * T + j] >= 0);
            s += p[row * T + j];
        }
        ck_assert_double_eq_tol(s, 1.0, 1e-5);
    }
}
END_TEST

/* ---- the ref backend's op ------------------------------------------------------------------- */
START_TEST(test_ref_op)
{
    const dpt_backend_ops_t *ops = &dpt_backend_ref;
    dpt_backend_t *be;
    ck_assert_int_eq(ops->create(&(dpt_backend_config_t){0}, &be), DPT_OK);
    dpt_op_desc_t d = {.kind = DPT_OP_ATTENTION, .n_in = 1, .heads = 2};
    d.in[0] = dpt_tensor_shape(2, 12, 1, 5);
    dpt_op_t *op;
    dpt_op_info_t info;
    ck_assert_int_eq(ops->op_create(be, &d, &op, &info), DPT_OK);
    ck_assert_int_eq(info.out.n, 2);
    ck_assert_int_eq(info.out.c, 4);
    ck_assert_int_eq(info.out.h, 1);
    ck_assert_int_eq(info.out.w, 5);
    ck_assert_uint_eq(info.n_params, 0);
    float x[120] = {0}, y[40], dy[40] = {0};
    dpt_tensor_t tx = d.in[0], ty = info.out, tdy = info.out;
    tx.data = x, ty.data = y, tdy.data = dy;
    dpt_op_args_t a = {.x = {&tx}, .y = &ty, .dy = &tdy, .training = 1};
    ck_assert_int_eq(ops->forward(op, &a), DPT_OK);
    ck_assert_int_eq(ops->backward(op, &a), DPT_OK);   /* dx NULL: nothing to do */
    ops->op_destroy(op);
    d.heads = 3;   /* does not divide D = 4 */
    ck_assert_int_ne(ops->op_create(be, &d, &op, &info), DPT_OK);
    d.heads = 1;
    d.in[0] = dpt_tensor_shape(2, 13, 1, 5);   /* not 3D channels */
    ck_assert_int_ne(ops->op_create(be, &d, &op, &info), DPT_OK);
    ops->destroy(be);
}
END_TEST

/* ---- cpu against ref ------------------------------------------------------------------------ */
#if DPT_HAVE_DNNL
/* layout: 0 plain NCHW input, 1 nhwc (a tokens op's output layout), 2 blocked (a convolution's
 * output layout; skipped when oneDNN picks a plain one) */
static void compare_cpu(int ci, int layout)
{
    const int N = cases[ci][0], D = cases[ci][1], H = cases[ci][2], T = cases[ci][3];
    const dpt_backend_ops_t *R = &dpt_backend_ref, *C = &dpt_backend_cpu;
    dpt_backend_t *rb, *cb;
    ck_assert_int_eq(R->create(&(dpt_backend_config_t){0}, &rb), DPT_OK);
    dpt_backend_config_t cfg = {.threads = 2, .blocked_layout = layout == 2};
    ck_assert_int_eq(C->create(&cfg, &cb), DPT_OK);
    dpt_op_desc_t d = {.kind = DPT_OP_ATTENTION, .n_in = 1, .heads = H}, dc;
    d.in[0] = dpt_tensor_shape(N, 3 * D, 1, T);
    dc = d;
    dpt_op_t *producer = NULL, *rop, *cop;
    dpt_op_info_t pi, ri, cinfo;
    if (layout == 1) {
        dpt_op_desc_t p = {.kind = DPT_OP_TOKENS, .n_in = 1};
        p.in[0] = d.in[0];
        ck_assert_msg(C->op_create(cb, &p, &producer, &pi) == DPT_OK, "tokens: %s",
                      dpt_error_get());
        dc.in[0] = pi.out;
    } else if (layout == 2) {   /* a 1x1 convolution's output: (N, 3D, 1, T) */
        dpt_op_desc_t p = {.kind = DPT_OP_CONV2D, .n_in = 1, .out_c = 3 * D, .kh = 1, .kw = 1,
                           .stride = 1};
        p.in[0] = dpt_tensor_shape(N, 3, 1, T);
        ck_assert_int_eq(C->op_create(cb, &p, &producer, &pi), DPT_OK);
        ck_assert_int_eq(pi.out.c, 3 * D);
        ck_assert_int_eq(pi.out.w, T);
        dc.in[0] = pi.out;
    }
    if (layout && dc.in[0].layout == DPT_LAYOUT_NCHW) {   /* nothing new to test here */
        C->op_destroy(producer);
        C->destroy(cb);
        R->destroy(rb);
        return;
    }
    ck_assert_msg(R->op_create(rb, &d, &rop, &ri) == DPT_OK, "ref: %s", dpt_error_get());
    ck_assert_msg(C->op_create(cb, &dc, &cop, &cinfo) == DPT_OK, "cpu: %s", dpt_error_get());
    ck_assert_int_eq(cinfo.out.c, D);
    ck_assert_int_eq(cinfo.out.w, T);
    ck_assert_uint_eq(cinfo.n_params, 0);

    const size_t nx = (size_t)N * 3 * D * T, ny = (size_t)N * D * T;
    dpt_rng_t rng;
    dpt_rng_init(&rng, 40 + (uint64_t)layout, (uint64_t)ci);
    float *x = randv(&rng, nx, 1.5f, 0.0f), *dy = randv(&rng, ny, 1.0f, 0.0f);
    float *got = dpt_malloc(nx * sizeof(float));
    dpt_tensor_t rx = d.in[0], rdx = d.in[0], ry = ri.out, rdy = ri.out;
    rx.data = x, rdy.data = dy;
    rdx.data = dpt_malloc(nx * sizeof(float));
    ry.data = dpt_malloc(ny * sizeof(float));
    dpt_tensor_t cx = dc.in[0], cdx = dc.in[0], cy = cinfo.out, cdy = cinfo.out;
    cx.data = C->alloc(cb, cx.nbytes);
    cdx.data = C->alloc(cb, cdx.nbytes);
    cy.data = C->alloc(cb, cy.nbytes);
    cdy.data = C->alloc(cb, cdy.nbytes);
    ck_assert_int_eq(C->import_nchw(cb, x, &cx), DPT_OK);
    ck_assert_int_eq(C->import_nchw(cb, dy, &cdy), DPT_OK);

    dpt_op_args_t ra = {.x = {&rx}, .y = &ry, .dy = &rdy, .dx = {&rdx}, .training = 1};
    dpt_op_args_t ca = {.x = {&cx}, .y = &cy, .dy = &cdy, .dx = {&cdx}, .training = 1};
    ck_assert_int_eq(R->forward(rop, &ra), DPT_OK);
    ck_assert_int_eq(R->backward(rop, &ra), DPT_OK);
    for (int eval = 1; eval >= 0; eval--) {   /* an eval forward, then a training step */
        ca.training = !eval;
        ck_assert_int_eq(C->forward(cop, &ca), DPT_OK);
        ck_assert_int_eq(C->export_nchw(cb, &cy, got), DPT_OK);
        double e = rel_err(got, ry.data, ny);
        ck_assert_msg(e < 1e-4, "case %d layout %d%s: y rel err %g", ci, layout,
                      eval ? " (eval)" : "", e);
    }
    ck_assert_int_eq(C->backward(cop, &ca), DPT_OK);
    ck_assert_int_eq(C->export_nchw(cb, &cdx, got), DPT_OK);
    double e = rel_err(got, rdx.data, nx);
    ck_assert_msg(e < 1e-4, "case %d layout %d: dx rel err %g", ci, layout, e);
    ca.dx[0] = NULL;
    ck_assert_int_eq(C->backward(cop, &ca), DPT_OK);

    C->free(cb, cx.data);
    C->free(cb, cdx.data);
    C->free(cb, cy.data);
    C->free(cb, cdy.data);
    dpt_free(rdx.data);
    dpt_free(ry.data);
    dpt_free(x);
    dpt_free(dy);
    dpt_free(got);
    R->op_destroy(rop);
    C->op_destroy(cop);
    if (producer)
        C->op_destroy(producer);
    C->destroy(cb);
    R->destroy(rb);
}

START_TEST(test_cpu)
{
    for (int layout = 0; layout < 3; layout++)
        compare_cpu(_i, layout);
}
END_TEST
#endif

static Suite *attention_suite(void)
{
    Suite *s = suite_create("attention");
    TCase *tc = tcase_create("ref");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_fd, 0, N_CASES);
    tcase_add_loop_test(tc, test_naive, 0, N_CASES);
    tcase_add_loop_test(tc, test_one_token, 0, 3);
    tcase_add_test(tc, test_large_scores);
    tcase_add_test(tc, test_ref_op);
    suite_add_tcase(s, tc);
#if DPT_HAVE_DNNL
    TCase *tcc = tcase_create("cpu");
    tcase_set_timeout(tcc, 120);
    tcase_add_loop_test(tcc, test_cpu, 0, N_CASES);
    suite_add_tcase(s, tcc);
#endif
    return s;
}

DPT_CHECK_MAIN(attention_suite)
