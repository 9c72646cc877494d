/*
 * plan.h - `keel run`: from a valid folder of Istio YAML to the processes of a local mesh.
 *
 * A plan says which processes make the mesh and on which ports:
 *   - one router (`keel proxy router`) per distinct Gateway selector;
 *   - one sidecar (`keel proxy sidecar --workload NAME.NS`) per local workload: a WorkloadEntry whose
 *     address is a loopback address (127.0.0.0/8, ::1, localhost), or a Deployment (which keel run turns
 *     into a WorkloadEntry of the same name);
 *   - the workload's own process when it says how: the annotation `keel.dev/command` (a /bin/sh command
 *     line; `keel` in it is this keel binary). `keel.dev/sidecar: "false"` runs the app without a sidecar
 *     (a stand-in for something outside the mesh).
 *
 * Ports (docs/run.md): gateway server ports stay as written when they are 1024 or more and no other
 * router wants them; otherwise (or with gateway_ports_from_base) they come from the base. Every other
 * port (admin, outbound, and one app port per distinct endpoint port of a workload) comes from the base,
 * in a stable order, skipping ports already handed out or held by another program at the time. A keel_run_ports table
 * keeps assignments across reloads, so a process that did not change keeps its ports.
 *
 * The effective config (keel_run_render) is the user's folder with two changes: each local workload's
 * WorkloadEntry document is blanked (lines kept, so line numbers still match the user's files) and
 * re-emitted in `keel-run-workloads.yaml` with its ports rewritten to the assigned ones; and gateway
 * server ports that had to move are spliced in place. The user's files stay ordinary Istio YAML with
 * their real port numbers.
 *
 * Proxies (routers and sidecars) carry their effective ProxyConfig `environmentVariables` (config/proxyconfig.h,
 * for the proxy's namespace and labels): keel run puts them in the proxy's environment at exec, as Istio's
 * injection puts them in the istio-proxy container; the app does not get them. They are not part of the key: as in
 * Istio, a change applies when the proxy restarts, not by restarting it.
 *
 * Memory: a plan owns one arena (keel_run_plan_free). Not thread-safe.
 */
#ifndef KEEL_RUN_PLAN_H
#define KEEL_RUN_PLAN_H

#include "base/diag.h"

#include <stdbool.h>
#include <stddef.h>

struct keel_arena;
struct keel_loadset;
struct keel_store;

#define KEEL_RUN_ANNOTATION_COMMAND "keel.dev/command"
#define KEEL_RUN_ANNOTATION_SIDECAR "keel.dev/sidecar"
#define KEEL_RUN_GENERATED_FILE "keel-run-workloads.yaml"
#define KEEL_RUN_MAX_APP_PORTS 16

/*
 * INBOUND THROUGH THE SIDECAR - the one switch (on).
 * Each workload with a sidecar gets a loopback address of its own (127.0.0.2, 127.0.0.3, ...): it is the
 * workload's effective WorkloadEntry address and its sidecar's `--inbound` IP, while the app listens on
 * 127.0.0.1 at its assigned ports. Other proxies dial ADDRESS:PORT, which is the sidecar's inbound listener
 * for that port (docs/proxy.md, "Inbound"); the sidecar forwards to 127.0.0.1:PORT. So traffic crosses both
 * sidecars, as with iptables capture. Set to 0 to send callers to the app directly.
 */
#define KEEL_RUN_INBOUND_VIA_SIDECAR 1
#define KEEL_RUN_MAX_INBOUND_IPS 250 /* 127.0.0.2 .. 127.0.0.251 */

enum keel_run_role {
    KEEL_RUN_ROUTER,
    KEEL_RUN_SIDECAR,
    KEEL_RUN_APP,
};

/* A proxy environment variable (ProxyConfig environmentVariables, names checked by validation). */
struct keel_run_env {
    const char *name, *value;
};

struct keel_run_app_port {
    const char *name;  /* service port name ("http") */
    unsigned original; /* the port the user's YAML gives the endpoint */
    unsigned assigned; /* where the app listens on this machine */
};

