/* model_expand_use.c: the [use] side of the block layer (the format is described in
 * model_expand.c, which reads the file and calls in here).
 *
 * What it holds: $references ($name or ${name}: parsing them, looking up variables), a [use]
 * section's keys (repeat, name and the body's $variables, each checked against the block), and
 * the expansion itself: each body line with its $variables substituted ($in: the layer before
 * the repetition), layer names prefixed PREFIX.R. and inputs that name body layers rewritten,
 * emitted through dpt__mx_emit. Split from model_expand.c so that reading the file and
 * defining blocks stay apart from pasting them; the shared state is in model_expand.h. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dptrain/alloc.h"
#include "model/internal.h"
#include "model/model_expand.h"

#define MAX_REPEAT 256

/* ---- $references (also checked by model_expand.c as a body is read) ---- */

static int ident_char(int c, int first)
{
    return isalpha(c) || c == '_' || (!first && isdigit(c));
}

static int is_ident(const char *s)
{
    if (!ident_char((unsigned char)*s, 1) || strlen(s) >= MAX_IDENT)
        return 0;
    while (*++s)
        if (!ident_char((unsigned char)*s, 0))
            return 0;
    return 1;
}

/* A $reference at s ('$'): $name or ${name}. Its length, and the name (copied), or 0 if bad. */
size_t dpt__mx_var_ref(const char *s, char name[MAX_IDENT])
{
    int brace = s[1] == '{';
    const char *b = s + 1 + brace, *e = b;
    while (ident_char((unsigned char)*e, e == b))
        e++;
    if (e == b || e - b >= MAX_IDENT || (brace && *e != '}'))
        return 0;
    memcpy(name, b, (size_t)(e - b));
    name[e - b] = '\0';
    return (size_t)(e - s) + (size_t)brace;
}

const var_t *dpt__mx_find_var(const var_t *v, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(v[i].name, name))
            return &v[i];
    return NULL;
}

/* ---- uses ---- */

void dpt__mx_use_clear(use_t *u)
{
    for (int i = 0; i < u->n_vars; i++)
        dpt_free(u->vars[i].value);
    memset(u, 0, sizeof *u);
}

dpt_status_t dpt__mx_begin_use(expander_t *x, use_t *u, const char *name, int line)
{
    dpt__mx_use_clear(u);
    if (!*name)
        return dpt__mx_err(x, line, 0, 0, "[use] needs a block name: [use NAME]");
    if (strlen(name) >= sizeof u->block || !dpt__mx_find_block(x, name))
        return dpt__mx_err(x, line, 0, 0, "[use %s]: no block named '%s' (define it with "
                           "[block %s] ... [end] before its use)", name, name, name);
    snprintf(u->block, sizeof u->block, "%s", name);
    u->line = line;
    u->repeat = 1;
    return DPT_OK;
}

dpt_status_t dpt__mx_use_key(expander_t *x, use_t *u, char *s, int line)
{
    char *eq = strchr(s, '=');
    if (!eq)
        return dpt__mx_err(x, line, 0, 0, "expected key = value in [use %s], got '%s'", u->block,
                           s);
    *eq = '\0';
    char *key = dpt__mx_trim(s), *val = dpt__mx_trim(eq + 1);
    if (strchr(val, '$'))
        return dpt__mx_err(x, line, 0, 0,
                           "%s: '%s': $ references work only inside a [block] body", key, val);
    int *seen = !strcmp(key, "repeat") ? &u->repeat_line : !strcmp(key, "name") ? &u->name_line
                                                                                : NULL;
    const var_t *dup = seen ? NULL : dpt__mx_find_var(u->vars, u->n_vars, key);
    if ((seen && *seen) || dup)
        return dpt__mx_err(x, line, 0, 0,
                           "duplicate key '%s' in [use %s] (first given on line %d)", key,
                           u->block, seen ? *seen : dup->line);
    if (seen == &u->repeat_line) {
        char *end;
        errno = 0;
        long r = strtol(val, &end, 10);
        if (errno || end == val || *end || r < 1 || r > MAX_REPEAT)
            return dpt__mx_err(x, line, 0, 0, "repeat: '%s' is not an integer in [1, %d]", val,
                               MAX_REPEAT);
        u->repeat = (int)r;
        u->repeat_line = line;
        return DPT_OK;
    }
    if (seen == &u->name_line) {
        if (!dpt__mx_is_label(val))
            return dpt__mx_err(x, line, 0, 0,
                               "name: '%s' must be 1-%d letters, digits, '_', '-' or '.'", val,
                               MAX_IDENT - 1);
        snprintf(u->prefix, sizeof u->prefix, "%s", val);
        u->name_line = line;
        return DPT_OK;
    }
    if (!strcmp(key, "in"))
        return dpt__mx_err(x, line, 0, 0, "[use %s]: 'in' cannot be set ($in is the layer "
                           "before each repetition)", u->block);
    if (!is_ident(key))
        return dpt__mx_err(x, line, 0, 0, "[use %s]: key '%s' is not repeat, name or a "
                           "$variable name (letters, digits, '_')", u->block, key);
    const block_t *b = dpt__mx_find_block(x, u->block);
    if (!dpt__mx_find_var(b->vars, b->n_vars, key))
        return dpt__mx_err(x, line, 0, 0, "[use %s]: key '%s' is not used by block '%s' (its "
                           "body has no $%s)", u->block, key, u->block, key);
    if (u->n_vars == MAX_VARS)   /* cannot happen: the block has at most MAX_VARS */
        return dpt__mx_err(x, line, 0, 0, "[use %s]: too many keys", u->block);
    var_t *v = &u->vars[u->n_vars];
    snprintf(v->name, sizeof v->name, "%s", key);
    v->line = line;
    if (!(v->value = dpt__mx_dup_str(val)))
        return dpt__mx_nomem(x);
    u->n_vars++;
    return DPT_OK;
}

