/* dist.c: the trainer's view of the job's ranks: rank and size, agreeing on setup errors,
 * comparing hashes and flag lines across ranks, and summing a few counters. Everything here goes
 * through a small collective context of its own (`ctl`, over a transport of its own), so it runs
 * alike over MPI (the process's ranks, MPI_COMM_WORLD) and over the in-process transport of the
 * unit tests (one thread per rank). One process without MPI: every call is a no-op.
 * Reductions are all-gathers followed by a local pass in rank order, so every rank computes the
 * same bits (the messages are a few dozen bytes: latency, not bandwidth). */
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "dptrain/alloc.h"
#include "dptrain/log.h"
#include "train/internal.h"

static dpt_status_t make_ctl(dpt_dist_t *d)
{
    dpt_coll_config_t cc = {.max_bytes = 64, .deterministic = 1};
    return dpt_coll_create(d->ctl_p2p, &cc, &d->ctl);
}

dpt_status_t dpt__dist_init(dpt_dist_t *d)
{
    memset(d, 0, sizeof *d);
    int init = 0, fini = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fini);
    d->mpi = init && !fini;
    d->size = 1;
    if (d->mpi) {
        MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
        MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    }
    dpt_log_set_rank(d->size > 1 ? d->rank : -1);   /* log lines say [host:rank] under mpirun */
    if (d->size == 1)
        return DPT_OK;
    /* two transports (each a communicator of its own): control messages never meet the
       gradient buckets' */
    d->own_p2p = 1;
    DPT_CHECK(dpt_p2p_mpi_create(MPI_COMM_WORLD, &d->ctl_p2p));
    DPT_CHECK(dpt_p2p_mpi_create(MPI_COMM_WORLD, &d->data_p2p));
    return make_ctl(d);
}

dpt_status_t dpt__dist_init_p2p(dpt_dist_t *d, dpt_p2p_t *ctl, dpt_p2p_t *data)
{
    memset(d, 0, sizeof *d);
    d->rank = dpt_p2p_rank(ctl);
    d->size = dpt_p2p_size(ctl);
    if (d->size != dpt_p2p_size(data) || d->rank != dpt_p2p_rank(data))
        return dpt_error_set(DPT_ERR_INVALID_ARG, "dist: the two transports differ in rank or "
                             "size");
    d->ctl_p2p = ctl;
    d->data_p2p = data;
    return d->size > 1 ? make_ctl(d) : DPT_OK;
}

void dpt__dist_fini(dpt_dist_t *d)
{
    dpt_coll_destroy(d->ctl);
    if (d->own_p2p) {
        dpt_p2p_destroy(d->ctl_p2p);
        dpt_p2p_destroy(d->data_p2p);
    }
    memset(d, 0, sizeof *d);
    d->size = 1;
}

/* Every rank's n bytes of `mine`, in rank order, into all (size x n bytes). */
static dpt_status_t gather(const dpt_dist_t *d, const void *mine, size_t n, void *all,
                           const char *what)
{
    dpt_status_t st = dpt_coll_allgather(d->ctl, mine, n, all);
    if (st != DPT_OK)
        return dpt_error_set(st, "rank %d: the ranks' exchange failed while %s: %s", d->rank,
                             what, dpt_error_get());
    return DPT_OK;
}

dpt_status_t dpt__dist_agree(const dpt_dist_t *d, dpt_status_t st, int *collective)
{
    *collective = 1;
    if (d->size == 1)
        return st;
    char saved[1024];   /* this rank's own message survives the exchange */
    snprintf(saved, sizeof saved, "%s", dpt_error_get());
    int mine = st != DPT_OK ? d->rank : INT_MAX, first = INT_MAX;
    int *all = dpt_malloc((size_t)d->size * sizeof *all);
    dpt_status_t gs = all ? gather(d, &mine, sizeof mine, all, "agreeing on setup")
                          : dpt_error_set(DPT_ERR_NOMEM, "out of memory agreeing on setup");
    if (gs != DPT_OK) {
        dpt_free(all);
        *collective = 0;
        return gs;
    }
    for (int r = 0; r < d->size; r++)
        if (all[r] < first)
            first = all[r];
    dpt_free(all);
    if (st != DPT_OK) {
        dpt_error_set(st, "%s", saved);
        return st;
    }
    if (first == INT_MAX)
        return DPT_OK;
    *collective = 2;   /* the same message on every rank that did not fail */
    return dpt_error_set(DPT_ERR_INVALID_ARG, "rank %d stopped during setup (its message says "
                         "why); rank %d stops too", first, d->rank);
}

