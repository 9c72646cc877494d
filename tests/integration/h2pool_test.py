#!/usr/bin/env python3
"""h2pool_test.py - many streams per upstream HTTP/2 connection (Envoy's HTTP/2 connection pool), over real sockets.

One keel gateway worker routes HTTP/1.1 clients (Python threads, one client connection each) by Host to clusters
whose port speaks `http2`; the upstream is `keel sample-app` (h2c), whose x-app-peer response field names the
client address (keel's upstream connection) that carried each request. Checked:
  - 20 concurrent slow requests (/delay) go over ONE upstream connection; envoy_cluster_upstream_cx_total counts
    1 connection and envoy_cluster_upstream_rq_total the 20 requests;
  - DestinationRule maxConcurrentStreams: 5 -> 20 concurrent requests open 4 connections of 5 streams each;
  - maxRequestsPerConnection: 3 -> 9 requests over 3 connections of 3 streams;
  - a stream the upstream resets (/h2/reset: RST_STREAM) fails only that request: the slow requests on the same
    connection succeed and the connection carries the next request;
  - a client that goes away cancels only its stream: the others on the connection succeed, the connection stays;
  - flow control per stream: an HTTP/2 client that never opens its window (SETTINGS_INITIAL_WINDOW_SIZE 0) for a
    1 MB answer (/bytes/N) stalls only its stream; requests on the same upstream connection still succeed;
  - a route timeout (504) resets only its stream: the others on the connection succeed, the connection stays;
  - a refused connect fails every stream waiting for that connection (503);
  - GOAWAY from the upstream (/h2/goaway): the streams in flight on that connection finish, new requests go to a
    new connection.
Concurrency comes from threads released together at a barrier, each request waiting 3 s at the upstream: the
counts assume the 20 requests reach keel within those 3 s. Nothing asserts timings.

Usage: tests/integration/h2pool_test.py --keel build/debug/keel
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
from harness import (check, cleanup, free_port, http_get, keel_arg, start_proxy, stop_proxy, summary,  # noqa: E402
                     wait_ready, write_atomic)

CONFIG = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {gw}, name: http, protocol: HTTP}}
    hosts: ["*"]
"""
for name in ("a", "lim", "mr", "rst", "cancel", "ga", "fc"):
    CONFIG += """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{{{name: {n}, namespace: istio-system}}}}
spec:
  hosts: [{n}.test]
  gateways: [gw]
  http:
  - route: [{{{{destination: {{{{host: {n}.test}}}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{{{name: {n}, namespace: istio-system}}}}
spec:
  hosts: [{n}.test]
  location: MESH_INTERNAL
  ports: [{{{{number: 80, name: http2, protocol: HTTP2, targetPort: {{app}}}}}}]
  resolution: STATIC
  endpoints: [{{{{address: 127.0.0.1}}}}]
""".format(n=name)
CONFIG += """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: to, namespace: istio-system}}
spec:
  hosts: [to.test]
  gateways: [gw]
  http:
  - match: [{{uri: {{prefix: /delay/3}}}}]
    timeout: 1s
    route: [{{destination: {{host: a.test}}}}]
  - route: [{{destination: {{host: a.test}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: dead, namespace: istio-system}}
spec:
  hosts: [dead.test]
  location: MESH_INTERNAL
  ports: [{{number: 80, name: http2, protocol: HTTP2, targetPort: {dead}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: dead, namespace: istio-system}}
spec:
  hosts: [dead.test]
  gateways: [gw]
  http:
  - route: [{{destination: {{host: dead.test}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: lim, namespace: istio-system}}
spec:
  host: lim.test
  trafficPolicy: {{connectionPool: {{http: {{maxConcurrentStreams: 5}}}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: mr, namespace: istio-system}}
spec:
  host: mr.test
  trafficPolicy: {{connectionPool: {{http: {{maxRequestsPerConnection: 3}}}}}}
"""


def get(gw, host, path, timeout=30):
    """GET through the gateway; returns (status, x-app-peer or None)."""
    c = http.client.HTTPConnection("127.0.0.1", gw, timeout=timeout)
    try:
        c.request("GET", path, headers={"Host": host})
        r = c.getresponse()
        r.read()
        return r.status, r.getheader("x-app-peer")
    except (OSError, http.client.HTTPException) as e:
        return repr(e), None
    finally:
        c.close()


