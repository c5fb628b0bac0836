/* loader.c: turns a uint8 dataset into this rank's float batches (the step after the readers on
 * the data path). Per epoch a permutation of [0, N) is drawn from Philox keyed by (seed, epoch);
 * global batch g is permutation positions [g*B*P, (g+1)*B*P) and rank r takes the contiguous
 * slice [g*B*P + r*B, +B). Crop/flip/resized-crop randomness is keyed by (seed, epoch, position),
 * so a sample looks the same whatever the rank count, thread or worker count. With prefetch, a
 * pool of worker threads assembles the next batch into a second buffer (the samples of one batch
 * split among the workers) while the caller trains on the current one. */
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "dptrain/alloc.h"
#include "dptrain/loader.h"
#include "dptrain/rng.h"

/*
 * Layout of one epoch (B = batch, P = nranks, N = samples), e.g. B = 2, P = 3, N = 14,
 * drop_last = 0: steps = ceil(14 / 6) = 3, positions 14..17 are padding.
 *
 *   permutation position:  0  1 | 2  3 | 4  5 || 6  7 | 8  9 | 10 11 || 12 13 | 14 15 | 16 17
 *   rank:                  r0   | r1   | r2   || r0   | r1   | r2    || r0    | r1    | r2
 *   step:                  ------ 0 ---------- ------- 1 ------------ -------- 2 ------------
 *   n_valid on step 2:     r0 = 2, r1 = 0, r2 = 0 (padding: zero images, label 0)
 *
 * Augmentation (when crop_pad > 0 or flip): one Philox block keyed (seed, epoch, position) gives
 * the crop offsets dy, dx in [0, 2*pad] and the flip bit. Output pixel (y, x) is the normalized
 * source pixel (y + dy - pad, x' + dx - pad), x' = W-1-x when flipped, else x; a source pixel
 * outside the image (the padding) is 0.0 in the normalized output, i.e. the padding is the
 * dataset mean rather than black, which keeps padded borders neutral for the first layer.
 *
 * Random resized crop (rrc, instead of crop_pad): try t = 0..9 takes the Philox block keyed
 * (seed, epoch, 16 * position + t) -> area fraction s in rrc_scale, log-uniform aspect a in
 * rrc_ratio, cw = round(sqrt(H*W*s*a)), ch = round(sqrt(H*W*s/a)); the first try that fits gets
 * its offsets x0, y0 from the same block. If none fits: the largest centered rectangle with the
 * aspect clamped to rrc_ratio (torchvision's rule). Output pixel (y, x), x' = W-1-x when flipped,
 * samples the crop bilinearly at (y0 + (y + 0.5)*ch/H - 0.5, x0 + (x' + 0.5)*cw/W - 0.5), clamped
 * to the crop, and is normalized like every other pixel.
 *
 * Prefetch: NBUF slots, each FREE -> FILLING -> READY -> HELD (handed to the caller) -> FREE (on
 * the caller's next dpt_loader_next). A worker that finds no unclaimed sample in a FILLING slot
 * takes a FREE slot for the next step (fill_step, in order) and makes it FILLING; the samples of
 * a FILLING slot are claimed in chunks under the mutex and assembled unlocked, into disjoint
 * parts of the slot; whoever finishes the slot's last chunk makes it READY. With two slots the
 * pool runs one batch ahead, and all workers share that batch:
 *
 *   slot 0:  HELD (the caller trains on step s)         | FREE -> FILLING (step s+2) ...
 *   slot 1:  FILLING step s+1: w0 [0,8) w1 [8,16) w0 [16,24) ... -> READY | HELD ...
 *                                                       ^ caller's next dpt_loader_next
 *
 * Which worker assembles which chunk varies from run to run; the bytes do not, since every sample
 * is a pure function of (seed, epoch, position) written to its own place. One mutex and one
 * condition variable guard the slot states, claims and step counters; `busy` counts chunks being
 * assembled unlocked, and the permutation only changes while busy is 0 and claims are paused.
 */

#define LOADER_NBUF 2

enum { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_HELD };

struct dpt_loader {
    const dpt_dataset_t *ds;   /* borrowed; must outlive the loader */
    dpt_loader_config_t cfg;
    int steps;                 /* per epoch, identical on every rank */
    size_t sample_count;       /* C * H * W */
    uint32_t *perm;            /* (N) permutation of the current epoch */
    float lut[3][256];         /* normalized value of each pixel value, per channel */

