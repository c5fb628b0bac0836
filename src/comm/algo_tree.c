/* algo_tree.c: tree all-reduce. Small buffers: binomial reduce to rank 0, then binomial
 * broadcast. Large buffers: NCCL's pipelined double binary tree, where two complementary binary
 * trees each reduce and broadcast half of the buffer, segment by segment.
 *
 * What it does
 *   Small (n <= segment_bytes): binomial reduce (at step m = 1, 2, 4, ... rank r with bit m set
 *   sends its partial to r - m and stops; r + m's partial is added after r's own), rank 0 applies
 *   AVG, then dpt__bcast_binomial from rank 0.
 *   Large (n > segment_bytes): tree 0 is NCCL's in-order binary tree (rank 0 on top, whose one
 *   child is the largest power of two below p; leaves are the odd ranks); tree 1 is tree 0
 *   mirrored (r -> p - 1 - r) for even p or shifted by one (r -> r + 1) for odd p, so most leaves
 *   of one tree are inner nodes of the other. Tree 0 carries the first half of the buffer, tree 1
 *   the second. Each half is cut into segments of segment_bytes (at most a quarter of the
 *   buffer, so there are always two or more per half); segments flow up (reduce: a node
 *   adds left subtree + own + right subtree, in that order) and, once finished at the root (which
 *   applies AVG), flow down again (broadcast).
 *
 * Pipelining schedule (double binary tree)
 *   Let D be a tree's depth and d a node's depth. Segment k crosses the edge between depth d + 1
 *   and d going up in iteration k + D - d - 1, and between d and d + 1 going down in iteration
 *   k + D + d. Both ends of every message therefore post it in the same iteration; one waitall
 *   per iteration closes all messages of both trees, so no global ordering can deadlock, and up
 *   to 2D segments of each tree are in flight at once. A node never receives into a segment it is
 *   still sending (the downward copy of segment k arrives 2d - 1 iterations after it went up).
 *
 * Steps and bytes (p ranks, n bytes, S segment bytes, D = tree depth, about log2 p)
 *   Small: 2 ceil(log2 p) steps; rank 0 receives n ceil(log2 p) bytes.
 *   Large: ceil(n / (2S)) + 2D - 1 iterations. In its tree's half (n/2 bytes) an inner node with
 *   two children receives n up and n/2 down and sends n/2 up and n down; a leaf sends and
 *   receives n/2. For even p no rank is an inner node of both trees, so a rank sends and receives
 *   about 2n bytes in all (like the ring) and reduces about n bytes.
 *
 * Cost (alpha: latency, beta: seconds per byte, gamma: seconds per byte reduced)
 *   Small:  T = 2 ceil(log2 p) (alpha + n beta) + ceil(log2 p) n gamma
 *   Large:  T = (ceil(n / (2S)) + 2D - 1) (alpha + 4 S beta + 2 S gamma)   (per iteration an inner
 *           node sends 3 segments in its inner tree and 1 as a leaf of the other, and reduces 2);
 *           for n >> S this tends to 2 n beta + n gamma, the ring's bandwidth term, while the
 *           latency term is 2D alpha per pipeline fill instead of the ring's 2 (p - 1) alpha.
 *
 * Bitwise agreement
 *   Every element is finished at exactly one root (rank 0 for small, the tree's root for large)
 *   and broadcast, so all ranks agree by construction, NaN payloads included.
 *
 * Deterministic mode (cfg.deterministic)
 *   dpt__det_reduce_scatter (rank r folds chunk r of p in rank order), a binomial gather of the
 *   chunks to rank 0, and the pipelined binomial broadcast from rank 0. Cost: (p - 1) alpha +
 *   (p - 1) / p n (beta + gamma) + ceil(log2 p) alpha + (p - 1) / p n beta (gather) + broadcast.
 *
 * Limitations
 *   The lockstep iterations make every node wait for the slowest message of an iteration. The
 *   binomial broadcast sends each segment log2 p times from the root (not bandwidth optimal).
 *   Small-buffer path needs n bytes of scratch (n <= segment_bytes); large path 4 segments.
 *
 * Example, p = 4, large buffer: tree 0 = 0 -> 2 -> {1, 3}, tree 1 (mirror) = 3 -> 1 -> {2, 0};
 * half H0 goes up tree 0 and comes down again, half H1 likewise on tree 1, concurrently:
 *
 *   iteration  tree 0 (H0 segment k)                 tree 1 (H1 segment k)
 *   k          1,3 -> 2 (seg k)                      2,0 -> 1 (seg k)
 *   k + 1      2 -> 0 (seg k, 0 finishes it)         1 -> 3 (seg k, 3 finishes it)
 *   k + 2      0 -> 2 (seg k)                        3 -> 1 (seg k)
 *   k + 3      2 -> 1,3 (seg k)                      1 -> 2,0 (seg k)
 */
