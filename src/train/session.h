/* session.h: what one run owns, and the stages of a run that use it, one file each:
 *   session.c    setup (backend, model, data, loaders, optimizer state, the data-parallel
 *                context) and teardown;
 *   device.c     what differs on a GPU: the device choice, host/device state mirrors, device
 *                input, the non-finite scan and the optimizer kernel;
 *   step.c       one optimizer step (micro-steps, buckets, the step flags, the update);
 *   epoch_end.c  BN averaging, sharded evaluation, the replica check, the best epoch;
 *   resume.c     checkpoints and --resume;
 *   trainer.c    dpt_train: the run from setup to the final line;
 *   bench_train.c `dptrain bench train` on the same session and step (epoch_end.c also holds
 *                `dptrain eval`). */
#ifndef DPT_TRAIN_SESSION_H
#define DPT_TRAIN_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "dptrain/backend.h"
#include "dptrain/bucket.h"
#include "dptrain/checkpoint.h"
#include "dptrain/dataset.h"
#include "dptrain/loader.h"
#include "dptrain/model.h"
#include "dptrain/optim.h"
#include "dptrain/trainer.h"
#include "train/internal.h"

typedef struct session session_t;

/* The input seam: the next micro-batch through the model's forward (training mode). The host
 * loader's, the device input pipeline's (device.c), or bench train's fixed batch. hits may be
 * left 0 by a source that does not count them. */
typedef dpt_status_t (*dpt__forward_fn)(session_t *s, float *loss, int32_t *hits, int *n_valid);

/* Everything one run owns, destroyed in reverse order by dpt__session_fini. */
struct session {
    const dpt_backend_ops_t *ops;
    dpt_backend_t *be;
    dpt_model_t *model;
    dpt_dataset_t *train, *test;
    dpt_loader_t *train_ld, *test_ld;
    dpt__forward_fn forward_next;
    void *input_ctx;         /* the forward_next source's own state (bench train's batch) */
    float *mom;              /* optimizer state: n_state floats (SGD: momentum; AdamW: m, v) */
    size_t n_state;          /* np x dpt_optim_state_per_param */
    uint64_t adam_t;         /* AdamW: the updates applied so far (skipped steps do not count) */
    uint64_t seed;           /* --seed: dropout masks (dpt__set_masks) */
    uint64_t staged_pos;     /* device input: dpt__set_masks's position of the staged batch */
    char model_path[4096];
    /* data parallel */
    dpt_dist_t dist;
    dpt_p2p_t *p2p;
    dpt_coll_t *coll;
    dpt_bucketer_t *bk;
    dpt_coll_algo_t algo;
    float *grads, *acc;      /* acc: gradient accumulation (accum > 1) */
    float *buf_all;          /* checkpoints: every rank's BN buffers (ranks x n_buffers) */
    long compress_start;     /* --compress-start resolved (auto: dpt_codec_auto_start) */
    size_t codec_n;          /* floats of gradient-codec state per rank (--compress topk) */
    float *codec_mine, *codec_all;   /* checkpoints: this rank's, every rank's (ranks x n) */
    dpt_watchdog_t *wd;      /* stall inspector (several ranks, --watchdog > 0) */
    int accum, micro;        /* micro: index of the running micro-step */
    float inv_accum;
    /* device (--device cuda): the arenas, mom and activations live on the GPU */
    int dev, device;         /* on a device; its ordinal */
    void *stream;            /* the backend's compute stream (cudaStream_t) */
    float *h_mom;            /* host mirror of mom (checkpoints); == mom on host backends */
    int *d_flag;             /* device int: the non-finite scan's flag */
    float *d_in;             /* device: the augmented batch before the model's input import */
    struct dpt_gpu_input *gin;   /* device input pipeline (train loader), NULL on the host */
    int gin_fetched;         /* batches taken from the train loader this epoch */
    dpt_coll_algo_t host_algo;   /* for host buffers (BN statistics): algo, or ring under nccl */
    dpt_loss_scaler_t ls;    /* fp16 loss scaling (scale 1, static, otherwise) */
    int lock_fd;             /* rank 0: the --checkpoint-dir lock (flock), -1 = none */
    char run_text[8192];     /* the run's flags with the global batch (checkpoints record it) */
};

/* A failed exchange between ranks: the others may still be waiting in it, so the job is
 * aborted (*collective = 0, as dpt_train_result_t.collective_error). */
#define DPT__EXCHANGE(call, collective)   \
    do {                                  \
        dpt_status_t st_ = (call);        \
        if (st_ != DPT_OK) {              \
            *(collective) = 0;            \
            return st_;                   \
        }                                 \
    } while (0)

/* session.c */
void dpt__session_fini(session_t *s);
/* Backend, model (with the step's callbacks) and loss scaler, for train, eval and bench. */
dpt_status_t dpt__session_model(session_t *s, const dpt_train_config_t *cfg);
/* The optimizer-state arena (zeros: n_state floats, sgd's momentum or AdamW's m and v) and its
 * host mirror. */
dpt_status_t dpt__session_alloc_mom(session_t *s, const dpt_sgd_config_t *sgd);

/* The position in the run of this rank's first sample of training batch (epoch, step):
 * ((epoch * steps + step) * ranks + rank) * batch; dpt__set_masks gives it and the seed to
 * the model for its dropout masks (the same for a sample whatever the rank count). */
