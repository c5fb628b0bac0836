/* options.c: the flag registry (see options.h) and the parser over it. */
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

/* The train configuration's rows (train_flags.h), then the other commands' own. */
#define ROW(ctype, field, def, name, type, lo, hi, cmds, arg, help) \
    {name, type, C(field), lo, hi, cmds, arg, help},
#define SGD_ROW(ctype, field, def, name, type, lo, hi, cmds, arg, help) \
    {name, type, C(sgd.field), lo, hi, cmds, arg, help},
static const option_def_t options[] = {
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
#define N_OPTIONS (sizeof options / sizeof options[0])

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

static void set_defaults(opts_t *o)
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
    set_defaults(o);
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
        set_defaults(&def);
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
