/* check_bucket.c: the gradient bucketer on the in-process transport, one thread per rank, at 1-4
 * ranks: for several bucket sizes, with and without the communication thread, every rank ends
 * a step with the exact average of every rank's gradients (small integers: the sums are exact in
 * float32, so the average is one correctly rounded division whatever the order), the buckets
 * tile the arena in backward order, bucketer_sum sums exactly, and a second step reuses it all. */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "check_main.h"
#include "dptrain/alloc.h"
#include "dptrain/bucket.h"
#include "dptrain/coll.h"
#include "dptrain/compress.h"

#define MAX_RANKS 4
#define N_SEGS 7

/* Segments of a small model, as a model lays them out (forward order in the arena). */
static const size_t seg_count[N_SEGS] = {288, 32, 9216, 1, 4097, 640, 10};

typedef struct job {
    int p, overlap;
    size_t bucket_bytes;
} job_t;

typedef struct rank_ctx {
    int rank;
    const job_t *job;
    dpt_p2p_t *p2p;
    dpt_status_t st;
    char msg[256];
    int n_buckets, tiles, wrong, sum_wrong;
} rank_ctx_t;

static float value(int rank, size_t i, int step)
{
    return (float)((int)((i * 7 + (size_t)rank * 13 + (size_t)step * 5) % 61) - 30);
}

static void *rank_main(void *arg)
{
    rank_ctx_t *c = arg;
    const job_t *j = c->job;
    dpt_param_segment_t segs[N_SEGS];
    size_t n = 0;
    for (int k = 0; k < N_SEGS; k++) {
        segs[k] = (dpt_param_segment_t){.offset = n, .count = seg_count[k], .layer = k};
        n += seg_count[k];
    }
    float *g = dpt_malloc(n * sizeof *g);
    dpt_coll_t *coll = NULL;
    dpt_bucketer_t *bk = NULL;
    dpt_bucket_config_t bc = {.first_bytes = j->bucket_bytes, .bucket_bytes = j->bucket_bytes,
                              .algo = DPT_COLL_ALGO_RING, .overlap = j->overlap};
    dpt_coll_config_t cc = {.max_bytes = dpt_bucket_max_bytes(segs, N_SEGS, &bc)};
    dpt_status_t st = g ? dpt_coll_create(c->p2p, &cc, &coll) : DPT_ERR_NOMEM;
    if (st == DPT_OK)
        st = dpt_bucketer_create(coll, g, segs, N_SEGS, &bc, &bk);
    if (st == DPT_OK) {
        c->n_buckets = dpt_bucketer_count(bk);
        size_t end = n;   /* bucket 0 ends the arena; each next one ends where it starts */
        c->tiles = 1;
        for (int b = 0; b < c->n_buckets; b++) {
            size_t off, cnt;
            dpt_bucketer_range(bk, b, &off, &cnt);
            c->tiles &= off + cnt == end && cnt > 0;
            end = off;
        }
        c->tiles &= end == 0;
    }
    for (int step = 0; step < 2 && st == DPT_OK; step++) {
        for (size_t i = 0; i < n; i++)
            g[i] = value(c->rank, i, step);
        dpt_bucketer_begin(bk, step);
        for (int k = N_SEGS - 1; k >= 0; k--)   /* backward order */
            dpt_bucketer_ready(bk, segs[k].offset, segs[k].count);
        dpt_bucket_stats_t bs;
        st = dpt_bucketer_finish(bk, &bs);
        /* what the ring sent: 2 (p - 1) chunks of each bucket, a chunk within one float of its
         * count / p */
        if (st == DPT_OK && fabs(bs.bytes_sent - bs.bytes_fp32) > 8.0 * (j->p - 1) * c->n_buckets)
            c->wrong++;
        for (size_t i = 0; i < n && st == DPT_OK; i++) {
            float sum = 0;
            for (int r = 0; r < j->p; r++)
                sum += value(r, i, step);
            c->wrong += g[i] != sum / (float)j->p;
        }
    }
    if (st == DPT_OK) {   /* the sync-BN path: a sum through the same queue */
        float v[5];
        for (int i = 0; i < 5; i++)
            v[i] = (float)(c->rank + i);
        st = dpt_bucketer_sum(bk, v, 5);
        for (int i = 0; i < 5 && st == DPT_OK; i++)
            c->sum_wrong += v[i] != (float)(j->p * (j->p - 1) / 2 + j->p * i);
    }
    c->st = st;
    if (st != DPT_OK)
        snprintf(c->msg, sizeof c->msg, "%s", dpt_error_get());
    dpt_bucketer_destroy(bk);
    dpt_coll_destroy(coll);
    dpt_free(g);
    return NULL;
}

