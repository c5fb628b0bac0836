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
#include "dptrain/config.h"
#include "dptrain/dataset.h"
#include "dptrain/log.h"
#include "dptrain/optim.h"
#include "dptrain/prepare.h"
#include "dptrain/trainer.h"
#if DPT_HAVE_CUDA
#include "dptrain/cuda.h"
#endif

enum { CMD_TRAIN = 1, CMD_EVAL = 2, CMD_BENCH = 4, CMD_BENCH_AR = 8, CMD_PREPARE = 16 };
enum { T_INT, T_U64, T_DOUBLE, T_FLOAT, T_STR, T_BOOL, T_SCHED, T_LAYOUT, T_SIZE, T_PREC,
       T_LSCALE };

typedef struct opts {
    dpt_train_config_t cfg;
    const char *weights;
    const char *config_file;
    int warmup_steps, bench_steps;
    int profile;
    dpt_bench_coll_config_t ar;   /* bench allreduce */
    dpt_prepare_config_t prep;    /* prepare */
    const char *resize;           /* prepare --resize, parsed by dpt_resize_parse */
    int help;
} opts_t;

typedef struct option_def {
    const char *name;
    int type;
    size_t off;          /* offset into opts_t */
    double lo, hi;       /* numeric range */
    int cmds;            /* subcommands that accept it */
    const char *arg;     /* argument name in --help */
    const char *help;
} option_def_t;

#define C(field) offsetof(opts_t, cfg.field)
#define O(field) offsetof(opts_t, field)
#define ALL (CMD_TRAIN | CMD_EVAL | CMD_BENCH)

