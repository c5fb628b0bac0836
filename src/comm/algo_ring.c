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
 * Pipelining: one stream, no step boundaries
 *   Both phases are cut into segments of segment_bytes and run as one stream of 2 (p - 1) x nk
 *   messages per direction (nk segments per chunk). Segment k of step u can leave as soon as
 *   segment k of step u - 1 has arrived (and, in the reduce-scatter, been added), so rank r's link
 *   to r + 1 never waits for a whole step to finish: up to RING_SENDS_MAX sends are in flight and
 *   receives are posted up to half of RING_LANES_MAX scratch lanes ahead. Reduce-scatter segments
 *   land in the lanes and are added into the buffer; all-gather segments land in place (once the
 *   send that read the same bytes, p - 1 steps earlier, has completed). Across hosts this keeps
 *   the TCP links busy through the step changes and through short stalls of one rank (a
 *   textbook ring, one message per step, idles the link for a handshake at every step).
 *
 * Steps and bytes (p ranks, n bytes, S segment bytes)
 *   2 (p - 1) steps; each rank sends and receives 2 (p - 1) / p * n bytes and reduces
 *   (p - 1) / p * n bytes; 2 (p - 1) * ceil(n / (p S)) messages per rank.
 *
 * Cost (alpha: latency per message, beta: seconds per byte, gamma: seconds per byte reduced)
 *   T = 2 (p - 1) alpha + 2 (p - 1) / p * n beta + (p - 1) / p * n gamma        one segment
 *   with s = ceil(n / (p S)) segments per chunk the per-message costs overlap with the transfers
 *   of the segments in flight; cost.c charges (2 (p - 1) + s - 1) alpha (pipeline fill). The
 *   reduction overlaps the later transfers.
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

/* The non-deterministic ring as one stream of messages. Message t = u * nk + k is segment k of
 * step u (u < p - 1: reduce-scatter, else all-gather); at step u rank r sends chunk (r - u) mod p
 * to r + 1 and receives chunk (r - u - 1) mod p from r - 1, in both phases. */
#define RING_LANES_MAX 32 /* receive lanes (segments of scratch) */
#define RING_SENDS_MAX 16 /* sends in flight */

typedef struct ring {
    const dpt_coll_args_t *a;
    int p, r;
    size_t slot, nk, total;         /* segment (elements), segments per chunk, messages */
    size_t lanes, ahead, window;    /* see dpt__allreduce_ring */
    size_t r_posted, r_done, s_posted, s_done;
    dpt__req_t rreq[RING_LANES_MAX], sreq[RING_SENDS_MAX];
} ring_t;

/* Segment k of chunk c: element offset and length (0 past the end of a shorter chunk). */
static void segment(const ring_t *g, int c, size_t k, size_t *off, size_t *len)
{
    size_t coff, clen;
    dpt__chunk(g->a->count, (size_t)g->p, (size_t)c, &coff, &clen);
    *off = coff + k * g->slot;
    *len = k * g->slot >= clen ? 0 : clen - k * g->slot < g->slot ? clen - k * g->slot : g->slot;
}

static int is_rs(const ring_t *g, size_t t) { return t / g->nk < (size_t)(g->p - 1); }

static unsigned char *lane(const ring_t *g, size_t t)
{
    return g->a->scratch + (t % g->lanes) * g->slot * g->a->esize;
}

/* One request slot, posted (or left null for a zero-length segment, which both sides skip). */
static dpt_status_t post_one(ring_t *g, int is_send, void *buf, size_t nbytes, int peer, int tag,
                             dpt__req_t *req)
{
    int n = 0;
    *req = DPT__REQ_NULL;
    return is_send ? dpt__post_send(g->a->coll, buf, nbytes, peer, tag, req, &n)
                   : dpt__post_recv(g->a->coll, buf, nbytes, peer, tag, req, &n);
}

static dpt_status_t wait_one(ring_t *g, dpt__req_t *req)
{
    int n = 1;
    return dpt__wait(g->a->coll, req, &n);
}

static dpt_status_t post_recv(ring_t *g)
{
    size_t t = g->r_posted, u = t / g->nk, off, len, es = g->a->esize;
    segment(g, dpt__mod((long)g->r - (long)u - 1, g->p), t % g->nk, &off, &len);
    int rs = is_rs(g, t);
    void *dst = rs ? (void *)lane(g, t) : (unsigned char *)g->a->buf + off * es;
    DPT_CHECK(post_one(g, 0, dst, len * es, (g->r + g->p - 1) % g->p,
                       rs ? DPT__TAG_RING_RS : DPT__TAG_RING_AG, &g->rreq[t % g->lanes]));
    g->r_posted++;
    return DPT_OK;
}

