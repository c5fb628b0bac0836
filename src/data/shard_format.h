/* shard_format.h: the byte layout of shard files (docs/formats.md), shared by the writer
 * (shard_write.c) and the reader (fmt_shard.c): sizes, field offsets, little-endian accessors. */
#ifndef DPT_DATA_SHARD_FORMAT_H
#define DPT_DATA_SHARD_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dptrain/shard.h"

#define SHARD_MAGIC "DPTSHRD1"
#define HDR_FIXED 128          /* bytes of the fixed header part */
#define INDEX_ENTRY 32         /* bytes per chunk index entry */
#define REC_HDR 24             /* bytes of a record header */
#define MAX_CHUNKS (1 << 24)
#define MAX_SHARDS 100000
#define ZSTD_LEVEL 3

/* Offsets of the fixed header fields (docs/formats.md). */
enum {
    H_MAGIC = 0, H_VERSION = 8, H_HEADER_NBYTES = 12, H_FILE_NBYTES = 16, H_DATASET_ID = 24,
    H_SHARD_INDEX = 32, H_SHARD_COUNT = 36, H_SPLIT = 40, H_N_RECORDS = 44, H_HEIGHT = 48,
    H_WIDTH = 52, H_CHANNELS = 56, H_N_CLASSES = 60, H_N_CHUNKS = 64, H_CHUNK_RECORDS = 68,
    H_MEAN = 72, H_STD = 84, H_RESERVED = 96
};
/* Offsets inside an index entry and a record header. */
enum { I_OFFSET = 0, I_NBYTES = 8, I_FIRST = 16, I_COUNT = 20, I_CRC = 24 };
enum { R_LABEL = 0, R_SOURCE_INDEX = 4, R_SOURCE_HASH = 8, R_PIXEL_CRC = 16 };

/* Little-endian fields, whatever the host. */

static inline void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void putf(uint8_t *p, float f)
{
    uint32_t v;
    memcpy(&v, &f, sizeof v);
    put32(p, v);
}

static inline uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static inline float getf(const uint8_t *p)
{
    uint32_t v = get32(p);
    float f;
    memcpy(&f, &v, sizeof f);
    return f;
}

static inline size_t header_nbytes(int n_classes, int n_chunks)
{
    return HDR_FIXED + (size_t)n_classes * DPT_SHARD_CLASS_NAME + (size_t)n_chunks * INDEX_ENTRY +
           4;
}

#endif
