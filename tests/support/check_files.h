/* check_files.h: fixtures of the unit tests that work on files (check_data.c, check_shard.c,
 * check_mul.c, check_model_vit.c): a per-test mkdtemp folder (make_tmpdir / remove_tmpdir, also
 * usable as a checked fixture), paths in it, writing a text file there, whole-file reads, and
 * the "right status and a message naming the file" assertion. Each test executable is one
 * translation unit, so the folder name lives in a static here. Include after defining
 * _GNU_SOURCE. */
#ifndef DPT_CHECK_FILES_H
#define DPT_CHECK_FILES_H

#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dptrain/status.h"

static char tmpdir[256];

/* A fresh /tmp/dpt_check_XXXXXX in tmpdir; remove it with remove_tmpdir. */
static inline void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dpt_check_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static inline int check_files_rm(const char *path, const struct stat *sb, int flag,
                                 struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static inline void remove_tmpdir(void)
{
    nftw(tmpdir, check_files_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* tmpdir/name in one of 8 rotating buffers (valid for the next 7 calls). */
static inline const char *tmp_path(const char *name)
{
    static char bufs[8][512];
    static int next;
    char *p = bufs[next++ % 8];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

/* tmpdir/name (make_tmpdir first) now holding `text`; returns its tmp_path. */
static inline const char *write_tmp_file(const char *name, const char *text)
{
    ck_assert_msg(tmpdir[0] != '\0', "write_tmp_file(%s) before make_tmpdir", name);
    const char *path = tmp_path(name);
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert_int_ge(fputs(text, f), 0);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

/* The whole file into *out (malloc'd, one spare byte); returns its size. */
static inline size_t read_whole(const char *path, uint8_t **out)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *out = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(*out, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return (size_t)n;
}

/* Expect `got` == `want` and a message naming `path` (and containing `word` when non-NULL). */
static inline void assert_error(dpt_status_t got, dpt_status_t want, const char *path,
                                const char *word)
{
    const char *msg = dpt_error_get();
    ck_assert_msg(got == want, "status %s, want %s (%s)", dpt_status_str(got),
                  dpt_status_str(want), msg);
    ck_assert_msg(strstr(msg, path) != NULL, "message '%s' does not name '%s'", msg, path);
    if (word)
        ck_assert_msg(strstr(msg, word) != NULL, "message '%s' lacks '%s'", msg, word);
}

#endif
