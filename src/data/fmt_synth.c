/* fmt_synth.c: the "synthetic:N:C:H:W:K" dataset, deterministic learnable images for tests and
 * benchmarks (no files). Each class k has a random prototype, a blocky pattern of 4x4-pixel cells
 * drawn from the seed; sample i has label i % K and is its prototype plus per-pixel noise (about
 * N(0, 40^2) in pixel units), clipped to uint8. Train and test share the prototypes but draw their
 * noise from different Philox streams, so a model that learns the train split generalizes.
 * mean/std are the exact expected pixel statistics, the same for both splits. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/internal.h"
#include "dptrain/alloc.h"
#include "dptrain/dataset.h"
#include "dptrain/rng.h"

#define SYNTH_CELL 4          /* prototype cell side in pixels: spatial structure for convs */
#define SYNTH_PROTO_LO 16     /* prototype cells are uniform in [LO, LO + SPAN) */
#define SYNTH_PROTO_SPAN 224
#define SYNTH_NOISE_MUL 69    /* noise = (sum of 4 random bytes - 510) * 69 / 256, std ~39.8 */
#define SYNTH_MAX_CLASSES 1000

/* Philox stream ids of this generator, disjoint from DPT_RNG_STREAM_* (1..3). */
#define SYNTH_STREAM_PROTO 0x53594e5400000001ull
#define SYNTH_STREAM_TRAIN 0x53594e5400000002ull
#define SYNTH_STREAM_TEST 0x53594e5400000003ull

/* Parse one decimal field in [lo, hi] that ends at ':' (or at the end of the string when
 * `last`), advancing *s past it. */
static int parse_field(const char **s, long lo, long hi, int last, long *v)
{
    char *end = NULL;
    errno = 0;
    long x = strtol(*s, &end, 10);
    if (end == *s || **s < '0' || **s > '9' || errno != 0 || x < lo || x > hi ||
        *end != (last ? '\0' : ':'))
        return 0;
    *v = x;
    *s = last ? end : end + 1;
    return 1;
}

