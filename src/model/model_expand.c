/* model_expand.c: the block layer of model files, run before the parser (model_parse.c).
 *
 *   [block NAME]        defines a body: the sections up to [end] (not emitted where defined)
 *   ...
 *   [end]
 *   [use NAME]          pastes the body `repeat` times (1-256, default 1); the other keys of
 *   repeat = 3          [use] are the body's $variables ($name or ${name}); $in is the name of
 *   name = stage1       the last layer before each repetition ("data" at the start). A layer
 *   width = 64          named X in the body becomes PREFIX.R.X (PREFIX: `name`, default the
 *                       block name and its use count, e.g. res1; R: 0, 1, ...), and inputs that
 *                       name body layers are rewritten to match (same repetition).
 *
 *   [include FILE]      at the top level (not in a body): FILE's lines in place, FILE relative
 *                       to the including file's directory (or absolute). It may define and use
 *                       blocks and hold layers, but not [net]; includes nest 4 deep, no cycles.
 *
 * Output: the file's non-empty lines with comments stripped and trimmed, blocks expanded, each
 * with its line (of the file; a body line's own line for expanded text), the [use] line and the
 * repetition, and for a line of an included file that file's name (the [use]'s file too). Blocks
 * do not nest. Every error names file:line: the included file's for its lines. The parser sees
 * only plain sections, so a file without blocks reads exactly as before.
 *
 * This file reads the files (the driver dpt__model_expand, read_file, include), records [block]
 * definitions, emits output lines and holds the helpers both halves share; the [use] side (its
 * keys, $variable substitution, renaming body layers, pasting the body) is in model_expand_use.c,
 * split off to keep each file to one responsibility. Their shared state is in model_expand.h. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dptrain/alloc.h"
#include "model/internal.h"
#include "model/model_expand.h"

/* Grow the array *pv (elements of `elem` bytes, capacity *cap) to hold `need`. 0 or -1. */
static int grow(void *pv, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return 0;
    int nc = *cap ? *cap : 16;
    while (nc < need)
        nc *= 2;
    void *old, *nv = dpt_malloc((size_t)nc * elem);
    if (!nv)
        return -1;
    memcpy(&old, pv, sizeof old);
    if (old)
        memcpy(nv, old, (size_t)*cap * elem);
    dpt_free(old);
    memcpy(pv, &nv, sizeof nv);
    *cap = nc;
    return 0;
}

char *dpt__mx_dup_str(const char *s)
{
    size_t n = strlen(s);
    char *d = dpt_malloc(n + 1);
    if (d)
        memcpy(d, s, n + 1);
    return d;
}

char *dpt__mx_trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

void dpt__mline_where(char *buf, size_t cap, const char *file, const char *use_file,
                      int use_line, int rep)
{
    if (use_line > 0 && strcmp(file, use_file))
        snprintf(buf, cap, " (in the block used at %s:%d, repeat %d)", use_file, use_line, rep);
    else if (use_line > 0)
        snprintf(buf, cap, " (in the block used at line %d, repeat %d)", use_line, rep);
    else if (cap)
        buf[0] = '\0';
}

static const char *file_name(const expander_t *x, const char *file)
{
    return file ? file : x->path;
}

static dpt_status_t verr(const expander_t *x, const char *file, int line, int use_line, int rep,
                         const char *fmt, va_list ap)
{
    char msg[768], where[1100];
    vsnprintf(msg, sizeof msg, fmt, ap);
    dpt__mline_where(where, sizeof where, file_name(x, file), file_name(x, x->file), use_line,
                     rep);
    return dpt_error_set(DPT_ERR_FORMAT, "%s:%d: %s%s", file_name(x, file), line, msg, where);
}

dpt_status_t dpt__mx_err(const expander_t *x, int line, int use_line, int rep, const char *fmt,
                         ...)
{
    va_list ap;
    va_start(ap, fmt);
    dpt_status_t st = verr(x, x->file, line, use_line, rep, fmt, ap);
    va_end(ap);
    return st;
}

dpt_status_t dpt__mx_err_in(const expander_t *x, const char *file, int line, int use_line,
                            int rep, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dpt_status_t st = verr(x, file, line, use_line, rep, fmt, ap);
    va_end(ap);
    return st;
}

