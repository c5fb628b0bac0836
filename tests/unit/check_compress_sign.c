/* check_compress_sign.c: the "sign" codec (src/compress/sign.c) on the in-process transport,
 * one thread per rank, at 1-5 ranks. The reference below replays the scheme as documented (its
 * own chunking and arithmetic, none of the codec's code): worker acc = g + e_w, per segment (a
 * chunk's run of one tensor: the whole chunk without tensors) scale = mean |acc| (double sum in index order, rounded once; NaN if not finite; 0 if empty), decoded
 * +scale for acc >= 0 and -scale below, e_w = acc - decoded (left alone for a NaN scale); server
 * s = fp32(rank-order double sum of the decoded chunks / p) + e_s, coded the same way, e_s = s -
 * decoded; the result is the decoded server chunks. Checked: every rank's bits agree and equal
 * the reference, and so do the states [e_w | e_s at the rank's chunk, zeros elsewhere]; a NaN
 * makes its whole chunk NaN and leaves its residuals alone; decoded + e_w is acc within one
 * rounding; over many rounds p * sum(results) + sum(e_w) + p * e_s tracks the sum of the
 * inputs; elements that are always 0 keep bounded residuals; the bytes sent are the two
 * phases' (p - 1) padded payloads; a restored state and a shorter call follow the scheme; a
 * checkpoint's worth of state is 2n floats on any rank count. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check_main.h"
#include "dptrain/alloc.h"
#include "dptrain/compress.h"
#include "dptrain/rng.h"
#include "codec_ranks.h"

/* ck_assert_msg records a mark point per call: per-element checks only call Check on failure. */
#define EXPECT(cond, ...)                                                                      \
    do {                                                                                       \
        if (!(cond))                                                                           \
            ck_abort_msg(__VA_ARGS__);                                                         \
    } while (0)

/* ---- the reference -------------------------------------------------------------------------- */

/* chunk j of n floats over p ranks: the first n % p chunks hold one more */
static void chunk_of(size_t n, int p, int j, size_t *off, size_t *len)
{
    size_t q = n / (size_t)p, extra = n % (size_t)p, uj = (size_t)j;
    *off = uj * q + (uj < extra ? uj : extra);
    *len = q + (uj < extra);
}

/* bytes of one chunk's payload: ceil(longest chunk / 8) bytes of bits + the fp32 scale */
static size_t payload_of(size_t n, int p)
{
    size_t longest = n / (size_t)p + (n % (size_t)p != 0);
    return (longest + 7) / 8 + 4;
}

static float ref_scale(const float *x, size_t len)
{
    double sum = 0;
    for (size_t i = 0; i < len; i++)
        sum += fabs((double)x[i]);
    if (!isfinite(sum))
        return NAN;
    return len ? (float)(sum / (double)len) : 0.0f;
}

typedef struct ref {
    int p;
    size_t n;
    float *ew, *acc, *dec;   /* p x n: worker residuals, this step's acc and decoded values */
    float *es, *s, *out;     /* n: server residual (chunk j: rank j's), s, the result */
    float *sw, *ss;          /* this step's scales: worker [rank * p + chunk], server [chunk]:
                                the largest of the chunk's segments', NaN if one is NaN */
    size_t *tensor;          /* n: which tensor element i is in (all 0: one vector) */
} ref_t;

static void ref_init(ref_t *R, int p, size_t n)
{
    size_t pn = (size_t)p * n + 1;
    *R = (ref_t){.p = p, .n = n};
    R->ew = dpt_calloc(pn * sizeof(float));
    R->acc = dpt_calloc(pn * sizeof(float));
    R->dec = dpt_calloc(pn * sizeof(float));
    R->es = dpt_calloc((n + 1) * sizeof(float));
    R->s = dpt_calloc((n + 1) * sizeof(float));
    R->out = dpt_calloc((n + 1) * sizeof(float));
    R->sw = dpt_calloc((size_t)p * (size_t)p * sizeof(float));
    R->ss = dpt_calloc((size_t)p * sizeof(float));
    R->tensor = dpt_calloc((n + 1) * sizeof(size_t));
}

