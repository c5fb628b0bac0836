/* check_coll.c: the collective layer on the in-process transport (p2p_loop): each rank is a
 * thread, so every algorithm runs at 1..9 ranks without mpirun. Rank threads only run the
 * collectives and record their status; all checks happen on the test's main thread afterwards:
 * results against a float64 reference sum within the dtype's tolerance, bitwise agreement of all
 * ranks (memcmp), NaN/Inf propagation, the deterministic mode against the rank-ordered left fold
 * computed here, broadcast and all-gather exactly, argument errors, the transport's matching
 * rules, the double binary tree's shape, the dtype converters and "no allocation per call". */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "../mpi/coll_fixture.h"
#include "check_main.h"
#include "comm/internal.h"
#include "dptrain/alloc.h"
#include "dptrain/coll.h"
#include "dptrain/rng.h"

#define MAX_RANKS 16

/* ck_assert_msg records a mark point (a write to Check's pipe) per call even when it passes: for
 * per-element checks only call into Check on failure. */
#define EXPECT(cond, ...)                                                                      \
    do {                                                                                       \
        if (!(cond))                                                                           \
            ck_abort_msg(__VA_ARGS__);                                                         \
    } while (0)

static const int rank_counts[] = {1, 2, 3, 4, 5, 7, 8, 9};
#define N_RANK_COUNTS ((int)(sizeof rank_counts / sizeof rank_counts[0]))
/* Every algorithm the loop transport runs ("mpi" and "shm" need MPI: tests/mpi/check_coll_mpi.c;
 * "auto" probes over the threads and then runs one of the others). */
static const dpt_coll_algo_t loop_algos[] = {DPT_COLL_ALGO_RING, DPT_COLL_ALGO_TREE,
                                             DPT_COLL_ALGO_RD, DPT_COLL_ALGO_RHD,
                                             DPT_COLL_ALGO_AUTO};
#define N_LOOP_ALGOS ((int)(sizeof loop_algos / sizeof loop_algos[0]))

/* ---- harness: p ranks as p threads ----------------------------------------------------------- */

typedef struct rank_ctx rank_ctx_t;
typedef dpt_status_t (*rank_fn)(rank_ctx_t *rc);

struct rank_ctx {
    int rank, p;
    dpt_p2p_t *p2p;
    void *user;
    rank_fn fn;
    dpt_status_t st;
    char msg[512];
};

static void *rank_main(void *arg)
{
    rank_ctx_t *rc = arg;
    dpt_error_clear();
    rc->st = rc->fn(rc);
    if (rc->st != DPT_OK)
        snprintf(rc->msg, sizeof rc->msg, "%s", dpt_error_get());
    return NULL;
}

/* Run fn(rank) on p threads over one loop transport; fail the test if any rank failed. */
static void run_ranks(int p, rank_fn fn, void *user)
{
    dpt_p2p_t *eps[MAX_RANKS];
    rank_ctx_t ctx[MAX_RANKS];
    pthread_t th[MAX_RANKS];
    ck_assert_int_le(p, MAX_RANKS);
    ck_assert_int_eq(dpt_p2p_loop_create(p, eps), DPT_OK);
    for (int r = 0; r < p; r++) {
        ctx[r] = (rank_ctx_t){.rank = r, .p = p, .p2p = eps[r], .user = user, .fn = fn};
        ck_assert_int_eq(pthread_create(&th[r], NULL, rank_main, &ctx[r]), 0);
    }
    for (int r = 0; r < p; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < p; r++)
        dpt_p2p_destroy(eps[r]);
    for (int r = 0; r < p; r++)
        ck_assert_msg(ctx[r].st == DPT_OK, "rank %d of %d: %s: %s", r, p,
                      dpt_status_str(ctx[r].st), ctx[r].msg);
}

/* ---- cases ------------------------------------------------------------------------------- */

typedef struct coll_case {
    fx_input_t in;
    int seg_idx;        /* index into the sweep's segment sizes */
    unsigned char *out; /* (p, count) elements: rank r's buffer at r * count * esize */
} coll_case_t;

/* ---- the all-reduce sweep ------------------------------------------------------------------- */

typedef struct sweep {
    int p;
    dpt_coll_algo_t algo;
    int deterministic;
    size_t segs[4];
    int nsegs;
    coll_case_t *cases;
    int ncases;
    size_t max_bytes;
} sweep_t;

