#!/usr/bin/env python3
"""cli_test.py - `keel validate` as a user runs it: files, folders, stdin,
exit codes, text and JSON output.

Usage: tests/integration/cli_test.py --keel build/debug/keel
"""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, keel_arg, summary  # noqa: E402

VALID_VS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 70
    - destination: {host: reviews, subset: v2}
      weight: 30
"""

TYPO_RA = """apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: jwt
spec:
  jwtRules:
  - issuer: foo-issuer.com
    forwardOriginalTolen: true
"""

def run(keel, args, stdin=None):
    return subprocess.run([keel] + args, input=stdin, capture_output=True, text=True)


def main():
    keel = keel_arg()
    with tempfile.TemporaryDirectory() as d:
        good = os.path.join(d, "good.yaml")
        open(good, "w").write(VALID_VS)
        sub = os.path.join(d, "nested", "deeper")
        os.makedirs(sub)
        bad = os.path.join(sub, "bad.yaml")
        open(bad, "w").write(TYPO_RA)
        open(os.path.join(sub, "notes.txt"), "w").write("not yaml: [")
        open(os.path.join(d, ".hidden.yaml"), "w").write("garbage: [")

        p = run(keel, ["validate", good])
        check("valid file exits 0", p.returncode == 0, p.stdout + p.stderr)
        check("valid file prints no diagnostics", p.stdout == "", p.stdout)
        check("summary on stderr", "1 resource checked" in p.stderr, p.stderr)

        p = run(keel, ["validate", bad])
        check("invalid file exits 1", p.returncode == 1, str(p.returncode))
        line = p.stdout.strip().splitlines()[0] if p.stdout.strip() else ""
        m = re.match(r"^(.*bad\.yaml):(\d+):(\d+): error: RequestAuthentication default/jwt: "
                     r"spec\.jwtRules\[0\]\.forwardOriginalTolen: unknown field \"forwardOriginalTolen\": "
                     r"did you mean \"forwardOriginalToken\"\?$", line)
        check("compiler-style line with path and suggestion", m is not None, line)
        check("line:col points at the key", m is not None and m.group(2) == "8" and m.group(3) == "5", line)

        p = run(keel, ["validate", d])
        check("folder is read recursively", p.returncode == 1 and "bad.yaml" in p.stdout, p.stdout)
        check("hidden files and non-YAML files are skipped", ".hidden" not in p.stdout and "notes.txt" not in p.stdout,
              p.stdout)
        check("folder summary counts both", "2 resources checked" in p.stderr, p.stderr)

        p = run(keel, ["validate", "-"], stdin=VALID_VS)
        check("stdin valid", p.returncode == 0, p.stdout + p.stderr)
        p = run(keel, ["validate", "-f", "-"], stdin=TYPO_RA)
        check("stdin via -f invalid", p.returncode == 1 and "<stdin>:8:5" in p.stdout, p.stdout)

        p = run(keel, ["validate", "-o", "json", good, bad])
        try:
            out = json.loads(p.stdout)
        except ValueError:
            out = None
        check("json parses", out is not None, p.stdout[:200])
        if out:
            check("json valid flag", out["valid"] is False)
            check("json resources in order", [r["status"] for r in out["resources"]] == ["valid", "invalid"],
                  str(out["resources"]))
            diag = out["diagnostics"][0]
            check("json diagnostic fields", diag["severity"] == "error" and diag["line"] == 8 and
                  diag["path"] == "spec.jwtRules[0].forwardOriginalTolen" and diag["kind"] == "RequestAuthentication",
                  str(diag))
            check("json summary", out["summary"]["resources"] == 2 and out["summary"]["invalid"] == 1,
                  str(out["summary"]))

        multi = os.path.join(d, "multi.yaml")
        open(multi, "w").write(VALID_VS + "---\n" + TYPO_RA + "---\n# only a comment\n---\n")
        p = run(keel, ["validate", "-o", "json", multi])
        out = json.loads(p.stdout)
        check("multi-document stream", [r["doc"] for r in out["resources"]] == [0, 1], str(out["resources"]))

        lst = os.path.join(d, "list.yaml")
        open(lst, "w").write("apiVersion: v1\nkind: List\nitems:\n" +
                             "".join("- " + l + "\n" if i == 0 else "  " + l + "\n"
                                     for i, l in enumerate(VALID_VS.splitlines())))
        p = run(keel, ["validate", "-o", "json", lst])
        out = json.loads(p.stdout)
        check("kind: List is unrolled", len(out["resources"]) == 1 and out["resources"][0]["kind"] == "VirtualService",
              p.stdout)

        js = os.path.join(d, "vs.json")
        open(js, "w").write(json.dumps({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
                                        "metadata": {"name": "j"},
                                        "spec": {"hosts": ["a.b"], "http": [{"route": [{"destination": {"host": "a.b"}}]}]}}))
        p = run(keel, ["validate", js])
        check("JSON input", p.returncode == 0, p.stdout + p.stderr)

        syntax = os.path.join(d, "syntax.yaml")
        open(syntax, "w").write("apiVersion: v1\nkind: [unclosed\n")
        p = run(keel, ["validate", syntax])
        check("YAML syntax error exits 1 with a location", p.returncode == 1 and re.search(r"syntax\.yaml:\d+:\d+: error:", p.stdout),
              p.stdout)

        p = run(keel, ["validate", os.path.join(d, "missing.yaml")])
        check("missing file exits 1", p.returncode == 1 and "cannot read" in p.stdout, p.stdout)

        p = run(keel, ["validate"])
        check("no input is a usage error (2)", p.returncode == 2, str(p.returncode))
        p = run(keel, ["validate", "--bogus", good])
        check("unknown option is a usage error (2)", p.returncode == 2, str(p.returncode))
        p = run(keel, ["validate", "-o", "xml", good])
        check("unknown format is a usage error (2)", p.returncode == 2, str(p.returncode))
        p = run(keel, ["frobnicate"])
        check("unknown command is a usage error (2)", p.returncode == 2, str(p.returncode))

        p = run(keel, ["validate", "-q", bad])
        check("-q prints errors only, no summary", p.returncode == 1 and p.stderr == "", p.stderr)

        # keel proxy: a bad argument is a usage error naming the flag, never a silent default
        for args, needle in [
            (["--concurrency", "abc"], "--concurrency wants a whole number"),
            (["--concurrency", "-1"], "--concurrency wants a whole number"),
            (["--drain", "5s"], "--drain wants a whole number"),
            (["--inbound", "127.0.0.1"], "--inbound wants IP:PORT"),
        ]:
            p = run(keel, ["proxy", "sidecar", "--config", d, "--workload", "w.default"] + args)
            check("keel proxy %s is a usage error (2) naming it" % " ".join(args),
                  p.returncode == 2 and needle in p.stderr, (p.returncode, p.stderr))
        p = run(keel, ["proxy", "wait", "--timeout", "ten"])
        check("keel proxy wait --timeout ten is a usage error (2)",
              p.returncode == 2 and "--timeout wants a whole number" in p.stderr, (p.returncode, p.stderr))
        p = run(keel, ["proxy", "router", "--config", d, "stray"])
        check("keel proxy with a stray argument is a usage error (2)",
              p.returncode == 2 and 'unexpected argument "stray"' in p.stderr, (p.returncode, p.stderr))

    return summary()


if __name__ == "__main__":
    sys.exit(main())
