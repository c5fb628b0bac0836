/* prepare.c: `dptrain prepare`, a JPEG folder -> shard-*.dps (read back by "shards:DIR"). Steps:
 *   1. scan (scan.c): top-level <class>.<x>.jpg files and one folder per class, sorted by path;
 *   2. manifest check (manifest.c): same files (size, mtime), same options, shards intact ->
 *      nothing to do;
 *   3. decode + resize every file on --threads workers into one slot each (image.c);
 *   4. report the bad files in path order, draw the per-class train/val split from the seed
 *      over the good ones, compute the train split's per-channel mean/std;
 *   5. write the train shards, then the val shards (shard_write.c; atomic), delete stale shards,
 *      write the manifest last, so an interrupted run is never mistaken for a finished one.
 * Every result depends on the input files and the options only, never on --threads. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "core/internal.h"
#include "dptrain/alloc.h"
#include "dptrain/prepare.h"
#include "dptrain/rng.h"
#include "dptrain/shard.h"
#include "prep/internal.h"

#define MAX_BYTES ((uint64_t)1 << 33)              /* decoded pixels held at once: 8 GiB */
#define SHARD_TARGET_BYTES ((size_t)64 << 20)
#define CHUNK_TARGET_BYTES ((size_t)1 << 20)
#define SPLIT_STREAM 0x53504c4954000000ull         /* "SPLIT", Philox stream of the draw */

static const char *const bad_names[DPT_PREP_BAD_N] = {
    [DPT_PREP_BAD_EMPTY] = "empty",           [DPT_PREP_BAD_NOT_JPEG] = "not JPEG",
    [DPT_PREP_BAD_CORRUPT] = "corrupt",       [DPT_PREP_BAD_SIZE] = "bad size",
    [DPT_PREP_BAD_UNREADABLE] = "unreadable", [DPT_PREP_BAD_UNLABELED] = "unlabeled",
};

void dpt_prepare_config_default(dpt_prepare_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->resize = DPT_RESIZE_SHORTER_CROP;
    cfg->val_fraction = 0.1;
    cfg->seed = 1;
}

dpt_status_t dpt_resize_parse(const char *name, dpt_resize_mode_t *mode)
{
    if (name && !strcmp(name, "shorter-crop"))
        *mode = DPT_RESIZE_SHORTER_CROP;
    else if (name && !strcmp(name, "whole"))
        *mode = DPT_RESIZE_WHOLE;
    else
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--resize: '%s' is not shorter-crop or whole",
                             name ? name : "");
    return DPT_OK;
}

dpt_status_t dpt_prepare_check(const dpt_prepare_config_t *cfg)
{
    if (!cfg->input_dir || !cfg->input_dir[0])
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--input DIR is required");
    if (!cfg->output_dir || !cfg->output_dir[0])
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--output DIR is required");
    if (cfg->size == 0)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--size S is required (e.g. --size 64)");
    if (cfg->size < 8 || cfg->size > 1024)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--size %d is out of range [8, 1024]",
                             cfg->size);
    if (!(cfg->val_fraction >= 0.0 && cfg->val_fraction <= 0.9))
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--val-fraction %g is out of range [0, 0.9]",
                             cfg->val_fraction);
    if (cfg->resize != DPT_RESIZE_SHORTER_CROP && cfg->resize != DPT_RESIZE_WHOLE)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--resize: unknown mode %d", (int)cfg->resize);
    if (cfg->shard_records < 0 || cfg->chunk_records < 0)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "negative shard or chunk record count");
    return DPT_OK;
}

/* --- decode -------------------------------------------------------------------------------- */

typedef struct decode_job {
    const dpt_prepare_config_t *cfg;
    entry_t *e;
    int *todo;             /* (n_todo) entry index of each job */
    uint8_t *pixels;       /* (n_todo, size, size, 3) */
    void **tj;             /* (workers) TurboJPEG decompressors */
} decode_job_t;

