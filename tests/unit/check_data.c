/* check_data.c: unit tests of the dataset readers (src/data/dataset.c, fmt_idx.c, fmt_cifar.c,
 * fmt_synth.c). Small IDX and CIFAR-10 files are written into a mkdtemp directory, raw and
 * gzip, read back byte for byte, then broken in every way a download can break: each failure must
 * return the right status and name the file. The real Fashion-MNIST is checked when installed. */
#define _GNU_SOURCE
#include <check.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "check_files.h"
#include "check_main.h"
#include "dptrain/dataset.h"

/* --- fixtures ---------------------------------------------------------------------------- */

static void write_file(const char *path, const void *data, size_t n, int gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(gzwrite(f, data, (unsigned)n), (int)n);
        ck_assert_int_eq(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(data, 1, n, f), n);
        ck_assert_int_eq(fclose(f), 0);
    }
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint8_t pixel_of(int i, int j)
{
    return (uint8_t)((i * 37 + j * 11 + (i * j) % 7) & 255);
}

/* An IDX image file of n images h x w (header claims n_hdr) holding `keep` images of data. */
static void write_idx_images(const char *path, uint32_t n_hdr, uint32_t h, uint32_t w, int keep,
                             int gz)
{
    size_t data = (size_t)keep * h * w;
    uint8_t *buf = malloc(16 + data + 1);
    put_be32(buf, 0x00000803u);
    put_be32(buf + 4, n_hdr);
    put_be32(buf + 8, h);
    put_be32(buf + 12, w);
    for (size_t k = 0; k < data; k++)
        buf[16 + k] = pixel_of((int)(k / (h * w)), (int)(k % (h * w)));
    write_file(path, buf, 16 + data, gz);
    free(buf);
}

/* An IDX label file; label i is i % 10 except that `bad_at` (if >= 0) gets `bad_val`. */
static void write_idx_labels(const char *path, uint32_t n_hdr, int keep, int bad_at, int bad_val,
                             int gz)
{
    uint8_t *buf = malloc(8 + (size_t)keep + 1);
    put_be32(buf, 0x00000801u);
    put_be32(buf + 4, n_hdr);
    for (int i = 0; i < keep; i++)
        buf[8 + i] = (uint8_t)(i == bad_at ? bad_val : i % 10);
    write_file(path, buf, 8 + (size_t)keep, gz);
    free(buf);
}

/* Shape, labels and pixels as written by write_idx_images/labels; returns the pixel mean. */
static double assert_dataset_exact(const dpt_dataset_t *ds, int n, int h, int w)
{
    ck_assert_int_eq(ds->n, n);
    ck_assert_int_eq(ds->c, 1);
    ck_assert_int_eq(ds->h, h);
    ck_assert_int_eq(ds->w, w);
    ck_assert_int_eq(ds->n_classes, 10);
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(ds->labels[i], i % 10);
        for (int j = 0; j < h * w; j++) {
            ck_assert_uint_eq(ds->images[(size_t)i * h * w + j], pixel_of(i, j));
            sum += pixel_of(i, j);
        }
    }
    return sum / ((double)n * h * w) / 255.0;
}

/* --- IDX: good files ------------------------------------------------------------------- */

START_TEST(idx_raw_and_gzip_roundtrip)
{
    /* _i: 0 raw/raw, 1 gz/gz, 2 gz images + raw labels, 3 raw images + gz labels. */
    make_tmpdir();
    int gzi = _i == 1 || _i == 2, gzl = _i == 1 || _i == 3;
    const char *img = tmp_path(gzi ? "img.gz" : "img"), *lab = tmp_path(gzl ? "lab.gz" : "lab");
    write_idx_images(img, 23, 5, 7, 23, gzi);
    write_idx_labels(lab, 23, 23, -1, 0, gzl);
    dpt_dataset_t *ds = NULL;
    ck_assert_int_eq(dpt_dataset_load_idx(img, lab, &ds), DPT_OK);
    double mean = assert_dataset_exact(ds, 23, 5, 7);
    /* dpt_dataset_load_idx alone normalizes with the file's own pixel statistics. */
    ck_assert_float_eq_tol(ds->mean[0], mean, 1e-5);
    ck_assert(ds->std[0] > 0.05f && ds->std[0] < 0.6f);
    ck_assert_str_eq(ds->name, gzi ? "img.gz" : "img");
    dpt_dataset_destroy(ds);
    dpt_dataset_destroy(NULL);
    remove_tmpdir();
}
END_TEST

