#!/usr/bin/env python3
"""sample_app_test.py - `keel sample-app` over real sockets with real clients.

Starts several `keel sample-app` processes on free ports and drives them with http.client, curl (HTTP/1.1 and
--http2-prior-knowledge) and h2load: the JSON of `/`, the x-app-* response fields, /headers, /ip, /status/CODE,
/delay/SECONDS answered after a request that came later (HTTP/1.1 connections and h2c streams), HEAD, 404 and 400,
the injected failure fraction of --fail-rate (a wide statistical bound over 400 requests), a three-service call
chain a -> b -> c connected directly and then through a small Python forward proxy set as http_proxy (the
sidecar's place), header propagation (x-request-id, b3, traceparent), h2load with concurrent /delay streams,
flags refused with exit status 2, and SIGTERM with requests and calls in flight (exit status 0). Nothing asserts
timings; order is checked instead.

Usage: tests/integration/sample_app_test.py --keel build/debug/keel
"""
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, cleanup, free_port, keel_arg, request, serve, summary  # noqa: E402

KEEL = keel_arg()
TMP = tempfile.mkdtemp(prefix="keel-sample-app-")
PROCS = []   # (name, Popen, log path)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy",
                                                                      "no_proxy", "service_name", "service_version")}
    env.update(extra)
    return env


def start_app(name, *args, env=None):
    """Starts `keel sample-app --listen 127.0.0.1:PORT --name NAME ARGS...`; returns (port, proc) once /healthz
    answers."""
    port = free_port()
    log = os.path.join(TMP, "%s.log" % name)
    proc = subprocess.Popen([KEEL, "sample-app", "--listen", "127.0.0.1:%d" % port, "--name", name] + list(args),
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env or clean_env())
    PROCS.append((name, proc, log))
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            r, _ = request(port, "GET", "/healthz", timeout=2)
            if r.status == 200:
                return port, proc
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    check("%s starts" % name, False, "not answering /healthz; exit status %s" % proc.poll())
    return port, proc


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def get_json(port, path, headers=None, method="GET"):
    r, body = request(port, method, path, headers=headers)
    try:
        return r, json.loads(body) if body else None
    except ValueError:
        return r, {"unparsable": body[:200].decode("latin-1")}


def bad_flags():
    cases = [
        (["--fail-rate", "2"], "--fail-rate"),
        (["--fail-rate", "abc"], "--fail-rate"),
        (["--fail-code", "99"], "--fail-code"),
        (["--fail-code", "5x"], "--fail-code"),
        (["--concurrency", "abc"], "--concurrency"),
        (["--concurrency", "0"], "--concurrency"),
        (["--call", "ftp://example.com/"], "--call"),
        (["--name", "bad name"], "--name"),
        (["--version", "v1\r\nx: y"], "--version"),
        (["--listen", "nonsense"], "--listen"),
        (["--log-level", "loud"], "--log-level"),
        (["--no-such-flag"], "no-such-flag"),
        (["extra"], "extra"),
    ]
    for args, flag in cases:
        p = subprocess.run([KEEL, "sample-app"] + args, capture_output=True, text=True, timeout=10, env=clean_env())
        check("bad flag %s exits 2 naming it" % " ".join(args).replace("\r\n", "\\r\\n"), p.returncode == 2 and flag in p.stderr,
              "status %d: %s" % (p.returncode, p.stderr))
    p = subprocess.run([KEEL, "sample-app"], capture_output=True, text=True, timeout=10,
                       env=clean_env(SERVICE_NAME="bad name"))
    check("a bad $SERVICE_NAME exits 2 naming it", p.returncode == 2 and "$SERVICE_NAME" in p.stderr, p.stderr)
    p = subprocess.run([KEEL, "sample-app", "--help"], capture_output=True, text=True, timeout=10)
    check("--help exits 0 and lists the endpoints", p.returncode == 0 and "/delay/SECONDS" in p.stdout, p.stdout)
    busy = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", busy))
    holder.listen(1)
    p = subprocess.run([KEEL, "sample-app", "--listen", "127.0.0.1:%d" % busy], capture_output=True, text=True,
                       timeout=10, env=clean_env())
    holder.close()
    check("a port in use exits 1 with the reason", p.returncode == 1 and "cannot listen" in p.stderr, p.stderr)


