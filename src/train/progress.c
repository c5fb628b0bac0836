/* progress.c: what a person watching sees: on a terminal one redrawn bar per step (epoch, bar,
 * loss, accuracy, img/s, ETA) on stderr; otherwise a plain line every log_every steps on stdout. */
#include <unistd.h>

#include "train/internal.h"

void dpt_progress_init(dpt_progress_t *p, int mode, int log_every, long total_steps)
{
    p->bar = mode < 0 ? (isatty(STDERR_FILENO) ? 1 : 0) : mode;
    if (mode == 0 && log_every <= 0)
        p->bar = -1;
    p->log_every = log_every > 0 ? log_every : 50;
    p->total_steps = total_steps;
    p->t_start = p->t_last = dpt__now();
    p->drawn = 0;
}

static void fmt_time(double s, char *buf, size_t n)
{
    long t = s > 0 && s < 1e7 ? (long)(s + 0.5) : 0;
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

void dpt_progress_update(dpt_progress_t *p, int epoch, int epochs, int step, int steps,
                         long global_step, double loss, double acc, double img_s)
{
    if (p->bar < 0)
        return;
    double now = dpt__now();
    double eta = (now - p->t_start) / (double)global_step * (double)(p->total_steps - global_step);
    char eta_s[32];
    fmt_time(eta, eta_s, sizeof eta_s);
    if (p->bar == 1) {
        if (step != steps && now - p->t_last < 0.1)
            return;   /* redraw at most 10 times a second */
        p->t_last = now;
        enum { WIDTH = 24 };
        char bar[WIDTH + 1];
        int fill = (int)((long)WIDTH * step / steps);
        for (int i = 0; i < WIDTH; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[WIDTH] = '\0';
        fprintf(stderr, "\repoch %d/%d [%s] %d/%d  loss %.4f  acc %.4f  %.0f img/s  ETA %s \033[K",
                epoch + 1, epochs, bar, step, steps, loss, acc, img_s, eta_s);
        fflush(stderr);
        p->drawn = 1;
    } else if (step % p->log_every == 0 || step == steps) {
        printf("epoch %d/%d step %d/%d  loss %.4f  acc %.4f  %.0f img/s  ETA %s\n", epoch + 1,
               epochs, step, steps, loss, acc, img_s, eta_s);
        fflush(stdout);
    }
}

void dpt_progress_clear(dpt_progress_t *p)
{
    if (p->bar == 1 && p->drawn) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
        p->drawn = 0;
    }
}
