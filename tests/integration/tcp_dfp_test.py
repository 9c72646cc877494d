#!/usr/bin/env python3
"""tcp_dfp_test.py - L4 sessions to clusters without endpoints (ORIGINAL_DST, DYNAMIC_DNS), real sockets.

A sidecar's TCP listeners route to ServiceEntry `resolution: NONE`, DestinationRule `loadBalancer.simple:
PASSTHROUGH` and `resolution: DYNAMIC_DNS` clusters; the destination comes from the connection, as Envoy finds it
for Istio. Starts the fake DNS server of dfp_test.py, backends on 127.0.0.1, 127.0.0.2 and 127.0.0.3 that say who
they are, TLS backends with a self-signed `*.dyn.test` certificate (made by `openssl req`), and a sidecar told to
use that DNS server. Checks:
  - NONE TCP port of a named host: the host is resolved (127.0.0.2), the session reaches the service port's
    targetPort there (a server-first echo), logged with that address;
  - its DestinationRule maxConnections 1: a second session at once is closed (UO); the slot comes back at close;
  - DR PASSTHROUGH on a STATIC host: the resolved address, not the ServiceEntry's endpoint;
  - CONNECT to an IP on the NONE port (the original destination): that IP and port, not the resolved host;
  - NONE with a wildcard host and no SNI: closed, UH no_original_destination;
  - DYNAMIC_DNS `*.dyn.test` TLS port: the SNI decides the backend (a.dyn.test -> 127.0.0.1, b.dyn.test ->
    127.0.0.2), certificates verified end to end by Python ssl and `openssl s_client`;
  - NXDOMAIN: the client's connection is closed, access log DF dns_resolution_failure with the SNI; no SNI:
    closed, UH dynamic_dns_without_sni;
  - 5 sessions waiting on one held answer are all served once it comes; a client that resets its connection
    while its lookup is held: nothing breaks, the name serves later; SIGTERM with a session waiting on a held
    lookup exits 0 (under ASan, the harness fails the test on any sanitizer report in the proxy log).
Nothing asserts timings: every wait polls with a deadline.

Usage: tests/integration/tcp_dfp_test.py --keel build/debug/keel
"""
import os
import signal
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (check, cleanup, free_port, keel_arg, start_proxy, stop_proxy, summary,  # noqa: E402
                     wait_for_log, wait_ready, write_atomic)
from dfp_test import FakeDNS  # noqa: E402

DEADLINE = 30  # seconds; a hang guard for polls, not a timing assertion
WORKERS = 2

CONFIG = """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: app, namespace: default}}
spec: {{address: 127.0.0.1, labels: {{app: app}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db, namespace: default}}
spec:
  hosts: [db.none.test]
  location: MESH_EXTERNAL
  ports: [{{number: {p_none}, name: tcp-db, protocol: TCP, targetPort: {target}}}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: db, namespace: default}}
spec:
  host: db.none.test
  trafficPolicy: {{connectionPool: {{tcp: {{maxConnections: 1}}}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: pt, namespace: default}}
spec:
  hosts: [pt.tcp.test]
  location: MESH_EXTERNAL
  ports: [{{number: {p_pt}, name: tcp-pt, protocol: TCP, targetPort: {target}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: pt, namespace: default}}
spec:
  host: pt.tcp.test
  trafficPolicy: {{loadBalancer: {{simple: PASSTHROUGH}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: wild, namespace: default}}
spec:
  hosts: ["*.wild.test"]
  location: MESH_EXTERNAL
  ports: [{{number: {p_wild}, name: tcp-wild, protocol: TCP}}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: dyn, namespace: default}}
spec:
  hosts: ["*.dyn.test"]
  location: MESH_EXTERNAL
  ports: [{{number: {p_dyn}, name: tls, protocol: TLS, targetPort: {tls_target}}}]
  resolution: DYNAMIC_DNS
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |
    accessLogFile: {log}
"""


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128


