/* check_cuda_train.c: the trainer-side device code against its host counterparts: the device SGD
 * step (src/optim/sgd_cuda.cu) against dpt_sgd_step, with loss-scale unscaling, and the AdamW
 * step (adamw_cuda.cu) against dpt_adamw_step; the non-finite
 * scan; the device input pipeline (src/data/gpu_input.cu: pinned staging, copy stream, crop/flip
 * kernel) against the CPU loader's augmented batches, bit for bit; the model's device arenas and
 * host mirrors (dpt_model_params_to_host/_to_device) on the cuda backend.
 * Without a CUDA device: "SKIP: no CUDA device (<reason>)", exit 77. Check runs in CK_NOFORK mode
 * (never fork after CUDA is initialized). */
#include <check.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_harness.h"
#include "data/gpu_input.h"
#include "dptrain/alloc.h"
#include "dptrain/backend.h"
#include "dptrain/cuda.h"
#include "dptrain/dataset.h"
#include "dptrain/loader.h"
#include "dptrain/model.h"
#include "dptrain/optim.h"
#include "dptrain/rng.h"

#define CU(call) ck_assert_msg((call) == cudaSuccess, "%s failed", #call)

static float *dev_copy(const float *h, size_t n)
{
    float *d = NULL;
    CU(cudaMalloc((void **)&d, (n ? n : 1) * sizeof(float)));
    CU(cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice));
    return d;
}

START_TEST(sgd_matches_host)
{
    const size_t n = 10007;
    dpt_param_segment_t segs[3] = {{0, 5000, 1, 0, 1}, {5000, 7, 0, 0, 1}, {5007, 5000, 1, 1, 1}};
    for (int nest = 0; nest < 2; nest++)
        for (int sc = 0; sc < 2; sc++) {
            float scale = sc ? 1024.0f : 1.0f;
            dpt_rng_t r;
            dpt_rng_init(&r, 3, (uint64_t)(nest * 2 + sc));
            float *p = dpt_malloc(n * sizeof(float)), *g = dpt_malloc(n * sizeof(float));
            float *v = dpt_malloc(n * sizeof(float)), *gs = dpt_malloc(n * sizeof(float));
            float *out = dpt_malloc(n * sizeof(float));
            for (size_t i = 0; i < n; i++) {
                p[i] = dpt_rng_normal(&r);
                g[i] = 0.01f * dpt_rng_normal(&r);
                gs[i] = g[i] * scale;   /* exact: a power of two */
                v[i] = 0.001f * dpt_rng_normal(&r);
            }
            float *dp = dev_copy(p, n), *dg = dev_copy(gs, n), *dv = dev_copy(v, n);
            dpt_sgd_config_t cfg = {.momentum = 0.9f, .nesterov = nest, .weight_decay = 5e-4f};
            for (int step = 0; step < 3; step++) {
                dpt_sgd_step(&cfg, 0.1f, p, g, v, segs, 3);
                ck_assert_int_eq(dpt_sgd_step_device(&cfg, 0.1f, 1.0f / scale, dp, dg, dv, segs,
                                                     3, NULL), DPT_OK);
            }
            CU(cudaDeviceSynchronize());
            double worst = 0;
            CU(cudaMemcpy(out, dp, n * sizeof(float), cudaMemcpyDeviceToHost));
            for (size_t i = 0; i < n; i++)
                worst = fmax(worst, fabs((double)out[i] - p[i]) / fmax(1e-3, fabs((double)p[i])));
            CU(cudaMemcpy(out, dv, n * sizeof(float), cudaMemcpyDeviceToHost));
            for (size_t i = 0; i < n; i++)
                worst = fmax(worst, fabs((double)out[i] - v[i]) / fmax(1e-3, fabs((double)v[i])));
            ck_assert_msg(worst < 1e-5, "nesterov %d scale %g: relative difference %g", nest,
                          (double)scale, worst);
            cudaFree(dp);
            cudaFree(dg);
            cudaFree(dv);
            dpt_free(p);
            dpt_free(g);
            dpt_free(v);
            dpt_free(gs);
            dpt_free(out);
        }
    dpt_sgd_config_t lars = {.momentum = 0.9f, .optimizer = DPT_OPTIM_LARS};
    ck_assert_int_eq(dpt_sgd_step_device(&lars, 0.1f, 1.0f, NULL, NULL, NULL, segs, 3, NULL),
                     DPT_ERR_UNSUPPORTED);
}
END_TEST

/* The device AdamW step (src/optim/adamw_cuda.cu) against dpt_adamw_step over 4 steps, with a
 * loss scale to undo and a changing learning rate. */
