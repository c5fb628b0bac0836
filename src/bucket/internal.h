/* internal.h: what the bucketer's files share (bucket.c: the step and the communication thread;
 * plan.c: the cut of the arena into buckets). */
#ifndef DPT_BUCKET_INTERNAL_H
#define DPT_BUCKET_INTERNAL_H

#include <stddef.h>

#include "dptrain/bucket.h"

typedef struct bucket {
    size_t off, count;   /* floats */
    size_t ready;        /* floats reported ready this step */
    int queued;
} bucket_t;

/* Layer ranges -> buckets, last layer first. Returns the bucket count written to out (which has
 * room for n_segs entries). */
int dpt__bucket_plan(const dpt_param_segment_t *segs, int n_segs, size_t first_bytes,
                     size_t bucket_bytes, bucket_t *out);
/* The first bucket's and the others' byte budgets, with the defaults for 0 (1 MiB, 25 MiB). */
void dpt__bucket_sizes(const dpt_bucket_config_t *cfg, size_t *first, size_t *rest);

#endif
