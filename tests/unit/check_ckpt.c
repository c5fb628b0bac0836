/* check_ckpt.c: weight files, checkpoints and the best epoch, round trip and damage: every float
 * comes back exactly; a checkpoint of 2 ranks read by 2 gives each rank its own BN buffers and
 * read by 1 their average; a truncated file, a flipped byte and a model of another size are
 * refused naming the file; DIR keeps the newest K, `latest` names the newest, and --resume auto
 * skips a corrupt newest; DIR/best is read back only up to the step resumed from; AdamW's two
 * moments and update count come back (version 4), another optimizer's file is read without its
 * state, and a version-3 file (momentum, no count) still resumes. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zstd.h>

#include "check_main.h"
#include "core/internal.h"
#include "dptrain/checkpoint.h"

enum { NP = 1000, NB = 24 };
static char dir[256];
static float params[NP], buffers[2 * NB], mom[NP];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/dpt-check-ckpt-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    for (int i = 0; i < NP; i++) {
        params[i] = (float)i * 0.25f - 7.0f;
        mom[i] = (float)(i % 13) * -0.5f;
    }
    for (int i = 0; i < 2 * NB; i++)
        buffers[i] = (float)i;   /* rank 0's NB, then rank 1's */
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Overwrite one byte of a file at `off` (negative: from the end) with its complement. */
static void flip_byte(const char *path, long off)
{
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, off, off < 0 ? SEEK_END : SEEK_SET), 0);
    int c = fgetc(f);
    ck_assert_int_ne(c, EOF);
    ck_assert_int_eq(fseek(f, -1, SEEK_CUR), 0);
    fputc(~c & 0xff, f);
    fclose(f);
}

static void truncate_to(const char *path, long n)
{
    ck_assert_int_eq(truncate(path, n), 0);
}

START_TEST(test_weights)
{
    char path[300];
    snprintf(path, sizeof path, "%s/w.dpt", dir);
    ck_assert_int_eq(dpt_weights_save(path, params, NP, buffers, NB), DPT_OK);
    float p2[NP], b2[NB];
    ck_assert_int_eq(dpt_weights_load(path, p2, NP, b2, NB), DPT_OK);
    ck_assert(!memcmp(p2, params, sizeof p2) && !memcmp(b2, buffers, sizeof b2));
    ck_assert_int_ne(dpt_weights_load(path, p2, NP - 1, b2, NB), DPT_OK);   /* another model */
    ck_assert_msg(strstr(dpt_error_get(), path), "%s", dpt_error_get());
    flip_byte(path, -3);
    ck_assert_int_ne(dpt_weights_load(path, p2, NP, b2, NB), DPT_OK);
    ck_assert_msg(strstr(dpt_error_get(), path), "%s", dpt_error_get());
    ck_assert_int_eq(dpt_weights_save(path, params, NP, buffers, NB), DPT_OK);
    truncate_to(path, 100);
    ck_assert_int_ne(dpt_weights_load(path, p2, NP, b2, NB), DPT_OK);
    ck_assert_msg(strstr(dpt_error_get(), "truncated"), "%s", dpt_error_get());
}
END_TEST

static dpt_ckpt_state_t state(uint64_t step)
{
    dpt_ckpt_state_t s = {.step = step, .epoch = 2, .epoch_step = 7, .ranks = 2, .seed = 42,
                          .config_hash = 0x1234, .counters = {1.5, 2, 3, 4}};
    snprintf(s.flags, sizeof s.flags, "--lr=0.1\n--global-batch=64\n");
    return s;
}

