/* check_compress.c: the gradient codecs on the in-process transport, one thread per rank, at
 * 1-5 ranks, on random and adversarial buckets (zeros, one huge value, a NaN, sizes 0, 1, p - 1,
 * odd and large): every rank ends with the same bits, and the result is the exact mean within
 * the codec's promise (fp16 / bf16: the 16-bit rounding of each rank's share and of each hop's
 * sum; beyond fp16's range: Inf of the right sign; a NaN anywhere: NaN there). */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "check_main.h"
#include "dptrain/alloc.h"
#include "dptrain/coll.h"
#include "dptrain/compress.h"
#include "dptrain/rng.h"
#include "codec_ranks.h"

/* _i: codec (fp16, bf16) x ranks 1-5 x input kind */
START_TEST(test_cast16)
{
    static const char *const names[2] = {"fp16", "bf16"};
    const char *codec = names[_i / (MAX_RANKS * IN_KINDS)];
    int p = 1 + (_i / IN_KINDS) % MAX_RANKS, kind = _i % IN_KINDS;
    const double unit = !strcmp(codec, "fp16") ? ldexp(1, -11) : ldexp(1, -8);   /* half ulp */
    const double fmax = !strcmp(codec, "fp16") ? 65504.0 : 3.38e38;
    size_t sizes[6] = {0, 1, (size_t)(p > 1 ? p - 1 : 2), 7, 1001, 4097};
    for (int k = 0; k < 6; k++) {
        job_t j = {.codec = codec, .p = p, .kind = kind, .n = sizes[k]};
        j.in = dpt_malloc(((size_t)p * j.n + 1) * sizeof(float));
        j.out = dpt_malloc(((size_t)p * j.n + 1) * sizeof(float));
        fill(&j, 100 + (uint64_t)k);
        run(&j);
        for (int r = 1; r < p; r++)
            ck_assert_msg(!memcmp(j.out, j.out + (size_t)r * j.n, j.n * sizeof(float)),
                          "%s np %d n %zu: rank %d's bits differ from rank 0's", codec, p, j.n, r);
        for (size_t i = 0; i < j.n; i++) {
            double sum = 0, abs_sum = 0;
            int nan = 0;
            for (int r = 0; r < p; r++) {
                double x = j.in[(size_t)r * j.n + i];
                nan |= isnan(x);
                sum += x;
                abs_sum += fabs(x);
            }
            double mean = sum / p, got = j.out[i];
            if (nan) {
                ck_assert_msg(isnan(got), "%s np %d: element %zu: NaN in, %g out", codec, p, i, got);
                continue;
            }
            if (fabs(mean) > fmax) {
                ck_assert_msg(isinf(got) && (got > 0) == (mean > 0), "%s np %d: %g out of range, "
                              "got %g", codec, p, mean, got);
                continue;
            }
            /* each share rounded once, then one rounding per hop: p + 1 roundings at most, each
             * within half an ulp of values no larger than the sum of |shares| (plus fp16's
             * subnormal step) */
            double tol = (p + 1) * unit * 2 * (abs_sum / p) + (p + 1) * ldexp(1, -24);
            ck_assert_msg(fabs(got - mean) <= tol, "%s np %d n %zu kind %d: element %zu: %.9g, "
                          "exact mean %.9g (tolerance %.3g)", codec, p, j.n, kind, i, got, mean,
                          tol);
        }
        dpt_free(j.in);
        dpt_free(j.out);
    }
}
END_TEST

/* topk: at np 1-5 with small integers (every sum exact): the ranks agree bit for bit; each rank
 * sent at most k entries and kept the rest (sent + residual = its input, exactly); what it sent
 * are its largest |entries|; the result is the rank-order sum of what was sent, / p; a second
 * step sends what the first kept back. _i: ranks 1-5 x fraction (0.01, 0.1, 0.3). */