def concurrent(gw, jobs):
    """Runs jobs [(host, path)] at once (a barrier releases the threads together); returns their results in order."""
    out = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def run(i, host, path):
        barrier.wait()
        out[i] = get(gw, host, path)

    ts = [threading.Thread(target=run, args=(i, h, p)) for i, (h, p) in enumerate(jobs)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def frame(ftype, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


def stuck_h2_client(gw, host, path):
    """An h2c client whose streams may receive no DATA (initial window 0, never a WINDOW_UPDATE): one GET. Returns
    the socket, left open (close it to go away)."""
    sk = socket.create_connection(("127.0.0.1", gw))
    settings = (4).to_bytes(2, "big") + (0).to_bytes(4, "big")  # SETTINGS_INITIAL_WINDOW_SIZE = 0
    # HPACK: :method GET (2), :scheme http (6), then :path and :authority as literals without indexing
    block = bytes([0x82, 0x86, 0x04, len(path)]) + path.encode() + bytes([0x01, len(host)]) + host.encode()
    sk.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, settings) + frame(1, 0x5, 1, block))
    return sk


def stat(admin, name, cluster):
    text = http_get(admin, "/stats/prometheus")[1].decode()
    m = re.search(r'^%s\{cluster_name="%s"\} (\d+)$' % (name, re.escape(cluster)), text, re.M)
    return int(m.group(1)) if m else None


def per_peer(results):
    counts = {}
    for _, peer in results:
        counts[peer] = counts.get(peer, 0) + 1
    return counts