/* The bucket's tensors, as the codec was given them (offset order, covering [0, n)), and
 * sign:BLOCK's blocks (0: none): a segment is a run of one tensor and one block. */
static void ref_tensors(ref_t *R, const dpt_codec_tensor_t *t, int nt, size_t block)
{
    for (size_t i = 0; i < R->n; i++) {
        size_t k = 0;
        for (int m = 0; m < nt; m++)
            k += t[m].off <= i;
        R->tensor[i] = k * (R->n + 1) + (block ? i / block : 0);
    }
}

static void ref_free(ref_t *R)
{
    dpt_free(R->ew);
    dpt_free(R->acc);
    dpt_free(R->dec);
    dpt_free(R->es);
    dpt_free(R->s);
    dpt_free(R->out);
    dpt_free(R->sw);
    dpt_free(R->ss);
    dpt_free(R->tensor);
}

/* Code x[off, off + len) (bucket positions) segment by segment: dec = +-scale, res = x - dec
 * where the segment's scale is not NaN; returns the largest scale (NaN if any). */
static float ref_code(const ref_t *R, const float *x, size_t off, size_t len, float *dec,
                      float *res)
{
    float most = 0;
    for (size_t a = off, b; a < off + len; a = b) {
        for (b = a; b < off + len && R->tensor[b] == R->tensor[a]; b++)
            ;
        float sc = ref_scale(x + a, b - a);
        most = isnan(sc) || isnan(most) ? NAN : fmaxf(most, sc);
        for (size_t i = a; i < b; i++) {
            dec[i] = x[i] >= 0 ? sc : -sc;
            if (!isnan(sc))
                res[i] = x[i] - dec[i];
        }
    }
    return most;
}

/* The most segments of one chunk (at least 1): the payload's scales. */
static size_t ref_scales(const ref_t *R)
{
    size_t most = 1, off, len;
    for (int j = 0; j < R->p; j++) {
        chunk_of(R->n, R->p, j, &off, &len);
        size_t segs = len > 0;
        for (size_t i = off + 1; i < off + len; i++)
            segs += R->tensor[i] != R->tensor[i - 1];
        most = segs > most ? segs : most;
    }
    return most;
}

/* One step on the inputs g (p x n, rank r's at r * n). */
static void ref_step(ref_t *R, const float *g)
{
    const int p = R->p;
    const size_t n = R->n;
    size_t off, len;
    for (int r = 0; r < p; r++) {
        float *acc = R->acc + (size_t)r * n, *dec = R->dec + (size_t)r * n;
        float *ew = R->ew + (size_t)r * n;
        for (size_t i = 0; i < n; i++)
            acc[i] = g[(size_t)r * n + i] + ew[i];
        for (int j = 0; j < p; j++) {
            chunk_of(n, p, j, &off, &len);
            R->sw[r * p + j] = ref_code(R, acc, off, len, dec, ew);
        }
    }
    for (int j = 0; j < p; j++) {
        chunk_of(n, p, j, &off, &len);
        for (size_t i = off; i < off + len; i++) {
            double sum = 0;
            for (int r = 0; r < p; r++)
                sum += R->dec[(size_t)r * n + i];
            R->s[i] = (float)(sum / p) + R->es[i];
        }
        R->ss[j] = ref_code(R, R->s, off, len, R->out, R->es);
    }
}

static int same(float a, float b)
{
    return (isnan(a) && isnan(b)) || !memcmp(&a, &b, sizeof a);
}

