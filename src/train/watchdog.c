/* watchdog.c: the stall inspector. Every collective phase the trainer waits on (gradient
 * buckets, the per-step flags, evaluation sums, checkpoints, synchronized BN) is bracketed by
 * dpt__watchdog_enter/leave, which number the phases: every rank runs the same phases in the same
 * order, so the numbers agree across healthy ranks.
 *
 * A watchdog thread per rank checks once a second. When its rank has been inside one phase for
 * longer than the timeout, it sends a report (phase number, in flight or not, description) to
 * every other rank on a communicator of its own (MPI_THREAD_MULTIPLE: the training threads may be
 * blocked inside MPI meanwhile) and collects the others' reports for a grace period; every live
 * rank stalls in the same way and so reports too. Ranks that send nothing were stopped, hung or
 * died; ranks whose phase number is behind have not reached the phase. The lowest reporting rank
 * prints the diagnosis, and every rank aborts the job (MPI_Abort), so all exit non-zero. */
#include <limits.h>
#include <mpi.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dptrain/alloc.h"
#include "train/internal.h"

enum { WHAT = 96, TAG = 7001 };

typedef struct report {
    long long seq;     /* phases entered */
    int in_flight;     /* inside phase seq */
    double waited;     /* seconds in it */
    char what[WHAT];
} report_t;

struct dpt_watchdog {
    MPI_Comm comm;
    int rank, size;
    double timeout;
    pthread_mutex_t mu;
    long long seq;
    int in_flight;
    double since;
    char what[WHAT];
    report_t *in;          /* (size) reports received */
    MPI_Request *reqs;     /* (size) posted receives, MPI_REQUEST_NULL for self */
    int stop;
    pthread_t thread;
    int started;
};

static void sleep_s(double s)
{
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

void dpt__watchdog_enter(dpt_watchdog_t *w, const char *fmt, ...)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->seq++;
    w->in_flight = 1;
    w->since = dpt__now();
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->what, sizeof w->what, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&w->mu);
}

void dpt__watchdog_leave(dpt_watchdog_t *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->in_flight = 0;
    pthread_mutex_unlock(&w->mu);
}

/* Stalled: exchange reports, diagnose, abort the job. */
static void stalled(dpt_watchdog_t *w, const report_t *mine)
{
    for (int r = 0; r < w->size; r++)
        if (r != w->rank) {
            MPI_Request q;
            MPI_Isend(mine, (int)sizeof *mine, MPI_BYTE, r, TAG, w->comm, &q);
            MPI_Request_free(&q);
        }
    int *got = dpt_calloc((size_t)w->size * sizeof *got);
    got[w->rank] = 1;
    w->in[w->rank] = *mine;
    double grace = w->timeout < 10 ? w->timeout : 10, t0 = dpt__now();
    int n = 1;
    while (n < w->size && dpt__now() - t0 < grace) {
        for (int r = 0; r < w->size; r++) {
            int done = 0;
            if (!got[r] && w->reqs[r] != MPI_REQUEST_NULL)
                MPI_Test(&w->reqs[r], &done, MPI_STATUS_IGNORE);
            if (done) {
                got[r] = 1;
                n++;
            }
        }
        sleep_s(0.02);
    }
    int lowest = w->rank;
    long long top = mine->seq;
    for (int r = 0; r < w->size; r++)
        if (got[r]) {
            lowest = r < lowest ? r : lowest;
            top = w->in[r].seq > top ? w->in[r].seq : top;
        }
    if (lowest == w->rank) {
        char silent[512] = "", behind[512] = "";
        size_t ls = 0, lb = 0;
        for (int r = 0; r < w->size; r++) {
            if (!got[r] && ls < sizeof silent - 16)
                ls += (size_t)snprintf(silent + ls, sizeof silent - ls, "%s%d", ls ? ", " : "", r);
            else if (got[r] && w->in[r].seq < top && lb < sizeof behind - 96)
                lb += (size_t)snprintf(behind + lb, sizeof behind - lb,
                                       "%srank %d is at #%lld (%s)", lb ? "; " : "", r,
                                       w->in[r].seq, w->in[r].what);
        }
        fprintf(stderr, "dptrain: watchdog (rank %d): collective #%lld (%s) has not completed "
                "after %.0f s (--watchdog %.0f).\n", w->rank, mine->seq, mine->what,
                mine->waited, w->timeout);
        if (ls)
            fprintf(stderr, "dptrain: watchdog: rank%s %s not answering (stopped, hung or dead): "
                    "%s not reached collective #%lld\n", strchr(silent, ',') ? "s" : "", silent,
                    strchr(silent, ',') ? "they have" : "it has", top);
        if (lb)
            fprintf(stderr, "dptrain: watchdog: behind: %s\n", behind);
        if (!ls && !lb)
            fprintf(stderr, "dptrain: watchdog: every rank is inside collective #%lld: it is "
                    "slow, not stuck (raise --watchdog?)\n", top);
        fprintf(stderr, "dptrain: watchdog: aborting all %d ranks\n", w->size);
        fflush(stderr);
    } else {
        sleep_s(0.3);   /* the lowest rank prints the diagnosis first */
        fprintf(stderr, "dptrain: watchdog (rank %d): waiting at collective #%lld (%s) for %.0f s; "
                "rank %d reports the ranks missing\n", w->rank, mine->seq, mine->what,
                mine->waited, lowest);
        fflush(stderr);
        sleep_s(0.2);
    }
    MPI_Abort(MPI_COMM_WORLD, 1);
}

