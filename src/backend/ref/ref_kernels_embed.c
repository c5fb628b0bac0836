/* ref_kernels_embed.c: the token embedding kernels (ref_kernels_embed.h), written once as a
 * macro over the element type and instantiated for float and double. */
#include <stddef.h>
#include <string.h>

#include "backend/ref/ref_kernels_embed.h"

#define DPT_REF_EMBED_DEFINE(T, S)                                                               \
    void dpt__ref_tokens_fwd_##S(const T *x, const T *cls_tok, const T *pos, T *y, int N, int C, \
                                 int P, int cls)                                                 \
    {                                                                                            \
        const long TT = (long)P + cls;                                                           \
        for (int n = 0; n < N; n++)                                                              \
            for (int c = 0; c < C; c++) {                                                        \
                T *yr = y + ((long)n * C + c) * TT;                                              \
                const T *xr = x + ((long)n * C + c) * P;                                         \
                if (cls)                                                                         \
                    yr[0] = cls_tok[c];                                                          \
                for (int p = 0; p < P; p++)                                                      \
                    yr[cls + p] = xr[p];                                                         \
                if (pos)                                                                         \
                    for (long t = 0; t < TT; t++)                                                \
                        yr[t] += pos[c * TT + t];                                                \
            }                                                                                    \
    }                                                                                            \
                                                                                                 \
    void dpt__ref_tokens_bwd_##S(const T *dy, T *dx, T *dcls, T *dpos, int N, int C, int P,      \
                                 int cls)                                                        \
    {                                                                                            \
        const long TT = (long)P + cls;                                                           \
        if (dcls)                                                                                \
            memset(dcls, 0, (size_t)C * sizeof(T));                                              \
        if (dpos)                                                                                \
            memset(dpos, 0, (size_t)C * TT * sizeof(T));                                         \
        for (int n = 0; n < N; n++)                                                              \
            for (int c = 0; c < C; c++) {                                                        \
                const T *g = dy + ((long)n * C + c) * TT;                                        \
                if (dx)                                                                          \
                    for (int p = 0; p < P; p++)                                                  \
                        dx[((long)n * C + c) * P + p] = g[cls + p];                              \
                if (dcls)                                                                        \
                    dcls[c] += g[0];                                                             \
                if (dpos)                                                                        \
                    for (long t = 0; t < TT; t++)                                                \
                        dpos[c * TT + t] += g[t];                                                \
            }                                                                                    \
    }                                                                                            \
                                                                                                 \
    void dpt__ref_token_select_fwd_##S(const T *x, T *y, int N, int C, int TT)                   \
    {                                                                                            \
        for (long i = 0; i < (long)N * C; i++)                                                   \
            y[i] = x[i * TT];                                                                    \
    }                                                                                            \
                                                                                                 \
    void dpt__ref_token_select_bwd_##S(const T *dy, T *dx, int N, int C, int TT)                 \
    {                                                                                            \
        memset(dx, 0, (size_t)N * C * TT * sizeof(T));                                           \
        for (long i = 0; i < (long)N * C; i++)                                                   \
            dx[i * TT] = dy[i];                                                                  \
    }

DPT_REF_EMBED_DEFINE(float, f32)
DPT_REF_EMBED_DEFINE(double, f64)
