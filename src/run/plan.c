/*
 * plan.c - `keel run`: which processes make the local mesh, their ports, and the effective config.
 *
 * Design: planning reads only the store (valid resources) and, to blank WorkloadEntry documents, the
 * text of the user's files; it never starts anything. The supervisor (run/supervise.c) diffs two plans
 * by each process's key. Ports come from a table that outlives plans (keel_run_ports), so a reload that
 * adds a workload does not move the ports of the others. Text edits are positioned with the document
 * tree's line:col, and checked against the text before they are applied (a mismatch is a plan error,
 * never a silently wrong file).
 */
#include "run/plan.h"

#include "base/arena.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/str.h"
#include "config/load.h"
#include "config/node.h"
#include "config/proxyconfig.h"
#include "config/resource.h"
#include "config/selector.h"
#include "config/store.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILE (16u << 20)

const char *keel_run_role_name(enum keel_run_role r)
{
    switch (r) {
    case KEEL_RUN_ROUTER:
        return "gateway";
    case KEEL_RUN_SIDECAR:
        return "sidecar";
    case KEEL_RUN_APP:
        return "app";
    }
    return "?";
}

/* ---- the port table ------------------------------------------------------------------------------------------ */

void keel_run_ports_init(struct keel_run_ports *p, unsigned base)
{
    memset(p, 0, sizeof(*p));
    p->base = base;
}

void keel_run_ports_free(struct keel_run_ports *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i].key);
    free(p->v);
    memset(p, 0, sizeof(*p));
}

static unsigned ports_find(const struct keel_run_ports *p, const char *key)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->v[i].key, key) == 0)
            return p->v[i].port;
    return 0;
}

static bool ports_taken(const struct keel_run_ports *p, unsigned port)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->v[i].port == port)
            return true;
    return false;
}

static void ports_add(struct keel_run_ports *p, const char *key, unsigned port)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 32;
        p->v = realloc(p->v, p->cap * sizeof(*p->v));
        if (!p->v)
            abort();
    }
    p->v[p->n].key = strdup(key);
    if (!p->v[p->n].key)
        abort();
    p->v[p->n++].port = port;
}

/* The port for key: the one it had, else the first free one from the base. 0 when the range is used up. */
static unsigned ports_alloc(struct keel_run_ports *p, const char *key)
{
    unsigned port = ports_find(p, key);
    if (port)
        return port;
    /* a port something else holds now (a listener, or a connection's local port) is skipped, not fought for */
    for (port = p->base; port <= 65535 && (ports_taken(p, port) || !keel_run_port_free(port)); port++) {
    }
    if (port > 65535)
        return 0;
    ports_add(p, key, port);
    return port;
}

bool keel_run_port_free(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return true; /* cannot tell; the process that wants it will say */
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    bool ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 1) == 0;
    close(fd);
    if (!ok)
        return false;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return true;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 1) == 0;
    close(fd);
    return ok;
}

/* ---- helpers --------------------------------------------------------------------------------------------------- */

struct builder {
    struct keel_run_plan *plan;
    const struct keel_loadset *ls;
    const struct keel_store *store;
    struct keel_run_ports *ports;
    const struct keel_run_plan_options *o;
    struct keel_arena_vec procs, uses, edits;
    struct keel_buf gen;
    unsigned inbound_ips; /* loopback addresses handed out so far */
};

static void plan_error(struct builder *b, const struct keel_resource *r, const char *path, const char *fmt,
                       const char *arg)
{
    struct keel_diag *g = keel_diags_add(&b->plan->diags, KEEL_SEV_ERROR, r ? &r->loc : NULL, path, fmt, arg);
    if (r) {
        g->kind = r->kind ? r->kind->kind : r->kind_name;
        g->ns = r->ns;
        g->name = r->meta.name;
    }
}

static bool is_loopback(const char *addr)
{
    return addr && (keel_cstr_has_prefix(addr, "127.") || strcmp(addr, "::1") == 0 || strcmp(addr, "localhost") == 0);
}

static const char *annotation(const struct keel_kv_str *kv, size_t n, const char *key)
{
    return keel_labels_get(kv, n, key);
}

static int cmp_kv(const void *a, const void *b)
{
    return strcmp(((const struct keel_kv_str *)a)->key, ((const struct keel_kv_str *)b)->key);
}

/* "k=v,k2=v2" with keys sorted; values joined with '-' into *short_name. */
static const char *selector_string(struct keel_arena *a, const struct keel_kv_str *sel, size_t n,
                                   const char **short_name)
{
    struct keel_kv_str *s = keel_arena_xalloc(a, (n ? n : 1) * sizeof(*s));
    memcpy(s, sel, n * sizeof(*s));
    qsort(s, n, sizeof(*s), cmp_kv);
    struct keel_buf out, nm;
    keel_buf_init(&out, 1 << 16);
    keel_buf_init(&nm, 1 << 16);
    for (size_t i = 0; i < n; i++) {
        keel_buf_printf(&out, "%s%s=%s", i ? "," : "", s[i].key, s[i].value);
        keel_buf_printf(&nm, "%s%s", i ? "-" : "", s[i].value);
    }
    const char *r = keel_arena_strdup(a, keel_buf_cstr(&out));
    *short_name = keel_arena_strdup(a, keel_buf_cstr(&nm));
    keel_buf_free(&out);
    keel_buf_free(&nm);
    return r;
}

