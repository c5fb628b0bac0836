/* auto.c: the "auto" all-reduce: per call, the algorithm with the lowest time predicted by the
 * alpha-beta-gamma model (coll_cost.h) for this message size and rank count.
 *
 * The model's parameters come from a short probe when the context is created, or from a cache
 * file keyed by the host set and rank layout (np, and the host of every rank), so later runs on
 * the same layout skip the probe:
 *   alpha, beta  least-relative-error fit of one-way times of a ping-pong between ranks 0 and 1
 *                over the transport (8 B .. 1 MiB)
 *   gamma        rank 0 times the f32 reduction kernel (dpt__reduce) over up to 4 MiB
 *   calibration  every candidate algorithm timed at a ladder of sizes (4 B, x4, ... up to
 *                the context's max_bytes, 64 MiB at most), each a median of 5 blocks of
 *                back-to-back calls (3 when one call fills a block), the blocks of all
 *                algorithms interleaved; when the runner-up is within 15% of the best, both
 *                get 8 more blocks (a close race is where noise picks wrong); the ladder stops early
 *                once the fastest algorithm needs more than PROBE_SLOW_S per call or the
 *                probe has used PROBE_BUDGET_S, and at
 *                bandwidth-bound sizes an algorithm 3x slower than the best is not timed
 *                further. dpt_coll_cost_estimate() then ranks by these times (log-log
 *                interpolation, the model's slope past the largest size): the formulas alone
 *                misrank close algorithms by more than the 10% that separate them.
 * A close race (other candidates estimated within 15% of the best; 30% past the largest probed
 * size) among calls of 1 ms or more (shorter ones the probe's blocks settle) is settled on the
 * real calls of that size: the contenders run in turn, 3 timed calls
 * each, and rank 0's medians name the winner (broadcast; dpt__auto_allreduce).
 * Rank 0 loads or measures (its clock decides), then broadcasts all of it, so every rank holds
 * the same bits and makes the same choice for the same size: the decision never depends on
 * local timing (that would deadlock). Within a process the result is kept per layout key, so
 * further contexts on the same layout (tests, a second trainer) do not probe again. The choice
 * is logged (info level) on rank 0 whenever it changes from one call to the next, with the
 * predicted time.
 *
 * Candidates: ring, tree, rd, rhd, and shm or hier where available; on a buffer inside the shm window
 * (dpt_coll_buffer) shm is ranked by its window timing ("shm0"). "mpi" is the baseline to
 * compare with, not a candidate (its internals are not modelled). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "comm/internal.h"
#include "core/internal.h"
#include "dptrain/env.h"
#include "dptrain/alloc.h"
#include "dptrain/coll_cost.h"
#include "dptrain/log.h"

#define PROBE_BUDGET_S 2.0
#define PROBE_SLOW_S 0.025
#define PROBE_MAX_BYTES ((size_t)64 << 20)
#define PROBE_BLOCK_S 0.001   /* aim of one timed block of back-to-back calls */
#define PROBE_CLOSE 1.15      /* runner-up within this factor of the best: time both again */
#define PROBE_EXTRA 8         /* further blocks of each of the two */
#define PROBE_BLOCKS_MAX (5 + PROBE_EXTRA)
#define TRIAL_CLOSE 1.15      /* per call: runner-up estimated within this factor: time both */
#define TRIAL_CLOSE_FAR 1.3   /* the same past the largest probed size (extrapolated) */
#define TRIAL_MIN_S 0.001     /* races only for calls estimated at least this long */

static const char *const cal_names[DPT_COLL_CAL_ALGOS] = DPT_COLL_CAL_NAMES;

/* Calibrated models already made in this process, by layout key and max_bytes. */
#define MEMO_SLOTS 8
static struct {
    char key[128];
    size_t max_bytes;
    dpt_coll_cost_t cost;
} memo[MEMO_SLOTS];
static int memo_n;
static pthread_mutex_t memo_lock = PTHREAD_MUTEX_INITIALIZER;

static int memo_get(const char *key, size_t max_bytes, dpt_coll_cost_t *out)
{
    int hit = 0;
    pthread_mutex_lock(&memo_lock);
    for (int i = 0; i < memo_n && !hit; i++)
        if (!strcmp(memo[i].key, key) && memo[i].max_bytes == max_bytes) {
            *out = memo[i].cost;
            hit = 1;
        }
    pthread_mutex_unlock(&memo_lock);
    return hit;
}