/* --- IDX: every way a file can be broken ------------------------------------------------ */

START_TEST(idx_missing_file)
{
    make_tmpdir();
    const char *img = tmp_path("nope-images"), *lab = tmp_path("lab");
    write_idx_labels(lab, 4, 4, -1, 0, 0);
    dpt_dataset_t *ds = (dpt_dataset_t *)1;
    assert_error(dpt_dataset_load_idx(img, lab, &ds), DPT_ERR_IO, img,
                 "No such file or directory");
    ck_assert_ptr_null(ds);
    /* Missing labels, present images. */
    write_idx_images(tmp_path("img"), 4, 3, 3, 4, 0);
    const char *lab2 = tmp_path("nope-labels");
    assert_error(dpt_dataset_load_idx(tmp_path("img"), lab2, &ds), DPT_ERR_IO, lab2,
                 "No such file or directory");
    /* A directory is not a file. */
    assert_error(dpt_dataset_load_idx(tmpdir, lab, &ds), DPT_ERR_IO, tmpdir, NULL);
    remove_tmpdir();
}
END_TEST

START_TEST(idx_truncated_images)
{
    /* _i: 0 raw, 1 gzip of short content. The header says 50 images of 6x6, 10 are there. */
    make_tmpdir();
    const char *img = tmp_path(_i ? "img.gz" : "img"), *lab = tmp_path("lab");
    write_idx_images(img, 50, 6, 6, 10, _i);
    write_idx_labels(lab, 50, 50, -1, 0, 0);
    dpt_dataset_t *ds = NULL;
    assert_error(dpt_dataset_load_idx(img, lab, &ds), DPT_ERR_IO, img,
                 "truncated: expected 1800 image bytes, got 360");
    ck_assert_ptr_null(ds);
    /* Header itself cut short. */
    uint8_t hdr[6] = {0, 0, 8, 3, 0, 0};
    write_file(img, hdr, sizeof hdr, _i);
    assert_error(dpt_dataset_load_idx(img, lab, &ds), DPT_ERR_IO, img, "truncated");
    write_file(img, hdr, 0, _i);
    assert_error(dpt_dataset_load_idx(img, lab, &ds), DPT_ERR_IO, img, "truncated");
    remove_tmpdir();
}
END_TEST

START_TEST(idx_truncated_gzip_stream)
{
    /* A complete .gz cut in half (an interrupted download): zlib hits the end mid-stream. */
    make_tmpdir();
    const char *img = tmp_path("img.gz"), *lab = tmp_path("lab.gz");
    write_idx_images(img, 300, 10, 10, 300, 1);
    write_idx_labels(lab, 300, 300, -1, 0, 1);
    uint8_t *bytes = NULL;
    size_t n = read_whole(img, &bytes);
    write_file(img, bytes, n / 2, 0);
    dpt_dataset_t *ds = NULL;
    assert_error(dpt_dataset_load_idx(img, lab, &ds), DPT_ERR_IO, img, "truncated");
    /* Only the 8-byte gzip trailer missing: data complete, stream not. */
    write_file(img, bytes, n - 8, 0);
    assert_error(dpt_dataset_load_idx(img, lab, &ds), DPT_ERR_IO, img, "truncated");
    free(bytes);
    remove_tmpdir();
}
END_TEST

