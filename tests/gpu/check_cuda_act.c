/* check_cuda_act.c: the cuda backend's smooth activations (SiLU, GELU in its erf and tanh forms,
 * sigmoid) against the ref backend, forward and backward, in each precision (fp32, bf16, fp16).
 * It is check_cuda_ops.c's elementwise test, kept in its own file because that one is at its
 * size limit. As there, inputs and output gradients are rounded through the device type first,
 * so both backends see identical values, and y and dx must agree within 1e-4 (fp32) or 1e-2
 * (bf16/fp16) of the largest magnitude of the ref result. The cases are the shared shapes with
 * random inputs, and a ramp over [-8, 8] (saturated logistic, erf tails). In the 16-bit modes
 * the same cases run once more with a float32 NCHW input (the backend casts it). The dx buffer
 * is pre-filled with garbage (backward overwrites it), and a backward without dx must succeed.
 *
 * Without a CUDA device (or driver) the program prints "SKIP: no CUDA device (<reason>)" and
 * exits 77, which CTest reports as skipped. Check runs in CK_NOFORK mode (never fork after CUDA
 * is initialized).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_compare.h"
#include "cuda_harness.h"
#include "dptrain/alloc.h"
#include "dptrain/backend.h"
#include "dptrain/cuda.h"
#include "dptrain/rng.h"

/* ---- one comparison ------------------------------------------------------------------------ */
/* act: 0 silu, 1 gelu (erf), 2 gelu (tanh), 3 sigmoid */
static dpt_op_desc_t act_desc(int act, dpt_tensor_t shape)
{
    static const dpt_op_kind_t kinds[] = {DPT_OP_SILU, DPT_OP_GELU, DPT_OP_GELU, DPT_OP_SIGMOID};
    dpt_op_desc_t d = {.kind = kinds[act], .n_in = 1, .gelu_tanh = act == 2};
    d.in[0] = shape;
    return d;
}

static const char *act_name(int act)
{
    static const char *names[] = {"silu", "gelu(erf)", "gelu(tanh)", "sigmoid"};
    return names[act];
}

