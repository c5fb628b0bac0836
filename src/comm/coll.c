/* coll.c: the public face of the collective layer: context create/destroy (persistent scratch
 * sized once from max_bytes), argument checks, the algorithm table and its names, the dispatch of
 * dpt_coll_allreduce, and the public broadcast, all-gather and all-to-all. The training step
 * reaches here with each full gradient bucket; nothing below allocates. */
#include <stdio.h>
#include <stdlib.h>

#include "comm/internal.h"
#include "dptrain/env.h"
#include "dptrain/alloc.h"

#define DEFAULT_SEGMENT_BYTES ((size_t)256 << 10)

/* The algorithm table, indexed by dpt_coll_algo_t; `needs` is what `dptrain info` prints. */
static const struct {
    const char *name;
    dpt__allreduce_fn fn;
    const char *needs;
} algos[DPT_COLL_ALGO_COUNT] = {
    [DPT_COLL_ALGO_RING] = {"ring", dpt__allreduce_ring, "any ranks"},
    [DPT_COLL_ALGO_TREE] = {"tree", dpt__allreduce_tree, "any ranks"},
    [DPT_COLL_ALGO_RD] = {"rd", dpt__allreduce_rd, "any ranks"},
    [DPT_COLL_ALGO_RHD] = {"rhd", dpt__allreduce_rhd, "any ranks"},
    [DPT_COLL_ALGO_MPI] = {"mpi", dpt__allreduce_mpi, "the MPI transport (mpirun, srun)"},
    [DPT_COLL_ALGO_SHM] = {"shm", dpt__allreduce_shm, "every rank on one node (a shared window)"},
    [DPT_COLL_ALGO_HIER] = {"hier", dpt__allreduce_hier, "ranks on two or more nodes"},
    [DPT_COLL_ALGO_AUTO] = {"auto", NULL,   /* dispatched to its choice */
                            "any ranks: per bucket, the fastest usable one, timed at start-up"},
    [DPT_COLL_ALGO_NCCL] = {"nccl", dpt__allreduce_nccl,   /* device buffers (algo_nccl.c) */
                            "--device cuda and an NCCL build"},
};

const char *dpt_coll_algo_needs(dpt_coll_algo_t algo)
{
    return (unsigned)algo < DPT_COLL_ALGO_COUNT ? algos[algo].needs : "?";
}

size_t dpt_dtype_size(dpt_dtype_t dtype)
{
    switch (dtype) {
    case DPT_DTYPE_F32:
        return 4;
    case DPT_DTYPE_BF16:
    case DPT_DTYPE_F16:
        return 2;
    default:
        return 0;
    }
}

const char *dpt_coll_algo_name(dpt_coll_algo_t algo)
{
    return (unsigned)algo < DPT_COLL_ALGO_COUNT ? algos[algo].name : "?";
}

dpt_status_t dpt_coll_algo_from_name(const char *name, dpt_coll_algo_t *out)
{
    char known[128] = "";
    size_t len = 0;
    for (int i = 0; i < DPT_COLL_ALGO_COUNT; i++) {
        if (name && strcmp(name, algos[i].name) == 0) {
            if (out)
                *out = (dpt_coll_algo_t)i;
            return out ? DPT_OK : dpt_error_set(DPT_ERR_INVALID_ARG, "coll: NULL out");
        }
        len += (size_t)snprintf(known + len, sizeof known - len, "%s%s", i ? ", " : "",
                                algos[i].name);
    }
    return dpt_error_set(DPT_ERR_INVALID_ARG, "unknown all-reduce algorithm '%s'; known: %s",
                         name ? name : "(null)", known);
}

/* ---- transport wrappers -------------------------------------------------------------------- */

int dpt_p2p_rank(const dpt_p2p_t *p2p) { return p2p->ops->rank(p2p); }
int dpt_p2p_size(const dpt_p2p_t *p2p) { return p2p->ops->size(p2p); }

