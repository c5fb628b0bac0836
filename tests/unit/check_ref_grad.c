/* check_ref_grad.c: every layer's backward on the ref backend against central finite
 * differences in float64 (the double instantiation of ref_kernels.inc), for several shapes
 * including odd sizes, strides and paddings. Loss L = sum(y * r) for a fixed random r, so the
 * analytic gradient is backward(dy = r). Error: |num - ana| / max(1e-3, |num| + |ana|). */
#include <check.h>
#include <math.h>
#include <string.h>

#include "backend/ref/ref_kernels.h"
#include "check_fd.h"
#include "check_main.h"
#include "dptrain/alloc.h"
#include "dptrain/backend.h"
#include "dptrain/rng.h"

#define TOL 1e-6

/* ---- conv2d ---------------------------------------------------------------------------- */
typedef struct conv_case {
    int N, C, H, W, O, K, stride, pad, bias, G;
} conv_case_t;

/* The last four are grouped: 2 groups, depthwise (G = C = O), depthwise with two filters per
 * channel (O = 2C), and 3 groups of 2 channels with a stride. */
static const conv_case_t conv_cases[] = {
    {2, 3, 5, 5, 4, 3, 1, 1, 1, 1}, {1, 2, 7, 6, 3, 3, 2, 0, 0, 1}, {3, 5, 4, 4, 2, 1, 1, 0, 1, 1},
    {2, 1, 6, 6, 3, 5, 2, 2, 1, 1}, {1, 4, 3, 5, 5, 3, 3, 1, 0, 1}, {2, 4, 5, 4, 6, 3, 1, 1, 1, 2},
    {2, 3, 5, 5, 3, 3, 1, 1, 1, 3}, {1, 3, 6, 5, 6, 5, 2, 2, 0, 3}, {2, 6, 5, 5, 3, 3, 2, 1, 1, 3},
};

typedef struct conv_ctx {
    conv_case_t k;
    int OH, OW;
    double *x, *w, *b, *y, *r;
} conv_ctx_t;

static double conv_loss(void *p)
{
    conv_ctx_t *c = p;
    dpt__ref_conv_fwd_f64(c->x, c->w, c->k.bias ? c->b : NULL, c->y, c->k.N, c->k.C, c->k.H,
                          c->k.W, c->k.O, c->k.K, c->k.K, c->k.stride, c->k.pad, c->k.G, c->OH,
                          c->OW);
    return fd_dot(c->y, c->r, (long)c->k.N * c->k.O * c->OH * c->OW);
}

START_TEST(test_conv_grad)
{
    conv_ctx_t c = {.k = conv_cases[_i]};
    conv_case_t *k = &c.k;
    c.OH = (k->H + 2 * k->pad - k->K) / k->stride + 1;
    c.OW = (k->W + 2 * k->pad - k->K) / k->stride + 1;
    dpt_rng_t r;
    dpt_rng_init(&r, 7, (uint64_t)_i);
    long nx = (long)k->N * k->C * k->H * k->W, nw = (long)k->O * (k->C / k->G) * k->K * k->K;
    long ny = (long)k->N * k->O * c.OH * c.OW;
    c.x = fd_rand(&r, nx, 1, 0);
    c.w = fd_rand(&r, nw, 1, 0);
    c.b = fd_rand(&r, k->O, 1, 0);
    c.y = fd_zeros(ny);
    c.r = fd_rand(&r, ny, 1, 0);
    double *dx = fd_zeros(nx), *dw = fd_zeros(nw), *db = fd_zeros(k->O);
    dpt__ref_conv_bwd_f64(c.x, c.w, c.r, dx, dw, k->bias ? db : NULL, k->N, k->C, k->H, k->W,
                          k->O, k->K, k->K, k->stride, k->pad, k->G, c.OH, c.OW);
    ck_assert_double_lt(fd_error(conv_loss, &c, c.x, nx, dx), TOL);
    ck_assert_double_lt(fd_error(conv_loss, &c, c.w, nw, dw), TOL);
    if (k->bias)
        ck_assert_double_lt(fd_error(conv_loss, &c, c.b, k->O, db), TOL);
    dpt_free(c.x); dpt_free(c.w); dpt_free(c.b); dpt_free(c.y); dpt_free(c.r);
    dpt_free(dx); dpt_free(dw); dpt_free(db);
}
END_TEST

