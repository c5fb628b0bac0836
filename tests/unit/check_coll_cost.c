/* check_coll_cost.c: the alpha-beta-gamma model: formulas on hand-computed cases, the link fit
 * recovering known parameters, the choice at small and large sizes, and the cache file. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "dptrain/coll_cost.h"

static const dpt_coll_cost_t C = {.alpha = 10e-6, .beta = 1e-9, .gamma = 0.25e-9};

START_TEST(test_formulas)
{
    /* p = 4, n = 1 MB, unsegmented ring: 6 alpha + 1.5 n beta + 0.75 n gamma */
    double n = 1e6;
    double want = 6 * C.alpha + 1.5 * n * C.beta + 0.75 * n * C.gamma;
    ck_assert_double_eq_tol(dpt_coll_cost_predict("ring", 4, (size_t)n, 0, &C), want, 1e-12);
    /* rd at p = 4: 2 (alpha + n beta + n gamma) */
    want = 2 * (C.alpha + n * C.beta + n * C.gamma);
    ck_assert_double_eq_tol(dpt_coll_cost_predict("rd", 4, (size_t)n, 0, &C), want, 1e-12);
    /* rd at p = 5 adds the fold-in: 2 (alpha + n beta) + n gamma */
    want += 2 * (C.alpha + n * C.beta) + n * C.gamma;
    ck_assert_double_eq_tol(dpt_coll_cost_predict("rd", 5, (size_t)n, 0, &C), want, 1e-12);
    /* rhd at p = 8: 6 alpha + 1.75 n beta + 0.875 n gamma */
    want = 6 * C.alpha + 1.75 * n * C.beta + 0.875 * n * C.gamma;
    ck_assert_double_eq_tol(dpt_coll_cost_predict("rhd", 8, (size_t)n, 0, &C), want, 1e-12);
    /* segmenting the ring multiplies its messages: 1 MB / 4 ranks / 64 KB = 4 segments */
    ck_assert_double_gt(dpt_coll_cost_predict("ring", 4, (size_t)n, 65536, &C),
                        dpt_coll_cost_predict("ring", 4, (size_t)n, 0, &C));
    ck_assert_double_eq(dpt_coll_cost_predict("ring", 1, 1000, 0, &C), 0.0);
    ck_assert_double_eq(dpt_coll_cost_predict("tree", 4, 0, 0, &C), 0.0);
    ck_assert_double_lt(dpt_coll_cost_predict("bogus", 4, 100, 0, &C), 0.0);
}
END_TEST

START_TEST(test_fit)
{
    double xs[6], ys[6];
    for (int i = 0; i < 6; i++) {
        xs[i] = pow(8.0, i + 1);
        ys[i] = 3e-6 + xs[i] * 2e-10;
    }
    double a, b;
    ck_assert_int_eq(dpt_coll_cost_fit_link(xs, ys, 6, &a, &b), DPT_OK);
    ck_assert_double_eq_tol(a, 3e-6, 1e-12);
    ck_assert_double_eq_tol(b, 2e-10, 1e-16);
    double same[3] = {64, 64, 64};
    ck_assert_int_eq(dpt_coll_cost_fit_link(same, ys, 3, &a, &b), DPT_ERR_INVALID_ARG);
    ck_assert_int_eq(dpt_coll_cost_fit_link(xs, ys, 1, &a, &b), DPT_ERR_INVALID_ARG);
}
END_TEST

START_TEST(test_choose)
{
    const char *algos[] = {"ring", "tree", "rd", "rhd"};
    double pred = -1;
    /* tiny messages: latency wins, so a log-step algorithm */
    const char *small = dpt_coll_cost_choose(8, 64, 0, &C, algos, 4, &pred);
    ck_assert_ptr_nonnull(small);
    ck_assert(!strcmp(small, "rd") || !strcmp(small, "tree"));
    ck_assert_double_gt(pred, 0);
    /* large messages: bandwidth wins: ring or rhd */
    const char *large = dpt_coll_cost_choose(8, (size_t)64 << 20, 0, &C, algos, 4, &pred);
    ck_assert(!strcmp(large, "ring") || !strcmp(large, "rhd"));
    const char *none[] = {"x"};
    ck_assert_ptr_null(dpt_coll_cost_choose(8, 64, 0, &C, none, 1, NULL));
}
END_TEST

START_TEST(test_cache)
{
    char path[] = "/tmp/dpt_cost_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    dpt_coll_cost_t got;
    ck_assert_int_eq(dpt_coll_cost_load(path, "np4:hostA", &got), DPT_ERR_IO);
    ck_assert_int_eq(dpt_coll_cost_save(path, "np4:hostA", &C), DPT_OK);
    dpt_coll_cost_t other = {.alpha = 1, .beta = 2, .gamma = 3};
    ck_assert_int_eq(dpt_coll_cost_save(path, "np2:hostB", &other), DPT_OK);
    ck_assert_int_eq(dpt_coll_cost_load(path, "np4:hostA", &got), DPT_OK);
    ck_assert_double_eq_tol(got.alpha, C.alpha, 1e-15);
    ck_assert_double_eq_tol(got.beta, C.beta, 1e-18);
    ck_assert_int_eq(dpt_coll_cost_load(path, "np2:hostB", &got), DPT_OK);
    ck_assert_double_eq(got.gamma, 3);
    /* replacing a key keeps one line for it */
    ck_assert_int_eq(dpt_coll_cost_save(path, "np2:hostB", &C), DPT_OK);
    ck_assert_int_eq(dpt_coll_cost_load(path, "np2:hostB", &got), DPT_OK);
    ck_assert_double_eq_tol(got.alpha, C.alpha, 1e-15);
    FILE *f = fopen(path, "a");
    fputs("np8:broken 1e-6 nan\n", f);
    fclose(f);
    ck_assert_int_eq(dpt_coll_cost_load(path, "np8:broken", &got), DPT_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(dpt_error_get(), path));
    ck_assert_int_eq(dpt_coll_cost_save(path, "bad key", &C), DPT_ERR_INVALID_ARG);
    unlink(path);
}
END_TEST

