/* fmt_cifar.c: reader for the CIFAR-10 binary version (cifar-10-batches-bin): files of records of
 * 1 label byte followed by 3072 pixel bytes (3 x 32 x 32, channel-major, so already CHW). Train is
 * data_batch_1..5.bin concatenated in that order, test is test_batch.bin. Sizes and labels are
 * validated and every error names the file. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "data/internal.h"
#include "dptrain/alloc.h"
#include "dptrain/dataset.h"

#define CIFAR_C 3
#define CIFAR_HW 32
#define CIFAR_PIXELS (CIFAR_C * CIFAR_HW * CIFAR_HW)   /* 3072 */
#define CIFAR_RECORD (1 + CIFAR_PIXELS)                   /* 3073 */
#define CIFAR_N_CLASSES 10
#define CIFAR_TRAIN_FILES 5

/* Per-channel statistics of the CIFAR-10 train pixels (the values most recipes use). */
static const float cifar_mean[3] = {0.4914f, 0.4822f, 0.4465f};
static const float cifar_std[3] = {0.2470f, 0.2435f, 0.2616f};

static void batch_path(char *path, size_t cap, const char *dir, int train, int i)
{
    if (train)
        snprintf(path, cap, "%s/data_batch_%d.bin", dir, i + 1);
    else
        snprintf(path, cap, "%s/test_batch.bin", dir);
}

/* Record count of one batch file, from its size (must be a positive multiple of 3073 bytes). */
static dpt_status_t batch_records(const char *path, int64_t *records)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return dpt_error_set(DPT_ERR_IO, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return dpt_error_set(DPT_ERR_IO, "%s: not a regular file", path);
    if (st.st_size == 0 || st.st_size % CIFAR_RECORD != 0)
        return dpt_error_set(DPT_ERR_FORMAT, "%s: size %" PRId64 " is not a positive multiple of "
                             "the %d-byte CIFAR-10 record (1 label + 3072 pixels); truncated or "
                             "not the binary version?", path, (int64_t)st.st_size, CIFAR_RECORD);
    *records = st.st_size / CIFAR_RECORD;
    return DPT_OK;
}

/* Read `records` records of one file into images/labels starting at sample `first`. */
static dpt_status_t read_batch(const char *path, int64_t records, dpt_dataset_t *ds, int first)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return dpt_error_set(DPT_ERR_IO, "%s: %s", path, strerror(errno));
    dpt_status_t st = DPT_OK;
    uint8_t rec[CIFAR_RECORD];
    for (int64_t r = 0; r < records; r++) {
        if (fread(rec, 1, sizeof rec, fp) != sizeof rec) {
            st = ferror(fp) ? dpt_error_set(DPT_ERR_IO, "%s: read error: %s", path,
                                            strerror(errno))
                            : dpt_error_set(DPT_ERR_IO, "%s: truncated at record %" PRId64
                                            " (the file shrank while being read)", path, r);
            break;
        }
        if (rec[0] >= CIFAR_N_CLASSES) {
            st = dpt_error_set(DPT_ERR_FORMAT, "%s: label %d of record %" PRId64
                               " is out of range [0, %d)", path, rec[0], r, CIFAR_N_CLASSES);
            break;
        }
        int64_t i = first + r;
        ds->labels[i] = rec[0];
        memcpy(ds->images + i * CIFAR_PIXELS, rec + 1, CIFAR_PIXELS);
    }
    fclose(fp);
    return st;
}

dpt_status_t dpt_dataset_load_cifar10(const char *dir, int train, dpt_dataset_t **out)
{
    if (!dir || !out)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "dpt_dataset_load_cifar10: NULL argument");
    *out = NULL;
    int nfiles = train ? CIFAR_TRAIN_FILES : 1;
    char path[4096];
    int64_t records[CIFAR_TRAIN_FILES], total = 0;
    for (int i = 0; i < nfiles; i++) {
        batch_path(path, sizeof path, dir, train, i);
        DPT_CHECK(batch_records(path, &records[i]));
        total += records[i];
    }
    if (total > DPT__DATA_MAX_IMAGES)
        return dpt_error_set(DPT_ERR_FORMAT, "%s: %" PRId64 " CIFAR-10 records, more than the "
                             "%d the reader accepts", dir, total, DPT__DATA_MAX_IMAGES);

    dpt_dataset_t *ds = NULL;
    DPT_CHECK(dpt__dataset_alloc((int)total, CIFAR_C, CIFAR_HW, CIFAR_HW, CIFAR_N_CLASSES, dir,
                                 &ds));
    int first = 0;
    for (int i = 0; i < nfiles; i++) {
        batch_path(path, sizeof path, dir, train, i);
        dpt_status_t st = read_batch(path, records[i], ds, first);
        if (st != DPT_OK) {
            dpt_dataset_destroy(ds);
            return st;
        }
        first += (int)records[i];
    }
    memcpy(ds->mean, cifar_mean, sizeof ds->mean);
    memcpy(ds->std, cifar_std, sizeof ds->std);
    snprintf(ds->name, sizeof ds->name, "cifar10/%s", train ? "train" : "test");
    *out = ds;
    return DPT_OK;
}
