/* train_flags.h: the one registry of the training configuration. Every field of
 * dpt_train_config_t (trainer.h) and dpt_sgd_config_t (optim.h) that a flag sets is one row
 * here, and the rows make everything else: the struct fields, dpt_train_config_default(), the
 * command line's table (src/cli/options.c: parsing, --help with a "(default ...)" generated from
 * the default, `dptrain info`), the flag texts that ranks compare, checkpoints record and the
 * metrics' config record holds. A new flag is one row.
 *
 *   X(CTYPE, FIELD, DEFAULT, "flag-name", TYPE, LO, HI, COMMANDS | SCOPE, "ARG", "help")
 *
 * TYPE, COMMANDS and SCOPE are the tokens of src/cli/options.c (T_INT, CMD_TRAIN, LOCAL, ...;
 * unmarked scope: the flag is part of the run's identity, see options.c); LO and HI bound
 * numbers. A help text that says "default" explains its default itself (a value that means
 * something, e.g. 0 = automatic) and gets none generated. Flags of other commands only (eval's
 * --weights, prepare's, the benchmarks') are rows of options.c itself. */
#ifndef DPT_TRAIN_FLAGS_H
#define DPT_TRAIN_FLAGS_H

#define DPT_TRAIN_FLAGS(X) \
    X(const char *, model_path, "models/fmnist-cnn.cfg", "model", T_STR, 0, 0, ALL, "FILE", \
      "model definition (a file, or a name in models/)") \
    X(const char *, data_spec, "fashion-mnist", "data", T_STR, 0, 0, CMD_TRAIN | CMD_EVAL, "SPEC", \
      "fashion-mnist[:DIR] | mnist:DIR | cifar10:DIR | shards:DIR (from dptrain prepare) | " \
      "synthetic:N:C:H:W:K (fashion-mnist is read from " DPT_FASHION_MNIST_DIR ")") \
    X(const char *, backend, "cpu", "backend", T_STR, 0, 0, ALL, "NAME", \
      "compute backend: cpu (oneDNN + OpenBLAS), ref (plain C) or cuda (GPU; CUDA builds); " \
      "--device is the same flag") \
    X(dpt_precision_t, precision, DPT_PREC_FP32, "precision", T_PREC, 0, 0, ALL, "fp32|bf16|fp16", \
      "cuda: activation/compute precision, float32 master weights (fp16 uses loss scaling)") \
    X(double, loss_scale, 0, "loss-scale", T_LSCALE, 0, 0, CMD_TRAIN | CMD_BENCH, "dynamic|N", \
      "cuda: loss scaling: dynamic (2^16, halved on overflow with the step skipped, doubled " \
      "after 2000 good steps; the fp16 default) or a fixed N (default for fp32/bf16: none)") \
    X(int, threads, 0, "threads", T_INT, 0, 1024, ALL | CMD_PREPARE | LOCAL, "T", \
      "compute (prepare: decode) threads per process (default 0 = OMP_NUM_THREADS or all cores)") \
    X(int, conv_winograd, 1, "winograd", T_BOOL, 0, 0, ALL | LOCAL, NULL, \
      "cpu: Winograd for 3x3 stride-1 convolutions where oneDNN has it") \
    X(int, blocked_layout, 1, "layout", T_ENUM, 0, 0, ALL | LOCAL, "nchw|blocked", \
      "cpu backend activation layout between layers") \
    X(int, fuse_bn_relu, 1, "fuse-bn-relu", T_BOOL, 0, 0, ALL, NULL, "fuse batchnorm + relu") \
    X(int, epochs, 8, "epochs", T_INT, 1, 100000, CMD_TRAIN, "N", "training epochs") \
    X(int, batch, 128, "batch", T_INT, 1, 1 << 20, ALL, "B", \
      "batch size per rank (the global batch is B x ranks x --accum)") \
    X(int, global_batch, 0, "global-batch", T_INT, 0, 1 << 30, CMD_TRAIN, "G", \
      "batch size of the whole job instead of --batch: G / (ranks x accum) per rank, which must " \
      "divide (a run resumed on another rank count keeps G; default 0: --batch)") \
    X(double, lr, 0.1, "lr", T_DOUBLE, 0, 1e6, CMD_TRAIN, "X", \
      "peak learning rate, for the global batch as given (linear scaling is yours: USAGE.md)") \
    X(double, warmup_epochs, 0.5, "warmup-epochs", T_DOUBLE, 0, 1e5, CMD_TRAIN, "W", \
      "linear warmup length in epochs") \
    X(dpt_sched_kind_t, schedule, DPT_SCHED_COSINE, "schedule", T_SCHED, 0, 0, CMD_TRAIN, "NAME", \
      "LR after warmup: cosine, linear, step, onecycle, constant") \
    X(double, final_lr_frac, 0.0, "final-lr-frac", T_DOUBLE, 0, 1, CMD_TRAIN, "F", \
      "cosine/linear: final LR as a fraction of --lr") \
    X(double, step_epochs, 3, "step-epochs", T_DOUBLE, 0.001, 1e5, CMD_TRAIN, "E", \
      "step schedule: epochs between decays") \
    X(double, step_gamma, 0.1, "step-gamma", T_DOUBLE, 0, 1, CMD_TRAIN, "G", \
      "step schedule: decay factor") \
    X(double, onecycle_peak, 0.25, "onecycle-peak", T_DOUBLE, 0.001, 0.999, CMD_TRAIN, "F", \
      "onecycle: fraction of training at the peak") \
    X(const char *, allreduce, "auto", "allreduce", T_STR, 0, 0, CMD_TRAIN, "NAME", \
      "gradient all-reduce across ranks: auto (per bucket, by the cost model calibrated at " \
      "start-up), ring, tree, rd, rhd, shm, hier, mpi, nccl (--device cuda, NCCL builds)") \
    X(const char *, compress, "none", "compress", T_STR, 0, 0, CMD_TRAIN | CMD_BENCH_AR, \
      "CODEC", \
      "gradient compression per bucket: none, fp16 or bf16 (divide by the ranks in fp32, round " \
      "once, sum in 16 bits with fp32 accumulation: half the bytes), topk:F (the largest F of " \
      "each bucket, the rest kept for later: error feedback; the codec applies the momentum), " \
      "powersgd[:R] (rank-R factors of each weight matrix, error feedback; R = 1), sign (1 bit " \
      "a value and a scale per chunk, twice, with error feedback: about 1/32 of the bytes); " \
      "one rank: nothing to do; CODEC+zstd: zstd on the wire, lossless (none+zstd: fp32 " \
      "through it); bench allreduce: the all-reduce through CODEC on gradient-like data, " \
      "rel_err of the first call (fresh codec state: error feedback changes later calls)") \
    X(int, compress_start, -1, "compress-start", T_INT, -1, 1 << 30, CMD_TRAIN, "STEPS", \
      "the first STEPS optimizer steps all-reduce plain fp32 gradients, then --compress " \
      "starts; auto (-1, the default): after the learning rate's warm-up for powersgd and " \
      "sign, from step 0 for fp16, bf16 and topk (which ramps its sparsity over the warm-up)") \
    X(double, bucket_mb, 25, "bucket-mb", T_DOUBLE, 0.004, 4096, CMD_TRAIN, "M", \
      "gradient bucket size in MiB (the first bucket, the last layers, is min(1, M))") \
    X(int, overlap, 1, "overlap", T_BOOL, 0, 0, CMD_TRAIN, NULL, \
      "all-reduce buckets on a thread while backward runs (--no-overlap: after backward)") \
    X(int, sync_bn, 0, "sync-bn", T_BOOL, 0, 0, CMD_TRAIN, NULL, \
      "batch-norm statistics over all ranks' batches (off: each rank's own; running statistics " \
      "are averaged before eval and save either way)") \
    X(const char *, checkpoint_dir, NULL, "checkpoint-dir", T_STR, 0, 0, CMD_TRAIN | CONTROL, "DIR", \
      "write checkpoints (ckpt-<step>.dpt, 'latest'; best.dpt, the best epoch's weights) here: " \
      "at every epoch end, every --checkpoint-every steps and when stopped by a signal") \
    X(int, save_best, 1, "save-best", T_BOOL, 0, 0, CMD_TRAIN | CONTROL, NULL, \
      "with --checkpoint-dir: keep DIR/best.dpt, the weights of the epoch with the best test " \
      "accuracy so far (off: only the rolling checkpoints)") \
    X(long, checkpoint_every, 0, "checkpoint-every", T_LONG, 0, INT_MAX, CMD_TRAIN | CONTROL, "N", \
      "also checkpoint every N steps (default 0: epoch ends and stops only)") \
    X(int, keep_checkpoints, 3, "keep-checkpoints", T_INT, 1, 1000000, CMD_TRAIN | CONTROL, "K", \
      "keep the newest K checkpoints") \
    X(const char *, resume_ignore, NULL, "resume-ignore", T_STR, 0, 0, CMD_TRAIN | CONTROL, \
      "FLAG,...", "--resume: flags whose values may differ from the checkpoint's run (e.g. " \
      "epochs,lr); any other difference is refused, naming the flags") \
    X(int, force_new, 0, "force-new", T_BOOL, 0, 0, CMD_TRAIN | CONTROL, NULL, \
      "start a fresh run in a --checkpoint-dir that holds an earlier run's checkpoints (they " \
      "move to DIR/replaced-<time>/; refused otherwise)") \
    X(const char *, resume, NULL, "resume", T_STR, 0, 0, CMD_TRAIN | CONTROL, "auto|FILE", \
      "continue from a checkpoint: auto = the newest valid one in --checkpoint-dir (skipping " \
      "corrupt ones; a fresh start if none), or FILE") \
    X(double, watchdog_s, 300, "watchdog", T_DOUBLE, 0, 1e7, CMD_TRAIN | CONTROL, "SECONDS", \
      "stall inspector: a collective waiting longer than this aborts every rank, naming the " \
      "ranks that did not reach it (0 = off)") \
    X(int, check_collectives, 0, "check-collectives", T_BOOL, 0, 0, CMD_TRAIN | CONTROL, NULL, \
      "debug: before every collective, compare a fingerprint (sequence number, kind, size, " \
      "type, op) across ranks and stop naming the rank that differs") \
    X(int, nan_skip, 0, "nan-policy", T_ENUM, 0, 0, CMD_TRAIN | CONTROL, "abort|skip", \
      "a NaN/Inf loss or gradient: stop every rank naming the step and rank (abort) or skip " \
      "that step's update (skip)") \
    X(int, accum, 1, "accum", T_INT, 1, 4096, CMD_TRAIN, "K", \
      "gradient accumulation: K micro-batches of --batch per optimizer step, one all-reduce") \
    X(float, label_smoothing, 0.1f, "label-smoothing", T_FLOAT, 0, 0.999, CMD_TRAIN, "E", \
      "label smoothing") \
    X(uint64_t, seed, 1, "seed", T_U64, 0, 0, ALL | CMD_PREPARE, "S", \
      "seed for init, shuffle and augmentation; prepare: the train/val draw") \
    X(int, crop_pad, 0, "crop-pad", T_INT, 0, 64, CMD_TRAIN, "P", \
      "random crop after padding by P pixels (default 0 = off)") \
    X(int, flip, 1, "flip", T_BOOL, 0, 0, CMD_TRAIN, NULL, "random horizontal flip") \
    X(int, random_resized_crop, 0, "random-resized-crop", T_BOOL, 0, 0, CMD_TRAIN, NULL, \
      "random crop of area --rrc-min-scale..1 and aspect 3/4..4/3, resized back") \
    X(float, rrc_min_scale, 0.35f, "rrc-min-scale", T_FLOAT, 0.05, 1, CMD_TRAIN, "F", \
      "smallest area fraction of --random-resized-crop") \
    X(int, prefetch, 1, "prefetch", T_BOOL, 0, 0, CMD_TRAIN | CMD_EVAL | LOCAL, NULL, \
      "assemble the next batch on loader worker threads during the step (--no-prefetch: in " \
      "the training thread)") \
    X(int, loader_workers, 0, "loader-workers", T_INT, 0, 64, CMD_TRAIN | CMD_EVAL | LOCAL, "N", \
      "threads assembling batches with --prefetch (default 0 = automatic: a quarter of the " \
      "cores, 1 to 4; the batches are the same for any N)") \
    X(const char *, metrics_path, NULL, "metrics", T_STR, 0, 0, CMD_TRAIN | LOCAL, "FILE", \
      "write JSON-lines metrics (config, step, eval, epoch, final records: docs/formats.md)") \
    X(const char *, save_path, NULL, "save", T_STR, 0, 0, CMD_TRAIN | LOCAL, "FILE", \
      "write the trained weights (atomically) at the end") \
    X(int, progress, -1, "progress", T_BOOL, 0, 0, CMD_TRAIN | LOCAL, NULL, \
      "force the progress bar on (--progress) or plain lines (--no-progress); default: bar " \
      "on a terminal") \
    X(int, log_every, 50, "log-every", T_INT, 1, 1 << 30, CMD_TRAIN | LOCAL, "N", \
      "steps between step metrics and plain progress lines") \
    X(long, max_steps, 0, "max-steps", T_LONG, 0, INT_MAX, CMD_TRAIN, "N", \
      "stop after N steps in total (default 0 = all epochs)") \
    X(int, eval_every_epoch, 1, "eval", T_BOOL, 0, 0, CMD_TRAIN | CONTROL, NULL, \
      "evaluate on the test split after every epoch") \
    X(int, eval_every, 0, "eval-every", T_INT, 0, 1 << 30, CMD_TRAIN | CONTROL, "STEPS", \
      "also evaluate on the test split every STEPS optimizer steps (sharded over the ranks), " \
      "each evaluation an \"eval\" metrics record (default 0 = epoch ends only)") \
    X(double, stop_at_acc, 0, "stop-at-acc", T_DOUBLE, 0, 1, CMD_TRAIN | CONTROL, "A", \
      "stop at the first evaluation (--eval-every or epoch end) whose test accuracy is >= A: " \
      "the run is complete (final record, --save); default 0 = off") \
    X(int, quiet, 0, "quiet", T_BOOL, 0, 0, CMD_TRAIN | LOCAL, NULL, "print only the final line") \
    X(int, deterministic, 0, "deterministic", T_BOOL, 0, 0, CMD_TRAIN | CMD_BENCH_AR, NULL, \
      "rank-ordered reductions: the same bits for every all-reduce algorithm")