    int epoch;                 /* current epoch, -1 before the first start_epoch */
    int next_step;             /* the step dpt_loader_next hands out next */
    dpt_batch_t slot[LOADER_NBUF];   /* x: (batch, C, H, W), y: (batch) */
    int state[LOADER_NBUF];

    /* Worker pool (cfg.prefetch); the fields below are guarded by mu. */
    int nthreads;              /* workers started (0: synchronous, batches built by the caller) */
    pthread_t *threads;        /* (workers) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int fill_step;             /* the next step a FREE slot is taken for */
    int claim[LOADER_NBUF];    /* FILLING: the next unclaimed sample of the slot */
    int done[LOADER_NBUF];     /* FILLING: samples assembled */
    int chunk;                 /* samples per claim */
    int busy;                  /* chunks being assembled unlocked */
    int paused;                /* start_epoch is waiting for busy == 0: claim nothing */
    int stop;
};

/* Uniform in [0, n) from one 32-bit word (multiply-shift; the bias, n / 2^32, is negligible). */
static int word_below(uint32_t word, int n)
{
    return (int)(((uint64_t)word * (uint64_t)n) >> 32);
}

/* The random resized crop rectangle of sample position `pos` (see the layout comment). */
static void rrc_rect(const dpt_loader_t *ld, int epoch, int64_t pos, int rect[4])
{
    const int H = ld->ds->h, W = ld->ds->w;
    const float *sc = ld->cfg.rrc_scale, *ra = ld->cfg.rrc_ratio;
    const double area = (double)H * W, lr0 = log(ra[0]), lr1 = log(ra[1]);
    for (int t = 0; t < 10; t++) {
        uint32_t u[4];
        dpt_philox4x32(ld->cfg.seed, (uint64_t)(uint32_t)epoch << 32 | DPT_RNG_STREAM_RRC,
                       (uint64_t)pos << 4 | (uint64_t)t, u);
        double s = sc[0] + (sc[1] - sc[0]) * (double)(u[0] >> 8) * (1.0 / 16777216.0);
        double a = exp(lr0 + (lr1 - lr0) * (double)(u[1] >> 8) * (1.0 / 16777216.0));
        int cw = (int)lround(sqrt(area * s * a)), ch = (int)lround(sqrt(area * s / a));
        if (cw >= 1 && cw <= W && ch >= 1 && ch <= H) {
            rect[0] = word_below(u[2], W - cw + 1);
            rect[1] = word_below(u[3], H - ch + 1);
            rect[2] = cw;
            rect[3] = ch;
            return;
        }
    }
    double in_ratio = (double)W / H;
    int cw = W, ch = H;
    if (in_ratio < ra[0])
        ch = (int)lround(W / (double)ra[0]);
    else if (in_ratio > ra[1])
        cw = (int)lround(H * (double)ra[1]);
    ch = ch < 1 ? 1 : ch > H ? H : ch;
    cw = cw < 1 ? 1 : cw > W ? W : cw;
    rect[0] = (W - cw) / 2;
    rect[1] = (H - ch) / 2;
    rect[2] = cw;
    rect[3] = ch;
}

/* Bilinear resample of the crop rect (x0, y0, cw, ch) of one uint8 plane (H, W) to the
 * normalized plane out (H, W); out = (v / 255 - mean) / std = v * scale + shift. */
static void rrc_plane(const uint8_t *plane, int H, int W, const int rect[4], int flip, float scale,
                      float shift, float *out)
{
    const float fx = (float)rect[2] / W, fy = (float)rect[3] / H;
    const float xmax = (float)(rect[0] + rect[2] - 1), ymax = (float)(rect[1] + rect[3] - 1);
    for (int oy = 0; oy < H; oy++) {
        float sy = rect[1] + (oy + 0.5f) * fy - 0.5f;
        sy = sy < rect[1] ? (float)rect[1] : sy > ymax ? ymax : sy;
        int y0 = (int)sy, y1 = y0 + 1 < H ? y0 + 1 : y0;
        float wy = sy - (float)y0;
        const uint8_t *r0 = plane + (size_t)y0 * W, *r1 = plane + (size_t)y1 * W;
        for (int ox = 0; ox < W; ox++) {
            float sx = rect[0] + ((flip ? W - 1 - ox : ox) + 0.5f) * fx - 0.5f;
            sx = sx < rect[0] ? (float)rect[0] : sx > xmax ? xmax : sx;
            int x0 = (int)sx, x1 = x0 + 1 < W ? x0 + 1 : x0;
            float wx = sx - (float)x0;
            float top = r0[x0] + wx * (float)(r0[x1] - r0[x0]);
            float bot = r1[x0] + wx * (float)(r1[x1] - r1[x0]);
            out[(size_t)oy * W + ox] = (top + wy * (bot - top)) * scale + shift;
        }
    }
}

