/* check_coll_alltoall.c: dpt_coll_alltoall on the in-process transport (one thread per rank) at
 * 1-5 and 7 ranks: every rank's recv holds exactly the blocks the others addressed to it, for
 * block sizes 0, 1, odd and large, with one piece per block and with blocks cut in many small
 * pieces (more steps than the request limit: several windows); the bytes handed to the transport
 * are (p - 1) blocks; nothing is allocated per call; bad arguments are refused. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "check_main.h"
#include "dptrain/alloc.h"
#include "dptrain/coll.h"

#define MAX_RANKS 8

/* ck_assert_msg records a mark point per call: per-byte checks only call Check on failure. */
#define EXPECT(cond, ...)                                                                      \
    do {                                                                                       \
        if (!(cond))                                                                           \
            ck_abort_msg(__VA_ARGS__);                                                         \
    } while (0)

static const int rank_counts[] = {1, 2, 3, 4, 5, 7};
#define N_RANK_COUNTS ((int)(sizeof rank_counts / sizeof rank_counts[0]))

/* The byte at i of the block rank `from` sends to rank `to`: all three matter. */
static unsigned char pattern(size_t i, int from, int to)
{
    return (unsigned char)(i * 131u + (size_t)from * 29u + (size_t)to * 7u + (i >> 8) + 1u);
}

typedef struct a2a {
    int p;
    size_t nb, segment;
    unsigned char *send[MAX_RANKS], *recv[MAX_RANKS];
    double sent[MAX_RANKS];      /* bytes each rank handed the transport in the call */
    uint64_t allocs[MAX_RANKS];  /* allocations during the call (rank 0's view of all) */
    pthread_barrier_t barrier;
    dpt_status_t st[MAX_RANKS];
    char msg[MAX_RANKS][256];
} a2a_t;

typedef struct rank_arg {
    a2a_t *a;
    int rank;
    dpt_p2p_t *p2p;
} rank_arg_t;

static void *rank_main(void *arg)
{
    rank_arg_t *ra = arg;
    a2a_t *a = ra->a;
    int r = ra->rank;
    dpt_coll_t *c = NULL;
    dpt_coll_config_t cfg = {.max_bytes = 4, .segment_bytes = a->segment};   /* not a limit */
    dpt_status_t st = dpt_coll_create(ra->p2p, &cfg, &c);
    for (int to = 0; to < a->p; to++)
        for (size_t i = 0; i < a->nb; i++)
            a->send[r][(size_t)to * a->nb + i] = pattern(i, r, to);
    memset(a->recv[r], 0xee, a->nb * (size_t)a->p);
    pthread_barrier_wait(&a->barrier);   /* every context exists: count only the call */
    uint64_t before = dpt_alloc_count();
    double b0 = st == DPT_OK ? dpt_coll_bytes_sent(c) : 0;
    if (st == DPT_OK)
        st = dpt_coll_alltoall(c, a->send[r], a->nb, a->recv[r]);
    a->sent[r] = st == DPT_OK ? dpt_coll_bytes_sent(c) - b0 : -1;
    pthread_barrier_wait(&a->barrier);   /* every call has returned */
    a->allocs[r] = dpt_alloc_count() - before;
    pthread_barrier_wait(&a->barrier);
    a->st[r] = st;
    if (st != DPT_OK)
        snprintf(a->msg[r], sizeof a->msg[r], "%s", dpt_error_get());
    dpt_coll_destroy(c);
    return NULL;
}

static void run(a2a_t *a)
{
    dpt_p2p_t *eps[MAX_RANKS];
    pthread_t th[MAX_RANKS];
    rank_arg_t args[MAX_RANKS];
    ck_assert_int_eq(dpt_p2p_loop_create(a->p, eps), DPT_OK);
    pthread_barrier_init(&a->barrier, NULL, (unsigned)a->p);
    for (int r = 0; r < a->p; r++) {
        args[r] = (rank_arg_t){.a = a, .rank = r, .p2p = eps[r]};
        ck_assert_int_eq(pthread_create(&th[r], NULL, rank_main, &args[r]), 0);
    }
    for (int r = 0; r < a->p; r++)
        pthread_join(th[r], NULL);
    pthread_barrier_destroy(&a->barrier);
    for (int r = 0; r < a->p; r++)
        dpt_p2p_destroy(eps[r]);
    for (int r = 0; r < a->p; r++)
        ck_assert_msg(a->st[r] == DPT_OK, "alltoall p=%d nb=%zu: rank %d: %s", a->p, a->nb, r,
                      a->msg[r]);
}

