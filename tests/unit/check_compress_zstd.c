/* check_compress_zstd.c: "+zstd" on the wire (src/compress/wire.c, wire_ring.c) at 1-5 ranks on
 * the in-process transport, sizes 0, 1, p - 1, odd and large, random, zero, huge, NaN and
 * incompressible buckets: every rank ends with the same bits, and they are the bits of the same
 * codec without +zstd (ring all-reduce; on a deterministic context, the deterministic result),
 * the codec's state too (top-k's residual); what the wire sends is far less than plain on zeros
 * and never more than plain plus its 8-byte lengths on incompressible data (raw fallback). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check_main.h"
#include "codec_ranks.h"
#include "compress/wire.h"
#include "dptrain/alloc.h"
#include "dptrain/compress.h"
#include "dptrain/rng.h"

enum { IN_BITS = IN_KINDS, N_KINDS };   /* uniformly random 32-bit patterns: incompressible */

static const char *const codecs[] = {"fp16", "bf16", "topk:0.01", "topk:0.3", "none"};
/* The same bits, except that any NaN equals any NaN: which payload a sum of two NaNs keeps
 * depends on the operand order the compiler picked for `a += b` (x86 keeps the first's), which
 * differs between builds (the ASan build's -O1 and Release's -O2) for the same source. */
static int same_bits_or_nan(const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(isnan(a[i]) && isnan(b[i])) && memcmp(&a[i], &b[i], sizeof a[i]))
            return 0;
    return 1;
}

#define N_CODECS (int)(sizeof codecs / sizeof codecs[0])

/* One job of `codec` on the inputs `in` (copied), 2 rounds, state captured. */
static void run_codec(job_t *j, const char *codec, const float *in)
{
    j->codec = codec;
    j->rounds = 2;
    j->bytes_sent = 0;
    memcpy(j->in, in, (size_t)j->p * j->n * sizeof(float));
    run(j);
}

/* What a plain fp32 spec ("none") sends is the collective's: run it as the fp32 all-reduce. */
typedef struct plain_ctx {
    int rank, p, det;
    size_t n;
    float *buf;
    dpt_p2p_t *p2p;
    double bytes;
    dpt_status_t st;
} plain_ctx_t;

static void *plain_main(void *arg)
{
    plain_ctx_t *c = arg;
    dpt_coll_t *coll = NULL;
    dpt_coll_config_t cc = {.max_bytes = c->n * sizeof(float) + 64, .deterministic = c->det};
    c->st = dpt_coll_create(c->p2p, &cc, &coll);
    for (int round = 0; round < 2 && c->st == DPT_OK; round++)
        c->st = dpt_coll_allreduce(coll, c->buf, c->n, DPT_DTYPE_F32, DPT_REDOP_AVG,
                                   DPT_COLL_ALGO_RING);
    if (coll)
        c->bytes = dpt_coll_bytes_sent(coll);
    dpt_coll_destroy(coll);
    return NULL;
}

/* "none" twice in a row (as run_codec's 2 rounds: the second on the first's output) */
static void run_plain(job_t *j, const float *in)
{
    dpt_p2p_t *eps[MAX_RANKS];
    pthread_t th[MAX_RANKS];
    plain_ctx_t ctx[MAX_RANKS];
    ck_assert_int_eq(dpt_p2p_loop_create(j->p, eps), DPT_OK);
    for (int r = 0; r < j->p; r++) {
        float *buf = j->out + (size_t)r * j->n;
        memcpy(buf, in + (size_t)r * j->n, j->n * sizeof *buf);
        ctx[r] = (plain_ctx_t){.rank = r, .p = j->p, .det = j->deterministic, .n = j->n,
                               .buf = buf, .p2p = eps[r]};
        ck_assert_int_eq(pthread_create(&th[r], NULL, plain_main, &ctx[r]), 0);
    }
    for (int r = 0; r < j->p; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < j->p; r++) {
        dpt_p2p_destroy(eps[r]);
        ck_assert_int_eq(ctx[r].st, DPT_OK);
    }
    j->bytes_sent = ctx[0].bytes;
}

