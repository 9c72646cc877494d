#!/usr/bin/env python3
"""Conformance runner: checks `keel validate` against Istio's own validation test data.

Data: <repo>/../shared/conformance (see its README.md).  What it runs:

  1. whole-resource cases   validate/<Kind>.yaml (15 kinds) + validate/istioctl-validate.yaml
                            (the target: agreement >= --min-pct, every disagreement listed
                            in known-disagreements.yaml)
  2. fragment cases         validate/fragments/*.yaml + validate/scalars.yaml: a sub-message
                            validator's input embedded in an otherwise valid resource by the
                            wrappers in FRAGMENT_WRAPPERS below (a separate score)
  3. samples                every *.yaml under samples/: no false error on an Istio-kind
                            document, except the files listed in known-disagreements.yaml

Only the Python 3 standard library and PyYAML are used.  `run.py --self-test` checks
the runner itself against fake_keel.py.  See README.md next to this file.
"""

import argparse
import concurrent.futures
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.stderr.write("run.py: PyYAML is required (apt-get install python3-yaml)\n")
    sys.exit(2)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "conformance"
DEFAULT_KEEL = REPO / "build" / "debug" / "keel"
DEFAULT_KNOWN = HERE / "known-disagreements.yaml"
FAKE_KEEL = HERE / "fake_keel.py"

# =====================================================================================
# Fragment wrappers
#
# Each validator named in validate/fragments/*.yaml and validate/scalars.yaml (the
# `validator:` field, spelled exactly as in the data) maps to
#     (where the fragment is put, builder(fragment_or_input, args) -> resource dict).
# The builder returns a minimal resource that is valid apart from the fragment, so the
# resource's verdict is the validator's verdict.  metadata.name is filled in by the
# runner (a unique DNS label per document).  `None` is a nil message in the Go test:
# the field is then left out (never written as `{}`, which would be a set message).
#
# UNMAPPED_VALIDATORS / UNMAPPED_CASES: no faithful whole-resource form exists; those
# cases are reported with the reason and not counted.  A validator that appears in the
# data but in neither table is reported as unmapped ("no wrapper defined").
# =====================================================================================


class NoWrapper(Exception):
    """Raised by a builder when a particular input has no faithful wrapper."""


def _route():
    return [{"destination": {"host": "foo.baz"}}]


def _res(api_version, kind, spec, namespace=None):
    md = {}
    if namespace:
        md["namespace"] = namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": md, "spec": spec}


def _vs(http=None, tcp=None, hosts=("foo.bar",), gateways=None, namespace=None, export_to=None):
    spec = {}
    if hosts:
        spec["hosts"] = list(hosts)
    if gateways:
        spec["gateways"] = list(gateways)
    if http is not None:
        spec["http"] = http
    if tcp is not None:
        spec["tcp"] = tcp
    if export_to is not None:
        spec["exportTo"] = export_to
    return _res("networking.istio.io/v1", "VirtualService", spec, namespace)


def _http(key=None, frag=None, with_route=True):
    """One HTTP route (to foo.baz unless with_route=False) carrying `key: frag` if frag is set."""
    r = {"route": _route()} if with_route else {}
    if key is not None and frag is not None:
        r[key] = frag
    return r


def _dr(traffic_policy=None, namespace=None, selector=None, export_to=None):
    spec = {"host": "foo.bar"}
    if traffic_policy is not None:
        spec["trafficPolicy"] = traffic_policy
    if selector is not None:
        spec["workloadSelector"] = selector
    if export_to is not None:
        spec["exportTo"] = export_to
    return _res("networking.istio.io/v1", "DestinationRule", spec, namespace)


