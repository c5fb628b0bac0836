/* comm/internal.h: what the files of src/comm share and nothing else sees: the p2p vtable that
 * algorithms talk through (implemented by p2p_mpi.c and p2p_loop.c), the dpt_coll struct, the
 * argument struct every all-reduce algorithm takes (Open MPI's ALLREDUCE_ARGS), the dtype
 * converters and reduction kernels, and the building blocks several algorithms reuse. */
#ifndef DPT_COMM_INTERNAL_H
#define DPT_COMM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dptrain/coll.h"
#include "dptrain/coll_cost.h"

/* ---- p2p transport ------------------------------------------------------------------------- */

/* One outstanding nonblocking operation. A zeroed request ({MPI_REQUEST_NULL, NULL}, see
 * DPT__REQ_NULL) is "null": waitall skips it. waitall resets every request it completes to null. */
typedef struct dpt__req {
    MPI_Request mpi; /* p2p_mpi */
    void *op;        /* p2p_loop: its slot */
} dpt__req_t;

#define DPT__REQ_NULL ((dpt__req_t){MPI_REQUEST_NULL, NULL})

/* The transport vtable. Semantics follow MPI's nonblocking point-to-point: messages between one
 * pair with one tag are matched in posting order; a buffer handed to isend/irecv must not be
 * touched until waitall has returned for its request; a send may block in waitall until the
 * receiver posts. Sizes must match exactly (the loop transport reports a mismatch; MPI would
 * truncate). Zero-byte messages are legal. */
typedef struct dpt__p2p_ops {
    const char *name;
    int (*rank)(const dpt_p2p_t *p);
    int (*size)(const dpt_p2p_t *p);
    dpt_status_t (*isend)(dpt_p2p_t *p, const void *buf, size_t nbytes, int peer, int tag,
                          dpt__req_t *req);
    dpt_status_t (*irecv)(dpt_p2p_t *p, void *buf, size_t nbytes, int peer, int tag,
                          dpt__req_t *req);
    /* Wait for all `n` requests (null ones are skipped); returns the first error. */
    dpt_status_t (*waitall)(dpt_p2p_t *p, dpt__req_t *reqs, int n);
    void (*destroy)(dpt_p2p_t *p);
} dpt__p2p_ops_t;

/* Base of every transport object (first member of the implementation's struct). */
struct dpt_p2p {
    const dpt__p2p_ops_t *ops;
    MPI_Comm mpi_comm; /* the duplicated communicator for p2p_mpi, MPI_COMM_NULL otherwise */
};

/* ---- collective context -------------------------------------------------------------------- */

/* One node of a binary tree: parent and children (-1 when absent), depth below the root. */
typedef struct dpt__tree_node {
    int parent, child[2];
    int depth;
} dpt__tree_node_t;

/* This rank's place in the two complementary trees of the double binary tree (algo_tree.c). */
typedef struct dpt__dtree {
    dpt__tree_node_t node[2];
    int maxdepth[2]; /* depth of the deepest rank in each tree */
} dpt__dtree_t;

/* rd and rhd across nodes: each pairwise exchange goes in pieces of at most this many bytes,
 * up to DPT__XNODE_WINDOW per direction in flight (2 MiB). Measured over 200 Mbit/s TCP links
 * (4 netns hosts, 16 MiB): rhd 98.8-99.2% of the link with 32-64 KiB pieces, 92.8% with 128 KiB,
 * 87-92% with 256 KiB, 80% with 1 MiB (the ring, one stream, 99.2% with any of them). */
#define DPT__XNODE_PIECE_BYTES ((size_t)64 << 10)
#define DPT__XNODE_WINDOW 32

#define DPT__AUTO_TRIALS 3 /* real calls timed per contender of a close race (auto.c) */
#define DPT__AUTO_RACE 3   /* contenders of a race at most */
_Static_assert(DPT__AUTO_TRIALS * DPT__AUTO_RACE <= DPT_COLL_AUTO_SETTLE_CALLS,
               "a race must end within DPT_COLL_AUTO_SETTLE_CALLS calls");