static const option_def_t options[] = {
    {"model", T_STR, C(model_path), 0, 0, ALL, "FILE", "model definition (default models/fmnist-cnn.cfg)"},
    {"data", T_STR, C(data_spec), 0, 0, CMD_TRAIN | CMD_EVAL, "SPEC",
     "fashion-mnist[:DIR] | mnist:DIR | cifar10:DIR | shards:DIR (from dptrain prepare) | "
     "synthetic:N:C:H:W:K (default fashion-mnist, "
     "read from " DPT_FASHION_MNIST_DIR ")"},
    {"weights", T_STR, O(weights), 0, 0, CMD_EVAL, "FILE", "weights written by train --save (required)"},
    {"backend", T_STR, C(backend), 0, 0, ALL, "NAME", "compute backend: cpu (oneDNN + OpenBLAS), ref (plain C) or cuda (GPU; CUDA builds)"},
    {"device", T_STR, C(backend), 0, 0, ALL, "cpu|cuda", "alias of --backend: cuda trains on the GPU (device = node-local rank modulo the GPUs)"},
    {"precision", T_PREC, C(precision), 0, 0, ALL, "fp32|bf16|fp16", "cuda: activation/compute precision, float32 master weights (default fp32; fp16 uses loss scaling)"},
    {"loss-scale", T_LSCALE, C(loss_scale), 0, 0, CMD_TRAIN | CMD_BENCH, "dynamic|N", "cuda: loss scaling: dynamic (2^16, halved on overflow with the step skipped, doubled after 2000 good steps; the fp16 default) or a fixed N (default for fp32/bf16: none)"},
    {"threads", T_INT, C(threads), 0, 1024, ALL | CMD_PREPARE, "T", "compute (prepare: decode) threads per process (0 = OMP_NUM_THREADS or all cores)"},
    {"winograd", T_BOOL, C(conv_winograd), 0, 0, ALL, NULL, "cpu: Winograd for 3x3 stride-1 convolutions where oneDNN has it (default on; --no-winograd)"},
    {"layout", T_LAYOUT, C(blocked_layout), 0, 0, ALL, "blocked|nchw",
     "cpu backend activation layout between layers (default blocked)"},
    {"fuse-bn-relu", T_BOOL, C(fuse_bn_relu), 0, 0, ALL, NULL, "fuse batchnorm + relu (default on; --no-fuse-bn-relu)"},
    {"epochs", T_INT, C(epochs), 1, 100000, CMD_TRAIN, "N", "training epochs (default 8)"},
    {"batch", T_INT, C(batch), 1, 1 << 20, ALL, "B", "batch size per rank (default 128)"},
    {"lr", T_DOUBLE, C(lr), 0, 1e6, CMD_TRAIN, "X", "peak learning rate (default 0.1)"},
    {"warmup-epochs", T_DOUBLE, C(warmup_epochs), 0, 1e5, CMD_TRAIN, "W", "linear warmup length in epochs (default 0.5)"},
    {"schedule", T_SCHED, C(schedule), 0, 0, CMD_TRAIN, "NAME",
     "LR after warmup: cosine (default), linear, step, onecycle, constant"},
    {"final-lr-frac", T_DOUBLE, C(final_lr_frac), 0, 1, CMD_TRAIN, "F", "cosine/linear: final LR as a fraction of --lr (default 0)"},
    {"step-epochs", T_DOUBLE, C(step_epochs), 0.001, 1e5, CMD_TRAIN, "E", "step schedule: epochs between decays (default 3)"},
    {"step-gamma", T_DOUBLE, C(step_gamma), 0, 1, CMD_TRAIN, "G", "step schedule: decay factor (default 0.1)"},
    {"onecycle-peak", T_DOUBLE, C(onecycle_peak), 0.001, 0.999, CMD_TRAIN, "F", "onecycle: fraction of training at the peak (default 0.25)"},
    {"optimizer", T_STR, C(sgd.lars), 0, 0, CMD_TRAIN, "NAME", "sgd (default) or lars (SGD with LARS layer-wise trust ratios; BN and biases excluded)"},
    {"lars-eta", T_FLOAT, C(sgd.lars_eta), 1e-6, 1, CMD_TRAIN, "ETA", "LARS trust coefficient (default 0.001)"},
    {"allreduce", T_STR, C(allreduce), 0, 0, CMD_TRAIN, "NAME",
     "gradient all-reduce across ranks: auto (default: per bucket, by the cost model calibrated at start-up), ring, tree, rd, rhd, shm, hier, mpi, nccl (--device cuda, NCCL builds)"},
    {"bucket-mb", T_DOUBLE, C(bucket_mb), 0.004, 4096, CMD_TRAIN, "M", "gradient bucket size in MiB (default 25; the first bucket is min(1, M))"},
    {"overlap", T_BOOL, C(overlap), 0, 0, CMD_TRAIN, NULL, "all-reduce buckets on a thread while backward runs (default on; --no-overlap: after backward)"},
    {"sync-bn", T_BOOL, C(sync_bn), 0, 0, CMD_TRAIN, NULL, "batch-norm statistics over all ranks' batches (default: each rank's own; running statistics are averaged before eval and save either way)"},
    {"checkpoint-dir", T_STR, C(checkpoint_dir), 0, 0, CMD_TRAIN, "DIR", "write checkpoints (ckpt-<step>.dpt, 'latest') here: at every epoch end, every --checkpoint-every steps and when stopped by a signal"},
    {"checkpoint-every", T_INT, C(checkpoint_every), 0, INT_MAX, CMD_TRAIN, "N", "also checkpoint every N steps (default 0: epoch ends and stops only)"},
    {"keep-checkpoints", T_INT, C(keep_checkpoints), 1, 1000000, CMD_TRAIN, "K", "keep the newest K checkpoints (default 3)"},
    {"resume", T_STR, C(resume), 0, 0, CMD_TRAIN, "auto|FILE", "continue from a checkpoint: auto = the newest valid one in --checkpoint-dir (skipping corrupt ones; a fresh start if none), or FILE"},
    {"watchdog", T_DOUBLE, C(watchdog_s), 0, 1e7, CMD_TRAIN, "SECONDS", "stall inspector: a collective waiting longer than this aborts every rank, naming the ranks that did not reach it (default 300; 0 = off)"},
    {"check-collectives", T_BOOL, C(check_collectives), 0, 0, CMD_TRAIN, NULL, "debug: before every collective, compare a fingerprint (sequence number, kind, size, type, op) across ranks and stop naming the rank that differs"},
    {"nan-policy", T_STR, C(nan_skip), 0, 0, CMD_TRAIN, "abort|skip", "a NaN/Inf loss or gradient: stop every rank naming the step and rank (abort, default) or skip that step's update (skip)"},
    {"accum", T_INT, C(accum), 1, 4096, CMD_TRAIN, "K", "gradient accumulation: K micro-batches of --batch per optimizer step, one all-reduce (default 1)"},
    {"momentum", T_FLOAT, C(sgd.momentum), 0, 0.9999, CMD_TRAIN, "M", "SGD momentum (default 0.9)"},
    {"nesterov", T_BOOL, C(sgd.nesterov), 0, 0, CMD_TRAIN, NULL, "Nesterov momentum (default on; --no-nesterov)"},
    {"weight-decay", T_FLOAT, C(sgd.weight_decay), 0, 1, CMD_TRAIN, "WD",
     "L2 weight decay on conv/fc weights, never on BN or bias (default 5e-4)"},
    {"label-smoothing", T_FLOAT, C(label_smoothing), 0, 0.999, CMD_TRAIN, "E", "label smoothing (default 0.1)"},
    {"seed", T_U64, C(seed), 0, 0, ALL | CMD_PREPARE, "S", "seed for init, shuffle and augmentation; prepare: the train/val draw (default 1)"},
    {"crop-pad", T_INT, C(crop_pad), 0, 64, CMD_TRAIN, "P", "random crop after padding by P pixels (default 0 = off)"},
    {"flip", T_BOOL, C(flip), 0, 0, CMD_TRAIN, NULL, "random horizontal flip (default on; --no-flip)"},
    {"random-resized-crop", T_BOOL, C(random_resized_crop), 0, 0, CMD_TRAIN, NULL,
     "random crop of area --rrc-min-scale..1 and aspect 3/4..4/3, resized back (default off)"},
    {"rrc-min-scale", T_FLOAT, C(rrc_min_scale), 0.05, 1, CMD_TRAIN, "F", "smallest area fraction of --random-resized-crop (default 0.35)"},
    {"input", T_STR, O(prep.input_dir), 0, 0, CMD_PREPARE, "DIR",
     "JPEG folder: cat.N.jpg/dog.N.jpg files and/or one folder per class (Cat/, Dog/) (required)"},
    {"output", T_STR, O(prep.output_dir), 0, 0, CMD_PREPARE, "DIR", "where shard-*.dps and manifest.txt go; created if missing (required)"},
    {"size", T_INT, O(prep.size), 8, 1024, CMD_PREPARE, "S", "output images are S x S RGB (required; models/dvc-resnet.cfg wants 64)"},
    {"resize", T_STR, O(resize), 0, 0, CMD_PREPARE, "MODE",
     "shorter-crop (shorter side to S, center crop; default) or whole (squash to S x S)"},
    {"val-fraction", T_DOUBLE, O(prep.val_fraction), 0, 0.9, CMD_PREPARE, "F", "validation share of every class (default 0.1)"},
    {"force", T_BOOL, O(prep.force), 0, 0, CMD_PREPARE, NULL, "rebuild even if the manifest says the output is up to date"},
    {"prefetch", T_BOOL, C(prefetch), 0, 0, CMD_TRAIN | CMD_EVAL, NULL, "assemble the next batch on loader worker threads during the step (default on; --no-prefetch: in the training thread)"},
    {"loader-workers", T_INT, C(loader_workers), 0, 64, CMD_TRAIN | CMD_EVAL, "N", "threads assembling batches with --prefetch (default 0 = automatic: a quarter of the cores, 1 to 4; the batches are the same for any N)"},
    {"metrics", T_STR, C(metrics_path), 0, 0, CMD_TRAIN, "FILE", "write JSON-lines metrics (step, epoch, final records)"},
    {"save", T_STR, C(save_path), 0, 0, CMD_TRAIN, "FILE", "write the trained weights (atomically) at the end"},
    {"progress", T_BOOL, C(progress), 0, 0, CMD_TRAIN, NULL,
     "force the progress bar on (--progress) or plain lines (--no-progress); default: bar on a terminal"},
    {"log-every", T_INT, C(log_every), 1, 1 << 30, CMD_TRAIN, "N", "steps between step metrics and plain progress lines (default 50)"},
    {"max-steps", T_INT, C(max_steps), 0, INT_MAX, CMD_TRAIN, "N", "stop after N steps in total (default 0 = all epochs)"},
    {"eval", T_BOOL, C(eval_every_epoch), 0, 0, CMD_TRAIN, NULL, "evaluate on the test split after every epoch (default on)"},
    {"quiet", T_BOOL, C(quiet), 0, 0, CMD_TRAIN, NULL, "print only the final line"},
    {"warmup-steps", T_INT, O(warmup_steps), 0, 100000, CMD_BENCH, "N", "bench train: untimed steps first (default 5)"},
    {"steps", T_INT, O(bench_steps), 1, 100000, CMD_BENCH, "N", "bench train: timed steps (default 30)"},
    {"profile", T_BOOL, O(profile), 0, 0, CMD_BENCH, NULL, "bench train: print per-layer forward/backward times to stderr"},
    {"algos", T_STR, O(ar.algos), 0, 0, CMD_BENCH_AR, "LIST", "comma-separated algorithms (default ring,tree,rd,rhd,shm,auto,mpi); NAME0copy: NAME on a buffer inside the shm window, in the same run"},
    {"min-bytes", T_SIZE, O(ar.min_bytes), 0, 0, CMD_BENCH_AR, "N", "smallest message, K/M/G suffixes (default 4)"},
    {"max-bytes", T_SIZE, O(ar.max_bytes), 0, 0, CMD_BENCH_AR, "N", "largest message (default 256M)"},
    {"factor", T_INT, O(ar.factor), 2, 1024, CMD_BENCH_AR, "F", "size multiplier between rows (default 4)"},
    {"iters", T_INT, O(ar.iters), 0, 1000000, CMD_BENCH_AR, "N", "calls per timed block (default 0 = about 30 ms per block)"},
    {"reps", T_INT, O(ar.reps), 1, 64, CMD_BENCH_AR, "N", "timed blocks per size; the median is reported (default 5)"},
    {"json", T_BOOL, O(ar.json), 0, 0, CMD_BENCH_AR, NULL, "JSON lines instead of the table"},
    {"dtype", T_STR, O(ar.dtype), 0, 0, CMD_BENCH_AR, "T", "f32, bf16 or f16 (default f32)"},
    {"op", T_STR, O(ar.op), 0, 0, CMD_BENCH_AR, "OP", "sum or avg (default sum)"},
    {"deterministic", T_BOOL, C(deterministic), 0, 0, CMD_TRAIN | CMD_BENCH_AR, NULL, "rank-ordered reductions: the same bits for every all-reduce algorithm"},
    {"window", T_BOOL, O(ar.window), 0, 0, CMD_BENCH_AR, NULL, "reduce a buffer inside the shm window (zero-copy shm; others treat it as any buffer)"},
    {"segment-bytes", T_SIZE, O(ar.segment_bytes), 0, 0, CMD_BENCH_AR, "N", "pipelining segment of ring and tree (default 256K)"},
    {"config", T_STR, O(config_file), 0, 0, ALL | CMD_BENCH_AR | CMD_PREPARE, "FILE", "read flags from FILE (lines 'name = value'); command-line flags win"},
    {"help", T_BOOL, O(help), 0, 0, ALL | CMD_BENCH_AR | CMD_PREPARE, NULL, "this help"},
};
#define N_OPTIONS (sizeof options / sizeof options[0])

