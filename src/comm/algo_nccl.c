/* algo_nccl.c: "nccl", the all-reduce of device buffers through NCCL.
 *
 * What it does: ncclAllReduce (sum or avg, f32/bf16/f16) of a buffer in CUDA device memory, in
 * place. NCCL picks its own ring/tree schedule and transport (NVLink, PCIe, sockets, IB); its
 * ring and tree both end with the reduced values broadcast from one place, so every rank gets
 * the same bits.
 * Setup (dpt_coll_nccl_init, collective): rank 0 calls ncclGetUniqueId, MPI_Bcast sends the id
 * over the transport's communicator, every rank calls cudaSetDevice + ncclCommInitRank. The
 * context then owns the NCCL communicator and one non-blocking CUDA stream for the synchronous
 * entry point (dpt_coll_allreduce(..., DPT_COLL_ALGO_NCCL): queue on that stream and wait).
 * The gradient buckets use dpt_coll_nccl_allreduce_async on their own communication stream.
 * Limitations: MPI transport only; buffers must be device memory of the context's device;
 * deterministic mode does not change NCCL's (fixed per topology) reduction order; not part of
 * "auto". Without NCCL in the build every entry point says so (DPT_ERR_UNSUPPORTED).
 */
#include <stdio.h>

#include "comm/internal.h"
#include "dptrain/alloc.h"
#include "dptrain/config.h"

#if DPT_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

struct dpt__nccl {
    ncclComm_t comm;
    cudaStream_t stream;   /* for the synchronous entry point */
    int device;
};

static dpt_status_t nccl_fail(ncclResult_t r, int rank, const char *call)
{
    return dpt_error_set(DPT_ERR_NCCL, "nccl rank %d: %s: %s", rank, call,
                         ncclGetErrorString(r));
}

static dpt_status_t cuda_fail(cudaError_t e, int rank, const char *call)
{
    return dpt_error_set(DPT_ERR_CUDA, "nccl rank %d: cuda: %s: %s", rank, call,
                         cudaGetErrorString(e));
}

const char *dpt__nccl_why(const dpt_coll_t *c)
{
    if (c->p2p->mpi_comm == MPI_COMM_NULL)
        return "it needs the MPI transport";
    if (!c->nccl)
        return "needs --device cuda (the NCCL communicator is made for the CUDA device)";
    return NULL;
}

void dpt__nccl_destroy(dpt_coll_t *c)
{
    if (!c->nccl)
        return;
    if (c->nccl->comm)
        ncclCommDestroy(c->nccl->comm);
    if (c->nccl->stream)
        cudaStreamDestroy(c->nccl->stream);
    dpt_free(c->nccl);
    c->nccl = NULL;
}

dpt_status_t dpt_coll_nccl_init(dpt_coll_t *c, int device)
{
    if (!c)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "nccl_init: NULL coll");
    if (c->nccl)
        return DPT_OK;
    if (c->p2p->mpi_comm == MPI_COMM_NULL)
        return dpt_error_set(DPT_ERR_UNSUPPORTED, "nccl rank %d: it needs the MPI transport, "
                             "this one is '%s'", c->rank, c->p2p->ops->name);
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    ncclResult_t r = ncclSuccess;
    if (c->rank == 0)
        r = ncclGetUniqueId(&id);
    /* rank 0 sends a zeroed id when it failed; every rank learns it from the flag below */
    int ok = r == ncclSuccess, all_ok = 0;
    int rc = MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, c->p2p->mpi_comm);
    if (rc != MPI_SUCCESS)
        return dpt__mpi_error(rc, c->rank, "nccl", "MPI_Bcast of the NCCL id");
    rc = MPI_Bcast(&ok, 1, MPI_INT, 0, c->p2p->mpi_comm);
    if (rc != MPI_SUCCESS)
        return dpt__mpi_error(rc, c->rank, "nccl", "MPI_Bcast of the NCCL id status");
    if (!ok)
        return c->rank == 0 ? nccl_fail(r, c->rank, "ncclGetUniqueId")
                            : dpt_error_set(DPT_ERR_NCCL, "nccl rank %d: rank 0 could not make "
                                            "an NCCL id", c->rank);
    struct dpt__nccl *n = dpt_calloc(sizeof *n);
    if (!n)
        return dpt_error_set(DPT_ERR_NOMEM, "nccl rank %d: out of memory", c->rank);
    n->device = device;
    dpt_status_t st = DPT_OK;
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess)
        st = cuda_fail(e, c->rank, "cudaSetDevice");
    if (st == DPT_OK) {
        e = cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking);
        if (e != cudaSuccess)
            st = cuda_fail(e, c->rank, "cudaStreamCreateWithFlags");
    }
    /* every rank must enter ncclCommInitRank or none: agree on the local setup first */
    ok = st == DPT_OK;
    rc = MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, c->p2p->mpi_comm);
    if (rc != MPI_SUCCESS && st == DPT_OK)
        st = dpt__mpi_error(rc, c->rank, "nccl", "MPI_Allreduce of the setup status");
    if (st == DPT_OK && !all_ok)
        st = dpt_error_set(DPT_ERR_CUDA, "nccl rank %d: another rank could not set up its CUDA "
                           "device", c->rank);
    if (st == DPT_OK) {
        r = ncclCommInitRank(&n->comm, c->size, id, c->rank);
        if (r != ncclSuccess) {
            n->comm = NULL;
            st = nccl_fail(r, c->rank, "ncclCommInitRank");
        }
    }
    c->nccl = n;
    if (st != DPT_OK)
        dpt__nccl_destroy(c);
    return st;
}

