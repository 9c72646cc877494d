/*
 * runtime.c - the proxy's main thread: config, workers, admin, signals.
 *
 * Life of a config change:
 *
 *   inotify event ─► debounce (100 ms) ─► load the folder into a fresh
 *   loadset ─► any invalid resource? keep serving the last good config, log
 *   the errors, show them on /config_dump ─► else build the store and the
 *   snapshot for this proxy ─► broadcast to every worker, which swaps its
 *   snapshot pointer (taking a reference) and reconciles its listeners.
 *
 * Requests in flight keep the snapshot they started with (they hold a
 * reference); the old snapshot is freed when its last request ends. Nothing
 * on the request path takes a lock. Each broadcast carries its own
 * references (struct publication), so a worker never reads rt->snap while
 * the main thread may be replacing it.
 *
 * DNS names (ServiceEntry resolution DNS / DNS_ROUND_ROBIN): the snapshot is
 * compiled with the addresses the DNS table (dnscache.c) knows now and
 * published at once, never waiting for DNS; the table is then told which
 * names the snapshot needs. When an answer changes a name's addresses, the
 * same store is compiled again with the new answers and published the same
 * way. /ready waits for the first answers (as Envoy's clusters warm up).
 *
 * ProxyConfig (config/proxyconfig.h) is resolved at every load and shown on
 * /config_dump; its concurrency sets the worker count at start when
 * --concurrency is not given. Workers are not added or removed live: a
 * changed concurrency is logged and reported as restartPending, as Envoy
 * needs a restart for it too. Its environmentVariables are put in this
 * process's environment (setenv) once, after the first load and before any
 * worker thread exists (the DNS resolver, set up before, starts no thread);
 * the ISTIO_META_* variables of the environment then are the node metadata
 * (as pilot-agent's bootstrap reads them). A later change of the variables is
 * logged and reported as restartPending too: as in Istio, they are the proxy
 * container's environment and a change needs a restart.
 *
 * Shutdown: SIGTERM/SIGINT (or POST /quitquitquit) closes every listener,
 * lets in-flight requests finish for up to the drain time, then stops the
 * workers and exits 0.
 */
#include "proxy/proxy_int.h"

#include "base/arena.h"
#include "base/err.h"
#include "base/log.h"
#include "config/load.h"
#include "config/proxyconfig.h"
#include "config/store.h"
#include "net/dns.h"
#include "net/worker.h"
#include "proxy/admin.h"
#include "proxy/dfp.h"
#include "proxy/dnscache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEBOUNCE_MS 100
#define ISTIO_META_PREFIX "ISTIO_META_"

extern char **environ;

struct keel_runtime {
    struct keel_proxy_options opt;
    struct keel_loop *loop;
    struct keel_workers *ws;
    struct keel_pworker **pws;
    unsigned npw;
    struct keel_stats_shard **shards;
    /* the config being served */
    struct keel_loadset *ls;
    struct keel_store *store;
    struct keel_snapshot *snap;
    struct keel_logcfg *log;
    struct keel_secretset *secrets;
    struct keel_proxy_identity id;
    struct keel_arena *id_arena;
    char *last_error; /* why the last reload was refused, or NULL */
    uint64_t reloads, reload_failures;
    int64_t started_unix;
    /* watch */
    int ino;
    struct keel_io ino_io;
    struct keel_timer debounce;
    /* signals */
    int sigfd;
    struct keel_io sig_io;
    struct keel_timer drain;
    struct keel_timer drain_poll;
    struct keel_admin *admin;
    bool draining;
    int exit_code;
    /* DNS: the resolver, the names table, and the recompile it triggers */
    struct keel_dns *dns;
    struct keel_dnscache *dnscache;
    struct keel_timer dns_rebuild;
    uint64_t dns_updates; /* snapshots recompiled for new DNS answers */
    /* ProxyConfig (config/proxyconfig.h) of the config being served: its arena lives as long as rt->store */
    struct keel_proxyconfig pc;
    struct keel_arena *pc_arena;
    char workers_from[160]; /* what set the worker count at start (a copy: pc_arena changes at every reload) */
    /* set once at start (apply_env), main thread: the ProxyConfig environment variables this process set (sorted
     * by name) and the node metadata (ISTIO_META_* of the environment then, prefix removed, sorted) */
    struct keel_arena *env_arena;
    struct keel_kv_str *env_applied;
    size_t n_env_applied;
    struct keel_kv_str *node_meta;
    size_t n_node_meta;
    /* upstream states shared by the workers (outlier.c), and the proxy's locality (docs/proxy.md) */
    struct keel_upstates *upstates;
    struct keel_upset *upset;
    char *locality;
};

const struct keel_proxy_options *keel_runtime_options(const struct keel_runtime *rt)
{
    return &rt->opt;
}

/* ---- access-log sinks ---------------------------------------------------------------------------------------- */

static struct keel_logcfg *logcfg_ref(struct keel_logcfg *c)
{
    if (c)
        atomic_fetch_add(&c->refs, 1);
    return c;
}

void keel_logcfg_unref(struct keel_logcfg *c)
{
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    keel_accesslog_format_free(c->format);
    if (c->fd > 2)
        close(c->fd);
    free(c);
}