static void memo_put(const char *key, size_t max_bytes, const dpt_coll_cost_t *k)
{
    pthread_mutex_lock(&memo_lock);
    int i = memo_n < MEMO_SLOTS ? memo_n++ : MEMO_SLOTS - 1;
    snprintf(memo[i].key, sizeof memo[i].key, "%s", key);
    memo[i].max_bytes = max_bytes;
    memo[i].cost = *k;
    pthread_mutex_unlock(&memo_lock);
}

/* FNV-1a over the bytes, chained. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* "mpi-np4-hosts1-<hash of every rank's host name in rank order>-d<deterministic>-s<segment
 * bytes>" or "loop-np4-d0-s262144": the timings depend on all of these. */
static dpt_status_t layout_key(dpt_coll_t *c, char *key, size_t cap)
{
    if (c->p2p->mpi_comm == MPI_COMM_NULL) {
        snprintf(key, cap, "loop-np%d-d%d-s%zu", c->size, c->deterministic, c->segment_bytes);
        return DPT_OK;
    }
    char name[MPI_MAX_PROCESSOR_NAME] = "";
    int len = 0;
    MPI_Get_processor_name(name, &len);
    char *all = dpt_calloc((size_t)c->size * MPI_MAX_PROCESSOR_NAME);
    if (!all)
        return dpt_error_set(DPT_ERR_NOMEM, "auto rank %d: out of memory", c->rank);
    int rc = MPI_Allgather(name, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all, MPI_MAX_PROCESSOR_NAME,
                           MPI_CHAR, c->p2p->mpi_comm);
    uint64_t h = 1469598103934665603ull;
    int hosts = 0;
    for (int r = 0; r < c->size && rc == MPI_SUCCESS; r++) {
        const char *n = all + (size_t)r * MPI_MAX_PROCESSOR_NAME;
        h = fnv(h, n, strlen(n) + 1);
        int seen = 0;
        for (int q = 0; q < r && !seen; q++)
            seen = !strcmp(n, all + (size_t)q * MPI_MAX_PROCESSOR_NAME);
        hosts += !seen;
    }
    dpt_free(all);
    if (rc != MPI_SUCCESS)
        return dpt__mpi_error(rc, c->rank, "auto", "MPI_Allgather of host names");
    snprintf(key, cap, "mpi-np%d-hosts%d-%016llx-d%d-s%zu", c->size, hosts, (unsigned long long)h,
             c->deterministic, c->segment_bytes);
    return DPT_OK;
}

/* Ping-pong between ranks 0 and 1 (the others return at once) and gamma on rank 0. */
static dpt_status_t probe(dpt_coll_t *c, dpt_coll_cost_t *out)
{
    memset(out, 0, sizeof *out);
    if (c->rank > 1)
        return DPT_OK;
    size_t big = (size_t)1 << 20;
    unsigned char *msg = dpt_calloc(big);
    float *x = dpt_calloc(big), *y = dpt_calloc(big);
    dpt_status_t st = DPT_OK;
    if (!msg || !x || !y) {
        st = dpt_error_set(DPT_ERR_NOMEM, "auto rank %d: probe buffers", c->rank);
        goto done;
    }
    double xs[8], ys[8], ts[21];
    int n = 0;
    int peer = 1 - c->rank;
    for (size_t sz = 8; sz <= big; sz *= 16) {
        int reps = sz >= ((size_t)1 << 18) ? 5 : 21;
        for (int r = 0; r < reps; r++) {
            double t0 = dpt__now();
            int k = 0;
            if (c->rank == 0) {
                DPT_CHECK_GOTO(dpt__post_send(c, msg, sz, peer, DPT__TAG_PROBE, c->reqs, &k), st, done);
                DPT_CHECK_GOTO(dpt__wait(c, c->reqs, &k), st, done);
                DPT_CHECK_GOTO(dpt__post_recv(c, msg, sz, peer, DPT__TAG_PROBE, c->reqs, &k), st, done);
                DPT_CHECK_GOTO(dpt__wait(c, c->reqs, &k), st, done);
            } else {
                DPT_CHECK_GOTO(dpt__post_recv(c, msg, sz, peer, DPT__TAG_PROBE, c->reqs, &k), st, done);
                DPT_CHECK_GOTO(dpt__wait(c, c->reqs, &k), st, done);
                DPT_CHECK_GOTO(dpt__post_send(c, msg, sz, peer, DPT__TAG_PROBE, c->reqs, &k), st, done);
                DPT_CHECK_GOTO(dpt__wait(c, c->reqs, &k), st, done);
            }
            ts[r] = (dpt__now() - t0) / 2;
        }
        xs[n] = (double)sz;
        ys[n++] = dpt__median(ts, reps);
    }
    if (c->rank == 0) {
        DPT_CHECK_GOTO(dpt_coll_cost_fit_link(xs, ys, n, &out->alpha, &out->beta), st, done);
        size_t cnt = big / sizeof(float);
        for (int r = 0; r < 5; r++) {
            double t0 = dpt__now();
            dpt__reduce(DPT_DTYPE_F32, y, y, x, cnt);
            ts[r] = dpt__now() - t0;
        }
        out->gamma = dpt__median(ts, 5) / (double)big;
    }
done:
    dpt_free(msg);
    dpt_free(x);
    dpt_free(y);
    return st;
}


