/*
 * log.h - levelled log lines on stderr.
 *
 * One line per call: "2026-11-27T15:04:05.123Z warn  message". The level
 * threshold is process-wide and atomic (set at start-up or from the admin
 * API); logging is safe from any thread. Messages longer than 4 KiB are cut.
 */
#ifndef KEEL_BASE_LOG_H
#define KEEL_BASE_LOG_H

enum keel_log_level {
    KEEL_LOG_DEBUG,
    KEEL_LOG_INFO,
    KEEL_LOG_WARN,
    KEEL_LOG_ERROR,
    KEEL_LOG_OFF,
};

void keel_log_set_level(enum keel_log_level level);
enum keel_log_level keel_log_get_level(void);

/* Parses "debug", "info", "warn", "error", "off"; returns 0 or KEEL_EINVAL. */
int keel_log_level_parse(const char *s, enum keel_log_level *out);
const char *keel_log_level_name(enum keel_log_level level);

void keel_log(enum keel_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
