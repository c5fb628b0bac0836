/* parallel.c: dpt__parallel_for, a fork-join loop over independent jobs on a few pthreads (the
 * calling thread included), and dpt__crc32. Used where the work is coarse (one image, one zstd
 * chunk) and OpenMP's runtime, which the compute backend owns, should stay out of it. */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>
#include <zlib.h>

#include "core/internal.h"

#define PARALLEL_MAX_WORKERS 64

uint32_t dpt__crc32(uint32_t crc, const void *p, size_t n)
{
    const unsigned char *b = p;
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, b, chunk);
        b += chunk;
        n -= chunk;
    }
    return crc;
}

int dpt__parallel_workers(int threads, int n_jobs)
{
    if (threads <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cores > 0 ? (int)cores : 1;
    }
    if (threads > PARALLEL_MAX_WORKERS)
        threads = PARALLEL_MAX_WORKERS;
    if (threads > n_jobs)
        threads = n_jobs;
    return threads < 1 ? 1 : threads;
}

typedef struct pool {
    void (*fn)(void *ctx, int job, int worker);
    void *ctx;
    int n_jobs;
    atomic_int next;
} pool_t;

typedef struct worker_arg {
    pool_t *pool;
    int id;
} worker_arg_t;

static void run_jobs(pool_t *p, int worker)
{
    for (;;) {
        int job = atomic_fetch_add(&p->next, 1);
        if (job >= p->n_jobs)
            return;
        p->fn(p->ctx, job, worker);
    }
}

static void *worker_main(void *arg)
{
    worker_arg_t *w = arg;
    run_jobs(w->pool, w->id);
    return NULL;
}

void dpt__parallel_for(int n_jobs, int threads, void (*fn)(void *ctx, int job, int worker),
                       void *ctx)
{
    if (n_jobs <= 0)
        return;
    pool_t p = {.fn = fn, .ctx = ctx, .n_jobs = n_jobs};
    atomic_init(&p.next, 0);
    int workers = dpt__parallel_workers(threads, n_jobs);
    pthread_t tid[PARALLEL_MAX_WORKERS];
    worker_arg_t args[PARALLEL_MAX_WORKERS];
    int started = 1;   /* worker 0 is this thread */
    for (int i = 1; i < workers; i++) {
        args[started] = (worker_arg_t){.pool = &p, .id = started};
        if (pthread_create(&tid[started], NULL, worker_main, &args[started]) != 0)
            break;   /* fewer workers; ids stay dense */
        started++;
    }
    run_jobs(&p, 0);
    for (int i = 1; i < started; i++)
        pthread_join(tid[i], NULL);
}
