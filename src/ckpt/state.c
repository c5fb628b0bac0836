/* state.c: training checkpoints (everything a bit-exact resume needs) and the checkpoint
 * directory: ckpt-<step>.dpt files, a `latest` pointer, the last K kept, and the newest valid
 * one found again after a crash (corrupt or partial files skipped with a warning).
 *
 * File: a 128-byte header (magic "DPTCKPT1", version, the state, sizes, CRCs of the zstd payload
 * and of the raw bytes, CRC of the header itself), then (version 2) the run's flags as text
 * ("--name=value" lines, flags_nbytes bytes, their own CRC), then one zstd frame holding params,
 * every rank's BN buffers (rank 0's first: with local BN statistics they differ until averaged)
 * and the optimizer state (float32: momentum, or (version 4) AdamW's m and v, then AdamW's
 * update count as 8 bytes), then (version 3) every rank's gradient-codec state, whose per-rank
 * count takes the header field that versions 1 and 2 used for the momentum count (always the
 * parameter count). The optimizer state's size follows from the file's own run flags
 * (--optimizer=adamw: 2 floats per parameter, else 1): the 128-byte header has no room left.
 * Versions 1 to 3 (momentum only, no count) are still read. Written to PATH.tmp, fsync'd, renamed,
 * directory fsync'd (dpt__write_atomic): a crash at any point leaves either the old file set or the new one, and a
 * torn .tmp is never a ckpt-*.dpt. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "ckpt/internal.h"
#include "core/internal.h"
#include "dptrain/alloc.h"
#include "dptrain/checkpoint.h"
#include "dptrain/log.h"

#define HDR_BYTES 128
static const char MAGIC[8] = {'D', 'P', 'T', 'C', 'K', 'P', 'T', '1'};
enum { VERSION = 4, MAX_RANKS = 1 << 16, T_FLOATS = 2 /* the uint64 count */ };

typedef struct header {
    char magic[8];
    uint32_t version, ranks;
    uint64_t step, seed;
    int32_t epoch, epoch_step;
    uint32_t config_hash, flags_nbytes;   /* flags_nbytes: 0 in version 1 (reserved) */
    uint64_t n_params, n_buffers;
    uint64_t n_codec;   /* version 3: codec floats per rank; versions 1-2: momentum = n_params */
    uint64_t payload_nbytes;
    double counters[4];
    uint32_t payload_crc, raw_crc;
    uint32_t flags_crc;   /* 0 in version 1 (padding) */
    uint32_t header_crc;
} header_t;
_Static_assert(sizeof(header_t) == HDR_BYTES, "checkpoint header must be 128 bytes");

/* Optimizer floats per parameter of a file with these run flags ("--name=value" lines). */
static int flags_optim_k(const char *flags)
{
    static const char key[] = "--optimizer=adamw\n";
    for (const char *p = flags; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, key, sizeof key - 1))
            return 2;
    return 1;
}


