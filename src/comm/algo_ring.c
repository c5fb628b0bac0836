/* algo_ring.c: ring all-reduce (reduce-scatter then all-gather), the bandwidth-optimal algorithm
 * for large gradient buckets.
 *
 * What it does
 *   The buffer of n bytes is cut into p chunks whose element counts differ by at most one. In the
 *   reduce-scatter, partial sums travel clockwise: at step s rank r sends chunk (r - s) mod p to
 *   r + 1 and adds chunk (r - s - 1) mod p, received from r - 1, into its own copy. After p - 1
 *   steps rank r owns the finished chunk (r + 1) mod p (AVG divides it there, once). The
 *   all-gather then circulates the finished chunks for p - 1 more steps, moving bits only.
 *
 * Pipelining
 *   Each reduce-scatter step moves its chunk in segments of segment_bytes, double buffered in
 *   scratch: the receive of segment k + 1 and the send of segment k + 1 are posted before segment
 *   k is waited for and reduced, so its transfer overlaps the reduction of segment k.
 *
 * Steps and bytes (p ranks, n bytes, S segment bytes)
 *   2 (p - 1) steps; each rank sends and receives 2 (p - 1) / p * n bytes and reduces
 *   (p - 1) / p * n bytes; (p - 1) * ceil(n / (p S)) + (p - 1) messages per rank.
 *
 * Cost (alpha: latency per message, beta: seconds per byte, gamma: seconds per byte reduced)
 *   T = 2 (p - 1) alpha + 2 (p - 1) / p * n beta + (p - 1) / p * n gamma        unsegmented
 *   with segments the reduce-scatter pays (p - 1) ceil(n / (p S)) alpha but hides the gamma term
 *   behind beta except for one segment per step: + (p - 1) S gamma.
 *
 * Bitwise agreement
 *   Every element is finished in exactly one place (the chunk owner) and then copied, so all
 *   ranks hold the same bits by construction, NaN payloads included.
 *
 * Deterministic mode (cfg.deterministic)
 *   The reduce-scatter is replaced by dpt__det_reduce_scatter (rank r receives all p
 *   contributions of chunk r and folds them in rank order), then the same ring all-gather (with
 *   rank r owning chunk r). Extra cost: p - 1 messages per rank posted at once instead of the
 *   ring's neighbour exchange, and the fold reads p chunks: same bytes, (p - 1) alpha.
 *
 * Limitations
 *   Latency grows linearly in p: for small buffers prefer tree or rd. Chunks shorter than one
 *   element (count < p) are simply empty and their messages are skipped on both sides.
 *
 * Example, p = 3, chunks A B C, x_r is rank r's contribution (reduce-scatter, then all-gather):
 *
 *   step  rank 0 sends -> 1     rank 1 sends -> 2     rank 2 sends -> 0
 *   rs 0  A: x0                 B: x1                 C: x2
 *   rs 1  C: x2+x0              A: x0+x1              B: x1+x2
 *         rank 0 owns B = x1+x2+x0, rank 1 owns C, rank 2 owns A (finished, AVG applied)
 *   ag 0  B                     C                     A
 *   ag 1  A                     B                     C
 */
#include "comm/internal.h"

/* Post the transfers of segment k of this step (receive into its double-buffer lane, send from
 * the chunk being passed on). */
static dpt_status_t post_segment(const dpt_coll_args_t *a, size_t k, size_t slot,
                                 unsigned char *const lane_buf[2], dpt__req_t lanes[2][2],
                                 int nl[2], size_t soff, size_t slen, size_t rlen)
{
    dpt_coll_t *c = a->coll;
    int p = c->size, r = c->rank, l = (int)(k & 1);
    size_t es = a->esize;
    if (k * slot < rlen) {
        size_t len = rlen - k * slot < slot ? rlen - k * slot : slot;
        DPT_CHECK(dpt__post_recv(c, lane_buf[l], len * es, (r + p - 1) % p, DPT__TAG_RING_RS,
                                 lanes[l], &nl[l]));
    }
    if (k * slot < slen) {
        size_t len = slen - k * slot < slot ? slen - k * slot : slot;
        DPT_CHECK(dpt__post_send(c, (unsigned char *)a->buf + (soff + k * slot) * es, len * es,
                                 (r + 1) % p, DPT__TAG_RING_RS, lanes[l], &nl[l]));
    }
    return DPT_OK;
}

static dpt_status_t reduce_scatter(const dpt_coll_args_t *a)
{
    dpt_coll_t *c = a->coll;
    int p = c->size, r = c->rank;
    size_t es = a->esize, maxchunk = a->count / (size_t)p + (a->count % (size_t)p != 0);
    size_t slot = a->seg_count < maxchunk ? a->seg_count : maxchunk; /* segment, elements */
    DPT_CHECK(dpt__need_scratch(a, 2 * slot * es, "ring"));
    unsigned char *const lane_buf[2] = {a->scratch, a->scratch + slot * es};
    dpt__req_t lanes[2][2];
    int nl[2] = {0, 0};
    for (int s = 0; s < p - 1; s++) {
        size_t soff, slen, roff, rlen;
        dpt__chunk(a->count, (size_t)p, (size_t)dpt__mod((long)r - s, p), &soff, &slen);
        dpt__chunk(a->count, (size_t)p, (size_t)dpt__mod((long)r - s - 1, p), &roff, &rlen);
        size_t ns = (slen + slot - 1) / slot, nr = (rlen + slot - 1) / slot;
        size_t nk = ns > nr ? ns : nr;
        int last = s == p - 2; /* this step finishes the chunk this rank owns */
        if (nk)
            DPT_CHECK(post_segment(a, 0, slot, lane_buf, lanes, nl, soff, slen, rlen));
        for (size_t k = 0; k < nk; k++) {
            if (k + 1 < nk)
                DPT_CHECK(post_segment(a, k + 1, slot, lane_buf, lanes, nl, soff, slen, rlen));
            int l = (int)(k & 1);
            DPT_CHECK(dpt__wait(c, lanes[l], &nl[l]));
            if (k < nr) {
                size_t len = rlen - k * slot < slot ? rlen - k * slot : slot;
                void *dst = (unsigned char *)a->buf + (roff + k * slot) * es;
                dpt__reduce(a->dtype, dst, lane_buf[l], dst, len); /* upstream partial first */
                if (last && a->op == DPT_REDOP_AVG)
                    dpt__scale_avg(a->dtype, dst, len, p);
            }
        }
    }
    return DPT_OK;
}

dpt_status_t dpt__allreduce_ring(const dpt_coll_args_t *a)
{
    if (a->coll->deterministic) {
        DPT_CHECK(dpt__det_reduce_scatter(a));
        return dpt__ring_allgather(a->coll, a->buf, a->count, a->esize, 0);
    }
    DPT_CHECK(reduce_scatter(a));
    return dpt__ring_allgather(a->coll, a->buf, a->count, a->esize, 1);
}
