/* algo_rhd.c: Rabenseifner's all-reduce: a reduce-scatter by recursive halving, then an
 * all-gather by recursive doubling (Open MPI's allreduce_intra_redscat_allgather, MPICH's
 * reduce_scatter_allgather). Bandwidth-optimal like the ring but with log p steps.
 *
 * What it does
 *   Fold-in as in algo_rd.c: with p2 the largest power of two <= p and rem = p - p2, rank 2i
 *   (i < rem) gives its buffer to 2i+1, which adds it and represents both as core member i.
 *   The buffer is cut into p2 blocks (balanced to one element). Reduce-scatter by recursive
 *   halving: the window starts as all p2 blocks; at step m = p2/2, p2/4, ..., 1 member i pairs
 *   with i ^ m, keeps the lower half of the window if bit m of i is clear (else the upper half),
 *   sends the other half and adds the partner's copy of the kept half. After log2(p2) steps member
 *   i holds the finished block i (AVG divides it there). All-gather by recursive doubling
 *   (m = 1, 2, ..., p2/2: swap everything held with i ^ m), then 2i+1 hands the buffer to 2i.
 *
 * Steps and bytes (p ranks, n bytes)
 *   2 log2(p2) steps (+2 when p is not a power of two); each core rank sends 2 (p2 - 1) / p2 n
 *   bytes and reduces (p2 - 1) / p2 n bytes (+ n sent and n reduced for the fold-in).
 *
 * Cost (alpha: latency, beta: seconds per byte, gamma: seconds per byte reduced)
 *   T = 2 log2(p) alpha + 2 (p - 1) / p n beta + (p - 1) / p n gamma               power of two
 *   + 2 alpha + 2 n beta + n gamma for the fold-in and fold-out otherwise.
 *
 * Bitwise agreement
 *   Each element is finished on exactly one core member (the owner of its block) and then copied
 *   by the all-gather and fold-out, so all ranks agree by construction. The lower group's partial
 *   is still the first operand of every addition, to keep results independent of who computes.
 *
 * Deterministic mode (cfg.deterministic)
 *   The halving steps cannot keep the rank-order left fold, so the reduction is
 *   dpt__det_reduce_scatter over p chunks (rank r folds chunk r in rank order), followed by the
 *   same recursive-doubling all-gather (fold-in ranks first hand their chunk to their partner)
 *   and fold-out. This is the same data movement as deterministic rd.
 *   Cost: (p - 1) alpha + (p - 1) / p n (beta + gamma) + log2(p2) alpha + n beta (+ fold-out).
 *
 * Segments
 *   Across nodes the exchange of every halving and doubling step is cut into segments of
 *   segment_bytes, at most DPT__XNODE_PIECE_BYTES (64 KiB: larger pieces lost 7-20% of a
 *   200 Mbit/s link, see comm/internal.h), up to RHD_WINDOW per direction in flight (receives
 *   posted first), for the same
 *   reason as in algo_rd.c: over TCP a single message each way can serialise the two directions
 *   behind one rendezvous handshake. On one node a step stays one message each way. The
 *   recursive-doubling all-gather is done here (not dpt__rd_allgather) for that reason.
 *
 * Limitations
 *   Non-powers of two pay a full-buffer fold-in and fold-out (2 n beta), which can make the ring
 *   faster for p = 3, 5, 6, 7. Needs n bytes of scratch. count < p2 leaves some blocks empty (their
 *   messages are skipped).
 *
 * Example, p = 4, blocks A B C D, member i ends owning block i (+ = reduce with the partner):
 *
 *   step        rank 0         rank 1         rank 2         rank 3
 *   rs m = 2    keep AB (<->2) keep AB (<->3) keep CD (<->0) keep CD (<->1)
 *   rs m = 1    keep A  (<->1) keep B  (<->0) keep C  (<->3) keep D  (<->2)
 *   ag m = 1    A B            A B            C D            C D
 *   ag m = 2    A B C D        A B C D        A B C D        A B C D
 */
#include "comm/internal.h"

#define RHD_WINDOW DPT__XNODE_WINDOW /* segments in flight per direction */

/* Element offset of block b of p2 (b = p2 gives the end). */
static size_t block_off(const dpt_coll_args_t *a, int p2, int b)
{
    size_t off, len;
    dpt__chunk(a->count, (size_t)p2, (size_t)b, &off, &len);
    return off;
}

/* One pairwise step with `peer`: send elements [soff, soff + slen) of the buffer and receive
 * [roff, roff + rlen), into the scratch at the same offset when `reduce` (then added into the
 * buffer, the lower group's partial first) or straight into the buffer otherwise. Both ranges
 * are cut into segments of seg_count elements, up to RHD_WINDOW per direction in flight
 * (receives posted before sends), so that neither direction's transfer waits behind the other's
 * (over TCP one message each way can serialise the exchange behind one rendezvous) and the
 * reduction of segment k overlaps the later transfers. On one node (a shared-memory window
 * exists) each range goes as one message: Open MPI's shared-memory transport moves it with one
 * single copy, and segments would only add handshakes. The two ranges never overlap. */