dpt_status_t dpt_ckpt_write(const char *path, const dpt_ckpt_state_t *s, const float *params,
                            size_t np, const float *buffers, size_t nb, const float *mom)
{
    const size_t nball = nb * (size_t)(s->ranks > 0 ? s->ranks : 1);
    const size_t ncall =
        s->codec ? (size_t)s->codec_n * (size_t)(s->ranks > 0 ? s->ranks : 1) : 0;
    const size_t k = s->optim_k == 2 ? 2 : 1, nopt = k * np + T_FLOATS;
    if ((int)k != flags_optim_k(s->flags))   /* a reader could not size the state */
        return dpt_error_set(DPT_ERR_INTERNAL, "%s: optimizer state of %zu floats per parameter "
                             "but run flags for %d", path, k, flags_optim_k(s->flags));
    size_t raw_n = (np + nball + nopt + ncall) * sizeof(float);
    float *raw = dpt_malloc(raw_n ? raw_n : 1);
    size_t cap = ZSTD_compressBound(raw_n);
    void *z = dpt_malloc(cap);
    dpt_status_t st = DPT_OK;
    if (!raw || !z) {
        st = dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    memcpy(raw, params, np * sizeof(float));
    memcpy(raw + np, buffers, nball * sizeof(float));
    memcpy(raw + np + nball, mom, k * np * sizeof(float));
    memcpy(raw + np + nball + k * np, &s->optim_t, sizeof s->optim_t);
    if (ncall)
        memcpy(raw + np + nball + nopt, s->codec, ncall * sizeof(float));
    size_t zn = ZSTD_compress(z, cap, raw, raw_n, 1);
    if (ZSTD_isError(zn)) {
        st = dpt_error_set(DPT_ERR_INTERNAL, "%s: zstd: %s", path, ZSTD_getErrorName(zn));
        goto done;
    }
    const size_t flags_n = strnlen(s->flags, sizeof s->flags - 1);
    header_t h = {.version = VERSION, .ranks = (uint32_t)s->ranks, .step = s->step,
                  .seed = s->seed, .epoch = s->epoch, .epoch_step = s->epoch_step,
                  .config_hash = s->config_hash, .flags_nbytes = (uint32_t)flags_n,
                  .n_params = np, .n_buffers = nb, .n_codec = ncall ? s->codec_n : 0,
                  .payload_nbytes = zn};
    memcpy(h.magic, MAGIC, sizeof MAGIC);
    memcpy(h.counters, s->counters, sizeof h.counters);
    h.payload_crc = dpt__crc32(0, z, zn);
    h.raw_crc = dpt__crc32(0, raw, raw_n);
    h.flags_crc = dpt__crc32(0, s->flags, flags_n);
    h.header_crc = dpt__crc32(0, &h, offsetof(header_t, header_crc));
    const void *parts[3] = {&h, s->flags, z};
    size_t lens[3] = {sizeof h, flags_n, zn};
    st = dpt__write_atomic(path, 3, parts, lens);
done:
    dpt_free(raw);
    dpt_free(z);
    return st;
}

dpt_status_t dpt_ckpt_read(const char *path, int ranks, dpt_ckpt_state_t *s, float *params,
                           size_t np, float *buffers, size_t nb, float *mom)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return dpt_error_set(DPT_ERR_IO, "%s: %s", path, strerror(errno));
    header_t h;
    float *raw = NULL;
    dpt_status_t st = DPT_OK;
    if (fread(&h, 1, sizeof h, f) != sizeof h) {
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: truncated header (not a dptrain checkpoint?)",
                           path);
        goto done;
    }
    if (memcmp(h.magic, MAGIC, sizeof MAGIC)) {
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: bad magic (%s)", path,
                           !memcmp(h.magic, "DPTWGHT1", 8)
                               ? "a weights file from train --save, not a checkpoint: --resume "
                                 "takes the ckpt-<step>.dpt files of --checkpoint-dir"
                               : "not a dptrain checkpoint");
        goto done;
    }
    if (dpt__crc32(0, &h, offsetof(header_t, header_crc)) != h.header_crc) {
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: header checksum mismatch (corrupt file)", path);
        goto done;
    }
    if (h.version < 1 || h.version > VERSION) {
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: version %u, this build reads versions 1 to %d",
                           path, h.version, VERSION);
        goto done;
    }
    const uint64_t n_codec = h.version >= 3 ? h.n_codec : 0;
    if (h.n_params != np || h.n_buffers != nb || (h.version < 3 && h.n_codec != np)) {
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: holds %llu parameters + %llu buffers, the model "
                           "has %zu + %zu (different model?)", path,
                           (unsigned long long)h.n_params, (unsigned long long)h.n_buffers, np,
                           nb);
        goto done;
    }
    if (h.ranks < 1 || h.ranks > MAX_RANKS || h.flags_nbytes >= sizeof s->flags) {
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: bad header (%u ranks, %u bytes of flags)", path,
                           h.ranks, h.flags_nbytes);
        goto done;
    }
    char flags[sizeof s->flags];
    if (fread(flags, 1, h.flags_nbytes, f) != h.flags_nbytes) {
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: truncated flags", path);
        goto done;
    }
    flags[h.flags_nbytes] = '\0';
    if (dpt__crc32(0, flags, h.flags_nbytes) != h.flags_crc) {
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: flags checksum mismatch (corrupt file)", path);
        goto done;
    }
    if (s->codec && n_codec && n_codec != s->codec_n) {
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: holds %llu floats of gradient-codec state per "
                           "rank, this run's codec has %llu (another --compress?)", path,
                           (unsigned long long)n_codec, (unsigned long long)s->codec_n);
        goto done;
    }
    if (n_codec > ((uint64_t)1 << 40) / h.ranks) {
        st = dpt_error_set(DPT_ERR_FORMAT, "%s: bad header (codec state)", path);
        goto done;
    }
    /* Another optimizer's state is not read (mom may be too small) but the file is valid: the
     * caller refuses it by its flags, rather than skipping it as corrupt and starting over. */
    const int fk = h.version >= 4 ? flags_optim_k(flags) : 1;
    const int take_mom = s->optim_k < 0 || fk == (s->optim_k ? s->optim_k : 1);
    const size_t nball = nb * (size_t)h.ranks, ncall = (size_t)n_codec * h.ranks;
    const size_t nopt = (size_t)fk * np + (h.version >= 4 ? T_FLOATS : 0);
    size_t raw_n = (np + nball + nopt + ncall) * sizeof(float);
    raw = dpt_malloc(raw_n ? raw_n : 1);
    if (!raw) {
        st = dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    st = dpt__ckpt_read_payload(f, path, h.payload_nbytes, h.payload_crc, raw, raw_n, h.raw_crc);
    if (st != DPT_OK)
        goto done;
    if ((int)h.ranks == ranks) {
        memcpy(buffers, raw + np, nball * sizeof(float));
    } else {
        /* Another rank count: every rank continues from the average of the writers' buffers
         * (the BN running statistics an evaluation or a save would have used). */
        for (size_t k = 0; k < nb; k++) {
            double sum = 0;
            for (uint32_t r = 0; r < h.ranks; r++)
                sum += raw[np + (size_t)r * nb + k];
            for (int r = 0; r < ranks; r++)
                buffers[(size_t)r * nb + k] = (float)(sum / h.ranks);
        }
    }
    memcpy(params, raw, np * sizeof(float));
    if (take_mom)
        memcpy(mom, raw + np + nball, (size_t)fk * np * sizeof(float));
    uint64_t optim_t = 0;
    if (h.version >= 4)
        memcpy(&optim_t, raw + np + nball + (size_t)fk * np, sizeof optim_t);
    if (s->codec && s->codec_n) {
        const float *cs = raw + np + nball + nopt;
        const size_t cn = (size_t)s->codec_n;
        if (!n_codec)   /* a file without codec state: nothing was held back */
            memset(s->codec, 0, cn * (size_t)ranks * sizeof(float));
        else if ((int)h.ranks == ranks)
            memcpy(s->codec, cs, ncall * sizeof(float));
        else   /* another rank count: what was held back, shared alike (see the header) */
            for (size_t k = 0; k < cn; k++) {
                double sum = 0;
                for (uint32_t r = 0; r < h.ranks; r++)
                    sum += cs[(size_t)r * cn + k];
                for (int r = 0; r < ranks; r++)
                    s->codec[(size_t)r * cn + k] = (float)(sum / h.ranks);
            }
    }
    float *codec = s->codec;
    uint64_t codec_n = s->codec_n;
    *s = (dpt_ckpt_state_t){.step = h.step, .epoch = h.epoch, .epoch_step = h.epoch_step,
                            .ranks = (int)h.ranks, .seed = h.seed, .config_hash = h.config_hash,
                            .codec = codec, .codec_n = codec_n, .optim_k = fk,
                            .optim_t = optim_t};
    memcpy(s->counters, h.counters, sizeof s->counters);
    memcpy(s->flags, flags, h.flags_nbytes + 1);
done:
    fclose(f);
    dpt_free(raw);
    return st;
}

