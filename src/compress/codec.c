/* codec.c: the registry of gradient codecs (compress.h) and what every codec shares: parsing
 * "--compress NAME[:ARG][+zstd]", one state per bucket (and its wire, wire.h, for +zstd), the
 * timing of encode and decode. */
#include <stdio.h>
#include <string.h>

#include "compress/internal.h"
#include "dptrain/alloc.h"

static const dpt__codec_ops_t *const codecs[] = {&dpt__codec_fp16, &dpt__codec_bf16,
                                                  &dpt__codec_topk, &dpt__codec_powersgd,
                                                  &dpt__codec_sign};
#define N_CODECS (sizeof codecs / sizeof codecs[0])

struct dpt_codec {
    const dpt__codec_ops_t *ops;
    void *state;
    size_t n;
    long start_step;
    dpt__wire_t *wire;   /* "+zstd"; NULL without */
};

const char *dpt_codec_list(void)
{
    return "none,fp16,bf16,topk:FRACTION,powersgd[:RANK],sign[:BLOCK],CODEC+zstd";
}

/* The codec a spec names (NULL for "none"), and its argument after ':' (NULL if none). */
static dpt_status_t find(const char *spec, const dpt__codec_ops_t **ops, const char **arg)
{
    *ops = NULL;
    *arg = NULL;
    if (!spec || !strcmp(spec, "none"))
        return DPT_OK;
    size_t len = strcspn(spec, ":");
    for (size_t i = 0; i < N_CODECS; i++)
        if (strlen(codecs[i]->name) == len && !strncmp(codecs[i]->name, spec, len)) {
            *ops = codecs[i];
            *arg = spec[len] == ':' ? spec + len + 1 : NULL;
            return DPT_OK;
        }
    return dpt_error_set(DPT_ERR_INVALID_ARG, "--compress: unknown codec '%s' (known: %s)", spec,
                         dpt_codec_list());
}

/* A spec taken apart: the codec and its argument, and whether "+zstd" ends it (then "none"
 * means the fp32 average through the wire: dpt__codec_fp32). */
#define ZSTD_SUFFIX "+zstd"
typedef struct parsed {
    const dpt__codec_ops_t *ops;
    const char *arg;
    int zstd;
    char text[128];   /* the spec without the suffix */
} parsed_t;

static dpt_status_t parse(const char *spec, parsed_t *s)
{
    size_t len = spec ? strlen(spec) : 0, sl = strlen(ZSTD_SUFFIX);
    s->zstd = len >= sl && !strcmp(spec + len - sl, ZSTD_SUFFIX);
    if (len >= sizeof s->text)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--compress: '%.40s...' is too long", spec);
    snprintf(s->text, sizeof s->text, "%.*s", (int)(len - (s->zstd ? sl : 0)), spec ? spec : "");
    DPT_CHECK(find(spec ? s->text : NULL, &s->ops, &s->arg));
    if (s->zstd && !s->ops)
        s->ops = &dpt__codec_fp32;
    return DPT_OK;
}

dpt_status_t dpt_codec_check(const char *spec)
{
    parsed_t ps;
    DPT_CHECK(parse(spec, &ps));
    const dpt__codec_ops_t *ops = ps.ops;
    const char *arg = ps.arg;
    if (ps.zstd && !ops->set_wire) {
        char known[128] = "none";
        for (size_t i = 0; i < N_CODECS; i++)
            if (codecs[i]->set_wire) {
                size_t k = strlen(known);
                snprintf(known + k, sizeof known - k, ", %s", codecs[i]->name);
            }
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--compress %s: %s does not take +zstd (%s "
                             "do)", spec, ops->name, known);
    }
    if (ops && arg && ops->needs_arg == DPT__ARG_NONE)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--compress %s: %s takes no argument", spec,
                             ops->name);
    if (ops && (ops->needs_arg == DPT__ARG_REQUIRED || arg)) {   /* the codec checks it */
        void *state = NULL;
        const dpt_codec_bucket_t none = {.n = 0, .ranks = 1};
        DPT_CHECK(ops->create(arg, &none, &state));
        ops->destroy(state);
    }
    return DPT_OK;
}

dpt_status_t dpt_codec_create(const char *spec, const dpt_codec_bucket_t *bucket,
                              dpt_codec_t **out)
{
    *out = NULL;
    DPT_CHECK(dpt_codec_check(spec));
    parsed_t ps;
    DPT_CHECK(parse(spec, &ps));
    const dpt__codec_ops_t *ops = ps.ops;
    const char *arg = ps.arg;
    if (!ops)
        return DPT_OK;
    dpt_codec_t *c = dpt_calloc(sizeof *c);
    if (!c)
        return dpt_error_set(DPT_ERR_NOMEM, "--compress %s: out of memory", spec);
    c->ops = ops;
    c->n = bucket->n;
    c->start_step = bucket->start_step;
    dpt_codec_bucket_t bk = *bucket;
    if (bk.ranks < 1)
        bk.ranks = 1;
    dpt_status_t st = ops->create(arg, &bk, &c->state);
    if (st != DPT_OK) {
        dpt_free(c);
        return st;
    }
    if (ps.zstd) {
        st = dpt__wire_create(&c->wire);
        if (st == DPT_OK)
            st = ops->set_wire(c->state, c->wire);
        if (st != DPT_OK) {
            dpt_codec_destroy(c);
            return st;
        }
    }
    *out = c;
    return DPT_OK;
}

void dpt_codec_destroy(dpt_codec_t *c)
{
    if (!c)
        return;
    c->ops->destroy(c->state);
    dpt__wire_destroy(c->wire);
    dpt_free(c);
}

dpt_status_t dpt_codec_allreduce(dpt_codec_t *c, dpt_coll_t *coll, float *buf, size_t n,
                                 dpt_coll_algo_t algo, long step, dpt_codec_stats_t *stats)
{
    dpt_codec_stats_t s = {0, 0};
    if (n > c->n)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "codec %s: %zu floats, made for %zu",
                             c->ops->name, n, c->n);
    dpt_status_t st;
    if (step < c->start_step) {   /* --compress-start: plain fp32 first, the state untouched */
        int p = dpt_coll_size(coll);
        s.bytes_sent = p > 1 ? (double)n * 4.0 * 2.0 * (p - 1) / p : 0.0;
        st = dpt_coll_allreduce(coll, buf, n, DPT_DTYPE_F32, DPT_REDOP_AVG, algo);
    } else
        st = c->ops->allreduce(c->state, coll, buf, n, algo, step, &s);
    if (stats)
        *stats = s;
    return st;
}

double dpt_codec_ratio(const dpt_codec_t *c, size_t n)
{
    return c ? c->ops->ratio(c->state, n) : 1.0;
}

float *dpt_codec_state(dpt_codec_t *c, size_t *n)
{
    *n = 0;
    return c && c->ops->state ? c->ops->state(c->state, n) : NULL;
}

int dpt_codec_stateful(const char *spec)
{
    parsed_t ps;
    return parse(spec, &ps) == DPT_OK && ps.ops && ps.ops->state;
}

long dpt_codec_auto_start(const char *spec, long warmup_steps)
{
    parsed_t ps;
    if (parse(spec, &ps) != DPT_OK || !ps.ops || !ps.ops->start_after_warmup)
        return 0;
    return warmup_steps > 0 ? warmup_steps : 0;
}

int dpt_codec_owns_momentum(const char *spec)
{
    parsed_t ps;
    return parse(spec, &ps) == DPT_OK && ps.ops && ps.ops->owns_momentum;
}
