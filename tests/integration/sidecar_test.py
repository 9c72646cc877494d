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
import argparse
import http.server
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

checks = [0]
failures = []


def check(name, cond, detail=""):
    checks[0] += 1
    print(("ok   %s" if cond else "FAIL %s") % name + ("" if cond else " " + str(detail)[:300]))
    if not cond:
        failures.append(name)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


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
    port = free_port()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, port


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
    ap = argparse.ArgumentParser()
    ap.add_argument("--keel", required=True)
    keel = os.path.abspath(ap.parse_args().keel)
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
        with open(cfg + ".tmp", "w") as f:
            f.write(CONFIG.format(v1=v1, v2=v2, r=r, mode=mode))
        os.rename(cfg + ".tmp", cfg)

    write("ALLOW_ANY")
    log = open(os.path.join(tmp, "proxy.log"), "w")
    proc = subprocess.Popen([keel, "proxy", "sidecar", "--config", cfgdir, "--workload", "productpage.default",
                             "--outbound", "127.0.0.1:%d" % out, "--admin", "127.0.0.1:%d" % admin,
                             "--concurrency", "1"], stdout=log, stderr=subprocess.STDOUT)
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
        check("ready", subprocess.run([keel, "proxy", "wait", "--admin", "127.0.0.1:%d" % admin]).returncode == 0)
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
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        for s in (s1, s2, s3, s4):
            s.shutdown()
        if failures:
            print(open(os.path.join(tmp, "proxy.log")).read()[-2000:])
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (checks[0] - len(failures), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
