/* powersgd.c: PowerSGD (Vogels, Karimireddy and Jaggi, NeurIPS 2019), rank-r power iteration
 * with warm start and error feedback, after PyTorch's powerSGD_hook (the reference behaviour).
 *
 * Per bucket and step, every weight tensor of the bucket is viewed as a matrix M (n rows x m
 * columns: conv out x in*kh*kw, fc out x in) and compressed when (n + m) * r * 2 < n * m (it then
 * sends less than half its floats); the other tensors (1-D, BN, biases, small matrices) are sent
 * as they are. With the local error e added (M = g + e):
 *
 *   P = M Q                       local, n x r (Q: m x r, kept from the last step: warm start)
 *   all-reduce (sum) of [every P | every uncompressed tensor], in one buffer
 *   P = orthonormal columns of P  (Gram-Schmidt, identical on every rank: P is)
 *   Q = M^T P                     local, m x r
 *   all-reduce (average) of every Q
 *   M^ = P Q^T                    the estimate of the average of M over the ranks
 *   e = M - M^                    (local; PyTorch's rule: over the ranks the errors sum to what
 *                                  the estimate missed of the sum)
 *
 * and the uncompressed tensors get their sum / p, exactly like the plain all-reduce's average (no
 * error: nothing was lost; PyTorch keeps local - average there, which sums to zero over ranks).
 * Every value that decides the result (P after its all-reduce, Q after its) is identical on every
 * rank, and the decode P Q^T is a fixed-order loop (not BLAS, whose kernels may differ between
 * CPUs of a cluster), so every rank gets the same bits.
 *
 * Q starts, per tensor, from a seeded normal draw (the same on every rank) made orthonormal; a Q
 * that is all zero (never started, or restored so from a checkpoint taken before the first
 * compressed step, or collapsed by an all-zero gradient) is drawn again, so that a resumed run
 * makes the same choice as an uninterrupted one. Gram-Schmidt divides by (norm + eps), so an
 * all-zero column stays zero instead of becoming NaN.
 *
 * State for a resume (dpt_codec_state): [e (n floats) | every Q], one buffer. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compress/internal.h"
#include "core/internal.h"
#include "dptrain/alloc.h"
#include "dptrain/rng.h"

#define PSGD_EPS 1e-8f   /* Gram-Schmidt: col / (norm + eps) */
#define PSGD_SEED 0x9e3779b97f4a7c15ull

typedef struct mat {
    size_t off, rows, cols;   /* in the bucket */
    size_t p_off, q_off;      /* its P in the P buffer, its Q in the Q buffer */
} mat_t;

typedef struct psgd {
    int rank_r, ranks;
    size_t n;
    mat_t *mat;               /* the compressed tensors */
    int n_mat;
    size_t *vec_off, *vec_len;   /* the uncompressed runs of the bucket, merged */
    int n_vec;
    size_t p_len, v_len, q_len;  /* floats: every P, every uncompressed float, every Q */
    float *state;             /* [e (n) | Q (q_len)] */
    float *pv;                /* [every P | every uncompressed run] (p_len + v_len) */
    float *qs;                /* every Q after M^T P, all-reduced (q_len) */
} psgd_t;

static void destroy(void *state)
{
    psgd_t *s = state;
    if (!s)
        return;
    dpt_free(s->mat);
    dpt_free(s->vec_off);
    dpt_free(s->vec_len);
    dpt_free(s->state);
    dpt_free(s->pv);
    dpt_free(s->qs);
    dpt_free(s);
}

static dpt_status_t parse_rank(const char *arg, int *r)
{
    *r = 1;   /* PyTorch's default matrix_approximation_rank */
    if (!arg)
        return DPT_OK;
    char *end = NULL;
    long v = strtol(arg, &end, 10);
    if (end == arg || *end || v < 1 || v > 64)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--compress powersgd:RANK: RANK must be an "
                             "integer in [1, 64], e.g. powersgd:2 (got '%s')", arg);
    *r = (int)v;
    return DPT_OK;
}

/* Add the floats [off, off + len) to the uncompressed runs, merging with the last run. */
static void add_run(psgd_t *s, size_t off, size_t len)
{
    if (!len)
        return;
    if (s->n_vec && s->vec_off[s->n_vec - 1] + s->vec_len[s->n_vec - 1] == off) {
        s->vec_len[s->n_vec - 1] += len;
    } else {
        s->vec_off[s->n_vec] = off;
        s->vec_len[s->n_vec++] = len;
    }
    s->v_len += len;
}

