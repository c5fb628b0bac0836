/* log.c: leveled logging to stderr with a [host:rank] prefix; level from DPT_DEBUG. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "dptrain/env.h"
#include "dptrain/log.h"

static int log_level = -1;
static int log_rank = -1;
static char log_host[64];

static void log_init(void)
{
    if (log_level >= 0)
        return;
    const char *e = dpt_env_str(DPT_ENV_DEBUG);
    log_level = DPT_LOG_WARN;
    if (e) {
        if (!strcasecmp(e, "INFO")) log_level = DPT_LOG_INFO;
        else if (!strcasecmp(e, "TRACE")) log_level = DPT_LOG_TRACE;
        else if (!strcasecmp(e, "ERROR")) log_level = DPT_LOG_ERROR;
    }
    if (gethostname(log_host, sizeof log_host - 1) != 0)
        strcpy(log_host, "?");
}

void dpt_log_set_rank(int rank) { log_rank = rank; }

void dpt_log_set_level(dpt_log_level_t level) { log_init(); log_level = (int)level; }

int dpt_log_enabled(dpt_log_level_t level)
{
    log_init();
    return (int)level <= log_level;
}

void dpt_log(dpt_log_level_t level, const char *file, int line, const char *fmt, ...)
{
    if (!dpt_log_enabled(level))
        return;
    static const char *names[] = {"ERROR", "WARN", "INFO", "TRACE"};
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    if (log_rank >= 0)
        fprintf(stderr, "[%s:%d] %s %s (%s:%d)\n", log_host, log_rank, names[level], msg, base, line);
    else
        fprintf(stderr, "[%s] %s %s (%s:%d)\n", log_host, names[level], msg, base, line);
}