def endpoints(port):
    r, j = get_json(port, "/?x=1", headers={"X-Custom": "hello", "x-request-id": "rid-1"})
    check("/ answers 200 JSON with name and version",
          r.status == 200 and j.get("name") == "alpha" and j.get("version") == "v7", j)
    check("/ echoes method, path, query and protocol",
          j.get("method") == "GET" and j.get("path") == "/" and j.get("query") == "x=1" and
          j.get("protocol") == "HTTP/1.1", j)
    check("x-app-name and x-app-version on the answer",
          r.getheader("x-app-name") == "alpha" and r.getheader("x-app-version") == "v7", r.getheaders())
    r, j = get_json(port, "/headers", headers={"X-Custom": "hello", "X-Two": "a"})
    hdrs = {k.lower(): v for k, v in (j or {}).get("headers", {}).items()}
    check("/headers echoes a custom header", r.status == 200 and hdrs.get("x-custom") == "hello", j)
    r, j = get_json(port, "/ip")
    check("/ip gives the peer address", r.status == 200 and j.get("origin") == "127.0.0.1", j)
    r, j = get_json(port, "/status/418")
    check("/status/418 answers 418", r.status == 418 and r.getheader("x-app-name") == "alpha", r.status)
    for code in (200, 204, 302, 503, 599):
        r, _ = request(port, "GET", "/status/%d" % code)
        check("/status/%d answers %d" % (code, code), r.status == code, r.status)
    for bad in ("abc", "99", "600", "1000", "", "4x"):
        r, j = get_json(port, "/status/" + bad)
        check("/status/%s answers 400 with the reason" % bad, r.status == 400 and "error" in (j or {}), (r.status, j))
    for bad in ("abc", "61", "-1", "1e3", "0.1234567890", "."):
        r, j = get_json(port, "/delay/" + bad)
        check("/delay/%s answers 400" % bad, r.status == 400, (r.status, j))
    r, j = get_json(port, "/no/such/thing")
    check("an unknown path answers 404 JSON", r.status == 404 and j.get("name") == "alpha" and "error" in j, j)
    r, body = request(port, "HEAD", "/")
    check("HEAD / has Content-Length and no body",
          r.status == 200 and int(r.getheader("content-length")) > 0 and body == b"", (r.getheaders(), body))
    r, body = request(port, "POST", "/headers", body=b"x" * 100000, headers={"Content-Type": "text/plain"})
    check("a request body is read and dropped", r.status == 200, r.status)
    # keep-alive: several requests, one connection, bodies skipped between them
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    ok = True
    for i in range(20):
        r, body = request(port, "POST" if i % 2 else "GET", "/ip", body=b"y" * i if i % 2 else None, conn=c)
        ok = ok and r.status == 200 and json.loads(body)["origin"] == "127.0.0.1"
    c.close()
    check("20 requests on one kept-alive connection", ok)
    p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--raw", "-X", "GET",
                        "-H", "Transfer-Encoding: chunked", "--data-binary", "abc",
                        "http://127.0.0.1:%d/headers" % port], capture_output=True, text=True, timeout=10,
                       env=clean_env())
    check("a chunked request body is dropped", p.stdout == "200", p.stdout + p.stderr)
    for raw, want in ((b"GET / HTTP/1.1\nHost: x\n\n", b"HTTP/1.1 400 "), (b"\x16\x03\x01garbage\r\n\r\n", b"HTTP/1.1 400 "),
                      (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nnot a frame", b"\x00\x00")):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(raw)
        out, closed = b"", False
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    closed = True
                    break
                out += d
        except OSError:
            pass
        s.close()
        check("malformed input %r is answered (%r) and the connection closed" % (raw[:12], want),
              out.startswith(want) and closed, (closed, out[:120]))


def delay_order(port):
    """A slow request started first finishes after a fast one started later."""
    done = []
    lock = threading.Lock()

    def get(path):
        r, _ = request(port, "GET", path, timeout=30)
        with lock:
            done.append((path, r.status))

    slow = threading.Thread(target=get, args=("/delay/0.5",))
    slow.start()
    time.sleep(0.1)
    get("/healthz")
    slow.join()
    check("/delay/0.5 does not block another request (HTTP/1.1)",
          [p for p, _ in done] == ["/healthz", "/delay/0.5"] and all(s == 200 for _, s in done), done)
    r, j = get_json(port, "/delay/0.25")
    check("/delay answers the echo with delay_ms", r.status == 200 and j.get("delay_ms") == 250, j)


def h2c(port):
    p = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-D", "-", "-H", "X-Custom: h2",
                        "http://127.0.0.1:%d/headers" % port], capture_output=True, text=True, timeout=20,
                       env=clean_env())
    head, _, body = p.stdout.partition("\n\n")  # text mode: CRLF is read as LF
    ok = head.startswith("HTTP/2 200") and "x-app-name: alpha" in head
    try:
        ok = ok and json.loads(body)["headers"].get("x-custom") == "h2"
    except (ValueError, KeyError):
        ok = False
    check("h2c prior knowledge: curl gets 200, x-app-name and the echo", ok, p.stdout + p.stderr)
    p = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "http://127.0.0.1:%d/" % port],
                       capture_output=True, text=True, timeout=20, env=clean_env())
    try:
        proto = json.loads(p.stdout).get("protocol")
    except ValueError:
        proto = None
    check("h2c: / reports HTTP/2", proto == "HTTP/2", p.stdout)
    # Two streams on one connection: the one sent first (delayed) ends last. nghttp (nghttp2-client, with h2load)
    # rather than curl -Z: curl 7.88 fails the second stream of a reused prior-knowledge connection (curl#10634).
    if shutil.which("nghttp"):
        p = subprocess.run(["nghttp", "-nv", "http://127.0.0.1:%d/delay/1" % port,
                            "http://127.0.0.1:%d/healthz" % port], capture_output=True, text=True, timeout=30)
        paths, ended, cur = {}, [], None
        for line in p.stdout.splitlines():
            m = re.search(r"send HEADERS frame .*stream_id=(\d+)", line)
            if m:
                cur = m.group(1)
            m = re.search(r":path: (\S+)", line)
            if m and cur:
                paths[cur] = m.group(1)
                cur = None
            m = re.search(r"recv (?:DATA|HEADERS) frame .*flags=0x0[15], stream_id=(\d+)", line)
            if m:
                ended.append(paths.get(m.group(1)))
        check("h2c: a /delay stream does not block another stream on the same connection",
              ended == ["/healthz", "/delay/1"], p.stdout[-1500:])
    else:
        check("nghttp is installed (tools/deps.sh: nghttp2-client)", False)
    if not shutil.which("h2load"):
        check("h2load is installed (tools/deps.sh: nghttp2-client)", False)
        return
    uris = os.path.join(TMP, "uris.txt")
    with open(uris, "w") as f:
        f.write("http://127.0.0.1:%d/\nhttp://127.0.0.1:%d/delay/0.2\nhttp://127.0.0.1:%d/headers\n" %
                (port, port, port))
    p = subprocess.run(["h2load", "-n", "200", "-c", "2", "-m", "10", "-i", uris], capture_output=True, text=True,
                       timeout=120)
    check("h2load -n 200 -c 2 -m 10 with /delay/0.2 streams: 200 succeeded, 0 failed",
          "200 succeeded, 0 failed, 0 errored, 0 timeout" in p.stdout and "200 2xx" in p.stdout, p.stdout[-800:])
    p = subprocess.run(["h2load", "-n", "200", "-c", "2", "-m", "10", "--h1", "http://127.0.0.1:%d/ip" % port],
                       capture_output=True, text=True, timeout=120)
    check("h2load --h1 (HTTP/1.1 pipelining) -n 200: 0 failed",
          "200 succeeded, 0 failed, 0 errored, 0 timeout" in p.stdout, p.stdout[-800:])


