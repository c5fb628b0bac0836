/* checkpoint.h: model weight files (parameters + BN buffers) and the parameter checksum.
 * Format (little-endian): 64-byte header {magic "DPTWGHT1", u32 version, u32 reserved,
 * u64 n_params, u64 n_buffers, u64 payload_nbytes, u32 payload_crc32, u32 raw_crc32,
 * 12 reserved bytes, u32 header_crc32}, then one zstd frame holding params then buffers (float32).
 * Written to PATH.tmp, fsync'd, then renamed over PATH, so a crash never leaves a torn file. */
#ifndef DPT_CHECKPOINT_H
#define DPT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "dptrain/status.h"

/* CRC-32 of the parameter arena followed by the buffer arena (the "param_crc" of metrics). */
uint32_t dpt_param_crc(const float *params, size_t n_params, const float *buffers,
                       size_t n_buffers);

dpt_status_t dpt_weights_save(const char *path, const float *params, size_t n_params,
                              const float *buffers, size_t n_buffers);
/* Load into arenas of exactly the given sizes; errors name the file (missing, truncated,
 * wrong magic/version, size mismatch with the model, checksum mismatch). */
dpt_status_t dpt_weights_load(const char *path, float *params, size_t n_params, float *buffers,
                              size_t n_buffers);

#endif
