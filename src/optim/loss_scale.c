/* loss_scale.c: the loss scaler of fp16 training (optim.h). Plain host arithmetic on a few
 * fields; the overflow flag comes from a device scan of the averaged gradients, which are the
 * same bits on every rank, so every rank's scale follows the same sequence. */
#include "dptrain/optim.h"

#define SCALE_INIT 65536.0f       /* 2^16 */
#define SCALE_MAX 16777216.0f     /* 2^24 */
#define GROWTH_INTERVAL 2000

void dpt_loss_scaler_init(dpt_loss_scaler_t *s, int dynamic, float init_scale)
{
    s->dynamic = dynamic != 0;
    s->scale = dynamic ? SCALE_INIT : (init_scale > 0.0f ? init_scale : 1.0f);
    s->growth_interval = GROWTH_INTERVAL;
    s->good_steps = 0;
    s->skipped = 0;
}

int dpt_loss_scaler_update(dpt_loss_scaler_t *s, int overflow)
{
    if (!s->dynamic)
        return 1;
    if (overflow) {
        s->skipped++;
        s->good_steps = 0;
        if (s->scale > 1.0f)
            s->scale *= 0.5f;
        return 0;
    }
    if (++s->good_steps >= s->growth_interval) {
        s->good_steps = 0;
        if (s->scale < SCALE_MAX)
            s->scale *= 2.0f;
    }
    return 1;
}
