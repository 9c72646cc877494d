/*
 * accesslog.h - one line per request, in Istio's formats.
 *
 * Configured as Istio does: MeshConfig accessLogFile (off when empty, e.g.
 * "/dev/stdout"), accessLogFormat (Envoy command operators; empty = Istio's
 * default text format) and accessLogEncoding (TEXT or JSON with Istio's key
 * set). The format is compiled once per config into a keel_accesslog_format;
 * workers render a keel_accesslog_entry into a per-worker buffer and write it
 * with one write() (O_APPEND) per line, so lines from different workers never
 * interleave.
 *
 * Envoy response flags (UH, UF, UO, NR, URX, UT, DC, LR, UC, UR, FI, DI, NC,
 * DPE, UPE, ...) are a bit set rendered in Envoy's order, "-" when none.
 */
#ifndef KEEL_PROXY_ACCESSLOG_H
#define KEEL_PROXY_ACCESSLOG_H

#include "base/str.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct keel_buf;
struct keel_http_head;

#define KEEL_RESPONSE_FLAGS(XX)                                                                                      \
    XX(FAILED_LOCAL_HEALTHCHECK, "LH")                                                                              \
    XX(NO_HEALTHY_UPSTREAM, "UH")                                                                                   \
    XX(UPSTREAM_REQUEST_TIMEOUT, "UT")                                                                              \
    XX(LOCAL_RESET, "LR")                                                                                           \
    XX(UPSTREAM_REMOTE_RESET, "UR")                                                                                 \
    XX(UPSTREAM_CONNECTION_FAILURE, "UF")                                                                           \
    XX(UPSTREAM_CONNECTION_TERMINATION, "UC")                                                                       \
    XX(UPSTREAM_OVERFLOW, "UO")                                                                                     \
    XX(NO_ROUTE_FOUND, "NR")                                                                                        \
    XX(DELAY_INJECTED, "DI")                                                                                        \
    XX(FAULT_INJECTED, "FI")                                                                                        \
    XX(RATE_LIMITED, "RL")                                                                                          \
    XX(UNAUTHORIZED_EXTERNAL_SERVICE, "UAEX")                                                                       \
    XX(RATELIMIT_SERVICE_ERROR, "RLSE")                                                                             \
    XX(DOWNSTREAM_CONNECTION_TERMINATION, "DC")                                                                     \
    XX(UPSTREAM_RETRY_LIMIT_EXCEEDED, "URX")                                                                        \
    XX(STREAM_IDLE_TIMEOUT, "SI")                                                                                   \
    XX(INVALID_ENVOY_REQUEST_HEADERS, "IH")                                                                         \
    XX(DOWNSTREAM_PROTOCOL_ERROR, "DPE")                                                                            \
    XX(UPSTREAM_MAX_STREAM_DURATION_REACHED, "UMSDR")                                                               \
    XX(RESPONSE_FROM_CACHE_FILTER, "RFCF")                                                                          \
    XX(NO_FILTER_CONFIG_FOUND, "NFCF")                                                                              \
    XX(DURATION_TIMEOUT, "DT")                                                                                      \
    XX(UPSTREAM_PROTOCOL_ERROR, "UPE")                                                                              \
    XX(NO_CLUSTER_FOUND, "NC")                                                                                      \
    XX(OVERLOAD_MANAGER, "OM")                                                                                      \
    XX(DNS_RESOLUTION_FAILED, "DF")                                                                                 \
    XX(DROP_OVERLOAD, "DO")

enum keel_response_flag_bit {
#define KEEL_RF_BIT(name, str) KEEL_RF_BIT_##name,
    KEEL_RESPONSE_FLAGS(KEEL_RF_BIT)
#undef KEEL_RF_BIT
};

#define KEEL_RF(name) (1u << KEEL_RF_BIT_##name)

/* Appends the flags as Envoy prints them ("UF,URX"), or "-" when flags == 0. */
int keel_response_flags_format(uint32_t flags, struct keel_buf *out);

/* Everything a log line can show about one request (all borrowed). */
struct keel_accesslog_entry {
    int64_t start_unix_ms;            /* %START_TIME% */
    const struct keel_http_head *req; /* request as received (NULL for TCP) */
    const struct keel_http_head *resp; /* response as sent downstream, or NULL */
    struct keel_str protocol;         /* "HTTP/1.1" */
    int response_code;                /* 0 when none was sent */
    uint32_t flags;                   /* KEEL_RF(...) bits */
    const char *response_code_details; /* e.g. "via_upstream", "route_not_found" */
    const char *termination_details;
    const char *upstream_failure;     /* %UPSTREAM_TRANSPORT_FAILURE_REASON% */
    uint64_t bytes_received, bytes_sent;
    int64_t duration_ms;
    int64_t upstream_service_time_ms; /* -1 when no upstream response */
    const char *upstream_host;        /* "10.0.0.1:8080" */
    const char *upstream_cluster;     /* "outbound|9080|v1|reviews.default.svc.cluster.local" */
    const char *upstream_local_address;
    const char *downstream_local_address;
    const char *downstream_remote_address;
    const char *requested_server_name;
    const char *route_name;
};

struct keel_accesslog_format;

/* Compiles a format: encoding_json selects Istio's JSON format (format must then be NULL or a JSON format string);
 * format NULL/"" means Istio's default text format. Returns NULL and sets *err (static text) on a bad format. */
struct keel_accesslog_format *keel_accesslog_format_new(const char *format, bool encoding_json, const char **err);
void keel_accesslog_format_free(struct keel_accesslog_format *f);

/* Renders one line (with its trailing newline) onto out. */
int keel_accesslog_render(const struct keel_accesslog_format *f, const struct keel_accesslog_entry *e,
                          struct keel_buf *out);

#endif