/* Sample at permutation position `pos` of `epoch`, normalized and augmented, into x (C, H, W). */
static void assemble_sample(const dpt_loader_t *ld, int epoch, int64_t pos, float *x,
                            int32_t *y, int32_t *aug)
{
    const dpt_dataset_t *ds = ld->ds;
    uint32_t idx = ld->perm[pos];
    const uint8_t *src = ds->images + (size_t)idx * ld->sample_count;
    const int pad = ld->cfg.crop_pad, H = ds->h, W = ds->w;
    *y = ds->labels[idx];

    int dy = pad, dx = pad, flip = 0;
    if (pad > 0 || ld->cfg.flip || ld->cfg.rrc) {
        uint32_t r[4];
        dpt_philox4x32(ld->cfg.seed, (uint64_t)(uint32_t)epoch << 32 | DPT_RNG_STREAM_AUGMENT,
                       (uint64_t)pos, r);
        if (pad > 0) {
            dy = word_below(r[0], 2 * pad + 1);
            dx = word_below(r[1], 2 * pad + 1);
        }
        flip = ld->cfg.flip && (r[2] >> 31);
    }
    if (aug) {   /* defer_aug: record the crop and flip, write the plain image */
        aug[0] = dy;
        aug[1] = dx;
        aug[2] = flip;
        dy = dx = pad;
        flip = 0;
    }
    if (ld->cfg.rrc) {
        int rect[4];
        rrc_rect(ld, epoch, pos, rect);
        for (int c = 0; c < ds->c; c++)
            rrc_plane(src + (size_t)c * H * W, H, W, rect, flip,
                      1.0f / (255.0f * ds->std[c]), -ds->mean[c] / ds->std[c],
                      x + (size_t)c * H * W);
        return;
    }

    for (int c = 0; c < ds->c; c++) {
        const float *lut = ld->lut[c];
        const uint8_t *plane = src + (size_t)c * H * W;
        float *out = x + (size_t)c * H * W;
        if (dy == pad && dx == pad && !flip) {
            for (int i = 0; i < H * W; i++)
                out[i] = lut[plane[i]];
            continue;
        }
        for (int oy = 0; oy < H; oy++) {
            int sy = oy + dy - pad;
            float *orow = out + (size_t)oy * W;
            if (sy < 0 || sy >= H) {
                memset(orow, 0, (size_t)W * sizeof *orow);
                continue;
            }
            const uint8_t *srow = plane + (size_t)sy * W;
            for (int ox = 0; ox < W; ox++) {
                int sx = (flip ? W - 1 - ox : ox) + dx - pad;
                orow[ox] = (sx >= 0 && sx < W) ? lut[srow[sx]] : 0.0f;
            }
        }
    }
}

/* Samples [i0, i1) of this rank's shard of global batch `step` into b (padding beyond the
 * dataset: zero images, label 0). Reads perm; allocates nothing; ranges may run concurrently. */
static void assemble_range(const dpt_loader_t *ld, int epoch, int step, dpt_batch_t *b, int i0,
                           int i1)
{
    const int64_t first = ((int64_t)step * ld->cfg.nranks + ld->cfg.rank) * ld->cfg.batch;
    for (int i = i0; i < i1; i++) {
        float *x = b->x + (size_t)i * ld->sample_count;
        int32_t *aug = b->aug ? b->aug + 3 * (size_t)i : NULL;
        int64_t pos = first + i;
        if (pos < ld->ds->n) {
            assemble_sample(ld, epoch, pos, x, &b->y[i], aug);
        } else {
            memset(x, 0, ld->sample_count * sizeof *x);
            b->y[i] = 0;
            if (aug) {
                aug[0] = aug[1] = ld->cfg.crop_pad;
                aug[2] = 0;
            }
        }
    }
}

/* Set the header fields of b for `step`: n_valid is the shard's overlap with [0, N). */
static void batch_header(const dpt_loader_t *ld, int epoch, int step, dpt_batch_t *b)
{
    const int64_t first = ((int64_t)step * ld->cfg.nranks + ld->cfg.rank) * ld->cfg.batch;
    int64_t valid = ld->ds->n - first;
    b->n_valid = valid < 0 ? 0 : valid > ld->cfg.batch ? ld->cfg.batch : (int)valid;
    b->epoch = epoch;
    b->step = step;
}