/* Everyone waits for everyone (MPI transport: a barrier; threads: a broadcast from rank 0 and
 * one back through the all-reduce of one float, which needs every rank). */
static dpt_status_t sync_all(dpt_coll_t *c)
{
    if (c->p2p->mpi_comm != MPI_COMM_NULL) {
        int rc = MPI_Barrier(c->p2p->mpi_comm);
        return rc == MPI_SUCCESS ? DPT_OK : dpt__mpi_error(rc, c->rank, "auto", "MPI_Barrier");
    }
    float one = 1.0f;
    return dpt__allreduce_direct(c, &one, 1, DPT_DTYPE_F32, DPT_REDOP_SUM, DPT_COLL_ALGO_RD);
}

/* Calls per timed block of `algo` on buf[0..count) floats: about PROBE_BLOCK_S of calls as rank 0
 * sees one warm call (broadcast, so every rank runs the same number). */
static dpt_status_t block_iters(dpt_coll_t *c, dpt_coll_algo_t algo, float *buf, size_t count,
                                double *iters)
{
    DPT_CHECK(dpt__allreduce_direct(c, buf, count, DPT_DTYPE_F32, DPT_REDOP_SUM, algo));
    DPT_CHECK(sync_all(c));
    double t0 = dpt__now();
    DPT_CHECK(dpt__allreduce_direct(c, buf, count, DPT_DTYPE_F32, DPT_REDOP_SUM, algo));
    *iters = fmin(200.0, fmax(1.0, floor(PROBE_BLOCK_S / fmax(dpt__now() - t0, 1e-7))));
    return dpt_coll_broadcast(c, iters, sizeof *iters, 0);
}

/* Seconds per call of one block of `iters` back-to-back calls, on this rank's clock. */
static dpt_status_t time_block(dpt_coll_t *c, dpt_coll_algo_t algo, float *buf, size_t count,
                               double iters, double *sec)
{
    DPT_CHECK(sync_all(c));
    double t0 = dpt__now();
    for (int i = 0; i < (int)iters; i++)
        DPT_CHECK(dpt__allreduce_direct(c, buf, count, DPT_DTYPE_F32, DPT_REDOP_SUM, algo));
    *sec = (dpt__now() - t0) / iters;
    return DPT_OK;
}

/* Blocks b0 .. b1-1 of every algorithm in `on`, interleaved (every algorithm's block b0, then
 * every b0+1, ...), so a slow spell of the machine hits them all rather than the one timed
 * during it; then row[a] = the median of blocks 0 .. b1-1. */
static dpt_status_t time_rounds(dpt_coll_t *c, const dpt_coll_algo_t *algo, float *const *bufs,
                                size_t count, const double *iters, const int *on, int b0, int b1,
                                double (*blocks)[PROBE_BLOCKS_MAX], double *row)
{
    for (int b = b0; b < b1; b++)
        for (int a = 0; a < DPT_COLL_CAL_ALGOS; a++)
            if (on[a])
                DPT_CHECK(time_block(c, algo[a], bufs[a], count, iters[a], &blocks[a][b]));
    for (int a = 0; a < DPT_COLL_CAL_ALGOS; a++)
        if (on[a])
            row[a] = dpt__median(blocks[a], b1);
    return DPT_OK;
}

