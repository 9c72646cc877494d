/*
 * validate_kubernetes.c - what `istioctl validate` checks in plain Kubernetes
 * objects the mesh reads: Service port naming and Deployment telemetry labels.
 *
 * Istio picks a port's protocol from `appProtocol`, else from the port name's
 * prefix (`http`, `http-web`, `grpc`, `tcp-db`, ...); anything else falls back
 * to protocol sniffing. istioctl rejects Services whose ports follow neither
 * convention (outside the control-plane namespace), and warns about
 * Deployments whose pods lack the `app`/`version` labels (or their
 * app.kubernetes.io equivalents) that metrics and tracing are keyed on.
 */
#include "config/validate.h"
#include "config/validate_common.h"

#include <string.h>
#include <strings.h>

#define PROTOCOL_SELECTION "https://istio.io/latest/docs/ops/configuration/traffic-management/protocol-selection/"
#define DEPLOYMENT_REQUIREMENTS "https://istio.io/latest/docs/ops/deployment/application-requirements/"

/* appProtocol values Kubernetes defines for the protocols Istio understands */
static bool known_app_protocol(const char *ap)
{
    return keel_valid_protocol(ap) || strcasecmp(ap, "kubernetes.io/h2c") == 0 ||
           strcasecmp(ap, "kubernetes.io/ws") == 0 || strcasecmp(ap, "kubernetes.io/wss") == 0;
}

/* `http-web` -> `http`: the part before the first '-' must be a protocol */
static bool name_has_protocol_prefix(const char *name)
{
    char prefix[32];
    size_t n = strcspn(name, "-");
    if (n >= sizeof(prefix))
        return false;
    memcpy(prefix, name, n);
    prefix[n] = '\0';
    return keel_valid_protocol(prefix) || keel_valid_protocol(name);
}

void keel_validate_k8s_service(struct keel_vctx *v, const struct keel_service_object *svc)
{
    const struct keel_service_spec *spec = svc->spec;
    /* like istioctl: only a Service that itself says it lives in the
     * control-plane namespace is exempt */
    const char *ns = v->res->meta.namespace_;
    if (!spec || (ns && strcmp(ns, "istio-system") == 0))
        return;
    const char *name = v->res->meta.name ? v->res->meta.name : "";
    for (size_t i = 0; i < spec->n_ports; i++) {
        const struct keel_k8s_service_port *p = &spec->ports[i];
        size_t mark = keel_vpush_index(v, "ports", i);
        if (p->app_protocol) {
            if (!known_app_protocol(p->app_protocol))
                keel_verr(v, &p->_o, "appProtocol",
                          "service \"%s\" doesn't follow Istio protocol selection: appProtocol \"%s\" is not a "
                          "protocol Istio knows (HTTP, HTTP2, HTTPS, GRPC, GRPC-WEB, TCP, TLS, UDP, MONGO, REDIS, "
                          "MYSQL). See %s",
                          name, p->app_protocol, PROTOCOL_SELECTION);
        } else if (!p->name) {
            keel_verr(v, &p->_o, NULL,
                      "service \"%s\" has an unnamed port: name it <protocol>[-<suffix>] (e.g. http, grpc-api, "
                      "tcp-db) or set appProtocol. See %s",
                      name, DEPLOYMENT_REQUIREMENTS);
        } else if (!name_has_protocol_prefix(p->name)) {
            keel_verr(v, &p->_o, "name",
                      "service \"%s\" port \"%s\" does not follow the Istio naming convention <protocol>[-<suffix>] "
                      "(e.g. http, grpc-api, tcp-db); set appProtocol or rename it. See %s",
                      name, p->name, DEPLOYMENT_REQUIREMENTS);
        }
        keel_vpop(v, mark);
    }
}

static const char *label_of(const struct keel_node *labels, const char *a, const char *b)
{
    const char *s = keel_node_get_str(labels, a);
    return s ? s : keel_node_get_str(labels, b);
}

/* The API server's rule: the pod template must carry the selector's labels,
 * or the Deployment could never find its own pods. */
static void check_selector(struct keel_vctx *v, const struct keel_deployment_spec *spec, const struct keel_node *labels)
{
    if (!spec->selector)
        return; /* the API server requires one; istioctl does not look, and neither do we */
    for (size_t i = 0; i < spec->selector->n_match_labels; i++) {
        const struct keel_kv_str *kv = &spec->selector->match_labels[i];
        const char *have = keel_node_get_str(labels, kv->key);
        if (!have || strcmp(have, kv->value) != 0) {
            size_t mark = keel_vpush(v, "template");
            keel_verr(v, spec->template ? &spec->template->_o : NULL, "metadata",
                      "`selector` does not match template `labels`: the pod template has %s%s%s for label \"%s\" "
                      "but spec.selector.matchLabels wants \"%s\"",
                      have ? "\"" : "no value", have ? have : "", have ? "\"" : "", kv->key, kv->value);
            keel_vpop(v, mark);
            return;
        }
    }
}

void keel_validate_k8s_deployment(struct keel_vctx *v, const struct keel_deployment_object *dep)
{
    if (!dep->spec)
        return;
    const struct keel_deployment_template *t = dep->spec->template;
    const struct keel_node *labels = t && t->metadata ? keel_node_get(t->metadata, "labels") : NULL;
    check_selector(v, dep->spec, labels);
    if (!t)
        return;
    const char *missing = NULL;
    if (!label_of(labels, "app", "app.kubernetes.io/name"))
        missing = "app";
    else if (!label_of(labels, "version", "app.kubernetes.io/version"))
        missing = "version";
    if (missing) {
        size_t mark = keel_vpush(v, "template");
        keel_vwarn(v, &t->_o, "metadata",
                   "deployment \"%s\" may not provide Istio metrics and telemetry labels: the pod template has no "
                   "\"%s\" label (nor app.kubernetes.io/%s)",
                   v->res->meta.name ? v->res->meta.name : "", missing, strcmp(missing, "app") == 0 ? "name" : "version");
        keel_vpop(v, mark);
    }
}
