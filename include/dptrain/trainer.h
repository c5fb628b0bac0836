/* trainer.h: the training loop (loader -> forward -> loss -> backward -> optimizer), evaluation,
 * progress and metrics, driven by one config struct that main.c fills from the command line. */
#ifndef DPT_TRAINER_H
#define DPT_TRAINER_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "dptrain/optim.h"
#include "dptrain/status.h"

typedef struct dpt_train_config {
    const char *model_path;      /* models/fmnist-cnn.cfg */
    const char *data_spec;       /* fashion-mnist[:DIR] | mnist:DIR | cifar10:DIR | shards:DIR |
                                    synthetic:... */
    const char *backend;         /* "cpu", "ref" or "cuda" (--backend, --device) */
    dpt_precision_t precision;   /* --precision: activations/compute (cuda only; default fp32) */
    double loss_scale;           /* --loss-scale: 0 = default (dynamic for fp16, none otherwise),
                                    -1 = dynamic, > 0 = this fixed scale (cuda only) */
    int threads;                 /* compute threads (0 = library default) */
    int blocked_layout;          /* cpu: 1 = oneDNN blocked activations, 0 = plain NCHW */
    int conv_winograd;           /* cpu: Winograd 3x3 convolutions where available (default 1) */
    int fuse_bn_relu;
    int epochs;
    int batch;                   /* per rank; the global batch is batch x ranks x accum */
    int global_batch;            /* > 0: batch = global_batch / (ranks x accum), which must
                                    divide (a run resumed on another rank count keeps it) */
    double lr;                   /* base (peak) learning rate for the global batch as given (the
                                    linear scaling rule is the user's: docs/USAGE.md) */
    double warmup_epochs;
    dpt_sched_kind_t schedule;
    double final_lr_frac;
    double step_gamma;           /* step schedule */
    double step_epochs;          /* step schedule: epochs between decays */
    double onecycle_peak;        /* onecycle: fraction of training at the peak */
    dpt_sgd_config_t sgd;
    float label_smoothing;
    uint64_t seed;
    int crop_pad, flip;          /* augmentation */
    int random_resized_crop;     /* random area/aspect crop, resized back (not with crop_pad) */
    float rrc_min_scale;         /* its smallest area fraction (default 0.35; aspect 3/4..4/3) */
    int prefetch;
    int loader_workers;          /* prefetch threads per loader (0 = automatic, see loader.h) */
    const char *metrics_path;    /* JSON lines, NULL = none */
    const char *save_path;       /* weights written at the end, NULL = none */
    int progress;                /* 1 = bar, 0 = plain lines, -1 = bar when stderr is a tty */
    int log_every;               /* steps between step metrics / plain progress lines */
    long max_steps;              /* stop after this many steps in total (0 = no limit) */
    int eval_every_epoch;        /* evaluate on the test split after each epoch */
    int quiet;                   /* no progress and no per-epoch lines */
    /* data parallel (under mpirun; ignored for one rank) */
    const char *allreduce;       /* gradient all-reduce algorithm name (default "auto") */
    double bucket_mb;            /* gradient bucket size in MiB (default 25; the first bucket,
                                    the last layers, is min(1 MiB, this)) */
    int overlap;                 /* all-reduce buckets on a thread during backward (default 1) */
    int accum;                   /* micro-batches per optimizer step (default 1); all-reduce
                                    only after the last */
    int deterministic;           /* rank-ordered reductions: same bits for every algorithm */
    int sync_bn;                 /* batch-norm statistics over all ranks (default: per rank) */
    /* checkpoints and stopping (src/ckpt/state.c) */
    const char *checkpoint_dir;  /* NULL = no checkpoints */
    long checkpoint_every;       /* steps between checkpoints (0: only at epoch ends and stops) */
    int keep_checkpoints;        /* newest files kept (default 3) */
    const char *resume;          /* NULL, "auto" (newest valid in checkpoint_dir, if any) or a
                                    checkpoint file */
    const char *resume_ignore;   /* comma-separated flag names a resume may change */
    int force_new;               /* a fresh run in a checkpoint dir holding checkpoints: they
                                    move to a subdirectory (else refused) */
    double watchdog_s;           /* a collective phase longer than this aborts the job, naming
                                    the ranks that did not reach it (default 300; 0 = off) */
    int check_collectives;       /* debug: fingerprint every collective (dpt_coll_set_check) */
    int nan_skip;                /* non-finite loss/gradients: 1 = skip the step, 0 = stop */
    const char *agree_flags;     /* "--name=value" lines every rank must share (the CLI's flag
                                    table, src/cli/options.h); NULL = not compared */
    const char *run_flags;       /* the subset that makes the run (checkpoints record its hash) */
    const char *all_flags;       /* every flag, for the metrics' config record */
    const atomic_int *stop_flag; /* set (by another thread, e.g. one in sigwait) to stop after
                                    the running step with a checkpoint; NULL = none */
} dpt_train_config_t;

