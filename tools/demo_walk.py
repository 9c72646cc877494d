#!/usr/bin/env python3
"""demo_walk.py - the `make demo` walk-through of examples/bookinfo under `keel run` (Python standard library).

Reads keel run's ports.json (`--state DIR`, the folder given to `keel run --state-dir`), waits until every proxy
and app is ready, then tries each feature of the example with real requests and says in plain words what happened:

    ok   canary: 1000 requests -> v1 70.3%, v2 29.7% (configured 70/30)

Each line starts with `ok`, `FAIL` or `--` (configured, but not enforced by this build yet: reported, never a
failure). The last line is `summary: N ok, M failed, K not enforced by this build yet`. Exit status 1 when a
feature this build implements did not behave as configured. tests/integration/demo_test.py checks the printed
numbers against the YAML again.

Requests to services go through a sidecar's outbound listener (what the app's http_proxy points at), the way the
apps themselves call each other; requests from outside go through the gateway.
"""
import argparse
import http.client
import json
import math
import os
import re
import socket
import sys
import threading
import time
import urllib.request

NS = "bookinfo"


def host(svc):
    return "%s.%s.svc.cluster.local:9080" % (svc, NS)


class Mesh:
    def __init__(self, state):
        with open(os.path.join(state, "ports.json")) as f:
            self.info = json.load(f)
        self.procs = self.info["processes"]

    def proc(self, name, role):
        for p in self.procs:
            if p["name"] == name and p["role"] == role:
                return p
        raise KeyError("%s %s not in ports.json" % (name, role))

    def gateway_port(self):
        # the first gateway port (not an admin port) keel run printed
        for u in self.info["ports"]:
            if u["who"].startswith("gateway ") and ": Gateway " in u["who"]:
                return u["port"]
        raise KeyError("no gateway port")


def ready(mesh, deadline):
    """Waits until every proxy answers /ready and every app accepts connections; False at the deadline."""
    while time.time() < deadline:
        pending = []
        for p in mesh.procs:
            try:
                if "admin" in p:
                    with urllib.request.urlopen("http://127.0.0.1:%d/ready" % p["admin"], timeout=1) as r:
                        if r.status != 200:
                            pending.append(p["name"])
                elif p["role"] == "app" and p["app_ports"]:
                    port = list(p["app_ports"].values())[0]["port"]
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                pending.append("%s %s" % (p["name"], p["role"]))
        if not pending:
            return True
        ready.pending = pending
        time.sleep(0.2)
    return False


class Client:
    """Keep-alive requests through a sidecar's outbound listener (absolute-form, like an http_proxy client)."""

    def __init__(self, proxy_port, timeout=15):
        self.port = proxy_port
        self.timeout = timeout
        self.conn = None

    def get(self, url_host, path, headers=None):
        hdrs = {"Host": url_host}
        hdrs.update(headers or {})
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.conn.request("GET", "http://%s%s" % (url_host, path), headers=hdrs)
                r = self.conn.getresponse()
                body = r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status, {k.lower(): v for k, v in r.getheaders()}, body
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        return None


def parallel(n, threads, fn):
    """Runs fn(i, client_state) for i in range(n) on `threads` threads; returns the results in order."""
    out = [None] * n
    nxt = [0]
    lock = threading.Lock()

    def work():
        state = {}
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= n:
                return
            try:
                out[i] = fn(i, state)
            except Exception as e:  # reported by the caller as a failed request
                out[i] = e

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def tolerance(p, n):
    """Four standard deviations of a binomial proportion, at least 3 points: a correct proxy fails it almost never."""
    return max(0.03, 4 * math.sqrt(p * (1 - p) / max(n, 1)))