static const char *cmd_name(int cmd)
{
    return cmd == CMD_TRAIN ? "train" : cmd == CMD_EVAL ? "eval"
           : cmd == CMD_BENCH ? "bench train" : cmd == CMD_PREPARE ? "prepare"
           : "bench allreduce";
}

static void usage_error(int cmd, const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "dptrain %s: ", cmd_name(cmd));
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (see 'dptrain %s --help')\n", cmd_name(cmd));
}

static void print_help(int cmd)
{
    static const char *what[] = {
        [CMD_TRAIN] = "train a model (single process; ranks come with mpirun in a later build)",
        [CMD_EVAL] = "evaluate saved weights on the test split",
        [CMD_BENCH] = "time training steps on a fixed synthetic batch (img/s, GFLOP/s)",
        [CMD_BENCH_AR] = "every all-reduce algorithm and MPI_Allreduce side by side, verified\n"
                         "  (run under mpirun: mpirun -np 4 build/dptrain bench allreduce)",
        [CMD_PREPARE] = "turn a folder of JPEGs into zstd shards for --data shards:DIR\n"
                        "  (bad files are reported and skipped; an unchanged re-run does nothing)",
    };
    printf("usage: dptrain %s [flags]\n  %s\n\nflags:\n", cmd_name(cmd), what[cmd]);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const option_def_t *o = &options[i];
        if (!(o->cmds & cmd))
            continue;
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        printf("  %-26s %s\n", left, o->help);
    }
}

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
           "  info         build features and backends\n"
           "  help         this text\n");
}

