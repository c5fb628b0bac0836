/* coll.h: the collective layer of dptrain (all-reduce, broadcast, all-gather, all-to-all) over
 * a small point-to-point transport. Gradients leave the bucket module as one flat buffer and
 * come back reduced, identical to the bit on every rank. The transport is either MPI or, for
 * fast unit tests, threads in one process talking through shared mailboxes (as gloo does).
 *
 * Every call here except the _create/_destroy pairs and the name helpers is *collective* over the
 * ranks of the transport: every rank calls it, in the same order, with the same count, dtype, op,
 * algorithm and root. Nothing can check that without extra messages, so breaking it deadlocks.
 * Threads: a transport endpoint and every context on it are used by one thread at a time (two
 * collectives in flight on one endpoint would match each other's messages); contexts on different
 * endpoints are independent. */
#ifndef DPT_COLL_H
#define DPT_COLL_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "dptrain/coll_cost.h"
#include "dptrain/status.h"

/* Element types. bf16 and fp16 are stored as uint16_t bit patterns; reductions convert operands
 * to float32, add in float32 and round once back to the type per step (round to nearest even). */
typedef enum {
    DPT_DTYPE_F32 = 0,
    DPT_DTYPE_BF16,
    DPT_DTYPE_F16,
    DPT_DTYPE_COUNT /* number of dtypes; not a dtype */
} dpt_dtype_t;

/* Reduction operators. AVG is the full SUM divided once by the rank count, where the final value
 * of an element is produced, so that every rank gets identical bits. */
typedef enum {
    DPT_REDOP_SUM = 0,
    DPT_REDOP_AVG,
    DPT_REDOP_COUNT /* number of ops; not an op */
} dpt_redop_t;

/* All-reduce algorithms (docs/ALGORITHMS.md has costs and limitations). More may come, so never
 * rely on the numeric values or on DPT_COLL_ALGO_COUNT. */
typedef enum {
    DPT_COLL_ALGO_RING = 0, /* "ring": reduce-scatter + all-gather, pipelined segments */
    DPT_COLL_ALGO_TREE,     /* "tree": binomial (small) or pipelined double binary tree (large) */
    DPT_COLL_ALGO_RD,       /* "rd": recursive doubling */
    DPT_COLL_ALGO_RHD,      /* "rhd": Rabenseifner, recursive halving + doubling */
    DPT_COLL_ALGO_MPI,      /* "mpi": MPI_Allreduce passthrough (MPI transport only) */
    DPT_COLL_ALGO_SHM,      /* "shm": shared-memory window, peers' buffers read directly (MPI
                               transport, all ranks on one node) */
    DPT_COLL_ALGO_HIER,     /* "hier": shm inside each node + an all-reduce between the node
                               leaders (MPI transport, ranks on two or more nodes) */
    DPT_COLL_ALGO_AUTO,     /* "auto": per call, the lowest time the alpha-beta-gamma model
                               predicts (src/comm/auto.c); the first auto call probes */
    DPT_COLL_ALGO_NCCL,     /* "nccl": ncclAllReduce of a DEVICE buffer (builds with NCCL, after
                               dpt_coll_nccl_init; never chosen by auto) */
    DPT_COLL_ALGO_COUNT     /* number of algorithms built in; not an algorithm */
} dpt_coll_algo_t;

/* Point-to-point transport (opaque). One object per rank. */
typedef struct dpt_p2p dpt_p2p_t;

/* Collective context (opaque): the transport, the config and the persistent scratch buffer. */
typedef struct dpt_coll dpt_coll_t;

/* Configuration of a collective context (plain data, copied by dpt_coll_create). */
typedef struct dpt_coll_config {
    size_t max_bytes;     /* largest all-reduce buffer (count * element size) that will be passed;
                           * scratch is sized from it once, at create */
    size_t segment_bytes; /* pipelining segment of ring, tree and broadcast; 0 = 256 KiB */
    int deterministic;    /* 1: all-reduce results are the rank-ordered left fold, independent of
                           * algorithm, segment size and message size (see docs/ALGORITHMS.md) */
    const char *cost_cache; /* "auto": file caching the fitted model per host layout; NULL or ""
                             * = no cache unless $DPTRAIN_COLL_CACHE names one (borrowed) */
} dpt_coll_config_t;

/* Size in bytes of one element of `dtype` (4 or 2); 0 for an invalid dtype. */
size_t dpt_dtype_size(dpt_dtype_t dtype);

/* Short name of an algorithm ("ring", "tree", "rd", "rhd", "mpi"); "?" if out of range.
 * The string is static. */
const char *dpt_coll_algo_name(dpt_coll_algo_t algo);

/* What an algorithm needs to run, in words ("any ranks", "every rank on one node ..."); static. */
const char *dpt_coll_algo_needs(dpt_coll_algo_t algo);

/* Parse an algorithm name (exact, lower case) into *out. Returns DPT_OK, or
 * DPT_ERR_INVALID_ARG with a message that names `name` and lists the known names. `name` is
 * borrowed; `out` is written only on success. */