/* Fill p x n inputs of a kind (codec_ranks.h's, or IN_BITS). */
static void inputs(job_t *j, int kind, uint64_t seed)
{
    j->kind = kind < IN_KINDS ? kind : IN_RANDOM;
    fill(j, seed);
    if (kind == IN_BITS) {
        dpt_rng_t r;
        dpt_rng_init(&r, seed, 11);
        for (size_t i = 0; i < (size_t)j->p * j->n; i++) {
            uint32_t u = dpt_rng_u32(&r);
            memcpy(&j->in[i], &u, sizeof u);
        }
    }
}

/* codec and codec+zstd on the same inputs: the same bits everywhere, the same state; the bytes
 * against plain's. _i: codec x ranks 1-5 x kind, det: a deterministic context. */
static void check_lossless(int i, int det)
{
    const char *base = codecs[i / (MAX_RANKS * N_KINDS)];
    int p = 1 + (i / N_KINDS) % MAX_RANKS, kind = i % N_KINDS;
    char zspec[64];
    snprintf(zspec, sizeof zspec, "%s+zstd", base);
    size_t sizes[6] = {0, 1, (size_t)(p > 1 ? p - 1 : 2), 7, 1001, 65537};
    for (int k = 0; k < 6; k++) {
        size_t n = sizes[k], pn = (size_t)p * n + 1;
        job_t j = {.p = p, .n = n, .deterministic = det};
        j.in = dpt_malloc(pn * sizeof(float));
        j.out = dpt_malloc(pn * sizeof(float));
        j.res = dpt_malloc(pn * sizeof(float));
        float *in = dpt_malloc(pn * sizeof(float)), *want = dpt_malloc(pn * sizeof(float));
        float *want_res = dpt_malloc(pn * sizeof(float));
        inputs(&j, kind, 300 + (uint64_t)k);
        memcpy(in, j.in, pn * sizeof(float));
        if (!strcmp(base, "none"))
            run_plain(&j, in);
        else
            run_codec(&j, base, in);
        double plain_bytes = j.bytes_sent;
        size_t res_n = j.res_n;
        memcpy(want, j.out, (size_t)p * n * sizeof(float));
        memcpy(want_res, j.res, (size_t)p * res_n * sizeof(float));
        j.res_n = 0;
        run_codec(&j, zspec, in);
        for (int r = 0; r < p; r++)
            ck_assert_msg(same_bits_or_nan(want + (size_t)r * n, j.out + (size_t)r * n, n),
                          "%s np %d n %zu kind %d det %d: rank %d's result differs from %s's",
                          zspec, p, n, kind, det, r, base);
        ck_assert_msg(j.res_n == res_n && !memcmp(want_res, j.res, (size_t)p * res_n *
                                                  sizeof(float)),
                      "%s np %d n %zu: the state differs from %s's", zspec, p, n, base);
        /* incompressible: raw messages, each after an 8-byte length (2 rounds; the ring sends
         * 2 (p - 1) messages per call, the all-gather p - 1; chunks of a count that p does not
         * divide are one element longer than the nominal volume's count / p) */
        double bound = plain_bytes + 2.0 * 2 * (p - 1) * (8.0 + 2 * 4);
        ck_assert_msg(j.bytes_sent <= bound, "%s np %d n %zu kind %d: %.0f bytes sent, plain "
                      "%.0f, at most %.0f", zspec, p, n, kind, j.bytes_sent, plain_bytes, bound);
        if (kind == IN_ZEROS && n >= 1001 && p > 1)   /* top-k's 11 pairs of n 1001: 1/3 */
            ck_assert_msg(j.bytes_sent < (n > 1001 ? 0.05 : 0.5) * plain_bytes, "%s np %d n %zu: "
                          "zeros: %.0f bytes, plain %.0f", zspec, p, n, j.bytes_sent, plain_bytes);
        if (kind == IN_BITS && n >= 1001 && p > 1 && !strcmp(base, "none"))
            ck_assert_msg(j.bytes_sent >= 0.9 * plain_bytes, "%s np %d n %zu: random bits "
                          "compressed to %.0f of %.0f bytes?", zspec, p, n, j.bytes_sent,
                          plain_bytes);
        dpt_free(j.in);
        dpt_free(j.out);
        dpt_free(j.res);
        dpt_free(in);
        dpt_free(want);
        dpt_free(want_res);
    }
}

