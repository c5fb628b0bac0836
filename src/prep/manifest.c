/* manifest.c: `dptrain prepare`'s manifest (OUT/manifest.txt), written last: the options, every
 * input file's size and mtime, and a result line. A re-run whose body (all but the result line)
 * is the same, with every shard it names intact, has nothing to do. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dptrain/alloc.h"
#include "dptrain/shard.h"
#include "prep/internal.h"

void dpt__prep_printf(text_t *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int len = t->oom ? 0 : vsnprintf(t->p ? t->p + t->n : NULL, t->cap - t->n, fmt, ap);
        va_end(ap);
        if (t->oom || len < 0)
            return;
        if (t->n + (size_t)len < t->cap) {
            t->n += (size_t)len;
            return;
        }
        size_t cap = 2 * (t->n + (size_t)len + 1024);
        char *p = dpt_malloc(cap);
        if (!p) {
            t->oom = 1;
            return;
        }
        if (t->n)
            memcpy(p, t->p, t->n);
        dpt_free(t->p);
        t->p = p;
        t->cap = cap;
    }
}

const char *dpt__prep_resize_name(dpt_resize_mode_t m)
{
    return m == DPT_RESIZE_WHOLE ? "whole" : "shorter-crop";
}

/* The manifest without its result line: what decides whether a re-run has anything to do. */
void dpt__prep_manifest_body(text_t *t, const dpt_prepare_config_t *cfg, const scan_t *s,
                             int shard_records, int chunk_records)
{
    dpt__prep_printf(t, MANIFEST_MAGIC);
    dpt__prep_printf(t, "options size=%d resize=%s val-fraction=%.17g seed=%" PRIu64
                     " shard-records=%d chunk-records=%d\n", cfg->size,
                     dpt__prep_resize_name(cfg->resize), cfg->val_fraction, cfg->seed,
                     shard_records, chunk_records);
    for (int i = 0; i < s->n; i++)
        dpt__prep_printf(t, "file %" PRIu64 " %" PRId64 ".%09" PRId64 " %s\n", s->e[i].size,
                         s->e[i].mtime_sec, s->e[i].mtime_nsec, s->e[i].rel);
}

/* Whole file into a NUL-terminated dpt_malloc'd buffer; NULL if missing or unreadable. */
static char *read_text(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *p = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long len = ftell(f);
        if (len >= 0 && fseek(f, 0, SEEK_SET) == 0 && (p = dpt_malloc((size_t)len + 1)) != NULL) {
            if (fread(p, 1, (size_t)len, f) == (size_t)len) {
                p[len] = '\0';
                *n = (size_t)len;
            } else {
                dpt_free(p);
                p = NULL;
            }
        }
    }
    fclose(f);
    return p;
}

/* 1 when the output folder holds a complete run of exactly this body (the result line is
 * filled into res); 0 otherwise. */
int dpt__prep_up_to_date(const char *out_dir, const text_t *body, uint64_t dataset_id,
                         dpt_prepare_result_t *res)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/" MANIFEST_NAME, out_dir);
    size_t n = 0;
    char *old = read_text(path, &n);
    if (!old)
        return 0;
    /* The old manifest is MAGIC, options, result, files; the body is the same without result. */
    char *result = strstr(old, "\nresult ");
    int same = 0;
    if (result) {
        char *end = strchr(result + 1, '\n');
        size_t head = (size_t)(result + 1 - old);
        if (end && head + strlen(end + 1) == body->n && !memcmp(old, body->p, head) &&
            !memcmp(end + 1, body->p + head, body->n - head)) {
            dpt_prepare_result_t r = {0};
            same = sscanf(result + 1, "result files=%d ignored=%d prepared=%d train=%d val=%d "
                          "bad=%d classes=%d shards=%d", &r.files, &r.ignored, &r.prepared,
                          &r.train, &r.val, &r.bad, &r.n_classes, &r.shards) == 8 &&
                   r.shards >= 1;
            for (int i = 0; same && i < r.shards; i++) {
                dpt_shard_meta_t *meta = dpt_malloc(sizeof *meta);
                int nrec = 0;
                snprintf(path, sizeof path, "%s/shard-%05d.dps", out_dir, i);
                same = meta && dpt_shard_read_meta(path, meta, &nrec) == DPT_OK &&
                       meta->dataset_id == dataset_id && meta->shard_count == (uint32_t)r.shards;
                dpt_free(meta);
            }
            if (same)
                *res = r;
        }
    }
    dpt_free(old);
    dpt_error_clear();
    return same;
}