static dpt_status_t create(const char *arg, const dpt_codec_bucket_t *bk, void **state)
{
    int r;
    DPT_CHECK(parse_rank(arg, &r));
    psgd_t *s = dpt_calloc(sizeof *s);
    if (!s)
        return dpt_error_set(DPT_ERR_NOMEM, "--compress powersgd: out of memory");
    s->rank_r = r;
    s->ranks = bk->ranks;
    s->n = bk->n;
    const dpt_codec_tensor_t one = {0, 1, bk->n};
    const dpt_codec_tensor_t *t = bk->tensors ? bk->tensors : &one;
    int nt = bk->tensors ? bk->n_tensors : 1;
    s->mat = dpt_calloc((size_t)(nt + 1) * sizeof *s->mat);
    s->vec_off = dpt_calloc((size_t)(nt + 2) * sizeof *s->vec_off);
    s->vec_len = dpt_calloc((size_t)(nt + 2) * sizeof *s->vec_len);
    if (!s->mat || !s->vec_off || !s->vec_len) {
        destroy(s);
        return dpt_error_set(DPT_ERR_NOMEM, "--compress powersgd: out of memory");
    }
    size_t at = 0;
    for (int i = 0; i < nt && bk->n; i++) {
        size_t rows = t[i].rows, cols = t[i].cols;
        add_run(s, at, t[i].off > at ? t[i].off - at : 0);   /* a gap: sent as it is */
        /* PyTorch's test: compress when the factors are less than half the matrix */
        if (rows > 1 && cols > 1 && (rows + cols) * (size_t)r * 2 < rows * cols) {
            s->mat[s->n_mat++] = (mat_t){t[i].off, rows, cols, s->p_len, s->q_len};
            s->p_len += rows * (size_t)r;
            s->q_len += cols * (size_t)r;
        } else {
            add_run(s, t[i].off, rows * cols);
        }
        at = t[i].off + rows * cols;
    }
    if (bk->n > at)
        add_run(s, at, bk->n - at);
    s->state = dpt_calloc((s->n + s->q_len + 1) * sizeof *s->state);
    s->pv = dpt_malloc((s->p_len + s->v_len + 1) * sizeof *s->pv);
    s->qs = dpt_malloc((s->q_len + 1) * sizeof *s->qs);
    if (!s->state || !s->pv || !s->qs) {
        destroy(s);
        return dpt_error_set(DPT_ERR_NOMEM, "--compress powersgd: out of memory for a bucket of "
                             "%zu floats", bk->n);
    }
    *state = s;
    return DPT_OK;
}

/* Orthonormal columns of a (rows x r, row-major), in place: modified Gram-Schmidt in a fixed
 * order (the same bits on every rank for the same input). */
static void orthogonalize(float *a, size_t rows, int r)
{
    for (int j = 0; j < r; j++) {
        double nn = 0;
        for (size_t i = 0; i < rows; i++)
            nn += (double)a[i * r + j] * a[i * r + j];
        const float inv = 1.0f / ((float)sqrt(nn) + PSGD_EPS);
        for (size_t i = 0; i < rows; i++)
            a[i * r + j] *= inv;
        for (int k = j + 1; k < r; k++) {
            double dot = 0;
            for (size_t i = 0; i < rows; i++)
                dot += (double)a[i * r + j] * a[i * r + k];
            for (size_t i = 0; i < rows; i++)
                a[i * r + k] -= (float)dot * a[i * r + j];
        }
    }
}

/* Q of matrix `mi`, drawn again if it is all zero (see the top of the file). */
static void start_q(const psgd_t *s, int mi, float *q)
{
    const mat_t *mt = &s->mat[mi];
    const size_t len = mt->cols * (size_t)s->rank_r;
    for (size_t i = 0; i < len; i++)
        if (q[i] != 0.0f)
            return;
    dpt_rng_t rng;
    dpt_rng_init(&rng, PSGD_SEED, (uint64_t)mt->off * 31 + mt->rows);
    for (size_t i = 0; i < len; i++)
        q[i] = dpt_rng_normal(&rng);
    orthogonalize(q, mt->cols, s->rank_r);
}

