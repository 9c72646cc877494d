/*
 * validate_proxyconfig.c - istiod's ProxyConfig rules.
 *
 * A port of ValidateProxyConfig (pkg/config/validation): the workload
 * selector (key and value rules are the CRD's, checked by the decoder; an
 * empty selector is a warning) and the concurrency floor. The schema also
 * bounds concurrency at 0; istiod's own wording is reported as well because
 * that is the message users of `istioctl validate` know.
 *
 * environmentVariables: values are bounded by the schema (2048 characters);
 * istiod does not check the names, but they become the proxy container's
 * environment, so a name Kubernetes would refuse (empty, '=', not printable
 * ASCII) is an error here (keel_vcheck_env_names).
 */
#include "config/validate.h"

#include "config/validate_common.h"

void keel_validate_proxy_config(struct keel_vctx *v, const struct keel_proxy_config *s)
{
    const struct keel_obj *o = &s->_o;
    keel_vcheck_workload_selector(v, o, "selector", s->selector);
    if (keel_obj_has(o, "concurrency") && s->concurrency < 0)
        keel_verr(v, o, "concurrency", "concurrency must be greater than or equal to 0");
    keel_vcheck_env_names(v, o, "environmentVariables", s->environment_variables, s->n_environment_variables);
}
