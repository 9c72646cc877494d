#!/usr/bin/env python3
"""warmup_test.py - DestinationRule warmup (slow start) end to end, with real sockets and clients.

A gateway (`keel proxy router`, one worker) routes by path prefix to ServiceEntry clusters whose endpoints are two
Python HTTP backends, A and B, answering with their name. The config starts with A alone in `warm-rr` (ROUND_ROBIN,
warmup {duration 600s, minimumPercent 10}), `warm-lr` (LEAST_REQUEST, the deprecated warmupDurationSecs 600s),
`control` (ROUND_ROBIN, no warmup) and `random` (RANDOM, warmup 600s), and with both A and B in `start`
(ROUND_ROBIN, warmup 600s). Requests go to A. Then the config file is rewritten atomically (the proxy reloads it by
inotify) with B added to the four clusters and a new cluster `late` (A and B, LEAST_REQUEST, warmup 600s); the test
waits for the new config version on /config_dump and for the worker to balance over B, then sends 400 requests to
each cluster, one at a time:

- warm-rr, warm-lr: B is new to an existing cluster, so it warms up: the code's weight factor (upstream.c weight_of,
  lb.c keel_lb_warmup_factor) is max(minimumPercent/100, (age/duration)^(1/aggression)), A's is 1 (A was there at
  the proxy's start), so B's share is f/(1+f) = 1/11 while age < 60 s. The check allows B at most the count whose
  binomial tail probability under the largest f the elapsed time allows is < 1e-9, and at least the count whose
  lower tail under 1/11 is < 1e-9 (B still gets its minimum share, not nothing);
- control: the same change without warmup gives B about half (binomial bounds at 1e-9 around 1/2);
- random: RANDOM ignores warmup (Istio: warmup is for ROUND_ROBIN and LEAST_REQUEST; Envoy's slow start exists only
  in those two load balancers), so B gets about half;
- start: endpoints present at the proxy's start are not warming (Envoy warms only hosts added to an existing
  cluster), so B gets about half even with warmup configured;
- late: a cluster that is new in the config does not warm its first endpoints either (about half).

Together (twelve one-sided bounds at 1e-9 each) the false-failure probability is below 2e-8. Nothing asserts
timings: the age only sets the expected share, from the elapsed time measured by the test (an upper bound of B's
age).

Usage: tests/integration/warmup_test.py --keel build/debug/keel
"""
import http.client
import http.server
import json
import math
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (check, cleanup, free_port, http_get, keel_arg, serve, start_proxy, stop_proxy,  # noqa: E402
                     summary, wait_ready, write_atomic)

N = 400                # requests per cluster
WINDOW_S = 600.0       # warmup duration
MIN_PERCENT = 10.0     # warmup.minimumPercent (and the default of warmupDurationSecs)
AGGRESSION = 1.0
ALPHA = 1e-9           # false-failure probability allowed per bound


def backend(name):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # head and body leave in two writes: no Nagle/delayed-ACK stall between them

        def do_GET(self):
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    return serve(http.server.ThreadingHTTPServer, H)


CLUSTERS = {
    # name: (load balancer policy lines, endpoints in generation 1)
    "warm-rr": ("simple: ROUND_ROBIN\n      warmup: {duration: 600s, minimumPercent: 10}", "A"),
    "warm-lr": ("simple: LEAST_REQUEST\n      warmupDurationSecs: 600s", "A"),
    "control": ("simple: ROUND_ROBIN", "A"),
    "random": ("simple: RANDOM\n      warmup: {duration: 600s, minimumPercent: 10}", "A"),
    "start": ("simple: ROUND_ROBIN\n      warmup: {duration: 600s}", "AB"),
    "late": ("simple: LEAST_REQUEST\n      warmup: {duration: 600s, minimumPercent: 10}", None),
}


def config(gen, port, ports, log):
    out = ["""apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: %d, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    accessLogFile: %s
---
""" % (port, log)]
    routes = []
    for name, (lb, eps) in CLUSTERS.items():
        if gen == 2:
            eps = "AB"
        if not eps:
            continue
        host = "%s.internal" % name
        routes.append("  - match: [{uri: {prefix: /%s}}]\n    route: [{destination: {host: %s}}]" % (name, host))
        endpoints = "\n".join("  - {address: 127.0.0.1, ports: {http: %d}, labels: {b: %s}}" % (ports[e], e)
                              for e in eps)
        out.append("""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %s, namespace: istio-system}
spec:
  hosts: [%s]
  location: MESH_INTERNAL
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
%s
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: %s, namespace: istio-system}
spec:
  host: %s
  trafficPolicy:
    loadBalancer:
      %s
---
""" % (name, host, endpoints, name, host, lb))
    out.append("""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: routes, namespace: istio-system}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
%s
# generation %d
""" % ("\n".join(routes), gen))
    return "".join(out)


def warmup_factor(age_s):
    """keel_lb_warmup_factor (proxy/lb.c): max(minimumPercent, (age/window)^(1/aggression)), 1 past the window."""
    if age_s >= WINDOW_S:
        return 1.0
    x = max(age_s, 0.001) / WINDOW_S
    return max(MIN_PERCENT / 100.0, x ** (1.0 / AGGRESSION))


