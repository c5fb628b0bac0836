/* check_model.c: model files (the shipped ones build with the expected parameter counts; every
 * kind of bad file gives DPT_ERR_* with a message naming file:line; [block]/[use] expansion
 * builds the same model as the file written out by hand), gradient routing through a
 * residual graph (model backward vs finite differences of the model loss), BN+ReLU fusion
 * equivalence, and "no allocation inside a training step". Runs on the ref backend. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "check_model_spec.h"
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
        /* ResNet-50 with a 3x3 CIFAR stem, from [block]/[use]: torchvision's resnet50
         * (num_classes=10) 23,528,522 - 3*64*49 + 3*64*9 */
        {"models/resnet50.cfg", 23520842},
        /* the ImageNet stem (7x7/2 conv, max-pool), 1000 classes: torchvision's resnet50() */
        {"models/resnet50-imagenet.cfg", 25557032},
        /* EfficientNet-B0 (MBConv + squeeze-excitation blocks) with a stride-1 stem: torchvision's
         * efficientnet_b0(num_classes=10), 5,288,548 - 1280*1000-1000 + 1280*10+10 */
        {"models/efficientnet-b0.cfg", 4020358},
        /* Fashion-MNIST (1x28x28), the same [include]d stages: the stem conv reads 1 channel,
         * 64*1*9 weights instead of 64*3*9 (resnet50), 32*1*9 instead of 32*3*9 (effnet) */
        {"models/resnet50-fmnist.cfg", 23520842 - 64 * 2 * 9},
        {"models/efficientnet-b0-fmnist.cfg", 4020358 - 32 * 2 * 9},
    };
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
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

/* [block]/[use] (model_expand.c): the expanded file and the same model written out by hand parse
 * to the same layers (kinds, names, wiring) and build the same model (parameter count, initial
 * parameters, forward loss). Covers $var and ${var}, $in per repetition (the previous
 * repetition's last layer, a default name here), inputs naming body layers, the default prefix
 * (block name + use count), a block defined before [net], comments and blank lines. */
static const char *expand_model =
    "[block res]   # residual: conv, BN, ReLU, add the block's input\n"
    "[conv]\nfilters = $w\nbias = 0\n\n"
    "[batchnorm]\nname = bn\n[relu]\nname = act\n"
    "[add]\ninputs = act, $in\n"
    "[end]\n"
    "[net]\ninput=2,6,6\nclasses=4\n"
    "[conv]\nfilters=4\n"
    "[use res]\nrepeat = 3\nw = 4\n"
    "[block down]\n[conv]\nfilters = ${c}\nstride = $s\n[end]\n"
    "[use down]\nname = d\nc = 5\ns = 2\n"
    "[use res]\nw = 5\n"
    "[gap]\n[fc]\noutput=4\n";
static const char *expand_by_hand =
    "[net]\ninput=2,6,6\nclasses=4\n"
    "[conv]\nfilters=4\n"
    "[conv]\nfilters=4\nbias=0\n[batchnorm]\nname=res1.0.bn\n[relu]\nname=res1.0.act\n"
    "[add]\ninputs=res1.0.act, conv0\n"
    "[conv]\nfilters=4\nbias=0\n[batchnorm]\nname=res1.1.bn\n[relu]\nname=res1.1.act\n"
    "[add]\ninputs=res1.1.act, add4\n"
    "[conv]\nfilters=4\nbias=0\n[batchnorm]\nname=res1.2.bn\n[relu]\nname=res1.2.act\n"
    "[add]\ninputs=res1.2.act, add8\n"
    "[conv]\nfilters=5\nstride=2\n"
    "[conv]\nfilters=5\nbias=0\n[batchnorm]\nname=res2.0.bn\n[relu]\nname=res2.0.act\n"
    "[add]\ninputs=res2.0.act, conv13\n"
    "[gap]\n[fc]\noutput=4\n";