/* Istio's mesh-wide access log: accessLogFile/Format/Encoding of the mesh ConfigMap. */
static struct keel_logcfg *logcfg_from_store(const struct keel_store *store, const char *root_ns)
{
    struct keel_logcfg *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    atomic_init(&c->refs, 1);
    c->fd = -1;
    const struct keel_resource *r = keel_store_get(store, KEEL_KIND_CONFIG_MAP, root_ns, "istio");
    const struct keel_mesh_config *m = r ? r->mesh : NULL;
    if (!m || !m->access_log_file || !*m->access_log_file)
        return c;
    const char *err = NULL;
    bool json = m->access_log_encoding == KEEL_MESH_CONFIG_ACCESS_LOG_ENCODING_JSON;
    c->format = keel_accesslog_format_new(m->access_log_format, json, &err);
    if (!c->format) {
        keel_log(KEEL_LOG_ERROR, "accessLogFormat: %s; access logging off", err ? err : "invalid format");
        return c;
    }
    if (strcmp(m->access_log_file, "/dev/stdout") == 0)
        c->fd = STDOUT_FILENO;
    else if (strcmp(m->access_log_file, "/dev/stderr") == 0)
        c->fd = STDERR_FILENO;
    else
        c->fd = open(m->access_log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (c->fd < 0)
        keel_log(KEEL_LOG_ERROR, "cannot open accessLogFile %s: %s", m->access_log_file, strerror(errno));
    return c;
}

/* ---- TLS secrets ----------------------------------------------------------------------------------------------- */

static struct keel_secretset *secretset_ref(struct keel_secretset *s)
{
    if (s)
        atomic_fetch_add(&s->refs, 1);
    return s;
}

void keel_secretset_unref(struct keel_secretset *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    keel_arena_free(s->arena);
    free(s);
}

const struct keel_secret *keel_secretset_find(const struct keel_secretset *s, const char *name)
{
    for (size_t i = 0; s && i < s->n; i++)
        if (strcmp(s->items[i].name, name) == 0)
            return &s->items[i];
    return NULL;
}

/* Secrets value: data (base64) or stringData (plain). */
static bool secret_value(struct keel_arena *a, const struct keel_secret_object *so, const char *key, const char **out,
                         size_t *len)
{
    for (size_t i = 0; i < so->n_string_data; i++)
        if (strcmp(so->string_data[i].key, key) == 0) {
            *out = so->string_data[i].value;
            *len = strlen(*out);
            return true;
        }
    for (size_t i = 0; i < so->n_data; i++) {
        if (strcmp(so->data[i].key, key) != 0)
            continue;
        size_t in = strlen(so->data[i].value);
        char *buf = keel_arena_xalloc(a, in + 8);
        ssize_t n = keel_tls_base64_decode(so->data[i].value, in, buf, in + 8);
        if (n < 0)
            return false;
        *out = buf;
        *len = (size_t)n;
        return true;
    }
    return false;
}

/* The TLS Secrets of the proxy's namespace (Istio: credentialName refers to the gateway's namespace). */
static struct keel_secretset *secrets_from_store(const struct keel_store *store, const char *ns)
{
    struct keel_secretset *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    atomic_init(&s->refs, 1);
    s->arena = keel_arena_new(4096);
    size_t n;
    const struct keel_resource *const *v = keel_store_list_ns(store, KEEL_KIND_SECRET, ns, &n);
    s->items = keel_arena_xalloc(s->arena, (n + 1) * sizeof(*s->items));
    for (size_t i = 0; i < n; i++) {
        const struct keel_secret_object *so = v[i]->body;
        struct keel_secret *it = &s->items[s->n];
        if (!so || !secret_value(s->arena, so, "tls.crt", &it->cert, &it->cert_len) ||
            !secret_value(s->arena, so, "tls.key", &it->key, &it->key_len))
            continue;
        it->name = keel_arena_strdup(s->arena, v[i]->meta.name);
        s->n++;
    }
    return s;
}

/* ---- publishing to workers ------------------------------------------------------------------------------------ */

/* One config generation on its way to the workers. It holds its own references, so the main thread may publish
 * again (a reload, new DNS answers) before every worker has taken this one; the last worker frees it. */
struct publication {
    atomic_uint pending; /* workers that have not taken it yet */
    struct keel_snapshot *snap;
    struct keel_logcfg *log;
    struct keel_secretset *secrets;
    struct keel_upset *upset;
};

static void publication_free(struct publication *p)
{
    keel_upset_unref(p->upset);
    keel_snapshot_unref(p->snap);
    keel_logcfg_unref(p->log);
    keel_secretset_unref(p->secrets);
    free(p);
}

static void worker_take_config(struct keel_worker *w, void *data)
{
    struct publication *p = data;
    struct keel_pworker *pw = keel_worker_data(w);
    struct keel_snapshot *old = pw->snap;
    pw->snap = keel_snapshot_ref(p->snap);
    keel_snapshot_unref(old);
    struct keel_logcfg *oldlog = pw->log;
    pw->log = logcfg_ref(p->log);
    keel_logcfg_unref(oldlog);
    struct keel_secretset *oldsec = pw->secrets;
    pw->secrets = secretset_ref(p->secrets);
    keel_secretset_unref(oldsec);
    struct keel_upset *oldup = pw->upset;
    pw->upset = keel_upset_ref(p->upset);
    keel_upset_unref(oldup);
    keel_cluster_views_forget(pw);
    keel_listeners_reconcile(pw);
    if (atomic_fetch_sub(&p->pending, 1) == 1)
        publication_free(p);
}

/* Sends rt's current snapshot, access-log sink and secrets to every worker (none yet at boot: worker_init takes
 * them). */
static void publish(struct keel_runtime *rt)
{
    /* the upstream states of the new snapshot (counters and ejections of clusters and endpoints that stay are
     * kept), built here once for every worker */
    struct keel_lb_proxy px = {rt->locality, rt->id.labels, rt->id.n_labels};
    struct keel_upset *up = rt->snap ? keel_upstates_publish(rt->upstates, rt->snap, &px) : NULL;
    keel_upset_unref(rt->upset);
    rt->upset = up;
    if (!rt->ws)
        return;
    struct publication *p = calloc(1, sizeof(*p));
    if (!p) {
        keel_log(KEEL_LOG_ERROR, "out of memory publishing config version %llu to the workers",
                 (unsigned long long)keel_snapshot_version(rt->snap));
        return;
    }
    atomic_init(&p->pending, keel_workers_count(rt->ws));
    p->snap = keel_snapshot_ref(rt->snap);
    p->log = logcfg_ref(rt->log);
    p->secrets = secretset_ref(rt->secrets);
    p->upset = keel_upset_ref(rt->upset);
    if (keel_workers_broadcast(rt->ws, worker_take_config, p) != 0) {
        keel_log(KEEL_LOG_ERROR, "out of memory publishing config version %llu to the workers",
                 (unsigned long long)keel_snapshot_version(rt->snap));
        publication_free(p);
    }
}

/* ---- DNS ---------------------------------------------------------------------------------------------------------- */

/* MeshConfig dnsRefreshRate in ms, or 0 (the table's default). */
static uint64_t dns_refresh_ms(const struct keel_store *store)
{
    const struct keel_resource *r =
        keel_store_get(store, KEEL_KIND_CONFIG_MAP, keel_store_mesh_defaults(store)->root_ns, "istio");
    const struct keel_mesh_config *m = r ? r->mesh : NULL;
    return m && m->dns_refresh_rate > 0 ? (uint64_t)m->dns_refresh_rate / 1000000u : 0;
}

/* Tells the DNS table which names rt->snap needs. */
static void dns_sync(struct keel_runtime *rt)
{
    size_t n;
    const char *const *names = keel_snapshot_dns_names(rt->snap, &n);
    keel_dnscache_sync(rt->dnscache, names, n, dns_refresh_ms(rt->store));
}

/* New answers: compile the config being served again with them (answers arriving together give one compile). */
static void on_dns_rebuild(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    struct keel_runtime *rt = t->data;
    if (!rt->store || !rt->snap || rt->draining)
        return;
    struct keel_snapshot *snap =
        keel_snapshot_build(rt->store, &rt->id, NULL, keel_dnscache_answers(rt->dnscache), NULL);
    struct keel_snapshot *old = rt->snap;
    rt->snap = snap;
    publish(rt);
    keel_snapshot_unref(old);
    rt->dns_updates++;
    keel_log(KEEL_LOG_DEBUG, "config version %llu recompiled with new DNS answers",
             (unsigned long long)keel_snapshot_version(snap));
    dns_sync(rt);
}

static void on_dns_changed(void *data)
{
    struct keel_runtime *rt = data;
    if (!keel_timer_is_active(&rt->dns_rebuild))
        keel_timer_start(rt->loop, &rt->dns_rebuild, 0, on_dns_rebuild, rt);
}

/* ---- identity ---------------------------------------------------------------------------------------------------- */

/* The proxy's own locality, "region/zone/subzone" (malloc'd), or NULL: --locality, else the locality of the
 * --workload's WorkloadEntry, else the labels topology.kubernetes.io/region, topology.kubernetes.io/zone and
 * topology.istio.io/subzone (Istio reads them from the node), else the istio-locality label ("region.zone"). */
static char *proxy_locality(const struct keel_runtime *rt, const struct keel_store *store)
{
    if (rt->opt.locality && rt->opt.locality[0])
        return strdup(rt->opt.locality);
    if (rt->opt.workload && store) {
        char name[256];
        snprintf(name, sizeof(name), "%s", rt->opt.workload);
        char *dot = strchr(name, '.');
        const char *ns = rt->opt.ns;
        if (dot) {
            *dot = '\0';
            ns = dot + 1;
        }
        const struct keel_resource *r = keel_store_get(store, KEEL_KIND_WORKLOAD_ENTRY, ns, name);
        const struct keel_workload_entry *we = r ? r->spec : NULL;
        if (we && we->locality && we->locality[0])
            return strdup(we->locality);
    }
    const char *part[3] = {NULL, NULL, NULL}, *istio = NULL;
    for (size_t i = 0; i < rt->opt.n_labels; i++) {
        const struct keel_kv_str *kv = &rt->opt.labels[i];
        if (!strcmp(kv->key, "topology.kubernetes.io/region"))
            part[0] = kv->value;
        else if (!strcmp(kv->key, "topology.kubernetes.io/zone"))
            part[1] = kv->value;
        else if (!strcmp(kv->key, "topology.istio.io/subzone"))
            part[2] = kv->value;
        else if (!strcmp(kv->key, "istio-locality"))
            istio = kv->value;
    }
    char buf[512];
    if (part[0]) {
        snprintf(buf, sizeof(buf), "%s%s%s%s%s", part[0], part[1] ? "/" : "", part[1] ? part[1] : "",
                 part[1] && part[2] ? "/" : "", part[1] && part[2] ? part[2] : "");
        return strdup(buf);
    }
    if (istio) {
        snprintf(buf, sizeof(buf), "%s", istio);
        for (char *p = buf; *p; p++)
            if (*p == '.')
                *p = '/';
        return strdup(buf);
    }
    return NULL;
}

/* A sidecar named by --workload NAME.NAMESPACE takes its labels, namespace and service account from the
 * WorkloadEntry or Pod of that name. */
static int resolve_identity(struct keel_runtime *rt, const struct keel_store *store, struct keel_arena *a)
{
    struct keel_proxy_identity *id = &rt->id;
    id->kind = rt->opt.mode == KEEL_PROXY_MODE_ROUTER ? KEEL_PROXY_ROUTER : KEEL_PROXY_SIDECAR;
    id->ns = rt->opt.ns;
    id->labels = rt->opt.labels;
    id->n_labels = rt->opt.n_labels;
    id->service_account = rt->opt.service_account;
    id->workload = rt->opt.workload;
    free(rt->locality);
    rt->locality = proxy_locality(rt, store);
    if (!rt->opt.workload || !store)
        return 0;
    char name[256];
    snprintf(name, sizeof(name), "%s", rt->opt.workload);
    char *dot = strchr(name, '.');
    const char *ns = rt->opt.ns;
    if (dot) {
        *dot = '\0';
        ns = dot + 1;
    }
    /* copied: the store and its loadset go away at the next reload */
    const struct keel_kv_str *labels = NULL;
    size_t n = 0;
    const char *sa = NULL;
    const struct keel_resource *r = keel_store_get(store, KEEL_KIND_WORKLOAD_ENTRY, ns, name);
    if (r && r->spec) {
        const struct keel_workload_entry *we = r->spec;
        labels = we->labels;
        n = we->n_labels;
        sa = we->service_account ? we->service_account : "default";
    } else if ((r = keel_store_get(store, KEEL_KIND_POD, ns, name)) != NULL) {
        labels = r->meta.labels;
        n = r->meta.n_labels;
    }
    if (r) {
        struct keel_kv_str *kv = keel_arena_xalloc(a, (n + 1) * sizeof(*kv));
        for (size_t i = 0; i < n; i++) {
            kv[i].key = keel_arena_strdup(a, labels[i].key);
            kv[i].value = keel_arena_strdup(a, labels[i].value);
        }
        id->ns = keel_arena_strdup(a, ns);
        id->labels = kv;
        id->n_labels = n;
        id->service_account = sa ? keel_arena_strdup(a, sa) : rt->opt.service_account;
        return 0;
    }
    keel_log(KEEL_LOG_ERROR, "workload %s: no WorkloadEntry or Pod named %s in namespace %s", rt->opt.workload, name,
             ns);
    return KEEL_ENOTFOUND;
}

/* Worker threads for a concurrency value: 0 = one per CPU. */
static unsigned workers_for(int64_t concurrency)
{
    if (concurrency > 0)
        return concurrency > 1024 ? 1024u : (unsigned)concurrency;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 ? (unsigned)cpus : 1u;
}

/* The environment variables whose value differs between the ones this process set at start and pc (added,
 * removed or changed), comma-separated into out (may be NULL); returns how many. Both lists are sorted by name. */
static size_t env_changes(const struct keel_runtime *rt, const struct keel_proxyconfig *pc, char *out, size_t n)
{
    size_t i = 0, j = 0, count = 0, len = 0;
    if (out && n)
        out[0] = '\0';
    while (i < rt->n_env_applied || j < pc->n_env) {
        const char *name;
        int c = i == rt->n_env_applied ? 1 : j == pc->n_env ? -1 : strcmp(rt->env_applied[i].key, pc->env[j].key);
        if (c < 0) {
            name = rt->env_applied[i++].key;
        } else if (c > 0) {
            name = pc->env[j++].key;
        } else {
            bool same = strcmp(rt->env_applied[i].value, pc->env[j].value) == 0;
            name = pc->env[j].key;
            i++, j++;
            if (same)
                continue;
        }
        if (out && len < n) {
            int w = snprintf(out + len, n - len, "%s%s", count ? ", " : "", name);
            len += w > 0 ? (size_t)w : 0;
        }
        count++;
    }
    return count;
}

static int cmp_kv_key(const void *x, const void *y)
{
    return strcmp(((const struct keel_kv_str *)x)->key, ((const struct keel_kv_str *)y)->key);
}

/* kv as a JSON object of strings. */
static void json_str_map(struct keel_buf *out, const struct keel_kv_str *kv, size_t n)
{
    keel_buf_putc(out, '{');
    for (size_t i = 0; i < n; i++) {
        if (i)
            keel_buf_putc(out, ',');
        keel_buf_json_str(out, kv[i].key);
        keel_buf_puts(out, ": ");
        keel_buf_json_str(out, kv[i].value);
    }
    keel_buf_putc(out, '}');
}

/* ProxyConfig environmentVariables into this process's environment; then the node metadata from the environment,
 * as pilot-agent's bootstrap reads it (ISTIO_META_FOO=v -> FOO: "v"). Main thread, once, before any other thread
 * exists: setenv is not safe while other threads read the environment. */
static void apply_env(struct keel_runtime *rt)
{
    const struct keel_proxyconfig *pc = &rt->pc;
    struct keel_arena *a = rt->env_arena;
    rt->env_applied = keel_arena_xalloc(a, (pc->n_env + 1) * sizeof(*rt->env_applied));
    struct keel_buf names;
    keel_buf_init(&names, 1 << 16);
    for (size_t i = 0; i < pc->n_env; i++) {
        const struct keel_proxyconfig_env *e = &pc->env[i];
        if (setenv(e->key, e->value, 1) != 0) { /* validation refuses names setenv refuses: only ENOMEM here */
            keel_log(KEEL_LOG_WARN, "environment variable %s (%s) not set: %s", e->key, e->from, strerror(errno));
            continue;
        }
        rt->env_applied[rt->n_env_applied++] =
            (struct keel_kv_str){keel_arena_strdup(a, e->key), keel_arena_strdup(a, e->value)};
        keel_buf_printf(&names, "%s%s", names.len ? ", " : "", e->key);
    }
    if (rt->n_env_applied)
        keel_log(KEEL_LOG_INFO, "environment: %zu variable%s set from ProxyConfig: %s", rt->n_env_applied,
                 rt->n_env_applied == 1 ? "" : "s", keel_buf_cstr(&names));
    keel_buf_free(&names);
    size_t n = 0, cap = 0;
    for (char **ep = environ; ep && *ep; ep++) {
        const char *eq = strchr(*ep, '=');
        size_t plen = strlen(ISTIO_META_PREFIX);
        if (!eq || strncmp(*ep, ISTIO_META_PREFIX, plen) != 0)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            struct keel_kv_str *nv = keel_arena_xalloc(a, cap * sizeof(*nv));
            if (n)
                memcpy(nv, rt->node_meta, n * sizeof(*nv));
            rt->node_meta = nv;
        }
        char *key = keel_arena_xalloc(a, (size_t)(eq - *ep) - plen + 1);
        memcpy(key, *ep + plen, (size_t)(eq - *ep) - plen);
        key[(size_t)(eq - *ep) - plen] = '\0';
        rt->node_meta[n++] = (struct keel_kv_str){key, keel_arena_strdup(a, eq + 1)};
    }
    if (n)
        qsort(rt->node_meta, n, sizeof(*rt->node_meta), cmp_kv_key);
    rt->n_node_meta = n;
}

