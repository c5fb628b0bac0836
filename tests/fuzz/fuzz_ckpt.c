/* fuzz_ckpt: the checkpoint reader (header, CRCs, sizes, zstd payload) and the weights reader,
 * against a fixed small model size (as `--resume` / `eval --weights` would read them). */
#include "dptrain/checkpoint.h"
#include "fuzz_common.h"

enum { NP = 174, NB = 8, RANKS = 2 };   /* corpus/ckpt: a 1x4x4 conv4-BN-fc2 net, 2 ranks */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static float params[NP], buffers[NB * RANKS], mom[NP];
    char path[512];
    fz_write("ckpt-1.dpt", data, size, path, sizeof path);
    dpt_ckpt_state_t s = {0};   /* codec NULL: its state is not read */
    (void)dpt_ckpt_read(path, RANKS, &s, params, NP, buffers, NB, mom);
    (void)dpt_weights_load(path, params, NP, buffers, NB);
    return 0;
}