static void run_job(const job_t *j, rank_ctx_t *ctx)
{
    dpt_p2p_t *eps[MAX_RANKS];
    pthread_t th[MAX_RANKS];
    ck_assert_int_eq(dpt_p2p_loop_create(j->p, eps), DPT_OK);
    for (int r = 0; r < j->p; r++) {
        ctx[r] = (rank_ctx_t){.rank = r, .job = j, .p2p = eps[r]};
        ck_assert_int_eq(pthread_create(&th[r], NULL, rank_main, &ctx[r]), 0);
    }
    for (int r = 0; r < j->p; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < j->p; r++)
        dpt_p2p_destroy(eps[r]);
}

/* _i: ranks 1-4 x overlap on/off x bucket sizes (4 KiB: many buckets; 64 KiB: a few; 1 MiB:
 * one) */
START_TEST(test_average)
{
    static const size_t sizes[3] = {4096, 65536, 1 << 20};
    job_t j = {.p = 1 + _i % 4, .overlap = (_i / 4) % 2, .bucket_bytes = sizes[_i / 8]};
    rank_ctx_t ctx[MAX_RANKS];
    run_job(&j, ctx);
    for (int r = 0; r < j.p; r++) {
        ck_assert_msg(ctx[r].st == DPT_OK, "np %d overlap %d bucket %zu: rank %d: %s", j.p,
                      j.overlap, j.bucket_bytes, r, ctx[r].msg);
        ck_assert_msg(ctx[r].tiles, "rank %d: the buckets do not tile the arena", r);
        ck_assert_int_eq(ctx[r].n_buckets, ctx[0].n_buckets);
        ck_assert_msg(ctx[r].wrong == 0, "np %d overlap %d bucket %zu: rank %d: %d wrong",
                      j.p, j.overlap, j.bucket_bytes, r, ctx[r].wrong);
        ck_assert_msg(ctx[r].sum_wrong == 0, "rank %d: bucketer_sum: %d wrong", r,
                      ctx[r].sum_wrong);
    }
    if (j.bucket_bytes == 4096)   /* cut at layer boundaries: {10, 640}, {4097}, {1, 9216}, ... */
        ck_assert_int_ge(ctx[0].n_buckets, 3);
    if (j.bucket_bytes == (1 << 20))
        ck_assert_int_le(ctx[0].n_buckets, 2);
}
END_TEST

/* A codec's state through the bucketer (powersgd, which keeps its error and Q): a NaN in a
 * rank's gradients reaches every rank's result and state; dpt_bucketer_state_scale turns it into
 * 0 and scales the rest exactly, so the next step is finite again. (top-k would not keep it: a
 * NaN is sent at once.) */
typedef struct codec_ctx {
    int rank, p;
    dpt_p2p_t *p2p;
    int nan_out, finite_after, scaled_ok;
    dpt_status_t st;
} codec_ctx_t;

