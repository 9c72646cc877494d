#!/usr/bin/env python3
"""sidecar_scope_test.py - Sidecar egress scoping, outboundTrafficPolicy and exportTo, end to end.

Two workloads of namespace `app` (sleep, labels app=sleep; curl, labels app=curl) each run `keel proxy sidecar`
and call services through it as their http_proxy. Services (ServiceEntries, Python backends that answer their
name): a.app, b.other, c.other (exportTo "."), s.istio-system, and ipsvc.other whose address is 127.0.0.1:PX, where
a "direct" server listens too (so a pass-through is told apart from routing to the service). The config folder
changes phase by phase (live reload) and each phase checks what each sidecar's outbound can reach:

1. no Sidecar, MeshConfig REGISTRY_ONLY: every exported service; c.other (exportTo ".") is hidden -> 502.
2. Sidecar `default` of `app`: egress hosts ["./*", "istio-system/*"]: a and s only; b, ipsvc -> 502
   (REGISTRY_ONLY BlackHole); the config dump shows the scope.
3. the same with `outboundTrafficPolicy: ALLOW_ANY` in the Sidecar (the mesh stays REGISTRY_ONLY): ipsvc is not
   imported, so 127.0.0.1:PX passes through to the direct server; b.other is still not routed.
4. egress ["*/*"]: b and ipsvc again; c stays hidden (an import never overrides exportTo).
5. namespace Sidecar ["~/*"] plus a Sidecar with workloadSelector app=sleep importing
   "other/b.other.svc.cluster.local": sleep reaches b only, curl nothing (502 for every host).
6. no Sidecar, MeshConfig ALLOW_ANY: unknown addresses pass through for both.

Nothing asserts timings: each check polls until the reload shows (or a deadline passes).

Usage: tests/integration/sidecar_scope_test.py --keel build/debug/keel
"""
import http.server
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (check, cleanup, free_port, keel_arg, serve, start_proxy, stop_proxy, summary,  # noqa: E402
                     wait_ready, write_atomic)


def upstream(name):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    return serve(http.server.ThreadingHTTPServer, H)


BASE = """\
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |
    outboundTrafficPolicy: {{mode: {mesh_mode}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: sleep, namespace: app}}
spec: {{address: 127.0.0.1, labels: {{app: sleep}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: curl, namespace: app}}
spec: {{address: 127.0.0.1, labels: {{app: curl}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: a, namespace: app}}
spec:
  hosts: [a.app.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {a}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: b, namespace: other}}
spec:
  hosts: [b.other.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {b}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: c, namespace: other}}
spec:
  exportTo: ["."]
  hosts: [c.other.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {c}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: s, namespace: istio-system}}
spec:
  hosts: [s.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {s}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ipsvc, namespace: other}}
spec:
  hosts: [ipsvc.other.svc.cluster.local]
  addresses: [127.0.0.1]
  location: MESH_INTERNAL
  ports: [{{number: {px}, name: http, protocol: HTTP, targetPort: {ipsvc}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"""

SIDECAR = """\
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {name}, namespace: app}}
spec:
{spec}
"""


