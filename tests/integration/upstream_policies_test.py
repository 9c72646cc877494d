#!/usr/bin/env python3
"""upstream_policies_test.py - DestinationRule policies at the upstream layer, with real sockets and clients.

A sidecar (`keel proxy sidecar`, two workers so that counting across workers is exercised) in front of
`keel sample-app` backends, one ServiceEntry host per scenario:

- outlier detection: the user's field guide's policy as written (consecutiveGatewayErrors 3, interval 10s,
  baseEjectionTime 30s) over ten endpoints, one always answering 503: exactly three requests reach it, then it is
  ejected (/clusters flag, envoy_cluster_outlier_detection_* counters); a short baseEjectionTime returns the
  endpoint to service; maxEjectionPercent caps ejections (overflow counted); minHealthPercent's panic sends
  traffic to ejected endpoints again;
- circuit breaking: maxConnections 1 + http1MaxPendingRequests 1 + maxRequestsPerConnection 1 under 20
  concurrent slow requests gives some 503 UO (access log, overflow counters), serial requests all pass, one
  upstream connection per request;
- consistent hash: header (ring hash), query parameter (Maglev), cookie (generated, then sticky) and source IP;
- locality: the proxy in us-east/a sends everything to its zone, fails over when its region's endpoints are
  gone, and `distribute` splits traffic by locality; retries stay in the zone unless retryRemoteLocalities;
  tcpKeepalive arms keep-alive timers on pooled HTTP connections (/proc/net/tcp).

Statistics over enough requests, never timings. Usage: tests/integration/upstream_policies_test.py --keel KEEL
"""
import http.client
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (check, cleanup, free_port, keel_arg, request, start_proxy, stop_proxy, summary,  # noqa: E402
                     wait_ready)

KEEL = keel_arg()
TMP = tempfile.mkdtemp(prefix="keel-policies-")
APPS = []


def app(name, listen, *args):
    """Starts `keel sample-app` on listen ("IP:PORT"); returns the port once it answers /healthz."""
    log = open(os.path.join(TMP, "app-%s.log" % name), "w")
    p = subprocess.Popen([KEEL, "sample-app", "--listen", listen, "--name", name] + list(args), stdout=log,
                         stderr=subprocess.STDOUT)
    APPS.append(p)
    host, port = listen.rsplit(":", 1)
    host = "127.0.0.1" if host == "0.0.0.0" else host
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection(host, int(port), timeout=1)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                c.close()
                return p
        except OSError:
            time.sleep(0.05)
    return p


def se(host, endpoints, extra=""):
    """A ServiceEntry for host:9080 with endpoints [(address, port, locality or None)]."""
    eps = []
    for addr, port, loc in endpoints:
        e = "  - {address: %s, ports: {http: %d}" % (addr, port)
        if loc:
            e += ", locality: %s" % loc
        eps.append(e + "}")
    return """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %s, namespace: default}
spec:
  hosts: [%s]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
%s
---
""" % (host.replace(".", "-"), host, "\n".join(eps))


def dr(host, policy):
    return """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: %s, namespace: default}
spec:
  host: %s
  trafficPolicy:
%s
---
""" % (host.replace(".", "-"), host, "\n".join("    " + ln for ln in policy.strip("\n").splitlines()))


def get(host, path="/", headers=None, source=None):
    """One request through the sidecar's outbound listener on a new connection. Returns (status, app name,
    response)."""
    h = {"Host": "%s:9080" % host}
    h.update(headers or {})
    c = http.client.HTTPConnection("127.0.0.1", OUT, timeout=10, source_address=(source, 0) if source else None)
    try:
        c.request("GET", path, headers=h)
        r = c.getresponse()
        r.read()
        return r.status, r.getheader("x-app-name"), r
    finally:
        c.close()


def admin(path):
    r, body = request(ADMIN, "GET", path)
    return body.decode()


def cmetric(text, name, cluster):
    m = re.search(r'^%s\{cluster_name="%s"\} (\d+)$' % (re.escape(name), re.escape(cluster)), text, re.M)
    return int(m.group(1)) if m else None


def flags(cluster, addr):
    m = re.search(r"^%s::%s::health_flags::(\S+)$" % (re.escape(cluster), re.escape(addr)), admin("/clusters"), re.M)
    return m.group(1) if m else None


