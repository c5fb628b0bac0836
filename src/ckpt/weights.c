/* weights.c: save and load model weights (params + BN buffers) as one checksummed zstd frame,
 * written atomically (tmp file, fsync, rename, fsync of the directory). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "ckpt/internal.h"
#include "core/internal.h"
#include "dptrain/alloc.h"
#include "dptrain/checkpoint.h"

#define HDR_BYTES 64
static const char MAGIC[8] = {'D', 'P', 'T', 'W', 'G', 'H', 'T', '1'};
enum { VERSION = 1 };

typedef struct header {
    char magic[8];
    uint32_t version, reserved;
    uint64_t n_params, n_buffers, payload_nbytes;
    uint32_t payload_crc, raw_crc;
    uint8_t pad[12];
    uint32_t header_crc;
} header_t;
_Static_assert(sizeof(header_t) == HDR_BYTES, "weights header must be 64 bytes");

uint32_t dpt_param_crc(const float *params, size_t n_params, const float *buffers,
                       size_t n_buffers)
{
    uint32_t c = dpt__crc32(0, params, n_params * sizeof(float));
    return dpt__crc32(c, buffers, n_buffers * sizeof(float));
}

dpt_status_t dpt_weights_save(const char *path, const float *params, size_t n_params,
                              const float *buffers, size_t n_buffers)
{
    size_t raw_n = (n_params + n_buffers) * sizeof(float);
    float *raw = dpt_malloc(raw_n ? raw_n : 1);
    size_t cap = ZSTD_compressBound(raw_n);
    void *z = dpt_malloc(cap);
    dpt_status_t st = DPT_OK;
    if (!raw || !z) {
        st = dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    memcpy(raw, params, n_params * sizeof(float));
    memcpy(raw + n_params, buffers, n_buffers * sizeof(float));
    size_t zn = ZSTD_compress(z, cap, raw, raw_n, 3);
    if (ZSTD_isError(zn)) {
        st = dpt_error_set(DPT_ERR_INTERNAL, "%s: zstd: %s", path, ZSTD_getErrorName(zn));
        goto done;
    }
    header_t h = {.version = VERSION, .n_params = n_params, .n_buffers = n_buffers,
                  .payload_nbytes = zn};
    memcpy(h.magic, MAGIC, sizeof MAGIC);
    h.payload_crc = dpt__crc32(0, z, zn);
    h.raw_crc = dpt__crc32(0, raw, raw_n);
    h.header_crc = dpt__crc32(0, &h, offsetof(header_t, header_crc));
    const void *parts[2] = {&h, z};
    size_t lens[2] = {sizeof h, zn};
    st = dpt__write_atomic(path, 2, parts, lens);
done:
    dpt_free(raw);
    dpt_free(z);
    return st;
}

dpt_status_t dpt_weights_load(const char *path, float *params, size_t n_params, float *buffers,
                              size_t n_buffers)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return dpt_error_set(DPT_ERR_IO, "%s: %s", path, strerror(errno));
    header_t h;
    float *raw = NULL;
    dpt_status_t st = DPT_OK;
    if (fread(&h, 1, sizeof h, f) != sizeof h) {
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: truncated header (not a dptrain weights file?)",
                           path);
        goto done;
    }
    if (memcmp(h.magic, MAGIC, sizeof MAGIC)) {
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: bad magic (neither a dptrain weights file nor "
                           "a checkpoint)", path);
        goto done;
    }
    if (dpt__crc32(0, &h, offsetof(header_t, header_crc)) != h.header_crc) {
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: header checksum mismatch (corrupt file)", path);
        goto done;
    }
    if (h.version != VERSION) {
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: version %u, this build reads version %d", path,
                           h.version, VERSION);
        goto done;
    }
    if (h.n_params != n_params || h.n_buffers != n_buffers) {
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: holds %llu parameters + %llu buffers, the model "
                           "has %zu + %zu (different model?)", path,
                           (unsigned long long)h.n_params, (unsigned long long)h.n_buffers,
                           n_params, n_buffers);
        goto done;
    }
    size_t raw_n = (n_params + n_buffers) * sizeof(float);
    raw = dpt_malloc(raw_n ? raw_n : 1);
    if (!raw) {
        st = dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    st = dpt__ckpt_read_payload(f, path, h.payload_nbytes, h.payload_crc, raw, raw_n, h.raw_crc);
    if (st != DPT_OK)
        goto done;
    memcpy(params, raw, n_params * sizeof(float));
    memcpy(buffers, raw + n_params, n_buffers * sizeof(float));
done:
    fclose(f);
    dpt_free(raw);
    return st;
}
