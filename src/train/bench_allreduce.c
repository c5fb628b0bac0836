/* bench_allreduce.c: `dptrain bench allreduce`, every all-reduce algorithm and MPI_Allreduce side
 * by side over a range of sizes (nccl-tests style).
 *
 * Per (size, algorithm): one verified call on known data (integers, so a float32 SUM is exact:
 * `wrong` counts elements that differ from the reference on any rank), then `reps` timed blocks of
 * `iters` back-to-back calls; the time of a block is the slowest rank's, the reported time the
 * median block. algbw = bytes / time; busbw = algbw * 2(p-1)/p (the nccl-tests definition, the
 * bytes each rank must move for a bandwidth-optimal all-reduce). In the same run: the memcpy
 * bandwidth of the machine (all ranks copying at once, as they do in an on-node all-reduce) and
 * the alpha-beta-gamma model's prediction, from the very model "auto" fits (dpt_coll_auto_tune:
 * a ping-pong between ranks 0 and 1 and a reduction timing on rank 0, shared by rank 0).
 * --compress CODEC: the rows are those of bench_compress.c (the all-reduce through a codec). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "dptrain/alloc.h"
#include "dptrain/coll.h"
#include "dptrain/coll_cost.h"
#include "dptrain/trainer.h"
#include "train/internal.h"

#define MAX_ALGOS 12
#define ZERO_COPY "0copy"   /* --algos suffix: that algorithm on a buffer inside the shm window */

typedef struct bench {
    const dpt_bench_coll_config_t *cfg;
    int rank, size;
    dpt_coll_t *coll;
    dpt_coll_algo_t algos[MAX_ALGOS];
    int in_win[MAX_ALGOS];   /* "<algo>0copy": on the window buffer */
    char names[MAX_ALGOS][24];
    int n_algos;
    dpt_dtype_t dtype;
    dpt_redop_t op;
    size_t esize;
    void *buf;         /* the buffer of the algorithm at hand: heap or win */
    void *heap, *win;  /* win: dpt_coll_buffer(), NULL without a window */
    float *ref;        /* float32 reference of the verified call */
    dpt_coll_cost_t cost;
    FILE *out;
} bench_t;

/* float <-> 16-bit storage for the verification data (integers of |x| <= 8p: exact in both). */
static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);   /* exact for these small integers */
}

static float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t to_f16(float f)   /* small integers only: exact */
{
    if (f == 0.0f)
        return signbit(f) ? 0x8000u : 0;
    uint16_t sign = f < 0 ? 0x8000u : 0;
    float a = fabsf(f);
    int e;
    float m = frexpf(a, &e);   /* a = m * 2^e, m in [0.5, 1) */
    int exp = e - 1 + 15;
    uint16_t mant = (uint16_t)lrintf((m * 2.0f - 1.0f) * 1024.0f);
    return (uint16_t)(sign | (uint16_t)(exp << 10) | mant);
}

static float from_f16(uint16_t h)
{
    int exp = (h >> 10) & 31, mant = h & 1023;
    float v = exp == 0 ? ldexpf((float)mant, -24) : ldexpf(1.0f + mant / 1024.0f, exp - 15);
    return (h & 0x8000u) ? -v : v;
}

static float get(const bench_t *b, size_t i)
{
    if (b->dtype == DPT_DTYPE_F32)
        return ((const float *)b->buf)[i];
    uint16_t h = ((const uint16_t *)b->buf)[i];
    return b->dtype == DPT_DTYPE_BF16 ? from_bf16(h) : from_f16(h);
}

static void put(bench_t *b, size_t i, float v)
{
    if (b->dtype == DPT_DTYPE_F32)
        ((float *)b->buf)[i] = v;
    else
        ((uint16_t *)b->buf)[i] = b->dtype == DPT_DTYPE_BF16 ? to_bf16(v) : to_f16(v);
}

static float pattern(int rank, size_t i) { return (float)((long)((i * 7 + (size_t)rank * 13) % 17) - 8); }

