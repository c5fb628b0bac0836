/* shard.h: the packed image shard files written by `dptrain prepare` and read by the dataset
 * spec "shards:DIR" (dpt_dataset_open). A shard holds uint8 HWC images of one split (train or
 * val) in zstd-compressed chunks behind a checksummed little-endian header; docs/formats.md
 * gives the byte layout. Writing is atomic (temp file, fsync, rename); reading validates every
 * header field, chunk and record and reports corruption with DPT_ERR_FORMAT naming the file and
 * the chunk or record, never by crashing. */
#ifndef DPT_SHARD_H
#define DPT_SHARD_H

#include <stdint.h>

#include "dptrain/status.h"

#define DPT_SHARD_VERSION 1
#define DPT_SHARD_MAX_CLASSES 256
#define DPT_SHARD_CLASS_NAME 32   /* bytes per class name, NUL included */
#define DPT_SHARD_MAX_SIDE 4096

enum { DPT_SHARD_TRAIN = 0, DPT_SHARD_VAL = 1 };

/* What a shard says about itself and its dataset; the same in every shard of one prepare run
 * except shard_index and split. */
typedef struct dpt_shard_meta {
    uint64_t dataset_id;      /* identifies the prepare run (hash of its manifest) */
    uint32_t shard_index;     /* i of shard-<i>.dps */
    uint32_t shard_count;     /* shards in the directory, train and val together */
    uint32_t split;           /* DPT_SHARD_TRAIN or DPT_SHARD_VAL */
    int h, w, c;              /* image shape; pixels are stored HWC */
    int n_classes;
    char classes[DPT_SHARD_MAX_CLASSES][DPT_SHARD_CLASS_NAME];   /* sorted, NUL-padded */
    float mean[3], std[3];    /* per-channel statistics of the train split, [0,1] units */
    int chunk_records;        /* records per zstd chunk (the last chunk may hold fewer) */
} dpt_shard_meta_t;

/* Per-record fields besides the pixels. */
typedef struct dpt_shard_record {
    uint32_t label;           /* class index, < n_classes */
    uint32_t source_index;    /* the source file's line in the prepare manifest (0-based) */
    uint64_t source_hash;     /* FNV-1a 64 of the source path relative to the input folder */
} dpt_shard_record_t;

/* FNV-1a 64 of a NUL-terminated string (the record source hash). */
uint64_t dpt_shard_hash(const char *s);

/* Write n records as the shard file `path`: to "<path>.tmp", fsync, rename, fsync of the
 * directory. recs (n) and pixels (n pointers, each h*w*c bytes HWC) are borrowed for the call.
 * Chunks are compressed by up to `threads` threads (<= 1: the calling thread only). Returns
 * DPT_ERR_INVALID_ARG (bad meta or label), DPT_ERR_NOMEM, DPT_ERR_IO (naming the file). */
dpt_status_t dpt_shard_write(const char *path, const dpt_shard_meta_t *meta,
                             const dpt_shard_record_t *recs, const uint8_t *const *pixels, int n,
                             int threads);

/* Read and validate the header and chunk index of one shard (not the chunks): *meta and
 * *n_records. DPT_ERR_IO (missing, unreadable), DPT_ERR_FORMAT (bad magic, version, checksum,
 * sizes, truncation), each message naming the file. */
dpt_status_t dpt_shard_read_meta(const char *path, dpt_shard_meta_t *meta, int *n_records);

#endif
