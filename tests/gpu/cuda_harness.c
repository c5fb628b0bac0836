/* cuda_harness.c: the helpers of cuda_harness.h, shared by the tests/gpu/check_cuda_*.c
 * programs (each links its own copy). */
#include "cuda_harness.h"
#include "dptrain/rng.h"
#include "dptrain/alloc.h"
#include "check_compare.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static dpt_backend_t *g_be[DPT_PREC_COUNT_];   /* one cuda backend per precision, reused */

dpt_backend_t *cuda_be(dpt_precision_t p)
{
    if (!g_be[p]) {
        dpt_backend_config_t cfg = {.device = 0, .precision = p};
        dpt_status_t st = G->create(&cfg, &g_be[p]);
        ck_assert_msg(st == DPT_OK, "cuda create (%s): %s", dpt_precision_name(p),
                      dpt_error_get());
    }
    return g_be[p];
}

double tol_of(dpt_precision_t p) { return p == DPT_PREC_FP32 ? 1e-4 : 1e-2; }

dpt_tensor_t dev_tensor(dpt_backend_t *be, dpt_tensor_t shape)
{
    shape.data = G->alloc(be, shape.nbytes);
    ck_assert_msg(shape.data != NULL, "cuda alloc %zu: %s", shape.nbytes, dpt_error_get());
    return shape;
}

dpt_tensor_t with_layout(dpt_tensor_t t, int layout)
{
    t.layout = layout;
    t.nbytes = dpt_tensor_count(&t) * dpt_cuda_layout_elem_size(layout);
    return t;
}

float *dev_floats(dpt_backend_t *be, const float *host, size_t n)
{
    float *d = G->alloc(be, (n + 1) * sizeof(float));
    ck_assert_ptr_nonnull(d);
    if (host)
        ck_assert_int_eq(G->memcpy(be, d, host, n * sizeof(float), DPT_COPY_H2D), DPT_OK);
    return d;
}

void to_host(dpt_backend_t *be, float *dst, const float *src_dev, size_t n)
{
    ck_assert_int_eq(G->memcpy(be, dst, src_dev, n * sizeof(float), DPT_COPY_D2H), DPT_OK);
}

void export_t(dpt_backend_t *be, const dpt_tensor_t *t, float *out)
{
    dpt_status_t st = G->export_nchw(be, t, out);
    ck_assert_msg(st == DPT_OK, "export: %s", dpt_error_get());
}

void import_t(dpt_backend_t *be, const float *in, dpt_tensor_t *t)
{
    dpt_status_t st = G->import_nchw(be, in, t);
    ck_assert_msg(st == DPT_OK, "import: %s", dpt_error_get());
}

void quantize(dpt_backend_t *be, dpt_precision_t p, float *v, size_t n)
{
    if (p == DPT_PREC_FP32 || !n)
        return;
    dpt_tensor_t t = dev_tensor(be, with_layout(dpt_tensor_shape((int)n, 1, 1, 1),
                                                dpt_cuda_layout(p)));
    import_t(be, v, &t);
    export_t(be, &t, v);
    G->free(be, t.data);
}

int cuda_test_main(Suite *(*make_suite)(void))
{
    if (dpt_cuda_device_count() == 0) {
        printf("SKIP: no CUDA device (%s)\n", dpt_cuda_no_device_reason());
        return 77;
    }
    SRunner *sr = srunner_create(make_suite());
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_VERBOSE);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    for (int p = 0; p < DPT_PREC_COUNT_; p++)
        if (g_be[p]) {
            G->destroy(g_be[p]);
            g_be[p] = NULL;
        }
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* ---- one op against ref (cuda_compare_op) ------------------------------------------------ */