START_TEST(idx_truncated_labels)
{
    make_tmpdir();
    const char *img = tmp_path("img"), *lab = tmp_path(_i ? "lab.gz" : "lab");
    write_idx_images(img, 40, 4, 4, 40, 0);
    write_idx_labels(lab, 40, 25, -1, 0, _i);
    dpt_dataset_t *ds = NULL;
    assert_error(dpt_dataset_load_idx(img, lab, &ds), DPT_ERR_IO, lab,
                 "truncated: expected 40 label bytes, got 25");
    ck_assert_ptr_null(ds);
    remove_tmpdir();
}
END_TEST

START_TEST(idx_corrupt_gzip)
{
    /* Flip bytes in the middle of the compressed stream: inflate fails or the CRC does. */
    make_tmpdir();
    const char *img = tmp_path("img.gz"), *lab = tmp_path("lab");
    write_idx_images(img, 500, 12, 12, 500, 1);
    write_idx_labels(lab, 500, 500, -1, 0, 0);
    uint8_t *bytes = NULL;
    size_t n = read_whole(img, &bytes);
    ck_assert(n > 200);
    for (size_t k = n / 2; k < n / 2 + 16; k++)
        bytes[k] ^= 0xA5;
    write_file(img, bytes, n, 0);
    free(bytes);
    dpt_dataset_t *ds = NULL;
    assert_error(dpt_dataset_load_idx(img, lab, &ds), DPT_ERR_FORMAT, img, "corrupt gzip");
    ck_assert_ptr_null(ds);
    remove_tmpdir();
}
END_TEST

START_TEST(idx_bad_magic)
{
    make_tmpdir();
    const char *img = tmp_path("img"), *lab = tmp_path("lab.gz");
    write_idx_images(img, 8, 3, 3, 8, 0);
    write_idx_labels(lab, 8, 8, -1, 0, 1);
    dpt_dataset_t *ds = NULL;
    /* Swapped arguments: each file has the other's magic. */
    assert_error(dpt_dataset_load_idx(lab, img, &ds), DPT_ERR_FORMAT, lab, "bad magic");
    ck_assert_ptr_null(ds);
    /* Right image file, label file with the image magic. */
    const char *img2 = tmp_path("img2");
    write_idx_images(img2, 8, 3, 3, 8, 0);
    assert_error(dpt_dataset_load_idx(img, img2, &ds), DPT_ERR_FORMAT, img2, "bad magic");
    /* Text where an IDX file should be (an HTML error page saved as the download). */
    const char *html = tmp_path("html.gz");
    write_file(html, "<html>404</html>", 16, 0);
    assert_error(dpt_dataset_load_idx(html, lab, &ds), DPT_ERR_FORMAT, html, "bad magic");
    /* Wrong element type (0x09 = int8) and wrong rank. */
    uint8_t hdr[16] = {0, 0, 9, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1};
    write_file(img2, hdr, sizeof hdr, 0);
    assert_error(dpt_dataset_load_idx(img2, lab, &ds), DPT_ERR_FORMAT, img2, "bad magic");
    hdr[2] = 8;
    hdr[3] = 2;
    write_file(img2, hdr, sizeof hdr, 0);
    assert_error(dpt_dataset_load_idx(img2, lab, &ds), DPT_ERR_FORMAT, img2, "bad magic");
    remove_tmpdir();
}
END_TEST

START_TEST(idx_count_mismatch)
{
    make_tmpdir();
    const char *img = tmp_path("img"), *lab = tmp_path("lab");
    write_idx_images(img, 12, 3, 3, 12, 0);
    write_idx_labels(lab, 11, 11, -1, 0, 0);
    dpt_dataset_t *ds = NULL;
    assert_error(dpt_dataset_load_idx(img, lab, &ds), DPT_ERR_FORMAT, lab, "11 labels");
    ck_assert_ptr_null(ds);
    remove_tmpdir();
}
END_TEST