struct dpt_coll {
    dpt_p2p_t *p2p; /* borrowed */
    int rank, size;
    size_t max_bytes;
    size_t segment_bytes;
    int deterministic;
    void *scratch; /* persistent, 64-byte aligned, scratch_bytes long */
    size_t scratch_bytes;
    dpt__req_t *reqs; /* request array for one collective step */
    int nreqs_max;
    double bytes_sent; /* payload this rank has sent since create (dpt_coll_bytes_sent) */
    int *mpi_counts; /* 4 * size ints for MPI_Alltoallv/Allgatherv (MPI transport only) */
    MPI_Op mpi_op_sum16[DPT_DTYPE_COUNT]; /* user ops for bf16/fp16 (MPI_OP_NULL otherwise) */
    dpt__dtree_t dtree;
    struct dpt__shm *shm; /* shared-memory window of algo_shm.c; NULL when unavailable */
    char shm_why[96];     /* why shm is unavailable ("" when it is) */
    struct dpt__hier *hier; /* algo_hier.c; NULL when unavailable */
    char hier_why[96];    /* why hier is unavailable ("" when it is) */
    int flat;             /* an inner context (hier's leaders): no shm, no hier */
    dpt_coll_cost_t cost; /* the "auto" model (auto.c), identical on every rank */
    int have_cost;
    int auto_race_all;    /* $DPTRAIN_AUTO_RACE_ALL on rank 0: every size races (tests) */
    int auto_last;        /* the last choice, to log changes */
    struct dpt__auto_memo { /* auto's recent decisions (sizes repeat: gradient buckets) */
        size_t nbytes;
        int in_window, algo;
        double predicted;
        int race[DPT__AUTO_RACE], n_race; /* a close race: the contenders (0: none) */
        int tried;                         /* real calls of the race timed so far */
        double t[DPT__AUTO_RACE][DPT__AUTO_TRIALS]; /* rank 0's times per contender */
    } auto_memo[16];      /* algo < 0: empty */
    char cost_cache[512]; /* "" = none */
    /* fingerprint check (dpt_coll_set_check): every collective first all-gathers
     * (sequence number, kind, count, dtype, op, algo/root) and compares them across ranks */
    uint64_t seq;
    uint64_t *fp_all;     /* size * DPT__FP_WORDS, NULL when the check is off */
    struct dpt__nccl *nccl; /* algo_nccl.c: the NCCL communicator; NULL until dpt_coll_nccl_init */
};
#define DPT__FP_WORDS 6

/* The arguments of one all-reduce, as every algorithm receives them. */
typedef struct dpt_coll_args {
    dpt_coll_t *coll;
    void *buf;   /* (count) elements of dtype, reduced in place */
    size_t count;
    dpt_dtype_t dtype;
    dpt_redop_t op;
    size_t esize;       /* bytes per element */
    size_t seg_count;   /* pipelining segment in elements (>= 1) */
    unsigned char *scratch;
    size_t scratch_bytes;
} dpt_coll_args_t;

typedef dpt_status_t (*dpt__allreduce_fn)(const dpt_coll_args_t *a);

dpt_status_t dpt__allreduce_ring(const dpt_coll_args_t *a);
dpt_status_t dpt__allreduce_tree(const dpt_coll_args_t *a);
dpt_status_t dpt__allreduce_rd(const dpt_coll_args_t *a);
dpt_status_t dpt__allreduce_rhd(const dpt_coll_args_t *a);
dpt_status_t dpt__allreduce_mpi(const dpt_coll_args_t *a);
dpt_status_t dpt__allreduce_shm(const dpt_coll_args_t *a);
dpt_status_t dpt__allreduce_nccl(const dpt_coll_args_t *a);   /* a->buf is device memory */
/* Why "nccl" is unavailable on c (NULL when it is available). */
const char *dpt__nccl_why(const dpt_coll_t *c);
void dpt__nccl_destroy(dpt_coll_t *c);

/* The shared-memory window of algo_shm.c. Create is collective over `comm` (the transport's
 * communicator); when the ranks span several nodes or are more than DPT__SHM_MAX_RANKS it leaves
 * c->shm NULL and says why in c->shm_why, which is not an error. */
#define DPT__SHM_MAX_RANKS 256
dpt_status_t dpt__shm_create(dpt_coll_t *c, MPI_Comm comm);

/* "auto" (auto.c): fit or load the model (collective), and the per-call choice. */
dpt_status_t dpt__auto_init(dpt_coll_t *c, const char *cache_path);
/* A shared-memory window over `node` (all ranks on one node; the window takes ownership of the
 * communicator): one slot of `bytes` per rank, readable by every rank of the node. Sync is
 * MPI_Win_sync + a barrier of the node. `rank` only names the caller in errors. */
