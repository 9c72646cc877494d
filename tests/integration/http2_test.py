#!/usr/bin/env python3
"""http2_test.py - HTTP/2 clients through `keel proxy router`, over real sockets.

Clients: curl (--http2-prior-knowledge for h2c, ALPN over TLS), h2load (many
streams on few connections) and a hand-written frame exchange over a raw
socket for the protocol-error cases. Upstreams are Python HTTP/1.1 servers
(proxy_test.py's handler): keel translates each HTTP/2 stream into an
HTTP/1.1 exchange and back. Checked: routing and header ops, local replies
(404 NR, direct response, 503 UF) on a stream, large bodies both ways (with
and without Content-Length, so the upstream sees chunked), a chunked response
turned into DATA frames, HEAD, many concurrent streams with a slow one among
them, x-forwarded-proto over TLS, the access log's protocol, the HTTP/2
connection counter, and that garbage after the preface ends only that
connection. Nothing asserts timings.

Usage: tests/integration/http2_test.py --keel build/debug/keel
"""
import hashlib
import http.server
import os
import re
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (check, cleanup, free_port, http_get, keel_arg, pattern, serve, start_proxy,  # noqa: E402
                     stop_proxy, summary, wait_ready, write_atomic)
from proxy_test import make_handler  # noqa: E402
from tls_test import make_cert  # noqa: E402

CONFIG = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: ingress, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {gw}, name: http, protocol: HTTP}}
    hosts: ["*"]
  - port: {{number: {gws}, name: https, protocol: HTTPS}}
    hosts: ["*"]
    tls: {{mode: SIMPLE, serverCertificate: {crt}, privateKey: {key}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: routes, namespace: istio-system}}
spec:
  hosts: ["*"]
  gateways: [ingress]
  http:
  - name: direct
    match: [{{uri: {{exact: /version}}}}]
    directResponse: {{status: 200, body: {{string: "h2 ok\\n"}}}}
  - name: dead
    match: [{{uri: {{prefix: /dead}}}}]
    route: [{{destination: {{host: dead.example.com}}}}]
  - name: rest
    match: [{{uri: {{prefix: /}}}}]
    headers:
      response:
        set: {{x-served-by: keel}}
    route: [{{destination: {{host: app.example.com}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: app, namespace: istio-system}}
spec:
  hosts: [app.example.com]
  location: MESH_INTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {up}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: dead, namespace: istio-system}}
spec:
  hosts: [dead.example.com]
  location: MESH_INTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {dead}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |
    accessLogFile: {log}