START_TEST(idx_label_out_of_range)
{
    make_tmpdir();
    const char *img = tmp_path("img"), *lab = tmp_path("lab.gz");
    write_idx_images(img, 12, 3, 3, 12, 0);
    write_idx_labels(lab, 12, 12, 7, 10, 1);
    dpt_dataset_t *ds = NULL;
    assert_error(dpt_dataset_load_idx(img, lab, &ds), DPT_ERR_FORMAT, lab,
                 "label 10 at index 7");
    write_idx_labels(lab, 12, 12, 11, 255, 1);
    assert_error(dpt_dataset_load_idx(img, lab, &ds), DPT_ERR_FORMAT, lab, "label 255");
    ck_assert_ptr_null(ds);
    remove_tmpdir();
}
END_TEST

START_TEST(idx_absurd_dims)
{
    /* Headers that would overflow or ask for terabytes must be refused before allocating. */
    static const uint32_t dims[][3] = {
        {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu},
        {10000001u, 28, 28},        /* too many images */
        {100, 4097, 10},            /* side too long */
        {10000000u, 4096, 4096},    /* each within limits, product not */
        {0, 28, 28},                /* empty */
        {10, 0, 28},
    };
    make_tmpdir();
    const char *img = tmp_path(_i ? "img.gz" : "img"), *lab = tmp_path("lab");
    write_idx_labels(lab, 10, 10, -1, 0, 0);
    for (size_t t = 0; t < sizeof dims / sizeof dims[0]; t++) {
        uint8_t hdr[16 + 64] = {0};
        put_be32(hdr, 0x00000803u);
        put_be32(hdr + 4, dims[t][0]);
        put_be32(hdr + 8, dims[t][1]);
        put_be32(hdr + 12, dims[t][2]);
        write_file(img, hdr, sizeof hdr, _i);
        dpt_dataset_t *ds = NULL;
        assert_error(dpt_dataset_load_idx(img, lab, &ds), DPT_ERR_FORMAT, img, "implausible");
        ck_assert_ptr_null(ds);
    }
    remove_tmpdir();
}
END_TEST

START_TEST(idx_trailing_data)
{
    make_tmpdir();
    const char *img = tmp_path(_i ? "img.gz" : "img"), *lab = tmp_path("lab");
    write_idx_images(img, 10, 4, 4, 11, _i);   /* one image more than the header says */
    write_idx_labels(lab, 10, 10, -1, 0, 0);
    dpt_dataset_t *ds = NULL;
    assert_error(dpt_dataset_load_idx(img, lab, &ds), DPT_ERR_FORMAT, img, "unexpected data");
    write_idx_images(img, 10, 4, 4, 10, _i);
    write_idx_labels(lab, 10, 12, -1, 0, 0);
    assert_error(dpt_dataset_load_idx(img, lab, &ds), DPT_ERR_FORMAT, lab, "unexpected data");
    remove_tmpdir();
}
END_TEST

/* --- dpt_dataset_open ------------------------------------------------------------------ */

