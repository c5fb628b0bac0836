/* check_model_include.c: [include FILE] in model files (model_expand.c). A model split over
 * included files (relative to the including file's directory, nested, absolute, blocks defined
 * in one file and used in another) parses to the same layers and builds the same model as the
 * text pasted in place, and its layers remember which file and line they came from; nesting to
 * depth 4 works; every bad include (missing file, cycle, depth 5, [net] in an included file,
 * [include] in a block body, ...) and every bad line inside an included file is an error naming
 * the right file and line; the fuzz corpus's flattened copies of the shipped models that include
 * lib/ files parse to the same layers as the models. Runs on the ref backend. */
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check_files.h"
#include "check_main.h"
#include "check_model_spec.h"
#include "dptrain/backend.h"
#include "dptrain/model.h"
#include "dptrain/rng.h"
#include "model/internal.h"   /* dpt__model_parse: the layers' files and lines */

static dpt_status_t build(const char *path, int batch, dpt_backend_t **be, dpt_model_t **m)
{
    const dpt_backend_ops_t *ops = dpt_backend_find("ref");
    ck_assert_int_eq(ops->create(&(dpt_backend_config_t){0}, be), DPT_OK);
    dpt_model_options_t o = {.batch = batch, .fuse_bn_relu = 1};
    return dpt_model_create(path, ops, *be, &o, m);
}

static void teardown(dpt_backend_t *be, dpt_model_t *m)
{
    dpt_model_destroy(m);
    dpt_backend_find("ref")->destroy(be);
}

static const char *src_path(const char *rel)
{
    static char bufs[2][1024];
    static int next;
    char *buf = bufs[next++ % 2];
    const char *root = getenv("DPT_SOURCE_DIR");
    snprintf(buf, sizeof bufs[0], "%s/%s", root ? root : "..", rel);
    return buf;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = s ? strlen(s) : 0, k = strlen(suffix);
    return s && n >= k && !strcmp(s + n - k, suffix);
}

/* The model of test_include_equivalent over five files: blocks before [net] (sub/blocks.cfg),
 * a stage using them (sub/stage.cfg) that includes a layer of sub/deeper/down.cfg (relative to
 * sub/), one more use from a file named by its absolute path (%s: tmpdir). */
static const char *inc_main =
    "[include sub/blocks.cfg]   # blocks before [net]\n"
    "[net]\ninput=2,6,6\nclasses=4\n"
    "[conv]\nfilters=4\n"
    "[include sub/stage.cfg]\n"      /* line 7 */
    "\n[include %s/abs.cfg]\n"       /* line 9 */
    "[gap]\n[fc]\noutput=4\n";
static const char *inc_blocks =
    "# residual: conv, BN, ReLU, add the block's input\n"
    "[block res]\n[conv]\nfilters = $w\nbias = 0\n"
    "[batchnorm]\nname = bn\n[relu]\nname = act\n[add]\ninputs = act, $in\n[end]\n";
static const char *inc_stage =
    "[use res]\nrepeat = 2\nw = 4\n"
    "[include deeper/down.cfg]\n";
static const char *inc_down = "\n[conv]\nname = down\nfilters = 5\nstride = 2\n";
static const char *inc_abs = "[use res]\nname = last\nw = 5\n";
static const char *inc_pasted =
    "[net]\ninput=2,6,6\nclasses=4\n"
    "[conv]\nfilters=4\n"
    "[block res]\n[conv]\nfilters = $w\nbias = 0\n"
    "[batchnorm]\nname = bn\n[relu]\nname = act\n[add]\ninputs = act, $in\n[end]\n"
    "[use res]\nrepeat = 2\nw = 4\n"
    "[conv]\nname = down\nfilters = 5\nstride = 2\n"
    "[use res]\nname = last\nw = 5\n"
    "[gap]\n[fc]\noutput=4\n";

