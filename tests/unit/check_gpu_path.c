/* check_gpu_path.c: the host-side parts of the GPU training path, testable without a device:
 * the fp16 loss scaler (src/optim/loss_scale.c) and the loader's deferred augmentation
 * (defer_aug: crop offsets and flip recorded per sample for the device kernel of
 * src/data/gpu_input.cu). A host model of that kernel applied to the deferred batch must give
 * the loader's own augmented batch bit for bit, for one and several ranks. */
#include <check.h>
#include <string.h>

#include "check_main.h"
#include "dptrain/alloc.h"
#include "dptrain/dataset.h"
#include "dptrain/loader.h"
#include "dptrain/optim.h"

START_TEST(scaler_dynamic)
{
    dpt_loss_scaler_t s;
    dpt_loss_scaler_init(&s, 1, 123.0f);
    ck_assert(s.dynamic);
    ck_assert_float_eq(s.scale, 65536.0f);
    ck_assert_int_eq(dpt_loss_scaler_update(&s, 1), 0);   /* overflow: skip, halve */
    ck_assert_float_eq(s.scale, 32768.0f);
    ck_assert_int_eq(s.skipped, 1);
    for (int i = 0; i < s.growth_interval - 1; i++)
        ck_assert_int_eq(dpt_loss_scaler_update(&s, 0), 1);
    ck_assert_float_eq(s.scale, 32768.0f);
    ck_assert_int_eq(dpt_loss_scaler_update(&s, 0), 1);   /* the 2000th good step doubles */
    ck_assert_float_eq(s.scale, 65536.0f);
    ck_assert_int_eq(dpt_loss_scaler_update(&s, 1), 0);   /* an overflow restarts the count */
    for (int i = 0; i < s.growth_interval - 1; i++)
        dpt_loss_scaler_update(&s, 0);
    ck_assert_float_eq(s.scale, 32768.0f);
    for (int i = 0; i < 40; i++)
        dpt_loss_scaler_update(&s, 1);
    ck_assert_float_eq(s.scale, 1.0f);   /* never below 1 */
    ck_assert_int_eq(s.skipped, 42);
}
END_TEST

START_TEST(scaler_static)
{
    dpt_loss_scaler_t s;
    dpt_loss_scaler_init(&s, 0, 128.0f);
    ck_assert(!s.dynamic);
    ck_assert_int_eq(dpt_loss_scaler_update(&s, 1), 1);   /* the NaN policy decides */
    ck_assert_float_eq(s.scale, 128.0f);
    dpt_loss_scaler_init(&s, 0, 0.0f);
    ck_assert_float_eq(s.scale, 1.0f);
}
END_TEST

/* The device kernel's rule (gpu_input.cu crop_flip_kernel) on the host. */
static void apply_aug(const float *in, const int32_t *aug, float *out, int n, int c, int h, int w,
                      int pad)
{
    for (int s = 0; s < n; s++)
        for (int ch = 0; ch < c; ch++)
            for (int oy = 0; oy < h; oy++)
                for (int ox = 0; ox < w; ox++) {
                    int dy = aug[3 * s], dx = aug[3 * s + 1], flip = aug[3 * s + 2];
                    int sy = oy + dy - pad, sx = (flip ? w - 1 - ox : ox) + dx - pad;
                    size_t plane = (size_t)s * c + ch;
                    out[(plane * h + oy) * w + ox] =
                        sy >= 0 && sy < h && sx >= 0 && sx < w ? in[(plane * h + sy) * w + sx]
                                                               : 0.0f;
                }
}

static void check_deferred(int nranks, int drop_last)
{
    dpt_dataset_t *ds;
    ck_assert_int_eq(dpt_dataset_open("synthetic:100:3:12:10:10", 1, 5, &ds), DPT_OK);
    const int batch = 8, pad = 3;
    size_t chw = (size_t)ds->c * ds->h * ds->w;
    float *got = dpt_malloc((size_t)batch * chw * sizeof(float));
    for (int r = 0; r < nranks; r++) {
        dpt_loader_config_t cfg = {.batch = batch, .rank = r, .nranks = nranks, .seed = 77,
                                   .shuffle = 1, .drop_last = drop_last, .crop_pad = pad,
                                   .flip = 1, .prefetch = r % 2};
        dpt_loader_t *ref, *def;
        ck_assert_int_eq(dpt_loader_create(ds, &cfg, &ref), DPT_OK);
        cfg.defer_aug = 1;
        ck_assert_int_eq(dpt_loader_create(ds, &cfg, &def), DPT_OK);
        for (int epoch = 0; epoch < 2; epoch++) {
            ck_assert_int_eq(dpt_loader_start_epoch(ref, epoch), DPT_OK);
            ck_assert_int_eq(dpt_loader_start_epoch(def, epoch), DPT_OK);
            for (int k = 0; k < dpt_loader_steps(ref); k++) {
                const dpt_batch_t *a, *b;
                ck_assert_int_eq(dpt_loader_next(ref, &a), DPT_OK);
                ck_assert_int_eq(dpt_loader_next(def, &b), DPT_OK);
                ck_assert_ptr_null(a->aug);
                ck_assert_ptr_nonnull(b->aug);
                ck_assert_int_eq(a->n_valid, b->n_valid);
                ck_assert(!memcmp(a->y, b->y, (size_t)batch * sizeof(int32_t)));
                for (int i = 0; i < batch; i++) {
                    ck_assert(b->aug[3 * i] >= 0 && b->aug[3 * i] <= 2 * pad);
                    ck_assert(b->aug[3 * i + 1] >= 0 && b->aug[3 * i + 1] <= 2 * pad);
                    ck_assert(b->aug[3 * i + 2] == 0 || b->aug[3 * i + 2] == 1);
                }
                apply_aug(b->x, b->aug, got, batch, ds->c, ds->h, ds->w, pad);
                ck_assert_msg(!memcmp(got, a->x, (size_t)batch * chw * sizeof(float)),
                              "rank %d of %d, epoch %d, step %d: deferred augmentation differs",
                              r, nranks, epoch, k);
            }
        }
        dpt_loader_destroy(ref);
        dpt_loader_destroy(def);
    }
    dpt_free(got);
    dpt_dataset_destroy(ds);
}

START_TEST(deferred_one_rank) { check_deferred(1, 1); }
END_TEST

START_TEST(deferred_three_ranks_padded) { check_deferred(3, 0); }
END_TEST

START_TEST(deferred_refuses_rrc)
{
    dpt_dataset_t *ds;
    ck_assert_int_eq(dpt_dataset_open("synthetic:64:3:12:12:10", 1, 5, &ds), DPT_OK);
    dpt_loader_config_t cfg = {.batch = 8, .nranks = 1, .seed = 1, .rrc = 1,
                               .rrc_scale = {0.5f, 1.0f}, .rrc_ratio = {0.75f, 1.25f},
                               .defer_aug = 1};
    dpt_loader_t *ld = NULL;
    ck_assert_int_eq(dpt_loader_create(ds, &cfg, &ld), DPT_ERR_INVALID_ARG);
    ck_assert_ptr_null(ld);
    dpt_dataset_destroy(ds);
}
END_TEST

static Suite *gpu_path_suite(void)
{
    Suite *s = suite_create("gpu_path");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, scaler_dynamic);
    tcase_add_test(tc, scaler_static);
    tcase_add_test(tc, deferred_one_rank);
    tcase_add_test(tc, deferred_three_ranks_padded);
    tcase_add_test(tc, deferred_refuses_rrc);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(gpu_path_suite)
