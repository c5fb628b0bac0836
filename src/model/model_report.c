/* model_report.c: the human-readable tables (dpt_model_profile_report, dpt_model_summary),
 * kept apart from model.c because they only format what the model already holds (layer shapes,
 * parameter counts, accumulated profile times) and take no part in training. */
#include <stdio.h>

#include "model/model_private.h"

void dpt_model_profile_report(const dpt_model_t *m, char *buf, size_t len)
{
    double total = 0;
    for (int i = 0; i < m->n_nodes; i++)
        total += m->nodes[i].t_fwd + m->nodes[i].t_bwd;
    long steps = m->profile_steps ? m->profile_steps : 1;
    int w = snprintf(buf, len, "  %-14s %-12s %10s %10s %7s  %s (ms per step over %ld steps)\n",
                     "layer", "op", "forward", "backward", "share", "implementation", steps);
    size_t used = w > 0 ? (size_t)w : 0;
    for (int i = 0; i < m->n_nodes && used < len; i++) {
        const node_t *nd = &m->nodes[i];
        w = snprintf(buf + used, len - used, "  %-14s %-12s %10.3f %10.3f %6.1f%%  %s\n",
                     nd->spec.name, dpt_op_kind_name(nd->spec.kind), 1e3 * nd->t_fwd / steps,
                     1e3 * nd->t_bwd / steps,
                     total > 0 ? 100.0 * (nd->t_fwd + nd->t_bwd) / total : 0.0, nd->info.impl);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    if (used < len)
        snprintf(buf + used, len - used, "  total %.3f ms per step\n", 1e3 * total / steps);
}

void dpt_model_summary(const dpt_model_t *m, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < m->n_nodes && used < len; i++) {
        const node_t *nd = &m->nodes[i];
        const dpt_tensor_t *o = &nd->info.out;
        int w = snprintf(buf + used, len - used, "  %-12s %-12s -> %4d x %3d x %3d  params %8zu%s\n",
                         nd->spec.name, dpt_op_kind_name(nd->spec.kind), o->c, o->h, o->w,
                         nd->info.n_params, nd->spec.fuse_relu ? "  (+relu fused)" : "");
        if (w < 0)
            break;
        used += (size_t)w;
    }
    if (used < len)
        snprintf(buf + used, len - used, "  total parameters %zu, forward %.1f MFLOP per sample\n",
                 m->n_params, m->flops / m->opt.batch / 1e6);
}
