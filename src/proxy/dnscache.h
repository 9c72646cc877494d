/*
 * dnscache.h - the proxy's table of DNS names: name -> addresses, kept fresh.
 *
 * The main thread compiles snapshots with the answers this table holds
 * (keel_snapshot_build's `dns` input) and hands it the names each snapshot
 * needs (keel_dnscache_sync). Every name is resolved at once, then again
 * after its refresh interval; when a name's addresses (or its error) change,
 * the `changed` callback runs and the runtime compiles and publishes a new
 * snapshot. Nothing here runs on, or waits for, a worker.
 *
 * Refresh (Envoy's STRICT/LOGICAL_DNS clusters as Istio configures them:
 * dns_refresh_rate = MeshConfig dnsRefreshRate, respect_dns_ttl on):
 *   - after an answer with a TTL: max(TTL, min(refresh, 5 s)) - a record's
 *     TTL is respected, but never polled more often than Envoy's
 *     dns_min_refresh_rate (5 s) unless the mesh asks for a faster refresh;
 *   - after an answer without a TTL (/etc/hosts) or a failure: `refresh`.
 * Failures:
 *   - NXDOMAIN / no A or AAAA record: the name has no address any more
 *     (its endpoints leave the clusters: 503 UH), and the error is kept;
 *   - timeouts and server errors: the last known addresses stay (a flaky
 *     resolver does not empty a cluster), and the error is kept;
 *   - either way the name is retried after `refresh`, and the first failure
 *     (or a different one) is logged once, not on every retry.
 *
 * Threads and ownership: one table per resolver, on the resolver's loop
 * thread. The answers returned by keel_dnscache_answers() belong to the table
 * and stay valid until control returns to the loop (the next answer or sync
 * may change them): compile with them at once.
 */
#ifndef KEEL_PROXY_DNSCACHE_H
#define KEEL_PROXY_DNSCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct keel_buf;
struct keel_dns;
struct keel_dns_answers;
struct keel_dnscache;
struct keel_loop;

/* Envoy's default dns_refresh_rate, used when the mesh config sets no dnsRefreshRate. */
#define KEEL_DNSCACHE_DEFAULT_REFRESH_MS 5000u
/* Envoy's dns_min_refresh_rate: a short TTL does not make us poll faster than this (unless refresh is shorter). */
#define KEEL_DNSCACHE_MIN_TTL_REFRESH_MS 5000u
/* The fastest refresh accepted from the mesh config. */
#define KEEL_DNSCACHE_MIN_REFRESH_MS 100u

typedef void (*keel_dnscache_changed_cb)(void *data);

/* A table resolving with dns (which must outlive it) on loop. changed runs on the loop when the answers change.
 * NULL when out of memory. */
struct keel_dnscache *keel_dnscache_new(struct keel_loop *loop, struct keel_dns *dns, keel_dnscache_changed_cb changed,
                                        void *data);

/* Cancels every lookup and timer and frees the table. NULL is a no-op. */
void keel_dnscache_free(struct keel_dnscache *c);

/* Makes names (sorted, unique: keel_snapshot_dns_names) the set to keep resolved: new names are looked up at
 * once, known ones keep their answers and schedule, names no longer listed are forgotten. refresh_ms (0 = the
 * default) applies from each name's next answer. */
void keel_dnscache_sync(struct keel_dnscache *c, const char *const *names, size_t n, uint64_t refresh_ms);

/* The current answers, sorted by name, for keel_snapshot_build(). See the lifetime note above. */
const struct keel_dns_answers *keel_dnscache_answers(struct keel_dnscache *c);

/* True once every name of the first non-empty sync has had an answer (address or error), and from then on; true
 * at once when no name is needed. The proxy is not ready before (as Envoy's clusters warm up). */
bool keel_dnscache_warm(const struct keel_dnscache *c);

/* Appends a JSON array: per name its addresses, TTL, last error, lookups, failures and the time to its next
 * lookup. Returns 0 or the first keel_buf error. */
int keel_dnscache_dump_json(const struct keel_dnscache *c, struct keel_buf *out);

#endif