dpt_status_t dpt_coll_algo_from_name(const char *name, dpt_coll_algo_t *out);

/* Create the MPI transport over a duplicate of `comm` (MPI_Comm_dup, so our tags never meet the
 * caller's messages). Collective over `comm`; MPI must be initialized. On success *out is owned by
 * the caller (dpt_p2p_destroy it before MPI_Finalize). Returns DPT_ERR_INVALID_ARG (NULL out or
 * MPI_COMM_NULL), DPT_ERR_NOMEM or DPT_ERR_MPI. */
dpt_status_t dpt_p2p_mpi_create(MPI_Comm comm, dpt_p2p_t **out);

/* Create an in-process transport of `nranks` (1..4096) endpoints that talk through shared
 * mailboxes: out[r] is rank r. Each endpoint must be driven by its own thread (a collective
 * blocks until its peers take part). Messages are copied once, when both sides are posted; all
 * request slots are allocated here, none per message. Each out[r] is owned by the caller and
 * destroyed with dpt_p2p_destroy (in any order, from any thread, once no call is in flight on
 * it). Returns DPT_ERR_INVALID_ARG or DPT_ERR_NOMEM; on failure nothing is left allocated. */
dpt_status_t dpt_p2p_loop_create(int nranks, dpt_p2p_t *out[]);

/* This endpoint's rank and the number of ranks. */
int dpt_p2p_rank(const dpt_p2p_t *p2p);
int dpt_p2p_size(const dpt_p2p_t *p2p);

/* Destroy one endpoint (NULL-safe). The MPI transport frees its communicator (so call it on all
 * ranks, before MPI_Finalize). */
void dpt_p2p_destroy(dpt_p2p_t *p2p);

/* Create a collective context on a transport. `p2p` is borrowed and must outlive the context;
 * `cfg` is copied (NULL is an error). Allocates the persistent scratch (about 2 * max_bytes at
 * most, see docs/ALGORITHMS.md) and, on the MPI transport, the MPI_Ops for bf16/fp16 and the
 * shared-memory window of "shm" (max_bytes per rank; collective over the transport's ranks
 * there; on the in-process transport it is local). Every rank must use the same config. Returns DPT_OK,
 * DPT_ERR_INVALID_ARG, DPT_ERR_NOMEM or DPT_ERR_MPI. */
dpt_status_t dpt_coll_create(dpt_p2p_t *p2p, const dpt_coll_config_t *cfg, dpt_coll_t **out);

/* Destroy a context (NULL-safe). Does not destroy the transport. */
void dpt_coll_destroy(dpt_coll_t *coll);

/* In-place all-reduce of `count` elements of `dtype` in `buf` with `op`, using `algo`. Collective.
 * Afterwards every rank holds identical bits. count 0 is a no-op (buf may be NULL); any count
 * works with any rank count, including count < nranks. Allocates nothing.
 * Returns DPT_OK; DPT_ERR_INVALID_ARG for a bad argument (NULL buf with count > 0, invalid dtype,
 * op or algo, count * element size larger than the config's max_bytes); DPT_ERR_UNSUPPORTED for
 * "mpi" on the in-process transport or a message above INT_MAX bytes over MPI; DPT_ERR_MPI or
 * DPT_ERR_INTERNAL from the transport. The calling thread's dpt_error_get() names rank and
 * argument. Argument errors are detected before any message, so they are returned on every rank
 * when every rank passes the same arguments. */
dpt_status_t dpt_coll_allreduce(dpt_coll_t *coll, void *buf, size_t count, dpt_dtype_t dtype,
                                dpt_redop_t op, dpt_coll_algo_t algo);

/* Fit the "auto" model now (collective): load it from the cost cache or probe (a ping-pong
 * between ranks 0 and 1 and a reduction timing on rank 0, about a millisecond to a few tens),
 * then share rank 0's numbers so every rank decides alike. The first auto all-reduce does this
 * if it was not done; call it at setup so that no training step pays it (it allocates temporary
 * probe buffers). */
dpt_status_t dpt_coll_auto_tune(dpt_coll_t *coll);

/* The algorithm "auto" picks for `nbytes` at `buf` on this context and its estimated seconds
 * (after dpt_coll_auto_tune; before it, ring and -1). buf matters only when it is the shm window
 * slot (dpt_coll_buffer); NULL means an ordinary buffer. Local and identical on every rank.
 * Where the estimates are close, the first calls of a size time the contenders in turn and the
 * choice is final after at most DPT_COLL_AUTO_SETTLE_CALLS calls of that size. */
#define DPT_COLL_AUTO_SETTLE_CALLS 9
dpt_coll_algo_t dpt_coll_auto_choice(dpt_coll_t *coll, const void *buf, size_t nbytes,
                                     double *predicted);

/* The model "auto" uses (zeros before dpt_coll_auto_tune), for reports next to measurements. */
void dpt_coll_auto_model(const dpt_coll_t *coll, dpt_coll_cost_t *out);

