#!/usr/bin/env python3
"""dfp_test.py - per-request DNS resolution in `keel proxy sidecar` (Envoy's dynamic forward proxy), real sockets.

A sidecar used as the app's http_proxy never sees the app resolve a name: the proxy resolves the request's host.
Starts a tiny DNS server (standard library, UDP: A records with a chosen TTL, NOERROR without records for other
types, NXDOMAIN for unknown names, answers it can hold back and release later, and a record of every query's id),
two HTTP backends on the same port of 127.0.0.1 and 127.0.0.2, and a sidecar told to use that DNS server.
Checks, over the outbound listener:
  - MeshConfig ALLOW_ANY: a host name only the test DNS server knows passes through to the address it resolves to;
  - ServiceEntry `resolution: DYNAMIC_DNS` with the wildcard host `*.dyn.test`: each name resolved on its own
    (a.dyn.test -> 127.0.0.1, b.dyn.test -> 127.0.0.2);
  - DestinationRule `loadBalancer.simple: PASSTHROUGH` on a STATIC ServiceEntry host: the request goes where the
    name resolves to, not to the ServiceEntry's endpoint;
  - TLS origination (DestinationRule tls SIMPLE) and HTTP/2 (an HTTP2 port) to a resolved address;
  - NXDOMAIN: 503 with DF / dns_resolution_failure in the access log; a server that never answers: 503 DF too;
  - the cache: a second request for a name does not query DNS again; a 1025th name on one worker answers 503
    dns_cache_overflow;
  - 20 concurrent requests for one uncached name, answer held back: one lookup per worker, all 200 once released;
  - a client that disconnects while its lookup is held, and a request whose route timeout fires while parked
    (504 UT): nothing breaks, the late answer still fills the cache; SIGTERM with a parked request and its lookup
    in flight exits 0 (under ASan, the harness fails the test on any sanitizer report in the proxy log).
Nothing asserts timings: every wait polls with a deadline.

Usage: tests/integration/dfp_test.py --keel build/debug/keel
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (check, cleanup, free_port, keel_arg, request, start_proxy, stop_proxy, summary,  # noqa: E402
                     wait_for_log, wait_ready, write_atomic)
from dns_test import backend, dns_question, dns_reply  # noqa: E402
from upstream_tls_test import TLSServer, make_pki, openssl  # noqa: E402

DEADLINE = 30  # seconds; a hang guard for polls, not a timing assertion
WORKERS = 2


class FakeDNS:
    """A UDP DNS server on 127.0.0.1. records: lower-case name -> (IPv4 addresses, TTL). Names in `hold` get no
    answer until release(name), which answers every query held for it (with the records of that moment)."""

    def __init__(self):
        self.records = {}
        self.hold = set()
        self.held = {}      # name -> [(query bytes, peer)]
        self.ids = {}       # name -> set of query ids of A queries (one per lookup; a retransmission keeps its id)
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def set(self, name, ips, ttl=300):
        with self.lock:
            self.records[name] = (list(ips), ttl)

    def lookups(self, name):
        with self.lock:
            return len(self.ids.get(name, ()))

    def release(self, name):
        with self.lock:
            self.hold.discard(name)
            held = self.held.pop(name, [])
        for q, peer in held:
            self.send(self.answer(q)[1], peer)

    def send(self, reply, peer):
        try:
            self.sock.sendto(reply, peer)
        except OSError:
            pass

    def serve(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            parsed = self.answer(data)
            if not parsed:
                continue
            name, reply = parsed
            with self.lock:
                if name in self.hold:
                    self.held.setdefault(name, []).append((data, peer))
                    continue
            self.send(reply, peer)

    def answer(self, q):
        """(name, reply bytes) for a query, or None when it cannot be parsed. Counts A query ids."""
        parsed = dns_question(q)
        if not parsed:
            return None
        name, qtype, end = parsed
        with self.lock:
            if qtype == 1:
                self.ids.setdefault(name, set()).add(q[:2])
            rec = self.records.get(name)
        return name, dns_reply(q, end, qtype, rec[0] if rec else None, rec[1] if rec else 0)

    def close(self):
        self.sock.close()


CONFIG = """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: app, namespace: default}}
spec: {{address: 127.0.0.1, labels: {{app: app}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: dyn, namespace: default}}
spec:
  hosts: ["*.dyn.test"]
  location: MESH_EXTERNAL
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: DYNAMIC_DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: pt, namespace: default}}
spec:
  hosts: [api.pt.test]
  location: MESH_EXTERNAL
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: pt, namespace: default}}
spec:
  host: api.pt.test
  trafficPolicy: {{loadBalancer: {{simple: {pt_lb}}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: tls, namespace: default}}
spec:
  hosts: ["*.tls.test"]
  location: MESH_EXTERNAL
  ports: [{{number: {tls_port}, name: http, protocol: HTTP}}]
  resolution: DYNAMIC_DNS
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: tls, namespace: default}}
spec:
  host: "*.tls.test"
  trafficPolicy: {{tls: {{mode: SIMPLE, caCertificates: {ca}, sni: backend.test}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: auto, namespace: default}}
spec:
  hosts: ["*.auto.test"]
  location: MESH_EXTERNAL
  ports: [{{number: {auto_port}, name: http, protocol: HTTP}}]
  resolution: DYNAMIC_DNS
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: auto, namespace: default}}
spec:
  host: "*.auto.test"
  trafficPolicy: {{tls: {{mode: SIMPLE, caCertificates: {ca}}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: h2, namespace: default}}
spec:
  hosts: ["*.h2.test"]
  location: MESH_EXTERNAL
  ports: [{{number: {h2_port}, name: http2, protocol: HTTP2}}]
  resolution: DYNAMIC_DNS
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |
    outboundTrafficPolicy: {{mode: ALLOW_ANY}}
    accessLogFile: {log}
"""


def listening(ip, port):
    try:
        socket.create_connection((ip, port), timeout=1).close()
        return True
    except OSError:
        return False


def main():
    keel = keel_arg()
    tmp = tempfile.mkdtemp(prefix="keel-dfp-test-")
    dns = FakeDNS()
    one = backend("127.0.0.1", 0, "backend-one")
    port = one.server_address[1]
    two = backend("127.0.0.2", port, "backend-two")
    dns.set("known.test", ["127.0.0.1"])
    dns.set("a.dyn.test", ["127.0.0.1"])
    dns.set("b.dyn.test", ["127.0.0.2"])
    dns.set("api.pt.test", ["127.0.0.2"])
    for name in ("many.dyn.test", "slow.dyn.test", "late.dyn.test", "stuck.test"):
        dns.set(name, ["127.0.0.2"])
        dns.hold.add(name)
    dns.hold.add("never.dyn.test")
    dns.set("x.tls.test", ["127.0.0.1"])
    dns.set("x.h2.test", ["127.0.0.2"])
    pki = make_pki(tmp)
    tls = TLSServer("tls-backend", pki, False)
    threading.Thread(target=tls.serve_forever, daemon=True).start()
    # a TLS backend whose certificate names a.auto.test only, recording the SNI it is sent
    dns.set("a.auto.test", ["127.0.0.1"])
    dns.set("b.auto.test", ["127.0.0.1"])
    auto_crt, auto_key = os.path.join(tmp, "auto.crt"), os.path.join(tmp, "auto.key")
    with open(os.path.join(tmp, "auto.ext"), "w") as f:
        f.write("subjectAltName=DNS:a.auto.test\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", auto_key, "-out", os.path.join(tmp, "auto.csr"),
            "-subj", "/CN=a.auto.test")
    openssl("x509", "-req", "-in", os.path.join(tmp, "auto.csr"), "-CA", pki["ca.crt"], "-CAkey", pki["ca.key"],
            "-CAcreateserial", "-out", auto_crt, "-days", "2", "-extfile", os.path.join(tmp, "auto.ext"))
    auto = TLSServer("auto-backend", pki, False)
    auto.ctx.load_cert_chain(auto_crt, auto_key)
    auto_sni = []
    auto.ctx.sni_callback = lambda sock, name, ctx: auto_sni.append(name)
    threading.Thread(target=auto.serve_forever, daemon=True).start()
    out, admin, h2_port = free_port(), free_port(), free_port()
    app_log = open(os.path.join(tmp, "app.log"), "w")
    app = subprocess.Popen([keel, "sample-app", "--listen", "127.0.0.2:%d" % h2_port, "--name", "h2-backend"],
                           stdout=app_log, stderr=subprocess.STDOUT)
    cfgdir = os.path.join(tmp, "cfg")
    os.makedirs(cfgdir)
    access = os.path.join(tmp, "access.log")
    write_atomic(os.path.join(cfgdir, "mesh.yaml"),
                 CONFIG.format(port=port, log=access, pt_lb="PASSTHROUGH", tls_port=tls.server_address[1],
                               ca=pki["ca.crt"], h2_port=h2_port, auto_port=auto.server_address[1]))
    plog = os.path.join(tmp, "proxy.log")
    log = open(plog, "w")
    proc = start_proxy(keel, "sidecar", cfgdir, admin, log, "--workload", "app.default", "--outbound",
                       "127.0.0.1:%d" % out, "--concurrency", str(WORKERS), "--drain", "0",
                       "--dns-server", "127.0.0.1:%d" % dns.port)

    def via(host, headers=None, conn=None, timeout=10, to_port=None):
        """GET http://HOST:PORT/ through the sidecar (absolute form, as an http_proxy client sends it)."""
        try:
            r, body = request(out, "GET", "http://%s:%d/" % (host, to_port or port), headers=headers, conn=conn,
                              timeout=timeout)
            return r.status, body.decode(errors="replace")
        except OSError as e:
            return None, repr(e)

    def active():
        try:
            text = request(admin, "GET", "/stats/prometheus")[1].decode()
        except OSError:
            return None
        total = 0
        for line in text.splitlines():
            if line.startswith("envoy_http_downstream_rq_active"):
                total += int(float(line.split()[-1]))
        return total

    def poll(fn, deadline=DEADLINE):
        end = time.time() + deadline
        v = fn()
        while not v and time.time() < end:
            time.sleep(0.05)
            v = fn()
        return v

    try:
        check("ready", wait_ready(keel, admin, timeout=DEADLINE) == 0)

        # --- ALLOW_ANY pass-through to a name only our DNS server knows, and the cache
        conn = http.client.HTTPConnection("127.0.0.1", out, timeout=10)  # one connection: one worker, one cache
        r1 = via("known.test", conn=conn)
        n1 = dns.lookups("known.test")
        r2 = via("known.test", conn=conn)
        conn.close()
        check("ALLOW_ANY: a host name is resolved and passed through", r1 == (200, "backend-one"), r1)
        check("the second request is served from the cache", r2 == (200, "backend-one"), r2)
        check("... without asking DNS again", (n1, dns.lookups("known.test")) == (1, 1),
              (n1, dns.lookups("known.test")))

        # --- DYNAMIC_DNS: every name of the wildcard resolved on its own
        ra, rb = via("a.dyn.test"), via("b.dyn.test")
        check("DYNAMIC_DNS: a.dyn.test -> its address (127.0.0.1)", ra == (200, "backend-one"), ra)
        check("DYNAMIC_DNS: b.dyn.test -> its address (127.0.0.2)", rb == (200, "backend-two"), rb)

        # --- pass-through to the sidecar's own outbound listener would loop until descriptors run out: refused
        # at once, as Istio's virtualOutbound-blackhole does
        r = via("127.0.0.1", to_port=out)
        check("ALLOW_ANY to the proxy's own listener: 502, no loop", r[0] == 502, r)
        r = via("known.test")
        check("...and the proxy still serves", r == (200, "backend-one"), r)

        # --- DestinationRule PASSTHROUGH: the address the name resolves to, not the ServiceEntry's endpoint
        r = via("api.pt.test")
        check("DR PASSTHROUGH: to the resolved address (127.0.0.2), not the endpoint", r == (200, "backend-two"), r)

        # --- the endpoint is only an address: TLS origination and the HTTP/2 choice apply as for any endpoint
        r = via("x.tls.test", to_port=tls.server_address[1])
        info = json.loads(r[1]) if r[0] == 200 else {}
        check("DYNAMIC_DNS + DestinationRule tls SIMPLE: TLS to the resolved address, certificate verified",
              info.get("name") == "tls-backend" and info.get("tls", "").startswith("TLS"), r)
        # --- no DestinationRule sni on a DYNAMIC_DNS host: the request's host is the SNI and the name checked
        # (Envoy's auto_sni / auto_san_validation)
        r = via("a.auto.test", to_port=auto.server_address[1])
        info = json.loads(r[1]) if r[0] == 200 else {}
        check("DYNAMIC_DNS + tls SIMPLE without sni: the request's host a.auto.test is sent as SNI and verified",
              info.get("name") == "auto-backend" and "a.auto.test" in auto_sni, (r, auto_sni))
        r = via("b.auto.test", to_port=auto.server_address[1])
        check("...and b.auto.test on the same address is refused: the certificate names a.auto.test only (503)",
              r[0] == 503 and "b.auto.test" in auto_sni, (r, auto_sni))
        check("the HTTP/2 backend listens", poll(lambda: listening("127.0.0.2", h2_port)))
        r = via("x.h2.test", to_port=h2_port)
        info = json.loads(r[1]) if r[0] == 200 else {}
        check("DYNAMIC_DNS on an HTTP2 port: HTTP/2 to the resolved address (127.0.0.2)",
              info.get("name") == "h2-backend" and info.get("protocol") == "HTTP/2", r)

        # --- failures
        r = via("nowhere.test")
        check("NXDOMAIN: 503", r[0] == 503 and "DNS resolution failure" in r[1], r)
        r = via("gone.dyn.test")
        check("NXDOMAIN under DYNAMIC_DNS: 503", r[0] == 503, r)
        text = wait_for_log(access, r'nowhere\.test')
        lines = [ln for ln in text.splitlines() if "nowhere.test" in ln]
        check("access log: 503 DF dns_resolution_failure", lines and " 503 DF dns_resolution_failure " in lines[-1],
              lines[-1:] or text[-600:])
        r = via("never.dyn.test", timeout=30)
        check("no answer at all (c-ares gives up): 503 DF", r[0] == 503 and "DNS resolution failure" in r[1], r)

        # --- one lookup for many concurrent requests
        results = []

        def one_request():
            results.append(via("many.dyn.test", timeout=DEADLINE))
        threads = [threading.Thread(target=one_request) for _ in range(20)]
        for t in threads:
            t.start()
        parked = poll(lambda: (active() or 0) >= 20)
        check("20 requests wait for the held answer", parked, active())
        dns.release("many.dyn.test")
        for t in threads:
            t.join(DEADLINE)
        check("all 20 served once the answer arrives", results == [(200, "backend-two")] * 20, results)
        check("one lookup per worker at most (%d workers), not one per request" % WORKERS,
              1 <= dns.lookups("many.dyn.test") <= WORKERS, dns.lookups("many.dyn.test"))

        # --- a client that goes away while its lookup is held
        s = socket.create_connection(("127.0.0.1", out))
        s.sendall(b"GET http://slow.dyn.test:%d/ HTTP/1.1\r\nHost: slow.dyn.test:%d\r\n\r\n" % (port, port))
        check("the slow lookup started", poll(lambda: dns.lookups("slow.dyn.test") > 0))
        s.close()
        check("the client's request ends", poll(lambda: active() == 0), active())
        dns.release("slow.dyn.test")
        check("the late answer fills the cache", poll(lambda: via("slow.dyn.test") == (200, "backend-two")),
              via("slow.dyn.test"))

        # --- the route timeout fires while the stream is parked
        r = via("late.dyn.test", headers={"x-envoy-upstream-rq-timeout-ms": "200"})
        check("route timeout while waiting for DNS: 504", r[0] == 504, r)
        dns.release("late.dyn.test")
        check("then the name serves", poll(lambda: via("late.dyn.test") == (200, "backend-two")),
              via("late.dyn.test"))
        check("the proxy is still running", proc.poll() is None)

        # --- a request parked on a held lookup, kept for the SIGTERM below
        pending = []
        t = threading.Thread(target=lambda: pending.append(via("stuck.test", timeout=DEADLINE)))
        t.start()
        check("a lookup is held", poll(lambda: dns.lookups("stuck.test") > 0))

        # --- at most 1024 names per worker (Envoy's max_hosts): one connection stays on one worker, whose cache
        # already holds a few names of the checks above
        conn = http.client.HTTPConnection("127.0.0.1", out, timeout=10)
        fresh, overflow = 0, None
        for i in range(1100):
            r = via("n%d.flood.test" % i, conn=conn)
            if r[0] == 503 and "DNS cache overflow" in r[1]:
                overflow = r
                break
            if r[0] != 503:
                overflow = r  # not an NXDOMAIN answer: something else is wrong
                break
            fresh += 1
        conn.close()
        check("a new name beyond 1024 per worker: 503 dns_cache_overflow",
              overflow and overflow[0] == 503 and 1000 <= fresh <= 1024, (fresh, overflow))
        text = wait_for_log(access, r'dns_cache_overflow')
        check("access log: dns_cache_overflow", " 503 - dns_cache_overflow " in text, text[-400:])

        # --- SIGTERM with a parked request and its lookup in flight
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            code = None
        t.join(DEADLINE)
        check("SIGTERM with a parked request: exit 0", code == 0, code)
    finally:
        stop_proxy(proc)
        log.close()
        one.shutdown()
        two.shutdown()
        tls.shutdown()
        auto.shutdown()
        app.terminate()
        app.wait()
        app_log.close()
        dns.close()
        cleanup(tmp, [("proxy log", plog, 40), ("access log", access, 20)])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
