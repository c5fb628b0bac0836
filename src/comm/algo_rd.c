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

dpt_status_t dpt__allreduce_rd(const dpt_coll_args_t *a)
{
    dpt_coll_t *c = a->coll;
    dpt__fold_t f;
    dpt__fold_init(c->size, c->rank, &f);
    if (c->deterministic)
        return dpt__det_allreduce_rd(a, &f);
    size_t nbytes = a->count * a->esize;
    DPT_CHECK(dpt__need_scratch(a, nbytes, "rd"));
    DPT_CHECK(dpt__fold_in(a, &f));
    if (f.newrank >= 0) {
        int n = 0;
        for (int m = 1; m < f.p2; m <<= 1) {
            int peer = dpt__fold_real(&f, f.newrank ^ m);
            DPT_CHECK(dpt__post_recv(c, a->scratch, nbytes, peer, DPT__TAG_RD, c->reqs, &n));
            DPT_CHECK(dpt__post_send(c, a->buf, nbytes, peer, DPT__TAG_RD, c->reqs, &n));
            DPT_CHECK(dpt__wait(c, c->reqs, &n));
            if (peer < c->rank) /* the lower group's partial is always the first operand */
                dpt__reduce(a->dtype, a->buf, a->scratch, a->buf, a->count);
            else
                dpt__reduce(a->dtype, a->buf, a->buf, a->scratch, a->count);
        }
        if (a->op == DPT_REDOP_AVG)
            dpt__scale_avg(a->dtype, a->buf, a->count, c->size);
    }
    return dpt__fold_out(a, &f);
}