/* Reads the config folder; publishes it when valid. Returns 0, or KEEL_EINVALID_CONFIG (kept the last good). */
static int load_config(struct keel_runtime *rt, bool first)
{
    struct keel_loadset *ls = calloc(1, sizeof(*ls));
    if (!ls)
        return KEEL_ENOMEM;
    keel_loadset_init(ls, rt->opt.ns);
    int rc = keel_load_path(ls, rt->opt.config_dir);
    if (rc < 0 || ls->invalid || ls->diags.errors) {
        /* never apply a config that fails validation */
        struct keel_buf b;
        keel_buf_init(&b, 1 << 20);
        size_t shown = 0;
        for (size_t i = 0; i < keel_diags_count(&ls->diags); i++) {
            const struct keel_diag *g = keel_diags_at(&ls->diags, i);
            if (g->sev != KEEL_SEV_ERROR)
                continue;
            keel_buf_printf(&b, "%s%s:%u:%u: %s%s%s%s%s%s", shown ? "\n" : "", g->loc.file ? g->loc.file : "",
                            g->loc.line, g->loc.col, g->kind ? g->kind : "", g->kind ? " " : "",
                            g->name ? g->name : "", g->kind ? ": " : "", g->path ? g->path : "",
                            g->path ? ": " : "");
            keel_buf_puts(&b, g->msg);
            shown++;
        }
        keel_log(KEEL_LOG_ERROR, "config %s: %zu error(s); %s:\n%s", rt->opt.config_dir, ls->diags.errors,
                 first ? "nothing to serve until it is fixed" : "keeping the last good config", keel_buf_cstr(&b));
        free(rt->last_error);
        rt->last_error = strdup(keel_buf_cstr(&b));
        keel_buf_free(&b);
        keel_loadset_free(ls);
        free(ls);
        rt->reload_failures++;
        return KEEL_EINVALID_CONFIG;
    }
    struct keel_store *store = keel_store_build(ls, NULL, rt->store);
    if (!store) {
        keel_loadset_free(ls);
        free(ls);
        return KEEL_ENOMEM;
    }
    struct keel_arena *id_arena = keel_arena_new(1024);
    if (resolve_identity(rt, store, id_arena) != 0) {
        keel_arena_free(id_arena);
        keel_store_free(store);
        keel_loadset_free(ls);
        free(ls);
        rt->reload_failures++;
        return KEEL_ENOTFOUND;
    }
    struct keel_diags warn;
    keel_diags_init(&warn);
    /* DNS endpoints get the addresses known now; new names are resolved after publishing, never before */
    struct keel_snapshot *snap = keel_snapshot_build(store, &rt->id, NULL, keel_dnscache_answers(rt->dnscache), &warn);
    keel_arena_free(rt->id_arena); /* the snapshot has its own copy of the identity */
    rt->id_arena = id_arena;
    for (size_t i = 0; i < keel_diags_count(&warn); i++) {
        const struct keel_diag *g = keel_diags_at(&warn, i);
        keel_log(KEEL_LOG_WARN, "%s%s%s: %s", g->kind ? g->kind : "config", g->name ? " " : "",
                 g->name ? g->name : "", g->msg);
    }
    keel_diags_free(&warn);
    /* ProxyConfig: read at every load, applied at start (concurrency needs a restart, as in Istio) */
    struct keel_arena *pc_arena = keel_arena_new(1024);
    struct keel_proxyconfig pc;
    const char *root_ns = keel_store_mesh_defaults(store)->root_ns;
    const struct keel_resource *mcm = keel_store_get(store, KEEL_KIND_CONFIG_MAP, root_ns, "istio");
    keel_proxyconfig_resolve(store, mcm ? mcm->mesh : NULL, rt->id.ns ? rt->id.ns : rt->opt.ns, rt->id.labels,
                             rt->id.n_labels, pc_arena, &pc);
    if (!first && !rt->opt.concurrency && pc.has_concurrency && workers_for(pc.concurrency) != rt->npw)
        keel_log(KEEL_LOG_WARN,
                 "%s sets concurrency %lld; this proxy keeps its %u worker%s until it is restarted (ProxyConfig is "
                 "applied at start, as in Istio)",
                 pc.concurrency_from, (long long)pc.concurrency, rt->npw, rt->npw == 1 ? "" : "s");
    char changed[512];
    if (!first && env_changes(rt, &pc, changed, sizeof(changed)))
        keel_log(KEEL_LOG_WARN,
                 "ProxyConfig environmentVariables changed (%s); this proxy keeps the environment it started with "
                 "until it is restarted (ProxyConfig is applied at start, as in Istio)",
                 changed);
    struct keel_arena *old_pc_arena = rt->pc_arena;
    rt->pc = pc;
    rt->pc_arena = pc_arena;
    struct keel_logcfg *log = logcfg_from_store(store, keel_store_mesh_defaults(store)->root_ns);
    struct keel_secretset *secrets = secrets_from_store(store, rt->id.ns ? rt->id.ns : rt->opt.ns);
    /* swap: the broadcast carries its own references */
    struct keel_snapshot *old_snap = rt->snap;
    struct keel_logcfg *old_log = rt->log;
    struct keel_secretset *old_secrets = rt->secrets;
    struct keel_loadset *old_ls = rt->ls;
    struct keel_store *old_store = rt->store;
    rt->snap = snap;
    rt->log = log;
    rt->secrets = secrets;
    rt->ls = ls;
    rt->store = store;
    free(rt->last_error);
    rt->last_error = NULL;
    rt->reloads++;
    publish(rt);
    keel_snapshot_unref(old_snap);
    keel_logcfg_unref(old_log);
    keel_secretset_unref(old_secrets);
    keel_store_free(old_store);
    keel_arena_free(old_pc_arena);
    if (old_ls) {
        keel_loadset_free(old_ls);
        free(old_ls);
    }
    keel_log(KEEL_LOG_INFO, "config version %llu applied (%zu resources)",
             (unsigned long long)keel_snapshot_version(snap), keel_loadset_count(ls));
    dns_sync(rt);
    return 0;
}