START_TEST(test_include_equivalent)
{
    make_tmpdir();
    ck_assert_int_eq(mkdir(tmp_path("sub"), 0700), 0);
    ck_assert_int_eq(mkdir(tmp_path("sub/deeper"), 0700), 0);
    write_tmp_file("sub/blocks.cfg", inc_blocks);
    write_tmp_file("sub/stage.cfg", inc_stage);
    write_tmp_file("sub/deeper/down.cfg", inc_down);
    write_tmp_file("abs.cfg", inc_abs);
    char text[1024], paths[2][512];
    snprintf(text, sizeof text, inc_main, tmpdir);
    snprintf(paths[0], sizeof paths[0], "%s", write_tmp_file("main.cfg", text));
    snprintf(paths[1], sizeof paths[1], "%s", write_tmp_file("pasted.cfg", inc_pasted));

    dpt_model_spec_t spec[2];
    dpt_model_options_t o = {.batch = 3, .fuse_bn_relu = 0};
    for (int f = 0; f < 2; f++)
        ck_assert_msg(dpt__model_parse(paths[f], &o, &spec[f]) == DPT_OK, "%s", dpt_error_get());
    ck_assert_int_eq(spec[0].n_layers, 17);   /* 1 + 2 * 4 + 1 + 4 + gap, fc, softmax_xent */
    assert_same_layers(&spec[0], &spec[1]);
    for (int i = 0; i < spec[1].n_layers; i++) {   /* the hand-written file: no origins */
        const dpt_layer_spec_t *b = &spec[1].layers[i];
        ck_assert_ptr_null(b->file);
        ck_assert_ptr_null(b->use_file);
    }
    /* where the layers came from: the model file, a body of sub/blocks.cfg used in
     * sub/stage.cfg, sub/deeper/down.cfg, the body used from abs.cfg */
    const dpt_layer_spec_t *l = spec[0].layers;
    ck_assert_ptr_null(l[0].file);
    ck_assert_int_eq(l[0].line, 5);
    ck_assert_str_eq(l[6].name, "res1.1.bn");
    ck_assert_msg(ends_with(l[6].file, "/sub/blocks.cfg"), "%s", l[6].file);
    ck_assert_int_eq(l[6].line, 6);
    ck_assert_msg(ends_with(l[6].use_file, "/sub/stage.cfg"), "%s", l[6].use_file);
    ck_assert_int_eq(l[6].use_line, 1);
    ck_assert_int_eq(l[6].rep, 1);
    ck_assert_str_eq(l[9].name, "down");
    ck_assert_msg(ends_with(l[9].file, "/sub/deeper/down.cfg"), "%s", l[9].file);
    ck_assert_int_eq(l[9].line, 2);
    ck_assert_int_eq(l[9].use_line, 0);
    ck_assert_str_eq(l[11].name, "last.0.bn");
    ck_assert_ptr_eq(l[11].file, l[6].file);   /* one copy of each file's name */
    ck_assert_msg(ends_with(l[11].use_file, "/abs.cfg"), "%s", l[11].use_file);
    ck_assert_ptr_null(l[14].file);   /* [gap], back in the model file */
    ck_assert_int_eq(l[14].line, 10);
    ck_assert_int_eq(spec[0].n_files, 4);
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
        ck_assert_msg(build(paths[f], 3, &be[f], &m[f]) == DPT_OK, "%s", dpt_error_get());
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
    remove_tmpdir();
}
END_TEST

/* Includes nest 4 deep (model file -> d1 -> d2 -> d3 -> d4); d4's layer is built. */
START_TEST(test_include_depth4)
{
    make_tmpdir();
    write_tmp_file("d1.cfg", "[include d2.cfg]\n");
    write_tmp_file("d2.cfg", "[include d3.cfg]\n");
    write_tmp_file("d3.cfg", "[include d4.cfg]\n");
    write_tmp_file("d4.cfg", "[conv]\nfilters = 3\n");
    const char *path = write_tmp_file("main.cfg", "[net]\ninput=1,4,4\nclasses=3\n"
                                                  "[include d1.cfg]\n[gap]\n");
    dpt_backend_t *be;
    dpt_model_t *m = NULL;
    ck_assert_msg(build(path, 2, &be, &m) == DPT_OK, "%s", dpt_error_get());
    size_t n;
    dpt_model_params(m, &n);
    ck_assert_uint_eq(n, 3 * 9 + 3);
    teardown(be, m);
    remove_tmpdir();
}
END_TEST

/* tests/fuzz/corpus/model/ holds the shipped models with their [include]s pasted in (the fuzzer
 * writes each input to a scratch file, where lib/ does not exist): the same layers. */
