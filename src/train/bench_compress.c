/* bench_compress.c: `dptrain bench allreduce --compress CODEC`: the all-reduce of each size
 * through a gradient codec (compress.h) instead of the plain algorithm, on gradient-like data.
 *
 * Data: rank r's gradient of element i is  s(i) (1 + r / 8) (m(i) + z_r(i)),  m and z_r standard
 * normals from Philox (a signal every rank shares plus this rank's minibatch noise), s(i) =
 * 1e-2, 1e-3, 1e-4 for consecutive "tensors" of 4096 elements (layers differ in scale). Philox is
 * counter-based, so every rank can regenerate every rank's inputs: rank 0 computes the exact
 * mean in double without a message more.
 *
 * Per (size, algorithm): a fresh codec (dpt_codec_create for n = the size's floats), then
 *   - one checked call (step 0, the codec's state fresh): rel_err = ||mean - exact|| / ||exact||
 *     over the bucket, and wrong = the ranks whose result's CRC32 differs from rank 0's (an
 *     all-gather of the checksums). Codecs with error feedback send different things on later
 *     calls (what they held back), so rel_err is that of the first call only;
 *   - `reps` timed blocks of `iters` calls (steps 1, 2, ...), each on the same inputs (copied in
 *     before each call, untimed): a block's time is the slowest rank's mean per call, the reported
 *     time_us the median block; t_code_us the same for the codec's encode + decode seconds
 *     (dpt_codec_stats_t.t_code, zstd included); bytes_sent the mean over ranks and timed calls
 *     of what the codec handed the transport per call.
 * algbw and busbw are those of the fp32 bytes (the effective bandwidth: comparable with the
 * plain rows), predicted_us the model's time of the plain fp32 all-reduce of the size (what the
 * codec competes with; -1 for auto and mpi). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dptrain/alloc.h"
#include "dptrain/compress.h"
#include "dptrain/rng.h"
#include "train/internal.h"

#define SEED 20240611u
#define TENSOR 4096
#define MAX_ALGOS 12

/* A standard normal, the i-th of stream `stream` (Box-Muller on one Philox block per pair). */
static double normal_at(uint64_t stream, size_t i)
{
    uint32_t w[4];
    dpt_philox4x32(SEED, stream, (uint64_t)(i / 2), w);
    double u1 = ((double)w[0] + 1.0) / 4294967296.0, u2 = (double)w[1] / 4294967296.0;
    double rad = sqrt(-2.0 * log(u1)), ang = 2.0 * M_PI * u2;
    return rad * (i % 2 ? sin(ang) : cos(ang));
}

static double grad_at(int rank, size_t i)
{
    static const double scale[3] = {1e-2, 1e-3, 1e-4};
    return scale[(i / TENSOR) % 3] * (1.0 + rank / 8.0)
           * (normal_at(0, i) + normal_at(1 + (uint64_t)rank, i));
}

dpt_status_t dpt__bench_codec_check(const dpt_bench_coll_config_t *cfg)
{
    DPT_CHECK(dpt_codec_check(cfg->compress));
    if (cfg->dtype && strcmp(cfg->dtype, "f32"))
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--compress %s: the codecs take f32 gradients "
                             "(--dtype %s)", cfg->compress, cfg->dtype);
    if (cfg->op && strcmp(cfg->op, "avg"))
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--compress %s: the codecs average (--op %s)",
                             cfg->compress, cfg->op);
    if (cfg->algos && strstr(cfg->algos, "0copy"))
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--compress %s: no 0copy variants (a codec "
                             "reduces its own payload)", cfg->compress);
    return DPT_OK;
}

typedef struct row {
    dpt_codec_t *codec;
    int iters;
    long step;
    double rel_err;
    long wrong;
    double t[64], t_code[64];   /* per block: slowest rank's seconds per call */
    double bytes;               /* this rank's, summed over the timed calls */
    long calls;
} row_t;

typedef struct ctx {
    const dpt_bench_coll_config_t *cfg;
    dpt_coll_t *coll;
    int rank, size;
    float *in, *buf;   /* this rank's inputs; the call's buffer */
    FILE *out;
} ctx_t;

/* ||buf - exact|| / ||exact|| (rank 0 only: it regenerates every rank's inputs). */
static double rel_err(const ctx_t *c, size_t n)
{
    double e2 = 0, g2 = 0;
    for (size_t i = 0; i < n; i++) {
        double g = 0;
        for (int r = 0; r < c->size; r++)
            g += (double)(float)grad_at(r, i);   /* the float inputs the ranks had */
        g /= c->size;
        double d = (double)c->buf[i] - g;
        e2 += d * d;
        g2 += g * g;
    }
    return g2 > 0 ? sqrt(e2 / g2) : (e2 > 0 ? INFINITY : 0.0);
}

