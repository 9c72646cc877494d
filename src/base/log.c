/*
 * log.c - levelled logging (see log.h).
 */
#include "base/log.h"

#include "base/err.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static _Atomic int log_level = KEEL_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void keel_log_set_level(enum keel_log_level level)
{
    atomic_store(&log_level, (int)level);
}

enum keel_log_level keel_log_get_level(void)
{
    return (enum keel_log_level)atomic_load(&log_level);
}

int keel_log_level_parse(const char *s, enum keel_log_level *out)
{
    for (int i = 0; i <= KEEL_LOG_OFF; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum keel_log_level)i;
            return 0;
        }
    }
    return KEEL_EINVAL;
}

const char *keel_log_level_name(enum keel_log_level level)
{
    return (unsigned)level <= KEEL_LOG_OFF ? level_names[level] : "?";
}

void keel_log(enum keel_log_level level, const char *fmt, ...)
{
    if ((int)level < atomic_load(&log_level) || level >= KEEL_LOG_OFF)
        return;
    char line[4096];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                     level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(line))
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = strnlen(line, sizeof(line) - 2);
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
}
