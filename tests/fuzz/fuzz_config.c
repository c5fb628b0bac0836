#define _GNU_SOURCE
/* fuzz_config: `--config FILE` parsing (lines of `name = value`, every flag type and range),
 * through the real command-line code: main.c is compiled in with its main renamed, and each input
 * is run as `dptrain eval --config FILE` (which stops before any work: no --weights). */
#include "fuzz_common.h"

int dptrain_main(int argc, char **argv);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    /* a config line asking for help would print the help and exit(0), and one giving weights
     * would run the evaluation, which initializes and finalizes MPI (once per process: the next
     * such input would abort): skip those inputs, the parsing is what this target is for */
    if ((size >= 4 && memmem(data, size, "help", 4))
        || (size >= 7 && memmem(data, size, "weights", 7)))
        return 0;
    fz_write("flags.conf", data, size, path, sizeof path);
    char *argv[] = {"dptrain", "eval", "--config", path, NULL};
    FILE *saved = stderr;
    stderr = fopen("/dev/null", "w");
    (void)dptrain_main(4, argv);
    fclose(stderr);
    stderr = saved;
    return 0;
}
