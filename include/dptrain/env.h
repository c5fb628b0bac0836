/* env.h: the environment variables dptrain reads, one registry (src/core/env.c), all under the
 * DPTRAIN_ prefix. A variable is one row of DPT_ENV_VARS; `dptrain info` lists them with their
 * values. The DPT_ names of earlier releases are still read, with a warning. */
#ifndef DPT_ENV_H
#define DPT_ENV_H

#include <stdio.h>

/* X(ID, "NAME", "earlier name" or NULL, "what it does") */
#define DPT_ENV_VARS(X) \
    X(DEBUG, "DPTRAIN_DEBUG", "DPT_DEBUG", \
      "log level: ERROR, WARN (default), INFO or TRACE; lines carry [host:rank]") \
    X(MODELS, "DPTRAIN_MODELS", NULL, \
      "a folder searched for --model names before the installed models/") \
    X(HIER_NODE_SIZE, "DPTRAIN_HIER_NODE_SIZE", NULL, \
      "--allreduce hier: ranks per node, instead of the ranks sharing a host (to test it on one)") \
    X(AUTO_PROBE_MAX, "DPTRAIN_AUTO_PROBE_MAX", NULL, \
      "--allreduce auto: the largest size the start-up probe times, in bytes (quick tests)") \
    X(AUTO_RACE_ALL, "DPTRAIN_AUTO_RACE_ALL", NULL, \
      "--allreduce auto: 1 = every size is a close race: its first calls time the contenders (tests)") \
    X(COLL_CACHE, "DPTRAIN_COLL_CACHE", NULL, \
      "--allreduce auto: a file that keeps the start-up timings across runs (keyed by ranks, hosts)") \
    X(CUDA_TF32, "DPTRAIN_CUDA_TF32", "DPT_CUDA_TF32", \
      "cuda, fp32: 1 = TF32 tensor-core math in cuBLAS and cuDNN (default 0)") \
    X(CUDNN_FIND, "DPTRAIN_CUDNN_FIND", "DPT_CUDNN_FIND", \
      "cuda: 1 = time cuDNN's convolution algorithms (cudnnFind) instead of its heuristics") \
    X(CUDA_WORKSPACE_MB, "DPTRAIN_CUDA_WORKSPACE_MB", "DPT_CUDA_WORKSPACE_MB", \
      "cuda: the cuDNN workspace limit in MiB (default 256)")

typedef enum {
#define DPT__ENV_ID(id, name, old, help) DPT_ENV_##id,
    DPT_ENV_VARS(DPT__ENV_ID)
#undef DPT__ENV_ID
    DPT_ENV_COUNT_
} dpt_env_t;

/* The variable's value; NULL when unset or empty. */
const char *dpt_env_str(dpt_env_t v);
/* Its value as an integer; dflt when unset, empty or not an integer (with a warning). */
long dpt_env_long(dpt_env_t v, long dflt);
/* Every variable: name, value (or "unset") and what it does. */
void dpt_env_print(FILE *out);

#endif