def fail_rate():
    port, proc = start_app("flaky", "--fail-rate", "0.5", "--concurrency", "2")
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    codes = [request(port, "GET", "/", conn=c)[0].status for _ in range(400)]
    healthz = [request(port, "GET", "/healthz", conn=c)[0].status for _ in range(50)]
    c.close()
    frac = codes.count(503) / 400.0
    check("--fail-rate 0.5: the 503 fraction of 400 requests is in [0.35, 0.65]",
          0.35 <= frac <= 0.65 and set(codes) <= {200, 503}, "fraction %.3f, codes %s" % (frac, set(codes)))
    check("--fail-rate spares /healthz", set(healthz) == {200}, set(healthz))
    stop(proc)
    port, proc = start_app("broken", "--fail-rate", "1", "--fail-code", "500")
    r, j = get_json(port, "/headers")
    check("--fail-rate 1 --fail-code 500 answers 500 JSON with x-app-name",
          r.status == 500 and r.getheader("x-app-name") == "broken" and "error" in j, (r.status, j))
    stop(proc)


class ForwardProxy(http.server.BaseHTTPRequestHandler):
    """A tiny HTTP forward proxy (absolute-form GETs only), recording what it forwarded."""
    protocol_version = "HTTP/1.1"
    seen = []

    def log_message(self, *a):
        pass

    def do_GET(self):
        ForwardProxy.seen.append((self.path, self.headers.get("Host")))
        from urllib.parse import urlsplit
        u = urlsplit(self.path)
        if not u.scheme:
            self.send_error(400, "not absolute-form")
            return
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=30)
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")}
        try:
            conn.request("GET", (u.path or "/") + ("?" + u.query if u.query else ""), headers=hdrs)
            r = conn.getresponse()
            body = r.read()
        except OSError:
            self.send_error(502, "upstream unreachable")
            return
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Via-Test-Proxy", "1")
        self.end_headers()
        self.wfile.write(body)
        conn.close()


