/* fuzz_cifar: the CIFAR-10 binary reader (test_batch.bin of the test split). */
#include "dptrain/dataset.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    fz_write("test_batch.bin", data, size, path, sizeof path);
    dpt_dataset_t *ds = NULL;
    if (dpt_dataset_load_cifar10(fz_scratch(), 0, &ds) == DPT_OK)
        dpt_dataset_destroy(ds);
    return 0;
}
