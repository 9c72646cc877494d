#!/usr/bin/env python3
"""gen_schema.py - generate Keel's typed resource model from schemas.

Inputs
  * Istio's CRDs (OpenAPI v3 + CEL), e.g. ../shared/conformance/crds/crd-all.gen.yaml
  * tools/schema/kubernetes.yaml  - the Kubernetes kinds the mesh reads, and the ones it skips
  * tools/schema/meshconfig.yaml  - MeshConfig (not a CRD; written from istio/api's protos)

Outputs (committed; never edited by hand)
  * src/config/schema_gen.h - one C struct per distinct object schema, enums, kind ids
  * src/config/schema_gen.c - the keel_msgdesc / keel_field tables that config/decode.c walks

Object schemas that are structurally identical (ignoring descriptions) become one C
type, so `http[].route[].destination` and `tcp[].route[].destination` share
`struct keel_destination`. NAMES below gives readable names to the types; any type
without an entry gets a name derived from its first path.

Usage: tools/gen_schema.py --crds CRD.yaml [--out src/config]
"""
import argparse
import collections
import hashlib
import json
import os
import re
import sys

import yaml

# first path of a type (as printed by --list) -> C name (without keel_)
NAMES = {
    "TrafficExtension": "traffic_extension",
    "TrafficExtension.lua": "traffic_extension_lua",
    "TrafficExtension.match[]": "traffic_selector",
    "TrafficExtension.match[].ports[]": "traffic_selector_port",
    "TrafficExtension.selector": "workload_selector",
    "TrafficExtension.targetRefs[]": "policy_target_ref",
    "TrafficExtension.wasm": "traffic_extension_wasm",
    "TrafficExtension.wasm.vmConfig": "wasm_vm_config",
    "TrafficExtension.wasm.vmConfig.env[]": "wasm_env_var",
    "WasmPlugin": "wasm_plugin",
    "DestinationRule": "destination_rule",
    "DestinationRule.subsets[]": "subset",
    "DestinationRule.subsets[].trafficPolicy": "traffic_policy",
    "DestinationRule.subsets[].trafficPolicy.connectionPool": "connection_pool",
    "DestinationRule.subsets[].trafficPolicy.connectionPool.http": "conn_pool_http",
    "DestinationRule.subsets[].trafficPolicy.connectionPool.http.http2KeepAlive": "http2_keepalive",
    "DestinationRule.subsets[].trafficPolicy.connectionPool.tcp": "conn_pool_tcp",
    "DestinationRule.subsets[].trafficPolicy.connectionPool.tcp.tcpKeepalive": "tcp_keepalive",
    "DestinationRule.subsets[].trafficPolicy.loadBalancer": "load_balancer",
    "DestinationRule.subsets[].trafficPolicy.loadBalancer.backendUtilization": "lb_backend_utilization",
    "DestinationRule.subsets[].trafficPolicy.loadBalancer.consistentHash": "consistent_hash",
    "DestinationRule.subsets[].trafficPolicy.loadBalancer.consistentHash.httpCookie": "hash_cookie",
    "DestinationRule.subsets[].trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes[]": "hash_cookie_attribute",
    "DestinationRule.subsets[].trafficPolicy.loadBalancer.consistentHash.maglev": "maglev",
    "DestinationRule.subsets[].trafficPolicy.loadBalancer.consistentHash.ringHash": "ring_hash",
    "DestinationRule.subsets[].trafficPolicy.loadBalancer.localityLbSetting": "locality_lb",
    "DestinationRule.subsets[].trafficPolicy.loadBalancer.localityLbSetting.distribute[]": "locality_distribute",
    "DestinationRule.subsets[].trafficPolicy.loadBalancer.localityLbSetting.failover[]": "locality_failover",
    "DestinationRule.subsets[].trafficPolicy.loadBalancer.warmup": "lb_warmup",
    "DestinationRule.subsets[].trafficPolicy.loadBalancer.zoneAwareLbSetting": "zone_aware_lb",
    "DestinationRule.subsets[].trafficPolicy.outlierDetection": "outlier_detection",
    "DestinationRule.subsets[].trafficPolicy.portLevelSettings[]": "port_traffic_policy",
    "DestinationRule.subsets[].trafficPolicy.portLevelSettings[].port": "port_selector",
    "DestinationRule.subsets[].trafficPolicy.portLevelSettings[].tls": "client_tls",
    "DestinationRule.subsets[].trafficPolicy.proxyProtocol": "proxy_protocol",
    "DestinationRule.subsets[].trafficPolicy.retryBudget": "retry_budget",
    "DestinationRule.subsets[].trafficPolicy.tunnel": "tunnel",
    "EnvoyFilter": "envoy_filter",
    "EnvoyFilter.configPatches[]": "ef_config_patch",
    "EnvoyFilter.configPatches[].match": "ef_match",
    "EnvoyFilter.configPatches[].match.cluster": "ef_cluster_match",
    "EnvoyFilter.configPatches[].match.listener": "ef_listener_match",
    "EnvoyFilter.configPatches[].match.listener.filterChain": "ef_filter_chain_match",
    "EnvoyFilter.configPatches[].match.listener.filterChain.filter": "ef_filter_match",
    "EnvoyFilter.configPatches[].match.listener.filterChain.filter.subFilter": "name_ref",
    "EnvoyFilter.configPatches[].match.proxy": "ef_proxy_match",
    "EnvoyFilter.configPatches[].match.routeConfiguration": "ef_route_config_match",
    "EnvoyFilter.configPatches[].match.routeConfiguration.vhost": "ef_vhost_match",
    "EnvoyFilter.configPatches[].match.routeConfiguration.vhost.route": "ef_route_match",
    "EnvoyFilter.configPatches[].match.waypoint": "ef_waypoint_match",
    "EnvoyFilter.configPatches[].patch": "ef_patch",
    "EnvoyFilter.workloadSelector": "labels_selector",
    "Gateway": "gateway",
    "Gateway.servers[]": "server",
    "Gateway.servers[].port": "gateway_port",
    "Gateway.servers[].tls": "server_tls",
    "Gateway.servers[].tls.tlsCertificates[]": "server_tls_certificate",
    "ProxyConfig": "proxy_config",
    "ProxyConfig.image": "proxy_image",
    "ServiceEntry": "service_entry",
    "ServiceEntry.endpoints[]": "workload_entry",
    "ServiceEntry.ports[]": "service_port",
    "Sidecar": "sidecar",
    "Sidecar.egress[]": "sidecar_egress",
    "Sidecar.egress[].port": "sidecar_port",
    "Sidecar.ingress[]": "sidecar_ingress",
    "Sidecar.outboundTrafficPolicy": "outbound_traffic_policy",
    "Sidecar.outboundTrafficPolicy.egressProxy": "destination",
    "VirtualService": "virtual_service",
    "VirtualService.http[]": "http_route",
    "VirtualService.http[].corsPolicy": "cors_policy",
    "VirtualService.http[].corsPolicy.allowOrigins[]": "string_match",
    "VirtualService.http[].delegate": "delegate",
    "VirtualService.http[].directResponse": "direct_response",
    "VirtualService.http[].directResponse.body": "direct_response_body",
    "VirtualService.http[].fault": "http_fault",
    "VirtualService.http[].fault.abort": "fault_abort",
    "VirtualService.http[].fault.abort.percentage": "percent",
    "VirtualService.http[].fault.delay": "fault_delay",
    "VirtualService.http[].headers": "headers",
    "VirtualService.http[].headers.request": "header_ops",
    "VirtualService.http[].match[]": "http_match",
    "VirtualService.http[].mirrors[]": "http_mirror",
    "VirtualService.http[].redirect": "http_redirect",
    "VirtualService.http[].retries": "http_retry",
    "VirtualService.http[].rewrite": "http_rewrite",
    "VirtualService.http[].rewrite.uriRegexRewrite": "regex_rewrite",
    "VirtualService.http[].route[]": "http_route_destination",
    "VirtualService.tcp[]": "tcp_route",
    "VirtualService.tcp[].match[]": "l4_match",
    "VirtualService.tcp[].route[]": "route_destination",
    "VirtualService.tls[]": "tls_route",
    "VirtualService.tls[].match[]": "tls_match",
    "WorkloadGroup": "workload_group",
    "WorkloadGroup.metadata": "wg_metadata",
    "WorkloadGroup.probe": "readiness_probe",
    "WorkloadGroup.probe.exec": "probe_exec",
    "WorkloadGroup.probe.grpc": "probe_grpc",
    "WorkloadGroup.probe.httpGet": "probe_http_get",
    "WorkloadGroup.probe.httpGet.httpHeaders[]": "probe_http_header",
    "WorkloadGroup.probe.tcpSocket": "probe_tcp_socket",
    "WorkloadGroup.template": "wg_template",
    "AuthorizationPolicy": "authorization_policy",
    "AuthorizationPolicy.rules[]": "authz_rule",
    "AuthorizationPolicy.rules[].from[]": "authz_from",
    "AuthorizationPolicy.rules[].from[].source": "authz_source",
    "AuthorizationPolicy.rules[].to[]": "authz_to",
    "AuthorizationPolicy.rules[].to[].operation": "authz_operation",
    "AuthorizationPolicy.rules[].when[]": "authz_condition",
    "PeerAuthentication": "peer_authentication",
    "PeerAuthentication.mtls": "peer_mtls",
    "RequestAuthentication": "request_authentication",
    "RequestAuthentication.jwtRules[]": "jwt_rule",
    "RequestAuthentication.jwtRules[].fromHeaders[]": "jwt_header",
    "RequestAuthentication.jwtRules[].outputClaimToHeaders[]": "claim_to_header",
    "Telemetry": "telemetry",
    "Telemetry.accessLogging[]": "access_logging",
    "Telemetry.accessLogging[].filter": "access_log_filter",
    "Telemetry.accessLogging[].match": "telemetry_match",
    "Telemetry.accessLogging[].providers[]": "provider_ref",
    "Telemetry.metrics[]": "metrics",
    "Telemetry.metrics[].overrides[]": "metrics_override",
    "Telemetry.metrics[].overrides[].match": "metric_selector",
    "Telemetry.metrics[].overrides[].tagOverrides{}": "tag_override",
    "Telemetry.tracing[]": "tracing",
    "Telemetry.tracing[].customTags{}": "custom_tag",
    "Telemetry.tracing[].customTags{}.environment": "tag_source",
    "Telemetry.tracing[].customTags{}.formatter": "tag_value",
    "Service.spec": "service_spec",
    "Service.spec.ports[]": "k8s_service_port",
    "Pod.spec": "pod_spec",
    "Pod.spec.containers[]": "container",
    "Pod.spec.containers[].ports[]": "container_port",
}

