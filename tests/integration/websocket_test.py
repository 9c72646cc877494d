#!/usr/bin/env python3
"""websocket_test.py - WebSocket upgrades through `keel proxy router`, over real sockets.

The upstream is a small WebSocket echo server on raw sockets (RFC 6455
handshake, then it echoes every byte); the client speaks the handshake and
frames on a raw socket too (the standard library has no WebSocket client).
Checked: the 101 with Upgrade/Connection/Sec-WebSocket-Accept reaches the
client, route header operations still apply to the handshake, masked frames
go through and come back byte for byte, 1 MiB each way (back-pressure in a
tunnel), the client's close reaches the upstream, an upstream that refuses
the upgrade answers as usual, upgrades other than WebSocket get 501, and the
access log shows the 101. Nothing asserts timings.

Usage: tests/integration/websocket_test.py --keel build/debug/keel
"""
import base64
import hashlib
import os
import re
import socket
import struct
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (check, cleanup, free_port, keel_arg, pattern, start_proxy, stop_proxy, summary,  # noqa: E402
                     wait_for_log, wait_ready, write_atomic)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

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
  - route: [{{destination: {{host: ws.example.com}}}}]
    headers:
      response:
        set: {{x-via: keel}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ws, namespace: istio-system}}
spec:
  hosts: [ws.example.com]
  location: MESH_INTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {up}}}]
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


def accept_key(key):
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()


class EchoServer:
    """Accepts connections; answers the handshake with 101 (or 400 for /refuse) and echoes every byte after it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.closed_by_client = threading.Event()
        self.heads = []
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        data = b""
        while b"\r\n\r\n" not in data:
            b = c.recv(65536)
            if not b:
                c.close()
                return
            data += b
        head, rest = data.split(b"\r\n\r\n", 1)
        self.heads.append(head.decode("latin-1"))
        if head.startswith(b"GET /refuse"):
            c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 7\r\n\r\nrefused")
            c.close()
            return
        key = re.search(rb"(?i)sec-websocket-key: *(\S+)", head)
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Accept: " + accept_key(key.group(1) if key else b"").encode() + b"\r\n\r\n")
        if rest:
            c.sendall(rest)
        while True:
            b = c.recv(65536)
            if not b:
                self.closed_by_client.set()
                c.close()
                return
            c.sendall(b)


def frame(payload, opcode=1):
    """A masked client frame (RFC 6455 section 5.2)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        b = s.recv(min(65536, n - len(out)))
        if not b:
            break
        out += b
    return out


def handshake(port, path="/chat", upgrade="websocket"):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16))
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: ws.example.com\r\nUpgrade: " + upgrade.encode() +
              b"\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        b = s.recv(1)
        if not b:
            break
        head += b
    return s, key, head.decode("latin-1")


def main():
    keel = keel_arg()
    tmp = tempfile.mkdtemp(prefix="keel-ws-test-")
    up = EchoServer()
    gw, admin = free_port(), free_port()
    cfgdir = os.path.join(tmp, "config")
    os.makedirs(cfgdir)
    logpath = os.path.join(tmp, "access.log")
    write_atomic(os.path.join(cfgdir, "mesh.yaml"), CONFIG.format(gw=gw, up=up.port, log=logpath))
    proxy_log = open(os.path.join(tmp, "proxy.log"), "w")
    proc = start_proxy(keel, "router", cfgdir, admin, proxy_log, "--concurrency", "2")
    try:
        check("keel proxy wait returns once ready", wait_ready(keel, admin, timeout=10) == 0)
        s, key, head = handshake(gw)
        check("101 Switching Protocols reaches the client", head.startswith("HTTP/1.1 101"), head)
        check("Upgrade and Connection fields kept on the 101",
              re.search(r"(?im)^upgrade: websocket\r$", head) and re.search(r"(?im)^connection: upgrade\r$", head),
              head)
        check("Sec-WebSocket-Accept from the upstream", ("sec-websocket-accept: " + accept_key(key)) in head.lower()
              or ("Sec-WebSocket-Accept: " + accept_key(key)) in head, head)
        check("route response header ops apply to the handshake", "x-via: keel" in head.lower(), head)
        check("the upstream saw the upgrade request",
              any("upgrade: websocket" in h.lower() and "connection: upgrade" in h.lower() for h in up.heads),
              up.heads[-1:] if up.heads else None)
        f = frame(b"hello over keel")
        s.sendall(f)
        check("a masked frame comes back byte for byte", recv_exact(s, len(f)) == f)
        big = frame(pattern(1 << 20, b"ws"), opcode=2)
        sender = threading.Thread(target=s.sendall, args=(big,))
        sender.start()
        got = recv_exact(s, len(big))
        sender.join()
        check("1 MiB frame through the tunnel both ways", got == big, (len(got), len(big)))
        s.close()
        check("the client's close reaches the upstream", up.closed_by_client.wait(10))

        s, key, head = handshake(gw, "/refuse")
        body = head + s.recv(100).decode("latin-1")
        s.close()
        check("an upstream that refuses the upgrade answers as usual", body.startswith("HTTP/1.1 400")
              and body.endswith("refused"), body)
        s, key, head = handshake(gw, "/x", upgrade="h2c")
        s.close()
        check("upgrades other than WebSocket: 501", head.startswith("HTTP/1.1 501"), head)
        log = wait_for_log(logpath, r'"GET /chat HTTP/1.1" 101 ')
        check("access log shows the 101", re.search(r'"GET /chat HTTP/1.1" 101 ', log) is not None, log[-600:])
    finally:
        stop_proxy(proc)
        proxy_log.close()
        up.sock.close()
        cleanup(tmp, [("proxy log", os.path.join(tmp, "proxy.log"), 40)])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
