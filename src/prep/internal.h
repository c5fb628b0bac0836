/* internal.h: the image helpers of `dptrain prepare` (src/prep/), shared with the unit tests: JPEG
 * decoding to RGB with TurboJPEG and resizing with area averaging (shrink) or bilinear
 * interpolation (enlarge). Not installed. */
#ifndef DPT_PREP_INTERNAL_H
#define DPT_PREP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dptrain/prepare.h"
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

#endif