static dpt_status_t sweep_rank(rank_ctx_t *rc)
{
    sweep_t *s = rc->user;
    dpt_coll_t *colls[4] = {NULL};
    dpt_status_t st = DPT_OK;
    for (int k = 0; k < s->nsegs && st == DPT_OK; k++) {
        dpt_coll_config_t cfg = {.max_bytes = s->max_bytes, .segment_bytes = s->segs[k],
                                 .deterministic = s->deterministic};
        st = dpt_coll_create(rc->p2p, &cfg, &colls[k]);
    }
    for (int ci = 0; ci < s->ncases && st == DPT_OK; ci++) {
        coll_case_t *c = &s->cases[ci];
        void *buf = c->out + (size_t)rc->rank * c->in.count * dpt_dtype_size(c->in.dtype);
        fx_fill(&c->in, s->p, rc->rank, buf);
        st = dpt_coll_allreduce(colls[c->seg_idx], buf, c->in.count, c->in.dtype, c->in.op,
                                s->algo);
    }
    for (int k = 0; k < s->nsegs; k++)
        dpt_coll_destroy(colls[k]);
    return st;
}

static void check_case(const sweep_t *s, const coll_case_t *c)
{
    int p = s->p;
    const fx_input_t *in = &c->in;
    size_t bytes = in->count * dpt_dtype_size(in->dtype);
    char what[200], why[200];
    snprintf(what, sizeof what, "%s%s p=%d count=%zu %s %s segment=%zu",
             dpt_coll_algo_name(s->algo), s->deterministic ? " (deterministic)" : "", p,
             in->count, fx_dtype_name(in->dtype), in->op == DPT_REDOP_AVG ? "avg" : "sum",
             s->segs[c->seg_idx]);
    for (int r = 1; r < p; r++)
        if (memcmp(c->out + (size_t)r * bytes, c->out, bytes) != 0) {
            const unsigned char *mine = c->out + (size_t)r * bytes;
            size_t i = 0;
            while (fx_load(in->dtype, mine, i) == fx_load(in->dtype, c->out, i))
                i++;
            ck_abort_msg("%s: rank %d differs from rank 0 at element %zu (0x%x vs 0x%x)", what, r,
                         i, fx_load(in->dtype, c->out + (size_t)r * bytes, i),
                         fx_load(in->dtype, c->out, i));
        }
    for (size_t i = 0; i < in->count; i++) {
        uint32_t got = fx_load(in->dtype, c->out, i);
        if (s->deterministic) {
            uint32_t want = fx_canonical_bits(in, p, i);
            EXPECT(got == want, "%s: element %zu is 0x%x, the rank-ordered fold is 0x%x", what, i,
                   got, want);
            continue;
        }
        double sum, sumabs;
        fx_reference(in, p, i, &sum, &sumabs);
        EXPECT(fx_check_element(in, p, sum, sumabs, got, why, sizeof why), "%s: element %zu is %s",
               what, i, why);
    }
}

/* Allocate the output of every case, run the sweep on p threads, check every case. */
static void run_sweep(sweep_t *s)
{
    s->max_bytes = 4;
    for (int ci = 0; ci < s->ncases; ci++) {
        coll_case_t *c = &s->cases[ci];
        size_t bytes = c->in.count * dpt_dtype_size(c->in.dtype);
        c->out = dpt_malloc(bytes * (size_t)s->p + 1);
        ck_assert_ptr_nonnull(c->out);
        s->max_bytes = bytes > s->max_bytes ? bytes : s->max_bytes;
    }
    run_ranks(s->p, sweep_rank, s);
    for (int ci = 0; ci < s->ncases; ci++)
        check_case(s, &s->cases[ci]);
    for (int ci = 0; ci < s->ncases; ci++)
        dpt_free(s->cases[ci].out);
}

/* Cases: every count x dtype x op x segment size (specials planted where asked). */
static int add_cases(coll_case_t *cases, int n, const size_t *counts, int ncounts, int nsegs,
                     int specials)
{
    for (int k = 0; k < ncounts; k++)
        for (int d = 0; d < DPT_DTYPE_COUNT; d++)
            for (int op = 0; op < DPT_REDOP_COUNT; op++)
                for (int sg = 0; sg < nsegs; sg++) {
                    cases[n] = (coll_case_t){
                        .in = {.count = counts[k], .dtype = (dpt_dtype_t)d,
                               .op = (dpt_redop_t)op, .specials = specials,
                               .seed = 1000u + (uint64_t)n},
                        .seg_idx = sg};
                    n++;
                }
    return n;
}

/* Loop index -> (algorithm, rank count). */
static void algo_p(int i, dpt_coll_algo_t *algo, int *p)
{
    *algo = loop_algos[i / N_RANK_COUNTS];
    *p = rank_counts[i % N_RANK_COUNTS];
}

START_TEST(test_allreduce_sweep)
{
    static coll_case_t cases[9 * DPT_DTYPE_COUNT * DPT_REDOP_COUNT * 3];
    sweep_t s = {.segs = {0, 40, 1000}, .nsegs = 3, .cases = cases};
    algo_p(_i, &s.algo, &s.p);
    size_t p = (size_t)s.p;
    const size_t counts[] = {0, 1, p - 1, p, p + 1, 7, 13, 1021, 4099};
    s.ncases = add_cases(cases, 0, counts, 9, s.nsegs, 1);
    run_sweep(&s);
}
END_TEST

