/* shard_write.c: dpt_shard_write packs the records `dptrain prepare` (src/prep/) made into one
 * shard file (layout in shard_format.h and docs/formats.md): chunks compressed in parallel,
 * the header and index after them, written atomically. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "core/internal.h"
#include "data/internal.h"
#include "data/shard_format.h"
#include "dptrain/alloc.h"
#include "dptrain/dataset.h"
#include "dptrain/shard.h"

uint64_t dpt_shard_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;   /* FNV-1a 64 */
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

typedef struct write_job {
    const dpt_shard_meta_t *meta;
    const dpt_shard_record_t *recs;
    const uint8_t *const *pixels;
    int n, n_chunks;
    size_t pixel_nbytes, record_nbytes;
    uint8_t **raw;          /* (workers) one raw chunk buffer each */
    ZSTD_CCtx **cctx;       /* (workers) */
    uint8_t **z;            /* (n_chunks) compressed chunks */
    size_t *z_nbytes;       /* (n_chunks) 0 = failed */
} write_job_t;

static void compress_chunk(void *ctx, int chunk, int worker)
{
    write_job_t *j = ctx;
    int first = chunk * j->meta->chunk_records;
    int count = j->n - first < j->meta->chunk_records ? j->n - first : j->meta->chunk_records;
    uint8_t *raw = j->raw[worker];
    for (int r = 0; r < count; r++) {
        const dpt_shard_record_t *rec = &j->recs[first + r];
        uint8_t *p = raw + (size_t)r * j->record_nbytes;
        memset(p, 0, REC_HDR);
        put32(p + R_LABEL, rec->label);
        put32(p + R_SOURCE_INDEX, rec->source_index);
        put64(p + R_SOURCE_HASH, rec->source_hash);
        put32(p + R_PIXEL_CRC, dpt__crc32(0, j->pixels[first + r], j->pixel_nbytes));
        memcpy(p + REC_HDR, j->pixels[first + r], j->pixel_nbytes);
    }
    size_t raw_n = (size_t)count * j->record_nbytes, cap = ZSTD_compressBound(raw_n);
    j->z[chunk] = dpt_malloc(cap);
    if (!j->z[chunk])
        return;
    size_t zn = ZSTD_compressCCtx(j->cctx[worker], j->z[chunk], cap, raw, raw_n, ZSTD_LEVEL);
    j->z_nbytes[chunk] = ZSTD_isError(zn) ? 0 : zn;
}

static dpt_status_t check_meta(const char *path, const dpt_shard_meta_t *m, int n)
{
    if (m->h < 1 || m->h > DPT_SHARD_MAX_SIDE || m->w < 1 || m->w > DPT_SHARD_MAX_SIDE ||
        m->c < 1 || m->c > 3 || m->n_classes < 1 || m->n_classes > DPT_SHARD_MAX_CLASSES ||
        m->chunk_records < 1 || n < 1 || m->split > DPT_SHARD_VAL ||
        m->shard_index >= m->shard_count)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "%s: bad shard description (%d records of "
                             "%dx%dx%d, %d classes, %d records per chunk, shard %u of %u, "
                             "split %u)", path, n, m->h, m->w, m->c, m->n_classes,
                             m->chunk_records, m->shard_index, m->shard_count, m->split);
    for (int k = 0; k < m->n_classes; k++)
        if (!m->classes[k][0] || memchr(m->classes[k], 0, DPT_SHARD_CLASS_NAME) == NULL)
            return dpt_error_set(DPT_ERR_INVALID_ARG, "%s: class %d has an empty or unterminated "
                                 "name", path, k);
    return DPT_OK;
}

