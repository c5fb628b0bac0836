/* gen_jpegs.c: dpt-gen-jpegs, synthetic two-class JPEG folders shaped like Dogs vs Cats, for the
 * tests of `dptrain prepare` and for trying the pipeline without the real download. Built by
 * CMake into build/datasets/dpt-gen-jpegs; every byte depends only on the options (--seed).
 *
 *   dpt-gen-jpegs --out DIR --count N [--layout flat|folders] [--seed S]
 *                 [--min-side 50] [--max-side 500] [--bad K]
 *
 * flat:    DIR/cat.<j>.jpg, DIR/dog.<j>.jpg           (the Kaggle train.zip layout)
 * folders: DIR/Cat/<j>.jpg, DIR/Dog/<j>.jpg, plus a Thumbs.db in each   (Microsoft PetImages)
 *
 * Image i is class i % 2 (cat, dog). What a model can learn: cats have horizontal stripes and a
 * bright blob in the upper-left part, dogs vertical stripes and a blob in the lower-right part;
 * weaker stripes of the other orientation (0..70 % as strong) blur the stripe cue.
 * Stripe period, phase, strength and color, blob color, size and position, background color and
 * gradient, per-pixel noise, width and aspect ratio (1/2 .. 2) are random per image, and a
 * distractor blob of random color sits anywhere. Encoding varies too: about 1 in 8 images is
 * grayscale, 1 in 10 CMYK (YCCK), 1 in 5 progressive, with random chroma
 * subsampling and quality. --bad K adds K broken files in turn: a truncated JPEG, a text file
 * named .jpg, an empty file; each is listed on stdout as "bad PATH (what)". */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>

#include "core/internal.h"
#include "dptrain/rng.h"

#define GEN_STREAM 0x47454e4a50470000ull   /* "GENJPG": one Philox stream per image */

typedef struct gen {
    const char *out;
    int count, folders, min_side, max_side, bad;
    uint64_t seed;
    atomic_int failed;     /* set by a worker that could not write its file */
} gen_t;

static void usage(void)
{
    fprintf(stderr, "usage: dpt-gen-jpegs --out DIR --count N [--layout flat|folders] "
                    "[--seed S] [--min-side 50] [--max-side 500] [--bad K]\n");
}

static int parse_int(const char *flag, const char *v, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "dpt-gen-jpegs: %s: '%s' is not an integer in [%ld, %ld]\n", flag,
                v ? v : "", lo, hi);
        return 0;
    }
    *out = x;
    return 1;
}

static int make_dir(const char *path)
{
    if (dpt__make_dirs(path) == DPT_OK)
        return 1;
    fprintf(stderr, "dpt-gen-jpegs: %s\n", dpt_error_get());
    return 0;
}

/* File name of the j-th file of class k. */
static void file_name(const gen_t *g, int k, int j, char *path, size_t cap)
{
    static const char *flat[2] = {"cat", "dog"}, *folder[2] = {"Cat", "Dog"};
    if (g->folders)
        snprintf(path, cap, "%s/%s/%d.jpg", g->out, folder[k], j);
    else
        snprintf(path, cap, "%s/%s.%d.jpg", g->out, flat[k], j);
}

static float uni(dpt_rng_t *r, float lo, float hi)
{
    return lo + (hi - lo) * dpt_rng_uniform(r);
}

