/* log.c - leveled logging to stderr, plain text or JSON lines. See log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static const char *log_service = "integral";
static log_level_t log_min_level = LOG_LEVEL_INFO;
static bool log_json;

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char *const level_tags[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void log_setup(const char *service, log_level_t level, bool json)
{
    log_service = service;
    log_min_level = level;
    log_json = json;
}

int log_level_parse(const char *name, log_level_t *level)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *level = (log_level_t)i;
            return 0;
        }
    }
    return -1;
}

bool log_enabled(log_level_t level)
{
    return level >= log_min_level;
}

static size_t format_utc_now(char *out, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(out + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000);
    return n;
}

/* Appends msg to out as the inside of a JSON string; returns the new length. */
static size_t append_json_escaped(char *out, size_t len, size_t cap, const char *msg)
{
    for (const unsigned char *p = (const unsigned char *)msg; *p && len + 7 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            out[len++] = '\\';
            out[len++] = (char)*p;
        } else if (*p < 0x20) {
            len += (size_t)snprintf(out + len, cap - len, "\\u%04x", *p);
        } else {
            out[len++] = (char)*p;
        }
    }
    return len;
}

void log_write(log_level_t level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char msg[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    char ts[40];
    format_utc_now(ts, sizeof ts);
    char line[LOG_LINE_MAX + 256];
    size_t len;
    if (log_json) {
        len = (size_t)snprintf(line, sizeof line,
                               "{\"ts\":\"%s\",\"service\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
                               log_service, level_names[level]);
        len = append_json_escaped(line, len, sizeof line - 3, msg);
        line[len++] = '"';
        line[len++] = '}';
    } else {
        len = (size_t)snprintf(line, sizeof line - 1, "%s %s %s %s", ts, log_service,
                               level_tags[level], msg);
        if (len > sizeof line - 2)
            len = sizeof line - 2;
    }
    line[len++] = '\n';
    /* One write per line: lines of concurrent processes sharing stderr do not interleave. */
    ssize_t ignored = write(STDERR_FILENO, line, len);
    (void)ignored;
}
