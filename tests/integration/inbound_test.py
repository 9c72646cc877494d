#!/usr/bin/env python3
"""inbound_test.py - the sidecar inbound listener of `keel proxy sidecar`.

Workload `reviews` (WorkloadEntry, address 127.0.0.2: its "pod IP" on this
machine) is selected by a ServiceEntry with an HTTP port and a TCP port; its
app is a Python HTTP server and a TCP echo server on 127.0.0.1. The reviews
sidecar runs with `--inbound 127.0.0.2:VIN` and listens on 127.0.0.2 with
each workload port (the WorkloadEntry's `ports`), forwarding to the app on
127.0.0.1 through `inbound|PORT||`. Checks, with curl and sockets:

- curl to 127.0.0.2:APP reaches the app; so does curl to the inbound address
  itself with the port in the Host header; an undeclared port in the Host
  gets 404 (NR), an undeclared port is refused;
- the TCP port echoes through the inbound;
- the access log names the inbound clusters; /stats/prometheus counts them;
  /config_dump lists the inbound ports;
- end to end: a second sidecar (productpage) used as http_proxy reaches
  reviews by name, through the reviews sidecar's inbound (both access logs);
  and its TCP outbound listener reaches the echo through the inbound too;
- a Sidecar `ingress` (port + defaultEndpoint) with `--inbound 127.0.0.1:P`;
- without one, a port that would forward to its own address is not opened;
- `--inbound` with a bad value, or on a router, exits 2 naming the flag.

Usage: tests/integration/inbound_test.py --keel build/debug/keel
"""
import http.server
import json
import os
import socket
import socketserver
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (check, cleanup, free_port, keel_arg, serve, start_proxy, stop_proxy, summary,  # noqa: E402
                     wait_ready)


