#!/usr/bin/env python3
"""upstream_tls_test.py - TLS origination to upstreams (DestinationRule `tls`), over real sockets.

A test CA (openssl CLI) signs a server certificate for backend.test and a
client certificate. Two HTTPS upstreams from Python's ssl module: one plain
TLS, one that requires a client certificate from that CA. A keel gateway
routes by path to ServiceEntries whose DestinationRules originate TLS:
SIMPLE with the CA (200), with the wrong CA (503 UF), with
insecureSkipVerify (200), with subjectAltNames that match (200) or not (503),
MUTUAL with the client certificate (200), and SIMPLE to the upstream that
wants a client certificate (503). Keep-alive over TLS is checked by counting
the upstream's connections. Nothing asserts timings.

Usage: tests/integration/upstream_tls_test.py --keel build/debug/keel
"""
import http.server
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (check, cleanup, free_port, http_get, keel_arg, start_proxy, stop_proxy, summary,  # noqa: E402
                     wait_ready, write_atomic)


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki(d):
    """A CA, a server certificate for backend.test and a client certificate, all signed by the CA; plus an
    unrelated self-signed CA. Returns a dict of paths."""
    p = {k: os.path.join(d, k) for k in ("ca.crt", "ca.key", "srv.crt", "srv.key", "cli.crt", "cli.key",
                                         "other.crt", "other.key")}
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p["ca.key"], "-out", p["ca.crt"],
            "-days", "2", "-subj", "/CN=keel-test-ca")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p["other.key"], "-out", p["other.crt"],
            "-days", "2", "-subj", "/CN=other-ca")
    for name, cn in (("srv", "backend.test"), ("cli", "client.test")):
        csr = os.path.join(d, name + ".csr")
        ext = os.path.join(d, name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:%s\n" % cn)
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", p[name + ".key"], "-out", csr, "-subj",
                "/CN=" + cn)
        openssl("x509", "-req", "-in", csr, "-CA", p["ca.crt"], "-CAkey", p["ca.key"], "-CAcreateserial",
                "-out", p[name + ".crt"], "-days", "2", "-extfile", ext)
    return p


class TLSServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name, pki, require_client_cert):
        super().__init__(("127.0.0.1", 0), self.handler(name))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki["srv.crt"], pki["srv.key"])
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(pki["ca.crt"])
        self.ctx = ctx
        self.connections = 0
        self.lock = threading.Lock()

    def handle_error(self, request, client_address):
        pass  # refused handshakes are part of the test

    def get_request(self):
        sock, addr = self.socket.accept()
        with self.lock:
            self.connections += 1
        return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    @staticmethod
    def handler(name):
        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                try:
                    self.connection.do_handshake()
                except (ssl.SSLError, OSError):
                    return
                peer = self.connection.getpeercert()
                info = {"name": name, "path": self.path, "sni": getattr(self.connection, "server_hostname", None),
                        "client_cert": dict(x[0] for x in peer["subject"]).get("commonName") if peer else None,
                        "tls": self.connection.version()}
                body = json.dumps(info).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        return H


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
{routes}
{entries}
"""

CASES = [
    # name, server, tls settings
    ("simple", "plain", "mode: SIMPLE, caCertificates: {ca}, sni: backend.test"),
    ("wrongca", "plain", "mode: SIMPLE, caCertificates: {other}, sni: backend.test"),
    ("skip", "plain", "mode: SIMPLE, insecureSkipVerify: true"),
    ("sanok", "plain", "mode: SIMPLE, caCertificates: {ca}, sni: backend.test, subjectAltNames: [backend.test]"),
    ("sanbad", "plain", "mode: SIMPLE, caCertificates: {ca}, sni: backend.test, subjectAltNames: [nope.test]"),
    ("mutual", "mtls", "mode: MUTUAL, caCertificates: {ca}, sni: backend.test, clientCertificate: {cli}, "
                       "privateKey: {clikey}"),
    ("nocert", "mtls", "mode: SIMPLE, caCertificates: {ca}, sni: backend.test"),
]


def main():
    keel = keel_arg()
    tmp = tempfile.mkdtemp(prefix="keel-uptls-test-")
    pki = make_pki(tmp)
    servers = {"plain": TLSServer("plain", pki, False), "mtls": TLSServer("mtls", pki, True)}
    for s in servers.values():
        threading.Thread(target=s.serve_forever, daemon=True).start()
    gw, admin = free_port(), free_port()
    routes, entries = [], []
    for name, srv, tls in CASES:
        host = "%s.tls.test" % name
        routes.append("  - match: [{uri: {prefix: /%s}}]\n    route: [{destination: {host: %s}}]" % (name, host))
        entries.append("""---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %s, namespace: istio-system}
spec:
  hosts: [%s]
  location: MESH_EXTERNAL
  ports: [{number: 443, name: https, protocol: HTTPS, targetPort: %d}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: %s, namespace: istio-system}
spec:
  host: %s
  trafficPolicy:
    tls: {%s}""" % (name, host, servers[srv].server_address[1], name, host,
                    tls.format(ca=pki["ca.crt"], other=pki["other.crt"], cli=pki["cli.crt"], clikey=pki["cli.key"])))
    cfgdir = os.path.join(tmp, "config")
    os.makedirs(cfgdir)
    write_atomic(os.path.join(cfgdir, "mesh.yaml"), CONFIG.format(gw=gw, routes="\n".join(routes),
                                                                 entries="\n".join(entries)))
    proxy_log = open(os.path.join(tmp, "proxy.log"), "w")
    proc = start_proxy(keel, "router", cfgdir, admin, proxy_log, "--concurrency", "1", "--log-level", "debug")
    try:
        check("keel proxy wait returns once ready", wait_ready(keel, admin, timeout=10) == 0)

        def get(name):
            status, body = http_get(gw, "/" + name)
            try:
                return status, json.loads(body)
            except ValueError:
                return status, {}

        status, info = get("simple")
        check("SIMPLE with caCertificates: 200 over TLS", status == 200 and info.get("tls", "").startswith("TLSv1"),
              (status, info))
        check("SNI sent", info.get("sni") in (None, "backend.test"), info)
        status, _ = get("wrongca")
        check("SIMPLE with the wrong CA: 503 (the certificate is refused)", status == 503, status)
        status, _ = get("skip")
        check("insecureSkipVerify: 200", status == 200, status)
        status, _ = get("sanok")
        check("subjectAltNames that match: 200", status == 200, status)
        status, _ = get("sanbad")
        check("subjectAltNames that do not match: 503", status == 503, status)
        status, info = get("mutual")
        check("MUTUAL presents the client certificate", status == 200 and info.get("client_cert") == "client.test",
              (status, info))
        status, _ = get("nocert")
        check("SIMPLE to an upstream that wants a client certificate: 503", status == 503, status)

        before = servers["plain"].connections
        ok = all(get("simple")[0] == 200 for _ in range(20))
        used = servers["plain"].connections - before
        check("20 requests over TLS keep-alive use few connections", ok and used <= 2, used)
        with open(os.path.join(tmp, "proxy.log")) as f:
            plog = f.read()
        check("the refused certificate is logged with OpenSSL's reason",
              re.search(r"TLS to 127\.0\.0\.1:\d+ \(SNI backend\.test\) failed: .*certificate verify failed", plog)
              is not None, plog[-800:])
    finally:
        stop_proxy(proc)
        proxy_log.close()
        for s in servers.values():
            s.shutdown()
        cleanup(tmp, [("proxy log", os.path.join(tmp, "proxy.log"), 40)])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
