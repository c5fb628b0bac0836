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