START_TEST(test_corpus_flattened)
{
    static const char *models[] = {"resnet50", "resnet50-imagenet", "resnet50-fmnist",
                                   "efficientnet-b0", "efficientnet-b0-fmnist"};
    dpt_model_options_t o = {.batch = 2, .fuse_bn_relu = 1};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        char rel[2][128];
        snprintf(rel[0], sizeof rel[0], "models/%s.cfg", models[i]);
        snprintf(rel[1], sizeof rel[1], "tests/fuzz/corpus/model/%s.cfg", models[i]);
        dpt_model_spec_t spec[2];
        for (int f = 0; f < 2; f++)
            ck_assert_msg(dpt__model_parse(src_path(rel[f]), &o, &spec[f]) == DPT_OK, "%s",
                          dpt_error_get());
        ck_assert_int_gt(spec[0].n_files, 0);   /* the model includes its lib/ file */
        ck_assert_int_eq(spec[1].n_files, 0);   /* the copy does not */
        assert_same_layers(&spec[0], &spec[1]);
        for (int f = 0; f < 2; f++)
            dpt__model_spec_free(&spec[f]);
    }
}
END_TEST

#define NET "[net]\ninput=1,8,8\nclasses=3\n"   /* lines 1-3 */
#define MAX_FILES 6
static const struct {
    const char *files[MAX_FILES][2];   /* name, text: files[0] is the model file, main.cfg */
    const char *expect;    /* the message after tmpdir: it names this file and line */
    const char *expect2;   /* and contains this (after tmpdir when it starts with '/') */
    dpt_status_t st;
} bad_includes[] = {
    {{{"main.cfg", NET "[include nope.cfg]\n"}},
     "/main.cfg:4: [include nope.cfg]: cannot open ", "/nope.cfg: No such file", DPT_ERR_IO},
    {{{"main.cfg", NET "[include a.cfg]\n"}, {"a.cfg", "[conv]\nfilters=2\n[include main.cfg]\n"}},
     "/a.cfg:3: [include main.cfg]: an include cycle (", "/main.cfg is already being read)",
     DPT_ERR_FORMAT},
    {{{"main.cfg", NET "[include a.cfg]\n"}, {"a.cfg", "[include ./a.cfg]\n"}},
     "/a.cfg:1: [include ./a.cfg]: an include cycle (", "/a.cfg is already being read)",
     DPT_ERR_FORMAT},
    {{{"main.cfg", NET "[include d1.cfg]\n"}, {"d1.cfg", "[include d2.cfg]\n"},
      {"d2.cfg", "[include d3.cfg]\n"}, {"d3.cfg", "[include d4.cfg]\n"},
      {"d4.cfg", "[relu]\n[include d5.cfg]\n"}, {"d5.cfg", "[relu]\n"}},
     "/d4.cfg:2: [include d5.cfg]: includes nest deeper than 4", NULL, DPT_ERR_FORMAT},
    {{{"main.cfg", NET "[include inc.cfg]\n"}, {"inc.cfg", "[conv]\nfilters=2\n[net]\n"}},
     "/inc.cfg:3: [net] in a file included by ", "/main.cfg:4: only the model file has [net]",
     DPT_ERR_FORMAT},
    {{{"main.cfg", NET "[include inc.cfg]\n"}, {"inc.cfg", "[conv]\nfilters=2\nfilterz=4\n"}},
     "/inc.cfg:3: unknown key 'filterz' for layer type conv2d", NULL, DPT_ERR_FORMAT},
    {{{"main.cfg", NET "[block b]\n[conv]\nfilters=4\n[include x.cfg]\n[end]\n"}},
     "/main.cfg:7: [include] inside [block b] (line 4): [include] works only outside blocks",
     NULL, DPT_ERR_FORMAT},
    /* a block of an included file used in the model file: the body line, and the [use]'s file */
    {{{"main.cfg", NET "[include inc.cfg]\n[use b]\nw=abc\n"},
      {"inc.cfg", "[block b]\n[conv]\nfilters=$w\n[end]\n"}},
     "/inc.cfg:3: filters: 'abc' is not an integer in [1, 65536] (in the block used at ",
     "/main.cfg:5, repeat 0)", DPT_ERR_FORMAT},
    {{{"main.cfg", NET "[include inc.cfg]\n"},
      {"inc.cfg", "[block b]\n[conv]\nfilters=$w\n[end]\n[use b]\nw=abc\n"}},
     "/inc.cfg:3: filters: 'abc' is not an integer in [1, 65536] (in the block used at line 5, "
     "repeat 0)", NULL, DPT_ERR_FORMAT},
    /* the build (model.c) names the included file too */
    {{{"main.cfg", NET "[include inc.cfg]\n[fc]\noutput=3\n"},
      {"inc.cfg", "[relu]\n[conv]\nfilters=4\nsize=11\npad=0\n"}},
     "/inc.cfg:2: layer 'conv1' (conv2d): conv2d: kernel 11x11 larger", NULL,
     DPT_ERR_INVALID_ARG},
    {{{"main.cfg", NET "[include inc.cfg]\n[fc]\noutput=3\n"},
      {"inc.cfg", "[conv]\nfilters=4\ninput=nothere\n"}},
     "/inc.cfg:1: input 'nothere' is not the name of an earlier layer", NULL, DPT_ERR_FORMAT},
    {{{"main.cfg", NET "[include inc.cfg]\nfilters=3\n"}, {"inc.cfg", "[conv]\nfilters=2\n"}},
     "/main.cfg:5: 'filters=3' after [include]: start a [section] first", NULL, DPT_ERR_FORMAT},
    {{{"main.cfg", NET "[conv]\n[include inc.cfg]\n"}, {"inc.cfg", "\nfilters=3\n[conv]\n"}},
     "/inc.cfg:2: 'filters=3': an included file must start with a [section]", NULL,
     DPT_ERR_FORMAT},
    {{{"main.cfg", NET "[include]\n"}},
     "/main.cfg:4: [include] needs a file: [include FILE]", NULL, DPT_ERR_FORMAT},
    {{{"main.cfg", NET "[include inc.cfg]\n[relu]\n"}, {"inc.cfg", "[relu]\n[block b]\n[conv]\n"}},
     "/inc.cfg:2: [block b] has no [end]", NULL, DPT_ERR_FORMAT},
    {{{"main.cfg", NET "[include /]\n"}},
     "/main.cfg:4: [include /]: cannot open /: not a regular file", NULL, DPT_ERR_IO},
    {{{"main.cfg", NET "[include inc.cfg]\n"}, {"inc.cfg", "[relu]\n[convolution]\n"}},
     "/inc.cfg:2: unknown layer type 'convolution'", NULL, DPT_ERR_FORMAT},
    {{{"main.cfg", NET "[include inc.cfg]\n[block b]\n[relu]\n[end]\n"},
      {"inc.cfg", "[block b]\n[relu]\n[end]\n"}},
     "/main.cfg:5: block 'b' is already defined (", "/inc.cfg:1)", DPT_ERR_FORMAT},
    {{{"main.cfg", NET "[include inc.cfg]\n[use b]\n"},
      {"inc.cfg", "[block b]\n[conv]\nfilters=$w\n[end]\n"}},
     "/main.cfg:5: [use b]: block 'b' uses $w (", "/inc.cfg:3) but this [use] does not set w",
     DPT_ERR_FORMAT},
    /* the first error in the file wins: a bad line before a missing include */
    {{{"main.cfg", NET "[conv]\nfilterz=1\n[include nope.cfg]\n"}},
     "/main.cfg:5: unknown key 'filterz'", NULL, DPT_ERR_FORMAT},
};
#undef NET

