/* cpu_internal.h: what the files of the `cpu` backend share (not public API): the backend and op
 * structs, the oneDNN helpers of cpu_dnnl.c, and the per-kind rows of its op table, implemented
 * in cpu_conv.c (convolution), cpu_ops.c (batch norm, pooling, fc, elementwise, xent) and
 * cpu_act.c (silu, gelu, sigmoid). */
#ifndef DPT_CPU_INTERNAL_H
#define DPT_CPU_INTERNAL_H

#include <stddef.h>

#include <oneapi/dnnl/dnnl.h>

#include "backend/internal.h"

#if DNNL_VERSION_MAJOR != 2
#error "the cpu backend is written against the oneDNN 2.x C API (Debian 12 ships 2.6)"
#endif

#define DPT__CPU_MAX_LAYOUTS 64

struct dpt_backend {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int blocked;
    int winograd;
    dnnl_memory_desc_t layouts[DPT__CPU_MAX_LAYOUTS];
    int n_layouts;
    void *scratch;          /* shared scratchpad (ops run one at a time on one stream) */
    size_t scratch_nbytes;
};

/* One oneDNN primitive with its scratchpad memory object. */
typedef struct prim {
    dnnl_primitive_t p;
    dnnl_memory_t scratch;
} prim_t;

/* A reorder between two descriptors, with its two memory objects. */
typedef struct reorder {
    dnnl_primitive_t p;
    dnnl_memory_t from, to;
} reorder_t;

struct dpt_op {
    dpt_backend_t *be;
    dpt_op_desc_t d;
    dpt_op_info_t info;
    dnnl_memory_desc_t src_md, dst_md;
    dnnl_alg_kind_t conv_alg;   /* direct or winograd */
    /* memory objects re-pointed at every call */
    dnnl_memory_t m_src, m_dst, m_dsrc, m_ddst, m_w, m_dw, m_b, m_db, m_ws, m_mean, m_var;
    dnnl_memory_t m_scale, m_shift, m_dscale, m_dshift;
    dnnl_memory_t m_wb;     /* conv weights in the backward-data format, when it differs */
    dnnl_memory_t m_ddst_w; /* conv: plain diff_dst for backward weights (ddst_plain) */
    prim_t fwd, fwd_inf, bwd_data, bwd_w;
    /* convolution weights in the primitive's format, when that is not OIHW */
    reorder_t w_to_fwd, w_to_bwd, dw_to_user;
    float *w_fwd, *w_bwd, *dw_blk;
    /* batch norm: saved batch statistics; pooling/BN-relu: workspace */
    float *mean, *var;
    void *ws;
    /* fc and flatten: plain copies of blocked inputs/gradients */
    reorder_t x_to_plain, plain_to_dx;
    float *x_plain, *dx_plain;
    /* conv backward weights on a plain input where oneDNN has no JIT kernel for a blocked
     * diff_dst (first layer, 1 channel, without AVX-512): plain diff_dst, gemm kernel */
    reorder_t ddst_to_plain;
    float *ddst_plain;
    int dw_own;             /* depthwise conv: our weight gradient (cpu_dwconv.c), not oneDNN's */
    float *prob;            /* xent */
    /* tokens, token_select (cpu_embed.c): the input in nhwc when it comes in another layout,
     * and its gradient on the way back; tokens: the position embedding as (T, C) */
    reorder_t to_nhwc, from_nhwc;
    float *x_nhwc, *dx_nhwc, *pos_tc;
    /* attention (cpu_attention.c): the OpenMP team size its per-thread dP buffers (ws) were
     * sized for; the probabilities are in prob, the nhwc copies in x_nhwc / dx_nhwc */
    int attn_threads;
};

/* One execution argument of a primitive: `m` (skipped when NULL) is pointed at `ptr`. */
typedef struct arg {
    int arg;
    dnnl_memory_t m;
    const void *ptr;
} arg_t;

/* ---- oneDNN helpers (cpu_dnnl.c) -------------------------------------------------------- */

/* Set and return DPT_ERR_DNNL for a failed oneDNN call `what`. */
dpt_status_t dpt__cpu_dnnl_err(dnnl_status_t s, const char *what);

#define DN(call, what)                                   \
    do {                                                 \
        dnnl_status_t dn__s = (call);                    \
        if (dn__s != dnnl_success)                       \
            return dpt__cpu_dnnl_err(dn__s, what);       \
    } while (0)

