/* check_trainer.c: the trainer's multi-rank logic in one process, one thread per rank over the
 * in-process transport (dpt__train_p2p), at 1-4 ranks, on a small model and synthetic data:
 *   - every rank ends with the same parameters (param_crc), with and without sync BN and
 *     accumulation;
 *   - a setup error of one rank stops every rank, the others naming it;
 *   - ranks with different flags stop, naming the flag and both values;
 *   - a stop request on one rank stops every rank after the same step with a checkpoint, and the
 *     resume (rank 0 reads, broadcast) ends with the bits of a run never stopped;
 *   - a non-finite loss stops every rank naming the step (--nan-policy abort) or skips the
 *     update on every rank (skip);
 *   - --eval-every writes an "eval" record after every multiple of its steps and every epoch end
 *     (one record where they coincide; with --no-eval the multiples only), and --stop-at-acc
 *     stops every rank after the same step, the first evaluation that reaches it. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "dptrain/coll.h"
#include "dptrain/trainer.h"
#include "train/internal.h"

#define MAX_RANKS 4

static const char model_text[] = "[net]\ninput = 1,8,8\nclasses = 4\n[conv]\nfilters = 4\n"
                                 "[batchnorm]\n[relu]\n[maxpool]\n[fc]\noutput = 4\n";

typedef struct rank_run {
    dpt_train_config_t cfg;
    atomic_int stop;
    dpt_train_result_t res;
    dpt_status_t st;
    char msg[1024];
    dpt_p2p_t *ctl, *data;
} rank_run_t;

static char tmpdir[256], model_path[300];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dpt-check-trainer-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(model_path, sizeof model_path, "%s/small.cfg", tmpdir);
    FILE *f = fopen(model_path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(model_text, f);
    fclose(f);
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static void base_config(dpt_train_config_t *c)
{
    dpt_train_config_default(c);
    c->model_path = model_path;
    c->data_spec = "synthetic:192:1:8:8:4";
    c->backend = "ref";
    c->threads = 1;
    c->epochs = 2;
    c->batch = 8;
    c->lr = 0.05;
    c->quiet = 1;
    c->progress = 0;
    c->prefetch = 0;
    c->allreduce = "ring";
    c->watchdog_s = 0;
    c->agree_flags = "--lr=0.05\n--batch=8\n";
}

static void *rank_main(void *arg)
{
    rank_run_t *r = arg;
    r->st = dpt__train_p2p(&r->cfg, &r->res, r->ctl, r->data);
    snprintf(r->msg, sizeof r->msg, "%s", r->st == DPT_OK ? "" : dpt_error_get());
    return NULL;
}

/* Run p ranks with their configs (runs[r].cfg set by the caller), over fresh transports. */
static void run_ranks(int p, rank_run_t *runs)
{
    dpt_p2p_t *ctl[MAX_RANKS], *data[MAX_RANKS];
    pthread_t th[MAX_RANKS];
    ck_assert_int_eq(dpt_p2p_loop_create(p, ctl), DPT_OK);
    ck_assert_int_eq(dpt_p2p_loop_create(p, data), DPT_OK);
    for (int r = 0; r < p; r++) {
        runs[r].ctl = ctl[r];
        runs[r].data = data[r];
        if (runs[r].cfg.stop_flag == NULL)
            runs[r].cfg.stop_flag = &runs[r].stop;
        ck_assert_int_eq(pthread_create(&th[r], NULL, rank_main, &runs[r]), 0);
    }
    for (int r = 0; r < p; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < p; r++) {
        dpt_p2p_destroy(ctl[r]);
        dpt_p2p_destroy(data[r]);
    }
}

static void expect_ok(int p, const rank_run_t *runs, const char *what)
{
    for (int r = 0; r < p; r++)
        ck_assert_msg(runs[r].st == DPT_OK, "%s: np %d: rank %d: %s", what, p, r, runs[r].msg);
}

