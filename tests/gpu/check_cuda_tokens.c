/* check_cuda_tokens.c: the cuda backend's layer norm (our kernels) and linear (cuBLAS) against
 * the ref backend through cuda_compare_op, in each precision (fp32, bf16, fp16), on transformer
 * token shapes (N, D, 1, T), one position per sample (linear's single-GEMM path), and NCHW
 * shapes with H, W > 1 (channels HW apart). Inputs, output gradients and linear's weights are
 * rounded through the device type first so both backends see identical values; y (training and
 * inference), dx and dW must agree within 1e-4 (fp32) or 1e-2 (bf16/fp16) of the largest
 * magnitude of the ref result. In the 16-bit modes every case runs once more with a float32
 * NCHW input (the backend casts it). dx is pre-filled with garbage (backward overwrites it), and
 * a backward without dx must still give the same dW.
 *
 * Without a CUDA device (or driver) the program prints "SKIP: no CUDA device (<reason>)" and
 * exits 77, which CTest reports as skipped. Check runs in CK_NOFORK mode.
 */
#include <check.h>

#include "cuda_harness.h"
#include "dptrain/backend.h"

/* tokens (N, D, 1, T), one position per sample, NCHW with H, W > 1, a ViT-S-like block */
static const int shapes[][4] = {{2, 24, 1, 13}, {3, 17, 1, 1}, {4, 3, 5, 5}, {5, 20, 3, 3},
                                {2, 64, 1, 50}, {4, 384, 1, 65}};
#define N_TOK_SHAPES ((int)(sizeof shapes / sizeof shapes[0]))

/* _i of the loop tests is the precision */
START_TEST(test_layernorm)
{
    dpt_precision_t prec = (dpt_precision_t)_i;
    for (int in_fp32 = 0; in_fp32 <= (prec != DPT_PREC_FP32); in_fp32++)
        for (int i = 0; i < N_TOK_SHAPES; i++) {
            const int *k = shapes[i];
            dpt_op_desc_t d = {.kind = DPT_OP_LAYERNORM, .n_in = 1, .bn_eps = 1e-5f};
            d.in[0] = dpt_tensor_shape(k[0], k[1], k[2], k[3]);
            cuda_op_mode_t m = {.prec = prec, .in_fp32 = in_fp32};
            cuda_compare_op(&d, &m, 900 + (uint64_t)i);
        }
}
END_TEST

START_TEST(test_linear)
{
    dpt_precision_t prec = (dpt_precision_t)_i;
    for (int in_fp32 = 0; in_fp32 <= (prec != DPT_PREC_FP32); in_fp32++)
        for (int i = 0; i < N_TOK_SHAPES; i++)
            for (int bias = 0; bias < 2; bias++) {
                const int *k = shapes[i];
                dpt_op_desc_t d = {.kind = DPT_OP_LINEAR, .n_in = 1, .has_bias = bias,
                                   .out_features = k[1] >= 64 ? 3 * k[1] : 7 + i};
                d.in[0] = dpt_tensor_shape(k[0], k[1], k[2], k[3]);
                cuda_op_mode_t m = {.prec = prec, .in_fp32 = in_fp32};
                cuda_compare_op(&d, &m, 950 + (uint64_t)(i * 2 + bias));
            }
}
END_TEST

static Suite *cuda_tokens_suite(void)
{
    Suite *s = suite_create("cuda_tokens");
    TCase *tc = tcase_create("tokens");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_layernorm, 0, DPT_PREC_COUNT_);
    tcase_add_loop_test(tc, test_linear, 0, DPT_PREC_COUNT_);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return cuda_test_main(cuda_tokens_suite); }
