/* cost.c: the alpha-beta-gamma model (coll_cost.h): predictions, the link fit, the choice, and
 * the cache file. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dptrain/coll_cost.h"

static int ceil_log2(int p)
{
    int k = 0;
    while ((1 << k) < p)
        k++;
    return k;
}

static int floor_pow2(int p)
{
    int q = 1;
    while (q * 2 <= p)
        q *= 2;
    return q;
}

/* Extra cost of folding p - p' ranks into a power of two p' and back (rd, rhd). */
static double fold_in(int p, double n, const dpt_coll_cost_t *c)
{
    if (p == floor_pow2(p))
        return 0.0;
    return 2.0 * (c->alpha + n * c->beta) + n * c->gamma;
}

double dpt_coll_cost_predict(const char *algo, int p, size_t nbytes, size_t segment_bytes,
                             const dpt_coll_cost_t *c)
{
    if (!algo || p < 1)
        return -1.0;
    if (p == 1 || nbytes == 0)
        return 0.0;
    double n = (double)nbytes, a = c->alpha, b = c->beta, g = c->gamma;
    if (!strcmp(algo, "ring")) {
        /* algo_ring.c streams its 2 (p - 1) steps x segs segments with many in flight: the
         * critical path is 2 (p - 1) messages, plus one latency per further segment of the
         * pipeline (an idealisation: the per-message costs overlap with the transfers). */
        double chunk = n / p;
        double segs = segment_bytes ? ceil(chunk / (double)segment_bytes) : 1.0;
        if (segs < 1.0)
            segs = 1.0;
        return (2.0 * (p - 1) + segs - 1.0) * a + 2.0 * (p - 1) / p * n * b
               + (double)(p - 1) / p * n * g;
    }
    if (!strcmp(algo, "rd")) {
        int q = floor_pow2(p);
        return ceil_log2(q) * (a + n * b + n * g) + fold_in(p, n, c);
    }
    if (!strcmp(algo, "rhd")) {
        int q = floor_pow2(p);
        return 2.0 * ceil_log2(q) * a + 2.0 * (q - 1) / q * n * b + (double)(q - 1) / q * n * g
               + fold_in(p, n, c);
    }
    if (!strcmp(algo, "shm")) {   /* 3 barriers; copy in, fold (n + n/p), copy out */
        return 3.0 * a + (3.0 + 1.0 / p) * n * g;
    }
    if (!strcmp(algo, "tree")) {
        int d = ceil_log2(p);
        return 2.0 * d * (a + n * b) + d * n * g;
    }
    return -1.0;
}

dpt_status_t dpt_coll_cost_fit_link(const double *bytes, const double *seconds, int n,
                                    double *alpha, double *beta)
{
    if (n < 2)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "cost fit: need at least 2 samples, got %d", n);
    /* Weighted by 1/t^2, i.e. least relative error, so that the microsecond latencies of small
     * messages count as much as the milliseconds of large ones. */
    double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int i = 0; i < n; i++) {
        double w = seconds[i] > 0 ? 1.0 / (seconds[i] * seconds[i]) : 1.0;
        sw += w;
        sx += w * bytes[i];
        sy += w * seconds[i];
        sxx += w * bytes[i] * bytes[i];
        sxy += w * bytes[i] * seconds[i];
    }
    double den = sw * sxx - sx * sx;
    if (fabs(den) <= 1e-12 * fmax(1e-300, sw * sxx))
        return dpt_error_set(DPT_ERR_INVALID_ARG, "cost fit: all %d samples have the same size", n);
    double b = (sw * sxy - sx * sy) / den;
    double a = (sy - b * sx) / sw;
    *alpha = a > 0 ? a : 0;
    *beta = b > 0 ? b : 0;
    return DPT_OK;
}

const char *dpt_coll_cost_choose(int p, size_t nbytes, size_t segment_bytes,
                                 const dpt_coll_cost_t *c, const char *const *algos, int n_algos,
                                 double *predicted)
{
    const char *best = NULL;
    double best_t = 0;
    for (int i = 0; i < n_algos; i++) {
        double t = dpt_coll_cost_predict(algos[i], p, nbytes, segment_bytes, c);
        if (t < 0)
            continue;
        if (!best || t < best_t) {
            best = algos[i];
            best_t = t;
        }
    }
    if (best && predicted)
        *predicted = best_t;
    return best;
}

dpt_status_t dpt_coll_cost_load(const char *path, const char *key, dpt_coll_cost_t *out)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return dpt_error_set(DPT_ERR_IO, "%s: %s", path, strerror(errno));
    char line[1024];
    int lineno = 0;
    dpt_status_t st = dpt_error_set(DPT_ERR_IO, "%s: no entry for %s", path, key);
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char k[512];
        double a, b, g;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        int got = sscanf(line, "%511s %lf %lf %lf", k, &a, &b, &g);
        if (got < 1 || strcmp(k, key))
            continue;
        if (got != 4 || !(a >= 0) || !(b >= 0) || !(g >= 0) || !isfinite(a + b + g)) {
            st = dpt_error_set(DPT_ERR_FORMAT, "%s:%d: damaged cost entry for %s", path, lineno,
                               key);
            break;
        }
        *out = (dpt_coll_cost_t){.alpha = a, .beta = b, .gamma = g};
        st = DPT_OK;
        break;
    }
    fclose(f);
    return st;
}

dpt_status_t dpt_coll_cost_save(const char *path, const char *key, const dpt_coll_cost_t *c)
{
    if (strchr(key, ' ') || strchr(key, '\n') || !*key)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "cost cache: bad key '%s'", key);
    char tmp[4096];
    int w = snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    if (w < 0 || (size_t)w >= sizeof tmp)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "cost cache: path too long: %s", path);
    FILE *out = fopen(tmp, "w");
    if (!out)
        return dpt_error_set(DPT_ERR_IO, "%s: %s", tmp, strerror(errno));
    FILE *in = fopen(path, "r");
    if (in) {   /* keep the other keys */
        char line[1024], k[512];
        while (fgets(line, sizeof line, in))
            if (!(sscanf(line, "%511s", k) == 1 && !strcmp(k, key)))
                fputs(line, out);
        fclose(in);
    }
    fprintf(out, "%s %.9g %.9g %.9g\n", key, c->alpha, c->beta, c->gamma);
    int bad = ferror(out);
    bad |= fflush(out) != 0 || fsync(fileno(out)) != 0;
    bad |= fclose(out) != 0;
    if (bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return dpt_error_set(DPT_ERR_IO, "%s: cannot write the cost cache", path);
    }
    return DPT_OK;
}
