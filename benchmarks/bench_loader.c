/* bench_loader.c: how fast the batch loader (src/data/loader.c) feeds a training step. Opens a
 * dataset (typically shards:DIR from `dptrain prepare`: the chunks are decompressed and checked
 * once, at open, which is timed too), then pulls batches as fast as a caller can take them, with
 * the trainer's augmentation (random resized crop, scale 0.35..1, aspect 3/4..4/3, plus flip)
 * and normalization, for each loader setting asked for: "sync" (no prefetch: the caller builds
 * each batch) or N prefetch workers. benchmarks/dvc_pipeline.sh compares the result with the
 * img/s of `dptrain bench train` at the same batch.
 *
 * Usage: bench_loader --data SPEC [--batch 64] [--workers sync,1,2] [--steps 60] [--reps 3]
 *                     [--no-rrc] [--seed 1]
 * Prints one JSON line per setting:
 *   {"bench":"loader","workers":W,"batch":B,"img_s":median,"batches_s":median,...}
 * and first one line about the dataset: {"bench":"loader_open","open_s":...,"n":N,...}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"   /* dpt__now, dpt__median */
#include "dptrain/dataset.h"
#include "dptrain/loader.h"
#include "dptrain/status.h"

static void usage(void)
{
    fprintf(stderr, "usage: bench_loader --data SPEC [--batch 64] [--workers sync,1,2] "
                    "[--steps 60] [--reps 3] [--no-rrc] [--seed 1]\n");
}

static int int_arg(const char *flag, const char *v, int lo, int hi, int *out)
{
    char *end = NULL;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "bench_loader: %s: '%s' is not an integer in [%d, %d]\n", flag,
                v ? v : "", lo, hi);
        return 0;
    }
    *out = (int)x;
    return 1;
}

/* Time `steps` batches (crossing epochs as needed) `reps` times after one untimed batch; the
 * median seconds per batch into *sec. The checksum of a few floats keeps the work observable. */
static dpt_status_t run(const dpt_dataset_t *ds, const dpt_loader_config_t *cfg, int steps,
                        int reps, double *sec, double *checksum)
{
    dpt_loader_t *ld = NULL;
    dpt_status_t st = dpt_loader_create(ds, cfg, &ld);
    if (st != DPT_OK)
        return st;
    double t[64];
    int per_epoch = dpt_loader_steps(ld), epoch = 0, left = 0;
    for (int r = -1; r < reps && st == DPT_OK; r++) {
        int n = r < 0 ? 1 : steps;
        double t0 = dpt__now();
        for (int s = 0; s < n && st == DPT_OK; s++) {
            if (left == 0) {
                st = dpt_loader_start_epoch(ld, epoch++);
                left = per_epoch;
            }
            const dpt_batch_t *b = NULL;
            if (st == DPT_OK)
                st = dpt_loader_next(ld, &b);
            if (st == DPT_OK)
                *checksum += b->x[0] + b->x[(size_t)b->n_valid / 2] + b->y[0];
            left--;
        }
        if (r >= 0)
            t[r] = (dpt__now() - t0) / n;
    }
    dpt_loader_destroy(ld);
    if (st == DPT_OK) {
        *sec = dpt__median(t, reps);
    }
    return st;
}

int main(int argc, char **argv)
{
    const char *spec = NULL, *workers = "sync,1,2";
    int batch = 64, steps = 60, reps = 3, rrc = 1, seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (!strcmp(a, "--data") && v)
            spec = v, i++;
        else if (!strcmp(a, "--workers") && v)
            workers = v, i++;
        else if (!strcmp(a, "--batch"))
            ok = int_arg(a, v, 1, 1 << 16, &batch), i++;
        else if (!strcmp(a, "--steps"))
            ok = int_arg(a, v, 1, 1 << 20, &steps), i++;
        else if (!strcmp(a, "--reps"))
            ok = int_arg(a, v, 1, 64, &reps), i++;
        else if (!strcmp(a, "--seed"))
            ok = int_arg(a, v, 0, 1 << 30, &seed), i++;
        else if (!strcmp(a, "--no-rrc"))
            rrc = 0;
        else {
            usage();
            return 2;
        }
        if (!ok)
            return 2;
    }
    if (!spec) {
        usage();
        return 2;
    }

    double t0 = dpt__now();
    dpt_dataset_t *ds = NULL;
    dpt_status_t st = dpt_dataset_open(spec, 1, (uint64_t)seed, &ds);
    if (st != DPT_OK) {
        fprintf(stderr, "bench_loader: %s\n", dpt_error_get());
        return 1;
    }
    double open_s = dpt__now() - t0;
    double pixel_mb = (double)ds->n * ds->c * ds->h * ds->w / 1e6;
    printf("{\"bench\":\"loader_open\",\"data\":\"%s\",\"n\":%d,\"c\":%d,\"h\":%d,\"w\":%d,"
           "\"open_s\":%.3f,\"img_s\":%.0f,\"pixel_MB\":%.1f}\n", spec, ds->n, ds->c, ds->h,
           ds->w, open_s, ds->n / open_s, pixel_mb);
    fflush(stdout);

    int rc = 0;
    char list[256];
    snprintf(list, sizeof list, "%s", workers);
    for (char *save = NULL, *w = strtok_r(list, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        dpt_loader_config_t cfg = {.batch = batch, .rank = 0, .nranks = 1, .seed = (uint64_t)seed,
                                   .shuffle = 1, .drop_last = 1, .flip = 1, .rrc = rrc,
                                   .rrc_scale = {0.35f, 1.0f}, .rrc_ratio = {0.75f, 4.0f / 3.0f}};
        if (strcmp(w, "sync") != 0) {
            cfg.prefetch = 1;
            if (!int_arg("--workers", w, 0, DPT_LOADER_MAX_WORKERS, &cfg.workers)) {
                rc = 2;
                break;
            }
        }
        double sec = 0, sum = 0;
        st = run(ds, &cfg, steps, reps, &sec, &sum);
        if (st != DPT_OK) {
            fprintf(stderr, "bench_loader: %s\n", dpt_error_get());
            rc = 1;
            break;
        }
        printf("{\"bench\":\"loader\",\"data\":\"%s\",\"workers\":\"%s\",\"batch\":%d,"
               "\"aug\":\"%s\",\"steps\":%d,\"reps\":%d,\"batches_s\":%.1f,\"img_s\":%.0f,"
               "\"checksum\":%.3f}\n", spec, w, batch, rrc ? "rrc+flip" : "flip", steps, reps,
               1.0 / sec, batch / sec, sum);
        fflush(stdout);
    }
    dpt_dataset_destroy(ds);
    return rc;
}