static dpt_status_t exchange(const dpt_coll_args_t *a, int peer, int tag, size_t soff, size_t slen,
                             size_t roff, size_t rlen, int reduce)
{
    dpt_coll_t *c = a->coll;
    size_t es = a->esize, piece = DPT__XNODE_PIECE_BYTES / es;
    size_t seg = a->coll->shm ? (slen > rlen ? slen : rlen)
                              : a->seg_count < piece ? a->seg_count : piece;
    seg = seg ? seg : 1;
    size_t posted = 0, ns = (slen + seg - 1) / seg, nr = (rlen + seg - 1) / seg;
    size_t nk = ns > nr ? ns : nr;
    unsigned char *buf = a->buf, *rbase = reduce ? a->scratch : buf;
    dpt__req_t rq[RHD_WINDOW], sq[RHD_WINDOW];
    for (size_t k = 0; k < nk; k++) {
        for (; posted < nk && posted < k + RHD_WINDOW; posted++) {
            size_t o = posted * seg;
            int n = 0;
            rq[posted % RHD_WINDOW] = sq[posted % RHD_WINDOW] = DPT__REQ_NULL;
            if (o < rlen)
                DPT_CHECK(dpt__post_recv(c, rbase + (roff + o) * es,
                                         (rlen - o < seg ? rlen - o : seg) * es, peer, tag,
                                         &rq[posted % RHD_WINDOW], &n));
            n = 0;
            if (o < slen)
                DPT_CHECK(dpt__post_send(c, buf + (soff + o) * es,
                                         (slen - o < seg ? slen - o : seg) * es, peer, tag,
                                         &sq[posted % RHD_WINDOW], &n));
        }
        int n = 1;
        DPT_CHECK(dpt__wait(c, &rq[k % RHD_WINDOW], &n));
        n = 1;
        DPT_CHECK(dpt__wait(c, &sq[k % RHD_WINDOW], &n));
        size_t o = k * seg;
        if (reduce && o < rlen) {
            size_t len = rlen - o < seg ? rlen - o : seg;
            void *mine = buf + (roff + o) * es, *theirs = a->scratch + (roff + o) * es;
            if (peer < c->rank) /* the lower group's partial is always the first operand */
                dpt__reduce(a->dtype, mine, theirs, mine, len);
            else
                dpt__reduce(a->dtype, mine, mine, theirs, len);
        }
    }
    return DPT_OK;
}

static dpt_status_t halving(const dpt_coll_args_t *a, const dpt__fold_t *f)
{
    dpt_coll_t *c = a->coll;
    int lo = 0, hi = f->p2;
    for (int m = f->p2 / 2; m >= 1; m >>= 1) {
        int mid = lo + m, peer = dpt__fold_real(f, f->newrank ^ m);
        int upper = (f->newrank & m) != 0;
        int klo = upper ? mid : lo, khi = upper ? hi : mid; /* kept half */
        int slo = upper ? lo : mid, shi = upper ? mid : hi; /* half sent to the partner */
        size_t koff = block_off(a, f->p2, klo), klen = block_off(a, f->p2, khi) - koff;
        size_t soff = block_off(a, f->p2, slo), slen = block_off(a, f->p2, shi) - soff;
        DPT_CHECK(exchange(a, peer, DPT__TAG_RHD_RS, soff, slen, koff, klen, 1));
        lo = klo;
        hi = khi;
    }
    if (a->op == DPT_REDOP_AVG) { /* the window is now block newrank, finished here only */
        size_t off = block_off(a, f->p2, lo);
        dpt__scale_avg(a->dtype, (unsigned char *)a->buf + off * a->esize,
                       block_off(a, f->p2, hi) - off, c->size);
    }
    return DPT_OK;
}

/* All-gather by recursive doubling over the core (member g holds block g): at step m the group
 * of m members holding blocks [mine, mine + m) swaps them with the partner group's. */
static dpt_status_t doubling(const dpt_coll_args_t *a, const dpt__fold_t *f)
{
    for (int m = 1; m < f->p2; m <<= 1) {
        int mine = f->newrank & ~(m - 1), theirs = mine ^ m;
        size_t soff = block_off(a, f->p2, mine), send_end = block_off(a, f->p2, mine + m);
        size_t roff = block_off(a, f->p2, theirs), rend = block_off(a, f->p2, theirs + m);
        DPT_CHECK(exchange(a, dpt__fold_real(f, f->newrank ^ m), DPT__TAG_RD_AG, soff,
                           send_end - soff, roff, rend - roff, 0));
    }
    return DPT_OK;
}

dpt_status_t dpt__allreduce_rhd(const dpt_coll_args_t *a)
{
    dpt_coll_t *c = a->coll;
    dpt__fold_t f;
    dpt__fold_init(c->size, c->rank, &f);
    if (c->deterministic)
        return dpt__det_allreduce_rd(a, &f);
    DPT_CHECK(dpt__need_scratch(a, a->count * a->esize, "rhd"));
    DPT_CHECK(dpt__fold_in(a, &f));
    if (f.newrank >= 0) {
        DPT_CHECK(halving(a, &f));
        DPT_CHECK(doubling(a, &f));
    }
    return dpt__fold_out(a, &f);
}
