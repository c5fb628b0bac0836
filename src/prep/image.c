/* image.c: the per-image work of `dptrain prepare`: JPEG bytes -> RGB pixels (TurboJPEG 2.1 API)
 * -> SIZE x SIZE. Resizing is separable: each axis gets a table of taps (source index, weight)
 * per output pixel, built once per image; rows are filtered horizontally into a float buffer,
 * then columns vertically.
 *
 *   shrinking (rectangle longer than the output), output pixel i covers the source interval
 *     [x0 + i*s, x0 + (i+1)*s), s = rw / dw; weight of source pixel k = overlap of [k, k+1) with
 *     that interval / s (area averaging: no aliasing, the mean brightness is kept exactly);
 *   enlarging, output pixel center (i + 0.5) maps to source coordinate x0 + (i + 0.5)*s - 0.5,
 *     clamped to [0, W-1]; two taps with the bilinear weights.
 *
 * The axes are independent, so "whole" can shrink one axis and enlarge the other. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <turbojpeg.h>

#include "dptrain/alloc.h"
#include "prep/internal.h"

int dpt__jpeg_decode(void *tj, const uint8_t *buf, size_t n, uint8_t **rgb, int *w, int *h,
                     char *why, size_t cap)
{
    *rgb = NULL;
    if (n == 0) {
        snprintf(why, cap, "empty file");
        return DPT_PREP_BAD_EMPTY;
    }
    if (n < 3 || buf[0] != 0xFF || buf[1] != 0xD8 || buf[2] != 0xFF) {
        snprintf(why, cap, "not a JPEG (no FF D8 FF signature; %zu bytes)", n);
        return DPT_PREP_BAD_NOT_JPEG;
    }
    if (n > (size_t)0xFFFFFFFFu) {
        snprintf(why, cap, "file too large for the decoder (%zu bytes)", n);
        return DPT_PREP_BAD_SIZE;
    }
    int width = 0, height = 0, subsamp = 0, cs = 0;
    if (tjDecompressHeader3(tj, buf, (unsigned long)n, &width, &height, &subsamp, &cs) != 0) {
        snprintf(why, cap, "corrupt JPEG header (%s)", tjGetErrorStr2(tj));
        return DPT_PREP_BAD_CORRUPT;
    }
    if (width < 1 || height < 1) {   /* TurboJPEG may accept a header cut before the frame */
        snprintf(why, cap, "truncated or corrupt JPEG header (no image size)");
        return DPT_PREP_BAD_CORRUPT;
    }
    if ((size_t)width * (size_t)height > DPT__PREP_MAX_PIXELS) {
        snprintf(why, cap, "image is %dx%d (limit %zu pixels)", width, height,
                 DPT__PREP_MAX_PIXELS);
        return DPT_PREP_BAD_SIZE;
    }
    size_t px = (size_t)width * (size_t)height;
    int cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;   /* libjpeg cannot convert these to RGB */
    uint8_t *out = dpt_malloc(px * 3), *tmp = cmyk ? dpt_malloc(px * 4) : NULL;
    if (!out || (cmyk && !tmp)) {
        dpt_free(out);
        dpt_free(tmp);
        snprintf(why, cap, "out of memory for %dx%d pixels", width, height);
        return DPT_PREP_BAD_SIZE;
    }
    /* STOPONWARNING: a truncated file ("Premature end of JPEG file") is an error, not a gray
     * bottom half. */
    if (tjDecompress2(tj, buf, (unsigned long)n, cmyk ? tmp : out, width, 0, height,
                      cmyk ? TJPF_CMYK : TJPF_RGB, TJFLAG_STOPONWARNING) != 0) {
        snprintf(why, cap, "truncated or corrupt JPEG (%s)", tjGetErrorStr2(tj));
        dpt_free(out);
        dpt_free(tmp);
        return DPT_PREP_BAD_CORRUPT;
    }
    if (cmyk) {
        /* Inverted (Adobe) CMYK as libjpeg-turbo writes and Photoshop saves it: 255 = no ink. */
        for (size_t i = 0; i < px; i++) {
            const uint8_t *q = tmp + 4 * i;
            for (int c = 0; c < 3; c++)
                out[3 * i + (size_t)c] = (uint8_t)(((unsigned)q[c] * q[3] + 127) / 255);
        }
        dpt_free(tmp);
    }
    *rgb = out;
    *w = width;
    *h = height;
    return -1;
}

/* Taps of one axis: per output pixel `per` (index, weight) pairs, unused ones with weight 0. */
typedef struct taps {
    int per;
    int *idx;      /* (n_out, per) */
    float *wt;     /* (n_out, per) */
} taps_t;

