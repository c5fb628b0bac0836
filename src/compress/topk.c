/* topk.c: top-k sparsification with error feedback and momentum correction: Deep Gradient
 * Compression (Lin et al., ICLR 2018), after Stich et al. 2018 for the error feedback.
 *
 * Per bucket and step, each rank folds its gradients into an accumulator v and sends the
 * k = ceil(density * n) entries of largest |v| as (uint32 index, float value) pairs; what it sent
 * is zeroed in v (what was sent plus the new v is exactly the old v plus this step's share). With
 * the optimizer's momentum m (bucket->momentum > 0: the codec owns the momentum, and the trainer
 * runs the optimizer without it, because momentum applied after the exchange would multiply
 * every delayed coordinate's late arrival; DGC's momentum correction):
 *   u = m u + g, v = v + u                 (Nesterov: u = m (u + g), v = v + u + g)
 * and u is zeroed where v was sent (DGC's momentum factor masking: a coordinate sent late must
 * not push again with the momentum it already delivered). Without momentum: v = v + g.
 * The pairs of all ranks are all-gathered and summed in rank order, then divided by p, so every
 * rank gets the same bits. A NaN counts as the largest entry (it is sent, and the NaN policy sees
 * it).
 *
 * Sparsity warm-up (DGC's exponential ramp): over the first bucket->warmup_steps steps after the
 * start the density falls geometrically from 0.25 to FRACTION, so that the first, large and
 * fast-changing gradients are not held back for long.
 *
 * Cost: an all-gather of p * k pairs moves (p - 1) * 8k bytes per rank; a ring all-reduce of n
 * floats 2 (p - 1) / p * 4n. Sparse wins only while p * k < n: at or above that density the step
 * falls back to the dense fp32 all-reduce of v (dpt_codec_ratio says which), and there nothing
 * is masked: every coordinate is sent at every step, so v and u are plain momentum SGD's.
 *
 * +zstd (wire.h): the pairs leave as two streams, the index gaps (each index minus the previous
 * one, modulo 2^32: mostly small numbers, whose high bytes are zeros) and the values, which the
 * wire compresses by byte planes; the receiver rebuilds the same pairs in the same order, so the
 * sums, and the result, are those without +zstd bit for bit. The dense fallback goes through the
 * wire's all-reduce (the "ring" algorithm's result, wire_ring.c). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compress/internal.h"
#include "core/internal.h"
#include "dptrain/alloc.h"

typedef struct pair {
    uint32_t index;
    float value;
} pair_t;

typedef struct topk {
    double fraction;
    size_t n, k, k_max; /* k: after the warm-up; k_max: the largest k of any step */
    int ranks;
    float momentum;     /* 0: no momentum correction */
    int nesterov;
    long start, warmup; /* the first compressed step; the warm-up's length in steps */
    float *e;           /* the state: v (n), then u (n) with momentum */
    float *key;         /* scratch (n): |acc|, NaN as +Inf */
    pair_t *send;       /* k */
    pair_t *recv;       /* p * k */
    dpt__wire_t *wire;  /* +zstd, else NULL */
    uint32_t *streams;  /* +zstd: k index gaps, then k value bits (what is all-gathered) */
} topk_t;

static void destroy(void *state)
{
    topk_t *t = state;
    if (!t)
        return;
    dpt_free(t->e);
    dpt_free(t->key);
    dpt_free(t->send);
    dpt_free(t->recv);
    dpt_free(t->streams);
    dpt_free(t);
}

#define WARM_DENSITY 0.25   /* where the sparsity warm-up starts */

static size_t k_of(double density, size_t n)
{
    size_t k = n ? (size_t)ceil(density * (double)n) : 0;
    return k > n ? n : k;
}

/* k at `step`: the warm-up's geometric ramp from WARM_DENSITY to the fraction, then k. The same
 * on every rank (the same doubles in, the same pow). */
static size_t k_at(const topk_t *t, long step)
{
    long s = step - t->start;
    if (!t->warmup || s >= t->warmup)
        return t->k;
    double d = WARM_DENSITY * pow(t->fraction / WARM_DENSITY, (double)(s > 0 ? s : 0) / t->warmup);
    size_t k = k_of(d, t->n);
    return k < t->k ? t->k : k > t->k_max ? t->k_max : k;
}

