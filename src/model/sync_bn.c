/* sync_bn.c: synchronized batch norm (training mode) on plain NCHW float arrays, with the batch
 * statistics taken over every rank's batch (PyTorch SyncBatchNorm's arithmetic).
 *
 *   forward:  mean = sum(x) / M, var = sum((x - mean)^2) / M over the global count M (two
 *             all-reduces of C+1 and C floats); y = gamma * (x - mean) / sqrt(var + eps) + beta;
 *             running stats as the local op does (unbiased variance, momentum m).
 *   backward: dgamma = sum(dy * xhat), dbeta = sum(dy) over the local batch (the gradient
 *             all-reduce averages them like any parameter); with G1 = sum(dy), G2 = sum(dy * xhat)
 *             summed over ranks (one all-reduce of 2C floats),
 *             dx = gamma / sqrt(var + eps) * (dy - G1 / M - xhat * G2 / M).
 * With one rank this is ordinary batch norm. Local sums are accumulated in double; what crosses
 * ranks is float (the collective layer's type), identical on every rank. */
#include <math.h>
#include <string.h>

#include "model/internal.h"

dpt_status_t dpt__sbn_forward(const dpt__sbn_args_t *a, const float *x, float *y, float *run_mean,
                              float *run_var, float *mean, float *invstd)
{
    const int n = a->n, c = a->c, hw = a->hw;
    float *t = a->tmp;
    for (int k = 0; k < c; k++) {
        double s = 0;
        for (int i = 0; i < n; i++) {
            const float *p = x + ((size_t)i * c + k) * hw;
            for (int j = 0; j < hw; j++)
                s += p[j];
        }
        t[k] = (float)s;
    }
    t[c] = (float)n * (float)hw;
    DPT_CHECK(a->sum(a->ctx, t, (size_t)c + 1));
    const double count = t[c];
    for (int k = 0; k < c; k++)
        mean[k] = (float)(t[k] / count);
    for (int k = 0; k < c; k++) {
        double s = 0;
        for (int i = 0; i < n; i++) {
            const float *p = x + ((size_t)i * c + k) * hw;
            for (int j = 0; j < hw; j++) {
                double d = (double)p[j] - mean[k];
                s += d * d;
            }
        }
        t[k] = (float)s;
    }
    DPT_CHECK(a->sum(a->ctx, t, (size_t)c));
    for (int k = 0; k < c; k++) {
        double var = t[k] / count;
        invstd[k] = (float)(1.0 / sqrt(var + a->eps));
        double unbiased = count > 1 ? t[k] / (count - 1) : var;
        run_mean[k] = (1.0f - a->momentum) * run_mean[k] + a->momentum * mean[k];
        run_var[k] = (1.0f - a->momentum) * run_var[k] + a->momentum * (float)unbiased;
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < c; k++) {
            const float *p = x + ((size_t)i * c + k) * hw;
            float *q = y + ((size_t)i * c + k) * hw;
            const float g = a->gamma[k] * invstd[k], b = a->beta[k], mu = mean[k];
            for (int j = 0; j < hw; j++)
                q[j] = g * (p[j] - mu) + b;
        }
    return DPT_OK;
}

dpt_status_t dpt__sbn_backward(const dpt__sbn_args_t *a, const float *x, const float *dy, float *dx,
                               const float *mean, const float *invstd, float *dgamma,
                               float *dbeta)
{
    const int n = a->n, c = a->c, hw = a->hw;
    float *t = a->tmp;
    for (int k = 0; k < c; k++) {
        double s1 = 0, s2 = 0;
        for (int i = 0; i < n; i++) {
            const float *p = x + ((size_t)i * c + k) * hw;
            const float *d = dy + ((size_t)i * c + k) * hw;
            for (int j = 0; j < hw; j++) {
                s1 += d[j];
                s2 += (double)d[j] * ((p[j] - mean[k]) * invstd[k]);
            }
        }
        dgamma[k] = (float)s2;
        dbeta[k] = (float)s1;
        t[k] = (float)s1;
        t[c + k] = (float)s2;
    }
    t[2 * c] = (float)n * (float)hw;
    DPT_CHECK(a->sum(a->ctx, t, 2 * (size_t)c + 1));
    if (!dx)
        return DPT_OK;
    const float count = t[2 * c];
    for (int i = 0; i < n; i++)
        for (int k = 0; k < c; k++) {
            const float *p = x + ((size_t)i * c + k) * hw;
            const float *d = dy + ((size_t)i * c + k) * hw;
            float *q = dx + ((size_t)i * c + k) * hw;
            const float g = a->gamma[k] * invstd[k], m1 = t[k] / count, m2 = t[c + k] / count;
            for (int j = 0; j < hw; j++)
                q[j] = g * (d[j] - m1 - (p[j] - mean[k]) * invstd[k] * m2);
        }
    return DPT_OK;
}
