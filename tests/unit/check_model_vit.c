/* check_model_vit.c: the transformer model files and layers as a model: vit-lite (ViT-Lite-7/4)
 * and vit-tiny build with their parameter counts; a small ViT (patch conv, tokens with class
 * token and position embedding, a pre-norm encoder layer from a [block], layer norm,
 * token_select, fc) trains the same on the cpu backend as on ref (the cpu's nhwc tokens and
 * blocked patch convolution against ref's plain NCHW): loss and every parameter's gradient
 * within 1e-3; its gradients on ref match float32 central differences; bad transformer keys
 * are refused naming file:line. */
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_files.h"
#include "check_main.h"
#include "dptrain/alloc.h"
#include "dptrain/backend.h"
#include "dptrain/model.h"
#include "dptrain/rng.h"

static const char *src_path(const char *rel)
{
    static char buf[1024];
    const char *root = getenv("DPT_SOURCE_DIR");
    snprintf(buf, sizeof buf, "%s/%s", root ? root : "..", rel);
    return buf;
}

typedef struct net {
    const dpt_backend_ops_t *ops;
    dpt_backend_t *be;
    dpt_model_t *m;
} net_t;

static dpt_status_t open_net(net_t *n, const char *backend, const char *path, int batch, int blocked)
{
    n->ops = dpt_backend_find(backend);
    ck_assert_ptr_nonnull(n->ops);
    dpt_backend_config_t cfg = {.threads = 2, .blocked_layout = blocked};
    ck_assert_int_eq(n->ops->create(&cfg, &n->be), DPT_OK);
    dpt_model_options_t o = {.batch = batch};
    return dpt_model_create(path, n->ops, n->be, &o, &n->m);
}

static void close_net(net_t *n)
{
    dpt_model_destroy(n->m);
    n->ops->destroy(n->be);
}

START_TEST(test_vit_files)
{
    static const struct { const char *path; size_t params; } files[] = {
        {"models/vit-lite.cfg", 3722250}, {"models/vit-tiny.cfg", 139018}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        net_t n;
        dpt_status_t st = open_net(&n, "ref", src_path(files[i].path), 2, 0);
        ck_assert_msg(st == DPT_OK, "%s: %s", files[i].path, dpt_error_get());
        size_t np;
        dpt_model_params(n.m, &np);
        ck_assert_msg(np == files[i].params, "%s: %zu parameters, want %zu", files[i].path, np,
                      files[i].params);
        close_net(&n);
    }
}
END_TEST

/* 2x8x8 input, 2x2 patches to 12 channels: 16 tokens + the class token; one encoder layer of 3
 * heads (dh 4) with an MLP of 20. */
static const char *small_vit =
    "[net]\ninput=2,8,8\nclasses=5\n"
    "[conv]\nname=patch\nfilters=12\nsize=2\nstride=2\npad=0\n"
    "[tokens]\nclass_token=1\n"
    "[block enc]\n"
    "[layernorm]\nname=ln1\n[linear]\nname=qkv\noutput=36\n[attention]\nheads=3\n"
    "[linear]\nname=proj\noutput=12\n[add]\nname=res\ninputs=proj, $in\n"
    "[layernorm]\n[linear]\noutput=20\n[gelu]\n[linear]\nname=fc2\noutput=12\n"
    "[add]\ninputs=fc2, res\n"
    "[end]\n"
    "[use enc]\n"
    "[layernorm]\n[token_select]\n[fc]\noutput=5\n";

static void batch_of(float *x, int32_t *y, int n)
{
    dpt_rng_t r;
    dpt_rng_init(&r, 11, 0);
    for (int i = 0; i < n * 2 * 8 * 8; i++)
        x[i] = dpt_rng_normal(&r);
    for (int i = 0; i < n; i++)
        y[i] = (int32_t)dpt_rng_below(&r, 5);
}

/* loss and gradients of one step; the host copy of the gradients into g (np floats) */
static float step(net_t *n, const float *x, const int32_t *y, float *g, size_t np)
{
    float loss;
    ck_assert_int_eq(dpt_model_forward(n->m, x, y, 0, 1, &loss, NULL), DPT_OK);
    ck_assert_int_eq(dpt_model_backward(n->m), DPT_OK);
    memcpy(g, dpt_model_grads(n->m, NULL), np * sizeof(float));
    return loss;
}

