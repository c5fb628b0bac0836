/* run_state.c: what identifies a run across restarts. The flags text that checkpoints record
 * (the global batch in place of the per-rank one, so that a resume on another rank count with
 * the same global batch matches), its comparison at --resume (every differing flag named with
 * both values), and the --checkpoint-dir lock that keeps a second job out of a run's directory. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "dptrain/checkpoint.h"
#include "train/internal.h"

/* --global-batch G: per-rank batch = G / (ranks x accum), refused when it does not divide. */
dpt_status_t dpt__global_batch(dpt_train_config_t *c, int nranks)
{
    if (c->global_batch <= 0)
        return DPT_OK;
    long per = (long)nranks * (c->accum > 0 ? c->accum : 1);
    if (c->global_batch % per)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--global-batch %d does not divide over %d "
                             "rank%s x --accum %d", c->global_batch, nranks,
                             nranks == 1 ? "" : "s", c->accum > 0 ? c->accum : 1);
    c->batch = (int)(c->global_batch / per);
    return DPT_OK;
}

/* The run's flags as checkpoints record them: --batch and --global-batch become one
 * "--global-batch=" line with the effective global batch, so that a run resumed on another rank
 * count with the same global batch has the same text. */
void dpt__run_text(const dpt_train_config_t *cfg, int nranks, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (const char *p = cfg->run_flags ? cfg->run_flags : ""; *p;) {
        size_t len = strcspn(p, "\n");
        if (strncmp(p, "--batch=", 8) && strncmp(p, "--global-batch=", 15) && n + len + 2 < cap)
            n += (size_t)snprintf(out + n, cap - n, "%.*s\n", (int)len, p);
        p += len + (p[len] == '\n');
    }
    if (n < cap)
        snprintf(out + n, cap - n, "--global-batch=%ld\n",
                 (long)cfg->batch * nranks * (cfg->accum > 0 ? cfg->accum : 1));
}

/* Rank 0, --checkpoint-dir: hold an advisory lock (flock on DIR/.lock, which names the holder)
 * for the run, so that two jobs never prune each other's checkpoints; and refuse a fresh run in a
 * directory that holds checkpoints (an earlier run's: it would overwrite them and repoint
 * `latest`) unless --resume continues it or --force-new moves them aside. */
dpt_status_t dpt__claim_checkpoint_dir(const dpt_train_config_t *cfg, int *lock_fd)
{
    const char *dir = cfg->checkpoint_dir;
    DPT_CHECK(dpt__make_dirs(dir));
    char path[4096], holder[512] = "";
    snprintf(path, sizeof path, "%s/.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return dpt_error_set(DPT_ERR_IO, "--checkpoint-dir %s: %s: %s", dir, path,
                             strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        ssize_t got = pread(fd, holder, sizeof holder - 1, 0);
        holder[got > 0 ? got : 0] = '\0';
        holder[strcspn(holder, "\n")] = '\0';
        close(fd);
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--checkpoint-dir %s is in use by another "
                             "job (%s); two jobs in one directory would prune each other's "
                             "checkpoints", dir, *holder ? holder : "holder unknown");
    }
    *lock_fd = fd;
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    time_t now = time(NULL);
    char when[64];
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime(&now));
    int len = snprintf(holder, sizeof holder, "pid %d on %s since %s\n", (int)getpid(), host,
                       when);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, holder, (size_t)len, 0) != len) {
        /* the lock holds without the note; only the message for a second job loses its name */
    }
    if (cfg->resume)
        return DPT_OK;
    char newest[64] = "";
    int n = dpt_ckpt_list(dir, newest, sizeof newest);
    if (n <= 0)
        return DPT_OK;
    if (!cfg->force_new)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--checkpoint-dir %s holds %d checkpoint%s of "
                             "an earlier run (newest %s): continue it with --resume auto, or "
                             "start over with --force-new (they move to a subdirectory)", dir, n,
                             n == 1 ? "" : "s", newest);
    char aside[4096];
    DPT_CHECK(dpt_ckpt_move_aside(dir, aside, sizeof aside));
    printf("--force-new: the %d checkpoint%s of the earlier run moved to %s\n", n,
           n == 1 ? "" : "s", aside);
    fflush(stdout);
    return DPT_OK;
}

/* The value of flag `name` ("--x") in a text of "--name=value" lines (it ends at the '\n'), or
 * NULL. */
static const char *flag_value(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, "\n");
        if (len > n && !strncmp(p, name, n) && p[n] == '=')
            return p + n + 1;
        p += len + (p[len] == '\n');
    }
    return NULL;
}

/* Is `name` in the comma-separated `list` (names without "--")? */
static int list_has(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list ? list : ""; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && !strncmp(p, name, n))
            return 1;
        p += len + (p[len] == ',');
    }
    return 0;
}

/* Append "s" to buf (of cap bytes, holding *n), ", "-separated, truncating. */
static void append_item(char *buf, size_t cap, size_t *n, const char *sep, const char *item)
{
    int w = snprintf(buf + *n, cap - *n, "%s%s", *n ? sep : "", item);
    *n = w < 0 ? *n : *n + (size_t)w < cap ? *n + (size_t)w : cap - 1;
}

/* Rank 0, --resume: the checkpoint's run flags against this run's. Every flag that differs is
 * named with both values, and the resume refused, unless --resume-ignore lists it. */
dpt_status_t dpt__compare_run_flags(const char *path, const char *theirs, const char *ours,
                                      const char *ignore)
{
    char refused[2048] = "", ignored[2048] = "", names[512] = "";
    size_t nr = 0, ni = 0, nn = 0;
    for (int pass = 0; pass < 2; pass++)   /* the flags of this run, then those only it had */
        for (const char *p = pass ? theirs : ours; *p;) {
            size_t len = strcspn(p, "\n");
            const char *eq = memchr(p, '=', len);
            char name[128];
            snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - p) : 0, p);
            p += len + (p[len] == '\n');
            if (!eq || strncmp(name, "--", 2))
                continue;
            const char *a = flag_value(ours, name), *b = flag_value(theirs, name);
            if (pass && a)
                continue;
            char mine[1024], other[1024], item[2300];
            snprintf(mine, sizeof mine, "%.*s", a ? (int)strcspn(a, "\n") : 7, a ? a : "(unset)");
            snprintf(other, sizeof other, "%.*s", b ? (int)strcspn(b, "\n") : 7,
                     b ? b : "(unset)");
            if (!strcmp(mine, other))
                continue;
            snprintf(item, sizeof item, "%s %s (this run: %s)", name, other, mine);
            if (list_has(ignore, name + 2)) {
                append_item(ignored, sizeof ignored, &ni, ", ", item);
            } else {
                append_item(refused, sizeof refused, &nr, ", ", item);
                append_item(names, sizeof names, &nn, ",", name + 2);
            }
        }
    if (*ignored) {
        printf("resuming with flags changed on purpose (--resume-ignore): %s\n", ignored);
        fflush(stdout);
    }
    if (!*refused)
        return DPT_OK;
    return dpt_error_set(DPT_ERR_INVALID_ARG, "--resume: %s was written by a run with other "
                         "flags: %s; resume with the same flags, or pass --resume-ignore %s to "
                         "change them on purpose%s", path, refused, names,
                         strstr(names, "global-batch") ? " (on another rank count keep the "
                         "global batch: --global-batch G, or --batch G / ranks)" : "");
}

