#!/usr/bin/env python3
"""proxyconfig_test.py - ProxyConfig concurrency and environmentVariables in `keel proxy`.

Config: MeshConfig defaultConfig (concurrency 4, proxyMetadata A, B), a root-namespace ProxyConfig (concurrency 3,
env B), a namespace ProxyConfig in `default` (concurrency 2, env E) and a workload one selecting app=productpage
(concurrency 1, env D and ISTIO_META_DNS_CAPTURE). Checks, with the proxies' /server_info, /config_dump, logs and
thread counts:

- productpage's sidecar runs 1 worker (workload level), reviews' 2 (namespace level), a gateway in istio-system 3
  (root level); the effective environment variables merge key by key (A from MeshConfig, B from the root
  ProxyConfig, D from the workload's);
- --concurrency wins over ProxyConfig;
- the proxy sets the variables in its own environment at start (one log line naming them, names only), and its
  ISTIO_META_* variables are the node metadata on /config_dump with the prefix removed (DNS_CAPTURE);
- a changed ProxyConfig is reported (restartPending, restartPendingFor, a log line) but the worker count and the
  environment stay until a restart, as with Envoy and Istio's pod environment; a restart picks them up;
- `keel validate` refuses variable names a container cannot have ('=', empty), with file:line:col and the path.

Usage: tests/integration/proxyconfig_test.py --keel build/debug/keel
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (check, cleanup, free_port, keel_arg, start_proxy, stop_proxy, summary,  # noqa: E402
                     wait_ready, write_atomic)

CONFIG = """\
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |
    defaultConfig:
      concurrency: 4
      proxyMetadata: {{A: mesh, B: mesh}}
---
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {{name: mesh-wide, namespace: istio-system}}
spec:
  concurrency: 3
  environmentVariables: {{B: root}}
---
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {{name: foo-proxyconfig, namespace: default}}
spec:
  concurrency: 2
  environmentVariables: {{E: {e}}}
---
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {{name: productpage, namespace: default}}
spec:
  selector: {{matchLabels: {{app: productpage}}}}
  concurrency: {wl}
  environmentVariables:
    D: {d}
    ISTIO_META_DNS_CAPTURE: "true"
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: productpage, namespace: default}}
spec: {{address: 127.0.0.1, labels: {{app: productpage}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: reviews, namespace: default}}
spec: {{address: 127.0.0.1, labels: {{app: reviews}}}}
"""


BAD_NAMES = """\
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: bad-names, namespace: default}
spec:
  environmentVariables:
    GOOD: "1"
    "A=B": x
    "": y