static dpt_status_t create(const char *arg, const dpt_codec_bucket_t *bk, void **state)
{
    size_t n = bk->n;
    char *end = NULL;
    double f = arg ? strtod(arg, &end) : 0;
    if (!arg || end == arg || *end || !(f > 0 && f <= 1))
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--compress topk:FRACTION: FRACTION must be "
                             "in (0, 1], e.g. topk:0.01 (got '%s')", arg ? arg : "");
    topk_t *t = dpt_calloc(sizeof *t);
    if (!t)
        return dpt_error_set(DPT_ERR_NOMEM, "--compress topk: out of memory");
    t->fraction = f;
    t->n = n;
    t->ranks = bk->ranks;
    t->momentum = bk->momentum > 0 ? bk->momentum : 0.0f;
    t->nesterov = bk->nesterov && t->momentum > 0;
    t->start = bk->start_step;
    t->warmup = bk->warmup_steps > 0 && f < WARM_DENSITY ? bk->warmup_steps : 0;
    t->k = k_of(f, n);
    t->k_max = t->warmup ? k_of(WARM_DENSITY, n) : t->k;
    const size_t ne = (n ? n : 1) * (t->momentum > 0 ? 2 : 1);
    t->e = dpt_calloc(ne * sizeof *t->e);
    t->key = dpt_malloc((n ? n : 1) * sizeof *t->key);
    t->send = dpt_malloc((t->k_max ? t->k_max : 1) * sizeof *t->send);
    t->recv = dpt_malloc(((size_t)t->ranks * t->k_max + 1) * sizeof *t->recv);
    if (!t->e || !t->key || !t->send || !t->recv) {
        destroy(t);
        return dpt_error_set(DPT_ERR_NOMEM, "--compress topk: out of memory for a bucket of %zu "
                             "floats", n);
    }
    *state = t;
    return DPT_OK;
}

/* The k-th largest of v[0..n) (1 <= k <= n), reordering v: Hoare's quickselect with the middle
 * element as pivot (deterministic: the same input gives the same choice on every run). */
static float kth_largest(float *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1, want = k - 1;   /* descending order: position k - 1 */
    while (lo < hi) {
        float pivot = v[lo + (hi - lo) / 2];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] > pivot)
                i++;
            while (v[j] < pivot)
                j--;
            if (i <= j) {
                float tmp = v[i];
                v[i] = v[j];
                v[j] = tmp;
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            return v[want];
    }
    return v[want];
}

static dpt_status_t set_wire(void *state, dpt__wire_t *wire)
{
    topk_t *t = state;
    t->wire = wire;
    t->streams = dpt_malloc((2 * t->k_max + 1) * sizeof *t->streams);
    return t->streams ? DPT_OK : dpt_error_set(DPT_ERR_NOMEM, "--compress topk+zstd: out of "
                                               "memory");
}

/* The pairs as the two streams, and the streams back as pairs added into buf in their order. */
static void to_streams(const pair_t *pairs, size_t k, uint32_t *out)
{
    uint32_t prev = 0;
    for (size_t j = 0; j < k; j++) {
        out[j] = pairs[j].index - prev;   /* modulo 2^32: the ties' run starts over, lower */
        prev = pairs[j].index;
        memcpy(&out[k + j], &pairs[j].value, sizeof(float));
    }
}

static void add_streams(const uint32_t *in, size_t k, float *buf)
{
    uint32_t index = 0;
    for (size_t j = 0; j < k; j++) {
        float v;
        index += in[j];
        memcpy(&v, &in[k + j], sizeof v);
        buf[index] += v;
    }
}

static float key_of(float x)
{
    return isnan(x) ? INFINITY : fabsf(x);
}

/* Fold this step's gradients g (in buf) into v (and u), leaving v in buf. */
static void accumulate(topk_t *t, float *buf, size_t n)
{
    float *v = t->e, *u = t->e + t->n;
    const float m = t->momentum;
    if (m == 0.0f) {
        for (size_t i = 0; i < n; i++)
            buf[i] += v[i];
    } else if (t->nesterov) {
        for (size_t i = 0; i < n; i++) {
            u[i] = m * (u[i] + buf[i]);
            buf[i] = v[i] + u[i] + buf[i];
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            u[i] = m * u[i] + buf[i];
            buf[i] = v[i] + u[i];
        }
    }
}

