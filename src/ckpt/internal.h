/* internal.h: what the weights files (weights.c) and checkpoints (state.c) share. */
#ifndef DPT_CKPT_INTERNAL_H
#define DPT_CKPT_INTERNAL_H

#include <stdint.h>
#include <stdio.h>

#include "dptrain/status.h"

/* After a verified header: read the zstd payload of payload_nbytes bytes from f (which must end
 * there), check its CRC, decompress it into raw (exactly raw_n bytes) and check that CRC too.
 * Errors (DPT_ERR_FORMAT, DPT_ERR_NOMEM) name `path` and what is wrong. */
dpt_status_t dpt__ckpt_read_payload(FILE *f, const char *path, uint64_t payload_nbytes,
                                    uint32_t payload_crc, void *raw, size_t raw_n,
                                    uint32_t raw_crc);

#endif