"""


class Upstream(http.server.ThreadingHTTPServer):
    request_queue_size = 256  # h2load opens many upstream connections at once


def curl(*args, data=None):
    """Runs curl; returns (status code, headers text, body bytes)."""
    p = subprocess.run(["curl", "-s", "-S", "--max-time", "20", "-D", "-", *args], input=data,
                       capture_output=True)
    out = p.stdout
    # the header block(s) end at the first blank line after the final status line
    head, _, body = out.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/(\S+) (\d+)", head)
    return (int(m.group(2)) if m else 0), head.decode("latin-1"), body, (m.group(1).decode() if m else "")


def h2load(*args):
    p = subprocess.run(["h2load", *args], capture_output=True, text=True, timeout=120)
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", p.stdout)
    return tuple(int(x) for x in m.groups()) if m else None, p.stdout


def frame(ftype, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


def main():
    keel = keel_arg()
    tmp = tempfile.mkdtemp(prefix="keel-http2-test-")
    upstream, up = serve(Upstream, make_handler("v1"))
    gw, gws, admin, dead = free_port(), free_port(), free_port(), free_port()
    crt, key = make_cert(tmp, "h2.example.com")
    cfgdir = os.path.join(tmp, "config")
    os.makedirs(cfgdir)
    logpath = os.path.join(tmp, "access.log")
    write_atomic(os.path.join(cfgdir, "mesh.yaml"),
                 CONFIG.format(gw=gw, gws=gws, up=up, dead=dead, log=logpath, crt=crt, key=key))
    proxy_log = open(os.path.join(tmp, "proxy.log"), "w")
    proc = start_proxy(keel, "router", cfgdir, admin, proxy_log, "--concurrency", "2")
    base = "http://127.0.0.1:%d" % gw
    h2c = "--http2-prior-knowledge"
    try:
        check("keel proxy wait returns once ready", wait_ready(keel, admin, timeout=10) == 0)

        # --- h2c with prior knowledge
        code, head, body, ver = curl(h2c, base + "/hello?x=1", "-H", "x-custom: yes")
        check("h2c request answered over HTTP/2", code == 200 and ver == "2", (code, ver, head))
        check("routed to the HTTP/1.1 upstream with path, query and headers",
              b'"path": "/hello?x=1"' in body and b'"x-custom": "yes"' in body, body[:300])
        check("upstream saw a Host from :authority", b'"host": "127.0.0.1:%d"' % gw in body, body[:300])
        check("x-forwarded-proto http, x-request-id added",
              b'"x-forwarded-proto": "http"' in body and b'"x-request-id"' in body, body[:400])
        check("route response header ops on HTTP/2", "x-served-by: keel" in head, head)
        check("response field names are lower case", "X-Upstream" not in head and "x-upstream: v1" in head, head)
        code, head, body, ver = curl(h2c, base + "/version")
        check("direct response on a stream", code == 200 and body == b"h2 ok\n" and ver == "2", (code, body))
        code, head, body, ver = curl(h2c, "-H", "host: nowhere", base + "/version")
        check("Host given as a header still routes (wildcard host)", code == 200, code)
        code, head, body, ver = curl(h2c, base + "/dead/x")
        check("dead upstream -> 503 on the stream", code == 503 and ver == "2", (code, body))
        code, head, body, ver = curl(h2c, "--head", base + "/big/1000")
        check("HEAD: head only, with the upstream's content-length",
              code == 200 and "content-length: 1000" in head, (code, head))

        # --- bodies both ways
        big = 4 * 1024 * 1024
        code, head, body, ver = curl(h2c, base + "/big/%d" % big)
        check("4 MiB response intact over HTTP/2 (flow control, back-pressure)",
              code == 200 and body == pattern(big), (code, len(body)))
        code, head, body, ver = curl(h2c, base + "/chunked/300000")
        check("chunked upstream response becomes DATA frames, intact",
              code == 200 and body == pattern(300000), (code, len(body)))
        payload = pattern(2 * 1024 * 1024 + 3, b"up")
        path = os.path.join(tmp, "payload.bin")
        with open(path, "wb") as f:
            f.write(payload)
        sha = hashlib.sha256(payload).hexdigest()
        code, head, body, ver = curl(h2c, "--data-binary", "@" + path, base + "/upload")
        check("2 MiB request body with content-length intact", code == 200 and ("x-body-sha: " + sha) in head,
              (code, head[-300:]))
        code, head, body, ver = curl(h2c, "-X", "POST", "-T", "-", base + "/upload", data=payload)
        check("request body of unknown length (chunked upstream) intact",
              code == 200 and ("x-body-sha: " + sha) in head, (code, head[-300:]))

        # --- many streams on few connections, a slow one among them
        res, out = h2load("-n", "4000", "-c", "4", "-m", "16", base + "/stream")
        check("h2load: 4000 requests, 4 connections x 16 streams, none failed",
              res is not None and res[0] == 4000 and res[2] == 4000 and res[3] == 0, out[-600:])
        p = subprocess.run(["curl", "-s", h2c, "-Z", "--parallel-immediate", "-o", "/dev/null", "-o", "/dev/null",
                            "-o", "/dev/null", "-w", "%{http_code} %{http_version}\\n",
                            base + "/delay/300", base + "/version", base + "/a"], capture_output=True, text=True)
        lines = p.stdout.split()
        check("three multiplexed streams, one slow: all 200 over HTTP/2",
              lines.count("200") == 3 and lines.count("2") == 3, p.stdout)

        # --- TLS with ALPN h2
        code, head, body, ver = curl("--http2", "-k", "--resolve", "h2.example.com:%d:127.0.0.1" % gws,
                                     "https://h2.example.com:%d/tls" % gws)
        check("ALPN h2 over TLS", code == 200 and ver == "2", (code, ver))
        check("x-forwarded-proto https over TLS", b'"x-forwarded-proto": "https"' in body, body[:400])
        code, head, body, ver = curl("--http1.1", "-k", "--resolve", "h2.example.com:%d:127.0.0.1" % gws,
                                     "https://h2.example.com:%d/tls" % gws)
        check("a client offering only http/1.1 still gets HTTP/1.1", code == 200 and ver == "1.1", (code, ver))

        # --- protocol errors stay on their connection
        s = socket.create_connection(("127.0.0.1", gw), timeout=5)
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0) + b"\xff" * 64)
        got = b""
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                got += b
        except socket.timeout:
            pass
        s.close()
        check("garbage after the preface: GOAWAY and close", b"\x07" in got[:200] and len(got) > 0, got[:80])
        s = socket.create_connection(("127.0.0.1", gw), timeout=5)
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
        got = b""
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                got += b
        except (socket.timeout, ConnectionResetError):
            pass
        s.close()
        check("a broken preface is an HTTP/1.1 request the parser refuses",
              re.match(rb"HTTP/1\.1 (4|5)\d\d ", got) is not None, got[:80])
        code, _, _, ver = curl(h2c, base + "/version")
        check("the proxy still serves after protocol errors", code == 200, code)
        status, _ = http_get(gw, "/version")
        check("HTTP/1.1 on the same port still works", status == 200, status)

        # --- observability
        status, text = http_get(admin, "/stats/prometheus")
        m = re.search(r"^envoy_http_downstream_cx_http2_total (\d+)$", text.decode(), re.M)
        check("HTTP/2 connections counted", m is not None and int(m.group(1)) >= 8, m and m.group(0))
        with open(logpath) as f:
            log = f.read()
        check("access log says HTTP/2", re.search(r'"GET /hello\?x=1 HTTP/2"', log) is not None, log[:400])
        check("access log: 503 UF on the dead route", re.search(r'"GET /dead/x HTTP/2" 503 UF', log) is not None,
              [ln for ln in log.splitlines() if "/dead" in ln])
    finally:
        stop_proxy(proc)
        proxy_log.close()
        upstream.shutdown()
        cleanup(tmp, [("proxy log", os.path.join(tmp, "proxy.log"), 40)])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