static dpt_status_t build_taps(taps_t *t, int in_len, double start, double len, int out_len)
{
    double s = len / out_len;
    t->per = len > out_len ? (int)ceil(s) + 2 : 2;
    t->idx = dpt_malloc((size_t)out_len * t->per * sizeof *t->idx);
    t->wt = dpt_malloc((size_t)out_len * t->per * sizeof *t->wt);
    if (!t->idx || !t->wt)
        return dpt_error_set(DPT_ERR_NOMEM, "resize: out of memory for %d taps", out_len);
    for (int i = 0; i < out_len; i++) {
        int *idx = t->idx + (size_t)i * t->per;
        float *wt = t->wt + (size_t)i * t->per;
        for (int j = 0; j < t->per; j++) {
            idx[j] = 0;
            wt[j] = 0.0f;
        }
        if (len > out_len) {
            double a = start + i * s, b = a + s;
            a = a < 0 ? 0 : a;
            b = b > in_len ? in_len : b;
            int j = 0;
            for (int k = (int)floor(a); k < in_len && k < b && j < t->per; k++) {
                double lo = a > k ? a : k, hi = b < k + 1 ? b : k + 1;
                if (hi > lo) {
                    idx[j] = k;
                    wt[j++] = (float)((hi - lo) / (b - a));
                }
            }
        } else {
            double x = start + (i + 0.5) * s - 0.5;
            x = x < 0 ? 0 : x > in_len - 1 ? in_len - 1 : x;
            int k0 = (int)floor(x);
            int k1 = k0 + 1 < in_len ? k0 + 1 : in_len - 1;
            idx[0] = k0;
            idx[1] = k1;
            wt[1] = (float)(x - k0);
            wt[0] = 1.0f - wt[1];
        }
    }
    return DPT_OK;
}

dpt_status_t dpt__resize_region(const uint8_t *src, int sw, int sh, int c, double x0, double y0,
                                double rw, double rh, uint8_t *dst, int dw, int dh)
{
    if (sw < 1 || sh < 1 || c < 1 || dw < 1 || dh < 1 || !(rw > 0) || !(rh > 0) || x0 < 0 ||
        y0 < 0 || x0 + rw > sw + 1e-9 || y0 + rh > sh + 1e-9)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "resize: rectangle %gx%g at (%g, %g) is not "
                             "inside the %dx%d image (or an empty output %dx%d)", rw, rh, x0, y0,
                             sw, sh, dw, dh);
    taps_t tx = {0}, ty = {0};
    float *tmp = NULL;
    dpt_status_t st = DPT_OK;
    DPT_CHECK_GOTO(build_taps(&tx, sw, x0, rw, dw), st, done);
    DPT_CHECK_GOTO(build_taps(&ty, sh, y0, rh, dh), st, done);
    /* Only the rows some vertical tap reads get a horizontal pass. */
    int ylo = sh, yhi = -1;
    for (int i = 0; i < dh * ty.per; i++)
        if (ty.wt[i] != 0.0f || i % ty.per == 0) {
            ylo = ty.idx[i] < ylo ? ty.idx[i] : ylo;
            yhi = ty.idx[i] > yhi ? ty.idx[i] : yhi;
        }
    size_t row = (size_t)dw * c;
    tmp = dpt_malloc((size_t)(yhi - ylo + 1) * row * sizeof *tmp);
    if (!tmp) {
        st = dpt_error_set(DPT_ERR_NOMEM, "resize: out of memory");
        goto done;
    }
    for (int y = ylo; y <= yhi; y++) {
        const uint8_t *srow = src + (size_t)y * sw * c;
        float *trow = tmp + (size_t)(y - ylo) * row;
        for (int ox = 0; ox < dw; ox++) {
            const int *idx = tx.idx + (size_t)ox * tx.per;
            const float *wt = tx.wt + (size_t)ox * tx.per;
            for (int ch = 0; ch < c; ch++) {
                float acc = 0.0f;
                for (int j = 0; j < tx.per; j++)
                    acc += wt[j] * srow[(size_t)idx[j] * c + ch];
                trow[(size_t)ox * c + ch] = acc;
            }
        }
    }
    for (int oy = 0; oy < dh; oy++) {
        const int *idx = ty.idx + (size_t)oy * ty.per;
        const float *wt = ty.wt + (size_t)oy * ty.per;
        uint8_t *drow = dst + (size_t)oy * row;
        for (size_t q = 0; q < row; q++) {
            float acc = 0.0f;
            for (int j = 0; j < ty.per; j++)
                if (wt[j] != 0.0f)
                    acc += wt[j] * tmp[(size_t)(idx[j] - ylo) * row + q];
            float v = floorf(acc + 0.5f);
            drow[q] = (uint8_t)(v < 0.0f ? 0 : v > 255.0f ? 255 : v);
        }
    }
done:
    dpt_free(tx.idx);
    dpt_free(tx.wt);
    dpt_free(ty.idx);
    dpt_free(ty.wt);
    dpt_free(tmp);
    return st;
}

dpt_status_t dpt__image_resize(const uint8_t *src, int w, int h, int c, dpt_resize_mode_t mode,
                               int size, uint8_t *dst)
{
    if (mode == DPT_RESIZE_WHOLE)
        return dpt__resize_region(src, w, h, c, 0.0, 0.0, w, h, dst, size, size);
    int m = w < h ? w : h;
    return dpt__resize_region(src, w, h, c, (w - m) / 2.0, (h - m) / 2.0, m, m, dst, size, size);
}
