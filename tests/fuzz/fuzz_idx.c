/* fuzz_idx: the IDX reader (MNIST / Fashion-MNIST images + labels, raw or gzip). The input is
 * split in two files at a position given by its first two bytes. */
#include "dptrain/dataset.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t cut = ((size_t)data[0] << 8 | data[1]) % (size - 1);
    char img[512], lab[512];
    fz_write("images", data + 2, cut, img, sizeof img);
    fz_write("labels", data + 2 + cut, size - 2 - cut, lab, sizeof lab);
    dpt_dataset_t *ds = NULL;
    if (dpt_dataset_load_idx(img, lab, &ds) == DPT_OK)
        dpt_dataset_destroy(ds);
    return 0;
}
