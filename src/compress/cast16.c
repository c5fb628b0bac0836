/* cast16.c: the fp16 and bf16 codecs. Each rank divides its gradients by the rank count in fp32
 * and rounds once to 16 bits (to nearest even), so that the sum of p such values cannot overflow
 * where the average does not; the collective layer sums the 16-bit payload with fp32
 * accumulation at every hop (rounding once per hop, as the wire carries 16 bits), and the result
 * is widened back to fp32. Every rank gets the same bits (the collective's guarantee). Half the
 * bytes of fp32; no error feedback (the rounding error is that of the 16-bit format).
 *
 * With "+zstd" the 16-bit payload goes through the wire's own ring (wire.h), whose result is the
 * plain "ring" algorithm's to the bit (or the deterministic one on a deterministic context), so
 * fp16+zstd == fp16 with --allreduce ring; the other algorithms may sum in another order. The
 * fp32 variant here is "none+zstd": no cast, the fp32 average through the wire (== none with
 * --allreduce ring). */
#include <stdint.h>

#include "comm/internal.h"   /* the f32 <-> bf16/fp16 converters of the collective layer */
#include "compress/internal.h"
#include "core/internal.h"
#include "dptrain/alloc.h"

typedef struct cast16 {
    dpt_dtype_t dtype;
    uint16_t *payload;   /* the bucket's 16-bit payload, allocated once (none for fp32) */
    int ranks;
    dpt__wire_t *wire;   /* +zstd, else NULL */
} cast16_t;

static dpt_status_t create(dpt_dtype_t dtype, const dpt_codec_bucket_t *bk, void **state)
{
    size_t n = bk->n;
    cast16_t *c = dpt_calloc(sizeof *c);
    if (c && dtype != DPT_DTYPE_F32)
        c->payload = dpt_malloc((n ? n : 1) * sizeof *c->payload);
    if (!c || (dtype != DPT_DTYPE_F32 && !c->payload)) {
        if (c)
            dpt_free(c);
        return dpt_error_set(DPT_ERR_NOMEM, "--compress: out of memory for a bucket's payload");
    }
    c->dtype = dtype;
    c->ranks = bk->ranks;
    *state = c;
    return DPT_OK;
}

static dpt_status_t create_fp16(const char *arg, const dpt_codec_bucket_t *bk, void **state)
{
    (void)arg;
    return create(DPT_DTYPE_F16, bk, state);
}

static dpt_status_t create_bf16(const char *arg, const dpt_codec_bucket_t *bk, void **state)
{
    (void)arg;
    return create(DPT_DTYPE_BF16, bk, state);
}

static dpt_status_t create_fp32(const char *arg, const dpt_codec_bucket_t *bk, void **state)
{
    (void)arg;
    return create(DPT_DTYPE_F32, bk, state);
}

static void destroy(void *state)
{
    cast16_t *c = state;
    if (!c)
        return;
    dpt_free(c->payload);
    dpt_free(c);
}

static dpt_status_t set_wire(void *state, dpt__wire_t *wire)
{
    ((cast16_t *)state)->wire = wire;
    return DPT_OK;
}

/* fp32 through the wire: the average itself, no cast */
static dpt_status_t allreduce_fp32(cast16_t *c, dpt_coll_t *coll, float *buf, size_t n,
                                   dpt_coll_algo_t algo, dpt_codec_stats_t *stats)
{
    dpt_codec_stats_t ws = {0, 0};
    DPT_CHECK(dpt__wire_allreduce(c->wire, coll, buf, n, DPT_DTYPE_F32, DPT_REDOP_AVG, algo,
                                  &ws));
    stats->bytes_sent = c->wire ? ws.bytes_sent
                                : (double)n * 4.0 * 2.0 * (c->ranks - 1) / c->ranks;
    stats->t_code = ws.t_code;
    return DPT_OK;
}

static dpt_status_t allreduce(void *state, dpt_coll_t *coll, float *buf, size_t n,
                              dpt_coll_algo_t algo, long step, dpt_codec_stats_t *stats)
{
    (void)step;
    cast16_t *c = state;
    if (c->dtype == DPT_DTYPE_F32)
        return allreduce_fp32(c, coll, buf, n, algo, stats);
    const float p = (float)c->ranks;
    double t0 = dpt__now();
    if (c->dtype == DPT_DTYPE_F16)
        for (size_t i = 0; i < n; i++)
            c->payload[i] = dpt__f32_to_f16(buf[i] / p);
    else
        for (size_t i = 0; i < n; i++)
            c->payload[i] = dpt__f32_to_bf16(buf[i] / p);
    double t1 = dpt__now();
    dpt_codec_stats_t ws = {0, 0};   /* the wire's bytes and zstd time (+zstd only) */
    DPT_CHECK(dpt__wire_allreduce(c->wire, coll, c->payload, n, c->dtype, DPT_REDOP_SUM, algo,
                                  &ws));
    double t2 = dpt__now();
    if (c->dtype == DPT_DTYPE_F16)
        for (size_t i = 0; i < n; i++)
            buf[i] = dpt__f16_to_f32(c->payload[i]);
    else
        for (size_t i = 0; i < n; i++)
            buf[i] = dpt__bf16_to_f32(c->payload[i]);
    /* plain: the bandwidth-optimal volume of a 16-bit all-reduce, as the trainer counts fp32's;
     * +zstd: what the wire handed the transport */
    stats->bytes_sent = c->wire ? ws.bytes_sent
                                : (double)n * 2.0 * 2.0 * (c->ranks - 1) / c->ranks;
    stats->t_code = (t1 - t0) + (dpt__now() - t2) + ws.t_code;
    return DPT_OK;
}

static double ratio(const void *state, size_t n)
{
    (void)n;
    return ((const cast16_t *)state)->dtype == DPT_DTYPE_F32 ? 1.0 : 0.5;
}

const dpt__codec_ops_t dpt__codec_fp16 = {"fp16", create_fp16, destroy, allreduce, ratio, NULL, 0,
                                          0, set_wire, 0};
const dpt__codec_ops_t dpt__codec_bf16 = {"bf16", create_bf16, destroy, allreduce, ratio, NULL, 0,
                                          0, set_wire, 0};
const dpt__codec_ops_t dpt__codec_fp32 = {"none", create_fp32, destroy, allreduce, ratio, NULL, 0,
                                          0, set_wire, 0};
