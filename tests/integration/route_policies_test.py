#!/usr/bin/env python3
"""route_policies_test.py - VirtualService retries, perTryTimeout, CORS, gRPC fault aborts and mirroring.

Upstreams are small Python servers whose behaviour depends on the path and
on x-envoy-attempt-count (so a retry is visible to them): always 503, 503 on
the first attempt only, 409, 500, slow on the first attempt only. A keel
gateway routes to them with retry policies. Checked: retryOn 5xx recovers
a failing first attempt (the upstream sees attempt 2), a bad endpoint is
avoided by the retry, gateway-error does not retry a 500, numeric codes
(409) and retriable-4xx, perTryTimeout cuts a slow attempt and the retry
answers, URX and the retry counter when attempts run out, retries off
(attempts: 0), CORS preflights (allowed origin answered by keel, other
origins forwarded), CORS fields on actual responses, a gRPC fault abort
(grpc-status in the head), and mirroring (the copy reaches the mirror with a
"-shadow" authority and its body, a failing mirror does not hurt, 0%
mirrors nothing). Nothing asserts timings.

Usage: tests/integration/route_policies_test.py --keel build/debug/keel
"""
import http.server
import os
import re
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (check, cleanup, free_port, http_get, keel_arg, request, serve, start_proxy,  # noqa: E402
                     stop_proxy, summary, wait_ready, write_atomic)


class Upstream(http.server.ThreadingHTTPServer):
    request_queue_size = 64

    def handle_error(self, request, client_address):
        pass  # attempts cut by perTryTimeout reset their connection: expected


def make_handler(name, seen):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def answer(self, code, body=b"ok\n"):
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Upstream", name)
            self.send_header("X-Attempt", self.headers.get("x-envoy-attempt-count", ""))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            attempt = int(self.headers.get("x-envoy-attempt-count", "0") or 0)
            path = self.path.split("?")[0]
            with lock:
                seen.append((name, path, attempt, self.headers.get("host")))
            if name == "bad" or path.startswith("/always503"):
                self.answer(503, b"unavailable\n")
            elif path.startswith("/first503"):
                self.answer(503 if attempt == 1 else 200)
            elif path.startswith("/first409"):
                self.answer(409 if attempt == 1 else 200)
            elif path.startswith("/always500"):
                self.answer(500)
            elif path.startswith("/slowfirst"):
                if attempt == 1:
                    time.sleep(2)
                self.answer(200)
            else:
                self.answer(200)

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            with lock:
                seen.append((name, "POST " + self.path.split("?")[0], self.headers.get("host"), body))
            self.answer(200)

        def do_OPTIONS(self):
            with lock:
                seen.append((name, "OPTIONS " + self.path, 0))
            self.answer(204, b"")

    return H