static struct keel_run_port_use *add_use(struct builder *b, unsigned port, bool from_base, const char *who)
{
    struct keel_run_port_use *u = keel_arena_vec_push(b->plan->arena, &b->uses, sizeof(*u));
    u->port = port;
    u->from_base = from_base;
    u->who = keel_arena_strdup(b->plan->arena, who);
    return u;
}

static unsigned alloc_or_fail(struct builder *b, const char *key, const struct keel_resource *r)
{
    unsigned p = ports_alloc(b->ports, key);
    if (!p)
        plan_error(b, r, NULL, "no free port left above --base-port for %s", key);
    return p;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct keel_buf bb;
    keel_buf_init(&bb, MAX_FILE);
    char tmp[65536];
    size_t n;
    bool ok = true;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        if (keel_buf_append(&bb, tmp, n) != 0) {
            ok = false;
            break;
        }
    ok = ok && !ferror(f);
    fclose(f);
    if (!ok) {
        keel_buf_free(&bb);
        return NULL;
    }
    keel_buf_putc(&bb, '\0');
    *len = bb.len - 1;
    return bb.data;
}

static bool is_doc_marker(const char *line, size_t len)
{
    return len >= 3 && memcmp(line, "---", 3) == 0 &&
           (len == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\r' || line[3] == '#');
}

/* Blanks the document of r (a WorkloadEntry that keel-run-workloads.yaml replaces). */
static void blank_document(struct builder *b, const struct keel_resource *r)
{
    for (size_t i = 0; i < keel_loadset_count(b->ls); i++) {
        const struct keel_resource *o = keel_loadset_at(b->ls, i);
        if (o != r && o->loc.file && strcmp(o->loc.file, r->loc.file) == 0 && o->loc.doc == r->loc.doc) {
            plan_error(b, r, NULL,
                       "keel run rewrites this WorkloadEntry's ports, so it must be a YAML document of its own "
                       "(not an item of a List): split it out with a `---` line%s",
                       "");
            return;
        }
    }
    size_t len = 0;
    char *text = read_file(r->loc.file, &len);
    if (!text) {
        plan_error(b, r, NULL, "cannot read the file again: %s", strerror(errno));
        return;
    }
    unsigned line = 1, first = 1, last = 0;
    bool found = false;
    for (const char *p = text; p < text + len;) {
        const char *nl = memchr(p, '\n', (size_t)(text + len - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
        if (is_doc_marker(p, ll)) {
            if (line <= r->loc.line)
                first = line == r->loc.line ? line : line + 1; /* "--- {json}" starts on the marker line */
            else if (!found) {
                last = line - 1;
                found = true;
            }
        }
        line++;
        p = nl ? nl + 1 : text + len;
    }
    if (!found)
        last = line - 1;
    free(text);
    struct keel_run_edit *e = keel_arena_vec_push(b->plan->arena, &b->edits, sizeof(*e));
    *e = (struct keel_run_edit){.file = r->loc.file, .line = first, .blank_to_line = last};
}

/* A splice of the integer scalar n to value v. */
static void splice_int(struct builder *b, const struct keel_node *n, unsigned v)
{
    struct keel_run_edit *e = keel_arena_vec_push(b->plan->arena, &b->edits, sizeof(*e));
    *e = (struct keel_run_edit){.file = n->loc.file,
                                .line = n->loc.line,
                                .col = n->loc.col,
                                .old_len = n->len,
                                .text = keel_arena_printf(b->plan->arena, "%u", v)};
}

/* The proxy's environment: its effective ProxyConfig environmentVariables (the proxy resolves the same at start). */
static void proxy_env(struct builder *b, struct keel_run_proc *p, const struct keel_kv_str *labels, size_t n_labels)
{
    const char *root_ns = keel_store_mesh_defaults(b->store)->root_ns;
    const struct keel_resource *mcm = keel_store_get(b->store, KEEL_KIND_CONFIG_MAP, root_ns, "istio");
    struct keel_proxyconfig pc;
    keel_proxyconfig_resolve(b->store, mcm ? mcm->mesh : NULL, p->ns, labels, n_labels, b->plan->arena, &pc);
    struct keel_run_env *env = keel_arena_xalloc(b->plan->arena, (pc.n_env + 1) * sizeof(*env));
    for (size_t i = 0; i < pc.n_env; i++)
        env[i] = (struct keel_run_env){pc.env[i].key, pc.env[i].value};
    p->env = env;
    p->n_env = pc.n_env;
}

static struct keel_run_proc *new_proc(struct builder *b, enum keel_run_role role, const char *name, const char *ns)
{
    struct keel_run_proc *p = keel_arena_vec_push(b->plan->arena, &b->procs, sizeof(*p));
    memset(p, 0, sizeof(*p));
    p->role = role;
    p->name = name;
    p->ns = ns;
    return p;
}

/* ---- gateways ---------------------------------------------------------------------------------------------------- */

struct router_group {
    const char *sel, *name, *ns;
    const struct keel_kv_str *labels; /* the selector */
    size_t n_labels;
    struct keel_buf ports;
};

static void plan_gateways(struct builder *b)
{
    struct keel_arena *a = b->plan->arena;
    size_t n;
    const struct keel_resource *const *gws = keel_store_list(b->store, KEEL_KIND_GATEWAY, &n);
    struct router_group groups[64];
    size_t ng = 0;
    for (size_t i = 0; i < n; i++) {
        const struct keel_resource *r = gws[i];
        const struct keel_gateway *g = r->spec;
        if (!g->n_selector) {
            plan_error(b, r, "spec.selector",
                       "keel run starts one gateway proxy per Gateway selector: give this Gateway a selector "
                       "(e.g. istio: ingressgateway)%s",
                       "");
            continue;
        }
        const char *short_name;
        const char *sel = selector_string(a, g->selector, g->n_selector, &short_name);
        size_t gi = 0;
        while (gi < ng && strcmp(groups[gi].sel, sel) != 0)
            gi++;
        if (gi == ng) {
            if (ng == sizeof(groups) / sizeof(groups[0])) {
                plan_error(b, r, "spec.selector", "more than 64 different Gateway selectors%s", "");
                continue;
            }
            groups[ng].sel = sel;
            groups[ng].name = short_name;
            groups[ng].ns = r->ns;
            groups[ng].labels = g->selector;
            groups[ng].n_labels = g->n_selector;
            keel_buf_init(&groups[ng].ports, 1 << 16);
            ng++;
        }
        const struct keel_node *servers = keel_node_get(keel_node_get(r->node, "spec"), "servers");
        for (size_t s = 0; s < g->n_servers; s++) {
            const struct keel_server *sv = &g->servers[s];
            if (!sv->port)
                continue;
            unsigned want = (unsigned)sv->port->number;
            char key[600];
            snprintf(key, sizeof(key), "gateway:%s:%u", sel, want);
            unsigned port = ports_find(b->ports, key);
            bool from_base = false;
            if (!port) {
                if (!b->o->gateway_ports_from_base && want >= 1024 && !ports_taken(b->ports, want)) {
                    port = want;
                    ports_add(b->ports, key, want);
                } else {
                    port = alloc_or_fail(b, key, r);
                    if (!port)
                        continue;
                }
            }
            from_base = port != want;
            char path[128];
            snprintf(path, sizeof(path), "spec.servers[%zu].port.number", s);
            if (port != want) {
                const struct keel_node *num = NULL;
                if (servers && servers->type == KEEL_NODE_SEQ && s < servers->n)
                    num = keel_node_get(keel_node_get(servers->c.items[s], "port"), "number");
                if (!num || num->type != KEEL_NODE_INT) {
                    plan_error(b, r, path, "cannot find this port number in the file to move it%s", "");
                    continue;
                }
                splice_int(b, num, port);
            }
            char who[700];
            snprintf(who, sizeof(who), "gateway %s: Gateway %s/%s server %s (port %u%s)", groups[gi].name, r->ns,
                     r->meta.name, sv->port->name ? sv->port->name : "?", want,
                     port != want ? (want < 1024 ? ", privileged: moved" : ", taken: moved") : "");
            bool dup = false;
            for (size_t u = 0; u < b->uses.n; u++)
                dup |= ((struct keel_run_port_use *)b->uses.v)[u].port == port;
            if (!dup) {
                add_use(b, port, from_base, who);
                if (port != want)
                    keel_buf_printf(&groups[gi].ports, "%s %u->%u, ", sv->port->name ? sv->port->name : "port", want,
                                    port);
                else
                    keel_buf_printf(&groups[gi].ports, "%s %u, ", sv->port->name ? sv->port->name : "port", port);
            }
        }
    }
    for (size_t gi = 0; gi < ng; gi++) {
        struct keel_run_proc *p = new_proc(b, KEEL_RUN_ROUTER, groups[gi].name, groups[gi].ns);
        p->labels = groups[gi].sel;
        proxy_env(b, p, groups[gi].labels, groups[gi].n_labels);
        char key[600];
        snprintf(key, sizeof(key), "router:%s:admin", p->labels);
        p->admin = alloc_or_fail(b, key, NULL);
        char who[700];
        snprintf(who, sizeof(who), "gateway %s: admin", p->name);
        add_use(b, p->admin, true, who);
        p->ports = keel_arena_printf(a, "%sadmin %u", keel_buf_cstr(&groups[gi].ports), p->admin);
        p->key = keel_arena_printf(a, "router|%s|%s|%s|%s", p->name, p->ns, p->labels, p->ports);
        keel_buf_free(&groups[gi].ports);
    }
}

/* ---- workloads ------------------------------------------------------------------------------------------------- */

struct workload {
    const struct keel_resource *r; /* the WorkloadEntry or Deployment */
    const char *name, *ns;
    const struct keel_kv_str *labels;
    size_t n_labels;
    const char *command;
    const char *sidecar;                  /* annotation value or NULL */
    const struct keel_workload_entry *we; /* NULL for a Deployment */
    const struct keel_pod_spec *pod;      /* Deployment's pod template */
};

static bool has_name(const struct keel_run_app_port *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0)
            return true;
    return false;
}

static void add_app_port(struct builder *b, struct keel_run_proc *p, const struct keel_resource *r, const char *name,
                         unsigned original)
{
    if (has_name(p->app_ports, p->n_app_ports, name))
        return;
    if (p->n_app_ports == KEEL_RUN_MAX_APP_PORTS) {
        plan_error(b, r, NULL, "more than 16 ports on one workload%s", "");
        return;
    }
    p->app_ports[p->n_app_ports++] = (struct keel_run_app_port){.name = name, .original = original};
}

/* The container port named name in a pod template, or 0. */
static unsigned named_container_port(const struct keel_pod_spec *pod, const char *name)
{
    for (size_t c = 0; pod && c < pod->n_containers; c++)
        for (size_t i = 0; i < pod->containers[c].n_ports; i++)
            if (pod->containers[c].ports[i].name && strcmp(pod->containers[c].ports[i].name, name) == 0)
                return (unsigned)pod->containers[c].ports[i].container_port;
    return 0;
}

/* Fills the app ports of w: its own `ports`, then those of the ServiceEntries and Services selecting it. */
static void workload_ports(struct builder *b, const struct workload *w, struct keel_run_proc *p)
{
    if (w->we)
        for (size_t i = 0; i < w->we->n_ports; i++)
            add_app_port(b, p, w->r, w->we->ports[i].key, (unsigned)w->we->ports[i].value);
    size_t n;
    const struct keel_resource *const *v = keel_store_list_ns(b->store, KEEL_KIND_SERVICE_ENTRY, w->ns, &n);
    for (size_t i = 0; i < n; i++) {
        const struct keel_service_entry *se = v[i]->spec;
        if (!se->workload_selector || !se->workload_selector->n_labels ||
            !keel_labels_match(se->workload_selector->labels, se->workload_selector->n_labels, w->labels, w->n_labels))
            continue;
        for (size_t k = 0; k < se->n_ports; k++) {
            const struct keel_service_port *sp = &se->ports[k];
            add_app_port(b, p, w->r, sp->name, (unsigned)(sp->target_port ? sp->target_port : sp->number));
        }
    }
    v = keel_store_list_ns(b->store, KEEL_KIND_SERVICE, w->ns, &n);
    for (size_t i = 0; i < n; i++) {
        const struct keel_service_object *so = v[i]->body;
        if (!so || !so->spec || !so->spec->n_selector ||
            !keel_labels_match(so->spec->selector, so->spec->n_selector, w->labels, w->n_labels))
            continue;
        for (size_t k = 0; k < so->spec->n_ports; k++) {
            const struct keel_k8s_service_port *kp = &so->spec->ports[k];
            if (keel_cstr_empty(kp->name)) {
                plan_error(b, v[i], "spec.ports",
                           "keel run gives each workload its own port by port name: name this Service port "
                           "(e.g. name: http)%s",
                           "");
                continue;
            }
            unsigned orig = (unsigned)kp->port;
            if (kp->target_port.is_str)
                orig = named_container_port(w->pod, kp->target_port.s);
            else if (kp->target_port.i > 0)
                orig = (unsigned)kp->target_port.i;
            add_app_port(b, p, w->r, kp->name, orig ? orig : (unsigned)kp->port);
        }
    }
}

static void emit_kv_map(struct keel_buf *g, const struct keel_kv_str *kv, size_t n)
{
    keel_buf_puts(g, "{");
    for (size_t i = 0; i < n; i++) {
        keel_buf_puts(g, i ? ", " : "");
        keel_buf_json_str(g, kv[i].key);
        keel_buf_puts(g, ": ");
        keel_buf_json_str(g, kv[i].value);
    }
    keel_buf_puts(g, "}");
}

/* The WorkloadEntry keel run writes for w, with ports pointing where traffic for the app must go. */
static void emit_workload_entry(struct builder *b, const struct workload *w, const struct keel_run_proc *p,
                                const char *inbound_ip)
{
    struct keel_buf *g = &b->gen;
    keel_buf_printf(g, "---\n# keel run: %s %s/%s from %s:%u, ports for this machine\n",
                    w->we ? "WorkloadEntry" : "Deployment", w->ns, w->name, w->r->loc.file, w->r->loc.line);
    keel_buf_puts(g, "{\"apiVersion\": \"networking.istio.io/v1\", \"kind\": \"WorkloadEntry\",\n \"metadata\": "
                     "{\"name\": ");
    keel_buf_json_str(g, w->name);
    keel_buf_puts(g, ", \"namespace\": ");
    keel_buf_json_str(g, w->ns);
    keel_buf_puts(g, ", \"labels\": ");
    emit_kv_map(g, w->labels, w->n_labels);
    keel_buf_puts(g, "},\n \"spec\": {\"address\": ");
    keel_buf_json_str(g, inbound_ip ? inbound_ip : w->we ? w->we->address : "127.0.0.1");
    keel_buf_puts(g, ", \"labels\": ");
    emit_kv_map(g, w->labels, w->n_labels);
    keel_buf_puts(g, ", \"ports\": {");
    for (size_t i = 0; i < p->n_app_ports; i++) {
        keel_buf_puts(g, i ? ", " : "");
        keel_buf_json_str(g, p->app_ports[i].name);
        keel_buf_printf(g, ": %u", p->app_ports[i].assigned); /* the sidecar's inbound listens there too */
    }
    keel_buf_puts(g, "}");
    const struct keel_workload_entry *we = w->we;
    if (we && !keel_cstr_empty(we->service_account)) {
        keel_buf_puts(g, ", \"serviceAccount\": ");
        keel_buf_json_str(g, we->service_account);
    } else if (!we && w->pod && !keel_cstr_empty(w->pod->service_account_name)) {
        keel_buf_puts(g, ", \"serviceAccount\": ");
        keel_buf_json_str(g, w->pod->service_account_name);
    }
    if (we && we->weight > 0)
        keel_buf_printf(g, ", \"weight\": %lld", (long long)we->weight);
    if (we && !keel_cstr_empty(we->locality)) {
        keel_buf_puts(g, ", \"locality\": ");
        keel_buf_json_str(g, we->locality);
    }
    if (we && !keel_cstr_empty(we->network)) {
        keel_buf_puts(g, ", \"network\": ");
        keel_buf_json_str(g, we->network);
    }
    keel_buf_puts(g, "}}\n");
}

static void plan_workload(struct builder *b, const struct workload *w, const char *display)
{
    struct keel_arena *a = b->plan->arena;
    bool sidecar = !(w->sidecar && (strcmp(w->sidecar, "false") == 0 || strcmp(w->sidecar, "no") == 0));
    struct keel_run_proc tmp = {0};
    workload_ports(b, w, &tmp);
    char key[700];
    struct keel_buf desc;
    keel_buf_init(&desc, 1 << 16);
    for (size_t i = 0; i < tmp.n_app_ports; i++) {
        /* one app port per distinct original port: two names for one port stay one port */
        unsigned assigned = 0;
        for (size_t j = 0; j < i; j++)
            if (tmp.app_ports[j].original == tmp.app_ports[i].original)
                assigned = tmp.app_ports[j].assigned;
        if (!assigned) {
            snprintf(key, sizeof(key), "app:%s/%s:%u", w->ns, w->name, tmp.app_ports[i].original);
            assigned = alloc_or_fail(b, key, w->r);
            char who[700];
            snprintf(who, sizeof(who), "app %s: port %s (%u in the YAML)", display, tmp.app_ports[i].name,
                     tmp.app_ports[i].original);
            add_use(b, assigned, true, who);
            keel_buf_printf(&desc, "%s%s %u->%u", desc.len ? ", " : "", tmp.app_ports[i].name,
                            tmp.app_ports[i].original, assigned);
        }
        tmp.app_ports[i].assigned = assigned;
    }
    unsigned admin = 0, outbound = 0, inbound = 0;
    const char *inbound_ip = NULL;
    if (sidecar) {
        struct keel_run_proc *p = new_proc(b, KEEL_RUN_SIDECAR, display, w->ns);
        p->workload = keel_arena_printf(a, "%s.%s", w->name, w->ns);
        proxy_env(b, p, w->labels, w->n_labels);
        snprintf(key, sizeof(key), "sidecar:%s/%s:admin", w->ns, w->name);
        admin = p->admin = alloc_or_fail(b, key, w->r);
        snprintf(key, sizeof(key), "sidecar:%s/%s:outbound", w->ns, w->name);
        outbound = p->outbound = alloc_or_fail(b, key, w->r);
        char who[700];
        snprintf(who, sizeof(who), "sidecar %s: admin", display);
        add_use(b, admin, true, who);
        snprintf(who, sizeof(who), "sidecar %s: outbound listener", display);
        add_use(b, outbound, true, who);
#if KEEL_RUN_INBOUND_VIA_SIDECAR
        /* inbound through the sidecar: the mesh reaches the app on the sidecar's inbound listener */
        snprintf(key, sizeof(key), "sidecar:%s/%s:inbound", w->ns, w->name);
        inbound = p->inbound = alloc_or_fail(b, key, w->r);
        snprintf(who, sizeof(who), "sidecar %s: inbound listener", display);
        add_use(b, inbound, true, who);
        if (b->inbound_ips >= KEEL_RUN_MAX_INBOUND_IPS) {
            plan_error(b, w->r, NULL, "more than %s workloads with sidecars: no loopback address left", "250");
        } else {
            snprintf(p->inbound_ip, sizeof(p->inbound_ip), "127.0.0.%u", 2 + b->inbound_ips++);
            inbound_ip = p->inbound_ip;
        }
#endif
        p->ports = inbound ? keel_arena_printf(a, "admin %u, outbound %u, inbound %s:%u", admin, outbound,
                                               p->inbound_ip, inbound)
                           : keel_arena_printf(a, "admin %u, outbound %u", admin, outbound);
        p->key = keel_arena_printf(a, "sidecar|%s|%s|%s", p->name, p->workload, p->ports);
    }
    if (w->command) {
        struct keel_run_proc *p = new_proc(b, KEEL_RUN_APP, display, w->ns);
        memcpy(p->app_ports, tmp.app_ports, sizeof(tmp.app_ports));
        p->n_app_ports = tmp.n_app_ports;
        p->command = w->command;
        p->has_sidecar = sidecar;
        p->outbound_of_sidecar = outbound;
        const char *sn = keel_labels_get(w->labels, w->n_labels, "app");
        if (!sn)
            sn = keel_labels_get(w->labels, w->n_labels, "service.istio.io/canonical-name");
        p->service_name = sn ? sn : w->name;
        const char *ver = keel_labels_get(w->labels, w->n_labels, "version");
        if (!ver)
            ver = keel_labels_get(w->labels, w->n_labels, "service.istio.io/canonical-revision");
        p->version = ver;
        p->ports = keel_arena_strdup(a, desc.len ? keel_buf_cstr(&desc) : "-");
        p->key = keel_arena_printf(a, "app|%s|%s|%s|%s|%s|%u", p->name, p->ns, p->command, p->ports,
                                   p->version ? p->version : "", outbound);
    }
    keel_buf_free(&desc);
    emit_workload_entry(b, w, &tmp, inbound_ip);
}

static void plan_workloads(struct builder *b)
{
    size_t n;
    struct workload ws[1024];
    size_t nw = 0;
    const struct keel_resource *const *v = keel_store_list(b->store, KEEL_KIND_WORKLOAD_ENTRY, &n);
    for (size_t i = 0; i < n && nw < 1024; i++) {
        const struct keel_workload_entry *we = v[i]->spec;
        if (!we || !is_loopback(we->address))
            continue; /* a workload elsewhere: an endpoint like any other, nothing to start */
        struct workload *w = &ws[nw++];
        memset(w, 0, sizeof(*w));
        w->r = v[i];
        w->we = we;
        w->name = v[i]->meta.name;
        w->ns = v[i]->ns;
        w->labels = we->n_labels ? we->labels : v[i]->meta.labels;
        w->n_labels = we->n_labels ? we->n_labels : v[i]->meta.n_labels;
        w->command = annotation(v[i]->meta.annotations, v[i]->meta.n_annotations, KEEL_RUN_ANNOTATION_COMMAND);
        w->sidecar = annotation(v[i]->meta.annotations, v[i]->meta.n_annotations, KEEL_RUN_ANNOTATION_SIDECAR);
        blank_document(b, v[i]);
    }
    v = keel_store_list(b->store, KEEL_KIND_DEPLOYMENT, &n);
    for (size_t i = 0; i < n && nw < 1024; i++) {
        const struct keel_deployment_object *d = v[i]->body;
        if (!d || !d->spec || !d->spec->template)
            continue;
        if (keel_store_get(b->store, KEEL_KIND_WORKLOAD_ENTRY, v[i]->ns, v[i]->meta.name)) {
            plan_error(b, v[i], "metadata.name",
                       "keel run turns each Deployment into a WorkloadEntry of the same name, and a WorkloadEntry "
                       "\"%s\" exists already: rename one of them",
                       v[i]->meta.name);
            continue;
        }
        struct workload *w = &ws[nw++];
        memset(w, 0, sizeof(*w));
        w->r = v[i];
        w->name = v[i]->meta.name;
        w->ns = v[i]->ns;
        w->pod = d->spec->template->spec;
        /* the pod template's labels (a node: the template's metadata is not decoded) */
        const struct keel_node *md = d->spec->template->metadata;
        const struct keel_node *lb = md ? keel_node_get(md, "labels") : NULL;
        const struct keel_node *an = md ? keel_node_get(md, "annotations") : NULL;
        if (lb && lb->type == KEEL_NODE_MAP && lb->n) {
            struct keel_kv_str *kv = keel_arena_xalloc(b->plan->arena, lb->n * sizeof(*kv));
            for (size_t k = 0; k < lb->n; k++)
                kv[k] = (struct keel_kv_str){lb->c.pairs[k].key->str, lb->c.pairs[k].value->str};
            w->labels = kv;
            w->n_labels = lb->n;
        }
        w->command = annotation(v[i]->meta.annotations, v[i]->meta.n_annotations, KEEL_RUN_ANNOTATION_COMMAND);
        w->sidecar = annotation(v[i]->meta.annotations, v[i]->meta.n_annotations, KEEL_RUN_ANNOTATION_SIDECAR);
        if (!w->command && an && an->type == KEEL_NODE_MAP)
            w->command = keel_node_get_str(an, KEEL_RUN_ANNOTATION_COMMAND);
        if (!w->sidecar && an && an->type == KEEL_NODE_MAP)
            w->sidecar = keel_node_get_str(an, KEEL_RUN_ANNOTATION_SIDECAR);
    }
    for (size_t i = 0; i < nw; i++) {
        /* display names: the workload's name, with its namespace when another namespace has the same name */
        const char *display = ws[i].name;
        for (size_t j = 0; j < nw; j++)
            if (j != i && strcmp(ws[j].name, ws[i].name) == 0)
                display = keel_arena_printf(b->plan->arena, "%s.%s", ws[i].name, ws[i].ns);
        plan_workload(b, &ws[i], display);
    }
}

struct keel_run_plan *keel_run_plan_build(const struct keel_loadset *ls, const struct keel_store *store,
                                          struct keel_run_ports *ports, const struct keel_run_plan_options *o)
{
    struct keel_arena *a = keel_arena_new(1 << 16);
    if (!a)
        abort();
    struct keel_run_plan *plan = keel_arena_xalloc(a, sizeof(*plan));
    memset(plan, 0, sizeof(*plan));
    plan->arena = a;
    keel_diags_init(&plan->diags);
    struct builder b = {.plan = plan, .ls = ls, .store = store, .ports = ports, .o = o};
    keel_buf_init(&b.gen, (size_t)64 << 20);
    keel_buf_puts(&b.gen, "# Written by `keel run`: the folder's local workloads, with the ports they have on this\n"
                          "# machine. The WorkloadEntry documents they replace are blanked in their files.\n");
    plan_gateways(&b); /* first: their ports are as written when they can be */
    plan_workloads(&b);
    plan->procs = b.procs.v;
    plan->n_procs = b.procs.n;
    plan->uses = b.uses.v;
    plan->n_uses = b.uses.n;
    plan->edits = b.edits.v;
    plan->n_edits = b.edits.n;
    plan->generated = keel_arena_strdup(a, keel_buf_cstr(&b.gen));
    keel_buf_free(&b.gen);
    return plan;
}

void keel_run_plan_free(struct keel_run_plan *plan)
{
    if (!plan)
        return;
    keel_diags_free(&plan->diags);
    keel_arena_free(plan->arena);
}

/* ---- rendering -----------------------------------------------------------------------------------------------------
 */

static int write_atomic(const char *path, const char *data, size_t len, char *err, size_t errlen)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.keel-tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        return KEEL_EIO;
    }
    bool ok = fwrite(data, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return KEEL_EIO;
    }
    return 0;
}

