/* check_optim.c: the optimizer's pieces against references written here in float64: the
 * learning-rate schedules (warmup, each kind's shape at its landmarks), SGD with momentum,
 * Nesterov and per-segment weight decay, LARS trust ratios (decayed segments only, 1 for a zero
 * norm), AdamW (torch's formulas, decoupled decay on decayed segments only), and the fp16 loss scaler's halving, growth and bounds. */
#include <check.h>
#include <math.h>
#include <string.h>

#include "check_main.h"
#include "dptrain/optim.h"

#define NEAR(a, b, tol) ck_assert_msg(fabs((double)(a) - (double)(b)) <= (tol) * (1 + fabs((double)(b))), \
                                      "%s = %.9g, want %.9g", #a, (double)(a), (double)(b))

static dpt_schedule_t sched(dpt_sched_kind_t k)
{
    return (dpt_schedule_t){.kind = k, .base_lr = 0.4, .total_steps = 110, .warmup_steps = 10,
                            .step_every = 30, .gamma = 0.1, .peak = 0.25, .final_frac = 0.05};
}

START_TEST(test_warmup)
{
    static const dpt_sched_kind_t kinds[] = {DPT_SCHED_CONSTANT, DPT_SCHED_COSINE,
                                             DPT_SCHED_LINEAR, DPT_SCHED_STEP};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        dpt_schedule_t s = sched(kinds[k]);
        for (long i = 0; i < 10; i++)   /* base * (step + 1) / warmup: never 0 */
            NEAR(dpt_schedule_lr(&s, i), 0.4 * (double)(i + 1) / 10.0, 1e-12);
        NEAR(dpt_schedule_lr(&s, 10), 0.4, 1e-12);   /* the peak right after warmup */
    }
}
END_TEST

START_TEST(test_shapes)
{
    dpt_schedule_t s = sched(DPT_SCHED_COSINE);
    const double lo = 0.4 * 0.05;
    NEAR(dpt_schedule_lr(&s, 60), lo + (0.4 - lo) * 0.5, 1e-12);   /* halfway: the middle */
    NEAR(dpt_schedule_lr(&s, 110), lo, 1e-12);
    NEAR(dpt_schedule_lr(&s, 500), lo, 1e-12);   /* past the end: stays at the floor */
    for (long i = 10; i < 110; i++)
        ck_assert(dpt_schedule_lr(&s, i + 1) <= dpt_schedule_lr(&s, i));
    s = sched(DPT_SCHED_LINEAR);
    NEAR(dpt_schedule_lr(&s, 35), lo + (0.4 - lo) * 0.75, 1e-12);
    NEAR(dpt_schedule_lr(&s, 110), lo, 1e-12);
    s = sched(DPT_SCHED_STEP);   /* x0.1 every 30 steps after warmup */
    NEAR(dpt_schedule_lr(&s, 39), 0.4, 1e-12);
    NEAR(dpt_schedule_lr(&s, 40), 0.04, 1e-12);
    NEAR(dpt_schedule_lr(&s, 70), 0.004, 1e-12);
    s = sched(DPT_SCHED_CONSTANT);
    NEAR(dpt_schedule_lr(&s, 109), 0.4, 1e-12);
    s = sched(DPT_SCHED_ONECYCLE);   /* no warmup: 0 -> peak at 25% -> 0 at the end */
    double top = 0;
    long at = -1;
    for (long i = 0; i < 110; i++) {
        double lr = dpt_schedule_lr(&s, i);
        ck_assert(lr > 0 && lr <= 0.4 + 1e-12);
        if (lr > top) {
            top = lr;
            at = i;
        }
    }
    ck_assert_int_ge(at, 26);
    ck_assert_int_le(at, 28);
    NEAR(top, 0.4, 0.02);
    NEAR(dpt_schedule_lr(&s, 110), 0.0, 1e-12);
}
END_TEST