/* One process to supervise. Strings live in the plan's arena. */
struct keel_run_proc {
    const char *name; /* unique per role: "ingressgateway", "reviews-v1" */
    enum keel_run_role role;
    const char *ns;
    const char *labels;   /* router: its selector "k=v,k2=v2" */
    const char *workload; /* sidecar: NAME.NS */
    const char *command;  /* app: the shell command line */
    const char *service_name, *version;
    unsigned admin, outbound, inbound; /* proxies */
    char inbound_ip[16];               /* sidecar: the workload's own loopback address (KEEL_RUN_INBOUND_VIA_SIDECAR) */
    struct keel_run_app_port app_ports[KEEL_RUN_MAX_APP_PORTS];
    size_t n_app_ports;
    bool has_sidecar; /* app: its sidecar exists (http_proxy points at outbound) */
    unsigned outbound_of_sidecar;
    const struct keel_run_env *env; /* proxies: ProxyConfig environmentVariables, sorted by name */
    size_t n_env;
    const char *ports; /* for people: "admin 20000, outbound 20001" */
    const char *key;   /* identity across reloads: a different key means stop the old, start the new */
};

/* A port the mesh will listen on, and who wants it (for the bind check and the port list). */
struct keel_run_port_use {
    unsigned port;
    bool from_base;
    const char *who; /* "gateway ingressgateway: Gateway bookinfo/bookinfo-gateway server http (port 8080)" */
};

/* A text edit of one user file for the effective config. */
struct keel_run_edit {
    const char *file;       /* as the loader named it (DIR/rel) */
    unsigned line, col;     /* 1-based */
    unsigned blank_to_line; /* >0: blank lines line..blank_to_line instead of splicing */
    size_t old_len;
    const char *text;
};

struct keel_run_plan {
    struct keel_arena *arena;
    struct keel_run_proc *procs;
    size_t n_procs;
    struct keel_run_port_use *uses;
    size_t n_uses;
    struct keel_run_edit *edits;
    size_t n_edits;
    const char *generated;   /* content of KEEL_RUN_GENERATED_FILE */
    struct keel_diags diags; /* problems that keep this folder from running (file:line:col when known) */
};

/* Port assignments kept across reloads (key -> port). */
struct keel_run_ports {
    unsigned base;
    size_t n, cap;
    struct {
        char *key;
        unsigned port;
    } * v;
};

void keel_run_ports_init(struct keel_run_ports *p, unsigned base);
void keel_run_ports_free(struct keel_run_ports *p);

struct keel_run_plan_options {
    const char *self; /* path of this keel binary (for `keel` in commands and the proxies) */
    bool gateway_ports_from_base;
};

/* Builds the plan for a VALID loadset and its store. Never NULL (aborts on OOM); problems that make
 * the folder unrunnable are in plan->diags (errors), and then the plan must not be started. */
struct keel_run_plan *keel_run_plan_build(const struct keel_loadset *ls, const struct keel_store *store,
                                          struct keel_run_ports *ports, const struct keel_run_plan_options *o);
void keel_run_plan_free(struct keel_run_plan *plan);

/* Writes the effective config of plan for the user's folder src_dir into out_dir (created if needed):
 * each YAML/JSON file (.yaml, .yml, .json) of src_dir (recursively, hidden entries skipped, as the loader reads)
 * with the plan's edits, plus KEEL_RUN_GENERATED_FILE; files that are gone are removed. Each file is
 * written under a temporary name and renamed, so the proxies watching out_dir never read half a file.
 * Returns 0 or a negative KEEL_E* code (errno-style message in err). */
int keel_run_render(const struct keel_run_plan *plan, const char *src_dir, const char *out_dir, char *err,
                    size_t errlen);

/* Is the port free to listen on (0.0.0.0 and 127.0.0.1)? */
bool keel_run_port_free(unsigned port);

const char *keel_run_role_name(enum keel_run_role r);

#endif