/* _i: np 1-4 x (plain, --sync-bn --accum 2) */
START_TEST(test_replicas)
{
    int p = 1 + _i % 4, variant = _i / 4;
    rank_run_t runs[MAX_RANKS];
    memset(runs, 0, sizeof runs);
    for (int r = 0; r < p; r++) {
        base_config(&runs[r].cfg);
        runs[r].cfg.sync_bn = variant;
        runs[r].cfg.accum = variant ? 2 : 1;
    }
    run_ranks(p, runs);
    expect_ok(p, runs, "replicas");
    for (int r = 0; r < p; r++) {
        ck_assert_msg(runs[r].res.param_crc == runs[0].res.param_crc, "np %d: rank %d has "
                      "param_crc %08x, rank 0 %08x", p, r, runs[r].res.param_crc,
                      runs[0].res.param_crc);
        ck_assert_int_eq(runs[r].res.steps, runs[0].res.steps);
        ck_assert_int_eq(runs[r].res.ranks, p);
        ck_assert_int_eq(runs[r].res.test_total, 192);   /* sharded, summed: every image once */
    }
    ck_assert_int_eq(runs[0].res.steps, 2L * (192 / (8 * p * (variant ? 2 : 1))));
}
END_TEST

START_TEST(test_setup_error)
{
    enum { P = 3 };
    rank_run_t runs[P];
    memset(runs, 0, sizeof runs);
    for (int r = 0; r < P; r++)
        base_config(&runs[r].cfg);
    runs[2].cfg.model_path = "/nonexistent/model.cfg";
    run_ranks(P, runs);
    ck_assert_int_ne(runs[2].st, DPT_OK);
    ck_assert_msg(strstr(runs[2].msg, "/nonexistent/model.cfg"), "rank 2: %s", runs[2].msg);
    for (int r = 0; r < 2; r++) {
        ck_assert_int_ne(runs[r].st, DPT_OK);
        ck_assert_msg(strstr(runs[r].msg, "rank 2 stopped during setup"), "rank %d: %s", r,
                      runs[r].msg);
        ck_assert_int_eq(runs[r].res.collective_error, 2);
    }
}
END_TEST

START_TEST(test_flag_mismatch)
{
    enum { P = 2 };
    rank_run_t runs[P];
    memset(runs, 0, sizeof runs);
    for (int r = 0; r < P; r++)
        base_config(&runs[r].cfg);
    runs[1].cfg.agree_flags = "--lr=0.2\n--batch=8\n";
    run_ranks(P, runs);
    for (int r = 0; r < P; r++) {
        ck_assert_int_ne(runs[r].st, DPT_OK);
        ck_assert_msg(strstr(runs[r].msg, "rank 1 has --lr=0.2 but rank 0 has --lr=0.05"),
                      "rank %d: %s", r, runs[r].msg);
        ck_assert_int_eq(runs[r].res.collective_error, 2);
    }
}
END_TEST

/* _i: np 2, 3; then np 2 and 3 with --compress topk:0.05 (its residual is in the checkpoint),
 * with powersgd (rank 1: the test net has no matrix that rank 2 would compress; its residual and
 * warm-start Q are), with sign (its residuals), and np 2 with powersgd from step 1
 * (--compress-start 1: the checkpoint after step 1 holds no Q yet; the resumed run starts it as
 * the straight run did) */
START_TEST(test_stop_resume)
{
    static const char *const codecs[5] = {"none", "topk:0.05", "powersgd", "sign", "powersgd"};
    int p = 2 + _i % 2;
    const char *compress = codecs[_i / 2];
    const int start = _i >= 8;
    rank_run_t runs[MAX_RANKS], straight[MAX_RANKS];
    char dir[400];
    snprintf(dir, sizeof dir, "%s/ck%d", tmpdir, _i);
    memset(straight, 0, sizeof straight);
    for (int r = 0; r < p; r++) {
        base_config(&straight[r].cfg);
        straight[r].cfg.compress = compress;
        straight[r].cfg.compress_start = start;
    }
    run_ranks(p, straight);
    expect_ok(p, straight, "straight run");
    /* a stop request on the last rank only: every rank stops after the first step */
    memset(runs, 0, sizeof runs);
    for (int r = 0; r < p; r++) {
        base_config(&runs[r].cfg);
        runs[r].cfg.checkpoint_dir = dir;
        runs[r].cfg.compress = compress;
        runs[r].cfg.compress_start = start;
    }
    atomic_store(&runs[p - 1].stop, 1);
    run_ranks(p, runs);
    expect_ok(p, runs, "stopped run");
    for (int r = 0; r < p; r++) {
        ck_assert_msg(runs[r].res.stopped == 1, "rank %d did not stop", r);
        ck_assert_int_eq(runs[r].res.steps, 1);
    }
    char ck[500];
    snprintf(ck, sizeof ck, "%s/ckpt-1.dpt", dir);
    ck_assert_msg(access(ck, R_OK) == 0, "no %s", ck);
    /* the resume: rank 0 reads, every rank continues from the broadcast state */
    memset(runs, 0, sizeof runs);
    for (int r = 0; r < p; r++) {
        base_config(&runs[r].cfg);
        runs[r].cfg.checkpoint_dir = dir;
        runs[r].cfg.resume = "auto";
        runs[r].cfg.compress = compress;
        runs[r].cfg.compress_start = start;
    }
    run_ranks(p, runs);
    expect_ok(p, runs, "resumed run");
    for (int r = 0; r < p; r++) {
        ck_assert_int_eq(runs[r].res.resumed_from, 1);
        ck_assert_msg(runs[r].res.param_crc == straight[0].res.param_crc, "np %d %s: rank %d: "
                      "resumed %08x, straight %08x", p, compress, r, runs[r].res.param_crc,
                      straight[0].res.param_crc);
    }
}
END_TEST