/* The job's outputs (every rank's) and states against the reference after the same steps. */
static void check_against(const job_t *j, const ref_t *R, const char *what)
{
    const int p = j->p;
    const size_t n = j->n;
    for (int r = 0; r < p; r++)
        for (size_t i = 0; i < n; i++)
            EXPECT(same(j->out[(size_t)r * n + i], R->out[i]), "%s np %d n %zu: rank %d element "
                   "%zu: %a, reference %a", what, p, n, r, i, j->out[(size_t)r * n + i],
                   R->out[i]);
    if (!j->res)
        return;
    ck_assert_uint_eq(j->res_n, 2 * n);
    for (int r = 0; r < p; r++) {
        const float *st = j->res + (size_t)r * 2 * n;
        size_t off, len;
        chunk_of(n, p, r, &off, &len);
        for (size_t i = 0; i < n; i++) {
            EXPECT(same(st[i], R->ew[(size_t)r * n + i]), "%s np %d n %zu: rank %d's e_w[%zu] "
                   "%a, reference %a", what, p, n, r, i, st[i], R->ew[(size_t)r * n + i]);
            float want = i >= off && i < off + len ? R->es[i] : 0.0f;
            EXPECT(same(st[n + i], want), "%s np %d n %zu: rank %d's e_s[%zu] %a, want %a", what,
                   p, n, r, i, st[n + i], want);
        }
    }
}

static job_t new_job(int p, size_t n, int rounds, int per_round)
{
    size_t inputs = (size_t)p * n * (size_t)(per_round ? rounds : 1) + 1;
    job_t j = {.codec = "sign:0", .p = p, .n = n, .rounds = rounds, .inputs_per_round = per_round};
    j.in = dpt_malloc(inputs * sizeof(float));
    j.out = dpt_malloc(((size_t)p * n + 1) * sizeof(float));
    j.res = dpt_malloc(((size_t)p * 2 * n + 1) * sizeof(float));
    return j;
}

static void free_job(job_t *j)
{
    dpt_free(j->in);
    dpt_free(j->out);
    dpt_free(j->res);
}

/* The bytes one call sends per rank: the all-to-all's and the all-gather's p - 1 payloads. */
static double call_bytes(size_t n, int p)
{
    return n ? 2.0 * (p - 1) * (double)payload_of(n, p) : 0.0;
}

/* ---- tests ---------------------------------------------------------------------------------- */

/* _i: ranks 1-5 x input kind (random, zeros, one huge value, a NaN); two steps each (the state
 * carried), sizes 0, 1, p - 1, 7, 1001, 4097. */