void dpt_p2p_destroy(dpt_p2p_t *p2p)
{
    if (p2p)
        p2p->ops->destroy(p2p);
}

static dpt_status_t post(dpt_coll_t *c, int is_send, void *buf, size_t nbytes, int peer, int tag,
                         dpt__req_t *reqs, int *n)
{
    if (nbytes == 0)
        return DPT_OK;
    if (*n >= c->nreqs_max)
        return dpt_error_set(DPT_ERR_INTERNAL, "coll rank %d: more than %d requests in one step",
                             c->rank, c->nreqs_max);
    reqs[*n] = DPT__REQ_NULL;
    if (is_send) {
        DPT_CHECK(c->p2p->ops->isend(c->p2p, buf, nbytes, peer, tag, &reqs[*n]));
        c->bytes_sent += (double)nbytes;
    }
    else
        DPT_CHECK(c->p2p->ops->irecv(c->p2p, buf, nbytes, peer, tag, &reqs[*n]));
    (*n)++;
    return DPT_OK;
}

dpt_status_t dpt__post_send(dpt_coll_t *c, const void *buf, size_t nbytes, int peer, int tag,
                            dpt__req_t *reqs, int *n)
{
    return post(c, 1, (void *)buf, nbytes, peer, tag, reqs, n);
}

dpt_status_t dpt__post_recv(dpt_coll_t *c, void *buf, size_t nbytes, int peer, int tag,
                            dpt__req_t *reqs, int *n)
{
    return post(c, 0, buf, nbytes, peer, tag, reqs, n);
}

dpt_status_t dpt__wait(dpt_coll_t *c, dpt__req_t *reqs, int *n)
{
    int k = *n;
    *n = 0;
    return k ? c->p2p->ops->waitall(c->p2p, reqs, k) : DPT_OK;
}

dpt_status_t dpt__need_scratch(const dpt_coll_args_t *a, size_t nbytes, const char *who)
{
    if (nbytes <= a->scratch_bytes)
        return DPT_OK;
    return dpt_error_set(DPT_ERR_INTERNAL, "%s rank %d: needs %zu bytes of scratch, has %zu", who,
                         a->coll->rank, nbytes, a->scratch_bytes);
}

/* ---- create / destroy ---------------------------------------------------------------------- */

static dpt_status_t coll_create(dpt_p2p_t *p2p, const dpt_coll_config_t *cfg, int flat,
                                dpt_coll_t **out);

dpt_status_t dpt_coll_create(dpt_p2p_t *p2p, const dpt_coll_config_t *cfg, dpt_coll_t **out)
{
    return coll_create(p2p, cfg, 0, out);
}

dpt_status_t dpt__coll_create_flat(dpt_p2p_t *p2p, const dpt_coll_config_t *cfg,
                                   dpt_coll_t **out)
{
    return coll_create(p2p, cfg, 1, out);
}