/* Mark the fastest algorithm of the row and the runner-up when it is within PROBE_CLOSE of it,
 * among the candidates of one kind of buffer (`skip`: the other kind's shm entry). */
static void mark_close(const double *row, int skip, int *refine)
{
    int top[2] = {-1, -1};
    for (int a = 0; a < DPT_COLL_CAL_ALGOS; a++) {
        if (row[a] <= 0 || a == skip)
            continue;
        if (top[0] < 0 || row[a] < row[top[0]]) {
            top[1] = top[0];
            top[0] = a;
        } else if (top[1] < 0 || row[a] < row[top[1]]) {
            top[1] = a;
        }
    }
    if (top[1] >= 0 && row[top[1]] <= PROBE_CLOSE * row[top[0]])
        refine[top[0]] = refine[top[1]] = 1;
}

static double row_best(const double *row)
{
    double best = 0;
    for (int a = 0; a < DPT_COLL_CAL_ALGOS; a++)
        if (row[a] > 0 && (best == 0 || row[a] < best))
            best = row[a];
    return best;
}

/* Fill k->sizes / k->measured (collective; rank 0's times, broadcast row by row). */
static dpt_status_t calibrate(dpt_coll_t *c, dpt_coll_cost_t *k)
{
    dpt_coll_algo_t algo[DPT_COLL_CAL_ALGOS];
    int live[DPT_COLL_CAL_ALGOS];
    for (int a = 0; a < DPT_COLL_CAL_ALGOS; a++) {
        dpt_coll_algo_t id = DPT_COLL_ALGO_RING;
        int known = !strcmp(cal_names[a], "shm0")
                        ? (id = DPT_COLL_ALGO_SHM, 1)
                        : dpt_coll_algo_from_name(cal_names[a], &id) == DPT_OK;
        algo[a] = id;
        live[a] = known && dpt_coll_algo_available(c, id, NULL);
    }
    size_t cap = c->max_bytes < PROBE_MAX_BYTES ? c->max_bytes : PROBE_MAX_BYTES;
    long env = dpt_env_long(DPT_ENV_AUTO_PROBE_MAX, 0);   /* bytes, for quick tests */
    if (env >= 4 && (size_t)env < cap)
        cap = (size_t)env;
    double capd = (double)(cap & ~(size_t)3);
    DPT_CHECK(dpt_coll_broadcast(c, &capd, sizeof capd, 0));   /* rank 0's ladder everywhere */
    cap = (size_t)capd;
    if (cap < 4)
        return DPT_OK;   /* nothing worth timing: the plain model decides */
    float *heap = dpt_calloc(cap);
    float *win = c->shm ? dpt_coll_buffer(c, NULL) : NULL;   /* shm0: the window slot itself */
    /* the slot may hold the caller's data (a first auto call on a window buffer): keep it */
    unsigned char *saved = win ? dpt_malloc(cap) : NULL;
    if (!heap || (win && !saved)) {
        dpt_free(heap);
        dpt_free(saved);
        return dpt_error_set(DPT_ERR_NOMEM, "auto rank %d: %zu-byte probe buffers", c->rank, cap);
    }
    if (win) {
        memcpy(saved, win, cap);
        memset(win, 0, cap);
    }
    float *bufs[DPT_COLL_CAL_ALGOS];
    for (int a = 0; a < DPT_COLL_CAL_ALGOS; a++)
        bufs[a] = strcmp(cal_names[a], "shm0") ? heap : win;
    dpt_status_t st = DPT_OK;
    double start = dpt__now();
    int n = 0;
    for (size_t bytes = 4; bytes <= cap && n < DPT_COLL_CAL_SIZES; bytes *= 4) {
        double row[DPT_COLL_CAL_ALGOS + 1] = {0};
        double iters[DPT_COLL_CAL_ALGOS] = {0};
        double blocks[DPT_COLL_CAL_ALGOS][PROBE_BLOCKS_MAX];
        int on[DPT_COLL_CAL_ALGOS], nb = 5;
        for (int a = 0; a < DPT_COLL_CAL_ALGOS; a++) {
            on[a] = live[a] && bufs[a];
            if (on[a]) {
                DPT_CHECK_GOTO(block_iters(c, algo[a], bufs[a], bytes / 4, &iters[a]), st,
                               done);
                if (iters[a] <= 1)
                    nb = 3;   /* one call fills a block: long calls, 3 blocks each */
            }
        }
        DPT_CHECK_GOTO(time_rounds(c, algo, bufs, bytes / 4, iters, on, 0, nb, blocks, row), st,
                       done);
        /* a close race (the runner-up within PROBE_CLOSE of the best on rank 0's clock, for an
         * ordinary buffer or for the window) gets PROBE_EXTRA more interleaved blocks of the
         * two: the noise of 5 blocks is 10-20% on a loaded node */
        int refine[DPT_COLL_CAL_ALGOS] = {0}, any = 0;
        if (c->rank == 0 && dpt__now() - start < PROBE_BUDGET_S) {
            mark_close(row, dpt_coll_cost_cal_index("shm0"), refine);
            if (win)
                mark_close(row, dpt_coll_cost_cal_index("shm"), refine);
        }
        DPT_CHECK_GOTO(dpt_coll_broadcast(c, refine, sizeof refine, 0), st, done);
        for (int a = 0; a < DPT_COLL_CAL_ALGOS; a++)
            any |= refine[a];
        if (any)
            DPT_CHECK_GOTO(time_rounds(c, algo, bufs, bytes / 4, iters, refine, nb,
                                       nb + PROBE_EXTRA, blocks, row), st, done);
        /* rank 0's row decides everything below (times, whether to go on: fastest call still
         * short and budget left, which algorithms stay); its best is recomputed everywhere */
        double best = row_best(row);
        row[DPT_COLL_CAL_ALGOS] = best < PROBE_SLOW_S && dpt__now() - start < PROBE_BUDGET_S;
        DPT_CHECK_GOTO(dpt_coll_broadcast(c, row, sizeof row, 0), st, done);
        best = row_best(row);
        k->sizes[n] = (double)bytes;
        for (int a = 0; a < DPT_COLL_CAL_ALGOS; a++) {
            k->measured[a][n] = row[a];
            /* bandwidth-bound and 3x slower than the best: it will not win at larger sizes */
            if (row[a] > 3.0 * best && best > 1e-3)
                live[a] = 0;
        }
        n++;
        if (!row[DPT_COLL_CAL_ALGOS])
            break;
    }
    k->n_sizes = n;
done:
    if (win)
        memcpy(win, saved, cap);
    dpt_free(saved);
    dpt_free(heap);
    return st;
}