def wait_for(cond, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def cl(host):
    return "outbound|9080||%s" % host


# ---- backends ----------------------------------------------------------------------------------------------------
GOOD = free_port()   # one app on 0.0.0.0: 127.0.0.2..10 are nine distinct endpoints of it
BAD = free_port()    # always 503, on 0.0.0.0 too
H = [free_port() for _ in range(3)]
app("good", "0.0.0.0:%d" % GOOD)
app("bad", "0.0.0.0:%d" % BAD, "--fail-rate", "1", "--fail-code", "503")
for i, p in enumerate(H):
    app("h%d" % (i + 1), "127.0.0.1:%d" % p)

OUT = free_port()
ADMIN = free_port()
ACCESS = os.path.join(TMP, "access.log")
cfg = os.path.join(TMP, "config")
os.mkdir(cfg)

GUIDE_POLICY = """outlierDetection:
  consecutiveGatewayErrors: 3
  interval: 10s
  baseEjectionTime: 30s
loadBalancer: {simple: ROUND_ROBIN}
"""
config = ""
# outlier detection: the guide's policy over ten endpoints (nine good, one bad)
config += se("guide.test", [("127.0.0.%d" % i, GOOD, None) for i in range(2, 11)] + [("127.0.0.1", BAD, None)])
config += dr("guide.test", GUIDE_POLICY)
# a short ejection, to see the endpoint come back
config += se("back.test", [("127.0.0.2", GOOD, None), ("127.0.0.3", GOOD, None), ("127.0.0.1", BAD, None)])
config += dr("back.test", """outlierDetection: {consecutiveGatewayErrors: 3, interval: 1s, baseEjectionTime: 1s,
  maxEjectionPercent: 100}
loadBalancer: {simple: ROUND_ROBIN}""")
# maxEjectionPercent 25 of four endpoints: a second ejection would start from 25% already out: refused
config += se("max.test", [("127.0.0.2", GOOD, None), ("127.0.0.3", GOOD, None), ("127.0.0.1", BAD, None),
                          ("127.0.0.2", BAD, None)])
config += dr("max.test", """outlierDetection: {consecutiveGatewayErrors: 3, interval: 10s, baseEjectionTime: 30s,
  maxEjectionPercent: 25}
loadBalancer: {simple: ROUND_ROBIN}""")
# panic: two of three ejected is under minHealthPercent 50
config += se("panic.test", [("127.0.0.2", GOOD, None), ("127.0.0.1", BAD, None), ("127.0.0.2", BAD, None)])
config += dr("panic.test", """outlierDetection: {consecutiveGatewayErrors: 3, interval: 10s, baseEjectionTime: 30s,
  maxEjectionPercent: 100, minHealthPercent: 50}
loadBalancer: {simple: ROUND_ROBIN}""")
# circuit breaker: the guide's three settings together
config += se("cb.test", [("127.0.0.1", GOOD, None)])
config += dr("cb.test", """connectionPool:
  tcp: {maxConnections: 1}
  http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}""")
# consistent hash
HEPS = [("127.0.0.1", p, None) for p in H]
config += se("hash.test", HEPS) + dr("hash.test", """loadBalancer:
  consistentHash: {httpHeaderName: x-user, ringHash: {minimumRingSize: 1024}}""")
config += se("hashq.test", HEPS) + dr("hashq.test", """loadBalancer:
  consistentHash: {httpQueryParameterName: user, maglev: {tableSize: 65537}}""")
config += se("hashc.test", HEPS) + dr("hashc.test", """loadBalancer:
  consistentHash: {httpCookie: {name: session, path: /, ttl: 60s}}""")
config += se("hashs.test", HEPS) + dr("hashs.test", """loadBalancer:
  consistentHash: {useSourceIp: true}""")
# locality: the proxy is in us-east/a
LOC = [("127.0.0.1", H[0], "us-east/a"), ("127.0.0.1", H[1], "us-east/b"), ("127.0.0.1", H[2], "us-west/a")]
config += se("loc.test", LOC) + dr("loc.test", """outlierDetection: {consecutive5xxErrors: 1, interval: 1s,
  baseEjectionTime: 30s, maxEjectionPercent: 100}""")
config += se("dist.test", LOC) + dr("dist.test", """loadBalancer:
  localityLbSetting:
    enabled: true
    distribute:
    - from: us-east/a/*
      to: {"us-east/a/*": 75, "us-west/a/*": 25}""")
# failoverPriority: endpoints sorted by how many of the listed labels match, in order ("app" against the proxy's
# app=client, "track=canary" against that value)
FP_EPS = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %s, namespace: default}
spec:
  hosts: [%s]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, ports: {http: %d}, labels: {app: client, track: stable}}
  - {address: 127.0.0.1, ports: {http: %d}, labels: {app: client, track: canary}}
  - {address: 127.0.0.1, ports: {http: %d}, labels: {app: other, track: canary}}
