/* scan.c: `dptrain prepare`'s view of the input folder: top-level <class>.<x>.jpg files and one
 * folder per class (names lowercased), sorted by path, classes numbered in sorted order. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "dptrain/alloc.h"
#include "dptrain/shard.h"
#include "prep/internal.h"

static int has_jpeg_ext(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

static dpt_status_t add_entry(scan_t *s, const char *rel, const char *cls, size_t cls_len,
                              const struct stat *sb)
{
    if (s->n >= MAX_FILES)
        return dpt_error_set(DPT_ERR_FORMAT, "%s: more than %d JPEG files", s->root, MAX_FILES);
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 1024;
        entry_t *e = dpt_calloc((size_t)cap * sizeof *e);
        if (!e)
            return dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory for the file list", s->root);
        if (s->n)
            memcpy(e, s->e, (size_t)s->n * sizeof *e);
        dpt_free(s->e);
        s->e = e;
        s->cap = cap;
    }
    entry_t *e = &s->e[s->n];
    memset(e, 0, sizeof *e);
    e->rel = strdup(rel);
    if (!e->rel)
        return dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory for the file list", s->root);
    s->n++;
    e->bad = -1;
    e->size = (uint64_t)sb->st_size;
    e->mtime_sec = (int64_t)sb->st_mtim.tv_sec;
    e->mtime_nsec = (int64_t)sb->st_mtim.tv_nsec;
    if (strpbrk(rel, "\n\r")) {
        e->bad = DPT_PREP_BAD_UNREADABLE;
        snprintf(e->why, sizeof e->why, "file name contains a line break");
    } else if (cls_len == 0) {
        e->bad = DPT_PREP_BAD_UNLABELED;
        snprintf(e->why, sizeof e->why, "no class: expected <class>.<n>.jpg (cat.0.jpg) at the "
                 "top level or a file inside a class folder");
    } else if (cls_len >= DPT_SHARD_CLASS_NAME) {
        e->bad = DPT_PREP_BAD_UNLABELED;
        snprintf(e->why, sizeof e->why, "class name longer than %d bytes",
                 DPT_SHARD_CLASS_NAME - 1);
    } else {
        for (size_t i = 0; i < cls_len; i++)
            e->cls[i] = (char)tolower((unsigned char)cls[i]);
    }
    return DPT_OK;
}

/* One folder level: `sub` is NULL for the input folder itself, else the class folder name. */
dpt_status_t dpt__prep_scan_dir(scan_t *s, const char *sub)
{
    char dirpath[4096];
    snprintf(dirpath, sizeof dirpath, "%s%s%s", s->root, sub ? "/" : "", sub ? sub : "");
    DIR *d = opendir(dirpath);
    if (!d)
        return dpt_error_set(DPT_ERR_IO, "%s%s: %s", sub ? "" : "--input ", dirpath,
                             strerror(errno));
    dpt_status_t st = DPT_OK;
    struct dirent *de;
    while (st == DPT_OK && (de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (!strcmp(name, ".") || !strcmp(name, ".."))
            continue;
        char path[4096], rel[4096];
        int nr = snprintf(rel, sizeof rel, "%s%s%s", sub ? sub : "", sub ? "/" : "", name);
        int np = snprintf(path, sizeof path, "%s/%s", s->root, rel);
        struct stat sb;
        if (nr >= (int)sizeof rel || np >= (int)sizeof path || stat(path, &sb) != 0) {
            s->ignored++;   /* dangling link, vanished file, absurd name */
            continue;
        }
        if (S_ISDIR(sb.st_mode)) {
            if (sub || name[0] == '.')
                s->ignored++;   /* nested or hidden folders are not classes */
            else
                st = dpt__prep_scan_dir(s, name);
        } else if (!S_ISREG(sb.st_mode) || !has_jpeg_ext(name) || name[0] == '.') {
            s->ignored++;
        } else if (sub) {
            st = add_entry(s, rel, sub, strlen(sub), &sb);
        } else {
            /* <class>.<anything>.jpg: the class is what precedes the first dot. */
            const char *first = strchr(name, '.'), *last = strrchr(name, '.');
            size_t len = first && first < last ? (size_t)(first - name) : 0;
            st = add_entry(s, rel, name, len, &sb);
        }
    }
    closedir(d);
    return st;
}

int dpt__prep_cmp_entry(const void *a, const void *b)
{
    return strcmp(((const entry_t *)a)->rel, ((const entry_t *)b)->rel);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* Sorted distinct class names of the labeled entries into meta, labels into the entries. */
dpt_status_t dpt__prep_assign_classes(scan_t *s, dpt_shard_meta_t *meta)
{
    meta->n_classes = 0;
    for (int i = 0; i < s->n; i++) {
        entry_t *e = &s->e[i];
        if (e->bad >= 0)
            continue;
        int k = 0;
        while (k < meta->n_classes && strcmp(meta->classes[k], e->cls))
            k++;
        if (k == meta->n_classes) {
            if (k == DPT_SHARD_MAX_CLASSES)
                return dpt_error_set(DPT_ERR_FORMAT, "%s: more than %d classes (at '%s')",
                                     s->root, DPT_SHARD_MAX_CLASSES, e->rel);
            memcpy(meta->classes[k], e->cls, sizeof e->cls);
            meta->n_classes++;
        }
    }
    qsort(meta->classes, (size_t)meta->n_classes, sizeof meta->classes[0], cmp_name);
    for (int i = 0; i < s->n; i++)
        for (int k = 0; k < meta->n_classes && s->e[i].bad < 0; k++)
            if (!strcmp(meta->classes[k], s->e[i].cls))
                s->e[i].label = k;
    return DPT_OK;
}