dpt_status_t dpt__auto_init(dpt_coll_t *c, const char *configured_cache)
{
    if (c->size == 1) {
        c->have_cost = 1;
        return DPT_OK;
    }
    char key[128];
    DPT_CHECK(layout_key(c, key, sizeof key));
    const char *path = configured_cache && *configured_cache ? configured_cache : NULL;
    /* rank 0: this process's memo, else the cache file; then everyone gets rank 0's model */
    dpt_coll_cost_t k = {0};
    double found[2] = {0, 0};   /* 1 memo, 2 cache file; whether every size races (tests) */
    if (c->rank == 0) {
        if (memo_get(key, c->max_bytes, &k)) {
            found[0] = 1;
        } else if (path) {
            dpt_status_t st = dpt_coll_cost_load(path, key, &k);
            if (st == DPT_OK && k.n_sizes > 0)
                found[0] = 2;
            else if (st == DPT_ERR_FORMAT)
                DPT_WARN("auto: %s (probing again)", dpt_error_get());
        }
    }
    if (c->rank == 0) {
        const char *race = dpt_env_str(DPT_ENV_AUTO_RACE_ALL);
        found[1] = race && *race && strcmp(race, "0");
    }
    DPT_CHECK(dpt_coll_broadcast(c, found, sizeof found, 0));
    c->auto_race_all = found[1] != 0;
    if (found[0]) {
        DPT_CHECK(dpt_coll_broadcast(c, &k, sizeof k, 0));
    } else {
        double v[3] = {0, 0, 0};
        dpt_coll_cost_t fit;
        DPT_CHECK(probe(c, &fit));
        v[0] = fit.alpha, v[1] = fit.beta, v[2] = fit.gamma;
        DPT_CHECK(dpt_coll_broadcast(c, v, sizeof v, 0));
        k = (dpt_coll_cost_t){.alpha = v[0], .beta = v[1], .gamma = v[2]};
        DPT_CHECK(calibrate(c, &k));
        if (c->rank == 0) {
            memo_put(key, c->max_bytes, &k);
            if (path && dpt_coll_cost_save(path, key, &k) != DPT_OK)
                DPT_INFO("auto: cost cache not written: %s", dpt_error_get());
        }
    }
    c->cost = k;
    c->have_cost = 1;
    c->auto_last = -1;
    for (int i = 0; i < 16; i++)
        c->auto_memo[i].algo = -1;
    if (c->rank == 0)
        DPT_INFO("auto: %s: alpha %.2f us, beta %.3f GB/s, gamma %.3f GB/s, %d sizes timed up to "
                 "%.0f bytes (%s)", key, 1e6 * k.alpha, k.beta > 0 ? 1e-9 / k.beta : 0.0,
                 k.gamma > 0 ? 1e-9 / k.gamma : 0.0, k.n_sizes,
                 k.n_sizes ? k.sizes[k.n_sizes - 1] : 0.0,
                 found[0] == 1 ? "this process" : found[0] == 2 ? "cached" : "probed");
    return DPT_OK;
}

