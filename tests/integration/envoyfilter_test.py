#!/usr/bin/env python3
"""envoyfilter_test.py - EnvoyFilter in keel: the field guide's TCP keep-alive patch applied, others reported.

A gateway (`keel proxy router`, labels istio=ingressgateway, namespace foo-namespace) serves two HTTP ports to a
`keel sample-app`. EnvoyFilters in foo-namespace:

- `istio-ingressgateway`: the guide's LISTENER MERGE of socket_options (SO_KEEPALIVE, TCP_KEEPIDLE 15,
  TCP_KEEPINTVL 15, TCP_KEEPCNT 3) on listener 0.0.0.0_<P1>, portNumber P1 (the guide's 8443);
- `later` (priority 10): TCP_KEEPIDLE 30 on the same listener, applied after the first (priority 0), so 30 wins;
- `lua`: an HTTP_FILTER INSERT_BEFORE (no keel meaning).

Checks: `keel validate` warns about `lua` only (file:line:col, field path, "not applied by keel: ..."); the
config dump lists every patch with applied true/false and the reason, and the listener's socket options; a
connection accepted on P1 has the options set (read with getsockopt on the proxy's own socket, duplicated with
pidfd_getfd, and seen by `ss -tnoi` as a keepalive timer); one on P2 has no keep-alive; after a reload that
gives `later` priority -5, the first patch wins (TCP_KEEPIDLE 15) for new connections. No timing is asserted.

Usage: tests/integration/envoyfilter_test.py --keel build/debug/keel
"""
import ctypes
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (check, cleanup, free_port, keel_arg, start_proxy, stop_proxy, summary,  # noqa: E402
                     wait_ready, write_atomic)

CONFIG = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: foo-ingress, namespace: foo-namespace}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {p1}, name: http-ka, protocol: HTTP}}
    hosts: ["*"]
  - port: {{number: {p2}, name: http-plain, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: app, namespace: foo-namespace}}
