/* env.c: the registry of environment variables (env.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dptrain/env.h"
#include "dptrain/log.h"

static const struct {
    const char *name, *old, *help;
} vars[] = {
#define ROW(id, name, old, help) {name, old, help},
    DPT_ENV_VARS(ROW)
#undef ROW
};

const char *dpt_env_str(dpt_env_t v)
{
    if ((unsigned)v >= DPT_ENV_COUNT_)
        return NULL;
    const char *s = getenv(vars[v].name);
    if ((!s || !*s) && vars[v].old) {
        s = getenv(vars[v].old);
        static int warned[DPT_ENV_COUNT_];
        if (s && *s && !warned[v]) {
            warned[v] = 1;   /* stderr, not the logger: the logger reads DPTRAIN_DEBUG here */
            fprintf(stderr, "dptrain: warning: %s is now called %s (the old name still works)\n",
                    vars[v].old, vars[v].name);
        }
    }
    return s && *s ? s : NULL;
}

long dpt_env_long(dpt_env_t v, long dflt)
{
    const char *s = dpt_env_str(v);
    if (!s)
        return dflt;
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (errno || end == s || *end) {
        DPT_WARN("%s='%s' is not an integer; using %ld", vars[v].name, s, dflt);
        return dflt;
    }
    return x;
}

void dpt_env_print(FILE *out)
{
    for (int i = 0; i < DPT_ENV_COUNT_; i++) {
        const char *s = getenv(vars[i].name);
        fprintf(out, "  %-26s %s\n    %s\n", vars[i].name, s && *s ? s : "unset", vars[i].help);
    }
}