static unsigned memo_slot(size_t nbytes, int in_window)
{
    return (unsigned)(((nbytes * 0x9E3779B97F4A7C15ull) >> 58) ^ (unsigned)in_window) & 15u;
}

/* The ranking for (nbytes, in_window), a pure function of the model: the fastest candidate and
 * its estimate, and the contenders of a close race (fastest first; *n_race = 0: no race). */
static dpt_coll_algo_t rank_candidates(dpt_coll_t *c, size_t nbytes, int in_window,
                                       double *best_t, int *race, int *n_race)
{
    static const dpt_coll_algo_t cand[] = {DPT_COLL_ALGO_RING, DPT_COLL_ALGO_TREE,
                                           DPT_COLL_ALGO_RD, DPT_COLL_ALGO_RHD,
                                           DPT_COLL_ALGO_SHM, DPT_COLL_ALGO_HIER};
    enum { NC = sizeof cand / sizeof *cand };
    double t[NC];
    int best = -1;
    for (int i = 0; i < NC; i++) {
        t[i] = -1;
        if (!dpt_coll_algo_available(c, cand[i], NULL))
            continue;
        const char *name = cand[i] == DPT_COLL_ALGO_SHM && in_window ? "shm0"
                                                                      : dpt_coll_algo_name(cand[i]);
        t[i] = dpt_coll_cost_estimate(name, c->size, nbytes, c->segment_bytes, &c->cost);
        if (t[i] >= 0 && (best < 0 || t[i] < t[best]))
            best = i;
    }
    if (best < 0)
        best = 0;   /* no estimate at all: ring */
    *best_t = t[best];
    /* a close race is decided by timing real calls (dpt__auto_allreduce): the best and whatever
     * is estimated within `close` of it, fastest first; past the largest probed size the
     * estimates are extrapolations, so "close" is wider there */
    int beyond = c->cost.n_sizes > 0 && (double)nbytes > c->cost.sizes[c->cost.n_sizes - 1];
    double close = c->auto_race_all ? HUGE_VAL : beyond ? TRIAL_CLOSE_FAR : TRIAL_CLOSE;
    int n = 0;
    race[n++] = (int)cand[best];
    while (n < DPT__AUTO_RACE) {
        int next = -1;
        for (int i = 0; i < NC; i++) {
            int in = 0;
            for (int r = 0; r < n; r++)
                in |= race[r] == (int)cand[i];
            if (!in && t[i] >= 0 && t[i] <= close * t[best] && (next < 0 || t[i] < t[next]))
                next = i;
        }
        if (next < 0)
            break;
        race[n++] = (int)cand[next];
    }
    /* single calls are timed: below a millisecond one call says little on a busy node (a time
     * slice, the skew the previous call left), and there the probe's blocks already decide */
    *n_race = n == 1 || (t[best] < TRIAL_MIN_S && !c->auto_race_all) ? 0 : n;
    return cand[best];
}

/* The decision so far for (nbytes, in_window), without changing any state: a caller on one rank
 * only (a log line) must not make the ranks' memos differ. */