---
"""
for name, prio in (("fpkey", '["app"]'), ("fpval", '["track=canary"]'), ("fpmix", '["app", "track=canary"]')):
    config += FP_EPS % (name, name + ".test", H[0], H[1], H[2]) + dr(name + ".test", """loadBalancer:
  simple: ROUND_ROBIN
  localityLbSetting: {enabled: true, failoverPriority: %s}
outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}""" % prio)
# retryRemoteLocalities: a failing endpoint in the proxy's zone; the retry stays in the zone, or leaves it
RETRY_EPS = [("127.0.0.1", BAD, "us-east/a"), ("127.0.0.1", H[0], "us-east/a"), ("127.0.0.1", H[1], "us-east/b")]
for name, remote in (("remote", "true"), ("local", "false")):
    config += se("%s.test" % name, RETRY_EPS) + dr("%s.test" % name, """outlierDetection: {consecutive5xxErrors: 1000,
  interval: 10s, baseEjectionTime: 1s}
loadBalancer: {simple: ROUND_ROBIN}
connectionPool:
  tcp: {tcpKeepalive: {time: 7s, interval: 3s, probes: 2}}""")
    config += """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: %s, namespace: default}
spec:
  hosts: [%s.test]
  http:
  - retries: {attempts: 1, retryOn: 5xx, retryRemoteLocalities: %s}
    route: [{destination: {host: %s.test}}]