/* Set one option from its text value. Returns 0 or prints an error and returns 2. */
static int set_option(opts_t *o, int cmd, const option_def_t *d, const char *val, int negated)
{
    void *p = (char *)o + d->off;
    char *end;
    errno = 0;
    if (!(d->cmds & cmd)) {
        usage_error(cmd, "flag '--%s' does not apply here%s", d->name, "");
        return 2;
    }
    if (d->type == T_BOOL) {
        int v = !negated;
        if (val) {
            if (!strcmp(val, "1") || !strcmp(val, "true") || !strcmp(val, "yes") || !strcmp(val, "on"))
                v = !negated;
            else if (!strcmp(val, "0") || !strcmp(val, "false") || !strcmp(val, "no") || !strcmp(val, "off"))
                v = negated;
            else {
                usage_error(cmd, "--%s: '%s' is not a boolean (1/0, true/false)", d->name, val);
                return 2;
            }
        }
        *(int *)p = v;
        return 0;
    }
    if (!val) {
        usage_error(cmd, "--%s needs a value%s", d->name, "");
        return 2;
    }
    if (negated) {
        usage_error(cmd, "unknown flag '--no-%s'%s", d->name, "");
        return 2;
    }
    char range[96];
    snprintf(range, sizeof range, "out of range [%g, %g]", d->lo, d->hi);
    switch (d->type) {
    case T_INT: {
        long v = strtol(val, &end, 10);
        if (errno || end == val || *end) {
            usage_error(cmd, "--%s: '%s' is not an integer", d->name, val);
            return 2;
        }
        if (v < d->lo || v > d->hi) {
            char msg[160];
            snprintf(msg, sizeof msg, "%ld is %s", v, range);
            usage_error(cmd, "--%s: %s", d->name, msg);
            return 2;
        }
        if (d->off == C(max_steps) || d->off == C(checkpoint_every))
            *(long *)p = v;
        else
            *(int *)p = (int)v;
        return 0;
    }
    case T_SIZE: {
        unsigned long long v = 0;
        if (val[0] != '-')
            v = strtoull(val, &end, 10);
        int shift = 0;
        if (val[0] != '-' && end != val && *end) {
            shift = (*end == 'K' || *end == 'k') ? 10 : (*end == 'M' || *end == 'm') ? 20
                    : (*end == 'G' || *end == 'g') ? 30 : -1;
            end += shift > 0;
        }
        if (val[0] == '-' || errno || end == val || *end || shift < 0 || v > (1ULL << 40) >> shift) {
            usage_error(cmd, "--%s: '%s' is not a size (bytes, optional K, M or G)", d->name, val);
            return 2;
        }
        *(size_t *)p = (size_t)(v << shift);
        return 0;
    }
    case T_U64: {
        if (val[0] == '-') {
            usage_error(cmd, "--%s: '%s' is not a non-negative integer", d->name, val);
            return 2;
        }
        unsigned long long v = strtoull(val, &end, 0);
        if (errno || end == val || *end) {
            usage_error(cmd, "--%s: '%s' is not a non-negative integer", d->name, val);
            return 2;
        }
        *(uint64_t *)p = v;
        return 0;
    }
    case T_DOUBLE:
    case T_FLOAT: {
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v)) {
            usage_error(cmd, "--%s: '%s' is not a number", d->name, val);
            return 2;
        }
        if (v < d->lo || v > d->hi) {
            char msg[160];
            snprintf(msg, sizeof msg, "%g is %s", v, range);
            usage_error(cmd, "--%s: %s", d->name, msg);
            return 2;
        }
        if (d->type == T_FLOAT)
            *(float *)p = (float)v;
        else
            *(double *)p = v;
        return 0;
    }
    case T_STR:
        if (!*val) {
            usage_error(cmd, "--%s: empty value%s", d->name, "");
            return 2;
        }
        if (!strcmp(d->name, "optimizer")) {
            if (strcmp(val, "sgd") && strcmp(val, "lars")) {
                usage_error(cmd, "--optimizer: '%s' is not available (sgd, lars)%s", val, "");
                return 2;
            }
            *(int *)p = !strcmp(val, "lars");
            return 0;
        }
        if (!strcmp(d->name, "nan-policy")) {
            if (strcmp(val, "abort") && strcmp(val, "skip")) {
                usage_error(cmd, "--nan-policy: '%s' is not abort or skip%s", val, "");
                return 2;
            }
            *(int *)p = !strcmp(val, "skip");
            return 0;
        }
        if (!strcmp(d->name, "allreduce")) {
            dpt_coll_algo_t a;
            if (dpt_coll_algo_from_name(val, &a) != DPT_OK) {
                usage_error(cmd, "%s%s", dpt_error_get(), "");
                return 2;
            }
        }
        *(const char **)p = val;
        return 0;
    case T_SCHED:
        if (dpt_schedule_parse(val, (dpt_sched_kind_t *)p) != DPT_OK) {
            usage_error(cmd, "--schedule: unknown schedule '%s' (cosine, linear, step, onecycle, "
                        "constant)%s", val, "");
            return 2;
        }
        return 0;
    case T_PREC:
        if (dpt_precision_parse(val, (dpt_precision_t *)p) != DPT_OK) {
            usage_error(cmd, "--precision: '%s' is not fp32, bf16 or fp16%s", val, "");
            return 2;
        }
        return 0;
    case T_LSCALE: {
        if (!strcmp(val, "dynamic")) {
            *(double *)p = -1;
            return 0;
        }
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v) || v < 1 || v > 16777216.0) {
            usage_error(cmd, "--loss-scale: '%s' is not 'dynamic' or a number in [1, 2^24]%s",
                        val, "");
            return 2;
        }
        *(double *)p = v;
        return 0;
    }
    case T_LAYOUT:
        if (!strcmp(val, "blocked"))
            *(int *)p = 1;
        else if (!strcmp(val, "nchw"))
            *(int *)p = 0;
        else {
            usage_error(cmd, "--layout: '%s' is not blocked or nchw%s", val, "");
            return 2;
        }
        return 0;
    }
    return 2;
}