START_TEST(test_cpu_equals_ref)
{
    if (!dpt_backend_find("cpu"))
        return;   /* built without oneDNN */
    const char *path = write_tmp_file("small-vit.cfg", small_vit);
    enum { B = 3 };
    float x[B * 2 * 8 * 8];
    int32_t y[B];
    batch_of(x, y, B);
    net_t r, c;
    ck_assert_int_eq(open_net(&r, "ref", path, B, 0), DPT_OK);
    ck_assert_msg(open_net(&c, "cpu", path, B, _i) == DPT_OK, "%s", dpt_error_get());
    dpt_model_init_params(r.m, 3);
    dpt_model_init_params(c.m, 3);
    size_t np;
    dpt_model_params(r.m, &np);
    float *gr = dpt_malloc(np * sizeof(float)), *gc = dpt_malloc(np * sizeof(float));
    float lr = step(&r, x, y, gr, np), lc = step(&c, x, y, gc, np);
    ck_assert_msg(fabsf(lr - lc) < 1e-4f * fmaxf(1, fabsf(lr)), "loss cpu %g ref %g", lc, lr);
    double big = 0, worst = 0;
    for (size_t i = 0; i < np; i++)
        big = fmax(big, fabs(gr[i]));
    for (size_t i = 0; i < np; i++)
        worst = fmax(worst, fabs(gr[i] - gc[i]) / big);
    ck_assert_msg(big > 0 && worst < 1e-3, "gradients: worst %g of %g (blocked %d)", worst, big,
                  _i);
    dpt_free(gr);
    dpt_free(gc);
    close_net(&r);
    close_net(&c);
}
END_TEST

START_TEST(test_ref_gradients)
{
    const char *path = write_tmp_file("small-vit-fd.cfg", small_vit);
    enum { B = 2 };
    float x[B * 2 * 8 * 8];
    int32_t y[B];
    batch_of(x, y, B);
    net_t r;
    ck_assert_int_eq(open_net(&r, "ref", path, B, 0), DPT_OK);
    dpt_model_init_params(r.m, 4);
    size_t np;
    float *p = dpt_model_params(r.m, &np);
    float *g = dpt_malloc(np * sizeof(float));
    step(&r, x, y, g, np);
    /* float32 central differences (step 1e-2) on every 7th parameter where the gradient is not
     * tiny, within 3%: every layer kind's parameters are among them */
    int checked = 0;
    double worst = 0;
    for (size_t i = 0; i < np; i += 7) {
        float save = p[i], lp, lm;
        p[i] = save + 1e-2f;
        ck_assert_int_eq(dpt_model_forward(r.m, x, y, 0, 1, &lp, NULL), DPT_OK);
        p[i] = save - 1e-2f;
        ck_assert_int_eq(dpt_model_forward(r.m, x, y, 0, 1, &lm, NULL), DPT_OK);
        p[i] = save;
        double num = ((double)lp - lm) / 2e-2;
        if (fabs(num) < 1e-3 && fabs(g[i]) < 1e-3)
            continue;
        worst = fmax(worst, fabs(num - g[i]) / fmax(fabs(num), fabs(g[i])));
        checked++;
    }
    ck_assert_int_gt(checked, 40);
    ck_assert_msg(worst < 0.03, "worst relative error %g over %d parameters", worst, checked);
    dpt_free(g);
    close_net(&r);
}
END_TEST

START_TEST(test_bad_keys)
{
    static const struct { const char *text, *want; } cases[] = {
        {"[net]\ninput=2,8,8\nclasses=5\n[conv]\nfilters=12\n[tokens]\n[linear]\noutput=36\n"
         "[attention]\nheads=5\n[gap]\n[fc]\noutput=5\n", ":9:"},
        {"[net]\ninput=2,8,8\nclasses=5\n[linear]\n[gap]\n[fc]\noutput=5\n", "linear needs"},
        {"[net]\ninput=2,8,8\nclasses=5\n[tokens]\nclass_token=2\n[gap]\n[fc]\noutput=5\n",
         ":5:"},
        {"[net]\ninput=2,8,8\nclasses=5\n[token_select]\n[fc]\noutput=5\n", "token_select"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        net_t n;
        dpt_status_t st = open_net(&n, "ref", write_tmp_file("bad.cfg", cases[i].text), 2, 0);
        ck_assert_msg(st != DPT_OK, "case %zu built", i);
        ck_assert_msg(strstr(dpt_error_get(), cases[i].want) && strstr(dpt_error_get(), "bad.cfg"),
                      "case %zu: %s", i, dpt_error_get());
        n.ops->destroy(n.be);
    }
}
END_TEST

static Suite *vit_suite(void)
{
    Suite *s = suite_create("model_vit");
    TCase *tc = tcase_create("vit");
    tcase_add_checked_fixture(tc, make_tmpdir, remove_tmpdir);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_vit_files);
    tcase_add_loop_test(tc, test_cpu_equals_ref, 0, 2);
    tcase_add_test(tc, test_ref_gradients);
    tcase_add_test(tc, test_bad_keys);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(vit_suite)
