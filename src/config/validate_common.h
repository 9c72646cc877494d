/*
 * validate_common.h - checks shared by several kinds' validators.
 *
 * Pure predicates over strings and numbers, each mirroring one function of
 * istiod's pkg/config/validation (named in the comment). Functions named
 * keel_check_* return NULL when the value is fine, or an error message in a
 * static or caller-provided buffer (never NULL for a failure); functions
 * named keel_valid_* return bool. keel_vcheck_* report through a keel_vctx.
 */
#ifndef KEEL_CONFIG_VALIDATE_COMMON_H
#define KEEL_CONFIG_VALIDATE_COMMON_H

#include "config/validate.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEEL_MSG_MAX 256

/* DNS-1123 label: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 chars. */
bool keel_valid_dns1123_label(const char *s);
/* DNS-1123 subdomain: labels joined by dots, at most 253 chars, lower case. */
bool keel_valid_dns1123_subdomain(const char *s);
/* Kubernetes label key ([prefix/]name) and value. */
bool keel_valid_label_key(const char *s);
bool keel_valid_label_value(const char *s);

/* ValidateFQDN / ValidateWildcardDomain / ValidateDNS1123Labels. */
const char *keel_check_fqdn(const char *host, char *buf, size_t n);
const char *keel_check_wildcard_domain(const char *host, char *buf, size_t n);

/* IP addresses and CIDR prefixes (IPv4 and IPv6). */
bool keel_valid_ip(const char *s);
bool keel_valid_cidr(const char *s); /* "10.0.0.0/8"; a bare IP is not a CIDR */
bool keel_valid_ip_or_cidr(const char *s);

/* ValidatePort: 1..65535 ("port number %d must be in the range 1..65535"). */
const char *keel_check_port(int64_t port, char *buf, size_t n);
/* ValidatePortName: a DNS-1123 label. */
bool keel_valid_port_name(const char *name);
/* Protocol names Istio parses (case-insensitive), e.g. HTTP, TLS, GRPC-WEB. */
bool keel_valid_protocol(const char *proto);

/* ValidateDuration: >= 1ms and whole milliseconds. */
const char *keel_check_duration(int64_t ns);
/* ValidatePercent-style: 0 or [0.0001, 100]. */
bool keel_valid_fraction_percent(double v);

/* RE2-compatible regex that compiles (PCRE2, minus the constructs RE2 lacks).
 * The message is Go's: "error parsing regexp: <what>: `<where>`". */
const char *keel_check_regex(const char *re, char *buf, size_t n);

/* ValidateHTTPHeaderName (RFC 7230 token characters) / ValidateStrictHTTPHeaderName
 * ([-_A-Za-z0-9]+) / ValidateHTTPHeaderValue (no control characters, Envoy's
 * %VAR% formatter syntax; messages start "header value configuration"). */
bool keel_valid_header_name(const char *name);
bool keel_valid_strict_header_name(const char *name);
const char *keel_check_header_value(const char *value, char *buf, size_t n);

/* validateExportTo: reports under field `field` of o. */
void keel_vcheck_export_to(struct keel_vctx *v, const struct keel_obj *o, const char *field, const char *const *list,
                           size_t n, bool is_service_entry, bool dr_with_selector);

/* A map of label selectors (matchLabels / labels): valid keys and values. */
void keel_vcheck_labels(struct keel_vctx *v, const struct keel_obj *o, const char *field, const struct keel_kv_str *kv,
                        size_t n);

/* The namespace Istio would use for this resource ("default" if unset). */
const char *keel_vns(const struct keel_vctx *v);

/* ---- additions: more of istiod's helpers, for every kind's validator ---- */

/* labels.IsDNS1123Label as istiod spells it: like keel_valid_dns1123_label()
 * but upper case letters are allowed. Use it wherever istiod calls
 * IsDNS1123Label (port, subset, gateway names, exportTo namespaces...). */
bool keel_valid_istio_dns1123_label(const char *s);
/* labels.IsWildcardDNS1123Label: "*", "*foo", "*-foo" or a DNS-1123 label. */
bool keel_valid_wildcard_dns1123_label(const char *s);
/* labels.Instance.Validate for one entry: "invalid tag key: %q" / "invalid tag
 * value: %q" (istiod's rules: no length limit on values). */
const char *keel_check_tag(const char *key, const char *value, char *buf, size_t n);

/* ValidatePartialWildCard: "partial wildcard %q not allowed". */
const char *keel_check_partial_wildcard(const char *host, char *buf, size_t n);
/* ValidateIPAddress ("%s is not a valid IP") and ValidateIPSubnet (also
 * "%s is not a valid CIDR block" when the value has one '/'). */
