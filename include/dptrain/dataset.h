/* dataset.h: in-memory image classification datasets read from disk (IDX for MNIST and
 * Fashion-MNIST, gzip or raw; CIFAR-10 binary; zstd shards from `dptrain prepare`). Images stay
 * uint8 (N, C, H, W); the loader normalizes and augments them per batch. */
#ifndef DPT_DATASET_H
#define DPT_DATASET_H

#include <stdint.h>

#include "dptrain/status.h"

typedef struct dpt_dataset {
    uint8_t *images;     /* (N, C, H, W), owned */
    int32_t *labels;     /* (N), owned, each in [0, n_classes) */
    int n, c, h, w;
    int n_classes;
    float mean[3], std[3];  /* per-channel normalization, in [0,1] pixel units */
    char name[64];          /* "fashion-mnist/train", for messages */
} dpt_dataset_t;

/* Default directory of Debian's dataset-fashion-mnist package. */
#define DPT_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

/* Read an IDX image file (magic 0x00000803, uint8, N x H x W) and an IDX label file (0x00000801)
 * as one dataset. gzip or raw is detected from the content. Errors name the file:
 * DPT_ERR_IO (missing, unreadable, truncated), DPT_ERR_FORMAT (bad magic, dims, count mismatch,
 * label out of range, corrupt gzip). */
dpt_status_t dpt_dataset_load_idx(const char *images_path, const char *labels_path,
                                  dpt_dataset_t **out);

/* Read CIFAR-10 binary batches from dir (data_batch_1..5.bin for train, test_batch.bin for test). */
dpt_status_t dpt_dataset_load_cifar10(const char *dir, int train, dpt_dataset_t **out);

/* Open by spec: "fashion-mnist[:DIR]", "mnist:DIR" (IDX files with the standard names
 * train-images-idx3-ubyte[.gz] etc.), "cifar10:DIR", "shards:DIR" (the shard-*.dps files of
 * `dptrain prepare`; the test split is the val records; chunks are decompressed on a few threads),
 * "synthetic:N:C:H:W:K" (deterministic learnable random data for tests and benchmarks). `train`
 * picks the train or test split. */
dpt_status_t dpt_dataset_open(const char *spec, int train, uint64_t seed, dpt_dataset_t **out);

/* NULL-safe. */
void dpt_dataset_destroy(dpt_dataset_t *ds);

#endif