START_TEST(test_allreduce_deterministic)
{
    static coll_case_t cases[6 * DPT_DTYPE_COUNT * DPT_REDOP_COUNT * 3];
    sweep_t s = {.segs = {0, 64, 1000}, .nsegs = 3, .cases = cases, .deterministic = 1};
    algo_p(_i, &s.algo, &s.p);
    size_t p = (size_t)s.p;
    const size_t counts[] = {1, p - 1 ? p - 1 : 2, p + 1, 13, 1021, 4099};
    s.ncases = add_cases(cases, 0, counts, 6, s.nsegs, 0);
    run_sweep(&s);
}
END_TEST

/* 1 Mi + 3 elements at p = 3 and 8: f32 sum and fp16 avg (nondeterministic, default and 64 KiB
 * segments), and f32 sum in deterministic mode. */
START_TEST(test_allreduce_large)
{
    static const int ps[] = {3, 8};
    coll_case_t cases[3];
    sweep_t s = {.segs = {0, 64 << 10}, .nsegs = 2, .cases = cases, .ncases = 2};
    s.algo = loop_algos[_i / 2];
    s.p = ps[_i % 2];
    size_t n = ((size_t)1 << 20) + 3;
    cases[0] = (coll_case_t){.in = {.count = n, .dtype = DPT_DTYPE_F32, .seed = 1}};
    cases[1] = (coll_case_t){
        .in = {.count = n, .dtype = DPT_DTYPE_F16, .op = DPT_REDOP_AVG, .specials = 1, .seed = 2},
        .seg_idx = 1};
    run_sweep(&s);
    sweep_t d = {.segs = {1 << 16}, .nsegs = 1, .cases = cases, .ncases = 1, .deterministic = 1,
                 .algo = s.algo, .p = s.p};
    cases[0] = (coll_case_t){.in = {.count = n, .dtype = DPT_DTYPE_F32, .seed = 3}};
    run_sweep(&d);
}
END_TEST

/* Buffers of exactly max_bytes with segments around the buffer size, where the pipelined paths
 * have the fewest segments and the scratch is tightest; and the scratch budget itself. */
START_TEST(test_allreduce_full_scratch)
{
    static const int ps[] = {2, 3, 5};
    const size_t nbytes = 6000;
    for (int det = 0; det < 2; det++) {
        coll_case_t cases[4];
        sweep_t s = {.segs = {nbytes / 3, nbytes / 2 + 2, nbytes, 2 * nbytes}, .nsegs = 4,
                     .cases = cases, .ncases = 4, .deterministic = det,
                     .algo = loop_algos[_i / 3], .p = ps[_i % 3]};
        for (int k = 0; k < 4; k++) /* each dtype fills max_bytes exactly */
            cases[k] = (coll_case_t){
                .in = {.count = nbytes / (k % 2 ? 2 : 4), .dtype = k % 2 ? DPT_DTYPE_BF16
                                                                        : DPT_DTYPE_F32,
                       .op = (dpt_redop_t)(k / 2), .seed = 77u + (uint64_t)k},
                .seg_idx = k};
        run_sweep(&s);
    }
    /* The budget: n (p + 1) / p for 16-bit types in deterministic mode, n otherwise. */
    dpt_p2p_t *eps[8];
    ck_assert_int_eq(dpt_p2p_loop_create(8, eps), DPT_OK);
    const size_t segs[] = {0, 1, 64, 1000, 4096, 1 << 20};
    for (int si = 0; si < 6; si++) {
        dpt_coll_config_t cfg = {.max_bytes = 4096, .segment_bytes = segs[si]};
        dpt_coll_t *c = NULL;
        ck_assert_int_eq(dpt_coll_create(eps[0], &cfg, &c), DPT_OK);
        ck_assert_uint_le(c->scratch_bytes, 4096 * 9 / 8 + 64); /* n (p + 1) / p, p = 8 */
        dpt_coll_destroy(c);
    }
    for (int r = 0; r < 8; r++)
        dpt_p2p_destroy(eps[r]);
    ck_assert_uint_le(dpt__scratch_need(2, 4096, 0), 3 * 4096 / 2 + 64);
    ck_assert_uint_ge(dpt__scratch_need(2, 4096, 0), 3 * 4096 / 2);
    ck_assert_uint_eq(dpt__scratch_need(1, 4096, 0), 0);
}
END_TEST

/* ---- broadcast and all-gather ------------------------------------------------------------- */

typedef struct bcast_ctx {
    size_t nbytes, segment;
    int root;
    unsigned char *bufs[MAX_RANKS];
} bcast_ctx_t;

static unsigned char pattern(size_t i, int salt) { return (unsigned char)(i * 131 + salt * 7 + 1); }

