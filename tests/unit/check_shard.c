/* check_shard.c: unit tests of the JPEG -> shard path: the shard format (src/data/fmt_shard.c)
 * written and read back byte for byte through "shards:DIR", then broken in every way a copy or
 * a disk can break it (each failure must return the right status and name the shard file and
 * the chunk or record); image resizing on tiny known images and JPEG decoding of gray, CMYK and
 * progressive files (src/prep/image.c); and `dptrain prepare` itself (src/prep/prepare.c):
 * stratified split counts, bad files, output independent of the thread count, no-op re-runs,
 * stale shards, and its errors. Every test works in its own mkdtemp folder. */
#define _GNU_SOURCE
#include <check.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "check_files.h"
#include "check_main.h"
#include "dptrain/alloc.h"
#include "dptrain/dataset.h"
#include "dptrain/prepare.h"
#include "dptrain/shard.h"
#include "prep/internal.h"

/* --- fixtures ---------------------------------------------------------------------------- */

static void write_whole(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void set32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void set64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* --- a small shard dataset: 7 train records (chunks of 3: 3+3+1) and 4 val records ---------- */

#define SH 3
#define SW 5
#define SC 3
#define N_TRAIN 7
#define N_VAL 4

static uint8_t pixel_of(int rec, int y, int x, int c)
{
    return (uint8_t)(rec * 31 + y * 17 + x * 5 + c * 71 + (rec * x) % 3);
}

static void fill_meta(dpt_shard_meta_t *m, uint64_t id)
{
    memset(m, 0, sizeof *m);
    m->dataset_id = id;
    m->shard_count = 2;
    m->h = SH;
    m->w = SW;
    m->c = SC;
    m->n_classes = 3;
    strcpy(m->classes[0], "bird");
    strcpy(m->classes[1], "cat");
    strcpy(m->classes[2], "dog");
    m->chunk_records = 3;
    for (int c = 0; c < 3; c++) {
        m->mean[c] = 0.25f + 0.1f * c;
        m->std[c] = 0.2f + 0.01f * c;
    }
}

/* Write shard `index` of `count` (0 = the train records 0..6, 1 = the val records 7..10). */
static void write_test_shard(const char *dir, int index, int count, uint64_t id)
{
    dpt_shard_meta_t *m = malloc(sizeof *m);
    fill_meta(m, id);
    m->shard_count = (uint32_t)count;
    m->shard_index = (uint32_t)index;
    m->split = index ? DPT_SHARD_VAL : DPT_SHARD_TRAIN;
    int n = index ? N_VAL : N_TRAIN, first = index ? N_TRAIN : 0;
    static uint8_t px[N_TRAIN + N_VAL][SH * SW * SC];
    const uint8_t *ptr[N_TRAIN];
    dpt_shard_record_t recs[N_TRAIN];
    for (int i = 0; i < n; i++) {
        int r = first + i;
        for (int y = 0; y < SH; y++)
            for (int x = 0; x < SW; x++)
                for (int c = 0; c < SC; c++)
                    px[r][(y * SW + x) * SC + c] = pixel_of(r, y, x, c);
        ptr[i] = px[r];
        recs[i] = (dpt_shard_record_t){.label = (uint32_t)(r % 3), .source_index = (uint32_t)r,
                                       .source_hash = dpt_shard_hash("x")};
    }
    char path[512];
    snprintf(path, sizeof path, "%s/shard-%05d.dps", dir, index);
    dpt_status_t st = dpt_shard_write(path, m, recs, ptr, n, 2);
    ck_assert_msg(st == DPT_OK, "write: %s", dpt_error_get());
    free(m);
}

static void write_test_dataset(void)
{
    write_test_shard(tmpdir, 0, 2, 0x1234);
    write_test_shard(tmpdir, 1, 2, 0x1234);
}

static dpt_status_t open_split(int train, dpt_dataset_t **ds)
{
    char spec[512];
    snprintf(spec, sizeof spec, "shards:%s", tmpdir);
    dpt_error_clear();
    return dpt_dataset_open(spec, train, 1, ds);
}

START_TEST(round_trip)
{
    make_tmpdir();
    write_test_dataset();
    for (int train = 1; train >= 0; train--) {
        dpt_dataset_t *ds = NULL;
        dpt_status_t st = open_split(train, &ds);
        ck_assert_msg(st == DPT_OK, "open: %s", dpt_error_get());
        int n = train ? N_TRAIN : N_VAL, first = train ? 0 : N_TRAIN;
        ck_assert_int_eq(ds->n, n);
        ck_assert_int_eq(ds->c, SC);
        ck_assert_int_eq(ds->h, SH);
        ck_assert_int_eq(ds->w, SW);
        ck_assert_int_eq(ds->n_classes, 3);
        ck_assert_str_eq(ds->name, train ? "shards/train" : "shards/val");
        for (int c = 0; c < 3; c++) {
            ck_assert_float_eq(ds->mean[c], 0.25f + 0.1f * c);
            ck_assert_float_eq(ds->std[c], 0.2f + 0.01f * c);
        }
        for (int i = 0; i < n; i++) {
            int r = first + i;
            ck_assert_int_eq(ds->labels[i], r % 3);
            for (int c = 0; c < SC; c++)   /* HWC on disk, CHW in memory */
                for (int y = 0; y < SH; y++)
                    for (int x = 0; x < SW; x++)
                        ck_assert_uint_eq(ds->images[(((size_t)i * SC + c) * SH + y) * SW + x],
                                          pixel_of(r, y, x, c));
        }
        dpt_dataset_destroy(ds);
    }
    dpt_shard_meta_t *m = malloc(sizeof *m);
    int nrec = 0;
    ck_assert_int_eq(dpt_shard_read_meta(tmp_path("shard-00000.dps"), m, &nrec), DPT_OK);
    ck_assert_int_eq(nrec, N_TRAIN);
    ck_assert_str_eq(m->classes[1], "cat");
    ck_assert_uint_eq(m->dataset_id, 0x1234);
    ck_assert_uint_eq(m->shard_count, 2);
    free(m);
    remove_tmpdir();
}
END_TEST

/* Decompress chunk `chunk` of a shard, let `edit` change record `rec` of it, recompress, and
 * rewrite the file with a consistent index, sizes and checksums (docs/formats.md layout), so
 * only the record-level checks can catch the change. */
static void rewrite_record(const char *path, int chunk, int rec, int edit_label)
{
    uint8_t *f = NULL;
    size_t n = read_whole(path, &f);
    uint32_t hdr_n = le32(f + 12), k = le32(f + 60), m = le32(f + 64);
    uint32_t h = le32(f + 48), w = le32(f + 52), c = le32(f + 56);
    size_t rec_n = 24 + (size_t)h * w * c;
    uint8_t *index = f + 128 + 32 * (size_t)k;
    uint8_t *out = malloc(n + 4096);
    memcpy(out, f, hdr_n);
    size_t pos = hdr_n;
    for (uint32_t i = 0; i < m; i++) {
        uint8_t *e = out + 128 + 32 * (size_t)k + 32 * i;
        uint64_t off = le64(index + 32 * i), zn = le64(index + 32 * i + 8);
        uint32_t count = le32(index + 32 * i + 20);
        const uint8_t *z = f + off;
        uint8_t zbuf[8192], raw[8192];
        size_t out_zn = zn;
        if ((int)i == chunk) {
            size_t raw_n = ZSTD_decompress(raw, sizeof raw, z, zn);
            ck_assert_uint_eq(raw_n, count * rec_n);
            uint8_t *r = raw + (size_t)rec * rec_n;
            if (edit_label)
                set32(r, 9);             /* label 9 of 3 classes; pixel CRC still right */
            else
                r[24 + 2] ^= 0x40;       /* one pixel; label fine, CRC now wrong */
            out_zn = ZSTD_compress(zbuf, sizeof zbuf, raw, raw_n, 3);
            ck_assert(!ZSTD_isError(out_zn));
            z = zbuf;
        }
        memcpy(out + pos, z, out_zn);
        set64(e, pos);
        set64(e + 8, out_zn);
        set32(e + 24, (uint32_t)crc32(0, z, (uInt)out_zn));
        pos += out_zn;
    }
    set64(out + 16, pos);
    set32(out + hdr_n - 4, (uint32_t)crc32(0, out, hdr_n - 4));
    write_whole(path, out, pos);
    free(out);
    free(f);
}

enum {
    BREAK_MAGIC, BREAK_VERSION, BREAK_HEADER_BYTE, BREAK_TRUNCATE_TAIL, BREAK_TRUNCATE_HEADER,
    BREAK_EMPTY, BREAK_CHUNK_BYTE, BREAK_INDEX, BREAK_LABEL, BREAK_PIXELS, BREAK_MISSING_SHARD,
    BREAK_OTHER_RUN, BREAK_N
};

START_TEST(corrupt_shards)
{
    make_tmpdir();
    write_test_dataset();
    const char *s0 = tmp_path("shard-00000.dps"), *s1 = tmp_path("shard-00001.dps");
    uint8_t *f = NULL;
    size_t n = read_whole(s0, &f);
    uint32_t hdr_n = le32(f + 12);
    const char *path = s0, *word = NULL;
    dpt_status_t want = DPT_ERR_FORMAT;
    int train = 1;
    switch (_i) {
    case BREAK_MAGIC:
        f[3] = 'X';
        word = "bad magic";
        break;
    case BREAK_VERSION:
        set32(f + 8, 7);
        word = "shard version 7";
        break;
    case BREAK_HEADER_BYTE:
        f[128 + 33] ^= 1;   /* in the second class name */
        word = "header checksum mismatch";
        break;
    case BREAK_TRUNCATE_TAIL:
        n -= 5;
        word = "truncated";
        break;
    case BREAK_TRUNCATE_HEADER:
        n = 100;
        word = "shorter than the 128-byte shard header";
        break;
    case BREAK_EMPTY:
        n = 0;
        word = "0 bytes";
        break;
    case BREAK_CHUNK_BYTE: {
        uint8_t *e = f + 128 + 32 * 3 + 32 * 1;   /* index entry of chunk 1 */
        f[le64(e) + le64(e + 8) / 2] ^= 0x10;
        word = "chunk 1 (records 3..5): checksum mismatch";
        break;
    }
    case BREAK_INDEX:   /* a consistent header CRC over an inconsistent index */
        set64(f + 128 + 32 * 3 + 32 * 1 + 8, 1);   /* chunk 1 shrinks: chunk 2 is misplaced */
        set32(f + hdr_n - 4, (uint32_t)crc32(0, f, hdr_n - 4));
        word = "chunk 2 index entry is inconsistent";
        break;
    case BREAK_LABEL:
    case BREAK_PIXELS:
        break;
    case BREAK_MISSING_SHARD:
        path = s1;
        want = DPT_ERR_IO;
        word = "No such file";
        break;
    case BREAK_OTHER_RUN:
        path = s1;
        word = "another prepare run";
        break;
    }
    if (_i == BREAK_LABEL || _i == BREAK_PIXELS) {
        rewrite_record(s0, 1, 1, _i == BREAK_LABEL);
        word = _i == BREAK_LABEL ? "record 4: label 9 out of range" : "record 4: pixel checksum";
    } else if (_i == BREAK_MISSING_SHARD) {
        ck_assert_int_eq(unlink(s1), 0);
    } else if (_i == BREAK_OTHER_RUN) {
        write_test_shard(tmpdir, 1, 2, 0x9999);
        train = 0;
    } else {
        write_whole(s0, f, n);
    }
    dpt_dataset_t *ds = (dpt_dataset_t *)&ds;   /* must be reset to NULL on failure */
    dpt_status_t st = open_split(train, &ds);
    assert_error(st, want, path, word);
    ck_assert_ptr_null(ds);
    free(f);
    remove_tmpdir();
}
END_TEST

/* Every single-byte change and every truncation of a shard is caught (all bytes are under a
 * CRC), with DPT_ERR_FORMAT naming the file, and never crashes the reader. */
START_TEST(every_byte_is_checked)
{
    make_tmpdir();
    write_test_dataset();
    const char *s0 = tmp_path("shard-00000.dps");
    uint8_t *f = NULL;
    size_t n = read_whole(s0, &f);
    for (size_t i = 0; i < n; i++) {
        for (int cut = 0; cut < 2; cut++) {
            if (cut) {
                write_whole(s0, f, i);
            } else {
                f[i] ^= (uint8_t)(1u << (i % 8));
                write_whole(s0, f, n);
                f[i] ^= (uint8_t)(1u << (i % 8));
            }
            dpt_dataset_t *ds = NULL;
            dpt_status_t st = open_split(1, &ds);
            ck_assert_msg(st == DPT_ERR_FORMAT && strstr(dpt_error_get(), s0),
                          "%s at byte %zu of %zu: %s: %s", cut ? "cut" : "flip", i, n,
                          dpt_status_str(st), dpt_error_get());
            ck_assert_ptr_null(ds);
        }
    }
    free(f);
    remove_tmpdir();
}
END_TEST

START_TEST(empty_split_and_bad_spec)
{
    make_tmpdir();
    dpt_dataset_t *ds = NULL;
    assert_error(open_split(1, &ds), DPT_ERR_IO, tmp_path("shard-00000.dps"), "No such file");
    write_test_shard(tmpdir, 0, 1, 7);   /* a train-only dataset: no val records */
    assert_error(open_split(0, &ds), DPT_ERR_FORMAT, tmpdir, "no val records");
    ck_assert_int_eq(open_split(1, &ds), DPT_OK);
    ck_assert_int_eq(ds->n, N_TRAIN);
    dpt_dataset_destroy(ds);
    ck_assert_int_eq(dpt_dataset_open("shards:", 1, 1, &ds), DPT_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(dpt_error_get(), "shards:DIR"));
    remove_tmpdir();
}
END_TEST

/* --- resize on tiny known images --------------------------------------------------------- */

START_TEST(resize_area_and_bilinear)
{
    /* 4x4 gray -> 2x2: each output is the mean of its 2x2 block. */
    uint8_t a[16] = {10, 20, 100, 104, 30, 40, 96, 100, 0, 0, 255, 255, 0, 4, 255, 253};
    uint8_t out[16];
    ck_assert_int_eq(dpt__resize_region(a, 4, 4, 1, 0, 0, 4, 4, out, 2, 2), DPT_OK);
    ck_assert_uint_eq(out[0], 25);
    ck_assert_uint_eq(out[1], 100);
    ck_assert_uint_eq(out[2], 1);     /* 1.0 */
    ck_assert_uint_eq(out[3], 255);   /* 254.5 rounds up */
    /* 2x1 -> 4x1: bilinear between pixel centers, edges clamped. */
    uint8_t b[2] = {0, 200};
    ck_assert_int_eq(dpt__resize_region(b, 2, 1, 1, 0, 0, 2, 1, out, 4, 1), DPT_OK);
    ck_assert_uint_eq(out[0], 0);
    ck_assert_uint_eq(out[1], 50);
    ck_assert_uint_eq(out[2], 150);
    ck_assert_uint_eq(out[3], 200);
    /* 3x1 RGB -> 1x1: the mean per channel. */
    uint8_t c[9] = {0, 30, 255, 60, 30, 0, 120, 30, 0};
    ck_assert_int_eq(dpt__resize_region(c, 3, 1, 3, 0, 0, 3, 1, out, 1, 1), DPT_OK);
    ck_assert_uint_eq(out[0], 60);
    ck_assert_uint_eq(out[1], 30);
    ck_assert_uint_eq(out[2], 85);
    /* A rectangle outside the image is refused. */
    ck_assert_int_eq(dpt__resize_region(c, 3, 1, 3, 1, 0, 3, 1, out, 1, 1), DPT_ERR_INVALID_ARG);
}
END_TEST

START_TEST(resize_modes)
{
    /* 6x2 gray, column x holds 40 * x: shorter-crop to 2 keeps the center columns 2 and 3, whole
     * averages columns (0,1,2) and (3,4,5). */
    uint8_t img[12], out[4];
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 6; x++)
            img[y * 6 + x] = (uint8_t)(40 * x);
    ck_assert_int_eq(dpt__image_resize(img, 6, 2, 1, DPT_RESIZE_SHORTER_CROP, 2, out), DPT_OK);
    ck_assert_uint_eq(out[0], 80);
    ck_assert_uint_eq(out[1], 120);
    ck_assert_uint_eq(out[2], 80);
    ck_assert_uint_eq(out[3], 120);
    ck_assert_int_eq(dpt__image_resize(img, 6, 2, 1, DPT_RESIZE_WHOLE, 2, out), DPT_OK);
    ck_assert_uint_eq(out[0], 40);
    ck_assert_uint_eq(out[1], 160);
    /* 5x2: the centered 2x2 square starts at x = 1.5, so each output mixes two columns. */
    uint8_t odd[10];
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 5; x++)
            odd[y * 5 + x] = (uint8_t)(40 * x);
    ck_assert_int_eq(dpt__image_resize(odd, 5, 2, 1, DPT_RESIZE_SHORTER_CROP, 2, out), DPT_OK);
    ck_assert_uint_eq(out[0], 60);
    ck_assert_uint_eq(out[1], 100);
    /* A constant image stays constant through any shrink or enlargement, in both modes. */
    static uint8_t flat[37 * 23 * 3], big[100 * 100 * 3];
    memset(flat, 77, sizeof flat);
    for (int mode = 0; mode < 2; mode++)
        for (int s = 8; s <= 100; s += 23) {
            ck_assert_int_eq(dpt__image_resize(flat, 37, 23, 3, mode, s, big), DPT_OK);
            for (int i = 0; i < s * s * 3; i++)
                ck_assert_uint_eq(big[i], 77);
        }
}
END_TEST