const char *dpt__mx_at(const expander_t *x, const char *file, int line, char *buf, size_t cap)
{
    if (file == x->file)
        snprintf(buf, cap, "line %d", line);
    else
        snprintf(buf, cap, "%s:%d", file_name(x, file), line);
    return buf;
}

dpt_status_t dpt__mx_nomem(const expander_t *x)
{
    return dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory", x->path);
}

/* A well-formed header "[...]": its trimmed inside into buf (cap >= strlen(s)). */
static int header(const char *s, char *buf)
{
    const char *e = strchr(s, ']');
    if (s[0] != '[' || !e || e[1])
        return 0;
    memcpy(buf, s + 1, (size_t)(e - s - 1));
    buf[e - s - 1] = '\0';
    char *t = dpt__mx_trim(buf);
    memmove(buf, t, strlen(t) + 1);
    return 1;
}

enum { H_SECTION, H_BLOCK, H_USE, H_END, H_INCLUDE };

/* Which kind of header `inner` is; *arg: the text after "block"/"use"/"end" (trimmed). */
static int header_kind(char *inner, char **arg)
{
    static const struct {
        const char *word;
        int kind;
    } words[] = {{"block", H_BLOCK}, {"use", H_USE}, {"end", H_END}, {"include", H_INCLUDE}};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        size_t n = strlen(words[i].word);
        if (!strncmp(inner, words[i].word, n) && (!inner[n] || isspace((unsigned char)inner[n]))) {
            *arg = dpt__mx_trim(inner + n);
            return words[i].kind;
        }
    }
    *arg = NULL;
    return H_SECTION;
}

/* Block names and prefixes: letters, digits, '_', '-', '.' (no ',' or spaces: they end up in
 * input lists). */
int dpt__mx_is_label(const char *s)
{
    if (!*s || strlen(s) >= MAX_IDENT)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("_-.", *s))
            return 0;
    return 1;
}

block_t *dpt__mx_find_block(expander_t *x, const char *name)
{
    for (int i = 0; i < x->n_blocks; i++)
        if (!strcmp(x->blocks[i].name, name))
            return &x->blocks[i];
    return NULL;
}

/* Append one output line; track layer count and the last layer's name as the parser will see
 * them (default name: type + index). */
dpt_status_t dpt__mx_emit(expander_t *x, const char *text, const char *file, int line,
                          int use_line, int rep)
{
    dpt__mlines_t *o = x->out;
    if (grow(&o->v, &o->cap, o->n + 1, sizeof *o->v))
        return dpt__mx_nomem(x);
    char *t = dpt__mx_dup_str(text);
    if (!t)
        return dpt__mx_nomem(x);
    o->v[o->n++] = (dpt__mline_t){t, line, use_line, rep, file, use_line > 0 ? x->file : NULL};
    char inner[MAX_TEXT];
    if (strlen(text) < sizeof inner && header(text, inner)) {
        x->in_layer = strcmp(inner, "net") != 0;
        if (x->in_layer) {
            snprintf(x->last, sizeof x->last, "%s%d", inner, x->n_layers++);
            /* The parser refuses this layer ("more than N layers"): nothing after it matters,
             * and a runaway expansion stops here. */
            if (x->n_layers >= DPT__MODEL_MAX_LAYERS)
                o->truncated = 1;
        }
        return DPT_OK;
    }
    const char *eq = strchr(text, '=');
    if (x->in_layer && eq) {
        char key[MAX_IDENT];
        size_t n = (size_t)(eq - text);
        if (n < sizeof key) {
            memcpy(key, text, n);
            key[n] = '\0';
            if (!strcmp(dpt__mx_trim(key), "name")) {
                char val[MAX_TEXT];
                snprintf(val, sizeof val, "%s", eq + 1);
                snprintf(x->last, sizeof x->last, "%s", dpt__mx_trim(val));
            }
        }
    }
    return DPT_OK;
}

/* ---- definitions ---- */