/* Image of class k drawn from r: RGB (h, w, 3) into a malloc'd buffer. */
static uint8_t *draw(dpt_rng_t *r, int k, int min_side, int max_side, int *w_out, int *h_out)
{
    /* Width uniform in [min_side, max_side], aspect w/h log-uniform in [1/2, 2] (photos). */
    int w = min_side + (int)dpt_rng_below(r, (uint32_t)(max_side - min_side + 1));
    int h = (int)lrintf(w / expf(uni(r, -0.6931f, 0.6931f)));
    h = h < min_side ? min_side : h > max_side ? max_side : h;
    int m = w < h ? w : h;
    float bg[3], grad[3], stripe[3], blob[3], dis[3];
    for (int c = 0; c < 3; c++) {
        bg[c] = uni(r, 40, 200);
        grad[c] = uni(r, -40, 40);
        stripe[c] = uni(r, 0.3f, 1.0f) * (dpt_rng_u32(r) & 1 ? 1.0f : -1.0f);
        blob[c] = uni(r, 170, 255);
        dis[c] = uni(r, 0, 255);
    }
    float period = m * uni(r, 0.10f, 0.22f), phase = uni(r, 0, 6.2832f);
    float amp = uni(r, 12, 45), noise = uni(r, 10, 35);
    /* Weaker stripes across the class stripes, so orientation alone is not a giveaway. */
    float period2 = m * uni(r, 0.08f, 0.25f), phase2 = uni(r, 0, 6.2832f);
    float amp2 = amp * uni(r, 0.0f, 0.7f);
    /* Cats: blob center in the upper-left, dogs in the lower-right part of the image. */
    float bx = w * (k == 0 ? uni(r, 0.12f, 0.42f) : uni(r, 0.58f, 0.88f));
    float by = h * (k == 0 ? uni(r, 0.12f, 0.42f) : uni(r, 0.58f, 0.88f));
    float br = m * uni(r, 0.10f, 0.20f);
    float dx = w * uni(r, 0.1f, 0.9f), dy = h * uni(r, 0.1f, 0.9f), dr = m * uni(r, 0.05f, 0.12f);
    uint32_t x32 = dpt_rng_u32(r) | 1;   /* xorshift32 for the per-pixel noise */
    uint8_t *img = malloc((size_t)w * h * 3);
    if (!img)
        return NULL;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float s = sinf(6.2832f * (k == 0 ? y : x) / period + phase);
            float s2 = amp2 / amp * sinf(6.2832f * (k == 0 ? x : y) / period2 + phase2);
            float d = hypotf(x - bx, y - by), a = (br - d) / (0.25f * br);
            float e = hypotf(x - dx, y - dy), b = (dr - e) / (0.25f * dr);
            a = a < 0 ? 0 : a > 1 ? 1 : a;
            b = b < 0 ? 0 : b > 1 ? 1 : b;
            for (int c = 0; c < 3; c++) {
                x32 ^= x32 << 13;
                x32 ^= x32 >> 17;
                x32 ^= x32 << 5;
                float v = bg[c] + grad[c] * ((float)y / h - 0.5f) + amp * (s + s2) * stripe[c];
                v = v * (1 - a) + blob[c] * a;
                v = v * (1 - b) + dis[c] * b;
                v += noise * ((float)(x32 & 0xffff) / 32768.0f - 1.0f);
                img[((size_t)y * w + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    *w_out = w;
    *h_out = h;
    return img;
}

/* Encode RGB as a JPEG whose kind (gray, CMYK, progressive, subsampling, quality) comes from r.
 * Returns a tjAlloc'd buffer. */
static unsigned char *encode(dpt_rng_t *r, const uint8_t *rgb, int w, int h, unsigned long *n)
{
    uint32_t kind = dpt_rng_below(r, 40);
    int gray = kind < 5, cmyk = kind >= 5 && kind < 9;
    int progressive = dpt_rng_below(r, 5) == 0;
    static const int subs[3] = {TJSAMP_444, TJSAMP_422, TJSAMP_420};
    int samp = gray ? TJSAMP_GRAY : subs[dpt_rng_below(r, 3)];
    int quality = 70 + (int)dpt_rng_below(r, 26);
    tjhandle tj = tjInitCompress();
    unsigned char *jpeg = NULL, *src = (unsigned char *)rgb, *tmp = NULL;
    int pf = TJPF_RGB;
    if (cmyk && tj) {
        /* RGB -> inverted CMYK as libjpeg-turbo and Adobe store it (255 = no ink). */
        tmp = malloc((size_t)w * h * 4);
        for (size_t i = 0; tmp && i < (size_t)w * h; i++) {
            float c = 1 - rgb[3 * i] / 255.0f, m = 1 - rgb[3 * i + 1] / 255.0f;
            float y = 1 - rgb[3 * i + 2] / 255.0f;
            float kk = fminf(c, fminf(m, y));
            float d = kk < 1 ? 1 - kk : 1;
            tmp[4 * i + 0] = (uint8_t)lrintf(255 - 255 * (c - kk) / d);
            tmp[4 * i + 1] = (uint8_t)lrintf(255 - 255 * (m - kk) / d);
            tmp[4 * i + 2] = (uint8_t)lrintf(255 - 255 * (y - kk) / d);
            tmp[4 * i + 3] = (uint8_t)lrintf(255 - 255 * kk);
        }
        src = tmp;
        pf = TJPF_CMYK;
    }
    *n = 0;
    if (!tj || (cmyk && !tmp) ||
        tjCompress2(tj, src, w, 0, h, pf, &jpeg, n, samp, quality,
                    progressive ? TJFLAG_PROGRESSIVE : 0) != 0) {
        tjFree(jpeg);
        jpeg = NULL;
    }
    free(tmp);
    if (tj)
        tjDestroy(tj);
    return jpeg;
}

static int write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(p, 1, n, f) == n;
    if (f && fclose(f) != 0)
        ok = 0;
    if (!ok)
        fprintf(stderr, "dpt-gen-jpegs: cannot write %s: %s\n", path, strerror(errno));
    return ok;
}

/* Job i < count: image i; job count + b: bad file b. */
static void gen_one(void *ctx, int job, int worker)
{
    (void)worker;
    gen_t *g = ctx;
    dpt_rng_t r;
    dpt_rng_init(&r, g->seed, GEN_STREAM | (uint64_t)job);
    int bad = job >= g->count ? (job - g->count) % 3 : -1;
    int k = job < g->count ? job % 2 : (job - g->count) % 2;
    int j = job < g->count ? job / 2 : (g->count + 1) / 2 + (job - g->count);
    char path[4096];
    file_name(g, k, j, path, sizeof path);
    if (bad == 1 || bad == 2) {
        const char *text = bad == 1 ? "<html><body>404 Not Found</body></html>\n" : "";
        if (!write_file(path, text, strlen(text)))
            g->failed = 1;
        return;
    }
    int w, h;
    uint8_t *img = draw(&r, k, g->min_side, g->max_side, &w, &h);
    unsigned long n = 0;
    unsigned char *jpeg = img ? encode(&r, img, w, h, &n) : NULL;
    free(img);
    if (!jpeg) {
        fprintf(stderr, "dpt-gen-jpegs: cannot encode %s\n", path);
        g->failed = 1;
        return;
    }
    if (bad == 0)   /* truncated: keep 40..60 % of the bytes */
        n = n * (40 + dpt_rng_below(&r, 21)) / 100;
    if (!write_file(path, jpeg, n))
        g->failed = 1;
    tjFree(jpeg);
}

int main(int argc, char **argv)
{
    gen_t g = {.min_side = 50, .max_side = 500, .seed = 1};
    const char *layout = "flat";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage();
            return 0;
        } else if (!strcmp(a, "--out") && v) {
            g.out = v;
        } else if (!strcmp(a, "--layout") && v) {
            layout = v;
        } else if (!strcmp(a, "--count")) {
            if (!parse_int(a, v, 2, 10000000, &x))
                return 2;
            g.count = (int)x;
        } else if (!strcmp(a, "--seed")) {
            if (!parse_int(a, v, 0, 0x7fffffffL, &x))
                return 2;
            g.seed = (uint64_t)x;
        } else if (!strcmp(a, "--min-side")) {
            if (!parse_int(a, v, 8, 4096, &x))
                return 2;
            g.min_side = (int)x;
        } else if (!strcmp(a, "--max-side")) {
            if (!parse_int(a, v, 8, 4096, &x))
                return 2;
            g.max_side = (int)x;
        } else if (!strcmp(a, "--bad")) {
            if (!parse_int(a, v, 0, 1000000, &x))
                return 2;
            g.bad = (int)x;
        } else {
            fprintf(stderr, "dpt-gen-jpegs: unknown or incomplete argument '%s'\n", a);
            usage();
            return 2;
        }
        i++;
    }
    if (!g.out || !g.count || g.min_side > g.max_side ||
        (strcmp(layout, "flat") && strcmp(layout, "folders"))) {
        fprintf(stderr, "dpt-gen-jpegs: need --out and --count, --min-side <= --max-side, "
                        "--layout flat or folders\n");
        usage();
        return 2;
    }
    g.folders = !strcmp(layout, "folders");
    char path[4096];
    if (!make_dir(g.out))
        return 1;
    if (g.folders) {
        for (int k = 0; k < 2; k++) {
            snprintf(path, sizeof path, "%s/%s", g.out, k ? "Dog" : "Cat");
            if (!make_dir(path))
                return 1;
            /* PetImages ships a Thumbs.db beside the JPEGs; prepare must ignore it. */
            snprintf(path, sizeof path, "%s/%s/Thumbs.db", g.out, k ? "Dog" : "Cat");
            if (!write_file(path, "thumbs", 6))
                return 1;
        }
    }
    dpt__parallel_for(g.count + g.bad, 0, gen_one, &g);
    if (g.failed)
        return 1;
    static const char *what[3] = {"truncated JPEG", "text file named .jpg", "empty file"};
    for (int b = 0; b < g.bad; b++) {
        file_name(&g, b % 2, (g.count + 1) / 2 + b, path, sizeof path);
        printf("bad %s (%s)\n", path, what[b % 3]);
    }
    printf("wrote %d images (%d cat, %d dog) and %d bad files to %s (%s layout)\n", g.count,
           (g.count + 1) / 2, g.count / 2, g.bad, g.out, layout);
    return 0;
}
