/*
 * stats.h - the proxy's counters and gauges, sharded per worker thread.
 *
 * Each worker owns one keel_stats_shard and is the only writer of it; the
 * admin thread reads every shard when Prometheus scrapes and adds them up.
 * Counters are relaxed atomics, so the request path pays one uncontended
 * atomic add and takes no lock. Per-cluster counters live in a per-shard
 * table keyed by cluster name: the first request to a cluster on a worker
 * inserts its entry (under the shard's mutex, which only the scrape also
 * takes); the stream then keeps the returned pointer for its lifetime.
 *
 * Names follow Envoy's, so existing Istio dashboards keep working
 * (envoy_http_downstream_rq_total, envoy_cluster_upstream_rq_total{cluster_name=...}).
 */
#ifndef KEEL_PROXY_STATS_H
#define KEEL_PROXY_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct keel_buf;

/* Listener-level (downstream) statistics: name, Prometheus type, help. */
#define KEEL_DOWNSTREAM_STATS(XX)                                                                                    \
    XX(DOWNSTREAM_CX_TOTAL, "envoy_http_downstream_cx_total", "counter", "downstream connections accepted")          \
    XX(DOWNSTREAM_CX_ACTIVE, "envoy_http_downstream_cx_active", "gauge", "downstream connections open")             \
    XX(DOWNSTREAM_CX_HTTP2_TOTAL, "envoy_http_downstream_cx_http2_total", "counter",                                 \
       "downstream connections that speak HTTP/2")                                                                    \
    XX(DOWNSTREAM_CX_DESTROY_REMOTE, "envoy_http_downstream_cx_destroy_remote", "counter",                           \
       "downstream connections closed by the client")                                                                \
    XX(DOWNSTREAM_CX_PROTOCOL_ERROR, "envoy_http_downstream_cx_protocol_error", "counter",                           \
       "downstream connections closed for a protocol error")                                                         \
    XX(DOWNSTREAM_RQ_TOTAL, "envoy_http_downstream_rq_total", "counter", "downstream requests")                     \
    XX(DOWNSTREAM_RQ_ACTIVE, "envoy_http_downstream_rq_active", "gauge", "downstream requests in flight")           \
    XX(DOWNSTREAM_RQ_1XX, "envoy_http_downstream_rq_1xx", "counter", "responses with a 1xx code")                   \
    XX(DOWNSTREAM_RQ_2XX, "envoy_http_downstream_rq_2xx", "counter", "responses with a 2xx code")                   \
    XX(DOWNSTREAM_RQ_3XX, "envoy_http_downstream_rq_3xx", "counter", "responses with a 3xx code")                   \
    XX(DOWNSTREAM_RQ_4XX, "envoy_http_downstream_rq_4xx", "counter", "responses with a 4xx code")                   \
    XX(DOWNSTREAM_RQ_5XX, "envoy_http_downstream_rq_5xx", "counter", "responses with a 5xx code")                   \
    XX(DOWNSTREAM_RQ_NO_ROUTE, "envoy_http_no_route", "counter", "requests that matched no route (404 NR)")          \
    XX(DOWNSTREAM_CX_RX_BYTES, "envoy_http_downstream_cx_rx_bytes_total", "counter", "bytes received from clients")  \
    XX(DOWNSTREAM_CX_TX_BYTES, "envoy_http_downstream_cx_tx_bytes_total", "counter", "bytes sent to clients")        \
    XX(TCP_DOWNSTREAM_CX_TOTAL, "envoy_tcp_downstream_cx_total", "counter", "TCP proxy connections accepted")        \
    XX(TCP_DOWNSTREAM_CX_ACTIVE, "envoy_tcp_downstream_cx_active", "gauge", "TCP proxy connections open")            \
    XX(TCP_DOWNSTREAM_CX_NO_ROUTE, "envoy_tcp_downstream_cx_no_route", "counter",                                    \
       "TCP connections closed without a route (NR)")                                                                \
    XX(TCP_DOWNSTREAM_CX_RX_BYTES, "envoy_tcp_downstream_cx_rx_bytes_total", "counter",                              \
       "bytes received from TCP clients")                                                                            \
    XX(TCP_DOWNSTREAM_CX_TX_BYTES, "envoy_tcp_downstream_cx_tx_bytes_total", "counter", "bytes sent to TCP clients") \
    XX(TCP_DOWNSTREAM_PAUSED_READING, "envoy_tcp_downstream_flow_control_paused_reading_total", "counter",           \
       "times reading from a TCP client stopped for back-pressure")                                                  \
    XX(TCP_IDLE_TIMEOUT, "envoy_tcp_idle_timeout", "counter", "TCP connections closed by the idle timeout")

enum keel_stat_id {
#define KEEL_STAT_ENUM(id, name, type, help) KEEL_STAT_##id,
    KEEL_DOWNSTREAM_STATS(KEEL_STAT_ENUM)
#undef KEEL_STAT_ENUM
        KEEL_STAT__COUNT
};

