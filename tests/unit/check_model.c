/* check_model.c: model files (the shipped ones build with the expected parameter counts; every
 * kind of bad file gives DPT_ERR_* with a message naming file:line), gradient routing through a
 * residual graph (model backward vs finite differences of the model loss), BN+ReLU fusion
 * equivalence, and "no allocation inside a training step". Runs on the ref backend. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "dptrain/alloc.h"
#include "dptrain/model.h"
#include "dptrain/rng.h"
#include "model/internal.h"   /* dpt__model_parse: what the parser made of a file */

static char tmpdir[256];

static const char *src_path(const char *rel)
{
    static char buf[1024];
    const char *root = getenv("DPT_SOURCE_DIR");
    snprintf(buf, sizeof buf, "%s/%s", root ? root : "..", rel);
    return buf;
}

static const char *write_model(const char *name, const char *text)
{
    static char path[512];
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/dpt_model_XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    }
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static dpt_status_t build(const char *path, int batch, int fuse, dpt_backend_t **be,
                          dpt_model_t **m)
{
    const dpt_backend_ops_t *ops = dpt_backend_find("ref");
    ck_assert_int_eq(ops->create(&(dpt_backend_config_t){0}, be), DPT_OK);
    dpt_model_options_t o = {.batch = batch, .fuse_bn_relu = fuse};
    return dpt_model_create(path, ops, *be, &o, m);
}

static void teardown(dpt_backend_t *be, dpt_model_t *m)
{
    dpt_model_destroy(m);
    dpt_backend_find("ref")->destroy(be);
}

START_TEST(test_shipped_models)
{
    static const struct {
        const char *file;
        size_t params;
    } models[] = {
        /* 288+64 + 9216+64 + 18432+128 + 36864+128 + 3136*128+128 + 128*10+10 */
        {"models/fmnist-cnn.cfg", 468010},
        /* the myrtle.ai ResNet-9: 6,573,120 parameters (fc without bias) */
        {"models/resnet9.cfg", 6573120},
    };
    for (int i = 0; i < 2; i++) {
        dpt_backend_t *be;
        dpt_model_t *m = NULL;
        dpt_status_t st = build(src_path(models[i].file), 2, 1, &be, &m);
        ck_assert_msg(st == DPT_OK, "%s: %s", models[i].file, dpt_error_get());
        size_t n;
        dpt_model_params(m, &n);
        ck_assert_uint_eq(n, models[i].params);
        teardown(be, m);
    }
}
END_TEST