/* A slot with unclaimed samples, taking a FREE one for the next step if none is FILLING; -1 if
 * there is no work. Called with mu held. */
static int find_work(dpt_loader_t *ld)
{
    if (ld->paused || ld->epoch < 0)
        return -1;
    int s = -1;
    for (int i = 0; i < LOADER_NBUF; i++)
        if (ld->state[i] == SLOT_FILLING && ld->claim[i] < ld->cfg.batch &&
            (s < 0 || ld->slot[i].step < ld->slot[s].step))
            s = i;
    if (s >= 0 || ld->fill_step >= ld->steps)
        return s;
    for (int i = 0; i < LOADER_NBUF && s < 0; i++)
        if (ld->state[i] == SLOT_FREE)
            s = i;
    if (s >= 0) {
        ld->state[s] = SLOT_FILLING;
        ld->claim[s] = 0;
        ld->done[s] = 0;
        batch_header(ld, ld->epoch, ld->fill_step++, &ld->slot[s]);
    }
    return s;
}

static void *worker_main(void *arg)
{
    dpt_loader_t *ld = arg;
    pthread_mutex_lock(&ld->mu);
    while (!ld->stop) {
        int s = find_work(ld);
        if (s < 0) {
            pthread_cond_wait(&ld->cv, &ld->mu);
            continue;
        }
        dpt_batch_t *b = &ld->slot[s];
        int i0 = ld->claim[s], i1 = i0 + ld->chunk, epoch = b->epoch, step = b->step;
        i1 = i1 > ld->cfg.batch ? ld->cfg.batch : i1;
        ld->claim[s] = i1;
        ld->busy++;
        pthread_mutex_unlock(&ld->mu);
        assemble_range(ld, epoch, step, b, i0, i1);
        pthread_mutex_lock(&ld->mu);
        ld->busy--;
        ld->done[s] += i1 - i0;
        if (ld->done[s] == ld->cfg.batch) {
            ld->state[s] = SLOT_READY;
            pthread_cond_broadcast(&ld->cv);
        } else if (ld->paused && ld->busy == 0) {
            pthread_cond_broadcast(&ld->cv);
        }
    }
    pthread_mutex_unlock(&ld->mu);
    return NULL;
}

/* Worker threads for cfg->workers (0 = automatic: a quarter of the online cores, 1 to 4). */
static int worker_count(const dpt_loader_config_t *cfg)
{
    int w = cfg->workers;
    if (w <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        w = cores >= 8 ? (int)(cores / 4) : 1;
        w = w > 4 ? 4 : w;
    }
    w = w > cfg->batch ? cfg->batch : w;
    return w < 1 ? 1 : w;
}

/* Stop and join the pool; callers have nthreads > 0. */
static void stop_workers(dpt_loader_t *ld)
{
    pthread_mutex_lock(&ld->mu);
    ld->stop = 1;
    pthread_cond_broadcast(&ld->cv);
    pthread_mutex_unlock(&ld->mu);
    for (int i = 0; i < ld->nthreads; i++)
        pthread_join(ld->threads[i], NULL);
    ld->nthreads = 0;
}