#include "comm/internal.h"

/* NCCL's binary tree on virtual ranks 0..p-1 (root 0): node v with lowest set bit b has parent
 * (v ^ b) | 2b (or v ^ b when that is out of range) and children v - b/2 and v + b' with b' the
 * largest power of two <= b/2 keeping v + b' < p. */
static void btree(int p, int v, int *up, int *left, int *right)
{
    int bit = 1;
    while (bit < p && !(v & bit))
        bit <<= 1;
    *left = *right = -1;
    if (v == 0) {
        *up = -1;
        *right = p > 1 ? bit >> 1 : -1; /* every other rank is larger: a right child */
        return;
    }
    *up = ((v ^ bit) | (bit << 1)) < p ? ((v ^ bit) | (bit << 1)) : (v ^ bit);
    int low = bit >> 1;
    *left = low ? v - low : -1;
    for (; low; low >>= 1)
        if (v + low < p) {
            *right = v + low;
            break;
        }
}

/* Virtual rank of real rank r in tree t, and back. */
static int to_virtual(int p, int t, int r)
{
    if (t == 0)
        return r;
    return p % 2 == 0 ? p - 1 - r : (r + p - 1) % p;
}

static int to_real(int p, int t, int v)
{
    if (t == 0 || v < 0)
        return v;
    return p % 2 == 0 ? p - 1 - v : (v + 1) % p;
}

static int vdepth(int p, int v)
{
    int d = 0, up, l, r;
    for (;;) {
        btree(p, v, &up, &l, &r);
        if (up < 0)
            return d;
        v = up;
        d++;
    }
}

void dpt__dtree_init(int p, int rank, dpt__dtree_t *t)
{
    int maxdepth = 0;
    for (int w = 0; w < p; w++) { /* both trees have the same shape */
        int d = vdepth(p, w);
        maxdepth = d > maxdepth ? d : maxdepth;
    }
    for (int k = 0; k < 2; k++) {
        int v = to_virtual(p, k, rank), up, l, r;
        btree(p, v, &up, &l, &r);
        t->node[k].parent = to_real(p, k, up);
        t->node[k].child[0] = to_real(p, k, l); /* left subtree: added before our own part */
        t->node[k].child[1] = to_real(p, k, r); /* right subtree: added after */
        t->node[k].depth = vdepth(p, v);
        t->maxdepth[k] = maxdepth;
    }
}

/* ---- small buffers: binomial reduce + binomial broadcast ----------------------------------- */

static dpt_status_t binomial(const dpt_coll_args_t *a)
{
    dpt_coll_t *c = a->coll;
    int p = c->size, r = c->rank, n = 0;
    size_t nbytes = a->count * a->esize;
    DPT_CHECK(dpt__need_scratch(a, nbytes, "tree"));
    for (int m = 1; m < p; m <<= 1) {
        if (r & m) {
            DPT_CHECK(dpt__post_send(c, a->buf, nbytes, r - m, DPT__TAG_BINOMIAL_REDUCE, c->reqs,
                                     &n));
            DPT_CHECK(dpt__wait(c, c->reqs, &n));
            break;
        }
        if (r + m < p) {
            DPT_CHECK(dpt__post_recv(c, a->scratch, nbytes, r + m, DPT__TAG_BINOMIAL_REDUCE,
                                     c->reqs, &n));
            DPT_CHECK(dpt__wait(c, c->reqs, &n));
            dpt__reduce(a->dtype, a->buf, a->buf, a->scratch, a->count); /* ranks [r, r+m) first */
        }
    }
    if (r == 0 && a->op == DPT_REDOP_AVG)
        dpt__scale_avg(a->dtype, a->buf, a->count, p);
    return dpt__bcast_binomial(c, a->buf, nbytes, 0);
}

/* ---- large buffers: pipelined double binary tree ------------------------------------------- */

typedef struct half {
    size_t start, len; /* elements of the buffer this tree carries */
    size_t nseg;
} half_t;

/* Segment k of a tree's half: element offset and length. */
static void seg_range(const half_t *h, size_t slot, long k, size_t *off, size_t *len)
{
    size_t kk = (size_t)k;
    *off = h->start + kk * slot;
    *len = h->len - kk * slot < slot ? h->len - kk * slot : slot;
}

static int valid(const half_t *h, long k) { return k >= 0 && (size_t)k < h->nseg; }

