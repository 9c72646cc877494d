/*
 * proxyconfig.c - the effective ProxyConfig of one proxy (see proxyconfig.h).
 */
#include "config/proxyconfig.h"

#include "base/arena.h"
#include "config/resource.h"
#include "config/store.h"

#include <stdlib.h>
#include <string.h>

static void set_env(struct keel_arena *a, struct keel_proxyconfig_env **v, size_t *n, size_t *cap, const char *key,
                    const char *value, const char *from)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*v)[i].key, key) == 0) {
            (*v)[i].value = value;
            (*v)[i].from = from;
            return;
        }
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        struct keel_proxyconfig_env *nv = keel_arena_xalloc(a, nc * sizeof(*nv));
        if (*n)
            memcpy(nv, *v, *n * sizeof(*nv));
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = (struct keel_proxyconfig_env){key, value, from};
}

static int cmp_env(const void *x, const void *y)
{
    return strcmp(((const struct keel_proxyconfig_env *)x)->key, ((const struct keel_proxyconfig_env *)y)->key);
}

void keel_proxyconfig_resolve(const struct keel_store *s, const struct keel_mesh_config *mesh, const char *ns,
                              const struct keel_kv_str *labels, size_t n_labels, struct keel_arena *a,
                              struct keel_proxyconfig *out)
{
    memset(out, 0, sizeof(*out));
    struct keel_proxyconfig_env *env = NULL;
    size_t n_env = 0, cap = 0;
    const struct keel_mesh_default_config *dc = mesh ? mesh->default_config : NULL;
    if (dc) {
        const char *from = "MeshConfig defaultConfig";
        bool used = false;
        if (keel_obj_has(&dc->_o, "concurrency")) {
            out->has_concurrency = true;
            out->concurrency = dc->concurrency;
            out->concurrency_from = from;
            used = true;
        }
        for (size_t i = 0; i < dc->n_proxy_metadata; i++) {
            set_env(a, &env, &n_env, &cap, dc->proxy_metadata[i].key, dc->proxy_metadata[i].value, from);
            used = true;
        }
        if (used)
            out->sources[out->n_sources++] = from;
    }
    struct keel_policy_ref refs[KEEL_PROXYCONFIG_MAX_LEVELS];
    size_t n = keel_store_policies_for(s, KEEL_KIND_PROXY_CONFIG, ns, labels, n_labels, refs, 3);
    if (n > 3)
        n = 3;
    for (size_t i = 0; i < n; i++) { /* MESH, NAMESPACE, WORKLOAD: later levels win */
        const struct keel_resource *r = refs[i].res;
        const struct keel_proxy_config *pc = r->spec;
        if (!pc)
            continue;
        const char *level = refs[i].level == KEEL_POLICY_WORKLOAD    ? "workload"
                            : refs[i].level == KEEL_POLICY_NAMESPACE ? "namespace"
                                                                     : "root namespace";
        const char *from = keel_arena_printf(a, "ProxyConfig %s/%s (%s)", r->ns, r->meta.name, level);
        out->sources[out->n_sources++] = from;
        if (keel_obj_has(&pc->_o, "concurrency")) {
            out->has_concurrency = true;
            out->concurrency = pc->concurrency;
            out->concurrency_from = from;
        }
        for (size_t k = 0; k < pc->n_environment_variables; k++)
            set_env(a, &env, &n_env, &cap, pc->environment_variables[k].key, pc->environment_variables[k].value, from);
        if (pc->image && pc->image->image_type)
            out->image_type = pc->image->image_type;
    }
    if (n_env)
        qsort(env, n_env, sizeof(*env), cmp_env);
    out->env = env;
    out->n_env = n_env;
}
