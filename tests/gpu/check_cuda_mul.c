/* check_cuda_mul.c: the cuda backend's channel gate (mul) against the ref backend through
 * cuda_compare_op, in each precision, including float32 NCHW inputs in the 16-bit modes.
 * Without a CUDA device: "SKIP: no CUDA device (<reason>)", exit 77. */
#include <check.h>

#include "cuda_harness.h"
#include "dptrain/backend.h"

START_TEST(test_mul)
{
    static const int shapes[][4] = {{2, 16, 5, 5}, {3, 20, 3, 7}, {1, 7, 1, 9}, {4, 32, 1, 1}};
    for (int k = 0; k < 4; k++) {
        dpt_op_desc_t d = {.kind = DPT_OP_MUL, .n_in = 2};
        d.in[0] = dpt_tensor_shape(shapes[k][0], shapes[k][1], shapes[k][2], shapes[k][3]);
        d.in[1] = dpt_tensor_shape(shapes[k][0], shapes[k][1], 1, 1);
        cuda_op_mode_t m = {.prec = (dpt_precision_t)_i, .in_fp32 = k == 1 && _i != 0};
        cuda_compare_op(&d, &m, 700 + (uint64_t)k);
    }
}
END_TEST

static Suite *cuda_mul_suite(void)
{
    Suite *s = suite_create("cuda_mul");
    TCase *tc = tcase_create("mul");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_mul, 0, DPT_PREC_COUNT_);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return cuda_test_main(cuda_mul_suite); }
