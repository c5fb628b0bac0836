/* alloc.c: the injectable 64-byte-aligned allocator and its call counter. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "dptrain/alloc.h"

static void *default_alloc(size_t align, size_t nbytes)
{
    void *p = NULL;
    return posix_memalign(&p, align, nbytes) == 0 ? p : NULL;
}

static dpt_aligned_alloc_fn alloc_fn = default_alloc;
static dpt_free_fn free_fn = free;
static atomic_uint_fast64_t n_allocs;

void *dpt_malloc(size_t nbytes)
{
    if (nbytes == 0)
        return NULL;
    void *p = alloc_fn(64, (nbytes + 63) & ~(size_t)63);
    if (p)
        atomic_fetch_add(&n_allocs, 1);
    return p;
}

void *dpt_calloc(size_t nbytes)
{
    void *p = dpt_malloc(nbytes);
    if (p)
        memset(p, 0, nbytes);
    return p;
}

void dpt_free(void *p)
{
    if (p)
        free_fn(p);
}

uint64_t dpt_alloc_count(void) { return atomic_load(&n_allocs); }

void dpt_set_allocator(dpt_aligned_alloc_fn a, dpt_free_fn f)
{
    alloc_fn = a ? a : default_alloc;
    free_fn = f ? f : free;
}
