#!/usr/bin/env python3
"""tcp_test.py - L4 proxying in `keel proxy`: TCP routes and TLS passthrough.

Starts small TCP servers (Python's standard library: echo, sink, banner,
TLS backends with a self-signed certificate made by `openssl req`), a keel
proxy acting as an ingress gateway with TCP, TLS PASSTHROUGH and
AUTO_PASSTHROUGH servers, and a keel sidecar with a TCP service port.
Checks: 10 MiB both ways through a VirtualService tcp route, byte for byte;
back-pressure with a client that does not read; half-close in both
directions; server-first protocols; a 70/30 weighted tcp route; parallel
sessions; a dead upstream (closed, UF in the access log); the idle timeout
and maxConnectionDuration (DT) of a DestinationRule; the circuit breaker
connectionPool.tcp.maxConnections (a session over it is closed without
reaching the backend, UO, envoy_cluster_upstream_cx_overflow; the count is
released by a close, a connect failure and the idle timeout); TLS passthrough by SNI
to two backends (Python ssl and `openssl s_client`, certificates verified
end to end, SNI case-insensitive, a ClientHello arriving in pieces);
AUTO_PASSTHROUGH by `outbound_.` SNI; unknown SNI, no SNI and plain text on
the TLS port (closed, NR); stats; a config reload that leaves open sessions
alone; the sidecar's TCP listener; and SIGTERM: open sessions relay during
the drain, one left open is closed at its end (and logged), exit 0.
Nothing asserts timings.

Usage: tests/integration/tcp_test.py --keel build/debug/keel
"""
import hashlib
import json
import os
import re
import signal
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
from harness import (check, cleanup, free_port, http_get, keel_arg, metric, pattern, serve,  # noqa: E402
                     start_proxy, stop_proxy, summary, wait_ready, write_atomic)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    request_queue_size = 128  # socketserver's default backlog of 5 drops handshakes of the parallel sessions


def serve_tcp(handler_fn):
    """A threaded TCP server on a free port calling handler_fn(sock) per connection."""
    class H(socketserver.BaseRequestHandler):
        def handle(self):
            try:
                handler_fn(self.request)
            except OSError:
                pass

    return serve(Server, H)


def echo(sock):
    """Echoes until EOF, then half-closes: the client sees EOF after the last byte."""
    while True:
        b = sock.recv(65536)
        if not b:
            break
        sock.sendall(b)
    sock.shutdown(socket.SHUT_WR)


held_accepts = [0]  # connections the circuit-breaker backend accepted


def held_echo(sock):
    """The circuit-breaker backend: counts its connections, then echoes and holds them open until the client's EOF."""
    held_accepts[0] += 1
    echo(sock)


def sink(sock):
    """Reads until EOF (the client's half-close), then answers with what it got."""
    h = hashlib.sha256()
    n = 0
    while True:
        b = sock.recv(65536)
        if not b:
            break
        h.update(b)
        n += len(b)
    sock.sendall(b"got %d %s\n" % (n, h.hexdigest().encode()))


banner_log = {"one": [], "two": []}


def banner(name):
    """Server-first: speaks at once, closes its side, then reads what the client still sends."""
    def handle(sock):
        sock.sendall(b"banner %s\n" % name.encode())
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            b = sock.recv(65536)
            if not b:
                break
            data += b
        banner_log[name].append(data)
    return handle


def tls_backend(name, ctx):
    def handle(sock):
        s = ctx.wrap_socket(sock, server_side=True)
        line = b""
        while not line.endswith(b"\n"):
            b = s.recv(4096)
            if not b:
                break
            line += b
        s.sendall(b"backend-%s %s" % (name.encode(), line))
        s.close()
    return handle