uint64_t dpt__batch_pos(const session_t *s, int epoch, int step);
void dpt__set_masks(session_t *s, uint64_t pos);
/* The test split, sharded over ranks (the tail padded, padding not counted). */
dpt_status_t dpt__session_open_test(session_t *s, const dpt_train_config_t *cfg);
/* dpt_train's setup: every rank's local part, agreed on, then the data-parallel part (several
 * ranks). cfg->batch is set from --global-batch here. *collective as
 * dpt_train_result_t.collective_error. */
dpt_status_t dpt__session_setup(session_t *s, dpt_train_config_t *cfg, int *collective);
/* Hashes of the job: h[0] the flags that make the run (recorded in checkpoints), h[1] the model
 * file as parsed, h[2] the training data. */
void dpt__session_hashes(const session_t *s, uint32_t h[3]);
/* One line per bucket: its size and, with auto, the algorithm and predicted time (rank 0). */
void dpt__session_print_buckets(session_t *s, const char *compress);

/* device.c */
/* --device cuda: this rank's GPU (node-local rank modulo the node's devices); current device. */
dpt_status_t dpt__device_pick(session_t *s);
/* The backend's compute stream (cudaStream_t), NULL on the host. */
void *dpt__device_stream(session_t *s);
/* Device runs: the host mirrors (parameters, BN statistics, momentum) were written: send them to
 * the device; state_to_host is the reverse, before the host reads them. Host runs: nothing. */
dpt_status_t dpt__state_to_device(session_t *s);
dpt_status_t dpt__state_to_host(session_t *s, int with_mom);
/* The device input pipeline of the train loader (crop and flip on the GPU) and its forward. */
dpt_status_t dpt__device_input_create(session_t *s, const dpt_train_config_t *cfg);
/* Start epoch `epoch` of the train loader (and forget batches staged on the device). */
dpt_status_t dpt__train_epoch_start(session_t *s, int epoch);
/* After skipping `taken` batches of the train loader (a resume mid-epoch). */
void dpt__train_batches_taken(session_t *s, int taken);
/* Are the gradients all finite? (after the all-reduce: the same answer on every rank) */
dpt_status_t dpt__grads_finite(session_t *s, size_t np, int *finite);
/* SGD/LARS on the flat arenas, on the host or the device; inv_scale undoes a loss scale. */
dpt_status_t dpt__optimizer_step(session_t *s, const dpt_sgd_config_t *sgd, float lr,
                                 float inv_scale);
void dpt__device_free(session_t *s);

/* step.c */
typedef struct dpt__step_out {
    float loss;              /* mean over the micro-steps */
    long hits, seen;
    dpt_bucket_stats_t comm; /* zeros on one rank */
    int stop;                /* a stop was requested on some rank */
    int skipped;             /* non-finite loss or gradients, step skipped (--nan-policy skip) */
} dpt__step_out_t;
/* The model's callbacks (gradient accumulation and buckets; --sync-bn). */
void dpt__on_grad_ready(void *ctx, size_t off, size_t count);
dpt_status_t dpt__on_bn_sum(void *ctx, float *buf, size_t n);
/* The host loader's forward_next. */
dpt_status_t dpt__forward_loader(session_t *s, float *loss, int32_t *hits, int *n_valid);
dpt_status_t dpt__train_step(session_t *s, const dpt_train_config_t *cfg, double lr, int epoch,
                             long step, dpt__step_out_t *o, int *collective);

/* epoch_end.c */
/* BN running statistics averaged over ranks (each rank's come from its own shards). */
dpt_status_t dpt__sync_buffers(session_t *s);
/* The whole test split (BN in inference mode), sharded; every rank gets the global results. */
dpt_status_t dpt__evaluate(session_t *s, double *loss, long *correct, long *total);
/* After an epoch: every rank's parameters (and BN statistics) must be the same bits. */
dpt_status_t dpt__check_replicas(session_t *s, uint32_t crc, int epoch, int *mismatch);
/* The best test accuracy so far: -1 for a fresh run, DIR/best's for a resume (rank 0 reads,
 * every rank gets it); and the epoch end's update of DIR/best.dpt when acc beats *best. */
dpt_status_t dpt__best_start(session_t *s, const dpt_train_config_t *cfg, long resumed_step,
                             double *best);
dpt_status_t dpt__best_update(session_t *s, const dpt_train_config_t *cfg, int epoch, long step,
                              double acc, double *best, int *improved, int *collective);

/* resume.c */
/* --resume: rank 0 reads the checkpoint and sends it to every rank; *found = 0 when "auto"
 * finds none. Collective; errors are agreed on by every rank. */
dpt_status_t dpt__resume(session_t *s, const dpt_train_config_t *cfg, uint32_t config_hash,
                         dpt_ckpt_state_t *cs, int *found, char *path, size_t path_cap,
                         int *collective);
/* A checkpoint of the state after `step` steps (rank 0 writes; every rank learns whether it
 * worked). ev: this rank's running-epoch sums, summed over ranks here. */
dpt_status_t dpt__checkpoint(session_t *s, const dpt_train_config_t *cfg, uint32_t config_hash,
                             long step, int epoch, int epoch_step, const double ev[3],
                             int *collective);

#endif