static dpt_status_t allreduce(void *state, dpt_coll_t *coll, float *buf, size_t n,
                              dpt_coll_algo_t algo, long step, dpt_codec_stats_t *stats)
{
    topk_t *t = state;
    double t0 = dpt__now();
    accumulate(t, buf, n);
    size_t k = k_at(t, step);
    dpt_codec_stats_t ws = {0, 0};   /* the wire's bytes and zstd time (+zstd only) */
    if ((double)t->ranks * (double)k >= (double)n || n < t->n) {   /* dense (or a partial call) */
        memset(t->e, 0, n * sizeof *t->e);   /* all of v sent; u kept: plain momentum */
        double tc = dpt__now() - t0;
        DPT_CHECK(dpt__wire_allreduce(t->wire, coll, buf, n, DPT_DTYPE_F32, DPT_REDOP_AVG, algo,
                                      &ws));
        stats->t_code = tc + ws.t_code;
        stats->bytes_sent = t->wire ? ws.bytes_sent
                                    : (double)n * 4.0 * 2.0 * (t->ranks - 1) / t->ranks;
        return DPT_OK;
    }
    float thr = 0;
    if (k) {
        for (size_t i = 0; i < n; i++)
            t->key[i] = key_of(buf[i]);
        thr = kth_largest(t->key, n, k);
    }
    /* the entries above the threshold, then those equal to it in index order, k in all */
    size_t m = 0;
    for (size_t i = 0; i < n && m < k; i++)
        if (key_of(buf[i]) > thr)
            t->send[m++] = (pair_t){(uint32_t)i, buf[i]};
    for (size_t i = 0; i < n && m < k; i++)
        if (key_of(buf[i]) == thr)
            t->send[m++] = (pair_t){(uint32_t)i, buf[i]};
    memcpy(t->e, buf, n * sizeof *t->e);   /* the new v: the old one without what is sent */
    for (size_t j = 0; j < m; j++)
        t->e[t->send[j].index] = 0.0f;
    if (t->momentum > 0)   /* momentum factor masking */
        for (size_t j = 0; j < m; j++)
            t->e[t->n + t->send[j].index] = 0.0f;
    if (t->wire)
        to_streams(t->send, k, t->streams);
    double t1 = dpt__now();
    if (t->wire)
        DPT_CHECK(dpt__wire_allgather(t->wire, coll, t->streams, k * sizeof *t->send,
                                      sizeof *t->streams, t->recv, &ws));
    else
        DPT_CHECK(dpt_coll_allgather(coll, t->send, k * sizeof *t->send, t->recv));
    double t2 = dpt__now();
    memset(buf, 0, n * sizeof *buf);
    if (t->wire)   /* each rank's streams, in rank order */
        for (int q = 0; q < t->ranks; q++)
            add_streams((const uint32_t *)(const void *)(t->recv + (size_t)q * k), k, buf);
    else
        for (size_t j = 0; j < (size_t)t->ranks * k; j++)   /* rank order: the same bits */
            buf[t->recv[j].index] += t->recv[j].value;
    const float p = (float)t->ranks;
    for (size_t i = 0; i < n; i++)
        buf[i] /= p;
    stats->t_code = (t1 - t0) + (dpt__now() - t2) + ws.t_code;
    stats->bytes_sent = t->wire ? ws.bytes_sent
                                : (double)(t->ranks - 1) * (double)k * sizeof(pair_t);
    return DPT_OK;
}

static double ratio(const void *state, size_t n)
{
    const topk_t *t = state;
    if ((double)t->ranks * (double)t->k >= (double)n || !n)   /* after the warm-up */
        return 1.0;
    /* all-gathered pairs against the ring all-reduce of n floats */
    return ((double)(t->ranks - 1) * (double)t->k * sizeof(pair_t))
           / ((double)n * 4.0 * 2.0 * (t->ranks - 1) / t->ranks);
}

static float *get_state(void *state, size_t *n)
{
    topk_t *t = state;
    *n = t->n * (t->momentum > 0 ? 2 : 1);
    return t->e;
}

const dpt__codec_ops_t dpt__codec_topk = {"topk", create, destroy, allreduce, ratio, get_state,
                                          DPT__ARG_REQUIRED, 1, set_wire, 0};