START_TEST(open_idx_specs)
{
    make_tmpdir();
    /* Train gzip, test raw: the resolver tries NAME.gz then NAME. */
    write_idx_images(tmp_path("train-images-idx3-ubyte.gz"), 30, 6, 5, 30, 1);
    write_idx_labels(tmp_path("train-labels-idx1-ubyte.gz"), 30, 30, -1, 0, 1);
    write_idx_images(tmp_path("t10k-images-idx3-ubyte"), 20, 6, 5, 20, 0);
    write_idx_labels(tmp_path("t10k-labels-idx1-ubyte"), 20, 20, -1, 0, 0);
    char spec[512];
    dpt_dataset_t *ds = NULL;

    snprintf(spec, sizeof spec, "mnist:%s", tmpdir);
    ck_assert_int_eq(dpt_dataset_open(spec, 1, 0, &ds), DPT_OK);
    ck_assert_int_eq(ds->n, 30);
    ck_assert_str_eq(ds->name, "mnist/train");
    ck_assert_float_eq_tol(ds->mean[0], 0.1307f, 1e-6);
    ck_assert_float_eq_tol(ds->std[0], 0.3081f, 1e-6);
    for (int j = 0; j < 30; j++)
        ck_assert_uint_eq(ds->images[29 * 30 + j], pixel_of(29, j));
    dpt_dataset_destroy(ds);

    snprintf(spec, sizeof spec, "fashion-mnist:%s", tmpdir);
    ck_assert_int_eq(dpt_dataset_open(spec, 0, 0, &ds), DPT_OK);
    ck_assert_int_eq(ds->n, 20);
    ck_assert_str_eq(ds->name, "fashion-mnist/test");
    ck_assert_float_eq_tol(ds->mean[0], 0.2860f, 1e-6);
    ck_assert_float_eq_tol(ds->std[0], 0.3530f, 1e-6);
    (void)assert_dataset_exact(ds, 20, 6, 5);
    dpt_dataset_destroy(ds);

    /* Missing test labels: IO error naming the expected path. */
    remove(tmp_path("t10k-labels-idx1-ubyte"));
    snprintf(spec, sizeof spec, "mnist:%s", tmpdir);
    assert_error(dpt_dataset_open(spec, 0, 0, &ds), DPT_ERR_IO,
                 tmp_path("t10k-labels-idx1-ubyte.gz"), "No such file or directory");
    ck_assert_ptr_null(ds);
    remove_tmpdir();
}
END_TEST

START_TEST(open_bad_specs)
{
    static const char *bad[] = {"imagenet:/data", "", "mnist", "mnist:", "cifar10", "mnist2:/x",
                                "fashion_mnist"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dpt_dataset_t *ds = (dpt_dataset_t *)1;
        dpt_status_t st = dpt_dataset_open(bad[i], 1, 0, &ds);
        ck_assert_msg(st == DPT_ERR_INVALID_ARG, "'%s': %s", bad[i], dpt_status_str(st));
        ck_assert_ptr_null(ds);
        if (bad[i][0])
            ck_assert_msg(strstr(dpt_error_get(), bad[i]) != NULL, "'%s' not in '%s'", bad[i],
                          dpt_error_get());
    }
    dpt_dataset_t *ds = NULL;
    assert_error(dpt_dataset_open("mnist:/nonexistent/dptrain", 1, 0, &ds), DPT_ERR_IO,
                 "/nonexistent/dptrain/train-images-idx3-ubyte.gz", "No such file or directory");
}
END_TEST

/* --- synthetic ------------------------------------------------------------------------- */

START_TEST(synthetic_deterministic)
{
    dpt_dataset_t *a = NULL, *b = NULL, *c = NULL, *t = NULL;
    ck_assert_int_eq(dpt_dataset_open("synthetic:200:3:10:9:7", 1, 42, &a), DPT_OK);
    ck_assert_int_eq(dpt_dataset_open("synthetic:200:3:10:9:7", 1, 42, &b), DPT_OK);
    ck_assert_int_eq(dpt_dataset_open("synthetic:200:3:10:9:7", 1, 43, &c), DPT_OK);
    ck_assert_int_eq(dpt_dataset_open("synthetic:200:3:10:9:7", 0, 42, &t), DPT_OK);
    size_t nbytes = 200 * 3 * 10 * 9;
    ck_assert_int_eq(a->n, 200);
    ck_assert_int_eq(a->c, 3);
    ck_assert_int_eq(a->h, 10);
    ck_assert_int_eq(a->w, 9);
    ck_assert_int_eq(a->n_classes, 7);
    ck_assert_str_eq(a->name, "synthetic/train");
    ck_assert_str_eq(t->name, "synthetic/test");
    ck_assert_mem_eq(a->images, b->images, nbytes);
    ck_assert_mem_eq(a->labels, b->labels, 200 * sizeof(int32_t));
    ck_assert(memcmp(a->images, c->images, nbytes) != 0);
    ck_assert(memcmp(a->images, t->images, nbytes) != 0);
    int counts[7] = {0};
    for (int i = 0; i < 200; i++) {
        ck_assert(a->labels[i] >= 0 && a->labels[i] < 7);
        counts[a->labels[i]]++;
    }
    for (int k = 0; k < 7; k++)
        ck_assert_int_ge(counts[k], 28);
    /* Normalization is the same on both splits and close to the actual pixel statistics. */
    for (int ch = 0; ch < 3; ch++) {
        ck_assert_float_eq(a->mean[ch], t->mean[ch]);
        ck_assert_float_eq(a->std[ch], t->std[ch]);
        double s = 0, s2 = 0;
        for (int i = 0; i < 200; i++)
            for (int j = 0; j < 90; j++) {
                double v = a->images[((size_t)i * 3 + ch) * 90 + j] / 255.0;
                s += v;
                s2 += v * v;
            }
        double m = s / 18000, sd = sqrt(s2 / 18000 - m * m);
        ck_assert_float_eq_tol(a->mean[ch], m, 0.01);
        ck_assert_float_eq_tol(a->std[ch], sd, 0.01);
    }
    dpt_dataset_destroy(a);
    dpt_dataset_destroy(b);
    dpt_dataset_destroy(c);
    dpt_dataset_destroy(t);
}
END_TEST

