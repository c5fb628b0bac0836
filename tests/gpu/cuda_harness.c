/* cuda_harness.c: the helpers of cuda_harness.h, shared by the tests/gpu/check_cuda_*.c
 * programs (each links its own copy). */
#include "cuda_harness.h"

#include <stdio.h>
#include <stdlib.h>

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
