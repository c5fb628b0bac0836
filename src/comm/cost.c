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
    if (!strcmp(algo, "shm")) {
        if (nbytes <= DPT_COLL_SHM_SMALL_BYTES)   /* one flag handoff; copy in, fold p n */
            return a + (1.0 + p) * n * g;
        return 3.0 * a + (3.0 + 1.0 / p) * n * g;   /* 3 barriers; copy in, fold, copy out */
    }
    if (!strcmp(algo, "tree")) {
        int d = ceil_log2(p);
        return 2.0 * d * (a + n * b) + d * n * g;
    }
    return -1.0;
}

int dpt_coll_cost_cal_index(const char *algo)
{
    static const char *const names[DPT_COLL_CAL_ALGOS] = DPT_COLL_CAL_NAMES;
    for (int i = 0; algo && i < DPT_COLL_CAL_ALGOS; i++)
        if (!strcmp(algo, names[i]))
            return i;
    return -1;
}

double dpt_coll_cost_estimate(const char *algo, int p, size_t nbytes, size_t segment_bytes,
                              const dpt_coll_cost_t *c)
{
    int a = dpt_coll_cost_cal_index(algo);
    /* the model of the window variant is that of shm, of hier that of ring (between leaders) */
    const char *model = a == 5 ? "shm" : a == 6 ? "ring" : algo;
    double t = dpt_coll_cost_predict(model, p, nbytes, segment_bytes, c);
    if (t < 0 || a < 0 || p == 1 || nbytes == 0 || c->n_sizes <= 0)
        return t;
    const double *m = c->measured[a];
    const double n = (double)nbytes;
    int lo = -1, hi = -1;   /* measured sizes just below / at-or-above n */
    for (int i = 0; i < c->n_sizes; i++) {
        if (!(m[i] > 0))
            continue;
        if (c->sizes[i] <= n)
            lo = i;
        if (c->sizes[i] >= n && hi < 0)
            hi = i;
    }
    if (lo < 0 && hi < 0)
        return t;
    if (lo < 0)
        return m[hi];
    if (hi < 0 || hi == lo) {   /* at or past the largest measured size: scale by the model */
        if (c->sizes[lo] == n)
            return m[lo];
        double at = dpt_coll_cost_predict(model, p, (size_t)c->sizes[lo], segment_bytes, c);
        return at > 0 ? m[lo] * t / at : m[lo] * n / c->sizes[lo];
    }
    double f = log(n / c->sizes[lo]) / log(c->sizes[hi] / c->sizes[lo]);
    return exp(log(m[lo]) + f * (log(m[hi]) - log(m[lo])));
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

/* Parse up to `max` doubles after the key of `line`; -1 on anything that is not a number. */
static int parse_values(const char *line, double *v, int max)
{
    const char *q = line + strcspn(line, " \t");
    int n = 0;
    for (;;) {
        q += strspn(q, " \t\n");
        if (!*q)
            return n;
        char *end;
        double x = strtod(q, &end);
        if (end == q || n == max || !isfinite(x) || x < 0)
            return -1;
        v[n++] = x;
        q = end;
    }
}

dpt_status_t dpt_coll_cost_load(const char *path, const char *key, dpt_coll_cost_t *out)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return dpt_error_set(DPT_ERR_IO, "%s: %s", path, strerror(errno));
    char line[1024];
    int lineno = 0, found = 0;
    dpt_coll_cost_t k = {0};
    int cal_n = -1;                               /* sizes on the key@cal line */
    int have[DPT_COLL_CAL_ALGOS] = {0};
    double tmp[DPT_COLL_CAL_SIZES + 1];
    size_t klen = strlen(key);
    dpt_status_t st = DPT_OK;
    while (st == DPT_OK && fgets(line, sizeof line, f)) {
        lineno++;
        if (line[0] == '#' || line[0] == '\n' || strncmp(line, key, klen))
            continue;
        const char *rest = line + klen;
        int n = parse_values(line, tmp, DPT_COLL_CAL_SIZES + 1);
        if (*rest == ' ' || *rest == '\t') {             /* "key alpha beta gamma" */
            if (n != 3) {
                st = dpt_error_set(DPT_ERR_FORMAT, "%s:%d: damaged cost entry for %s", path,
                                   lineno, key);
                break;
            }
            k.alpha = tmp[0], k.beta = tmp[1], k.gamma = tmp[2];
            found = 1;
        } else if (*rest == '@') {
            char sub[32];
            if (sscanf(rest + 1, "%31s", sub) != 1)
                continue;
            int a = dpt_coll_cost_cal_index(sub), is_cal = !strcmp(sub, "cal");
            if (a < 0 && !is_cal)
                continue;   /* an algorithm this build does not know: ignore */
            int bad = n < 1 || n > DPT_COLL_CAL_SIZES;
            for (int i = 1; is_cal && !bad && i < n; i++)
                bad = !(tmp[i] > tmp[i - 1]);
            if (bad) {
                st = dpt_error_set(DPT_ERR_FORMAT, "%s:%d: damaged calibration line for %s",
                                   path, lineno, key);
            } else if (is_cal) {
                cal_n = n;
                memcpy(k.sizes, tmp, (size_t)n * sizeof *tmp);
            } else {
                have[a] = n;
                memcpy(k.measured[a], tmp, (size_t)n * sizeof *tmp);
            }
        }
    }
    fclose(f);
    if (st != DPT_OK)
        return st;
    if (!found)
        return dpt_error_set(DPT_ERR_IO, "%s: no entry for %s", path, key);
    for (int a = 0; a < DPT_COLL_CAL_ALGOS && cal_n > 0; a++)
        if (have[a] && have[a] != cal_n)
            return dpt_error_set(DPT_ERR_FORMAT, "%s: calibration of %s has %d sizes, not %d",
                                 path, key, have[a], cal_n);
    k.n_sizes = cal_n > 0 ? cal_n : 0;
    *out = k;
    return DPT_OK;
}

dpt_status_t dpt_coll_cost_save(const char *path, const char *key, const dpt_coll_cost_t *c)
{
    if (strchr(key, ' ') || strchr(key, '\n') || strchr(key, '@') || !*key)
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
        size_t klen = strlen(key);
        while (fgets(line, sizeof line, in))   /* drop "key" and "key@..." */
            if (!(sscanf(line, "%511s", k) == 1 && !strncmp(k, key, klen)
                  && (k[klen] == '\0' || k[klen] == '@')))
                fputs(line, out);
        fclose(in);
    }
    fprintf(out, "%s %.9g %.9g %.9g\n", key, c->alpha, c->beta, c->gamma);
    if (c->n_sizes > 0) {
        static const char *const names[DPT_COLL_CAL_ALGOS] = DPT_COLL_CAL_NAMES;
        fprintf(out, "%s@cal", key);
        for (int i = 0; i < c->n_sizes; i++)
            fprintf(out, " %.0f", c->sizes[i]);
        fputc('\n', out);
        for (int a = 0; a < DPT_COLL_CAL_ALGOS; a++) {
            fprintf(out, "%s@%s", key, names[a]);
            for (int i = 0; i < c->n_sizes; i++)
                fprintf(out, " %.6g", c->measured[a][i] > 0 ? c->measured[a][i] : 0.0);
            fputc('\n', out);
        }
    }
    int bad = ferror(out);
    bad |= fflush(out) != 0 || fsync(fileno(out)) != 0;
    bad |= fclose(out) != 0;
    if (bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return dpt_error_set(DPT_ERR_IO, "%s: cannot write the cost cache", path);
    }
    return DPT_OK;
}