START_TEST(test_sign)
{
    int p = 1 + _i / IN_KINDS, kind = _i % IN_KINDS;
    size_t sizes[6] = {0, 1, (size_t)(p > 1 ? p - 1 : 2), 7, 1001, 4097};
    for (int k = 0; k < 6; k++) {
        job_t j = new_job(p, sizes[k], 2, 0);
        j.kind = kind;
        const size_t n = j.n;
        fill(&j, 300 + (uint64_t)k);
        run(&j);
        for (int r = 1; r < p; r++)
            ck_assert_msg(!memcmp(j.out, j.out + (size_t)r * n, n * sizeof(float)),
                          "sign np %d n %zu kind %d: rank %d's bits differ from rank 0's", p, n,
                          kind, r);
        ref_t R;
        ref_init(&R, p, n);
        ref_step(&R, j.in);
        for (size_t i = 0; kind != IN_NAN && i < n; i++)   /* step 1 is finite */
            EXPECT(isfinite(R.out[i]), "sign np %d n %zu kind %d: step 1 element %zu is %g", p,
                   n, kind, i, R.out[i]);
        ref_step(&R, j.in);
        check_against(&j, &R, "sign");
        /* a chunk with a NaN input is NaN through and through, every other chunk finite; the
         * NaN chunk's residuals are what they were (zero: first step). The huge value
         * (0.9 * 3e38 / p) comes twice: its chunk's second acc, g + e_w, may overflow, and
         * then that chunk is NaN too (non-finite acc: the same policy). */
        size_t at = kind == IN_NAN ? n - 1 : (size_t)(p - 1) * n + n / 2;
        for (int c = 0; c < p; c++) {
            size_t off, len;
            chunk_of(n, p, c, &off, &len);
            int here = n && at % n >= off && at % n < off + len;
            int nan_in = here && (kind == IN_NAN || (kind == IN_HUGE && isnan(R.ss[c])));
            for (size_t i = off; i < off + len; i++) {
                EXPECT(nan_in ? isnan(j.out[i]) : isfinite(j.out[i]), "sign np %d n %zu kind %d:"
                       " element %zu of chunk %d is %g", p, n, kind, i, c, j.out[i]);
                if (nan_in && kind == IN_NAN)
                    EXPECT(j.res[i] == 0 && j.res[(size_t)c * 2 * n + n + i] == 0,
                           "sign np %d n %zu: the NaN chunk's residuals moved", p, n);
                if (kind == IN_ZEROS)   /* scale 0: +0 out, residuals exactly 0 */
                    EXPECT(!memcmp(&j.out[i], &(float){0.0f}, sizeof(float)) && j.res[i] == 0,
                           "sign np %d n %zu: zeros in, %g out", p, n, j.out[i]);
            }
        }
        double want = 2 * call_bytes(n, p);
        ck_assert_msg(j.bytes_sent == want, "sign np %d n %zu: %.0f bytes sent, want %.0f", p, n,
                      j.bytes_sent, want);
        /* the nominal 2 (p - 1) / p * n / 8 per call, plus each payload's scale and at most one
         * byte of padding per payload (from the longest chunk's rounding to bits) */
        ck_assert(want <= 2 * (2.0 * (p - 1) / p * n / 8 + 2.0 * (p - 1) * 5.125));
        ref_free(&R);
        free_job(&j);
    }
}
END_TEST

/* Error feedback, one step from a zero state: what rank r's chunk decodes to (its scale from
 * the inputs alone) plus the residual it kept is its gradient, within the one rounding of
 * e_w = acc - decoded (|error| <= 2^-24 |acc - decoded|). _i: ranks 1-5. */
START_TEST(test_sign_feedback)
{
    int p = 1 + _i;
    job_t j = new_job(p, 1001, 1, 0);
    fill(&j, 77);
    run(&j);
    for (int r = 0; r < p; r++)
        for (int c = 0; c < p; c++) {
            size_t off, len;
            chunk_of(j.n, p, c, &off, &len);
            const float *g = j.in + (size_t)r * j.n, *e = j.res + (size_t)r * 2 * j.n;
            float sc = ref_scale(g + off, len);
            ck_assert(sc > 0 && isfinite(sc));
            for (size_t i = off; i < off + len; i++) {
                double d = g[i] >= 0 ? sc : -sc, exact = (double)g[i] - d;
                EXPECT(fabs(d + e[i] - g[i]) <= ldexp(fabs(exact), -24), "np %d rank %d element"
                       " %zu: decoded %g + residual %g != %g", p, r, i, d, e[i], g[i]);
            }
        }
    free_job(&j);
}
END_TEST

/* Over R steps of fresh inputs: p * (sum of the results) + (sum over ranks of e_w) + p * e_s
 * equals the sum of all inputs up to rounding (nothing is lost, only delayed), and every step's
 * result equals the reference's. The results come from jobs of 1..R steps. _i: ranks 1-5. */