/* A grouped convolution is G ordinary ones side by side: group g's outputs are the plain
 * convolution of input channels [g CG, (g+1) CG) with that group's filters (the finite
 * differences above only check backward against forward, this checks forward's meaning). */
START_TEST(test_conv_groups_split)
{
    const conv_case_t *k = &conv_cases[_i];
    if (k->G == 1)
        return;
    const int CG = k->C / k->G, OG = k->O / k->G, HW = k->H * k->W;
    const int OH = (k->H + 2 * k->pad - k->K) / k->stride + 1;
    const int OW = (k->W + 2 * k->pad - k->K) / k->stride + 1;
    const long wg = (long)OG * CG * k->K * k->K;
    dpt_rng_t r;
    dpt_rng_init(&r, 9, (uint64_t)_i);
    double *x = fd_rand(&r, (long)k->N * k->C * HW, 1, 0), *w = fd_rand(&r, wg * k->G, 1, 0);
    double *b = fd_rand(&r, k->O, 1, 0), *y = fd_zeros((long)k->N * k->O * OH * OW);
    double *xs = fd_zeros((long)k->N * CG * HW), *ys = fd_zeros((long)k->N * OG * OH * OW);
    dpt__ref_conv_fwd_f64(x, w, b, y, k->N, k->C, k->H, k->W, k->O, k->K, k->K, k->stride, k->pad,
                          k->G, OH, OW);
    for (int g = 0; g < k->G; g++) {
        for (int n = 0; n < k->N; n++)
            memcpy(xs + (long)n * CG * HW, x + ((long)n * k->C + g * CG) * HW,
                   (size_t)CG * HW * sizeof(double));
        dpt__ref_conv_fwd_f64(xs, w + g * wg, b + g * OG, ys, k->N, CG, k->H, k->W, OG, k->K,
                              k->K, k->stride, k->pad, 1, OH, OW);
        for (int n = 0; n < k->N; n++)
            ck_assert_mem_eq(ys + (long)n * OG * OH * OW,
                             y + ((long)n * k->O + g * OG) * OH * OW,
                             (size_t)OG * OH * OW * sizeof(double));
    }
    dpt_free(x); dpt_free(w); dpt_free(b); dpt_free(y); dpt_free(xs); dpt_free(ys);
}
END_TEST

/* ---- batch norm (training mode, batch statistics), with and without fused relu ---------- */
typedef struct bn_ctx {
    int N, C, HW, relu;
    double *x, *g, *b, *y, *r, *mean, *var;
} bn_ctx_t;

static double bn_loss(void *p)
{
    bn_ctx_t *c = p;
    dpt__ref_bn_fwd_train_f64(c->x, c->g, c->b, c->y, c->mean, c->var, c->N, c->C, c->HW, 1e-5,
                              c->relu);
    return fd_dot(c->y, c->r, (long)c->N * c->C * c->HW);
}

START_TEST(test_bn_grad)
{
    static const int shapes[][3] = {{4, 3, 5}, {2, 5, 9}, {7, 1, 1}, {3, 2, 4}};
    bn_ctx_t c = {.N = shapes[_i % 4][0], .C = shapes[_i % 4][1], .HW = shapes[_i % 4][2],
                  .relu = _i / 4};
    dpt_rng_t r;
    dpt_rng_init(&r, 8, (uint64_t)_i);
    long n = (long)c.N * c.C * c.HW;
    c.x = fd_rand(&r, n, 2, 0);
    c.g = fd_rand(&r, c.C, 1.5, 0);
    c.b = fd_rand(&r, c.C, 1, 0);
    c.y = fd_zeros(n);
    c.r = fd_rand(&r, n, 1, 0);
    c.mean = fd_zeros(c.C);
    c.var = fd_zeros(c.C);
    double *dx = fd_zeros(n), *dg = fd_zeros(c.C), *dbeta = fd_zeros(c.C);
    bn_loss(&c);
    dpt__ref_bn_bwd_f64(c.x, c.g, c.mean, c.var, c.y, c.r, dx, dg, dbeta, c.N, c.C, c.HW, 1e-5,
                        c.relu);
    ck_assert_double_lt(fd_error(bn_loss, &c, c.x, n, dx), 1e-5);
    ck_assert_double_lt(fd_error(bn_loss, &c, c.g, c.C, dg), TOL);
    ck_assert_double_lt(fd_error(bn_loss, &c, c.b, c.C, dbeta), TOL);
    dpt_free(c.x); dpt_free(c.g); dpt_free(c.b); dpt_free(c.y); dpt_free(c.r);
    dpt_free(c.mean); dpt_free(c.var); dpt_free(dx); dpt_free(dg); dpt_free(dbeta);
}
END_TEST