/* Wait for the oldest receive; a reduce-scatter segment is added into the buffer (upstream
 * partial first) and, on its last step, averaged there: this rank owns that chunk. */
static dpt_status_t complete_recv(ring_t *g)
{
    const dpt_coll_args_t *a = g->a;
    size_t t = g->r_done, u = t / g->nk, off, len;
    DPT_CHECK(wait_one(g, &g->rreq[t % g->lanes]));
    g->r_done++;
    if (!is_rs(g, t))
        return DPT_OK;
    segment(g, dpt__mod((long)g->r - (long)u - 1, g->p), t % g->nk, &off, &len);
    if (len) {
        void *dst = (unsigned char *)a->buf + off * a->esize;
        dpt__reduce(a->dtype, dst, lane(g, t), dst, len);
        if (u == (size_t)(g->p - 2) && a->op == DPT_REDOP_AVG)
            dpt__scale_avg(a->dtype, dst, len, g->p);
    }
    return DPT_OK;
}

static dpt_status_t post_send(ring_t *g)
{
    size_t t = g->s_posted, u = t / g->nk, off, len, es = g->a->esize;
    segment(g, dpt__mod((long)g->r - (long)u, g->p), t % g->nk, &off, &len);
    DPT_CHECK(post_one(g, 1, (unsigned char *)g->a->buf + off * es, len * es, (g->r + 1) % g->p,
                       is_rs(g, t) ? DPT__TAG_RING_RS : DPT__TAG_RING_AG,
                       &g->sreq[t % g->window]));
    g->s_posted++;
    return DPT_OK;
}

static dpt_status_t complete_send(ring_t *g)
{
    DPT_CHECK(wait_one(g, &g->sreq[g->s_done % g->window]));
    g->s_done++;
    return DPT_OK;
}

/* Iteration i posts the receives up to message i + ahead, then send i. Receive t needs its lane
 * back (receive t - lanes completed) and, in the all-gather, the reduce-scatter send that read
 * the same bytes (message t - (p - 1) nk) completed; send i needs receive i - nk (same segment,
 * previous step) completed and a free send slot. Every wait in iteration i is for a message that
 * the peer posts in an earlier iteration (ahead < lanes, window >= 1, nk >= 1), so by induction
 * over i the stream cannot deadlock, and receives are posted in the order the sends are. */
static dpt_status_t stream(ring_t *g)
{
    size_t ag_lag = (size_t)(g->p - 1) * g->nk;
    for (size_t i = 0; i < g->total; i++) {
        while (g->r_posted < g->total && g->r_posted <= i + g->ahead) {
            size_t t = g->r_posted;
            if (!is_rs(g, t) && t - ag_lag >= g->s_posted)
                break; /* its bytes are still to be sent: post it in a later iteration */
            while (g->r_done + g->lanes <= t)
                DPT_CHECK(complete_recv(g));
            while (!is_rs(g, t) && g->s_done <= t - ag_lag)
                DPT_CHECK(complete_send(g));
            DPT_CHECK(post_recv(g));
        }
        while (i >= g->nk && g->r_done <= i - g->nk)
            DPT_CHECK(complete_recv(g));
        while (g->s_posted - g->s_done >= g->window)
            DPT_CHECK(complete_send(g));
        DPT_CHECK(post_send(g));
    }
    while (g->r_done < g->total)
        DPT_CHECK(complete_recv(g));
    while (g->s_done < g->total)
        DPT_CHECK(complete_send(g));
    return DPT_OK;
}

dpt_status_t dpt__allreduce_ring(const dpt_coll_args_t *a)
{
    if (a->coll->deterministic) {
        DPT_CHECK(dpt__det_reduce_scatter(a));
        return dpt__ring_allgather(a->coll, a->buf, a->count, a->esize, 0);
    }
    ring_t g = {.a = a, .p = a->coll->size, .r = a->coll->rank};
    size_t maxchunk = a->count / (size_t)g.p + (a->count % (size_t)g.p != 0);
    g.slot = a->seg_count < maxchunk ? a->seg_count : maxchunk;
    g.nk = (maxchunk + g.slot - 1) / g.slot;
    g.total = 2 * (size_t)(g.p - 1) * g.nk;
    DPT_CHECK(dpt__need_scratch(a, g.slot * a->esize, "ring"));
    g.lanes = a->scratch_bytes / (g.slot * a->esize);
    g.lanes = g.lanes < RING_LANES_MAX ? g.lanes : RING_LANES_MAX;
    g.ahead = g.lanes / 2; /* receives posted ahead; the other half of the lanes lets sends run
                              up to lanes / 2 segments ahead of the receives */
    g.window = RING_SENDS_MAX;
    return stream(&g);
}
