/* bench_sgemm.c: the machine's measured single-precision GEMM peak, through OpenBLAS and (when
 * built with it) oneDNN's dnnl_sgemm; the best of the two is the denominator for dptrain's
 * achieved GFLOP/s in docs/PERFORMANCE.md.
 *
 * Usage: bench_sgemm [threads] [size] [reps]   (defaults 1, 2048, 7)
 * Prints one JSON line per library:
 *   {"bench":"sgemm","impl":"openblas","threads":T,"m":S,"n":S,"k":S,"gflops":median,...} */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "dptrain/config.h"
#if DPT_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

void openblas_set_num_threads(int n);

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef void (*gemm_fn)(int n, const float *a, const float *b, float *c);

static void sgemm_openblas(int n, const float *a, const float *b, float *c)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
}

#if DPT_HAVE_DNNL
static void sgemm_onednn(int n, const float *a, const float *b, float *c)
{
    if (dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n) != dnnl_success) {
        fprintf(stderr, "bench_sgemm: dnnl_sgemm failed\n");
        exit(1);
    }
}
#endif

/* One warm-up call, then `reps` timed calls; prints the median and best GFLOP/s. */
static void report(const char *impl, gemm_fn gemm, int threads, int n, int reps, const float *a,
                   const float *b, float *c, double *t)
{
    gemm(n, a, b, c);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        gemm(n, a, b, c);
        t[r] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_double);
    double flop = 2.0 * n * (double)n * n;
    size_t nn = (size_t)n * (size_t)n;
    printf("{\"bench\":\"sgemm\",\"impl\":\"%s\",\"threads\":%d,\"m\":%d,\"n\":%d,\"k\":%d,"
           "\"reps\":%d,\"gflops\":%.1f,\"gflops_max\":%.1f,\"check\":%.3f}\n",
           impl, threads, n, n, n, reps, flop / t[reps / 2] / 1e9, flop / t[0] / 1e9,
           (double)c[nn / 2]);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    int n = argc > 2 ? atoi(argv[2]) : 2048;
    int reps = argc > 3 ? atoi(argv[3]) : 7;
    if (threads < 1 || n < 16 || reps < 1 || reps > 1000) {
        fprintf(stderr, "usage: bench_sgemm [threads >= 1] [size >= 16] [reps 1..1000]\n");
        return 2;
    }
    openblas_set_num_threads(threads);
    size_t nn = (size_t)n * (size_t)n;
    float *a = malloc(nn * sizeof(float)), *b = malloc(nn * sizeof(float)),
          *c = malloc(nn * sizeof(float));
    double *t = malloc((size_t)reps * sizeof(double));
    if (!a || !b || !c || !t) {
        fprintf(stderr, "bench_sgemm: out of memory for size %d\n", n);
        return 1;
    }
    for (size_t i = 0; i < nn; i++) {
        a[i] = (float)(i % 17) * 0.01f;
        b[i] = (float)(i % 13) * 0.02f;
        c[i] = 0.0f;
    }
    report("openblas", sgemm_openblas, threads, n, reps, a, b, c, t);
#if DPT_HAVE_DNNL
    omp_set_num_threads(threads);
    report("onednn", sgemm_onednn, threads, n, reps, a, b, c, t);
#endif
    free(a);
    free(b);
    free(c);
    free(t);
    return 0;
}
