/* p2p_mpi.c: the MPI transport: isend/irecv/waitall map one to one onto MPI_Isend/MPI_Irecv/
 * MPI_Wait on a private duplicate of the caller's communicator, so the collective layer's tags
 * never match the application's messages. Messages are MPI_BYTE; one message is limited to
 * INT_MAX bytes (MPI's count is an int). */
#include <limits.h>
#include <stdio.h>

#include "comm/internal.h"
#include "dptrain/alloc.h"

typedef struct mpi_ep {
    struct dpt_p2p base; /* first: a dpt_p2p_t * is an mpi_ep_t * */
    int rank, size;
} mpi_ep_t;

static const dpt__p2p_ops_t mpi_ops;

dpt_status_t dpt__mpi_error(int rc, int rank, const char *who, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "error %d", rc);
    return dpt_error_set(DPT_ERR_MPI, "%s rank %d: %s: %s", who, rank, what, msg);
}

static dpt_status_t mpi_fail(int rc, const mpi_ep_t *ep, const char *what)
{
    return dpt__mpi_error(rc, ep->rank, "p2p_mpi", what);
}

static int mpi_rank(const dpt_p2p_t *p) { return ((const mpi_ep_t *)p)->rank; }
static int mpi_size(const dpt_p2p_t *p) { return ((const mpi_ep_t *)p)->size; }

static dpt_status_t check_msg(const mpi_ep_t *ep, size_t nbytes, int peer)
{
    if (nbytes > INT_MAX)
        return dpt_error_set(DPT_ERR_UNSUPPORTED,
                             "p2p_mpi rank %d: message of %zu bytes to/from rank %d exceeds "
                             "INT_MAX",
                             ep->rank, nbytes, peer);
    if (peer < 0 || peer >= ep->size)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "p2p_mpi rank %d: peer %d out of range [0, %d)",
                             ep->rank, peer, ep->size);
    return DPT_OK;
}

static dpt_status_t mpi_isend(dpt_p2p_t *p, const void *buf, size_t nbytes, int peer, int tag,
                              dpt__req_t *req)
{
    mpi_ep_t *ep = (mpi_ep_t *)p;
    DPT_CHECK(check_msg(ep, nbytes, peer));
    int rc = MPI_Isend(buf, (int)nbytes, MPI_BYTE, peer, tag, p->mpi_comm, &req->mpi);
    return rc == MPI_SUCCESS ? DPT_OK : mpi_fail(rc, ep, "MPI_Isend");
}

static dpt_status_t mpi_irecv(dpt_p2p_t *p, void *buf, size_t nbytes, int peer, int tag,
                              dpt__req_t *req)
{
    mpi_ep_t *ep = (mpi_ep_t *)p;
    DPT_CHECK(check_msg(ep, nbytes, peer));
    int rc = MPI_Irecv(buf, (int)nbytes, MPI_BYTE, peer, tag, p->mpi_comm, &req->mpi);
    return rc == MPI_SUCCESS ? DPT_OK : mpi_fail(rc, ep, "MPI_Irecv");
}

/* MPI_Wait on each request in turn: the requests live in dpt__req_t, not in one MPI_Request
 * array, and waiting on one progresses all of them anyway. */
static dpt_status_t mpi_waitall(dpt_p2p_t *p, dpt__req_t *reqs, int n)
{
    dpt_status_t st = DPT_OK;
    for (int i = 0; i < n; i++) {
        if (reqs[i].mpi == MPI_REQUEST_NULL)
            continue;
        int rc = MPI_Wait(&reqs[i].mpi, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS && st == DPT_OK)
            st = mpi_fail(rc, (mpi_ep_t *)p, "MPI_Wait");
    }
    return st;
}

static void mpi_destroy(dpt_p2p_t *p)
{
    if (p->mpi_comm != MPI_COMM_NULL)
        MPI_Comm_free(&p->mpi_comm);
    dpt_free(p);
}

dpt_status_t dpt_p2p_mpi_create(MPI_Comm comm, dpt_p2p_t **out)
{
    if (!out || comm == MPI_COMM_NULL)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "p2p_mpi: %s",
                             out ? "communicator is MPI_COMM_NULL" : "NULL out");
    mpi_ep_t *ep = dpt_calloc(sizeof *ep);
    if (!ep)
        return dpt_error_set(DPT_ERR_NOMEM, "p2p_mpi: out of memory");
    ep->base.ops = &mpi_ops;
    ep->base.mpi_comm = MPI_COMM_NULL;
    int rc = MPI_Comm_rank(comm, &ep->rank); /* first, so that errors name the rank */
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_dup(comm, &ep->base.mpi_comm);
    if (rc == MPI_SUCCESS) /* report errors as statuses instead of aborting inside MPI */
        rc = MPI_Comm_set_errhandler(ep->base.mpi_comm, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_size(ep->base.mpi_comm, &ep->size);
    if (rc != MPI_SUCCESS) {
        dpt_status_t st = mpi_fail(rc, ep, "MPI_Comm_dup/set_errhandler/size");
        mpi_destroy(&ep->base);
        return st;
    }
    *out = &ep->base;
    return DPT_OK;
}

static const dpt__p2p_ops_t mpi_ops = {
    .name = "mpi",
    .rank = mpi_rank,
    .size = mpi_size,
    .isend = mpi_isend,
    .irecv = mpi_irecv,
    .waitall = mpi_waitall,
    .destroy = mpi_destroy,
};
