/* options.c: the flag registry (see options.h) and the parser over it: the command line and
 * --config files into dpt_cli_opts_t, with the range, choice and combination checks. Printing
 * the registry back (--help, the flag texts ranks compare and checkpoints record) is in
 * options_text.c. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/options.h"
#include "dptrain/coll.h"
#include "dptrain/compress.h"
#include "dptrain/dataset.h"
#include "dptrain/config.h"
#include "dptrain/optim.h"

#include "cli/option_table.h"


/* The train configuration's rows (train_flags.h), then the other commands' own. */
#define ROW(ctype, field, def, name, type, lo, hi, cmds, arg, help) \
    {name, type, C(field), lo, hi, cmds, arg, help},
#define SGD_ROW(ctype, field, def, name, type, lo, hi, cmds, arg, help) \
    {name, type, C(sgd.field), lo, hi, cmds, arg, help},
const option_def_t dpt__cli_options[] = {
    DPT_TRAIN_FLAGS(ROW)
    DPT_SGD_FLAGS(SGD_ROW)
    {"weights", T_STR, O(weights), 0, 0, CMD_EVAL, "FILE", "weights written by train --save (required)"},
    {"device", T_STR, C(backend), 0, 0, ALL, "cpu|cuda", "alias of --backend: cuda trains on the GPU (device = node-local rank modulo the GPUs)"},
    {"input", T_STR, O(prep.input_dir), 0, 0, CMD_PREPARE, "DIR",
     "JPEG folder: cat.N.jpg/dog.N.jpg files and/or one folder per class (Cat/, Dog/) (required)"},
    {"output", T_STR, O(prep.output_dir), 0, 0, CMD_PREPARE, "DIR", "where shard-*.dps and manifest.txt go; created if missing (required)"},
    {"size", T_INT, O(prep.size), 8, 1024, CMD_PREPARE, "S", "output images are S x S RGB (required; models/dvc-resnet.cfg wants 64)"},
    {"resize", T_STR, O(resize), 0, 0, CMD_PREPARE, "MODE",
     "shorter-crop (shorter side to S, center crop; default) or whole (squash to S x S)"},
    {"val-fraction", T_DOUBLE, O(prep.val_fraction), 0, 0.9, CMD_PREPARE, "F", "validation share of every class (default 0.1)"},
    {"force", T_BOOL, O(prep.force), 0, 0, CMD_PREPARE, NULL, "rebuild even if the manifest says the output is up to date"},
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
    {"window", T_BOOL, O(ar.window), 0, 0, CMD_BENCH_AR, NULL, "reduce a buffer inside the shm window (zero-copy shm; others treat it as any buffer)"},
    {"segment-bytes", T_SIZE, O(ar.segment_bytes), 0, 0, CMD_BENCH_AR, "N", "pipelining segment of ring and tree (default 256K)"},
    {"config", T_STR, O(config_file), 0, 0, ALL | CMD_BENCH_AR | CMD_PREPARE | LOCAL, "FILE", "read flags from FILE (lines 'name = value'); command-line flags win"},
    {"help", T_BOOL, O(help), 0, 0, ALL | CMD_BENCH_AR | CMD_PREPARE | LOCAL, NULL, "this help"},
};
#define N_OPTIONS (sizeof dpt__cli_options / sizeof dpt__cli_options[0])
#define options dpt__cli_options   /* the table, by its short name in this file */
const size_t dpt__cli_n_options = N_OPTIONS;

const char *dpt_cli_cmd_name(int cmd)
{
    return cmd == CMD_TRAIN ? "train" : cmd == CMD_EVAL ? "eval"
           : cmd == CMD_BENCH ? "bench train" : cmd == CMD_PREPARE ? "prepare"
           : "bench allreduce";
}

void dpt_cli_usage_error(int cmd, const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "dptrain %s: ", dpt_cli_cmd_name(cmd));
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (see 'dptrain %s --help')\n", dpt_cli_cmd_name(cmd));
}

/* The index of `val` in the '|'-separated `choices`, or -1. */
static int choice_index(const char *choices, const char *val)
{
    size_t n = strlen(val);
    int k = 0;
    for (const char *c = choices; *c; k++) {
        size_t len = strcspn(c, "|");
        if (len == n && !strncmp(c, val, n))
            return k;
        c += len + (c[len] == '|');
    }
    return -1;
}