static dpt_status_t coll_create(dpt_p2p_t *p2p, const dpt_coll_config_t *cfg, int flat,
                                dpt_coll_t **out)
{
    if (!p2p || !cfg || !out)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "coll_create: NULL %s",
                             !p2p ? "p2p" : !cfg ? "cfg" : "out");
    dpt_status_t st = DPT_OK;
    dpt_coll_t *c = dpt_calloc(sizeof *c);
    if (!c)
        return dpt_error_set(DPT_ERR_NOMEM, "coll_create: out of memory");
    c->p2p = p2p;
    c->rank = dpt_p2p_rank(p2p);
    c->size = dpt_p2p_size(p2p);
    c->max_bytes = cfg->max_bytes;
    c->segment_bytes = cfg->segment_bytes ? cfg->segment_bytes : DEFAULT_SEGMENT_BYTES;
    c->deterministic = cfg->deterministic != 0;
    c->flat = flat;
    const char *cache = cfg->cost_cache && *cfg->cost_cache ? cfg->cost_cache
                                                           : dpt_env_str(DPT_ENV_COLL_CACHE);
    snprintf(c->cost_cache, sizeof c->cost_cache, "%s", cache ? cache : "");
    c->auto_last = -1;
    for (int i = 0; i < 16; i++)
        c->auto_memo[i].algo = -1;
    for (int d = 0; d < DPT_DTYPE_COUNT; d++)
        c->mpi_op_sum16[d] = MPI_OP_NULL;
    c->nreqs_max = 2 * c->size + 32;
    c->reqs = dpt_calloc((size_t)c->nreqs_max * sizeof *c->reqs);
    c->scratch_bytes = dpt__scratch_need(c->size, c->max_bytes, c->segment_bytes);
    c->scratch = c->scratch_bytes ? dpt_malloc(c->scratch_bytes) : NULL;
    if (!c->reqs || (c->scratch_bytes && !c->scratch)) {
        st = dpt_error_set(DPT_ERR_NOMEM, "coll_create rank %d: out of memory for %zu bytes of "
                           "scratch (max_bytes %zu)", c->rank, c->scratch_bytes, c->max_bytes);
        goto fail;
    }
    dpt__dtree_init(c->size, c->rank, &c->dtree);
    if (p2p->mpi_comm != MPI_COMM_NULL) {
        c->mpi_counts = dpt_malloc(4 * (size_t)c->size * sizeof(int));
        if (!c->mpi_counts) {
            st = dpt_error_set(DPT_ERR_NOMEM, "coll_create rank %d: out of memory", c->rank);
            goto fail;
        }
        DPT_CHECK_GOTO(dpt__mpi_ops_create(c), st, fail);
        if (flat) {
            snprintf(c->shm_why, sizeof c->shm_why, "not in hier's inner context");
            snprintf(c->hier_why, sizeof c->hier_why, "not in hier's inner context");
        } else if (c->size <= DPT__SHM_MAX_RANKS) {
            DPT_CHECK_GOTO(dpt__shm_create(c, p2p->mpi_comm), st, fail);
            DPT_CHECK_GOTO(dpt__hier_create(c, p2p->mpi_comm), st, fail);
        } else {
            snprintf(c->shm_why, sizeof c->shm_why, "more than %d ranks", DPT__SHM_MAX_RANKS);
            snprintf(c->hier_why, sizeof c->hier_why, "more than %d ranks", DPT__SHM_MAX_RANKS);
        }
    } else {
        snprintf(c->shm_why, sizeof c->shm_why, "it needs the MPI transport, this one is '%s'",
                 p2p->ops->name);
        snprintf(c->hier_why, sizeof c->hier_why, "%s", c->shm_why);
    }
    *out = c;
    return DPT_OK;
fail:
    dpt_coll_destroy(c);
    return st;
}

void dpt_coll_destroy(dpt_coll_t *c)
{
    if (!c)
        return;
    dpt__nccl_destroy(c);
    dpt__mpi_ops_destroy(c);
    dpt__hier_destroy(c);
    dpt__shm_destroy(c);
    dpt_free(c->mpi_counts);
    dpt_free(c->fp_all);
    dpt_free(c->scratch);
    dpt_free(c->reqs);
    dpt_free(c);
}

dpt_status_t dpt_coll_set_check(dpt_coll_t *c, int on)
{
    if (!on) {
        dpt_free(c->fp_all);
        c->fp_all = NULL;
        return DPT_OK;
    }
    if (!c->fp_all)
        c->fp_all = dpt_calloc((size_t)c->size * DPT__FP_WORDS * sizeof *c->fp_all);
    return c->fp_all ? DPT_OK : dpt_error_set(DPT_ERR_NOMEM, "collective check: out of memory");
}

enum { FP_ALLREDUCE = 1, FP_BROADCAST = 2 };

