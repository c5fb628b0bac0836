/* dataset.c: dpt_dataset_open (spec parsing and standard file names), dataset allocation and
 * destruction, and per-channel pixel statistics. The first step of the data path: a spec from
 * the command line becomes an in-memory uint8 dataset that the loader then batches. Formats live
 * in fmt_idx.c (MNIST, Fashion-MNIST), fmt_cifar.c (CIFAR-10), fmt_shard.c (shards written by
 * `dptrain prepare`) and fmt_synth.c (synthetic). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "data/internal.h"
#include "dptrain/alloc.h"
#include "dptrain/dataset.h"

/* Known normalization of the IDX datasets (mean, std of train pixels in [0,1] units). Both splits
 * use the train statistics, as the usual recipes do. */
#define FASHION_MNIST_MEAN 0.2860f
#define FASHION_MNIST_STD 0.3530f
#define MNIST_MEAN 0.1307f
#define MNIST_STD 0.3081f

dpt_status_t dpt__dataset_alloc(int n, int c, int h, int w, int k, const char *what,
                                dpt_dataset_t **out)
{
    *out = NULL;
    dpt_dataset_t *ds = dpt_calloc(sizeof *ds);
    if (!ds)
        return dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory for the dataset header", what);
    size_t nbytes = (size_t)n * (size_t)c * (size_t)h * (size_t)w;
    ds->images = dpt_malloc(nbytes);
    ds->labels = dpt_malloc((size_t)n * sizeof *ds->labels);
    if (!ds->images || !ds->labels) {
        dpt_dataset_destroy(ds);
        return dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory for %d images (%zu bytes)", what,
                             n, nbytes);
    }
    ds->n = n;
    ds->c = c;
    ds->h = h;
    ds->w = w;
    ds->n_classes = k;
    *out = ds;
    return DPT_OK;
}

void dpt__dataset_pixel_stats(dpt_dataset_t *ds)
{
    size_t hw = (size_t)ds->h * (size_t)ds->w;
    for (int c = 0; c < ds->c && c < 3; c++) {
        /* A histogram keeps the sums exact (integers) and the pass cheap. */
        uint64_t hist[256] = {0};
        for (int i = 0; i < ds->n; i++) {
            const uint8_t *p = ds->images + ((size_t)i * (size_t)ds->c + (size_t)c) * hw;
            for (size_t j = 0; j < hw; j++)
                hist[p[j]]++;
        }
        double count = (double)ds->n * (double)hw, sum = 0.0, sumsq = 0.0;
        for (int v = 0; v < 256; v++) {
            sum += (double)hist[v] * v;
            sumsq += (double)hist[v] * v * v;
        }
        double mean = sum / count / 255.0;
        double var = sumsq / count / (255.0 * 255.0) - mean * mean;
        double std = var > 0.0 ? sqrt(var) : 0.0;
        ds->mean[c] = (float)mean;
        ds->std[c] = std > 1e-6 ? (float)std : 1.0f;   /* constant images: avoid dividing by 0 */
    }
}

void dpt_dataset_destroy(dpt_dataset_t *ds)
{
    if (!ds)
        return;
    dpt_free(ds->images);
    dpt_free(ds->labels);
    dpt_free(ds);
}

/* dir/name.gz if it exists, else dir/name; DPT_ERR_IO naming both when neither does. */
static dpt_status_t resolve_idx(const char *dir, const char *name, char *path, size_t cap)
{
    int len = snprintf(path, cap, "%s/%s.gz", dir, name);
    if (len < 0 || (size_t)len >= cap)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "%s: dataset directory name too long", dir);
    if (access(path, F_OK) == 0)
        return DPT_OK;
    int gz_errno = errno;
    snprintf(path, cap, "%s/%s", dir, name);
    if (access(path, F_OK) == 0)
        return DPT_OK;
    /* Report the .gz name (what the Debian package ships) and mention the raw one. */
    return dpt_error_set(DPT_ERR_IO, "%s/%s.gz: %s (nor is there %s)", dir, name,
                         strerror(gz_errno), path);
}

static dpt_status_t open_idx_dir(const char *kind, const char *dir, int train, float mean,
                                 float std, dpt_dataset_t **out)
{
    char images[4096], labels[4096];
    const char *pre = train ? "train" : "t10k";
    char name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", pre);
    DPT_CHECK(resolve_idx(dir, name, images, sizeof images));
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", pre);
    DPT_CHECK(resolve_idx(dir, name, labels, sizeof labels));
    DPT_CHECK(dpt_dataset_load_idx(images, labels, out));
    dpt_dataset_t *ds = *out;
    ds->mean[0] = mean;
    ds->std[0] = std;
    snprintf(ds->name, sizeof ds->name, "%s/%s", kind, train ? "train" : "test");
    return DPT_OK;
}

dpt_status_t dpt_dataset_open(const char *spec, int train, uint64_t seed, dpt_dataset_t **out)
{
    if (!out)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "dpt_dataset_open: out is NULL");
    *out = NULL;
    if (!spec || !spec[0])
        return dpt_error_set(DPT_ERR_INVALID_ARG, "empty dataset spec");

    const char *colon = strchr(spec, ':');
    size_t kind_len = colon ? (size_t)(colon - spec) : strlen(spec);
    const char *arg = colon ? colon + 1 : NULL;
#define IS_KIND(s) (kind_len == strlen(s) && strncmp(spec, s, kind_len) == 0)

    if (IS_KIND("fashion-mnist")) {
        const char *dir = arg && arg[0] ? arg : DPT_FASHION_MNIST_DIR;
        return open_idx_dir("fashion-mnist", dir, train, FASHION_MNIST_MEAN, FASHION_MNIST_STD,
                            out);
    }
    if (IS_KIND("mnist")) {
        if (!arg || !arg[0])
            return dpt_error_set(DPT_ERR_INVALID_ARG,
                                 "dataset spec '%s': mnist needs a directory (mnist:DIR)", spec);
        return open_idx_dir("mnist", arg, train, MNIST_MEAN, MNIST_STD, out);
    }
    if (IS_KIND("cifar10")) {
        if (!arg || !arg[0])
            return dpt_error_set(DPT_ERR_INVALID_ARG,
                                 "dataset spec '%s': cifar10 needs a directory (cifar10:DIR)",
                                 spec);
        return dpt_dataset_load_cifar10(arg, train, out);
    }
    if (IS_KIND("shards")) {
        if (!arg || !arg[0])
            return dpt_error_set(DPT_ERR_INVALID_ARG,
                                 "dataset spec '%s': shards needs a directory (shards:DIR)", spec);
        return dpt__dataset_open_shards(arg, train, out);
    }
    if (IS_KIND("synthetic"))
        return dpt__dataset_open_synthetic(spec, train, seed, out);
#undef IS_KIND
    return dpt_error_set(DPT_ERR_INVALID_ARG,
                         "unknown dataset spec '%s' (expected fashion-mnist[:DIR], mnist:DIR, "
                         "cifar10:DIR, shards:DIR or synthetic:N:C:H:W:K)",
                         spec);
}