/* Append s (n bytes) to out (length *len, capacity MAX_TEXT). */
static int put(char *out, size_t *len, const char *s, size_t n)
{
    if (*len + n >= MAX_TEXT)
        return -1;
    memcpy(out + *len, s, n);
    *len += n;
    out[*len] = '\0';
    return 0;
}

/* s with every $reference replaced, appended to out. */
static int subst(const use_t *u, const char *in_name, const char *s, char *out, size_t *len)
{
    for (const char *p = s; *p;) {
        const char *d = strchr(p, '$');
        if (!d)
            return put(out, len, p, strlen(p));
        if (put(out, len, p, (size_t)(d - p)))
            return -1;
        char name[MAX_IDENT];
        size_t n = dpt__mx_var_ref(d, name);   /* checked when the body was read */
        const var_t *v = dpt__mx_find_var(u->vars, u->n_vars, name);
        const char *val = !strcmp(name, "in") ? in_name : v ? v->value : "";
        if (put(out, len, val, strlen(val)))
            return -1;
        p = d + (n ? n : 1);
    }
    return 0;
}

static int is_body_name(const block_t *b, const char *s)
{
    for (int i = 0; i < b->n_names; i++)
        if (!strcmp(b->names[i], s))
            return 1;
    return 0;
}

/* One body line of repetition r: $variables substituted, layer names prefixed, inputs that name
 * body layers rewritten. */
static int expand_line(const block_t *b, const use_t *u, const char *prefix, int r,
                       const char *in_name, const char *s, char *out)
{
    size_t len = 0;
    char tmp[MAX_TEXT], pre[MAX_IDENT + 48];
    out[0] = '\0';
    snprintf(pre, sizeof pre, "%s.%d.", prefix, r);
    const char *eq = strchr(s, '=');
    if (s[0] == '[' || !eq || (size_t)(eq - s) >= sizeof tmp)
        return subst(u, in_name, s, out, &len);
    memcpy(tmp, s, (size_t)(eq - s));
    tmp[eq - s] = '\0';
    const char *key = dpt__mx_trim(tmp);
    const char *val = eq + 1;
    while (isspace((unsigned char)*val))
        val++;
    if (put(out, &len, key, strlen(key)) || put(out, &len, " = ", 3))
        return -1;
    if (!strcmp(key, "name"))
        return put(out, &len, pre, strlen(pre)) || subst(u, in_name, val, out, &len);
    if (strcmp(key, "input") && strcmp(key, "inputs"))
        return subst(u, in_name, val, out, &len);
    /* input lists: each comma-separated name on its own */
    for (const char *p = val;;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        char tok[MAX_TEXT];
        memcpy(tok, p, n);
        tok[n] = '\0';
        const char *t = dpt__mx_trim(tok);
        if (is_body_name(b, t) && put(out, &len, pre, strlen(pre)))
            return -1;
        if (subst(u, in_name, t, out, &len))
            return -1;
        if (!c)
            return 0;
        if (put(out, &len, ", ", 2))
            return -1;
        p = c + 1;
    }
}

dpt_status_t dpt__mx_flush_use(expander_t *x, use_t *u)
{
    block_t *b = dpt__mx_find_block(x, u->block);
    char at[600];
    for (int i = 0; i < b->n_vars; i++)
        if (!dpt__mx_find_var(u->vars, u->n_vars, b->vars[i].name))
            return dpt__mx_err(x, u->line, 0, 0, "[use %s]: block '%s' uses $%s (%s) but "
                               "this [use] does not set %s", u->block, b->name, b->vars[i].name,
                               dpt__mx_at(x, b->file, b->vars[i].line, at, sizeof at),
                               b->vars[i].name);
    b->uses++;
    char prefix[MAX_IDENT + 16];
    if (u->prefix[0])
        snprintf(prefix, sizeof prefix, "%s", u->prefix);
    else
        snprintf(prefix, sizeof prefix, "%s%d", b->name, b->uses);
    for (int r = 0; r < u->repeat; r++) {
        char in_name[MAX_TEXT + 16];
        snprintf(in_name, sizeof in_name, "%s", x->last);
        for (int i = 0; i < b->n_body; i++) {
            const bline_t *bl = &b->body[i];
            char text[MAX_TEXT];
            if (expand_line(b, u, prefix, r, in_name, bl->text, text))
                return dpt__mx_err_in(x, bl->file, bl->line, u->line, r, "line longer than %d "
                                      "characters after substitution", MAX_TEXT - 1);
            DPT_CHECK(dpt__mx_emit(x, text, bl->file, bl->line, u->line, r));
            if (x->out->truncated)
                return DPT_OK;
        }
    }
    return DPT_OK;
}
