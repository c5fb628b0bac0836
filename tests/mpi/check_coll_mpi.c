/* check_coll_mpi.c: the collective layer over the MPI transport, run under mpiexec at np 2..8
 * (ctest mpi.check_coll_np*): every algorithm including "mpi", f32/bf16/fp16, SUM/AVG, normal and
 * deterministic mode, against MPI_Allreduce of the same data (float64 sums for the tolerance
 * check, plus MPI_FLOAT sums for f32), bitwise agreement with rank 0's result, the rank-ordered
 * fold in deterministic mode, broadcast, all-gather and all-to-all exactly, and argument errors.
 *
 * Harness: plain checks of our own, not libcheck. Check forks per test, which does not mix with
 * MPI, and with CK_NOFORK a failing assert would end one rank while the others wait in the next
 * collective. CHECK counts a failure, prints it with the rank, and carries on, so every rank runs
 * the same sequence of collectives; at the end the failure counts are summed over all ranks and
 * every rank returns non-zero if any rank failed. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll_fixture.h"
#include "dptrain/alloc.h"
#include "dptrain/coll.h"

static int g_rank, g_size, g_failures;

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            if (g_failures++ < 20) {                                                           \
                fprintf(stderr, "[rank %d] FAIL %s:%d: ", g_rank, __FILE__, __LINE__);         \
                fprintf(stderr, __VA_ARGS__);                                                  \
                fputc('\n', stderr);                                                           \
            }                                                                                  \
        }                                                                                      \
    } while (0)

#define LARGE_COUNT (((size_t)1 << 20) + 3)
#define N_SEGS 2

static const size_t segs[N_SEGS] = {0, 1000};

typedef struct ctx {
    dpt_p2p_t *p2p;
    dpt_coll_t *coll[2][N_SEGS]; /* [deterministic][segment size] */
    unsigned char *buf, *tmp;    /* LARGE_COUNT f32 each */
    float *fref;                 /* LARGE_COUNT: MPI_FLOAT sum of the same data */
    double *sum, *sumabs, *x;    /* LARGE_COUNT each: float64 references */
} ctx_t;