START_TEST(test_checkpoint)
{
    char path[300];
    snprintf(path, sizeof path, "%s/c.dpt", dir);
    dpt_ckpt_state_t s = state(77), r = {0};
    ck_assert_int_eq(dpt_ckpt_write(path, &s, params, NP, buffers, NB, mom), DPT_OK);
    static float p2[NP], b2[2 * NB], m2[NP];
    ck_assert_int_eq(dpt_ckpt_read(path, 2, &r, p2, NP, b2, NB, m2), DPT_OK);
    ck_assert(!memcmp(p2, params, sizeof p2) && !memcmp(m2, mom, sizeof m2));
    ck_assert(!memcmp(b2, buffers, sizeof b2));   /* each rank's own */
    ck_assert_int_eq(r.step, 77);
    ck_assert_int_eq(r.epoch, 2);
    ck_assert_int_eq(r.epoch_step, 7);
    ck_assert_int_eq(r.ranks, 2);
    ck_assert_int_eq(r.seed, 42);
    ck_assert(!memcmp(r.counters, s.counters, sizeof s.counters));
    ck_assert_str_eq(r.flags, s.flags);
    /* one rank: the average of the two writers' buffers */
    ck_assert_int_eq(dpt_ckpt_read(path, 1, &r, p2, NP, b2, NB, m2), DPT_OK);
    for (int i = 0; i < NB; i++)
        ck_assert_float_eq(b2[i], (buffers[i] + buffers[NB + i]) / 2);
    /* damage, named */
    flip_byte(path, -5);
    ck_assert_int_ne(dpt_ckpt_read(path, 2, &r, p2, NP, b2, NB, m2), DPT_OK);
    ck_assert_msg(strstr(dpt_error_get(), path), "%s", dpt_error_get());
    ck_assert_int_eq(dpt_ckpt_write(path, &s, params, NP, buffers, NB, mom), DPT_OK);
    truncate_to(path, 60);
    ck_assert_int_ne(dpt_ckpt_read(path, 2, &r, p2, NP, b2, NB, m2), DPT_OK);
    ck_assert_msg(strstr(dpt_error_get(), path), "%s", dpt_error_get());
    ck_assert_int_eq(dpt_ckpt_write(path, &s, params, NP, buffers, NB, mom), DPT_OK);
    ck_assert_int_ne(dpt_ckpt_read(path, 2, &r, p2, NP + 1, b2, NB, m2), DPT_OK);
}
END_TEST

/* Version 3: every rank's codec residual comes back; another rank count averages it; a file
 * without it gives zeros; another size is refused. */
START_TEST(test_codec_state)
{
    enum { NC = 9 };
    char path[300];
    snprintf(path, sizeof path, "%s/cs.dpt", dir);
    float codec[2 * NC], back[2 * NC];
    for (int i = 0; i < 2 * NC; i++)
        codec[i] = (float)i - 4.5f;
    dpt_ckpt_state_t s = state(5);
    s.codec = codec;
    s.codec_n = NC;
    ck_assert_int_eq(dpt_ckpt_write(path, &s, params, NP, buffers, NB, mom), DPT_OK);
    static float p2[NP], b2[2 * NB], m2[NP];
    dpt_ckpt_state_t r = {.codec = back, .codec_n = NC};
    ck_assert_int_eq(dpt_ckpt_read(path, 2, &r, p2, NP, b2, NB, m2), DPT_OK);
    ck_assert(!memcmp(back, codec, sizeof codec));
    ck_assert_ptr_eq(r.codec, back);
    ck_assert_int_eq(dpt_ckpt_read(path, 1, &r, p2, NP, b2, NB, m2), DPT_OK);
    for (int k = 0; k < NC; k++)
        ck_assert_float_eq(back[k], (codec[k] + codec[NC + k]) / 2);
    r.codec_n = NC + 1;   /* another codec */
    ck_assert_int_ne(dpt_ckpt_read(path, 2, &r, p2, NP, b2, NB, m2), DPT_OK);
    ck_assert_msg(strstr(dpt_error_get(), "gradient-codec state"), "%s", dpt_error_get());
    dpt_ckpt_state_t plain = state(6);   /* written without codec state */
    ck_assert_int_eq(dpt_ckpt_write(path, &plain, params, NP, buffers, NB, mom), DPT_OK);
    r = (dpt_ckpt_state_t){.codec = back, .codec_n = NC};
    ck_assert_int_eq(dpt_ckpt_read(path, 2, &r, p2, NP, b2, NB, m2), DPT_OK);
    for (int k = 0; k < 2 * NC; k++)
        ck_assert_float_eq(back[k], 0.0f);
    r = (dpt_ckpt_state_t){0};   /* a reader that does not want it: the weights still load */
    s.codec = codec;
    ck_assert_int_eq(dpt_ckpt_write(path, &s, params, NP, buffers, NB, mom), DPT_OK);
    ck_assert_int_eq(dpt_ckpt_read(path, 2, &r, p2, NP, b2, NB, m2), DPT_OK);
    ck_assert(!memcmp(p2, params, sizeof p2));
}
END_TEST