def main():
    keel = keel_arg()
    tmp = tempfile.mkdtemp(prefix="keel-h2pool-test-")
    gw, admin, app_port, dead_port = free_port(), free_port(), free_port(), free_port()
    app_log = open(os.path.join(tmp, "app.log"), "w")
    app = subprocess.Popen([keel, "sample-app", "--listen", "127.0.0.1:%d" % app_port, "--name", "app"],
                           stdout=app_log, stderr=subprocess.STDOUT)
    cfgdir = os.path.join(tmp, "config")
    os.makedirs(cfgdir)
    write_atomic(os.path.join(cfgdir, "mesh.yaml"), CONFIG.format(gw=gw, app=app_port, dead=dead_port))
    log = open(os.path.join(tmp, "proxy.log"), "w")
    # one worker: every request meets the same pools
    proc = start_proxy(keel, "router", cfgdir, admin, log, "--concurrency", "1")
    try:
        check("proxy ready", wait_ready(keel, admin, timeout=10) == 0)
        for _ in range(100):  # the sample app listens
            try:
                socket.create_connection(("127.0.0.1", app_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)

        # --- 20 concurrent slow requests: one upstream connection
        res = concurrent(gw, [("a.test", "/delay/3")] * 20)
        check("20 concurrent requests answered 200", [s for s, _ in res] == [200] * 20, res)
        peers = per_peer(res)
        check("...all over ONE upstream HTTP/2 connection", len(peers) == 1 and None not in peers, peers)
        check("envoy_cluster_upstream_cx_total counts 1 connection",
              stat(admin, "envoy_cluster_upstream_cx_total", "outbound|80||a.test") == 1,
              stat(admin, "envoy_cluster_upstream_cx_total", "outbound|80||a.test"))
        check("envoy_cluster_upstream_rq_total counts the 20 requests",
              stat(admin, "envoy_cluster_upstream_rq_total", "outbound|80||a.test") == 20,
              stat(admin, "envoy_cluster_upstream_rq_total", "outbound|80||a.test"))
        s, peer = get(gw, "a.test", "/")
        check("the next request reuses that connection", s == 200 and peer in peers, (s, peer, peers))

        # --- a route timeout cancels only its stream (to.test routes to a.test, whose connection is still up)
        res = concurrent(gw, [("a.test", "/delay/2")] * 4 + [("to.test", "/delay/3")])
        check("route timeout: that request gets 504", res[4][0] == 504, res[4])
        check("...the 4 others on the connection succeed", [s for s, _ in res[:4]] == [200] * 4, res)
        check("...still the one connection", set(per_peer(res[:4])) == set(peers) and
              stat(admin, "envoy_cluster_upstream_cx_total", "outbound|80||a.test") == 1, (res, peers))

        # --- connect failure: every stream waiting for the connection fails (503), nothing else breaks
        res = concurrent(gw, [("dead.test", "/")] * 5)
        check("connection refused: the 5 streams waiting for it get 503", [s for s, _ in res] == [503] * 5, res)

        # --- maxConcurrentStreams: 5
        res = concurrent(gw, [("lim.test", "/delay/3")] * 20)
        check("maxConcurrentStreams 5: 20 concurrent requests answered 200", [s for s, _ in res] == [200] * 20, res)
        peers = per_peer(res)
        check("...over 4 connections of 5 streams each", sorted(peers.values()) == [5, 5, 5, 5], peers)
        check("...envoy_cluster_upstream_cx_total 4",
              stat(admin, "envoy_cluster_upstream_cx_total", "outbound|80||lim.test") == 4,
              stat(admin, "envoy_cluster_upstream_cx_total", "outbound|80||lim.test"))

        # --- maxRequestsPerConnection: 3
        res = [get(gw, "mr.test", "/") for _ in range(9)]
        check("maxRequestsPerConnection 3: 9 requests answered 200", [s for s, _ in res] == [200] * 9, res)
        peers = per_peer(res)
        check("...over 3 connections of 3 requests", sorted(peers.values()) == [3, 3, 3], peers)
        res = concurrent(gw, [("mr.test", "/delay/3")] * 6)
        check("...6 concurrent ones answered 200", [s for s, _ in res] == [200] * 6, res)
        check("...at most 3 per connection", max(per_peer(res).values()) <= 3, per_peer(res))

        # --- a stream reset by the upstream fails only that request
        res = concurrent(gw, [("rst.test", "/delay/3")] * 5 + [("rst.test", "/h2/reset")])
        check("upstream RST_STREAM: that request fails (503)", res[5][0] == 503, res[5])
        check("...the 5 others on the connection succeed", [s for s, _ in res[:5]] == [200] * 5, res)
        peers = per_peer(res[:5])
        check("...on one connection", len(peers) == 1, peers)
        s, peer = get(gw, "rst.test", "/")
        check("...which carries the next request", s == 200 and peer in peers, (s, peer, peers))

        # --- a client that goes away cancels only its stream
        out = [None] * 5

        def slow(i):
            out[i] = get(gw, "cancel.test", "/delay/3")

        ts = [threading.Thread(target=slow, args=(i,)) for i in range(5)]
        for t in ts:
            t.start()
        gone = []
        for _ in range(3):
            sk = socket.create_connection(("127.0.0.1", gw))
            sk.sendall(b"GET /delay/3 HTTP/1.1\r\nHost: cancel.test\r\n\r\n")
            gone.append(sk)
        time.sleep(0.5)
        for sk in gone:
            sk.close()
        for t in ts:
            t.join()
        check("clients gone: the 5 other requests succeed", [s for s, _ in out] == [200] * 5, out)
        peers = per_peer(out)
        s, peer = get(gw, "cancel.test", "/")
        check("...on one connection, which carries the next request",
              len(peers) == 1 and s == 200 and peer in peers, (s, peer, peers))
        check("...still 1 connection (envoy_cluster_upstream_cx_total)",
              stat(admin, "envoy_cluster_upstream_cx_total", "outbound|80||cancel.test") == 1,
              stat(admin, "envoy_cluster_upstream_cx_total", "outbound|80||cancel.test"))

        # --- per-stream flow control: a client that takes nothing stalls only its own stream
        stuck = stuck_h2_client(gw, "fc.test", "/bytes/1000000")
        time.sleep(0.5)  # keel buffers what it may of that answer, then stops acknowledging its DATA
        res = concurrent(gw, [("fc.test", "/delay/1")] * 5)
        check("flow control: a stuck client's stream does not stall the 5 others on its connection",
              [s for s, _ in res] == [200] * 5, res)
        check("...one upstream connection for all of them (envoy_cluster_upstream_cx_total 1)",
              stat(admin, "envoy_cluster_upstream_cx_total", "outbound|80||fc.test") == 1 and len(per_peer(res)) == 1,
              (stat(admin, "envoy_cluster_upstream_cx_total", "outbound|80||fc.test"), res))
        stuck.close()
        s, peer = get(gw, "fc.test", "/")
        check("...the stuck client gone, the connection goes on", s == 200 and peer in per_peer(res), (s, peer))

        # --- GOAWAY from the upstream
        s, first = get(gw, "ga.test", "/")
        out = [None] * 3

        def slow_ga(i):
            out[i] = get(gw, "ga.test", "/delay/3")

        ts = [threading.Thread(target=slow_ga, args=(i,)) for i in range(3)]
        for t in ts:
            t.start()
        time.sleep(0.5)  # the slow streams are on the connection before the GOAWAY (else they just move)
        s2, peer_ga = get(gw, "ga.test", "/h2/goaway")
        s3, after = get(gw, "ga.test", "/")
        for t in ts:
            t.join()
        check("GOAWAY: the answer that carried it arrives, on the first connection",
              s == 200 and s2 == 200 and peer_ga == first, (s, first, s2, peer_ga))
        check("...the streams in flight on that connection finish", [x for x, _ in out] == [200] * 3, out)
        check("...a new request goes to a new connection", s3 == 200 and after and after != first, (s3, after, first))
    finally:
        stop_proxy(proc)
        app.terminate()
        app.wait()
        cleanup(tmp, [("proxy log", os.path.join(tmp, "proxy.log"), 40), ("app log", os.path.join(tmp, "app.log"), 20)])
    sys.exit(summary())


if __name__ == "__main__":
    main()
