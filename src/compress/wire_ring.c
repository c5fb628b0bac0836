/* wire_ring.c: the all-reduce of a zstd wire (wire.h). The collective layer reduces inside its
 * algorithms, between messages, so a compressed all-reduce needs its own exchange: a
 * reduce-scatter whose every message is compressed by its sender, then the compressed ring
 * all-gather (each finished chunk compressed once, by its owner, and forwarded as it arrived).
 *
 * Why the results are the plain collective's bits: the chunks are the plain ones (dpt__chunk of
 * the count into p), the sums are the same calls in the same order, and compression is lossless.
 *   - ring (the default): at step s rank r sends chunk (r - s) mod p to r + 1 and adds the chunk
 *     (r - s - 1) mod p from r - 1 into its own, the upstream partial first (dpt__reduce(dst,
 *     lane, dst): bf16/fp16 are widened, added in fp32 and rounded once per hop), and on the last
 *     step divides it for AVG (dpt__scale_avg): as algo_ring.c, whose segments only pipeline
 *     that per-element arithmetic. Rank r then owns chunk (r + 1) mod p.
 *   - deterministic context: every rank sends chunk j to rank j, which folds the p contributions
 *     in rank order (dpt__fold_rank_order): as dpt__det_reduce_scatter, which every algorithm
 *     uses there. Rank r then owns chunk r.
 *
 * Cost against the plain ring: the same steps and the same (p - 1) / p of the payload reduced,
 * each message preceded by an 8-byte length (a second, small message per step: one more
 * latency per step where the link is slow to start a message), and per step the chunk's
 * compression before it leaves and its decompression after it arrives, not overlapped with the
 * transfer (the plain ring pipelines segments; this one sends whole chunks). */
#include "comm/internal.h"   /* dpt__chunk, dpt__reduce, the fold, struct dpt_coll */
#include "compress/wire.h"

static size_t max_chunk(size_t count, int p)
{
    return count / (size_t)p + (count % (size_t)p != 0);
}

dpt_status_t dpt__wire_ring_allgather(dpt__wire_t *w, dpt_coll_t *c, void *buf, size_t count,
                                      size_t es, int shift)
{
    int p = c->size, r = c->rank, right = (r + 1) % p, left = (r + p - 1) % p;
    size_t mc = max_chunk(count, p) * es, zcap = dpt__wire_bound(mc), off, len;
    unsigned char *base = buf, *zs, *zr;
    DPT_CHECK(dpt__wire_scratch(w, DPT__WIRE_ZSEND, zcap, (void **)&zs));
    DPT_CHECK(dpt__wire_scratch(w, DPT__WIRE_ZRECV, 2 * mc, (void **)&zr));
    dpt__chunk(count, (size_t)p, (size_t)dpt__mod((long)r + shift, p), &off, &len);
    const void *sp;
    size_t sn;
    DPT_CHECK(dpt__wire_pack(w, base + off * es, len * es, es, zs, zcap, &sp, &sn));
    for (int s = 0; s < p - 1; s++) {
        size_t soff, slen, roff, rlen, rn;
        dpt__chunk(count, (size_t)p, (size_t)dpt__mod((long)r + shift - s, p), &soff, &slen);
        dpt__chunk(count, (size_t)p, (size_t)dpt__mod((long)r + shift - s - 1, p), &roff, &rlen);
        /* two receive buffers: the one received last step is being forwarded now */
        unsigned char *dst = base + roff * es, *z = zr + (size_t)(s % 2) * mc;
        const dpt__wire_msg_t m = {.to = right, .sp = sp, .sn = sn, .sraw = slen * es,
                                   .from = left, .rraw = rlen * es, .raw_dst = dst, .zdst = z};
        DPT_CHECK(dpt__wire_exchange(w, c, 1, &m, &rn));
        if (rlen)
            DPT_CHECK(dpt__wire_unpack(w, rn == rlen * es ? dst : z, rn, rlen * es, es, dst));
        sp = rn == rlen * es ? (const void *)dst : z;   /* forwarded as it came */
        sn = rn;
    }
    return DPT_OK;
}