/* ---- watching the folder --------------------------------------------------------------------------------------- */

static void add_watches(struct keel_runtime *rt, const char *path, int depth)
{
    if (depth > 16)
        return;
    uint32_t mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_DELETE_SELF;
    if (inotify_add_watch(rt->ino, path, mask) < 0)
        return;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return;
    /* watch sub-folders too: the loader reads them recursively */
    struct dirent **list = NULL;
    int n = scandir(path, &list, NULL, alphasort);
    for (int i = 0; i < n; i++) {
        if (list[i]->d_name[0] != '.') {
            char sub[4096];
            snprintf(sub, sizeof(sub), "%s/%s", path, list[i]->d_name);
            struct stat s2;
            if (stat(sub, &s2) == 0 && S_ISDIR(s2.st_mode))
                add_watches(rt, sub, depth + 1);
        }
        free(list[i]);
    }
    free(list);
}

static void on_debounce(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    struct keel_runtime *rt = t->data;
    /* new sub-folders need watches; re-adding existing ones is harmless */
    add_watches(rt, rt->opt.config_dir, 0);
    load_config(rt, false);
}

static void on_inotify(struct keel_loop *loop, struct keel_io *io, uint32_t ev)
{
    (void)ev;
    struct keel_runtime *rt = io->data;
    char buf[8192];
    while (read(rt->ino, buf, sizeof(buf)) > 0) {
    }
    keel_timer_start(loop, &rt->debounce, DEBOUNCE_MS, on_debounce, rt);
}

