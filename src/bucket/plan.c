/* plan.c: how the gradient arena is cut into buckets (bucket.h): at layer boundaries, in
 * backward order, the first bucket small so that communication starts early. Computed from the
 * model's segments only, so every rank plans the same buckets. */
#include "bucket/internal.h"
#include "dptrain/alloc.h"

/* Layer ranges -> buckets, last layer first. Returns the bucket count written to out (which has
 * room for n_segs entries). */
int dpt__bucket_plan(const dpt_param_segment_t *segs, int n_segs, size_t first_bytes,
                     size_t bucket_bytes, bucket_t *out)
{
    int n = 0;
    size_t hi = 0, lo = 0, bytes = 0;
    int open = 0;
    for (int s = n_segs - 1; s >= 0;) {
        /* the layer owning segment s: segments s0..s with the same layer */
        int s0 = s;
        while (s0 > 0 && segs[s0 - 1].layer == segs[s].layer)
            s0--;
        size_t l_lo = segs[s0].offset, l_hi = segs[s].offset + segs[s].count;
        if (!open) {
            hi = l_hi;
            bytes = 0;
            open = 1;
        }
        lo = l_lo;
        bytes += (l_hi - l_lo) * sizeof(float);
        size_t budget = n == 0 ? first_bytes : bucket_bytes;
        if (bytes >= budget || s0 == 0) {
            out[n++] = (bucket_t){.off = lo, .count = hi - lo};
            open = 0;
        }
        s = s0 - 1;
    }
    return n;
}

void dpt__bucket_sizes(const dpt_bucket_config_t *cfg, size_t *first, size_t *rest)
{
    *first = cfg->first_bytes ? cfg->first_bytes : (size_t)1 << 20;
    *rest = cfg->bucket_bytes ? cfg->bucket_bytes : (size_t)25 << 20;
}

size_t dpt_bucket_max_bytes(const dpt_param_segment_t *segs, int n_segs,
                            const dpt_bucket_config_t *cfg)
{
    if (n_segs <= 0)
        return 0;
    bucket_t *b = dpt_calloc((size_t)n_segs * sizeof *b);
    if (!b)
        return 0;
    size_t first, rest, max = 0;
    dpt__bucket_sizes(cfg, &first, &rest);
    int n = dpt__bucket_plan(segs, n_segs, first, rest, b);
    for (int i = 0; i < n; i++)
        if (b[i].count * sizeof(float) > max)
            max = b[i].count * sizeof(float);
    dpt_free(b);
    return max;
}
