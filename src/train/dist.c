/* dist.c: what the trainer needs from MPI besides the collective layer: rank and size, agreeing
 * on setup errors, comparing hashes across ranks and summing a few counters. Everything here is
 * collective over MPI_COMM_WORLD when MPI is initialized, and a no-op for one process without
 * MPI (library use). Only these functions call MPI directly; gradients go through src/comm. */
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "dptrain/alloc.h"
#include "train/internal.h"

void dpt__dist_init(dpt_dist_t *d)
{
    int init = 0, fini = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fini);
    d->mpi = init && !fini;
    d->rank = 0;
    d->size = 1;
    if (d->mpi) {
        MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
        MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    }
}

dpt_status_t dpt__dist_agree(const dpt_dist_t *d, dpt_status_t st, int *collective)
{
    *collective = 1;
    if (!d->mpi || d->size == 1)
        return st;
    int mine = st != DPT_OK ? d->rank : INT_MAX, first = INT_MAX;
    if (MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD) != MPI_SUCCESS) {
        *collective = 0;
        return dpt_error_set(DPT_ERR_MPI, "rank %d: MPI_Allreduce failed while agreeing on "
                             "setup", d->rank);
    }
    if (st != DPT_OK || first == INT_MAX)
        return st;
    *collective = 2;   /* the same message on every rank that did not fail */
    return dpt_error_set(DPT_ERR_INVALID_ARG, "rank %d stopped during setup (its message says "
                         "why); rank %d stops too", first, d->rank);
}

dpt_status_t dpt__dist_compare(const dpt_dist_t *d, const uint32_t *h, int n,
                               const char *const *what, int *mismatch)
{
    *mismatch = 0;
    if (!d->mpi || d->size == 1)
        return DPT_OK;
    uint32_t *all = dpt_malloc((size_t)d->size * (size_t)n * sizeof *all);
    if (!all)
        return dpt_error_set(DPT_ERR_NOMEM, "out of memory comparing ranks");
    int rc = MPI_Allgather(h, n, MPI_UINT32_T, all, n, MPI_UINT32_T, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) {
        dpt_free(all);
        return dpt_error_set(DPT_ERR_MPI, "rank %d: MPI_Allgather failed comparing ranks",
                             d->rank);
    }
    dpt_status_t st = DPT_OK;
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
    if (!d->mpi || d->size == 1)
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
    if (MPI_Allgather(h, 1 + MAX_LINES, MPI_UINT32_T, all, 1 + MAX_LINES, MPI_UINT32_T,
                      MPI_COMM_WORLD) != MPI_SUCCESS) {
        dpt_free(all);
        return dpt_error_set(DPT_ERR_MPI, "rank %d: MPI_Allgather failed comparing flags",
                             d->rank);
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
    MPI_Bcast(other, LINE, MPI_CHAR, bad_rank, MPI_COMM_WORLD);
    MPI_Bcast(mine, LINE, MPI_CHAR, 0, MPI_COMM_WORLD);   /* rank 0's, on every rank */
    other[LINE - 1] = mine[LINE - 1] = '\0';
    return dpt_error_set(DPT_ERR_INVALID_ARG, "rank %d has %s but rank 0 has %s; every rank "
                         "must run the same job", bad_rank, other, mine);
}

void dpt__dist_sum(const dpt_dist_t *d, double *v, int n)
{
    if (!d->mpi || d->size == 1)
        return;
    MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

dpt_status_t dpt__dist_transport(const dpt_dist_t *d, dpt_p2p_t **out)
{
    *out = NULL;
    if (!d->mpi)
        return DPT_OK;
    return dpt_p2p_mpi_create(MPI_COMM_WORLD, out);
}

void dpt__dist_min(const dpt_dist_t *d, int *v, int n)
{
    if (!d->mpi || d->size == 1)
        return;
    MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
}