/* _i: 0 = --nan-policy abort, 1 = skip */
START_TEST(test_nan)
{
    enum { P = 2 };
    rank_run_t runs[P];
    memset(runs, 0, sizeof runs);
    for (int r = 0; r < P; r++) {
        base_config(&runs[r].cfg);
        runs[r].cfg.lr = 1e30;   /* the parameters overflow within a few steps */
        runs[r].cfg.nan_skip = _i;
        runs[r].cfg.sgd.weight_decay = 0;
    }
    run_ranks(P, runs);
    for (int r = 0; r < P; r++) {
        if (_i == 0) {
            ck_assert_int_ne(runs[r].st, DPT_OK);
            ck_assert_msg(strstr(runs[r].msg, "the loss or the gradients are NaN or Inf"),
                          "rank %d: %s", r, runs[r].msg);
            ck_assert_int_eq(runs[r].res.collective_error, 2);
        } else {
            ck_assert_msg(runs[r].st == DPT_OK, "rank %d: %s", r, runs[r].msg);
            ck_assert_int_gt(runs[r].res.skipped_steps, 0);
            ck_assert_int_eq(runs[r].res.skipped_steps, runs[0].res.skipped_steps);
            ck_assert_int_eq(runs[r].res.param_crc, runs[0].res.param_crc);
        }
    }
}
END_TEST

/* The "step" values of the "eval" records of a metrics file (and each one's test_acc), and
 * whether it ends with a "final" record. */
static int read_evals(const char *path, long *steps, double *accs, int cap, int *final)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no metrics file %s", path);
    char line[4096];
    int n = 0;
    *final = 0;
    while (fgets(line, sizeof line, f)) {
        *final = strstr(line, "\"kind\":\"final\"") != NULL;
        if (!strstr(line, "\"kind\":\"eval\""))
            continue;
        const char *st = strstr(line, "\"step\":"), *acc = strstr(line, "\"test_acc\":");
        ck_assert_msg(st && acc && strstr(line, "\"wall_s\":") && strstr(line, "\"test_loss\":")
                      && strstr(line, "\"epoch\":"), "eval record: %s", line);
        ck_assert_int_lt(n, cap);
        steps[n] = strtol(st + 7, NULL, 10);
        accs[n++] = strtod(acc + 11, NULL);
    }
    fclose(f);
    return n;
}

/* _i: np 1-3 x (--eval-every 5: 5 10 12 15 20 24 at np 2, with the epoch ends; --eval-every 6:
 * the epoch ends are multiples; --eval-every 5 --no-eval: the multiples only). 2 epochs of
 * 192 / (8 np) steps. */
