/*
 * patches.c - EnvoyFilter patches on listeners, and their report (see
 * patches.h).
 */
#include "mesh/patches.h"

#include "base/arena.h"
#include "config/envoyfilter.h"
#include "config/resource.h"
#include "config/store.h"
#include "mesh/snapshot.h"

#include <stdio.h>
#include <string.h>

static const char *context_name(const struct keel_ef_config_patch *cp)
{
    static const char *const names[] = {"ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY", "WAYPOINT"};
    int c = cp->match ? (int)cp->match->context : 0;
    return c >= 0 && (size_t)c < sizeof(names) / sizeof(names[0]) ? names[c] : "ANY";
}

static bool context_ok(const struct keel_snapshot_build *b, const struct keel_ef_config_patch *cp)
{
    int c = cp->match ? (int)cp->match->context : KEEL_EF_MATCH_CONTEXT_ANY;
    if (c == KEEL_EF_MATCH_CONTEXT_ANY)
        return true;
    if (b->id->kind == KEEL_PROXY_ROUTER)
        return c == KEEL_EF_MATCH_CONTEXT_GATEWAY;
    return c == KEEL_EF_MATCH_CONTEXT_SIDECAR_OUTBOUND;
}

static bool listener_ok(const struct keel_ef_config_patch *cp, const struct keel_listener *l)
{
    const struct keel_ef_listener_match *lm = cp->match ? cp->match->listener : NULL;
    if (!lm)
        return true;
    if (lm->name && strcmp(lm->name, l->name) != 0)
        return false;
    if (lm->port_number > 0 && (uint32_t)lm->port_number != l->port)
        return false;
    return true;
}

static void add_opts(struct keel_snapshot_build *b, struct keel_listener *l, const struct keel_ef_plan *plan)
{
    struct keel_ef_sockopt *v = keel_arena_xalloc(b->arena, (l->n_sockopts + plan->n_opts) * sizeof(*v));
    if (l->n_sockopts)
        memcpy(v, l->sockopts, l->n_sockopts * sizeof(*v));
    memcpy(v + l->n_sockopts, plan->opts, plan->n_opts * sizeof(*v));
    l->sockopts = v;
    l->n_sockopts += plan->n_opts;
}

const struct keel_ef_report *keel_patches_apply(struct keel_snapshot_build *b, struct keel_listener *ls, size_t n,
                                                size_t *n_out)
{
    *n_out = 0;
    size_t nf =
        keel_store_policies_for(b->store, KEEL_KIND_ENVOY_FILTER, b->ns, b->id->labels, b->id->n_labels, NULL, 0);
    if (!nf)
        return NULL;
    struct keel_policy_ref *refs = keel_arena_xalloc(b->arena, nf * sizeof(*refs));
    nf = keel_store_policies_for(b->store, KEEL_KIND_ENVOY_FILTER, b->ns, b->id->labels, b->id->n_labels, refs, nf);
    size_t total = 0;
    for (size_t i = 0; i < nf; i++) {
        const struct keel_envoy_filter *ef = refs[i].res->spec;
        total += ef ? ef->n_config_patches : 0;
    }
    struct keel_ef_report *out = keel_arena_xalloc(b->arena, (total + 1) * sizeof(*out));
    size_t k = 0;
    for (size_t i = 0; i < nf; i++) {
        const struct keel_resource *r = refs[i].res;
        const struct keel_envoy_filter *ef = r->spec;
        for (size_t p = 0; ef && p < ef->n_config_patches; p++) {
            const struct keel_ef_config_patch *cp = &ef->config_patches[p];
            struct keel_ef_report *rep = &out[k++];
            memset(rep, 0, sizeof(*rep));
            rep->filter = keel_arena_printf(b->arena, "%s/%s", r->ns, r->meta.name);
            rep->index = p;
            rep->priority = ef->priority;
            rep->apply_to = keel_envoyfilter_apply_to_name((int)cp->apply_to);
            rep->operation = keel_envoyfilter_operation_name(cp->patch ? (int)cp->patch->operation : 0);
            rep->context = context_name(cp);
            struct keel_ef_plan plan;
            char why[400];
            keel_envoyfilter_plan(cp, &plan, why, sizeof(why));
            if (!plan.applied) {
                rep->reason = keel_snapshot_strdup(b, plan.reason);
                continue;
            }
            if (!context_ok(b, cp)) {
                rep->reason = keel_arena_printf(b->arena, "context %s does not apply to this %s", rep->context,
                                                b->id->kind == KEEL_PROXY_ROUTER ? "gateway" : "sidecar");
                continue;
            }
            const char **names = keel_arena_xalloc(b->arena, (n + 1) * sizeof(char *));
            size_t nn = 0;
            for (size_t l = 0; l < n; l++)
                if (listener_ok(cp, &ls[l])) {
                    add_opts(b, &ls[l], &plan);
                    names[nn++] = ls[l].name;
                }
            if (!nn) {
                rep->reason = "no listener of this proxy matches the patch's listener name / portNumber";
                continue;
            }
            rep->applied = true;
            rep->listeners = names;
            rep->n_listeners = nn;
        }
    }
    *n_out = k;
    return out;
}

void keel_patches_dump_json(const struct keel_ef_report *r, size_t n, struct keel_snapshot_json *j)
{
    keel_snapshot_json_open(j, "envoyFilters", '[');
    for (size_t i = 0; i < n; i++) {
        keel_snapshot_json_open(j, NULL, '{');
        keel_snapshot_json_str(j, "name", r[i].filter);
        char patch[64];
        snprintf(patch, sizeof(patch), "configPatches[%zu]", r[i].index);
        keel_snapshot_json_str(j, "patch", patch);
        keel_snapshot_json_int(j, "priority", r[i].priority);
        keel_snapshot_json_str(j, "applyTo", r[i].apply_to);
        keel_snapshot_json_str(j, "operation", r[i].operation);
        keel_snapshot_json_str(j, "context", r[i].context);
        keel_snapshot_json_bool(j, "applied", r[i].applied);
        if (r[i].applied)
            keel_snapshot_json_strs(j, "listeners", r[i].listeners, r[i].n_listeners);
        else
            keel_snapshot_json_str(j, "reason", r[i].reason);
        keel_snapshot_json_close(j, '}');
    }
    keel_snapshot_json_close(j, ']');
}