static void decode_one(void *ctx, int job, int worker)
{
    decode_job_t *j = ctx;
    entry_t *e = &j->e[j->todo[job]];
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", j->cfg->input_dir, e->rel);
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL, *rgb = NULL;
    struct stat sb;
    if (!f || fstat(fileno(f), &sb) != 0) {
        e->bad = DPT_PREP_BAD_UNREADABLE;
        snprintf(e->why, sizeof e->why, "%s", strerror(errno));
        goto done;
    }
    size_t n = (size_t)sb.st_size;
    buf = n ? dpt_malloc(n) : NULL;
    if (n && (!buf || fread(buf, 1, n, f) != n)) {
        e->bad = DPT_PREP_BAD_UNREADABLE;
        snprintf(e->why, sizeof e->why, "%s", buf ? "read error" : "out of memory");
        goto done;
    }
    int w = 0, h = 0;
    int bad = dpt__jpeg_decode(j->tj[worker], buf, n, &rgb, &w, &h, e->why, sizeof e->why);
    if (bad >= 0) {
        e->bad = bad;
        goto done;
    }
    size_t s = (size_t)j->cfg->size;
    if (dpt__image_resize(rgb, w, h, 3, j->cfg->resize, (int)s,
                          j->pixels + (size_t)job * s * s * 3) != DPT_OK) {
        e->bad = DPT_PREP_BAD_SIZE;
        snprintf(e->why, sizeof e->why, "resize: %s", dpt_error_get());
    }
done:
    if (f)
        fclose(f);
    dpt_free(buf);
    dpt_free(rgb);
}

/* --- split, statistics, shards ------------------------------------------------------------- */

/* Per class: shuffle its usable entries (path order) with Philox keyed by (seed, class) and send
 * the first round(n * fraction) to val, keeping at least one in train. */
static void split_classes(entry_t *e, const int *todo, int n_todo, int n_classes,
                          double fraction, uint64_t seed, int *members)
{
    for (int k = 0; k < n_classes; k++) {
        int n = 0;
        for (int i = 0; i < n_todo; i++)
            if (e[todo[i]].bad < 0 && e[todo[i]].label == k)
                members[n++] = todo[i];
        dpt_rng_t rng;
        dpt_rng_init(&rng, seed, SPLIT_STREAM | (uint64_t)k);
        for (int i = n - 1; i > 0; i--) {
            int r = (int)dpt_rng_below(&rng, (uint32_t)i + 1), t = members[i];
            members[i] = members[r];
            members[r] = t;
        }
        int n_val = (int)floor(n * fraction + 0.5);
        if (n_val > n - 1)
            n_val = n > 0 ? n - 1 : 0;
        for (int i = 0; i < n; i++)
            e[members[i]].split = i < n_val ? DPT_SHARD_VAL : DPT_SHARD_TRAIN;
    }
}

/* Per-channel mean/std over the train records (HWC), in [0, 1] units. */
static void train_stats(const entry_t *e, const int *todo, int n_todo, const uint8_t *pixels,
                        int size, float mean[3], float std[3])
{
    uint64_t hist[3][256];
    memset(hist, 0, sizeof hist);
    size_t hw = (size_t)size * size;
    for (int i = 0; i < n_todo; i++) {
        if (e[todo[i]].bad >= 0 || e[todo[i]].split != DPT_SHARD_TRAIN)
            continue;
        const uint8_t *p = pixels + (size_t)i * hw * 3;
        for (size_t q = 0; q < hw; q++)
            for (int c = 0; c < 3; c++)
                hist[c][p[3 * q + (size_t)c]]++;
    }
    for (int c = 0; c < 3; c++) {
        double count = 0, sum = 0, sumsq = 0;
        for (int v = 0; v < 256; v++) {
            count += (double)hist[c][v];
            sum += (double)hist[c][v] * v;
            sumsq += (double)hist[c][v] * v * v;
        }
        double m = count > 0 ? sum / count / 255.0 : 0.5;
        double var = count > 0 ? sumsq / count / (255.0 * 255.0) - m * m : 0.0;
        double sd = var > 0 ? sqrt(var) : 0.0;
        mean[c] = (float)m;
        std[c] = sd > 1e-6 ? (float)sd : 1.0f;   /* constant images: never divide by 0 */
    }
}

/* Delete shard-<i>.dps for i >= count left by an earlier, larger run. */
static void remove_stale_shards(const char *dir, int count)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int idx = -1, len = 0;
        if (sscanf(de->d_name, "shard-%d.dps%n", &idx, &len) == 1 &&
            len == (int)strlen(de->d_name) && idx >= count) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            unlink(path);
        }
    }
    closedir(d);
}

/* Write the records of one split (usable entries with that split, in path order) as shards
 * starting at *shard_index. */
