#!/usr/bin/env python3
"""k8s_endpoints_test.py - Kubernetes Service + Endpoints and Service + EndpointSlice as the only source of
a backend's address.

`keel proxy router` serves a Gateway and a VirtualService that send /ep to
`ep.shop.svc.cluster.local` and /slice to `slice.shop.svc.cluster.local`.
Neither Service selects a Pod: the Python backends' addresses come only from
an `Endpoints` object (the first) and an `EndpointSlice` labelled
`kubernetes.io/service-name` (the second; its not-ready endpoint is left
out). Checks that curl through the router reaches each backend, that
/config_dump shows exactly those endpoints with their source, and that
editing the Endpoints object moves the traffic to another backend.

Usage: tests/integration/k8s_endpoints_test.py --keel build/debug/keel
"""
import http.server
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (check, cleanup, free_port, keel_arg, serve, start_proxy, stop_proxy, summary,  # noqa: E402
                     wait_ready, write_atomic)


def backend(name):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            body = ("%s %s" % (name, self.path)).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    return serve(http.server.ThreadingHTTPServer, H)


CONFIG = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: ingress, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {gw}, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: routes, namespace: istio-system}}
spec:
  hosts: ["*"]
  gateways: [ingress]
  http:
  - match: [{{uri: {{prefix: /ep}}}}]
    route: [{{destination: {{host: ep.shop.svc.cluster.local, port: {{number: 80}}}}}}]
  - match: [{{uri: {{prefix: /slice}}}}]
    route: [{{destination: {{host: slice.shop.svc.cluster.local, port: {{number: 80}}}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: ep, namespace: shop}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Endpoints
metadata: {{name: ep, namespace: shop}}
subsets:
- addresses: [{{ip: 127.0.0.1}}]
  ports: [{{name: http, port: {ep_port}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: slice, namespace: shop}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: slice-x1
  namespace: shop
  labels: {{kubernetes.io/service-name: slice}}
addressType: IPv4
endpoints:
- addresses: [127.0.0.1]
  conditions: {{ready: true}}
- addresses: [127.0.0.9]
  conditions: {{ready: false}}
ports: [{{name: http, port: {slice_port}}}]
"""


def curl(port, path):
    p = subprocess.run(["curl", "-s", "--max-time", "10", "-w", "\n%{http_code}", "http://127.0.0.1:%d%s" % (port, path)],
                       capture_output=True, timeout=20)
    body, _, code = p.stdout.decode(errors="replace").rpartition("\n")
    return int(code or 0), body


def endpoints(admin, cluster):
    with urllib.request.urlopen("http://127.0.0.1:%d/config_dump" % admin, timeout=5) as r:
        dump = json.loads(r.read())
    snap = dump.get("snapshot", dump)
    for c in snap.get("clusters", []):
        if c["name"] == cluster:
            return sorted((e.get("address"), e.get("port"), e.get("source")) for e in c.get("endpoints", []))
    return None


def main():
    keel = keel_arg()
    tmp = tempfile.mkdtemp(prefix="keel-k8s-endpoints-test-")
    s1, ep_port = backend("endpoints")
    s2, slice_port = backend("slice")
    s3, moved_port = backend("moved")
    gw, admin = free_port(), free_port()
    cfgdir = os.path.join(tmp, "cfg")
    os.makedirs(cfgdir)
    cfg = os.path.join(cfgdir, "mesh.yaml")
    write_atomic(cfg, CONFIG.format(gw=gw, ep_port=ep_port, slice_port=slice_port))
    log = open(os.path.join(tmp, "proxy.log"), "w")
    proc = start_proxy(keel, "router", cfgdir, admin, log, "--concurrency", "1")
    try:
        check("ready", wait_ready(keel, admin) == 0)
        st, body = curl(gw, "/ep/a")
        check("Service + Endpoints: the router reaches the backend", (st, body) == (200, "endpoints /ep/a"),
              (st, body))
        st, body = curl(gw, "/slice/b")
        check("Service + EndpointSlice: the router reaches the backend", (st, body) == (200, "slice /slice/b"),
              (st, body))
        eps = endpoints(admin, "outbound|80||ep.shop.svc.cluster.local")
        check("Endpoints: the cluster's only endpoint comes from the Endpoints object",
              eps == [("127.0.0.1", ep_port, "Endpoints shop/ep")], eps)
        eps = endpoints(admin, "outbound|80||slice.shop.svc.cluster.local")
        check("EndpointSlice: the ready endpoint only",
              eps == [("127.0.0.1", slice_port, "EndpointSlice shop/slice-x1")], eps)

        write_atomic(cfg, CONFIG.format(gw=gw, ep_port=moved_port, slice_port=slice_port))
        deadline = time.time() + 10
        st, body = None, ""
        while time.time() < deadline:
            st, body = curl(gw, "/ep/c")
            if body == "moved /ep/c":
                break
            time.sleep(0.1)
        check("editing the Endpoints object moves the traffic", (st, body) == (200, "moved /ep/c"), (st, body))
        st, body = curl(gw, "/slice/d")
        check("the EndpointSlice service is unaffected", (st, body) == (200, "slice /slice/d"), (st, body))
    finally:
        stop_proxy(proc)
        log.close()
        for s in (s1, s2, s3):
            s.shutdown()
        cleanup(tmp, [("proxy log", os.path.join(tmp, "proxy.log"), 30)])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
