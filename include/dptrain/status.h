/* status.h: the one status enum of dptrain and the per-thread "last error" message.
 * Every fallible library function returns dpt_status_t; the human-readable detail (which file,
 * which flag, which rank) is set with dpt_error_set() and read by main with dpt_error_get(). */
#ifndef DPT_STATUS_H
#define DPT_STATUS_H

#include <stdarg.h>

#define DPT_STATUS_LIST(X)                                  \
    X(OK, "ok")                                             \
    X(ERR_INVALID_ARG, "invalid argument")                  \
    X(ERR_NOMEM, "out of memory")                           \
    X(ERR_IO, "I/O error")                                  \
    X(ERR_FORMAT, "bad file format")                        \
    X(ERR_UNSUPPORTED, "unsupported")                       \
    X(ERR_MPI, "MPI error")                                 \
    X(ERR_CUDA, "CUDA error")                               \
    X(ERR_NCCL, "NCCL error")                               \
    X(ERR_DNNL, "oneDNN error")                             \
    X(ERR_INTERNAL, "internal error")

typedef enum {
#define DPT_X_ENUM(name, str) DPT_##name,
    DPT_STATUS_LIST(DPT_X_ENUM)
#undef DPT_X_ENUM
} dpt_status_t;

/* Short fixed description of a status ("bad file format"). Never NULL. */
const char *dpt_status_str(dpt_status_t st);

/* Record a detailed message for the calling thread (printf format) and return `st`, so callers
 * can write `return dpt_error_set(DPT_ERR_FORMAT, "%s: bad magic", path);`. */
dpt_status_t dpt_error_set(dpt_status_t st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prepend context to the calling thread's last message, "<fmt ...><old message>", and return
 * `st` (NCCL's chained messages): `return dpt_error_prefix(st, "--output %s: ", dir);`. Use it,
 * never dpt_error_set(st, "ctx %s", dpt_error_get()): that formats the message buffer into
 * itself, an overlapping vsnprintf (undefined behaviour; glibc garbles the text). The prefix is
 * formatted into a local buffer first, so its arguments may include dpt_error_get(); the result
 * is cut at the buffer size (1023 bytes plus the NUL), the old message's end going first; with
 * no old message ("") the result is just the prefix. */
dpt_status_t dpt_error_prefix(dpt_status_t st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The calling thread's last message set by dpt_error_set ("" if none). Borrowed. */
const char *dpt_error_get(void);

/* Clear the calling thread's last message. */
void dpt_error_clear(void);

/* Propagate a failing status, logging one backtrace line (NCCL's NCCLCHECK). */
#define DPT_CHECK(call)                                                     \
    do {                                                                    \
        dpt_status_t dpt__st = (call);                                      \
        if (dpt__st != DPT_OK) {                                            \
            dpt__trace_status(dpt__st, __FILE__, __LINE__);                 \
            return dpt__st;                                                 \
        }                                                                   \
    } while (0)

/* Same, but jump to a cleanup label with the status stored in `st`. */
#define DPT_CHECK_GOTO(call, st, label)                                     \
    do {                                                                    \
        (st) = (call);                                                      \
        if ((st) != DPT_OK) {                                               \
            dpt__trace_status((st), __FILE__, __LINE__);                    \
            goto label;                                                     \
        }                                                                   \
    } while (0)

void dpt__trace_status(dpt_status_t st, const char *file, int line);

#endif
