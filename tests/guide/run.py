#!/usr/bin/env python3
"""run.py - the user's field guide as a test.

Every YAML example of the guide (tests/guide/examples/, extracted verbatim,
mistakes included) is fed to `keel validate -o json`; tests/guide/expected.yaml
says whether Istio accepts it and, when not, substrings that some error line
must contain (the field path and a word of the reason). An example passes when
Keel's verdict matches and every expected error is found.

Usage: tests/guide/run.py --keel build/debug/keel [-v]
"""
import argparse
import json
import os
import subprocess
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keel", default=os.path.join(HERE, "..", "..", "build", "debug", "keel"))
    ap.add_argument("-v", action="store_true", help="print Keel's messages for every example")
    args = ap.parse_args()
    expected = yaml.safe_load(open(os.path.join(HERE, "expected.yaml")))
    passed = failed = 0
    for case in expected:
        path = os.path.join(HERE, "examples", case["file"])
        proc = subprocess.run([args.keel, "validate", "-o", "json", path], capture_output=True, text=True)
        if proc.returncode not in (0, 1):
            print("FAIL %s: keel exited %d\n%s" % (case["file"], proc.returncode, proc.stderr))
            failed += 1
            continue
        out = json.loads(proc.stdout)
        errors = [d for d in out["diagnostics"] if d["severity"] == "error"]
        lines = ["%s: %s" % (d.get("path") or "", d["message"]) for d in errors]
        valid = proc.returncode == 0
        problems = []
        if valid != case["valid"]:
            problems.append("expected %s, keel says %s" % ("valid" if case["valid"] else "invalid",
                                                           "valid" if valid else "invalid"))
        for subs in case.get("errors") or []:
            if not any(all(s in line for s in subs) for line in lines):
                problems.append("no error line contains all of %r" % (subs,))
        if problems:
            failed += 1
            print("FAIL %s: %s" % (case["file"], "; ".join(problems)))
            print("     why: %s" % case.get("why", ""))
            for l in lines:
                print("     keel: %s" % l)
        else:
            passed += 1
            if args.v:
                print("ok   %s" % case["file"])
                for l in lines:
                    print("     keel: %s" % l)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
