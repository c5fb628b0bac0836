/* fmt_shard.c: reading shards. dpt__dataset_open_shards reads the shards of a prepared folder
 * into the in-memory uint8 NCHW dataset that the loader batches ("shards:DIR" in
 * dpt_dataset_open); the writer is shard_write.c. The byte layout lives in shard_format.h and is
 * documented in docs/formats.md; integers are little-endian whatever the host, floats IEEE-754
 * binary32.
 *
 *   shard file = header | chunk 0 | chunk 1 | ...      (chunks are zstd frames)
 *   header     = 128 fixed bytes | K class names x 32 | M index entries x 32 | CRC32 of the rest
 *   chunk      = zstd( record | record | ... )          record = 24-byte record header | H*W*C
 *
 * Reading validates the fixed header, its CRC, every index entry (contiguous chunks that add up
 * to the file size and the record count), each chunk's CRC and decompressed size, and each
 * record's label and pixel CRC. Chunks are decompressed in parallel, each straight into its
 * records' final place in the dataset, converting HWC to CHW on the way. */
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

/* --- reading --------------------------------------------------------------------------------- */

typedef struct chunk_entry {
    uint64_t offset, nbytes;
    uint32_t first, count, crc;
} chunk_entry_t;

typedef struct shard_file {
    char path[4096];
    int fd;
    dpt_shard_meta_t meta;
    int n_records, n_chunks;
    chunk_entry_t *chunks;    /* (n_chunks) */
} shard_file_t;

static void shard_close(shard_file_t *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    dpt_free(s->chunks);
    s->chunks = NULL;
}

