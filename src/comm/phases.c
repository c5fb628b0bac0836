/* phases.c: communication phases that several algorithms share: the non-power-of-two fold-in and
 * the recursive-doubling all-gather (rd, rhd), the deterministic reduce-scatter (every algorithm
 * under cfg.deterministic), the ring all-gather (ring, public all-gather), the binomial gather
 * (deterministic tree) and the pipelined binomial broadcast (tree, public broadcast). Also the
 * scratch budget of all algorithms, so create sizes it in one place. */
#include "comm/internal.h"

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* ---- fold-in for non-powers of two ------------------------------------------------------- */

void dpt__fold_init(int p, int rank, dpt__fold_t *f)
{
    int p2 = 1;
    while (p2 * 2 <= p)
        p2 *= 2;
    f->p2 = p2;
    f->rem = p - p2;
    if (rank < 2 * f->rem)
        f->newrank = rank % 2 ? rank / 2 : -1;
    else
        f->newrank = rank - f->rem;
}

int dpt__fold_real(const dpt__fold_t *f, int newrank)
{
    return newrank < f->rem ? 2 * newrank + 1 : newrank + f->rem;
}

dpt_status_t dpt__fold_in(const dpt_coll_args_t *a, const dpt__fold_t *f)
{
    dpt_coll_t *c = a->coll;
    int r = c->rank, n = 0;
    size_t nbytes = a->count * a->esize;
    if (r >= 2 * f->rem)
        return DPT_OK;
    if (r % 2 == 0) {
        DPT_CHECK(dpt__post_send(c, a->buf, nbytes, r + 1, DPT__TAG_FOLDIN, c->reqs, &n));
        return dpt__wait(c, c->reqs, &n);
    }
    DPT_CHECK(dpt__need_scratch(a, nbytes, "fold-in"));
    DPT_CHECK(dpt__post_recv(c, a->scratch, nbytes, r - 1, DPT__TAG_FOLDIN, c->reqs, &n));
    DPT_CHECK(dpt__wait(c, c->reqs, &n));
    dpt__reduce(a->dtype, a->buf, a->scratch, a->buf, a->count); /* x_{r-1} first */
    return DPT_OK;
}

dpt_status_t dpt__fold_out(const dpt_coll_args_t *a, const dpt__fold_t *f)
{
    dpt_coll_t *c = a->coll;
    int r = c->rank, n = 0;
    size_t nbytes = a->count * a->esize;
    if (r >= 2 * f->rem)
        return DPT_OK;
    if (r % 2)
        DPT_CHECK(dpt__post_send(c, a->buf, nbytes, r - 1, DPT__TAG_FOLDIN, c->reqs, &n));
    else
        DPT_CHECK(dpt__post_recv(c, a->buf, nbytes, r + 1, DPT__TAG_FOLDIN, c->reqs, &n));
    return dpt__wait(c, c->reqs, &n);
}

/* First chunk held by core member g (g = p2 gives the end of the buffer). */
static size_t first_chunk(const dpt__fold_t *f, int g, int blocks_p2)
{
    if (blocks_p2)
        return (size_t)g;
    return g < f->rem ? 2 * (size_t)g : (size_t)g + f->rem;
}

dpt_status_t dpt__rd_allgather(const dpt_coll_args_t *a, const dpt__fold_t *f, int blocks_p2)
{
    dpt_coll_t *c = a->coll;
    int p = c->size, r = c->rank, n = 0;
    size_t nchunks = blocks_p2 ? (size_t)f->p2 : (size_t)p, es = a->esize, off, len, end, unused;
    unsigned char *base = a->buf;
    if (!blocks_p2 && r < 2 * f->rem) { /* rank 2i hands its chunk to 2i+1 */
        dpt__chunk(a->count, nchunks, (size_t)(r - r % 2), &off, &len);
        if (r % 2 == 0)
            DPT_CHECK(dpt__post_send(c, base + off * es, len * es, r + 1, DPT__TAG_FOLDIN,
                                     c->reqs, &n));
        else
            DPT_CHECK(dpt__post_recv(c, base + off * es, len * es, r - 1, DPT__TAG_FOLDIN,
                                     c->reqs, &n));
        DPT_CHECK(dpt__wait(c, c->reqs, &n));
    }
    if (f->newrank >= 0) {
        /* Step m: my group of m core members and the partner group swap what they hold. */
        for (int m = 1; m < f->p2; m <<= 1) {
            int mine = f->newrank & ~(m - 1), theirs = mine ^ m;
            int peer = dpt__fold_real(f, f->newrank ^ m);
            dpt__chunk(a->count, nchunks, first_chunk(f, mine, blocks_p2), &off, &unused);
            dpt__chunk(a->count, nchunks, first_chunk(f, mine + m, blocks_p2), &end, &unused);
            DPT_CHECK(dpt__post_send(c, base + off * es, (end - off) * es, peer, DPT__TAG_RD_AG,
                                     c->reqs, &n));
            dpt__chunk(a->count, nchunks, first_chunk(f, theirs, blocks_p2), &off, &unused);
            dpt__chunk(a->count, nchunks, first_chunk(f, theirs + m, blocks_p2), &end, &unused);
            DPT_CHECK(dpt__post_recv(c, base + off * es, (end - off) * es, peer, DPT__TAG_RD_AG,
                                     c->reqs, &n));
            DPT_CHECK(dpt__wait(c, c->reqs, &n));
        }
    }
    return dpt__fold_out(a, f);
}