START_TEST(test_sign_tracks)
{
    enum { R_STEPS = 10 };
    int p = 1 + _i;
    const size_t n = 1001;
    double *sum_out = dpt_calloc(n * sizeof(double)), *sum_in = dpt_calloc(n * sizeof(double));
    job_t j = new_job(p, n, R_STEPS, 1);
    dpt_rng_t rng;
    dpt_rng_init(&rng, 11, (uint64_t)p);
    float gmax = 0;
    for (size_t i = 0; i < (size_t)R_STEPS * p * n; i++) {
        j.in[i] = dpt_rng_normal(&rng) * 0.01f * (float)(1 + i % 7);
        gmax = fmaxf(gmax, fabsf(j.in[i]));
        sum_in[i % n] += j.in[i];
    }
    ref_t R;
    ref_init(&R, p, n);
    for (int t = 1; t <= R_STEPS; t++) {
        j.rounds = t;
        j.bytes_sent = 0;
        run(&j);
        ref_step(&R, j.in + (size_t)(t - 1) * p * n);
        check_against(&j, &R, "sign (steps)");
        for (size_t i = 0; i < n; i++)
            sum_out[i] += j.out[i];
        ck_assert(j.bytes_sent == t * call_bytes(n, p));
    }
    for (size_t i = 0; i < n; i++) {
        double pending = 0;
        for (int r = 0; r < p; r++)   /* e_s is non-zero only in its owner's state */
            pending += j.res[(size_t)r * 2 * n + i] + (double)p * j.res[(size_t)r * 2 * n + n + i];
        double got = p * sum_out[i] + pending;
        /* each step rounds acc, e_w, s and e_s once per rank, all below a few gmax: R * p * 8
         * roundings of 2^-24 * 4 gmax is far below what dropping a residual would cost */
        double tol = R_STEPS * p * 8 * ldexp(4 * gmax, -24);
        EXPECT(fabs(got - sum_in[i]) <= tol, "np %d element %zu: p * results + residuals %.9g, "
               "inputs %.9g (tolerance %.3g)", p, i, got, sum_in[i], tol);
    }
    ref_free(&R);
    free_job(&j);
    dpt_free(sum_out);
    dpt_free(sum_in);
}
END_TEST

/* Elements that are always exactly 0 (the first quarter of the bucket and every even index),
 * 200 steps: the codec's end state equals the reference's, and in the reference at every step:
 *  - a zero element's e_w is no larger than the largest scale its chunk has had (its acc is e,
 *    and e' = e - sign(e) * scale, so |e'| <= max(|e|, scale): proved, not measured);
 *  - no scale exceeds max |g| (a scale is a chunk's mean |acc|: about 0.2 max |g| here), so a
 *    zero element's e_w and e_s stay below max |g|;
 *  - every residual stays below 8 max |g|: a non-zero element's residual is a random walk
 *    pulled back by one scale a step (about 2 max |g| at most here); one that grew with the
 *    steps (by a scale each, say) would pass it long before step 200;
 *  - a chunk of zeros only stays exactly 0 (scale 0). _i: ranks 1-5. */