dpt_status_t dpt_shard_write(const char *path, const dpt_shard_meta_t *meta,
                             const dpt_shard_record_t *recs, const uint8_t *const *pixels, int n,
                             int threads)
{
    if (!path || !meta || !recs || !pixels)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "dpt_shard_write: NULL argument");
    DPT_CHECK(check_meta(path, meta, n));
    for (int i = 0; i < n; i++)
        if (recs[i].label >= (uint32_t)meta->n_classes || !pixels[i])
            return dpt_error_set(DPT_ERR_INVALID_ARG, "%s: record %d: label %u out of range "
                                 "[0, %d) or no pixels", path, i, recs[i].label,
                                 meta->n_classes);

    int n_chunks = (n + meta->chunk_records - 1) / meta->chunk_records;
    int workers = dpt__parallel_workers(threads, n_chunks);
    write_job_t j = {.meta = meta, .recs = recs, .pixels = pixels, .n = n, .n_chunks = n_chunks};
    j.pixel_nbytes = (size_t)meta->h * meta->w * meta->c;
    j.record_nbytes = REC_HDR + j.pixel_nbytes;
    size_t hdr_n = header_nbytes(meta->n_classes, n_chunks);
    j.raw = dpt_calloc((size_t)workers * sizeof *j.raw);
    j.cctx = dpt_calloc((size_t)workers * sizeof *j.cctx);
    j.z = dpt_calloc((size_t)n_chunks * sizeof *j.z);
    j.z_nbytes = dpt_calloc((size_t)n_chunks * sizeof *j.z_nbytes);
    uint8_t *hdr = dpt_calloc(hdr_n);
    const void **parts = dpt_malloc((size_t)(n_chunks + 1) * sizeof *parts);
    size_t *lens = dpt_malloc((size_t)(n_chunks + 1) * sizeof *lens);
    dpt_status_t st = DPT_OK;
    int ok = j.raw && j.cctx && j.z && j.z_nbytes && hdr && parts && lens;
    for (int w = 0; ok && w < workers; w++) {
        j.raw[w] = dpt_malloc((size_t)meta->chunk_records * j.record_nbytes);
        j.cctx[w] = ZSTD_createCCtx();
        ok = j.raw[w] && j.cctx[w];
    }
    if (!ok) {
        st = dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory for %d chunks of %d records", path,
                           n_chunks, meta->chunk_records);
        goto done;
    }
    dpt__parallel_for(n_chunks, workers, compress_chunk, &j);

    /* Header: fixed part, class names, index, CRC. */
    uint64_t offset = hdr_n;
    uint8_t *e = hdr + HDR_FIXED + (size_t)meta->n_classes * DPT_SHARD_CLASS_NAME;
    for (int c = 0; c < n_chunks; c++, e += INDEX_ENTRY) {
        if (j.z_nbytes[c] == 0) {
            st = dpt_error_set(DPT_ERR_NOMEM, "%s: compressing chunk %d failed (out of memory?)",
                               path, c);
            goto done;
        }
        int first = c * meta->chunk_records;
        put64(e + I_OFFSET, offset);
        put64(e + I_NBYTES, j.z_nbytes[c]);
        put32(e + I_FIRST, (uint32_t)first);
        put32(e + I_COUNT, (uint32_t)(n - first < meta->chunk_records ? n - first
                                                                     : meta->chunk_records));
        put32(e + I_CRC, dpt__crc32(0, j.z[c], j.z_nbytes[c]));
        offset += j.z_nbytes[c];
        parts[c + 1] = j.z[c];
        lens[c + 1] = j.z_nbytes[c];
    }
    memcpy(hdr + H_MAGIC, SHARD_MAGIC, 8);
    put32(hdr + H_VERSION, DPT_SHARD_VERSION);
    put32(hdr + H_HEADER_NBYTES, (uint32_t)hdr_n);
    put64(hdr + H_FILE_NBYTES, offset);
    put64(hdr + H_DATASET_ID, meta->dataset_id);
    put32(hdr + H_SHARD_INDEX, meta->shard_index);
    put32(hdr + H_SHARD_COUNT, meta->shard_count);
    put32(hdr + H_SPLIT, meta->split);
    put32(hdr + H_N_RECORDS, (uint32_t)n);
    put32(hdr + H_HEIGHT, (uint32_t)meta->h);
    put32(hdr + H_WIDTH, (uint32_t)meta->w);
    put32(hdr + H_CHANNELS, (uint32_t)meta->c);
    put32(hdr + H_N_CLASSES, (uint32_t)meta->n_classes);
    put32(hdr + H_N_CHUNKS, (uint32_t)n_chunks);
    put32(hdr + H_CHUNK_RECORDS, (uint32_t)meta->chunk_records);
    for (int c = 0; c < 3; c++) {
        putf(hdr + H_MEAN + 4 * c, meta->mean[c]);
        putf(hdr + H_STD + 4 * c, meta->std[c]);
    }
    for (int k = 0; k < meta->n_classes; k++)   /* NUL-padded: the bytes after the name are 0 */
        memcpy(hdr + HDR_FIXED + (size_t)k * DPT_SHARD_CLASS_NAME, meta->classes[k],
               strlen(meta->classes[k]));
    put32(hdr + hdr_n - 4, dpt__crc32(0, hdr, hdr_n - 4));
    parts[0] = hdr;
    lens[0] = hdr_n;
    st = dpt__write_atomic(path, n_chunks + 1, parts, lens);
done:
    for (int w = 0; w < workers; w++) {
        if (j.raw)
            dpt_free(j.raw[w]);
        if (j.cctx)
            ZSTD_freeCCtx(j.cctx[w]);
    }
    for (int c = 0; j.z && c < n_chunks; c++)
        dpt_free(j.z[c]);
    dpt_free(j.raw);
    dpt_free(j.cctx);
    dpt_free(j.z);
    dpt_free(j.z_nbytes);
    dpt_free(hdr);
    dpt_free(parts);
    dpt_free(lens);
    return st;
}
