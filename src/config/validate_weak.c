/* validate_weak.c - TEMPORARY placeholders until every validator file lands; delete me. */
#include "config/validate.h"
#include "config/validate_common.h"
#include <string.h>
#include <ctype.h>
__attribute__((weak)) void keel_validate_virtual_service(struct keel_vctx *v, const struct keel_virtual_service *s){(void)v;(void)s;}
__attribute__((weak)) void keel_validate_gateway(struct keel_vctx *v, const struct keel_gateway *s){(void)v;(void)s;}
__attribute__((weak)) void keel_validate_destination_rule(struct keel_vctx *v, const struct keel_destination_rule *s){(void)v;(void)s;}
__attribute__((weak)) void keel_validate_service_entry(struct keel_vctx *v, const struct keel_service_entry *s){(void)v;(void)s;}
__attribute__((weak)) void keel_validate_sidecar(struct keel_vctx *v, const struct keel_sidecar *s){(void)v;(void)s;}
__attribute__((weak)) void keel_validate_envoy_filter(struct keel_vctx *v, const struct keel_envoy_filter *s){(void)v;(void)s;}
__attribute__((weak)) void keel_validate_workload_entry(struct keel_vctx *v, const struct keel_workload_entry *s){(void)v;(void)s;}
__attribute__((weak)) void keel_validate_workload_group(struct keel_vctx *v, const struct keel_workload_group *s){(void)v;(void)s;}
__attribute__((weak)) void keel_validate_proxy_config(struct keel_vctx *v, const struct keel_proxy_config *s){(void)v;(void)s;}
__attribute__((weak)) void keel_validate_authorization_policy(struct keel_vctx *v, const struct keel_authorization_policy *s){(void)v;(void)s;}
__attribute__((weak)) void keel_validate_peer_authentication(struct keel_vctx *v, const struct keel_peer_authentication *s){(void)v;(void)s;}
__attribute__((weak)) void keel_validate_request_authentication(struct keel_vctx *v, const struct keel_request_authentication *s){(void)v;(void)s;}
__attribute__((weak)) void keel_validate_telemetry(struct keel_vctx *v, const struct keel_telemetry *s){(void)v;(void)s;}
__attribute__((weak)) void keel_validate_wasm_plugin(struct keel_vctx *v, const struct keel_wasm_plugin *s){(void)v;(void)s;}
__attribute__((weak)) void keel_validate_traffic_extension(struct keel_vctx *v, const struct keel_traffic_extension *s){(void)v;(void)s;}
__attribute__((weak)) void keel_validate_mesh_config(struct keel_vctx *v, const struct keel_mesh_config *s){(void)v;(void)s;}
__attribute__((weak)) bool keel_valid_dns1123_label(const char *s){size_t n=strlen(s); if(!n||n>63)return false; for(size_t i=0;i<n;i++){char c=s[i]; if(!(islower((unsigned char)c)||isdigit((unsigned char)c)||(c=='-'&&i&&i<n-1)))return false;} return true;}
__attribute__((weak)) bool keel_valid_dns1123_subdomain(const char *s){return *s && strlen(s)<=253;}
__attribute__((weak)) bool keel_valid_label_key(const char *s){return *s;}
__attribute__((weak)) bool keel_valid_label_value(const char *s){(void)s;return true;}
__attribute__((weak)) const char *keel_vns(const struct keel_vctx *v){return v->res->ns;}