lock = threading.Lock()

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
  - name: avoid-bad
    match: [{{uri: {{prefix: /pair}}}}]
    retries: {{attempts: 2, retryOn: 5xx}}
    route: [{{destination: {{host: pair.test}}}}]
  - name: same-host-again
    match: [{{uri: {{prefix: /samepair}}}}]
    retries: {{attempts: 1, retryOn: 5xx, retryIgnorePreviousHosts: false}}
    rewrite: {{uri: /pair}}
    route: [{{destination: {{host: pair-random.test}}}}]
  - name: gateway-error
    match: [{{uri: {{prefix: /always500}}}}]
    retries: {{attempts: 3, retryOn: gateway-error}}
    route: [{{destination: {{host: good.test}}}}]
  - name: codes
    match: [{{uri: {{prefix: /first409}}}}]
    retries: {{attempts: 2, retryOn: "409"}}
    route: [{{destination: {{host: good.test}}}}]
  - name: per-try
    match: [{{uri: {{prefix: /slowfirst}}}}]
    retries: {{attempts: 2, perTryTimeout: 0.3s, retryOn: 5xx}}
    route: [{{destination: {{host: good.test}}}}]
  - name: no-retries
    match: [{{uri: {{prefix: /noretry}}}}]
    retries: {{attempts: 0}}
    rewrite: {{uri: /first503}}
    route: [{{destination: {{host: good.test}}}}]
  - name: grpc-abort
    match: [{{uri: {{prefix: /grpc.Abort/}}}}]
    fault: {{abort: {{grpcStatus: UNAVAILABLE, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: good.test}}}}]
  - name: cors
    match: [{{uri: {{prefix: /cors}}}}]
    corsPolicy:
      allowOrigins: [{{exact: "https://app.example.com"}}, {{prefix: "https://dev."}}]
      allowMethods: [GET, POST]
      allowHeaders: [x-token]
      exposeHeaders: [x-upstream]
      maxAge: 1h
      allowCredentials: true
    route: [{{destination: {{host: good.test}}}}]
  - name: mirrored
    match: [{{uri: {{prefix: /mirrored}}}}]
    mirror: {{host: shadow.test}}
    mirrorPercentage: {{value: 100}}
    route: [{{destination: {{host: good.test}}}}]
  - name: mirror-to-dead
    match: [{{uri: {{prefix: /mirrordead}}}}]
    mirrors: [{{destination: {{host: dead.test}}}}]
    route: [{{destination: {{host: good.test}}}}]
  - name: mirror-hang
    match: [{{uri: {{prefix: /mirrorhang}}}}]
    mirror: {{host: hang.test}}
    route: [{{destination: {{host: good.test}}}}]
  - name: mirror-none
    match: [{{uri: {{prefix: /mirrornone}}}}]
    mirror: {{host: shadow.test}}
    mirrorPercentage: {{value: 0}}
    route: [{{destination: {{host: good.test}}}}]
  - name: default
    retries: {{attempts: 3, retryOn: 5xx}}
    route: [{{destination: {{host: good.test}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: good, namespace: istio-system}}
spec:
  hosts: [good.test]
  location: MESH_INTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {good}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: pair, namespace: istio-system}}
spec:
  hosts: [pair.test]
  location: MESH_INTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {good}}}}}
  - {{address: 127.0.0.1, ports: {{http: {bad}}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: shadow, namespace: istio-system}}
spec:
  hosts: [shadow.test]
  location: MESH_INTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {shadow}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: hang, namespace: istio-system}}
spec:
  hosts: [hang.test]
  location: MESH_INTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {hang}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: dead, namespace: istio-system}}
spec:
  hosts: [dead.test]
  location: MESH_INTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {dead}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: pair, namespace: istio-system}}
