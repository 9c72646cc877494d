#!/usr/bin/env python3
"""pools_test.py - upstream connection pools belong to one cluster's endpoint, as in Envoy.

Two ServiceEntries (two clusters) name the same backend address. One keel gateway worker routes /a to the first
and /b to the second; the backend counts the TCP connections it accepts and which requests each one carried.
Checked: a request of the second cluster does not ride the connection the first cluster left in its pool (two
connections for a, b, a, b, each reused only by its own cluster), each cluster counts its own connection
(envoy_cluster_upstream_cx_total 1 each), and a cluster whose DestinationRule sets maxRequestsPerConnection: 1
opens a connection per request while its neighbour on the same address keeps reusing one.
Nothing asserts timings.

Usage: tests/integration/pools_test.py --keel build/debug/keel
"""
import http.server
import os
import re
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (check, cleanup, free_port, http_get, keel_arg, request, serve, start_proxy,  # noqa: E402
                     stop_proxy, summary, wait_ready, write_atomic)

lock = threading.Lock()
conns = []  # per accepted connection: the paths it carried
conn_of = {}  # the client address of an accepted connection -> its index in conns


class Backend(http.server.ThreadingHTTPServer):
    def process_request(self, req, addr):
        with lock:
            conns.append([])
            conn_of[addr] = len(conns) - 1
        super().process_request(req, addr)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        with lock:
            conns[conn_of[self.client_address]].append(self.path)
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


CONFIG = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
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
  gateways: [gw]
  http:
  - match: [{{uri: {{prefix: /a}}}}]
    route: [{{destination: {{host: a.test}}}}]
  - match: [{{uri: {{prefix: /b}}}}]
    route: [{{destination: {{host: b.test}}}}]
  - match: [{{uri: {{prefix: /one}}}}]
    route: [{{destination: {{host: one.test}}}}]
"""
for name in ("a", "b", "one"):
    CONFIG += """---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{{{name: {n}, namespace: istio-system}}}}
spec:
  hosts: [{n}.test]
  location: MESH_INTERNAL
  ports: [{{{{number: 80, name: http, protocol: HTTP, targetPort: {{port}}}}}}]
  resolution: STATIC
  endpoints: [{{{{address: 127.0.0.1}}}}]
""".format(n=name)
CONFIG += """---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: one, namespace: istio-system}}
spec:
  host: one.test
  trafficPolicy: {{connectionPool: {{http: {{maxRequestsPerConnection: 1}}}}}}
"""


def cx_total(admin, cluster):
    text = http_get(admin, "/stats/prometheus")[1].decode()
    m = re.search(r'^envoy_cluster_upstream_cx_total\{cluster_name="%s"\} (\d+)$' % re.escape(cluster), text, re.M)
    return int(m.group(1)) if m else None


def main():
    keel = keel_arg()
    tmp = tempfile.mkdtemp(prefix="keel-pools-test-")
    _, port = serve(Backend, Handler)
    gw, admin = free_port(), free_port()
    cfgdir = os.path.join(tmp, "config")
    os.makedirs(cfgdir)
    write_atomic(os.path.join(cfgdir, "mesh.yaml"), CONFIG.format(gw=gw, port=port))
    log = open(os.path.join(tmp, "proxy.log"), "w")
    # one worker: every request meets the same pools (with more, two workers could hide a shared pool)
    proc = start_proxy(keel, "router", cfgdir, admin, log, "--concurrency", "1")
    try:
        check("proxy ready", wait_ready(keel, admin, timeout=10) == 0)
        codes = [request(gw, "GET", p)[0].status for p in ("/a1", "/b1", "/a2", "/b2")]
        check("four requests answered", codes == [200] * 4, codes)
        with lock:
            seen = [list(c) for c in conns]
        check("two connections for two clusters on one address, each reused only by its own cluster",
              sorted(seen) == [["/a1", "/a2"], ["/b1", "/b2"]], seen)
        check("each cluster counts its own connection (envoy_cluster_upstream_cx_total)",
              cx_total(admin, "outbound|80||a.test") == 1 and cx_total(admin, "outbound|80||b.test") == 1,
              (cx_total(admin, "outbound|80||a.test"), cx_total(admin, "outbound|80||b.test")))
        with lock:
            before = len(conns)
        codes = [request(gw, "GET", p)[0].status for p in ("/one1", "/a3", "/one2", "/a4", "/one3")]
        check("five more requests answered", codes == [200] * 5, codes)
        with lock:
            seen = [list(c) for c in conns]
        check("maxRequestsPerConnection: 1 on one cluster: a connection per request there",
              sorted(seen[before:]) == [["/one1"], ["/one2"], ["/one3"]], seen)
        check("...while its neighbour on the same address keeps reusing its pooled connection",
              ["/a1", "/a2", "/a3", "/a4"] in seen, seen)
    finally:
        stop_proxy(proc)
        cleanup(tmp, [("proxy log", os.path.join(tmp, "proxy.log"), 40)])
    sys.exit(summary())


if __name__ == "__main__":
    main()
