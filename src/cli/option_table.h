/* option_table.h: the flag registry's row type and table, shared by the parser (options.c,
 * which defines the table) and its printing (options_text.c: --help, flag texts). Private to
 * src/cli. */
#ifndef DPT_CLI_OPTION_TABLE_H
#define DPT_CLI_OPTION_TABLE_H

#include <stddef.h>

#include "cli/options.h"

typedef dpt_cli_opts_t opts_t;

/* T_ENUM: an int, the index of the value among the row's `arg`, "a|b|c" */
enum { T_INT, T_LONG, T_U64, T_DOUBLE, T_FLOAT, T_STR, T_BOOL, T_ENUM, T_SCHED, T_SIZE, T_PREC,
       T_LSCALE };

typedef struct option_def {
    const char *name;
    int type;
    size_t off;          /* offset into opts_t */
    double lo, hi;       /* numeric range */
    int cmds;            /* subcommands that accept it, and its scope (LOCAL, CONTROL) */
    const char *arg;     /* argument name in --help */
    const char *help;
} option_def_t;

#define C(field) offsetof(opts_t, cfg.field)
#define O(field) offsetof(opts_t, field)
#define ALL (CMD_TRAIN | CMD_EVAL | CMD_BENCH)
/* Scope of a train flag across ranks (dpt_cli_flag_text). Unmarked: the run's identity, every
 * rank must agree and checkpoints record it, so that a new flag is compared unless its row says
 * otherwise. CONTROL: ranks must agree (it decides which collectives run) but a resumed run may
 * differ. LOCAL: a rank's own (threads, output files, a rank's kernels: replicas stay identical
 * whatever each rank computes its gradients with, since they are averaged). */
#define LOCAL (1 << 8)
#define CONTROL (1 << 9)

extern const option_def_t dpt__cli_options[];
extern const size_t dpt__cli_n_options;

/* Every field at its default (the registry's and the other commands'). */
void dpt__cli_set_defaults(opts_t *o);

#endif
