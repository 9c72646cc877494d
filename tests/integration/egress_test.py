#!/usr/bin/env python3
"""egress_test.py - the field guide's egress-gateway pattern, end to end.

    app (curl / Python) --> keel proxy sidecar --> keel proxy router (istio=egressgateway) --> "external" server
         http_proxy /          VirtualService          Gateway foo-egress-gateway +              Python, standing in
         the outbound IP       gateways: [mesh]        the same VirtualService's                 for external.example.com,
                                                       gateways: [foo-egress-gateway] rules      ext-tls..., the database

The guide's resources, with local ports: a ServiceEntry for the egress gateway's service
(istio-egressgateway.istio-egress.svc.cluster.local, endpoint 127.0.0.3 where the router binds), a Gateway
selecting istio=egressgateway, and one VirtualService per protocol bound to `[mesh, foo-egress-gateway]`:

- HTTP: `curl` with http_proxy = the sidecar's outbound address asks for http://external.example.com:P/; the
  sidecar's mesh rule sends it to the egress gateway, whose gateway rule sends it to the ServiceEntry
  (MESH_EXTERNAL, STATIC endpoint 127.0.0.1) of external.example.com.
- TLS by SNI: the app speaks TLS itself (certificate verified end to end) to the sidecar's TLS port; the
  sidecar and the egress gateway (PASSTHROUGH server) route with `tls` rules on the SNI.
- TCP (the guide's MySQL example): a ServiceEntry with `addresses` (the address the app dials, here the
  sidecar's outbound IP) and a TCP port, resolution DNS with the endpoint `localhost` (/etc/hosts); an echo
  server stands in for the database.

Every hop is checked: each proxy's access log shows the request or connection with the cluster it chose, and
the final server saw the traffic (path and Host, SNI, bytes). Nothing asserts timings.

Usage: tests/integration/egress_test.py --keel build/debug/keel
"""
import http.server
import json
import os
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (check, cleanup, free_port, keel_arg, serve, start_proxy, stop_proxy, summary,  # noqa: E402
                     wait_ready, write_atomic)

SIDECAR_IP = "127.0.0.2"  # the sidecar's outbound address (the app's http_proxy) and the database's VIP
EGRESS_IP = "127.0.0.3"   # where the egress gateway binds: its service's endpoint
EGW = "istio-egressgateway.istio-egress.svc.cluster.local"
DB = "db.cluster-x.ap-northeast-1.rds.amazonaws.com"

seen = {"http": [], "sni": [], "tcp": []}


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def http_backend():
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            seen["http"].append((self.path, self.headers.get("Host")))
            body = b"external says hi to " + self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    return serve(http.server.ThreadingHTTPServer, H)


def tls_backend(ctx):
    def sni_cb(sock, name, c):
        seen["sni"].append(name)
    ctx.sni_callback = sni_cb

    class H(socketserver.BaseRequestHandler):
        def handle(self):
            try:
                s = ctx.wrap_socket(self.request, server_side=True)
                line = b""
                while not line.endswith(b"\n"):
                    b = s.recv(4096)
                    if not b:
                        break
                    line += b
                s.sendall(b"tls-backend " + line)
                s.close()
            except (OSError, ssl.SSLError):
                pass
    return serve(Server, H)


def echo_backend():
    class H(socketserver.BaseRequestHandler):
        def handle(self):
            seen["tcp"].append(self.client_address)
            try:
                while True:
                    b = self.request.recv(65536)
                    if not b:
                        break
                    self.request.sendall(b)
            except OSError:
                pass
    return serve(Server, H)


