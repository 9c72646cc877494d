#!/usr/bin/env python3
"""dns_test.py - ServiceEntry `resolution: DNS` / `DNS_ROUND_ROBIN` in `keel proxy router`, over real sockets.

Starts a tiny DNS server (Python's standard library: a UDP socket that parses the question and answers A records
for the names it knows, NOERROR without records for their other types, NXDOMAIN for the rest, and can hold back
the answers for a name), two HTTP backends on the same port of 127.0.0.1 and 127.0.0.2, and a keel gateway told
to use that DNS server (--dns-server). Checks: a DNS endpoint name and a host without endpoints resolve and serve
200; `localhost` comes from /etc/hosts; a name answering two addresses spreads requests over both (STRICT_DNS)
while DNS_ROUND_ROBIN uses the first address only (LOGICAL_DNS); /config_dump and /clusters show the resolved
addresses, the host names and the errors; a changed answer moves requests to the new address after the refresh;
NXDOMAIN empties the cluster (503) and an answer brings it back; an unknown name answers 503; a config reload
applies at once even when the DNS server does not answer for a new name yet, and that name serves once it does;
SIGTERM exits 0 with lookups in flight.
Nothing asserts timings: every wait polls with a deadline.

Usage: tests/integration/dns_test.py --keel build/debug/keel
"""
import http.server
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (check, cleanup, free_port, keel_arg, request, start_proxy, stop_proxy, summary,  # noqa: E402
                     wait_ready, write_atomic)

DEADLINE = 30  # seconds; a hang guard for polls, not a timing assertion


def dns_question(q):
    """(lower-case name, qtype, end of the question) of a DNS query, or None when it cannot be parsed."""
    if len(q) < 12:
        return None
    pos, labels = 12, []
    while pos < len(q) and q[pos] != 0:
        n = q[pos]
        labels.append(q[pos + 1:pos + 1 + n].decode("ascii", "replace").lower())
        pos += 1 + n
    pos += 1
    if pos + 4 > len(q):
        return None
    return ".".join(labels), struct.unpack(">H", q[pos:pos + 2])[0], pos + 4


def dns_reply(q, end, qtype, ips, ttl):
    """The answer to query q (question ending at end): A records for ips when it asks for A, NOERROR without
    records for other types, NXDOMAIN when ips is None."""
    answers, count = b"", 0
    if ips and qtype == 1:
        for ip in ips:
            answers += struct.pack(">HHHIH", 0xC00C, 1, 1, ttl, 4) + socket.inet_aton(ip)
            count += 1
    flags = 0x8180 if ips is not None else 0x8183  # NOERROR / NXDOMAIN
    return q[:2] + struct.pack(">HHHHH", flags, 1, count, 0, 0) + q[12:end] + answers