def _se(ports=None, namespace=None, export_to=None):
    spec = {"hosts": ["example.com"],
            "ports": ports if ports is not None else [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "resolution": "DNS"}
    if export_to is not None:
        spec["exportTo"] = export_to
    return _res("networking.istio.io/v1", "ServiceEntry", spec, namespace)


def _gw(servers):
    return _res("networking.istio.io/v1", "Gateway", {"servers": servers})


def _need(frag, what):
    if frag is None:
        raise NoWrapper("nil %s: the Go validator is called with nil, which has no resource form" % what)
    return frag


def _w_tls(f, a):
    if f is None:  # no TLS settings at all: a plain HTTP server
        return _gw([{"hosts": ["foo.bar.com"], "port": {"number": 80, "name": "http", "protocol": "HTTP"}}])
    return _gw([{"hosts": ["foo.bar.com"], "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                 "tls": f}])


def _w_server_port(f, a):
    server = {"hosts": ["foo.bar.com"], "port": _need(f, "port")}
    bind = (a or {}).get("bind")
    if bind:
        server["bind"] = bind
    return _gw([server])


def _w_export_to(f, a):
    a = a or {}
    ns = a.get("namespace") or None
    if a.get("isServiceEntry"):
        return _se(namespace=ns, export_to=f)
    if a.get("isDestinationRuleWithSelector"):
        return _dr(namespace=ns, selector={"matchLabels": {"app": "foo"}}, export_to=f)
    return _vs(http=[_http()], namespace=ns, export_to=f)


FRAGMENT_WRAPPERS = {
    # ---- validate/fragments/*.yaml --------------------------------------------------
    "ValidateHTTPRetry(retries)": (
        "VirtualService hosts [foo.bar], http[0] = {route: foo.baz, retries: FRAG}",
        lambda f, a: _vs(http=[_http("retries", f)])),
    "validateCORSPolicy(corsPolicy)": (
        "VirtualService http[0] = {route: foo.baz, corsPolicy: FRAG}",
        lambda f, a: _vs(http=[_http("corsPolicy", f)])),
    "validateConnectionPool(connectionPool)": (
        "DestinationRule host foo.bar, trafficPolicy.connectionPool = FRAG",
        lambda f, a: _dr(None if f is None else {"connectionPool": f})),
    "validateDestination(destination)": (
        "VirtualService http[0].route[0].destination = FRAG (nil: destination foo.baz)",
        lambda f, a: _vs(http=[_http() if f is None else {"route": [{"destination": f}]}])),
    "validateHTTPDirectResponse(directResponse)": (
        "VirtualService http[0] = {directResponse: FRAG} (no route; nil: plain route)",
        lambda f, a: _vs(http=[_http() if f is None else {"directResponse": f}])),
    "validateHTTPFaultInjectionAbort(abort)": (
        "VirtualService http[0] = {route: foo.baz, fault: {abort: FRAG}} (nil: no fault)",
        lambda f, a: _vs(http=[_http("fault", None if f is None else {"abort": f})])),
    "validateHTTPFaultInjectionDelay(delay)": (
        "VirtualService http[0] = {route: foo.baz, fault: {delay: FRAG}} (nil: no fault)",
        lambda f, a: _vs(http=[_http("fault", None if f is None else {"delay": f})])),
    "validateHTTPRedirect(redirect, redirectPort=nil)": (
        "VirtualService http[0] = {redirect: FRAG} (no route; nil: plain route)",
        lambda f, a: _vs(http=[_http() if f is None else {"redirect": f}])),
    "validateHTTPRewrite(rewrite)": (
        "VirtualService http[0] = {route: foo.baz, rewrite: FRAG}",
        lambda f, a: _vs(http=[_http("rewrite", f)])),
    "validateHTTPRoute(route, delegate=false, gatewaySemantics=false)": (
        "VirtualService hosts [foo.bar], http[0] = FRAG",
        lambda f, a: _vs(http=[_need(f, "HTTPRoute")])),
    "validateHTTPRoute(route, delegate=true, gatewaySemantics=false)": (
        "delegate VirtualService (no hosts, no gateways), http[0] = FRAG",
        lambda f, a: _vs(http=[_need(f, "HTTPRoute")], hosts=None)),
    "validateLoadBalancer(loadBalancer, outlier=nil)": (
        "DestinationRule trafficPolicy.loadBalancer = FRAG (no outlierDetection)",
        lambda f, a: _dr(None if f is None else {"loadBalancer": f})),
    "validateOutlierDetection(outlierDetection)": (
        "DestinationRule trafficPolicy.outlierDetection = FRAG",
        lambda f, a: _dr(None if f is None else {"outlierDetection": f})),
    "validateRouteDestinations(routes, gatewaySemantics=false)": (
        "VirtualService hosts [foo.bar], tcp[0].route = FRAG (RouteDestination is the TCP/TLS type)",
        lambda f, a: _vs(tcp=[{"route": _need(f, "route list")}])),
    "validateServer(server, gatewaySemantics=false)": (
        "Gateway servers[0] = FRAG",
        lambda f, a: _gw([_need(f, "server")])),
    "validateServerPort(port, bind)": (
        "Gateway servers[0] = {hosts: [foo.bar.com], port: FRAG, bind: args.bind (if set)}",
        _w_server_port),
    "validateTLSOptions(tls)": (
        "Gateway servers[0] = {hosts: [foo.bar.com], port: 443/https/HTTPS, tls: FRAG}",
        _w_tls),
    "validateTelemetryFilter(filter)": (
        "Telemetry accessLogging[0].filter = FRAG",
        lambda f, a: _res("telemetry.istio.io/v1", "Telemetry",
                          {"accessLogging": [{} if f is None else {"filter": f}]})),
    "validateTrafficPolicy(namespace=\"\", policy)": (
        "DestinationRule host foo.bar, trafficPolicy = FRAG (namespace: keel's default)",
        lambda f, a: _dr(f)),
    "validateURIRegexRewrite(uriRegexRewrite)": (
        "VirtualService http[0] = {route: foo.baz, rewrite: {uriRegexRewrite: FRAG}} (nil: no rewrite)",
        lambda f, a: _vs(http=[_http("rewrite", None if f is None else {"uriRegexRewrite": f})])),
    # ---- validate/scalars.yaml ------------------------------------------------------
    "ValidateStrictHTTPHeaderName(name)": (
        "RequestAuthentication jwtRules[0].outputClaimToHeaders[0] = {header: INPUT, claim: sub}",
        lambda f, a: _res("security.istio.io/v1", "RequestAuthentication", {"jwtRules": [{
            "issuer": "https://example.com",
            "outputClaimToHeaders": [{"header": f, "claim": "sub"}]}]})),
    "ValidateHTTPHeaderNameOrJwtClaimRoute(name)": (
        "VirtualService bound to gateway istio-system/test-gateway (so claim-form names are "
        "allowed), http[0].match[0].headers key INPUT",
        lambda f, a: _vs(gateways=["istio-system/test-gateway"], http=[
            {"match": [{"headers": {f: {"exact": "v"}}}], "route": _route()}])),
    "ValidateHTTPHeaderValue(value)": (
        "VirtualService http[0].headers.response.set {x-test: INPUT}",
        lambda f, a: _vs(http=[{"route": _route(), "headers": {"response": {"set": {"x-test": f}}}}])),
    "validateHTTPStatus(code)": (
        "VirtualService http[0].directResponse.status = INPUT",
        lambda f, a: _vs(http=[{"directResponse": {"status": f}}])),
    "ValidatePortName(name)": (
        "ServiceEntry hosts [example.com], DNS, ports[0] = {number: 80, name: INPUT, protocol: HTTP}",
        lambda f, a: _se(ports=[{"number": 80, "name": f, "protocol": "HTTP"}])),
    "validateExportTo(namespace, exportTo, isServiceEntry, isDestinationRuleWithSelector)": (
        "metadata.namespace = args.namespace; exportTo = INPUT (nil: unset) on a VirtualService, "
        "or a ServiceEntry (isServiceEntry), or a DestinationRule with workloadSelector "
        "(isDestinationRuleWithSelector)",
        _w_export_to),
}

UNMAPPED_VALIDATORS = {
    # validator: reason   (none at present: every validator in the data has a wrapper)
}

UNMAPPED_CASES = {
    "fragment/TestValidateTlsOptions/7": (
        "3 tlsCertificates: the Go validator only warns, but the CRD schema caps "
        "tls.tlsCertificates at maxItems 2, so no whole resource can carry this fragment validly"),
    "fragment/TestValidateTlsOptions/26": (
        "3 tlsCertificates: the Go validator only warns, but the CRD schema caps "
        "tls.tlsCertificates at maxItems 2, so no whole resource can carry this fragment validly"),
    "fragment/TestValidateServer/18": (
        "port without number (unix bind): the Go validator accepts it, but the Gateway CRD "
        "requires servers[].port.number, so no whole resource can carry it validly"),
}

ISTIO_GROUP_SUFFIX = "istio.io"

# =====================================================================================
# Small helpers
# =====================================================================================


class _Dumper(yaml.SafeDumper):
    def check_simple_key(self):
        # write an empty-string key as `'': v` rather than the explicit `? ''` form
        if isinstance(self.event, yaml.ScalarEvent) and self.event.value == "":
            return True
        return super().check_simple_key()


def _str_repr(dumper, data):
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_repr)


def dump_yaml(obj):
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False, width=1 << 30)


def api_group(api_version):
    if not isinstance(api_version, str) or "/" not in api_version:
        return ""
    return api_version.split("/", 1)[0]


def is_istio_api(api_version):
    return api_group(api_version).endswith(ISTIO_GROUP_SUFFIX)


def pct(a, b):
    return (100.0 * a / b) if b else 100.0


def one_line(s, limit=200):
    s = " ".join(str(s).split())
    return s if len(s) <= limit else s[:limit - 3] + "..."


def safe_name(s):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)[:120]


# =====================================================================================
# Loading the data
# =====================================================================================


def load_yaml_file(path):
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _case_base(c, group, category, source_file):
    return {
        "id": c["id"],
        "name": c.get("name", ""),
        "group": group,
        "category": category,
        "source_file": source_file,
        "layer": c.get("layer"),
        "expected": "valid" if c.get("valid") else "invalid",
        "error_contains": c.get("error_contains"),
        "warning": c.get("warning"),
        "warning_contains": c.get("warning_contains"),
        "note": c.get("note"),
        "namespace": None,
        "docs": [],
        "wrapper": None,
        "unmapped": None,
    }


def load_whole_cases(data):
    """validate/<Kind>.yaml + validate/istioctl-validate.yaml -> list of cases."""
    vdir = data / "validate"
    cases = []
    for path in sorted(vdir.glob("*.yaml")):
        if path.name in ("scalars.yaml", "istioctl-validate.yaml"):
            continue
        d = load_yaml_file(path)
        kind = d.get("kind") or path.stem
        for c in d.get("cases") or []:
            case = _case_base(c, "whole", kind, "validate/" + path.name)
            case["docs"] = [dump_yaml(c["resource"])]
            cases.append(case)
    ipath = vdir / "istioctl-validate.yaml"
    if ipath.exists():
        d = load_yaml_file(ipath)
        for c in d.get("cases") or []:
            case = _case_base(c, "whole", "istioctl", "validate/istioctl-validate.yaml")
            text = c["input_yaml"]
            if not text.endswith("\n"):
                text += "\n"
            try:
                n = len(list(yaml.safe_load_all(text)))
            except yaml.YAMLError:
                n = -1
            # a single-document input can share a batch file; anything else runs on its own
            case["docs"] = [text] if n == 1 else None
            case["raw"] = text
            case["namespace"] = "istio-system"
            cases.append(case)
    return cases


def load_fragment_cases(data):
    vdir = data / "validate"
    cases = []
    files = sorted((vdir / "fragments").glob("*.yaml"))
    if (vdir / "scalars.yaml").exists():
        files.append(vdir / "scalars.yaml")
    for path in files:
        d = load_yaml_file(path)
        rel = "validate/" + ("fragments/" if path.parent.name == "fragments" else "") + path.name
        for c in d.get("cases") or []:
            validator = c.get("validator") or "?"
            case = _case_base(c, "fragment", validator, rel)
            case["test"] = d.get("test") or (c.get("source") or {}).get("test")
            case["is_scalar"] = "input" in c and "fragment" not in c
            value = c.get("input") if case["is_scalar"] else c.get("fragment")
            args = c.get("args")
            if case["id"] in UNMAPPED_CASES:
                case["unmapped"] = UNMAPPED_CASES[case["id"]]
            elif validator in UNMAPPED_VALIDATORS:
                case["unmapped"] = UNMAPPED_VALIDATORS[validator]
            elif validator not in FRAGMENT_WRAPPERS:
                case["unmapped"] = "no wrapper defined for this validator"
            else:
                where, builder = FRAGMENT_WRAPPERS[validator]
                case["wrapper"] = where
                try:
                    res = builder(copy.deepcopy(value), args)
                    res["metadata"]["name"] = "case-%d" % len(cases)
                    case["resource"] = res
                    case["docs"] = [dump_yaml(res)]
                except NoWrapper as e:
                    case["unmapped"] = str(e)
            cases.append(case)
    return cases


def load_known(path):
    """-> (cases{id: reason}, samples[list of entries], problems[list of str])."""
    problems = []
    known_cases, known_samples = {}, []
    if not path.exists():
        problems.append("%s does not exist: no known disagreements" % path)
        return known_cases, known_samples, problems
    try:
        d = load_yaml_file(path) or {}
    except (OSError, yaml.YAMLError) as e:
        problems.append("cannot read %s: %s" % (path, one_line(e)))
        return known_cases, known_samples, problems
    for e in d.get("cases") or []:
        if not isinstance(e, dict) or not e.get("id"):
            problems.append("known-disagreements: case entry without id ignored: %r" % (e,))
            continue
        reason = e.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            problems.append("known-disagreements: case %s has no reason: ignored" % e["id"])
            continue
        known_cases[str(e["id"])] = " ".join(reason.split())
    for e in d.get("samples") or []:
        if not isinstance(e, dict) or not e.get("file"):
            problems.append("known-disagreements: sample entry without file ignored: %r" % (e,))
            continue
        reason = e.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            problems.append("known-disagreements: sample %s has no reason: ignored" % e["file"])
            continue
        known_samples.append({
            "file": str(e["file"])[2:] if str(e["file"]).startswith("./") else str(e["file"]),
            "resources": [str(x) for x in (e.get("resources") or [])],
            "docs": [int(x) for x in (e.get("docs") or [])],
            "reason": " ".join(reason.split()),
            "used": False,
        })
    return known_cases, known_samples, problems


# =====================================================================================
# Running keel
# =====================================================================================


class Runner:
    def __init__(self, keel, timeout, tmpdir):
        self.keel = str(keel)
        self.timeout = timeout
        self.tmpdir = Path(tmpdir)
        self.lock = threading.Lock()
        self.problems = []        # runner problems (fallbacks, crashes, ...)
        self.contract = []        # deviations from the JSON contract
        self._contract_seen = set()
        self.invocations = 0
        self._n = 0

    def problem(self, msg):
        with self.lock:
            self.problems.append(msg)

    def contract_issue(self, key, msg):
        with self.lock:
            if key in self._contract_seen:
                return
            self._contract_seen.add(key)
            self.contract.append(msg)

    def write_temp(self, stem, text):
        with self.lock:
            self._n += 1
            n = self._n
        p = self.tmpdir / ("%04d-%s.yaml" % (n, safe_name(stem)))
        p.write_text(text, encoding="utf-8")
        return p

    def invoke(self, files, namespace=None):
        """Run keel once.  -> dict(ok, out, rc, problem, stderr, cmd)."""
        cmd = [self.keel, "validate", "-o", "json"]
        if namespace:
            cmd += ["--namespace", namespace]
        cmd += [str(f) for f in files]
        res = {"ok": False, "out": None, "rc": None, "problem": None, "stderr": "", "cmd": cmd,
               "fatal": False}
        with self.lock:
            self.invocations += 1
        try:
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            res["problem"] = "timed out after %ss" % self.timeout
            return res
        except OSError as e:
            res["problem"] = "cannot execute %s: %s" % (self.keel, e)
            res["fatal"] = True
            return res
        stdout = p.stdout.decode("utf-8", "replace")
        res["stderr"] = p.stderr.decode("utf-8", "replace")
        res["rc"] = p.returncode
        if p.returncode not in (0, 1):
            if p.returncode < 0:
                try:
                    sig = signal.Signals(-p.returncode).name
                except ValueError:
                    sig = str(-p.returncode)
                what = "killed by signal %s" % sig
            elif p.returncode == 2:
                what = "exit status 2 (usage error)"
            else:
                what = "exit status %d" % p.returncode
            tail = one_line(res["stderr"].strip().splitlines()[-1]) if res["stderr"].strip() else ""
            res["problem"] = what + (": " + tail if tail else "")
            return res
        try:
            out = json.loads(stdout)
        except ValueError as e:
            res["problem"] = "stdout is not one JSON object (%s): %s" % (e, one_line(stdout, 120))
            return res
        if not isinstance(out, dict) or not isinstance(out.get("resources"), list) \
                or not isinstance(out.get("diagnostics", []), list):
            res["problem"] = "JSON lacks a 'resources' list / 'diagnostics' list"
            return res
        out.setdefault("diagnostics", [])
        if out.get("valid") is not (p.returncode == 0):
            self.contract_issue("valid-vs-rc", "exit status %d but \"valid\": %s (e.g. %s)" % (
                p.returncode, json.dumps(out.get("valid")), " ".join(cmd[4:])[:200]))
        summ = out.get("summary")
        if not isinstance(summ, dict):
            self.contract_issue("no-summary", "no \"summary\" object in the output")
        else:
            rs, ds = out["resources"], out["diagnostics"]
            want = {
                "resources": len(rs),
                "invalid": sum(1 for r in rs if isinstance(r, dict) and r.get("status") == "invalid"),
                "skipped": sum(1 for r in rs if isinstance(r, dict) and r.get("status") == "skipped"),
                "errors": sum(1 for d in ds if isinstance(d, dict) and d.get("severity") == "error"),
                "warnings": sum(1 for d in ds if isinstance(d, dict) and d.get("severity") == "warning"),
            }
            for k, v in want.items():
                if summ.get(k) != v:
                    self.contract_issue("summary-" + k, "summary.%s is %r but the lists give %d" % (
                        k, summ.get(k), v))
        res["ok"] = True
        res["out"] = out
        return res

    def per_doc(self, out):
        """Group keel's output by document index.

        -> (docs{index: {"resources": [...], "errors": [...], "warnings": [...]}},
            stray[list of diagnostics without a usable doc])"""
        docs, stray = {}, []
        for r in out.get("resources") or []:
            if not isinstance(r, dict) or not isinstance(r.get("doc"), int):
                self.contract_issue("res-doc", "resource entry without an integer \"doc\": %s" % one_line(
                    json.dumps(r), 160))
                continue
            if r.get("status") not in ("valid", "invalid", "skipped"):
                self.contract_issue("res-status", "resource entry with status %r" % (r.get("status"),))
            docs.setdefault(r["doc"], {"resources": [], "errors": [], "warnings": []})["resources"].append(r)
        for d in out.get("diagnostics") or []:
            if not isinstance(d, dict):
                continue
            sev = d.get("severity")
            if sev not in ("error", "warning"):
                self.contract_issue("diag-sev", "diagnostic with severity %r" % (sev,))
            if not isinstance(d.get("doc"), int) or d["doc"] not in docs:
                stray.append(d)
                continue
            docs[d["doc"]]["errors" if sev == "error" else "warnings"].append(d)
        for i, e in docs.items():
            statuses = [r.get("status") for r in e["resources"]]
            if "invalid" in statuses and not e["errors"]:
                self.contract_issue("invalid-no-error",
                                    "a resource has status \"invalid\" but its document has no error "
                                    "diagnostic (e.g. %s doc %d)" % (e["resources"][0].get("file"), i))
            if e["errors"] and "invalid" not in statuses:
                self.contract_issue("error-not-invalid",
                                    "a document has an error diagnostic but no resource with status "
                                    "\"invalid\" (e.g. %s doc %d)" % (e["resources"][0].get("file"), i))
        return docs, stray


def doc_verdict(entry):
    statuses = [r.get("status") for r in entry["resources"]]
    if entry["errors"] or "invalid" in statuses:
        return "invalid"
    if statuses and all(s == "skipped" for s in statuses):
        return "skipped"
    return "valid"


def merge_entries(entries):
    m = {"resources": [], "errors": [], "warnings": []}
    for e in entries:
        for k in m:
            m[k].extend(e[k])
    return m


def slim(diags):
    keep = ("severity", "line", "column", "kind", "namespace", "name", "path", "message")
    return [{k: d.get(k) for k in keep if k in d} for d in diags]


def set_result(case, entry, verdict=None, problem=None):
    if verdict is None:
        verdict = doc_verdict(entry)
    case["keel"] = verdict
    case["keel_problem"] = problem
    case["errors"] = slim(entry["errors"]) if entry else []
    case["warnings"] = slim(entry["warnings"]) if entry else []
    case["keel_resources"] = [{k: r.get(k) for k in ("apiVersion", "kind", "namespace", "name", "status")}
                              for r in (entry["resources"] if entry else [])]
    eff = "valid" if verdict in ("valid", "skipped") else verdict
    case["agree"] = eff == case["expected"]
    ec = case.get("error_contains")
    if ec:
        # compare with what a user sees: "path: message" (keel's text output)
        case["error_contains_found"] = any(
            ec.lower() in ("%s: %s" % (d.get("path") or "", d.get("message", ""))).lower()
            for d in case["errors"])
    else:
        case["error_contains_found"] = None
    w = case.get("warning")
    if w is True:
        wc = case.get("warning_contains")
        produced = bool(case["warnings"])
        if wc:
            produced = any(wc.lower() in str(d.get("message", "")).lower() for d in case["warnings"])
        case["warning_ok"] = produced
    elif w is False:
        case["warning_ok"] = not case["warnings"]
    else:
        case["warning_ok"] = None


def run_single(runner, case):
    text = case["raw"] if case.get("docs") is None else "---\n".join(case["docs"])
    path = runner.write_temp("case-" + case["id"], text)
    r = runner.invoke([path], case.get("namespace"))
    if not r["ok"]:
        runner.problem("%s: keel failed (%s)" % (case["id"], r["problem"]))
        set_result(case, None, verdict="error", problem=r["problem"])
        return r
    docs, stray = runner.per_doc(r["out"])
    if not docs:
        runner.problem("%s: keel reported no document" % case["id"])
        set_result(case, None, verdict="error", problem="no document in keel's output")
        return r
    entry = merge_entries([docs[k] for k in sorted(docs)])
    entry["errors"].extend(d for d in stray if d.get("severity") == "error")
    entry["warnings"].extend(d for d in stray if d.get("severity") == "warning")
    set_result(case, entry)
    return r


def run_group(runner, label, cases, no_batch=False):
    """Run the cases of one data file: one keel process for all, else one per case."""
    runnable = [c for c in cases if not c.get("unmapped")]
    if not runnable:
        return
    batch = [] if no_batch else [c for c in runnable if c.get("docs") is not None and len(c["docs"]) == 1]
    singles = [c for c in runnable if c not in batch]
    # cases that need another --namespace go in their own batch
    by_ns = {}
    for c in batch:
        by_ns.setdefault(c.get("namespace"), []).append(c)
    for ns, group in by_ns.items():
        if len(group) == 1:
            singles.extend(group)
            continue
        text = "---\n".join(c["docs"][0] for c in group)
        path = runner.write_temp(label, text)
        r = runner.invoke([path], ns)
        if r.get("fatal"):
            raise KeelNotRunnable(r["problem"])
        why = None
        if not r["ok"]:
            why = "keel failed on the %d-document file (%s)" % (len(group), r["problem"])
        else:
            docs, stray = runner.per_doc(r["out"])
            want = set(range(len(group)))
            if set(docs) != want:
                missing = sorted(want - set(docs))
                extra = sorted(set(docs) - want)
                why = "keel reported documents %s for a %d-document file%s%s" % (
                    _ranges(sorted(docs)), len(group),
                    ("; missing %s" % _ranges(missing)) if missing else "",
                    ("; unexpected %s" % _ranges(extra)) if extra else "")
            elif any(d.get("severity") == "error" for d in stray):
                why = "keel reported error diagnostics without a document index"
        if why:
            runner.problem("%s: %s; fell back to one process per case" % (label, why))
            singles.extend(group)
            continue
        for i, c in enumerate(group):
            set_result(c, docs[i])
    for c in singles:
        r = run_single(runner, c)
        if r.get("fatal"):
            raise KeelNotRunnable(r["problem"])


def _ranges(nums):
    if not nums:
        return "[]"
    out, start, prev = [], nums[0], nums[0]
    for n in nums[1:] + [None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(str(start) if start == prev else "%d-%d" % (start, prev))
        if n is not None:
            start = prev = n
    return "[" + ",".join(out) + "]"


class KeelNotRunnable(Exception):
    pass


# =====================================================================================
# Samples
# =====================================================================================

_TEMPLATE_LINE = re.compile(r"^\s*\{\{-?\s*(if|else|end|range|with|define|include|template|/\*|-)?")


def classify_sample(path):
    """-> (docs or None, skip_reason or None)."""
    if path.suffix not in (".yaml", ".yml"):
        return None, "not a YAML file"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except OSError as e:
        return None, "cannot read: %s" % e
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        if "{{" in text:
            return None, "templated (Go/Helm template directives; not YAML as it stands)"
        return None, "not valid YAML: %s" % one_line(e, 120)
    if any(_TEMPLATE_LINE.match(line) for line in text.splitlines()):
        return None, "templated (lines starting with {{ ... }})"
    objs = [d for d in docs if isinstance(d, dict) and d.get("apiVersion") and d.get("kind")]
    if not objs:
        return None, "no Kubernetes object (no document has apiVersion and kind; e.g. Helm values, Swagger)"
    return docs, None


def run_sample(runner, data, path, known_samples):
    rel = path.relative_to(data).as_posix()
    s = {"file": rel, "status": None, "skip_reason": None, "docs": [], "failures": [],
         "known_failures": [], "notes": [], "known_reason": None}
    pydocs, skip = classify_sample(path)
    if skip:
        s["status"] = "skipped"
        s["skip_reason"] = skip
        return s
    entries = [e for e in known_samples if e["file"] == rel]
    r = runner.invoke([path.resolve()])
    if r.get("fatal"):
        raise KeelNotRunnable(r["problem"])
    if not r["ok"]:
        s["failures"].append({"doc": None, "kind": "", "name": "", "message": "keel failed: %s" % r["problem"]})
        runner.problem("%s: keel failed (%s)" % (rel, r["problem"]))
    else:
        docs, stray = runner.per_doc(r["out"])
        nonempty = sum(1 for d in pydocs if d is not None)
        if len(docs) not in (len(pydocs), nonempty):
            s["notes"].append("keel reported %d documents; PyYAML finds %d (%d non-empty)" % (
                len(docs), len(pydocs), nonempty))
        for d in stray:
            if d.get("severity") == "error":
                s["failures"].append({"doc": None, "kind": d.get("kind") or "", "name": d.get("name") or "",
                                      "message": "error without a document index: %s" % one_line(
                                          d.get("message", ""))})
        for i in sorted(docs):
            e = docs[i]
            res0 = next((x for x in e["resources"] if x.get("kind")), e["resources"][0] if e["resources"] else {})
            api, kind, name = res0.get("apiVersion") or "", res0.get("kind") or "", res0.get("name") or ""
            pyd = pydocs[i] if i < len(pydocs) and isinstance(pydocs[i], dict) else None
            if not kind and pyd:
                api, kind = str(pyd.get("apiVersion") or ""), str(pyd.get("kind") or "")
                name = str((pyd.get("metadata") or {}).get("name") or "") if isinstance(
                    pyd.get("metadata"), dict) else ""
            verdict = doc_verdict(e)
            msg = one_line(e["errors"][0].get("message", "")) if e["errors"] else ""
            s["docs"].append({"doc": i, "apiVersion": api, "kind": kind, "name": name, "keel": verdict,
                              "errors": slim(e["errors"]), "warnings": slim(e["warnings"])})
            if verdict == "invalid":
                istio = is_istio_api(api)
                unreadable = not res0.get("kind")
                if istio or unreadable:
                    s["failures"].append({"doc": i, "kind": kind, "name": name, "message": msg or
                                          ("keel could not read the document" if unreadable else "")})
                else:
                    s["notes"].append("doc %d %s/%s (not an Istio kind) has an error: %s" % (i, kind, name, msg))
            elif verdict == "skipped" and is_istio_api(api):
                s["notes"].append("doc %d %s/%s is an Istio kind but keel skipped it" % (i, kind, name))
    # apply the known exceptions
    remaining = []
    for f in s["failures"]:
        match = None
        for e in entries:
            if e["resources"] and "%s/%s" % (f["kind"], f["name"]) not in e["resources"]:
                continue
            if e["docs"] and f["doc"] not in e["docs"]:
                continue
            match = e
            break
        if match:
            match["used"] = True
            s["known_failures"].append(f)
            s["known_reason"] = match["reason"]
        else:
            remaining.append(f)
    s["failures"] = remaining
    if not s["failures"] and not s["known_failures"]:
        s["status"] = "clean"
    elif not s["failures"]:
        s["status"] = "known"
    else:
        s["status"] = "fail"
    if entries and not s["known_reason"]:
        s["known_reason"] = entries[0]["reason"]
    return s


# =====================================================================================
# Selection (--only)
# =====================================================================================


def make_selector(tokens, whole_kinds):
    """--only tokens -> {"kinds", "sections", "prefixes"} (None = everything)."""
    if not tokens:
        return None
    lowered = {k.lower(): k for k in whole_kinds}
    kinds, prefixes, sections = set(), [], set()
    for tok in tokens:
        for t in [x.strip() for x in tok.split(",") if x.strip()]:
            tl = t.lower()
            if tl in lowered:
                kinds.add(lowered[tl])
            elif tl in ("fragments", "fragment"):
                sections.add("fragments")
            elif tl in ("scalars", "scalar"):
                sections.add("scalars")
            elif tl in ("samples", "sample"):
                sections.add("samples")
            elif "/" in t:
                prefixes.append(t)
            else:
                sys.stderr.write("run.py: --only %s: not a kind (%s), 'fragments', 'scalars', 'samples' "
                                 "or an id/path prefix containing '/'\n" % (t, ", ".join(sorted(whole_kinds))))
                sys.exit(2)
    return {"kinds": kinds, "prefixes": prefixes, "sections": sections}


def selected(sel, section, kind, ident):
    """Is this case / sample file selected?  ident = case id or sample path (samples/...)."""
    if sel is None:
        return True
    if any(ident.startswith(p) for p in sel["prefixes"]):
        return True
    if section == "whole":
        return kind in sel["kinds"]
    if section == "fragments":
        if ident.startswith("scalar/"):
            return bool({"fragments", "scalars"} & sel["sections"])
        return "fragments" in sel["sections"]
    if section == "samples":
        return "samples" in sel["sections"]
    return False


# =====================================================================================
# Report
# =====================================================================================


def first_error(case):
    if case.get("keel") == "error":
        return "keel failed: %s" % (case.get("keel_problem") or "")
    if case.get("errors"):
        e = case["errors"][0]
        path = e.get("path")
        return one_line(("%s: " % path if path else "") + str(e.get("message", "")))
    return "-"


def print_case_details(out, case):
    flag = "agree" if case.get("agree") else "DISAGREE"
    out.append("  %s  expected=%s  keel=%s  %s" % (case["id"], case["expected"], case.get("keel"), flag))
    for d in case.get("errors", []) + case.get("warnings", []):
        loc = ""
        if d.get("line") is not None:
            loc = " (line %s%s)" % (d.get("line"), (":%s" % d["column"]) if d.get("column") is not None else "")
        path = ("%s: " % d["path"]) if d.get("path") else ""
        out.append("      %-7s %s%s%s" % (d.get("severity"), path, one_line(d.get("message", ""), 300), loc))
    if case.get("keel_problem"):
        out.append("      runner: %s" % case["keel_problem"])


def build_report(res, args):
    out = []
    w = out.append
    w("Keel conformance against Istio's validation test data")
    w("  data: %s" % res["data"])
    w("  keel: %s   (%d keel invocations)" % (res["keel"], res["invocations"]))
    w("")
    whole = res["whole"]
    if whole:
        w("Whole-resource cases (validate/<Kind>.yaml, istioctl-validate.yaml)")
        w("  %-24s %9s %7s  %-13s %-11s %s" % ("kind", "agree", "pct", "error_contains", "warning", "skipped"))
        cats = []
        for c in whole:
            if c["category"] not in cats:
                cats.append(c["category"])
        for cat in cats:
            cs = [c for c in whole if c["category"] == cat]
            ag = sum(1 for c in cs if c.get("agree"))
            ecn = sum(1 for c in cs if c.get("error_contains_found") is not None)
            ecy = sum(1 for c in cs if c.get("error_contains_found"))
            wn = sum(1 for c in cs if c.get("warning_ok") is not None)
            wy = sum(1 for c in cs if c.get("warning_ok"))
            sk = sum(1 for c in cs if c.get("keel") == "skipped")
            w("  %-24s %4d/%-4d %6.1f%%  %-13s %-11s %s" % (
                cat, ag, len(cs), pct(ag, len(cs)), "%d/%d" % (ecy, ecn), "%d/%d" % (wy, wn),
                sk if sk else ""))
        s = res["summary"]["whole"]
        w("  %-24s %4d/%-4d %6.1f%%   (target >= %.1f%%)" % ("TOTAL", s["agree"], s["total"], s["pct"],
                                                            args.min_pct))
        w("  error_contains = pinned substring found in some keel error / cases that pin one;")
        w("  warning = warning presence as Istio asserts / cases that assert it (both informational)")
        w("")
    frags = res["fragments"]
    if frags:
        w("Fragment and scalar cases (sub-message validators wrapped in a resource; separate score)")
        vals = []
        for c in frags:
            if c["category"] not in vals:
                vals.append(c["category"])
        for v in vals:
            cs = [c for c in frags if c["category"] == v]
            run = [c for c in cs if not c.get("unmapped")]
            ag = sum(1 for c in run if c.get("agree"))
            um = len(cs) - len(run)
            w("  %-72s %3d/%-3d%s" % (one_line(v, 72), ag, len(run), ("  (+%d unmapped)" % um) if um else ""))
            wrap = next((c["wrapper"] for c in cs if c.get("wrapper")), None)
            w("      -> %s" % (wrap or "unmapped: " + (cs[0].get("unmapped") or "")))
        s = res["summary"]["fragments"]
        w("  %-72s %3d/%-3d (%.1f%%), %d unmapped (not counted)" % ("TOTAL", s["agree"], s["total"],
                                                                   s["pct"], s["unmapped"]))
        um = [c for c in frags if c.get("unmapped")]
        if um:
            w("  unmapped cases:")
            for c in um:
                w("    %s  %s" % (c["id"], c["unmapped"]))
        w("")
    samples = res["samples"]
    if samples is not None:
        s = res["summary"]["samples"]
        w("Samples (samples/**/*.yaml): %d/%d clean, %d with listed (known) errors, %d failing, %d skipped" % (
            s["clean"], s["total"], s["known"], s["fail"], s["skipped"]))
        for sm in samples:
            if sm["status"] == "skipped":
                w("  skipped  %s: %s" % (sm["file"], sm["skip_reason"]))
        for sm in samples:
            if sm["status"] == "known":
                w("  known    %s: %s" % (sm["file"], sm["known_reason"]))
                for f in sm["known_failures"]:
                    w("             doc %s %s/%s: %s" % (f["doc"], f["kind"], f["name"], f["message"]))
        for sm in samples:
            if sm["status"] == "fail":
                for f in sm["failures"]:
                    w("  FAIL     %s doc %s %s/%s: %s" % (sm["file"], f["doc"], f["kind"], f["name"],
                                                       f["message"]))
        notes = [(sm["file"], n) for sm in samples for n in sm["notes"]]
        if notes:
            w("  notes (informational):")
            for f, n in notes:
                w("    %s: %s" % (f, n))
        w("")
    dis = [c for c in whole if not c.get("agree")]
    if whole:
        w("Whole-resource disagreements: %d (%d listed in known-disagreements.yaml)" % (
            len(dis), sum(1 for c in dis if c.get("known"))))
        for c in dis:
            w("  %s  %s  expected=%s  keel=%s  %s%s" % (
                c["id"], one_line(c["name"], 80), c["expected"], c.get("keel"), first_error(c),
                ("   [known: %s]" % one_line(c["known"], 100)) if c.get("known") else ""))
        w("")
    fdis = [c for c in frags if not c.get("unmapped") and not c.get("agree")]
    if frags:
        w("Fragment disagreements: %d" % len(fdis))
        for c in fdis:
            w("  %s  %s  expected=%s  keel=%s  %s%s" % (
                c["id"], one_line(c["name"], 80), c["expected"], c.get("keel"), first_error(c),
                ("   [known: %s]" % one_line(c["known"], 100)) if c.get("known") else ""))
        w("")
    if args.verbose:
        w("Message/warning checks not met (informational)")
        for c in whole + frags:
            if c.get("error_contains_found") is False:
                w("  %s  error_contains %r not in keel's errors" % (c["id"], c["error_contains"]))
            if c.get("warning_ok") is False:
                w("  %s  warning expected=%s%s, keel warnings=%d" % (
                    c["id"], c["warning"], (" (%r)" % c["warning_contains"]) if c.get("warning_contains") else "",
                    len(c.get("warnings", []))))
        w("")
        w("Per-case keel messages")
        for c in whole + frags:
            if c.get("unmapped"):
                continue
            print_case_details(out, c)
        w("")
    if res["stale_known"]:
        w("Known-disagreement entries that no longer disagree (consider removing):")
        for x in res["stale_known"]:
            w("  %s" % x)
        w("")
    probs = res["known_problems"] + res["runner_problems"]
    if probs:
        w("Runner problems: %d" % len(probs))
        for p in probs:
            w("  %s" % p)
        w("")
    if res["contract_issues"]:
        w("Deviations from the keel JSON contract (first of each kind):")
        for p in res["contract_issues"]:
            w("  %s" % p)
        w("")
    v = res["verdict"]
    w("RESULT: %s" % ("PASS" if v["exit"] == 0 else "FAIL"))
    for r in v["reasons"]:
        w("  - %s" % r)
    w("%d passed, %d failed, %d skipped" % (v["passed"], v["failed"], v["skipped"]))
    return "\n".join(out)


# =====================================================================================
# Main run
# =====================================================================================


def conformance(args):
    data = Path(args.data).resolve()
    keel = Path(args.keel)
    if not (data / "validate").is_dir():
        # Istio's data lives beside the repository (../shared), not in it. Without it there is nothing to
        # compare with: say so loudly and exit 77, which ctest reports as "Skipped" (never as passed).
        sys.stderr.write("run.py: %s has no validate/ directory (use --data): conformance NOT RUN\n" % data)
        print("SKIPPED: no conformance data at %s" % data)
        return 77
    if not keel.exists():
        sys.stderr.write("run.py: keel binary %s does not exist (build it, or use --keel)\n" % keel)
        print("0 passed, 0 failed")
        return 2
    if not os.access(str(keel), os.X_OK):
        sys.stderr.write("run.py: %s is not executable\n" % keel)
        print("0 passed, 0 failed")
        return 2
    keel = keel.resolve()
    known_path = Path(args.known)
    known_cases, known_samples, known_problems = load_known(known_path)

    whole_all = load_whole_cases(data)
    frag_all = load_fragment_cases(data)
    whole_kinds = sorted({c["category"] for c in whole_all})
    sel = make_selector(args.only, whole_kinds)
    whole = [c for c in whole_all if selected(sel, "whole", c["category"], c["id"])]
    frags = [c for c in frag_all if selected(sel, "fragments", c["category"], c["id"])]
    sample_files = []
    sdir = data / "samples"
    if sdir.is_dir():
        for p in sorted(sdir.rglob("*")):
            if p.is_file() and selected(sel, "samples", None, p.relative_to(data).as_posix()):
                sample_files.append(p)
    run_samples = sel is None or "samples" in sel["sections"] or any(
        p.startswith("samples/") for p in sel["prefixes"])

    tmp = tempfile.mkdtemp(prefix="keel-conformance-")
    runner = Runner(keel, args.timeout, tmp)
    try:
        # preflight: can keel be run at all?
        probe = runner.write_temp("probe", dump_yaml(dict(_vs(http=[_http()]), metadata={"name": "probe"})))
        r = runner.invoke([probe])
        if not r["ok"]:
            sys.stderr.write("run.py: keel could not be run: %s\n  command: %s\n" % (
                r["problem"], " ".join(r["cmd"])))
            if r["stderr"].strip():
                sys.stderr.write("  stderr: %s\n" % one_line(r["stderr"], 400))
            print("0 passed, 0 failed")
            return 2

        groups = []
        for c in whole:
            key = ("whole", c["source_file"])
            if not groups or groups[-1][0] != key:
                groups.append((key, []))
            groups[-1][1].append(c)
        for c in frags:
            key = ("frag", c["source_file"])
            if not groups or groups[-1][0] != key:
                groups.append((key, []))
            groups[-1][1].append(c)
        samples = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futs = [pool.submit(run_group, runner, Path(key[1]).stem if key[0] == "whole" else
                                "fragments-" + Path(key[1]).stem, cs, args.no_batch) for key, cs in groups]
            sfuts = [pool.submit(run_sample, runner, data, p, known_samples)
                     for p in (sample_files if run_samples else [])]
            for f in futs:
                f.result()
            for f in sfuts:
                samples.append(f.result())
    except KeelNotRunnable as e:
        sys.stderr.write("run.py: keel could not be run: %s\n" % e)
        print("0 passed, 0 failed")
        return 2
    finally:
        if args.keep_temp:
            sys.stderr.write("run.py: temporary files kept in %s\n" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    # known disagreements
    stale = []
    for c in whole + frags:
        reason = known_cases.get(c["id"])
        c["known"] = None
        if reason and not c.get("unmapped"):
            if c.get("agree"):
                stale.append("%s (agrees now)" % c["id"])
            else:
                c["known"] = reason
    all_ids = {c["id"] for c in whole_all + frag_all}
    for k in known_cases:
        if k not in all_ids:
            stale.append("%s (no such case in the data)" % k)
    if run_samples and sel is None:
        for e in known_samples:
            if not e["used"]:
                stale.append("%s (sample has no such error)" % e["file"])

    # scores
    w_agree = sum(1 for c in whole if c.get("agree"))
    w_pct = pct(w_agree, len(whole))
    frun = [c for c in frags if not c.get("unmapped")]
    f_agree = sum(1 for c in frun if c.get("agree"))
    s_run = [s for s in samples if s["status"] != "skipped"]
    s_counts = {k: sum(1 for s in samples if s["status"] == k) for k in ("clean", "known", "fail", "skipped")}
    unlisted = [c for c in whole if not c.get("agree") and not c.get("known")]

    reasons = []
    exit_code = 0
    if whole:
        if w_pct + 1e-9 < args.min_pct:
            exit_code = 1
            reasons.append("whole-resource agreement %.1f%% is below --min-pct %.1f%%" % (w_pct, args.min_pct))
        else:
            reasons.append("whole-resource agreement %.1f%% >= %.1f%%" % (w_pct, args.min_pct))
        if unlisted:
            exit_code = 1
            reasons.append("%d whole-resource disagreement(s) not listed in %s" % (len(unlisted), known_path.name))
        else:
            reasons.append("every whole-resource disagreement is listed")
    if run_samples:
        if s_counts["fail"]:
            exit_code = 1
            reasons.append("%d sample file(s) with unlisted errors" % s_counts["fail"])
        else:
            reasons.append("no sample outside the known list has an error")
    if frags:
        reasons.append("fragments (informational): %d/%d agree" % (f_agree, len(frun)))

    # listed (known, explained) disagreements are reported as skipped, not failed
    passed = w_agree + s_counts["clean"] + s_counts["known"]
    failed = len(unlisted) + s_counts["fail"]
    skipped = (len(whole) - w_agree) - len(unlisted)
    res = {
        "data": str(data),
        "keel": str(keel),
        "known_file": str(known_path),
        "min_pct": args.min_pct,
        "only": args.only,
        "invocations": runner.invocations,
        "whole": whole,
        "fragments": frags,
        "samples": samples if run_samples else None,
        "summary": {
            "whole": {"agree": w_agree, "total": len(whole), "pct": w_pct,
                      "unlisted_disagreements": [c["id"] for c in unlisted]},
            "fragments": {"agree": f_agree, "total": len(frun), "pct": pct(f_agree, len(frun)),
                          "unmapped": len(frags) - len(frun)},
            "samples": dict(s_counts, total=len(s_run)),
        },
        "stale_known": stale,
        "known_problems": known_problems,
        "runner_problems": runner.problems,
        "contract_issues": runner.contract,
        "verdict": {"exit": exit_code, "reasons": reasons, "passed": passed, "failed": failed,
                    "skipped": skipped},
    }
    for c in whole + frags:
        c.pop("resource", None)
    report = build_report(res, args)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(res, fh, indent=1, default=str)
            fh.write("\n")
    print(report)
    return exit_code


# =====================================================================================
# Self-test (runs the runner against fake_keel.py)
# =====================================================================================


def _crd_schemas(data):
    """{(group, kind): {version: openAPIV3Schema}} from crds/crd-all.gen.yaml."""
    out = {}
    path = data / "crds" / "crd-all.gen.yaml"
    if not path.exists():
        return out
    for d in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if not isinstance(d, dict) or d.get("kind") != "CustomResourceDefinition":
            continue
        spec = d["spec"]
        for v in spec.get("versions") or []:
            schema = (v.get("schema") or {}).get("openAPIV3Schema")
            if schema:
                out.setdefault((spec["group"], spec["names"]["kind"]), {})[v["name"]] = schema
    return out


def structural_errors(obj, schema, path="", errs=None):
    """Minimal structural check (unknown fields, required, min/maxItems) for wrapper review."""
    if errs is None:
        errs = []
    if not isinstance(schema, dict):
        return errs
    if isinstance(obj, dict):
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields")
        for k in schema.get("required") or []:
            if k not in obj:
                errs.append("%s: required field %s missing" % (path or ".", k))
        for k, v in obj.items():
            sub = "%s.%s" % (path, k) if path else str(k)
            if props is not None and k in props:
                structural_errors(v, props[k], sub, errs)
            elif isinstance(addl, dict):
                structural_errors(v, addl, sub, errs)
            elif props is not None and not preserve and not addl:
                errs.append("%s: unknown field" % sub)
    elif isinstance(obj, list):
        if "maxItems" in schema and len(obj) > schema["maxItems"]:
            errs.append("%s: %d items > maxItems %d" % (path, len(obj), schema["maxItems"]))
        if "minItems" in schema and len(obj) < schema["minItems"]:
            errs.append("%s: %d items < minItems %d" % (path, len(obj), schema["minItems"]))
        for i, x in enumerate(obj):
            structural_errors(x, schema.get("items"), "%s[%d]" % (path, i), errs)
    return errs


def check_wrappers(data):
    """Every mapped, expected-valid fragment case must give a structurally valid resource."""
    problems = []
    schemas = _crd_schemas(data)
    if not schemas:
        return ["no crds/crd-all.gen.yaml under %s: wrapper check skipped" % data], 0
    n = 0
    for c in load_fragment_cases(data):
        if c.get("unmapped") or c["expected"] != "valid":
            continue
        res = c["resource"]
        group, version = res["apiVersion"].split("/")
        schema = schemas.get((group, res["kind"]), {}).get(version)
        if schema is None:
            problems.append("%s: no CRD schema for %s %s" % (c["id"], res["apiVersion"], res["kind"]))
            continue
        n += 1
        errs = structural_errors(res.get("spec"), (schema.get("properties") or {}).get("spec"), "spec")
        if errs:
            problems.append("%s (%s): %s" % (c["id"], c["category"], "; ".join(errs)))
    return problems, n


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _mini_data(root):
    """A tiny data dir whose outcome under fake_keel.py is known in advance."""
    def vs(name, extra=None):
        r = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": name},
             "spec": {"hosts": ["foo.bar"], "http": [{"route": [{"destination": {"host": "foo.baz"}}]}]}}
        if extra:
            r["spec"].update(extra)
        return r

    def case(cid, valid, resource, **kw):
        c = {"id": cid, "name": cid.lower(), "layer": "webhook", "valid": valid,
             "error_contains": None, "warning": None}
        c.update(kw)
        c["resource"] = resource
        return c

    _write(root / "validate" / "VirtualService.yaml", dump_yaml({"kind": "VirtualService", "cases": [
        case("VirtualService/T/1", True, vs("good"), warning=False),
        case("VirtualService/T/2", False, vs("invalid-route"), error_contains="CONTAINS THE STRING"),
        case("VirtualService/T/3", False, vs("looks-fine")),
        case("VirtualService/T/4", True, vs("invalid-but-valid")),
        case("VirtualService/T/5", True, vs("fake-warning"), warning=True, warning_contains="fake-warning"),
    ]}))
    gw = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "gw"},
          "spec": {"servers": [{"hosts": ["a.b"], "port": {"number": 80, "name": "http", "protocol": "HTTP"}}]}}
    gw2 = copy.deepcopy(gw)
    gw2["metadata"]["name"] = "gw-crash-me"
    _write(root / "validate" / "Gateway.yaml", dump_yaml({"kind": "Gateway", "cases": [
        case("Gateway/T/1", True, gw), case("Gateway/T/2", True, gw2)]}))
    _write(root / "validate" / "istioctl-validate.yaml", dump_yaml({"cases": [
        {"id": "istioctl/T/1", "name": "service", "valid": True, "warning": False,
         "input_yaml": "apiVersion: v1\nkind: Service\nmetadata:\n  name: hello\nspec:\n  ports:\n  - name: http\n"
                       "    port: 9080\n"},
        {"id": "istioctl/T/2", "name": "bad vs", "valid": False, "warning": False,
         "input_yaml": "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n"
                       "  name: invalid-vs\nspec:\n  http:\n"},
        {"id": "istioctl/T/3", "name": "two docs", "valid": True, "warning": None,
         "input_yaml": "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: a\n"
                       "spec: {hosts: [a]}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: b\n"},
    ]}))
    _write(root / "validate" / "fragments" / "TestValidateHTTPRetry.yaml", dump_yaml({
        "test": "TestValidateHTTPRetry", "cases": [
            {"id": "fragment/TestValidateHTTPRetry/1", "name": "ok", "valid": True, "error_contains": None,
             "warning": None, "validator": "ValidateHTTPRetry(retries)", "fragment": {"attempts": 3}},
            {"id": "fragment/TestValidateHTTPRetry/2", "name": "bad", "valid": False, "error_contains": None,
             "warning": None, "validator": "ValidateHTTPRetry(retries)",
             "fragment": {"attempts": 3, "retryOn": "invalid-policy"}},
            {"id": "fragment/TestValidateHTTPRetry/3", "name": "odd", "valid": True, "error_contains": None,
             "warning": None, "validator": "someUnknownValidator(x)", "fragment": {}},
        ]}))
    _write(root / "validate" / "scalars.yaml", dump_yaml({"cases": [
        {"id": "scalar/TestValidatePortName/0", "name": "bad", "valid": False, "warning": None,
         "validator": "ValidatePortName(name)", "input": "invalid"},
        {"id": "scalar/TestValidatePortName/1", "name": "ok", "valid": True, "warning": None,
         "validator": "ValidatePortName(name)", "input": "http"},
    ]}))
    _write(root / "samples" / "ok" / "good.yaml",
           dump_yaml(vs("sample-good")) + "---\n" + "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n---\n")
    _write(root / "samples" / "bad.yaml", dump_yaml(vs("invalid-sample")))
    _write(root / "samples" / "known.yaml", dump_yaml(vs("known-invalid")) + "---\n" + dump_yaml(vs("fine")))
    _write(root / "samples" / "values.yaml", "global:\n  hub: docker.io\n")
    _write(root / "samples" / "templated.yaml", "apiVersion: v1\nkind: ConfigMap\ndata: {{ .Values.x }}\n  a: [\n")
    _write(root / "samples" / "README.txt", "not yaml\n")
    _write(root / "known.yaml", dump_yaml({
        "cases": [{"id": "VirtualService/T/4", "reason": "deliberate"},
                  {"id": "VirtualService/T/1", "reason": "stale entry"},
                  {"id": "VirtualService/T/2"}],
        "samples": [{"file": "samples/known.yaml", "resources": ["VirtualService/known-invalid"],
                     "reason": "expected"}]}))
    _write(root / "known-all.yaml", dump_yaml({
        "cases": [{"id": "VirtualService/T/3", "reason": "x"}, {"id": "VirtualService/T/4", "reason": "y"}]}))


