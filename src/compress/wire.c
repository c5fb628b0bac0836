/* wire.c: zstd on the wire (wire.h): a message's compression, its framing and the compressed
 * all-gather.
 *
 * Compression: the elements' bytes are first split into planes (byte k of every element, then
 * byte k + 1: blosc's "shuffle"), since the bytes of one position share a distribution (the sign
 * and exponent bytes of floats, the high bytes of small indices) and zstd's entropy stage then
 * sees one distribution at a time; then ZSTD level 1 with one context, allocated once. A block that
 * zstd does not make smaller is sent as it is, so a message is never longer than the raw one;
 * the length sent first (8 bytes) tells the receiver which it is. Gradients are mostly noise in
 * their low bytes: what zstd gains comes from the exponent bytes, from zeros (dead units, frozen
 * layers) and from top-k's small index gaps; it costs CPU on both sides (wire.h's users report
 * it as t_code).
 *
 * Framing: both sides know the raw size of every chunk (the chunking is the collective's), not
 * the compressed one, so each message is a length, then the payload, on two tags of their own. */
#include <zstd.h>

#include "comm/internal.h"   /* dpt__post_send / recv / wait, dpt__chunk, the tags */
#include "compress/wire.h"
#include "core/internal.h"
#include "dptrain/alloc.h"

#define WIRE_LEVEL 1

typedef struct wbuf {
    void *p;
    size_t cap;
} wbuf_t;

struct dpt__wire {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    wbuf_t buf[DPT__WIRE_NBUF];
    wbuf_t planes;              /* the shuffled (or to-be-unshuffled) bytes of one message */
    /* the messages in flight of one dpt__wire_exchange: lengths and requests */
    uint64_t *len_out, *len_in;
    dpt__req_t *sreq, *lreq, *preq;
    int n_max;
    double t;   /* seconds in zstd and the shuffles since dpt__wire_take_time */
};

dpt_status_t dpt__wire_create(dpt__wire_t **out)
{
    dpt__wire_t *w = dpt_calloc(sizeof *w);
    if (w) {
        w->cctx = ZSTD_createCCtx();
        w->dctx = ZSTD_createDCtx();
    }
    if (!w || !w->cctx || !w->dctx) {
        dpt__wire_destroy(w);
        return dpt_error_set(DPT_ERR_NOMEM, "--compress +zstd: out of memory for zstd contexts");
    }
    *out = w;
    return DPT_OK;
}

static void free_msgs(dpt__wire_t *w)
{
    dpt_free(w->len_out);
    dpt_free(w->len_in);
    dpt_free(w->sreq);
    dpt_free(w->lreq);
    dpt_free(w->preq);
    w->len_out = w->len_in = NULL;
    w->sreq = w->lreq = w->preq = NULL;
    w->n_max = 0;
}

void dpt__wire_destroy(dpt__wire_t *w)
{
    if (!w)
        return;
    ZSTD_freeCCtx(w->cctx);
    ZSTD_freeDCtx(w->dctx);
    for (int i = 0; i < DPT__WIRE_NBUF; i++)
        dpt_free(w->buf[i].p);
    dpt_free(w->planes.p);
    free_msgs(w);
    dpt_free(w);
}

static dpt_status_t grow(wbuf_t *b, size_t n)
{
    if (n <= b->cap)
        return DPT_OK;
    dpt_free(b->p);
    b->p = dpt_malloc(n);
    b->cap = b->p ? n : 0;
    return b->p ? DPT_OK : dpt_error_set(DPT_ERR_NOMEM, "--compress +zstd: out of memory for "
                                         "%zu bytes of wire buffers", n);
}

dpt_status_t dpt__wire_scratch(dpt__wire_t *w, int which, size_t n, void **out)
{
    DPT_CHECK(grow(&w->buf[which], n ? n : 1));
    *out = w->buf[which].p;
    return DPT_OK;
}

double dpt__wire_take_time(dpt__wire_t *w)
{
    double t = w->t;
    w->t = 0;
    return t;
}

size_t dpt__wire_bound(size_t n) { return ZSTD_compressBound(n); }

/* Byte k of element i goes to dst[k * m + i] (m = n / es elements; a tail of n % es bytes, which
 * callers never have, is copied as it is). */
static void shuffle(unsigned char *dst, const unsigned char *src, size_t n, size_t es)
{
    size_t m = n / es;
    for (size_t k = 0; k < es; k++)
        for (size_t i = 0; i < m; i++)
            dst[k * m + i] = src[i * es + k];
    memcpy(dst + m * es, src + m * es, n - m * es);
}

static void unshuffle(unsigned char *dst, const unsigned char *src, size_t n, size_t es)
{
    size_t m = n / es;
    for (size_t k = 0; k < es; k++)
        for (size_t i = 0; i < m; i++)
            dst[i * es + k] = src[k * m + i];
    memcpy(dst + m * es, src + m * es, n - m * es);
}

dpt_status_t dpt__wire_pack(dpt__wire_t *w, const void *src, size_t n, size_t es, void *z,
                            size_t zcap, const void **out, size_t *out_n)
{
    *out = src;
    *out_n = n;
    if (!n)
        return DPT_OK;
    double t0 = dpt__now();
    const void *in = src;
    if (es > 1) {
        DPT_CHECK(grow(&w->planes, n));
        shuffle(w->planes.p, src, n, es);
        in = w->planes.p;
    }
    size_t zn = ZSTD_compressCCtx(w->cctx, z, zcap, in, n, WIRE_LEVEL);
    w->t += dpt__now() - t0;
    if (ZSTD_isError(zn))
        return dpt_error_set(DPT_ERR_INTERNAL, "--compress +zstd: compressing %zu bytes: %s", n,
                             ZSTD_getErrorName(zn));
    if (zn < n) {   /* else: raw (the receiver sees length == n) */
        *out = z;
        *out_n = zn;
    }
    return DPT_OK;
}

