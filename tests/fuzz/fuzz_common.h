/* fuzz_common.h: shared by the libFuzzer targets (tests/fuzz/fuzz_*.c). Our parsers read files,
 * so each input is written to a private scratch directory under /dev/shm (or /tmp) first. */
#ifndef DPT_FUZZ_COMMON_H
#define DPT_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dptrain/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fz_dir[256];

/* The scratch directory, made once per process. */
static const char *fz_scratch(void)
{
    if (!fz_dir[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(fz_dir, sizeof fz_dir, "%s/dpt-fuzz-%d", base, (int)getpid());
        mkdir(fz_dir, 0700);
        dpt_log_set_level(DPT_LOG_ERROR);   /* warnings about bad inputs are expected */
    }
    return fz_dir;
}

/* Write data to scratch/name; returns the path (static buffer per call site is the caller's). */
static void fz_write(const char *name, const uint8_t *data, size_t n, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", fz_scratch(), name);
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (n && fwrite(data, 1, n, f) != n)
        abort();
    fclose(f);
}

#endif