def self_test(args):
    results = []

    def check(name, ok, detail=""):
        results.append(bool(ok))
        print("  %s  %s%s" % ("PASS" if ok else "FAIL", name, ("" if ok else "   -- " + detail)))

    fake = str(FAKE_KEEL)
    if not os.access(fake, os.X_OK):
        print("self-test: %s is missing or not executable" % fake)
        print("0 passed, 1 failed")
        return 1
    me = [sys.executable, str(Path(__file__).resolve())]

    def run(extra, env=None):
        e = dict(os.environ)
        e.pop("FAKE_KEEL_DROP_LAST", None)
        e.pop("FAKE_KEEL_CRASH_ON", None)
        e.update(env or {})
        p = subprocess.run(me + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e,
                           universal_newlines=True, timeout=600)
        return p

    def last_line(p):
        lines = p.stdout.rstrip("\n").splitlines()
        return lines[-1] if lines else ""

    tmp = Path(tempfile.mkdtemp(prefix="keel-conformance-selftest-"))
    try:
        print("fake_keel.py contract:")
        p = subprocess.run([fake, "validate", "-o", "json", "--namespace", "ns1", "-"],
                           input="apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: x}\n"
                                 "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: invalid}\n",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
        try:
            o = json.loads(p.stdout)
        except ValueError:
            o = {}
        check("stdin '-' with two documents -> exit 1, one JSON object", p.returncode == 1 and o.get("valid") is False,
              "rc=%s out=%s" % (p.returncode, p.stdout[:200]))
        check("resources carry doc index, namespace, status",
              [(r.get("doc"), r.get("namespace"), r.get("status")) for r in o.get("resources", [])] ==
              [(0, "ns1", "valid"), (1, "ns1", "invalid")], json.dumps(o.get("resources"))[:300])
        check("summary matches the lists", o.get("summary") == {"resources": 2, "invalid": 1, "skipped": 0,
                                                                 "errors": 1, "warnings": 0}, str(o.get("summary")))
        p = subprocess.run([fake, "validate", "--bogus"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        check("usage error -> exit 2", p.returncode == 2, "rc=%s" % p.returncode)

        print("runner on a synthetic data dir:")
        data = tmp / "data"
        _mini_data(data)
        base = ["--keel", fake, "--data", str(data), "--known", str(data / "known.yaml"), "-j", "2"]
        j1 = tmp / "r1.json"
        p = run(base + ["--min-pct", "50", "--json", str(j1)])
        r1 = json.loads(j1.read_text()) if j1.exists() else {}
        check("exit 1 (an unlisted disagreement, an unlisted sample error)", p.returncode == 1,
              "rc=%s stderr=%s" % (p.returncode, p.stderr[-500:]))
        check("final line is exactly 'N passed, M failed, K skipped' (10 passed, 2 failed, 1 skipped)",
              last_line(p) == "10 passed, 2 failed, 1 skipped", repr(last_line(p)))
        byid = {c["id"]: c for c in r1.get("whole", []) + r1.get("fragments", [])}
        check("whole-resource verdicts mapped back by doc index",
              [(i, byid.get(i, {}).get("keel"), byid.get(i, {}).get("agree")) for i in
               ("VirtualService/T/1", "VirtualService/T/2", "VirtualService/T/3", "VirtualService/T/4")] ==
              [("VirtualService/T/1", "valid", True), ("VirtualService/T/2", "invalid", True),
               ("VirtualService/T/3", "valid", False), ("VirtualService/T/4", "invalid", False)],
              str([(k, v.get("keel")) for k, v in byid.items()]))
        check("summary 8/10 whole-resource agree", r1.get("summary", {}).get("whole", {}).get("agree") == 8 and
              r1["summary"]["whole"]["total"] == 10, str(r1.get("summary", {}).get("whole")))
        check("known disagreement marked, unlisted one reported",
              byid.get("VirtualService/T/4", {}).get("known") == "deliberate" and
              r1["summary"]["whole"]["unlisted_disagreements"] == ["VirtualService/T/3"],
              str(r1.get("summary", {}).get("whole")))
        check("error_contains matched case-insensitively",
              byid.get("VirtualService/T/2", {}).get("error_contains_found") is True)
        check("warning expectations recorded",
              byid.get("VirtualService/T/5", {}).get("warning_ok") is True and
              byid.get("VirtualService/T/1", {}).get("warning_ok") is True)
        check("istioctl cases run with --namespace istio-system",
              any(r.get("namespace") == "istio-system" for r in byid.get("istioctl/T/2", {}).get(
                  "keel_resources", [])), str(byid.get("istioctl/T/2", {}).get("keel_resources")))
        check("multi-document istioctl input handled (skipped Service counts as valid)",
              byid.get("istioctl/T/3", {}).get("agree") is True and byid.get("istioctl/T/1", {}).get("keel") ==
              "skipped")
        check("fragment + scalar wrappers run, unknown validator reported unmapped",
              r1.get("summary", {}).get("fragments") == {"agree": 4, "total": 4, "pct": 100.0, "unmapped": 1},
              str(r1.get("summary", {}).get("fragments")))
        sm = {s["file"]: s for s in r1.get("samples") or []}
        check("samples: clean / known / fail / skipped",
              [sm.get(f, {}).get("status") for f in ("samples/ok/good.yaml", "samples/known.yaml",
                                                     "samples/bad.yaml", "samples/values.yaml",
                                                     "samples/templated.yaml", "samples/README.txt")] ==
              ["clean", "known", "fail", "skipped", "skipped", "skipped"],
              str({k: v.get("status") for k, v in sm.items()}))
        check("stale and reason-less known entries reported",
              any("VirtualService/T/1" in x for x in r1.get("stale_known", [])) and
              any("VirtualService/T/2" in x for x in r1.get("known_problems", [])),
              str(r1.get("stale_known")) + str(r1.get("known_problems")))
        check("report lists the disagreement line",
              re.search(r"^  VirtualService/T/3  virtualservice/t/3  expected=invalid  keel=valid  -$",
                        p.stdout, re.M) is not None, p.stdout[-1500:])
        check("no runner problems on a well-behaved keel", not r1.get("runner_problems"),
              str(r1.get("runner_problems")))

        j2 = tmp / "r2.json"
        p = run(base + ["--min-pct", "50", "--json", str(j2)], env={"FAKE_KEEL_DROP_LAST": "1"})
        r2 = json.loads(j2.read_text()) if j2.exists() else {}
        check("count mismatch -> fallback to one process per case, reported",
              any("fell back" in x for x in r2.get("runner_problems", [])), str(r2.get("runner_problems")))
        check("fallback gives the same verdicts",
              [(c["id"], c.get("keel")) for c in r2.get("whole", [])] ==
              [(c["id"], c.get("keel")) for c in r1.get("whole", [])])

        j3 = tmp / "r3.json"
        p = run(base + ["--min-pct", "50", "--json", str(j3)], env={"FAKE_KEEL_CRASH_ON": "crash-me"})
        r3 = json.loads(j3.read_text()) if j3.exists() else {}
        b3 = {c["id"]: c for c in r3.get("whole", [])}
        check("a crash on one case: batch falls back, that case is keel=error, others unaffected",
              b3.get("Gateway/T/2", {}).get("keel") == "error" and b3.get("Gateway/T/1", {}).get("agree") is True
              and p.returncode == 1, "rc=%s %s" % (p.returncode, str(r3.get("runner_problems"))[:300]))

        p = run(["--keel", fake, "--data", str(data), "--known", str(data / "known-all.yaml"),
                 "--only", "VirtualService", "--min-pct", "50"])
        check("--only KIND, all disagreements listed, pct >= min -> exit 0; '3 passed, 0 failed, 2 skipped'",
              p.returncode == 0 and last_line(p) == "3 passed, 0 failed, 2 skipped",
              "rc=%s last=%r" % (p.returncode, last_line(p)))
        p = run(["--keel", fake, "--data", str(data), "--known", str(data / "known-all.yaml"),
                 "--only", "VirtualService"])
        check("agreement below the default --min-pct 97 -> exit 1", p.returncode == 1, "rc=%s" % p.returncode)
        p = run(["--keel", fake, "--data", str(data), "--only", "VirtualService", "--no-batch", "-v",
                 "--min-pct", "0", "--known", str(data / "known-all.yaml")])
        check("--no-batch and -v work (per-case messages shown)",
              p.returncode == 0 and "Per-case keel messages" in p.stdout and
              'document contains the string "invalid"' in p.stdout, p.stdout[-800:])
        p = run(["--keel", str(tmp / "no-such-keel"), "--data", str(data)])
        check("keel missing -> exit 2", p.returncode == 2, "rc=%s" % p.returncode)
        bad = tmp / "bad-keel"
        bad.write_text("#!/bin/sh\necho not json\nexit 0\n")
        bad.chmod(0o755)
        p = run(["--keel", str(bad), "--data", str(data)])
        check("keel that prints no JSON -> exit 2", p.returncode == 2, "rc=%s" % p.returncode)

        real = Path(args.data)
        if (real / "validate").is_dir():
            print("runner on the real data (%s) with fake_keel.py:" % real)
            j4 = tmp / "r4.json"
            p = run(["--keel", fake, "--data", str(real), "--json", str(j4)])
            r4 = json.loads(j4.read_text()) if j4.exists() else {}
            n_whole = 0
            for f in sorted((real / "validate").glob("*.yaml")):
                if f.name != "scalars.yaml":
                    n_whole += len(load_yaml_file(f).get("cases") or [])
            check("runs to the end (exit 0/1) with a final count line",
                  p.returncode in (0, 1) and re.match(r"^\d+ passed, \d+ failed, \d+ skipped$", last_line(p)) is not None,
                  "rc=%s stderr=%s" % (p.returncode, p.stderr[-600:]))
            check("every whole-resource case is run (%d)" % n_whole,
                  r4.get("summary", {}).get("whole", {}).get("total") == n_whole and
                  all(c.get("keel") in ("valid", "invalid", "skipped") for c in r4.get("whole", [])),
                  str(r4.get("summary", {}).get("whole", {}).get("total")))
            um = sorted({c["category"] for c in r4.get("fragments", []) if c.get("unmapped") ==
                         "no wrapper defined for this validator"})
            check("every validator in the data has a wrapper or an explicit unmapped reason", not um, str(um))
            check("no runner problems, no contract deviations with the fake",
                  not r4.get("runner_problems") and not r4.get("contract_issues"),
                  str(r4.get("runner_problems"))[:300] + str(r4.get("contract_issues"))[:300])
            check("every sample file is run or skipped with a reason",
                  all(s["status"] in ("clean", "known", "fail") or s.get("skip_reason")
                      for s in r4.get("samples") or []) and len(r4.get("samples") or []) ==
                  sum(1 for x in (real / "samples").rglob("*") if x.is_file()))
            probs, n = check_wrappers(real)
            check("wrapped expected-valid fragments pass a structural CRD check (%d checked)" % n, not probs,
                  "; ".join(probs)[:2000])
        else:
            print("(no data at %s: real-data checks skipped)" % real)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ok = sum(results)
    print("%d passed, %d failed" % (ok, len(results) - ok))
    return 0 if ok == len(results) else 1


# =====================================================================================


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Check `keel validate` against Istio's validation test data "
                    "(see tests/conformance/README.md).")
    ap.add_argument("--keel", default=str(DEFAULT_KEEL), help="keel binary (default: %(default)s)")
    ap.add_argument("--data", default=str(DEFAULT_DATA),
                    help="conformance data dir (default: <repo>/../shared/conformance = %(default)s)")
    ap.add_argument("--known", default=str(DEFAULT_KNOWN), help="known disagreements file (default: %(default)s)")
    ap.add_argument("--min-pct", type=float, default=97.0,
                    help="required whole-resource agreement in percent (default: %(default)s)")
    ap.add_argument("--only", action="append", metavar="WHAT",
                    help="restrict to a kind (e.g. VirtualService), 'istioctl', 'fragments', 'scalars', "
                         "'samples', or an id/path prefix containing '/'; repeatable or comma-separated")
    ap.add_argument("--json", metavar="OUT", help="write the full results as JSON to OUT")
    ap.add_argument("-v", "--verbose", action="store_true", help="show keel's messages for every case")
    ap.add_argument("-j", "--jobs", type=int, default=min(4, os.cpu_count() or 1),
                    help="keel processes to run at once (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per keel process (default: %(default)s)")
    ap.add_argument("--no-batch", action="store_true",
                    help="one keel process per case instead of one per data file")
    ap.add_argument("--keep-temp", action="store_true", help="keep the generated YAML files")
    ap.add_argument("--self-test", action="store_true", help="test this runner against fake_keel.py")
    args = ap.parse_args(argv)
    if args.self_test:
        return self_test(args)
    return conformance(args)


if __name__ == "__main__":
    sys.exit(main())
