/* algo_hier.c: hierarchical all-reduce for ranks spread over several nodes: shared memory
 * inside each node, an all-reduce between the node leaders over the network.
 *
 * What it does
 *   At context creation (MPI transport) the ranks are split into nodes (MPI_COMM_TYPE_SHARED, or
 *   blocks of $DPTRAIN_HIER_NODE_SIZE consecutive ranks to exercise it on one machine). With at
 *   least two nodes, each node gets a shared window with one max_bytes slot per local rank
 *   (algo_shm.c's window), and the leaders (local rank 0) an inner collective context of their
 *   own over a communicator of leaders only. An all-reduce of n bytes, q ranks on this node:
 *     1. every local rank copies its buffer into its slot;                         node sync
 *     2. local rank r folds chunk r (n/q) of all q slots (sum, f32 accumulation) into its slot;
 *                                                                                   node sync
 *     3. the leader collects the q folded chunks into its buffer (the node's sum), all-reduces
 *        it with the other leaders (rd below 256 KiB, ring from there: an inner context over
 *        the leaders' communicator), divides by p for AVG and writes the result into its slot;
 *                                                                                   node sync
 *     4. every other local rank copies the leader's slot into its buffer;          node sync
 *
 * Cost (N nodes of q ranks, alpha/beta/gamma of the network between leaders, B memory bandwidth)
 *   T = 4 alpha_node + n (1 + 1/q) / B + n / B        (copy in, fold, collect)
 *     + T_leaders(N, n)                                 (e.g. ring: 2(N-1) alpha + 2(N-1)/N n beta
 *                                                        + (N-1)/N n gamma)
 *     + n / B                                           (copy out)
 *   Only N ranks use the network, each sending 2(N-1)/N n bytes instead of the 2(P-1)/P n of a
 *   flat ring over P = Nq ranks that all share the node's link: the network term shrinks by q.
 *
 * Bitwise agreement and determinism
 *   Every rank ends with the leader's bytes, so all ranks agree bitwise. The node sums are a
 *   different association than the rank-order fold, so with --deterministic this algorithm runs
 *   the ring's deterministic path over all ranks instead (same bits as every other algorithm).
 *
 * Limitations
 *   MPI transport only; unavailable when all ranks share one node (shm is the algorithm there).
 *   The leader does the network work alone (NCCL's multi-ring spreads it over the local ranks).
 *   bf16/fp16 round the node sum once before the leaders add: one more rounding than a flat fold.
 */
#include <stdio.h>
#include <stdlib.h>

#include "comm/internal.h"
#include "dptrain/env.h"
#include "dptrain/alloc.h"

#define FOLD_TILE 1024
#define HIER_RING_BYTES ((size_t)256 << 10)

struct dpt__hier {
    struct dpt__shm *win;   /* this node's window */
    int local, nlocal;      /* rank on the node, ranks on the node */
    int nodes;
    dpt_p2p_t *lp2p;        /* leaders only */
    dpt_coll_t *leaders;    /* leaders only: inner context over the leaders */
};

dpt_status_t dpt__hier_create(dpt_coll_t *c, MPI_Comm comm)
{
    c->hier = NULL;
    int block = 0;
    if (c->rank == 0) {
        block = (int)dpt_env_long(DPT_ENV_HIER_NODE_SIZE, 0);
    }
    MPI_Bcast(&block, 1, MPI_INT, 0, comm);   /* rank 0's value, the same split everywhere */
    MPI_Comm node;
    int rc = block > 0 ? MPI_Comm_split(comm, c->rank / block, c->rank, &node)
                       : MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL,
                                             &node);
    if (rc != MPI_SUCCESS)
        return dpt__mpi_error(rc, c->rank, "hier", "node split");
    int local = 0, nlocal = 0, lead, nodes = 0;
    MPI_Comm_rank(node, &local);
    MPI_Comm_size(node, &nlocal);
    lead = local == 0;
    MPI_Allreduce(&lead, &nodes, 1, MPI_INT, MPI_SUM, comm);
    if (nodes < 2) {
        MPI_Comm_free(&node);
        snprintf(c->hier_why, sizeof c->hier_why, "all %d ranks share one node (use shm)",
                 c->size);
        return DPT_OK;
    }
    struct dpt__hier *h = dpt_calloc(sizeof *h);
    if (!h) {
        MPI_Comm_free(&node);
        return dpt_error_set(DPT_ERR_NOMEM, "hier rank %d: out of memory", c->rank);
    }
    h->local = local;
    h->nlocal = nlocal;
    h->nodes = nodes;
    c->hier = h;
    MPI_Comm lc = MPI_COMM_NULL;
    rc = MPI_Comm_split(comm, lead ? 0 : MPI_UNDEFINED, c->rank, &lc);
    if (rc != MPI_SUCCESS) {
        MPI_Comm_free(&node);
        return dpt__mpi_error(rc, c->rank, "hier", "leaders split");
    }
    dpt_status_t wst = dpt__shm_window_create(node, c->max_bytes, c->rank, &h->win);
    if (wst != DPT_OK) {
        if (lc != MPI_COMM_NULL)
            MPI_Comm_free(&lc);
        return wst;
    }
    if (lead) {
        dpt_status_t st = dpt_p2p_mpi_create(lc, &h->lp2p);
        MPI_Comm_free(&lc);   /* the transport holds its own duplicate */
        DPT_CHECK(st);
        dpt_coll_config_t cfg = {.max_bytes = c->max_bytes, .segment_bytes = c->segment_bytes};
        DPT_CHECK(dpt__coll_create_flat(h->lp2p, &cfg, &h->leaders));
    }
    c->hier_why[0] = '\0';
    return DPT_OK;
}