/* ---- admin callbacks ------------------------------------------------------------------------------------------- */

static bool adm_ready(void *ctx)
{
    struct keel_runtime *rt = ctx;
    return rt->snap && !rt->draining && keel_dnscache_warm(rt->dnscache);
}

static int adm_stats(void *ctx, struct keel_buf *out)
{
    struct keel_runtime *rt = ctx;
    int rc = keel_stats_prometheus(rt->shards, rt->npw, out);
    if (!rc)
        rc = keel_upstates_prometheus(rt->upstates, out);
    if (rc)
        return rc;
    keel_buf_printf(out,
                    "# HELP keel_config_reloads_total config versions applied\n# TYPE keel_config_reloads_total "
                    "counter\nkeel_config_reloads_total %llu\n"
                    "# HELP keel_config_reload_failures_total config changes refused (invalid)\n# TYPE "
                    "keel_config_reload_failures_total counter\nkeel_config_reload_failures_total %llu\n",
                    (unsigned long long)rt->reloads, (unsigned long long)rt->reload_failures);
    return 0;
}

/* The effective ProxyConfig and what this process runs with (workers are set at start). */
static void proxyconfig_json(const struct keel_runtime *rt, struct keel_buf *out)
{
    const struct keel_proxyconfig *pc = &rt->pc;
    keel_buf_printf(out, "{\"workers\": %u, \"workersFrom\": ", rt->npw);
    keel_buf_json_str(out, rt->workers_from);
    keel_buf_puts(out, ", \"concurrency\": ");
    if (pc->has_concurrency)
        keel_buf_printf(out, "%lld", (long long)pc->concurrency);
    else
        keel_buf_puts(out, "null");
    keel_buf_puts(out, ", \"concurrencyFrom\": ");
    if (pc->concurrency_from)
        keel_buf_json_str(out, pc->concurrency_from);
    else
        keel_buf_puts(out, "null");
    bool workers_pending = !rt->opt.concurrency && pc->has_concurrency && workers_for(pc->concurrency) != rt->npw;
    bool env_pending = env_changes(rt, pc, NULL, 0) > 0;
    keel_buf_printf(out,
                    ", \"appliedAt\": \"start\", \"restartPending\": %s, \"restartPendingFor\": [%s%s%s], "
                    "\"environmentVariables\": {",
                    workers_pending || env_pending ? "true" : "false", workers_pending ? "\"concurrency\"" : "",
                    workers_pending && env_pending ? "," : "", env_pending ? "\"environmentVariables\"" : "");
    for (size_t i = 0; i < pc->n_env; i++) {
        if (i)
            keel_buf_putc(out, ',');
        keel_buf_json_str(out, pc->env[i].key);
        keel_buf_puts(out, ": {\"value\": ");
        keel_buf_json_str(out, pc->env[i].value);
        keel_buf_puts(out, ", \"from\": ");
        keel_buf_json_str(out, pc->env[i].from);
        keel_buf_putc(out, '}');
    }
    keel_buf_puts(out, "}, \"environmentVariablesApplied\": ");
    json_str_map(out, rt->env_applied, rt->n_env_applied);
    keel_buf_puts(out, ", \"imageType\": ");
    if (pc->image_type)
        keel_buf_json_str(out, pc->image_type);
    else
        keel_buf_puts(out, "null");
    keel_buf_puts(out, ", \"sources\": [");
    for (size_t i = 0; i < pc->n_sources; i++) {
        if (i)
            keel_buf_putc(out, ',');
        keel_buf_json_str(out, pc->sources[i]);
    }
    keel_buf_puts(out, "]}");
}

