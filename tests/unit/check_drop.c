/* check_drop.c: dropout and drop path. The ref kernel against float64 central differences
 * (a fixed mask: a linear map); the masks' statistics (the kept fraction within 5 standard
 * deviations of 1 - rate, kept values scaled by 1 / (1 - rate), drop path all or nothing per
 * sample); their independence from the batch split (a batch of 2B from position 0 and a batch
 * of B from position B give the second half the same masks: np 2 x B trains like np 1 x 2B) and
 * dependence on the seed, the layer and the position; inference is the identity; the cpu
 * backend equals ref through compare_op with plain and blocked inputs (a single element masked
 * differently would fail it); a rate outside [0, 1) is refused. */
#include <check.h>
#include <math.h>
#include <string.h>

#include "backend/ref/ref_kernels_drop.h"
#include "check_cpu_side.h"
#include "check_fd.h"
#include "check_main.h"
#include "dptrain/alloc.h"
#include "dptrain/backend.h"

typedef struct drop_ctx {
    int N, per_sample;
    long E;
    double *x, *y, *r;
} drop_ctx_t;

static double drop_loss(void *p)
{
    drop_ctx_t *c = p;
    dpt__ref_drop_f64(c->x, c->y, c->N, c->E, 0.3f, c->per_sample, 7, 2, 100);
    return fd_dot(c->y, c->r, (long)c->N * c->E);
}

START_TEST(test_drop_grad)
{
    dpt_rng_t r;
    dpt_rng_init(&r, 31, (uint64_t)_i);
    drop_ctx_t c = {.N = 5, .E = 37, .per_sample = _i};
    const long n = (long)c.N * c.E;
    c.x = fd_rand(&r, n, 1.0, 0.0);
    c.r = fd_rand(&r, n, 1.0, 0.0);
    c.y = fd_zeros(n);
    double *dx = fd_zeros(n);
    dpt__ref_drop_f64(c.r, dx, c.N, c.E, 0.3f, c.per_sample, 7, 2, 100);   /* backward */
    double e = fd_error(drop_loss, &c, c.x, n, dx);
    ck_assert_msg(e < 1e-6, "drop (per sample %d): rel err %g", _i, e);
    dpt_free(c.x);
    dpt_free(c.r);
    dpt_free(c.y);
    dpt_free(dx);
}
END_TEST

START_TEST(test_drop_masks)
{
    enum { N = 64, E = 4096 };
    const float p = 0.3f;
    float *x = dpt_malloc(N * E * sizeof(float)), *y = dpt_malloc(N * E * sizeof(float));
    float *z = dpt_malloc(N * E * sizeof(float));
    for (long i = 0; i < N * E; i++)
        x[i] = 1.0f + (float)(i % 7);
    /* dropout: the kept fraction and the scale */
    dpt__ref_drop_f32(x, y, N, E, p, 0, 1, 3, 0);
    long kept = 0;
    for (long i = 0; i < N * E; i++) {
        if (y[i] != 0) {
            kept++;
            ck_assert_float_eq_tol(y[i], x[i] / (1 - p), 1e-6f * y[i]);
        }
    }
    const double m = (double)N * E, sd = sqrt(m * p * (1 - p));
    ck_assert_msg(fabs((double)kept - m * (1 - p)) < 5 * sd, "kept %ld of %.0f", kept, m);
    /* the same samples at another split of the batch: the same masks */
    dpt__ref_drop_f32(x + (N / 2) * E, z, N / 2, E, p, 0, 1, 3, N / 2);
    ck_assert(!memcmp(z, y + (N / 2) * E, (N / 2) * E * sizeof(float)));
    /* another seed, layer or position: other masks */
    const uint64_t seeds[3] = {2, 1, 1}, pos[3] = {0, 0, 1};
    const uint32_t layers[3] = {3, 4, 3};
    for (int k = 0; k < 3; k++) {
        dpt__ref_drop_f32(x, z, N / 2, E, p, 0, seeds[k], layers[k], pos[k]);
        ck_assert_msg(memcmp(z, y, (N / 2) * E * sizeof(float)), "case %d: the same mask", k);
    }
    /* drop path: whole samples, at about the rate */
    enum { NS = 4000, ES = 3 };
    float *xs = dpt_malloc(NS * ES * sizeof(float)), *ys = dpt_malloc(NS * ES * sizeof(float));
    for (long i = 0; i < NS * ES; i++)
        xs[i] = 1.0f;
    dpt__ref_drop_f32(xs, ys, NS, ES, 0.2f, 1, 1, 5, 0);
    long samples = 0;
    for (int n = 0; n < NS; n++) {
        int k = (ys[n * ES] != 0) + (ys[n * ES + 1] != 0) + (ys[n * ES + 2] != 0);
        ck_assert_msg(k == 0 || k == ES, "sample %d partly dropped", n);
        samples += k == ES;
    }
    const double sds = sqrt(NS * 0.2 * 0.8);
    ck_assert_msg(fabs((double)samples - NS * 0.8) < 5 * sds, "kept %ld of %d samples", samples,
                  NS);
    dpt_free(x);
    dpt_free(y);
    dpt_free(z);
    dpt_free(xs);
    dpt_free(ys);
}
END_TEST

/* Through the ops API: inference copies; cpu equals ref in training and inference. */
START_TEST(test_drop_ops)
{
    const dpt_op_kind_t kinds[2] = {DPT_OP_DROPOUT, DPT_OP_DROP_PATH};
    for (int k = 0; k < 2; k++) {
        dpt_op_desc_t d = {.kind = kinds[k], .n_in = 1, .drop_rate = 0.4f, .rng_layer = 9};
        d.in[0] = dpt_tensor_shape(6, 20, 3, 5);
        if (dpt_backend_find("cpu")) {
            compare_op(&d, 0, 800 + (uint64_t)k);
            compare_op(&d, 1, 810 + (uint64_t)k);
        }
        const dpt_backend_ops_t *ref = dpt_backend_find("ref");
        dpt_backend_t *be;
        ck_assert_int_eq(ref->create(&(dpt_backend_config_t){0}, &be), DPT_OK);
        dpt_op_t *op;
        dpt_op_info_t info;
        ck_assert_int_eq(ref->op_create(be, &d, &op, &info), DPT_OK);
        float x[6 * 20 * 15], y[6 * 20 * 15];
        for (int i = 0; i < 6 * 20 * 15; i++)
            x[i] = (float)i;
        dpt_tensor_t tx = d.in[0], ty = info.out;
        tx.data = x;
        ty.data = y;
        dpt_op_args_t a = {.x = {&tx, NULL}, .y = &ty, .training = 0, .rng_seed = 3};
        ck_assert_int_eq(ref->forward(op, &a), DPT_OK);
        ck_assert(!memcmp(x, y, sizeof x));
        ref->op_destroy(op);
        d.drop_rate = 1.0f;   /* refused: nothing would be left */
        ck_assert_int_ne(ref->op_create(be, &d, &op, &info), DPT_OK);
        ck_assert_msg(strstr(dpt_error_get(), "rate"), "%s", dpt_error_get());
        ref->destroy(be);
    }
}
END_TEST

static Suite *drop_suite(void)
{
    Suite *s = suite_create("drop");
    TCase *tc = tcase_create("drop");
    tcase_add_loop_test(tc, test_drop_grad, 0, 2);
    tcase_add_test(tc, test_drop_masks);
    tcase_add_test(tc, test_drop_ops);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(drop_suite)
