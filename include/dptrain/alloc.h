/* alloc.h: the one allocator of dptrain, injectable (libuv's uv_replace_allocator) so tests can
 * prove the training step allocates nothing: every allocation goes through dpt_malloc/dpt_free. */
#ifndef DPT_ALLOC_H
#define DPT_ALLOC_H

#include <stddef.h>
#include <stdint.h>

/* Allocate `nbytes` aligned to 64 B (returns NULL on failure or nbytes == 0). Free with dpt_free. */
void *dpt_malloc(size_t nbytes);
/* Same, zero-filled. */
void *dpt_calloc(size_t nbytes);
/* NULL-safe. */
void dpt_free(void *p);
/* Number of successful dpt_malloc/dpt_calloc calls since start (all threads). */
uint64_t dpt_alloc_count(void);

typedef void *(*dpt_aligned_alloc_fn)(size_t align, size_t nbytes);
typedef void (*dpt_free_fn)(void *p);
/* Replace the allocator (NULL restores the default). Not thread-safe: call before any allocation. */
void dpt_set_allocator(dpt_aligned_alloc_fn alloc_fn, dpt_free_fn free_fn);

#endif