# string fields that are protobuf Durations but carry no CEL duration rule
DURATION_NAMES = {"idleTimeout", "weightExpirationPeriod", "weightStabilizationPeriod",
                  "weightUpdatePeriod", "ttl", "budgetInterval"}

C_KEYWORDS = {"auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else",
              "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register",
              "restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch", "typedef",
              "union", "unsigned", "void", "volatile", "while", "bool", "true", "false"}

INT32 = (-(2**31), 2**31 - 1)


def snake(name):
    name = name.replace("IPs", "Ips")  # clusterIPs -> cluster_ips
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    s = s.replace("-", "_").replace(".", "_").lower()
    if s in C_KEYWORDS:
        s += "_"
    return s


def norm(s):
    if isinstance(s, dict):
        return {k: norm(v) for k, v in s.items() if k != "description"}
    if isinstance(s, list):
        return [norm(x) for x in s]
    return s


def shash(s):
    return hashlib.sha1(json.dumps(norm(s), sort_keys=True).encode()).hexdigest()[:12]


def c_str(s):
    if s is None:
        return "NULL"
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Gen:
    def __init__(self):
        self.types = collections.OrderedDict()  # hash -> dict(name, schema, paths)
        self.names = set()
        self.enums = collections.OrderedDict()  # c enum name -> values
        self.kinds = []
        self.skipped = []
        self.messages = []  # free-standing (MeshConfig)

    def is_object(self, s):
        return isinstance(s, dict) and s.get("type") == "object" and "properties" in s

    def is_opaque(self, s):
        return isinstance(s, dict) and s.get("x-kubernetes-preserve-unknown-fields") and "properties" not in s

    def register(self, s, path):
        """Registers object schema s (seen at path) and its sub-objects; returns its C name."""
        h = shash(s)
        if h in self.types:
            t = self.types[h]
            t["paths"].append(path)
            if path in NAMES and t["auto"]:
                # a better name turned up
                self.names.discard(t["name"])
                t["name"] = NAMES[path]
                t["auto"] = False
                self.names.add(t["name"])
            return t
        name = NAMES.get(path) or s.get("x-keel-name")
        auto = name is None
        if auto:
            parts = [p for p in re.split(r"[.\[\]{}<>]+", path) if p]
            prefix = {"MeshConfig": "mesh"}.get(parts[0], snake(parts[0]).rstrip("_"))
            if len(parts) == 1:
                name = prefix
            else:
                name = prefix + "_" + snake(parts[-1]).rstrip("_")
                if name in self.names and len(parts) > 2:
                    name = prefix + "_" + snake(parts[-2]).rstrip("_") + "_" + snake(parts[-1]).rstrip("_")
            name = re.sub(r"_+", "_", name).strip("_")
        while name in self.names:
            name += "_x"
        self.names.add(name)
        t = {"name": name, "schema": s, "paths": [path], "auto": auto, "hash": h}
        self.types[h] = t
        for fname, fs in s.get("properties", {}).items():
            self.register_value(fs, path + "." + fname)
        return t

    def register_value(self, fs, path):
        if self.is_object(fs):
            self.register(fs, path)
        elif isinstance(fs, dict) and fs.get("type") == "array" and "items" in fs:
            self.register_value(fs["items"], path + "[]")
        elif isinstance(fs, dict) and fs.get("type") == "object" and isinstance(fs.get("additionalProperties"), dict):
            self.register_value(fs["additionalProperties"], path + "{}")

    # ---- field classification -------------------------------------------------
    def scalar_type(self, fs, fname):
        """Returns (ftype, extra dict) for a non-object, non-array schema."""
        extra = {}
        rules = fs.get("x-kubernetes-validations", []) or []
        if self.is_opaque(fs) or (isinstance(fs, dict) and not fs.get("type") and fs.get("x-kubernetes-preserve-unknown-fields")):
            return "ANY", extra
        if fs.get("x-kubernetes-int-or-string"):
            return "INTSTR", extra
        t = fs.get("type")
        if t == "string":
            if any("duration(" in r.get("rule", "") for r in rules) or fs.get("x-keel-duration") or fname in DURATION_NAMES:
                return "DURATION", extra
            if fs.get("format") == "byte":
                return "BYTES", extra
            if "enum" in fs:
                return "ENUM", extra
            return "STRING", extra
        if t == "boolean":
            return "BOOL", extra
        if t == "integer":
            return "INT", extra
        if t == "number":
            return "DOUBLE", extra
        if t == "object" and "properties" not in fs and "additionalProperties" not in fs:
            return "ANY", extra  # google.protobuf.Struct / Empty-like
        raise SystemExit("unsupported schema at field %s: %r" % (fname, norm(fs)))

    def field_rules(self, fs, shape):
        """Maps the simple CEL rules of a field onto flags; returns (flags, rule_msg, min, max)."""
        flags = []
        msg = None
        lo = hi = None
        for r in fs.get("x-kubernetes-validations", []) or []:
            rule = r.get("rule", "").strip()
            m = r.get("message")
            if "duration(self)" in rule and "1ms" in rule:
                flags.append("DUR_MIN_1MS")
            elif rule == '!self.contains("*")':
                flags.append("NO_STAR")
                msg = m
            elif rule == 'self != "*"':
                flags.append("NOT_STAR")
                msg = m
            elif rule == "self.size() == 0":
                flags.append("MUST_BE_EMPTY")
                msg = m
            elif rule.startswith("url(self).getScheme()"):
                flags.append("URL_HTTP")
                msg = m
            elif rule == "0 < self && self <= 65535":
                lo, hi = 1, 65535
                msg = m
            elif rule == "self.all(key, key.size() != 0)":
                flags.append("KEY_NONEMPTY")
            elif rule == 'self.all(key, !key.contains("*"))':
                flags.append("KEY_NO_STAR")
            elif rule.startswith("self.all(key, size(key) < 63 && key.matches("):
                flags.append("KEY_PORT_NAME")
            elif rule == "self.all(key, 0 < int(key) && int(key) <= 65535)":
                flags.append("KEY_PORT_NUM")
            elif rule == "self.all(l1, self.exists_one(l2, l1.number == l2.number))":
                flags.append("UNIQUE_NUMBER")
            elif rule == 'self in ["", "HTTP", "HTTPS"]':
                flags.append("HTTP_SCHEME")
                msg = m
            else:
                # object-level or unusual rules are implemented by hand in config/validate_*.c
                pass
        return flags, msg, lo, hi

    def fields_of(self, t):
        s = t["schema"]
        req = set(s.get("required", []))
        groups = []
        for key in ("oneOf",):
            if key in s:
                groups.append(self.oneof_names(s[key]))
        for sub in s.get("allOf", []) or []:
            if "oneOf" in sub:
                groups.append(self.oneof_names(sub["oneOf"]))
        group_of = {}
        for gi, g in enumerate(groups, 1):
            for n in g:
                group_of[n] = gi
        out = []
        props = s.get("properties", {})
        camel_c = {snake(n) for n in props if "_" not in n}
        for fname, fs in props.items():
            c = snake(fname)
            if "_" in fname and c in camel_c:
                c += "_legacy"  # proto-style alias of a camelCase field (jwks_uri, mirror_percent)
            f = {"name": fname, "c": c, "oneof": group_of.get(fname, 0), "flags": [], "schema": fs}
            if fname in req:
                f["flags"].append("REQUIRED")
            shape = "ONE"
            vs = fs
            if fs.get("type") == "array" and "items" in fs:
                shape = "LIST"
                vs = fs["items"]
                f["min_items"] = fs.get("minItems", 0)
                f["max_items"] = fs.get("maxItems", 0)
            elif fs.get("type") == "object" and isinstance(fs.get("additionalProperties"), dict):
                shape = "MAP"
                vs = fs["additionalProperties"]
                f["min_items"] = fs.get("minProperties", 0)
                f["max_items"] = fs.get("maxProperties", 0)
            f["shape"] = shape
            fl, msg, lo, hi = self.field_rules(fs, shape)
            if vs is not fs:
                fl2, msg2, lo2, hi2 = self.field_rules(vs, "ONE")
                fl += fl2
                msg = msg or msg2
                lo = lo if lo is not None else lo2
                hi = hi if hi is not None else hi2
            f["flags"] += fl
            f["rule_msg"] = msg
            if self.is_object(vs):
                f["type"] = "MSG"
                f["msg"] = self.types[shash(vs)]["name"]
                if vs.get("x-kubernetes-preserve-unknown-fields"):
                    pass
            else:
                f["type"], _ = self.scalar_type(vs, fname)
            if vs.get("nullable"):
                f["flags"].append("NULLABLE")
            if f["type"] == "ENUM":
                f["enum"] = vs["enum"]
            if f["type"] in ("INT", "DOUBLE"):
                if "minimum" in vs:
                    lo = vs["minimum"] if lo is None else max(lo, vs["minimum"])
                if "maximum" in vs:
                    hi = vs["maximum"] if hi is None else min(hi, vs["maximum"])
                if f["type"] == "INT" and vs.get("format") == "int32":
                    lo = INT32[0] if lo is None else max(lo, INT32[0])
                    hi = INT32[1] if hi is None else min(hi, INT32[1])
                if lo is not None:
                    f["flags"].append("HAS_MIN")
                    f["min"] = int(lo)
                if hi is not None:
                    f["flags"].append("HAS_MAX")
                    f["max"] = int(hi)
            if f["type"] in ("STRING", "BYTES"):
                f["min_len"] = vs.get("minLength", 0)
                f["max_len"] = vs.get("maxLength", 0)
                f["pattern"] = vs.get("pattern")
            out.append(f)
        return out

    def oneof_names(self, alts):
        names = []
        for a in alts:
            if "required" in a:
                names += a["required"]
        return names

    # ---- C emission -------------------------------------------------------------
    def ctype(self, f, owner):
        t = f["type"]
        if t in ("STRING", "BYTES"):
            return "const char *"
        if t == "BOOL":
            return "bool "
        if t in ("INT", "DURATION"):
            return "int64_t "
        if t == "DOUBLE":
            return "double "
        if t == "ENUM":
            return "enum keel_%s " % self.enum_name(owner, f)
        if t == "MSG":
            return "struct keel_%s " % f["msg"]
        if t == "ANY":
            return "const struct keel_node *"
        if t == "INTSTR":
            return "struct keel_intstr "
        raise SystemExit(t)

    def enum_name(self, owner, f):
        return "%s_%s" % (owner, f["c"].rstrip("_"))

    def entry_name(self, f):
        return "%s_entry" % f["msg"]

    def emit(self, out_dir, sources):
        types = list(self.types.values())
        for t in types:
            t["fields"] = self.fields_of(t)
        # topological order: a struct embeds (by value) the messages of its ONE fields
        order, state = [], {}

        def visit(t):
            if state.get(t["name"]) == 2:
                return
            if state.get(t["name"]) == 1:
                raise SystemExit("recursive schema at %s" % t["name"])
            state[t["name"]] = 1
            for f in t["fields"]:
                if f["type"] == "MSG":
                    visit(self.by_name[f["msg"]])
            state[t["name"]] = 2
            order.append(t)

        self.by_name = {t["name"]: t for t in types}
        for t in types:
            visit(t)
        map_msgs = []
        for t in order:
            for f in t["fields"]:
                if f["shape"] == "MAP" and f["type"] == "MSG" and f["msg"] not in map_msgs:
                    map_msgs.append(f["msg"])

        h = []
        w = h.append
        w("/*\n * schema_gen.h - Keel's typed Istio resource model.\n *\n")
        w(" * DO NOT EDIT - generated by tools/gen_schema.py from:\n")
        for s in sources:
            w(" *   %s\n" % s)
        w(" *\n * One struct per distinct object schema; see config/schema.h for the\n")
        w(" * conventions (lists are `T *x; size_t n_x;`, durations are nanoseconds,\n")
        w(" * enums hold the index of their value, absent sub-objects are NULL).\n */\n")
        w("#ifndef KEEL_CONFIG_SCHEMA_GEN_H\n#define KEEL_CONFIG_SCHEMA_GEN_H\n\n")
        w('#include "config/schema.h"\n\n#include <stdbool.h>\n#include <stddef.h>\n#include <stdint.h>\n\n')
        # enums
        for t in order:
            for f in t["fields"]:
                if f["type"] == "ENUM":
                    en = self.enum_name(t["name"], f)
                    w("enum keel_%s {\n" % en)
                    for v in f["enum"]:
                        w("    KEEL_%s_%s,\n" % (en.upper(), re.sub(r"[^A-Za-z0-9]", "_", v).upper()))
                    w("};\n")
        w("\n")
        for t in order:
            w("struct keel_%s;\n" % t["name"])
        w("\n")
        emitted_entries = set()
        for t in order:
            w("/* %s */\n" % ", ".join(t["paths"][:3] + (["..."] if len(t["paths"]) > 3 else [])))
            w("struct keel_%s {\n    struct keel_obj _o;\n" % t["name"])
            for f in t["fields"]:
                ct = self.ctype(f, t["name"])
                if f["shape"] == "ONE":
                    if f["type"] == "MSG":
                        w("    struct keel_%s *%s; /* %s */\n" % (f["msg"], f["c"], f["name"]))
                    else:
                        w("    %s%s; /* %s */\n" % (ct, f["c"], f["name"]))
                elif f["shape"] == "LIST":
                    w("    %s*%s; /* %s[] */\n" % (ct, f["c"], f["name"]))
                    w("    size_t n_%s;\n" % f["c"].rstrip("_"))
                else:
                    et = self.map_entry_ctype(f)
                    w("    %s *%s; /* %s{} */\n" % (et, f["c"], f["name"]))
                    w("    size_t n_%s;\n" % f["c"].rstrip("_"))
            w("};\n")
            # map entries whose values are this type
            if t["name"] in map_msgs and t["name"] not in emitted_entries:
                emitted_entries.add(t["name"])
                w("struct keel_%s_entry {\n    const char *key;\n    struct keel_%s value;\n};\n" % (t["name"], t["name"]))
            w("\n")
        # kinds
        w("enum keel_kind {\n    KEEL_KIND_NONE,\n")
        for k in self.kinds:
            w("    KEEL_KIND_%s,\n" % snake(k["kind"]).upper().rstrip("_"))
        w("    KEEL_KIND__COUNT,\n};\n\n")
        w("extern const struct keel_kind_desc keel_kinds[];\nextern const size_t keel_nkinds;\n")
        w("extern const struct keel_skipped_kind keel_skipped_kinds[];\nextern const size_t keel_nskipped_kinds;\n")
        for t in order:
            w("extern const struct keel_msgdesc keel_msg_%s;\n" % t["name"])
        w("\n#endif\n")

        c = []
        w = c.append
        w("/*\n * schema_gen.c - field tables of Keel's typed resource model.\n *\n")
        w(" * DO NOT EDIT - generated by tools/gen_schema.py (see schema_gen.h).\n */\n")
        w('#include "config/schema_gen.h"\n\n#include <stddef.h>\n\n')
        for t in order:
            w("extern const struct keel_msgdesc keel_msg_%s;\n" % t["name"])
        w("\n")
        for t in order:
            for f in t["fields"]:
                if f["type"] == "ENUM":
                    w("static const char *const enum_%s_%s[] = {%s};\n" % (
                        t["name"], f["c"].rstrip("_"), ", ".join(c_str(v) for v in f["enum"])))
        w("\n")
        for t in order:
            sname = "struct keel_%s" % t["name"]
            w("static const struct keel_field fields_%s[] = {\n" % t["name"])
            for f in t["fields"]:
                flags = " | ".join("KEEL_FF_" + x for x in dict.fromkeys(f["flags"])) or "0"
                elem = "0"
                voff = "0"
                if f["shape"] == "LIST":
                    elem = "sizeof(*((%s *)0)->%s)" % (sname, f["c"])
                elif f["shape"] == "MAP":
                    et = self.map_entry_ctype(f)
                    elem = "sizeof(%s)" % et
                    voff = "offsetof(%s, value)" % et
                cnt = "offsetof(%s, n_%s)" % (sname, f["c"].rstrip("_")) if f["shape"] != "ONE" else "0"
                msg = "&keel_msg_%s" % f["msg"] if f["type"] == "MSG" else "NULL"
                enums = "enum_%s_%s" % (t["name"], f["c"].rstrip("_")) if f["type"] == "ENUM" else "NULL"
                nen = str(len(f["enum"])) if f["type"] == "ENUM" else "0"
                w("    {%s, KEEL_FT_%s, KEEL_FS_%s, %d, %s,\n" % (c_str(f["name"]), f["type"], f["shape"], f["oneof"], flags))
                w("     offsetof(%s, %s), %s, %s, %s,\n" % (sname, f["c"], cnt, elem, voff))
                w("     %s, %s, %s, %dLL, %dLL, %d, %d, %d, %d, %s, %s},\n" % (
                    msg, enums, nen, f.get("min", 0), f.get("max", 0), f.get("min_len", 0), f.get("max_len", 0),
                    f.get("min_items", 0), f.get("max_items", 0), c_str(f.get("pattern")), c_str(f.get("rule_msg"))))
            if not t["fields"]:
                w("    {NULL, 0, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NULL},\n")
            w("};\n")
            open_ = "KEEL_FF_OPEN" if t["schema"].get("x-kubernetes-preserve-unknown-fields") else "0"
            w("const struct keel_msgdesc keel_msg_%s = {%s, sizeof(%s), %d, %s, fields_%s};\n\n" % (
                t["name"], c_str(t["name"]), sname, len(t["fields"]), open_, t["name"]))
        for k in self.kinds:
            w("static const char *const versions_%s[] = {%s, NULL};\n" % (
                snake(k["kind"]).rstrip("_"), ", ".join(c_str(v) for v in k["versions"])))
        w("\nconst struct keel_kind_desc keel_kinds[] = {\n")
        for k in self.kinds:
            w("    {KEEL_KIND_%s, %s, %s, versions_%s, KEEL_KIND_%s, &keel_msg_%s},\n" % (
                snake(k["kind"]).upper().rstrip("_"), c_str(k["kind"]), c_str(k["group"]),
                snake(k["kind"]).rstrip("_"), k["class"], k["body"]))
        w("};\nconst size_t keel_nkinds = sizeof(keel_kinds) / sizeof(keel_kinds[0]);\n\n")
        w("const struct keel_skipped_kind keel_skipped_kinds[] = {\n")
        for g, kd in self.skipped:
            w("    {%s, %s},\n" % (c_str(g), c_str(kd)))
        if not self.skipped:
            w("    {NULL, NULL},\n")
        w("};\nconst size_t keel_nskipped_kinds = %d;\n" % len(self.skipped))
        with open(os.path.join(out_dir, "schema_gen.h"), "w") as fp:
            fp.write("".join(h))
        with open(os.path.join(out_dir, "schema_gen.c"), "w") as fp:
            fp.write("".join(c))

    def map_entry_ctype(self, f):
        if f["type"] == "MSG":
            return "struct keel_%s_entry" % f["msg"]
        if f["type"] in ("STRING", "BYTES"):
            return "struct keel_kv_str"
        if f["type"] == "INT":
            return "struct keel_kv_int"
        if f["type"] == "BOOL":
            return "struct keel_kv_bool"
        raise SystemExit("unsupported map value type %s (%s)" % (f["type"], f["name"]))


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(here)
    ap.add_argument("--crds", default=os.path.join(repo, "..", "shared", "conformance", "crds", "crd-all.gen.yaml"))
    ap.add_argument("--out", default=os.path.join(repo, "src", "config"))
    ap.add_argument("--list", action="store_true", help="print the distinct types and their paths")
    args = ap.parse_args()
    g = Gen()
    sources = ["Istio CRDs: crds/crd-all.gen.yaml (istio/istio 86c9f01f, istio/api b8f8791d; Apache-2.0)"]
    crds = [d for d in yaml.safe_load_all(open(args.crds)) if d]
    for d in crds:
        names = d["spec"]["names"]
        kind = names["kind"]
        vers = [v["name"] for v in d["spec"]["versions"] if v.get("served", True)]
        storage = [v["name"] for v in d["spec"]["versions"] if v.get("storage")]
        vers = storage + [v for v in vers if v not in storage]
        schema = d["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        spec = schema["properties"]["spec"]
        t = g.register(spec, kind)
        body = {"type": "object", "x-keel-name": snake(kind) + "_object",
                "properties": {"spec": spec, "status": {"x-kubernetes-preserve-unknown-fields": True}}}
        bt = g.register(body, kind + "<object>")
        g.kinds.append({"kind": kind, "group": d["spec"]["group"], "versions": vers, "class": "ISTIO", "body": bt["name"]})
    kpath = os.path.join(here, "schema", "kubernetes.yaml")
    if os.path.exists(kpath):
        sources.append("tools/schema/kubernetes.yaml")
        kd = yaml.safe_load(open(kpath))
        for k in kd.get("kinds", []):
            bt = g.register(dict(k["schema"], **{"x-keel-name": snake(k["kind"]) + "_object"}), k["kind"])
            g.kinds.append({"kind": k["kind"], "group": k.get("group", ""), "versions": k["versions"], "class": "K8S",
                            "body": bt["name"]})
        for s in kd.get("skipped", []):
            for kk in s.get("kinds", ["*"]):
                g.skipped.append((s.get("group", ""), kk))
    mpath = os.path.join(here, "schema", "meshconfig.yaml")
    if os.path.exists(mpath):
        sources.append("tools/schema/meshconfig.yaml")
        md = yaml.safe_load(open(mpath))
        for m in md.get("messages", []):
            g.register(dict(m["schema"], **{"x-keel-name": snake(m["name"])}), m["name"])
    if args.list:
        for t in g.types.values():
            print(t["name"], t["paths"][0], "|", " ".join(t["paths"][1:4]))
        return
    g.emit(args.out, sources)


if __name__ == "__main__":
    main()