START_TEST(synthetic_learnable)
{
    /* Nearest class centroid fitted on train must classify the test split well: the two splits
     * share the class prototypes. */
    dpt_dataset_t *tr = NULL, *te = NULL;
    ck_assert_int_eq(dpt_dataset_open("synthetic:1000:1:16:16:10", 1, 7, &tr), DPT_OK);
    ck_assert_int_eq(dpt_dataset_open("synthetic:500:1:16:16:10", 0, 7, &te), DPT_OK);
    enum { D = 256, K = 10 };
    static double cent[K][D];
    int cnt[K] = {0};
    for (int i = 0; i < tr->n; i++) {
        cnt[tr->labels[i]]++;
        for (int j = 0; j < D; j++)
            cent[tr->labels[i]][j] += tr->images[(size_t)i * D + j];
    }
    for (int k = 0; k < K; k++)
        for (int j = 0; j < D; j++)
            cent[k][j] /= cnt[k];
    int correct = 0;
    for (int i = 0; i < te->n; i++) {
        int best = -1;
        double bestd = 1e300;
        for (int k = 0; k < K; k++) {
            double d = 0;
            for (int j = 0; j < D; j++) {
                double e = te->images[(size_t)i * D + j] - cent[k][j];
                d += e * e;
            }
            if (d < bestd) {
                bestd = d;
                best = k;
            }
        }
        correct += best == te->labels[i];
    }
    ck_assert_msg(correct >= 450, "nearest-centroid accuracy %d/500", correct);
    dpt_dataset_destroy(tr);
    dpt_dataset_destroy(te);
}
END_TEST

START_TEST(synthetic_bad_specs)
{
    static const char *bad[] = {
        "synthetic",          "synthetic:",           "synthetic:10:1:8:8",
        "synthetic:0:1:8:8:2", "synthetic:10:4:8:8:2", "synthetic:10:1:0:8:2",
        "synthetic:10:1:8:8:0", "synthetic:10:1:8:8:2:", "synthetic:10:1:8:8:2:9",
        "synthetic:10:1:8x:8:2", "synthetic:-5:1:8:8:2", "synthetic:10000000:3:4096:4096:10",
        "synthetic:99999999999999999999:1:8:8:2",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dpt_dataset_t *ds = (dpt_dataset_t *)1;
        dpt_status_t st = dpt_dataset_open(bad[i], 1, 0, &ds);
        ck_assert_msg(st == DPT_ERR_INVALID_ARG, "'%s': %s", bad[i], dpt_status_str(st));
        ck_assert_ptr_null(ds);
        ck_assert_msg(strstr(dpt_error_get(), bad[i]) != NULL, "'%s' not in '%s'", bad[i],
                      dpt_error_get());
    }
}
END_TEST