static const option_def_t *find_option(const char *name, int *negated)
{
    *negated = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < N_OPTIONS; i++)
            if (!strcmp(options[i].name, name) && (!pass || options[i].type == T_BOOL))
                return &options[i];
        if (strncmp(name, "no-", 3))
            break;
        name += 3;
        *negated = 1;
    }
    return NULL;
}

/* Parse argv flags ("--name value", "--name=value", "--flag", "--no-flag"). */
static int parse_args(opts_t *o, int cmd, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) || !a[2]) {
            usage_error(cmd, "unexpected argument '%s'%s", a, "");
            return 2;
        }
        char name[64];
        const char *eq = strchr(a + 2, '=');
        size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (len >= sizeof name) {
            usage_error(cmd, "unknown flag '%s'%s", a, "");
            return 2;
        }
        memcpy(name, a + 2, len);
        name[len] = '\0';
        int neg;
        const option_def_t *d = find_option(name, &neg);
        if (!d) {
            usage_error(cmd, "unknown flag '--%s'%s", name, "");
            return 2;
        }
        const char *val = eq ? eq + 1 : NULL;
        if (!val && d->type != T_BOOL) {
            if (i + 1 >= argc) {
                usage_error(cmd, "--%s needs a value%s", d->name, "");
                return 2;
            }
            val = argv[++i];
        }
        int rc = set_option(o, cmd, d, val, neg);
        if (rc)
            return rc;
    }
    return 0;
}

