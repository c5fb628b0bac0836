/* model_expand.h: private to the block expander, which is split in two by responsibility:
 * model_expand.c reads the files (following [include]s), records [block] definitions, drives the
 * expansion and owns the output (dpt__mx_emit); model_expand_use.c handles the [use] side (its keys, $variable
 * substitution, renaming body layers, building the expanded lines it emits). This header holds
 * the state both halves work on and the few helpers both call (dpt__mx_*); everything else
 * stays static in its file. Not public: the rest of the model code sees only dpt__model_expand
 * and dpt__mlines_t (internal.h). */
#ifndef DPT_MODEL_EXPAND_H
#define DPT_MODEL_EXPAND_H

#include <stddef.h>

#include "model/internal.h"

#define MAX_VARS 32              /* $variables of one [use] */
#define MAX_IDENT 64             /* block, variable and prefix names, with the NUL */
#define MAX_TEXT 4096            /* an expanded line, with the NUL */
#define MAX_INCLUDE_DEPTH 4      /* [include]s nest this deep (the model file is depth 0) */

typedef struct bline {
    char *text;
    int line;
    const char *file;            /* its file: NULL (the model file) or an [include]d one */
} bline_t;

typedef struct var {
    char name[MAX_IDENT];
    char *value;                 /* [use]: the value; block: NULL */
    int line;                    /* [use]: the key's line; block: first line using it */
} var_t;

typedef struct block {
    char name[MAX_IDENT];
    int line;                    /* of [block NAME] */
    const char *file;            /* of the definition (the body's; NULL: the model file) */
    int uses;
    bline_t *body;
    int n_body, cap_body;
    var_t vars[MAX_VARS];        /* the $variables the body uses (not $in) */
    int n_vars;
    char **names;                /* the body's layer names, as written */
    int n_names, cap_names;
} block_t;

typedef struct use {
    char block[MAX_IDENT];
    int line;                    /* of [use NAME] */
    int repeat, repeat_line;
    char prefix[MAX_IDENT];
    int name_line;
    var_t vars[MAX_VARS];
    int n_vars;
} use_t;

/* A file being read: the model file (frames[0]) or an [include]d one. */
typedef struct frame {
    const char *file;            /* NULL: the model file; else its path in out->files */
    int inc_line;                /* the line of the includer's [include] */
    int has_id;                  /* dev, ino known (stat worked) */
    unsigned long long dev, ino; /* to find include cycles */
} frame_t;

typedef struct expander {
    const char *path;            /* the model file */
    const char *file;            /* the file being read (frames[depth].file) */
    frame_t frames[MAX_INCLUDE_DEPTH + 1];
    int depth;
    int open_failed;             /* an [include]d file could not be opened (DPT_ERR_IO) */
    dpt__mlines_t *out;
    block_t *blocks;
    int n_blocks, cap_blocks;
    int n_layers;                /* layer sections emitted: the parser's default-name index */
    int in_layer;                /* the last emitted header was a layer (not [net]) */
    char last[MAX_TEXT + 16];    /* name of the last layer emitted ("data" before any) */
} expander_t;

/* model_expand.c: shared helpers, the block table and the output. */
char *dpt__mx_dup_str(const char *s);
char *dpt__mx_trim(char *s);
/* A format error at line of the file being read. */
dpt_status_t dpt__mx_err(const expander_t *x, int line, int use_line, int rep, const char *fmt,
                         ...) __attribute__((format(printf, 5, 6)));
/* The same at line of `file` (expanded text: the body's file; NULL: the model file), with the
 * [use] line and repetition (the [use] in the file being read). */
dpt_status_t dpt__mx_err_in(const expander_t *x, const char *file, int line, int use_line,
                            int rep, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* "line N" when file is the file being read, else "FILE:N", into buf. */
const char *dpt__mx_at(const expander_t *x, const char *file, int line, char *buf, size_t cap);
dpt_status_t dpt__mx_nomem(const expander_t *x);
int dpt__mx_is_label(const char *s);
block_t *dpt__mx_find_block(expander_t *x, const char *name);
/* text at line of file (NULL: the model file); from a [use] at use_line (0: none) of the file
 * being read, repetition rep. */
dpt_status_t dpt__mx_emit(expander_t *x, const char *text, const char *file, int line,
                          int use_line, int rep);

/* model_expand_use.c: $references and the [use] side, called by the driver. */
size_t dpt__mx_var_ref(const char *s, char name[MAX_IDENT]);
const var_t *dpt__mx_find_var(const var_t *v, int n, const char *name);
void dpt__mx_use_clear(use_t *u);
dpt_status_t dpt__mx_begin_use(expander_t *x, use_t *u, const char *name, int line);
dpt_status_t dpt__mx_use_key(expander_t *x, use_t *u, char *s, int line);
dpt_status_t dpt__mx_flush_use(expander_t *x, use_t *u);

#endif