/* --- CIFAR-10 -------------------------------------------------------------------------- */

enum { CIFAR_REC = 3073 };

static uint8_t cifar_pixel(int sample, int j)
{
    return (uint8_t)((sample * 53 + j * 3 + j / 1024) & 255);
}

/* A batch file of `n` records for samples first..first+n-1 (label = sample % 10). */
static void write_cifar(const char *path, int first, int n, int extra_bytes, int bad_label)
{
    size_t nbytes = (size_t)n * CIFAR_REC + (size_t)extra_bytes;
    uint8_t *buf = calloc(1, (size_t)n * CIFAR_REC + (extra_bytes > 0 ? extra_bytes : 0) + 1);
    for (int r = 0; r < n; r++) {
        uint8_t *rec = buf + (size_t)r * CIFAR_REC;
        rec[0] = (uint8_t)((first + r) % 10);
        for (int j = 0; j < 3072; j++)
            rec[1 + j] = cifar_pixel(first + r, j);
    }
    if (bad_label)
        buf[0] = 10;
    write_file(path, buf, nbytes, 0);
    free(buf);
}

static void write_cifar_dir(void)
{
    static const int per_file[5] = {2, 3, 1, 2, 2};
    int first = 0;
    for (int f = 0; f < 5; f++) {
        char name[64];
        snprintf(name, sizeof name, "data_batch_%d.bin", f + 1);
        write_cifar(tmp_path(name), first, per_file[f], 0, 0);
        first += per_file[f];
    }
    write_cifar(tmp_path("test_batch.bin"), 100, 4, 0, 0);
}

START_TEST(cifar_roundtrip)
{
    make_tmpdir();
    write_cifar_dir();
    dpt_dataset_t *ds = NULL;
    ck_assert_int_eq(dpt_dataset_load_cifar10(tmpdir, 1, &ds), DPT_OK);
    ck_assert_int_eq(ds->n, 10);
    ck_assert_int_eq(ds->c, 3);
    ck_assert_int_eq(ds->h, 32);
    ck_assert_int_eq(ds->w, 32);
    ck_assert_int_eq(ds->n_classes, 10);
    ck_assert_str_eq(ds->name, "cifar10/train");
    for (int i = 0; i < 10; i++) {
        ck_assert_int_eq(ds->labels[i], i % 10);
        for (int j = 0; j < 3072; j++)
            ck_assert_uint_eq(ds->images[(size_t)i * 3072 + j], cifar_pixel(i, j));
    }
    ck_assert_float_eq_tol(ds->mean[0], 0.4914f, 1e-6);
    ck_assert_float_eq_tol(ds->mean[2], 0.4465f, 1e-6);
    ck_assert_float_eq_tol(ds->std[1], 0.2435f, 1e-6);
    dpt_dataset_destroy(ds);

    char spec[512];
    snprintf(spec, sizeof spec, "cifar10:%s", tmpdir);
    ck_assert_int_eq(dpt_dataset_open(spec, 0, 0, &ds), DPT_OK);
    ck_assert_int_eq(ds->n, 4);
    ck_assert_str_eq(ds->name, "cifar10/test");
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(ds->labels[i], (100 + i) % 10);
        for (int j = 0; j < 3072; j += 511)
            ck_assert_uint_eq(ds->images[(size_t)i * 3072 + j], cifar_pixel(100 + i, j));
    }
    dpt_dataset_destroy(ds);
    remove_tmpdir();
}
END_TEST