START_TEST(adamw_matches_host)
{
    const size_t n = 10007;
    dpt_param_segment_t segs[3] = {{0, 5000, 1, 0, 1}, {5000, 7, 0, 0, 1}, {5007, 5000, 1, 1, 1}};
    const float scale = 1024.0f;
    dpt_rng_t r;
    dpt_rng_init(&r, 4, 1);
    float *p = dpt_malloc(n * sizeof(float)), *g = dpt_malloc(n * sizeof(float));
    float *gs = dpt_malloc(n * sizeof(float)), *out = dpt_malloc(n * sizeof(float));
    float *m = dpt_calloc(n * sizeof(float)), *v = dpt_calloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        p[i] = dpt_rng_normal(&r);
        g[i] = 0.01f * dpt_rng_normal(&r);
        gs[i] = g[i] * scale;
    }
    float *dp = dev_copy(p, n), *dg = dev_copy(gs, n), *dm = dev_copy(m, n), *dv = dev_copy(v, n);
    dpt_sgd_config_t cfg = {.optimizer = DPT_OPTIM_ADAMW, .weight_decay = 0.05f,
                            .adam_beta1 = 0.9f, .adam_beta2 = 0.999f, .adam_eps = 1e-8f};
    for (uint64_t t = 1; t <= 4; t++) {
        float lr = 1e-3f * (float)t;
        dpt_adamw_step(&cfg, lr, t, p, g, m, v, segs, 3);
        ck_assert_int_eq(dpt_adamw_step_device(&cfg, lr, 1.0f / scale, t, dp, dg, dm, dv, segs, 3,
                                               NULL), DPT_OK);
    }
    CU(cudaDeviceSynchronize());
    const float *host[3] = {p, m, v};
    float *dev[3] = {dp, dm, dv};
    for (int k = 0; k < 3; k++) {
        CU(cudaMemcpy(out, dev[k], n * sizeof(float), cudaMemcpyDeviceToHost));
        double worst = 0;
        for (size_t i = 0; i < n; i++)
            worst = fmax(worst, fabs((double)out[i] - host[k][i])
                                    / fmax(1e-6, fabs((double)host[k][i])));
        ck_assert_msg(worst < 1e-5, "adamw %s: relative difference %g", k ? (k == 1 ? "m" : "v")
                      : "params", worst);
        cudaFree(dev[k]);
    }
    cudaFree(dg);
    dpt_free(p);
    dpt_free(g);
    dpt_free(gs);
    dpt_free(out);
    dpt_free(m);
    dpt_free(v);
}
END_TEST

START_TEST(nonfinite_scan)
{
    const size_t n = 300001;
    float *h = dpt_calloc(n * sizeof(float));
    float *d = dev_copy(h, n);
    int *flag = NULL, bad = -1;
    CU(cudaMalloc((void **)&flag, sizeof(int)));
    ck_assert_int_eq(dpt_nonfinite_device(d, n, flag, &bad, NULL), DPT_OK);
    ck_assert_int_eq(bad, 0);
    const float specials[3] = {NAN, INFINITY, -INFINITY};
    for (int k = 0; k < 3; k++) {
        CU(cudaMemcpy(d + n - 1 - k, &specials[k], sizeof(float), cudaMemcpyHostToDevice));
        ck_assert_int_eq(dpt_nonfinite_device(d, n, flag, &bad, NULL), DPT_OK);
        ck_assert_int_eq(bad, 1);
        CU(cudaMemcpy(d + n - 1 - k, h, sizeof(float), cudaMemcpyHostToDevice));
    }
    ck_assert_int_eq(dpt_nonfinite_device(d, 0, flag, &bad, NULL), DPT_OK);
    ck_assert_int_eq(bad, 0);
    cudaFree(flag);
    cudaFree(d);
    dpt_free(h);
}
END_TEST

/* The device pipeline's batches equal the CPU loader's augmented ones, with two batches in
 * flight at a time (stage k+1 before taking k). */
