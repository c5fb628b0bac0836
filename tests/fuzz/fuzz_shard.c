/* fuzz_shard: the shard reader of `dptrain prepare`'s output (header, index, zstd chunks,
 * per-record CRCs), through the shards:DIR dataset (both splits). */
#include "dptrain/dataset.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512], spec[600];
    fz_write("shard-00000.dps", data, size, path, sizeof path);
    snprintf(spec, sizeof spec, "shards:%s", fz_scratch());
    for (int train = 0; train < 2; train++) {
        dpt_dataset_t *ds = NULL;
        if (dpt_dataset_open(spec, train, 1, &ds) == DPT_OK)
            dpt_dataset_destroy(ds);
    }
    return 0;
}