static int adm_server_info(void *ctx, struct keel_buf *out)
{
    struct keel_runtime *rt = ctx;
    keel_buf_printf(out, ",\"concurrency\":%u,\"concurrency_from\":", rt->npw);
    return keel_buf_json_str(out, rt->workers_from);
}

static int adm_config_dump(void *ctx, struct keel_buf *out)
{
    struct keel_runtime *rt = ctx;
    keel_buf_puts(out, "{\"last_error\": ");
    if (rt->last_error)
        keel_buf_json_str(out, rt->last_error);
    else
        keel_buf_puts(out, "null");
    keel_buf_printf(out, ", \"reloads\": %llu, \"reload_failures\": %llu, \"dns_updates\": %llu, \"dns\": ",
                    (unsigned long long)rt->reloads, (unsigned long long)rt->reload_failures,
                    (unsigned long long)rt->dns_updates);
    int drc = keel_dnscache_dump_json(rt->dnscache, out);
    if (drc)
        return drc;
    keel_buf_puts(out, ", \"proxyConfig\": ");
    proxyconfig_json(rt, out);
    /* the node metadata this proxy started with (ISTIO_META_* of its environment, as in Istio's bootstrap) */
    keel_buf_puts(out, ", \"node\": {\"metadata\": ");
    json_str_map(out, rt->node_meta, rt->n_node_meta);
    keel_buf_putc(out, '}');
    keel_buf_puts(out, ", \"snapshot\": ");
    if (rt->snap) {
        int rc = keel_snapshot_dump_json(rt->snap, out);
        if (rc)
            return rc;
    } else {
        keel_buf_puts(out, "null");
    }
    return keel_buf_puts(out, "}\n");
}

/* Envoy's /clusters text: per cluster its circuit breakers and outlier counts, per endpoint its health flags
 * (`/failed_outlier_check` while ejected), weight, locality and priority. */
static int adm_clusters(void *ctx, struct keel_buf *out)
{
    struct keel_runtime *rt = ctx;
    if (!rt->snap)
        return 0;
    size_t n;
    const struct keel_cluster *const *cs = keel_snapshot_clusters(rt->snap, &n);
    for (size_t i = 0; i < n; i++) {
        const struct keel_cluster *c = cs[i];
        const struct keel_upcluster *u = keel_upstates_cluster(rt->upstates, c);
        const struct keel_cluster_limits *l = &c->limits;
        keel_buf_printf(out,
                        "%s::default_priority::max_connections::%u\n%s::default_priority::max_pending_requests::%u\n"
                        "%s::default_priority::max_requests::%u\n%s::default_priority::max_retries::%u\n",
                        c->name, l->max_connections, c->name, l->max_pending_requests, c->name, l->max_requests,
                        c->name, l->max_retries);
        if (u && c->outlier.enabled)
            keel_buf_printf(out, "%s::outlier::ejections_active::%u\n", c->name,
                            (unsigned)atomic_load(&u->cs->ejected));
        for (size_t j = 0; j < c->n_endpoints; j++) {
            const struct keel_endpoint *e = &c->endpoints[j];
            bool ejected = u && u->hosts && keel_host_ejected(u->hosts[j]);
            keel_buf_printf(out, "%s::%s:%u::health_flags::%s\n%s::%s:%u::weight::%u\n", c->name, e->address, e->port,
                            ejected ? "/failed_outlier_check" : "healthy", c->name, e->address, e->port, e->weight);
            if (e->locality) { /* Envoy's region, zone, sub_zone lines */
                char loc[256];
                snprintf(loc, sizeof(loc), "%s", e->locality);
                char *zone = strchr(loc, '/'), *sub = NULL;
                if (zone) {
                    *zone++ = '\0';
                    sub = strchr(zone, '/');
                    if (sub)
                        *sub++ = '\0';
                }
                keel_buf_printf(out, "%s::%s:%u::region::%s\n%s::%s:%u::zone::%s\n%s::%s:%u::sub_zone::%s\n", c->name,
                                e->address, e->port, loc, c->name, e->address, e->port, zone ? zone : "", c->name,
                                e->address, e->port, sub ? sub : "");
            }
            if (u && u->prio)
                keel_buf_printf(out, "%s::%s:%u::priority::%u\n", c->name, e->address, e->port, (unsigned)u->prio[j]);
            if (u && u->weight && u->weight[j] != (e->weight ? e->weight : 1))
                keel_buf_printf(out, "%s::%s:%u::locality_weight::%u\n", c->name, e->address, e->port, u->weight[j]);
            if (e->hostname) /* as Envoy prints a DNS host */
                keel_buf_printf(out, "%s::%s:%u::hostname::%s\n", c->name, e->address, e->port, e->hostname);
        }
        for (size_t j = 0; j < c->n_unresolved; j++) {
            const struct keel_endpoint *e = &c->unresolved[j];
            keel_buf_printf(out, "%s::%s:%u::dns_error::%s\n", c->name, e->address, e->port,
                            e->resolve_error ? e->resolve_error : "not resolved yet");
        }
        if (c->n_endpoints == 0)
            keel_buf_printf(out, "%s::no_endpoints\n", c->name);
    }
    return 0;
}