/* One all-reduce case on every rank, then every check. */
static void run_case(ctx_t *t, dpt_coll_algo_t algo, int det, int seg, const fx_input_t *in)
{
    int p = g_size;
    size_t bytes = in->count * dpt_dtype_size(in->dtype);
    char what[160], why[160];
    snprintf(what, sizeof what, "%s%s np=%d count=%zu %s %s segment=%zu", dpt_coll_algo_name(algo),
             det ? " (deterministic)" : "", p, in->count, fx_dtype_name(in->dtype),
             in->op == DPT_REDOP_AVG ? "avg" : "sum", segs[seg]);
    fx_fill(in, p, g_rank, t->buf);
    for (size_t i = 0; i < in->count; i++) /* this rank's input, for the MPI references */
        t->x[i] = fx_to_f32(in->dtype, fx_load(in->dtype, t->buf, i));
    int f32 = in->dtype == DPT_DTYPE_F32;
    if (f32)
        memcpy(t->fref, t->buf, bytes);
    const char *missing;
    if (algo == DPT_COLL_ALGO_NCCL) /* device buffers only (tests/gpu) */
        return;
    if (!dpt_coll_algo_available(t->coll[det][seg], algo, &missing)) {
        /* only shm may be missing, and only when the ranks span several hosts (netns test) */
        char host[2][256] = {"", ""};
        MPI_Get_processor_name(host[0], &(int){0});
        if (g_rank == 0)
            memcpy(host[1], host[0], sizeof host[0]);
        MPI_Bcast(host[1], sizeof host[1], MPI_CHAR, 0, MPI_COMM_WORLD);
        int other = strcmp(host[0], host[1]) != 0, any = 0;
        MPI_Allreduce(&other, &any, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD);
        /* hier needs two nodes: hosts, or blocks of $DPTRAIN_HIER_NODE_SIZE ranks */
        const char *env = getenv("DPTRAIN_HIER_NODE_SIZE");
        int block = env ? atoi(env) : 0;
        int hier_nodes = block > 0 ? (p + block - 1) / block >= 2 : any;
        if (algo == DPT_COLL_ALGO_HIER)
            CHECK(!hier_nodes, "%s unavailable with two nodes or more: %s", what, missing);
        else
            CHECK(algo == DPT_COLL_ALGO_SHM && any, "%s unavailable on one host: %s", what,
                  missing);
        return;
    }
    dpt_status_t st = dpt_coll_allreduce(t->coll[det][seg], t->buf, in->count, in->dtype, in->op,
                                         algo);
    CHECK(st == DPT_OK, "%s: %s: %s", what, dpt_status_str(st), dpt_error_get());

    /* Bitwise agreement: everybody compares with rank 0's bits. */
    memcpy(t->tmp, t->buf, bytes);
    MPI_Bcast(t->tmp, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD);
    size_t first = bytes;
    for (size_t i = 0; i < in->count && first == bytes; i++)
        if (fx_load(in->dtype, t->buf, i) != fx_load(in->dtype, t->tmp, i))
            first = i;
    CHECK(first == bytes, "%s: element %zu is 0x%x here, 0x%x on rank 0", what, first,
          first < bytes ? fx_load(in->dtype, t->buf, first) : 0,
          first < bytes ? fx_load(in->dtype, t->tmp, first) : 0);

    if (det) {
        for (size_t i = 0; i < in->count; i++) {
            uint32_t got = fx_load(in->dtype, t->buf, i), want = fx_canonical_bits(in, p, i);
            if (got != want) {
                CHECK(0, "%s: element %zu is 0x%x, the rank-ordered fold is 0x%x", what, i, got,
                      want);
                break;
            }
        }
        return;
    }
    /* References from MPI_Allreduce of the same inputs: a float64 sum (and of magnitudes), and
     * for f32 MPI's own float sum. */
    MPI_Allreduce(t->x, t->sum, (int)in->count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    for (size_t i = 0; i < in->count; i++)
        t->x[i] = isfinite(t->x[i]) ? fabs(t->x[i]) : 0;
    MPI_Allreduce(t->x, t->sumabs, (int)in->count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    if (f32)
        MPI_Allreduce(MPI_IN_PLACE, t->fref, (int)in->count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    for (size_t i = 0; i < in->count; i++) {
        uint32_t got = fx_load(in->dtype, t->buf, i);
        if (!fx_check_element(in, p, t->sum[i], t->sumabs[i], got, why, sizeof why)) {
            CHECK(0, "%s: element %zu is %s", what, i, why);
            break;
        }
        if (f32 && isfinite(t->sum[i])) { /* within two tolerances of MPI's float sum */
            double mpi = t->fref[i] / (in->op == DPT_REDOP_AVG ? p : 1);
            double g = fx_to_f32(in->dtype, got);
            double tol = 2 * (p + 2) * ldexp(1, -24) * t->sumabs[i] + 1e-30;
            if (fabs(g - mpi) > tol) {
                CHECK(0, "%s: element %zu is %.9g, MPI_Allreduce gives %.9g", what, i, g, mpi);
                break;
            }
        }
    }
}

static void allreduce_sweep(ctx_t *t)
{
    size_t p = (size_t)g_size;
    const size_t counts[] = {0, 1, p - 1, p, p + 1, 13, 1021, 70001};
    uint64_t seed = 1;
    for (int a = 0; a < DPT_COLL_ALGO_COUNT; a++)
        for (int det = 0; det < 2; det++)
            for (size_t k = 0; k < sizeof counts / sizeof *counts; k++)
                for (int d = 0; d < DPT_DTYPE_COUNT; d++)
                    for (int op = 0; op < DPT_REDOP_COUNT; op++)
                        for (int sg = 0; sg < (det ? 1 : N_SEGS); sg++) {
                            /* "mpi" keeps NaN-ness but not payloads (see algo_mpi.c). */
                            int specials = det ? 0 : a == DPT_COLL_ALGO_MPI ? 2 : 1;
                            fx_input_t in = {.count = counts[k], .dtype = (dpt_dtype_t)d,
                                             .op = (dpt_redop_t)op, .specials = specials,
                                             .seed = seed++};
                            run_case(t, (dpt_coll_algo_t)a, det, sg, &in);
                        }
    for (int a = 0; a < DPT_COLL_ALGO_COUNT; a++) { /* 1 Mi + 3 elements */
        fx_input_t in = {.count = LARGE_COUNT, .dtype = DPT_DTYPE_F32, .seed = seed++};
        run_case(t, (dpt_coll_algo_t)a, 0, 0, &in);
        in.op = DPT_REDOP_AVG;
        run_case(t, (dpt_coll_algo_t)a, 1, 0, &in);
    }
}

static unsigned char pattern(size_t i, int salt) { return (unsigned char)(i * 131 + salt * 7 + 1); }

static void movement(ctx_t *t)
{
    const size_t sizes[] = {0, 1, 100003};
    const int roots[] = {0, g_size - 1, g_size / 2};
    for (int sg = 0; sg < N_SEGS; sg++)
        for (int si = 0; si < 3; si++)
            for (int ri = 0; ri < 3; ri++) {
                size_t n = sizes[si];
                for (size_t i = 0; i < n; i++)
                    t->buf[i] = pattern(i, g_rank == roots[ri] ? 1000 : g_rank);
                dpt_status_t st = dpt_coll_broadcast(t->coll[0][sg], t->buf, n, roots[ri]);
                CHECK(st == DPT_OK, "broadcast: %s", dpt_error_get());
                size_t bad = n;
                for (size_t i = 0; i < n && bad == n; i++)
                    if (t->buf[i] != pattern(i, 1000))
                        bad = i;
                CHECK(bad == n, "broadcast np=%d root=%d nbytes=%zu segment=%zu: byte %zu wrong",
                      g_size, roots[ri], n, segs[sg], bad);
            }
    const size_t per_rank[] = {0, 13, 4096};
    for (int si = 0; si < 3; si++)
        for (int in_place = 0; in_place < 2; in_place++) {
            size_t n = per_rank[si];
            unsigned char *src = in_place ? t->buf + (size_t)g_rank * n : t->tmp;
            memset(t->buf, 0xee, n * (size_t)g_size);
            for (size_t i = 0; i < n; i++)
                src[i] = pattern(i, g_rank);
            dpt_status_t st = dpt_coll_allgather(t->coll[0][0], src, n, t->buf);
            CHECK(st == DPT_OK, "allgather: %s", dpt_error_get());
            for (int from = 0; from < g_size; from++)
                for (size_t i = 0; i < n; i++)
                    if (t->buf[(size_t)from * n + i] != pattern(i, from)) {
                        CHECK(0, "allgather np=%d n=%zu in_place=%d: block %d byte %zu wrong",
                              g_size, n, in_place, from, i);
                        i = n;
                        from = g_size;
                    }
        }
    /* all-to-all: block `to` of this rank's send is pattern(from * 64 + to); segment 1000 cuts
     * the 4096-byte blocks in pieces */
    for (int sg = 0; sg < N_SEGS; sg++)
        for (int si = 0; si < 3; si++) {
            size_t n = per_rank[si];
            for (int to = 0; to < g_size; to++)
                for (size_t i = 0; i < n; i++)
                    t->tmp[(size_t)to * n + i] = pattern(i, g_rank * 64 + to);
            memset(t->buf, 0xee, n * (size_t)g_size);
            dpt_status_t st = dpt_coll_alltoall(t->coll[0][sg], t->tmp, n, t->buf);
            CHECK(st == DPT_OK, "alltoall: %s", dpt_error_get());
            for (int from = 0; from < g_size; from++)
                for (size_t i = 0; i < n; i++)
                    if (t->buf[(size_t)from * n + i] != pattern(i, from * 64 + g_rank)) {
                        CHECK(0, "alltoall np=%d n=%zu segment=%zu: block from %d byte %zu wrong",
                              g_size, n, segs[sg], from, i);
                        i = n;
                        from = g_size;
                    }
        }
}

/* A buffer in the shm window (dpt_coll_buffer: zero-copy for shm) gives the same bits as an
 * ordinary buffer, for shm and for a message-passing algorithm, several times in a row. */
static void window_buffer(ctx_t *t)
{
    size_t cap = 0;
    float *w = dpt_coll_buffer(t->coll[0][0], &cap);
    int have = w != NULL, all = 0;
    MPI_Allreduce(&have, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    CHECK(have == all, "dpt_coll_buffer: some ranks have a window, some not");
    if (!all)
        return;   /* ranks on several hosts: no shm */
    const dpt_coll_algo_t algos[] = {DPT_COLL_ALGO_SHM, DPT_COLL_ALGO_RING};
    const size_t counts[] = {1, 1021, 70001};
    for (int k = 0; k < 3; k++)
        for (int a = 0; a < 2; a++)
            for (int rep = 0; rep < 3; rep++) {
                size_t n = counts[k];
                CHECK(n * sizeof(float) <= cap, "window of %zu bytes too small", cap);
                fx_input_t in = {.count = n, .dtype = DPT_DTYPE_F32, .op = DPT_REDOP_AVG,
                                 .seed = 900 + (uint64_t)(k * 10 + rep)};
                /* the ordinary buffer first: shm stages it through the window */
                fx_fill(&in, g_size, g_rank, t->buf);
                dpt_status_t s2 = dpt_coll_allreduce(t->coll[0][0], t->buf, n, in.dtype, in.op,
                                                     algos[a]);
                fx_fill(&in, g_size, g_rank, w);
                dpt_status_t s1 = dpt_coll_allreduce(t->coll[0][0], w, n, in.dtype, in.op, algos[a]);
                CHECK(s1 == DPT_OK && s2 == DPT_OK, "window %s: %s", dpt_coll_algo_name(algos[a]),
                      dpt_error_get());
                CHECK(memcmp(w, t->buf, n * sizeof(float)) == 0,
                      "window buffer and ordinary buffer differ: %s np=%d count=%zu",
                      dpt_coll_algo_name(algos[a]), g_size, n);
            }
    /* The first "auto" call of a context on its window buffer probes, timing shm in that very
     * slot, and must leave the caller's data intact: the (deterministic) result equals the
     * deterministic ring's on an ordinary buffer. */
    enum { N = 4096 };
    dpt_coll_t *fresh = NULL;
    dpt_coll_config_t cfg = {.max_bytes = N * sizeof(float), .deterministic = 1};
    dpt_status_t st = dpt_coll_create(t->p2p, &cfg, &fresh);
    CHECK(st == DPT_OK, "coll_create: %s", dpt_error_get());
    float *fw = st == DPT_OK ? dpt_coll_buffer(fresh, NULL) : NULL;
    if (fw) {
        fx_input_t in = {.count = N, .dtype = DPT_DTYPE_F32, .op = DPT_REDOP_SUM, .seed = 990};
        fx_fill(&in, g_size, g_rank, t->buf);
        st = dpt_coll_allreduce(t->coll[1][0], t->buf, N, in.dtype, in.op, DPT_COLL_ALGO_RING);
        CHECK(st == DPT_OK, "ring: %s", dpt_error_get());
        fx_fill(&in, g_size, g_rank, fw);
        st = dpt_coll_allreduce(fresh, fw, N, in.dtype, in.op, DPT_COLL_ALGO_AUTO);
        CHECK(st == DPT_OK, "first auto call on the window: %s", dpt_error_get());
        CHECK(memcmp(fw, t->buf, N * sizeof(float)) == 0,
              "first auto call on the window buffer: result differs from ring's (np=%d)", g_size);
    }
    dpt_coll_destroy(fresh);
}

/* Many shm calls back to back with different data, small (the flag path, whose two buffers per
 * rank are reused on alternate calls) and large (the barrier path) mixed, the ranks put out of
 * step by uneven delays: a rank that reused a buffer a peer still reads, or read a peer's buffer
 * before it was written, gives a wrong sum. Integer data: the exact sum is known. */
static void shm_back_to_back(ctx_t *t)
{
    if (!dpt_coll_algo_available(t->coll[0][0], DPT_COLL_ALGO_SHM, NULL))
        return;
    const size_t counts[] = {1, 5, 4096, 4097, 300};   /* 4096 f32 = the flag path's limit */
    float *x = (float *)t->buf;
    int p = g_size, bad_calls = 0;
    for (int k = 0; k < 400; k++) {
        size_t n = counts[k % 5];
        for (size_t i = 0; i < n; i++)
            x[i] = (float)((g_rank + 1) * (k + 1)) + (float)(i % 7);
        volatile double spin = 0;   /* uneven start: a different rank is late each call */
        for (int d = 0; d < ((k + g_rank) % p) * 2000; d++)
            spin += d;
        dpt_status_t st = dpt_coll_allreduce(t->coll[0][0], x, n, DPT_DTYPE_F32, DPT_REDOP_SUM,
                                             DPT_COLL_ALGO_SHM);
        CHECK(st == DPT_OK, "shm back to back: %s", dpt_error_get());
        for (size_t i = 0; i < n; i++)
            if (x[i] != (float)((k + 1) * p * (p + 1) / 2) + (float)(p * (int)(i % 7))) {
                bad_calls++;
                break;
            }
    }
    CHECK(bad_calls == 0, "shm back to back np=%d: %d of 400 calls wrong", p, bad_calls);
}

/* auto's race: with $DPTRAIN_AUTO_RACE_ALL every size is a close race, so the first calls of a
 * size run the three best contenders in turn, timed, and then rank 0's verdict is broadcast.
 * Every call must be right while the race runs, and after it every rank must hold the same
 * choice (a local decision would split the ranks over two algorithms: a hang or wrong sums). */
static void auto_race(ctx_t *t)
{
    setenv("DPTRAIN_AUTO_RACE_ALL", "1", 1);
    dpt_coll_t *c = NULL;
    dpt_coll_config_t cfg = {.max_bytes = 4096 * sizeof(float)};
    dpt_status_t st = dpt_coll_create(t->p2p, &cfg, &c);
    if (st == DPT_OK)
        st = dpt_coll_auto_tune(c);
    unsetenv("DPTRAIN_AUTO_RACE_ALL");
    CHECK(st == DPT_OK, "auto race context: %s", dpt_error_get());
    if (st != DPT_OK) {
        dpt_coll_destroy(c);
        return;
    }
    float *x = (float *)t->buf;
    int p = g_size, bad_calls = 0;
    const size_t n = 1021;
    for (int k = 0; k < 3 * 3 + 3; k++) {   /* 3 contenders x 3 timed calls, then decided */
        for (size_t i = 0; i < n; i++)
            x[i] = (float)((g_rank + 1) * (k + 1)) + (float)(i % 5);
        st = dpt_coll_allreduce(c, x, n, DPT_DTYPE_F32, DPT_REDOP_SUM, DPT_COLL_ALGO_AUTO);
        CHECK(st == DPT_OK, "auto race call %d: %s", k, dpt_error_get());
        if (k == 4 && g_rank == 0)   /* questions on one rank only must not disturb the race */
            for (size_t q = 1; q <= 64; q++)
                (void)dpt_coll_auto_choice(c, NULL, q * 52, NULL);
        for (size_t i = 0; i < n; i++)
            if (x[i] != (float)((k + 1) * p * (p + 1) / 2) + (float)(p * (int)(i % 5))) {
                bad_calls++;
                break;
            }
    }
    CHECK(bad_calls == 0, "auto race np=%d: %d of 12 calls wrong", p, bad_calls);
    int mine = (int)dpt_coll_auto_choice(c, x, n * sizeof(float), NULL), lo = 0, hi = 0;
    MPI_Allreduce(&mine, &lo, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&mine, &hi, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    CHECK(lo == hi, "auto race np=%d: the ranks chose different algorithms (%d..%d)", p, lo, hi);
    dpt_coll_destroy(c);
}

static void errors(ctx_t *t)
{
    dpt_status_t st = dpt_coll_allreduce(t->coll[0][0], t->buf, LARGE_COUNT + 1, DPT_DTYPE_F32,
                                         DPT_REDOP_SUM, DPT_COLL_ALGO_MPI);
    CHECK(st == DPT_ERR_INVALID_ARG && strstr(dpt_error_get(), "max_bytes"),
          "oversized all-reduce: %s: %s", dpt_status_str(st), dpt_error_get());
    st = dpt_coll_broadcast(t->coll[0][0], t->buf, 4, g_size);
    CHECK(st == DPT_ERR_INVALID_ARG, "broadcast with root = size: %s", dpt_status_str(st));
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    ctx_t t = {0};
    size_t nbytes = LARGE_COUNT * sizeof(float);
    dpt_status_t st = dpt_p2p_mpi_create(MPI_COMM_WORLD, &t.p2p);
    CHECK(st == DPT_OK, "p2p_mpi_create: %s", dpt_error_get());
    for (int det = 0; det < 2 && st == DPT_OK; det++)
        for (int sg = 0; sg < N_SEGS && st == DPT_OK; sg++) {
            dpt_coll_config_t cfg = {.max_bytes = nbytes, .segment_bytes = segs[sg],
                                     .deterministic = det};
            st = dpt_coll_create(t.p2p, &cfg, &t.coll[det][sg]);
            CHECK(st == DPT_OK, "coll_create: %s", dpt_error_get());
        }
    t.buf = dpt_malloc(nbytes);
    t.tmp = dpt_malloc(nbytes);
    t.fref = dpt_malloc(nbytes);
    t.sum = dpt_malloc(LARGE_COUNT * sizeof(double));
    t.sumabs = dpt_malloc(LARGE_COUNT * sizeof(double));
    t.x = dpt_malloc(LARGE_COUNT * sizeof(double));
    int ready = st == DPT_OK && t.buf && t.tmp && t.fref && t.sum && t.sumabs && t.x, all_ready;
    MPI_Allreduce(&ready, &all_ready, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (all_ready) {
        allreduce_sweep(&t);
        movement(&t);
        window_buffer(&t);
        shm_back_to_back(&t);
        auto_race(&t);
        errors(&t);
    } else {
        CHECK(0, "setup failed on some rank");
    }
    for (int det = 0; det < 2; det++)
        for (int sg = 0; sg < N_SEGS; sg++)
            dpt_coll_destroy(t.coll[det][sg]);
    dpt_p2p_destroy(t.p2p);
    dpt_free(t.buf);
    dpt_free(t.tmp);
    dpt_free(t.fref);
    dpt_free(t.sum);
    dpt_free(t.sumabs);
    dpt_free(t.x);
    int total = 0;
    MPI_Allreduce(&g_failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (g_rank == 0)
        printf("check_coll_mpi np=%d: %s (%d failures over all ranks)\n", g_size,
               total ? "FAILED" : "passed", total);
    MPI_Finalize();
    return total ? EXIT_FAILURE : EXIT_SUCCESS;
}
