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

/* topk with DGC's momentum correction (m = 0.5; small integers and halves: every sum exact).
 * Sparse (topk:0.1 on 1001): from a given state (v, u), one step makes u = m u + g and v = v + u;
 * what a rank sent plus its new v is that v, exactly; u is zeroed where v was sent and kept
 * elsewhere; the result is the rank-order sum of what was sent, / p. Dense (topk:0.6 at np 2-5:
 * p k >= n): three steps are plain momentum SGD (v = u, all of it sent, u never masked).
 * _i: ranks 1-5 x (sparse, dense, sparse Nesterov). */
START_TEST(test_topk_momentum)
{
    int p = 1 + _i % MAX_RANKS, mode = _i / MAX_RANKS;
    const float m = 0.5f;
    const int dense = mode == 1 && p > 1, nest = mode == 2;
    job_t j = {.codec = dense ? "topk:0.6" : "topk:0.1", .p = p, .n = 1001,
               .rounds = dense ? 3 : 1, .inputs_per_round = 1, .momentum = m, .nesterov = nest};
    const size_t n = j.n, rounds = (size_t)(dense ? 3 : 1);
    j.in = dpt_malloc(rounds * (size_t)p * n * sizeof(float));
    j.out = dpt_malloc((size_t)p * n * sizeof(float));
    j.res = dpt_malloc((size_t)p * 2 * n * sizeof(float));
    float *st = dpt_malloc((size_t)p * 2 * n * sizeof(float));
    dpt_rng_t r;
    dpt_rng_init(&r, 9, (uint64_t)_i);
    for (size_t i = 0; i < rounds * (size_t)p * n; i++)
        j.in[i] = (float)((int)dpt_rng_below(&r, 201) - 100);
    for (size_t i = 0; i < (size_t)p * 2 * n; i++)   /* v and u: halves */
        st[i] = dense ? 0.0f : (float)((int)dpt_rng_below(&r, 41) - 20) * 0.5f;
    j.state_in = st;
    j.state_n = 2 * n;
    run(&j);
    ck_assert_uint_eq(j.res_n, 2 * n);
    for (int q = 1; q < p; q++)
        ck_assert(!memcmp(j.out, j.out + (size_t)q * n, n * sizeof(float)));
    float *want = dpt_calloc(n * sizeof(float));
    for (int q = 0; q < p; q++) {
        const float *v0 = st + (size_t)q * 2 * n, *u0 = v0 + n;
        const float *v1 = j.res + (size_t)q * 2 * n, *u1 = v1 + n;
        if (dense) {   /* momentum SGD over the rounds: u = m u + g, sent u */
            for (size_t i = 0; i < n; i++) {
                float u = 0;
                for (size_t k = 0; k < rounds; k++)
                    u = m * u + j.in[(k * (size_t)p + (size_t)q) * n + i];
                ck_assert_msg(u1[i] == u && v1[i] == 0, "np %d rank %d dense: element %zu: u %g "
                              "(want %g), v %g", p, q, i, u1[i], u, v1[i]);
                want[i] += u;
            }
            continue;
        }
        const float *g = j.in + (size_t)q * n;
        for (size_t i = 0; i < n; i++) {
            float u = nest ? m * (u0[i] + g[i]) : m * u0[i] + g[i];
            float v = nest ? v0[i] + u + g[i] : v0[i] + u;
            int sent = v1[i] == 0 && v != 0;
            ck_assert_msg(v1[i] == 0 || v1[i] == v, "np %d rank %d: v %g of %g", p, q, v1[i], v);
            ck_assert_msg(u1[i] == (sent ? 0.0f : u), "np %d rank %d: element %zu %s: u %g, "
                          "want %g", p, q, i, sent ? "sent" : "kept", u1[i], sent ? 0.0f : u);
            want[i] += v - v1[i];
        }
    }
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(j.out[i] == want[i] / (float)p, "np %d mode %d: element %zu: %g, want %g",
                      p, mode, i, j.out[i], want[i] / (float)p);
    dpt_free(want);
    dpt_free(st);
    dpt_free(j.in);
    dpt_free(j.out);
    dpt_free(j.res);
}
END_TEST

/* The sparsity warm-up: over 10 steps, k falls from ceil(0.25 n) to ceil(0.01 n) geometrically
 * (what the all-gather carried tells k); from step 10 on it is the fraction's. _i: ranks 2-5. */
START_TEST(test_topk_warmup)
{
    int p = 2 + _i;
    const size_t n = 4000;
    long steps[4] = {0, 5, 10, 50};
    double d[4] = {0.25, 0.25 * sqrt(0.01 / 0.25), 0.01, 0.01};
    for (int s = 0; s < 4; s++) {
        job_t j = {.codec = "topk:0.01", .p = p, .n = n, .rounds = 1, .warmup_steps = 10,
                   .first_step = steps[s]};
        j.in = dpt_malloc((size_t)p * n * sizeof(float));
        j.out = dpt_malloc((size_t)p * n * sizeof(float));
        for (size_t i = 0; i < (size_t)p * n; i++)
            j.in[i] = (float)(i % 97) + 1.0f;
        run(&j);
        size_t k = (size_t)ceil(d[s] * (double)n);
        double bytes = (double)(p - 1) * (double)k * 8.0;
        if ((size_t)p * k >= n)
            bytes = (double)n * 4.0 * 2.0 * (p - 1) / p;   /* the dense fallback */
        ck_assert_msg(j.bytes_sent == bytes, "np %d step %ld: %.0f bytes sent, want %.0f (k %zu)",
                      p, steps[s], j.bytes_sent, bytes, k);
        dpt_free(j.in);
        dpt_free(j.out);
    }
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
    ck_assert(dpt_codec_owns_momentum("topk:0.1") && !dpt_codec_owns_momentum("powersgd"));
    ck_assert(dpt_codec_owns_momentum("topk:0.1+zstd") && dpt_codec_stateful("topk:0.1+zstd"));
    ck_assert_int_eq(dpt_codec_check("powersgd+zstd"), DPT_ERR_INVALID_ARG);
    ck_assert_msg(strstr(dpt_error_get(), "does not take +zstd"), "%s", dpt_error_get());
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
    tcase_add_loop_test(tc, test_topk_momentum, 0, 3 * MAX_RANKS);
    tcase_add_loop_test(tc, test_topk_warmup, 0, MAX_RANKS - 1);
    tcase_add_test(tc, test_names);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(compress_suite)