/* --- JPEG decoding -------------------------------------------------------------------------- */

/* A w x h RGB test pattern (smooth, so JPEG keeps it close). */
static void pattern(uint8_t *rgb, int w, int h)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            rgb[(y * w + x) * 3 + 0] = (uint8_t)(40 + 160 * x / w);
            rgb[(y * w + x) * 3 + 1] = (uint8_t)(200 - 120 * y / h);
            rgb[(y * w + x) * 3 + 2] = 90;
        }
}

/* JPEG of the pattern: kind 0 color, 1 grayscale, 2 CMYK, 3 progressive. tjFree the result. */
static unsigned char *make_jpeg(int w, int h, int kind, unsigned long *n)
{
    uint8_t *rgb = malloc((size_t)w * h * 3), *src = rgb;
    pattern(rgb, w, h);
    int pf = TJPF_RGB;
    if (kind == 2) {   /* no black ink: C = 255 - R etc. in the inverted convention */
        src = malloc((size_t)w * h * 4);
        for (int i = 0; i < w * h; i++) {
            for (int c = 0; c < 3; c++)
                src[4 * i + c] = rgb[3 * i + c];
            src[4 * i + 3] = 255;
        }
        pf = TJPF_CMYK;
    }
    tjhandle tj = tjInitCompress();
    unsigned char *jpeg = NULL;
    *n = 0;
    int rc = tjCompress2(tj, src, w, 0, h, pf, &jpeg, n, kind == 1 ? TJSAMP_GRAY : TJSAMP_444,
                         98, kind == 3 ? TJFLAG_PROGRESSIVE : 0);
    ck_assert_msg(rc == 0, "tjCompress2: %s", tjGetErrorStr2(tj));
    tjDestroy(tj);
    if (src != rgb)
        free(src);
    free(rgb);
    return jpeg;
}