/* One verified call: returns the number of wrong elements summed over ranks. */
static dpt_status_t verify(bench_t *b, dpt_coll_algo_t algo, size_t count, long *wrong)
{
    for (size_t i = 0; i < count; i++) {
        put(b, i, pattern(b->rank, i));
        double s = 0;
        for (int r = 0; r < b->size; r++)
            s += pattern(r, i);
        b->ref[i] = b->op == DPT_REDOP_AVG ? (float)(s / b->size) : (float)s;
    }
    DPT_CHECK(dpt_coll_allreduce(b->coll, b->buf, count, b->dtype, b->op, algo));
    double tol = b->op == DPT_REDOP_AVG ? (b->dtype == DPT_DTYPE_F32 ? 1e-6 : 1e-2) : 0.0;
    long bad = 0;
    for (size_t i = 0; i < count; i++) {
        float v = get(b, i);
        if (!(fabs((double)v - b->ref[i]) <= tol * fmax(1.0, fabs(b->ref[i]))))
            bad++;
    }
    MPI_Allreduce(&bad, wrong, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    return DPT_OK;
}

/* Calls per timed block: cfg->iters, or about 30 ms of calls as the slowest rank sees one warm
 * call (decided identically everywhere). The buffer holds zeros: no overflow over many sums.
 * auto is warmed until its choice for the size is final (a close race times the contenders on
 * the first calls of a size, DPT_COLL_AUTO_SETTLE_CALLS at most; verify made one): the rows
 * measure auto as a training run meets it, step after step. */
static dpt_status_t block_iters(bench_t *b, dpt_coll_algo_t algo, size_t count, int *iters)
{
    int warm = algo == DPT_COLL_ALGO_AUTO ? DPT_COLL_AUTO_SETTLE_CALLS - 1 : 1;
    for (int i = 0; i < warm; i++)
        DPT_CHECK(dpt_coll_allreduce(b->coll, b->buf, count, b->dtype, b->op, algo));
    *iters = b->cfg->iters;
    if (*iters > 0)
        return DPT_OK;
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    DPT_CHECK(dpt_coll_allreduce(b->coll, b->buf, count, b->dtype, b->op, algo));
    double t1 = MPI_Wtime() - t0, tmax;
    MPI_Allreduce(&t1, &tmax, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    *iters = (int)fmin(1000.0, fmax(1.0, 0.03 / fmax(tmax, 1e-7)));
    return DPT_OK;
}

/* Seconds per call of one block of `iters` calls: the slowest rank's block time / iters. */
static dpt_status_t time_block(bench_t *b, dpt_coll_algo_t algo, size_t count, int iters,
                               double *sec)
{
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int k = 0; k < iters; k++)
        DPT_CHECK(dpt_coll_allreduce(b->coll, b->buf, count, b->dtype, b->op, algo));
    double t = (MPI_Wtime() - t0) / iters;
    MPI_Allreduce(&t, sec, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return DPT_OK;
}

/* memcpy bandwidth with every rank copying at once: bytes copied per second, per rank and sum. */
static void memcpy_line(bench_t *b)
{
    size_t n = b->cfg->max_bytes < ((size_t)1 << 20) ? (size_t)1 << 20 : b->cfg->max_bytes;
    if (n > (size_t)64 << 20)
        n = (size_t)64 << 20;
    char *src = dpt_malloc(n), *dst = dpt_malloc(n);
    double per = 0;
    if (src && dst) {
        memset(src, 3, n);
        memset(dst, 0, n);
        double ts[5];
        for (int r = 0; r < 5; r++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            memcpy(dst, src, n);
            ts[r] = MPI_Wtime() - t0;
        }
        per = (double)n / dpt__median(ts, 5) / 1e9;
    }
    double sum = 0, mn = 0;
    MPI_Allreduce(&per, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(&per, &mn, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
    if (b->rank == 0) {
        if (b->cfg->json)
            fprintf(b->out, "{\"algo\":\"memcpy\",\"np\":%d,\"bytes\":%zu,\"copy_GBs\":%.3f,"
                    "\"copy_GBs_all\":%.3f}\n", b->size, n, mn, sum);
        else
            fprintf(b->out, "# memcpy %zu bytes, all %d ranks at once: %.2f GB/s per rank "
                    "(slowest), %.2f GB/s together\n", n, b->size, mn, sum);
    }
    dpt_free(src);
    dpt_free(dst);
}

/* Open MPI 4.1's fixed decision for a commutative all-reduce (coll/tuned), for the prediction
 * of the "mpi" row: recursive doubling for small messages, Rabenseifner otherwise. */
static const char *mpi_equivalent(int p, size_t nbytes)
{
    if (p == 2)
        return nbytes < ((size_t)256 << 10) ? "rd" : "rhd";
    return nbytes < ((size_t)8 << 10) ? "rd" : "rhd";
}

static int compressing(const dpt_bench_coll_config_t *cfg)
{
    return cfg->compress && strcmp(cfg->compress, "none");
}

static dpt_status_t parse_algos(bench_t *b)
{
    char list[256];
    const char *def = compressing(b->cfg) ? "ring" : "ring,tree,rd,rhd,shm,auto,mpi";
    snprintf(list, sizeof list, "%s", b->cfg->algos ? b->cfg->algos : def);
    b->n_algos = 0;
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (b->n_algos == MAX_ALGOS)
            return dpt_error_set(DPT_ERR_INVALID_ARG, "--algos: more than %d names", MAX_ALGOS);
        int a = b->n_algos;
        size_t len = strlen(t), sl = strlen(ZERO_COPY);
        b->in_win[a] = len > sl && !strcmp(t + len - sl, ZERO_COPY);
        if (b->in_win[a])
            t[len - sl] = '\0';
        dpt_status_t st = dpt_coll_algo_from_name(t, &b->algos[a]);
        if (st != DPT_OK) {
            char why[256];   /* copy first: the message buffer is about to be rewritten */
            snprintf(why, sizeof why, "%s", dpt_error_get());
            return dpt_error_set(st, "--algos: %s", why);
        }
        snprintf(b->names[a], sizeof b->names[a], "%s%s", t, b->in_win[a] ? ZERO_COPY : "");
        b->n_algos++;
    }
    if (!b->n_algos)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--algos: empty list");
    return DPT_OK;
}

static dpt_status_t parse_type(bench_t *b)
{
    const char *d = b->cfg->dtype ? b->cfg->dtype : "f32", *o = b->cfg->op ? b->cfg->op : "sum";
    if (!strcmp(d, "f32"))
        b->dtype = DPT_DTYPE_F32;
    else if (!strcmp(d, "bf16"))
        b->dtype = DPT_DTYPE_BF16;
    else if (!strcmp(d, "f16"))
        b->dtype = DPT_DTYPE_F16;
    else
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--dtype: '%s' is not f32, bf16 or f16", d);
    if (!strcmp(o, "sum"))
        b->op = DPT_REDOP_SUM;
    else if (!strcmp(o, "avg"))
        b->op = DPT_REDOP_AVG;
    else
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--op: '%s' is not sum or avg", o);
    b->esize = dpt_dtype_size(b->dtype);
    return DPT_OK;
}

/* Whether variant a can run here, and why not (for the "unavailable" line). */
static int variant_ok(const bench_t *b, int a, const char **why)
{
    if (!dpt_coll_algo_available(b->coll, b->algos[a], why))
        return 0;
    if (b->in_win[a] && !b->win) {
        if (why)
            *why = "no shm window here (ranks on several nodes)";
        return 0;
    }
    return 1;
}

/* One row: every variant verified, then timed in `reps` rounds of one block each, the variants
 * interleaved within a round (a slow spell of the machine hits all of them, not the one that
 * happened to be timed during it; the ratios between them are what the benchmark is for). */
static dpt_status_t bench_row(bench_t *b, size_t count, double *sec, long *wrong)
{
    int iters[MAX_ALGOS];
    double blocks[MAX_ALGOS][64];
    int reps = b->cfg->reps < 1 ? 1 : b->cfg->reps > 64 ? 64 : b->cfg->reps;
    for (int a = 0; a < b->n_algos; a++) {
        wrong[a] = 0;
        if (!variant_ok(b, a, NULL))
            continue;
        b->buf = b->in_win[a] ? b->win : b->heap;
        DPT_CHECK(verify(b, b->algos[a], count, &wrong[a]));
    }
    memset(b->heap, 0, count * b->esize);   /* zeros: no overflow over many in-place sums */
    if (b->win)
        memset(b->win, 0, count * b->esize);
    for (int a = 0; a < b->n_algos; a++) {
        if (!variant_ok(b, a, NULL))
            continue;
        b->buf = b->in_win[a] ? b->win : b->heap;
        DPT_CHECK(block_iters(b, b->algos[a], count, &iters[a]));
    }
    for (int r = 0; r < reps; r++)
        for (int a = 0; a < b->n_algos; a++) {
            if (!variant_ok(b, a, NULL))
                continue;
            b->buf = b->in_win[a] ? b->win : b->heap;
            DPT_CHECK(time_block(b, b->algos[a], count, iters[a], &blocks[a][r]));
        }
    for (int a = 0; a < b->n_algos; a++)
        sec[a] = variant_ok(b, a, NULL) ? dpt__median(blocks[a], reps) : -1.0;
    return DPT_OK;
}

dpt_status_t dpt_bench_allreduce(const dpt_bench_coll_config_t *cfg, FILE *out, long *wrong_total)
{
    bench_t b = {.cfg = cfg, .out = out};
    dpt_p2p_t *p2p = NULL;
    void *heap_alloc = NULL;
    dpt_status_t st = DPT_OK;
    *wrong_total = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &b.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &b.size);
    DPT_CHECK(parse_algos(&b));
    DPT_CHECK(parse_type(&b));
    if (compressing(cfg))
        DPT_CHECK(dpt__bench_codec_check(cfg));
    if (cfg->min_bytes > cfg->max_bytes || cfg->factor < 2)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--min-bytes %zu must be <= --max-bytes %zu "
                             "and --factor >= 2", cfg->min_bytes, cfg->max_bytes);
    size_t max_count = cfg->max_bytes / b.esize;
    if (max_count == 0)
        max_count = 1;
    size_t own = compressing(cfg) ? 1 : max_count;   /* bench_compress.c has its own */
    b.heap = heap_alloc = dpt_malloc(own * b.esize);
    b.ref = dpt_malloc(own * sizeof(float));
    if (!b.heap || !b.ref) {
        st = dpt_error_set(DPT_ERR_NOMEM, "bench allreduce: %zu-byte buffers", cfg->max_bytes);
        goto done;
    }
    DPT_CHECK_GOTO(dpt_p2p_mpi_create(MPI_COMM_WORLD, &p2p), st, done);
    dpt_coll_config_t cc = {.max_bytes = max_count * b.esize, .segment_bytes = cfg->segment_bytes,
                            .deterministic = cfg->deterministic};
    DPT_CHECK_GOTO(dpt_coll_create(p2p, &cc, &b.coll), st, done);
    DPT_CHECK_GOTO(dpt_coll_auto_tune(b.coll), st, done);   /* the model auto uses */
    dpt_coll_auto_model(b.coll, &b.cost);
    size_t cap = 0;
    b.win = dpt_coll_buffer(b.coll, &cap);
    if (b.win && cap < max_count * b.esize)
        b.win = NULL;
    if (cfg->window) {   /* every algorithm on the window buffer */
        if (b.win) {
            b.heap = b.win;
            b.win = NULL;
        } else if (b.rank == 0) {
            fprintf(out, cfg->json ? "{\"note\":\"--window: no shm window, heap buffer used\"}\n"
                                   : "# --window: no shm window here, heap buffer used\n");
        }
    }
    if (b.rank == 0) {
        if (cfg->json)
            fprintf(out, "{\"algo\":\"model\",\"np\":%d,\"alpha_us\":%.3f,\"beta_GBs\":%.3f,"
                    "\"gamma_GBs\":%.3f}\n", b.size, 1e6 * b.cost.alpha,
                    b.cost.beta > 0 ? 1e-9 / b.cost.beta : 0.0,
                    b.cost.gamma > 0 ? 1e-9 / b.cost.gamma : 0.0);
        else {
            fprintf(out, "# dptrain bench allreduce: np %d, dtype %s, op %s%s\n", b.size,
                    cfg->dtype ? cfg->dtype : "f32",
                    cfg->op ? cfg->op : compressing(cfg) ? "avg" : "sum",
                    cfg->deterministic ? ", deterministic" : "");
            fprintf(out, "# model fit: alpha %.2f us, beta %.2f GB/s, gamma %.2f GB/s\n",
                    1e6 * b.cost.alpha, b.cost.beta > 0 ? 1e-9 / b.cost.beta : 0.0,
                    b.cost.gamma > 0 ? 1e-9 / b.cost.gamma : 0.0);
        }
    }
    for (int a = 0; a < b.n_algos; a++) {
        const char *why;
        if (b.rank == 0 && !variant_ok(&b, a, &why))
            fprintf(out, cfg->json ? "{\"algo\":\"%s\",\"np\":%d,\"unavailable\":\"%s\"}\n"
                                   : "# %s: not available with np %d: %s\n",
                    b.names[a], b.size, why);
    }
    memcpy_line(&b);
    if (compressing(cfg)) {
        st = dpt__bench_codec(cfg, b.coll, b.algos, b.n_algos, &b.cost, out, wrong_total);
        goto done;
    }
    if (b.rank == 0 && !cfg->json) {
        fprintf(out, "%12s", "bytes");
        for (int a = 0; a < b.n_algos; a++)
            fprintf(out, "  %9s %9s %9s", b.names[a], "busbw", "pred_us");
        fprintf(out, "  %6s\n%12s", "wrong", "");
        for (int a = 0; a < b.n_algos; a++)
            fprintf(out, "  %9s %9s %9s", "us", "GB/s", "");
        fprintf(out, "\n");
    }
    size_t seg = cfg->segment_bytes ? cfg->segment_bytes : (size_t)256 << 10;
    for (size_t bytes = cfg->min_bytes;; bytes *= (size_t)cfg->factor) {
        size_t count = bytes / b.esize;
        size_t nbytes = count * b.esize;
        double sec[MAX_ALGOS];
        long wrong[MAX_ALGOS], wrong_row = 0;
        DPT_CHECK_GOTO(bench_row(&b, count, sec, wrong), st, done);
        if (b.rank == 0 && !cfg->json)
            fprintf(out, "%12zu", nbytes);
        for (int a = 0; a < b.n_algos; a++) {
            if (sec[a] < 0) {
                if (b.rank == 0 && !cfg->json)
                    fprintf(out, "  %9s %9s %9s", "-", "-", "-");
                continue;
            }
            const char *name = dpt_coll_algo_name(b.algos[a]);
            const char *model = b.algos[a] == DPT_COLL_ALGO_MPI ? mpi_equivalent(b.size, nbytes)
                                                                : name;
            double pred = dpt_coll_cost_predict(model, b.size, nbytes, seg, &b.cost);
            const char *choice = "";
            if (b.algos[a] == DPT_COLL_ALGO_AUTO)   /* its own model's pick and prediction */
                choice = dpt_coll_algo_name(dpt_coll_auto_choice(
                    b.coll, b.in_win[a] ? b.win : b.heap, nbytes, &pred));
            double algbw = sec[a] > 0 ? (double)nbytes / sec[a] / 1e9 : 0.0;
            double busbw = b.size > 1 ? algbw * 2.0 * (b.size - 1) / b.size : algbw;
            wrong_row += wrong[a];
            if (b.rank != 0)
                continue;
            if (cfg->json)
                fprintf(out, "{\"algo\":\"%s\",\"np\":%d,\"bytes\":%zu,\"dtype\":\"%s\","
                        "\"time_us\":%.3f,\"algbw_GBs\":%.4f,\"busbw_GBs\":%.4f,"
                        "\"predicted_us\":%.3f,\"wrong\":%ld%s%s%s}\n", b.names[a], b.size,
                        nbytes, cfg->dtype ? cfg->dtype : "f32", 1e6 * sec[a], algbw, busbw,
                        pred >= 0 ? 1e6 * pred : -1.0, wrong[a], *choice ? ",\"choice\":\"" : "",
                        choice, *choice ? "\"" : "");
            else
                fprintf(out, "  %9.1f %9.3f %9.1f", 1e6 * sec[a], busbw,
                        pred >= 0 ? 1e6 * pred : -1);
        }
        *wrong_total += wrong_row;
        if (b.rank == 0 && !cfg->json)
            fprintf(out, "  %6ld\n", wrong_row);
        if (b.rank == 0)
            fflush(out);
        if (bytes > cfg->max_bytes / (size_t)cfg->factor || bytes == 0)
            break;
    }
done:
    dpt_coll_destroy(b.coll);
    dpt_p2p_destroy(p2p);
    dpt_free(heap_alloc);
    dpt_free(b.ref);
    return st;
}