class FakeDNS:
    """A UDP DNS server on 127.0.0.1: records maps a lower-case name (no trailing dot) to its IPv4 addresses."""

    def __init__(self):
        self.records = {}
        self.hold = set()     # names whose queries get no answer at all
        self.queries = {}     # name -> number of queries seen
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def set(self, name, ips):
        with self.lock:
            if ips is None:
                self.records.pop(name, None)
            else:
                self.records[name] = list(ips)

    def count(self, name):
        with self.lock:
            return self.queries.get(name, 0)

    def serve(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            reply = self.answer(data)
            if reply:
                try:
                    self.sock.sendto(reply, peer)
                except OSError:
                    return

    def answer(self, q):
        parsed = dns_question(q)
        if not parsed:
            return None
        name, qtype, end = parsed
        with self.lock:
            self.queries[name] = self.queries.get(name, 0) + 1
            if name in self.hold:
                return None
            ips = self.records.get(name)
        return dns_reply(q, end, qtype, ips, 1)  # TTL 1 s

    def close(self):
        self.sock.close()


def make_handler(name):
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
    return H


def backend(ip, port, name):
    srv = http.server.ThreadingHTTPServer((ip, port), make_handler(name))
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


SE = """\
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: istio-system}}
spec:
  hosts: [{host}]
  location: MESH_EXTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {port}}}]
  resolution: {resolution}
{endpoints}"""

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
  - match: [{{uri: {{exact: /version}}}}]
    directResponse: {{status: 200, body: {{string: "{version}"}}}}
{routes}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: multi, namespace: istio-system}}
spec:
  host: multi.example.com
  trafficPolicy: {{loadBalancer: {{simple: ROUND_ROBIN}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |
    dnsRefreshRate: 1s
{entries}"""

# path -> (ServiceEntry host, resolution, endpoint address or None for "resolve the host")
SERVICES = {
    "strict": ("strict.example.com", "DNS", "backend.test."),
    "hostonly": ("host.test", "DNS", None),
    "hosts-file": ("local.example.com", "DNS", "localhost"),
    "multi": ("multi.example.com", "DNS", "multi.test."),
    "logical": ("logical.example.com", "DNS_ROUND_ROBIN", "logical.test."),
    "unknown": ("unknown.example.com", "DNS", "nowhere.test."),
}
LATE = {"late": ("late.example.com", "DNS", "late.test.")}


def render(gw, port, version, services):
    routes, entries = "", ""
    for path, (host, resolution, address) in services.items():
        routes += "  - match: [{uri: {prefix: /%s}}]\n    route: [{destination: {host: %s}}]\n" % (path, host)
        eps = "  endpoints: [{address: %s}]\n" % address if address else ""
        entries += SE.format(name=path, host=host, port=port, resolution=resolution, endpoints=eps)
    return CONFIG.format(gw=gw, version=version, routes=routes.rstrip("\n"), entries=entries)


def get(gw, path):
    try:
        r, body = request(gw, "GET", path, timeout=10)
        return r.status, body.decode(errors="replace")
    except OSError as e:
        return None, repr(e)


def poll(fn, deadline=DEADLINE):
    """Calls fn until it returns a true value or the deadline passes; returns the last value."""
    end = time.time() + deadline
    v = fn()
    while not v and time.time() < end:
        time.sleep(0.1)
        v = fn()
    return v


def main():
    keel = keel_arg()
    tmp = tempfile.mkdtemp(prefix="keel-dns-test-")
    dns = FakeDNS()
    one = backend("127.0.0.1", 0, "backend-one")
    port = one.server_address[1]
    two = backend("127.0.0.2", port, "backend-two")
    dns.set("backend.test", ["127.0.0.1"])
    dns.set("host.test", ["127.0.0.1"])
    dns.set("multi.test", ["127.0.0.1", "127.0.0.2"])
    dns.set("logical.test", ["127.0.0.2", "127.0.0.1"])
    dns.set("late.test", ["127.0.0.2"])
    dns.hold.add("late.test")
    gw, admin = free_port(), free_port()
    cfgdir = os.path.join(tmp, "config")
    os.makedirs(cfgdir)
    cfgfile = os.path.join(cfgdir, "mesh.yaml")
    write_atomic(cfgfile, render(gw, port, "one", SERVICES))
    log = open(os.path.join(tmp, "proxy.log"), "w")
    proc = start_proxy(keel, "router", cfgdir, admin, log, "--concurrency", "2", "--drain", "0",
                       "--dns-server", "127.0.0.1:%d" % dns.port)
    try:
        check("ready once the first DNS answers are in", wait_ready(keel, admin, timeout=DEADLINE) == 0)

        # --- resolution
        status, body = get(gw, "/strict")
        check("DNS endpoint name resolves: 200 from its address", (status, body) == (200, "backend-one"),
              (status, body))
        status, body = get(gw, "/hostonly")
        check("no endpoints: the host itself is resolved", (status, body) == (200, "backend-one"), (status, body))
        status, body = get(gw, "/hosts-file")
        check("localhost comes from /etc/hosts", (status, body) == (200, "backend-one"), (status, body))
        seen = set(get(gw, "/multi")[1] for _ in range(20))
        check("STRICT_DNS: every address of the answer serves", seen == {"backend-one", "backend-two"}, seen)
        seen = set(get(gw, "/logical")[1] for _ in range(10))
        check("LOGICAL_DNS (DNS_ROUND_ROBIN): the first address only", seen == {"backend-two"}, seen)
        status, body = get(gw, "/unknown")
        check("a name that does not exist: 503", status == 503, (status, body))

        # --- observability
        dump = json.loads(request(admin, "GET", "/config_dump")[1])
        names = {d["name"]: d for d in dump.get("dns", [])}
        check("/config_dump lists the names with their addresses",
              names.get("backend.test.", {}).get("addresses") == ["127.0.0.1"]
              and names.get("localhost", {}).get("addresses") == ["127.0.0.1"], names)
        check("/config_dump shows the resolve error", names.get("nowhere.test.", {}).get("error"),
              names.get("nowhere.test."))
        clusters = {c["name"]: c for c in dump["snapshot"]["clusters"]}
        strict = clusters.get("outbound|80||strict.example.com", {})
        check("cluster endpoints carry the address and the host name",
              strict.get("endpoints") == [{"address": "127.0.0.1", "port": port, "weight": 1,
                                           "hostname": "backend.test.", "source": "ServiceEntry istio-system/strict"}],
              strict.get("endpoints"))
        unknown = clusters.get("outbound|80||unknown.example.com", {})
        check("a name without address is listed as unresolved with its error",
              unknown.get("endpoints") == [] and unknown.get("unresolved", [{}])[0].get("address") == "nowhere.test."
              and unknown["unresolved"][0].get("resolveError"), unknown)
        text = request(admin, "GET", "/clusters")[1].decode()
        check("/clusters shows hostname and dns_error",
              "outbound|80||strict.example.com::127.0.0.1:%d::hostname::backend.test." % port in text
              and "outbound|80||unknown.example.com::nowhere.test.:%d::dns_error::" % port in text, text[:1500])

        # --- refresh: a new answer moves the traffic
        before = dns.count("backend.test")
        dns.set("backend.test", ["127.0.0.2"])
        check("changed answer: requests move to the new address",
              poll(lambda: get(gw, "/strict") == (200, "backend-two")), get(gw, "/strict"))
        check("the name was looked up again", dns.count("backend.test") > before)
        dns.set("backend.test", None)
        check("NXDOMAIN: the cluster has no endpoint, 503", poll(lambda: get(gw, "/strict")[0] == 503),
              get(gw, "/strict"))
        dns.set("backend.test", ["127.0.0.1"])
        check("the name is retried and serves again", poll(lambda: get(gw, "/strict") == (200, "backend-one")),
              get(gw, "/strict"))

        # --- a reload is applied without waiting for DNS
        services = dict(SERVICES)
        services.update(LATE)
        write_atomic(cfgfile, render(gw, port, "two", services))
        check("reload applied while a new name has no answer",
              poll(lambda: get(gw, "/version") == (200, "two")), get(gw, "/version"))
        check("the unanswered name: 503 meanwhile, the others serve",
              get(gw, "/late")[0] == 503 and get(gw, "/hostonly") == (200, "backend-one"),
              (get(gw, "/late"), get(gw, "/hostonly")))
        check("the DNS server was asked for it", poll(lambda: dns.count("late.test") > 0))
        dns.hold.discard("late.test")
        check("once it answers, the new name serves", poll(lambda: get(gw, "/late") == (200, "backend-two")),
              get(gw, "/late"))
        stats = request(admin, "GET", "/config_dump")[1]
        check("snapshots were recompiled for DNS answers", json.loads(stats).get("dns_updates", 0) >= 3,
              json.loads(stats).get("dns_updates"))

        # a lookup the server holds is in flight while the proxy stops
        dns.hold.add("host.test")
        held = dns.count("host.test")
        check("a held lookup is in flight", poll(lambda: dns.count("host.test") > held))
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            code = None
        check("SIGTERM with lookups in flight: clean exit 0 (nothing leaked under ASan)", code == 0, code)
    finally:
        stop_proxy(proc)
        log.close()
        one.shutdown()
        two.shutdown()
        dns.close()
        cleanup(tmp, [("proxy log", os.path.join(tmp, "proxy.log"), 40)])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