typedef struct dpt_train_result {
    double train_loss, train_acc, test_loss, test_acc;
    long test_correct, test_total;
    double img_s, wall_s;
    long steps;
    uint32_t param_crc;
    int ranks;
    int collective_error;        /* on error: 0 if other ranks may be stuck in a collective
                                    (abort the job), 1 if every rank returned together with
                                    this rank's own message, 2 if together with the same
                                    message on every rank (rank 0 prints it) */
    double t_comm_s, t_comm_exposed_s;   /* summed over the steps (this rank) */
    int stopped;                 /* 1: stopped early by stop_flag (after a checkpoint when
                                    checkpoint_dir is set) */
    long skipped_steps;          /* steps skipped for non-finite loss or gradients (including
                                    fp16 overflows under dynamic loss scaling) */
    double loss_scale;           /* the loss scale at the end (1 = none) */
    long resumed_from;           /* step of the checkpoint resumed from, -1 = none */
} dpt_train_result_t;

/* Defaults for every field (fmnist-cnn on Fashion-MNIST, the `make run` job). */
void dpt_train_config_default(dpt_train_config_t *cfg);

/* Train per cfg; fills res. Errors carry a message (dpt_error_get) naming the file or flag. */
dpt_status_t dpt_train(const dpt_train_config_t *cfg, dpt_train_result_t *res);

/* Evaluate weights on the test split of cfg->data_spec (uses model, backend, threads, batch). */
dpt_status_t dpt_evaluate(const dpt_train_config_t *cfg, const char *weights_path,
                          dpt_train_result_t *res);

/* Training-step throughput on a fixed synthetic batch: `steps` timed steps after `warmup`
 * untimed ones; reports median img/s and forward+backward GFLOP/s. */
typedef struct dpt_bench_result {
    double img_s_median, img_s_min, img_s_max, gflops;
    int steps;
    int profile;          /* in: time every layer (adds two clock reads per op) */
    char report[4096];    /* out, when profile: per-layer table (dpt_model_profile_report) */
} dpt_bench_result_t;
dpt_status_t dpt_bench_train(const dpt_train_config_t *cfg, int warmup, int steps,
                             dpt_bench_result_t *res);

/* `dptrain bench allreduce` (src/train/bench_allreduce.c). MPI must be initialized; collective
 * over MPI_COMM_WORLD; rank 0 writes to `out` (a table, or JSON lines with --json: the fields of
 * ../shared/DESIGN.md). *wrong_total: elements that differed from the reference, all sizes and
 * algorithms (0 when every algorithm is correct). */
typedef struct dpt_bench_coll_config {
    const char *algos;     /* comma-separated names (default "ring,tree,rd,rhd,shm,auto,mpi") */
    size_t min_bytes, max_bytes;
    int factor;            /* size multiplier between rows (>= 2) */
    int iters;             /* calls per timed block (0 = about 30 ms per block) */
    int reps;              /* timed blocks; the median is reported */
    int json;
    const char *dtype;     /* f32 | bf16 | f16 */
    const char *op;        /* sum | avg */
    int deterministic;
    size_t segment_bytes;  /* 0 = the collective layer's default */
    int window;            /* reduce a buffer in the shm window (dpt_coll_buffer): zero-copy shm */
} dpt_bench_coll_config_t;
dpt_status_t dpt_bench_allreduce(const dpt_bench_coll_config_t *cfg, FILE *out, long *wrong_total);

#endif