static const struct {
    const char *text;
    const char *expect;   /* substring of the message */
    dpt_status_t st;
} bad_models[] = {
    {"[net]\ninput=1,8,8\nclasses=3\n[convolution]\nfilters=4\n", ":4: unknown layer type 'convolution'", DPT_ERR_FORMAT},
    {"[net]\ninput=1,8,8\nclasses=3\n[conv]\nfilterz=4\n", ":5: unknown key 'filterz'", DPT_ERR_FORMAT},
    {"[net]\ninput=1,8,8\nclasses=3\n[conv]\nfilters=abc\n", ":5: filters: 'abc' is not an integer", DPT_ERR_FORMAT},
    {"[net]\ninput=1,8,8\nclasses=3\n[conv]\nfilters=4\nsize=11\npad=0\n[fc]\noutput=3\n", ":4: layer 'conv0' (conv2d): conv2d: kernel 11x11 larger", DPT_ERR_INVALID_ARG},
    {"[net]\ninput=1,8,8\nclasses=3\n[fc]\noutput=4\n", "outputs 4 values but [net] classes = 3", DPT_ERR_INVALID_ARG},
    {"[net]\ninput=1,8,8\nclasses=3\n[conv]\nfilters=4\n[conv]\nname=b\nfilters=5\n[add]\ninputs=conv0, b\n[fc]\noutput=3\n", "add: inputs differ in shape", DPT_ERR_INVALID_ARG},
    {"[net]\ninput=1,8,8\nclasses=3\n[conv]\nfilters=4\ninput=nothere\n", ":4: input 'nothere' is not the name of an earlier layer", DPT_ERR_FORMAT},
    {"[conv]\nfilters=4\n", ":1: the file must start with a [net] section", DPT_ERR_FORMAT},
    {"[net]\ninput=1,8\nclasses=3\n", ":2: input: '1,8' is not C,H,W", DPT_ERR_FORMAT},
    {"[net]\ninput=1,8,8\nclasses=3\n", "no layers", DPT_ERR_FORMAT},
    {"[net]\ninput=1,8,8\nclasses=3\nfilters 4\n", ":4: expected key = value", DPT_ERR_FORMAT},
    {"[net]\ninput=1,8,8\nclasses=3\n[maxpool]\nsize=16\n[fc]\noutput=3\n", "maxpool: window 16 larger than input", DPT_ERR_INVALID_ARG},
    {"[net]\ninput=1,8,8\nclasses=3\n[softmax_xent]\n[fc]\noutput=3\n", "softmax_xent must be the last layer", DPT_ERR_FORMAT},
    {"[net]\ninput=6,8,8\nclasses=3\n[conv]\nfilters=4\ngroups=3\n", ":4: layer 'conv0' (conv2d): conv2d: groups=3 must divide the 6 input channels and the 4 filters", DPT_ERR_INVALID_ARG},
    {"[net]\ninput=6,8,8\nclasses=3\n[conv]\nfilters=6\ngroups=0\n", ":6: groups: '0' is", DPT_ERR_FORMAT},
    {"[net]\ninput=1,8,8\nclasses=3\n[gelu]\napproximate=fast\n", ":5: approximate: 'fast' must be none or tanh", DPT_ERR_FORMAT},
    {"[net]\ninput=1,8,8\nclasses=3\n[silu]\napproximate=tanh\n", ":5: unknown key 'approximate' for layer type silu", DPT_ERR_FORMAT},
    {"[net]\ninput=1,8,8\nclasses=3\n[swish]\n", ":4: unknown layer type 'swish' (known: conv, batchnorm, relu, celu, silu, gelu, sigmoid,", DPT_ERR_FORMAT},
};

START_TEST(test_bad_model)
{
    char name[32];
    snprintf(name, sizeof name, "bad%d.cfg", _i);
    const char *path = write_model(name, bad_models[_i].text);
    dpt_backend_t *be;
    dpt_model_t *m = NULL;
    dpt_status_t st = build(path, 2, 1, &be, &m);
    ck_assert_int_eq(st, bad_models[_i].st);
    ck_assert_ptr_null(m);
    const char *msg = dpt_error_get();
    ck_assert_msg(strstr(msg, path) != NULL, "message does not name the file: %s", msg);
    ck_assert_msg(strstr(msg, bad_models[_i].expect) != NULL, "got: %s", msg);
    teardown(be, NULL);
}
END_TEST

/* [silu], [gelu] (approximate = none by default, none, tanh) and [sigmoid] parse to their op
 * kinds and GELU form, build, and train on the ref backend. The form reaches the op: on inputs
 * around 1.5, where the two forms differ by about 2e-4, scaled by 100, a gelu -> fc model gives
 * losses 3e-5 apart relative (about 250 float32 ulps; equal losses would mean one form). */
static const char *act_model =
    "[net]\ninput=2,6,6\nclasses=4\n"
    "[conv]\nfilters=3\n[silu]\n[sigmoid]\n[conv]\nfilters=3\n[gelu]\n[conv]\nfilters=3\n"
    "[gelu]\napproximate = %s\n[gap]\n[fc]\noutput=4\n";
static const char *form_model =
    "[net]\ninput=1,6,6\nclasses=4\n[gelu]\napproximate = %s\n[scale]\nfactor=100\n"
    "[fc]\noutput=4\n";