class App(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        body = json.dumps({"app": "reviews", "path": self.path, "host": self.headers.get("Host"),
                           "xfp": self.headers.get("X-Forwarded-Proto")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            self.request.sendall(data)


class TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True


CONFIG = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports:
  - {{number: {svc_http}, name: http, protocol: HTTP}}
  - {{number: {svc_tcp}, name: tcp-echo, protocol: TCP}}
  resolution: STATIC
  workloadSelector: {{labels: {{app: reviews}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: reviews, namespace: default}}
spec:
  address: 127.0.0.2
  labels: {{app: reviews}}
  ports: {{http: {app}, tcp-echo: {echo}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: productpage, namespace: default}}
spec: {{address: 127.0.0.3, labels: {{app: productpage}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |
    accessLogFile: {log}
"""

SIDECAR = """\
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: reviews, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: reviews}}}}
  ingress:
  - port: {{number: {port}, protocol: HTTP, name: http}}
    defaultEndpoint: 127.0.0.1:{app}
"""


def curl(url, *args):
    """(status, body) of curl on url; status 0 when the connection failed."""
    p = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"] + list(args) + [url],
                       capture_output=True, timeout=20)
    out = p.stdout.decode(errors="replace")
    body, _, code = out.rpartition("\n")
    return int(code or 0), body


def echo_through(host, port, payload):
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            d = s.recv(65536)
            if not d:
                return got
            got += d


def refused(host, port):
    try:
        socket.create_connection((host, port), timeout=5).close()
        return False
    except ConnectionRefusedError:
        return True


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_for(path, needle, timeout=5):
    """The access log is written after the response: poll until needle shows up (not a timing assertion)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if needle in read(path):
            return True
        time.sleep(0.05)
    return needle in read(path)


def admin_get(admin, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (admin, path), timeout=5) as r:
        return r.read().decode()


def main():
    keel = keel_arg()
    tmp = tempfile.mkdtemp(prefix="keel-inbound-test-")
    app_srv, app = serve(http.server.ThreadingHTTPServer, App)
    echo_srv, echo = serve(TCPServer, Echo)
    svc_http, svc_tcp = free_port(), free_port()
    procs, logs = [], []

    def config_dir(name, extra=""):
        d = os.path.join(tmp, name)
        os.makedirs(d)
        with open(os.path.join(d, "mesh.yaml"), "w") as f:
            f.write(CONFIG.format(svc_http=svc_http, svc_tcp=svc_tcp, app=app, echo=echo,
                                  log=os.path.join(tmp, name + "-access.log")) + extra)
        return d

    def proxy(name, cfg, admin, *args):
        log = open(os.path.join(tmp, name + ".log"), "w")
        logs.append(log)
        p = start_proxy(keel, "sidecar", cfg, admin, log, "--concurrency", "1", *args)
        procs.append(p)
        return p

    try:
        # ---- command line ----
        d = config_dir("cli")
        for args, needle in [(["--inbound", "127.0.0.1"], "--inbound wants IP:PORT"),
                             (["--inbound", "localhost:15006"], "--inbound wants IP:PORT"),
                             (["--inbound", "127.0.0.1:0"], "--inbound wants IP:PORT")]:
            p = subprocess.run([keel, "proxy", "sidecar", "--config", d, "--workload", "reviews.default"] + args,
                               capture_output=True, text=True, timeout=20)
            check("%s is a usage error (2) naming the flag" % " ".join(args),
                  p.returncode == 2 and needle in p.stderr, (p.returncode, p.stderr))
        p = subprocess.run([keel, "proxy", "router", "--config", d, "--inbound", "127.0.0.1:15006"],
                           capture_output=True, text=True, timeout=20)
        check("--inbound on a router is a usage error (2)",
              p.returncode == 2 and "--inbound is for sidecars" in p.stderr, (p.returncode, p.stderr))

        # ---- reviews: inbound on 127.0.0.2 (its WorkloadEntry address) ----
        cfg = config_dir("reviews")
        access = os.path.join(tmp, "reviews-access.log")
        vin, out, admin = free_port(), free_port(), free_port()
        proxy("reviews", cfg, admin, "--workload", "reviews.default", "--inbound", "127.0.0.2:%d" % vin,
              "--outbound", "127.0.0.2:%d" % out)
        check("reviews sidecar ready", wait_ready(keel, admin) == 0)

        st, body = curl("http://127.0.0.2:%d/reviews/1" % app)
        check("HTTP port: curl 127.0.0.2:APP reaches the app", st == 200 and '"path": "/reviews/1"' in body,
              (st, body))
        check("HTTP port: x-forwarded-proto added", '"xfp": "http"' in body, body)
        check("access log shows the inbound cluster",
              wait_for(access, "inbound|%d||" % app) and "/reviews/1" in read(access), read(access)[-800:])

        st, body = curl("http://127.0.0.2:%d/by-host" % vin, "-H", "Host: reviews.default.svc.cluster.local:%d" % app)
        check("the inbound address routes by the Host's port", st == 200 and '"path": "/by-host"' in body,
              (st, body))
        st, body = curl("http://127.0.0.2:%d/by-svc-port" % vin,
                        "-H", "Host: reviews.default.svc.cluster.local:%d" % svc_http)
        check("the inbound address: a service port in the Host names its workload port",
              st == 200 and '"path": "/by-svc-port"' in body, (st, body))
        undeclared = free_port()
        st, body = curl("http://127.0.0.2:%d/" % vin, "-H", "Host: reviews:%d" % undeclared)
        check("the inbound address: an undeclared port in the Host -> 404", st == 404, (st, body))
        check("an undeclared port is refused", refused("127.0.0.2", undeclared))

        payload = b"inbound-tcp-" * 1000
        got = echo_through("127.0.0.2", echo, payload)
        check("TCP port echoes through the inbound", got == payload, len(got))
        check("access log shows the inbound TCP cluster", wait_for(access, "inbound|%d||" % echo),
              read(access)[-800:])

        prom = admin_get(admin, "/stats/prometheus")
        line = 'envoy_cluster_upstream_rq_total{cluster_name="inbound|%d||"} ' % app
        n = [ln for ln in prom.splitlines() if ln.startswith(line)]
        check("/stats/prometheus counts the inbound HTTP cluster", n and int(n[0].split()[-1]) >= 2, n)
        line = 'envoy_cluster_upstream_cx_total{cluster_name="inbound|%d||"} ' % echo
        n = [ln for ln in prom.splitlines() if ln.startswith(line)]
        check("/stats/prometheus counts the inbound TCP cluster", n and int(n[0].split()[-1]) >= 1, n)
        dump = json.loads(admin_get(admin, "/config_dump"))
        snap = dump.get("snapshot", dump)
        ports = sorted((i["port"], i["protocol"], i["cluster"]) for i in snap.get("inbound", []))
        check("/config_dump lists the inbound ports",
              ports == [(min(app, echo), "HTTP" if app < echo else "TCP", "inbound|%d||" % min(app, echo)),
                        (max(app, echo), "HTTP" if app > echo else "TCP", "inbound|%d||" % max(app, echo))],
              ports)

        # ---- productpage: outbound (http_proxy and TCP port) -> reviews' inbound -> app ----
        pp_cfg = config_dir("productpage")
        pp_access = os.path.join(tmp, "productpage-access.log")
        pp_out, pp_admin = free_port(), free_port()
        proxy("productpage", pp_cfg, pp_admin, "--workload", "productpage.default",
              "--inbound", "127.0.0.3:%d" % free_port(), "--outbound", "127.0.0.1:%d" % pp_out)
        check("productpage sidecar ready", wait_ready(keel, pp_admin) == 0)
        before = read(access).count("/e2e")
        st, body = curl("http://reviews.default.svc.cluster.local:%d/e2e" % svc_http, "-x",
                        "http://127.0.0.1:%d" % pp_out)
        check("http_proxy -> outbound -> reviews inbound -> app", st == 200 and '"path": "/e2e"' in body,
              (st, body))
        check("productpage log: outbound cluster to 127.0.0.2:APP",
              wait_for(pp_access, "outbound|%d||reviews.default.svc.cluster.local" % svc_http)
              and "127.0.0.2:%d" % app in read(pp_access), read(pp_access)[-800:])
        check("reviews log: the same request through the inbound",
              wait_for(access, "/e2e") and read(access).count("/e2e") == before + 1, read(access)[-800:])
        got = echo_through("127.0.0.1", svc_tcp, b"e2e-tcp")
        check("TCP: outbound port -> reviews inbound -> echo", got == b"e2e-tcp", got)

        # ---- Sidecar ingress on --inbound 127.0.0.1:P ----
        wp = free_port()
        sc_cfg = config_dir("ingress", SIDECAR.format(port=wp, app=app))
        sc_admin, sc_vin = free_port(), free_port()
        proxy("ingress", sc_cfg, sc_admin, "--workload", "reviews.default", "--inbound", "127.0.0.1:%d" % sc_vin,
              "--outbound", "127.0.0.4:%d" % free_port())
        check("Sidecar ingress sidecar ready", wait_ready(keel, sc_admin) == 0)
        st, body = curl("http://127.0.0.1:%d/ingress" % wp)
        check("Sidecar ingress: port -> defaultEndpoint", st == 200 and '"path": "/ingress"' in body, (st, body))
        st, body = curl("http://127.0.0.1:%d/ingress2" % sc_vin, "-H", "Host: reviews:%d" % wp)
        check("Sidecar ingress: inbound address by Host port", st == 200 and '"path": "/ingress2"' in body,
              (st, body))
        snap = json.loads(admin_get(sc_admin, "/config_dump"))
        snap = snap.get("snapshot", snap)
        ports = [(i["port"], i["endpoint"], i["source"]) for i in snap.get("inbound", [])]
        check("Sidecar ingress replaces the services' ports",
              ports == [(wp, "127.0.0.1:%d" % app, "Sidecar default/reviews spec.ingress[0]")], ports)

        # ---- no Sidecar, inbound on the app's own IP: no port forwarding to itself ----
        loop_cfg = config_dir("loop")
        loop_admin = free_port()
        proxy("loop", loop_cfg, loop_admin, "--workload", "reviews.default", "--inbound",
              "127.0.0.1:%d" % free_port(), "--outbound", "127.0.0.5:%d" % free_port())
        check("loop sidecar ready", wait_ready(keel, loop_admin) == 0)
        log = read(os.path.join(tmp, "loop.log"))
        check("a port forwarding to its own address is not opened",
              "inbound port %d: not listening on 127.0.0.1:%d, where the app listens" % (app, app) in log, log[-800:])
        st, body = curl("http://127.0.0.1:%d/still-app" % app)
        check("the app keeps its port", st == 200 and "/still-app" in body, (st, body))
    finally:
        for p in procs:
            stop_proxy(p)
        for f in logs:
            f.close()
        app_srv.shutdown()
        echo_srv.shutdown()
        cleanup(tmp, [(n, os.path.join(tmp, n + ".log"), 30) for n in ("reviews", "productpage", "ingress", "loop")]
                + [("reviews access log", os.path.join(tmp, "reviews-access.log"), 10)])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