/* The optimizer's (dpt_sgd_config_t, optim.h): the choice (its values in the order of
 * dpt_optim_kind_t), SGD's and LARS's, the shared weight decay, AdamW's. */
#define DPT_SGD_FLAGS(X) \
    X(int, optimizer, 0, "optimizer", T_ENUM, 0, 0, CMD_TRAIN, "sgd|lars|adamw", \
      "sgd, lars (SGD with LARS layer-wise trust ratios g' = eta*|p|/(|g| + wd*|p|) * " \
      "(g + wd*p) per decayed segment; BN and biases excluded) or adamw (PyTorch's AdamW: " \
      "--adam-beta1/2, --adam-eps, decoupled --weight-decay; --momentum, --nesterov and " \
      "--lars-eta are refused with it)") \
    X(float, lars_eta, 0.001f, "lars-eta", T_FLOAT, 1e-6, 1, CMD_TRAIN, "ETA", \
      "LARS trust coefficient") \
    X(float, momentum, 0.9f, "momentum", T_FLOAT, 0, 0.9999, CMD_TRAIN, "M", "SGD momentum") \
    X(int, nesterov, 1, "nesterov", T_BOOL, 0, 0, CMD_TRAIN, NULL, "SGD: Nesterov momentum") \
    X(float, weight_decay, 5e-4f, "weight-decay", T_FLOAT, 0, 1, CMD_TRAIN, "WD", \
      "weight decay on conv/fc weights, never on BN or bias: L2 in the gradient (sgd, lars), " \
      "p *= 1 - lr*WD before the step (adamw)") \
    X(float, adam_beta1, 0.9f, "adam-beta1", T_FLOAT, 0, 0.9999, CMD_TRAIN, "B1", \
      "adamw: decay of the first moment m") \
    X(float, adam_beta2, 0.999f, "adam-beta2", T_FLOAT, 0, 0.999999, CMD_TRAIN, "B2", \
      "adamw: decay of the second moment v") \
    X(float, adam_eps, 1e-8f, "adam-eps", T_FLOAT, 1e-30, 1, CMD_TRAIN, "EPS", \
      "adamw: added to sqrt(vhat) in the denominator")

/* A struct field of a row. */
#define DPT_FLAG_FIELD(ctype, field, def, name, type, lo, hi, cmds, arg, help) ctype field;

#endif
