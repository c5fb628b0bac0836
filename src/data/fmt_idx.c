/* fmt_idx.c: reader for IDX files (MNIST, Fashion-MNIST), gzip-compressed or raw. zlib's gzread
 * inflates gzip and passes any other content through unchanged, so both are read the same way.
 * The header (magic, dims), the exact data size and the labels are validated, and every error
 * names the file, so a bad or partial download fails with a message the user can act on. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data/internal.h"
#include "dptrain/alloc.h"
#include "dptrain/dataset.h"

#define IDX_MAGIC_IMAGES 0x00000803u   /* uint8, 3 dims: N, H, W */
#define IDX_MAGIC_LABELS 0x00000801u   /* uint8, 1 dim: N */
#define IDX_N_CLASSES 10

/* One open IDX file. `raw_size` is the on-disk size when the content is not gzip (-1 otherwise),
 * which lets a truncated raw file be refused before its data buffer is allocated. */
typedef struct idx_file {
    const char *path;
    gzFile gz;
    int64_t raw_size;
} idx_file_t;

static dpt_status_t idx_open(idx_file_t *f, const char *path)
{
    f->path = path;
    f->gz = NULL;
    f->raw_size = -1;
    /* open(2) first, so a missing file reports errno exactly ("No such file or directory"). */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dpt_error_set(DPT_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return dpt_error_set(DPT_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return dpt_error_set(DPT_ERR_IO, "%s: %s", path,
                             S_ISDIR(st.st_mode) ? strerror(EISDIR) : "not a regular file");
    }
    f->gz = gzdopen(fd, "rb");
    if (!f->gz) {
        close(fd);
        return dpt_error_set(DPT_ERR_NOMEM, "%s: cannot allocate the zlib reader", path);
    }
    gzbuffer(f->gz, 1u << 17);
    f->raw_size = (int64_t)st.st_size;   /* kept only if gzdirect() says raw, see idx_header */
    return DPT_OK;
}

static void idx_close(idx_file_t *f)
{
    if (f->gz)
        gzclose(f->gz);
    f->gz = NULL;
}

/* zlib's message without its "<fd:N>: " prefix (gzdopen'ed files have no name in zlib). */
static const char *zlib_message(idx_file_t *f, int *zerr)
{
    const char *msg = gzerror(f->gz, zerr);
    const char *sep = strstr(msg, ": ");
    return strncmp(msg, "<fd:", 4) == 0 && sep ? sep + 2 : msg;
}

/* Map a short read to a status: corrupt gzip data is DPT_ERR_FORMAT; a read error or data that
 * ends early (raw file too short, or a gzip stream cut off) is DPT_ERR_IO. */
static dpt_status_t idx_short_read(idx_file_t *f, const char *what, uint64_t expected,
                                   uint64_t got)
{
    int zerr = Z_OK;
    const char *zmsg = zlib_message(f, &zerr);
    if (zerr == Z_DATA_ERROR)
        return dpt_error_set(DPT_ERR_FORMAT, "%s: corrupt gzip data (%s)", f->path, zmsg);
    if (zerr == Z_MEM_ERROR)
        return dpt_error_set(DPT_ERR_NOMEM, "%s: zlib out of memory", f->path);
    if (zerr == Z_ERRNO)
        return dpt_error_set(DPT_ERR_IO, "%s: read error: %s", f->path, strerror(errno));
    return dpt_error_set(DPT_ERR_IO, "%s: truncated: expected %" PRIu64 " %s bytes, got %" PRIu64
                         "%s%s%s", f->path, expected, what, got, zerr == Z_BUF_ERROR ? " (" : "",
                         zerr == Z_BUF_ERROR ? zmsg : "", zerr == Z_BUF_ERROR ? ")" : "");
}

/* Read exactly nbytes (in chunks: gzread takes an unsigned int length). */
static dpt_status_t idx_read(idx_file_t *f, void *buf, uint64_t nbytes, const char *what)
{
    uint64_t got = 0;
    while (got < nbytes) {
        uint64_t chunk = nbytes - got;
        if (chunk > (1u << 30))
            chunk = 1u << 30;
        int r = gzread(f->gz, (uint8_t *)buf + got, (unsigned)chunk);
        if (r <= 0)
            break;
        got += (uint64_t)r;
    }
    return got == nbytes ? DPT_OK : idx_short_read(f, what, nbytes, got);
}

/* After the data: the file must end here. Reading on also makes zlib check the gzip trailer
 * (CRC-32 and length), which catches corruption that inflated without a stream error. */
static dpt_status_t idx_expect_eof(idx_file_t *f, uint64_t data_bytes)
{
    uint8_t extra[256];
    int r = gzread(f->gz, extra, sizeof extra);
    if (r > 0)
        return dpt_error_set(DPT_ERR_FORMAT, "%s: unexpected data after the %" PRIu64
                             " bytes the header announces", f->path, data_bytes);
    int zerr = Z_OK;
    const char *zmsg = zlib_message(f, &zerr);
    if (zerr == Z_DATA_ERROR)
        return dpt_error_set(DPT_ERR_FORMAT, "%s: corrupt gzip data (%s)", f->path, zmsg);
    if (zerr == Z_BUF_ERROR)
        return dpt_error_set(DPT_ERR_IO, "%s: truncated gzip stream (%s)", f->path, zmsg);
    if (zerr != Z_OK)
        return dpt_error_set(DPT_ERR_IO, "%s: read error (%s)", f->path, zmsg);
    return DPT_OK;
}

/* Read and check the magic and the `ndims` big-endian dims of an IDX header. */
static dpt_status_t idx_header(idx_file_t *f, uint32_t magic, uint32_t *dims, int ndims)
{
    uint8_t hdr[16];
    uint64_t hdr_bytes = 4 + 4 * (uint64_t)ndims;
    const char *kind = magic == IDX_MAGIC_IMAGES ? "image" : "label";
    DPT_CHECK(idx_read(f, hdr, 4, "IDX header"));
    uint32_t got = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    if (got != magic) {
        const char *hint = got == IDX_MAGIC_LABELS ? " (this is an IDX label file)"
                           : got == IDX_MAGIC_IMAGES ? " (this is an IDX image file)" : "";
        return dpt_error_set(DPT_ERR_FORMAT, "%s: bad magic 0x%08x, expected 0x%08x for an IDX "
                             "%s file%s", f->path, got, magic, kind, hint);
    }
    DPT_CHECK(idx_read(f, hdr + 4, hdr_bytes - 4, "IDX header"));
    for (int i = 0; i < ndims; i++) {
        const uint8_t *p = hdr + 4 + 4 * i;
        dims[i] = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    }
    if (gzdirect(f->gz) != 1)
        f->raw_size = -1;
    return DPT_OK;
}

/* For raw files the size is known: refuse a short or long file before allocating its buffer. */
static dpt_status_t idx_check_raw_size(idx_file_t *f, uint64_t hdr_bytes, uint64_t data_bytes,
                                       const char *what)
{
    if (f->raw_size < 0)
        return DPT_OK;
    uint64_t have = (uint64_t)f->raw_size - hdr_bytes;
    if (have < data_bytes)
        return dpt_error_set(DPT_ERR_IO, "%s: truncated: expected %" PRIu64 " %s bytes, got %"
                             PRIu64, f->path, data_bytes, what, have);
    if (have > data_bytes)
        return dpt_error_set(DPT_ERR_FORMAT, "%s: unexpected data after the %" PRIu64
                             " bytes the header announces (file has %" PRIu64 ")", f->path,
                             data_bytes, have);
    return DPT_OK;
}

dpt_status_t dpt_dataset_load_idx(const char *images_path, const char *labels_path,
                                  dpt_dataset_t **out)
{
    if (!images_path || !labels_path || !out)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "dpt_dataset_load_idx: NULL argument");
    *out = NULL;

    dpt_status_t st = DPT_OK;
    dpt_dataset_t *ds = NULL;
    uint8_t *label_bytes = NULL;
    idx_file_t fi = {0}, fl = {0};

    /* Images: header, limits, then the pixels. */
    uint32_t idims[3] = {0, 0, 0};
    DPT_CHECK_GOTO(idx_open(&fi, images_path), st, fail);
    DPT_CHECK_GOTO(idx_header(&fi, IDX_MAGIC_IMAGES, idims, 3), st, fail);
    uint32_t n = idims[0], h = idims[1], w = idims[2];
    if (n == 0 || n > DPT__DATA_MAX_IMAGES || h == 0 || h > DPT__DATA_MAX_SIDE || w == 0 ||
        w > DPT__DATA_MAX_SIDE || (uint64_t)n * h * w > DPT__DATA_MAX_BYTES) {
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: implausible IDX dims %" PRIu32 " x %" PRIu32
                           " x %" PRIu32 " (limits: 1..%d images, sides 1..%d, %" PRIu64
                           " bytes)", images_path, n, h, w, DPT__DATA_MAX_IMAGES,
                           DPT__DATA_MAX_SIDE, DPT__DATA_MAX_BYTES);
        goto fail;
    }
    uint64_t image_bytes = (uint64_t)n * h * w;
    DPT_CHECK_GOTO(idx_check_raw_size(&fi, 16, image_bytes, "image"), st, fail);
    DPT_CHECK_GOTO(dpt__dataset_alloc((int)n, 1, (int)h, (int)w, IDX_N_CLASSES, images_path, &ds),
                   st, fail);
    DPT_CHECK_GOTO(idx_read(&fi, ds->images, image_bytes, "image"), st, fail);
    DPT_CHECK_GOTO(idx_expect_eof(&fi, image_bytes), st, fail);
    idx_close(&fi);

    /* Labels: same count, each < 10. */
    uint32_t ldims[1] = {0};
    DPT_CHECK_GOTO(idx_open(&fl, labels_path), st, fail);
    DPT_CHECK_GOTO(idx_header(&fl, IDX_MAGIC_LABELS, ldims, 1), st, fail);
    if (ldims[0] != n) {
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: %" PRIu32 " labels, but %s has %" PRIu32
                           " images", labels_path, ldims[0], images_path, n);
        goto fail;
    }
    DPT_CHECK_GOTO(idx_check_raw_size(&fl, 8, n, "label"), st, fail);
    label_bytes = dpt_malloc(n);
    if (!label_bytes) {
        st = dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory for %" PRIu32 " labels",
                           labels_path, n);
        goto fail;
    }
    DPT_CHECK_GOTO(idx_read(&fl, label_bytes, n, "label"), st, fail);
    DPT_CHECK_GOTO(idx_expect_eof(&fl, n), st, fail);
    idx_close(&fl);
    for (uint32_t i = 0; i < n; i++) {
        if (label_bytes[i] >= IDX_N_CLASSES) {
            st = dpt_error_set(DPT_ERR_FORMAT, "%s: label %d at index %" PRIu32
                               " is out of range [0, %d)", labels_path, label_bytes[i], i,
                               IDX_N_CLASSES);
            goto fail;
        }
        ds->labels[i] = label_bytes[i];
    }
    dpt_free(label_bytes);

    dpt__dataset_pixel_stats(ds);
    const char *base = strrchr(images_path, '/');
    snprintf(ds->name, sizeof ds->name, "%s", base ? base + 1 : images_path);
    *out = ds;
    return DPT_OK;

fail:
    idx_close(&fi);
    idx_close(&fl);
    dpt_free(label_bytes);
    dpt_dataset_destroy(ds);
    return st;
}
