/* cpu_dwconv.c: the weight gradient of a depthwise convolution (groups = in = out channels)
 * where oneDNN 2.6 has no JIT kernel for it. Its jit_dw kernels cover backward weights for
 * 3x3 only; for EfficientNet's 5x5 depthwise layers it picks "ref:any", measured here (AMD EPYC
 * with AVX-512, 2 threads, batch 16) at 78 ms for 144 channels 16x16 -> 8x8 stride 2 and 134 ms
 * for 240 channels at 8x8, against 0.1-0.2 ms for the forward: most of the model's step. The
 * loop below is N C OH OW K K multiply-adds (6 M for the second), over the tensors' own layouts
 * (dpt__cpu_access: plain, nhwc or blocked), channels split over the OpenMP team, each
 * channel's sums in float64 in a fixed order: the same bits for any thread count. */
#include <string.h>

#include "backend/cpu/cpu_internal.h"

int dpt__cpu_dw_bwd_w_wanted(const dpt_op_t *op, const char *impl)
{
    const dpt_op_desc_t *d = &op->d;
    return d->groups > 1 && d->groups == d->in[0].c && d->out_c == d->in[0].c && impl
           && !strncmp(impl, "ref", 3) && d->kh <= 16 && d->kw <= 16;
}

dpt_status_t dpt__cpu_dw_bwd_w(dpt_op_t *op, const dpt_op_args_t *a)
{
    const dpt_op_desc_t *d = &op->d;
    dpt__cpu_access_t ax, ay;
    DPT_CHECK(dpt__cpu_access(&op->src_md, "depthwise conv input", &ax));
    DPT_CHECK(dpt__cpu_access(&op->dst_md, "depthwise conv output", &ay));
    const int N = d->in[0].n, C = d->in[0].c, H = d->in[0].h, W = d->in[0].w;
    const int OH = op->info.out.h, OW = op->info.out.w, KH = d->kh, KW = d->kw;
    const int S = d->stride, P = d->pad;
    const float *x = a->x[0]->data, *dy = a->dy->data;
    float *dw = a->dw, *db = d->has_bias ? a->dw + op->info.n_weights : NULL;
    /* within a channel, position (h, w) sits at h * W * sp + w * sp (dpt__cpu_access) */
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double acc[16 * 16] = {0}, bias = 0;
        for (int n = 0; n < N; n++) {
            const float *xc = x + dpt__cpu_at(&ax, n, c);
            const float *gc = dy + dpt__cpu_at(&ay, n, c);
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    const float g = gc[((long)oh * OW + ow) * ay.sp];
                    bias += g;
                    for (int i = 0; i < KH; i++) {
                        const int ih = oh * S - P + i;
                        if (ih < 0 || ih >= H)
                            continue;
                        for (int j = 0; j < KW; j++) {
                            const int iw = ow * S - P + j;
                            if (iw >= 0 && iw < W)
                                acc[i * KW + j] += (double)g * xc[((long)ih * W + iw) * ax.sp];
                        }
                    }
                }
        }
        for (int k = 0; k < KH * KW; k++)
            dw[(long)c * KH * KW + k] = (float)acc[k];
        if (db)
            db[c] = (float)bias;
    }
    return DPT_OK;
}