/* An f32 (n, c, h, w) descriptor in format `tag` (dnnl_nchw, dnnl_format_tag_any). */
dnnl_memory_desc_t dpt__cpu_plain_md(int n, int c, int h, int w, dnnl_format_tag_t tag);

/* The descriptor of a tensor's layout (plain NCHW or one registered by dpt__cpu_set_layout). */
dnnl_memory_desc_t dpt__cpu_tensor_md(const dpt_backend_t *be, const dpt_tensor_t *t);

/* Register a descriptor as a tensor layout; fills out->layout and out->nbytes. */
dpt_status_t dpt__cpu_set_layout(dpt_backend_t *be, const dnnl_memory_desc_t *md,
                                 dpt_tensor_t *out);

/* A memory object of descriptor `md` without a buffer (dpt__cpu_run points it at one). */
dpt_status_t dpt__cpu_mem(dpt_backend_t *be, const dnnl_memory_desc_t *md, dnnl_memory_t *out);

/* The four data memories of a one-input op (m_src, m_dsrc on src_md; m_dst, m_ddst on dst_md),
 * then dst_md registered as the output's layout (info.out). */
dpt_status_t dpt__cpu_io_mems(dpt_backend_t *be, dpt_op_t *op);

/* A descriptor of `pd` (borrowed from it), or NULL. */
const dnnl_memory_desc_t *dpt__cpu_query(const_dnnl_primitive_desc_t pd, dnnl_query_t what);

/* Create a primitive from an op descriptor with a user-managed scratchpad. `pd_out` (optional)
 * receives the primitive descriptor, which the caller then owns. */
dpt_status_t dpt__cpu_make_prim(dpt_backend_t *be, const void *op_desc,
                                const_dnnl_primitive_desc_t hint, prim_t *pr,
                                dnnl_primitive_desc_t *pd_out);

/* A reorder primitive from `from` to `to`, with its two memory objects. */
dpt_status_t dpt__cpu_make_reorder(dpt_backend_t *be, const dnnl_memory_desc_t *from,
                                   const dnnl_memory_desc_t *to, reorder_t *r);

/* Point each memory at its buffer and run the primitive to completion. */
dpt_status_t dpt__cpu_run(dpt_backend_t *be, const prim_t *pr, const arg_t *args, int n);

/* Run a reorder from buffer `from` to buffer `to`. */
dpt_status_t dpt__cpu_run_reorder(dpt_backend_t *be, const reorder_t *r, const void *from,
                                  void *to);

/* Destroy what a prim_t holds (NULL-safe members). */
void dpt__cpu_prim_fini(prim_t *p);

/* A zeroed buffer of md's size (at least 64 bytes). */
dpt_status_t dpt__cpu_alloc_for(const dnnl_memory_desc_t *md, float **out);

/* Record the implementation oneDNN picked ("jit:avx512_core", "jit_wino_4x3:avx512_core"). */
void dpt__cpu_set_impl(const_dnnl_primitive_desc_t pd, dpt_op_info_t *info);

/* Destroy the forward / backward-data / backward-weights descriptors that exist. */
void dpt__cpu_pds_destroy(dnnl_primitive_desc_t f, dnnl_primitive_desc_t b,
                          dnnl_primitive_desc_t w);

/* How logical (n, c, p) of a tensor maps into its buffer, for the ops that loop over elements
 * themselves in any layout the backend makes (plain, nhwc, nChw8c/16c): offset =
 * n sn + (c / blk) sc + c % blk + p sp, p = h W + w. dpt__cpu_access fails (naming `what`) for
 * a layout it cannot describe so (two blocked dimensions, positions not one stride). */
typedef struct dpt__cpu_access {
    long sn, sc, sp;
    int blk;
} dpt__cpu_access_t;
dpt_status_t dpt__cpu_access(const dnnl_memory_desc_t *md, const char *what,
                             dpt__cpu_access_t *a);
static inline long dpt__cpu_at(const dpt__cpu_access_t *a, int n, int c)
{
    return n * a->sn + (c / a->blk) * a->sc + c % a->blk;
}

/* C[M,N] = op(A)[M,K] op(B)[K,N], row-major, with the rows of C split across the OpenMP team
 * and each slice one single-threaded OpenBLAS call (cpu_ops.c; fc and linear use it). */
void dpt__cpu_par_sgemm(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
                        const float *B, int ldb, float *C, int ldc);

/* ---- rows of the op table (cpu_conv.c, cpu_ops.c) ---------------------------------------- *
 * Each create builds what its kind needs beyond the common part of cpu_op_create (which has
 * validated the descriptor, filled op->d, op->info and op->src_md) and sets op->info.out's
 * layout and size. */