START_TEST(decode_kinds)
{
    tjhandle tj = tjInitDecompress();
    const int w = 40, h = 24;
    uint8_t ref[40 * 24 * 3];
    pattern(ref, w, h);
    unsigned long n = 0;
    unsigned char *jpeg = make_jpeg(w, h, _i, &n);
    uint8_t *rgb = NULL;
    int gw = 0, gh = 0;
    char why[200] = "";
    int bad = dpt__jpeg_decode(tj, jpeg, n, &rgb, &gw, &gh, why, sizeof why);
    ck_assert_msg(bad == -1, "kind %d: %s", _i, why);
    ck_assert_int_eq(gw, w);
    ck_assert_int_eq(gh, h);
    int max_err = 0;
    for (int i = 0; i < w * h; i++) {
        if (_i == 1) {   /* grayscale: R = G = B = luma */
            ck_assert_uint_eq(rgb[3 * i], rgb[3 * i + 1]);
            ck_assert_uint_eq(rgb[3 * i], rgb[3 * i + 2]);
            double luma = 0.299 * ref[3 * i] + 0.587 * ref[3 * i + 1] + 0.114 * ref[3 * i + 2];
            int e = abs((int)rgb[3 * i] - (int)(luma + 0.5));
            max_err = e > max_err ? e : max_err;
        } else {
            for (int c = 0; c < 3; c++) {
                int e = abs((int)rgb[3 * i + c] - (int)ref[3 * i + c]);
                max_err = e > max_err ? e : max_err;
            }
        }
    }
    ck_assert_msg(max_err <= 8, "kind %d: max error %d", _i, max_err);
    dpt_free(rgb);
    tjFree(jpeg);
    tjDestroy(tj);
}
END_TEST

