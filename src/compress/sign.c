/* sign.c: 1-bit (scaled sign) compression with error feedback in two phases, the compressed
 * all-reduce of DeepSpeed's 1-bit Adam / 1-bit LAMB (Tang et al. 2021; Seide et al. 2014 for
 * 1-bit SGD with error feedback). Per bucket of n floats on p ranks, cut into p balanced chunks
 * (dpt__chunk):
 *
 *   worker: acc = g + e_w. Each chunk j of acc is cut into segments at the bucket's tensor
 *     boundaries and at every multiple of BLOCK floats of the bucket (`sign:BLOCK`, plain
 *     `sign` is sign:256; `sign:0` cuts at tensors only, one segment for a bucket without
 *     tensors), and each segment is coded as one
 *     fp32 scale, mean |acc| over the segment (summed in double in index order, rounded once to
 *     fp32: the L2-optimal scale for a sign code), and one bit per element, 1 for acc >= 0 (+0
 *     and -0 included), 0 below; it decodes to +scale or -scale. Measured on the default job
 *     at np 2 after 8 epochs (docs/PERFORMANCE.md): one scale per chunk lost 1.35-1.57 points
 *     of test accuracy, one per tensor (EF-SignSGD's, Karimireddy et al. 2019) 1.70, one per
 *     256 floats (sign:256) 0.75: the scale's granularity is what counts, not the layers.
 *     e_w = acc - decoded (fp32), so decoded + e_w is acc up to the one rounding of that
 *     subtraction. An all-zero segment has scale 0: it decodes to +0 and its residual stays
 *     exactly 0. An all-to-all hands chunk j to rank j.
 *   server (rank j, chunk j): s = fp32(sum of the p decoded chunks in rank order, in double, / p)
 *     + e_s, coded the same way (one scale per segment), e_s = s - decoded(s). An all-gather of
 *     the server payloads, and every rank decodes the p chunks: the result, the same bits on
 *     every rank (every rank decodes the same payloads).
 *
 * Payload: per chunk S fp32 scales (S = the most segments any chunk of this call has; unused
 * ones 0) then ceil(ceil(n / p) / 8) bytes of bits, the same size for every chunk (a shorter
 * chunk pads with zero bits), so each phase moves (p - 1) such blocks per rank: 2 (p - 1)
 * (n / 8p + 4S) bytes, about 1/32 of a ring all-reduce's 2 (p - 1) / p 4n (1/28 with plain
 * sign's scale per 256 floats).
 *
 * Non-finite values: a segment whose acc (or s) holds a NaN or Inf is sent with scale NaN, so
 * that segment of the result is NaN and the trainer's check skips or aborts the step; its
 * residual is left as it was before the step (the skipped step adds nothing to it, and a later
 * step is not poisoned). One rank: the same scheme (both codings; nothing is sent), not the
 * identity, so a test at p = 1 sees what p > 1 does (the trainer never runs a codec on one rank).
 *
 * State: 2n floats, [e_w (n) | e_s at this rank's chunk positions, zeros elsewhere (n)], the
 * same size on any rank count. A resume on the same ranks restores it bit for bit. On another
 * rank count each rank gets the writers' average: for e_w that keeps the average pending error
 * (what the next result would carry), for e_s it is e_s / p_old (each position had one writer),
 * so that part of one step's server rounding is lost, once. A call of n' < n floats runs the
 * scheme on the first n' (cut into p chunks of their own); the server half is zeroed outside
 * this rank's chunk on every call, so nothing stale is kept there. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "comm/internal.h"   /* dpt__chunk */
#include "compress/internal.h"
#include "core/internal.h"
#include "dptrain/alloc.h"

typedef struct sign {
    size_t n;
    int ranks;
    size_t *cuts;          /* the tensors' starts inside (0, n), increasing */
    int n_cuts;
    size_t block;          /* sign:BLOCK, a cut at every multiple of it; 0: tensors only */
    float *state;          /* 2n: [e_w | e_s], see above */
    unsigned char *send;   /* p payloads: the worker's chunks, then the gathered server ones */
    unsigned char *recv;   /* p payloads: chunk `rank` of every rank */
    double *sum;           /* ceil(n / p): the server's rank-order sums */
} sign_t;