dpt_status_t dpt__det_allreduce_rd(const dpt_coll_args_t *a, const dpt__fold_t *f)
{
    DPT_CHECK(dpt__det_reduce_scatter(a));
    return dpt__rd_allgather(a, f, 0);
}

/* ---- deterministic reduce-scatter ---------------------------------------------------------- */

size_t dpt__det_layout(size_t count, size_t esize, int p, size_t *stride, size_t *acc_off)
{
    size_t ch = count / (size_t)p + (count % (size_t)p != 0);
    *stride = ch * esize;
    *acc_off = align64((size_t)(p - 1) * *stride);
    return *acc_off + ch * sizeof(float);
}

dpt_status_t dpt__det_reduce_scatter(const dpt_coll_args_t *a)
{
    dpt_coll_t *c = a->coll;
    int p = c->size, r = c->rank, n = 0;
    size_t es = a->esize, stride, acc_off, off, len, joff, jlen;
    DPT_CHECK(dpt__need_scratch(a, dpt__det_layout(a->count, es, p, &stride, &acc_off),
                                "deterministic reduce-scatter"));
    unsigned char *base = a->buf;
    dpt__chunk(a->count, (size_t)p, (size_t)r, &off, &len);
    for (int j = 0; j < p; j++) /* receives first, one slot per other rank */
        if (j != r)
            DPT_CHECK(dpt__post_recv(c, a->scratch + (size_t)(j - (j > r)) * stride, len * es, j,
                                     DPT__TAG_DET_RS, c->reqs, &n));
    for (int k = 1; k < p; k++) { /* sends staggered so that no rank is everyone's first target */
        int j = (r + k) % p;
        dpt__chunk(a->count, (size_t)p, (size_t)j, &joff, &jlen);
        DPT_CHECK(dpt__post_send(c, base + joff * es, jlen * es, j, DPT__TAG_DET_RS, c->reqs, &n));
    }
    DPT_CHECK(dpt__wait(c, c->reqs, &n));
    dpt__fold_rank_order(a->dtype, a->op, p, r, base + off * es, a->scratch, stride, len,
                         (float *)(void *)(a->scratch + acc_off), base + off * es);
    return DPT_OK;
}

/* ---- ring all-gather ----------------------------------------------------------------------- */

dpt_status_t dpt__ring_allgather(dpt_coll_t *c, void *buf, size_t count, size_t esize, int shift)
{
    int p = c->size, r = c->rank, n = 0;
    int right = (r + 1) % p, left = (r + p - 1) % p;
    unsigned char *base = buf;
    size_t soff, slen, roff, rlen;
    for (int s = 0; s < p - 1; s++) {
        dpt__chunk(count, (size_t)p, (size_t)dpt__mod((long)r + shift - s, p), &soff, &slen);
        dpt__chunk(count, (size_t)p, (size_t)dpt__mod((long)r + shift - s - 1, p), &roff, &rlen);
        DPT_CHECK(dpt__post_recv(c, base + roff * esize, rlen * esize, left, DPT__TAG_RING_AG,
                                 c->reqs, &n));
        DPT_CHECK(dpt__post_send(c, base + soff * esize, slen * esize, right, DPT__TAG_RING_AG,
                                 c->reqs, &n));
        DPT_CHECK(dpt__wait(c, c->reqs, &n));
    }
    return DPT_OK;
}

/* ---- binomial gather and broadcast --------------------------------------------------------- */