START_TEST(decode_bad)
{
    tjhandle tj = tjInitDecompress();
    unsigned long n = 0;
    unsigned char *jpeg = make_jpeg(64, 48, 0, &n);
    uint8_t *rgb = (uint8_t *)1;
    int w, h;
    char why[200];
    ck_assert_int_eq(dpt__jpeg_decode(tj, jpeg, 0, &rgb, &w, &h, why, sizeof why),
                     DPT_PREP_BAD_EMPTY);
    ck_assert_ptr_null(rgb);
    const char *text = "<html>404</html>";
    ck_assert_int_eq(dpt__jpeg_decode(tj, (const uint8_t *)text, strlen(text), &rgb, &w, &h, why,
                                      sizeof why), DPT_PREP_BAD_NOT_JPEG);
    ck_assert_int_eq(dpt__jpeg_decode(tj, jpeg, n / 2, &rgb, &w, &h, why, sizeof why),
                     DPT_PREP_BAD_CORRUPT);
    ck_assert_msg(strstr(why, "Premature end") != NULL, "why: %s", why);
    ck_assert_int_eq(dpt__jpeg_decode(tj, jpeg, 40, &rgb, &w, &h, why, sizeof why),
                     DPT_PREP_BAD_CORRUPT);   /* cut inside the header */
    ck_assert_ptr_null(rgb);
    tjFree(jpeg);
    tjDestroy(tj);
}
END_TEST