---
""" % (name, name, remote, name)
config += """apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    accessLogFile: %s
""" % ACCESS
with open(os.path.join(cfg, "mesh.yaml"), "w") as f:
    f.write(config)

plog = open(os.path.join(TMP, "proxy.log"), "w")
proxy = start_proxy(KEEL, "sidecar", cfg, ADMIN, plog, "--labels", "app=client", "--outbound", "127.0.0.1:%d" % OUT,
                    "--concurrency", "2", "--locality", "us-east/a", "--no-watch")
try:
    check("proxy ready", wait_ready(KEEL, ADMIN, timeout=20) == 0)

    # ---- outlier detection: the guide's policy ----
    got = [get("guide.test") for _ in range(60)]
    bad_hits = sum(1 for s, n, _ in got if n == "bad")
    check("guide policy: exactly 3 consecutive 503s reach the failing endpoint across two workers",
          bad_hits == 3, bad_hits)
    check("guide policy: the other endpoints answer", sum(1 for s, n, _ in got if s == 200) == 57,
          [s for s, n, _ in got])
    check("guide policy: /clusters flags the ejected endpoint",
          flags(cl("guide.test"), "127.0.0.1:%d" % BAD) == "/failed_outlier_check", admin("/clusters")[-2000:])
    stats = admin("/stats/prometheus")
    check("guide policy: ejections_enforced_total 1",
          cmetric(stats, "envoy_cluster_outlier_detection_ejections_enforced_total", cl("guide.test")) == 1)
    check("guide policy: ejections_active 1",
          cmetric(stats, "envoy_cluster_outlier_detection_ejections_active", cl("guide.test")) == 1)
    check("guide policy: gateway-error ejection counted", cmetric(
        stats, "envoy_cluster_outlier_detection_ejections_enforced_consecutive_gateway_failure",
        cl("guide.test")) == 1)

    # ---- the endpoint comes back after baseEjectionTime (1s, sweep every 1s) ----
    got = [get("back.test") for _ in range(12)]
    check("back: ejected after 3 errors", sum(1 for s, n, _ in got if n == "bad") == 3,
          [n for s, n, _ in got])
    check("back: flagged", flags(cl("back.test"), "127.0.0.1:%d" % BAD) == "/failed_outlier_check")
    check("back: returned to service after baseEjectionTime",
          wait_for(lambda: flags(cl("back.test"), "127.0.0.1:%d" % BAD) == "healthy", 10))
    got = [get("back.test") for _ in range(12)]
    check("back: traffic reaches it again, and it is ejected again after 3 more",
          sum(1 for s, n, _ in got if n == "bad") == 3, [n for s, n, _ in got])
    stats = admin("/stats/prometheus")
    check("back: two ejections enforced",
          cmetric(stats, "envoy_cluster_outlier_detection_ejections_enforced_total", cl("back.test")) == 2)

    # ---- maxEjectionPercent ----
    got = [get("max.test") for _ in range(30)]
    stats = admin("/stats/prometheus")
    check("maxEjectionPercent 25: one of two failing endpoints ejected",
          cmetric(stats, "envoy_cluster_outlier_detection_ejections_active", cl("max.test")) == 1)
    check("maxEjectionPercent 25: the second ejection overflowed",
          (cmetric(stats, "envoy_cluster_outlier_detection_ejections_overflow", cl("max.test")) or 0) >= 1)
    check("maxEjectionPercent 25: the other failing endpoint still gets traffic",
          sum(1 for s, n, _ in got[-10:] if n == "bad") >= 3, [n for s, n, _ in got])

    # ---- panic (minHealthPercent 50) ----
    got = [get("panic.test") for _ in range(40)]
    stats = admin("/stats/prometheus")
    check("panic: both failing endpoints ejected",
          cmetric(stats, "envoy_cluster_outlier_detection_ejections_active", cl("panic.test")) == 2)
    check("panic: under minHealthPercent, ejected endpoints get traffic again",
          sum(1 for s, n, _ in got[-12:] if n == "bad") >= 4, [n for s, n, _ in got])

    # ---- circuit breaker ----
    results = []
    lock = threading.Lock()

    def slow():
        try:
            s, n, r = get("cb.test", "/delay/0.3")
        except OSError as e:
            s = str(e)
        with lock:
            results.append(s)
    ts = [threading.Thread(target=slow) for _ in range(20)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check("circuit breaker: 20 concurrent requests, some refused with 503",
          results.count(503) >= 1 and results.count(200) >= 1, results)
    def uo_lines():
        # the proxy writes a line after the response went out: poll a moment for the last ones
        with open(ACCESS) as f:
            return [ln for ln in f if "cb.test" in ln and " UO " in ln and "overflow" in ln]
    wait_for(lambda: len(uo_lines()) >= results.count(503), 5)
    check("circuit breaker: access log shows 503 UO upstream_reset_before_response_started{overflow}",
          len(uo_lines()) == results.count(503), (len(uo_lines()), results.count(503)))
    stats = admin("/stats/prometheus")
    check("circuit breaker: envoy_cluster_upstream_rq_pending_overflow > 0",
          (cmetric(stats, "envoy_cluster_upstream_rq_pending_overflow", cl("cb.test")) or 0) > 0)
    cx0 = cmetric(stats, "envoy_cluster_upstream_cx_total", cl("cb.test")) or 0
    serial = [get("cb.test")[0] for _ in range(10)]
    check("circuit breaker: serial requests all pass", serial == [200] * 10, serial)
    stats = admin("/stats/prometheus")
    cx1 = cmetric(stats, "envoy_cluster_upstream_cx_total", cl("cb.test")) or 0
    check("maxRequestsPerConnection 1: one upstream connection per request", cx1 - cx0 == 10, (cx0, cx1))
    check("maxRequestsPerConnection 1: counted",
          (cmetric(stats, "envoy_cluster_upstream_cx_max_requests", cl("cb.test")) or 0) >= 10)

    # ---- consistent hash ----
    seen = {}
    spread = set()
    for i in range(200):
        user = "user-%d" % (i % 20)
        s, n, _ = get("hash.test", headers={"x-user": user})
        seen.setdefault(user, set()).add(n)
        spread.add(n)
    check("ring hash on a header: each value always reaches the same endpoint",
          all(len(v) == 1 for v in seen.values()), seen)
    check("ring hash on a header: values spread over every endpoint", spread == {"h1", "h2", "h3"}, spread)
    seen = {}
    spread = set()
    for i in range(120):
        user = "u%d" % (i % 20)
        s, n, _ = get("hashq.test", "/?user=%s&x=%d" % (user, i))
        seen.setdefault(user, set()).add(n)
        spread.add(n)
    check("maglev on a query parameter: sticky", all(len(v) == 1 for v in seen.values()), seen)
    check("maglev on a query parameter: spread", len(spread) == 3, spread)
    s, n, r = get("hashc.test")
    cookie = r.getheader("set-cookie") or ""
    check("cookie hash: the proxy sets the cookie when absent",
          cookie.startswith("session=") and "Max-Age=60" in cookie and "Path=/" in cookie, cookie)
    value = cookie.split(";")[0]
    names = {get("hashc.test", headers={"Cookie": value})[1] for _ in range(15)}
    check("cookie hash: requests with the cookie stick to one endpoint", len(names) == 1, names)
    check("cookie hash: no new cookie once sent", get("hashc.test", headers={"Cookie": value})[2].getheader(
        "set-cookie") is None)
    seen = {}
    for i in range(60):
        src = "127.0.0.%d" % (2 + i % 12)
        seen.setdefault(src, set()).add(get("hashs.test", source=src)[1])
    check("source IP hash: each client address sticks", all(len(v) == 1 for v in seen.values()), seen)
    check("source IP hash: addresses spread", len(set().union(*seen.values())) >= 2, seen)

    # ---- retryRemoteLocalities ----
    got = [get("local.test") for _ in range(20)]
    check("retries stay in the proxy's zone by default (the failing endpoint's retry goes to h1)",
          all(s == 200 for s, n, _ in got) and {n for s, n, _ in got} == {"h1"}, [(s, n) for s, n, _ in got])
    got = [get("remote.test") for _ in range(20)]
    check("retryRemoteLocalities: retries leave the zone (some answered by h2 in us-east/b)",
          all(s == 200 for s, n, _ in got) and "h2" in {n for s, n, _ in got} and
          {n for s, n, _ in got} <= {"h1", "h2"}, [(s, n) for s, n, _ in got])

    # ---- tcpKeepalive on pooled HTTP connections: /proc/net/tcp's timer field is 2 (keepalive) ----
    def keepalive_timers(port):
        out = []
        with open("/proc/net/tcp") as f:
            for ln in f.readlines()[1:]:
                cols = ln.split()
                if cols[2].endswith(":%04X" % port) and cols[3] == "01":
                    out.append(cols[5].split(":")[0])
        return out
    timers = keepalive_timers(H[1])
    check("tcpKeepalive: the proxy's pooled connections to the upstream have keep-alive timers",
          "02" in timers, timers)

    # ---- failoverPriority (before the locality checks stop h1 and h2) ----
    got = sorted(set(get("fpkey.test")[1] for _ in range(20)))
    check("failoverPriority [app]: only the endpoints whose app is the proxy's (h1, h2) are used", got == ["h1", "h2"],
          got)
    got = sorted(set(get("fpval.test")[1] for _ in range(20)))
    check("failoverPriority [track=canary]: only the canary endpoints (h2, h3) are used", got == ["h2", "h3"], got)
    got = sorted(set(get("fpmix.test")[1] for _ in range(20)))
    check("failoverPriority [app, track=canary]: the one endpoint matching both (h2)", got == ["h2"], got)
    cls = admin("/clusters")
    check("failoverPriority: /clusters shows priorities 1, 0, 2 for fpmix",
          all("%s::127.0.0.1:%d::priority::%d" % (cl("fpmix.test"), H[i], p) in cls for i, p in ((0, 1), (1, 0), (2, 2))),
          [ln for ln in cls.splitlines() if "fpmix" in ln and "priority" in ln])

    # ---- locality ----
    dist = [get("dist.test")[1] for _ in range(200)]
    check("distribute 75/25: us-east/b gets nothing", dist.count("h2") == 0, dist.count("h2"))
    check("distribute 75/25: roughly a quarter to us-west", 25 <= dist.count("h3") <= 80,
          (dist.count("h1"), dist.count("h3")))
    names = [get("loc.test")[1] for _ in range(40)]
    check("locality: the proxy's zone takes all the traffic", names == ["h1"] * 40, names)
    APPS[2].terminate()  # h1: us-east/a
    APPS[2].wait()
    names = [get("loc.test")[1] for _ in range(30)]
    check("locality: zone gone, the region's other zone takes over", names[-20:] == ["h2"] * 20, names)
    APPS[3].terminate()  # h2: us-east/b
    APPS[3].wait()
    names = [get("loc.test")[1] for _ in range(30)]
    check("locality: region gone, failover to us-west", names[-20:] == ["h3"] * 20, names)
    cls = admin("/clusters")
    check("locality: /clusters shows priorities and the ejected endpoints",
          "%s::127.0.0.1:%d::priority::2" % (cl("loc.test"), H[2]) in cls
          and flags(cl("loc.test"), "127.0.0.1:%d" % H[0]) == "/failed_outlier_check", cls[-3000:])
finally:
    stop_proxy(proxy)
    for p in APPS:
        if p.poll() is None:
            p.terminate()
            p.wait()
    cleanup(TMP, [("proxy log", os.path.join(TMP, "proxy.log"), 60), ("access log", ACCESS, 20)])
sys.exit(summary())