spec:
  hosts: [app.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {app}}}]
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: app, namespace: foo-namespace}}
spec:
  hosts: ["*"]
  gateways: [foo-ingress]
  http: [{{route: [{{destination: {{host: app.internal, port: {{number: 80}}}}}}]}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: istio-ingressgateway
  namespace: foo-namespace
spec:
  configPatches:
    - applyTo: LISTENER
      match:
        # istio-ingressgatewayのフィルターの設定値を変更する
        context: GATEWAY
        listener:
          name: 0.0.0.0_{p1}
          portNumber: {p1}
      patch:
        operation: MERGE
        value:
          socket_options:
            - level: 1
              name: 9
              int_value: 1
              state: STATE_PREBIND
            - level: 6
              name: 4
              int_value: 15
              state: STATE_PREBIND
            - level: 6
              name: 5
              int_value: 15
              state: STATE_PREBIND
            - level: 6
              name: 6
              int_value: 3
              state: STATE_PREBIND
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {{name: later, namespace: foo-namespace}}
spec:
  priority: {later_priority}
  configPatches:
  - applyTo: LISTENER
    match: {{context: GATEWAY, listener: {{portNumber: {p1}}}}}
    patch:
      operation: MERGE
      value:
        socket_options: [{{level: 6, name: 4, int_value: 30, state: STATE_PREBIND}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {{name: lua, namespace: foo-namespace}}
spec:
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: GATEWAY
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter: {{name: envoy.filters.http.router}}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.lua
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
          inlineCode: "function envoy_on_request(h) end"
"""

SOL_SOCKET, SO_KEEPALIVE, IPPROTO_TCP, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT = 1, 9, 6, 4, 5, 6


def proxy_socket(pid, local_port, peer_port):
    """A duplicate of the proxy's socket for the connection local_port <- peer_port (pidfd_getfd), or None."""
    inode = None
    for table in ("/proc/%d/net/tcp" % pid, "/proc/%d/net/tcp6" % pid):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    lp = int(fields[1].rsplit(":", 1)[1], 16)
                    rp = int(fields[2].rsplit(":", 1)[1], 16)
                    if lp == local_port and rp == peer_port:
                        inode = fields[9]
        except OSError:
            pass
    if not inode:
        return None
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == "socket:[%s]" % inode:
                libc = ctypes.CDLL(None, use_errno=True)
                pidfd = os.pidfd_open(pid)
                try:
                    dup = libc.syscall(438, pidfd, int(fd), 0)  # pidfd_getfd
                finally:
                    os.close(pidfd)
                return socket.socket(fileno=dup) if dup >= 0 else None
        except OSError:
            continue
    return None


def accepted_options(pid, port):
    """Opens a connection to 127.0.0.1:port, finds the proxy's accepted socket and reads its keep-alive options."""
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    c.sendall(b"GET / HTTP/1.1\r\nHost: app\r\n\r\n")
    c.recv(65536)  # the proxy has accepted (and answered)
    peer = c.getsockname()[1]
    s = None
    deadline = time.time() + 5
    while s is None and time.time() < deadline:
        s = proxy_socket(pid, port, peer)
        if s is None:
            time.sleep(0.05)
    if s is None:
        c.close()
        return None, ""
    opts = (s.getsockopt(SOL_SOCKET, SO_KEEPALIVE), s.getsockopt(IPPROTO_TCP, TCP_KEEPIDLE),
            s.getsockopt(IPPROTO_TCP, TCP_KEEPINTVL), s.getsockopt(IPPROTO_TCP, TCP_KEEPCNT))
    ss = subprocess.run(["ss", "-tnoi", "state", "established", "( sport = :%d and dport = :%d )" % (port, peer)],
                        capture_output=True, text=True).stdout
    s.close()
    c.close()
    return opts, ss


def main():
    keel = keel_arg()
    tmp = tempfile.mkdtemp(prefix="keel-envoyfilter-test-")
    app_port, p1, p2, admin = free_port(), free_port(), free_port(), free_port()
    app_log = open(os.path.join(tmp, "app.log"), "w")
    app = subprocess.Popen([keel, "sample-app", "--listen", "127.0.0.1:%d" % app_port, "--name", "app"],
                           stdout=app_log, stderr=subprocess.STDOUT)
    cfgdir = os.path.join(tmp, "cfg")
    os.makedirs(cfgdir)
    cfg = os.path.join(cfgdir, "envoyfilter.yaml")
    write_atomic(cfg, CONFIG.format(p1=p1, p2=p2, app=app_port, later_priority=10))
    log = open(os.path.join(tmp, "proxy.log"), "w")
    proc = None
    try:
        v = subprocess.run([keel, "validate", cfg], capture_output=True, text=True)
        lines = [ln for ln in v.stdout.splitlines() + v.stderr.splitlines() if "not applied by keel" in ln]
        check("keel validate: valid (exit 0)", v.returncode == 0, v.stdout + v.stderr)
        check("keel validate: one 'not applied' warning, for lua", len(lines) == 1 and "EnvoyFilter foo-namespace/lua"
              in lines[0], lines)
        check("keel validate: it names file:line:col and the field path", bool(lines) and lines[0].startswith(
            "%s:" % cfg) and "spec.configPatches[0]: HTTP_FILTER INSERT_BEFORE patch not applied by keel: " in lines[0],
            lines)

        proc = start_proxy(keel, "router", cfgdir, admin, log, "--labels", "istio=ingressgateway", "--namespace",
                           "foo-namespace", "--concurrency", "1")
        check("ready", wait_ready(keel, admin) == 0)
        with urllib.request.urlopen("http://127.0.0.1:%d/config_dump" % admin, timeout=5) as r:
            snap = json.load(r)["snapshot"]
        efs = {(e["name"], e["patch"]): e for e in snap["envoyFilters"]}
        ka = efs.get(("foo-namespace/istio-ingressgateway", "configPatches[0]"), {})
        check("dump: the guide's keep-alive patch is applied to 0.0.0.0_P1",
              ka.get("applied") is True and ka.get("listeners") == ["0.0.0.0_%d" % p1], ka)
        lua = efs.get(("foo-namespace/lua", "configPatches[0]"), {})
        check("dump: the lua patch is listed as not applied, with the reason",
              lua.get("applied") is False and "no Envoy filter chains" in lua.get("reason", ""), lua)
        order = [e["name"] for e in snap["envoyFilters"]]
        check("dump: patches in priority order", order == ["foo-namespace/istio-ingressgateway", "foo-namespace/lua",
                                                           "foo-namespace/later"], order)
        l1 = [ls for ls in snap["listeners"] if ls["port"] == p1][0]
        opts = [(o["option"], o["value"]) for o in l1.get("socketOptions", [])]
        check("dump: listener P1 socket options in application order",
              opts == [("SO_KEEPALIVE", 1), ("TCP_KEEPIDLE", 15), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 3),
                       ("TCP_KEEPIDLE", 30)], opts)

        got, ss = accepted_options(proc.pid, p1)
        check("accepted socket on P1: SO_KEEPALIVE on, idle 30 (priority 10 applied last), interval 15, count 3",
              got == (1, 30, 15, 3), got)
        check("ss shows the keepalive timer on the accepted socket", "timer:(keepalive" in ss, ss)
        got, ss = accepted_options(proc.pid, p2)
        check("accepted socket on P2 (not matched): no keep-alive", got is not None and got[0] == 0, got)

        write_atomic(cfg, CONFIG.format(p1=p1, p2=p2, app=app_port, later_priority=-5))
        deadline = time.time() + 8
        while time.time() < deadline:
            got, ss = accepted_options(proc.pid, p1)
            if got and got[1] == 15:
                break
            time.sleep(0.1)
        check("after a reload with priority -5 the guide's patch is applied last: idle 15", got == (1, 15, 15, 3), got)
    finally:
        stop_proxy(proc)
        log.close()
        app.terminate()
        app.wait(timeout=10)
        app_log.close()
        cleanup(tmp, [("proxy log", os.path.join(tmp, "proxy.log"), 30)])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
