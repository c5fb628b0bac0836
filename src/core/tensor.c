/* tensor.c: helpers for non-owning tensor views. */
#include "dptrain/tensor.h"

size_t dpt_tensor_count(const dpt_tensor_t *t)
{
    return (size_t)t->n * (size_t)t->c * (size_t)t->h * (size_t)t->w;
}

dpt_tensor_t dpt_tensor_shape(int n, int c, int h, int w)
{
    dpt_tensor_t t = {.data = 0, .n = n, .c = c, .h = h, .w = w, .layout = DPT_LAYOUT_NCHW};
    t.nbytes = dpt_tensor_count(&t) * sizeof(float);
    return t;
}