/* "--NAME: VALUE is out of range [lo, hi]" as a usage error; returns 2. */
static int out_of_range(int cmd, const option_def_t *d, const char *val)
{
    char msg[192];
    snprintf(msg, sizeof msg, "%s is out of range [%g, %g]", val, d->lo, d->hi);
    dpt_cli_usage_error(cmd, "--%s: %s", d->name, msg);
    return 2;
}

/* Set one option from its text value. Returns 0 or prints an error and returns 2. */
/* The flags given (command line or --config file): the checks of combinations that one flag
 * makes meaningless need to tell a given value from a default. */
static unsigned char given[N_OPTIONS];

static int set_option(opts_t *o, int cmd, const option_def_t *d, const char *val, int negated)
{
    void *p = (char *)o + d->off;
    given[d - options] = 1;
    char *end;
    errno = 0;
    if (!(d->cmds & cmd)) {
        dpt_cli_usage_error(cmd, "flag '--%s' does not apply here%s", d->name, "");
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
                dpt_cli_usage_error(cmd, "--%s: '%s' is not a boolean (1/0, true/false)", d->name, val);
                return 2;
            }
        }
        *(int *)p = v;
        return 0;
    }
    if (!val) {
        dpt_cli_usage_error(cmd, "--%s needs a value%s", d->name, "");
        return 2;
    }
    if (negated) {
        dpt_cli_usage_error(cmd, "unknown flag '--no-%s'%s", d->name, "");
        return 2;
    }
    switch (d->type) {
    case T_INT:
    case T_LONG: {
        long v = strtol(val, &end, 10);
        if (d->lo == -1 && !strcmp(val, "auto"))   /* an integer whose -1 means auto */
            v = -1, end = (char *)val + 4;
        if (errno || end == val || *end) {
            dpt_cli_usage_error(cmd, d->lo == -1 ? "--%s: '%s' is not an integer (or auto)"
                                                 : "--%s: '%s' is not an integer", d->name, val);
            return 2;
        }
        if (v < d->lo || v > d->hi)
            return out_of_range(cmd, d, val);
        if (d->type == T_LONG)
            *(long *)p = v;
        else
            *(int *)p = (int)v;
        return 0;
    }
    case T_ENUM: {
        int k = choice_index(d->arg, val);
        if (k < 0) {
            char msg[256];
            snprintf(msg, sizeof msg, "'%s' is not one of %s", val, d->arg);
            dpt_cli_usage_error(cmd, "--%s: %s", d->name, msg);
            return 2;
        }
        *(int *)p = k;
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
            dpt_cli_usage_error(cmd, "--%s: '%s' is not a size (bytes, optional K, M or G)", d->name, val);
            return 2;
        }
        *(size_t *)p = (size_t)(v << shift);
        return 0;
    }
    case T_U64: {
        if (val[0] == '-') {
            dpt_cli_usage_error(cmd, "--%s: '%s' is not a non-negative integer", d->name, val);
            return 2;
        }
        unsigned long long v = strtoull(val, &end, 0);
        if (errno || end == val || *end) {
            dpt_cli_usage_error(cmd, "--%s: '%s' is not a non-negative integer", d->name, val);
            return 2;
        }
        *(uint64_t *)p = v;
        return 0;
    }
    case T_DOUBLE:
    case T_FLOAT: {
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v)) {
            dpt_cli_usage_error(cmd, "--%s: '%s' is not a number", d->name, val);
            return 2;
        }
        if (v < d->lo || v > d->hi)
            return out_of_range(cmd, d, val);
        if (d->type == T_FLOAT)
            *(float *)p = (float)v;
        else
            *(double *)p = v;
        return 0;
    }
    case T_STR:
        if (!*val) {
            dpt_cli_usage_error(cmd, "--%s: empty value%s", d->name, "");
            return 2;
        }
        if (!strcmp(d->name, "compress") && dpt_codec_check(val) != DPT_OK) {
            dpt_cli_usage_error(cmd, "%s%s", dpt_error_get(), "");
            return 2;
        }
        if (!strcmp(d->name, "allreduce")) {
            dpt_coll_algo_t a;
            if (dpt_coll_algo_from_name(val, &a) != DPT_OK) {
                dpt_cli_usage_error(cmd, "%s%s", dpt_error_get(), "");
                return 2;
            }
        }
        *(const char **)p = val;
        return 0;
    case T_SCHED:
        if (dpt_schedule_parse(val, (dpt_sched_kind_t *)p) != DPT_OK) {
            dpt_cli_usage_error(cmd, "--schedule: unknown schedule '%s' (cosine, linear, step, onecycle, "
                        "constant)%s", val, "");
            return 2;
        }
        return 0;
    case T_PREC:
        if (dpt_precision_parse(val, (dpt_precision_t *)p) != DPT_OK) {
            dpt_cli_usage_error(cmd, "--precision: '%s' is not fp32, bf16 or fp16%s", val, "");
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
            dpt_cli_usage_error(cmd, "--loss-scale: '%s' is not 'dynamic' or a number in [1, 2^24]%s",
                        val, "");
            return 2;
        }
        *(double *)p = v;
        return 0;
    }
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