dpt_status_t dpt__wire_unpack(dpt__wire_t *w, const void *z, size_t zn, size_t n, size_t es,
                              void *dst)
{
    if (zn == n) {
        if (z != dst)
            memcpy(dst, z, n);
        return DPT_OK;
    }
    double t0 = dpt__now();
    void *planes = dst;
    if (es > 1) {
        DPT_CHECK(grow(&w->planes, n));
        planes = w->planes.p;
    }
    size_t got = ZSTD_decompressDCtx(w->dctx, planes, n, z, zn);
    if (ZSTD_isError(got) || got != n)
        return dpt_error_set(DPT_ERR_INTERNAL, "--compress +zstd: a %zu-byte message does not "
                             "decompress to its %zu bytes (%s)", zn, n,
                             ZSTD_isError(got) ? ZSTD_getErrorName(got) : "wrong length");
    if (es > 1)
        unshuffle(dst, planes, n, es);
    w->t += dpt__now() - t0;
    return DPT_OK;
}

static dpt_status_t msgs_room(dpt__wire_t *w, int n)
{
    if (n <= w->n_max)
        return DPT_OK;
    free_msgs(w);
    size_t k = (size_t)n;
    w->len_out = dpt_malloc(k * sizeof *w->len_out);
    w->len_in = dpt_malloc(k * sizeof *w->len_in);
    w->sreq = dpt_malloc(2 * k * sizeof *w->sreq);
    w->lreq = dpt_malloc(k * sizeof *w->lreq);
    w->preq = dpt_malloc(k * sizeof *w->preq);
    if (!w->len_out || !w->len_in || !w->sreq || !w->lreq || !w->preq) {
        free_msgs(w);
        return dpt_error_set(DPT_ERR_NOMEM, "--compress +zstd: out of memory");
    }
    w->n_max = n;
    return DPT_OK;
}

/* Sends first (length, then payload: neither depends on anything the peer sends), then the
 * lengths to receive; each payload receive is posted once its length is known. */
dpt_status_t dpt__wire_exchange(dpt__wire_t *w, dpt_coll_t *c, int n, const dpt__wire_msg_t *m,
                                size_t *rn)
{
    DPT_CHECK(msgs_room(w, n));
    int ns = 0, nl = 0, np = 0;
    for (int i = 0; i < n; i++) {
        rn[i] = 0;
        if (!m[i].sraw)
            continue;
        w->len_out[i] = m[i].sn;
        DPT_CHECK(dpt__post_send(c, &w->len_out[i], sizeof w->len_out[i], m[i].to,
                                 DPT__TAG_WIRE_LEN, w->sreq, &ns));
        DPT_CHECK(dpt__post_send(c, m[i].sp, m[i].sn, m[i].to, DPT__TAG_WIRE, w->sreq, &ns));
    }
    for (int i = 0; i < n; i++)
        if (m[i].rraw)
            DPT_CHECK(dpt__post_recv(c, &w->len_in[i], sizeof w->len_in[i], m[i].from,
                                     DPT__TAG_WIRE_LEN, w->lreq, &nl));
    DPT_CHECK(dpt__wait(c, w->lreq, &nl));
    for (int i = 0; i < n; i++) {
        if (!m[i].rraw)
            continue;
        uint64_t len = w->len_in[i];
        if (len == 0 || len > m[i].rraw)
            return dpt_error_set(DPT_ERR_INTERNAL, "--compress +zstd rank %d: rank %d announces a "
                                 "%llu-byte message for a %zu-byte chunk", dpt_coll_rank(c),
                                 m[i].from, (unsigned long long)len, m[i].rraw);
        rn[i] = (size_t)len;
        DPT_CHECK(dpt__post_recv(c, rn[i] == m[i].rraw ? m[i].raw_dst : m[i].zdst, rn[i],
                                 m[i].from, DPT__TAG_WIRE, w->preq, &np));
    }
    DPT_CHECK(dpt__wait(c, w->preq, &np));
    return dpt__wait(c, w->sreq, &ns);
}

/* The all-gather is the ring all-gather of wire_ring.c over recv, whose p chunks are the ranks'
 * blocks (recv holds p * nbytes: chunk r of p * nbytes / es elements is rank r's block). */
dpt_status_t dpt__wire_allgather(dpt__wire_t *w, dpt_coll_t *c, const void *send, size_t nbytes,
                                 size_t esize, void *recv, dpt_codec_stats_t *stats)
{
    if (!w)
        return dpt_coll_allgather(c, send, nbytes, recv);
    int p = dpt_coll_size(c), r = dpt_coll_rank(c);
    if (!nbytes)
        return DPT_OK;
    unsigned char *mine = (unsigned char *)recv + (size_t)r * nbytes;
    if ((const void *)mine != send)
        memcpy(mine, send, nbytes);
    if (p == 1)
        return DPT_OK;
    size_t es = esize && nbytes % esize == 0 ? esize : 1;
    double b0 = dpt_coll_bytes_sent(c);
    DPT_CHECK(dpt__wire_ring_allgather(w, c, recv, (size_t)p * (nbytes / es), es, 0));
    stats->bytes_sent += dpt_coll_bytes_sent(c) - b0;
    stats->t_code += dpt__wire_take_time(w);
    return DPT_OK;
}