struct dpt__shm;
dpt_status_t dpt__shm_window_create(MPI_Comm node, size_t bytes, int rank, struct dpt__shm **out);
void dpt__shm_window_destroy(struct dpt__shm *s);
dpt_status_t dpt__shm_window_sync(struct dpt__shm *s, int rank);
unsigned char *dpt__shm_window_slot(const struct dpt__shm *s, int r);

/* "hier" (algo_hier.c): shm inside each node, an all-reduce between the node leaders. Create is
 * collective over `comm`; when every rank is on one node (shm is the algorithm there) it leaves
 * c->hier NULL and says why in c->hier_why. Nodes are MPI_COMM_TYPE_SHARED, or blocks of
 * $DPTRAIN_HIER_NODE_SIZE consecutive ranks (rank 0's value) to test it on one machine. */
struct dpt__hier;
dpt_status_t dpt__hier_create(dpt_coll_t *c, MPI_Comm comm);
void dpt__hier_destroy(dpt_coll_t *c);
dpt_status_t dpt__allreduce_hier(const dpt_coll_args_t *a);

/* auto's choice so far for nbytes; in_window: the buffer is this rank's slot of the shm window
 * (dpt__shm_in_window). Changes no state, so a caller on one rank only is safe. */
dpt_coll_algo_t dpt__auto_choose(dpt_coll_t *c, size_t nbytes, int in_window, double *predicted);
/* An "auto" all-reduce: the chosen algorithm, or while a close race is open (others estimated
 * within 15% of the best, 30% past the probed sizes) the contenders in turn, each call timed,
 * until rank 0 names the fastest (broadcast: every rank switches at the same call). */
dpt_status_t dpt__auto_allreduce(dpt_coll_t *c, void *buf, size_t count, dpt_dtype_t dtype,
                                 dpt_redop_t op);
/* 1 when buf is this rank's slot of the shm window (shm then skips the copy in). */
int dpt__shm_in_window(const dpt_coll_t *c, const void *buf);
/* dpt_coll_create for an inner context (hier's leaders): no shm window, no hier. */
dpt_status_t dpt__coll_create_flat(dpt_p2p_t *p2p, const dpt_coll_config_t *cfg,
                                   dpt_coll_t **out);
/* One all-reduce by `algo` (not auto) without the public checks and the fingerprint: the
 * arguments are known to be valid (coll.c's dispatch, auto.c's probe). count > 0, size > 1. */
dpt_status_t dpt__allreduce_direct(dpt_coll_t *c, void *buf, size_t count, dpt_dtype_t dtype,
                                   dpt_redop_t op, dpt_coll_algo_t algo);
void dpt__shm_destroy(dpt_coll_t *c);

/* Fill *t with rank's nodes in the two trees of the double binary tree over p ranks (NCCL's
 * scheme: tree 1 is tree 0 mirrored for even p, shifted by one for odd p). */
void dpt__dtree_init(int p, int rank, dpt__dtree_t *t);

/* Set a DPT_ERR_MPI message "<who> rank <rank>: <what>: <MPI's error string>" (p2p_mpi.c). */
dpt_status_t dpt__mpi_error(int rc, int rank, const char *who, const char *what);

/* Create/destroy the MPI user ops for bf16/fp16 sums (algo_mpi.c). */
dpt_status_t dpt__mpi_ops_create(dpt_coll_t *c);
void dpt__mpi_ops_destroy(dpt_coll_t *c);

/* Message tags, one per phase so that phases never match each other's messages. */
enum {
    DPT__TAG_RING_RS = 100,
    DPT__TAG_RING_AG,
    DPT__TAG_FOLDIN,
    DPT__TAG_RD,
    DPT__TAG_RD_AG,
    DPT__TAG_RHD_RS,
    DPT__TAG_DET_RS,
    DPT__TAG_GATHER,
    DPT__TAG_BINOMIAL_REDUCE,
    DPT__TAG_BCAST,
    DPT__TAG_DBT_UP,       /* + tree (0, 1) */
    DPT__TAG_DBT_DOWN = DPT__TAG_DBT_UP + 2, /* + tree (0, 1) */
    DPT__TAG_PROBE = DPT__TAG_DBT_DOWN + 2, /* auto.c ping-pong */
    DPT__TAG_HIER,         /* algo_hier.c: node leaders */
    DPT__TAG_ALLTOALL,     /* coll.c: dpt_coll_alltoall's pairwise exchange */
    DPT__TAG_WIRE_LEN,     /* src/compress/wire.c: a compressed message's length, */
    DPT__TAG_WIRE,         /* then the message */
};

