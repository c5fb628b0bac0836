/* metrics.c: JSON-lines metrics, one object per line, flushed as written so a crash keeps
 * everything up to the last line. Records (docs/formats.md): "config" first (every flag, version,
 * git commit, CPU, ranks), then "step" every --log-every steps, "eval" after each evaluation of
 * runs with --eval-every or --stop-at-acc, "epoch" after each epoch, "final" at the end; a
 * resumed run appends a "resume" record and its own "config" to the file of the run it
 * continues, after dropping what that run wrote past the checkpoint (so a step or an epoch has
 * one record however often the job was interrupted). A failed write is reported once
 * and fails the run at the end (after the weights are saved): metrics are never lost silently. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/internal.h"
#include "dptrain/version.h"
#include "train/internal.h"

/* Keep a line of the interrupted run? (resume after step `step`, epoch `epoch` 1-based pending) */
static int keep_line(const char *line, long step, int epoch)
{
    const char *p;
    if (strstr(line, "\"kind\":\"step\"") || strstr(line, "\"kind\":\"eval\""))
        return (p = strstr(line, "\"step\":")) && strtol(p + 7, NULL, 10) <= step;
    if (strstr(line, "\"kind\":\"epoch\""))
        return (p = strstr(line, "\"epoch\":")) && strtol(p + 8, NULL, 10) < epoch;
    return !strstr(line, "\"kind\":\"final\"") && line[0] == '{';   /* config, resume records */
}

/* Rewrite `path` without the records past the checkpoint (atomically: a crash keeps the old). */
static dpt_status_t truncate_to(const char *path, long step, int epoch)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return DPT_OK;   /* a pipe or a device (/dev/stdout): nothing to rewrite, append */
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? DPT_OK
                               : dpt_error_set(DPT_ERR_IO, "--metrics: %s: %s", path,
                                               strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap), *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    dpt_status_t st = out ? DPT_OK : dpt_error_set(DPT_ERR_NOMEM, "--metrics: out of memory");
    while (st == DPT_OK && (len = getline(&line, &lcap, f)) > 0) {
        if (!keep_line(line, step, epoch) || line[len - 1] != '\n')   /* a torn last line too */
            continue;
        if (n + (size_t)len > cap) {
            while (n + (size_t)len > cap)
                cap *= 2;
            char *grown = realloc(out, cap);
            if (!grown) {
                st = dpt_error_set(DPT_ERR_NOMEM, "--metrics: out of memory");
                break;
            }
            out = grown;
        }
        memcpy(out + n, line, (size_t)len);
        n += (size_t)len;
    }
    free(line);
    fclose(f);
    if (st == DPT_OK) {
        const void *parts[1] = {out};
        size_t lens[1] = {n};
        st = dpt__write_atomic(path, 1, parts, lens);
        if (st != DPT_OK)
            st = dpt_error_prefix(st, "--metrics: ");
    }
    free(out);
    return st;
}

static void checked_flush(dpt_metrics_t *m)
{
    if (fflush(m->f) == 0 && !ferror(m->f))
        return;
    if (!m->failed && m->training)   /* at start-up the run stops instead (dpt_metrics_status) */
        fprintf(stderr, "dptrain: error: --metrics %s: write failed: %s (training goes on; the "
                "run exits 1 at the end)\n", m->path, strerror(errno ? errno : EIO));
    m->failed = errno ? errno : EIO;
    clearerr(m->f);
}

dpt_status_t dpt_metrics_check(const char *path)
{
    FILE *f = path ? fopen(path, "a") : NULL;   /* creates it; keeps what is there */
    if (path && !f)
        return dpt_error_set(DPT_ERR_IO, "--metrics: %s: %s", path, strerror(errno));
    if (f)
        fclose(f);
    return DPT_OK;
}

dpt_status_t dpt_metrics_open(dpt_metrics_t *m, const char *path, long resume_step,
                              int resume_epoch)
{
    memset(m, 0, sizeof *m);
    if (!path)
        return DPT_OK;
    m->path = path;
    if (resume_step >= 0)
        DPT_CHECK(truncate_to(path, resume_step, resume_epoch));
    m->f = fopen(path, resume_step >= 0 ? "a" : "w");
    if (!m->f)
        return dpt_error_set(DPT_ERR_IO, "--metrics: %s: %s", path, strerror(errno));
    return DPT_OK;
}

dpt_status_t dpt_metrics_status(const dpt_metrics_t *m)
{
    if (!m->failed)
        return DPT_OK;
    return dpt_error_set(DPT_ERR_IO, "--metrics %s: write failed: %s", m->path,
                         strerror(m->failed));
}

void dpt_metrics_step(dpt_metrics_t *m, const dpt_metrics_step_rec_t *r)
{
    if (!m->f)
        return;
    fprintf(m->f, "{\"kind\":\"step\",\"epoch\":%d,\"step\":%ld,\"loss\":%.6g,\"lr\":%.6g,"
            "\"img_s\":%.1f,\"t_compute_s\":%.6f,\"t_comm_exposed_s\":%.6f,\"bytes_sent\":%.0f,"
            "\"compress_ratio\":%.4g,\"t_comm_s\":%.6f,\"t_code_s\":%.6f,\"loss_scale\":%.9g,"
            "\"skipped\":%ld}\n", r->epoch, r->step, r->loss, r->lr, r->img_s, r->t_compute_s,
            r->t_comm_exposed_s, r->bytes_sent, r->compress_ratio, r->t_comm_s, r->t_code_s,
            r->loss_scale, r->skipped);
    checked_flush(m);
}

