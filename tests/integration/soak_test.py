#!/usr/bin/env python3
"""soak_test.py - a few hundred thousand requests through `keel proxy router`
while its config folder changes every second.

Setup: two upstreams ("subsets" v1 and v2 of one ServiceEntry) served by a
tiny asyncio HTTP/1.1 server in a child process (this script with
--upstream), answering every request with a fixed 2-byte body, "v1" or "v2".
The proxy runs with --concurrency 2. Several client threads send GETs over
keep-alive connections (each reconnects every --reconnect-every requests, so
connection setup and teardown are soaked too). The main thread rewrites
the VirtualService once a second, cycling through four versions:

  version % 4 == 0: all traffic to v1, response header op `set`
  version % 4 == 1: 70/30 split,      `add` + `remove: [x-upstream]`
  version % 4 == 2: all traffic to v2, `set`
  version % 4 == 3: 30/70 split,      `add` + `remove: [x-upstream]`

and every second version adds or removes an unrelated ServiceEntry in a file
of its own. Each response carries its config version (x-soak-version), so
every response is checked against the snapshot it was served from: status
200, body v1/v2 as that version's route allows, x-upstream present (and
equal to the body) exactly when that version does not remove it. Versions on
one connection never go backwards (a connection stays on one worker, and a
worker only moves to newer snapshots).

Asserts: zero failed requests; every config version written was applied
(the controller waits for each one on a direct-response route, and at the
end keel_config_reloads_total >= versions written, no reload failures, no
last_error on /config_dump); flat memory: the proxy's VmRSS at the end is at
most --rss-growth-mib (4 MiB) above its value after warm-up (samples printed);
clean exit 0 on SIGTERM.

Memory bound: after warm-up (the first 15% of the requests) every
per-connection and per-request object has been allocated and freed many
times over and the allocator's free lists are populated, so a leak-free
proxy stays flat: measured +0.02-0.04 MiB over the remaining 170,000 requests on
the debug build, +1.2 MiB on the ASan build (ASan's own bookkeeping; its
quarantine of freed memory is capped with ASAN_OPTIONS quarantine_size_mb=16
so that the warm-up fills it). The bound, 4 MiB, sits well above that noise
but below what the smallest leak per request adds up to: one 32-byte malloc
chunk per request is 5.2 MiB over the 170,000 requests after warm-up of the
full run (the 50,000-request ctest run catches leaks of ~100 bytes a
request and up). Leaks per connection or per config version are too few to
show in RSS; the ASan build catches those at exit (LeakSanitizer makes the
SIGTERM exit status non-zero).

HTTP/2: h2load sends --h2-requests (20,000) over 2 connections x 8 streams
alongside the HTTP/1.1 clients, through the same config changes; every one
must be answered 2xx.

Usage: tests/integration/soak_test.py --keel build/debug/keel [--requests 200000] [--h2-requests 20000]
"""
import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (check, cleanup, free_port, http_get, metric, start_proxy, stop_proxy, summary,  # noqa: E402
                     wait_ready, write_atomic)


# ---- upstream (child process) -------------------------------------------------------------------------------------

class UpstreamProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive server: every request gets 200 and the 2-byte body; pipelining and request bodies
    (Content-Length) are handled, anything else closes the connection."""

    def __init__(self, name):
        self.resp = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\nX-Upstream: %s\r\n\r\n%s"
                     % (name, name))
        self.buf = b""
        self.skip = 0
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        buf = self.buf + data
        out = []
        while True:
            if self.skip:
                n = min(self.skip, len(buf))
                buf = buf[n:]
                self.skip -= n
                if self.skip:
                    break
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                break
            head = buf[:i].lower()
            buf = buf[i + 4:]
            if b"transfer-encoding" in head:
                self.transport.close()
                return
            m = re.search(rb"\r\ncontent-length:[ \t]*(\d+)", head)
            if m:
                self.skip = int(m.group(1))
            out.append(self.resp)
        self.buf = buf
        if out:
            self.transport.write(b"".join(out))


def run_upstream():
    async def serve():
        loop = asyncio.get_running_loop()
        servers = []
        for name in (b"v1", b"v2"):
            srv = await loop.create_server(lambda n=name: UpstreamProtocol(n), "127.0.0.1", 0, backlog=512)
            servers.append(srv)
        print(" ".join(str(s.sockets[0].getsockname()[1]) for s in servers), flush=True)
        # exits when the parent closes our stdin
        await loop.run_in_executor(None, sys.stdin.read)

    asyncio.run(serve())
    return 0


# ---- config ---------------------------------------------------------------------------------------------------------

BASE = """\
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
kind: ServiceEntry
metadata: {{name: app, namespace: istio-system}}
spec:
  hosts: [app.example.com]
  location: MESH_INTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    ports: {{http: {v1}}}
    labels: {{version: v1}}
  - address: 127.0.0.1
    ports: {{http: {v2}}}
    labels: {{version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: app, namespace: istio-system}}