/* Does the file at path already hold exactly data? (unchanged files are not rewritten: no reload for nothing) */
static bool same_content(const char *path, const char *data, size_t len)
{
    size_t n = 0;
    char *old = read_file(path, &n);
    bool same = old && n == len && memcmp(old, data, len) == 0;
    free(old);
    return same;
}

static int cmp_edit(const void *x, const void *y)
{
    const struct keel_run_edit *a = x, *b = y;
    if (a->line != b->line)
        return a->line < b->line ? -1 : 1;
    return a->col < b->col ? 1 : a->col > b->col ? -1 : 0; /* right to left within a line */
}

/* The text of file `path` with the plan's edits for it. */
static int apply_edits(const struct keel_run_plan *plan, const char *path, struct keel_buf *out, char *err,
                       size_t errlen)
{
    size_t len = 0;
    char *text = read_file(path, &len);
    if (!text) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return KEEL_EIO;
    }
    struct keel_run_edit *mine = calloc(plan->n_edits + 1, sizeof(*mine));
    size_t nm = 0;
    for (size_t i = 0; i < plan->n_edits; i++)
        if (strcmp(plan->edits[i].file, path) == 0)
            mine[nm++] = plan->edits[i];
    qsort(mine, nm, sizeof(*mine), cmp_edit);
    int rc = 0;
    unsigned line = 1;
    size_t ei = 0;
    for (const char *p = text; p < text + len && rc == 0; line++) {
        const char *nl = memchr(p, '\n', (size_t)(text + len - p));
        size_t ll = nl ? (size_t)(nl - p) + 1 : (size_t)(text + len - p);
        bool blank = false;
        for (size_t i = 0; i < nm; i++)
            if (mine[i].blank_to_line && line >= mine[i].line && line <= mine[i].blank_to_line)
                blank = true;
        while (ei < nm && mine[ei].line < line)
            ei++;
        if (blank) {
            keel_buf_puts(out, is_doc_marker(p, ll) ? "---\n" : "#\n");
        } else {
            char *copy = malloc(ll + 1);
            memcpy(copy, p, ll);
            copy[ll] = '\0';
            struct keel_buf lb;
            keel_buf_init(&lb, 1 << 20);
            keel_buf_puts(&lb, copy);
            for (size_t i = ei; i < nm && mine[i].line == line; i++) {
                const struct keel_run_edit *e = &mine[i];
                if (e->blank_to_line)
                    continue;
                size_t off = e->col ? e->col - 1 : 0;
                if (off + e->old_len > ll) {
                    snprintf(err, errlen, "%s:%u:%u: keel run could not find the value to rewrite", path, line, e->col);
                    rc = KEEL_EINVAL;
                    break;
                }
                struct keel_buf nb;
                keel_buf_init(&nb, 1 << 20);
                keel_buf_append(&nb, lb.data, off);
                keel_buf_puts(&nb, e->text);
                keel_buf_append(&nb, lb.data + off + e->old_len, lb.len - off - e->old_len);
                keel_buf_free(&lb);
                lb = nb;
            }
            keel_buf_append(out, lb.data, lb.len);
            keel_buf_free(&lb);
            free(copy);
        }
        p += ll;
    }
    free(mine);
    free(text);
    return rc;
}

