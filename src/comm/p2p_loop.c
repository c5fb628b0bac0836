/* p2p_loop.c: the in-process transport for unit tests: nranks endpoints in one process, each
 * driven by its own thread (gloo's approach), so every algorithm can be tested at 1..9 ranks
 * without mpirun. Per ordered pair (src, dst) there are two FIFO mailboxes: sends posted and not
 * yet matched, receives posted and not yet matched. Whichever side posts second finds the first
 * op of the other side with the same tag, copies the payload once (outside the lock) and marks
 * both done. Request slots are preallocated per endpoint; posting allocates nothing. */
#include <pthread.h>
#include <stdatomic.h>

#include "comm/internal.h"
#include "dptrain/alloc.h"

typedef struct loop_op {
    struct loop_op *next; /* mailbox link while pending, free-list link while unused */
    void *buf;            /* receive destination, or send source (never written) */
    size_t nbytes;
    size_t peer_nbytes;   /* size the matching op had (for the mismatch message) */
    int peer, tag;
    int is_send;
    int done; /* set under the world lock */
    dpt_status_t st;
} loop_op_t;

typedef struct loop_queue {
    loop_op_t *head, *tail;
} loop_queue_t;

typedef struct loop_world loop_world_t;

typedef struct loop_ep {
    struct dpt_p2p base; /* first: a dpt_p2p_t * is a loop_ep_t * */
    loop_world_t *w;
    int rank;
    pthread_cond_t cv;    /* signalled when one of this endpoint's ops completes */
    loop_op_t *free_ops;  /* owner thread only */
    int nslots;
} loop_ep_t;

struct loop_world {
    pthread_mutex_t mu;
    int n;
    atomic_int live;      /* endpoints not yet destroyed; the last one frees the world */
    loop_queue_t *sends;  /* (n, n): [src * n + dst] unmatched sends */
    loop_queue_t *recvs;  /* (n, n): [src * n + dst] unmatched receives posted by dst */
    loop_ep_t *eps;       /* (n) */
    loop_op_t *slots;     /* (n, nslots) */
};

static const dpt__p2p_ops_t loop_ops;

static int loop_rank(const dpt_p2p_t *p) { return ((const loop_ep_t *)p)->rank; }
static int loop_size(const dpt_p2p_t *p) { return ((const loop_ep_t *)p)->w->n; }

static void queue_push(loop_queue_t *q, loop_op_t *op)
{
    op->next = NULL;
    if (q->tail)
        q->tail->next = op;
    else
        q->head = op;
    q->tail = op;
}

/* Remove and return the first op with `tag`, or NULL. */
static loop_op_t *queue_take(loop_queue_t *q, int tag)
{
    loop_op_t *prev = NULL;
    for (loop_op_t *op = q->head; op; prev = op, op = op->next) {
        if (op->tag != tag)
            continue;
        if (prev)
            prev->next = op->next;
        else
            q->head = op->next;
        if (q->tail == op)
            q->tail = prev;
        op->next = NULL;
        return op;
    }
    return NULL;
}

/* Copy the payload of a matched pair and complete both. The op the caller did not post belongs
 * to endpoint `owner`, whose waitall may be sleeping on its condition variable. */
static void deliver(loop_world_t *w, loop_op_t *send, loop_op_t *recv, int owner)
{
    if (send->nbytes == recv->nbytes) {
        if (send->nbytes)
            memcpy(recv->buf, send->buf, send->nbytes);
    } else {
        send->st = recv->st = DPT_ERR_INTERNAL;
    }
    send->peer_nbytes = recv->nbytes;
    recv->peer_nbytes = send->nbytes;
    pthread_mutex_lock(&w->mu);
    send->done = recv->done = 1;
    pthread_cond_broadcast(&w->eps[owner].cv);
    pthread_mutex_unlock(&w->mu);
}

static dpt_status_t post(dpt_p2p_t *p, void *buf, size_t nbytes, int peer, int tag, int is_send,
                         dpt__req_t *req)
{
    loop_ep_t *ep = (loop_ep_t *)p;
    loop_world_t *w = ep->w;
    if (peer < 0 || peer >= w->n)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "p2p_loop rank %d: peer %d out of range [0, %d)",
                             ep->rank, peer, w->n);
    if (nbytes && !buf)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "p2p_loop rank %d: NULL buffer of %zu bytes",
                             ep->rank, nbytes);
    loop_op_t *op = ep->free_ops;
    if (!op)
        return dpt_error_set(DPT_ERR_INTERNAL,
                             "p2p_loop rank %d: more than %d requests outstanding", ep->rank,
                             ep->nslots);
    ep->free_ops = op->next;
    *op = (loop_op_t){.buf = buf, .nbytes = nbytes, .peer = peer, .tag = tag, .is_send = is_send,
                      .st = DPT_OK};
    req->op = op;

    /* A send from me to peer meets receives that peer posted for source me, and vice versa. */
    size_t pair = is_send ? (size_t)ep->rank * w->n + peer : (size_t)peer * w->n + ep->rank;
    pthread_mutex_lock(&w->mu);
    loop_op_t *match = queue_take(is_send ? &w->recvs[pair] : &w->sends[pair], tag);
    if (!match)
        queue_push(is_send ? &w->sends[pair] : &w->recvs[pair], op);
    pthread_mutex_unlock(&w->mu);
    if (match) /* both sides are posted: the other side's op is no longer reachable by anyone */
        deliver(w, is_send ? op : match, is_send ? match : op, peer);
    return DPT_OK;
}