void dpt__hier_destroy(dpt_coll_t *c)
{
    struct dpt__hier *h = c->hier;
    if (!h)
        return;
    dpt_coll_destroy(h->leaders);
    dpt_p2p_destroy(h->lp2p);
    dpt__shm_window_destroy(h->win);
    dpt_free(h);
    c->hier = NULL;
}

dpt_status_t dpt__allreduce_hier(const dpt_coll_args_t *a)
{
    dpt_coll_t *c = a->coll;
    struct dpt__hier *h = c->hier;
    if (!h)
        return dpt_error_set(DPT_ERR_UNSUPPORTED, "allreduce rank %d: algorithm 'hier' is not "
                             "available: %s", c->rank, c->hier_why);
    if (c->deterministic)   /* the rank-order fold: the ring's deterministic path */
        return dpt__allreduce_ring(a);
    const int q = h->nlocal, me = h->local;
    const size_t es = a->esize, nbytes = a->count * es;
    unsigned char *mine = dpt__shm_window_slot(h->win, me);
    memcpy(mine, a->buf, nbytes);
    DPT_CHECK(dpt__shm_window_sync(h->win, c->rank));
    size_t off, len;
    dpt__chunk(a->count, (size_t)q, (size_t)me, &off, &len);
    const void *src[DPT__SHM_MAX_RANKS];
    float acc[FOLD_TILE];
    for (int r = 0; r < q; r++)
        src[r] = dpt__shm_window_slot(h->win, r) + off * es;
    dpt__fold_ptrs(a->dtype, DPT_REDOP_SUM, q, src, len, acc, FOLD_TILE, mine + off * es);
    DPT_CHECK(dpt__shm_window_sync(h->win, c->rank));
    if (me == 0) {
        for (int r = 0; r < q; r++) {
            dpt__chunk(a->count, (size_t)q, (size_t)r, &off, &len);
            memcpy((unsigned char *)a->buf + off * es, dpt__shm_window_slot(h->win, r) + off * es,
                   len * es);
        }
        /* between leaders: recursive doubling while latency-bound, then the ring (across
         * hosts rd wins below 32 KiB - 1 MiB depending on the link: docs/PERFORMANCE.md) */
        dpt_coll_algo_t between = nbytes < HIER_RING_BYTES ? DPT_COLL_ALGO_RD : DPT_COLL_ALGO_RING;
        const double sent0 = dpt_coll_bytes_sent(h->leaders);
        DPT_CHECK(dpt_coll_allreduce(h->leaders, a->buf, a->count, a->dtype, DPT_REDOP_SUM,
                                     between));
        c->bytes_sent += dpt_coll_bytes_sent(h->leaders) - sent0;   /* the leaders' traffic */
        if (a->op == DPT_REDOP_AVG)
            dpt__scale_avg(a->dtype, a->buf, a->count, c->size);
        memcpy(mine, a->buf, nbytes);
    }
    DPT_CHECK(dpt__shm_window_sync(h->win, c->rank));
    if (me != 0)
        memcpy(a->buf, dpt__shm_window_slot(h->win, 0), nbytes);
    return dpt__shm_window_sync(h->win, c->rank);
}