static bool wanted(const char *name)
{
    return keel_cstr_has_suffix(name, ".yaml") || keel_cstr_has_suffix(name, ".yml") ||
           keel_cstr_has_suffix(name, ".json");
}

struct written {
    char **v;
    size_t n, cap;
};

static void remember(struct written *w, const char *rel)
{
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->v = realloc(w->v, w->cap * sizeof(char *));
        if (!w->v)
            abort();
    }
    w->v[w->n++] = strdup(rel);
}

static int render_dir(const struct keel_run_plan *plan, const char *src, const char *out, const char *rel, int depth,
                      struct written *w, char *err, size_t errlen)
{
    if (depth > 32)
        return 0;
    char path[4096];
    snprintf(path, sizeof(path), "%s%s%s", src, *rel ? "/" : "", rel);
    DIR *d = opendir(path);
    if (!d) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return KEEL_EIO;
    }
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char r2[4096], in[8200], dst[8200];
        snprintf(r2, sizeof(r2), "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        snprintf(in, sizeof(in), "%s/%s", src, r2);
        snprintf(dst, sizeof(dst), "%s/%s", out, r2);
        struct stat st;
        if (stat(in, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            mkdir(dst, 0700);
            remember(w, r2);
            rc = render_dir(plan, src, out, r2, depth + 1, w, err, errlen);
        } else if (S_ISREG(st.st_mode) && wanted(e->d_name)) {
            if (strcmp(r2, KEEL_RUN_GENERATED_FILE) == 0) {
                snprintf(err, errlen, "%s: this name is keel run's own (%s); rename the file", in,
                         KEEL_RUN_GENERATED_FILE);
                rc = KEEL_EEXISTS;
                break;
            }
            struct keel_buf ob;
            keel_buf_init(&ob, MAX_FILE * 2);
            rc = apply_edits(plan, in, &ob, err, errlen);
            if (rc == 0 && !same_content(dst, ob.data ? ob.data : "", ob.len))
                rc = write_atomic(dst, ob.data ? ob.data : "", ob.len, err, errlen);
            keel_buf_free(&ob);
            remember(w, r2);
        }
    }
    closedir(d);
    return rc;
}