/* Edit distance of a and b, capped at 3 (enough for a typo). */
static int distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 3;
    int row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb] < 3 ? row[lb] : 3;
}

/* The flag of `cmd` nearest to an unknown name (a typo, a missing or extra letter), or NULL. */
static const option_def_t *nearest_option(const char *name, int cmd)
{
    const option_def_t *best = NULL;
    int bd = 3;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        int d = distance(name, options[i].name);
        if ((options[i].cmds & cmd) && d < bd) {
            bd = d;
            best = &options[i];
        }
    }
    return best;
}

/* Parse argv flags ("--name value", "--name=value", "--flag", "--no-flag"). */
static int parse_args(opts_t *o, int cmd, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) || !a[2]) {
            dpt_cli_usage_error(cmd, "unexpected argument '%s'%s", a, "");
            return 2;
        }
        char name[64];
        const char *eq = strchr(a + 2, '=');
        size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (len >= sizeof name) {
            dpt_cli_usage_error(cmd, "unknown flag '%s'%s", a, "");
            return 2;
        }
        memcpy(name, a + 2, len);
        name[len] = '\0';
        int neg;
        const option_def_t *d = find_option(name, &neg);
        if (!d) {
            int no = !strncmp(name, "no-", 3);
            const option_def_t *near = nearest_option(no ? name + 3 : name, cmd);
            char hint[96] = "";
            if (near && (!no || near->type == T_BOOL))
                snprintf(hint, sizeof hint, " (did you mean --%s%s?)", no ? "no-" : "",
                         near->name);
            dpt_cli_usage_error(cmd, "unknown flag '--%s'%s", name, hint);
            return 2;
        }
        const char *val = eq ? eq + 1 : NULL;
        if (!val && d->type != T_BOOL) {
            if (i + 1 >= argc) {
                dpt_cli_usage_error(cmd, "--%s needs a value%s", d->name, "");
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
        fprintf(stderr, "dptrain %s: --config: %s: %s\n", dpt_cli_cmd_name(cmd), path, strerror(errno));
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
            fprintf(stderr, "dptrain %s: %s:%d: unknown flag '%s'\n", dpt_cli_cmd_name(cmd), path, ln, s);
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

void dpt__cli_set_defaults(opts_t *o)
{
    memset(o, 0, sizeof *o);
    dpt_train_config_default(&o->cfg);   /* the registry's defaults (train_flags.h) */
    o->warmup_steps = 5;
    o->bench_steps = 30;
    o->ar.min_bytes = 4;
    o->ar.max_bytes = (size_t)256 << 20;
    o->ar.factor = 4;
    o->ar.reps = 5;
    dpt_prepare_config_default(&o->prep);
}

/* Flags that another flag makes meaningless are refused rather than silently ignored. */
static int check_combinations(const opts_t *o, int cmd)
{
    if (cmd != CMD_TRAIN || o->cfg.sgd.optimizer != DPT_OPTIM_ADAMW)
        return 0;
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (given[i] && (options[i].off == C(sgd.momentum) || options[i].off == C(sgd.nesterov)
                         || options[i].off == C(sgd.lars_eta))) {
            dpt_cli_usage_error(cmd, "--%s: not used by --optimizer adamw (its moments decay "
                                "with --adam-beta1 and --adam-beta2)%s", options[i].name, "");
            return 2;
        }
    return 0;
}

int dpt_cli_parse(opts_t *o, int cmd, int argc, char **argv)
{
    dpt__cli_set_defaults(o);
    /* The config file first, so that command-line flags win. */
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            dpt_cli_print_help(cmd);
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
    int rc = parse_args(o, cmd, argc, argv);
    return rc ? rc : check_combinations(o, cmd);
}