/* ---- small shared helpers ------------------------------------------------------------------ */

/* Balanced partition of `count` into `n` chunks: chunk i starts at *off and holds *len elements;
 * lengths differ by at most one (the first count % n chunks are one longer). */
static inline void dpt__chunk(size_t count, size_t n, size_t i, size_t *off, size_t *len)
{
    size_t q = count / n, r = count % n;
    *off = i * q + (i < r ? i : r);
    *len = q + (i < r);
}

static inline int dpt__mod(long a, int p) { return (int)(((a % p) + p) % p); }

/* Post a send/receive unless nbytes is 0 (both sides always agree on the size, so both skip).
 * Appends the request to reqs[*n]. */
dpt_status_t dpt__post_send(dpt_coll_t *c, const void *buf, size_t nbytes, int peer, int tag,
                            dpt__req_t *reqs, int *n);
dpt_status_t dpt__post_recv(dpt_coll_t *c, void *buf, size_t nbytes, int peer, int tag,
                            dpt__req_t *reqs, int *n);
/* Wait for reqs[0..n) and set n to 0. */
dpt_status_t dpt__wait(dpt_coll_t *c, dpt__req_t *reqs, int *n);

/* ---- dtype conversion (round to nearest even, NaN payloads kept where they fit) ------------- */

static inline float dpt__bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint32_t dpt__f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float dpt__bf16_to_f32(uint16_t h) { return dpt__bits_f32((uint32_t)h << 16); }

static inline uint16_t dpt__f32_to_bf16(float f)
{
    uint32_t u = dpt__f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)  /* NaN: keep sign and top payload, force quiet */
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);      /* round to nearest even; overflow carries to Inf */
    return (uint16_t)(u >> 16);
}

static inline float dpt__f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) /* Inf or NaN: payload moves to the top of the f32 mantissa */
        return dpt__bits_f32(sign | 0x7f800000u | (m << 13));
    if (e == 0) {
        if (m == 0)
            return dpt__bits_f32(sign);
        e = 113; /* subnormal: normalize */
        while (!(m & 0x400u)) {
            m <<= 1;
            e--;
        }
        return dpt__bits_f32(sign | (e << 23) | ((m & 0x3ffu) << 13));
    }
    return dpt__bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

static inline uint16_t dpt__f32_to_f16(float f)
{
    uint32_t u = dpt__f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u, ax = u & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN: keep the top payload bits, force quiet */
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x47800000u) /* >= 2^16 (or Inf): Inf */
        return (uint16_t)(sign | 0x7c00u);
    if (ax >= 0x38800000u) { /* normal in f16 (>= 2^-14); a carry may round up to Inf */
        uint32_t h = (((ax >> 23) - 112) << 10) | ((ax >> 13) & 0x3ffu);
        uint32_t rem = ax & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
            h++;
        return (uint16_t)(sign | h);
    }
    if (ax < 0x33000000u) /* below 2^-25: rounds to zero */
        return (uint16_t)sign;
    /* Subnormal: value / 2^-24 = m * 2^(e - 126), shift 14..24; may round up to the smallest
     * normal, whose encoding follows on naturally. */
    uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e, q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u)))
        q++;
    return (uint16_t)(sign | q);
}

/* ---- reduction kernels (reduce.c) ---------------------------------------------------------- */

/* dst[i] = a[i] + b[i] for n elements of dtype, `a` always the first operand (so NaN payloads
 * propagate the same way wherever this runs); dst may alias a or b. bf16/fp16 add in f32 and
 * round once. */
void dpt__reduce(dpt_dtype_t dtype, void *dst, const void *a, const void *b, size_t n);

/* buf[i] = buf[i] / p (one rounding for f32; f32 division then one rounding for bf16/fp16). */
void dpt__scale_avg(dpt_dtype_t dtype, void *buf, size_t n, int p);

/* The canonical deterministic value of n elements: the left fold in rank order
 * fl(...fl(fl(x0 + x1) + x2)... + x_{p-1}) accumulated in f32, then divided once by p for AVG,
 * then rounded once to dtype, written to `out`. Contribution j is `own` for j == own_rank and
 * slots + (j - (j > own_rank)) * slot_stride otherwise. `acc` is n floats of scratch. `out` may
 * alias `own`. */