spec:
  host: app.example.com
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
"""

VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: routes, namespace: istio-system}}
spec:
  hosts: ["*"]
  gateways: [ingress]
  http:
  - name: version
    match: [{{uri: {{exact: /__soak/version}}}}]
    directResponse: {{status: 200, body: {{string: "{version}"}}}}
  - name: soak
    match: [{{uri: {{prefix: /}}}}]
    headers:
      response:
{ops}
    route:
{dests}
"""

UNRELATED = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: unrelated-{n}, namespace: istio-system}}
spec:
  hosts: [unrelated-{n}.example.com]
  location: MESH_EXTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 192.0.2.{n3}}}]
"""


def version_rules(v):
    """(allowed bodies, x-upstream removed?) for config version v."""
    k = v % 4
    allowed = {0: {b"v1"}, 1: {b"v1", b"v2"}, 2: {b"v2"}, 3: {b"v1", b"v2"}}[k]
    return allowed, k in (1, 3)


def vs_yaml(v):
    k = v % 4
    if k in (0, 2):
        ops = "        set: {x-soak-version: \"%d\"}" % v
        dests = "    - destination: {host: app.example.com, subset: %s}" % ("v1" if k == 0 else "v2")
    else:
        ops = "        add: {x-soak-version: \"%d\"}\n        remove: [x-upstream]" % v
        w1 = 70 if k == 1 else 30
        dests = ("    - destination: {host: app.example.com, subset: v1}\n      weight: %d\n"
                 "    - destination: {host: app.example.com, subset: v2}\n      weight: %d" % (w1, 100 - w1))
    return VS.format(version=v, ops=ops, dests=dests)


# ---- clients --------------------------------------------------------------------------------------------------------

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.done = 0
        self.failed = 0
        self.errors = []
        self.bodies = {b"v1": 0, b"v2": 0}
        self.versions = set()
        self.connections = 0

    def fail(self, what):
        with self.lock:
            self.failed += 1
            if len(self.errors) < 20:
                self.errors.append(what)


def read_response(sock, buf):
    """Returns (status, headers dict, body, rest of buf). Raises on EOF or a malformed response."""
    while True:
        i = buf.find(b"\r\n\r\n")
        if i >= 0:
            break
        if len(buf) > 65536:
            raise ValueError("response head too large")
        b = sock.recv(65536)
        if not b:
            raise ConnectionError("proxy closed the connection")
        buf += b
    lines = buf[:i].split(b"\r\n")
    if not lines[0].startswith(b"HTTP/1.1 "):
        raise ValueError("bad status line %r" % lines[0][:80])
    status = int(lines[0][9:12])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    n = int(headers.get(b"content-length", b"-1"))
    if n < 0:
        raise ValueError("response without content-length: %r" % buf[:i][:200])
    buf = buf[i + 4:]
    while len(buf) < n:
        b = sock.recv(65536)
        if not b:
            raise ConnectionError("proxy closed the connection mid-body")
        buf += b
    return status, headers, buf[:n], buf[n:]


def client(port, count, reconnect_every, stats, stop, tid):
    sock = None
    buf = b""
    on_conn = 0
    last_version = -1
    local_bodies = {b"v1": 0, b"v2": 0}
    local_versions = set()
    done = 0
    for i in range(count):
        if stop.is_set():
            break
        try:
            if sock is None or on_conn >= reconnect_every:
                if sock is not None:
                    sock.close()
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buf = b""
                on_conn = 0
                last_version = -1
                with stats.lock:
                    stats.connections += 1
            sock.sendall(b"GET /soak/%d/%d HTTP/1.1\r\nHost: app.example.com\r\n\r\n" % (tid, i))
            status, headers, body, buf = read_response(sock, buf)
            on_conn += 1
            if headers.get(b"connection", b"").lower() == b"close":
                sock.close()
                sock = None
            v = int(headers.get(b"x-soak-version", b"-1"))
            allowed, removed = version_rules(v) if v >= 0 else (set(), False)
            up = headers.get(b"x-upstream")
            problem = None
            if status != 200:
                problem = "status %d" % status
            elif v < 0:
                problem = "no x-soak-version header"
            elif body not in allowed:
                problem = "body %r not allowed by version %d" % (body, v)
            elif removed and up is not None:
                problem = "version %d removes x-upstream but it is there" % v
            elif not removed and up != body:
                problem = "version %d: x-upstream %r, body %r" % (v, up, body)
            elif v < last_version:
                problem = "version went back from %d to %d on one connection" % (last_version, v)
            if problem:
                stats.fail("thread %d request %d: %s" % (tid, i, problem))
            else:
                local_bodies[body] += 1
                local_versions.add(v)
            last_version = max(last_version, v)
        except (OSError, ValueError) as e:
            stats.fail("thread %d request %d: %r" % (tid, i, e))
            if sock is not None:
                sock.close()
            sock = None
        done += 1
        if done % 200 == 0:
            with stats.lock:
                stats.done += 200
    if sock is not None:
        sock.close()
    with stats.lock:
        stats.done += done % 200
        for k, n in local_bodies.items():
            stats.bodies[k] += n
        stats.versions |= local_versions


# ---- proxy observation ----------------------------------------------------------------------------------------------

def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keel", help="the keel binary")
    ap.add_argument("--requests", type=int, default=200000, help="total requests (default 200000)")
    ap.add_argument("--threads", type=int, default=6, help="client threads, one keep-alive connection each")
    ap.add_argument("--reconnect-every", type=int, default=250, help="requests per client connection")
    ap.add_argument("--warmup", type=float, default=0.15, help="fraction of requests before the baseline RSS sample")
    ap.add_argument("--rss-growth-mib", type=float, default=4.0, help="allowed VmRSS growth after warm-up")
    ap.add_argument("--max-seconds", type=float, default=900, help="give up (and fail) after this long")
    ap.add_argument("--h2-requests", type=int, default=20000,
                    help="HTTP/2 requests sent by h2load (2 connections x 8 streams) alongside, 0 = none")
    ap.add_argument("--upstream", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.upstream:
        return run_upstream()
    if not args.keel:
        ap.error("--keel is required")
    keel = os.path.abspath(args.keel)
    tmp = tempfile.mkdtemp(prefix="keel-soak-test-")
    up = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--upstream"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE)
    p1, p2 = (int(x) for x in up.stdout.readline().split())
    gw, admin = free_port(), free_port()
    cfgdir = os.path.join(tmp, "config")
    os.makedirs(cfgdir)
    with open(os.path.join(cfgdir, "base.yaml"), "w") as f:
        f.write(BASE.format(gw=gw, v1=p1, v2=p2))
    vsfile = os.path.join(cfgdir, "vs.yaml")
    unrelated = os.path.join(cfgdir, "unrelated.yaml")
    write_atomic(vsfile, vs_yaml(0))
    env = dict(os.environ)
    # cap ASan's quarantine of freed memory (ignored by builds without ASan) so RSS can level off
    env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=16").lstrip(":")
    proxy_log = open(os.path.join(tmp, "proxy.log"), "w")
    proc = start_proxy(keel, "router", cfgdir, admin, proxy_log, "--concurrency", "2", "--drain", "3", env=env)
    stats = Stats()
    stop = threading.Event()
    written = [0]           # config versions written (0 = the initial one)
    unapplied = []          # versions the data plane never served
    apply_ms = []
    samples = []            # (seconds, requests done, VmRSS KiB)
    baseline = [None]
    try:
        rc = wait_ready(keel, admin, timeout=20)
        check("keel proxy wait returns once ready", rc == 0)
        if rc != 0:
            return 1
        check("version 0 served", http_get(gw, "/__soak/version") == (200, b"0"))

        t0 = time.time()
        warm_at = max(1, int(args.requests * args.warmup))
        per = [args.requests // args.threads + (1 if i < args.requests % args.threads else 0)
               for i in range(args.threads)]
        threads = [threading.Thread(target=client, args=(gw, per[i], args.reconnect_every, stats, stop, i))
                   for i in range(args.threads)]
        for t in threads:
            t.start()
        # HTTP/2 clients too (1,000 req/s, so they span several config changes): streams on few connections
        h2 = subprocess.Popen(["h2load", "-n", str(args.h2_requests), "-c", "2", "-m", "8", "--rps", "500",
                               "http://127.0.0.1:%d/soak" % gw], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) if args.h2_requests else None

        # controller: a new config every second until the clients are done; RSS sampled every second
        se_present = False
        se_serial = 0
        next_tick = time.time() + 1
        while any(t.is_alive() for t in threads):
            if time.time() - t0 > args.max_seconds:
                stop.set()
                check("finished within --max-seconds %d" % args.max_seconds, False)
                break
            time.sleep(max(0, next_tick - time.time()))
            next_tick += 1
            if proc.poll() is not None:
                stop.set()
                break
            with stats.lock:
                done = stats.done
            kib = rss_kib(proc.pid)
            samples.append((time.time() - t0, done, kib))
            if baseline[0] is None and done >= warm_at:
                baseline[0] = samples[-1]
            v = written[0] + 1
            if v % 2 == 0:
                if se_present:
                    os.unlink(unrelated)
                else:
                    se_serial += 1
                    write_atomic(unrelated, UNRELATED.format(n=se_serial, n3=se_serial % 250 + 1))
                se_present = not se_present
            write_atomic(vsfile, vs_yaml(v))
            written[0] = v
            # the version is applied when the data plane serves it
            ts = time.time()
            seen = None
            while time.time() - ts < 10:
                try:
                    seen = http_get(gw, "/__soak/version")
                except OSError as e:
                    seen = repr(e)
                if seen == (200, str(v).encode()):
                    break
                time.sleep(0.01)
            if seen == (200, str(v).encode()):
                apply_ms.append((time.time() - ts) * 1000)
            else:
                unapplied.append((v, seen))
        for t in threads:
            t.join()
        if h2:
            try:
                h2out = h2.communicate(timeout=max(30, args.max_seconds - (time.time() - t0)))[0]
            except subprocess.TimeoutExpired:
                h2.kill()
                h2out = h2.communicate()[0]
            m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                          r"(\d+) errored", h2out)
            codes = re.search(r"status codes: (\d+) 2xx", h2out)
            print("     h2load alongside: %s" % (m.group(0) if m else h2out[-300:]))
            check("HTTP/2 clients through the config changes: every request answered 2xx",
                  m is not None and codes is not None and int(m.group(3)) == args.h2_requests and
                  int(m.group(4)) == 0 and int(m.group(5)) == 0 and int(codes.group(1)) == args.h2_requests,
                  h2out[-600:])
        elapsed = time.time() - t0
        alive = proc.poll() is None
        end_rss = rss_kib(proc.pid) if alive else -1
        samples.append((elapsed, stats.done, end_rss))

        print("     %d requests in %.1fs (%.0f/s) over %d connections, %d threads; v1 %d, v2 %d"
              % (stats.done, elapsed, stats.done / max(elapsed, 0.001), stats.connections, args.threads,
                 stats.bodies[b"v1"], stats.bodies[b"v2"]))
        print("     %d config versions written after the initial one; %d distinct versions seen in responses"
              % (written[0], len(stats.versions)))
        if apply_ms:
            s = sorted(apply_ms)
            print("     config applied (write -> served): median %.0f ms, max %.0f ms" % (s[len(s) // 2], s[-1]))
        print("     VmRSS samples (s, requests done, KiB):")
        for i, (sec, done, kib) in enumerate(samples):
            if len(samples) <= 40 or i % max(1, len(samples) // 30) == 0 or i == len(samples) - 1:
                mark = "  <- baseline (after warm-up)" if baseline[0] is samples[i] else ""
                print("       %6.1f %8d %8d%s" % (sec, done, kib, mark))
        for e in stats.errors[:10]:
            print("     error: %s" % e)

        check("proxy alive after the soak", alive,
              "exit status %s (negative: killed by that signal)" % proc.returncode)
        check("%d requests sent" % args.requests, stats.done == args.requests, stats.done)
        check("%d failed requests" % stats.failed, stats.failed == 0, stats.errors[:5])
        check("config changed under load (%d versions)" % written[0], written[0] >= 1, written[0])
        check("every config version served by the data plane", not unapplied, unapplied[:5])
        check("responses carried several config versions", len(stats.versions) >= 2,
              sorted(stats.versions))
        if alive:
            _, text = http_get(admin, "/stats/prometheus")
            text = text.decode()
            reloads = metric(text, "keel_config_reloads_total")
            refused = metric(text, "keel_config_reload_failures_total")
            rq = metric(text, "envoy_http_downstream_rq_total")
            print("     keel_config_reloads_total %s, keel_config_reload_failures_total %s, "
                  "envoy_http_downstream_rq_total %s" % (reloads, refused, rq))
            check("keel_config_reloads_total >= versions written (%d)" % (written[0] + 1),
                  reloads is not None and reloads >= written[0] + 1, reloads)
            check("no config reload refused", refused == 0, refused)
            dump = json.loads(http_get(admin, "/config_dump")[1])
            check("/config_dump: no last_error", dump.get("last_error") is None, dump.get("last_error"))
            check("downstream requests counted", rq is not None and rq >= stats.done, rq)
        if baseline[0] is None:
            check("RSS baseline taken after warm-up", False, "run too short for a sample after warm-up")
        elif alive:
            grow = (end_rss - baseline[0][2]) / 1024.0
            check("flat memory: VmRSS %d KiB after warm-up -> %d KiB at the end (%+.2f MiB, bound %.0f MiB)"
                  % (baseline[0][2], end_rss, grow, args.rss_growth_mib), grow < args.rss_growth_mib,
                  [s[2] for s in samples])

        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            code = None
        check("SIGTERM: clean exit 0", code == 0, code)
    finally:
        stop.set()
        stop_proxy(proc)
        proxy_log.close()
        up.stdin.close()
        try:
            up.wait(timeout=5)
        except subprocess.TimeoutExpired:
            up.kill()
        cleanup(tmp, [("proxy log", os.path.join(tmp, "proxy.log"), 30)])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
