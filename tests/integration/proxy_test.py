#!/usr/bin/env python3
"""proxy_test.py - `keel proxy router` over real sockets with real clients.

Starts small upstream HTTP servers (Python's standard library), a keel proxy
acting as an ingress gateway, and drives it with http.client and curl:
routing, weighted canaries, subsets, redirects, direct responses, 404 NR,
503 UF/UH, timeouts (504 UT), keep-alive, large and chunked bodies in both
directions, request smuggling attempts, admin endpoints, access logs, config
reload without dropping requests, refusal of an invalid config, and a clean
SIGTERM drain. Statistical checks use enough requests to be stable; nothing
asserts timings.

Usage: tests/integration/proxy_test.py --keel build/debug/keel
"""
import hashlib
import http.client
import http.server
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
from harness import (check, cleanup, free_port, keel_arg, pattern, request, serve, start_proxy,  # noqa: E402
                     stop_proxy, summary, wait_ready, write_atomic)


def make_handler(name):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def read_body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    line = self.rfile.readline().strip()
                    size = int(line.split(b";")[0], 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def send(self, code, body, ctype="application/octet-stream", extra=None):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Upstream", name)
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?")[0]
            if path.startswith("/big/"):
                self.send(200, pattern(int(path.split("/")[2])))
            elif path.startswith("/chunked/"):
                n = int(path.split("/")[2])
                data = pattern(n)
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("X-Upstream", name)
                self.end_headers()
                for i in range(0, n, 7000):
                    part = data[i:i + 7000]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.write(b"0\r\n\r\n")
            elif path.startswith("/status/"):
                self.send(int(path.split("/")[2]), b"status\n", "text/plain")
            elif path.startswith("/delay/"):
                time.sleep(int(path.split("/")[2]) / 1000.0)
                self.send(200, b"late\n", "text/plain")
            else:
                info = {"name": name, "method": self.command, "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()}}
                self.send(200, json.dumps(info).encode(), "application/json")

        do_HEAD = do_GET

        def do_POST(self):
            body = self.read_body()
            self.send(200, body, extra={"X-Body-Sha": hashlib.sha256(body).hexdigest()})

    return H


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
  - name: canary
    match: [{{uri: {{prefix: /canary}}}}]
    rewrite: {{uri: /echo}}
    route:
    - destination: {{host: app.example.com, subset: v1}}
      weight: 70
    - destination: {{host: app.example.com, subset: v2}}
      weight: 30
  - name: by-header
    match: [{{headers: {{x-user: {{exact: jason}}}}, uri: {{prefix: /who}}}}]
    route:
    - destination: {{host: app.example.com, subset: v2}}
  - name: redirect
    match: [{{uri: {{prefix: /old}}}}]
    redirect: {{uri: /new, redirectCode: 308}}
  - name: direct
    match: [{{uri: {{exact: /version}}}}]
    directResponse: {{status: 200, body: {{string: "{version}\\n"}}}}
  - name: nocontent
    match: [{{uri: {{exact: /nocontent}}}}]
    directResponse: {{status: 204}}
  - name: dead
    match: [{{uri: {{prefix: /dead}}}}]
    route: [{{destination: {{host: dead.example.com}}}}]
  - name: slow
    match: [{{uri: {{prefix: /delay}}}}]
    timeout: 0.3s
    route: [{{destination: {{host: app.example.com, subset: v1}}}}]
  - name: abort
    match: [{{uri: {{prefix: /abort}}}}]
    fault: {{abort: {{httpStatus: 503, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: app.example.com}}}}]
  - name: rest
    match: [{{uri: {{prefix: /}}}}]
    headers:
      response:
        set: {{x-served-by: keel}}
    route: [{{destination: {{host: app.example.com, subset: v1}}}}]
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
  trafficPolicy: {{loadBalancer: {{simple: ROUND_ROBIN}}}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
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


def raw(port, data, read_until_close=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(data)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
            if not read_until_close and b"\r\n\r\n" in out:
                break
    except socket.timeout:
        pass
    s.close()
    return out


def main():
    keel = keel_arg()
    tmp = tempfile.mkdtemp(prefix="keel-proxy-test-")
    up1, p1 = serve(http.server.ThreadingHTTPServer, make_handler("v1"))
    up2, p2 = serve(http.server.ThreadingHTTPServer, make_handler("v2"))
    gw, admin, dead = free_port(), free_port(), free_port()
    cfgdir = os.path.join(tmp, "config")
    os.makedirs(cfgdir)
    logpath = os.path.join(tmp, "access.log")
    cfgfile = os.path.join(cfgdir, "mesh.yaml")

    def write_config(version, extra=""):
        write_atomic(cfgfile, CONFIG.format(gw=gw, v1=p1, v2=p2, dead=dead, log=logpath, version=version) + extra)

    write_config("one")
    proxy_log = open(os.path.join(tmp, "proxy.log"), "w")
    proc = start_proxy(keel, "router", cfgdir, admin, proxy_log, "--concurrency", "2", "--drain", "3")
    try:
        rc = wait_ready(keel, admin, timeout=10)
        check("keel proxy wait returns once ready", rc == 0)

        # --- routing
        r, body = request(gw, "GET", "/hello?x=1", headers={"X-Forwarded-For": "10.1.2.3"})
        info = json.loads(body) if r.status == 200 else {}
        check("route to upstream", r.status == 200 and info.get("name") == "v1", (r.status, body[:200]))
        check("path and query forwarded", info.get("path") == "/hello?x=1", info.get("path"))
        h = info.get("headers", {})
        check("x-request-id generated", re.match(r"^[0-9a-f-]{36}$", h.get("x-request-id", "")) is not None, h)
        check("x-forwarded-for appended with the client address", h.get("x-forwarded-for") == "10.1.2.3, 127.0.0.1",
              h.get("x-forwarded-for"))
        check("x-forwarded-proto set", h.get("x-forwarded-proto") == "http", h)
        check("x-envoy-attempt-count", h.get("x-envoy-attempt-count") == "1", h)
        check("route response header ops", r.getheader("x-served-by") == "keel", r.getheaders())
        check("x-envoy-upstream-service-time", r.getheader("x-envoy-upstream-service-time") is not None)

        r, body = request(gw, "GET", "/who", headers={"x-user": "jason"})
        check("header match routes to subset v2", r.status == 200 and json.loads(body)["name"] == "v2", body[:100])
        r, body = request(gw, "GET", "/who")
        check("without the header: next rule (v1)", json.loads(body)["name"] == "v1")

        counts = {"v1": 0, "v2": 0}
        c = http.client.HTTPConnection("127.0.0.1", gw, timeout=10)
        for _ in range(1000):
            r, body = request(gw, "GET", "/canary", conn=c)
            counts[json.loads(body)["name"]] += 1
        c.close()
        frac = counts["v1"] / 1000.0
        print("     canary: 1000 requests -> v1 %.1f%%, v2 %.1f%%" % (100 * frac, 100 - 100 * frac))
        check("70/30 canary split (v1 within 63-77%)", 0.63 <= frac <= 0.77, counts)
        r, body = request(gw, "GET", "/canary")
        check("rewrite.uri applied", json.loads(body)["path"] == "/echo", body[:120])

        r, body = request(gw, "GET", "/old/x?q=1")
        check("redirect 308 with Location", r.status == 308 and r.getheader("location") == "http://127.0.0.1:%d/new" % gw,
              (r.status, r.getheaders()))
        r, body = request(gw, "GET", "/version")
        check("direct response", r.status == 200 and body == b"one\n", (r.status, body))
        # RFC 9110 §8.6: a 204 carries neither a body nor Content-Length; the next response on the
        # same connection must still parse (a stray body would desynchronise it).
        sock = socket.create_connection(("127.0.0.1", gw), timeout=10)
        sock.sendall(b"GET /nocontent HTTP/1.1\r\nHost: x\r\n\r\nGET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while got.count(b"HTTP/1.1 ") < 2 or not got.endswith(b"one\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        sock.close()
        first = got.split(b"\r\n\r\n", 1)[0].lower()
        check("204 direct response has no content-length or body",
              got.startswith(b"HTTP/1.1 204") and b"content-length" not in first
              and got.split(b"\r\n\r\n", 1)[1].startswith(b"HTTP/1.1 200"), got[:300])
        r, body = request(gw, "GET", "/abort")
        check("fault abort 503", r.status == 503, r.status)
        r, body = request(gw, "GET", "/dead")
        check("dead upstream -> 503", r.status == 503, (r.status, body))
        r, body = request(gw, "GET", "/delay/2000")
        check("route timeout -> 504", r.status == 504, (r.status, body))
        r, body = request(gw, "GET", "/delay/10")
        check("within the timeout -> 200", r.status == 200, r.status)

        # --- bodies
        big = 5 * 1024 * 1024
        r, body = request(gw, "GET", "/big/%d" % big)
        check("5 MiB response streamed intact", r.status == 200 and body == pattern(big), (r.status, len(body)))
        r, body = request(gw, "GET", "/chunked/300000")
        check("chunked response intact", r.status == 200 and body == pattern(300000), (r.status, len(body)))
        payload = pattern(3 * 1024 * 1024 + 17)
        r, body = request(gw, "POST", "/upload", body=payload)
        check("3 MiB request body intact (Content-Length)", r.status == 200 and body == payload, (r.status, len(body)))

        def gen():
            for i in range(0, 200000, 9999):
                yield payload[i:i + 9999]
        c = http.client.HTTPConnection("127.0.0.1", gw, timeout=10)
        c.request("POST", "/upload", body=gen(), encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
        r = c.getresponse()
        body = r.read()
        c.close()
        sent = b"".join(gen())
        check("chunked request body intact", r.status == 200 and body == sent, (r.status, len(body), len(sent)))
        r, body = request(gw, "HEAD", "/big/1000")
        check("HEAD has no body", r.status == 200 and body == b"", (r.status, body[:20]))

        # --- keep-alive and pipelining
        c = http.client.HTTPConnection("127.0.0.1", gw, timeout=10)
        ok = all(request(gw, "GET", "/x%d" % i, conn=c)[0].status == 200 for i in range(50))
        c.close()
        check("50 requests on one keep-alive connection", ok)
        out = raw(gw, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        check("pipelined requests answered in order", out.count(b"HTTP/1.1 200") == 2 and out.find(b'"/a"') < out.find(b'"/b"'),
              out[:300])

        # --- hostile input
        out = raw(gw, b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        check("CL+TE request rejected with 400 (no smuggling)", out.startswith(b"HTTP/1.1 400"), out[:80])
        out = raw(gw, b"GET / HTTP/1.1\r\nHost: x\r\n folded: yes\r\n\r\n")
        check("obs-fold rejected with 400", out.startswith(b"HTTP/1.1 400"), out[:80])
        out = raw(gw, b"GET / HTTP/1.1\r\n\r\n")
        check("HTTP/1.1 without Host rejected with 400", out.startswith(b"HTTP/1.1 400"), out[:80])
        out = raw(gw, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64))
        check("garbage bytes get 400, proxy survives", out.startswith(b"HTTP/1.1 400") and proc.poll() is None, out[:40])

        # --- admin
        r, body = request(admin, "GET", "/ready")
        check("admin /ready", r.status == 200, r.status)
        r, body = request(admin, "GET", "/stats/prometheus")
        text = body.decode()
        m = re.search(r"^envoy_http_downstream_rq_total (\d+)$", text, re.M)
        check("prometheus: downstream requests counted", m and int(m.group(1)) >= 1000, text[:300])
        check("prometheus: per-cluster counters",
              'envoy_cluster_upstream_rq_total{cluster_name="outbound|80|v1|app.example.com"}' in text, text[:300])
        check("prometheus: connect failures counted",
              re.search(r'envoy_cluster_upstream_cx_connect_fail\{cluster_name="outbound\|80\|\|dead.example.com"\} [1-9]', text)
              is not None)
        r, body = request(admin, "GET", "/clusters")
        check("admin /clusters lists endpoints", ("outbound|80|v1|app.example.com::127.0.0.1:%d" % p1) in body.decode(),
              body[:300])
        r, body = request(admin, "GET", "/config_dump")
        dump = json.loads(body)
        check("admin /config_dump has the snapshot", dump.get("snapshot") and dump["last_error"] is None, str(dump)[:200])

        # --- access log (Istio default text format)
        time.sleep(0.2)
        log = open(logpath).read()
        check("access log: NR flag for 404", False if not log else True)
        r, _ = request(gw, "GET", "/x", headers={"Host": "nosuch"})
        lines_dead = [l for l in log.splitlines() if '"GET /dead ' in l]
        check("access log: 503 UF for a dead upstream", lines_dead and " 503 UF" in lines_dead[0], lines_dead[:1])
        lines_to = [l for l in log.splitlines() if '"GET /delay/2000 ' in l]
        check("access log: 504 UT for a timeout", lines_to and " 504 UT " in lines_to[0], lines_to[:1])
        lines_fi = [l for l in log.splitlines() if '"GET /abort ' in l]
        check("access log: FI for an injected abort", lines_fi and " 503 FI " in lines_fi[0], lines_fi[:1])
        lines_ok = [l for l in log.splitlines() if '"GET /hello?x=1 ' in l]
        check("access log: cluster and upstream host",
              lines_ok and "outbound|80|v1|app.example.com" in lines_ok[0] and ("127.0.0.1:%d" % p1) in lines_ok[0],
              lines_ok[:1])

        # --- config reload while traffic flows
        stop = threading.Event()
        errors = []
        done = [0]

        def load():
            c = http.client.HTTPConnection("127.0.0.1", gw, timeout=10)
            while not stop.is_set():
                try:
                    r, b = request(gw, "GET", "/load", conn=c)
                    if r.status != 200:
                        errors.append(r.status)
                    done[0] += 1
                except Exception as e:  # noqa: BLE001
                    errors.append(repr(e))
                    c = http.client.HTTPConnection("127.0.0.1", gw, timeout=10)
        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        for i in range(5):
            write_config("v%d" % i)
            time.sleep(0.3)
        deadline = time.time() + 5
        seen = b""
        while time.time() < deadline:
            _, seen = request(gw, "GET", "/version")
            if seen == b"v4\n":
                break
            time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join()
        check("config change applied", seen == b"v4\n", seen)
        check("%d requests during 5 reloads, none failed" % done[0], done[0] > 50 and not errors, errors[:5])

        # --- an invalid config is refused, the last good one keeps serving
        with open(os.path.join(cfgdir, "broken.yaml"), "w") as f:
            f.write("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: bad}\n"
                    "spec:\n  hosts: [x]\n  http:\n  - retries: {retryOn: 5xx}\n    route: [{destination: {host: x}}]\n")
        deadline = time.time() + 5
        err = None
        while time.time() < deadline:
            err = json.loads(request(admin, "GET", "/config_dump")[1]).get("last_error")
            if err:
                break
            time.sleep(0.1)
        check("invalid config refused with its error on /config_dump", err and "retries" in err, err)
        r, body = request(gw, "GET", "/version")
        check("last good config keeps serving", body == b"v4\n", body)
        os.unlink(os.path.join(cfgdir, "broken.yaml"))
        write_config("fixed")
        deadline = time.time() + 5
        while time.time() < deadline and request(gw, "GET", "/version")[1] != b"fixed\n":
            time.sleep(0.1)
        check("fixed config applied", request(gw, "GET", "/version")[1] == b"fixed\n")

        # --- drain on SIGTERM: an in-flight request completes
        result = {}

        def slow():
            try:
                r, b = request(gw, "GET", "/delay/250")
                result["status"] = r.status
            except Exception as e:  # noqa: BLE001
                result["error"] = repr(e)
        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        t.join()
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        check("in-flight request completes during drain", result.get("status") == 200, result)
        check("SIGTERM: clean exit 0", code == 0, code)
    finally:
        stop_proxy(proc)
        proxy_log.close()
        up1.shutdown()
        up2.shutdown()
        cleanup(tmp, [("proxy log", os.path.join(tmp, "proxy.log"), 30)])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