static void *codec_main(void *arg)
{
    codec_ctx_t *c = arg;
    dpt_param_segment_t segs[N_SEGS];
    size_t n = 0;
    for (int k = 0; k < N_SEGS; k++) {
        segs[k] = (dpt_param_segment_t){.offset = n, .count = seg_count[k], .layer = k,
                                        .rows = k == 0 ? 32 : k == 2 ? 96 : 1};   /* matrices */
        n += seg_count[k];
    }
    float *g = dpt_malloc(n * sizeof *g);
    dpt_coll_t *coll = NULL;
    dpt_bucketer_t *bk = NULL;
    dpt_bucket_config_t bc = {.bucket_bytes = 16384, .algo = DPT_COLL_ALGO_RING, .overlap = 1,
                              .compress = "powersgd"};
    dpt_coll_config_t cc = {.max_bytes = dpt_bucket_max_bytes(segs, N_SEGS, &bc)};
    dpt_status_t st = dpt_coll_create(c->p2p, &cc, &coll);
    if (st == DPT_OK)
        st = dpt_bucketer_create(coll, g, segs, N_SEGS, &bc, &bk);
    size_t sn = st == DPT_OK ? dpt_bucketer_state_n(bk) : 0;
    float *s0 = dpt_malloc((sn + 1) * sizeof *s0), *s1 = dpt_malloc((sn + 1) * sizeof *s1);
    for (int step = 0; step < 2 && st == DPT_OK; step++) {
        for (size_t i = 0; i < n; i++)
            g[i] = value(c->rank, i, step);
        if (step == 0 && c->rank == 0)
            g[3] = NAN;
        dpt_bucketer_begin(bk, step);
        for (int k = N_SEGS - 1; k >= 0; k--)
            dpt_bucketer_ready(bk, segs[k].offset, segs[k].count);
        st = dpt_bucketer_finish(bk, NULL);
        int finite = 1;
        for (size_t i = 0; i < n; i++)
            finite &= isfinite(g[i]) != 0;
        if (step == 0) {
            c->nan_out = isnan(g[3]);
            dpt_bucketer_state_scale(bk, 1.0f);   /* what a skipped step does */
            dpt_bucketer_state(bk, s0, 0);
            dpt_bucketer_state_scale(bk, 2.0f);   /* a loss scale doubled */
            dpt_bucketer_state(bk, s1, 0);
            c->scaled_ok = sn > n;   /* e, then Q */
            for (size_t i = 0; i < sn; i++)
                c->scaled_ok &= isfinite(s0[i]) && s1[i] == 2.0f * s0[i];
        } else {
            c->finite_after = finite;
        }
    }
    c->st = st;
    dpt_free(s0);
    dpt_free(s1);
    dpt_bucketer_destroy(bk);
    dpt_coll_destroy(coll);
    dpt_free(g);
    return NULL;
}

/* _i: ranks 2-4 */
START_TEST(test_codec_state)
{
    int p = 2 + _i;
    dpt_p2p_t *eps[MAX_RANKS];
    pthread_t th[MAX_RANKS];
    codec_ctx_t ctx[MAX_RANKS];
    ck_assert_int_eq(dpt_p2p_loop_create(p, eps), DPT_OK);
    for (int r = 0; r < p; r++) {
        ctx[r] = (codec_ctx_t){.rank = r, .p = p, .p2p = eps[r]};
        ck_assert_int_eq(pthread_create(&th[r], NULL, codec_main, &ctx[r]), 0);
    }
    for (int r = 0; r < p; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < p; r++)
        dpt_p2p_destroy(eps[r]);
    for (int r = 0; r < p; r++) {
        ck_assert_int_eq(ctx[r].st, DPT_OK);
        ck_assert_msg(ctx[r].nan_out, "np %d rank %d: the NaN vanished", p, r);
        ck_assert_msg(ctx[r].scaled_ok, "np %d rank %d: state not cleaned or not scaled", p, r);
        ck_assert_msg(ctx[r].finite_after, "np %d rank %d: the NaN came back", p, r);
    }
}
END_TEST

static Suite *bucket_suite(void)
{
    Suite *s = suite_create("bucket");
    TCase *tc = tcase_create("average");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_average, 0, 24);
    tcase_add_loop_test(tc, test_codec_state, 0, MAX_RANKS - 1);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(bucket_suite)
