/* check_compress_powersgd.c: the PowerSGD codec at 1-5 ranks on the in-process transport.
 * - a bucket whose matrices have rank <= r on every rank, with a column space the ranks share
 *   (so that their average has rank <= r too), comes back as the exact average (float
 *   tolerance), its vectors bit for bit as the plain average of small integers;
 * - every rank ends with the same bits, always;
 * - error feedback: the ranks' residuals plus p times the estimate are the sum of the inputs;
 * - all zeros stay zeros (no NaN from an all-zero column); a NaN shows in the result;
 * - a resume from the state after round 2 makes round 3 bit for bit as an uninterrupted run;
 * - --compress-start: the steps before it are the plain average and leave the state alone. */
#include <check.h>
#include <math.h>

#include "check_main.h"
#include "codec_ranks.h"

/* A bucket: a 12 x 20 matrix (compressed at r = 1, 2), a bias of 5, a 9 x 7 matrix (compressed
 * at r = 1 only: (9 + 7) * 2 * 2 > 63) and a bias of 3. */
static const dpt_codec_tensor_t T[4] = {{0, 12, 20}, {240, 1, 5}, {245, 9, 7}, {308, 1, 3}};
#define BUCKET_N 311

static job_t make(const char *codec, int p, int rounds)
{
    job_t j = {.codec = codec, .p = p, .n = BUCKET_N, .tensors = T, .n_tensors = 4,
               .rounds = rounds, .inputs_per_round = 1};
    size_t all = (size_t)p * j.n * (size_t)(rounds ? rounds : 1);
    j.in = dpt_malloc(all * sizeof(float));
    j.out = dpt_malloc((size_t)p * j.n * sizeof(float));
    j.res = dpt_malloc((size_t)p * 4 * j.n * sizeof(float));
    return j;
}

static void drop(job_t *j)
{
    dpt_free(j->in);
    dpt_free(j->out);
    dpt_free(j->res);
}

static void same_bits(const job_t *j)
{
    for (int r = 1; r < j->p; r++)
        ck_assert_msg(!memcmp(j->out, j->out + (size_t)r * j->n, j->n * sizeof(float)),
                      "%s np %d: rank %d's bits differ from rank 0's", j->codec, j->p, r);
}

/* Rank q's matrix (rows x cols at g) = U V_q^T with U shared (rows x rk), V_q its own. */
static void low_rank(float *g, size_t rows, size_t cols, int rk, int q, uint64_t seed)
{
    dpt_rng_t ru, rv;
    dpt_rng_init(&ru, seed, 1);
    dpt_rng_init(&rv, seed, 100 + (uint64_t)q);
    float u[64 * 4], v[64 * 4];
    for (size_t i = 0; i < rows * (size_t)rk; i++)
        u[i] = dpt_rng_normal(&ru);
    for (size_t i = 0; i < cols * (size_t)rk; i++)
        v[i] = dpt_rng_normal(&rv);
    for (size_t a = 0; a < rows; a++)
        for (size_t b = 0; b < cols; b++) {
            float x = 0;
            for (int k = 0; k < rk; k++)
                x += u[a * rk + k] * v[b * rk + k];
            g[a * cols + b] = x;
        }
}

/* _i: ranks 1-5 x r (1, 2) */
START_TEST(test_low_rank_exact)
{
    int p = 1 + _i % 5, r = 1 + _i / 5;
    job_t j = make(r == 1 ? "powersgd" : "powersgd:2", p, 1);
    for (int q = 0; q < p; q++) {
        float *g = j.in + (size_t)q * j.n;
        low_rank(g, 12, 20, r, q, 7);
        low_rank(g + 245, 9, 7, 1, q, 8);   /* rank 1: exact at r = 1, sent as is at r = 2 */
        for (int k = 0; k < 5; k++)
            g[240 + k] = (float)(q * 10 + k - 20);
        for (int k = 0; k < 3; k++)
            g[308 + k] = (float)(q - k);
    }
    run(&j);
    same_bits(&j);
    for (size_t i = 0; i < j.n; i++) {
        double sum = 0, abs_sum = 0;
        for (int q = 0; q < p; q++) {
            sum += j.in[(size_t)q * j.n + i];
            abs_sum += fabs(j.in[(size_t)q * j.n + i]);
        }
        int vec = (i >= 240 && i < 245) || i >= 308;
        if (vec)   /* small integers: the sum is exact, then one division */
            ck_assert_msg(j.out[i] == (float)sum / (float)p, "np %d r %d: bias element %zu: %g, "
                          "want %g", p, r, i, j.out[i], sum / p);
        else
            ck_assert_msg(fabs(j.out[i] - sum / p) <= 2e-4 * (1 + abs_sum / p),
                          "np %d r %d: element %zu: %.7g, exact mean %.7g", p, r, i, j.out[i],
                          sum / p);
    }
    drop(&j);
}
END_TEST