static void start_drain(struct keel_runtime *rt);

static int adm_drain(void *ctx)
{
    start_drain(ctx);
    return 0;
}

/* ---- workers ----------------------------------------------------------------------------------------------------- */

static int worker_init(struct keel_worker *w, void *data)
{
    struct keel_runtime *rt = data;
    struct keel_pworker *pw = rt->pws[keel_worker_index(w)];
    pw->w = w;
    pw->loop = keel_worker_loop(w);
    keel_worker_set_data(w, pw);
    pw->snap = keel_snapshot_ref(rt->snap);
    pw->log = logcfg_ref(rt->log);
    pw->secrets = secretset_ref(rt->secrets);
    pw->upset = keel_upset_ref(rt->upset);
    keel_listeners_reconcile(pw);
    return 0;
}

static void worker_fini(struct keel_worker *w, void *data)
{
    (void)data;
    struct keel_pworker *pw = keel_worker_data(w);
    keel_tcp_close_all(pw); /* L4 sessions still open after the drain (tcp.c) */
    keel_downstreams_shutdown(pw, true); /* HTTP connections still open after the drain */
    keel_listeners_close(pw);
    keel_dfp_free(pw); /* the worker's per-request resolver (dfp.c), on its own thread while its loop exists */
    keel_upstream_state_free(pw);
    keel_snapshot_unref(pw->snap);
    pw->snap = NULL;
    keel_logcfg_unref(pw->log);
    pw->log = NULL;
    keel_secretset_unref(pw->secrets);
    pw->secrets = NULL;
    keel_upset_unref(pw->upset);
    pw->upset = NULL;
    keel_buf_free(&pw->logline);
    keel_stream_cache_free(pw);
}

static void worker_drain(struct keel_worker *w, void *data)
{
    (void)data;
    struct keel_pworker *pw = keel_worker_data(w);
    pw->draining = true;
    keel_listeners_close(pw);
    keel_upstream_pools_close(pw);
    keel_downstreams_shutdown(pw, false); /* idle keep-alive connections close now, busy ones after their request */
}

/* ---- signals and drain ------------------------------------------------------------------------------------------ */

static void on_drain_done(struct keel_loop *loop, struct keel_timer *t)
{
    (void)t;
    keel_loop_stop(loop);
}

static void on_drain_poll(struct keel_loop *loop, struct keel_timer *t);

static void start_drain(struct keel_runtime *rt)
{
    if (rt->draining)
        return;
    rt->draining = true;
    keel_log(KEEL_LOG_INFO, "draining: listeners closed, in-flight requests get up to %us", rt->opt.drain_seconds);
    keel_workers_broadcast(rt->ws, worker_drain, rt);
    keel_timer_start(rt->loop, &rt->drain, (uint64_t)rt->opt.drain_seconds * 1000, on_drain_done, rt);
    keel_timer_start(rt->loop, &rt->drain_poll, 50, on_drain_poll, rt);
}

/* ends the drain early once no worker has an open downstream connection */
static void on_drain_poll(struct keel_loop *loop, struct keel_timer *t)
{
    struct keel_runtime *rt = t->data;
    uint64_t active = keel_stats_sum(rt->shards, rt->npw, KEEL_STAT_DOWNSTREAM_RQ_ACTIVE);
    active += keel_stats_sum(rt->shards, rt->npw, KEEL_STAT_TCP_DOWNSTREAM_CX_ACTIVE); /* open TCP sessions too */
    if (active == 0) {
        keel_loop_stop(loop);
        return;
    }
    keel_timer_start(loop, t, 50, on_drain_poll, rt);
}

static void on_signal(struct keel_loop *loop, struct keel_io *io, uint32_t ev)
{
    (void)loop;
    (void)ev;
    struct keel_runtime *rt = io->data;
    struct signalfd_siginfo si;
    while (read(rt->sigfd, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGHUP) {
            load_config(rt, false);
        } else {
            keel_log(KEEL_LOG_INFO, "signal %u received", si.ssi_signo);
            start_drain(rt);
        }
    }
}

/* ---- entry ------------------------------------------------------------------------------------------------------- */