/* ---- elementwise: relu, celu ------------------------------------------------------------- */
typedef struct elt_ctx {
    long n;
    int celu;
    double alpha;
    double *x, *y, *r;
} elt_ctx_t;

static double elt_loss(void *p)
{
    elt_ctx_t *c = p;
    if (c->celu)
        dpt__ref_celu_fwd_f64(c->x, c->y, c->n, c->alpha);
    else
        dpt__ref_relu_fwd_f64(c->x, c->y, c->n);
    return fd_dot(c->y, c->r, c->n);
}

START_TEST(test_eltwise_grad)
{
    elt_ctx_t c = {.n = 37, .celu = _i > 0, .alpha = _i == 2 ? 0.3 : 1.0};
    dpt_rng_t r;
    dpt_rng_init(&r, 9, (uint64_t)_i);
    c.x = fd_rand(&r, c.n, 3, 0);
    c.y = fd_zeros(c.n);
    c.r = fd_rand(&r, c.n, 1, 0);
    double *dx = fd_zeros(c.n);
    elt_loss(&c);
    if (c.celu)
        dpt__ref_celu_bwd_f64(c.x, c.r, dx, c.n, c.alpha);
    else
        dpt__ref_relu_bwd_f64(c.y, c.r, dx, c.n);
    ck_assert_double_lt(fd_error(elt_loss, &c, c.x, c.n, dx), TOL);
    dpt_free(c.x); dpt_free(c.y); dpt_free(c.r); dpt_free(dx);
}
END_TEST

/* ---- smooth activations: silu, gelu (erf, tanh), sigmoid --------------------------------- */
typedef struct act_ctx {
    long n;
    int act;              /* _i: 0 silu, 1 gelu erf, 2 gelu tanh, 3 sigmoid */
    double *x, *y, *r;
} act_ctx_t;

static double act_loss(void *p)
{
    act_ctx_t *c = p;
    if (c->act == 0)
        dpt__ref_silu_fwd_f64(c->x, c->y, c->n);
    else if (c->act <= 2)
        dpt__ref_gelu_fwd_f64(c->x, c->y, c->n, c->act == 2);
    else
        dpt__ref_sigmoid_fwd_f64(c->x, c->y, c->n);
    return fd_dot(c->y, c->r, c->n);
}

/* Random inputs in +-3, then fixed ones: around 0 (where the curvature is largest) and large
 * |x|, where the logistic saturates and erf's 1 + erf(x) would cancel. */
