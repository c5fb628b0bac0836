/* auto.c: the "auto" all-reduce: per call, the algorithm with the lowest time predicted by the
 * alpha-beta-gamma model (coll_cost.h) for this message size and rank count.
 *
 * The model's parameters come from a short probe when the context is created, or from a cache
 * file keyed by the host set and rank layout (np, and the host of every rank), so later runs on
 * the same layout skip the probe:
 *   alpha, beta  least-relative-error fit of one-way times of a ping-pong between ranks 0 and 1
 *                over the transport (8 B .. 1 MiB)
 *   gamma        rank 0 times the f32 reduction kernel (dpt__reduce) over up to 4 MiB
 * Rank 0 loads or measures, then broadcasts the three numbers, so every rank holds the same bits
 * and makes the same choice for the same size: the decision never depends on local timing
 * (that would deadlock). The choice is logged (info level) on rank 0 whenever it changes from
 * one call to the next, with the predicted time.
 *
 * Candidates: ring, tree, rd, rhd, and shm where available. "mpi" is the baseline to compare
 * with, not a candidate (its internals are not modelled). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "comm/internal.h"
#include "core/internal.h"
#include "dptrain/alloc.h"
#include "dptrain/coll_cost.h"
#include "dptrain/log.h"

/* FNV-1a over the bytes, chained. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* "mpi-np4-<hash of every rank's host name in rank order>" or "loop-np4". */
static dpt_status_t layout_key(dpt_coll_t *c, char *key, size_t cap)
{
    if (c->p2p->mpi_comm == MPI_COMM_NULL) {
        snprintf(key, cap, "loop-np%d", c->size);
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
    snprintf(key, cap, "mpi-np%d-hosts%d-%016llx", c->size, hosts, (unsigned long long)h);
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

dpt_status_t dpt__auto_init(dpt_coll_t *c, const char *configured_cache)
{
    if (c->size == 1) {
        c->have_cost = 1;
        return DPT_OK;
    }
    char key[128];
    DPT_CHECK(layout_key(c, key, sizeof key));
    const char *path = configured_cache && *configured_cache ? configured_cache : NULL;
    double v[4] = {0, 0, 0, 0};   /* alpha, beta, gamma, "found in cache" */
    if (c->rank == 0 && path) {
        dpt_coll_cost_t k;
        dpt_status_t st = dpt_coll_cost_load(path, key, &k);
        if (st == DPT_OK)
            v[0] = k.alpha, v[1] = k.beta, v[2] = k.gamma, v[3] = 1;
        else if (st == DPT_ERR_FORMAT)
            DPT_WARN("auto: %s (probing again)", dpt_error_get());
    }
    DPT_CHECK(dpt_coll_broadcast(c, v, sizeof v, 0));
    if (!v[3]) {
        dpt_coll_cost_t k;
        DPT_CHECK(probe(c, &k));
        v[0] = k.alpha, v[1] = k.beta, v[2] = k.gamma;
        DPT_CHECK(dpt_coll_broadcast(c, v, sizeof v, 0));
        if (c->rank == 0 && path && dpt_coll_cost_save(path, key, &k) != DPT_OK)
            DPT_INFO("auto: cost cache not written: %s", dpt_error_get());
    }
    c->cost = (dpt_coll_cost_t){.alpha = v[0], .beta = v[1], .gamma = v[2]};
    c->have_cost = 1;
    c->auto_last = -1;
    if (c->rank == 0)
        DPT_INFO("auto: %s: alpha %.2f us, beta %.3f GB/s, gamma %.3f GB/s (%s)", key,
                 1e6 * v[0], v[1] > 0 ? 1e-9 / v[1] : 0.0, v[2] > 0 ? 1e-9 / v[2] : 0.0,
                 v[3] ? "cached" : "probed");
    return DPT_OK;
}

dpt_coll_algo_t dpt__auto_choose(dpt_coll_t *c, size_t nbytes, double *predicted)
{
    static const dpt_coll_algo_t cand[] = {DPT_COLL_ALGO_RING, DPT_COLL_ALGO_TREE,
                                           DPT_COLL_ALGO_RD, DPT_COLL_ALGO_RHD,
                                           DPT_COLL_ALGO_SHM};
    dpt_coll_algo_t best = DPT_COLL_ALGO_RING;
    double best_t = -1;
    for (size_t i = 0; i < sizeof cand / sizeof *cand; i++) {
        if (!dpt_coll_algo_available(c, cand[i], NULL))
            continue;
        double t = dpt_coll_cost_predict(dpt_coll_algo_name(cand[i]), c->size, nbytes,
                                         c->segment_bytes, &c->cost);
        if (t >= 0 && (best_t < 0 || t < best_t)) {
            best = cand[i];
            best_t = t;
        }
    }
    if (predicted)
        *predicted = best_t;
    if ((int)best != c->auto_last && c->rank == 0)
        DPT_INFO("auto: %zu bytes on %d ranks -> %s (predicted %.1f us)", nbytes, c->size,
                 dpt_coll_algo_name(best), 1e6 * best_t);
    c->auto_last = (int)best;
    return best;
}