START_TEST(test_names)
{
    for (int k = 0; k <= DPT_SCHED_ONECYCLE; k++) {
        dpt_sched_kind_t back;
        ck_assert_int_eq(dpt_schedule_parse(dpt_schedule_name((dpt_sched_kind_t)k), &back), DPT_OK);
        ck_assert_int_eq(back, k);
    }
    dpt_sched_kind_t out = DPT_SCHED_COSINE;
    ck_assert_int_eq(dpt_schedule_parse("zigzag", &out), DPT_ERR_INVALID_ARG);
    ck_assert_int_eq(out, DPT_SCHED_COSINE);
}
END_TEST

/* Two segments: weights (decayed) and a bias (not); three steps of the float64 reference. */
enum { NW = 37, NB = 5, N = NW + NB };
static const dpt_param_segment_t segs[2] = {{.offset = 0, .count = NW, .decay = 1},
                                            {.offset = NW, .count = NB, .decay = 0}};

static void reference_step(const dpt_sgd_config_t *c, double lr, double *p, const double *g,
                           double *v)
{
    for (int s = 0; s < 2; s++) {
        double wd = segs[s].decay ? c->weight_decay : 0, t = 1;
        size_t o = segs[s].offset, n = segs[s].count;
        if (c->optimizer == DPT_OPTIM_LARS && segs[s].decay) {
            double pp = 0, gg = 0;
            for (size_t i = o; i < o + n; i++) {
                pp += p[i] * p[i];
                gg += g[i] * g[i];
            }
            if (pp > 0 && gg > 0)
                t = c->lars_eta * sqrt(pp) / (sqrt(gg) + wd * sqrt(pp));
        }
        for (size_t i = o; i < o + n; i++) {
            double gi = t * (g[i] + wd * p[i]);
            v[i] = c->momentum * v[i] + gi;
            p[i] -= lr * (c->nesterov ? gi + c->momentum * v[i] : v[i]);
        }
    }
}

/* _i: 0 plain momentum, 1 Nesterov, 2 LARS, 3 LARS + Nesterov */
START_TEST(test_sgd)
{
    dpt_sgd_config_t c = {.momentum = 0.9f, .nesterov = _i & 1, .weight_decay = 5e-4f,
                          .optimizer = _i >> 1, .lars_eta = 0.02f};
    float p[N], g[N], v[N] = {0};
    double pd[N], gd[N], vd[N] = {0};
    for (int i = 0; i < N; i++)
        pd[i] = p[i] = (float)sin(i * 0.7) * 0.5f;
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < N; i++)
            gd[i] = g[i] = (float)cos(i * 1.3 + step) * 0.1f;
        dpt_sgd_step(&c, 0.1f, p, g, v, segs, 2);
        reference_step(&c, 0.1, pd, gd, vd);
        for (int i = 0; i < N; i++) {
            NEAR(p[i], pd[i], 1e-5);
            NEAR(v[i], vd[i], 1e-5);
        }
    }
}
END_TEST

START_TEST(test_lars_zero_norm)
{
    /* zero weights: the trust ratio is 1, so the step is plain SGD on the weights */
    dpt_sgd_config_t c = {.momentum = 0, .optimizer = DPT_OPTIM_LARS, .lars_eta = 0.001f};
    float p[N] = {0}, g[N], v[N] = {0};
    for (int i = 0; i < N; i++)
        g[i] = 1.0f;
    dpt_sgd_step(&c, 0.5f, p, g, v, segs, 2);
    for (int i = 0; i < N; i++)
        ck_assert_float_eq(p[i], -0.5f);
}
END_TEST

/* AdamW against torch.optim.AdamW's formulas in float64 over 25 steps with a changing learning
 * rate (decay on the first segment only), and the first step's closed form: mhat = g,
 * vhat = g^2, so p1 = p0 * (1 - lr*wd) - lr * g / (|g| + eps). */
