/* device.c: what a run does differently on a GPU (--device cuda), in one place, so that the
 * step and the epoch read the same on every backend: the choice of device, the host mirrors of
 * the device state, the device input pipeline (the next batch's copy overlaps this step; crop
 * and flip on the GPU), the non-finite scan and the optimizer kernel. Without CUDA in the build,
 * every device branch is a host fallback or an error naming the flag. */
#include <stdio.h>
#include <string.h>

#include "dptrain/alloc.h"
#include "dptrain/config.h"
#include "train/session.h"

#if DPT_HAVE_CUDA
#include <cuda_runtime.h>
#include <mpi.h>

#include "data/gpu_input.h"
#include "dptrain/cuda.h"
#endif

dpt_status_t dpt__device_pick(session_t *s)
{
#if DPT_HAVE_CUDA
    int local = 0;
    if (s->dist.mpi) {   /* collective: before anything that may fail on one rank only */
        MPI_Comm node;
        if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node)
            != MPI_SUCCESS)
            return dpt_error_set(DPT_ERR_MPI, "--device cuda: rank %d: MPI_Comm_split_type "
                                 "failed", s->dist.rank);
        MPI_Comm_rank(node, &local);
        MPI_Comm_free(&node);
    }
    int n = dpt_cuda_device_count();
    if (n <= 0) {
        const char *why = dpt_cuda_no_device_reason();
        return dpt_error_set(DPT_ERR_CUDA, "--device cuda: rank %d has no CUDA device%s%s",
                             s->dist.rank, why && *why ? ": " : "", why ? why : "");
    }
    s->device = local % n;
    cudaError_t e = cudaSetDevice(s->device);
    if (e != cudaSuccess)
        return dpt_error_set(DPT_ERR_CUDA, "--device cuda: rank %d: cuda: cudaSetDevice(%d): %s",
                             s->dist.rank, s->device, cudaGetErrorString(e));
    return DPT_OK;
#else
    (void)s;
    return dpt_error_set(DPT_ERR_UNSUPPORTED, "--device cuda: this build has no CUDA");
#endif
}

void *dpt__device_stream(session_t *s)
{
#if DPT_HAVE_CUDA
    return s->dev ? dpt_cuda_stream(s->be) : NULL;
#else
    (void)s;
    return NULL;
#endif
}

dpt_status_t dpt__state_to_device(session_t *s)
{
    if (!s->dev)
        return DPT_OK;
    size_t np;
    dpt_model_params(s->model, &np);
    DPT_CHECK(dpt_model_params_to_device(s->model));
    DPT_CHECK(dpt_backend_memcpy(s->ops, s->be, s->mom, s->h_mom, s->n_state * sizeof(float),
                                 DPT_COPY_H2D));
    return dpt_backend_sync(s->ops, s->be);
}

dpt_status_t dpt__state_to_host(session_t *s, int with_mom)
{
    if (!s->dev)
        return DPT_OK;
    DPT_CHECK(dpt_model_params_to_host(s->model));
    if (!with_mom)
        return DPT_OK;
    DPT_CHECK(dpt_backend_memcpy(s->ops, s->be, s->h_mom, s->mom, s->n_state * sizeof(float),
                                 DPT_COPY_D2H));
    return dpt_backend_sync(s->ops, s->be);
}

#if DPT_HAVE_CUDA
/* The next batch of the train loader, staged (its copy queued) unless the epoch has no more. */
static dpt_status_t gin_fetch(session_t *s)
{
    if (s->gin_fetched >= dpt_loader_steps(s->train_ld))
        return DPT_OK;
    const dpt_batch_t *b;
    DPT_CHECK(dpt_loader_next(s->train_ld, &b));
    s->gin_fetched++;
    s->staged_pos = dpt__batch_pos(s, b->epoch, b->step);
    return dpt_gpu_input_stage(s->gin, b);
}

/* forward_next on the device: take the staged batch (crop/flip on the compute stream into the
 * model's input), stage the one after so that its copy overlaps this step's compute, then run
 * forward. */
