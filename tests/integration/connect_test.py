#!/usr/bin/env python3
"""connect_test.py - CONNECT tunnels through the sidecar's outbound listener, over real sockets.

An app that uses its sidecar as https_proxy sends `CONNECT host:port`; keel
answers 200 and routes the tunnel like its outbound TCP listener for that
port: by SNI for a TLS ServiceEntry, by port for a TCP one. Checked with
curl (--proxy, HTTPS to a Python TLS server that stands in for an external
API, certificate verified end to end: the proxy never sees plain text), a
raw-socket CONNECT to a TCP echo service (the MySQL-style case), bytes the
client sends right behind its CONNECT head, a port with no TCP or TLS
service (404 NR), CONNECT on a gateway (501), and the L4 access log line
of a tunnel. Nothing asserts timings.

Usage: tests/integration/connect_test.py --keel build/debug/keel
"""
import http.server
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (check, cleanup, free_port, keel_arg, start_proxy, stop_proxy, summary,  # noqa: E402
                     wait_for_log, wait_ready, write_atomic)
from tls_test import make_cert  # noqa: E402

CONFIG = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  ports: [{{number: {tls_port}, name: tls, protocol: TLS, targetPort: {api}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db, namespace: default}}
spec:
  hosts: [db.example.com]
  location: MESH_EXTERNAL
  ports: [{{number: {tcp_port}, name: mysql, protocol: TCP, targetPort: {echo}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: app, namespace: default}}
spec: {{address: 127.0.0.1, labels: {{app: app}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |
    accessLogFile: {log}
"""


class TLSServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


def tls_api(crt, key):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            body = b"secret api answer"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    srv = TLSServer(("127.0.0.1", 0), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def echo_server():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)

    def serve(c):
        while True:
            b = c.recv(65536)
            if not b:
                c.close()
                return
            c.sendall(b)

    def loop():
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
    return s


def connect(port, target, extra=b""):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"CONNECT " + target.encode() + b" HTTP/1.1\r\nHost: " + target.encode() + b"\r\n\r\n" + extra)
    head = b""
    while b"\r\n\r\n" not in head:
        b = s.recv(1)
        if not b:
            break
        head += b
    return s, head.decode("latin-1")


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        b = s.recv(n - len(out))
        if not b:
            break
        out += b
    return out


def main():
    keel = keel_arg()
    tmp = tempfile.mkdtemp(prefix="keel-connect-test-")
    crt, key = make_cert(tmp, "api.example.com")
    api = tls_api(crt, key)
    echo = echo_server()
    out, admin, tls_port, tcp_port = free_port(), free_port(), free_port(), free_port()
    cfgdir = os.path.join(tmp, "cfg")
    os.makedirs(cfgdir)
    logpath = os.path.join(tmp, "access.log")
    write_atomic(os.path.join(cfgdir, "mesh.yaml"),
                 CONFIG.format(tls_port=tls_port, tcp_port=tcp_port, api=api.server_address[1],
                               echo=echo.getsockname()[1], log=logpath))
    proxy_log = open(os.path.join(tmp, "proxy.log"), "w")
    proc = start_proxy(keel, "sidecar", cfgdir, admin, proxy_log, "--workload", "app.default",
                       "--outbound", "127.0.0.1:%d" % out, "--concurrency", "1")
    try:
        check("ready", wait_ready(keel, admin, timeout=10) == 0)
        p = subprocess.run(["curl", "-s", "-S", "--max-time", "10", "--proxy", "http://127.0.0.1:%d" % out,
                            "--cacert", crt, "https://api.example.com:%d/v1/thing" % tls_port],
                           capture_output=True, timeout=20)
        check("curl https via the sidecar (CONNECT, routed by SNI, certificate verified end to end)",
              p.returncode == 0 and p.stdout == b"secret api answer", (p.returncode, p.stdout, p.stderr[-300:]))

        s, head = connect(out, "db.example.com:%d" % tcp_port)
        check("CONNECT to a TCP service: 200 Connection established", head.startswith("HTTP/1.1 200"), head)
        s.sendall(b"SELECT 1;")
        check("bytes go both ways through the tunnel", recv_exact(s, 9) == b"SELECT 1;")
        big = os.urandom(300000)
        threading.Thread(target=s.sendall, args=(big,), daemon=True).start()
        check("300 KB echoed intact", recv_exact(s, len(big)) == big)
        s.close()

        s, head = connect(out, "db.example.com:%d" % tcp_port, extra=b"early bytes")
        got = recv_exact(s, 11)
        s.close()
        check("bytes sent right behind the CONNECT head are not lost", head.startswith("HTTP/1.1 200") and
              got == b"early bytes", (head, got))

        s, head = connect(out, "nowhere.example.com:%d" % free_port())
        s.close()
        check("CONNECT to a port with no TCP or TLS service: 404", head.startswith("HTTP/1.1 404"), head)

        log = wait_for_log(logpath, r"outbound\|%d\|\|db\.example\.com" % tcp_port)
        check("the tunnel is logged as an L4 session to the TCP service's cluster",
              re.search(r"outbound\|%d\|\|db\.example\.com" % tcp_port, log) is not None, log[-600:])
    finally:
        stop_proxy(proc)
        proxy_log.close()
        api.shutdown()
        echo.close()
        cleanup(tmp, [("proxy log", os.path.join(tmp, "proxy.log"), 40)])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
