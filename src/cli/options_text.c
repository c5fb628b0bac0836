/* options_text.c: the flag registry printed back: --help (with each flag's default read off the
 * defaults), the "--name=value" flag texts that ranks compare and checkpoints record
 * (dpt_cli_flag_text), and the enum flags' values (dptrain info). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/option_table.h"
#include "dptrain/optim.h"

#define options dpt__cli_options   /* the table, by its short name in this file */
#define N_OPTIONS dpt__cli_n_options

static void default_text(const option_def_t *d, char *buf, size_t n);

void dpt_cli_print_help(int cmd)
{
    static const char *what[] = {
        [CMD_TRAIN] = "train a model: one process, or one rank per process under mpirun / srun\n"
                       "  (launch/dptrain-run, launch/slurm/dptrain.sbatch; docs/USAGE.md)",
        [CMD_EVAL] = "evaluate saved weights on the test split",
        [CMD_BENCH] = "time training steps on a fixed synthetic batch (img/s, GFLOP/s)",
        [CMD_BENCH_AR] = "every all-reduce algorithm and MPI_Allreduce side by side, verified\n"
                         "  (run under mpirun: mpirun -np 4 build/dptrain bench allreduce)",
        [CMD_PREPARE] = "turn a folder of JPEGs into zstd shards for --data shards:DIR\n"
                        "  (bad files are reported and skipped; an unchanged re-run does nothing)",
    };
    printf("usage: dptrain %s [flags]\n  %s\n\nflags:\n", dpt_cli_cmd_name(cmd), what[cmd]);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const option_def_t *o = &options[i];
        if (!(o->cmds & cmd))
            continue;
        char left[64], def[128] = "";   /* " (default " + 96 + ")" */
        snprintf(left, sizeof left, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        default_text(o, def, sizeof def);
        printf("  %-26s %s%s\n", left, o->help, def);
    }
}

/* The k-th name of a '|'-separated list, into buf. */
static const char *choice_name(const char *choices, int k, char *buf, size_t n)
{
    const char *c = choices;
    for (; k > 0 && *c; k--)
        c += strcspn(c, "|") + (c[strcspn(c, "|")] == '|');
    size_t len = strcspn(c, "|");
    snprintf(buf, n, "%.*s", (int)len, c);
    return buf;
}

/* The shortest %g text that reads back as v (0.1, not 0.10000000000000001). */
static void format_double(double v, int max_digits, char *buf, size_t n)
{
    for (int digits = 6; digits <= max_digits; digits++) {
        snprintf(buf, n, "%.*g", digits, v);
        double back = strtod(buf, NULL);
        if (max_digits <= 9 ? (float)back == (float)v : back == v)
            return;
    }
}

/* One flag's effective value as text (the inverse of set_option, up to number formatting). */
static void format_value(const opts_t *o, const option_def_t *d, char *buf, size_t n)
{
    const void *p = (const char *)o + d->off;
    char tmp[64];
    switch (d->type) {
    case T_INT:
        if (d->lo == -1 && *(const int *)p == -1) {
            snprintf(buf, n, "auto");
            break;
        }
        /* fall through */
    case T_BOOL: snprintf(buf, n, "%d", *(const int *)p); break;
    case T_ENUM: snprintf(buf, n, "%s", choice_name(d->arg, *(const int *)p, tmp, sizeof tmp)); break;
    case T_LONG: snprintf(buf, n, "%ld", *(const long *)p); break;
    case T_U64: snprintf(buf, n, "%llu", (unsigned long long)*(const uint64_t *)p); break;
    case T_DOUBLE:
    case T_LSCALE: format_double(*(const double *)p, 17, buf, n); break;
    case T_FLOAT: format_double((double)*(const float *)p, 9, buf, n); break;
    case T_STR: snprintf(buf, n, "%s", *(const char *const *)p ? *(const char *const *)p : ""); break;
    case T_SCHED: snprintf(buf, n, "%s", dpt_schedule_name(*(const dpt_sched_kind_t *)p)); break;
    case T_SIZE: snprintf(buf, n, "%zu", *(const size_t *)p); break;
    case T_PREC: snprintf(buf, n, "%s", dpt_precision_name(*(const dpt_precision_t *)p)); break;
    default: snprintf(buf, n, "?"); break;
    }
}

/* " (default X)" for a row of the registry (a field of the train config) whose help does not
 * explain its default itself: X read off the defaults, as --help and the flag texts print it. */
static void default_text(const option_def_t *d, char *buf, size_t n)
{
    buf[0] = '\0';
    if (d->off >= sizeof(dpt_train_config_t) || strstr(d->help, "default"))
        return;
    static opts_t def;
    static int have;
    if (!have)
        dpt__cli_set_defaults(&def);
    have = 1;
    char val[96];
    format_value(&def, d, val, sizeof val);
    if (d->type == T_BOOL && *(const int *)((const char *)&def + d->off))
        snprintf(val, sizeof val, "on; --no-%s", d->name);
    else if (d->type == T_BOOL)
        snprintf(val, sizeof val, "off");
    if (*val)
        snprintf(buf, n, " (default %s)", val);
}

size_t dpt_cli_flag_text(const opts_t *o, int scope, char *buf, size_t n)
{
    size_t len = 0;
    if (n)
        buf[0] = '\0';
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const option_def_t *d = &options[i];
        if (!(d->cmds & CMD_TRAIN) || (scope != DPT_SCOPE_ALL && (d->cmds & LOCAL))
            || (scope == DPT_SCOPE_RUN && (d->cmds & CONTROL)) || d->off == O(help))
            continue;
        int alias = 0;   /* --device is --backend: once */
        for (size_t j = 0; j < i && !alias; j++)
            alias = (options[j].cmds & CMD_TRAIN) && options[j].off == d->off;
        if (alias)
            continue;
        char val[4096];
        format_value(o, d, val, sizeof val);
        int w = snprintf(len < n ? buf + len : NULL, len < n ? n - len : 0, "--%s=%s\n",
                         d->name, val);
        if (w > 0)
            len += (size_t)w;
    }
    return len;
}

void dpt_cli_print_choices(FILE *out)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (options[i].type == T_ENUM && (options[i].cmds & CMD_TRAIN)) {
            fprintf(out, "  --%s\n   ", options[i].name);
            char name[64];
            for (int k = 0; *choice_name(options[i].arg, k, name, sizeof name); k++)
                fprintf(out, " %s", name);
            fprintf(out, "\n");
        }
}