static dpt_status_t allreduce(void *state, dpt_coll_t *coll, float *buf, size_t n,
                              dpt_coll_algo_t algo, long step, dpt_codec_stats_t *stats)
{
    (void)step;
    psgd_t *s = state;
    if (n < s->n)   /* a partial bucket: not the tensors it was made for */
        return dpt_coll_allreduce(coll, buf, n, DPT_DTYPE_F32, DPT_REDOP_AVG, algo);
    const int r = s->rank_r;
    float *e = s->state, *q = s->state + s->n;
    const double b0 = dpt_coll_bytes_sent(coll), t0 = dpt__now();
    /* P = (g + e) Q per matrix, then the uncompressed runs behind the P's */
    for (int i = 0; i < s->n_mat; i++) {
        const mat_t *mt = &s->mat[i];
        float *m = buf + mt->off, *ei = e + mt->off;
        for (size_t k = 0; k < mt->rows * mt->cols; k++)
            m[k] += ei[k];
        start_q(s, i, q + mt->q_off);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)mt->rows, r, (int)mt->cols,
                    1.0f, m, (int)mt->cols, q + mt->q_off, r, 0.0f, s->pv + mt->p_off, r);
    }
    float *v = s->pv + s->p_len;
    for (int i = 0; i < s->n_vec; i++) {
        memcpy(v, buf + s->vec_off[i], s->vec_len[i] * sizeof *v);
        v += s->vec_len[i];
    }
    double t_code = dpt__now() - t0;
    DPT_CHECK(dpt_coll_allreduce(coll, s->pv, s->p_len + s->v_len, DPT_DTYPE_F32, DPT_REDOP_SUM,
                                 algo));
    double t1 = dpt__now();
    for (int i = 0; i < s->n_mat; i++) {   /* Q = M^T P, with P orthonormal */
        const mat_t *mt = &s->mat[i];
        orthogonalize(s->pv + mt->p_off, mt->rows, r);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)mt->cols, r, (int)mt->rows,
                    1.0f, buf + mt->off, (int)mt->cols, s->pv + mt->p_off, r, 0.0f,
                    s->qs + mt->q_off, r);
    }
    t_code += dpt__now() - t1;
    DPT_CHECK(dpt_coll_allreduce(coll, s->qs, s->q_len, DPT_DTYPE_F32, DPT_REDOP_AVG, algo));
    double t2 = dpt__now();
    memcpy(q, s->qs, s->q_len * sizeof *q);   /* the warm start of the next step */
    for (int i = 0; i < s->n_mat; i++) {   /* M^ = P Q^T; e = M - M^ */
        const mat_t *mt = &s->mat[i];
        const float *pp = s->pv + mt->p_off, *qq = q + mt->q_off;
        float *m = buf + mt->off, *ei = e + mt->off;
        for (size_t a = 0; a < mt->rows; a++)
            for (size_t b = 0; b < mt->cols; b++) {
                float x = 0;
                for (int k = 0; k < r; k++)
                    x += pp[a * r + k] * qq[b * r + k];
                ei[a * mt->cols + b] = m[a * mt->cols + b] - x;
                m[a * mt->cols + b] = x;
            }
    }
    const float *vv = s->pv + s->p_len;
    const float p = (float)s->ranks;
    for (int i = 0; i < s->n_vec; i++)
        for (size_t k = 0; k < s->vec_len[i]; k++)
            buf[s->vec_off[i] + k] = *vv++ / p;
    stats->t_code = t_code + (dpt__now() - t2);
    stats->bytes_sent = dpt_coll_bytes_sent(coll) - b0;
    return DPT_OK;
}

static double ratio(const void *state, size_t n)
{
    const psgd_t *s = state;
    return n ? (double)(s->p_len + s->v_len + s->q_len) / (double)n : 1.0;
}

static float *get_state(void *state, size_t *n)
{
    psgd_t *s = state;
    *n = s->n + s->q_len;
    return s->state;
}

const dpt__codec_ops_t dpt__codec_powersgd = {"powersgd", create, destroy, allreduce, ratio,
                                              get_state, DPT__ARG_OPTIONAL, 0, NULL, 1};