/* Post tree t's messages of iteration `it`. */
static dpt_status_t post_tree(const dpt_coll_args_t *a, int t, const half_t *h, size_t slot,
                              long it, int *n)
{
    dpt_coll_t *c = a->coll;
    const dpt__tree_node_t *nd = &c->dtree.node[t];
    long D = c->dtree.maxdepth[t], d = nd->depth;
    size_t es = a->esize, off, len;
    unsigned char *base = a->buf;
    long k = it - D + d + 1; /* up: segment arriving from the children */
    if (valid(h, k)) {
        seg_range(h, slot, k, &off, &len);
        for (int ci = 0; ci < 2; ci++)
            if (nd->child[ci] >= 0)
                DPT_CHECK(dpt__post_recv(c, a->scratch + (size_t)(2 * t + ci) * slot * es,
                                         len * es, nd->child[ci], DPT__TAG_DBT_UP + t, c->reqs,
                                         n));
    }
    if (nd->parent >= 0) {
        k = it - D + d; /* up: our finished partial to the parent */
        if (valid(h, k)) {
            seg_range(h, slot, k, &off, &len);
            DPT_CHECK(dpt__post_send(c, base + off * es, len * es, nd->parent,
                                     DPT__TAG_DBT_UP + t, c->reqs, n));
        }
        k = it - D - d + 1; /* down: the final value from the parent */
        if (valid(h, k)) {
            seg_range(h, slot, k, &off, &len);
            DPT_CHECK(dpt__post_recv(c, base + off * es, len * es, nd->parent,
                                     DPT__TAG_DBT_DOWN + t, c->reqs, n));
        }
    }
    k = it - D - d; /* down: pass the final value on */
    if (valid(h, k)) {
        seg_range(h, slot, k, &off, &len);
        for (int ci = 0; ci < 2; ci++)
            if (nd->child[ci] >= 0)
                DPT_CHECK(dpt__post_send(c, base + off * es, len * es, nd->child[ci],
                                         DPT__TAG_DBT_DOWN + t, c->reqs, n));
    }
    return DPT_OK;
}

/* After iteration `it`: add the children's segment (left + own + right) and, at the root,
 * finish it. */
static void reduce_tree(const dpt_coll_args_t *a, int t, const half_t *h, size_t slot, long it)
{
    dpt_coll_t *c = a->coll;
    const dpt__tree_node_t *nd = &c->dtree.node[t];
    long k = it - c->dtree.maxdepth[t] + nd->depth + 1;
    if (!valid(h, k) || (nd->child[0] < 0 && nd->child[1] < 0))
        return;
    size_t es = a->esize, off, len;
    seg_range(h, slot, k, &off, &len);
    unsigned char *own = (unsigned char *)a->buf + off * es;
    unsigned char *slot0 = a->scratch + (size_t)(2 * t) * slot * es;
    if (nd->child[0] >= 0)
        dpt__reduce(a->dtype, own, slot0, own, len);
    if (nd->child[1] >= 0)
        dpt__reduce(a->dtype, own, own, slot0 + slot * es, len);
    if (nd->parent < 0 && a->op == DPT_REDOP_AVG)
        dpt__scale_avg(a->dtype, own, len, c->size);
}

static dpt_status_t double_binary_tree(const dpt_coll_args_t *a)
{
    dpt_coll_t *c = a->coll;
    half_t h[2];
    h[0].start = 0;
    h[0].len = a->count - a->count / 2;
    h[1].start = h[0].len;
    h[1].len = a->count / 2;
    /* Segment: S, but at most a quarter of the buffer, so each half has two segments or more to
     * pipeline and the 4 scratch slots never exceed the buffer. */
    size_t quarter = (h[0].len + 1) / 2;
    size_t slot = a->seg_count < quarter ? a->seg_count : quarter; /* elements */
    DPT_CHECK(dpt__need_scratch(a, 4 * slot * a->esize, "tree"));
    long iters = 0;
    for (int t = 0; t < 2; t++) {
        h[t].nseg = (h[t].len + slot - 1) / slot;
        long it_t = h[t].nseg ? (long)h[t].nseg + 2L * c->dtree.maxdepth[t] - 1 : 0;
        iters = it_t > iters ? it_t : iters;
    }
    for (long it = 0; it < iters; it++) {
        int n = 0;
        for (int t = 0; t < 2; t++)
            DPT_CHECK(post_tree(a, t, &h[t], slot, it, &n));
        DPT_CHECK(dpt__wait(c, c->reqs, &n));
        for (int t = 0; t < 2; t++)
            reduce_tree(a, t, &h[t], slot, it);
    }
    return DPT_OK;
}

dpt_status_t dpt__allreduce_tree(const dpt_coll_args_t *a)
{
    dpt_coll_t *c = a->coll;
    if (c->deterministic) {
        DPT_CHECK(dpt__det_reduce_scatter(a));
        DPT_CHECK(dpt__binomial_gather(a));
        return dpt__bcast_binomial(c, a->buf, a->count * a->esize, 0);
    }
    if (a->count * a->esize <= c->segment_bytes)
        return binomial(a);
    return double_binary_tree(a);
}
