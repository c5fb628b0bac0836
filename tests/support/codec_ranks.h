/* codec_ranks.h: the rank runner of the codec tests (check_compress*.c): a job runs a codec on
 * the in-process transport, one thread per rank, for some rounds, and keeps what every rank
 * ended with (and, if asked, its state). Static functions: each test file is its own program. */
#ifndef DPT_TEST_CODEC_RANKS_H
#define DPT_TEST_CODEC_RANKS_H

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "dptrain/alloc.h"
#include "dptrain/coll.h"
#include "dptrain/compress.h"
#include "dptrain/rng.h"

#define MAX_RANKS 5

enum { IN_RANDOM, IN_ZEROS, IN_HUGE, IN_NAN, IN_KINDS };

typedef struct job {
    const char *codec;
    int p, kind;
    size_t n;
    const dpt_codec_tensor_t *tensors;   /* NULL: one vector */
    int n_tensors;
    long start_step;                     /* the bucket's --compress-start */
    long first_step;                     /* the step of round 0 */
    long warmup_steps;                   /* the bucket's warm-up */
    float momentum;                      /* and momentum (a codec that owns it) */
    int nesterov;
    int deterministic;                   /* the context's dpt_coll_config_t.deterministic */
    /* rounds > 1: round r's input is in + r * p * n when inputs_per_round, else the same */
    int inputs_per_round;
    double bytes_sent;                   /* rank 0's, summed over the rounds */
    int rounds;   /* calls per rank (0 = 2: the state is reused) */
    float *in;    /* p x n: rank r's gradients at r * n */
    float *out;   /* p x n: what each rank ended with */
    float *res;   /* p x state floats, or NULL: each rank's codec state after the last call */
    size_t res_n; /* state floats per rank (written) */
    const float *state_in; /* p x state_n, or NULL: each rank's state restored after create */
    size_t state_n;
} job_t;

typedef struct rank_ctx {
    int rank;
    job_t *job;
    dpt_p2p_t *p2p;
    dpt_status_t st;
    char msg[256];
} rank_ctx_t;

static inline void *rank_main(void *arg)
{
    rank_ctx_t *c = arg;
    job_t *j = c->job;
    dpt_coll_t *coll = NULL;
    dpt_codec_t *codec = NULL;
    dpt_coll_config_t cc = {.max_bytes = j->n * sizeof(float) + 64,
                            .deterministic = j->deterministic};
    float *buf = j->out + (size_t)c->rank * j->n;
    memcpy(buf, j->in + (size_t)c->rank * j->n, j->n * sizeof *buf);
    dpt_status_t st = dpt_coll_create(c->p2p, &cc, &coll);
    if (st == DPT_OK)
        st = dpt_codec_create(j->codec, &(dpt_codec_bucket_t){.n = j->n, .ranks = j->p,
                              .tensors = j->tensors, .n_tensors = j->n_tensors,
                              .start_step = j->start_step, .warmup_steps = j->warmup_steps,
                              .momentum = j->momentum, .nesterov = j->nesterov}, &codec);
    if (st == DPT_OK && j->state_in) {   /* a resume: the state a checkpoint would restore */
        size_t sn = 0;
        float *e = dpt_codec_state(codec, &sn);
        if (e && sn == j->state_n)
            memcpy(e, j->state_in + (size_t)c->rank * sn, sn * sizeof *e);
        else
            st = dpt_error_set(DPT_ERR_INTERNAL, "state of %zu floats, the test has %zu", sn,
                               j->state_n);
    }
    for (int round = 0; round < (j->rounds ? j->rounds : 2) && st == DPT_OK; round++) {
        size_t at = (j->inputs_per_round ? (size_t)round * j->p : 0) + (size_t)c->rank;
        if (round)
            memcpy(buf, j->in + at * j->n, j->n * sizeof *buf);
        dpt_codec_stats_t s = {0, 0};
        st = dpt_codec_allreduce(codec, coll, buf, j->n, DPT_COLL_ALGO_RING,
                                 j->first_step + round, &s);
        if (c->rank == 0)
            j->bytes_sent += s.bytes_sent;
    }
    if (st == DPT_OK && j->res) {
        size_t rn = 0;
        float *e = dpt_codec_state(codec, &rn);
        j->res_n = rn;
        if (e)
            memcpy(j->res + (size_t)c->rank * rn, e, rn * sizeof *e);
    }
    c->st = st;
    if (st != DPT_OK)
        snprintf(c->msg, sizeof c->msg, "%s", dpt_error_get());
    dpt_codec_destroy(codec);
    dpt_coll_destroy(coll);
    return NULL;
}

static inline void fill(job_t *j, uint64_t seed)
{
    dpt_rng_t r;
    dpt_rng_init(&r, seed, 7);
    for (size_t i = 0; i < (size_t)j->p * j->n; i++)
        j->in[i] = j->kind == IN_ZEROS ? 0.0f : dpt_rng_normal(&r) * 0.01f;
    if (j->n && j->kind == IN_HUGE)
        j->in[(size_t)(j->p - 1) * j->n + j->n / 2] = 3e38f / (float)j->p * (j->p > 1 ? 0.9f : 1);
    if (j->n && j->kind == IN_NAN)
        j->in[j->n - 1] = NAN;
}

static inline void run(job_t *j)
{
    dpt_p2p_t *eps[MAX_RANKS];
    pthread_t th[MAX_RANKS];
    rank_ctx_t ctx[MAX_RANKS];
    ck_assert_int_eq(dpt_p2p_loop_create(j->p, eps), DPT_OK);
    for (int r = 0; r < j->p; r++) {
        ctx[r] = (rank_ctx_t){.rank = r, .job = j, .p2p = eps[r]};
        ck_assert_int_eq(pthread_create(&th[r], NULL, rank_main, &ctx[r]), 0);
    }
    for (int r = 0; r < j->p; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < j->p; r++)
        dpt_p2p_destroy(eps[r]);
    for (int r = 0; r < j->p; r++)
        ck_assert_msg(ctx[r].st == DPT_OK, "%s np %d n %zu: rank %d: %s", j->codec, j->p, j->n, r,
                      ctx[r].msg);
}

#endif