dpt_status_t dpt__dataset_open_synthetic(const char *spec, int train, uint64_t seed,
                                         dpt_dataset_t **out)
{
    *out = NULL;
    const char *s = strchr(spec, ':');
    long n = 0, c = 0, h = 0, w = 0, k = 0;
    if (!s || !(s++, parse_field(&s, 1, DPT__DATA_MAX_IMAGES, 0, &n)) ||
        !parse_field(&s, 1, 3, 0, &c) || !parse_field(&s, 1, DPT__DATA_MAX_SIDE, 0, &h) ||
        !parse_field(&s, 1, DPT__DATA_MAX_SIDE, 0, &w) ||
        !parse_field(&s, 1, SYNTH_MAX_CLASSES, 1, &k))
        return dpt_error_set(DPT_ERR_INVALID_ARG,
                             "dataset spec '%s': expected synthetic:N:C:H:W:K with N in 1..%d, "
                             "C in 1..3, H and W in 1..%d, K in 1..%d", spec,
                             DPT__DATA_MAX_IMAGES, DPT__DATA_MAX_SIDE, SYNTH_MAX_CLASSES);
    if ((uint64_t)n * (uint64_t)c * (uint64_t)h * (uint64_t)w > DPT__DATA_MAX_BYTES)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "dataset spec '%s': %" PRIu64 " bytes is more "
                             "than the %" PRIu64 " allowed", spec,
                             (uint64_t)n * (uint64_t)c * (uint64_t)h * (uint64_t)w,
                             DPT__DATA_MAX_BYTES);

    /* Prototypes, (K, C, ch, cw) cells, shared by both splits. */
    int ch = (int)(h + SYNTH_CELL - 1) / SYNTH_CELL, cw = (int)(w + SYNTH_CELL - 1) / SYNTH_CELL;
    size_t cells_per_class = (size_t)c * (size_t)ch * (size_t)cw;
    uint8_t *proto = dpt_malloc((size_t)k * cells_per_class);
    if (!proto)
        return dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory for the prototypes", spec);
    dpt_rng_t rng;
    dpt_rng_init(&rng, seed, SYNTH_STREAM_PROTO);
    for (size_t i = 0; i < (size_t)k * cells_per_class; i++)
        proto[i] = (uint8_t)(SYNTH_PROTO_LO + dpt_rng_below(&rng, SYNTH_PROTO_SPAN));

    dpt_dataset_t *ds = NULL;
    dpt_status_t st = dpt__dataset_alloc((int)n, (int)c, (int)h, (int)w, (int)k, spec, &ds);
    if (st != DPT_OK) {
        dpt_free(proto);
        return st;
    }

    /* Samples: sequential draws from the split's stream, so the data depends on the seed only. */
    dpt_rng_init(&rng, seed, train ? SYNTH_STREAM_TRAIN : SYNTH_STREAM_TEST);
    size_t hw = (size_t)h * (size_t)w;
    for (long i = 0; i < n; i++) {
        int label = (int)(i % k);
        ds->labels[i] = label;
        const uint8_t *pk = proto + (size_t)label * cells_per_class;
        uint8_t *dst = ds->images + (size_t)i * (size_t)c * hw;
        for (long cc = 0; cc < c; cc++) {
            for (long y = 0; y < h; y++) {
                const uint8_t *prow = pk + ((size_t)cc * ch + (size_t)(y / SYNTH_CELL)) * cw;
                for (long x = 0; x < w; x++) {
                    uint32_t u = dpt_rng_u32(&rng);
                    /* Sum of 4 random bytes: mean 510, std ~147.8; integers keep it bit-exact. */
                    int sum = (int)(u & 255) + (int)(u >> 8 & 255) + (int)(u >> 16 & 255) +
                              (int)(u >> 24);
                    int v = prow[x / SYNTH_CELL] + (sum - 510) * SYNTH_NOISE_MUL / 256;
                    *dst++ = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
            }
        }
    }

    /* Normalization: the exact expected per-channel mean and std of a sample pixel, from the
     * prototype values and the exact noise distribution (clipping included), so both splits get
     * the same statistics without looking at either's samples. */
    double sum_prob[1021] = {1.0}, tmp[1021];   /* P(sum of 4 uniform bytes = s), by convolution */
    for (int round = 0, len = 1; round < 4; round++, len += 255) {
        memset(tmp, 0, sizeof tmp);
        for (int i = 0; i < len; i++)
            for (int d = 0; d < 256; d++)
                tmp[i + d] += sum_prob[i] / 256.0;
        memcpy(sum_prob, tmp, sizeof tmp);
    }
    for (long cc = 0; cc < c; cc++) {
        double hist[256] = {0}, m1 = 0.0, m2 = 0.0, count = 0.0;   /* prototype pixel values */
        for (long kk = 0; kk < k; kk++)
            for (long y = 0; y < h; y++) {
                const uint8_t *prow =
                    proto + (((size_t)kk * c + (size_t)cc) * ch + (size_t)(y / SYNTH_CELL)) * cw;
                for (long x = 0; x < w; x++)
                    hist[prow[x / SYNTH_CELL]] += 1.0;
            }
        for (int p = 0; p < 256; p++) {
            if (hist[p] == 0.0)
                continue;
            for (int sum = 0; sum < 1021; sum++) {
                int v = p + (sum - 510) * SYNTH_NOISE_MUL / 256;
                double vc = v < 0 ? 0.0 : v > 255 ? 255.0 : v;
                m1 += hist[p] * sum_prob[sum] * vc;
                m2 += hist[p] * sum_prob[sum] * vc * vc;
            }
            count += hist[p];
        }
        double mean = m1 / count, var = m2 / count - mean * mean;
        ds->mean[cc] = (float)(mean / 255.0);
        ds->std[cc] = (float)(sqrt(var > 1e-6 ? var : 1e-6) / 255.0);
    }
    dpt_free(proto);
    snprintf(ds->name, sizeof ds->name, "synthetic/%s", train ? "train" : "test");
    *out = ds;
    return DPT_OK;
}
