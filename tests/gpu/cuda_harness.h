/* cuda_harness.h: what the tests/gpu/check_cuda_*.c programs share (cuda_harness.c): one cuda
 * backend per precision, reused across cases; the tolerance of a precision; device tensors and
 * host<->device copies that fail the test on error; rounding host values through a 16-bit device
 * type, so that the ref and cuda backends see identical inputs; and main()'s body (skip without
 * a device, run the suite in CK_NOFORK mode, destroy the backends). */
#ifndef DPT_TEST_CUDA_HARNESS_H
#define DPT_TEST_CUDA_HARNESS_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

#include "dptrain/backend.h"
#include "dptrain/cuda.h"

/* The backend under test and the oracle (unused ones do not warn: they come from a header). */
static const dpt_backend_ops_t *const G = &dpt_backend_cuda, *const R = &dpt_backend_ref;

/* The cuda backend of precision p on device 0, created on first use (destroyed by
 * cuda_test_main). */
dpt_backend_t *cuda_be(dpt_precision_t p);

/* Relative tolerance against ref: 1e-4 for fp32, 1e-2 for the 16-bit storage types. */
double tol_of(dpt_precision_t p);

/* A device buffer for `shape` (its nbytes). */
dpt_tensor_t dev_tensor(dpt_backend_t *be, dpt_tensor_t shape);

/* `t` with another layout, its nbytes recomputed for that layout's element size. */
dpt_tensor_t with_layout(dpt_tensor_t t, int layout);

/* n device floats (plus one of slack), filled from `host` unless NULL. */
float *dev_floats(dpt_backend_t *be, const float *host, size_t n);

/* n floats from the device to the host. */
void to_host(dpt_backend_t *be, float *dst, const float *src_dev, size_t n);

/* The backend's NCHW float32 export and import, failing the test on error. */
void export_t(dpt_backend_t *be, const dpt_tensor_t *t, float *out);
void import_t(dpt_backend_t *be, const float *in, dpt_tensor_t *t);

/* Round n host floats to what precision p stores (identity for fp32). */
void quantize(dpt_backend_t *be, dpt_precision_t p, float *v, size_t n);

/* One op on cuda against ref: the same (rounded) parameters, buffers, inputs and output
 * gradient on both; outputs, running statistics, loss, input gradients (with dx pre-filled with
 * garbage) and parameter gradients (also from a backward without dx) agree within tol_of(prec)
 * of the largest ref magnitude, in training and in inference. Conv, fc and linear weights are
 * rounded to the storage type (the backend casts them); batch and layer norm gammas are
 * around 1. */
typedef struct cuda_op_mode {
    dpt_precision_t prec;
    int in_fp32;         /* 16-bit modes: give the op float32 NCHW inputs (the model's input) */
    int n_valid;         /* xent */
    float loss_scale;    /* xent backward */
    int bwd_no_dx;       /* ops without parameters: a backward without dx too (must succeed) */
} cuda_op_mode_t;
void cuda_compare_op(const dpt_op_desc_t *desc, const cuda_op_mode_t *m, uint64_t seed);

/* main(): without a CUDA device prints "SKIP: no CUDA device (<reason>)" and returns 77 (CTest:
 * skipped); else runs make_suite()'s suite in CK_NOFORK mode (never fork after CUDA is
 * initialized), destroys the backends of cuda_be and returns EXIT_SUCCESS or EXIT_FAILURE. */
int cuda_test_main(Suite *(*make_suite)(void));

#endif
