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

/* Element offset of block b of p2 (b = p2 gives the end). */
static size_t block_off(const dpt_coll_args_t *a, int p2, int b)
{
    size_t off, len;
    dpt__chunk(a->count, (size_t)p2, (size_t)b, &off, &len);
    return off;
}

static dpt_status_t halving(const dpt_coll_args_t *a, const dpt__fold_t *f)
{
    dpt_coll_t *c = a->coll;
    int lo = 0, hi = f->p2, n = 0;
    size_t es = a->esize;
    unsigned char *base = a->buf;
    for (int m = f->p2 / 2; m >= 1; m >>= 1) {
        int mid = lo + m, peer = dpt__fold_real(f, f->newrank ^ m);
        int upper = (f->newrank & m) != 0;
        int klo = upper ? mid : lo, khi = upper ? hi : mid; /* kept half */
        int slo = upper ? lo : mid, shi = upper ? mid : hi; /* half sent to the partner */
        size_t koff = block_off(a, f->p2, klo), klen = block_off(a, f->p2, khi) - koff;
        size_t soff = block_off(a, f->p2, slo), slen = block_off(a, f->p2, shi) - soff;
        DPT_CHECK(dpt__post_recv(c, a->scratch, klen * es, peer, DPT__TAG_RHD_RS, c->reqs, &n));
        DPT_CHECK(dpt__post_send(c, base + soff * es, slen * es, peer, DPT__TAG_RHD_RS, c->reqs,
                                 &n));
        DPT_CHECK(dpt__wait(c, c->reqs, &n));
        void *kept = base + koff * es;
        if (peer < c->rank) /* the lower group's partial is always the first operand */
            dpt__reduce(a->dtype, kept, a->scratch, kept, klen);
        else
            dpt__reduce(a->dtype, kept, kept, a->scratch, klen);
        lo = klo;
        hi = khi;
    }
    if (a->op == DPT_REDOP_AVG) { /* the window is now block newrank, finished here only */
        size_t off = block_off(a, f->p2, lo);
        dpt__scale_avg(a->dtype, base + off * es, block_off(a, f->p2, hi) - off, c->size);
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
    if (f.newrank >= 0)
        DPT_CHECK(halving(a, &f));
    return dpt__rd_allgather(a, &f, 1);
}