/* Config file: "name = value" or "name value" per line, '#' comments, names without "--". The
 * strings live until exit (they are referenced by the config). */
static int parse_config_file(opts_t *o, int cmd, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "dptrain %s: --config: %s: %s\n", cmd_name(cmd), path, strerror(errno));
        return 1;
    }
    char line[1024];
    int ln = 0, rc = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        ln++;
        char *h = strchr(line, '#');
        if (h)
            *h = '\0';
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        char *e = s + strlen(s);
        while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
            *--e = '\0';
        if (!*s)
            continue;
        if (!strncmp(s, "--", 2))
            s += 2;
        size_t klen = strcspn(s, " \t=");
        char *v = s + klen;
        while (*v == ' ' || *v == '\t' || *v == '=')
            v++;
        s[klen] = '\0';
        int neg;
        const option_def_t *d = find_option(s, &neg);
        if (!d || !strcmp(s, "config")) {
            fprintf(stderr, "dptrain %s: %s:%d: unknown flag '%s'\n", cmd_name(cmd), path, ln, s);
            rc = 2;
            break;
        }
        char *val = *v ? strdup(v) : NULL;   /* kept for the life of the process */
        if (set_option(o, cmd, d, val, neg)) {
            fprintf(stderr, "  (in %s:%d)\n", path, ln);
            rc = 2;
        }
    }
    fclose(f);
    return rc;
}

