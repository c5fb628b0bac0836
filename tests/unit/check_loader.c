/* check_loader.c: unit tests of the batch loader (src/data/loader.c): per-epoch permutation, rank
 * shards of each global batch (their union in rank order equals the one-rank batch, also with
 * augmentation), drop_last padding, normalization, crop/flip and random-resized-crop geometry,
 * prefetch giving the same bytes as synchronous assembly, for any number of prefetch workers
 * (1, 2, 3, more than the batch, automatic), and no allocation after create.
 * Datasets are built in memory with label i for sample i, so every batch slot says which sample
 * it holds. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "dptrain/alloc.h"
#include "dptrain/dataset.h"
#include "dptrain/loader.h"

/* --- fixtures ---------------------------------------------------------------------------- */

static uint8_t pixel_of(int i, int j)
{
    return (uint8_t)(10 + (i * 29 + j * 13) % 240);
}

/* n samples (c, h, w), label i, pixels pixel_of(i, j); freed with dpt_dataset_destroy. */
static dpt_dataset_t *make_ds(int n, int c, int h, int w, float mean, float std)
{
    dpt_dataset_t *ds = dpt_calloc(sizeof *ds);
    ck_assert_ptr_nonnull(ds);
    size_t chw = (size_t)c * h * w;
    ds->images = dpt_malloc((size_t)n * chw);
    ds->labels = dpt_malloc((size_t)n * sizeof(int32_t));
    ds->n = n;
    ds->c = c;
    ds->h = h;
    ds->w = w;
    ds->n_classes = n;
    for (int i = 0; i < n; i++) {
        ds->labels[i] = i;
        for (size_t j = 0; j < chw; j++)
            ds->images[i * chw + j] = pixel_of(i, (int)j);
    }
    for (int k = 0; k < 3; k++) {
        ds->mean[k] = mean;
        ds->std[k] = std;
    }
    strcpy(ds->name, "test");
    return ds;
}

static dpt_loader_config_t config(int batch, int rank, int nranks)
{
    dpt_loader_config_t cfg = {.batch = batch, .rank = rank, .nranks = nranks, .seed = 1234,
                               .shuffle = 1, .drop_last = 1};
    return cfg;
}

static dpt_loader_t *make_loader(const dpt_dataset_t *ds, dpt_loader_config_t cfg)
{
    dpt_loader_t *ld = NULL;
    dpt_status_t st = dpt_loader_create(ds, &cfg, &ld);
    ck_assert_msg(st == DPT_OK, "create: %s", dpt_error_get());
    return ld;
}

/* Random resized crop on: area fraction [min_scale, 1], aspect [3/4, 4/3] (the trainer's). */
static void set_rrc(dpt_loader_config_t *cfg, float min_scale)
{
    cfg->rrc = 1;
    cfg->rrc_scale[0] = min_scale;
    cfg->rrc_scale[1] = 1.0f;
    cfg->rrc_ratio[0] = 0.75f;
    cfg->rrc_ratio[1] = 4.0f / 3.0f;
}

/* The labels (= sample ids) of every valid slot of one epoch, in order. Returns the count. */
static int epoch_ids(dpt_loader_t *ld, int epoch, int *ids)
{
    ck_assert_int_eq(dpt_loader_start_epoch(ld, epoch), DPT_OK);
    int k = 0;
    for (int s = 0; s < dpt_loader_steps(ld); s++) {
        const dpt_batch_t *b = NULL;
        ck_assert_int_eq(dpt_loader_next(ld, &b), DPT_OK);
        ck_assert_int_eq(b->epoch, epoch);
        ck_assert_int_eq(b->step, s);
        for (int i = 0; i < b->n_valid; i++)
            ids[k++] = b->y[i];
    }
    return k;
}

/* --- tests ------------------------------------------------------------------------------ */

START_TEST(steps_per_epoch)
{
    dpt_dataset_t *ds = make_ds(100, 1, 2, 2, 0.0f, 1.0f);
    static const struct { int batch, nranks, drop_last, steps; } cases[] = {
        {8, 3, 1, 4}, {8, 3, 0, 5}, {10, 1, 1, 10}, {10, 1, 0, 10}, {7, 1, 0, 15},
        {1, 100, 1, 1}, {1, 7, 0, 15}, {100, 1, 1, 1}, {64, 2, 0, 1},
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        for (int r = 0; r < cases[t].nranks; r += cases[t].nranks > 1 ? cases[t].nranks - 1 : 1) {
            dpt_loader_config_t cfg = config(cases[t].batch, r, cases[t].nranks);
            cfg.drop_last = cases[t].drop_last;
            dpt_loader_t *ld = make_loader(ds, cfg);
            ck_assert_int_eq(dpt_loader_steps(ld), cases[t].steps);
            dpt_loader_destroy(ld);
        }
    }
    dpt_dataset_destroy(ds);
}
END_TEST

