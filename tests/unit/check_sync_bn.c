/* check_sync_bn.c: synchronized batch norm (src/model/sync_bn.c).
 *  - one rank: forward, running statistics and backward equal the ref backend's batch norm;
 *  - dx against central finite differences of L = sum(y * r) (float, loose tolerance);
 *  - two ranks (threads summing through a barrier), each with half the batch: every output and
 *    dx equals the one-rank result on the whole batch, dgamma/dbeta are the halves' sums. */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "check_main.h"
#include "dptrain/alloc.h"
#include "dptrain/backend.h"
#include "dptrain/rng.h"
#include "model/internal.h"

enum { N = 4, C = 3, HW = 5, NX = N * C * HW };

static dpt_status_t sum_self(void *ctx, float *buf, size_t n)
{
    (void)ctx, (void)buf, (void)n;
    return DPT_OK;
}

static void randf(dpt_rng_t *r, float *v, int n, float lo, float hi)
{
    for (int i = 0; i < n; i++)
        v[i] = lo + (hi - lo) * dpt_rng_uniform(r);
}

static float maxdiff(const float *a, const float *b, int n)
{
    float m = 0;
    for (int i = 0; i < n; i++)
        m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

typedef struct data {
    float x[NX], dy[NX], w[2 * C];
} data_t;

static void make(data_t *d)
{
    dpt_rng_t r;
    dpt_rng_init(&r, 7, 1);
    randf(&r, d->x, NX, -2, 3);
    randf(&r, d->dy, NX, -1, 1);
    randf(&r, d->w, 2 * C, 0.5f, 1.5f);
}

/* one rank through sync_bn.c */
static void run_sbn(const data_t *d, int n, const float *x, const float *dy, float *y, float *dx,
                    float *run, float *dw, dpt_status_t (*sum)(void *, float *, size_t),
                    void *ctx)
{
    float tmp[2 * C + 1], mean[C], invstd[C];
    dpt__sbn_args_t a = {.n = n, .c = C, .hw = HW, .eps = 1e-5f, .momentum = 0.1f,
                         .gamma = d->w, .beta = d->w + C, .tmp = tmp, .sum = sum, .ctx = ctx};
    ck_assert_int_eq(dpt__sbn_forward(&a, x, y, run, run + C, mean, invstd), DPT_OK);
    ck_assert_int_eq(dpt__sbn_backward(&a, x, dy, dx, mean, invstd, dw, dw + C), DPT_OK);
}

START_TEST(matches_ref_backend)
{
    data_t d;
    make(&d);
    const dpt_backend_ops_t *ops = dpt_backend_find("ref");
    dpt_backend_t *be;
    ck_assert_int_eq(ops->create(&(dpt_backend_config_t){0}, &be), DPT_OK);
    dpt_op_desc_t desc = {.kind = DPT_OP_BATCHNORM, .n_in = 1, .bn_eps = 1e-5f,
                          .bn_momentum = 0.1f};
    desc.in[0] = (dpt_tensor_t){.n = N, .c = C, .h = 1, .w = HW, .nbytes = NX * sizeof(float)};
    dpt_op_t *op;
    dpt_op_info_t info;
    ck_assert_int_eq(ops->op_create(be, &desc, &op, &info), DPT_OK);
    float y_ref[NX], dx_ref[NX], run_ref[2 * C], dw_ref[2 * C];
    for (int k = 0; k < C; k++)
        run_ref[k] = 0, run_ref[C + k] = 1;
    dpt_tensor_t tx = desc.in[0], ty = info.out, tdy = info.out, tdx = desc.in[0];
    tx.data = d.x;
    ty.data = y_ref;
    tdy.data = d.dy;
    tdx.data = dx_ref;
    dpt_op_args_t a = {.x = {&tx}, .y = &ty, .dy = &tdy, .dx = {&tdx}, .w = d.w, .dw = dw_ref,
                       .buf = run_ref, .training = 1};
    ck_assert_int_eq(ops->forward(op, &a), DPT_OK);
    ck_assert_int_eq(ops->backward(op, &a), DPT_OK);
    ops->op_destroy(op);
    ops->destroy(be);

    float y[NX], dx[NX], run[2 * C], dw[2 * C];
    for (int k = 0; k < C; k++)
        run[k] = 0, run[C + k] = 1;
    run_sbn(&d, N, d.x, d.dy, y, dx, run, dw, sum_self, NULL);
    ck_assert_float_lt(maxdiff(y, y_ref, NX), 1e-5f);
    ck_assert_float_lt(maxdiff(dx, dx_ref, NX), 1e-5f);
    ck_assert_float_lt(maxdiff(run, run_ref, 2 * C), 1e-6f);
    ck_assert_float_lt(maxdiff(dw, dw_ref, 2 * C), 1e-4f);
}
END_TEST

START_TEST(dx_finite_differences)
{
    data_t d;
    make(&d);
    float y[NX], dx[NX], run[2 * C], dw[2 * C];
    run_sbn(&d, N, d.x, d.dy, y, dx, run, dw, sum_self, NULL);
    for (int i = 0; i < NX; i += 3) {
        double l[2];
        for (int s = 0; s < 2; s++) {
            float xp[NX], yp[NX], dxp[NX], dwp[2 * C];
            memcpy(xp, d.x, sizeof xp);
            xp[i] += s ? -1e-2f : 1e-2f;
            run_sbn(&d, N, xp, d.dy, yp, dxp, run, dwp, sum_self, NULL);
            l[s] = 0;
            for (int j = 0; j < NX; j++)
                l[s] += (double)yp[j] * d.dy[j];
        }
        double num = (l[0] - l[1]) / 2e-2;
        ck_assert_msg(fabs(num - dx[i]) < 2e-3 * fmax(1.0, fabs(num)), "dx[%d] %g vs %g", i,
                      (double)dx[i], num);
    }
}
END_TEST

/* two "ranks" as threads: sum through a shared slot and a barrier */
typedef struct pair {
    pthread_barrier_t bar;
    float slot[2][2 * C + 1];
    data_t d;
    float y[NX], dx[NX], run[2][2 * C], dw[2][2 * C];
} pair_t;
typedef struct rank_ctx {
    pair_t *p;
    int r;
} rank_ctx_t;

static dpt_status_t sum_pair(void *ctx, float *buf, size_t n)
{
    rank_ctx_t *rc = ctx;
    memcpy(rc->p->slot[rc->r], buf, n * sizeof *buf);
    pthread_barrier_wait(&rc->p->bar);
    for (size_t i = 0; i < n; i++)
        buf[i] = rc->p->slot[0][i] + rc->p->slot[1][i];   /* same order on both ranks */
    pthread_barrier_wait(&rc->p->bar);
    return DPT_OK;
}

static void *rank_main(void *arg)
{
    rank_ctx_t *rc = arg;
    pair_t *p = rc->p;
    size_t off = (size_t)rc->r * (NX / 2);
    for (int k = 0; k < C; k++)
        p->run[rc->r][k] = 0, p->run[rc->r][C + k] = 1;
    run_sbn(&p->d, N / 2, p->d.x + off, p->d.dy + off, p->y + off, p->dx + off, p->run[rc->r],
            p->dw[rc->r], sum_pair, rc);
    return NULL;
}

START_TEST(two_ranks_equal_one)
{
    static pair_t p;
    make(&p.d);
    pthread_barrier_init(&p.bar, NULL, 2);
    rank_ctx_t rc[2] = {{&p, 0}, {&p, 1}};
    pthread_t t[2];
    for (int r = 0; r < 2; r++)
        pthread_create(&t[r], NULL, rank_main, &rc[r]);
    for (int r = 0; r < 2; r++)
        pthread_join(t[r], NULL);
    pthread_barrier_destroy(&p.bar);
    float y[NX], dx[NX], run[2 * C], dw[2 * C];
    for (int k = 0; k < C; k++)
        run[k] = 0, run[C + k] = 1;
    run_sbn(&p.d, N, p.d.x, p.d.dy, y, dx, run, dw, sum_self, NULL);
    ck_assert_float_lt(maxdiff(y, p.y, NX), 1e-5f);
    ck_assert_float_lt(maxdiff(dx, p.dx, NX), 1e-5f);
    ck_assert_float_lt(maxdiff(run, p.run[0], 2 * C), 1e-6f);
    ck_assert_float_eq(maxdiff(p.run[0], p.run[1], 2 * C), 0.0f);
    for (int k = 0; k < 2 * C; k++)
        ck_assert_float_lt(fabsf(p.dw[0][k] + p.dw[1][k] - dw[k]), 1e-4f);
}
END_TEST

static Suite *sync_bn_suite(void)
{
    Suite *s = suite_create("sync_bn");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, matches_ref_backend);
    tcase_add_test(tc, dx_finite_differences);
    tcase_add_test(tc, two_ranks_equal_one);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(sync_bn_suite)