static int parse_command(opts_t *o, int cmd, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    dpt_train_config_default(&o->cfg);
    o->warmup_steps = 5;
    o->bench_steps = 30;
    o->ar.min_bytes = 4;
    o->ar.max_bytes = (size_t)256 << 20;
    o->ar.factor = 4;
    o->ar.reps = 5;
    dpt_prepare_config_default(&o->prep);
    /* The config file first, so that command-line flags win. */
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            print_help(cmd);
            exit(0);
        }
        const char *path = NULL;
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            path = argv[i + 1];
        else if (!strncmp(argv[i], "--config=", 9))
            path = argv[i] + 9;
        if (path) {
            int rc = parse_config_file(o, cmd, path);
            if (rc)
                return rc;
        }
    }
    return parse_args(o, cmd, argc, argv);
}

static int fail(const char *what, dpt_status_t st)
{
    const char *msg = dpt_error_get();
    fprintf(stderr, "dptrain %s: error: %s\n", what, *msg ? msg : dpt_status_str(st));
    return 1;
}

static int cmd_info(void)
{
    printf("dptrain build features\n");
    printf("  backends:   %s\n", dpt_backend_list());
    printf("  oneDNN:     %s\n", DPT_HAVE_DNNL ? "yes" : "no");
#if DPT_HAVE_CUDA
    int ndev = dpt_cuda_device_count();
    const char *why = dpt_cuda_no_device_reason();
    printf("  CUDA:       backend \"cuda\" compiled, %d device%s found%s%s%s\n", ndev,
           ndev == 1 ? "" : "s", ndev ? "" : " (", ndev ? "" : (why && *why ? why : "none"),
           ndev ? "" : ")");
#else
    printf("  CUDA:       no (built without the CUDA toolkit)\n");
#endif
    printf("  NCCL:       %s\n", DPT_HAVE_NCCL ? "yes (--allreduce nccl with --device cuda)" : "no");
    printf("  schedules:  constant, cosine, linear, step, onecycle\n");
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
static int cmd_train(opts_t *o)
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
    opts_t o;
    int rc = parse_command(&o, CMD_BENCH_AR, argc, argv);
    if (rc)
        return rc;
    o.ar.deterministic = o.cfg.deterministic;
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
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        print_main_help();
        return argc < 2 ? 2 : 0;
    }
    opts_t o;
    const char *sub = argv[1];
    if (!strcmp(sub, "info"))
        return cmd_info();
    if (!strcmp(sub, "train")) {
        int rc = parse_command(&o, CMD_TRAIN, argc - 2, argv + 2);
        if (rc)
            return rc;
        return cmd_train(&o);
    }
    if (!strcmp(sub, "eval")) {
        int rc = parse_command(&o, CMD_EVAL, argc - 2, argv + 2);
        if (rc)
            return rc;
        if (!o.weights) {
            usage_error(CMD_EVAL, "--weights FILE is required%s%s", "", "");
            return 2;
        }
        dpt_train_result_t res;
        dpt_status_t st = dpt_evaluate(&o.cfg, o.weights, &res);
        if (st != DPT_OK)
            return fail("eval", st);
        printf("test accuracy: %.2f%% (%ld/%ld)  test loss %.4f  param_crc %08x\n",
               100.0 * res.test_acc, res.test_correct, res.test_total, res.test_loss,
               res.param_crc);
        return 0;
    }
    if (!strcmp(sub, "prepare")) {
        int rc = parse_command(&o, CMD_PREPARE, argc - 2, argv + 2);
        if (rc)
            return rc;
        o.prep.seed = o.cfg.seed;
        o.prep.threads = o.cfg.threads > 0 ? o.cfg.threads : omp_get_max_threads();
        o.prep.out = stdout;
        o.prep.err = stderr;
        if ((o.resize && dpt_resize_parse(o.resize, &o.prep.resize) != DPT_OK) ||
            dpt_prepare_check(&o.prep) != DPT_OK) {
            usage_error(CMD_PREPARE, "%s%s", dpt_error_get(), "");
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
        int rc = parse_command(&o, CMD_BENCH, argc - 3, argv + 3);
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