static dpt_status_t ring_reduce_scatter(dpt__wire_t *w, dpt_coll_t *c, void *buf, size_t count,
                                        dpt_dtype_t dtype, dpt_redop_t op)
{
    int p = c->size, r = c->rank, right = (r + 1) % p, left = (r + p - 1) % p;
    size_t es = dpt_dtype_size(dtype), mc = max_chunk(count, p) * es, zcap = dpt__wire_bound(mc);
    unsigned char *base = buf, *zs, *zr, *lane;
    DPT_CHECK(dpt__wire_scratch(w, DPT__WIRE_ZSEND, zcap, (void **)&zs));
    DPT_CHECK(dpt__wire_scratch(w, DPT__WIRE_ZRECV, mc, (void **)&zr));
    DPT_CHECK(dpt__wire_scratch(w, DPT__WIRE_LANE, mc, (void **)&lane));
    for (int s = 0; s < p - 1; s++) {
        size_t soff, slen, roff, rlen, rn;
        dpt__chunk(count, (size_t)p, (size_t)dpt__mod((long)r - s, p), &soff, &slen);
        dpt__chunk(count, (size_t)p, (size_t)dpt__mod((long)r - s - 1, p), &roff, &rlen);
        const void *sp;
        size_t sn;
        DPT_CHECK(dpt__wire_pack(w, base + soff * es, slen * es, es, zs, zcap, &sp, &sn));
        const dpt__wire_msg_t m = {.to = right, .sp = sp, .sn = sn, .sraw = slen * es,
                                   .from = left, .rraw = rlen * es, .raw_dst = lane, .zdst = zr};
        DPT_CHECK(dpt__wire_exchange(w, c, 1, &m, &rn));
        if (!rlen)
            continue;
        DPT_CHECK(dpt__wire_unpack(w, rn == rlen * es ? lane : zr, rn, rlen * es, es, lane));
        unsigned char *dst = base + roff * es;
        dpt__reduce(dtype, dst, lane, dst, rlen);   /* the upstream partial first, as the ring */
        if (s == p - 2 && op == DPT_REDOP_AVG)
            dpt__scale_avg(dtype, dst, rlen, p);
    }
    return DPT_OK;
}

static dpt_status_t det_reduce_scatter(dpt__wire_t *w, dpt_coll_t *c, void *buf, size_t count,
                                       dpt_dtype_t dtype, dpt_redop_t op)
{
    int p = c->size, r = c->rank;
    size_t es = dpt_dtype_size(dtype), mc = max_chunk(count, p), stride = mc * es;
    size_t zcap = dpt__wire_bound(stride), n = (size_t)(p - 1), off, len;
    unsigned char *base = buf, *zs, *zr, *slots;
    float *acc;
    dpt__wire_msg_t *m;
    DPT_CHECK(dpt__wire_scratch(w, DPT__WIRE_ZSEND, n * zcap, (void **)&zs));
    DPT_CHECK(dpt__wire_scratch(w, DPT__WIRE_ZRECV, n * stride, (void **)&zr));
    DPT_CHECK(dpt__wire_scratch(w, DPT__WIRE_LANE, n * stride, (void **)&slots));
    DPT_CHECK(dpt__wire_scratch(w, DPT__WIRE_ACC, mc * sizeof *acc, (void **)&acc));
    DPT_CHECK(dpt__wire_scratch(w, DPT__WIRE_MSGS, n * (sizeof *m + sizeof(size_t)), (void **)&m));
    size_t *rn = (size_t *)(void *)(m + n);
    dpt__chunk(count, (size_t)p, (size_t)r, &off, &len);
    for (int k = 1; k < p; k++) {   /* staggered, as the plain one: nobody is everyone's first */
        int j = (r + k) % p;
        size_t joff, jlen, slot = (size_t)(j - (j > r));
        dpt__chunk(count, (size_t)p, (size_t)j, &joff, &jlen);
        dpt__wire_msg_t *mk = &m[k - 1];
        *mk = (dpt__wire_msg_t){.to = j, .sraw = jlen * es, .from = j, .rraw = len * es,
                                .raw_dst = slots + slot * stride, .zdst = zr + slot * stride};
        DPT_CHECK(dpt__wire_pack(w, base + joff * es, jlen * es, es, zs + (size_t)(k - 1) * zcap,
                                 zcap, &mk->sp, &mk->sn));
    }
    DPT_CHECK(dpt__wire_exchange(w, c, p - 1, m, rn));
    for (int k = 1; k < p && len; k++) {
        void *slot = m[k - 1].raw_dst;
        DPT_CHECK(dpt__wire_unpack(w, rn[k - 1] == len * es ? slot : m[k - 1].zdst, rn[k - 1],
                                   len * es, es, slot));
    }
    dpt__fold_rank_order(dtype, op, p, r, base + off * es, slots, stride, len, acc,
                         base + off * es);
    return DPT_OK;
}

dpt_status_t dpt__wire_allreduce(dpt__wire_t *w, dpt_coll_t *c, void *buf, size_t count,
                                 dpt_dtype_t dtype, dpt_redop_t op, dpt_coll_algo_t algo,
                                 dpt_codec_stats_t *stats)
{
    if (!w)
        return dpt_coll_allreduce(c, buf, count, dtype, op, algo);
    size_t es = dpt_dtype_size(dtype);
    if (!es || (unsigned)op >= DPT_REDOP_COUNT)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--compress +zstd: dtype %d, op %d", (int)dtype,
                             (int)op);
    if (!count || c->size == 1)   /* as dpt_coll_allreduce: one contribution, divided by one */
        return DPT_OK;
    double b0 = dpt_coll_bytes_sent(c);
    if (c->deterministic) {
        DPT_CHECK(det_reduce_scatter(w, c, buf, count, dtype, op));
        DPT_CHECK(dpt__wire_ring_allgather(w, c, buf, count, es, 0));
    } else {
        DPT_CHECK(ring_reduce_scatter(w, c, buf, count, dtype, op));
        DPT_CHECK(dpt__wire_ring_allgather(w, c, buf, count, es, 1));
    }
    stats->bytes_sent += dpt_coll_bytes_sent(c) - b0;
    stats->t_code += dpt__wire_take_time(w);
    return DPT_OK;
}
