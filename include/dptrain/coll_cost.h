/* coll_cost.h: the alpha-beta-gamma cost model of the all-reduce algorithms, its fit from
 * measurements and the choice `auto` makes from it.
 *
 *   alpha  seconds per message (latency + per-message software overhead)
 *   beta   seconds per byte sent over the slowest link a rank uses (1 / bandwidth)
 *   gamma  seconds per byte reduced locally (float32 add; memory-bound)
 *
 * For p ranks and n bytes (the formulas are the header comments of src/comm/algo_*.c):
 *   ring   2(p-1) alpha * s  +  2 (p-1)/p n beta  +  (p-1)/p n gamma,   s = segments per chunk
 *   rd     ceil(log2 p) (alpha + n beta + n gamma)   (+ 2 alpha + 2 n beta + n gamma if p is not 2^k)
 *   rhd    2 log2 p' alpha + 2 (p'-1)/p' n beta + (p'-1)/p' n gamma  (p' = 2^floor(log2 p), + fold-in)
 *   shm    3 alpha + (3 + 1/p) n gamma   (3 barriers; copy in, fold, copy out: memory passes)
 *   tree   2 ceil(log2 p) (alpha + n beta) + ceil(log2 p) n gamma   (binomial: the small-message
 *          half of algo_tree.c; its double binary tree for large buffers is not modelled yet)
 * The model only ranks the algorithms and reports its prediction next to measurements; every
 * input is identical on all ranks (rank 0 fits and broadcasts), so every rank makes the same
 * choice. */
#ifndef DPT_COLL_COST_H
#define DPT_COLL_COST_H

#include <stddef.h>

#include "dptrain/status.h"

/* Calibration (the probe of "auto", src/comm/auto.c): measured seconds of each algorithm at a
 * ladder of sizes, because the formulas above are idealisations (pipelining, cache effects,
 * the copies of shm, load on the node) and a plain alpha-beta-gamma ranking can be off by far
 * more than the 10% that separate close algorithms. Algorithms, in this order: */
#define DPT_COLL_CAL_ALGOS 7
#define DPT_COLL_CAL_NAMES {"ring", "tree", "rd", "rhd", "shm", "shm0", "hier"}
/* ("shm0": shm on a buffer inside its window, dpt_coll_buffer(): no copy in) */
#define DPT_COLL_CAL_SIZES 16
/* shm's flag path (no barriers) up to this many bytes, its barrier path above (algo_shm.c) */
#define DPT_COLL_SHM_SMALL_BYTES ((size_t)64 << 10)

typedef struct dpt_coll_cost {
    double alpha;   /* s per message */
    double beta;    /* s per byte on the wire */
    double gamma;   /* s per byte reduced */
    int n_sizes;                                       /* 0: not calibrated */
    double sizes[DPT_COLL_CAL_SIZES];                  /* bytes, increasing */
    double measured[DPT_COLL_CAL_ALGOS][DPT_COLL_CAL_SIZES]; /* seconds; <= 0: not measured */
} dpt_coll_cost_t;

/* Index of a calibrated algorithm name in DPT_COLL_CAL_NAMES, -1 if none. */
int dpt_coll_cost_cal_index(const char *algo);

/* The time "auto" ranks by: the model's prediction corrected by the calibration. Between two
 * measured sizes the measured times are interpolated log-log; past the largest measured size the
 * last measurement is scaled by the model (t(n) = t(m) * model(n) / model(m)); below the
 * smallest, the smallest's time. Without measurements of `algo` (or for "shm0"/"hier" without
 * any) it is the model's prediction (for "shm0": that of "shm"). Negative if unknown. */
double dpt_coll_cost_estimate(const char *algo, int p, size_t nbytes, size_t segment_bytes,
                              const dpt_coll_cost_t *c);

/* Predicted seconds of algorithm `algo` ("ring", "rd", "rhd", "tree", "shm") for p ranks and nbytes,
 * with pipelining segments of segment_bytes (0 = unsegmented). Negative if the name is unknown. */
double dpt_coll_cost_predict(const char *algo, int p, size_t nbytes, size_t segment_bytes,
                             const dpt_coll_cost_t *c);

/* Least-relative-error fit of t = alpha + beta * bytes over n >= 2 samples (one-way times).
 * DPT_ERR_INVALID_ARG if the samples cannot determine both (all sizes equal). Negative fits are
 * clamped at 0. */
dpt_status_t dpt_coll_cost_fit_link(const double *bytes, const double *seconds, int n,
                                    double *alpha, double *beta);

/* Of the n_algos names, the one with the lowest predicted time (first wins ties); its
 * prediction goes to *predicted when not NULL. NULL if none is known. */
const char *dpt_coll_cost_choose(int p, size_t nbytes, size_t segment_bytes,
                                 const dpt_coll_cost_t *c, const char *const *algos, int n_algos,
                                 double *predicted);

/* The cache of a fit: one line "key alpha beta gamma" per key in a text file, then for a
 * calibrated fit the line "key@cal s1 s2 ..." (sizes) and one line "key@<algo> t1 t2 ..."
 * (seconds, 0 = not measured) per algorithm. Load returns DPT_ERR_IO when the file or key is
 * absent (not an error for callers: they probe instead); DPT_ERR_FORMAT naming the file and line
 * for a damaged entry. An entry without calibration lines loads with n_sizes = 0. Save replaces
 * the key's lines atomically (temp file + rename). */
dpt_status_t dpt_coll_cost_load(const char *path, const char *key, dpt_coll_cost_t *out);
dpt_status_t dpt_coll_cost_save(const char *path, const char *key, const dpt_coll_cost_t *c);

#endif
