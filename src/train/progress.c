/* progress.c: what a person watching sees: on a terminal one bar redrawn in place (epoch, bar,
 * loss, accuracy, img/s, ETA), cut to the terminal's width as it is at each redraw (so a resize
 * takes effect at the next one); otherwise a plain line every log_every steps on stdout. The bar
 * goes to stderr when that is a terminal; with --progress it goes to /dev/tty when it can be
 * opened: under mpirun a rank's stderr is a pipe, but it still has the terminal mpirun runs on
 * (launch/dptrain-run passes --progress when its own output is a terminal). */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "train/internal.h"

void dpt_progress_init(dpt_progress_t *p, int mode, int log_every, long total_steps)
{
    p->bar = mode < 0 ? (isatty(STDERR_FILENO) ? 1 : 0) : mode;
    if (mode == 0 && log_every <= 0)
        p->bar = -1;
    p->out = stderr;
    if (p->bar == 1 && !isatty(STDERR_FILENO)) {   /* --progress, stderr a pipe (mpirun) */
        int fd = open("/dev/tty", O_WRONLY | O_NOCTTY | O_CLOEXEC);
        FILE *tty = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (tty)
            p->out = tty;
        else if (fd >= 0)
            close(fd);
    }
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
        /* the line without its bar, then a bar as wide as the terminal leaves room for */
        char head[32], tail[160], line[256];
        snprintf(head, sizeof head, "epoch %d/%d ", epoch + 1, epochs);
        snprintf(tail, sizeof tail, " %d/%d  loss %.4f  acc %.4f  %.0f img/s  ETA %s", step,
                 steps, loss, acc, img_s, eta_s);
        struct winsize ws;
        int cols = ioctl(fileno(p->out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
        int room = cols - 1 - (int)strlen(head) - (int)strlen(tail) - 2;   /* 1: no wrap */
        int width = room > 24 ? 24 : room < 0 ? 0 : room;
        char bar[26] = "";
        if (width >= 4) {
            int fill = (int)((long)width * step / steps);
            bar[0] = '[';
            for (int i = 0; i < width; i++)
                bar[1 + i] = i < fill ? '#' : '.';
            bar[width + 1] = ']';
            bar[width + 2] = '\0';
        }
        int n = snprintf(line, sizeof line, "%s%s%s", head, bar, tail);
        if (n > cols - 1 && cols > 1)
            line[cols - 1] = '\0';   /* a very narrow terminal: cut, never wrap */
        fprintf(p->out, "\r%s\033[K", line);
        fflush(p->out);
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
        fprintf(p->out, "\r\033[K");
        fflush(p->out);
        p->drawn = 0;
    }
}

void dpt_progress_fini(dpt_progress_t *p)
{
    dpt_progress_clear(p);
    if (p->out && p->out != stderr)
        fclose(p->out);
    p->out = stderr;
}