static dpt_status_t bcast_rank(rank_ctx_t *rc)
{
    bcast_ctx_t *b = rc->user;
    dpt_coll_config_t cfg = {.max_bytes = 64, .segment_bytes = b->segment};
    dpt_coll_t *c = NULL;
    DPT_CHECK(dpt_coll_create(rc->p2p, &cfg, &c));
    unsigned char *buf = b->bufs[rc->rank];
    for (size_t i = 0; i < b->nbytes; i++) /* only the root's bytes must survive */
        buf[i] = pattern(i, rc->rank == b->root ? 1000 : rc->rank);
    dpt_status_t st = dpt_coll_broadcast(c, buf, b->nbytes, b->root);
    dpt_coll_destroy(c);
    return st;
}

START_TEST(test_broadcast)
{
    int p = rank_counts[_i];
    const size_t sizes[] = {0, 1, 7, 1000, 100003};
    const size_t segments[] = {0, 64, 1000};
    const int roots[] = {0, p / 2, p - 1};
    bcast_ctx_t b;
    for (int r = 0; r < p; r++)
        b.bufs[r] = dpt_malloc(100003);
    for (int si = 0; si < 5; si++)
        for (int gi = 0; gi < 3; gi++)
            for (int ri = 0; ri < 3; ri++) {
                b.nbytes = sizes[si];
                b.segment = segments[gi];
                b.root = roots[ri];
                run_ranks(p, bcast_rank, &b);
                for (int r = 0; r < p; r++)
                    for (size_t i = 0; i < b.nbytes; i++)
                        EXPECT(b.bufs[r][i] == pattern(i, 1000),
                                      "broadcast p=%d root=%d nbytes=%zu segment=%zu: rank %d "
                                      "byte %zu wrong", p, b.root, b.nbytes, b.segment, r, i);
            }
    for (int r = 0; r < p; r++)
        dpt_free(b.bufs[r]);
}
END_TEST

typedef struct gather_ctx {
    size_t n;
    int in_place;
    unsigned char *recv[MAX_RANKS];
} gather_ctx_t;

static dpt_status_t allgather_rank(rank_ctx_t *rc)
{
    gather_ctx_t *g = rc->user;
    dpt_coll_config_t cfg = {.max_bytes = 4};
    dpt_coll_t *c = NULL;
    DPT_CHECK(dpt_coll_create(rc->p2p, &cfg, &c));
    unsigned char send[4096], *recv = g->recv[rc->rank];
    memset(recv, 0xee, g->n * (size_t)rc->p);
    unsigned char *src = g->in_place ? recv + (size_t)rc->rank * g->n : send;
    for (size_t i = 0; i < g->n; i++)
        src[i] = pattern(i, rc->rank);
    dpt_status_t st = dpt_coll_allgather(c, src, g->n, recv);
    dpt_coll_destroy(c);
    return st;
}

START_TEST(test_allgather)
{
    int p = rank_counts[_i];
    const size_t sizes[] = {0, 1, 13, 4096};
    gather_ctx_t g;
    for (int r = 0; r < p; r++)
        g.recv[r] = dpt_malloc(4096 * (size_t)p);
    for (int si = 0; si < 4; si++)
        for (g.in_place = 0; g.in_place < 2; g.in_place++) {
            g.n = sizes[si];
            run_ranks(p, allgather_rank, &g);
            for (int r = 0; r < p; r++)
                for (int from = 0; from < p; from++)
                    for (size_t i = 0; i < g.n; i++)
                        EXPECT(g.recv[r][(size_t)from * g.n + i] == pattern(i, from),
                                      "allgather p=%d n=%zu in_place=%d: rank %d block %d byte "
                                      "%zu wrong", p, g.n, g.in_place, r, from, i);
        }
    for (int r = 0; r < p; r++)
        dpt_free(g.recv[r]);
}
END_TEST

/* ---- no allocation inside the collectives ---------------------------------------------------- */

typedef struct noalloc_ctx {
    pthread_barrier_t barrier;
    uint64_t before, after;
} noalloc_ctx_t;