dpt_status_t dpt__binomial_gather(const dpt_coll_args_t *a)
{
    dpt_coll_t *c = a->coll;
    int p = c->size, r = c->rank, n = 0;
    size_t es = a->esize, off, end, unused;
    unsigned char *base = a->buf;
    /* At step m rank r holds chunks [r, r + m); the partner r + m brings [r + m, r + 2m). */
    for (int m = 1; m < p; m <<= 1) {
        int lo = (r & m) ? r : r + m, hi = lo + m < p ? lo + m : p;
        if (!(r & m) && lo >= p)
            continue;
        dpt__chunk(a->count, (size_t)p, (size_t)lo, &off, &unused);
        dpt__chunk(a->count, (size_t)p, (size_t)hi, &end, &unused);
        if (r & m)
            DPT_CHECK(dpt__post_send(c, base + off * es, (end - off) * es, r - m, DPT__TAG_GATHER,
                                     c->reqs, &n));
        else
            DPT_CHECK(dpt__post_recv(c, base + off * es, (end - off) * es, r + m, DPT__TAG_GATHER,
                                     c->reqs, &n));
        DPT_CHECK(dpt__wait(c, c->reqs, &n));
        if (r & m)
            break;
    }
    return DPT_OK;
}

static int popcount(unsigned v) { return __builtin_popcount(v); }

/* Largest popcount among 0..p-1: the depth of a binomial tree over p ranks. */
static int binomial_depth(int p)
{
    unsigned v = (unsigned)(p - 1);
    int best = popcount(v);
    for (int i = 0; i < 31; i++) /* clear a set bit of p-1 and set every bit below it */
        if (v >> i & 1u) {
            int d = popcount(v >> (i + 1)) + i;
            best = d > best ? d : best;
        }
    return best;
}

dpt_status_t dpt__bcast_binomial(dpt_coll_t *c, void *buf, size_t nbytes, int root)
{
    int p = c->size, n = 0;
    int vr = dpt__mod((long)c->rank - root, p);
    int depth = popcount((unsigned)vr), maxdepth = binomial_depth(p);
    int lowbit = vr ? vr & -vr : 1 << 30; /* children are vr + m for m below lowbit */
    int parent = vr ? (vr & (vr - 1)) : -1;
    size_t seg = c->segment_bytes, nseg = (nbytes + seg - 1) / seg;
    unsigned char *base = buf;
    /* Level schedule: segment k crosses from depth d to d + 1 in iteration k + d, so every
     * message is posted by both sides in the same iteration and one waitall closes it. */
    for (size_t t = 0; t + 1 < nseg + (size_t)maxdepth; t++) {
        if (vr && t + 1 >= (size_t)depth && t + 1 - depth < nseg) {
            size_t k = t + 1 - depth, len = k + 1 < nseg ? seg : nbytes - k * seg;
            DPT_CHECK(dpt__post_recv(c, base + k * seg, len, (parent + root) % p, DPT__TAG_BCAST,
                                     c->reqs, &n));
        }
        if (t >= (size_t)depth && t - depth < nseg) {
            size_t k = t - depth, len = k + 1 < nseg ? seg : nbytes - k * seg;
            for (int m = 1; m < lowbit && vr + m < p; m <<= 1)
                DPT_CHECK(dpt__post_send(c, base + k * seg, len, (vr + m + root) % p,
                                         DPT__TAG_BCAST, c->reqs, &n));
        }
        DPT_CHECK(dpt__wait(c, c->reqs, &n));
    }
    return DPT_OK;
}

/* ---- scratch budget ------------------------------------------------------------------------ */

size_t dpt__scratch_need(int p, size_t max_bytes, size_t segment_bytes)
{
    if (p <= 1 || max_bytes == 0)
        return 0;
    /* Pipelining: 4 segment slots (tree: 2 trees x 2 children; ring: 2). A segment holds at
     * least one element (up to 4 bytes) and at most a quarter of the buffer (tree) or a chunk of
     * at least 2 ranks (ring), so the slots never exceed the buffer by more than 3 elements. */
    size_t seg4 = 4 * (segment_bytes < 4 ? 4 : segment_bytes);
    size_t need = seg4 < max_bytes + 12 ? seg4 : max_bytes + 12;
    need = need > max_bytes ? need : max_bytes; /* rd, rhd, fold-in: one whole buffer */
    for (size_t es = 2; es <= 4; es += 2) {     /* deterministic reduce-scatter */
        size_t stride, acc_off, det = dpt__det_layout(max_bytes / es, es, p, &stride, &acc_off);
        need = det > need ? det : need;
    }
    return align64(need);
}