dpt_status_t dpt_loader_create(const dpt_dataset_t *ds, const dpt_loader_config_t *cfg,
                               dpt_loader_t **out)
{
    if (!out)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "dpt_loader_create: out is NULL");
    *out = NULL;
    if (!ds || !cfg || !ds->images || !ds->labels)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "dpt_loader_create: NULL dataset or config");
    if (ds->n < 1 || ds->c < 1 || ds->c > 3 || ds->h < 1 || ds->w < 1)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "%s: loader needs N >= 1, C in 1..3, H, W >= 1 "
                             "(got %d x %d x %d x %d)", ds->name, ds->n, ds->c, ds->h, ds->w);
    if (cfg->batch < 1 || cfg->nranks < 1 || cfg->rank < 0 || cfg->rank >= cfg->nranks ||
        cfg->crop_pad < 0 || cfg->crop_pad > ds->h || cfg->crop_pad > ds->w ||
        cfg->workers < 0 || cfg->workers > DPT_LOADER_MAX_WORKERS)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "%s: bad loader config: batch %d, rank %d of "
                             "%d, crop_pad %d, workers %d (need batch >= 1, 0 <= rank < nranks, "
                             "0 <= crop_pad <= image side, 0 <= workers <= %d)", ds->name,
                             cfg->batch, cfg->rank, cfg->nranks, cfg->crop_pad, cfg->workers,
                             DPT_LOADER_MAX_WORKERS);
    if (cfg->rrc && cfg->defer_aug)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "%s: random resized crop is not available "
                             "on the device (it runs in the loader)", ds->name);
    if (cfg->rrc && (cfg->crop_pad > 0 || !(cfg->rrc_scale[0] > 0.0f) ||
                     !(cfg->rrc_scale[0] <= cfg->rrc_scale[1]) || !(cfg->rrc_scale[1] <= 1.0f) ||
                     !(cfg->rrc_ratio[0] > 0.0f) || !(cfg->rrc_ratio[0] <= cfg->rrc_ratio[1]) ||
                     !isfinite(cfg->rrc_ratio[1])))
        return dpt_error_set(DPT_ERR_INVALID_ARG, "%s: bad random resized crop: scale [%g, %g], "
                             "aspect [%g, %g], crop_pad %d (need 0 < scale0 <= scale1 <= 1, "
                             "0 < aspect0 <= aspect1, no crop_pad)", ds->name,
                             (double)cfg->rrc_scale[0], (double)cfg->rrc_scale[1],
                             (double)cfg->rrc_ratio[0], (double)cfg->rrc_ratio[1], cfg->crop_pad);
    for (int c = 0; c < ds->c; c++)
        if (!(ds->std[c] > 0.0f))
            return dpt_error_set(DPT_ERR_INVALID_ARG, "%s: std of channel %d is %g, must be > 0",
                                 ds->name, c, (double)ds->std[c]);
    int64_t global = (int64_t)cfg->batch * cfg->nranks;
    int64_t steps = cfg->drop_last ? ds->n / global : (ds->n + global - 1) / global;
    if (steps < 1)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "%s: %d samples are fewer than one global batch "
                             "(%d x %d ranks) with drop_last: no steps", ds->name, ds->n,
                             cfg->batch, cfg->nranks);

    dpt_loader_t *ld = dpt_calloc(sizeof *ld);
    if (!ld)
        return dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory for the loader", ds->name);
    ld->ds = ds;
    ld->cfg = *cfg;
    ld->steps = (int)steps;
    ld->sample_count = (size_t)ds->c * ds->h * ds->w;
    ld->epoch = -1;
    for (int c = 0; c < ds->c; c++)
        for (int v = 0; v < 256; v++)
            ld->lut[c][v] = ((float)v / 255.0f - ds->mean[c]) / ds->std[c];

    ld->perm = dpt_malloc((size_t)ds->n * sizeof *ld->perm);
    int ok = ld->perm != NULL;
    for (int i = 0; i < LOADER_NBUF && ok; i++) {
        ld->slot[i].x = dpt_malloc((size_t)cfg->batch * ld->sample_count * sizeof(float));
        ld->slot[i].y = dpt_malloc((size_t)cfg->batch * sizeof(int32_t));
        ok = ld->slot[i].x && ld->slot[i].y;
        if (ok && cfg->defer_aug) {
            ld->slot[i].aug = dpt_malloc((size_t)cfg->batch * 3 * sizeof(int32_t));
            ok = ld->slot[i].aug != NULL;
        }
    }
    if (!ok) {
        dpt_loader_destroy(ld);
        return dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory for loader buffers (batch %d)",
                             ds->name, cfg->batch);
    }

    if (cfg->prefetch) {
        int want = worker_count(cfg);
        /* Chunks of about a quarter of each worker's share: small enough to balance the pool,
         * large enough that the mutex is taken a few times per batch and worker only. */
        ld->chunk = (cfg->batch + 4 * want - 1) / (4 * want);
        ld->threads = dpt_malloc((size_t)want * sizeof *ld->threads);
        if (!ld->threads) {
            dpt_loader_destroy(ld);
            return dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory for %d loader workers",
                                 ds->name, want);
        }
        pthread_mutex_init(&ld->mu, NULL);
        pthread_cond_init(&ld->cv, NULL);
        for (int i = 0; i < want; i++) {
            int rc = pthread_create(&ld->threads[i], NULL, worker_main, ld);
            if (rc != 0) {
                if (ld->nthreads > 0)
                    stop_workers(ld);
                pthread_cond_destroy(&ld->cv);
                pthread_mutex_destroy(&ld->mu);
                dpt_loader_destroy(ld);
                return dpt_error_set(DPT_ERR_INTERNAL, "%s: cannot start loader worker %d of "
                                     "%d: %s", ds->name, i + 1, want, strerror(rc));
            }
            ld->nthreads = i + 1;
        }
    }
    *out = ld;
    return DPT_OK;
}