START_TEST(test_expand_equivalent)
{
    const char *paths[2];
    char path0[512];
    snprintf(path0, sizeof path0, "%s", write_model("expand.cfg", expand_model));
    paths[0] = path0;
    paths[1] = write_model("by_hand.cfg", expand_by_hand);
    dpt_model_spec_t spec[2];
    dpt_model_options_t o = {.batch = 3, .fuse_bn_relu = 0};
    for (int f = 0; f < 2; f++)
        ck_assert_msg(dpt__model_parse(paths[f], &o, &spec[f]) == DPT_OK, "%s", dpt_error_get());
    ck_assert_int_eq(spec[0].n_layers, 21);   /* 1 + 3 * 4 + 1 + 4 + gap, fc, softmax_xent */
    assert_same_layers(&spec[0], &spec[1]);
    for (int i = 0; i < spec[1].n_layers; i++) {   /* the hand-written file: no origins */
        const dpt_layer_spec_t *b = &spec[1].layers[i];
        ck_assert_int_eq(b->use_line, 0);
    }
    /* where the lines came from: the first body layer of the 2nd repetition of the first [use] */
    ck_assert_int_eq(spec[0].layers[5].line, 2);
    ck_assert_int_eq(spec[0].layers[5].use_line, 18);
    ck_assert_int_eq(spec[0].layers[5].rep, 1);
    for (int f = 0; f < 2; f++)
        dpt__model_spec_free(&spec[f]);

    dpt_backend_t *be[2];
    dpt_model_t *m[2];
    float x[3 * 2 * 6 * 6], loss[2];
    int32_t y[3] = {0, 3, 1};
    dpt_rng_t r;
    dpt_rng_init(&r, 9, 0);
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = dpt_rng_normal(&r);
    for (int f = 0; f < 2; f++) {
        ck_assert_msg(build(paths[f], 3, 1, &be[f], &m[f]) == DPT_OK, "%s", dpt_error_get());
        dpt_model_init_params(m[f], 13);
        ck_assert_int_eq(dpt_model_forward(m[f], x, y, 0, 1, &loss[f], NULL), DPT_OK);
    }
    size_t n0, n1;
    const float *p0 = dpt_model_params(m[0], &n0), *p1 = dpt_model_params(m[1], &n1);
    ck_assert_uint_eq(n0, n1);
    ck_assert_int_eq(memcmp(p0, p1, n0 * sizeof(float)), 0);
    ck_assert_float_eq(loss[0], loss[1]);
    ck_assert(isfinite(loss[0]));
    for (int f = 0; f < 2; f++)
        teardown(be[f], m[f]);
}
END_TEST

/* 1,021 layers from one [use] (the limit is 1,023 before the appended softmax_xent) parse and
 * build; 1,024 do not, and the message says where. */
START_TEST(test_expand_many_layers)
{
    static const char *fmt =
        "[net]\ninput=1,2,2\nclasses=3\n"
        "[block s]\n[scale]\nfactor=1\n[scale]\nfactor=1\n[scale]\nfactor=1\n[scale]\nfactor=1\n"
        "[end]\n[use s]\nrepeat=%d\n[fc]\noutput=3\n";
    char text[512];
    snprintf(text, sizeof text, fmt, 255);
    dpt_backend_t *be;
    dpt_model_t *m = NULL;
    ck_assert_msg(build(write_model("many.cfg", text), 1, 1, &be, &m) == DPT_OK, "%s",
                  dpt_error_get());
    size_t n;
    dpt_model_params(m, &n);
    ck_assert_uint_eq(n, 4 * 3 + 3);
    teardown(be, m);
    snprintf(text, sizeof text, fmt, 256);
    const char *path = write_model("too_many.cfg", text);
    ck_assert_int_eq(build(path, 1, 1, &be, &m), DPT_ERR_FORMAT);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(dpt_error_get(), ":11: more than 1023 layers (in the block used at line "
                                          "14, repeat 255)") != NULL, "%s", dpt_error_get());
    teardown(be, NULL);
}
END_TEST