START_TEST(test_act_grad)
{
    static const double fixed[] = {0.0, 1e-3, -1e-3, 0.5, -0.5, 2.5, -2.5, 6.0, -6.0, 8.0, -8.0};
    const long nf = (long)(sizeof fixed / sizeof fixed[0]);
    act_ctx_t c = {.n = 29 + nf, .act = _i};
    dpt_rng_t r;
    dpt_rng_init(&r, 19, (uint64_t)_i);
    c.x = fd_rand(&r, c.n, 3, 0);
    memcpy(c.x + c.n - nf, fixed, sizeof fixed);
    c.y = fd_zeros(c.n);
    c.r = fd_rand(&r, c.n, 1, 0);
    double *dx = fd_zeros(c.n);
    act_loss(&c);
    if (c.act == 0)
        dpt__ref_silu_bwd_f64(c.x, c.r, dx, c.n);
    else if (c.act <= 2)
        dpt__ref_gelu_bwd_f64(c.x, c.r, dx, c.n, c.act == 2);
    else
        dpt__ref_sigmoid_bwd_f64(c.y, c.r, dx, c.n);   /* from y, as the backends call it */
    ck_assert_double_lt(fd_error(act_loss, &c, c.x, c.n, dx), TOL);
    /* Forward spot values: the formulas themselves, not only their consistency with backward. */
    double x1[3] = {1.0, -8.0, 0.0}, y1[3];
    if (c.act == 0) {
        dpt__ref_silu_fwd_f64(x1, y1, 3);
        ck_assert_double_eq_tol(y1[0], 0.7310585786300049, 1e-15);
        ck_assert_double_eq_tol(y1[1], -8.0 * 3.3535013046647816e-4, 1e-18);
    } else if (c.act <= 2) {
        dpt__ref_gelu_fwd_f64(x1, y1, 3, c.act == 2);
        ck_assert_double_eq_tol(y1[0], c.act == 1 ? 0.8413447460685429 : 0.8411919906082768,
                                1e-15);
        ck_assert_double_eq_tol(y1[1], c.act == 1 ? -4.9767684594174555e-15 : 0.0, 1e-26);
    } else {
        dpt__ref_sigmoid_fwd_f64(x1, y1, 3);
        ck_assert_double_eq_tol(y1[0], 0.7310585786300049, 1e-15);
        ck_assert_double_eq_tol(y1[1], 3.3535013046647816e-4, 1e-19);
    }
    ck_assert_double_eq(y1[2], c.act == 3 ? 0.5 : 0.0);
    dpt_free(c.x); dpt_free(c.y); dpt_free(c.r); dpt_free(dx);
}
END_TEST

/* ---- max pool ------------------------------------------------------------------------------ */
typedef struct pool_ctx {
    int N, C, H, W, K, S, P, OH, OW;
    double *x, *y, *r;
    int32_t *am;
} pool_ctx_t;

static double pool_loss(void *p)
{
    pool_ctx_t *c = p;
    dpt__ref_maxpool_fwd_f64(c->x, c->y, c->am, c->N, c->C, c->H, c->W, c->K, c->S, c->P, c->OH,
                             c->OW);
    return fd_dot(c->y, c->r, (long)c->N * c->C * c->OH * c->OW);
}

START_TEST(test_maxpool_grad)
{
    static const int cases[][7] = {
        {2, 3, 6, 6, 2, 2, 0}, {1, 2, 7, 5, 3, 2, 1}, {2, 1, 5, 5, 3, 1, 1}, {1, 3, 4, 4, 4, 4, 0},
    };
    const int *k = cases[_i];
    pool_ctx_t c = {.N = k[0], .C = k[1], .H = k[2], .W = k[3], .K = k[4], .S = k[5], .P = k[6]};
    c.OH = (c.H + 2 * c.P - c.K) / c.S + 1;
    c.OW = (c.W + 2 * c.P - c.K) / c.S + 1;
    dpt_rng_t r;
    dpt_rng_init(&r, 10, (uint64_t)_i);
    long nx = (long)c.N * c.C * c.H * c.W, ny = (long)c.N * c.C * c.OH * c.OW;
    c.x = fd_rand(&r, nx, 1, 0);
    c.y = fd_zeros(ny);
    c.r = fd_rand(&r, ny, 1, 0);
    c.am = dpt_calloc((size_t)ny * sizeof(int32_t));
    double *dx = fd_zeros(nx);
    pool_loss(&c);
    dpt__ref_maxpool_bwd_f64(c.am, c.r, dx, c.N, c.C, c.H, c.W, c.OH, c.OW);
    ck_assert_double_lt(fd_error(pool_loss, &c, c.x, nx, dx), TOL);
    dpt_free(c.x); dpt_free(c.y); dpt_free(c.r); dpt_free(c.am); dpt_free(dx);
}
END_TEST

/* ---- global average pool ------------------------------------------------------------------- */
typedef struct gap_ctx {
    int N, C, HW;
    double *x, *y, *r;
} gap_ctx_t;

static double gap_loss(void *p)
{
    gap_ctx_t *c = p;
    dpt__ref_gap_fwd_f64(c->x, c->y, c->N, c->C, c->HW);
    return fd_dot(c->y, c->r, (long)c->N * c->C);
}

