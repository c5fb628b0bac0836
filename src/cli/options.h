/* options.h: the command line's one registry of flags (src/cli/options.c). Every flag is one row
 * of a table: its name, type, field, range, the subcommands that take it, its scope across ranks
 * and its help text. Parsing (--config file, then argv), --help and the job's flag texts that
 * ranks compare and checkpoints record are all read off that table, so a new flag is one row. */
#ifndef DPT_CLI_OPTIONS_H
#define DPT_CLI_OPTIONS_H

#include <stddef.h>
#include <stdio.h>

#include "dptrain/prepare.h"
#include "dptrain/trainer.h"

enum { CMD_TRAIN = 1, CMD_EVAL = 2, CMD_BENCH = 4, CMD_BENCH_AR = 8, CMD_PREPARE = 16 };

/* Everything the flags of any subcommand set. */
typedef struct dpt_cli_opts {
    dpt_train_config_t cfg;
    const char *weights;
    const char *config_file;
    int warmup_steps, bench_steps;
    int profile;
    dpt_bench_coll_config_t ar;   /* bench allreduce */
    dpt_prepare_config_t prep;    /* prepare */
    const char *resize;           /* prepare --resize, parsed by dpt_resize_parse */
    int help;
} dpt_cli_opts_t;

/* Defaults, then the --config file, then argv (which wins). 0, or 2 after printing one usage
 * error; --help prints the subcommand's help and exits 0. */
int dpt_cli_parse(dpt_cli_opts_t *o, int cmd, int argc, char **argv);

const char *dpt_cli_cmd_name(int cmd);
void dpt_cli_print_help(int cmd);
/* Every train flag with a fixed set of values (--optimizer, --layout, ...) and those values. */
void dpt_cli_print_choices(FILE *out);

/* "dptrain CMD: <fmt with a, b> (see 'dptrain CMD --help')" on stderr. */
void dpt_cli_usage_error(int cmd, const char *fmt, const char *a, const char *b);

/* The effective value of every `train` flag of a scope, one "--name=value" line each, in table
 * order (aliases once). DPT_SCOPE_RUN: the flags that make the run what it is (data, model,
 * schedule, optimizer, ...: its result depends on them); DPT_SCOPE_AGREE: those and the flags
 * that decide which collectives run (checkpoints, resume, watchdog, ...): every rank must have
 * the same text. Flags of a rank's own (threads, layout, output files) are in neither. Writes at
 * most n bytes, NUL-terminated; returns the full length (as snprintf). */
enum { DPT_SCOPE_RUN = 1, DPT_SCOPE_AGREE = 2, DPT_SCOPE_ALL = 3 };   /* ALL: local ones too */
size_t dpt_cli_flag_text(const dpt_cli_opts_t *o, int scope, char *buf, size_t n);

#endif