/* Broadcast `nbytes` bytes of `buf` from rank `root` to all ranks (in place). Binomial tree,
 * pipelined in segment_bytes pieces. Collective. Any size (not limited by max_bytes); allocates
 * nothing. Returns DPT_OK, DPT_ERR_INVALID_ARG (bad root, NULL buf with nbytes > 0) or a
 * transport error. */
dpt_status_t dpt_coll_broadcast(dpt_coll_t *coll, void *buf, size_t nbytes, int root);

/* All-gather by a ring: rank r's `nbytes_per_rank` bytes at `send` end up at
 * recv + r * nbytes_per_rank on every rank. `recv` holds nranks * nbytes_per_rank bytes; `send`
 * may be recv + rank * nbytes_per_rank (in place) but must not otherwise overlap `recv`.
 * Collective. Any size (not limited by max_bytes); allocates nothing. Returns DPT_OK,
 * DPT_ERR_INVALID_ARG (NULL buffers with nbytes_per_rank > 0, size overflow, overlap) or a
 * transport error. */
dpt_status_t dpt_coll_allgather(dpt_coll_t *coll, const void *send, size_t nbytes_per_rank,
                                void *recv);

/* All-to-all by pairwise exchange: block j of `send` (send + j * nbytes_per_rank) goes to rank
 * j, and recv + r * nbytes_per_rank gets rank r's block for this rank (this rank's own block is
 * copied locally). `send` and `recv` hold nranks * nbytes_per_rank bytes each and must not
 * overlap. Rounds k = 1..p-1 (to rank + k, from rank - k), each block cut in segment_bytes
 * pieces, as many in flight as the request limit allows. Collective. Any size (not limited by
 * max_bytes); allocates nothing. Returns DPT_OK, DPT_ERR_INVALID_ARG (NULL buffers with
 * nbytes_per_rank > 0, size overflow, overlap) or a transport error. */
dpt_status_t dpt_coll_alltoall(dpt_coll_t *coll, const void *send, size_t nbytes_per_rank,
                               void *recv);

/* 1 if `algo` can run on this context, else 0 with the reason in *why (static or owned by the
 * context; may be NULL): "mpi" needs the MPI transport, "shm" also needs every rank on one node.
 * Identical on every rank of a context. */
int dpt_coll_algo_available(const dpt_coll_t *coll, dpt_coll_algo_t algo, const char **why);

/* This rank's slot of the "shm" shared window: max_bytes (in *nbytes) of memory owned by the
 * context (valid until dpt_coll_destroy), or NULL where shm is unavailable. An all-reduce of a
 * buffer that starts there skips shm's copy in (zero-copy; e.g. the gradient arena); any
 * algorithm accepts it as an ordinary buffer. An shm all-reduce of any *other* buffer stages it
 * through this slot, overwriting what was there. */
void *dpt_coll_buffer(dpt_coll_t *coll, size_t *nbytes);

/* Debug check (off by default): with it on, every all-reduce and broadcast first all-gathers
 * a fingerprint (sequence number, kind, count, dtype, op, algorithm or root) and compares it
 * with rank 0's; a mismatch (ranks calling different collectives, e.g. a bucket of another
 * size) returns DPT_ERR_INVALID_ARG on every rank, naming the first differing rank and both
 * calls, instead of hanging or reducing garbage. Costs one small all-gather per collective. */
dpt_status_t dpt_coll_set_check(dpt_coll_t *coll, int on);

/* NCCL (src/comm/algo_nccl.c). Collective over the MPI transport: rank 0 makes an NCCL unique id,
 * MPI broadcasts it, every rank joins with ncclCommInitRank on CUDA device `device` (the calling
 * thread's current device is set to it). Afterwards "nccl" is available on this context: an
 * all-reduce with it takes a device buffer and returns when the result is there. Without NCCL in
 * the build, or on the in-process transport: DPT_ERR_UNSUPPORTED naming the reason. */
dpt_status_t dpt_coll_nccl_init(dpt_coll_t *coll, int device);
/* Queue an in-place ncclAllReduce of the device buffer `buf` on CUDA stream `stream` (a
 * cudaStream_t) and return at once; the caller orders work after it through the stream. Not
 * collective-checked (dpt_coll_set_check); the same order on every rank is the caller's duty. */
dpt_status_t dpt_coll_nccl_allreduce_async(dpt_coll_t *coll, void *buf, size_t count,
                                           dpt_dtype_t dtype, dpt_redop_t op, void *stream);

/* Bytes of payload this rank has sent through the context since create, every collective
 * together (what the transport was handed: the "mpi" algorithm, which does not say, counts
 * 2 (p - 1) / p of its buffer; "shm" sends nothing; NCCL is not counted). Read it from the
 * thread that runs the collectives, or once they are done. */
double dpt_coll_bytes_sent(const dpt_coll_t *coll);

/* This context's rank and rank count (those of its transport). */
int dpt_coll_rank(const dpt_coll_t *coll);
int dpt_coll_size(const dpt_coll_t *coll);

#endif