"""


def get_json(admin, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (admin, path), timeout=5) as r:
        return json.load(r)


def threads(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return None


def main():
    keel = keel_arg()
    tmp = tempfile.mkdtemp(prefix="keel-proxyconfig-test-")
    cfgdir = os.path.join(tmp, "cfg")
    os.makedirs(cfgdir)
    cfg = os.path.join(cfgdir, "mesh.yaml")
    write_atomic(cfg, CONFIG.format(wl=1, d="workload", e="ns"))
    procs, logs = {}, {}

    def start(name, mode, *args):
        admin = free_port()
        logs[name] = open(os.path.join(tmp, "%s.log" % name), "w")
        extra = []
        if mode == "sidecar":
            extra = ["--outbound", "127.0.0.1:%d" % free_port(), "--inbound", "127.0.0.1:%d" % free_port()]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ISTIO_META_")}  # node metadata: ours only
        procs[name] = (start_proxy(keel, mode, cfgdir, admin, logs[name], *(list(args) + extra), env=env), admin)
        return admin

    try:
        pp = start("productpage", "sidecar", "--workload", "productpage.default")
        rv = start("reviews", "sidecar", "--workload", "reviews.default")
        gw = start("gateway", "router", "--labels", "istio=ingressgateway")
        forced = start("forced", "sidecar", "--workload", "productpage.default", "--concurrency", "2")
        for name, (proc, admin) in procs.items():
            check("%s ready" % name, wait_ready(keel, admin) == 0)

        info = get_json(pp, "/server_info")
        check("productpage: 1 worker from the workload ProxyConfig",
              (info.get("concurrency"), info.get("concurrency_from")) ==
              (1, "ProxyConfig default/productpage (workload)"), info)
        info = get_json(rv, "/server_info")
        check("reviews: 2 workers from the namespace ProxyConfig",
              (info.get("concurrency"), info.get("concurrency_from")) ==
              (2, "ProxyConfig default/foo-proxyconfig (namespace)"), info)
        info = get_json(gw, "/server_info")
        check("gateway in istio-system: 3 workers from the root ProxyConfig",
              (info.get("concurrency"), info.get("concurrency_from")) ==
              (3, "ProxyConfig istio-system/mesh-wide (root namespace)"), info)
        info = get_json(forced, "/server_info")
        check("--concurrency wins over ProxyConfig", (info.get("concurrency"), info.get("concurrency_from")) ==
              (2, "--concurrency"), info)
        t1, t2 = threads(procs["productpage"][0].pid), threads(procs["forced"][0].pid)
        check("the worker count is real: one more thread with 2 workers than with 1", t2 - t1 == 1, (t1, t2))

        pc = get_json(pp, "/config_dump")["proxyConfig"]
        env = {k: v["value"] for k, v in pc["environmentVariables"].items()}
        check("environmentVariables merged key by key (MeshConfig < root < workload)",
              env == {"A": "mesh", "B": "root", "D": "workload", "E": "ns", "ISTIO_META_DNS_CAPTURE": "true"}, pc)
        check("dump: concurrency 1, applied at start, sources listed",
              (pc["concurrency"], pc["appliedAt"], pc["restartPending"], pc["restartPendingFor"], len(pc["sources"])) ==
              (1, "start", False, [], 4), pc)
        check("dump: the variables this proxy set at start are the merged ones", pc["environmentVariablesApplied"] == env,
              pc)
        with open(os.path.join(tmp, "productpage.log")) as f:
            text = f.read()
        lines = [ln for ln in text.splitlines() if "set from ProxyConfig" in ln]
        check("one log line names the variables set (names only)",
              len(lines) == 1 and lines[0].endswith("5 variables set from ProxyConfig: A, B, D, E, ISTIO_META_DNS_CAPTURE")
              and "workload" not in lines[0], lines)
        node = get_json(pp, "/config_dump")["node"]
        check("node metadata: ISTIO_META_DNS_CAPTURE without its prefix (the environment set from ProxyConfig)",
              node == {"metadata": {"DNS_CAPTURE": "true"}}, node)
        node = get_json(rv, "/config_dump")["node"]
        check("node metadata of reviews (no ISTIO_META_* in its ProxyConfigs): empty", node == {"metadata": {}}, node)

        # a change is reported, not applied live
        write_atomic(cfg, CONFIG.format(wl=2, d="workload2", e="ns2"))
        deadline = time.time() + 8
        while time.time() < deadline:
            pc = get_json(pp, "/config_dump")["proxyConfig"]
            rpc = get_json(rv, "/config_dump")["proxyConfig"]
            if pc["concurrency"] == 2 and rpc["environmentVariables"]["E"]["value"] == "ns2":
                break
            time.sleep(0.1)
        check("after a change: the dump shows concurrency 2, restartPending, still 1 worker",
              (pc["concurrency"], pc["restartPending"], pc["workers"]) == (2, True, 1), pc)
        check("...restartPending for concurrency and environmentVariables; the environment set at start stays",
              pc["restartPendingFor"] == ["concurrency", "environmentVariables"] and
              pc["environmentVariables"]["D"]["value"] == "workload2" and
              pc["environmentVariablesApplied"]["D"] == "workload", pc)
        check("reviews: only environmentVariables changed: restartPending for them alone",
              rpc["restartPending"] and rpc["restartPendingFor"] == ["environmentVariables"] and
              rpc["environmentVariablesApplied"]["E"] == "ns", rpc)
        with open(os.path.join(tmp, "productpage.log")) as f:
            text = f.read()
        check("the proxy logs that a restart is needed", "until it is restarted" in text, text[-600:])
        with open(os.path.join(tmp, "reviews.log")) as f:
            text = f.read()
        check("reviews logs the changed variable and that it applies at restart",
              "ProxyConfig environmentVariables changed (E); this proxy keeps the environment it started with until "
              "it is restarted" in text, text[-600:])
        stop_proxy(procs["productpage"][0])
        logs["productpage"].close()
        pp = start("productpage2", "sidecar", "--workload", "productpage.default")
        check("restarted ready", wait_ready(keel, pp) == 0)
        info = get_json(pp, "/server_info")
        check("after a restart: 2 workers", info.get("concurrency") == 2, info)
        pc = get_json(pp, "/config_dump")["proxyConfig"]
        check("after a restart: the new environment, nothing pending",
              pc["environmentVariablesApplied"].get("D") == "workload2" and not pc["restartPending"], pc)

        # names a container cannot have: refused by validation, with file:line:col and the field path
        bad = os.path.join(tmp, "bad.yaml")
        write_atomic(bad, BAD_NAMES)
        v = subprocess.run([keel, "validate", bad], capture_output=True, text=True)
        errs = [ln for ln in v.stdout.splitlines() + v.stderr.splitlines() if ": error: " in ln]
        check("keel validate: names with '=' or empty refused (exit 1, two errors, file:line:col, path)",
              v.returncode == 1 and len(errs) == 2 and
              errs[0].startswith("%s:7:6: error: ProxyConfig default/bad-names: spec.environmentVariables[A=B]: "
                                 "environment variable \"A=B\": '=' in the name" % bad) and
              errs[1].startswith("%s:8:6: error: ProxyConfig default/bad-names: spec.environmentVariables[]: "
                                 "environment variable \"\": an empty name" % bad), v.stdout + v.stderr)
    finally:
        for name, (proc, _) in procs.items():
            stop_proxy(proc)
        for log in logs.values():
            log.close()
        cleanup(tmp, [(n, os.path.join(tmp, "%s.log" % n), 20) for n in procs])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