static void fp_describe(const uint64_t *f, char *buf, size_t len)
{
    if (f[1] == FP_BROADCAST)
        snprintf(buf, len, "broadcast of %llu bytes from rank %llu", (unsigned long long)f[2],
                 (unsigned long long)f[5]);
    else
        snprintf(buf, len, "all-reduce of %llu %s (%s, %s)", (unsigned long long)f[2],
                 f[3] == DPT_DTYPE_F32 ? "f32" : f[3] == DPT_DTYPE_BF16 ? "bf16" : "f16",
                 f[4] == DPT_REDOP_SUM ? "sum" : "avg", dpt_coll_algo_name((dpt_coll_algo_t)f[5]));
}

/* With the check on: all-gather this call's fingerprint and compare every rank's with rank 0's.
 * A mismatch is an error on every rank naming the first differing rank and both calls. */
static dpt_status_t fp_check(dpt_coll_t *c, uint64_t kind, uint64_t count, uint64_t dtype,
                             uint64_t op, uint64_t arg)
{
    if (!c->fp_all || c->size == 1)
        return DPT_OK;
    uint64_t mine[DPT__FP_WORDS] = {c->seq++, kind, count, dtype, op, arg};
    uint64_t *slot = c->fp_all + (size_t)c->rank * DPT__FP_WORDS;
    memcpy(slot, mine, sizeof mine);
    DPT_CHECK(dpt_coll_allgather(c, slot, sizeof mine, c->fp_all));
    for (int r = 1; r < c->size; r++) {
        const uint64_t *f = c->fp_all + (size_t)r * DPT__FP_WORDS;
        if (!memcmp(f, c->fp_all, sizeof mine))
            continue;
        char a[128], b[128];
        fp_describe(c->fp_all, a, sizeof a);
        fp_describe(f, b, sizeof b);
        return dpt_error_set(DPT_ERR_INVALID_ARG, "mismatched collective: rank %d calls %s as "
                             "collective #%llu, rank 0 calls %s as collective #%llu", r, b,
                             (unsigned long long)f[0], a, (unsigned long long)c->fp_all[0]);
    }
    return DPT_OK;
}

int dpt_coll_algo_available(const dpt_coll_t *c, dpt_coll_algo_t algo, const char **why)
{
    const char *reason = NULL;
    if ((unsigned)algo >= DPT_COLL_ALGO_COUNT)
        reason = "no such algorithm";
    else if (algo == DPT_COLL_ALGO_MPI && c->p2p->mpi_comm == MPI_COMM_NULL)
        reason = "it needs the MPI transport";
    else if (algo == DPT_COLL_ALGO_SHM && !c->shm)
        reason = c->shm_why;
    else if (algo == DPT_COLL_ALGO_HIER && !c->hier)
        reason = c->hier_why;
    else if (algo == DPT_COLL_ALGO_NCCL)
        reason = dpt__nccl_why(c);
    if (why)
        *why = reason ? reason : "";
    return reason == NULL;
}

dpt_status_t dpt_coll_auto_tune(dpt_coll_t *c)
{
    if (!c)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "auto_tune: NULL coll");
    return dpt__auto_init(c, c->cost_cache);
}

dpt_coll_algo_t dpt_coll_auto_choice(dpt_coll_t *c, const void *buf, size_t nbytes,
                                     double *predicted)
{
    if (!c->have_cost) {
        if (predicted)
            *predicted = -1;
        return DPT_COLL_ALGO_RING;
    }
    return dpt__auto_choose(c, nbytes, buf && dpt__shm_in_window(c, buf), predicted);
}

void dpt_coll_auto_model(const dpt_coll_t *c, dpt_coll_cost_t *out)
{
    *out = c->cost;
}

double dpt_coll_bytes_sent(const dpt_coll_t *c) { return c->bytes_sent; }

int dpt_coll_rank(const dpt_coll_t *c) { return c->rank; }
int dpt_coll_size(const dpt_coll_t *c) { return c->size; }