/* Steps of the ckpt-<step>.dpt files in dir, newest first (malloc'd into *out). */
static int list_steps(const char *dir, uint64_t **out)
{
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        unsigned long long step;
        char tail[8];
        if (sscanf(e->d_name, "ckpt-%llu.dp%7s", &step, tail) != 2 || strcmp(tail, "t"))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            uint64_t *p = realloc(*out, (size_t)cap * sizeof **out);
            if (!p)
                break;
            *out = p;
        }
        (*out)[n++] = step;
    }
    closedir(d);
    for (int i = 1; i < n; i++)   /* insertion sort, descending */
        for (int j = i; j > 0 && (*out)[j] > (*out)[j - 1]; j--) {
            uint64_t t = (*out)[j];
            (*out)[j] = (*out)[j - 1];
            (*out)[j - 1] = t;
        }
    return n;
}

dpt_status_t dpt_ckpt_save(const char *dir, int keep, const dpt_ckpt_state_t *s,
                           const float *params, size_t np, const float *buffers, size_t nb,
                           const float *mom, char *path_out, size_t cap)
{
    DPT_CHECK(dpt__make_dirs(dir));
    char path[4096], latest[4096], name[64];
    snprintf(name, sizeof name, "ckpt-%llu.dpt", (unsigned long long)s->step);
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path
        || snprintf(latest, sizeof latest, "%s/latest", dir) >= (int)sizeof latest)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--checkpoint-dir: path too long");
    DPT_CHECK(dpt_ckpt_write(path, s, params, np, buffers, nb, mom));
    char line[80];
    int len = snprintf(line, sizeof line, "%s\n", name);
    const void *parts[1] = {line};
    size_t lens[1] = {(size_t)len};
    DPT_CHECK(dpt__write_atomic(latest, 1, parts, lens));
    if (path_out)
        snprintf(path_out, cap, "%s", path);
    uint64_t *steps;
    int n = list_steps(dir, &steps);
    for (int i = keep > 0 ? keep : 1; i < n; i++) {
        char old[4096];
        snprintf(old, sizeof old, "%s/ckpt-%llu.dpt", dir, (unsigned long long)steps[i]);
        if (steps[i] != s->step)
            unlink(old);
    }
    free(steps);
    return DPT_OK;
}

