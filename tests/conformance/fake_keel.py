#!/usr/bin/env python3
"""Stand-in for `keel validate -o json` used to test the conformance runner.

It documents the JSON contract the runner relies on and lets
`tests/conformance/run.py --self-test` exercise the runner without a Keel
build.  It does NOT validate anything: a document is "invalid" when its text
contains the string "invalid", otherwise it is "valid" (or "skipped" when it is
not an Istio kind).

Usage (the same as the real CLI):

    fake_keel.py validate -o json [--namespace NS] FILE...   (FILE may be "-")

Exit status: 0 = everything valid (warnings allowed), 1 = something invalid,
2 = usage error.  stdout is ONE JSON object:

    {
      "valid": false,
      "resources": [{"file": "f.yaml", "doc": 0, "line": 1,
                     "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                     "namespace": "default", "name": "x",
                     "status": "valid|invalid|skipped"}],
      "diagnostics": [{"severity": "error|warning", "file": "f.yaml", "doc": 0,
                       "line": 3, "column": 5, "kind": "VirtualService",
                       "namespace": "default", "name": "x",
                       "path": "spec.http[0].retries", "message": "..."}],
      "summary": {"resources": 1, "invalid": 1, "skipped": 0, "errors": 1, "warnings": 0}
    }

Rules of this fake (beyond "contains 'invalid'"):
  * every YAML document of every FILE gets one entry in "resources", in order,
    with its 0-based index in "doc" (empty documents too, as "skipped");
  * a document whose apiVersion group does not end in "istio.io" is "skipped"
    (Keel does not read plain Kubernetes / Gateway-API kinds);
  * a document containing "fake-warning" gets a warning diagnostic;
  * a YAML syntax error yields an "invalid" resource with an empty kind and an
    error diagnostic for the document where parsing stopped;
  * the namespace is metadata.namespace, else --namespace, else "default".

Test hooks (environment variables, used only by run.py --self-test):
  FAKE_KEEL_DROP_LAST=1     omit the last resource entry when a file has more
                            than one document (makes the runner fall back to
                            one process per case)
  FAKE_KEEL_CRASH_ON=TEXT   exit 139 with no output when any input contains TEXT
"""

import json
import os
import sys

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.stderr.write("fake_keel: PyYAML is required\n")
    sys.exit(2)

USAGE = "usage: fake_keel.py validate -o json [--namespace NS] FILE...\n"


def usage(msg):
    sys.stderr.write("fake_keel: %s\n%s" % (msg, USAGE))
    sys.exit(2)


def parse_args(argv):
    if not argv or argv[0] != "validate":
        usage("expected the 'validate' subcommand")
    argv = argv[1:]
    out_fmt = None
    namespace = "default"
    files = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-o", "--output"):
            if i + 1 >= len(argv):
                usage("%s needs a value" % a)
            out_fmt = argv[i + 1]
            i += 2
            continue
        if a.startswith("--output="):
            out_fmt = a.split("=", 1)[1]
        elif a in ("-n", "--namespace"):
            if i + 1 >= len(argv):
                usage("%s needs a value" % a)
            namespace = argv[i + 1]
            i += 2
            continue
        elif a.startswith("--namespace="):
            namespace = a.split("=", 1)[1]
        elif a == "-" or not a.startswith("-"):
            files.append(a)
        else:
            usage("unknown option %s" % a)
        i += 1
    if out_fmt != "json":
        usage("only '-o json' is supported by the fake")
    if not files:
        usage("no FILE given")
    return namespace, files


def doc_spans(text):
    """Yield (index, node_or_None, start_line, doc_text) for each document.

    Raises yaml.YAMLError (with .doc_index set) when parsing stops."""
    loader = yaml.SafeLoader(text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            start = node.start_mark.index if node is not None else 0
            end = node.end_mark.index if node is not None else 0
            line = (node.start_mark.line + 1) if node is not None else 1
            yield index, node, line, text[start:end], loader
            index += 1
    except yaml.YAMLError as e:
        e.doc_index = index
        raise
    finally:
        loader.dispose()


def group_of(api_version):
    if not isinstance(api_version, str) or "/" not in api_version:
        return ""
    return api_version.split("/", 1)[0]


def main(argv):
    namespace, files = parse_args(argv)
    crash_on = os.environ.get("FAKE_KEEL_CRASH_ON")
    drop_last = os.environ.get("FAKE_KEEL_DROP_LAST") == "1"
    resources, diagnostics = [], []

    for fname in files:
        try:
            if fname == "-":
                text = sys.stdin.read()
            else:
                with open(fname, encoding="utf-8") as fh:
                    text = fh.read()
        except OSError as e:
            sys.stderr.write("fake_keel: cannot read %s: %s\n" % (fname, e))
            return 2
        if crash_on and crash_on in text:
            return 139
        file_res = []
        try:
            for idx, node, line, dtext, loader in doc_spans(text):
                obj = loader.construct_document(node) if node is not None else None
                entry = {"file": fname, "doc": idx, "line": line, "apiVersion": "",
                         "kind": "", "namespace": "", "name": "", "status": "valid"}
                if isinstance(obj, dict):
                    md = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
                    entry["apiVersion"] = str(obj.get("apiVersion") or "")
                    entry["kind"] = str(obj.get("kind") or "")
                    entry["name"] = str(md.get("name") or "")
                    entry["namespace"] = str(md.get("namespace") or namespace)
                diag_base = {"file": fname, "doc": idx, "kind": entry["kind"],
                             "namespace": entry["namespace"], "name": entry["name"]}
                if obj is None:
                    entry["status"] = "skipped"
                elif "invalid" in dtext:
                    off = dtext.index("invalid")
                    entry["status"] = "invalid"
                    diagnostics.append(dict(diag_base, severity="error",
                                            line=line + dtext.count("\n", 0, off),
                                            column=off - (dtext.rfind("\n", 0, off) + 1) + 1,
                                            path="", message='document contains the string "invalid"'))
                elif not group_of(entry["apiVersion"]).endswith("istio.io"):
                    entry["status"] = "skipped"
                if obj is not None and "fake-warning" in dtext:
                    diagnostics.append(dict(diag_base, severity="warning", line=line, column=1,
                                            path="", message='document contains "fake-warning"'))
                file_res.append(entry)
        except yaml.YAMLError as e:
            idx = getattr(e, "doc_index", len(file_res))
            mark = getattr(e, "problem_mark", None)
            file_res.append({"file": fname, "doc": idx, "line": (mark.line + 1) if mark else 1,
                             "apiVersion": "", "kind": "", "namespace": "", "name": "",
                             "status": "invalid"})
            diagnostics.append({"severity": "error", "file": fname, "doc": idx,
                                "line": (mark.line + 1) if mark else 1,
                                "column": (mark.column + 1) if mark else 1,
                                "kind": "", "namespace": "", "name": "", "path": "",
                                "message": "YAML syntax error: %s" % str(e).replace("\n", " ")})
        if drop_last and len(file_res) > 1:
            file_res = file_res[:-1]
        resources.extend(file_res)

    errors = sum(1 for d in diagnostics if d["severity"] == "error")
    out = {
        "valid": errors == 0 and not any(r["status"] == "invalid" for r in resources),
        "resources": resources,
        "diagnostics": diagnostics,
        "summary": {
            "resources": len(resources),
            "invalid": sum(1 for r in resources if r["status"] == "invalid"),
            "skipped": sum(1 for r in resources if r["status"] == "skipped"),
            "errors": errors,
            "warnings": sum(1 for d in diagnostics if d["severity"] == "warning"),
        },
    }
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0 if out["valid"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