/* ---- collectives --------------------------------------------------------------------------- */

dpt_status_t dpt_coll_allreduce(dpt_coll_t *c, void *buf, size_t count, dpt_dtype_t dtype,
                                dpt_redop_t op, dpt_coll_algo_t algo)
{
    if (!c)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "allreduce: NULL coll");
    size_t esize = dpt_dtype_size(dtype);
    if (!esize)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "allreduce rank %d: invalid dtype %d", c->rank,
                             (int)dtype);
    if ((unsigned)op >= DPT_REDOP_COUNT)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "allreduce rank %d: invalid op %d", c->rank,
                             (int)op);
    if ((unsigned)algo >= DPT_COLL_ALGO_COUNT)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "allreduce rank %d: invalid algorithm %d",
                             c->rank, (int)algo);
    if (algo == DPT_COLL_ALGO_MPI && c->p2p->mpi_comm == MPI_COMM_NULL)
        return dpt_error_set(DPT_ERR_UNSUPPORTED,
                             "allreduce rank %d: algorithm 'mpi' needs the MPI transport, this "
                             "one is '%s'", c->rank, c->p2p->ops->name);
    if (algo == DPT_COLL_ALGO_SHM && !c->shm)
        return dpt_error_set(DPT_ERR_UNSUPPORTED, "allreduce rank %d: algorithm 'shm' is not "
                             "available: %s", c->rank, c->shm_why);
    if (algo == DPT_COLL_ALGO_HIER && !c->hier)
        return dpt_error_set(DPT_ERR_UNSUPPORTED, "allreduce rank %d: algorithm 'hier' is not "
                             "available: %s", c->rank, c->hier_why);
    if (algo == DPT_COLL_ALGO_NCCL && dpt__nccl_why(c))
        return dpt_error_set(DPT_ERR_UNSUPPORTED, "allreduce rank %d: algorithm 'nccl' is not "
                             "available: %s", c->rank, dpt__nccl_why(c));
    DPT_CHECK(fp_check(c, FP_ALLREDUCE, count, dtype, op, algo));
    if (count == 0)
        return DPT_OK;
    if (!buf)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "allreduce rank %d: NULL buf with count %zu",
                             c->rank, count);
    if (count > c->max_bytes / esize)
        return dpt_error_set(DPT_ERR_INVALID_ARG,
                             "allreduce rank %d: count %zu of %zu-byte elements exceeds the "
                             "context's max_bytes %zu", c->rank, count, esize, c->max_bytes);
    if (c->size == 1) /* the sum of one contribution, divided by one */
        return DPT_OK;
    if (algo == DPT_COLL_ALGO_AUTO) {
        if (!c->have_cost)
            DPT_CHECK(dpt_coll_auto_tune(c));
        return dpt__auto_allreduce(c, buf, count, dtype, op);
    }
    return dpt__allreduce_direct(c, buf, count, dtype, op, algo);
}

dpt_status_t dpt__allreduce_direct(dpt_coll_t *c, void *buf, size_t count, dpt_dtype_t dtype,
                                   dpt_redop_t op, dpt_coll_algo_t algo)
{
    size_t esize = dpt_dtype_size(dtype);
    size_t seg_count = c->segment_bytes / esize;
    dpt_coll_args_t a = {
        .coll = c, .buf = buf, .count = count, .dtype = dtype, .op = op, .esize = esize,
        .seg_count = seg_count ? seg_count : 1,
        .scratch = c->scratch, .scratch_bytes = c->scratch_bytes,
    };
    return algos[algo].fn(&a);
}

dpt_status_t dpt_coll_broadcast(dpt_coll_t *c, void *buf, size_t nbytes, int root)
{
    if (!c)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "broadcast: NULL coll");
    if (root < 0 || root >= c->size)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "broadcast rank %d: root %d out of range [0, %d)",
                             c->rank, root, c->size);
    DPT_CHECK(fp_check(c, FP_BROADCAST, nbytes, 0, 0, (uint64_t)root));
    if (nbytes == 0 || c->size == 1)
        return DPT_OK;
    if (!buf)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "broadcast rank %d: NULL buf with nbytes %zu",
                             c->rank, nbytes);
    return dpt__bcast_binomial(c, buf, nbytes, root);
}