def chain_tree(j, hops):
    """[(name, version), ...] down the first call of each hop."""
    out = []
    while j is not None and len(out) < hops:
        out.append((j.get("name"), j.get("version")))
        calls = j.get("calls") or []
        j = calls[0].get("body") if calls and isinstance(calls[0].get("body"), dict) else None
    return out


def chain(env, label):
    pc, proc_c = start_app("ratings-" + label, "--version", "v3", env=env)
    pb, proc_b = start_app("reviews-" + label, "--version", "v2", "--call", "http://127.0.0.1:%d/" % pc, env=env)
    pa, proc_a = start_app("productpage-" + label, "--call", "http://127.0.0.1:%d/" % pb, env=env)
    trace = {"x-request-id": "req-%s" % label, "x-b3-traceid": "463ac35c9f6413ad", "x-b3-spanid": "a2fb4a1d1a96d312",
             "x-b3-sampled": "1", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
             "end-user": "jason", "x-not-propagated": "no"}
    r, j = get_json(pa, "/", headers=trace)
    tree = chain_tree(j, 3)
    check("chain (%s): productpage -> reviews -> ratings shows every hop's version" % label,
          r.status == 200 and tree == [("productpage-" + label, "v1"), ("reviews-" + label, "v2"),
                                       ("ratings-" + label, "v3")], j)
    try:
        leaf = j["calls"][0]["body"]["calls"][0]["body"]["headers"]
        leaf = {k.lower(): v for k, v in leaf.items()}
    except (KeyError, IndexError, TypeError):
        leaf = {}
    check("chain (%s): tracing headers and end-user reach the last hop" % label,
          all(leaf.get(k) == v for k, v in trace.items() if k != "x-not-propagated"), leaf)
    check("chain (%s): other request headers are not propagated" % label, "x-not-propagated" not in leaf, leaf)
    # a hop that is down is reported inside the answer, which is still 200
    stop(proc_c)
    r, j = get_json(pa, "/")
    try:
        last = j["calls"][0]["body"]["calls"][0]
        err = last.get("error") or last.get("status") == 502  # direct: no connection; proxied: the proxy's 502
    except (KeyError, IndexError, TypeError):
        err = None
    check("chain (%s): a hop that is down shows inside a 200" % label, r.status == 200 and err, j)
    for p in (proc_a, proc_b):
        check("chain (%s): SIGTERM exits 0" % label, stop(p) == 0)


def sigterm_in_flight():
    port, slow = start_app("slow")
    cport, caller = start_app("caller", "--call", "http://127.0.0.1:%d/delay/30" % port)
    results = []

    def get(p, path):
        try:
            r, _ = request(p, "GET", path, timeout=60)
            results.append(r.status)
        except (OSError, http.client.HTTPException) as e:
            results.append(type(e).__name__)

    threads = [threading.Thread(target=get, args=(cport, "/")), threading.Thread(target=get, args=(port, "/delay/30"))]
    for t in threads:
        t.start()
    time.sleep(0.5)
    check("SIGTERM with a call in flight exits 0", stop(caller) == 0)
    h2 = subprocess.Popen(["curl", "-s", "--http2-prior-knowledge", "http://127.0.0.1:%d/delay/30" % port],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env())
    time.sleep(0.3)
    check("SIGTERM with HTTP/1.1 and h2c /delay requests in flight exits 0", stop(slow) == 0)
    for t in threads:
        t.join(timeout=30)
    h2.wait(timeout=30)
    check("the in-flight requests end when the app stops", len(results) == 2, results)


def main():
    try:
        bad_flags()
        port, proc = start_app("alpha", "--version", "v7", "--concurrency", "2")
        endpoints(port)
        delay_order(port)
        h2c(port)
        check("SIGTERM exits 0", stop(proc) == 0)
        fail_rate()
        chain(clean_env(), "direct")
        proxy, pport = serve(http.server.ThreadingHTTPServer, ForwardProxy)
        chain(clean_env(http_proxy="http://127.0.0.1:%d" % pport), "proxied")
        proxied = [p for p, _ in ForwardProxy.seen]
        check("with http_proxy set, every call went through the proxy in absolute form",
              len(proxied) >= 4 and all(p.startswith("http://127.0.0.1:") for p in proxied), ForwardProxy.seen)
        check("the proxy saw a Host header on every call", all(h for _, h in ForwardProxy.seen), ForwardProxy.seen)
        proxy.shutdown()
        sigterm_in_flight()
    finally:
        for name, proc, log in PROCS:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        tails = [(name, log, 20) for name, _, log in PROCS]
        sanitizer = [name for name, _, log in PROCS if "Sanitizer" in open(log).read()]
        check("no sanitizer report in any app log", not sanitizer, sanitizer)
        cleanup(TMP, tails)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