void cuda_compare_op(const dpt_op_desc_t *desc, const cuda_op_mode_t *m, uint64_t seed)
{
    const char *kind = dpt_op_kind_name(desc->kind), *pn = dpt_precision_name(m->prec);
    double tol = tol_of(m->prec);
    dpt_backend_t *gb = cuda_be(m->prec), *rb;
    ck_assert_int_eq(R->create(&(dpt_backend_config_t){0}, &rb), DPT_OK);
    int n_in = dpt_op_n_inputs(desc->kind);
    int lay = m->in_fp32 ? DPT_LAYOUT_NCHW : dpt_cuda_layout(m->prec);

    dpt_op_desc_t dg = *desc;
    for (int i = 0; i < n_in; i++)
        dg.in[i] = with_layout(desc->in[i], lay);
    dpt_op_t *rop, *gop;
    dpt_op_info_t ri, gi;
    ck_assert_msg(R->op_create(rb, desc, &rop, &ri) == DPT_OK, "ref %s: %s", kind,
                  dpt_error_get());
    dpt_status_t st = G->op_create(gb, &dg, &gop, &gi);
    ck_assert_msg(st == DPT_OK, "cuda op_create %s (%s): %s", kind, pn, dpt_error_get());
    ck_assert_int_eq(gi.out.n, ri.out.n);
    ck_assert_int_eq(gi.out.c, ri.out.c);
    ck_assert_int_eq(gi.out.h, ri.out.h);
    ck_assert_int_eq(gi.out.w, ri.out.w);
    ck_assert_int_eq(gi.out.layout, dpt_cuda_layout(m->prec));
    ck_assert_uint_eq(gi.n_params, ri.n_params);
    ck_assert_uint_eq(gi.n_weights, ri.n_weights);
    ck_assert_uint_eq(gi.n_buffers, ri.n_buffers);

    dpt_rng_t rng;
    dpt_rng_init(&rng, seed, (uint64_t)desc->kind * 8 + (uint64_t)m->prec);
    size_t np = ri.n_params, nb = ri.n_buffers;
    size_t nx = dpt_tensor_count(&desc->in[0]), ny = dpt_tensor_count(&ri.out);
    int N = desc->in[0].n;

    /* host data, rounded to the device type where the op stores it in that type */
    float *w = randv(&rng, np, 0.5f, 0.0f);
    if (desc->kind == DPT_OP_BATCHNORM || desc->kind == DPT_OP_LAYERNORM)   /* gamma around 1 */
        for (size_t i = 0; i < np / 2; i++)
            w[i] += 1.0f;
    if (desc->kind == DPT_OP_CONV2D || desc->kind == DPT_OP_FC || desc->kind == DPT_OP_LINEAR)
        quantize(gb, m->prec, w, ri.n_weights);
    float *buf = randv(&rng, nb, 0.2f, 0.0f);
    for (size_t i = nb / 2; i < nb; i++)     /* running var > 0 */
        buf[i] += 1.0f;
    float *x[2] = {NULL, NULL};
    for (int i = 0; i < n_in; i++) {
        x[i] = randv(&rng, nx, 2.0f, 0.3f);
        quantize(gb, m->prec, x[i], nx);
    }
    float *dy = randv(&rng, ny, 1.0f, 0.0f);
    quantize(gb, m->prec, dy, ny);
    int32_t *labels = dpt_malloc((size_t)N * sizeof(int32_t));
    for (int i = 0; i < N; i++)
        labels[i] = (int32_t)dpt_rng_below(&rng, (uint32_t)desc->in[0].c);
    float *garbage = dpt_malloc(((nx > ny ? nx : ny) + np + 1) * sizeof(float));
    for (size_t i = 0; i < (nx > ny ? nx : ny) + np; i++)
        garbage[i] = 7.0f;

    /* ref side: host memory */
    dpt_tensor_t rx[2], rdx[2], ry = ri.out, rdy = ri.out;
    for (int i = 0; i < n_in; i++) {
        rx[i] = rdx[i] = desc->in[i];
        rx[i].data = R->alloc(rb, rx[i].nbytes);
        rdx[i].data = R->alloc(rb, rdx[i].nbytes);
        memcpy(rx[i].data, x[i], dpt_tensor_count(&desc->in[i]) * sizeof(float));
    }
    ry.data = R->alloc(rb, ry.nbytes);
    rdy.data = R->alloc(rb, rdy.nbytes);
    memcpy(rdy.data, dy, ny * sizeof(float));
    float *rw = dpt_malloc((np + 1) * sizeof(float)), *rdw = dpt_calloc((np + 1) * sizeof(float));
    float *rbuf = dpt_malloc((nb + 1) * sizeof(float));
    memcpy(rw, w, np * sizeof(float));
    memcpy(rbuf, buf, nb * sizeof(float));

    /* cuda side: device memory */
    dpt_tensor_t gx[2], gdx[2], gy = dev_tensor(gb, gi.out), gdy = dev_tensor(gb, gi.out);
    for (int i = 0; i < n_in; i++) {
        gx[i] = dev_tensor(gb, dg.in[i]);
        gdx[i] = dev_tensor(gb, dg.in[i]);
        import_t(gb, x[i], &gx[i]);
    }
    import_t(gb, dy, &gdy);
    float *gw = dev_floats(gb, w, np), *gdw = dev_floats(gb, NULL, np);
    float *gbuf = dev_floats(gb, buf, nb);

    float *got = dpt_malloc(((nx > ny ? nx : ny) + np + nb + 1) * sizeof(float));
    float rloss = -1, gloss = -2;
    int32_t rcorrect = -1, gcorrect = -2;
    for (int training = 1; training >= 0; training--) {
        if (desc->kind == DPT_OP_XENT && !training)
            break;
        dpt_op_args_t ra = {.x = {&rx[0], n_in > 1 ? &rx[1] : NULL}, .y = &ry, .dy = &rdy,
                            .dx = {&rdx[0], n_in > 1 ? &rdx[1] : NULL}, .w = rw, .dw = rdw,
                            .buf = rbuf, .labels = labels, .loss = &rloss, .correct = &rcorrect,
                            .n_valid = m->n_valid, .training = training};
        dpt_op_args_t ga = {.x = {&gx[0], n_in > 1 ? &gx[1] : NULL}, .y = &gy, .dy = &gdy,
                            .dx = {&gdx[0], n_in > 1 ? &gdx[1] : NULL}, .w = gw, .dw = gdw,
                            .buf = gbuf, .labels = labels, .loss = &gloss, .correct = &gcorrect,
                            .n_valid = m->n_valid, .training = training,
                            .loss_scale = m->loss_scale};
        ck_assert_int_eq(R->forward(rop, &ra), DPT_OK);
        st = G->forward(gop, &ga);
        ck_assert_msg(st == DPT_OK, "%s %s fwd: %s", kind, pn, dpt_error_get());
        export_t(gb, &gy, got);
        double e = rel_err(got, ry.data, ny);
        ck_assert_msg(e < tol, "%s %s fwd (training %d): rel err %g", kind, pn, training, e);
        if (nb) {
            to_host(gb, got, gbuf, nb);
            e = rel_err(got, rbuf, nb);
            ck_assert_msg(e < tol, "%s %s running stats (training %d): rel err %g", kind, pn,
                          training, e);
        }
        if (desc->kind == DPT_OP_XENT) {
            ck_assert_msg(fabsf(gloss - rloss) < 1e-4f * fmaxf(1.0f, fabsf(rloss)),
                          "xent %s loss %g vs ref %g", pn, gloss, rloss);
            ck_assert_int_eq(gcorrect, rcorrect);
        }
        if (!training)
            break;

        /* backward twice: with input gradients, then without (dW must not depend on it) */
        for (int with_dx = 1; with_dx >= 0; with_dx--) {
            if (!with_dx && !np && !m->bwd_no_dx)
                break;
            for (int i = 0; i < n_in; i++) {
                import_t(gb, garbage, &gdx[i]);
                if (!with_dx)
                    ga.dx[i] = NULL, ra.dx[i] = NULL;
            }
            if (np)
                ck_assert_int_eq(G->memcpy(gb, gdw, garbage, np * sizeof(float), DPT_COPY_H2D),
                                 DPT_OK);
            ck_assert_int_eq(R->backward(rop, &ra), DPT_OK);
            st = G->backward(gop, &ga);
            ck_assert_msg(st == DPT_OK, "%s %s bwd: %s", kind, pn, dpt_error_get());
            if (with_dx)
                for (int i = 0; i < n_in; i++) {
                    float s = desc->kind == DPT_OP_XENT && m->loss_scale != 0 ? m->loss_scale : 1;
                    const size_t nxi = dpt_tensor_count(&desc->in[i]);
                    for (size_t k = 0; k < nxi; k++)
                        rdx[i].data[k] *= s;
                    export_t(gb, &gdx[i], got);
                    e = rel_err(got, rdx[i].data, nxi);
                    ck_assert_msg(e < tol, "%s %s dx%d: rel err %g", kind, pn, i, e);
                }
            if (!with_dx && !np)   /* nothing to compare: the backward must have run */
                ck_assert_msg(G->sync(gb) == DPT_OK, "%s %s bwd without dx: %s", kind, pn,
                              dpt_error_get());
            if (np) {
                to_host(gb, got, gdw, np);
                e = rel_err(got, rdw, np);
                ck_assert_msg(e < tol, "%s %s dW (dx %s): rel err %g", kind, pn,
                              with_dx ? "on" : "off", e);
            }
        }
    }

    for (int i = 0; i < n_in; i++) {
        R->free(rb, rx[i].data);
        R->free(rb, rdx[i].data);
        G->free(gb, gx[i].data);
        G->free(gb, gdx[i].data);
        dpt_free(x[i]);
    }
    R->free(rb, ry.data);
    R->free(rb, rdy.data);
    G->free(gb, gy.data);
    G->free(gb, gdy.data);
    G->free(gb, gw);
    G->free(gb, gdw);
    G->free(gb, gbuf);
    dpt_free(rw);
    dpt_free(rdw);
    dpt_free(rbuf);
    dpt_free(w);
    dpt_free(buf);
    dpt_free(dy);
    dpt_free(labels);
    dpt_free(garbage);
    dpt_free(got);
    R->op_destroy(rop);
    G->op_destroy(gop);
    R->destroy(rb);
}