/* --- prepare ------------------------------------------------------------------------------- */

/* Write an input folder: `n_cat` flat cat.N.jpg files, `n_dog` Dog/N.jpg files (PetImages
 * style), an empty file, a text file, a truncated JPEG, an unlabeled top-level JPEG and a
 * Thumbs.db. Images are 20..60 px with varying aspect; the cat/dog tint differs. */
static void make_input(const char *dir, int n_cat, int n_dog)
{
    char path[512];
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/Dog", dir);
    mkdir(path, 0755);
    for (int i = 0; i < n_cat + n_dog; i++) {
        unsigned long n = 0;
        unsigned char *jpeg = make_jpeg(20 + i % 41, 20 + (i * 7) % 33, i % 4, &n);
        if (i < n_cat)
            snprintf(path, sizeof path, "%s/cat.%d.jpg", dir, i);
        else
            snprintf(path, sizeof path, "%s/Dog/%d.jpg", dir, i - n_cat);
        write_whole(path, jpeg, n);
        if (i == 0) {
            snprintf(path, sizeof path, "%s/dog.truncated.jpg", dir);
            write_whole(path, jpeg, n / 2);
            snprintf(path, sizeof path, "%s/noclass.jpg", dir);
            write_whole(path, jpeg, n);
        }
        tjFree(jpeg);
    }
    snprintf(path, sizeof path, "%s/cat.empty.jpg", dir);
    write_whole(path, "", 0);
    snprintf(path, sizeof path, "%s/Dog/text.JPG", dir);
    write_whole(path, "not a jpeg\n", 11);
    snprintf(path, sizeof path, "%s/Dog/Thumbs.db", dir);
    write_whole(path, "x", 1);
}

static dpt_prepare_config_t prep_config(const char *in, const char *out)
{
    dpt_prepare_config_t cfg;
    dpt_prepare_config_default(&cfg);
    cfg.input_dir = in;
    cfg.output_dir = out;
    cfg.size = 16;
    cfg.threads = 2;
    return cfg;
}