int keel_proxy_run(const struct keel_proxy_options *opt)
{
    struct keel_runtime *rt = calloc(1, sizeof(*rt));
    if (!rt)
        return 1;
    rt->opt = *opt;
    if (!rt->opt.ns)
        rt->opt.ns = opt->mode == KEEL_PROXY_MODE_ROUTER ? "istio-system" : "default";
    if (!rt->opt.admin_addr)
        rt->opt.admin_addr = "127.0.0.1:15000";
    rt->id_arena = keel_arena_new(4096);
    rt->env_arena = keel_arena_new(1024);
    rt->started_unix = (int64_t)time(NULL);
    rt->ino = -1;
    rt->sigfd = -1;
    rt->loop = keel_loop_new();
    if (!rt->loop || !rt->id_arena || !rt->env_arena) {
        keel_log(KEEL_LOG_ERROR, "out of memory");
        return 1;
    }
    /* signals go to the main loop; worker threads block them */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    rt->sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    /* this resolver lives on the main thread's loop, for the snapshot's DNS endpoints; each worker makes its own
     * for per-request lookups (dfp.c) with the same servers, read from rt->opt */
    struct keel_dns_options dopt = {.servers = rt->opt.dns_server};
    int drc = keel_dns_new(rt->loop, &dopt, &rt->dns);
    if (drc != 0) {
        if (drc == KEEL_EINVAL)
            keel_log(KEEL_LOG_ERROR, "--dns-server %s: expected IP[:PORT][,IP[:PORT]...]", rt->opt.dns_server);
        else
            keel_log(KEEL_LOG_ERROR, "cannot start the DNS resolver: %s", keel_strerror(drc));
        return drc == KEEL_EINVAL ? 2 : 1;
    }
    rt->dnscache = keel_dnscache_new(rt->loop, rt->dns, on_dns_changed, rt);
    if (!rt->dnscache) {
        keel_log(KEEL_LOG_ERROR, "out of memory");
        return 1;
    }
    keel_timer_init(&rt->dns_rebuild);
    rt->dns_rebuild.data = rt;
    rt->upstates = keel_upstates_new(rt->loop);
    if (!rt->upstates) {
        keel_log(KEEL_LOG_ERROR, "out of memory");
        return 1;
    }
    /* a workload named on the command line must exist in the config */
    if (load_config(rt, true) == KEEL_ENOTFOUND)
        return 1;
    apply_env(rt); /* before keel_workers_start: no other thread yet */
    /* --concurrency, else the effective ProxyConfig's (0 = every CPU), else every CPU */
    unsigned n = rt->opt.concurrency;
    const char *from = "--concurrency";
    if (n == 0 && rt->pc.has_concurrency) {
        n = workers_for(rt->pc.concurrency);
        from = rt->pc.concurrency_from;
    } else if (n == 0) {
        n = workers_for(0);
        from = "CPUs";
    }
    snprintf(rt->workers_from, sizeof(rt->workers_from), "%s", from);
    rt->npw = n;
    rt->pws = calloc(n, sizeof(*rt->pws));
    rt->shards = calloc(n, sizeof(*rt->shards));
    for (unsigned i = 0; i < n; i++) {
        rt->pws[i] = calloc(1, sizeof(struct keel_pworker));
        rt->shards[i] = keel_stats_shard_new();
        if (!rt->pws[i] || !rt->shards[i]) {
            keel_log(KEEL_LOG_ERROR, "out of memory");
            return 1;
        }
        struct keel_pworker *pw = rt->pws[i];
        pw->rt = rt;
        pw->index = i;
        pw->stats = rt->shards[i];
        pw->rng = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)time(NULL) << 16) ^ ((uint64_t)i * 0x100000001B3ULL) ^
                  (uint64_t)getpid();
        keel_map_init(&pw->pools);
        keel_map_init(&pw->rr);
        keel_map_init(&pw->tls_clients);
        keel_buf_init(&pw->logline, 64 * 1024);
    }
    struct keel_workers_config wc = {.count = n, .init = worker_init, .fini = worker_fini, .data = rt};
    int rc = keel_workers_start(&wc, &rt->ws);
    if (rc != 0) {
        keel_log(KEEL_LOG_ERROR, "cannot start %u workers: %s", n, keel_strerror(rc));
        return 1;
    }
    /* admin */
    struct keel_addr aa;
    static struct keel_admin_source src;
    src = (struct keel_admin_source){.ctx = rt,
                                     .ready = adm_ready,
                                     .stats_prometheus = adm_stats,
                                     .config_dump = adm_config_dump,
                                     .clusters = adm_clusters,
                                     .drain = adm_drain,
                                     .server_info = adm_server_info};
    int arc = keel_addr_parse(rt->opt.admin_addr, &aa);
    if (arc == 0)
        arc = keel_admin_start(rt->loop, &aa, &src, &rt->admin);
    if (arc != 0) {
        keel_log(KEEL_LOG_ERROR, "cannot serve the admin API on %s: %s", rt->opt.admin_addr, keel_strerror(arc));
        keel_workers_stop_join(rt->ws);
        return 1;
    }
    keel_log(KEEL_LOG_INFO, "admin on %s, %u worker%s (%s)", rt->opt.admin_addr, n, n == 1 ? "" : "s",
             rt->workers_from);
    if (rt->sigfd >= 0) {
        keel_io_init(&rt->sig_io, rt->sigfd, on_signal, rt);
        keel_io_start(rt->loop, &rt->sig_io, KEEL_IO_READ);
    }
    keel_timer_init(&rt->debounce);
    rt->debounce.data = rt;
    keel_timer_init(&rt->drain);
    keel_timer_init(&rt->drain_poll);
    if (rt->opt.watch) {
        rt->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (rt->ino >= 0) {
            add_watches(rt, rt->opt.config_dir, 0);
            keel_io_init(&rt->ino_io, rt->ino, on_inotify, rt);
            keel_io_start(rt->loop, &rt->ino_io, KEEL_IO_READ);
        }
    }
    keel_loop_run(rt->loop);
    /* shutdown */
    if (rt->ino >= 0) {
        keel_io_stop(&rt->ino_io);
        close(rt->ino);
    }
    keel_timer_stop(&rt->debounce);
    keel_timer_stop(&rt->drain);
    keel_timer_stop(&rt->drain_poll);
    keel_timer_stop(&rt->dns_rebuild);
    keel_admin_stop(rt->admin);
    keel_workers_stop_join(rt->ws);
    keel_log(KEEL_LOG_INFO, "stopped");
    int code = rt->exit_code;
    for (unsigned i = 0; i < rt->npw; i++) {
        keel_stats_shard_free(rt->shards[i]);
        free(rt->pws[i]);
    }
    free(rt->shards);
    free(rt->pws);
    keel_upset_unref(rt->upset);
    keel_upstates_free(rt->upstates);
    free(rt->locality);
    keel_snapshot_unref(rt->snap);
    keel_logcfg_unref(rt->log);
    keel_secretset_unref(rt->secrets);
    keel_store_free(rt->store);
    if (rt->ls) {
        keel_loadset_free(rt->ls);
        free(rt->ls);
    }
    if (rt->sigfd >= 0) {
        keel_io_stop(&rt->sig_io);
        close(rt->sigfd);
    }
    keel_dnscache_free(rt->dnscache);
    keel_dns_free(rt->dns);
    keel_loop_free(rt->loop);
    keel_arena_free(rt->id_arena);
    keel_arena_free(rt->pc_arena);
    keel_arena_free(rt->env_arena);
    free(rt->last_error);
    free(rt);
    return code;
}
