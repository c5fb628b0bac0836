/* check_cuda_embed.c: the cuda backend's token embedding ops (tokens with and without the class
 * token and the position embedding, token_select) against the ref backend through
 * cuda_compare_op, in each precision, including a float32 NCHW input in the 16-bit modes (the
 * backend casts it). Without a CUDA device: "SKIP: no CUDA device (<reason>)", exit 77. */
#include <check.h>

#include "cuda_harness.h"
#include "dptrain/backend.h"

START_TEST(test_tokens)
{
    static const int shapes[][4] = {{2, 16, 4, 4}, {3, 20, 3, 5}, {1, 7, 1, 9}};
    for (int k = 0; k < 3; k++)
        for (int variant = 0; variant < 4; variant++) {
            dpt_op_desc_t d = {.kind = DPT_OP_TOKENS, .n_in = 1, .cls_token = variant & 1,
                               .pos_embed = variant >> 1};
            d.in[0] = dpt_tensor_shape(shapes[k][0], shapes[k][1], shapes[k][2], shapes[k][3]);
            cuda_op_mode_t m = {.prec = (dpt_precision_t)_i, .in_fp32 = k == 2 && _i != 0};
            cuda_compare_op(&d, &m, 900 + (uint64_t)(k * 4 + variant));
        }
    dpt_op_desc_t s = {.kind = DPT_OP_TOKEN_SELECT, .n_in = 1};
    s.in[0] = dpt_tensor_shape(3, 20, 1, 17);
    cuda_op_mode_t m = {.prec = (dpt_precision_t)_i};
    cuda_compare_op(&s, &m, 950);
}
END_TEST

static Suite *cuda_embed_suite(void)
{
    Suite *s = suite_create("cuda_embed");
    TCase *tc = tcase_create("embed");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_tokens, 0, DPT_PREC_COUNT_);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return cuda_test_main(cuda_embed_suite); }