dpt_coll_algo_t dpt__auto_choose(dpt_coll_t *c, size_t nbytes, int in_window, double *predicted)
{
    const struct dpt__auto_memo *m = &c->auto_memo[memo_slot(nbytes, in_window)];
    if (m->algo >= 0 && m->nbytes == nbytes && m->in_window == in_window) {
        if (predicted)
            *predicted = m->predicted;
        return (dpt_coll_algo_t)m->algo;
    }
    double best_t;
    int race[DPT__AUTO_RACE], n_race;
    dpt_coll_algo_t best = rank_candidates(c, nbytes, in_window, &best_t, race, &n_race);
    if (predicted)
        *predicted = best_t;
    return best;
}

/* The memo entry of (nbytes, in_window), made on a miss (every rank makes the same calls, so
 * every rank's memo holds the same entries: the ranking and any race in progress). Recent sizes
 * are kept: a latency-bound call must not pay for the ranking, and gradient buckets repeat. */
static struct dpt__auto_memo *memo_entry(dpt_coll_t *c, size_t nbytes, int in_window)
{
    struct dpt__auto_memo *m = &c->auto_memo[memo_slot(nbytes, in_window)];
    if (m->algo >= 0 && m->nbytes == nbytes && m->in_window == in_window)
        return m;
    double best_t;
    dpt_coll_algo_t best = rank_candidates(c, nbytes, in_window, &best_t, m->race, &m->n_race);
    m->tried = 0;
    if ((int)best != c->auto_last && c->rank == 0)
        DPT_INFO("auto: %zu bytes on %d ranks -> %s (predicted %.1f us)%s", nbytes, c->size,
                 dpt_coll_algo_name(best), 1e6 * best_t,
                 m->n_race ? "; a close race: timing the first calls" : "");
    c->auto_last = (int)best;
    m->nbytes = nbytes;
    m->in_window = in_window;
    m->algo = (int)best;
    m->predicted = best_t;
    return m;
}

dpt_status_t dpt__auto_allreduce(dpt_coll_t *c, void *buf, size_t count, dpt_dtype_t dtype,
                                 dpt_redop_t op)
{
    size_t nbytes = count * dpt_dtype_size(dtype);
    struct dpt__auto_memo *m = memo_entry(c, nbytes, dpt__shm_in_window(c, buf));
    if (m->n_race == 0)
        return dpt__allreduce_direct(c, buf, count, dtype, op, (dpt_coll_algo_t)m->algo);
    /* a close race: the contenders in turn, each call timed; every rank counts the same calls,
     * so all reach the decision at the same call */
    int k = m->tried++, who = k % m->n_race;
    DPT_CHECK(sync_all(c));   /* a common start: not the skew the previous call left */
    double t0 = dpt__now();
    DPT_CHECK(dpt__allreduce_direct(c, buf, count, dtype, op, (dpt_coll_algo_t)m->race[who]));
    m->t[who][k / m->n_race] = dpt__now() - t0;
    if (m->tried < m->n_race * DPT__AUTO_TRIALS)
        return DPT_OK;
    double t[DPT__AUTO_RACE];
    for (int r = 0; r < m->n_race; r++)
        t[r] = dpt__median(m->t[r], DPT__AUTO_TRIALS);
    DPT_CHECK(dpt_coll_broadcast(c, t, (size_t)m->n_race * sizeof *t, 0));   /* rank 0 decides */
    int win = 0;
    for (int r = 1; r < m->n_race; r++)
        if (t[r] < t[win])
            win = r;
    if (c->rank == 0) {
        char what[160] = "";
        for (int r = 0, at = 0; r < m->n_race && at < (int)sizeof what; r++)
            at += snprintf(what + at, sizeof what - (size_t)at, "%s%s %.1f us", r ? ", " : "",
                           dpt_coll_algo_name((dpt_coll_algo_t)m->race[r]), 1e6 * t[r]);
        DPT_INFO("auto: %zu bytes on %d ranks: timed %s -> %s", nbytes, c->size, what,
                 dpt_coll_algo_name((dpt_coll_algo_t)m->race[win]));
    }
    m->algo = m->race[win];
    m->predicted = t[win];
    c->auto_last = m->algo;
    m->n_race = 0;
    return DPT_OK;
}
