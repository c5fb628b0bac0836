/* main.c: the dptrain command line. Parses subcommands and flags (from a --config file first,
 * then argv, which wins), fills a dpt_train_config_t and calls the trainer. Only main decides to
 * exit: usage errors exit 2, run-time errors (files, shapes) exit 1, each with one clear line. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stddef.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dptrain/backend.h"
#include "dptrain/coll.h"
#include "dptrain/compress.h"
#include "dptrain/config.h"
#include "dptrain/dataset.h"
#include "dptrain/env.h"
#include "dptrain/log.h"
#include "dptrain/optim.h"
#include "dptrain/prepare.h"
#include "dptrain/trainer.h"
#include "dptrain/version.h"   /* generated: DPT_VERSION, DPT_GIT_HASH */
#if DPT_HAVE_CUDA
#include "dptrain/cuda.h"
#endif

#include "cli/options.h"

static void print_main_help(void)
{
    printf("dptrain: data-parallel neural-network trainer\n\n"
           "usage: dptrain COMMAND [flags]\n\n"
           "commands:\n"
           "  train        train a model (see 'dptrain train --help')\n"
           "  eval         evaluate saved weights ('dptrain eval --help')\n"
           "  prepare      JPEG folder -> zstd shards ('dptrain prepare --help')\n"
           "  bench train  training-step throughput ('dptrain bench train --help')\n"
           "  bench allreduce  all-reduce algorithms vs MPI_Allreduce, under mpirun\n"
           "               ('dptrain bench allreduce --help')\n"
           "  info         version, build features and what each selector flag accepts\n"
           "  help [COMMAND]  this text, or a command's flags\n"
           "  version      the version and the git commit it was built from (also --version)\n");
}

static int fail(const char *what, dpt_status_t st)
{
    const char *msg = dpt_error_get();
    fprintf(stderr, "dptrain %s: error: %s\n", what, *msg ? msg : dpt_status_str(st));
    return 1;
}

/* What the build has, and what every selector flag accepts, read off the registries (the
 * algorithm, backend, schedule and precision tables, and the flag table's choices). */
static int cmd_info(void)
{
    int ndev = 0;
    const char *why = "built without the CUDA toolkit";
#if DPT_HAVE_CUDA
    ndev = dpt_cuda_device_count();
    why = dpt_cuda_no_device_reason();
    if (!why || !*why)
        why = "none found";
#endif
    printf("dptrain %s (git %s)\n\nbuild features\n", DPT_VERSION, DPT_GIT_HASH);
    printf("  oneDNN:     %s\n", DPT_HAVE_DNNL ? "yes" : "no");
    if (DPT_HAVE_CUDA)
        printf("  CUDA:       backend \"cuda\" compiled, %d device%s%s%s\n", ndev,
               ndev == 1 ? "" : "s", ndev ? "" : ": ", ndev ? "" : why);
    else
        printf("  CUDA:       no (%s)\n", why);
    printf("  NCCL:       %s\n", DPT_HAVE_NCCL ? "yes" : "no");
    printf("\nwhat each selector flag accepts (usable here: yes, or why not)\n");
    printf("  --allreduce\n");
    for (int a = 0; a < DPT_COLL_ALGO_COUNT; a++) {
        const char *no = NULL;
        if (a == DPT_COLL_ALGO_NCCL)
            no = !DPT_HAVE_NCCL ? "this build has no NCCL" : ndev == 0 ? "no CUDA device" : NULL;
        printf("    %-6s %-4s needs %s%s%s\n", dpt_coll_algo_name((dpt_coll_algo_t)a),
               no ? "no" : "yes", dpt_coll_algo_needs((dpt_coll_algo_t)a), no ? ": " : "",
               no ? no : "");
    }
    printf("  --backend, --device\n");
    const char *list = dpt_backend_list();
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        char name[32];
        snprintf(name, sizeof name, "%.*s", (int)len, p);
        const dpt_backend_ops_t *ops = dpt_backend_find(name);
        int usable = ops && (!ops->on_device || ndev > 0);
        printf("    %-6s %s%s%s\n", name, usable ? "yes" : "no", usable ? "" : ": ",
               usable ? "" : why);
        p += len + (p[len] == ',');
    }
    printf("  --compress\n   ");
    for (const char *c = dpt_codec_list(); *c;) {
        size_t len = strcspn(c, ",");
        printf(" %.*s", (int)len, c);
        c += len + (c[len] == ',');
    }
    printf("\n");
    printf("  --precision\n");
    for (int k = 0; k < DPT_PREC_COUNT_; k++)
        printf("    %-6s %s\n", dpt_precision_name((dpt_precision_t)k),
               k == DPT_PREC_FP32 ? "yes" : ndev > 0 ? "yes (--device cuda)"
                                                     : "no: needs --device cuda");
    printf("  --schedule\n   ");
    for (int k = 0; strcmp(dpt_schedule_name((dpt_sched_kind_t)k), "?"); k++)
        printf(" %s", dpt_schedule_name((dpt_sched_kind_t)k));
    printf("\n");
    dpt_cli_print_choices(stdout);
    printf("\nenvironment variables read (value here, or unset)\n");
    dpt_env_print(stdout);
    return 0;
}