START_TEST(permutation_covers_each_sample_once)
{
    /* _i: 0 drop_last = 0 (all samples, last batch padded), 1 drop_last = 1. */
    enum { N = 100, B = 7 };
    dpt_dataset_t *ds = make_ds(N, 1, 3, 3, 0.0f, 1.0f);
    dpt_loader_config_t cfg = config(B, 0, 1);
    cfg.drop_last = _i;
    dpt_loader_t *ld = make_loader(ds, cfg);
    int ids[N], seen[N];
    for (int epoch = 0; epoch < 3; epoch++) {
        int k = epoch_ids(ld, epoch, ids);
        ck_assert_int_eq(k, _i ? (N / B) * B : N);
        memset(seen, 0, sizeof seen);
        int in_order = 1;
        for (int i = 0; i < k; i++) {
            ck_assert(ids[i] >= 0 && ids[i] < N);
            ck_assert_int_eq(seen[ids[i]]++, 0);
            in_order &= ids[i] == i;
        }
        ck_assert(!in_order);
    }
    dpt_loader_destroy(ld);
    dpt_dataset_destroy(ds);
}
END_TEST

START_TEST(epochs_and_seeds)
{
    enum { N = 60 };
    dpt_dataset_t *ds = make_ds(N, 1, 2, 2, 0.0f, 1.0f);
    dpt_loader_config_t cfg = config(6, 0, 1);
    dpt_loader_t *a = make_loader(ds, cfg), *b = make_loader(ds, cfg);
    cfg.seed++;
    dpt_loader_t *c = make_loader(ds, cfg);
    int e0[N], e1[N], b0[N], b1[N], c0[N];
    ck_assert_int_eq(epoch_ids(a, 0, e0), N);
    ck_assert_int_eq(epoch_ids(a, 1, e1), N);
    ck_assert_int_eq(epoch_ids(b, 1, b1), N);   /* epochs are random access */
    ck_assert_int_eq(epoch_ids(b, 0, b0), N);
    ck_assert_int_eq(epoch_ids(c, 0, c0), N);
    ck_assert_mem_eq(e0, b0, sizeof e0);
    ck_assert_mem_eq(e1, b1, sizeof e1);
    ck_assert(memcmp(e0, e1, sizeof e0) != 0);
    ck_assert(memcmp(e0, c0, sizeof e0) != 0);
    dpt_loader_destroy(a);
    dpt_loader_destroy(b);
    dpt_loader_destroy(c);

    /* shuffle = 0 keeps file order in every epoch. */
    cfg.shuffle = 0;
    dpt_loader_t *d = make_loader(ds, cfg);
    for (int epoch = 0; epoch < 2; epoch++) {
        ck_assert_int_eq(epoch_ids(d, epoch, e0), N);
        for (int i = 0; i < N; i++)
            ck_assert_int_eq(e0[i], i);
    }
    dpt_loader_destroy(d);
    dpt_dataset_destroy(ds);
}
END_TEST

/* Shards of P ranks (batch 12 / P each, so the global batch is 12) concatenated in rank order
 * must equal the one-rank batch byte for byte, augmentation included. _i indexes P. */
