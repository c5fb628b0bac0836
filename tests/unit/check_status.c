/* check_status.c: unit tests of the per-thread error message (src/core/status.c), chiefly
 * dpt_error_prefix: the exact "<prefix><old message>" text, truncation at the 1024-byte buffer
 * (always NUL-terminated), an empty old message, and the `dptrain prepare` path that used to
 * format the message buffer into itself ("--output %s", dpt_error_get()) and garbled it. */
#define _GNU_SOURCE
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>

#include "check_files.h"
#include "check_main.h"
#include "dptrain/prepare.h"
#include "dptrain/status.h"

#define MSG_CAP 1024   /* sizeof last_error in src/core/status.c */

/* n bytes of a recognizable pattern (no two neighbouring windows alike), NUL-terminated. */
static void fill_pattern(char *p, size_t n, char base)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)(base + (char)(i % 23));
    p[n] = '\0';
}

START_TEST(status_set_get_clear)
{
    ck_assert_int_eq(dpt_error_set(DPT_ERR_FORMAT, "%s: bad magic %d", "f.idx", 7), DPT_ERR_FORMAT);
    ck_assert_str_eq(dpt_error_get(), "f.idx: bad magic 7");
    dpt_error_clear();
    ck_assert_str_eq(dpt_error_get(), "");
    ck_assert_str_eq(dpt_status_str(DPT_ERR_IO), "I/O error");
}
END_TEST

START_TEST(prefix_long_message_exact)
{
    static char old[701], want[MSG_CAP];
    fill_pattern(old, 700, 'A');
    dpt_error_set(DPT_ERR_IO, "%s", old);
    ck_assert_int_eq(dpt_error_prefix(DPT_ERR_NCCL, "rank %d of %s: ", 3, "ring"), DPT_ERR_NCCL);
    snprintf(want, sizeof want, "rank 3 of ring: %s", old);
    ck_assert_str_eq(dpt_error_get(), want);
    /* Chained twice, like NCCL's WARN lines up the call stack. */
    dpt_error_prefix(DPT_ERR_NCCL, "all-reduce: ");
    snprintf(want, sizeof want, "all-reduce: rank 3 of ring: %s", old);
    ck_assert_str_eq(dpt_error_get(), want);
}
END_TEST

START_TEST(prefix_truncates_old_message)
{
    static char old[1001], pre[101], want[MSG_CAP];
    fill_pattern(old, 1000, 'a');
    fill_pattern(pre, 100, 'A');
    dpt_error_set(DPT_ERR_IO, "%s", old);
    dpt_error_prefix(DPT_ERR_IO, "%s", pre);
    const char *got = dpt_error_get();
    ck_assert_uint_eq(strlen(got), MSG_CAP - 1);
    /* What snprintf(want, 1024, "%s%s", pre, old) gives: the prefix, then the old message's
     * first 923 bytes. */
    memcpy(want, pre, 100);
    memcpy(want + 100, old, MSG_CAP - 1 - 100);
    want[MSG_CAP - 1] = '\0';
    ck_assert_str_eq(got, want);
}
END_TEST

START_TEST(prefix_longer_than_buffer)
{
    static char pre[2001];
    fill_pattern(pre, 2000, 'A');
    dpt_error_set(DPT_ERR_IO, "old message");
    dpt_error_prefix(DPT_ERR_IO, "%s", pre);
    const char *got = dpt_error_get();
    ck_assert_uint_eq(strlen(got), MSG_CAP - 1);   /* NUL-terminated within the buffer */
    ck_assert(memcmp(got, pre, MSG_CAP - 1) == 0);
    /* Exactly filling the buffer with the prefix leaves nothing of the old message either. */
    pre[MSG_CAP - 1] = '\0';
    dpt_error_set(DPT_ERR_IO, "old");
    dpt_error_prefix(DPT_ERR_IO, "%s", pre);
    ck_assert_str_eq(dpt_error_get(), pre);
    /* One byte short of full: one byte of the old message survives. */
    pre[MSG_CAP - 2] = '\0';
    dpt_error_set(DPT_ERR_IO, "old");
    dpt_error_prefix(DPT_ERR_IO, "%s", pre);
    ck_assert_uint_eq(strlen(dpt_error_get()), MSG_CAP - 1);
    ck_assert_int_eq(dpt_error_get()[MSG_CAP - 2], 'o');
}
END_TEST

