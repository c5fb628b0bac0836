/* check_cuda_bucket.c: the bucketer on device gradients with --allreduce nccl and --compress
 * fp16/bf16 (src/bucket/cast16_nccl.cu): at one rank (an MPI singleton; NCCL does not take two
 * ranks on one GPU) the result must be each gradient rounded once to 16 bits and widened back,
 * bit for bit the host conversion of the collective layer (Inf for an fp16 overflow, NaN kept),
 * the steps before compress_start must leave the gradients exact, and any other codec is refused
 * with a message naming the two that NCCL takes.
 * Without a CUDA device or NCCL: "SKIP: ...", exit 77. Check in CK_NOFORK mode. */
#include <check.h>
#include <cuda_runtime.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/internal.h"   /* dpt__f32_to_f16 and friends: the host reference */
#include "dptrain/alloc.h"
#include "dptrain/bucket.h"
#include "dptrain/coll.h"
#include "dptrain/config.h"
#include "dptrain/cuda.h"
#include "dptrain/rng.h"

#define CU(call) ck_assert_msg((call) == cudaSuccess, "%s failed", #call)

enum { N_SEGS = 3 };
static const dpt_param_segment_t segs[N_SEGS] = {
    {.offset = 0, .count = 1, .rows = 1},        /* a size-1 tensor */
    {.offset = 1, .count = 3001, .rows = 1},     /* odd */
    {.offset = 3002, .count = 4096, .rows = 64}, /* a weight matrix */
};
static const size_t N = 3002 + 4096;

static dpt_p2p_t *p2p;
static dpt_coll_t *coll;

static float expect(float x, int bf16)
{
    return bf16 ? dpt__bf16_to_f32(dpt__f32_to_bf16(x)) : dpt__f16_to_f32(dpt__f32_to_f16(x));
}

/* Gradients with the awkward values: normal, tiny (fp16 subnormal), huge (fp16 overflow), NaN. */
static void fill(float *g, unsigned seed)
{
    dpt_rng_t r;
    dpt_rng_init(&r, seed, 1);
    for (size_t i = 0; i < N; i++)
        g[i] = dpt_rng_normal(&r) * 3.0f;
    g[0] = 1e-7f;
    g[5] = 1e6f;
    g[6] = -7e4f;
    g[7] = NAN;
    g[8] = 0.1f;   /* not representable: rounds */
}

/* One step of the bucketer on device copy d of h; the result back in out. */
static dpt_status_t step_once(dpt_bucketer_t *bk, float *d, const float *h, float *out, long k,
                              cudaStream_t s)
{
    CU(cudaMemcpy(d, h, N * sizeof(float), cudaMemcpyHostToDevice));
    dpt_bucketer_begin(bk, k);
    for (int i = N_SEGS - 1; i >= 0; i--)   /* backward order */
        dpt_bucketer_ready(bk, segs[i].offset, segs[i].count);
    dpt_bucket_stats_t bs;
    dpt_status_t st = dpt_bucketer_finish(bk, &bs);
    CU(cudaStreamSynchronize(s));
    CU(cudaMemcpy(out, d, N * sizeof(float), cudaMemcpyDeviceToHost));
    return st;
}

static void run_codec(const char *codec, int bf16)
{
    cudaStream_t s;
    CU(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    float *d = NULL, *h = dpt_malloc(N * sizeof(float)), *out = dpt_malloc(N * sizeof(float));
    CU(cudaMalloc((void **)&d, N * sizeof(float)));
    dpt_bucket_config_t bc = {.first_bytes = 4096, .bucket_bytes = 16384,
                              .algo = DPT_COLL_ALGO_NCCL, .overlap = 1, .stream = s,
                              .device = 0, .compress = codec, .compress_start = 2};
    dpt_bucketer_t *bk = NULL;
    ck_assert_msg(dpt_bucketer_create(coll, d, segs, N_SEGS, &bc, &bk) == DPT_OK, "%s",
                  dpt_error_get());
    ck_assert_double_eq(dpt_bucketer_codec_ratio(bk, 0), 0.5);
    for (long k = 0; k < 4; k++) {
        fill(h, 10 + (unsigned)k);
        ck_assert_msg(step_once(bk, d, h, out, k, s) == DPT_OK, "%s", dpt_error_get());
        for (size_t i = 0; i < N; i++) {
            float want = k < 2 ? h[i] : expect(h[i], bf16);
            if (isnan(want))
                ck_assert_msg(isnan(out[i]), "%s step %ld [%zu]: %g, want NaN", codec, k, i,
                              (double)out[i]);
            else
                ck_assert_msg(!memcmp(&want, &out[i], sizeof want), "%s step %ld [%zu]: %a from "
                              "%a, want %a", codec, k, i, (double)out[i], (double)h[i],
                              (double)want);
        }
    }
    ck_assert(isinf(expect(1e6f, 0)));   /* the reference itself: fp16 overflows to Inf */
    dpt_bucketer_destroy(bk);
    cudaFree(d);
    dpt_free(h);
    dpt_free(out);
    cudaStreamDestroy(s);
}

START_TEST(nccl_fp16)
{
    run_codec("fp16", 0);
}
END_TEST

START_TEST(nccl_bf16)
{
    run_codec("bf16", 1);
}
END_TEST

START_TEST(nccl_refuses_other_codecs)
{
    cudaStream_t s;
    CU(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    float *d = NULL;
    CU(cudaMalloc((void **)&d, N * sizeof(float)));
    const char *codecs[] = {"topk:0.01", "powersgd", "sign", "fp16+zstd"};
    for (int i = 0; i < 4; i++) {
        dpt_bucket_config_t bc = {.algo = DPT_COLL_ALGO_NCCL, .overlap = 1, .stream = s,
                                  .compress = codecs[i]};
        dpt_bucketer_t *bk = NULL;
        ck_assert_int_eq(dpt_bucketer_create(coll, d, segs, N_SEGS, &bc, &bk),
                         DPT_ERR_UNSUPPORTED);
        const char *msg = dpt_error_get();
        ck_assert_msg(strstr(msg, codecs[i]) && strstr(msg, "fp16 or bf16"), "%s", msg);
        ck_assert_ptr_null(bk);
    }
    cudaFree(d);
    cudaStreamDestroy(s);
}
END_TEST

static Suite *cuda_bucket_suite(void)
{
    Suite *s = suite_create("cuda_bucket");
    TCase *tc = tcase_create("nccl16");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, nccl_fp16);
    tcase_add_test(tc, nccl_bf16);
    tcase_add_test(tc, nccl_refuses_other_codecs);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (dpt_cuda_device_count() == 0) {
        printf("SKIP: no CUDA device (%s)\n", dpt_cuda_no_device_reason());
        return 77;
    }
    if (!DPT_HAVE_NCCL) {
        printf("SKIP: this build has no NCCL\n");
        return 77;
    }
    MPI_Init(&argc, &argv);
    dpt_coll_config_t cc = {.max_bytes = N * sizeof(float)};
    if (dpt_p2p_mpi_create(MPI_COMM_WORLD, &p2p) != DPT_OK
        || dpt_coll_create(p2p, &cc, &coll) != DPT_OK || dpt_coll_nccl_init(coll, 0) != DPT_OK) {
        printf("FAIL: setting up one rank with NCCL: %s\n", dpt_error_get());
        MPI_Finalize();
        return EXIT_FAILURE;
    }
    SRunner *sr = srunner_create(cuda_bucket_suite());
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_VERBOSE);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    dpt_coll_destroy(coll);
    dpt_p2p_destroy(p2p);
    MPI_Finalize();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
