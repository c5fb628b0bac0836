/* internal.h: small helpers of src/core shared by the other modules (not installed): a CRC32
 * over any length, atomic file replacement (weights, shards, the prepare manifest) and a
 * "parallel for" on a few pthreads used by the data preparation and the shard reader. */
#ifndef DPT_CORE_INTERNAL_H
#define DPT_CORE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dptrain/status.h"

/* Seconds on the monotonic clock (for intervals). */
double dpt__now(void);

/* Median of v[0..n) (sorts v in place; 0 for n <= 0). */
double dpt__median(double *v, int n);

/* zlib's CRC32 (the gzip/PNG polynomial) of n bytes, continuing from `crc` (start with 0). Any
 * length: zlib itself takes a uInt. */
uint32_t dpt__crc32(uint32_t crc, const void *p, size_t n);

/* Replace `path` atomically with the concatenation of n_parts buffers: write "<path>.tmp",
 * fsync, rename over path, fsync the directory. On failure the tmp file is removed and path is
 * untouched. DPT_ERR_IO / DPT_ERR_INVALID_ARG with a message naming the file. */
dpt_status_t dpt__write_atomic(const char *path, int n_parts, const void *const *parts,
                               const size_t *lens);

/* mkdir -p: create dir and its missing parents (mode 0755). DPT_ERR_IO naming the component that
 * cannot be created or exists as a non-directory; DPT_ERR_INVALID_ARG for a too long path. */
dpt_status_t dpt__make_dirs(const char *dir);

/* Workers that dpt__parallel_for will use for n_jobs jobs and `threads` requested threads
 * (<= 0: every online core): at least 1, at most n_jobs (1 when n_jobs <= 0). */
int dpt__parallel_workers(int threads, int n_jobs);

/* Run fn(ctx, job, worker) for every job in [0, n_jobs) on dpt__parallel_workers(threads,
 * n_jobs) workers; the calling thread is worker 0, worker ids are dense from 0, so callers can
 * keep per-worker scratch in arrays. Jobs are handed out in increasing order as workers free up,
 * so fn must not depend on which worker runs a job. Returns when every job is done. If a thread
 * cannot be started, the remaining workers (at least the caller) do all the jobs. */
void dpt__parallel_for(int n_jobs, int threads, void (*fn)(void *ctx, int job, int worker),
                       void *ctx);

#endif