START_TEST(test_adamw)
{
    enum { NA = 37, STEPS = 25 };
    dpt_param_segment_t asegs[2] = {{.offset = 0, .count = 20, .decay = 1},
                                   {.offset = 20, .count = NA - 20, .decay = 0}};
    dpt_sgd_config_t c = {.optimizer = DPT_OPTIM_ADAMW, .weight_decay = 0.05f,
                          .adam_beta1 = 0.9f, .adam_beta2 = 0.98f, .adam_eps = 1e-6f};
    ck_assert_int_eq(dpt_optim_state_per_param(&c), 2);
    float p[NA], g[NA], m[NA] = {0}, v[NA] = {0};
    double rp[NA], rm[NA] = {0}, rv[NA] = {0};
    for (int i = 0; i < NA; i++)
        rp[i] = p[i] = (float)sin(0.7 * i + 0.3);
    for (int t = 1; t <= STEPS; t++) {
        const float lr = 1e-3f * (float)(1 + t % 4);
        for (int i = 0; i < NA; i++)
            g[i] = (float)(cos(1.3 * i * t + 0.1) * (i % 5 + 1) * 0.01);
        dpt_adamw_step(&c, lr, (uint64_t)t, p, g, m, v, asegs, 2);
        for (int i = 0; i < NA; i++) {
            const double b1 = c.adam_beta1, b2 = c.adam_beta2, gi = g[i];
            if (i < 20)
                rp[i] *= 1.0 - (double)lr * c.weight_decay;
            rm[i] = b1 * rm[i] + (1 - b1) * gi;
            rv[i] = b2 * rv[i] + (1 - b2) * gi * gi;
            double mh = rm[i] / (1 - pow(b1, t)), vh = rv[i] / (1 - pow(b2, t));
            rp[i] -= lr * mh / (sqrt(vh) + c.adam_eps);
            if (t == 1)
                NEAR(p[i], (double)(float)sin(0.7 * i + 0.3) * (i < 20 ? 1 - lr * 0.05 : 1)
                               - lr * gi / (fabs(gi) + 1e-6), 1e-6);
        }
    }
    for (int i = 0; i < NA; i++) {
        NEAR(p[i], rp[i], 2e-6);
        NEAR(m[i], rm[i], 1e-5);
        NEAR(v[i], rv[i], 1e-5);
    }
    dpt_sgd_config_t sgd = {.optimizer = DPT_OPTIM_LARS};
    ck_assert_int_eq(dpt_optim_state_per_param(&sgd), 1);
}
END_TEST

START_TEST(test_loss_scaler)
{
    dpt_loss_scaler_t s;
    dpt_loss_scaler_init(&s, 1, 0);
    ck_assert_float_eq(s.scale, 65536.0f);
    ck_assert_int_eq(dpt_loss_scaler_update(&s, 1), 0);   /* overflow: skipped, halved */
    ck_assert_float_eq(s.scale, 32768.0f);
    for (int i = 0; i < s.growth_interval - 1; i++)
        ck_assert_int_eq(dpt_loss_scaler_update(&s, 0), 1);
    ck_assert_float_eq(s.scale, 32768.0f);
    ck_assert_int_eq(dpt_loss_scaler_update(&s, 0), 1);   /* the 2000th good step doubles */
    ck_assert_float_eq(s.scale, 65536.0f);
    for (int i = 0; i < 40; i++)
        dpt_loss_scaler_update(&s, 1);
    ck_assert_float_eq(s.scale, 1.0f);   /* never below 1 */
    ck_assert_int_eq(s.skipped, 41);
    dpt_loss_scaler_init(&s, 0, 128.0f);   /* static: always applied, never changes */
    ck_assert_int_eq(dpt_loss_scaler_update(&s, 1), 1);
    ck_assert_float_eq(s.scale, 128.0f);
}
END_TEST

static Suite *optim_suite(void)
{
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("optim");
    tcase_add_test(tc, test_warmup);
    tcase_add_test(tc, test_shapes);
    tcase_add_test(tc, test_names);
    tcase_add_loop_test(tc, test_sgd, 0, 4);
    tcase_add_test(tc, test_lars_zero_norm);
    tcase_add_test(tc, test_adamw);
    tcase_add_test(tc, test_loss_scaler);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(optim_suite)