static dpt_status_t gin_forward(session_t *s, float *loss, int32_t *hits, int *n_valid)
{
    if (!dpt_gpu_input_pending(s->gin))
        DPT_CHECK(gin_fetch(s));
    const int32_t *labels;
    DPT_CHECK(dpt_gpu_input_take(s->gin, s->d_in, &labels, n_valid));
    dpt__set_masks(s, s->staged_pos);   /* the taken batch's: the next one is staged below */
    DPT_CHECK(dpt_cuda_import_device(s->be, s->d_in, dpt_model_input_tensor(s->model)));
    DPT_CHECK(gin_fetch(s));
    return dpt_model_forward(s->model, NULL, labels, *n_valid, 1, loss, hits);
}
#endif

dpt_status_t dpt__device_input_create(session_t *s, const dpt_train_config_t *cfg)
{
#if DPT_HAVE_CUDA
    int c, h, w;
    dpt_model_input_shape(s->model, &c, &h, &w);
    DPT_CHECK(dpt_gpu_input_create(cfg->batch, c, h, w,
                                   cfg->random_resized_crop ? 0 : cfg->crop_pad, s->stream,
                                   &s->gin));
    s->d_in = s->ops->alloc(s->be, (size_t)cfg->batch * c * h * w * sizeof(float));
    if (!s->d_in)
        return dpt_error_set(DPT_ERR_NOMEM, "out of device memory for the input batch");
    s->forward_next = gin_forward;
    return DPT_OK;
#else
    (void)s;
    (void)cfg;
    return dpt_error_set(DPT_ERR_UNSUPPORTED, "--device cuda: this build has no CUDA");
#endif
}

dpt_status_t dpt__train_epoch_start(session_t *s, int epoch)
{
    DPT_CHECK(dpt_loader_start_epoch(s->train_ld, epoch));
#if DPT_HAVE_CUDA
    if (s->gin) {
        DPT_CHECK(dpt_gpu_input_reset(s->gin));
        s->gin_fetched = 0;
    }
#endif
    return DPT_OK;
}

void dpt__train_batches_taken(session_t *s, int taken)
{
    s->gin_fetched = taken;
}

static int all_finite(const float *v, size_t n)
{
    float acc = 0;
    for (size_t i = 0; i < n; i++)
        acc += v[i] * 0.0f;   /* stays 0 unless some v[i] is NaN or +-Inf */
    return acc == 0.0f;
}

dpt_status_t dpt__grads_finite(session_t *s, size_t np, int *finite)
{
#if DPT_HAVE_CUDA
    if (s->dev) {
        int bad = 0;
        DPT_CHECK(dpt_nonfinite_device(s->grads, np, s->d_flag, &bad, s->stream));
        *finite = !bad;
        return DPT_OK;
    }
#endif
    *finite = all_finite(s->grads, np);
    return DPT_OK;
}

dpt_status_t dpt__optimizer_step(session_t *s, const dpt_sgd_config_t *sgd, float lr,
                                 float inv_scale)
{
    size_t np;
    float *params = dpt_model_params(s->model, &np);
    int n_segs;
    const dpt_param_segment_t *segs = dpt_model_segments(s->model, &n_segs);
    (void)inv_scale;   /* host backends compute in fp32: no loss scale to undo */
    if (sgd->optimizer == DPT_OPTIM_ADAMW) {
        const uint64_t t = ++s->adam_t;   /* only applied steps reach here */
#if DPT_HAVE_CUDA
        if (s->dev)
            return dpt_adamw_step_device(sgd, lr, inv_scale, t, params, s->grads, s->mom,
                                         s->mom + np, segs, n_segs, s->stream);
#endif
        dpt_adamw_step(sgd, lr, t, params, s->grads, s->mom, s->mom + np, segs, n_segs);
        return DPT_OK;
    }
#if DPT_HAVE_CUDA
    if (s->dev)
        return dpt_sgd_step_device(sgd, lr, inv_scale, params, s->grads, s->mom, segs, n_segs,
                                   s->stream);
#endif
    dpt_sgd_step(sgd, lr, params, s->grads, s->mom, segs, n_segs);
    return DPT_OK;
}

void dpt__device_free(session_t *s)
{
#if DPT_HAVE_CUDA
    dpt_gpu_input_destroy(s->gin);
#endif
    if (s->mom)
        s->ops->free(s->be, s->mom);
    if (s->d_flag)
        s->ops->free(s->be, s->d_flag);
    if (s->d_in)
        s->ops->free(s->be, s->d_in);
    dpt_free(s->h_mom);
}