/* SIGTERM, SIGINT, SIGUSR1 (Slurm's warning before the time limit): finish the running step,
 * checkpoint and exit with DPT_EXIT_STOPPED; a second signal exits at once (128 + signal).
 * The signals are blocked before MPI_Init, so every thread started later (MPI's, the loader's,
 * oneDNN's) inherits the mask, and one thread takes them in sigwait. A handler alone would push
 * its frame onto whatever thread it interrupts: a few hundred SIGUSR1 during training corrupted
 * the heap inside oneDNN's kernels within a second (glibc "corrupted size vs. prev_size", or
 * SIGSEGV in malloc). The handler stays for threads that libraries start before main (OpenBLAS
 * starts its workers at load time unless OPENBLAS_NUM_THREADS=1; they idle, as dptrain keeps
 * OpenBLAS single-threaded): without it a signal the kernel hands to one of them kills the
 * process by the default action. */
#define DPT_EXIT_STOPPED 75   /* EX_TEMPFAIL: stopped on request, resume to continue */
static atomic_int stop_requested;
static atomic_int stop_rank = -1;   /* this process's rank once MPI is up: rank 0 reports */
static sigset_t stop_signals;

static void say(const char *s)   /* async-signal-safe */
{
    if (write(STDERR_FILENO, s, strlen(s)) < 0) {
        /* nothing to do: the stop goes ahead without the line */
    }
}

/* Async-signal-safe: called by the sigwait thread and by the handler. */
static void on_stop_signal(int sig)
{
    if (atomic_exchange(&stop_requested, 1))
        _exit(128 + sig);
    if (atomic_load(&stop_rank) > 0)
        return;
    say("dptrain train: ");
    say(sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "SIGUSR1");
    say(": stopping after the running step (a second signal exits at once)\n");
}

static void *stop_signal_thread(void *arg)
{
    (void)arg;
    for (;;) {
        int sig = 0;
        if (sigwait(&stop_signals, &sig) == 0)
            on_stop_signal(sig);
    }
    return NULL;
}

/* Before MPI_Init. Without the thread the handler takes the signals on the calling thread. */
static void start_stop_signal_thread(void)
{
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGUSR1);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    pthread_t t;
    if (pthread_create(&t, NULL, stop_signal_thread, NULL) == 0)
        pthread_detach(t);
    else
        pthread_sigmask(SIG_UNBLOCK, &stop_signals, NULL);
}

/* train: flags are parsed before MPI starts (usage errors exit 2 on every rank alike). Errors
 * every rank returned together end with MPI_Finalize and status 1; an error of one rank while
 * the others may wait in a collective ends the whole job with MPI_Abort, naming the rank. */
