/* status.c: status strings (from the X-macro list) and the per-thread last-error message. */
#include <stdio.h>
#include <string.h>

#include "dptrain/log.h"
#include "dptrain/status.h"

static _Thread_local char last_error[1024];

const char *dpt_status_str(dpt_status_t st)
{
    switch (st) {
#define DPT_X_CASE(name, str) case DPT_##name: return str;
        DPT_STATUS_LIST(DPT_X_CASE)
#undef DPT_X_CASE
    }
    return "unknown status";
}

dpt_status_t dpt_error_set(dpt_status_t st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return st;
}

dpt_status_t dpt_error_prefix(dpt_status_t st, const char *fmt, ...)
{
    char pre[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    const size_t cap = sizeof last_error - 1;                /* room for text, without the NUL */
    size_t np = n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap;
    size_t old = strnlen(last_error, cap);
    size_t keep = old < cap - np ? old : cap - np;
    memmove(last_error + np, last_error, keep);               /* the old text, overlap-safe */
    memcpy(last_error, pre, np);
    last_error[np + keep] = '\0';
    return st;
}

const char *dpt_error_get(void) { return last_error; }

void dpt_error_clear(void) { last_error[0] = '\0'; }

void dpt__trace_status(dpt_status_t st, const char *file, int line)
{
    if (dpt_log_enabled(DPT_LOG_TRACE))
        dpt_log(DPT_LOG_TRACE, file, line, "-> %s", dpt_status_str(st));
}
