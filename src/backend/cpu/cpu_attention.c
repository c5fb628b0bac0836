/* cpu_attention.c: the `cpu` backend's multi-head self-attention core (DPT_OP_ATTENTION; the
 * contract is in dptrain/backend.h), a row of cpu_ops in cpu_dnnl.c.
 *
 * Tokens live in nhwc here ((N, T, C) row-major, cpu_embed.c says why), so for sample n and head
 * h the q, k and v of the fused input are (T x dh) row-major matrices with leading dimension 3D
 * at channel offsets h dh, D + h dh and 2D + h dh, and y_h is (T x dh) with leading dimension D:
 * every product is one cblas_sgemm on strided views, no copies. An input in another layout
 * (plain NCHW from a test or a blocked convolution output) is reordered to nhwc first and its
 * gradient back (the nhwc buffers and reorders are the ones cpu_embed.c's ops use, so
 * cpu_op_destroy frees them). The output is nhwc.
 *
 * Per (n, h), with scale = 1 / sqrt(dh):
 *   forward   S = scale Q K^T (T x T), P = softmax of each row (shifted by its maximum), Y = P V
 *   backward  dP = dY V^T, dS = P (dP - rowsum(dP P)), dQ = scale dS K, dK = scale dS^T Q,
 *             dV = P^T dY
 * P (N * heads * T * T floats, op->prob) is written by every forward and read by the backward
 * that follows it in training. The (n, h) pairs are independent and write disjoint parts of y
 * and dx, so they are split over the backend's OpenMP team, each a single-threaded OpenBLAS
 * call (cpu_create sets OpenBLAS to one thread, as dpt__cpu_par_sgemm in cpu_ops.c relies on); each
 * thread has its own T x T buffer for dP (op->ws). */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>

#include "backend/cpu/cpu_internal.h"
#include "dptrain/alloc.h"

dpt_status_t dpt__cpu_attention_create(dpt_backend_t *be, dpt_op_t *op)
{
    const dpt_tensor_t *x = &op->d.in[0];
    const size_t T = (size_t)x->w, NH = (size_t)x->n * op->d.heads;
    DPT_CHECK(dpt__cpu_nhwc_in(be, op));
    op->attn_threads = omp_get_max_threads();
    if (op->attn_threads < 1)
        op->attn_threads = 1;
    op->prob = dpt_malloc(NH * T * T * sizeof(float));
    op->ws = dpt_malloc((size_t)op->attn_threads * T * T * sizeof(float));
    if (!op->prob || !op->ws)
        return dpt_error_set(DPT_ERR_NOMEM, "cpu backend: attention: out of memory for %zu "
                             "probabilities", NH * T * T);
    snprintf(op->info.impl, sizeof op->info.impl, "openblas");
    const dpt_tensor_t *o = &op->info.out;
    op->dst_md = dpt__cpu_plain_md(o->n, o->c, 1, o->w, dnnl_nhwc);
    return dpt__cpu_set_layout(be, &op->dst_md, &op->info.out);
}

/* Rows of length T of p: softmax in place, shifted by the row maximum (exp never overflows). */
static void softmax_rows(float *p, int T)
{
    for (int i = 0; i < T; i++) {
        float *r = p + (long)i * T, mx = r[0];
        for (int j = 1; j < T; j++)
            mx = r[j] > mx ? r[j] : mx;
        double z = 0;
        for (int j = 0; j < T; j++) {
            r[j] = expf(r[j] - mx);
            z += r[j];
        }
        const float inv = (float)(1.0 / z);
        for (int j = 0; j < T; j++)
            r[j] *= inv;
    }
}

dpt_status_t dpt__cpu_attention_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_tensor_t *in = &op->d.in[0];
    const int N = in->n, C3 = in->c, D = C3 / 3, T = in->w, H = op->d.heads, dh = D / H;
    const float scale = (float)(1.0 / sqrt((double)dh));
    const float *x;
    DPT_CHECK(dpt__cpu_nhwc_x(op, a, &x));
    float *y = a->y->data, *prob = op->prob;
#pragma omp parallel for schedule(static) num_threads(op->attn_threads)
    for (int b = 0; b < N * H; b++) {
        const int n = b / H, h = b % H;
        const float *q = x + (long)n * T * C3 + (long)h * dh, *k = q + D, *v = q + 2 * D;
        float *p = prob + (long)b * T * T;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, dh, scale, q, C3, k, C3,
                    0.0f, p, T);
        softmax_rows(p, T);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, dh, T, 1.0f, p, T, v, C3,
                    0.0f, y + (long)n * T * D + (long)h * dh, D);
    }
    return DPT_OK;
}

dpt_status_t dpt__cpu_attention_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    if (!a->dx[0])
        return DPT_OK;   /* no parameters: nothing else to compute */
    const dpt_tensor_t *in = &op->d.in[0];
    const int N = in->n, C3 = in->c, D = C3 / 3, T = in->w, H = op->d.heads, dh = D / H;
    const float scale = (float)(1.0 / sqrt((double)dh));
    /* the reorder again rather than trusting that forward's copy is still there: cheap */
    const float *x;
    DPT_CHECK(dpt__cpu_nhwc_x(op, a, &x));
    const float *dy = a->dy->data, *prob = op->prob;
    float *dx = dpt__cpu_nhwc_dx(op, a), *scratch = op->ws;
    /* every element of dx is written (beta = 0): the heads' q, k, v blocks cover all 3D
     * channels of every token */
#pragma omp parallel for schedule(static) num_threads(op->attn_threads)
    for (int b = 0; b < N * H; b++) {
        const int n = b / H, h = b % H;
        const long xo = (long)n * T * C3 + (long)h * dh, yo = (long)n * T * D + (long)h * dh;
        const float *q = x + xo, *k = q + D, *v = q + 2 * D, *g = dy + yo;
        const float *p = prob + (long)b * T * T;
        float *dq = dx + xo, *dk = dq + D, *dv = dq + 2 * D;
        float *ds = scratch + (long)omp_get_thread_num() * T * T;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, dh, 1.0f, g, D, v, C3, 0.0f,
                    ds, T);   /* dP */
        for (int i = 0; i < T; i++) {
            const float *pr = p + (long)i * T;
            float *dr = ds + (long)i * T;
            double r = 0;
            for (int j = 0; j < T; j++)
                r += (double)dr[j] * pr[j];
            for (int j = 0; j < T; j++)
                dr[j] = pr[j] * (dr[j] - (float)r);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, dh, T, scale, ds, T, k, C3,
                    0.0f, dq, C3);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, dh, T, scale, ds, T, q, C3,
                    0.0f, dk, C3);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, dh, T, 1.0f, p, T, g, D, 0.0f,
                    dv, C3);
    }
    return dpt__cpu_nhwc_dx_done(op, a);
}
