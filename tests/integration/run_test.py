#!/usr/bin/env python3
"""run_test.py - `keel run DIR`: a small local mesh from one folder.

The folder: a Gateway (port from free_port()) in front of `frontend`, which calls `backend`; both are
WorkloadEntries at 127.0.0.1 with `keel.dev/command: keel sample-app ...`, selected by ServiceEntries. Checks:
every process becomes ready and the ports are printed; a request through the gateway reaches frontend and,
through frontend's sidecar, backend; a VirtualService change in the folder is applied by the proxies; an
invalid file is refused with `keel validate`'s message while the last good config keeps serving; a killed app
is restarted; SIGTERM leaves no process behind; a gateway port in use is reported naming it and who wanted
it; an invalid folder starts nothing; bad flags exit 2. Then the same chain with the backend as a Kubernetes
Service + Deployment pair.

Usage: tests/integration/run_test.py --keel build/debug/keel
"""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, check_sanitizers, cleanup, free_port, http_get, keel_arg, summary, write_atomic  # noqa: E402

MESH = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: demo}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {gw}, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: frontend, namespace: demo}}
spec:
  hosts: [frontend.demo.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: frontend}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: backend, namespace: demo}}
spec:
  hosts: [backend.demo.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: backend}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: frontend
  namespace: demo
  annotations:
    keel.dev/command: "keel sample-app --listen 127.0.0.1:$PORT --call http://backend.demo.svc.cluster.local:9080/"
spec:
  address: 127.0.0.1
  labels: {{app: frontend, version: v1}}
  ports: {{http: 9080}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: backend
  namespace: demo
  annotations:
    keel.dev/command: "keel sample-app --listen 127.0.0.1:$PORT"
spec:
  address: 127.0.0.1
  labels: {{app: backend, version: v1}}
  ports: {{http: 9080}}
---
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {{name: demo-wide, namespace: demo}}
spec:
  environmentVariables: {{KEEL_TEST_NS: ns-wide, KEEL_TEST_SHARED: namespace}}
---
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {{name: frontend-only, namespace: demo}}
spec:
  selector: {{matchLabels: {{app: frontend}}}}
  environmentVariables: {{KEEL_TEST_FRONT: "{front}", KEEL_TEST_SHARED: workload, ISTIO_META_KEEL_TEST: front}}
"""

VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: front, namespace: demo}}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - match: [{{uri: {{prefix: /moved}}}}]
    directResponse: {{status: {moved}, body: {{string: moved}}}}
  - route: [{{destination: {{host: frontend.demo.svc.cluster.local, port: {{number: 9080}}}}}}]
"""

BROKEN = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: demo}
spec:
  hosts: [x]
  http:
  - fault:
    - abort: {httpStatus: 503}
    route: [{destination: {host: x}}]
"""


def children(pid):
    """Pids of the processes whose parent is pid (from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(d))
        except (OSError, IndexError, ValueError):
            pass
    return out


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def environ(pid):
    """The environment a process was started with (/proc/PID/environ), as a dict; None when it is gone."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            items = f.read().split(b"\0")
    except OSError:
        return None
    return dict(i.decode(errors="replace").split("=", 1) for i in items if b"=" in i)


def child_with(pid, *words):
    """The child of pid whose command line holds every word (bytes), or None."""
    for k in children(pid):
        try:
            cmd = open("/proc/%d/cmdline" % k, "rb").read().split(b"\0")
        except OSError:
            continue
        if all(w in cmd for w in words):
            return k
    return None


def wait_for(cond, deadline):
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    return cond()


def get(port, path, headers=None):
    try:
        return http_get(port, path)
    except OSError as e:
        return None, repr(e).encode()


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def clean(stderr):
    return not any(m in stderr for m in SANITIZER_MARKS)


# The same mesh with backend as a Kubernetes Service + Deployment instead of a ServiceEntry + WorkloadEntry.
K8S_BACKEND = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: demo}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {gw}, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: front, namespace: demo}}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route: [{{destination: {{host: frontend.demo.svc.cluster.local, port: {{number: 9080}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: frontend, namespace: demo}}
spec:
  hosts: [frontend.demo.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: frontend}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: frontend
  namespace: demo
  annotations:
    keel.dev/command: "keel sample-app --listen 127.0.0.1:$PORT --call http://backend.demo.svc.cluster.local:9080/"
spec:
  address: 127.0.0.1
  labels: {{app: frontend, version: v1}}
  ports: {{http: 9080}}
---
apiVersion: v1
kind: Service
metadata: {{name: backend, namespace: demo}}
spec:
  selector: {{app: backend}}
  ports: [{{name: http, port: 9080, targetPort: 8080}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: backend, namespace: demo}}
spec:
  selector: {{matchLabels: {{app: backend}}}}
  template:
    metadata:
      labels: {{app: backend, version: v2}}
      annotations:
        keel.dev/command: "keel sample-app --listen 127.0.0.1:$PORT"
    spec:
      containers:
      - name: backend
        image: example/backend
        ports: [{{containerPort: 8080}}]
"""