static dpt_status_t begin_block(expander_t *x, const char *name, int line, block_t **out)
{
    if (!*name)
        return dpt__mx_err(x, line, 0, 0, "[block] needs a name: [block NAME]");
    if (!dpt__mx_is_label(name))
        return dpt__mx_err(x, line, 0, 0,
                           "block name '%s' must be 1-%d letters, digits, '_', '-' or '.'", name,
                           MAX_IDENT - 1);
    const block_t *old = dpt__mx_find_block(x, name);
    char at[600];
    if (old)
        return dpt__mx_err(x, line, 0, 0, "block '%s' is already defined (%s)", name,
                           dpt__mx_at(x, old->file, old->line, at, sizeof at));
    if (grow(&x->blocks, &x->cap_blocks, x->n_blocks + 1, sizeof *x->blocks))
        return dpt__mx_nomem(x);
    block_t *b = &x->blocks[x->n_blocks++];
    memset(b, 0, sizeof *b);
    snprintf(b->name, sizeof b->name, "%s", name);
    b->line = line;
    b->file = x->file;
    *out = b;
    return DPT_OK;
}

/* One line of a body: check its $references and record them and its layer name. */
static dpt_status_t body_add(expander_t *x, block_t *b, const char *s, int line)
{
    if (b->n_body == 0 && s[0] != '[')
        return dpt__mx_err(x, line, 0, 0,
                           "'%s': the body of [block %s] must start with a [section]", s, b->name);
    for (const char *d = strchr(s, '$'); d; d = strchr(d + 1, '$')) {
        char name[MAX_IDENT];
        if (!dpt__mx_var_ref(d, name))
            return dpt__mx_err(x, line, 0, 0, "bad $ reference in '%s' (use $name or ${name}; "
                               "names are letters, digits and '_')", s);
        if (!strcmp(name, "repeat") || !strcmp(name, "name"))
            return dpt__mx_err(x, line, 0, 0,
                               "$%s: repeat and name are keys of [use], not variables", name);
        if (!strcmp(name, "in") || dpt__mx_find_var(b->vars, b->n_vars, name))
            continue;
        if (b->n_vars == MAX_VARS)
            return dpt__mx_err(x, line, 0, 0, "[block %s] uses more than %d $variables",
                               b->name, MAX_VARS);
        var_t *v = &b->vars[b->n_vars++];
        snprintf(v->name, sizeof v->name, "%s", name);
        v->value = NULL;
        v->line = line;
    }
    const char *eq = strchr(s, '=');
    if (s[0] != '[' && eq) {
        char key[MAX_IDENT];
        size_t n = (size_t)(eq - s);
        if (n < sizeof key) {
            memcpy(key, s, n);
            key[n] = '\0';
            if (!strcmp(dpt__mx_trim(key), "name")) {
                char val[MAX_TEXT];
                snprintf(val, sizeof val, "%s", eq + 1);
                if (!*dpt__mx_trim(val))
                    return dpt__mx_err(x, line, 0, 0, "name: a layer name cannot be empty");
                if (grow(&b->names, &b->cap_names, b->n_names + 1, sizeof *b->names) ||
                    !(b->names[b->n_names] = dpt__mx_dup_str(dpt__mx_trim(val))))
                    return dpt__mx_nomem(x);
                b->n_names++;
            }
        }
    }
    if (grow(&b->body, &b->cap_body, b->n_body + 1, sizeof *b->body))
        return dpt__mx_nomem(x);
    if (!(b->body[b->n_body].text = dpt__mx_dup_str(s)))
        return dpt__mx_nomem(x);
    b->body[b->n_body].file = x->file;
    b->body[b->n_body++].line = line;
    return DPT_OK;
}

/* ---- the file ---- */

static void free_blocks(expander_t *x)
{
    for (int i = 0; i < x->n_blocks; i++) {
        block_t *b = &x->blocks[i];
        for (int k = 0; k < b->n_body; k++)
            dpt_free(b->body[k].text);
        for (int k = 0; k < b->n_names; k++)
            dpt_free(b->names[k]);
        dpt_free(b->body);
        dpt_free(b->names);
    }
    dpt_free(x->blocks);
}

static const char *add_file(expander_t *x, const char *path)
{
    dpt__mlines_t *o = x->out;
    for (int i = 0; i < o->n_files; i++)
        if (!strcmp(o->files[i], path))
            return o->files[i];
    if (grow(&o->files, &o->cap_files, o->n_files + 1, sizeof *o->files))
        return NULL;
    char *d = dpt__mx_dup_str(path);
    if (d)
        o->files[o->n_files++] = d;
    return d;
}

/* Its device and inode, to find include cycles. */
static void file_id(frame_t *fr, const char *path)
{
    struct stat sb;
    fr->has_id = stat(path, &sb) == 0;
    fr->dev = fr->has_id ? (unsigned long long)sb.st_dev : 0;
    fr->ino = fr->has_id ? (unsigned long long)sb.st_ino : 0;
}