START_TEST(rank_shards_partition_global_batch)
{
    static const int Ps[] = {2, 3, 4, 6, 12};
    enum { N = 97, G = 12, C = 3, H = 6, W = 5 };
    const int P = Ps[_i], B = G / P;
    const size_t chw = (size_t)C * H * W;
    dpt_dataset_t *ds = make_ds(N, C, H, W, 0.45f, 0.25f);
    for (int drop_last = 0; drop_last < 2; drop_last++) {
        dpt_loader_config_t cfg = config(G, 0, 1);
        cfg.drop_last = drop_last;
        cfg.crop_pad = 2;
        cfg.flip = 1;
        if (drop_last) {   /* the other augmentation: random resized crop */
            cfg.crop_pad = 0;
            set_rrc(&cfg, 0.3f);
        }
        dpt_loader_t *one = make_loader(ds, cfg);
        dpt_loader_t *rank[12];
        for (int r = 0; r < P; r++) {
            dpt_loader_config_t rc = cfg;
            rc.batch = B;
            rc.rank = r;
            rc.nranks = P;
            rc.prefetch = r % 2;   /* mixing prefetch on and off must not matter */
            rank[r] = make_loader(ds, rc);
            ck_assert_int_eq(dpt_loader_steps(rank[r]), dpt_loader_steps(one));
        }
        ck_assert_int_eq(dpt_loader_steps(one), drop_last ? N / G : (N + G - 1) / G);
        for (int epoch = 0; epoch < 2; epoch++) {
            ck_assert_int_eq(dpt_loader_start_epoch(one, epoch), DPT_OK);
            for (int r = 0; r < P; r++)
                ck_assert_int_eq(dpt_loader_start_epoch(rank[r], epoch), DPT_OK);
            for (int s = 0; s < dpt_loader_steps(one); s++) {
                const dpt_batch_t *g = NULL;
                ck_assert_int_eq(dpt_loader_next(one, &g), DPT_OK);
                int valid = 0;
                for (int r = 0; r < P; r++) {
                    const dpt_batch_t *b = NULL;
                    ck_assert_int_eq(dpt_loader_next(rank[r], &b), DPT_OK);
                    ck_assert_int_eq(b->step, s);
                    ck_assert_mem_eq(b->x, g->x + (size_t)r * B * chw, (size_t)B * chw * 4);
                    ck_assert_mem_eq(b->y, g->y + (size_t)r * B, (size_t)B * 4);
                    /* Valid samples come first in the global batch, so each shard's count is
                     * its overlap with [0, g->n_valid). */
                    int want = g->n_valid - r * B;
                    ck_assert_int_eq(b->n_valid, want < 0 ? 0 : want > B ? B : want);
                    valid += b->n_valid;
                }
                ck_assert_int_eq(valid, g->n_valid);
            }
        }
        dpt_loader_destroy(one);
        for (int r = 0; r < P; r++)
            dpt_loader_destroy(rank[r]);
    }
    dpt_dataset_destroy(ds);
}
END_TEST

START_TEST(padding_and_n_valid)
{
    /* N = 10, batch 4, 2 ranks: global batch 8, 2 steps; step 1 holds positions 8..15 of which
     * 8 and 9 are real: rank 0 gets 2 valid + 2 padded, rank 1 only padding. */
    enum { N = 10, C = 1, H = 3, W = 3 };
    dpt_dataset_t *ds = make_ds(N, C, H, W, 0.5f, 0.5f);
    int got[N] = {0};
    for (int r = 0; r < 2; r++) {
        dpt_loader_config_t cfg = config(4, r, 2);
        cfg.drop_last = 0;
        cfg.prefetch = r;
        dpt_loader_t *ld = make_loader(ds, cfg);
        ck_assert_int_eq(dpt_loader_steps(ld), 2);
        ck_assert_int_eq(dpt_loader_start_epoch(ld, 0), DPT_OK);
        const dpt_batch_t *b = NULL;
        ck_assert_int_eq(dpt_loader_next(ld, &b), DPT_OK);
        ck_assert_int_eq(b->n_valid, 4);
        for (int i = 0; i < 4; i++)
            got[b->y[i]]++;
        ck_assert_int_eq(dpt_loader_next(ld, &b), DPT_OK);
        ck_assert_int_eq(b->n_valid, r == 0 ? 2 : 0);
        for (int i = 0; i < 4; i++) {
            if (i < b->n_valid) {
                got[b->y[i]]++;
                continue;
            }
            ck_assert_int_eq(b->y[i], 0);
            for (int j = 0; j < C * H * W; j++)
                ck_assert_float_eq(b->x[i * C * H * W + j], 0.0f);
        }
        /* Past the last step. */
        ck_assert_int_eq(dpt_loader_next(ld, &b), DPT_ERR_INVALID_ARG);
        ck_assert_ptr_null(b);
        dpt_loader_destroy(ld);
    }
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(got[i], 1);
    dpt_dataset_destroy(ds);
}
END_TEST

START_TEST(normalization_known_pixels)
{
    enum { C = 3, H = 2, W = 2 };
    dpt_dataset_t *ds = make_ds(4, C, H, W, 0.0f, 1.0f);
    static const float mean[3] = {0.4914f, 0.4822f, 0.4465f}, std[3] = {0.2470f, 0.2435f, 0.2616f};
    memcpy(ds->mean, mean, sizeof mean);
    memcpy(ds->std, std, sizeof std);
    ds->images[0] = 0;     /* sample 0, channel 0, (0, 0) */
    ds->images[5] = 255;   /* sample 0, channel 1, (0, 1) */
    ds->images[10] = 128;  /* sample 0, channel 2, (1, 0) */
    dpt_loader_config_t cfg = config(4, 0, 1);
    cfg.shuffle = 0;
    dpt_loader_t *ld = make_loader(ds, cfg);
    ck_assert_int_eq(dpt_loader_start_epoch(ld, 0), DPT_OK);
    const dpt_batch_t *b = NULL;
    ck_assert_int_eq(dpt_loader_next(ld, &b), DPT_OK);
    ck_assert_float_eq_tol(b->x[0], -0.4914f / 0.2470f, 1e-5);
    ck_assert_float_eq_tol(b->x[5], (1.0f - 0.4822f) / 0.2435f, 1e-5);
    ck_assert_float_eq_tol(b->x[10], (128.0f / 255.0f - 0.4465f) / 0.2616f, 1e-5);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < C * H * W; j++) {
            double want = (ds->images[i * C * H * W + j] / 255.0 - mean[j / (H * W)]) /
                          std[j / (H * W)];
            ck_assert_float_eq_tol(b->x[i * C * H * W + j], want, 1e-5);
        }
    dpt_loader_destroy(ld);
    dpt_dataset_destroy(ds);
}
END_TEST