spec:
  host: pair.test
  trafficPolicy: {{loadBalancer: {{simple: ROUND_ROBIN}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: pair-random, namespace: istio-system}}
spec:
  hosts: [pair-random.test]
  location: MESH_INTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {good}}}}}
  - {{address: 127.0.0.1, ports: {{http: {bad}}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: pair-random, namespace: istio-system}}
spec:
  host: pair-random.test
  trafficPolicy: {{loadBalancer: {{simple: RANDOM}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |
    accessLogFile: {log}
"""


def main():
    keel = keel_arg()
    tmp = tempfile.mkdtemp(prefix="keel-retry-test-")
    seen = []
    good, gport = serve(Upstream, make_handler("good", seen))
    bad, bport = serve(Upstream, make_handler("bad", seen))
    shadow, sport = serve(Upstream, make_handler("shadow", seen))
    gw, admin, dead = free_port(), free_port(), free_port()
    hang = socket.socket()  # accepts (the kernel does) and never answers: mirror copies stay in flight
    hang.bind(("127.0.0.1", 0))
    hang.listen(64)
    cfgdir = os.path.join(tmp, "config")
    os.makedirs(cfgdir)
    logpath = os.path.join(tmp, "access.log")
    write_atomic(os.path.join(cfgdir, "mesh.yaml"), CONFIG.format(gw=gw, good=gport, bad=bport, shadow=sport, dead=dead, hang=hang.getsockname()[1],
                                                                   log=logpath))
    proxy_log = open(os.path.join(tmp, "proxy.log"), "w")
    proc = start_proxy(keel, "router", cfgdir, admin, proxy_log, "--concurrency", "2")
    try:
        check("keel proxy wait returns once ready", wait_ready(keel, admin, timeout=10) == 0)

        # --- retries
        r, body = request(gw, "GET", "/first503")
        check("retryOn 5xx: a 503 first attempt is retried and the client gets 200",
              r.status == 200 and r.getheader("x-attempt") == "2", (r.status, r.getheaders()))
        codes = [request(gw, "GET", "/pair/%d" % i)[0].status for i in range(40)]
        check("retries avoid the failing endpoint: 40 of 40 answered 200", codes.count(200) == 40, codes)
        check("...and the failing endpoint was tried (it is in the rotation)",
              any(e[0] == "bad" for e in seen), len(seen))
        # retryIgnorePreviousHosts: false drops Envoy's previous_hosts predicate: a retry may land on the endpoint
        # that just failed. With two endpoints picked at random (RANDOM), one failing, about a quarter of the
        # requests fail both attempts (P(no failure in 60) = 0.75^60, about 3e-8).
        del seen[:]
        codes = [request(gw, "GET", "/samepair/%d" % i)[0].status for i in range(60)]
        check("retryIgnorePreviousHosts: false lets a retry go back to the failing endpoint (some 503s)",
              codes.count(503) > 0 and codes.count(200) > 0, codes)
        del seen[:]
        r, _ = request(gw, "GET", "/always500")
        check("gateway-error does not retry a 500", r.status == 500 and
              sum(1 for e in seen if e[1] == "/always500") == 1, (r.status, seen))
        r, _ = request(gw, "GET", "/first409")
        check("a numeric retryOn code (409) is retried", r.status == 200 and r.getheader("x-attempt") == "2",
              (r.status, r.getheaders()))
        del seen[:]
        r, _ = request(gw, "GET", "/slowfirst")
        check("perTryTimeout cuts the slow first attempt; the retry answers 200",
              r.status == 200 and r.getheader("x-attempt") == "2", (r.status, r.getheaders()))
        r, _ = request(gw, "GET", "/noretry")
        check("attempts: 0 turns retries off (the 503 reaches the client)", r.status == 503, r.status)
        del seen[:]
        r, _ = request(gw, "GET", "/always503")
        tries = sum(1 for e in seen if e[1] == "/always503")
        check("attempts: 3 -> 4 tries in all, then the 503 goes to the client", r.status == 503 and tries == 4,
              (r.status, tries))
        status, text = http_get(admin, "/stats/prometheus")
        m = re.search(r'envoy_cluster_upstream_rq_retry\{cluster_name="outbound\|80\|\|good\.test"\} (\d+)',
                      text.decode())
        check("retries counted per cluster", m is not None and int(m.group(1)) >= 6, m and m.group(0))

        # --- CORS
        r, body = request(gw, "OPTIONS", "/cors/x", headers={"Origin": "https://app.example.com",
                                                              "Access-Control-Request-Method": "POST"})
        check("preflight from an allowed origin answered by keel", r.status == 200 and
              r.getheader("access-control-allow-origin") == "https://app.example.com" and
              r.getheader("access-control-allow-methods") == "GET,POST" and
              r.getheader("access-control-allow-headers") == "x-token" and
              r.getheader("access-control-max-age") == "3600" and
              r.getheader("access-control-allow-credentials") == "true" and r.getheader("x-upstream") is None,
              (r.status, r.getheaders()))
        r, body = request(gw, "OPTIONS", "/cors/x", headers={"Origin": "https://dev.example.com",
                                                              "Access-Control-Request-Method": "GET"})
        check("prefix origin match", r.getheader("access-control-allow-origin") == "https://dev.example.com",
              r.getheaders())
        r, body = request(gw, "OPTIONS", "/cors/x", headers={"Origin": "https://evil.example",
                                                              "Access-Control-Request-Method": "GET"})
        check("preflight from another origin goes to the upstream (unmatchedPreflights: FORWARD)",
              r.status == 204 and r.getheader("x-upstream") == "good" and
              r.getheader("access-control-allow-origin") is None, (r.status, r.getheaders()))
        r, body = request(gw, "GET", "/cors/y", headers={"Origin": "https://app.example.com"})
        check("an allowed origin's response carries the CORS fields",
              r.status == 200 and r.getheader("access-control-allow-origin") == "https://app.example.com" and
              r.getheader("access-control-expose-headers") == "x-upstream", r.getheaders())
        r, body = request(gw, "GET", "/cors/y", headers={"Origin": "https://evil.example"})
        check("another origin's response has none", r.getheader("access-control-allow-origin") is None,
              r.getheaders())

        # --- gRPC fault abort
        r, body = request(gw, "POST", "/grpc.Abort/Call", body=b"", headers={"content-type": "application/grpc"})
        check("gRPC fault abort: 200 with grpc-status 14 in the head", r.status == 200 and
              r.getheader("grpc-status") == "14" and r.getheader("content-type") == "application/grpc",
              (r.status, r.getheaders()))

        # --- mirroring
        del seen[:]
        r, _ = request(gw, "GET", "/mirrored/a", headers={"Host": "shop.example.com:8080"})
        r2, _ = request(gw, "POST", "/mirrored/b", body=b"payload-123", headers={"Host": "shop.example.com"})

        def shadow_seen():
            with lock:
                return [e for e in seen if e[0] == "shadow"]
        deadline = time.time() + 10
        while len(shadow_seen()) < 2 and time.time() < deadline:
            time.sleep(0.05)
        sh = shadow_seen()
        check("the real requests are answered by the primary", r.status == 200 and r2.status == 200 and
              r.getheader("x-upstream") == "good", (r.status, r2.status))
        check("a GET is mirrored with the -shadow authority",
              any(e[1] == "/mirrored/a" and e[3] == "shop.example.com-shadow:8080" for e in sh), sh)
        check("a POST is mirrored with its body",
              any(e[1] == "POST /mirrored/b" and e[2] == "shop.example.com-shadow" and e[3] == b"payload-123"
                  for e in sh), sh)
        codes = [request(gw, "GET", "/mirrordead/%d" % i)[0].status for i in range(10)]
        check("a mirror that cannot be reached does not hurt the real requests", codes == [200] * 10, codes)
        del seen[:]
        for i in range(20):
            request(gw, "GET", "/mirrornone/%d" % i)
        time.sleep(0.2)  # give a (wrong) copy the time to arrive; the check is that none does
        check("mirrorPercentage 0 sends no copy", not shadow_seen(), shadow_seen()[:3])
        codes = [request(gw, "GET", "/mirrorhang/%d" % i)[0].status for i in range(3)]
        check("a mirror that never answers does not hold the real requests", codes == [200] * 3, codes)
        # (the copies are still in flight when the proxy stops below: the sanitizer check of its log says
        # whether the shutdown ended them cleanly)

        with open(logpath) as f:
            log = f.read()
        check("mirror copies are not in the access log", "shadow" not in log, [ln for ln in log.splitlines()
                                                                             if "shadow" in ln][:2])
        check("access log: URX when the retries ran out",
              re.search(r'"GET /always503 HTTP/1.1" 503 URX', log) is not None,
              [ln for ln in log.splitlines() if "always503" in ln])
        check("access log: FI on the gRPC abort", re.search(r'"POST /grpc.Abort/Call HTTP/1.1" 200 FI', log)
              is not None, [ln for ln in log.splitlines() if "Abort" in ln])
    finally:
        stop_proxy(proc)
        proxy_log.close()
        good.shutdown()
        bad.shutdown()
        shadow.shutdown()
        hang.close()
        cleanup(tmp, [("proxy log", os.path.join(tmp, "proxy.log"), 40)])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
