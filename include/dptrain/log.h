/* log.h: leveled logging with a [host:rank] prefix (the rank is set by the trainer's dist layer
 * under mpirun). Level comes from DPTRAIN_DEBUG (ERROR, WARN, INFO, TRACE; default WARN).
 * Warnings go through it, not through fprintf. Only the calling code decides whether rank 0
 * alone prints. */
#ifndef DPT_LOG_H
#define DPT_LOG_H

typedef enum { DPT_LOG_ERROR = 0, DPT_LOG_WARN, DPT_LOG_INFO, DPT_LOG_TRACE } dpt_log_level_t;

/* Set the rank shown in the prefix (-1 hides it). Call once at start-up. */
void dpt_log_set_rank(int rank);
/* Override the level (otherwise read from DPTRAIN_DEBUG on first use). */
void dpt_log_set_level(dpt_log_level_t level);
int dpt_log_enabled(dpt_log_level_t level);
void dpt_log(dpt_log_level_t level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define DPT_WARN(...) dpt_log(DPT_LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define DPT_INFO(...) dpt_log(DPT_LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define DPT_TRACE(...) dpt_log(DPT_LOG_TRACE, __FILE__, __LINE__, __VA_ARGS__)

#endif