static dpt_prepare_result_t run_prepare(const dpt_prepare_config_t *cfg)
{
    dpt_prepare_result_t res;
    dpt_status_t st = dpt_prepare(cfg, &res);
    ck_assert_msg(st == DPT_OK, "prepare: %s", dpt_error_get());
    return res;
}

static int count_label(const dpt_dataset_t *ds, int label)
{
    int n = 0;
    for (int i = 0; i < ds->n; i++)
        n += ds->labels[i] == label;
    return n;
}

START_TEST(prepare_split_and_bad_files)
{
    make_tmpdir();
    char in[512], out[512], spec[600];
    snprintf(in, sizeof in, "%s", tmp_path("in"));
    snprintf(out, sizeof out, "%s", tmp_path("out/nested"));
    make_input(in, 30, 17);
    dpt_prepare_config_t cfg = prep_config(in, out);
    cfg.val_fraction = 0.2;
    dpt_prepare_result_t r = run_prepare(&cfg);
    ck_assert_int_eq(r.files, 47 + 4);   /* Thumbs.db is not a .jpg */
    ck_assert_int_eq(r.ignored, 1);
    ck_assert_int_eq(r.bad, 4);
    ck_assert_int_eq(r.bad_by[DPT_PREP_BAD_EMPTY], 1);      /* cat.empty.jpg */
    ck_assert_int_eq(r.bad_by[DPT_PREP_BAD_NOT_JPEG], 1);   /* Dog/text.JPG */
    ck_assert_int_eq(r.bad_by[DPT_PREP_BAD_CORRUPT], 1);    /* dog.truncated.jpg */
    ck_assert_int_eq(r.bad_by[DPT_PREP_BAD_UNLABELED], 1);  /* noclass.jpg */
    ck_assert_int_eq(r.n_classes, 2);
    /* Stratified: round(30 * 0.2) = 6 cats and round(17 * 0.2) = 3 dogs in val. */
    ck_assert_int_eq(r.val, 9);
    ck_assert_int_eq(r.train, 38);
    ck_assert_int_eq(r.prepared, 47);
    snprintf(spec, sizeof spec, "shards:%s", out);
    dpt_dataset_t *tr = NULL, *va = NULL;
    ck_assert_int_eq(dpt_dataset_open(spec, 1, 1, &tr), DPT_OK);
    ck_assert_int_eq(dpt_dataset_open(spec, 0, 1, &va), DPT_OK);
    ck_assert_int_eq(tr->n, 38);
    ck_assert_int_eq(count_label(tr, 0), 24);
    ck_assert_int_eq(count_label(tr, 1), 14);
    ck_assert_int_eq(va->n, 9);
    ck_assert_int_eq(count_label(va, 0), 6);
    ck_assert_int_eq(count_label(va, 1), 3);
    ck_assert_int_eq(tr->h, 16);
    ck_assert_int_eq(tr->c, 3);
    ck_assert(tr->mean[0] > 0.1f && tr->mean[0] < 0.9f && tr->std[0] > 0.01f);
    dpt_dataset_destroy(tr);
    dpt_dataset_destroy(va);
    remove_tmpdir();
}
END_TEST

/* A JPEG of w x h where pixel (x, y) is color(x, y) (RGB), 4:4:4, quality 100. */
static void write_jpeg_fn(const char *path, int w, int h,
                          void (*color)(int, int, int, int, uint8_t *))
{
    uint8_t *rgb = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            color(x, y, w, h, rgb + ((size_t)y * w + x) * 3);
    tjhandle tj = tjInitCompress();
    unsigned char *jpeg = NULL;
    unsigned long n = 0;
    ck_assert_int_eq(tjCompress2(tj, rgb, w, 0, h, TJPF_RGB, &jpeg, &n, TJSAMP_444, 100, 0), 0);
    write_whole(path, jpeg, n);
    tjFree(jpeg);
    tjDestroy(tj);
    free(rgb);
}

static void solid(int x, int y, int w, int h, uint8_t *p)
{
    (void)x, (void)y, (void)w, (void)h;
    p[0] = 200, p[1] = 100, p[2] = 50;
}

static void left_dark(int x, int y, int w, int h, uint8_t *p)   /* right half white */
{
    (void)y, (void)h;
    p[0] = p[1] = p[2] = x < w / 2 ? 0 : 255;
}

static void top_dark(int x, int y, int w, int h, uint8_t *p)    /* bottom half white */
{
    (void)x, (void)w;
    p[0] = p[1] = p[2] = y < h / 2 ? 0 : 255;
}

/* Pixels through the whole path (decode, resize, shard, HWC -> CHW) against what the images
 * must look like: a solid color stays that color, and a left/right or top/bottom split stays
 * where it was (no transposition, no channel mix-up); shorter-crop of a 64 x 32 image keeps
 * its center square, so the split lands in the middle of the output. */