static dpt_status_t noalloc_rank(rank_ctx_t *rc)
{
    noalloc_ctx_t *na = rc->user;
    enum { N = 5000 };
    static float bufs[MAX_RANKS][N];
    float *buf = bufs[rc->rank];
    dpt_coll_t *c[2] = {NULL, NULL};
    dpt_status_t st = DPT_OK;
    for (int det = 0; det < 2 && st == DPT_OK; det++) {
        dpt_coll_config_t cfg = {.max_bytes = sizeof bufs[0], .segment_bytes = 512,
                                 .deterministic = det};
        st = dpt_coll_create(rc->p2p, &cfg, &c[det]);
        if (st == DPT_OK)   /* at setup, as documented: the probe allocates */
            st = dpt_coll_auto_tune(c[det]);
    }
    pthread_barrier_wait(&na->barrier); /* every context exists */
    if (rc->rank == 0)
        na->before = dpt_alloc_count();
    pthread_barrier_wait(&na->barrier);
    for (int det = 0; det < 2 && st == DPT_OK; det++)
        for (int a = 0; a < N_LOOP_ALGOS && st == DPT_OK; a++) {
            for (int i = 0; i < N; i++)
                buf[i] = (float)(i % 17) + (float)rc->rank;
            st = dpt_coll_allreduce(c[det], buf, N, DPT_DTYPE_F32, DPT_REDOP_AVG, loop_algos[a]);
            if (st == DPT_OK)
                st = dpt_coll_allreduce(c[det], buf, 7, DPT_DTYPE_BF16, DPT_REDOP_SUM,
                                        loop_algos[a]);
        }
    if (st == DPT_OK)
        st = dpt_coll_broadcast(c[0], buf, sizeof bufs[0], rc->p - 1);
    if (st == DPT_OK)
        st = dpt_coll_allgather(c[0], bufs[rc->rank] + rc->rank * 100, 400, buf);
    pthread_barrier_wait(&na->barrier); /* every collective has returned */
    if (rc->rank == 0)
        na->after = dpt_alloc_count();
    pthread_barrier_wait(&na->barrier);
    dpt_coll_destroy(c[0]);
    dpt_coll_destroy(c[1]);
    return st;
}

START_TEST(test_no_alloc)
{
    noalloc_ctx_t na;
    pthread_barrier_init(&na.barrier, NULL, 5);
    run_ranks(5, noalloc_rank, &na);
    pthread_barrier_destroy(&na.barrier);
    ck_assert_uint_eq(na.after, na.before);
}
END_TEST

/* ---- errors ---------------------------------------------------------------------------------- */

START_TEST(test_errors)
{
    dpt_p2p_t *ep[1];
    ck_assert_int_eq(dpt_p2p_loop_create(0, ep), DPT_ERR_INVALID_ARG);
    ck_assert_int_eq(dpt_p2p_loop_create(1, ep), DPT_OK);
    dpt_coll_t *c = NULL;
    ck_assert_int_eq(dpt_coll_create(ep[0], NULL, &c), DPT_ERR_INVALID_ARG);
    dpt_coll_config_t cfg = {.max_bytes = 64};
    ck_assert_int_eq(dpt_coll_create(ep[0], &cfg, &c), DPT_OK);
    float buf[32] = {0};

    ck_assert_int_eq(dpt_coll_allreduce(c, buf, 17, DPT_DTYPE_F32, DPT_REDOP_SUM,
                                        DPT_COLL_ALGO_RING), DPT_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(dpt_error_get(), "max_bytes"));
    ck_assert_ptr_nonnull(strstr(dpt_error_get(), "rank 0"));
    static const struct {
        int null_buf;
        size_t count;
        dpt_dtype_t dtype;
        dpt_redop_t op;
        dpt_coll_algo_t algo;
        dpt_status_t want;
        const char *msg; /* expected in the error message */
    } calls[] = {
        {0, 32, DPT_DTYPE_BF16, DPT_REDOP_SUM, DPT_COLL_ALGO_RD, DPT_OK, NULL}, /* 64 B: fits */
        {0, 33, DPT_DTYPE_F16, DPT_REDOP_SUM, DPT_COLL_ALGO_RD, DPT_ERR_INVALID_ARG, "max_bytes"},
        {1, 0, DPT_DTYPE_F32, DPT_REDOP_SUM, DPT_COLL_ALGO_TREE, DPT_OK, NULL},
        {1, 1, DPT_DTYPE_F32, DPT_REDOP_SUM, DPT_COLL_ALGO_TREE, DPT_ERR_INVALID_ARG, "NULL buf"},
        {0, 1, DPT_DTYPE_COUNT, DPT_REDOP_SUM, DPT_COLL_ALGO_TREE, DPT_ERR_INVALID_ARG, "dtype"},
        {0, 1, DPT_DTYPE_F32, DPT_REDOP_COUNT, DPT_COLL_ALGO_TREE, DPT_ERR_INVALID_ARG, "op"},
        {0, 1, DPT_DTYPE_F32, DPT_REDOP_SUM, DPT_COLL_ALGO_COUNT, DPT_ERR_INVALID_ARG, "algo"},
        {0, 1, DPT_DTYPE_F32, DPT_REDOP_SUM, DPT_COLL_ALGO_MPI, DPT_ERR_UNSUPPORTED, "'mpi'"},
    };
    for (size_t k = 0; k < sizeof calls / sizeof calls[0]; k++) {
        dpt_status_t st = dpt_coll_allreduce(c, calls[k].null_buf ? NULL : buf, calls[k].count,
                                             calls[k].dtype, calls[k].op, calls[k].algo);
        ck_assert_msg(st == calls[k].want, "call %zu: %s", k, dpt_status_str(st));
        if (calls[k].msg)
            ck_assert_msg(strstr(dpt_error_get(), calls[k].msg), "call %zu: '%s' not in: %s", k,
                          calls[k].msg, dpt_error_get());
    }
    ck_assert_int_eq(dpt_coll_broadcast(c, buf, 4, 1), DPT_ERR_INVALID_ARG);
    ck_assert_int_eq(dpt_coll_broadcast(c, buf, 4, -1), DPT_ERR_INVALID_ARG);
    ck_assert_int_eq(dpt_coll_broadcast(c, buf, 4, 0), DPT_OK);
    ck_assert_int_eq(dpt_coll_allgather(c, buf + 1, 8, buf), DPT_ERR_INVALID_ARG); /* overlap */
    ck_assert_int_eq(dpt_coll_allgather(c, buf + 8, 8, buf), DPT_OK);
    ck_assert_int_eq(dpt_coll_rank(c), 0);
    ck_assert_int_eq(dpt_coll_size(c), 1);
    dpt_coll_destroy(c);
    dpt_p2p_destroy(ep[0]);
}
END_TEST