static dpt_status_t read_file(expander_t *x, FILE *f, int *n_lines);

/* [include NAME] at `line` of the file being read: NAME's lines in place (NAME in the
 * includer's directory unless absolute). */
static dpt_status_t include(expander_t *x, const char *name, int line)
{
    if (!*name)
        return dpt__mx_err(x, line, 0, 0, "[include] needs a file: [include FILE]");
    const char *inc = file_name(x, x->file), *slash = strrchr(inc, '/');
    char path[1024];
    int n = name[0] == '/' || !slash
                ? snprintf(path, sizeof path, "%s", name)
                : snprintf(path, sizeof path, "%.*s/%s", (int)(slash - inc), inc, name);
    if (n < 0 || (size_t)n >= sizeof path)
        return dpt__mx_err(x, line, 0, 0, "[include %s]: path longer than %d characters", name,
                           (int)sizeof path - 1);
    /* only regular files: never a FIFO or a device that would block or never end */
    struct stat sb;
    const char *why = stat(path, &sb) ? strerror(errno)
                      : !S_ISREG(sb.st_mode) ? "not a regular file" : NULL;
    FILE *f = why ? NULL : fopen(path, "r");
    if (!why && !f)
        why = strerror(errno);
    if (why) {
        x->open_failed = 1;
        return dpt_error_set(DPT_ERR_IO, "%s:%d: [include %s]: cannot open %s: %s", inc, line,
                             name, path, why);
    }
    frame_t fr = {.inc_line = line, .has_id = 1, .dev = (unsigned long long)sb.st_dev,
                  .ino = (unsigned long long)sb.st_ino};
    for (int d = 0; d <= x->depth; d++)
        if (x->frames[d].has_id && x->frames[d].dev == fr.dev && x->frames[d].ino == fr.ino) {
            fclose(f);
            return dpt__mx_err(x, line, 0, 0, "[include %s]: an include cycle (%s is already "
                               "being read)", name, file_name(x, x->frames[d].file));
        }
    if (x->depth == MAX_INCLUDE_DEPTH) {
        fclose(f);
        return dpt__mx_err(x, line, 0, 0, "[include %s]: includes nest deeper than %d", name,
                           MAX_INCLUDE_DEPTH);
    }
    if (!(fr.file = add_file(x, path))) {
        fclose(f);
        return dpt__mx_nomem(x);
    }
    const char *saved = x->file;
    x->frames[++x->depth] = fr;
    x->file = fr.file;
    int lines;
    dpt_status_t st = read_file(x, f, &lines);
    fclose(f);
    x->file = saved;
    x->depth--;
    return st;
}