static int nccl_type(dpt_dtype_t d, ncclDataType_t *t)
{
    switch (d) {
    case DPT_DTYPE_F32:
        *t = ncclFloat32;
        return 1;
    case DPT_DTYPE_BF16:
        *t = ncclBfloat16;
        return 1;
    case DPT_DTYPE_F16:
        *t = ncclFloat16;
        return 1;
    default:
        return 0;
    }
}

dpt_status_t dpt_coll_nccl_allreduce_async(dpt_coll_t *c, void *buf, size_t count,
                                           dpt_dtype_t dtype, dpt_redop_t op, void *stream)
{
    if (!c || !c->nccl)
        return dpt_error_set(DPT_ERR_UNSUPPORTED, "nccl: not set up (dpt_coll_nccl_init)");
    ncclDataType_t t;
    if (!nccl_type(dtype, &t) || (unsigned)op >= DPT_REDOP_COUNT)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "nccl rank %d: bad dtype %d or op %d", c->rank,
                             (int)dtype, (int)op);
    if (count == 0)
        return DPT_OK;
    ncclResult_t r = ncclAllReduce(buf, buf, count, t, op == DPT_REDOP_AVG ? ncclAvg : ncclSum,
                                   c->nccl->comm, (cudaStream_t)stream);
    return r == ncclSuccess ? DPT_OK : nccl_fail(r, c->rank, "ncclAllReduce");
}

dpt_status_t dpt__allreduce_nccl(const dpt_coll_args_t *a)
{
    dpt_coll_t *c = a->coll;
    DPT_CHECK(dpt_coll_nccl_allreduce_async(c, a->buf, a->count, a->dtype, a->op,
                                            c->nccl->stream));
    cudaError_t e = cudaStreamSynchronize(c->nccl->stream);
    return e == cudaSuccess ? DPT_OK : cuda_fail(e, c->rank, "cudaStreamSynchronize");
}

#else /* !DPT_HAVE_NCCL */

const char *dpt__nccl_why(const dpt_coll_t *c)
{
    (void)c;
    return "this build has no NCCL (configure with CUDA and NCCL found)";
}

void dpt__nccl_destroy(dpt_coll_t *c)
{
    (void)c;
}

dpt_status_t dpt_coll_nccl_init(dpt_coll_t *c, int device)
{
    (void)device;
    return dpt_error_set(DPT_ERR_UNSUPPORTED, "nccl: %s", dpt__nccl_why(c));
}

dpt_status_t dpt_coll_nccl_allreduce_async(dpt_coll_t *c, void *buf, size_t count,
                                           dpt_dtype_t dtype, dpt_redop_t op, void *stream)
{
    (void)buf, (void)count, (void)dtype, (void)op, (void)stream;
    return dpt_error_set(DPT_ERR_UNSUPPORTED, "nccl: %s", dpt__nccl_why(c));
}

dpt_status_t dpt__allreduce_nccl(const dpt_coll_args_t *a)
{
    return dpt_error_set(DPT_ERR_UNSUPPORTED, "nccl: %s", dpt__nccl_why(a->coll));
}

#endif
