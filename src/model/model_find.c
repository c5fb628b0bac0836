/* model_find.c: turns a --model argument into the path of a model file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dptrain/env.h"
#include "dptrain/config.h"
#include "dptrain/model.h"

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Try DIR/NAME then DIR/NAME.cfg; appends what was tried to `tried`. */
static int try_dir(const char *dir, const char *name, char *out, size_t cap, char *tried,
                   size_t tcap)
{
    if (!dir || !*dir)
        return 0;
    const char *suffix[2] = {"", ".cfg"};
    for (int i = 0; i < 2; i++) {
        if (i == 1 && ends_with(name, ".cfg"))
            break;
        int n = snprintf(out, cap, "%s/%s%s", dir, name, suffix[i]);
        if (n > 0 && (size_t)n < cap && is_file(out))
            return 1;
    }
    size_t used = strlen(tried);
    snprintf(tried + used, tcap - used, "%s%s", used ? ", " : "", dir);
    return 0;
}

dpt_status_t dpt_model_find(const char *name, char *out, size_t cap)
{
    if (!name || !*name)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--model: empty model name");
    if (is_file(name)) {
        if (strlen(name) >= cap)
            return dpt_error_set(DPT_ERR_INVALID_ARG, "--model: path too long: %s", name);
        strcpy(out, name);
        return DPT_OK;
    }
    /* A relative path like models/x.cfg from another directory: look up its last component. */
    const char *base = strrchr(name, '/');
    const char *key = (name[0] != '/' && base && strncmp(name, "models/", 7) == 0) ? base + 1
                                                                                  : name;
    char tried[1024] = "";
    if (!strchr(key, '/') || key != name) {
        const char *dirs[3] = {dpt_env_str(DPT_ENV_MODELS), DPT_SOURCE_MODELS_DIR,
                               DPT_INSTALL_MODELS_DIR};
        for (int i = 0; i < 3; i++)
            if (try_dir(dirs[i], key, out, cap, tried, sizeof tried))
                return DPT_OK;
    }
    if (!*tried)
        return dpt_error_set(DPT_ERR_IO, "--model: %s: no such file", name);
    return dpt_error_set(DPT_ERR_IO, "--model: %s: no such file (also looked in %s)", name,
                         tried);
}
