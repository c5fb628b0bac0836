/* best.c: the best epoch so far, kept apart from the rolling checkpoints. DIR/best.dpt holds the
 * weights (parameters + BN buffers, the weights-file format that `dptrain eval --weights` and
 * --save use) of the epoch with the highest test accuracy, as evaluated: after that epoch's BN
 * averaging. DIR/best is one line saying which epoch it is:
 *     best.dpt epoch 3 step 702 test_acc 0.912300
 * Both are replaced atomically, weights first, so `best` never names weights that are not there;
 * --keep-checkpoints never removes them. */
#include <stdio.h>
#include <string.h>

#include "core/internal.h"
#include "dptrain/checkpoint.h"

int dpt_ckpt_best_read(const char *dir, uint64_t max_step, double *acc, int *epoch)
{
    char path[4096], name[64];
    if (snprintf(path, sizeof path, "%s/best", dir) >= (int)sizeof path)
        return 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    unsigned long long step = 0;
    int ok = fscanf(f, "%63s epoch %d step %llu test_acc %lf", name, epoch, &step, acc) == 4;
    fclose(f);
    /* a resume from a checkpoint older than the best: that best lies in the run's future */
    return ok && !strcmp(name, "best.dpt") && step <= max_step;
}

dpt_status_t dpt_ckpt_best_save(const char *dir, int epoch, uint64_t step, double acc,
                                const float *params, size_t np, const float *buffers, size_t nb)
{
    char path[4096], ptr[4096];
    if (snprintf(path, sizeof path, "%s/best.dpt", dir) >= (int)sizeof path
        || snprintf(ptr, sizeof ptr, "%s/best", dir) >= (int)sizeof ptr)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--checkpoint-dir: path too long");
    DPT_CHECK(dpt__make_dirs(dir));
    DPT_CHECK(dpt_weights_save(path, params, np, buffers, nb));
    char line[128];
    int len = snprintf(line, sizeof line, "best.dpt epoch %d step %llu test_acc %.6f\n", epoch,
                       (unsigned long long)step, acc);
    const void *parts[1] = {line};
    size_t lens[1] = {(size_t)len};
    return dpt__write_atomic(ptr, 1, parts, lens);
}