/* ramp = 1: x spread evenly over [-8, 8]; else uniform in 0.3 +- 2 from seed. */
static void compare(int act, dpt_tensor_t shape, dpt_precision_t prec, int in_fp32, int ramp,
                    uint64_t seed)
{
    const char *pn = dpt_precision_name(prec), *an = act_name(act);
    double tol = tol_of(prec);
    dpt_backend_t *gb = cuda_be(prec), *rb;
    ck_assert_int_eq(R->create(&(dpt_backend_config_t){0}, &rb), DPT_OK);
    dpt_op_desc_t desc = act_desc(act, shape), dg = desc;
    dg.in[0] = with_layout(shape, in_fp32 ? DPT_LAYOUT_NCHW : dpt_cuda_layout(prec));
    dpt_op_t *rop, *gop;
    dpt_op_info_t ri, gi;
    ck_assert_msg(R->op_create(rb, &desc, &rop, &ri) == DPT_OK, "ref %s: %s", an,
                  dpt_error_get());
    dpt_status_t st = G->op_create(gb, &dg, &gop, &gi);
    ck_assert_msg(st == DPT_OK, "cuda op_create %s (%s): %s", an, pn, dpt_error_get());
    ck_assert_int_eq(gi.out.n, ri.out.n);
    ck_assert_int_eq(gi.out.c, ri.out.c);
    ck_assert_int_eq(gi.out.h, ri.out.h);
    ck_assert_int_eq(gi.out.w, ri.out.w);
    ck_assert_int_eq(gi.out.layout, dpt_cuda_layout(prec));
    ck_assert_uint_eq(gi.n_params, 0);

    size_t n = dpt_tensor_count(&shape);
    dpt_rng_t rng;
    dpt_rng_init(&rng, seed, (uint64_t)act * 8 + (uint64_t)prec);
    float *x = randv(&rng, n, 2.0f, 0.3f), *dy = randv(&rng, n, 1.0f, 0.0f);
    if (ramp)
        for (size_t i = 0; i < n; i++)
            x[i] = -8.0f + 16.0f * (float)i / (float)(n > 1 ? n - 1 : 1);
    quantize(gb, prec, x, n);
    quantize(gb, prec, dy, n);
    float *garbage = dpt_malloc(n * sizeof(float)), *got = dpt_malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        garbage[i] = 7.0f;

    dpt_tensor_t rx = desc.in[0], rdx = desc.in[0], ry = ri.out, rdy = ri.out;
    rx.data = R->alloc(rb, rx.nbytes);
    rdx.data = R->alloc(rb, rdx.nbytes);
    ry.data = R->alloc(rb, ry.nbytes);
    rdy.data = R->alloc(rb, rdy.nbytes);
    memcpy(rx.data, x, n * sizeof(float));
    memcpy(rdy.data, dy, n * sizeof(float));
    dpt_tensor_t gx = dev_tensor(gb, dg.in[0]), gdx = dev_tensor(gb, dg.in[0]);
    dpt_tensor_t gy = dev_tensor(gb, gi.out), gdy = dev_tensor(gb, gi.out);
    import_t(gb, x, &gx);
    import_t(gb, dy, &gdy);
    import_t(gb, garbage, &gdx);

    dpt_op_args_t ra = {.x = {&rx}, .y = &ry, .dy = &rdy, .dx = {&rdx}, .training = 1};
    dpt_op_args_t ga = {.x = {&gx}, .y = &gy, .dy = &gdy, .dx = {&gdx}, .training = 1};
    ck_assert_int_eq(R->forward(rop, &ra), DPT_OK);
    st = G->forward(gop, &ga);
    ck_assert_msg(st == DPT_OK, "%s %s fwd: %s", an, pn, dpt_error_get());
    export_t(gb, &gy, got);
    double e = rel_err(got, ry.data, n);
    ck_assert_msg(e < tol, "%s %s%s fwd: rel err %g", an, pn, in_fp32 ? " (fp32 in)" : "", e);
    ck_assert_int_eq(R->backward(rop, &ra), DPT_OK);
    st = G->backward(gop, &ga);
    ck_assert_msg(st == DPT_OK, "%s %s bwd: %s", an, pn, dpt_error_get());
    export_t(gb, &gdx, got);
    e = rel_err(got, rdx.data, n);
    ck_assert_msg(e < tol, "%s %s%s dx: rel err %g", an, pn, in_fp32 ? " (fp32 in)" : "", e);
    ga.dx[0] = NULL;   /* no input gradient wanted: nothing to do, and no error */
    st = G->backward(gop, &ga);
    ck_assert_msg(st == DPT_OK, "%s %s bwd without dx: %s", an, pn, dpt_error_get());
    ck_assert_int_eq(G->sync(gb), DPT_OK);

    R->free(rb, rx.data);
    R->free(rb, rdx.data);
    R->free(rb, ry.data);
    R->free(rb, rdy.data);
    G->free(gb, gx.data);
    G->free(gb, gdx.data);
    G->free(gb, gy.data);
    G->free(gb, gdy.data);
    dpt_free(x);
    dpt_free(dy);
    dpt_free(garbage);
    dpt_free(got);
    R->op_destroy(rop);
    G->op_destroy(gop);
    R->destroy(rb);
}

/* ---- the cases (_i of the loop test is the precision) --------------------------------------- */
START_TEST(test_act)
{
    dpt_precision_t prec = (dpt_precision_t)_i;
    for (int in_fp32 = 0; in_fp32 <= (prec != DPT_PREC_FP32); in_fp32++)
        for (int act = 0; act < 4; act++) {
            for (int s = 0; s < N_SHAPES; s++) {
                const int *k = shape_cases[s];
                compare(act, dpt_tensor_shape(k[0], k[1], k[2], k[3]), prec, in_fp32, 0,
                        400 + (uint64_t)(s * 4 + act));
            }
            /* 3 x 20 x 5 x 7 = 2100 values on the ramp; a larger tensor spans many blocks */
            compare(act, dpt_tensor_shape(3, 20, 5, 7), prec, in_fp32, 1, 480 + (uint64_t)act);
            compare(act, dpt_tensor_shape(16, 32, 16, 16), prec, in_fp32, 0,
                    490 + (uint64_t)act);
        }
}
END_TEST

static Suite *cuda_act_suite(void)
{
    Suite *s = suite_create("cuda_act");
    TCase *tc = tcase_create("act");
    tcase_add_loop_test(tc, test_act, 0, DPT_PREC_COUNT_);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return cuda_test_main(cuda_act_suite); }
