/* internal.h: what the files of `dptrain prepare` (src/prep/) share: the image helpers (also used
 * by the unit tests: JPEG decoding to RGB with TurboJPEG, resizing with area averaging (shrink)
 * or bilinear interpolation (enlarge); image.c), the folder scan (scan.c) and the manifest
 * (manifest.c). Not installed. */
#ifndef DPT_PREP_INTERNAL_H
#define DPT_PREP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dptrain/prepare.h"
#include "dptrain/shard.h"
#include "dptrain/status.h"

/* Largest image accepted by the decoder, in pixels (width * height). */
#define DPT__PREP_MAX_PIXELS ((size_t)100 << 20)

/* Decode the JPEG in buf (n bytes) with the TurboJPEG decompressor `tj` (a tjhandle) into a new
 * RGB image (*h, *w, 3) HWC at *rgb (dpt_malloc'd; the caller frees it). Grayscale images are
 * replicated to RGB; CMYK and YCCK images (Adobe convention, 0 = full ink) become
 * R = C * K / 255 etc. Returns -1 on success, else the dpt_prep_bad_t reason with a short
 * explanation in why (cap bytes); any libjpeg warning (a truncated file) counts as corrupt. */
int dpt__jpeg_decode(void *tj, const uint8_t *buf, size_t n, uint8_t **rgb, int *w, int *h,
                     char *why, size_t cap);

/* Resize the source rectangle [x0, x0 + rw) x [y0, y0 + rh) (pixel units, fractional allowed,
 * inside the image) of src (sh, sw, c) HWC to dst (dh, dw, c) HWC. Per axis: when the rectangle
 * is longer than the output, each output pixel is the area-weighted mean of the source pixels
 * it covers; otherwise bilinear interpolation between pixel centers (edges clamped). Results
 * are rounded to the nearest integer. DPT_ERR_NOMEM, DPT_ERR_INVALID_ARG (empty rectangle). */
dpt_status_t dpt__resize_region(const uint8_t *src, int sw, int sh, int c, double x0, double y0,
                                double rw, double rh, uint8_t *dst, int dw, int dh);

/* Resize a whole image (h, w, c) HWC to size x size per `mode`: shorter-crop takes the centered
 * square of side min(w, h) (so the shorter side maps to `size`), whole squashes the image. */
dpt_status_t dpt__image_resize(const uint8_t *src, int w, int h, int c, dpt_resize_mode_t mode,
                               int size, uint8_t *dst);

#define MANIFEST_NAME "manifest.txt"
#define MANIFEST_MAGIC "dptrain-prepare-manifest 1\n"
#define MAX_FILES 10000000

/* One input file of the scan. */
typedef struct entry {
    char *rel;               /* path relative to the input folder, owned */
    char cls[DPT_SHARD_CLASS_NAME];   /* lowercased class name ("" = unlabeled) */
    int label;               /* index in the sorted class list */
    uint64_t size;
    int64_t mtime_sec, mtime_nsec;
    int bad;                 /* -1 = usable, else dpt_prep_bad_t */
    char why[200];
    int split;               /* DPT_SHARD_TRAIN or DPT_SHARD_VAL, for usable entries */
} entry_t;

/* The input folder: its files, sorted by dpt__prep_cmp_entry. */
typedef struct scan {
    const char *root;
    entry_t *e;
    int n, cap;
    int ignored;
} scan_t;

/* A growing text (the manifest); oom set once an append failed. */
typedef struct text {
    char *p;
    size_t n, cap;
    int oom;
} text_t;

/* scan.c: one folder level (sub NULL: the input folder, else a class folder), the order of
 * entries (by path), the sorted class list into meta and the entries' labels. */
dpt_status_t dpt__prep_scan_dir(scan_t *s, const char *sub);
int dpt__prep_cmp_entry(const void *a, const void *b);
dpt_status_t dpt__prep_assign_classes(scan_t *s, dpt_shard_meta_t *meta);

/* manifest.c */
void dpt__prep_printf(text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *dpt__prep_resize_name(dpt_resize_mode_t m);
/* The manifest without its result line: what decides whether a re-run has anything to do. */
void dpt__prep_manifest_body(text_t *t, const dpt_prepare_config_t *cfg, const scan_t *s,
                             int shard_records, int chunk_records);
/* 1 when OUT's manifest has this body and every shard it names is intact (res filled from its
 * result line), else 0. */
int dpt__prep_up_to_date(const char *out_dir, const text_t *body, uint64_t dataset_id,
                         dpt_prepare_result_t *res);

#endif
