/*
 * host.h - Istio host names: matching, precedence, FQDN expansion, index.
 *
 * Istio compares host names lower-cased; the only wildcard is a leading `*`:
 * `*.foo.com` matches any name ending in `.foo.com` at any depth
 * (`a.foo.com`, `a.b.foo.com`) but never the bare `foo.com`, and `*` alone
 * matches everything (istio/istio pkg/config/host/name.go, names.go; see
 * /work/shared/reference/istio-api.md §4.1). Every function here compares
 * ASCII case-insensitively and never allocates, except keel_host_fqdn()
 * (into the caller's arena) and keel_host_index_build().
 *
 * struct keel_host_index answers "which entry most specifically matches this
 * name" for the request path (DestinationRule selection, VirtualService to
 * service binding, virtual-host lookup): an exact hash lookup first, then the
 * longest wildcard suffix. A lookup hashes the name once, right to left, and
 * probes the table once per label: O(length) bytes and O(labels) probes, no
 * allocation, no copy, case-insensitive hashing.
 *
 * Thread-safety: the host functions are pure. An index is immutable once
 * built; any number of threads may look up concurrently with no locking.
 * Ownership: an index and its copies of the host strings live in the arena
 * passed to keel_host_index_build(); the value pointers are borrowed.
 */
#ifndef KEEL_CONFIG_HOST_H
#define KEEL_CONFIG_HOST_H

#include <stdbool.h>
#include <stddef.h>

struct keel_arena;

/* True when h starts with `*` (Istio's IsWildCarded). NULL is not. */
bool keel_host_is_wildcard(const char *h);

/* Symmetric overlap (Istio Name.Matches): both concrete => equal; one
 * wildcard => the other ends with its suffix (`*.foo.com` ~ `a.b.foo.com`,
 * never `foo.com`); both wildcards => the longer's suffix ends with the
 * shorter's (`*.com` ~ `*.foo.com`); `*` matches everything. NULL == "". */
bool keel_host_matches(const char *a, const char *b);

/* One-directional (Istio Name.SubsetOf): every name a matches is matched by
 * b. `a.foo.com` ⊆ `*.foo.com` ⊆ `*.com` ⊆ `*`; a wildcard is never a subset
 * of a concrete name. */
bool keel_host_subset_of(const char *a, const char *b);

/* Precedence order for sorting (Istio MoreSpecific): negative when a is more
 * specific than b, 0 when they are equal ignoring case, positive otherwise.
 * Concrete names before wildcards, then longer before shorter, then
 * alphabetical (lower-cased). A total order, usable with qsort(). */
int keel_host_cmp_specificity(const char *a, const char *b);

/* keel_host_cmp_specificity(a, b) < 0. */
bool keel_host_more_specific(const char *a, const char *b);

/* Short-name expansion with the namespace of the resource that wrote the
 * host (§0.2): `reviews` in ns `default` => `reviews.default.svc.<domain>`.
 * Names with a dot, wildcards and "" are returned unchanged (the pointer
 * `host` itself); otherwise the expansion is allocated in arena a (aborts on
 * OOM: config phase). ns NULL/"" => "default"; domain NULL/"" =>
 * "cluster.local". Case is kept. */
const char *keel_host_fqdn(struct keel_arena *a, const char *host, const char *ns, const char *domain);

/* ---- compiled index ------------------------------------------------------ */

struct keel_host_entry {
    const char *host; /* exact name, `*.suffix` or `*` */
    void *value;      /* borrowed, never dereferenced by the index */
};

struct keel_host_index;

/* Builds an index of n entries in arena a. Host strings are copied
 * (lower-cased); values are borrowed. When two entries name the same host
 * (ignoring case) the first one wins, so pass entries in precedence order
 * (e.g. oldest first). Returns 0 and sets *out, KEEL_EINVAL when a host is
 * empty or a malformed wildcard (`*` must be alone or followed by `.`, and
 * `*.` needs a suffix), or KEEL_ENOMEM (nothing usable is left in *out; the
 * arena keeps what was allocated until it is freed). n may be 0. */
int keel_host_index_build(struct keel_arena *a, const struct keel_host_entry *entries, size_t n,
                          struct keel_host_index **out);

/* Most specific entry matching name[0..len): the exact entry if any, else the
 * wildcard with the longest suffix (`a.b.foo.com` tries `*.b.foo.com`,
 * `*.foo.com`, `*.com`, `*`), else NULL. A wildcard name (`*.foo.com`)
 * matches only wildcard entries: itself, then shorter suffixes, as in Istio's
 * MostSpecificHostMatch. The name is compared case-insensitively, taken as is
 * (strip any `:port` or trailing dot first). The returned entry (host
 * lower-cased) lives as long as the index. No allocation; thread-safe. */
const struct keel_host_entry *keel_host_index_lookup(const struct keel_host_index *ix, const char *name, size_t len);

/* Number of distinct hosts in the index. */
size_t keel_host_index_count(const struct keel_host_index *ix);

/* Entry i (0 <= i < count), in the order given to build (duplicates removed). */
const struct keel_host_entry *keel_host_index_at(const struct keel_host_index *ix, size_t i);

#endif