static dpt_status_t write_split(const dpt_prepare_config_t *cfg, dpt_shard_meta_t *meta,
                                const entry_t *e, const int *todo, int n_todo,
                                const uint8_t *pixels, int split, int shard_records,
                                int *shard_index, dpt_shard_record_t *recs, const uint8_t **px)
{
    size_t rec_px = (size_t)cfg->size * cfg->size * 3;
    int n = 0;
    for (int i = 0; i <= n_todo; i++) {
        if (i < n_todo && (e[todo[i]].bad >= 0 || e[todo[i]].split != split))
            continue;
        if (i < n_todo) {
            recs[n] = (dpt_shard_record_t){.label = (uint32_t)e[todo[i]].label,
                                           .source_index = (uint32_t)todo[i],
                                           .source_hash = dpt_shard_hash(e[todo[i]].rel)};
            px[n++] = pixels + (size_t)i * rec_px;
        }
        if (n == shard_records || (i == n_todo && n > 0)) {
            char path[4096];
            snprintf(path, sizeof path, "%s/shard-%05d.dps", cfg->output_dir, *shard_index);
            meta->shard_index = (uint32_t)(*shard_index)++;
            meta->split = (uint32_t)split;
            DPT_CHECK(dpt_shard_write(path, meta, recs, px, n, cfg->threads));
            n = 0;
        }
    }
    return DPT_OK;
}

static void print_summary(const dpt_prepare_config_t *cfg, const dpt_prepare_result_t *r,
                          const dpt_shard_meta_t *meta, const entry_t *e, int n)
{
    if (!cfg->out)
        return;
    fprintf(cfg->out, "prepared %d images (train %d, val %d), skipped %d bad", r->prepared,
            r->train, r->val, r->bad);
    const char *sep = ": ";
    for (int b = 0; b < DPT_PREP_BAD_N; b++)
        if (r->bad_by[b]) {
            fprintf(cfg->out, "%s%d %s", sep, r->bad_by[b], bad_names[b]);
            sep = ", ";
        }
    fprintf(cfg->out, "\n  classes:");
    for (int k = 0; k < meta->n_classes; k++) {
        int t = 0, v = 0;
        for (int i = 0; i < n; i++)
            if (e[i].bad < 0 && e[i].label == k)
                *(e[i].split == DPT_SHARD_VAL ? &v : &t) += 1;
        fprintf(cfg->out, "%s %s (train %d, val %d)", k ? "," : "", meta->classes[k], t, v);
    }
    fprintf(cfg->out, "\n  %d x %d RGB (%s), mean %.4f %.4f %.4f, std %.4f %.4f %.4f\n"
            "  %d shard%s in %s", cfg->size, cfg->size, dpt__prep_resize_name(cfg->resize),
            (double)meta->mean[0], (double)meta->mean[1], (double)meta->mean[2],
            (double)meta->std[0], (double)meta->std[1], (double)meta->std[2], r->shards,
            r->shards == 1 ? "" : "s", cfg->output_dir);
    if (r->ignored)
        fprintf(cfg->out, " (ignored %d other file%s)", r->ignored, r->ignored == 1 ? "" : "s");
    fprintf(cfg->out, "\n");
    fflush(cfg->out);
}