def k8s_pair(keel, tmp):
    """keel run with a Kubernetes Service + Deployment: the chain works through both sidecars and SIGTERM stops
    everything."""
    cfg = os.path.join(tmp, "k8s")
    os.makedirs(cfg)
    gw = free_port()
    write_atomic(os.path.join(cfg, "mesh.yaml"), K8S_BACKEND.format(gw=gw))
    base = random.randrange(41000, 44500, 50)
    state = os.path.join(tmp, "k8s-state")
    out_path = os.path.join(tmp, "k8s-run.out")
    out = open(out_path, "w")
    proc = subprocess.Popen([keel, "run", cfg, "--base-port", str(base), "--state-dir", state], stdout=out,
                            stderr=subprocess.STDOUT)
    try:
        text = wait_for(lambda: "all 5 processes ready" in open(out_path).read() and open(out_path).read(),
                        time.time() + 60)
        check("Service + Deployment: every process ready (the Deployment runs as a workload with its sidecar)",
              text and "all 5 processes ready" in text, open(out_path).read()[-1500:])
        st, body = get(gw, "/")
        try:
            tree = json.loads(body)
        except ValueError:
            tree = {}
        calls = tree.get("calls", [{}])
        check("Service + Deployment: gateway -> frontend -> backend (the Deployment's pod, version v2)",
              st == 200 and calls[0].get("status") == 200 and calls[0].get("body", {}).get("name") == "backend" and
              calls[0].get("body", {}).get("version") == "v2", (st, body[:400]))
        kids = children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        check("Service + Deployment: SIGTERM stops everything", rc == 0 and not [k for k in kids if alive(k)],
              (rc, kids))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()
        check_sanitizers(out_path)