dpt_status_t dpt__cpu_conv_create(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__cpu_conv_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_conv_backward(dpt_op_t *op, const dpt_op_args_t *a);
/* cpu_dwconv.c: a depthwise convolution's weight (and bias) gradient, for when oneDNN's
 * backward-weights implementation `impl` is a reference kernel (wanted says so) */
int dpt__cpu_dw_bwd_w_wanted(const dpt_op_t *op, const char *impl);
dpt_status_t dpt__cpu_dw_bwd_w(dpt_op_t *op, const dpt_op_args_t *a);

dpt_status_t dpt__cpu_bn_create(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__cpu_bn_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_bn_backward(dpt_op_t *op, const dpt_op_args_t *a);

/* maxpool and gap */
dpt_status_t dpt__cpu_pool_create(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__cpu_pool_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_pool_backward(dpt_op_t *op, const dpt_op_args_t *a);

/* fc and flatten: a reorder of a blocked input to plain NCHW and of a plain gradient back */
dpt_status_t dpt__cpu_plain_io_create(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__cpu_fc_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_fc_backward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_flatten_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_flatten_backward(dpt_op_t *op, const dpt_op_args_t *a);

/* relu, celu, scale, add: output in the input's layout */
dpt_status_t dpt__cpu_eltwise_create(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__cpu_relu_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_relu_backward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_celu_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_celu_backward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_scale_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_scale_backward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_add_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_add_backward(dpt_op_t *op, const dpt_op_args_t *a);

/* silu, gelu, sigmoid (cpu_act.c): oneDNN eltwise on the input's layout */
dpt_status_t dpt__cpu_act_create(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__cpu_act_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_act_backward(dpt_op_t *op, const dpt_op_args_t *a);

/* dropout and drop_path (cpu_drop.c): output in the input's layout */
dpt_status_t dpt__cpu_drop_create(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__cpu_drop_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_drop_backward(dpt_op_t *op, const dpt_op_args_t *a);

/* mul (cpu_mul.c): output in x0's layout, any layout of either input */
dpt_status_t dpt__cpu_mul_create(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__cpu_mul_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_mul_backward(dpt_op_t *op, const dpt_op_args_t *a);

/* Transformer ops read their input in nhwc (cpu_embed.c): nhwc_in (at create) makes the
 * reorders and buffers (to_nhwc, from_nhwc, x_nhwc, dx_nhwc) unless the input already is nhwc;
 * nhwc_x gives the input in nhwc (the tensor, or the reordered copy); nhwc_dx where the nhwc
 * input gradient goes (dx itself or dx_nhwc; NULL when the caller wants none), and
 * nhwc_dx_done reorders it into the caller's dx when it went aside. */
dpt_status_t dpt__cpu_nhwc_in(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__cpu_nhwc_x(dpt_op_t *op, const dpt_op_args_t *a, const float **x);
float *dpt__cpu_nhwc_dx(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_nhwc_dx_done(dpt_op_t *op, const dpt_op_args_t *a);

/* tokens and token_select (cpu_embed.c): tokens out in nhwc ((N, T, C) row-major), the class
 * token's features out plain */
dpt_status_t dpt__cpu_tokens_create(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__cpu_tokens_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_tokens_backward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_token_select_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_token_select_backward(dpt_op_t *op, const dpt_op_args_t *a);

/* layernorm, linear (cpu_tokens.c): nhwc in (any other layout is reordered, and the input
 * gradient reordered back), nhwc out; layer norm on oneDNN, linear on OpenBLAS sgemm */
dpt_status_t dpt__cpu_layernorm_create(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__cpu_layernorm_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_layernorm_backward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_linear_create(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__cpu_linear_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_linear_backward(dpt_op_t *op, const dpt_op_args_t *a);

/* attention (cpu_attention.c): nhwc tokens in (any other layout is reordered), nhwc out */
dpt_status_t dpt__cpu_attention_create(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__cpu_attention_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_attention_backward(dpt_op_t *op, const dpt_op_args_t *a);

dpt_status_t dpt__cpu_xent_create(dpt_backend_t *be, dpt_op_t *op);
dpt_status_t dpt__cpu_xent_forward(dpt_op_t *op, const dpt_op_args_t *a);
dpt_status_t dpt__cpu_xent_backward(dpt_op_t *op, const dpt_op_args_t *a);

#endif