START_TEST(test_activation_layers)
{
    static const char *forms[2] = {"none", "tanh"};
    float loss[2];
    for (int f = 0; f < 2; f++) {
        char text[512], name[32];
        snprintf(text, sizeof text, act_model, forms[f]);
        snprintf(name, sizeof name, "act_%s.cfg", forms[f]);
        const char *path = write_model(name, text);
        dpt_model_spec_t spec;
        dpt_model_options_t o = {.batch = 3, .fuse_bn_relu = 1};
        ck_assert_msg(dpt__model_parse(path, &o, &spec) == DPT_OK, "%s", dpt_error_get());
        ck_assert_int_eq(spec.n_layers, 10);   /* + the appended softmax_xent */
        ck_assert_int_eq(spec.layers[1].kind, DPT_OP_SILU);
        ck_assert_int_eq(spec.layers[2].kind, DPT_OP_SIGMOID);
        ck_assert_int_eq(spec.layers[4].kind, DPT_OP_GELU);
        ck_assert_int_eq(spec.layers[4].gelu_tanh, 0);   /* the default: exact erf form */
        ck_assert_int_eq(spec.layers[6].kind, DPT_OP_GELU);
        ck_assert_int_eq(spec.layers[6].gelu_tanh, f);
        dpt__model_spec_free(&spec);

        dpt_backend_t *be;
        dpt_model_t *m = NULL;
        ck_assert_msg(build(path, 3, 1, &be, &m) == DPT_OK, "%s", dpt_error_get());
        char summary[2048];
        dpt_model_summary(m, summary, sizeof summary);
        ck_assert_msg(strstr(summary, "silu") && strstr(summary, "gelu") &&
                      strstr(summary, "sigmoid"), "%s", summary);
        dpt_model_init_params(m, 7);
        float x[3 * 2 * 6 * 6];
        int32_t y[3] = {0, 3, 1};
        dpt_rng_t r;
        dpt_rng_init(&r, 8, 0);
        for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
            x[i] = 3.0f * dpt_rng_normal(&r);
        ck_assert_int_eq(dpt_model_forward(m, x, y, 0, 1, &loss[f], NULL), DPT_OK);
        ck_assert_int_eq(dpt_model_backward(m), DPT_OK);
        ck_assert(isfinite(loss[f]));
        teardown(be, m);

        snprintf(text, sizeof text, form_model, forms[f]);
        snprintf(name, sizeof name, "form_%s.cfg", forms[f]);
        ck_assert_int_eq(build(write_model(name, text), 3, 1, &be, &m), DPT_OK);
        dpt_model_init_params(m, 7);
        for (size_t i = 0; i < 3 * 36; i++)
            x[i] = 1.5f + 0.3f * dpt_rng_normal(&r);
        ck_assert_int_eq(dpt_model_forward(m, x, y, 0, 1, &loss[f], NULL), DPT_OK);
        teardown(be, m);
    }
    ck_assert_msg(fabsf(loss[0] - loss[1]) > 1e-5f * loss[0],   /* ~100 float32 ulps */
                  "gelu approximate= did not reach the op (losses %.8g, %.8g)", loss[0], loss[1]);
}
END_TEST

START_TEST(test_missing_model)
{
    dpt_backend_t *be;
    dpt_model_t *m = NULL;
    ck_assert_int_eq(build("/nonexistent/model.cfg", 2, 1, &be, &m), DPT_ERR_IO);
    ck_assert_ptr_nonnull(strstr(dpt_error_get(), "/nonexistent/model.cfg"));
    teardown(be, NULL);
}
END_TEST

/* A residual graph where one tensor feeds two layers (conv and add), so backward has to sum
 * two gradient contributions. */
static const char *residual_model =
    "[net]\ninput=2,6,6\nclasses=4\n"
    "[conv]\nfilters=3\nbias=1\n[celu]\nname=stem\n"
    "[conv]\nfilters=3\n[batchnorm]\n[celu]\nname=branch\n"
    "[add]\ninputs=stem, branch\n"
    "[gap]\n[fc]\noutput=4\n";

static double model_loss(dpt_model_t *m, const float *x, const int32_t *y)
{
    float loss;
    ck_assert_int_eq(dpt_model_forward(m, x, y, 0, 1, &loss, NULL), DPT_OK);
    return loss;
}