START_TEST(test_algo_names)
{
    dpt_coll_algo_t a = DPT_COLL_ALGO_COUNT;
    for (int i = 0; i < DPT_COLL_ALGO_COUNT; i++) {
        ck_assert_int_eq(dpt_coll_algo_from_name(dpt_coll_algo_name((dpt_coll_algo_t)i), &a),
                         DPT_OK);
        ck_assert_int_eq(a, i);
    }
    ck_assert_str_eq(dpt_coll_algo_name(DPT_COLL_ALGO_RHD), "rhd");
    ck_assert_int_eq(dpt_coll_algo_from_name("rign", &a), DPT_ERR_INVALID_ARG);
    const char *msg = dpt_error_get();
    ck_assert_ptr_nonnull(strstr(msg, "'rign'"));
    const char *known[] = {"ring", "tree", "rd", "rhd", "mpi"};
    for (int i = 0; i < 5; i++)
        ck_assert_msg(strstr(msg, known[i]), "'%s' missing from: %s", known[i], msg);
    const char *later[] = {"shm", "hier", "auto", "nccl"};   /* every name is in the list */
    for (int i = 0; i < 4; i++)
        ck_assert_msg(strstr(msg, later[i]), "'%s' missing from: %s", later[i], msg);
    ck_assert_int_eq(dpt_coll_algo_from_name(NULL, &a), DPT_ERR_INVALID_ARG);
    ck_assert_int_eq(a, DPT_COLL_ALGO_COUNT - 1); /* untouched by failures */
}
END_TEST

/* ---- the loop transport's matching rules ---------------------------------------------------- */

static dpt_status_t p2p_rank(rank_ctx_t *rc)
{
    dpt_p2p_t *p = rc->p2p;
    const dpt__p2p_ops_t *o = p->ops;
    int *seen = rc->user; /* (6) values rank 1 received */
    dpt__req_t rq[6] = {DPT__REQ_NULL, DPT__REQ_NULL, DPT__REQ_NULL, DPT__REQ_NULL,
                        DPT__REQ_NULL, DPT__REQ_NULL};
    static const int vals[4] = {11, 22, 33, 44};
    if (rc->rank == 0) {
        /* Same tag: matched in posting order. Tags 8 then 9, received in the other order. */
        for (int i = 0; i < 3; i++)
            DPT_CHECK(o->isend(p, &vals[i], sizeof(int), 1, 7, &rq[i]));
        DPT_CHECK(o->isend(p, &vals[3], sizeof(int), 1, 8, &rq[3]));
        DPT_CHECK(o->isend(p, &vals[0], sizeof(int), 1, 9, &rq[4]));
        DPT_CHECK(o->isend(p, NULL, 0, 1, 10, &rq[5])); /* zero bytes */
        DPT_CHECK(o->waitall(p, rq, 6));
        /* Size mismatch: both sides see an error. */
        int big[2] = {1, 2};
        DPT_CHECK(o->isend(p, big, sizeof big, 1, 11, &rq[0]));
        return o->waitall(p, rq, 1) == DPT_ERR_INTERNAL ? DPT_OK
                                                         : dpt_error_set(DPT_ERR_INTERNAL, "no "
                                                                         "mismatch on send");
    }
    DPT_CHECK(o->irecv(p, &seen[4], sizeof(int), 0, 9, &rq[4]));
    DPT_CHECK(o->irecv(p, &seen[3], sizeof(int), 0, 8, &rq[3]));
    for (int i = 0; i < 3; i++)
        DPT_CHECK(o->irecv(p, &seen[i], sizeof(int), 0, 7, &rq[i]));
    DPT_CHECK(o->irecv(p, NULL, 0, 0, 10, &rq[5]));
    DPT_CHECK(o->waitall(p, rq, 6));
    DPT_CHECK(o->waitall(p, rq, 6)); /* completed requests are null now: a no-op */
    int small = 0;
    DPT_CHECK(o->irecv(p, &small, sizeof small, 0, 11, &rq[0]));
    if (o->waitall(p, rq, 1) != DPT_ERR_INTERNAL || !strstr(dpt_error_get(), "size mismatch"))
        return dpt_error_set(DPT_ERR_INTERNAL, "no mismatch reported on receive");
    seen[5] = small;
    return DPT_OK;
}