START_TEST(prepare_pixels)
{
    make_tmpdir();
    char in[512], out[512], spec[600];
    snprintf(in, sizeof in, "%s", tmp_path("in"));
    snprintf(out, sizeof out, "%s", tmp_path("out"));
    mkdir(in, 0755);
    write_jpeg_fn(tmp_path("in/cat.0.jpg"), 37, 23, solid);
    write_jpeg_fn(tmp_path("in/cat.1.jpg"), 64, 32, left_dark);
    write_jpeg_fn(tmp_path("in/dog.0.jpg"), 32, 64, top_dark);
    dpt_prepare_config_t cfg = prep_config(in, out);
    cfg.val_fraction = 0.0;
    run_prepare(&cfg);
    snprintf(spec, sizeof spec, "shards:%s", out);
    dpt_dataset_t *ds = NULL;
    ck_assert_int_eq(dpt_dataset_open(spec, 1, 1, &ds), DPT_OK);
    ck_assert_int_eq(ds->n, 3);   /* path order: cat.0, cat.1, dog.0 */
    const int S = 16, hw = S * S;
    static const int want[3] = {200, 100, 50};
    for (int c = 0; c < 3; c++)
        for (int q = 0; q < hw; q++)
            ck_assert_int_le(abs((int)ds->images[(size_t)c * hw + q] - want[c]), 3);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                int lr = ds->images[((size_t)(1 * 3 + c) * S + y) * S + x];
                int tb = ds->images[((size_t)(2 * 3 + c) * S + y) * S + x];
                if (x < 6 || x > 9)
                    ck_assert_msg(x < 6 ? lr < 20 : lr > 235, "left/right (%d,%d): %d", x, y, lr);
                if (y < 6 || y > 9)
                    ck_assert_msg(y < 6 ? tb < 20 : tb > 235, "top/bottom (%d,%d): %d", x, y, tb);
            }
    ck_assert_int_eq(ds->labels[0], 0);
    ck_assert_int_eq(ds->labels[1], 0);
    ck_assert_int_eq(ds->labels[2], 1);
    dpt_dataset_destroy(ds);
    remove_tmpdir();
}
END_TEST

/* The shards are the same bytes whatever --threads; another seed draws another val set. */
START_TEST(prepare_deterministic)
{
    make_tmpdir();
    char in[512];
    snprintf(in, sizeof in, "%s", tmp_path("in"));
    make_input(in, 20, 20);
    const char *outs[3] = {tmp_path("o1"), tmp_path("o2"), tmp_path("o3")};
    for (int i = 0; i < 3; i++) {
        dpt_prepare_config_t cfg = prep_config(in, outs[i]);
        cfg.threads = i == 0 ? 1 : 2;
        cfg.seed = i == 2 ? 99 : 1;
        cfg.val_fraction = 0.25;
        cfg.chunk_records = 4;
        run_prepare(&cfg);
    }
    uint8_t *a, *b, *c;
    char p[600];
    snprintf(p, sizeof p, "%s/shard-00001.dps", outs[0]);
    size_t na = read_whole(p, &a);
    snprintf(p, sizeof p, "%s/shard-00001.dps", outs[1]);
    size_t nb = read_whole(p, &b);
    snprintf(p, sizeof p, "%s/shard-00001.dps", outs[2]);
    size_t nc = read_whole(p, &c);
    ck_assert_uint_eq(na, nb);
    ck_assert_int_eq(memcmp(a, b, na), 0);
    ck_assert(na != nc || memcmp(a, c, na) != 0);
    free(a);
    free(b);
    free(c);
    remove_tmpdir();
}
END_TEST

static long long mtime_of(const char *path)
{
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    return (long long)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
}