void dpt_metrics_epoch(dpt_metrics_t *m, int epoch, long step, double train_loss,
                       double train_acc, double test_loss, double test_acc, double img_s,
                       double wall_s, uint32_t param_crc)
{
    if (!m->f)
        return;
    fprintf(m->f, "{\"kind\":\"epoch\",\"epoch\":%d,\"step\":%ld,\"train_loss\":%.6g,"
            "\"train_acc\":%.6f,\"test_loss\":%.6g,\"test_acc\":%.6f,\"img_s\":%.1f,"
            "\"wall_s\":%.3f,\"param_crc\":\"%08x\"}\n", epoch, step, train_loss, train_acc,
            test_loss, test_acc, img_s, wall_s, param_crc);
    checked_flush(m);
}

void dpt_metrics_eval(dpt_metrics_t *m, int epoch, long step, double test_loss, double test_acc,
                      double wall_s, double eval_s)
{
    if (!m->f)
        return;
    fprintf(m->f, "{\"kind\":\"eval\",\"epoch\":%d,\"step\":%ld,\"test_loss\":%.6g,"
            "\"test_acc\":%.6f,\"wall_s\":%.3f,\"eval_s\":%.3f}\n", epoch, step, test_loss,
            test_acc, wall_s, eval_s);
    checked_flush(m);
}

void dpt_metrics_final(dpt_metrics_t *m, double test_acc, double wall_s, double img_s, int ranks,
                       int threads, uint32_t param_crc)
{
    if (!m->f)
        return;
    fprintf(m->f, "{\"kind\":\"final\",\"test_acc\":%.6f,\"wall_s\":%.3f,\"img_s\":%.1f,"
            "\"ranks\":%d,\"threads\":%d,\"param_crc\":\"%08x\"}\n", test_acc, wall_s, img_s,
            ranks, threads, param_crc);
    checked_flush(m);
}

void dpt_metrics_close(dpt_metrics_t *m)
{
    if (m->f && fclose(m->f) != 0 && !m->failed)
        m->failed = errno ? errno : EIO;
    m->f = NULL;
}

/* s as the inside of a JSON string */
static size_t json_escape(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            n += (size_t)snprintf(out + n, cap - n, "\\%c", c);
        else if (c < 0x20)
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        else
            out[n++] = (char)c;
    }
    out[n] = '\0';
    return n;
}

/* The CPU's model name (/proc/cpuinfo), "unknown" elsewhere. */
static void cpu_model(char *out, size_t cap)
{
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
            char *v = strchr(line, ':') + 1;
            v += strspn(v, " \t");
            v[strcspn(v, "\n")] = '\0';
            snprintf(out, cap, "%s", v);
            break;
        }
    if (f)
        fclose(f);
}

void dpt_metrics_config(dpt_metrics_t *m, const char *flags, int ranks, int threads,
                        long resumed_from, const char *resumed_path)
{
    if (!m->f)
        return;
    char cpu[256], host[256] = "", esc[1024], ecpu[1024], ehost[1024];
    cpu_model(cpu, sizeof cpu);
    gethostname(host, sizeof host - 1);
    json_escape(cpu, ecpu, sizeof ecpu);
    json_escape(host, ehost, sizeof ehost);
    if (resumed_from >= 0) {
        json_escape(resumed_path ? resumed_path : "", esc, sizeof esc);
        fprintf(m->f, "{\"kind\":\"resume\",\"step\":%ld,\"checkpoint\":\"%s\"}\n", resumed_from,
                esc);
    }
    fprintf(m->f, "{\"kind\":\"config\",\"version\":\"%s\",\"git\":\"%s\",\"host\":\"%s\","
            "\"cpu\":\"%s\",\"ranks\":%d,\"threads\":%d,\"resumed_from\":%ld,\"flags\":{",
            DPT_VERSION, DPT_GIT_HASH, ehost, ecpu, ranks, threads, resumed_from);
    /* "--name=value" lines -> "name":"value" */
    int first = 1;
    for (const char *p = flags ? flags : ""; *p;) {
        size_t len = strcspn(p, "\n");
        const char *eq = memchr(p, '=', len);
        if (!strncmp(p, "--", 2) && eq) {
            char name[128], val[4096];
            snprintf(name, sizeof name, "%.*s", (int)(eq - p - 2), p + 2);
            snprintf(val, sizeof val, "%.*s", (int)(p + len - eq - 1), eq + 1);
            char ev[8192];
            json_escape(val, ev, sizeof ev);
            fprintf(m->f, "%s\"%s\":\"%s\"", first ? "" : ",", name, ev);
            first = 0;
        }
        p += len + (p[len] == '\n');
    }
    fprintf(m->f, "}}\n");
    checked_flush(m);
    m->training = 1;
}
