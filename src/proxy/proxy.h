/*
 * proxy.h - `keel proxy`: the data plane (Envoy + pilot-agent in Istio).
 *
 * keel_proxy_run() reads a config folder, builds the snapshot for this proxy
 * (a gateway selected by labels, or a workload's sidecar), starts N worker
 * threads that serve it, the admin API on the main thread, and watches the
 * folder: a change is validated and compiled on the main thread, then
 * published to the workers with one pointer swap per worker. A config that
 * fails validation is never applied; the last good one keeps serving and
 * the error is logged and shown on /config_dump. SIGTERM drains: listeners
 * close, in-flight requests finish (up to the drain time), then exit.
 */
#ifndef KEEL_PROXY_PROXY_H
#define KEEL_PROXY_PROXY_H

#include <stdbool.h>
#include <stddef.h>

struct keel_kv_str;

enum keel_proxy_mode {
    KEEL_PROXY_MODE_ROUTER,  /* gateway: serves the Gateways whose selector matches its labels */
    KEEL_PROXY_MODE_SIDECAR, /* one workload's outbound (and inbound) traffic */
};

struct keel_proxy_options {
    enum keel_proxy_mode mode;
    const char *config_dir;      /* folder (or file) of Istio YAML */
    const char *ns;              /* proxy namespace ("istio-system" for routers by default) */
    struct keel_kv_str *labels;  /* proxy labels */
    size_t n_labels;
    const char *workload;        /* NAME.NAMESPACE of a WorkloadEntry/Pod (sidecar), or NULL */
    const char *service_account; /* sidecar identity */
    const char *admin_addr;      /* "127.0.0.1:15000" */
    const char *outbound_addr;   /* sidecar outbound listener, "127.0.0.1:15001" */
    const char *inbound_addr;    /* sidecar inbound address, "127.0.0.1:15006" (docs/proxy.md "Inbound"), or NULL */
    unsigned concurrency;        /* worker threads; 0 = ProxyConfig's, else the number of CPUs */
    unsigned drain_seconds;      /* SIGTERM drain time; 0 = exit once listeners close (the CLI's default is 5,
                                    Istio's terminationDrainDuration) */
    bool watch;                  /* reload when the config folder changes (default true) */
    const char *dns_server;      /* "IP:PORT[,IP:PORT...]" for DNS endpoints, or NULL: /etc/resolv.conf
                                    (/etc/hosts is read either way) */
    const char *locality;        /* "region/zone/subzone" of the proxy (locality load balancing), or NULL: from the
                                    WorkloadEntry or the topology labels */
};

/* Runs the proxy until SIGTERM/SIGINT (or /quitquitquit). Returns the process exit status. */
int keel_proxy_run(const struct keel_proxy_options *opt);

/* `keel proxy wait`: polls admin /ready until it answers 200 or timeout_s passes. Returns 0 when ready. */
int keel_proxy_wait(const char *admin_addr, unsigned timeout_s);

#endif
