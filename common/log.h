/* log.h - leveled logging to stderr, as plain text or JSON lines.
 *
 * Every line names the service (set once by log_setup). Plain lines look like
 *   2026-11-25T06:30:00.123Z engine INFO consumer assigned 12 partitions
 * and JSON lines like
 *   {"ts":"2026-11-25T06:30:00.123Z","service":"engine","level":"info","msg":"..."}
 * Logging is synchronous and unbuffered (one write(2) per line) so that nothing is lost
 * when a process is killed; the hot paths of the services never log per event. */
#ifndef INTEGRAL_LOG_H
#define INTEGRAL_LOG_H

#include <stdbool.h>

typedef enum {
    LOG_LEVEL_DEBUG = 0,
    LOG_LEVEL_INFO = 1,
    LOG_LEVEL_WARN = 2,
    LOG_LEVEL_ERROR = 3,
} log_level_t;

/* Sets the service name (borrowed: must outlive logging), the lowest level written and the
 * format. Before log_setup the service is "integral", the level info, the format plain. */
void log_setup(const char *service, log_level_t level, bool json);

/* Parses "debug" | "info" | "warn" | "error". Returns 0, or -1 for anything else. */
int log_level_parse(const char *name, log_level_t *level);

/* True when a line at this level would be written (to skip building costly messages). */
bool log_enabled(log_level_t level);

void log_write(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_write(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_write(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_write(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