def main():
    keel = keel_arg()
    tmp = tempfile.mkdtemp(prefix="keel-sidecar-scope-test-")
    servers, ports = [], {}
    for name in ("a", "b", "c", "s", "ipsvc"):
        srv, port = upstream(name)
        servers.append(srv)
        ports[name] = port
    direct, px = upstream("direct")
    servers.append(direct)
    cfgdir = os.path.join(tmp, "cfg")
    os.makedirs(cfgdir)
    cfg = os.path.join(cfgdir, "mesh.yaml")

    def write(mesh_mode, *sidecars):
        text = BASE.format(mesh_mode=mesh_mode, px=px, **ports)
        for name, spec in sidecars:
            text += SIDECAR.format(name=name, spec=spec)
        write_atomic(cfg, text)

    write("REGISTRY_ONLY")
    proxies = {}
    logs = []
    for wl in ("sleep", "curl"):
        out, inb, admin = free_port(), free_port(), free_port()
        log = open(os.path.join(tmp, "%s.log" % wl), "w")
        logs.append(log)
        proc = start_proxy(keel, "sidecar", cfgdir, admin, log, "--workload", "%s.app" % wl, "--outbound",
                           "127.0.0.1:%d" % out, "--inbound", "127.0.0.1:%d" % inb, "--concurrency", "1")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": "http://127.0.0.1:%d" % out}))
        proxies[wl] = {"proc": proc, "admin": admin, "opener": opener}

    def get(wl, url):
        try:
            with proxies[wl]["opener"].open(url, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            return None, repr(e).encode()

    def svc(name, port=9080):
        return "http://%s:%d/" % (name, port)

    def expect(wl, url, want, what):
        """Polls until the sidecar of wl answers want ((status, body) or status) for url; checks the last answer."""
        deadline = time.time() + 8
        while True:
            got = get(wl, url)
            ok = got == want if isinstance(want, tuple) else got[0] == want
            if ok or time.time() > deadline:
                break
            time.sleep(0.1)
        check("%s: %s" % (wl, what), ok, (url, got))

    def dump(wl):
        with urllib.request.urlopen("http://127.0.0.1:%d/config_dump" % proxies[wl]["admin"], timeout=5) as r:
            return json.load(r)["snapshot"]

    A, B, C, S = (svc(h) for h in ("a.app.svc.cluster.local", "b.other.svc.cluster.local",
                                   "c.other.svc.cluster.local", "s.istio-system.svc.cluster.local"))
    IP = "http://127.0.0.1:%d/" % px
    try:
        for wl in proxies:
            check("%s sidecar ready" % wl, wait_ready(keel, proxies[wl]["admin"]) == 0)

        # 1. no Sidecar: everything exported is imported
        expect("sleep", A, (200, b"a"), "no Sidecar: a.app reachable")
        expect("sleep", B, (200, b"b"), "no Sidecar: b.other reachable")
        expect("sleep", S, (200, b"s"), "no Sidecar: s.istio-system reachable")
        expect("sleep", IP, (200, b"ipsvc"), "no Sidecar: 127.0.0.1:PX is ipsvc's address: routed to the service")
        expect("sleep", C, 502, "exportTo '.' hides c.other from namespace app (REGISTRY_ONLY: 502)")
        check("no Sidecar: the dump has no sidecarScope", dump("sleep").get("sidecarScope") is None)

        # 2. namespace Sidecar: ./* and istio-system/*
        write("REGISTRY_ONLY", ("default", '  egress: [{hosts: ["./*", "istio-system/*"]}]'))
        expect("sleep", B, 502, "egress ./* + istio-system/*: b.other not imported -> 502 (BlackHole)")
        expect("sleep", A, (200, b"a"), "egress ./*: a.app still reachable")
        expect("sleep", S, (200, b"s"), "egress istio-system/*: s.istio-system reachable")
        expect("sleep", IP, 502, "egress: ipsvc.other not imported -> 502 for its address")
        expect("curl", B, 502, "the namespace Sidecar applies to every workload of the namespace")
        sc = dump("sleep").get("sidecarScope") or {}
        check("the dump shows the scope: Sidecar app/default, selected by namespace, REGISTRY_ONLY from MeshConfig",
              (sc.get("sidecar"), sc.get("selectedBy"), sc.get("outboundTrafficPolicy"),
               sc.get("outboundTrafficPolicyFrom")) == ("app/default", "namespace", "REGISTRY_ONLY", "MeshConfig"), sc)
        clusters = [c["name"] for c in dump("sleep")["clusters"]]
        check("not imported services have no cluster",
              "outbound|9080||b.other.svc.cluster.local" not in clusters and
              "outbound|9080||a.app.svc.cluster.local" in clusters, clusters)

        # 3. the Sidecar's outboundTrafficPolicy wins over the mesh's
        write("REGISTRY_ONLY", ("default", '  egress: [{hosts: ["./*", "istio-system/*"]}]\n'
                                           '  outboundTrafficPolicy: {mode: ALLOW_ANY}'))
        expect("sleep", IP, (200, b"direct"),
               "Sidecar ALLOW_ANY over mesh REGISTRY_ONLY: 127.0.0.1:PX passes through (ipsvc not imported)")
        expect("sleep", A, (200, b"a"), "Sidecar ALLOW_ANY: imported services still routed")
        sc = dump("sleep").get("sidecarScope") or {}
        check("the dump says ALLOW_ANY from the Sidecar",
              (sc.get("outboundTrafficPolicy"), sc.get("outboundTrafficPolicyFrom")) == ("ALLOW_ANY", "Sidecar"), sc)

        # 4. */* imports everything exported, never what exportTo hides
        write("REGISTRY_ONLY", ("default", '  egress: [{hosts: ["*/*"]}]'))
        expect("sleep", B, (200, b"b"), "egress */*: b.other reachable")
        expect("sleep", IP, (200, b"ipsvc"), "egress */*: ipsvc routed again")
        expect("sleep", C, 502, "egress */*: c.other (exportTo '.') stays hidden")

        # 5. workloadSelector picks the Sidecar: sleep gets its own, curl the namespace's ~/*
        write("REGISTRY_ONLY", ("default", '  egress: [{hosts: ["~/*"]}]'),
              ("sleep-only", '  workloadSelector: {labels: {app: sleep}}\n'
                             '  egress: [{hosts: ["other/b.other.svc.cluster.local"]}]'))
        expect("sleep", B, (200, b"b"), "workloadSelector Sidecar: sleep imports other/b.other")
        expect("sleep", A, 502, "workloadSelector Sidecar: sleep does not import a.app")
        expect("curl", B, 502, "namespace Sidecar ~/*: curl imports nothing (b.other 502)")
        expect("curl", A, 502, "namespace Sidecar ~/*: curl imports nothing (a.app 502)")
        sc = dump("sleep").get("sidecarScope") or {}
        check("sleep's scope is the workload Sidecar", (sc.get("sidecar"), sc.get("selectedBy")) ==
              ("app/sleep-only", "workload"), sc)

        # 6. no Sidecar, mesh ALLOW_ANY
        write("ALLOW_ANY")
        expect("curl", A, (200, b"a"), "no Sidecar again: a.app reachable")
        expect("curl", "http://127.0.0.1:%d/" % ports["b"], (200, b"b"),
               "mesh ALLOW_ANY: an address outside the registry passes through")
    finally:
        for wl in proxies:
            stop_proxy(proxies[wl]["proc"])
        for log in logs:
            log.close()
        for s in servers:
            s.shutdown()
        cleanup(tmp, [("sleep sidecar log", os.path.join(tmp, "sleep.log"), 30),
                      ("curl sidecar log", os.path.join(tmp, "curl.log"), 30)])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