START_TEST(test_p2p_loop_matching)
{
    int seen[6] = {0};
    run_ranks(2, p2p_rank, seen);
    ck_assert_int_eq(seen[0], 11);
    ck_assert_int_eq(seen[1], 22);
    ck_assert_int_eq(seen[2], 33);
    ck_assert_int_eq(seen[3], 44);
    ck_assert_int_eq(seen[4], 11);
    ck_assert_int_eq(seen[5], 0); /* a mismatched message is not delivered */
}
END_TEST

/* ---- double binary tree shape ------------------------------------------------------------- */

START_TEST(test_dtree_shape)
{
    for (int p = 1; p <= 70; p++) {
        dpt__dtree_t t[70];
        for (int r = 0; r < p; r++)
            dpt__dtree_init(p, r, &t[r]);
        for (int k = 0; k < 2; k++) {
            int roots = 0;
            for (int r = 0; r < p; r++) {
                const dpt__tree_node_t *nd = &t[r].node[k];
                ck_assert_int_le(nd->depth, t[r].maxdepth[k]);
                ck_assert_int_le(t[r].maxdepth[k], 2 * (int)ceil(log2(p + 1)));
                if (nd->parent < 0) {
                    roots++;
                    ck_assert_int_eq(nd->depth, 0);
                    continue;
                }
                const dpt__tree_node_t *up = &t[nd->parent].node[k];
                ck_assert_msg(up->child[0] == r || up->child[1] == r,
                              "p=%d tree %d: rank %d's parent %d does not list it", p, k, r,
                              nd->parent);
                ck_assert_int_eq(nd->depth, up->depth + 1);
                for (int ci = 0; ci < 2; ci++) /* children point back */
                    if (nd->child[ci] >= 0)
                        ck_assert_int_eq(t[nd->child[ci]].node[k].parent, r);
            }
            ck_assert_int_eq(roots, 1);
        }
        if (p % 2 == 0) /* complementary: no rank is an inner node of both trees */
            for (int r = 0; r < p; r++) {
                int inner0 = t[r].node[0].child[0] >= 0 || t[r].node[0].child[1] >= 0;
                int inner1 = t[r].node[1].child[0] >= 0 || t[r].node[1].child[1] >= 0;
                ck_assert_msg(!(inner0 && inner1), "p=%d: rank %d inner in both trees", p, r);
            }
    }
}
END_TEST

/* ---- dtype converters --------------------------------------------------------------------- */

START_TEST(test_f16_convert)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = dpt__f16_to_f32((uint16_t)h);
        uint16_t back = dpt__f32_to_f16(f);
        int is_nan = (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu);
        ck_assert_msg(back == (is_nan ? (h | 0x200u) : h), "f16 0x%04x -> %a -> 0x%04x", h, f,
                      back);
#ifdef __FLT16_MAX__
        _Float16 ref;
        uint16_t hb = (uint16_t)h;
        memcpy(&ref, &hb, 2);
        if (!is_nan)
            ck_assert_msg(f == (float)ref || (f == 0 && (float)ref == 0), "f16 0x%04x", h);
#endif
    }
    /* Rounding edges: ties to even, overflow threshold, subnormals, underflow. */
    ck_assert_uint_eq(dpt__f32_to_f16(65504.0f), 0x7bffu);
    ck_assert_uint_eq(dpt__f32_to_f16(65519.99f), 0x7bffu);
    ck_assert_uint_eq(dpt__f32_to_f16(65520.0f), 0x7c00u);
    ck_assert_uint_eq(dpt__f32_to_f16(-1e9f), 0xfc00u);
    ck_assert_uint_eq(dpt__f32_to_f16(1.0f + ldexpf(1, -11)), 0x3c00u);     /* tie, even */
    ck_assert_uint_eq(dpt__f32_to_f16(1.0f + 3 * ldexpf(1, -11)), 0x3c02u); /* tie, even */
    ck_assert_uint_eq(dpt__f32_to_f16(ldexpf(1, -24)), 0x0001u);
    ck_assert_uint_eq(dpt__f32_to_f16(ldexpf(1, -25)), 0x0000u);            /* tie, even */
    ck_assert_uint_eq(dpt__f32_to_f16(ldexpf(1.5f, -25)), 0x0001u);
    ck_assert_uint_eq(dpt__f32_to_f16(ldexpf(3, -25)), 0x0002u);            /* tie, even */
    ck_assert_uint_eq(dpt__f32_to_f16(-ldexpf(1, -30)), 0x8000u);
