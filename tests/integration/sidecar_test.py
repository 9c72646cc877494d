#!/usr/bin/env python3
"""sidecar_test.py - `keel proxy sidecar` as an application's http_proxy.

A workload (WorkloadEntry productpage) calls `reviews` through its sidecar's
outbound listener, the way an app with http_proxy set does: curl -x and
Python's urllib with a ProxyHandler. Checks routing by Host and port with
the VirtualService (header match to subset v2, default to v1), the
generated default route for a host without a VirtualService, ALLOW_ANY
pass-through to an address outside the registry, and REGISTRY_ONLY
(502 from BlackHoleCluster) after a config change.

Usage: tests/integration/sidecar_test.py --keel build/debug/keel
"""
import http.server
import os
import subprocess
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


CONFIG = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {v1}}}, labels: {{version: v1}}}}
  - {{address: 127.0.0.1, ports: {{http: {v2}}}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ratings, namespace: default}}
spec:
  hosts: [ratings.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {r}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: reviews.default.svc.cluster.local
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - match: [{{headers: {{end-user: {{exact: jason}}}}}}]
    route: [{{destination: {{host: reviews, subset: v2}}}}]
  - route: [{{destination: {{host: reviews, subset: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: productpage, namespace: default}}
spec: {{address: 127.0.0.1, labels: {{app: productpage}}, serviceAccount: bookinfo-productpage}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |
    outboundTrafficPolicy: {{mode: {mode}}}
"""


def main():
    keel = keel_arg()
    tmp = tempfile.mkdtemp(prefix="keel-sidecar-test-")
    s1, v1 = upstream("v1")
    s2, v2 = upstream("v2")
    s3, r = upstream("ratings")
    s4, ext = upstream("external")
    out, admin = free_port(), free_port()
    cfgdir = os.path.join(tmp, "cfg")
    os.makedirs(cfgdir)
    cfg = os.path.join(cfgdir, "mesh.yaml")

    def write(mode):
        write_atomic(cfg, CONFIG.format(v1=v1, v2=v2, r=r, mode=mode))

    write("ALLOW_ANY")
    log = open(os.path.join(tmp, "proxy.log"), "w")
    proc = start_proxy(keel, "sidecar", cfgdir, admin, log, "--workload", "productpage.default",
                       "--outbound", "127.0.0.1:%d" % out, "--concurrency", "1")
    proxy = "http://127.0.0.1:%d" % out
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}))

    def via(url, headers=None):
        req = urllib.request.Request(url, headers=headers or {})
        try:
            with opener.open(req, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            return None, repr(e).encode()

    try:
        check("ready", wait_ready(keel, admin) == 0)
        st, body = via("http://reviews.default.svc.cluster.local:9080/")
        check("VirtualService default rule -> v1", (st, body) == (200, b"v1"), (st, body))
        st, body = via("http://reviews.default.svc.cluster.local:9080/", {"end-user": "jason"})
        check("header match -> subset v2", (st, body) == (200, b"v2"), (st, body))
        p = subprocess.run(["curl", "-s", "-x", proxy, "http://ratings.default.svc.cluster.local:9080/"],
                           capture_output=True, timeout=10)
        check("curl -x: host without a VirtualService -> its service", p.stdout == b"ratings", p)
        st, body = via("http://127.0.0.1:%d/" % ext)
        check("ALLOW_ANY: an address outside the registry passes through", (st, body) == (200, b"external"),
              (st, body))
        write("REGISTRY_ONLY")
        deadline = time.time() + 5
        st = None
        while time.time() < deadline:
            st, body = via("http://127.0.0.1:%d/" % ext)
            if st == 502:
                break
            time.sleep(0.1)
        check("REGISTRY_ONLY: outside the registry -> 502 (BlackHoleCluster)", st == 502, st)
        st, body = via("http://reviews.default.svc.cluster.local:9080/")
        check("REGISTRY_ONLY: registered services still reachable", (st, body) == (200, b"v1"), (st, body))
    finally:
        stop_proxy(proc)
        log.close()
        for s in (s1, s2, s3, s4):
            s.shutdown()
        cleanup(tmp, [("proxy log", os.path.join(tmp, "proxy.log"), 30)])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