static bool was_written(const struct written *w, const char *rel)
{
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->v[i], rel) == 0)
            return true;
    return false;
}

/* Removes what out/rel holds that this render did not write. */
static void prune(const char *out, const char *rel, const struct written *w, int depth)
{
    if (depth > 32)
        return;
    char path[4096];
    snprintf(path, sizeof(path), "%s%s%s", out, *rel ? "/" : "", rel);
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char r2[4096], full[8200];
        snprintf(r2, sizeof(r2), "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        snprintf(full, sizeof(full), "%s/%s", out, r2);
        struct stat st;
        if (lstat(full, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            prune(out, r2, w, depth + 1);
            if (!was_written(w, r2))
                rmdir(full);
        } else if (!was_written(w, r2)) {
            unlink(full);
        }
    }
    closedir(d);
}

int keel_run_render(const struct keel_run_plan *plan, const char *src_dir, const char *out_dir, char *err,
                    size_t errlen)
{
    if (mkdir(out_dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", out_dir, strerror(errno));
        return KEEL_EIO;
    }
    struct written w = {0};
    int rc = render_dir(plan, src_dir, out_dir, "", 0, &w, err, errlen);
    if (rc == 0) {
        char dst[4096];
        snprintf(dst, sizeof(dst), "%s/%s", out_dir, KEEL_RUN_GENERATED_FILE);
        size_t len = strlen(plan->generated);
        if (!same_content(dst, plan->generated, len))
            rc = write_atomic(dst, plan->generated, len, err, errlen);
        remember(&w, KEEL_RUN_GENERATED_FILE);
    }
    if (rc == 0)
        prune(out_dir, "", &w, 0);
    for (size_t i = 0; i < w.n; i++)
        free(w.v[i]);
    free(w.v);
    return rc;
}