/* Version 4: AdamW's m and v (2 x np floats, sized by the file's --optimizer=adamw flag) and its
 * update count come back; a reader of another optimizer gets the file (not an error that would
 * make --resume auto skip it) with optim_k saying whose state it holds and its mom untouched. */
START_TEST(test_adamw_state)
{
    char path[300];
    snprintf(path, sizeof path, "%s/a.dpt", dir);
    static float mv[2 * NP], back[2 * NP], p2[NP], b2[2 * NB];
    for (int i = 0; i < 2 * NP; i++)
        mv[i] = (float)i * 1e-3f - 0.5f;
    dpt_ckpt_state_t s = state(9);
    snprintf(s.flags, sizeof s.flags, "--lr=0.1\n--optimizer=adamw\n--global-batch=64\n");
    s.optim_k = 2;
    s.optim_t = 123456789012ull;
    ck_assert_int_eq(dpt_ckpt_write(path, &s, params, NP, buffers, NB, mv), DPT_OK);
    dpt_ckpt_state_t r = {.optim_k = 2};
    ck_assert_int_eq(dpt_ckpt_read(path, 2, &r, p2, NP, b2, NB, back), DPT_OK);
    ck_assert(!memcmp(back, mv, sizeof mv) && !memcmp(p2, params, sizeof p2));
    ck_assert_int_eq(r.optim_k, 2);
    ck_assert_uint_eq(r.optim_t, 123456789012ull);
    memset(back, 0x7f, sizeof back);
    r = (dpt_ckpt_state_t){.optim_k = 1};   /* an sgd run resuming it: refused by its flags */
    ck_assert_int_eq(dpt_ckpt_read(path, 2, &r, p2, NP, b2, NB, back), DPT_OK);
    ck_assert_int_eq(r.optim_k, 2);
    for (int i = 0; i < 2 * NP; i++)
        ck_assert_uint_eq(((unsigned char *)back)[4 * i], 0x7f);
    ck_assert_int_eq(dpt_ckpt_load_weights(path, p2, NP, b2, NB), DPT_OK);   /* eval: any */
    ck_assert(!memcmp(p2, params, sizeof p2));
    s.optim_k = 1;   /* a writer whose state disagrees with its flags is a bug, caught */
    ck_assert_int_ne(dpt_ckpt_write(path, &s, params, NP, buffers, NB, mom), DPT_OK);
}
END_TEST

/* A version-3 file as dptrain wrote it before AdamW (header, flags, one zstd frame of params,
 * buffers, momentum; no update count): still read, momentum and all. */
START_TEST(test_version3)
{
    char path[300];
    snprintf(path, sizeof path, "%s/v3.dpt", dir);
    const char flags[] = "--lr=0.1\n";
    const size_t fl = sizeof flags - 1, raw_n = (2 * NP + 2 * NB) * sizeof(float);
    static float raw[2 * NP + 2 * NB], p2[NP], b2[2 * NB], m2[NP];
    static unsigned char z[2 * (2 * NP + 2 * NB) * sizeof(float) + 1024];
    memcpy(raw, params, sizeof params);
    memcpy(raw + NP, buffers, sizeof buffers);
    memcpy(raw + NP + 2 * NB, mom, sizeof mom);
    size_t zn = ZSTD_compress(z, sizeof z, raw, raw_n, 1);
    ck_assert(!ZSTD_isError(zn));
    unsigned char h[128] = "DPTCKPT1";
    uint32_t u32;
    uint64_t u64;
#define PUT(off, v) memcpy(h + (off), &(v), sizeof(v))
    u32 = 3, PUT(8, u32);
    u32 = 2, PUT(12, u32);
    u64 = 11, PUT(16, u64);
    u64 = 42, PUT(24, u64);
    u32 = (uint32_t)fl, PUT(44, u32);
    u64 = NP, PUT(48, u64);
    u64 = NB, PUT(56, u64);
    u64 = 0, PUT(64, u64);
    u64 = zn, PUT(72, u64);
    u32 = dpt__crc32(0, z, zn), PUT(112, u32);
    u32 = dpt__crc32(0, raw, raw_n), PUT(116, u32);
    u32 = dpt__crc32(0, flags, fl), PUT(120, u32);
    u32 = dpt__crc32(0, h, 124), PUT(124, u32);
#undef PUT
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(h, 1, sizeof h, f) + fwrite(flags, 1, fl, f) + fwrite(z, 1, zn, f),
                      sizeof h + fl + zn);
    fclose(f);
    dpt_ckpt_state_t r = {.optim_k = 1};
    ck_assert_msg(dpt_ckpt_read(path, 2, &r, p2, NP, b2, NB, m2) == DPT_OK, "%s",
                  dpt_error_get());
    ck_assert(!memcmp(p2, params, sizeof p2) && !memcmp(m2, mom, sizeof m2));
    ck_assert(!memcmp(b2, buffers, sizeof b2));
    ck_assert_int_eq(r.step, 11);
    ck_assert_int_eq(r.optim_k, 1);
    ck_assert_uint_eq(r.optim_t, 0);
}
END_TEST