START_TEST(input_pipeline_matches_loader)
{
    dpt_dataset_t *ds;
    ck_assert_int_eq(dpt_dataset_open("synthetic:300:3:32:32:10", 1, 5, &ds), DPT_OK);
    const int batch = 16, pad = 4;
    size_t count = (size_t)batch * ds->c * ds->h * ds->w;
    dpt_loader_config_t cfg = {.batch = batch, .nranks = 1, .seed = 11, .shuffle = 1,
                               .drop_last = 1, .crop_pad = pad, .flip = 1, .prefetch = 1};
    dpt_loader_t *ref, *def;
    ck_assert_int_eq(dpt_loader_create(ds, &cfg, &ref), DPT_OK);
    cfg.defer_aug = 1;
    ck_assert_int_eq(dpt_loader_create(ds, &cfg, &def), DPT_OK);
    cudaStream_t st;
    CU(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    dpt_gpu_input_t *g;
    ck_assert_int_eq(dpt_gpu_input_create(batch, ds->c, ds->h, ds->w, pad, st, &g), DPT_OK);
    float *dout = NULL, *got = dpt_malloc(count * sizeof(float));
    CU(cudaMalloc((void **)&dout, count * sizeof(float)));
    for (int epoch = 0; epoch < 2; epoch++) {
        ck_assert_int_eq(dpt_loader_start_epoch(ref, epoch), DPT_OK);
        ck_assert_int_eq(dpt_loader_start_epoch(def, epoch), DPT_OK);
        ck_assert_int_eq(dpt_gpu_input_reset(g), DPT_OK);
        int steps = dpt_loader_steps(def), fetched = 0;
        for (int k = 0; k < steps; k++) {
            const dpt_batch_t *b;
            while (fetched < steps && dpt_gpu_input_pending(g) < 2 && fetched <= k + 1) {
                ck_assert_int_eq(dpt_loader_next(def, &b), DPT_OK);
                ck_assert_int_eq(dpt_gpu_input_stage(g, b), DPT_OK);
                fetched++;
            }
            const int32_t *labels;
            int n_valid;
            ck_assert_int_eq(dpt_gpu_input_take(g, dout, &labels, &n_valid), DPT_OK);
            CU(cudaStreamSynchronize(st));
            CU(cudaMemcpy(got, dout, count * sizeof(float), cudaMemcpyDeviceToHost));
            const dpt_batch_t *a;
            ck_assert_int_eq(dpt_loader_next(ref, &a), DPT_OK);
            ck_assert_int_eq(n_valid, a->n_valid);
            ck_assert(!memcmp(labels, a->y, (size_t)batch * sizeof(int32_t)));
            ck_assert_msg(!memcmp(got, a->x, count * sizeof(float)),
                          "epoch %d step %d: the device batch differs from the loader's", epoch,
                          k);
        }
    }
    const int32_t *labels;
    int n_valid;
    ck_assert_int_eq(dpt_gpu_input_take(g, dout, &labels, &n_valid), DPT_ERR_INTERNAL);
    cudaFree(dout);
    dpt_free(got);
    dpt_gpu_input_destroy(g);
    cudaStreamDestroy(st);
    dpt_loader_destroy(ref);
    dpt_loader_destroy(def);
    dpt_dataset_destroy(ds);
}
END_TEST

START_TEST(model_mirrors)
{
    const char *src = getenv("DPT_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/models/fmnist-cnn.cfg", src ? src : ".");
    dpt_backend_config_t bc = {.device = 0, .precision = DPT_PREC_FP32};
    dpt_backend_t *be;
    ck_assert_int_eq(dpt_backend_cuda.create(&bc, &be), DPT_OK);
    dpt_model_options_t mo = {.batch = 8};
    dpt_model_t *m;
    ck_assert_msg(dpt_model_create(path, &dpt_backend_cuda, be, &mo, &m) == DPT_OK, "%s",
                  dpt_error_get());
    ck_assert(dpt_model_on_device(m));
    size_t np, nb;
    float *dparams = dpt_model_params(m, &np);
    dpt_model_buffers(m, &nb);
    float *hp = dpt_model_host_params(m), *hb = dpt_model_host_buffers(m);
    ck_assert_ptr_ne(dparams, hp);
    dpt_model_init_params(m, 3);
    float *keep = dpt_malloc((np + nb) * sizeof(float));
    memcpy(keep, hp, np * sizeof(float));
    memcpy(keep + np, hb, nb * sizeof(float));
    ck_assert_int_eq(dpt_model_params_to_device(m), DPT_OK);
    memset(hp, 0, np * sizeof(float));
    memset(hb, 0, nb * sizeof(float));
    ck_assert_int_eq(dpt_model_params_to_host(m), DPT_OK);
    ck_assert(!memcmp(keep, hp, np * sizeof(float)));
    ck_assert(!memcmp(keep + np, hb, nb * sizeof(float)));
    /* one training forward/backward from host data: finite loss, gradients on the device */
    float *x = dpt_malloc((size_t)8 * 28 * 28 * sizeof(float));
    int32_t y[8];
    dpt_rng_t r;
    dpt_rng_init(&r, 1, 2);
    for (int i = 0; i < 8 * 28 * 28; i++)
        x[i] = dpt_rng_normal(&r);
    for (int i = 0; i < 8; i++)
        y[i] = i % 10;
    float loss = -1;
    ck_assert_int_eq(dpt_model_forward(m, x, y, 0, 1, &loss, NULL), DPT_OK);
    ck_assert_msg(isfinite(loss) && loss > 0, "loss %g", (double)loss);
    ck_assert_int_eq(dpt_model_backward(m), DPT_OK);
    int *flag = NULL, bad = -1;
    CU(cudaMalloc((void **)&flag, sizeof(int)));
    ck_assert_int_eq(dpt_nonfinite_device(dpt_model_grads(m, NULL), np, flag, &bad,
                                          dpt_cuda_stream(be)), DPT_OK);
    ck_assert_int_eq(bad, 0);
    cudaFree(flag);
    dpt_free(x);
    dpt_free(keep);
    dpt_model_destroy(m);
    dpt_backend_cuda.destroy(be);
}
END_TEST

static Suite *cuda_train_suite(void)
{
    Suite *s = suite_create("cuda_train");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, sgd_matches_host);
    tcase_add_test(tc, adamw_matches_host);
    tcase_add_test(tc, nonfinite_scan);
    tcase_add_test(tc, input_pipeline_matches_loader);
    tcase_add_test(tc, model_mirrors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return cuda_test_main(cuda_train_suite); }
