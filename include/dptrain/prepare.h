/* prepare.h: `dptrain prepare`, a folder of JPEGs into zstd shards (the step before the data path:
 * its output is read by the dataset spec "shards:DIR"). Two layouts are understood, also mixed:
 * files named <class>.<anything>.jpg directly in the input folder (Kaggle Dogs vs Cats:
 * cat.0.jpg, dog.0.jpg) and one folder per class (Microsoft PetImages: Cat/0.jpg, Dog/0.jpg);
 * class names are lowercased and sorted, so "Cat/" and "cat.1.jpg" are one class. Images are
 * decoded with TurboJPEG (grayscale and CMYK come out as RGB), resized to SIZE x SIZE, split
 * into train and val per class with a seeded draw, and written as shard-00000.dps ... with
 * per-channel train statistics in every header. Bad files are reported, counted and skipped.
 * A manifest (input files with sizes and mtimes, and the options) makes a re-run on unchanged
 * input a no-op unless forced. */
#ifndef DPT_PREPARE_H
#define DPT_PREPARE_H

#include <stdint.h>
#include <stdio.h>

#include "dptrain/status.h"

typedef enum {
    DPT_RESIZE_SHORTER_CROP = 0,   /* shorter side to SIZE, then the centered SIZE x SIZE square */
    DPT_RESIZE_WHOLE = 1,          /* the whole image squashed to SIZE x SIZE */
} dpt_resize_mode_t;

/* Why a file was skipped; the summary counts each. */
typedef enum {
    DPT_PREP_BAD_EMPTY = 0,        /* zero bytes */
    DPT_PREP_BAD_NOT_JPEG,         /* no JPEG header (text, HTML, another format) */
    DPT_PREP_BAD_CORRUPT,          /* a JPEG header, but decoding failed or warned (truncated) */
    DPT_PREP_BAD_SIZE,             /* width or height 0 or beyond the decoder limit */
    DPT_PREP_BAD_UNREADABLE,       /* open/read failed */
    DPT_PREP_BAD_UNLABELED,        /* a top-level file without a "<class>." prefix */
    DPT_PREP_BAD_N
} dpt_prep_bad_t;

typedef struct dpt_prepare_config {
    const char *input_dir;         /* borrowed for the call */
    const char *output_dir;        /* created if missing; must not be a file */
    int size;                      /* output side in pixels, 8..1024 */
    dpt_resize_mode_t resize;
    double val_fraction;           /* per class, in [0, 0.9] */
    uint64_t seed;                 /* the train/val draw */
    int threads;                   /* decode and compress threads; 0 = every online core */
    int force;                     /* rebuild even when the manifest says up to date */
    int shard_records;             /* records per shard; 0 = about 64 MiB of pixels per shard */
    int chunk_records;             /* records per zstd chunk; 0 = about 1 MiB per chunk */
    FILE *out;                     /* summary lines (stdout in the CLI); NULL = silent */
    FILE *err;                     /* one line per bad file (stderr in the CLI); NULL = silent */
} dpt_prepare_config_t;

typedef struct dpt_prepare_result {
    int files;                     /* .jpg/.jpeg files found */
    int ignored;                   /* other files (Thumbs.db, ...) left alone */
    int prepared, train, val;      /* images in the shards */
    int bad;                       /* skipped files, the sum of bad_by[] */
    int bad_by[DPT_PREP_BAD_N];
    int n_classes, shards;
    int up_to_date;                /* 1: the manifest matched, nothing was written */
} dpt_prepare_result_t;

/* Defaults: size 0 (must be set), shorter-crop, val_fraction 0.1, seed 1, all cores. */
void dpt_prepare_config_default(dpt_prepare_config_t *cfg);

/* "shorter-crop" or "whole"; DPT_ERR_INVALID_ARG with a message otherwise. */
dpt_status_t dpt_resize_parse(const char *name, dpt_resize_mode_t *mode);

/* Check the config before any file is touched: DPT_ERR_INVALID_ARG naming the flag (--input,
 * --output, --size, --val-fraction) for usage errors. */
dpt_status_t dpt_prepare_check(const dpt_prepare_config_t *cfg);

/* Run the preparation. Files that cannot be used are skipped (cfg->err gets "skipped PATH:
 * reason"), never fatal. Errors: DPT_ERR_INVALID_ARG (config), DPT_ERR_IO (input folder missing,
 * output is a file, write failures), DPT_ERR_FORMAT (fewer than 2 classes, no usable image),
 * DPT_ERR_NOMEM; each with a message naming the folder or file. */
dpt_status_t dpt_prepare(const dpt_prepare_config_t *cfg, dpt_prepare_result_t *res);

#endif