/* The residuals and the estimate account for every input: sum_q e_q + p * out = sum_q g_q
 * (full-rank random input, so the estimate really loses something). _i: ranks 1-5. */
START_TEST(test_error_feedback)
{
    int p = 1 + _i;
    job_t j = make("powersgd", p, 1);
    dpt_rng_t rng;
    dpt_rng_init(&rng, 11, (uint64_t)p);
    for (size_t i = 0; i < (size_t)p * j.n; i++)
        j.in[i] = dpt_rng_normal(&rng);
    run(&j);
    same_bits(&j);
    ck_assert_uint_eq(j.res_n, j.n + 20 + 7);   /* e, then Q of both matrices at r = 1 */
    double lost = 0;
    for (size_t i = 0; i < j.n; i++) {
        double sum = 0, acc = (double)p * j.out[i];
        for (int q = 0; q < p; q++) {
            sum += j.in[(size_t)q * j.n + i];
            acc += j.res[(size_t)q * j.res_n + i];
        }
        lost += fabs(sum - (double)p * j.out[i]);
        ck_assert_msg(fabs(acc - sum) <= 1e-4 * (1 + fabs(sum)), "np %d: element %zu: residuals "
                      "+ p * estimate = %.7g, inputs sum to %.7g", p, i, acc, sum);
    }
    ck_assert_msg(lost > 1, "np %d: a full-rank input came back nearly exact (lost %g)", p, lost);
    drop(&j);
}
END_TEST

/* Zeros (no NaN), a NaN (seen), and buckets without tensors of sizes 0, 1, p - 1, odd. */
START_TEST(test_adversarial)
{
    int p = 1 + _i;
    job_t j = make("powersgd:2", p, 3);
    memset(j.in, 0, (size_t)p * j.n * 3 * sizeof(float));
    run(&j);
    same_bits(&j);
    for (size_t i = 0; i < j.n; i++)
        ck_assert_msg(j.out[i] == 0.0f, "np %d zeros: element %zu is %g", p, i, j.out[i]);
    for (size_t i = 0; i < (size_t)p * j.res_n; i++)
        ck_assert_msg(isfinite(j.res[i]), "np %d zeros: state %zu is %g", p, i, j.res[i]);
    j.rounds = 1;
    j.in[(size_t)(p - 1) * j.n + 33] = NAN;   /* in the 12 x 20 matrix */
    run(&j);
    int nan = 0;
    for (size_t i = 0; i < j.n; i++)
        nan |= isnan(j.out[i]);
    ck_assert_msg(nan, "np %d: a NaN in a rank's gradients vanished", p);
    drop(&j);
    size_t sizes[4] = {0, 1, (size_t)(p > 1 ? p - 1 : 2), 1001};
    for (int k = 0; k < 4; k++) {   /* one vector (no tensors): sent as it is */
        job_t v = {.codec = "powersgd", .p = p, .n = sizes[k], .rounds = 1};
        v.in = dpt_malloc(((size_t)p * v.n + 1) * sizeof(float));
        v.out = dpt_malloc(((size_t)p * v.n + 1) * sizeof(float));
        for (size_t i = 0; i < (size_t)p * v.n; i++)
            v.in[i] = (float)(i % 17) - 8.0f;
        run(&v);
        same_bits(&v);
        for (size_t i = 0; i < v.n; i++) {
            float sum = 0;
            for (int q = 0; q < p; q++)
                sum += v.in[(size_t)q * v.n + i];
            ck_assert_msg(v.out[i] == sum / (float)p, "np %d n %zu: element %zu: %g", p, v.n, i,
                          v.out[i]);
        }
        dpt_free(v.in);
        dpt_free(v.out);
    }
}
END_TEST