static dpt_status_t loop_isend(dpt_p2p_t *p, const void *buf, size_t nbytes, int peer, int tag,
                               dpt__req_t *req)
{
    return post(p, (void *)buf, nbytes, peer, tag, 1, req);
}

static dpt_status_t loop_irecv(dpt_p2p_t *p, void *buf, size_t nbytes, int peer, int tag,
                               dpt__req_t *req)
{
    return post(p, buf, nbytes, peer, tag, 0, req);
}

static dpt_status_t loop_waitall(dpt_p2p_t *p, dpt__req_t *reqs, int n)
{
    loop_ep_t *ep = (loop_ep_t *)p;
    loop_world_t *w = ep->w;
    dpt_status_t st = DPT_OK;
    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < n; i++) {
        loop_op_t *op = reqs[i].op;
        if (!op)
            continue;
        while (!op->done)
            pthread_cond_wait(&ep->cv, &w->mu);
        if (op->st != DPT_OK && st == DPT_OK)
            st = dpt_error_set(op->st,
                               "p2p_loop rank %d: %s rank %d (tag %d) size mismatch: %zu bytes "
                               "sent, receive posted for %zu",
                               ep->rank, op->is_send ? "send to" : "receive from", op->peer,
                               op->tag, op->is_send ? op->nbytes : op->peer_nbytes,
                               op->is_send ? op->peer_nbytes : op->nbytes);
        op->next = ep->free_ops;
        ep->free_ops = op;
        reqs[i].op = NULL;
    }
    pthread_mutex_unlock(&w->mu);
    return st;
}

static void world_free(loop_world_t *w)
{
    for (int r = 0; r < w->n; r++)
        pthread_cond_destroy(&w->eps[r].cv);
    pthread_mutex_destroy(&w->mu);
    dpt_free(w->slots);
    dpt_free(w->eps);
    dpt_free(w->recvs);
    dpt_free(w->sends);
    dpt_free(w);
}

static void loop_destroy(dpt_p2p_t *p)
{
    loop_world_t *w = ((loop_ep_t *)p)->w;
    if (atomic_fetch_sub(&w->live, 1) == 1)
        world_free(w);
}

dpt_status_t dpt_p2p_loop_create(int nranks, dpt_p2p_t *out[])
{
    if (nranks < 1 || nranks > 4096)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "p2p_loop: nranks %d out of range [1, 4096]",
                             nranks);
    if (!out)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "p2p_loop: NULL out array");
    /* Slots: enough for the widest step of any algorithm (2 (p-1) in the deterministic
     * reduce-scatter, 12 in the double binary tree, log p + 1 in the broadcast). */
    int nslots = 4 * nranks + 64;
    size_t npairs = (size_t)nranks * nranks;
    loop_world_t *w = dpt_calloc(sizeof *w);
    if (!w)
        return dpt_error_set(DPT_ERR_NOMEM, "p2p_loop: out of memory");
    w->n = nranks;
    w->sends = dpt_calloc(npairs * sizeof *w->sends);
    w->recvs = dpt_calloc(npairs * sizeof *w->recvs);
    w->eps = dpt_calloc((size_t)nranks * sizeof *w->eps);
    w->slots = dpt_calloc((size_t)nranks * nslots * sizeof *w->slots);
    if (!w->sends || !w->recvs || !w->eps || !w->slots) {
        dpt_free(w->slots);
        dpt_free(w->eps);
        dpt_free(w->recvs);
        dpt_free(w->sends);
        dpt_free(w);
        return dpt_error_set(DPT_ERR_NOMEM, "p2p_loop: out of memory for %d ranks", nranks);
    }
    pthread_mutex_init(&w->mu, NULL);
    atomic_init(&w->live, nranks);
    for (int r = 0; r < nranks; r++) {
        loop_ep_t *ep = &w->eps[r];
        ep->base.ops = &loop_ops;
        ep->base.mpi_comm = MPI_COMM_NULL;
        ep->w = w;
        ep->rank = r;
        ep->nslots = nslots;
        pthread_cond_init(&ep->cv, NULL);
        loop_op_t *slots = w->slots + (size_t)r * nslots;
        for (int i = 0; i < nslots; i++)
            slots[i].next = i + 1 < nslots ? &slots[i + 1] : NULL;
        ep->free_ops = slots;
        out[r] = &ep->base;
    }
    return DPT_OK;
}

static const dpt__p2p_ops_t loop_ops = {
    .name = "loop",
    .rank = loop_rank,
    .size = loop_size,
    .isend = loop_isend,
    .irecv = loop_irecv,
    .waitall = loop_waitall,
    .destroy = loop_destroy,
};
