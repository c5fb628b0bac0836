/* check_cuda_attention.c: the cuda backend's multi-head self-attention core (DPT_OP_ATTENTION)
 * against the ref backend through cuda_compare_op, in each precision (fp32, bf16, fp16), on
 * shapes with T = 1, 5, 17 and 65 tokens, 1 to 4 heads (odd head widths too) and N = 1 to 3:
 * y in training and in eval, and dx (pre-filled with garbage: backward overwrites all of it)
 * within 1e-4 (fp32) or 1e-2 (bf16/fp16) of the largest magnitude of the ref result, inputs and
 * output gradients rounded through the device type first. In the 16-bit modes each case runs
 * once more with a float32 NCHW input (the backend casts it). A backward without dx must
 * succeed (bwd_no_dx).
 *
 * Without a CUDA device (or driver) the program prints "SKIP: no CUDA device (<reason>)" and
 * exits 77, which CTest reports as skipped. Check runs in CK_NOFORK mode.
 */
#include <check.h>

#include "cuda_harness.h"
#include "dptrain/backend.h"

/* N, D (channels of each of q, k, v), heads, T */
static const int cases[][4] = {
    {1, 3, 1, 1}, {3, 8, 2, 1}, {1, 4, 1, 5}, {3, 6, 2, 5}, {2, 12, 4, 5},
    {3, 5, 1, 17}, {1, 6, 2, 17}, {3, 12, 4, 17}, {2, 32, 4, 65}, {1, 9, 3, 65},
    {2, 6, 3, 7},  {1, 6, 3, 50},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

/* _i of the loop test is the precision */
START_TEST(test_attention)
{
    dpt_precision_t prec = (dpt_precision_t)_i;
    for (int in_fp32 = 0; in_fp32 <= (prec != DPT_PREC_FP32); in_fp32++)
        for (int ci = 0; ci < N_CASES; ci++) {
            const int *k = cases[ci];
            dpt_op_desc_t d = {.kind = DPT_OP_ATTENTION, .n_in = 1, .heads = k[2]};
            d.in[0] = dpt_tensor_shape(k[0], 3 * k[1], 1, k[3]);
            cuda_op_mode_t m = {.prec = prec, .in_fp32 = in_fp32, .bwd_no_dx = 1};
            cuda_compare_op(&d, &m, 700 + (uint64_t)ci);
        }
}
END_TEST

/* The output shape (N, D, 1, T) and no parameters, on cuda itself. */
START_TEST(test_attention_shape)
{
    dpt_precision_t prec = (dpt_precision_t)_i;
    for (int ci = 0; ci < N_CASES; ci++) {
        const int *k = cases[ci];
        dpt_op_desc_t d = {.kind = DPT_OP_ATTENTION, .n_in = 1, .heads = k[2]};
        d.in[0] = with_layout(dpt_tensor_shape(k[0], 3 * k[1], 1, k[3]), dpt_cuda_layout(prec));
        dpt_op_t *op;
        dpt_op_info_t info;
        dpt_status_t st = G->op_create(cuda_be(prec), &d, &op, &info);
        ck_assert_msg(st == DPT_OK, "cuda op_create case %d: %s", ci, dpt_error_get());
        ck_assert_int_eq(info.out.n, k[0]);
        ck_assert_int_eq(info.out.c, k[1]);
        ck_assert_int_eq(info.out.h, 1);
        ck_assert_int_eq(info.out.w, k[3]);
        ck_assert_uint_eq(info.n_params, 0);
        G->op_destroy(op);
    }
}
END_TEST

static Suite *cuda_attention_suite(void)
{
    Suite *s = suite_create("cuda_attention");
    TCase *tc = tcase_create("attention");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_attention, 0, DPT_PREC_COUNT_);
    tcase_add_loop_test(tc, test_attention_shape, 0, DPT_PREC_COUNT_);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return cuda_test_main(cuda_attention_suite); }