/* How many cuts are <= x (binary search). */
static size_t cuts_upto(const sign_t *t, size_t x)
{
    size_t lo = 0, hi = (size_t)t->n_cuts;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->cuts[mid] <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The end of the segment that starts at pos, in a chunk that ends at end. */
static size_t segment_end(const sign_t *t, size_t pos, size_t end)
{
    size_t k = cuts_upto(t, pos);
    if (k < (size_t)t->n_cuts && t->cuts[k] < end)
        end = t->cuts[k];
    if (t->block && (pos / t->block + 1) * t->block < end)
        end = (pos / t->block + 1) * t->block;
    return end;
}

/* A call's payload: S scales (the most segments of any of its p chunks, at least 1), then the
 * bits of its longest chunk. */
typedef struct layout {
    size_t scales, bytes;
} layout_t;

static layout_t layout_of(const sign_t *t, size_t n, int p)
{
    size_t most = 1, off, len;
    for (int j = 0; j < p; j++) {
        dpt__chunk(n, (size_t)p, (size_t)j, &off, &len);
        size_t segs = 0;
        for (size_t a = off; a < off + len; a = segment_end(t, a, off + len))
            segs++;
        most = segs > most ? segs : most;
    }
    size_t maxlen = (n + (size_t)p - 1) / (size_t)p;
    return (layout_t){most, most * sizeof(float) + (maxlen + 7) / 8};
}

static void destroy(void *state)
{
    sign_t *t = state;
    if (!t)
        return;
    dpt_free(t->cuts);
    dpt_free(t->state);
    dpt_free(t->send);
    dpt_free(t->recv);
    dpt_free(t->sum);
    dpt_free(t);
}

/* sign:BLOCK: floats per scale at most, in [8, 2^24]; sign:0: one scale per tensor segment;
 * plain sign: SIGN_BLOCK, the setting that kept the default job within 1 point of `none` at
 * np 2 and np 4 (docs/PERFORMANCE.md), where one scale per tensor lost 1.70 points. */
enum { SIGN_BLOCK = 256 };

static dpt_status_t parse_block(const char *arg, size_t *block)
{
    *block = SIGN_BLOCK;
    if (!arg)
        return DPT_OK;
    char *end = NULL;
    long v = strtol(arg, &end, 10);
    if (end == arg || *end || (v != 0 && (v < 8 || v > (1L << 24))))
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--compress sign:BLOCK: BLOCK (floats per "
                             "scale) must be 0 (one scale per tensor) or an integer in [8, "
                             "16777216]; plain sign is sign:256 (got '%s')", arg);
    *block = (size_t)v;
    return DPT_OK;
}

static dpt_status_t create(const char *arg, const dpt_codec_bucket_t *bk, void **state)
{
    size_t block;
    DPT_CHECK(parse_block(arg, &block));
    size_t n = bk->n, p = (size_t)bk->ranks;
    sign_t *t = dpt_calloc(sizeof *t);
    if (!t)
        return dpt_error_set(DPT_ERR_NOMEM, "--compress sign: out of memory");
    t->n = n;
    t->ranks = bk->ranks;
    t->block = block;
    int nt = bk->tensors ? bk->n_tensors : 0;
    t->cuts = dpt_malloc(((size_t)nt + 1) * sizeof *t->cuts);
    for (int k = 0; t->cuts && k < nt; k++) {   /* strictly inside, increasing: no empty segment */
        size_t c = bk->tensors[k].off;
        if (c > 0 && c < n && (!t->n_cuts || c > t->cuts[t->n_cuts - 1]))
            t->cuts[t->n_cuts++] = c;
    }
    /* room for any call's layout: a shorter call's chunks may hold more cuts than n's */
    size_t maxlen = (n + p - 1) / p;
    size_t scales = (size_t)t->n_cuts + 1 + (block ? maxlen / block + 1 : 0);
    size_t bytes = scales * sizeof(float) + (maxlen + 7) / 8;
    t->state = dpt_calloc((2 * n + 1) * sizeof *t->state);
    t->send = dpt_malloc(p * bytes);
    t->recv = dpt_malloc(p * bytes);
    t->sum = dpt_malloc(((n + p - 1) / p + 1) * sizeof *t->sum);
    if (!t->cuts || !t->state || !t->send || !t->recv || !t->sum) {
        destroy(t);
        return dpt_error_set(DPT_ERR_NOMEM, "--compress sign: out of memory for a bucket of %zu "
                             "floats", n);
    }
    *state = t;
    return DPT_OK;
}

/* mean |x| over x[0..len): summed in double in index order, rounded once; 0 for len 0; NaN when
 * the segment is not finite (a NaN or an Inf in it). Never above max |x|, so it cannot overflow. */
static float scale_of(const float *x, size_t len)
{
    double s = 0;
    for (size_t i = 0; i < len; i++)
        s += fabs((double)x[i]);
    if (!isfinite(s))
        return NAN;
    return len ? (float)(s / (double)len) : 0.0f;
}

static float scale_at(const unsigned char *payload, size_t k)
{
    float s;
    memcpy(&s, payload + k * sizeof s, sizeof s);   /* payloads are byte-aligned */
    return s;
}

static int bit_at(const unsigned char *bits, size_t i)
{
    return (bits[i >> 3] >> (i & 7)) & 1;
}

/* Code the chunk x[0..len) of the bucket (its first element is the bucket's off) into `out`
 * (the segments' scales, zeros after the last, then the bits LSB first, zero-padded) and set
 * res[i] = x[i] - decoded[i]; a non-finite segment goes out as scale NaN with res untouched. */
static void encode(const sign_t *t, layout_t L, const float *x, size_t off, size_t len,
                   unsigned char *out, float *res)
{
    memset(out, 0, L.bytes);
    unsigned char *bits = out + L.scales * sizeof(float);
    for (size_t i = 0; i < len; i++)
        if (x[i] >= 0)
            bits[i >> 3] |= (unsigned char)(1u << (i & 7));
    for (size_t a = 0, k = 0; a < len; k++) {
        size_t b = segment_end(t, off + a, off + len) - off;
        float sc = scale_of(x + a, b - a);
        memcpy(out + k * sizeof sc, &sc, sizeof sc);
        for (size_t i = a; i < b && !isnan(sc); i++)
            res[i] = x[i] - (x[i] >= 0 ? sc : -sc);
        a = b;
    }
}

/* The chunk at bucket offset off, len floats, decoded into out (floats) or added to sum. */
static void decode(const sign_t *t, layout_t L, const unsigned char *payload, size_t off,
                   size_t len, float *out, double *sum)
{
    const unsigned char *bits = payload + L.scales * sizeof(float);
    for (size_t a = 0, k = 0; a < len; k++) {
        size_t b = segment_end(t, off + a, off + len) - off;
        const float sc = scale_at(payload, k);
        for (size_t i = a; i < b; i++) {
            float v = bit_at(bits, i) ? sc : -sc;
            if (out)
                out[i] = v;
            else
                sum[i] += v;
        }
        a = b;
    }
}

static dpt_status_t allreduce(void *state, dpt_coll_t *coll, float *buf, size_t n,
                              dpt_coll_algo_t algo, long step, dpt_codec_stats_t *stats)
{
    (void)algo;   /* the exchange is an all-to-all and an all-gather, not an all-reduce */
    (void)step;
    sign_t *t = state;
    const int p = t->ranks, me = dpt_coll_rank(coll);
    if (dpt_coll_size(coll) != p)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--compress sign: made for %d ranks, the "
                             "collective has %d", p, dpt_coll_size(coll));
    stats->bytes_sent = stats->t_code = 0;
    if (!n)
        return DPT_OK;
    float *ew = t->state, *es = t->state + t->n;
    const layout_t L = layout_of(t, n, p);
    const size_t bytes = L.bytes;
    const double sent0 = dpt_coll_bytes_sent(coll);
    size_t off, len;

    /* worker phase */
    double t0 = dpt__now();
    for (size_t i = 0; i < n; i++)   /* acc = g + e_w, in place */
        buf[i] += ew[i];
    for (int j = 0; j < p; j++) {
        dpt__chunk(n, (size_t)p, (size_t)j, &off, &len);
        encode(t, L, buf + off, off, len, t->send + (size_t)j * bytes, ew + off);
    }
    dpt__chunk(n, (size_t)p, (size_t)me, &off, &len);   /* from here on: this rank's chunk */
    memset(es, 0, off * sizeof *es);
    memset(es + off + len, 0, (t->n - off - len) * sizeof *es);
    double t1 = dpt__now();
    DPT_CHECK(dpt_coll_alltoall(coll, t->send, bytes, t->recv));

    /* server phase: the chunk's mean of what the ranks sent, plus e_s, coded again */
    double t2 = dpt__now();
    for (size_t i = 0; i < len; i++)
        t->sum[i] = 0;
    for (int r = 0; r < p; r++)   /* rank order, per element */
        decode(t, L, t->recv + (size_t)r * bytes, off, len, NULL, t->sum);
    float *s = buf + off;   /* acc's chunk is coded: its floats are free */
    for (size_t i = 0; i < len; i++)
        s[i] = (float)(t->sum[i] / p) + es[off + i];
    unsigned char *mine = t->send + (size_t)me * bytes;   /* in place for the all-gather */
    encode(t, L, s, off, len, mine, es + off);
    double t3 = dpt__now();
    DPT_CHECK(dpt_coll_allgather(coll, mine, bytes, t->send));

    double t4 = dpt__now();
    for (int j = 0; j < p; j++) {
        dpt__chunk(n, (size_t)p, (size_t)j, &off, &len);
        decode(t, L, t->send + (size_t)j * bytes, off, len, buf + off, NULL);
    }
    stats->t_code = (t1 - t0) + (t3 - t2) + (dpt__now() - t4);
    stats->bytes_sent = dpt_coll_bytes_sent(coll) - sent0;
    return DPT_OK;
}

/* Against the ring all-reduce's 2 (p - 1) / p * 4n: p payloads' worth, p * bytes / 4n (the same
 * expression at p = 1, where neither sends anything). */
static double ratio(const void *state, size_t n)
{
    const sign_t *t = state;
    if (!n)
        return 1.0;
    return (double)t->ranks * (double)layout_of(t, n, t->ranks).bytes / (4.0 * (double)n);
}

static float *get_state(void *state, size_t *n)
{
    sign_t *t = state;
    *n = 2 * t->n;
    return t->state;
}

const dpt__codec_ops_t dpt__codec_sign = {"sign", create, destroy, allreduce, ratio, get_state,
                                          DPT__ARG_OPTIONAL, 0, NULL, 1};