def binom_upper(n, p, alpha):
    """The smallest k with P(X >= k) < alpha for X ~ Binomial(n, p)."""
    tail = 0.0
    for k in range(n, -1, -1):
        pk = math.comb(n, k) * p ** k * (1 - p) ** (n - k)
        if tail + pk >= alpha:
            return k + 1
        tail += pk
    return 0


def binom_lower(n, p, alpha):
    """The largest k with P(X <= k) < alpha for X ~ Binomial(n, p)."""
    return n - binom_upper(n, 1 - p, alpha)


def snapshot_version(admin):
    try:
        return json.loads(http_get(admin, "/config_dump", timeout=10)[1])["snapshot"]["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def count(port, name, n):
    """n requests to /name, one at a time on one kept-alive connection; returns {backend: count}."""
    got = {}
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for i in range(n):
            c.request("GET", "/%s/%d" % (name, i))
            r = c.getresponse()
            body = r.read().decode()
            key = body if r.status == 200 else "status %d" % r.status
            got[key] = got.get(key, 0) + 1
    finally:
        c.close()
    return got


def main():
    keel = keel_arg()
    tmp = tempfile.mkdtemp(prefix="keel-warmup-test-")
    servers = [backend("A"), backend("B")]
    ports = {"A": servers[0][1], "B": servers[1][1]}
    port, admin = free_port(), free_port()
    cfgdir = os.path.join(tmp, "config")
    os.makedirs(cfgdir)
    cfgfile = os.path.join(cfgdir, "mesh.yaml")
    logpath = os.path.join(tmp, "access.log")
    write_atomic(cfgfile, config(1, port, ports, logpath))
    proxy_log = open(os.path.join(tmp, "proxy.log"), "w")
    proc = start_proxy(keel, "router", cfgdir, admin, proxy_log, "--concurrency", "1")
    try:
        check("proxy ready", wait_ready(keel, admin, timeout=20) == 0)
        deadline = time.time() + 10
        while time.time() < deadline and count(port, "control", 1) != {"A": 1}:
            time.sleep(0.1)  # the listener opens with the first snapshot
        for name in ("warm-rr", "warm-lr", "control", "random"):
            got = count(port, name, 20)
            check("generation 1: %s has A only (20 requests)" % name, got == {"A": 20}, got)
        got = count(port, "start", 100)
        check("generation 1: start balances over A and B", got.get("A", 0) > 0 and got.get("B", 0) > 0, got)

        # --- add B (and the cluster `late`): the file is replaced atomically, the proxy reloads by inotify
        v1 = snapshot_version(admin)
        added = time.monotonic()
        write_atomic(cfgfile, config(2, port, ports, logpath))
        deadline = time.time() + 20
        v2 = v1
        while time.time() < deadline and (v2 is None or v2 == v1):
            time.sleep(0.05)
            v2 = snapshot_version(admin)
        check("new config version on /config_dump", v1 is not None and v2 is not None and v2 != v1, (v1, v2))
        # the worker swaps to it from its loop: round robin over control shows B within two requests once it has
        seen = False
        while time.time() < deadline and not seen:
            seen = "B" in count(port, "control", 2)
        check("the worker balances over B", seen)

        results = {}
        for name in ("warm-rr", "warm-lr", "control", "random", "start", "late"):
            results[name] = count(port, name, N)
        elapsed = time.monotonic() - added  # B's age is at most this

        f_max = warmup_factor(elapsed)
        p_max = f_max / (1.0 + f_max)
        f_min = MIN_PERCENT / 100.0
        p_min = f_min / (1.0 + f_min)
        hi = binom_upper(N, p_max, ALPHA)
        lo = binom_lower(N, p_min, ALPHA)
        half_lo, half_hi = binom_lower(N, 0.5, ALPHA), binom_upper(N, 0.5, ALPHA) - 1
        print("     B's age <= %.1f s: warming share %.4f..%.4f, bounds %d..%d of %d; without warmup %d..%d"
              % (elapsed, p_min, p_max, lo + 1, hi - 1, N, half_lo + 1, half_hi))
        for name, got in results.items():
            print("     %-8s %s" % (name, got))
        for name in ("warm-rr", "warm-lr"):
            got = results[name]
            b = got.get("B", 0)
            check("%s: B, new to the cluster, warms up (%d of %d, expected %.1f, allowed %d..%d)"
                  % (name, b, N, N * p_max, lo + 1, hi - 1),
                  got.get("A", 0) + b == N and lo < b < hi, got)
        for name, what in (("control", "without warmup B gets about half"),
                           ("random", "RANDOM does not warm up (Envoy's slow start is for ROUND_ROBIN, LEAST_REQUEST)"),
                           ("start", "endpoints present at the proxy's start are not warming"),
                           ("late", "a cluster new in the config does not warm its first endpoints")):
            got = results[name]
            b = got.get("B", 0)
            check("%s: %s (B %d of %d, allowed %d..%d)" % (name, what, b, N, half_lo + 1, half_hi),
                  got.get("A", 0) + b == N and half_lo < b <= half_hi, got)
    finally:
        stop_proxy(proc)
        proxy_log.close()
        for srv, _ in servers:
            srv.shutdown()
        cleanup(tmp, [("proxy log", os.path.join(tmp, "proxy.log"), 30)])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