START_TEST(test_gap_grad)
{
    gap_ctx_t c = {.N = 3, .C = 5, .HW = 7 * 3};
    dpt_rng_t r;
    dpt_rng_init(&r, 11, 0);
    long nx = (long)c.N * c.C * c.HW;
    c.x = fd_rand(&r, nx, 1, 0);
    c.y = fd_zeros(c.N * c.C);
    c.r = fd_rand(&r, c.N * c.C, 1, 0);
    double *dx = fd_zeros(nx);
    dpt__ref_gap_bwd_f64(c.r, dx, c.N, c.C, c.HW);
    ck_assert_double_lt(fd_error(gap_loss, &c, c.x, nx, dx), TOL);
    dpt_free(c.x); dpt_free(c.y); dpt_free(c.r); dpt_free(dx);
}
END_TEST

/* ---- fully connected ----------------------------------------------------------------------- */
typedef struct fc_ctx {
    int N, IN, OUT, bias;
    double *x, *w, *b, *y, *r;
} fc_ctx_t;

static double fc_loss(void *p)
{
    fc_ctx_t *c = p;
    dpt__ref_fc_fwd_f64(c->x, c->w, c->bias ? c->b : NULL, c->y, c->N, c->IN, c->OUT);
    return fd_dot(c->y, c->r, (long)c->N * c->OUT);
}

START_TEST(test_fc_grad)
{
    fc_ctx_t c = {.N = 3 + _i, .IN = 11 + 4 * _i, .OUT = 7 - _i, .bias = _i != 1};
    dpt_rng_t r;
    dpt_rng_init(&r, 12, (uint64_t)_i);
    c.x = fd_rand(&r, (long)c.N * c.IN, 1, 0);
    c.w = fd_rand(&r, (long)c.OUT * c.IN, 1, 0);
    c.b = fd_rand(&r, c.OUT, 1, 0);
    c.y = fd_zeros((long)c.N * c.OUT);
    c.r = fd_rand(&r, (long)c.N * c.OUT, 1, 0);
    double *dx = fd_zeros((long)c.N * c.IN), *dw = fd_zeros((long)c.OUT * c.IN);
    double *db = fd_zeros(c.OUT);
    dpt__ref_fc_bwd_f64(c.x, c.w, c.r, dx, dw, c.bias ? db : NULL, c.N, c.IN, c.OUT);
    ck_assert_double_lt(fd_error(fc_loss, &c, c.x, (long)c.N * c.IN, dx), TOL);
    ck_assert_double_lt(fd_error(fc_loss, &c, c.w, (long)c.OUT * c.IN, dw), TOL);
    if (c.bias)
        ck_assert_double_lt(fd_error(fc_loss, &c, c.b, c.OUT, db), TOL);
    dpt_free(c.x); dpt_free(c.w); dpt_free(c.b); dpt_free(c.y); dpt_free(c.r);
    dpt_free(dx); dpt_free(dw); dpt_free(db);
}
END_TEST

/* ---- softmax cross-entropy with label smoothing, including padded rows ---------------------- */
typedef struct xent_ctx {
    int N, K, n_valid;
    double smoothing;
    double *z, *p;
    int32_t *labels;
} xent_ctx_t;

static double xent_loss(void *pp)
{
    xent_ctx_t *c = pp;
    return dpt__ref_xent_fwd_f64(c->z, c->labels, c->p, c->N, c->K, c->n_valid, c->smoothing, NULL);
}

START_TEST(test_xent_grad)
{
    xent_ctx_t c = {.N = 5, .K = 4 + _i, .n_valid = _i == 2 ? 3 : 0, .smoothing = 0.1 * _i};
    dpt_rng_t r;
    dpt_rng_init(&r, 13, (uint64_t)_i);
    long n = (long)c.N * c.K;
    c.z = fd_rand(&r, n, 3, 0);
    c.p = fd_zeros(n);
    c.labels = dpt_malloc((size_t)c.N * sizeof(int32_t));
    for (int i = 0; i < c.N; i++)
        c.labels[i] = (int32_t)dpt_rng_below(&r, (uint32_t)c.K);
    double *dz = fd_zeros(n);
    xent_loss(&c);
    dpt__ref_xent_bwd_f64(c.p, c.labels, dz, c.N, c.K, c.n_valid, c.smoothing);
    ck_assert_double_lt(fd_error(xent_loss, &c, c.z, n, dz), TOL);
    if (c.n_valid)   /* padded rows get no gradient */
        for (long i = (long)c.n_valid * c.K; i < n; i++)
            ck_assert(dz[i] == 0.0);
    dpt_free(c.z); dpt_free(c.p); dpt_free(c.labels); dpt_free(dz);
}
END_TEST

