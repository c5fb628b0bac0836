/* trainer.h: the training loop (loader -> forward -> loss -> backward -> optimizer), evaluation,
 * progress and metrics, driven by one config struct that main.c fills from the command line. */
#ifndef DPT_TRAINER_H
#define DPT_TRAINER_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "dptrain/optim.h"
#include "dptrain/train_flags.h"
#include "dptrain/status.h"

/* The training configuration: every flag's field (the rows of train_flags.h, where each is
 * documented by its help text; the optimizer's in sgd), then what the caller derives. */
typedef struct dpt_train_config {
    DPT_TRAIN_FLAGS(DPT_FLAG_FIELD)
    dpt_sgd_config_t sgd;
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
    int reached_acc;             /* 1: stopped at an evaluation with test_acc >= stop_at_acc */
    int evals;                   /* evaluations on the test split (epoch ends, --eval-every) */
    double eval_s;               /* seconds spent in them (part of wall_s) */
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
    char report[1 << 17]; /* out, when profile: per-layer table (dpt_model_profile_report;
                             about 80 characters per layer, up to 1024 layers) */
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
    const char *compress;  /* a codec spec (compress.h): the all-reduce through it, on gradient-
                            * like data (src/train/bench_compress.c); NULL or "none": plain */
} dpt_bench_coll_config_t;
dpt_status_t dpt_bench_allreduce(const dpt_bench_coll_config_t *cfg, FILE *out, long *wrong_total);

#endif
