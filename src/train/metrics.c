/* metrics.c: JSON-lines metrics ("step", "epoch", "final" records; see DESIGN.md), one object per
 * line, flushed as written so a crash keeps everything up to the last line. */
#include <errno.h>
#include <string.h>

#include "train/internal.h"

dpt_status_t dpt_metrics_open(dpt_metrics_t *m, const char *path)
{
    m->f = NULL;
    if (!path)
        return DPT_OK;
    m->f = fopen(path, "w");
    if (!m->f)
        return dpt_error_set(DPT_ERR_IO, "--metrics: %s: %s", path, strerror(errno));
    return DPT_OK;
}

void dpt_metrics_step(dpt_metrics_t *m, int epoch, long step, double loss, double lr,
                      double img_s, double t_compute_s, double t_comm_exposed_s, double bytes_sent,
                      double t_comm_s, double loss_scale, long skipped)
{
    if (!m->f)
        return;
    fprintf(m->f, "{\"kind\":\"step\",\"epoch\":%d,\"step\":%ld,\"loss\":%.6g,\"lr\":%.6g,"
            "\"img_s\":%.1f,\"t_compute_s\":%.6f,\"t_comm_exposed_s\":%.6f,\"bytes_sent\":%.0f,"
            "\"t_comm_s\":%.6f,\"loss_scale\":%.9g,\"skipped\":%ld}\n", epoch, step, loss, lr,
            img_s, t_compute_s, t_comm_exposed_s, bytes_sent, t_comm_s, loss_scale, skipped);
    fflush(m->f);
}

void dpt_metrics_epoch(dpt_metrics_t *m, int epoch, double train_loss, double train_acc,
                       double test_loss, double test_acc, double img_s, double wall_s,
                       uint32_t param_crc)
{
    if (!m->f)
        return;
    fprintf(m->f, "{\"kind\":\"epoch\",\"epoch\":%d,\"train_loss\":%.6g,\"train_acc\":%.6f,"
            "\"test_loss\":%.6g,\"test_acc\":%.6f,\"img_s\":%.1f,\"wall_s\":%.3f,"
            "\"param_crc\":\"%08x\"}\n", epoch, train_loss, train_acc, test_loss, test_acc, img_s,
            wall_s, param_crc);
    fflush(m->f);
}

void dpt_metrics_final(dpt_metrics_t *m, double test_acc, double wall_s, double img_s, int ranks,
                       int threads, uint32_t param_crc)
{
    if (!m->f)
        return;
    fprintf(m->f, "{\"kind\":\"final\",\"test_acc\":%.6f,\"wall_s\":%.3f,\"img_s\":%.1f,"
            "\"ranks\":%d,\"threads\":%d,\"param_crc\":\"%08x\"}\n", test_acc, wall_s, img_s,
            ranks, threads, param_crc);
    fflush(m->f);
}

void dpt_metrics_close(dpt_metrics_t *m)
{
    if (m->f)
        fclose(m->f);
    m->f = NULL;
}