START_TEST(test_residual_gradients)
{
    dpt_backend_t *be;
    dpt_model_t *m = NULL;
    ck_assert_int_eq(build(write_model("res.cfg", residual_model), 3, 0, &be, &m), DPT_OK);
    dpt_model_init_params(m, 5);
    float x[3 * 2 * 6 * 6];
    int32_t y[3] = {0, 3, 1};
    dpt_rng_t r;
    dpt_rng_init(&r, 3, 0);
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = dpt_rng_normal(&r);
    size_t np;
    float *p = dpt_model_params(m, &np);
    float *g = dpt_model_grads(m, NULL);
    model_loss(m, x, y);
    ck_assert_int_eq(dpt_model_backward(m), DPT_OK);
    float *ana = malloc(np * sizeof(float));
    memcpy(ana, g, np * sizeof(float));
    /* Central differences in float32 with a step of 1e-2: compare where the gradient is not
     * tiny, within 2% (float32 loss resolution). Covers every parameter of the stem conv,
     * whose output feeds both branches. */
    int checked = 0;
    double worst = 0;
    for (size_t i = 0; i < np; i++) {
        float save = p[i];
        p[i] = save + 1e-2f;
        double lp = model_loss(m, x, y);
        p[i] = save - 1e-2f;
        double lm = model_loss(m, x, y);
        p[i] = save;
        double num = (lp - lm) / 2e-2;
        if (fabs(num) < 1e-3 && fabs(ana[i]) < 1e-3)
            continue;
        double err = fabs(num - ana[i]) / fmax(fabs(num), fabs(ana[i]));
        if (err > worst)
            worst = err;
        checked++;
    }
    ck_assert_int_gt(checked, 50);
    ck_assert_double_lt(worst, 0.02);
    free(ana);
    teardown(be, m);
}
END_TEST

START_TEST(test_fusion_equivalent)
{
    const char *path = src_path("models/fmnist-cnn.cfg");
    dpt_backend_t *be[2];
    dpt_model_t *m[2];
    for (int f = 0; f < 2; f++) {
        ck_assert_int_eq(build(path, 2, f, &be[f], &m[f]), DPT_OK);
        dpt_model_init_params(m[f], 11);
    }
    float x[2 * 28 * 28];
    int32_t y[2] = {4, 9};
    dpt_rng_t r;
    dpt_rng_init(&r, 4, 0);
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = dpt_rng_normal(&r);
    float loss[2];
    for (int f = 0; f < 2; f++) {
        ck_assert_int_eq(dpt_model_forward(m[f], x, y, 0, 1, &loss[f], NULL), DPT_OK);
        ck_assert_int_eq(dpt_model_backward(m[f]), DPT_OK);
    }
    ck_assert_float_eq(loss[0], loss[1]);
    size_t np;
    float *g0 = dpt_model_grads(m[0], &np), *g1 = dpt_model_grads(m[1], NULL);
    ck_assert_int_eq(memcmp(g0, g1, np * sizeof(float)), 0);
    for (int f = 0; f < 2; f++)
        teardown(be[f], m[f]);
}
END_TEST

START_TEST(test_step_allocates_nothing)
{
    dpt_backend_t *be;
    dpt_model_t *m = NULL;
    ck_assert_int_eq(build(write_model("res2.cfg", residual_model), 2, 1, &be, &m), DPT_OK);
    dpt_model_init_params(m, 1);
    float x[2 * 2 * 6 * 6] = {0};
    int32_t y[2] = {1, 2};
    float loss;
    uint64_t before = dpt_alloc_count();
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(dpt_model_forward(m, x, y, 0, 1, &loss, NULL), DPT_OK);
        ck_assert_int_eq(dpt_model_backward(m), DPT_OK);
    }
    ck_assert_uint_eq(dpt_alloc_count(), before);
    teardown(be, m);
}
END_TEST

static Suite *model_suite(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("model");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_shipped_models);
    tcase_add_loop_test(tc, test_bad_model, 0, (int)(sizeof bad_models / sizeof bad_models[0]));
    tcase_add_test(tc, test_activation_layers);
    tcase_add_test(tc, test_missing_model);
    tcase_add_test(tc, test_residual_gradients);
    tcase_add_test(tc, test_fusion_equivalent);
    tcase_add_test(tc, test_step_allocates_nothing);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(model_suite)