START_TEST(test_eval_every)
{
    int p = 1 + _i % 3, variant = _i / 3;
    int every = variant == 1 ? 6 : 5, epoch_evals = variant != 2;
    rank_run_t runs[MAX_RANKS];
    memset(runs, 0, sizeof runs);
    char metrics[400];
    snprintf(metrics, sizeof metrics, "%s/eval%d.jsonl", tmpdir, _i);
    for (int r = 0; r < p; r++) {
        base_config(&runs[r].cfg);
        runs[r].cfg.eval_every = every;
        runs[r].cfg.eval_every_epoch = epoch_evals;
        runs[r].cfg.metrics_path = metrics;   /* rank 0 writes */
    }
    run_ranks(p, runs);
    expect_ok(p, runs, "eval-every");
    long spe = 192 / (8 * p), want[64];
    int nw = 0;
    for (long step = 1; step <= 2 * spe; step++)
        if (step % every == 0 || (epoch_evals && step % spe == 0))
            want[nw++] = step;
    long steps[64];
    double accs[64];
    int final;
    int n = read_evals(metrics, steps, accs, 64, &final);
    ck_assert_msg(final, "no final record");
    ck_assert_msg(n == nw, "np %d every %d: %d eval records, expected %d", p, every, n, nw);
    for (int k = 0; k < n; k++)
        ck_assert_msg(steps[k] == want[k], "np %d every %d: eval record %d at step %ld, expected "
                      "%ld", p, every, k, steps[k], want[k]);
    for (int r = 0; r < p; r++) {
        ck_assert_int_eq(runs[r].res.evals, nw);
        ck_assert_int_eq(runs[r].res.param_crc, runs[0].res.param_crc);
        ck_assert_int_eq(runs[r].res.test_total, 192);
        ck_assert_int_eq(runs[r].res.reached_acc, 0);
    }
}
END_TEST

/* _i: np 1-3. --stop-at-acc 0.9 with --eval-every 2 over 40 epochs: every rank stops after the
 * same step, long before the end, at the first evaluation at or above 0.9; a final record. */
START_TEST(test_stop_at_acc)
{
    int p = 1 + _i;
    rank_run_t runs[MAX_RANKS];
    memset(runs, 0, sizeof runs);
    char metrics[400];
    snprintf(metrics, sizeof metrics, "%s/stop%d.jsonl", tmpdir, _i);
    for (int r = 0; r < p; r++) {
        base_config(&runs[r].cfg);
        runs[r].cfg.epochs = 40;
        runs[r].cfg.eval_every = 2;
        runs[r].cfg.stop_at_acc = 0.9;
        runs[r].cfg.metrics_path = metrics;
    }
    run_ranks(p, runs);
    expect_ok(p, runs, "stop-at-acc");
    long total = 40L * (192 / (8 * p)), steps[512];
    double accs[512];
    int final;
    int n = read_evals(metrics, steps, accs, 512, &final);
    ck_assert_msg(final, "no final record");
    ck_assert_int_ge(n, 1);
    for (int k = 0; k + 1 < n; k++)
        ck_assert_msg(accs[k] < 0.9, "eval %d (step %ld) had %.4f and training went on", k,
                      steps[k], accs[k]);
    ck_assert_msg(accs[n - 1] >= 0.9, "last eval %.4f", accs[n - 1]);
    for (int r = 0; r < p; r++) {
        ck_assert_int_eq(runs[r].res.reached_acc, 1);
        ck_assert_int_eq(runs[r].res.stopped, 0);
        ck_assert_int_eq(runs[r].res.steps, steps[n - 1]);
        ck_assert_msg(runs[r].res.steps < total / 2, "np %d: stopped at step %ld of %ld", p,
                      runs[r].res.steps, total);
        ck_assert_int_eq(runs[r].res.param_crc, runs[0].res.param_crc);
        ck_assert(runs[r].res.test_acc >= 0.9);
    }
    /* no evaluation at all to stop at: refused */
    memset(runs, 0, sizeof runs);
    base_config(&runs[0].cfg);
    runs[0].cfg.eval_every_epoch = 0;
    runs[0].cfg.stop_at_acc = 0.9;
    run_ranks(1, runs);
    ck_assert_int_ne(runs[0].st, DPT_OK);
    ck_assert_msg(strstr(runs[0].msg, "--stop-at-acc needs evaluations"), "%s", runs[0].msg);
}
END_TEST

static Suite *trainer_suite(void)
{
    Suite *s = suite_create("trainer");
    TCase *tc = tcase_create("ranks");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_replicas, 0, 8);
    tcase_add_test(tc, test_setup_error);
    tcase_add_test(tc, test_flag_mismatch);
    tcase_add_loop_test(tc, test_stop_resume, 0, 9);
    tcase_add_loop_test(tc, test_nan, 0, 2);
    tcase_add_loop_test(tc, test_eval_every, 0, 9);
    tcase_add_loop_test(tc, test_stop_at_acc, 0, 3);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(trainer_suite)