void dpt__fold_rank_order(dpt_dtype_t dtype, dpt_redop_t op, int p, int own_rank,
                          const void *own, const unsigned char *slots, size_t slot_stride,
                          size_t n, float *acc, void *out);

/* The same canonical fold with contribution j at src[j] (j = 0..p-1), in tiles of acc_n floats
 * of `acc`. `out` may alias any src[j] (each tile is read completely before it is written). */
void dpt__fold_ptrs(dpt_dtype_t dtype, dpt_redop_t op, int p, const void *const *src, size_t n,
                    float *acc, size_t acc_n, void *out);

/* ---- phases shared by several algorithms (phases.c) ---------------------------------------- */

/* Non-power-of-two fold-in (MPICH's): with p2 the largest power of two <= p and rem = p - p2,
 * ranks below 2*rem pair up (2i, 2i+1); the even one steps out of the power-of-two "core" and the
 * odd one represents both as newrank i; the other ranks are newrank r - rem. */
typedef struct dpt__fold {
    int p2, rem;
    int newrank; /* -1 for a rank that stepped out */
} dpt__fold_t;

void dpt__fold_init(int p, int rank, dpt__fold_t *f);
/* The real rank of core member `newrank`. */
int dpt__fold_real(const dpt__fold_t *f, int newrank);
/* Begin a non-deterministic fold-in: each stepping-out rank 2i sends its buffer to 2i+1, which
 * reduces x_{2i} + x_{2i+1} (lower rank first) into its buffer. Uses a->scratch. */
dpt_status_t dpt__fold_in(const dpt_coll_args_t *a, const dpt__fold_t *f);
/* End of a fold-in: each core rank 2i+1 hands the finished buffer to 2i. */
dpt_status_t dpt__fold_out(const dpt_coll_args_t *a, const dpt__fold_t *f);
/* Recursive-doubling all-gather among the core, then dpt__fold_out. Layout before the call:
 *   blocks_p2 = 1: the buffer is cut into p2 chunks and core member i holds chunk i;
 *   blocks_p2 = 0: the buffer is cut into p chunks and every rank r holds chunk r (first each
 *                  stepping-out rank 2i hands chunk 2i to 2i+1, so core member i holds a
 *                  contiguous run of chunks). */
dpt_status_t dpt__rd_allgather(const dpt_coll_args_t *a, const dpt__fold_t *f, int blocks_p2);

/* The deterministic all-reduce of rd and rhd: dpt__det_reduce_scatter, then dpt__rd_allgather
 * with p chunks (blocks_p2 = 0). */
dpt_status_t dpt__det_allreduce_rd(const dpt_coll_args_t *a, const dpt__fold_t *f);

/* Deterministic reduce-scatter: the buffer is cut into p chunks; every rank sends chunk j to rank
 * j, and rank r folds the p contributions of chunk r in rank order (dpt__fold_rank_order, AVG
 * included) into its own chunk r. Scratch: (p-1) chunks plus one f32 accumulator chunk. */
dpt_status_t dpt__det_reduce_scatter(const dpt_coll_args_t *a);
/* Its scratch layout: (p-1) receive slots of `*stride` bytes (ceil(count/p) elements), then an f32
 * accumulator of ceil(count/p) floats at `*acc_off`. Returns the total bytes. */
size_t dpt__det_layout(size_t count, size_t esize, int p, size_t *stride, size_t *acc_off);

/* Ring all-gather of `count` elements of `esize` bytes cut into p balanced chunks: rank r starts
 * with chunk (r + shift) mod p and ends with all of them. Moves bits, no arithmetic. */
dpt_status_t dpt__ring_allgather(dpt_coll_t *c, void *buf, size_t count, size_t esize, int shift);

/* Binomial gather to rank 0 of a buffer cut into p chunks where rank r holds chunk r. */
dpt_status_t dpt__binomial_gather(const dpt_coll_args_t *a);

/* Binomial-tree broadcast of nbytes from root, pipelined in segments of segment_bytes. */
dpt_status_t dpt__bcast_binomial(dpt_coll_t *c, void *buf, size_t nbytes, int root);

/* Scratch bytes all algorithms together need for a context of p ranks (see coll.c). */
size_t dpt__scratch_need(int p, size_t max_bytes, size_t segment_bytes);

/* Fail with DPT_ERR_INTERNAL if an algorithm would need more scratch than was allocated. */
dpt_status_t dpt__need_scratch(const dpt_coll_args_t *a, size_t nbytes, const char *who);

#endif