START_TEST(augmentation_geometry)
{
    /* Each output must be the source shifted by (dy, dx) in [-pad, pad] and maybe mirrored, with
     * 0.0 where the shift uncovers padding; over many samples, many transforms must occur. */
    enum { N = 400, C = 2, H = 5, W = 6, PAD = 2 };
    dpt_dataset_t *ds = make_ds(N, C, H, W, 0.0f, 1.0f);   /* x = pixel / 255, pixel >= 10 */
    dpt_loader_config_t cfg = config(20, 0, 1);
    cfg.crop_pad = PAD;
    cfg.flip = 1;
    dpt_loader_t *ld = make_loader(ds, cfg);
    int seen[2 * PAD + 1][2 * PAD + 1][2] = {{{0}}};
    ck_assert_int_eq(dpt_loader_start_epoch(ld, 3), DPT_OK);
    for (int s = 0; s < dpt_loader_steps(ld); s++) {
        const dpt_batch_t *b = NULL;
        ck_assert_int_eq(dpt_loader_next(ld, &b), DPT_OK);
        for (int i = 0; i < b->n_valid; i++) {
            const float *x = b->x + (size_t)i * C * H * W;
            const uint8_t *src = ds->images + (size_t)b->y[i] * C * H * W;
            int matches = 0;
            for (int dy = 0; dy <= 2 * PAD; dy++)
                for (int dx = 0; dx <= 2 * PAD; dx++)
                    for (int f = 0; f < 2; f++) {
                        int ok = 1;
                        for (int c = 0; c < C && ok; c++)
                            for (int oy = 0; oy < H && ok; oy++)
                                for (int ox = 0; ox < W && ok; ox++) {
                                    int sy = oy + dy - PAD, sx = (f ? W - 1 - ox : ox) + dx - PAD;
                                    float want = (sy < 0 || sy >= H || sx < 0 || sx >= W)
                                                     ? 0.0f
                                                     : src[(c * H + sy) * W + sx] / 255.0f;
                                    ok = fabsf(x[(c * H + oy) * W + ox] - want) < 1e-6f;
                                }
                        if (ok) {
                            matches++;
                            seen[dy][dx][f]++;
                        }
                    }
            ck_assert_msg(matches == 1, "sample %d: %d matching transforms", b->y[i], matches);
        }
    }
    int distinct = 0, flipped = 0;
    for (int dy = 0; dy <= 2 * PAD; dy++)
        for (int dx = 0; dx <= 2 * PAD; dx++)
            for (int f = 0; f < 2; f++) {
                distinct += seen[dy][dx][f] > 0;
                flipped += f ? seen[dy][dx][f] : 0;
            }
    ck_assert_int_ge(distinct, 40);               /* of 50, with 400 draws */
    ck_assert(flipped > 140 && flipped < 260);    /* p = 0.5 */
    dpt_loader_destroy(ld);
    dpt_dataset_destroy(ds);
}
END_TEST

/* Random resized crop with scale 1 and aspect 1 on square images is the identity (no flip). */
START_TEST(rrc_identity)
{
    enum { N = 30, C = 3, H = 7, W = 7 };
    dpt_dataset_t *ds = make_ds(N, C, H, W, 0.4f, 0.3f);
    dpt_loader_config_t cfg = config(5, 0, 1);
    cfg.rrc = 1;
    cfg.rrc_scale[0] = cfg.rrc_scale[1] = 1.0f;
    cfg.rrc_ratio[0] = cfg.rrc_ratio[1] = 1.0f;
    dpt_loader_t *ld = make_loader(ds, cfg);
    ck_assert_int_eq(dpt_loader_start_epoch(ld, 0), DPT_OK);
    for (int s = 0; s < dpt_loader_steps(ld); s++) {
        const dpt_batch_t *b = NULL;
        ck_assert_int_eq(dpt_loader_next(ld, &b), DPT_OK);
        for (int i = 0; i < b->n_valid; i++)
            for (int j = 0; j < C * H * W; j++) {
                float want = (pixel_of(b->y[i], j) / 255.0f - 0.4f) / 0.3f;
                ck_assert_float_eq_tol(b->x[(size_t)i * C * H * W + j], want, 1e-5f);
            }
    }
    dpt_loader_destroy(ld);
    dpt_dataset_destroy(ds);
}
END_TEST

