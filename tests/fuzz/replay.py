#!/usr/bin/env python3
"""replay.py - run `keel validate` over a fuzz corpus; fail if keel crashes.

    replay.py --keel BIN --corpus DIR [--batch N] [--timeout SECONDS]

This is the ctest `fuzz-corpus` test. It runs in every build (debug, asan),
so each input the fuzzer ever kept - including old crash reproducers - is
replayed through the real CLI on every test run, with no libFuzzer needed.

Every regular file in DIR (recursively, hidden files skipped) is passed to
one `keel validate` process per batch of files (keel reads at most 256 paths
per run). Exit status 0 (all valid) and 1 (something invalid) are fine:
corpus files are mostly invalid on purpose. Anything else fails the test:

  * a signal (SIGSEGV, SIGABRT from an assert or a sanitizer, ...),
  * any other exit status (sanitizers are told to exit with 86-88 so that
    their reports cannot hide behind keel's own status 1),
  * a sanitizer report on stderr ("runtime error:", "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer") even when the process went on,
  * a batch that runs longer than --timeout seconds.

When a batch fails, its files are replayed one at a time so the report names
the exact input(s); rerun one with `keel validate FILE` to debug it.
"""
import argparse
import os
import signal
import subprocess
import sys
import time

SANITIZER_MARKERS = ("runtime error:", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "ERROR: UndefinedBehaviorSanitizer")


def sanitizer_env():
    env = dict(os.environ)

    def add(var, opts):
        cur = env.get(var, "")
        env[var] = (cur + ":" if cur else "") + opts

    add("ASAN_OPTIONS", "exitcode=86:detect_leaks=1:abort_on_error=0")
    add("UBSAN_OPTIONS", "exitcode=87:print_stacktrace=1")
    add("LSAN_OPTIONS", "exitcode=88")
    return env


def corpus_files(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                path = os.path.join(dirpath, name)
                if os.path.isfile(path):
                    out.append(path)
    return out


def run(keel, files, timeout, env):
    """Returns None when keel behaved, else a one-line reason."""
    cmd = [keel, "validate", "-o", "json", "--"] + files
    start = time.monotonic()
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return "timed out after %ds" % timeout
    elapsed = time.monotonic() - start
    err = p.stderr.decode("utf-8", "replace")
    if p.returncode < 0:
        sig = -p.returncode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "signal %d" % sig
        return "killed by %s\n%s" % (name, tail(err))
    if p.returncode not in (0, 1):
        return "exit status %d\n%s" % (p.returncode, tail(err))
    for marker in SANITIZER_MARKERS:
        if marker in err:
            return "sanitizer report (exit %d)\n%s" % (p.returncode, tail(err))
    if elapsed > timeout / 2:
        print("replay: warning: batch of %d files took %.1fs" % (len(files), elapsed), file=sys.stderr)
    return None


def tail(text, lines=25):
    return "\n".join("    " + l for l in text.rstrip().splitlines()[-lines:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keel", required=True, help="the keel binary")
    ap.add_argument("--corpus", required=True, help="corpus directory (e.g. tests/fuzz/corpus/loader)")
    ap.add_argument("--batch", type=int, default=200, help="files per keel process (max 256)")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per batch before it counts as a hang")
    args = ap.parse_args()

    if not os.path.isdir(args.corpus):
        print("replay: corpus %s is not a directory" % args.corpus, file=sys.stderr)
        return 2
    files = corpus_files(args.corpus)
    if not files:
        print("replay: corpus %s is empty" % args.corpus, file=sys.stderr)
        return 2
    batch = max(1, min(args.batch, 256))
    env = sanitizer_env()

    failures = []
    for i in range(0, len(files), batch):
        chunk = files[i:i + batch]
        reason = run(args.keel, chunk, args.timeout, env)
        if reason is None:
            continue
        # find the culprit(s)
        culprits = 0
        for f in chunk:
            r = run(args.keel, [f], args.timeout, env)
            if r is not None:
                failures.append((f, r))
                culprits += 1
        if not culprits:
            failures.append(("batch %d-%d" % (i, i + len(chunk) - 1), reason + "\n    (no single file fails alone)"))

    if failures:
        for what, reason in failures:
            print("replay: FAIL %s: %s" % (what, reason), file=sys.stderr)
        print("replay: %d of %d corpus inputs crash keel" % (len(failures), len(files)), file=sys.stderr)
        return 1
    print("replay: %d corpus inputs, keel exited 0/1 on all" % len(files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