CONFIG = """\
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |
    accessLogFile: /dev/stdout
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: sleep, namespace: default}}
spec: {{address: {sidecar_ip}, labels: {{app: sleep}}, serviceAccount: sleep}}
---
# the egress gateway's own service (in Kubernetes: the istio-egressgateway Service)
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: istio-egressgateway, namespace: istio-egress}}
spec:
  hosts: [{egw}]
  addresses: [240.240.0.1]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {{number: {p_http}, name: http, protocol: HTTP}}
  - {{number: {p_tls}, name: tls, protocol: TLS}}
  - {{number: {p_tcp}, name: tcp, protocol: TCP}}
  endpoints: [{{address: {egress_ip}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: egressgateway, namespace: default}}
spec:
  host: {egw}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: foo-egress-gateway, namespace: default}}
spec:
  selector: {{istio: egressgateway}}
  servers:
  - port: {{number: {p_http}, name: http, protocol: HTTP}}
    bind: {egress_ip}
    hosts: [external.example.com]
  - port: {{number: {p_tls}, name: tls, protocol: TLS}}
    bind: {egress_ip}
    hosts: [ext-tls.example.com]
    tls: {{mode: PASSTHROUGH}}
  - port: {{number: {p_tcp}, name: tcp, protocol: TCP}}
    bind: {egress_ip}
    hosts: [{db}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: external, namespace: default}}
spec:
  exportTo: ["*"]
  hosts: [external.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: {p_http}, name: http, protocol: HTTP, targetPort: {http_backend}}}]
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: external-tls, namespace: default}}
spec:
  exportTo: ["*"]
  hosts: [ext-tls.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: {p_tls}, name: tls, protocol: TLS, targetPort: {tls_backend}}}]
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: foo-mysql, namespace: default}}
spec:
  exportTo: ["*"]
  hosts: [{db}]
  addresses: [{sidecar_ip}]
  location: MESH_EXTERNAL
  ports: [{{number: {p_tcp}, name: tcp-mysql, protocol: TCP, targetPort: {tcp_backend}}}]
  resolution: DNS
  endpoints: [{{address: localhost}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: foo-virtual-service-egress, namespace: default}}
spec:
  hosts: [external.example.com]
  gateways: [mesh, foo-egress-gateway]
  http:
  - match: [{{gateways: [mesh], port: {p_http}}}]
    route: [{{destination: {{host: {egw}, port: {{number: {p_http}}}}}}}]
  - match: [{{gateways: [foo-egress-gateway], port: {p_http}}}]
    route: [{{destination: {{host: external.example.com, port: {{number: {p_http}}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: foo-virtual-service-egress-tls, namespace: default}}
spec:
  hosts: [ext-tls.example.com]
  gateways: [mesh, foo-egress-gateway]
  tls:
  - match: [{{gateways: [mesh], port: {p_tls}, sniHosts: [ext-tls.example.com]}}]
    route: [{{destination: {{host: {egw}, port: {{number: {p_tls}}}}}}}]
  - match: [{{gateways: [foo-egress-gateway], port: {p_tls}, sniHosts: [ext-tls.example.com]}}]
    route: [{{destination: {{host: ext-tls.example.com, port: {{number: {p_tls}}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: foo-virtual-service-egress-mysql, namespace: default}}
spec:
  exportTo: ["*"]
  hosts: [{db}]
  gateways: [mesh, foo-egress-gateway]
  tcp:
  - match: [{{gateways: [mesh], port: {p_tcp}}}]
    route: [{{destination: {{host: {egw}, port: {{number: {p_tcp}}}}}}}]
  - match: [{{gateways: [foo-egress-gateway], port: {p_tcp}}}]
    route: [{{destination: {{host: {db}, port: {{number: {p_tcp}}}}}}}]
"""


def log_lines(path, *needles, wait=10):
    """Lines of the log at path holding every needle; polls until one shows up (or wait seconds pass)."""
    deadline = time.time() + wait
    while True:
        with open(path, errors="replace") as f:
            hits = [ln for ln in f if all(n in ln for n in needles)]
        if hits or time.time() > deadline:
            return hits
        time.sleep(0.1)


def config_dump(admin):
    with urllib.request.urlopen("http://127.0.0.1:%d/config_dump" % admin, timeout=5) as r:
        return json.load(r)