START_TEST(test_sign_zero_rows)
{
    enum { R_STEPS = 200 };
    int p = 1 + _i;
    const size_t n = 1001;
    job_t j = new_job(p, n, R_STEPS, 1);
    dpt_rng_t rng;
    dpt_rng_init(&rng, 21, (uint64_t)p);
#define ZERO(i) ((i) < n / 4 || (i) % 2 == 0)
    float gmax = 0;
    for (size_t k = 0; k < (size_t)R_STEPS * p * n; k++) {
        j.in[k] = ZERO(k % n) ? 0.0f : dpt_rng_normal(&rng) * 0.01f;
        gmax = fmaxf(gmax, fabsf(j.in[k]));
    }
    run(&j);
    ref_t R;
    ref_init(&R, p, n);
    float *max_sw = dpt_calloc((size_t)p * p * sizeof(float));
    for (int t = 0; t < R_STEPS; t++) {
        ref_step(&R, j.in + (size_t)t * p * n);
        for (int k = 0; k < p * p; k++)
            max_sw[k] = fmaxf(max_sw[k], R.sw[k]);
        for (int c = 0; c < p; c++) {
            EXPECT(R.ss[c] <= gmax, "np %d step %d: server scale %g > max|g| %g", p, t, R.ss[c],
                   gmax);
            for (int r = 0; r < p; r++)
                EXPECT(R.sw[r * p + c] <= gmax, "np %d step %d: rank %d's scale %g > max|g| %g",
                       p, t, r, R.sw[r * p + c], gmax);
        }
        for (int c = 0; c < p; c++) {
            size_t off, len;
            chunk_of(n, p, c, &off, &len);
            int all_zero = off + len <= n / 4;
            for (size_t i = off; i < off + len; i++) {
                EXPECT(fabsf(R.es[i]) <= (ZERO(i) ? 1 : 8) * gmax, "np %d step %d: e_s[%zu] = "
                       "%g (max|g| %g)", p, t, i, R.es[i], gmax);
                if (all_zero)
                    EXPECT(R.es[i] == 0 && R.out[i] == 0, "np %d step %d: zero chunk %d moved",
                           p, t, c);
                for (int r = 0; r < p; r++) {
                    float e = R.ew[(size_t)r * n + i];
                    EXPECT(fabsf(e) <= (ZERO(i) ? 1 : 8) * gmax, "np %d step %d: rank %d e_w[%zu]"
                           " = %g (max|g| %g)", p, t, r, i, e, gmax);
                    if (ZERO(i))
                        EXPECT(fabsf(e) <= max_sw[r * p + c], "np %d step %d: rank %d zero e_w"
                               "[%zu] = %g above its chunk's largest scale %g", p, t, r, i, e,
                               max_sw[r * p + c]);
                    if (all_zero)
                        EXPECT(e == 0, "np %d step %d: zero chunk %d's e_w moved", p, t, c);
                }
            }
        }
    }
#undef ZERO
    check_against(&j, &R, "sign (zeros)");
    dpt_free(max_sw);
    ref_free(&R);
    free_job(&j);
}
END_TEST

START_TEST(test_sign_names)
{
    ck_assert_int_eq(dpt_codec_check("sign"), DPT_OK);
    ck_assert_int_eq(dpt_codec_check("sign:0"), DPT_OK);
    ck_assert_int_eq(dpt_codec_check("sign:1"), DPT_ERR_INVALID_ARG);   /* BLOCK 0 or >= 8 */
    ck_assert_int_eq(dpt_codec_check("sign:-8"), DPT_ERR_INVALID_ARG);
    ck_assert_int_eq(dpt_codec_check("sign:8"), DPT_OK);
    ck_assert_int_eq(dpt_codec_check("sign:256"), DPT_OK);
    ck_assert_int_eq(dpt_codec_check("sign:16777217"), DPT_ERR_INVALID_ARG);
    ck_assert_int_eq(dpt_codec_check("sign:2x"), DPT_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(dpt_codec_list(), "none,fp16,bf16,topk:FRACTION"));
    ck_assert_ptr_nonnull(strstr(dpt_codec_list(), ",sign"));
    ck_assert(dpt_codec_stateful("sign"));
    for (int p = 1; p <= 8; p++) {
        const size_t n = 4096;
        dpt_codec_t *c = NULL;
        ck_assert_int_eq(dpt_codec_create("sign:0", &(dpt_codec_bucket_t){.n = n, .ranks = p},
                                          &c), DPT_OK);
        size_t sn = 0;
        float *st = dpt_codec_state(c, &sn);
        ck_assert_ptr_nonnull(st);
        ck_assert_uint_eq(sn, 2 * n);   /* the same on any rank count */
        for (size_t i = 0; i < sn; i++)
            EXPECT(st[i] == 0, "a new codec's state is not zero at %zu", i);
        /* what a call sends against the ring all-reduce's 2 (p - 1) / p * 4n */
        double want = (double)p * (double)payload_of(n, p) / (4.0 * n);
        ck_assert_msg(fabs(dpt_codec_ratio(c, n) - want) < 1e-15, "np %d: ratio %g, want %g", p,
                      dpt_codec_ratio(c, n), want);
        if (p > 1)
            ck_assert(fabs(call_bytes(n, p) / (2.0 * (p - 1) / p * 4.0 * n) - want) < 1e-12);
        ck_assert(dpt_codec_ratio(c, n) < 1.0 / 30);
        ck_assert(dpt_codec_ratio(c, 0) == 1.0);
        dpt_codec_destroy(c);
        /* plain sign is sign:256: its 4096 floats in one tensor-less bucket have 16 blocks,
         * cut again by the chunks, so S grows by 15 scales at most and by one at least (p > 1:
         * some chunk then holds a block boundary) */
        ck_assert_int_eq(dpt_codec_create("sign", &(dpt_codec_bucket_t){.n = n, .ranks = p}, &c),
                         DPT_OK);
        double extra = (dpt_codec_ratio(c, n) - want) * 4.0 * n / (4.0 * p);
        ck_assert_msg(extra >= (p > 1 ? 1 : 15) - 1e-9 && extra <= 15 + 1e-9,
                      "np %d: plain sign's payload has %g more scales than sign:0's", p, extra);
        dpt_codec_destroy(c);
    }
    dpt_codec_t *c = NULL;   /* an empty bucket is a codec too */
    ck_assert_int_eq(dpt_codec_create("sign", &(dpt_codec_bucket_t){.n = 0, .ranks = 3}, &c),
                     DPT_OK);
    ck_assert_ptr_nonnull(c);
    dpt_codec_destroy(c);
}
END_TEST