dpt_status_t dpt_ckpt_load_newest(const char *dir, int ranks, dpt_ckpt_state_t *s, float *params,
                                  size_t np, float *buffers, size_t nb, float *mom,
                                  char *path_out, size_t cap, int *found)
{
    *found = 0;
    uint64_t *steps;
    int n = list_steps(dir, &steps);
    dpt_status_t st = DPT_OK;
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/ckpt-%llu.dpt", dir, (unsigned long long)steps[i]);
        st = dpt_ckpt_read(path, ranks, s, params, np, buffers, nb, mom);
        if (st == DPT_OK) {
            *found = 1;
            if (path_out)
                snprintf(path_out, cap, "%s", path);
            break;
        }
        if (st == DPT_ERR_NOMEM)
            break;
        DPT_WARN("resume: skipping %s: %s", path, dpt_error_get());
        st = DPT_OK;
    }
    free(steps);
    return st;
}

int dpt_ckpt_list(const char *dir, char *newest, size_t cap)
{
    uint64_t *steps;
    int n = list_steps(dir, &steps);
    if (n > 0 && newest)
        snprintf(newest, cap, "ckpt-%llu.dpt", (unsigned long long)steps[0]);
    free(steps);
    return n;
}

dpt_status_t dpt_ckpt_move_aside(const char *dir, char *aside, size_t cap)
{
    time_t now = time(NULL);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime(&now));
    if (snprintf(aside, cap, "%s/replaced-%s", dir, stamp) >= (int)cap)
        return dpt_error_set(DPT_ERR_INVALID_ARG, "--checkpoint-dir: path too long");
    for (int k = 2; mkdir(aside, 0755) != 0; k++) {   /* a second --force-new in one second */
        if (errno != EEXIST || k > 99)
            return dpt_error_set(DPT_ERR_IO, "--force-new: %s: %s", aside, strerror(errno));
        snprintf(aside, cap, "%s/replaced-%s-%d", dir, stamp, k);
    }
    uint64_t *steps;
    int n = list_steps(dir, &steps);
    dpt_status_t st = DPT_OK;
    static const char *const extra[] = {"latest", "best", "best.dpt"};   /* may be missing */
    const int n_extra = (int)(sizeof extra / sizeof extra[0]);
    for (int i = -n_extra; i < n && st == DPT_OK; i++) {
        char name[64], from[4096], to[4096];
        if (i < 0)
            snprintf(name, sizeof name, "%s", extra[n_extra + i]);
        else
            snprintf(name, sizeof name, "ckpt-%llu.dpt", (unsigned long long)steps[i]);
        snprintf(from, sizeof from, "%s/%s", dir, name);
        snprintf(to, sizeof to, "%s/%s", aside, name);
        if (rename(from, to) != 0 && !(i < 0 && errno == ENOENT))
            st = dpt_error_set(DPT_ERR_IO, "--force-new: moving %s to %s: %s", from, aside,
                               strerror(errno));
    }
    free(steps);
    return st;
}

dpt_status_t dpt_ckpt_load_weights(const char *path, float *params, size_t np, float *buffers,
                                   size_t nb)
{
    float *mom = dpt_malloc((np ? 2 * np : 1) * sizeof(float));   /* AdamW's m and v at most */
    dpt_ckpt_state_t *cs = dpt_calloc(sizeof *cs);   /* 8 KiB of flags: not on the stack */
    if (cs)
        cs->optim_k = -1;   /* any optimizer */
    dpt_status_t st = mom && cs ? dpt_ckpt_read(path, 1, cs, params, np, buffers, nb, mom)
                                : dpt_error_set(DPT_ERR_NOMEM, "%s: out of memory", path);
    dpt_free(mom);
    dpt_free(cs);
    return st;
}