def main():
    keel = keel_arg()
    tmp = tempfile.mkdtemp(prefix="keel-egress-test-")
    cert, key = os.path.join(tmp, "ext.crt"), os.path.join(tmp, "ext.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=ext-tls.example.com", "-addext",
                    "subjectAltName=DNS:ext-tls.example.com"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    hs, http_port = http_backend()
    ts, tls_port = tls_backend(sctx)
    es, tcp_port = echo_backend()
    p = {"p_http": free_port(), "p_tls": free_port(), "p_tcp": free_port()}
    out, inb, sadmin, gadmin = free_port(), free_port(), free_port(), free_port()
    cfgdir = os.path.join(tmp, "cfg")
    os.makedirs(cfgdir)
    write_atomic(os.path.join(cfgdir, "mesh.yaml"),
                 CONFIG.format(egw=EGW, db=DB, sidecar_ip=SIDECAR_IP, egress_ip=EGRESS_IP, http_backend=http_port,
                               tls_backend=tls_port, tcp_backend=tcp_port, **p))
    slog_path, glog_path = os.path.join(tmp, "sidecar.log"), os.path.join(tmp, "egressgateway.log")
    slog, glog = open(slog_path, "w"), open(glog_path, "w")
    gw = start_proxy(keel, "router", cfgdir, gadmin, glog, "--labels", "istio=egressgateway", "--namespace",
                     "istio-egress", "--concurrency", "1")
    side = start_proxy(keel, "sidecar", cfgdir, sadmin, slog, "--workload", "sleep.default", "--outbound",
                       "%s:%d" % (SIDECAR_IP, out), "--inbound", "%s:%d" % (SIDECAR_IP, inb), "--concurrency", "1")
    try:
        check("egress gateway ready", wait_ready(keel, gadmin) == 0)
        check("sidecar ready", wait_ready(keel, sadmin) == 0)
        gdump = config_dump(gadmin)["snapshot"]
        names = sorted(l["name"] for l in gdump["listeners"])
        check("egress gateway listens on its three server ports",
              names == sorted("%s_%d" % (EGRESS_IP, p[k]) for k in p), names)
        check("egress gateway: no snapshot warnings", not gdump["diagnostics"], gdump["diagnostics"])
        sdump = config_dump(sadmin)["snapshot"]
        check("sidecar: no snapshot warnings", not sdump["diagnostics"], sdump["diagnostics"])

        # ---- HTTP: curl with http_proxy = the sidecar
        env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy", "all_proxy")}
        env["http_proxy"] = "http://%s:%d" % (SIDECAR_IP, out)
        r = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "http://external.example.com:%d/hello" % p["p_http"]],
                           capture_output=True, env=env, timeout=20)
        body, _, code = r.stdout.rpartition(b"\n")
        check("HTTP: curl via the sidecar and the egress gateway reaches external.example.com",
              code == b"200" and body == b"external says hi to /hello", r)
        check("HTTP: the external server saw the request with its Host",
              ("/hello", "external.example.com:%d" % p["p_http"]) in seen["http"], seen["http"])
        hits = log_lines(slog_path, "GET /hello", "outbound|%d||%s" % (p["p_http"], EGW))
        check("HTTP: the sidecar's access log routes it to the egress gateway", len(hits) == 1 and " 200 " in hits[0],
              hits)
        hits = log_lines(glog_path, "GET /hello", "outbound|%d||external.example.com" % p["p_http"])
        check("HTTP: the egress gateway's access log routes it to the ServiceEntry", len(hits) == 1 and " 200 " in
              hits[0], hits)

        # ---- TLS by SNI: the app does TLS itself, both proxies pass it through by SNI
        cctx = ssl.create_default_context(cafile=cert)
        reply = b""
        try:
            with socket.create_connection((SIDECAR_IP, p["p_tls"]), timeout=10) as raw:
                with cctx.wrap_socket(raw, server_hostname="ext-tls.example.com") as s:
                    s.sendall(b"hello over tls\n")
                    while True:
                        b = s.recv(4096)
                        if not b:
                            break
                        reply += b
        except (OSError, ssl.SSLError) as e:
            reply = repr(e).encode()
        check("TLS: the app's TLS session reaches the external server (certificate verified end to end)",
              reply == b"tls-backend hello over tls\n", reply)
        check("TLS: the external server saw the SNI", "ext-tls.example.com" in seen["sni"], seen["sni"])
        hits = log_lines(slog_path, "outbound|%d||%s" % (p["p_tls"], EGW), "ext-tls.example.com")
        check("TLS: the sidecar's access log routes the SNI to the egress gateway", len(hits) == 1, hits)
        hits = log_lines(glog_path, "outbound|%d||ext-tls.example.com" % p["p_tls"], "ext-tls.example.com")
        check("TLS: the egress gateway's access log routes the SNI to the ServiceEntry", len(hits) == 1, hits)

        # ---- TCP: the guide's MySQL example (addresses + TCP port, resolution DNS)
        data = b"SELECT 1;\n" * 1000
        got = b""
        try:
            with socket.create_connection((SIDECAR_IP, p["p_tcp"]), timeout=10) as s:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    got += b
        except OSError as e:
            got = repr(e).encode()
        check("TCP: bytes reach the database stand-in and come back", got == data, (len(got), got[:200]))
        check("TCP: the echo server saw one connection", len(seen["tcp"]) == 1, seen["tcp"])
        hits = log_lines(slog_path, "outbound|%d||%s" % (p["p_tcp"], EGW))
        check("TCP: the sidecar's access log routes the connection to the egress gateway",
              len(hits) == 1 and " %d " % len(data) in hits[0], hits)
        hits = log_lines(glog_path, "outbound|%d||%s" % (p["p_tcp"], DB))
        check("TCP: the egress gateway's access log routes it to the database ServiceEntry",
              len(hits) == 1 and "127.0.0.1:%d" % tcp_port in hits[0], hits)
        dns = config_dump(gadmin)["dns"]
        check("TCP: the egress gateway resolved the endpoint `localhost` (resolution DNS)",
              "localhost" in json.dumps(dns) and "127.0.0.1" in json.dumps(dns), dns)

        # ---- the app cannot skip the egress gateway by accident: no direct route to external from the sidecar
        route = [t for t in sdump["routeTables"] if t["name"] == str(p["p_http"])]
        vh = [v for t in route for v in t["virtualHosts"] if "external.example.com" in v["domains"]]
        clusters = [d["cluster"] for v in vh for r in v["routes"] for d in r["action"].get("destinations", [])]
        check("sidecar: external.example.com only routes to the egress gateway",
              clusters == ["outbound|%d||%s" % (p["p_http"], EGW)], clusters)
    finally:
        stop_proxy(side)
        stop_proxy(gw)
        slog.close()
        glog.close()
        for s in (hs, ts, es):
            s.shutdown()
        cleanup(tmp, [("sidecar log", slog_path, 30), ("egress gateway log", glog_path, 30)])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