/* On images that are a linear ramp v = 10 + 6x + 11y, bilinear sampling is exact, so the step
 * between neighbouring interior output pixels gives the crop size: cw = step_x * W / 6 (negative
 * when flipped), ch = step_y * H / 11. Every crop must have an integer size, an area fraction and
 * aspect in the configured ranges (up to rounding), stay inside the image, and the draws must
 * vary and flip about half the time. */
START_TEST(rrc_geometry)
{
    enum { N = 300, H = 12, W = 12 };
    dpt_dataset_t *ds = make_ds(N, 1, H, W, 0.0f, 1.0f);
    for (int i = 0; i < N; i++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                ds->images[((size_t)i * H + y) * W + x] = (uint8_t)(10 + 6 * x + 11 * y);
    dpt_loader_config_t cfg = config(20, 0, 1);
    cfg.flip = 1;
    set_rrc(&cfg, 0.25f);
    dpt_loader_t *ld = make_loader(ds, cfg);
    int flipped = 0, widths[W + 1] = {0}, distinct = 0;
    ck_assert_int_eq(dpt_loader_start_epoch(ld, 2), DPT_OK);
    for (int s = 0; s < dpt_loader_steps(ld); s++) {
        const dpt_batch_t *b = NULL;
        ck_assert_int_eq(dpt_loader_next(ld, &b), DPT_OK);
        for (int i = 0; i < b->n_valid; i++) {
            const float *x = b->x + (size_t)i * H * W;
            for (int j = 0; j < H * W; j++)
                ck_assert(x[j] * 255.0f >= 10.0f - 1e-3f && x[j] * 255.0f <= 197.0f + 1e-3f);
            float sx = (x[5 * W + 6] - x[5 * W + 5]) * 255.0f * W / 6.0f;
            float sy = (x[6 * W + 5] - x[5 * W + 5]) * 255.0f * H / 11.0f;
            int cw = (int)lroundf(fabsf(sx)), ch = (int)lroundf(sy);
            ck_assert_msg(fabsf(fabsf(sx) - cw) < 1e-2f && fabsf(sy - ch) < 1e-2f,
                          "crop %g x %g is not whole pixels", (double)sx, (double)sy);
            ck_assert(cw >= 1 && cw <= W && ch >= 1 && ch <= H);
            double area = (double)cw * ch / (H * W), aspect = (double)cw / ch;
            ck_assert_msg(area >= 0.2 && area <= 1.0 && aspect >= 0.6 && aspect <= 1.7,
                          "crop %d x %d", cw, ch);
            flipped += sx < 0;
            distinct += widths[cw]++ == 0;
        }
    }
    ck_assert(flipped > 100 && flipped < 200);   /* p = 0.5 of 300 */
    ck_assert_int_ge(distinct, 4);
    dpt_loader_destroy(ld);
    dpt_dataset_destroy(ds);
}
END_TEST

START_TEST(prefetch_matches_sync)
{
    enum { N = 131, C = 3, H = 8, W = 8 };
    const size_t chw = (size_t)C * H * W;
    dpt_dataset_t *ds = make_ds(N, C, H, W, 0.3f, 0.2f);
    dpt_loader_config_t cfg = config(9, 1, 2);
    cfg.drop_last = 0;
    cfg.crop_pad = 3;
    cfg.flip = 1;
    dpt_loader_t *sync = make_loader(ds, cfg);
    cfg.prefetch = 1;
    dpt_loader_t *pre = make_loader(ds, cfg);
    /* Epoch order 0, 1, 0 again, 5: each epoch is a pure function of (seed, epoch). */
    static const int epochs[] = {0, 1, 0, 5};
    for (int e = 0; e < 4; e++) {
        ck_assert_int_eq(dpt_loader_start_epoch(sync, epochs[e]), DPT_OK);
        ck_assert_int_eq(dpt_loader_start_epoch(pre, epochs[e]), DPT_OK);
        for (int s = 0; s < dpt_loader_steps(sync); s++) {
            const dpt_batch_t *a = NULL, *b = NULL;
            ck_assert_int_eq(dpt_loader_next(sync, &a), DPT_OK);
            ck_assert_int_eq(dpt_loader_next(pre, &b), DPT_OK);
            ck_assert_int_eq(a->n_valid, b->n_valid);
            ck_assert_int_eq(a->epoch, b->epoch);
            ck_assert_int_eq(a->step, b->step);
            ck_assert_mem_eq(a->x, b->x, 9 * chw * sizeof(float));
            ck_assert_mem_eq(a->y, b->y, 9 * sizeof(int32_t));
        }
        const dpt_batch_t *b = NULL;
        ck_assert_int_eq(dpt_loader_next(pre, &b), DPT_ERR_INVALID_ARG);
    }
    dpt_loader_destroy(sync);
    dpt_loader_destroy(pre);
    dpt_dataset_destroy(ds);
}
END_TEST

/* The worker pool: 1, 2 and 3 workers (and more workers than samples, and 0 = automatic) must
 * give the synchronous loader's bytes, step for step, with crop + flip on a padded tail (_i = 0)
 * and with random resized crop + flip (_i = 1), also across a restart mid-epoch. */
START_TEST(workers_match_sync)
{
    enum { N = 157, C = 3, H = 12, W = 10, B = 11 };
    const size_t chw = (size_t)C * H * W;
    static const int workers[] = {1, 2, 3, 16, 0};
    enum { NW = sizeof workers / sizeof workers[0] };
    dpt_dataset_t *ds = make_ds(N, C, H, W, 0.45f, 0.22f);
    dpt_loader_config_t cfg = config(B, 1, 3);
    cfg.drop_last = 0;
    cfg.flip = 1;
    if (_i)
        set_rrc(&cfg, 0.3f);
    else
        cfg.crop_pad = 2;
    dpt_loader_t *sync = make_loader(ds, cfg), *pool[NW];
    cfg.prefetch = 1;
    for (int w = 0; w < NW; w++) {
        cfg.workers = workers[w];
        pool[w] = make_loader(ds, cfg);
    }
    static const int epochs[] = {0, 1, 4, 1};
    for (int e = 0; e < 4; e++) {
        ck_assert_int_eq(dpt_loader_start_epoch(sync, epochs[e]), DPT_OK);
        for (int w = 0; w < NW; w++)
            ck_assert_int_eq(dpt_loader_start_epoch(pool[w], epochs[e]), DPT_OK);
        for (int s = 0; s < dpt_loader_steps(sync); s++) {
            const dpt_batch_t *a = NULL;
            ck_assert_int_eq(dpt_loader_next(sync, &a), DPT_OK);
            for (int w = 0; w < NW; w++) {
                const dpt_batch_t *b = NULL;
                ck_assert_int_eq(dpt_loader_next(pool[w], &b), DPT_OK);
                ck_assert_int_eq(b->epoch, epochs[e]);
                ck_assert_int_eq(b->step, s);
                ck_assert_int_eq(b->n_valid, a->n_valid);
                ck_assert_msg(memcmp(a->x, b->x, B * chw * sizeof(float)) == 0,
                              "workers %d, epoch %d, step %d: pixels differ", workers[w],
                              epochs[e], s);
                ck_assert_mem_eq(a->y, b->y, B * sizeof(int32_t));
            }
        }
    }
    /* A restart mid-epoch with every pool running ahead, then a full epoch. */
    for (int w = 0; w < NW; w++) {
        const dpt_batch_t *b = NULL;
        ck_assert_int_eq(dpt_loader_start_epoch(pool[w], 7), DPT_OK);
        ck_assert_int_eq(dpt_loader_next(pool[w], &b), DPT_OK);
        ck_assert_int_eq(dpt_loader_start_epoch(pool[w], 2), DPT_OK);
    }
    ck_assert_int_eq(dpt_loader_start_epoch(sync, 2), DPT_OK);
    for (int s = 0; s < dpt_loader_steps(sync); s++) {
        const dpt_batch_t *a = NULL;
        ck_assert_int_eq(dpt_loader_next(sync, &a), DPT_OK);
        for (int w = 0; w < NW; w++) {
            const dpt_batch_t *b = NULL;
            ck_assert_int_eq(dpt_loader_next(pool[w], &b), DPT_OK);
            ck_assert_int_eq(b->step, s);
            ck_assert_mem_eq(a->x, b->x, B * chw * sizeof(float));
            ck_assert_mem_eq(a->y, b->y, B * sizeof(int32_t));
        }
    }
    for (int w = 0; w < NW; w++) {
        const dpt_batch_t *b = NULL;
        ck_assert_int_eq(dpt_loader_next(pool[w], &b), DPT_ERR_INVALID_ARG);
        dpt_loader_destroy(pool[w]);
    }
    dpt_loader_destroy(sync);
    dpt_dataset_destroy(ds);
}
END_TEST

START_TEST(restart_mid_epoch)
{
    /* Abandoning an epoch part-way (with the prefetch thread busy) and starting another must give
     * exactly what a fresh loader gives. */
    enum { N = 200 };
    dpt_dataset_t *ds = make_ds(N, 1, 4, 4, 0.0f, 1.0f);
    dpt_loader_config_t cfg = config(10, 0, 1);
    cfg.flip = 1;
    cfg.prefetch = _i > 0;
    cfg.workers = _i;   /* 0 (synchronous), 1, 2, 3 workers */
    dpt_loader_t *ld = make_loader(ds, cfg), *fresh = make_loader(ds, cfg);
    int a[N], b[N];
    const dpt_batch_t *batch = NULL;
    ck_assert_int_eq(dpt_loader_start_epoch(ld, 0), DPT_OK);
    ck_assert_int_eq(dpt_loader_next(ld, &batch), DPT_OK);
    ck_assert_int_eq(dpt_loader_next(ld, &batch), DPT_OK);
    ck_assert_int_eq(epoch_ids(ld, 2, a), N);
    ck_assert_int_eq(epoch_ids(fresh, 2, b), N);
    ck_assert_mem_eq(a, b, sizeof a);
    /* Restart the same epoch right after starting it. */
    ck_assert_int_eq(dpt_loader_start_epoch(ld, 2), DPT_OK);
    ck_assert_int_eq(epoch_ids(ld, 2, a), N);
    ck_assert_mem_eq(a, b, sizeof a);
    dpt_loader_destroy(ld);
    dpt_loader_destroy(fresh);
    dpt_dataset_destroy(ds);
}
END_TEST

START_TEST(destroy_mid_epoch)
{
    /* Destroying with the workers idle, busy, or never started must neither hang nor leak (ASan
     * checks the latter), for 1 to 3 workers. */
    dpt_dataset_t *ds = make_ds(500, 3, 16, 16, 0.5f, 0.25f);
    dpt_loader_config_t cfg = config(50, 0, 1);
    cfg.prefetch = 1;
    cfg.crop_pad = 4;
    for (int t = 0; t < 60; t++) {
        cfg.workers = 1 + t % 3;
        dpt_loader_t *ld = make_loader(ds, cfg);
        if (t % 3 > 0)
            ck_assert_int_eq(dpt_loader_start_epoch(ld, t), DPT_OK);
        if (t % 3 == 2) {
            const dpt_batch_t *b = NULL;
            ck_assert_int_eq(dpt_loader_next(ld, &b), DPT_OK);
        }
        dpt_loader_destroy(ld);
    }
    dpt_loader_destroy(NULL);
    dpt_dataset_destroy(ds);
}
END_TEST

START_TEST(no_allocation_after_create)
{
    dpt_dataset_t *ds = make_ds(90, 3, 8, 8, 0.5f, 0.25f);
    dpt_loader_config_t cfg = config(8, 1, 3);
    cfg.drop_last = 0;
    cfg.crop_pad = 2;
    cfg.flip = 1;
    cfg.prefetch = _i > 0;
    cfg.workers = _i;   /* 0 (synchronous), 1, 3 workers */
    if (_i == 2) {
        cfg.workers = 3;
        cfg.crop_pad = 0;
        set_rrc(&cfg, 0.4f);
    }
    dpt_loader_t *ld = make_loader(ds, cfg);
    uint64_t before = dpt_alloc_count();
    int ids[90];
    for (int epoch = 0; epoch < 3; epoch++)
        (void)epoch_ids(ld, epoch, ids);
    ck_assert_uint_eq(dpt_alloc_count(), before);
    dpt_loader_destroy(ld);
    dpt_dataset_destroy(ds);
}
END_TEST

START_TEST(bad_config_and_call_order)
{
    dpt_dataset_t *ds = make_ds(20, 1, 4, 4, 0.5f, 0.25f);
    static const dpt_loader_config_t bad[] = {
        {.batch = 0, .nranks = 1},
        {.batch = 4, .nranks = 0},
        {.batch = 4, .rank = 2, .nranks = 2},
        {.batch = 4, .rank = -1, .nranks = 2},
        {.batch = 4, .nranks = 1, .crop_pad = -1},
        {.batch = 4, .nranks = 1, .crop_pad = 5},
        {.batch = 21, .nranks = 1, .drop_last = 1},   /* not one full batch */
        {.batch = 4, .nranks = 6, .drop_last = 1},
        {.batch = 4, .nranks = 1, .crop_pad = 1, .rrc = 1, .rrc_scale = {0.5f, 1},
         .rrc_ratio = {1, 1}},
        {.batch = 4, .nranks = 1, .rrc = 1, .rrc_scale = {0, 1}, .rrc_ratio = {1, 1}},
        {.batch = 4, .nranks = 1, .rrc = 1, .rrc_scale = {0.5f, 1.5f}, .rrc_ratio = {1, 1}},
        {.batch = 4, .nranks = 1, .rrc = 1, .rrc_scale = {0.5f, 1}, .rrc_ratio = {2, 1}},
        {.batch = 4, .nranks = 1, .prefetch = 1, .workers = -1},
        {.batch = 4, .nranks = 1, .prefetch = 1, .workers = DPT_LOADER_MAX_WORKERS + 1},
    };
    for (size_t t = 0; t < sizeof bad / sizeof bad[0]; t++) {
        dpt_loader_t *ld = (dpt_loader_t *)1;
        ck_assert_msg(dpt_loader_create(ds, &bad[t], &ld) == DPT_ERR_INVALID_ARG, "case %zu", t);
        ck_assert_ptr_null(ld);
    }
    ds->std[0] = 0.0f;
    dpt_loader_config_t cfg = config(4, 0, 1);
    dpt_loader_t *ld = NULL;
    ck_assert_int_eq(dpt_loader_create(ds, &cfg, &ld), DPT_ERR_INVALID_ARG);
    ds->std[0] = 0.25f;

    /* A batch larger than the dataset is fine without drop_last: one padded step. */
    cfg.batch = 32;
    cfg.drop_last = 0;
    ld = make_loader(ds, cfg);
    ck_assert_int_eq(dpt_loader_steps(ld), 1);
    const dpt_batch_t *b = NULL;
    ck_assert_int_eq(dpt_loader_next(ld, &b), DPT_ERR_INVALID_ARG);   /* no start_epoch yet */
    ck_assert_int_eq(dpt_loader_start_epoch(ld, -1), DPT_ERR_INVALID_ARG);
    ck_assert_int_eq(dpt_loader_start_epoch(ld, 0), DPT_OK);
    ck_assert_int_eq(dpt_loader_next(ld, &b), DPT_OK);
    ck_assert_int_eq(b->n_valid, 20);
    dpt_loader_destroy(ld);
    dpt_dataset_destroy(ds);
}
END_TEST

START_TEST(synthetic_through_loader)
{
    /* The synthetic dataset and the loader together, as the trainer uses them. */
    dpt_dataset_t *ds = NULL;
    ck_assert_int_eq(dpt_dataset_open("synthetic:256:3:12:12:10", 1, 9, &ds), DPT_OK);
    dpt_loader_config_t cfg = config(16, 0, 2);
    cfg.prefetch = 1;
    cfg.flip = 1;   /* no crop: padding zeros would bias the statistics below */
    dpt_loader_t *ld = make_loader(ds, cfg);
    ck_assert_int_eq(dpt_loader_steps(ld), 8);
    ck_assert_int_eq(dpt_loader_start_epoch(ld, 0), DPT_OK);
    double sum = 0, sumsq = 0;
    int count = 0;
    for (int s = 0; s < 8; s++) {
        const dpt_batch_t *b = NULL;
        ck_assert_int_eq(dpt_loader_next(ld, &b), DPT_OK);
        for (int i = 0; i < 16; i++)
            ck_assert(b->y[i] >= 0 && b->y[i] < 10);
        for (int j = 0; j < 16 * 3 * 144; j++) {
            ck_assert(isfinite(b->x[j]));
            sum += b->x[j];
            sumsq += (double)b->x[j] * b->x[j];
            count++;
        }
    }
    /* Normalized with the dataset's own statistics: mean near 0, variance near 1. */
    double mean = sum / count, var = sumsq / count - mean * mean;
    ck_assert_float_eq_tol(mean, 0.0, 0.1);
    ck_assert_float_eq_tol(var, 1.0, 0.05);
    dpt_loader_destroy(ld);
    dpt_dataset_destroy(ds);
}
END_TEST

static Suite *loader_suite(void)
{
    Suite *s = suite_create("loader");
    TCase *tc = tcase_create("order");
    tcase_add_test(tc, steps_per_epoch);
    tcase_add_loop_test(tc, permutation_covers_each_sample_once, 0, 2);
    tcase_add_test(tc, epochs_and_seeds);
    tcase_add_loop_test(tc, rank_shards_partition_global_batch, 0, 5);
    tcase_add_test(tc, padding_and_n_valid);
    suite_add_tcase(s, tc);

    tc = tcase_create("transform");
    tcase_add_test(tc, normalization_known_pixels);
    tcase_add_test(tc, augmentation_geometry);
    tcase_add_test(tc, rrc_identity);
    tcase_add_test(tc, rrc_geometry);
    tcase_add_test(tc, synthetic_through_loader);
    suite_add_tcase(s, tc);

    tc = tcase_create("prefetch");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, prefetch_matches_sync);
    tcase_add_loop_test(tc, workers_match_sync, 0, 2);
    tcase_add_loop_test(tc, restart_mid_epoch, 0, 4);
    tcase_add_test(tc, destroy_mid_epoch);
    tcase_add_loop_test(tc, no_allocation_after_create, 0, 3);
    tcase_add_test(tc, bad_config_and_call_order);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(loader_suite)