dpt_status_t dpt_coll_allgather(dpt_coll_t *c, const void *send, size_t nbytes_per_rank,
                                void *recv)
{
    if (!c)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "allgather: NULL coll");
    if (nbytes_per_rank == 0)
        return DPT_OK;
    if (!send || !recv)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "allgather rank %d: NULL %s buffer", c->rank,
                             !send ? "send" : "recv");
    if (nbytes_per_rank > SIZE_MAX / (size_t)c->size)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "allgather rank %d: %d x %zu bytes overflows",
                             c->rank, c->size, nbytes_per_rank);
    size_t total = nbytes_per_rank * (size_t)c->size;
    unsigned char *mine = (unsigned char *)recv + (size_t)c->rank * nbytes_per_rank;
    const unsigned char *s = send, *r = recv;
    if (s != mine) {
        if (s < r + total && r < s + nbytes_per_rank)
            return dpt_error_set(DPT_ERR_INVALID_ARG,
                                 "allgather rank %d: send overlaps recv but is not recv + rank * "
                                 "nbytes_per_rank", c->rank);
        memcpy(mine, send, nbytes_per_rank);
    }
    if (c->size == 1)
        return DPT_OK;
    return dpt__ring_allgather(c, recv, total, 1, 0);
}

/* Pairwise exchange (MPICH's for long messages): in round k every rank sends to rank + k and
 * receives from rank - k, so each ordered pair meets in exactly one round and every rank
 * receives one block per round. Blocks go in segment_bytes pieces (a block of any
 * size fits MPI's int count), and the (piece, round) steps are posted in one global order,
 * waiting whenever the next pair would exceed the request limit: every rank then waits at the
 * same steps, and each posted message's partner is posted in the same window, so it cannot
 * deadlock. */
dpt_status_t dpt_coll_alltoall(dpt_coll_t *c, const void *send, size_t nbytes_per_rank,
                               void *recv)
{
    if (!c)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "alltoall: NULL coll");
    if (nbytes_per_rank == 0)
        return DPT_OK;
    if (!send || !recv)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "alltoall rank %d: NULL %s buffer", c->rank,
                             !send ? "send" : "recv");
    if (nbytes_per_rank > SIZE_MAX / (size_t)c->size)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "alltoall rank %d: %d x %zu bytes overflows",
                             c->rank, c->size, nbytes_per_rank);
    const size_t nb = nbytes_per_rank, total = nb * (size_t)c->size;
    const unsigned char *s = send;
    unsigned char *r = recv;
    if (s < r + total && r < s + total)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "alltoall rank %d: send and recv overlap",
                             c->rank);
    const int p = c->size, me = c->rank;
    memcpy(r + (size_t)me * nb, s + (size_t)me * nb, nb);
    const size_t piece = c->segment_bytes;
    int n = 0;
    for (size_t off = 0, len; off < nb; off += len) {
        len = nb - off < piece ? nb - off : piece;
        for (int k = 1; k < p; k++) {
            int to = (me + k) % p, from = (me - k + p) % p;
            if (n + 2 > c->nreqs_max)
                DPT_CHECK(dpt__wait(c, c->reqs, &n));
            DPT_CHECK(dpt__post_recv(c, r + (size_t)from * nb + off, len, from,
                                     DPT__TAG_ALLTOALL, c->reqs, &n));
            DPT_CHECK(dpt__post_send(c, s + (size_t)to * nb + off, len, to, DPT__TAG_ALLTOALL,
                                     c->reqs, &n));
        }
    }
    return dpt__wait(c, c->reqs, &n);
}