CONFIG = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: ingress, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {p_echo}, name: tcp-echo, protocol: TCP}}
    hosts: ["*"]
  - port: {{number: {p_sink}, name: tcp-sink, protocol: TCP}}
    hosts: ["*"]
  - port: {{number: {p_banner}, name: tcp-banner, protocol: TCP}}
    hosts: ["*"]
  - port: {{number: {p_dead}, name: tcp-dead, protocol: TCP}}
    hosts: ["*"]
  - port: {{number: {p_idle}, name: tcp-idle, protocol: TCP}}
    hosts: ["*"]
  - port: {{number: {p_dur}, name: tcp-duration, protocol: TCP}}
    hosts: ["*"]
  - port: {{number: {p_cb}, name: tcp-cb, protocol: TCP}}
    hosts: ["*"]
  - port: {{number: {p_tls}, name: tls, protocol: TLS}}
    hosts: ["*.example.com"]
    tls: {{mode: PASSTHROUGH}}
  - port: {{number: {p_auto}, name: tls-auto, protocol: TLS}}
    hosts: ["*"]
    tls: {{mode: AUTO_PASSTHROUGH}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: tcp, namespace: istio-system}}
spec:
  hosts: ["*"]
  gateways: [ingress]
  tcp:
  - match: [{{port: {p_echo}}}]
    route: [{{destination: {{host: echo.internal, port: {{number: 9000}}}}}}]
  - match: [{{port: {p_sink}}}]
    route: [{{destination: {{host: sink.internal, port: {{number: 9001}}}}}}]
  - match: [{{port: {p_banner}}}]
    route:
    - destination: {{host: banner.internal, subset: one}}
      weight: 70
    - destination: {{host: banner.internal, subset: two}}
      weight: 30
  - match: [{{port: {p_dead}}}]
    route: [{{destination: {{host: dead.internal}}}}]
  - match: [{{port: {p_idle}}}]
    route: [{{destination: {{host: idle.internal}}}}]
  - match: [{{port: {p_dur}}}]
    route: [{{destination: {{host: duration.internal}}}}]
  - match: [{{port: {p_cb}}}]
    route: [{{destination: {{host: cb.internal}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: tls-a, namespace: istio-system}}
spec:
  hosts: [a.example.com]
  gateways: [ingress]
  tls:
  - match: [{{port: {p_tls}, sniHosts: [a.example.com]}}]
    route: [{{destination: {{host: tls-a.internal, port: {{number: 443}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: tls-b, namespace: istio-system}}
spec:
  hosts: [b.example.com]
  gateways: [ingress]
  tls:
  - match: [{{port: {p_tls}, sniHosts: [b.example.com]}}]
    route: [{{destination: {{host: tls-b.internal, port: {{number: 443}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: backends, namespace: istio-system}}
spec:
  hosts: [echo.internal]
  location: MESH_INTERNAL
  ports: [{{number: 9000, name: tcp, protocol: TCP, targetPort: {echo}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: sink, namespace: istio-system}}
spec:
  hosts: [sink.internal]
  location: MESH_INTERNAL
  ports: [{{number: 9001, name: tcp, protocol: TCP, targetPort: {sink}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: banner, namespace: istio-system}}
spec:
  hosts: [banner.internal]
  location: MESH_INTERNAL
  ports: [{{number: 9002, name: tcp, protocol: TCP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{tcp: {banner1}}}, labels: {{b: one}}}}
  - {{address: 127.0.0.1, ports: {{tcp: {banner2}}}, labels: {{b: two}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: banner, namespace: istio-system}}
spec:
  host: banner.internal
  subsets: [{{name: one, labels: {{b: one}}}}, {{name: two, labels: {{b: two}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: dead, namespace: istio-system}}
spec:
  hosts: [dead.internal]
  location: MESH_INTERNAL
  ports: [{{number: 9003, name: tcp, protocol: TCP, targetPort: {dead}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: dead, namespace: istio-system}}
spec:
  host: dead.internal
  trafficPolicy: {{connectionPool: {{tcp: {{maxConnections: 1}}}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: idle, namespace: istio-system}}
spec:
  hosts: [idle.internal]
  location: MESH_INTERNAL
  ports: [{{number: 9004, name: tcp, protocol: TCP, targetPort: {echo}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: idle, namespace: istio-system}}
spec:
  host: idle.internal
  trafficPolicy: {{connectionPool: {{tcp: {{idleTimeout: 1s, maxConnections: 1}}}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: duration, namespace: istio-system}}
spec:
  hosts: [duration.internal]
  location: MESH_INTERNAL
  ports: [{{number: 9005, name: tcp, protocol: TCP, targetPort: {echo}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: duration, namespace: istio-system}}
spec:
  host: duration.internal
  trafficPolicy: {{connectionPool: {{tcp: {{maxConnectionDuration: 1s}}}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: cb, namespace: istio-system}}
spec:
  hosts: [cb.internal]
  location: MESH_INTERNAL
  ports: [{{number: 9006, name: tcp, protocol: TCP, targetPort: {held}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: cb, namespace: istio-system}}
spec:
  host: cb.internal
  trafficPolicy: {{connectionPool: {{tcp: {{maxConnections: 2}}}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: tls-a, namespace: istio-system}}
spec:
  hosts: [tls-a.internal]
  location: MESH_INTERNAL
  ports: [{{number: 443, name: tls, protocol: TLS, targetPort: {tls_a}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: tls-b, namespace: istio-system}}
spec:
  hosts: [tls-b.internal]
  location: MESH_INTERNAL
  ports: [{{number: 443, name: tls, protocol: TLS, targetPort: {tls_b}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |
    accessLogFile: {log}
# generation {gen}
"""

SIDECAR_CONFIG = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db, namespace: default}}
spec:
  hosts: [db.example.com]
  location: MESH_EXTERNAL
  ports: [{{number: {port}, name: tcp-db, protocol: TCP, targetPort: {echo}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"""


def connect(port, timeout=10):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_all(s, limit=1 << 30):
    out = b""
    try:
        while len(out) < limit:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except (socket.timeout, ConnectionResetError):
        pass
    return out


def read_all_n(s, n):
    out = b""
    while len(out) < n:
        b = s.recv(n - len(out))
        if not b:
            break
        out += b
    return out


def closed_by_peer(s):
    """True when the proxy closes the connection (EOF or reset) without sending anything."""
    try:
        return s.recv(4096) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def echo_session(port, payload):
    """Sends payload while reading the echo; returns what came back before EOF."""
    s = connect(port, timeout=30)
    got = []

    def reader():
        got.append(read_all(s))
    t = threading.Thread(target=reader)
    t.start()
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    t.join()
    s.close()
    return got[0]


def tls_client(port, host, cafile, payload=b"hello\n", check_name=True):
    ctx = ssl.create_default_context(cafile=cafile)
    if host is None or not check_name:
        ctx.check_hostname = False
    raw = connect(port)
    s = ctx.wrap_socket(raw, server_hostname=host)
    s.sendall(payload)
    data = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        data += b
    s.close()
    return data


def tls_dribble(port, host, cafile, chunk, payload=b"dribble\n"):
    """A TLS client whose ClientHello leaves in `chunk`-byte writes (so the proxy sees it in pieces)."""
    ctx = ssl.create_default_context(cafile=cafile)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=host)
    s = connect(port)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    first = True
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            data = out.read()
            if first:
                for i in range(0, len(data), chunk):
                    s.sendall(data[i:i + chunk])
                    time.sleep(0.001)
                first = False
            else:
                s.sendall(data)
            b = s.recv(65536)
            if not b:
                raise ConnectionError("closed during the handshake")
            inc.write(b)
    s.sendall(out.read())
    obj.write(payload)
    s.sendall(out.read())
    got = b""
    while True:
        try:
            got += obj.read(4096)
        except ssl.SSLWantReadError:
            b = s.recv(65536)
            if not b:
                break
            inc.write(b)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            break
    s.close()
    return got


def admin_metric(admin, name):
    body = http_get(admin, "/stats/prometheus", timeout=10)[1].decode()
    return metric(body, name), body


def wait_for(pred, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return pred()


def main():
    keel = keel_arg()
    tmp = tempfile.mkdtemp(prefix="keel-tcp-test-")

    # a self-signed certificate both TLS backends present; clients verify it (so TLS is end to end)
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=a.example.com",
                    "-addext", "subjectAltName=DNS:a.example.com,DNS:b.example.com,DNS:c.example.com"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)

    servers = []
    for fn in (echo, sink, banner("one"), banner("two"), tls_backend("a", sctx), tls_backend("b", sctx), held_echo):
        servers.append(serve_tcp(fn))
    (_, echo_p), (_, sink_p), (_, b1), (_, b2), (_, tls_a), (_, tls_b), (_, held_p) = servers
    ports = dict(p_echo=free_port(), p_sink=free_port(), p_banner=free_port(), p_dead=free_port(),
                 p_idle=free_port(), p_dur=free_port(), p_tls=free_port(),
                 p_auto=free_port(), p_cb=free_port())
    admin, dead = free_port(), free_port()
    cfgdir = os.path.join(tmp, "config")
    os.makedirs(cfgdir)
    logpath = os.path.join(tmp, "access.log")
    cfgfile = os.path.join(cfgdir, "mesh.yaml")

    def write_config(gen):
        write_atomic(cfgfile, CONFIG.format(echo=echo_p, sink=sink_p, banner1=b1, banner2=b2, dead=dead, tls_a=tls_a,
                                            tls_b=tls_b, held=held_p, log=logpath, gen=gen, **ports))

    def log_lines():
        try:
            return open(logpath).read().splitlines()
        except FileNotFoundError:
            return []

    write_config(1)
    proxy_log = open(os.path.join(tmp, "proxy.log"), "w")
    proc = start_proxy(keel, "router", cfgdir, admin, proxy_log, "--concurrency", "2", "--drain", "3")
    side = None
    try:
        rc = wait_ready(keel, admin, timeout=10)
        check("keel proxy wait returns once ready", rc == 0)

        # --- bytes both ways
        big = pattern(10 * 1024 * 1024)
        back = echo_session(ports["p_echo"], big)
        check("10 MiB through a tcp route and back, byte for byte", back == big, (len(back), len(big)))

        # --- back-pressure: the client does not read while it sends, so every buffer on the way fills up
        data = pattern(48 * 1024 * 1024, b"bp")
        s = connect(ports["p_echo"], timeout=60)
        sent = [0]

        def sender():
            view = memoryview(data)
            for i in range(0, len(data), 1 << 16):
                s.sendall(view[i:i + (1 << 16)])
                sent[0] = i + (1 << 16)
            s.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=sender)
        t.start()
        last = -1
        while sent[0] != last and sent[0] < len(data):  # until the sender blocks (or is done)
            last = sent[0]
            time.sleep(0.3)
        stalled_at = sent[0]
        rss = 0
        with open("/proc/%d/status" % proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        back = read_all(s)
        t.join()
        s.close()
        print("     back-pressure: sender stalled at %d of %d bytes, proxy RSS %d MiB" %
              (stalled_at, len(data), rss >> 20))
        check("stalled reader: 48 MiB echoed intact through back-pressure", back == data, (len(back), len(data)))
        n, _ = admin_metric(admin, "envoy_tcp_downstream_flow_control_paused_reading_total")
        check("stalled reader: reading from the client was paused", n is not None and n >= 1, n)

        s = connect(ports["p_echo"])
        s.sendall(b"ping\n")
        check("small exchange", read_all_n(s, 5) == b"ping\n")
        s.close()

        # --- half-close: the client's EOF reaches the server, the answer still comes back
        payload = pattern(3 * 1024 * 1024 + 5, b"sink")
        s = connect(ports["p_sink"], timeout=30)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        answer = read_all(s)
        s.close()
        want = b"got %d %s\n" % (len(payload), hashlib.sha256(payload).hexdigest().encode())
        check("client half-close: server sees EOF after every byte, answer comes back", answer == want,
              (answer, want))

        # --- server-first, and the server's half-close: the client reads EOF and can still send
        s = connect(ports["p_banner"])
        first = b""
        while not first.endswith(b"\n"):
            b = s.recv(100)
            if not b:
                break
            first += b
        check("server-first protocol: banner arrives before the client sends", first.startswith(b"banner "), first)
        eof = s.recv(100) == b""
        check("server half-close reaches the client as EOF", eof)
        name = first.split()[1].decode() if first.startswith(b"banner ") else "one"
        before = len(banner_log[name])
        s.sendall(b"still talking")
        s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        rest = read_all(s)
        s.close()
        ok = wait_for(lambda: len(banner_log[name]) > before)
        check("after the server's EOF, client bytes still reach it",
              ok and banner_log[name][-1] == b"still talking" and rest == b"", (banner_log[name][-1:], rest))

        # --- weighted tcp route (70/30)
        counts = {"one": 0, "two": 0}
        for _ in range(300):
            s = connect(ports["p_banner"])
            line = read_all(s)
            s.close()
            if line.startswith(b"banner "):
                counts[line.split()[1].decode()] += 1
        frac = counts["one"] / 300.0
        print("     weights: 300 connections -> one %.1f%%, two %.1f%%" % (100 * frac, 100 - 100 * frac))
        check("70/30 weighted tcp route (one within 60-80%)", 0.60 <= frac <= 0.80 and sum(counts.values()) == 300,
              counts)

        # --- parallel sessions
        results = []

        def one(i):
            data = pattern(200 * 1024 + i, b"p%d" % i)
            results.append(echo_session(ports["p_echo"], data) == data)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check("24 parallel sessions intact", len(results) == 24 and all(results), results)

        # --- dead upstream
        s = connect(ports["p_dead"])
        check("dead upstream: connection closed", closed_by_peer(s))
        s.close()
        lines = wait_for(lambda: [l for l in log_lines() if "dead.internal" in l])
        check("access log: UF for a dead upstream, with cluster and host",
              lines and " UF " in lines[0] and "outbound|9003||dead.internal" in lines[0]
              and ("127.0.0.1:%d" % dead) in lines[0], lines[:1])
        if lines:
            print("     log: " + lines[0])
        # dead.internal has maxConnections: 1; the failed connect released it, so this one is tried again (UF, not UO)
        s = connect(ports["p_dead"])
        check("dead upstream: connection closed again", closed_by_peer(s))
        s.close()
        lines = wait_for(lambda: [l for l in log_lines() if "dead.internal" in l][1:])
        check("maxConnections 1: a failed connect releases its connection (the next one is UF, not UO)",
              lines and " UF " in lines[0], lines[:1])
        lines = [l for l in log_lines() if "echo.internal" in l]
        check("access log: a TCP line in Istio's format (\"- - -\" 0 - ..., bytes both ways)",
              any(l.split(" ")[1:5] == ['"-', "-", '-"', "0"] and (" %d %d " % (len(big), len(big))) in l
                  for l in lines), lines[:2])

        # --- TLS passthrough by SNI
        r = tls_client(ports["p_tls"], "a.example.com", cert)
        check("TLS passthrough: SNI a.example.com reaches backend a (certificate verified end to end)",
              r == b"backend-a hello\n", r)
        r = tls_client(ports["p_tls"], "b.example.com", cert)
        check("TLS passthrough: SNI b.example.com reaches backend b", r == b"backend-b hello\n", r)
        r = tls_dribble(ports["p_tls"], "a.example.com", cert, 5)
        check("ClientHello arriving in 5-byte pieces: routed and replayed intact", r == b"backend-a dribble\n", r)
        out = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % ports["p_tls"], "-servername",
                              "b.example.com", "-CAfile", cert, "-verify_return_error", "-quiet"],
                             input=b"via s_client\n", capture_output=True, timeout=20)
        check("openssl s_client -servername b.example.com reaches backend b", b"backend-b via s_client" in out.stdout,
              (out.stdout[-200:], out.stderr[-300:]))
        out = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % ports["p_tls"], "-servername",
                              "A.Example.COM", "-CAfile", cert, "-quiet"],
                             input=b"mixed case\n", capture_output=True, timeout=20)
        check("SNI matched case-insensitively", b"backend-a mixed case" in out.stdout, out.stdout[-200:])
        for host, what in (("c.example.com", "unknown SNI (server host matches, no tls route)"),
                           ("d.other.org", "SNI outside the server's hosts"), (None, "no SNI")):
            try:
                r = tls_client(ports["p_tls"], host, cert)
                check("%s: closed" % what, False, r)
            except (ssl.SSLError, ConnectionError, OSError):
                check("%s: closed" % what, True)
        r = tls_client(ports["p_auto"], "outbound_.443_._.tls-b.internal", cert, check_name=False)
        check("AUTO_PASSTHROUGH: SNI outbound_.443_._.tls-b.internal reaches that cluster",
              r == b"backend-b hello\n", r)
        try:
            r = tls_client(ports["p_auto"], "outbound_.443_._.nosuch.internal", cert, check_name=False)
            check("AUTO_PASSTHROUGH: SNI naming no cluster is closed", False, r)
        except (ssl.SSLError, ConnectionError, OSError):
            check("AUTO_PASSTHROUGH: SNI naming no cluster is closed", True)
        s = connect(ports["p_tls"])
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
        check("plain text on the TLS port: closed", closed_by_peer(s))
        s.close()
        lines = wait_for(lambda: [l for l in log_lines() if " c.example.com " in l])
        check("access log: NR for the unknown SNI, with the requested server name", lines and " NR " in lines[0],
              lines[:1])
        lines = [l for l in log_lines() if "tls-a.internal" in l]
        check("access log: passthrough line has the SNI and the backend cluster",
              lines and " a.example.com " in lines[0] and "outbound|443||tls-a.internal" in lines[0], lines[:1])

        # --- idle timeout (DestinationRule connectionPool.tcp.idleTimeout: 1s)
        s = connect(ports["p_idle"], timeout=15)
        s.sendall(b"x")
        got = s.recv(10)
        closed = False
        try:
            closed = s.recv(10) == b""
        except ConnectionResetError:
            closed = True
        except socket.timeout:
            pass
        s.close()
        check("idle timeout closes an idle session", got == b"x" and closed, (got, closed))
        # idle.internal has maxConnections: 1: the timed-out session released it (its log line is written after that)
        wait_for(lambda: [l for l in log_lines() if "idle.internal" in l and "idle_timeout" in l])
        s = connect(ports["p_idle"], timeout=15)
        s.sendall(b"again")
        got = read_all_n(s, 5)
        s.close()
        check("maxConnections 1: the session ended by the idle timeout released its connection", got == b"again", got)

        # --- maxConnectionDuration (1s): a busy session is ended anyway, DT in the log
        s = connect(ports["p_dur"], timeout=15)
        ended, echoed = False, 0
        deadline = time.time() + 15
        while time.time() < deadline and not ended:
            try:
                s.sendall(b"tick\n")
                got = read_all_n(s, 5)
                if got == b"tick\n":
                    echoed += 1
                else:
                    ended = True
            except OSError:
                ended = True
            time.sleep(0.1)
        s.close()
        lines = wait_for(lambda: [l for l in log_lines() if "duration.internal" in l])
        check("maxConnectionDuration ends a busy session (DT)", echoed > 0 and ended and lines and " DT " in lines[0],
              (echoed, ended, lines[:1]))

        # --- circuit breaker: connectionPool.tcp.maxConnections 2 on cb.internal (Envoy's tcp_proxy: a session over
        # the cluster's connection count is closed at once, without connecting; UO, upstream_cx_overflow)
        cb_cluster = "outbound|9006||cb.internal"

        def cluster_metric(name):
            text = http_get(admin, "/stats/prometheus", timeout=10)[1].decode()
            m = re.search(r'^%s\{cluster_name="%s"\} (\d+)$' % (name, re.escape(cb_cluster)), text, re.M)
            return int(m.group(1)) if m else None

        held = []
        for i in range(2):
            c = connect(ports["p_cb"])
            c.sendall(b"hold%d\n" % i)
            held.append((c, read_all_n(c, 6)))
        check("maxConnections 2: two sessions open and relaying",
              [g for _, g in held] == [b"hold0\n", b"hold1\n"] and held_accepts[0] == 2,
              ([g for _, g in held], held_accepts[0]))
        check("maxConnections 2: the shared count is at the limit (circuit_breakers_default_cx_open 1)",
              cluster_metric("envoy_cluster_circuit_breakers_default_cx_open") == 1,
              cluster_metric("envoy_cluster_circuit_breakers_default_cx_open"))
        third = connect(ports["p_cb"])
        check("maxConnections 2: a third session is closed at once", closed_by_peer(third))
        third.close()
        check("maxConnections 2: the third never reached the backend (2 accepts)", held_accepts[0] == 2,
              held_accepts[0])
        check("prometheus: envoy_cluster_upstream_cx_overflow 1 for the cluster",
              cluster_metric("envoy_cluster_upstream_cx_overflow") == 1,
              cluster_metric("envoy_cluster_upstream_cx_overflow"))
        lines = wait_for(lambda: [l for l in log_lines() if "cb.internal" in l])
        check("access log: UO for the refused session, with the cluster and no upstream host",
              len(lines) == 1 and " UO " in lines[0] and cb_cluster in lines[0]
              and ("127.0.0.1:%d" % held_p) not in lines[0], lines)
        if lines:
            print("     log: " + lines[0])
        still = []
        for c, _ in held:
            c.sendall(b"still\n")
            still.append(read_all_n(c, 6))
        check("maxConnections 2: the two open sessions are unaffected", still == [b"still\n", b"still\n"], still)
        c0 = held[0][0]
        c0.shutdown(socket.SHUT_WR)
        check("closing one session: the server's EOF comes back", read_all(c0) == b"")
        c0.close()
        # its log line is written once its connection is released
        wait_for(lambda: len([l for l in log_lines() if "cb.internal" in l]) >= 2)
        check("closing one session releases its connection (cx_open 0)",
              cluster_metric("envoy_cluster_circuit_breakers_default_cx_open") == 0,
              cluster_metric("envoy_cluster_circuit_breakers_default_cx_open"))
        c = connect(ports["p_cb"])
        c.sendall(b"again\n")
        got = read_all_n(c, 6)
        check("after one closed, a new session works again", got == b"again\n" and held_accepts[0] == 3,
              (got, held_accepts[0]))
        c.close()
        held[1][0].close()
        check("the overflow counter is still 1", cluster_metric("envoy_cluster_upstream_cx_overflow") == 1,
              cluster_metric("envoy_cluster_upstream_cx_overflow"))

        # --- stats
        n, text = admin_metric(admin, "envoy_tcp_downstream_cx_total")
        check("prometheus: TCP connections counted", n is not None and n >= 300, text[-400:])
        m = re.search(r'^envoy_cluster_upstream_cx_rx_bytes_total'
                      r'\{cluster_name="outbound\|9000\|\|echo.internal"\} (\d+)$', text, re.M)
        check("prometheus: per-cluster upstream bytes", m and int(m.group(1)) >= len(big), m and m.group(0))
        check("prometheus: connect failure counted",
              re.search(r'envoy_cluster_upstream_cx_connect_fail'
                        r'\{cluster_name="outbound\|9003\|\|dead.internal"\} [1-9]', text) is not None)
        m = re.search(r"^envoy_tcp_downstream_cx_no_route (\d+)$", text, re.M)
        check("prometheus: connections without a route counted", m and int(m.group(1)) >= 3, m and m.group(0))
        m = re.search(r"^envoy_tcp_idle_timeout (\d+)$", text, re.M)
        check("prometheus: idle timeouts counted", m and int(m.group(1)) >= 1, m and m.group(0))

        # --- a config change leaves open sessions alone
        s = connect(ports["p_echo"])
        s.sendall(b"before\n")
        a1 = read_all_n(s, 7)
        reloads = json.loads(urllib.request.urlopen("http://127.0.0.1:%d/config_dump" % admin).read())["reloads"]
        write_config(2)
        ok = wait_for(lambda: json.loads(urllib.request.urlopen(
            "http://127.0.0.1:%d/config_dump" % admin).read())["reloads"] > reloads)
        s.sendall(b"after\n")
        a2 = read_all_n(s, 6)
        s.close()
        check("open session keeps working across a config reload", ok and a1 == b"before\n" and a2 == b"after\n",
              (ok, a1, a2))
        check("new sessions after the reload", echo_session(ports["p_echo"], b"new\n") == b"new\n")

        # --- sidecar: a TCP service port gets a listener on the outbound address's IP
        sdir = os.path.join(tmp, "sidecar")
        os.makedirs(sdir)
        sport, sout, sadmin = free_port(), free_port(), free_port()
        with open(os.path.join(sdir, "mesh.yaml"), "w") as f:
            f.write(SIDECAR_CONFIG.format(port=sport, echo=echo_p))
        side = start_proxy(keel, "sidecar", sdir, sadmin, proxy_log, "--outbound", "127.0.0.1:%d" % sout,
                           "--concurrency", "1")
        rc = wait_ready(keel, sadmin, timeout=10)
        data = pattern(1024 * 1024, b"side")
        back = b""
        for _ in range(50):  # the listener opens with the first snapshot
            try:
                back = echo_session(sport, data)
                break
            except ConnectionRefusedError:
                time.sleep(0.1)
        check("sidecar: TCP service port proxied (1 MiB echo)", rc == 0 and back == data, (rc, len(back)))
        side.send_signal(signal.SIGTERM)
        check("sidecar: clean exit", side.wait(timeout=10) == 0)

        # --- SIGTERM: open sessions keep working during the drain; one left open is closed at its end
        a, b = connect(ports["p_echo"], timeout=20), connect(ports["p_echo"], timeout=20)
        for c in (a, b):
            c.sendall(b"x")
            c.recv(1)
        proc.send_signal(signal.SIGTERM)

        def refused():
            try:
                connect(ports["p_echo"], timeout=2).close()
                return False
            except OSError:
                return True
        check("SIGTERM: listeners closed", wait_for(refused))
        a.sendall(b"draining\n")
        check("SIGTERM: an open session still relays during the drain", read_all_n(a, 9) == b"draining\n")
        a.close()
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            code = None
        check("SIGTERM: session left open is closed at the end of the drain", closed_by_peer(b))
        b.close()
        check("SIGTERM: clean exit 0", code == 0, code)
        check("access log: the session cut by the shutdown is logged",
              any("proxy_shutdown" in l for l in log_lines()), log_lines()[-3:])
    finally:
        stop_proxy(proc)
        stop_proxy(side)
        proxy_log.close()
        for srv, _ in servers:
            srv.shutdown()
        cleanup(tmp, [("proxy log", os.path.join(tmp, "proxy.log"), 30), ("access log", logpath, 15)])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