/* Per-cluster (upstream) statistics. */
#define KEEL_CLUSTER_STATS(XX)                                                                                       \
    XX(UPSTREAM_CX_TOTAL, "envoy_cluster_upstream_cx_total", "counter", "upstream connections opened")              \
    XX(UPSTREAM_CX_ACTIVE, "envoy_cluster_upstream_cx_active", "gauge", "upstream connections open")                \
    XX(UPSTREAM_CX_CONNECT_FAIL, "envoy_cluster_upstream_cx_connect_fail", "counter", "upstream connect failures")   \
    XX(UPSTREAM_CX_CONNECT_TIMEOUT, "envoy_cluster_upstream_cx_connect_timeout", "counter",                         \
       "upstream connect timeouts")                                                                                  \
    XX(UPSTREAM_RQ_TOTAL, "envoy_cluster_upstream_rq_total", "counter", "requests sent upstream")                   \
    XX(UPSTREAM_RQ_ACTIVE, "envoy_cluster_upstream_rq_active", "gauge", "upstream requests in flight")              \
    XX(UPSTREAM_RQ_2XX, "envoy_cluster_upstream_rq_2xx", "counter", "upstream responses with a 2xx code")           \
    XX(UPSTREAM_RQ_3XX, "envoy_cluster_upstream_rq_3xx", "counter", "upstream responses with a 3xx code")           \
    XX(UPSTREAM_RQ_4XX, "envoy_cluster_upstream_rq_4xx", "counter", "upstream responses with a 4xx code")           \
    XX(UPSTREAM_RQ_5XX, "envoy_cluster_upstream_rq_5xx", "counter", "upstream responses with a 5xx code")           \
    XX(UPSTREAM_RQ_TIMEOUT, "envoy_cluster_upstream_rq_timeout", "counter", "upstream requests that timed out")     \
    XX(UPSTREAM_RQ_RETRY, "envoy_cluster_upstream_rq_retry", "counter", "upstream request retries")                 \
    XX(UPSTREAM_RQ_PENDING_OVERFLOW, "envoy_cluster_upstream_rq_pending_overflow", "counter",                       \
       "requests refused by the circuit breaker (UO)")                                                               \
    XX(UPSTREAM_RQ_PENDING_TOTAL, "envoy_cluster_upstream_rq_pending_total", "counter",                             \
       "requests that waited for a connection")                                                                      \
    XX(UPSTREAM_RQ_PENDING_ACTIVE, "envoy_cluster_upstream_rq_pending_active", "gauge",                             \
       "requests waiting for a connection")                                                                          \
    XX(UPSTREAM_RQ_RETRY_OVERFLOW, "envoy_cluster_upstream_rq_retry_overflow", "counter",                           \
       "retries not made because of maxRetries")                                                                     \
    XX(UPSTREAM_CX_OVERFLOW, "envoy_cluster_upstream_cx_overflow", "counter",                                       \
       "times maxConnections kept a connection from opening")                                                        \
    XX(UPSTREAM_CX_MAX_REQUESTS, "envoy_cluster_upstream_cx_max_requests", "counter",                               \
       "connections closed by maxRequestsPerConnection")                                                             \
    XX(UPSTREAM_CX_IDLE_TIMEOUT, "envoy_cluster_upstream_cx_idle_timeout", "counter",                               \
       "pooled connections closed by the idle timeout")                                                              \
    XX(UPSTREAM_CX_MAX_DURATION_REACHED, "envoy_cluster_upstream_cx_max_duration_reached", "counter",               \
       "connections closed by maxConnectionDuration")                                                                \
    XX(UPSTREAM_CX_RX_BYTES, "envoy_cluster_upstream_cx_rx_bytes_total", "counter", "bytes received from upstream") \
    XX(UPSTREAM_CX_TX_BYTES, "envoy_cluster_upstream_cx_tx_bytes_total", "counter", "bytes sent upstream")

enum keel_cluster_stat_id {
#define KEEL_CSTAT_ENUM(id, name, type, help) KEEL_CSTAT_##id,
    KEEL_CLUSTER_STATS(KEEL_CSTAT_ENUM)
#undef KEEL_CSTAT_ENUM
        KEEL_CSTAT__COUNT
};

struct keel_cluster_stats {
    _Atomic uint64_t v[KEEL_CSTAT__COUNT];
};

struct keel_stats_shard;

/* A shard for one worker; NULL on OOM. */
struct keel_stats_shard *keel_stats_shard_new(void);
void keel_stats_shard_free(struct keel_stats_shard *s);

/* Owner thread only (the shard's worker). */
static inline void keel_stats_add(struct keel_stats_shard *s, enum keel_stat_id id, int64_t delta);
/* Counters of a cluster on this shard, created on first use; NULL only on OOM (then the caller just does not count).
 * The pointer stays valid until the shard is freed. Owner thread only. */
struct keel_cluster_stats *keel_stats_cluster(struct keel_stats_shard *s, const char *cluster_name);
static inline void keel_cstats_add(struct keel_cluster_stats *c, enum keel_cluster_stat_id id, int64_t delta);
/* Counts a response code into the 1xx..5xx counters of the shard (downstream) or of the cluster. */
void keel_stats_count_code(struct keel_stats_shard *s, int status);
void keel_cstats_count_code(struct keel_cluster_stats *c, int status);

/* Any thread: Prometheus text exposition of the sum of all shards (plus the extra lines the caller appends). */
int keel_stats_prometheus(struct keel_stats_shard *const *shards, size_t n, struct keel_buf *out);

/* Any thread: the current value of a downstream stat summed over shards (for tests, /stats and the status table). */
uint64_t keel_stats_sum(struct keel_stats_shard *const *shards, size_t n, enum keel_stat_id id);

/* ---- inline definitions ---------------------------------------------------------------------------------------- */

/* The shard's first member is its counter array, so the inline adds need no call. */
struct keel_stats_counters {
    _Atomic uint64_t v[KEEL_STAT__COUNT];
};

static inline void keel_stats_add(struct keel_stats_shard *s, enum keel_stat_id id, int64_t delta)
{
    atomic_fetch_add_explicit(&((struct keel_stats_counters *)(void *)s)->v[id], (uint64_t)delta,
                              memory_order_relaxed);
}

static inline void keel_cstats_add(struct keel_cluster_stats *c, enum keel_cluster_stat_id id, int64_t delta)
{
    if (c)
        atomic_fetch_add_explicit(&c->v[id], (uint64_t)delta, memory_order_relaxed);
}

#endif