START_TEST(prepare_rerun_is_noop)
{
    make_tmpdir();
    char in[512], out[512], shard[600], file[600];
    snprintf(in, sizeof in, "%s", tmp_path("in"));
    snprintf(out, sizeof out, "%s", tmp_path("out"));
    snprintf(shard, sizeof shard, "%s/shard-00000.dps", out);
    make_input(in, 10, 10);
    dpt_prepare_config_t cfg = prep_config(in, out);
    cfg.shard_records = 4;   /* 18 train + 2 val -> 5 + 1 shards */
    dpt_prepare_result_t r1 = run_prepare(&cfg);
    ck_assert_int_eq(r1.up_to_date, 0);
    ck_assert_int_eq(r1.shards, 6);
    long long t1 = mtime_of(shard);
    usleep(20000);   /* more than a tick of the file-time clock: a rewrite gets another mtime */
    cfg.threads = 1;   /* not an option of the output */
    dpt_prepare_result_t r2 = run_prepare(&cfg);
    ck_assert_int_eq(r2.up_to_date, 1);
    ck_assert_int_eq(r2.prepared, r1.prepared);
    ck_assert_int_eq(r2.shards, 6);
    ck_assert(mtime_of(shard) == t1);
    /* --force rebuilds. */
    cfg.force = 1;
    ck_assert_int_eq(run_prepare(&cfg).up_to_date, 0);
    ck_assert(mtime_of(shard) != t1);
    cfg.force = 0;
    ck_assert_int_eq(run_prepare(&cfg).up_to_date, 1);
    /* A touched input file, another option, a damaged shard: each rebuilds. */
    snprintf(file, sizeof file, "%s/cat.3.jpg", in);
    struct timespec ts[2] = {{.tv_sec = 1000000, .tv_nsec = 0}, {.tv_sec = 1000000}};
    ck_assert_int_eq(utimensat(AT_FDCWD, file, ts, 0), 0);
    ck_assert_int_eq(run_prepare(&cfg).up_to_date, 0);
    ck_assert_int_eq(run_prepare(&cfg).up_to_date, 1);
    cfg.size = 12;
    ck_assert_int_eq(run_prepare(&cfg).up_to_date, 0);
    ck_assert_int_eq(run_prepare(&cfg).up_to_date, 1);
    snprintf(file, sizeof file, "%s/shard-00003.dps", out);
    ck_assert_int_eq(truncate(file, 50), 0);
    ck_assert_int_eq(run_prepare(&cfg).up_to_date, 0);
    /* Fewer shards than before: the stale ones are gone. */
    cfg.shard_records = 0;
    dpt_prepare_result_t r3 = run_prepare(&cfg);
    ck_assert_int_eq(r3.shards, 2);
    snprintf(file, sizeof file, "%s/shard-00002.dps", out);
    ck_assert_int_ne(access(file, F_OK), 0);
    snprintf(file, sizeof file, "%s/shard-00005.dps", out);
    ck_assert_int_ne(access(file, F_OK), 0);
    remove_tmpdir();
}
END_TEST

START_TEST(prepare_errors)
{
    make_tmpdir();
    char in[512], one[512], file[512];
    snprintf(in, sizeof in, "%s", tmp_path("in"));
    snprintf(one, sizeof one, "%s", tmp_path("one"));
    snprintf(file, sizeof file, "%s", tmp_path("afile"));
    make_input(in, 4, 4);
    write_whole(file, "x", 1);
    dpt_prepare_result_t r;
    dpt_prepare_config_t cfg = prep_config(tmp_path("missing"), tmp_path("out"));
    assert_error(dpt_prepare(&cfg, &r), DPT_ERR_IO, tmp_path("missing"), "No such file");
    cfg = prep_config(in, file);
    assert_error(dpt_prepare(&cfg, &r), DPT_ERR_IO, file, "not a directory");
    cfg = prep_config(file, tmp_path("out"));
    assert_error(dpt_prepare(&cfg, &r), DPT_ERR_IO, file, "not a directory");
    cfg = prep_config(in, tmp_path("out"));
    cfg.size = 4;
    assert_error(dpt_prepare(&cfg, &r), DPT_ERR_INVALID_ARG, "--size", "out of range");
    cfg.size = 16;
    cfg.val_fraction = 0.95;
    assert_error(dpt_prepare(&cfg, &r), DPT_ERR_INVALID_ARG, "--val-fraction", NULL);
    dpt_resize_mode_t mode;
    assert_error(dpt_resize_parse("stretch", &mode), DPT_ERR_INVALID_ARG, "stretch", "--resize");
    /* One class only. */
    mkdir(one, 0755);
    unsigned long n = 0;
    unsigned char *jpeg = make_jpeg(20, 20, 0, &n);
    for (int i = 0; i < 3; i++) {
        char p[600];
        snprintf(p, sizeof p, "%s/cat.%d.jpg", one, i);
        write_whole(p, jpeg, n);
    }
    tjFree(jpeg);
    cfg = prep_config(one, tmp_path("out1"));
    assert_error(dpt_prepare(&cfg, &r), DPT_ERR_FORMAT, one, "found 1 class 'cat'");
    remove_tmpdir();
}
END_TEST

static Suite *shard_suite(void)
{
    Suite *s = suite_create("shard");
    TCase *tf = tcase_create("format");
    tcase_add_test(tf, round_trip);
    tcase_add_loop_test(tf, corrupt_shards, 0, BREAK_N);
    tcase_add_test(tf, every_byte_is_checked);
    tcase_add_test(tf, empty_split_and_bad_spec);
    suite_add_tcase(s, tf);
    TCase *ti = tcase_create("image");
    tcase_add_test(ti, resize_area_and_bilinear);
    tcase_add_test(ti, resize_modes);
    tcase_add_loop_test(ti, decode_kinds, 0, 4);
    tcase_add_test(ti, decode_bad);
    suite_add_tcase(s, ti);
    TCase *tp = tcase_create("prepare");
    tcase_set_timeout(tp, 60);
    tcase_add_test(tp, prepare_split_and_bad_files);
    tcase_add_test(tp, prepare_pixels);
    tcase_add_test(tp, prepare_deterministic);
    tcase_add_test(tp, prepare_rerun_is_noop);
    tcase_add_test(tp, prepare_errors);
    suite_add_tcase(s, tp);
    return s;
}

DPT_CHECK_MAIN(shard_suite)
