/*
 * err.h - Keel's error codes: one list, one enum, names and messages.
 *
 * Every fallible function in Keel returns 0 on success and a negative
 * KEEL_E* code on failure (syscall style). KEEL_ERRNO_MAP is the single
 * source of truth: it generates the enum, keel_strerror() and keel_err_name().
 * Structured detail (file:line:col, field path) travels separately, as
 * diagnostics (base/diag.h); codes are for control flow.
 */
#ifndef KEEL_BASE_ERR_H
#define KEEL_BASE_ERR_H

#define KEEL_ERRNO_MAP(XX)                                                   \
    XX(NOMEM, "out of memory")                                               \
    XX(INVAL, "invalid argument")                                            \
    XX(IO, "input/output error")                                             \
    XX(NOENT, "no such file or directory")                                   \
    XX(TOOBIG, "value too large")                                            \
    XX(PARSE, "parse error")                                                 \
    XX(INVALID_CONFIG, "invalid configuration")                              \
    XX(EXISTS, "already exists")                                             \
    XX(NOTFOUND, "not found")                                                \
    XX(AGAIN, "try again")                                                   \
    XX(TIMEDOUT, "timed out")                                                \
    XX(CLOSED, "connection closed")                                          \
    XX(PROTO, "protocol error")                                              \
    XX(ADDRINUSE, "address already in use")                                  \
    XX(CONNREFUSED, "connection refused")                                    \
    XX(MFILE, "too many open files")                                         \
    XX(OVERFLOW, "over a circuit-breaker limit")

enum keel_err {
    KEEL_OK = 0,
#define KEEL_ERR_ENUM(name, msg) KEEL_E##name,
    KEEL__E_FIRST = -1000,
    KEEL_ERRNO_MAP(KEEL_ERR_ENUM)
#undef KEEL_ERR_ENUM
};

/* Human message for a code ("out of memory"); never NULL. */
const char *keel_strerror(int err);

/* Symbolic name for a code ("KEEL_ENOMEM"); never NULL. */
const char *keel_err_name(int err);

#endif
