/* file.c: dpt__write_atomic, the one way dptrain replaces a file (weights, shards, manifests):
 * a reader sees either the old file or the complete new one, also after a crash; and
 * dpt__make_dirs (mkdir -p). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/internal.h"

dpt_status_t dpt__make_dirs(const char *dir)
{
    char p[4096];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "%s: path too long", dir);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char saved = *s;
        *s = '\0';
        struct stat sb;
        if (stat(p, &sb) != 0) {
            if (mkdir(p, 0755) != 0 && errno != EEXIST)
                return dpt_error_set(DPT_ERR_IO, "%s: cannot create %s: %s", dir, p,
                                     strerror(errno));
        } else if (!S_ISDIR(sb.st_mode)) {
            return dpt_error_set(DPT_ERR_IO, "%s: %s exists and is not a directory", dir, p);
        }
        *s = saved;
        if (!saved)
            return DPT_OK;
    }
}

static dpt_status_t write_all(int fd, const void *p, size_t n, const char *path)
{
    const char *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return dpt_error_set(DPT_ERR_IO, "%s: write failed: %s", path,
                                 w < 0 ? strerror(errno) : "no progress");
        b += w;
        n -= (size_t)w;
    }
    return DPT_OK;
}

dpt_status_t dpt__write_atomic(const char *path, int n_parts, const void *const *parts,
                               const size_t *lens)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return dpt_error_set(DPT_ERR_IO, "%s: %s", tmp, strerror(errno));
    dpt_status_t st = DPT_OK;
    for (int i = 0; i < n_parts && st == DPT_OK; i++)
        st = write_all(fd, parts[i], lens[i], tmp);
    if (st == DPT_OK && fsync(fd) != 0)
        st = dpt_error_set(DPT_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (close(fd) != 0 && st == DPT_OK)
        st = dpt_error_set(DPT_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (st == DPT_OK && rename(tmp, path) != 0)
        st = dpt_error_set(DPT_ERR_IO, "%s: rename from %s failed: %s", path, tmp,
                           strerror(errno));
    if (st != DPT_OK) {
        unlink(tmp);
        return st;
    }
    /* Make the rename itself durable. */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return DPT_OK;
}
