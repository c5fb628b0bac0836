/* checkpoint.h: model weight files (parameters + BN buffers) and the parameter checksum.
 * Format (little-endian): 64-byte header {magic "DPTWGHT1", u32 version, u32 reserved,
 * u64 n_params, u64 n_buffers, u64 payload_nbytes, u32 payload_crc32, u32 raw_crc32,
 * 12 reserved bytes, u32 header_crc32}, then one zstd frame holding params then buffers (float32).
 * Written to PATH.tmp, fsync'd, then renamed over PATH, so a crash never leaves a torn file. */
#ifndef DPT_CHECKPOINT_H
#define DPT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "dptrain/status.h"

/* CRC-32 of the parameter arena followed by the buffer arena (the "param_crc" of metrics). */
uint32_t dpt_param_crc(const float *params, size_t n_params, const float *buffers,
                       size_t n_buffers);

dpt_status_t dpt_weights_save(const char *path, const float *params, size_t n_params,
                              const float *buffers, size_t n_buffers);
/* Load into arenas of exactly the given sizes; errors name the file (missing, truncated,
 * wrong magic/version, size mismatch with the model, checksum mismatch). */
dpt_status_t dpt_weights_load(const char *path, float *params, size_t n_params, float *buffers,
                              size_t n_buffers);

/* Training checkpoints (src/ckpt/state.c): what a bit-exact resume needs besides the
 * parameters, BN buffers and momentum. The learning rate is a function of `step`; data order and
 * augmentation are functions of (seed, epoch, position), so no RNG state is needed. */
typedef struct dpt_ckpt_state {
    uint64_t step;          /* optimizer steps done */
    int32_t epoch;          /* epoch of the next step (0-based) */
    int32_t epoch_step;     /* steps already done in that epoch */
    int32_t ranks;          /* rank count that wrote it */
    uint64_t seed;
    uint32_t config_hash;   /* hash of `flags` */
    double counters[4];     /* the running epoch: loss sum, correct, seen (summed over ranks),
                               training seconds so far */
    char flags[8192];       /* the run's flags, "--name=value" lines ("" in version-1 files):
                               a resume with other values is refused, naming them */
    /* Gradient-codec state (version 3; --compress with error feedback): codec_n floats per
     * rank, every rank's in `codec` (ranks x codec_n, rank 0's first). Write: taken from codec
     * when codec_n > 0. Read: the caller sets codec (room for `ranks` x codec_n) and codec_n;
     * a file with another codec_n is refused, one without state gives zeros, another rank count
     * gives every rank the writers' average (as for BN buffers); codec NULL: not read. Both
     * fields keep the caller's values. */
    float *codec;
    uint64_t codec_n;
    /* Optimizer state (version 4): optim_k floats per parameter in `mom` (1: SGD's momentum;
     * 2: AdamW's m then v; 0 is read as 1) and AdamW's count of applied updates. Write: taken
     * from here (optim_k must agree with the run flags: --optimizer=adamw is 2). Read: the
     * caller sets optim_k (mom has room for optim_k x np floats; -1: accept the file's, mom
     * having room for 2 x np); optim_k and optim_t are set from the file, and a file with
     * another optim_k (another --optimizer) is read without its optimizer state, mom untouched:
     * the caller refuses it (a valid file, not one to skip). */
    int optim_k;
    uint64_t optim_t;
} dpt_ckpt_state_t;

/* One checkpoint file, written atomically (PATH.tmp, fsync, rename, directory fsync).
 * `buffers` holds s->ranks copies of the nb BN buffers (each rank's). */
dpt_status_t dpt_ckpt_write(const char *path, const dpt_ckpt_state_t *s, const float *params,
                            size_t np, const float *buffers, size_t nb, const float *mom);
/* Read and verify one (magic, version, header CRC, sizes against the model, flags CRC, payload
 * CRC, decompressed CRC) for `ranks` ranks: buffers receives ranks * nb floats, each rank's own
 * when the file was written by as many ranks, else every rank gets the average of the writers'
 * (s->ranks says which). Errors name the file and what is wrong. */
dpt_status_t dpt_ckpt_read(const char *path, int ranks, dpt_ckpt_state_t *s, float *params,
                           size_t np, float *buffers, size_t nb, float *mom);
/* Write DIR/ckpt-<step>.dpt, point DIR/latest at it, delete all but the newest `keep`. */
dpt_status_t dpt_ckpt_save(const char *dir, int keep, const dpt_ckpt_state_t *s,
                           const float *params, size_t np, const float *buffers, size_t nb,
                           const float *mom, char *path_out, size_t cap);
/* Load the newest valid DIR/ckpt-*.dpt (by step), skipping corrupt or partial ones with a
 * warning each. *found = 0 (and DPT_OK) when none is valid or DIR does not exist. */
dpt_status_t dpt_ckpt_load_newest(const char *dir, int ranks, dpt_ckpt_state_t *s, float *params,
                                  size_t np, float *buffers, size_t nb, float *mom,
                                  char *path_out, size_t cap, int *found);

/* A checkpoint read as weights (dptrain eval): parameters, and the BN buffers averaged over the
 * ranks that wrote it (what the run's evaluation would use); momentum dropped. */
dpt_status_t dpt_ckpt_load_weights(const char *path, float *params, size_t np, float *buffers,
                                   size_t nb);
/* The best epoch (src/ckpt/best.c): DIR/best.dpt, the weights of the epoch with the highest
 * test accuracy as evaluated, and DIR/best, the line "best.dpt epoch E step S test_acc A".
 * best_read: 1 and its accuracy and epoch when DIR/best exists, parses and has step <= max_step. */
int dpt_ckpt_best_read(const char *dir, uint64_t max_step, double *acc, int *epoch);
dpt_status_t dpt_ckpt_best_save(const char *dir, int epoch, uint64_t step, double acc,
                                const float *params, size_t np, const float *buffers, size_t nb);
/* How many ckpt-<step>.dpt files DIR holds (0 if none or no DIR); the newest's name in newest. */
int dpt_ckpt_list(const char *dir, char *newest, size_t cap);
/* Move DIR's checkpoints, `latest`, `best` and best.dpt into a new DIR/replaced-<time>/ (its path in aside). */
dpt_status_t dpt_ckpt_move_aside(const char *dir, char *aside, size_t cap);

#endif