int dpt_loader_steps(const dpt_loader_t *ld)
{
    return ld ? ld->steps : 0;
}

/* Fisher-Yates over Philox keyed by (seed, epoch), or the identity without shuffle. */
static void build_perm(dpt_loader_t *ld, int epoch)
{
    uint32_t n = (uint32_t)ld->ds->n;
    for (uint32_t i = 0; i < n; i++)
        ld->perm[i] = i;
    if (!ld->cfg.shuffle)
        return;
    dpt_rng_t rng;
    dpt_rng_init(&rng, ld->cfg.seed, (uint64_t)(uint32_t)epoch << 32 | DPT_RNG_STREAM_SHUFFLE);
    for (uint32_t i = n - 1; i > 0; i--) {
        uint32_t j = dpt_rng_below(&rng, i + 1);
        uint32_t t = ld->perm[i];
        ld->perm[i] = ld->perm[j];
        ld->perm[j] = t;
    }
}

dpt_status_t dpt_loader_start_epoch(dpt_loader_t *ld, int epoch)
{
    if (!ld || epoch < 0)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "dpt_loader_start_epoch: bad loader or epoch %d",
                             epoch);
    if (ld->nthreads == 0) {
        build_perm(ld, epoch);
        ld->epoch = epoch;
        ld->next_step = 0;
        return DPT_OK;
    }
    pthread_mutex_lock(&ld->mu);
    /* Workers read perm while assembling: stop new claims and let the chunks in progress finish
     * before reshuffling (a restart mid-epoch abandons the slots being filled). */
    ld->paused = 1;
    while (ld->busy > 0)
        pthread_cond_wait(&ld->cv, &ld->mu);
    build_perm(ld, epoch);
    ld->epoch = epoch;
    ld->next_step = 0;
    ld->fill_step = 0;
    for (int i = 0; i < LOADER_NBUF; i++)
        ld->state[i] = SLOT_FREE;
    ld->paused = 0;
    pthread_cond_broadcast(&ld->cv);
    pthread_mutex_unlock(&ld->mu);
    return DPT_OK;
}

dpt_status_t dpt_loader_next(dpt_loader_t *ld, const dpt_batch_t **out)
{
    if (!ld || !out)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "dpt_loader_next: NULL argument");
    *out = NULL;
    if (ld->epoch < 0)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "%s: dpt_loader_next before "
                             "dpt_loader_start_epoch", ld->ds->name);
    if (ld->next_step >= ld->steps)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "%s: epoch %d has only %d steps", ld->ds->name,
                             ld->epoch, ld->steps);
    if (ld->nthreads == 0) {
        dpt_batch_t *b = &ld->slot[0];
        batch_header(ld, ld->epoch, ld->next_step++, b);
        assemble_range(ld, b->epoch, b->step, b, 0, ld->cfg.batch);
        *out = &ld->slot[0];
        return DPT_OK;
    }
    pthread_mutex_lock(&ld->mu);
    for (int i = 0; i < LOADER_NBUF; i++)
        if (ld->state[i] == SLOT_HELD)
            ld->state[i] = SLOT_FREE;
    pthread_cond_broadcast(&ld->cv);
    int s = -1;
    for (;;) {
        for (int i = 0; i < LOADER_NBUF && s < 0; i++)
            if (ld->state[i] == SLOT_READY && ld->slot[i].step == ld->next_step)
                s = i;
        if (s >= 0)
            break;
        pthread_cond_wait(&ld->cv, &ld->mu);
    }
    ld->state[s] = SLOT_HELD;
    ld->next_step++;
    pthread_mutex_unlock(&ld->mu);
    *out = &ld->slot[s];
    return DPT_OK;
}

void dpt_loader_destroy(dpt_loader_t *ld)
{
    if (!ld)
        return;
    if (ld->nthreads > 0) {
        stop_workers(ld);
        pthread_cond_destroy(&ld->cv);
        pthread_mutex_destroy(&ld->mu);
    }
    dpt_free(ld->threads);
    for (int i = 0; i < LOADER_NBUF; i++) {
        dpt_free(ld->slot[i].x);
        dpt_free(ld->slot[i].y);
        dpt_free(ld->slot[i].aug);
    }
    dpt_free(ld->perm);
    dpt_free(ld);
}