START_TEST(prefix_empty_old_message)
{
    dpt_error_clear();
    dpt_error_prefix(DPT_ERR_IO, "--output %s", "/x");
    ck_assert_str_eq(dpt_error_get(), "--output /x");
    dpt_error_clear();
    dpt_error_prefix(DPT_ERR_IO, "%s", "");
    ck_assert_str_eq(dpt_error_get(), "");
}
END_TEST

START_TEST(prefix_args_may_read_the_message)
{
    dpt_error_set(DPT_ERR_IO, "disk full");
    dpt_error_prefix(DPT_ERR_IO, "[%s] ", dpt_error_get());
    ck_assert_str_eq(dpt_error_get(), "[disk full] disk full");
}
END_TEST

/* A tiny valid JPEG (8x8 gray) at path. */
static void write_jpeg(const char *path, unsigned char shade)
{
    unsigned char px[8 * 8];
    memset(px, shade, sizeof px);
    tjhandle tj = tjInitCompress();
    ck_assert_ptr_nonnull(tj);
    unsigned char *jpg = NULL;
    unsigned long n = 0;
    ck_assert_int_eq(tjCompress2(tj, px, 8, 8, 8, TJPF_GRAY, &jpg, &n, TJSAMP_GRAY, 90, 0), 0);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(jpg, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
    tjFree(jpg);
    tjDestroy(tj);
}

/* The output folder cannot be created (its parent is a regular file): the message is
 * "--output DIR: " + dpt__make_dirs' message, unmangled. */
START_TEST(prepare_output_under_a_file)
{
    make_tmpdir();
    char in[512], afile[512], out[600], want[2048];
    snprintf(in, sizeof in, "%s/in", tmpdir);
    snprintf(afile, sizeof afile, "%s/afile", tmpdir);
    snprintf(out, sizeof out, "%s/sub", afile);
    ck_assert_int_eq(mkdir(in, 0755), 0);
    write_jpeg(tmp_path("in/cat.0.jpg"), 40);
    write_jpeg(tmp_path("in/cat.1.jpg"), 60);
    write_jpeg(tmp_path("in/dog.0.jpg"), 200);
    write_jpeg(tmp_path("in/dog.1.jpg"), 220);
    FILE *f = fopen(afile, "w");
    ck_assert_ptr_nonnull(f);
    fputs("not a folder\n", f);
    fclose(f);

    dpt_prepare_config_t cfg;
    dpt_prepare_config_default(&cfg);
    cfg.input_dir = in;
    cfg.output_dir = out;
    cfg.size = 8;
    cfg.val_fraction = 0;
    cfg.threads = 1;
    dpt_prepare_result_t res;
    dpt_error_clear();
    ck_assert_int_eq(dpt_prepare(&cfg, &res), DPT_ERR_IO);
    snprintf(want, sizeof want, "--output %s: %s exists and is not a directory", out, afile);
    ck_assert_str_eq(dpt_error_get(), want);
    remove_tmpdir();
}
END_TEST

static Suite *status_suite(void)
{
    Suite *s = suite_create("status");
    TCase *tc = tcase_create("error");
    tcase_add_test(tc, status_set_get_clear);
    tcase_add_test(tc, prefix_long_message_exact);
    tcase_add_test(tc, prefix_truncates_old_message);
    tcase_add_test(tc, prefix_longer_than_buffer);
    tcase_add_test(tc, prefix_empty_old_message);
    tcase_add_test(tc, prefix_args_may_read_the_message);
    tcase_add_test(tc, prepare_output_under_a_file);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(status_suite)