dpt_status_t dpt__dist_compare(const dpt_dist_t *d, const uint32_t *h, int n,
                               const char *const *what, int *mismatch)
{
    *mismatch = 0;
    if (d->size == 1)
        return DPT_OK;
    uint32_t *all = dpt_malloc((size_t)d->size * (size_t)n * sizeof *all);
    if (!all)
        return dpt_error_set(DPT_ERR_NOMEM, "out of memory comparing ranks");
    dpt_status_t st = gather(d, h, (size_t)n * sizeof *h, all, "comparing ranks");
    for (int r = 1; r < d->size && st == DPT_OK; r++)
        for (int k = 0; k < n; k++)
            if (all[(size_t)r * n + k] != all[k]) {
                *mismatch = 1;
                st = dpt_error_set(DPT_ERR_INVALID_ARG, "rank %d's %s differs from rank 0's "
                                   "(%08x vs %08x); every rank must run the same job",
                                   r, what[k], all[(size_t)r * n + k], all[k]);
                break;
            }
    dpt_free(all);
    return st;
}

dpt_status_t dpt__dist_compare_lines(const dpt_dist_t *d, const char *text, int *mismatch)
{
    enum { MAX_LINES = 256, LINE = 512 };
    *mismatch = 0;
    if (d->size == 1)
        return DPT_OK;
    /* h[0]: the line count, h[1 + k]: line k's checksum */
    uint32_t h[1 + MAX_LINES] = {0};
    const char *lines[MAX_LINES];
    size_t lens[MAX_LINES];
    int n = 0;
    for (const char *p = text ? text : ""; *p && n < MAX_LINES; n++) {
        lens[n] = strcspn(p, "\n");
        lines[n] = p;
        h[1 + n] = dpt__crc32(0, p, lens[n]);
        p += lens[n] + (p[lens[n]] == '\n');
    }
    h[0] = (uint32_t)n;
    uint32_t *all = dpt_malloc((size_t)d->size * (1 + MAX_LINES) * sizeof *all);
    if (!all)
        return dpt_error_set(DPT_ERR_NOMEM, "out of memory comparing ranks");
    dpt_status_t st = gather(d, h, sizeof h, all, "comparing flags");
    if (st != DPT_OK) {
        dpt_free(all);
        return st;
    }
    int bad_rank = -1, bad_line = -1;   /* the same on every rank: all have the same table */
    for (int r = 1; r < d->size && bad_rank < 0; r++)
        for (int k = 0; k <= MAX_LINES; k++)
            if (all[(size_t)r * (1 + MAX_LINES) + k] != all[k]) {
                bad_rank = r;
                bad_line = k - 1;   /* -1: the counts differ */
                break;
            }
    dpt_free(all);
    if (bad_rank < 0)
        return DPT_OK;
    *mismatch = 1;
    if (bad_line < 0 || bad_line >= n)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "rank %d's set of flags differs from rank "
                             "0's (another dptrain build?); every rank must run the same job",
                             bad_rank);
    /* both texts of the line, so that the message names the flag and the two values */
    char mine[LINE], other[LINE];
    snprintf(mine, sizeof mine, "%.*s", (int)lens[bad_line], lines[bad_line]);
    memcpy(other, mine, sizeof other);
    DPT_CHECK(dpt_coll_broadcast(d->ctl, other, LINE, bad_rank));
    DPT_CHECK(dpt_coll_broadcast(d->ctl, mine, LINE, 0));   /* rank 0's, on every rank */
    other[LINE - 1] = mine[LINE - 1] = '\0';
    return dpt_error_set(DPT_ERR_INVALID_ARG, "rank %d has %s but rank 0 has %s; every rank "
                         "must run the same job", bad_rank, other, mine);
}

dpt_status_t dpt__dist_sum(const dpt_dist_t *d, double *v, int n)
{
    if (d->size == 1 || n <= 0)
        return DPT_OK;
    double *all = dpt_malloc((size_t)d->size * (size_t)n * sizeof *all);
    if (!all)
        return dpt_error_set(DPT_ERR_NOMEM, "out of memory summing counters");
    dpt_status_t st = gather(d, v, (size_t)n * sizeof *v, all, "summing counters");
    for (int k = 0; k < n && st == DPT_OK; k++) {
        double acc = 0;
        for (int r = 0; r < d->size; r++)
            acc += all[(size_t)r * n + k];
        v[k] = acc;
    }
    dpt_free(all);
    return st;
}

dpt_status_t dpt__dist_min(const dpt_dist_t *d, int *v, int n)
{
    if (d->size == 1 || n <= 0)
        return DPT_OK;
    int buf[64], *all = (size_t)d->size * (size_t)n <= 64 ? buf   /* every step: no malloc */
                        : dpt_malloc((size_t)d->size * (size_t)n * sizeof *all);
    if (!all)
        return dpt_error_set(DPT_ERR_NOMEM, "out of memory exchanging step flags");
    dpt_status_t st = gather(d, v, (size_t)n * sizeof *v, all, "exchanging step flags");
    for (int k = 0; k < n && st == DPT_OK; k++) {
        int m = all[k];
        for (int r = 1; r < d->size; r++)
            if (all[(size_t)r * n + k] < m)
                m = all[(size_t)r * n + k];
        v[k] = m;
    }
    if (all != buf)
        dpt_free(all);
    return st;
}
