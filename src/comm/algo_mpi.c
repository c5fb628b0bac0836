/* algo_mpi.c: all-reduce by the MPI library itself (Open MPI's coll/tuned picks recursive
 * doubling, ring or Rabenseifner by size), as the reference and fallback of the collective layer.
 *
 * What it does
 *   f32: MPI_Allreduce(MPI_IN_PLACE, MPI_FLOAT, MPI_SUM). bf16/fp16: MPI_UINT16_T with a user
 *   MPI_Op (created once per context, commutative) that adds in f32 and rounds once per step,
 *   like our own kernels. AVG divides the returned sum by p on every rank (identical operands).
 *
 * Steps, bytes and cost
 *   Those of the algorithm Open MPI chooses (see docs/ALGORITHMS.md and
 *   ../shared/recipes/mpi-facts.md): recursive doubling (log p (alpha + n beta + n gamma)) below
 *   about 8 KiB, Rabenseifner (2 log p alpha + 2 (p-1)/p n beta + (p-1)/p n gamma) above, for np
 *   up to 15. Open MPI allocates temporary buffers in every call (page faults above glibc's mmap
 *   threshold), which our own algorithms avoid.
 *
 * Bitwise agreement
 *   Open MPI's algorithms give every rank the same sum, but we do not control the operand order
 *   of its additions: when two different NaN payloads meet, ranks may keep different payloads.
 *   Finite and infinite values agree bitwise.
 *
 * Deterministic mode (cfg.deterministic)
 *   MPI_Alltoallv sends chunk j of every rank to rank j, rank r folds its chunk in rank order
 *   (dpt__fold_rank_order, as every algorithm does), and MPI_Allgatherv circulates the chunks.
 *   Cost: (p - 1) alpha + (p - 1)/p n (beta + gamma) for the exchange and fold, plus MPI's
 *   all-gather (ring or recursive doubling): (p - 1) alpha + (p - 1)/p n beta.
 *
 * Limitations
 *   MPI transport only (DPT_ERR_UNSUPPORTED on the in-process transport). count and byte
 *   displacements must fit MPI's int (DPT_ERR_UNSUPPORTED above INT_MAX bytes).
 *
 * Steps (deterministic mode, p = 3, chunks A B C):
 *
 *   phase       rank 0               rank 1               rank 2
 *   alltoallv   gets A1, A2          gets B0, B2          gets C0, C1
 *   fold        A = (A0+A1)+A2       B = (B0+B1)+B2       C = (C0+C1)+C2
 *   allgatherv  A B C                A B C                A B C
 */
#include <limits.h>

#include "comm/internal.h"

static void sum_bf16(void *in, void *inout, int *len, MPI_Datatype *dt)
{
    (void)dt;
    dpt__reduce(DPT_DTYPE_BF16, inout, in, inout, (size_t)*len);
}

static void sum_f16(void *in, void *inout, int *len, MPI_Datatype *dt)
{
    (void)dt;
    dpt__reduce(DPT_DTYPE_F16, inout, in, inout, (size_t)*len);
}

dpt_status_t dpt__mpi_ops_create(dpt_coll_t *c)
{
    int rc = MPI_Op_create(sum_bf16, 1, &c->mpi_op_sum16[DPT_DTYPE_BF16]);
    if (rc == MPI_SUCCESS)
        rc = MPI_Op_create(sum_f16, 1, &c->mpi_op_sum16[DPT_DTYPE_F16]);
    return rc == MPI_SUCCESS ? DPT_OK : dpt__mpi_error(rc, c->rank, "coll_create", "MPI_Op_create");
}

void dpt__mpi_ops_destroy(dpt_coll_t *c)
{
    for (int d = 0; d < DPT_DTYPE_COUNT; d++)
        if (c->mpi_op_sum16[d] != MPI_OP_NULL)
            MPI_Op_free(&c->mpi_op_sum16[d]);
}

static dpt_status_t deterministic(const dpt_coll_args_t *a, MPI_Comm comm)
{
    dpt_coll_t *c = a->coll;
    int p = c->size, r = c->rank;
    size_t es = a->esize, stride, acc_off, off, len;
    DPT_CHECK(dpt__need_scratch(a, dpt__det_layout(a->count, es, p, &stride, &acc_off), "mpi"));
    int *scount = c->mpi_counts, *sdispl = scount + p, *rcount = sdispl + p, *rdispl = rcount + p;
    dpt__chunk(a->count, (size_t)p, (size_t)r, &off, &len);
    for (int j = 0; j < p; j++) { /* byte counts fit: count * esize <= INT_MAX was checked */
        size_t joff, jlen;
        dpt__chunk(a->count, (size_t)p, (size_t)j, &joff, &jlen);
        scount[j] = j == r ? 0 : (int)(jlen * es);
        sdispl[j] = (int)(joff * es);
        rcount[j] = j == r ? 0 : (int)(len * es);
        rdispl[j] = j == r ? 0 : (int)((size_t)(j - (j > r)) * stride);
    }
    int rc = MPI_Alltoallv(a->buf, scount, sdispl, MPI_BYTE, a->scratch, rcount, rdispl, MPI_BYTE,
                           comm);
    if (rc != MPI_SUCCESS)
        return dpt__mpi_error(rc, r, "allreduce mpi", "MPI_Alltoallv");
    unsigned char *mine = (unsigned char *)a->buf + off * es;
    dpt__fold_rank_order(a->dtype, a->op, p, r, mine, a->scratch, stride, len,
                         (float *)(void *)(a->scratch + acc_off), mine);
    for (int j = 0; j < p; j++) {
        size_t joff, jlen;
        dpt__chunk(a->count, (size_t)p, (size_t)j, &joff, &jlen);
        scount[j] = (int)(jlen * es);
        sdispl[j] = (int)(joff * es);
    }
    rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, a->buf, scount, sdispl, MPI_BYTE,
                        comm);
    return rc == MPI_SUCCESS ? DPT_OK : dpt__mpi_error(rc, r, "allreduce mpi", "MPI_Allgatherv");
}

dpt_status_t dpt__allreduce_mpi(const dpt_coll_args_t *a)
{
    dpt_coll_t *c = a->coll;
    MPI_Comm comm = c->p2p->mpi_comm;
    if (comm == MPI_COMM_NULL || !c->mpi_counts)
        return dpt_error_set(DPT_ERR_UNSUPPORTED, "allreduce rank %d: 'mpi' needs the MPI "
                             "transport", c->rank);
    if (a->count * a->esize > INT_MAX)
        return dpt_error_set(DPT_ERR_UNSUPPORTED,
                             "allreduce mpi rank %d: %zu bytes exceed MPI's INT_MAX count",
                             c->rank, a->count * a->esize);
    /* MPI does not say what it sent: count a bandwidth-optimal all-reduce's share */
    c->bytes_sent += 2.0 * (double)(c->size - 1) / c->size * (double)(a->count * a->esize);
    if (c->deterministic)
        return deterministic(a, comm);
    int f32 = a->dtype == DPT_DTYPE_F32;
    int rc = MPI_Allreduce(MPI_IN_PLACE, a->buf, (int)a->count, f32 ? MPI_FLOAT : MPI_UINT16_T,
                           f32 ? MPI_SUM : c->mpi_op_sum16[a->dtype], comm);
    if (rc != MPI_SUCCESS)
        return dpt__mpi_error(rc, c->rank, "allreduce mpi", "MPI_Allreduce");
    if (a->op == DPT_REDOP_AVG)
        dpt__scale_avg(a->dtype, a->buf, a->count, c->size);
    return DPT_OK;
}
