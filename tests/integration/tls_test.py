#!/usr/bin/env python3
"""tls_test.py - TLS termination on Gateway servers, with real clients.

Two HTTPS servers share one port: one certificate from a Kubernetes TLS
Secret (credentialName), one from files (serverCertificate/privateKey);
the client's SNI picks the certificate and the server's routes. Checked
with Python's ssl module (certificate verification on), `openssl s_client`
and curl: the right certificate and routes per name, TLS 1.2 minimum, a
plain-text port with httpsRedirect, garbage on the TLS port, and a config
change that replaces a certificate without a restart.

Usage: tests/integration/tls_test.py --keel build/debug/keel
"""
import base64
import http.client
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (check, cleanup, free_port, keel_arg, start_proxy, stop_proxy, summary,  # noqa: E402
                     wait_ready, write_atomic)


def make_cert(d, name):
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "2", "-subj", "/CN=" + name, "-addext", "subjectAltName=DNS:" + name],
                   check=True, capture_output=True)
    return crt, key


def b64(path):
    return base64.b64encode(open(path, "rb").read()).decode()


CONFIG = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {tls}, name: https-a, protocol: HTTPS}}
    hosts: [a.example.com]
    tls: {{mode: SIMPLE, credentialName: a-cert}}
  - port: {{number: {tls}, name: https-b, protocol: HTTPS}}
    hosts: [b.example.com]
    tls: {{mode: SIMPLE, serverCertificate: {bcrt}, privateKey: {bkey}}}
  - port: {{number: {plain}, name: http, protocol: HTTP}}
    hosts: ["*"]
    tls: {{httpsRedirect: true}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: a, namespace: istio-system}}
spec:
  hosts: [a.example.com]
  gateways: [gw]
  http: [{{directResponse: {{status: 200, body: {{string: "a {gen}"}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: b, namespace: istio-system}}
spec:
  hosts: [b.example.com]
  gateways: [gw]
  http: [{{directResponse: {{status: 200, body: {{string: "b"}}}}}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: a-cert, namespace: istio-system}}
type: kubernetes.io/tls
data:
  tls.crt: {acrt}
  tls.key: {akey}
"""


def get(port, name, cafile, path="/"):
    ctx = ssl.create_default_context(cafile=cafile)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname=name)
    conn.request("GET", path, headers={"Host": name})
    r = conn.getresponse()
    body = r.read()
    peer = conn.sock.getpeercert()
    conn.close()
    return r.status, body, peer


def main():
    keel = keel_arg()
    tmp = tempfile.mkdtemp(prefix="keel-tls-test-")
    acrt, akey = make_cert(tmp, "a.example.com")
    bcrt, bkey = make_cert(tmp, "b.example.com")
    tls_port, plain, admin = free_port(), free_port(), free_port()
    cfgdir = os.path.join(tmp, "cfg")
    os.makedirs(cfgdir)
    cfg = os.path.join(cfgdir, "gw.yaml")

    def write(gen, a_crt=acrt, a_key=akey):
        write_atomic(cfg, CONFIG.format(tls=tls_port, plain=plain, bcrt=bcrt, bkey=bkey, acrt=b64(a_crt),
                                        akey=b64(a_key), gen=gen))

    write(1)
    log = open(os.path.join(tmp, "proxy.log"), "w")
    proc = start_proxy(keel, "router", cfgdir, admin, log, "--concurrency", "1")
    try:
        check("ready", wait_ready(keel, admin) == 0)
        st, body, peer = get(tls_port, "a.example.com", acrt)
        check("SNI a: Secret certificate, a's routes", st == 200 and body == b"a 1", (st, body))
        check("certificate verified for a.example.com", dict(x[0] for x in peer["subject"]).get("commonName") ==
              "a.example.com", peer)
        st, body, peer = get(tls_port, "b.example.com", bcrt)
        check("SNI b: file certificate, b's routes", st == 200 and body == b"b", (st, body))
        out = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % tls_port, "-servername",
                              "b.example.com", "-tls1_1"], input=b"", capture_output=True, timeout=10)
        refused = b"Cipher    : 0000" in out.stdout or b"Cipher is (NONE)" in out.stdout or out.returncode != 0
        check("TLS 1.1 refused (minimum 1.2)", refused, out.stdout[-300:])
        out = subprocess.run(["curl", "-s", "--cacert", bcrt, "--resolve", "b.example.com:%d:127.0.0.1" % tls_port,
                              "https://b.example.com:%d/" % tls_port], capture_output=True, timeout=10)
        check("curl over TLS", out.stdout == b"b", out)
        c = http.client.HTTPConnection("127.0.0.1", plain, timeout=5)
        c.request("GET", "/path?q=1", headers={"Host": "a.example.com"})
        r = c.getresponse()
        r.read()
        check("httpsRedirect: 301 to https", r.status == 301 and r.getheader("location") == "https://a.example.com/path?q=1",
              (r.status, r.getheaders()))
        s = socket.create_connection(("127.0.0.1", tls_port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" + os.urandom(200))
        try:
            data = s.recv(100)
        except OSError:
            data = b""
        s.close()
        check("plain text on the TLS port: closed, proxy alive", proc.poll() is None and not data.startswith(b"HTTP/1.1 200"),
              data)
        # replace a's certificate through the Secret: new connections get it
        os.makedirs(os.path.join(tmp, "v2"))
        a2crt, a2key = make_cert(os.path.join(tmp, "v2"), "a.example.com")
        write(2, a2crt, a2key)
        deadline = time.time() + 5
        ok = False
        while time.time() < deadline:
            try:
                st, body, _ = get(tls_port, "a.example.com", a2crt)
                if body == b"a 2":
                    ok = True
                    break
            except (ssl.SSLError, OSError):
                pass
            time.sleep(0.1)
        check("certificate rotated by a config change, no restart", ok)
    finally:
        stop_proxy(proc)
        log.close()
        cleanup(tmp, [("proxy log", os.path.join(tmp, "proxy.log"), 30)])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
