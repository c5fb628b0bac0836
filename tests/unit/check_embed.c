/* check_embed.c: the token embedding ops (tokens, token_select). The ref kernels' gradients
 * (input, class token, position embedding) against central finite differences in float64 for
 * every combination of class token and position embedding, odd shapes; a spot check of the
 * token order (class token first, then the positions row by row); the cpu backend equals ref
 * through compare_op (check_cpu_side.h), from plain and blocked inputs (the cpu backend's
 * tokens are nhwc, a patch embedding's output is blocked). */
#include <check.h>
#include <math.h>
#include <string.h>

#include "backend/ref/ref_kernels_embed.h"
#include "check_cpu_side.h"
#include "check_fd.h"
#include "check_main.h"
#include "dptrain/alloc.h"
#include "dptrain/backend.h"
#include "dptrain/rng.h"

typedef struct tok_ctx {
    int N, C, P, cls, pos;
    double *x, *ct, *pe, *y, *r;
} tok_ctx_t;

static double tok_loss(void *p)
{
    const tok_ctx_t *c = p;
    dpt__ref_tokens_fwd_f64(c->x, c->cls ? c->ct : NULL, c->pos ? c->pe : NULL, c->y, c->N, c->C,
                            c->P, c->cls);
    return fd_dot(c->y, c->r, (long)c->N * c->C * (c->P + c->cls));
}

START_TEST(test_tokens_grad)
{
    static const int shapes[][3] = {{2, 3, 5}, {1, 4, 1}, {3, 2, 7}};
    for (int k = 0; k < 3; k++) {
        tok_ctx_t c = {.N = shapes[k][0], .C = shapes[k][1], .P = shapes[k][2], .cls = _i & 1,
                       .pos = _i >> 1};
        const long T = c.P + c.cls, ny = (long)c.N * c.C * T, nx = (long)c.N * c.C * c.P;
        dpt_rng_t r;
        dpt_rng_init(&r, 17, (uint64_t)(k * 4 + _i));
        c.x = fd_rand(&r, nx, 1, 0);
        c.ct = fd_rand(&r, c.C, 1, 0);
        c.pe = fd_rand(&r, c.C * T, 1, 0);
        c.r = fd_rand(&r, ny, 1, 0);
        c.y = fd_rand(&r, ny, 1, 0);
        double *dx = fd_rand(&r, nx, 1, 0), *dct = fd_rand(&r, c.C, 1, 0);
        double *dpe = fd_rand(&r, c.C * T, 1, 0);
        dpt__ref_tokens_bwd_f64(c.r, dx, c.cls ? dct : NULL, c.pos ? dpe : NULL, c.N, c.C, c.P,
                                c.cls);
        double e = fd_error(tok_loss, &c, c.x, nx, dx);
        if (c.cls)
            e = fmax(e, fd_error(tok_loss, &c, c.ct, c.C, dct));
        if (c.pos)
            e = fmax(e, fd_error(tok_loss, &c, c.pe, c.C * T, dpe));
        ck_assert_msg(e < 1e-6, "tokens %dx%dx%d cls %d pos %d: rel err %g", c.N, c.C, c.P, c.cls,
                      c.pos, e);
        double *all[] = {c.x, c.ct, c.pe, c.r, c.y, dx, dct, dpe};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            dpt_free(all[i]);
    }
}
END_TEST

/* x (1, 2, 2x2) = 1..8, class token (10, 20), pos[c][t] = 100 c + t: y[c] = cls + pos[c][0], then
 * the four positions in row-major order. token_select takes the first token back out. */
START_TEST(test_tokens_order)
{
    const float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, ct[2] = {10, 20};
    float pe[10], y[10], sel[2];
    for (int c = 0; c < 2; c++)
        for (int t = 0; t < 5; t++)
            pe[c * 5 + t] = (float)(100 * c + t);
    dpt__ref_tokens_fwd_f32(x, ct, pe, y, 1, 2, 4, 1);
    const float want[10] = {10, 2, 4, 6, 8, 120, 106, 108, 110, 112};
    for (int i = 0; i < 10; i++)
        ck_assert_float_eq(y[i], want[i]);
    dpt__ref_token_select_fwd_f32(y, sel, 1, 2, 5);
    ck_assert_float_eq(sel[0], 10);
    ck_assert_float_eq(sel[1], 120);
    float dx[10];
    dpt__ref_token_select_bwd_f32(sel, dx, 1, 2, 5);
    for (int i = 0; i < 10; i++)
        ck_assert_float_eq(dx[i], i % 5 ? 0.0f : sel[i / 5]);
}
END_TEST

START_TEST(test_cpu_tokens)
{
    if (!dpt_backend_find("cpu"))
        return;   /* built without oneDNN: nothing to compare */
    static const int shapes[][4] = {{2, 16, 4, 4}, {3, 20, 3, 5}, {1, 7, 1, 9}};
    for (int k = 0; k < 3; k++)
        for (int variant = 0; variant < 4; variant++) {
            dpt_op_desc_t d = {.kind = DPT_OP_TOKENS, .n_in = 1, .cls_token = variant & 1,
                               .pos_embed = variant >> 1};
            d.in[0] = dpt_tensor_shape(shapes[k][0], shapes[k][1], shapes[k][2], shapes[k][3]);
            compare_op(&d, _i, 900 + (uint64_t)(k * 4 + variant));
        }
    dpt_op_desc_t s = {.kind = DPT_OP_TOKEN_SELECT, .n_in = 1};
    s.in[0] = dpt_tensor_shape(3, 20, 1, 17);
    compare_op(&s, _i, 950);
}
END_TEST

static Suite *embed_suite(void)
{
    Suite *s = suite_create("embed");
    TCase *tc = tcase_create("embed");
    tcase_add_loop_test(tc, test_tokens_grad, 0, 4);
    tcase_add_test(tc, test_tokens_order);
    tcase_add_loop_test(tc, test_cpu_tokens, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(embed_suite)