const char *keel_check_ip_address(const char *s, char *buf, size_t n);
const char *keel_check_ip_subnet(const char *s, char *buf, size_t n);
/* ValidateUnixAddress, on the path after "unix://". */
const char *keel_check_unix_address(const char *addr, char *buf, size_t n);

/* ValidateNamespaceSlashWildcardHostname for item i of list field `field` of o
 * (Gateway servers[].hosts with is_gateway, Sidecar egress[].hosts without);
 * reports every problem. gateway_semantics: converted from Gateway API. */
void keel_vcheck_ns_slash_host(struct keel_vctx *v, const struct keel_obj *o, const char *field, size_t i,
                               const char *host, bool is_gateway, bool gateway_semantics);

/* ValidateProbeHeaderName: [-A-Za-z0-9]+ (WorkloadGroup probes). */
bool keel_valid_probe_header_name(const char *name);
/* ValidateHTTPHeaderNameOrJwtClaimRoute: a header name, an HTTP/2 pseudo
 * header (:method, :authority...) or an @request.auth.claims.x routing key. */
bool keel_valid_header_name_or_claim(const char *name);
/* jwt.ToRoutingClaim(name).Match: "@request.auth.claims.a.b" / "...[a][b]". */
bool keel_is_jwt_claim_route(const char *name);

/* security.IsValidCipherSuite / IsValidECDHCurve (Envoy/BoringSSL names). */
bool keel_valid_cipher_suite(const char *cs);
bool keel_valid_ecdh_curve(const char *curve);

/* protocol.Parse(p).IsHTTP() / IsTLS() (case-insensitive; false if unknown). */
bool keel_protocol_is_http(const char *proto);
bool keel_protocol_is_tls(const char *proto);

/* policy[0..len) is one of istiod's supportedRetryOnPolicies (5xx,
 * gateway-error, reset, ...; case-sensitive). HTTP status codes, which
 * retryOn also accepts, are the caller's to check. */
bool keel_valid_retry_on_policy(const char *policy, size_t len);

/* strconv.Atoi: an optional sign and decimal digits, all of s. Returns 0 and
 * sets *out, or KEEL_EINVAL (not a number) / KEEL_ETOOBIG (outside long long),
 * leaving *out unchanged. */
int keel_go_atoi(const char *s, long long *out);

/* Value of metadata annotation `key` of the resource being validated, or NULL. */
const char *keel_vannotation(const struct keel_vctx *v, const char *key);

/* Go's %q of s (strconv.Quote, bytes >= 0x80 kept) into buf; returns buf. */
const char *keel_quote(const char *s, char *buf, size_t n);

/* ---- metadata and policy attachment (security and telemetry kinds) ---- */

/* validateMetadata: the istio.io/dry-run and internal.istio.io annotations
 * of the resource being validated, each reported as an error at
 * metadata.annotations.<key> (v->path is restored). dry_run_action is NULL
 * for kinds that do not support dry-run, else the AuthorizationPolicy action
 * name ("ALLOW", "DENY", ...): only ALLOW and DENY accept the annotation, and
 * its value must be a Go bool. Does nothing when v->res is NULL. */
void keel_vcheck_annotations(struct keel_vctx *v, const char *dry_run_action);

/* validateWorkloadSelector: a selector without labels only warns ("workload
 * selector specified without labels") at `field` of o; sel may be NULL. */
void keel_vcheck_workload_selector(struct keel_vctx *v, const struct keel_obj *o, const char *field,
                                   const struct keel_workload_selector *sel);

/* Names of the proxy's environment variables (ProxyConfig `environmentVariables`, MeshConfig
 * `defaultConfig.proxyMetadata`): istiod's webhook does not check them, but they become environment
 * variables of the istio-proxy container, and Kubernetes refuses a container whose variable name is empty or
 * holds '=' or a character outside printable ASCII (KEP-4369); keel run and keel proxy put them in a process's
 * environment. Each bad name is an error at its key in the map `field` of o. */
void keel_vcheck_env_names(struct keel_vctx *v, const struct keel_obj *o, const char *field,
                           const struct keel_kv_str *kv, size_t n);

/* validateOneOfSelectorType, validateWorkloadSelector and
 * validatePolicyTargetReference(s) for a policy's spec: at most one of
 * selector / targetRef / targetRefs (also the CRD rule), then each reference
 * (name set, no namespace, kind one of Service, ServiceEntry, Gateway,
 * GatewayClass). prefix ("" or NULL for none) starts every error message
 * (AuthorizationPolicy's "invalid policy <name>.<ns>: "); warnings take none.
 * sel, ref and refs may be NULL; reports relative to v->path (the spec). */
void keel_vcheck_attachment(struct keel_vctx *v, const char *prefix, const struct keel_obj *spec,
                            const struct keel_workload_selector *sel, const struct keel_policy_target_ref *ref,
                            const struct keel_policy_target_ref *refs, size_t n_refs);

#endif
