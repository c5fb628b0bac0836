/* internal.h: metrics (JSON lines) and progress output used by the trainer. */
#ifndef DPT_TRAIN_INTERNAL_H
#define DPT_TRAIN_INTERNAL_H

#include <stdint.h>
#include <stdio.h>

#include "dptrain/coll.h"
#include "dptrain/status.h"

/* Monotonic seconds. */
#include "core/internal.h"   /* dpt__now, dpt__median */

/* JSON-lines metrics writer (src/train/metrics.c; records and fields in docs/formats.md, read
 * by scripts: keep them stable). Only rank 0 has a file. */
typedef struct dpt_metrics {
    FILE *f;
    const char *path;
    int failed;          /* errno of the first failed write, 0 = none */
    int training;        /* past the config record: a failed write is reported at once */
} dpt_metrics_t;

/* At start-up: can `path` be written (created if missing, nothing truncated)? NULL: yes. */
dpt_status_t dpt_metrics_check(const char *path);
/* resume_step < 0: a fresh run, the file is replaced. Else the run continues after step
 * resume_step with epoch resume_epoch (1-based) not yet ended: the interrupted run's records past
 * that point (later steps, that epoch's and later epoch records, final records) are dropped and
 * the rest kept; then new records are appended. NULL path: no output. */
dpt_status_t dpt_metrics_open(dpt_metrics_t *m, const char *path, long resume_step,
                              int resume_epoch);
/* The "config" record (preceded by a "resume" record when resumed_from >= 0): version, git
 * commit, host, CPU, ranks, threads and every flag ("--name=value" lines) as strings. */
void dpt_metrics_config(dpt_metrics_t *m, const char *flags, int ranks, int threads,
                        long resumed_from, const char *resumed_path);
/* A "step" record: means over the --log-every steps it covers. */
typedef struct dpt_metrics_step_rec {
    int epoch;
    long step;
    double loss, lr, img_s, t_compute_s, t_comm_exposed_s;
    double bytes_sent;       /* payload this rank sent per step (what the transport was handed) */
    double compress_ratio;   /* bytes_sent / the plain fp32 ring's (1 without --compress) */
    double t_comm_s, t_code_s;   /* all-reduce seconds, of which the codecs' encode + decode */
    double loss_scale;
    long skipped;
} dpt_metrics_step_rec_t;
void dpt_metrics_step(dpt_metrics_t *m, const dpt_metrics_step_rec_t *r);
void dpt_metrics_epoch(dpt_metrics_t *m, int epoch, long step, double train_loss,
                       double train_acc, double test_loss, double test_acc, double img_s,
                       double wall_s, uint32_t param_crc);
/* An "eval" record (runs with --eval-every or --stop-at-acc): an evaluation after `step` steps
 * in epoch `epoch` (1-based); wall_s since training started, eval_s of it spent evaluating. */
void dpt_metrics_eval(dpt_metrics_t *m, int epoch, long step, double test_loss, double test_acc,
                      double wall_s, double eval_s);
void dpt_metrics_final(dpt_metrics_t *m, double test_acc, double wall_s, double img_s, int ranks,
                       int threads, uint32_t param_crc);
/* DPT_OK, or DPT_ERR_IO naming the file if a write (or the close) failed. */
dpt_status_t dpt_metrics_status(const dpt_metrics_t *m);
void dpt_metrics_close(dpt_metrics_t *m);

/* Progress: a one-line bar on a terminal (loss, accuracy, img/s, ETA), plain lines otherwise. */
typedef struct dpt_progress {
    int bar;            /* 1 = redraw a bar on stderr, 0 = plain lines on stdout, -1 = silent */
    int log_every;
    long total_steps;
    double t_start, t_last;
    int drawn;
    FILE *out;          /* the bar's stream: stderr, or /dev/tty (--progress under mpirun) */
} dpt_progress_t;

void dpt_progress_init(dpt_progress_t *p, int mode, int log_every, long total_steps);
void dpt_progress_update(dpt_progress_t *p, int epoch, int epochs, int step, int steps,
                         long global_step, double loss, double acc, double img_s);
/* Erase the bar before other output. */
void dpt_progress_clear(dpt_progress_t *p);
/* Close /dev/tty if the bar went there. */
void dpt_progress_fini(dpt_progress_t *p);

/* dist.c: the trainer's view of the job's ranks: over MPI (MPI_COMM_WORLD when MPI is
 * initialized), over given transports (in-process tests), or one rank. Every function is
 * collective when there are several ranks. */
typedef struct dpt_dist {
    int mpi;              /* MPI is initialized (and not finalized): the transports are MPI's */
    int rank, size;
    dpt_p2p_t *ctl_p2p;   /* control messages (the functions below); NULL for one rank */
    dpt_p2p_t *data_p2p;  /* the gradients' transport, borrowed by the trainer's context */
    int own_p2p;          /* made here from MPI (destroyed by fini), not given */
    dpt_coll_t *ctl;      /* the small collective context over ctl_p2p */
} dpt_dist_t;