/* The calibrated estimate: the measurement at a probed size, log-log in between, the model's
 * slope past the largest, the model alone for an algorithm without measurements; and the cache
 * round trip of a calibrated fit, with a damaged calibration line refused. */
START_TEST(test_calibration)
{
    dpt_coll_cost_t k = C;
    int ring = dpt_coll_cost_cal_index("ring"), rd = dpt_coll_cost_cal_index("rd");
    ck_assert_int_ge(ring, 0);
    ck_assert_int_ge(rd, 0);
    ck_assert_int_eq(dpt_coll_cost_cal_index("mpi"), -1);
    k.n_sizes = 3;
    k.sizes[0] = 1024, k.sizes[1] = 4096, k.sizes[2] = 16384;
    k.measured[ring][0] = 10e-6, k.measured[ring][1] = 40e-6, k.measured[ring][2] = 90e-6;
    /* rd measured only at the first two sizes (dropped from the ladder after) */
    k.measured[rd][0] = 5e-6, k.measured[rd][1] = 80e-6;
    ck_assert_double_eq_tol(dpt_coll_cost_estimate("ring", 4, 4096, 0, &k), 40e-6, 1e-15);
    /* 2048 is half-way in log between 1024 and 4096: the geometric mean */
    ck_assert_double_eq_tol(dpt_coll_cost_estimate("ring", 4, 2048, 0, &k), 20e-6, 1e-12);
    ck_assert_double_eq_tol(dpt_coll_cost_estimate("ring", 4, 16, 0, &k), 10e-6, 1e-15);
    double model = dpt_coll_cost_predict("rd", 4, 1 << 20, 0, &k);
    double at = dpt_coll_cost_predict("rd", 4, 4096, 0, &k);
    ck_assert_double_eq_tol(dpt_coll_cost_estimate("rd", 4, 1 << 20, 0, &k), 80e-6 * model / at,
                            1e-12);
    ck_assert_double_eq_tol(dpt_coll_cost_estimate("rhd", 4, 4096, 0, &k),
                            dpt_coll_cost_predict("rhd", 4, 4096, 0, &k), 1e-15);
    /* the choice follows the measurements, not the formulas */
    ck_assert_double_lt(dpt_coll_cost_estimate("rd", 4, 1024, 0, &k),
                        dpt_coll_cost_estimate("ring", 4, 1024, 0, &k));
    ck_assert_double_gt(dpt_coll_cost_estimate("rd", 4, 4096, 0, &k),
                        dpt_coll_cost_estimate("ring", 4, 4096, 0, &k));

    char path[] = "/tmp/dpt_cal_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(dpt_coll_cost_save(path, "mpi-np4-x", &k), DPT_OK);
    ck_assert_int_eq(dpt_coll_cost_save(path, "mpi-np4-x2", &C), DPT_OK);   /* a longer key */
    dpt_coll_cost_t got;
    ck_assert_int_eq(dpt_coll_cost_load(path, "mpi-np4-x", &got), DPT_OK);
    ck_assert_int_eq(got.n_sizes, 3);
    ck_assert_double_eq(got.sizes[2], 16384);
    ck_assert_double_eq_tol(got.measured[ring][2], 90e-6, 1e-12);
    ck_assert_double_eq(got.measured[rd][2], 0);
    ck_assert_int_eq(dpt_coll_cost_load(path, "mpi-np4-x2", &got), DPT_OK);
    ck_assert_int_eq(got.n_sizes, 0);   /* an uncalibrated entry */
    ck_assert_int_eq(dpt_coll_cost_save(path, "a@b", &C), DPT_ERR_INVALID_ARG);
    FILE *f = fopen(path, "a");
    fputs("mpi-np4-x@tree 1e-6 abc\n", f);
    fclose(f);
    ck_assert_int_eq(dpt_coll_cost_load(path, "mpi-np4-x", &got), DPT_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(dpt_error_get(), path));
    /* saving again replaces every line of the key, the damaged one too */
    ck_assert_int_eq(dpt_coll_cost_save(path, "mpi-np4-x", &k), DPT_OK);
    ck_assert_int_eq(dpt_coll_cost_load(path, "mpi-np4-x", &got), DPT_OK);
    unlink(path);
}
END_TEST

static Suite *coll_cost_suite(void)
{
    Suite *s = suite_create("coll_cost");
    TCase *tc = tcase_create("model");
    tcase_add_test(tc, test_formulas);
    tcase_add_test(tc, test_fit);
    tcase_add_test(tc, test_choose);
    tcase_add_test(tc, test_cache);
    tcase_add_test(tc, test_calibration);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(coll_cost_suite)