/* One file's lines, the model file's or an included one's (x->file). */
static dpt_status_t read_file(expander_t *x, FILE *f, int *n_lines)
{
    dpt__mlines_t *out = x->out;
    enum { TOP, BODY, USE, AFTER_END, AFTER_INCLUDE, INCLUDED } state = x->depth ? INCLUDED : TOP;
    block_t *blk = NULL;   /* the block being defined (BODY) */
    int blk_index = -1;
    use_t use = {0};
    char raw[1024];
    int line = 0;
    dpt_status_t st = DPT_OK;
    while (st == DPT_OK && !out->truncated && fgets(raw, sizeof raw, f)) {
        line++;
        if (!strchr(raw, '\n') && !feof(f)) {
            st = dpt__mx_err(x, line, 0, 0, "line longer than 1023 characters");
            break;
        }
        char *hash = strchr(raw, '#');
        if (hash)
            *hash = '\0';
        char *s = dpt__mx_trim(raw);
        if (!*s)
            continue;
        char inner[sizeof raw], *arg = NULL;
        int is_hdr = header(s, inner);
        int kind = is_hdr ? header_kind(inner, &arg) : H_SECTION;
        if (is_hdr && kind == H_SECTION && x->depth && !strcmp(inner, "net")) {
            st = dpt__mx_err(x, line, 0, 0, "[net] in a file included by %s:%d: only the model "
                             "file has [net]", file_name(x, x->frames[x->depth - 1].file),
                             x->frames[x->depth].inc_line);
            break;
        }
        if (state == BODY) {
            blk = &x->blocks[blk_index];   /* x->blocks does not move while a body is read */
            if (is_hdr && kind == H_END) {
                if (*arg)
                    st = dpt__mx_err(x, line, 0, 0, "[end] takes no name");
                else if (blk->n_body == 0)
                    st = dpt__mx_err(x, line, 0, 0, "[block %s] (line %d) is empty",
                                     blk->name, blk->line);
                state = AFTER_END;
            } else if (is_hdr && kind == H_INCLUDE) {
                st = dpt__mx_err(x, line, 0, 0, "[include] inside [block %s] (line %d): "
                                 "[include] works only outside blocks", blk->name, blk->line);
            } else if (is_hdr && (kind == H_BLOCK || kind == H_USE)) {
                st = dpt__mx_err(x, line, 0, 0,
                                 "[%s] inside [block %s] (line %d): blocks do not nest",
                                 kind == H_BLOCK ? "block" : "use", blk->name, blk->line);
            } else {
                st = body_add(x, blk, s, line);
            }
            continue;
        }
        if (state == USE) {
            if (!is_hdr) {
                st = dpt__mx_use_key(x, &use, s, line);
                continue;
            }
            st = dpt__mx_flush_use(x, &use);
            state = TOP;
            if (st != DPT_OK || out->truncated)
                break;
        }
        if (!is_hdr && state != TOP) {
            st = dpt__mx_err(x, line, 0, 0, state == AFTER_END ? "'%s' after [end]: start a "
                             "[section] first" : state == AFTER_INCLUDE ? "'%s' after [include]: "
                             "start a [section] first" : "'%s': an included file must start "
                             "with a [section]", s);
            break;
        }
        if (strchr(s, '$')) {
            st = dpt__mx_err(x, line, 0, 0,
                             "'%s': $ references work only inside a [block] body", s);
            break;
        }
        if (!is_hdr) {
            st = dpt__mx_emit(x, s, x->file, line, 0, 0);
            continue;
        }
        switch (kind) {
        case H_BLOCK:
            st = begin_block(x, arg, line, &blk);
            blk_index = x->n_blocks - 1;
            state = BODY;
            break;
        case H_USE:
            st = dpt__mx_begin_use(x, &use, arg, line);
            state = USE;
            break;
        case H_END:
            st = dpt__mx_err(x, line, 0, 0, "[end] without a [block NAME] before it");
            break;
        case H_INCLUDE:
            st = include(x, arg, line);
            state = AFTER_INCLUDE;
            break;
        default:
            st = dpt__mx_emit(x, s, x->file, line, 0, 0);
            state = TOP;
            break;
        }
    }
    if (st == DPT_OK && !out->truncated) {
        if (ferror(f))
            st = dpt_error_set(DPT_ERR_IO, "%s: read error", file_name(x, x->file));
        else if (state == BODY)
            st = dpt__mx_err(x, x->blocks[blk_index].line, 0, 0, "[block %s] has no [end]",
                             x->blocks[blk_index].name);
        else if (state == USE)
            st = dpt__mx_flush_use(x, &use);
    }
    dpt__mx_use_clear(&use);
    *n_lines = line;
    return st;
}

dpt_status_t dpt__model_expand(const char *path, dpt__mlines_t *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f)
        return dpt_error_set(DPT_ERR_IO, "%s: %s", path, strerror(errno));
    expander_t x = {.path = path, .out = out};
    file_id(&x.frames[0], path);
    snprintf(x.last, sizeof x.last, "data");
    dpt_status_t st = read_file(&x, f, &out->n_file_lines);
    fclose(f);
    free_blocks(&x);
    /* for the parser, after the lines before it: a bad line, or an [include] that cannot open */
    if (st == DPT_ERR_FORMAT || (st == DPT_ERR_IO && x.open_failed)) {
        out->st = st;
        snprintf(out->msg, sizeof out->msg, "%s", dpt_error_get());
        return DPT_OK;
    }
    if (st != DPT_OK)
        dpt__mlines_free(out);
    return st;
}

void dpt__mlines_free(dpt__mlines_t *m)
{
    for (int i = 0; i < m->n; i++)
        dpt_free(m->v[i].text);
    for (int i = 0; i < m->n_files; i++)
        dpt_free(m->files[i]);
    dpt_free(m->v);
    dpt_free(m->files);
    m->v = NULL;
    m->files = NULL;
    m->n = m->cap = m->truncated = m->n_file_lines = 0;
    m->n_files = m->cap_files = 0;
}