dpt_status_t dpt_prepare(const dpt_prepare_config_t *cfg, dpt_prepare_result_t *res)
{
    if (!cfg || !res)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "dpt_prepare: NULL argument");
    memset(res, 0, sizeof *res);
    DPT_CHECK(dpt_prepare_check(cfg));
    struct stat sb;
    if (stat(cfg->input_dir, &sb) != 0)
        return dpt_error_set(DPT_ERR_IO, "--input %s: %s", cfg->input_dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return dpt_error_set(DPT_ERR_IO, "--input %s: not a directory", cfg->input_dir);
    if (stat(cfg->output_dir, &sb) == 0 && !S_ISDIR(sb.st_mode))
        return dpt_error_set(DPT_ERR_IO, "--output %s: exists and is not a directory",
                             cfg->output_dir);

    scan_t s = {.root = cfg->input_dir};
    dpt_shard_meta_t *meta = dpt_calloc(sizeof *meta);
    text_t body = {0}, manifest = {0};
    decode_job_t j = {.cfg = cfg};
    dpt_shard_record_t *recs = NULL;
    const uint8_t **px = NULL;
    int *members = NULL;    /* (n_todo) scratch of the split draw */
    int workers = 0, n_todo = 0;
    dpt_status_t st = DPT_OK;
    if (!meta) {
        st = dpt_error_set(DPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    DPT_CHECK_GOTO(dpt__prep_scan_dir(&s, NULL), st, done);
    if (s.n == 0) {
        st = dpt_error_set(DPT_ERR_FORMAT, "--input %s: no .jpg/.jpeg files (expected cat.0.jpg "
                           "... or class folders such as Cat/ and Dog/)", cfg->input_dir);
        goto done;
    }
    qsort(s.e, (size_t)s.n, sizeof *s.e, dpt__prep_cmp_entry);
    DPT_CHECK_GOTO(dpt__prep_assign_classes(&s, meta), st, done);
    if (meta->n_classes < 2) {
        st = dpt_error_set(DPT_ERR_FORMAT, "--input %s: found %d class%s%s%s; need at least 2 "
                           "(cat.N.jpg and dog.N.jpg files, or one folder per class)",
                           cfg->input_dir, meta->n_classes, meta->n_classes == 1 ? " '" : "es",
                           meta->n_classes == 1 ? meta->classes[0] : "",
                           meta->n_classes == 1 ? "'" : "");
        goto done;
    }

    const size_t rec_px = (size_t)cfg->size * cfg->size * 3;
    int shard_records = cfg->shard_records ? cfg->shard_records
                                           : (int)(SHARD_TARGET_BYTES / rec_px + 1);
    int chunk_records = cfg->chunk_records ? cfg->chunk_records
                                           : (int)(CHUNK_TARGET_BYTES / rec_px + 1);
    dpt__prep_manifest_body(&body, cfg, &s, shard_records, chunk_records);
    if (body.oom) {
        st = dpt_error_set(DPT_ERR_NOMEM, "out of memory for the manifest");
        goto done;
    }
    meta->dataset_id = dpt_shard_hash(body.p);
    if (!cfg->force && dpt__prep_up_to_date(cfg->output_dir, &body, meta->dataset_id, res)) {
        if (cfg->out) {
            fprintf(cfg->out, "%s is up to date with %s (%d images: train %d, val %d; %d shards);"
                    " nothing to do (--force rebuilds)\n", cfg->output_dir, cfg->input_dir,
                    res->prepared, res->train, res->val, res->shards);
            fflush(cfg->out);
        }
        res->up_to_date = 1;
        goto done;
    }

    /* Decode every labeled file into its own slot. */
    j.e = s.e;
    j.todo = dpt_malloc((size_t)s.n * sizeof *j.todo);
    if (!j.todo) {
        st = dpt_error_set(DPT_ERR_NOMEM, "out of memory for %d files", s.n);
        goto done;
    }
    for (int i = 0; i < s.n; i++)
        if (s.e[i].bad < 0)
            j.todo[n_todo++] = i;
    if ((uint64_t)n_todo * rec_px > MAX_BYTES) {
        st = dpt_error_set(DPT_ERR_INVALID_ARG, "%d images of %dx%d would need %" PRIu64 " bytes "
                           "in memory (limit %" PRIu64 "); use a smaller --size", n_todo,
                           cfg->size, cfg->size, (uint64_t)n_todo * rec_px, MAX_BYTES);
        goto done;
    }
    j.pixels = dpt_malloc((size_t)n_todo * rec_px + 1);
    workers = dpt__parallel_workers(cfg->threads, n_todo);
    j.tj = dpt_calloc((size_t)workers * sizeof *j.tj);
    recs = dpt_malloc((size_t)(n_todo + 1) * sizeof *recs);
    px = dpt_malloc((size_t)(n_todo + 1) * sizeof *px);
    members = dpt_malloc((size_t)(n_todo + 1) * sizeof *members);
    int ok = j.pixels && j.tj && recs && px && members;
    for (int w = 0; ok && w < workers; w++)
        ok = (j.tj[w] = tjInitDecompress()) != NULL;
    if (!ok) {
        st = dpt_error_set(DPT_ERR_NOMEM, "out of memory for %d decoded images of %dx%d", n_todo,
                           cfg->size, cfg->size);
        goto done;
    }
    if (cfg->out) {
        fprintf(cfg->out, "decoding %d JPEG files from %s on %d thread%s\n", n_todo,
                cfg->input_dir, workers, workers == 1 ? "" : "s");
        fflush(cfg->out);
    }
    dpt__parallel_for(n_todo, workers, decode_one, &j);

    /* Report, in path order, then split and count. */
    res->files = s.n;
    res->ignored = s.ignored;
    res->n_classes = meta->n_classes;
    for (int i = 0; i < s.n; i++)
        if (s.e[i].bad >= 0) {
            res->bad++;
            res->bad_by[s.e[i].bad]++;
            if (cfg->err)
                fprintf(cfg->err, "dptrain prepare: skipped %s/%s: %s\n", cfg->input_dir,
                        s.e[i].rel, s.e[i].why);
        }
    if (cfg->err)
        fflush(cfg->err);
    split_classes(s.e, j.todo, n_todo, meta->n_classes, cfg->val_fraction, cfg->seed, members);
    for (int i = 0; i < n_todo; i++)
        if (s.e[j.todo[i]].bad < 0)
            *(s.e[j.todo[i]].split == DPT_SHARD_VAL ? &res->val : &res->train) += 1;
    res->prepared = res->train + res->val;
    if (res->train == 0) {
        st = dpt_error_set(DPT_ERR_FORMAT, "--input %s: none of the %d JPEG files could be used",
                           cfg->input_dir, s.n);
        goto done;
    }
    train_stats(s.e, j.todo, n_todo, j.pixels, cfg->size, meta->mean, meta->std);

    /* Shards: train first, then val. */
    res->shards = (res->train + shard_records - 1) / shard_records +
                  (res->val + shard_records - 1) / shard_records;
    meta->shard_count = (uint32_t)res->shards;
    meta->h = meta->w = cfg->size;
    meta->c = 3;
    meta->chunk_records = chunk_records;
    if (dpt__make_dirs(cfg->output_dir) != DPT_OK) {
        st = dpt_error_prefix(DPT_ERR_IO, "--output ");
        goto done;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/" MANIFEST_NAME, cfg->output_dir);
    if (unlink(path) != 0 && errno != ENOENT) {
        st = dpt_error_set(DPT_ERR_IO, "%s: cannot remove the old manifest: %s", path,
                           strerror(errno));
        goto done;
    }
    int shard_index = 0;
    DPT_CHECK_GOTO(write_split(cfg, meta, s.e, j.todo, n_todo, j.pixels, DPT_SHARD_TRAIN,
                               shard_records, &shard_index, recs, px), st, done);
    DPT_CHECK_GOTO(write_split(cfg, meta, s.e, j.todo, n_todo, j.pixels, DPT_SHARD_VAL,
                               shard_records, &shard_index, recs, px), st, done);
    remove_stale_shards(cfg->output_dir, shard_index);

    /* Manifest last: MAGIC, options, result, files (the body with the result line inserted). */
    const char *files = strstr(body.p, "\nfile ");
    size_t head = files ? (size_t)(files + 1 - body.p) : body.n;
    dpt__prep_printf(&manifest, "%.*s", (int)head, body.p);
    dpt__prep_printf(&manifest, "result files=%d ignored=%d prepared=%d train=%d val=%d bad=%d "
                     "classes=%d shards=%d\n", res->files, res->ignored, res->prepared, res->train,
                     res->val, res->bad, res->n_classes, res->shards);
    dpt__prep_printf(&manifest, "%s", body.p + head);
    if (manifest.oom) {
        st = dpt_error_set(DPT_ERR_NOMEM, "out of memory for the manifest");
        goto done;
    }
    const void *part = manifest.p;
    DPT_CHECK_GOTO(dpt__write_atomic(path, 1, &part, &manifest.n), st, done);
    print_summary(cfg, res, meta, s.e, s.n);
done:
    for (int w = 0; w < workers; w++)
        if (j.tj && j.tj[w])
            tjDestroy(j.tj[w]);
    dpt_free(j.tj);
    dpt_free(j.todo);
    dpt_free(j.pixels);
    dpt_free(recs);
    dpt_free(px);
    dpt_free(members);
    dpt_free(body.p);
    dpt_free(manifest.p);
    for (int i = 0; i < s.n; i++)
        free(s.e[i].rel);
    dpt_free(s.e);
    dpt_free(meta);
    return st;
}