static int cmd_train(dpt_cli_opts_t *o)
{
    int provided = 0;
    start_stop_signal_thread();
    MPI_Init_thread(NULL, NULL, o->cfg.watchdog_s > 0 ? MPI_THREAD_MULTIPLE : MPI_THREAD_SERIALIZED,
                    &provided);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (provided < MPI_THREAD_SERIALIZED && o->cfg.overlap) {
        if (rank == 0)
            fprintf(stderr, "dptrain train: MPI gives no MPI_THREAD_SERIALIZED: all-reduce after "
                    "backward (--no-overlap)\n");
        o->cfg.overlap = 0;
    }
    if (provided < MPI_THREAD_MULTIPLE && o->cfg.watchdog_s > 0 && size > 1 && rank == 0)
        fprintf(stderr, "dptrain train: MPI gives no MPI_THREAD_MULTIPLE: no --watchdog\n");
    atomic_store(&stop_rank, rank);
    o->cfg.stop_flag = &stop_requested;
    /* the flags ranks compare at start-up and checkpoints record, read off the flag table */
    static char agree[16384], run[16384], all[16384];
    dpt_cli_flag_text(o, DPT_SCOPE_AGREE, agree, sizeof agree);
    dpt_cli_flag_text(o, DPT_SCOPE_RUN, run, sizeof run);
    dpt_cli_flag_text(o, DPT_SCOPE_ALL, all, sizeof all);
    o->cfg.agree_flags = agree;
    o->cfg.run_flags = run;
    o->cfg.all_flags = all;
    dpt_train_result_t res;
    dpt_status_t st = dpt_train(&o->cfg, &res);
    if (st == DPT_OK) {
        MPI_Finalize();
        return res.stopped ? DPT_EXIT_STOPPED : 0;
    }
    char what[64];
    if (size > 1)
        snprintf(what, sizeof what, "train (rank %d of %d)", rank, size);
    else
        snprintf(what, sizeof what, "train");
    if (res.collective_error) {   /* every rank returned: no abort */
        if (res.collective_error == 1 || rank == 0)
            fail(what, st);
        MPI_Finalize();
        return 1;
    }
    fail(what, st);
    fprintf(stderr, "dptrain train: rank %d failed; aborting all %d ranks\n", rank, size);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
}

