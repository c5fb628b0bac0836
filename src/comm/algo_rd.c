/* algo_rd.c: recursive-doubling all-reduce, the latency-optimal algorithm for small buffers
 * (Open MPI's allreduce_intra_recursivedoubling, MPICH's MPIR_Allreduce_intra_recursive_doubling).
 *
 * What it does
 *   With p2 the largest power of two <= p and rem = p - p2, ranks 2i and 2i+1 (i < rem) first
 *   fold in: 2i sends its whole buffer to 2i+1, which adds it and represents both as core member
 *   i. The p2 core members then run log2(p2) steps: at step m (1, 2, 4, ...) member i exchanges its
 *   whole buffer with member i ^ m and adds. Finally 2i+1 sends the result back to 2i.
 *
 * Steps and bytes (p ranks, n bytes)
 *   log2(p2) steps plus 2 when p is not a power of two; each core rank sends and reduces
 *   n log2(p2) bytes (+ n for fold-in/fold-out ranks).
 *
 * Cost (alpha: latency, beta: seconds per byte, gamma: seconds per byte reduced)
 *   T = ceil(log2 p) alpha + n ceil(log2 p) beta + n ceil(log2 p) gamma            power of two
 *   + 2 alpha + 2 n beta + n gamma for the fold-in and fold-out otherwise.
 *
 * Bitwise agreement
 *   Both partners of a step compute the same sum of the same two operands: the partial of the
 *   lower-ranked group is always the first operand (fold-in: x_{2i} + x_{2i+1}). So by induction
 *   every member of a group of 2m holds identical bits, NaN payloads included, and at the end all
 *   core ranks agree; the fold-out copies. AVG divides on every core rank, identical operands.
 *
 * Deterministic mode (cfg.deterministic)
 *   A recursive-doubling step cannot keep the rank-order left fold, so the reduction becomes
 *   dpt__det_reduce_scatter (rank r folds chunk r from all p contributions, in rank order) and the
 *   data movement stays recursive doubling: a recursive-doubling all-gather of the chunks among
 *   the core (the fold-in ranks first hand their chunk to their partner), then the fold-out.
 *   Cost: (p - 1) alpha + (p - 1) / p n beta + (p - 1) / p n gamma for the reduce-scatter,
 *   log2(p2) alpha + n beta for the all-gather (+ alpha + n beta fold-out).
 *
 * Segments
 *   Across nodes each step's exchange is cut into segments of segment_bytes, at most
 *   DPT__XNODE_PIECE_BYTES (64 KiB, comm/internal.h), up to RD_WINDOW per
 *   direction in flight (receives posted first): over TCP one message each way can wait for the
 *   other's rendezvous handshake, whose control message queues behind the data, and then the
 *   exchange runs one direction at a time (measured: 2x the time of a one-way transfer). On one
 *   node (a shared-memory window exists) a step stays one message each way.
 *
 * Limitations
 *   Bandwidth term grows with log p: use ring or rhd beyond a few KiB. Needs n bytes of scratch.
 *
 * Example, p = 5 (p2 = 4, rem = 1; core members 0..3 are ranks 1, 2, 3, 4), s_ab = x_a + ... x_b:
 *
 *   step      rank 0    rank 1          rank 2         rank 3         rank 4
 *   fold-in   send ->1  s01 = x0+x1     x2             x3             x4
 *   m = 1               s01+x2 (<->2)   s01+x2 (<->1)  x3+x4 (<->4)   x3+x4 (<->3)
 *   m = 2               s02+s34 (<->3)  s02+s34 (<->4) s02+s34        s02+s34
 *   fold-out  s04 <-1   s04 = total     s04            s04            s04
 */
#include "comm/internal.h"

#define RD_WINDOW DPT__XNODE_WINDOW /* segments in flight per direction */

/* Elements per message of a step: seg_count, but on one node (Open MPI's shared-memory transport
 * moves a large message with one single copy) the whole buffer: there segments only add
 * handshakes, each of which waits for the peer to be scheduled (measured 20-45% slower at 64 MiB
 * with 256 KiB segments on a loaded 2-core machine). */
static size_t segment(const dpt_coll_args_t *a)
{
    size_t piece = DPT__XNODE_PIECE_BYTES / a->esize;
    size_t seg = a->coll->shm ? a->count : a->seg_count < piece ? a->seg_count : piece;
    return seg ? seg : 1;
}

/* One recursive-doubling step, the whole buffer swapped with `peer`, cut into segments of
 * seg_count elements of which up to RD_WINDOW per direction are in flight (receives posted before
 * sends), so that neither direction's transfer waits behind the other's (over TCP a single
 * message each way can serialise the exchange behind one rendezvous) and the reduction of
 * segment k overlaps the transfer of the later ones. Segment k is added once both its receive
 * (into the scratch) and its send (which reads the same bytes of the buffer) are done; the lower
 * group's partial is always the first operand. */
static dpt_status_t exchange(const dpt_coll_args_t *a, int peer)
{
    dpt_coll_t *c = a->coll;
    size_t es = a->esize, seg = segment(a), nk = (a->count + seg - 1) / seg, posted = 0;
    unsigned char *buf = a->buf;
    dpt__req_t rq[RD_WINDOW], sq[RD_WINDOW];
    for (size_t k = 0; k < nk; k++) {
        for (; posted < nk && posted < k + RD_WINDOW; posted++) {
            size_t off = posted * seg, len = a->count - off < seg ? a->count - off : seg;
            int nr = 0, ns = 0;
            rq[posted % RD_WINDOW] = sq[posted % RD_WINDOW] = DPT__REQ_NULL;
            DPT_CHECK(dpt__post_recv(c, a->scratch + off * es, len * es, peer, DPT__TAG_RD,
                                     &rq[posted % RD_WINDOW], &nr));
            DPT_CHECK(dpt__post_send(c, buf + off * es, len * es, peer, DPT__TAG_RD,
                                     &sq[posted % RD_WINDOW], &ns));
        }
        int n = 1;
        DPT_CHECK(dpt__wait(c, &rq[k % RD_WINDOW], &n));
        n = 1;
        DPT_CHECK(dpt__wait(c, &sq[k % RD_WINDOW], &n));
        size_t off = k * seg, len = a->count - off < seg ? a->count - off : seg;
        void *mine = buf + off * es, *theirs = a->scratch + off * es;
        if (peer < c->rank)
            dpt__reduce(a->dtype, mine, theirs, mine, len);
        else
            dpt__reduce(a->dtype, mine, mine, theirs, len);
    }
    return DPT_OK;
}

dpt_status_t dpt__allreduce_rd(const dpt_coll_args_t *a)
{
    dpt_coll_t *c = a->coll;
    dpt__fold_t f;
    dpt__fold_init(c->size, c->rank, &f);
    if (c->deterministic)
        return dpt__det_allreduce_rd(a, &f);
    DPT_CHECK(dpt__need_scratch(a, a->count * a->esize, "rd"));
    DPT_CHECK(dpt__fold_in(a, &f));
    if (f.newrank >= 0) {
        for (int m = 1; m < f.p2; m <<= 1)
            DPT_CHECK(exchange(a, dpt__fold_real(&f, f.newrank ^ m)));
        if (a->op == DPT_REDOP_AVG)
            dpt__scale_avg(a->dtype, a->buf, a->count, c->size);
    }
    return dpt__fold_out(a, &f);
}