/* ---- add, scale, flatten: through the ref backend's ops (float32; linear, so central
 * differences with a large step are exact up to rounding) ------------------------------------ */
START_TEST(test_linear_ops_grad)
{
    static const dpt_op_kind_t kinds[] = {DPT_OP_ADD, DPT_OP_SCALE, DPT_OP_FLATTEN};
    const dpt_backend_ops_t *ops = dpt_backend_find("ref");
    dpt_backend_t *be;
    ck_assert_int_eq(ops->create(&(dpt_backend_config_t){0}, &be), DPT_OK);
    dpt_op_desc_t d = {.kind = kinds[_i], .n_in = dpt_op_n_inputs(kinds[_i]), .alpha = 0.37f};
    d.in[0] = d.in[1] = dpt_tensor_shape(2, 3, 4, 5);
    dpt_op_t *op;
    dpt_op_info_t info;
    ck_assert_int_eq(ops->op_create(be, &d, &op, &info), DPT_OK);
    long n = 2 * 3 * 4 * 5;
    float x0[120], x1[120], y[120], r[120], dx0[120], dx1[120];
    dpt_rng_t rng;
    dpt_rng_init(&rng, 14, (uint64_t)_i);
    for (long i = 0; i < n; i++) {
        x0[i] = dpt_rng_normal(&rng);
        x1[i] = dpt_rng_normal(&rng);
        r[i] = dpt_rng_normal(&rng);
    }
    dpt_tensor_t tx0 = d.in[0], tx1 = d.in[1], ty = info.out, tr = info.out, tdx0 = d.in[0],
                 tdx1 = d.in[1];
    tx0.data = x0; tx1.data = x1; ty.data = y; tr.data = r; tdx0.data = dx0; tdx1.data = dx1;
    dpt_op_args_t a = {.x = {&tx0, &tx1}, .y = &ty, .dy = &tr, .dx = {&tdx0, &tdx1}};
    ck_assert_int_eq(ops->backward(op, &a), DPT_OK);
    float *vars[2] = {x0, x1};
    float *grads[2] = {dx0, dx1};
    for (int v = 0; v < d.n_in; v++)
        for (long i = 0; i < n; i++) {
            float save = vars[v][i];
            double l[2];
            for (int s = 0; s < 2; s++) {
                vars[v][i] = save + (s ? -0.5f : 0.5f);
                ck_assert_int_eq(ops->forward(op, &a), DPT_OK);
                double acc = 0;
                for (long j = 0; j < n; j++)
                    acc += (double)y[j] * r[j];
                l[s] = acc;
            }
            vars[v][i] = save;
            double num = (l[0] - l[1]) / 1.0;
            ck_assert_double_lt(fabs(num - grads[v][i]), 1e-4 * (1 + fabs(num)));
        }
    ops->op_destroy(op);
    ops->destroy(be);
}
END_TEST

static Suite *ref_grad_suite(void)
{
    Suite *s = suite_create("ref_grad");
    TCase *tc = tcase_create("finite_differences");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_conv_grad, 0, (int)(sizeof conv_cases / sizeof conv_cases[0]));
    tcase_add_loop_test(tc, test_conv_groups_split, 0,
                        (int)(sizeof conv_cases / sizeof conv_cases[0]));
    tcase_add_loop_test(tc, test_bn_grad, 0, 8);
    tcase_add_loop_test(tc, test_eltwise_grad, 0, 3);
    tcase_add_loop_test(tc, test_act_grad, 0, 4);
    tcase_add_loop_test(tc, test_maxpool_grad, 0, 4);
    tcase_add_test(tc, test_gap_grad);
    tcase_add_loop_test(tc, test_fc_grad, 0, 3);
    tcase_add_loop_test(tc, test_xent_grad, 0, 3);
    tcase_add_loop_test(tc, test_linear_ops_grad, 0, 3);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(ref_grad_suite)
