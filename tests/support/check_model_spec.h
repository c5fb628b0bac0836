/* check_model_spec.h: the assertion that two parsed model files describe the same network,
 * input shape, classes and every layer (kind, name, wiring, conv/pool keys, drop rate, fusion): a file written with [block]/[use]
 * or [include] against the same model written out by hand (check_model.c,
 * check_model_include.c). */
#ifndef DPT_TEST_CHECK_MODEL_SPEC_H
#define DPT_TEST_CHECK_MODEL_SPEC_H

#include <check.h>

#include "model/internal.h"

static inline void assert_same_layers(const dpt_model_spec_t *a, const dpt_model_spec_t *b)
{
    ck_assert_int_eq(a->in_c, b->in_c);
    ck_assert_int_eq(a->in_h, b->in_h);
    ck_assert_int_eq(a->classes, b->classes);
    ck_assert_int_eq(a->n_layers, b->n_layers);
    for (int i = 0; i < a->n_layers; i++) {
        const dpt_layer_spec_t *x = &a->layers[i], *y = &b->layers[i];
        ck_assert_int_eq(x->kind, y->kind);
        ck_assert_str_eq(x->name, y->name);
        ck_assert_int_eq(x->n_inputs, y->n_inputs);
        for (int k = 0; k < x->n_inputs; k++)
            ck_assert_int_eq(x->inputs[k], y->inputs[k]);
        ck_assert_int_eq(x->filters, y->filters);
        ck_assert_int_eq(x->size, y->size);
        ck_assert_int_eq(x->stride, y->stride);
        ck_assert_int_eq(x->pad, y->pad);
        ck_assert_int_eq(x->bias, y->bias);
        ck_assert_int_eq(x->groups, y->groups);
        ck_assert_float_eq(x->drop_rate, y->drop_rate);
        ck_assert_int_eq(x->fuse_relu, y->fuse_relu);
    }
}

#endif