START_TEST(test_bad_include)
{
    make_tmpdir();
    const char *path = NULL;
    for (int f = 0; f < MAX_FILES && bad_includes[_i].files[f][0]; f++) {
        const char *p = write_tmp_file(bad_includes[_i].files[f][0], bad_includes[_i].files[f][1]);
        if (f == 0)
            path = p;
    }
    char main_path[512];
    snprintf(main_path, sizeof main_path, "%s", path);
    dpt_backend_t *be;
    dpt_model_t *m = NULL;
    dpt_status_t st = build(main_path, 2, &be, &m);
    const char *msg = dpt_error_get();
    ck_assert_msg(st == bad_includes[_i].st, "status %d: %s", st, msg);
    ck_assert_ptr_null(m);
    char want[1024];
    snprintf(want, sizeof want, "%s%s", tmpdir, bad_includes[_i].expect);
    ck_assert_msg(!strncmp(msg, want, strlen(want)), "got: %s\nwant: %s...", msg, want);
    const char *e2 = bad_includes[_i].expect2;
    if (e2) {
        snprintf(want, sizeof want, "%s%s", e2[0] == '/' ? tmpdir : "", e2);
        ck_assert_msg(strstr(msg, want) != NULL, "got: %s\nwant: ...%s", msg, want);
    }
    teardown(be, NULL);
    remove_tmpdir();
}
END_TEST

static Suite *model_include_suite(void)
{
    Suite *s = suite_create("model_include");
    TCase *tc = tcase_create("model_include");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_include_equivalent);
    tcase_add_test(tc, test_include_depth4);
    tcase_add_test(tc, test_corpus_flattened);
    tcase_add_loop_test(tc, test_bad_include, 0,
                        (int)(sizeof bad_includes / sizeof bad_includes[0]));
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(model_include_suite)