static void *watch(void *arg)
{
    dpt_watchdog_t *w = arg;
    for (;;) {
        sleep_s(w->timeout < 5 ? 0.2 : 1.0);
        pthread_mutex_lock(&w->mu);
        int stop = w->stop;
        report_t mine = {.seq = w->seq, .in_flight = w->in_flight,
                         .waited = w->in_flight ? dpt__now() - w->since : 0};
        memcpy(mine.what, w->what, sizeof mine.what);
        pthread_mutex_unlock(&w->mu);
        if (stop)
            break;
        if (mine.in_flight && mine.waited > w->timeout)
            stalled(w, &mine);
    }
    return NULL;
}

dpt_status_t dpt__watchdog_start(const dpt_dist_t *d, double timeout_s, dpt_watchdog_t **out)
{
    *out = NULL;
    if (!d->mpi || d->size == 1 || timeout_s <= 0)
        return DPT_OK;
    int level = 0;
    MPI_Query_thread(&level);
    if (level < MPI_THREAD_MULTIPLE)
        return DPT_OK;   /* no watchdog without MPI_THREAD_MULTIPLE (main says so) */
    dpt_watchdog_t *w = dpt_calloc(sizeof *w);
    if (!w)
        return dpt_error_set(DPT_ERR_NOMEM, "watchdog: out of memory");
    w->rank = d->rank;
    w->size = d->size;
    w->timeout = timeout_s;
    w->in = dpt_calloc((size_t)d->size * sizeof *w->in);
    w->reqs = dpt_calloc((size_t)d->size * sizeof *w->reqs);
    pthread_mutex_init(&w->mu, NULL);
    if (!w->in || !w->reqs || MPI_Comm_dup(MPI_COMM_WORLD, &w->comm) != MPI_SUCCESS) {
        dpt_free(w->in);
        dpt_free(w->reqs);
        dpt_free(w);
        return dpt_error_set(DPT_ERR_MPI, "watchdog: cannot set up its communicator");
    }
    for (int r = 0; r < d->size; r++) {
        w->reqs[r] = MPI_REQUEST_NULL;
        if (r != d->rank)
            MPI_Irecv(&w->in[r], (int)sizeof *w->in, MPI_BYTE, r, TAG, w->comm, &w->reqs[r]);
    }
    if (pthread_create(&w->thread, NULL, watch, w) == 0)
        w->started = 1;
    *out = w;
    return DPT_OK;
}

void dpt__watchdog_stop(dpt_watchdog_t *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_mutex_unlock(&w->mu);
    if (w->started)
        pthread_join(w->thread, NULL);
    for (int r = 0; r < w->size; r++)
        if (w->reqs[r] != MPI_REQUEST_NULL) {
            MPI_Cancel(&w->reqs[r]);
            MPI_Wait(&w->reqs[r], MPI_STATUS_IGNORE);
        }
    MPI_Comm_free(&w->comm);
    pthread_mutex_destroy(&w->mu);
    dpt_free(w->in);
    dpt_free(w->reqs);
    dpt_free(w);
}