def serve_on(ip, port, fn):
    """A threaded TCP server on ip:port calling fn(sock) per connection."""
    class H(socketserver.BaseRequestHandler):
        def handle(self):
            try:
                fn(self.request)
            except (OSError, ssl.SSLError):
                pass
    srv = Server((ip, port), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def named_echo(name):
    """Server-first: says its name, then echoes until EOF."""
    def handle(sock):
        sock.sendall(name.encode() + b"\n")
        while True:
            b = sock.recv(65536)
            if not b:
                break
            sock.sendall(b)
        sock.shutdown(socket.SHUT_WR)
    return handle


def tls_named(name, ctx):
    """TLS: reads a line, answers `NAME line`, closes."""
    def handle(sock):
        s = ctx.wrap_socket(sock, server_side=True)
        line = b""
        while not line.endswith(b"\n"):
            b = s.recv(4096)
            if not b:
                break
            line += b
        s.sendall(name.encode() + b" " + line)
        s.close()
    return handle


def read_all(s):
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except (socket.timeout, ConnectionResetError):
        pass
    return out


def plain_session(port, msg=b"ping\n"):
    """Connects to the sidecar's TCP port, sends msg, half-closes; returns all it got (or the error)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(msg)
        s.shutdown(socket.SHUT_WR)
        data = read_all(s)
        s.close()
        return data
    except OSError as e:
        return repr(e)


def client_hello(sni):
    """The bytes of a TLS ClientHello with that SNI (a handshake started on memory BIOs)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def main():
    keel = keel_arg()
    tmp = tempfile.mkdtemp(prefix="keel-tcpdfp-test-")
    dns = FakeDNS()
    dns.set("db.none.test", ["127.0.0.2"])
    dns.set("pt.tcp.test", ["127.0.0.2"])
    dns.set("a.dyn.test", ["127.0.0.1"])
    dns.set("b.dyn.test", ["127.0.0.2"])
    for name in ("many.dyn.test", "slow.dyn.test", "stuck.dyn.test"):
        dns.set(name, ["127.0.0.2"])
        dns.hold.add(name)

    crt, key = os.path.join(tmp, "dyn.crt"), os.path.join(tmp, "dyn.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "2", "-subj", "/CN=dyn.test", "-addext", "subjectAltName=DNS:*.dyn.test"],
                   check=True, capture_output=True)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(crt, key)

    target, tls_target = free_port(), free_port()
    p_none, p_pt, p_wild, p_dyn, out, admin = (free_port() for _ in range(6))
    servers = [serve_on("127.0.0.1", target, named_echo("one")),
               serve_on("127.0.0.2", target, named_echo("two")),
               serve_on("127.0.0.3", p_none, named_echo("three")),
               serve_on("127.0.0.1", tls_target, tls_named("dyn-one", sctx)),
               serve_on("127.0.0.2", tls_target, tls_named("dyn-two", sctx))]

    cfgdir = os.path.join(tmp, "cfg")
    os.makedirs(cfgdir)
    access = os.path.join(tmp, "access.log")
    write_atomic(os.path.join(cfgdir, "mesh.yaml"),
                 CONFIG.format(p_none=p_none, p_pt=p_pt, p_wild=p_wild, p_dyn=p_dyn, target=target,
                               tls_target=tls_target, log=access))
    plog = os.path.join(tmp, "proxy.log")
    log = open(plog, "w")
    proc = start_proxy(keel, "sidecar", cfgdir, admin, log, "--workload", "app.default", "--outbound",
                       "127.0.0.1:%d" % out, "--concurrency", str(WORKERS), "--drain", "0",
                       "--dns-server", "127.0.0.1:%d" % dns.port)

    def poll(fn, deadline=DEADLINE):
        end = time.time() + deadline
        v = fn()
        while not v and time.time() < end:
            time.sleep(0.05)
            v = fn()
        return v

    def listening(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return True
        except OSError:
            return False

    def tls_session(sni, verify=True):
        """A TLS session through the DYNAMIC_DNS port: sends a line, returns the answer (or the error)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if verify:
            ctx.load_verify_locations(crt)
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        try:
            with socket.create_connection(("127.0.0.1", p_dyn), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname=sni) as s:
                    s.sendall(b"hello\n")
                    return read_all(s).decode(errors="replace")
        except (OSError, ssl.SSLError) as e:
            return repr(e)

    def log_line(word, regex=None):
        text = wait_for_log(access, regex or word)
        lines = [ln for ln in text.splitlines() if word in ln]
        return lines[-1] if lines else text[-400:]

    try:
        check("ready", wait_ready(keel, admin, timeout=DEADLINE) == 0)
        # (not probed on the NONE port: a probe's session would hold its only connection slot for a while)
        check("the TCP listeners are open", all(poll(lambda p=p: listening(p)) for p in (p_pt, p_wild, p_dyn)))

        # --- resolution NONE: the service's host, resolved; the service port's targetPort there
        r = poll(lambda: plain_session(p_none) != b"") and plain_session(p_none)
        check("NONE: the host's address (127.0.0.2) on the targetPort, echo", r == b"two\nping\n", r)
        line = log_line("tcp-db", r"outbound\|%d\|\|db\.none\.test" % p_none)
        check("access log: the resolved endpoint", "127.0.0.2:%d" % target in line and " - - " in line, line)
        check("the name was looked up through the test DNS server", dns.lookups("db.none.test") >= 1)

        # --- its maxConnections (1): a second session at once is closed, the slot comes back at close
        a = socket.create_connection(("127.0.0.1", p_none), timeout=10)
        first = a.recv(64)
        b = socket.create_connection(("127.0.0.1", p_none), timeout=10)
        second = read_all(b)
        b.close()
        check("maxConnections 1: the first session is connected", first == b"two\n", first)
        check("... a second one at once is closed without reaching the backend", second == b"", second)
        line = log_line(" UO ")
        check("access log: UO upstream_cx_overflow", " UO - upstream_cx_overflow " in line, line)
        a.close()
        r = poll(lambda: plain_session(p_none) == b"two\nping\n")
        check("the slot comes back when the first session closes", r, plain_session(p_none))

        # --- DestinationRule PASSTHROUGH on a STATIC host
        r = plain_session(p_pt)
        check("DR PASSTHROUGH: to the resolved address (127.0.0.2), not the endpoint (127.0.0.1)",
              r == b"two\nping\n", r)

        # --- CONNECT to an IP: the original destination, not the host's address
        s = socket.create_connection(("127.0.0.1", out), timeout=10)
        s.sendall(b"CONNECT 127.0.0.3:%d HTTP/1.1\r\nHost: 127.0.0.3:%d\r\n\r\n" % (p_none, p_none))
        head = b""
        while b"\r\n\r\n" not in head:
            c = s.recv(1)
            if not c:
                break
            head += c
        s.sendall(b"via connect\n")
        s.shutdown(socket.SHUT_WR)
        got = read_all(s)
        s.close()
        check("CONNECT 127.0.0.3:port on the NONE port: to that address (original destination)",
              head.startswith(b"HTTP/1.1 200") and got == b"three\nvia connect\n", (head, got))

        # --- NONE with only a wildcard host and no SNI: nowhere to go
        r = plain_session(p_wild)
        check("NONE *.wild.test without a destination: closed", r == b"" or isinstance(r, str), r)
        line = log_line("no_original_destination")
        check("access log: UH no_original_destination", " UH - no_original_destination " in line, line)

        # --- DYNAMIC_DNS on a TLS port: the SNI decides
        ra, rb = tls_session("a.dyn.test"), tls_session("b.dyn.test")
        check("DYNAMIC_DNS TLS: SNI a.dyn.test -> 127.0.0.1 (certificate verified)", ra == "dyn-one hello\n", ra)
        check("DYNAMIC_DNS TLS: SNI b.dyn.test -> 127.0.0.2 (certificate verified)", rb == "dyn-two hello\n", rb)
        line = log_line("b.dyn.test")
        check("access log: SNI and resolved endpoint",
              "outbound|%d||*.dyn.test" % p_dyn in line and "127.0.0.2:%d" % tls_target in line, line)
        try:
            o = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % p_dyn, "-servername",
                                "b.dyn.test", "-CAfile", crt, "-verify_return_error", "-quiet"],
                               input=b"from openssl\n", capture_output=True, timeout=DEADLINE)
            so = o.stdout.decode(errors="replace")
        except subprocess.TimeoutExpired as e:
            so = repr(e)
        check("openssl s_client -servername b.dyn.test: 127.0.0.2, verified", "dyn-two from openssl" in so,
              so[-300:])

        # --- failures
        r = tls_session("nx.dyn.test")
        check("NXDOMAIN: the client's connection is closed", "dyn-" not in r, r)
        line = log_line("nx.dyn.test")
        check("access log: DF dns_resolution_failure, with the SNI",
              ' DF - dns_resolution_failure "Domain name not found" ' in line, line)
        r = tls_session(None, verify=False)
        check("DYNAMIC_DNS without SNI: closed", "dyn-" not in r, r)
        line = log_line("dynamic_dns_without_sni")
        check("access log: UH dynamic_dns_without_sni", " UH - dynamic_dns_without_sni " in line, line)

        # --- several sessions waiting on one held answer
        results = []

        def one():
            results.append(tls_session("many.dyn.test"))
        threads = [threading.Thread(target=one) for _ in range(5)]
        for t in threads:
            t.start()
        check("the held lookup started", poll(lambda: dns.lookups("many.dyn.test") > 0))
        dns.release("many.dyn.test")
        for t in threads:
            t.join(DEADLINE)
        check("5 sessions waiting on one lookup: all served once it answers", results == ["dyn-two hello\n"] * 5,
              results)
        check("one lookup per worker at most", 1 <= dns.lookups("many.dyn.test") <= WORKERS,
              dns.lookups("many.dyn.test"))

        # --- a client that resets its connection while its lookup is held
        s = socket.create_connection(("127.0.0.1", p_dyn), timeout=10)
        s.sendall(client_hello("slow.dyn.test"))
        check("the slow lookup started", poll(lambda: dns.lookups("slow.dyn.test") > 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        time.sleep(0.2)  # lets the proxy see the reset before the answer; not a timing assertion
        dns.release("slow.dyn.test")
        r = poll(lambda: tls_session("slow.dyn.test") == "dyn-two hello\n")
        check("client gone while waiting: nothing breaks, the name serves afterwards", r,
              tls_session("slow.dyn.test"))
        check("the proxy is still running", proc.poll() is None)

        # --- SIGTERM with a session waiting on a held lookup
        s = socket.create_connection(("127.0.0.1", p_dyn), timeout=DEADLINE)
        s.sendall(client_hello("stuck.dyn.test"))
        check("a lookup is held", poll(lambda: dns.lookups("stuck.dyn.test") > 0))
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            code = None
        check("SIGTERM with a session waiting for DNS: exit 0", code == 0, code)
        check("... that session is closed", read_all(s) == b"")
        s.close()
        line = log_line("stuck.dyn.test")
        check("... and logged (proxy_shutdown)", "proxy_shutdown" in line, line)
    finally:
        stop_proxy(proc)
        log.close()
        for srv in servers:
            srv.shutdown()
        dns.close()
        cleanup(tmp, [("proxy log", plog, 40), ("access log", access, 30)])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
