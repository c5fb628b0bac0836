/* wire.h: what a codec's exchange goes through, so that "--compress CODEC+zstd" is one mechanism
 * and not a case in every codec. A codec that accepts a wire (dpt__codec_ops_t.set_wire) calls
 * dpt__wire_allgather / dpt__wire_allreduce where it would call dpt_coll_allgather /
 * dpt_coll_allreduce. Without "+zstd" the codec has no wire (NULL) and those are the plain
 * collectives; with it, every message is compressed with zstd (level 1, byte planes of the
 * elements split first) and sent after an 8-byte length, or sent raw when zstd does not make it
 * smaller. Lossless: the results are the bits the plain collectives give (see allreduce below for
 * which plain algorithm). A wire belongs to one codec (one bucket), is used by one thread at a
 * time, and allocates its buffers on the first call of each size, never again for the same sizes.
 *
 * wire.c: the compression, the framing (length, then payload) and the all-gather; wire_ring.c:
 * the all-reduce (its own ring, since the collective layer reduces inside its algorithms). */
#ifndef DPT_COMPRESS_WIRE_H
#define DPT_COMPRESS_WIRE_H

#include <stddef.h>

#include "dptrain/compress.h"

typedef struct dpt__wire dpt__wire_t;

/* A zstd wire (the only kind so far). */
dpt_status_t dpt__wire_create(dpt__wire_t **out);
void dpt__wire_destroy(dpt__wire_t *w);

/* dpt_coll_allgather of nbytes per rank, of elements of `esize` bytes (the unit whose byte planes
 * are compressed apart: 4 for floats and 32-bit indices). w == NULL: dpt_coll_allgather itself.
 * With a wire, stats->bytes_sent gets the bytes this rank handed the transport (lengths included)
 * and stats->t_code the seconds spent compressing and decompressing, both added; without one
 * stats is untouched (the codec says what it sent). */
dpt_status_t dpt__wire_allgather(dpt__wire_t *w, dpt_coll_t *coll, const void *send, size_t nbytes,
                                 size_t esize, void *recv, dpt_codec_stats_t *stats);

/* dpt_coll_allreduce of count elements of dtype. w == NULL: dpt_coll_allreduce with `algo`.
 * With a wire `algo` is not used: on a deterministic context (dpt_coll_config_t.deterministic)
 * the result is the deterministic one of every algorithm (the rank-order fold); otherwise it is
 * the "ring" algorithm's, bit for bit (the same chunks, the same order of the sums, one rounding
 * per hop, AVG divided at the chunk's owner). stats as for dpt__wire_allgather. */
dpt_status_t dpt__wire_allreduce(dpt__wire_t *w, dpt_coll_t *coll, void *buf, size_t count,
                                 dpt_dtype_t dtype, dpt_redop_t op, dpt_coll_algo_t algo,
                                 dpt_codec_stats_t *stats);

/* ---- between wire.c and wire_ring.c -------------------------------------------------------- */

/* Ring all-gather of count elements of es bytes cut into p chunks (dpt__chunk): rank r starts
 * with chunk (r + shift) mod p, compresses it once, and every chunk travels compressed, each rank
 * forwarding the bytes it received (no recompression) and decompressing them into buf. */
dpt_status_t dpt__wire_ring_allgather(dpt__wire_t *w, dpt_coll_t *coll, void *buf, size_t count,
                                      size_t es, int shift);

/* Compress n bytes at src (elements of es bytes) into z (zcap >= dpt__wire_bound(n) bytes):
 * *out, *out_n is what to send: z and the compressed length, or src and n itself when zstd does
 * not make it smaller (a receiver knows a message is raw by its length == n). */
size_t dpt__wire_bound(size_t n);
dpt_status_t dpt__wire_pack(dpt__wire_t *w, const void *src, size_t n, size_t es, void *z,
                            size_t zcap, const void **out, size_t *out_n);
/* The inverse: zn bytes at z into n bytes at dst (z is raw when zn == n; then it is copied
 * unless z == dst). */
dpt_status_t dpt__wire_unpack(dpt__wire_t *w, const void *z, size_t zn, size_t n, size_t es,
                              void *dst);

/* Framed messages, several at once: for each of the n messages, if sraw > 0 send (its length sn
 * in 8 bytes, then the sn bytes at sp; sn == sraw: raw) to `to`, and if rraw > 0 receive one from
 * `from` of at most rraw bytes: into raw_dst when it is raw, else into zdst; rn[i] is the length
 * received (0 when rraw == 0). Both sides know sraw / rraw (the chunk sizes), so empty chunks
 * send nothing. n is at most the rank count. */
typedef struct dpt__wire_msg {
    int to;
    const void *sp;
    size_t sn, sraw;
    int from;
    size_t rraw;
    void *raw_dst, *zdst;
} dpt__wire_msg_t;
dpt_status_t dpt__wire_exchange(dpt__wire_t *w, dpt_coll_t *coll, int n,
                                const dpt__wire_msg_t *msgs, size_t *rn);

/* Scratch buffer `which` of the wire (grown to at least n bytes; contents not kept). */
enum { DPT__WIRE_ZSEND, DPT__WIRE_ZRECV, DPT__WIRE_LANE, DPT__WIRE_ACC, DPT__WIRE_MSGS,
       DPT__WIRE_NBUF };
dpt_status_t dpt__wire_scratch(dpt__wire_t *w, int which, size_t n, void **out);

/* Seconds spent in zstd and the byte shuffles since the last call (then reset). */
double dpt__wire_take_time(dpt__wire_t *w);

#endif