/* bench allreduce: parse first (usage errors exit 2 on every rank alike), then MPI. */
static int cmd_bench_allreduce(int argc, char **argv)
{
    dpt_cli_opts_t o;
    int rc = dpt_cli_parse(&o, CMD_BENCH_AR, argc, argv);
    if (rc)
        return rc;
    o.ar.deterministic = o.cfg.deterministic;
    o.ar.compress = o.cfg.compress;
    int provided;
    MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    long wrong = 0;
    dpt_status_t st = dpt_bench_allreduce(&o.ar, stdout, &wrong);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (st == DPT_ERR_INVALID_ARG) {   /* found before any message, alike on every rank */
        if (rank == 0)
            fail("bench allreduce", st);
        MPI_Finalize();
        return 2;
    }
    if (st != DPT_OK) {   /* the other ranks may be waiting in a collective: abort them all */
        char what[64];
        snprintf(what, sizeof what, "bench allreduce (rank %d)", rank);
        fail(what, st);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Finalize();
    if (wrong && rank == 0)
        fprintf(stderr, "dptrain bench allreduce: %ld wrong elements\n", wrong);
    return wrong ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "help")) {   /* help train, help bench allreduce, ... */
        static const struct { const char *name, *sub; int cmd; } cmds[] = {
            {"train", NULL, CMD_TRAIN}, {"eval", NULL, CMD_EVAL}, {"prepare", NULL, CMD_PREPARE},
            {"bench", "train", CMD_BENCH}, {"bench", "allreduce", CMD_BENCH_AR}};
        for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
            if (!strcmp(argv[2], cmds[i].name)
                && (!cmds[i].sub || (argc >= 4 && !strcmp(argv[3], cmds[i].sub)))) {
                dpt_cli_print_help(cmds[i].cmd);
                return 0;
            }
        fprintf(stderr, "dptrain help: unknown command '%s' (see 'dptrain help')\n", argv[2]);
        return 2;
    }
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        print_main_help();
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("dptrain %s (git %s)\n", DPT_VERSION, DPT_GIT_HASH);
        return 0;
    }
    dpt_cli_opts_t o;
    const char *sub = argv[1];
    if (!strcmp(sub, "info"))
        return cmd_info();
    if (!strcmp(sub, "train")) {
        int rc = dpt_cli_parse(&o, CMD_TRAIN, argc - 2, argv + 2);
        if (rc)
            return rc;
        return cmd_train(&o);
    }
    if (!strcmp(sub, "eval")) {
        int rc = dpt_cli_parse(&o, CMD_EVAL, argc - 2, argv + 2);
        if (rc)
            return rc;
        if (!o.weights) {
            dpt_cli_usage_error(CMD_EVAL, "--weights FILE is required%s%s", "", "");
            return 2;
        }
        /* under mpirun the ranks shard the test set, and rank 0 prints the one result */
        int provided, rank = 0;
        MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        dpt_train_result_t res;
        dpt_status_t st = dpt_evaluate(&o.cfg, o.weights, &res);
        if (st == DPT_OK && rank == 0)
            printf("test accuracy: %.2f%% (%ld/%ld)  test loss %.4f  param_crc %08x\n",
                   100.0 * res.test_acc, res.test_correct, res.test_total, res.test_loss,
                   res.param_crc);
        rc = st == DPT_OK ? 0 : rank == 0 ? fail("eval", st) : 1;
        MPI_Finalize();
        return rc;
    }
    if (!strcmp(sub, "prepare")) {
        int rc = dpt_cli_parse(&o, CMD_PREPARE, argc - 2, argv + 2);
        if (rc)
            return rc;
        o.prep.seed = o.cfg.seed;
        o.prep.threads = o.cfg.threads > 0 ? o.cfg.threads : omp_get_max_threads();
        o.prep.out = stdout;
        o.prep.err = stderr;
        if ((o.resize && dpt_resize_parse(o.resize, &o.prep.resize) != DPT_OK) ||
            dpt_prepare_check(&o.prep) != DPT_OK) {
            dpt_cli_usage_error(CMD_PREPARE, "%s%s", dpt_error_get(), "");
            return 2;
        }
        dpt_prepare_result_t pr;
        dpt_status_t st = dpt_prepare(&o.prep, &pr);
        return st == DPT_OK ? 0 : fail("prepare", st);
    }
    if (!strcmp(sub, "bench") && argc >= 3 && !strcmp(argv[2], "allreduce"))
        return cmd_bench_allreduce(argc - 3, argv + 3);
    if (!strcmp(sub, "bench")) {
        if (argc < 3 || strcmp(argv[2], "train")) {
            fprintf(stderr, "dptrain bench: expected 'train' or 'allreduce' (see 'dptrain help')\n");
            return 2;
        }
        int rc = dpt_cli_parse(&o, CMD_BENCH, argc - 3, argv + 3);
        if (rc)
            return rc;
        dpt_bench_result_t b;
        b.profile = o.profile;
        dpt_status_t st = dpt_bench_train(&o.cfg, o.warmup_steps, o.bench_steps, &b);
        if (st != DPT_OK)
            return fail("bench train", st);
        printf("{\"bench\":\"train\",\"impl\":\"dptrain\",\"model\":\"%s\",\"backend\":\"%s\","
               "\"precision\":\"%s\",\"layout\":\"%s\",\"winograd\":%s,\"batch\":%d,"
               "\"threads\":%d,\"steps\":%d,"
               "\"img_s\":%.1f,\"img_s_min\":%.1f,\"img_s_max\":%.1f,\"gflops\":%.2f}\n",
               o.cfg.model_path, o.cfg.backend, dpt_precision_name(o.cfg.precision),
               o.cfg.blocked_layout ? "blocked" : "nchw",
               o.cfg.conv_winograd ? "true" : "false", o.cfg.batch,
               o.cfg.threads > 0 ? o.cfg.threads : omp_get_max_threads(), b.steps, b.img_s_median,
               b.img_s_min, b.img_s_max, b.gflops);
        if (o.profile)
            fputs(b.report, stderr);
        return 0;
    }
    fprintf(stderr, "dptrain: unknown command '%s' (see 'dptrain help')\n", sub);
    return 2;
}