START_TEST(test_topk)
{
    static const char *const specs[3] = {"topk:0.01", "topk:0.1", "topk:0.3"};
    static const double fracs[3] = {0.01, 0.1, 0.3};
    int p = 1 + _i % MAX_RANKS;
    job_t j = {.codec = specs[_i / MAX_RANKS], .p = p, .n = 1001, .rounds = 1};
    size_t k = (size_t)ceil(fracs[_i / MAX_RANKS] * (double)j.n);
    int dense = (size_t)p * k >= j.n;
    j.in = dpt_malloc((size_t)p * j.n * sizeof(float));
    j.out = dpt_malloc((size_t)p * j.n * sizeof(float));
    j.res = dpt_malloc((size_t)p * j.n * sizeof(float));
    dpt_rng_t r;
    dpt_rng_init(&r, 5, (uint64_t)_i);
    for (size_t i = 0; i < (size_t)p * j.n; i++)
        j.in[i] = (float)((int)dpt_rng_below(&r, 2001) - 1000);
    run(&j);
    for (int q = 1; q < p; q++)
        ck_assert(!memcmp(j.out, j.out + (size_t)q * j.n, j.n * sizeof(float)));
    float *want = dpt_calloc(j.n * sizeof(float));
    for (int q = 0; q < p; q++) {
        const float *g = j.in + (size_t)q * j.n, *e = j.res + (size_t)q * j.n;
        size_t sent = 0;
        float min_sent = INFINITY, max_kept = 0;
        for (size_t i = 0; i < j.n; i++) {
            float s = g[i] - e[i];   /* exact: e[i] is 0 or g[i] */
            ck_assert_msg(e[i] == 0 || e[i] == g[i], "rank %d: residual %g of %g", q, e[i], g[i]);
            if (e[i] == 0 && g[i] != 0) {
                sent++;
                if (fabsf(s) < min_sent)
                    min_sent = fabsf(s);
            } else if (fabsf(e[i]) > max_kept) {
                max_kept = fabsf(e[i]);
            }
            want[i] += s;
        }
        if (dense) {
            ck_assert_msg(max_kept == 0, "rank %d: dense fallback kept %g back", q, max_kept);
        } else {
            ck_assert_msg(sent <= k, "rank %d sent %zu > k = %zu", q, sent, k);
            ck_assert_msg(min_sent >= max_kept, "rank %d: sent %g but kept %g", q, min_sent,
                          max_kept);
        }
    }
    for (size_t i = 0; i < j.n; i++)
        ck_assert_msg(j.out[i] == want[i] / (float)p, "np %d %s: element %zu: %g, want %g", p,
                      j.codec, i, j.out[i], want[i] / (float)p);
    dpt_free(want);
    dpt_free(j.in);
    dpt_free(j.out);
    dpt_free(j.res);
}
END_TEST

START_TEST(test_names)
{
    ck_assert_int_eq(dpt_codec_check("none"), DPT_OK);
    ck_assert_int_eq(dpt_codec_check("fp16"), DPT_OK);
    ck_assert_int_eq(dpt_codec_check("bf16"), DPT_OK);
    ck_assert_int_eq(dpt_codec_check("zstd"), DPT_ERR_INVALID_ARG);
    ck_assert_msg(strstr(dpt_error_get(), "none,fp16,bf16,topk"), "%s", dpt_error_get());
    ck_assert_int_eq(dpt_codec_check("fp16:3"), DPT_ERR_INVALID_ARG);
    ck_assert_int_eq(dpt_codec_check("topk:0.05"), DPT_OK);
    ck_assert_int_eq(dpt_codec_check("topk"), DPT_ERR_INVALID_ARG);
    ck_assert_int_eq(dpt_codec_check("topk:0"), DPT_ERR_INVALID_ARG);
    ck_assert_int_eq(dpt_codec_check("topk:1.5"), DPT_ERR_INVALID_ARG);
    ck_assert(dpt_codec_stateful("topk:0.1") && !dpt_codec_stateful("fp16"));
    dpt_codec_t *c = (dpt_codec_t *)1;
    ck_assert_int_eq(dpt_codec_create("none", &(dpt_codec_bucket_t){.n = 10, .ranks = 2}, &c), DPT_OK);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(dpt_codec_create("bf16", &(dpt_codec_bucket_t){.n = 10, .ranks = 2}, &c), DPT_OK);
    ck_assert(dpt_codec_ratio(c, 10) == 0.5);
    dpt_codec_destroy(c);
}
END_TEST

static Suite *compress_suite(void)
{
    Suite *s = suite_create("compress");
    TCase *tc = tcase_create("codecs");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_cast16, 0, 2 * MAX_RANKS * IN_KINDS);
    tcase_add_loop_test(tc, test_topk, 0, 3 * MAX_RANKS);
    tcase_add_test(tc, test_names);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(compress_suite)