START_TEST(test_lossless)
{
    check_lossless(_i, 0);
}
END_TEST

START_TEST(test_lossless_deterministic)
{
    check_lossless(_i, 1);
}
END_TEST

/* The message layer alone: random bytes stay raw, zeros shrink, and both come back exact. */
START_TEST(test_pack)
{
    dpt__wire_t *w = NULL;
    ck_assert_int_eq(dpt__wire_create(&w), DPT_OK);
    size_t n = 4096, cap = dpt__wire_bound(n);
    unsigned char *src = dpt_malloc(n), *z = dpt_malloc(cap), *back = dpt_malloc(n);
    dpt_rng_t r;
    dpt_rng_init(&r, 9, 1);
    for (int kind = 0; kind < 2; kind++) {
        for (size_t i = 0; i < n; i++)
            src[i] = kind ? 0 : (unsigned char)dpt_rng_u32(&r);
        const void *out;
        size_t out_n;
        ck_assert_int_eq(dpt__wire_pack(w, src, n, 4, z, cap, &out, &out_n), DPT_OK);
        if (kind)
            ck_assert(out == z && out_n < n / 20);
        else
            ck_assert(out == src && out_n == n);
        memset(back, 0xa5, n);
        ck_assert_int_eq(dpt__wire_unpack(w, out, out_n, n, 4, back), DPT_OK);
        ck_assert(!memcmp(back, src, n));
    }
    /* a corrupt message is an error, not garbage */
    const void *out;
    size_t out_n;
    ck_assert_int_eq(dpt__wire_pack(w, src, n, 4, z, cap, &out, &out_n), DPT_OK);
    ck_assert_int_eq(dpt__wire_unpack(w, z, out_n - 1, n, 4, back), DPT_ERR_INTERNAL);
    dpt_free(src);
    dpt_free(z);
    dpt_free(back);
    dpt__wire_destroy(w);
}
END_TEST

START_TEST(test_names)
{
    static const char *const good[] = {"fp16+zstd", "bf16+zstd", "topk:0.01+zstd", "none+zstd"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        ck_assert_msg(dpt_codec_check(good[i]) == DPT_OK, "%s: %s", good[i], dpt_error_get());
    static const char *const bad[] = {"zstd", "+zstd", "fp16+lz4", "fp16+zstd+zstd", "topk+zstd",
                                      "topk:2+zstd", "fp16:1+zstd"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(dpt_codec_check(bad[i]) == DPT_ERR_INVALID_ARG, "%s accepted", bad[i]);
    ck_assert(strstr(dpt_codec_list(), "+zstd"));
    ck_assert(dpt_codec_stateful("topk:0.1+zstd") && !dpt_codec_stateful("fp16+zstd"));
    ck_assert(!dpt_codec_stateful("none+zstd"));
    dpt_codec_t *c = NULL;
    ck_assert_int_eq(dpt_codec_create("none+zstd", &(dpt_codec_bucket_t){.n = 10, .ranks = 2},
                                      &c), DPT_OK);
    ck_assert_ptr_nonnull(c);   /* not "none": the fp32 average, through the wire */
    ck_assert(dpt_codec_ratio(c, 10) == 1.0);
    dpt_codec_destroy(c);
    ck_assert_int_eq(dpt_codec_create("fp16+zstd", &(dpt_codec_bucket_t){.n = 10, .ranks = 2},
                                      &c), DPT_OK);
    ck_assert(dpt_codec_ratio(c, 10) == 0.5);   /* the nominal ratio: an upper bound */
    dpt_codec_destroy(c);
}
END_TEST

static Suite *compress_zstd_suite(void)
{
    Suite *s = suite_create("compress_zstd");
    TCase *tc = tcase_create("wire");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_lossless, 0, N_CODECS * MAX_RANKS * N_KINDS);
    tcase_add_loop_test(tc, test_lossless_deterministic, 0, N_CODECS * MAX_RANKS * N_KINDS);
    tcase_add_test(tc, test_pack);
    tcase_add_test(tc, test_names);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(compress_zstd_suite)
