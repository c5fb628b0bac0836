/* tensor.h: non-owning float32 tensor views. Storage belongs to an arena (the model) or the
 * loader. Activations are 4-D (N, C, H, W); `layout` says how those elements sit in memory:
 * DPT_LAYOUT_NCHW (0) is plain row-major NCHW, any other value is a backend-private layout
 * (e.g. oneDNN's blocked nChw16c) that only the backend that made it can read or convert. */
#ifndef DPT_TENSOR_H
#define DPT_TENSOR_H

#include <stddef.h>

#define DPT_LAYOUT_NCHW 0

typedef struct dpt_tensor {
    float *data;     /* borrowed; NULL in shape-only descriptors */
    int n, c, h, w;  /* logical shape; a 2-D (N, F) tensor is (N, F, 1, 1) */
    int layout;      /* DPT_LAYOUT_NCHW or a backend-private id */
    size_t nbytes;   /* bytes the buffer holds (>= n*c*h*w*4; blocked layouts may pad) */
} dpt_tensor_t;

/* n*c*h*w. */
size_t dpt_tensor_count(const dpt_tensor_t *t);
/* A plain NCHW descriptor with nbytes = count*4 and data = NULL. */
dpt_tensor_t dpt_tensor_shape(int n, int c, int h, int w);

#endif
