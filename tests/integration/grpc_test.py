#!/usr/bin/env python3
"""grpc_test.py - gRPC and HTTP/2 upstreams through `keel proxy router`, over real sockets.

A gRPC server and client from Debian's python3-grpcio (grpc_peer.py, run with
/usr/bin/python3) talk through a keel gateway: the client speaks h2c to
keel, and keel speaks HTTP/2 to the upstream because its ServiceEntry port
says `protocol: GRPC`. Checked: a unary call with metadata both ways and
trailing metadata, an error status with its message (grpc-status and
grpc-message travel in trailers), unimplemented methods, a server stream of
100 messages, a 1 MiB response, a client stream, and the access log.

Then HTTP/2 to an ordinary HTTP upstream (keel sample-app, which speaks h2c)
chosen by a DestinationRule's h2UpgradePolicy: UPGRADE, reached by an
HTTP/1.1 client: the app sees HTTP/2, the client gets an ordinary HTTP/1.1
response, bodies intact both ways, and the upstream connection is reused.
Nothing asserts timings.

Usage: tests/integration/grpc_test.py --keel build/debug/keel
"""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (check, cleanup, free_port, http_get, keel_arg, pattern, request, start_proxy,  # noqa: E402
                     stop_proxy, summary, wait_ready, write_atomic)

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEM_PYTHON = "/usr/bin/python3"  # where Debian's python3-grpcio lives

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
  - name: grpc
    match: [{{uri: {{prefix: /keel.Echo/}}}}]
    route: [{{destination: {{host: echo.grpc.test}}}}]
  - name: app
    route: [{{destination: {{host: app.example.com}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo, namespace: istio-system}}
spec:
  hosts: [echo.grpc.test]
  location: MESH_INTERNAL
  ports: [{{number: 80, name: grpc, protocol: GRPC, targetPort: {grpc}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: app, namespace: istio-system}}
spec:
  hosts: [app.example.com]
  location: MESH_INTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {app}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: app, namespace: istio-system}}
spec:
  host: app.example.com
  trafficPolicy:
    connectionPool:
      http: {{h2UpgradePolicy: UPGRADE}}
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
    if not os.path.exists(SYSTEM_PYTHON) or subprocess.run([SYSTEM_PYTHON, "-c", "import grpc"],
                                                           capture_output=True).returncode != 0:
        print("python3-grpcio is not installed for %s (tools/deps.sh installs it)" % SYSTEM_PYTHON)
        return 1
    tmp = tempfile.mkdtemp(prefix="keel-grpc-test-")
    gw, admin, grpc_port, app_port = free_port(), free_port(), free_port(), free_port()
    peer = subprocess.Popen([SYSTEM_PYTHON, os.path.join(HERE, "grpc_peer.py"), "server", str(grpc_port)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    app_log = open(os.path.join(tmp, "app.log"), "w")
    app = subprocess.Popen([keel, "sample-app", "--listen", "127.0.0.1:%d" % app_port, "--name", "app",
                            "--version", "v1"], stdout=app_log, stderr=subprocess.STDOUT)
    cfgdir = os.path.join(tmp, "config")
    os.makedirs(cfgdir)
    logpath = os.path.join(tmp, "access.log")
    write_atomic(os.path.join(cfgdir, "mesh.yaml"),
                 CONFIG.format(gw=gw, grpc=grpc_port, app=app_port, log=logpath))
    proxy_log = open(os.path.join(tmp, "proxy.log"), "w")
    proc = start_proxy(keel, "router", cfgdir, admin, proxy_log, "--concurrency", "2")
    try:
        check("gRPC server up", peer.stdout.readline().strip() == "ready")
        check("keel proxy wait returns once ready", wait_ready(keel, admin, timeout=10) == 0)

        # --- gRPC through keel: h2c from the client, HTTP/2 to the upstream
        p = subprocess.run([SYSTEM_PYTHON, os.path.join(HERE, "grpc_peer.py"), "client", "127.0.0.1:%d" % gw],
                           capture_output=True, text=True, timeout=120)
        try:
            out = json.loads(p.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            out = {}
        check("gRPC client ran", bool(out), (p.stdout[-300:], p.stderr[-600:]))
        check("unary call with request metadata", out.get("unary") == "echo:hello|blue", out.get("unary"))
        check("status OK and trailing metadata (trailers through keel)",
              out.get("unary_code") == "OK" and out.get("unary_trailer") == "t1", out)
        check("error status and message (grpc-status/grpc-message trailers)",
              out.get("fail") == "NOT_FOUND no such thing: x42", out.get("fail"))
        check("unknown method -> UNIMPLEMENTED", out.get("unimplemented") == "UNIMPLEMENTED", out.get("unimplemented"))
        check("server streaming: 100 messages in order", out.get("stream") == [100, "msg-0", "msg-99"],
              out.get("stream"))
        check("1 MiB response message intact", out.get("big") == [1 << 20, True], out.get("big"))
        check("client streaming: 50 messages, 500000 bytes", out.get("upload") == "50 messages, 500000 bytes",
              out.get("upload"))

        # --- HTTP/2 to an HTTP upstream by h2UpgradePolicy, from an HTTP/1.1 client
        r, body = request(gw, "GET", "/?q=1", headers={"x-tag": "h1-client"})
        info = json.loads(body) if r.status == 200 else {}
        check("HTTP/1.1 client, HTTP/2 upstream (h2UpgradePolicy: UPGRADE)",
              r.status == 200 and info.get("protocol") == "HTTP/2", (r.status, body[:300]))
        check("path, query and headers carried over HTTP/2",
              info.get("path") == "/" and "q=1" in json.dumps(info.get("query", ""))
              and info.get("headers", {}).get("x-tag") == "h1-client", info)
        check("authority from Host", info.get("authority", "").startswith("127.0.0.1:%d" % gw), info.get("authority"))
        payload = pattern(300000, b"h2up")
        r, body = request(gw, "POST", "/", body=payload)
        check("request body over an HTTP/2 upstream", r.status == 200, (r.status, body[:200]))
        ok = all(http_get(gw, "/?n=%d" % i)[0] == 200 for i in range(30))
        check("30 more requests over the HTTP/2 upstream", ok)
        status, text = http_get(admin, "/stats/prometheus")
        text = text.decode()
        m = re.search(r'envoy_cluster_upstream_cx_total\{cluster_name="outbound\|80\|\|app\.example\.com"\} (\d+)',
                      text)
        check("upstream HTTP/2 connections reused (fewer connections than requests)",
              m is not None and 1 <= int(m.group(1)) < 20, m and m.group(0))

        with open(logpath) as f:
            log = f.read()
        check("access log: gRPC call over HTTP/2, 200",
              re.search(r'"POST /keel.Echo/Unary HTTP/2" 200 ', log) is not None,
              [ln for ln in log.splitlines() if "Unary" in ln][:2])
    finally:
        stop_proxy(proc)
        proxy_log.close()
        peer.stdin.close()
        peer.wait(timeout=10)
        app.terminate()
        app.wait(timeout=10)
        app_log.close()
        cleanup(tmp, [("proxy log", os.path.join(tmp, "proxy.log"), 40)])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