#ifdef __FLT16_MAX__
    dpt_rng_t rng;
    dpt_rng_init(&rng, 5, 0);
    for (int i = 0; i < 1000000; i++) {
        uint32_t u = dpt_rng_u32(&rng);
        if (i % 2) /* half of them near f16's range */
            u = (u & 0x807fffffu) | ((100u + dpt_rng_below(&rng, 50)) << 23);
        float f = dpt__bits_f32(u);
        if (isnan(f))
            continue;
        _Float16 ref = (_Float16)f;
        uint16_t want;
        memcpy(&want, &ref, 2);
        ck_assert_msg(dpt__f32_to_f16(f) == want, "f32 %a -> 0x%04x, _Float16 gives 0x%04x", f,
                      dpt__f32_to_f16(f), want);
    }
#endif
}
END_TEST

START_TEST(test_bf16_convert)
{
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t back = dpt__f32_to_bf16(dpt__bf16_to_f32((uint16_t)h));
        int is_nan = (h & 0x7f80u) == 0x7f80u && (h & 0x7fu);
        ck_assert_msg(back == (is_nan ? (h | 0x40u) : h), "bf16 0x%04x -> 0x%04x", h, back);
    }
    ck_assert_uint_eq(dpt__f32_to_bf16(1.0f), 0x3f80u);
    ck_assert_uint_eq(dpt__f32_to_bf16(1.0f + ldexpf(1, -8)), 0x3f80u);     /* tie, even */
    ck_assert_uint_eq(dpt__f32_to_bf16(1.0f + 3 * ldexpf(1, -8)), 0x3f82u); /* tie, even */
    ck_assert_uint_eq(dpt__f32_to_bf16(1.0f + ldexpf(1, -8) + ldexpf(1, -20)), 0x3f81u);
    ck_assert_uint_eq(dpt__f32_to_bf16(-0.0f), 0x8000u);
    ck_assert_uint_eq(dpt__f32_to_bf16(dpt__bits_f32(0x7f7fffffu)), 0x7f80u); /* to Inf */
    ck_assert_uint_eq(dpt__f32_to_bf16(dpt__bits_f32(0x7f800001u)), 0x7fc0u); /* quiet NaN */
    ck_assert_uint_eq(dpt__f32_to_bf16(dpt__bits_f32(0x00010000u)), 0x0001u); /* subnormal */
    /* Nearest-even against a double-precision reference on random f32 values. */
    dpt_rng_t rng;
    dpt_rng_init(&rng, 6, 0);
    for (int i = 0; i < 200000; i++) {
        float f = dpt__bits_f32(dpt_rng_u32(&rng) & 0xbfffffffu); /* finite, below 2^64 */
        uint16_t h = dpt__f32_to_bf16(f);
        double x = f, y = dpt__bf16_to_f32(h);
        double lo = dpt__bf16_to_f32((uint16_t)(h - 1)), hi = dpt__bf16_to_f32((uint16_t)(h + 1));
        if ((h & 0x7fffu) != 0) /* away from zero, where h - 1 crosses the sign */
            ck_assert_msg(fabs(x - y) <= fabs(x - lo) && fabs(x - y) <= fabs(x - hi),
                          "bf16 of %a is 0x%04x, not the nearest", f, h);
        if (fabs(x - y) == fabs(x - lo) || fabs(x - y) == fabs(x - hi))
            ck_assert_msg((h & 1u) == 0, "bf16 tie of %a not to even", f);
    }
}
END_TEST

static Suite *coll_suite(void)
{
    Suite *s = suite_create("coll");
    TCase *tc = tcase_create("allreduce");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_allreduce_sweep, 0, N_LOOP_ALGOS * N_RANK_COUNTS);
    tcase_add_loop_test(tc, test_allreduce_deterministic, 0, N_LOOP_ALGOS * N_RANK_COUNTS);
    tcase_add_loop_test(tc, test_allreduce_large, 0, N_LOOP_ALGOS * 2);
    tcase_add_loop_test(tc, test_allreduce_full_scratch, 0, N_LOOP_ALGOS * 3);
    tcase_add_test(tc, test_no_alloc);
    suite_add_tcase(s, tc);

    TCase *tm = tcase_create("movement");
    tcase_set_timeout(tm, 60);
    tcase_add_loop_test(tm, test_broadcast, 0, N_RANK_COUNTS);
    tcase_add_loop_test(tm, test_allgather, 0, N_RANK_COUNTS);
    suite_add_tcase(s, tm);

    TCase *tb = tcase_create("basics");
    tcase_set_timeout(tb, 30);
    tcase_add_test(tb, test_errors);
    tcase_add_test(tb, test_algo_names);
    tcase_add_test(tb, test_p2p_loop_matching);
    tcase_add_test(tb, test_dtree_shape);
    tcase_add_test(tb, test_f16_convert);
    tcase_add_test(tb, test_bf16_convert);
    suite_add_tcase(s, tb);
    return s;
}

DPT_CHECK_MAIN(coll_suite)