START_TEST(cifar_errors)
{
    make_tmpdir();
    write_cifar_dir();
    dpt_dataset_t *ds = NULL;
    const char *b3 = tmp_path("data_batch_3.bin");
    write_cifar(b3, 5, 1, -100, 0);   /* truncated record */
    assert_error(dpt_dataset_load_cifar10(tmpdir, 1, &ds), DPT_ERR_FORMAT, b3, "multiple");
    write_cifar(b3, 5, 1, 0, 1);      /* label 10 */
    assert_error(dpt_dataset_load_cifar10(tmpdir, 1, &ds), DPT_ERR_FORMAT, b3, "label 10");
    write_file(b3, "", 0, 0);         /* empty */
    assert_error(dpt_dataset_load_cifar10(tmpdir, 1, &ds), DPT_ERR_FORMAT, b3, NULL);
    remove(b3);
    assert_error(dpt_dataset_load_cifar10(tmpdir, 1, &ds), DPT_ERR_IO, b3,
                 "No such file or directory");
    ck_assert_ptr_null(ds);
    /* The test split does not need the train files. */
    ck_assert_int_eq(dpt_dataset_load_cifar10(tmpdir, 0, &ds), DPT_OK);
    dpt_dataset_destroy(ds);
    remove_tmpdir();
}
END_TEST

/* --- the real Fashion-MNIST (Debian's dataset-fashion-mnist), when installed ------------ */

START_TEST(fashion_mnist_installed)
{
    if (access(DPT_FASHION_MNIST_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0) {
        fprintf(stderr, "skip: %s not installed\n", DPT_FASHION_MNIST_DIR);
        return;
    }
    dpt_dataset_t *tr = NULL, *te = NULL;
    ck_assert_msg(dpt_dataset_open("fashion-mnist", 1, 0, &tr) == DPT_OK, "%s", dpt_error_get());
    ck_assert_msg(dpt_dataset_open("fashion-mnist", 0, 0, &te) == DPT_OK, "%s", dpt_error_get());
    ck_assert_int_eq(tr->n, 60000);
    ck_assert_int_eq(te->n, 10000);
    ck_assert_int_eq(tr->h, 28);
    ck_assert_int_eq(tr->w, 28);
    ck_assert_int_eq(te->h, 28);
    ck_assert_int_eq(tr->c, 1);
    int counts[10] = {0};
    double sum = 0;
    for (int i = 0; i < tr->n; i++)
        counts[tr->labels[i]]++;
    for (size_t j = 0; j < (size_t)60000 * 784; j++)
        sum += tr->images[j];
    for (int k = 0; k < 10; k++)
        ck_assert_int_eq(counts[k], 6000);   /* Fashion-MNIST train is balanced */
    ck_assert_float_eq_tol(sum / (60000.0 * 784) / 255.0, 0.2860, 5e-4);
    dpt_dataset_destroy(tr);
    dpt_dataset_destroy(te);
}
END_TEST

static Suite *data_suite(void)
{
    Suite *s = suite_create("data");
    TCase *tc = tcase_create("idx");
    tcase_add_loop_test(tc, idx_raw_and_gzip_roundtrip, 0, 4);
    tcase_add_test(tc, idx_missing_file);
    tcase_add_loop_test(tc, idx_truncated_images, 0, 2);
    tcase_add_test(tc, idx_truncated_gzip_stream);
    tcase_add_loop_test(tc, idx_truncated_labels, 0, 2);
    tcase_add_test(tc, idx_corrupt_gzip);
    tcase_add_test(tc, idx_bad_magic);
    tcase_add_test(tc, idx_count_mismatch);
    tcase_add_test(tc, idx_label_out_of_range);
    tcase_add_loop_test(tc, idx_absurd_dims, 0, 2);
    tcase_add_loop_test(tc, idx_trailing_data, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("open");
    tcase_add_test(tc, open_idx_specs);
    tcase_add_test(tc, open_bad_specs);
    suite_add_tcase(s, tc);

    tc = tcase_create("synthetic");
    tcase_add_test(tc, synthetic_deterministic);
    tcase_add_test(tc, synthetic_learnable);
    tcase_add_test(tc, synthetic_bad_specs);
    suite_add_tcase(s, tc);

    tc = tcase_create("cifar10");
    tcase_add_test(tc, cifar_roundtrip);
    tcase_add_test(tc, cifar_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("fashion_mnist");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, fashion_mnist_installed);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(data_suite)
