/* check_coll_check.c: the collective layer's fingerprint check (dpt_coll_set_check) on the
 * in-process transport: matching calls pass and reduce correctly; a rank that calls an
 * all-reduce of another size, another op, or a broadcast from another root makes every rank
 * return DPT_ERR_INVALID_ARG naming that rank, instead of hanging or reducing garbage. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "check_main.h"
#include "dptrain/coll.h"

enum { P = 3, N = 100 };

typedef struct rank_ctx {
    int rank, bad_rank, mode;   /* mode: 0 all alike, 1 count, 2 op, 3 broadcast root */
    dpt_p2p_t *p2p;
    dpt_status_t st;
    float out;
    char msg[512];
} rank_ctx_t;

static void *rank_main(void *arg)
{
    rank_ctx_t *rc = arg;
    dpt_coll_t *c = NULL;
    dpt_coll_config_t cfg = {.max_bytes = 4096};
    float buf[N + 1];
    for (int i = 0; i <= N; i++)
        buf[i] = (float)(rc->rank + 1);
    rc->st = dpt_coll_create(rc->p2p, &cfg, &c);
    if (rc->st == DPT_OK)
        rc->st = dpt_coll_set_check(c, 1);
    /* a first matching collective, then the one under test */
    if (rc->st == DPT_OK)
        rc->st = dpt_coll_allreduce(c, buf, N, DPT_DTYPE_F32, DPT_REDOP_SUM, DPT_COLL_ALGO_RING);
    rc->out = buf[0];
    int odd = rc->rank == rc->bad_rank;
    if (rc->st == DPT_OK) {
        if (rc->mode == 3)
            rc->st = dpt_coll_broadcast(c, buf, 16, odd ? 1 : 0);
        else
            rc->st = dpt_coll_allreduce(c, buf, rc->mode == 1 && odd ? N + 1 : N, DPT_DTYPE_F32,
                                        rc->mode == 2 && odd ? DPT_REDOP_AVG : DPT_REDOP_SUM,
                                        DPT_COLL_ALGO_RING);
    }
    if (rc->st != DPT_OK)
        snprintf(rc->msg, sizeof rc->msg, "%s", dpt_error_get());
    dpt_coll_destroy(c);
    return NULL;
}

static void run(int mode, rank_ctx_t ctx[P])
{
    dpt_p2p_t *eps[P];
    pthread_t th[P];
    ck_assert_int_eq(dpt_p2p_loop_create(P, eps), DPT_OK);
    for (int r = 0; r < P; r++) {
        ctx[r] = (rank_ctx_t){.rank = r, .bad_rank = 2, .mode = mode, .p2p = eps[r]};
        ck_assert_int_eq(pthread_create(&th[r], NULL, rank_main, &ctx[r]), 0);
    }
    for (int r = 0; r < P; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < P; r++)
        dpt_p2p_destroy(eps[r]);
}

START_TEST(matching_calls_pass)
{
    rank_ctx_t ctx[P];
    run(0, ctx);
    for (int r = 0; r < P; r++) {
        ck_assert_msg(ctx[r].st == DPT_OK, "rank %d: %s", r, ctx[r].msg);
        ck_assert_float_eq(ctx[r].out, 6.0f);   /* 1 + 2 + 3 */
    }
}
END_TEST

START_TEST(mismatch_named_on_every_rank)
{
    static const char *const what[] = {"", "all-reduce of 101 f32", "(avg, ring)",
                                       "broadcast of 16 bytes from rank 1"};
    int mode = _i;
    rank_ctx_t ctx[P];
    run(mode, ctx);
    for (int r = 0; r < P; r++) {
        ck_assert_msg(ctx[r].st == DPT_ERR_INVALID_ARG, "mode %d rank %d: status %d", mode, r,
                      (int)ctx[r].st);
        ck_assert_msg(strstr(ctx[r].msg, "mismatched collective: rank 2 calls"),
                      "mode %d rank %d: %s", mode, r, ctx[r].msg);
        ck_assert_msg(strstr(ctx[r].msg, what[mode]), "mode %d rank %d: %s", mode, r,
                      ctx[r].msg);
        ck_assert_msg(strstr(ctx[r].msg, "collective #1"), "mode %d: %s", mode, ctx[r].msg);
    }
}
END_TEST

static Suite *coll_check_suite(void)
{
    Suite *s = suite_create("coll_check");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, matching_calls_pass);
    tcase_add_loop_test(tc, mismatch_named_on_every_rank, 1, 4);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(coll_check_suite)