/* _i: rank count */
START_TEST(test_alltoall)
{
    int p = rank_counts[_i];
    const size_t sizes[] = {0, 1, 13, 1001, 70001};
    /* 0: the default 256 KiB, one piece per block; 100: up to 701 pieces per block, so the
     * (piece, round) steps overflow the 2p + 32 request slots many times over */
    const size_t segments[] = {0, 100};
    a2a_t a = {.p = p};
    for (int r = 0; r < p; r++) {
        a.send[r] = dpt_malloc(70001 * (size_t)p);
        a.recv[r] = dpt_malloc(70001 * (size_t)p);
    }
    for (int si = 0; si < 5; si++)
        for (int gi = 0; gi < 2; gi++) {
            a.nb = sizes[si];
            a.segment = segments[gi];
            run(&a);
            for (int r = 0; r < p; r++) {
                for (int from = 0; from < p; from++)
                    for (size_t i = 0; i < a.nb; i++)
                        EXPECT(a.recv[r][(size_t)from * a.nb + i] == pattern(i, from, r),
                               "alltoall p=%d nb=%zu segment=%zu: rank %d, block from %d, byte "
                               "%zu: %u, want %u", p, a.nb, a.segment, r, from, i,
                               a.recv[r][(size_t)from * a.nb + i], pattern(i, from, r));
                ck_assert_msg(a.sent[r] == (double)(p - 1) * (double)a.nb,
                              "alltoall p=%d nb=%zu: rank %d sent %.0f bytes, want %zu", p, a.nb,
                              r, a.sent[r], (size_t)(p - 1) * a.nb);
                ck_assert_msg(a.allocs[r] == 0, "alltoall p=%d nb=%zu: %llu allocations", p,
                              a.nb, (unsigned long long)a.allocs[r]);
            }
        }
    for (int r = 0; r < p; r++) {
        dpt_free(a.send[r]);
        dpt_free(a.recv[r]);
    }
}
END_TEST

START_TEST(test_alltoall_errors)
{
    dpt_p2p_t *ep[1];
    ck_assert_int_eq(dpt_p2p_loop_create(1, ep), DPT_OK);
    dpt_coll_t *c = NULL;
    ck_assert_int_eq(dpt_coll_create(ep[0], &(dpt_coll_config_t){.max_bytes = 4}, &c), DPT_OK);
    unsigned char buf[64] = {0};
    ck_assert_int_eq(dpt_coll_alltoall(NULL, buf, 8, buf + 8), DPT_ERR_INVALID_ARG);
    ck_assert_int_eq(dpt_coll_alltoall(c, NULL, 8, buf), DPT_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(dpt_error_get(), "send"));
    ck_assert_int_eq(dpt_coll_alltoall(c, buf, 8, NULL), DPT_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(dpt_error_get(), "recv"));
    ck_assert_int_eq(dpt_coll_alltoall(c, buf, 8, buf), DPT_ERR_INVALID_ARG);   /* in place */
    ck_assert_ptr_nonnull(strstr(dpt_error_get(), "overlap"));
    ck_assert_int_eq(dpt_coll_alltoall(c, buf + 4, 8, buf), DPT_ERR_INVALID_ARG);
    ck_assert_int_eq(dpt_coll_alltoall(c, buf, 8, buf + 7), DPT_ERR_INVALID_ARG);
    ck_assert_int_eq(dpt_coll_alltoall(c, NULL, 0, NULL), DPT_OK);   /* nothing to move */
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(i + 1);
    ck_assert_int_eq(dpt_coll_alltoall(c, buf, 8, buf + 8), DPT_OK);   /* adjacent is fine */
    ck_assert_int_eq(memcmp(buf, buf + 8, 8), 0);
    dpt_coll_destroy(c);
    dpt_p2p_destroy(ep[0]);
}
END_TEST

static Suite *alltoall_suite(void)
{
    Suite *s = suite_create("coll_alltoall");
    TCase *tc = tcase_create("alltoall");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_alltoall, 0, N_RANK_COUNTS);
    tcase_add_test(tc, test_alltoall_errors);
    suite_add_tcase(s, tc);
    return s;
}

DPT_CHECK_MAIN(alltoall_suite)