/* A restored state (non-zero residuals, e_s also outside this rank's chunk, as an average over
 * another rank count leaves it) and a call of n' < n floats: the first n' are the scheme from
 * that state, e_s is zeroed outside the chunk, e_w beyond n' is left alone. One rank (the
 * whole bucket is its chunk), in this thread. */
START_TEST(test_sign_restored_partial)
{
    enum { N = 10, NP = 6 };
    dpt_p2p_t *ep[1];
    ck_assert_int_eq(dpt_p2p_loop_create(1, ep), DPT_OK);
    dpt_coll_t *coll = NULL;
    ck_assert_int_eq(dpt_coll_create(ep[0], &(dpt_coll_config_t){.max_bytes = 64}, &coll),
                     DPT_OK);
    dpt_codec_t *c = NULL;
    ck_assert_int_eq(dpt_codec_create("sign", &(dpt_codec_bucket_t){.n = N, .ranks = 1}, &c),
                     DPT_OK);
    size_t sn = 0;
    float *st = dpt_codec_state(c, &sn);
    ck_assert_uint_eq(sn, 2 * N);
    ref_t R;
    ref_init(&R, 1, NP);
    float g[N];
    for (int i = 0; i < 2 * N; i++)
        st[i] = 0.25f * (float)(i % 5) - 0.5f;
    for (int i = 0; i < NP; i++) {
        R.ew[i] = st[i];
        R.es[i] = st[N + i];
    }
    for (int i = 0; i < N; i++)
        g[i] = (float)(i * 7 % 11) - 5.0f;
    float in[NP];
    memcpy(in, g, sizeof in);
    dpt_codec_stats_t stats;
    ck_assert_int_eq(dpt_codec_allreduce(c, coll, g, NP, DPT_COLL_ALGO_RING, 0, &stats), DPT_OK);
    ck_assert(stats.bytes_sent == 0 && stats.t_code >= 0);
    ref_step(&R, in);
    for (int i = 0; i < NP; i++) {
        ck_assert_msg(same(g[i], R.out[i]), "element %d: %a, reference %a", i, g[i], R.out[i]);
        ck_assert(same(st[i], R.ew[i]) && same(st[N + i], R.es[i]));
    }
    for (int i = NP; i < N; i++) {
        ck_assert_msg(st[i] == 0.25f * (float)(i % 5) - 0.5f, "e_w[%d] beyond the call moved", i);
        ck_assert_msg(st[N + i] == 0, "e_s[%d] outside the chunk kept %g", i, st[N + i]);
    }
    ref_free(&R);
    dpt_codec_destroy(c);
    dpt_coll_destroy(coll);
    dpt_p2p_destroy(ep[0]);
}
END_TEST

