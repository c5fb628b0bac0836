/* check_cuda_drop.c: the cuda backend's dropout and drop path against the ref backend through
 * cuda_compare_op (the masks must agree element for element), in each precision, including a
 * float32 NCHW input in the 16-bit modes. Without a CUDA device: "SKIP: no CUDA device
 * (<reason>)", exit 77. */
#include <check.h>

#include "cuda_harness.h"
#include "dptrain/backend.h"

START_TEST(test_drop)
{
    const dpt_op_kind_t kinds[2] = {DPT_OP_DROPOUT, DPT_OP_DROP_PATH};
    for (int k = 0; k < 2; k++)
        for (int f = 0; f < (_i ? 2 : 1); f++) {
            dpt_op_desc_t d = {.kind = kinds[k], .n_in = 1, .drop_rate = 0.4f, .rng_layer = 9};
            d.in[0] = dpt_tensor_shape(6, 20, 3, 5);
            cuda_op_mode_t m = {.prec = (dpt_precision_t)_i, .in_fp32 = f};
            cuda_compare_op(&d, &m, 800 + (uint64_t)k);
        }
}
END_TEST

static Suite *cuda_drop_suite(void)
{
    Suite *s = suite_create("cuda_drop");
    TCase *tc = tcase_create("drop");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_drop, 0, DPT_PREC_COUNT_);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return cuda_test_main(cuda_drop_suite); }