def log_flags(path, prefix, want, deadline):
    """Response flags of the access-log lines whose x-request-id starts with prefix (waits for `want` lines)."""
    pat = re.compile(r'^\[[^\]]*\] "[^"]*" (\d+) (\S+) .*?"(%s[^"]*)"' % re.escape(prefix))
    flags = {}
    while True:
        flags = {}
        try:
            with open(path, errors="replace") as f:
                for line in f:
                    m = pat.search(line)
                    if m:
                        flags[m.group(3)] = (int(m.group(1)), m.group(2).split(","))
        except OSError:
            pass
        if len(flags) >= want or time.time() > deadline:
            return flags
        time.sleep(0.1)


class Walk:
    def __init__(self, mesh):
        self.mesh = mesh
        self.ok = self.failed = self.not_enforced = 0

    def report(self, status, what, words):
        mark = {"ok": "ok  ", "fail": "FAIL", "todo": "--  "}[status]
        if status == "ok":
            self.ok += 1
        elif status == "fail":
            self.failed += 1
        else:
            self.not_enforced += 1
        print("%s %s: %s" % (mark, what, words))
        sys.stdout.flush()

    def sidecar(self, name):
        return self.mesh.proc(name, "sidecar")

    # ---- features ---------------------------------------------------------------------------------------------

    def ingress(self):
        port = self.mesh.gateway_port()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
            c.request("GET", "/productpage")
            r = c.getresponse()
            body = json.loads(r.read())
            c.close()
        except (OSError, ValueError, http.client.HTTPException) as e:
            self.report("fail", "ingress", "GET http://127.0.0.1:%d/productpage failed: %r" % (port, e))
            return
        hops = []
        for call in body.get("calls", []):
            b = call.get("body")
            if isinstance(b, dict):
                sub = [s.get("body", {}).get("name", "?") + " " + s.get("body", {}).get("version", "")
                       for s in b.get("calls", []) if isinstance(s.get("body"), dict)]
                hops.append("%s %s%s" % (b.get("name"), b.get("version"),
                                         " (which called %s)" % ", ".join(sub) if sub else ""))
            else:
                hops.append("%s -> %s" % (call.get("url"), call.get("status", call.get("error"))))
        good = r.status == 200 and body.get("name") == "productpage" and len(body.get("calls", [])) == 2
        self.report("ok" if good else "fail", "ingress",
                    "GET http://127.0.0.1:%d/productpage -> %d from %s %s; it called %s" %
                    (port, r.status, body.get("name"), body.get("version"), " and ".join(hops) or "nothing"))

    def canary(self, n=1000):
        port = self.sidecar("productpage-v1")["outbound"]

        def one(i, st):
            cl = st.setdefault("c", Client(port))
            s, h, _ = cl.get(host("reviews"), "/headers", {"x-request-id": "demo-canary-%d" % i})
            return s, h.get("x-app-version")

        res = parallel(n, 8, one)
        errors = [r for r in res if isinstance(r, Exception) or r[1] is None]
        got = [r for r in res if not isinstance(r, Exception) and r[1]]
        v = {}
        for s, ver in got:
            v[ver] = v.get(ver, 0) + 1
        p1 = v.get("v1", 0) / max(len(got), 1)
        p2 = v.get("v2", 0) / max(len(got), 1)
        tol = tolerance(0.7, len(got))
        good = not errors and abs(p1 - 0.70) <= tol and abs(p2 - 0.30) <= tol and len(v) == 2
        self.report("ok" if good else "fail", "canary",
                    "%d requests -> v1 %.1f%%, v2 %.1f%% (configured 70/30, tolerance %.1f points)%s" %
                    (n, 100 * p1, 100 * p2, 100 * tol, "; %d without an answer" % len(errors) if errors else ""))
        self.canary_results = got

    def header_routing(self, n=20):
        cl = Client(self.sidecar("productpage-v1")["outbound"])
        vers = []
        for i in range(n):
            s, h, _ = cl.get(host("reviews"), "/headers", {"end-user": "jason", "x-request-id": "demo-jason-%d" % i})
            vers.append(h.get("x-app-version"))
        v3 = vers.count("v3")
        # and the same through the gateway: productpage passes end-user on to reviews
        via = "?"
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.mesh.gateway_port(), timeout=15)
            c.request("GET", "/productpage", headers={"end-user": "jason"})
            body = json.loads(c.getresponse().read())
            c.close()
            for call in body.get("calls", []):
                if "reviews" in call.get("url", "") and isinstance(call.get("body"), dict):
                    via = call["body"].get("version", "?")
        except (OSError, ValueError, http.client.HTTPException):
            pass
        good = v3 == n and via == "v3"
        self.report("ok" if good else "fail", "header routing",
                    "%d requests with end-user: jason -> v3 %d/%d; through the gateway productpage got reviews %s" %
                    (n, v3, n, via))

    def faults(self, n=400):
        side = self.sidecar("productpage-v1")
        tag = "demo-fault-%d-" % int(time.time())

        def one(i, st):
            cl = st.setdefault("c", Client(side["outbound"]))
            s, h, b = cl.get(host("ratings"), "/headers", {"x-request-id": "%s%d" % (tag, i)})
            return s, "x-app-name" in h

        res = parallel(n, 16, one)
        aborted = sum(1 for r in res if not isinstance(r, Exception) and r[0] == 503 and not r[1])
        flags = log_flags(side["log"], tag, n, time.time() + 15)
        fi = sum(1 for s, f in flags.values() if "FI" in f)
        di = sum(1 for s, f in flags.values() if "DI" in f and "FI" not in f)
        rest = max(len(flags) - fi, 1)
        pa, pd = aborted / n, di / rest
        ta, td = tolerance(0.10, n), tolerance(0.20, rest)
        self.report("ok" if abs(pa - 0.10) <= ta and fi == aborted else "fail", "fault abort",
                    "%d requests to ratings -> %d answered 503 by the fault (%.1f%%; configured 10%%, tolerance "
                    "%.1f points; access log FI: %d)" % (n, aborted, 100 * pa, 100 * ta, fi))
        self.report("ok" if len(flags) == n and abs(pd - 0.20) <= td else "fail", "fault delay",
                    "%d of the %d requests not aborted were held 0.5s (%.1f%%; configured 20%%, tolerance %.1f "
                    "points; access log DI)" % (di, rest, 100 * pd, 100 * td))

    def timeout(self):
        cl = Client(self.sidecar("productpage-v1")["outbound"])
        s_slow, h_slow, _ = cl.get(host("ratings"), "/delay/2", {"x-request-id": "demo-timeout-slow"})
        s_fast, _, _ = cl.get(host("ratings"), "/delay/0.1", {"x-request-id": "demo-timeout-fast"})
        good = s_slow == 504 and s_fast == 200
        self.report("ok" if good else "fail", "timeout",
                    "/delay/2 on ratings -> %d (the route's 0.5s timeout answered: upstream request timeout); "
                    "/delay/0.1 -> %d" % (s_slow, s_fast))

    def retries(self, n=100):
        cl = Client(self.sidecar("productpage-v1")["outbound"])
        statuses, attempts = [], []
        for i in range(n):
            s, h, b = cl.get(host("details"), "/headers", {"x-request-id": "demo-retry-%d" % i})
            statuses.append(s)
            try:
                attempts.append(int(json.loads(b)["headers"].get("x-envoy-attempt-count", "1")))
            except (ValueError, KeyError, TypeError):
                attempts.append(0)
        retried = sum(1 for a in attempts if a > 1)
        good = statuses.count(200) == n and retried > 0
        self.report("ok" if good else "fail", "retries (connect-failure)",
                    "%d requests to details -> %d answered 200; %d needed another attempt because details-v2 "
                    "refuses connections (x-envoy-attempt-count > 1)" % (n, statuses.count(200), retried))
        late = sum(1 for a in attempts[n // 2:] if a > 1)
        if late == 0:
            self.report("ok", "outlier detection", "details-v2 was ejected: the last %d requests needed no retry"
                        % (n - n // 2))
        else:
            self.report("todo", "outlier detection",
                        "not enforced by this build yet: details-v2 keeps failing and stays in the pool (%d of the "
                        "last %d requests still needed a retry; configured: eject after 3 errors)" % (late, n - n // 2))

    def retries_5xx(self):
        got = getattr(self, "canary_results", [])
        v2 = [s for s, ver in got if ver == "v2"]
        failed = v2.count(503)
        if v2 and failed == 0:
            self.report("ok", "retries (5xx)", "%d requests reached reviews v2 (which fails 10%% of them): "
                        "no 503 came back, retries hid them" % len(v2))
        else:
            self.report("todo", "retries (5xx)",
                        "not enforced by this build yet: %d of %d requests to reviews v2 came back 503 (v2 fails "
                        "10%% on purpose; retryOn 5xx would have retried them)" % (failed, len(v2)))

    def circuit_breaker(self, n=40):
        port = self.sidecar("productpage-v1")["outbound"]

        def one(i, st):
            cl = Client(port)
            s, h, _ = cl.get(host("reviews"), "/delay/1", {"x-request-id": "demo-cb-%d" % i})
            return s, "x-app-name" in h

        res = parallel(n, n, one)
        refused = sum(1 for r in res if not isinstance(r, Exception) and r[0] == 503 and not r[1])
        if refused:
            self.report("ok", "circuit breaker", "%d concurrent requests to reviews -> %d refused at once by the "
                        "sidecar (maxConnections 10, http1MaxPendingRequests 5)" % (n, refused))
        else:
            self.report("todo", "circuit breaker",
                        "not enforced by this build yet: %d concurrent requests to reviews, none refused "
                        "(configured maxConnections 10, http1MaxPendingRequests 5)" % n)

    def egress(self):
        cl = Client(self.sidecar("details-v1")["outbound"])
        s1, h1, _ = cl.get("books.example.com", "/", {"x-request-id": "demo-egress-1"})
        s2, _, _ = cl.get("example.org", "/", {"x-request-id": "demo-egress-2"})
        good = s1 == 200 and h1.get("x-app-name") == "books-api" and s2 == 502
        self.report("ok" if good else "fail", "egress",
                    "details -> http://books.example.com/ -> %d from %s (registered by a ServiceEntry); "
                    "-> http://example.org/ -> %d (not registered: REGISTRY_ONLY blocks it)" %
                    (s1, h1.get("x-app-name", "?"), s2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--state", required=True, help="keel run's --state-dir")
    ap.add_argument("--timeout", type=float, default=60, help="seconds to wait for the mesh to be ready")
    args = ap.parse_args()
    deadline = time.time() + args.timeout
    while not os.path.exists(os.path.join(args.state, "ports.json")):
        if time.time() > deadline:
            print("FAIL mesh: keel run wrote no ports.json in %s" % args.state)
            return 1
        time.sleep(0.1)
    mesh = Mesh(args.state)
    if not ready(mesh, deadline):
        print("FAIL mesh: not ready within %ds: %s" % (args.timeout, ", ".join(getattr(ready, "pending", []))))
        return 1
    print("mesh ready: %d processes (see `keel run` above for their ports)" % len(mesh.procs))
    w = Walk(mesh)
    for step in (w.ingress, w.canary, w.header_routing, w.faults, w.timeout, w.retries, w.retries_5xx,
                 w.circuit_breaker, w.egress):
        try:
            step()
        except Exception as e:  # one broken step must not hide the others
            w.report("fail", step.__name__.replace("_", " "), "error: %r" % e)
    print("summary: %d ok, %d failed, %d not enforced by this build yet" % (w.ok, w.failed, w.not_enforced))
    return 1 if w.failed else 0


if __name__ == "__main__":
    sys.exit(main())