/* A bucket of several tensors whose gradients differ by up to 10^4 in size, as a chunk spanning
 * layers does: one scale per segment (chunk x tensor x sign:BLOCK's block), against the
 * reference over 3 steps of fresh inputs; every rank's bits agree; the payload carries as many
 * scales as the most cut chunk has. Layouts: cuts that fall on a chunk boundary, inside one,
 * several in one chunk, one-element tensors. _i: ranks 1-5 x BLOCK 0 (none), 8, 100 and
 * plain sign's 256. */
START_TEST(test_sign_tensors)
{
    enum { STEPS = 3, LAYOUTS = 4 };
    static const char *codecs[4] = {"sign:0", "sign:8", "sign:100", "sign"};
    static const size_t blocks[4] = {0, 8, 100, 256};
    int p = 1 + _i / 4, b = _i % 4;
    static const size_t sizes[LAYOUTS][6] = {
        {600, 401},              /* 1001 floats: the cut inside a chunk at most p */
        {1, 1, 5, 1000, 1, 99},  /* several in chunk 0 */
        {7},                     /* one tensor, the same as none */
        {3, 2, 2},               /* 7 floats: fewer than the ranks' chunks can hold apart */
    };
    for (int l = 0; l < LAYOUTS; l++) {
        dpt_codec_tensor_t tens[6];
        int nt = 0;
        size_t n = 0;
        for (; nt < 6 && sizes[l][nt]; nt++) {
            tens[nt] = (dpt_codec_tensor_t){n, 1, sizes[l][nt]};
            n += sizes[l][nt];
        }
        job_t j = new_job(p, n, STEPS, 1);
        j.codec = codecs[b];
        j.tensors = tens;
        j.n_tensors = nt;
        dpt_rng_t rng;
        dpt_rng_init(&rng, 29, (uint64_t)(p * 10 + l));
        for (size_t i = 0; i < (size_t)STEPS * p * n; i++) {
            size_t at = i % n, k = 0;
            while (k + 1 < (size_t)nt && tens[k + 1].off <= at)
                k++;
            j.in[i] = dpt_rng_normal(&rng) * powf(10.0f, -(float)(k % 5));
        }
        ref_t R;
        ref_init(&R, p, n);
        ref_tensors(&R, tens, nt, blocks[b]);
        for (int t = 0; t < STEPS; t++)
            ref_step(&R, j.in + (size_t)t * p * n);
        run(&j);
        for (int r = 1; r < p; r++)
            ck_assert_msg(!memcmp(j.out, j.out + (size_t)r * n, n * sizeof(float)),
                          "%s np %d layout %d: rank %d's bits differ from rank 0's", codecs[b], p, l,
                          r);
        check_against(&j, &R, codecs[b]);
        size_t longest = n / (size_t)p + (n % (size_t)p != 0);
        double want = p > 1 ? STEPS * 2.0 * (p - 1) * (double)(4 * ref_scales(&R) +
                                                             (longest + 7) / 8) : 0.0;
        ck_assert_msg(j.bytes_sent == want, "%s np %d layout %d: %.0f bytes sent, want %.0f",
                      codecs[b], p, l, j.bytes_sent, want);
        ref_free(&R);
        free_job(&j);
    }
}
END_TEST

static Suite *sign_suite(void)
{
    Suite *s = suite_create("compress_sign");
    TCase *tc = tcase_create("sign");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_sign, 0, MAX_RANKS * IN_KINDS);
    tcase_add_loop_test(tc, test_sign_feedback, 0, MAX_RANKS);
    tcase_add_loop_test(tc, test_sign_tracks, 0, MAX_RANKS);
    tcase_add_loop_test(tc, test_sign_zero_rows, 0, MAX_RANKS);
    tcase_add_loop_test(tc, test_sign_tensors, 0, MAX_RANKS * 4);
    tcase_add_test(tc, test_sign_names);
    tcase_add_test(tc, test_sign_restored_partial);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(sign_suite)
