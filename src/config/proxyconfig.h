/*
 * proxyconfig.h - the effective ProxyConfig of one proxy.
 *
 * Istio (reference §1.9, §4.3; pilot/pkg/model/proxy_config.go
 * EffectiveProxyConfig): MeshConfig `defaultConfig` < the root namespace's
 * selector-less ProxyConfig < the proxy namespace's selector-less
 * ProxyConfig < the oldest ProxyConfig of the namespace whose `selector`
 * matches the workload (keel_store_policies_for). Fields merge: a level
 * that sets `concurrency` replaces it (0 included: "all cores");
 * `environmentVariables` merge key by key (proto.Merge of a map), the
 * higher level winning a key; MeshConfig `defaultConfig.proxyMetadata` is
 * the lowest level of that map. `image` is the highest level's. The pod
 * annotation `proxy.istio.io/config` is not read.
 *
 * Istio applies ProxyConfig at proxy start (bootstrap): a change needs a
 * restart. Keel does the same for concurrency (docs/traffic-management.md).
 *
 * Memory: strings and arrays point into the store's resources or arena a;
 * valid while both live.
 */
#ifndef KEEL_CONFIG_PROXYCONFIG_H
#define KEEL_CONFIG_PROXYCONFIG_H

#include "config/schema.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct keel_arena;
struct keel_store;
struct keel_mesh_config;

#define KEEL_PROXYCONFIG_MAX_LEVELS 4

struct keel_proxyconfig_env {
    const char *key;
    const char *value;
    const char *from; /* the level that set it, as in `sources` */
};

struct keel_proxyconfig {
    bool has_concurrency;
    int64_t concurrency;                    /* 0 = every core */
    const char *concurrency_from;           /* "ProxyConfig ns/name (workload)", "MeshConfig defaultConfig", ... */
    const struct keel_proxyconfig_env *env; /* sorted by key */
    size_t n_env;
    const char *image_type;                           /* or NULL */
    const char *sources[KEEL_PROXYCONFIG_MAX_LEVELS]; /* the levels that applied, lowest first */
    size_t n_sources;
};

/* The effective ProxyConfig for a proxy in namespace ns with labels. mesh may be NULL (no MeshConfig). Never
 * fails (aborts on OOM: config phase). */
void keel_proxyconfig_resolve(const struct keel_store *s, const struct keel_mesh_config *mesh, const char *ns,
                              const struct keel_kv_str *labels, size_t n_labels, struct keel_arena *a,
                              struct keel_proxyconfig *out);

#endif