/* Resume: rounds 0-2 in one run equal rounds 0-1, the state, then round 2 in a new codec. */
START_TEST(test_resume)
{
    int p = 1 + _i;
    job_t a = make("powersgd:2", p, 3), b = make("powersgd:2", p, 2);
    dpt_rng_t rng;
    dpt_rng_init(&rng, 13, (uint64_t)p);
    for (size_t i = 0; i < (size_t)p * a.n * 3; i++)
        a.in[i] = dpt_rng_normal(&rng);
    memcpy(b.in, a.in, (size_t)p * a.n * 2 * sizeof(float));
    run(&a);
    run(&b);
    job_t c = make("powersgd:2", p, 1);
    memcpy(c.in, a.in + (size_t)p * a.n * 2, (size_t)p * a.n * sizeof(float));
    c.state_in = b.res;
    c.state_n = b.res_n;
    c.first_step = 2;
    run(&c);
    ck_assert_msg(!memcmp(a.out, c.out, (size_t)p * a.n * sizeof(float)),
                  "np %d: the resumed round differs", p);
    ck_assert_msg(!memcmp(a.res, c.res, (size_t)p * a.res_n * sizeof(float)),
                  "np %d: the resumed state differs", p);
    drop(&a);
    drop(&b);
    drop(&c);
}
END_TEST

/* --compress-start 1: round 0 is the plain average and the state stays zero; round 1 is not. */
START_TEST(test_start_step)
{
    int p = 2 + _i;
    job_t j = make("powersgd", p, 1);
    j.start_step = 1;
    for (size_t i = 0; i < (size_t)p * j.n; i++)
        j.in[i] = (float)((i * 7) % 23) - 11.0f;
    run(&j);
    for (size_t i = 0; i < j.n; i++) {
        float sum = 0;
        for (int q = 0; q < p; q++)
            sum += j.in[(size_t)q * j.n + i];
        ck_assert_msg(j.out[i] == sum / (float)p, "np %d: element %zu before the start", p, i);
    }
    for (size_t i = 0; i < (size_t)p * j.res_n; i++)
        ck_assert_msg(j.res[i] == 0.0f, "np %d: state %zu changed before the start", p, i);
    j.first_step = 1;
    run(&j);
    float worst = 0;
    for (size_t i = 0; i < j.n; i++) {
        float sum = 0;
        for (int q = 0; q < p; q++)
            sum += j.in[(size_t)q * j.n + i];
        worst = fmaxf(worst, fabsf(j.out[i] - sum / (float)p));
    }
    ck_assert_msg(worst > 0, "np %d: the compressed step was exact on full-rank input", p);
    ck_assert_msg(j.bytes_sent > 0 || p == 1, "np %d: no bytes counted", p);
    drop(&j);
}
END_TEST

START_TEST(test_spec)
{
    ck_assert_int_eq(dpt_codec_check("powersgd"), DPT_OK);
    ck_assert_int_eq(dpt_codec_check("powersgd:4"), DPT_OK);
    ck_assert_int_eq(dpt_codec_check("powersgd:0"), DPT_ERR_INVALID_ARG);
    ck_assert_int_eq(dpt_codec_check("powersgd:x"), DPT_ERR_INVALID_ARG);
    ck_assert_int_eq(dpt_codec_check("powersgd:"), DPT_ERR_INVALID_ARG);
    ck_assert(dpt_codec_stateful("powersgd"));
    /* ratio: what both all-reduces carry over the bucket: 12x20 -> (12 + 20) * 1, 9x7 -> 16 */
    dpt_codec_t *c = NULL;
    ck_assert_int_eq(dpt_codec_create("powersgd", &(dpt_codec_bucket_t){.n = BUCKET_N, .ranks = 2,
                                      .tensors = T, .n_tensors = 4}, &c), DPT_OK);
    ck_assert(fabs(dpt_codec_ratio(c, BUCKET_N) - (32.0 + 16.0 + 8.0) / BUCKET_N) < 1e-12);
    dpt_codec_destroy(c);
}
END_TEST

static Suite *powersgd_suite(void)
{
    Suite *s = suite_create("compress_powersgd");
    TCase *tc = tcase_create("powersgd");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_low_rank_exact, 0, 10);
    tcase_add_loop_test(tc, test_error_feedback, 0, 5);
    tcase_add_loop_test(tc, test_adversarial, 0, 5);
    tcase_add_loop_test(tc, test_resume, 0, 5);
    tcase_add_loop_test(tc, test_start_step, 0, 4);
    tcase_add_test(tc, test_spec);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(powersgd_suite)
