/* cpu_mul.c: the `cpu` backend's channel gate, y = x0 * x1 with x1 (N, C, 1, 1) broadcast over
 * x0's positions (squeeze-excitation's last step). Both inputs may be in any layout the backend
 * made (plain, nhwc, oneDNN's nChw8c/16c): elements are addressed through the layout's strides
 * and channel block, so no reorder is needed, and the output takes x0's layout. Padded channels
 * of a blocked output are never written and stay zero. Why not oneDNN's binary primitive: a
 * per-(sample, channel) broadcast has no JIT kernel in oneDNN 2.6 (it falls back to its
 * reference kernel), and its backward (a reduction over the positions) is a second primitive. */
#include "backend/cpu/cpu_internal.h"

dpt_status_t dpt__cpu_mul_create(dpt_backend_t *be, dpt_op_t *op)
{
    dpt__cpu_access_t ax, ag;
    dnnl_memory_desc_t gmd = dpt__cpu_tensor_md(be, &op->d.in[1]);
    DPT_CHECK(dpt__cpu_access(&op->src_md, "mul: the input", &ax));
    DPT_CHECK(dpt__cpu_access(&gmd, "mul: the gate", &ag));
    op->dst_md = op->src_md;
    return dpt__cpu_set_layout(be, &op->dst_md, &op->info.out);
}

/* The strides of both inputs (validated at create). */
static void accesses(const dpt_op_t *op, dpt__cpu_access_t *ax, dpt__cpu_access_t *ag)
{
    dnnl_memory_desc_t gmd = dpt__cpu_tensor_md(op->be, &op->d.in[1]);
    (void)dpt__cpu_access(&op->src_md, "the input", ax);
    (void)dpt__cpu_access(&gmd, "the gate", ag);
}

dpt_status_t dpt__cpu_mul_forward(dpt_op_t *op, const dpt_op_args_t *a)
{
    dpt__cpu_access_t ax, ag;
    accesses(op, &ax, &ag);
    const int N = op->d.in[0].n, C = op->d.in[0].c, P = op->d.in[0].h * op->d.in[0].w;
    const float *x = a->x[0]->data, *g = a->x[1]->data;
    float *y = a->y->data;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            const float s = g[dpt__cpu_at(&ag, n, c)];
            const long o = dpt__cpu_at(&ax, n, c);
            for (int p = 0; p < P; p++)
                y[o + p * ax.sp] = x[o + p * ax.sp] * s;
        }
    return DPT_OK;
}

dpt_status_t dpt__cpu_mul_backward(dpt_op_t *op, const dpt_op_args_t *a)
{
    dpt__cpu_access_t ax, ag;
    accesses(op, &ax, &ag);
    const int N = op->d.in[0].n, C = op->d.in[0].c, P = op->d.in[0].h * op->d.in[0].w;
    const float *x = a->x[0]->data, *g = a->x[1]->data, *dy = a->dy->data;
    float *dx = a->dx[0] ? a->dx[0]->data : NULL, *dg = a->dx[1] ? a->dx[1]->data : NULL;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            const long o = dpt__cpu_at(&ax, n, c);
            const float s = g[dpt__cpu_at(&ag, n, c)];
            double sum = 0;
            for (int p = 0; p < P; p++) {
                const float d = dy[o + p * ax.sp];
                sum += (double)d * x[o + p * ax.sp];
                if (dx)
                    dx[o + p * ax.sp] = d * s;
            }
            if (dg)
                dg[dpt__cpu_at(&ag, n, c)] = (float)sum;
        }
    return DPT_OK;
}