#define NET "[net]\ninput=1,8,8\nclasses=3\n"   /* lines 1-3 */
#define BLK "[block b]\n[conv]\nfilters=$w\n[end]\n"   /* lines 4-7 */
static const struct {
    const char *text;
    const char *expect;   /* substring of the message */
    dpt_status_t st;
} bad_expansions[] = {
    {NET "[use nope]\nrepeat=2\n", ":4: [use nope]: no block named 'nope'", DPT_ERR_FORMAT},
    {NET BLK "[use b]\nw=2\nrepeat=0\n", ":10: repeat: '0' is not an integer in [1, 256]", DPT_ERR_FORMAT},
    {NET BLK "[use b]\nw=2\nrepeat=300\n", ":10: repeat: '300' is not an integer in [1, 256]", DPT_ERR_FORMAT},
    {NET BLK "[use b]\nrepeat=two\nw=2\n", ":9: repeat: 'two' is not an integer in [1, 256]", DPT_ERR_FORMAT},
    {NET BLK "[use b]\nw=2\nwidth=4\n", ":10: [use b]: key 'width' is not used by block 'b' (its body has no $width)", DPT_ERR_FORMAT},
    {NET BLK "[use b]\nrepeat=2\n[fc]\noutput=3\n", ":8: [use b]: block 'b' uses $w (line 6) but this [use] does not set w", DPT_ERR_FORMAT},
    {NET "[block b]\n[conv]\nfilters=4\n", ":4: [block b] has no [end]", DPT_ERR_FORMAT},
    {NET "[block b]\n[conv]\nfilters=4\n[block c]\n[relu]\n[end]\n[end]\n", ":7: [block] inside [block b] (line 4): blocks do not nest", DPT_ERR_FORMAT},
    {NET "[block b]\n[conv]\nfilters=4\n[use b]\n[end]\n", ":7: [use] inside [block b] (line 4): blocks do not nest", DPT_ERR_FORMAT},
    {NET "[conv]\nfilters=4\n[end]\n", ":6: [end] without a [block NAME] before it", DPT_ERR_FORMAT},
    {NET BLK "filters=3\n", ":8: 'filters=3' after [end]: start a [section] first", DPT_ERR_FORMAT},
    {NET "[block b]\nfilters=3\n[conv]\n[end]\n", ":5: 'filters=3': the body of [block b] must start with a [section]", DPT_ERR_FORMAT},
    {NET BLK "[use b]\nw=2\nw=3\n", ":10: duplicate key 'w' in [use b] (first given on line 9)", DPT_ERR_FORMAT},
    {NET BLK BLK, ":8: block 'b' is already defined (line 4)", DPT_ERR_FORMAT},
    {NET "[conv]\nfilters=$w\n", ":5: 'filters=$w': $ references work only inside a [block] body", DPT_ERR_FORMAT},
    {NET "[block b]\n[conv]\nfilters=$\n[end]\n", ":6: bad $ reference in 'filters=$'", DPT_ERR_FORMAT},
    /* errors of the parser and of the build inside an expansion name the body line and the use */
    {NET BLK "[use b]\nrepeat=2\nw=abc\n", ":6: filters: 'abc' is not an integer in [1, 65536] (in the block used at line 8, repeat 0)", DPT_ERR_FORMAT},
    {NET "[block b]\n[conv]\nfilters=4\nsize=$k\npad=0\n[end]\n[use b]\nrepeat=4\nk=3\n[fc]\noutput=3\n",
     ":5: layer 'conv3' (conv2d) (in the block used at line 10, repeat 3): conv2d: kernel 3x3 larger", DPT_ERR_INVALID_ARG},
    {NET "[block b]\n[conv]\nfilters=4\nname=c\ninput=nothere\n[end]\n[use b]\n", ":5: input 'nothere' is not the name of an earlier layer (or 'data') (in the block used at line 10, repeat 0)", DPT_ERR_FORMAT},
    /* a name longer than 63 characters is an error, never cut (63 are fine: repeats 0-9) */
    {NET "[block b]\n[conv]\nfilters=4\nname=conv\n[end]\n[use b]\nname=prefix_of_56_chars_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\nrepeat=11\n",
     ":7: name 'prefix_of_56_chars_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.10.conv' is empty or longer than 63 characters (in the block used at line 9, repeat 10)", DPT_ERR_FORMAT},
    {NET "[conv]\nfilters=4\nname=layer_name_of_64_chars_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",
     ":6: name 'layer_name_of_64_chars_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' is empty or longer than 63 characters", DPT_ERR_FORMAT},
    {NET "[conv]\nfilters=4\n[relu]\ninput=layer_name_of_64_chars_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",
     ":7: input name 'layer_name_of_64_chars_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' is longer than 63 characters", DPT_ERR_FORMAT},
};
#undef NET
#undef BLK

START_TEST(test_bad_expansion)
{
    char name[32];
    snprintf(name, sizeof name, "badx%d.cfg", _i);
    const char *path = write_model(name, bad_expansions[_i].text);
    dpt_backend_t *be;
    dpt_model_t *m = NULL;
    dpt_status_t st = build(path, 2, 1, &be, &m);
    const char *msg = dpt_error_get();
    ck_assert_msg(st == bad_expansions[_i].st, "status %d: %s", st, msg);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(msg, path) != NULL, "message does not name the file: %s", msg);
    ck_assert_msg(strstr(msg, bad_expansions[_i].expect) != NULL, "got: %s", msg);
    teardown(be, NULL);
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
    tcase_add_test(tc, test_expand_equivalent);
    tcase_add_test(tc, test_expand_many_layers);
    tcase_add_loop_test(tc, test_bad_expansion, 0,
                        (int)(sizeof bad_expansions / sizeof bad_expansions[0]));
    tcase_add_test(tc, test_missing_model);
    tcase_add_test(tc, test_residual_gradients);
    tcase_add_test(tc, test_fusion_equivalent);
    tcase_add_test(tc, test_step_allocates_nothing);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(model_suite)