/* MPI's ranks, or one rank without MPI; sets the logger's rank. Collective. */
dpt_status_t dpt__dist_init(dpt_dist_t *d);
/* The ranks of two given transports of the same ranks (e.g. dpt_p2p_loop_create's). */
dpt_status_t dpt__dist_init_p2p(dpt_dist_t *d, dpt_p2p_t *ctl, dpt_p2p_t *data);
void dpt__dist_fini(dpt_dist_t *d);
/* Every rank passes its setup status; all get an error if any rank failed: their own, or one
 * naming the first failed rank. *collective = 1 when every rank took part (then all return
 * together, no abort needed), 2 when the message is the same on every rank that did not fail,
 * 0 when the exchange itself failed. */
dpt_status_t dpt__dist_agree(const dpt_dist_t *d, dpt_status_t st, int *collective);
/* Compare n hashes with rank 0's; on a difference every rank returns an error naming the first
 * differing rank and what[k] (e.g. "dataset"); *mismatch = 1. */
dpt_status_t dpt__dist_compare(const dpt_dist_t *d, const uint32_t *h, int n,
                               const char *const *what, int *mismatch);
/* Compare a text of lines (e.g. "--name=value" flags) with rank 0's, line by line; on a
 * difference every rank returns an error naming the first differing rank and both lines;
 * *mismatch = 1. */
dpt_status_t dpt__dist_compare_lines(const dpt_dist_t *d, const char *text, int *mismatch);
/* Sum n doubles over ranks, in place, in rank order (the same bits on every rank). */
dpt_status_t dpt__dist_sum(const dpt_dist_t *d, double *v, int n);
/* Element-wise minimum of n ints over ranks, in place. */
dpt_status_t dpt__dist_min(const dpt_dist_t *d, int *v, int n);

/* watchdog.c: the stall inspector (see the file). NULL (a no-op) for one rank, a timeout of 0,
 * or without MPI_THREAD_MULTIPLE. enter/leave bracket every collective phase the trainer waits
 * on; a phase longer than the timeout makes every live rank report and the job abort, naming the
 * ranks that did not answer or are behind. Collective: start and stop on every rank. */
typedef struct dpt_watchdog dpt_watchdog_t;
dpt_status_t dpt__watchdog_start(const dpt_dist_t *d, double timeout_s, dpt_watchdog_t **out);
void dpt__watchdog_enter(dpt_watchdog_t *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void dpt__watchdog_leave(dpt_watchdog_t *w);
void dpt__watchdog_stop(dpt_watchdog_t *w);

/* run_state.c: the run's identity across restarts (see the file). */
#include "dptrain/trainer.h"
/* dpt_train over two given transports of the same ranks (ctl: the control messages, data: the
 * gradients), one call per rank on a thread of its own: the in-process tests of the trainer's
 * multi-rank logic (tests/unit/check_trainer.c). No watchdog (it needs MPI). */
dpt_status_t dpt__train_p2p(const dpt_train_config_t *cfg, dpt_train_result_t *res,
                            dpt_p2p_t *ctl, dpt_p2p_t *data);
/* --global-batch G: c->batch = G / (ranks x accum), an error when it does not divide. */
dpt_status_t dpt__global_batch(dpt_train_config_t *c, int nranks);
/* cfg->run_flags with one "--global-batch=" line for the effective global batch. */
void dpt__run_text(const dpt_train_config_t *cfg, int nranks, char *out, size_t cap);
/* Rank 0: lock cfg->checkpoint_dir (*lock_fd holds it; close releases) and refuse a fresh run
 * where checkpoints exist, unless --resume or --force-new (which moves them aside). */
dpt_status_t dpt__claim_checkpoint_dir(const dpt_train_config_t *cfg, int *lock_fd);
/* A checkpoint's flags (`theirs`) against this run's: DPT_OK, or an error naming every flag
 * that differs and is not in `ignore` (comma-separated names), with both values. */
dpt_status_t dpt__compare_run_flags(const char *path, const char *theirs, const char *ours,
                                    const char *ignore);

/* `bench allreduce --compress CODEC` (bench_compress.c): its flags checked (before any message),
 * then its rows, after dpt_bench_allreduce's set-up lines (collective over MPI_COMM_WORLD). */
dpt_status_t dpt__bench_codec_check(const dpt_bench_coll_config_t *cfg);
dpt_status_t dpt__bench_codec(const dpt_bench_coll_config_t *cfg, dpt_coll_t *coll,
                              const dpt_coll_algo_t *algos, int n_algos,
                              const dpt_coll_cost_t *cost, FILE *out, long *wrong_total);

#endif