def main():
    keel = keel_arg()
    tmp = tempfile.mkdtemp(prefix="keel-run-test-")
    cfg = os.path.join(tmp, "mesh")
    os.makedirs(cfg)
    gw = free_port()
    base = random.randrange(41000, 44500, 50)  # the test range; busy ports are skipped by keel run
    write_atomic(os.path.join(cfg, "mesh.yaml"), MESH.format(gw=gw, front="yes"))
    write_atomic(os.path.join(cfg, "vs.yaml"), VS.format(moved=418))
    state = os.path.join(tmp, "state")
    out_path = os.path.join(tmp, "run.out")
    proc = None
    try:
        # ---- bad flags and refused folders first: nothing may start
        for args, flag in ((["--base-port", "abc", cfg], "--base-port"), (["--bogus", cfg], "--bogus"),
                           (["--concurrency", "0", cfg], "--concurrency"), ([], "folder")):
            p = subprocess.run([keel, "run"] + args, capture_output=True, text=True, timeout=20)
            check("bad flag %s exits 2 naming it" % flag, p.returncode == 2 and flag in p.stderr and clean(p.stderr),
                  p.stderr)
        bad = os.path.join(tmp, "bad")
        os.makedirs(bad)
        write_atomic(os.path.join(bad, "mesh.yaml"), MESH.format(gw=gw, front="yes"))
        write_atomic(os.path.join(bad, "broken.yaml"), BROKEN)
        v = subprocess.run([keel, "validate", bad], capture_output=True, text=True, timeout=20)
        p = subprocess.run([keel, "run", bad, "--base-port", str(base)], capture_output=True, text=True, timeout=20)
        msg = [ln for ln in v.stdout.splitlines() if ": error: " in ln]
        check("invalid folder: exit 1, validate's messages, nothing started",
              p.returncode == 1 and msg and all(m in p.stderr for m in msg) and "nothing started" in p.stderr and
              clean(p.stderr),
              (p.returncode, p.stderr, msg))
        held = socket.socket()
        held.bind(("127.0.0.1", gw))
        held.listen(1)
        p = subprocess.run([keel, "run", cfg, "--base-port", str(base)], capture_output=True, text=True, timeout=20)
        held.close()
        check("gateway port in use: named, with who wanted it; nothing started",
              p.returncode == 1 and "port %d is in use" % gw in p.stderr and "Gateway demo/gw" in p.stderr and
              clean(p.stderr),
              p.stderr)

        # ---- the mesh
        out = open(out_path, "w")
        proc = subprocess.Popen([keel, "run", cfg, "--base-port", str(base), "--state-dir", state], stdout=out,
                                stderr=subprocess.STDOUT)
        ports_json = os.path.join(state, "ports.json")
        wait_for(lambda: os.path.exists(ports_json), time.time() + 30)
        info = json.load(open(ports_json))
        procs = info["processes"]
        check("five processes planned: gateway, 2 sidecars, 2 apps",
              sorted((p["role"], p["name"]) for p in procs) ==
              [("app", "backend"), ("app", "frontend"), ("gateway", "ingressgateway"), ("sidecar", "backend"),
               ("sidecar", "frontend")], procs)
        text = wait_for(lambda: "all 5 processes ready" in open(out_path).read() and open(out_path).read(),
                        time.time() + 60)
        check("every process ready", text and "all 5 processes ready" in text, open(out_path).read()[-2000:])
        fe = next(p for p in procs if p["name"] == "frontend" and p["role"] == "sidecar")
        app = next(p for p in procs if p["name"] == "frontend" and p["role"] == "app")
        appport = app["app_ports"]["http"]["port"]
        check("ports printed", "http %d" % gw in text and "outbound %d" % fe["outbound"] in text and
              "http 9080->%d" % appport in text, text)
        check("app ports come from the base", base <= appport < base + 100, (base, appport))

        st, body = get(gw, "/")
        try:
            tree = json.loads(body)
        except ValueError:
            tree = {}
        calls = tree.get("calls", [{}])
        check("gateway -> frontend -> (its sidecar) -> backend",
              st == 200 and tree.get("name") == "frontend" and calls[0].get("status") == 200 and
              calls[0].get("body", {}).get("name") == "backend", (st, body[:400]))
        # ---- ProxyConfig environmentVariables: in each proxy's environment from exec on, not in the apps'
        keys = ("KEEL_TEST_NS", "KEEL_TEST_SHARED", "KEEL_TEST_FRONT", "ISTIO_META_KEEL_TEST")
        pids = {(role, name): child_with(proc.pid, *words) for role, name, words in (
            ("sidecar", "frontend", (b"sidecar", b"frontend.demo")), ("sidecar", "backend", (b"sidecar", b"backend.demo")),
            ("gateway", "ingressgateway", (b"router",)), ("app", "frontend", (b"127.0.0.1:%d" % appport,)))}
        envs = {k: {n: v for n, v in (environ(pid) or {}).items() if n in keys} if pid else None
                for k, pid in pids.items()}
        check("frontend's sidecar: the workload ProxyConfig over the namespace one, key by key (/proc/PID/environ)",
              envs[("sidecar", "frontend")] == {"KEEL_TEST_NS": "ns-wide", "KEEL_TEST_SHARED": "workload",
                                                "KEEL_TEST_FRONT": "yes", "ISTIO_META_KEEL_TEST": "front"}, envs)
        check("backend's sidecar: only the namespace-wide ProxyConfig",
              envs[("sidecar", "backend")] == {"KEEL_TEST_NS": "ns-wide", "KEEL_TEST_SHARED": "namespace"}, envs)
        check("the gateway (namespace demo): the namespace-wide ProxyConfig",
              envs[("gateway", "ingressgateway")] == {"KEEL_TEST_NS": "ns-wide", "KEEL_TEST_SHARED": "namespace"}, envs)
        check("the frontend app does not get its proxy's variables", envs[("app", "frontend")] == {}, envs)
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/config_dump" % fe["admin"], timeout=5) as r:
                node = json.load(r).get("node")
        except (OSError, ValueError) as e:
            node = repr(e)
        check("frontend's sidecar: ISTIO_META_KEEL_TEST is node metadata KEEL_TEST",
              isinstance(node, dict) and node.get("metadata", {}).get("KEEL_TEST") == "front", node)

        # a change applies when the proxy restarts (as a pod restart in Istio), not by restarting it
        fpid = pids[("sidecar", "frontend")]
        write_atomic(os.path.join(cfg, "mesh.yaml"), MESH.format(gw=gw, front="changed"))
        said = wait_for(lambda: "frontend sidecar: ProxyConfig environmentVariables changed; they apply when it "
                        "restarts" in open(out_path).read(), time.time() + 20)
        check("a changed environmentVariables is reported by keel run", said, open(out_path).read()[-1500:])

        def pending():
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/config_dump" % fe["admin"], timeout=5) as r:
                    pc = json.load(r)["proxyConfig"]
            except (OSError, ValueError, KeyError):
                return None
            return pc if pc["environmentVariables"].get("KEEL_TEST_FRONT", {}).get("value") == "changed" else None
        pc = wait_for(pending, time.time() + 20)
        check("...the running sidecar keeps its environment and reports restartPending for environmentVariables",
              pc and alive(fpid) and environ(fpid).get("KEEL_TEST_FRONT") == "yes" and
              pc["restartPending"] and pc["restartPendingFor"] == ["environmentVariables"] and
              pc["environmentVariablesApplied"].get("KEEL_TEST_FRONT") == "yes", pc)
        os.kill(fpid, signal.SIGKILL)
        npid = wait_for(lambda: (lambda k: k if k and k != fpid else None)(
            child_with(proc.pid, b"sidecar", b"frontend.demo")), time.time() + 30)
        check("...and the restarted sidecar starts with the new value",
              npid and (environ(npid) or {}).get("KEEL_TEST_FRONT") == "changed", (fpid, npid))
        check("...and is ready again (gateway -> frontend -> backend)",
              wait_for(lambda: get(gw, "/")[0] == 200 and b"backend" in get(gw, "/")[1], time.time() + 30))

        check("the user's files keep their ports; the effective config has the assigned ones",
              "http: 9080" in open(os.path.join(cfg, "mesh.yaml")).read() and
              '"http": %d' % appport in open(os.path.join(state, "config", "keel-run-workloads.yaml")).read())

        # ---- reload: a VirtualService change takes effect
        check("before the change: /moved -> 418", get(gw, "/moved")[0] == 418)
        write_atomic(os.path.join(cfg, "vs.yaml"), VS.format(moved=410))
        check("VirtualService change applied by the gateway",
              wait_for(lambda: get(gw, "/moved")[0] == 410, time.time() + 20), get(gw, "/moved"))

        # ---- an invalid file: refused with validate's message, the last good config keeps serving
        write_atomic(os.path.join(cfg, "broken.yaml"), BROKEN)
        v = subprocess.run([keel, "validate", os.path.join(cfg, "broken.yaml")], capture_output=True, text=True)
        first = [ln for ln in v.stdout.splitlines() if ": error: " in ln][0]
        # validate was given the file itself; keel run names it the same way (folder/broken.yaml)
        seen = wait_for(lambda: first in open(out_path).read(), time.time() + 20)
        check("invalid file refused with keel validate's message", seen, (first, open(out_path).read()[-1500:]))
        check("...and the last good config keeps serving", "keeps serving" in open(out_path).read() and
              get(gw, "/moved")[0] == 410 and get(gw, "/")[0] == 200)
        os.unlink(os.path.join(cfg, "broken.yaml"))

        # ---- a killed app is restarted
        kids = children(proc.pid)
        apid = None
        for k in kids:
            try:
                cmd = open("/proc/%d/cmdline" % k, "rb").read().split(b"\0")
            except OSError:
                continue
            if b"sample-app" in cmd and (b"127.0.0.1:%d" % appport) in cmd:
                apid = k
        check("frontend app found among keel run's children", apid is not None, kids)
        if apid:
            os.kill(apid, signal.SIGKILL)
            restarted = wait_for(lambda: "frontend app killed by signal 9" in open(out_path).read() and
                                 get(gw, "/")[0] == 200, time.time() + 30)
            check("killed app reported and restarted (gateway answers again)", restarted,
                  open(out_path).read()[-1500:])

        # ---- SIGTERM: everything stops, nothing left
        kids = children(proc.pid)
        grandkids = [g for k in kids for g in children(k)]
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            rc = None
        check("SIGTERM: keel run exits 0", rc == 0, rc)
        left = [k for k in kids + grandkids if alive(k)]
        check("SIGTERM: no child process left behind", not left and len(kids) == 5, (left, kids))
        check("SIGTERM: effective config removed", not os.path.exists(os.path.join(state, "config")))
        proc = None
        k8s_pair(keel, tmp)
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        check_sanitizers(out_path)  # keel run's own output (ASan/LSan reports of the supervisor)
        logs = os.path.join(state, "logs")
        if os.path.isdir(logs):
            for f in sorted(os.listdir(logs)):
                check_sanitizers(os.path.join(logs, f))
        tails = [("keel run", out_path, 60)]
        if os.path.isdir(logs):
            tails += [(f, os.path.join(logs, f), 15) for f in sorted(os.listdir(logs))]
        cleanup(tmp, tails)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
