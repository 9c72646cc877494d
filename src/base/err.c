/*
 * err.c - names and messages for KEEL_ERRNO_MAP.
 */
#include "base/err.h"

const char *keel_strerror(int err)
{
    switch (err) {
    case KEEL_OK:
        return "success";
#define KEEL_ERR_MSG(name, msg)                                              \
    case KEEL_E##name:                                                       \
        return msg;
        KEEL_ERRNO_MAP(KEEL_ERR_MSG)
#undef KEEL_ERR_MSG
    default:
        return "unknown error";
    }
}

const char *keel_err_name(int err)
{
    switch (err) {
    case KEEL_OK:
        return "KEEL_OK";
#define KEEL_ERR_NAME(name, msg)                                             \
    case KEEL_E##name:                                                       \
        return "KEEL_E" #name;
        KEEL_ERRNO_MAP(KEEL_ERR_NAME)
#undef KEEL_ERR_NAME
    default:
        return "KEEL_E?";
    }
}
