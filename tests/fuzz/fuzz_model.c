/* fuzz_model: the model file parser (sections, keys, values and their ranges, graph inputs,
 * BN+ReLU fusion) as `--model` reads it. Shape inference and op creation are not fuzzed here. */
#include "dptrain/backend.h"
#include "dptrain/model.h"
#include "fuzz_common.h"
#include "model/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    fz_write("model.cfg", data, size, path, sizeof path);
    dpt_model_options_t opt = {.batch = 1, .fuse_bn_relu = 1};
    dpt_model_spec_t spec;
    if (dpt__model_parse(path, &opt, &spec) != DPT_OK)
        return 0;
    dpt__model_spec_free(&spec);
    return 0;
}