START_TEST(test_directory)
{
    static float p2[NP], b2[2 * NB], m2[NP];
    for (uint64_t step = 10; step <= 50; step += 10) {
        dpt_ckpt_state_t s = state(step);
        ck_assert_int_eq(dpt_ckpt_save(dir, 3, &s, params, NP, buffers, NB, mom, NULL, 0), DPT_OK);
    }
    char newest[64];
    ck_assert_int_eq(dpt_ckpt_list(dir, newest, sizeof newest), 3);   /* 30, 40, 50 kept */
    ck_assert_str_eq(newest, "ckpt-50.dpt");
    char path[300], line[64] = "";
    snprintf(path, sizeof path, "%s/latest", dir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    fclose(f);
    ck_assert_str_eq(line, "ckpt-50.dpt\n");
    snprintf(path, sizeof path, "%s/ckpt-20.dpt", dir);
    ck_assert_int_ne(access(path, F_OK), 0);
    /* a corrupt newest is skipped: the one before is loaded */
    snprintf(path, sizeof path, "%s/ckpt-50.dpt", dir);
    flip_byte(path, -2);
    dpt_ckpt_state_t r = {0};
    char got[300];
    int found = 0;
    ck_assert_int_eq(dpt_ckpt_load_newest(dir, 2, &r, p2, NP, b2, NB, m2, got, sizeof got, &found),
                     DPT_OK);
    ck_assert_int_eq(found, 1);
    ck_assert_int_eq(r.step, 40);
    ck_assert_msg(strstr(got, "ckpt-40.dpt"), "%s", got);
}
END_TEST

START_TEST(test_best)
{
    double acc = 0;
    int epoch = 0;
    ck_assert_int_eq(dpt_ckpt_best_read(dir, 1000, &acc, &epoch), 0);   /* none yet */
    ck_assert_int_eq(dpt_ckpt_best_save(dir, 3, 300, 0.8125, params, NP, buffers, NB), DPT_OK);
    ck_assert_int_eq(dpt_ckpt_best_read(dir, 300, &acc, &epoch), 1);
    ck_assert_int_eq(epoch, 3);
    ck_assert(acc == 0.8125);
    ck_assert_int_eq(dpt_ckpt_best_read(dir, 299, &acc, &epoch), 0);   /* in that run's future */
    char path[300];
    snprintf(path, sizeof path, "%s/best.dpt", dir);
    float p2[NP], b2[NB];
    ck_assert_int_eq(dpt_weights_load(path, p2, NP, b2, NB), DPT_OK);
    ck_assert(!memcmp(p2, params, sizeof p2) && !memcmp(b2, buffers, sizeof b2));
}
END_TEST

static Suite *ckpt_suite(void)
{
    Suite *s = suite_create("ckpt");
    TCase *tc = tcase_create("files");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_weights);
    tcase_add_test(tc, test_checkpoint);
    tcase_add_test(tc, test_codec_state);
    tcase_add_test(tc, test_adamw_state);
    tcase_add_test(tc, test_version3);
    tcase_add_test(tc, test_directory);
    tcase_add_test(tc, test_best);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(ckpt_suite)