/* The checked first call: rel_err on rank 0, wrong = ranks whose bits differ from rank 0's. */
static dpt_status_t first_call(ctx_t *c, row_t *w, dpt_coll_algo_t algo, size_t n)
{
    memcpy(c->buf, c->in, n * sizeof *c->buf);
    dpt_codec_stats_t s = {0, 0};
    DPT_CHECK(dpt_codec_allreduce(w->codec, c->coll, c->buf, n, algo, w->step++, &s));
    uint32_t crc = dpt__crc32(0, c->buf, n * sizeof *c->buf);
    uint32_t *all = dpt_malloc((size_t)c->size * sizeof *all);
    if (!all)
        return dpt_error_set(DPT_ERR_NOMEM, "bench allreduce: out of memory");
    MPI_Allgather(&crc, 1, MPI_UINT32_T, all, 1, MPI_UINT32_T, MPI_COMM_WORLD);
    w->wrong = 0;
    for (int r = 1; r < c->size; r++)
        w->wrong += all[r] != all[0];
    dpt_free(all);
    w->rel_err = c->rank == 0 ? rel_err(c, n) : 0;
    return DPT_OK;
}

/* One block of `iters` calls: the slowest rank's mean seconds per call and code seconds. */
static dpt_status_t block(ctx_t *c, row_t *w, dpt_coll_algo_t algo, size_t n, int iters,
                          double *t, double *t_code)
{
    double mine[2] = {0, 0}, worst[2];
    MPI_Barrier(MPI_COMM_WORLD);
    for (int k = 0; k < iters; k++) {
        memcpy(c->buf, c->in, n * sizeof *c->buf);   /* every rank alike: they stay in step */
        dpt_codec_stats_t s = {0, 0};
        double t0 = dpt__now();
        DPT_CHECK(dpt_codec_allreduce(w->codec, c->coll, c->buf, n, algo, w->step++, &s));
        mine[0] += dpt__now() - t0;
        mine[1] += s.t_code;
        w->bytes += s.bytes_sent;
        w->calls++;
    }
    mine[0] /= iters;
    mine[1] /= iters;
    MPI_Allreduce(mine, worst, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    *t = worst[0];
    *t_code = worst[1];
    return DPT_OK;
}

static void print_row(const ctx_t *c, const row_t *w, const char *name, size_t nbytes,
                      double pred)
{
    const dpt_bench_coll_config_t *cfg = c->cfg;
    int reps = cfg->reps < 1 ? 1 : cfg->reps > 64 ? 64 : cfg->reps;
    double t[64], tc[64];
    memcpy(t, w->t, sizeof t);
    memcpy(tc, w->t_code, sizeof tc);
    double sec = dpt__median(t, reps), t_code = dpt__median(tc, reps);
    double mine = w->calls ? w->bytes / (double)w->calls : 0, sum = 0;
    MPI_Reduce(&mine, &sum, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    if (c->rank != 0)
        return;
    double p = c->size, sent = sum / p;
    double algbw = sec > 0 ? (double)nbytes / sec / 1e9 : 0.0;
    double busbw = p > 1 ? algbw * 2.0 * (p - 1) / p : algbw;
    double plain = p > 1 ? (double)nbytes * 2.0 * (p - 1) / p : 0.0;   /* fp32 ring, per rank */
    double ratio = plain > 0 ? sent / plain : 0.0;
    char err[32];
    if (isfinite(w->rel_err))
        snprintf(err, sizeof err, "%.4g", w->rel_err);
    else
        snprintf(err, sizeof err, "%s", cfg->json ? "null" : "inf");
    if (cfg->json)
        fprintf(c->out, "{\"algo\":\"%s\",\"np\":%d,\"bytes\":%zu,\"dtype\":\"f32\","
                "\"compress\":\"%s\",\"time_us\":%.3f,\"algbw_GBs\":%.4f,\"busbw_GBs\":%.4f,"
                "\"predicted_us\":%.3f,\"bytes_sent\":%.1f,\"wire_ratio\":%.4f,"
                "\"t_code_us\":%.3f,\"rel_err\":%s,\"wrong\":%ld}\n", name, c->size, nbytes,
                cfg->compress, 1e6 * sec, algbw, busbw, pred >= 0 ? 1e6 * pred : -1.0, sent,
                ratio, 1e6 * t_code, err, w->wrong);
    else
        fprintf(c->out, "%12zu %6s %10.1f %9.3f %10.1f %12.0f %7.4f %10.1f %10s %6ld\n", nbytes,
                name, 1e6 * sec, busbw, pred >= 0 ? 1e6 * pred : -1.0, sent, ratio, 1e6 * t_code,
                err, w->wrong);
}

/* Calls per timed block: cfg->iters, or about 30 ms as the slowest rank sees one call. */
static dpt_status_t block_iters(ctx_t *c, row_t *w, dpt_coll_algo_t algo, size_t n)
{
    w->iters = c->cfg->iters;
    if (w->iters > 0)
        return DPT_OK;
    double t, t_code;
    DPT_CHECK(block(c, w, algo, n, 1, &t, &t_code));
    w->iters = (int)fmin(1000.0, fmax(1.0, 0.03 / fmax(t, 1e-7)));
    return DPT_OK;
}

/* One size: every algorithm's codec checked, then timed, the algorithms interleaved within a
 * round (as the plain rows: a slow spell of the machine hits them all). */
static dpt_status_t size_rows(ctx_t *c, const dpt_coll_algo_t *algos, int n_algos, size_t n,
                              const dpt_coll_cost_t *cost, long *wrong_total)
{
    const dpt_bench_coll_config_t *cfg = c->cfg;
    int reps = cfg->reps < 1 ? 1 : cfg->reps > 64 ? 64 : cfg->reps;
    row_t rows[MAX_ALGOS];
    dpt_status_t st = DPT_OK;
    memset(rows, 0, sizeof rows);
    for (size_t i = 0; i < n; i++)
        c->in[i] = (float)grad_at(c->rank, i);
    const dpt_codec_bucket_t bk = {.n = n, .ranks = c->size};
    for (int a = 0; a < n_algos && st == DPT_OK; a++)
        if (dpt_coll_algo_available(c->coll, algos[a], NULL))
            st = dpt_codec_create(cfg->compress, &bk, &rows[a].codec);
    for (int a = 0; a < n_algos && st == DPT_OK; a++)
        if (rows[a].codec) {
            st = first_call(c, &rows[a], algos[a], n);
            if (st == DPT_OK)
                st = block_iters(c, &rows[a], algos[a], n);
            rows[a].bytes = 0;
            rows[a].calls = 0;
        }
    for (int r = 0; r < reps && st == DPT_OK; r++)
        for (int a = 0; a < n_algos && st == DPT_OK; a++)
            if (rows[a].codec)
                st = block(c, &rows[a], algos[a], n, rows[a].iters, &rows[a].t[r],
                           &rows[a].t_code[r]);
    size_t seg = cfg->segment_bytes ? cfg->segment_bytes : (size_t)256 << 10;
    for (int a = 0; a < n_algos && st == DPT_OK; a++)
        if (rows[a].codec) {
            const char *name = dpt_coll_algo_name(algos[a]);
            print_row(c, &rows[a], name, n * sizeof(float),
                      dpt_coll_cost_predict(name, c->size, n * sizeof(float), seg, cost));
            *wrong_total += rows[a].wrong;
        }
    if (c->rank == 0)
        fflush(c->out);
    for (int a = 0; a < n_algos; a++)
        dpt_codec_destroy(rows[a].codec);
    return st;
}

dpt_status_t dpt__bench_codec(const dpt_bench_coll_config_t *cfg, dpt_coll_t *coll,
                              const dpt_coll_algo_t *algos, int n_algos,
                              const dpt_coll_cost_t *cost, FILE *out, long *wrong_total)
{
    ctx_t c = {.cfg = cfg, .coll = coll, .rank = dpt_coll_rank(coll),
               .size = dpt_coll_size(coll), .out = out};
    if (n_algos > MAX_ALGOS)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--algos: more than %d names", MAX_ALGOS);
    size_t max_n = cfg->max_bytes / sizeof(float);
    c.in = dpt_malloc((max_n ? max_n : 1) * sizeof(float));
    c.buf = dpt_malloc((max_n ? max_n : 1) * sizeof(float));
    dpt_status_t st = DPT_OK;
    if (!c.in || !c.buf)
        st = dpt_error_set(DPT_ERR_NOMEM, "bench allreduce: %zu-byte buffers", cfg->max_bytes);
    if (st == DPT_OK && c.rank == 0 && !cfg->json)
        fprintf(out, "# --compress %s: the all-reduce (avg) through the codec on gradient-like "
                "f32 data; busbw of the fp32 bytes;\n# pred_us: the plain fp32 all-reduce's; "
                "ratio: bytes sent / the fp32 ring's; rel_err: the first call's (fresh state)\n"
                "%12s %6s %10s %9s %10s %12s %7s %10s %10s %6s\n", cfg->compress, "bytes",
                "algo", "us", "busbw", "pred_us", "sent_B/rank", "ratio", "t_code_us", "rel_err",
                "wrong");
    for (size_t bytes = cfg->min_bytes; st == DPT_OK; bytes *= (size_t)cfg->factor) {
        st = size_rows(&c, algos, n_algos, bytes / sizeof(float), cost, wrong_total);
        if (bytes > cfg->max_bytes / (size_t)cfg->factor || bytes == 0)
            break;
    }
    dpt_free(c.in);
    dpt_free(c.buf);
    return st;
}