static dpt_status_t read_at(const shard_file_t *s, void *buf, size_t n, uint64_t off)
{
    uint8_t *b = buf;
    while (n > 0) {
        ssize_t r = pread(s->fd, b, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return dpt_error_set(DPT_ERR_IO, "%s: read error: %s", s->path, strerror(errno));
        if (r == 0)
            return dpt_error_set(DPT_ERR_FORMAT, "%s: unexpected end of file at byte %" PRIu64
                                 " (truncated?)", s->path, off);
        b += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return DPT_OK;
}

/* Everything after the header CRC matched: fields in range and chunks that tile the file. */
static dpt_status_t parse_header(shard_file_t *s, const uint8_t *hdr, uint64_t hdr_n,
                                 uint64_t file_nbytes)
{
    dpt_shard_meta_t *m = &s->meta;
    const char *path = s->path;
    m->dataset_id = get64(hdr + H_DATASET_ID);
    m->shard_index = get32(hdr + H_SHARD_INDEX);
    m->shard_count = get32(hdr + H_SHARD_COUNT);
    m->split = get32(hdr + H_SPLIT);
    uint32_t n = get32(hdr + H_N_RECORDS), h = get32(hdr + H_HEIGHT), w = get32(hdr + H_WIDTH);
    uint32_t c = get32(hdr + H_CHANNELS), per = get32(hdr + H_CHUNK_RECORDS);
    if (h < 1 || h > DPT_SHARD_MAX_SIDE || w < 1 || w > DPT_SHARD_MAX_SIDE || c < 1 || c > 3 ||
        n < 1 || n > DPT__DATA_MAX_IMAGES || per < 1 || m->split > DPT_SHARD_VAL ||
        m->shard_count < 1 || m->shard_count > MAX_SHARDS || m->shard_index >= m->shard_count)
        return dpt_error_set(DPT_ERR_FORMAT, "%s: header fields out of range (%u records of "
                             "%ux%ux%u, %u per chunk, split %u, shard %u of %u)", path, n, h, w,
                             c, per, m->split, m->shard_index, m->shard_count);
    m->h = (int)h;
    m->w = (int)w;
    m->c = (int)c;
    m->chunk_records = (int)per;
    s->n_records = (int)n;
    for (int i = 0; i < 3; i++) {
        m->mean[i] = getf(hdr + H_MEAN + 4 * i);
        m->std[i] = getf(hdr + H_STD + 4 * i);
        if (!(m->mean[i] >= 0.0f && m->mean[i] <= 1.0f && m->std[i] > 0.0f && m->std[i] <= 1.0f))
            return dpt_error_set(DPT_ERR_FORMAT, "%s: channel %d statistics out of range "
                                 "(mean %g, std %g)", path, i, (double)m->mean[i],
                                 (double)m->std[i]);
    }
    for (int k = 0; k < m->n_classes; k++) {
        memcpy(m->classes[k], hdr + HDR_FIXED + (size_t)k * DPT_SHARD_CLASS_NAME,
               DPT_SHARD_CLASS_NAME);
        if (!m->classes[k][0] || m->classes[k][DPT_SHARD_CLASS_NAME - 1] != '\0')
            return dpt_error_set(DPT_ERR_FORMAT, "%s: class %d has an empty or unterminated "
                                 "name", path, k);
    }
    if ((uint64_t)s->n_chunks != ((uint64_t)n + per - 1) / per)
        return dpt_error_set(DPT_ERR_FORMAT, "%s: %d chunks cannot hold %u records of %u per "
                             "chunk", path, s->n_chunks, n, per);
    s->chunks = dpt_calloc((size_t)s->n_chunks * sizeof *s->chunks);
    if (!s->chunks)
        return dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory for the chunk index", path);
    size_t record_nbytes = REC_HDR + (size_t)h * w * c;
    uint64_t offset = hdr_n;
    const uint8_t *e = hdr + HDR_FIXED + (size_t)m->n_classes * DPT_SHARD_CLASS_NAME;
    for (int i = 0; i < s->n_chunks; i++, e += INDEX_ENTRY) {
        chunk_entry_t *ce = &s->chunks[i];
        ce->offset = get64(e + I_OFFSET);
        ce->nbytes = get64(e + I_NBYTES);
        ce->first = get32(e + I_FIRST);
        ce->count = get32(e + I_COUNT);
        ce->crc = get32(e + I_CRC);
        uint32_t want_first = (uint32_t)i * per;
        uint32_t want_count = n - want_first < per ? n - want_first : per;
        if (ce->offset != offset || ce->first != want_first || ce->count != want_count ||
            ce->nbytes == 0 || ce->nbytes > ZSTD_compressBound(want_count * record_nbytes) ||
            ce->nbytes > file_nbytes - offset)
            return dpt_error_set(DPT_ERR_FORMAT, "%s: chunk %d index entry is inconsistent "
                                 "(offset %" PRIu64 ", %" PRIu64 " bytes, records %u+%u)", path,
                                 i, ce->offset, ce->nbytes, ce->first, ce->count);
        offset += ce->nbytes;
    }
    if (offset != file_nbytes)
        return dpt_error_set(DPT_ERR_FORMAT, "%s: chunks end at byte %" PRIu64 " but the file "
                             "has %" PRIu64, path, offset, file_nbytes);
    return DPT_OK;
}

/* Open one shard and validate its header and index (the chunks are read later). */
static dpt_status_t shard_open(const char *path, shard_file_t *s)
{
    memset(s, 0, sizeof *s);
    s->fd = -1;
    snprintf(s->path, sizeof s->path, "%s", path);
    s->fd = open(path, O_RDONLY);
    if (s->fd < 0)
        return dpt_error_set(DPT_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(s->fd, &sb) != 0)
        return dpt_error_set(DPT_ERR_IO, "%s: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return dpt_error_set(DPT_ERR_IO, "%s: not a regular file", path);
    uint64_t size = (uint64_t)sb.st_size;
    uint8_t fixed[HDR_FIXED];
    if (size < HDR_FIXED)
        return dpt_error_set(DPT_ERR_FORMAT, "%s: %" PRIu64 " bytes, shorter than the %d-byte "
                             "shard header (truncated?)", path, size, HDR_FIXED);
    DPT_CHECK(read_at(s, fixed, HDR_FIXED, 0));
    if (memcmp(fixed + H_MAGIC, SHARD_MAGIC, 8) != 0)
        return dpt_error_set(DPT_ERR_FORMAT, "%s: bad magic (not a dptrain shard file)", path);
    uint32_t version = get32(fixed + H_VERSION);
    if (version != DPT_SHARD_VERSION)
        return dpt_error_set(DPT_ERR_FORMAT, "%s: shard version %u, this build reads version %d "
                             "(re-run dptrain prepare --force)", path, version,
                             DPT_SHARD_VERSION);
    uint32_t k = get32(fixed + H_N_CLASSES), m = get32(fixed + H_N_CHUNKS);
    uint64_t hdr_n = get32(fixed + H_HEADER_NBYTES), file_n = get64(fixed + H_FILE_NBYTES);
    if (k < 1 || k > DPT_SHARD_MAX_CLASSES || m < 1 || m > MAX_CHUNKS ||
        hdr_n != header_nbytes((int)k, (int)m))
        return dpt_error_set(DPT_ERR_FORMAT, "%s: corrupt header (%u classes, %u chunks, header "
                             "size %" PRIu64 ")", path, k, m, hdr_n);
    if (file_n != size)
        return dpt_error_set(DPT_ERR_FORMAT, "%s: file is %" PRIu64 " bytes but its header says "
                             "%" PRIu64 " (truncated or corrupt)", path, size, file_n);
    if (hdr_n > size)
        return dpt_error_set(DPT_ERR_FORMAT, "%s: header of %" PRIu64 " bytes runs past the end "
                             "of the %" PRIu64 "-byte file", path, hdr_n, size);
    uint8_t *hdr = dpt_malloc(hdr_n);
    if (!hdr)
        return dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory for the header", path);
    dpt_status_t st = read_at(s, hdr, hdr_n, 0);
    if (st == DPT_OK && get32(hdr + hdr_n - 4) != dpt__crc32(0, hdr, hdr_n - 4))
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: header checksum mismatch (corrupt header)", path);
    if (st == DPT_OK) {
        s->meta.n_classes = (int)k;
        s->n_chunks = (int)m;
        st = parse_header(s, hdr, hdr_n, size);
    }
    dpt_free(hdr);
    return st;
}

dpt_status_t dpt_shard_read_meta(const char *path, dpt_shard_meta_t *meta, int *n_records)
{
    if (!path || !meta || !n_records)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "dpt_shard_read_meta: NULL argument");
    shard_file_t *s = dpt_malloc(sizeof *s);
    if (!s)
        return dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory", path);
    dpt_status_t st = shard_open(path, s);
    if (st == DPT_OK) {
        *meta = s->meta;
        *n_records = s->n_records;
    }
    shard_close(s);
    dpt_free(s);
    return st;
}

/* --- the "shards:DIR" dataset ---------------------------------------------------------------- */

typedef struct read_task {
    const shard_file_t *shard;
    int chunk;
    int first;               /* dataset index of the chunk's first record */
} read_task_t;

typedef struct read_job {
    read_task_t *tasks;
    dpt_dataset_t *ds;
    size_t record_nbytes;
    uint8_t **z, **raw;      /* (workers) scratch for the largest chunk */
    ZSTD_DCtx **dctx;        /* (workers) */
    dpt_status_t *st;        /* (tasks) */
    char (*msg)[512];        /* (tasks) the message of a failed task */
} read_job_t;

static dpt_status_t read_chunk(read_job_t *j, const read_task_t *t, int worker)
{
    const shard_file_t *s = t->shard;
    const chunk_entry_t *ce = &s->chunks[t->chunk];
    DPT_CHECK(read_at(s, j->z[worker], ce->nbytes, ce->offset));
    if (dpt__crc32(0, j->z[worker], ce->nbytes) != ce->crc)
        return dpt_error_set(DPT_ERR_FORMAT, "%s: chunk %d (records %u..%u): checksum mismatch "
                             "(corrupt data)", s->path, t->chunk, ce->first,
                             ce->first + ce->count - 1);
    size_t raw_n = (size_t)ce->count * j->record_nbytes;
    size_t got = ZSTD_decompressDCtx(j->dctx[worker], j->raw[worker], raw_n, j->z[worker],
                                     ce->nbytes);
    if (ZSTD_isError(got) || got != raw_n)
        return dpt_error_set(DPT_ERR_FORMAT, "%s: chunk %d (records %u..%u): %s", s->path,
                             t->chunk, ce->first, ce->first + ce->count - 1,
                             ZSTD_isError(got) ? ZSTD_getErrorName(got)
                                               : "wrong decompressed size");
    const dpt_dataset_t *ds = j->ds;
    const size_t hw = (size_t)ds->h * ds->w, pixel_nbytes = hw * ds->c;
    for (uint32_t r = 0; r < ce->count; r++) {
        const uint8_t *p = j->raw[worker] + (size_t)r * j->record_nbytes;
        uint32_t label = get32(p + R_LABEL);
        if (label >= (uint32_t)ds->n_classes)
            return dpt_error_set(DPT_ERR_FORMAT, "%s: record %u: label %u out of range [0, %d)",
                                 s->path, ce->first + r, label, ds->n_classes);
        if (dpt__crc32(0, p + REC_HDR, pixel_nbytes) != get32(p + R_PIXEL_CRC))
            return dpt_error_set(DPT_ERR_FORMAT, "%s: record %u: pixel checksum mismatch",
                                 s->path, ce->first + r);
        size_t i = (size_t)t->first + r;
        ds->labels[i] = (int32_t)label;
        uint8_t *dst = ds->images + i * pixel_nbytes;
        const uint8_t *src = p + REC_HDR;
        for (size_t q = 0; q < hw; q++)     /* HWC -> CHW */
            for (int c = 0; c < ds->c; c++)
                dst[(size_t)c * hw + q] = src[q * (size_t)ds->c + (size_t)c];
    }
    return DPT_OK;
}

static void read_chunk_job(void *ctx, int task, int worker)
{
    read_job_t *j = ctx;
    j->st[task] = read_chunk(j, &j->tasks[task], worker);
    if (j->st[task] != DPT_OK)
        snprintf(j->msg[task], sizeof j->msg[task], "%s", dpt_error_get());
}

/* The dataset-wide fields every shard must repeat exactly. */
static dpt_status_t check_same_dataset(const shard_file_t *s, const shard_file_t *s0,
                                       uint32_t index)
{
    const dpt_shard_meta_t *a = &s->meta, *b = &s0->meta;
    if (a->shard_index != index)
        return dpt_error_set(DPT_ERR_FORMAT, "%s: header says shard %u, the file name says %u",
                             s->path, a->shard_index, index);
    if (a->dataset_id != b->dataset_id || a->shard_count != b->shard_count || a->h != b->h ||
        a->w != b->w || a->c != b->c || a->n_classes != b->n_classes ||
        memcmp(a->classes, b->classes, sizeof a->classes) != 0 ||
        memcmp(a->mean, b->mean, sizeof a->mean) != 0 || memcmp(a->std, b->std, sizeof a->std))
        return dpt_error_set(DPT_ERR_FORMAT, "%s: belongs to another prepare run than %s "
                             "(dataset id, shape, classes or statistics differ)", s->path,
                             s0->path);
    return DPT_OK;
}

dpt_status_t dpt__dataset_open_shards(const char *dir, int train, dpt_dataset_t **out)
{
    *out = NULL;
    uint32_t want = train ? DPT_SHARD_TRAIN : DPT_SHARD_VAL;
    const char *split_name = train ? "train" : "val";
    char path[4096];
    if (snprintf(path, sizeof path, "%s/shard-00000.dps", dir) >= (int)sizeof path)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "%s: directory name too long", dir);
    shard_file_t first;
    dpt_status_t st = shard_open(path, &first);
    if (st != DPT_OK) {
        shard_close(&first);
        return st;
    }
    int count = (int)first.meta.shard_count;
    shard_file_t *shards = dpt_calloc((size_t)count * sizeof *shards);
    read_job_t j = {0};
    int n_tasks = 0, workers = 0;
    if (!shards) {
        shard_close(&first);
        return dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory for %d shards", dir, count);
    }
    for (int i = 0; i < count; i++)
        shards[i].fd = -1;
    shards[0] = first;
    int64_t total = 0;
    uint64_t max_chunk = 0, max_count = 0;
    for (int i = 0; i < count; i++) {
        if (i > 0) {
            snprintf(path, sizeof path, "%s/shard-%05d.dps", dir, i);
            DPT_CHECK_GOTO(shard_open(path, &shards[i]), st, done);
            DPT_CHECK_GOTO(check_same_dataset(&shards[i], &shards[0], (uint32_t)i), st, done);
        }
        if (shards[i].meta.split != want)
            continue;
        total += shards[i].n_records;
        n_tasks += shards[i].n_chunks;
        for (int c = 0; c < shards[i].n_chunks; c++) {
            if (shards[i].chunks[c].nbytes > max_chunk)
                max_chunk = shards[i].chunks[c].nbytes;
            if (shards[i].chunks[c].count > max_count)
                max_count = shards[i].chunks[c].count;
        }
    }
    const dpt_shard_meta_t *m = &shards[0].meta;
    if (total == 0) {
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: no %s records in the %d shards (prepared with "
                           "--val-fraction 0?)", dir, split_name, count);
        goto done;
    }
    if (total > DPT__DATA_MAX_IMAGES ||
        (uint64_t)total * (uint64_t)m->h * m->w * m->c > DPT__DATA_MAX_BYTES) {
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: %" PRId64 " %s records of %dx%dx%d are more "
                           "than the reader accepts", dir, total, split_name, m->h, m->w, m->c);
        goto done;
    }
    DPT_CHECK_GOTO(dpt__dataset_alloc((int)total, m->c, m->h, m->w, m->n_classes, dir, out), st,
                   done);
    j.ds = *out;
    j.record_nbytes = REC_HDR + (size_t)m->h * m->w * m->c;
    workers = dpt__parallel_workers(0, n_tasks);
    j.tasks = dpt_calloc((size_t)n_tasks * sizeof *j.tasks);
    j.st = dpt_calloc((size_t)n_tasks * sizeof *j.st);
    j.msg = dpt_calloc((size_t)n_tasks * sizeof *j.msg);
    j.z = dpt_calloc((size_t)workers * sizeof *j.z);
    j.raw = dpt_calloc((size_t)workers * sizeof *j.raw);
    j.dctx = dpt_calloc((size_t)workers * sizeof *j.dctx);
    int ok = j.tasks && j.st && j.msg && j.z && j.raw && j.dctx;
    for (int w = 0; ok && w < workers; w++) {
        j.z[w] = dpt_malloc(max_chunk);
        j.raw[w] = dpt_malloc((size_t)max_count * j.record_nbytes);
        j.dctx[w] = ZSTD_createDCtx();
        ok = j.z[w] && j.raw[w] && j.dctx[w];
    }
    if (!ok) {
        st = dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory for the shard reader", dir);
        goto done;
    }
    int t = 0, next = 0;
    for (int i = 0; i < count; i++) {
        if (shards[i].meta.split != want)
            continue;
        for (int c = 0; c < shards[i].n_chunks; c++)
            j.tasks[t++] = (read_task_t){.shard = &shards[i], .chunk = c,
                                         .first = next + (int)shards[i].chunks[c].first};
        next += shards[i].n_records;
    }
    dpt__parallel_for(n_tasks, workers, read_chunk_job, &j);
    for (int i = 0; i < n_tasks; i++)   /* the first failing chunk, whatever the thread timing */
        if (j.st[i] != DPT_OK) {
            st = dpt_error_set(j.st[i], "%s", j.msg[i]);
            goto done;
        }
    dpt_dataset_t *ds = *out;
    memcpy(ds->mean, m->mean, sizeof ds->mean);
    memcpy(ds->std, m->std, sizeof ds->std);
    snprintf(ds->name, sizeof ds->name, "shards/%s", split_name);
done:
    for (int w = 0; w < workers; w++) {
        if (j.z)
            dpt_free(j.z[w]);
        if (j.raw)
            dpt_free(j.raw[w]);
        if (j.dctx)
            ZSTD_freeDCtx(j.dctx[w]);
    }
    dpt_free(j.z);
    dpt_free(j.raw);
    dpt_free(j.dctx);
    dpt_free(j.tasks);
    dpt_free(j.st);
    dpt_free(j.msg);
    for (int i = 0; i < count; i++)
        shard_close(&shards[i]);
    dpt_free(shards);
    if (st != DPT_OK) {
        dpt_dataset_destroy(*out);
        *out = NULL;
    }
    return st;
}
