/* payload.c: reading and verifying the zstd payload of weights files and checkpoints. */
#include <zstd.h>

#include "ckpt/internal.h"
#include "core/internal.h"
#include "dptrain/alloc.h"

dpt_status_t dpt__ckpt_read_payload(FILE *f, const char *path, uint64_t payload_nbytes,
                                    uint32_t payload_crc, void *raw, size_t raw_n,
                                    uint32_t raw_crc)
{
    if (payload_nbytes == 0 || payload_nbytes > ZSTD_compressBound(raw_n))
        return dpt_error_set(DPT_ERR_FORMAT, "%s: bad payload size %llu", path,
                             (unsigned long long)payload_nbytes);
    void *z = dpt_malloc((size_t)payload_nbytes);
    if (!z)
        return dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory", path);
    dpt_status_t st = DPT_OK;
    size_t got = fread(z, 1, (size_t)payload_nbytes, f);
    if (got != payload_nbytes)
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: truncated: payload has %zu of %llu bytes", path,
                           got, (unsigned long long)payload_nbytes);
    else if (fgetc(f) != EOF)
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: trailing bytes after the payload", path);
    else if (dpt__crc32(0, z, (size_t)payload_nbytes) != payload_crc)
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: payload checksum mismatch (corrupt file)", path);
    else {
        size_t dn = ZSTD_decompress(raw, raw_n, z, (size_t)payload_nbytes);
        if (ZSTD_isError(dn) || dn != raw_n || dpt__crc32(0, raw, raw_n) != raw_crc)
            st = dpt_error_set(DPT_ERR_FORMAT, "%s: payload does not decompress to the "
                               "expected %zu bytes", path, raw_n);
    }
    dpt_free(z);
    return st;
}
